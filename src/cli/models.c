/* cascade models: what model files were found, what each one is, what
 * `auto` would run on this machine and why, and what is missing. */
#include "cli.h"

#include "cascade.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GiB (1024.0 * 1024.0 * 1024.0)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cascade models [--models DIR] [--json] [--no-hash] [--width N] [--height N] [--batch N]\n"
            "                      [--variant V] [--stage-c-variant V] [--stage-b-variant V]\n"
            "                      [--stage-c FILE] [--stage-b FILE] [--stage-a FILE] [--text-encoder FILE]\n"
            "                      [--effnet FILE] [--previewer FILE]\n"
            "       cascade models --recommend [--width N] [--height N] [--batch N]\n\n"
            "Lists the Stable Cascade model files found, each file's network, variant, dtype, size and\n"
            "xxh64, what 'auto' picks for the given size (default 1024x1024, batch 1) on this machine and\n"
            "why, and what is missing and where it looked. Size and batch have the limits of cascade\n"
            "generate: sides a multiple of 8 in 8..8192, batch 1..64.\n\n"
            "Search order: --models DIR, then $CASCADE_MODELS (':'-separated), then\n"
            "$XDG_DATA_HOME/cascade/models (default ~/.local/share/cascade/models). A folder may be flat\n"
            "(official file names), a Hugging Face snapshot or hub-cache repo, diffusers folders\n"
            "(prior/, decoder/, vqgan/, text_encoder/), or a ComfyUI root or its models/ folder (unet/,\n"
            "vae/, clip/, text_encoders/, checkpoints/). Files are recognised by their tensors, not their\n"
            "names. Each part is taken from the first folder that has one.\n\n"
            "Variants: auto (default: the best present that fits in memory), full, bf16, lite, lite-bf16.\n"
            "Memory: MemAvailable and the cgroup limit; CASCADE_MEMORY=SIZE (e.g. 12G) overrides.\n"
            "Hashes are cached in $XDG_CACHE_HOME/cascade/hashes; --no-hash skips them.\n"
            "--recommend prints the variant to download for this machine (no files needed).\n"
            "Exit status: 0 when everything text-to-image needs was found, 1 when not, 2 on bad usage.\n");
}

static void note_of(const cascade_models *m, int i, char *b, size_t len)
{
    size_t o = 0;
    const char *naming = cascade_models_string(m, i, CASCADE_MF_NAMING),
               *prefix = cascade_models_string(m, i, CASCADE_MF_PREFIX);
    long long extra = cascade_models_int(m, i, CASCADE_MF_EXTRA_TENSORS);
    b[0] = 0;
    if (strcmp(naming, "official")) o += (size_t)snprintf(b + o, len - o, " [%s names]", naming);
    if (prefix[0] && o < len) o += (size_t)snprintf(b + o, len - o, " [prefix %s]", prefix);
    if (extra && o < len) snprintf(b + o, len - o, " [%lld extra tensors ignored]", extra);
}

static const char *variant_col(const cascade_models *m, int i)
{
    const char *v = cascade_models_string(m, i, CASCADE_MF_VARIANT);
    return v ? v : "-";
}

static const char *part_use(int p)
{
    switch (p) {
    case CASCADE_PART_EFFNET: return "optional: img2img";
    case CASCADE_PART_PREVIEWER: return "optional: previews while sampling";
    case CASCADE_PART_CLIP_VISION: return "optional: image variations";
    default: return "required";
    }
}

/* the same words as the library's variant check, for the CLI's options */
static int set_variant(cascade_ctx *ctx, cascade_param key, const char *v)
{
    if (!cascade_set_string(ctx, key, v)) return 0;
    fprintf(stderr, "cascade models: unknown variant '%s' (auto, full, bf16, lite, lite-bf16)\n", v);
    return -1;
}

