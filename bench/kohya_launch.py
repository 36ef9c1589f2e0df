#!/usr/bin/env python3
"""Runs one of kohya's sd-scripts trainers (laid out by bench/kohya_gpu.sh) unchanged on a
machine without a package index, and reports its speed and device memory (issue 13's bench).

usage: kohya_launch.py [--stage-c-config MANIFEST] [--tokenizer DIR] [--label L] SCRIPT ARGS...

Everything is done from outside sd-scripts' code, before the script runs as __main__:
- sys.path: the script's folder, then each wheel of ./wheels and ../wheels (beside this file)
  whose package the interpreter lacks, as a zip (nothing installed or written).
- cv2: sd-scripts' train_util imports OpenCV for cv2.resize (bucket resizing) only; where it is
  missing (a 50 MB binary wheel) a stand-in resizes with Pillow (INTER_AREA -> BOX, LANCZOS4 ->
  LANCZOS). It changes the data pipeline's pixels a little, not the training's cost.
- transformers: the image's (5.x) is used; CLIPFeatureExtractor, which 5.x dropped and sd-scripts
  imports for its SD1 pipelines, is set to CLIPImageProcessor.
- EfficientNet: sd-scripts builds torchvision's efficientnet_v2_s(weights="DEFAULT") and then
  loads the effnet file over it; "DEFAULT" downloads ImageNet weights. A random state dict of the
  same network is put in a temporary $TORCH_HOME under the name torchvision looks for, so
  nothing is fetched (every backbone tensor is then replaced by the effnet file's).
- --tokenizer DIR (vocab.json, merges.txt): sd-scripts asks the hub for
  laion/CLIP-ViT-bigG-14-laion2B-39B-b160k's tokenizer unless --tokenizer_cache_dir holds it;
  a temporary cache dir with those files and a tokenizer_config.json (77 tokens, pad "!", as
  that repository's) is passed. HF_HUB_OFFLINE=1 keeps the hub off the network.
- --stage-c-config MANIFEST: the branch builds only the full Stage C (sc.StageC() with its
  defaults); for Stage C lite, StageC.__init__'s defaults are set from the manifest's constructor.
Measurement: a global optimizer step hook synchronizes the device and stamps the time after
every optimizer step; at exit one line 'kohya L: ...' gives the steps, the median and mean
seconds between consecutive steps (so the first step, with its warm-up, is not counted),
torch.cuda.max_memory_allocated and max_memory_reserved.
"""
import argparse
import atexit
import importlib.util
import json
import os
import runpy
import shutil
import statistics
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_REPO = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"


def add_wheels():
    """Each wheel whose top-level package is not installed goes on sys.path as a zip."""
    seen = set()
    for d in (os.path.join(HERE, "wheels"), os.path.join(HERE, "..", "wheels")):
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if not f.endswith(".whl"):
                continue
            name = f.split("-")[0].lower()
            if name in seen or importlib.util.find_spec(name) is not None:
                continue
            seen.add(name)
            sys.path.insert(1, os.path.join(d, f))
            print(f"kohya_launch: {name} from {f}", file=sys.stderr)


def cv2_stand_in():
    if importlib.util.find_spec("cv2") is not None:
        return
    import numpy as np
    from PIL import Image

    m = types.ModuleType("cv2")
    m.INTER_AREA, m.INTER_LANCZOS4, m.INTER_LINEAR, m.INTER_CUBIC = 3, 4, 1, 2
    m.COLOR_BGR2HSV, m.COLOR_HSV2BGR = 40, 54
    filters = {3: Image.BOX, 4: Image.LANCZOS, 1: Image.BILINEAR, 2: Image.BICUBIC}

    def resize(img, size, interpolation=1):
        return np.array(Image.fromarray(img).resize(tuple(int(v) for v in size), filters[interpolation]))

    def unsupported(*a, **k):
        raise NotImplementedError("kohya_launch: cv2 stand-in: only cv2.resize is provided")

    m.resize, m.cvtColor, m.imshow, m.waitKey, m.destroyAllWindows = resize, unsupported, unsupported, unsupported, unsupported
    sys.modules["cv2"] = m
    print("kohya_launch: cv2 not installed: Pillow stand-in for cv2.resize", file=sys.stderr)


