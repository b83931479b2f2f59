"""Train the demo family's two extras on this machine's CPU: `builtin:demo-upscaler` and
`builtin:demo-scorer`. The data are the demo's own procedurally drawn scenes
(resources/demo/train.py: sample_scene, render, caption); nothing is downloaded.

- demo-upscaler (demo-upscaler/demo-upscaler.safetensors): a Real-ESRGAN Compact network
  (spandrel's SRVGGNetCompact, 2x, 32 features, 6 convs), started as an exact linear 3x3
  interpolator (least squares on the soft training renderings) and trained from there with
  L1 and Adam (cosine decay to 0) to turn a scene rendered at 128 px and box-downsampled to
  64 px back into the 128-px rendering (random 32-px input crops, soft renderings drawn
  twice as often as detailed ones).
- demo-scorer (demo-scorer/, a transformers CLIPModel + CLIPProcessor folder): a tiny CLIP
  (ViT 64 px, patch 8; text over the demo's own CLIP tokenizer) trained with CLIP's
  contrastive loss on (scene, caption) pairs, each batch's texts widened with one hard
  negative per image (its caption with the shape's colour or the shape changed).

Held out (never trained on): the scenes of --held-out-seed, on which both are measured
(the upscaler's PSNR against Lanczos, the scorer's AUC of true caption vs a caption that
differs in colour or shape). tests/test_demo_extras.py checks the shipped files on the
same held-out seed.

Rerun (from the repository root; the settings the shipped weights were trained with):
    OMP_NUM_THREADS=1 python resources/demo/train_extras.py --out resources/demo --seed 0 --only upscaler
    OMP_NUM_THREADS=1 python resources/demo/train_extras.py --out resources/demo --seed 0 --only scorer
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import train as demo_train  # noqa: E402
from core import demo  # noqa: E402
from core.scorers import _features  # noqa: E402

HELD_OUT_SEED = 1000  # the scenes both extras are measured on (tests use the same)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- upscaler data
def upscale_pair(scene: dict, detailed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(64-px input, 128-px target) uint8 of one scene: the 128-px rendering, box-downsampled."""
    target = demo_train.render(scene, 2 * demo.NATIVE_SIZE)[int(detailed)]
    small = Image.fromarray(target).resize((demo.NATIVE_SIZE,) * 2, Image.BOX)
    return np.asarray(small), target


def upscale_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [upscale_pair(demo_train.sample_scene(rng), i % 2 == 1) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))


def lanczos(small: np.ndarray) -> np.ndarray:
    size = small.shape[0] * 2
    return np.asarray(Image.fromarray(small).resize((size, size), Image.LANCZOS))


