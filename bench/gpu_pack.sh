#!/usr/bin/env bash
# Packs what an offline CUDA machine with PyTorch lacks to run bench/gpu_run.sh, into .gpu-pack/:
# ../shared/gpu/pack.sh's diffusers and rerun-sdk, plus this project's additions as wheels in
# .gpu-pack/wheels/: pydantic (every manifest is read through it; pure Python plus pydantic-core, a
# compiled wheel per CPython version, 3.11 to 3.13) and pytest (the CUDA tests). scikit-image and SciPy
# (control adherence) are left out: over 50 MB, they would not fit the 64 MiB that travels with the tree;
# gpu_run.sh runs without adherence where they are missing.
#
#   bench/gpu_pack.sh        # in the project's root, on a machine with a package index
#
# Versions: the ones installed in this environment's python3 if any, else the newest allowed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
shared=${RRC_SHARED:-$root/../shared}
python=${PYTHON:-python3}
pack=.gpu-pack
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pack.sh writes .gpu-pack/ into the root of the git checkout it runs in and adds it to .git/info/exclude,
# which a git worktree does not have as a folder: run it in a scratch repository and move the pack here.
git init -q "$work/checkout"
(cd "$work/checkout" && PATH="$(dirname "$(command -v "$python")"):$PATH" "$shared/gpu/pack.sh")
rm -rf "$pack"
mv "$work/checkout/$pack" "$pack"

installed() {  # dist==version as installed here, else the bare name (pip then takes the newest)
  "$python" -c "import importlib.metadata as m; print('$1==' + m.version('$1'))" 2>/dev/null || echo "$1"
}
wanted=("$(installed pydantic)" "$(installed pytest)")
for version in 3.11 3.12 3.13; do
  "$python" -m pip download -q --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$pack/wheels" "${wanted[@]}" 2>&1 | grep -v '^WARNING' || true
done
ls "$pack"/wheels/pydantic_core-*cp312*.whl >/dev/null  # the download must have worked

du -sh "$pack" "$pack"/*
# What travels: the files git tracks or would track, and the pack.
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
bytes=$((tree + $(du -sb "$pack" | cut -f1)))
echo "tree with $pack: $((bytes / 1048576)) MiB of the 64 MiB that travel with it"
[ "$bytes" -le $((64 * 1048576)) ] || { echo "too big to carry" >&2; exit 1; }
echo "pack ready: copy the tree with $pack/ (git-ignored) and run 'bash bench/gpu_run.sh' there"
