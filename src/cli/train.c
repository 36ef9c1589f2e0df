/* cascade train: full fine-tune of Stage C with kohya sd-scripts' option
 * names (stable_cascade_train_stage_c.py), so that a kohya command line
 * without `accelerate launch ... .py` runs as it is. Options -> the keys of
 * a cascade_trainer (cascade.h) -> tr_run (train_run.c). Unknown options, and kohya options we do not implement,
 * are one-line errors (exit 2); the logging / data-loader options that
 * change nothing here are accepted and listed as ignored in --help. */
#include "cli.h"
#include "train.h"

#include "cascade.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: cascade train --stage_c_checkpoint_path FILE --effnet_checkpoint_path FILE\n"
        "                     (--dataset_config TOML | --train_data_dir DIR) --output_dir DIR [options]\n"
        "\n"
        "Full fine-tune or LoRA of Stage C on the CPU, with kohya sd-scripts' option names (paste a\n"
        "stable_cascade_train_stage_c.py or stable_cascade_train_c_network.py command without\n"
        "`accelerate launch ... .py`).\n"
        "\n"
        "  --stage_c_checkpoint_path FILE   Stage C to train (also --pretrained_model_name_or_path)\n"
        "  --effnet_checkpoint_path FILE    EfficientNet encoder (images -> latents)\n"
        "  --previewer_checkpoint_path FILE previewer (decodes the sample images)\n"
        "  --text_model_checkpoint_path FILE  CLIP-G text encoder (default: found in --models)\n"
        "  --models DIR           model folder searched for the text encoder and tokenizer\n"
        "                         (then $CASCADE_MODELS, then $XDG_DATA_HOME/cascade/models)\n"
        "  --tokenizer DIR        vocab.json + merges.txt (or $CASCADE_TOKENIZER)\n"
        "  --dataset_config TOML  kohya's dataset config ([[datasets]] / [[datasets.subsets]])\n"
        "  --train_data_dir DIR   or a plain folder of images with NAME.txt captions\n"
        "  --resolution W[,H]     training size for --train_data_dir or a config without one\n"
        "                         (default 1024)\n"
        "  --train_batch_size N   batch size for --train_data_dir (default 1; a config sets its own)\n"
        "  --output_dir DIR       checkpoints, states, samples and the log (created if missing)\n"
        "  --output_name NAME     file names: NAME-000001.safetensors per saved epoch, NAME.safetensors\n"
        "                         at the end, NAME.jsonl the log (default: last)\n"
        "  --learning_rate X      (default 1e-4)\n"
        "  --optimizer_type T     adafactor (default) or adamw\n"
        "  --optimizer_args K=V ...  Adafactor: scale_parameter=False relative_step=False\n"
        "                         warmup_init=False (the only values), clip_threshold, decay_rate,\n"
        "                         weight_decay, eps; AdamW: betas=B1,B2, eps, weight_decay\n"
        "  --lr_scheduler S       constant (default), constant_with_warmup, linear, cosine,\n"
        "                         cosine_with_restarts, polynomial (diffusers' schedules, as kohya)\n"
        "  --lr_warmup_steps N    warmup steps (default 0; not with constant); below 1 or N%%: a ratio\n"
        "                         of the total steps\n"
        "  --lr_scheduler_num_cycles N   cosine_with_restarts: cycles (default 1)\n"
        "  --lr_scheduler_power P polynomial: the power (default 1; decays to 1e-7)\n"
        "  --max_train_epochs N   epochs (wins over --max_train_steps)\n"
        "  --max_train_steps N    optimizer steps (default 1600, as kohya)\n"
        "  --gradient_accumulation_steps N   micro-batches per optimizer step (default 1)\n"
        "  --max_grad_norm X      gradient clipping, 0 = off (default 1.0)\n"
        "  --fused_backward_pass  each tensor clipped by its own norm and stepped as its block's backward\n"
        "                         ends: one block's gradients in memory, not the model's (Adafactor, no\n"
        "                         accumulation, no LoRA; as kohya). On by itself when a device's free\n"
        "                         memory cannot hold the unfused step (a note says so)\n"
        "  --adaptive_loss_weight AdaptiveLossWeight instead of P2 (doc/training.md §5)\n"
        "  --seed N               seeds the data order and each step's noise (default: random, logged)\n"
        "  --save_every_n_epochs N  NAME-<epoch>.safetensors every N epochs\n"
        "  --save_precision P     fp32 (or float), bf16, fp16 (default fp32)\n"
        "  --save_state           also save a resumable state with every checkpoint\n"
        "  --resume DIR           continue from OUTPUT_DIR/state-<step> (same options)\n"
        "  --sample_every_n_epochs N   sample images every N epochs (needs the previewer)\n"
        "  --sample_prompts FILE  one prompt a line: TEXT [--n NEG] [--w W] [--h H] [--d SEED]\n"
        "                         [--l CFG] [--s STEPS] (kohya's format)\n"
        "  --cache_latents, --cache_latents_to_disk, --cache_text_encoder_outputs,\n"
        "  --cache_text_encoder_outputs_to_disk   keep the encodings on disk in --cache_dir\n"
        "                         (they are always computed once, before training)\n"
        "  --cache_dir DIR        (default OUTPUT_DIR/cache)\n"
        "Caption options of a --dataset_config subset (kohya's): shuffle_caption, keep_tokens,\n"
        "  caption_dropout_rate, caption_dropout_every_n_epochs, caption_tag_dropout_rate are applied\n"
        "  at every step, drawn from --seed. Then the text encoder stays loaded (CLIP-G: ~1.4 GB more\n"
        "  in bf16, ~2.8 GB in fp32) and every caption that changes is encoded again at each step (one\n"
        "  text-encoder forward per image per step); only the unchanged captions come from the cache.\n"
        "  --mixed_precision no|bf16   bf16: on a GPU the products run on TF32 tensor cores; on the CPU\n"
        "                         the math stays float32\n"
        "  --gradient_checkpointing    accepted; the backward always recomputes each block\n"
        "                         from its saved input (per-block checkpointing)\n"
        "LoRA (kohya's stable_cascade_train_c_network.py; doc/training.md §9):\n"
        "  --network_module networks.lora   train a LoRA of every Linear and 1x1 Conv2d of Stage C\n"
        "                         (the only module; checkpoints are LoRA files in kohya's format)\n"
        "  --network_dim R        rank (default 4)\n"
        "  --network_alpha A      scale alpha / R (default 1; 0 = R)\n"
        "  --network_args K=V ... conv_dim=N conv_alpha=A (kxk convs; the released Stage C has none)\n"
        "  --network_dropout 0    dropout (also rank_dropout / module_dropout) is not implemented\n"
        "  --network_weights FILE start from a saved LoRA of the same settings\n"
        "  --network_train_unet_only   accepted (Stage C is the only network trained)\n"
        "  --save_model_as safetensors the only format\n"
        "\n"
        "  --threads N            worker threads (default: all cores, or $CASCADE_THREADS)\n"
        "  --device D             cpu (default), cuda, auto or a plugin path: the whole step runs there (float32)\n"
        "  -q, --quiet            no progress line\n"
        "  -h, --help             this text\n"
        "\n"
        "Accepted and ignored (they change nothing here): --max_data_loader_n_workers N,\n"
        "--persistent_data_loader_workers, --logging_dir DIR, --log_with X, --log_prefix X,\n"
        "--log_tracker_name X, --console_log_level X, --lowram, --highvram, --xformers, --sdpa,\n"
        "--mem_eff_attn, --vae_batch_size N, --text_encoder_batch_size N.\n"
        "Any other option is an error.\n"
        "\n"
        "Ctrl-C or SIGTERM stops at once: the unfinished step is dropped and the state after the\n"
        "last optimizer step is saved in OUTPUT_DIR/state-<step>; --resume continues it to the\n"
        "same weights as an uninterrupted run (same machine and threads).\n"
        "\n"
        "Exit status: 0 done; 2 bad usage; 1 error (files, models, data, the run); 130 interrupted\n"
        "(the state is saved).\n");
}