/* --recommend: the variant to download for this machine. Returns the exit status. */
static int recommend(cascade_ctx *ctx, int width, int height, int batch, const char *said)
{
    cascade_choice *c = NULL;
    if (cascade_recommend(ctx, width, height, batch, &c)) {
        fprintf(stderr, "cascade models: %s\n", cascade_errmsg(ctx));
        return 1;
    }
    const char *v = cascade_choice_string(c, 0, CASCADE_CH_VARIANT);
    unsigned long long have = (unsigned long long)cascade_choice_int(c, 0, CASCADE_CH_HAVE),
                       need = (unsigned long long)cascade_choice_int(c, 0, CASCADE_CH_NEED_MAX),
                       margin = (unsigned long long)cascade_choice_int(c, 0, CASCADE_CH_MARGIN);
    char src[1024];
    snprintf(src, sizeof src, "%s%s%s", cascade_choice_string(c, 0, CASCADE_CH_HAVE_SOURCE),
             cascade_choice_int(c, 0, CASCADE_CH_ON_DEVICE) == 1 ? ", " : "",
             cascade_choice_int(c, 0, CASCADE_CH_ON_DEVICE) == 1 ? said : "");
    printf("%s\n", v);
    fprintf(stderr, "%s: largest stage needs %.1f GiB + margin %.1f GiB; %.1f GiB available (%s)%s\n", v, need / GiB,
            margin / GiB, have / GiB, src, need + margin > have ? "; even this does not fit" : "");
    cascade_choice_free(c);
    return 0;
}

static int run(cascade_ctx *ctx, int json, int hash, int width, int height, int batch);

int cmd_models(int argc, char **argv)
{
    const char *dir = NULL, *force[CASCADE_PART_COUNT] = {0}, *var[2] = {0};
    int json = 0, hash = 1, recommend_only = 0, prec = 0, width = 1024, height = 1024, batch = 1;
    const char *device = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int part = -1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-hash")) hash = 0;
        else if (!strcmp(a, "--recommend")) recommend_only = 1;
        else if (!strcmp(a, "--models") && v) dir = argv[++i];
        else if (!strcmp(a, "--device") && v) device = argv[++i];
        else if (!strcmp(a, "--width") || !strcmp(a, "--height") || !strcmp(a, "--batch")) {
            int *dst = a[2] == 'w' ? &width : a[2] == 'h' ? &height : &batch;
            int key = a[2] == 'w' ? CASCADE_P_WIDTH : a[2] == 'h' ? CASCADE_P_HEIGHT : CASCADE_P_BATCH;
            if (cli_parse_param("cascade models", a, v, key, dst)) return 2;   /* generate's limits */
            i++;
        }
        else if ((!strcmp(a, "--variant") || !strcmp(a, "--stage-c-variant") || !strcmp(a, "--stage-b-variant")) && v) {
            static const char *const known[] = {"auto", "full", "bf16", "lite", "lite-bf16"};
            int ok = 0;
            for (int k = 0; k < 5; k++) ok |= !strcmp(v, known[k]);
            if (!ok) {
                fprintf(stderr, "cascade models: unknown variant '%s' (auto, full, bf16, lite, lite-bf16)\n", v);
                return 2;
            }
            if (strcmp(a, "--stage-b-variant")) var[0] = v;
            if (strcmp(a, "--stage-c-variant")) var[1] = v;
            i++;
        } else if (!strcmp(a, "--stage-c")) part = CASCADE_PART_STAGE_C;
        else if (!strcmp(a, "--stage-b")) part = CASCADE_PART_STAGE_B;
        else if (!strcmp(a, "--stage-a")) part = CASCADE_PART_STAGE_A;
        else if (!strcmp(a, "--text-encoder")) part = CASCADE_PART_TEXT_ENCODER;
        else if (!strcmp(a, "--effnet")) part = CASCADE_PART_EFFNET;
        else if (!strcmp(a, "--previewer")) part = CASCADE_PART_PREVIEWER;
        else {
            char w[64];
            snprintf(w, sizeof w, " %s ", a);
            int valued = strstr(" --models --variant --stage-c-variant --stage-b-variant ", w) != NULL;
            fprintf(stderr, "cascade models: %s '%s'\n", valued && !v ? "missing value for" : "unknown option", a);
            usage(stderr);
            return 2;
        }
        if (part >= 0) {
            if (!v) {
                fprintf(stderr, "cascade models: missing value for '%s'\n", a);
                return 2;
            }
            force[part] = argv[++i];
        }
    }

    char said[700];
    int drc = cli_device("cascade models", device, NULL, 0, said, sizeof said, &prec);
    if (drc) return drc;
    cascade_ctx *ctx = cascade_ctx_new();
    if (!ctx) {
        fprintf(stderr, "cascade models: out of memory\n");
        return 1;
    }
    int status = 0;
    if ((var[0] && set_variant(ctx, CASCADE_P_VARIANT_C, var[0])) ||
        (var[1] && set_variant(ctx, CASCADE_P_VARIANT_B, var[1])) ||
        (dir && cascade_set_string(ctx, CASCADE_P_MODELS_DIR, dir))) {
        status = 2;
    } else if (recommend_only) {
        status = recommend(ctx, width, height, batch, said);
    } else {
        for (int p = 0; p < CASCADE_PART_COUNT && !status; p++)
            if (force[p] && cascade_set_model(ctx, (cascade_part)p, force[p])) {
                fprintf(stderr, "cascade models: %s\n", cascade_errmsg(ctx));
                status = 1;
            }
        if (!status) status = run(ctx, json, hash, width, height, batch);
    }
    cascade_ctx_free(ctx);
    return status;
}

