#!/usr/bin/env python3
"""Writes tests/data/img2img/img2img_tiny.io.safetensors: the official
image-to-image start and Stage C sampling (doc/reference.md) run with the
official GDF code, for `tests/golden/cascade-golden` (module "img2img", see
tests/data/img2img/README.md for the metadata the runner reads).

    image [1,3,H,W] in [0,1] -> ImageNet normalisation -> EfficientNetEncoder
    -> latent; x_init, eps = GDF.diffuse(latent repeated N times, t = strength,
    shift 1)  (the notebook's call: eps = torch.randn_like, the first draw);
    GDF.sample(StageC, x_init, t_start = strength,
               timesteps = int(20 * strength), cfg 4, shift 2, DDPM)

All draws come from torch's global CPU generator seeded with --seed right
before diffuse, in the official order (diffuse's eps, then one DDPM draw per
step, no init draw): cascade's generator with the same seed gives the same
stream, which the runner checks. The networks are the shared tiny golden
weights: effnet_slim (torchvision efficientnet_v2_s features with per-stage
layers [1,2,1,2,1,1]) and stage_c_tiny, with conditioning as an image
variation run has it (clip_img a token for the conditional half, zeros for
the unconditional one), so the case covers both image modes together.

Tolerances as ../shared/golden/README.md sets them: the case is run again in
float64 on the same inputs and recorded draws; forward outputs (the latent,
x_init) get max(1e-4, 20x) and the sampled ones max(1e-3, 50x) the measured
float32-vs-float64 error.

Usage (torch, torchvision, safetensors in a venv; nothing is downloaded):
    git clone <StableCascade> /tmp/sc   # or: git --git-dir=<mirror> archive HEAD gdf modules | tar -x -C /tmp/sc
    python tests/ref/make_img2img_case.py --repo /tmp/sc --golden ../shared/golden \
        --out tests/data/img2img/img2img_tiny.io.safetensors
"""
import argparse
import functools
import json
import os
import sys
import types

import torch
import torchvision
from safetensors.torch import load_file, save_file

ap = argparse.ArgumentParser()
ap.add_argument("--repo", required=True, help="a StableCascade checkout (gdf/ and modules/)")
ap.add_argument("--golden", required=True, help="../shared/golden (stage_c_tiny, effnet_slim, cases.json)")
ap.add_argument("--out", required=True)
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--strength", type=float, default=0.35)   # int(20 * 0.35) = 7 in double (6 in float)
ap.add_argument("--batch", type=int, default=2)
ap.add_argument("--latent", type=int, default=6)          # Stage C latent side; image = 32x that
args = ap.parse_args()

sys.path.insert(0, args.repo)
# modules/__init__ pulls in the ControlNet filters (kornia, cv2, insightface):
# load stage_c and effnet alone with a stand-in for ControlNetDeliverer.
pkg = types.ModuleType("modules")
pkg.__path__ = [os.path.join(args.repo, "modules")]
sys.modules["modules"] = pkg
cn = types.ModuleType("modules.controlnet")
cn.ControlNetDeliverer = object
sys.modules["modules.controlnet"] = cn
import importlib
stage_c_mod = importlib.import_module("modules.stage_c")
effnet_mod = importlib.import_module("modules.effnet")
import gdf as gdf_mod

torch.set_grad_enabled(False)
T, CFG, SHIFT, RHO = 20, 4.0, 2.0, 0.7   # the notebook's Stage C settings
S, N, h = args.strength, args.batch, args.latent
steps = int(T * S)

# the tiny Stage C's constructor arguments, as the shared sampling_c case has them
model_cfg = json.load(open(os.path.join(args.golden, "cases.json")))["cases"]["sampling_c"]["config"]["model"]


