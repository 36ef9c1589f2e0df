/* Weight lookup over one safetensors file, for loaders that bind a network's
 * parameters by name and validate them strictly.
 *
 * Names are asked for in the official (StableCascade state_dict) spelling;
 * the map adds the file's prefix (ComfyUI "model.diffusion_model.", ...) and
 * remembers which tensors were used, so that after binding a whole network
 * cs_wmap_finish() can report missing, mis-shaped AND unexpected tensors in
 * one message. Alternative spellings (diffusers' to_q/to_k/to_v, Stage B's
 * clip_txt_pooled_mapper) are the callers' business: they try each name with
 * cs_wmap_find before requiring one (see blocks.c, stage_b.c).
 *
 * Views returned point into the file's mapping: nothing is copied. */
#ifndef CS_WEIGHTS_H
#define CS_WEIGHTS_H

#include "safetensors.h"

#include <stdint.h>

#define CS_WMAP_MSG 700

typedef struct {
    cs_st_file *f;
    char prefix[64];
    size_t plen;
    int n;                    /* tensors in the file */
    unsigned char *used;      /* [n] */
    uint32_t *slot, nslot;    /* name hash -> index + 1 */
    int nprob;                /* problems found so far */
    char msg[CS_WMAP_MSG];    /* the first few, "; "-separated */
    int64_t nparams;          /* elements of the used tensors */
    int ndtype[3];            /* used tensors per dtype: F32, BF16, F16 */
    const struct cs_lora_patch *over;   /* merged replacements (lora.h), or NULL */
} cs_wmap;

/* prefix: "" / NULL for none, or e.g. "w." (golden op files). */
int cs_wmap_init(cs_wmap *m, cs_st_file *f, const char *prefix);
void cs_wmap_free(cs_wmap *m);

/* Picks the first of "", "model.diffusion_model.", "diffusion_model.",
 * "model." under which `probe` exists; returns 1 if one did (0: prefix left ""). */
int cs_wmap_detect_prefix(cs_wmap *m, const char *probe);

/* The detected prefix as a static string (valid after the map is freed). */
const char *cs_wmap_prefix(const cs_wmap *m);

/* Binds the merged tensors of a LoRA patch (lora.h) in place of the file's
 * ones; the patch must outlive whatever the map binds. */
void cs_wmap_overlay(cs_wmap *m, const struct cs_lora_patch *p);

/* Tensor <prefix><name> or NULL; find marks it used, peek does not. */
const cs_tensor *cs_wmap_peek(const cs_wmap *m, const char *name);
const cs_tensor *cs_wmap_find(cs_wmap *m, const char *name);

/* Requires <prefix><name> with the given float dtype and shape; on success
 * copies the view into *out and returns 0, else records a problem, zeroes
 * *out and returns -1. */
int cs_wmap_req(cs_wmap *m, cs_tensor *out, const char *name, int ndim, const int64_t *dims);
/* Same for a tensor already found (t may be NULL = missing `name`). */
int cs_wmap_check(cs_wmap *m, cs_tensor *out, const cs_tensor *t, const char *name, int ndim,
                  const int64_t *dims);

/* Records a free-form problem. */
void cs_wmap_problem(cs_wmap *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records every unused tensor under the prefix as unexpected, then returns 0
 * if there were no problems, else CS_EMODEL with the message
 * "<file>: not a <what> checkpoint: <first problems> (+N more)". */
int cs_wmap_finish(cs_wmap *m, const char *what);

/* Dominant float dtype of the used tensors. */
int cs_wmap_dtype(const cs_wmap *m);

/* Basename of a path (for messages). */
const char *cs_basename(const char *path);

#endif
