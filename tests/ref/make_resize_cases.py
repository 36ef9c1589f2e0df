#!/usr/bin/env python3
"""tests/data/resize_bicubic_cases.txt: torch's plain bicubic resize
(F.interpolate(mode="bicubic", align_corners=False), no antialias: what
ComfyUI's common_upscale(..., "bicubic", ...) calls) of deterministic
images, for tests/test_resize.c.

  python tests/ref/make_resize_cases.py   (torch)

Each case: a line "H W C Ho Wo", then Ho*Wo*C values channels-last. The
input is x[h, w, c] = sin(0.37 * i + 0.1 * c) * 0.8 + 0.5, i = h * W + w
(values past [0, 1] too, so the unclamped overshoot is compared).
"""
import math, os
import torch
import torch.nn.functional as F

cases = [(16, 12, 3, 7, 5), (5, 7, 3, 13, 11), (6, 6, 1, 6, 6), (9, 4, 2, 4, 9), (256, 256, 3, 192, 192)]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'resize_bicubic_cases.txt')
with open(out, 'w') as f:
    for H, W, C, Ho, Wo in cases:
        x = torch.tensor([[[math.sin(0.37 * (h * W + w) + 0.1 * c) * 0.8 + 0.5 for c in range(C)]
                           for w in range(W)] for h in range(H)], dtype=torch.float32)
        y = F.interpolate(x.permute(2, 0, 1)[None], size=(Ho, Wo), mode='bicubic', align_corners=False)
        y = y[0].permute(1, 2, 0).contiguous().reshape(-1)
        if H * W > 1000:   # the big case: a sample of values only
            idx = list(range(0, y.numel(), 97))
            f.write('%d %d %d %d %d sample97\n' % (H, W, C, Ho, Wo))
            f.write(' '.join('%.9g' % y[i].item() for i in idx) + '\n')
        else:
            f.write('%d %d %d %d %d\n' % (H, W, C, Ho, Wo))
            f.write(' '.join('%.9g' % v for v in y.tolist()) + '\n')
