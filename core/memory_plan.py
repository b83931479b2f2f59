"""A memory planner that explains itself: before a job loads anything, each stage's peak
device memory is estimated from the weights' file headers (no weights read), and the job
is given the cheapest placement that fits the budget, printed as a table.

What a stage needs on the device:
- weights: each component's tensors (safetensors headers give dtype and shape). Float
  tensors are counted at the dtype the job loads them in (the loader casts them); fp8 and
  integer tensors at their storage width; a GGUF denoiser at its bytes on disk (its
  quantized blocks are what sits on the device). A denoiser the stage quantizes is counted
  as the quantizer stores it (quantized_bytes).
- activations: the denoiser's working tensors, rule of thumb ACTIVATION_FACTOR bytes of
  `itemsize` per latent element (latent = size/8 per side x 16 channels), which is a few
  hundred MiB at 1024 px in bf16 for the families Handoff knows.
- the VAE decode: core.memory_check.decode_bytes (the one estimate of it), or in tiles
  core.memory_check.tiled_decode_bytes (diffusers' enable_tiling).

Placements, cheapest first (each keeps more on the device, and runs faster):
  resident   every distinct model of the job loaded on the device at once
  sequential one stage's model on the device, released before the next loads
  offload    one component at a time on the device (diffusers' model CPU offload)
  group      one layer at a time, streamed (diffusers' group offload, leaf level)
Within each placement, a stage whose decode would not fit whole decodes in tiles (its
`vae_tiling`) before the next placement is tried: see choose. A job that does not fit with
one layer at a time and every decode in tiles is refused with the numbers.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.errors import ProjectError, ReadError
from core.memory_check import _amount, decode_bytes, decode_size, decoder, tiled_decode_bytes, vae_tile

ACTIVATION_FACTOR = 256  # a transformer's hidden states, attention and MLP copies, per latent element
LATENT_CHANNELS = 16
PLACEMENTS = ("resident", "sequential", "offload", "group")
LIVES = {"resident": "GPU", "sequential": "GPU (its stage)", "offload": "CPU, to GPU when used",
         "group": "CPU, a layer at a time", "cpu": "RAM"}
STAGE_WORDS = {"resident": "resident", "sequential": "whole on the GPU for its turn",
               "offload": "one component at a time", "group": "one layer at a time"}
WHY = {
    "cpu": "no GPU: system RAM holds every model (resident)",
    "resident": "every model of the job fits at once",
    "sequential": "one stage's model fits at a time; released before the next",
    "offload": "a stage's model does not fit whole; one component at a time",
    "group": "the largest component does not fit; one layer at a time (group offload)",
    "asked": "the project asks for it",
}
# safetensors dtype names -> bytes per element
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
             "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_FLOAT = {"F64", "F32", "F16", "BF16"}
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass
class StageNeeds:
    """What one stage puts on the device, in bytes."""

    label: str
    model: str  # the same model used twice counts once when resident
    components: dict[str, int]  # weights per component
    largest_tensor: int  # the largest single weight: what group offload must hold at once
    activations: int
    decode: int  # the whole image at once
    notes: dict[str, str] = field(default_factory=dict)  # per component: how its bytes were counted
    tiled_decode: int | None = None  # in tiles; None: its VAE does not tile (core.memory_check.vae_tile)
    vae_tiling: bool = False  # the plan's choice (choose)
    placement: str = ""  # the plan's choice for this stage (choose); "" until planned

    @property
    def weights(self) -> int:
        return sum(self.components.values())

    @property
    def can_tile(self) -> bool:
        """Whether tiles make the decode smaller (not for an image within one tile)."""
        return self.tiled_decode is not None and self.tiled_decode < self.decode

    @property
    def decoding(self) -> int:
        """The decode as planned: in tiles or whole."""
        return self.tiled_decode if self.vae_tiling and self.tiled_decode is not None else self.decode

    @property
    def working(self) -> int:
        """Activations and the decode do not overlap in time: the larger of the two."""
        return max(self.activations, self.decoding)


@dataclass
class MemoryPlan:
    placement: str
    budget: int
    budget_kind: str
    stages: list[StageNeeds] = field(default_factory=list)
    why: str = ""

    def peak(self) -> int:
        return peak(self.stages, self.placement)

    def vae_tiling(self, index: int) -> bool:
        """Whether the stage at `index` (in project.stages) decodes in tiles."""
        return any(s.vae_tiling for s in self.stages if s.label == stage_label(index))

    def placement_of(self, index: int) -> str:
        """Where the stage at `index` (in project.stages) keeps its model while it runs."""
        return next((s.placement for s in self.stages if s.label == stage_label(index) and s.placement),
                    self.placement)

    def table(self) -> str:
        """The plan as the CLI prints it: stage, component, bytes, where it lives, why."""
        rows = [("stage", "component", "bytes", "lives", "")]
        for s in self.stages:
            where = LIVES["cpu" if self.why == WHY["cpu"] else s.placement or self.placement]
            for name, n in s.components.items():
                rows.append((s.label, name, _amount(n), where, s.notes.get(name, "")))
            rows.append((s.label, "activations", _amount(s.activations), "device", "latent rule of thumb"))
            rows.append((s.label, "vae decode", _amount(s.decoding), "device", self._decode_note(s)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)).rstrip() + (f"  ({r[4]})" if r[4] else "")
                 for r in rows]
        tiled = [s.label for s in self.stages if s.vae_tiling]
        tiles = f", the VAE decoding in tiles ({', '.join(tiled)})" if tiled else ""
        lighter = [f"{s.label} {STAGE_WORDS[s.placement]}" for s in self.stages
                   if s.placement and s.placement != self.placement]
        each = f"; {', '.join(lighter)}" if lighter else ""
        lines.append(f"plan: {self.placement} — {self.why}{each}{tiles}; peak about {_amount(self.peak())} of "
                     f"{_amount(self.budget)} {self.budget_kind}")
        return "memory plan\n" + "\n".join(lines)

    def _decode_note(self, s: StageNeeds) -> str:
        if s.vae_tiling:
            return f"tiled: the whole image at once, {_amount(s.decode)}, would not fit"
        basis = "cpu" if self.why == WHY["cpu"] else s.placement or self.placement
        if held(self.stages, s, basis) + s.working <= self.budget:
            return "untiled: fits"
        return "untiled: tiles would not make it smaller" if s.tiled_decode is not None else "untiled: its VAE does not tile"


def held(stages: list[StageNeeds], s: StageNeeds, placement: str) -> int:
    """The weights on the device while stage `s` works, under a placement ('cpu': none
    counted, as core.memory_check weighs a decode against the RAM left)."""
    if placement == "resident":
        return sum({x.model: x.weights for x in stages}.values())
    if placement == "sequential":
        return s.weights
    if placement == "offload":
        return max(s.components.values(), default=0)
    return 0 if placement == "cpu" else s.largest_tensor


def peak(stages: list[StageNeeds], placement: str) -> int:
    """The job's peak device bytes: each stage under its own placement when planned, else `placement`."""
    return max((held(stages, s, s.placement or placement) + s.working for s in stages), default=0)


