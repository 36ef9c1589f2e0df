/* cascade generate's command line: --help, the options and their checks
 * (ranges, sizes, LoRA lists), into a gen_opts that gen_execute runs; the
 * settings' defaults and names from cascade.h's table. */
#include "cli.h"
#include "generate.h"

#include "cascade.h"

#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ME "cascade generate"

/* ---- the settings, from cascade.h's table ---- */

static double def_of(cascade_param key)
{
    double def = 0;
    cascade_param_range(key, NULL, NULL, NULL, &def);
    return def;
}

static int max_of(cascade_param key)
{
    double max = 0;
    cascade_param_range(key, NULL, &max, NULL, NULL);
    return (int)max;
}

int gen_max_side(void) { return max_of(CASCADE_P_WIDTH) < max_of(CASCADE_P_HEIGHT) ? max_of(CASCADE_P_WIDTH) : max_of(CASCADE_P_HEIGHT); }
int gen_max_batch(void) { return max_of(CASCADE_P_BATCH); }

void gen_settings_defaults(gen_settings *g)
{
    memset(g, 0, sizeof *g);
    g->prompt = g->negative = "";
    g->width = (int)def_of(CASCADE_P_WIDTH);
    g->height = (int)def_of(CASCADE_P_HEIGHT);
    g->batch = (int)def_of(CASCADE_P_BATCH);
    g->prompt_style = (int)def_of(CASCADE_P_PROMPT_STYLE);
    static const cascade_param steps[2] = {CASCADE_P_STEPS_C, CASCADE_P_STEPS_B},
                               cfg[2] = {CASCADE_P_CFG_C, CASCADE_P_CFG_B},
                               shift[2] = {CASCADE_P_SHIFT_C, CASCADE_P_SHIFT_B};
    for (int i = 0; i < 2; i++) {
        gen_stage *st = i ? &g->b : &g->c;
        st->steps = (int)def_of(steps[i]);
        st->cfg = (float)def_of(cfg[i]);
        st->shift = (float)def_of(shift[i]);
        st->cfg_rho = (float)def_of(CASCADE_P_CFG_RHO);   /* Stage B's follows it */
        st->sampler = (int)def_of(CASCADE_P_SAMPLER);
        st->eta = 1.0f;                                   /* DDPM's; DDIM's is --eta */
        st->scheduler = gen_choice(CASCADE_P_SCHEDULER_C, NULL);
        st->denoise = def_of(CASCADE_P_DENOISE_C);
    }
}

const char *gen_choice(cascade_param key, const char *name)
{
    const char *v;
    for (int i = 0; (v = cascade_param_choice(key, i)) != NULL; i++)
        if (!name || !strcmp(v, name))
            return v;
    return NULL;
}

int gen_prompt_style(const char *name)
{
    if (!strcmp(name, "official")) return CASCADE_PROMPT_OFFICIAL;
    if (!strcmp(name, "comfyui")) return CASCADE_PROMPT_COMFYUI;
    return -1;
}

const char *gen_prompt_style_name(int style)
{
    return style == CASCADE_PROMPT_OFFICIAL ? "official" : "comfyui";
}

const char *gen_sampler_name(const gen_stage *st)
{
    if (st->ksampler)
        return st->ksampler;
    return st->sampler == CASCADE_SAMPLER_DDIM ? "DDIM" : st->sampler == CASCADE_SAMPLER_LCM ? "LCM" : "DDPM";
}

void gen_opts_free_loras(opts *o)
{
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < o->n_lora[p]; i++)
            free(o->lora[p][i].path);
        o->n_lora[p] = 0;
    }
}

