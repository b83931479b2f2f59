"""The memory policy and precision the README promises: `auto` keeps everything resident when
it fits in free VRAM, one model at a time when the largest fits, CPU offload otherwise, and
all resident on a CPU; `resident` keeps both models of a chain loaded; `auto` precision is
fp32 on a CPU, bf16 for flow-matching models and fp16 for SD/SDXL on a GPU. The GPU this
machine lacks is planned for with a VRAM budget (core.memory_plan), and the VAE decodes in
tiles exactly where the plan says, whole again where it does not."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from core.engine import resolve_policy
from core.memory_plan import peak, stage_needs
from core.families import FAMILIES
from core.models import ModelCache, parse_ref, pick_dtype, resolve
from core.project import Project, Stage
from tests.engine_helpers import run_job


def plans(*folders, size=(64, 64)):
    return [SimpleNamespace(resolved=(r := resolve(parse_ref(str(f)))), family=r.family, kind="diffusion",
                            stage=Stage(str(f)), size=size, index=i) for i, f in enumerate(folders)]


def test_auto_policy_follows_the_budget(tiny_models):
    chain = plans(tiny_models["sd"], tiny_models["sd_other"])
    p = Project(prompt="x", memory_policy="auto", dtype="fp32")
    assert resolve_policy(p, "cpu", chain).placement == "resident"
    # The placements' thresholds with every decode in tiles: a budget short of a placement with
    # whole decodes is met first by tiling them (tests/test_memory_plan.py), then by the next placement.
    one = peak([replace(stage_needs(chain[0], 4), vae_tiling=True)], "sequential")
    needs = [replace(stage_needs(c, 4), vae_tiling=True) for c in chain]
    for budget, expected in [(peak(needs, "resident"), "resident"), (peak(needs, "resident") - 1, "sequential"),
                             (one - 1, "offload")]:
        p.vram_budget = str(budget)
        assert resolve_policy(p, "cuda", chain).placement == expected, budget
    # One model used twice counts once.
    p.vram_budget = str(one)
    assert resolve_policy(p, "cuda", plans(tiny_models["sd"], tiny_models["sd"])).placement == "resident"
    p.memory_policy = "sequential"
    assert resolve_policy(p, "cuda", chain).placement == "sequential"


def test_resident_keeps_both_models_loaded(tiny_models, tmp_path):
    sd, other = str(tiny_models["sd"]), str(tiny_models["sd_other"])
    p = Project(prompt="a red circle", width=32, height=32, memory_policy="resident", stages=[
        Stage(sd, steps=2), Stage(other, steps=2, handoff="pixel", strength=0.5)])
    models = ModelCache()
    run_job(p, tmp_path, models)
    assert sorted(k[0] for k in models.loaded) == sorted([sd, other])


@pytest.mark.parametrize("choice,family,device,expected", [
    ("auto", "zimage", "cpu", "float32"), ("auto", "sdxl", "cpu", "float32"),
    ("auto", "flux", "cuda", "bfloat16"), ("auto", "zimage", "cuda", "bfloat16"), ("auto", "sdxl", "cuda", "float16"),
    ("auto", "sd", "cuda", "float16"), ("fp16", "flux", "cuda", "float16"), ("bf16", "sd", "cuda", "bfloat16"),
    ("fp32", "sdxl", "cuda", "float32"),
])
def test_precision(choice, family, device, expected):
    assert str(pick_dtype(choice, FAMILIES[family], device)) == f"torch.{expected}"


def _decodes(vae) -> list[tuple[bool, tuple[int, ...], object]]:
    """What reaches the VAE's decoder, as it runs: (tiling on, latent shape, latents) per call.
    post_quant_conv takes the latents a decode starts from: the whole at once, or tile by tile."""
    seen: list[tuple[bool, tuple[int, ...], object]] = []
    vae.post_quant_conv.register_forward_pre_hook(lambda m, args: seen.append(
        (vae.use_tiling, tuple(args[0].shape[-2:]), args[0].detach().clone())))
    return seen


def _ran(path):
    """The PNG's record of what ran at its stage."""
    from core.metadata import read_recipe

    (record,) = read_recipe(path).ran.values()
    return record


