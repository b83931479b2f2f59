"""Model references, resolution (Hub, local folder, single file), loading and sharing.

A reference is what the user types: a Hub id (`stabilityai/sdxl-turbo`), a local
diffusers folder, a single `.safetensors` checkpoint, or `builtin:NAME` for the demo.
Resolution turns it into files on disk and a family; loading turns those into a
pipeline on the device. Components whose config and weights are identical (an SDXL
refiner's VAE and second text encoder, say) are loaded once and shared.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core import checked, paths
from core.checkpoints import PIPELINE, describe_file
from core.denoisers import DenoiserSpec, denoiser_component, load_denoiser, quantize_loaded
from core.errors import Cancelled, ModelError, ReadError
from core.model_configs import native_size, read_model_index
from core.families import FAMILIES, Family, UnknownFamily, family_from_model_index
from core.scorers import ScorerCache
from core.upscalers import UPSCALER, UPSCALER_SUFFIXES, UpscalerCache, upscaler_info

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
# Components that hold weights and are worth sharing; tokenizers and schedulers are
# cheap, and a scheduler must never be shared (it carries per-run state).
WEIGHT_COMPONENTS = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3", "unet", "transformer")


@dataclass(frozen=True)
class ModelRef:
    raw: str
    kind: str  # "builtin", "folder", "file" or "hub"
    location: str  # the path, Hub id or builtin name


def parse_ref(raw: str) -> ModelRef:
    text = raw.strip()
    if not text:
        raise ModelError("no model given")
    if text.startswith("builtin:"):
        return ModelRef(text, "builtin", text.split(":", 1)[1])
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelRef(text, "folder", str(path.resolve()))
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return ModelRef(text, "file", str(path.resolve()))
    if path.exists():
        raise ModelError(f"'{text}' is neither a diffusers folder nor a .safetensors checkpoint")
    if HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return ModelRef(text, "hub", text)
    raise ModelError(f"model not found: '{text}' is not a local folder, a .safetensors file or a Hub id (owner/name)")


@dataclass
class ResolvedModel:
    ref: ModelRef
    path: Path  # a diffusers folder, or a checkpoint file
    family: Family
    index: dict = field(default_factory=dict)  # model_index.json for folders

    @property
    def is_file(self) -> bool:
        return self.path.is_file()

    @property
    def is_upscaler(self) -> bool:
        """A model upscaler file (core.upscalers), not a diffusion model."""
        return self.family is UPSCALER

    def native_size(self) -> int:
        """The size the model was trained at (core.model_configs.native_size)."""
        return self.family.native if self.is_file else native_size(self.path, self.family)

    def vae_fingerprint(self, digests: "Digests") -> str | None:
        """Config and weights of the VAE; equal fingerprints mean one latent space."""
        if self.is_file or "vae" not in self.index:
            return None
        return component_fingerprint(self.path / "vae", digests)


# ---------------------------------------------------------------- resolution


def resolve(ref: ModelRef, progress: Callable[[str], None] | None = None,
            cancel: threading.Event | None = None) -> ResolvedModel:
    if ref.kind == "builtin":
        from core import demo

        if ref.raw.strip() == demo.UPSCALER:
            return _resolve_upscaler(ref, demo.extra_path("demo-upscaler"), "the demo's upscaler")
        folder = demo.ensure_model(ref.location)
        return _resolve_folder(ref, folder)
    if ref.kind == "folder":
        return _resolve_folder(ref, Path(ref.location))
    if ref.kind == "file":
        return _resolve_file(ref, Path(ref.location))
    return _resolve_folder(ref, download(ref.location, progress, cancel))


def _resolve_folder(ref: ModelRef, folder: Path) -> ResolvedModel:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelError(f"{folder} is not a diffusers model folder (it has no model_index.json)")
    try:
        index = read_model_index(folder)
    except ReadError as exc:
        raise ModelError(f"{ref.raw}: {exc}") from None
    try:
        family = family_from_model_index(index)
    except UnknownFamily as exc:
        raise ModelError(f"{ref.raw}: {exc}") from exc
    return ResolvedModel(ref, folder, family, index)


def _resolve_file(ref: ModelRef, path: Path) -> ResolvedModel:
    family_key, kind, note = describe_file(path)
    if family_key is None and path.suffix.lower() in UPSCALER_SUFFIXES:
        return _resolve_upscaler(ref, path, note)
    if family_key is None or kind != PIPELINE:
        # A transformer/UNet alone would make diffusers fetch the rest from the Hub.
        raise ModelError(f"{path.name}: {note}")
    return ResolvedModel(ref, path, FAMILIES[family_key])


def _resolve_upscaler(ref: ModelRef, path: Path, note: str) -> ResolvedModel:
    """A .pth, or a .safetensors that is no diffusion checkpoint, as an upscaler whose
    architecture spandrel recognises (its state dict is read and checked here, before
    any stage runs)."""
    try:
        upscaler_info(path)
    except ModelError as exc:
        if path.suffix.lower() == ".safetensors" and "unknown architecture" in str(exc):
            raise ModelError(f"{path.name}: an unknown architecture: neither a diffusion checkpoint Handoff knows "
                             f"({note}) nor an upscaler spandrel recognises") from None
        raise
    return ResolvedModel(ref, path, UPSCALER)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def offline_message(repo_id: str) -> str:
    return (
        f"{repo_id} is not in the local Hugging Face cache and offline mode is on "
        "(HF_HUB_OFFLINE=1): go online once to download it, or choose a local folder"
    )


def download(repo_id: str, progress: Callable[[str], None] | None = None, cancel: threading.Event | None = None) -> Path:
    """A Hub model's local folder, from the cache or downloaded into it (the standard
    Hugging Face cache, resuming an interrupted download). Progress arrives as text:
    "downloading unet/diffusion_pytorch_model.safetensors 120/3400 MB, 45 MB/s".
    Setting `cancel` stops the download between chunks (core.errors.Cancelled)."""
    from diffusers import DiffusionPipeline

    try:
        # Try the cache first: a cached model must load with no network at all.
        return Path(DiffusionPipeline.download(repo_id, local_files_only=True))
    except Exception as cached_exc:
        if offline():
            raise ModelError(offline_message(repo_id)) from cached_exc
    import time

    from core.downloads import DownloadCancelled, DownloadProgress, download_model

    if progress:
        progress(f"downloading {repo_id}")
    last = [0.0]

    def report(p: DownloadProgress) -> None:
        now = time.monotonic()
        finished = p.bytes_done >= p.bytes_total
        if progress and (finished or now - last[0] >= 0.25):
            last[0] = now
            progress(p.describe())

    try:
        return download_model(repo_id, report, cancel)
    except DownloadCancelled as exc:
        raise Cancelled() from exc
    except Exception as exc:
        raise ModelError(explain_hub_error(repo_id, exc)) from exc


def explain_hub_error(repo_id: str, exc: BaseException) -> str:
    from huggingface_hub import errors as hf_errors

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if offline() or any(isinstance(e, hf_errors.OfflineModeIsEnabled) for e in chain):
        return offline_message(repo_id)
    for e in chain:
        if isinstance(e, hf_errors.GatedRepoError):
            from huggingface_hub import constants

            return (
                f"{repo_id} is gated: accept its licence on its Hub page ({constants.ENDPOINT}/{repo_id}), "
                "then log in (`hf auth login`, or set HF_TOKEN) so Handoff can download it"
            )
        if isinstance(e, hf_errors.RepositoryNotFoundError):
            return f"{repo_id} was not found on the Hugging Face Hub (check the spelling; a private repo needs a login)"
        if isinstance(e, hf_errors.RevisionNotFoundError):
            return f"{repo_id}: the requested revision does not exist"
        if isinstance(e, hf_errors.LocalEntryNotFoundError):
            return f"{repo_id} is not in the local cache and the Hub cannot be reached: go online once, or choose a local folder"
    for e in chain:
        name = type(e).__name__
        if "Connect" in name or "Timeout" in name or isinstance(e, OSError) and "resolve" in str(e).lower():
            return f"{repo_id} is not in the local cache and the Hub cannot be reached (offline?): go online once, or choose a local folder"
    return f"{repo_id} could not be downloaded: {exc}"


# ---------------------------------------------------------------- fingerprints


def file_state(path: Path) -> str:
    """What a rewrite of the file changes: size, mtime, ctime (which no tool can set back)
    and inode (a replace by rename), from one stat."""
    st = path.stat()
    return f"{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


class Digests:
    """sha256 of the files a job reads (weights, adapters, images), each read once and
    remembered by path, size, mtime, ctime and inode, as git's index remembers a file: a
    rewrite in place changes the ctime even when a tool sets the mtime back, so it is
    hashed again."""

    def __init__(self, store: Path | None = None):
        self.store = store or (paths.cache_dir() / "digests.json")
        self._lock = threading.Lock()
        try:
            known = checked.read_json_file(self.store)
        except ReadError:
            known = {}
        # A cache of our own, but a damaged one must cost only re-hashing, never a crash.
        self._known: dict[str, str] = ({k: v for k, v in known.items() if isinstance(k, str) and isinstance(v, str)}
                                       if isinstance(known, dict) else {})

    @staticmethod
    def _entry(real: Path) -> str:
        return f"{real}|{file_state(real)}"

    def cached(self, path: Path) -> str | None:
        """The sha256 when it is already known (the file unchanged since), never reading
        the file: for writers that must not stall on a multi-gigabyte checkpoint."""
        try:
            real = path.resolve()
            if re.fullmatch(r"[0-9a-f]{64}", real.name):
                return real.name
            key = self._entry(real)
        except OSError:
            return None
        with self._lock:
            return self._known.get(key)

    def of(self, path: Path) -> str:
        real = path.resolve()
        # Files in the Hugging Face cache are stored under their own sha256: free to read.
        if re.fullmatch(r"[0-9a-f]{64}", real.name):
            return real.name
        key = self._entry(real)
        with self._lock:
            if key in self._known:
                return self._known[key]
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        digest = h.hexdigest()
        with self._lock:
            self._known[key] = digest
            self._save()
        return digest

    def _save(self) -> None:
        from core.atomic import write_text

        try:
            write_text(self.store, json.dumps(self._known))
        except OSError:
            pass  # a read-only home only costs re-hashing next time


def component_fingerprint(folder: Path, digests: Digests) -> str | None:
    """What a component is, from its config and weights, never from its name or path."""
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    weights = 0
    for f in sorted(folder.iterdir()):
        if f.name.endswith(".json"):
            try:
                cfg = checked.read_json_file(f)
            except ReadError:
                continue
            if isinstance(cfg, dict):
                # Bookkeeping keys (_name_or_path, _diffusers_version...) say nothing about the model.
                cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("transformers_version", "architectures")}
            h.update(f.name.encode() + json.dumps(cfg, sort_keys=True).encode())
        elif f.suffix in (".safetensors", ".bin"):
            h.update(f.name.encode() + digests.of(f).encode())
            weights += 1
    return h.hexdigest() if weights else None


# ---------------------------------------------------------------- loading


def pick_dtype(choice: str, family: Family, device: str):
    import torch

    if choice == "fp32" or (choice == "auto" and device == "cpu"):
        return torch.float32
    if choice == "bf16":
        return torch.bfloat16
    if choice == "fp16":
        return torch.float16
    # auto on a GPU: flow-matching models are trained in bf16 (and Z-Image's RoPE breaks in fp16)
    if family.flow:
        return torch.bfloat16
    return torch.float16


@dataclass
class LoadedModel:
    resolved: ResolvedModel
    pipe: Any  # the pipeline as the folder declares it
    dtype: Any
    device: str
    fingerprints: dict[str, str] = field(default_factory=dict)  # component name -> fingerprint
    _roles: dict[str, Any] = field(default_factory=dict)
    quantized: bool = False  # its denoiser is quantized (GGUF, fp8 storage, int8, nf4)
    offload: bool | str = False  # as placed on a GPU: False (whole), True (model offload) or "group"

    def _over(self, cls, **extra):
        """A pipeline of class `cls` over this model's components. diffusers' from_pipe
        casts every module to one dtype, which a quantized model refuses (GGUF, bnb) or
        silently undoes (fp8 storage): a quantized model's pipelines are built directly."""
        if not self.quantized:
            return cls.from_pipe(self.pipe, **extra)
        expected, _ = cls._get_signature_keys(cls)
        parts = {k: v for k, v in self.pipe.components.items() if k in expected}
        parts.update(extra)
        return cls(**parts)

    @property
    def family(self) -> Family:
        return self.resolved.family

    def pipeline(self, role: str):
        """The pipeline for a role ("generate" or "refine"), built over the same components."""
        if role in self._roles:
            return self._roles[role]
        import diffusers

        if not self.family.can_take("base" if role == "generate" else "refine"):
            what = "start a chain" if role == "generate" else "refine an image at a strength"
            raise ModelError(f"{self.family.title} models cannot {what} (they can take: {self.family.positions()})")
        cls_name = self.family.pipeline_class_for(role, type(self.pipe).__name__)
        pipe = self.pipe if cls_name is None else self._over(getattr(diffusers, cls_name))
        pipe.set_progress_bar_config(disable=True)
        self._roles[role] = pipe
        return pipe

    def controlnet_pipeline(self, folder: Path, model_cls: str, pipeline_cls: str):
        """A ControlNet pipeline over this model's components, the ControlNet loaded once
        per folder (and kept, like the model, for re-runs)."""
        # Its files' state in the key: a ControlNet rewritten in place is loaded again.
        prefix = f"controlnet:{folder}|"
        key = prefix + "|".join(f.name + file_state(f) for f in sorted(folder.iterdir()) if f.is_file())
        if key in self._roles:
            return self._roles[key]
        for old in [k for k in self._roles if k.startswith(prefix)]:
            del self._roles[old]
        import diffusers

        try:
            controlnet = getattr(diffusers, model_cls).from_pretrained(str(folder), dtype=self.dtype)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"ControlNet {folder.name} could not be loaded: {_first_line(exc)}") from exc
        controlnet.to(self.device)
        pipe = self._over(getattr(diffusers, pipeline_cls), controlnet=controlnet)
        pipe.set_progress_bar_config(disable=True)
        self._roles[key] = pipe
        return pipe


