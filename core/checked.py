"""Reading data that came from outside (a project file, a PNG chunk, the settings file, a
model's config) with its types and sizes checked: every helper returns the value as the
caller needs it or raises ReadError with one line naming the field, never a TypeError
or KeyError from deep inside the code that uses it."""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Callable

from core.errors import ReadError

MiB = 1024 * 1024
# The largest JSON document any reader parses (a project with its run history is a few
# hundred kB; a model config a few kB): a larger one is not what it claims to be.
MAX_JSON_BYTES = 32 * MiB
MAX_INTEGER = 2**64  # a 64-bit seed (core.project.MAX_SEED) is the largest field
# The deepest nesting any reader takes: a project is 5 levels deep, a ComfyUI graph 6. A
# deeper document is hostile, and checking here keeps every reader (and whatever walks
# the value afterwards: a copy, a save, a type check) clear of Python's recursion limit.
MAX_JSON_DEPTH = 64
DAMAGED_SUFFIX = ".damaged"
# A stricter cap for documents whose shape is known (a batch line holds a project, 4 deep).
MAX_NESTING = 32


def shown(value: Any) -> str:
    """A value as a message shows it: short, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def names(keys) -> str:
    """Field names for a message: sorted, and quoted when they would break the line."""
    shown_keys = [k if isinstance(k, str) and k.isprintable() and 0 < len(k) <= 40 else repr(k)[:40]
                  for k in keys]
    return ", ".join(sorted(shown_keys))


def table(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ReadError(f"{where} must be a table of fields, not {shown(value)}")
    return value


def listing(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise ReadError(f"{where} must be a list, not {shown(value)}")
    return value


def integer(value: Any, where: str) -> int:
    """An int; a float with an integral value (30.0, as some tools write) is taken as one."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReadError(f"{where} must be an integer, not {shown(value)}")
    if abs(value) > MAX_INTEGER:  # no field needs more, and a 4000-digit one is a hostile file
        raise ReadError(f"{where} {shown(value)} is out of range")
    return value


def number(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ReadError(f"{where} must be a number, not {shown(value)}")
    if not math.isfinite(value):
        raise ReadError(f"{where} must be a finite number, not {shown(value)}")
    return float(value)


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ReadError(f"{where} must be text, not {shown(value)}")
    return value


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ReadError(f"{where} must be true or false, not {shown(value)}")
    return value


def read_capped(f: BinaryIO, cap: int, what: str, chunk: int = MiB) -> bytes:
    """At most `cap` bytes from a stream, read in chunks: a declared size can lie, so
    the count read is what is checked."""
    parts: list[bytes] = []
    total = 0
    while True:
        block = f.read(min(chunk, cap + 1 - total))
        if not block:
            return b"".join(parts)
        total += len(block)
        if total > cap:
            raise ReadError(f"{what} is larger than {cap // MiB} MiB: it is not what it claims to be")
        parts.append(block)


def parse_json(data: bytes, what: str) -> Any:
    """JSON from bytes, as UTF-8, nested at most MAX_JSON_DEPTH deep; any malformation is
    one ReadError naming `what`."""
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ReadError(f"{what} is not text (UTF-8 JSON)") from None
    except json.JSONDecodeError as exc:
        raise ReadError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # a number too long for Python to convert
        raise ReadError(f"{what} is not valid JSON ({str(exc)[:100]})") from None
    except RecursionError:
        raise ReadError(_too_deep(what)) from None
    # Brackets counted in C first: a document with fewer than the cap cannot be too deep.
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and depth(value) > MAX_JSON_DEPTH:
        raise ReadError(_too_deep(what))
    return value


def _too_deep(what: str) -> str:
    return f"{what} is nested more than {MAX_JSON_DEPTH} levels deep: it is not what it claims to be"


def depth(value: Any, stop: int = MAX_JSON_DEPTH + 1) -> int:
    """How deeply lists and tables nest in a parsed JSON value (a scalar is 0; counting
    stops at `stop`), walked a level at a time, without recursion."""
    level = [value] if isinstance(value, (dict, list)) else []
    deepest = 0
    while level and deepest < stop:
        deepest += 1
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (dict, list))]
    return deepest


def read_json_file(path: Path, what: str | None = None, cap: int = MAX_JSON_BYTES) -> Any:
    """A JSON file, size-capped, as parsed values (the caller checks their shape)."""
    path = Path(path)
    what = what or path.name
    try:
        with open(path, "rb") as f:
            data = read_capped(f, cap, what)
    except OSError as exc:
        raise ReadError(f"{what} cannot be read ({exc.strerror or exc})") from None
    return parse_json(data, what)


def keep_damaged(path: Path) -> tuple[bool, str]:
    """Move a damaged file of Handoff's own (or whatever stands where it should be: a
    folder, say) aside as NAME.damaged, so the next write cannot overwrite what it held.
    Returns whether it moved, and the words a message says of it ("queue.json is kept as
    queue.json.damaged", or why it was not)."""
    path = Path(path)
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    for n in range(1, 10):
        try:
            os.replace(path, target)
            return True, f"{path.name} is kept as {target.name}"
        except FileNotFoundError:
            return False, f"{path.name} is gone"
        except OSError as exc:
            if not os.path.lexists(target):
                return False, f"{path.name} could not be moved aside ({exc.strerror or exc})"
            # A folder cannot replace a file (nor a file a folder, nor a folder one that is
            # not empty): an earlier one stands there, so the next name.
            target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}.{n}")
    return False, f"{path.name} could not be moved aside"


def guarded(reader: Callable[..., Any], *args: Any) -> Any:
    """Call a reader of other tools' data (core.interop parses loosely, by design): any
    failure inside it is the file's, and comes back as ReadError in one line."""
    try:
        return reader(*args)
    except ReadError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ReadError(f"the recipe in it cannot be read ({type(exc).__name__}: {reason})") from None


def open_regular(path: Path, what: str) -> BinaryIO:
    """A regular file opened for reading, else ReadError: a FIFO would block the open (and a
    read) forever, a device may never end, a folder is no data. Told from stat before any
    open; what is opened (non-blocking, so a FIFO swapped in meanwhile cannot hang it) is
    checked again."""
    try:
        kind = _kind(os.stat(path).st_mode)
        if kind is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
            kind = _kind(os.fstat(fd).st_mode)
            if kind is None:
                return os.fdopen(fd, "rb")
            os.close(fd)
    except OSError as exc:
        raise ReadError(f"{what} cannot be read ({exc.strerror or exc})") from None
    raise ReadError(f"{what} is {kind}, not a file")


def _kind(mode: int) -> str | None:
    """None for a regular file, else what it is instead."""
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe (FIFO)"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def nesting(value: Any, where: str, cap: int = MAX_NESTING) -> Any:
    """`value` when its lists and tables nest at most `cap` deep, else ReadError (depth()
    walks a level at a time, so a deep document cannot exhaust the stack here either)."""
    if depth(value, cap + 1) > cap:
        raise ReadError(f"{where} is nested more than {cap} levels deep")
    return value