int gen_image_arg(const char *arg, char *path, size_t len, float *strength)
{
    /* FILE:STRENGTH when what follows the last ':' looks like a number (so
     * file names with colons still work); a number out of range is an error */
    const char *colon = strrchr(arg, ':');
    double lo = -10, hi = 10;   /* cascade_add_image's range */
    *strength = 1.0f;
    size_t n = strlen(arg);
    if (colon && colon[1] && strspn(colon + 1, "0123456789.+-eE") == strlen(colon + 1)) {
        char *end;
        double v = strtod(colon + 1, &end);
        if (*end || !isfinite(v) || v < lo || v > hi) {
            fprintf(stderr, ME ": --image %s: strength '%s' is not a number in %g..%g\n", arg, colon + 1, lo, hi);
            return -1;
        }
        *strength = (float)v;
        n = (size_t)(colon - arg);
    }
    if (!n || n >= len) {
        fprintf(stderr, ME ": --image '%s': %s\n", arg, n ? "path too long" : "no file name");
        return -1;
    }
    memcpy(path, arg, n);
    path[n] = 0;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: cascade generate -p PROMPT [options]\n"
        "\n"
        "Text to image with Stable Cascade (text encoder -> Stage C -> Stage B -> Stage A -> PNG).\n"
        "\n"
        "  -p, --prompt TEXT      the prompt (\"\" is valid: the unconditional prompt)\n"
        "  -n, --negative TEXT    negative prompt (default \"\")\n"
        "  -W, --width N          image width, multiple of 8, 8..8192 (default 1024; demo 256)\n"
        "  -H, --height N         image height, multiple of 8, 8..8192 (default 1024; demo 256)\n"
        "      --seed N           seed of the torch-CPU generator, 0..2^63-1 (default: random, printed);\n"
        "                         as in torch, only its low 32 bits reach the generator\n"
        "      --batch N          images per run, sampled together (default 1)\n"
        "      --count K          K runs with seeds N, N+1, ... (default 1)\n"
        "      --steps-c N        Stage C steps (default 20)\n"
        "      --steps-b N        Stage B steps (default 10)\n"
        "      --cfg-c X|off      Stage C guidance (default 4)\n"
        "      --cfg-b X|off      Stage B guidance (default 1.1)\n"
        "      --cfg-rho X        std rescaling of the guided noise, 0..1 (default 0.7)\n"
        "      --shift-c X        Stage C schedule shift, (0..10000] (default 2)\n"
        "      --shift-b X        Stage B schedule shift, (0..10000] (default 1)\n"
        "      --sampler S        ddpm (default), ddim, lcm\n"
        "      --eta X            DDIM eta, 0..1 (default 0)\n"
        "                         ComfyUI's KSampler (same latents as ComfyUI on the CPU):\n"
        "                         --sampler euler, euler_ancestral, dpmpp_2m, dpmpp_2m_sde, or lcm / ddpm\n"
        "                         together with --scheduler (no cfg_rho; each stage seeded anew)\n"
        "      --scheduler S      simple (default), normal, karras, exponential, sgm_uniform\n"
        "      --denoise D        Stage C denoise, 0 < D <= 1 (default 1; with --init-image the\n"
        "                         image's latent is the start, as ComfyUI's img2img)\n"
        "      --rng torch-cpu    random generator (the only one; same noise as PyTorch on the CPU)\n"
        "      --round            round to uint8 instead of truncating (the official conversion)\n"
        "      --image FILE[:S]   image variation: the image (PNG or JPEG) through the CLIP vision\n"
        "                         model as one Stage C image token times S (-10..10, default 1);\n"
        "                         repeatable (at most 16); with or without a prompt\n"
        "      --init-image FILE  img2img: start Stage C from this image (PNG or JPEG), resized and\n"
        "                         centre-cropped to the output size, encoded and noised\n"
        "      --strength S       how much of the schedule is left for --init-image, 0 < S <= 1\n"
        "                         (default 0.6; 1 is text-to-image: the image is not used)\n"
        "\n"
        "  -o, --output FILE|DIR  output PNG, or a folder for cascade_00001.png, ... (default: .)\n"
        "      --force            replace existing files\n"
        "      --preview FILE     previewer image of the Stage C result (needs previewer.safetensors)\n"
        "      --preview-every K  also refresh it every K Stage C steps\n"
        "\n"
        "      --models DIR       model folder (flat, Hugging Face snapshot, diffusers or ComfyUI);\n"
        "                         then $CASCADE_MODELS, then $XDG_DATA_HOME/cascade/models\n"
        "      --variant V        auto (default), full, bf16, lite, lite-bf16\n"
        "      --variant-c V, --variant-b V   per-stage variant\n"
        "      --stage-c FILE, --stage-b FILE, --stage-a FILE, --text-encoder FILE, --previewer FILE,\n"
        "      --clip-vision FILE, --effnet FILE\n"
        "      --tokenizer DIR    folder with vocab.json and merges.txt (or $CASCADE_TOKENIZER)\n"
        "      --lora FILE[:S]    merge a LoRA into Stage C at strength S (default 1, may be\n"
        "                         negative; repeatable, applied in order); a path holding ':'\n"
        "                         needs an explicit :S\n"
        "      --lora-c, --lora-b, --lora-te FILE[:S]   the same for Stage C, Stage B, the text encoder\n"
        "      --lora-lenient     LoRA keys that match no weight are a note, not an error\n"
        "      --prompt-style S   comfyui (default: (word:1.2) weights, \\( \\) escapes, prompts\n"
        "                         longer than 75 tokens in 77-token chunks, embedding:NAME) or\n"
        "                         official (first 75 tokens, no syntax)\n"
        "      --embeddings DIR   folder of NAME.safetensors textual inversions (\"clip_g\" [n,1280])\n"
        "      --keep-loaded      keep every stage in memory between runs (--count)\n"
        "      --threads N        worker threads, 1..4 per processor, at most 1024\n"
        "                         (default: all cores, or $CASCADE_THREADS)\n"
        "      --device D         auto (a usable CUDA GPU, else the CPU), cpu, cuda, cuda:N\n"
        "                         (default: $CASCADE_DEVICE, else auto)\n"
        "      --precision P      auto (bf16 on GPUs that have it, else fp16; fp32 on the\n"
        "                         CPU), fp32, bf16, fp16 (default: $CASCADE_PRECISION)\n"
        "\n"
        "      --json             progress and results as JSON lines on stdout\n"
        "  -q, --quiet            no progress on stderr\n"
        "      --demo             tiny random-weight networks, no model files needed: a smoke test\n"
        "                         of every stage that writes a noise-like image in seconds\n"
        "                         (256x256, one thread unless --threads / $CASCADE_THREADS)\n"
        "  -h, --help             this text\n"
        "\n"
        "Exit status: 0 done; 2 bad usage (unknown option, a value or CASCADE_* variable that is\n"
        "malformed or out of range); 1 error (files, models, memory, the run, also a closed stdout\n"
        "or ulimit -f); 130 interrupted (Ctrl-C, SIGTERM, SIGHUP; nothing of the unfinished run\n"
        "is written).\n");
}

