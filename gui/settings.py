"""The window's own settings (recent files, recent models), kept as JSON in
core.paths.settings_file() so HANDOFF_HOME moves them. Qt-free and forgiving: a missing
or damaged file means defaults, never a crash at start-up."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core import paths
from core.atomic import write_text

MAX_RECENT = 10


@dataclass
class Settings:
    recent_files: list[str] = field(default_factory=list)
    recent_models: list[str] = field(default_factory=list)
    autosave_seconds: int = 60

    @classmethod
    def load(cls) -> "Settings":
        try:
            data = json.loads(paths.settings_file().read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        gui = data.get("gui", {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in gui.items() if k in known})

    def save(self) -> None:
        # Other parts of Handoff may keep their own keys in the same file: keep them.
        target = paths.settings_file()
        try:
            data = json.loads(target.read_text())
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data["gui"] = asdict(self)
        try:
            write_text(target, json.dumps(data, indent=2))
        except OSError:
            pass  # a read-only home costs the recent list, nothing else

    def add_recent_file(self, path: Path | str) -> None:
        self.recent_files = _push(self.recent_files, str(Path(path).resolve()))

    def add_recent_model(self, ref: str) -> None:
        if ref.strip() and not ref.startswith("builtin:"):
            self.recent_models = _push(self.recent_models, ref.strip())


def _push(items: list[str], item: str) -> list[str]:
    return ([item] + [i for i in items if i != item])[:MAX_RECENT]
