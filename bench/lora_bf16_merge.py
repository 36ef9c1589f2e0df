#!/usr/bin/env python3
# How much of a LoRA's delta a merge into a bf16 W' keeps (bench/RESULTS-lora.md; no numpy):
# W0 = the first 64 rows of a bf16 tensor of FILE; A ~ U(+-1/sqrt(K)) (kohya's init); B after k
# steps = k * lr an element with one sign per element (Adafactor moves an element ~lr a step; a
# steady direction: random signs grow as sqrt(k), slower still); s = alpha / rank = 8 / 16.
# Prints the share of W' elements whose bf16 value moves off W0 (every 7th column).
# Use: bench/lora_bf16_merge.py FILE TENSOR
import json, struct, random, sys, math
path, name = sys.argv[1], sys.argv[2]
f = open(path, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n))
t = h[name]; a, b = t['data_offsets']; rows, K = t['shape'][0], int(len(t['shape']) > 1 and math.prod(t['shape'][1:]))
f.seek(8 + n + a); raw = f.read(min(b - a, 2 * K * 64))   # the first 64 rows
def bf(u): return struct.unpack('<f', struct.pack('<I', u << 16))[0]
def rnd(x):  # float32 -> bf16 round to nearest even, as float
    u = struct.unpack('<I', struct.pack('<f', x))[0]; u = (u + 0x7fff + ((u >> 16) & 1)) >> 16; return bf(u)
w0 = [bf(v) for v in struct.unpack('<%dH' % (len(raw) // 2), raw)]
r, lr, s = 16, 1e-4, 0.5
random.seed(1)
A = [[random.uniform(-1, 1) / math.sqrt(K) for _ in range(K)] for _ in range(r)]
sgn = [[random.choice((-1, 1)) for _ in range(r)] for _ in range(64)]
print("%s %s: |W0| mean %.3g" % (name, t['shape'], sum(abs(x) for x in w0) / len(w0)))
for k in (1, 10, 100, 1000):
    moved = tot = 0; dsum = 0
    for i in range(64):
        for j in range(0, K, 7):
            d = s * sum(sgn[i][q] * k * lr * A[q][j] for q in range(r))
            dsum += abs(d); tot += 1; moved += rnd(w0[i * K + j] + d) != w0[i * K + j]
    print("  after %4d steps: |s B A| mean %.2e, W' elements whose bf16 value moves: %.1f %%" % (k, dsum / tot, 100 * moved / tot))
