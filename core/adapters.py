"""Adapters on a stage: LoRAs, a ControlNet and IP-Adapters.

What each file is, is read from its safetensors header (tensor names and metadata) and
its config, without loading weights, so a LoRA or ControlNet made for another family is
refused before anything loads. What diffusers supports for a family, the family says
(core.families). Applying them to a cached pipeline is a context manager like every other
patch (core.stage_run.patched): LoRAs stay loaded for fast re-runs but are active only
inside the stage that asked for them, so they never leak into a stage that shares the
UNet, transformer or text encoders through from_pipe; IP-Adapters are unloaded again.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from core import families
from core.checkpoints import read_header
from core.errors import ModelError, ReadError
from core.families import CONTROLNET, IP_ADAPTER, LORA, Family
from core.model_configs import read_config
from core.project import ControlNet, IPAdapter, Lora, Stage

HUB_FILE_SUFFIX = ".safetensors"


# ---------------------------------------------------------------- where the files are


def _hub_file(ref: str, fetch: bool = True) -> Path | None:
    """owner/repo[/sub/dirs]/file.safetensors from the Hub (the cache first; only the cache
    without `fetch`)."""
    from core.models import explain_hub_error, offline

    if not is_hub_file(ref):
        return None
    parts = ref.split("/")
    from huggingface_hub import hf_hub_download

    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=offline() or not fetch))
    except Exception as exc:  # huggingface_hub's own errors, explained
        raise ModelError(explain_hub_error(f"{repo}/{filename}", exc)) from exc


def is_hub_file(ref: str) -> bool:
    """Whether a reference has the shape owner/repo[/sub/dirs]/file.safetensors (no file access)."""
    from core.models import HUB_ID

    parts = ref.split("/")
    return not (ref.startswith((".", "/", "~")) or "\\" in ref or len(parts) < 3
                or not parts[-1].endswith(HUB_FILE_SUFFIX) or not HUB_ID.match("/".join(parts[:2])))


def adapter_file(ref: str, what: str, fetch: bool = True) -> Path:
    """The .safetensors file an adapter reference names: a file, a folder holding exactly
    one, a builtin demo adapter, or owner/repo/path/file.safetensors on the Hub (without
    `fetch`, only one already in the Hugging Face cache)."""
    text = (ref or "").strip()
    if text.startswith("builtin:"):
        from core import demo

        # A shipped folder (the ControlNet's) is read as any folder is: its one weights file.
        path = demo.adapter_path(text.split(":", 1)[1])
    else:
        path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise ModelError(f"{what} folder {path} holds {len(found)} .safetensors files; name the one to use")
        return found[0]
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise ModelError(f"{what} {path.name}: only .safetensors files are loaded (pickled files can run code)")
        return path
    hub = _hub_file(text, fetch)
    if hub is not None:
        return hub
    raise ModelError(f"{what} not found: '{text}' is not a .safetensors file, a folder or owner/repo/file.safetensors")


# ---------------------------------------------------------------- what a LoRA is


@dataclass(frozen=True)
class LoraInfo:
    path: Path
    family: Family | None  # None: the header does not tell
    tensors: int
    note: str = ""


def lora_info(path: Path) -> LoraInfo:
    """A LoRA's family, from its metadata (kohya's ss_base_model_version, modelspec's
    architecture) or its tensor names and shapes; raises ModelError for a file that is not
    a readable LoRA."""
    try:
        header, meta = read_header(path)
    except ValueError as exc:  # ReadError: one line saying which field of the header
        raise ModelError(f"LoRA {path}: {exc}") from exc
    names = set(header)
    if not any(("lora" in k.lower() or "lokr" in k.lower() or "hada" in k.lower()) for k in names):
        raise ModelError(f"LoRA {path} holds no LoRA tensors (lora_A/lora_B, lora_down/lora_up): "
                         "it may be a checkpoint or another kind of file")
    view = families.LoraView(names, {k: v.get("shape", []) for k, v in header.items() if isinstance(v, dict)}, meta)
    fam = families.family_of_lora(view)
    note = "" if fam else "its family cannot be told from the file: diffusers decides when it loads"
    return LoraInfo(Path(path), fam, len(names), note)


def check_lora(lora: Lora, family: Family, where: str, fetch: bool = True) -> Path:
    """The LoRA's file, or a ModelError saying why it cannot go on this stage (without
    `fetch`, a Hub file must already be in the Hugging Face cache)."""
    if not family.supports(LORA):
        raise ModelError(f"{where}: diffusers has no LoRA loader for {family.title}")
    path = adapter_file(lora.ref, "LoRA", fetch)
    info = lora_info(path)
    if info.family is not None and not info.family.shares_loras_with(family):
        raise ModelError(f"{where}: LoRA {path.name} is made for {info.family.title}, not {family.title}")
    return path


def _adapter_name(path: Path) -> str:
    """A name for a loaded LoRA that changes when the file does (so an edited file reloads,
    even one rewritten in place with its mtime set back)."""
    from core.models import file_state

    return "lora_" + hashlib.sha256(f"{path.resolve()}|{file_state(path)}".encode()).hexdigest()[:12]


def _loaded_names(pipe) -> set[str]:
    try:
        return {n for names in pipe.get_list_adapters().values() for n in names}
    except (AttributeError, ValueError):
        return set()


@contextlib.contextmanager
def loras_active(pipe, loras: list[Lora], family: Family, where: str) -> Iterator[None]:
    """The stage's LoRAs, at their weights, for the length of the stage. Files already
    loaded on this pipeline (by an earlier job) are not loaded again; on the way out every
    LoRA layer is disabled, so stages that share modules see none of them."""
    if not loras:
        yield
        return
    names = []
    for lora in loras:
        path = check_lora(lora, family, where)
        name = _adapter_name(path)
        if name not in _loaded_names(pipe):
            try:
                pipe.load_lora_weights(str(path), adapter_name=name)
            except Exception as exc:  # diffusers and peft raise many kinds here
                if "not found in the base model" in str(exc):  # peft: none of its target modules exist
                    raise ModelError(f"{where}: LoRA {path.name} matches none of {family.title}'s layers "
                                     "(it was made for another model)") from exc
                raise ModelError(f"{where}: LoRA {path.name} could not be loaded ({_first_line(exc)})") from exc
            if name not in _loaded_names(pipe):
                raise ModelError(f"{where}: LoRA {path.name} matches none of {family.title}'s layers")
        names.append(name)
    try:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
        yield
    finally:
        pipe.disable_lora()


# ---------------------------------------------------------------- ControlNet


def controlnet_folder(ref: str, fetch: bool = True) -> Path:
    """The diffusers folder a ControlNet reference names (a Hub id's snapshot: only one
    already in the cache without `fetch`)."""
    from core.models import parse_ref

    parsed = parse_ref(ref) if not ref.startswith("builtin:") else None
    if parsed is None:
        from core import demo

        return demo.adapter_path(ref.split(":", 1)[1])
    if parsed.kind == "folder":
        return Path(parsed.location)
    if parsed.kind == "hub":
        return _controlnet_snapshot(parsed.location, fetch)
    raise ModelError(f"ControlNet {Path(ref).name}: give its diffusers folder (config.json and weights); "
                     "a single .safetensors ControlNet needs its config beside it")


def controlnet_config(ref: str, fetch: bool = True) -> tuple[Path, dict]:
    """(the model's folder or file, its config) for a ControlNet reference."""
    folder = controlnet_folder(ref, fetch)
    try:
        config = read_config(folder / "config.json")
    except ReadError as exc:
        raise ModelError(f"ControlNet {folder}: {exc}") from None
    return folder, config


def _controlnet_snapshot(repo_id: str, fetch: bool = True) -> Path:
    from huggingface_hub import snapshot_download

    from core.models import explain_hub_error, offline

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"],
                                      local_files_only=offline() or not fetch))
    except Exception as exc:
        raise ModelError(explain_hub_error(repo_id, exc)) from exc