enum {
    O_STAGE_C = 256, O_EFFNET, O_PREVIEWER, O_TEXT, O_MODELS, O_TOKENIZER, O_DSCONFIG, O_TRAIN_DIR, O_RES, O_BATCH,
    O_OUT_DIR, O_OUT_NAME, O_LR, O_OPT, O_OPT_ARGS, O_SCHED, O_WARMUP, O_CYCLES, O_POWER, O_EPOCHS, O_STEPS, O_ACCUM, O_CLIP,
    O_ADAPTIVE, O_SEED, O_SAVE_EVERY, O_SAVE_PREC, O_SAVE_STATE, O_RESUME, O_SAMPLE_EVERY, O_SAMPLE_PROMPTS,
    O_CACHE_LAT, O_CACHE_TEXT, O_CACHE_DIR, O_MIXED, O_GC, O_THREADS, O_DEVICE, O_IGNORE_ARG, O_IGNORE_FLAG,
    O_NET_MODULE, O_NET_DIM, O_NET_ALPHA, O_NET_ARGS, O_NET_DROPOUT, O_NET_WEIGHTS, O_SAVE_AS, O_UNET_ONLY,
    O_FUSED,
};

static const struct option longopts[] = {
    {"stage_c_checkpoint_path", required_argument, 0, O_STAGE_C},
    {"pretrained_model_name_or_path", required_argument, 0, O_STAGE_C},
    {"effnet_checkpoint_path", required_argument, 0, O_EFFNET},
    {"previewer_checkpoint_path", required_argument, 0, O_PREVIEWER},
    {"text_model_checkpoint_path", required_argument, 0, O_TEXT},
    {"models", required_argument, 0, O_MODELS},
    {"tokenizer", required_argument, 0, O_TOKENIZER},
    {"dataset_config", required_argument, 0, O_DSCONFIG},
    {"train_data_dir", required_argument, 0, O_TRAIN_DIR},
    {"resolution", required_argument, 0, O_RES},
    {"train_batch_size", required_argument, 0, O_BATCH},
    {"output_dir", required_argument, 0, O_OUT_DIR},
    {"output_name", required_argument, 0, O_OUT_NAME},
    {"learning_rate", required_argument, 0, O_LR},
    {"optimizer_type", required_argument, 0, O_OPT},
    {"optimizer_args", no_argument, 0, O_OPT_ARGS},   /* nargs='*': the words that follow */
    {"lr_scheduler", required_argument, 0, O_SCHED},
    {"lr_warmup_steps", required_argument, 0, O_WARMUP},
    {"lr_scheduler_num_cycles", required_argument, 0, O_CYCLES},
    {"lr_scheduler_power", required_argument, 0, O_POWER},
    {"max_train_epochs", required_argument, 0, O_EPOCHS},
    {"max_train_steps", required_argument, 0, O_STEPS},
    {"gradient_accumulation_steps", required_argument, 0, O_ACCUM},
    {"max_grad_norm", required_argument, 0, O_CLIP},
    {"fused_backward_pass", no_argument, 0, O_FUSED},
    {"adaptive_loss_weight", no_argument, 0, O_ADAPTIVE},
    {"seed", required_argument, 0, O_SEED},
    {"save_every_n_epochs", required_argument, 0, O_SAVE_EVERY},
    {"save_precision", required_argument, 0, O_SAVE_PREC},
    {"save_state", no_argument, 0, O_SAVE_STATE},
    {"resume", required_argument, 0, O_RESUME},
    {"sample_every_n_epochs", required_argument, 0, O_SAMPLE_EVERY},
    {"sample_prompts", required_argument, 0, O_SAMPLE_PROMPTS},
    {"cache_latents", no_argument, 0, O_CACHE_LAT},
    {"cache_latents_to_disk", no_argument, 0, O_CACHE_LAT},
    {"cache_text_encoder_outputs", no_argument, 0, O_CACHE_TEXT},
    {"cache_text_encoder_outputs_to_disk", no_argument, 0, O_CACHE_TEXT},
    {"cache_dir", required_argument, 0, O_CACHE_DIR},
    {"mixed_precision", required_argument, 0, O_MIXED},
    {"gradient_checkpointing", no_argument, 0, O_GC},
    {"threads", required_argument, 0, O_THREADS},
    {"device", required_argument, 0, O_DEVICE},
    {"network_module", required_argument, 0, O_NET_MODULE},
    {"network_dim", required_argument, 0, O_NET_DIM},
    {"network_alpha", required_argument, 0, O_NET_ALPHA},
    {"network_args", no_argument, 0, O_NET_ARGS},   /* nargs='*' */
    {"network_dropout", required_argument, 0, O_NET_DROPOUT},
    {"network_weights", required_argument, 0, O_NET_WEIGHTS},
    {"network_train_unet_only", no_argument, 0, O_UNET_ONLY},
    {"save_model_as", required_argument, 0, O_SAVE_AS},
    {"quiet", no_argument, 0, 'q'},
    {"help", no_argument, 0, 'h'},
    /* kohya's logging and data-loader knobs: nothing to do here */
    {"max_data_loader_n_workers", required_argument, 0, O_IGNORE_ARG},
    {"persistent_data_loader_workers", no_argument, 0, O_IGNORE_FLAG},
    {"logging_dir", required_argument, 0, O_IGNORE_ARG},
    {"log_with", required_argument, 0, O_IGNORE_ARG},
    {"log_prefix", required_argument, 0, O_IGNORE_ARG},
    {"log_tracker_name", required_argument, 0, O_IGNORE_ARG},
    {"console_log_level", required_argument, 0, O_IGNORE_ARG},
    {"lowram", no_argument, 0, O_IGNORE_FLAG},
    {"highvram", no_argument, 0, O_IGNORE_FLAG},
    {"xformers", no_argument, 0, O_IGNORE_FLAG},
    {"sdpa", no_argument, 0, O_IGNORE_FLAG},
    {"mem_eff_attn", no_argument, 0, O_IGNORE_FLAG},
    {"vae_batch_size", required_argument, 0, O_IGNORE_ARG},
    {"text_encoder_batch_size", required_argument, 0, O_IGNORE_ARG},
    {0, 0, 0, 0},
};

