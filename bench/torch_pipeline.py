#!/usr/bin/env python3
"""PyTorch CPU reference timing of the whole diffusers Stable Cascade pipeline.

StableCascadePriorPipeline (CLIP-G text encoder + Stage C lite) followed by
StableCascadeDecoderPipeline (Stage B lite + PaellaVQModel Stage A), all with
random weights (the image is noise), tokenizer built from shared/tokenizer.
Times the text encoder, every Stage C / Stage B step and the Stage A decode
through forward hooks, plus the wall time of each pipeline call.

Defaults follow the official settings: prior 20 steps, guidance 4 (batch 2
per step); decoder 10 steps, guidance 1.1 (batch 2 per step; diffusers'
own default is 0.0 = no CFG, batch 1: pass --decoder-guidance 0 for that).
With fewer steps than the defaults the record also gives an estimate for the
default step counts = measured non-step time + median step time x default
steps ("extrapolated": true).  The prior UNet is freed before the decoder is
built (text encoder kept), so peak RSS is max(CLIP+C, CLIP+B+A) + activations.

  bench/torch_pipeline.py [--size 512,1024] [--prior-steps 20] [--decoder-steps 10]
                          [--threads 2] [--dtype fp32|bf16]
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
DEFAULT_PRIOR_STEPS, DEFAULT_DECODER_STEPS = 20, 10


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--size", default="512,1024", help="comma list of square image sizes")
    ap.add_argument("--prior-steps", type=int, default=DEFAULT_PRIOR_STEPS)
    ap.add_argument("--decoder-steps", type=int, default=DEFAULT_DECODER_STEPS)
    ap.add_argument("--prior-guidance", type=float, default=4.0)
    ap.add_argument("--decoder-guidance", type=float, default=1.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--tokenizer", default=os.path.join(tc.SHARED, "tokenizer"))
    return ap.parse_args()


class Timer:
    """Wall and process-CPU time of every forward() of the modules it watches.

    CPU time / threads approximates the wall time on an otherwise idle
    machine when other processes compete for the cores.
    """

    def __init__(self):
        self.calls = {}
        self.cpu = {}
        self._t0 = {}

    def _start(self, name):
        self._t0[name] = (time.perf_counter(), time.process_time())

    def _stop(self, name):
        w, c = self._t0[name]
        self.calls.setdefault(name, []).append(time.perf_counter() - w)
        self.cpu.setdefault(name, []).append(time.process_time() - c)

    def watch(self, name, module):
        module.register_forward_pre_hook(lambda *_: self._start(name))
        module.register_forward_hook(lambda *_: self._stop(name))

    def wrap(self, name, fn):
        def timed(*args, **kw):
            self._start(name)
            r = fn(*args, **kw)
            self._stop(name)
            return r
        return timed


def run(a, size):
    import torch
    import torch_models as tm
    from diffusers import (DDPMWuerstchenScheduler, StableCascadeDecoderPipeline,
                           StableCascadePriorPipeline)
    from transformers import CLIPTokenizer
    torch.set_num_threads(a.threads)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    tok = CLIPTokenizer(os.path.join(a.tokenizer, "vocab.json"),
                        os.path.join(a.tokenizer, "merges.txt"), model_max_length=77)
    timer = Timer()
    t0 = time.perf_counter()
    te = tm.build_clip_g(a.seed, dt)
    prior = tm.build_unet("stage_c_lite", a.seed, dt)
    build_prior_s = time.perf_counter() - t0
    timer.watch("text_encoder", te)
    timer.watch("stage_c", prior)
    pp = StableCascadePriorPipeline(tokenizer=tok, text_encoder=te, prior=prior,
                                    scheduler=DDPMWuerstchenScheduler())
    pp.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(a.seed)
    t0 = time.perf_counter()
    with torch.inference_mode():
        po = pp(prompt=a.prompt, negative_prompt="", height=size, width=size,
                num_inference_steps=a.prior_steps, guidance_scale=a.prior_guidance,
                generator=gen, output_type="pt")
    prior_wall = time.perf_counter() - t0
    emb = po.image_embeddings
    del pp, prior
    timer_prior = dict(timer.calls)

    t0 = time.perf_counter()
    decoder = tm.build_unet("stage_b_lite", a.seed, dt)
    vq = tm.build_vqgan(a.seed, dt)
    build_decoder_s = time.perf_counter() - t0
    timer.watch("stage_b", decoder)
    vq.decode = timer.wrap("stage_a", vq.decode)
    dp = StableCascadeDecoderPipeline(decoder=decoder, tokenizer=tok, text_encoder=te,
                                      scheduler=DDPMWuerstchenScheduler(), vqgan=vq)
    dp.set_progress_bar_config(disable=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        img = dp(image_embeddings=emb, prompt_embeds=po.prompt_embeds,
                 prompt_embeds_pooled=po.prompt_embeds_pooled,
                 negative_prompt_embeds=po.negative_prompt_embeds,
                 negative_prompt_embeds_pooled=po.negative_prompt_embeds_pooled,
                 num_inference_steps=a.decoder_steps, guidance_scale=a.decoder_guidance,
                 generator=gen, output_type="pt").images
    decoder_wall = time.perf_counter() - t0

    c = timer.calls
    clip_s = sum(timer_prior.get("text_encoder", []))
    c_steps, b_steps = c.get("stage_c", []), c.get("stage_b", [])
    a_s = sum(c.get("stage_a", []))
    c_med, b_med = tc.median(c_steps), tc.median(b_steps)
    total = prior_wall + decoder_wall
    other = total - clip_s - sum(c_steps) - sum(b_steps) - a_s
    est = clip_s + c_med * DEFAULT_PRIOR_STEPS + b_med * DEFAULT_DECODER_STEPS + a_s + other
    extrap = a.prior_steps != DEFAULT_PRIOR_STEPS or a.decoder_steps != DEFAULT_DECODER_STEPS
    rec = tc.base_record(torch, a.threads)
    rec.update({
        "bench": "torch_pipeline", "size": size, "dtype": a.dtype,
        "models": "clip_g + stage_c_lite + stage_b_lite + paella_vq (random weights)",
        "prior_steps": a.prior_steps, "decoder_steps": a.decoder_steps,
        "prior_guidance": a.prior_guidance, "decoder_guidance": a.decoder_guidance,
        "stage_c_latent": list(emb.shape), "image": list(img.shape),
        "text_encoder_calls_s": [round(t, 3) for t in timer_prior.get("text_encoder", [])],
        "stage_c_steps_s": [round(t, 3) for t in c_steps], "stage_c_step_median_s": round(c_med, 3),
        "stage_b_steps_s": [round(t, 3) for t in b_steps], "stage_b_step_median_s": round(b_med, 3),
        "stage_a_s": round(a_s, 3), "other_s": round(other, 3),
        "cpu_s": {k: [round(t, 2) for t in v] for k, v in timer.cpu.items()},
        "prior_wall_s": round(prior_wall, 2), "decoder_wall_s": round(decoder_wall, 2),
        "total_s": round(total, 2),
        "extrapolated": extrap,
        "est_total_default_steps_s": round(est, 1),
        "est_stage_c_default_steps_s": round(c_med * DEFAULT_PRIOR_STEPS, 1),
        "est_stage_b_default_steps_s": round(b_med * DEFAULT_DECODER_STEPS, 1),
        "build_prior_s": round(build_prior_s, 1), "build_decoder_s": round(build_decoder_s, 1),
        "peak_rss_mib": round(tc.peak_rss_mib()),
        "process_cpu_s": round(time.process_time(), 1),
        "image_finite": bool(torch.isfinite(img.float()).all()),
    })
    tc.emit(rec)


def main():
    a = parse()
    sizes = [int(s) for s in a.size.split(",") if s]
    if len(sizes) == 1:
        tc.set_threads_env(a.threads)
        tc.ensure_venv()
        run(a, sizes[0])
        return
    tc.ensure_venv()
    rc = 0
    for s in sizes:  # one process per size: separate peak RSS
        argv = [sys.executable, os.path.abspath(__file__), "--size", str(s)]
        for k in ("prior_steps", "decoder_steps", "prior_guidance", "decoder_guidance",
                  "threads", "dtype", "seed", "prompt", "tokenizer"):
            argv += ["--" + k.replace("_", "-"), str(getattr(a, k))]
        rc |= subprocess.call(argv)
    sys.exit(rc)


if __name__ == "__main__":
    main()
