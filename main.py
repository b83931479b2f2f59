"""Handoff: `python main.py` opens the studio; `python main.py generate|run|sweep|batch ...` is the command line;
`--install-desktop` / `--uninstall-desktop` add it to (or take it from) the Linux application menu."""
from __future__ import annotations

import sys

# Nothing heavy is imported at the top: run() sets its signal handlers before anything is.
from core.interrupts import exit_on_signals, leave, reached

CLI_COMMANDS = {"generate", "run", "sweep", "batch", "inspect", "export", "score", "library"}
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


def run() -> None:
    """The process: `python main.py`, the `handoff` script and the bundle. Ctrl-C or SIGTERM
    from its first line exits 130/143 with one line (core/interrupts.py), not a traceback
    from inside an import or a silent kill; a command leaves without the interpreter's
    teardown, where a signal could still come out as either. (Not at import: a test that
    imports this module keeps pytest's own handlers.)"""
    exit_on_signals()
    status = main()
    reached("shutdown")
    if sys.argv[1:2] and (sys.argv[1] in CLI_COMMANDS or sys.argv[1] in DESKTOP_FLAGS):
        leave(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
