"""What ran at each stage: the handoff the project asked for, the one the plan chose, the
strength it ran at and why it differs. core.planning's StagePlan makes it (StagePlan.ran),
the engine hands it with every PNG it writes, and the writers of the `handoff` chunk, the
A1111 text and the ComfyUI graphs read it, so a file says what ran rather than what a
project asked for (a latent handoff between two VAEs runs as pixels)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

RAN_HANDOFFS = ("generate", "pixel", "latent", "ensemble", "upscale")  # upscale: a model upscaler stage


@dataclass(frozen=True)
class StageRan:
    index: int  # in project.stages
    asked: str  # the stage's handoff setting ("auto", "pixel", "latent", "ensemble")
    ran: str  # "generate", "pixel", "latent", "ensemble" or "upscale"
    strength: float  # pixel/latent: the share of the schedule redone
    why: str = ""  # why what ran differs from what was asked (the plan's note)
    vae_tiled: bool = False  # its image was decoded in tiles (the memory plan's choice): its seams are blended

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "StageRan | None":
        """The record, or None for one that is not (a damaged or foreign chunk: the
        exporters then fall back to what the project asks)."""
        if not isinstance(data, dict):
            return None
        index, strength = data.get("index"), data.get("strength")
        if (not isinstance(index, int) or isinstance(index, bool) or index < 0
                or not isinstance(strength, (int, float)) or isinstance(strength, bool)
                or data.get("ran") not in RAN_HANDOFFS or not isinstance(data.get("asked"), str)):
            return None
        why = data.get("why")
        return cls(index, data["asked"], data["ran"], float(strength), why if isinstance(why, str) else "",
                   data.get("vae_tiled") is True)

    def describe(self) -> str:
        """One line for a person, e.g. "stage 2: ran pixel at strength 0.3, asked latent (the VAEs differ…)"."""
        how = self.ran + (f" at strength {self.strength:g}" if self.ran in ("pixel", "latent") else "")
        text = f"stage {self.index + 1}: ran {how}"
        if self.asked not in (self.ran, "auto"):
            text += f", asked {self.asked}"
        return text + (f" ({self.why})" if self.why else "") + (", the VAE decoding in tiles" if self.vae_tiled else "")


def ran_by_index(records: Any) -> dict[int, StageRan]:
    """The records of a chunk's `ran` list, by stage index; malformed entries left out."""
    out: dict[int, StageRan] = {}
    for item in records if isinstance(records, list) else []:
        r = StageRan.from_dict(item)
        if r is not None:
            out[r.index] = r
    return out
