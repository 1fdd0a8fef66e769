#!/usr/bin/env bash
# Compiles via's CUDA-only and libtorch >= 2 lines against a CUDA-enabled
# libtorch 2.x, so that none of them rots uncompiled: CI's own libtorch is
# Debian's 1.13 for the CPU, where those lines are #if'd out or never built.
#
# What: every .cpp file of model/, adaptation/, comm/ and bench/ that has a
# libtorch-version branch (TORCH_VERSION_MAJOR), names CUDA (device code
# paths, fp16 on CUDA, pinned memory, the CUDA allocator: VIA_TORCH_CUDA) or
# NCCL (VIA_HAVE_NCCL); listed at run time, so a new such file is included by
# itself (9 files today). Each is compiled to an object
# file (-c) in a full configuration (MPI, HDF5, FFmpeg from Debian as in the
# main build; NCCL from /usr/local/cuda) against the PyPI torch wheel's
# headers and CMake files. Nothing is linked and nothing runs: there is no
# GPU here, and linking the 1 GB CUDA libraries would only measure the disk.
# Why these files only: a libtorch 2.x file costs ~13-15 s of CPU to compile
# and CI has about two minutes left (the 13 files of a wider list took 171 s
# of CPU); the other files are the same code on either libtorch and are
# compiled by the main build, and scripts/gpu-check.sh builds the whole core
# against the GPU machine's own PyTorch (its CPU rehearsal against PyPI's).
#
# The wheel (torch==$VIA_TORCH2_VERSION, default 2.15.0; ~540 MB, a few
# seconds from PyPI) is downloaded once into WORK_DIR and reduced to
# include/, share/cmake/ and lib/*.so (CMake's config checks that the
# libraries exist). VIA_TORCH2_WHEEL=FILE uses a wheel already here.
# Exit 77 (CTest: Skipped) when no wheel can be had (no network).
#
# usage: scripts/check-torch2.sh [WORK_DIR]     (default: build-torch2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/build-torch2}
version=${VIA_TORCH2_VERSION:-2.15.0}
jobs=${VIA_JOBS:-$(nproc)}
torch=$work/torch-$version
mkdir -p "$work"
start=$(date +%s)

if [[ ! -f $torch/.complete ]]; then
  wheel=${VIA_TORCH2_WHEEL:-}
  if [[ -z $wheel ]]; then
    rm -rf "$work/wheel"
    t0=$(date +%s)
    # Any Python's wheel holds the same headers; ask for one explicitly so
    # the local Python's version does not matter.
    if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
         --implementation cp --platform manylinux_2_28_x86_64 -d "$work/wheel" "torch==$version"; then
      echo "check-torch2: SKIPPED: could not download torch==$version (no network or no pip)" >&2
      exit 77
    fi
    wheel=$(ls "$work"/wheel/torch-*.whl)
    echo "check-torch2: downloaded $(basename "$wheel") ($(du -m "$wheel" | cut -f1) MB) in $(( $(date +%s) - t0 )) s"
  fi
  t0=$(date +%s)
  rm -rf "$torch"
  python3 - "$wheel" "$torch" <<'EOF'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for m in z.infolist():
        n = m.filename
        if n.endswith("/"):
            continue
        if n.startswith(("torch/include/", "torch/share/cmake/")) or (
                n.startswith("torch/lib/") and ".so" in n):
            target = os.path.join(out, n[len("torch/"):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(m) as src, open(target, "wb") as dst:
                while True:
                    b = src.read(1 << 22)
                    if not b:
                        break
                    dst.write(b)
EOF
  [[ -z ${VIA_TORCH2_WHEEL:-} ]] && rm -rf "$work/wheel"
  touch "$torch/.complete"
  echo "check-torch2: extracted include/, share/cmake/, lib/*.so in $(( $(date +%s) - t0 )) s"
fi

t0=$(date +%s)
log=$work/configure.log
if ! cmake -S "$root" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
     -DTorch_DIR="$torch/share/cmake/Torch" -DTORCH_LIBRARY="$torch/lib/libtorch.so" >"$log" 2>&1; then
  cat "$log" >&2
  echo "check-torch2: configure against libtorch $version failed" >&2
  exit 1
fi
grep -q "via: NCCL backend ON" "$log" ||
  { echo "check-torch2: NCCL (CUDA toolkit) not found: the NCCL backend would not be compiled" >&2; exit 1; }
echo "check-torch2: configured against libtorch $version (C++20, NCCL on) in $(( $(date +%s) - t0 )) s"

cd "$root"
mapfile -t files < <(grep -l -E 'TORCH_VERSION_MAJOR|VIA_HAVE_NCCL|VIA_TORCH_CUDA|[Cc][Uu][Dd][Aa]' \
                       model/*.cpp adaptation/*.cpp comm/*.cpp bench/*.cpp | sort)
t0=$(date +%s)
declare -A by_dir=()
for f in "${files[@]}"; do
  d=$(dirname "$f")
  by_dir[$d]+=" $(basename "${f%.cpp}").o"
done
for d in $(printf '%s\n' "${!by_dir[@]}" | sort); do
  # shellcheck disable=SC2086  # one make target per object
  if ! make -C "$work/build/$d" -j "$jobs" --no-print-directory ${by_dir[$d]} >"$work/make.log" 2>&1; then
    cat "$work/make.log" >&2
    echo "check-torch2: $d failed to compile against libtorch $version" >&2
    exit 1
  fi
done
echo "check-torch2: compiled ${#files[@]} files against libtorch $version in $(( $(date +%s) - t0 )) s:" \
     "${files[*]}"
echo "check-torch2: total $(( $(date +%s) - start )) s"
