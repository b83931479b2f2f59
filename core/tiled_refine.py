"""The tiled refine: a pixel refine stage with `refine_tile` runs its img2img over
overlapping tiles of the image (as Ultimate SD Upscale and MultiDiffusion do), so a 2x-4x
final polish needs the memory of one tile, not of the whole image.

Each tile is refined at the stage's strength with the stage's prompt, guidance and
scheduler; the tiles are blended by core.upscalers.tiled_scale's feathered weights (the
same helper the model upscalers tile with). Tile k (row-major, from 0) is seeded with
`tile_seed(stage seed, k)` = (stage seed + k) mod 2**64 (the seed range): stable across runs, and tile 0
keeps the stage's own seed, so an image that fits one tile is the untiled refine, bit for
bit. Steps are reported across all tiles through the stage's own on_step; cancelling
stops between tiles and, through run_stage's callback, between steps within one."""
from __future__ import annotations

import dataclasses
from typing import Callable

from core.planning import StagePlan
from core.project import MAX_SEED, Project
from core.stage_call import StageInput, build_call
from core.stage_run import StageOutput, run_stage
from core.upscalers import refine_overlap, tiled_scale, to_image, to_tensor


def tile_seed(stage_seed: int, index: int) -> int:
    """The seed of tile `index` (row-major, from 0) of a stage seeded `stage_seed`."""
    return (stage_seed + index) % (MAX_SEED + 1)


def run_tiled(pipe, p: StagePlan, project: Project, given: StageInput, device: str,
              on_step: Callable[[int, int], None], cancelled: Callable[[], bool]) -> StageOutput:
    """Refine `given.image` (already at p.size) tile by tile and blend the tiles.

    Live previews are not shown for a tiled stage: a tile's preview is not the stage's
    image. The stage hands over the blended image only (planning makes the next stage a
    pixel one)."""
    import torch

    tile = p.stage.refine_tile
    total_tiles = p.tile_count()
    seed = p.stage.effective_seed(project.seed)
    totals = {"steps": 0, "denoise": 0.0, "decode": 0.0, "tile": 0}

    def refine(crop):
        k = totals["tile"]
        image = to_image(crop)
        # The plan of one tile: the stage at the tile's size, handing its image to the blend.
        tp = dataclasses.replace(p, size=image.size, hands_over="image")
        generator = torch.Generator("cpu").manual_seed(tile_seed(seed, k))
        call = build_call(pipe, tp, project, StageInput(image=image), generator)

        def tile_step(i: int, n: int) -> None:
            on_step(k * n + i, total_tiles * n)

        out = run_stage(pipe, tp, call, StageInput(image=image), device, tile_step, cancelled)
        totals["steps"] += out.steps_run
        totals["denoise"] += out.denoise_seconds
        totals["decode"] += out.decode_seconds
        totals["tile"] = k + 1
        return to_tensor(out.image)

    blended = tiled_scale(refine, to_tensor(given.image), 1, tile, refine_overlap(tile), cancelled)
    return StageOutput(to_image(blended), None, totals["steps"], totals["denoise"], totals["decode"])
