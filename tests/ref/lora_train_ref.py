#!/usr/bin/env python3
"""Reference for LoRA training of Stage C (src/lora_train.c, doc/training.md §9):
kohya sd-scripts' own code, branch stable-cascade (235a1ea), imported
unmodified: library/stable_cascade.py (StageC with Attention2D to_q/to_k/to_v/
out_proj, its copy of gdf) and networks/lora.py (LoRANetwork, LoRAModule).

(a) tests/data/lora_train/lora_adamw.io.safetensors: the golden tiny Stage C
    (in_proj split as kohya's convert_state_dict_mha_to_normal_attn does),
    torch.manual_seed(SEED) then LoRANetwork(dim, alpha) on it: every module's
    initial lora_down (out.init.<name>), in kohya's order (metadata `modules`).
    Then every lora_up is set to N(0, 0.05^2) (in.up.<name>; kohya's zeros
    would make dL/dA exactly 0), and one step of stable_cascade_train_c_network.py
    on a fixed batch, t and noise: gdf.diffuse, StageC, P2 loss weight,
    backward, clip_grad_norm_(network params, 1), torch AdamW (lr 1e-3,
    weight_decay 0.01). Recorded for the chosen modules: out.g.down/up.<name>
    (before clipping), out.down/up.<name> (after the step); out.loss,
    out.loss_adjusted, out.grad_norm. Float64 reference, float32 run for the
    tolerances (golden rule: rtol_l2 = max(1e-4, 20x fp32-vs-fp64), atol_max =
    max(20x max_abs, 1e-4 max|ref|)); the noise embedding in float32 from r
    rounded to float in both runs (as tests/ref/train_step_ref.py).
(b) with --check-lora FILE (a LoRA written by cs_lora_net_save, e.g. by
    `tests/test_lora_train --write FILE`): ComfyUI's comfy.lora.model_lora_keys_unet
    on ComfyUI's StableCascade_C model of the tiny config, then comfy.lora.load_lora:
    every key must be loaded and every patch must merge (calculate_weight) onto
    the weight of its shape. The sorted key list and the result are stored in
    the metadata (`comfy_keys`, `comfy_check`) of the file of (a).

  git -C sd-scripts archive 235a1ea library/stable_cascade.py networks/lora.py | tar -x -C /tmp/kohya-sc
  /work/venv-samplers/bin/python tests/ref/lora_train_ref.py --kohya /tmp/kohya-sc --comfy /work/comfy-src \
      --golden ../shared/golden [--check-lora FILE]
"""
import argparse
import json
import logging
import math
import os
import sys
import types

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ap = argparse.ArgumentParser()
ap.add_argument("--kohya", required=True, help="export of sd-scripts (library/stable_cascade.py, networks/lora.py)")
ap.add_argument("--comfy", help="ComfyUI source tree (for --check-lora)")
ap.add_argument("--golden", required=True, help="folder with stage_c_tiny.weights.safetensors")
ap.add_argument("--check-lora", help="a LoRA file written by cs_lora_net_save")
ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "lora_train", "lora_adamw.io.safetensors"))
args = ap.parse_args()

SEED, DIM, ALPHA, LR = 4242, 2, 1.0, 1e-3
CHOSEN = [
    "lora_unet_clip_txt_mapper", "lora_unet_embedding_1", "lora_unet_down_blocks_0_0_channelwise_0",
    "lora_unet_down_blocks_0_1_mapper_crp", "lora_unet_down_blocks_0_2_attention_attn_to_q",
    "lora_unet_down_blocks_0_2_attention_attn_to_k", "lora_unet_down_blocks_0_2_attention_attn_to_v",
    "lora_unet_down_blocks_0_2_attention_attn_out_proj", "lora_unet_down_blocks_0_2_kv_mapper_1",
    "lora_unet_down_downscalers_1_1_blocks_0", "lora_unet_up_blocks_1_0_channelwise_0",
    "lora_unet_up_upscalers_0_1_blocks_1", "lora_unet_clf_1",
]


def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


# kohya's imports that the two files do not use on this path
tv = stub("torchvision")
tv.transforms = stub("torchvision.transforms", Compose=lambda x: None, Normalize=lambda **k: None)
stub("diffusers", AutoencoderKL=object, DDPMScheduler=object)
stub("transformers", CLIPTextModel=object)   # a type hint only
lib = stub("library")
lib.__path__ = [os.path.join(args.kohya, "library")]
stub("library.utils", setup_logging=lambda *a, **k: None)
sys.path.insert(0, args.kohya)
import library.stable_cascade as sc  # noqa: E402
from networks.lora import LoRANetwork  # noqa: E402
for k in ("transformers", "torchvision", "torchvision.transforms", "diffusers"):   # ComfyUI wants the real ones
    del sys.modules[k]

