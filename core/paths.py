"""Where Handoff keeps its files. HANDOFF_HOME moves all of them (tests point it at a
temporary folder so they never touch a user's real settings, outputs or caches)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The self-contained bundle (PyInstaller, packaging/handoff.spec) unpacks its data beside
# the code in sys._MEIPASS (dist/Handoff/_internal); a checkout keeps it in resources/.
FROZEN = bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")
RESOURCES = (Path(sys._MEIPASS) if FROZEN else REPO_ROOT) / "resources"


def home() -> Path:
    override = os.environ.get("HANDOFF_HOME")
    if override:
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "Handoff"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Handoff"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "handoff"


def cache_dir() -> Path:
    return home() / "cache"


def outputs_dir() -> Path:
    return home() / "outputs"


def settings_file() -> Path:
    return home() / "settings.json"


def ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