/* ---- option parsing ---- */

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, ME ": ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

/* every numeric option goes through parse.c (one rule, exit status 2) */
static int parse_int(const char *opt, const char *v, long lo, long hi, int *out)
{
    return cli_parse_int(ME, opt, v, lo, hi, out);
}

/* ranges: guidance any finite float ('off' = 0), cfg_rho [0,1], shift
 * (0,1e4], DDIM eta [0,1] (above 1 the DDIM variance is negative) */
static int parse_float(const char *opt, const char *v, double lo, double hi, int lo_open, float *out)
{
    return cli_parse_real(ME, opt, v, lo, hi, lo_open, out);
}

static int parse_cfg(const char *opt, const char *v, float *out)
{
    if (!strcmp(v, "off")) {
        *out = 0.0f;
        return 0;
    }
    return parse_float(opt, v, -FLT_MAX, FLT_MAX, 0, out);
}

/* image side: the library's limits (a multiple of 8, 8..8192) */
static int parse_size(const char *opt, const char *v, int key, int *out)
{
    return cli_parse_param(ME, opt, v, key, out);
}

/* FILE[:STRENGTH] onto part's list; the strength is what follows the last ':' */
static int parse_lora(const char *opt, const char *v, opts *o, int part)
{
    const char *colon = strrchr(v, ':');
    float st = 1.0f;
    if (colon && parse_float(opt, colon + 1, -1000.0, 1000.0, 0, &st))
        return -1;
    size_t n = colon ? (size_t)(colon - v) : strlen(v);
    if (!n) {
        fprintf(stderr, ME ": %s: no file name in '%s'\n", opt, v);
        return -1;
    }
    if (o->n_lora[part] == GEN_MAX_LORA) {
        fprintf(stderr, ME ": %s: more than %d LoRAs for one part\n", opt, GEN_MAX_LORA);
        return -1;
    }
    char *path = strndup(v, n);
    if (!path) {
        fprintf(stderr, ME ": out of memory\n");
        return -1;
    }
    o->lora[part][o->n_lora[part]++] = (gen_lora){path, st};
    return 0;
}

