"""Train Handoff's offline demo family (demo-base + demo-refiner) on this machine's CPU.

The data are drawn here, procedurally: one colored shape (circle, square, triangle, star;
small, medium or big) on a plain, gradient, striped, dotted or textured background, with
a caption such as "a red circle on a blue background" or "a small yellow star on a green
gradient background". Nothing is downloaded.

Phases (each one's wall time is printed):
  1. scenes: draw every scene twice, a *soft* rendering (slightly blurred, no detail) and a
     *detailed* one (crisp edges, a dark outline on the shape, fine grain);
  2. vae: the shared AutoencoderKL (64x64 RGB <-> 16x16x4), trained on both renderings;
  3. base: the base UNet + both CLIP text encoders, epsilon prediction over the whole
     schedule, on the soft renderings (the base composes the scene);
  4. refiner: a second UNet warm-started from the base, trained mostly on the low-noise end
     of the schedule (SDXL's refiner takes over the last ~20%) on the detailed renderings,
     with the aesthetic-score condition: 6.0 = detailed, 2.5 = soft (the pipeline's default
     negative), so classifier-free guidance pushes towards the detail.

Both folders are ordinary diffusers pipelines built by core.demo.assemble (same VAE and
text_encoder_2 weights in both), written with save_pretrained (safetensors).

Rerun (from the repository root; about 40 minutes on 2 CPU cores; the defaults are the
settings the shipped weights were trained with):
    python resources/demo/train.py --out resources/demo --seed 0 --threads 2 \
        --vae-steps 800 --base-steps 4000 --refiner-steps 600

Quick smoke run (a minute; useless weights, checks the plumbing):
    python resources/demo/train.py --out /tmp/demo-smoke --scenes 256 \\
        --vae-steps 5 --base-steps 5 --refiner-steps 5

The run is deterministic given --seed and --threads (float reductions depend on the
thread count).
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from core import demo  # noqa: E402

SIZE = demo.NATIVE_SIZE
SS = 2  # supersampling factor for drawing
RGB = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 30), "green": (40, 170, 50),
    "cyan": (40, 210, 220), "blue": (30, 60, 210), "purple": (130, 40, 180), "pink": (245, 130, 190),
    "white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128), "brown": (130, 80, 35),
}
assert list(RGB) == demo.COLORS
SIZES = {"small": (7.0, 10.0), "medium": (12.0, 15.0), "big": (17.0, 21.0)}
KINDS = ["plain", "gradient", "striped", "dotted", "textured"]
KIND_P = [0.4, 0.2, 0.15, 0.1, 0.15]
BASE_TIME_IDS = [SIZE, SIZE, 0, 0, SIZE, SIZE]  # original size, crop top-left, target size
AESTHETIC, NEG_AESTHETIC = 6.0, 2.5  # the img2img pipeline's defaults


# ----------------------------------------------------------------------------- scenes
def shade(rgb, f: float) -> np.ndarray:
    """f > 0 mixes towards white, f < 0 towards black."""
    c = np.asarray(rgb, dtype=np.float32)
    return c + (255.0 - c) * f if f > 0 else c * (1.0 + f)


def contrast_shade(rgb, amount: float) -> np.ndarray:
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return shade(rgb, -amount if lum > 70 else amount)


def sample_scene(rng: np.random.Generator) -> dict:
    color = demo.COLORS[rng.integers(len(demo.COLORS))]
    bg = color
    while bg == color:
        bg = demo.COLORS[rng.integers(len(demo.COLORS))]
    size = ["small", "medium", "big"][rng.choice(3, p=[0.3, 0.4, 0.3])]
    r = float(rng.uniform(*SIZES[size]))
    jitter = min(8.0, SIZE / 2 - r - 3)
    return dict(
        shape=demo.SHAPES[rng.integers(len(demo.SHAPES))], color=color, bg=bg, size=size, r=r,
        cx=SIZE / 2 + float(rng.uniform(-jitter, jitter)), cy=SIZE / 2 + float(rng.uniform(-jitter, jitter)),
        angle=float(rng.uniform(-12, 12)), kind=KINDS[rng.choice(len(KINDS), p=KIND_P)],
        direction=int(rng.integers(4)), seed=int(rng.integers(2**31)),
        size_word={"small": ["small", "small", "tiny"], "medium": ["", "", "", "medium"],
                   "big": ["big", "large"]}[size][rng.integers(3 if size == "small" else 4 if size == "medium" else 2)],
        plain_word=bool(rng.random() < 0.2),
    )


def caption(s: dict) -> str:
    head = " ".join(w for w in (s["size_word"], s["color"], s["shape"]) if w)
    article = "an" if head[0] in "aeiou" else "a"
    if s["kind"] == "plain":
        back = f"plain {s['bg']}" if s["plain_word"] else s["bg"]
    else:
        back = f"{s['bg']} {s['kind']}"
    return f"{article} {head} on {'an' if back[0] in 'aeiou' else 'a'} {back} background"


def shape_points(s: dict, k: float) -> list:
    cx, cy, r, a = s["cx"] * k, s["cy"] * k, s["r"] * k, math.radians(s["angle"])
    if s["shape"] == "square":
        corners = [(math.pi / 4 + i * math.pi / 2) for i in range(4)]
        return [(cx + r * 1.05 * math.cos(t + a), cy + r * 1.05 * math.sin(t + a)) for t in corners]
    if s["shape"] == "triangle":
        return [(cx + r * 1.2 * math.cos(-math.pi / 2 + a + i * 2 * math.pi / 3),
                 cy + 0.25 * r + r * 1.2 * math.sin(-math.pi / 2 + a + i * 2 * math.pi / 3)) for i in range(3)]
    pts = []  # star
    for i in range(10):
        rr = r * 1.15 if i % 2 == 0 else r * 0.5
        t = -math.pi / 2 + a + i * math.pi / 5
        pts.append((cx + rr * math.cos(t), cy + rr * math.sin(t)))
    return pts


_GRIDS: dict[int, np.ndarray] = {}


def grid(n: int) -> np.ndarray:
    if n not in _GRIDS:
        _GRIDS[n] = np.mgrid[0:n, 0:n].astype(np.float32)
    return _GRIDS[n]


def background(s: dict, n: int) -> np.ndarray:
    rng = np.random.default_rng(s["seed"])
    c = np.asarray(RGB[s["bg"]], np.float32)
    img = np.broadcast_to(c, (n, n, 3)).copy()
    yy, xx = grid(n) / n
    axis = [yy, xx, (xx + yy) / 2, (xx + 1 - yy) / 2][s["direction"]]
    if s["kind"] == "gradient":
        lo, hi = shade(RGB[s["bg"]], -0.5), shade(RGB[s["bg"]], 0.35)
        img = lo + (hi - lo) * axis[..., None]
    elif s["kind"] == "striped":
        band = (np.floor(axis * 8 * (1 if s["direction"] < 2 else 1.4)) % 2)[..., None]
        img = img * (1 - band) + contrast_shade(RGB[s["bg"]], 0.35) * band
    elif s["kind"] == "dotted":
        p = n / 8
        d = np.hypot((xx * n) % p - p / 2, (yy * n) % p - p / 2)
        dot = (d < p * 0.2)[..., None]
        img = np.where(dot, contrast_shade(RGB[s["bg"]], 0.45), img)
    elif s["kind"] == "checkered":  # only train_adapters.py draws it (the LoRA's style); never in KINDS
        cell = s.get("cell", 8) * n // SIZE
        yy_i, xx_i = grid(n).astype(np.int64) // cell
        odd = ((yy_i + xx_i) % 2).astype(np.float32)[..., None]
        img = np.asarray(RGB["black"], np.float32) * (1 - odd) + np.asarray(RGB["white"], np.float32) * odd
    elif s["kind"] == "textured":
        noise = rng.normal(0, 1, (SIZE // 4, SIZE // 4)).astype(np.float32)
        noise = np.asarray(Image.fromarray(noise).resize((n, n), Image.BICUBIC))
        img = img + noise[..., None] * 28.0
    return img


def render(s: dict, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(soft, detailed) uint8 renderings of one scene, size x size x 3 (the scene's
    coordinates are in SIZE pixels; train_extras.py renders them at 2x for the upscaler)."""
    n = size * SS
    k = SS * size / SIZE  # scene pixels -> supersampled pixels
    bg = background(s, n)
    mask_img = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask_img)
    if s["shape"] == "circle":
        cx, cy, r = s["cx"] * k, s["cy"] * k, s["r"] * k
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(shape_points(s, k), fill=255)
    mask = np.asarray(mask_img, np.float32)[..., None] / 255.0
    fg = np.asarray(RGB[s["color"]], np.float32)
    soft = bg * (1 - mask) + fg * mask
    # detailed: a dark (or light, on dark shapes) outline ~1px wide, a highlight, fine grain
    grown = np.asarray(mask_img.filter(ImageFilter.MaxFilter(2 * round(k) + 1)), np.float32)[..., None] / 255.0
    outline = np.clip(grown - mask, 0, 1)
    rng = np.random.default_rng(s["seed"] + 1)
    detailed = soft * (1 - outline) + contrast_shade(RGB[s["color"]], 0.6) * outline
    yy, xx = grid(n)
    hl = np.exp(-(((xx - (s["cx"] - s["r"] * 0.35) * k) ** 2 + (yy - (s["cy"] - s["r"] * 0.35) * k) ** 2)
                  / (2 * (s["r"] * 0.35 * k) ** 2)))[..., None]
    detailed = detailed + mask * hl * (255.0 - detailed) * 0.35

    def down(a: np.ndarray) -> Image.Image:
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).resize((size, size), Image.BOX)

    soft_img = down(soft).filter(ImageFilter.GaussianBlur(0.9 * size / SIZE))
    det = np.asarray(down(detailed), np.float32) + rng.normal(0, 5.0, (size, size, 1))
    return np.asarray(soft_img), np.clip(det, 0, 255).astype(np.uint8)


