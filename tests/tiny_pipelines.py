"""Tiny random-weight pipelines built from config, the way diffusers' own tests build
theirs, then saved with save_pretrained so the tests load them back through the same
path a user's model folder takes. Tokenizers are built locally: nothing is downloaded."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from core.local_tokenizers import clip_tokenizer

WORDS = ["a", "red", "blue", "green", "circle", "square", "on", "background", "sharp", "detail", "cat", "photo"]


def _clip_text(vocab: int, projection: bool, seed: int, hidden: int = 32):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
                         num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab, projection_dim=32,
                         max_position_embeddings=77)
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def _vae(seed: int, latent_channels: int = 4, **extra):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=latent_channels,
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                         norm_num_groups=32, sample_size=32, **extra)


def build_sd(dest: Path, seed: int = 0) -> Path:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tok = clip_tokenizer(WORDS)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=16)
    pipe = StableDiffusionPipeline(
        vae=_vae(seed + 1), text_encoder=_clip_text(len(tok), False, seed + 2), tokenizer=tok, unet=unet,
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(dest)
    return dest


def build_sdxl_pair(base_dest: Path, refiner_dest: Path, seed: int = 0) -> tuple[Path, Path]:
    """An SDXL base and refiner that share their VAE and text_encoder_2 (same weights on disk)."""
    import torch
    from diffusers import (EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline,
                           UNet2DConditionModel)

    tok = clip_tokenizer(WORDS)

    def unet(time_ids: int, cross: int, s: int):
        torch.manual_seed(s)
        return UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=time_ids * 8 + 32, cross_attention_dim=cross, norm_num_groups=16)

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    vae, te2 = _vae(seed + 1), _clip_text(len(tok), True, seed + 3)
    StableDiffusionXLPipeline(vae=vae, text_encoder=_clip_text(len(tok), False, seed + 2), text_encoder_2=te2,
                              tokenizer=tok, tokenizer_2=tok, unet=unet(6, 64, seed + 4),
                              scheduler=scheduler).save_pretrained(base_dest)
    StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=None, text_encoder_2=te2, tokenizer=None, tokenizer_2=tok,
                                     unet=unet(5, 32, seed + 5), scheduler=scheduler, requires_aesthetics_score=True,
                                     force_zeros_for_empty_prompt=False).save_pretrained(refiner_dest)
    return base_dest, refiner_dest


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer():
    """A byte-level BPE tokenizer with Qwen's special tokens and a chat template."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        tok = Qwen2Tokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                             unk_token="<|endoftext|>", bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_zimage(dest: Path, seed: int = 0, vae_seed: int | None = None) -> Path:
    """A Z-Image pipeline (flow matching). Two of them built with the same vae_seed share
    one latent space, as Z-Image base and Z-Image Turbo do."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tok = qwen_tokenizer()
    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[8, 4, 4], axes_lens=[256, 32, 32])
    torch.manual_seed(seed + 1)
    text_encoder = Qwen3Model(Qwen3Config(hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=2, vocab_size=len(tok),
                                          max_position_embeddings=512))
    vae = _vae(seed + 2 if vae_seed is None else vae_seed, latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159)
    ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tok,
                   transformer=transformer).save_pretrained(dest)
    return dest


def build_zimage_with_scheduler(dest: Path, seed: int = 0, vae_seed: int | None = None, **scheduler_config) -> Path:
    """A Z-Image pipeline whose scheduler shifts its sigmas the way the real ones do
    (Z-Image Turbo: shift=3.0; resolution-dependent: use_dynamic_shifting=True), so a
    test can tell one shared schedule from two differently shifted ones."""
    build_zimage(dest, seed=seed, vae_seed=vae_seed)
    config_file = dest / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config.update(scheduler_config)
    config_file.write_text(json.dumps(config, indent=2))
    return dest


# ---------------------------------------------------------------- SD3, Flux.1, Chroma
# Flux.1, Chroma and Z-Image use the one Flux.1 VAE: built with the same vae_seed, their tiny
# VAEs are identical in config and weights (the same `_flux_vae` call), so they share one
# latent space the way the real models do. SD3's VAE has 16 channels too, but its own
# scaling and shift.
FLUX_VAE = {"latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159}
SD3_VAE = {"latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609}


def _flux_vae(seed: int):
    return _vae(seed, **FLUX_VAE)


def _t5_text(vocab: int, seed: int, d_model: int = 32):
    import torch
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=vocab, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=32, dropout_rate=0.0,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(seed)
    return T5EncoderModel(cfg)


def _check_saved(dest: Path, pipeline_class: str) -> None:
    index = json.loads((dest / "model_index.json").read_text())
    assert index["_class_name"] == pipeline_class, index["_class_name"]


def build_sd3(dest: Path, seed: int = 0, vae_seed: int | None = None, num_layers: int = 1) -> Path:
    """Stable Diffusion 3: two CLIP encoders with projection and a T5, a joint transformer.
    A ControlNet needs num_layers >= 2: SD3 adds its residuals only to blocks that are not
    context_pre_only, and the last block is."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    from core.local_tokenizers import t5_tokenizer

    clip, t5 = clip_tokenizer(WORDS), t5_tokenizer(WORDS, max_length=256)
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=16, out_channels=16,
                                        num_layers=num_layers, attention_head_dim=8, num_attention_heads=4,
                                        caption_projection_dim=32,
                                        joint_attention_dim=32, pooled_projection_dim=64, pos_embed_max_size=32)
    StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(seed + 1 if vae_seed is None else vae_seed, **SD3_VAE),
        text_encoder=_clip_text(len(clip), True, seed + 2), tokenizer=clip,
        text_encoder_2=_clip_text(len(clip), True, seed + 3), tokenizer_2=clip,
        text_encoder_3=_t5_text(len(t5), seed + 4), tokenizer_3=t5,
    ).save_pretrained(dest)
    _check_saved(dest, "StableDiffusion3Pipeline")
    return dest


