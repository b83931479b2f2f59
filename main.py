"""Handoff: `python main.py` opens the studio; `python main.py generate|run ...` is the command line."""
from __future__ import annotations

import sys

CLI_COMMANDS = {"generate", "run", "inspect", "export"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and (argv[0] in CLI_COMMANDS or argv[0] in ("-h", "--help")):
        from core.cli import main as cli_main

        return cli_main(argv)
    from gui.app import run_app

    return run_app(argv)


if __name__ == "__main__":
    sys.exit(main())