def make_scenes(n: int, seed: int):
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    soft = np.empty((n, SIZE, SIZE, 3), np.uint8)
    det = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i, s in enumerate(scenes):
        soft[i], det[i] = render(s)
    return scenes, [caption(s) for s in scenes], soft, det


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ----------------------------------------------------------------------------- training helpers
class EMA:
    def __init__(self, params, decay: float):
        self.params = [p for p in params if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay, self.n = decay, 0

    @torch.no_grad()
    def update(self):
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)

    @torch.no_grad()
    def copy_to_model(self):
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def log(msg: str) -> None:
    print(msg, flush=True)


def train_vae(vae, images: torch.Tensor, steps: int, batch: int, gen: torch.Generator):
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    vae.train()
    crop = SIZE // 2
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, 1e-3, 50)
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        oy, ox = (torch.randint(0, (SIZE - crop) // 4 + 1, (2,), generator=gen) * 4).tolist()
        x = images[idx, :, oy:oy + crop, ox:ox + crop]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        y = vae.decode(z).sample
        err = y - x
        grad = ((y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])).abs().mean() + (
            (y[..., 1:] - y[..., :-1]) - (x[..., 1:] - x[..., :-1])).abs().mean()
        loss = err.abs().mean() + err.pow(2).mean() + 0.5 * grad + 1e-5 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"  vae step {step}/{steps} loss {loss.item():.4f} l1 {err.abs().mean().item():.4f}")
    vae.eval()


