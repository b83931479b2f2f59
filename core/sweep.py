"""Sweeps: one stage parameter (or the project's seed) on X and optionally another on Y,
every cell a full job, the results in a labelled grid.

    2.strength=0.1,0.2,0.3     stage 2's strength (stage numbers are 1-based)
    seed=1,2,3                 the project's seed (every stage that does not set its own)
    3.lora1.weight=0.5,1       the weight of stage 3's first LoRA
    2.prompt_suffix=sharp|film grain, 35mm   values split on '|' when there is one, else ','

Work shared between cells is done once: cells run through the engine's re-run-from-stage
path, so cells that share the recipe of stages 1..N-1 share its stored output (a strength
sweep of stage 2 runs stage 1 once per seed).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core import events as ev
from core.errors import ProjectError
from core.project import MAX_SEED, Project, validate

PICK_COLOUR, PICK_FRAME = (0, 160, 0), 3  # the frame round the picked cell (sweep --pick)
FLOATS = ("strength", "switch_at", "guidance", "lora_weight")
INTS = ("steps", "seed")
TEXTS = ("scheduler", "model", "prompt_suffix")
STAGE_PARAMS = FLOATS + INTS + TEXTS
PROJECT_PARAMS = ("seed",)
# Cells a sweep may have unless asked for more (--max-cells): each is a whole job, and a
# 1000 x 1000 grid was still being built after two minutes.
MAX_CELLS = 10_000


class SweepError(ProjectError):
    """A sweep specification that cannot run, in one line."""

    def __init__(self, message: str):
        super().__init__([message])


@dataclass(frozen=True)
class Axis:
    param: str
    values: tuple
    stage: int | None = None  # index in project.stages; None: a project-level parameter
    lora: int = 0  # for lora_weight: which LoRA of the stage

    @property
    def name(self) -> str:
        if self.stage is None:
            return self.param
        if self.param == "lora_weight":
            return f"{self.stage + 1}.lora{self.lora + 1}.weight"
        return f"{self.stage + 1}.{self.param}"

    def label(self, value: Any) -> str:
        return f"{self.name}={value:g}" if isinstance(value, float) else f"{self.name}={value}"

    def apply(self, project: Project, value: Any) -> None:
        if self.stage is None:
            project.seed = value
            return
        stage = project.stages[self.stage]
        if self.param == "lora_weight":
            stage.loras[self.lora].weight = value
        else:
            setattr(stage, self.param, value)


def stage_params(project: Project, index: int) -> tuple[str, ...]:
    """What stage `index` can be swept on, by its position in the chain: a stage that
    generates from noise has no strength or switch point, `switch_at` belongs to an
    ensemble handoff and `strength` to a pixel or latent one. An "auto" handoff takes the
    one of what the plan will make of it (auto_knob); both while a model's family is not
    known yet. The panel's list and parse_axis (the CLI's sweep) both ask here."""
    stage = project.stages[index]
    enabled = [i for i, _ in project.enabled_stages()]
    generates = bool(enabled) and index == enabled[0] and project.init_image is None
    dropped: set[str] = set()
    if generates:
        dropped |= {"strength", "switch_at"}
    elif enabled and index == enabled[0]:
        dropped.add("switch_at")  # it refines the init image: there is no schedule to share
    elif stage.handoff == "ensemble":
        dropped.add("strength")
    elif stage.handoff in ("pixel", "latent"):
        dropped.add("switch_at")
    elif stage.handoff == "auto":
        knob = auto_knob(project, index)
        if knob is not None:
            dropped.add("strength" if knob == "switch_at" else "switch_at")
    if not stage.loras:
        dropped.add("lora_weight")
    return tuple(p for p in STAGE_PARAMS if p not in dropped)


def auto_knob(project: Project, index: int) -> str | None:
    """Which of `switch_at` and `strength` a later stage's "auto" handoff runs by, as
    core.planning decides it from the two models' families (read from their metadata, no
    weights): `switch_at` for an ensemble, `strength` for a latent or pixel refine (what a
    tiled refine or an upscaler before it always is). None while a family is not known."""
    from core.interop.chain import is_upscaler
    from core.model_info import info_for
    from core.planning import auto_ensembles

    before = [i for i, _ in project.enabled_stages() if i < index]
    if not before:
        return None
    stage, prev = project.stages[index], project.stages[before[-1]]
    if stage.refine_tile or prev.refine_tile or is_upscaler(prev.model):
        return "strength"
    family, previous = info_for(stage.model).fam, info_for(prev.model).fam
    if family is None or previous is None:
        return None
    return "switch_at" if auto_ensembles(stage, previous, family) else "strength"


def _position_word(project: Project, index: int) -> str:
    enabled = [i for i, _ in project.enabled_stages()]
    if enabled and index == enabled[0] and project.init_image is None:
        return "generates from noise"
    if enabled and index == enabled[0]:
        return "refines the init image"
    handoff = project.stages[index].handoff
    knob = auto_knob(project, index) if handoff == "auto" else None
    if knob is not None:
        runs = "an ensemble" if knob == "switch_at" else "a latent or pixel refine"
        return f"takes an 'auto' handoff, which runs as {runs} for these models"
    return f"takes {'an' if handoff[:1] in 'aeiou' else 'a'} '{handoff}' handoff"


_SPEC = re.compile(r"\s*(?:(\d+)\.)?([a-z_]+?)(?:(\d+)?\.weight|(\d+))?\s*=(.*)", re.S)


def parse_axis(spec: str, project: Project) -> Axis:
    """An axis from 'N.param=v1,v2,...' (or 'seed=...'), checked against the project."""
    m = _SPEC.fullmatch(spec)
    if not m:
        raise SweepError(f"'{spec}' is not PARAM=VALUES or STAGE.PARAM=VALUES (e.g. 2.strength=0.1,0.2)")
    number, param, lora_a, lora_b, raw = m.groups()
    lora_n = lora_a or lora_b
    if param in ("lora", "loras") or lora_n is not None:
        if param not in ("lora", "loras"):
            raise SweepError(f"'{spec}': only a LoRA takes a number (N.loraK.weight)")
        param = "lora_weight"
    if number is None:
        if param not in PROJECT_PARAMS:
            raise SweepError(f"'{spec}': a project-level sweep takes {', '.join(PROJECT_PARAMS)}; "
                             f"a stage parameter needs its stage number (e.g. 2.{param})")
        stage = None
    else:
        stage = int(number) - 1
        if not 0 <= stage < len(project.stages):
            raise SweepError(f"'{spec}': the project has stages 1..{len(project.stages)}")
        if param not in STAGE_PARAMS:
            names = ", ".join(p for p in STAGE_PARAMS if p != "lora_weight")
            raise SweepError(f"'{spec}': '{param}' cannot be swept (choose from: {names}, loraK.weight)")
        if param != "lora_weight" and param not in stage_params(project, stage):
            can = ", ".join(p for p in stage_params(project, stage) if p != "lora_weight")
            raise SweepError(f"'{spec}': stage {stage + 1} {_position_word(project, stage)}, so it has no "
                             f"{param} (it can sweep: {can})")
    lora = int(lora_n) - 1 if lora_n else 0
    if param == "lora_weight" and not 0 <= lora < len(project.stages[stage].loras):
        raise SweepError(f"'{spec}': stage {stage + 1} has {len(project.stages[stage].loras)} LoRA(s)")
    texts = [v.strip() for v in raw.split("|" if "|" in raw else ",")]
    if not texts or any(not t for t in texts):
        raise SweepError(f"'{spec}': an empty value in the list")
    kind = float if param in FLOATS else int if param in INTS else str
    try:
        values = tuple(kind(t) for t in texts)
    except ValueError:
        raise SweepError(f"'{spec}': the values must be {'numbers' if kind is float else 'whole numbers'}") from None
    wild = [v for v in values if param == "seed" and not 0 <= v <= MAX_SEED]
    if wild:
        raise SweepError(f"'{spec}': seed {wild[0]} is outside 0..{MAX_SEED}")
    return Axis(param, values, stage, lora)


@dataclass
class Cell:
    x: int
    y: int
    values: tuple  # (x value,) or (x value, y value)
    project: Project
    labels: list[str]
    path: Path | None = None  # the last stage's PNG
    image: Any = None
    input_image: Any = None  # what the last stage refined (for a before/after view)
    drift: Any = None  # core.drift.Drift of the swept stage (or the last refine), if any
    seconds: float = 0.0
    reused: int = 0  # stages whose stored output the cell reused
    error: str = ""
    score: float | None = None  # the final image's, when the sweep picks (core.sweep_pick)


@dataclass
class SweepResult:
    cells: list[Cell]
    grid: Path | None
    seconds: float = 0.0
    events: list = field(default_factory=list)
    x: Axis | None = None  # the axes the grid was laid out by (cell_at reads them back)
    y: Axis | None = None


def check_cell_count(x: Axis, y: Axis | None, max_cells: int = MAX_CELLS) -> int:
    """The number of cells, from the axes' lengths alone (no cell is built), or SweepError
    when it is more than `max_cells`."""
    count = len(x.values) * (len(y.values) if y is not None else 1)
    if count > max_cells:
        raise SweepError(f"{count:,} cells ({len(x.values):,} x {len(y.values) if y else 1:,}) are more than "
                         f"{max_cells:,}: use fewer values, or allow them with --max-cells {count}")
    return count


def cells(project: Project, x: Axis, y: Axis | None = None) -> list[Cell]:
    """Every cell's project, checked: a value that cannot run fails here, before any job."""
    out = []
    for yi, yv in enumerate(y.values if y else (None,)):
        for xi, xv in enumerate(x.values):
            p = project.copy()
            x.apply(p, xv)
            labels = [x.label(xv)]
            if y is not None:
                y.apply(p, yv)
                labels.append(y.label(yv))
            try:
                validate(p)
            except ProjectError as exc:
                raise SweepError(f"{', '.join(labels)}: {exc}") from None
            out.append(Cell(xi, yi, (xv,) if y is None else (xv, yv), p, labels))
    return out


