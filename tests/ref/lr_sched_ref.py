#!/usr/bin/env python3
"""The learning rate of every optimizer step for kohya's --lr_scheduler
choices, from diffusers' own get_scheduler as kohya sd-scripts'
train_util.get_scheduler_fix calls it (num_cycles only for
cosine_with_restarts, power only for polynomial; --lr_warmup_steps read by
kohya's int_or_float and a ratio turned into int(ratio * max_train_steps)).
Writes tests/data/lr_sched/lr.txt for tests/test_lr_sched.c:

    case KIND WARMUP_ARG TOTAL CYCLES POWER LR
    STEP LR_OF_THAT_STEP          (one line per optimizer step, %.17g)

The lr of step s is the optimizer's param_groups[0]["lr"] when its s-th
step() runs (s = 0, 1, ...), with lr_scheduler.step() after each optimizer
step as kohya's loop does (accelerate steps the scheduler once per
optimizer step on one process). Needs torch and diffusers (a venv):
    python tests/ref/lr_sched_ref.py tests/data/lr_sched/lr.txt
"""
import sys

import torch
from diffusers.optimization import get_scheduler


def int_or_float(value):   # kohya's --lr_warmup_steps type (library/train_util.py)
    if value.endswith("%"):
        return float(value[:-1]) / 100.0
    f = float(value)
    if f >= 1:
        return int(value)
    return float(value)


def lrs(kind, warmup_arg, total, cycles, power, lr):
    w = int_or_float(warmup_arg)
    warmup = int(w * total) if isinstance(w, float) else w
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    kw = dict(num_warmup_steps=warmup, num_training_steps=total)
    if kind == "constant":
        kw = {}
    elif kind == "constant_with_warmup":
        del kw["num_training_steps"]
    elif kind == "cosine_with_restarts":
        kw["num_cycles"] = cycles
    elif kind == "polynomial":
        kw["power"] = power
    sched = get_scheduler(kind, opt, **kw)
    out = []
    for s in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if s + 1 < total:   # (after the last one: polynomial with warmup = total divides by 0)
            sched.step()
    return out


CASES = [
    ("constant", "0", 7, 1, 1.0, 1e-4),
    ("constant_with_warmup", "3", 9, 1, 1.0, 1e-4),
    ("constant_with_warmup", "0.25", 20, 1, 1.0, 2e-4),
    ("linear", "0", 10, 1, 1.0, 1e-4),
    ("linear", "4", 13, 1, 1.0, 3e-5),
    ("linear", "20", 10, 1, 1.0, 1e-4),      # warmup longer than the run
    ("cosine", "0", 16, 1, 1.0, 1e-4),
    ("cosine", "5", 37, 1, 1.0, 1e-3),
    ("cosine", "10%", 50, 1, 1.0, 1e-4),
    ("cosine", "0.05", 30, 1, 1.0, 1e-4),    # int(1.5) = 1 warmup step
    ("cosine_with_restarts", "0", 24, 3, 1.0, 1e-4),
    ("cosine_with_restarts", "2", 31, 1, 1.0, 1e-4),
    ("cosine_with_restarts", "0.1", 40, 4, 1.0, 5e-4),
    ("polynomial", "0", 12, 1, 1.0, 1e-4),
    ("polynomial", "3", 17, 1, 2.0, 1e-4),
    ("polynomial", "0.2", 25, 1, 0.5, 1e-3),
    ("polynomial", "5", 5, 1, 1.0, 1e-4),   # warmup = total
]

with open(sys.argv[1], "w") as f:
    for c in CASES:
        f.write("case %s %s %d %d %.17g %.17g\n" % c)
        for s, v in enumerate(lrs(*c)):
            f.write("%d %.17g\n" % (s, v))
