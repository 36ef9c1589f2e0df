#!/usr/bin/env python3
"""kohya's caption rules on cases whose outcome needs no random draw (rates
0 or 1, tag dropout 1 or 1e-300, no shuffle; every_n_epochs over several
epochs), from kohya sd-scripts' own BaseDataset.process_caption: its source
is taken out of library/train_util.py (branch stable-cascade) and run on a
stub dataset and subset. Writes tests/data/caption/kohya.txt for
tests/test_caption.c, one case a line, tab-separated:

    SHUFFLE KEEP_TOKENS DROPOUT_RATE EVERY_N TAG_DROPOUT_RATE EPOCH<TAB>CAPTION<TAB>RESULT

    python tests/ref/caption_ref.py SD_SCRIPTS/library/train_util.py tests/data/caption/kohya.txt
"""
import ast
import math
import random
import sys
import textwrap

src = open(sys.argv[1]).read()
fn = None
for node in ast.walk(ast.parse(src)):
    if isinstance(node, ast.FunctionDef) and node.name == "process_caption":
        fn = textwrap.dedent(ast.get_source_segment(src, node))
        break
env = {"random": random, "math": math, "BaseSubset": object}
exec(fn, env)
process_caption = env["process_caption"]


class Subset:
    caption_prefix = caption_suffix = None
    keep_tokens_separator = None
    caption_separator = ","
    token_warmup_step = 0
    token_warmup_min = 1


class Dataset:
    replacements = {}
    current_step = 0
    max_train_steps = 100


CAPTIONS = [
    "a cat, sitting, on a mat, photo",
    "  solo ,1girl,, red hair ,smile  ",
    "single tag",
    "",
    ",",
    "a,b",
    "x\t, y\n,z",
]
OPTS = [   # shuffle keep rate every tag_rate
    (0, 0, 0.0, 0, 0.0),
    (0, 2, 0.0, 0, 0.0),       # keep_tokens alone: nothing
    (0, 0, 0.0, 0, 1e-300),    # the split / strip / join, every tag kept
    (0, 1, 0.0, 0, 1e-300),
    (0, 0, 0.0, 0, 1.0),       # every flex tag dropped
    (0, 2, 0.0, 0, 1.0),
    (0, 9, 0.0, 0, 1.0),       # keep_tokens beyond the tags
    (0, 0, 1.0, 0, 0.0),       # whole-caption dropout
    (0, 0, 0.0, 3, 0.0),       # every third epoch
    (0, 1, 0.0, 2, 1e-300),
]

random.seed(0)
with open(sys.argv[2], "w") as f:
    for o in OPTS:
        for epoch in (1, 2, 3, 4, 6) if o[3] else (1,):
            for c in CAPTIONS:
                s = Subset()
                s.shuffle_caption, s.keep_tokens, s.caption_dropout_rate = bool(o[0]), o[1], o[2]
                s.caption_dropout_every_n_epochs, s.caption_tag_dropout_rate = o[3], o[4]
                d = Dataset()
                d.current_epoch = epoch
                out = process_caption(d, s, c)
                esc = lambda t: t.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                f.write("%d %d %.17g %d %.17g %d\t%s\t%s\n" % (o + (epoch,) + (esc(c), esc(out))))
