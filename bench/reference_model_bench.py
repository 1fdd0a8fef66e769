#!/usr/bin/env python3
"""The reference side of via's model benchmark (diffusers + torch on CPU).

Measures exactly what bench/model_bench.cpp measures, with the same inputs,
sizes, thread counts and repetition counts, and prints one JSON object per
measurement on stdout:
    {"impl": "reference", "model": "tiny"|"full", "what": ..., "size": S,
     "threads": T, "seconds": best, "median": median, "reps": R}

what: unet_step (one UNet call on the pipeline's 3-branch batch),
vae_encode, vae_decode (one image), edit (the whole pipeline call:
tokenize, encode text and image, `steps` Euler-a steps, decode).

Run by bench/run_model_bench.sh; usable alone:
    /tmp/refvenv/bin/python bench/reference_model_bench.py --tiny DIR --full-config-dir DIR
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import PIL.Image
import torch
from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler,
                       StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel)


def timed(fn, reps, warmup):
    """(best, median) seconds of `reps` calls after `warmup` unmeasured ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def emit(model, what, size, threads, timing, reps):
    print(json.dumps({"impl": "reference", "model": model, "what": what, "size": size,
                      "threads": threads, "seconds": timing[0], "median": timing[1], "reps": reps}), flush=True)


def load_config(path):
    with open(path) as f:
        cfg = json.load(f)
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


@torch.no_grad()
def bench_tiny(args, threads):
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(args.tiny, safety_checker=None,
                                                                  requires_safety_checker=False)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    s = args.tiny_size
    f = pipe.vae_scale_factor
    gen = torch.Generator().manual_seed(0)
    emb = pipe.text_encoder(pipe.tokenizer(["make it winter", "", ""], padding="max_length",
                                           max_length=77, return_tensors="pt").input_ids)[0]
    lat = torch.randn(3, pipe.unet.config.in_channels, s // f, s // f, generator=gen)
    img = torch.rand(1, 3, s, s, generator=gen) * 2 - 1
    z = torch.randn(1, pipe.vae.config.latent_channels, s // f, s // f, generator=gen)
    pil = PIL.Image.fromarray((np.random.default_rng(0).random((s, s, 3)) * 255).astype(np.uint8))
    r, w = args.reps_tiny, 1
    for t in threads:
        torch.set_num_threads(t)
        emit("tiny", "unet_step", s, t, timed(lambda: pipe.unet(lat, 500.0, encoder_hidden_states=emb), r, w), r)
        emit("tiny", "vae_encode", s, t, timed(lambda: pipe.vae.encode(img).latent_dist.mode(), r, w), r)
        emit("tiny", "vae_decode", s, t, timed(lambda: pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample, r, w), r)
        edit = lambda: pipe("make it winter", image=pil, num_inference_steps=args.steps,  # noqa: E731
                            generator=torch.Generator().manual_seed(0), output_type="np")
        emit("tiny", "edit", s, t, timed(edit, r, w), r)


@torch.no_grad()
def bench_full(args, threads):
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(load_config(os.path.join(args.full_config_dir, "unet_config.json")))
    unet.eval()
    vae = None
    if args.full_vae_sizes:
        vae = AutoencoderKL.from_config(load_config(os.path.join(args.full_config_dir, "vae_config.json")))
        vae.eval()
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(3, 77, unet.config.cross_attention_dim, generator=gen)
    for s in args.full_sizes:
        lat = torch.randn(3, unet.config.in_channels, s // 8, s // 8, generator=gen)
        r, w = args.reps_full, args.warmup_full
        for t in threads:
            torch.set_num_threads(t)
            emit("full", "unet_step", s, t, timed(lambda: unet(lat, 500.0, encoder_hidden_states=emb), r, w), r)
    for s in args.full_vae_sizes:
        img = torch.rand(1, 3, s, s, generator=gen) * 2 - 1
        z = torch.randn(1, 4, s // 8, s // 8, generator=gen)
        r, w = args.reps_full, args.warmup_full
        for t in threads:
            torch.set_num_threads(t)
            emit("full", "vae_encode", s, t, timed(lambda: vae.encode(img).latent_dist.mode(), r, w), r)
            emit("full", "vae_decode", s, t, timed(lambda: vae.decode(z).sample, r, w), r)


def ints(text):
    return [int(v) for v in text.split(",") if v]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", required=True, help="tiny model folder (diffusers layout)")
    p.add_argument("--full-config-dir", required=True, help="folder with unet_config.json and vae_config.json")
    p.add_argument("--threads", type=ints, default=[1, 2])
    p.add_argument("--tiny-size", type=int, default=64)
    p.add_argument("--full-sizes", type=ints, default=[256, 512])
    p.add_argument("--full-vae-sizes", type=ints, default=[256])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--reps-tiny", type=int, default=5)
    p.add_argument("--reps-full", type=int, default=1)
    p.add_argument("--warmup-full", type=int, default=0)
    args = p.parse_args()
    print(json.dumps({"impl": "reference", "info": f"torch {torch.__version__}, "
                      f"BLAS {'MKL' if torch.backends.mkl.is_available() else 'other'}, "
                      f"oneDNN {torch.backends.mkldnn.is_available()}"}), flush=True)
    bench_tiny(args, args.threads)
    bench_full(args, args.threads)


if __name__ == "__main__":
    sys.exit(main())
