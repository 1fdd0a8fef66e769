#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine: installs what is
# missing, builds, makes a tiny random model and a sample video (FFmpeg's test
# pattern and a tone), and renders it with two MPI ranks. The output is in
# out/sample/edited.mp4. The tiny model is random: it shows the pipeline
# (adaptation, gather/swap, checkpoints, resume, audio), not a real edit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"

via="$root/build/driver/via"
out="$root/out/sample"
mkdir -p "$out"
[ -d "$out/tiny-model" ] || "$via" make-tiny-model --out "$out/tiny-model"
if [ ! -f "$out/source.mp4" ]; then
  ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=320x180:rate=24 -f lavfi -i sine=frequency=440 \
    -t 4 -c:v libx264 -pix_fmt yuv420p -c:a aac "$out/source.mp4"
fi

# Open MPI: as root it needs --allow-run-as-root; each rank is multi-threaded,
# so no binding to one core.
mpi_flags=(--bind-to none --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
# --resume: running this script again continues (or just re-assembles) the render.
mpirun "${mpi_flags[@]}" -np 2 "$via" render --resume \
  --model "$out/tiny-model" --input "$out/source.mp4" --output "$out/edited.mp4" \
  --workdir "$out/work" --instruction "make it a pencil sketch" \
  --long-side 128 --steps 10 --candidates 3 --augment 4 --finetune-steps 20 --learning-rate 1e-3 --chunk-frames 8

echo "via: the edited video is $out/edited.mp4 (work directory: $out/work; \`$via status $out/work\` shows it)"
