"""The models the user keeps: a list of named references (a Hub id, a local diffusers
folder, a single .safetensors file) with the family each one is, the chain positions it
can take, and where it came from (a preset, the user, a ComfyUI models folder, the
Hugging Face cache).

Everything here is read from metadata only: a folder's model_index.json, a checkpoint's
safetensors header (its tensor names), the Hugging Face cache's folder layout. No weights
are read and neither torch nor diffusers is imported, so the window can call it on its
own thread. The list lives in core.paths.settings_file() under the "models" key, beside
whatever else that file holds.
"""
from __future__ import annotations

import threading
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from core import checked, families, settings_file
from core.checkpoints import DENOISER, PIPELINE
from core.errors import ReadError
from core.model_configs import read_config, read_model_index
from core.model_info import ModelInfo, describe_folder, info_for

SOURCES = {
    "builtin": "built in",
    "preset": "preset",
    "user": "added by you",
    "comfyui": "ComfyUI folder",
    "a1111": "Automatic1111 folder",
    "invokeai": "InvokeAI folder",
    "hf-cache": "Hugging Face cache",
}
# What an entry is: a whole pipeline (loads on its own) or a denoiser only (a ComfyUI
# diffusion_models/unet file: the transformer or UNet without its VAE and text encoders).
SCHEMA_VERSION = 1
# city96's GGUF-quantized denoisers (ComfyUI-GGUF keeps them in models/unet or diffusion_models).
GGUF_SUFFIX = ".gguf"


