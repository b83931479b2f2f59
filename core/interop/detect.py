"""Which tool's metadata a file carries, read with that tool's reader.

An image's texts (core.interop.image_text) are tried in this order: ComfyUI's `prompt`
(the graph it ran) or `workflow`; InvokeAI's `invokeai_metadata`, `sd-metadata`, `Dream`;
Fooocus (a `fooocus_scheme`, or `parameters` holding its JSON); NovelAI (`Software:
NovelAI`, `Comment`); A1111/Forge `parameters`. Handoff's own `handoff` chunk comes first
of all, in core.metadata. A .json file may hold a ComfyUI graph.

Whatever is malformed raises core.errors.ReadError naming the file and the field; no
reader's exception escapes as anything else.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from core.errors import ReadError
from core.interop import a1111, comfyui, fooocus, invokeai, novelai
from core.interop.model_lookup import ModelLookup
from core.interop.reading import Imported, Where

# What the readers may raise on values of the wrong shape that the explicit checks did
# not foresee: turned into ReadError here, so a malformed file never shows a traceback.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError)


def from_chunks(chunks: dict[str, str], name: str, size: tuple[int, int] | None = None,
                lookup: ModelLookup | None = None) -> Imported | None:
    """The project another tool's texts describe; None when they hold no recipe."""
    lookup = lookup or ModelLookup()
    found = _reader_for(chunks, name, size, lookup)
    if found is None:
        return None
    where, read = found
    try:
        return read()
    except ReadError:
        raise
    except _SHAPE_ERRORS as exc:
        raise where.error("the metadata", f"is malformed ({type(exc).__name__}: {exc})") from exc


def _reader_for(chunks: dict[str, str], name: str, size, lookup) -> tuple[Where, Callable[[], Imported]] | None:
    for key in ("prompt", "workflow"):
        text = chunks.get(key)
        if text and text.lstrip().startswith("{"):
            data = _json_or_none(text)
            if _comfy_shaped(data):  # ComfyUI's graph, whole or damaged: its reader says where
                where = Where(f"{name}: ComfyUI {key}")
                return where, lambda d=data, w=where, k=key: comfyui.read_graph(d, w, lookup, f"the `{k}` chunk")
    if "invokeai_metadata" in chunks:
        where = Where(f"{name}: InvokeAI invokeai_metadata")
        return where, lambda: invokeai.read_metadata(chunks["invokeai_metadata"], where, lookup)
    if "sd-metadata" in chunks:
        where = Where(f"{name}: InvokeAI sd-metadata")
        return where, lambda: invokeai.read_sd_metadata(chunks["sd-metadata"], where, lookup)
    if "Dream" in chunks:
        where = Where(f"{name}: InvokeAI Dream")
        return where, lambda: invokeai.read_dream(chunks["Dream"], where, lookup)
    params = chunks.get("parameters")
    scheme = chunks.get("fooocus_scheme")
    # A prompt may start with "{" too (dynamic prompts' {a|b}): JSON only when it parses as JSON.
    as_json = _json_or_none(params) if params is not None and params.lstrip().startswith("{") else None
    if params is not None and (scheme in ("fooocus", "a1111") or as_json is not None):
        where = Where(f"{name}: Fooocus parameters")
        if scheme is None and not fooocus.looks_like_fooocus(as_json):
            # JSON in `parameters` that is not Fooocus's: said, never read as a prompt.
            return where, lambda: _unknown_json(params, name, where)
        return where, lambda: fooocus.read_fooocus(params, scheme, where, lookup)
    if novelai.looks_like_novelai(chunks):
        where = Where(f"{name}: NovelAI metadata")
        return where, lambda: novelai.read_novelai(chunks, size, where, lookup)
    if params is not None and params.strip():
        where = Where(f"{name}: A1111 parameters")
        return where, lambda: a1111.read_parameters(params, where, lookup)
    return None


def _comfy_shaped(data: Any) -> bool:
    return isinstance(data, dict) and ("nodes" in data or any(isinstance(v, dict) and "class_type" in v
                                                               for v in data.values()))


def _unknown_json(text: str, name: str, where: Where) -> Imported:
    data = _json_or_none(text)
    if data is None:
        raise where.error("the JSON", "cannot be parsed")
    keys = ", ".join(sorted(map(str, data))[:6]) if isinstance(data, dict) else type(data).__name__
    raise ReadError(f"{name}: `parameters` holds JSON of a tool Handoff does not know "
                    f"({keys}); nothing was restored")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def from_json(data: Any, name: str, lookup: ModelLookup | None = None) -> Imported | None:
    """A ComfyUI graph (API or UI format) or a Fooocus log entry saved as .json; None for
    any other JSON (a Handoff project is read by core.project_file)."""
    lookup = lookup or ModelLookup()
    where = Where(f"{name}: ComfyUI graph")
    try:
        if comfyui.looks_like_api(data) or comfyui.looks_like_ui(data):
            return comfyui.read_graph(data, where, lookup, "the .json file")
        if fooocus.looks_like_fooocus(data):
            where = Where(f"{name}: Fooocus JSON")
            return fooocus.read_json(data, where, lookup)
    except ReadError:
        raise
    except _SHAPE_ERRORS as exc:
        raise where.error("the graph", f"is malformed ({type(exc).__name__}: {exc})") from exc
    return None
