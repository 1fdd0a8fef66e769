#!/usr/bin/env bash
# Installs the Debian packages via needs, only those missing. Idempotent.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-openmp
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  libavformat-dev libavcodec-dev libswscale-dev libswresample-dev libavutil-dev ffmpeg
  libboost-program-options-dev libgtest-dev nlohmann-json3-dev
  python3-pip   # scripts/check-torch2.sh downloads the PyPI torch wheel (core_only_torch2)
  slurmctld slurmd slurm-client munge
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "via: all Debian packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "via: missing packages: ${missing[*]}" >&2
  echo "via: run this as root (sudo $0), or install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "via: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}"
