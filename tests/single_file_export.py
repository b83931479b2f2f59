"""Write a diffusers SD3, Flux.1 or Chroma pipeline folder as ONE all-in-one single-file
checkpoint, in the layout ComfyUI saves and diffusers' single-file loader reads:

  model.diffusion_model.*   the transformer in its original (Stability / Black Forest Labs)
                            layout: fused q/k/v (qkv, linear1), modulations as
                            adaLN_modulation.1 / img_mod.lin / modulation.lin, RMSNorm scales
                            as *.scale, and shift-before-scale final norms
  first_stage_model.*       the VAE in the LDM layout (SD3; ComfyUI's default prefix)
  vae.*                     the same, under the prefix ComfyUI gives Flux.1 and Chroma
  text_encoders.clip_l.transformer.*   CLIP ViT-L, in transformers' layout (text_model.*)
  text_encoders.clip_g.transformer.*   CLIP ViT-bigG, in transformers' layout (SD3)
  text_encoders.t5xxl.transformer.*    the T5 encoder (shared.weight, encoder.*)

Per family: SD3 has all three encoders and first_stage_model; Flux.1 clip_l and t5xxl
with vae; Chroma t5xxl alone with vae, and its modulation approximator
(`distilled_guidance_layer.*`) instead of per-block modulation layers.

This is the inverse of diffusers' conversion (`convert_sd3_transformer_checkpoint_to_diffusers`,
`convert_flux_transformer_checkpoint_to_diffusers`, `convert_chroma_transformer_checkpoint_to_diffusers`,
`convert_ldm_vae_checkpoint`, and for the text encoders `create_diffusers_clip_model_from_ldm`
and `create_diffusers_t5_model_from_checkpoint`). Every original name is derived from the
component's config (layer counts, which layers are dual-attention, qk norms, guidance
embedding) with the arithmetic the forward conversion uses. Every export is checked by
running diffusers' forward conversion on the result: it must give back exactly the folder's
state dicts (same keys, bit-identical tensors), or an ExportError says what diffusers'
loader would get wrong.

What the forward conversion assumes, and so what a model must have to round-trip:
  * Flux.1 and Chroma: the real width. diffusers splits each single block's fused linear1
    at fixed sizes (3 x 3072 for q/k/v, 4 x 3072 for the MLP), so a narrower transformer
    cannot be read back.
  * SD3: CLIP-L's text_projection is the identity (diffusers sets it so: SD3 pools CLIP-L
    unprojected), and CLIP-G is wider than CLIP-L (diffusers tells the two apart by width).
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.ldm_export import ExportError, _clip_keys, _load, clip_to_ldm, pipeline_to_ldm, vae_to_ldm

DENOISER_PREFIX = "model.diffusion_model."
SD3_VAE_PREFIX = "first_stage_model."
FLUX_VAE_PREFIX = "vae."
CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
CLIP_G_PREFIX = "text_encoders.clip_g.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."

# diffusers' Flux.1 / Chroma converters split the single blocks' fused linear1 at these sizes.
FLUX_INNER_DIM = 3072
FLUX_MLP_RATIO = 4

COPY, CAT, SWAP = "copy", "cat", "swap"  # how an original tensor is made from diffusers' ones

# ---------------------------------------------------------------- transformer rules
# A rule is (original name, [diffusers names], how): the original tensor is the diffusers
# tensor itself (COPY), the diffusers tensors concatenated on dim 0 (CAT: fused q/k/v), or
# the diffusers tensor with its two halves swapped (SWAP: diffusers' AdaLayerNormContinuous
# splits scale, shift; the originals split shift, scale; the swap is its own inverse).


def _layer(sd: dict, rules: list, original: str, diffusers, how: str = COPY) -> None:
    """Rules for one layer's weight and bias (whichever it has)."""
    parts = [diffusers] if isinstance(diffusers, str) else list(diffusers)
    for suffix in ("weight", "bias"):
        if f"{parts[0]}.{suffix}" in sd:
            rules.append((f"{original}.{suffix}", [f"{p}.{suffix}" for p in parts], how))