enum {
    O_SEED = 256, O_BATCH, O_COUNT, O_STEPS_C, O_STEPS_B, O_CFG_C, O_CFG_B, O_CFG_RHO, O_SHIFT_C, O_SHIFT_B,
    O_SAMPLER, O_ETA, O_RNG, O_ROUND, O_FORCE, O_PREVIEW, O_PREVIEW_EVERY, O_MODELS, O_VARIANT, O_VARIANT_C,
    O_VARIANT_B, O_STAGE_C, O_STAGE_B, O_STAGE_A, O_TEXT, O_PREVIEWER, O_TOKENIZER, O_KEEP, O_THREADS,
    O_JSON, O_DEMO, O_DEVICE, O_PRECISION, O_LORA, O_LORA_C, O_LORA_B, O_LORA_TE, O_LORA_LENIENT, O_PROMPT_STYLE,
    O_EMBEDDINGS, O_IMAGE, O_CLIP_VISION, O_INIT_IMAGE, O_STRENGTH, O_EFFNET, O_SCHEDULER, O_DENOISE,
};

static const struct option longopts[] = {
    {"prompt", required_argument, 0, 'p'}, {"negative", required_argument, 0, 'n'},
    {"width", required_argument, 0, 'W'}, {"height", required_argument, 0, 'H'},
    {"seed", required_argument, 0, O_SEED}, {"batch", required_argument, 0, O_BATCH},
    {"count", required_argument, 0, O_COUNT}, {"steps-c", required_argument, 0, O_STEPS_C},
    {"steps-b", required_argument, 0, O_STEPS_B}, {"cfg-c", required_argument, 0, O_CFG_C},
    {"cfg-b", required_argument, 0, O_CFG_B}, {"cfg-rho", required_argument, 0, O_CFG_RHO},
    {"shift-c", required_argument, 0, O_SHIFT_C}, {"shift-b", required_argument, 0, O_SHIFT_B},
    {"sampler", required_argument, 0, O_SAMPLER}, {"eta", required_argument, 0, O_ETA},
    {"rng", required_argument, 0, O_RNG}, {"round", no_argument, 0, O_ROUND},
    {"output", required_argument, 0, 'o'}, {"force", no_argument, 0, O_FORCE},
    {"preview", required_argument, 0, O_PREVIEW}, {"preview-every", required_argument, 0, O_PREVIEW_EVERY},
    {"models", required_argument, 0, O_MODELS}, {"variant", required_argument, 0, O_VARIANT},
    {"variant-c", required_argument, 0, O_VARIANT_C}, {"variant-b", required_argument, 0, O_VARIANT_B},
    {"stage-c", required_argument, 0, O_STAGE_C}, {"stage-b", required_argument, 0, O_STAGE_B},
    {"stage-a", required_argument, 0, O_STAGE_A}, {"text-encoder", required_argument, 0, O_TEXT},
    {"previewer", required_argument, 0, O_PREVIEWER}, {"tokenizer", required_argument, 0, O_TOKENIZER},
    {"keep-loaded", no_argument, 0, O_KEEP}, {"threads", required_argument, 0, O_THREADS},
    {"device", required_argument, 0, O_DEVICE}, {"precision", required_argument, 0, O_PRECISION},
    {"prompt-style", required_argument, 0, O_PROMPT_STYLE}, {"embeddings", required_argument, 0, O_EMBEDDINGS},
    {"json", no_argument, 0, O_JSON}, {"quiet", no_argument, 0, 'q'}, {"demo", no_argument, 0, O_DEMO},
    {"lora", required_argument, 0, O_LORA}, {"lora-c", required_argument, 0, O_LORA_C},
    {"lora-b", required_argument, 0, O_LORA_B}, {"lora-te", required_argument, 0, O_LORA_TE},
    {"lora-lenient", no_argument, 0, O_LORA_LENIENT},
    {"image", required_argument, 0, O_IMAGE}, {"clip-vision", required_argument, 0, O_CLIP_VISION},
    {"init-image", required_argument, 0, O_INIT_IMAGE}, {"strength", required_argument, 0, O_STRENGTH},
    {"effnet", required_argument, 0, O_EFFNET},
    {"scheduler", required_argument, 0, O_SCHEDULER}, {"denoise", required_argument, 0, O_DENOISE},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
};

