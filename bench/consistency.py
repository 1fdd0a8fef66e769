#!/usr/bin/env python3
"""What each part of Via buys, measured on toy-world videos.

    bench/consistency.sh [--videos 3] [--seeds 2] [--frames 24] [--out DIR]

Renders toy videos (seeds the training never saw) with `via render` in each
mode and prints one table per instruction, averaged over videos x seeds.
Metrics, from the videos' exact shape labels and the palette:
- agreement: fraction of frames whose shapes got the video's majority palette
  colour (a frame with no clean palette colour disagrees);
- flicker: mean |f[t+1] - f[t]| of the edit / the same of the source;
- success: fraction of frames with a clean edit (every shape one palette
  colour; grayscale: saturation under 10 % of the source's and PSNR to the
  exact target over 25 dB; black circle: circle within 0.2 of black);
- faithful: PSNR (dB) outside the shapes to the exact target (the source for
  the paint edits, its luma for grayscale);
- leak: with a mask, mean |edit - source| (/255) outside the circle.
Needs numpy, Pillow (the reference venv has both) and ffmpeg.
"""

import argparse
import collections
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference", "toy"))
import toy_world as tw  # noqa: E402
import make_toy_clips  # noqa: E402

# name -> via render flags
MODES = collections.OrderedDict([
    ("frame by frame", ["--attention", "own", "--finetune", "off"]),
    ("shared noise", ["--attention", "own", "--finetune", "off", "--noise", "shared"]),
    ("anchor (Fairy)", ["--attention", "anchor", "--finetune", "off"]),
    ("gather-swap only", ["--attention", "gather-swap", "--finetune", "off"]),
    # the toy model needs a full fine-tune to take the root pair's colour, and
    # affine copies of the pair teach it softness (tests/data/toy_ip2p/README.md);
    # via's defaults (LoRA, 16 copies) are measured beside it
    ("adaptation only", ["--attention", "own", "--finetune", "full", "--finetune-steps", "200", "--augment", "0"]),
    ("full Via", ["--attention", "gather-swap", "--finetune", "full", "--finetune-steps", "200", "--augment", "0"]),
    ("adaptation only (LoRA default)", ["--attention", "own", "--finetune", "lora"]),
    ("full Via (LoRA default)", ["--attention", "gather-swap", "--finetune", "lora"]),
])

EDITS = collections.OrderedDict([
    ("paint the shapes", {"instruction": tw.PAINT_SHAPES}),
    ("make it grayscale", {"instruction": tw.GRAYSCALE}),
    ("grayscale inside a circle mask", {"instruction": tw.GRAYSCALE, "mask": True}),
])


def slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def decode(path, w, h):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, stdout=subprocess.PIPE).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).astype(np.float32) / 255.0


def frame_paint_index(img, labels):
    """Palette index every shape of the frame is close to, or -1."""
    picks = []
    for k in range(1, len(tw.KINDS) + 1):
        inner = tw.erode(labels == k, 1)
        if inner.sum() < 4:
            continue
        picks.append(tw.nearest_palette(img[inner].mean(axis=0)))
    if not picks:
        return -1
    idx = picks[0][0]
    return idx if all(p[0] == idx and p[1] <= tw.CLEAN_DISTANCE for p in picks) else -1


def metrics(edit, src, labels, circle, spec):
    n = len(src)
    flick = np.abs(np.diff(edit, axis=0)).mean() / max(np.abs(np.diff(src, axis=0)).mean(), 1e-6)
    bg = [tw.erode(l == 0, 2) for l in labels]
    r = {"flicker": float(flick)}
    if spec["instruction"] == tw.PAINT_SHAPES:
        idx = [frame_paint_index(edit[i], labels[i]) for i in range(n)]
        clean = [i for i in idx if i >= 0]
        major = collections.Counter(clean).most_common(1)[0][0] if clean else -2
        r["agreement"] = sum(i == major for i in idx) / n
        r["success"] = len(clean) / n
        r["faithful"] = float(np.mean([tw.psnr(edit[i], src[i], bg[i]) for i in range(n)]))
    else:
        gray = np.stack([tw.grayscale(s) for s in src])
        if spec.get("mask"):
            inside = [tw.erode(c > 0.5, 1) for c in circle]
            outside = [tw.erode(~(c > 0.02), 3) for c in circle]  # 3 px away from the circle
            ok = [tw.saturation(edit[i], inside[i]) < 0.1 * max(tw.saturation(src[i], inside[i]), 1e-6)
                  for i in range(n)]
            r["success"] = float(np.mean(ok))
            r["faithful"] = float(np.mean([tw.psnr(edit[i], src[i], outside[i]) for i in range(n)]))
            r["leak"] = float(np.mean([np.abs(edit[i] - src[i])[outside[i]].mean() * 255 for i in range(n)]))
        else:
            ok = [tw.saturation(edit[i]) < 0.1 * tw.saturation(src[i]) and tw.psnr(edit[i], gray[i]) > 25
                  for i in range(n)]
            r["success"] = float(np.mean(ok))
            r["faithful"] = float(np.mean([tw.psnr(edit[i], gray[i], bg[i]) for i in range(n)]))
    return r


