"""Run every model family through a built bundle: the smoke test's demo covers only the
SDXL-layout demo, and diffusers and transformers import each family's pipeline, text
encoder and tokenizer lazily, by name, so a module the spec missed shows up only when that
family runs. This builds tiny random-weight pipelines of each family (tests/tiny_pipelines.py,
with this checkout's environment), then runs chains of them with the bundle's `generate`
in a clean environment (env -i: PATH, HOME in a scratch folder).

    .venv/bin/python packaging/smoke_families.py [dist/Handoff/Handoff]

Qwen-Image has no tiny pipeline in the tests, so it is not run here.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def chains(m: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(what, generate arguments): every family once as a base, the img2img pipelines as refiners."""
    s = lambda key: str(m[key])  # noqa: E731
    pixel = ["--refiner-strength", "0.5"]  # of --steps 2: one refining step
    return [
        ("SD 1.x, img2img refine", ["--model", s("sd"), "--refiner", s("sd"), *pixel]),
        ("SDXL base + refiner, ensemble", ["--model", s("sdxl"), "--refiner", s("sdxl_refiner"), "--switch-at", "0.5"]),
        ("SD3 -> Z-Image img2img (pixel)", ["--model", s("sd3"), "--refiner", s("zimage"), *pixel]),
        ("Flux.1 -> Chroma, ensemble", ["--model", s("flux"), "--refiner", s("chroma"), "--switch-at", "0.5"]),
        ("Chroma -> Flux.1 img2img", ["--model", s("chroma"), "--refiner", s("flux"), *pixel]),
        ("Z-Image alone", ["--model", s("zimage")]),
        ("FLUX.2 (Mistral3) -> ERNIE-Image, refined through its text-to-image pipeline",
         ["--model", s("flux2"), "--refiner", s("ernie"), *pixel]),
        ("FLUX.2 [klein] (Qwen3)", ["--model", s("klein")]),
        ("SD 1.x single-file checkpoint (LDM layout, configs in HANDOFF_HOME)", ["--model", s("sd_file")]),
    ]


def build(root: Path) -> dict[str, Path]:
    from tests import tiny_pipelines as tp

    m = {k: root / k for k in ("sd", "sdxl", "sdxl_refiner", "sd3", "flux", "chroma", "zimage", "flux2", "ernie",
                               "klein")}
    tp.build_sd(m["sd"])
    tp.build_sdxl_pair(m["sdxl"], m["sdxl_refiner"])
    tp.build_sd3(m["sd3"])
    tp.build_flux(m["flux"], vae_seed=7)
    tp.build_chroma(m["chroma"], vae_seed=7)
    tp.build_zimage(m["zimage"])
    tp.build_flux2(m["flux2"], vae_seed=1)
    tp.build_ernie(m["ernie"], vae_seed=1)
    tp.build_flux2_klein(m["klein"], vae_seed=1)
    from tests.ldm_export import export_ldm

    m["sd_file"] = export_ldm(m["sd"], root / "sd-ldm.safetensors")
    return m


def main() -> int:
    app = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "dist" / "Handoff" / "Handoff").resolve()
    if not app.is_file():
        print(f"smoke_families: no bundle at {app} (python packaging/build.py)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="handoff-families-"))
    t0 = time.perf_counter()
    models = build(tmp / "models")
    print(f"built {len(models)} tiny pipelines in {time.perf_counter() - t0:.0f} s", flush=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp / "home"), "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1"}
    # Where a user puts the configs of a single-file checkpoint (core.models.config_folder).
    from tests.ldm_export import copy_configs

    copy_configs(models["sd"], tmp / "home" / ".local" / "share" / "handoff" / "configs" / "sd")
    failed = []
    for i, (what, args) in enumerate(chains(models)):
        out = tmp / "out" / f"{i}.png"
        cmd = [str(app), "generate", "a red circle on a blue background", *args, "--size", "32x32", "--steps", "2",
               "--seed", "1", "--out", str(out)]
        t0 = time.perf_counter()
        ran = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        ok = ran.returncode == 0 and out.is_file()
        print(f"{'ok  ' if ok else 'FAIL'} {time.perf_counter() - t0:5.1f} s  {what}", flush=True)
        if not ok:
            failed.append(what)
            print("\n".join(ran.stderr.splitlines()[-25:]), flush=True)
    print(f"{len(chains(models)) - len(failed)} of {len(chains(models))} chains ran in the bundle")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
