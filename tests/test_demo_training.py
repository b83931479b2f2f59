"""resources/demo/train.py: a tiny run twice gives bit-identical weights (the script is
deterministic given --seed and --threads), and what it writes loads as ordinary diffusers
pipelines through the app's own model path."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

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


ADAPTERS_TINY = ["--seed", "0", "--threads", "1", "--controlnet-scenes", "16", "--lora-scenes", "16",
                 "--controlnet-steps", "2", "--lora-steps", "2", "--batch", "4", "--fit-steps", "1", "--board-steps", "2"]


def train_adapters(out: Path, *extra: str) -> None:
    script = ROOT / "resources" / "demo" / "train_adapters.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(out), *ADAPTERS_TINY, *extra],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_adapter_training_is_deterministic_phase_by_phase(tmp_path):
    """resources/demo/train_adapters.py: a tiny run gives the same bytes as the same run
    made one phase at a time (so each phase is deterministic and independent of the other),
    and what it writes loads as a diffusers ControlNet and a diffusers LoRA."""
    pytest.importorskip("cv2")
    pytest.importorskip("peft")
    train_adapters(tmp_path / "a")
    train_adapters(tmp_path / "b", "--lora-steps", "0")
    train_adapters(tmp_path / "b", "--controlnet-steps", "0")
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert sorted(a) == ["demo-controlnet/diffusion_pytorch_model.safetensors", "demo-lora/demo-lora.safetensors"]
    assert a == b

    from diffusers import ControlNetModel, StableDiffusionXLPipeline

    from core import demo

    cn = ControlNetModel.from_pretrained(tmp_path / "a" / "demo-controlnet")
    assert cn.config.conditioning_embedding_out_channels == [8, 16, 32]
    lora, _ = StableDiffusionXLPipeline.lora_state_dict(str(tmp_path / "a" / "demo-lora" / "demo-lora.safetensors"),
                                                        return_alphas=True)
    assert lora and all(k.startswith("unet.") for k in lora)
    assert demo.adapter_path("demo-lora").name == "demo-lora.safetensors"
