"""Writing a Handoff job as the ComfyUI graph that runs it.

Per stage: its loaders (a checkpoint by the file name ComfyUI finds it under, or a Hub
model's well-known single file with the text encoder and VAE loaders its ComfyUI graph
uses, or DiffusersLoader), a LoraLoader per LoRA, the prompt encoders, a ControlNet
(ControlNetLoader, LoadImage, Canny, ControlNetApplyAdvanced), and the sampler
(KSamplerAdvanced with start and end steps for an ensemble; for a pixel refine or upscale,
VAEDecode, ImageScaleBy or UpscaleModelLoader + ImageUpscaleWithModel + ImageScale to the
stage's size (left out when the model's own factor makes it), then VAEEncode and KSampler
at denoise = strength; a tiled refine is written whole, with a note, as ComfyUI has no
stock tiled refine). An upscale stage is the model upscale alone, its ImageUpscaleWithModel
titled so that a reader tells it from a refine's. Then VAEDecode and SaveImage. The graph lists every file it names (Graph.files) and what
the user must do for any it cannot promise (Graph.notes)."""
from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from core.interop import samplers
from core.interop.chain import JobStage, file_name, job
from core.interop.comfyui_nodes import UPSCALE_STAGE_TITLE, Graph, Link, Node
from core.interop.comfyui_read_inputs import factor_in_name
from core.interop.model_lookup import WELL_KNOWN, WellKnown, builtin_file
from core.model_library import A1111_UPSCALER_FOLDERS, COMFYUI_SUBFOLDERS
from core.project import Project
from core.ran import StageRan

# The folders of a ComfyUI or A1111 models folder a file is named relative to, as ComfyUI's
# loaders list it (`sdxl/detail.safetensors` for models/loras/sdxl/detail.safetensors): the
# ComfyUI subfolders the library reads, and A1111's model folders.
MODEL_FOLDERS = {*COMFYUI_SUBFOLDERS, "Stable-diffusion", "Lora", "ControlNet", *A1111_UPSCALER_FOLDERS}


def comfy_name(ref: str) -> str:
    """The name ComfyUI's loader lists a file under: its path below the models subfolder
    that holds it (forward slashes), else its file name."""
    text = (ref or "").strip()
    path = PureWindowsPath(text) if "\\" in text else PurePosixPath(text)
    parts = path.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in MODEL_FOLDERS:
            return "/".join(parts[i + 1:])
    return path.name or text


