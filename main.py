"""Handoff: `python main.py` opens the studio; `python main.py generate|run|sweep|batch ...` is the command line;
`--install-desktop` / `--uninstall-desktop` add it to (or take it from) the Linux application menu."""
from __future__ import annotations

import sys

CLI_COMMANDS = {"generate", "run", "sweep", "batch", "inspect", "export", "library"}
DESKTOP_FLAGS = {"--install-desktop", "--uninstall-desktop"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and (argv[0] in CLI_COMMANDS or argv[0] in ("-h", "--help")):
        from core.cli import main as cli_main

        return cli_main(argv)
    if argv and argv[0] in DESKTOP_FLAGS:
        from core.desktop import desktop_command

        return desktop_command(argv[0])
    from gui.app import run_app

    return run_app(argv)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the command line installed its own handler
        print("handoff: cancelled", file=sys.stderr)
        sys.exit(130)
