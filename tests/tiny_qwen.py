"""A tiny random-weight Qwen-Image pipeline built from config, the way diffusers' own
QwenImage tests build theirs (a 2-layer MMDiT, a 4-channel AutoencoderKLQwenImage, a
2-layer Qwen2.5-VL text encoder), saved with save_pretrained so the tests load it back
through the path a user's model folder takes. Its tokenizer is built on this machine
(tests.tiny_pipelines.qwen_tokenizer): nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

from tests.tiny_pipelines import _check_saved, qwen_tokenizer


def build_qwen(dest: Path, seed: int = 0, vae_seed: int | None = None) -> Path:
    """Qwen-Image (flow matching). Its VAE scales by 4 (two spatial downsamples), and the
    transformer packs 2x2 latent patches, so sizes must be multiples of 8 here (16 for the
    real model, whose VAE scales by 8)."""
    import torch
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = qwen_tokenizer()
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    torch.manual_seed(seed + 1 if vae_seed is None else vae_seed)
    z_dim = 4
    vae = AutoencoderKLQwenImage(base_dim=z_dim * 6, z_dim=z_dim, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * z_dim,
                                 latents_std=[1.0] * z_dim)
    torch.manual_seed(seed + 2)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tok), "bos_token_id": None,
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=len(tok),
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                      tokenizer=tok, transformer=transformer).save_pretrained(dest)
    _check_saved(dest, "QwenImagePipeline")
    return dest
