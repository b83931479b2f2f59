"""Reading a ComfyUI graph as a Handoff project: the walk back from the image it saves.

The output followed is the SaveImage (else PreviewImage) at the end of the longest chain
of samplers; the others are listed as not followed. Each KSampler or KSamplerAdvanced on
the way is a stage. A sampler that takes the previous one's latents directly is an
ensemble when KSamplerAdvanced start/end steps split one schedule, else a latent refine
at its denoise; one that takes them through VAEDecode → ImageScale*/ImageUpscaleWithModel
→ VAEEncode is a pixel refine at strength = denoise, with the scale as its upscale and the
upscale model as its upscaler, unless the ImageUpscaleWithModel has a title of its own
(Handoff titles its upscale stages so): then it is an upscale stage, sized by the resize
that follows it, and the sampler a pixel refine of its image; LatentUpscale(By) becomes a pixel upscale (Handoff resizes
pixels, never latents). What a sampler is given (model, LoRAs, prompts, ControlNet) is
read by comfyui_read_inputs. Every node it could not map is listed in the report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core import model_info
from core.errors import ReadError
from core.interop import samplers
from core.interop.comfyui_nodes import UPSCALE_DEFAULT_TITLES, UPSCALE_STAGE_TITLE, Graph, Link, Node
from core.interop.comfyui_read_inputs import DENOISER_LOADERS, PART_LOADERS, SamplerInputs
from core.interop.reading import Imported, Where, size_of
from core.project import MAX_UPSCALE, Project, Stage
from core.strength import effective_steps

SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced")
_DEFAULT_TITLES = {"KSampler", "KSampler (Advanced)", "KSamplerAdvanced"}
# Nodes that are understood but whose settings Handoff does not apply, and why.
_EXPLAINED = {
    "VAELoader": "each stage decodes with its own model's VAE",
    "CLIPLoader": "each stage encodes with its own model's text encoders",
    "DualCLIPLoader": "each stage encodes with its own model's text encoders",
    "TripleCLIPLoader": "each stage encodes with its own model's text encoders",
    "CLIPSetLastLayer": "clip skip is not supported",
}


@dataclass
class _In:
    """What comes into a point of the graph: "empty" (a new latent of `size`), "stage" (a
    sampler's latents), "init" (a loaded image), through "pixels" or not, scaled."""

    kind: str
    node: str | None = None  # the sampler (stage) or LoadImage (init)
    size: tuple[int, int] | None = None  # empty latent size
    scale: float = 1.0  # product of *By factors
    target: tuple[int, int] | None = None  # an absolute resize (ImageScale, LatentUpscale)
    pixels: bool = False  # through VAEDecode … VAEEncode
    latent_upscale: bool = False  # a LatentUpscale on the way
    upscaler: str | None = None  # an ImageUpscaleWithModel's model file on the way
    # From an upscale stage: the size its resize makes (the ImageScale right after its model
    # is the stage's, as Handoff writes it; what follows is the next stage's), and whether
    # nothing came between the stage and this point yet.
    stage_size: tuple[int, int] | None = None
    stage_scale: float = 1.0  # … or the factor its ImageScaleBy (titled as the stage) adds
    stage_title: str = ""
    fresh: bool = False


@dataclass
class _StageSpec:
    node: Node  # a sampler, or the ImageUpscaleWithModel of an upscale stage
    came: _In  # what its latent_image (an upscale stage's image) is
    out: _In  # what its result comes into the next stage (or the saved image) as

    @property
    def upscales(self) -> bool:
        return self.node.class_type == "ImageUpscaleWithModel"


@dataclass
class _Reader(SamplerInputs):
    graph: Graph
    where: Where
    lookup: Any
    source: str
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    visited: set = field(default_factory=set)

    def run(self) -> Imported:
        self.unmapped += self.graph.unmapped
        live = {k: n for k, n in self.graph.nodes.items() if not n.muted}
        for n in self.graph.nodes.values():
            if n.muted:
                self.unmapped.append(f"node {n.id} ({n.class_type}) is muted or bypassed: left out")
        came, specs = self._chain(self._output(live))
        project = self._project(specs)
        if came.upscaler:  # a model upscale after the last sampler: Handoff's upscale stage
            final = (project.width, project.height)
            for stage in project.stages:
                final = (round(final[0] * stage.upscale), round(final[1] * stage.upscale))
            label = f"stage {len(project.stages) + 1} (upscale)"
            project.stages.append(Stage(model=came.upscaler, upscale=self._factor(came, final, label)))
        elif came.scale != 1 or came.target:
            self.unmapped.append("a resize after the last sampler (before saving): not applied")
        self._report_unvisited(live)
        return Imported(project, "ComfyUI", self.source, self.unmapped, self.notes)

    def _chain(self, output: Node) -> tuple[_In, list[_StageSpec]]:
        """What the output saves, and the samplers that made it, first to last."""
        self.visited.add(output.id)
        came = self._image(output.inputs.get("images"), "the saved image")
        if came.kind != "stage":
            raise self.where.error(f"node {output.id} ({output.class_type})", "saves no image a sampler made")
        specs: list[_StageSpec] = []
        node_id: str | None = came.node
        seen: set[str] = set()
        out = came
        while node_id is not None:
            if node_id in seen:
                raise self.where.error(f"node {node_id}", "is part of a loop of samplers")
            seen.add(node_id)
            node = self.graph.nodes[node_id]
            if node.class_type == "ImageUpscaleWithModel":
                taken = self._image(node.inputs.get("image"), f"node {node_id} image")
            else:
                taken = self._latent(node.inputs.get("latent_image"), f"node {node_id} latent_image")
            specs.append(_StageSpec(node, taken, out))
            out = taken
            node_id = taken.node if taken.kind == "stage" else None
        specs.reverse()
        return came, specs

    # ------------------------------------------------------------ the graph walk

    def _output(self, live: dict[str, Node]) -> Node:
        def order(n: Node):
            return (0, int(n.id)) if n.id.isdigit() else (1, n.id)

        def samplers_before(n: Node) -> int:
            try:  # a trial walk, its findings dropped: only the chain's length counts
                return len(_Reader(self.graph, self.where, self.lookup, self.source)._chain(n)[1])
            except ReadError:
                return 0

        outputs = [n for n in live.values() if n.class_type in ("SaveImage", "PreviewImage")]
        if not outputs:
            raise self.where.error("the graph", "has no SaveImage or PreviewImage node: nothing makes an image")
        length = {n.id: samplers_before(n) for n in outputs}
        saves = sorted(outputs, key=lambda n: (-length[n.id], n.class_type != "SaveImage", order(n)))
        for other in saves[1:]:
            self.unmapped.append(f"node {other.id} ({other.class_type}): another output "
                                 f"({length[other.id]} sampler{'s' if length[other.id] != 1 else ''} before it, "
                                 f"against {length[saves[0].id]}), not followed")
        return saves[0]

    def _node(self, value: Any, what: str) -> Node:
        if not isinstance(value, Link):
            raise self.where.error(what, "is not connected to a node")
        node = self.graph.nodes.get(value.node)
        if node is None:
            raise self.where.error(what, f"links to node {value.node}, which the graph does not have")
        if node.muted:
            raise self.where.error(what, f"comes from node {node.id} ({node.class_type}), which is muted")
        self.visited.add(node.id)
        return node

    def _pass(self, node: Node, names: tuple[str, ...]) -> Any | None:
        """An unknown node on the path: followed through its first input of a known kind."""
        link = next((node.inputs[n] for n in names if isinstance(node.inputs.get(n), Link)), None)
        if link is not None:
            self.unmapped.append(f"node {node.id} ({node.class_type}): passed through, not applied")
        return link

    def _image(self, value: Any, what: str, depth: int = 0) -> _In:
        if depth > 64:
            raise self.where.error(what, "goes through too many nodes")
        node = self._node(value, what)
        t = node.class_type
        if t == "VAEDecode":
            came = self._latent(node.inputs.get("samples"), f"node {node.id} samples", depth + 1)
            return came
        if t in ("ImageScaleBy", "ImageScale"):
            came = self._image(node.inputs.get("image"), f"node {node.id} image", depth + 1)
            self._scale(came, node, "image")
            if came.fresh and (t == "ImageScale" or node.title == came.stage_title):  # the upscale stage's resize
                came.stage_size, came.target = came.target, None
                came.stage_scale, came.scale = came.scale, 1.0
            came.fresh = False
            return came
        if t == "ImageUpscaleWithModel" and node.title not in UPSCALE_DEFAULT_TITLES:
            return _In("stage", node.id, fresh=True, stage_title=node.title)  # a stage, as a sampler is
        if t == "ImageUpscaleWithModel":
            came = self._image(node.inputs.get("image"), f"node {node.id} image", depth + 1)
            came.fresh = False
            model, factor = self._upscale_model(node)
            if came.upscaler:
                self.unmapped.append(f"node {node.id}: a second upscale model on the way, {model!r}: resized "
                                     f"×{factor:g} with the first")
            came.upscaler = came.upscaler or model
            came.scale *= factor
            return came
        if t == "LoadImage":
            return _In("init", node.id)
        link = self._pass(node, ("image", "images", "pixels"))
        if link is None:
            raise self.where.error(what, f"comes from node {node.id} ({t}), which Handoff cannot follow to a sampler")
        return self._image(link, what, depth + 1)

    def _latent(self, value: Any, what: str, depth: int = 0) -> _In:
        if depth > 64:
            raise self.where.error(what, "goes through too many nodes")
        node = self._node(value, what)
        t = node.class_type
        if t in SAMPLER_CLASSES:
            return _In("stage", node.id)
        if t in ("EmptyLatentImage", "EmptySD3LatentImage"):
            size = size_of(self.where.at(f"node {node.id} ({t})"), node.inputs.get("width"), node.inputs.get("height"))
            batch = node.inputs.get("batch_size", 1)
            if batch not in (1, None):
                self.unmapped.append(f"node {node.id}: batch size {batch}: Handoff makes one image")
            return _In("empty", node.id, size=size)
        if t in ("LatentUpscaleBy", "LatentUpscale"):
            came = self._latent(node.inputs.get("samples"), f"node {node.id} samples", depth + 1)
            self._scale(came, node, "latent")
            came.latent_upscale = True
            return came
        if t == "VAEEncode":
            came = self._image(node.inputs.get("pixels"), f"node {node.id} pixels", depth + 1)
            came.pixels = True
            return came
        link = self._pass(node, ("samples", "latent", "latent_image", "latents"))
        if link is None:
            raise self.where.error(what, f"comes from node {node.id} ({t}), which Handoff cannot follow to a sampler")
        return self._latent(link, what, depth + 1)

    def _scale(self, came: _In, node: Node, kind: str) -> None:
        w = self.where.at(f"node {node.id} ({node.class_type})")
        if node.class_type.endswith("By"):
            factor = w.number(node.inputs.get("scale_by"), "scale_by")
            if factor <= 0:
                raise w.error("scale_by", f"is {factor:g}, not a positive factor")
            came.scale *= factor
        else:
            width = w.whole(node.inputs.get("width"), "width")
            height = w.whole(node.inputs.get("height"), "height")
            if width < 0 or height < 0 or width == height == 0:
                raise w.error("size", f"{width}x{height} is not a size")
            came.target = (width, height)
            came.scale = 1.0  # a size, not a factor: what was scaled before no longer counts
        method = node.inputs.get("upscale_method")
        if kind == "image" and isinstance(method, str) and method != "lanczos":
            self.notes.append(f"node {node.id}: resizes with '{method}'; Handoff resizes with Lanczos")

    # ------------------------------------------------------------ stages

    def _project(self, specs: list[_StageSpec]) -> Project:
        first = specs[0].came
        size = first.size
        if size is None:
            size = (1024, 1024)
            self.notes.append("the first sampler refines a loaded image whose size the graph does not say: "
                              "1024x1024 assumed (match it to the init image)")
        if first.kind == "init":
            image = self.graph.nodes[first.node].inputs.get("image")
            self.notes.append(f"the first stage refines an init image ({image!r}, a LoadImage node) that is not in "
                              "the file: open that image as the init image before running")
        stages: list[Stage] = []
        prompt = negative = ""
        seed = 0
        current = size
        prev: _StageSpec | None = None
        prompted = False  # the project's prompt and seed are the first sampler's
        for n, spec in enumerate(specs):
            label = f"stage {n + 1}"
            node = spec.node
            if spec.upscales:
                stage = self._upscale_stage(spec, current, label)
                current = (round(current[0] * stage.upscale), round(current[1] * stage.upscale))
                stages.append(stage)
                prev = spec
                continue
            w = self.where.at(f"node {node.id} ({node.class_type})")
            advanced = node.class_type == "KSamplerAdvanced"
            steps = w.whole(node.inputs.get("steps"), "steps")
            if steps < 1:
                raise w.error("steps", f"is {steps}, not at least 1")
            cfg = w.number(node.inputs.get("cfg", 7.0), "cfg")
            stage_seed = w.seed(node.inputs.get("noise_seed" if advanced else "seed", 0),
                                "noise_seed" if advanced else "seed", self.notes)
            loras: list = []
            model = self._model(node.inputs.get("model"), label, w, loras)
            scheduler, notice = samplers.from_comfy(node.inputs.get("sampler_name"), node.inputs.get("scheduler"))
            if notice:
                self.notes.append(f"{label}: {notice}")
            if scheduler and scheduler == samplers.name_for_config(model_info.scheduler_config(model)):
                scheduler = None  # the sampler the model ships with: its default, as Handoff names it
            found: dict = {}
            pos = self._text(node.inputs.get("positive"), f"{label} positive", w, found)
            neg = self._text(node.inputs.get("negative"), f"{label} negative", w, found)
            stage = Stage(model=model, steps=steps, guidance=cfg, scheduler=scheduler, loras=loras,
                          controlnet=found.get("controlnet"))
            if node.title and node.title not in _DEFAULT_TITLES:
                stage.name = node.title
            came = spec.came
            factor = self._factor(came, current, label)
            if n == 0:
                prompt, negative, seed, prompted = pos, neg, stage_seed, True
                if came.kind == "init":
                    stage.handoff = "pixel"
                    stage.strength = self._denoise(node, w, steps)
                    stage.upscale = factor
                    self._steps_note(node, stage, label)
                    stage.upscaler = came.upscaler
                elif self._denoise(node, w, steps) < 1:
                    self.notes.append(f"{label}: denoise below 1 on an empty latent: Handoff generates from full noise")
            else:
                if not prompted:  # after an upscale stage that came first
                    prompt, negative, seed, prompted = pos, neg, stage_seed, True
                self._handoff(stage, spec, prev, factor, w, steps, label)
                if stage_seed != seed and not (advanced and node.inputs.get("add_noise") == "disable"):
                    stage.seed = stage_seed
                base = prompt.rstrip().rstrip(",")
                if pos != prompt:
                    if base and pos.startswith(base + ", "):
                        stage.prompt_suffix = pos[len(base) + 2:]
                    else:
                        stage.prompt = pos
                if neg != negative:
                    stage.negative_prompt = neg
            if advanced:
                end = w.whole(node.inputs.get("end_at_step", 10000), "end_at_step")
                nxt = specs[n + 1] if n + 1 < len(specs) else None
                if end < steps and not (nxt and nxt.node.class_type == "KSamplerAdvanced" and nxt.came.kind == "stage"
                                        and not nxt.came.pixels):
                    self.notes.append(f"{label}: stops at step {end} of {steps} with nothing to finish its schedule: "
                                      "Handoff runs it to the end")
            current = (round(current[0] * stage.upscale), round(current[1] * stage.upscale))
            stages.append(stage)
            prev = spec
        return Project(prompt=prompt, negative_prompt=negative, width=size[0], height=size[1], seed=seed, stages=stages)

    def _upscale_stage(self, spec: _StageSpec, current: tuple[int, int], label: str) -> Stage:
        """An upscale stage: its model, by the size the resize after it makes, else by the
        model's own factor."""
        model, native = self._upscale_model(spec.node, sized=spec.out.stage_size is not None)
        if model is None:
            raise self.where.error(f"node {spec.node.id} ({spec.node.title})", "is an upscale stage without an "
                                   "UpscaleModelLoader: its model cannot be read")
        size = spec.out.stage_size
        factor = self._factor(_In("stage", target=size) if size else _In("stage", scale=native * spec.out.stage_scale),
                              current, label)
        stage = Stage(model=model, upscale=factor)
        if spec.node.title != UPSCALE_STAGE_TITLE:
            stage.name = spec.node.title
        return stage

    def _factor(self, came: _In, current: tuple[int, int], label: str) -> float:
        factor = came.scale
        if came.target:
            tw, th = came.target
            fw = tw / current[0] if tw else None
            fh = th / current[1] if th else None
            factor *= fw or fh or 1.0
            if fw and fh and abs(fw - fh) > 0.02:
                self.notes.append(f"{label}: the resize to {tw}x{th} changes the aspect ratio; Handoff scales both "
                                  f"sides ×{factor:g}")
        factor = round(factor, 4)
        if factor < 1 or factor > MAX_UPSCALE:
            clamped = min(max(factor, 1.0), MAX_UPSCALE)
            self.notes.append(f"{label}: a resize ×{factor:g} is outside Handoff's 1..{MAX_UPSCALE:g}: ×{clamped:g} used")
            factor = clamped
        return factor

    def _denoise(self, node: Node, w: Where, steps: int) -> float:
        if node.class_type == "KSamplerAdvanced":
            start = w.whole(node.inputs.get("start_at_step", 0), "start_at_step")
            return round(1 - min(max(start, 0), steps) / steps, 4) or 1 / steps
        denoise = w.number(node.inputs.get("denoise", 1.0), "denoise")
        if not 0 < denoise <= 1:
            raise w.error("denoise", f"is {denoise:g}, not in (0, 1]")
        # The UI stores a slider's value with float noise (0.4999999999999999 for 0.5),
        # which would make Handoff run one step fewer (int(8 × 0.4999…) = 3).
        return round(denoise, 4)

    def _steps_note(self, node: Node, stage: Stage, label: str) -> None:
        """KSampler at denoise d runs all its N steps over the last d of a longer schedule;
        Handoff (as diffusers) runs N × d steps of an N-step one. Same steps field, fewer
        steps run: say how to match them."""
        if node.class_type != "KSampler" or stage.strength >= 1:
            return
        runs = max(1, effective_steps(stage.steps, stage.strength))
        same = max(stage.steps, round(stage.steps / stage.strength))
        self.notes.append(f"{label}: ComfyUI ran {stage.steps} steps at denoise {stage.strength:g}; Handoff runs "
                          f"{runs} of {stage.steps} (steps × strength): set {same} steps to run as many")

    def _handoff(self, stage: Stage, spec: _StageSpec, prev: _StageSpec, factor: float, w: Where, steps: int,
                 label: str) -> None:
        came, node = spec.came, spec.node
        split = (node.class_type == "KSamplerAdvanced" and prev.node.class_type == "KSamplerAdvanced"
                 and came.kind == "stage" and not came.pixels)
        if split:
            start = w.whole(node.inputs.get("start_at_step", 0), "start_at_step")
            prev_end = Where(self.where.prefix).at(f"node {prev.node.id}").whole(
                prev.node.inputs.get("end_at_step", 10000), "end_at_step")
            if start > 0 and factor == 1:
                stage.handoff = "ensemble"
                stage.switch_at = round(min(start, steps) / steps, 4)
                if prev_end != start and prev_end < steps:
                    self.notes.append(f"{label}: the previous sampler ends at step {prev_end} but this one starts at "
                                      f"{start}: Handoff splits the schedule at {stage.switch_at:g}")
                return
        stage.strength = self._denoise(node, w, steps)
        stage.upscale = factor
        self._steps_note(node, stage, label)
        if came.pixels or factor != 1:
            stage.handoff = "pixel"
            stage.upscaler = came.upscaler
            if came.latent_upscale and factor != 1:
                self.notes.append(f"{label}: the graph upscales latents; Handoff upscales pixels only, so the decoded "
                                  f"image is resized ×{factor:g} (Lanczos) and refined at the new size")
        else:
            stage.handoff = "latent"

    def _report_unvisited(self, live: dict[str, Node]) -> None:
        for n in live.values():
            if n.id in self.visited or n.class_type in ("SaveImage", "PreviewImage"):
                continue
            if n.class_type in _EXPLAINED or n.class_type in PART_LOADERS:
                why = _EXPLAINED.get(n.class_type, "each stage encodes with its own model's text encoders")
                self.unmapped.append(f"node {n.id} ({n.class_type}): not applied, {why}")
            elif n.class_type in ("CheckpointLoaderSimple", "CheckpointLoader", "CLIPTextEncode", "VAEDecode",
                                  "VAEEncode", "EmptyLatentImage", "EmptySD3LatentImage", *DENOISER_LOADERS):
                continue  # plumbing of the stages read, or of a branch already reported
            else:
                self.unmapped.append(f"node {n.id} ({n.class_type}): not on the path to the saved image, not read")



def read_nodes(graph: Graph, where: Where, lookup, source: str) -> Imported:
    """The project a graph (either format, as comfyui_nodes reads it) describes."""
    return _Reader(graph, where, lookup, source).run()
