#!/usr/bin/env bash
# The GPU check: one call, from the repository root, on a GPU machine that
# has nothing but a CUDA PyTorch, CMake and a compiler (no FFmpeg, HDF5, MPI;
# no network). Under 8 minutes on one H200. It
#   1. builds the compute core (-DVIA_CORE_ONLY=ON) against that PyTorch's
#      libtorch (python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'),
#   2. runs bench/gpu_check.cpp: correctness on the GPU against the CPU (an
#      fp32 edit, fp16 and bf16 against fp32 with stated bounds, gather/swap/
#      anchor, LoRA fine-tuning lowers the loss, a CUDA tensor through the
#      single-process communicator) and speed at the published InstructPix2Pix
#      size with random weights (UNet step with 3 guidance branches at 512x512
#      in fp16 with own attention and with a 4-frame group swapped in, VAE
#      encode/decode, frames/s of 10- and 20-step renders, peak GPU memory),
#   3. runs the same UNet step through diffusers (bench/gpu_check_diffusers.py)
#      when diffusers imports, or when its wheel is carried: the GPU machine
#      has no diffusers and no network, so download it here first,
#          echo /.whl/ >> .git/info/exclude
#          python3 -m pip download --no-deps -d .whl diffusers
#      and name .whl in the device call's `carry`; it is installed with
#      --no-deps into a temporary folder (its needs are on that machine),
#   4. prints the table and writes OUT_DIR/gpu_check.json (every result,
#      the via/diffusers ratio, the machine), gpu_check.jsonl, table.txt and
#      build.log.
# Without a GPU it is a CPU rehearsal that fakes nothing: the same build
# (against the given PyTorch), every part that can run on the CPU (the
# comparisons become CPU against CPU: a repeat must be bit-identical), the
# speed section at a reduced size, labelled so, and one "needs-gpu" row for
# each part that needs a GPU.
#
# usage: scripts/gpu-check.sh [OUT_DIR]        (default: $OUT, else out/gpu-check)
# environment:
#   VIA_GPU_CHECK_PYTHON  the Python whose torch to build against (default python3)
#   VIA_GPU_CHECK_BUILD   build folder (default /tmp/via-gpu-check-build; kept between calls)
#   VIA_WHEELS            folder holding a carried diffusers-*.whl (default .whl)
#   VIA_GPU_CHECK_SPEED   extra arguments for the speed section (e.g. "--size 256 --steps 10")
#   VIA_JOBS              build jobs (default: the number of CPUs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-${OUT:-$root/out/gpu-check}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${VIA_GPU_CHECK_PYTHON:-python3}
build=${VIA_GPU_CHECK_BUILD:-/tmp/via-gpu-check-build}
jobs=${VIA_JOBS:-$(nproc)}
start=$(date +%s)
say() { echo "gpu-check: $*" >&2; }

