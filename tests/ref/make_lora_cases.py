#!/usr/bin/env python3
"""Writes tests/data/lora/: small random LoRA files in every key format that
src/lora.c reads, for the tiny Stage C of the shared golden set, and per case
the weights merged INDEPENDENTLY of cascade (numpy, float64):

    W' = W + sum over the case's LoRAs of strength * scale * (up @ down)
    scale = alpha / rank (no alpha: 1); .diff: W' = W + strength * diff

Only the merged tensors are stored (<case>.expected.safetensors, float32, the
base names), with the LoRA list in __metadata__["lora"] as in the golden
format. tests/test_lora.c builds the merged checkpoint from them at test time,
runs it and `cs_stage_c_load_lora` side by side and compares the outputs.

Usage: python3 tests/ref/make_lora_cases.py ../shared/golden/stage_c_tiny.weights.safetensors
       (numpy only; run from the repository root; seed fixed, output reproducible)
"""
import json
import struct
import sys

import numpy as np

OUT = "tests/data/lora"
DT = {"F32": np.float32, "F16": np.float16}


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        raw = data[b:e]
        if v["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            a = u.view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=DT[v["dtype"]])
        out[k] = a.astype(np.float64).reshape(v["shape"])
    return out


def write_st(path, tensors, meta):
    head, blobs, off = {"__metadata__": meta}, [], 0
    for k, a in tensors.items():
        b = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        head[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


rng = np.random.default_rng(20240617)


def pair(out, inn, r, conv=None):
    """up [out, r], down [r, inn] (conv: shapes with kernel dims)"""
    up = rng.normal(0, 0.5, (out, r)) / np.sqrt(r)
    down = rng.normal(0, 0.5, (r, inn)) / np.sqrt(inn)
    # round to float32 first: the file holds float32, the merge must use those values
    return up.astype(np.float32).astype(np.float64), down.astype(np.float32).astype(np.float64)


class Case:
    def __init__(self, base, name):
        self.base, self.name, self.merged, self.loras = base, name, {}, []

    def target(self, tname, rows=None):
        if tname not in self.merged:
            self.merged[tname] = self.base[tname].copy()
        w = self.merged[tname].reshape(self.base[tname].shape[0], -1)
        return w if rows is None else w[rows[0]:rows[1]]

    def lora(self, fname, strength, keys):
        write_st(f"{OUT}/{fname}", keys, {"note": f"random LoRA for tests/test_lora.c ({self.name})"})
        self.loras.append({"file": fname, "strength": strength})

    def delta(self, tname, strength, up, down, alpha=None, rows=None):
        scale = 1.0 if alpha is None else alpha / up.shape[1]
        self.target(tname, rows)[...] += strength * scale * (up @ down)

    def save(self):
        write_st(f"{OUT}/{self.name}.expected.safetensors",
                 {k: v.astype(np.float32) for k, v in self.merged.items()},
                 {"lora": json.dumps(self.loras), "note": "base weights with the LoRAs merged in float64"})


def main():
    base = read_st(sys.argv[1])
    ATT = "down_blocks.0.2.attention.attn."
    c = 128

    # PEFT: lora_A / lora_B behind diffusion_model., no alpha; a 1x1 conv and the packed k rows
    k = Case(base, "peft")
    up, down = pair(16, 128, 2)
    u2, d2 = pair(c, c, 2)
    k.lora("peft.safetensors", 0.7, {
        "diffusion_model.clf.1.lora_A.weight": down.reshape(2, 128, 1, 1),
        "diffusion_model.clf.1.lora_B.weight": up.reshape(16, 2, 1, 1),
        "diffusion_model." + ATT + "to_k.lora_A.weight": d2,
        "diffusion_model." + ATT + "to_k.lora_B.weight": u2})
    k.delta("clf.1.weight", 0.7, up, down)
    k.delta(ATT + "in_proj_weight", 0.7, u2, d2, rows=(c, 2 * c))
    k.save()

    # OneTrainer: lora_prior_unet_ names with alpha; a text-encoder key rides along (skipped)
    k = Case(base, "onetrainer")
    up, down = pair(96, 80, 2)
    u2, d2 = pair(256, 64, 2)
    u3, d3 = pair(8, 8, 2)
    f32 = np.float32
    k.lora("onetrainer.safetensors", 1.0, {
        "lora_prior_unet_clip_txt_mapper.lora_down.weight": down, "lora_prior_unet_clip_txt_mapper.lora_up.weight": up,
        "lora_prior_unet_clip_txt_mapper.alpha": np.array(1.0, f32),
        "lora_prior_unet_down_blocks_0_1_mapper.lora_down.weight": d2,
        "lora_prior_unet_down_blocks_0_1_mapper.lora_up.weight": u2,
        "lora_prior_unet_down_blocks_0_1_mapper.alpha": np.array(4.0, f32),
        "lora_prior_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": d3,
        "lora_prior_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": u3})
    k.delta("clip_txt_mapper.weight", 1.0, up, down, alpha=1.0)
    k.delta("down_blocks.0.1.mapper.weight", 1.0, u2, d2, alpha=4.0)
    k.save()

    # diffusers-style .lora.up / .lora.down on bare dotted paths, alpha 4 at rank 2 (scale 2)
    k = Case(base, "dotted")
    up, down = pair(c, 16, 2)
    u2, d2 = pair(c, 96, 2)
    k.lora("dotted.safetensors", 0.5, {
        "embedding.1.lora.down.weight": down.reshape(2, 16, 1, 1), "embedding.1.lora.up.weight": up.reshape(c, 2, 1, 1),
        "embedding.1.alpha": np.array(4.0, f32),
        "down_blocks.0.2.kv_mapper.1.lora.down.weight": d2, "down_blocks.0.2.kv_mapper.1.lora.up.weight": u2})
    k.delta("embedding.1.weight", 0.5, up, down, alpha=4.0)
    k.delta("down_blocks.0.2.kv_mapper.1.weight", 0.5, u2, d2)
    k.save()

    # full deltas: .diff (weight) and .diff_b (bias)
    k = Case(base, "diff")
    dw = rng.normal(0, 0.05, (16, 128, 1, 1)).astype(f32)
    db = rng.normal(0, 0.1, (16,)).astype(f32)
    db2 = rng.normal(0, 0.1, (96,)).astype(f32)
    k.lora("diff.safetensors", 1.5, {"clf.1.diff": dw, "clf.1.diff_b": db, "clip_txt_mapper.diff_b": db2})
    k.target("clf.1.weight")[...] += 1.5 * dw.reshape(16, -1).astype(np.float64)
    k.target("clf.1.bias")[...] += 1.5 * db.reshape(16, 1).astype(np.float64)
    k.target("clip_txt_mapper.bias")[...] += 1.5 * db2.reshape(96, 1).astype(np.float64)
    k.save()

    # LoCon: 3x3 down (depthwise conv: [rank, 1, 3, 3]) with a 1x1 up, kohya names
    k = Case(base, "locon")
    up, down = pair(c, 9, 2)
    k.lora("locon.safetensors", 1.0, {
        "lora_unet_down_blocks_0_0_depthwise.lora_down.weight": down.reshape(2, 1, 3, 3),
        "lora_unet_down_blocks_0_0_depthwise.lora_up.weight": up.reshape(c, 2, 1, 1),
        "lora_unet_down_blocks_0_0_depthwise.alpha": np.array(2.0, f32)})
    k.delta("down_blocks.0.0.depthwise.weight", 1.0, up, down, alpha=2.0)
    k.save()

    # two LoRAs stacked on the same modules, the second with a negative strength
    k = Case(base, "stack")
    up, down = pair(c, 96, 4)
    u2, d2 = pair(c, 96, 2)
    u3, d3 = pair(16, 128, 2)
    k.lora("stack_a.safetensors", 1.0, {
        "lora_unet_down_blocks_0_2_kv_mapper_1.lora_down.weight": down,
        "lora_unet_down_blocks_0_2_kv_mapper_1.lora_up.weight": up,
        "lora_unet_down_blocks_0_2_kv_mapper_1.alpha": np.array(2.0, f32)})
    k.delta("down_blocks.0.2.kv_mapper.1.weight", 1.0, up, down, alpha=2.0)
    k.lora("stack_b.safetensors", -0.6, {
        "down_blocks.0.2.kv_mapper.1.lora_A.weight": d2, "down_blocks.0.2.kv_mapper.1.lora_B.weight": u2,
        "clf.1.lora_A.weight": d3.reshape(2, 128, 1, 1), "clf.1.lora_B.weight": u3.reshape(16, 2, 1, 1)})
    k.delta("down_blocks.0.2.kv_mapper.1.weight", -0.6, u2, d2)
    k.delta("clf.1.weight", -0.6, u3, d3)
    k.save()

    # 12 modules that do not exist beside one that does (24 unmatched keys)
    keys = {"lora_unet_clf_1.lora_down.weight": d3.reshape(2, 128, 1, 1),
            "lora_unet_clf_1.lora_up.weight": u3.reshape(16, 2, 1, 1)}
    for i in range(12):
        keys[f"lora_unet_no_such_block_{i:02d}.lora_down.weight"] = d3
        keys[f"lora_unet_no_such_block_{i:02d}.lora_up.weight"] = u3
    write_st(f"{OUT}/unmatched.safetensors", keys, {"note": "one matching module, 12 unknown ones"})


if __name__ == "__main__":
    main()
