#!/usr/bin/env bash
# Renders the same video with 1 and 2 ranks and reports frames per second,
# seconds per stage (summed over ranks) and the share of non-compute overhead
# (read, broadcast, H.264 encode, checkpoints, concatenation) among the busy
# time, from each render's timings.json. Not a test: numbers for the notes.
# Usage: bench/run_render_bench.sh [frames=96] [long_side=128] [steps=10]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
via="$root/build/driver/via"
frames="${1:-96}"; side="${2:-128}"; steps="${3:-10}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
"$via" make-tiny-model --out "$work/model" >/dev/null
ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=320x180:rate=24 -frames:v "$frames" \
  -c:v libx264 -pix_fmt yuv420p "$work/in.mp4"
mpi_flags=(--bind-to none --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
cores=$(nproc)
for np in 1 2; do
  start=$(date +%s.%N)
  mpirun "${mpi_flags[@]}" -np "$np" "$via" render --model "$work/model" --input "$work/in.mp4" \
    --output "$work/out$np.mp4" --workdir "$work/w$np" --instruction "make it a pencil sketch" \
    --long-side "$side" --steps "$steps" --candidates 3 --augment 4 --finetune-steps 20 --chunk-frames 8 \
    --threads $((cores / np > 0 ? cores / np : 1)) 2>/dev/null
  end=$(date +%s.%N)
  python3 - "$work/w$np/timings.json" "$np" "$start" "$end" <<'PY'
import json, sys
t = json.load(open(sys.argv[1])); np_ = sys.argv[2]; wall = float(sys.argv[4]) - float(sys.argv[3])
a = t["all_ranks"]
stages = ", ".join(f"{k} {v:.1f}" for k, v in a.items() if k != "frames" and v >= 0.05)
print(f"ranks {np_}: process wall {wall:.1f} s, render wall {t['wall_seconds']:.1f} s, "
      f"{t['frames_per_second']:.2f} frames/s, overhead {100 * t['overhead_share']:.1f}% of busy time")
print(f"  seconds per stage (all ranks): {stages}")
PY
done
