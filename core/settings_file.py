"""The one settings file (core.paths.settings_file()): a JSON table whose top-level keys
belong to different parts of Handoff ("gui" for the window, "models" for the model
library). Each part reads and replaces its own section and keeps the others'."""
from __future__ import annotations

import json
from typing import Any

from core import paths
from core.atomic import write_text


def _read_all() -> dict:
    try:
        data = json.loads(paths.settings_file().read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: defaults, never a crash at start-up
    return data if isinstance(data, dict) else {}


def read_section(key: str) -> Any:
    """The stored value under `key`, or None when the file or the key is missing."""
    return _read_all().get(key)


def write_section(key: str, value: Any) -> None:
    """Replace `key`'s section atomically, keeping every other key in the file."""
    data = _read_all()
    data[key] = value
    write_text(paths.settings_file(), json.dumps(data, indent=2))
