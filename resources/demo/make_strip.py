"""Render a strip of demo-family outputs to resources/demo/strip.png.

One row per prompt; columns: the base alone, the ensemble handoff (base to 0.8, refiner
from 0.8 on the latents), then the refiner on the base's image (pixel handoff) at a sweep
of strengths. Upscaled with NEAREST so the 64x64 pixels stay visible.

    python resources/demo/make_strip.py [--models resources/demo] [--out resources/demo/strip.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

PROMPTS = [
    "a red circle on a blue background",
    "a small yellow star on a green gradient background",
    "a big white triangle on a black background",
    "a blue square on an orange striped background",
    "a pink star on a purple dotted background",
    "a large green circle on a gray textured background",
]
STRENGTHS = [0.1, 0.25, 0.4, 0.6, 0.9]


def main(argv=None) -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=here, help="folder holding demo-base/ and demo-refiner/")
    ap.add_argument("--out", type=Path, default=here / "strip.png")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from diffusers import DiffusionPipeline

    base = DiffusionPipeline.from_pretrained(args.models / "demo-base")
    refiner = DiffusionPipeline.from_pretrained(args.models / "demo-refiner")
    for p in (base, refiner):
        p.set_progress_bar_config(disable=True)

    def g():
        return torch.Generator().manual_seed(args.seed)

    common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance)
    rows = []
    for prompt in PROMPTS:
        image = base(prompt, generator=g(), **common).images[0]
        latents = base(prompt, generator=g(), denoising_end=0.8, output_type="latent", **common).images
        ensemble = refiner(prompt, image=latents, denoising_start=0.8, generator=g(), **common).images[0]
        sweep = [refiner(prompt, image=image, strength=s, generator=g(), **common).images[0] for s in STRENGTHS]
        rows.append((prompt, [image, ensemble, *sweep]))
        print(prompt, flush=True)

    labels = ["base", "ensemble 0.8"] + [f"refine {s}" for s in STRENGTHS]
    cell, pad, head, side = 64 * args.scale, 6, 22, 0
    width = len(labels) * (cell + pad) + pad
    height = head + len(rows) * (cell + 18 + pad) + pad
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for j, label in enumerate(labels):
        draw.text((pad + j * (cell + pad) + 4, 6), label, fill=(0, 0, 0))
    for i, (prompt, images) in enumerate(rows):
        y = head + i * (cell + 18 + pad)
        draw.text((pad + 4, y + 2), prompt, fill=(60, 60, 60))
        for j, im in enumerate(images):
            strip.paste(im.resize((cell, cell), Image.NEAREST), (side + pad + j * (cell + pad), y + 16))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out)
    print(f"wrote {args.out} ({strip.size[0]}x{strip.size[1]})")


if __name__ == "__main__":
    main()
