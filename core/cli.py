"""The command line, in the style of the two-command workflows users run today:

    python main.py generate "PROMPT" --model M [--init-image F --strength S] [--refiner M --switch-at F] --out FILE
    python main.py run PROJECT_FILE [--out DIR]
    python main.py inspect FILE              (the project a PNG/JPEG/WebP/.json/.handoff restores)
    python main.py export PROJECT --comfyui OUT.json

Progress goes to stderr; the per-stage timing table is printed at the end. Bad input
exits with status 2 and a one-line reason, a job that fails with 1, a cancelled one 130.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from core import events as ev
from core.project import MAX_SEED, Project, Stage, snap, validate
from core.errors import ProjectError

EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 130


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handoff", description="Multi-stage image generation.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate (or refine) an image, optionally with a refiner stage")
    gen.add_argument("prompt")
    gen.add_argument("--model", required=True, help="Hub id, diffusers folder, .safetensors file or builtin:demo-base")
    gen.add_argument("--steps", type=int, default=30)
    gen.add_argument("--guidance", type=float, default=5.0)
    gen.add_argument("--seed", type=int, default=None, help="default: a random seed, printed and saved in the PNG")
    gen.add_argument("--size", default=None, help="WxH; default: the model's native size, or the init image's")
    gen.add_argument("--negative", default="")
    gen.add_argument("--scheduler", default=None)
    gen.add_argument("--init-image", type=Path, default=None, help="refine this image instead of generating")
    gen.add_argument("--strength", type=float, default=0.3, help="with --init-image: how much is re-generated")
    gen.add_argument("--refiner", default=None, help="a second stage's model")
    gen.add_argument("--switch-at", type=float, default=None, help="with --refiner: ensemble handoff at this fraction")
    gen.add_argument("--refiner-strength", type=float, default=0.3, help="with --refiner and no --switch-at")
    gen.add_argument("--refiner-steps", type=int, default=None, help="default: --steps")
    gen.add_argument("--refiner-suffix", default="", help="detail terms added to the prompt for the refiner")
    gen.add_argument("--handoff", choices=["auto", "pixel", "latent"], default="auto",
                     help="with --refiner and no --switch-at")
    gen.add_argument("--upscale", type=float, default=1.0,
                     help="resize by this factor before refining (hires fix): the refiner's input, or the init image")
    gen.add_argument("--memory", choices=["auto", "sequential", "resident", "offload"], default="auto")
    gen.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    gen.add_argument("--out", type=Path, required=True, help="the final image; earlier stages go beside it")

    runp = sub.add_parser("run", help="run a saved project (.handoff, .json, a ComfyUI workflow, or an image with a "
                                       "recipe: Handoff's, A1111's, ComfyUI's, InvokeAI's, Fooocus's or NovelAI's)")
    runp.add_argument("project", type=Path)
    runp.add_argument("--out", type=Path, default=None, help="output folder (default: Handoff's outputs folder)")

    insp = sub.add_parser("inspect", help="print the project a file restores (any PNG, JPEG, WebP, .json or .handoff) "
                                          "as JSON, and what could not be mapped on stderr; runs nothing")
    insp.add_argument("file", type=Path)

    exp = sub.add_parser("export", help="write a project as another tool's file")
    exp.add_argument("project", type=Path, help="a .handoff, .json or an image with a recipe")
    exp.add_argument("--comfyui", type=Path, required=True, help="the ComfyUI workflow (.json) to write")
    return parser


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise UsageError(f"--size '{text}' is not WIDTHxHEIGHT (e.g. 1024x1024)")
    return int(m.group(1)), int(m.group(2))


def project_from_args(args) -> Project:
    from core.models import parse_ref, resolve
    from core.errors import ModelError

    seed = args.seed if args.seed is not None else random.randint(0, MAX_SEED)
    stages = [Stage(model=args.model, steps=args.steps, guidance=args.guidance, scheduler=args.scheduler,
                    strength=args.strength, name="refine" if args.init_image else "base",
                    handoff="pixel" if args.init_image else "auto")]
    if args.refiner:
        if args.switch_at is not None:
            stages.append(Stage(model=args.refiner, steps=args.steps, guidance=args.guidance, handoff="ensemble",
                                switch_at=args.switch_at, name="refiner", prompt_suffix=args.refiner_suffix))
        else:
            stages.append(Stage(model=args.refiner, steps=args.refiner_steps or args.steps, guidance=args.guidance,
                                handoff=args.handoff, strength=args.refiner_strength, name="refiner",
                                prompt_suffix=args.refiner_suffix))
    elif args.switch_at is not None:
        raise UsageError("--switch-at needs --refiner")
    if args.upscale != 1:
        if not (args.refiner or args.init_image):
            raise UsageError("--upscale resizes an image before it is refined: it needs --refiner or --init-image")
        if args.refiner and args.switch_at is not None:
            raise UsageError("--upscale needs a pixel handoff, not an ensemble (--switch-at)")
        stages[-1].upscale = args.upscale
    init = None
    if args.init_image is not None:
        init = _init_image_size(args.init_image)
    if args.size:
        width, height = parse_size(args.size)
    elif init is not None:
        width, height = init
    else:
        try:
            width = height = resolve(parse_ref(args.model)).native_size()
        except ModelError as exc:
            raise UsageError(str(exc)) from exc
    if init is not None and not args.size:
        # The init image's size, snapped to a multiple every family accepts.
        width, height = snap(width, 16), snap(height, 16)
    return Project(prompt=args.prompt, negative_prompt=args.negative, width=width, height=height, seed=seed,
                   stages=stages, init_image=str(args.init_image) if args.init_image else None,
                   memory_policy=args.memory, dtype=args.dtype)


def _init_image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UsageError(f"init image not found: {path}")
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise UsageError(f"init image {path} cannot be read as an image ({exc})") from exc


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("inspect", "export"):
        return inspect_file(args.file) if args.command == "inspect" else export_project(args.project, args.comfyui)
    _quiet_libraries()
    from core.engine import OutputPlan

    try:
        if args.command == "generate":
            project = project_from_args(args)
            out = OutputPlan.to_file(args.out)
        else:
            from core import project_file

            doc = project_file.load(args.project)
            project = doc.project
            if doc.source is not None:
                _say_import(doc.source)
            out = OutputPlan.in_dir(args.out, stem=args.project.stem)
        validate(project)
    except (UsageError, ProjectError) as exc:
        print(f"handoff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_project(project, out)


def _read(path: Path):
    """The project document a file restores, or a one-line reason it cannot be read."""
    from core import project_file

    try:
        return project_file.load(path), None
    except (ProjectError, OSError) as exc:
        return None, str(exc)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # A malformed file the reader did not foresee: still one line, never a traceback.
        return None, f"{path.name} cannot be read ({type(exc).__name__}: {exc})"


def _say_import(imported) -> None:
    for line in imported.summary(limit=50).splitlines():
        print(f"handoff: {line}", file=sys.stderr)


def inspect_file(path: Path) -> int:
    """`inspect FILE`: the restored project as JSON on stdout, the report on stderr."""
    import json

    doc, problem = _read(path)
    if doc is None:
        print(f"handoff: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(doc.project.to_dict(), indent=2))
    if doc.source is not None:
        _say_import(doc.source)
    else:
        print("handoff: a Handoff project: everything restored", file=sys.stderr)
    return 0


def export_project(path: Path, comfyui_out: Path) -> int:
    """`export PROJECT --comfyui OUT.json`: the project as a ComfyUI workflow."""
    from core.interop.comfyui import write_workflow

    doc, problem = _read(path)
    if doc is None:
        print(f"handoff: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        write_workflow(doc.project, comfyui_out)
    except (ProjectError, OSError) as exc:
        print(f"handoff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {comfyui_out}", file=sys.stderr)
    return 0


class _Progress:
    """What the command line prints for each engine event (stderr; the table goes to stdout)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.finished: ev.JobFinished | None = None
        self.status = 0
        self.handlers = {
            ev.StageStarted: self.stage_started, ev.Loading: lambda e: self.say(f"    {e.what}"),
            ev.Notice: lambda e: self.say(f"    note: {e.message}"), ev.Step: self.step,
            ev.StageFinished: self.stage_finished, ev.StageSaved: lambda e: self.say(f"    wrote {e.path}"),
            ev.JobFinished: self.job_finished, ev.JobFailed: self.job_failed, ev.JobCancelled: self.job_cancelled,
        }

    def __call__(self, event) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(event)

    @staticmethod
    def say(text: str, end: str = "\n") -> None:
        print(text, end=end, file=sys.stderr)

    def stage_started(self, e: ev.StageStarted) -> None:
        note = f" — {e.note}" if e.note else ""
        self.say(f"[{e.position + 1}] {e.label}: {e.model} ({e.handoff}){note}")

    def step(self, e: ev.Step) -> None:
        if self.tty:
            self.say(f"\r    step {e.step}/{e.total}  ({e.overall:4.0%} overall)", end="")
        elif e.step == e.total:
            self.say(f"    {e.total} steps")

    def stage_finished(self, e: ev.StageFinished) -> None:
        if self.tty:
            self.say("")
        if e.preview:
            self.say("    (latents handed over: the image written is a preview, not a decode)")

    def job_finished(self, e: ev.JobFinished) -> None:
        self.finished = e

    def job_failed(self, e: ev.JobFailed) -> None:
        self.say(f"handoff: {e.message}")
        self.status = EXIT_FAILED

    def job_cancelled(self, e: ev.JobCancelled) -> None:
        self.say("handoff: cancelled")
        self.status = EXIT_CANCELLED


def run_project(project: Project, out) -> int:
    from core.engine import CancelToken, run

    cancel = CancelToken()
    print(f"seed {project.seed}", file=sys.stderr)
    jobs = run(project, out=out, cancel=cancel)
    progress = _Progress()
    try:
        for event in jobs:
            progress(event)
    except KeyboardInterrupt:
        cancel.cancel()
        jobs.close()
        print("\nhandoff: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    if progress.finished is not None:
        print(timing_table(progress.finished.stages, progress.finished.seconds))
    return progress.status


def timing_table(stages: list[ev.StageFinished], total: float) -> str:
    rows = [("stage", "handoff", "steps", "load s", "denoise s", "decode s", "total s", "peak")]
    for s in stages:
        rows.append((s.label, s.handoff, str(s.steps_run), f"{s.load_seconds:.2f}", f"{s.denoise_seconds:.2f}",
                     f"{s.decode_seconds:.2f}", f"{s.total_seconds:.2f}", f"{s.peak_memory / 2**20:,.0f} MiB ({s.memory_kind})"))
    rows.append(("job", "", "", "", "", "", f"{total:.2f}", ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def _quiet_libraries() -> None:
    """Known, harmless library chatter hides real messages; errors still show."""
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
