#!/usr/bin/env python3
"""Train the toy-world InstructPix2Pix (tests/reference/toy/README.md).

Run with the reference venv (tests/reference/setup_venv.sh):
    tests/reference/.venv/bin/python tests/reference/toy/train_toy_model.py --out /tmp/toy-train

Everything is seeded and runs on CPU with a fixed number of steps, so a rerun
with the same arguments and thread count gives the same weights. It writes
DIR/model (diffusers layout, fp16 weights), DIR/log.jsonl (losses) and, every
--save-every steps, DIR/model (overwritten) so that a run can be evaluated
while it trains. The model committed in tests/data/toy_ip2p is DIR/model of the
documented run (model card: tests/data/toy_ip2p/README.md).

Stages:
1. data: --scenes random 64x64 stills, each with every target (grayscale,
   the 4 palette recolours, the black circle when it has a circle);
2. VAE (AutoencoderKL, factor 4): reconstruction of random 32x32 crops of
   sources and targets, decoding the posterior MEAN (a sample's noise hides
   colour at this size), with an extra weight (--vae-chroma) on the colour
   error apart from brightness, so that a grey target decodes grey (without
   it the VAE alone left 7 % of the source's saturation in an exactly grey
   target, with it 3 %); the log-variance is pulled to -8 so that a posterior
   sample (what fine-tuning uses) is the mean up to noise of ~0.02;
3. latents of every image (the posterior mean); scaling factor = 1 / std;
4. UNet (8 input channels) + CLIP text encoder, jointly, with the
   InstructPix2Pix objective: noise the target latent to a uniform timestep,
   condition on the source latent and the instruction, regress the velocity
   v = sqrt(abar) noise - sqrt(1 - abar) latent (v-prediction: with the
   noise as target, a model trained from scratch barely learns the high-noise
   steps, where sqrt(abar) = 0.07 leaves the loss nearly blind to the image,
   and then never reproduces the source's colours and layout); the
   reference script's conditioning dropout (5 % no text, 5 % neither, 5 % no
   image); AdamW, warm-up + cosine; an EMA of the weights is what is saved.
"""

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import toy_world as tw  # noqa: E402
import make_goldens as mg  # noqa: E402
from diffusers import (AutoencoderKL, DDPMScheduler, EulerAncestralDiscreteScheduler,  # noqa: E402
                       StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

PROMPTS = list(tw.INSTRUCTIONS) + [""]  # index 3 = the empty (dropped) instruction
EMPTY = 3

VAE_CONFIG = dict(
    in_channels=3, out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=1,
    sample_size=64,
    mid_block_add_attention=False,
)

UNET_CONFIG = dict(
    sample_size=16,
    in_channels=8, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=4,  # diffusers' SD-1 name: the number of heads
    norm_num_groups=8,
)

TEXT_CONFIG = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=64,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)

TOY_CORPUS = """
make it grayscale. make the image grayscale. paint the shapes. paint the shapes red.
paint the circle black. paint the square. paint the triangle. the circle, the square and the triangle.
"""


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

def make_data(n, seed):
    """uint8 arrays: src [n,64,64,3], gray [n,...], paint [n,4,...], circle [n,...], has_circle [n]."""
    rng = np.random.default_rng(seed)
    src = np.zeros((n, 64, 64, 3), np.uint8)
    gray = np.zeros_like(src)
    paint = np.zeros((n, 4, 64, 64, 3), np.uint8)
    circle = np.zeros_like(src)
    has_circle = np.zeros(n, bool)
    for i in range(n):
        sc = tw.random_scene(rng, need_circle=(i % 2 == 0))
        src[i] = tw.to_uint8(sc.source())
        gray[i] = tw.to_uint8(sc.target(tw.GRAYSCALE))
        for k in range(4):
            paint[i, k] = tw.to_uint8(sc.target(tw.PAINT_SHAPES, k))
        has_circle[i] = sc.has("circle")
        circle[i] = tw.to_uint8(sc.target(tw.PAINT_CIRCLE))
    return dict(src=src, gray=gray, paint=paint, circle=circle, has_circle=has_circle)


def to_tensor(u8):
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    t = torch.from_numpy(u8).float() / 127.5 - 1.0
    return t.movedim(-1, -3).contiguous()


# ----------------------------------------------------------------------------
# VAE
# ----------------------------------------------------------------------------

