/* Model files: which network a safetensors file holds, where the files are,
 * which variant to run on this machine, and their xxh64.
 *
 * Identification reads only the header (doc/reference.md, "Files"): signature tensors give the network and variant, then every tensor
 * of the expected list (built from the constructor configs, no data read)
 * is checked by name, shape and dtype. Accepted spellings: official names,
 * diffusers (attention split into to_q/to_k/to_v + to_out.0, Stage B
 * clip_txt_pooled_mapper, Stage A vquantizer.embedding), ComfyUI's split
 * (to_q/k/v beside attn.out_proj) and any "prefix." in front (ComfyUI
 * combined checkpoints: model.diffusion_model., vae., text_encoder. ...).
 * Only spellings the network loaders read are accepted (not, e.g., ComfyUI's
 * transposed clip_g.text_projection outside the text model's prefix). */
#ifndef CS_MODELS_H
#define CS_MODELS_H

#include "safetensors.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CS_NET_UNKNOWN = 0,
    CS_NET_STAGE_C, CS_NET_STAGE_C_LITE,
    CS_NET_STAGE_B, CS_NET_STAGE_B_LITE,
    CS_NET_STAGE_A, CS_NET_EFFNET, CS_NET_PREVIEWER,
    CS_NET_TEXT_G,          /* CLIP ViT-bigG text tower (HF CLIPTextModelWithProjection) */
    CS_NET_CLIP_VISION,     /* CLIP vision tower: recognised, not validated (no key list) */
    CS_NET_COUNT
} cs_net;

/* The pipeline slot a network fills. */
typedef enum {
    CS_PART_STAGE_C, CS_PART_STAGE_B, CS_PART_STAGE_A, CS_PART_TEXT,
    CS_PART_EFFNET, CS_PART_PREVIEWER, CS_PART_CLIP_VISION,
    CS_PART_COUNT
} cs_part;

typedef enum { CS_NAMES_OFFICIAL, CS_NAMES_DIFFUSERS, CS_NAMES_COMFY } cs_naming;

const char *cs_net_name(cs_net n);     /* manifest name: "stage_c_lite", "text_encoder", ... */
const char *cs_net_title(cs_net n);    /* "Stage C lite", ... for messages */
cs_part cs_net_part(cs_net n);
int cs_net_is_lite(cs_net n);
const char *cs_part_name(cs_part p);   /* "stage_c", "stage_b", "stage_a", "text_encoder", ... */
const char *cs_part_title(cs_part p);  /* "Stage C", ..., "text encoder" */
int cs_part_from_name(const char *s);  /* -1 if unknown */
const char *cs_naming_name(cs_naming k);

/* One tensor a network must have, under its official name. */
enum { CS_EXP_PARAM, CS_EXP_BUFFER, CS_EXP_INT64 };   /* INT64 = num_batches_tracked: optional */
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    int kind;
} cs_expect;

/* The full expected list of net (malloc'd; free()). Not for CLIP_VISION. */
int cs_net_expected(cs_net net, cs_expect **out, int *n);
/* Parameter count (CS_EXP_PARAM elements) and all state_dict elements. */
int64_t cs_net_params(cs_net net);
int64_t cs_net_elements(cs_net net);

/* Stage C / Stage B constructor config (upstream train/train_c.py / train_b.py). */
typedef struct {
    char stage;                 /* 'C' or 'B' */
    int levels;
    int c_hidden[4], nhead[4];
    int blocks_down[4], blocks_up[4];   /* blocks[0], blocks[1] */
    int repeat_down[4], repeat_up[4];   /* block_repeat[0], block_repeat[1] */
    const char *level_config[4];
    int c_cond;
    /* inputs and outputs (0: the stage has none) */
    int c_in, c_out, patch;              /* latent channels, patch size */
    int c_clip_text, c_clip_pooled, c_clip_img, c_clip_seq;
    int c_effnet, c_pixels;              /* Stage B's conditioning latents and pixels */
    int nconds;                          /* timestep conditions besides r */
} cs_unet_cfg;
const cs_unet_cfg *cs_net_unet_cfg(cs_net net);   /* NULL if not Stage B/C */
struct cs_net_info_s;
/* "full" or "lite" when a loaded Stage C / B (src/unet.h cs_net_info) is
 * exactly that released config, else "custom" */
