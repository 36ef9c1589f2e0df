#!/usr/bin/env python3
"""PyTorch autograd on the official Stable Cascade modules, for
tests/test_grad_blocks.c.

Writes tests/data/grad/blocks.safetensors: per case (resblock, resblock_skip,
ffblock, tsblock, attnblock) the module's weights `<case>.w.<state_dict key>`,
the inputs, a random upstream gradient dy and what autograd gives for the
inputs and every parameter (`<case>.g.<key>`), activations channels-last.

And tests/data/grad/stage_c.safetensors: the golden tiny Stage C
(../shared/golden/stage_c_tiny.weights.safetensors, BF16, upcast), a small
batch, loss = MSE(StageC(x, r, clip...), target) (mean over all elements),
its value, the output, dL/dx and the gradients of chosen parameters.

The noise embedding (gen_r_embedding) is evaluated in float32 in both
runs (see emb32). Every reference is computed twice, in float32 and in float64 (the module and
the inputs .double()); the float64 result is stored, and the float32-vs-
float64 error per tensor (max |d| / max |ref|) is in the metadata
(`fp32_err`, JSON) so that the C test can set its tolerance from it.

The official modules are imported unmodified from an export of
github:Stability-AI/StableCascade (commit 7a7d341): modules/common.py and
modules/stage_c.py, with a stub for modules/controlnet.py (its imports need
kornia, cv2, insightface; the forward with cnet=None never touches it).

  /work/venv-train/bin/python tests/ref/grad_blocks_ref.py --upstream DIR \
      --golden ../shared/golden
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

ap = argparse.ArgumentParser()
ap.add_argument("--upstream", required=True, help="export of the official repo (has modules/)")
ap.add_argument("--golden", required=True, help="the golden folder with stage_c_tiny.weights.safetensors")
ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "grad"))
args = ap.parse_args()

pkg = tempfile.mkdtemp()
os.makedirs(os.path.join(pkg, "scmod"))
for f in ("common.py", "stage_c.py"):
    shutil.copy(os.path.join(args.upstream, "modules", f), os.path.join(pkg, "scmod", f))
open(os.path.join(pkg, "scmod", "__init__.py"), "w").close()
with open(os.path.join(pkg, "scmod", "controlnet.py"), "w") as fh:
    fh.write("class ControlNetDeliverer:\n    pass\n")
sys.path.insert(0, pkg)
from scmod.common import AttnBlock, FeedForwardBlock, ResBlock, TimestepBlock  # noqa: E402
from scmod.stage_c import StageC  # noqa: E402

torch.manual_seed(1313)
NHWC = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731
NCHW = lambda t: t.permute(0, 3, 1, 2)  # noqa: E731


def err(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def twice(fn):
    """fn(dtype) -> dict of tensors; returns the float64 dict and the fp32 errors.
    The explicit x.float() of UpDownBlock2d is redirected to float64 for the
    float64 run (as tools/golden did for the golden set)."""
    keep = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self.double()
    try:
        r64 = fn(torch.float64)
    finally:
        torch.Tensor.float = keep
    r32 = fn(torch.float32)
    return r64, {k: err(r32[k], v) for k, v in r64.items() if k.startswith(("g.", "d", "loss", "eps"))}


out, meta = {}, {}


def store(case, res, errs):
    for k, v in res.items():
        out[f"{case}.{k}"] = v.detach().to(torch.float32).contiguous().clone()
    meta[case] = errs


def randomize(mod, gain=1.0):
    with torch.no_grad():
        for name, p in mod.named_parameters():
            if name.endswith("gamma") or name.endswith("beta"):
                p.copy_(torch.randn_like(p) * 0.5)
            elif p.dim() >= 2:
                fan = p[0].numel()
                p.copy_(torch.randn_like(p) * gain / fan ** 0.5)
            else:
                p.copy_(torch.randn_like(p) * 0.1)


def block_case(case, mod, inputs, call, N, H, W, c):
    """inputs: name -> NHWC (or flat) float64 tensors, call(mod, inputs) -> NCHW output"""
    state = {k: v.detach().clone() for k, v in mod.state_dict().items()}
    dy = torch.randn(N, H, W, c, dtype=torch.float64)

    def fn(dt):
        m = mod
        m.to(dt)
        m.load_state_dict({k: v.to(dt) for k, v in state.items()})
        m.zero_grad()
        xs = {k: v.to(dt).clone().requires_grad_(True) for k, v in inputs.items()}
        y = NHWC(call(m, xs))
        y.backward(dy.to(dt))
        r = {f"d{k}": v.grad for k, v in xs.items()}
        r.update({f"g.{k}": p.grad for k, p in m.named_parameters()})
        return r

    res, errs = twice(fn)
    res.update({f"w.{k}": v for k, v in state.items()})
    res.update(inputs)
    res["dy"] = dy
    store(case, res, errs)


N, H, W, c = 2, 5, 4, 16
D = torch.float64

m = ResBlock(c, 0); randomize(m)
block_case("resblock", m, {"x": torch.randn(N, H, W, c, dtype=D)}, lambda m, i: m(NCHW(i["x"])), N, H, W, c)
m = ResBlock(c, 8); randomize(m)
block_case("resblock_skip", m, {"x": torch.randn(N, H, W, c, dtype=D), "skip": torch.randn(N, H, W, 8, dtype=D)},
           lambda m, i: m(NCHW(i["x"]), NCHW(i["skip"])), N, H, W, c)
m = FeedForwardBlock(c); randomize(m)
block_case("ffblock", m, {"x": torch.randn(N, H, W, c, dtype=D)}, lambda m, i: m(NCHW(i["x"])), N, H, W, c)
m = TimestepBlock(c, 8, conds=["sca", "crp"]); randomize(m, 0.5)
block_case("tsblock", m, {"x": torch.randn(N, H, W, c, dtype=D), "t": torch.randn(N, 24, dtype=D)},
           lambda m, i: m(NCHW(i["x"]), i["t"]), N, H, W, c)
m = AttnBlock(c, 12, 2, self_attn=True); randomize(m)
with torch.no_grad():
    m.kv_mapper[1].weight.mul_(3)   # the conditioning tokens visible in the output (as the golden weights)
block_case("attnblock", m, {"x": torch.randn(N, H, W, c, dtype=D), "cond": torch.randn(N, 3, 12, dtype=D)},
           lambda m, i: m(NCHW(i["x"]), i["cond"]), N, H, W, c)

md = {"fp32_err": json.dumps(meta), "source": "tests/ref/grad_blocks_ref.py, official modules/common.py @7a7d341"}
save_file(out, os.path.join(args.out, "blocks.safetensors"), metadata=md)
print("blocks:", json.dumps(meta, indent=0)[:2000])

# ---- the tiny Stage C ----
wf = os.path.join(args.golden, "stage_c_tiny.weights.safetensors")
from safetensors import safe_open  # noqa: E402
with safe_open(wf, "pt") as fh:
    cfg = json.loads(fh.metadata()["config"])
weights = {k: v.to(torch.float64) for k, v in load_file(wf).items()}
model = StageC(**cfg)
model.load_state_dict(weights)
model.train()   # dropout 0 in this config: the same as eval

N, h, w, Lt = 2, 6, 5, 8
inp = {
    "x": torch.randn(N, h, w, 16, dtype=D),
    "r": torch.rand(N, dtype=D),
    "clip_text": torch.randn(N, Lt, cfg["c_clip_text"], dtype=D),
    "clip_pooled": torch.randn(N, 1, cfg["c_clip_text_pooled"], dtype=D),
    "clip_img": torch.randn(N, 1, cfg["c_clip_img"], dtype=D),
    "target": torch.randn(N, h, w, 16, dtype=D),
}
CHOSEN = [
    "clf.1.weight", "clf.1.bias", "embedding.1.weight", "embedding.1.bias",
    "clip_txt_mapper.bias", "clip_txt_pooled_mapper.bias", "clip_img_mapper.weight", "clip_img_mapper.bias",
    "down_blocks.0.0.depthwise.weight", "down_blocks.0.0.depthwise.bias", "down_blocks.0.0.channelwise.2.gamma",
    "down_blocks.0.0.channelwise.2.beta", "down_blocks.0.0.channelwise.4.bias", "down_blocks.0.1.mapper.weight",
    "down_blocks.0.1.mapper_sca.bias", "down_blocks.0.2.attention.attn.in_proj_bias",
    "down_blocks.0.2.attention.attn.out_proj.bias", "down_blocks.0.2.kv_mapper.1.bias",
    "down_downscalers.1.1.blocks.0.bias", "down_blocks.1.8.attention.attn.out_proj.weight",
    "up_blocks.0.0.channelwise.0.bias", "up_upscalers.0.1.blocks.1.weight", "up_upscalers.0.1.blocks.1.bias",
    "up_blocks.1.0.depthwise.weight", "up_blocks.1.0.channelwise.0.bias", "up_blocks.1.0.channelwise.2.gamma",
    "up_blocks.1.1.mapper_crp.bias", "up_blocks.1.5.attention.attn.in_proj_bias",
    "up_blocks.1.5.attention.attn.out_proj.weight", "up_blocks.1.5.kv_mapper.1.weight",
]


ORIG_FLOAT = torch.Tensor.float


def emb32(r, **kw):
    """the official gen_r_embedding, always in float32: its sin/cos of
    arguments up to 1e4 rad differ by ~7e-5 between float32 and float64
    (golden README), which would hide every other rounding error"""
    cur = torch.Tensor.float
    torch.Tensor.float = ORIG_FLOAT
    try:
        return StageC.gen_r_embedding(model, r.to(torch.float32), **kw).to(r.dtype)
    finally:
        torch.Tensor.float = cur


model.gen_r_embedding = emb32


def stage_c(dt):
    model.to(dt)
    model.load_state_dict({k: v.to(dt) for k, v in weights.items()})
    model.zero_grad()
    x = inp["x"].to(dt).clone().requires_grad_(True)
    eps = NHWC(model(NCHW(x), inp["r"].to(dt), inp["clip_text"].to(dt), inp["clip_pooled"].to(dt),
                     inp["clip_img"].to(dt)))
    loss = torch.nn.functional.mse_loss(eps, inp["target"].to(dt))
    loss.backward()
    params = dict(model.named_parameters())
    r = {"loss": loss.reshape(1), "eps": eps, "dx": x.grad}
    r.update({f"g.{k}": params[k].grad for k in CHOSEN})
    return r


res, errs = twice(stage_c)
out, meta = {}, {}
res.update(inp)
store("stage_c", res, errs)
md = {"fp32_err": json.dumps(meta), "config": json.dumps(cfg),
      "source": "tests/ref/grad_blocks_ref.py, official modules/stage_c.py @7a7d341, golden stage_c_tiny weights"}
save_file(out, os.path.join(args.out, "stage_c.safetensors"), metadata=md)
print("stage_c:", json.dumps(meta, indent=0))
