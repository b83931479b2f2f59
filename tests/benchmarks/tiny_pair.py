"""What the engine benchmarks share: the tiny SDXL base + refiner they run (or the folders
given with --base/--refiner: on a GPU machine, full-size models), and those two loaded as
the plain diffusers pipelines a user would write, sharing the VAE and text_encoder_2."""
from __future__ import annotations

import tempfile
from pathlib import Path


def ensure_pair(args) -> None:
    """Fill args.base and args.refiner with a freshly built tiny pair where none is given."""
    if args.base is None:
        from tests.tiny_pipelines import build_sdxl_pair

        root = Path(tempfile.mkdtemp(prefix="handoff-bench-models-"))
        args.base, args.refiner = build_sdxl_pair(root / "base", root / "refiner")


def plain_pair(args):
    """(base, refiner, device): the pair as plain diffusers pipelines, fp16 on a GPU."""
    import torch
    from diffusers import DiffusionPipeline

    ensure_pair(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    base = DiffusionPipeline.from_pretrained(str(args.base), dtype=dtype).to(device)
    refiner = DiffusionPipeline.from_pretrained(str(args.refiner), dtype=dtype, vae=base.vae,
                                                text_encoder_2=base.text_encoder_2).to(device)
    for p in (base, refiner):
        p.set_progress_bar_config(disable=True)
    return base, refiner, device
