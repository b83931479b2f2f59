"""`python -m gui` opens the studio window."""
import sys

from gui.app import run_app

sys.exit(run_app(sys.argv[1:]))
