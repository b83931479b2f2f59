"""Make Handoff a double-click desktop app for this checkout: a launcher that starts the
window with this Python (the virtual environment the quick start made), and, on Linux and
macOS, `.handoff` project files that open in it.

    .venv/bin/python packaging/install_launcher.py            # install for this user
    .venv/bin/python packaging/install_launcher.py --remove   # take it away again

- Linux (freedesktop): ~/.local/share/applications/io.github.handoff.Handoff.desktop, a
  MIME type for *.handoff and hicolor icons (core/desktop.py, shared with the bundle's
  `Handoff --install-desktop`), so Handoff appears in the application menu and opens
  project files from the file manager.
- macOS: ~/Applications/Handoff.app, a small bundle whose executable runs main.py and
  whose Info.plist claims the .handoff extension.
- Windows: a Handoff.cmd on the desktop that starts pythonw (no console window).

Nothing is copied: the launcher points at this checkout, so a `git pull` updates the app.
`--root` writes under another folder instead of the home directory (the tests use it);
on Linux $XDG_DATA_HOME is respected otherwise.
"""
from __future__ import annotations

import argparse
import plistlib
import shlex
import shutil
import stat
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import desktop  # noqa: E402  (after the path: this script runs from a checkout)

MAIN = REPO / "main.py"
ICON = REPO / "resources" / "icon.png"


def macos_bundle(python: Path, apps: Path) -> dict[Path, str]:
    app = apps / "Handoff.app" / "Contents"
    script = f'#!/bin/sh\nexec {shlex.quote(str(python))} {shlex.quote(str(MAIN))} "$@"\n'
    plist = plistlib.dumps(desktop.info_plist("Handoff", desktop.app_version(), "icon.png")).decode()
    return {app / "MacOS" / "Handoff": script, app / "Info.plist": plist}


def windows_files(python: Path, desktop_dir: Path) -> dict[Path, str]:
    # pythonw has no console window; start returns at once so the .cmd window closes.
    pythonw = python.with_name("pythonw.exe") if python.name.lower() == "python.exe" else python
    return {desktop_dir / "Handoff.cmd": f'@echo off\r\nstart "" "{pythonw}" "{MAIN}" %*\r\n'}


def linux_data(root: Path | None) -> Path:
    return root / ".local" / "share" if root is not None else desktop.data_home()


def install(platform: str, python: Path, root: Path | None) -> list[Path]:
    """Write the launcher for `platform`; returns what was written."""
    home = root or Path.home()
    if platform.startswith("linux"):
        return desktop.install_linux([str(python), str(MAIN)], linux_data(root), refresh=root is None)
    if platform == "darwin":
        files = macos_bundle(python, home / "Applications")
        contents = next(iter(files)).parent.parent
        icon = contents / "Resources" / "icon.png"
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="")
            if path.parent.name == "MacOS":
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        icon.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ICON, icon)
        return [*files, icon]
    if platform == "win32":
        files = windows_files(python, home / "Desktop")
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="")
        return list(files)
    raise SystemExit(f"install_launcher: no launcher recipe for platform {platform!r}")


def remove(platform: str, root: Path | None) -> list[Path]:
    home = root or Path.home()
    if platform.startswith("linux"):
        return desktop.uninstall_linux(linux_data(root), refresh=root is None)
    if platform == "darwin":
        app = home / "Applications" / "Handoff.app"
        if app.is_dir():
            shutil.rmtree(app)
            return [app]
        return []
    if platform == "win32":
        cmd = home / "Desktop" / "Handoff.cmd"
        if cmd.is_file():
            cmd.unlink()
            return [cmd]
        return []
    raise SystemExit(f"install_launcher: no launcher recipe for platform {platform!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remove", action="store_true", help="remove the launcher this script installed")
    ap.add_argument("--root", type=Path, help="write under this folder instead of the home directory")
    ap.add_argument("--platform", default=sys.platform, help=argparse.SUPPRESS)  # for tests
    args = ap.parse_args(argv)
    python = Path(sys.executable)
    if args.remove:
        for path in remove(args.platform, args.root):
            print(f"removed {path}")
        return 0
    for path in install(args.platform, python, args.root):
        print(f"wrote {path}")
    print(f"Handoff runs {MAIN} with {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