def reuse_from(project: Project) -> int | None:
    """The stage every cell asks to start from: the last one. The engine then runs from the
    latest stage whose stored output fits the cell (so a strength sweep of stage 2 with the
    seed on Y runs stage 1 once per seed, and a sweep of the last stage reuses the rest)."""
    enabled = [i for i, _ in project.enabled_stages()]
    return enabled[-1] if len(enabled) > 1 else None


def run_sweep(project: Project, x: Axis, y: Axis | None, out_dir: Path, emit: Callable[[Any], None] = lambda e: None,
              models=None, store=None, cancel=None) -> SweepResult:
    """Run every cell (cells that share stages 1..N-1 share their stored output), write
    each cell's PNGs with their recipes under out_dir/cells and the grid as out_dir/grid.png.
    `emit` gets each cell's engine events wrapped as (cell, event)."""
    import time

    from core.engine import CancelToken, OutputPlan, execute
    from core.models import ModelCache

    models = models if models is not None else ModelCache()
    cancel = cancel or CancelToken()
    todo = cells(project, x, y)
    start_at = reuse_from(project)
    started = time.perf_counter()
    for cell in todo:
        if cancel.cancelled:
            break
        t0 = time.perf_counter()
        stem = cell_stem(cell, y is not None)
        seen: list = []

        def on_event(e, cell=cell, seen=seen):
            seen.append(e)
            emit((cell, e))

        execute(cell.project, on_event, out=OutputPlan(Path(out_dir) / "cells", stem), cancel=cancel,
                models=models, from_stage=start_at, store=store)
        cell.seconds = time.perf_counter() - t0
        _collect(cell, seen, x)
    return finish(todo, x, y, out_dir, time.perf_counter() - started)


