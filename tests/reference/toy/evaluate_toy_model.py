#!/usr/bin/env python3
"""Acceptance of the toy-world model on held-out stills.

    tests/reference/.venv/bin/python tests/reference/toy/evaluate_toy_model.py \
        --model tests/data/toy_ip2p [--via build/driver/via] [--json out.json]

Held-out scenes are drawn with seeds training never used (training: seed 0's
stream; here 1_000_000 + i). Each edit runs through diffusers'
StableDiffusionInstructPix2PixPipeline (Euler-ancestral, the model's own
scheduler) and, with --via, through `via edit-image` on the same inputs, and
the same metrics are computed from the exact targets:
- grayscale: output saturation / source saturation; PSNR to the true target;
  beside them the VAE's floor (the exact target encoded and decoded);
- paint the shapes: fraction of outputs whose shapes all got the same palette
  colour (within 0.2 RGB); distinct palette colours over the seeds of one source;
- paint the circle black: the circle's distance to black, the change inside
  it, and PSNR outside the circle (2-pixel margin) against the source, next to
  the VAE's own reconstruction PSNR there, and PSNR outside against the VAE's
  reconstruction of the source (how far the edit moved beyond the VAE's error).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy_world as tw  # noqa: E402

HELD_OUT_SEED = 1_000_000


def held_out(i, need_circle=False):
    return tw.random_scene(np.random.default_rng(HELD_OUT_SEED + i), need_circle=need_circle)


class Diffusers:
    name = "diffusers"

    def __init__(self, model, steps, tg, ig):
        from diffusers import StableDiffusionInstructPix2PixPipeline
        self.pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            model, variant="fp16", torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False)
        self.pipe.to(torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps, self.tg, self.ig = steps, tg, ig

    def edit(self, img, instruction, seed):
        pil = Image.fromarray(tw.to_uint8(img))
        out = self.pipe(instruction, image=pil, num_inference_steps=self.steps, guidance_scale=self.tg,
                        image_guidance_scale=self.ig, generator=torch.Generator().manual_seed(seed),
                        output_type="np").images[0]
        return tw.to_uint8(out).astype(np.float32) / 255.0

    @torch.no_grad()
    def reconstruct(self, img):
        x = torch.from_numpy(img).permute(2, 0, 1)[None] * 2 - 1
        z = self.pipe.vae.encode(x).latent_dist.mean
        y = self.pipe.vae.decode(z).sample[0].permute(1, 2, 0).numpy()
        return tw.to_uint8(np.clip(y / 2 + 0.5, 0, 1)).astype(np.float32) / 255.0


class Via:
    name = "via"

    def __init__(self, via, model, steps, tg, ig):
        self.via, self.model, self.steps, self.tg, self.ig = via, model, steps, tg, ig
        self.tmp = tempfile.mkdtemp(prefix="toy-eval-")

    def edit(self, img, instruction, seed):
        src, out = os.path.join(self.tmp, "in.png"), os.path.join(self.tmp, "out.png")
        Image.fromarray(tw.to_uint8(img)).save(src)
        subprocess.run([self.via, "edit-image", "--model", self.model, "--input", src, "--output", out,
                        "--instruction", instruction, "--seed", str(seed), "--steps", str(self.steps),
                        "--text-guidance", str(self.tg), "--image-guidance", str(self.ig), "--threads", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        return np.asarray(Image.open(out).convert("RGB"), dtype=np.float32) / 255.0


def evaluate(editor, n, seeds, recon=None):
    r = {}
    # deterministic edit
    sat_ratio, ps, floor_sat, floor_ps = [], [], [], []
    for i in range(n):
        sc = held_out(i)
        src, target = sc.source(), sc.target(tw.GRAYSCALE)
        out = editor.edit(src, tw.GRAYSCALE, i)
        sat_ratio.append(tw.saturation(out) / max(tw.saturation(src), 1e-6))
        ps.append(tw.psnr(out, target))
        if recon is not None:
            # the floor: the exact target through the VAE alone (its
            # reconstruction error brings back some colour)
            floor_sat.append(tw.saturation(recon(target)) / max(tw.saturation(src), 1e-6))
            floor_ps.append(tw.psnr(recon(target), target))
    r["grayscale"] = {"saturation_ratio": float(np.mean(sat_ratio)), "psnr_to_target_db": float(np.mean(ps)),
                      "psnr_min_db": float(np.min(ps))}
    if floor_sat:
        r["grayscale"]["vae_saturation_ratio"] = float(np.mean(floor_sat))
        r["grayscale"]["vae_psnr_to_target_db"] = float(np.mean(floor_ps))
    # ambiguous edit
    clean, distinct, counts = 0, [], np.zeros(4, int)
    m = max(n // 4, 1)
    for i in range(m):
        sc = held_out(1000 + i)
        src = sc.source()
        got = set()
        for s in range(seeds):
            idx, ok = tw.paint_result(editor.edit(src, tw.PAINT_SHAPES, s), sc)
            clean += ok
            if ok:
                got.add(idx)
                counts[idx] += 1
        distinct.append(len(got))
    r["paint_shapes"] = {"clean_fraction": clean / (m * seeds), "distinct_colours_mean": float(np.mean(distinct)),
                         "distinct_colours_min": int(np.min(distinct)), "sources": m, "seeds": seeds,
                         "colour_counts": dict(zip(tw.PALETTE_NAMES, counts.tolist()))}
    # local edit
    black, inside, outside, vae_out, beyond_vae = [], [], [], [], []
    for i in range(n):
        sc = held_out(2000 + i, need_circle=True)
        src = sc.source()
        out = editor.edit(src, tw.PAINT_CIRCLE, i)
        circ = [s for s in sc.shapes if s["kind"] == "circle"][0]
        inner = tw.interior(circ["alpha"])
        black.append(float(np.linalg.norm(out[inner].mean(axis=0) - tw.CIRCLE_TARGET)))
        inside.append(float(np.abs(out[inner] - src[inner]).mean()))
        keep = ~tw.dilate(circ["alpha"] > 0, 2)
        outside.append(tw.psnr(out, src, keep))
        if recon is not None:
            vae_out.append(tw.psnr(recon(src), src, keep))
            # the edit's change outside against what the VAE can give back at best
            beyond_vae.append(tw.psnr(out, recon(src), keep))
    r["paint_circle"] = {"circle_distance_to_black": float(np.mean(black)), "inside_change": float(np.mean(inside)),
                         "outside_psnr_db": float(np.mean(outside))}
    if vae_out:
        r["paint_circle"]["vae_outside_psnr_db"] = float(np.mean(vae_out))
        r["paint_circle"]["outside_psnr_to_vae_reconstruction_db"] = float(np.mean(beyond_vae))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--via", help="path of the via binary: also evaluate via edit-image")
    ap.add_argument("--n", type=int, default=40, help="held-out sources per edit (paint the shapes: n/4 x seeds)")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--text-guidance", type=float, default=7.5)
    ap.add_argument("--image-guidance", type=float, default=1.5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ref = Diffusers(args.model, args.steps, args.text_guidance, args.image_guidance)
    vae_psnr = float(np.mean([tw.psnr(ref.reconstruct(held_out(3000 + i).source()), held_out(3000 + i).source())
                              for i in range(args.n)]))
    res = {"settings": vars(args), "vae_psnr_db": vae_psnr,
           "diffusers": evaluate(ref, args.n, args.seeds, ref.reconstruct)}
    print(json.dumps(res, indent=1), flush=True)
    if args.via:
        res["via"] = evaluate(Via(args.via, args.model, args.steps, args.text_guidance, args.image_guidance),
                              args.n, args.seeds)
        print(json.dumps(res["via"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