def test_a_budget_only_a_tiled_decode_fits_decodes_in_tiles_then_whole_again(tiny_models, tmp_path):
    """128 px with the tiny SD VAE (32 px tiles, 2x latents): 64x64 latents, tiled in 16x16
    latent tiles. The budget holds every weight and the tiled decode, not the whole one."""
    import torch

    from core import events as ev
    from tests.engine_helpers import of, pixels

    sd = str(tiny_models["sd"])
    needs = stage_needs(plans(sd, size=(128, 128))[0], 4)
    budget = needs.weights + max(needs.activations, needs.tiled_decode)
    assert needs.weights + needs.decode > budget  # the whole decode would not fit
    p = Project(prompt="a red circle", width=128, height=128, dtype="fp32", vram_budget=str(budget),
                stages=[Stage(sd, steps=2)])
    models = ModelCache()
    resolved = resolve(parse_ref(sd))
    vae = models.get(resolved, torch.float32, "cpu").pipe.vae  # the job takes it from the cache
    seen = _decodes(vae)

    events = run_job(p, tmp_path / "tiled", models)
    notices = [e.message for e in of(events, ev.Notice)]
    assert any("vae decode" in n and "(tiled: the whole image at once" in n for n in notices), notices
    assert any("the VAE decoding in tiles (stage 1)" in n for n in notices), notices
    # 6x6 tiles of up to 16x16 latents, a step of 12 (the last row and column are cut by the edge).
    assert len(seen) == 36 and all(on and max(shape) <= 16 for on, shape, _ in seen) and seen[0][1] == (16, 16)
    tiled = of(events, ev.StageFinished)[-1].image
    assert _ran(of(events, ev.StageFinished)[-1].path).vae_tiled  # the PNG says its decode was tiled

    seen.clear()
    p.vram_budget = ""  # the same cached pipeline, a job that needs no tiles: whole again
    events = run_job(p, tmp_path / "whole", models)
    assert [(on, shape) for on, shape, _ in seen] == [(False, (64, 64))]
    whole = of(events, ev.StageFinished)[-1].image
    assert not _ran(of(events, ev.StageFinished)[-1].path).vae_tiled
    assert any("(untiled: fits)" in e.message for e in of(events, ev.Notice))

    # The same latents (the denoise does not depend on the decode), decoded by diffusers' own
    # tiled decode, give the tiled job's image exactly; the whole decode's differs.
    pipe = models.get(resolved, torch.float32, "cpu").pipe
    latents = seen[0][2]
    with torch.no_grad():
        expected = pipe.image_processor.postprocess(vae.tiled_decode(latents, return_dict=False)[0],
                                                    output_type="pil")[0]
    assert (pixels(tiled) == pixels(expected)).all()
    assert (pixels(whole) != pixels(tiled)).any()


def test_a_cpu_job_decodes_in_tiles_only_when_the_ram_left_cannot_hold_the_whole_decode(tiny_models, tmp_path,
                                                                                         monkeypatch):
    """No GPU and no budget: whole as before while the RAM left holds the decode (8 MiB at
    128 px, fp32); with 4 MiB left, tiles (1.3 MiB) rather than a refusal."""
    import torch

    from core import events as ev
    from core import memory_check
    from tests.engine_helpers import of

    sd = str(tiny_models["sd"])
    p = Project(prompt="a red circle", width=128, height=128, dtype="fp32", stages=[Stage(sd, steps=2)])
    models = ModelCache()
    seen = _decodes(models.get(resolve(parse_ref(sd)), torch.float32, "cpu").pipe.vae)
    events = run_job(p, tmp_path / "whole", models)
    assert [(on, shape) for on, shape, _ in seen] == [(False, (64, 64))]
    assert any("(untiled: fits)" in e.message for e in of(events, ev.Notice))
    seen.clear()
    monkeypatch.setattr(memory_check, "available_bytes", lambda device: (4 * 2**20, "available RAM"))
    events = run_job(p, tmp_path / "tiled", models)
    assert len(seen) == 36 and all(on for on, _, _ in seen)
    assert any("(tiled: the whole image at once, 8 MiB, would not fit)" in e.message for e in of(events, ev.Notice))


def test_a_deferred_decode_tiles_as_its_own_stage_planned_whatever_the_shared_vae_was_left_at(tiny_models):
    """A handed-over stage is decoded after the job, when a later stage sharing its VAE may
    have set it otherwise: the Decoder carries the stage's plan and sets it."""
    import torch
    from diffusers import DiffusionPipeline

    from core.deferred_decode import Decoder
    from core.families import get
    from tests.engine_helpers import generator, pixels

    pipe = DiffusionPipeline.from_pretrained(str(tiny_models["sd"]))
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(prompt="a red circle", num_inference_steps=2, height=128, width=128, output_type="latent",
                   generator=generator(1)).images
    raw = latents / pipe.vae.config.scaling_factor
    with torch.no_grad():
        tiled, whole = (pipe.image_processor.postprocess(d(raw, return_dict=False)[0], output_type="pil")[0]
                        for d in (pipe.vae.tiled_decode, pipe.vae._decode))
    assert (pixels(tiled) != pixels(whole)).any()
    pipe.vae.disable_tiling()  # as a later stage that decodes whole leaves it
    assert (pixels(Decoder.of(pipe, get("sd"), tiled=True)(latents)) == pixels(tiled)).all()
    assert (pixels(Decoder.of(pipe, get("sd"), tiled=False)(latents)) == pixels(whole)).all()


