#!/usr/bin/env bash
# Creates tests/reference/.venv with the pinned reference libraries that
# make_goldens.py runs against (CPU wheels are enough; nothing here runs in CI).
#
#   tests/reference/setup_venv.sh
#   tests/reference/.venv/bin/python tests/reference/make_goldens.py
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${here}/.venv"
python="${PYTHON:-python3}"

"${python}" -m venv "${venv}"
"${venv}/bin/pip" install --upgrade pip
"${venv}/bin/pip" install \
    "torch==2.15.0" \
    "diffusers==0.42.1" \
    "transformers==5.23.0" \
    "tokenizers==0.23.3" \
    "accelerate==1.15.0" \
    "safetensors==0.8.0" \
    "numpy==2.4.6" \
    "regex==2026.11.15"
"${venv}/bin/python" -c "import torch, diffusers, transformers; print('torch', torch.__version__, '| diffusers', diffusers.__version__, '| transformers', transformers.__version__)"
