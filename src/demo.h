/* Demo weights: tiny networks of every stage with deterministic random
 * weights, written as ordinary safetensors files so that `cascade generate
 * --demo` runs every stage's real loader and forward code.
 *
 * The shapes follow the golden tiny configs (Stage C c_hidden [128,128],
 * Stage B [32,48,128,128] with repeats, Stage A with 2 bottleneck blocks, a
 * 2-layer CLIP of width 64) and use the official key names, so the files
 * look exactly like real checkpoints, only smaller. The values come from a
 * fixed-seed splitmix64 stream mapped to uniform numbers of the intended
 * standard deviation (no libm): the same bytes on every machine.
 *
 * This writer is part of libcascade because the public API's
 * cascade_use_demo (cascade.h) writes these files; the demo networks for
 * image inputs are in demo_vision.h, written when a run needs them. */
#ifndef CS_DEMO_H
#define CS_DEMO_H

#include <stddef.h>
#include <stdint.h>

#define CS_DEMO_SEED 20240213u
#define CS_DEMO_SIZE 256           /* default demo image side */

/* One tensor to generate: name, shape, and how to fill it. */
enum { CS_DI_NORMAL, CS_DI_ONE_PLUS, CS_DI_UNIFORM_POS };
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    int init;          /* CS_DI_NORMAL: ~N(0, std^2); ONE_PLUS: 1 + that; UNIFORM_POS: U(0.5, 1.5) */
    float std;
} cs_demo_tensor;

typedef struct {
    cs_demo_tensor *t;
    int n, cap;
} cs_demo_list;

void cs_demo_list_free(cs_demo_list *l);

/* Stage C / Stage B constructor arguments (upstream train/train_c.py / train_b.py). */
typedef struct {
    int levels;
    int c_hidden[4];
    int blocks_down[4], blocks_up[4];     /* blocks[0], blocks[1] */
    int repeat_down[4], repeat_up[4];     /* block_repeat[0], block_repeat[1] */
    const char *level_config[4];
    int c_cond, c_r;
    int c_clip_text, c_clip_pooled, c_clip_img;   /* Stage B: c_clip_pooled only */
    int n_conds;
    const char *conds[2];                 /* t_conds */
} cs_demo_unet;

/* Key lists in state_dict order. */
int cs_demo_stage_c(const cs_demo_unet *c, cs_demo_list *out);
int cs_demo_stage_b(const cs_demo_unet *c, cs_demo_list *out);
/* Decoder (and optionally encoder) of Stage A with levels = 2. */
int cs_demo_stage_a(int c_hidden, int bottleneck, int with_encoder, cs_demo_list *out);
int cs_demo_previewer(int c_hidden, cs_demo_list *out);
/* HF CLIPTextModelWithProjection names; vocab 49408, context 77. */
int cs_demo_clip(int width, int layers, int mlp, int proj, cs_demo_list *out);

/* The demo's own configs. */
void cs_demo_stage_c_cfg(cs_demo_unet *c);
void cs_demo_stage_b_cfg(cs_demo_unet *c);

/* Fills and writes list to path (dtype "F32" or "BF16"), seeded by seed
 * and the tensor index; meta: key/value pairs (n_meta pairs). */
int cs_demo_write(const char *path, const cs_demo_list *l, const char *dtype, uint64_t seed,
                  const char *const *meta, int n_meta);

typedef struct {
    char dir[3968];
    char text_encoder[4096], stage_c[4096], stage_b[4096], stage_a[4096], previewer[4096];
    int cleanup[6];             /* cs_cleanup_add handles: the folder, then the files */
} cs_demo_files;

/* Creates a private temporary folder ($TMPDIR or /tmp) holding all five
 * demo networks. The folder and files are on the signal cleanup list
 * (cancel.h) until cs_demo_remove. */
int cs_demo_create(cs_demo_files *out);
/* Deletes the files and the folder. */
void cs_demo_remove(cs_demo_files *f);

#endif
