"""Model names in other tools' metadata, resolved to the user's own files.

A1111 writes `Model: sd_xl_base_1.0` and `Model hash: 31e35c80fc` (AutoV2: the first ten
hex digits of the file's sha256; before late 2022 the eight-digit hash of 0x10000 bytes at
offset 0x100000), a refiner as `name [hash]`; ComfyUI writes the file name it loaded
(`ckpt_name`, `unet_name`, perhaps in a subfolder); InvokeAI and Fooocus a name and a
hash. They are looked up in the model library (the user's entries, scanned ComfyUI and
A1111 folders, the presets) and the Hugging Face cache: by file or folder name first, then
by a well-known single-file name of a Hub model, then by hash. Hashes of the candidate
files are computed once and remembered (core.models.Digests). A name that is not found
stays on the stage, and the note says which file to point at."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath



@dataclass(frozen=True)
class WellKnown:
    """A Hub model as one file: the name ComfyUI's own examples load it by (and the
    ComfyUI writer writes), other names users keep it under, and for models whose file
    holds the denoiser alone (or no text encoders), the loaders of the other parts."""

    file: str
    aliases: tuple[str, ...] = ()  # other file names of it (a name normalized() equates need none)
    unet: bool = False  # the file is the denoiser alone: UNETLoader (models/diffusion_models)
    clip: tuple[str, tuple[str, ...], str | None] | None = None  # (loader class, files, its `type`)
    vae: str | None = None

    def names(self) -> set[str]:
        return {normalized(Path(n).stem) for n in (self.file, *self.aliases)}


_SD15 = WellKnown("v1-5-pruned-emaonly.safetensors")
_SD35_CLIP = ("TripleCLIPLoader", ("clip_g.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors"), None)
_FLUX_CLIP = ("DualCLIPLoader", ("clip_l.safetensors", "t5xxl_fp16.safetensors"), "flux")
# Hub models by the single files they are; a file name read back takes the first Hub id
# that lists it (so the current SD 1.5 repository before the old runwayml one).
WELL_KNOWN = {
    "stabilityai/stable-diffusion-xl-base-1.0": WellKnown("sd_xl_base_1.0.safetensors",
                                                          ("sd_xl_base_1.0_0.9vae.safetensors",)),
    "stabilityai/stable-diffusion-xl-refiner-1.0": WellKnown("sd_xl_refiner_1.0.safetensors",
                                                             ("sd_xl_refiner_1.0_0.9vae.safetensors",)),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": _SD15,
    "runwayml/stable-diffusion-v1-5": _SD15,
    "stabilityai/stable-diffusion-3.5-large": WellKnown("sd3.5_large.safetensors", clip=_SD35_CLIP),
    "stabilityai/stable-diffusion-3.5-medium": WellKnown("sd3.5_medium.safetensors", clip=_SD35_CLIP),
    "black-forest-labs/FLUX.1-dev": WellKnown("flux1-dev.safetensors", unet=True, clip=_FLUX_CLIP,
                                              vae="ae.safetensors"),
    "black-forest-labs/FLUX.1-schnell": WellKnown("flux1-schnell.safetensors", unet=True, clip=_FLUX_CLIP,
                                                  vae="ae.safetensors"),
    "Tongyi-MAI/Z-Image-Turbo": WellKnown("z_image_turbo_bf16.safetensors", unet=True,
                                          clip=("CLIPLoader", ("qwen_3_4b.safetensors",), "lumina2"),
                                          vae="ae.safetensors"),
}
# Precision and packaging words a file name adds to a model's own name.
_NOISE_WORDS = {"bf16", "fp16", "fp32", "fp8", "e4m3fn", "e5m2", "pruned", "emaonly", "ema", "safetensors", "scaled"}
# The endings a checkpoint file has in other tools' metadata (ComfyUI keeps them; A1111 drops them).
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")
_HASH = re.compile(r"[0-9a-f]{8}|[0-9a-f]{10,64}")
_HASH_IN_NAME = re.compile(r"^(.*?)\s*\[([0-9a-fA-F]{8,64})\]\s*$")


@dataclass
class Candidate:
    ref: str  # what a stage's model field takes
    names: tuple[str, ...]  # lowercase names it answers to
    file: Path | None = None  # a single-file checkpoint (its hash can be compared)


def builtin_file(ref: str) -> str:
    """The file name a built-in demo model (`builtin:demo-base`) is written as for other
    tools (`handoff-demo-base.safetensors`), and read back from."""
    return f"handoff-{ref.split(':', 1)[-1]}.safetensors"


def _builtin_of(name: str, upscaler: bool = False) -> str | None:
    """The built-in demo model (with `upscaler`, the demo upscaler) a file name is written for."""
    from core import demo

    base = PureWindowsPath(name).name.lower()
    refs = (demo.UPSCALER,) if upscaler else (demo.BASE, demo.REFINER)
    return next((r for r in refs if base in (builtin_file(r), builtin_file(r)[:-12])), None)


def split_name(text: str) -> tuple[str, str | None]:
    """('sd_xl_refiner_1.0', '7440042bbd') from A1111's 'sd_xl_refiner_1.0 [7440042bbd]'."""
    m = _HASH_IN_NAME.match(text or "")
    return (m.group(1).strip(), m.group(2).lower()) if m else ((text or "").strip(), None)


