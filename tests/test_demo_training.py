"""resources/demo/train.py: a tiny run twice gives bit-identical weights (the script is
deterministic given --seed and --threads), and what it writes loads as ordinary diffusers
pipelines through the app's own model path."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--seed", "0", "--threads", "1", "--scenes", "64", "--vae-steps", "2", "--base-steps", "2",
        "--refiner-steps", "2", "--batch", "8"]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.safetensors"))}


def train(out: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "resources" / "demo" / "train.py"), "--out", str(out), *TINY],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_training_is_deterministic_and_loads_like_any_model(tmp_path):
    train(tmp_path / "a")
    train(tmp_path / "b")
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert len(a) == 7 and a == b  # 4 base components + unet, vae, text_encoder_2 of the refiner

    from core.models import parse_ref, resolve

    base = resolve(parse_ref(str(tmp_path / "a" / "demo-base")))
    refiner = resolve(parse_ref(str(tmp_path / "a" / "demo-refiner")))
    assert (base.family.key, refiner.family.key) == ("sdxl", "sdxl-refiner")
    # The two share the VAE and second text encoder bit for bit, so latent and ensemble handoffs apply.
    assert a["demo-base/vae/diffusion_pytorch_model.safetensors"] == a["demo-refiner/vae/diffusion_pytorch_model.safetensors"]
    assert a["demo-base/text_encoder_2/model.safetensors"] == a["demo-refiner/text_encoder_2/model.safetensors"]