static int bad(const char *opt, const char *what)
{
    fprintf(stderr, TR_ME ": %s: %s\n", opt, what);
    return -1;
}

/* Values the CLI has checked, into the trainer (only running out of
 * memory can fail there now). */
static int fail_set(void)
{
    fprintf(stderr, TR_ME ": %s\n", cascade_errmsg(cli_ctx()));
    return -1;
}
static int put_i(cascade_trainer *t, cascade_train_param k, long long v)
{
    return cascade_trainer_set_int(t, k, v) ? fail_set() : 0;
}
static int put_f(cascade_trainer *t, cascade_train_param k, double v)
{
    return cascade_trainer_set_float(t, k, v) ? fail_set() : 0;
}
static int put_s(cascade_trainer *t, cascade_train_param k, const char *v)
{
    return cascade_trainer_set_string(t, k, v) ? fail_set() : 0;
}

/* kohya writes Python booleans: False / True (any case) */
static int is_false(const char *v) { return !strcasecmp(v, "false") || !strcmp(v, "0"); }

/* One K=V of --optimizer_args. */
static int opt_arg(cascade_trainer *t, const char *kv, int adamw)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return bad("--optimizer_args", "expected KEY=VALUE words");
    size_t kl = (size_t)(eq - kv);
    const char *v = eq + 1;
    char key[64];
    if (kl >= sizeof key) return bad("--optimizer_args", "key too long");
    memcpy(key, kv, kl);
    key[kl] = 0;
    char what[128];
    snprintf(what, sizeof what, "--optimizer_args %s", key);
    float x;
    if (!adamw && (!strcmp(key, "scale_parameter") || !strcmp(key, "relative_step") || !strcmp(key, "warmup_init"))) {
        if (!is_false(v)) {
            fprintf(stderr, TR_ME ": --optimizer_args: %s=%s is not supported (only False: the seed recipe)\n", key, v);
            return -1;
        }
        return 0;
    }
    if (!adamw && !strcmp(key, "beta1")) {
        if (strcasecmp(v, "None")) {
            fprintf(stderr, TR_ME ": --optimizer_args: beta1=%s is not supported (only None)\n", v);
            return -1;
        }
        return 0;
    }
    if (!strcmp(key, "weight_decay")) {
        if (!strcmp(v, "0") || !strcmp(v, "0.0")) x = 0.0f;
        else if (cli_parse_real(TR_ME, what, v, 0.0, 1.0, 0, &x)) return -1;
        return put_f(t, adamw ? CASCADE_TP_ADAMW_WEIGHT_DECAY : CASCADE_TP_ADAFACTOR_WEIGHT_DECAY, x);
    }
    if (!strcmp(key, "eps")) {
        if (adamw) {
            if (cli_parse_real(TR_ME, what, v, 0.0, 1.0, 1, &x)) return -1;
            return put_f(t, CASCADE_TP_ADAMW_EPS, x);
        } else {
            /* transformers' eps=(eps1, eps2): eps1 only (eps2 scales the lr with scale_parameter) */
            if (cli_parse_real(TR_ME, what, v, 0.0, 1.0, 1, &x)) return -1;
            return put_f(t, CASCADE_TP_ADAFACTOR_EPS, x);
        }
    }
    if (!adamw && !strcmp(key, "clip_threshold")) {
        if (cli_parse_real(TR_ME, what, v, 0.0, 1e6, 1, &x)) return -1;
        return put_f(t, CASCADE_TP_ADAFACTOR_CLIP_THRESHOLD, x);
    }
    if (!adamw && !strcmp(key, "decay_rate")) {
        if (cli_parse_real(TR_ME, what, v, -1.0, 0.0, 0, &x)) return -1;
        return put_f(t, CASCADE_TP_ADAFACTOR_DECAY_RATE, x);
    }
    if (adamw && !strcmp(key, "betas")) {
        char b[64];
        snprintf(b, sizeof b, "%s", v);
        char *s = b + (b[0] == '(' || b[0] == '['), *c = strchr(s, ',');
        if (!c) return bad(what, "expected betas=B1,B2");
        *c = 0;
        char *e = c + 1 + strcspn(c + 1, ")]");
        *e = 0;
        float b1, b2;
        if (cli_parse_real(TR_ME, what, s, 0.0, 1.0, 0, &b1) || cli_parse_real(TR_ME, what, c + 1, 0.0, 1.0, 0, &b2))
            return -1;
        if (b1 >= 1.0f || b2 >= 1.0f) return bad(what, "each beta must be below 1");
        return put_f(t, CASCADE_TP_ADAMW_BETA1, b1) || put_f(t, CASCADE_TP_ADAMW_BETA2, b2) ? -1 : 0;
    }
    fprintf(stderr, TR_ME ": --optimizer_args: %s is not supported for %s\n", key, adamw ? "adamw" : "adafactor");
    return -1;
}

