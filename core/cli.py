"""The command line, in the style of the two-command workflows users run today:

    python main.py generate "PROMPT" --model M [--init-image F --strength S] [--refiner M --switch-at F] --out FILE
    python main.py run PROJECT_FILE [--out DIR] [--from-stage N]
    python main.py sweep PROJECT_FILE --x "2.strength=0.1,0.2,0.3" [--y "seed=1,2,3"] --out DIR [--max-cells N] [--ray ADDRESS]
    python main.py batch JOBS.jsonl [--project PROJECT_FILE] --out DIR [--keep-going] [--ray ADDRESS]
    python main.py inspect FILE              (the project a PNG/JPEG/WebP/.json/.handoff restores)
    python main.py export PROJECT --comfyui OUT.json [--format ui|api]
    python main.py library add DIR | list [--kind K] | remove DIR | where NAME   (core.library_cli)

Progress goes to stderr; the per-stage timing table is printed at the end. Every error is
one line on stderr (`handoff: ...`) and an exit status: 2 for bad input (found before any
model loads), 1 for a job that failed, 130 for Ctrl-C (SIGINT) and 143 for SIGTERM.
"""
from __future__ import annotations

import argparse
import random
import re
import signal
import sys
import threading
from pathlib import Path

from core import events as ev
from core.errors import ModelError, ProjectError
from core.interrupts import CANCELLED_LINE, CODES, EXIT_CANCELLED, EXIT_TERMINATED, exit_code, exit_now, reached
from core.project import MAX_SEED, QUANTIZE, ControlNet, IPAdapter, Lora, Project, Stage, snap, validate
from core.sweep import MAX_CELLS

