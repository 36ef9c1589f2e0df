#!/bin/sh
# Full-size CLIP vision check and timing (not make check: torch + transformers
# and ~4 GB of memory). Writes a random-weight openai/clip-vit-large-patch14
# vision model and its transformers reference to DIR (bench/vision_vitl_ref.py,
# ~0.6 GB), compares cascade against it (`tests/golden/cascade-golden --strict`, module
# clip_vision: image_embeds and last_hidden_state) and times the forward at
# 224² (bench/vision). Results: bench/RESULTS-vision.md.
#   bench/vision_vitl.sh DIR [PYTHON]     PYTHON: a venv's python with torch,
#                                         transformers, safetensors
# Run from a built tree's root (make bench/vision first).
dir=${1:?usage: bench/vision_vitl.sh DIR [PYTHON]}
py=${2:-python3}
top=$(cd "$(dirname "$0")/.." && pwd)
[ -x ./cascade ] && [ -x ./bench/vision ] || { echo "run from a built tree (make && make bench/vision)"; exit 2; }
if [ ! -f "$dir/clip_vision_vitl.io.safetensors" ]; then
    nice -n 10 "$py" "$top/bench/vision_vitl_ref.py" --out "$dir" || exit 1
fi
nice -n 10 ./tests/golden/cascade-golden --strict "$dir/clip_vision_vitl" || exit 1
OMP_WAIT_POLICY=passive nice -n 10 ./bench/vision "$dir/clip_vision_vitl.weights.safetensors" --runs 3 --threads 2
