"""Open the studio window on a 1366×768 screen whose windows have frames (Qt's offscreen
platform, configured), as a laptop's window manager draws them; run by tests/gui/
test_laptop.py in a process of its own, since a platform is chosen once per process.

    python tests/gui/laptop_screen.py OUT.json [x y w h]

With a rectangle: the window is put there, then closed (its geometry saved to the
settings in HANDOFF_HOME). Without one: the window opens as the settings say. Either way
OUT.json gets its geometry, frame and splitter sizes as shown."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCREEN = {"windowFrameMargins": True,
          "screens": [{"name": "laptop", "x": 0, "y": 0, "width": 1366, "height": 768,
                       "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}


def platform() -> str:
    config = Path(tempfile.mkdtemp(prefix="screen-")) / "laptop.json"
    config.write_text(json.dumps(SCREEN))
    return f"offscreen:configfile={config}"


def main() -> int:
    sys.path.insert(0, str(REPO))
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow

    app = QApplication(["Handoff"])
    w = MainWindow()
    w.show()
    app.processEvents()
    if len(sys.argv) > 2:
        x, y, width, height = (int(a) for a in sys.argv[2:6])
        w.setGeometry(x, y, width, height)
        app.processEvents()
    out = {"geometry": w.geometry().getRect(), "frame": w.frameGeometry().getRect(),
           "splitters": {k: s.sizes() for k, s in w.splitters.items()},
           "minimum": w.minimumSizeHint().toTuple(), "screen": w.screen().availableGeometry().getRect()}
    Path(sys.argv[1]).write_text(json.dumps(out))
    w.set_modified(False)
    w.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", platform())
    sys.exit(main())
