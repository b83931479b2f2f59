"""What every reader of another tool's metadata gives and uses: the result (`Imported`:
the project, the tool detected, what could not be mapped) and typed access to a field
that fails with core.errors.ReadError naming the file and the field."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from core.errors import ReadError
from core.project import MAX_SEED, Lora, Project
from core.ran import StageRan


@dataclass
class Imported:
    project: Project
    tool: str  # "ComfyUI", "Automatic1111", "Forge", "InvokeAI", "Fooocus", "NovelAI" or "Handoff"
    source: str = ""  # where in the file it was read: "the 'prompt' chunk", "EXIF UserComment"…
    unmapped: list[str] = field(default_factory=list)  # what the file asks for that Handoff did not apply
    notes: list[str] = field(default_factory=list)  # what was applied only approximately, or needs the user
    # What ran at each stage, by stage index (a Handoff PNG's record; empty otherwise):
    # exports of the restored project follow it, as the PNG's own chunks do.
    ran: dict[int, StageRan] = field(default_factory=dict)

    def summary(self, limit: int = 12) -> str:
        """A few lines for a person: the tool, then what was not mapped, then the notes."""
        lines = [f"made by {self.tool}" + (f" ({self.source})" if self.source else "")]
        if self.unmapped:
            lines.append("not mapped:")
            lines += [f"  - {u}" for u in self.unmapped[:limit]]
            if len(self.unmapped) > limit:
                lines.append(f"  … and {len(self.unmapped) - limit} more")
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {n}" for n in self.notes[:limit]]
            if len(self.notes) > limit:
                lines.append(f"  … and {len(self.notes) - limit} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class Where:
    """Names the place a value came from, for messages: `Where("photo.png: ComfyUI prompt")`."""

    prefix: str

    def at(self, part: str) -> "Where":
        return Where(f"{self.prefix}: {part}")

    def error(self, what: str, problem: str) -> ReadError:
        return ReadError(f"{self.prefix}: {what} {problem}")

    def whole(self, value: Any, what: str) -> int:
        """An int from a JSON number or a string of digits."""
        if isinstance(value, bool):
            raise self.error(what, f"is {value!r}, not a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise self.error(what, f"is {_shown(value)}, not a whole number")

    def number(self, value: Any, what: str) -> float:
        if isinstance(value, bool):
            raise self.error(what, f"is {value!r}, not a number")
        if isinstance(value, (int, float)):
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise self.error(what, f"is {_shown(value)}, not a number") from None
        else:
            raise self.error(what, f"is {_shown(value)}, not a number")
        if not math.isfinite(result):
            raise self.error(what, f"is {_shown(value)}, not a finite number")
        return result

    def text(self, value: Any, what: str) -> str:
        if isinstance(value, str):
            return value
        raise self.error(what, f"is {_shown(value)}, not text")

    def table(self, value: Any, what: str) -> dict:
        if isinstance(value, dict):
            return value
        raise self.error(what, f"is {_shown(value)}, not a JSON object")

    def seed(self, value: Any, what: str, notes: list[str]) -> int:
        """A seed in 0..2^64-1, kept exactly (core.project.MAX_SEED). A negative one (some
        tools write -1) or a larger one is taken modulo 2^64, as torch's manual_seed takes a
        negative seed, with a note."""
        seed = self.whole(value, what)
        if 0 <= seed <= MAX_SEED:
            return seed
        folded = seed % (MAX_SEED + 1)
        notes.append(f"{what} {seed} is outside 0..{MAX_SEED}: used {folded}")
        return folded


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def size_of(where: Where, width: Any, height: Any, what: str = "size") -> tuple[int, int]:
    w, h = where.whole(width, f"{what} width"), where.whole(height, f"{what} height")
    if not (0 < w <= 65536 and 0 < h <= 65536):
        raise where.error(what, f"{w}x{h} is not a usable image size")
    return w, h


def library_loras(named: dict[str, Any], lookup, unmapped: list[str]) -> list[Lora]:
    """A tool's LoRA list (name → weight) as a stage's LoRAs: each the model library has a
    file of (core.interop.model_lookup.ModelLookup.find_adapter), in order; the others, and
    weights that are not numbers, listed as not applied."""
    out: list[Lora] = []
    for name, weight in named.items():
        try:
            w = float(weight)
        except (TypeError, ValueError):
            w = None
        found = lookup.find_adapter(name, "lora")
        if found is not None and w is not None and math.isfinite(w):
            out.append(Lora(found, w))
            continue
        why = ("no file of that name in the model library (add your loras/ folder, or point the stage at it)"
               if found is None else f"its weight {weight!r} is not a number")
        unmapped.append(f"LoRA '{name}' at weight {weight}: {why}, not applied")
    return out
