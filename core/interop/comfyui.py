"""ComfyUI graphs (the `prompt` API chunk, the `workflow` UI chunk, exported .json files)
read as Handoff projects (core.interop.comfyui_read, comfyui_read_inputs), and Handoff
projects written as the graphs ComfyUI runs (core.interop.comfyui_write); the two formats
themselves are core.interop.comfyui_nodes. This module is the way in for the rest of
Handoff: detect, read, write and export."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import ProjectError
from core.interop.comfyui_nodes import Graph, from_api, from_ui, to_api, to_ui
from core.interop.comfyui_read import read_nodes
from core.interop.comfyui_write import graph_for
from core.interop.reading import Imported, Where
from core.project import Project
from core.ran import StageRan

FORMATS = ("ui", "api")  # what `export --comfyui` writes: the UI workflow, or the API prompt


def looks_like_api(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def looks_like_ui(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def read_graph(data: Any, where: Where, lookup, source: str) -> Imported:
    """A project from a ComfyUI graph, in either format (parsed JSON)."""
    graph = from_api(data, where) if looks_like_api(data) else from_ui(data, where)
    return read_nodes(graph, where, lookup, source)


def read_json_text(text: str, where: Where, lookup, source: str) -> Imported:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise where.error("the JSON", f"cannot be parsed ({exc})") from exc
    if not (looks_like_api(data) or looks_like_ui(data)):
        raise where.error("the JSON", "is neither a ComfyUI prompt (API format) nor a workflow")
    return read_graph(data, where, lookup, source)


def api_prompt(project: Project, upto: int | None = None, ran: dict[int, StageRan] | None = None) -> dict[str, Any]:
    """What a POST to ComfyUI's /prompt takes (as {"prompt": this}), and the PNG's `prompt` chunk."""
    return to_api(graph_for(project, upto, ran))


def ui_workflow(project: Project, upto: int | None = None, ran: dict[int, StageRan] | None = None) -> dict[str, Any]:
    """What ComfyUI's window opens, and the PNG's `workflow` chunk."""
    return to_ui(graph_for(project, upto, ran))


def write_workflow(project: Project, path: Path, ran: dict[int, StageRan] | None = None,
                   fmt: str = "ui") -> Graph:
    """File > Export > ComfyUI workflow, and `main.py export --comfyui`: the UI workflow
    ComfyUI opens (drop the file on its window) or, with fmt="api", the prompt its /prompt
    endpoint runs, written atomically. `ran`: what a run of it did (from a Handoff PNG),
    else what the project asks. Returns the graph written, with the files it names and
    its notes."""
    from core.atomic import write_text

    if fmt not in FORMATS:
        raise ProjectError([f"unknown ComfyUI format {fmt!r}: use one of {', '.join(FORMATS)}"])
    if not project.enabled_stages():
        raise ProjectError([f"the project has no enabled stage to export to {Path(path).name}"])
    graph = graph_for(project, ran=ran)
    write_text(Path(path), json.dumps(to_ui(graph) if fmt == "ui" else to_api(graph), indent=1))
    return graph
