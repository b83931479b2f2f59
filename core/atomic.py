"""Writes that never leave a half-written file: write beside the target, then rename.

The temporary file is named `.{name}.{pid}.{random}.part`, so a process killed mid-write
leaves a `.part` that says whose it was: the next write in that folder removes the ones
of processes that are gone, and any untouched for a minute (a write in progress keeps
its file fresh; one of this process is never taken from under it sooner)."""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, IO

STALE_SECONDS = 60.0
# `.{name}.{pid}.{8 random}.part`; files written before the pid was in the name lack it.
_PART = re.compile(r"^\..+?(?:\.(?P<pid>\d+))?\.[a-z0-9_]{8}\.part$")


def write_with(path: Path, writer: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    return write_with(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def remove_stale_parts(folder: Path, now: float | None = None) -> list[Path]:
    """Remove the `.part` files in `folder` that no write will finish: those of a process
    that is gone, and any not written to for STALE_SECONDS. Never raises (a folder that
    cannot be listed only keeps its leftovers); returns what was removed."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = [(e, m) for e in os.scandir(folder) if (m := _PART.match(e.name))]
    except OSError:
        return removed
    for entry, m in entries:
        try:
            pid = int(m.group("pid")) if m.group("pid") else None
            gone = pid is not None and pid != os.getpid() and not _alive(pid)
            if gone or now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # removed meanwhile by its writer, or not ours to remove
    return removed


def _alive(pid: int) -> bool:
    import psutil  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows

    try:
        return psutil.pid_exists(pid)
    except (OSError, ValueError, OverflowError):
        return True  # unknown: leave it to the age rule


def writable_problem(folder: Path) -> str | None:
    """Why files cannot be written into `folder` (created if missing), or None. Checked by
    writing a file, since permission bits say nothing of a read-only mount or an ACL."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, not a folder"
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".handoff-probe.{os.getpid()}.", suffix=".part", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write to {folder} ({exc.strerror or exc})"
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
