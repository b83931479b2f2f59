"""Desktop integration: the files that make Handoff an application of the desktop, for
both ways it is installed, a checkout with its virtual environment
(packaging/install_launcher.py) and the self-contained bundle (`Handoff --install-desktop`).

Linux (freedesktop, per user, under $XDG_DATA_HOME or ~/.local/share):
    applications/io.github.handoff.Handoff.desktop    the menu entry, opening *.handoff files
    mime/packages/io.github.handoff.Handoff.xml       the application/x-handoff-project type
    icons/hicolor/<N>x<N>/apps/io.github.handoff.Handoff.png   N = 16 … 512, from resources/icon.png
then update-desktop-database and update-mime-database when they are installed.
macOS: the Info.plist of a Handoff.app that claims (and declares) the .handoff type; the
bundle spec (packaging/handoff.spec) and the launcher both take it from here.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from core import paths

APP_ID = "io.github.handoff.Handoff"  # reverse DNS: the .desktop name, the Wayland app id, the macOS bundle id
APP_NAME = "Handoff"
MIME = "application/x-handoff-project"
EXTENSION = "handoff"
PROJECT_UTI = "io.github.handoff.project"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
# What packaging/install_launcher.py wrote before the reverse-DNS id; removed on (un)install.
LEGACY_FILES = ("applications/handoff.desktop", "mime/packages/handoff.xml",
                "icons/hicolor/256x256/apps/handoff.png")


def launch_command() -> list[str]:
    """The command that starts this Handoff: the bundle's executable, or this Python and main.py."""
    if paths.FROZEN:
        return [str(Path(sys.executable).resolve())]
    return [str(Path(sys.executable)), str(paths.REPO_ROOT / "main.py")]


def app_version() -> str:
    """Handoff's version: the installed metadata (the bundle carries it), else pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version("handoff")
    except metadata.PackageNotFoundError:
        pass
    match = re.search(r'^version\s*=\s*"([^"]+)"', _read(paths.REPO_ROOT / "pyproject.toml"), re.M)
    return match.group(1) if match else "0"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def data_home() -> Path:
    """$XDG_DATA_HOME, else ~/.local/share."""
    env = os.environ.get("XDG_DATA_HOME")
    return Path(env) if env else Path.home() / ".local" / "share"


def _exec_arg(arg: str) -> str:
    """One argument of an Exec key, quoted as the Desktop Entry spec says (double quotes;
    backslash before " ` $ \\; % doubled), then escaped as a desktop-file string value."""
    if re.fullmatch(r"[\w@+=:,./-]+", arg):
        return arg
    quoted = '"' + re.sub(r'(["`$\\])', r"\\\1", arg).replace("%", "%%") + '"'
    return quoted.replace("\\", "\\\\")


def desktop_entry(command: list[str]) -> str:
    exec_line = " ".join(_exec_arg(a) for a in command) + " %f"
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        f"Name={APP_NAME}",
        "GenericName=Multi-stage image generation",
        "Comment=Chain a base model and a refiner in one window",
        f"TryExec={command[0]}",
        f"Exec={exec_line}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Graphics;2DGraphics;",
        "Keywords=diffusion;SDXL;Flux;refiner;image generation;",
        f"MimeType={MIME};",
        f"StartupWMClass={APP_NAME}",
        "",
    ])


def mime_xml() -> str:
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">',
        f'  <mime-type type="{MIME}">',
        "    <comment>Handoff project</comment>",
        '    <sub-class-of type="application/zip"/>',  # a project file is a zip (core/project_file.py)
        f'    <icon name="{APP_ID}"/>',
        f'    <glob pattern="*.{EXTENSION}"/>',
        "  </mime-type>",
        "</mime-info>",
        "",
    ])


def linux_files(command: list[str], data: Path) -> dict[Path, str]:
    """The text files of the freedesktop integration, under the XDG data folder `data`."""
    return {
        data / "applications" / f"{APP_ID}.desktop": desktop_entry(command),
        data / "mime" / "packages" / f"{APP_ID}.xml": mime_xml(),
    }


def linux_icons(data: Path) -> dict[Path, int]:
    """hicolor icon path -> size in pixels."""
    return {data / "icons" / "hicolor" / f"{n}x{n}" / "apps" / f"{APP_ID}.png": n for n in ICON_SIZES}


