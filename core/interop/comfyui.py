"""ComfyUI graphs (the `prompt` API chunk, the `workflow` UI chunk, exported .json files)
read as Handoff projects, and Handoff projects written as graphs ComfyUI rebuilds.

Reading walks back from the image the graph saves: each KSampler or KSamplerAdvanced on
the way is a stage. A sampler that takes the previous one's latents directly is an
ensemble when KSamplerAdvanced start/end steps split one schedule, else a latent refine
at its denoise; one that takes them through VAEDecode (ImageScale) VAEEncode is a pixel
refine at strength = denoise, with the scale as its upscale; LatentUpscale becomes a
pixel upscale (Handoff resizes pixels, never latents). Every node it could not map is
listed in the report.

Writing builds, per stage: its loader, prompt encoders and sampler (KSamplerAdvanced with
start and end steps for an ensemble; VAEDecode, ImageScaleBy, VAEEncode then KSampler at
denoise = strength for a pixel refine or upscale), then VAEDecode and SaveImage.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import model_info
from core.errors import ProjectError
from core.families.sdxl import REFINER_AESTHETIC_SCORE, REFINER_NEGATIVE_AESTHETIC_SCORE
from core.interop import samplers
from core.interop.chain import file_name, job
from core.interop.comfyui_nodes import Graph, Link, Node, from_api, from_ui, to_api, to_ui
from core.interop.reading import Imported, Where, size_of
from core.project import MAX_UPSCALE, Project, Stage
from core.ran import StageRan

SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced")
_DEFAULT_TITLES = {"KSampler", "KSampler (Advanced)", "KSamplerAdvanced"}
# Nodes that are understood but whose settings Handoff does not apply, and why.
_EXPLAINED = {
    "VAELoader": "each stage decodes with its own model's VAE",
    "CLIPLoader": "each stage encodes with its own model's text encoders",
    "DualCLIPLoader": "each stage encodes with its own model's text encoders",
    "TripleCLIPLoader": "each stage encodes with its own model's text encoders",
    "CLIPSetLastLayer": "clip skip is not supported",
    "ControlNetLoader": "a ControlNet is not mapped from a ComfyUI graph yet (set it on the stage)",
    "UpscaleModelLoader": "an upscale model is not mapped from a ComfyUI graph yet (set the stage's upscaler file)",
}


def looks_like_api(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def looks_like_ui(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def read_graph(data: Any, where: Where, lookup, source: str) -> Imported:
    """A project from a ComfyUI graph, in either format (parsed JSON)."""
    graph = from_api(data, where) if looks_like_api(data) else from_ui(data, where)
    return _Reader(graph, where, lookup, source).run()


def read_json_text(text: str, where: Where, lookup, source: str) -> Imported:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise where.error("the JSON", f"cannot be parsed ({exc})") from exc
    if not (looks_like_api(data) or looks_like_ui(data)):
        raise where.error("the JSON", "is neither a ComfyUI prompt (API format) nor a workflow")
    return read_graph(data, where, lookup, source)


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


@dataclass
class _StageSpec:
    node: Node
    came: _In  # what its latent_image is


@dataclass
class _Reader:
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
        output = self._output(live)
        self.visited.add(output.id)
        came = self._image(output.inputs.get("images"), "the saved image")
        if came.kind != "stage":
            raise self.where.error(f"node {output.id} ({output.class_type})", "saves no image a sampler made")
        specs: list[_StageSpec] = []
        node_id: str | None = came.node
        seen: set[str] = set()
        while node_id is not None:
            if node_id in seen:
                raise self.where.error(f"node {node_id}", "is part of a loop of samplers")
            seen.add(node_id)
            sampler = self.graph.nodes[node_id]
            latent = self._latent(sampler.inputs.get("latent_image"), f"node {node_id} latent_image")
            specs.append(_StageSpec(sampler, latent))
            node_id = latent.node if latent.kind == "stage" else None
        specs.reverse()
        if came.scale != 1 or came.target:
            self.unmapped.append("a resize after the last sampler (before saving): not applied")
        project = self._project(specs)
        self._report_unvisited(live)
        return Imported(project, "ComfyUI", self.source, self.unmapped, self.notes)

    # ------------------------------------------------------------ the graph walk

    def _output(self, live: dict[str, Node]) -> Node:
        def order(n: Node):
            return (0, int(n.id)) if n.id.isdigit() else (1, n.id)

        saves = sorted((n for n in live.values() if n.class_type in ("SaveImage", "PreviewImage")),
                       key=lambda n: (n.class_type != "SaveImage", order(n)))
        if not saves:
            raise self.where.error("the graph", "has no SaveImage or PreviewImage node: nothing makes an image")
        for other in saves[1:]:
            self.unmapped.append(f"node {other.id} ({other.class_type}): another output, not followed")
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
            return came
        if t == "ImageUpscaleWithModel":
            came = self._image(node.inputs.get("image"), f"node {node.id} image", depth + 1)
            model = self._upscale_model_name(node)
            m = re.match(r"(\d+(?:\.\d+)?)x", model or "", re.IGNORECASE)
            factor = float(m.group(1)) if m else 1.0
            came.scale *= factor
            self.notes.append(f"node {node.id}: upscale model '{model}' not applied: the image is resized "
                              f"×{factor:g} with Lanczos instead")
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
        method = node.inputs.get("upscale_method")
        if kind == "image" and isinstance(method, str) and method != "lanczos":
            self.notes.append(f"node {node.id}: resizes with '{method}'; Handoff resizes with Lanczos")

    def _upscale_model_name(self, node: Node) -> str | None:
        link = node.inputs.get("upscale_model")
        if isinstance(link, Link) and link.node in self.graph.nodes:
            loader = self.graph.nodes[link.node]
            self.visited.add(loader.id)
            name = loader.inputs.get("model_name")
            return name if isinstance(name, str) else None
        return None

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
        for n, spec in enumerate(specs):
            label = f"stage {n + 1}"
            node = spec.node
            w = self.where.at(f"node {node.id} ({node.class_type})")
            advanced = node.class_type == "KSamplerAdvanced"
            steps = w.whole(node.inputs.get("steps"), "steps")
            if steps < 1:
                raise w.error("steps", f"is {steps}, not at least 1")
            cfg = w.number(node.inputs.get("cfg", 7.0), "cfg")
            stage_seed = w.seed(node.inputs.get("noise_seed" if advanced else "seed", 0),
                                "noise_seed" if advanced else "seed", self.notes)
            model = self._model(node.inputs.get("model"), label, w)
            scheduler, notice = samplers.from_comfy(node.inputs.get("sampler_name"), node.inputs.get("scheduler"))
            if notice:
                self.notes.append(f"{label}: {notice}")
            if scheduler and scheduler == samplers.name_for_config(model_info.scheduler_config(model)):
                scheduler = None  # the sampler the model ships with: its default, as Handoff names it
            pos = self._text(node.inputs.get("positive"), f"{label} positive", w)
            neg = self._text(node.inputs.get("negative"), f"{label} negative", w)
            stage = Stage(model=model, steps=steps, guidance=cfg, scheduler=scheduler)
            if node.title and node.title not in _DEFAULT_TITLES:
                stage.name = node.title
            came = spec.came
            factor = self._factor(came, current, label)
            if n == 0:
                prompt, negative, seed = pos, neg, stage_seed
                if came.kind == "init":
                    stage.handoff = "pixel"
                    stage.strength = self._denoise(node, w, steps)
                    stage.upscale = factor
                    self._steps_note(node, stage, label)
                elif self._denoise(node, w, steps) < 1:
                    self.notes.append(f"{label}: denoise below 1 on an empty latent: Handoff generates from full noise")
            else:
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
        return denoise

    def _steps_note(self, node: Node, stage: Stage, label: str) -> None:
        """KSampler at denoise d runs all its N steps over the last d of a longer schedule;
        Handoff (as diffusers) runs N × d steps of an N-step one. Same steps field, fewer
        steps run: say how to match them."""
        if node.class_type != "KSampler" or stage.strength >= 1:
            return
        runs = max(1, int(stage.steps * stage.strength))
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
            if came.latent_upscale and factor != 1:
                self.notes.append(f"{label}: the graph upscales latents; Handoff upscales pixels only, so the decoded "
                                  f"image is resized ×{factor:g} (Lanczos) and refined at the new size")
        else:
            stage.handoff = "latent"

    def _model(self, value: Any, label: str, w: Where, depth: int = 0) -> str:
        if depth > 64:
            raise w.error("model", "goes through too many nodes")
        node = self._node(value, f"{w.prefix} model")
        t = node.class_type
        nw = self.where.at(f"node {node.id} ({t})")
        if t == "CheckpointLoaderSimple":
            return self.lookup.resolve(nw.text(node.inputs.get("ckpt_name"), "ckpt_name"), None, label, self.notes)
        if t == "DiffusersLoader":
            return self.lookup.resolve(nw.text(node.inputs.get("model_path"), "model_path"), None, label, self.notes)
        if t == "UNETLoader":
            name = nw.text(node.inputs.get("unet_name"), "unet_name")
            self.notes.append(f"{label}: '{name}' is a transformer/UNet alone (UNETLoader): point the stage at a "
                              "whole diffusers model or checkpoint of that model")
            return self.lookup.resolve(name, None, label, self.notes)
        if t in ("LoraLoader", "LoraLoaderModelOnly"):
            strength = node.inputs.get("strength_model")
            self.unmapped.append(f"LoRA {node.inputs.get('lora_name')!r} (node {node.id}, model strength {strength}): "
                                 "its LoRA list is not mapped from this file yet, not applied")
            return self._model(node.inputs.get("model"), label, w, depth + 1)
        link = self._pass(node, ("model",))
        if link is None:
            raise w.error("model", f"comes from node {node.id} ({t}), which Handoff cannot read a model from")
        return self._model(link, label, w, depth + 1)

    def _text(self, value: Any, what: str, w: Where, depth: int = 0) -> str:
        if value is None:
            return ""
        if depth > 64:
            raise w.error(what, "goes through too many nodes")
        node = self._node(value, f"{w.prefix} {what}")
        t = node.class_type
        nw = self.where.at(f"node {node.id} ({t})")
        if t == "CLIPTextEncode":
            return self._literal(node.inputs.get("text"), nw, "text")
        if t == "CLIPTextEncodeSDXL":
            g = self._literal(node.inputs.get("text_g"), nw, "text_g")
            l_ = self._literal(node.inputs.get("text_l"), nw, "text_l")
            if l_ and l_ != g:
                self.unmapped.append(f"node {node.id}: a separate text_l prompt ({l_[:40]!r}): Handoff encodes "
                                     "text_g with both text encoders")
            return g
        if t == "CLIPTextEncodeSDXLRefiner":
            negative = what.endswith("negative")
            used = REFINER_NEGATIVE_AESTHETIC_SCORE if negative else REFINER_AESTHETIC_SCORE
            ascore = node.inputs.get("ascore")
            if ascore is not None and ascore != used:
                self.unmapped.append(f"node {node.id}: {'negative ' if negative else ''}aesthetic score {ascore}: "
                                     f"Handoff's refiner uses {used:g}")
            return self._literal(node.inputs.get("text"), nw, "text")
        if t == "ConditioningZeroOut":
            self.unmapped.append(f"node {node.id} (ConditioningZeroOut): a zeroed {what.split()[-1]}, taken as an "
                                 "empty prompt")
            return ""
        if t in ("ControlNetApply", "ControlNetApplyAdvanced"):
            self.unmapped.append(f"node {node.id} ({t}, strength {node.inputs.get('strength')}): ControlNet is not "
                                 "supported yet, not applied")
            if t == "ControlNetApply":
                return self._text(node.inputs.get("conditioning"), what, w, depth + 1)
            slot = value.slot if isinstance(value, Link) else 0
            return self._text(node.inputs.get("negative" if slot == 1 else "positive"), what, w, depth + 1)
        link = self._pass(node, ("conditioning", "conditioning_to", "conditioning_1", "positive"))
        if link is None:
            self.unmapped.append(f"node {node.id} ({t}): makes the {what.split()[-1]} prompt in a way Handoff cannot "
                                 "read: taken as empty")
            return ""
        return self._text(link, what, w, depth + 1)

    def _literal(self, value: Any, w: Where, what: str) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, Link):
            node = self.graph.nodes.get(value.node)
            texts = [v for k, v in (node.inputs.items() if node else []) if isinstance(v, str)
                     and k in ("text", "string", "value", "prompt", "text_g")]
            if node is not None and len(texts) == 1:
                self.visited.add(node.id)
                self.notes.append(f"node {node.id} ({node.class_type}): its text taken as the prompt")
                return texts[0]
            self.unmapped.append(f"{w.prefix}: {what} comes from a node Handoff cannot read: taken as empty")
            return ""
        raise w.error(what, f"is {value!r}, not text")

    def _report_unvisited(self, live: dict[str, Node]) -> None:
        for n in live.values():
            if n.id in self.visited or n.class_type in ("SaveImage", "PreviewImage"):
                continue
            if n.class_type in _EXPLAINED:
                self.unmapped.append(f"node {n.id} ({n.class_type}): not applied, {_EXPLAINED[n.class_type]}")
            elif n.class_type in ("CheckpointLoaderSimple", "CLIPTextEncode", "VAEDecode", "VAEEncode",
                                  "EmptyLatentImage", "EmptySD3LatentImage"):
                continue  # plumbing of the stages read, or of a branch already reported
            else:
                self.unmapped.append(f"node {n.id} ({n.class_type}): not on the path to the saved image, not read")


# ---------------------------------------------------------------- writing


def graph_for(project: Project, upto: int | None = None, ran: dict[int, StageRan] | None = None) -> Graph:
    """The job (up to and including stage `upto`) as a ComfyUI graph: with `ran` (the
    run's records by stage index), the handoffs and strengths that ran, so a latent
    handoff that fell back to pixels is a VAEDecode → VAEEncode here too."""
    stages = job(project, upto, ran)
    g = Graph()
    counter = iter(range(1, 10_000))

    def add(class_type: str, title: str = "", **inputs) -> str:
        nid = str(next(counter))
        g.nodes[nid] = Node(nid, class_type, inputs, title)
        return nid

    loaders: dict[str, str] = {}
    prev_sampler: str | None = None
    prev_loader: str | None = None
    for pos, s in enumerate(stages):
        stage = s.stage
        loader = loaders.get(stage.model)
        if loader is None:
            loader = loaders[stage.model] = _loader(add, stage.model)
        positive = add("CLIPTextEncode", text=s.prompt, clip=Link(loader, 1))
        negative = add("CLIPTextEncode", text=s.negative, clip=Link(loader, 1))
        nxt = stages[pos + 1] if pos + 1 < len(stages) else None
        split_next = nxt is not None and nxt.handoff == "ensemble"
        if s.handoff == "generate":
            latent = Link(add("EmptySD3LatentImage" if s.flow else "EmptyLatentImage", width=s.size[0],
                              height=s.size[1], batch_size=1), 0)
        elif s.handoff == "ensemble" or s.handoff == "latent":
            latent = Link(prev_sampler, 0)
        else:  # pixel: from the previous stage's decode, or the init image
            if prev_sampler is None:
                image = Link(add("LoadImage", image=Path(project.init_image or "init.png").name, upload="image"), 0)
            else:
                image = Link(add("VAEDecode", samples=Link(prev_sampler, 0), vae=Link(prev_loader, 2)), 0)
            if stage.upscale != 1:
                image = Link(add("ImageScaleBy", upscale_method="lanczos", scale_by=stage.upscale, image=image), 0)
            latent = Link(add("VAEEncode", pixels=image, vae=Link(loader, 2)), 0)
        name, _ = s.sampler()
        sampler_name, scheduler = samplers.to_comfy(name, s.flow)
        common = dict(steps=stage.steps, cfg=stage.guidance, sampler_name=sampler_name, scheduler=scheduler,
                      model=Link(loader, 0), positive=Link(positive, 0), negative=Link(negative, 0), latent_image=latent)
        title = stage.name
        if s.handoff == "ensemble" or split_next:
            schedule = stages[pos - 1].stage.steps if s.handoff == "ensemble" else stage.steps
            common["steps"] = schedule
            start = _switch_step(schedule, stage.switch_at) if s.handoff == "ensemble" else 0
            end = _switch_step(schedule, nxt.stage.switch_at) if split_next else 10000
            prev_sampler = add("KSamplerAdvanced", title, add_noise="disable" if s.handoff == "ensemble" else "enable",
                               noise_seed=s.seed, start_at_step=start, end_at_step=end,
                               return_with_leftover_noise="enable" if split_next else "disable", **common)
        else:
            denoise = 1.0 if s.handoff == "generate" else s.strength
            prev_sampler = add("KSampler", title, seed=s.seed, denoise=denoise, **common)
        prev_loader = loader
    if prev_sampler is not None:
        decoded = add("VAEDecode", samples=Link(prev_sampler, 0), vae=Link(prev_loader, 2))
        add("SaveImage", filename_prefix="Handoff", images=Link(decoded, 0))
    return g


def _switch_step(steps: int, switch_at: float) -> int:
    return min(steps, max(0, round(steps * switch_at)))


def _loader(add, ref: str) -> str:
    text = ref.strip()
    if not text.lower().endswith((".safetensors", ".ckpt")) and (text.startswith(("/", "~", "."))
                                                                or (len(text) > 1 and text[1] == ":")):
        return add("DiffusersLoader", model_path=file_name(text))
    return add("CheckpointLoaderSimple", ckpt_name=file_name(text))


def api_prompt(project: Project, upto: int | None = None, ran: dict[int, StageRan] | None = None) -> dict[str, Any]:
    return to_api(graph_for(project, upto, ran))


def ui_workflow(project: Project, upto: int | None = None, ran: dict[int, StageRan] | None = None) -> dict[str, Any]:
    return to_ui(graph_for(project, upto, ran))


def write_workflow(project: Project, path: Path, ran: dict[int, StageRan] | None = None) -> Path:
    """File > Export > ComfyUI workflow, and `main.py export --comfyui`: the UI workflow
    ComfyUI opens (drop the file on its window), written atomically. `ran`: what a run
    of it did (from a Handoff PNG), else what the project asks."""
    from core.atomic import write_text

    if not project.enabled_stages():
        raise ProjectError([f"the project has no enabled stage to export to {Path(path).name}"])
    return write_text(Path(path), json.dumps(ui_workflow(project, ran=ran), indent=1))
