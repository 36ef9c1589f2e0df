#!/usr/bin/env python3
"""PyTorch side of bench/clip: CLIP-G text encoder, 2 prompts x 77 tokens.

Same work as bench_clip (C): CLIPTextModelWithProjection with the Stable
Cascade config and random weights (bench/torch_models.build_clip_g), the
prompt/"" pair with the attention mask, outputs hidden_states[-1] and
text_embeds. Reports wall time AND process CPU time per forward: on a shared
machine the CPU time is the comparable number. One JSON line.

  bench/clip/torch_clip.py [--dtype fp32|bf16] [--threads 1] [--runs 3]
"""
import argparse
import os
import sys
import time

sys.dont_write_bytecode = True
BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH)
import torch_common as tc  # noqa: E402  (stdlib only)

PROMPT = "an astronaut riding a green horse on the moon, highly detailed photograph"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokenizer", default=os.path.join(tc.SHARED, "tokenizer"))
    a = ap.parse_args()
    tc.set_threads_env(a.threads)
    tc.ensure_venv()
    import torch
    import torch_models as tm
    from transformers import CLIPTokenizer
    torch.set_num_threads(a.threads)
    tok = CLIPTokenizer(os.path.join(a.tokenizer, "vocab.json"),
                        os.path.join(a.tokenizer, "merges.txt"), model_max_length=77)
    enc = tok([PROMPT, ""], padding="max_length", max_length=77, truncation=True,
              return_tensors="pt")
    t0 = time.perf_counter()
    model = tm.build_clip_g(1234, torch.bfloat16 if a.dtype == "bf16" else torch.float32)
    build_s = time.perf_counter() - t0

    def fwd():
        with torch.inference_mode():
            o = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                      output_hidden_states=True)
            return o.hidden_states[-1], o.text_embeds

    for _ in range(a.warmup):
        fwd()
    wall, cpu = [], 0.0
    for _ in range(a.runs):
        w0, c0 = time.perf_counter(), time.process_time()
        h, p = fwd()
        wall.append(time.perf_counter() - w0)
        cpu += time.process_time() - c0
    rec = tc.base_record(torch, a.threads)
    rec.update({
        "bench": "torch_clip_cpu", "model": "clip_g_text", "dtype": a.dtype, "batch": 2,
        "tokens": 77, "attn_impl": getattr(model.config, "_attn_implementation", None),
        "build_s": round(build_s, 1), "warmup": a.warmup, "runs": a.runs,
        "times_s": [round(t, 4) for t in wall], "median_s": round(tc.median(wall), 4),
        "min_s": round(min(wall), 4), "cpu_s_per_run": round(cpu / a.runs, 4),
        "peak_rss_mib": round(tc.peak_rss_mib()),
        "out_finite": bool(torch.isfinite(h.float()).all() and torch.isfinite(p.float()).all()),
    })
    tc.emit(rec)


if __name__ == "__main__":
    main()
