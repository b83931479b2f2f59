"""Handoff: `python main.py` opens the studio; `python main.py generate|run|sweep|batch ...` is the command line;
`--install-desktop` / `--uninstall-desktop` add it to (or take it from) the Linux application menu."""
from __future__ import annotations

import sys

# First, before anything heavy is imported: Ctrl-C or SIGTERM from here on exits 130/143
# with one line (core/interrupts.py), not a traceback from inside an import or a silent kill.
from core.interrupts import exit_on_signals, leave, reached

if __name__ == "__main__":  # not when a test imports this module: pytest keeps its own handlers
    exit_on_signals()

CLI_COMMANDS = {"generate", "run", "sweep", "batch", "inspect", "export"}
DESKTOP_FLAGS = {"--install-desktop", "--uninstall-desktop"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and (argv[0] in CLI_COMMANDS or argv[0] in ("-h", "--help")):
        reached("importing")
        from core.cli import main as cli_main

        return cli_main(argv)
    if argv and argv[0] in DESKTOP_FLAGS:
        from core.desktop import desktop_command

        return desktop_command(argv[0])
    from gui.app import run_app

    return run_app(argv)


if __name__ == "__main__":
    status = main()
    reached("shutdown")
    if sys.argv[1:2] and (sys.argv[1] in CLI_COMMANDS or sys.argv[1] in DESKTOP_FLAGS):
        leave(status)  # no interpreter teardown for a signal to land in
    sys.exit(status)
