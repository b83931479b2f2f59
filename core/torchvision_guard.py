"""A torchvision that cannot load beside this torch is treated as absent.

PyPI's Linux torchvision is built for PyPI's CUDA torch. Installed beside a CPU-only torch
(a local CPU wheel, as on a CPU build machine), its compiled ops fail to register and
`import torchvision` raises RuntimeError ("operator torchvision::nms does not exist").
transformers and diffusers decide from `importlib.util.find_spec("torchvision")` that it
is there and import it for their image processors, so a broken torchvision would stop
every pipeline from importing. spandrel (model upscalers) depends on torchvision, so pip
installs it with Handoff.

So the first time transformers, diffusers or spandrel is looked up, torchvision is imported
once; if that fails, `sys.modules["torchvision"] = None`, which makes find_spec say it is
absent and `import torchvision` raise ImportError: everything that can run without it
does (no upscaler architecture uses it). A torchvision that loads is left alone.
"""
from __future__ import annotations

import importlib.abc
import sys
import threading

# Imported right after their own torch import, before anything asks for torchvision.
_WATCHED = frozenset({"transformers", "diffusers", "spandrel"})
_lock = threading.RLock()
_usable: list[bool] = []  # empty until probed


def usable() -> bool:
    """Whether torchvision imports here; probed once (this imports torch when it is installed)."""
    with _lock:
        if not _usable:
            _usable.append(_probe())
        return _usable[0]


def _probe() -> bool:
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"] is not None
    try:
        import torchvision  # noqa: F401
        return True
    except Exception:  # ImportError when absent, RuntimeError when built for another torch
        mark_absent()
        return False


def mark_absent() -> None:
    """Forget whatever a failed torchvision import left half-made, and say it is absent."""
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    sys.modules["torchvision"] = None


class _Finder(importlib.abc.MetaPathFinder):
    """Probes torchvision when a watched package is first looked up, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name in _WATCHED and not _usable:
            usable()
        return None


def install() -> None:
    """Put the probe in front of the import system (cheap: nothing is imported now)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
