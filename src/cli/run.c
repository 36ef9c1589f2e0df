/* cascade run FILE: a ComfyUI workflow (API or UI JSON, or a PNG that
 * carries one) mapped onto one generate run (workflow_plan.c), with
 * generate's checks, progress, Ctrl-C handling and output files; SaveImage's
 * prefix names the files as ComfyUI does (PREFIX_00001_.png). */
#include "cli.h"
#include "workflow.h"

#include "cascade.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ME "cascade run"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: cascade run FILE [options]\n"
        "\n"
        "Runs a ComfyUI Stable Cascade workflow: FILE is API-format JSON, UI-format JSON (nodes + links)\n"
        "or a PNG saved by ComfyUI or cascade (its 'prompt' / 'workflow' text chunks), or a WebP saved\n"
        "by ComfyUI (the same texts in its EXIF).\n"
        "\n"
        "  -o, --output DIR       folder for the images, named as SaveImage does: PREFIX_00001_.png, and\n"
        "                         SaveLatent's PREFIX_00001_.latent (default .)\n"
        "      --models DIR       where model names resolve (a ComfyUI root or models/ folder, ...);\n"
        "                         then $CASCADE_MODELS, then $XDG_DATA_HOME/cascade/models\n"
        "      --input DIR        where LoadImage names resolve (default: the workflow's folder, then .)\n"
        "      --dry-run          print the resolved plan (stages, files, sampler, seed, size) and exit\n"
        "      --demo             tiny random-weight networks instead of the named models\n"
        "      --threads N        worker threads (default: all cores, or $CASCADE_THREADS)\n"
        "      --device D         auto, cpu, cuda, cuda:N (default: $CASCADE_DEVICE, else auto)\n"
        "      --precision P      auto, fp32, bf16, fp16\n"
        "      --tokenizer DIR    folder with vocab.json and merges.txt\n"
        "      --json             progress and results as JSON lines on stdout\n"
        "  -q, --quiet            no progress on stderr\n"
        "  -h, --help             this text\n"
        "\n"
        "Exit status: 0 done; 2 bad usage; 1 error (the workflow: an unsupported node, a bad link,\n"
        "a cycle, a missing model or image; files, memory, the run); 130 interrupted.\n");
}

enum { O_MODELS = 256, O_INPUT, O_DRY, O_DEMO, O_THREADS, O_DEVICE, O_PRECISION, O_TOKENIZER, O_JSON };