@dataclass
class LibraryEntry:
    name: str
    ref: str  # what a stage's model field takes: Hub id, folder path or .safetensors path
    source: str  # a key of SOURCES
    family: str | None = None  # a core.families key; None when it is not known (yet)
    kind: str = PIPELINE
    note: str = ""  # why the family is unknown, or what the entry needs before it can be used
    quant: str = ""  # a denoiser file's weight type from its header: Q8_0, Q4_K... (GGUF), fp8, bf16

    @property
    def usable(self) -> bool:
        """Whether a stage can take this as its model as it is."""
        return self.kind == UPSCALER_KIND or self.kind == PIPELINE and (self.family is not None or self.ref_kind == "hub")

    @property
    def ref_kind(self) -> str:
        """'builtin', 'hub', 'folder' or 'file', from the reference's shape (no file access)."""
        if self.ref.startswith("builtin:"):
            return "builtin"
        if self.ref.lower().endswith((".safetensors", ".pth", GGUF_SUFFIX)):
            return "file"
        if self.ref.startswith(("/", "~", ".")) or "\\" in self.ref or (len(self.ref) > 1 and self.ref[1] == ":"):
            return "folder"
        return "hub" if self.ref.count("/") == 1 else "folder"

    @property
    def family_title(self) -> str:
        fam = families.get(self.family)
        return fam.title if fam else "unknown"

    @property
    def positions(self) -> str:
        """'base and refine', 'base', 'refine', or why none; for an adapter, what it goes on."""
        if self.kind == UPSCALER_KIND:
            return "an upscale stage, or a refine's upscaler"
        if self.kind not in (PIPELINE, DENOISER):
            return f"an adapter ({self.kind}) for {self.family_title} stages"
        return ModelInfo(0, 0, self.family, self.kind).positions()

    @classmethod
    def of(cls, name: str, ref: str, source: str, info: ModelInfo) -> "LibraryEntry":
        return cls(name, ref, source, info.family, info.kind, info.note)

    def to_dict(self) -> dict:
        return asdict(self)

    def listed_kind(self) -> str:
        """What `library list` calls it: checkpoint, gguf, lora, controlnet, upscaler, or the
        adapter kind (ip-adapter, clip-vision)."""
        if self.ref.lower().endswith(GGUF_SUFFIX):
            return "gguf"
        return "checkpoint" if self.kind in (PIPELINE, DENOISER) else self.kind

    @classmethod
    def from_dict(cls, data, where: str = "entry") -> "LibraryEntry":
        """An entry from the settings file; ReadError naming the field when it is not one.
        A family this version does not know (a newer Handoff's) reads as unknown."""
        data = checked.table(data, where)
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        if missing:
            raise ReadError(f"{where}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
        text = {f.name: checked.text(data.get(f.name, f.default), f"{where}: {f.name}")
                for f in fields(cls) if f.name != "family"}
        if not text["ref"].strip():
            raise ReadError(f"{where}: ref is empty")
        if text["source"] not in SOURCES:
            raise ReadError(f"{where}: source {checked.shown(text['source'])} is not one of {checked.names(SOURCES)}")
        family = data.get("family")
        return cls(**text, family=family if isinstance(family, str) and families.get(family) else None)


# ---------------------------------------------------------------- what a reference is


def denoiser_note(info: ModelInfo) -> str:
    """What to say of a file in ComfyUI's diffusion_models/ or unet/ folders."""
    if info.family is None and "LoRAs" in info.note:
        return ("a transformer/UNet-only file of a family Handoff cannot tell from its tensor names; "
                "it needs a base pipeline (VAE and text encoders) and cannot be a stage's model on its own")
    if info.family is not None and info.kind == PIPELINE:
        return f"a whole {info.fam.title} model kept among the denoiser-only files"
    return info.note


# ---------------------------------------------------------------- the Hugging Face cache


def cached_snapshot(repo_id: str) -> Path | None:
    """The cached folder of a Hub diffusers model when every component model_index.json
    names is there (so it loads with no network); None otherwise. Reads the cache's
    folder layout only."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, "model_index.json")
    except Exception:  # a malformed id, an unreadable cache: not cached
        return None
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    return folder if complete_snapshot(folder) else None


def _cached_file(repo_id: str, filename: str = "config.json") -> Path | None:
    """A file of a Hub repo in the local cache (a ControlNet's config.json, a LoRA file), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # a malformed id, an unreadable cache: not cached
        return None
    return Path(found) if isinstance(found, str) else None


def complete_snapshot(folder: Path) -> bool:
    """Whether a diffusers folder has every component its model_index.json names, and
    weights in each weight component."""
    try:
        index = read_model_index(folder)
    except ReadError:
        return False
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or not value or value[0] is None:
            continue
        sub = folder / name
        if not sub.is_dir():
            return False
        if name in ("unet", "transformer", "vae") or name.startswith("text_encoder"):
            if not any(p.suffix in (".safetensors", ".bin") for p in sub.iterdir()):
                return False
    return True


@dataclass
class CachedModel:
    repo_id: str
    folder: Path
    family: str | None
    size_bytes: int
    complete: bool
    note: str = ""


def cached_repos(cache_dir: Path | str | None = None) -> list:
    """The Hugging Face cache's repos (huggingface_hub.scan_cache_dir: folder layout and
    sizes, no file read), by name; none when there is no cache."""
    try:
        from huggingface_hub import constants, scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return []
    try:
        # constants.HF_HUB_CACHE read now (scan_cache_dir's own default is bound at import).
        info = scan_cache_dir(cache_dir or constants.HF_HUB_CACHE)
    except (CacheNotFound, OSError, ValueError):
        return []
    return sorted(info.repos, key=lambda r: r.repo_id.lower())


def cached_hub_models(cache_dir: Path | str | None = None) -> list[CachedModel]:
    """The diffusers models in the Hugging Face cache (those with a model_index.json), so
    the user sees what loads offline. Uses huggingface_hub.scan_cache_dir, which reads the
    folder layout and file sizes, not the files."""
    out: list[CachedModel] = []
    for repo in cached_repos(cache_dir):
        if repo.repo_type != "model":
            continue
        revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        # The revision "main" points at, else the newest one with a model_index.json.
        main = [r for r in revisions if "main" in r.refs]
        for rev in main + [r for r in revisions if r not in main]:
            if any(f.file_name == "model_index.json" and f.file_path.parent == rev.snapshot_path for f in rev.files):
                info = describe_folder(rev.snapshot_path)
                family, note = info.family, info.note
                complete = complete_snapshot(rev.snapshot_path)
                if not complete:
                    note = (note + "; " if note else "") + "partly downloaded: it needs the network once more"
                out.append(CachedModel(repo.repo_id, rev.snapshot_path, family, repo.size_on_disk, complete, note))
                break
    return out


# ---------------------------------------------------------------- ComfyUI


# Kinds of adapter entry, and of model upscaler entry (core.upscalers).
LORA_KIND, CONTROLNET_KIND, IP_ADAPTER_KIND, CLIP_VISION_KIND = "lora", "controlnet", "ip-adapter", "clip-vision"
UPSCALER_KIND = "upscaler"
# What else Handoff reads in a ComfyUI models/ subfolder: whole-model files, diffusers
# folders, and folders it only searches (lists nothing from) for a scorer's CLIP.
CHECKPOINT_FILES, DIFFUSERS_FOLDERS, CLIP_FOLDERS = "checkpoint files", "diffusers folders", "CLIP folders"
# Every ComfyUI models/ subfolder Handoff reads, with what it reads there. Any one of them
# makes a folder ComfyUI's: a fresh install has them all, empty, but a folder kept apart
# (extra_model_paths.yaml) may hold only one, clip_vision/ or upscale_models/ say.
COMFYUI_SUBFOLDERS: dict[str, str] = {
    "checkpoints": CHECKPOINT_FILES,
    "diffusers": DIFFUSERS_FOLDERS,
    "diffusion_models": DENOISER,
    "unet": DENOISER,  # diffusion_models/' older name
    "loras": LORA_KIND,
    "controlnet": CONTROLNET_KIND,
    "ipadapter": IP_ADAPTER_KIND,
    "clip_vision": CLIP_VISION_KIND,  # searched for a scorer's CLIP too, first
    "clip": CLIP_FOLDERS,
    "text_encoders": CLIP_FOLDERS,  # clip/'s newer name
    "upscale_models": UPSCALER_KIND,
}
COMFYUI_FOLDERS = tuple(COMFYUI_SUBFOLDERS)
ADAPTER_FOLDERS = {kind: tuple(s for s, read in COMFYUI_SUBFOLDERS.items() if read == kind)
                   for kind in (LORA_KIND, CONTROLNET_KIND, IP_ADAPTER_KIND, CLIP_VISION_KIND)}


def comfyui_subfolders(*reads: str) -> tuple[str, ...]:
    """The ComfyUI models/ subfolders where Handoff reads any of `reads`, in table order."""
    return tuple(sub for sub, read in COMFYUI_SUBFOLDERS.items() if read in reads)


def _holds_comfyui_folder(root: Path) -> bool:
    return any((root / sub).is_dir() for sub in COMFYUI_FOLDERS)


def scan_comfyui(models_dir: Path | str) -> list[LibraryEntry]:
    """The models in a ComfyUI `models` folder (or ComfyUI's own folder, which holds one),
    read as COMFYUI_SUBFOLDERS says: checkpoints/*.safetensors (whole models),
    diffusion_models/ and unet/*.safetensors (denoiser-only files: listed, but marked as
    needing a base pipeline), diffusers/*/ folders, adapters and upscalers. Subfolders are
    searched too, as ComfyUI does."""
    root = Path(models_dir).expanduser()
    if not _holds_comfyui_folder(root) and (root / "models").is_dir():
        root = root / "models"
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    if not _holds_comfyui_folder(root):
        raise FileNotFoundError(f"{root} holds none of ComfyUI's model folders ({', '.join(COMFYUI_FOLDERS)})")
    root = root.resolve()
    entries: list[LibraryEntry] = []
    for sub in comfyui_subfolders(CHECKPOINT_FILES):
        entries += [LibraryEntry.of(path.stem, str(path), "comfyui", info_for(str(path))) for path in _files(root / sub)]
    for sub in comfyui_subfolders(DENOISER):
        for path in _files(root / sub):
            info = info_for(str(path))
            entries.append(LibraryEntry(path.stem, str(path), "comfyui", info.family,
                                        info.kind if info.family else DENOISER, denoiser_note(info)))
        entries += gguf_entries(root / sub, "comfyui")
    entries += scan_adapters(root)
    entries += scan_upscalers(root, comfyui_subfolders(UPSCALER_KIND), "comfyui")
    for sub in comfyui_subfolders(DIFFUSERS_FOLDERS):
        entries += [LibraryEntry.of(index.parent.name, str(index.parent), "comfyui", describe_folder(index.parent))
                    for index in sorted((root / sub).glob("*/model_index.json"))]
    return entries


def adapter_entry(path: Path, kind: str, source: str = "comfyui") -> LibraryEntry:
    """An adapter's entry, its family read from its header or config (no weights load)."""
    from core.adapters import lora_info
    from core.errors import ModelError

    family, note = None, ""
    if kind == LORA_KIND:
        try:
            info = lora_info(path)
            family, note = (info.family.key if info.family else None), info.note
        except ModelError as exc:
            note = str(exc)
    elif kind == CONTROLNET_KIND:
        config = path / "config.json" if path.is_dir() else path.with_name("config.json")
        try:
            made_for = families.family_of_controlnet(read_config(config))
            family = made_for.key if made_for else None
            note = "" if made_for else "a ControlNet of a kind Handoff does not know"
        except (OSError, ValueError, AttributeError):
            note = ("a single-file ControlNet: Handoff loads diffusers ControlNet folders (config.json and weights)"
                    if path.is_file() else "no readable config.json")
    name = path.stem if path.is_file() else path.name
    return LibraryEntry(name, str(path), source, family, kind, note)


def scan_adapters(root: Path) -> list[LibraryEntry]:
    """LoRAs, ControlNets (files and diffusers folders), IP-Adapters and CLIP vision
    encoders in a ComfyUI models folder."""
    out: list[LibraryEntry] = []
    for kind, subs in ADAPTER_FOLDERS.items():
        for sub in subs:
            folder = root / sub
            # Weights inside a diffusers folder (beside its config.json) belong to that folder's entry.
            out += [adapter_entry(p, kind) for p in _files(folder)
                    if p.parent == folder or not (p.parent / "config.json").is_file()]
            if folder.is_dir() and kind in (CONTROLNET_KIND, CLIP_VISION_KIND):
                out += [adapter_entry(c.parent, kind) for c in sorted(folder.glob("*/config.json"))]
    return out


def cached_hub_adapters(cache_dir: Path | str | None = None) -> list[LibraryEntry]:
    """LoRAs and ControlNets in the Hugging Face cache: repos with a ControlNet config.json,
    and .safetensors files whose header holds LoRA tensors (owner/repo/file.safetensors)."""
    out: list[LibraryEntry] = []
    for repo in cached_repos(cache_dir):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        rev = max(repo.revisions, key=lambda r: r.last_modified)
        root_files = {f.file_name: f for f in rev.files if f.file_path.parent == rev.snapshot_path}
        if "model_index.json" in root_files:
            continue  # a pipeline: listed by cached_hub_models
        if "config.json" in root_files:
            entry = adapter_entry(rev.snapshot_path, CONTROLNET_KIND, "hf-cache")
            if entry.family is not None:
                out.append(LibraryEntry(repo.repo_id, repo.repo_id, "hf-cache", entry.family, CONTROLNET_KIND, ""))
                continue
        for name, f in sorted(root_files.items()):
            if name.endswith(".safetensors") and f.size_on_disk < 2**31:
                entry = adapter_entry(f.file_path, LORA_KIND, "hf-cache")
                if "holds no LoRA tensors" not in entry.note and "not a readable" not in entry.note:
                    out.append(LibraryEntry(f"{repo.repo_id}/{name}", f"{repo.repo_id}/{name}", "hf-cache",
                                            entry.family, LORA_KIND, entry.note))
    return out


def adapters_for(entries: list[LibraryEntry], kind: str, family: str | None) -> list[LibraryEntry]:
    """The library's adapters of a kind that fit a stage of `family` (all of the kind while
    the stage's family is unknown; an adapter whose family is unknown fits any stage)."""
    fam = families.get(family)
    out = []
    for e in entries:
        if e.kind != kind:
            continue
        made_for = families.get(e.family)
        if fam is None or made_for is None or (made_for.shares_loras_with(fam) if kind == LORA_KIND else made_for == fam):
            out.append(e)
    return out


# Model upscalers (core.upscalers): ComfyUI keeps them in models/upscale_models, A1111 and
# Forge in models/ESRGAN, RealESRGAN, SwinIR and DAT. Listed by folder, no weights read:
# their architecture is told (by spandrel, from the state dict) when a job plans them.
A1111_UPSCALER_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT")


def scan_upscalers(models_root: Path, folders: tuple[str, ...], source: str) -> list[LibraryEntry]:
    out = []
    for sub in folders:
        folder = models_root / sub
        if folder.is_dir():
            out += [LibraryEntry(p.stem, str(p), source, None, UPSCALER_KIND, "")
                    for p in sorted(folder.rglob("*"), key=lambda p: str(p).lower())
                    if p.is_file() and p.suffix.lower() in (".pth", ".safetensors")]
    return out


def upscalers(entries: list[LibraryEntry]) -> list[LibraryEntry]:
    """The library's upscaler entries (what a stage that upscales can take)."""
    return [e for e in entries if e.kind == UPSCALER_KIND]


def clip_folder_candidates() -> list[Path]:
    """Folders in the library that may be a transformers CLIP model (a folder with a
    config.json; the caller reads it): CLIP vision entries that are folders, then in each
    ComfyUI or A1111 folder added, its models' clip_vision/ and clip/ subfolders, then any
    other folder one or two levels below its models folder (A1111 has no CLIP folder of
    its own). Only folders are listed: nothing is loaded."""
    lib = ModelLibrary.load()
    out: list[Path] = [Path(e.ref) for e in lib.entries if e.kind == CLIP_VISION_KIND and Path(e.ref).is_dir()]
    for folder in map(Path, lib.folders):
        roots = [folder, folder / "models"] + ([folder.parent] if folder.name == "Stable-diffusion" else [])
        for root in (r for r in roots if r.is_dir()):
            first = [f"{sub}/*/config.json" for sub in comfyui_subfolders(CLIP_VISION_KIND, CLIP_FOLDERS)]
            for pattern in first + ["*/config.json", "*/*/config.json"]:
                out += [c.parent for c in sorted(root.glob(pattern))]
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- Automatic1111 / Forge


def scan_a1111(webui_dir: Path | str) -> list[LibraryEntry]:
    """The checkpoints of an Automatic1111 or Forge install: the .safetensors files under
    models/Stable-diffusion (in subfolders too, as A1111 lists them). `webui_dir` is the
    web UI's folder, its `models` folder, or `Stable-diffusion` itself."""
    root = Path(webui_dir).expanduser()
    for candidate in (root / "models" / "Stable-diffusion", root / "Stable-diffusion", root):
        if candidate.is_dir() and candidate.name == "Stable-diffusion":
            root = candidate
            break
    else:
        raise FileNotFoundError(f"{root} holds no models/Stable-diffusion folder")
    root = root.resolve()
    return ([LibraryEntry.of(p.stem, str(p), "a1111", info_for(str(p))) for p in _files(root)]
            + scan_upscalers(root.parent, A1111_UPSCALER_FOLDERS, "a1111"))


# ---------------------------------------------------------------- InvokeAI

# InvokeAI keeps models as models/<base>/<type>/<name> under its root (the folder holding
# invokeai.yaml): bases such as sd-1, sdxl, flux; types main, lora, controlnet...
INVOKEAI_BASES = ("any", "sd-1", "sd-2", "sd-3", "sdxl", "sdxl-refiner", "flux", "cogview4", "sana")
INVOKEAI_TYPES = {"lora": LORA_KIND, "controlnet": CONTROLNET_KIND, "ip_adapter": IP_ADAPTER_KIND,
                  "clip_vision": CLIP_VISION_KIND}


def _invokeai_models(folder: Path) -> Path | None:
    """InvokeAI's models folder in `folder` (its root, or the models folder itself)."""
    for root in (folder / "models", folder):
        if root.is_dir() and any((root / base).is_dir() for base in INVOKEAI_BASES) and (
                (root.parent / "invokeai.yaml").is_file() or (root / "invokeai.yaml").is_file()
                or any((root / base / "main").is_dir() for base in INVOKEAI_BASES)):
            return root
    return None


def scan_invokeai(invoke_dir: Path | str) -> list[LibraryEntry]:
    """The models of an InvokeAI install: main models (single files and diffusers
    folders), LoRAs, ControlNets, IP-Adapters, CLIP vision encoders and upscalers
    (spandrel_image_to_image), under models/<base>/<type>/."""
    root = _invokeai_models(Path(invoke_dir).expanduser())
    if root is None:
        raise FileNotFoundError(f"{invoke_dir} holds no InvokeAI models/<base>/<type> folders")
    root = root.resolve()
    entries: list[LibraryEntry] = []
    for base in sorted(p for p in root.iterdir() if p.is_dir() and p.name in INVOKEAI_BASES):
        main = base / "main"
        entries += [LibraryEntry.of(p.stem, str(p), "invokeai", info_for(str(p))) for p in _files(main)
                    if not (p.parent / "model_index.json").is_file() and not (p.parent.parent / "model_index.json").is_file()]
        if main.is_dir():
            entries += [LibraryEntry.of(i.parent.name, str(i.parent), "invokeai", describe_folder(i.parent))
                        for i in sorted(main.glob("*/model_index.json"))]
        entries += gguf_entries(main, "invokeai")
        for sub, kind in INVOKEAI_TYPES.items():
            folder = base / sub
            entries += [adapter_entry(p, kind, "invokeai") for p in _files(folder)
                        if not (p.parent / "config.json").is_file()]
            if folder.is_dir() and kind in (CONTROLNET_KIND, CLIP_VISION_KIND):
                entries += [adapter_entry(c.parent, kind, "invokeai") for c in sorted(folder.glob("*/config.json"))]
        entries += scan_upscalers(base, ("spandrel_image_to_image",), "invokeai")
    return entries


# ---------------------------------------------------------------- any of them

FOLDER_SCANS = {"comfyui": scan_comfyui, "a1111": scan_a1111, "invokeai": scan_invokeai}
FOLDER_SOURCES = tuple(FOLDER_SCANS)


def scan_models_folder(folder: Path | str) -> list[LibraryEntry]:
    """A ComfyUI models folder, an A1111/Forge install or an InvokeAI root, whichever
    `folder` is (an extra_model_paths setup can make one folder more than one)."""
    return scan_folder(folder)[1]


def scan_folder(folder: Path | str) -> tuple[list[str], list[LibraryEntry]]:
    """(the tools whose layout `folder` has, in FOLDER_SCANS order; its entries). Raises
    ModelError, one line, when it is not a folder or none of the three layouts."""
    from core.errors import ModelError

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ModelError(f"{folder} is not a folder")
    tools: list[str] = []
    unique: dict[str, LibraryEntry] = {}
    for tool, scan in FOLDER_SCANS.items():
        try:
            found = scan(path)
        except FileNotFoundError:
            continue
        tools.append(tool)
        for e in found:
            unique.setdefault(e.ref, e)  # a file two layouts list is one entry
    if not tools:
        raise ModelError(f"{folder} is not a ComfyUI models folder (one holding any of {', '.join(COMFYUI_FOLDERS)}), "
                         "an Automatic1111/Forge install or an InvokeAI root")
    return tools, list(unique.values())


def _under(ref: str, folder: Path) -> bool:
    try:
        return Path(ref).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def gguf_entries(folder: Path, source: str) -> list[LibraryEntry]:
    """The GGUF denoiser files in `folder`, each with its family and quant type (gguf_entry)."""
    return [gguf_entry(p, source) for p in _files(folder, GGUF_SUFFIX)]


def _files(folder: Path, suffix: str = ".safetensors") -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.rglob("*" + suffix) if p.is_file()), key=lambda p: str(p).lower())