EXIT_FAILED, EXIT_USAGE = 1, 2  # EXIT_CANCELLED 130 and EXIT_TERMINATED 143: core.interrupts
# After the first SIGINT/SIGTERM the job stops within a denoising step; a model load does
# not look at the cancel, so after this long the process exits anyway (every write is
# atomic: nothing is left half-written, and a leftover .part is removed by the next write).
GRACE_SECONDS = 5.0


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handoff", description="Multi-stage image generation.",
        epilog="With no command, handoff opens the window (and the project file given, if any). "
               "handoff --install-desktop adds it to the Linux application menu and opens .handoff "
               "files with it; --uninstall-desktop takes that away.")
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
    gen.add_argument("--upscaler", default=None, metavar="FILE",
                     help="with --upscale: resize with this upscaler model (.pth or .safetensors: ESRGAN, "
                          "Real-ESRGAN, SwinIR, DAT...) instead of Lanczos")
    gen.add_argument("--refine-tile", type=int, default=0, metavar="PX",
                     help="refine in overlapping tiles of this side (the refiner, or the init image's refine): "
                          "a 2-4x polish in one tile's memory; 0: the whole image")
    big = gen.add_argument_group("big models (a stage's transformer/UNet from one file, quantized)")
    big.add_argument("--transformer", default=None, metavar="FILE",
                     help="the first stage's transformer/UNet from this file (.gguf, or an fp8/bf16/fp16 "
                          ".safetensors in the original or ComfyUI layout); the rest comes from --model")
    big.add_argument("--refiner-transformer", default=None, metavar="FILE", help="the same for the --refiner stage")
    big.add_argument("--quantize", choices=QUANTIZE, default="none", help="the first stage's denoiser weights")
    big.add_argument("--refiner-quantize", choices=QUANTIZE, default="none", help="the --refiner stage's")
    adapters = gen.add_argument_group("adapters (the first stage generates; LoRAs go on any stage)")
    adapters.add_argument("--lora", action="append", default=[], metavar="FILE_OR_ID[:WEIGHT]",
                          help="a LoRA on the first stage (repeatable): a .safetensors file, a folder, "
                               "owner/repo/file.safetensors or builtin:demo-lora; weight 1 unless given")
    adapters.add_argument("--refiner-lora", action="append", default=[], metavar="FILE_OR_ID[:WEIGHT]",
                          help="a LoRA on the --refiner stage (repeatable)")
    adapters.add_argument("--controlnet", default=None, metavar="MODEL",
                          help="a ControlNet (diffusers folder, Hub id or builtin:demo-controlnet) on the first stage")
    adapters.add_argument("--control-image", type=Path, default=None, help="with --controlnet: its control image")
    adapters.add_argument("--control-scale", type=float, default=0.8, help="with --controlnet (0..2)")
    adapters.add_argument("--control-range", default="0,1", metavar="START,END",
                          help="with --controlnet: the share of the schedule it acts on")
    pre = adapters.add_mutually_exclusive_group()
    pre.add_argument("--canny", default="100,200", metavar="LOW,HIGH", help="Canny thresholds (the default preprocessor)")
    pre.add_argument("--no-preprocess", action="store_true", help="the control image is a ready edge or depth map")
    adapters.add_argument("--ip-adapter", default=None, metavar="MODEL",
                          help="an IP-Adapter's .safetensors (its image encoder in image_encoder/ beside it, "
                               "or owner/repo/subfolder/file.safetensors)")
    adapters.add_argument("--ip-image", type=Path, action="append", default=[], help="a reference image (repeatable)")
    adapters.add_argument("--ip-scale", type=float, action="append", default=[],
                          help="the scale of each --ip-image, in order (one value applies to all; default 0.6)")
    gen.add_argument("--memory", choices=["auto", "sequential", "resident", "offload"], default="auto")
    gen.add_argument("--vram-budget", default="", metavar="SIZE",
                     help="plan memory for this much VRAM (12G, 800M, 12GiB), not the free VRAM")
    gen.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    gen.add_argument("--out", type=Path, required=True, help="the final image; earlier stages go beside it")
    cand = gen.add_argument_group("candidates (core.candidates)")
    cand.add_argument("--candidates", type=int, default=1, metavar="N",
                      help="run the first stage with N seeds (seed, seed+1, ...) and score each")
    cand.add_argument("--scorer", default=None, metavar="REF",
                      help="clip:<CLIP folder or Hub id>, aesthetic:<file>[@<CLIP ref>] or builtin:demo-scorer")
    cand.add_argument("--keep", type=int, default=1, metavar="K", help="the best K continue through the chain")

    score = sub.add_parser("score", help="score images: one line per image, SCORE<TAB>PATH, in input order")
    score.add_argument("images", type=Path, nargs="+")
    score.add_argument("--prompt", default="", help="what a CLIP score compares each image with")
    score.add_argument("--scorer", required=True, metavar="REF",
                       help="clip:<CLIP folder or Hub id>, aesthetic:<file>[@<CLIP ref>] or builtin:demo-scorer")

    runp = sub.add_parser("run", help="run a saved project (.handoff, .json, a ComfyUI workflow, or an image with a "
                                       "recipe: Handoff's, A1111's, ComfyUI's, InvokeAI's, Fooocus's or NovelAI's)")
    runp.add_argument("project", type=Path)
    runp.add_argument("--out", type=Path, default=None, help="output folder (default: Handoff's outputs folder)")
    runp.add_argument("--vram-budget", default="", metavar="SIZE",
                      help="plan memory for this much VRAM (12G, 800M, 12GiB), not the free VRAM")
    runp.add_argument("--from-stage", type=int, default=None, metavar="N",
                      help="start at stage N (1-based), reusing the stored output of the stages before it "
                           "from an earlier run; a stale one (an earlier stage changed) is run again")

    sweep = sub.add_parser("sweep", help="run a project over a grid of parameter values and write a labelled grid")
    sweep.add_argument("project", type=Path)
    sweep.add_argument("--x", required=True, metavar="SPEC",
                       help="N.PARAM=V1,V2,... (N the 1-based stage; PARAM strength, switch_at, steps, guidance, "
                            "seed, scheduler, model, prompt_suffix or loraK.weight), or seed=... for the project; "
                            "values split on '|' when one is given")
    sweep.add_argument("--y", default=None, metavar="SPEC", help="a second axis, down the rows")
    sweep.add_argument("--out", type=Path, required=True, help="folder for grid.png, sweep.json and cells/")
    sweep.add_argument("--max-cells", type=int, default=None, metavar="N",
                       help=f"allow a sweep of more than {MAX_CELLS:,} cells")
    sweep.add_argument("--pick", default=None, metavar="SCORER",
                       help="score the cells, mark the best on the grid and write its value into the project file")
    sweep.add_argument("--max-drift", type=float, default=None, metavar="SSIM",
                       help="with --pick: only cells whose SSIM to their input is at least this")
    _ray_flags(sweep)

    batch = sub.add_parser("batch", help="run a JSON Lines file of projects (or of prompts over --project)")
    batch.add_argument("jobs", type=Path)
    batch.add_argument("--project", type=Path, default=None, help="the chain for lines that give only a prompt/seed")
    batch.add_argument("--out", type=Path, required=True)
    batch.add_argument("--keep-going", action="store_true",
                       help="run the good lines when some are bad (each bad line is reported; exit status 1)")
    _ray_flags(batch)

    insp = sub.add_parser("inspect", help="print the project a file restores (any PNG, JPEG, WebP, .json or .handoff) "
                                          "as JSON, and what could not be mapped on stderr; runs nothing")
    insp.add_argument("file", type=Path)

    exp = sub.add_parser("export", help="write a project as another tool's file")
    exp.add_argument("project", type=Path, help="a .handoff, .json or an image with a recipe")
    exp.add_argument("--comfyui", type=Path, required=True, help="the ComfyUI graph (.json) to write")
    exp.add_argument("--format", choices=("ui", "api"), default="ui",
                     help="ui: the workflow ComfyUI's window opens (default); api: the prompt a POST to its /prompt runs")

    from core.library_cli import add_parser as add_library_parser

    add_library_parser(sub)
    return parser


