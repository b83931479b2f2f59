"""Stored stage outputs, for re-running a chain from a later stage and for sweeps.

After each stage the engine stores what it handed over — the image, the latents when the
next stage takes latents, and a flow ensemble base's sigma schedule — keyed by a hash of
the recipe that produced it: every field of the project and of stages 1..N that can shape
the output (derived from the recipe's dataclasses: all but NOT_SHAPING), the contents of
every file they name (init, control and reference images, LoRA, ControlNet, IP-Adapter and
image-encoder weights), and each stage as planned (the handoff, a stop point an ensemble
imposes) with its model's fingerprint from its configs and weights. Change any of it, a file
in place included, and the key changes: the stored output is stale and is not found.

Kept in memory (the last few, for a session that tunes one chain) and in the project's
cache as safetensors (paths.cache_dir()/stages), so a re-run survives a restart. An entry
read from the cache is checked against the digest stored with it and the size its stage
makes; a damaged one is a miss. A cache that cannot be written leaves the job running.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable

from core import paths

MEMORY_ENTRIES = 16
DISK_ENTRIES = 64
FORMAT = "2"  # 2: entries carry a digest of their contents and their image size


@dataclass
class StoredOutput:
    image: Any  # PIL image (RGB)
    latents: Any = None  # torch tensor in the family's handoff layout, or None
    sigmas: list[float] | None = None  # a flow ensemble base's full schedule
    preview: bool = False  # the image is a preview of latents handed over, not a decode


# Fields of the recipe (core/project.py) that cannot change a stage's image, and why. Every
# other field is in the key, by value, and by contents for the files named in CONTENTS: a
# new field is covered unless it is named here (tests/test_rerun.py walks the schema to
# hold both to that).
NOT_SHAPING = {
    "Project.vram_budget": "the memory a job is planned for changes where weights live, not what they compute",
    "Project.memory_policy": "where the weights are kept (resident, offloaded) does not change what they compute",
    # a candidate runs as its own project (core.candidates): candidates 1, its seed set, and
    # the seed is keyed; the scorer chooses between outputs, it does not shape one
    "Project.candidates": "a candidate runs as a project of its own, with candidates 1 and its seed",
    "Project.scorer": "the scorer chooses between finished outputs; it does not shape one",
    "Project.keep": "how many candidates continue, not what any of them computes",
    "Stage.name": "a label for the timing table and the file names",
    "Stage.enabled": "a disabled stage is not planned: the planned stages are what is keyed",
}


def prefix_key(project, plans, upto: int, device: str, dtype_of: Callable, fingerprint: Callable,
               digests, vae_tiling: Callable[[Any], bool] = lambda plan: False) -> str:
    """The key of the output of plans[upto] (a position among the planned stages).
    `fingerprint(plan)` says what the stage's model is; `dtype_of(plan)` its precision;
    `vae_tiling(plan)` whether it decodes in tiles (core.memory_plan: a tiled decode's
    blended seams differ slightly from a whole one);
    `digests` (core.models.Digests) hashes the files the stages read."""
    h = hashlib.sha256()
    head = recipe(project, digests, skip=("stages",))
    head["device"] = device
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for p in plans[: upto + 1]:
        planned = {
            "handoff": p.handoff, "stop_at": p.stop_at, "steps": p.steps, "split": p.split, "size": list(p.size),
            "hands_over": p.hands_over, "strength": p.strength, "schedule": p.schedule is not None,
            "seed": p.stage.effective_seed(project.seed), "model": fingerprint(p), "dtype": str(dtype_of(p)),
        }
        if vae_tiling(p):
            planned["vae_tiling"] = True  # only when tiled: the keys of whole decodes stay as they were
        h.update(json.dumps({"stage": recipe(p.stage, digests), "plan": planned}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def recipe(obj, digests, skip: tuple[str, ...] = ()) -> dict:
    """A recipe dataclass as the key sees it: every field but NOT_SHAPING's, nested
    dataclasses alike, and for each file it names, the file's contents."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        name = f"{type(obj).__name__}.{f.name}"
        if name in NOT_SHAPING or f.name in skip:
            continue
        value = getattr(obj, f.name)
        if is_dataclass(value):
            value = recipe(value, digests)
        elif isinstance(value, list):
            value = [recipe(v, digests) if is_dataclass(v) else v for v in value]
        if name in CONTENTS:
            value = {"ref": value, "contents": _contents(CONTENTS[name], obj, digests)}
        out[f.name] = value
    return out


