"""Runs a project's stages in order and reports what happens as events.

`execute()` pushes events to a callback on the calling thread (the GUI's worker
thread calls it, so torch lives on that one thread); `run()` wraps it as a generator
for the command line and tests.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from core import events as ev
from core import paths
from core.atomic import writable_problem
from core.deferred_decode import Decoder, Deferred
from core.errors import Cancelled, ModelError, ProjectError
from core.denoisers import check_quantize, check_transformer_file, spec_of
from core.models import ModelCache, ResolvedModel, parse_ref, pick_dtype, resolve
from core.planning import StagePlan, plan
from core.png_writer import PngWriter
from core.project import Project, validate
from core.prompt_tokens import truncation_notices
from core.schedulers import check_scheduler
from core.stage_call import StageInput, build_call, fit_input
from core.stage_run import Previews, run_stage
from core.stage_store import StageStore, StoredOutput, model_fingerprint, prefix_key
from core.tiled_refine import run_tiled
from core.upscale_stage import UPSCALE, model_resize, run_upscale_stage
from core.vae_tiling import set_vae_tiling


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def event(self) -> threading.Event:
        """For waits that take an Event (a download stops between chunks when it is set)."""
        return self._event

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class OutputPlan:
    """Where each stage's image is written, the moment it exists."""

    directory: Path
    stem: str
    final: Path | None = None  # the last stage's path, when the caller names it

    @classmethod
    def in_dir(cls, directory: Path | None = None, stem: str | None = None) -> "OutputPlan":
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return cls(Path(directory or paths.outputs_dir()), stem or f"handoff-{stamp}-{uuid.uuid4().hex[:4]}")

    @classmethod
    def to_file(cls, final: Path) -> "OutputPlan":
        final = Path(final)
        return cls(final.parent, final.stem, final)

    def path_for(self, position: int, count: int, label: str) -> Path:
        if self.final is not None and position == count - 1:
            return self.final
        slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-") or "stage"
        return self.directory / f"{self.stem}-{position + 1}-{slug}.png"