const char *cs_unet_variant(const struct cs_net_info_s *in);

/* Latent sizes for an image of px pixels: Stage C's ceil(px / 42.67) in the
 * float64 arithmetic of the official code, Stage B's ceil(px / 4). */
int cs_latent_c(int px);
int cs_latent_b(int px);

/* A network found in a file. */
typedef struct {
    cs_net net;
    char prefix[96];        /* "" or e.g. "model.diffusion_model." */
    cs_naming naming;
    cs_dtype dtype;         /* dtype of most float weights */
    int mixed;              /* float weights of more than one dtype */
    int n_tensors;          /* tensors of the file used by this network */
    int n_extra;            /* other tensors under prefix (ignored) */
    int64_t params;
    uint64_t weight_bytes;  /* bytes of those tensors at file dtype */
    int64_t largest;        /* elements of the largest tensor */
} cs_netid;

/* Every network in f (a combined checkpoint holds several); header only.
 * Returns the count; 0 when nothing is recognised (the message "path: no
 * Stable Cascade network recognised ..." is set); CS_EMODEL when a network
 * is recognised but broken: "path: Stage C lite: missing tensor 'x'" /
 * "...: tensor 'x' has shape [a], expected [b]". */
int cs_identify(const cs_st_file *f, cs_netid *out, int max);
int cs_identify_path(const char *path, cs_netid *out, int max);

/* ---- finding files ---- */

typedef struct {
    char *path;
    cs_netid info;       /* info.net == CS_NET_UNKNOWN: not usable (see problem) */
    int n_nets, index;      /* index-th of n_nets networks in this file */
    uint64_t size;
    int root;               /* search root index, -1 = given on the command line */
    char *problem;          /* NULL, or why the file cannot be used */
    int foreign;            /* a readable safetensors file of some other model */
    char *config;           /* text encoder: config.json beside it, else NULL */
} cs_model_file;

typedef struct {
    cs_model_file *files;
    int n;
    char **roots;           /* search roots, in order */
    char **root_why;        /* "--models", "$CASCADE_MODELS", "default" */
    int n_roots;
    char **looked;          /* every folder examined (or noted as missing) */
    int n_looked;
    char *tokenizer;        /* folder with vocab.json + merges.txt, or NULL */
    int forced[CS_PART_COUNT];   /* file index given for a part, -1 = none */
} cs_model_set;

/* Search roots: models_dir (--models, may be NULL), then $CASCADE_MODELS
 * (':'-separated), then $XDG_DATA_HOME/cascade/models (default
 * ~/.local/share/cascade/models). Each root may be a flat folder with the
 * official names, a Hugging Face snapshot (or hub cache repo folder), a
 * diffusers layout, or a ComfyUI root or its models/ folder. */
int cs_models_scan(const char *models_dir, cs_model_set **out);
/* Same with explicit roots (why[i] may be NULL). */
int cs_models_scan_roots(const char *const *roots, const char *const *why, int n, cs_model_set **out);
void cs_models_free(cs_model_set *s);   /* NULL is fine */
/* --stage-c FILE etc.: identifies path and forces it for part; CS_EMODEL if
 * it holds no network of that part. */
int cs_models_force(cs_model_set *s, cs_part part, const char *path);
/* "looked in: a, b (does not exist), c" for messages (static buffer per thread). */
const char *cs_models_looked(const cs_model_set *s);

/* ---- choosing a variant by memory ---- */

typedef enum { CS_VAR_AUTO, CS_VAR_FULL, CS_VAR_BF16, CS_VAR_LITE, CS_VAR_LITE_BF16 } cs_variant;
int cs_variant_parse(const char *s, cs_variant *v);   /* CS_EARG if unknown */
const char *cs_variant_name(cs_variant v);
/* The variant class of a Stage B/C file: lite?, F32 or 16-bit. */
cs_variant cs_variant_of(const cs_netid *ni);

