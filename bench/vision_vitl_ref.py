#!/usr/bin/env python3
"""Full-size CLIP vision reference: transformers' CLIPVisionModelWithProjection
with the openai/clip-vit-large-patch14 vision config (width 1024, 24 layers,
16 heads, MLP 4096 quick_gelu, 224 / patch 14, projection 768), random
weights, written as a golden case for `tests/golden/cascade-golden` (module
clip_vision, the same handler as ../shared/golden/vision/clip_vision_tiny):

    DIR/clip_vision_vitl.weights.safetensors   HF key names, BF16 (~0.6 GB)
    DIR/clip_vision_vitl.io.safetensors        in.pixel_values [N,3,224,224],
                                               out.image_embeds, out.last_hidden_state

The weights are BF16 (as the real checkpoint is often shipped) and the
reference runs in float32 on their exact float32 values; the tolerances are
set as the shared set's: 20x the measured float32-vs-float64 error, at least
1e-4 (rel_l2) and 1e-4 * max|ref| (max_abs). Nothing is downloaded: the
config is written out below. Run by bench/vision_vitl.sh (not make check: it
needs torch + transformers and a few GB of memory).
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True, help="folder for the two files")
ap.add_argument("--batch", type=int, default=2)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
torch.set_grad_enabled(False)
torch.manual_seed(args.seed)

# openai/clip-vit-large-patch14, vision_config and projection_dim
cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                       image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
                       layer_norm_eps=1e-5, num_channels=3)
m = CLIPVisionModelWithProjection(cfg).eval()
# random weights of a realistic scale: the init's, plus non-trivial norms and biases
with torch.no_grad():
    for k, p in m.state_dict().items():
        if k.endswith("layer_norm1.weight") or k.endswith("layer_norm2.weight") or "layrnorm.weight" in k \
                or "layernorm.weight" in k:
            p.copy_(1 + 0.1 * torch.randn_like(p))
        elif k.endswith(".bias"):
            p.copy_(0.02 * torch.randn_like(p))
    for p in m.parameters():   # the values BF16 stores, so both sides compute on the same weights
        p.copy_(p.to(torch.bfloat16).float())
sd = {k: v.to(torch.bfloat16).contiguous() for k, v in m.state_dict().items() if "position_ids" not in k}
os.makedirs(args.out, exist_ok=True)
save_file(sd, os.path.join(args.out, "clip_vision_vitl.weights.safetensors"),
          metadata={"config": json.dumps(cfg.to_dict(), default=str)})

# inputs: normalised pixels of smooth random images (what CLIP preprocessing gives)
low = torch.rand(args.batch, 3, 8, 8)
img = torch.nn.functional.interpolate(low, size=(224, 224), mode="bicubic", align_corners=False).clamp(0, 1)
mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
px = ((img - mean) / std).contiguous()

o32 = m(pixel_values=px)
m64 = m.double()
o64 = m64(pixel_values=px.double())
outs = {"out.image_embeds": (o32.image_embeds, o64.image_embeds),
        "out.last_hidden_state": (o32.last_hidden_state, o64.last_hidden_state)}
tol, meas = {}, {}
for k, (a, b) in outs.items():
    a, b = a.double(), b.double()
    rel = ((a - b).norm() / b.norm()).item()
    mx = (a - b).abs().max().item()
    rmax = b.abs().max().item()
    meas[k] = {"rel_l2": rel, "max_abs": mx, "ref_max": rmax}
    tol[k] = {"rtol_l2": max(1e-4, 20 * rel), "atol_max": max(20 * mx, 1e-4 * rmax)}
checked = list(outs)
meta = {"module": "clip_vision", "weights": "clip_vision_vitl.weights.safetensors",
        "rtol_l2": repr(max(t["rtol_l2"] for t in tol.values())),
        "atol_max": repr(max(t["atol_max"] for t in tol.values())),
        "checked_outputs": json.dumps(checked), "tolerances": json.dumps(tol), "fp32_vs_fp64": json.dumps(meas),
        "notes": "openai/clip-vit-large-patch14 vision config, random BF16 weights, bench/vision_vitl_ref.py"}
save_file({"in.pixel_values": px, "out.image_embeds": o32.image_embeds.contiguous(),
           "out.last_hidden_state": o32.last_hidden_state.contiguous()},
          os.path.join(args.out, "clip_vision_vitl.io.safetensors"), metadata=meta)
print("fp32 vs fp64: " + ", ".join("%s rel_l2 %.2e max_abs %.2e" % (k, v["rel_l2"], v["max_abs"])
                                   for k, v in meas.items()))
