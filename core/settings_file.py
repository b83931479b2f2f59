"""The one settings file (core.paths.settings_file()): a JSON table whose top-level keys
belong to different parts of Handoff ("gui" for the window, "models" for the model
library). Each part reads and replaces its own section and keeps the others'.

A damaged file never stops the start-up. One that cannot be read at all is moved aside
as settings.json.damaged (core.checked.keep_damaged) and every section reads as missing
(defaults). A part that finds its own section partly wrong calls section_damaged: the
file as it was is kept the same way and the section is written back with what could be
read. Either way the reason waits in take_problem() for the window (or the command
line) to say once."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core import checked, paths
from core.atomic import write_text
from core.errors import ReadError

MAX_SETTINGS_BYTES = 4 * checked.MiB  # recent lists and a model library: a few kB
_problems: list[str] = []  # said by take_problem(), once
# What section_damaged last wrote, per file: a second damaged section finds the first one's
# repair there, and must not replace the original kept aside with it.
_repaired: dict[Path, bytes] = {}


def read_all() -> dict:
    """Every section; {} when there is no file; ReadError when it is damaged."""
    path = paths.settings_file()
    if not path.exists():
        return {}
    return checked.table(checked.read_json_file(path, path.name, MAX_SETTINGS_BYTES), path.name)


def _read_or_empty() -> dict:
    try:
        return read_all()
    except ReadError as exc:
        _say(f"{exc} (using defaults; {checked.keep_damaged(paths.settings_file())[1]})")
        return {}


def _say(problem: str) -> None:
    if problem not in _problems:
        _problems.append(problem)


def take_problem() -> str | None:
    """What was wrong with the settings file since this was last asked, or None: the
    caller says it, once."""
    if not _problems:
        return None
    text = "; ".join(_problems)
    _problems.clear()
    return text


def read_section(key: str) -> Any:
    """The stored value under `key`, or None when the file or the key is missing, or the
    file is damaged. The caller checks the value's shape."""
    return _read_or_empty().get(key)


def section_damaged(key: str, value: Any, problems: list[str]) -> None:
    """`key`'s section had `problems` (one line each): keep the file as it was, write the
    section back as `value` (what could be read) and say so once. A file that cannot be
    kept aside is left as it is: nothing is lost, and the next start says so again."""
    path = paths.settings_file()
    try:
        data, current = read_all(), path.read_bytes()
    except (ReadError, OSError):
        _read_or_empty()  # damaged meanwhile: kept aside and said there
        return
    kept = f"{path.name} as it was is kept already"
    if _repaired.get(path) != current:
        moved, kept = checked.keep_damaged(path)
        if not moved:
            _say(f"{path.name}: {key}: {'; '.join(problems)} ({kept})")
            return
    _say(f"{path.name}: {key}: {'; '.join(problems)} (left out; {kept})")
    data[key] = value
    text = json.dumps(data, indent=2)
    try:
        write_text(path, text)
    except OSError:
        return  # the original is kept aside; the next save writes the section again
    _repaired[path] = text.encode("utf-8")


def write_section(key: str, value: Any) -> None:
    """Replace `key`'s section atomically, keeping every other key in the file."""
    data = _read_or_empty()
    data[key] = value
    write_text(paths.settings_file(), json.dumps(data, indent=2))