@torch.no_grad()
def encode_all(vae, images: torch.Tensor, batch: int = 256):
    means, stds = [], []
    for i in range(0, len(images), batch):
        post = vae.encode(images[i:i + batch]).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


def diffusion_loss(unet, latents, enc, pooled, time_ids, scheduler, t, gen, offset: float):
    ac = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    noise = torch.randn(latents.shape, generator=gen)
    # offset noise: lets the model move the image's mean (the background color) far from the prior's
    noise = noise + offset * torch.randn(latents.shape[0], latents.shape[1], 1, 1, generator=gen)
    noisy = ac.sqrt() * latents + (1 - ac).sqrt() * noise
    pred = unet(noisy, t, enc, added_cond_kwargs=dict(text_embeds=pooled, time_ids=time_ids)).sample
    snr = ac / (1 - ac)
    weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 weighting (epsilon prediction)
    return (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3), keepdim=True)).mean()


def sample_latents(mean, std, idx, scale, gen):
    m, s = mean[idx], std[idx]
    return (m + s * torch.randn(m.shape, generator=gen)) * scale


def save_pipelines(parts: dict, out: Path, names=demo.NAMES) -> None:
    base, refiner = demo.assemble(parts)
    out.mkdir(parents=True, exist_ok=True)
    for name, pipe in zip(demo.NAMES, (base, refiner)):
        if name not in names:
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
        pipe.save_pretrained(tmp)  # safetensors by default
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    log(f"  saved {', '.join(names)} to {out}")


