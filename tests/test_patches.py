"""Patches a stage's call puts on a cached pipeline (a scheduler swap, an imposed schedule
on an unshifted stand-in scheduler, latents fed into prepare_latents) are context managers
under one ExitStack: a failure anywhere, entering any patch or inside the call, leaves the
cached pipeline exactly as it was."""
from __future__ import annotations

import contextlib

import pytest

from core import schedulers, stage_run
from core.errors import Cancelled
from core.models import ModelCache, parse_ref, resolve
from core.planning import StagePlan
from core.project import Project, Stage
from core.stage_call import Call, StageInput


class Injected(RuntimeError):
    pass


def state(pipe) -> dict:
    """What a patch could leave behind on the pipeline."""
    return {
        "scheduler": pipe.scheduler,
        "config": dict(pipe.scheduler.config),
        "set_timesteps": "set_timesteps" in vars(pipe.scheduler),
        "prepare_latents": "prepare_latents" in vars(pipe),
    }


@pytest.fixture(scope="module")
def zimage(tiny_models):
    """A Z-Image img2img pipeline (flow matching, shifted schedule: every patch applies)."""
    import torch

    resolved = resolve(parse_ref(str(tiny_models["zimage"])))
    return resolved, ModelCache().get(resolved, torch.float32, "cpu").pipeline("refine")


def plan_for(resolved, scheduler: str | None) -> StagePlan:
    stage = Stage(str(resolved.path), steps=4, scheduler=scheduler, handoff="latent", strength=0.5)
    return StagePlan(1, 1, stage, resolved, "latent", steps=4, size=(32, 32), strength=0.5)


def every_patch(pipe) -> Call:
    import torch

    return Call({}, sigmas=[1.0, 0.5], prepared_latents=torch.zeros(1, 16, 4, 4))


def failing_on_enter(*args, **kwargs):
    @contextlib.contextmanager
    def cm():
        raise Injected("entering")
        yield

    return cm()


@pytest.mark.parametrize("where", ["body", "swapped_scheduler", "imposed_schedule", "latents_into_prepare"])
def test_a_failure_anywhere_leaves_the_cached_pipeline_unchanged(zimage, where, monkeypatch):
    resolved, pipe = zimage
    before = state(pipe)
    if where == "swapped_scheduler":
        monkeypatch.setattr(schedulers, "swapped_scheduler", failing_on_enter)
    elif where == "imposed_schedule":
        monkeypatch.setattr(schedulers, "imposed_schedule", failing_on_enter)
    elif where == "latents_into_prepare":
        import core.latents

        monkeypatch.setattr(core.latents, "latents_into_prepare", failing_on_enter)
    seen_inside = {}
    with pytest.raises(Injected):
        with stage_run.patched(pipe, plan_for(resolved, "Flow Euler"), every_patch(pipe)):
            seen_inside = state(pipe)
            raise Injected("inside the call")
    if where == "body":  # every patch was on while the call ran
        assert seen_inside["scheduler"] is not before["scheduler"] and seen_inside["set_timesteps"]
        assert seen_inside["prepare_latents"] and seen_inside["config"]["shift"] == 1.0
    assert state(pipe) == before


def test_the_imposed_schedule_runs_on_a_stand_in(zimage):
    resolved, pipe = zimage
    original = pipe.scheduler
    with schedulers.imposed_schedule(pipe, [1.0, 0.25]):
        pipe.scheduler.set_timesteps(30, mu=0.7)  # whatever the pipeline asks for
        assert pipe.scheduler.sigmas.tolist() == [1.0, 0.25, 0.0]
    assert pipe.scheduler is original and "set_timesteps" not in vars(original)


def test_a_stage_cancelled_mid_call_leaves_the_pipeline_unchanged(zimage):
    """Through run_stage: the step callback raises Cancelled inside the diffusers call."""
    import torch

    from core.stage_call import build_call

    resolved, pipe = zimage
    before = state(pipe)
    p = plan_for(resolved, "Flow Euler")
    p.hands_over = "image"
    side = 32 // pipe.vae_scale_factor
    latents = torch.randn(1, pipe.vae.config.latent_channels, side, side, generator=torch.Generator().manual_seed(0))
    from PIL import Image

    given = StageInput(image=Image.new("RGB", (32, 32)), latents=latents)
    project = Project(prompt="a red circle", width=32, height=32, stages=[p.stage])
    call = build_call(pipe, p, project, given, torch.Generator("cpu").manual_seed(0))
    assert call.prepared_latents is not None
    with pytest.raises(Cancelled):
        stage_run.run_stage(pipe, p, call, given, "cpu", lambda i, n: None, lambda: True)
    assert state(pipe) == before


# ---------------------------------------------------------------- LoRA and IP-Adapter patches


