"""What a ComfyUI sampler is given, read back to a Handoff stage's fields: its model (the
loader, and the LoRA loaders between it and the sampler), its prompts (the text encoders,
and the ControlNet apply nodes between them and the sampler) and the upscale model of an
ImageUpscaleWithModel on its way in. A mixin of comfyui_read's reader, which walks the
graph and owns `graph`, `where`, `lookup`, `unmapped`, `notes` and `_node`."""
from __future__ import annotations

import re
from typing import Any

from core.families.sdxl import REFINER_AESTHETIC_SCORE, REFINER_NEGATIVE_AESTHETIC_SCORE
from core.interop.comfyui_nodes import Link, Node
from core.interop.reading import Where
from core.project import ControlNet, Lora

# Loaders of the denoiser alone (a transformer or UNet file, ComfyUI's diffusion_models/),
# and the loaders of the text encoders and VAE such a graph needs beside it.
DENOISER_LOADERS = ("UNETLoader", "UnetLoaderGGUF")
PART_LOADERS = ("CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader", "VAELoader", "CLIPLoaderGGUF",
                "DualCLIPLoaderGGUF")
_FACTOR_IN_NAME = re.compile(r"(?:^|[^a-z0-9])(?:(\d)x|x(\d))(?:[^a-z0-9]|$)", re.IGNORECASE)


def factor_in_name(name: str) -> float | None:
    """An upscale model's factor from its file name (`4x-UltraSharp`, `RealESRGAN_x4plus`)."""
    m = _FACTOR_IN_NAME.search(re.sub(r"x(\d)plus", r"x\1 ", name or "", flags=re.IGNORECASE))
    return float(m.group(1) or m.group(2)) if m else None


