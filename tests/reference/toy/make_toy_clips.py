#!/usr/bin/env python3
"""Write toy-world videos with their per-frame shape labels.

    python3 make_toy_clips.py --out DIR --seed S [--frames 48] [--fps 12] [--audio]

For each clip (one per --seed) it writes into DIR/<name>/:
- source.mp4: H.264 (yuv420p, CRF 8), 96x64, optional 440 Hz tone (AAC);
- labels/%05d.png: 8-bit label per pixel (0 background, 1 circle, 2 square,
  3 triangle; toy_world.KINDS), from the exact coverage;
- circle/%05d.png: the circle's mask (255 inside), for masked local edits;
- clip.json: seed, frames, fps, size, the shapes and their source colours.
Needs numpy, Pillow and the ffmpeg command (not torch). Seeds used by the
training (0) and the evaluation (1_000_000 + i) are not clip seeds; the
committed test clips use seeds 7xx and the benchmark 9xx.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy_world as tw  # noqa: E402


def write_clip(out_dir, seed, frames, fps, audio, h=64, w=96):
    os.makedirs(os.path.join(out_dir, "labels"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "circle"), exist_ok=True)
    scenes = tw.random_video(np.random.default_rng(seed), frames=frames, h=h, w=w)
    raw = b"".join(tw.to_uint8(s.source()).tobytes() for s in scenes)
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", f"{frames / fps:.6f}", "-c:v", "libx264", "-crf", "8", "-preset", "medium",
            "-pix_fmt", "yuv420p", "-x264-params", "threads=1"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k", "-shortest"]
    cmd += ["-fflags", "+bitexact", "-flags:v", "+bitexact", os.path.join(out_dir, "source.mp4")]
    subprocess.run(cmd, input=raw, check=True)
    for i, s in enumerate(scenes):
        Image.fromarray(s.labels()).save(os.path.join(out_dir, "labels", f"{i:05d}.png"))
        Image.fromarray(tw.to_uint8(s.mask("circle"))).save(os.path.join(out_dir, "circle", f"{i:05d}.png"))
    meta = {"seed": seed, "frames": frames, "fps": fps, "width": w, "height": h, "audio": audio,
            "shapes": [{"kind": sh["kind"], "colour": [round(float(c), 4) for c in sh["colour"]]}
                       for sh in scenes[0].shapes]}
    with open(os.path.join(out_dir, "clip.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, action="append", required=True)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--audio", action="store_true")
    args = ap.parse_args()
    for s in args.seed:
        write_clip(os.path.join(args.out, f"clip{s}"), s, args.frames, args.fps, args.audio)
        print(os.path.join(args.out, f"clip{s}"))


if __name__ == "__main__":
    main()