def adapter_state(pipe) -> dict:
    """What the LoRA and IP-Adapter patches could leave behind: a LoRA layer switched on,
    IP-Adapter attention processors (and their scales), the image projection, the image
    encoder; and the scheduler patches' state."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for part in (pipe.unet, pipe.text_encoder) for m in part.modules() if isinstance(m, BaseTunerLayer)]
    processors = pipe.unet.attn_processors.values()
    return {
        "lora_on": any(not m.disable_adapters for m in layers),
        "processors": sorted({type(p).__name__ for p in processors}),
        "ip_scales": [p.scale for p in processors if hasattr(p, "scale")],
        "encoder_hid_proj": pipe.unet.encoder_hid_proj,
        "encoder_hid_dim_type": pipe.unet.config.encoder_hid_dim_type,
        "image_encoder": pipe.image_encoder,
        "feature_extractor": pipe.feature_extractor,
        **state(pipe),
    }


def output(pipe):
    """The cached pipeline's own image: what a later job without adapters gets."""
    import torch

    from tests.engine_helpers import pixels

    pipe.set_progress_bar_config(disable=True)
    return pixels(pipe("a red circle", num_inference_steps=2, height=32, width=32, guidance_scale=5.0,
                       generator=torch.Generator().manual_seed(0)).images[0])


@pytest.fixture(scope="module")
def sd_with_adapters(tiny_models, tmp_path_factory):
    """The cached SD pipeline and a stage on it with a LoRA (on the UNet and the text
    encoder) and an IP-Adapter."""
    import torch
    from PIL import Image

    from core.project import IPAdapter, Lora
    from tests.tiny_adapters import build_ip_adapter, lora_tensors, save_lora

    folder = tmp_path_factory.mktemp("adapters")
    resolved = resolve(parse_ref(str(tiny_models["sd"])))
    pipe = ModelCache().get(resolved, torch.float32, "cpu").pipeline("generate")
    lora = save_lora(lora_tensors(pipe, seed=1, text_encoders=("text_encoder",)), folder / "style.safetensors")
    ip = build_ip_adapter(pipe, folder / "ip")
    Image.new("RGB", (40, 40), (250, 200, 10)).save(folder / "ref.png")
    stage = Stage(str(resolved.path), steps=2, loras=[Lora(str(lora), 0.7)],
                  ip_adapters=[IPAdapter(str(ip), str(folder / "ref.png"), 0.6)])
    return pipe, StagePlan(0, 0, stage, resolved, "generate", steps=2, size=(32, 32))


def raising(*args, **kwargs):
    raise Injected("entering")


@pytest.mark.parametrize("where", ["body", "lora_entry", "ip_adapter_entry", "after_the_adapters"])
def test_a_failure_with_adapters_on_leaves_the_cached_pipeline_unchanged(sd_with_adapters, where, monkeypatch):
    """lora_entry: set_adapters fails once the LoRA is loaded and switched on;
    ip_adapter_entry: set_ip_adapter_scale fails once the IP-Adapter is loaded (the LoRA
    is on by then); after_the_adapters: the scheduler swap fails with both on."""
    pipe, plan = sd_with_adapters
    before, image = adapter_state(pipe), output(pipe)
    if where == "lora_entry":
        monkeypatch.setattr(pipe, "set_adapters", raising)
    elif where == "ip_adapter_entry":
        monkeypatch.setattr(pipe, "set_ip_adapter_scale", raising)
    elif where == "after_the_adapters":
        monkeypatch.setattr(schedulers, "swapped_scheduler", failing_on_enter)
    seen_inside = {}
    with pytest.raises(Injected):
        with stage_run.patched(pipe, plan, Call({})):
            seen_inside = adapter_state(pipe)
            raise Injected("inside the call")
    monkeypatch.undo()
    if where == "body":  # both adapters were on while the call ran
        assert seen_inside["lora_on"] and seen_inside["ip_scales"] and all(s == [0.6] for s in seen_inside["ip_scales"])
        assert seen_inside["encoder_hid_proj"] is not None and seen_inside["image_encoder"] is not None
    assert adapter_state(pipe) == before
    assert (output(pipe) == image).all()


def test_a_stage_with_adapters_cancelled_mid_call_leaves_the_pipeline_unchanged(sd_with_adapters):
    """Through run_stage: the step callback raises Cancelled inside the diffusers call, with
    the LoRA and the IP-Adapter (and its reference image) in use."""
    import torch
    from PIL import Image

    from core.stage_call import build_call

    pipe, plan = sd_with_adapters
    before, image = adapter_state(pipe), output(pipe)
    given = StageInput(references=[Image.open(plan.stage.ip_adapters[0].image).convert("RGB")])
    project = Project(prompt="a red circle", width=32, height=32, stages=[plan.stage])
    call = build_call(pipe, plan, project, given, torch.Generator("cpu").manual_seed(0))
    assert "ip_adapter_image" in call.kwargs
    steps = []
    with pytest.raises(Cancelled):
        stage_run.run_stage(pipe, plan, call, given, "cpu", lambda i, n: steps.append(i), lambda: bool(steps))
    assert steps == [1]  # cancelled inside the call, after a real step with both adapters on
    assert adapter_state(pipe) == before
    assert (output(pipe) == image).all()