def gguf_entry(path: Path, source: str = "comfyui") -> LibraryEntry:
    """A GGUF transformer/UNet (city96's layout), its family and quant type from its header."""
    from core.denoisers import describe_denoiser

    try:
        info = describe_denoiser(path)
    except ReadError as exc:
        return LibraryEntry(path.stem, str(path), source, None, DENOISER, str(exc))
    if info.family is None:
        return LibraryEntry(path.stem, str(path), source, None, DENOISER,
                            f"a GGUF whose tensor names match no family Handoff knows ({info.quant})", info.quant)
    return LibraryEntry(path.stem, str(path), source, info.family, DENOISER,
                        f"a {families.get(info.family).title} transformer/UNet, GGUF {info.quant}: a stage's "
                        "transformer file, over a model of its family", info.quant)


# ---------------------------------------------------------------- entries from references


_PRESET_MODELS: list[tuple[str, str, str | None]] = []  # (name, ref, family), built once


def preset_entries() -> list[LibraryEntry]:
    """Every Hub model the presets use, with the family the preset declares for it."""
    if not _PRESET_MODELS:
        from core.presets import PRESETS

        seen: set[str] = set()
        for p in PRESETS.values():
            for stage, family in zip(p.project().stages, p.families):
                ref = stage.model
                if ref and not ref.startswith("builtin:") and ref not in seen:
                    seen.add(ref)
                    _PRESET_MODELS.append((stage.name or ref, ref, family or None))
    return [LibraryEntry(name, ref, "preset", family) for name, ref, family in _PRESET_MODELS]