def slim_effnet(weights=None):
    """torchvision efficientnet_v2_s with the slim per-stage layer counts"""
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
    setting, last = _efficientnet_conf("efficientnet_v2_s")
    for s, n in zip(setting, [1, 2, 1, 2, 1, 1]):
        s.num_layers = n
    return EfficientNet(setting, 0.2, last_channel=last,
                        norm_layer=functools.partial(torch.nn.BatchNorm2d, eps=1e-03))


effnet_mod.torchvision.models.efficientnet_v2_s = slim_effnet


def load(m, name):
    sd = {k: v.float() for k, v in load_file(os.path.join(args.golden, name)).items()}
    m.load_state_dict(sd, strict=True)
    return m.eval()


# inputs from their own generator, so the global one starts at diffuse
g = torch.Generator().manual_seed(1234)
low = torch.rand(1, 3, 6, 6, generator=g)
image = torch.nn.functional.interpolate(low, size=(32 * h, 32 * h), mode="bicubic", align_corners=False)
image = (image + 0.05 * torch.rand(image.shape, generator=g)).clamp(0, 1).half().float()  # stored as F16
L, Ct, Cp, Ci = 8, model_cfg["c_clip_text"], model_cfg["c_clip_text_pooled"], model_cfg["c_clip_img"]
cond = {"clip_text": torch.randn(N, L, Ct, generator=g), "clip_text_pooled": torch.randn(N, 1, Cp, generator=g),
        "clip_img": torch.randn(N, 1, Ci, generator=g)}
uncond = {"clip_text": torch.randn(N, L, Ct, generator=g), "clip_text_pooled": torch.randn(N, 1, Cp, generator=g),
          "clip_img": torch.zeros(N, 1, Ci)}


def run(dtype, draws=None):
    """The whole case in dtype; draws None = draw from the seeded generator
    (float32 reference), else replay them (float64)."""
    prev_default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    orig_float, orig_randn_like = torch.Tensor.float, torch.randn_like
    if dtype == torch.float64:   # the upstream .float() casts stay in float64
        torch.Tensor.float = lambda self, *a, **k: self.to(torch.float64)
    rec, k = [], [0]

    def randn_like(x, *a, **kw):
        if draws is None:
            v = orig_randn_like(x, *a, **kw)
        else:
            v = draws[k[0]].to(x.dtype)
            k[0] += 1
        rec.append(v.float().clone())
        return v
    torch.randn_like = randn_like
    try:
        G = gdf_mod.GDF(schedule=gdf_mod.CosineSchedule(clamp_range=[0.0001, 0.9999]), input_scaler=gdf_mod.VPScaler(),
                        target=gdf_mod.EpsilonTarget(), noise_cond=gdf_mod.CosineTNoiseCond(),
                        loss_weight=gdf_mod.P2LossWeight())
        en = load(effnet_mod.EfficientNetEncoder(c_latent=16), "effnet_slim.weights.safetensors").to(dtype)
        sc = load(stage_c_mod.StageC(**model_cfg), "stage_c_tiny.weights.safetensors").to(dtype)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        lat = en(((image.to(dtype) - mean) / std))
        if draws is None:
            torch.manual_seed(args.seed)
        t = torch.ones(N) * S
        x_init = G.diffuse(lat.repeat(N, 1, 1, 1), t=t, shift=1)[0]   # the notebook's call
        out = {"out.effnet_latent": lat, "out.x_init": x_init}
        ci = {kk: v.to(dtype) for kk, v in cond.items()}
        ui = {kk: v.to(dtype) for kk, v in uncond.items()}
        it = G.sample(sc, ci, x_init.shape, unconditional_inputs=ui, sampler=gdf_mod.DDPMSampler(G), t_start=S,
                      timesteps=steps, x_init=x_init, cfg=CFG, shift=SHIFT, cfg_rho=RHO)
        for i, (x0, x, _) in enumerate(it):
            out["out.x0_step_%02d" % i], out["out.x_step_%02d" % i] = x0.clone(), x.clone()
        out["out.sampled"], out["out.x_final"] = x0, x
        r = torch.linspace(S, 0, steps + 1)
        out["out.sched.logSNR"] = G.schedule(r, shift=SHIFT)
        out["out.sched.noise_cond"] = G.noise_cond(out["out.sched.logSNR"][:-1])
        return {kk: v.float().contiguous() for kk, v in out.items()}, rec
    finally:
        torch.Tensor.float, torch.randn_like = orig_float, orig_randn_like
        torch.set_default_dtype(prev_default)


