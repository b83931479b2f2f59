"""Tiny random-weight adapters for the tiny pipelines: LoRAs in the diffusers/PEFT layout
and in kohya's, a ControlNet made from a UNet, and an IP-Adapter with its image encoder.
Built with diffusers, transformers and safetensors only; nothing from core."""
from __future__ import annotations

import json
from pathlib import Path

ATTENTION = ("to_q", "to_k", "to_v")


def _denoiser(pipe):
    name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    return name, getattr(pipe, name)


def lora_tensors(pipe, seed: int, rank: int = 4, text_encoders: tuple[str, ...] = ()) -> dict:
    """diffusers/PEFT-layout LoRA tensors ({component}.{module}.lora_A/B.weight) on every
    attention projection of the denoiser (and the named text encoders' q/k/v), random
    A and B so the LoRA changes the image."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    parts = [_denoiser(pipe)] + [(n, getattr(pipe, n)) for n in text_encoders]
    for component, model in parts:
        for name, module in model.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            wanted = ATTENTION if component in ("unet", "transformer") else ("q_proj", "k_proj", "v_proj")
            if isinstance(module, torch.nn.Linear) and leaf in wanted:
                out[f"{component}.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=g) * 0.3
                out[f"{component}.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=g) * 0.3
    return out


def save_lora(tensors: dict, dest: Path, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(dest), metadata=metadata)
    return dest


def to_kohya(tensors: dict, rank: int = 4) -> dict:
    """The same LoRA as kohya's sd-scripts write it: lora_unet_<module_with_underscores>
    .lora_down/.lora_up weights and an alpha equal to the rank (so the scale is 1)."""
    import torch

    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}
    out = {}
    for key, value in tensors.items():
        component, rest = key.split(".", 1)
        module, kind = rest.rsplit(".lora_", 1)
        name = prefixes[component] + module.replace(".", "_")
        out[f"{name}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = value
        out[f"{name}.alpha"] = torch.tensor(float(rank))
    return out


def build_controlnet(pipe_dir: Path, dest: Path, seed: int = 0) -> Path:
    """A ControlNet made from the pipeline's UNet. diffusers zero-initialises the control
    image's embedding output (`controlnet_cond_embedding.conv_out`) and the zero
    convolutions; both get random weights, so the control image itself reaches the UNet
    (two different maps give two different images), not only the ControlNet's own copy
    of the latents."""
    import torch
    from diffusers import ControlNetModel, DiffusionPipeline

    unet = DiffusionPipeline.from_pretrained(str(pipe_dir)).unet
    torch.manual_seed(seed)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    with torch.no_grad():
        for block in [cn.controlnet_cond_embedding.conv_out, *cn.controlnet_down_blocks, cn.controlnet_mid_block]:
            block.weight.normal_(0, 0.2)
    cn.save_pretrained(str(dest))
    return dest


def build_ip_adapter(pipe, dest: Path, seed: int = 0, tokens: int = 4) -> Path:
    """An IP-Adapter for the pipeline's UNet: image_proj (ImageProjection) and to_k_ip /
    to_v_ip for every cross-attention, numbered as diffusers numbers attention processors,
    in safetensors; a tiny CLIP vision encoder beside it in image_encoder/."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    g = torch.Generator().manual_seed(seed)
    unet = pipe.unet
    cross = unet.config.cross_attention_dim
    embed_dim = 16
    dest.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, projection_dim=embed_dim, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=32, patch_size=8)).save_pretrained(str(dest / "image_encoder"))
    state = {
        "image_proj.proj.weight": torch.randn(cross * tokens, embed_dim, generator=g) * 0.3,
        "image_proj.proj.bias": torch.zeros(cross * tokens),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    # diffusers numbers the adapter's layers 1, 3, 5, ... over the cross-attention
    # processors (attn2), in unet.attn_processors order (the original IP-Adapter's numbering).
    crossing = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for k, name in enumerate(crossing):
        n = 1 + 2 * k
        block = name.split(".")[0]
        if block == "mid_block":
            hidden = unet.config.block_out_channels[-1]
        elif block == "up_blocks":
            hidden = list(reversed(unet.config.block_out_channels))[int(name.split(".")[1])]
        else:
            hidden = unet.config.block_out_channels[int(name.split(".")[1])]
        state[f"ip_adapter.{n}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.3
        state[f"ip_adapter.{n}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.3
    path = dest / "ip-adapter.safetensors"
    save_file(state, str(path))
    (dest / "README.txt").write_text(json.dumps({"tokens": tokens, "seed": seed}))
    return path


def build_transformer_controlnet(pipe_dir: Path, dest: Path, seed: int = 0) -> Path:
    """A ControlNet made from an SD3 or Flux.1 pipeline's transformer (one block), its
    output projections given random weights so the control image changes the result."""
    import torch
    from diffusers import DiffusionPipeline, FluxControlNetModel, SD3ControlNetModel

    transformer = DiffusionPipeline.from_pretrained(str(pipe_dir)).transformer
    torch.manual_seed(seed)
    if type(transformer).__name__.startswith("Flux"):
        cfg = transformer.config
        cn = FluxControlNetModel.from_transformer(transformer, num_layers=1, num_single_layers=1,
                                                  attention_head_dim=cfg.attention_head_dim,
                                                  num_attention_heads=cfg.num_attention_heads)
        blocks = [*cn.controlnet_blocks, *cn.controlnet_single_blocks, cn.controlnet_x_embedder]
    else:
        # Not from its weights: the tiny transformer's one block is context_pre_only, the ControlNet's is not.
        cn = SD3ControlNetModel.from_transformer(transformer, num_layers=1, num_extra_conditioning_channels=0,
                                                 load_weights_from_transformer=False)
        blocks = [*cn.controlnet_blocks, cn.pos_embed_input.proj]
    with torch.no_grad():
        for block in blocks:
            block.weight.normal_(0, 0.2)
    cn.save_pretrained(str(dest))
    return dest
