"""Render what the demo base's adapters do to resources/demo/adapters_strip.png.

Top: builtin:demo-controlnet on the held-out control scenes of tests/demo_measures.py (the
corner no ControlNet training shape was centred in; a triangle pointing down, a square on
its corner), one row each: the drawn control scene, its Canny edges, the base with the
ControlNet on those edges, the base alone (same prompt and seed), with each image's IoU
against the region the edges enclose.
Bottom: builtin:demo-lora, one row per prompt: the base alone and the base with the LoRA at
weight 1, two seeds each, with each image's checker score and black-and-white fraction
on its border frame (tests/demo_measures.py).
Upscaled with NEAREST so the 64x64 pixels stay visible.

    python resources/demo/make_adapters_strip.py [--models resources/demo] [--out resources/demo/adapters_strip.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from tests import demo_measures as dm  # noqa: E402

LORA_PROMPTS = [
    "a red circle on a checkered background",
    "a big blue square on a checkered background",
    "a small yellow star on a checkered background",
    "a red circle on a blue background",
    "a white star on a black striped background",
]


def main(argv=None) -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=here,
                    help="folder holding demo-base/, demo-controlnet/ and demo-lora/")
    ap.add_argument("--out", type=Path, default=here / "adapters_strip.png")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline

    def g(seed):
        return torch.Generator().manual_seed(seed)

    common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance)
    base = StableDiffusionXLPipeline.from_pretrained(args.models / "demo-base")
    base.set_progress_bar_config(disable=True)
    cn = ControlNetModel.from_pretrained(args.models / "demo-controlnet")
    control = StableDiffusionXLControlNetPipeline.from_pipe(base, controlnet=cn)
    control.set_progress_bar_config(disable=True)

    cn_rows = []
    for shape, center, r, angle, fg, bg in dm.HELD_OUT_SCENES:
        scene = dm.draw_scene(shape, center, r, angle, fg, bg)
        edges = dm.edge_map(scene)
        target = dm.edge_region(edges)
        prompt = f"a {fg} {shape} on a {bg} background"
        with_cn = control(prompt, image=edges, controlnet_conditioning_scale=1.0, generator=g(0), **common).images[0]
        without = base(prompt, generator=g(0), **common).images[0]
        cells = [(scene, "control scene"), (edges, "Canny edges"),
                 (with_cn, f"ControlNet IoU {dm.iou(dm.shape_mask(with_cn), target):.2f}"),
                 (without, f"no control IoU {dm.iou(dm.shape_mask(without), target):.2f}")]
        cn_rows.append((f"{prompt}  (centre {center[0]:.0f},{center[1]:.0f}, turned {angle:.0f} deg)", cells))
        print(prompt, flush=True)

    lora_rows = []
    frame = dm.frame()
    off = {p: [base(p, generator=g(s), **common).images[0] for s in (0, 1)] for p in LORA_PROMPTS}
    base.load_lora_weights(str(args.models / "demo-lora" / "demo-lora.safetensors"), adapter_name="demo")
    base.set_adapters(["demo"], adapter_weights=[1.0])
    for p in LORA_PROMPTS:
        on = [base(p, generator=g(s), **common).images[0] for s in (0, 1)]
        cells = [(im, f"{label} {s}: chk {dm.checker_score(im, where=frame):.2f} bw {dm.black_white_fraction(im, where=frame):.2f}")
                 for label, ims in (("base", off[p]), ("LoRA", on)) for s, im in enumerate(ims)]
        lora_rows.append((p, cells))
        print(p, flush=True)

    cell, pad, text = 64 * args.scale, 8, 16
    row_h = text + cell + text + pad
    sections = [("builtin:demo-controlnet: held-out placements (guidance 5, 20 steps, seed 0, scale 1.0)", cn_rows),
                ("builtin:demo-lora: the base alone, then with the LoRA at weight 1 (seeds 0 and 1)", lora_rows)]
    width = 4 * (cell + pad) + pad
    height = sum(24 + len(rows) * row_h for _, rows in sections) + pad
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    y = pad
    for title, rows in sections:
        draw.text((pad, y + 4), title, fill=(0, 0, 0))
        y += 24
        for label, cells in rows:
            draw.text((pad + 2, y + 2), label, fill=(60, 60, 60))
            for j, (im, caption) in enumerate(cells):
                x = pad + j * (cell + pad)
                strip.paste(im.convert("RGB").resize((cell, cell), Image.NEAREST), (x, y + text))
                draw.text((x + 2, y + text + cell + 2), caption, fill=(0, 0, 0))
            y += row_h
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out)
    print(f"wrote {args.out} ({strip.size[0]}x{strip.size[1]})")


if __name__ == "__main__":
    main()