# The demo's shipped adapters, listed by their builtin reference (what a stage stores, so a
# project names them the same on every machine): name -> (library kind, reference).
BUILTIN_ADAPTERS = {"demo-lora": (LORA_KIND, "builtin:demo-lora"),
                    "demo-controlnet": (CONTROLNET_KIND, "builtin:demo-controlnet")}


def builtin_entries() -> list[LibraryEntry]:
    """The demo models, adapters and upscaler that ship with Handoff: always listed,
    always offline-ready (those a checkout lacks the trained files of are left out)."""
    from core import demo

    base = info_for(demo.BASE).family
    entries = [LibraryEntry("demo base", demo.BASE, "builtin", base),
               LibraryEntry("demo refiner", demo.REFINER, "builtin", info_for(demo.REFINER).family)]
    for name, (kind, ref) in BUILTIN_ADAPTERS.items():
        if (demo.DEMO_DIR / demo.ADAPTERS[name]).exists():
            # Trained on the demo base: its family, though the LoRA's header does not say it.
            entries.append(LibraryEntry(name.replace("-", " "), ref, "builtin", base, kind, ""))
    if (demo.DEMO_DIR / demo.EXTRAS["demo-upscaler"]).is_file():  # (a checkout may lack the trained file)
        entries.append(LibraryEntry("demo upscaler", demo.UPSCALER, "builtin", None, UPSCALER_KIND, ""))
    return entries


