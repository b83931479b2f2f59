"""Each stage's PNG, with its recipe, written on a thread of its own: PNG encoding and the
fsync of an atomic write overlap the next stage's denoising instead of delaying it.
Completions are collected on the engine's thread (`done()`), so every event the engine
reports still comes from one thread."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Written:
    index: int  # the stage, in project.stages
    path: Path
    error: BaseException | None = None


class PngWriter:
    def __init__(self) -> None:
        self._todo: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="handoff-png-writer", daemon=True)
        self._thread.start()

    def submit(self, image: Any, path: Path, project: Any, index: int, preview: bool = False,
               extra: dict | None = None, ran: list | None = None) -> None:
        """Queue a write; the image and project must not change afterwards. `extra`: more
        keys for the recipe chunk (a refine's drift); `ran`: the job's records of what ran
        at each stage (core.ran.StageRan, from the plan), which the file follows."""
        self._todo.put((image, Path(path), project, index, preview, extra, ran))

    def done(self) -> list[Written]:
        """The writes finished since the last call, without waiting."""
        out: list[Written] = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> list[Written]:
        """Wait for every queued write; the ones not yet collected by done()."""
        self._todo.put(None)
        self._thread.join()
        return self.done()

    def _work(self) -> None:
        from core.metadata import save_png

        while (item := self._todo.get()) is not None:
            image, path, project, index, preview, extra, ran = item
            try:
                save_png(image, path, project, index, preview=preview, extra=extra, ran=ran)
                self._done.put(Written(index, path))
            except BaseException as exc:  # reported on the engine's thread, never lost
                self._done.put(Written(index, path, exc))
