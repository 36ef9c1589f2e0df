#!/usr/bin/env python3
"""Writes tests/data/lora/golden/: LoRA golden cases in the shared golden format
(an io file whose __metadata__["lora"] lists LoRA files, see
../shared/golden/lora/README.md), one per key format, for small random-weight
networks of our own (Stage C, Stage B, a CLIP text encoder):

  expected output = the network run in PyTorch, float32, with every LoRA of the
  case merged into its weights beforehand in float64, by this script alone:
    W += strength * scale * (up @ down)   scale = alpha / rank (no alpha: 1)
    DoRA (.dora_scale): Wc = W + scale * (up @ down); Wc *= dora_scale / ||Wc||
        (norm over the output rows, per input channel, as ComfyUI's
        weight_decompose); W += strength * (Wc - W)
    .diff / .diff_b: W += strength * diff
  The networks are the official Stable Cascade modules (modules/stage_c.py,
  stage_b.py of the StableCascade repository, given as UPSTREAM) and the
  transformers CLIPTextModelWithProjection. Tolerances follow the shared
  set's rule: rtol_l2 = max(1e-4, 20 * rel_l2(fp32 vs fp64)),
  atol_max = max(20 * max_abs(fp32 vs fp64), 1e-4 * max|ref|).

Usage (torch + transformers in a venv; repository root):
  python3 tests/ref/make_lora_golden.py UPSTREAM
Seeded: the output is reproducible on one torch version.
"""
import json
import os
import sys
import types

import numpy as np
import torch

OUT = "tests/data/lora/golden"
torch.manual_seed(20240618)
rng = np.random.default_rng(20240618)
DT = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def write_st(path, tensors, meta):
    """safetensors writer (tensors: name -> torch tensor, stored in its dtype)"""
    head, blobs, off = {"__metadata__": meta}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            b = t.view(torch.int16).numpy().tobytes()
        else:
            b = t.numpy().tobytes()
        dt = DT.get(t.dtype, "I64" if t.dtype == torch.int64 else None)
        head[k] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def upstream(path):
    """the official modules without their controlnet (it needs torchvision, kornia, ...)"""
    pkg = types.ModuleType("modules")
    pkg.__path__ = [os.path.join(path, "modules")]
    sys.modules["modules"] = pkg
    cn = types.ModuleType("modules.controlnet")
    cn.ControlNetDeliverer = object
    sys.modules["modules.controlnet"] = cn
    import modules.stage_b as sb
    import modules.stage_c as sc
    return sc.StageC, sb.StageB


def rnd(*shape, s=1.0):
    return torch.tensor(rng.normal(0, s, shape), dtype=torch.float32)


def rel_l2(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


class Net:
    """a module, its float64 base weights as stored, and a forward"""

    def __init__(self, name, module, store_dtype, fwd, inputs, meta):
        self.name, self.module, self.fwd, self.inputs, self.meta = name, module, fwd, inputs, meta
        sd = module.state_dict()
        self.stored = {k: v.to(store_dtype) if v.is_floating_point() else v for k, v in sd.items()}
        self.base = {k: v.double() for k, v in self.stored.items()}
        self.file = f"{name}.weights.safetensors"
        write_st(f"{OUT}/{self.file}", self.stored, meta)

    def run(self, weights, dtype):
        m = self.module.to(dtype)
        m.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}, strict=True)
        # the upstream forward's explicit .float() casts follow the run's dtype
        orig = torch.Tensor.float
        if dtype == torch.float64:
            torch.Tensor.float = lambda t, *a, **kw: t.to(torch.float64)
        try:
            with torch.no_grad():
                return self.fwd(m, {k: v.to(dtype) if v.is_floating_point() else v for k, v in self.inputs.items()})
        finally:
            torch.Tensor.float = orig


