#!/usr/bin/env bash
# Configures and builds via in ./build (Release). Usage: scripts/build.sh [extra cmake args]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${VIA_BUILD_DIR:-$root/build}"
jobs="${VIA_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j "$jobs"
