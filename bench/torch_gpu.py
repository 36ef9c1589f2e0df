#!/usr/bin/env python3
"""PyTorch GPU timing of Stage C / Stage B (and Stage A decode) beside the C engine.

diffusers StableCascadeUNet (Stage C, C lite, B, B lite) and PaellaVQModel
(Stage A) on CUDA, loaded from the official-layout files that bench/gpu_check.sh
writes with bench/mkweights (--weights-dir), else random weights. One forward
at the 1024^2 shapes, batch 2 (one image with CFG; Stage A: batch 1):
  Stage C: x (2,16,24,24), clip_text (2,77,1280), pooled (2,1,1280), clip_img (2,1,768)
  Stage B: x (2,4,256,256), effnet (2,16,24,24), pooled (2,1,1280)
  Stage A: latent (1,4,256,256) -> image (1,3,1024,1024)
Per (model, dtype) a child process runs each mode: eager, compile
(torch.compile default), graphs (torch.compile mode="reduce-overhead": CUDA
graphs). Timing: CUDA events, warmup then runs, median and min in ms; the first
call (compilation) separately; peak VRAM (max_memory_allocated) per mode;
TFLOP/s from torch.utils.flop_counter (GEMM, conv, attention; 2 per MAC).
One JSON line per measurement, a markdown table at the end.

  bench/torch_gpu.py [--models stage_c,stage_c_lite,stage_b,stage_b_lite,stage_a]
      [--dtypes bf16,bf16-autocast] [--modes eager,compile,graphs] [--weights-dir DIR]
      [--wheels DIR] [--save DIR] [--warmup 3] [--runs 10] [--device cuda|cpu]
      [--size full|tiny]
--size tiny: shared/golden's tiny Stage C/B/A at small latents (CPU smoke test).
--save DIR: DIR/<model>_torch.io.safetensors, a golden case (inputs in.*; out.y the
fp32 forward on the weights file, out.y_bf16 the eager bf16 one; F32 NCHW) that
`tests/golden/cascade-golden` runs on our engine (the weights file must sit beside it).
Exit: 0 all measured, 1 a measurement or input file failed, 2 bad usage, 130 interrupted.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common as tc  # noqa: E402  (stdlib only)

MODELS = ("stage_c", "stage_c_lite", "stage_b", "stage_b_lite", "stage_a",
          "stage_c_tiny", "stage_b_tiny", "stage_a_tiny")
DTYPES = ("bf16", "bf16-autocast", "fp32")
MODES = {"eager": None, "compile": "default", "graphs": "reduce-overhead"}
TINY = "stage_c_tiny,stage_b_tiny,stage_a_tiny"
# x latent (h, w), Stage B's effnet (h, w), batch override per model
SHAPES = {"stage_c": ((24, 24), None), "stage_b": ((256, 256), (24, 24)),
          "stage_a": ((256, 256), None), "stage_c_tiny": ((12, 12), None),
          "stage_b_tiny": ((32, 32), (6, 6)), "stage_a_tiny": ((16, 16), None)}


def base_name(model):
    return model.replace("_lite", "")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--models", default=None,
                    help="comma list of " + ", ".join(MODELS) +
                         " (default: the four UNets; with --size tiny the tiny ones)")
    ap.add_argument("--dtypes", default="bf16,bf16-autocast",
                    help="comma list of bf16 (weights and activations), bf16-autocast "
                         "(fp32 weights, torch.autocast; skipped if it cannot fit), fp32")
    ap.add_argument("--modes", default="eager,compile,graphs",
                    help="comma list of eager, compile, graphs (reduce-overhead)")
    ap.add_argument("--weights-dir", default=None,
                    help="folder with <model>_bf16.safetensors / <model>.safetensors "
                         "(official layout, as bench/mkweights writes); random weights where absent")
    ap.add_argument("--wheels", default=None,
                    help="folder of wheels (bench/torch_gpu_wheels.sh) imported where a "
                         "package is missing, e.g. diffusers on the GPU machine")
    ap.add_argument("--save", default=None, metavar="DIR",
                    help="write DIR/<model>_torch.io.safetensors: inputs and eager bf16 output")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--size", default="full", choices=("full", "tiny"))
    ap.add_argument("--batch", type=int, default=2, help="UNet batch (Stage A: always 1)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls (default 3; tiny 1)")
    ap.add_argument("--runs", type=int, default=None, help="timed calls (default 10; tiny 2)")
    ap.add_argument("--seed", type=int, default=1234, help="random weights (inputs: seed 7)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (--device cpu)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.models = [m for m in (a.models or (TINY if a.size == "tiny" else
                                         "stage_c,stage_c_lite,stage_b,stage_b_lite")).split(",") if m]
    a.dtypes = [d for d in a.dtypes.split(",") if d]
    a.modes = [m for m in a.modes.split(",") if m]
    for lst, ok, what in ((a.models, MODELS, "--models"), (a.dtypes, DTYPES, "--dtypes"),
                          (a.modes, MODES, "--modes")):
        bad = [v for v in lst if v not in ok]
        if bad or not lst:
            ap.error("%s: unknown or empty value %s (allowed: %s)" % (what, ",".join(bad), ", ".join(ok)))
    a.warmup = a.warmup if a.warmup is not None else (1 if a.size == "tiny" else 3)
    a.runs = a.runs if a.runs is not None else (2 if a.size == "tiny" else 10)
    if a.warmup < 0 or a.runs < 1 or a.batch < 1 or (a.threads is not None and a.threads < 1):
        ap.error("--warmup >= 0, --runs >= 1, --batch >= 1, --threads >= 1")
    for opt, d in (("--weights-dir", a.weights_dir), ("--wheels", a.wheels), ("--save", a.save)):
        if d is not None and not os.path.isdir(d):
            ap.error("%s %s: not a folder" % (opt, d))
    return a


def weights_file(a, model):
    """The official-layout file of model in --weights-dir, or None (random weights)."""
    if not a.weights_dir:
        return None
    for name in (model + "_bf16.safetensors", model + ".safetensors", model + ".weights.safetensors"):
        p = os.path.join(a.weights_dir, name)
        if os.path.exists(p):
            return p
    return None


# ---- one (model, dtype), in a child process ------------------------------

class Bench:
    def __init__(self, torch, a):
        self.torch, self.a, self.cuda = torch, a, a.device == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def call_ms(self, fn):
        """Wall ms of one call, synchronised (compilation included)."""
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return (time.perf_counter() - t0) * 1e3

    def timed(self, fn, warmup, runs):
        torch = self.torch
        for _ in range(warmup):
            fn()
        ts = []
        for _ in range(runs):
            if self.cuda:
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                ts.append(e0.elapsed_time(e1))
            else:
                ts.append(self.call_ms(fn))
        return ts

    def reset_peak(self):
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self):
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / 2**20
        return tc.peak_rss_mib()


def build(torch, tm, a, model, dtype_name):
    """(module on the device, its inputs there, weights label)."""
    wdt = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    wf = weights_file(a, model)
    base = base_name(model)
    latent, eff = SHAPES[base]
    if model.startswith("stage_a"):
        m = tm.build_vqgan(a.seed, wdt, fill=not wf, variant=model)
        g = torch.Generator().manual_seed(7)
        inp = {"x": torch.randn(1, 4, *latent, generator=g)}
    else:
        m = tm.build_unet(model, a.seed, wdt, fill=not wf)
        inp = tm.stage_inputs(model, a.batch, torch.float32, latent, effnet=eff or (24, 24))
    if wf:
        tm.load_official(m, wf, model)
    if not fits(torch, a, m, dtype_name):
        return None, None, None
    m = m.to(a.device).eval()
    act = wdt  # bf16: bf16 activations; autocast: fp32 inputs, autocast casts
    dev_inp = {k: v.to(a.device, act) for k, v in inp.items()}
    return m, dev_inp, wf or "random(seed=%d)" % a.seed


def forward_fns(torch, tm, a, model, m, dtype_name, dev_inp):
    """(core, run): core(inputs) is the forward that torch.compile gets (a function,
    so that Stage A's decode is compiled too); run(f) calls f as measured."""
    auto = dtype_name == "bf16-autocast"
    if model.startswith("stage_a"):      # as the official StageA.decode
        def core(inp):
            return m.decode(inp["x"] * tm.STAGE_A_SCALE).sample
    else:
        def core(inp):
            return m(**inp, return_dict=False)[0]

    def run(f):
        with torch.inference_mode(), torch.autocast(a.device, dtype=torch.bfloat16, enabled=auto):
            return f(dev_inp)
    return core, run


def fits(torch, a, m, dtype_name):
    """fp32 weights (autocast, fp32): free VRAM for them, ~30% and 4 GiB more."""
    if not (a.device == "cuda" and dtype_name != "bf16"):
        return True
    need = sum(p.numel() for p in m.parameters()) * 4 * 1.3 + 4 * 2**30
    return torch.cuda.mem_get_info()[0] >= need


def save_case(a, model, inp, y, y_bf16, wf):
    """A golden case (shared/golden/README.md format) for `tests/golden/cascade-golden`.

    out.y is the fp32 forward (the file's weights, no TF32),
    out.y_bf16 the eager bf16 one (not read by the golden runner)."""
    from safetensors.torch import save_file
    import torch_models as tm
    if model.startswith("stage_a"):
        t = {"in.x": inp["x"]}
        cfg = {"levels": 2, "c_latent": 4, "scale_factor": tm.STAGE_A_SCALE,
               "bottleneck_blocks": tm.VQ_CONFIGS[model].get("bottleneck_blocks", 12),
               "c_hidden": tm.VQ_CONFIGS[model].get("embed_dim", 384)}
        module, role = "modules.stage_a.StageA.decode", "stage_a"
    else:
        c = tm.UNET_CONFIGS[model]
        names = {"sample": "in.x", "timestep_ratio": "in.r", "clip_text": "in.clip_text",
                 "clip_img": "in.clip_img", "effnet": "in.effnet",
                 "clip_text_pooled": "in.clip_text_pooled" if model.startswith("stage_c") else "in.clip"}
        t = {names[k]: v for k, v in inp.items()}
        cfg = {"c_hidden": list(c["block_out_channels"]), "c_cond": c["conditioning_dim"],
               "nhead": [h or -1 for h in c["num_attention_heads"]]}
        module = "modules.stage_c.StageC" if model.startswith("stage_c") else "modules.stage_b.StageB"
        role = "stage_c" if model.startswith("stage_c") else "stage_b"
    t = {k: v.float().contiguous() for k, v in t.items()}
    t["out.y"] = y.float().contiguous().cpu()
    t["out.y_bf16"] = y_bf16.float().contiguous().cpu()
    rmax = float(t["out.y"].abs().max())
    # fp32 against fp32: a different summation order over a deep net; at
    # --precision bf16/fp16 the golden runner raises these to its own floors
    meta = {"module": module, "config": json.dumps(cfg), "rtol_l2": "0.001",
            "atol_max": "%.6g" % (0.01 * rmax), "checked_outputs": json.dumps(["out.y"]),
            "notes": "bench/torch_gpu.py: diffusers %s on %s; out.y fp32 eager, "
                     "out.y_bf16 bf16 eager (weights and activations)" % (model, a.device),
            "layout": "NCHW unless stated otherwise in notes; row-major", "seed": "7"}
    if wf:
        meta["weights"] = json.dumps({role: os.path.basename(wf)})
    path = os.path.join(a.save, model + "_torch.io.safetensors")
    tmp = path + ".part"
    try:
        save_file(t, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not wf:
        print("bench: %s: random weights: no weights file for `tests/golden/cascade-golden`" % path,
              file=sys.stderr)
    elif os.path.realpath(os.path.dirname(wf)) != os.path.realpath(a.save):
        print("bench: %s names %s, which must sit beside it: ln -s %s %s/" %
              (path, os.path.basename(wf), os.path.abspath(wf), a.save), file=sys.stderr)
    return path


def child(a):
    import torch
    import torch_models as tm
    model, dtype_name = a.models[0], a.dtypes[0]
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench: --device cuda: torch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = True   # fp32 GEMMs as any fp32 deployment runs them
    torch.backends.cudnn.allow_tf32 = True
    b = Bench(torch, a)
    rec0 = tc.base_record(torch, torch.get_num_threads())
    rec0.update({"bench": "torch_gpu", "model": model, "dtype": dtype_name, "device": a.device,
                 "gpu": torch.cuda.get_device_name() if b.cuda else None})
    t0 = time.perf_counter()
    try:
        m, dev_inp, wlabel = build(torch, tm, a, model, dtype_name)
    except Exception as e:   # a weights file that does not fit the model: one line, not a traceback
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        msg = "%s: %s" % (weights_file(a, model) or model, " ".join(lines[:2])[:300])
        print("bench: " + msg, file=sys.stderr)
        tc.emit(dict(rec0, mode="all", error=msg))
        return 1
    build_s = time.perf_counter() - t0
    if m is None:
        tc.emit(dict(rec0, mode="all", skipped="fp32 weights do not fit the free VRAM"))
        return 0
    base = base_name(model)
    if model.startswith("stage_a"):
        flops, _ = tm.vq_decode_flops(model, 1, SHAPES[base][0])
    else:
        flops, _ = tm.unet_flops(model, a.batch, SHAPES[base][0], SHAPES[base][1] or (24, 24))
    rec0.update({"weights": wlabel, "batch": dev_inp.get("sample", dev_inp.get("x")).shape[0],
                 "x_shape": list(dev_inp.get("sample", dev_inp.get("x")).shape),
                 "params": sum(p.numel() for p in m.parameters()), "gflop": round(flops / 1e9, 1),
                 "build_s": round(build_s, 1), "warmup": a.warmup, "runs": a.runs})
    core, run = forward_fns(torch, tm, a, model, m, dtype_name, dev_inp)
    rc, eager_y = 0, None
    for mode in a.modes:
        rec = dict(rec0, mode=mode)
        out = {}
        try:
            if mode == "eager":
                fn_mod = core
            else:
                torch._dynamo.reset()
                torch._dynamo.utils.counters.clear()
                fn_mod = torch.compile(core, mode=MODES[mode])
            b.reset_peak()
            first = b.call_ms(lambda: out.__setitem__("y", run(fn_mod)))
            ts = b.timed(lambda: out.__setitem__("y", run(fn_mod)), a.warmup, a.runs)
            y = out["y"].float().cpu()   # cloned off a CUDA graph's pool before the next replay
            med, best = tc.median(ts), min(ts)
            rec.update({"first_ms": round(first, 2), "times_ms": [round(t, 3) for t in ts],
                        "median_ms": round(med, 3), "min_ms": round(best, 3),
                        "tflops": float("%.4g" % (flops / med / 1e9)),
                        "tflops_best": float("%.4g" % (flops / best / 1e9)),
                        "peak_mib": round(b.peak_mib()),
                        "peak_kind": "cuda_max_allocated" if b.cuda else "process_peak_rss",
                        "out_finite": bool(torch.isfinite(y).all()),
                        "out_std": round(float(y.std()), 5)})
            if mode != "eager":
                rec["compile_s"] = round((first - med) / 1e3, 1)
                c = torch._dynamo.utils.counters   # >1 graph: breaks or recompiles in the timed calls
                rec["dynamo_graphs"] = c["stats"].get("unique_graphs", 0)
                rec["graph_breaks"] = sum(c["graph_break"].values())
            if mode == "eager":
                eager_y = y
            elif eager_y is not None:
                d = (y - eager_y).norm() / eager_y.norm().clamp_min(1e-30)
                rec["rel_l2_vs_eager"] = float("%.3g" % float(d))
        except Exception as e:  # one mode failing (OOM, compiler) leaves the others to run
            rec["error"] = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:300]
            rc = 1
        finally:
            out.clear()
            if b.cuda:
                torch.cuda.empty_cache()
        tc.emit(rec)
    if a.save and dtype_name == "bf16" and eager_y is not None:
        rc |= save_reference(torch, a, model, m, lambda: run(core), dev_inp, eager_y,
                             dict(rec0, mode="save"))
    return rc


def save_reference(torch, a, model, m, forward, dev_inp, y_bf16, rec):
    """The fp32 forward on the same (bf16-valued) weights and inputs, then the case file."""
    try:
        torch._dynamo.reset()
        import torch_models as tm
        m.float()                       # in place: bf16 -> fp32 is exact
        wf = weights_file(a, model)
        if wf:                          # an F32 file: its own values, not the bf16-rounded ones
            tm.load_official(m, wf, model)
        for k in dev_inp:
            dev_inp[k] = dev_inp[k].float()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        y = forward().float().cpu()
        d = (y_bf16 - y).norm() / y.norm().clamp_min(1e-30)
        rec["rel_l2_bf16_vs_fp32"] = float("%.3g" % float(d))
        rec["saved"] = save_case(a, model, {k: v.cpu() for k, v in dev_inp.items()}, y, y_bf16, wf)
        ok = 0
    except Exception as e:
        rec["error"] = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:300]
        ok = 1
    tc.emit(rec)
    return ok