/* A dropout value: 0 (or None) only, the rest is not implemented. */
static int no_dropout(const char *what, const char *v)
{
    char *end;
    double x = strtod(v, &end);
    if (!strcasecmp(v, "None") || (end != v && !*end && x == 0)) return 0;
    fprintf(stderr, TR_ME ": %s %s: LoRA dropout is not implemented (leave it unset or 0)\n", what, v);
    return -1;
}

/* The --network_args words (kohya's KEY=VALUE strings): conv_dim, conv_alpha;
 * rank_dropout / module_dropout only as 0. The words go to ss_network_args
 * as kohya's json.dumps(net_kwargs) writes them (strings, then "dropout"). */
static int network_args(cascade_trainer *t, const char *const *w, int n, const char *dropout)
{
    char j[512];
    size_t cap = sizeof j, l = 0;
    int conv_dim;
    l += (size_t)snprintf(j + l, cap - l, "{");
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(w[i], '=');
        if (!eq || eq == w[i]) return bad("--network_args", "expected KEY=VALUE words");
        size_t kl = (size_t)(eq - w[i]);
        const char *v = eq + 1;
        if (kl == 8 && !strncmp(w[i], "conv_dim", 8)) {
            if (cli_parse_int(TR_ME, "--network_args conv_dim", v, 0, 1 << 20, &conv_dim) ||
                put_i(t, CASCADE_TP_LORA_CONV_DIM, conv_dim))
                return -1;
        } else if (kl == 10 && !strncmp(w[i], "conv_alpha", 10)) {
            float x;
            if (!strcmp(v, "0") || !strcmp(v, "0.0")) x = 0;
            else if (cli_parse_real(TR_ME, "--network_args conv_alpha", v, 0.0, 1e9, 1, &x)) return -1;
            if (put_f(t, CASCADE_TP_LORA_CONV_ALPHA, x)) return -1;
        } else if ((kl == 12 && !strncmp(w[i], "rank_dropout", 12)) || (kl == 14 && !strncmp(w[i], "module_dropout", 14))) {
            char what[64];
            snprintf(what, sizeof what, "--network_args %.*s", (int)kl, w[i]);
            if (no_dropout(what, v)) return -1;
        } else {
            fprintf(stderr, TR_ME ": --network_args: %.*s is not supported (conv_dim, conv_alpha)\n", (int)kl, w[i]);
            return -1;
        }
        if (strpbrk(v, "\"\\")) return bad("--network_args", "quotes and backslashes are not allowed in values");
        l += (size_t)snprintf(j + l, l < cap ? cap - l : 0, "%s\"%.*s\": \"%s\"", i ? ", " : "", (int)kl, w[i], v);
    }
    /* kohya adds the --network_dropout value (None -> null) */
    l += (size_t)snprintf(j + l, l < cap ? cap - l : 0, "%s\"dropout\": %s}", n ? ", " : "", dropout ? dropout : "null");
    if (l >= cap) return bad("--network_args", "too long");
    return put_s(t, CASCADE_TP_NETWORK_ARGS, j);
}

