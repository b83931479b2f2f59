"""Make Handoff a double-click desktop app for this checkout: a launcher that starts the
window with this Python (the virtual environment the quick start made), and, on Linux and
macOS, `.handoff` project files that open in it.

    .venv/bin/python packaging/install_launcher.py            # install for this user
    .venv/bin/python packaging/install_launcher.py --remove   # take it away again

- Linux (freedesktop): ~/.local/share/applications/handoff.desktop, a MIME type for
  *.handoff and the icon, so Handoff appears in the application menu and opens project
  files from the file manager.
- macOS: ~/Applications/Handoff.app, a small bundle whose executable runs main.py and
  whose Info.plist claims the .handoff extension.
- Windows: a Handoff.cmd on the desktop that starts pythonw (no console window).

Nothing is copied: the launcher points at this checkout, so a `git pull` updates the app.
`--root` writes under another folder instead of the home directory (the tests use it).
"""
from __future__ import annotations

import argparse
import os
import plistlib
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAIN = REPO / "main.py"
ICON = REPO / "resources" / "icon.png"
MIME = "application/x-handoff-project"
EXTENSION = "handoff"


def linux_files(python: Path, data: Path) -> dict[Path, str]:
    """The files a freedesktop launcher needs, under the XDG data folder `data`."""
    exec_line = f"{shlex.quote(str(python))} {shlex.quote(str(MAIN))} %f"
    desktop = "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Name=Handoff",
        "GenericName=Multi-stage image generation",
        "Comment=Chain a base model and a refiner in one window",
        f"Exec={exec_line}",
        f"Icon={data / 'icons' / 'hicolor' / '256x256' / 'apps' / 'handoff.png'}",
        "Terminal=false",
        "Categories=Graphics;2DGraphics;",
        f"MimeType={MIME};",
        "StartupWMClass=Handoff",
        "",
    ])
    mime = "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">',
        f'  <mime-type type="{MIME}">',
        "    <comment>Handoff project</comment>",
        f'    <glob pattern="*.{EXTENSION}"/>',
        "  </mime-type>",
        "</mime-info>",
        "",
    ])
    return {
        data / "applications" / "handoff.desktop": desktop,
        data / "mime" / "packages" / "handoff.xml": mime,
    }


def macos_bundle(python: Path, apps: Path) -> dict[Path, str]:
    app = apps / "Handoff.app" / "Contents"
    script = f'#!/bin/sh\nexec {shlex.quote(str(python))} {shlex.quote(str(MAIN))} "$@"\n'
    plist = plistlib.dumps({
        "CFBundleName": "Handoff",
        "CFBundleDisplayName": "Handoff",
        "CFBundleIdentifier": "org.handoff.studio",
        "CFBundleExecutable": "Handoff",
        "CFBundlePackageType": "APPL",
        "CFBundleIconFile": "icon.png",
        "NSHighResolutionCapable": True,
        "CFBundleDocumentTypes": [{
            "CFBundleTypeName": "Handoff project",
            "CFBundleTypeExtensions": [EXTENSION],
            "CFBundleTypeRole": "Editor",
        }],
    }).decode()
    return {app / "MacOS" / "Handoff": script, app / "Info.plist": plist}


def windows_files(python: Path, desktop: Path) -> dict[Path, str]:
    # pythonw has no console window; start returns at once so the .cmd window closes.
    pythonw = python.with_name("pythonw.exe") if python.name.lower() == "python.exe" else python
    return {desktop / "Handoff.cmd": f'@echo off\r\nstart "" "{pythonw}" "{MAIN}" %*\r\n'}


def plan(platform: str, python: Path, root: Path | None) -> tuple[dict[Path, str], list[tuple[Path, Path]]]:
    """(text files to write, (icon source, destination) copies) for `platform`."""
    home = root or Path.home()
    if platform.startswith("linux"):
        env = os.environ.get("XDG_DATA_HOME") if root is None else None
        data = Path(env) if env else home / ".local" / "share"
        icon = data / "icons" / "hicolor" / "256x256" / "apps" / "handoff.png"
        return linux_files(python, data), [(ICON, icon)]
    if platform == "darwin":
        files = macos_bundle(python, home / "Applications")
        contents = next(iter(files)).parent.parent
        return files, [(ICON, contents / "Resources" / "icon.png")]
    if platform == "win32":
        return windows_files(python, home / "Desktop"), []
    raise SystemExit(f"install_launcher: no launcher recipe for platform {platform!r}")


def _refresh_caches(platform: str, written: list[Path]) -> None:
    """Tell the desktop about the new entry and MIME type (best effort: the tools are optional)."""
    if not platform.startswith("linux"):
        return
    for path in written:
        if path.name == "handoff.xml" and shutil.which("update-mime-database"):
            subprocess.run(["update-mime-database", str(path.parent.parent)], check=False, capture_output=True)
        if path.suffix == ".desktop" and shutil.which("update-desktop-database"):
            subprocess.run(["update-desktop-database", str(path.parent)], check=False, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remove", action="store_true", help="remove the launcher this script installed")
    ap.add_argument("--root", type=Path, help="write under this folder instead of the home directory")
    ap.add_argument("--platform", default=sys.platform, help=argparse.SUPPRESS)  # for tests
    args = ap.parse_args(argv)
    python = Path(sys.executable)
    files, copies = plan(args.platform, python, args.root)
    targets = list(files) + [dst for _, dst in copies]
    if args.remove:
        for path in targets:
            if path.exists():
                path.unlink()
                print(f"removed {path}")
        bundle = next((p for p in targets if p.name == "Info.plist"), None)
        if bundle is not None:
            shutil.rmtree(bundle.parent.parent, ignore_errors=True)
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        if path.parent.name == "MacOS":
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        print(f"wrote {path}")
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        print(f"wrote {dst}")
    if args.root is None:
        _refresh_caches(args.platform, targets)
    print(f"Handoff runs {MAIN} with {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