# ---- the parent: one child per (model, dtype), then the table -------------

def table(recs):
    lines = ["| model | dtype | mode | GPU | first call s | compile s | median ms | min ms | "
             "TFLOP/s | peak MiB | vs eager |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    eager = {(r["model"], r["dtype"]): r.get("median_ms") for r in recs if r.get("mode") == "eager"}
    for r in recs:
        if "median_ms" not in r:
            why = r.get("error") or r.get("skipped") or "?"
            if "saved" in r:
                why = "saved %s (torch bf16 vs fp32: rel_l2 %s)" % (
                    os.path.basename(r["saved"]), r.get("rel_l2_bf16_vs_fp32"))
            lines.append("| %s | %s | %s | | | | %s | | | | |" % (r.get("model"), r.get("dtype"),
                                                                   r.get("mode"), why[:100]))
            continue
        e = eager.get((r["model"], r["dtype"]))
        lines.append("| %s | %s | %s | %s | %.1f | %s | %.2f | %.2f | %.3g | %d | %s |" % (
            r["model"], r["dtype"], r["mode"], (r.get("gpu") or r["device"]).replace("NVIDIA ", ""),
            r["first_ms"] / 1e3, r.get("compile_s", ""), r["median_ms"], r["min_ms"], r["tflops"],
            r["peak_mib"], "%.2fx" % (e / r["median_ms"]) if e else ""))
    return "\n".join(lines)


def main():
    a = parse()
    if a.device == "cpu" and a.threads:
        tc.set_threads_env(a.threads)
    if a.wheels:
        used = tc.use_wheels(a.wheels)
        if used and not a.child:
            print("bench: from %s: %s" % (a.wheels, " ".join(used)), file=sys.stderr)
    if not a.wheels:
        tc.ensure_venv()   # may re-execute under the benchmark venv
    if a.child:
        sys.exit(child(a))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    recs, rc = [], 0
    try:
        for m in a.models:
            for d in a.dtypes:
                argv = [sys.executable, os.path.abspath(__file__), "--child", "--models", m,
                        "--dtypes", d, "--modes", ",".join(a.modes), "--device", a.device,
                        "--size", a.size]
                for k in ("batch", "warmup", "runs", "seed", "threads", "weights_dir", "wheels", "save"):
                    v = getattr(a, k)
                    if v is not None:
                        argv += ["--" + k.replace("_", "-"), str(v)]
                n0 = len(recs)
                p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
                for line in p.stdout:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    if line.startswith("{"):
                        recs.append(json.loads(line))
                crc = p.wait()
                if crc:
                    rc = 1
                    if crc < 0 or crc >= 128 or len(recs) == n0:
                        recs.append({"model": m, "dtype": d, "mode": "all",
                                     "error": "child exit status %d (its stderr says why)" % crc})
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
    print()
    print(table(recs))
    sys.exit(rc)


if __name__ == "__main__":
    main()