static const struct option longopts[] = {
    {"output", required_argument, 0, 'o'}, {"models", required_argument, 0, O_MODELS},
    {"input", required_argument, 0, O_INPUT}, {"dry-run", no_argument, 0, O_DRY},
    {"demo", no_argument, 0, O_DEMO}, {"threads", required_argument, 0, O_THREADS},
    {"device", required_argument, 0, O_DEVICE}, {"precision", required_argument, 0, O_PRECISION},
    {"tokenizer", required_argument, 0, O_TOKENIZER}, {"json", no_argument, 0, O_JSON},
    {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
};

static void print_stage(const char *name, const char *node, const gen_stage *sp, uint64_t seed,
                        const char *model, const char *file)
{
    printf("%s: node %s\n", name, node);
    printf("  model     %s%s%s%s\n", model, file ? " -> " : "", file ? file : "", "");
    if (sp->ksampler)
        printf("  sampler   %s, scheduler %s\n", sp->ksampler, sp->scheduler);
    else
        printf("  sampler   %s (cascade's official sampler), cfg_rho %g\n",
               sp->sampler == CASCADE_SAMPLER_DDIM ? "ddim" : sp->sampler == CASCADE_SAMPLER_LCM ? "lcm" : "ddpm",
               (double)sp->cfg_rho);
    printf("  steps %d, cfg %g, seed %llu, denoise %g, shift %g\n", sp->steps, (double)sp->cfg,
           (unsigned long long)seed, sp->ksampler ? sp->denoise : 1.0, (double)sp->shift);
}

typedef struct {
    const wf_plan_info *info;
    const char *file;
} plan_ctx;

/* ctx's file for part, or "?" */
static const char *file_of(cascade_ctx *ctx, cascade_part part)
{
    const char *f = cascade_get_model(ctx, part);
    return f ? f : "?";
}

static void plan_print(void *pctx, const opts *o, cascade_ctx *ctx)
{
    const plan_ctx *pc = pctx;
    const wf_plan_info *in = pc->info;
    const gen_settings *g = &o->g;
    printf("workflow: %s\n", pc->file);
    printf("size: %dx%d, batch %d, compression %d (Stage C latent %dx%d)\n", g->width, g->height, g->batch,
           in->compression, cascade_latent_side(g->width, CASCADE_LATENT_C),
           cascade_latent_side(g->height, CASCADE_LATENT_C));
    printf("prompt: %s\nnegative: %s%s\n", g->prompt, g->negative ? g->negative : "",
           g->prompt_style == CASCADE_PROMPT_OFFICIAL ? " (official prompt reading)" : "");
    printf("text encoder: %s -> %s\n", in->text_name, file_of(ctx, CASCADE_PART_TEXT_ENCODER));
    for (int p = 0; p < 3; p++)
        for (int i = 0; i < o->n_lora[p]; i++)
            printf("lora (%s): %s strength %g\n", p == 0 ? "stage_c" : p == 1 ? "stage_b" : "text_encoder",
                   o->lora[p][i].path, (double)o->lora[p][i].strength);
    for (int i = 0; i < o->n_images; i++)
        printf("image variation: %s strength %g (CLIP vision %s -> %s)\n", o->image_path[i],
               (double)o->image_strength[i], in->cv_name, file_of(ctx, CASCADE_PART_CLIP_VISION));
    if (o->init_image)   /* a workflow's init image is used (strength 0.6) */
        printf("img2img: %s (EfficientNet %s -> %s)\n", o->init_image, in->effnet_name, file_of(ctx, CASCADE_PART_EFFNET));
    print_stage("Stage C", in->node_c, &g->c, g->seed, in->stage_c_name, cascade_get_model(ctx, CASCADE_PART_STAGE_C));
    print_stage("Stage B", in->node_b, &g->b, g->seed_b_set ? g->seed_b : g->seed, in->stage_b_name,
                cascade_get_model(ctx, CASCADE_PART_STAGE_B));
    printf("  negative  %s\n", g->b_uncond_zero ? "ConditioningZeroOut (zeros)" : "Stage C's negative prompt");
    printf("Stage A: %s -> %s\n", in->stage_a_name, file_of(ctx, CASCADE_PART_STAGE_A));
    printf("output: %s/%s_NNNNN_.png%s\n", o->out ? o->out : ".", in->prefix, o->demo ? " (demo networks)" : "");
    for (int k = 0; k < in->n_save; k++)
        printf("latent: node %s: %s latent -> %s/%s_NNNNN_.latent\n", in->save[k].node,
               in->save[k].src == WF_LATENT_C ? "Stage C" : in->save[k].src == WF_LATENT_B ? "Stage B" : "encoded image",
               o->out ? o->out : ".", in->save[k].prefix);
    fflush(stdout);
}

/* a graph of LoadLatent -> SaveLatent only: each file read (ComfyUI's
 * multiplier for files without the marker) and written in the current
 * format; all or nothing */
static int copy_latents(const wf_plan_info *info, const char *out, const char *prompt, int dry, int json)
{
    if (dry) {
        for (int k = 0; k < info->n_save; k++)
            printf("latent: node %s: %s -> %s/%s_NNNNN_.latent\n", info->save[k].node, info->save[k].file,
                   out ? out : ".", info->save[k].prefix);
        return 0;
    }
    cli_signals_install();
    cli_message_clear();
    opts o = {0};
    gen_output go = {0};
    gen_latents l = {0};
    int hnd[GEN_MAX_SAVE_LATENT] = {0}, rc = gen_output_plan(&go, out, 1, 1, 0);
    if (!rc && !go.to_dir)
        rc = cli_error(CASCADE_E_ARG, "-o %s: a workflow writes numbered files: give a folder", out);
    o.n_save_latent = info->n_save;
    o.latent_prompt = prompt;
    for (int k = 0; k < info->n_save; k++)
        o.save_latent_prefix[k] = info->save[k].prefix;
    if (!rc)
        rc = gen_latents_plan(&o, &go);
    for (int k = 0; !rc && k < info->n_save; k++) {
        float *x;
        int d[4];
        if ((rc = cascade_latent_read(cli_ctx(), info->save[k].file, &x, &d[0], &d[1], &d[2], &d[3])) != 0) {
            cli_error(rc, "%s", cascade_errmsg(cli_ctx()));
            break;
        }
        /* one SaveLatent at a time: its file is slot 0 */
        o.save_latent_prefix[0] = info->save[k].prefix;
        o.n_save_latent = 1;
        free(l.x[0]);
        l.x[0] = x;
        memcpy(l.dim[0], d, sizeof d);
        rc = gen_latents_write(&l, &o, &go, hnd + k);
    }
    if (!rc && cli_stop_pending())
        rc = CASCADE_E_INTR;
    if (rc)
        gen_output_unwind_from(&go, 0);
    gen_latents_done(&l, rc != 0);
    for (int k = 0; k < GEN_MAX_SAVE_LATENT; k++)
        cli_cleanup_del(hnd[k]);
    int status = 0;
    if (rc) {
        int why = cli_stop_pending();
        if (rc == CASCADE_E_INTR || why) {
            fprintf(stderr, ME ": %s; nothing written\n", cli_stop_text(why));
            status = cli_stop_status(why);
        } else {
            const char *msg = cli_message(rc);
            fprintf(stderr, ME ": %s\n", msg ? msg : cascade_last_error());
            status = 1;
        }
    } else {
        for (int i = 0; i < go.n_written; i++) {
            if (json)
                gen_json_emit(json_pack("{s:s, s:s}", "event", "latent", "path", go.written[i]));
            else
                printf("%s\n", go.written[i]);
        }
    }
    gen_latents_free(&l);
    gen_output_free(&go);
    return status;
}

/* wf_load's and wf_plan's failures: the CLI's own lines (cli_error) */
static const char *wf_message(int rc)
{
    const char *m = cli_message(rc);
    return m ? m : cascade_last_error();
}

int cmd_run(int argc, char **argv)
{
    const char *out = NULL, *models = NULL, *input = NULL, *device = NULL, *precision = NULL, *tok = NULL;
    int dry = 0, demo = 0, threads = 0, json = 0, quiet = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_MODELS: models = optarg; break;
        case O_INPUT: input = optarg; break;
        case O_DRY: dry = 1; break;
        case O_DEMO: demo = 1; break;
        case O_THREADS:
            if (cli_parse_threads(ME, "--threads", optarg, &threads)) return 2;
            break;
        case O_DEVICE: device = optarg; break;
        case O_PRECISION: precision = optarg; break;
        case O_TOKENIZER: tok = optarg; break;
        case O_JSON: json = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case ':': fprintf(stderr, ME ": option %s needs a value\n", argv[optind - 1]); return 2;
        default: fprintf(stderr, ME ": unknown option '%s' (see 'cascade run --help')\n", argv[optind - 1]); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, ME ": %s\n", optind >= argc ? "no workflow file (cascade run FILE)"
                                                     : "one workflow file at a time");
        return 2;
    }
    const char *file = argv[optind];
    json_t *api = NULL;
    cli_message_clear();
    int rc = wf_load(file, &api);
    if (rc) {
        fprintf(stderr, ME ": %s\n", wf_message(rc));
        return 1;
    }
    opts *o = calloc(1, sizeof *o);
    wf_plan_info *info = calloc(1, sizeof *info);
    char *dir = strdup(file);
    if (!o || !info || !dir) {
        fprintf(stderr, ME ": out of memory\n");
        json_decref(api), free(o), free(info), free(dir);
        return 1;
    }
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    gen_settings_defaults(&o->g);
    o->count = 1;
    wf_env env = {file, models, input, dir, demo};
    int status;
    if ((rc = wf_plan(api, &env, o, info)) != 0) {
        fprintf(stderr, ME ": %s\n", wf_message(rc));
        gen_opts_free_loras(o);
        status = 1;
    } else if (info->latents_only) {
        char *prompt = json_dumps(api, JSON_COMPACT | JSON_SORT_KEYS);
        status = copy_latents(info, out, prompt, dry, json);
        free(prompt);
    } else {
        plan_ctx pc = {info, file};
        o->me = ME;
        o->out = out;
        o->out_prefix = info->prefix;
        o->models_dir = models;
        o->tokenizer = tok;
        o->demo = demo;
        o->threads = threads;
        o->device = device;
        o->precision = precision;
        o->json = json;
        o->quiet = quiet || dry;
        o->dry_run = dry;
        o->plan_print = plan_print;
        o->plan_ctx = &pc;
        o->n_save_latent = info->n_save;
        for (int k = 0; k < info->n_save; k++) {
            o->save_latent_stage[k] = (int)info->save[k].src;   /* WF_LATENT_* = CASCADE_LATENT_* */
            o->save_latent_prefix[k] = info->save[k].prefix;
        }
        char *prompt = info->n_save ? json_dumps(api, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        o->latent_prompt = prompt;
        status = gen_execute(o);
        free(prompt);
    }
    json_decref(api);
    free(o);
    free(info);
    free(dir);
    return status;
}
