"""Faults in the stored stage outputs (core/stage_store.py), each made as it happens for
real: a stored image with every third byte inverted, one replaced by an 8×8 image with a
valid digest, bit flips in an SDXL ensemble's stored latents, `cache/stages` a file, a
read-only folder, a full disk. A damaged entry is a miss with one notice, the stage is
recomputed to the whole chain's result and its entry replaced; a cache that cannot be
written is one notice and never a failed job."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from core import events as ev
from core import paths
from core.models import ModelCache
from core.project import Project, Stage
from core.stage_store import StageStore, StoredOutput
from tests.engine_helpers import of, pixels

PROMPT = "a red circle on a blue background"


def pixel_chain(tiny_models, stages: int = 2) -> Project:
    sd = str(tiny_models["sd"])
    chain = [Stage(sd, steps=4, name="base")] + [
        Stage(sd, steps=4, handoff="pixel", strength=0.5, seed=20 + n, name=f"refiner {n + 1}") for n in range(stages - 1)]
    return Project(prompt=PROMPT, width=32, height=32, seed=3, stages=chain)


def ensemble(tiny_models) -> Project:
    return Project(prompt=PROMPT, width=32, height=32, seed=3, stages=[
        Stage(str(tiny_models["sdxl"]), steps=8, name="base"),
        Stage(str(tiny_models["sdxl_refiner"]), steps=8, handoff="ensemble", switch_at=0.7, name="refiner")])


def run_from(p, tmp_path, from_stage, store=None, models=None, sub="out") -> list:
    from core.engine import OutputPlan, run

    return list(run(p, OutputPlan.in_dir(tmp_path / sub, "job"), models=models, from_stage=from_stage, store=store))


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def tensor_span(path: Path, name: str) -> tuple[int, int]:
    """Where a tensor's bytes are in a safetensors file (from its header)."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    start, end = json.loads(data[8:8 + length])[name]["data_offsets"]
    return 8 + length + start, 8 + length + end


def invert_every_third_byte(path: Path, span: tuple[int, int] | None = None) -> None:
    data = bytearray(path.read_bytes())
    start, end = span or (0, len(data))
    for i in range(start, end, 3):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def damaged_notices(events) -> list[str]:
    return [n.message for n in of(events, ev.Notice) if "damaged" in n.message]


def assert_recomputed_and_replaced(events, full, p, tmp_path, folder, models):
    """Stage 1 ran again (one notice), the final is the whole chain's, and the entry was
    replaced: the next re-run (a new store, as after a restart) reuses it."""
    assert damaged_notices(events) == ["stored output for stage 1 was damaged; recomputing"]
    assert not of(events, ev.JobFailed)
    done = of(events, ev.StageFinished)
    assert [d.reused for d in done] == [False, False]
    assert np.array_equal(pixels(done[-1].image), pixels(full[-1].image))
    again = run_from(p, tmp_path, 1, StageStore(folder), models, sub="after")
    assert [d.reused for d in of(again, ev.StageFinished)] == [True, False] and not damaged_notices(again)
    assert np.array_equal(pixels(of(again, ev.StageFinished)[-1].image), pixels(full[-1].image))


@pytest.mark.parametrize("where", ["image", "file"])
def test_a_stored_image_with_every_third_byte_inverted_is_recomputed(tiny_models, tmp_path, where):
    p, models, folder = pixel_chain(tiny_models), ModelCache(), tmp_path / "stages"
    full = of(run_from(p, tmp_path, None, StageStore(folder), models, sub="full"), ev.StageFinished)
    (entry,) = entries(folder)
    invert_every_third_byte(entry, tensor_span(entry, "image") if where == "image" else None)
    events = run_from(p, tmp_path, 1, StageStore(folder), models)  # a new store: nothing in memory
    assert_recomputed_and_replaced(events, full, p, tmp_path, folder, models)


def test_an_8x8_image_stored_with_a_valid_digest_is_the_wrong_size_and_recomputed(tiny_models, tmp_path):
    from PIL import Image

    p, models, folder = pixel_chain(tiny_models), ModelCache(), tmp_path / "stages"
    full = of(run_from(p, tmp_path, None, StageStore(folder), models, sub="full"), ev.StageFinished)
    (entry,) = entries(folder)
    # Written by the store itself: its digest is right, only the size tells.
    assert StageStore(folder).put(entry.stem, StoredOutput(Image.new("RGB", (8, 8), (255, 0, 0)))) is None
    events = run_from(p, tmp_path, 1, StageStore(folder), models)
    assert_recomputed_and_replaced(events, full, p, tmp_path, folder, models)


