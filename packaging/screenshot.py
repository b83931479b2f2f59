"""Render the studio window at a laptop's 1366×768 in the middle of a run, with the live
preview showing, and save it as resources/screenshot.png (for the README and store
listings). A first demo job fills the run strip and the timings; the second runs with
more steps and is grabbed when its refiner has a live preview up, then cancelled.

    python packaging/screenshot.py [--out resources/screenshot.png]
    python packaging/screenshot.py --adapters --out resources/screenshot-adapters.png

With --adapters the second run is a sweep instead: the base stage's Adapters open with the
shipped LoRA added, and the window is grabbed with the sweep grid filled.

Offscreen by default; under Xvfb (`xvfb-run -s "-screen 0 1366x768x24" python
packaging/screenshot.py`, QT_QPA_PLATFORM=xcb) the platform style and fonts are real.
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
    parser.add_argument("--adapters", action="store_true",
                        help="open the base stage's Adapters (with the demo LoRA) and a filled sweep grid")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # A scratch home: the screenshot must not show (or touch) the user's recent files.
    os.environ.setdefault("HANDOFF_HOME", tempfile.mkdtemp(prefix="handoff-shot-"))

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from core.events import JobFinished, StagePreview
    from gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["Handoff"])
    window = MainWindow()
    window.show()
    window.setGeometry(0, 0, 1366, 768)
    outcome: list = []
    # A local loop, not app.exec()/app.quit(): Qt 6's quit() closes the windows, and this
    # one would then ask about its unsaved run with nobody there to answer.
    loop = QEventLoop()

    def ended(ev) -> None:
        outcome.append(ev)
        QTimer.singleShot(300, loop.quit)

    window.jobEnded.connect(ended)
    window.runner.torch_ready.connect(lambda _text: window.generate())
    window.runner.preload()
    QTimer.singleShot(args.timeout * 1000, loop.quit)
    loop.exec()
    if not outcome or not isinstance(outcome[0], JobFinished):
        print(f"the demo job did not finish: {outcome[0] if outcome else 'timed out'}", file=sys.stderr)
        window.set_modified(False)
        window.close()
        return 1
    if args.adapters:
        return adapters_and_sweep(window, loop, args.out)
    # The second run: long enough stages that the refiner's live preview shows mid-run.
    window.jobEnded.disconnect(ended)
    for stage in window.project.stages:
        stage.steps = 120
    window.stage_list.list.setCurrentRow(1)  # show the refiner's settings: the interesting ones
    window.stage_list.refresh()
    caught: list = []

    def on_event(ev) -> None:
        # The preview of the refiner, some way in: grab after it has painted.
        if isinstance(ev, StagePreview) and ev.index == 1 and ev.step >= 8 and not caught:
            caught.append(ev)
            QTimer.singleShot(150, loop.quit)

    window.runner.event.connect(on_event)
    window.generate()
    loop.exec()
    if not caught:
        print("no live preview of the refiner arrived", file=sys.stderr)
        return 1
    app.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from core.atomic import write_bytes
    from gui.images import qimage_to_png

    write_bytes(args.out, qimage_to_png(window.grab().toImage()))
    print(f"wrote {args.out}")
    done = QEventLoop()
    window.jobEnded.connect(lambda _ev: done.quit())
    window.cancel()
    QTimer.singleShot(30_000, done.quit)
    done.exec()
    window.set_modified(False)
    window.close()
    return 0


def adapters_and_sweep(window, loop, out: Path) -> int:
    """The base stage's Adapters open with the shipped LoRA added, and a two-cell sweep of
    the refiner's switch point filled in the Sweep tab."""
    from PySide6.QtCore import QTimer

    window.stage_list.list.setCurrentRow(0)
    editor = window.stage_list.editor
    editor.adapters_section.set_expanded(True)
    editor.adapters.lora_ref.setText("builtin:demo-lora")
    editor.adapters._add_typed_lora()
    window.tuning.show_sweep()
    panel = window.tuning.sweep_panel
    panel.x.param.setCurrentText("2.switch_at")
    panel.x.values.setText("0.6, 0.8")
    window.runner.busy_changed.connect(lambda busy: busy or QTimer.singleShot(300, loop.quit))
    if not panel.start():
        print(f"the sweep did not start: {panel.problem.text()}", file=sys.stderr)
        return 1
    loop.exec()
    if panel.result is None:
        print("the sweep did not finish", file=sys.stderr)
        return 1
    return grab(window, out)


def grab(window, out: Path) -> int:
    from core.atomic import write_bytes
    from gui.images import qimage_to_png

    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, qimage_to_png(window.grab().toImage()))
    print(f"wrote {out}")
    window.set_modified(False)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