# ---- 1. the core against this PyTorch ----
info=$("$py" -c 'import torch, os
print(torch.utils.cmake_prefix_path)
print(os.path.dirname(torch.__file__))
print(torch.__version__)
print(int(torch.cuda.is_available()))
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")') ||
  { say "$py cannot import torch (set VIA_GPU_CHECK_PYTHON to a Python that has PyTorch)"; exit 1; }
{ read -r prefix; read -r torch_dir; read -r torch_version; read -r has_cuda; read -r gpu_name; } <<< "$info"
say "PyTorch $torch_version ($torch_dir), $gpu_name"
cuda_args=()
if [[ -d /usr/local/cuda ]]; then cuda_args+=(-DCUDAToolkit_ROOT=/usr/local/cuda); fi
[[ $has_cuda == 1 ]] && cuda_args+=(-DTORCH_CUDA_ARCH_LIST=9.0)  # the H200; only torch's CMake reads it
# A pip-installed torch finds its CUDA libraries (NCCL, cuDNN, ...) in
# site-packages/nvidia/*/lib through its own RUNPATH; the linker and the
# loader must prefer them to an older copy in the system's paths (CUDA's own
# NCCL lacks symbols libtorch_cuda.so needs).
nv_libs=$(ls -d "$(dirname "$torch_dir")"/nvidia/*/lib 2>/dev/null | paste -sd: - || true)
if [[ -n $nv_libs ]]; then
  cuda_args+=(-DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$nv_libs")
  export LD_LIBRARY_PATH="$nv_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
t0=$(date +%s)
# TORCH_LIBRARY: torch's CMake finds libtorch.so with find_library, which
# prefers a system copy (Debian's 1.13 here) to the one beside its headers.
if ! { cmake -S "$root" -B "$build" -DVIA_CORE_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
         -DCMAKE_PREFIX_PATH="$prefix" -DTORCH_LIBRARY="$torch_dir/lib/libtorch.so" "${cuda_args[@]}" &&
       cmake --build "$build" -j "$jobs" --target via_gpu_check; } >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log" >&2
  say "building the core against PyTorch $torch_version failed (all of it in $out/build.log)"
  exit 1
fi
build_s=$(( $(date +%s) - t0 ))
say "built the core against libtorch $torch_version in ${build_s} s"

# ---- 2. correctness and speed ----
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $has_cuda == 1 ]]; then
  mode=gpu
  speed=(--size 512 --steps 10,20 --group 4 --frames 4 --reps 5 --warmup 2)
  diff_args=(--size 512 --device cuda --dtype fp16 --reps 5 --warmup 2)
else
  mode=cpu-rehearsal
  label="reduced: CPU rehearsal, 64x64, 2- and 4-step renders, 2-frame group, fp32"
  speed=(--size 64 --steps 2,4 --group 2 --frames 1 --reps 2 --warmup 1 --label "$label")
  diff_args=(--size 64 --device cpu --dtype fp32 --reps 2 --warmup 1 --label "$label")
fi
# shellcheck disable=SC2206  # VIA_GPU_CHECK_SPEED is a list of arguments
speed+=(${VIA_GPU_CHECK_SPEED:-})
: >"$out/gpu_check.jsonl"
status=0
"$build/bench/via_gpu_check" --json "$out/gpu_check.jsonl" --work "$work" "${speed[@]}" | tee "$out/table.txt" ||
  status=$?

# ---- 3. the same UNet step through diffusers ----
site=""
if ! "$py" -c 'import diffusers' 2>/dev/null; then
  wheel=$(ls "${VIA_WHEELS:-$root/.whl}"/diffusers-*.whl 2>/dev/null | head -1 || true)
  if [[ -n $wheel ]]; then
    site=$work/site
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheel" >&2 ||
      { say "could not install $wheel"; site=""; }
  fi
fi
if [[ -n $site ]] || "$py" -c 'import diffusers' 2>/dev/null; then
  if PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONWARNINGS=ignore "$py" bench/gpu_check_diffusers.py \
       --config-dir tests/reference/data/full_size "${diff_args[@]}" >"$work/diffusers.json" 2>"$work/diffusers.err"; then
    cat "$work/diffusers.json" >>"$out/gpu_check.jsonl"
  else
    tail -5 "$work/diffusers.err" >&2
    say "the diffusers UNet step failed"
    echo '{"section": "speed", "name": "UNet step through diffusers", "status": "fail", "device": "-"}' \
      >>"$out/gpu_check.jsonl"
    status=1
  fi
else
  say "diffusers is not installed and no diffusers-*.whl was carried in ${VIA_WHEELS:-.whl}: no reference UNet step"
  echo '{"section": "speed", "name": "UNet step through diffusers", "status": "skipped", "device": "-",' \
       '"note": "carry a diffusers wheel (see scripts/gpu-check.sh)"}' >>"$out/gpu_check.jsonl"
fi

# ---- 4. the table's end and the JSON ----
"$py" - "$out" "$mode" "$torch_version" "$gpu_name" "$build_s" "$(( $(date +%s) - start ))" <<'EOF'
import json, sys
out, mode, torch_version, gpu, build_s, total_s = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{out}/gpu_check.jsonl") if l.strip()]
via = next((r for r in rows if r.get("name", "").startswith("UNet step") and "own attention" in r["name"]
            and "diffusers" not in r["name"]), None)
ref = next((r for r in rows if "diffusers" in r.get("name", "") and "seconds" in r), None)
ratio = via["seconds"] / ref["seconds"] if via and ref else None
for r in rows:
    if "diffusers" in r.get("name", "") and r.get("status") == "measured":
        print(f"{'speed':<11} {r['name'][:48]:<48} {r['status']:<9} seconds {r['seconds']:.4g}, "
              f"median {r['median']:.4g}, diffusers {r['diffusers']}")
if ratio:
    print(f"{'speed':<11} {'UNet step, via / diffusers (below 1: via faster)':<48} {'measured':<9} ratio {ratio:.3f}")
needs = [r["name"] for r in rows if r.get("status") == "needs-gpu"]
fails = [r["name"] for r in rows if r.get("status") == "fail"]
summary = {"mode": mode, "torch": torch_version, "gpu": gpu, "build_seconds": int(build_s),
           "total_seconds": int(total_s), "via_over_diffusers_unet_step": ratio,
           "needs_gpu": needs, "failures": fails, "results": rows}
json.dump(summary, open(f"{out}/gpu_check.json", "w"), indent=1)
print(f"\ngpu-check: {mode}, PyTorch {torch_version}, {gpu}; build {build_s} s, total {total_s} s; "
      f"{len(fails)} failure(s){': ' + '; '.join(fails) if fails else ''}")
if needs:
    print("gpu-check: parts that need a GPU (not run here): " + "; ".join(needs))
print(f"gpu-check: results in {out}/gpu_check.json")
EOF
exit $status
