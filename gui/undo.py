"""Undo and redo of every project edit, as snapshots: each edit pushes the project's
to_dict() before and after it. Snapshots make every edit undoable the same way, whichever
widget made it (a command per kind of edit would be one more thing to forget for each new
field); a project's dict is a few kilobytes. Rapid edits of the same field (typing a
prompt, dragging the strength slider) merge into one step."""
from __future__ import annotations

import time
from typing import Any, Callable

from PySide6.QtCore import QObject
from PySide6.QtGui import QUndoCommand, QUndoStack

from core.project import Project

MERGE_SECONDS = 1.0  # edits of one field closer together than this are one undo step


def changed_fields(before: dict, after: dict, prefix: str = "") -> tuple[str, ...]:
    """The paths that differ, e.g. ("prompt",) or ("stages.1.strength",)."""
    out: list[str] = []
    for key in sorted(set(before) | set(after), key=str):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, path + ".")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(isinstance(x, dict) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b)):
                out += changed_fields(x, y, f"{path}.{i}.")
        else:
            out.append(path)
    return tuple(out)


class Snapshot(QUndoCommand):
    def __init__(self, history: "ProjectHistory", before: dict, after: dict) -> None:
        self.fields = changed_fields(before, after)
        super().__init__("edit " + ", ".join(f.rsplit(".", 1)[-1] for f in self.fields[:3]))
        self.history, self.before, self.after = history, before, after
        self.when = time.monotonic()
        self._pushed = False

    def id(self) -> int:
        return 1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, Snapshot) or other.fields != self.fields or other.when - self.when > MERGE_SECONDS:
            return False
        self.after, self.when = other.after, other.when
        return True

    def redo(self) -> None:
        if not self._pushed:  # QUndoStack.push runs redo(): the edit has already happened
            self._pushed = True
            return
        self.history.apply(self.after)

    def undo(self) -> None:
        self.history.apply(self.before)


class ProjectHistory(QObject):
    """The undo stack of the open project. `record()` after each edit; `reset()` when the
    document becomes another project; `apply(project)` is how a snapshot goes back in."""

    def __init__(self, current: Callable[[], Project], apply: Callable[[Project], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.stack = QUndoStack(self)
        self._current, self._apply = current, apply
        self._snapshot: dict[str, Any] = current().to_dict()
        self._applying = False

    def reset(self) -> None:
        self.stack.clear()
        self._snapshot = self._current().to_dict()

    def record(self) -> None:
        if self._applying:
            return
        now = self._current().to_dict()
        if now != self._snapshot:
            before, self._snapshot = self._snapshot, now
            self.stack.push(Snapshot(self, before, now))

    def apply(self, data: dict) -> None:
        self._applying = True
        try:
            self._apply(Project.from_dict(data))
            self._snapshot = self._current().to_dict()
        finally:
            self._applying = False