class Case:
    def __init__(self, net, name):
        self.net, self.name, self.w, self.loras = net, name, dict(net.base), []

    def rows(self, key, rows):
        """[out, K] float64 view of a (copied) weight, rows (a, b) or all"""
        if self.w[key] is self.net.base[key]:
            self.w[key] = self.w[key].clone()
        v = self.w[key].reshape(self.w[key].shape[0], -1)
        return v if rows is None else v[rows[0]:rows[1]]

    def lora(self, keys, strength, dtype=torch.float32):
        """writes one LoRA file; returns the keys as stored (rounded to dtype)"""
        fname = f"{self.name}_{len(self.loras)}.safetensors"
        stored = {k: v.to(dtype) for k, v in keys.items()}
        write_st(f"{OUT}/{fname}", stored, {"note": f"random LoRA, case {self.name}"})
        self.loras.append({"file": fname, "strength": strength})
        return {k: v.double() for k, v in stored.items()}

    def lowrank(self, key, strength, up, down, alpha=None, rows=None, dora=None):
        r = down.shape[0]
        d = (up.reshape(up.shape[0], r) @ down.reshape(r, -1)) * (1.0 if alpha is None else float(alpha) / r)
        w = self.rows(key, rows)
        if dora is None:
            w += strength * d
            return
        wc = w + d
        k = wc.shape[1] // dora.numel()   # kernel elements per input channel
        norm = wc.reshape(wc.shape[0], dora.numel(), k).pow(2).sum(dim=(0, 2)).sqrt()
        wc = wc * (dora.reshape(-1) / norm).repeat_interleave(k)[None, :]
        w += strength * (wc - w)

    def save(self):
        y32 = self.net.run({k: v.float() for k, v in self.w.items()}, torch.float32)
        y64 = self.net.run(self.w, torch.float64)
        y0 = self.net.run({k: v.float() for k, v in self.net.base.items()}, torch.float32)
        tol, fp = {}, {}
        for k in y32:
            e, mx = rel_l2(y32[k], y64[k]), float((y32[k].double() - y64[k]).abs().max())
            fp[k] = {"rel_l2": e, "max_abs": mx}
            tol[k] = {"rtol_l2": float(f"{max(1e-4, 20 * e):.3g}"),
                      "atol_max": float(f"{max(20 * mx, 1e-4 * float(y32[k].abs().max())):.3g}")}
            print(f"{self.name}: {k} moved by rel_l2 {rel_l2(y0[k], y32[k]):.3f}; fp32 vs fp64 {e:.2e}")
        first = next(iter(tol))
        meta = dict(self.net.meta_io)
        meta.update({"weights": json.dumps({self.net.role: self.net.file}), "lora": json.dumps(self.loras),
                     "rtol_l2": str(tol[first]["rtol_l2"]), "atol_max": str(tol[first]["atol_max"]),
                     "tolerances": json.dumps(tol), "checked_outputs": json.dumps(list(tol)),
                     "fp32_vs_fp64": json.dumps(fp), "seed": "20240618",
                     "notes": "tests/ref/make_lora_golden.py: the module run in float32 with the LoRAs merged "
                              "into its weights in float64 beforehand"})
        t = {"in." + k: v for k, v in self.net.inputs.items()}
        t.update({k: v.float() for k, v in y32.items()})
        write_st(f"{OUT}/{self.name}.io.safetensors", t, meta)


def kohya(mod, prefix="lora_unet_"):
    return prefix + mod.replace(".", "_")


def pair(out, k, r, conv_down=None, conv_up=False):
    up = rnd(out, r, s=0.5 / r ** 0.5)
    down = rnd(r, k, s=0.5 / k ** 0.5)
    if conv_down:
        down = down.reshape(r, *conv_down)
    if conv_up:
        up = up.reshape(out, r, 1, 1)
    return up, down