def hinted_file(name: str) -> str:
    """The file to add for a model another tool named: its name as that tool wrote it when
    it has a file ending ('v2-1_768-ema-pruned.ckpt'), else A1111's bare name as the
    .safetensors file it most likely was."""
    base = PureWindowsPath(name).name
    return name if base.lower().endswith(MODEL_SUFFIXES) else f"{name}.safetensors"


def normalized(name: str) -> str:
    """'z_image_turbo' from 'z_image_turbo_bf16.safetensors' and from 'Z-Image-Turbo'."""
    words = [w for w in re.split(r"[\s_\-.]+", name.lower()) if w and w not in _NOISE_WORDS]
    return "_".join(words)


def legacy_hash(path: Path) -> str:
    """A1111's first model hash: sha256 of 0x10000 bytes at offset 0x100000, 8 hex digits."""
    with open(path, "rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


class ModelLookup:
    """Resolves model names and hashes for one import; what it reads (the library, the
    Hub cache listing, file hashes) is read once, when first needed.

    `hash_budget`: how many bytes of files whose sha256 is not known yet it may read to
    compare a hash (None: all of them). Hashing a library of checkpoints takes minutes
    the first time, so the window sets a budget and the note names what was left out."""

    def __init__(self, candidates: list[Candidate] | None = None, digests=None, hash_budget: int | None = None) -> None:
        self._candidates = candidates
        self._digests = digests
        self._legacy: dict[Path, str] = {}
        self._adapters: list[tuple[str, str]] | None = None  # (kind, ref) of the library's entries
        self.hash_budget = hash_budget
        self.unhashed: list[Path] = []  # files left unhashed when the budget ran out

    # ------------------------------------------------------------ what there is

    def candidates(self) -> list[Candidate]:
        if self._candidates is None:
            self._candidates = library_candidates()
        return self._candidates

    def digests(self):
        if self._digests is None:
            from core.models import Digests

            self._digests = Digests()
        return self._digests

    # ------------------------------------------------------------ resolving

    def resolve(self, name: str | None, model_hash: str | None, where: str, notes: list[str]) -> str:
        """The reference a stage should take for the model a file names; the name itself
        (with a note saying what to do) when none of the user's models is it."""
        name, in_name = split_name(name or "")
        model_hash = (model_hash or in_name or "").strip().lower() or None
        if model_hash and not re.fullmatch(r"[0-9a-f]{8,64}", model_hash):
            model_hash = None  # "blake3:…" (InvokeAI 4+) and other schemes: not comparable here
        if name.startswith("builtin:") or _is_local(name):
            return name
        if _builtin_of(name):
            return _builtin_of(name)
        said = len(notes)
        found = self._by_name(name) or self._well_known(name, where, notes) or self._by_hash(model_hash)
        if found is not None:
            return found.ref
        from core.models import HUB_ID

        if HUB_ID.match(name) and "\\" not in name:
            return name  # a Hub id: downloaded on first use
        shown = f"'{name}'" + (f" (hash {model_hash})" if model_hash else "") if name else f"hash {model_hash}"
        if (name or model_hash) and len(notes) == said:  # unless a well-known name's note said it already
            file_name = hinted_file(name)
            notes.append(f"{where}: model {shown} is not in your model library or the Hugging Face cache: add "
                         f"{file_name if name else 'that checkpoint'} to the library (Models > Model Library), "
                         f"or set the stage's model to your copy of it")
        if model_hash and self.unhashed:
            size = sum(p.stat().st_size for p in self.unhashed if p.is_file()) / 2**30
            notes.append(f"{where}: {len(self.unhashed)} of your checkpoints ({size:.1f} GiB) are not hashed yet, so "
                         "the hash was not compared with them: `python main.py inspect FILE` hashes them once "
                         "(remembered afterwards)")
        return name

    def adapter(self, name: str, kind: str, where: str, notes: list[str]) -> str:
        """The library's file for a LoRA, ControlNet or upscaler a graph names by file name
        (ComfyUI's path under its models folder, e.g. `sdxl/detail.safetensors`); the name
        itself, with a note, when the library has no such file. `kind`: a
        core.model_library kind (LORA_KIND, CONTROLNET_KIND, UPSCALER_KIND)."""
        found = self.find_adapter(name, kind) or (_builtin_of(name, upscaler=True) if kind == "upscaler" else None)
        if found is not None:
            return found
        what = {"lora": "LoRA", "controlnet": "ControlNet", "upscaler": "upscale model"}.get(kind, kind)
        notes.append(f"{where}: {what} '{name}' is not in your model library: add the folder that holds it "
                     "(Models > Model Library), or set the stage's file to your copy of it")
        return name

    def find_adapter(self, name: str, kind: str) -> str | None:
        """The library's file of `kind` a tool names: by its path below a models folder, its
        file name, or (InvokeAI and Fooocus name them so) its file name without the suffix."""
        wanted = PureWindowsPath(name or "").as_posix().lower().strip()
        if not wanted:
            return None
        if self._adapters is None:
            from core.model_library import ModelLibrary

            self._adapters = [(e.kind, e.ref) for e in ModelLibrary.load().all()]
        by_name = by_stem = None
        for k, ref in self._adapters:
            if k != kind:
                continue
            path = PureWindowsPath(ref).as_posix().lower()
            if path == wanted or path.endswith("/" + wanted):
                return ref
            if by_name is None and Path(path).name == Path(wanted).name:
                by_name = ref
            if by_stem is None and Path(path).stem == Path(wanted).name:
                by_stem = ref
        return by_name or by_stem

    def find(self, text: str) -> Candidate | None:
        """The user's model that a name, a 'name [hash]' or a bare hash (A1111's 10-hex
        AutoV2 or old 8-hex one, or a longer sha256 prefix) is; None when none is."""
        name, in_name = split_name(text)
        bare = name.lower() if _HASH.fullmatch(name.lower()) else None
        return self._by_name(name) or self._by_hash(in_name or bare)

    def _by_name(self, name: str) -> Candidate | None:
        if not name:
            return None
        base = PureWindowsPath(name).name  # ComfyUI keeps subfolders, with either slash
        exact = {name.lower(), base.lower(), Path(base).stem.lower() if base.lower().endswith(".safetensors") else base.lower()}
        for c in self.candidates():
            if exact & set(c.names):
                return c
        wanted = normalized(Path(base).stem if base.lower().endswith(".safetensors") else base)
        if not wanted:
            return None
        return next((c for c in self.candidates() if wanted in {normalized(n) for n in c.names}), None)

    def _well_known(self, name: str, where: str, notes: list[str]) -> Candidate | None:
        hub_id = well_known_hub(name)
        if hub_id is None:
            return None
        hit = next((c for c in self.candidates() if c.ref == hub_id and c.file is None and "cached" in c.names), None)
        if hit is None:
            notes.append(f"{where}: '{name}' is the Hub model {hub_id}, which is not downloaded: set the stage's "
                         f"model to {hub_id} to download it, or point it at your file")
        return hit

    def _by_hash(self, model_hash: str | None) -> Candidate | None:
        if not model_hash:
            return None
        for c in self.candidates():
            if c.file is None or not c.file.is_file():
                continue
            try:
                if len(model_hash) == 8 and self._legacy_of(c.file) == model_hash:
                    return c
                if len(model_hash) >= 10:
                    digest = self.digests().cached(c.file)
                    if digest is None:
                        size = c.file.stat().st_size
                        if self.hash_budget is not None and size > self.hash_budget:
                            if c.file not in self.unhashed:
                                self.unhashed.append(c.file)
                            continue
                        if self.hash_budget is not None:
                            self.hash_budget -= size
                        digest = self.digests().of(c.file)
                    if digest.startswith(model_hash):
                        return c
            except OSError:
                continue
        return None

    def _legacy_of(self, path: Path) -> str:
        if path not in self._legacy:
            self._legacy[path] = legacy_hash(path)
        return self._legacy[path]


def well_known_hub(name: str) -> str | None:
    """The Hub model a well-known single-file name is ('sd_xl_base_1.0.safetensors', in a
    subfolder or not, is stabilityai/stable-diffusion-xl-base-1.0); None for other names."""
    base = PureWindowsPath(name or "").name
    stem = normalized(Path(base).stem if base.lower().endswith(".safetensors") else base)
    return next((h for h, known in WELL_KNOWN.items() if stem in known.names()), None) if stem else None


def _is_local(name: str) -> bool:
    try:
        path = Path(name).expanduser()
        return bool(name) and (path.is_absolute() or name.startswith(".")) and path.exists()
    except (OSError, ValueError):
        return False


def library_candidates() -> list[Candidate]:
    """Every model the user has: the library's entries (their own, scanned ComfyUI and
    A1111 folders, the presets' Hub models) and the diffusers models in the Hub cache."""
    from core.model_library import ModelLibrary, cached_hub_models

    out: list[Candidate] = []
    for hub in cached_hub_models():
        out.append(Candidate(hub.repo_id, (hub.repo_id.lower(), hub.repo_id.split("/")[-1].lower(), "cached")))
    cached = {c.ref for c in out}
    for e in ModelLibrary.load().all():
        if e.ref in cached:
            continue
        kind = e.ref_kind
        if kind == "file":
            path = Path(e.ref)
            out.append(Candidate(e.ref, (e.name.lower(), path.name.lower(), path.stem.lower()), path))
        elif kind == "folder":
            out.append(Candidate(e.ref, (e.name.lower(), Path(e.ref).name.lower())))
        elif e.source != "preset":  # a preset's Hub model is offered by a note, not taken unasked
            out.append(Candidate(e.ref, (e.ref.lower(), e.ref.split("/")[-1].lower(), e.name.lower())))
    return out