def _ray_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the cells on a Ray cluster: its address (ray://host:10001, auto) or 'local'")
    p.add_argument("--workers", type=int, default=None, help="with --ray: how many workers (default: one per GPU, "
                   "or per CPU up to the cell count)")


def parse_lora(text: str) -> Lora:
    """FILE_OR_ID[:WEIGHT]: a trailing :number is the weight (a Windows drive's colon is not)."""
    ref, sep, weight = text.rpartition(":")
    if sep:
        try:
            return Lora(ref, float(weight))
        except ValueError:
            pass
    return Lora(text, 1.0)


def parse_pair(text: str, flag: str, kind=float) -> tuple:
    try:
        a, b = (kind(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} '{text}' is not two numbers separated by a comma") from None
    return a, b


def _adapters(args, stages: list[Stage]) -> None:
    """The adapter flags, onto the stages they name."""
    stages[0].loras = [parse_lora(t) for t in args.lora]
    if args.refiner_lora:
        if len(stages) < 2:
            raise UsageError("--refiner-lora needs --refiner")
        stages[1].loras = [parse_lora(t) for t in args.refiner_lora]
    if (args.controlnet is None) != (args.control_image is None):
        raise UsageError("--controlnet and --control-image go together")
    if args.controlnet is not None:
        if args.init_image is not None:
            raise UsageError("--controlnet conditions a stage that generates; it cannot go with --init-image")
        low, high = parse_pair(args.canny, "--canny", int)
        start, end = parse_pair(args.control_range, "--control-range")
        stages[0].controlnet = ControlNet(args.controlnet, str(args.control_image),
                                          "none" if args.no_preprocess else "canny", low, high,
                                          args.control_scale, start, end)
    if bool(args.ip_adapter) != bool(args.ip_image):
        raise UsageError("--ip-adapter and --ip-image go together")
    if args.ip_adapter:
        if args.init_image is not None:
            raise UsageError("--ip-adapter conditions a stage that generates; it cannot go with --init-image")
        scales = args.ip_scale or [0.6]
        if len(scales) not in (1, len(args.ip_image)):
            raise UsageError(f"{len(args.ip_image)} --ip-image but {len(scales)} --ip-scale: give one, or one each")
        stages[0].ip_adapters = [IPAdapter(args.ip_adapter, str(img), scales[min(n, len(scales) - 1)])
                                 for n, img in enumerate(args.ip_image)]


def _check_lora_files(args) -> None:
    """Each local LoRA file's header read now, so a malformed one is bad input naming its
    flag and file, before any model loads (Hub files are checked when the job fetches them)."""
    from core.adapters import adapter_file, lora_info
    from core.errors import ModelError

    for flag, texts in (("--lora", args.lora), ("--refiner-lora", args.refiner_lora)):
        for text in texts:
            ref = parse_lora(text).ref.strip()
            if not ref.startswith("builtin:") and not Path(ref).expanduser().exists():
                continue
            try:
                lora_info(adapter_file(ref, "LoRA"))
            except ModelError as exc:
                raise UsageError(f"{flag}: {exc}") from None


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
    stages[0].transformer, stages[0].quantize = args.transformer, args.quantize
    if args.refiner:
        stages[1].transformer, stages[1].quantize = args.refiner_transformer, args.refiner_quantize
    elif args.refiner_transformer is not None or args.refiner_quantize != "none":
        raise UsageError("--refiner-transformer and --refiner-quantize need --refiner")
    _adapters(args, stages)
    _check_lora_files(args)
    if args.upscale != 1:
        if not (args.refiner or args.init_image):
            raise UsageError("--upscale resizes an image before it is refined: it needs --refiner or --init-image")
        if args.refiner and args.switch_at is not None:
            raise UsageError("--upscale needs a pixel handoff, not an ensemble (--switch-at)")
        stages[-1].upscale = args.upscale
        stages[-1].upscaler = args.upscaler
    elif args.upscaler is not None:
        raise UsageError("--upscaler does the --upscale resize: give --upscale too")
    if args.refine_tile:
        if not (args.refiner or args.init_image):
            raise UsageError("--refine-tile tiles a refine: it needs --refiner or --init-image")
        stages[-1].refine_tile = args.refine_tile
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
                   memory_policy=args.memory, vram_budget=args.vram_budget, dtype=args.dtype, candidates=args.candidates, scorer=args.scorer,
                   keep=args.keep)


def _init_image_size(path: Path) -> tuple[int, int]:
    from core.errors import ReadError
    from core.images import image_size

    if not path.is_file():
        raise UsageError(f"init image not found: {path}")
    try:
        return image_size(path, f"init image {path}")
    except ReadError as exc:
        raise UsageError(str(exc)) from None


def check_out(args) -> None:
    """Refuse an output that could not be written, before any model loads."""
    from core import paths
    from core.atomic import writable_problem

    if args.command == "generate":
        if args.out.is_dir():
            raise UsageError(f"--out {args.out} is a folder: name the image file to write (e.g. {args.out / 'image.png'})")
        folder = args.out.parent
    else:  # run, sweep and batch write into a folder
        folder = args.out if args.out is not None else paths.outputs_dir()
    problem = writable_problem(folder)
    if problem:
        raise UsageError(f"--out: {problem}" if args.out is not None else problem)


def validate_up_front(project: Project, named_by: str = "", runs_here: bool = True) -> None:
    """validate() with what is known of each model without loading it (its multiple and the
    size it was made for), so a size it cannot take is bad input, not a failed job; and,
    for a job that `runs_here` (not on a Ray cluster, whose nodes have models of their
    own), a model that is not here and cannot be downloaded (core.model_presence) is
    refused too, with the line the window shows. `named_by`: the tool whose recipe the
    project is."""
    from core.model_info import info_for
    from core.model_presence import absent_models

    infos = {i: info_for(s.model) for i, s in enumerate(project.stages)}
    known = {i: info for i, info in infos.items() if info.family is not None}
    try:
        validate(project, stage_multiples={i: info.multiple for i, info in known.items()},
                 stage_natives={i: info.native for i, info in known.items()})
        problems: list[str] = []
    except ProjectError as exc:
        problems = list(exc.problems)
    if runs_here:
        problems += absent_models(project, named_by)
    if problems:
        raise ProjectError(problems)


class Interrupts:
    """SIGINT (Ctrl-C) and SIGTERM: the first one during a job cancels it (it stops within
    a step, and what it wrote stays); one before the job started, a second one, or a job
    that does not stop within GRACE_SECONDS exits at once. Either way one line, and exit
    130 (SIGINT) or 143 (SIGTERM). No KeyboardInterrupt is ever raised, so no traceback
    comes out of whatever the main thread was doing (an import, a queue wait). On the way
    out the handlers before it come back: main.py's, which exit at once (core.interrupts)."""

    def __init__(self) -> None:
        self.cancel = None  # the running job's core.engine.CancelToken
        self.code: int | None = None
        self._before: dict = {}

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():  # only there can handlers be set
            for sig in CODES:
                if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored on purpose (nohup, a background job)
                    self._before[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        # main() may run inside another program (the tests): give it its handlers back.
        for sig, handler in self._before.items():
            signal.signal(sig, handler)
        self._before.clear()

    def _on_signal(self, signum, frame) -> None:
        first = self.code is None
        if first:
            self.code = exit_code(signum)
        if first and self.cancel is not None:
            self.cancel.cancel()
            timer = threading.Timer(GRACE_SECONDS, self.exit_now)
            timer.daemon = True
            timer.start()
            return
        self.exit_now()

    def exit_now(self) -> None:
        exit_now(self.code or EXIT_CANCELLED)

    def stopped(self) -> bool:
        return self.code is not None


def main(argv: list[str] | None = None) -> int:
    with Interrupts() as interrupts:
        args = build_parser().parse_args(argv)
        try:
            status = _main(args, interrupts)
        except Exception as exc:  # a bug, not bad input: still one line, the traceback kept for a report
            status = _unexpected(exc)
        finally:
            if getattr(args, "ray", None):
                from core.cluster import disconnect

                disconnect()
            _say_damaged_settings()
        reached("finishing", interrupts.stopped)
    # The handlers before ours are back (main.py's exit at once), so interrupts.code is final:
    # a signal that came after the last job was looked at still decides the status.
    if interrupts.code is not None and status != interrupts.code:
        print(CANCELLED_LINE, file=sys.stderr)
        return interrupts.code
    return status


def _say_damaged_settings() -> None:
    """A damaged settings file read on the way (the model library's list, when another
    tool's model name is looked up): kept aside by core.settings_file; said once here."""
    from core import settings_file

    problem = settings_file.take_problem()
    if problem:
        print(f"handoff: note: {problem}", file=sys.stderr)


def _main(args, interrupts: "Interrupts") -> int:
    if args.command == "library":
        from core.library_cli import library_main

        return library_main(args)
    if args.command in ("inspect", "export"):
        return inspect_file(args.file) if args.command == "inspect" else export_project(args.project, args.comfyui, args.format)
    if args.command in ("generate", "run", "sweep", "batch"):
        try:
            check_out(args)
            if args.command in ("sweep", "batch") and args.ray not in (None, "local"):
                _probe(args.ray)  # before the imports a job needs: an unreachable cluster is refused in seconds
        except UsageError as exc:
            print(f"handoff: {exc}", file=sys.stderr)
            return EXIT_USAGE
    # A sweep and a batch check their inputs before torch is imported: a bad one is refused at once.
    if args.command == "score":
        _quiet_libraries()
        return score_main(args)
    if args.command == "sweep":
        return sweep_main(args, interrupts)
    if args.command == "batch":
        return batch_main(args, interrupts)
    _quiet_libraries()
    from core.engine import OutputPlan

    named_by = ""
    try:
        if args.command == "generate":
            project = project_from_args(args)
            out = OutputPlan.to_file(args.out)
        else:
            from core.opening import read_document

            doc = read_document(args.project)
            project = doc.project
            if doc.source is not None:
                _say_import(doc.source)
                named_by = doc.source.tool  # a recipe's model names are that tool's
            out = OutputPlan.in_dir(args.out, stem=args.project.stem)
            if args.vram_budget:
                project.vram_budget = args.vram_budget
        validate_up_front(project, named_by)
        from_stage = _from_stage(project, getattr(args, "from_stage", None))
    except (UsageError, ProjectError) as exc:
        print(f"handoff: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    _say_advice(project)
    return run_project(project, out, from_stage, interrupts)


def _from_stage(project: Project, number: int | None) -> int | None:
    """--from-stage N (1-based) as an index in project.stages, checked."""
    if number is None:
        return None
    if not 1 <= number <= len(project.stages) or not project.stages[number - 1].enabled:
        enabled = ", ".join(str(i + 1) for i, _ in project.enabled_stages())
        raise UsageError(f"--from-stage {number}: the project's enabled stages are {enabled}")
    return number - 1


def _read(path: Path):
    """The project document a file restores, or a one-line reason it cannot be read."""
    from core.opening import read_document

    try:
        return read_document(path), None
    except ProjectError as exc:  # load raises ReadError, one line naming the file, and nothing else
        return None, str(exc)


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
    _say_advice(doc.project)
    return 0


def _say_advice(project: Project) -> None:
    """What the window says beside its widgets (the strength warning, a far init-image
    size), as notes: advice, so the job still runs."""
    from core.advice import notes

    for line in notes(project):
        print(f"handoff: note: {line}", file=sys.stderr)


def export_project(path: Path, comfyui_out: Path, fmt: str = "ui") -> int:
    """`export PROJECT --comfyui OUT.json [--format ui|api]`: the project as a ComfyUI
    graph; stderr lists the files it names and what ComfyUI needs before it can run."""
    from core.interop.comfyui import write_workflow

    doc, problem = _read(path)
    if doc is None:
        print(f"handoff: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # A Handoff PNG's export follows what its run did, as the PNG's own graph does.
        graph = write_workflow(doc.project, comfyui_out, doc.source.ran if doc.source is not None else None, fmt)
    except (ProjectError, OSError) as exc:
        print(f"handoff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {comfyui_out} (ComfyUI {'workflow' if fmt == 'ui' else 'API prompt'})", file=sys.stderr)
    for name, what in graph.files.items():
        print(f"  loads {name}: {what}", file=sys.stderr)
    for note in graph.notes:
        print(f"  note: {note}", file=sys.stderr)
    return 0


def one_line(text: str) -> str:
    """A message as the one line an error is (a Hub error or a file name may hold newlines)."""
    return " ".join(text.split())


def _unexpected(exc: BaseException) -> int:
    import traceback

    from core import paths
    from core.engine import explain

    where = ""
    try:
        from core.atomic import write_text

        where = f" (details in {write_text(paths.home() / 'last-error.txt', traceback.format_exc())})"
    except Exception:  # the report is a courtesy: the one line still goes out
        pass
    print(f"handoff: unexpected error: {explain(exc)}{where}", file=sys.stderr)
    return EXIT_FAILED


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
            ev.StageImageUpdated: self.stage_updated,
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
        if e.reused:
            self.say(f"[-] {e.label}: reused from an earlier run")
            return
        if self.tty:
            self.say("")
        if e.preview:
            self.say("    (latents handed over: a preview is written now, the decode once the final image is)")

    def stage_updated(self, e: ev.StageImageUpdated) -> None:
        if e.decode_seconds:
            self.say(f"[-] {e.label}: decoded in {e.decode_seconds:.2f} s, rewrote {e.path}")
        if e.drift is not None:
            self.say(f"[-] {e.label}: drift against that decode: {e.drift.label()}")

    def job_finished(self, e: ev.JobFinished) -> None:
        self.finished = e

    def job_failed(self, e: ev.JobFailed) -> None:
        self.say(f"handoff: {one_line(e.message)}")
        self.status = EXIT_FAILED

    def job_cancelled(self, e: ev.JobCancelled) -> None:
        self.say("handoff: cancelled")
        self.status = EXIT_CANCELLED


def sweep_main(args, interrupts: "Interrupts | None" = None) -> int:
    from core.opening import read_document
    from core.sweep import cells, check_cell_count, parse_axis

    try:
        project = read_document(args.project).project
        validate_up_front(project, runs_here=not args.ray)  # the bounds generate and run check, for a sweep too
        x = parse_axis(args.x, project)
        y = parse_axis(args.y, project) if args.y else None
        if y is not None and y.name == x.name:
            raise UsageError(f"--x and --y both sweep {x.name}")
        if args.max_cells is not None and args.max_cells < 1:
            raise UsageError(f"--max-cells {args.max_cells} must be at least 1")
        count = check_cell_count(x, y, args.max_cells or MAX_CELLS)  # before a single cell is built
        cells(project, x, y)  # every cell's project checked before the first runs
        _check_pick(args)
        if args.ray:
            _connect(args.ray)
    except (UsageError, ProjectError, ModelError) as exc:
        print(f"handoff: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    _quiet_libraries()
    pick = (lambda result: _pick(args, x, y, result)) if args.pick else None
    if args.ray:
        from core.cluster import progress_bar, run_sweep_on_ray

        result = run_sweep_on_ray(project, x, y, args.out, args.workers, progress_bar)
        status = pick(result) if pick else 0
        print(sweep_table(result))
        return EXIT_FAILED if status or any(c.error for c in result.cells) else 0
    return run_sweep_cli(project, x, y, args.out, count, interrupts, pick)


def _check_pick(args) -> None:
    """--pick and --max-drift, checked before any cell runs (the scorer resolved too)."""
    if args.pick is None:
        if args.max_drift is not None:
            raise UsageError("--max-drift limits the cells --pick chooses from: give --pick too")
        return
    if args.max_drift is not None and not -1 <= args.max_drift <= 1:
        raise UsageError(f"--max-drift {args.max_drift:g} is not an SSIM (-1..1; 1: unchanged)")
    from core.scorer_refs import resolve_scorer
    from core.sweep_pick import check_target

    check_target(args.project)
    resolve_scorer(args.pick)


def _pick(args, x, y, result) -> int:
    """Score the cells, mark the best within the drift limit and write it into the project."""
    from core.sweep_pick import mark, pick_cell, write_setting

    try:
        chosen = pick_cell(result, args.pick, args.max_drift)
        if chosen.cell is None:
            print(f"handoff: no cell to pick{': ' + chosen.why if chosen.why else ''}", file=sys.stderr)
            return EXIT_FAILED
        mark(result, x, y, args.out, chosen.cell)
        write_setting(args.project, chosen.cell, x, y)
    except (ModelError, ProjectError) as exc:
        print(f"handoff: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    print(f"picked {', '.join(chosen.cell.labels)} (score {chosen.cell.score:.4f}); wrote it into {args.project}",
          file=sys.stderr)
    return 0


def score_main(args) -> int:
    """SCORE<TAB>PATH per image, in the order given; a bad scorer or image is one line."""
    from core.errors import ReadError
    from core.scorer_refs import score_files

    try:
        values = score_files(args.scorer, args.prompt, args.images)
    except (ModelError, ReadError) as exc:
        print(f"handoff: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    for value, path in zip(values, args.images):
        print(f"{value:.4f}\t{path}")
    return 0


def _probe(address: str) -> None:
    from core.cluster import ClusterError, probe

    try:
        probe(address)
    except ClusterError as exc:
        raise UsageError(str(exc)) from None


def _connect(address: str) -> None:
    from core.cluster import ClusterError, connect

    try:
        connect(address)
    except ClusterError as exc:
        raise UsageError(str(exc)) from None


def batch_main(args, interrupts: "Interrupts | None" = None) -> int:
    from core.opening import read_document
    from core.cluster import batch_jobs, check_batch, describe, progress_bar, run_batch_locally, run_cells

    try:
        base = read_document(args.project).project if args.project else None
        batch = check_batch(args.jobs, base)
        if batch.problems:
            _say_problems(batch.problems, args.keep_going, len(batch.jobs))
            if not args.keep_going or not batch.jobs:
                return EXIT_USAGE  # before the first job
        if args.ray:
            _connect(args.ray)
    except (UsageError, ProjectError) as exc:
        print(f"handoff: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    _quiet_libraries()
    if args.ray:
        outcomes = run_cells(batch_jobs(batch.jobs), args.out, args.workers, progress_bar)
    else:
        from core.engine import CancelToken

        cancel = CancelToken()
        if interrupts is not None:
            interrupts.cancel = cancel  # the first Ctrl-C stops the running job; no other starts
        reached("before-first-job", lambda: cancel.cancelled)
        outcomes = run_batch_locally(batch.jobs, args.out, progress_bar, cancel)
    print(describe(outcomes))
    if interrupts is not None and interrupts.stopped():
        print(CANCELLED_LINE, file=sys.stderr)
        return interrupts.code
    return EXIT_FAILED if batch.problems or any(o.error for o in outcomes) else 0


SHOWN_PROBLEMS = 20


def _say_problems(problems: list[str], keep_going: bool, good: int) -> None:
    """Each bad line of a batch file, one line each (the first SHOWN_PROBLEMS)."""
    lines = [f"handoff: {'skipped ' if keep_going else ''}{p}" for p in problems[:SHOWN_PROBLEMS]]
    if len(problems) > SHOWN_PROBLEMS:
        lines.append(f"handoff: and {len(problems) - SHOWN_PROBLEMS} more bad lines")
    if not keep_going and good:
        lines[-1] += f" (no job ran; --keep-going runs the {good} good line{'s' if good > 1 else ''})"
    print("\n".join(lines), file=sys.stderr)


def run_sweep_cli(project: Project, x, y, out_dir: Path, count: int, interrupts: "Interrupts | None" = None,
                  pick=None) -> int:
    from core.engine import CancelToken
    from core.sweep import run_sweep

    cancel = CancelToken()
    if interrupts is not None:
        interrupts.cancel = cancel  # the first Ctrl-C stops the sweep between steps; its table still prints
    state = {"cell": None, "n": 0, "status": 0}

    def on_event(item) -> None:
        cell, e = item
        if cell is not state["cell"]:
            state["cell"], state["n"] = cell, state["n"] + 1
            print(f"cell {state['n']}/{count}: {', '.join(cell.labels)}", file=sys.stderr)
        if isinstance(e, ev.Notice):
            print(f"    note: {e.message}", file=sys.stderr)
        elif isinstance(e, ev.StageFinished):
            print(f"    {e.label}: {'reused' if e.reused else f'{e.total_seconds:.2f} s'}", file=sys.stderr)
        elif isinstance(e, ev.JobFailed):
            print(f"    failed: {e.message}", file=sys.stderr)
            state["status"] = EXIT_FAILED
        elif isinstance(e, ev.JobCancelled):
            state["status"] = EXIT_CANCELLED

    result = run_sweep(project, x, y, out_dir, on_event, cancel=cancel)
    if pick is not None and not cancel.cancelled:
        state["status"] = pick(result) or state["status"]
    print(sweep_table(result))
    if interrupts is not None and interrupts.stopped():
        print(CANCELLED_LINE, file=sys.stderr)
        return interrupts.code
    return state["status"]


def sweep_table(result) -> str:
    from core.sweep import cell_caption

    rows = [("cell", "seconds", "reused", "drift", "image")]
    for c in result.cells:
        rows.append((", ".join(c.labels), f"{c.seconds:.2f}", str(c.reused), cell_caption(c) + (
            f" — {c.drift.warning}" if c.drift is not None and c.drift.warning else ""), str(c.path or c.error)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)
    return table + f"\nsweep: {len(result.cells)} cells in {result.seconds:.2f} s; grid {result.grid}"


def run_project(project: Project, out, from_stage: int | None = None, interrupts: "Interrupts | None" = None) -> int:
    from core.engine import CancelToken, run

    cancel = CancelToken()
    if interrupts is not None:
        interrupts.cancel = cancel
        if interrupts.code is not None:  # a signal came while the job was being set up
            interrupts.exit_now()
    print(f"seed {project.seed}", file=sys.stderr)
    progress = _Progress()
    for event in run(project, out=out, cancel=cancel, from_stage=from_stage):
        progress(event)
    if progress.finished is not None:
        print(timing_table(progress.finished.stages, progress.finished.seconds))
    if progress.status == EXIT_CANCELLED and interrupts is not None and interrupts.code is not None:
        return interrupts.code  # SIGTERM is not a Ctrl-C: it has its own status
    return progress.status


def timing_table(stages: list[ev.StageFinished], total: float) -> str:
    rows = [("stage", "handoff", "steps", "load s", "denoise s", "decode s", "total s", "peak", "drift")]
    for s in stages:
        if s.reused:
            rows.append((s.label, "reused", "-", "-", "-", "-", "-", "-", ""))
            continue
        drift = "" if s.drift is None else s.drift.label() + (f" — {s.drift.warning}" if s.drift.warning else "")
        rows.append((s.label, s.handoff, str(s.steps_run), f"{s.load_seconds:.2f}", f"{s.denoise_seconds:.2f}",
                     f"{s.decode_seconds:.2f}", f"{s.total_seconds:.2f}",
                     f"{s.peak_memory / 2**20:,.0f} MiB ({s.memory_kind})", drift))
    rows.append(("job", "", "", "", "", "", f"{total:.2f}", "", ""))
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
