"""Scorers: how well an image fits a prompt, or how good it looks, as one number.

A scorer is named by a reference: `clip:<CLIP folder or Hub id>` (the CLIP score, as
torchmetrics' CLIPScore defines it: 100 x max(cos(image, text), 0)) or
`aesthetic:<file>[@<clip ref>]` (the LAION improved aesthetic predictor: an MLP over the
normalised CLIP ViT-L/14 image embedding). core.scorer_refs turns a reference into a
ScorerSpec of local files; this module loads a spec once (ScorerCache, kept by the
engine's ModelCache like its pipelines) and scores. torch and transformers are imported
inside the functions that need them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.errors import ModelError

CLIP, AESTHETIC = "clip", "aesthetic"
KINDS = (CLIP, AESTHETIC)
# christophschuhmann/improved-aesthetic-predictor: Linear layers at these indices of its
# nn.Sequential (the others are Dropout), 768 -> 1024 -> 128 -> 64 -> 16 -> 1.
AESTHETIC_WIDTHS = (768, 1024, 128, 64, 16, 1)
AESTHETIC_LINEARS = (0, 2, 4, 6, 7)
AESTHETIC_DROPOUTS = {1: 0.2, 3: 0.2, 5: 0.1}


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer reference made local: what ScorerCache loads."""

    ref: str  # as the user wrote it; recorded with each score
    kind: str  # CLIP or AESTHETIC
    clip: Path  # a CLIP model folder (transformers' CLIPModel + CLIPProcessor)
    head: Path | None = None  # the aesthetic MLP's weights


class Scorer(Protocol):
    ref: str

    def score(self, image: Any, prompt: str) -> float: ...


def aesthetic_mlp():
    """The improved aesthetic predictor's MLP, its layers at the indices its state dict names."""
    import torch

    layers: list[Any] = []
    widths = iter(zip(AESTHETIC_WIDTHS, AESTHETIC_WIDTHS[1:]))
    for i in range(AESTHETIC_LINEARS[-1] + 1):
        if i in AESTHETIC_DROPOUTS:
            layers.append(torch.nn.Dropout(AESTHETIC_DROPOUTS[i]))
        else:
            layers.append(torch.nn.Linear(*next(widths)))
    return torch.nn.Sequential(*layers)


def read_aesthetic_head(path: Path):
    """The MLP with the weights in `path` (.pth read with weights_only=True, or .safetensors;
    the keys `layers.0.weight` ... of the original, or without the `layers.` prefix)."""
    from core.upscalers import read_state_dict

    try:
        state = read_state_dict(path)
    except ModelError as exc:
        raise ModelError(str(exc).replace("an upscaler is", "an aesthetic head is")) from None
    state = {k.removeprefix("layers."): v for k, v in state.items()}
    mlp = aesthetic_mlp()
    try:
        mlp.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise ModelError(f"{Path(path).name}: not an improved-aesthetic-predictor MLP "
                         f"(768->1024->128->64->16->1): {first}") from None
    return mlp.eval()


class ClipScorer:
    """The CLIP score of an image against a prompt."""

    def __init__(self, spec: ScorerSpec, device: str) -> None:
        self.ref, self.device = spec.ref, device
        self.model, self.processor = load_clip(spec.clip, device)

    def image_embedding(self, image):
        import torch

        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        with torch.no_grad():
            features = _features(self.model.get_image_features(**inputs)).float()
        return features / features.norm(dim=-1, keepdim=True)

    def text_embedding(self, prompt: str):
        import torch

        inputs = self.processor(text=[prompt], return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.no_grad():
            features = _features(self.model.get_text_features(**inputs)).float()
        return features / features.norm(dim=-1, keepdim=True)

    def score(self, image, prompt: str) -> float:
        cos = float((self.image_embedding(image) * self.text_embedding(prompt)).sum())
        return 100.0 * max(cos, 0.0)


class AestheticScorer:
    """The aesthetic MLP's rating of the image (the prompt plays no part)."""

    def __init__(self, spec: ScorerSpec, device: str) -> None:
        assert spec.head is not None
        self.ref = spec.ref
        self.head = read_aesthetic_head(spec.head).to(device)
        self.clip = ClipScorer(spec, device)
        width = self.clip.model.config.projection_dim
        if width != AESTHETIC_WIDTHS[0]:
            raise ModelError(f"{spec.ref}: the CLIP model's embeddings have {width} values; the aesthetic MLP "
                             f"reads {AESTHETIC_WIDTHS[0]} (a CLIP ViT-L/14)")

    def score(self, image, prompt: str) -> float:
        import torch

        with torch.no_grad():
            return float(self.head(self.clip.image_embedding(image).to(self.head[0].weight.dtype)))


def _features(out):
    # transformers 5 returns a model output from get_*_features; 4.x returned the tensor.
    return out if hasattr(out, "norm") else out.pooler_output


def load_clip(folder: Path, device: str):
    """transformers' CLIPModel and CLIPProcessor from a local folder, in eval mode."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(str(folder)).to(device).eval()
        processor = CLIPProcessor.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{folder} is not a CLIP model folder transformers can load: {first}") from None
    return model, processor


class ScorerCache:
    """Loaded scorers, kept for reuse across candidates and jobs (core.models.ModelCache
    holds one, as it holds the upscalers)."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[ScorerSpec, str], Scorer] = {}

    def get(self, spec: ScorerSpec, device: str) -> Scorer:
        key = (spec, device)
        if key not in self.loaded:
            self.loaded[key] = (ClipScorer if spec.kind == CLIP else AestheticScorer)(spec, device)
        return self.loaded[key]

    def clear(self) -> None:
        self.loaded.clear()