def render(via, clip, out, work, spec, mode_flags, seed, args):
    cmd = [via, "render", "--input", os.path.join(clip, "source.mp4"), "--output", out, "--model", args.model,
           "--instruction", spec["instruction"], "--workdir", work, "--long-side", "96", "--seed", str(seed),
           "--steps", str(args.steps), "--chunk-frames", "8", "--crf", "4", "--threads", str(args.threads),
           "--overwrite"]
    if spec.get("mask"):
        cmd += ["--mask", os.path.join(clip, "circle", "%05d.png")]
    # a flag given after `--` replaces the mode's own (e.g. --finetune full)
    pairs = [mode_flags[i:i + 2] for i in range(0, len(mode_flags), 2)]
    cmd += [x for pair in pairs if pair[0] not in args.extra for x in pair] + args.extra
    shutil.rmtree(work, ignore_errors=True)  # the bench's own scratch: a rerun starts afresh
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout}")
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--via", default=os.path.join(ROOT, "build", "driver", "via"))
    ap.add_argument("--model", default=os.path.join(ROOT, "tests", "data", "toy_ip2p"))
    ap.add_argument("--out", default="/tmp/via-consistency")
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="threads per render")
    ap.add_argument("--jobs", type=int, default=2, help="renders at once")
    ap.add_argument("--modes", help="comma-separated subset of the modes")
    ap.add_argument("--edits", help="comma-separated subset of the edits")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("extra", nargs="*", help="more via render flags (after --); they replace a mode's own")
    args = ap.parse_args()
    modes = [m for m in MODES if not args.modes or m in args.modes.split(",")]
    edits = [e for e in EDITS if not args.edits or e in args.edits.split(",")]
    os.makedirs(args.out, exist_ok=True)
    results = collections.defaultdict(list)
    clips = []
    for v in range(args.videos):
        clip = os.path.join(args.out, f"clip{901 + v}")
        if not os.path.exists(os.path.join(clip, "clip.json")):
            make_toy_clips.write_clip(clip, 901 + v, args.frames, 12, False)
        meta = json.load(open(os.path.join(clip, "clip.json")))
        w, h = meta["width"], meta["height"]
        src = decode(os.path.join(clip, "source.mp4"), w, h)
        labels = [np.asarray(Image.open(os.path.join(clip, "labels", f"{i:05d}.png"))) for i in range(len(src))]
        circle = [np.asarray(Image.open(os.path.join(clip, "circle", f"{i:05d}.png")), np.float32) / 255
                  for i in range(len(src))]
        clips.append((clip, w, h, src, labels, circle))
    total = time.time()
    runs = []
    for e in edits:
        for m in modes:
            for clip, w, h, src, labels, circle in clips:
                for seed in range(args.seeds):
                    tag = f"{os.path.basename(clip)}-{slug(e)}-{slug(m)}-s{seed}"
                    runs.append((e, m, clip, w, h, src, labels, circle, seed, tag, os.path.join(args.out, tag + ".mp4")))

    def run_one(r):
        e, m, clip, seed, tag, out = r[0], r[1], r[2], r[8], r[9], r[10]
        if not os.path.exists(out):
            secs = render(args.via, clip, out, os.path.join(args.out, "work-" + tag), EDITS[e], MODES[m], seed, args)
            print(f"  {tag}: {secs:.0f} s", file=sys.stderr, flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(run_one, runs))
    for e, m, clip, w, h, src, labels, circle, seed, tag, out in runs:
        results[(e, m)].append(metrics(decode(out, w, h), src, labels, circle, EDITS[e]))
    cols = ["agreement", "flicker", "success", "faithful", "leak"]
    table = {}
    for e in edits:
        print(f"\n### {e} ({args.videos} videos x {args.seeds} seeds, {args.frames} frames, {args.steps} steps)\n")
        have = [c for c in cols if all(c in r for m in modes for r in results[(e, m)])]
        print("| mode | " + " | ".join(have) + " |")
        print("| --- |" + " --- |" * len(have))
        for m in modes:
            rs = results[(e, m)]
            row = {c: float(np.mean([r[c] for r in rs])) for c in have}
            table[f"{e} / {m}"] = row
            print(f"| {m} | " + " | ".join(f"{row[c]:.3f}" if c != "faithful" else f"{row[c]:.1f} dB"
                                           for c in have) + " |")
    print(f"\n(total {time.time() - total:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
