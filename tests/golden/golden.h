/* The golden runner: `tests/golden/cascade-golden PATH/CASE` opens CASE.io.safetensors,
 * finds a handler by __metadata__["module"], lets it compute outputs and
 * compares each one against out.* (rel_l2 and max_abs, in double).
 *
 * The case file is untrusted input: golden_case_open validates its metadata
 * (tolerances, checked_outputs, config, weights, fp32_vs_fp64) and every
 * tensor's shape before a handler runs, the config getters range-check each
 * value, and every comparison checks the reference's full shape, so a bad
 * case is an error line, never an out-of-bounds access.
 *
 * A handler reads inputs (golden_in*), parameters (golden_param), weight files
 * (golden_weights) and config (golden_cfg*), and reports every output it
 * computes with golden_check* . It must not depend on case names: only on
 * module, config and the tensors present. */
#ifndef CS_GOLDEN_H
#define CS_GOLDEN_H

#include "lora.h"
#include "safetensors.h"

#include <jansson.h>
#include <stddef.h>

typedef struct gcase gcase;

typedef struct {
    const char *module;    /* exact __metadata__["module"] value */
    int (*run)(gcase *c);  /* 0, or a negative code with cs_error set */
} golden_handler;

/* Registered in golden.c; each handler file exports its own table. */
extern const golden_handler golden_ops_handlers[];
extern const golden_handler golden_nets_handlers[];
extern const golden_handler golden_rng_handlers[];
extern const golden_handler golden_sampling_handlers[];
extern const golden_handler golden_clip_handlers[];
extern const golden_handler golden_image_handlers[];
extern const golden_handler golden_vision_handlers[];
extern const golden_handler golden_train_handlers[];

/* Largest dimension a case tensor may have (and the bound config sizes get):
 * far above every real case, small enough that products of a few stay far
 * from overflowing size_t. */
#define GOLDEN_MAX_DIM (1 << 20)

/* Opens PATH (with or without .io.safetensors) and validates it; strict: see
 * golden_check. On failure returns a negative code with cs_error set to one
 * line naming the file and the problem. */
int golden_case_open(const char *path, int strict, gcase **out);
void golden_case_close(gcase *c);   /* also closes its weights files */
/* Runs the case's handler; 0 when it ran (whatever the comparisons gave). */
int golden_case_run(gcase *c);
/* After golden_case_run: 1 iff every checked or required output was computed
 * and within its limits and at least one output was compared; prints the
 * "not computed" lines. */
int golden_case_verdict(gcase *c);
const char *golden_file(const gcase *c);          /* the .io.safetensors path */

const char *golden_path(const gcase *c);          /* case path without suffix */
cs_st_file *golden_io(const gcase *c);
const char *golden_meta(const gcase *c, const char *key);
json_t *golden_config(const gcase *c);            /* parsed "config" JSON object, or NULL */
/* config[key] as an integer in [lo, hi] (booleans are 0/1), def if absent.
 * Anything else records a config error (the case fails, naming the key) and
 * returns def, so a handler never computes with an out-of-range value. */
int golden_cfg_int(gcase *c, const char *key, int def, int lo, int hi);
/* config[key] as a finite number in [lo, hi], same rules. */
double golden_cfg_num(gcase *c, const char *key, double def, double lo, double hi);
/* Records a config error for key (first one wins); returns CS_EFORMAT. */
int golden_cfg_bad(gcase *c, const char *key, const char *why);
/* 0, or the recorded config error's code (message in cs_error). */
int golden_cfg_error(const gcase *c);

/* Tensor by full name ("in.x", "w.weight"); NULL if absent. */
const cs_tensor *golden_tensor(const gcase *c, const char *name);
/* Op parameter "w.<key>" (NULL if absent). */
const cs_tensor *golden_param(const gcase *c, const char *key);
/* 1 iff t is [d0, d1, ...] (n dims). */
int golden_shape_is(const cs_tensor *t, int n, const size_t *dims);
/* Float copy of a tensor (cs_free it); NULL + cs_error if absent. */
float *golden_f32(const gcase *c, const char *name, const cs_tensor **t);
/* NCHW image tensor as channels-last [N,H,W,C] copy; dims out. */
float *golden_nhwc(const gcase *c, const char *name, size_t *N, size_t *C, size_t *H, size_t *W);
/* Weights file for a role of __metadata__["weights"] (opened once, closed by the runner). */
int golden_weights(gcase *c, const char *role, cs_st_file **out);
/* The case's __metadata__["lora"] (a JSON string: list of {"file": NAME,
 * "strength": S}, files beside the io file) as a list for the loaders
 * (n = 0 when absent); free with golden_lora_free. A case with a lora list
 * whose handler never asks for it fails (it would test nothing). */
int golden_lora(gcase *c, cs_lora_list *out);
void golden_lora_free(cs_lora_list *l);

/* Compares y, computed with shape dims[0..ndim) (row-major), against the
 * reference tensor name, which must have exactly that shape. Limits: the
 * per-output tolerance, the file-level one for checked outputs (the stricter
 * where both apply), and in strict mode at most GOLDEN_STRICT_FACTOR times
 * the case's recorded float32-vs-float64 error. Returns 0 when compared
 * (pass or fail is recorded), a negative code when it could not compare. */
int golden_check(gcase *c, const char *name, const float *y, int ndim, const size_t *dims);
/* Compare a channels-last [N,H,W,C] result against an NCHW [N,C,H,W] reference. */
int golden_check_nhwc(gcase *c, const char *name, const float *y, size_t N, size_t C, size_t H, size_t W);
/* Output is named in the case's tolerances / checked_outputs. */
int golden_has_output(const gcase *c, const char *name);
/* Makes name gate the verdict like a checked output (it must be compared and
 * pass); call before its golden_check. */
void golden_require(gcase *c, const char *name);

/* Strict mode's multiple of the recorded float32-vs-float64 error and its
 * floors (relative to the reference: rel_l2, and max_abs / max|ref|). */
#define GOLDEN_STRICT_FACTOR 8.0
#define GOLDEN_STRICT_FLOOR 1e-6

/* --precision in force (CS_PREC_*). With 16-bit products every limit is at
 * least the precision's floor: rel_l2 GOLDEN_BF16_RTOL / GOLDEN_FP16_RTOL (a
 * few hundred unit roundoffs of bf16's 8 / fp16's 11 mantissa bits, for
 * errors that grow with depth) and max_abs that times the factor times the
 * reference's largest value. Fixed before any GPU run, not fitted to one. */
extern int golden_precision;
#define GOLDEN_BF16_RTOL 3e-2
#define GOLDEN_FP16_RTOL 5e-3
#define GOLDEN_REDUCED_ATOL_FACTOR 10.0

#endif
