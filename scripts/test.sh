#!/usr/bin/env bash
# The README's test command: install what is missing, build, run every test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "${VIA_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" "$@"
