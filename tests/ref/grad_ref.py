#!/usr/bin/env python3
"""PyTorch autograd and optimizer references for tests/test_grad_torch.c.

Writes tests/data/grad/ops.safetensors (inputs, upstream gradients and the
gradients autograd computes, per op or block, channels-last as the C code
keeps activations) and tests/data/grad/optim.safetensors (a few Adafactor
and AdamW steps on fixed gradients). Float32 on the CPU, seeded: rerunning
gives the same files for one torch version.

The modules are written out here the way the official Stable Cascade code
(modules/common.py, stage_c.py) builds them: LayerNorm2d without affine,
nn.GELU(), GlobalResponseNorm, the depthwise Conv2d, TimestepBlock with
sca/crp mappers, AttnBlock over nn.MultiheadAttention (packed in_proj).

Needs torch, safetensors and transformers (Adafactor), e.g.
  python3 -m venv /work/venv-train
  /work/venv-train/bin/pip install torch transformers safetensors numpy
  /work/venv-train/bin/python tests/ref/grad_ref.py
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers.optimization import Adafactor

torch.manual_seed(13)
out = {}


def put(prefix, **tensors):
    for k, v in tensors.items():
        out[f"{prefix}.{k}"] = v.detach().to(torch.float32).contiguous().clone()


def leaf(*shape, scale=1.0, offset=0.0):
    return (torch.randn(*shape) * scale + offset).requires_grad_(True)


def run(y):
    """backward of sum(y * dy) with a random dy; returns dy"""
    dy = torch.randn_like(y)
    y.backward(dy)
    return dy


# Linear [17,13] -> 7
x, W, b = leaf(17, 13), leaf(7, 13, scale=0.3), leaf(7, scale=0.3)
dy = run(F.linear(x, W, b))
put("linear", x=x, W=W, b=b, dy=dy, dx=x.grad, dW=W.grad, db=b.grad)

# 1x1 conv on NCHW, stored channels-last: x [2,3,5,13] NHWC, W [7,13,1,1]
x, W, b = leaf(2, 3, 5, 13), leaf(7, 13, 1, 1, scale=0.3), leaf(7, scale=0.3)
y = F.conv2d(x.permute(0, 3, 1, 2), W, b).permute(0, 2, 3, 1)
dy = run(y)
put("conv1x1", x=x, W=W, b=b, dy=dy, dx=x.grad, dW=W.grad, db=b.grad)

# LayerNorm2d(elementwise_affine=False, eps=1e-6) on NCHW = LN of NHWC rows
x = leaf(2, 3, 5, 33, offset=0.5)
y = F.layer_norm(x.permute(0, 3, 1, 2).permute(0, 2, 3, 1), (33,), eps=1e-6)
dy = run(y)
put("layernorm", x=x, dy=dy, dx=x.grad)

# nn.LayerNorm(17, eps=1e-6) with affine (CLIP's kind, and for completeness)
x, w, b = leaf(5, 17), leaf(17, scale=0.3, offset=1.0), leaf(17, scale=0.3)
dy = run(F.layer_norm(x, (17,), w, b, eps=1e-6))
put("layernorm_affine", x=x, w=w, b=b, dy=dy, dx=x.grad, dw=w.grad, db=b.grad)

# GELU (erf) and SiLU
x = leaf(101, scale=3.0)
dy = run(nn.GELU()(x))
put("gelu", x=x, dy=dy, dx=x.grad)
x = leaf(101, scale=3.0)
dy = run(nn.SiLU()(x))
put("silu", x=x, dy=dy, dx=x.grad)

# GlobalResponseNorm on NHWC [2,3,5,17]
x, g, be = leaf(2, 3, 5, 17), leaf(1, 1, 1, 17), leaf(1, 1, 1, 17)
Gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
Nx = Gx / (Gx.mean(dim=-1, keepdim=True) + 1e-6)
dy = run(g * (x * Nx) + be + x)
put("grn", x=x, gamma=g, beta=be, dy=dy, dx=x.grad, dgamma=g.grad, dbeta=be.grad)

# depthwise Conv2d(C, C, 3, padding=1, groups=C) on NCHW, stored NHWC [2,5,3,17]
x, W, b = leaf(2, 5, 3, 17), leaf(17, 1, 3, 3, scale=0.3), leaf(17, scale=0.3)
y = F.conv2d(x.permute(0, 3, 1, 2), W, b, padding=1, groups=17).permute(0, 2, 3, 1)
dy = run(y)
put("dwconv", x=x, W=W, b=b, dy=dy, dx=x.grad, dW=W.grad, db=b.grad)


# TimestepBlock(c=8, c_r=6, conds=[sca, crp]) on NHWC x [2,3,5,8], t [2, 18]
class TimestepBlock(nn.Module):
    def __init__(self, c, c_timestep, conds):
        super().__init__()
        self.mapper = nn.Linear(c_timestep, c * 2)
        self.conds = conds
        for cname in conds:
            setattr(self, f"mapper_{cname}", nn.Linear(c_timestep, c * 2))

    def forward(self, x, t):
        t = t.chunk(len(self.conds) + 1, dim=1)
        a, b = self.mapper(t[0])[:, :, None, None].chunk(2, dim=1)
        for i, cname in enumerate(self.conds):
            ac, bc = getattr(self, f"mapper_{cname}")(t[i + 1])[:, :, None, None].chunk(2, dim=1)
            a, b = a + ac, b + bc
        return x * (1 + a) + b


tb = TimestepBlock(8, 6, ["sca", "crp"])
x, t = leaf(2, 3, 5, 8), leaf(2, 18)
y = tb(x.permute(0, 3, 1, 2), t).permute(0, 2, 3, 1)
dy = run(y)
put("tsblock", x=x, t=t, dy=dy, dx=x.grad, dt=t.grad)
for n in ["mapper", "mapper_sca", "mapper_crp"]:
    m = getattr(tb, n)
    put("tsblock", **{f"{n}.weight": m.weight, f"{n}.bias": m.bias, f"d{n}.weight": m.weight.grad,
                      f"d{n}.bias": m.bias.grad})


# AttnBlock(c=8, c_cond=6, nhead=2, self_attn=True) on NHWC x [2,1,5,8], cond [2,3,6]
class AttnBlock(nn.Module):
    def __init__(self, c, c_cond, nhead):
        super().__init__()
        self.attn = nn.MultiheadAttention(c, nhead, bias=True, batch_first=True)
        self.kv_mapper = nn.Sequential(nn.SiLU(), nn.Linear(c_cond, c))

    def forward(self, x, kv):
        kv = self.kv_mapper(kv)
        n, h, w, c = x.shape
        xn = F.layer_norm(x, (c,), eps=1e-6).reshape(n, h * w, c)
        kv = torch.cat([xn, kv], dim=1)
        return x + self.attn(xn, kv, kv, need_weights=False)[0].reshape(n, h, w, c)


with torch.no_grad():
    ab = AttnBlock(8, 6, 2)
    for p in ab.parameters():   # non-zero biases: their gradients are checked too
        p.copy_(torch.randn_like(p) * 0.4)
x, cond = leaf(2, 1, 5, 8), leaf(2, 3, 6)
dy = run(ab(x, cond))
put("attnblock", x=x, cond=cond, dy=dy, dx=x.grad, dcond=cond.grad)
for n, p in [("in_proj_weight", ab.attn.in_proj_weight), ("in_proj_bias", ab.attn.in_proj_bias),
             ("out_proj.weight", ab.attn.out_proj.weight), ("out_proj.bias", ab.attn.out_proj.bias),
             ("kv_mapper.weight", ab.kv_mapper[1].weight), ("kv_mapper.bias", ab.kv_mapper[1].bias)]:
    put("attnblock", **{n: p, "d" + n: p.grad})

# ---- optimizers: 3 steps on fixed gradients, each shape kind of Stage C ----
shapes = {"w2": (5, 7), "w4": (3, 4, 1, 1), "gamma": (1, 1, 1, 6), "b1": (6,)}
STEPS = 3
opt_out = {}
for name, shape in shapes.items():
    p0 = torch.randn(*shape) * 0.01
    grads = [torch.randn(*shape) * (0.1 * (s + 1)) for s in range(STEPS)]
    opt_out[f"{name}.p0"] = p0.clone()
    for s, g in enumerate(grads):
        opt_out[f"{name}.g{s}"] = g.clone()
    for oname, make in [
        ("adafactor", lambda ps: Adafactor(ps, lr=1e-3, scale_parameter=False, relative_step=False,
                                           warmup_init=False)),
        ("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-3)),
    ]:
        p = nn.Parameter(p0.clone())
        opt = make([p])
        for s, g in enumerate(grads):
            p.grad = g.clone()
            opt.step()
            opt_out[f"{name}.{oname}{s}"] = p.detach().clone()

here = os.path.dirname(os.path.abspath(__file__))
dst = os.path.join(here, "..", "data", "grad")
os.makedirs(dst, exist_ok=True)
meta = {"torch": torch.__version__, "generator": "tests/ref/grad_ref.py"}
save_file(out, os.path.join(dst, "ops.safetensors"), metadata=meta)
save_file(opt_out, os.path.join(dst, "optim.safetensors"), metadata=meta)
print(f"wrote {len(out)} + {len(opt_out)} tensors to {os.path.normpath(dst)}", file=sys.stderr)
