"""The window's own settings (recent files, recent models), kept as JSON in
core.paths.settings_file() so HANDOFF_HOME moves them. Qt-free and forgiving: a missing
or damaged file means defaults, never a crash at start-up."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import checked, settings_file

MAX_RECENT = 10
MIN_AUTOSAVE, MAX_AUTOSAVE = 5, 3600  # seconds


@dataclass
class Settings:
    recent_files: list[str] = field(default_factory=list)
    recent_models: list[str] = field(default_factory=list)
    autosave_seconds: int = 60
    # The window as it was closed: QWidget.saveGeometry() in base64, and each splitter's sizes.
    window_geometry: str = ""
    splitters: dict[str, list[int]] = field(default_factory=dict)
    last_dir: str = ""  # where the last file dialog was left (open, save, image)

    @classmethod
    def load(cls) -> "Settings":
        """The stored settings; a value of the wrong shape is left at its default, and
        core.settings_file keeps the file as it was and says so once."""
        gui = settings_file.read_section("gui")
        out = cls()
        if gui is None:
            return out
        problems: list[str] = []
        if not isinstance(gui, dict):
            problems.append(f"must be a table of fields, not {checked.shown(gui)}")
            gui = {}
        # The file is outside data: each value is taken only when it has the right shape.
        for name in ("recent_files", "recent_models"):
            value = gui.get(name, [])
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                setattr(out, name, [v for v in value if v.strip()][:MAX_RECENT])
            else:
                problems.append(f"{name} must be a list of text, not {checked.shown(value)}")
        seconds = gui.get("autosave_seconds", out.autosave_seconds)
        if isinstance(seconds, int) and not isinstance(seconds, bool) and MIN_AUTOSAVE <= seconds <= MAX_AUTOSAVE:
            out.autosave_seconds = seconds
        else:
            problems.append(f"autosave_seconds must be from {MIN_AUTOSAVE} to {MAX_AUTOSAVE}, not {checked.shown(seconds)}")
        for name in ("window_geometry", "last_dir"):
            value = gui.get(name, "")
            # The geometry is base64 (ASCII); a path has no NUL. Both are short.
            if isinstance(value, str) and len(value) < 100_000 and "\0" not in value and (
                    name != "window_geometry" or value.isascii()):
                setattr(out, name, value)
            else:
                problems.append(f"{name} is not {'a saved geometry' if name == 'window_geometry' else 'a folder'}: "
                                f"{checked.shown(value)}")
        splitters = gui.get("splitters", {})
        if not isinstance(splitters, dict):
            problems.append(f"splitters must be a table of lists of sizes, not {checked.shown(splitters)}")
            splitters = {}
        for key, sizes in splitters.items():
            if isinstance(sizes, list) and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 100_000
                                               for n in sizes):
                out.splitters[key] = sizes
            else:
                problems.append(f"splitters: {checked.names([key])} must be a list of sizes, not {checked.shown(sizes)}")
        if problems:
            settings_file.section_damaged("gui", asdict(out), problems)
        return out

    def save(self) -> None:
        try:
            settings_file.write_section("gui", asdict(self))
        except OSError:
            pass  # a read-only home costs the recent list, nothing else

    def add_recent_file(self, path: Path | str) -> None:
        self.recent_files = _push(self.recent_files, str(Path(path).resolve()))

    def remember_dir(self, path: Path | str) -> None:
        p = Path(path)
        self.last_dir = str(p if p.is_dir() else p.parent)

    def start_dir(self, fallback: Path) -> Path:
        """Where a file dialog opens: the last folder used, while it still exists."""
        last = Path(self.last_dir) if self.last_dir else None
        return last if last is not None and last.is_dir() else fallback

    def add_recent_model(self, ref: str) -> None:
        if ref.strip() and not ref.startswith("builtin:"):
            self.recent_models = _push(self.recent_models, ref.strip())


def _push(items: list[str], item: str) -> list[str]:
    return ([item] + [i for i in items if i != item])[:MAX_RECENT]