def main():
    StageC, StageB = upstream(sys.argv[1])
    os.makedirs(OUT, exist_ok=True)
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    # --- a small Stage C (BF16 as the released bf16 checkpoints) ---
    ccfg = dict(c_in=16, c_out=16, c_r=64, patch_size=1, c_cond=32, c_hidden=[32, 32], nhead=[2, 2],
                blocks=[[1, 1], [1, 1]], block_repeat=[[1, 1], [1, 1]], level_config=["CTA", "CTA"],
                c_clip_text=24, c_clip_text_pooled=20, c_clip_img=16, c_clip_seq=4, kernel_size=3,
                dropout=[0, 0], self_attn=True, t_conds=["sca", "crp"], switch_level=[False])
    m = StageC(**ccfg).eval()
    for p in m.parameters():
        p.data = rnd(*p.shape, s=0.2)
    sc_in = {"x": rnd(2, 16, 6, 6), "r": torch.tensor([0.3, 0.8]), "clip_text": rnd(2, 10, 24),
             "clip_text_pooled": rnd(2, 1, 20), "clip_img": rnd(2, 1, 16)}
    sc = Net("sc", m, torch.bfloat16,
             lambda mm, i: {"out.y": mm(i["x"], i["r"], i["clip_text"], i["clip_text_pooled"], i["clip_img"])},
             sc_in, {"module": "modules.stage_c.StageC", "config": json.dumps(ccfg)})
    sc.role, sc.meta_io = "stage_c", {"module": "modules.stage_c.StageC", "config": json.dumps(ccfg)}
    c = 32
    att = "down_blocks.0.2.attention.attn"

    # OneTrainer: lora_prior_unet_ names, attention split q/k/v/out_proj, alpha, BF16, and
    # text-encoder keys that a Stage C leaves for the text encoder
    k = Case(sc, "sc_onetrainer_bf16")
    keys, todo = {}, []
    for mod, out, kk, rows in [("clip_txt_mapper", 32, 24, None), ("down_blocks.0.1.mapper", 64, 64, None),
                               (att + ".to_q", c, c, (0, c)), (att + ".to_k", c, c, (c, 2 * c)),
                               (att + ".to_v", c, c, (2 * c, 3 * c)), (att + ".out_proj", c, c, None),
                               ("up_blocks.1.0.channelwise.4", c, 4 * c, None)]:
        up, down = pair(out, kk, 4)
        n = kohya(mod, "lora_prior_unet_")
        keys.update({n + ".lora_down.weight": down, n + ".lora_up.weight": up, n + ".alpha": torch.tensor(2.0)})
        todo.append((mod, n, rows))
    u, d = pair(8, 8, 2)
    keys.update({"lora_prior_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": d,
                 "lora_prior_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": u})
    st = k.lora(keys, 0.8, torch.bfloat16)
    for mod, n, rows in todo:
        tgt = att + ".in_proj_weight" if rows else mod + ".weight"
        k.lowrank(tgt, 0.8, st[n + ".lora_up.weight"], st[n + ".lora_down.weight"], 2.0, rows)
    k.save()

    # PEFT: base_model.model.<path>.lora_A/B (F16), a 1x1 conv and a Linear, no alpha
    k = Case(sc, "sc_peft_f16")
    u1, d1 = pair(16, 32, 3, conv_down=(32, 1, 1), conv_up=True)
    u2, d2 = pair(4 * c, 20, 3)
    p = "base_model.model."
    st = k.lora({p + "clf.1.lora_A.weight": d1, p + "clf.1.lora_B.weight": u1,
                 p + "clip_txt_pooled_mapper.lora_A.weight": d2, p + "clip_txt_pooled_mapper.lora_B.weight": u2},
                1.0, torch.float16)
    k.lowrank("clf.1.weight", 1.0, st[p + "clf.1.lora_B.weight"], st[p + "clf.1.lora_A.weight"])
    k.lowrank("clip_txt_pooled_mapper.weight", 1.0, st[p + "clip_txt_pooled_mapper.lora_B.weight"],
              st[p + "clip_txt_pooled_mapper.lora_A.weight"])
    k.save()

    # diffusers .lora.up/.lora.down on bare dotted paths, alpha, negative strength
    k = Case(sc, "sc_dotted_neg")
    u1, d1 = pair(c, 16, 2, conv_down=(16, 1, 1), conv_up=True)
    u2, d2 = pair(c, c, 2)
    st = k.lora({"embedding.1.lora.down.weight": d1, "embedding.1.lora.up.weight": u1,
                 "embedding.1.alpha": torch.tensor(1.0),
                 "up_blocks.0.2.kv_mapper.1.lora.down.weight": d2, "up_blocks.0.2.kv_mapper.1.lora.up.weight": u2},
                -0.7)
    k.lowrank("embedding.1.weight", -0.7, st["embedding.1.lora.up.weight"], st["embedding.1.lora.down.weight"], 1.0)
    k.lowrank("up_blocks.0.2.kv_mapper.1.weight", -0.7, st["up_blocks.0.2.kv_mapper.1.lora.up.weight"],
              st["up_blocks.0.2.kv_mapper.1.lora.down.weight"])
    k.save()

    # DoRA: kohya names with .dora_scale [1, in] (Linear, a 1x1 conv, the packed v rows)
    k = Case(sc, "sc_dora")
    keys, todo = {}, []
    for mod, out, kk, conv, rows in [("down_blocks.0.1.mapper", 64, 64, False, None),
                                     ("clf.1", 16, 32, True, None), (att + ".to_v", c, c, False, (2 * c, 3 * c))]:
        up, down = pair(out, kk, 2, conv_down=(kk, 1, 1) if conv else None, conv_up=conv)
        n = kohya(mod)
        tgt = att + ".in_proj_weight" if rows else mod + ".weight"
        base = k.rows(tgt, rows)
        scale = base.norm(dim=0) * torch.tensor(rng.uniform(0.8, 1.2, kk), dtype=torch.float64)
        ds = scale.reshape((1, kk, 1, 1) if conv else (1, kk)).float()
        keys.update({n + ".lora_down.weight": down, n + ".lora_up.weight": up, n + ".alpha": torch.tensor(1.0),
                     n + ".dora_scale": ds})
        todo.append((n, tgt, rows))
    st = k.lora(keys, 0.6)
    for n, tgt, rows in todo:
        k.lowrank(tgt, 0.6, st[n + ".lora_up.weight"], st[n + ".lora_down.weight"], 1.0, rows, st[n + ".dora_scale"])
    k.save()

    # LoCon: the 3x3 depthwise conv ([c, 1, 3, 3]) with a 3x3 down and a 1x1 up
    k = Case(sc, "sc_locon")
    up, down = pair(c, 9, 2, conv_down=(1, 3, 3), conv_up=True)
    n = kohya("down_blocks.1.0.depthwise")
    st = k.lora({n + ".lora_down.weight": down, n + ".lora_up.weight": up, n + ".alpha": torch.tensor(4.0)}, 1.0)
    k.lowrank("down_blocks.1.0.depthwise.weight", 1.0, st[n + ".lora_up.weight"], st[n + ".lora_down.weight"], 4.0)
    k.save()

    # full deltas: .diff on a weight and on the packed q rows, .diff_b on biases
    k = Case(sc, "sc_diff")
    dw, db = rnd(c, c, s=0.05), rnd(c, s=0.1)
    dq, dqb = rnd(c, c, s=0.05), rnd(c, s=0.1)
    st = k.lora({att + ".out_proj.diff": dw, att + ".out_proj.diff_b": db,
                 att + ".to_q.diff": dq, att + ".to_q.diff_b": dqb}, 1.5)
    k.rows(att + ".out_proj.weight", None)[...] += 1.5 * st[att + ".out_proj.diff"]
    k.rows(att + ".out_proj.bias", None)[...] += 1.5 * st[att + ".out_proj.diff_b"].reshape(-1, 1)
    k.rows(att + ".in_proj_weight", (0, c))[...] += 1.5 * st[att + ".to_q.diff"]
    k.rows(att + ".in_proj_bias", (0, c))[...] += 1.5 * st[att + ".to_q.diff_b"].reshape(-1, 1)
    k.save()

    # two LoRAs stacked on the same module, the second negative
    k = Case(sc, "sc_stack")
    u1, d1 = pair(64, 64, 4)
    u2, d2 = pair(64, 64, 2)
    n = kohya("down_blocks.0.1.mapper")
    s1 = k.lora({n + ".lora_down.weight": d1, n + ".lora_up.weight": u1, n + ".alpha": torch.tensor(8.0)}, 0.9)
    s2 = k.lora({"diffusion_model.down_blocks.0.1.mapper.lora_A.weight": d2,
                 "diffusion_model.down_blocks.0.1.mapper.lora_B.weight": u2}, -1.2)
    k.lowrank("down_blocks.0.1.mapper.weight", 0.9, s1[n + ".lora_up.weight"], s1[n + ".lora_down.weight"], 8.0)
    k.lowrank("down_blocks.0.1.mapper.weight", -1.2, s2["diffusion_model.down_blocks.0.1.mapper.lora_B.weight"],
              s2["diffusion_model.down_blocks.0.1.mapper.lora_A.weight"])
    k.save()

    # --- a small Stage B (F32) ---
    bcfg = dict(c_in=4, c_out=4, c_r=64, patch_size=2, c_cond=32, c_hidden=[16, 16, 32, 32], nhead=[-1, -1, 2, 2],
                blocks=[[1, 1, 1, 1], [1, 1, 1, 1]], block_repeat=[[1, 1, 1, 1], [2, 2, 2, 2]],
                level_config=["CT", "CT", "CTA", "CTA"], c_clip=20, c_clip_seq=4, c_effnet=16, c_pixels=3,
                kernel_size=3, dropout=[0, 0, 0, 0], self_attn=True, t_conds=["sca"])
    m = StageB(**bcfg).eval()
    for p in m.parameters():
        p.data = rnd(*p.shape, s=0.2)
    sb_in = {"x": rnd(2, 4, 16, 16), "r": torch.tensor([0.2, 0.7]), "effnet": rnd(2, 16, 4, 4),
             "clip": rnd(2, 1, 20)}
    sb = Net("sb", m, torch.float32, lambda mm, i: {"out.y": mm(i["x"], i["r"], i["effnet"], i["clip"])}, sb_in,
             {"module": "modules.stage_b.StageB", "config": json.dumps(bcfg)})
    sb.role, sb.meta_io = "stage_b", {"module": "modules.stage_b.StageB", "config": json.dumps(bcfg)}
    # kohya: a 2x2 stride-2 downscaler as LoCon (2x2 down, 1x1 up), attention, an up-repeat mapper
    k = Case(sb, "sb_kohya_locon")
    keys, todo = {}, []
    att_b = "down_blocks.2.2.attention.attn"
    sdd = sb.stored
    for mod, rows in [("down_downscalers.1.1", None), (att_b + ".to_k", (32, 64)), (att_b + ".out_proj", None),
                      ("up_repeat_mappers.2.0", None), ("effnet_mapper.0", None)]:
        w = sdd[att_b + ".in_proj_weight"] if rows else sdd[mod + ".weight"]
        out = w.shape[0] // 3 if rows else w.shape[0]
        kshape = tuple(w.shape[1:])
        kk = int(np.prod(kshape))
        up, down = pair(out, kk, 3, conv_down=kshape if len(kshape) > 1 else None, conv_up=len(kshape) > 1)
        n = kohya(mod)
        keys.update({n + ".lora_down.weight": down, n + ".lora_up.weight": up, n + ".alpha": torch.tensor(3.0)})
        todo.append((n, att_b + ".in_proj_weight" if rows else mod + ".weight", rows))
    st = k.lora(keys, 0.9)
    for n, tgt, rows in todo:
        k.lowrank(tgt, 0.9, st[n + ".lora_up.weight"], st[n + ".lora_down.weight"], 3.0, rows)
    k.save()

    # --- a small CLIP text encoder (HF names, F32) ---
    tcfg = CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, projection_dim=24, hidden_act="gelu",
                          bos_token_id=998, eos_token_id=999, pad_token_id=999)
    m = CLIPTextModelWithProjection(tcfg).eval()
    for p in m.parameters():
        p.data = rnd(*p.shape, s=0.2) if p.dim() > 1 else 1.0 + rnd(*p.shape, s=0.1)
    ids = torch.full((3, 77), 999, dtype=torch.int64)
    for i, n in enumerate((5, 30, 75)):
        ids[i, 0] = 998
        ids[i, 1:n + 1] = torch.tensor(rng.integers(0, 998, n))

    def clip_fwd(mm, i):
        o = mm(input_ids=i["input_ids"], output_hidden_states=True)
        return {"out.clip_text": o.hidden_states[-1], "out.text_embeds": o.text_embeds,
                "out.last_hidden_state": o.last_hidden_state}

    meta = {"config": tcfg.to_json_string(), "module": "clip_text"}
    te = Net("clip", m, torch.float32, clip_fwd, {"input_ids": ids}, meta)
    te.role, te.meta_io = "text_encoder", {"module": "clip_text", "layout": "input_ids [B,77] int64, no mask"}
    # OneTrainer lora_prior_te_ keys (q/k/v/out, mlp, text_projection) stacked with a kohya lora_te_ one
    k = Case(te, "clip_onetrainer_stack")
    keys, todo = {}, []
    for mod, out, kk in [("text_model.encoder.layers.0.self_attn.q_proj", 32, 32),
                         ("text_model.encoder.layers.1.self_attn.v_proj", 32, 32),
                         ("text_model.encoder.layers.1.self_attn.out_proj", 32, 32),
                         ("text_model.encoder.layers.0.mlp.fc1", 64, 32), ("text_model.encoder.layers.1.mlp.fc2", 32, 64),
                         ("text_projection", 24, 32)]:
        up, down = pair(out, kk, 4)
        n = kohya(mod, "lora_prior_te_")
        keys.update({n + ".lora_down.weight": down, n + ".lora_up.weight": up, n + ".alpha": torch.tensor(2.0)})
        todo.append((n, mod))
    u, d = pair(8, 8, 2)
    keys.update({"lora_prior_unet_clf_1.lora_down.weight": d, "lora_prior_unet_clf_1.lora_up.weight": u})
    st = k.lora(keys, 1.0)
    for n, mod in todo:
        k.lowrank(mod + ".weight", 1.0, st[n + ".lora_up.weight"], st[n + ".lora_down.weight"], 2.0)
    u, d = pair(32, 32, 2)
    n = kohya("text_model.encoder.layers.0.self_attn.k_proj", "lora_te_")
    st = k.lora({n + ".lora_down.weight": d, n + ".lora_up.weight": u}, -0.5)
    k.lowrank("text_model.encoder.layers.0.self_attn.k_proj.weight", -0.5, st[n + ".lora_up.weight"],
              st[n + ".lora_down.weight"])
    k.save()


if __name__ == "__main__":
    main()
