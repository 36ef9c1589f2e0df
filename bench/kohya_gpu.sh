#!/bin/sh
# bench/kohya_gpu.sh DIR — what the GPU machine (no package index) needs to run kohya's
# sd-scripts Stage C trainers beside ours (gpu_check.sh kohya, issue 13), put into DIR (outside
# git, e.g. devrun/kohya); nothing of sd-scripts is committed here:
#   DIR/sd-scripts  the trainers and what they import (library/, networks/lora.py) from the
#                   stable-cascade branch at the commit PIN below, read from a local git mirror
#                   ($KOHYA_GIT, a bare repository or a clone of kohya-ss/sd-scripts)
#   DIR/wheels      pure-Python wheels of what the machine's image lacks: toml, voluptuous and
#                   einops at sd-scripts' pins; diffusers and importlib_metadata come from
#                   bench/torch_gpu_wheels.sh's folder DIR/../wheels (fetched there if missing).
#                   The image's own torch, torchvision, transformers, accelerate, tokenizers,
#                   huggingface-hub, safetensors and Pillow are used (bench/README.md says why)
#   DIR/kohya_run.sh, DIR/kohya_launch.py  the runner (bench/kohya_run.sh) and its launcher
# Prints the folder's size.
set -eu
[ $# -eq 1 ] || { echo "usage: bench/kohya_gpu.sh DIR" >&2; exit 2; }
# the head of sd-scripts' stable-cascade branch (2024-02-25, "Merge branch 'dev' into stable-cascade")
PIN=235a1ea2c6021e471bb5868446faf9693f0753a1
top=$(cd "$(dirname "$0")/.." && pwd)
git=${KOHYA_GIT:-/work/.mirror/kohya-ss+sd-scripts/repo}
py=${PYTHON:-python3}
d=$1
git --git-dir="$git" cat-file -e "$PIN^{commit}" 2>/dev/null ||
    { echo "bench/kohya_gpu.sh: $git: no sd-scripts commit $PIN (set KOHYA_GIT to a clone)" >&2; exit 1; }
mkdir -p "$d"
rm -rf "$d/sd-scripts" "$d/wheels"
mkdir -p "$d/sd-scripts" "$d/wheels"
# the two trainers, the package they import and the LoRA module; the rest of the tree (captioning
# tools, Windows DLLs, docs) is not on their import path (file by file: a partial mirror lacks blobs
# that git archive would read)
for f in $(git --git-dir="$git" ls-tree -r --name-only "$PIN" -- stable_cascade_train_stage_c.py \
    stable_cascade_train_c_network.py library networks/lora.py LICENSE.md); do
    mkdir -p "$d/sd-scripts/$(dirname "$f")"
    git --git-dir="$git" cat-file blob "$PIN:$f" >"$d/sd-scripts/$f"
done
"$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation py --platform any -d "$d/wheels" \
    toml==0.10.2 voluptuous==0.13.1 einops==0.7.0
ls "$d/../wheels"/diffusers-*.whl >/dev/null 2>&1 || "$top/bench/torch_gpu_wheels.sh" "$d/../wheels" >/dev/null
cp "$top/bench/kohya_run.sh" "$top/bench/kohya_launch.py" "$d/"
echo "$PIN" >"$d/sd-scripts/COMMIT"
ls "$d/wheels" "$d/../wheels"
du -sh "$d" "$d/../wheels"
