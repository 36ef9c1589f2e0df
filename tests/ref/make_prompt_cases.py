#!/usr/bin/env python3
"""Reference data for --prompt-style comfyui (tests/test_prompt.c).

Runs ComfyUI's own prompt code -- SDTokenizer.tokenize_with_weights from
comfy/sd1_clip.py, configured as comfy/sdxl_clip.py's
StableCascadeClipGTokenizer (pad_with_end=True, embedding_size=1280,
embedding_key='clip_g') -- on the prompts below, with our vocabulary, and
writes the chunks (token ids, weights) to tests/data/prompt_cases.json.
Embedding files used by the cases are written to tests/data/embeddings/.

Only the tokenizer part of sd1_clip.py runs; torch and comfy's other modules
are stubbed (the tokenizer never calls them for .safetensors embeddings
with a "clip_g" key), so this needs only `transformers` and `safetensors`
(numpy). Made with ComfyUI Comfy-Org/ComfyUI@443393b48e19 and transformers
5.25 (whose CLIPTokenizer is the tokenizers-backed one, as in a fresh
ComfyUI install).

usage: make_prompt_cases.py COMFYUI_DIR TOKENIZER_DIR OUT_DIR
  COMFYUI_DIR holds comfy/sd1_clip.py; TOKENIZER_DIR vocab.json + merges.txt;
  OUT_DIR is tests/data.
"""
import importlib.util
import json
import os
import sys
import types

import numpy as np
import safetensors.numpy
from transformers import CLIPTokenizer  # before the torch stub: transformers probes torch

CLIPTokenizer.__name__   # resolve the lazy import now

comfy_dir, tok_dir, out_dir = sys.argv[1:4]

# ---- stubs for what sd1_clip.py imports but the tokenizer does not use ----
torch = types.ModuleType("torch")
torch.nn = types.SimpleNamespace(Module=object)
torch.cat = lambda xs, dim=0: np.concatenate(xs, axis=dim)
sys.modules["torch"] = torch
st_torch = types.ModuleType("safetensors.torch")
st_torch.load_file = lambda path, device="cpu": safetensors.numpy.load_file(path)
sys.modules["safetensors.torch"] = st_torch
safetensors.torch = st_torch
comfy = types.ModuleType("comfy")
comfy.__path__ = [os.path.join(comfy_dir, "comfy")]
sys.modules["comfy"] = comfy
for m in ("ops", "model_management", "clip_model"):
    mod = types.ModuleType("comfy." + m)
    mod.CLIPTextModel = object
    sys.modules["comfy." + m] = mod
    setattr(comfy, m, mod)
spec = importlib.util.spec_from_file_location("comfy.sd1_clip", os.path.join(comfy_dir, "comfy", "sd1_clip.py"))
sd1_clip = importlib.util.module_from_spec(spec)
sys.modules["comfy.sd1_clip"] = sd1_clip
spec.loader.exec_module(sd1_clip)

# ---- embeddings: small random CLIP-G vectors (F16 keeps the files small) ----
W = 1280
emb_dir = os.path.join(out_dir, "embeddings")
os.makedirs(emb_dir, exist_ok=True)
rng = np.random.default_rng(17)
embs = {
    "style1": {"clip_g": rng.standard_normal((2, W)).astype(np.float16),
               "clip_l": rng.standard_normal((2, 768)).astype(np.float16)},
    "one": {"emb_params": rng.standard_normal((1, W)).astype(np.float16)},
}
for name, tensors in embs.items():
    safetensors.numpy.save_file(tensors, os.path.join(emb_dir, name + ".safetensors"))
rows = {}   # bytes of a row -> "name#row"
for name, tensors in embs.items():
    t = tensors.get("clip_g", next(iter(tensors.values())))
    for r in range(t.shape[0]):
        rows[t[r].tobytes()] = "%s#%d" % (name, r)

tok = sd1_clip.SDTokenizer(tok_dir, pad_with_end=True, embedding_directory=emb_dir,
                           embedding_size=W, embedding_key="clip_g")

words = ("a photograph of an astronaut riding a horse on the moon, highly detailed, dramatic "
         "lighting, trending on artstation, 8k, octane render, volumetric fog, cinematic").split()
long1 = " ".join(words[i % len(words)] for i in range(90))        # > 77 tokens
long2 = " ".join(words[i % len(words)] for i in range(170))       # > 154 tokens
long3 = ", ".join("(%s:1.%d)" % (words[i % len(words)], i % 10) for i in range(80))

PROMPTS = [
    "", " ", "a cat", "A Cat Sitting On A Mat", "(cat)", "((cat))", "(((cat)))", "(cat:1.5)",
    "(cat:0)", "(cat: 1.5 )", "(cat:1e-1)", "(cat:1_0)", "(cat:+.5)", "(cat:-0.5)", "(a:b:1.2)",
    "(a:)", "(:1.2)", "(a:x)", "(a:1.2.3)", "((a:1.5) b)", "(a (b:0.5) c:1.3)", "((a):1.1)",
    "foo ((((lol (cat:666) attack:100)))) baz", "[cat]", "[(cat:1.2)]", "\\(cat\\)",
    "\\(cat:1.2\\)", "\\\\(x)", "(cat", "cat)", ")(a)(", "a)b(c)d", "((a)", "(a))b(",
    "caf\u00e9 (na\u00efve:1.2) \u65e5\u672c\u8a9e \U0001F431", "(\U0001F431:1.3) emoji",
    "a <|endoftext|> b", "tab\there\nnew line", "(x:1.1\u00a0)",
    long1, long2, long3, "(" + long1 + ":0.8)", "short (" + long1 + ")",
    "x " * 74 + "(abcdefghijklmnopqrstuvwxyz:1.2)", "y " * 72 + "(big cat:1.3) end", "y " * 74 + "(big cat:1.3) end",
    "z" * 400, "x " * 72 + "(one two three four five six seven eight:1.2) end",
    "x " * 72 + "(one two three four five six seven:1.2) end",
    "embedding:style1", "a embedding:style1, b", "(embedding:one:1.2) c", "embedding:missing foo bar",
    "x embedding:style1,", "embedding:one<lora:x:1>", "a\nembedding:one", "embedding:style1 embedding:one",
    "xembedding:one", "embedding:,one,", "embedding:../one", "k " * 74 + "embedding:style1 q",
]

cases = []
for p in PROMPTS:
    out = tok.tokenize_with_weights(p)
    chunks, weights = [], []
    for ch in out:
        ids, ws = [], []
        for t, w in ch:
            if isinstance(t, (int, np.integer)):
                ids.append(int(t))
            else:
                ids.append(rows[np.asarray(t).tobytes()])
            ws.append(float(w))
        chunks.append(ids)
        weights.append(ws)
    cases.append({"prompt": p, "ids": chunks, "weights": weights})

with open(os.path.join(out_dir, "prompt_cases.json"), "w", encoding="utf-8") as f:
    json.dump({"source": "ComfyUI SDTokenizer (StableCascadeClipGTokenizer settings), "
                         "tests/ref/make_prompt_cases.py",
               "embedding_width": W, "cases": cases}, f, ensure_ascii=False, separators=(",", ":"))
    f.write("\n")
print(len(cases), "cases")
