#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine: installs what is
# missing, builds, and renders the toy-world sample (tests/data/toy/clip801:
# three shapes drifting over a smooth background, with a tone) with the
# committed toy InstructPix2Pix (tests/data/toy_ip2p, trained by
# tests/reference/toy/train_toy_model.py) and two MPI ranks:
# "paint the shapes", an edit with four right answers (red, green, blue,
# yellow) that full Via keeps to one colour from the first frame to the last.
# Writes out/sample/edited.mp4 and out/sample/strip.png (source frames above,
# edited frames below).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"

via="$root/build/driver/via"
out="$root/out/sample"
source="$root/tests/data/toy/clip801/source.mp4"
mkdir -p "$out"

# Open MPI: as root it needs --allow-run-as-root; each rank is multi-threaded,
# so no binding to one core.
mpi_flags=(--bind-to none --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
# --resume: running this script again continues (or just re-assembles) the render.
# --overwrite: out/sample/edited.mp4 is this script's own (a sample made by an
# older via has no record of it in the work directory)
mpirun "${mpi_flags[@]}" -np 2 "$via" render --resume --overwrite \
  --model "$root/tests/data/toy_ip2p" --input "$source" --output "$out/edited.mp4" \
  --workdir "$out/work" --instruction "paint the shapes" --long-side 96 --chunk-frames 8 \
  --text-guidance 3  # the toy model's guidance (tests/data/toy_ip2p/README.md)

# Every 6th frame of the source above the same frames of the edit, at 3x.
ffmpeg -nostdin -v error -y -i "$source" -i "$out/edited.mp4" -filter_complex \
  "[0:v]select='not(mod(n,6))',scale=iw*3:ih*3:flags=neighbor,tile=8x1[a];[1:v]select='not(mod(n,6))',scale=iw*3:ih*3:flags=neighbor,tile=8x1[b];[a][b]vstack" \
  -frames:v 1 -update 1 "$out/strip.png"

echo "via: the edited video is $out/edited.mp4, a strip of its frames (source above, edit below) is $out/strip.png"
echo "via: work directory $out/work (\`$via status $out/work\` shows it)"