def test_a_stage_decoded_in_tiles_is_stored_under_its_own_key(tiny_models):
    """Blended tiles differ slightly from a whole decode: a rerun must not take one for the other.
    A whole decode keeps the key it had before tiling was planned."""
    from core.engine import _prefix_keys
    from core.planning import plan

    sd = str(tiny_models["sd"])
    p = Project(prompt="a red circle", width=64, height=64, stages=[
        Stage(sd, steps=2), Stage(sd, steps=2, handoff="pixel", strength=0.5)])
    models = ModelCache()
    chain = plan(p, [resolve(parse_ref(sd))] * 2, lambda r: r.vae_fingerprint(models.digests))

    def keys(tiled: set[int] | None = None) -> list[str]:
        key_of = (_prefix_keys(p, chain, "cpu", models) if tiled is None
                  else _prefix_keys(p, chain, "cpu", models, lambda index: index in tiled))
        return [key_of(0), key_of(1)]

    whole = keys()
    assert keys(set()) == whole
    first, second = keys({0}), keys({1})
    assert first[0] != whole[0] and first[1] != whole[1]  # stage 2 refined stage 1's tiled image
    assert second[0] == whole[0] and second[1] != whole[1]


def test_a_tiled_refine_is_planned_at_its_refine_tile(tiny_models):
    """A tiled refine decodes one refine tile at a time: no VAE tiles planned for its whole size."""
    sd = str(tiny_models["sd"])
    whole, refine = (SimpleNamespace(resolved=resolve(parse_ref(sd)), stage=Stage(sd, refine_tile=32), size=(256, 256),
                                     index=1, tiled=tiled) for tiled in (False, True))
    big, tile, at_32 = stage_needs(whole, 4), stage_needs(refine, 4), stage_needs(plans(sd, size=(32, 32))[0], 4)
    assert (tile.decode, tile.activations) == (at_32.decode, at_32.activations) != (big.decode, big.activations)
    assert big.can_tile and not tile.can_tile  # a 32 px refine tile is one 32 px VAE tile


def test_under_offload_a_stage_planned_whole_has_the_gpu_for_its_turn_only(tiny_models, tmp_path):
    """An offload job whose first model fits whole and whose second does not: the plan puts
    stage 1 whole on the device for its turn and stage 2 one component at a time, and the
    engine lets stage 1's model go when stage 2's turn comes (models offloaded to RAM wait there)."""
    zimage, sd = str(tiny_models["zimage_turbo"]), str(tiny_models["sd"])
    chain = plans(tiny_models["zimage_turbo"], tiny_models["sd"], size=(32, 32))
    first, second = (stage_needs(c, 4) for c in chain)
    budget = first.weights + first.working
    assert second.weights + second.working > budget and max(second.components.values()) + second.working <= budget
    p = Project(prompt="a red circle", width=32, height=32, memory_policy="auto", dtype="fp32",
                vram_budget=str(budget), stages=[Stage(zimage, steps=2), Stage(sd, steps=2, handoff="pixel",
                                                                                 strength=0.5)])
    models = ModelCache()
    events = run_job(p, tmp_path, models)
    said = [e.message for e in events if type(e).__name__ == "Notice"]
    assert any(line.startswith("plan: offload") and "stage 1 whole on the GPU for its turn" in line for line in said)
    assert [k[0] for k in models.loaded] == [sd]
    # Asked for by name, offload is every stage's: the user may be keeping the GPU free for something else.
    p.memory_policy = "offload"
    models = ModelCache()
    said = [e.message for e in run_job(p, tmp_path / "asked", models) if type(e).__name__ == "Notice"]
    assert any(line.startswith("plan: offload — the project asks for it;") for line in said), said
    assert sorted(k[0] for k in models.loaded) == sorted([zimage, sd])


@pytest.mark.gpu
def test_a_second_job_plans_with_its_own_models_counted_as_room(tiny_models, tmp_path):
    """On CUDA: the free VRAM a job plans with counts its own models already in place, so the
    same chain run again plans the same and reuses them (it is not pushed to offload by
    itself, which would load everything again); another job's models are let go first."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from core import events as ev
    from tests.engine_helpers import of

    sd, other = str(tiny_models["sd"]), str(tiny_models["sd_other"])
    p = Project(prompt="a red circle", width=64, height=64, stages=[
        Stage(sd, steps=2), Stage(other, steps=2, handoff="pixel", strength=0.5)])
    models = ModelCache()

    def verdict(events):
        return [e.message for e in of(events, ev.Notice) if e.message.startswith("plan: ")]

    first = verdict(run_job(p, tmp_path / "1", models))
    pipes = {k: m.pipe for k, m in models.loaded.items()}
    again = verdict(run_job(p, tmp_path / "2", models))
    assert [line.split(";")[0] for line in again] == [line.split(";")[0] for line in first]
    assert {k: m.pipe for k, m in models.loaded.items()} == pipes  # the same objects: nothing loaded again
    p.stages = [Stage(str(tiny_models["zimage_turbo"]), steps=2)]
    run_job(p, tmp_path / "3", models)
    assert [k[0] for k in models.loaded] == [str(tiny_models["zimage_turbo"])]
