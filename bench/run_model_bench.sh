#!/usr/bin/env bash
# Model speed: via (libtorch, C++) against the reference library (diffusers +
# torch) on the same machine, threads and inputs, in one run; prints a table
# with the ratio via / reference (below 1: via is faster).
#
# usage: bench/run_model_bench.sh [BUILD_DIR] [options passed to both sides]
#   BUILD_DIR  a configured and built via build folder (default: build)
#   options    --threads 1,2  --tiny-size 64  --full-sizes 256,512
#              --full-vae-sizes 256  --steps 10  --reps-tiny 5  --reps-full 1
#              --warmup-full 0
# environment: VIA_REF_PYTHON   the reference venv's python (default /tmp/refvenv/bin/python)
#              OMP_WAIT_POLICY  default PASSIVE for both sides: with libgomp's default
#                               spinning, every parallel region on a machine where other
#                               processes hold cores waits out their time slices (seen
#                               here: a 64x64 UNet step from 7 ms to 1.7 s with 2 threads)
#
# The tiny model is made with `via make-tiny-model`; the full-size UNet and
# VAE are the published InstructPix2Pix configs (tests/reference/data/full_size)
# with random weights. Each side runs alone (never both at once).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
build=${1:-$root/build}
[[ $# -gt 0 ]] && shift
py=${VIA_REF_PYTHON:-/tmp/refvenv/bin/python}

for f in "$build/driver/via" "$build/bench/via_model_bench"; do
  [[ -x $f ]] || { echo "run_model_bench: $f not found; build via first" >&2; exit 1; }
done
"$py" -c "import diffusers, torch" 2>/dev/null ||
  { echo "run_model_bench: $py cannot import diffusers and torch (set VIA_REF_PYTHON)" >&2; exit 1; }

# Each thread count runs in its own processes: changing the OpenMP thread
# count inside a process that already ran with another one makes libgomp
# (which libtorch and OpenBLAS share) spin badly on a busy machine, which
# would measure the switch rather than the model.
threads=(1 2)
rest=()
while [[ $# -gt 0 ]]; do
  if [[ $1 == --threads ]]; then
    IFS=, read -r -a threads <<< "$2"
    shift 2
  else
    rest+=("$1")
    shift
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/driver/via" make-tiny-model --out "$work/tiny" --seed 0 >/dev/null
args=(--tiny "$work/tiny" --full-config-dir "$root/tests/reference/data/full_size" "${rest[@]}")

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); OMP_WAIT_POLICY=$OMP_WAIT_POLICY" >&2
: > "$work/via.jsonl"
: > "$work/ref.jsonl"
for t in "${threads[@]}"; do
  echo "threads $t: via ..." >&2
  "$build/bench/via_model_bench" "${args[@]}" --threads "$t" | tee -a "$work/via.jsonl" >&2
  echo "threads $t: reference ..." >&2
  PYTHONWARNINGS=ignore "$py" "$root/bench/reference_model_bench.py" "${args[@]}" --threads "$t" 2>/dev/null |
    tee -a "$work/ref.jsonl" >&2
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$py" "$root/bench/bench_table.py" "$work/via.jsonl" "$work/ref.jsonl"