def _scale(rules: list, original: str, diffusers: str) -> None:
    """An RMSNorm: the originals call its weight `scale`."""
    rules.append((f"{original}.scale", [f"{diffusers}.weight"], COPY))


def sd3_rules(config: dict, sd: dict) -> list:
    """SD3Transformer2DModel -> the MMDiT layout (joint_blocks.N.{x_block,context_block})."""
    rules: list = [("pos_embed", ["pos_embed.pos_embed"], COPY)]
    _layer(sd, rules, "x_embedder.proj", "pos_embed.proj")
    _layer(sd, rules, "t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1")
    _layer(sd, rules, "t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2")
    _layer(sd, rules, "y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1")
    _layer(sd, rules, "y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2")
    _layer(sd, rules, "context_embedder", "context_embedder")
    n = config["num_layers"]
    dual = set(config.get("dual_attention_layers") or ())
    qk_norm = bool(config.get("qk_norm"))
    for i in range(n):
        b, x, c = f"transformer_blocks.{i}", f"joint_blocks.{i}.x_block", f"joint_blocks.{i}.context_block"
        last = i == n - 1  # context_pre_only: the text stream ends here (no output projection or MLP)
        _layer(sd, rules, f"{x}.attn.qkv", [f"{b}.attn.to_q", f"{b}.attn.to_k", f"{b}.attn.to_v"], CAT)
        _layer(sd, rules, f"{c}.attn.qkv", [f"{b}.attn.add_q_proj", f"{b}.attn.add_k_proj", f"{b}.attn.add_v_proj"], CAT)
        if qk_norm:
            rules += [(f"{x}.attn.ln_q.weight", [f"{b}.attn.norm_q.weight"], COPY),
                      (f"{x}.attn.ln_k.weight", [f"{b}.attn.norm_k.weight"], COPY),
                      (f"{c}.attn.ln_q.weight", [f"{b}.attn.norm_added_q.weight"], COPY),
                      (f"{c}.attn.ln_k.weight", [f"{b}.attn.norm_added_k.weight"], COPY)]
        _layer(sd, rules, f"{x}.attn.proj", f"{b}.attn.to_out.0")
        if not last:
            _layer(sd, rules, f"{c}.attn.proj", f"{b}.attn.to_add_out")
        if i in dual:  # SD3.5's second self-attention on the image stream
            _layer(sd, rules, f"{x}.attn2.qkv", [f"{b}.attn2.to_q", f"{b}.attn2.to_k", f"{b}.attn2.to_v"], CAT)
            if qk_norm:
                rules += [(f"{x}.attn2.ln_q.weight", [f"{b}.attn2.norm_q.weight"], COPY),
                          (f"{x}.attn2.ln_k.weight", [f"{b}.attn2.norm_k.weight"], COPY)]
            _layer(sd, rules, f"{x}.attn2.proj", f"{b}.attn2.to_out.0")
        _layer(sd, rules, f"{x}.adaLN_modulation.1", f"{b}.norm1.linear")
        # The last block's context norm is an AdaLayerNormContinuous: halves swapped.
        _layer(sd, rules, f"{c}.adaLN_modulation.1", f"{b}.norm1_context.linear", SWAP if last else COPY)
        _layer(sd, rules, f"{x}.mlp.fc1", f"{b}.ff.net.0.proj")
        _layer(sd, rules, f"{x}.mlp.fc2", f"{b}.ff.net.2")
        if not last:
            _layer(sd, rules, f"{c}.mlp.fc1", f"{b}.ff_context.net.0.proj")
            _layer(sd, rules, f"{c}.mlp.fc2", f"{b}.ff_context.net.2")
    _layer(sd, rules, "final_layer.linear", "proj_out")
    _layer(sd, rules, "final_layer.adaLN_modulation.1", "norm_out.linear", SWAP)
    return rules


