"""Build the self-contained Handoff app with PyInstaller (packaging/handoff.spec), then its
release archive, and say how big it is and what takes the space.

    .venv/bin/pip install -e '.[bundle]'
    .venv/bin/python packaging/build.py            # dist/Handoff/ and dist/Handoff-<version>-linux-<arch>.tar.gz
    .venv/bin/python packaging/build.py --no-archive

The app runs with no checkout and no Python: `dist/Handoff/Handoff` opens the window,
`dist/Handoff/Handoff generate …` / `run …` is the command line, `--install-desktop` adds it
to the Linux application menu. packaging/smoke_test.sh proves a built one works.
The torch inside is the one in this environment: build with a CUDA torch for a CUDA app.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.desktop import app_version  # noqa: E402

SPEC = REPO / "packaging" / "handoff.spec"
NAME = "Handoff"

BUNDLE_README = """\
Handoff {version}, a self-contained build ({torch}).

  ./Handoff                         open the studio (./Handoff project.handoff opens a project)
  ./Handoff generate "a red circle on a blue background" --model builtin:demo-base \\
      --refiner builtin:demo-refiner --switch-at 0.8 --steps 8 --out demo.png
  ./Handoff run project.handoff --out renders/
  ./Handoff --install-desktop       add it to the application menu, open .handoff files with it
  ./Handoff --uninstall-desktop     take that away again

Keep this folder where it is once the desktop entry is installed (the entry points here);
after moving it, run --install-desktop again. Settings and outputs live in
~/.local/share/handoff (HANDOFF_HOME moves them), models in the Hugging Face cache.
A real window needs the X11/Wayland libraries of any desktop (libxcb-cursor0,
libxkbcommon-x11-0, libegl1, libfontconfig1 on a bare Debian/Ubuntu).
"""


def du(path: Path) -> int:
    """Bytes on disk, as `du -s` counts them (each hard link once, symlinks as themselves)."""
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def breakdown(app: Path) -> str:
    """What takes the space: the executable (which carries all Python bytecode), the big
    folders of torch and PySide6, then every other part of _internal over 10 MiB."""
    parts: dict[str, int] = {}

    def add(key: str, size: int) -> None:
        parts[key] = parts.get(key, 0) + size

    def size_of(p: Path) -> int:
        return du(p) if p.is_dir() and not p.is_symlink() else os.lstat(p).st_blocks * 512

    for entry in app.iterdir():
        if entry.is_file() and os.access(entry, os.X_OK):
            add(f"{entry.name} (the executable, with all Python bytecode compressed in it)", size_of(entry))
    for entry in (app / "_internal").iterdir():
        if entry.name in ("torch", "PySide6") and entry.is_dir():
            for sub in entry.iterdir():
                size = size_of(sub)
                add(f"{entry.name}/{sub.name}" if size > 20 * 2**20 else f"{entry.name} (the rest)", size)
        else:
            size = size_of(entry)
            add(entry.name if size > 10 * 2**20 else "everything else", size)
    rows = sorted(parts.items(), key=lambda kv: (kv[0] == "everything else", -kv[1]))
    return "\n".join(f"  {mib(size):>9}  {name}" for name, size in rows)


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def archive(app: Path, dest: Path) -> Path:
    """A .tar.gz holding the Handoff/ folder, links and permissions kept."""
    tmp = dest.with_name(dest.name + ".part")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(app, arcname=app.name)
    tmp.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", type=Path, default=REPO / "dist", help="where the app goes (default: dist/)")
    ap.add_argument("--work", type=Path, default=REPO / "build", help="PyInstaller's work folder (default: build/)")
    ap.add_argument("--no-archive", action="store_true", help="skip the release .tar.gz")
    ap.add_argument("--clean", action="store_true", help="empty PyInstaller's cache first (a full rebuild)")
    args = ap.parse_args(argv)
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        print("build: PyInstaller is not installed; run: .venv/bin/pip install -e '.[bundle]'", file=sys.stderr)
        return 2
    import torch

    torch_build = f"torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if torch.version.cuda else "")
    print(f"build: Handoff {app_version()} with {torch_build}, Python {platform.python_version()}", flush=True)
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(args.dist), "--workpath", str(args.work)]
    if args.clean:
        cmd.append("--clean")
    subprocess.run(cmd + [str(SPEC)], check=True, cwd=REPO)
    built = time.perf_counter() - started
    app = args.dist / NAME
    if sys.platform.startswith("linux"):
        (app / "README.txt").write_text(BUNDLE_README.format(version=app_version(), torch=torch_build),
                                        encoding="utf-8")
    print(f"build: {app} in {built:.0f} s, {mib(du(app))} on disk", flush=True)
    if app.is_dir() and (app / "_internal").is_dir():
        print(breakdown(app), flush=True)
    if not args.no_archive and sys.platform.startswith("linux"):
        t0 = time.perf_counter()
        arch = "x86_64" if platform.machine() in ("x86_64", "AMD64") else platform.machine()
        out = archive(app, args.dist / f"{NAME}-{app_version()}-linux-{arch}.tar.gz")
        print(f"build: {out} ({mib(out.stat().st_size)}) in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