WF = "stage_c_tiny.weights.safetensors"
with safe_open(os.path.join(args.golden, WF), "pt") as fh:
    CFG = json.loads(fh.metadata()["config"])
W = {k: v.to(torch.float64) for k, v in load_file(os.path.join(args.golden, WF)).items()}
for k in list(W):   # library/stable_cascade_utils.py convert_state_dict_mha_to_normal_attn
    if k.endswith("attention.attn.in_proj_weight") or k.endswith("attention.attn.in_proj_bias"):
        q, kk, v = torch.chunk(W.pop(k), 3, dim=0)
        base, kind = k.rsplit(".in_proj_", 1)
        for n, x in (("to_q", q), ("to_k", kk), ("to_v", v)):
            W[f"{base}.{n}.{kind}"] = x

model = sc.StageC(**CFG)
model.load_state_dict(W)
model.train()
ORIG_FLOAT = torch.Tensor.float


def emb32(r, **kw):
    cur = torch.Tensor.float
    torch.Tensor.float = ORIG_FLOAT
    try:
        return sc.StageC.gen_r_embedding(model, r.to(torch.float32), **kw).to(r.dtype)
    finally:
        torch.Tensor.float = cur


model.gen_r_embedding = emb32

torch.manual_seed(SEED)
net = LoRANetwork([], model, multiplier=1.0, lora_dim=DIM, alpha=ALPHA)
net.apply_to([], model, apply_text_encoder=False, apply_unet=True)
MODS = [l.lora_name for l in net.unet_loras]
INIT = {l.lora_name: l.lora_down.weight.detach().clone() for l in net.unet_loras}
g = torch.Generator().manual_seed(SEED + 1)
UP = {l.lora_name: torch.randn(l.lora_up.weight.shape, generator=g) * 0.05 for l in net.unet_loras}

torch.manual_seed(SEED + 2)
B, H, Wd, LT = 2, 6, 5, 8
INP = {"in.x0": torch.randn(B, CFG["c_in"], H, Wd), "in.clip_text": torch.randn(B, LT, CFG["c_clip_text"]),
       "in.clip_text_pooled": torch.randn(B, 1, CFG["c_clip_text_pooled"]),
       "in.noise": torch.randn(B, CFG["c_in"], H, Wd), "in.t": torch.rand(B) * 0.9 + 0.05}


def step(dt):
    model.to(dt)
    model.load_state_dict({k: v.to(dt) for k, v in W.items()})
    net.to(dt)
    for l in net.unet_loras:
        with torch.no_grad():
            l.lora_down.weight.copy_(INIT[l.lora_name].to(dt))
            l.lora_up.weight.copy_(UP[l.lora_name].to(dt))
    net.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(False)
    gdf = sc.GDF(schedule=sc.CosineSchedule(clamp_range=[0.0001, 0.9999]), input_scaler=sc.VPScaler(),
                 target=sc.EpsilonTarget(), noise_cond=sc.CosineTNoiseCond(), loss_weight=sc.P2LossWeight())
    x0 = INP["in.x0"].to(dt)
    noised, _, target, logSNR, noise_cond, loss_weight = gdf.diffuse(x0, epsilon=INP["in.noise"].to(dt),
                                                                     t=INP["in.t"].to(dt), shift=1, loss_shift=1)
    zero_img = torch.zeros(B, 1, CFG["c_clip_img"], dtype=dt)
    pred = model(noised, noise_cond, clip_text=INP["in.clip_text"].to(dt),
                 clip_text_pooled=INP["in.clip_text_pooled"].to(dt), clip_img=zero_img)
    loss = torch.nn.functional.mse_loss(pred, target, reduction="none").mean(dim=[1, 2, 3])
    loss_adjusted = (loss * loss_weight).mean()
    loss_adjusted.backward()
    L = {l.lora_name: l for l in net.unet_loras}
    r = {"out.loss": loss.detach(), "out.loss_adjusted": loss_adjusted.detach().reshape(1)}
    for n in CHOSEN:
        r[f"out.g.down.{n}"] = L[n].lora_down.weight.grad.detach().clone()
        r[f"out.g.up.{n}"] = L[n].lora_up.weight.grad.detach().clone()
    gn = torch.nn.utils.clip_grad_norm_(net.get_trainable_params(), 1.0)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    opt.step()
    r["out.grad_norm"] = gn.detach().reshape(1)
    for n in CHOSEN:
        r[f"out.down.{n}"] = L[n].lora_down.weight.detach().clone()
        r[f"out.up.{n}"] = L[n].lora_up.weight.detach().clone()
    return r


keep = torch.Tensor.float
torch.Tensor.float = lambda self, *a, **k: self.double()
try:
    r64 = step(torch.float64)
finally:
    torch.Tensor.float = keep