def flux_rules(config: dict, sd: dict, chroma: bool = False) -> list:
    """FluxTransformer2DModel (or ChromaTransformer2DModel) -> the BFL layout
    (double_blocks.N.{img,txt}_*, single_blocks.N.linear1/linear2)."""
    width = config["num_attention_heads"] * config["attention_head_dim"]
    if width != FLUX_INNER_DIM:
        raise ExportError(f"a {width}-wide {'Chroma' if chroma else 'Flux.1'} transformer does not round-trip: "
                          f"diffusers' converter splits the single blocks at the real model's width ({FLUX_INNER_DIM})")
    rules: list = []
    if chroma:
        # Chroma replaces every modulation layer with one approximator fed by timestep and guidance.
        g = "distilled_guidance_layer"
        _layer(sd, rules, f"{g}.in_proj", f"{g}.in_proj")
        _layer(sd, rules, f"{g}.out_proj", f"{g}.out_proj")
        for i in range(config["approximator_layers"]):
            _layer(sd, rules, f"{g}.layers.{i}.in_layer", f"{g}.layers.{i}.linear_1")
            _layer(sd, rules, f"{g}.layers.{i}.out_layer", f"{g}.layers.{i}.linear_2")
            _scale(rules, f"{g}.norms.{i}", f"{g}.norms.{i}")
    else:
        _layer(sd, rules, "time_in.in_layer", "time_text_embed.timestep_embedder.linear_1")
        _layer(sd, rules, "time_in.out_layer", "time_text_embed.timestep_embedder.linear_2")
        _layer(sd, rules, "vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
        _layer(sd, rules, "vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
        if config.get("guidance_embeds"):  # FLUX.1 [dev]: distilled guidance
            _layer(sd, rules, "guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1")
            _layer(sd, rules, "guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2")
    _layer(sd, rules, "txt_in", "context_embedder")
    _layer(sd, rules, "img_in", "x_embedder")
    for i in range(config["num_layers"]):
        d, b = f"double_blocks.{i}", f"transformer_blocks.{i}"
        if not chroma:
            _layer(sd, rules, f"{d}.img_mod.lin", f"{b}.norm1.linear")
            _layer(sd, rules, f"{d}.txt_mod.lin", f"{b}.norm1_context.linear")
        _layer(sd, rules, f"{d}.img_attn.qkv", [f"{b}.attn.to_q", f"{b}.attn.to_k", f"{b}.attn.to_v"], CAT)
        _layer(sd, rules, f"{d}.txt_attn.qkv", [f"{b}.attn.add_q_proj", f"{b}.attn.add_k_proj", f"{b}.attn.add_v_proj"], CAT)
        _scale(rules, f"{d}.img_attn.norm.query_norm", f"{b}.attn.norm_q")
        _scale(rules, f"{d}.img_attn.norm.key_norm", f"{b}.attn.norm_k")
        _scale(rules, f"{d}.txt_attn.norm.query_norm", f"{b}.attn.norm_added_q")
        _scale(rules, f"{d}.txt_attn.norm.key_norm", f"{b}.attn.norm_added_k")
        _layer(sd, rules, f"{d}.img_attn.proj", f"{b}.attn.to_out.0")
        _layer(sd, rules, f"{d}.txt_attn.proj", f"{b}.attn.to_add_out")
        _layer(sd, rules, f"{d}.img_mlp.0", f"{b}.ff.net.0.proj")
        _layer(sd, rules, f"{d}.img_mlp.2", f"{b}.ff.net.2")
        _layer(sd, rules, f"{d}.txt_mlp.0", f"{b}.ff_context.net.0.proj")
        _layer(sd, rules, f"{d}.txt_mlp.2", f"{b}.ff_context.net.2")
    for i in range(config["num_single_layers"]):
        s, b = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        if not chroma:
            _layer(sd, rules, f"{s}.modulation.lin", f"{b}.norm.linear")
        # q, k, v and the MLP's input projection are one fused linear in the original.
        _layer(sd, rules, f"{s}.linear1", [f"{b}.attn.to_q", f"{b}.attn.to_k", f"{b}.attn.to_v", f"{b}.proj_mlp"], CAT)
        _scale(rules, f"{s}.norm.query_norm", f"{b}.attn.norm_q")
        _scale(rules, f"{s}.norm.key_norm", f"{b}.attn.norm_k")
        _layer(sd, rules, f"{s}.linear2", f"{b}.proj_out")
    _layer(sd, rules, "final_layer.linear", "proj_out")
    if not chroma:
        _layer(sd, rules, "final_layer.adaLN_modulation.1", "norm_out.linear", SWAP)
    return rules


def apply_rules(rules: list, sd: dict, component: str) -> dict:
    """The original-layout state dict; every diffusers tensor must be used exactly once."""
    import torch

    used = [k for _, parts, _ in rules for k in parts]
    missing = sorted(set(used) - set(sd))
    unused = sorted(set(sd) - set(used))
    if missing or unused or len(used) != len(set(used)):
        raise ExportError(f"{component}: no original name for {unused[:5]}; rules name absent {missing[:5]}")
    out = {}
    for original, parts, how in rules:
        if how == CAT:
            out[original] = torch.cat([sd[p] for p in parts], dim=0)
        elif how == SWAP:
            a, b = sd[parts[0]].chunk(2, dim=0)
            out[original] = torch.cat([b, a], dim=0)
        else:
            out[original] = sd[parts[0]]
    return out


# ---------------------------------------------------------------- pipelines

# pipeline class -> (transformer rules, VAE prefix, text encoders as [(component, prefix)])
LAYOUTS = {
    "StableDiffusion3Pipeline": (sd3_rules, SD3_VAE_PREFIX,
                                 [("text_encoder", CLIP_L_PREFIX), ("text_encoder_2", CLIP_G_PREFIX),
                                  ("text_encoder_3", T5_PREFIX)]),
    "FluxPipeline": (flux_rules, FLUX_VAE_PREFIX, [("text_encoder", CLIP_L_PREFIX), ("text_encoder_2", T5_PREFIX)]),
    "ChromaPipeline": (lambda config, sd: flux_rules(config, sd, chroma=True), FLUX_VAE_PREFIX,
                       [("text_encoder", T5_PREFIX)]),
}


def _stored(folder: Path, name: str) -> tuple[dict, dict]:
    """A diffusers component's config and its state dict exactly as saved (dtype included),
    read from its safetensors files without building the model."""
    from safetensors.torch import load_file

    component = Path(folder) / name
    config = json.loads((component / "config.json").read_text())
    state: dict = {}
    for f in sorted(component.glob("*.safetensors")):
        state.update(load_file(str(f)))
    if not state:
        raise ExportError(f"{component} holds no .safetensors weights")
    return config, state


def _untied(model) -> dict:
    """A state dict with each tensor once: a tied alias (T5's encoder.embed_tokens, which is
    its `shared` embedding) is left out."""
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        if v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            out[k] = v
    return out


def _t5_to_original(model, prefix: str) -> dict:
    """The T5 encoder as ComfyUI keeps it: shared.weight and encoder.*, the embedding once.
    (diffusers 0.42.1's loader then leaves transformers 5's encoder.embed_tokens unset, on
    the meta device, until the model's weights are tied again: core.models does that.)"""
    return {prefix + k: v for k, v in _untied(model).items()}


def _text_encoder_to_original(model, name: str, prefix: str) -> dict:
    if prefix == T5_PREFIX:
        return _t5_to_original(model, prefix)
    state = clip_to_ldm(model, prefix)
    width = _clip_keys(model)["text_model.embeddings.position_embedding.weight"].shape[-1]
    if prefix == CLIP_L_PREFIX and f"{prefix}text_projection.weight" in state:
        import torch

        if not torch.equal(state[f"{prefix}text_projection.weight"], torch.eye(width)):
            # diffusers loads SD3's CLIP-L with an identity projection, whatever the file holds.
            raise ExportError(f"{name}: SD3's CLIP-L must have an identity text_projection to round-trip")
    return state


def transformer_pipeline_to_single_file(folder: Path) -> dict:
    """The all-in-one state dict of a diffusers SD3, Flux.1 or Chroma pipeline folder."""
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    cls = index.get("_class_name")
    if cls not in LAYOUTS:
        raise ExportError(f"exporting {cls} to a single-file layout is not supported")
    rules_for, vae_prefix, encoders = LAYOUTS[cls]
    config, sd = _stored(folder, "transformer")
    state = {DENOISER_PREFIX + k: v for k, v in apply_rules(rules_for(config, sd), sd, "transformer").items()}
    vae_config, vae_sd = _stored(folder, "vae")
    state.update({vae_prefix + k: v for k, v in vae_to_ldm(vae_sd, vae_config).items()})
    widths = []
    for name, prefix in encoders:
        if (index.get(name) or [None])[0] is None:
            continue  # SD3 without its T5, say
        model = _load(folder, name)
        state.update(_text_encoder_to_original(model, name, prefix))
        if prefix != T5_PREFIX:
            widths.append(_clip_keys(model)["text_model.embeddings.position_embedding.weight"].shape[-1])
    if len(widths) == 2 and widths[0] == widths[1]:
        # diffusers tells CLIP-L from CLIP-G by width: with equal widths it loads CLIP-L's weights into both.
        raise ExportError("SD3 text encoders of equal width do not round-trip through diffusers' single-file loader")
    state = _owned(state)
    verify_round_trip(folder, state, index)
    return state


def _owned(state: dict) -> dict:
    """Each tensor contiguous and alone in its storage, as safetensors writes them. Only the
    tensors that are not already are copied: the full-width transformers are a gigabyte."""
    out, storages = {}, set()
    for k, v in state.items():
        v = v.detach().contiguous()
        storage = v.untyped_storage()
        if storage.data_ptr() in storages or storage.nbytes() != v.numel() * v.element_size():
            v = v.clone()
        storages.add(v.untyped_storage().data_ptr())
        out[k] = v
    return out


def _same(component: str, mine: dict, theirs: dict) -> None:
    import torch

    if set(mine) != set(theirs):
        missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
        raise ExportError(f"{component}: round trip lost {missing[:5]} and invented {extra[:5]}")
    for k, v in mine.items():
        t = theirs[k]
        if t.shape != v.shape or t.dtype != v.dtype or not torch.equal(t, v):
            raise ExportError(f"{component}: {k} does not round-trip")


def verify_round_trip(folder: Path, state: dict, index: dict) -> None:
    """Run diffusers' forward conversion on `state` as its single-file loader does, component
    by component (the converters pop what they take, so each gets its own copy): it must
    give back every tensor of the folder, bit for bit, and nothing else."""
    from diffusers.loaders import single_file_utils as sfu
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    cls = index["_class_name"]
    config, sd = _stored(folder, "transformer")
    convert = SINGLE_FILE_LOADABLE_CLASSES[index["transformer"][1]]["checkpoint_mapping_fn"]
    _same("transformer", sd, convert(checkpoint=dict(state), config=config))
    vae_config, vae_sd = _stored(folder, "vae")
    _same("vae", vae_sd, sfu.convert_ldm_vae_checkpoint(dict(state), vae_config))
    for name, prefix in LAYOUTS[cls][2]:
        if (index.get(name) or [None])[0] is None:
            continue
        folder_model = _load(folder, name)
        if prefix == T5_PREFIX:
            _same(name, _untied(folder_model), sfu.convert_sd3_t5_checkpoint_to_diffusers(dict(state)))
            continue
        # The loader's own CLIP path, dispatch included: which CLIP an encoder gets is decided
        # there, by width, and SD3's CLIP-L gets its identity projection there.
        loaded = sfu.create_diffusers_clip_model_from_ldm(type(folder_model), checkpoint=dict(state), subfolder=name,
                                                          config=str(folder), local_files_only=True)

        def params(m) -> dict:
            return {k: v for k, v in m.state_dict().items() if not k.endswith("position_ids")}

        _same(name, params(folder_model), params(loaded))


def export_single_file(folder: Path, dest: Path) -> Path:
    """Write the pipeline at `folder` as one all-in-one .safetensors checkpoint at `dest`, in
    the layout ComfyUI and Automatic1111 keep for its family (SD 1.x, SDXL base and refiner:
    tests/ldm_export.py; SD3, Flux.1, Chroma: here)."""
    from safetensors.torch import save_file

    folder, dest = Path(folder), Path(dest)
    cls = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    state = transformer_pipeline_to_single_file(folder) if cls in LAYOUTS else pipeline_to_ldm(folder)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dest))
    return dest