/* the listing (or JSON) of what was found and what auto takes */
static int run(cascade_ctx *ctx, int json, int hash, int width, int height, int batch)
{
    cli_signals_install();   /* hashing 20 GB of weights the first time takes a while */
    cascade_models *s;
    if (cascade_models_scan(ctx, &s)) {
        fprintf(stderr, "cascade models: %s\n", cascade_errmsg(ctx));
        return 1;
    }
    int status = 0, n = cascade_models_count(s);
    unsigned long long *hashes = calloc((size_t)n + 1, sizeof *hashes);
    char *hashed = calloc((size_t)n + 1, 1);
    for (int i = 0; hash && hashes && hashed && i < n && !cli_stop_pending(); i++) {
        if (cascade_models_int(s, i, CASCADE_MF_FOREIGN) == 1 || cascade_models_int(s, i, CASCADE_MF_SAME_AS) > 0)
            continue;
        unsigned long long size = cascade_models_size(s, i);
        if (size > (1u << 30) && isatty(2) && cascade_models_hash(ctx, s, i, CASCADE_HASH_CACHED_ONLY, &hashes[i]) != 1)
            fprintf(stderr, "hashing %s (%.1f GB, once: the hash is cached)...\n", cascade_models_path(s, i), size / 1e9);
        if (cascade_models_hash(ctx, s, i, 0, &hashes[i]) >= 0) hashed[i] = 1;
        else if (!cli_stop_pending()) fprintf(stderr, "cascade models: %s\n", cascade_errmsg(ctx));
    }
    if (cli_stop_pending()) {   /* the hashes finished so far are cached */
        int why = cli_stop_pending();
        fprintf(stderr, "cascade models: %s while hashing; nothing listed\n", cli_stop_text(why));
        free(hashes);
        free(hashed);
        cascade_models_free(s);
        return cli_stop_status(why);
    }
    for (int i = 0; hashes && hashed && i < n; i++) {   /* later networks of one file share its hash */
        int k = (int)cascade_models_int(s, i, CASCADE_MF_SAME_AS);
        if (k > 0 && hashed[i - k]) {
            hashes[i] = hashes[i - k];
            hashed[i] = 1;
        }
    }

    int present[CASCADE_PART_COUNT] = {0};
    for (int i = 0; i < n; i++)
        if (cascade_models_part(s, i) >= 0) present[cascade_models_part(s, i)] = 1;
    const char *tokenizer = cascade_models_tokenizer(s);
    cascade_choice *ch = NULL;
    int crc = cascade_models_choose(ctx, s, width, height, batch, &ch);
    char cerr[1024] = "";
    if (crc) {
        snprintf(cerr, sizeof cerr, "%s", cascade_errmsg(ctx));
        status = 1;
    } else if (!tokenizer) {
        snprintf(cerr, sizeof cerr, "no tokenizer folder (vocab.json + merges.txt) found (%s)",
                 cascade_models_looked(s, -1));
        status = 1;
    }

    if (json) {
        json_t *root = json_object(), *roots = json_array(), *files = json_array(), *looked = json_array();
        const char *r, *why;
        for (int i = 0; (r = cascade_models_root(s, i, &why)) != NULL; i++)
            json_array_append_new(roots, json_pack("{s:s, s:s}", "path", r, "why", why));
        for (int i = 0; i < n; i++) {
            json_t *o = json_pack("{s:s, s:I}", "path", cascade_models_path(s, i), "size",
                                  (json_int_t)cascade_models_size(s, i));
            const char *problem = cascade_models_problem(s, i);
            if (problem) {
                json_object_set_new(o, "problem", json_string(problem));
                json_object_set_new(o, "foreign", json_boolean(cascade_models_int(s, i, CASCADE_MF_FOREIGN) == 1));
            } else {
                const char *v = cascade_models_string(s, i, CASCADE_MF_VARIANT),
                           *config = cascade_models_string(s, i, CASCADE_MF_CONFIG);
                json_object_set_new(o, "part", json_string(cascade_part_name((cascade_part)cascade_models_part(s, i))));
                json_object_set_new(o, "network", json_string(cascade_models_network(s, i)));
                json_object_set_new(o, "variant", v ? json_string(v) : json_null());
                json_object_set_new(o, "dtype", json_string(cascade_models_dtype(s, i)));
                json_object_set_new(o, "tensors", json_integer(cascade_models_int(s, i, CASCADE_MF_TENSORS)));
                json_object_set_new(o, "params", json_integer(cascade_models_int(s, i, CASCADE_MF_PARAMS)));
                json_object_set_new(o, "weight_bytes", json_integer(cascade_models_int(s, i, CASCADE_MF_WEIGHT_BYTES)));
                json_object_set_new(o, "naming", json_string(cascade_models_string(s, i, CASCADE_MF_NAMING)));
                json_object_set_new(o, "prefix", json_string(cascade_models_string(s, i, CASCADE_MF_PREFIX)));
                json_object_set_new(o, "extra_tensors",
                                    json_integer(cascade_models_int(s, i, CASCADE_MF_EXTRA_TENSORS)));
                if (config) json_object_set_new(o, "config", json_string(config));
            }
            if (hashed && hashed[i]) {
                char h[17];
                snprintf(h, sizeof h, "%016llx", hashes[i]);
                json_object_set_new(o, "xxh64", json_string(h));
            }
            const char *in = cascade_models_string(s, i, CASCADE_MF_ROOT);
            json_object_set_new(o, "root", in ? json_string(in) : json_null());
            json_array_append_new(files, o);
        }
        for (int i = 0; cascade_models_looked(s, i); i++) json_array_append_new(looked, json_string(cascade_models_looked(s, i)));
        json_object_set_new(root, "roots", roots);
        json_object_set_new(root, "files", files);
        json_object_set_new(root, "tokenizer", tokenizer ? json_string(tokenizer) : json_null());
        json_object_set_new(root, "looked", looked);
        json_t *au = json_pack("{s:i, s:i, s:i}", "width", width, "height", height, "batch", batch);
        json_t *missing = json_array();
        if (!crc) {
            json_t *picks = json_object();
            for (int p = 0; p < CASCADE_PART_COUNT; p++) {
                int f = (int)cascade_choice_int(ch, p, CASCADE_CH_FILE);
                if (f < 0) continue;
                json_object_set_new(picks, cascade_part_name((cascade_part)p),
                    json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "path", cascade_models_path(s, f), "network",
                              cascade_models_network(s, f), "dtype", cascade_models_dtype(s, f),
                              "need", (json_int_t)cascade_choice_int(ch, p, CASCADE_CH_NEED),
                              "weights", (json_int_t)cascade_choice_int(ch, p, CASCADE_CH_WEIGHTS),
                              "scratch", (json_int_t)cascade_choice_int(ch, p, CASCADE_CH_SCRATCH),
                              "activations", (json_int_t)cascade_choice_int(ch, p, CASCADE_CH_ACTIVATIONS),
                              "why", cascade_choice_string(ch, p, CASCADE_CH_WHY)));
            }
            int np = (int)cascade_choice_int(ch, 0, CASCADE_CH_NEED_PART);
            json_object_set_new(au, "picks", picks);
            json_object_set_new(au, "have", json_integer(cascade_choice_int(ch, 0, CASCADE_CH_HAVE)));
            json_object_set_new(au, "have_source", json_string(cascade_choice_string(ch, 0, CASCADE_CH_HAVE_SOURCE)));
            json_object_set_new(au, "margin", json_integer(cascade_choice_int(ch, 0, CASCADE_CH_MARGIN)));
            json_object_set_new(au, "need", json_integer(cascade_choice_int(ch, 0, CASCADE_CH_NEED_MAX)));
            json_object_set_new(au, "need_part", np >= 0 ? json_string(cascade_part_name((cascade_part)np)) : json_null());
            json_object_set_new(au, "fits", json_boolean(cascade_choice_int(ch, 0, CASCADE_CH_FITS) == 1));
        }
        for (int p = 0; p < CASCADE_PART_COUNT; p++)
            if (!present[p])
                json_array_append_new(missing, json_pack("{s:s, s:b}", "part", cascade_part_name((cascade_part)p),
                                                         "required", !strcmp(part_use(p), "required")));
        if (!tokenizer)
            json_array_append_new(missing, json_pack("{s:s, s:b}", "part", "tokenizer", "required", 1));
        json_object_set_new(au, "error", cerr[0] ? json_string(cerr) : json_null());
        json_object_set_new(root, "auto", au);
        json_object_set_new(root, "missing", missing);
        char *txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(root);
        goto out;
    }

    printf("search folders (first one with a part wins):\n");
    const char *r, *why;
    int nroots = 0;
    for (; (r = cascade_models_root(s, nroots, &why)) != NULL; nroots++) printf("  %s  (%s)\n", r, why);
    if (!nroots) printf("  none: pass --models DIR or set CASCADE_MODELS\n");
    int nf = 0, nbad = 0, nforeign = 0;
    for (int i = 0; i < n; i++) {
        if (cascade_models_int(s, i, CASCADE_MF_FOREIGN) == 1) nforeign++;
        else if (cascade_models_problem(s, i)) nbad++;
        else nf++;
    }
    printf("\nfiles (%d):\n", nf);
    if (nf) printf("  %-15s %-21s %-9s %-6s %9s  %-16s  %s\n", "part", "network", "variant", "dtype", "size", "xxh64", "path");
    for (int k = 0; k < n * CASCADE_PART_COUNT; k++) {   /* grouped by part, in pipeline order */
        int i = k % n;
        if (cascade_models_problem(s, i) || cascade_models_part(s, i) != k / n) continue;
        char h[17] = "-", note[300];
        if (hashed && hashed[i]) snprintf(h, sizeof h, "%016llx", hashes[i]);
        note_of(s, i, note, sizeof note);
        printf("  %-15s %-21s %-9s %-6s %6.2f GB  %-16s  %s%s\n",
               cascade_part_name((cascade_part)cascade_models_part(s, i)), cascade_models_network(s, i),
               variant_col(s, i), cascade_models_dtype(s, i), cascade_models_size(s, i) / 1e9, h,
               cascade_models_path(s, i), note);
    }
    if (nbad) {
        printf("\nunusable files:\n");
        for (int i = 0; i < n; i++)
            if (cascade_models_problem(s, i) && cascade_models_int(s, i, CASCADE_MF_FOREIGN) != 1)
                printf("  %s\n", cascade_models_problem(s, i));
    }
    if (nforeign) {
        printf("\nother safetensors files (not Stable Cascade, ignored):\n");
        for (int i = 0; i < n; i++)
            if (cascade_models_int(s, i, CASCADE_MF_FOREIGN) == 1) printf("  %s\n", cascade_models_path(s, i));
    }
    printf("\ntokenizer: %s\n", tokenizer ? tokenizer : "not found (needs vocab.json + merges.txt)");
    printf("\nauto for %dx%d, batch %d:\n", width, height, batch);
    if (crc) {
        printf("  cannot choose: %s\n", cerr);
    } else {
        int fits = cascade_choice_int(ch, 0, CASCADE_CH_FITS) == 1;
        printf("  memory: %.1f GiB available (%s), margin %.1f GiB\n", cascade_choice_int(ch, 0, CASCADE_CH_HAVE) / GiB,
               cascade_choice_string(ch, 0, CASCADE_CH_HAVE_SOURCE), cascade_choice_int(ch, 0, CASCADE_CH_MARGIN) / GiB);
        printf("  largest stage: %s needs %.1f GiB: %s\n",
               cascade_part_title((cascade_part)cascade_choice_int(ch, 0, CASCADE_CH_NEED_PART)),
               cascade_choice_int(ch, 0, CASCADE_CH_NEED_MAX) / GiB,
               fits ? "fits" : "DOES NOT FIT (expect heavy swapping or failure; try a smaller variant or size)");
        for (int p = 0; p < CASCADE_PART_COUNT; p++) {
            int f = (int)cascade_choice_int(ch, p, CASCADE_CH_FILE);
            if (f < 0) continue;
            printf("  %-15s need %5.1f GiB (weights %.1f + scratch %.1f + activations %.1f)  %s\n",
                   cascade_part_name((cascade_part)p), cascade_choice_int(ch, p, CASCADE_CH_NEED) / GiB,
                   cascade_choice_int(ch, p, CASCADE_CH_WEIGHTS) / GiB, cascade_choice_int(ch, p, CASCADE_CH_SCRATCH) / GiB,
                   cascade_choice_int(ch, p, CASCADE_CH_ACTIVATIONS) / GiB, cascade_models_path(s, f));
            printf("  %-15s %s\n", "", cascade_choice_string(ch, p, CASCADE_CH_WHY));
        }
    }
    int nmiss = 0;
    for (int p = 0; p < CASCADE_PART_COUNT; p++) {
        if (present[p]) continue;
        if (!nmiss++) printf("\nmissing:\n");
        printf("  %-15s (%s)\n", cascade_part_name((cascade_part)p), part_use(p));
    }
    if (!tokenizer) {
        if (!nmiss++) printf("\nmissing:\n");
        printf("  %-15s (required: vocab.json + merges.txt)\n", "tokenizer");
    }
    printf("\nlooked in:\n");
    int nlooked = 0;
    for (; cascade_models_looked(s, nlooked); nlooked++) printf("  %s\n", cascade_models_looked(s, nlooked));
    if (!nlooked) printf("  nothing\n");
    if (status) fprintf(stderr, "cascade models: %s\n", cerr);
out:
    cascade_choice_free(ch);
    free(hashes);
    free(hashed);
    cascade_models_free(s);
    return status;
}
