"""Render the studio window offscreen after the default two-stage demo job and save it
as resources/screenshot.png (for the README and store listings).

    python packaging/screenshot.py [--out resources/screenshot.png]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "screenshot.png")
    parser.add_argument("--timeout", type=int, default=600, help="seconds to wait for the job")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # A scratch home: the screenshot must not show (or touch) the user's recent files.
    os.environ.setdefault("HANDOFF_HOME", tempfile.mkdtemp(prefix="handoff-shot-"))

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from core.events import JobFinished
    from gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow()
    window.resize(1280, 820)
    window.show()
    outcome: list = []
    # A local loop, not app.exec()/app.quit(): Qt 6's quit() closes the windows, and this
    # one would then ask about its unsaved run with nobody there to answer.
    loop = QEventLoop()

    def ended(ev) -> None:
        outcome.append(ev)
        # Let the last progress and table updates paint before grabbing.
        QTimer.singleShot(300, loop.quit)

    window.jobEnded.connect(ended)
    window.runner.torch_ready.connect(lambda _text: window.generate())
    window.runner.preload()
    QTimer.singleShot(args.timeout * 1000, loop.quit)
    loop.exec()
    if not outcome or not isinstance(outcome[0], JobFinished):
        print(f"the demo job did not finish: {outcome[0] if outcome else 'timed out'}", file=sys.stderr)
        window.modified = False
        window.close()
        return 1
    window.stage_list.list.setCurrentRow(1)  # show the refiner's settings: the interesting ones
    app.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from core.atomic import write_bytes
    from gui.images import qimage_to_png

    write_bytes(args.out, qimage_to_png(window.grab().toImage()))
    print(f"wrote {args.out}")
    window.modified = False
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