def check_controlnet(cn: ControlNet, family: Family, where: str, fetch: bool = True) -> tuple[Path, str, str]:
    """(folder, ControlNet model class, ControlNet pipeline class) for a stage, or a
    ModelError saying why this ControlNet cannot condition this family (without `fetch`,
    a Hub id must already be in the Hugging Face cache)."""
    if not family.supports(CONTROLNET):
        raise ModelError(f"{where}: diffusers has no ControlNet pipeline for {family.title}")
    folder, config = controlnet_config(cn.model, fetch)
    cls = config.get("_class_name")
    made_for = families.family_of_controlnet(config)
    if made_for is None:
        raise ModelError(f"{where}: ControlNet {folder.name} ({cls or 'no class'}) is not one Handoff knows")
    if made_for != family:
        raise ModelError(f"{where}: ControlNet {folder.name} is made for {made_for.title}, not {family.title}")
    return folder, cls, family.controlnet_pipeline(cls)


def control_map(cn: ControlNet, size: tuple[int, int]):
    """The image the ControlNet sees, at the stage's size: Canny edges of the control image
    (white on black, 3 channels), or the image itself for a ready edge or depth map."""
    from PIL import Image

    from core.images import open_image

    image = open_image(Path(cn.image), "control image").convert("RGB").resize(size, Image.LANCZOS)
    if cn.preprocessor == "none":
        return image
    import cv2
    import numpy as np

    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, int(cn.low), int(cn.high))
    return Image.fromarray(np.stack([edges] * 3, axis=-1), "RGB")


