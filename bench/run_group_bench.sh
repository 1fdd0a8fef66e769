#!/usr/bin/env bash
# The attention group's size and the time it costs, for --swap-steps,
# --swap-layers and --batch-frames: renders one clip with each setting and
# prints the memory plan's group (all steps, one step, cross-attention) and
# the denoising time per frame from timings.json. Not a test: numbers for
# the notes. One process, --threads 1, fine-tuning off (the group does not
# depend on it).
# Usage: bench/run_group_bench.sh [toy|tiny] [steps=20]
#   toy:  tests/data/toy_ip2p on tests/data/toy/clip801 (96x64, 48 frames), text guidance 3
#   tiny: the random tiny model (via make-tiny-model) on the same clip
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
via="$root/build/driver/via"
which="${1:-toy}"; steps="${2:-20}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
clip="$root/tests/data/toy/clip801/source.mp4"
if [ "$which" = toy ]; then
  model="$root/tests/data/toy_ip2p"; extra=(--text-guidance 3 --instruction "paint the shapes")
else
  "$via" make-tiny-model --out "$work/model" >/dev/null
  model="$work/model"; extra=(--instruction "make it a pencil sketch")
fi
printf '%-34s %-12s %-12s %-12s %-10s %-10s\n' "settings" "group" "one step" "cross" "gather s" "s/frame"
run() {
  local name="$1"; shift
  local w="$work/w$RANDOM"
  "$via" render --model "$model" --input "$clip" --output "$w.mp4" --workdir "$w" "${extra[@]}" \
    --long-side 96 --steps "$steps" --candidates 1 --finetune off --chunk-frames 48 --threads 1 "$@" \
    2>"$w.log" || { cat "$w.log" >&2; return 1; }
  python3 - "$w/timings.json" "$w.log" "$name" <<'PY'
import json, re, sys
t = json.load(open(sys.argv[1]))["all_ranks"]
log = open(sys.argv[2]).read()
m = re.search(r"memory plan: attention group ([0-9.]+ \w+)(?: \((\d+) steps? x ([0-9.]+ \w+) of self-attention, "
              r"([0-9.]+ \w+) of cross-attention)?", log)
group, step, cross = (m.group(1), m.group(3) or "-", m.group(4) or "-") if m else ("?", "?", "?")
print(f"{sys.argv[3]:<34} {group:<12} {step:<12} {cross:<12} {t['gather']:<10.2f} {t['denoise'] / max(1, t['frames']):<10.4f}")
PY
}
run "own (no group)" --attention own
run "gather-swap, both, all steps"
run "gather-swap, both, --swap-steps $((steps / 2))" --swap-steps $((steps / 2))
run "gather-swap, both, --swap-steps $((steps / 4))" --swap-steps $((steps / 4))
run "gather-swap, --swap-layers self" --swap-layers self
run "gather-swap, --swap-layers cross" --swap-layers cross
run "gather-swap, --batch-frames 4" --batch-frames 4
run "gather-swap, --batch-frames 8" --batch-frames 8
