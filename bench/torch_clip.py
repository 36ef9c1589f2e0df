#!/usr/bin/env python3
"""PyTorch CPU reference timing of the CLIP-G text encoder.

transformers CLIPTextModelWithProjection with the stable-cascade text_encoder
config (hidden 1280, intermediate 5120, 32 layers, 20 heads, projection 1280,
erf GELU), random weights, 2 prompts x 77 tokens (a prompt and "", the CFG
pair) with the attention mask, tokenised with shared/tokenizer.  Returns
hidden_states[-1] and text_embeds as Stable Cascade uses them.  Each dtype runs
in its own process; one JSON line per measurement.

  bench/torch_clip.py [--dtype fp32,bf16] [--threads 2] [--runs 5] [--weights FILE]
"""
import argparse
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common as tc  # noqa: E402  (stdlib only)

PROMPT = "an astronaut riding a green horse on the moon, highly detailed photograph"


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--dtype", default="fp32,bf16", help="comma list of fp32, bf16, bf16-autocast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--tokenizer", default=os.path.join(tc.SHARED, "tokenizer"))
    ap.add_argument("--weights", default=None, help="HF-layout text_encoder safetensors")
    return ap.parse_args()


def tokenizer(folder):
    from transformers import CLIPTokenizer
    return CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                         model_max_length=77)


def measure(a, dtype_name):
    import torch
    import torch_models as tm
    torch.set_num_threads(a.threads)
    tok = tokenizer(a.tokenizer)
    enc = tok([a.prompt, ""], padding="max_length", max_length=77, truncation=True,
              return_tensors="pt")
    wdt = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    t0 = time.perf_counter()
    model = tm.build_clip_g(a.seed, wdt, fill=not a.weights)
    if a.weights:
        tm.load_official(model, a.weights, "text_encoder")
    build_s = time.perf_counter() - t0
    rss_model = tc.current_rss_mib()
    out = {}

    def fwd():
        with torch.inference_mode():
            if dtype_name == "bf16-autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    o = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                              output_hidden_states=True)
            else:
                o = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                          output_hidden_states=True)
            out["h"], out["p"] = o.hidden_states[-1], o.text_embeds

    cpu = []
    ts = tc.time_runs(fwd, a.warmup, a.runs, cpu)
    # The HF mask code calls .item(), so count on the real model (one extra pass).
    flops, per_op = tc.flops_of(torch, fwd)
    med = tc.median(ts)
    h, p = out["h"].float(), out["p"].float()
    rec = tc.base_record(torch, a.threads)
    rec.update({
        "bench": "torch_clip", "model": "clip_g_text", "dtype": dtype_name,
        "batch": 2, "tokens": 77, "real_tokens": enc.attention_mask.sum(1).tolist(),
        "params": sum(q.numel() for q in model.parameters()),
        "weights": a.weights or "random(seed=%d)" % a.seed,
        "attn_impl": getattr(model.config, "_attn_implementation", None),
        "warmup": a.warmup, "runs": a.runs,
        "times_s": [round(t, 4) for t in ts], "median_s": round(med, 4),
        "cpu_s": [round(t, 3) for t in cpu],
        "min_s": round(min(ts), 4),
        "gflop": round(flops / 1e9, 1), "gflops_per_s": round(flops / 1e9 / med, 1),
        "gflops_per_s_best": round(flops / 1e9 / min(ts), 1),
        "flops_by_op_g": {k: round(v / 1e9, 2) for k, v in per_op.items()},
        "build_s": round(build_s, 1), "rss_after_build_mib": round(rss_model),
        "peak_rss_mib": round(tc.peak_rss_mib()),
        "out_finite": bool(torch.isfinite(h).all() and torch.isfinite(p).all()),
        "hidden_shape": list(h.shape), "pooled_shape": list(p.shape),
    })
    tc.emit(rec)


def main():
    a = parse()
    dtypes = [d for d in a.dtype.split(",") if d]
    if len(dtypes) == 1:
        tc.set_threads_env(a.threads)
        tc.ensure_venv()
        measure(a, dtypes[0])
        return
    tc.ensure_venv()
    rc = 0
    for d in dtypes:
        argv = [sys.executable, os.path.abspath(__file__), "--dtype", d]
        for k in ("threads", "warmup", "runs", "seed", "prompt", "tokenizer", "weights"):
            if getattr(a, k) is not None:
                argv += ["--" + k, str(getattr(a, k))]
        rc |= subprocess.call(argv)
    sys.exit(rc)


if __name__ == "__main__":
    main()
