"""Stored stage outputs, for re-running a chain from a later stage and for sweeps.

After each stage the engine stores what it handed over — the image, the latents when the
next stage takes latents, and a flow ensemble base's sigma schedule — keyed by a hash of
the recipe that produced it: the project's prompts, size, seed and init image, and for
stages 1..N every setting that shapes the output, as planned (the handoff, a stop point an
ensemble imposes), with each model's fingerprint from its configs and weights. Change any
earlier stage and the key changes: the stored output is stale and is not found.

Kept in memory (the last few, for a session that tunes one chain) and in the project's
cache as safetensors (paths.cache_dir()/stages), so a re-run survives a restart.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from core import paths

MEMORY_ENTRIES = 16
DISK_ENTRIES = 64


@dataclass
class StoredOutput:
    image: Any  # PIL image (RGB)
    latents: Any = None  # torch tensor in the family's handoff layout, or None
    sigmas: list[float] | None = None  # a flow ensemble base's full schedule
    preview: bool = False  # the image is a preview of latents handed over, not a decode


def prefix_key(project, plans, upto: int, device: str, dtype_of: Callable, fingerprint: Callable) -> str:
    """The key of the output of plans[upto] (a position among the planned stages).
    `fingerprint(plan)` says what the stage's model is; `dtype_of(plan)` its precision."""
    h = hashlib.sha256()
    head = {
        "prompt": project.prompt, "negative": project.negative_prompt, "size": [project.width, project.height],
        "seed": project.seed, "device": device, "init": _file_id(project.init_image),
    }
    h.update(json.dumps(head, sort_keys=True).encode())
    for p in plans[: upto + 1]:
        stage = asdict(p.stage)
        stage.pop("name", None)
        stage.pop("enabled", None)
        stage["loras"] = [dict(lo, file=_file_id(lo["ref"])) for lo in stage["loras"]]
        planned = {
            "handoff": p.handoff, "stop_at": p.stop_at, "steps": p.steps, "split": p.split, "size": list(p.size),
            "hands_over": p.hands_over, "strength": p.strength, "schedule": p.schedule is not None,
            "seed": p.stage.effective_seed(project.seed), "model": fingerprint(p), "dtype": str(dtype_of(p)),
        }
        h.update(json.dumps({"stage": stage, "plan": planned}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


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


def _file_id(ref: str | None) -> str | None:
    """A file's size and modification time (cheap; a rewrite changes it), or the ref itself."""
    if not ref:
        return None
    path = Path(ref)
    if path.is_file():
        st = path.stat()
        return f"{ref}:{st.st_size}:{st.st_mtime_ns}"
    return ref


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

    def get(self, key: str) -> StoredOutput | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        found = self._read(key)
        if found is not None:
            self._remember(key, found)
        return found

    def put(self, key: str, output: StoredOutput) -> None:
        if output.latents is not None:  # a copy: the caller's tensor may live on and change
            output = StoredOutput(output.image, output.latents.detach().to("cpu", copy=True), output.sigmas,
                                  output.preview)
        self._remember(key, output)
        self._write(key, output)

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
        meta = {"key": key, "preview": "1" if output.preview else "0"}
        paths.ensure(self.directory)
        data = save(tensors, metadata=meta)
        write_with(self.path(key), lambda f: f.write(data))
        self._prune()

    def _read(self, key: str) -> StoredOutput | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            from PIL import Image
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                names = set(f.keys())
                image = Image.fromarray(f.get_tensor("image").numpy(), "RGB")
                latents = f.get_tensor("latents") if "latents" in names else None
                sigmas = f.get_tensor("sigmas").tolist() if "sigmas" in names else None
        except Exception:  # a damaged cache file is a miss, never a failed job
            return None
        if meta.get("key") != key:
            return None
        return StoredOutput(image, latents, sigmas, meta.get("preview") == "1")

    def _prune(self) -> None:
        files = sorted(self.directory.glob("*.safetensors"), key=lambda f: f.stat().st_mtime_ns)
        for f in files[: max(0, len(files) - DISK_ENTRIES)]:
            f.unlink(missing_ok=True)