class ModelCache:
    """Loaded models, kept for reuse across stages and jobs, sharing identical components."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[str, str], LoadedModel] = {}
        self.digests = Digests()
        self.upscalers = UpscalerCache()
        self.scorers = ScorerCache()  # core.scorers: loaded once, like the pipelines

    def key(self, resolved: ResolvedModel, dtype, spec: DenoiserSpec | None = None) -> tuple[str, str]:
        """A loaded pipeline's key: the model, the dtype, and where its denoiser differs
        from the model's own (a transformer file, quantized), that too."""
        where = str(resolved.path)
        if spec is not None and not spec.plain:
            where += "|" + denoiser_identity(spec)
        return (where, str(dtype))

    def get(self, resolved: ResolvedModel, dtype, device: str, offload: bool | str = False,
            progress: Callable[[str], None] | None = None, spec: DenoiserSpec | None = None) -> LoadedModel:
        spec = spec or DenoiserSpec()
        key = self.key(resolved, dtype, spec)
        if key in self.loaded:
            if device != "cuda" or self.loaded[key].offload == offload:
                return self.loaded[key]
            # Placed otherwise by an earlier job's plan: offload hooks cannot be taken off a
            # pipeline cleanly (group offload's least of all), so it loads again, placed anew.
            self.drop({key})
        if resolved.is_file:
            model = self._load_file(resolved, dtype, device, offload, progress, spec)
        else:
            model = self._load_folder(resolved, dtype, device, offload, progress, spec)
        self.loaded[key] = model
        return model

    def _shared_components(self, resolved: ResolvedModel, dtype,
                           spec: DenoiserSpec | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        fingerprints: dict[str, str] = {}
        shared: dict[str, Any] = {}
        denoiser = denoiser_component(resolved.index)
        for name in WEIGHT_COMPONENTS:
            entry = resolved.index.get(name)
            if not isinstance(entry, list) or not entry or entry[0] is None:
                continue
            replaced = spec is not None and not spec.plain and denoiser is not None and name == denoiser[0]
            if replaced and spec.file is not None:
                # The file's weights with this model's config for the component.
                config = resolved.path / name / "config.json"
                fp = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else str(resolved.path)
            else:
                fp = component_fingerprint(resolved.path / name, self.digests)
            if replaced:
                # A denoiser from a file, or quantized, is shared only with the same one.
                fp = hashlib.sha256(f"{fp}|{denoiser_identity(spec)}".encode()).hexdigest()
            if fp is None:
                continue
            fingerprints[name] = fp
            for other in self.loaded.values():
                if other.dtype != dtype:
                    continue
                for other_name, other_fp in other.fingerprints.items():
                    if other_fp == fp and name not in shared:
                        shared[name] = getattr(other.pipe, other_name)
        return shared, fingerprints

    def _load_folder(self, resolved, dtype, device, offload, progress, spec: DenoiserSpec) -> LoadedModel:
        from diffusers import DiffusionPipeline

        shared, fingerprints = self._shared_components(resolved, dtype, spec)
        if progress:
            note = f" (sharing {', '.join(sorted(shared))})" if shared else ""
            progress(f"loading {resolved.ref.raw}{note}")
        denoiser = denoiser_component(resolved.index)
        if not spec.plain and denoiser is not None and denoiser[0] not in shared:
            if progress and spec.file is not None:
                progress(f"loading {denoiser[0]} from {spec.file.name}")
            shared[denoiser[0]] = load_denoiser(spec, resolved.path, denoiser[0], denoiser[1], dtype)
        try:
            pipe = DiffusionPipeline.from_pretrained(str(resolved.path), dtype=dtype, **shared)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{resolved.ref.raw} could not be loaded: {exc}") from exc
        pipe.set_progress_bar_config(disable=True)
        place(pipe, device, offload)
        return LoadedModel(resolved, pipe, dtype, device, fingerprints, quantized=spec.quantized, offload=offload)

    def _load_file(self, resolved, dtype, device, offload, progress, spec: DenoiserSpec) -> LoadedModel:
        import diffusers

        cls_name = resolved.family.generate or resolved.family.refine
        cls = getattr(diffusers, cls_name)
        config = single_file_config(resolved.family, resolved.path)
        name = resolved.path.name
        if config is None and offline():
            # Without a config diffusers would go to the Hub (it retries online even when
            # told local_files_only), so offline we stop here, with what to do.
            raise ModelError(
                f"{name}: a single-file {resolved.family.title} checkpoint needs its diffusers config, and none is "
                f"set up or cached: copy the model's diffusers folder without its weights (model_index.json, "
                f"scheduler, tokenizer, each component's config.json) to {config_folder(resolved.family)}, "
                "or go online once so Handoff can fetch it"
            )
        if progress:
            progress(f"loading {name}")
        kwargs: dict[str, Any] = {"dtype": dtype}
        if config is not None:
            # Every config is local: nothing needs fetching, so nothing may be.
            kwargs["config"] = str(config)
            kwargs["local_files_only"] = True
        try:
            pipe = cls.from_single_file(str(resolved.path), **kwargs)
        except Exception as exc:  # diffusers raises many types here; all mean "cannot load"
            reason = _first_line(exc)
            if config is None:
                raise ModelError(
                    f"{name} could not be loaded ({reason}); its diffusers config comes from the Hub unless "
                    f"you put the model's diffusers configs (no weights) in {config_folder(resolved.family)}"
                ) from exc
            raise ModelError(
                f"{name} could not be loaded with the config in {config} ({reason}); check that the config "
                f"belongs to this checkpoint's architecture"
            ) from exc
        import torch

        for part, component in pipe.components.items():
            if isinstance(component, torch.nn.Module) and any(p.is_meta for p in component.parameters()):
                # diffusers fills a T5 from `shared.weight` alone (ComfyUI keeps its embedding once) and
                # leaves transformers' encoder.embed_tokens on the meta device: tie it back, as from_pretrained does.
                if hasattr(component, "tie_weights"):
                    component.tie_weights()
                if any(p.is_meta for p in component.parameters()):
                    raise ModelError(f"{name}: the checkpoint lacks some of the {part} weights "
                                     f"({type(component).__name__})")
        if spec.quantize in ("fp8", "int8"):
            # A single-file model's denoiser is quantized once loaded (nf4 quantizes as it
            # loads, so it needs the model as a diffusers folder).
            quantize_loaded(pipe, spec.quantize, dtype)
        pipe.set_progress_bar_config(disable=True)
        place(pipe, device, offload)
        return LoadedModel(resolved, pipe, dtype, device, {}, quantized=spec.quantized, offload=offload)

    def release(self, keep: set[tuple[str, str]] = frozenset()) -> None:
        """Drop every model not in `keep`, and give the memory back."""
        self.upscalers.clear()
        self.drop({k for k in self.loaded if k not in keep})

    def device_bytes(self, keys, device: str) -> int:
        """Bytes the models under `keys` hold on `device` (a component shared between them
        counted once): what a job that uses them again already has in place."""
        import torch

        seen: set[int] = set()
        total = 0
        for key in keys:
            model = self.loaded.get(key)
            for component in (model.pipe.components.values() if model is not None else ()):
                if not isinstance(component, torch.nn.Module) or id(component) in seen:
                    continue
                seen.add(id(component))
                total += sum(t.numel() * t.element_size() for t in (*component.parameters(), *component.buffers())
                             if t.device.type == device)
        return total

    def drop(self, keys: set[tuple[str, str]]) -> None:
        """Drop these models, and give the memory back."""
        for key in keys:
            self.loaded.pop(key, None)
        import gc

        gc.collect()
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def place(pipe, device: str, offload: bool | str) -> None:
    """Put a loaded pipeline where the memory plan says (core.memory_plan): whole on the
    device, one component at a time (model CPU offload) or one layer at a time (group offload,
    its streams overlapping the next layer's copy with this one's compute). Offload is CUDA's."""
    if offload == "group" and device == "cuda":
        pipe.enable_group_offload(onload_device=device, offload_type="leaf_level", use_stream=True)
    elif offload and device == "cuda":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)