_sizes: dict[str, int | None] = {}  # Hub id -> bytes a download fetches, once asked
_sizes_lock = threading.Lock()


def known_download_size(repo_id: str) -> int | None:
    """What hub_download_size found for `repo_id` this session (None: not asked or unknown)."""
    with _sizes_lock:
        return _sizes.get(repo_id)


_OTHER_WEIGHTS = (".bin", ".ckpt", ".msgpack", ".onnx", ".onnx_data", ".pb", ".h5", ".pt", ".pth")


def download_files(files: dict[str, int]) -> dict[str, int]:
    """Of a repo's files (name -> bytes), those a pipeline download fetches, about as
    DiffusionPipeline.download chooses them without importing diffusers: the component
    folders' files and the top-level configs (not a top-level single-file checkpoint),
    safetensors rather than other weight formats, the plain weights rather than fp16
    variants."""
    names = set(files)
    out = {}
    for name, size in files.items():
        folder, _, base = name.rpartition("/")
        if not folder and not base.endswith((".json", ".txt")):
            continue
        if base.endswith(_OTHER_WEIGHTS) and any(n.startswith(f"{folder}/") and n.endswith(".safetensors") for n in names):
            continue
        plain = base.replace(".fp16.", ".").replace(".bf16.", ".")
        if plain != base and f"{folder}/{plain}" in names:
            continue
        out[name] = size
    return out


