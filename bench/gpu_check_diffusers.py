#!/usr/bin/env python3
"""The reference's side of scripts/gpu-check.sh: the same UNet step as
bench/gpu_check.cpp's ("UNet step, 3 branches, SxS, own attention": the
published InstructPix2Pix UNet config with random weights, the pipeline's
3-branch batch, timestep 500) through diffusers' UNet2DConditionModel on the
same device and dtype, so that via's ratio to it comes from one run.

Prints one JSON object in gpu_check.cpp's form on stdout:
    {"section": "speed", "name": ..., "status": "measured", "device": ...,
     "seconds": best, "median": median, "peak_gib": ..., "diffusers": version}
"""

import argparse
import json
import statistics
import time

import torch
import diffusers
from diffusers import UNet2DConditionModel


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config-dir", required=True)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--label", default="")
    a = p.parse_args()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
    dev = torch.device(a.device)
    with open(f"{a.config_dir}/unet_config.json") as f:
        cfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(cfg).to(dev, dtype).eval()
    s = a.size
    lat = torch.randn(3, unet.config.in_channels, s // 8, s // 8, generator=torch.Generator().manual_seed(6))
    emb = torch.randn(3, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(5))
    lat, emb = lat.to(dev, dtype), emb.to(dev, dtype)
    t = torch.tensor(500.0, device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with torch.no_grad():
        for _ in range(a.warmup):
            unet(lat, t, emb)
        sync()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times = []
        for _ in range(max(a.reps, 1)):
            t0 = time.perf_counter()
            unet(lat, t, emb)
            sync()
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else -1.0
    row = {"section": "speed", "name": f"UNet step, 3 branches, {s}x{s}, own attention: diffusers",
           "status": "measured", "device": f"{dev}, {a.dtype}", "seconds": min(times),
           "median": statistics.median(times), "diffusers": diffusers.__version__, "torch": torch.__version__}
    if peak >= 0:
        row["peak_gib"] = peak
    if a.label:
        row["label"] = a.label
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