def train_vae(data, steps, seed, batch=32, crop=32, lr=1e-3, gray_share=0.15, chroma=0.0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    pools = [data["src"], data["gray"], data["paint"].reshape(-1, 64, 64, 3), data["circle"]]
    weights = np.array([0.4, 0.15, 0.3, 0.15])
    # sources / grayscale / recolours / black circles; a larger grayscale
    # share is taken from the sources and recolours in proportion
    weights[1] = gray_share
    weights[[0, 2]] *= (1 - gray_share - weights[3]) / weights[[0, 2]].sum()
    t0, hist = time.time(), []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps)) if step > 100 else lr * step / 100
        which = rng.choice(4, size=batch, p=weights)
        imgs = []
        for w in which:
            pool = pools[w]
            i = rng.integers(len(pool))
            y, x = rng.integers(0, 64 - crop + 1, size=2)
            imgs.append(pool[i, y:y + crop, x:x + crop])
        x = to_tensor(np.stack(imgs))
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.mean).sample
        loss_rec = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)
        if chroma:
            # colour error apart from brightness: an exactly grey target must
            # decode grey, or no UNet can meet the grayscale edit's target
            loss_rec = loss_rec + chroma * F.mse_loss(rec - rec.mean(1, keepdim=True), x - x.mean(1, keepdim=True))
        loss = loss_rec + 1e-3 * ((post.logvar + 8.0) ** 2).mean() + 1e-5 * (post.mean ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        hist.append(float(loss_rec))
        if (step + 1) % 100 == 0:
            log(f"vae step {step + 1}/{steps} rec loss {np.mean(hist[-100:]):.5f} ({time.time() - t0:.0f} s)")
    vae.eval()
    return vae, time.time() - t0, float(np.mean(hist[-100:]))


@torch.no_grad()
def encode_all(vae, u8, batch=256):
    out = []
    flat = u8.reshape(-1, 64, 64, 3)
    for i in range(0, len(flat), batch):
        out.append(vae.encode(to_tensor(flat[i:i + batch])).latent_dist.mean)
    lat = torch.cat(out)
    return lat.reshape(*u8.shape[:-3], *lat.shape[1:])


# ----------------------------------------------------------------------------
# UNet + text encoder
# ----------------------------------------------------------------------------

class Ema:
    def __init__(self, modules, decay):
        self.decay = decay
        self.modules = modules
        self.shadow = [copy.deepcopy(m).eval().requires_grad_(False) for m in modules]

    @torch.no_grad()
    def update(self, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for m, s in zip(self.modules, self.shadow):
            for p, q in zip(m.parameters(), s.parameters()):
                q.mul_(d).add_(p.detach(), alpha=1 - d)


def scheduler_config():
    """The published IP2P scheduler config, with this model's prediction type."""
    cfg = dict(mg.PUBLISHED_SCHEDULER_CONFIG)
    cfg["prediction_type"] = "v_prediction"
    return cfg


def save_model(out_dir, unet, vae, text_encoder, tok_dir):
    """diffusers layout with fp16 weights only (via and diffusers load the variant)."""
    tmp = out_dir + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    scheduler = EulerAncestralDiscreteScheduler.from_config(scheduler_config())
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp, safe_serialization=True)
    for sub, m in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        d = os.path.join(tmp, sub)
        with open(os.path.join(d, "config.json"), "rb") as f:
            cfg = f.read()
        for fn in os.listdir(d):
            if fn.endswith(".safetensors"):
                os.remove(os.path.join(d, fn))
        copy.deepcopy(m).half().save_pretrained(d, variant="fp16", safe_serialization=True)
        with open(os.path.join(d, "config.json"), "wb") as f:  # keep the fp32 config
            f.write(cfg)
    mg.rewrite_text_encoder_checkpoint(os.path.join(tmp, "text_encoder"), "model.fp16.safetensors")
    shutil.rmtree(os.path.join(tmp, "tokenizer"))
    shutil.copytree(tok_dir, os.path.join(tmp, "tokenizer"))
    mg.write_json(os.path.join(tmp, "scheduler", "scheduler_config.json"), scheduler_config())
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.rename(tmp, out_dir)


def train_unet(data, lat, sf, vae, tok_dir, args, logf):
    torch.manual_seed(args.seed + 2)
    rng = np.random.default_rng(args.seed + 3)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    ids = tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True,
                    return_tensors="pt").input_ids
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), **TEXT_CONFIG))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    log(f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters, "
        f"text encoder {sum(p.numel() for p in text.parameters()) / 1e6:.2f} M")
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    ema = Ema([unet, text], args.ema)
    noise_sched = DDPMScheduler.from_config(scheduler_config())
    acp = noise_sched.alphas_cumprod
    n = lat["src"].shape[0]
    circle_idx = np.flatnonzero(data["has_circle"])
    steps, batch, t0, hist = args.unet_steps, args.batch, time.time(), []
    warm = 300
    for step in range(steps):
        lr = args.lr * (step + 1) / warm if step < warm else \
            args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / (steps - warm))))
        for g in opt.param_groups:
            g["lr"] = lr
        kinds = rng.choice(3, size=batch, p=args.mix)
        src, tgt, prompt = [], [], []
        for k in kinds:
            i = int(rng.choice(circle_idx)) if k == 2 else int(rng.integers(n))
            src.append(lat["src"][i])
            if k == 0:
                tgt.append(lat["gray"][i])
            elif k == 1:
                tgt.append(lat["paint"][i, int(rng.integers(4))])
            else:
                tgt.append(lat["circle"][i])
            prompt.append(int(k))
        src, tgt = torch.stack(src), torch.stack(tgt) * sf
        prompt = torch.tensor(prompt)
        # conditioning dropout as the reference script: r < 0.05 no text,
        # 0.05 <= r < 0.10 neither, 0.10 <= r < 0.15 no image
        r = torch.from_numpy(rng.uniform(size=batch)).float()
        prompt = torch.where(r < 0.10, torch.full_like(prompt, EMPTY), prompt)
        keep_img = ~((r >= 0.05) & (r < 0.15))
        src = src * keep_img[:, None, None, None].float()
        t = torch.from_numpy(rng.integers(0, 1000, size=batch))
        noise = torch.randn(tgt.shape)
        a = acp[t].float()[:, None, None, None]
        noisy = a.sqrt() * tgt + (1 - a).sqrt() * noise
        hidden = text(ids).last_hidden_state[prompt]
        pred = unet(torch.cat([noisy, src], dim=1), t, hidden).sample
        loss = F.mse_loss(pred, a.sqrt() * noise - (1 - a).sqrt() * tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        hist.append(float(loss))
        if (step + 1) % 100 == 0:
            rec = {"stage": "unet", "step": step + 1, "loss": float(np.mean(hist[-100:])), "lr": lr,
                   "seconds": round(time.time() - t0, 1)}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(f"unet step {step + 1}/{steps} loss {rec['loss']:.5f} lr {lr:.2e} ({rec['seconds']:.0f} s)")
        if (step + 1) % args.save_every == 0 or step + 1 == steps:
            save_model(os.path.join(args.out, "model"), ema.shadow[0], vae, ema.shadow[1], tok_dir)
            log(f"saved the EMA model at step {step + 1}")
    return time.time() - t0, float(np.mean(hist[-100:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unet-threads", type=int, help="threads of stage 4 (default: --threads); with 1, a second "
                    "core stays free for other work (two threads of intra-op parallelism slow down a lot beside "
                    "any other process)")
    ap.add_argument("--scenes", type=int, default=8000)
    ap.add_argument("--vae-steps", type=int, default=2000)
    ap.add_argument("--unet-steps", type=int, default=7000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--save-every", type=int, default=1000)
    ap.add_argument("--vae-gray-share", type=float, default=0.15, help="share of grayscale targets in the VAE's crops")
    ap.add_argument("--vae-chroma", type=float, default=0.0, help="weight of the VAE's colour-only (chroma) error")
    ap.add_argument("--mix", type=float, nargs=3, default=[0.3, 0.4, 0.3], metavar=("GRAY", "PAINT", "CIRCLE"),
                    help="shares of the three instructions in the UNet's batches")
    ap.add_argument("--reuse-vae", action="store_true", help="load DIR/vae.pt and DIR/latents.pt when present")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    summary = {"args": vars(args), "torch": torch.__version__}
    t0 = time.time()

    tok_dir = os.path.join(args.out, "tokenizer")
    mg.CORPUS = mg.CORPUS + TOY_CORPUS
    mg.write_tokenizer_files(tok_dir)

    data = make_data(args.scenes, args.seed)
    summary["data_seconds"] = round(time.time() - t0, 1)
    log(f"data: {args.scenes} scenes in {summary['data_seconds']} s")

    # Stages 2-3 are cached in DIR (the same arguments give the same VAE):
    # --reuse-vae picks them up, to retrain only the UNet.
    vae_path, lat_path = os.path.join(args.out, "vae.pt"), os.path.join(args.out, "latents.pt")
    if args.reuse_vae and os.path.exists(vae_path):
        vae = AutoencoderKL(**VAE_CONFIG)
        vae.load_state_dict(torch.load(vae_path))
        vae.eval()
        log(f"reusing the VAE of {vae_path}")
    else:
        vae, secs, rec = train_vae(data, args.vae_steps, args.seed + 10, gray_share=args.vae_gray_share,
                                   chroma=args.vae_chroma)
        summary.update(vae_seconds=round(secs, 1), vae_final_rec_loss=rec)
        torch.save(vae.state_dict(), vae_path)

    if args.reuse_vae and os.path.exists(lat_path):
        lat = torch.load(lat_path)
    else:
        lat = {k: encode_all(vae, data[k]) for k in ("src", "gray", "paint", "circle")}
        torch.save(lat, lat_path)
    sf = float(1.0 / torch.cat([lat["src"].flatten(), lat["paint"].flatten()]).std())
    vae.register_to_config(scaling_factor=sf)
    summary["scaling_factor"] = sf
    log(f"latents encoded; scaling factor {sf:.5f}")

    torch.set_num_threads(args.unet_threads or args.threads)
    with open(os.path.join(args.out, "log.jsonl"), "w") as logf:
        secs, loss = train_unet(data, lat, sf, vae, tok_dir, args, logf)
    summary.update(unet_seconds=round(secs, 1), unet_final_loss=loss, total_seconds=round(time.time() - t0, 1))
    mg.write_json(os.path.join(args.out, "summary.json"), summary)
    log(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