def finish(todo: list[Cell], x: Axis, y: Axis | None, out_dir: Path, seconds: float) -> SweepResult:
    """The grid and the summary of cells that have run (here, or on a cluster)."""
    grid = None
    if any(c.image is not None for c in todo):
        grid = Path(out_dir) / "grid.png"
        make_grid(todo, x, y).save(grid)
        write_summary(Path(out_dir) / "sweep.json", todo, x, y, grid)
    return SweepResult(todo, grid, seconds, x=x, y=y)


def cell_stem(cell: Cell, two_axes: bool) -> str:
    return f"cell-{cell.x + 1}" + (f"-{cell.y + 1}" if two_axes else "")


def _collect(cell: Cell, events: list, x: Axis) -> None:
    done = [e for e in events if isinstance(e, ev.JobFinished)]
    failed = [e for e in events if isinstance(e, (ev.JobFailed, ev.JobCancelled))]
    if failed:
        cell.error = getattr(failed[0], "message", "cancelled")
    if not done:
        return
    stages = done[0].stages
    last = stages[-1]
    cell.path, cell.image, cell.input_image = last.path, last.image, last.input_image
    cell.reused = sum(1 for s in stages if s.reused)
    swept = [s for s in stages if s.index == x.stage and s.drift is not None]
    drifts = swept or [s for s in stages if s.drift is not None]
    cell.drift = drifts[-1].drift if drifts else None


