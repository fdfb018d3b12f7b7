#!/usr/bin/env bash
# Download asv, asv_runner and everything they need at run time as wheels for the GPU machine
# (CPython 3.12, manylinux x86_64, no network there) into .whl/ (ignored by git).
# Run it where PyPI is reachable, then carry .whl to the GPU machine: tools/gpu/record.sh
# installs from it only what that machine's Python lacks.
#
# Usage: tools/gpu/fetch_wheels.sh [DEST]   (DEST defaults to .whl in the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="${1:-.whl}"
python="${PYTHON:-python3}"
mkdir -p "$dest"
rm -f "$dest"/*.whl

# asv's own extension is built for the stable ABI (cp36-abi3), pyyaml's per Python version; pip
# matches manylinux tags exactly, so every tag a wheel may carry is listed.
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
"$python" -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --abi abi3 --abi none "${platforms[@]}" -d "$dest" "asv==0.6.6" "asv_runner==0.3.2"

# One version of each project (two would stop the install there).
dupes="$(ls "$dest"/*.whl | xargs -n1 basename | cut -d- -f1 | tr '[:upper:]' '[:lower:]' | sort | uniq -d)"
if [ -n "$dupes" ]; then
  echo "more than one wheel of: $dupes" >&2
  exit 1
fi
ls -1 "$dest"
du -sh "$dest"