# ----------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="folder that gets demo-base/ and demo-refiner/ (default: resources/demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--scenes", type=int, default=8000, help="number of drawn scenes")
    ap.add_argument("--vae-steps", type=int, default=800)
    ap.add_argument("--base-steps", type=int, default=4000)
    ap.add_argument("--refiner-steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-4, help="peak learning rate of the base (the refiner uses half)")
    ap.add_argument("--offset-noise", type=float, default=0.05)
    ap.add_argument("--init", type=Path, default=None,
                    help="continue from the demo-base/ in this folder (VAE, text encoders, base UNet); "
                         "with --vae-steps 0 the VAE stays as it is")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t_all = time.time()

    t0 = time.time()
    _, captions, soft, det = make_scenes(args.scenes, args.seed)
    soft_t, det_t = to_tensor(soft), to_tensor(det)
    log(f"scenes: {args.scenes} drawn twice in {time.time() - t0:.0f}s; e.g. '{captions[0]}'")

    parts = demo.components(args.seed)
    vae, te1, te2, unet = parts["vae"], parts["text_encoder"], parts["text_encoder_2"], parts["base_unet"]
    scheduler = parts["scheduler"]
    if args.init is not None:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        src = args.init / "demo-base"
        for module, cls, sub in ((vae, AutoencoderKL, "vae"), (unet, UNet2DConditionModel, "unet"),
                                 (te1, CLIPTextModel, "text_encoder"),
                                 (te2, CLIPTextModelWithProjection, "text_encoder_2")):
            module.load_state_dict(cls.from_pretrained(src / sub).state_dict())
        log(f"init: continuing from {src}")

    t0 = time.time()
    train_vae(vae, torch.cat([soft_t, det_t]), args.vae_steps, args.batch, gen)
    vae.requires_grad_(False)
    soft_m, soft_s = encode_all(vae, soft_t)
    det_m, det_s = encode_all(vae, det_t)
    scale = float(1.0 / torch.cat([soft_m, det_m]).std())
    vae.register_to_config(scaling_factor=scale)
    log(f"vae: {time.time() - t0:.0f}s, scaling_factor {scale:.4f}, "
        f"latent mean {torch.cat([soft_m, det_m]).mean().item() * scale:+.3f}")

    # ---- base: UNet + both text encoders, whole schedule, soft renderings
    t0 = time.time()
    base, _ = demo.assemble(parts)
    train_params = list(unet.parameters()) + list(te1.parameters()) + list(te2.parameters())
    opt = torch.optim.AdamW(train_params, lr=args.lr, weight_decay=0.01)
    ema = EMA(train_params, 0.998)
    unet.train(), te1.train(), te2.train()
    time_ids = torch.tensor([BASE_TIME_IDS], dtype=torch.float32).repeat(args.batch, 1)
    running = 0.0
    for step in range(args.base_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.base_steps, args.lr)
        idx = torch.randint(0, args.scenes, (args.batch,), generator=gen)
        u = torch.rand(args.batch, generator=gen)
        caps = ["" if u[i] < 0.05 else captions[j] for i, j in enumerate(idx.tolist())]
        enc, _, pooled, _ = base.encode_prompt(caps, device="cpu", num_images_per_prompt=1,
                                               do_classifier_free_guidance=False)
        zero = ((u >= 0.05) & (u < 0.12)).float()  # force_zeros_for_empty_prompt: the default negative
        enc, pooled = enc * (1 - zero).view(-1, 1, 1), pooled * (1 - zero).view(-1, 1)
        latents = sample_latents(soft_m, soft_s, idx, scale, gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), generator=gen)
        loss = diffusion_loss(unet, latents, enc, pooled, time_ids, scheduler, t, gen, args.offset_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(train_params, 1.0)
        opt.step()
        ema.update()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == args.base_steps - 1:
            log(f"  base step {step}/{args.base_steps} loss {running:.4f} ({time.time() - t0:.0f}s)")
    ema.copy_to_model()
    unet.eval(), te1.eval(), te2.eval()
    for m in (unet, te1, te2):
        m.requires_grad_(False)
    log(f"base: {time.time() - t0:.0f}s")
    save_pipelines(parts, args.out, names=("demo-base",))

    # ---- refiner: warm start from the base UNet, low-noise end, detailed renderings
    t0 = time.time()
    ref = parts["refiner_unet"]
    src = unet.state_dict()
    new = {}
    for k, v in ref.state_dict().items():
        w = src[k]
        if w.shape == v.shape:
            new[k] = w.clone()
        elif k.endswith(("attn2.to_k.weight", "attn2.to_v.weight")):
            new[k] = w[:, -v.shape[1]:].clone()  # the text_encoder_2 half of the concatenated context
        elif k == "add_embedding.linear_1.weight":
            n_keep = v.shape[1] - ref.config.addition_time_embed_dim  # pooled + original size + crop
            new[k] = torch.cat([w[:, :n_keep], torch.zeros(v.shape[0], v.shape[1] - n_keep)], dim=1)
        else:
            raise RuntimeError(f"cannot warm-start {k}: {tuple(w.shape)} -> {tuple(v.shape)}")
    ref.load_state_dict(new)
    _, refiner = demo.assemble(parts)
    ref.train()
    params = list(ref.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr / 2, weight_decay=0.01)
    ema = EMA(params, 0.995)
    cache: dict[str, tuple] = {}

    def ref_embed(caps):
        for c in set(caps) - cache.keys():
            with torch.no_grad():
                e, _, p, _ = refiner.encode_prompt(c, device="cpu", num_images_per_prompt=1,
                                                   do_classifier_free_guidance=False)
            cache[c] = (e[0], p[0])
        return torch.stack([cache[c][0] for c in caps]), torch.stack([cache[c][1] for c in caps])

    running = 0.0
    for step in range(args.refiner_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.refiner_steps, args.lr / 2, 50)
        idx = torch.randint(0, args.scenes, (args.batch,), generator=gen)
        u = torch.rand(args.batch, generator=gen)
        detailed = u >= 0.3  # 70%: caption + aesthetic 6 + detailed; else aesthetic 2.5 + soft
        caps = ["" if u[i] < 0.15 else captions[j] for i, j in enumerate(idx.tolist())]
        enc, pooled = ref_embed(caps)
        lat_d = sample_latents(det_m, det_s, idx, scale, gen)
        lat_s = sample_latents(soft_m, soft_s, idx, scale, gen)
        latents = torch.where(detailed.view(-1, 1, 1, 1), lat_d, lat_s)
        aest = torch.where(detailed, torch.tensor(AESTHETIC), torch.tensor(NEG_AESTHETIC))
        tids = torch.stack([torch.full_like(aest, SIZE), torch.full_like(aest, SIZE),
                            torch.zeros_like(aest), torch.zeros_like(aest), aest], dim=1)
        low = torch.randint(0, 250, (args.batch,), generator=gen)
        full = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), generator=gen)
        t = torch.where(torch.rand(args.batch, generator=gen) < 0.65, low, full)
        loss = diffusion_loss(ref, latents, enc, pooled, tids, scheduler, t, gen, args.offset_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == args.refiner_steps - 1:
            log(f"  refiner step {step}/{args.refiner_steps} loss {running:.4f} ({time.time() - t0:.0f}s)")
    ema.copy_to_model()
    ref.eval()
    ref.requires_grad_(False)
    log(f"refiner: {time.time() - t0:.0f}s")
    save_pipelines(parts, args.out)
    log(f"total: {time.time() - t_all:.0f}s")


if __name__ == "__main__":
    main()
