"""Desktop integration (core/desktop.py, `Handoff --install-desktop`): what it writes under
XDG_DATA_HOME, that it takes all of it away again, and how the bundle finds its resources.
None of this needs the bundle built."""
from __future__ import annotations

import configparser
import plistlib
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

import main
from core import desktop, paths

ROOT = Path(__file__).resolve().parent.parent
APP = "io.github.handoff.Handoff"


@pytest.fixture
def xdg(tmp_path, monkeypatch) -> Path:
    data = tmp_path / "xdg-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setattr(sys, "platform", "linux")
    return data


def read_entry(path: Path) -> configparser.SectionProxy:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(path, encoding="utf-8")
    return entry["Desktop Entry"]


def test_install_writes_entry_mime_type_and_icons_then_uninstall_removes_them(xdg, capsys):
    assert main.main(["--install-desktop"]) == 0
    desk = read_entry(xdg / "applications" / f"{APP}.desktop")
    assert desk["Type"] == "Application" and desk["Icon"] == APP and desk["MimeType"] == f"{desktop.MIME};"
    # From a checkout the entry starts this Python with main.py, and passes the double-clicked file.
    assert shlex.split(desk["Exec"]) == [sys.executable, str(ROOT / "main.py"), "%f"]
    assert desk["TryExec"] == sys.executable
    mime = ET.parse(xdg / "mime" / "packages" / f"{APP}.xml").getroot()
    ns = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
    assert mime.find("m:mime-type", ns).get("type") == "application/x-handoff-project"
    assert mime.find("m:mime-type/m:glob", ns).get("pattern") == "*.handoff"
    for size in (16, 22, 24, 32, 48, 64, 128, 256, 512):
        with Image.open(xdg / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP}.png") as icon:
            assert icon.size == (size, size) and icon.mode == "RGBA"
    if shutil.which("update-mime-database"):  # the type is registered, not only written
        assert (xdg / "mime" / "application" / "x-handoff-project.xml").is_file()
    assert f"wrote {xdg / 'applications' / f'{APP}.desktop'}" in capsys.readouterr().out

    assert main.main(["--uninstall-desktop"]) == 0
    assert not list(xdg.rglob(f"{APP}*")) and not (xdg / "icons").exists()
    assert not (xdg / "mime" / "application" / "x-handoff-project.xml").exists()
    assert main.main(["--uninstall-desktop"]) == 0  # twice is fine
    assert "nothing to remove" in capsys.readouterr().out


def test_install_replaces_the_launchers_older_entry(xdg):
    old = [xdg / p for p in desktop.LEGACY_FILES]
    for path in old:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old")
    desktop.install_linux(["/opt/Handoff/Handoff"], xdg, refresh=False)
    assert not any(p.exists() for p in old)
    desktop.uninstall_linux(xdg, refresh=False)
    assert not list(xdg.rglob("*.desktop")) and not list(xdg.rglob("*.png"))


def test_the_bundle_entry_starts_the_bundle_itself(monkeypatch, tmp_path):
    exe = tmp_path / "my apps" / "Handoff" / "Handoff"  # a space: the Exec key must quote it
    monkeypatch.setattr(paths, "FROZEN", True)
    monkeypatch.setattr(sys, "executable", str(exe))
    assert desktop.launch_command() == [str(exe)]
    desk = desktop.desktop_entry(desktop.launch_command())
    exec_line = next(line for line in desk.splitlines() if line.startswith("Exec="))
    assert exec_line == f'Exec="{exe}" %f' and shlex.split(exec_line[5:]) == [str(exe), "%f"]


def test_exec_arguments_are_quoted_as_the_desktop_entry_spec_says():
    assert desktop._exec_arg("/opt/Handoff/Handoff") == "/opt/Handoff/Handoff"
    # In the file: " and $ take a backslash inside quotes, which the string escaping doubles; % doubles.
    assert desktop._exec_arg('/a b/"x"$%') == '"/a b/\\\\"x\\\\"\\\\$%%"'


def test_macos_plist_claims_and_declares_the_project_type():
    info = plistlib.loads(plistlib.dumps(desktop.info_plist("Handoff", "1.2.3", "icon.icns")))
    assert info["CFBundleIdentifier"] == APP and info["CFBundleShortVersionString"] == "1.2.3"
    doc = info["CFBundleDocumentTypes"][0]
    declared = info["UTExportedTypeDeclarations"][0]
    assert doc["CFBundleTypeExtensions"] == ["handoff"] and doc["LSItemContentTypes"] == [declared["UTTypeIdentifier"]]
    assert declared["UTTypeTagSpecification"]["public.filename-extension"] == ["handoff"]


def test_install_desktop_is_refused_off_linux(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main.main(["--install-desktop"]) == 2
    assert "Linux" in capsys.readouterr().err


def test_a_frozen_app_finds_its_resources_in_the_bundle(tmp_path):
    """PyInstaller sets sys.frozen and sys._MEIPASS (dist/Handoff/_internal), where the spec puts resources/."""
    code = ("import sys; sys.frozen = True; sys._MEIPASS = sys.argv[1]\n"
            "from core import paths, demo; print(paths.FROZEN, paths.RESOURCES, demo.DEMO_DIR)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["True", str(tmp_path / "resources"), str(tmp_path / "resources" / "demo")]
    assert paths.FROZEN is False and paths.RESOURCES == ROOT / "resources"


def test_version_comes_from_the_project():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert desktop.app_version() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
