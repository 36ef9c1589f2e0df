/* The training cache (issue 13): per-image EffNet latents and per-caption
 * CLIP-G embeddings, computed once and kept on disk.
 *
 * Key: a description string naming every input that decides the result,
 *   latent: "latent v1 image=<xxh64 of the image file> model=<model id>
 *            bucket=WxH resized=WxH flip=F"
 *   text:   "text v1 caption=<xxh64 of the caption bytes>:<length>
 *            model=<model id> style=<prompt style>"
 * (ids as 16 hex digits; the model id is the xxh64 of the encoder file,
 * cs_file_xxh64, so a changed file misses). The file is
 * DIR/<kind>-<xxh64 of the description, 16 hex>.safetensors.
 *
 * Format: safetensors (cs_st_write: temp file + fsync + rename, the temp
 * file removed on every exit path), F32 tensors, and the metadata
 * "cascade.cache" = "1", "key" = the description, "xxh64" = XXH64 of the
 * tensor bytes in file order. A read that finds the file unreadable, short,
 * not safetensors, with another key, other names / shapes / dtypes, or bytes
 * that do not hash to "xxh64" does not trust it: the entry is computed again
 * and rewritten. */
#ifndef CS_DSCACHE_H
#define CS_DSCACHE_H

#include "dataset.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    float *data;        /* the caller's buffer of prod(shape) floats */
} cs_dscache_tensor;

/* Fills every t[i].data; returns 0 or a negative CS_E* with cs_error set. */
typedef int (*cs_dscache_fn)(void *ctx, cs_dscache_tensor *t, int n);

enum { CS_DSCACHE_MISS = 0, CS_DSCACHE_HIT = 1, CS_DSCACHE_BAD = 2 /* a bad entry, replaced */ };

/* t[0..n) from the cache entry (kind, desc) in dir, or computed by fn and
 * stored. *status (may be NULL): CS_DSCACHE_*. dir is created (one level)
 * if missing. A failed store is an error: the data are in t all the same. */
int cs_dscache_get(const char *dir, const char *kind, const char *desc, cs_dscache_tensor *t, int n,
                   cs_dscache_fn fn, void *ctx, int *status);

/* The path of an entry (for tests and messages); out of out_len bytes. */
int cs_dscache_path(const char *dir, const char *kind, const char *desc, char *out, size_t out_len);

/* The description strings above. */
void cs_dscache_latent_desc(const cs_ds_image *im, uint64_t model_id, int flip, char *out, size_t out_len);
void cs_dscache_text_desc(const char *caption, uint64_t model_id, const char *style, char *out, size_t out_len);

/* ---- the encoders as compute functions (src/dataset_encode.c) ---- */

struct cs_effnet;
struct cs_clip;
struct cs_tokenizer;

/* The EffNet input of an image at its bucket, as kohya's stable-cascade
 * branch makes it: RGB in [0, 1], resized to (resized_w, resized_h) (we
 * use the antialiased bicubic of image_prep.h; kohya uses cv2 INTER_AREA),
 * centre-cropped (offsets (resized - bucket) / 2, rounded down) to the
 * bucket, mirrored if flip, then ImageNet mean/std. x: [bucket_h,
 * bucket_w, 3]. The file must still hash to im->xxh64. */
int cs_ds_effnet_input(const cs_ds_image *im, int flip, float *x);
/* -> latent [1, ceil(bucket_h / 32), ceil(bucket_w / 32), c_latent] */
int cs_ds_latent(const struct cs_effnet *m, const cs_ds_image *im, int flip, float *latent);
/* caption -> text [77, width] and pooled [proj] (official prompt style: one
 * 77-token chunk, as kohya's tokenizer with max_length 77) */
int cs_ds_text(const struct cs_clip *m, const struct cs_tokenizer *tok, const char *caption, float *text, float *pooled);

#endif
