/* kohya sd-scripts' caption options at training time (doc/training.md §8),
 * as library/train_util.py BaseDataset.process_caption applies them to a
 * caption (prefix and suffix already joined, as cs_ds_scan does):
 *
 *   drop  = (caption_dropout_rate > 0 and u < caption_dropout_rate)
 *           or (caption_dropout_every_n_epochs > 0 and epoch % n == 0),
 *           epoch counted from 1;  a dropped caption is ""
 *   else, if shuffle_caption or caption_tag_dropout_rate > 0:
 *     tags  = [t.strip() for t in caption.strip().split(",")]  (empty tags kept)
 *     fixed = tags[:keep_tokens], flex = tags[keep_tokens:]
 *     shuffle_caption: flex shuffled (Fisher-Yates)
 *     tag dropout: a flex tag stays when u >= caption_tag_dropout_rate
 *     caption = ", ".join(fixed + flex)
 *   else the caption is unchanged (keep_tokens alone does nothing)
 *
 * kohya draws from Python's global `random`; we draw from a splitmix64
 * stream keyed by (seed, micro-batch, place in the batch), so a run is
 * fixed by its seed and a resumed run draws what the uninterrupted one
 * did. token_warmup and keep_tokens_separator are not applied (the config
 * reader warns). */
#ifndef CS_CAPTION_H
#define CS_CAPTION_H

#include "dataset.h"

#include <stdint.h>

/* 1 when the subset's captions can change from one step to the next
 * (shuffle_caption, or a dropout rate / every_n_epochs > 0). */
int cs_caption_varies(const cs_ds_subset *s);
/* The key of one draw: micro-batch `micro` (counted over the run), place
 * `slot` in it, run seed `seed`. */
uint64_t cs_caption_key(uint64_t seed, uint64_t micro, uint64_t slot);
/* The caption of this draw in *out (malloc'd; the caller frees it). epoch
 * counts from 1. CS_ENOMEM only. */
int cs_caption_process(const cs_ds_subset *s, const char *caption, int epoch, uint64_t key, char **out);

#endif
