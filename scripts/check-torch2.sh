#!/usr/bin/env bash
# Builds the compute core (-DVIA_CORE_ONLY=ON: model/, adaptation/, comm/'s
# single-process communicator, bench/) against a CUDA-enabled libtorch 2.x,
# with libtorch and nlohmann JSON alone, and links every core program: one
# check that the core builds without the I/O side's packages and that its
# CUDA-only and libtorch >= 2 lines (fused attention, fp16, pinned memory,
# the attention group's CUDA stream prefetch, the CUDA allocator's
# statistics) compile and link against libtorch 2.x. CI's own libtorch is
# Debian's 1.13 for the CPU, where those lines are #if'd out; the main build
# compiles the same core files against it. Nothing runs: there is no GPU here.
#
# How: configured like core_only_configure (every other package switched
# off, the carried third_party/nlohmann) against the PyPI torch wheel's
# headers, CMake files and libraries, plus /usr/local/cuda's runtime for the
# link (-rpath-link; the wheel's libraries also need cuFile, cuSPARSELt and
# NVSHMEM, which come in other wheels: --allow-shlib-undefined leaves those
# to the loader, while every symbol via's own objects use must resolve).
# Unoptimised (a build check needs no -O; -O3 costs 5-40 % more per file
# against 2.x) and with one precompiled header of the libtorch, nlohmann and
# standard headers most files include (-include; each file still includes
# what it needs, which the main build checks without it): parsing libtorch
# 2.x's headers is most of a file's cost.
# Measured on this project's 2-core machine, shared with other builds (CPU
# seconds, user+sys): per file against 2.x at -O0 / -O3, attention_group
# 6.6 / 7.6, attention 12.5 / 13.2, vae 13.7 / 15.6, gpu_check 17.5 / 24.4;
# with the precompiled header at -O0, vae 5.6, unet_blocks 5.2 (13.5, 13.0
# without). The whole check (35 files, 3 programs, the header ~25 s once),
# machine otherwise idle: 230 CPU-s, 141 s wall, where the 9-file
# compile-only check at -O3 it replaced took 94 CPU-s, 94 s wall (its
# per-folder makes ran mostly one file at a time): +47 s of CI's wall time.
# With other builds running: 255 CPU-s, 239 s wall; the core at -O0 without
# the header: 385 CPU-s.
# comm/'s MPI and NCCL files are outside the core: the main build compiles
# and links them (against 1.13, with /usr/local/cuda's NCCL).
#
# The wheel (torch==$VIA_TORCH2_VERSION, default 2.15.0; ~540 MB, a few
# seconds from PyPI) is downloaded once into WORK_DIR and reduced to
# include/, share/cmake/ and lib/*.so. VIA_TORCH2_WHEEL=FILE uses a wheel
# already here. Exit 77 (CTest: Skipped) when no wheel can be had (no network).
#
# usage: scripts/check-torch2.sh [WORK_DIR]     (default: build-torch2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/build-torch2}
mkdir -p "$work"
work=$(cd "$work" && pwd)
version=${VIA_TORCH2_VERSION:-2.15.0}
jobs=${VIA_JOBS:-$(nproc)}
torch=$work/torch-$version
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

# The core alone against the wheel. CMAKE_PREFIX_PATH: Torch's and Caffe2's
# configs beside the headers (else Debian's Caffe2 config is found first);
# TORCH_LIBRARY and c10_LIBRARY: torch's find_library prefers Debian's
# libtorch.so and libc10.so to the wheel's. Build type None: no -O, and the
# precompiled header's -include in flags that configure's own test compiles
# (which use Debug's) do not see.
build=$work/core
pch=$work/pch/via_core_pch.h
t0=$(date +%s)
log=$work/configure.log
if ! cmake -S "$root" -B "$build" -DVIA_CORE_ONLY=ON -DCMAKE_BUILD_TYPE=None \
     -DCMAKE_PREFIX_PATH="$torch/share/cmake" -DTORCH_LIBRARY="$torch/lib/libtorch.so" \
     -Dc10_LIBRARY="$torch/lib/libc10.so" -DCUDAToolkit_ROOT=/usr/local/cuda \
     -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON -DCMAKE_DISABLE_FIND_PACKAGE_HDF5=ON \
     -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON \
     -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON \
     -DCMAKE_CXX_FLAGS_NONE="-include $pch" \
     -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,/usr/local/cuda/lib64 -Wl,--allow-shlib-undefined" \
     >"$log" 2>&1; then
  cat "$log" >&2
  echo "check-torch2: configuring the core against libtorch $version failed" >&2
  exit 1
fi
grep -q "using third_party/nlohmann" "$log" ||
  { echo "check-torch2: a system nlohmann_json was found: not the core-only configuration" >&2; exit 1; }
grep -q "^C10_CUDA_LIBRARY:FILEPATH=$torch/" "$build/CMakeCache.txt" ||
  { echo "check-torch2: libtorch $version has no c10_cuda: the CUDA lines would not be compiled" >&2; exit 1; }
echo "check-torch2: configured the core against libtorch $version (C++20, CUDA) in $(( $(date +%s) - t0 )) s"

# The precompiled header, made with via_model's flags: the libraries' files
# use it (the other targets differ only in macros these headers do not
# read); the programs' own files (-fPIE, not -fPIC) compile without it.
t0=$(date +%s)
mkdir -p "$(dirname "$pch")"
cat >"$pch" <<'EOF'
// scripts/check-torch2.sh: the headers most core files include, precompiled once.
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>
EOF
flags=$(sed -n 's/^CXX_\(DEFINES\|INCLUDES\|FLAGS\) = //p' "$build/model/CMakeFiles/via_model.dir/flags.make" |
        sed "s|-include $pch||" | tr '\n' ' ')
# shellcheck disable=SC2086  # $flags is a list of compiler arguments
if ! c++ $flags -x c++-header "$pch" -o "$pch.gch" >"$work/make.log" 2>&1; then
  cat "$work/make.log" >&2
  echo "check-torch2: the precompiled header failed against libtorch $version" >&2
  exit 1
fi
echo "check-torch2: precompiled the common headers in $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
if ! cmake --build "$build" -j "$jobs" >"$work/make.log" 2>&1; then
  grep -B2 -A12 -m3 'error' "$work/make.log" >&2 || tail -40 "$work/make.log" >&2
  echo "check-torch2: the core failed to build against libtorch $version (all of it in $work/make.log)" >&2
  exit 1
fi
programs=$(cd "$build/bench" && find . -maxdepth 1 -type f -perm -u+x -name 'via_*' -printf '%f\n' | sort | paste -sd' ' -)
echo "check-torch2: built the core and linked its programs against libtorch $version in $(( $(date +%s) - t0 )) s: $programs"
echo "check-torch2: total $(( $(date +%s) - start )) s"