# ---------------------------------------------------------------- IP-Adapter


def ip_adapter_files(ip: IPAdapter, fetch: bool = True) -> tuple[Path, Path]:
    """(the adapter's weights, its image encoder folder); without `fetch`, only files
    already here or in the Hugging Face cache."""
    weights = adapter_file(ip.model, "IP-Adapter", fetch)
    if ip.image_encoder:
        encoder = Path(ip.image_encoder).expanduser()
    else:
        encoder = weights.parent / "image_encoder"
        if fetch and not (encoder / "config.json").is_file() and _hub_file(ip.model) is not None:
            _fetch_hub_encoder(ip.model)  # the repo keeps it beside the weights: fetch that folder too
    if not (encoder / "config.json").is_file():
        raise ModelError(f"IP-Adapter {weights.name}: its image encoder is not at {encoder} (a folder with "
                         "config.json and weights, as the adapter's repo keeps it in image_encoder/)")
    return weights, encoder


def _fetch_hub_encoder(ref: str) -> None:
    from huggingface_hub import snapshot_download

    from core.models import explain_hub_error, offline

    parts = ref.split("/")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:-1])
    prefix = f"{sub}/image_encoder" if sub else "image_encoder"
    try:
        snapshot_download(repo, allow_patterns=[f"{prefix}/*.json", f"{prefix}/*.safetensors"],
                          local_files_only=offline())
    except Exception as exc:
        raise ModelError(explain_hub_error(f"{repo}/{prefix}", exc)) from exc


def _ip_state_dict(path: Path) -> dict:
    from safetensors import safe_open

    state = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():
            part, _, rest = key.partition(".")
            if part in state:
                state[part][rest] = f.get_tensor(key)
    if not state["image_proj"] or not state["ip_adapter"]:
        raise ModelError(f"IP-Adapter {path.name} lacks its image_proj.* or ip_adapter.* tensors")
    return state


@contextlib.contextmanager
def ip_adapters_loaded(pipe, ips: list[IPAdapter], family: Family, where: str) -> Iterator[None]:
    """The stage's IP-Adapters, loaded from their safetensors (never a pickle) with their
    image encoder, at their scales; unloaded on the way out."""
    if not ips:
        yield
        return
    if not family.supports(IP_ADAPTER):
        raise ModelError(f"{where}: diffusers has no IP-Adapter loader for {family.title}")
    files = [ip_adapter_files(ip) for ip in ips]
    encoders = {e for _, e in files}
    if len(encoders) > 1:
        raise ModelError(f"{where}: the IP-Adapters use different image encoders; use one")
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    encoder_dir = encoders.pop()
    encoder = CLIPVisionModelWithProjection.from_pretrained(str(encoder_dir), dtype=pipe.dtype).to(pipe.device)
    size = encoder.config.image_size
    before = {name: getattr(pipe, name, None) for name in ("image_encoder", "feature_extractor")}
    pipe.register_modules(image_encoder=encoder,
                          feature_extractor=before["feature_extractor"] or CLIPImageProcessor(size=size, crop_size=size))
    try:
        try:
            pipe.load_ip_adapter([_ip_state_dict(w) for w, _ in files], subfolder=[""] * len(files),
                                 weight_name=[w.name for w, _ in files], image_encoder_folder=None)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{where}: the IP-Adapter does not fit {family.title}'s model ({_first_line(exc)})") from exc
        pipe.set_ip_adapter_scale([ip.scale for ip in ips])
        yield
    finally:
        if getattr(pipe.unet if hasattr(pipe, "unet") else pipe.transformer, "encoder_hid_proj", None) is not None:
            pipe.unload_ip_adapter()
        pipe.register_modules(**before)


def reference_images(ips: list[IPAdapter]) -> list:
    from core.images import open_image

    return [open_image(Path(ip.image), "IP-Adapter reference image").convert("RGB") for ip in ips]


# ---------------------------------------------------------------- before the job


def check_stage(stage: Stage, family: Family, where: str) -> None:
    """Every adapter of a stage checked from its files' headers and configs: raises
    ModelError before any stage of the job runs."""
    for lora in stage.loras:
        check_lora(lora, family, where)
    if stage.controlnet is not None:
        check_controlnet(stage.controlnet, family, where)
    for ip in stage.ip_adapters:
        if not family.supports(IP_ADAPTER):
            raise ModelError(f"{where}: diffusers has no IP-Adapter loader for {family.title}")
        ip_adapter_files(ip)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