class SamplerInputs:
    graph: Any
    where: Where
    lookup: Any
    unmapped: list[str]
    notes: list[str]
    visited: set

    def _node(self, value: Any, what: str) -> Node:  # the reader's
        raise NotImplementedError

    def _pass(self, node: Node, names: tuple[str, ...]) -> Any | None:  # the reader's
        raise NotImplementedError

    # ------------------------------------------------------------ the model

    def _model(self, value: Any, label: str, w: Where, loras: list[Lora], depth: int = 0) -> str:
        """The stage's model; the LoRAs on the way go into `loras`, nearest the model first."""
        if depth > 64:
            raise w.error("model", "goes through too many nodes")
        node = self._node(value, f"{w.prefix} model")
        t = node.class_type
        nw = self.where.at(f"node {node.id} ({t})")
        if t in ("CheckpointLoaderSimple", "CheckpointLoader"):
            if t == "CheckpointLoader" and node.inputs.get("config_name"):
                self.notes.append(f"{label}: the config file {node.inputs['config_name']!r} (CheckpointLoader) is not "
                                  "needed: Handoff tells the model's layout from the checkpoint")
            return self.lookup.resolve(nw.text(node.inputs.get("ckpt_name"), "ckpt_name"), None, label, self.notes)
        if t == "DiffusersLoader":
            return self.lookup.resolve(nw.text(node.inputs.get("model_path"), "model_path"), None, label, self.notes)
        if t in DENOISER_LOADERS:
            name = nw.text(node.inputs.get("unet_name"), "unet_name")
            parts = self._part_files()
            self.unmapped.append(
                f"node {node.id} ({t}): the denoiser file '{name}' alone" + (f", with {parts}" if parts else "")
                + ": a stage holds a whole model (no single-file transformer field yet), so it takes the model "
                "that file is (a whole checkpoint or diffusers folder of it) and its own text encoders and VAE")
            return self.lookup.resolve(name, None, label, self.notes)
        if t in ("LoraLoader", "LoraLoaderModelOnly"):
            name = nw.text(node.inputs.get("lora_name"), "lora_name")
            weight = nw.number(node.inputs.get("strength_model", 1.0), "strength_model")
            clip = node.inputs.get("strength_clip")
            if t == "LoraLoader" and clip is not None and nw.number(clip, "strength_clip") != weight:
                self.notes.append(f"{label}: LoRA '{name}' has clip strength {clip} and model strength {weight:g}; "
                                  "Handoff's LoRA has one weight: the model strength is used for both")
            model = self._model(node.inputs.get("model"), label, w, loras, depth + 1)
            loras.append(Lora(self.lookup.adapter(name, "lora", label, self.notes), weight))
            return model
        link = self._pass(node, ("model",))
        if link is None:
            raise w.error("model", f"comes from node {node.id} ({t}), which Handoff cannot read a model from")
        return self._model(link, label, w, loras, depth + 1)

    def _part_files(self) -> str:
        """The text encoder and VAE files the graph's part loaders name, for a message."""
        out = []
        for n in self.graph.nodes.values():
            if n.class_type in PART_LOADERS and not n.muted:
                self.visited.add(n.id)
                names = [v for k, v in n.inputs.items()
                         if isinstance(v, str) and (k.endswith("_name") or re.fullmatch(r"clip_name\d", k))]
                out.append(f"{n.class_type} {', '.join(repr(v) for v in dict.fromkeys(names))}")
        return "; ".join(out)

    # ------------------------------------------------------------ the prompts

    def _text(self, value: Any, what: str, w: Where, found: dict, depth: int = 0) -> str:
        """The prompt text conditioning reads; a ControlNet on the way goes into found["controlnet"]."""
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
            self._controlnet(node, nw, found, what)
            if t == "ControlNetApply":
                return self._text(node.inputs.get("conditioning"), what, w, found, depth + 1)
            slot = value.slot if isinstance(value, Link) else 0
            return self._text(node.inputs.get("negative" if slot == 1 else "positive"), what, w, found, depth + 1)
        link = self._pass(node, ("conditioning", "conditioning_to", "conditioning_1", "positive"))
        if link is None:
            self.unmapped.append(f"node {node.id} ({t}): makes the {what.split()[-1]} prompt in a way Handoff cannot "
                                 "read: taken as empty")
            return ""
        return self._text(link, what, w, found, depth + 1)

    def _controlnet(self, node: Node, w: Where, found: dict, what: str) -> None:
        """A ControlNet apply node as the stage's ControlNet (one per stage: a second is listed)."""
        loader = self._node(node.inputs.get("control_net"), f"{w.prefix} control_net")
        if loader.class_type != "ControlNetLoader":
            self.unmapped.append(f"node {node.id} ({node.class_type}): its ControlNet comes from node {loader.id} "
                                 f"({loader.class_type}), which Handoff cannot read: not applied")
            return
        name = self.where.at(f"node {loader.id} (ControlNetLoader)").text(
            loader.inputs.get("control_net_name"), "control_net_name")
        source = self._node(node.inputs.get("image"), f"{w.prefix} image")
        preprocessor, low, high = "none", 100, 200
        if source.class_type == "Canny":
            cw = self.where.at(f"node {source.id} (Canny)")
            preprocessor = "canny"
            low = round(255 * cw.number(source.inputs.get("low_threshold", 0.4), "low_threshold"))
            high = round(255 * cw.number(source.inputs.get("high_threshold", 0.8), "high_threshold"))
            source = self._node(source.inputs.get("image"), f"node {source.id} image")
        if source.class_type != "LoadImage":
            self.unmapped.append(f"node {node.id} ({node.class_type}): its control image comes from node {source.id} "
                                 f"({source.class_type}); Handoff takes one from a LoadImage node (or a Canny node on "
                                 "one): the ControlNet is not applied")
            return
        image = self.where.at(f"node {source.id} (LoadImage)").text(source.inputs.get("image"), "image")
        cn = ControlNet(self.lookup.adapter(name, "controlnet", w.prefix, self.notes), image, preprocessor, low, high,
                        scale=w.number(node.inputs.get("strength", 1.0), "strength"),
                        start=w.number(node.inputs.get("start_percent", 0.0), "start_percent"),
                        end=w.number(node.inputs.get("end_percent", 1.0), "end_percent"))
        known = found.get("controlnet")
        if known is None:
            found["controlnet"] = cn
            self.notes.append(f"node {source.id}: the control image {image!r} is in ComfyUI's input folder, not in "
                              "the file: point the stage's ControlNet image at your copy of it")
        elif known != cn and what.endswith("positive"):
            self.unmapped.append(f"node {node.id} ({node.class_type}): a second ControlNet ({name}); a stage "
                                 "takes one, not applied")

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

    # ------------------------------------------------------------ upscale models

    def _upscale_model(self, node: Node, sized: bool = False) -> tuple[str | None, float]:
        """(the library's file, its factor) for an ImageUpscaleWithModel's model. `sized`:
        a resize after it sets the size, so a factor its name does not say goes unsaid."""
        loader = self._node(node.inputs.get("upscale_model"), f"node {node.id} upscale_model")
        if loader.class_type != "UpscaleModelLoader":
            self.unmapped.append(f"node {loader.id} ({loader.class_type}): an upscale model Handoff cannot read")
            return None, 1.0
        name = self.where.at(f"node {loader.id} (UpscaleModelLoader)").text(loader.inputs.get("model_name"),
                                                                            "model_name")
        factor = factor_in_name(name)
        if factor is None:
            factor = 4.0
            if not sized:
                self.notes.append(f"node {loader.id}: the factor of upscale model '{name}' is not in its name: ×4 assumed "
                                  "(set the stage's upscale to the model's factor)")
        return self.lookup.adapter(name, "upscaler", f"node {loader.id}", self.notes), factor