def hub_download_size(repo_id: str) -> int | None:
    """The bytes of `repo_id`'s files on the Hub (huggingface_hub's model_info with
    files_metadata); None when offline or the Hub cannot say. A network call: run it off
    the GUI thread. Remembered for the session."""
    with _sizes_lock:
        if repo_id in _sizes:
            return _sizes[repo_id]
    from core.models import offline

    if offline():
        return None
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, files_metadata=True)
        files = {s.rfilename: s.size for s in (info.siblings or []) if getattr(s, "size", None)}
        total = sum(download_files(files).values()) if files else None
    except Exception:  # no network, no such repo, a gated one: the size is just not known
        return None
    with _sizes_lock:
        _sizes[repo_id] = total
    return total


def entry_for(ref: str, source: str = "user", name: str | None = None) -> LibraryEntry:
    """A library entry for a reference the user gives, described from its files (a family
    it cannot tell is kept, with the reason in `note`). Raises core.errors.ModelError when
    the reference names nothing: no such file, folder or Hub id shape."""
    from core.models import parse_ref

    parsed = parse_ref(ref)
    shown = {"folder": Path(parsed.location).name, "file": Path(parsed.location).stem}.get(parsed.kind, parsed.location)
    stored = parsed.raw if parsed.kind == "builtin" else parsed.location
    return LibraryEntry.of(name or shown, stored, source, info_for(stored))


