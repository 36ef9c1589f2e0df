/* The golden runner: `cascade dev golden PATH/CASE` opens CASE.io.safetensors,
 * finds a handler by __metadata__["module"], lets it compute outputs and
 * compares each one against out.* (rel_l2 and max_abs, in double).
 *
 * A handler reads inputs (golden_in*), parameters (golden_param), weight files
 * (golden_weights) and config (golden_cfg*), and reports every output it
 * computes with golden_check* . It must not depend on case names: only on
 * module, config and the tensors present. */
#ifndef CS_GOLDEN_H
#define CS_GOLDEN_H

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

const char *golden_path(const gcase *c);          /* case path without suffix */
cs_st_file *golden_io(const gcase *c);
const char *golden_meta(const gcase *c, const char *key);
json_t *golden_config(const gcase *c);            /* parsed "config" JSON object, or NULL */
int golden_cfg_int(const gcase *c, const char *key, int def);
double golden_cfg_num(const gcase *c, const char *key, double def);

/* Tensor by full name ("in.x", "w.weight"); NULL if absent. */
const cs_tensor *golden_tensor(const gcase *c, const char *name);
/* Op parameter "w.<key>" (NULL if absent). */
const cs_tensor *golden_param(const gcase *c, const char *key);
/* Float copy of a tensor (cs_free it); NULL + cs_error if absent. */
float *golden_f32(const gcase *c, const char *name, const cs_tensor **t);
/* NCHW image tensor as channels-last [N,H,W,C] copy; dims out. */
float *golden_nhwc(const gcase *c, const char *name, size_t *N, size_t *C, size_t *H, size_t *W);
/* Weights file for a role of __metadata__["weights"] (opened once, closed by the runner). */
int golden_weights(gcase *c, const char *role, cs_st_file **out);

/* Compare y (same layout and element count as the reference tensor name). */
int golden_check(gcase *c, const char *name, const float *y, size_t n);
/* Compare a channels-last result against an NCHW reference. */
int golden_check_nhwc(gcase *c, const char *name, const float *y_nhwc);
/* List of output names in the case's tolerances / checked_outputs. */
int golden_has_output(const gcase *c, const char *name);

#endif