def with_tiling(stages: list[StageNeeds], placement: str, budget: int) -> list[StageNeeds]:
    """The stages with `vae_tiling` set on each whose whole decode would take it over the budget
    under the placement, where tiles make the decode smaller."""
    return [replace(s, vae_tiling=s.can_tile and held(stages, s, placement) + max(s.activations, s.decode) > budget)
            for s in stages]


def per_stage(stages: list[StageNeeds], placement: str, budget: int) -> list[StageNeeds]:
    """Under offload or group offload chosen for the budget, each stage whose model fits more
    of itself on the device gets the lighter placement: whole for its turn (then released), or one component at a
    time, so only the stages that need the slow placement pay for it (ERNIE offloaded, the
    refiner after it whole, on a 12 GB card). Other placements are the job's for every stage."""
    if placement not in ("offload", "group"):
        return [replace(s, placement=placement) for s in with_tiling(stages, placement, budget)]
    order = PLACEMENTS[1:PLACEMENTS.index(placement) + 1]  # sequential .. placement
    planned = []
    for s in stages:
        for option in order:
            (tiled,) = with_tiling([s], option, budget)
            if held([s], tiled, option) + tiled.working <= budget or option == placement:
                planned.append(replace(tiled, placement=option))
                break
    return planned


def choose(stages: list[StageNeeds], budget: int, budget_kind: str, policy: str = "auto",
           device: str = "cuda") -> MemoryPlan:
    """The placement for a job: the one asked for, all resident on a CPU for 'auto', else the first
    of PLACEMENTS whose peak fits the budget; ProjectError when none does. In each, a stage whose
    decode would not fit whole decodes in tiles, and under (group) offload a stage that fits more
    of itself gets the lighter placement (per_stage).

    Tiling is tried before the next placement because it is the cheaper remedy: a tiled decode
    covers the image about 1.8 times (tiles overlap by a quarter each way), a second or two more on
    one decode per stage, where sequential reloads a model for each stage, and offload or group
    offload move weights across the bus at every step. What it costs besides: the tiles are
    blended, so the image differs slightly from a whole decode (the stored-output key says which)."""
    if policy != "auto":  # asked for: every stage, as asked (the user may keep VRAM free for something else)
        asked = [replace(s, placement=policy) for s in with_tiling(stages, policy, budget)]
        return MemoryPlan(policy, budget, budget_kind, asked, WHY["asked"])
    if device != "cuda":
        return MemoryPlan("resident", budget, budget_kind, with_tiling(stages, "cpu", budget), WHY["cpu"])
    for placement in PLACEMENTS:
        planned = per_stage(stages, placement, budget)
        if peak(planned, placement) <= budget:
            return MemoryPlan(placement, budget, budget_kind, planned, WHY[placement])
    planned = with_tiling(stages, "group", budget)
    worst = max(planned, key=lambda s: s.largest_tensor + s.working)
    tiled = ", the decode in tiles" if worst.vae_tiling else ""
    raise ProjectError([f"{worst.label} cannot fit in {_amount(budget)} of {budget_kind} even one layer at a time: "
                        f"its largest layer ({_amount(worst.largest_tensor)}) and its activations or decode "
                        f"({_amount(worst.working)}{tiled}) need {_amount(worst.largest_tensor + worst.working)}; "
                        "lower the size or plan for a larger card"])


