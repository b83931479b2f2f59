"""Test isolation: every test gets its own Handoff home, and the whole run its own
Hugging Face cache, so nothing touches a user's real settings, outputs or models."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="handoff-tests-"))
# Set before anything imports huggingface_hub, which reads them at import time.
os.environ["HF_HOME"] = str(_SESSION_TMP / "hf-home")
os.environ["HANDOFF_HOME"] = str(_SESSION_TMP / "home")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # pytest-qt aborts with no display otherwise
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Tiny models are dominated by per-op overhead; one thread also keeps a busy 2-core
# machine from thrashing OpenMP spin-waits (seen: 0.7 s vs 20 s for the same call).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Before any test imports transformers or diffusers: a torchvision built for another torch
# (pip's, beside a local CPU torch) must read as absent to them, as it does in the app.
import core  # noqa: E402,F401  (core/__init__.py installs core.torchvision_guard)

# Property-based tests of the readers: short and reproducible by default (the same examples
# each run, none stored in the checkout); HYPOTHESIS_PROFILE=explore looks further, at random.
_HYPOTHESIS = dict(deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("handoff", max_examples=100, derandomize=True, **_HYPOTHESIS)
settings.register_profile("explore", max_examples=2000, **_HYPOTHESIS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "handoff"))


@pytest.fixture(autouse=True)
def handoff_home(tmp_path, monkeypatch) -> Path:
    from core import settings_file

    home = tmp_path / "handoff-home"
    monkeypatch.setenv("HANDOFF_HOME", str(home))
    # What an earlier test's damaged settings left to be said belongs to that test's home.
    monkeypatch.setattr(settings_file, "_problems", [])
    monkeypatch.setattr(settings_file, "_repaired", {})
    return home


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """Tiny random-weight pipelines saved to disk once per test session."""
    from tests import tiny_pipelines as tp

    root = _SESSION_TMP / "tiny-models"
    out = {
        "sd": root / "sd",
        "sd_other": root / "sd-other",
        "sdxl": root / "sdxl-base",
        "sdxl_refiner": root / "sdxl-refiner",
        "zimage": root / "zimage-base",
        "zimage_turbo": root / "zimage-turbo",
    }
    if not (out["zimage_turbo"] / "model_index.json").exists():
        tp.build_sd(out["sd"], seed=0)
        tp.build_sd(out["sd_other"], seed=100)
        tp.build_sdxl_pair(out["sdxl"], out["sdxl_refiner"], seed=0)
        tp.build_zimage(out["zimage"], seed=0, vae_seed=7)
        tp.build_zimage(out["zimage_turbo"], seed=20, vae_seed=7)
    return out


@pytest.fixture(scope="session")
def family_models(tiny_models) -> dict[str, Path]:
    """Tiny SD3, Flux.1 and Chroma pipelines. Flux.1, Chroma and tiny_models' Z-Image pair
    are built with one vae_seed (7) and the Flux.1 VAE config, so the four share one VAE
    (config and weights) and one latent space; `flux_other_vae` differs only in its VAE's
    weights, and the two SD3 models share an SD3 VAE of their own."""
    from tests import tiny_pipelines as tp

    root = _SESSION_TMP / "family-models"
    out = {
        "sd3": root / "sd3",
        "sd3_other": root / "sd3-other",
        "flux": root / "flux",
        "flux_other_vae": root / "flux-other-vae",
        "chroma": root / "chroma",
        "zimage": tiny_models["zimage"],
        "zimage_turbo": tiny_models["zimage_turbo"],
        "sd": tiny_models["sd"],
    }
    if not (out["chroma"] / "model_index.json").exists():
        tp.build_sd3(out["sd3"], seed=0, vae_seed=3)
        tp.build_sd3(out["sd3_other"], seed=30, vae_seed=3)
        tp.build_flux(out["flux"], seed=0, vae_seed=7)
        tp.build_flux(out["flux_other_vae"], seed=0, vae_seed=8)
        tp.build_chroma(out["chroma"], seed=10, vae_seed=7)
    return out


@pytest.fixture(scope="session")
def flux2_models() -> dict[str, Path]:
    """Tiny FLUX.2 and ERNIE-Image pipelines (no img2img pipelines of their own: they refine
    through their text-to-image ones). `flux2` and `ernie` share one VAE (config and weights,
    vae_seed 1) and so one latent space; `ernie_other_vae` differs only in its VAE's weights."""
    from tests import tiny_pipelines as tp

    root = _SESSION_TMP / "flux2-models"
    out = {"flux2": root / "flux2", "ernie": root / "ernie", "ernie_other_vae": root / "ernie-other-vae"}
    if not (out["ernie_other_vae"] / "model_index.json").exists():
        tp.build_flux2(out["flux2"], seed=0, vae_seed=1)
        tp.build_ernie(out["ernie"], seed=0, vae_seed=1)
        tp.build_ernie(out["ernie_other_vae"], seed=0, vae_seed=2)
    return out