def build_flux(dest: Path, seed: int = 0, vae_seed: int | None = None) -> Path:
    """Flux.1: CLIP (pooled) + T5 conditioning, a packed-latent transformer, the Flux.1 VAE."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    from core.local_tokenizers import t5_tokenizer

    clip, t5 = clip_tokenizer(WORDS), t5_tokenizer(WORDS)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16,
                                                  max_image_seq_len=256, base_shift=0.5, max_shift=1.15),
        vae=_flux_vae(seed + 1 if vae_seed is None else vae_seed),
        text_encoder=_clip_text(len(clip), False, seed + 2), tokenizer=clip,
        text_encoder_2=_t5_text(len(t5), seed + 3), tokenizer_2=t5, transformer=transformer,
    ).save_pretrained(dest)
    _check_saved(dest, "FluxPipeline")
    return dest


def build_chroma(dest: Path, seed: int = 0, vae_seed: int | None = None) -> Path:
    """Chroma: T5 only, a Flux-shaped transformer with a modulation approximator, the Flux.1 VAE."""
    import torch
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    from core.local_tokenizers import t5_tokenizer

    t5 = t5_tokenizer(WORDS)
    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                           axes_dims_rope=[4, 4, 8], approximator_num_channels=16,
                                           approximator_hidden_dim=32, approximator_layers=1)
    ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16,
                                                  max_image_seq_len=256, base_shift=0.5, max_shift=1.15),
        vae=_flux_vae(seed + 1 if vae_seed is None else vae_seed),
        text_encoder=_t5_text(len(t5), seed + 2), tokenizer=t5, transformer=transformer,
    ).save_pretrained(dest)
    _check_saved(dest, "ChromaPipeline")
    return dest


# ---------------------------------------------------------------- ERNIE-Image, FLUX.2
# Both refine through their text-to-image pipelines (core.stage_call: the imposed tail of their schedule). Built with
# one vae_seed, their VAEs are identical in config and weights, as the real models' are.


def _flux2_vae(seed: int):
    """A tiny AutoencoderKLFlux2 (the VAE ERNIE-Image and FLUX.2 share): 4 latent channels,
    patchified 2x2 to 16 for the transformer, normalized by the VAE's batch-norm statistics,
    set here away from BatchNorm's 0 and 1 so a test sees whether they (and each pipeline's
    eps) are applied."""
    import torch
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                             norm_num_groups=32, sample_size=32)
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.randn(16) * 0.2)
        vae.bn.running_var.copy_(torch.rand(16) * 0.015 + 0.005)  # small, so the eps (1e-5 vs 1e-4) shows
    return vae


# Schedulers shaped like the real ones: FLUX.2 shifts by a resolution- and step-dependent mu
# (use_dynamic_shifting), ERNIE-Image's shift is static, so a refiner that took the wrong
# schedule would not match a plain diffusers reference.
FLUX2_SCHEDULER = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
                   "max_image_seq_len": 4096, "time_shift_type": "exponential"}
ERNIE_SCHEDULER = {"shift": 3.0}


def _mistral3(vocab: int, seed: int, layers: int, for_generation: bool):
    import torch
    from transformers import (Mistral3Config, Mistral3ForConditionalGeneration, Mistral3Model, MistralConfig,
                              PixtralVisionConfig)

    cfg = Mistral3Config(
        text_config=MistralConfig(hidden_size=16, intermediate_size=16, num_hidden_layers=layers, num_attention_heads=2,
                                  num_key_value_heads=2, head_dim=8, vocab_size=vocab, max_position_embeddings=1024),
        vision_config=PixtralVisionConfig(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          head_dim=8, image_size=16, patch_size=8),
        image_token_index=vocab - 1, spatial_merge_size=1)
    torch.manual_seed(seed)
    return (Mistral3ForConditionalGeneration if for_generation else Mistral3Model)(cfg)


def build_ernie(dest: Path, seed: int = 0, vae_seed: int | None = None) -> Path:
    """ERNIE-Image: a Mistral3 text encoder (its second-to-last hidden state), no img2img pipeline."""
    import torch
    from diffusers import ErnieImagePipeline, ErnieImageTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tok = qwen_tokenizer()  # the pipeline declares AutoTokenizer: any tokenizer class loads back
    torch.manual_seed(seed)
    transformer = ErnieImageTransformer2DModel(hidden_size=32, num_attention_heads=2, num_layers=1, ffn_hidden_size=37,
                                               in_channels=16, out_channels=16, patch_size=1, text_in_dim=16,
                                               rope_theta=256, rope_axes_dim=(8, 4, 4))
    # diffusers zero-initialises the output layer and the adaLN modulation: the transformer's
    # output would be 0 whatever its input (prompt, latents, LoRA), and every image the same.
    with torch.no_grad():
        for p in (*transformer.final_linear.parameters(), *transformer.adaLN_modulation.parameters()):
            p.normal_(0, 0.2)
    ErnieImagePipeline(transformer=transformer, vae=_flux2_vae(seed + 1 if vae_seed is None else vae_seed),
                       text_encoder=_mistral3(len(tok), seed + 2, 2, False), tokenizer=tok,
                       scheduler=FlowMatchEulerDiscreteScheduler(**ERNIE_SCHEDULER)).save_pretrained(dest)
    _check_saved(dest, "ErnieImagePipeline")
    return dest


# A chat template for the stand-in FLUX.2 tokenizer: FLUX.2 sends message contents as lists of
# {"type": "text", ...} parts.
PARTS_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_flux2(dest: Path, seed: int = 0, vae_seed: int | None = None) -> Path:
    """FLUX.2 [dev]: a Mistral3 encoder read at hidden layers 10, 20 and 30 (so 31 tiny layers),
    the FLUX.2 VAE. The real model ships a PixtralProcessor, which needs torchvision; the
    pipeline only calls its apply_chat_template, so a tokenizer with a chat template stands in."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline, Flux2Transformer2DModel

    tok = qwen_tokenizer()
    tok.chat_template = PARTS_CHAT_TEMPLATE
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48,
                                          timestep_guidance_channels=32, mlp_ratio=2.0, axes_dims_rope=(4, 4, 4, 4))
    Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(**FLUX2_SCHEDULER),
                  vae=_flux2_vae(seed + 1 if vae_seed is None else vae_seed),
                  text_encoder=_mistral3(len(tok), seed + 2, 31, True), tokenizer=tok,
                  transformer=transformer).save_pretrained(dest)
    _check_saved(dest, "Flux2Pipeline")
    return dest


def build_flux2_klein(dest: Path, seed: int = 0, vae_seed: int | None = None) -> Path:
    """FLUX.2 [klein]: the FLUX.2 transformer and VAE with a Qwen3 causal LM read at hidden
    layers 9, 18 and 27 (so 28 tiny layers), declared as Flux2KleinPipeline."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = qwen_tokenizer()
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48,
                                          timestep_guidance_channels=32, mlp_ratio=2.0, axes_dims_rope=(4, 4, 4, 4),
                                          guidance_embeds=False)
    torch.manual_seed(seed + 2)
    text_encoder = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok), hidden_size=16, intermediate_size=16,
                                                num_hidden_layers=28, num_attention_heads=2, num_key_value_heads=1,
                                                head_dim=8, max_position_embeddings=512))
    Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**FLUX2_SCHEDULER),
                       vae=_flux2_vae(seed + 1 if vae_seed is None else vae_seed), text_encoder=text_encoder,
                       tokenizer=tok, transformer=transformer).save_pretrained(dest)
    _check_saved(dest, "Flux2KleinPipeline")
    return dest