def run_upscaler(model, small: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        y = model(x).clamp(0, 1)
    return (y * 255).round().byte().permute(0, 2, 3, 1).numpy()


def interpolation_filter(small: np.ndarray, big: np.ndarray) -> np.ndarray:
    """The least-squares linear 3x3 filter (9 taps + bias) from a 64-px pixel's neighbourhood to
    its four 128-px pixels minus the pixel itself (what the Compact adds on top of its nearest-
    neighbour base), per channel alike: (10, 4), the four in PixelShuffle order (dy, dx).
    Fitted on the pixels' own neighbours (edges replicated), so it is interpolation as these
    scenes want it, away from the borders."""
    ata, atb = np.zeros((10, 10)), np.zeros((10, 4))
    for i in range(0, len(small), 50):
        s = small[i:i + 50].astype(np.float64) / 255.0
        padded = np.pad(s, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        taps = [padded[:, dy:dy + s.shape[1], dx:dx + s.shape[2]] for dy in range(3) for dx in range(3)]
        a = np.stack(taps + [np.ones_like(s)], -1).reshape(-1, 10)
        residual = big[i:i + 50].astype(np.float64) / 255.0 - s.repeat(2, 1).repeat(2, 2)
        t = np.stack([residual[:, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)], -1).reshape(-1, 4)
        ata += a.T @ a
        atb += a.T @ t
    return np.linalg.solve(ata, atb)


def start_as_interpolation(model, weights: np.ndarray) -> None:
    """Make the Compact an exact linear interpolator at the start: the first conv computes the
    filter's 12 outputs (3 channels x 4 sub-pixels) into features 0-11, the convs between carry
    them unchanged (centre tap 1, PReLU slope 1), and the last conv hands them to PixelShuffle
    with everything else at 0. A randomly started net learns interpolation only roughly, and on
    the soft renderings, where Lanczos is within a level, that roughness loses to Lanczos;
    started here it only has to learn the rest (edges, grain, the zero-padded borders)."""
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    acts = [m for m in model.body if isinstance(m, torch.nn.PReLU)]
    w = torch.from_numpy(weights).float()
    n = 3 * 4
    with torch.no_grad():
        convs[0].weight[:n] = 0
        for c in range(3):
            for j in range(4):
                convs[0].weight[c * 4 + j, c] = w[:9, j].reshape(3, 3)
                convs[0].bias[c * 4 + j] = w[9, j]
        for act in acts:
            act.weight[:n] = 1
        for conv in convs[1:]:
            conv.weight[:n] = 0
            conv.weight[:, :n] = 0
            conv.bias[:n] = 0
            conv.weight[:n, :n, 1, 1] = torch.eye(n)
        convs[-1].weight[:, n:] = 0


def train_upscaler(out: Path, args) -> None:
    from safetensors.torch import save_file

    from core.upscalers import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    t0 = time.time()
    small, big = upscale_set(args.upscaler_scenes, args.seed)
    held_small, held_big = upscale_set(args.held_out, HELD_OUT_SEED)
    log(f"upscaler data: {len(small)} train / {len(held_small)} held-out scenes, {time.time() - t0:.0f}s")
    torch.manual_seed(args.seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=6, upscale=2)
    if args.upscaler_init == "interpolation":
        start_as_interpolation(model, interpolation_filter(small[0::2], big[0::2]))  # the soft ones
    opt = torch.optim.Adam(model.parameters(), lr=args.upscaler_lr)
    gen = torch.Generator().manual_seed(args.seed)
    xs = torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255.0
    ys = torch.from_numpy(big).permute(0, 3, 1, 2).float() / 255.0
    crop = 32
    # the soft renderings drawn more often: their errors are a level or less, and each counts
    # as much in their PSNR as the detailed renderings' larger ones do in theirs
    scene_weight = torch.where(torch.arange(len(xs)) % 2 == 0, args.upscaler_soft_weight, 1.0)
    t1 = time.time()
    for step in range(args.upscaler_steps):
        lr = args.upscaler_lr * 0.5 * (1 + math.cos(math.pi * step / args.upscaler_steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.multinomial(scene_weight, args.upscaler_batch, replacement=True, generator=gen)
        oy, ox = torch.randint(0, demo.NATIVE_SIZE - crop + 1, (2,), generator=gen).tolist()
        x = xs[idx, :, oy:oy + crop, ox:ox + crop]
        y = ys[idx, :, 2 * oy:2 * (oy + crop), 2 * ox:2 * (ox + crop)]
        loss = (model(x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == args.upscaler_steps - 1:
            log(f"  upscaler step {step}: L1 {loss.item():.4f} ({time.time() - t1:.0f}s)")
    model.eval()
    ours = run_upscaler(model, held_small)
    p_model = np.mean([psnr(o, t) for o, t in zip(ours, held_big)])
    p_lanczos = np.mean([psnr(lanczos(s), t) for s, t in zip(held_small, held_big)])
    wins = sum(psnr(o, t) > psnr(lanczos(s), t) for o, s, t in zip(ours, held_small, held_big))
    log(f"upscaler held-out PSNR (seed {HELD_OUT_SEED}, {len(held_small)} scenes): model {p_model:.2f} dB, "
        f"Lanczos {p_lanczos:.2f} dB, model better on {wins}/{len(held_small)}; {time.time() - t0:.0f}s in all")
    for name, first in (("soft", 0), ("detailed", 1)):  # upscale_set alternates them
        mine = [psnr(o, t) for o, t in zip(ours[first::2], held_big[first::2])]
        theirs = [psnr(lanczos(s), t) for s, t in zip(held_small[first::2], held_big[first::2])]
        log(f"  {name}: model {np.mean(mine):.2f} dB, Lanczos {np.mean(theirs):.2f} dB, "
            f"model better on {sum(m > z for m, z in zip(mine, theirs))}/{len(mine)}")
    dest = out / "demo-upscaler"
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / ".demo-upscaler.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(dest / "demo-upscaler.safetensors")


# ----------------------------------------------------------------------------- scorer
def mismatch(scene: dict, rng: np.random.Generator) -> dict:
    """The scene with its shape's colour or its shape changed (the colour never the background's)."""
    other = dict(scene)
    if rng.random() < 0.5:
        other["color"] = rng.choice([c for c in demo.COLORS if c not in (scene["color"], scene["bg"])])
    else:
        other["shape"] = rng.choice([s for s in demo.SHAPES if s != scene["shape"]])
    return other


def scorer_images(scenes: list[dict]) -> np.ndarray:
    """Soft and detailed renderings alternately (the base draws the one, the refiner the other)."""
    return np.stack([demo_train.render(s)[i % 2] for i, s in enumerate(scenes)])


def pixel_values(images: np.ndarray) -> torch.Tensor:
    """What CLIPProcessor makes of 64-px images (no resize or crop at 64 px: rescale, normalise)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


def build_scorer():
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from core.local_tokenizers import clip_tokenizer

    tokenizer = clip_tokenizer(demo.WORDS, max_length=16)
    text = dict(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=64, intermediate_size=128,
                num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=16)
    vision = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=3,
                  image_size=demo.NATIVE_SIZE, patch_size=8)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": demo.NATIVE_SIZE},
                                           crop_size={"height": demo.NATIVE_SIZE, "width": demo.NATIVE_SIZE},
                                           image_mean=CLIP_MEAN, image_std=CLIP_STD),
        tokenizer=tokenizer)
    return CLIPModel(config), processor


def tokens(processor, captions: list[str]) -> dict:
    return dict(processor.tokenizer(captions, return_tensors="pt", padding=True, truncation=True))


def auc(model, processor, scenes: list[dict], images: np.ndarray, seed: int) -> float:
    """P(score(image, its caption) > score(image, a caption differing in colour or shape))."""
    rng = np.random.default_rng(seed)
    true = [demo_train.caption(s) for s in scenes]
    false = [demo_train.caption(mismatch(s, rng)) for s in scenes]
    with torch.no_grad():
        img = torch.nn.functional.normalize(_features(model.get_image_features(pixel_values=pixel_values(images))), dim=-1)
        t = torch.nn.functional.normalize(_features(model.get_text_features(**tokens(processor, true))), dim=-1)
        f = torch.nn.functional.normalize(_features(model.get_text_features(**tokens(processor, false))), dim=-1)
    st, sf = (img * t).sum(-1), (img * f).sum(-1)
    return float(((st > sf).float() + 0.5 * (st == sf).float()).mean())


def train_scorer(out: Path, args) -> None:
    t0 = time.time()
    rng = np.random.default_rng(args.seed + 7)
    scenes = [demo_train.sample_scene(rng) for _ in range(args.scorer_scenes)]
    images = scorer_images(scenes)
    held_rng = np.random.default_rng(HELD_OUT_SEED)
    held = [demo_train.sample_scene(held_rng) for _ in range(args.held_out)]
    held_images = scorer_images(held)
    log(f"scorer data: {len(scenes)} train / {len(held)} held-out scenes, {time.time() - t0:.0f}s")
    torch.manual_seed(args.seed)
    model, processor = build_scorer()
    opt = torch.optim.AdamW(model.parameters(), lr=args.scorer_lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed)
    pix = pixel_values(images)
    t1 = time.time()
    for step in range(args.scorer_steps):
        lr = args.scorer_lr * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * step / args.scorer_steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(scenes), (args.scorer_batch,), generator=gen).tolist()
        batch = [scenes[i] for i in idx]
        texts = [demo_train.caption(s) for s in batch] + [demo_train.caption(mismatch(s, rng)) for s in batch]
        img = torch.nn.functional.normalize(_features(model.get_image_features(pixel_values=pix[idx])), dim=-1)
        txt = torch.nn.functional.normalize(_features(model.get_text_features(**tokens(processor, texts))), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T  # (B, 2B): own caption, others, hard negatives
        labels = torch.arange(len(batch))
        loss = (torch.nn.functional.cross_entropy(logits, labels)
                + torch.nn.functional.cross_entropy(logits[:, :len(batch)].T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == args.scorer_steps - 1:
            log(f"  scorer step {step}: loss {loss.item():.3f} ({time.time() - t1:.0f}s)")
    model.eval()
    value = auc(model, processor, held, held_images, HELD_OUT_SEED)
    log(f"scorer held-out AUC (seed {HELD_OUT_SEED}, {len(held)} scenes, true caption vs colour/shape changed): "
        f"{value:.3f}; {time.time() - t0:.0f}s in all")
    dest = out / "demo-scorer"
    tmp = Path(tempfile.mkdtemp(prefix=".demo-scorer.", dir=out))
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["upscaler", "scorer"], default=None)
    parser.add_argument("--upscaler-batch", type=int, default=16)
    parser.add_argument("--scorer-batch", type=int, default=64)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--upscaler-scenes", type=int, default=1500)
    parser.add_argument("--upscaler-steps", type=int, default=5000)
    parser.add_argument("--upscaler-lr", type=float, default=1e-3)
    parser.add_argument("--upscaler-soft-weight", type=float, default=2.0)
    parser.add_argument("--upscaler-init", choices=["interpolation", "random"], default="interpolation")
    parser.add_argument("--scorer-scenes", type=int, default=4000)
    parser.add_argument("--scorer-steps", type=int, default=1500)
    parser.add_argument("--scorer-lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "upscaler"):
        train_upscaler(args.out, args)
    if args.only in (None, "scorer"):
        train_scorer(args.out, args)


if __name__ == "__main__":
    main()
