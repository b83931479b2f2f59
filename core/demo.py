"""The offline demo family: a small SDXL-architecture base and refiner that run with no
download. Trained weights ship in resources/demo/; where they are absent (a checkout
without them), the same architecture is built with seeded random weights instead, so
the app and its tests always have a model to run. Two adapters of the base ship there
too (a Canny ControlNet and a LoRA): see adapter_path; and two extras, an upscaler and a
CLIP scorer: see extra_path.
"""
from __future__ import annotations

from pathlib import Path

from core import paths

DEMO_DIR = paths.RESOURCES / "demo"
NAMES = ("demo-base", "demo-refiner")
BASE = "builtin:demo-base"
REFINER = "builtin:demo-refiner"
# The demo base's adapters, trained by resources/demo/train_adapters.py: a ControlNet folder on
# Canny edges, and a LoRA file teaching a checkered background (name -> where it ships, under DEMO_DIR)
ADAPTERS = {"demo-controlnet": "demo-controlnet", "demo-lora": "demo-lora/demo-lora.safetensors"}
CONTROLNET = "builtin:demo-controlnet"
LORA = "builtin:demo-lora"
# The pipeline's extras, trained by resources/demo/train_extras.py: a 2x Real-ESRGAN Compact
# upscaler (a spandrel state dict) and a tiny CLIP scorer folder (name -> where it ships)
EXTRAS = {"demo-upscaler": "demo-upscaler/demo-upscaler.safetensors", "demo-scorer": "demo-scorer"}
UPSCALER = "builtin:demo-upscaler"
SCORER = "builtin:demo-scorer"
NATIVE_SIZE = 64
LATENT_SIZE = NATIVE_SIZE // 4  # the VAE downsamples by 4 (three blocks)

COLORS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "white", "black", "gray", "brown"]
SHAPES = ["circle", "square", "triangle", "star"]
WORDS = (
    COLORS
    + SHAPES
    + ["a", "an", "on", "the", "and", "with", "of", "small", "big", "large", "medium", "tiny"]
    + ["background", "gradient", "striped", "stripes", "dotted", "plain", "texture", "textured", "noise"]
    + ["sharp", "detailed", "detail", "edges", "smooth", "soft", "bright", "dark", "high", "quality"]
)


def ensure_model(name: str) -> Path:
    """The folder of a builtin model, building the random-weight stand-in if needed."""
    if name not in NAMES:
        from core.errors import ModelError

        raise ModelError(f"there is no builtin model '{name}' (builtin models: {', '.join(NAMES)})")
    shipped = DEMO_DIR / name
    if (shipped / "model_index.json").is_file():
        return shipped
    built = paths.cache_dir() / "demo-random" / name
    if not (built / "model_index.json").is_file():
        build_random(built.parent)
    return built


def adapter_path(name: str) -> Path:
    """The shipped file or folder of a builtin adapter (builtin:demo-lora, builtin:demo-controlnet)."""
    return _shipped(name, ADAPTERS, f"there is no builtin adapter '{name}' (builtin adapters: {', '.join(ADAPTERS)})",
                    "train_adapters.py")


def extra_path(name: str) -> Path:
    """The shipped file or folder of a builtin extra (builtin:demo-upscaler, builtin:demo-scorer)."""
    return _shipped(name, EXTRAS, f"there is no builtin '{name}' (builtin extras: {', '.join(EXTRAS)})",
                    "train_extras.py")


def upscaler_path(ref: str) -> Path:
    """The file of a builtin upscaler reference (builtin:demo-upscaler); ModelError, one line,
    for another builtin name or a checkout without it."""
    from core.errors import ModelError

    if ref.strip() != UPSCALER:
        raise ModelError(f"there is no builtin upscaler '{ref.strip()}' (builtin upscalers: {UPSCALER})")
    return extra_path("demo-upscaler")


def _shipped(name: str, table: dict[str, str], unknown: str, script: str) -> Path:
    from core.errors import ModelError

    if name not in table:
        raise ModelError(unknown)
    path = DEMO_DIR / table[name]
    if not path.exists():
        raise ModelError(f"builtin:{name} is not in this checkout ({path}): train it with "
                         f"python resources/demo/{script}")
    return path


def declared_index(name: str) -> dict:
    """The model_index.json a builtin model declares, read without building anything: the
    shipped one, else the random stand-in's if it is built, else what assemble() writes."""
    if name not in NAMES:
        from core.errors import ModelError

        raise ModelError(f"there is no builtin model '{name}' (builtin models: {', '.join(NAMES)})")
    import json

    for folder in (DEMO_DIR / name, paths.cache_dir() / "demo-random" / name):
        try:
            return json.loads((folder / "model_index.json").read_text())
        except (OSError, ValueError):
            continue
    if name == "demo-refiner":
        return {"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None],
                "requires_aesthetics_score": True}
    return {"_class_name": "StableDiffusionXLPipeline"}


def components(seed: int = 0) -> dict:
    """The demo architecture with seeded random weights: SDXL's layout at toy size.

    resources/demo/train.py trains exactly these modules; change them together (and retrain).
    The text encoders have 32-wide hidden states, so the base UNet cross-attends to 64
    (text_encoder + text_encoder_2 concatenated, as in SDXL) and the refiner to 32
    (text_encoder_2 only); both take text_encoder_2's 32-wide pooled projection."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from core.local_tokenizers import clip_tokenizer

    tokenizer = clip_tokenizer(WORDS, max_length=16)
    text_cfg = dict(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=64,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer), projection_dim=32,
        max_position_embeddings=16,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg))
    torch.manual_seed(seed + 2)
    vae = AutoencoderKL(
        block_out_channels=[16, 32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        layers_per_block=1, norm_num_groups=8, sample_size=NATIVE_SIZE, force_upcast=False,
    )

    def unet(aesthetic: bool, cross_dim: int, s: int):
        torch.manual_seed(s)
        time_ids = 5 if aesthetic else 6
        return UNet2DConditionModel(
            sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(1, 2, 2),
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1, 1), projection_class_embeddings_input_dim=time_ids * 8 + 32,
            cross_attention_dim=cross_dim, norm_num_groups=16,
        )

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading",
    )
    return dict(
        tokenizer=tokenizer, text_encoder=text_encoder, text_encoder_2=text_encoder_2, vae=vae,
        scheduler=scheduler, base_unet=unet(False, 64, seed + 3), refiner_unet=unet(True, 32, seed + 4),
    )


def assemble(parts: dict):
    """Base and refiner pipelines over the given parts; they share the VAE and text_encoder_2."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
        tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer"], unet=parts["base_unet"],
        scheduler=parts["scheduler"],
    )
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=parts["vae"], text_encoder=None, text_encoder_2=parts["text_encoder_2"], tokenizer=None,
        tokenizer_2=parts["tokenizer"], unet=parts["refiner_unet"], scheduler=parts["scheduler"],
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
    )
    return base, refiner


def build_random(dest: Path, seed: int = 0) -> None:
    import shutil
    import tempfile

    base, refiner = assemble(components(seed))
    dest.mkdir(parents=True, exist_ok=True)
    for name, pipe in (("demo-base", base), ("demo-refiner", refiner)):
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest))
        pipe.save_pretrained(tmp)
        target = dest / name
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
