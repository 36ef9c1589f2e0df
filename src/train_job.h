/* The training engine behind cascade_trainer (api_train.c, cascade.h):
 * a Stage C fine-tune or LoRA run with kohya's recipe (issue 13,
 * doc/training.md §8). train_job.c opens and checks everything, encodes the
 * data once and runs the loop; train_save.c writes checkpoints and the
 * resumable state; train_sample.c the sample images. What the run has to
 * say goes through one event function (cs_tj_emit), never to a stream.
 * Not installed. */
#ifndef CS_TRAIN_JOB_H
#define CS_TRAIN_JOB_H

#include "cascade.h"
#include "lora_train.h"
#include "lr_sched.h"
#include "train_step.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { CS_TJ_SAVE_FP32, CS_TJ_SAVE_BF16, CS_TJ_SAVE_FP16 } cs_tj_save_prec;

/* The settings of a run, filled from the public keys (api_train.c); the
 * strings belong to the caller. */
typedef struct {
    const char *stage_c, *effnet, *previewer, *text_encoder, *models_dir, *tokenizer;
    const char *dataset_config, *train_data_dir;
    int res_w, res_h;                 /* the plain folder, or a config without a resolution */
    const char *output_dir, *output_name;
    const char *cache_dir;            /* NULL: OUTPUT_DIR/cache */
    int cache_latents, cache_text;    /* keep the encodings on disk */
    cs_train_cfg cfg;
    double lr;
    /* the schedule; sched.warmup / total are filled once the steps are
     * known (warmup_ratio >= 0: a ratio of them) */
    cs_lr_sched sched;
    int64_t warmup_steps;
    double warmup_ratio;
    const char *warmup_arg;           /* as given (kohya's ss_lr_warmup_steps), NULL: 0 */
    int epochs, steps;                /* 0 = not given */
    int save_every;                   /* epochs, 0 = only the final file */
    cs_tj_save_prec save_prec;
    int batch_size;                   /* the plain folder's batch */
    uint64_t seed;
    int seed_given;
    int sample_every;                 /* epochs, 0 = none */
    const char *sample_prompts;
    const char *resume;
    int save_state;                   /* a state with every checkpoint */
    int mixed_bf16;                   /* kohya's --mixed_precision bf16 (recorded; float32 math, TF32 products on a device) */
    int fused;                        /* --fused_backward_pass: 1 on, 0 off, -1 on where the unfused
                                         step would not fit the device (cs_tj_prepare sets cfg.fused) */
    /* LoRA mode: the network's settings, kohya's ss_network_args text (""
     * = not written) and the file to start from */
    int lora;
    cs_lora_train_cfg lora_cfg;
    const char *network_args;
    const char *network_weights;
    /* events (CASCADE_TE_*) with the run's figures in stat[CASCADE_TS_*];
     * a non-zero return asks the run to stop */
    int (*event)(void *user, int ev, const char *text);
    void *user;
    double *stat;
} cs_tj_opts;

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
} cs_tj_prompt;

int cs_tj_prompts_read(const char *path, cs_tj_prompt **out, int *n);
void cs_tj_prompts_free(cs_tj_prompt *p, int n);

/* A run: cs_tj_prepare opens and checks every input and writes nothing
 * (after it: the LoRA figures, the seed); cs_tj_run prepares if needed,
 * then writes, encodes and trains. */
typedef struct cs_tj cs_tj;
int cs_tj_new(cs_tj_opts *o, cs_tj **out);
int cs_tj_prepare(cs_tj *j);
int cs_tj_run(cs_tj *j);
void cs_tj_free(cs_tj *j);
/* Sends ev (text may be NULL); returns 1 when the callback asks to stop. */
int cs_tj_emit(const cs_tj_opts *o, int ev, const char *text);

/* ---- train_save.c ---- */
struct cs_stage_c;
/* The model's current weights in its file's key layout and metadata, every
 * float tensor in prec, written atomically to path; extra: metadata pairs
 * added (n_extra pairs). */
int cs_tj_save_weights(const struct cs_stage_c *m, const char *path, cs_tj_save_prec prec, const char *const *extra,
                       int n_extra);

/* Where the loop stands at an optimizer-step boundary. */
typedef struct {
    int64_t step;                     /* optimizer steps done */
    int64_t micro;                    /* micro-batches done (seeds the draws) */
    int epoch;                        /* the epoch of the next batch */
    int64_t batch;                    /* its index within the epoch */
    uint64_t seed;
} cs_tj_pos;

/* DIR/state-<step>/: model.safetensors (float32 master weights),
 * optimizer.safetensors (states, the adaptive buckets), train.json (pos and
 * what must match on resume); made beside it and renamed into place. The
 * path goes to out. */
int cs_tj_state_save(const char *dir, const struct cs_stage_c *m, cs_trainer *t, const float *buckets,
                     const cs_tj_pos *pos, const char *fingerprint, char *out, size_t out_len);
/* The same for a LoRA run: model.safetensors is the LoRA (float32, kohya's
 * keys), optimizer.safetensors the states of its A and B. */
int cs_tj_state_save_lora(const char *dir, const cs_lora_net *net, const float *buckets, const cs_tj_pos *pos,
                          const char *fingerprint, char *out, size_t out_len);
/* Reads DIR/train.json: pos, and checks the fingerprint. */
int cs_tj_state_read(const char *dir, cs_tj_pos *pos, const char *fingerprint);
/* Arranges for the optimizer states and buckets of DIR to be restored into t
 * (kept open until cs_tj_state_close). */
typedef struct cs_tj_resume cs_tj_resume;
int cs_tj_state_restore(const char *dir, cs_trainer *t, cs_tj_resume **out);
/* A LoRA run's state: A and B from DIR/model.safetensors, the optimizer
 * states of opt and the buckets (into t) restored at once. */
int cs_tj_state_restore_lora(const char *dir, cs_trainer *t, cs_lora_net *net, cs_opt_kind opt);
void cs_tj_state_close(cs_tj_resume *r);

/* ---- train_sample.c ---- */
/* Stage C sampling with the current weights, decoded by the previewer, to
 * OUT_DIR/sample/<name>_e<epoch>_<i>.png (a CASCADE_TE_SAMPLE event each). */
struct cs_previewer;
int cs_tj_samples(struct cs_stage_c *m, const struct cs_previewer *pv, const cs_tj_prompt *p, int n,
                  const char *out_dir, const char *name, int epoch, const cs_tj_opts *o);

#endif