r32 = step(torch.float32)
meas, tol = {}, {}
for k, v in r64.items():
    d = (r32[k].double() - v).abs()
    meas[k] = {"rel_l2": float(d.norm() / v.norm().clamp_min(1e-300)), "max_abs": float(d.max()),
               "ref_max": float(v.abs().max())}
    tol[k] = {"rtol_l2": max(1e-4, 20 * meas[k]["rel_l2"]), "atol_max": max(20 * meas[k]["max_abs"], 1e-4 * meas[k]["ref_max"])}

out = {k: v.contiguous() for k, v in INP.items()}
out.update({f"in.up.{n}": UP[n].contiguous() for n in MODS})
out.update({f"out.init.{n}": INIT[n].to(torch.float32).contiguous() for n in MODS})
out.update({k: v.to(torch.float32).contiguous() for k, v in r64.items()})
md = {
    "module": "lora_train", "seed": str(SEED), "network_dim": str(DIM), "network_alpha": str(ALPHA), "lr": str(LR),
    "optimizer": "adamw", "optimizer_args": json.dumps({"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}),
    "max_grad_norm": "1.0", "loss_weight": "p2", "layout": "NCHW", "weights": json.dumps({"stage_c": WF}),
    "modules": json.dumps(MODS), "chosen": json.dumps(CHOSEN), "tolerances": json.dumps(tol),
    "fp32_vs_fp64": json.dumps(meas),
    "notes": "kohya sd-scripts stable-cascade 235a1ea: networks/lora.py LoRANetwork on library/stable_cascade.py "
             "StageC; one step of stable_cascade_train_c_network.py (P2, AdamW); tests/ref/lora_train_ref.py",
}
if os.path.exists(args.out):   # keep an earlier ComfyUI check unless redone
    with safe_open(args.out, "pt") as fh:
        old = fh.metadata()
    for k in ("comfy_keys", "comfy_check"):
        if k in old:
            md[k] = old[k]

if args.check_lora:
    sys.path.insert(0, args.comfy)
    sys.argv = [sys.argv[0], "--cpu"]   # ComfyUI reads its options at import
    # this venv has no torchvision: ComfyUI's model zoo imports it, the LoRA
    # path does not use it (a stub with a spec that transformers sees as absent)
    import importlib.machinery

    class Any(types.ModuleType):
        def __getattr__(self, k):
            if k.startswith("__"):
                raise AttributeError(k)
            return Any(f"{self.__name__}.{k}")

        def __call__(self, *a, **k):
            return Any("call")
    for k in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops"):
        sys.modules[k] = Any(k)
        sys.modules[k].__spec__ = importlib.machinery.ModuleSpec(k, None)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.lora
    import comfy.model_base
    import comfy.supported_models
    cfg = dict(CFG)
    cfg.pop("dropout", None)
    mc = comfy.supported_models.Stable_Cascade_C(dict(cfg, stable_cascade_stage="c"))
    cm = comfy.model_base.StableCascade_C(mc)
    key_map = comfy.lora.model_lora_keys_unet(cm, {})
    lsd = load_file(args.check_lora)
    warnings = []

    class Grab(logging.Handler):
        def emit(self, rec):
            warnings.append(rec.getMessage())
    logging.getLogger().addHandler(Grab())
    patches = comfy.lora.load_lora(lsd, key_map)
    sd = cm.state_dict()
    merged = 0
    for tk, p in patches.items():
        w = sd[tk].to(torch.float32)
        nw = comfy.lora.calculate_weight([(1.0, p, 1.0, None, None)], w.clone(), tk)
        assert nw.shape == w.shape, tk
        merged += 1
    not_loaded = [m for m in warnings if "not loaded" in m]
    nmod = len({k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in lsd})
    res = {"file_keys": len(lsd), "modules": nmod, "patched_weights": merged, "not_loaded": not_loaded,
           "errors": [m for m in warnings if "ERROR" in m.upper()]}
    print("ComfyUI:", json.dumps(res))
    assert not not_loaded and merged == nmod and not res["errors"], res
    md["comfy_keys"] = json.dumps(sorted(lsd))
    md["comfy_check"] = json.dumps(dict(res, comfyui="comfy.lora.model_lora_keys_unet + load_lora + calculate_weight"))

os.makedirs(os.path.dirname(args.out), exist_ok=True)
save_file(out, args.out, metadata=md)
print(f"{args.out}: {os.path.getsize(args.out)} bytes, {len(MODS)} modules, loss {r64['out.loss'].tolist()}, "
      f"grad_norm {float(r64['out.grad_norm']):.4g}")
for k in sorted(meas):
    print(f"  {k}: rel_l2 {meas[k]['rel_l2']:.3g} max_abs {meas[k]['max_abs']:.3g}")
