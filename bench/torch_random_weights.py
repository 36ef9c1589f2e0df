#!/usr/bin/env python3
"""Write random-weight safetensors files in the REAL official key layout.

Reads shared/spec/manifests/<variant>.json (names and shapes in state_dict
order) and streams one tensor at a time to <out>/<variant>[_bf16].safetensors,
so memory stays small even for Stage C (4 GB in F32).  Values are
deterministic per tensor name (seed mixed with crc32(name)): N(0, 0.02) for
weights, biases, GRN gamma/beta and Stage-A gammas; 1 + N(0, 0.02) for
BatchNorm and CLIP LayerNorm weights; running_mean 0, running_var 1,
num_batches_tracked 0 (I64).  Data are laid out like safetensors' own writer
(sorted by dtype size, then name) with a space-padded header and a
__metadata__ entry.  Files belong outside the repo (e.g. /work/bigtmp).

  bench/torch_random_weights.py --out /work/bigtmp [--dtype F32|BF16] [--seed 1234]
                                [stage_c_lite stage_b_lite text_encoder stage_a ...]
"""
import argparse
import json
import os
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common as tc  # noqa: E402  (stdlib only)

DEFAULT_VARIANTS = ["stage_c_lite", "stage_b_lite", "text_encoder", "stage_a"]
ITEMSIZE = {"F32": 4, "BF16": 2, "I64": 8}


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("variants", nargs="*", default=DEFAULT_VARIANTS,
                    help="manifest names or paths (default: %s)" % " ".join(DEFAULT_VARIANTS))
    ap.add_argument("--out", required=True, help="output directory (not inside the repo)")
    ap.add_argument("--dtype", default="F32", choices=("F32", "BF16"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--manifests", default=os.path.join(tc.SHARED, "spec", "manifests"))
    return ap.parse_args()


def load_manifest(a, v):
    path = v if v.endswith(".json") else os.path.join(a.manifests, v + ".json")
    with open(path) as f:
        m = json.load(f)
    return m["variant"], [(n, list(s)) for n, s in m["tensors"]]


def norm_affine_prefixes(names):
    """Modules whose .weight is a norm scale: BatchNorms (have running_var), CLIP LNs."""
    pre = {n[: -len(".running_var")] for n in names if n.endswith(".running_var")}
    pre |= {n.rsplit(".", 1)[0] for n in names if "layer_norm" in n}
    return pre


def write_file(a, variant, tensors):
    import torch
    fdt = a.dtype
    entries = []
    for name, shape in tensors:
        dt = "I64" if name.endswith("num_batches_tracked") else fdt
        entries.append((name, shape, dt))
    # safetensors' writer order: larger dtypes first, then by name.
    entries.sort(key=lambda e: (-ITEMSIZE[e[2]], e[0]))
    header = {"__metadata__": {
        "format": "pt", "generator": "cascade bench/torch_random_weights.py",
        "variant": variant, "seed": str(a.seed), "init": "N(0,0.02); norm weights 1+N(0,0.02)"}}
    off = 0
    for name, shape, dt in entries:
        n = 1
        for d in shape:
            n *= d
        nbytes = n * ITEMSIZE[dt]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    suffix = "_bf16" if fdt == "BF16" else ""
    path = os.path.join(a.out, variant + suffix + ".safetensors")
    tmp = path + ".tmp"
    affine = norm_affine_prefixes([e[0] for e in entries])
    t0 = time.perf_counter()
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name, shape, dt in entries:
            is_aff = name.rsplit(".", 1)[0] in affine
            t = tc.random_tensor(torch, name, tuple(shape), a.seed, is_aff)
            if dt == "BF16":
                # round-to-nearest-even, as torch's .to(bfloat16)
                b = t.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
            elif dt == "I64":
                b = t.to(torch.int64).contiguous().numpy().tobytes()
            else:
                b = t.to(torch.float32).contiguous().numpy().tobytes()
            exp = header[name]["data_offsets"]
            if len(b) != exp[1] - exp[0]:
                raise SystemExit(f"{variant}: {name}: wrote {len(b)} bytes, expected {exp[1] - exp[0]}")
            f.write(b)
    os.replace(tmp, path)
    tc.emit({"bench": "torch_random_weights", "variant": variant, "path": path,
             "dtype": fdt, "tensors": len(entries), "data_bytes": off,
             "file_bytes": os.path.getsize(path), "seconds": round(time.perf_counter() - t0, 1)})


def main():
    a = parse()
    tc.ensure_venv()
    out = os.path.abspath(a.out)
    if out == tc.REPO or out.startswith(tc.REPO + os.sep):
        raise SystemExit("refusing to write weights inside the repository: " + out)
    os.makedirs(out, exist_ok=True)
    a.out = out
    for v in a.variants:
        variant, tensors = load_manifest(a, v)
        write_file(a, variant, tensors)


if __name__ == "__main__":
    main()
