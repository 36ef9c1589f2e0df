#!/usr/bin/env python3
"""Does ComfyUI take a Stage C checkpoint written by `cascade train` as the
model it was trained from? ComfyUI's own loader path for a diffusion model
file (UNETLoader -> comfy.sd.load_diffusion_model), step by step so that
every outcome is visible instead of logged:
  comfy.utils.load_torch_file -> model_detection.unet_prefix_from_state_dict
  (+ state_dict_prefix_replace) -> model_detection.model_config_from_unet (its key detection: clf.1.weight
  + clip_txt_mapper.weight = Stable Cascade stage C; the mapper's rows pick
  lite or full) -> model_config.get_model -> process_unet_state_dict ->
  diffusion_model.load_state_dict(strict=False).
The checkpoint passes when the detected class and config are those of the
ORIGINAL file given beside it (the one training started from), no key is
missing or unexpected, and every tensor ComfyUI loaded equals the file's
(after ComfyUI's own dtype cast).

Usage (a venv with torch + ComfyUI's requirements; torchvision may be absent):
  python tests/ref/comfy_detect_ref.py COMFY_DIR ORIGINAL.safetensors TRAINED.safetensors...
Prints one line per file and exits 0 iff all pass.
"""
import gc
import json
import logging
import sys


def main():
    comfy = sys.argv[1]
    files = sys.argv[2:]
    sys.path.insert(0, comfy)
    sys.argv = [sys.argv[0], "--cpu"]   # ComfyUI reads its options at import
    try:
        import torchvision  # noqa: F401
    except ImportError:
        import transformers  # noqa: F401  (asks importlib about torchvision first)
        from unittest import mock
        sys.modules["torchvision"] = mock.MagicMock()
        sys.modules["torchvision.transforms"] = mock.MagicMock()
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.model_detection as md
    import comfy.utils
    import torch
    logging.basicConfig(level=logging.WARNING)

    def detect(path):
        sd, meta = comfy.utils.load_torch_file(path, return_metadata=True)
        # as comfy.sd.load_diffusion_model_state_dict: a checkpoint's prefix
        # is cut off; a file without one ("model." when nothing matches) stays
        prefix = md.unet_prefix_from_state_dict(sd)
        cut = comfy.utils.state_dict_prefix_replace(sd, {prefix: ""}, filter_keys=True)
        if len(cut) > 0:
            sd = cut
        cfg = md.model_config_from_unet(sd, "", metadata=meta)
        return sd, prefix if len(cut) > 0 else "", cfg

    ok_all = True
    ref = None
    for i, path in enumerate(files):
        sd, prefix, cfg = detect(path)
        if cfg is None:
            print(f"FAIL {path}: ComfyUI detects no model")
            ok_all = False
            continue
        name = type(cfg).__name__
        ucfg = {k: v for k, v in cfg.unet_config.items() if k in ("stable_cascade_stage", "c_cond", "c_hidden", "nhead", "blocks")}
        dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values()})
        if i == 0:
            ref = (name, ucfg)
        same = ref == (name, ucfg)
        # the file's own dtype (a 3.6B model in float32 beside its file would not fit 24 GB)
        cfg.set_inference_dtype(torch.bfloat16 if dtypes == ["bfloat16"] else torch.float32, None)
        model = cfg.get_model(sd, "")
        to_load = cfg.process_unet_state_dict(dict(sd))
        missing, unexpected = model.diffusion_model.load_state_dict(to_load, strict=False)
        msd = model.diffusion_model.state_dict()
        diff = [k for k, v in to_load.items() if k in msd and not torch.equal(msd[k], v.to(msd[k].dtype))]
        ok = same and not missing and not unexpected and not diff
        ok_all &= ok
        res = dict(model=name, unet_config=ucfg, prefix=prefix, tensors=len(sd), dtypes=dtypes,
                   missing=len(missing), unexpected=len(unexpected), differing=len(diff))
        if not same:
            res["original"] = ref
        if missing or unexpected or diff:
            res["first"] = (list(missing) + list(unexpected) + diff)[:5]
        print(("PASS " if ok else "FAIL ") + path + " " + json.dumps(res), flush=True)
        del model, msd, to_load, sd
        gc.collect()
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
