#!/usr/bin/env python3
"""One Stage C training step with the official code, as golden cases for the
`train_step` module of tests/golden/cascade-golden (doc/training.md §5).

The step is train/train_c.py's forward_pass + backward_pass (official repo
github:Stability-AI/StableCascade at 7a7d341, gdf/ and modules/stage_c.py
imported unmodified), which kohya's stable_cascade_train_stage_c.py repeats
with its own copy of gdf:

    noised, noise, target, logSNR, noise_cond, loss_weight = gdf.diffuse(x0, shift=1, loss_shift=1)
    pred = StageC(noised, noise_cond, clip_text, clip_text_pooled, clip_img)
    loss = mse(pred, target, reduction='none').mean([1, 2, 3])
    loss_adjusted = (loss * loss_weight).mean() / grad_accum_steps
    AdaptiveLossWeight: update_buckets(logSNR, loss)
    loss_adjusted.backward(); clip_grad_norm_(params, max_grad_norm); optimizer.step()

The random draws are recorded: torch.manual_seed(seed), then diffuse's own
order, epsilon = randn_like(x0) first, then t = (1 - rand(B)) + 0.001
clamped to [0.001, 1] (CosineSchedule.schedule). The script checks that
diffuse with those draws (t=None, epsilon=None) gives the same noised input.

Cases (tests/data/train/<name>.io.safetensors, golden format of
../shared/golden/README.md; weights: the golden stage_c_tiny file):
  adafactor_adaptive  the seed recipe: Adafactor (scale_parameter=False,
                      relative_step=False, warmup_init=False), AdaptiveLossWeight
                      with a non-trivial bucket state, clip_img zeros (kohya)
  adamw_p2            torch AdamW (weight_decay 0.01), P2LossWeight, a CLIP
                      image embedding (the official path), grad_accum_steps 2

Both cases use lr 1e-3 (the seed's is 1e-4): one update then moves a weight
by ~lr, and at 1e-4 that is about the float32 noise floor of the comparison.

Inputs in.x0, in.noise (NCHW), in.t [B], in.clip_text, in.clip_text_pooled,
optional in.clip_img, optional in.bucket_losses [300] (absent: ones, a fresh
AdaptiveLossWeight). Outputs: out.logsnr, out.r (noise_cond), out.loss_weight,
out.eps (the prediction, NCHW), out.loss [B], out.loss_adjusted [1],
out.grad_norm [1] (before clipping), out.g.<key> (dL/dw of loss_adjusted,
before clipping), out.w.<key> (after the step), out.dw.<key> (w after - w
before) and, adaptive only, out.bucket_losses.

Every output is computed twice, in float32 and in float64 (model, inputs,
optimizer .double()); the float64 result is stored and the tolerance of each
output is the golden rule: rtol_l2 = max(1e-4, 20 x fp32-vs-fp64 rel_l2),
atol_max = max(20 x fp32-vs-fp64 max_abs, 1e-4 x max|ref|). The noise
embedding is evaluated in float32 in both runs (as tests/ref/grad_blocks_ref.py
does), from r rounded to float32: in float64 its sin/cos of arguments up to
1e4 rad would differ by ~7e-5 by themselves.

  /work/venv-train/bin/python tests/ref/train_step_ref.py --upstream DIR --golden ../shared/golden
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers.optimization import Adafactor

ap = argparse.ArgumentParser()
ap.add_argument("--upstream", required=True, help="export of the official repo (modules/, gdf/)")
ap.add_argument("--golden", required=True, help="folder with stage_c_tiny.weights.safetensors")
ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "train"))
args = ap.parse_args()

pkg = tempfile.mkdtemp()
os.makedirs(os.path.join(pkg, "scmod"))
for f in ("common.py", "stage_c.py"):
    shutil.copy(os.path.join(args.upstream, "modules", f), os.path.join(pkg, "scmod", f))
open(os.path.join(pkg, "scmod", "__init__.py"), "w").close()
with open(os.path.join(pkg, "scmod", "controlnet.py"), "w") as fh:   # imports kornia etc.; unused with cnet=None
    fh.write("class ControlNetDeliverer:\n    pass\n")
shutil.copytree(os.path.join(args.upstream, "gdf"), os.path.join(pkg, "gdf"))
sys.path.insert(0, pkg)
from gdf import GDF, AdaptiveLossWeight, CosineSchedule, CosineTNoiseCond, EpsilonTarget, P2LossWeight, VPScaler  # noqa: E402
from scmod.stage_c import StageC  # noqa: E402

WF = "stage_c_tiny.weights.safetensors"
with safe_open(os.path.join(args.golden, WF), "pt") as fh:
    CFG = json.loads(fh.metadata()["config"])
WEIGHTS = {k: v.to(torch.float64) for k, v in load_file(os.path.join(args.golden, WF)).items()}
model = StageC(**CFG)
model.load_state_dict(WEIGHTS)
model.train()   # dropout 0 in this config

ORIG_FLOAT = torch.Tensor.float


def emb32(r, **kw):
    cur = torch.Tensor.float
    torch.Tensor.float = ORIG_FLOAT
    try:
        return StageC.gen_r_embedding(model, r.to(torch.float32), **kw).to(r.dtype)
    finally:
        torch.Tensor.float = cur


model.gen_r_embedding = emb32

CHOSEN = [
    "clf.1.weight", "clf.1.bias", "embedding.1.weight", "clip_txt_mapper.weight", "clip_img_mapper.bias",
    "down_blocks.0.0.depthwise.weight", "down_blocks.0.0.channelwise.2.gamma", "down_blocks.0.1.mapper.weight",
    "down_blocks.0.2.attention.attn.in_proj_weight", "down_blocks.0.2.kv_mapper.1.bias",
    "up_blocks.1.0.depthwise.bias", "up_blocks.1.5.attention.attn.out_proj.bias",
]
# Not in_proj_bias: its k rows get an exact-zero gradient (softmax ignores a
# constant per query), so float32 rounding alone decides the sign of
# Adafactor's first update there (measured: 69 % of the dw tensor).


def make_gdf(adaptive):
    return GDF(schedule=CosineSchedule(clamp_range=[0.0001, 0.9999]), input_scaler=VPScaler(),
               target=EpsilonTarget(), noise_cond=CosineTNoiseCond(),
               loss_weight=AdaptiveLossWeight() if adaptive else P2LossWeight())


def step(dt, inp, cfg):
    """the official step in dtype dt; returns the outputs by name"""
    model.to(dt)
    model.load_state_dict({k: v.to(dt) for k, v in WEIGHTS.items()})
    model.zero_grad(set_to_none=True)
    params = dict(model.named_parameters())
    before = {k: params[k].detach().clone() for k in CHOSEN}
    gdf = make_gdf(cfg["loss_weight"] == "adaptive")
    if cfg["loss_weight"] == "adaptive":   # the same values in dt (searchsorted and index_put want one dtype)
        lw = gdf.loss_weight
        lw.bucket_ranges = lw.bucket_ranges.to(dt)
        lw.bucket_losses = inp.get("in.bucket_losses", lw.bucket_losses).clone().to(dt)
    x0, noise, t = inp["in.x0"].to(dt), inp["in.noise"].to(dt), inp["in.t"].to(dt)
    noised, _, target, logSNR, noise_cond, loss_weight = gdf.diffuse(x0, epsilon=noise, t=t, shift=1, loss_shift=1)
    clip_img = inp.get("in.clip_img", torch.zeros(x0.shape[0], 1, CFG["c_clip_img"], dtype=torch.float64))
    pred = model(noised, noise_cond, inp["in.clip_text"].to(dt), inp["in.clip_text_pooled"].to(dt), clip_img.to(dt))
    loss = torch.nn.functional.mse_loss(pred, target, reduction="none").mean(dim=[1, 2, 3])
    loss_adjusted = (loss * loss_weight).mean() / cfg["grad_accum_steps"]
    if cfg["loss_weight"] == "adaptive":
        gdf.loss_weight.update_buckets(logSNR, loss)
    loss_adjusted.backward()
    grads = {k: params[k].grad.detach().clone() for k in CHOSEN}
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"])
    a = cfg["optimizer_args"]
    if cfg["optimizer"] == "adafactor":
        opt = Adafactor(model.parameters(), lr=cfg["lr"], scale_parameter=a["scale_parameter"],
                        relative_step=a["relative_step"], warmup_init=a["warmup_init"])
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=tuple(a["betas"]), eps=a["eps"],
                                weight_decay=a["weight_decay"])
    opt.step()
    r = {"out.logsnr": logSNR, "out.r": noise_cond, "out.loss_weight": loss_weight, "out.eps": pred,
         "out.loss": loss, "out.loss_adjusted": loss_adjusted.reshape(1), "out.grad_norm": gn.reshape(1)}
    for k in CHOSEN:
        r[f"out.g.{k}"] = grads[k]
        r[f"out.w.{k}"] = params[k].detach().clone()
        r[f"out.dw.{k}"] = params[k].detach() - before[k]
    if cfg["loss_weight"] == "adaptive":
        r["out.bucket_losses"] = gdf.loss_weight.bucket_losses.clone()
    return {k: v.detach() for k, v in r.items()}


def twice(inp, cfg):
    keep = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self.double()
    try:
        r64 = step(torch.float64, inp, cfg)
    finally:
        torch.Tensor.float = keep
    r32 = step(torch.float32, inp, cfg)
    meas = {}
    for k, v in r64.items():
        d = (r32[k].double() - v).abs()
        meas[k] = {"rel_l2": float(d.norm() / v.norm().clamp_min(1e-300)), "max_abs": float(d.max()),
                   "ref_max": float(v.abs().max()), "ref_rms": float(v.pow(2).mean().sqrt())}
    return r64, meas


def draws(seed, B, h, w):
    """the official draw order (gdf.diffuse with epsilon=None, t=None)"""
    torch.manual_seed(seed)
    noise = torch.randn(B, CFG["c_in"], h, w)
    t = (1 - torch.rand(B)).add(0.001).clamp(0.001, 1.0)
    return noise, t


def case(name, seed, cfg, B=2, h=6, w=5, Lt=8, clip_img=False, buckets=False):
    torch.manual_seed(seed + 1000)
    inp = {
        "in.x0": torch.randn(B, CFG["c_in"], h, w),
        "in.clip_text": torch.randn(B, Lt, CFG["c_clip_text"]),
        "in.clip_text_pooled": torch.randn(B, 1, CFG["c_clip_text_pooled"]),
    }
    if clip_img:
        inp["in.clip_img"] = torch.randn(B, 1, CFG["c_clip_img"])
    if buckets:   # a trained-looking state: every bucket's loss in [0.2, 2]
        inp["in.bucket_losses"] = 0.2 + 1.8 * torch.rand(300)
    inp["in.noise"], inp["in.t"] = draws(seed, B, h, w)
    # diffuse's own draws from the same seed give the same noised input
    gdf = make_gdf(False)
    torch.manual_seed(seed)
    noised, *_ = gdf.diffuse(inp["in.x0"], shift=1, loss_shift=1)
    noised2, *_ = gdf.diffuse(inp["in.x0"], epsilon=inp["in.noise"], t=inp["in.t"], shift=1, loss_shift=1)
    assert torch.equal(noised, noised2), "the recorded draws are not diffuse's"
    cfg = dict(cfg, draw_seed=seed)
    res, meas = twice(inp, cfg)
    tol = {}
    for k, m in meas.items():
        tol[k] = {"rtol_l2": max(1e-4, 20 * m["rel_l2"]), "atol_max": max(20 * m["max_abs"], 1e-4 * m["ref_max"])}
    # the draw helper: torch's generator reproduced (doc/reference.md: ~1e-6)
    tol["in.noise"] = {"rtol_l2": 1e-6, "atol_max": 1e-5}
    tol["in.t"] = {"rtol_l2": 1e-7, "atol_max": 1e-7}
    checked = sorted(res)   # every output gates the verdict
    out = {k: v.contiguous() for k, v in inp.items()}
    out.update({k: v.to(torch.float32).contiguous() for k, v in res.items()})
    md = {
        "module": "train_step",
        "config": json.dumps(cfg),
        "optimizer": cfg["optimizer"], "optimizer_args": json.dumps(cfg["optimizer_args"]),
        "lr": str(cfg["lr"]), "loss_weight": cfg["loss_weight"],
        "rtol_l2": str(max(tol[k]["rtol_l2"] for k in checked)),
        "atol_max": str(max(tol[k]["atol_max"] for k in checked)),
        "tolerances": json.dumps(tol), "checked_outputs": json.dumps(checked), "fp32_vs_fp64": json.dumps(meas),
        "weights": json.dumps({"stage_c": WF}), "seed": str(seed), "layout": "NCHW",
        "notes": "one training step of train/train_c.py (gdf + StageC @7a7d341) on the golden tiny Stage C; "
                 "float64 reference, noise embedding in float32; tests/ref/train_step_ref.py",
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{name}.io.safetensors")
    save_file(out, path, metadata=md)
    worst = max(meas[k]["rel_l2"] for k in checked)
    print(f"{name}: {os.path.getsize(path)} bytes, loss {res['out.loss'].tolist()}, "
          f"grad_norm {float(res['out.grad_norm']):.4g}, worst checked fp32 rel_l2 {worst:.3g}")
    for k in sorted(meas):
        print(f"  {k}: rel_l2 {meas[k]['rel_l2']:.3g} max_abs {meas[k]['max_abs']:.3g}")


case("adafactor_adaptive", 1301,
     {"optimizer": "adafactor", "lr": 1e-3,
      "optimizer_args": {"scale_parameter": False, "relative_step": False, "warmup_init": False},
      "loss_weight": "adaptive", "grad_accum_steps": 1, "max_grad_norm": 1.0}, buckets=True)
case("adamw_p2", 1302,
     {"optimizer": "adamw", "lr": 1e-3,
      "optimizer_args": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
      "loss_weight": "p2", "grad_accum_steps": 2, "max_grad_norm": 1.0}, clip_img=True)
