#!/bin/sh
# bench/torch_gpu_wheels.sh DIR [NAME==VERSION...] — the wheels bench/torch_gpu.py needs on a
# machine without a package index (the GPU machine, see bench/README.md), downloaded into DIR
# (outside git, e.g. devrun/wheels): diffusers (the version torch_common.PINS names) and
# importlib_metadata, the one of its requirements that machine's image lacks (its 'cuda' image
# has Pillow, requests, filelock, regex, numpy, zipp, huggingface-hub 1.33 and safetensors 0.8,
# which diffusers 0.42 accepts). Extra NAME==VERSION arguments are fetched too (e.g. requests
# and its needs where they are missing). Only pure-Python wheels (torch_gpu.py --wheels DIR
# imports them as zip archives, installing nothing). Prints the folder's size.
set -eu
[ $# -ge 1 ] || { echo "usage: bench/torch_gpu_wheels.sh DIR [NAME==VERSION...]" >&2; exit 2; }
d=$1
shift
top=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
diffusers=$(sed -n 's/.*"\(diffusers==[^"]*\)".*/\1/p' "$top/bench/torch_common.py")
[ -n "$diffusers" ] || { echo "bench/torch_gpu_wheels.sh: no diffusers pin in torch_common.py" >&2; exit 1; }
mkdir -p "$d"
# --no-deps: the requirements are listed above; --only-binary with no platform tag keeps to
# py3-none-any wheels, which import from a zip on any Python 3.
"$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation py --platform any -d "$d" \
    "$diffusers" importlib_metadata "$@"
ls -l "$d"/*.whl
du -sh "$d"