ref, draws = run(torch.float32)
assert len(draws) == 1 + steps, len(draws)
f64, _ = run(torch.float64, draws)

tensors = {"in.image": image.half(), "in.noise_diffuse": draws[0]}
for i, d in enumerate(draws[1:]):
    tensors["in.noise_step_%02d" % i] = d
for kk, v in cond.items():
    tensors["in.cond." + kk] = v
for kk, v in uncond.items():
    tensors["in.uncond." + kk] = v
tensors.update(ref)

forward = ("out.effnet_latent", "out.x_init", "out.sched.logSNR", "out.sched.noise_cond")
tol, meas = {}, {}
for kk, v in ref.items():
    a, b = v.double(), f64[kk].double()
    rel = ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
    mx = (a - b).abs().max().item()
    ref_max = b.abs().max().item()
    meas[kk] = {"rel_l2": rel, "max_abs": mx, "ref_max": ref_max, "ref_rms": b.pow(2).mean().sqrt().item()}
    if kk in forward:
        tol[kk] = {"rtol_l2": max(1e-4, 20 * rel), "atol_max": max(20 * mx, 1e-4 * ref_max)}
    else:
        tol[kk] = {"rtol_l2": max(1e-3, 50 * rel), "atol_max": max(50 * mx, 1e-3 * ref_max)}
checked = ["out.effnet_latent", "out.x_init", "out.sampled", "out.x_final"]
config = {"model": model_cfg, "sampling": {"cfg": CFG, "shift": SHIFT, "timesteps": T},
          "img2img": {"strength": S, "diffuse_shift": 1}, "cfg_rho": RHO, "sampler": "DDPMSampler(eta=1)",
          "gdf": "GDF(CosineSchedule(clamp_range=[1e-4,0.9999]), VPScaler, EpsilonTarget, CosineTNoiseCond, "
                 "P2LossWeight)", "latent_shape": [N, 16, h, h]}
meta = {"module": "img2img", "config": json.dumps(config), "seed": str(args.seed),
        "weights": json.dumps({"effnet": "effnet_slim.weights.safetensors",
                               "stage_c": "stage_c_tiny.weights.safetensors"}),
        "rtol_l2": repr(max(tol[k]["rtol_l2"] for k in checked)),
        "atol_max": repr(max(tol[k]["atol_max"] for k in checked)),
        "checked_outputs": json.dumps(checked), "tolerances": json.dumps(tol), "fp32_vs_fp64": json.dumps(meas),
        "layout": "NCHW",
        "notes": "Official image-to-image start (notebook cell, doc/reference.md) with torch %s: "
                 "GDF.diffuse(EfficientNetEncoder(normalised in.image) repeated %d times, t=%g, shift=1) then "
                 "GDF.sample from x_init, t_start=%g, timesteps=int(%d*%g)=%d, cfg %g, shift %g, DDPM; draws from "
                 "torch.manual_seed(%d) in the official order: in.noise_diffuse, in.noise_step_00.. ; made by "
                 "tests/ref/make_img2img_case.py" % (torch.__version__, N, S, S, T, S, steps, CFG, SHIFT, args.seed)}
os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
save_file(tensors, args.out, metadata=meta)
print("wrote %s: %d steps; fp32 vs fp64 rel_l2: %s" % (args.out, steps, ", ".join(
    "%s %.2e" % (k, meas[k]["rel_l2"]) for k in checked)))