def parse_budget(text: str) -> int:
    """'12G', '12GiB', '800M', '1.5G', '4096' (bytes) -> bytes; binary units either way."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not m or float(m.group(1)) <= 0:
        raise ProjectError([f"VRAM budget '{text}' is not a size like 12G, 12GiB or 800M"])
    return int(float(m.group(1)) * _UNITS[m.group(2)])


# --- reading the needs from files ---------------------------------------------------

def tensor_bytes(header: dict, itemsize: int, quantize: str = "none", skip: tuple[str, ...] = ()) -> tuple[int, int]:
    """(total, largest) bytes of a safetensors header's tensors; floats at `itemsize`, or as
    `quantize` stores them (`skip`: the layer-name patterns the quantizer leaves alone)."""
    total = largest = 0
    layers = quantized_layers(header, skip) if quantize != "none" else set()
    for key, entry in header.items():
        if not isinstance(entry, dict) or entry.get("dtype") not in _ITEMSIZE:
            continue
        dtype, shape = entry["dtype"], entry.get("shape") or [1]
        if dtype in _FLOAT and key.rpartition(".")[0] in layers:
            n = quantized_bytes(quantize, shape, key.endswith(".weight"), itemsize)
        else:
            n = math.prod(shape) * (itemsize if dtype in _FLOAT else _ITEMSIZE[dtype])
        total += n
        largest = max(largest, n)
    return total, largest


def quantized_layers(header: dict, skip: tuple[str, ...]) -> set[str]:
    """The layers a quantizer converts: those with a matrix or kernel weight (Linear, Conv,
    Embedding: what diffusers' layerwise casting hooks), unless the layer or any layer
    holding it matches a skip pattern (diffusers tests every prefix of the name)."""
    layers = set()
    for key, entry in header.items():
        layer, _, leaf = key.rpartition(".")
        if leaf != "weight" or not isinstance(entry, dict) or len(entry.get("shape") or []) < 2:
            continue
        parts = layer.split(".")
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if not any(re.search(pattern, prefix) for pattern in skip for prefix in prefixes):
            layers.add(layer)
    return layers


def quantized_bytes(quantize: str, shape: list[int], is_weight: bool, itemsize: int) -> int:
    """What one tensor of a quantized layer holds on the device.
    fp8: weight and bias stored as float8 (1 byte), upcast per layer as it runs.
    int8 (torchao weight-only, its Int8Tensor): matrix weights in int8 plus an fp32 scale and
    an int8 zero point per output row; other tensors as they were. nf4 (bitsandbytes): matrix weights packed two
    per byte plus one fp32 absmax per block of 64; other tensors as they were."""
    n = math.prod(shape)
    if quantize == "fp8":
        return n
    if not is_weight or len(shape) != 2:  # torchao and bitsandbytes convert Linear weights only
        return n * itemsize
    if quantize == "int8":
        return n + shape[0] * (4 + 1)
    if quantize == "nf4":
        return n // 2 + math.ceil(n / 64) * 4
    return n * itemsize


def files_bytes(files: list[Path], itemsize: int, quantize: str = "none",
                skip: tuple[str, ...] = ()) -> tuple[int, int]:
    from core.checkpoints import read_header

    total = largest = 0
    for f in files:
        if f.suffix.lower() == ".gguf":
            n = f.stat().st_size  # quantized blocks stay quantized on the device
            total, largest = total + n, max(largest, n // 8)  # a GGUF's tensors: a layer is a small share
            continue
        t, l = tensor_bytes(read_header(f)[0], itemsize, quantize, skip)
        total, largest = total + t, max(largest, l)
    return total, largest


def component_files(folder: Path, names) -> dict[str, list[Path]]:
    """The safetensors a diffusers folder's components (model_index.json's names) load
    (a variant's files when the folder has only those; the plain ones otherwise)."""
    found = {}
    for name in sorted(n for n in names if not n.startswith("_")):
        files = sorted((folder / name).glob("*.safetensors")) if (folder / name).is_dir() else []
        plain = [f for f in files if f.name.count(".") == 1]
        if files:
            found[name] = plain or files
    return found


def stage_needs(p, itemsize: int) -> StageNeeds:
    """A StagePlan's needs, from its files' headers."""
    from core.denoisers import denoiser_component, spec_of

    resolved = p.resolved
    components: dict[str, int] = {}
    notes: dict[str, str] = {}
    largest = 0
    try:
        if resolved.is_file:
            components["checkpoint"], largest = files_bytes([resolved.path], itemsize)
        else:
            denoiser = denoiser_component(resolved.index)
            spec = spec_of(p.stage)
            for name, files in component_files(resolved.path, resolved.index).items():
                quantize, skip = "none", ()
                if denoiser is not None and name == denoiser[0]:
                    files = [spec.file] if spec.file is not None else files
                    quantize, skip = spec.quantize, quantizer_skips(spec.quantize, denoiser[1])
                    how = [f"from {spec.file.name}"] if spec.file is not None else []
                    notes[name] = ", ".join(how + ([f"quantized {quantize}"] if quantize != "none" else []))
                components[name], big = files_bytes(files, itemsize, quantize, skip)
                largest = max(largest, big)
    except (ReadError, OSError):
        components = components or {"weights": 0}  # an unreadable header: the load will say so
    width, height = decode_size(p.size, p.stage.refine_tile, getattr(p, "tiled", False))
    folder = None if resolved.is_file else resolved.path
    channels, upcast = decoder(folder)
    decode_itemsize = 4 if upcast else itemsize
    tile = vae_tile(folder)
    model = str(resolved.path) + (f"+{p.stage.transformer}" if p.stage.transformer else "")
    return StageNeeds(label=stage_label(p.index), model=model, components=components, largest_tensor=largest,
                      activations=activation_bytes(width, height, itemsize),
                      decode=decode_bytes(width, height, channels, decode_itemsize), notes=notes,
                      tiled_decode=tiled_decode_bytes(width, height, channels, decode_itemsize, tile) if tile else None)


def stage_label(index: int) -> str:
    """A stage's name in the plan (index: in project.stages)."""
    return f"stage {index + 1}"


def quantizer_skips(quantize: str, cls_name: str) -> tuple[str, ...]:
    """The layer-name patterns a quantizer leaves at full precision for a diffusers model class:
    for fp8, diffusers' layerwise-casting defaults plus the class's own lists (what
    enable_layerwise_casting adds); for int8 and nf4, the class's fp32 modules."""
    if quantize == "none":
        return ()
    import diffusers

    cls = getattr(diffusers, cls_name, None)
    keep = tuple(getattr(cls, "_keep_in_fp32_modules", None) or ())
    if quantize != "fp8":
        return tuple(re.escape(m) for m in keep)
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    return (*DEFAULT_SKIP_MODULES_PATTERN, *keep, *(getattr(cls, "_skip_layerwise_casting_patterns", None) or ()))


def activation_bytes(width: int, height: int, itemsize: int) -> int:
    return (width // 8) * (height // 8) * LATENT_CHANNELS * ACTIVATION_FACTOR * itemsize


def module_bytes(module) -> int:
    """Bytes of a torch module's parameters and buffers (works on the meta device)."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
