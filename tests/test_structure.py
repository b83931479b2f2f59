"""The shape of the code, checked: families are asked, never compared by key outside
core/families; no two public functions of core share a name; and what the family modules
declare about diffusers (classes, adapters) is what diffusers has."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from core.families import CONTROLNET, FAMILIES, IP_ADAPTER, LORA

ROOT = Path(__file__).resolve().parent.parent


def sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def test_no_code_outside_the_families_package_compares_family_keys():
    keys = set(FAMILIES)
    found = []
    for path in sources("core", "gui"):
        if "families" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            consts = [n for s in sides for n in ast.walk(s) if isinstance(n, ast.Constant) and n.value in keys]
            attrs = [n for s in sides for n in ast.walk(s) if isinstance(n, ast.Attribute) and n.attr == "key"
                     and "family" in ast.unparse(n.value).lower()]
            if consts or attrs:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)


def test_no_two_public_functions_of_core_share_a_name():
    where = defaultdict(list)
    for path in sources("core"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(ROOT)))
    shared = {name: files for name, files in where.items() if len(files) > 1}
    assert not shared, shared


def test_every_family_module_is_found():
    """Adding a family is one module: whatever a module in the package declares is listed."""
    import importlib

    for path in (ROOT / "core" / "families").glob("*.py"):
        if path.stem in ("__init__", "base"):
            continue
        module = importlib.import_module(f"core.families.{path.stem}")
        declared = list(getattr(module, "FAMILIES", ())) or [module.FAMILY]
        assert declared and all(FAMILIES[f.key] is f for f in declared), path.stem


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_what_a_family_declares_is_what_diffusers_has(key):
    import diffusers

    fam = FAMILIES[key]
    for cls_name in (fam.generate, fam.refine, *fam.pipeline_classes, *(c for pair in fam.controlnet_pipelines for c in pair)):
        if cls_name:
            assert hasattr(diffusers, cls_name), cls_name
    classes = [getattr(diffusers, c) for c in (fam.generate, fam.refine) if c]
    assert fam.supports(LORA) == all(hasattr(c, "load_lora_weights") for c in classes)
    assert fam.supports(IP_ADAPTER) == all(hasattr(c, "load_ip_adapter") for c in classes)
    assert fam.supports(CONTROLNET) == bool(fam.controlnet_pipelines)
    if fam.refine and not fam.refines_via_generate:
        assert "strength" in __import__("inspect").signature(getattr(diffusers, fam.refine).__call__).parameters