def test_bit_flips_in_an_sdxl_ensembles_stored_latents_are_recomputed(tiny_models, tmp_path):
    p, models, folder = ensemble(tiny_models), ModelCache(), tmp_path / "stages"
    full = of(run_from(p, tmp_path, None, StageStore(folder), models, sub="full"), ev.StageFinished)
    (entry,) = entries(folder)
    start, end = tensor_span(entry, "latents")
    data = bytearray(entry.read_bytes())
    for i in range(start + 3, end, 64):  # the high byte of some float32s: sign and exponent bits
        data[i] ^= 0x41
    entry.write_bytes(bytes(data))
    events = run_from(p, tmp_path, 1, StageStore(folder), models)
    assert_recomputed_and_replaced(events, full, p, tmp_path, folder, models)


def test_an_entry_for_another_key_copied_over_is_damaged(tiny_models, tmp_path):
    p, models, folder = pixel_chain(tiny_models), ModelCache(), tmp_path / "stages"
    full = of(run_from(p, tmp_path, None, StageStore(folder), models, sub="full"), ev.StageFinished)
    (entry,) = entries(folder)
    other = pixel_chain(tiny_models)
    other.prompt = "something else"
    run_from(other, tmp_path, None, StageStore(folder), models, sub="other")
    (other_entry,) = [e for e in entries(folder) if e != entry]
    entry.write_bytes(other_entry.read_bytes())  # a whole valid entry, of another recipe
    events = run_from(p, tmp_path, 1, StageStore(folder), models)
    assert_recomputed_and_replaced(events, full, p, tmp_path, folder, models)


# ---------------------------------------------------------------- a cache that cannot be written


def unwritable(kind: str, folder: Path, monkeypatch) -> None:
    """Make the default store's folder unwritable the way `kind` says."""
    import core.atomic

    if kind == "a file":
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.write_bytes(b"not a folder")
        return
    real = core.atomic.write_with
    if kind == "read-only":
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):  # root writes through the mode: fail as a read-only mount does
            code = errno.EROFS
        else:
            return
    else:
        code = errno.ENOSPC

    def write_with(path, writer):
        if Path(path).parent == folder:
            raise OSError(code, os.strerror(code))
        return real(path, writer)

    monkeypatch.setattr(core.atomic, "write_with", write_with)


@pytest.mark.parametrize("kind", ["a file", "read-only", "a full disk"])
def test_a_cache_that_cannot_be_written_is_one_notice_and_the_job_runs(tiny_models, tmp_path, monkeypatch, kind):
    from core.engine import execute, OutputPlan

    folder = paths.cache_dir() / "stages"
    p, models = pixel_chain(tiny_models, stages=3), ModelCache()  # two stages to store, one notice
    with monkeypatch.context() as patch:
        unwritable(kind, folder, patch)
        events: list = []
        execute(p, events.append, out=OutputPlan.in_dir(tmp_path / "out", "job"), models=models)
        assert not of(events, ev.JobFailed), of(events, ev.JobFailed)
        assert len(of(events, ev.JobFinished)[0].paths) == 3
        assert all(Path(x).is_file() for x in of(events, ev.JobFinished)[0].paths)
        (notice,) = [n.message for n in of(events, ev.Notice) if "stored stage outputs" in n.message]
        assert str(folder) in notice and "kept in memory only" in notice
        if folder.is_dir():
            assert not list(folder.iterdir()), "nothing half-written left"
        # In this session the outputs are still reusable from memory.
        again = run_from(p, tmp_path, 2, models=models, sub="again")
        assert [d.reused for d in of(again, ev.StageFinished)] == [True, True, False]
        assert not of(again, ev.JobFailed)
    # Writable again: the next job stores its outputs.
    if folder.is_file():
        folder.unlink()
    elif folder.is_dir():
        folder.chmod(0o755)
    p.seed = 4
    fresh = run_from(p, tmp_path, None, models=models, sub="fresh")
    assert not [n for n in of(fresh, ev.Notice) if "stored stage outputs" in n.message]
    assert len(entries(folder)) == 2


def test_cli_run_from_stage_two_after_the_byte_inversion_recomputes_and_exits_0(tiny_models, tmp_path, capsys,
                                                                                 monkeypatch):
    from PIL import Image

    from core import project_file
    from core.cli import main

    path = project_file.save(tmp_path / "cat.handoff", project_file.ProjectDocument(pixel_chain(tiny_models)))
    assert main(["run", str(path), "--out", str(tmp_path / "a")]) == 0
    (entry,) = entries(paths.cache_dir() / "stages")
    invert_every_third_byte(entry)
    monkeypatch.setattr(StageStore, "_shared", {})  # a new process: nothing in memory
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--from-stage", "2"]) == 0
    out, err = capsys.readouterr()
    assert "stored output for stage 1 was damaged; recomputing" in out + err
    assert "reused" not in next(line for line in out.splitlines() if line.startswith("base"))
    a, b = (np.asarray(Image.open(d / "cat-2-refiner-1.png")) for d in (tmp_path / "a", tmp_path / "b"))
    assert np.array_equal(a, b)
