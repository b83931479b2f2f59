"""Opens files in a fresh process with a PEP 578 audit hook installed before the first
open of each, and prints, as JSON, what each open did and which code-running events it
raised (run by tests/test_security.py: `python -m tests.audit_open MODE PATH...`).

Every `core` module and PIL's image plugins are imported before the hook goes in: an
import compiles or unmarshals code, which is Handoff's own, not the file's. Anything an
open then imports for the first time is reported like any other code, so a reader that
starts importing something new shows up here and is added to `preload`, by hand."""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

# Audit events (PEP 578) that mean code is being run or loaded: compiling or executing
# Python, unpickling, unmarshalling, starting a process, loading a native library.
CODE_EVENTS = ("exec", "compile", "pickle.find_class", "marshal.loads", "marshal.load", "os.system",
               "subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn", "ctypes.dlopen")


def preload() -> None:
    import core
    from PIL import Image

    for module in pkgutil.walk_packages(core.__path__, "core."):
        importlib.import_module(module.name)
    Image.init()  # PIL's format plugins
    from huggingface_hub import constants, scan_cache_dir  # noqa: F401 - a model lookup scans the HF cache
    import encodings.cp437  # noqa: F401 - zipfile decodes entry names that are not UTF-8


def opener(mode: str):
    if mode == "document":
        from core.document import Document

        return Document.open
    if mode == "pickle":  # for the test that the detector sees code run
        import pickle

        return lambda path: pickle.loads(Path(path).read_bytes())
    if mode == "eval":
        return lambda path: eval(Path(path).read_text())
    raise SystemExit(f"unknown mode {mode}")


def main(mode: str, paths: list[str]) -> None:
    preload()
    open_one = opener(mode)
    from core.errors import ReadError

    seen: list[str] | None = None

    def hook(event: str, args) -> None:
        if seen is not None and event in CODE_EVENTS:
            seen.append(event)

    sys.addaudithook(hook)
    report = []
    for path in paths:
        seen = []
        try:
            open_one(Path(path))
            result = "opened"
        except ReadError:
            result = "refused"  # refusing is fine; running something is not
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            result = f"error: {type(exc).__name__}: {exc}"
        events, seen = seen, None
        report.append({"path": path, "result": result, "events": sorted(set(events))})
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