typedef struct {
    uint64_t weights;   /* resident via mmap at file dtype */
    uint64_t scratch;   /* F32 copy of the largest weight (16-bit files) */
    uint64_t acts;      /* activations at this size and batch (CFG: 2N) */
    uint64_t total;
} cs_mem_need;

/* The official network's sizes at dtype, as if found in a file. */
void cs_netid_nominal(cs_net net, cs_dtype dtype, cs_netid *ni);
/* Memory one stage needs to run ni at width x height, batch n: on the CPU
 * (dev_prec -1: weights mapped at file dtype), or in a device's memory
 * (weights converted to 4 or 2 bytes by precision CS_PREC_*). */
void cs_mem_need_of(const cs_netid *ni, int width, int height, int batch, cs_mem_need *out);
void cs_mem_need_dev(const cs_netid *ni, int width, int height, int batch, int dev_prec, cs_mem_need *out);
/* Memory this process may use: min(MemAvailable, cgroup limit - working
 * set); CASCADE_MEMORY (e.g. "8G") overrides. src describes where it came from. */
int cs_mem_available(uint64_t *have, char *src, size_t len);
/* Safety margin kept free: 10% of have, at least 256 MiB. */
uint64_t cs_mem_margin(uint64_t have);

typedef struct cs_choice_req_s {
    int width, height, batch;
    cs_variant variant[CS_PART_COUNT];  /* per part (only Stage C/B use it); AUTO default */
    uint64_t have;                      /* 0 = measure */
    int want_effnet, want_previewer;    /* make these parts required */
    int dev_prec;                       /* -1: the CPU runs the networks; else the device's CS_PREC_* */
    uint64_t dev_have;                  /* free device memory */
    char dev_name[160];                 /* "NVIDIA H100 80GB HBM3 (cuda:0)" */
    uint64_t extra[CS_PART_COUNT];      /* host bytes added to a part's weights (LoRA float32 copies) */
} cs_choice_req;

typedef struct {
    int file[CS_PART_COUNT];            /* index into set->files, -1 = none */
    cs_mem_need need[CS_PART_COUNT];
    uint64_t need_max, have, margin;
    int need_part;                      /* the part with the largest need */
    int fits;                           /* need_max + margin <= have */
    char have_src[160];
    char why[CS_PART_COUNT][200];       /* per part: why this file */
} cs_choice;

void cs_choice_req_init(cs_choice_req *r);   /* 1024x1024, batch 1, auto, the CPU */
/* Picks per part the best-quality file present (full > lite, F32 > 16-bit)
 * that fits; stages load one at a time, so the need is the max over parts.
 * Fails with CS_EMODEL "no Stage B found (looked in: ...)" if a required
 * part (C, B, A, text encoder) is missing, or an explicit variant is absent. */
int cs_models_choose(const cs_model_set *s, const cs_choice_req *req, cs_choice *out);
/* Without files: the best of full|bf16|lite|lite-bf16 whose official
 * networks fit have (text encoder BF16, Stage A F32). */
cs_variant cs_models_recommend(const cs_choice_req *req, uint64_t have, uint64_t *need);

/* ---- hashes ---- */

/* XXH64 (seed 0) of a whole file, cached by path + size + mtime in
 * $XDG_CACHE_HOME/cascade/hashes (default ~/.cache/cascade/hashes), a text
 * file rewritten atomically. *cached = 1 when it came from the cache. */
int cs_file_xxh64(const char *path, uint64_t *hash, int *cached);
/* The cached hash only: 1 if the cache has path at its current size and
 * mtime (*hash set), else 0. */
int cs_file_xxh64_cached(const char *path, uint64_t *hash);
/* A file's size and modification time, as the cache keys an entry. */
typedef struct {
    uint64_t size;
    long long sec, nsec;
} cs_file_stamp;
/* The hash computed, the cache neither read nor written (any thread);
 * *stamp: the file as it was before it was read. */
int cs_file_xxh64_compute(const char *path, uint64_t *hash, cs_file_stamp *stamp);
/* Records path's hash in the cache, made of the file at stamp (from
 * cs_file_xxh64_compute): a file changed since then does not match it. */
void cs_file_xxh64_remember(const char *path, const cs_file_stamp *stamp, uint64_t hash);

#endif