/* 0 ok, 1 --help done, 2 usage error (message printed) */
int gen_parse(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    gen_settings_defaults(&o->g);
    o->g.c.eta = o->g.b.eta = 1.0f;
    o->count = 1;
    float eta = 0.0f, denoise = 1.0f;
    int eta_given = 0, c, rho_given = 0, denoise_given = 0;
    const char *sampler_arg = NULL, *ks = NULL, *sched = NULL;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":p:n:W:H:o:qh", longopts, NULL)) != -1) {
        int e = 0;
        switch (c) {
        case 'p': o->prompt = optarg, o->have_prompt = 1; break;
        case 'n': o->g.negative = optarg; break;
        case 'W': e = parse_size("--width", optarg, CASCADE_P_WIDTH, &o->g.width), o->size_given = 1; break;
        case 'H': e = parse_size("--height", optarg, CASCADE_P_HEIGHT, &o->g.height), o->size_given = 1; break;
        case O_SEED:
            /* at most 2^63-1: JSON integers (and jansson) are signed 64-bit */
            e = cli_parse_u64(ME, "--seed", optarg, INT64_MAX, &o->g.seed), o->seed_given = 1;
            break;
        case O_BATCH: e = cli_parse_param(ME, "--batch", optarg, CASCADE_P_BATCH, &o->g.batch); break;
        case O_COUNT: e = parse_int("--count", optarg, 1, 100000, &o->count); break;
        case O_STEPS_C: e = parse_int("--steps-c", optarg, 1, 10000, &o->g.c.steps); break;
        case O_STEPS_B: e = parse_int("--steps-b", optarg, 1, 10000, &o->g.b.steps); break;
        case O_CFG_C: e = parse_cfg("--cfg-c", optarg, &o->g.c.cfg); break;
        case O_CFG_B: e = parse_cfg("--cfg-b", optarg, &o->g.b.cfg); break;
        case O_CFG_RHO:
            e = parse_float("--cfg-rho", optarg, 0.0, 1.0, 0, &o->g.c.cfg_rho);
            o->g.b.cfg_rho = o->g.c.cfg_rho;
            rho_given = 1;
            break;
        case O_SHIFT_C: e = parse_float("--shift-c", optarg, 0.0, 1e4, 1, &o->g.c.shift); break;
        case O_SHIFT_B: e = parse_float("--shift-b", optarg, 0.0, 1e4, 1, &o->g.b.shift); break;
        case O_SAMPLER:
            sampler_arg = optarg;
            ks = gen_choice(CASCADE_P_KSAMPLER_C, optarg);
            if (!strcmp(optarg, "ddpm")) o->g.c.sampler = CASCADE_SAMPLER_DDPM;
            else if (!strcmp(optarg, "ddim")) o->g.c.sampler = CASCADE_SAMPLER_DDIM;
            else if (!strcmp(optarg, "lcm")) o->g.c.sampler = CASCADE_SAMPLER_LCM;
            else if (!ks)
                return bad("--sampler: unknown sampler '%s' (official: ddpm, ddim, lcm; ComfyUI: euler, "
                           "euler_ancestral, dpmpp_2m, and lcm, ddpm with --scheduler)%s", optarg, "");
            o->g.b.sampler = o->g.c.sampler;
            break;
        case O_SCHEDULER:
            if (!(sched = gen_choice(CASCADE_P_SCHEDULER_C, optarg)))
                return bad("--scheduler: unknown scheduler '%s' (simple, normal, karras, exponential, "
                           "sgm_uniform)%s", optarg, "");
            break;
        case O_DENOISE:
            e = parse_float("--denoise", optarg, 0.0, 1.0, 1, &denoise), denoise_given = 1;
            break;
        case O_ETA: e = parse_float("--eta", optarg, 0.0, 1.0, 0, &eta), eta_given = 1; break;
        case O_RNG:
            if (strcmp(optarg, "torch-cpu"))
                return bad("--rng: unknown generator '%s' (torch-cpu)%s", optarg, "");
            break;
        case O_ROUND: o->g.round = 1; break;
        case O_PROMPT_STYLE:
            if ((o->g.prompt_style = gen_prompt_style(optarg)) < 0)
                return bad("--prompt-style %s: use official or comfyui%s", optarg, "");
            break;
        case O_EMBEDDINGS: o->g.embeddings = optarg; break;
        case 'o': o->out = optarg; break;
        case O_FORCE: o->force = 1; break;
        case O_PREVIEW: o->preview = optarg; break;
        case O_PREVIEW_EVERY: e = parse_int("--preview-every", optarg, 1, 10000, &o->g.preview_every); break;
        case O_MODELS: o->models_dir = optarg; break;
        case O_VARIANT:
        case O_VARIANT_C:
        case O_VARIANT_B: {
            const char *v = gen_choice(CASCADE_P_VARIANT_C, optarg);
            if (!v)
                return bad("--variant: unknown variant '%s' (auto, full, bf16, lite, lite-bf16)%s", optarg, "");
            if (c != O_VARIANT_B) o->var_c = v;
            if (c != O_VARIANT_C) o->var_b = v;
            break;
        }
        case O_STAGE_C: o->file[CASCADE_PART_STAGE_C] = optarg; break;
        case O_STAGE_B: o->file[CASCADE_PART_STAGE_B] = optarg; break;
        case O_STAGE_A: o->file[CASCADE_PART_STAGE_A] = optarg; break;
        case O_TEXT: o->file[CASCADE_PART_TEXT_ENCODER] = optarg; break;
        case O_PREVIEWER: o->file[CASCADE_PART_PREVIEWER] = optarg; break;
        case O_TOKENIZER: o->tokenizer = optarg; break;
        case O_CLIP_VISION: o->file[CASCADE_PART_CLIP_VISION] = optarg; break;
        case O_EFFNET: o->file[CASCADE_PART_EFFNET] = optarg; break;
        case O_INIT_IMAGE: o->init_image = optarg; break;
        case O_STRENGTH: {
            float v;
            e = parse_float("--strength", optarg, 0.0, 1.0, 1, &v);
            o->strength = strtod(optarg, NULL);   /* the double: int(steps * S) as Python computes it */
            o->strength_given = 1;
            break;
        }
        case O_IMAGE:
            if (o->n_images == GEN_MAX_IMAGES)
                return bad("--image: at most %s images%s", "16", "");
            e = gen_image_arg(optarg, o->image_path[o->n_images], GEN_PATH, &o->image_strength[o->n_images]);
            o->n_images += !e;
            break;
        case O_KEEP: o->keep = 1; break;
        case O_THREADS: e = cli_parse_threads(ME, "--threads", optarg, &o->threads); break;
        case O_JSON: o->json = 1; break;
        case O_DEVICE: o->device = optarg; break;
        case O_PRECISION: o->precision = optarg; break;
        case 'q': o->quiet = 1; break;
        case O_DEMO: o->demo = 1; break;
        case O_LORA: e = parse_lora("--lora", optarg, o, 0); break;
        case O_LORA_C: e = parse_lora("--lora-c", optarg, o, 0); break;
        case O_LORA_B: e = parse_lora("--lora-b", optarg, o, 1); break;
        case O_LORA_TE: e = parse_lora("--lora-te", optarg, o, 2); break;
        case O_LORA_LENIENT: o->lora_lenient = 1; break;
        case 'h': usage(stdout); return 1;
        case ':': return bad("option %s needs a value%s", argv[optind - 1], "");
        default: return bad("unknown option '%s' (see 'cascade generate --help')%s", argv[optind - 1], "");
        }
        if (e)
            return 2;
    }
    if (optind < argc)
        return bad("unexpected argument '%s' (quote the prompt: -p \"...\")%s", argv[optind], "");
    if (!o->have_prompt)
        return bad("no prompt: use -p \"...\" (-p \"\" is the unconditional prompt)%s%s", "", "");
    if (o->seed_given && o->g.seed > (uint64_t)INT64_MAX - (uint64_t)(o->count - 1)) {
        fprintf(stderr, ME ": --seed %llu with --count %d: the last seed would pass 9223372036854775807\n",
                (unsigned long long)o->g.seed, o->count);
        return 2;
    }
    if (o->strength_given && !o->init_image)
        return bad("--strength applies to --init-image only%s%s", "", "");
    /* ComfyUI's samplers: the names only ComfyUI has, and ddpm / lcm (the
     * official names) when --scheduler asks for ComfyUI's */
    int official_name = sampler_arg && (!strcmp(sampler_arg, "ddpm") || !strcmp(sampler_arg, "lcm"));
    if (ks && (!official_name || sched)) {
        o->g.c.ksampler = o->g.b.ksampler = ks;
        o->g.c.scheduler = o->g.b.scheduler = sched ? sched : gen_choice(CASCADE_P_SCHEDULER_C, NULL);
        o->g.c.denoise = denoise;
        if (rho_given)
            return bad("--cfg-rho applies to the official samplers only (ComfyUI's CFG has no rescale)%s%s", "", "");
        if (o->strength_given)
            return bad("--strength applies to the official samplers; with --sampler %s use --denoise%s", sampler_arg,
                       "");
    } else if (sched) {
        return bad("--scheduler applies to ComfyUI's samplers (euler, euler_ancestral, dpmpp_2m, dpmpp_2m_sde, lcm, ddpm)%s%s",
                   "", "");
    } else if (denoise_given) {
        return bad("--denoise applies to ComfyUI's samplers (official img2img uses --strength)%s%s", "", "");
    }
    if (!o->strength_given)
        o->strength = 0.6;
    if (o->g.preview_every && !o->preview)
        return bad("--preview-every needs --preview FILE%s%s", "", "");
    if (o->g.c.sampler == CASCADE_SAMPLER_DDIM)
        o->g.c.eta = o->g.b.eta = eta_given ? eta : 0.0f;   /* §9: ddim is eta 0 */
    else if (eta_given)
        return bad("--eta applies to --sampler ddim only%s%s", "", "");
    o->g.prompt = o->prompt;
    return 0;   /* --demo without a size: the demo's (cascade_use_demo) */
}
