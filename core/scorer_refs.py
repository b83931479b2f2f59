"""Scorer references (`clip:…`, `aesthetic:…[@clip ref]`) made local, checked before any
image is generated: a bad reference is refused with one line (ModelError)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from core.errors import ModelError
from core.scorers import AESTHETIC, CLIP, KINDS, ScorerSpec

# The CLIP the aesthetic predictor was trained over; looked for in the Hugging Face cache
# and the model library's folders.
CLIP_L14_IDS = ("openai/clip-vit-large-patch14",)
CLIP_FILES = ["*.json", "*.txt", "*.safetensors"]


def resolve_scorer(ref: str, cancel: threading.Event | None = None) -> ScorerSpec:
    """The local files a scorer reference names; raises ModelError, one line."""
    text = (ref or "").strip()
    if text.startswith("builtin:"):
        from core import demo

        if text != demo.SCORER:
            raise ModelError(f"scorer '{text}' is not a builtin one (builtin scorers: {demo.SCORER})")
        return ScorerSpec(text, CLIP, demo.extra_path("demo-scorer").resolve())
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS or not rest.strip():
        raise ModelError(f"scorer '{text}' is not one Handoff knows: use clip:<CLIP folder or Hub id> "
                         "or aesthetic:<file>[@<CLIP ref>] or builtin:demo-scorer")
    rest = rest.strip()
    if kind == CLIP:
        return ScorerSpec(text, CLIP, clip_folder(rest, cancel))
    head, _, clip = rest.partition("@")
    path = Path(head).expanduser()
    if not path.is_file():
        raise ModelError(f"scorer {text}: aesthetic head file not found: {head}")
    if path.suffix.lower() not in (".pth", ".pt", ".safetensors"):
        raise ModelError(f"scorer {text}: the aesthetic head is a .pth or .safetensors file")
    folder = clip_folder(clip.strip(), cancel) if clip.strip() else find_clip_l14()
    if folder is None:
        raise ModelError(f"scorer {text}: no CLIP ViT-L/14 found in the library or the Hugging Face cache; "
                         f"name one as aesthetic:{head}@<CLIP folder or Hub id>")
    return ScorerSpec(text, AESTHETIC, folder, path.resolve())


def clip_folder(ref: str, cancel: threading.Event | None = None) -> Path:
    """A CLIP model's folder: a local one, or a Hub id from the cache (downloaded when online)."""
    from core.models import HUB_ID

    path = Path(ref).expanduser()
    if path.is_dir():
        if not is_clip_folder(path):
            raise ModelError(f"{ref} is not a CLIP model folder (its config.json names no model_type 'clip')")
        return path.resolve()
    if path.exists() or not HUB_ID.match(ref) or ref.startswith((".", "/", "~")):
        raise ModelError(f"CLIP model not found: '{ref}' is not a local folder or a Hub id (owner/name)")
    return _hub_clip(ref, cancel)


def _hub_clip(repo_id: str, cancel: threading.Event | None) -> Path:
    from huggingface_hub import snapshot_download

    from core.models import explain_hub_error, offline, offline_message

    try:
        return Path(snapshot_download(repo_id, allow_patterns=CLIP_FILES, local_files_only=True))
    except Exception as cached_exc:
        if offline():
            raise ModelError(offline_message(repo_id)) from cached_exc
    if cancel is not None and cancel.is_set():
        from core.errors import Cancelled

        raise Cancelled()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=CLIP_FILES))
    except Exception as exc:
        raise ModelError(explain_hub_error(repo_id, exc)) from exc


def is_clip_folder(folder: Path, l14: bool = False) -> bool:
    """Whether `folder` holds a transformers CLIPModel (with `l14`: a ViT-L/14, whose
    embeddings the aesthetic MLP reads)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or config.get("model_type") != "clip":
        return False
    if not l14:
        return True
    vision = config.get("vision_config") or {}
    return config.get("projection_dim") == 768 and vision.get("patch_size") == 14


def find_clip_l14() -> Path | None:
    """A CLIP ViT-L/14 on this machine: the known Hub id in the cache, else a folder of
    the model library's ComfyUI or A1111 folders (their clip_vision/ and clip/ first), else
    any cached repo (the library's Hub models included) whose config is one."""
    from huggingface_hub import try_to_load_from_cache

    for repo_id in CLIP_L14_IDS:
        try:
            found = try_to_load_from_cache(repo_id, "config.json")
        except Exception:  # a malformed cache: not found
            found = None
        if isinstance(found, str) and is_clip_folder(Path(found).parent, l14=True):
            return Path(found).parent
    from core.model_library import cached_repos, clip_folder_candidates

    for folder in clip_folder_candidates():
        if is_clip_folder(folder, l14=True):
            return folder.resolve()
    for repo in cached_repos():
        for rev in repo.revisions:
            if is_clip_folder(rev.snapshot_path, l14=True):
                return Path(rev.snapshot_path)
    return None


def score_files(ref: str, prompt: str, paths: list[Path], cache=None) -> list[float]:
    """Each image's score, in the order given. Raises ModelError for a bad scorer and
    ReadError for an image that cannot be read (checked before the scorer loads)."""
    from core.devices import best_device
    from core.images import read_image
    from core.scorers import ScorerCache

    spec = resolve_scorer(ref)
    images = [read_image(Path(p), str(p)) for p in paths]
    scorer = (cache or ScorerCache()).get(spec, best_device())
    return [scorer.score(image, prompt) for image in images]
