"""Checks a ComfyUI API prompt the way ComfyUI's server validates one (execution.py's
validate_inputs) against its node definitions (`/object_info`): each node's class exists,
every required input is given and no unknown one, a link comes from an existing node's
output slot of the type the input takes, numbers are in range and combo values are
allowed. A loader's file list ("<files>" in a snapshot) is taken as the files the export
says it loads (Graph.files): a snapshot cannot know a user's models folder."""
from __future__ import annotations

from typing import Any

FILES = "<files>"
_LITERAL = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def graph_problems(prompt: dict[str, Any], object_info: dict[str, Any], files: set[str] | None = None) -> list[str]:
    """What ComfyUI would refuse in `prompt` (API format), one line each; [] when none."""
    out: list[str] = []
    for nid, node in prompt.items():
        cls = node.get("class_type")
        info = object_info.get(cls)
        if not isinstance(info, dict):
            out.append(f"node {nid}: class {cls!r} is not a node ComfyUI has")
            continue
        required = info["input"].get("required", {})
        optional = info["input"].get("optional", {})
        inputs = node.get("inputs", {})
        for name in required:
            if name not in inputs:
                out.append(f"node {nid} ({cls}): required input {name!r} is missing")
        for name, value in inputs.items():
            spec = required.get(name) or optional.get(name)
            if spec is None:
                out.append(f"node {nid} ({cls}): {name!r} is not an input of {cls}")
                continue
            problem = _value_problem(value, spec, prompt, object_info, files or set())
            if problem:
                out.append(f"node {nid} ({cls}) {name}: {problem}")
    return out


def _value_problem(value: Any, spec: list, prompt: dict, object_info: dict, files: set[str]) -> str | None:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value, str):
        src = prompt.get(str(value[0]))
        if src is None:
            return f"links to node {value[0]}, which the prompt does not have"
        outputs = object_info.get(src.get("class_type"), {}).get("output", [])
        if not 0 <= value[1] < len(outputs):
            return f"links to output {value[1]} of node {value[0]} ({src.get('class_type')}), which has none"
        got = outputs[value[1]]
        wanted = "COMBO" if isinstance(kind, list) else kind
        if got != wanted:
            return f"takes {wanted} but is linked to a {got} output"
        return None
    if isinstance(kind, list):
        allowed = files if kind == [FILES] else set(kind)
        return None if value in allowed else f"{value!r} is not one of the allowed values"
    if kind not in _LITERAL:
        return f"takes a {kind} link, not the value {value!r}"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not text"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind == "INT" and not isinstance(value, int):
        return f"{value!r} is not {'a whole number' if kind == 'INT' else 'a number'}"
    if "min" in options and value < options["min"] or "max" in options and value > options["max"]:
        return f"{value!r} is outside {options.get('min')}..{options.get('max')}"
    return None