def _contents(read: Callable, owner, digests) -> str | None:
    """The digest of what a field names, or None where nothing is here to read (the ref
    string then stands alone; the job itself says what is missing)."""
    from core.errors import ModelError

    try:
        return read(owner, digests)
    except (ModelError, OSError):
        return None


def _image(path: str | None, digests) -> str | None:
    return digests.of(Path(path).expanduser()) if path else None


def _folder(folder: Path, digests) -> str:
    """A diffusers folder by its configs and weights (every file, for one without weights)."""
    from core.models import component_fingerprint

    return component_fingerprint(folder, digests) or hashlib.sha256("".join(
        f.name + digests.of(f) for f in sorted(folder.iterdir()) if f.is_file()).encode()).hexdigest()


def _upscaler(stage, digests) -> str | None:
    from core.upscalers import upscaler_file

    return digests.of(upscaler_file(stage.upscaler)) if stage.upscaler else None


def _lora(lora, digests) -> str:
    from core.adapters import adapter_file

    return digests.of(adapter_file(lora.ref, "LoRA", fetch=False))


def _controlnet(cn, digests) -> str:
    from core.adapters import controlnet_folder

    return _folder(controlnet_folder(cn.model, fetch=False), digests)


def _ip_weights(ip, digests) -> str:
    from core.adapters import adapter_file

    return digests.of(adapter_file(ip.model, "IP-Adapter", fetch=False))


def _ip_encoder(ip, digests) -> str:
    from core.adapters import ip_adapter_files

    return _folder(ip_adapter_files(ip, fetch=False)[1], digests)


# The fields that name a file or folder a stage reads, and how its contents are read (a
# Hub reference through the local Hugging Face cache only: never a download for a key).
# Stage.model's weights are in the plan's part of the key (model_fingerprint).
CONTENTS: dict[str, Callable] = {
    "Project.init_image": lambda project, d: _image(project.init_image, d),
    "Lora.ref": _lora,
    "ControlNet.model": _controlnet,
    "ControlNet.image": lambda cn, d: _image(cn.image, d),
    "IPAdapter.model": _ip_weights,
    "IPAdapter.image": lambda ip, d: _image(ip.image, d),
    "IPAdapter.image_encoder": _ip_encoder,
    "Stage.upscaler": _upscaler,  # a hires fix's upscaler file
    "Stage.transformer": lambda stage, d: _image(stage.transformer, d),  # a denoiser file (GGUF, safetensors)
}


def model_fingerprint(resolved, digests) -> str:
    """A model's identity from its weights: each component's fingerprint, or a file's digest."""
    if resolved.is_file:
        return digests.of(resolved.path)
    from core.models import component_fingerprint

    h = hashlib.sha256()
    for d in sorted(resolved.path.iterdir()):
        if d.is_dir():
            # Components without weights (scheduler, tokenizer) by their files' contents.
            fp = component_fingerprint(d, digests) or "".join(
                f.name + hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.iterdir()) if f.is_file())
            h.update(f"{d.name}:{fp}|".encode())
    return h.hexdigest()


class StageStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else paths.cache_dir() / "stages"
        self._memory: OrderedDict[str, StoredOutput] = OrderedDict()
        self._lock = threading.Lock()

    _shared: dict[str, "StageStore"] = {}

    @classmethod
    def default(cls) -> "StageStore":
        """One store per cache folder in this process (HANDOFF_HOME moves it)."""
        directory = paths.cache_dir() / "stages"
        return cls._shared.setdefault(str(directory), cls(directory))

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str, size: tuple[int, int] | None = None,
            damaged: Callable[[], None] | None = None) -> StoredOutput | None:
        """The stored output, or None. One from the cache folder is checked first: its
        digest (tensors, shapes, dtypes, sizes) and its image's size against `size` (the
        plan's); a mismatch is a miss, the entry is removed and `damaged()` is called."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        try:
            found = self._read(key, size)
        except Damaged:
            try:
                self.path(key).unlink(missing_ok=True)  # put() replaces it once the stage runs again
            except OSError:
                pass  # a read-only cache keeps it, and it is found damaged again
            if damaged is not None:
                damaged()
            return None
        if found is not None:
            self._remember(key, found)
        return found

    def put(self, key: str, output: StoredOutput) -> str | None:
        """Keep the output in memory and in the cache folder. Returns why it could not be
        written there (a file where the folder should be, no permission, a full disk), or
        None: a cache that cannot be written never fails a job."""
        if output.latents is not None:  # a copy: the caller's tensor may live on and change
            output = StoredOutput(output.image, output.latents.detach().to("cpu", copy=True), output.sigmas,
                                  output.preview)
        self._remember(key, output)
        try:
            self._write(key, output)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            return (f"stored stage outputs cannot be written to {self.directory} ({reason}): they are kept in "
                    "memory only, so a re-run after a restart starts from the first stage")
        return None

    def _remember(self, key: str, output: StoredOutput) -> None:
        with self._lock:
            self._memory[key] = output
            self._memory.move_to_end(key)
            while len(self._memory) > MEMORY_ENTRIES:
                self._memory.popitem(last=False)

    def _write(self, key: str, output: StoredOutput) -> None:
        import numpy as np
        import torch
        from safetensors.torch import save

        from core.atomic import write_with

        tensors = {"image": torch.from_numpy(np.asarray(output.image.convert("RGB"), dtype=np.uint8).copy())}
        if output.latents is not None:
            tensors["latents"] = output.latents.detach().to("cpu").contiguous()
        if output.sigmas is not None:
            tensors["sigmas"] = torch.tensor(output.sigmas, dtype=torch.float64)
        meta = {"format": FORMAT, "key": key, "preview": "1" if output.preview else "0",
                "size": "x".join(map(str, output.image.size))}
        meta["digest"] = content_digest(tensors, meta)
        paths.ensure(self.directory)
        data = save(tensors, metadata=meta)
        write_with(self.path(key), lambda f: f.write(data))
        self._prune()

    def _read(self, key: str, size: tuple[int, int] | None) -> StoredOutput | None:
        """None for no entry (or one written by an older Handoff); raises Damaged for one
        that does not hold what was stored, or not at the size the stage makes."""
        path = self.path(key)
        try:
            if not path.is_file():
                return None
            data = path.read_bytes()  # once: what is checked is what is used
        except OSError:
            return None
        try:
            from safetensors.torch import load

            length = int.from_bytes(data[:8], "little")
            meta = json.loads(data[8:8 + length]).get("__metadata__") or {}
            if meta.get("format") != FORMAT:
                return None
            tensors = load(data)
            recorded = meta.pop("digest", None)
            if meta.get("key") != key or recorded != content_digest(tensors, meta):
                raise Damaged(key)
            from PIL import Image

            image = Image.fromarray(tensors["image"].numpy(), "RGB")
        except Damaged:
            raise
        except Exception as exc:  # an unparsable file: damaged too, never a failed job
            raise Damaged(key) from exc
        if "x".join(map(str, image.size)) != meta.get("size") or (size is not None and image.size != tuple(size)):
            raise Damaged(key)
        sigmas = tensors["sigmas"].tolist() if "sigmas" in tensors else None
        return StoredOutput(image, tensors.get("latents"), sigmas, meta.get("preview") == "1")

    def _prune(self) -> None:
        def age(f: Path) -> int:
            try:
                return f.stat().st_mtime_ns
            except OSError:  # removed meanwhile (another job's prune)
                return 0

        files = sorted(self.directory.glob("*.safetensors"), key=age)
        for f in files[: max(0, len(files) - DISK_ENTRIES)]:
            f.unlink(missing_ok=True)


class Damaged(Exception):
    """A stored entry that does not hold what was stored."""


def content_digest(tensors: dict, meta: dict) -> str:
    """sha256 over the metadata and each tensor's name, dtype, shape, size and bytes."""
    import torch

    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape), t.numel() * t.element_size()]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