def run(project: Project, out: OutputPlan | None = None, cancel: CancelToken | None = None,
        models: ModelCache | None = None, from_stage: int | None = None,
        store: StageStore | None = None) -> Iterator[ev.Event]:
    """The job's events as a generator. Closing the generator early cancels the job."""
    cancel = cancel or CancelToken()
    q: queue.Queue = queue.Queue()
    done = object()

    def body() -> None:
        try:
            execute(project, q.put, out=out, cancel=cancel, models=models, from_stage=from_stage, store=store)
        finally:
            q.put(done)

    thread = threading.Thread(target=body, name="handoff-job", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            yield item
    finally:
        cancel.cancel()
        thread.join()


def execute(project: Project, emit: Callable[[ev.Event], None], out: OutputPlan | None = None,
            cancel: CancelToken | None = None, models: ModelCache | None = None, from_stage: int | None = None,
            store: StageStore | None = None, live_previews: bool = False, until: int | None = None,
            annotate: Callable | None = None) -> None:
    """Run the job on this thread, passing each event to `emit`. Never raises for a
    job that fails: the failure is reported as JobFailed and the caller stays usable.

    `from_stage` (an index in project.stages): start there, reusing the stored output of
    the stages before it (core.stage_store); where that output is stale or missing, the
    job says so and starts from the latest stage whose output is still stored.
    With `live_previews`, stages also emit StagePreview now and then (a window shows them;
    the command line has nowhere to).
    A project with candidates runs them through core.candidates, which calls back here with
    `until` (the last position to run: a candidate's first stage) and `annotate(plan,
    image)`, which returns more keys for a stage's recipe chunk (its score)."""
    cancel = cancel or CancelToken()
    models = models if models is not None else ModelCache()
    out = out or OutputPlan.in_dir()
    job_id = uuid.uuid4().hex[:8]
    current: list[int | None] = [None]
    out_of_memory = False
    store = store if store is not None else StageStore.default()
    try:
        if project.candidates > 1:
            from core.candidates import run_candidates

            def one(p, emit_one, **kw) -> None:
                execute(p, emit_one, cancel=cancel, models=models, store=store, live_previews=live_previews, **kw)

            run_candidates(project, emit, one, out, cancel, models)
        else:
            _execute(project, emit, out, cancel, models, job_id, current, from_stage, store, live_previews,
                     until, annotate)
    except Cancelled:
        emit(ev.JobCancelled(current[0]))
    except (ModelError, ProjectError) as exc:
        emit(ev.JobFailed(str(exc)))
    except Exception as exc:  # the job must fail readably, whatever broke inside diffusers
        out_of_memory = is_out_of_memory(exc)
        emit(ev.JobFailed(explain(exc), traceback.format_exc()))
    if out_of_memory:
        # Out of the except block, so the traceback's frames (and the activations they
        # hold) are gone: give the memory back before the next job asks for it.
        _free_memory()


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__ or "out of memory" in str(exc).lower()


def explain(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if isinstance(exc, MemoryError):
        return (f"out of memory (RAM): lower the size, choose the 'sequential' memory policy, or close other "
                f"programs ({text[:160]})")
    if is_out_of_memory(exc):
        return (
            "out of GPU memory: lower the size, choose the 'offload' or 'sequential' memory policy, "
            f"or use a smaller precision ({text[:160]})"
        )
    return f"{name}: {text[:300]}"


def _free_memory() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _execute(project, emit, out, cancel, models, job_id, current, from_stage, store,
             live_previews=False, until=None, annotate=None) -> None:
    started = time.perf_counter()
    validate(project)
    check_output(out)  # before anything downloads or loads: a job must not run to be refused at the end
    from core.devices import PeakMeter, best_device, describe_device

    enabled = project.enabled_stages()
    resolved: list[ResolvedModel] = []
    for index, stage in enabled:
        emit(ev.Loading(index, f"resolving {stage.model}"))
        resolved.append(resolve(parse_ref(stage.model), progress=lambda m, i=index: emit(ev.Loading(i, m)),
                                cancel=cancel.event))
        if cancel.cancelled:
            raise Cancelled()
    validate(project, stage_multiples={i: r.family.multiple for (i, _), r in zip(enabled, resolved)},
             stage_natives={i: r.native_size() for (i, _), r in zip(enabled, resolved)})
    problems = [f"stage {i + 1}: {m}" for (i, s), r in zip(enabled, resolved) if (m := check_scheduler(s.scheduler, r.family))]
    if problems:
        raise ProjectError(problems)
    plans = plan(project, resolved, lambda r: r.vae_fingerprint(models.digests))
    _check_adapters(plans)

    device = best_device()
    _check_denoisers(enabled, resolved, device)
    held = 0
    if device == "cuda":
        # The free VRAM is planned for this job: an earlier job's other models go, and this
        # job's models already in place count as room (the plan counts their weights).
        mine = {models.key(p.resolved, pick_dtype(project.dtype, p.family, device), spec_of(p.stage))
                for p in plans if p.kind != UPSCALE}
        models.drop(set(models.loaded) - mine)
        held = models.device_bytes(mine, device)
    check_memory(project, plans, device, held)
    memory_plan = resolve_policy(project, device, plans, held)
    for line in memory_plan.table().splitlines():  # one per line: the window's status bar shows the last, the verdict
        emit(ev.Notice(line))
    # A budget plans for a card (--vram-budget 12G): its plan is followed on any device, as far as it can be.
    policy = memory_plan.placement if device == "cuda" or project.memory_policy != "auto" or project.vram_budget \
        else "resident"
    if policy in ("offload", "group") and device != "cuda":
        emit(ev.Notice(f"CPU offload needs a CUDA GPU; running on {device} without it"))
    emit(ev.JobStarted(job_id, len(plans), out.directory, describe_device(device)))
    if policy != project.memory_policy:
        emit(ev.Notice(f"memory policy: {policy} (auto)"))

    key_of = _prefix_keys(project, plans, device, models, memory_plan.vae_tiling)
    whole_for_turn: set = set()  # under (group) offload, the model of a stage the plan put whole on the GPU
    start, reused = _reusable_start(plans, from_stage, key_of, store, emit)
    total_expected = sum(p.expected_steps() for p in plans[start:]) or 1
    done_steps = 0
    if reused is not None:
        given = StageInput(image=reused.image, latents=None if reused.latents is None else reused.latents.to(device, copy=True))
        if plans[start - 1].schedule is not None and reused.sigmas is not None:
            plans[start - 1].schedule["sigmas"] = list(reused.sigmas)  # shared with the refiner's plan
    else:
        given = StageInput(image=load_init_image(project) if project.init_image else None)
    given_preview = reused is not None and reused.preview
    # What each file says ran: the plan's record, never re-derived, and whether the memory plan tiled its decode.
    ran = [dataclasses.replace(p.ran(), vae_tiled=memory_plan.vae_tiling(p.index)) for p in plans]
    finished: list[ev.StageFinished] = []
    unstored = False
    writer = PngWriter()
    deferred = Deferred()  # decodes of handed-over latents, owed until the final image is written
    try:
        for p in plans[:start]:
            stored = reused if p.position == start - 1 else store.get(key_of(p.position), p.size)
            if stored is None:
                continue  # an earlier stage's own output was pruned; the one handed over is kept
            path = out.path_for(p.position, len(plans), p.stage.label(p.index))
            writer.submit(stored.image, path, project, p.index, preview=stored.preview, ran=ran,
                          extra=annotate(p, stored.image) if annotate else None)
            finished.append(ev.StageFinished(
                index=p.index, label=p.stage.label(p.index), image=stored.image, input_image=None, path=path,
                load_seconds=0.0, denoise_seconds=0.0, decode_seconds=0.0, total_seconds=0.0, peak_memory=0,
                memory_kind="", steps_run=0, handoff=p.handoff, preview=stored.preview, reused=True,
                ran=ran[p.position]))
            emit(finished[-1])
        for p in plans[start:None if until is None else until + 1]:
            current[0] = p.index
            if cancel.cancelled:
                raise Cancelled()
            _report_saved(writer.done(), emit)
            label = p.stage.label(p.index)
            emit(ev.StageStarted(p.index, p.position, label, p.stage.model, p.handoff, p.note))
            if p.kind == UPSCALE:  # another stage kind, behind the same events
                def on_tile(i: int, n: int, p=p) -> None:
                    emit(ev.Step(p.index, i, n, min(1.0, (done_steps + i / n) / total_expected)))

                path = out.path_for(p.position, len(plans), label)
                finished_event = run_upscale_stage(p, given.image, device, models.upscalers, path,
                                                   lambda: cancel.cancelled, on_tile)
                done_steps += 1
                finished_event = dataclasses.replace(finished_event, ran=ran[p.position])
                writer.submit(finished_event.image, path, project, p.index, ran=ran)
                finished.append(finished_event)
                emit(finished_event)
                given, given_preview = StageInput(image=finished_event.image), False
                if p.position < len(plans) - 1:
                    store.put(key_of(p.position), StoredOutput(finished_event.image))
                continue
            with PeakMeter(device) as meter:
                t0 = time.perf_counter()
                dtype = pick_dtype(project.dtype, p.family, device)
                spec = spec_of(p.stage)
                key = models.key(p.resolved, dtype, spec)
                if whole_for_turn - {key}:
                    models.drop(whole_for_turn - {key})  # an earlier stage's turn on the GPU is over
                    whole_for_turn.clear()
                placed = memory_plan.placement_of(p.index) if policy in ("offload", "group") else policy
                if placed == "sequential" and policy != "sequential":
                    whole_for_turn.add(key)  # the others wait off the GPU, offloaded
                elif policy == "sequential" and not _shares_with_loaded(models, p):
                    models.release({key})  # free the memory before the next model arrives
                loaded = models.get(p.resolved, dtype, device, offload={"offload": True, "group": "group"}.get(placed, False),
                                    progress=lambda m, i=p.index: emit(ev.Loading(i, m)), spec=spec)
                if policy == "sequential":
                    models.release({key})  # shared components live on in the new pipeline
                pipe = _stage_pipeline(loaded, p)
                # Set for every stage: the VAE may be shared with, or cached from, a stage that tiled.
                set_vae_tiling(pipe, memory_plan.vae_tiling(p.index))
                load_seconds = time.perf_counter() - t0
                for notice in truncation_notices(pipe, _prompts(p.stage, project), label):
                    emit(ev.Notice(notice))
                import torch

                generator = torch.Generator("cpu").manual_seed(p.stage.effective_seed(project.seed))
                resize = model_resize(p, models.upscalers, device, lambda: cancel.cancelled)
                given = _with_conditioning(fit_input(given, p, resize), p)

                def on_step(i: int, n: int, p=p) -> None:
                    _report_saved(writer.done(), emit)
                    emit(ev.Step(p.index, i, n, min(1.0, (done_steps + i) / total_expected)))

                previews = Previews(lambda i, image, p=p: emit(ev.StagePreview(p.index, i, image)),
                                    p.resolved.vae_fingerprint(models.digests)) if live_previews else None
                if p.tiled:  # the pixel refine, tile by tile (its own seeds from the stage's)
                    result = run_tiled(pipe, p, project, given, device, on_step, lambda: cancel.cancelled)
                else:
                    call = build_call(pipe, p, project, given, generator)
                    result = run_stage(pipe, p, call, given, device, on_step, lambda: cancel.cancelled, previews)
                image, is_preview = result.image, False
                if image is None:  # the next stage took the latents: a preview now, the decode after the job
                    from core.previews import preview

                    image = preview(pipe, p.family, result.latents, p.size, p.resolved.vae_fingerprint(models.digests))
                    is_preview = True
                    deferred.hand(p.index, result.latents, Decoder.of(pipe, p.family, memory_plan.vae_tiling(p.index)),
                                  key_of(p.position), (p.schedule or {}).get("sigmas"))
            done_steps += result.steps_run
            if given_preview:  # what this stage took in is decoded after the job: so is its drift
                before = plans[p.position - 1]
                if p.position == start and reused is not None:  # stored as a preview: decoded with this VAE
                    deferred.hand(before.index, given.latents,
                                  Decoder.of(pipe, before.family, memory_plan.vae_tiling(before.index)),
                                  key_of(before.position), reused.sigmas)
                deferred.take(p.index, before.index, p.strength, measures=p.handoff == "latent")
            drift = None if given_preview else _drift(p, given, image)
            path = out.path_for(p.position, len(plans), label)
            extra = {"drift": drift.to_dict()} if drift is not None else {}
            extra.update((annotate(p, image) if annotate else None) or {})
            writer.submit(image, path, project, p.index, preview=is_preview, extra=extra or None, ran=ran)
            finished_event = ev.StageFinished(
                index=p.index, label=label, image=image, input_image=given.image, path=path,
                load_seconds=load_seconds, denoise_seconds=result.denoise_seconds,
                decode_seconds=result.decode_seconds, total_seconds=time.perf_counter() - t0,
                peak_memory=meter.peak, memory_kind=meter.label, steps_run=result.steps_run, handoff=p.handoff,
                preview=is_preview, drift=drift, ran=ran[p.position],
            )
            finished.append(finished_event)
            emit(finished_event)
            given, given_preview = StageInput(image=image, latents=result.latents), is_preview
            if p.position < len(plans) - 1:
                sigmas = (p.schedule or {}).get("sigmas")
                latents = result.latents if p.hands_over == "latents" else None
                problem = store.put(key_of(p.position), StoredOutput(image, latents, sigmas, is_preview))
                if problem is not None and not unstored:
                    unstored = True  # said once: the job goes on, storing in memory only
                    emit(ev.Notice(problem))
    except BaseException:
        # Whatever went wrong, what was produced is on disk before the job reports its end,
        # and said to be (a failed or cancelled job keeps its earlier stages' images).
        for w in writer.close():
            if w.error is None:
                emit(ev.StageSaved(w.index, w.path))
        raise
    _report_saved(writer.close(), emit)  # the final image is on disk: now what was deferred
    by_index = {p.index: p for p in plans}
    finished = deferred.settle(finished, project, store, emit, lambda: cancel.cancelled, explain, ran,
                               (lambda index, image: annotate(by_index[index], image)) if annotate else None)
    emit(ev.JobFinished([f.path for f in finished], time.perf_counter() - started, finished))


def _drift(p: StagePlan, given: StageInput, image):
    """A refine stage's drift from the image it took in (None for the other stages)."""
    if p.handoff not in ("pixel", "latent") or given.image is None or image is None:
        return None
    from core.drift import measure

    return measure(given.image, image, p.strength)


def _check_denoisers(enabled, resolved: list[ResolvedModel], device: str) -> None:
    """Each stage's transformer file and quantize setting checked against its model and
    this device, before anything loads: one line per stage that cannot run."""
    problems = []
    for (index, stage), r in zip(enabled, resolved):
        try:
            info = None
            if stage.transformer:
                info = check_transformer_file(Path(stage.transformer).expanduser(), r.family, r.index)
            check_quantize(stage.quantize, device, info, r.index)
        except ModelError as exc:
            problems.append(f"stage {index + 1}: {exc}")
    if problems:
        raise ProjectError(problems)


def _prefix_keys(project: Project, plans: list[StagePlan], device: str, models: ModelCache,
                 vae_tiling: Callable[[int], bool] = lambda index: False):
    """key_of(position): the stored-output key of the stage at that position (memoised);
    `vae_tiling(index)`: whether the stage at that index decodes in tiles."""
    keys: dict[int, str] = {}
    prints: dict[str, str] = {}

    def fingerprint(p: StagePlan) -> str:
        name = str(p.resolved.path)
        if name not in prints:
            prints[name] = model_fingerprint(p.resolved, models.digests)
        return prints[name]

    def key_of(position: int) -> str:
        if position not in keys:
            keys[position] = prefix_key(project, plans, position, device,
                                        lambda p: pick_dtype(project.dtype, p.family, device), fingerprint,
                                        models.digests, lambda p: vae_tiling(p.index))
        return keys[position]

    return key_of


def _reusable_start(plans: list[StagePlan], from_stage: int | None, key_of, store: StageStore, emit):
    """The position to run from, and the stored output handed to it (None: from the start)."""
    if from_stage is None:
        return 0, None
    wanted = next((p.position for p in plans if p.index == from_stage), None)
    if wanted is None:
        raise ProjectError([f"stage {from_stage + 1} is not an enabled stage of this project"])
    damaged: list[StagePlan] = []
    for position in range(wanted - 1, -1, -1):
        stored = store.get(key_of(position), plans[position].size, lambda p=plans[position]: damaged.append(p))
        if stored is not None:
            break
    else:
        position, stored = -1, None
    start = position + 1
    for p in damaged:
        emit(ev.Notice(f"stored output for stage {p.index + 1} was damaged; recomputing"))
    if start < wanted and not damaged:
        prev = plans[wanted - 1]
        emit(ev.Notice(
            f"no stored output of {prev.stage.label(prev.index)} fits these settings (stale: an earlier stage "
            f"changed, or it has not run with them): running from {plans[start].stage.label(plans[start].index)}"))
    return start, stored


def _check_adapters(plans: list[StagePlan]) -> None:
    """Every stage's adapters, checked from their files before the first stage runs."""
    for p in plans:
        s = p.stage
        if s.loras or s.controlnet is not None or s.ip_adapters:
            from core.adapters import check_stage

            check_stage(s, p.family, f"stage {p.index + 1} ({p.family.title})")


def _stage_pipeline(loaded, p: StagePlan):
    """The stage's pipeline: the role's, or a ControlNet pipeline over the same components."""
    if p.stage.controlnet is None:
        return loaded.pipeline(p.role)
    from core.adapters import check_controlnet

    folder, model_cls, pipeline_cls = check_controlnet(p.stage.controlnet, p.family, f"stage {p.index + 1}")
    return loaded.controlnet_pipeline(folder, model_cls, pipeline_cls)


def _with_conditioning(given: StageInput, p: StagePlan) -> StageInput:
    """The control map and IP-Adapter references the stage's adapters need."""
    s = p.stage
    if s.controlnet is None and not s.ip_adapters:
        return given
    from core.adapters import control_map, reference_images

    return StageInput(given.image, given.latents,
                      control_map(s.controlnet, p.size) if s.controlnet is not None else None,
                      reference_images(s.ip_adapters) if s.ip_adapters else None)


def check_output(out: OutputPlan) -> None:
    """Raise ProjectError when the job's images could not be written where it would put them."""
    if out.final is not None and out.final.is_dir():
        raise ProjectError([f"the output {out.final} is a folder: name the image file to write"])
    problem = writable_problem(out.directory)
    if problem:
        raise ProjectError([f"the images cannot be written: {problem}"])


def check_memory(project: Project, plans: list[StagePlan], device: str, held: int = 0) -> None:
    """Raise ProjectError for a stage whose size clearly cannot be decoded in the memory left
    (`held`: bytes of this job's own models already on the device, which count as room)."""
    from core.memory_check import available_bytes, decode_size, stage_problem

    available, kind = available_bytes(device)
    available += held
    for p in plans:
        if p.kind == UPSCALE:
            continue  # it tiles to fit (core.upscalers.tile_for), and decodes nothing
        itemsize = pick_dtype(project.dtype, p.family, device).itemsize
        folder = None if p.resolved.is_file else p.resolved.path
        size = decode_size(p.size, p.stage.refine_tile, p.tiled)
        problem = stage_problem(f"stage {p.index + 1} ({p.stage.model})", size, folder, itemsize, available, kind)
        if problem:
            raise ProjectError([problem])


def _prompts(stage, project: Project) -> dict[str, str]:
    return {"prompt": stage.effective_prompt(project.prompt),
            "negative prompt": stage.effective_negative(project.negative_prompt)}


def _report_saved(written, emit) -> None:
    for w in written:
        if w.error is not None:
            raise ProjectError([f"stage {w.index + 1}'s image could not be written to {w.path}: {w.error}"])
        emit(ev.StageSaved(w.index, w.path))


def _shares_with_loaded(models: ModelCache, p: StagePlan) -> bool:
    """Whether the stage's model has a component identical to one already loaded."""
    if p.resolved.is_file:
        return False
    from core.models import WEIGHT_COMPONENTS, component_fingerprint

    loaded = {fp for m in models.loaded.values() for fp in m.fingerprints.values()}
    return any(component_fingerprint(p.resolved.path / name, models.digests) in loaded
               for name in WEIGHT_COMPONENTS if (p.resolved.path / name).is_dir())


def resolve_policy(project: Project, device: str, plans: list[StagePlan], held: int = 0):
    """The job's memory plan (core.memory_plan): the placement asked for, or for 'auto' the
    cheapest that fits the budget (--vram-budget, else the free VRAM plus `held`, the bytes of
    this job's own models already on the GPU, which the plan counts among its weights); all
    resident without a GPU, a decode in tiles only where the RAM left cannot hold it whole."""
    from core.memory_plan import choose, parse_budget, stage_needs
    from core.memory_check import available_bytes

    needs = [stage_needs(p, pick_dtype(project.dtype, p.family, device).itemsize) for p in plans
             if p.kind != UPSCALE]
    if project.vram_budget:
        budget, kind = parse_budget(project.vram_budget), "VRAM budget"
    else:
        budget, kind = available_bytes(device)
        budget += held
    return choose(needs, budget, kind, project.memory_policy, "cuda" if project.vram_budget else device)


def load_init_image(project: Project):
    from PIL import Image

    from core.images import read_image

    image = read_image(Path(project.init_image), f"init image {project.init_image}")
    if image.size != (project.width, project.height):
        image = image.resize((project.width, project.height), Image.LANCZOS)
    return image