static int parse_res(const char *v, int *w, int *h)
{
    char a[32];
    snprintf(a, sizeof a, "%s", v);
    char *c = strchr(a, ',');
    if (c) *c = 0;
    if (cli_parse_int(TR_ME, "--resolution", a, 32, 8192, w)) return -1;
    *h = *w;
    if (c && cli_parse_int(TR_ME, "--resolution", c + 1, 32, 8192, h)) return -1;
    return 0;
}

/* The options into c->t's keys; 0, or the exit status (2) after one line. */
static int parse(tr_cli *c, int argc, char **argv)
{
    cascade_trainer *t = c->t;
    int opt = CASCADE_OPT_ADAFACTOR, ch, e = 0, v, lora = 0, w, h;
    float f;
    uint64_t u;
    const char *opt_words[32], *net_words[32], *net_opt = NULL, *dropout = NULL;
    const char *stage_c = NULL, *effnet = NULL, *previewer = NULL, *dsconfig = NULL, *train_dir = NULL;
    const char *out_dir = NULL, *out_name = "last", *sample_prompts = NULL;
    int n_words = 0, n_net_words = -1, sample_every = 0;
    opterr = 0;
    optind = 1;
    /* a string key: NULL only when out of memory */
#define S(k) e = put_s(t, k, optarg)
    while (!e && (ch = getopt_long(argc, argv, "+qh", longopts, NULL)) != -1) {
        switch (ch) {
        case O_STAGE_C: stage_c = optarg, S(CASCADE_TP_STAGE_C); break;
        case O_EFFNET: effnet = optarg, S(CASCADE_TP_EFFNET); break;
        case O_PREVIEWER: previewer = optarg, S(CASCADE_TP_PREVIEWER); break;
        case O_TEXT: S(CASCADE_TP_TEXT_ENCODER); break;
        case O_MODELS:
        case O_TOKENIZER:
            if (cascade_set_string(cli_ctx(), ch == O_MODELS ? CASCADE_P_MODELS_DIR : CASCADE_P_TOKENIZER, optarg))
                e = fail_set();
            break;
        case O_DSCONFIG: dsconfig = optarg, S(CASCADE_TP_DATASET_CONFIG); break;
        case O_TRAIN_DIR: train_dir = optarg, S(CASCADE_TP_TRAIN_DATA_DIR); break;
        case O_RES:
            e = parse_res(optarg, &w, &h);
            if (!e) e = put_i(t, CASCADE_TP_WIDTH, w) || put_i(t, CASCADE_TP_HEIGHT, h);
            break;
        case O_BATCH:
            e = cli_parse_int(TR_ME, "--train_batch_size", optarg, 1, 4096, &v);
            if (!e) e = put_i(t, CASCADE_TP_BATCH, v);
            break;
        case O_OUT_DIR: out_dir = optarg, S(CASCADE_TP_OUTPUT_DIR); break;
        case O_OUT_NAME: out_name = optarg; break;   /* checked below, as kohya words it */
        case O_LR:
            e = cli_parse_real(TR_ME, "--learning_rate", optarg, 0.0, 10.0, 1, &f);
            if (!e) e = put_f(t, CASCADE_TP_LEARNING_RATE, f);
            break;
        case O_OPT:
            if (!strcasecmp(optarg, "adafactor")) opt = CASCADE_OPT_ADAFACTOR;
            else if (!strcasecmp(optarg, "adamw")) opt = CASCADE_OPT_ADAMW;
            else e = bad("--optimizer_type", "not supported (adafactor or adamw)");
            if (!e) e = put_i(t, CASCADE_TP_OPTIMIZER, opt);
            break;
        case O_OPT_ARGS:
            while (optind < argc && argv[optind][0] != '-') {
                if (n_words == 32) {
                    e = bad("--optimizer_args", "more than 32 words");
                    break;
                }
                opt_words[n_words++] = argv[optind++];
            }
            break;
        case O_NET_MODULE:
            if (strcmp(optarg, "networks.lora")) {
                fprintf(stderr, TR_ME ": --network_module %s: not supported (only networks.lora, kohya's LoRA)\n", optarg);
                e = -1;
            }
            lora = 1;
            if (!e) e = put_i(t, CASCADE_TP_LORA, 1);
            break;
        case O_NET_DIM:
            net_opt = "--network_dim";
            e = cli_parse_int(TR_ME, "--network_dim", optarg, 1, 1 << 20, &v);
            if (!e) e = put_i(t, CASCADE_TP_LORA_DIM, v);
            break;
        case O_NET_ALPHA:
            net_opt = "--network_alpha";
            if (!strcmp(optarg, "0") || !strcmp(optarg, "0.0")) f = 0;
            else e = cli_parse_real(TR_ME, "--network_alpha", optarg, 0.0, 1e9, 1, &f);
            if (!e) e = put_f(t, CASCADE_TP_LORA_ALPHA, f);
            break;
        case O_NET_ARGS:
            net_opt = "--network_args";
            n_net_words = n_net_words < 0 ? 0 : n_net_words;
            while (optind < argc && argv[optind][0] != '-') {
                if (n_net_words == 32) {
                    e = bad("--network_args", "more than 32 words");
                    break;
                }
                net_words[n_net_words++] = argv[optind++];
            }
            break;
        case O_NET_DROPOUT:
            net_opt = "--network_dropout";
            e = no_dropout("--network_dropout", optarg);
            dropout = strcasecmp(optarg, "None") ? "0.0" : NULL;
            break;
        case O_NET_WEIGHTS: net_opt = "--network_weights", c->network_weights = optarg; break;
        case O_UNET_ONLY: break;   /* Stage C is the only network trained */
        case O_SAVE_AS:
            if (strcmp(optarg, "safetensors")) e = bad("--save_model_as", "only safetensors is supported");
            break;
        case O_SCHED:
        case O_WARMUP:
            /* the library reads kohya's words; its message says what is wrong */
            if (cascade_trainer_set_string(t, ch == O_SCHED ? CASCADE_TP_LR_SCHEDULER : CASCADE_TP_LR_WARMUP, optarg))
                e = bad(ch == O_SCHED ? "--lr_scheduler" : "--lr_warmup_steps", cascade_errmsg(cli_ctx()));
            break;
        case O_CYCLES:
            e = cli_parse_int(TR_ME, "--lr_scheduler_num_cycles", optarg, 0, 1000000, &v);
            if (!e) e = put_i(t, CASCADE_TP_LR_CYCLES, v);
            break;
        case O_POWER: {   /* a double, as Python's float */
            char *end;
            double p = strtod(optarg, &end);
            if (end == optarg || *end || !isfinite(p) || fabs(p) > 1e6)
                e = bad("--lr_scheduler_power", "expected a number (kohya's default 1)");
            else
                e = put_f(t, CASCADE_TP_LR_POWER, p);
            break;
        }
        case O_EPOCHS:
            e = cli_parse_int(TR_ME, "--max_train_epochs", optarg, 1, 1000000, &v);
            if (!e) e = put_i(t, CASCADE_TP_EPOCHS, v);
            break;
        case O_STEPS:
            e = cli_parse_int(TR_ME, "--max_train_steps", optarg, 1, 1000000000, &v);
            if (!e) e = put_i(t, CASCADE_TP_STEPS, v);
            break;
        case O_ACCUM:
            e = cli_parse_int(TR_ME, "--gradient_accumulation_steps", optarg, 1, 65536, &v);
            if (!e) e = put_i(t, CASCADE_TP_GRAD_ACCUM, v);
            break;
        case O_CLIP:
            if (!strcmp(optarg, "0") || !strcmp(optarg, "0.0")) f = 0.0f;
            else e = cli_parse_real(TR_ME, "--max_grad_norm", optarg, 0.0, 1e9, 1, &f);
            if (!e) e = put_f(t, CASCADE_TP_MAX_GRAD_NORM, f);
            break;
        case O_ADAPTIVE: e = put_i(t, CASCADE_TP_ADAPTIVE_LOSS, 1); break;
        case O_FUSED: e = put_i(t, CASCADE_TP_FUSED_BACKWARD, 1); break;
        case O_SEED:
            e = cli_parse_u64(TR_ME, "--seed", optarg, UINT32_MAX, &u);
            if (!e) e = put_i(t, CASCADE_TP_SEED, (long long)u);
            break;
        case O_SAVE_EVERY:
            e = cli_parse_int(TR_ME, "--save_every_n_epochs", optarg, 1, 1000000, &v);
            if (!e) e = put_i(t, CASCADE_TP_SAVE_EVERY, v);
            break;
        case O_SAVE_PREC:
            if (!strcmp(optarg, "fp32") || !strcmp(optarg, "float")) v = CASCADE_PREC_FP32;
            else if (!strcmp(optarg, "bf16")) v = CASCADE_PREC_BF16;
            else if (!strcmp(optarg, "fp16")) v = CASCADE_PREC_FP16;
            else e = bad("--save_precision", "expected fp32, float, bf16 or fp16");
            if (!e) e = put_i(t, CASCADE_TP_SAVE_PRECISION, v);
            break;
        case O_SAVE_STATE: e = put_i(t, CASCADE_TP_SAVE_STATE, 1); break;
        case O_RESUME: c->resume = optarg, S(CASCADE_TP_RESUME); break;
        case O_SAMPLE_EVERY:
            e = cli_parse_int(TR_ME, "--sample_every_n_epochs", optarg, 1, 1000000, &sample_every);
            if (!e) e = put_i(t, CASCADE_TP_SAMPLE_EVERY, sample_every);
            break;
        case O_SAMPLE_PROMPTS: sample_prompts = optarg, S(CASCADE_TP_SAMPLE_PROMPTS); break;
        case O_CACHE_LAT: e = put_i(t, CASCADE_TP_CACHE_LATENTS, 1); break;
        case O_CACHE_TEXT: e = put_i(t, CASCADE_TP_CACHE_TEXT, 1); break;
        case O_CACHE_DIR: S(CASCADE_TP_CACHE_DIR); break;
        case O_MIXED:
            if (strcmp(optarg, "no") && strcmp(optarg, "bf16"))
                e = bad("--mixed_precision", "expected no or bf16 (fp16 is not supported)");
            else
                c->mixed_bf16 = !strcmp(optarg, "bf16"), S(CASCADE_TP_MIXED_PRECISION);   /* said once, after the checks */
            break;
        case O_GC: break;   /* always on: the backward recomputes per block */
        case O_THREADS: e = cli_parse_threads(TR_ME, "--threads", optarg, &c->threads); break;
        case O_DEVICE: c->device = optarg; break;
        case O_IGNORE_ARG: case O_IGNORE_FLAG: break;
        case 'q': c->quiet = 1; break;
        case 'h': usage(stdout); return -1;
        case ':': fprintf(stderr, TR_ME ": %s: missing value\n", argv[optind - 1]); return 2;
        default:
            fprintf(stderr, TR_ME ": %s: unknown or unsupported option (see cascade train --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
#undef S
    if (e) return 2;
    if (optind < argc) {
        fprintf(stderr, TR_ME ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    for (int i = 0; i < n_words; i++)
        if (opt_arg(t, opt_words[i], opt == CASCADE_OPT_ADAMW)) return 2;
    if (net_opt && !lora) return bad(net_opt, "needs --network_module networks.lora"), 2;
    if (n_net_words >= 0 && network_args(t, net_words, n_net_words, dropout)) return 2;
    if (c->network_weights && put_s(t, CASCADE_TP_NETWORK_WEIGHTS, c->network_weights)) return 2;
    if (!stage_c) return bad("--stage_c_checkpoint_path", "required (the Stage C to train)"), 2;
    if (!effnet) return bad("--effnet_checkpoint_path", "required (the EfficientNet encoder)"), 2;
    if (!dsconfig == !train_dir)
        return bad("--dataset_config", "give exactly one of --dataset_config and --train_data_dir"), 2;
    if (!out_dir || !*out_dir) return bad("--output_dir", "required"), 2;
    if (!*out_name || strchr(out_name, '/')) return bad("--output_name", "must be a non-empty file name without '/'"), 2;
    if (put_s(t, CASCADE_TP_OUTPUT_NAME, out_name)) return 2;
    if (sample_every && !sample_prompts) return bad("--sample_every_n_epochs", "needs --sample_prompts FILE"), 2;
    if (sample_prompts && !previewer)
        return bad("--sample_prompts", "needs --previewer_checkpoint_path (samples are decoded by the previewer)"), 2;
    /* the rest (the schedule's warmup and values) the library checks; its
     * message starts with the key, kohya's option name */
    if (cascade_trainer_check(t)) {
        fprintf(stderr, TR_ME ": --%s\n", cascade_errmsg(cli_ctx()));
        return 2;
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    tr_cli c;
    memset(&c, 0, sizeof c);
    if (!cli_ctx() || cascade_trainer_new(cli_ctx(), &c.t)) {
        fprintf(stderr, TR_ME ": out of memory\n");
        return CLI_EXIT_ERROR;
    }
    int st = parse(&c, argc, argv);
    if (st < 0) st = 0;   /* --help */
    else if (!st) st = tr_run(&c);
    cascade_trainer_free(c.t);
    return st;
}