def availability(entry: LibraryEntry) -> tuple[bool, str]:
    """(ready with no network, what to say about it) for an entry."""
    kind = entry.ref_kind
    if kind == "builtin":
        return True, "built in: ships with Handoff, loads offline"
    if kind == "hub":
        if (cached_snapshot(entry.ref) if entry.kind != CONTROLNET_KIND else _cached_file(entry.ref)) is not None:
            return True, "cached: loads offline"
        return False, "not downloaded: downloads on first use"
    path = Path(entry.ref).expanduser()
    if not path.exists():
        from core.adapters import is_hub_file

        if is_hub_file(entry.ref):  # an adapter file on the Hub: owner/repo/file.safetensors
            parts = entry.ref.split("/")
            if _cached_file("/".join(parts[:2]), "/".join(parts[2:])) is not None:
                return True, "cached: loads offline"
            return False, "not downloaded: downloads on first use"
        return False, "missing: the file or folder is gone"
    fam = families.get(entry.family)
    if kind == "file" and fam is not None and entry.kind == PIPELINE:
        from core.models import config_folder

        if (config_folder(fam) / "model_index.json").is_file():
            return True, "local file: loads offline"
        return True, (f"local file: its diffusers config comes from the Hub cache, or from the Hub once "
                      f"(or put it in {config_folder(fam)})")
    return True, "local: loads offline"


# ---------------------------------------------------------------- the stored list