def transformers_aliases():
    """Names sd-scripts imports from transformers 4.36 that later versions dropped."""
    import transformers

    if not hasattr(transformers, "CLIPFeatureExtractor"):   # the SD1 pipelines' type, unused here
        v = transformers.CLIPImageProcessor
        # the lazy module puts another object into sys.modules once touched: set it on both
        for m in (transformers, sys.modules["transformers"]):
            m.CLIPFeatureExtractor = v


def effnet_cache(tmp):
    import torch
    import torchvision

    w = torchvision.models.EfficientNet_V2_S_Weights.DEFAULT
    d = os.path.join(tmp, "torch", "hub", "checkpoints")
    os.makedirs(d)
    torch.save(torchvision.models.efficientnet_v2_s().state_dict(), os.path.join(d, os.path.basename(w.url)))
    os.environ["TORCH_HOME"] = os.path.join(tmp, "torch")


def tokenizer_cache(tmp, src):
    d = os.path.join(tmp, "tok", TOKENIZER_REPO.replace("/", "_"))
    os.makedirs(d)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(src, f), d)
    cfg = {"model_max_length": 77, "pad_token": "!", "bos_token": "<|startoftext|>",
           "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "do_lower_case": True,
           "tokenizer_class": "CLIPTokenizer"}
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f)
    return os.path.join(tmp, "tok")


def stage_c_defaults(manifest):
    import inspect

    import library.stable_cascade as sc

    with open(manifest) as f:
        params = json.load(f)["constructor"]
    init = sc.StageC.__init__
    names = [p for p in inspect.signature(init).parameters if p != "self"]
    defaults = list(init.__defaults__)
    for k, v in params.items():
        if k not in names:
            sys.exit(f"kohya_launch: {manifest}: StageC has no parameter '{k}'")
        defaults[names.index(k)] = v
    init.__defaults__ = tuple(defaults)


def main():
    ap = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].strip())
    ap.add_argument("--stage-c-config")
    ap.add_argument("--tokenizer")
    ap.add_argument("--label", default="run")
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    script = os.path.abspath(a.script)
    if not os.path.isfile(script):
        sys.exit(f"kohya_launch: {a.script}: no such script (run bench/kohya_gpu.sh first)")
    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, os.path.dirname(script))
    add_wheels()
    cv2_stand_in()
    transformers_aliases()
    tmp = tempfile.mkdtemp(prefix="kohya-launch-")
    atexit.register(shutil.rmtree, tmp, True)
    effnet_cache(tmp)
    args = list(a.args)
    if a.tokenizer:
        args += ["--tokenizer_cache_dir", tokenizer_cache(tmp, a.tokenizer)]
    if a.stage_c_config:
        stage_c_defaults(a.stage_c_config)

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    cuda = torch.cuda.is_available()
    stamps = []

    def after_step(opt, *_):
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    register_optimizer_step_post_hook(after_step)
    t0 = time.perf_counter()

    def report():
        d = [b - a for a, b in zip(stamps, stamps[1:])]
        med = f"{statistics.median(d):.3f}" if d else "-"
        mean = f"{statistics.mean(d):.3f}" if d else "-"
        mem = "device peak: no CUDA"
        if cuda:
            g = 1 << 30
            mem = (f"max_memory_allocated {torch.cuda.max_memory_allocated() / g:.2f} GiB, "
                   f"max_memory_reserved {torch.cuda.max_memory_reserved() / g:.2f} GiB")
        print(f"kohya {a.label}: {len(stamps)} steps, s/step median {med} mean {mean} (after the first), "
              f"{mem}, wall {time.perf_counter() - t0:.1f} s", flush=True)

    atexit.register(report)
    sys.argv = [script] + args
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