def denoiser_identity(spec: DenoiserSpec) -> str:
    """What tells two loads of a model apart: its denoiser's file (by its state, so a
    rewrite loads again) and the quantize setting."""
    where = f"{spec.file.resolve()}|{file_state(spec.file)}" if spec.file is not None else "model"
    return f"denoiser={where}|quantize={spec.quantize}"


def config_folder(family: Family) -> Path:
    """Where the user puts the diffusers configs for single-file checkpoints of a family."""
    return paths.home() / "configs" / family.key


def single_file_config(family: Family, checkpoint: Path | None = None) -> Path | None:
    """A local diffusers folder whose configs describe a single-file checkpoint of this
    family: the one the user set up (HANDOFF_HOME/configs/<family>), else, given the
    checkpoint, the configs diffusers would fetch for it if they are already in the
    Hugging Face cache; None when neither is there (diffusers then fetches them online)."""
    folder = config_folder(family)
    if (folder / "model_index.json").is_file():
        return folder
    if checkpoint is None:
        return None
    try:
        from diffusers.loaders.single_file_utils import fetch_diffusers_config
        from huggingface_hub import snapshot_download
        from safetensors import safe_open
        import torch

        # Shapes from the header only (meta tensors): no weights are read.
        with safe_open(str(checkpoint), framework="pt") as f:
            shapes = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        repo = fetch_diffusers_config(shapes)["pretrained_model_name_or_path"]
        # The files diffusers' own single-file loader fetches for a pipeline config.
        cached = Path(snapshot_download(repo, local_files_only=True,
                                        allow_patterns=["**/*.json", "*.json", "*.txt", "**/*.txt", "**/*.model"]))
    except Exception:  # not cached, or a checkpoint diffusers cannot place: no local config
        return None
    return cached if (cached / "model_index.json").is_file() else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
