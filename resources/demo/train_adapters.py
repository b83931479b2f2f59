"""Train the demo family's two adapters on this machine's CPU, on top of the shipped demo-base.

  - demo-controlnet/ : a diffusers ControlNetModel, warm-started from the base UNet
    (ControlNetModel.from_unet), conditioned on Canny edges of the drawn scene
    (cv2.Canny(scene, 100, 200) on the 64x64 RGB rendering, as a 3-channel 0/255 image).
    Its scenes put the shape anywhere it fits (the base only saw it near the middle)
    EXCEPT in the held-out corner: no training shape has its centre right of and below
    HELD_OUT (x > 40 and y > 40 pixels), and every rotation stays within train.py's
    +-12 degrees, so tests/test_demo_adapters.py can ask for placements no part of the
    demo was trained on.
  - demo-lora/demo-lora.safetensors : a LoRA (peft, rank 8) on the base UNet's attention
    and transformer projections (LORA_TARGETS), saved in the diffusers LoRA format
    (StableDiffusionXLPipeline.save_lora_weights, UNet only), that teaches the base a
    style it does not know: "... on a checkered background" = black-and-white cells of
    8x8 pixels behind the shape. train.py's base never draws a checkerboard (its
    backgrounds are plain, gradient, striped, dotted and textured). 30% of each of the
    LoRA's batches are ordinary base scenes with their captions (7% with the zeroed
    negative prompt), so that without the word the LoRA leaves the base as it was.

The scenes are drawn by train.py's own code (sample_scene, render, its "checkered"
background kind, which its own KINDS never pick); nothing is downloaded. Each phase has
its own seeded generators, so a phase gives the same bytes whether the other runs or not
(--controlnet-steps 0 or --lora-steps 0 skips one).

Rerun (from the repository root; the defaults are the settings the shipped adapters were
trained with; 33 minutes of wall time on a busy 2-core machine, 19 of CPU, 2.2 GB of RAM):
    python resources/demo/train_adapters.py --out resources/demo --seed 0 --threads 1 \\
        --controlnet-steps 2000 --lora-steps 900

The run is deterministic given --seed and --threads.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
for p in (REPO_ROOT, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import train as demo_train  # noqa: E402  (resources/demo/train.py: scenes, helpers, determinism)
from core import demo  # noqa: E402

SIZE = demo_train.SIZE
HELD_OUT = 40.0  # no ControlNet training shape is centred at x > HELD_OUT and y > HELD_OUT
CANNY = (100, 200)
CHECKER_CELL = 8  # pixels per checkerboard cell (an 8 x 8 board on the 64 x 64 image)
LORA_COLORS = [c for c in demo.COLORS if c not in ("black", "white", "gray")]  # visible on black and white
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
log = demo_train.log


def canny(scene: np.ndarray) -> np.ndarray:
    """Canny edges of a 64x64x3 uint8 scene as a 3-channel 0/255 uint8 image (the control image)."""
    import cv2

    edges = cv2.Canny(np.ascontiguousarray(scene), *CANNY)
    return np.repeat(edges[..., None], 3, axis=-1)


def peak_ram_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: kilobytes


def controlnet_scene(rng: np.random.Generator) -> dict:
    """A base scene moved anywhere the shape fits, except the held-out corner."""
    s = demo_train.sample_scene(rng)
    reach = s["r"] * 1.25 + 2  # the farthest a vertex gets from the centre, plus a margin
    while True:
        cx, cy = rng.uniform(reach, SIZE - reach, 2)
        if not (cx > HELD_OUT and cy > HELD_OUT):
            break
    s["cx"], s["cy"] = float(cx), float(cy)
    return s


def lora_scene(rng: np.random.Generator) -> dict:
    s = demo_train.sample_scene(rng)
    s["color"] = LORA_COLORS[rng.integers(len(LORA_COLORS))]
    s["kind"], s["cell"] = "checkered", CHECKER_CELL
    return s


def lora_caption(s: dict) -> str:
    # "checkered" is not in the demo's vocabulary: it tokenizes to characters (7 tokens of
    # the 16), so "black-and-white" does not fit in the prompt as well; the cells are it.
    head = " ".join(w for w in (s["size_word"], s["color"], s["shape"]) if w)
    return f"{'an' if head[0] in 'aeiou' else 'a'} {head} on a checkered background"


def draw(scenes: list[dict]) -> np.ndarray:
    return np.stack([demo_train.render(s)[0] for s in scenes])  # the soft renderings, as the base's


class Prompts:
    """Frozen text encoders: each caption is encoded once."""

    def __init__(self, pipe):
        self.pipe, self.cache = pipe, {}

    @torch.no_grad()
    def __call__(self, caps: list[str], zero: torch.Tensor):
        for c in set(caps) - self.cache.keys():
            e, _, p, _ = self.pipe.encode_prompt(c, device="cpu", num_images_per_prompt=1,
                                                 do_classifier_free_guidance=False)
            self.cache[c] = (e[0], p[0])
        enc = torch.stack([self.cache[c][0] for c in caps])
        pooled = torch.stack([self.cache[c][1] for c in caps])
        # zeroed = force_zeros_for_empty_prompt: the pipeline's negative in classifier-free guidance
        return enc * (1 - zero).view(-1, 1, 1), pooled * (1 - zero).view(-1, 1)


def load_base(folder: Path):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        m.eval()
        m.requires_grad_(False)
    return pipe


def latents_of(pipe, images: np.ndarray):
    mean, std = demo_train.encode_all(pipe.vae, demo_train.to_tensor(images))
    return mean, std


def fit_to_decoder(vae, x: torch.Tensor, z: torch.Tensor, steps: int, batch: int = 100) -> torch.Tensor:
    """Latents that the frozen decoder turns into x: z refined by Adam on the L1 error."""
    out = []
    for i in range(0, len(x), batch):
        zi = z[i:i + batch].clone().requires_grad_(True)
        opt = torch.optim.Adam([zi], lr=0.05)
        for _ in range(steps):
            loss = (vae.decode(zi).sample - x[i:i + batch]).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out.append(zi.detach())
    return torch.cat(out)


def checkered_latents(pipe, scenes: list[dict], images: np.ndarray, steps: int, board_steps: int) -> torch.Tensor:
    """The demo VAE was trained on the base's scenes only: its encoder turns a black-and-white
    checkerboard into a pink-and-black one, though its decoder can draw the real thing. So
    the LoRA's targets are fitted to the decoder: the board's latent, found once by
    inverting the decoder, under the encoder's latent of the shape (where the two
    renderings differ), then `steps` steps of decoder inversion per scene."""
    import torch.nn.functional as F

    vae = pipe.vae
    empty = dict(scenes[0], cx=-SIZE, cy=-SIZE, r=0.01)  # the board alone
    board_img = draw([empty])
    board_x = demo_train.to_tensor(board_img)
    with torch.no_grad():
        board = vae.encode(board_x).latent_dist.mean
    board = fit_to_decoder(vae, board_x, board, board_steps)
    x = demo_train.to_tensor(images)
    enc, _ = demo_train.encode_all(vae, x)
    shape = (np.abs(images.astype(np.float32) - board_img.astype(np.float32)).max(-1) > 40).astype(np.float32)
    m = F.max_pool2d(torch.from_numpy(shape)[:, None], SIZE // demo.LATENT_SIZE)
    return fit_to_decoder(vae, x, board * (1 - m) + enc * m, steps)


def atomic_dir(out: Path, name: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out)), out / name


def replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


# ----------------------------------------------------------------------------- ControlNet
def train_controlnet(args, pipe) -> None:
    from diffusers import ControlNetModel

    t0 = time.time()
    rng = np.random.default_rng([args.seed, 1])
    gen = torch.Generator().manual_seed(args.seed * 1000 + 1)
    scenes = [controlnet_scene(rng) for _ in range(args.controlnet_scenes)]
    images = draw(scenes)
    conds = torch.from_numpy(np.stack([canny(im) for im in images])).permute(0, 3, 1, 2).float() / 255.0
    captions = [demo_train.caption(s) for s in scenes]
    mean, std = latents_of(pipe, images)
    log(f"controlnet scenes: {len(scenes)} drawn, edged and encoded in {time.time() - t0:.0f}s; "
        f"e.g. '{captions[0]}', {conds[0, 0].sum().item():.0f} edge pixels")

    t1 = time.time()
    unet, scale, scheduler = pipe.unet, pipe.vae.config.scaling_factor, pipe.scheduler
    torch.manual_seed(args.seed + 11)  # the conditioning embedding's random init
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(args.cond_channels))
    # The edges reach the ControlNet's trunk from the first step: a randomly initialised last
    # conv in the conditioning embedding (diffusers zero-initialises it as well as the
    # outgoing convs; with both at zero neither gets a useful gradient for hundreds of steps).
    # The outgoing zero convs stay at zero, so the base is unchanged at the start.
    cn.controlnet_cond_embedding.conv_out.reset_parameters()
    cn.train()
    params = list(cn.parameters())
    opt = torch.optim.AdamW(params, lr=args.controlnet_lr, weight_decay=0.01)
    ema = demo_train.EMA(params, 0.995)
    prompts = Prompts(pipe)
    time_ids = torch.tensor([demo_train.BASE_TIME_IDS], dtype=torch.float32).repeat(args.batch, 1)
    # a fixed check batch at high noise, where the edges matter most: the loss with each
    # scene's own edges and with another scene's; the gap is what the ControlNet has learnt
    check = torch.arange(min(args.batch, len(scenes)))
    check_gen = torch.Generator().manual_seed(args.seed * 1000 + 3)
    check_z = demo_train.sample_latents(mean, std, check, scale, check_gen)
    check_t = torch.randint(600, scheduler.config.num_train_timesteps, (len(check),), generator=check_gen)
    check_noise = torch.randn(check_z.shape, generator=check_gen)
    check_enc, check_pooled = prompts([captions[j] for j in check.tolist()], torch.zeros(len(check)))

    @torch.no_grad()
    def check_loss(cond):
        ac = scheduler.alphas_cumprod[check_t].view(-1, 1, 1, 1)
        noisy = ac.sqrt() * check_z + (1 - ac).sqrt() * check_noise
        added = dict(text_embeds=check_pooled, time_ids=time_ids[:len(check)])
        down, mid = cn(noisy, check_t, encoder_hidden_states=check_enc, controlnet_cond=cond,
                       added_cond_kwargs=added, return_dict=False)
        pred = unet(noisy, check_t, check_enc, added_cond_kwargs=added, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        return (pred - check_noise).pow(2).mean().item()

    running = 0.0
    for step in range(args.controlnet_steps):
        for g in opt.param_groups:
            g["lr"] = demo_train.lr_at(step, args.controlnet_steps, args.controlnet_lr, 50)
        idx = torch.randint(0, len(scenes), (args.batch,), generator=gen)
        zero = (torch.rand(args.batch, generator=gen) < 0.1).float()
        enc, pooled = prompts([captions[j] for j in idx.tolist()], zero)
        latents = demo_train.sample_latents(mean, std, idx, scale, gen)
        # half the batch over the whole schedule, half at high noise, where the layout is decided
        full = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), generator=gen)
        high = torch.randint(500, scheduler.config.num_train_timesteps, (args.batch,), generator=gen)
        t = torch.where(torch.rand(args.batch, generator=gen) < 0.5, full, high)
        cond = conds[idx]

        def controlled(noisy, t, enc, added_cond_kwargs):
            down, mid = cn(noisy, t, encoder_hidden_states=enc, controlnet_cond=cond, conditioning_scale=1.0,
                           added_cond_kwargs=added_cond_kwargs, return_dict=False)
            return unet(noisy, t, enc, added_cond_kwargs=added_cond_kwargs,
                        down_block_additional_residuals=down, mid_block_additional_residual=mid)

        loss = demo_train.diffusion_loss(controlled, latents, enc, pooled, time_ids, scheduler, t, gen,
                                         args.offset_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == args.controlnet_steps - 1:
            cn.eval()
            own, other = check_loss(conds[check]), check_loss(conds[check.roll(1)])
            cn.train()
            log(f"  controlnet step {step}/{args.controlnet_steps} loss {running:.4f}; high-noise check: "
                f"own edges {own:.4f}, another scene's {other:.4f} ({time.time() - t1:.0f}s)")
    ema.copy_to_model()
    cn.eval()
    tmp, target = atomic_dir(args.out, "demo-controlnet")
    cn.save_pretrained(tmp)  # config.json + diffusion_pytorch_model.safetensors
    replace_dir(tmp, target)
    log(f"controlnet: {time.time() - t0:.0f}s (training {time.time() - t1:.0f}s), "
        f"{sum(p.numel() for p in params) / 1e6:.2f} M parameters, saved to {target}; "
        f"peak RAM so far {peak_ram_gb():.2f} GB")


# ----------------------------------------------------------------------------- LoRA
def train_lora(args, pipe) -> None:
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    t0 = time.time()
    rng = np.random.default_rng([args.seed, 2])
    gen = torch.Generator().manual_seed(args.seed * 1000 + 2)
    styled = [lora_scene(rng) for _ in range(args.lora_scenes)]
    prior = [demo_train.sample_scene(rng) for _ in range(args.lora_scenes // 2)]
    captions = [lora_caption(s) for s in styled] + [demo_train.caption(s) for s in prior]
    styled_z = checkered_latents(pipe, styled, draw(styled), args.fit_steps, args.board_steps)
    prior_m, prior_s = latents_of(pipe, draw(prior))
    mean, std = torch.cat([styled_z, prior_m]), torch.cat([torch.zeros_like(styled_z), prior_s])
    n_styled = len(styled)
    log(f"lora scenes: {n_styled} checkered + {len(prior)} ordinary drawn and encoded in "
        f"{time.time() - t0:.0f}s; e.g. '{captions[0]}'")

    t1 = time.time()
    unet, scale, scheduler = pipe.unet, pipe.vae.config.scaling_factor, pipe.scheduler
    torch.manual_seed(args.seed + 12)  # lora_A's random init
    config = LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank, init_lora_weights="gaussian",
                        target_modules=LORA_TARGETS)
    unet.add_adapter(config)
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lora_lr, weight_decay=0.0)
    ema = demo_train.EMA(params, 0.99)
    unet.train()
    prompts = Prompts(pipe)
    time_ids = torch.tensor([demo_train.BASE_TIME_IDS], dtype=torch.float32).repeat(args.batch, 1)
    running = 0.0
    for step in range(args.lora_steps):
        for g in opt.param_groups:
            g["lr"] = demo_train.lr_at(step, args.lora_steps, args.lora_lr, 50)
        u = torch.rand(args.batch, generator=gen)
        pick_styled = torch.randint(0, n_styled, (args.batch,), generator=gen)
        pick_prior = torch.randint(n_styled, len(captions), (args.batch,), generator=gen)
        # 70% checkered scenes; 23% ordinary ones; 7% the zeroed (negative) prompt on ordinary ones
        idx = torch.where(u < 0.7, pick_styled, pick_prior)
        zero = (u >= 0.93).float()
        enc, pooled = prompts([captions[j] for j in idx.tolist()], zero)
        latents = demo_train.sample_latents(mean, std, idx, scale, gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), generator=gen)
        loss = demo_train.diffusion_loss(unet, latents, enc, pooled, time_ids, scheduler, t, gen, args.offset_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 50 == 0 or step == args.lora_steps - 1:
            log(f"  lora step {step}/{args.lora_steps} loss {running:.4f} ({time.time() - t1:.0f}s)")
    ema.copy_to_model()
    unet.eval()
    tmp, target = atomic_dir(args.out, "demo-lora")
    StableDiffusionXLPipeline.save_lora_weights(tmp, unet_lora_layers=get_peft_model_state_dict(unet),
                                                weight_name="demo-lora.safetensors")
    replace_dir(tmp, target)
    log(f"lora: {time.time() - t0:.0f}s (training {time.time() - t1:.0f}s), "
        f"{sum(p.numel() for p in params) / 1e6:.3f} M parameters, saved to {target}; "
        f"peak RAM so far {peak_ram_gb():.2f} GB")


# ----------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE,
                    help="folder that gets demo-controlnet/ and demo-lora/ (default: resources/demo)")
    ap.add_argument("--base", type=Path, default=None,
                    help="the demo-base pipeline folder to train on (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--offset-noise", type=float, default=0.05)
    ap.add_argument("--controlnet-steps", type=int, default=2000, help="0 skips the ControlNet")
    ap.add_argument("--controlnet-scenes", type=int, default=4000)
    ap.add_argument("--controlnet-lr", type=float, default=1e-3)
    ap.add_argument("--cond-channels", type=int, nargs="+", default=[8, 16, 32],
                    help="conditioning_embedding_out_channels (n entries downsample by 2^(n-1): 4 = the VAE's)")
    ap.add_argument("--lora-steps", type=int, default=900, help="0 skips the LoRA")
    ap.add_argument("--lora-scenes", type=int, default=800, help="checkered scenes (and half as many ordinary)")
    ap.add_argument("--fit-steps", type=int, default=10, help="decoder-inversion steps per checkered scene")
    ap.add_argument("--board-steps", type=int, default=300, help="decoder-inversion steps for the bare board")
    ap.add_argument("--lora-lr", type=float, default=2e-3)
    ap.add_argument("--lora-rank", type=int, default=8)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    base_dir = args.base or demo.ensure_model("demo-base")
    t_all = time.time()
    if args.controlnet_steps > 0:
        train_controlnet(args, load_base(base_dir))
    if args.lora_steps > 0:
        train_lora(args, load_base(base_dir))  # a fresh base: the ControlNet phase leaves nothing on it
    log(f"total: {time.time() - t_all:.0f}s, peak RAM {peak_ram_gb():.2f} GB")


if __name__ == "__main__":
    main()
