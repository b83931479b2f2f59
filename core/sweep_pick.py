"""Picking a sweep's best cell: each cell's final image is scored (core.scorers), cells whose
drift from their input is past the limit (SSIM below `max_drift`, core.drift) are passed
over, and the best one's values become the project's setting: written into the project
file, atomically, by `sweep --pick`; applied to the open document as an undoable edit by
the window's Sweep tab. The grid marks the pick (core.sweep.make_grid)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import ProjectError
from core.project_file import IMAGE_SUFFIXES
from core.sweep import Axis, Cell, SweepError, SweepResult, make_grid, write_summary


@dataclass
class Pick:
    cell: Cell | None  # None: no cell qualified
    why: str  # what was passed over, for the one line the command prints


@dataclass(frozen=True)
class PickRequest:
    """What a sweep is asked to pick by: a scorer reference (core.scorer_refs) and the
    least SSIM a cell may keep to its input (None: no limit)."""
    scorer: str
    max_drift: float | None = None


def check_target(path: Path) -> None:
    """Raise SweepError, before the sweep runs, when the pick could not be written back."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise SweepError(f"--pick writes the chosen setting into the project file, and {path.name} is an image: "
                         "save the project as a .handoff file first")


def pick_cell(result: SweepResult, scorer_ref: str, max_drift: float | None, cache=None) -> Pick:
    """The best-scored cell whose drift stays within the limit; every cell's score is set."""
    from core.devices import best_device
    from core.scorer_refs import resolve_scorer
    from core.scorers import ScorerCache

    scorer = (cache or ScorerCache()).get(resolve_scorer(scorer_ref), best_device())
    best, passed = None, []
    for cell in result.cells:
        if cell.image is None:
            continue
        _, last = cell.project.enabled_stages()[-1]
        cell.score = scorer.score(cell.image, last.effective_prompt(cell.project.prompt))
        if max_drift is not None and (cell.drift is None or cell.drift.ssim < max_drift):
            passed.append(", ".join(cell.labels))
            continue
        if best is None or cell.score > best.score:
            best = cell
    why = f"past the drift limit (SSIM < {max_drift:g}) or unmeasured: {'; '.join(passed)}" if passed else ""
    return Pick(best, why)


def mark(result: SweepResult, x: Axis, y: Axis | None, out_dir: Path, picked: Cell) -> None:
    """Redraw the grid and the summary with the scores and the pick."""
    if result.grid is None:
        return
    make_grid(result.cells, x, y, picked=picked).save(result.grid)
    write_summary(Path(out_dir) / "sweep.json", result.cells, x, y, result.grid, picked)


def apply_pick(project, cell: Cell, x: Axis, y: Axis | None) -> None:
    """The picked cell's values set in `project` (the file's, or the window's open one)."""
    x.apply(project, cell.values[0])
    if y is not None:
        y.apply(project, cell.values[1])


def write_setting(path: Path, cell: Cell, x: Axis, y: Axis | None) -> None:
    """The picked cell's values as the project file's setting (its history kept), atomically."""
    from core import project_file
    from core.atomic import write_text

    path = Path(path)
    doc = project_file.load(path)
    apply_pick(doc.project, cell, x, y)
    if path.suffix.lower() == ".json":
        if doc.source is not None:
            raise ProjectError([f"{path.name} is another tool's graph: --pick writes Handoff project files only"])
        write_text(path, json.dumps(doc.project.to_dict(), indent=1))
    else:
        project_file.save(path, doc)
