"""The double-click launcher (packaging/install_launcher.py): what it writes starts this
checkout's main.py with this Python, and --remove takes it away again."""
from __future__ import annotations

import configparser
import plistlib
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "packaging" / "install_launcher.py"


def install(root: Path, platform: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), "--platform", platform, *extra],
                          capture_output=True, text=True, timeout=60)


def test_linux_entry_runs_main_and_claims_project_files(tmp_path):
    assert install(tmp_path, "linux").returncode == 0
    data = tmp_path / ".local" / "share"
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(data / "applications" / "io.github.handoff.Handoff.desktop")
    desk = entry["Desktop Entry"]
    assert desk["Type"] == "Application" and desk["Terminal"] == "false"
    assert desk["MimeType"] == "application/x-handoff-project;"
    assert desk["Icon"] == "io.github.handoff.Handoff"
    assert (data / "icons" / "hicolor" / "256x256" / "apps" / "io.github.handoff.Handoff.png").is_file()
    command = shlex.split(desk["Exec"])
    assert command[:2] == [sys.executable, str(ROOT / "main.py")] and command[2] == "%f"
    # The launcher's own command line, with a file argument the CLI answers at once.
    ran = subprocess.run(command[:2] + ["--help"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "generate" in ran.stdout
    mime = ET.parse(data / "mime" / "packages" / "io.github.handoff.Handoff.xml").getroot()
    ns = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
    assert mime.find("m:mime-type", ns).get("type") == "application/x-handoff-project"
    assert mime.find("m:mime-type/m:glob", ns).get("pattern") == "*.handoff"

    assert install(tmp_path, "linux", "--remove").returncode == 0
    assert not (data / "applications" / "io.github.handoff.Handoff.desktop").exists()
    assert not (data / "mime" / "packages" / "io.github.handoff.Handoff.xml").exists()
    assert not (data / "icons").exists()


def test_macos_bundle_is_executable_and_opens_handoff_files(tmp_path):
    assert install(tmp_path, "darwin").returncode == 0
    contents = tmp_path / "Applications" / "Handoff.app" / "Contents"
    info = plistlib.loads((contents / "Info.plist").read_bytes())
    assert info["CFBundleDocumentTypes"][0]["CFBundleTypeExtensions"] == ["handoff"]
    exe = contents / "MacOS" / info["CFBundleExecutable"]
    ran = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "generate" in ran.stdout
    assert (contents / "Resources" / "icon.png").is_file()
    assert install(tmp_path, "darwin", "--remove").returncode == 0
    assert not (tmp_path / "Applications" / "Handoff.app").exists()


def test_windows_shortcut_starts_pythonw(tmp_path):
    assert install(tmp_path, "win32").returncode == 0
    text = (tmp_path / "Desktop" / "Handoff.cmd").read_text()
    assert str(ROOT / "main.py") in text and text.startswith("@echo off")


def test_unknown_platform_says_so(tmp_path):
    result = install(tmp_path, "plan9")
    assert result.returncode != 0 and "no launcher recipe for platform 'plan9'" in result.stderr