def write_icon(dest: Path, size: int, source: Path | None = None) -> None:
    from PIL import Image

    with Image.open(source or paths.RESOURCES / "icon.png") as img:
        img = img.convert("RGBA")
        if img.size != (size, size):
            img = img.resize((size, size), Image.LANCZOS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        img.save(dest)


def install_linux(command: list[str] | None = None, data: Path | None = None, refresh: bool = True) -> list[Path]:
    """Write the menu entry, MIME type and icons; returns what was written."""
    data = data or data_home()
    command = command or launch_command()
    _remove(data, [data / p for p in LEGACY_FILES])
    written = []
    for path, text in linux_files(command, data).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        written.append(path)
    for path, size in linux_icons(data).items():
        write_icon(path, size)
        written.append(path)
    if refresh:
        refresh_linux(data)
    return written


def uninstall_linux(data: Path | None = None, refresh: bool = True) -> list[Path]:
    """Remove what install_linux wrote (and the launcher's older files); returns what was removed."""
    data = data or data_home()
    targets = list(linux_files(["handoff"], data)) + list(linux_icons(data)) + [data / p for p in LEGACY_FILES]
    removed = _remove(data, targets)
    if refresh:
        refresh_linux(data)
    return removed


def _remove(data: Path, targets: list[Path]) -> list[Path]:
    removed = []
    for path in targets:
        if path.is_file():
            path.unlink()
            removed.append(path)
            # Icon folders this made and nothing else uses (icons/hicolor/16x16/apps …); applications/
            # and mime/packages stay, update-mime-database needs the latter.
            parent = path.parent
            icons = data / "icons"
            while (parent == icons or icons in parent.parents) and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return removed


def refresh_linux(data: Path) -> None:
    """Tell the desktop about the entry and MIME type (best effort: the tools are optional)."""
    tools = [("update-desktop-database", data / "applications"), ("update-mime-database", data / "mime")]
    for tool, folder in tools:
        if shutil.which(tool) and folder.is_dir():
            subprocess.run([tool, str(folder)], check=False, capture_output=True, timeout=60)
    hicolor = data / "icons" / "hicolor"
    if hicolor.is_dir():
        hicolor.touch()  # icon caches and file managers rescan a theme folder whose time changed


def info_plist(executable: str, version: str, icon_file: str) -> dict:
    """A macOS Handoff.app's Info.plist: the app, and the .handoff document type it opens and declares."""
    return {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": APP_ID,
        "CFBundleExecutable": executable,
        "CFBundlePackageType": "APPL",
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "CFBundleIconFile": icon_file,
        "NSHighResolutionCapable": True,
        "LSMinimumSystemVersion": "12.0",
        "CFBundleDocumentTypes": [{
            "CFBundleTypeName": "Handoff project",
            "CFBundleTypeExtensions": [EXTENSION],
            "CFBundleTypeRole": "Editor",
            "LSHandlerRank": "Owner",
            "LSItemContentTypes": [PROJECT_UTI],
        }],
        "UTExportedTypeDeclarations": [{
            "UTTypeIdentifier": PROJECT_UTI,
            "UTTypeDescription": "Handoff project",
            "UTTypeConformsTo": ["public.data", "public.content"],
            "UTTypeTagSpecification": {"public.filename-extension": [EXTENSION], "public.mime-type": [MIME]},
        }],
    }


def desktop_command(action: str) -> int:
    """`Handoff --install-desktop` / `--uninstall-desktop` (main.py dispatches here). A data
    folder that cannot be used (a file, read-only) is one line and exit 2, like any bad input."""
    if not sys.platform.startswith("linux"):
        print("handoff: --install-desktop is for Linux desktops; on macOS drag Handoff.app to Applications, "
              "on Windows pin Handoff.exe", file=sys.stderr)
        return 2
    data = data_home()
    try:
        return _install(data) if action == "--install-desktop" else _uninstall(data)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"handoff: {action}: cannot use {data} (XDG_DATA_HOME or ~/.local/share): "
              f"{exc.strerror or exc}{where}", file=sys.stderr)
        return 2


def _install(data: Path) -> int:
    from core.atomic import writable_problem

    problem = writable_problem(data)
    if problem:
        print(f"handoff: --install-desktop: {problem} (XDG_DATA_HOME or ~/.local/share)", file=sys.stderr)
        return 2
    command = launch_command()
    for path in install_linux(command, data):
        print(f"wrote {path}")
    print(f"Handoff is in the application menu as {APP_ID}; it runs {' '.join(command)}")
    return 0


def _uninstall(data: Path) -> int:
    if data.exists() and not data.is_dir():
        print(f"handoff: --uninstall-desktop: {data} is a file, not a folder (XDG_DATA_HOME or ~/.local/share)",
              file=sys.stderr)
        return 2
    removed = uninstall_linux(data)
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print(f"nothing to remove under {data}")
    return 0
