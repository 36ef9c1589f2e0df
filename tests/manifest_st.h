/* Test/bench helper: safetensors files in the exact layout of a spec
 * manifest (shared/spec/manifests/<variant>.json: names and shapes in
 * state_dict order), either sparse (header + ftruncate, no data: loaders
 * only read headers) or filled with random weights of a sane scale
 * (U(-1,1)*sqrt(3/fan_in) for matrices and convs, 0.1*U for biases,
 * 0.5*U for GRN gamma/beta) for benchmarks. */
#ifndef MANIFEST_ST_H
#define MANIFEST_ST_H

#include "tensor.h"

#include <stdint.h>

typedef struct {
    char name[200];
    int ndim;
    int64_t shape[8];
} ms_tensor;

/* Reads the "tensors" list of a manifest; free(*out). Returns 0 or -1 (message on stderr). */
int ms_load(const char *manifest, ms_tensor **out, int *n);

enum { MS_OFFICIAL, MS_DIFFUSERS };

/* Writes the tensors as dt (F32/BF16/F16) to path with every name prefixed
 * by prefix (may be ""), in the official or diffusers spelling (stage_b:
 * also clip_mapper -> clip_txt_pooled_mapper). random = 0: sparse file;
 * else random data from seed. Returns 0 or -1 (message on stderr). */
int ms_write(const char *path, const ms_tensor *t, int n, cs_dtype dt, const char *prefix, int naming, int stage_b,
             int random, uint64_t seed);

#endif
