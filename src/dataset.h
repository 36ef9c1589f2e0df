/* Training data for Stage C (issue 13, doc/training.md §7): kohya's dataset
 * config or a plain folder -> images with captions -> aspect-ratio buckets
 * -> batches. The cache of EffNet latents and CLIP-G embeddings is
 * dscache.h.
 *
 * Config: kohya sd-scripts' dataset TOML (docs/config_README-en.md; the key
 * schema is library/config_util.py ConfigSanitizer, branch stable-cascade),
 * DreamBooth style only ([[datasets.subsets]] with image_dir). A value is
 * looked up in the subset, then its dataset, then [general], then kohya's
 * default. doc/training.md §7 lists the keys that are used, kept for the
 * trainer, ignored with a warning, or refused. */
#ifndef CS_DATASET_H
#define CS_DATASET_H

#include "prompt.h"   /* cs_prompt_warn_fn */

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *image_dir;            /* required */
    char *caption_extension;    /* kohya's default ".caption"; a missing leading '.' is added */
    char *class_tokens;         /* caption of an image without a caption file, or NULL */
    char *caption_prefix;       /* joined with a space before / after the caption, or NULL */
    char *caption_suffix;
    int num_repeats;            /* 1; < 1: the subset is skipped with a warning, as kohya does */
    int is_reg;                 /* regularisation images (repeated to match the training images) */
    /* used by the trainer (caption.h; flip_aug not yet), not here */
    int shuffle_caption, keep_tokens, flip_aug;
    double caption_dropout_rate, caption_tag_dropout_rate;
    int caption_dropout_every_n_epochs;
} cs_ds_subset;

typedef struct {
    int width, height;          /* resolution; 0 = not given (the caller fills it before the scan) */
    int batch_size;             /* 1 */
    int enable_bucket;          /* 0 */
    int min_bucket_reso, max_bucket_reso, bucket_reso_steps;   /* 256, 1024, 64 */
    int bucket_no_upscale;      /* 0 */
    cs_ds_subset *subsets;
    int n_subsets;
} cs_ds_dataset;

typedef struct {
    cs_ds_dataset *datasets;
    int n;
} cs_ds_config;

/* The TOML text of a dataset config; name is used in messages ("FILE:LINE:COL:
 * problem"). warn (may be NULL) gets the ignored keys. CS_EFORMAT on a bad
 * config, CS_EUNSUP on a kohya feature we lack (metadata_file, ...). */
int cs_ds_config_parse(const char *text, size_t len, const char *name, cs_prompt_warn_fn warn, void *warn_ctx,
                       cs_ds_config *out);
int cs_ds_config_load(const char *path, cs_prompt_warn_fn warn, void *warn_ctx, cs_ds_config *out);
/* A plain folder: one dataset, one subset, captions from NAME.txt. */
int cs_ds_config_folder(const char *dir, cs_ds_config *out);
void cs_ds_config_free(cs_ds_config *c);   /* clears; NULL is fine */

/* ---- aspect-ratio buckets (kohya library/train_util.py BucketManager) ---- */

typedef struct {
    int (*resos)[2];            /* predefined (w, h), sorted; NULL with no_upscale */
    size_t n;
    int no_upscale;
    int64_t max_area;           /* width * height of the resolution */
    int steps;
} cs_bucketer;

/* kohya model_util.make_bucket_resolutions: the square of side
 * floor(sqrt(area) / steps) * steps, and for each width w = min_size,
 * min_size + steps, ... <= max_size: h = min(max_size, floor(area / w / steps) * steps),
 * both (w, h) and (h, w) if h >= min_size; sorted, without repeats. */
int cs_bucket_init(cs_bucketer *b, int width, int height, int min_size, int max_size, int steps, int no_upscale);
/* One fixed bucket (enable_bucket off): the resolution itself. */
int cs_bucket_init_fixed(cs_bucketer *b, int width, int height);
void cs_bucket_free(cs_bucketer *b);
/* BucketManager.select_bucket: the bucket of an image of w x h and the
 * size it is resized to before the centre crop to the bucket. Predefined
 * buckets: the image's own size if it is one, else the bucket of nearest
 * aspect (first of equals), resized to cover it. no_upscale: scaled down to
 * the area if larger, then each side cut to a multiple of steps.
 * CS_EARG if the bucket would have a side of 0. */
int cs_bucket_select(const cs_bucketer *b, int w, int h, int reso[2], int resized[2]);

/* ---- the scanned data set ---- */

typedef struct {
    char *path;                 /* the image file */
    char *caption;              /* prefix + caption + suffix */
    int width, height;          /* as decoded (the EXIF orientation applied) */
    uint64_t xxh64;             /* of the file's bytes */
    int bucket_w, bucket_h;     /* the training size */
    int resized_w, resized_h;   /* resized to this (covering the bucket), then centre-cropped */
    int num_repeats;            /* reg images: after balancing */
    int is_reg;
    int dataset, subset;        /* indices into the config */
} cs_ds_image;

typedef struct {
    int dataset, w, h;
    size_t *idx;                /* image indices, each num_repeats times (kohya's order) */
    size_t n;
} cs_ds_bucket;

typedef struct {
    size_t bucket, first, n;    /* images buckets[bucket].idx[first .. first + n) */
} cs_ds_batch;

typedef struct {
    cs_ds_image *images;
    size_t n_images;
    cs_ds_bucket *buckets;      /* non-empty ones, sorted by (w, h) within each dataset */
    size_t n_buckets;
    cs_ds_batch *batches;       /* every bucket cut into batch_size pieces, the last may be short */
    size_t n_batches;
} cs_dataset;

/* Reads every image_dir (*.png *.jpg *.jpeg and their upper-case forms;
 * .webp / .bmp are refused; names starting with '.' are skipped, as glob
 * does), the captions, the image sizes; buckets and batches. */
int cs_ds_scan(const cs_ds_config *cfg, cs_prompt_warn_fn warn, void *warn_ctx, cs_dataset **out);
void cs_ds_free(cs_dataset *ds);   /* NULL is fine */
/* An epoch's order: the batches and each bucket's images shuffled with a
 * splitmix64 stream of seed + epoch (kohya shuffles with Python's random
 * seeded the same way: the same idea, not the same order). */
void cs_ds_shuffle(cs_dataset *ds, uint64_t seed, uint64_t epoch);

#endif
