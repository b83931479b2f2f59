"""The 'before' of every handoff is a real image.

A stage that hands its latents to the next one (a latent or ensemble handoff) is not
decoded on the way: the next stage starts at once, and the image shown and written
meanwhile is a preview (core.previews, `"preview": true` in its recipe). Once the job's
final image is on disk, each such stage's latents are decoded with its own VAE, as its
pipeline would have decoded them. The decode replaces the preview on disk (rewritten
atomically, `preview` dropped from the recipe), in the stored output (core.stage_store)
and in every front end (events.StageImageUpdated), and the refine that took those
latents measures its drift (core.drift) against it, never against the preview.

Why after the final image and not on a thread beside the next stage: on a CPU a second
thread takes cores from the stage that makes the final image (the benchmark's
time-to-final-image would grow by the decode), and on a GPU the decode's activations would
sit on top of the next model's. A decode is short next to a stage; the final image is what
the user waits for.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from core import events as ev


@dataclass
class Decoder:
    """What a decode needs of a stage's pipeline: its VAE and image processor, not the
    pipeline itself, whose denoiser a sequential memory policy must be free to release."""

    vae: Any  # family.vae_latents reads `.vae`, so a Decoder stands in for the pipeline there
    image_processor: Any
    family: Any  # core.families.Family: how its handed-over latents map to the VAE's own
    watermark: Any = None  # SDXL pipelines watermark their decodes when invisible-watermark is installed
    tiled: bool = False  # the stage's plan (core.memory_plan): its VAE may be shared with a stage that differs

    @classmethod
    def of(cls, pipe, family, tiled: bool = False) -> "Decoder":
        return cls(pipe.vae, pipe.image_processor, family, getattr(pipe, "watermark", None), tiled)

    def __call__(self, latents):
        """A PIL image of handoff-layout latents, as the family's pipeline decodes its own:
        an fp16 VAE marked force_upcast (SDXL's) decodes in fp32, then goes back."""
        import torch

        from core.vae_tiling import set_vae_tiling

        vae = self.vae
        set_vae_tiling(self, self.tiled)
        upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
        if upcast:
            vae.to(torch.float32)
        try:
            with torch.no_grad():
                raw = self.family.vae_latents(self, latents[:1].to(vae.dtype))
                pixels = vae.decode(raw, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(torch.float16)
        if self.watermark is not None:
            pixels = self.watermark.apply_watermark(pixels)
        return self.image_processor.postprocess(pixels, output_type="pil")[0]


@dataclass
class _Handed:
    index: int  # the stage, in project.stages
    latents: Any
    decoder: Decoder
    key: str  # its stored output's key (core.stage_store)
    sigmas: list[float] | None


@dataclass
class _Took:
    index: int  # the stage that took the latents
    before: int  # the stage that handed them over
    strength: float | None
    measures: bool  # a refine (latent handoff): its drift waits for the decode


@dataclass
class Deferred:
    """The decodes a job owes, and the stages waiting on them, settled after the final image."""

    handed: list[_Handed] = field(default_factory=list)
    took: list[_Took] = field(default_factory=list)

    def hand(self, index: int, latents, decoder: Decoder, key: str, sigmas: list[float] | None) -> None:
        """Stage `index` handed these latents over undecoded (a copy is kept: the next stage
        may reuse the tensor's memory)."""
        self.handed.append(_Handed(index, latents.detach().clone(), decoder, key, sigmas))

    def take(self, index: int, before: int, strength: float | None, measures: bool) -> None:
        """Stage `index` took the latents of stage `before`, whose image is still a preview."""
        self.took.append(_Took(index, before, strength, measures))

    def settle(self, finished: list[ev.StageFinished], project, store, emit: Callable[[Any], None],
               cancelled: Callable[[], bool], explain: Callable[[BaseException], str],
               ran=None, annotate: Callable[[int, Any], dict | None] | None = None) -> list[ev.StageFinished]:
        """Decode what is owed, rewrite the PNGs and stored outputs it changes, report each
        changed stage (StageImageUpdated) and return the job's stages as they now are (`ran`:
        the job's core.ran records, written again with each rewritten PNG; `annotate(index,
        image)`: more keys for a rewritten stage's recipe chunk, from its new image, such as
        a candidate's score). A
        decode or rewrite that fails, or a cancel, leaves the stage as it was (a preview,
        its PNG intact) and says so: the job's images are on disk already."""
        from core.drift import measure
        from core.metadata import save_png
        from core.stage_store import StoredOutput

        stages = {f.index: f for f in finished}
        changed: dict[int, ev.StageFinished] = {}
        decoded: dict[int, float] = {}  # index -> seconds its decode took
        for h in self.handed:
            if cancelled():
                emit(ev.Notice("cancelled before every handed-over stage was decoded: those images stay previews"))
                break
            started = time.perf_counter()
            try:
                image = h.decoder(h.latents)
            except Exception as exc:  # the job's images are on disk: a failed decode costs only the decode
                emit(ev.Notice(f"{stages[h.index].label}: its handed-over latents could not be decoded "
                               f"({explain(exc)}): its image stays a preview"))
                continue
            seconds = time.perf_counter() - started
            decoded[h.index] = seconds
            f = stages[h.index]
            changed[h.index] = replace(f, image=image, preview=False, decode_seconds=f.decode_seconds + seconds,
                                       total_seconds=f.total_seconds + seconds)
            store.put(h.key, StoredOutput(image, h.latents, h.sigmas, False))
        for t in self.took:
            before = changed.get(t.before, stages[t.before])
            after = changed.get(t.index, stages[t.index])
            drift = (measure(before.image, after.image, t.strength, against_preview=before.preview)
                     if t.measures else after.drift)
            changed[t.index] = replace(after, input_image=before.image, drift=drift)
        out = []
        for f in finished:
            new = changed.get(f.index)
            if new is None:
                out.append(f)
                continue
            extra = {"drift": new.drift.to_dict()} if new.drift is not None else {}
            extra.update((annotate(new.index, new.image) if annotate else None) or {})
            extra = extra or None
            try:
                save_png(new.image, Path(new.path), project, new.index, preview=new.preview, extra=extra, ran=ran)
            except OSError as exc:
                emit(ev.Notice(f"{new.label}: its image could not be rewritten to {new.path} ({exc}): "
                               "the file keeps the earlier one"))
                out.append(f)
                continue
            emit(ev.StageImageUpdated(new.index, new.label, new.image, Path(new.path), new.preview,
                                      new.input_image if new.input_image is not f.input_image else None,
                                      new.drift, decoded.get(new.index, 0.0)))
            out.append(new)
        return out
