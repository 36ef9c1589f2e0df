"""Reference aspect-ratio buckets for tests/test_dataset: kohya sd-scripts'
own BucketManager (library/train_util.py, which calls
library/model_util.make_bucket_resolutions), imported unmodified from a
checkout of the stable-cascade branch (235a1ea).

Usage: python dataset_buckets_ref.py SD_SCRIPTS_DIR > tests/data/dataset/buckets.txt
Needs numpy only: the GPU/ML packages train_util imports at the top (torch,
diffusers, transformers, cv2, ...) are replaced by empty stand-in modules,
since BucketManager uses none of them.

Output lines:
  bucketer W H MIN MAX STEPS NO_UPSCALE N w1 h1 ... wN hN   (N = 0 with no_upscale)
  fixed W H                                               (enable_bucket off)
  select IW IH BW BH RW RH                                 (for the bucketer above)
"""
import importlib.abc
import importlib.machinery
import sys
import types


class _Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Any()


class _Any:
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return _Any()
    def __getattr__(self, name): return _Any()
    def __getitem__(self, k): return _Any()
    def __mro_entries__(self, bases): return (object,)
    def __or__(self, o): return _Any()


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    HEAVY = ("torch", "torchvision", "diffusers", "transformers", "cv2", "safetensors", "accelerate", "tqdm",
             "PIL", "einops", "huggingface_hub", "toml", "voluptuous", "imagesize", "open_clip", "bitsandbytes",
             "library.ipex", "library.device_utils", "library.huggingface_util", "library.lpw_stable_diffusion",
             "library.original_unet", "library.sdxl_original_unet", "library.sai_model_spec", "library.hypernetwork",
             "library.custom_train_functions", "library.attention_processors", "library.slicing_vae")

    def find_spec(self, name, path, target=None):
        if any(name == h or name.startswith(h + ".") for h in self.HEAVY):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _Stub(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module): pass


sys.meta_path.insert(0, _Finder())
sys.path.insert(0, sys.argv[1])
_out, sys.stdout = sys.stdout, sys.stderr  # train_util prints a note about its logging on import
from library.train_util import BucketManager  # noqa: E402
sys.stdout = _out

# images: squares, both orientations of common photo aspects, extremes,
# sizes equal to a bucket, and small images
IMAGES = [(512, 512), (1024, 1024), (1000, 1000), (640, 480), (480, 640), (1920, 1080), (1080, 1920),
          (800, 600), (600, 800), (1234, 567), (567, 1234), (3000, 400), (400, 3000), (2048, 1536),
          (300, 200), (200, 300), (768, 1280), (1280, 768), (2000, 1999), (333, 777), (96, 96), (4096, 1024)]
CASES = [  # resolution W, H, min, max, steps, no_upscale
    (1024, 1024, 256, 2048, 64, False), (1024, 1024, 256, 1024, 64, False), (768, 768, 256, 1024, 64, False),
    (1024, 768, 512, 1536, 128, False), (512, 512, 256, 1024, 32, False), (1024, 1024, 256, 2048, 64, True),
    (768, 512, 256, 1024, 32, True)]

for w, h, mn, mx, st, noup in CASES:
    bm = BucketManager(noup, (w, h), mn, mx, st)
    if not noup:
        bm.make_buckets()
        resos = bm.predefined_resos
    else:
        resos = []
    print("bucketer", w, h, mn, mx, st, int(noup), len(resos), *[v for r in resos for v in r])
    for iw, ih in IMAGES:
        reso, resized, _ = bm.select_bucket(iw, ih)
        print("select", iw, ih, reso[0], reso[1], resized[0], resized[1])
for w, h in [(1024, 1024), (768, 512)]:
    bm = BucketManager(False, (w, h), None, None, None)
    bm.set_predefined_resos([(w, h)])
    print("fixed", w, h)
    for iw, ih in IMAGES:
        reso, resized, _ = bm.select_bucket(iw, ih)
        print("select", iw, ih, reso[0], reso[1], resized[0], resized[1])