class _Writer:
    def __init__(self, project: Project) -> None:
        self.project = project
        self.g = Graph()
        self.count = 0
        self.loaders: dict[str, tuple[Link, Link, Link]] = {}

    def add(self, class_type: str, title: str = "", **inputs) -> str:
        self.count += 1
        nid = str(self.count)
        self.g.nodes[nid] = Node(nid, class_type, inputs, title)
        return nid

    def file(self, name: str, what: str, note: str | None = None) -> str:
        self.g.files.setdefault(name, what)
        if note and note not in self.g.notes:
            self.g.notes.append(note)
        return name

    # ------------------------------------------------------------ loaders

    def loader(self, ref: str) -> tuple[Link, Link, Link]:
        """(MODEL, CLIP, VAE) outputs for a stage's model, one set per model."""
        if ref not in self.loaders:
            self.loaders[ref] = self._loader(ref.strip())
        return self.loaders[ref]

    def _loader(self, ref: str) -> tuple[Link, Link, Link]:
        if ref.startswith("builtin:"):
            name = self.file(builtin_file(ref), "Handoff's built-in demo model",
                             f"{ref} is Handoff's built-in demo model: it exists only in Handoff, so ComfyUI will "
                             "not find its checkpoint")
            node = self.add("CheckpointLoaderSimple", ckpt_name=name)
            return Link(node, 0), Link(node, 1), Link(node, 2)
        known = WELL_KNOWN.get(ref)
        if known is not None:
            return self._well_known(ref, known)
        if ref.lower().endswith((".safetensors", ".ckpt")):
            node = self.add("CheckpointLoaderSimple", ckpt_name=self.file(comfy_name(ref), f"your file {ref}"))
            return Link(node, 0), Link(node, 1), Link(node, 2)
        hub = not ref.startswith(("/", "~", ".")) and ref.count("/") == 1 and not (len(ref) > 1 and ref[1] == ":")
        name = ref.split("/")[-1] if hub else file_name(ref)
        self.file(name, f"the diffusers folder of {ref}",
                  f"{ref} has no single-file checkpoint ComfyUI's examples name: the graph loads it with "
                  f"DiffusersLoader from models/diffusers/{name}"
                  + (f" (download the Hub model {ref} into that folder)" if hub else " (copy the folder there)"))
        node = self.add("DiffusersLoader", model_path=name)
        return Link(node, 0), Link(node, 1), Link(node, 2)

    def _well_known(self, ref: str, c: WellKnown) -> tuple[Link, Link, Link]:
        folder = "diffusion_models" if c.unet else "checkpoints"
        what = f"the Hub model {ref} as one file (models/{folder})"
        if c.unet:
            model = Link(self.add("UNETLoader", unet_name=self.file(c.file, what), weight_dtype="default"), 0)
            vae = Link(self.add("VAELoader", vae_name=self.file(c.vae or "ae.safetensors", f"the VAE of {ref}")), 0)
        else:
            node = self.add("CheckpointLoaderSimple", ckpt_name=self.file(c.file, what))
            model, vae = Link(node, 0), Link(node, 2)
            clip = Link(node, 1)
        if c.clip is not None:
            cls, files, kind = c.clip
            names = {f"clip_name{n + 1}" if len(files) > 1 else "clip_name": self.file(f, f"a text encoder of {ref}")
                     for n, f in enumerate(files)}
            clip = Link(self.add(cls, **names, **({"type": kind} if kind else {})), 0)
        self.g.notes.append(f"{ref} is written as ComfyUI names its files ({c.file}"
                            + (", its text encoders and VAE" if c.unet else "") + "): put them in ComfyUI's models "
                            "folders if they are not there")
        return model, clip, vae

    # ------------------------------------------------------------ a stage

    def stage(self, pos: int, stages: list[JobStage], prev: Link | None, prev_vae: Link | None,
              image: Link | None) -> tuple[Link | None, Link | None, Link | None]:
        """Adds stage `pos`; returns (its LATENT, the VAE that decodes it, its IMAGE when it
        makes pixels only: an upscale stage)."""
        s = stages[pos]
        stage = s.stage
        if s.upscales:
            # Titled, so that a reader tells the stage from a refine's model upscale (both
            # are VAEDecode → ImageUpscaleWithModel → … → VAEEncode before a sampler).
            return None, None, self._model_resize(stage.model, self._taken_in(image, prev, prev_vae), s.size,
                                                  s.size_in if pos else None, stage.name or UPSCALE_STAGE_TITLE,
                                                  stage.upscale)
        model, clip, vae = self.loader(stage.model)
        for lora in stage.loras:
            name = self.file(comfy_name(lora.ref), f"the LoRA {lora.ref}")
            node = self.add("LoraLoader", lora_name=name, strength_model=lora.weight, strength_clip=lora.weight,
                            model=model, clip=clip)
            model, clip = Link(node, 0), Link(node, 1)
        positive = Link(self.add("CLIPTextEncode", text=s.prompt, clip=clip), 0)
        negative = Link(self.add("CLIPTextEncode", text=s.negative, clip=clip), 0)
        if stage.controlnet is not None:
            positive, negative = self._controlnet(stage.controlnet, positive, negative)
        nxt = stages[pos + 1] if pos + 1 < len(stages) else None
        split_next = nxt is not None and nxt.handoff == "ensemble"
        if s.handoff == "generate":
            latent = Link(self.add("EmptySD3LatentImage" if s.flow else "EmptyLatentImage", width=s.size[0],
                                   height=s.size[1], batch_size=1), 0)
        elif s.handoff in ("ensemble", "latent") and prev is not None:
            latent = prev
        else:  # pixel: from the previous stage's decode, or the init image
            source = self._taken_in(image, prev, prev_vae)
            if stage.upscaler:
                source = self._model_resize(stage.upscaler, source, s.size, s.size_in if pos else None)
            elif stage.upscale != 1:
                source = Link(self.add("ImageScaleBy", upscale_method="lanczos", scale_by=stage.upscale,
                                       image=source), 0)
            latent = Link(self.add("VAEEncode", pixels=source, vae=vae), 0)
            if stage.refine_tile:
                self.g.notes.append(
                    f"stage {s.index + 1} refines in {stage.refine_tile} px tiles in Handoff; ComfyUI has no stock "
                    f"tiled refine, so the graph refines the whole {s.size[0]}x{s.size[1]} image at once (the tiling "
                    "is dropped: it needs more memory, and a tile-by-tile custom node can replace its KSampler)")
        name, _ = s.sampler()
        sampler_name, scheduler = samplers.to_comfy(name, s.flow)
        common = dict(steps=stage.steps, cfg=stage.guidance, sampler_name=sampler_name, scheduler=scheduler,
                      model=model, positive=positive, negative=negative, latent_image=latent)
        if s.handoff == "ensemble" or split_next:
            schedule = stages[pos - 1].stage.steps if s.handoff == "ensemble" else stage.steps
            common["steps"] = schedule
            start = _switch_step(schedule, stage.switch_at) if s.handoff == "ensemble" else 0
            end = _switch_step(schedule, nxt.stage.switch_at) if split_next else 10000
            node = self.add("KSamplerAdvanced", stage.name, add_noise="disable" if s.handoff == "ensemble" else "enable",
                            noise_seed=s.seed, start_at_step=start, end_at_step=end,
                            return_with_leftover_noise="enable" if split_next else "disable", **common)
        else:
            denoise = 1.0 if s.handoff == "generate" else s.strength
            node = self.add("KSampler", stage.name, seed=s.seed, denoise=denoise, **common)
        return Link(node, 0), vae, None

    def _taken_in(self, image: Link | None, latent: Link | None, vae: Link | None) -> Link:
        """The IMAGE a stage takes in: an upscale stage's, the previous sampler's decoded, or
        the init image (the first stage)."""
        if image is not None:
            return image
        if latent is not None:
            return self._decoded(latent, vae)
        name = self.file(Path(self.project.init_image or "init.png").name, "the init image",
                         "the init image must be in ComfyUI's input folder")
        return Link(self.add("LoadImage", image=name), 0)

    def _decoded(self, latent: Link | None, vae: Link | None) -> Link:
        return Link(self.add("VAEDecode", samples=latent, vae=vae), 0)

    def _model_resize(self, ref: str, image: Link, size: tuple[int, int], size_in: tuple[int, int] | None,
                      title: str = "", factor: float | None = None) -> Link:
        """The model's upscale, then a Lanczos resize to the stage's size unless the model's
        own factor (as its name says it: no weights are read) makes that size already.
        `size_in`: the size of the image taken in, None when the graph cannot know it (an
        init image): an upscale stage's `factor` is then made by ImageScaleBy, titled as
        the stage, so that a reader counts it the stage's rather than the next one's."""
        if ref.startswith("builtin:"):
            name = self.file(builtin_file(ref), "Handoff's built-in demo upscaler",
                             f"{ref} is Handoff's built-in demo upscaler: it exists only in Handoff, so ComfyUI will "
                             "not find its file")
        else:
            name = self.file(comfy_name(ref), f"the upscale model {ref}")
        loader = self.add("UpscaleModelLoader", model_name=name)
        up = Link(self.add("ImageUpscaleWithModel", title, upscale_model=Link(loader, 0), image=image), 0)
        native = factor_in_name(name)
        if size_in is None and factor and native:
            if factor == native:
                return up
            return Link(self.add("ImageScaleBy", title, upscale_method="lanczos", scale_by=round(factor / native, 6),
                                 image=up), 0)
        if size_in is not None and native and (round(size_in[0] * native), round(size_in[1] * native)) == size:
            return up
        return Link(self.add("ImageScale", upscale_method="lanczos", width=size[0], height=size[1], crop="disabled",
                             image=up), 0)

    def _controlnet(self, cn, positive: Link, negative: Link) -> tuple[Link, Link]:
        loader = self.add("ControlNetLoader", control_net_name=self.file(comfy_name(cn.model), f"the ControlNet {cn.model}"))
        name = self.file(Path(cn.image).name, "a control image",
                         f"the control image {Path(cn.image).name} must be in ComfyUI's input folder")
        image = Link(self.add("LoadImage", image=name), 0)
        if cn.preprocessor == "canny":
            # ComfyUI's Canny takes thresholds as 0.01..0.99 of 255; three decimals keep every whole value.
            def share(v: int) -> float:
                return min(max(round(v / 255, 3), 0.01), 0.99)

            image = Link(self.add("Canny", low_threshold=share(cn.low), high_threshold=share(cn.high), image=image), 0)
        node = self.add("ControlNetApplyAdvanced", strength=cn.scale, start_percent=cn.start, end_percent=cn.end,
                        positive=positive, negative=negative, control_net=Link(loader, 0), image=image)
        return Link(node, 0), Link(node, 1)


def graph_for(project: Project, upto: int | None = None, ran: dict[int, StageRan] | None = None) -> Graph:
    """The job (up to and including stage `upto`) as a ComfyUI graph: with `ran` (the
    run's records by stage index), the handoffs and strengths that ran, so a latent
    handoff that fell back to pixels is a VAEDecode → VAEEncode here too."""
    stages = job(project, upto, ran)
    w = _Writer(project)
    latent = vae = image = None
    for pos in range(len(stages)):
        latent, vae, image = w.stage(pos, stages, latent, vae, image)
    if image is None and latent is not None:
        image = w._decoded(latent, vae)
    if image is not None:
        w.add("SaveImage", filename_prefix="Handoff", images=image)
    return w.g


def _switch_step(steps: int, switch_at: float) -> int:
    return min(steps, max(0, round(steps * switch_at)))
