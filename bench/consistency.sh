#!/usr/bin/env bash
# What each part of Via buys, on toy-world videos: see bench/consistency.py.
# Needs a built via (scripts/build.sh) and the reference venv
# (tests/reference/setup_venv.sh). Arguments go to consistency.py.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="$root/tests/reference/.venv/bin/python"
[ -x "$py" ] || { echo "bench/consistency.sh: run tests/reference/setup_venv.sh first (numpy, Pillow)" >&2; exit 1; }
exec "$py" "$root/bench/consistency.py" "$@"
