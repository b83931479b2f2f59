"""Faults, each injected where it happens for real: out of memory in each stage's load,
denoise and decode; a full disk while a stage's PNG or a project is saved; SIGINT and
SIGTERM at every point of a command-line job, from its imports to its shutdown; a process killed mid-save. After each,
the next job runs (or the process exits with its documented status and one line), what
was already written stays, and a project file is never truncated."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from core import events as ev
from core import project_file
from core.atomic import STALE_SECONDS, remove_stale_parts, write_bytes
from core.document import Document
from core.models import ModelCache
from core.project import Project, Stage
from tests.engine_helpers import of, run_job

ROOT = Path(__file__).resolve().parent.parent


def two_stage(steps: int = 2) -> Project:
    """The demo family with a pixel handoff, so each stage loads, denoises and decodes."""
    return Project(prompt="a red circle on a blue background", width=64, height=64, seed=1,
                   stages=[Stage("builtin:demo-base", steps=steps, name="base"),
                           Stage("builtin:demo-refiner", steps=steps * 2, handoff="pixel", strength=0.5, name="refiner")])


def oom(kind: str) -> BaseException:
    import torch

    if kind == "cuda":  # constructible on a CPU build too: it is a RuntimeError subclass
        return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return MemoryError()


@pytest.fixture(scope="module")
def models() -> ModelCache:
    return ModelCache()  # one cache across the faults: each must leave it usable


@pytest.mark.parametrize("kind", ["cuda", "ram"])
@pytest.mark.parametrize("phase", ["load", "denoise", "decode"])
@pytest.mark.parametrize("stage", [0, 1])
def test_out_of_memory_in_any_stage_and_phase_fails_readably_and_the_next_job_runs(
        models, tmp_path, monkeypatch, stage, phase, kind):
    import diffusers

    import core.engine

    running: list[int] = [-1]
    real_get, real_run = ModelCache.get, core.engine.run_stage
    count = {"loads": 0}

    def get(self, resolved, *a, **k):
        count["loads"] += 1
        if phase == "load" and count["loads"] == stage + 1:
            raise oom(kind)
        return real_get(self, resolved, *a, **k)

    def run_stage(pipe, p, *a, **k):
        running[0] = p.position
        return real_run(pipe, p, *a, **k)

    def failing(real):
        def wrapper(self, *a, **k):
            if running[0] == stage:
                raise oom(kind)
            return real(self, *a, **k)
        return wrapper

    monkeypatch.setattr(ModelCache, "get", get)
    monkeypatch.setattr(core.engine, "run_stage", run_stage)
    if phase == "denoise":
        monkeypatch.setattr(diffusers.UNet2DConditionModel, "forward", failing(diffusers.UNet2DConditionModel.forward))
    if phase == "decode":
        monkeypatch.setattr(diffusers.AutoencoderKL, "decode", failing(diffusers.AutoencoderKL.decode))
    events = run_job(two_stage(), tmp_path / "faulty", models, on_event=lambda e: None)
    (failed,) = of(events, ev.JobFailed)
    expected = "out of GPU memory: lower the size" if kind == "cuda" else "out of memory (RAM): lower the size"
    assert failed.message.startswith(expected) and "\n" not in failed.message, failed.message
    saved = [e.path for e in of(events, ev.StageSaved)]  # earlier stages' images stay, and are said to
    assert sorted(p.name for p in (tmp_path / "faulty" / "out").iterdir()) == sorted(p.name for p in saved)
    assert len(saved) == stage
    for path in saved:
        with Image.open(path) as im:
            assert im.size == (64, 64)

    monkeypatch.undo()
    events = run_job(two_stage(), tmp_path / "next", models)
    assert of(events, ev.JobFinished) and len(of(events, ev.StageSaved)) == 2


def test_a_full_disk_while_a_stage_is_saved_fails_the_job_and_keeps_the_rest(tmp_path, monkeypatch):
    import core.metadata

    real = core.metadata.save_png

    def save_png(image, path, project, index, **kw):
        if index == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(image, path, project, index, **kw)

    monkeypatch.setattr(core.metadata, "save_png", save_png)
    models = ModelCache()
    events = run_job(two_stage(), tmp_path, models, on_event=lambda e: None)
    (failed,) = of(events, ev.JobFailed)
    assert "stage 2's image could not be written to" in failed.message and "No space left on device" in failed.message
    out = tmp_path / "out"
    assert sorted(f.name for f in out.iterdir()) == ["job-1-base.png"]  # written, and no .part left
    monkeypatch.undo()
    assert of(run_job(two_stage(), tmp_path, models), ev.JobFinished)


def test_a_full_disk_at_the_fsync_leaves_no_part_and_the_old_file(tmp_path, monkeypatch):
    target = write_bytes(tmp_path / "a.png", b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and [f.name for f in tmp_path.iterdir()] == ["a.png"]


def test_a_full_disk_while_saving_a_project_keeps_the_old_file_and_the_changes(tmp_path, monkeypatch):
    doc = Document(two_stage())
    path = doc.save(tmp_path / "p.handoff")
    before = path.read_bytes()
    doc.project.prompt = "changed"
    doc.set_modified(True)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        doc.save()
    assert path.read_bytes() == before and doc.modified, "the old file intact, the change still unsaved"
    assert [f.name for f in tmp_path.iterdir()] == ["p.handoff"]
    monkeypatch.undo()
    doc.save()
    assert project_file.load(path).project.prompt == "changed"


# ---------------------------------------------------------------- stale .part files


def test_stale_parts_are_removed_by_the_next_write_in_their_folder(tmp_path):
    import psutil

    dead = max(psutil.pids()) + 50_000
    while psutil.pid_exists(dead):
        dead += 1
    me = os.getpid()
    names = {
        "dead": f".p.handoff.{dead}.abcd1234.part",  # its process is gone
        "old": f".q.png.{me}.efgh5678.part",  # ours, but untouched for more than a minute
        "fresh": f".r.png.{me}.ijkl9012.part",  # ours and recent: a write in progress
        "legacy": ".s.png.mnop3456.part",  # no pid in the name: judged by age, and fresh
        "other": "download.part",  # not ours at all
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - STALE_SECONDS - 5
    os.utime(tmp_path / names["old"], (old, old))
    write_bytes(tmp_path / "next.png", b"data")
    left = {f.name for f in tmp_path.iterdir()}
    assert left == {names["fresh"], names["legacy"], names["other"], "next.png"}
    assert remove_stale_parts(tmp_path / "missing") == []  # a folder that cannot be listed is no error


# ---------------------------------------------------------------- a process killed mid-save

SAVER = r"""
import os, sys, time
sys.path.insert(0, {root!r})
from core import project_file
from core.project import Project, Stage

