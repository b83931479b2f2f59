"""The one settings file (core.paths.settings_file()): a JSON table whose top-level keys
belong to different parts of Handoff ("gui" for the window, "models" for the model
library). Each part reads and replaces its own section and keeps the others'.

A damaged file never stops the start-up: its sections read as missing (defaults), the
reason is kept for the window to say once (`problem()`), and the first write moves the
damaged file aside as settings.json.damaged instead of overwriting what it held."""
from __future__ import annotations

import json
import os
from typing import Any

from core import checked, paths
from core.atomic import write_text
from core.errors import ReadError

MAX_SETTINGS_BYTES = 4 * checked.MiB  # recent lists and a model library: a few kB
_problem: list[str | None] = [None]


def read_all() -> dict:
    """Every section; {} when there is no file; ReadError when it is damaged."""
    path = paths.settings_file()
    if not path.exists():
        return {}
    return checked.table(checked.read_json_file(path, path.name, MAX_SETTINGS_BYTES), path.name)


def _read_or_empty() -> dict:
    try:
        data = read_all()
    except ReadError as exc:
        _problem[0] = f"{exc} (using defaults; the file is kept as {paths.settings_file().name}.damaged on the next save)"
        return {}
    _problem[0] = None
    return data


def problem() -> str | None:
    """Why the settings file could not be read the last time it was, or None."""
    return _problem[0]


def read_section(key: str) -> Any:
    """The stored value under `key`, or None when the file or the key is missing, or the
    file is damaged. The caller checks the value's shape."""
    return _read_or_empty().get(key)


def write_section(key: str, value: Any) -> None:
    """Replace `key`'s section atomically, keeping every other key in the file."""
    try:
        data = read_all()
    except ReadError:
        path = paths.settings_file()
        os.replace(path, path.with_name(path.name + ".damaged"))  # kept for the user, never overwritten blind
        data = {}
    data[key] = value
    write_text(paths.settings_file(), json.dumps(data, indent=2))
