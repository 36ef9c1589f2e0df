#!/usr/bin/env python3
"""PyTorch CPU reference timing of one Stage C / Stage B forward pass.

diffusers StableCascadeUNet configured as Stage C lite (1.03B) and Stage B lite
(699M) with random weights; one forward at batch 2 (one image with CFG):
  Stage C lite: x (2,16,24,24), clip_text (2,77,1280), pooled (2,1,1280), clip_img (2,1,768)
  Stage B lite: x (2,4,256,256), effnet (2,16,24,24), pooled (2,1,1280)
Each (model, dtype) runs in its own process so the peak RSS belongs to it.
Prints one JSON line per measurement.  FLOPs are counted on the meta device
with torch.utils.flop_counter (GEMM, conv and attention matmuls; 2 per MAC;
norms and activations not counted).

  bench/torch_stage.py [--model stage_c_lite,stage_b_lite] [--dtype fp32,bf16]
                       [--threads 2] [--runs 3] [--warmup 1] [--weights FILE]
"""
import argparse
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common as tc  # noqa: E402  (stdlib only)

DTYPES = ("fp32", "bf16", "bf16-autocast")


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", default="stage_c_lite,stage_b_lite",
                    help="comma list of stage_c_lite, stage_b_lite, stage_c, stage_b")
    ap.add_argument("--dtype", default="fp32,bf16",
                    help="comma list of fp32, bf16 (weights+activations bf16), "
                         "bf16-autocast (fp32 weights, torch.autocast)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--latent", default=None, help="HxW of x (default 24x24 for C, 256x256 for B)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--weights", default=None,
                    help="official-layout safetensors to load instead of random weights "
                         "(only with a single --model)")
    ap.add_argument("--save", default=None,
                    help="write the inputs and the output (F32, NCHW) of the last run "
                         "to this safetensors file, e.g. to compare with the C engine")
    return ap.parse_args()


def measure(a, variant, dtype_name):
    import torch
    import torch_models as tm
    torch.set_num_threads(a.threads)
    latent = tuple(int(v) for v in a.latent.split("x")) if a.latent else None
    wdt = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    t0 = time.perf_counter()
    model = tm.build_unet(variant, a.seed, wdt, fill=not a.weights)
    if a.weights:
        tm.load_official(model, a.weights, variant)
    build_s = time.perf_counter() - t0
    rss_model = tc.current_rss_mib()
    inp = tm.stage_inputs(variant, a.batch, wdt, latent)
    out = {}

    def fwd():
        with torch.inference_mode():
            if dtype_name == "bf16-autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out["y"] = model(**inp, return_dict=False)[0]
            else:
                out["y"] = model(**inp, return_dict=False)[0]

    cpu = []
    ts = tc.time_runs(fwd, a.warmup, a.runs, cpu)
    y = out["y"].float()
    if a.save:
        from safetensors.torch import save_file
        t = {k: v.float().contiguous() for k, v in inp.items()}
        t["out"] = y.contiguous()
        save_file(t, a.save, metadata={"model": variant, "dtype": dtype_name,
                                       "weights": a.weights or "random(seed=%d)" % a.seed})
    flops, per_op = tm.unet_flops(variant, a.batch, latent)
    med = tc.median(ts)
    rec = tc.base_record(torch, a.threads)
    rec.update({
        "bench": "torch_stage", "model": variant, "dtype": dtype_name,
        "batch": a.batch, "x_shape": list(inp["sample"].shape),
        "params": sum(p.numel() for p in model.parameters()),
        "weights": a.weights or "random(seed=%d)" % a.seed,
        "warmup": a.warmup, "runs": a.runs,
        "times_s": [round(t, 3) for t in ts], "median_s": round(med, 3),
        "cpu_s": [round(t, 2) for t in cpu],
        "min_s": round(min(ts), 3),
        "gflop": round(flops / 1e9, 1), "gflops_per_s": round(flops / 1e9 / med, 1),
        "gflops_per_s_best": round(flops / 1e9 / min(ts), 1),
        "flops_by_op_g": {k: round(v / 1e9, 1) for k, v in per_op.items()},
        "build_s": round(build_s, 1), "rss_after_build_mib": round(rss_model),
        "peak_rss_mib": round(tc.peak_rss_mib()),
        "out_finite": bool(torch.isfinite(y).all()), "out_std": round(float(y.std()), 5),
    })
    tc.emit(rec)


def main():
    a = parse()
    models = [m for m in a.model.split(",") if m]
    dtypes = [d for d in a.dtype.split(",") if d]
    for d in dtypes:
        if d not in DTYPES:
            raise SystemExit("unknown dtype " + d)
    if len(models) * len(dtypes) == 1:
        tc.set_threads_env(a.threads)
        tc.ensure_venv()
        measure(a, models[0], dtypes[0])
        return
    if a.weights or a.save:
        raise SystemExit("--weights/--save need a single --model and --dtype")
    tc.ensure_venv()
    rc = 0
    for m in models:
        for d in dtypes:
            argv = [sys.executable, os.path.abspath(__file__), "--model", m, "--dtype", d]
            for k in ("threads", "batch", "warmup", "runs", "seed"):
                argv += ["--" + k, str(getattr(a, k))]
            if a.latent:
                argv += ["--latent", a.latent]
            rc |= subprocess.call(argv)
    sys.exit(rc)


if __name__ == "__main__":
    main()
