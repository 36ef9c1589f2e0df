/* cascade train (issue 13, doc/training.md §8): the options (train.c), the
 * run (train_run.c), checkpoints and the resumable state (train_save.c),
 * sample images (train_sample.c). */
#ifndef CS_CLI_TRAIN_H
#define CS_CLI_TRAIN_H

#include "lora_train.h"
#include "lr_sched.h"
#include "train_step.h"

#include <stddef.h>
#include <stdint.h>

#define TR_ME "cascade train"

typedef enum { TR_SAVE_FP32, TR_SAVE_BF16, TR_SAVE_FP16 } tr_save_prec;

typedef struct {
    const char *stage_c, *effnet, *previewer, *text_encoder, *models_dir, *tokenizer;
    const char *dataset_config, *train_data_dir;
    int res_w, res_h;                 /* --resolution (the plain folder, or a config without one) */
    const char *output_dir, *output_name;
    const char *cache_dir;            /* NULL: OUTPUT_DIR/cache */
    int cache_latents, cache_text;    /* keep the encodings on disk */
    cs_train_cfg cfg;
    double lr;
    /* --lr_scheduler and its values; sched.warmup / total are filled once
     * the steps are known (warmup_ratio >= 0: a ratio of them) */
    cs_lr_sched sched;
    int64_t warmup_steps;
    double warmup_ratio;
    const char *warmup_arg;           /* as given (kohya's ss_lr_warmup_steps), NULL: 0 */
    int epochs, steps;                /* 0 = not given */
    int save_every;                   /* epochs, 0 = only the final file */
    tr_save_prec save_prec;
    int batch_size;                   /* --train_batch_size (the plain folder) */
    uint64_t seed;
    int seed_given;
    int sample_every;                 /* epochs, 0 = none */
    const char *sample_prompts;
    const char *resume;
    int save_state;                   /* --save_state: a state with every checkpoint */
    int threads, quiet;
    const char *device;               /* --device (NULL: the CPU) */
    /* LoRA mode (--network_module networks.lora): the network's settings,
     * kohya's ss_network_args (JSON of the --network_args words) and the
     * file to start from (--network_weights) */
    int lora;
    cs_lora_train_cfg lora_cfg;
    char network_args_json[512];
    const char *network_weights;
} tr_opts;

/* One sample prompt (kohya's prompt file: PROMPT --n NEG --w W --h H --d SEED
 * --l CFG --s STEPS), encoded before training. */
typedef struct {
    char *text, *negative;
    int width, height, steps;
    float cfg;
    uint64_t seed;
    int seed_given;
    float *clip_text;                 /* [2, 77, c_clip_text]: conditional, unconditional */
    float *pooled;                    /* [2, 1, c_clip_pooled] */
} tr_prompt;

int tr_prompts_read(const char *path, tr_prompt **out, int *n);
void tr_prompts_free(tr_prompt *p, int n);

/* The run: everything after the options. Returns the exit status. */
int tr_run(tr_opts *o);

/* ---- train_save.c ---- */
struct cs_stage_c;
/* The model's current weights in its file's key layout and metadata, every
 * float tensor in prec, written atomically to path; extra: metadata pairs
 * added (n_extra pairs). */
int tr_save_weights(const struct cs_stage_c *m, const char *path, tr_save_prec prec, const char *const *extra,
                    int n_extra);

/* Where the loop stands at an optimizer-step boundary. */
typedef struct {
    int64_t step;                     /* optimizer steps done */
    int64_t micro;                    /* micro-batches done (seeds the draws) */
    int epoch;                        /* the epoch of the next batch */
    int64_t batch;                    /* its index within the epoch */
    uint64_t seed;
} tr_pos;

/* DIR/state-<step>/: model.safetensors (float32 master weights),
 * optimizer.safetensors (states, the adaptive buckets), train.json (pos and
 * what must match on resume); made beside it and renamed into place. The
 * path goes to out. */
int tr_state_save(const char *dir, const struct cs_stage_c *m, cs_trainer *t, const float *buckets,
                  const tr_pos *pos, const char *fingerprint, char *out, size_t out_len);
/* The same for a LoRA run: model.safetensors is the LoRA (float32, kohya's
 * keys), optimizer.safetensors the states of its A and B. */
int tr_state_save_lora(const char *dir, const cs_lora_net *net, const float *buckets, const tr_pos *pos,
                       const char *fingerprint, char *out, size_t out_len);
/* Reads DIR/train.json: pos, and checks the fingerprint. */
int tr_state_read(const char *dir, tr_pos *pos, const char *fingerprint);
/* Arranges for the optimizer states and buckets of DIR to be restored into t
 * (kept open until tr_state_close). */
typedef struct tr_resume tr_resume;
int tr_state_restore(const char *dir, cs_trainer *t, tr_resume **out);
/* A LoRA run's state: A and B from DIR/model.safetensors, the optimizer
 * states of opt and the buckets (into t) restored at once. */
int tr_state_restore_lora(const char *dir, cs_trainer *t, cs_lora_net *net, cs_opt_kind opt);
void tr_state_close(tr_resume *r);

/* ---- train_sample.c ---- */
/* Stage C sampling with the current weights, decoded by the previewer, to
 * OUT_DIR/sample/<name>_e<epoch>_<i>.png. */
struct cs_previewer;
int tr_samples(struct cs_stage_c *m, const struct cs_previewer *pv, const tr_prompt *p, int n, const char *out_dir,
               const char *name, int epoch, int quiet);

#endif
