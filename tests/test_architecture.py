"""Layering rules: core/ stays Qt-free and imports torch only when it runs a job."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_never_imports_qt():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_core_does_not_import_torch():
    code = (
        "import sys, core.cli, core.engine, core.models, core.planning, core.stage_call, core.stage_run, core.latents, core.schedulers, core.previews, core.png_writer, core.model_info, core.errors, core.metadata, core.project_file, core.demo, "
        "core.model_library, core.settings_file, core.checkpoints, core.presets, core.downloads, "
        "core.defaults, core.devices, core.desktop\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'PySide6') if m in sys.modules]\n"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