@dataclass
class ModelLibrary:
    entries: list[LibraryEntry] = field(default_factory=list)  # the user's (and scans'), in order
    hidden_presets: list[str] = field(default_factory=list)  # preset refs the user removed
    folders: list[str] = field(default_factory=list)  # ComfyUI/A1111/InvokeAI folders added, resolved

    @classmethod
    def load(cls) -> "ModelLibrary":
        """The stored list, never an error: a damaged file or section gives what could be
        read, and core.settings_file keeps the file as it was and says so once."""
        stored = settings_file.read_section("models")
        if stored is None:
            return cls()
        problems: list[str] = []
        lib = cls()
        try:
            stored = checked.table(stored, "the section")
            raw_entries = checked.listing(stored.get("entries", []), "entries")
            raw_hidden = checked.listing(stored.get("hidden_presets", []), "hidden_presets")
            raw_folders = checked.listing(stored.get("folders", []), "folders")
        except ReadError as exc:
            problems.append(str(exc))
            raw_entries, raw_hidden, raw_folders = [], [], []
        for n, raw in enumerate(raw_entries):
            try:
                lib.entries.append(LibraryEntry.from_dict(raw, f"entries[{n + 1}]"))
            except ReadError as exc:
                problems.append(str(exc))
        for n, raw in enumerate(raw_hidden):
            if isinstance(raw, str):
                lib.hidden_presets.append(raw)
            else:
                problems.append(f"hidden_presets[{n + 1}] must be text, not {checked.shown(raw)}")
        for n, raw in enumerate(raw_folders):
            if isinstance(raw, str):
                lib.folders.append(raw)
            else:
                problems.append(f"folders[{n + 1}] must be text, not {checked.shown(raw)}")
        if problems:
            settings_file.section_damaged("models", lib.stored(), problems)
        return lib

    def stored(self) -> dict:
        """The section as the settings file keeps it."""
        return {"schema_version": SCHEMA_VERSION, "entries": [e.to_dict() for e in self.entries],
                "hidden_presets": list(self.hidden_presets), "folders": list(self.folders)}

    def save(self) -> None:
        """Write the list into the settings file, keeping every other key in it."""
        settings_file.write_section("models", self.stored())

    def all(self) -> list[LibraryEntry]:
        """The built-in demo models, the user's entries, then the presets' models not
        already listed or removed."""
        mine = {e.ref for e in self.entries}
        presets = [e for e in preset_entries() if e.ref not in mine and e.ref not in self.hidden_presets]
        return builtin_entries() + list(self.entries) + presets

    def find(self, ref: str) -> LibraryEntry | None:
        return next((e for e in self.all() if e.ref == ref), None)

    def add(self, entry: LibraryEntry) -> bool:
        """Add or update (same reference) an entry. True when it was new."""
        if entry.ref in self.hidden_presets:
            self.hidden_presets.remove(entry.ref)
        for i, e in enumerate(self.entries):
            if e.ref == entry.ref:
                self.entries[i] = entry
                return False
        self.entries.append(entry)
        return True

    def add_many(self, entries: list[LibraryEntry]) -> int:
        return sum(self.add(e) for e in entries)

    def remove(self, ref: str) -> bool:
        before = len(self.entries)
        self.entries = [e for e in self.entries if e.ref != ref]
        if any(e.ref == ref for e in preset_entries()) and ref not in self.hidden_presets:
            self.hidden_presets.append(ref)
            return True
        return len(self.entries) != before

    def add_folder(self, folder: Path | str) -> tuple[list[str], list[LibraryEntry], int]:
        """Scan a ComfyUI, A1111/Forge or InvokeAI folder, add what it holds and remember
        the folder: (its tools, its entries, how many were new). ModelError when it is none."""
        tools, found = scan_folder(folder)
        return tools, found, self.add_scanned(folder, found)

    def add_scanned(self, folder: Path | str, found: list[LibraryEntry]) -> int:
        """What scan_folder found in `folder`, added, and the folder remembered: how many
        entries were new. (The scan reads files and may take seconds; this part does not.)"""
        resolved = str(Path(folder).expanduser().resolve())
        if resolved not in self.folders:
            self.folders.append(resolved)
        return self.add_many(found)

    def remove_folder(self, folder: Path | str) -> int | None:
        """Forget a folder added with add_folder and the entries scanned from it (its files
        stay where they are): how many entries went, None when it was not added."""
        resolved = Path(folder).expanduser().resolve()
        if str(resolved) not in self.folders:
            return None
        self.folders.remove(str(resolved))
        before = len(self.entries)
        self.entries = [e for e in self.entries if not (e.source in FOLDER_SOURCES and _under(e.ref, resolved))]
        return before - len(self.entries)
