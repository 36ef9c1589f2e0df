/* ComfyUI workflows: reading them (API format, UI format, PNG text chunks),
 * the node classes cascade understands, mapping a Stable Cascade graph onto
 * one `cascade generate` run (workflow_plan.c), and writing the graph of
 * standard nodes for a run into the PNG (workflow_emit.c).
 *
 * Everything works on the API form: a JSON object {"id": {"class_type",
 * "inputs"}} where an input is a value or a link ["id", output_slot]. UI
 * files (nodes + links + widgets_values) are converted to it first. */
#ifndef CS_CLI_WORKFLOW_H
#define CS_CLI_WORKFLOW_H

#include "generate.h"

#include <jansson.h>

#define WF_MAX_IN 10
#define WF_MAX_OUT 4

/* One node class: its link inputs, its widgets in widgets_values order (a
 * seed widget is followed by ComfyUI's control_after_generate value in UI
 * files), its outputs. */
typedef struct {
    const char *name;
    const char *in[WF_MAX_IN], *in_type[WF_MAX_IN];
    const char *widget[WF_MAX_IN];
    const char *out[WF_MAX_OUT];
} wf_class;

/* NULL for a class cascade does not run. */
const wf_class *wf_class_find(const char *name);
int wf_class_n_out(const wf_class *c);

/* Reads FILE (JSON in either format, or a PNG with a "prompt" or
 * "workflow" text chunk; the API "prompt" is preferred) into the API form.
 * 0 or CS_EIO / CS_EARG with one line naming the file (and node). */
int wf_load(const char *path, json_t **api);
/* The "prompt:" and "workflow:" EXIF texts of a ComfyUI WebP (d: the whole
 * file); each NULL when absent (malloc'd). 0, or CS_EIO for a broken file. */
int wf_webp_texts(const unsigned char *d, size_t n, const char *path, char **prompt, char **workflow);
/* UI form -> API form (muted nodes dropped; reroutes and primitive nodes
 * resolved). */
int wf_from_ui(const json_t *ui, const char *what, json_t **api);
/* Checks the graph: known classes, links to existing nodes and slots,
 * no cycles. One line naming the node id and class. */
int wf_check(const json_t *api, const char *what);

/* Fills o (zeroed by the caller, then gen_settings_defaults) for the run the graph
 * describes. env: where names resolve. Returns 0, or CS_EARG / CS_EMODEL /
 * CS_EIO with one line naming the node. */
typedef struct {
    const char *what;           /* the workflow file, for messages */
    const char *models_dir;     /* --models */
    const char *input_dir;      /* --input, or NULL */
    const char *file_dir;       /* the workflow file's folder */
    int demo;                   /* model names are not resolved */
} wf_env;

/* SaveLatent: what it saves, and where (its prefix may hold subfolders) */
#define WF_MAX_SAVE_LATENT 8
typedef enum { WF_LATENT_ENCODED = 0, WF_LATENT_C, WF_LATENT_B, WF_LATENT_FILE } wf_latent_src;
typedef struct {
    char node[64];               /* "7 (SaveLatent)" */
    char prefix[256];            /* "latents/ComfyUI" */
    wf_latent_src src;
    char file[GEN_PATH];         /* WF_LATENT_FILE: the LoadLatent file */
} wf_save_latent;

typedef struct {
    char stage_c_name[256], stage_b_name[256], text_name[256], stage_a_name[256], effnet_name[256];
    char cv_name[256];
    char prefix[256];
    char node_c[64], node_b[64];   /* "3 (KSampler)" for the plan */
    int compression;
    char path[CASCADE_PART_COUNT][GEN_PATH];   /* resolved model files */
    char init_path[GEN_PATH];             /* img2img image */
    wf_save_latent save[WF_MAX_SAVE_LATENT];
    int n_save;
    int latents_only;                     /* LoadLatent -> SaveLatent only: no image chain, no models */
} wf_plan_info;

int wf_plan(const json_t *api, const wf_env *env, opts *o, wf_plan_info *info);

/* The graph of standard ComfyUI nodes for m's run: API form ("prompt"
 * chunk) and UI form ("workflow" chunk), compact ASCII JSON (malloc'd). */
int wf_emit(const gen_meta *m, const char *prefix, char **api, char **ui);

#endif