def cell_caption(cell: Cell) -> str:
    """A cell's drift in plain ASCII (the grid's font may lack Δ)."""
    if cell.error:
        return "failed"
    score = "" if cell.score is None else f"S {cell.score:.2f} "
    if cell.drift is None:
        return score.strip()
    return score + f"SSIM {cell.drift.ssim:.2f} dE {cell.drift.delta_e:.1f}" + (" !" if cell.drift.warning else "")


CAPTION_LINE = 14  # pixels a caption line takes in the grid


def grid_layout(todo: list[Cell], x: Axis, y: Axis | None, min_cell: int = 160) -> tuple[int, int, int, int, int]:
    """Where make_grid puts the cells: (left margin, top margin, cell width, cell height,
    caption height below each cell)."""
    sample = next(c.image for c in todo if c.image is not None)
    scale = max(1, -(-min_cell // sample.width))
    left = 0 if y is None else max(90, max(len(y.label(v)) for v in y.values) * 7)
    return left, CAPTION_LINE + 6, sample.width * scale, sample.height * scale, CAPTION_LINE + 4


def cell_at(result: SweepResult, px: float, py: float) -> Cell | None:
    """The cell whose picture (or caption) is at pixel (px, py) of the result's grid.png."""
    if result.x is None or not any(c.image is not None for c in result.cells):
        return None
    left, top, cw, ch, cap = grid_layout(result.cells, result.x, result.y)
    if px < left or py < top:
        return None
    col, row = int((px - left) // cw), int((py - top) // (ch + cap))
    return next((c for c in result.cells if (c.x, c.y) == (col, row)), None)


def make_grid(todo: list[Cell], x: Axis, y: Axis | None, min_cell: int = 160, picked: Cell | None = None):
    """The cells' final images in a grid: X values over the columns, Y values down the
    rows, each cell captioned with its drift (a '!' marks the warning band) and score; the
    `picked` cell framed in green (sweep --pick)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    left, top, cw, ch, cap = grid_layout(todo, x, y, min_cell)
    line = CAPTION_LINE
    cols, rows = len(x.values), (len(y.values) if y else 1)
    grid = Image.new("RGB", (left + cols * cw, top + rows * (ch + cap)), "white")
    draw = ImageDraw.Draw(grid)
    for xi, v in enumerate(x.values):
        draw.text((left + xi * cw + 4, 3), x.label(v), fill="black", font=font)
    for cell in todo:
        ox, oy = left + cell.x * cw, top + cell.y * (ch + cap)
        if cell.image is not None:
            grid.paste(cell.image.convert("RGB").resize((cw, ch), Image.NEAREST), (ox, oy))
        caption = cell_caption(cell)
        colour = "firebrick" if cell.error or cell.drift is not None and cell.drift.warning else "black"
        draw.text((ox + 4, oy + ch + 2), caption, fill=colour, font=font)
        if cell is picked:
            draw.rectangle((ox, oy, ox + cw - 1, oy + ch - 1), outline=PICK_COLOUR, width=PICK_FRAME)
    if y is not None:
        for yi, v in enumerate(y.values):
            draw.text((4, top + yi * (ch + cap) + ch // 2 - line // 2), y.label(v), fill="black", font=font)
    return grid


def write_summary(path: Path, todo: list[Cell], x: Axis, y: Axis | None, grid: Path,
                  picked: Cell | None = None) -> None:
    from core.atomic import write_text

    rows = [{"labels": c.labels, "path": str(c.path) if c.path else None, "seconds": round(c.seconds, 3),
             "reused_stages": c.reused, "drift": c.drift.to_dict() if c.drift else None, "error": c.error,
             **({"score": c.score} if c.score is not None else {}), **({"picked": True} if c is picked else {})}
            for c in todo]
    write_text(path, json.dumps({"x": x.name, "y": y.name if y else None, "grid": str(grid), "cells": rows},
                                indent=2))