slow = os.environ.get("SLOW_FSYNC")
if slow:
    real = os.fsync
    def fsync(fd):
        print("fsync", flush=True)
        time.sleep(30)  # a slow disk: the kill comes while the new file is not yet in place
        real(fd)
    os.fsync = fsync
path = sys.argv[1]
n = 0
while True:
    n += 1
    doc = project_file.ProjectDocument(Project(prompt=f"version {{n}}", stages=[Stage("m")]), [
        project_file.HistoryRun(f"run{{n}}", "now", {{}}, [project_file.HistoryImage(0, "x", PNG)])])
    print("saving", n, flush=True)
    project_file.save(path, doc)
""".replace("PNG", "open(sys.argv[2], 'rb').read()")


def _saver(tmp_path: Path, slow: bool) -> subprocess.Popen:
    env = dict(os.environ, SLOW_FSYNC="1" if slow else "")
    return subprocess.Popen([sys.executable, "-c", SAVER.format(root=str(ROOT)), str(tmp_path / "p.handoff"),
                             str(tmp_path / "noise.png")], stdout=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def noise_png(tmp_path) -> Path:
    import numpy as np

    path = tmp_path / "noise.png"  # incompressible, so a save takes a while
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(path)
    return path


def test_a_process_killed_mid_save_leaves_the_old_project_whole(tmp_path, noise_png):
    project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(Project(prompt="version 0", stages=[Stage("m")])))
    # Killed while the new file is being synced: the old one is untouched, the .part is left.
    proc = _saver(tmp_path, slow=True)
    while proc.stdout.readline().strip() != "fsync":
        pass
    proc.kill()
    proc.wait()
    assert project_file.load(tmp_path / "p.handoff").project.prompt == "version 0"
    parts = [f for f in tmp_path.iterdir() if f.name.endswith(".part")]
    assert [f.name.split(".")[3] for f in parts] == [str(proc.pid)]
    # Killed at any moment of a run of real saves: the file is one whole version or another.
    for delay in (0.05, 0.13, 0.21, 0.34):
        proc = _saver(tmp_path, slow=False)
        proc.stdout.readline()
        time.sleep(delay)
        proc.kill()
        proc.wait()
        doc = project_file.load(tmp_path / "p.handoff")
        assert doc.project.prompt.startswith("version ")
    # The next save in the folder removes what the dead processes left.
    project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(Project(prompt="after", stages=[Stage("m")])))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["noise.png", "p.handoff"]


# ---------------------------------------------------------------- signals at any point of a CLI job


def _generate(out: Path, steps: int, refiner: bool) -> list[str]:
    args = ["generate", "a red circle", "--model", "builtin:demo-base", "--size", "64x64", "--steps", str(steps),
            "--seed", "1", "--out", str(out)]
    if refiner:
        args += ["--refiner", "builtin:demo-refiner", "--handoff", "pixel", "--refiner-strength", "0.5",
                 "--refiner-steps", "1000"]
    return args


def _batch(folder: Path, jobs: int) -> list[str]:
    """A batch of `jobs` one-step demo jobs in `folder`, its images in folder/out."""
    folder.mkdir(parents=True)
    project = project_file.save(folder / "p.handoff", project_file.ProjectDocument(Project(
        prompt="a red circle", width=64, height=64, seed=1, stages=[Stage("builtin:demo-base", steps=1)])))
    (folder / "jobs.jsonl").write_text("".join(f'{{"seed": {n}}}\n' for n in range(jobs)))
    return ["batch", str(folder / "jobs.jsonl"), "--project", str(project), "--out", str(folder / "out")]


class _Job:
    """A CLI job that gets a signal the moment its stderr shows `marker`. The points a
    job prints nothing at (its imports, before its first job, between two, its shutdown)
    it names on stderr when HANDOFF_TEST_PHASE asks for them, and waits there for the
    signal: no fixed delay, so a loaded machine cannot move the signal to another point."""

    def __init__(self, args: list[str], sig: int, marker: str, phase: str = "") -> None:
        self.sig, self.marker = sig, marker
        env = dict(os.environ, PYTHONUNBUFFERED="1", HANDOFF_TEST_PHASE=phase)
        # SIGINT as a terminal sends it: not ignored, whatever the shell that started pytest did.
        self.proc = subprocess.Popen([sys.executable, "main.py", *args], cwd=ROOT, stderr=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self.sent = False
        self.thread = threading.Thread(target=self._watch)
        self.thread.start()

    def _watch(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if not self.sent and self.marker in line:
                self.proc.send_signal(self.sig)
                self.sent = True
        self.proc.wait()

    def result(self) -> tuple[int, list[str]]:
        self.thread.join(timeout=400)
        self.proc.stdout.close()
        return self.proc.returncode, self.lines


def test_sigint_and_sigterm_at_any_point_exit_with_their_status_and_one_line(tmp_path):
    # Every point of a command's life: its imports (no handler of the CLI's yet), a model
    # loading (the cancel is not looked at there), denoising between two stages, a batch
    # before its first job and between two, after its last (its status already decided),
    # and the shutdown after that.
    jobs = {
        "int-importing": _Job(_generate(tmp_path / "a" / "a.png", 1000, False), signal.SIGINT,
                              "handoff-phase: importing", "importing"),
        "term-importing": _Job(_generate(tmp_path / "b" / "a.png", 1000, False), signal.SIGTERM,
                               "handoff-phase: importing", "importing"),
        "term-loading": _Job(_generate(tmp_path / "c" / "a.png", 1000, False), signal.SIGTERM, "[1] base"),
        "int-between-stages": _Job(_generate(tmp_path / "d" / "a.png", 4, True), signal.SIGINT, "wrote"),
        "term-before-first-job": _Job(_batch(tmp_path / "e", 2), signal.SIGTERM, "handoff-phase: before-first-job",
                                      "before-first-job"),
        "int-between-jobs": _Job(_batch(tmp_path / "f", 2), signal.SIGINT, "handoff-phase: between-jobs",
                                 "between-jobs"),
        "int-finishing": _Job(_batch(tmp_path / "h", 1), signal.SIGINT, "handoff-phase: finishing", "finishing"),
        "term-shutdown": _Job(_batch(tmp_path / "g", 1), signal.SIGTERM, "handoff-phase: shutdown", "shutdown"),
    }
    try:
        for name, job in jobs.items():
            code, lines = job.result()
            text = "\n".join(lines)
            assert job.sent, (name, code, text)
            assert code == (130 if job.sig == signal.SIGINT else 143), (name, code, text)
            assert [line for line in lines if line.startswith("handoff:")] == ["handoff: cancelled"], (name, text)
            assert "Traceback" not in text and "Error" not in text, (name, text)
    finally:  # a failed check leaves no job running on
        for job in jobs.values():
            if job.proc.poll() is None:
                job.proc.kill()
                job.proc.wait()
    # What a job wrote before the signal stays (the base's image, with its recipe).
    with Image.open(tmp_path / "d" / "a-1-base.png") as im:
        assert im.size == (64, 64) and "handoff" in im.text
    assert not (tmp_path / "c" / "a.png").exists() and not (tmp_path / "d" / "a.png").exists()
    # A batch stops where the signal came: no job before the first, one before the second,
    # and the shutdown keeps everything the batch wrote.
    assert not (tmp_path / "e" / "out").exists() or not list((tmp_path / "e" / "out").iterdir())
    assert sorted(p.name for p in (tmp_path / "f" / "out").iterdir()) == ["job-1-1-stage-1.png"]
    for folder in "gh":
        assert sorted(p.name for p in (tmp_path / folder / "out").iterdir()) == ["job-1-1-stage-1.png"]
    # Nothing half-written anywhere.
    assert not [p for p in tmp_path.rglob("*.part")]


def test_the_exit_codes_are_documented():
    readme = (ROOT / "README.md").read_text()
    from core.cli import EXIT_CANCELLED, EXIT_FAILED, EXIT_TERMINATED, EXIT_USAGE

    for text in (f"| {EXIT_USAGE} | bad input", f"| {EXIT_FAILED} | the job failed", f"| {EXIT_CANCELLED} | cancelled",
                 f"| {EXIT_TERMINATED} | stopped with SIGTERM"):
        assert text in readme, text
