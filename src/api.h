/* Inside of the public API (cascade.h): the context and the parameter
 * table, shared by the api*.c files. Not installed. */
#ifndef CS_API_H
#define CS_API_H

#include "cascade.h"
#include "demo.h"
#include "image_in.h"
#include "lora.h"
#include "models.h"
#include "pipeline.h"

#include <signal.h>

/* One row of the parameter table: every limit of a key in one place (the
 * CLI's option checks are meant to read these same rows). */
typedef struct {
    const char *name;
    int type;               /* CASCADE_T_* */
    double min, max, def;   /* numbers: inclusive range (min exclusive if min_open) and default */
    int min_open;
    int multiple;           /* int: the value must be a multiple of this (0: any) */
    const char *sdef;       /* strings: the default ("auto"), or NULL */
    const char *const *choices;   /* strings: the accepted values (NULL-terminated), or NULL = any */
} cs_param_row;

/* The row of key, or NULL for an unknown key. */
const cs_param_row *cs_param_row_of(int key);
/* 0 when v is a value of int key (range and multiple), else CASCADE_E_ARG
 * with the message in ctx ("width: 12 is not a multiple of 8"). */
int cs_param_check_int(cascade_ctx *ctx, cascade_param key, long long v);

#define CS_API_MAX_LORA CASCADE_MAX_LORAS
/* the pipeline's image list is the public limit */
_Static_assert(CS_GEN_MAX_IMAGES == CASCADE_MAX_IMAGES, "CS_GEN_MAX_IMAGES is CASCADE_MAX_IMAGES");

/* One image of cascade_add_image*: preprocessed, and what the metadata
 * says of it. */
typedef struct {
    char file[256];                  /* base name, "" for a buffer */
    unsigned long long xxh64;        /* of the file's bytes (0 for a buffer) */
    int w, h;
    double strength;
} cs_api_input;

struct cascade_ctx {
    long long iv[CASCADE_P_COUNT];   /* int keys */
    double fv[CASCADE_P_COUNT];      /* float keys */
    char *sv[CASCADE_P_COUNT];       /* string keys (malloc'd or NULL) */
    char *model[CASCADE_P_COUNT];    /* per cascade_part: the file (malloc'd or NULL) */
    char *text_prefix, *text_config; /* from discovery: a combined checkpoint's prefix, config.json */
    char *found_tokenizer;           /* the tokenizer folder discovery found */
    int demo_tokenizer;              /* 1: the byte-level fallback (cascade_use_demo) */
    cs_demo_files *demo;             /* cascade_use_demo's folder, or NULL */
    cs_pipeline *pl;                 /* kept between calls with KEEP_LOADED */
    int pl_stale;                    /* models changed since pl was made */
    cascade_progress_fn progress;
    void *progress_user;
    cascade_preview_fn preview;
    void *preview_user;
    cascade_log_fn log;
    void *log_user;
    volatile sig_atomic_t cancel;    /* cascade_cancel */
    cascade_latent_fn latent;
    void *latent_user;
    /* cascade_add_lora: per part (Stage C, Stage B, text encoder); paths malloc'd */
    cs_lora lora[3][CS_API_MAX_LORA];
    cs_lora_list lora_list[3];
    /* cascade_add_image*: n_img CLIP-preprocessed images [n, S, S, 3] */
    int n_img;
    float *img_pixels;
    float img_strength[CS_GEN_MAX_IMAGES];
    cs_api_input img[CS_GEN_MAX_IMAGES];
    /* cascade_set_init_image*: the decoded image (rgb NULL: none) */
    cs_image init;
    cs_api_input init_info;
    char *input_json[2];             /* cascade_input_json's last answers */
    /* the demo's CLIP vision / EfficientNet files, written when first needed */
    char *demo_extra[2];
    int demo_extra_hnd[2];
    char said[700];                  /* cascade_device_chosen: "cuda, bf16", "cpu, fp32 (why)" */
    int prec;                        /* the CS_PREC_* that setup chose, -1 before */
    char err[1024];
};

/* cascade_models_scan's result (api_models.c, api_choose.c) */
struct cascade_models {
    cs_model_set *set;
};

/* The device precision last set on this thread (CS_PREC_*; -1 none), for
 * choosing variants by a GPU's memory: cs_api_compute and the CLI's
 * --device note it. */
void cs_api_note_precision(int prec);
int cs_api_noted_precision(void);

/* api_inputs.c: the inputs of cascade_add_lora / _add_image / _set_init_image
 * into g (init_rgb cs_alloc'ed into *init_rgb, freed by the caller) and the
 * model paths; frees what the context holds of them. */
int cs_api_inputs_apply(cascade_ctx *ctx, cs_gen_params *g, float **init_rgb);
void cs_api_inputs_free(cascade_ctx *ctx);
/* The demo's extra networks for the inputs in use (a CLIP vision tower for
 * images, an EfficientNet encoder for an init image), written once. */
int cs_api_demo_extras(cascade_ctx *ctx, int images, int init);

/* The bytes the context's LoRAs add to each part's memory need (their
 * float32 copies of the weights they touch), into req->extra. */
int cs_api_lora_bytes(cascade_ctx *ctx, cs_choice_req *req);

/* The internal choice of a public one (api_choose.c). */
const cs_choice *cs_api_choice(const cascade_choice *c);

/* A new context's values: the table's defaults. */
void cs_api_defaults(cascade_ctx *ctx);
/* pthread_once: the kernel table for this CPU ($CASCADE_SIMD). Returns its
 * result (an unknown $CASCADE_SIMD level is an error every time). */
int cs_api_init(cascade_ctx *ctx);
/* Copies this thread's cs_error message into ctx and returns code. */
int cs_api_fail(cascade_ctx *ctx, int code);
/* The thread's compute setup for ctx: threads, device, precision. */
int cs_api_compute(cascade_ctx *ctx);
/* The tokenizer folder in force (NULL: byte-level fallback, or none). */
const char *cs_api_tokenizer(const cascade_ctx *ctx);

#endif
