#!/usr/bin/env bash
# The compute core (-DVIA_CORE_ONLY=ON) must compile with libtorch and
# nlohmann JSON alone: every file of it may include only files of the core
# ("folder/file.h" inside it) and no header of the I/O side's libraries
# (FFmpeg, HDF5, MPI, NCCL, Boost, GoogleTest). Checked on the text of the
# includes, so it holds on a machine that has those headers installed too
# (where compiling the core would not notice). Prints each offending line;
# exit 1 if there is one.
#
# usage: scripts/check-core-includes.sh [REPO_ROOT]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

# The core: what the top-level CMakeLists.txt builds with VIA_CORE_ONLY=ON.
core=(base/*.h model/*.h model/*.cpp model/*.inc adaptation/*.h adaptation/*.cpp
      comm/communicator.h comm/communicator.cpp comm/single_process.h comm/single_process.cpp
      bench/*.h bench/*.cpp)
declare -A in_core=()
for f in "${core[@]}"; do [[ -e $f ]] && in_core[$f]=1; done

forbidden='^(mpi\.h|hdf5|H5[A-Za-z]*\.h|libav|libsw|nccl\.h|boost/|gtest/|gmock/)'
bad=0
for f in "${!in_core[@]}"; do
  while IFS= read -r line; do
    n=${line%%:*}
    text=${line#*:}
    if [[ $text =~ \#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]]; then
      inc=${BASH_REMATCH[1]}
      # Same-folder includes (model/tokenizer_unicode.inc) are named from the root too.
      [[ -n ${in_core[$inc]:-} || -n ${in_core[$(dirname "$f")/$inc]:-} ]] && continue
      echo "$f:$n: includes \"$inc\", which is not part of the compute core"
      bad=1
    elif [[ $text =~ \#[[:space:]]*include[[:space:]]*\<([^\>]+)\> ]]; then
      inc=${BASH_REMATCH[1]}
      if [[ $inc =~ $forbidden ]]; then
        echo "$f:$n: includes <$inc>, a library the compute core does not have"
        bad=1
      fi
    fi
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$f" || true)
done
if [[ $bad -ne 0 ]]; then
  echo "check-core-includes: the compute core must depend on libtorch and nlohmann JSON alone" \
       "(move file formats and media to io/ or rank/)" >&2
  exit 1
fi
echo "check-core-includes: ${#in_core[@]} files of the compute core include only the core, libtorch and nlohmann JSON"
