"""Whether a stage's model can be had before the run: a local file or folder, a built-in
model, a Hub model in the Hugging Face cache, or a Hub id that can still be downloaded. A
model that is none of these (the file name another tool wrote into a recipe, a path from
another machine, a Hub id while offline) would only fail once the job started, so the
window and the command line refuse the job up front with what to do: the library's file
of that name, the Hub model a well-known file name is, or the folder to add.

Only the disk is read (the settings file, the Hugging Face cache's layout), never the
network, so the window asks on its own thread.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path, PureWindowsPath

from core.errors import ModelError


def absent_model(ref: str, named_by: str = "") -> str | None:
    """Why `ref` cannot be had before a run, with what to do; None when it is here or is a
    Hub id that downloads on first use. `named_by`: the tool whose recipe wrote the name
    ("ComfyUI"), said in the message so the user knows which name to look for."""
    from core.models import offline, offline_message, parse_ref

    text = (ref or "").strip()
    if not text:
        return None  # core.project.validate says a stage has no model
    try:
        parsed = parse_ref(text)
    except ModelError as exc:
        if _exists(text):  # there, but not a model: parse_ref's own words say what it is
            return str(exc)
        return _not_here(text, named_by)
    if parsed.kind == "builtin":
        from core import demo

        if parsed.location in demo.NAMES or parsed.raw == demo.UPSCALER:
            return None
        return f"there is no builtin model '{parsed.raw}' (builtin models: {', '.join(demo.NAMES)})"
    if parsed.kind == "hub" and offline():
        from core.model_library import cached_snapshot

        return offline_message(parsed.location) if cached_snapshot(parsed.location) is None else None
    return None


def absent_models(project, named_by: str = "") -> list[str]:
    """One line per enabled stage whose model cannot be had before the run."""
    out = []
    for i, stage in project.enabled_stages():
        problem = absent_model(stage.model, named_by)
        if problem:
            out.append(f"stage {i + 1}: {problem}")
    return out


def _exists(text: str) -> bool:
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError):
        return False


def _not_here(name: str, named_by: str) -> str:
    """The message for a name that is no file, folder or Hub id here: the library's model of
    that name when it has one, else where to get it."""
    from core.interop.model_lookup import ModelLookup, hinted_file, well_known_hub
    from core.model_library import cached_snapshot
    from core.models import offline

    shown = f"model '{name}'" + (f" (as {named_by} named it)" if named_by and named_by != "Handoff" else "")
    # hash_budget=0: only hashes already known are compared; nothing is read on this thread.
    found = ModelLookup(candidates=_candidates(), hash_budget=0).find(name)
    if found is not None:
        return f"{shown} is not a file or folder here, but your model library has it: set the stage's model to {found.ref}"
    hub_id = well_known_hub(name)
    if hub_id is not None and cached_snapshot(hub_id) is not None:
        return (f"{shown} is not a file or folder here; it is the Hub model {hub_id}, which is in the Hugging Face "
                f"cache: set the stage's model to {hub_id}")
    head = f"{shown} is not a file or folder here, in your model library or in the Hugging Face cache"
    add = f"add the folder that holds {hinted_file(PureWindowsPath(name).name if _is_path(name) else name)} with Models > Model Library"
    if hub_id is None:
        return f"{head}: {add}, or set the stage's model to your copy of it"
    if offline():
        return f"{head}: {add}, or go online and set the stage's model to {hub_id} to download it"
    return f"{head}: {add}, or set the stage's model to {hub_id} to download it"


def _is_path(name: str) -> bool:
    """An absolute path (a recipe made on another machine): its file name is what to look for."""
    return name.startswith(("/", "~")) or (len(name) > 2 and name[1] == ":" and name[2] in "\\/")


# The library and the Hub cache as last scanned, with the state they were scanned at: the
# window validates on every edit, and a scan lists the whole Hub cache (scan_cache_dir) and
# reads the settings file. (state, candidates); the lock keeps two threads from scanning at once.
_scanned: tuple[tuple, list] | None = None
_scan_lock = threading.Lock()


def _candidates() -> list:
    """core.interop.model_lookup.library_candidates(), scanned again only when what it reads
    has changed since the last scan."""
    global _scanned
    from core.interop import model_lookup

    with _scan_lock:
        state = library_state()
        if _scanned is None or _scanned[0] != state:
            _scanned = (state, model_lookup.library_candidates())
        return _scanned[1]


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


def library_state() -> tuple:
    """A cheap signature (a few stats) of everything library_candidates reads: the settings
    file that holds the library (written by a swap, so a save changes it), and the Hub
    cache's repos, their snapshots and each snapshot's top level, where a download's
    model_index.json lands. The library's ComfyUI/A1111 folders are not in it: their
    files reach the library only by a rescan, which rewrites the settings file."""
    from core import paths

    try:
        from huggingface_hub import constants

        hub = Path(constants.HF_HUB_CACHE)
    except ImportError:
        hub = None
    settings = paths.settings_file()
    state: list = [str(settings), _stamp(settings)]
    if hub is not None:
        state += [str(hub), _stamp(hub)]
        try:
            repos = sorted(e.path for e in os.scandir(hub) if e.name.startswith("models--"))
        except OSError:
            repos = []
        for repo in repos:
            snapshots = Path(repo) / "snapshots"
            state += [repo, _stamp(snapshots)]
            try:
                state += sorted((e.name, _stamp(Path(e.path))) for e in os.scandir(snapshots))
            except OSError:
                pass
    return tuple(state)
