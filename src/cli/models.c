/* cascade models: what model files were found, what each one is, what
 * `auto` would run on this machine and why, and what is missing. */
#include "cli.h"

#include "cancel.h"
#include "error.h"
#include "models.h"

#include <inttypes.h>
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
            "why, and what is missing and where it looked.\n\n"
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

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out)
{
    return cli_parse_int("cascade models", opt, v, lo, hi, out);
}

static const char *dtype_str(const cs_netid *ni) { return ni->mixed ? "mixed" : cs_dtype_name(ni->dtype); }

static void note_of(const cs_model_file *f, char *b, size_t len)
{
    size_t o = 0;
    b[0] = 0;
    if (f->info.naming != CS_NAMES_OFFICIAL)
        o += (size_t)snprintf(b + o, len - o, " [%s names]", cs_naming_name(f->info.naming));
    if (f->info.prefix[0] && o < len) o += (size_t)snprintf(b + o, len - o, " [prefix %s]", f->info.prefix);
    if (f->info.n_extra && o < len) snprintf(b + o, len - o, " [%d extra tensors ignored]", f->info.n_extra);
}

static const char *variant_col(const cs_model_file *f)
{
    cs_part p = cs_net_part(f->info.net);
    return p <= CS_PART_STAGE_B ? cs_variant_name(cs_variant_of(&f->info)) : "-";
}

static const char *part_use(cs_part p)
{
    switch (p) {
    case CS_PART_EFFNET: return "optional: img2img";
    case CS_PART_PREVIEWER: return "optional: previews while sampling";
    case CS_PART_CLIP_VISION: return "optional: image variations";
    default: return "required";
    }
}

int cmd_models(int argc, char **argv)
{
    const char *dir = NULL, *force[CS_PART_COUNT] = {0};
    int json = 0, hash = 1, recommend = 0, prec = 0;
    const char *device = NULL;
    cs_choice_req req;
    cs_choice_req_init(&req);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int part = -1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-hash")) hash = 0;
        else if (!strcmp(a, "--recommend")) recommend = 1;
        else if (!strcmp(a, "--models") && v) dir = argv[++i];
        else if (!strcmp(a, "--device") && v) device = argv[++i];
        else if (!strcmp(a, "--width") || !strcmp(a, "--height") || !strcmp(a, "--batch")) {
            int *dst = a[2] == 'w' ? &req.width : a[2] == 'h' ? &req.height : &req.batch;
            if (parse_int(a, v, a[2] == 'b' ? 1 : 64, a[2] == 'b' ? 256 : 16384, dst)) return 2;
            i++;
        }
        else if ((!strcmp(a, "--variant") || !strcmp(a, "--stage-c-variant") || !strcmp(a, "--stage-b-variant")) && v) {
            cs_variant var;
            if (cs_variant_parse(v, &var)) {
                fprintf(stderr, "cascade models: %s\n", cs_last_error());
                return 2;
            }
            if (strcmp(a, "--stage-b-variant")) req.variant[CS_PART_STAGE_C] = var;
            if (strcmp(a, "--stage-c-variant")) req.variant[CS_PART_STAGE_B] = var;
            i++;
        } else if (!strcmp(a, "--stage-c")) part = CS_PART_STAGE_C;
        else if (!strcmp(a, "--stage-b")) part = CS_PART_STAGE_B;
        else if (!strcmp(a, "--stage-a")) part = CS_PART_STAGE_A;
        else if (!strcmp(a, "--text-encoder")) part = CS_PART_TEXT;
        else if (!strcmp(a, "--effnet")) part = CS_PART_EFFNET;
        else if (!strcmp(a, "--previewer")) part = CS_PART_PREVIEWER;
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
    cli_device_req(&req, prec);
    if (recommend) {
        uint64_t have, need;
        char src[1024];
        if (req.dev_prec >= 0) {
            have = req.dev_have;
            snprintf(src, sizeof src, "free on %s, %s", req.dev_name, said);
        } else if (cs_mem_available(&have, src, sizeof src)) {
            fprintf(stderr, "cascade models: %s\n", cs_last_error());
            return 1;
        }
        cs_variant v = cs_models_recommend(&req, have, &need);
        printf("%s\n", cs_variant_name(v));
        fprintf(stderr, "%s: largest stage needs %.1f GiB + margin %.1f GiB; %.1f GiB available (%s)%s\n",
                cs_variant_name(v), need / GiB, cs_mem_margin(have) / GiB, have / GiB, src,
                need + cs_mem_margin(have) > have ? "; even this does not fit" : "");
        return 0;
    }

    cli_signals_install();   /* hashing 20 GB of weights the first time takes a while */
    cs_model_set *s;
    if (cs_models_scan(dir, &s)) {
        fprintf(stderr, "cascade models: %s\n", cs_last_error());
        return 1;
    }
    int status = 0;
    for (int p = 0; p < CS_PART_COUNT; p++)
        if (force[p] && cs_models_force(s, (cs_part)p, force[p])) {
            fprintf(stderr, "cascade models: %s\n", cs_last_error());
            cs_models_free(s);
            return 1;
        }
    uint64_t *hashes = calloc((size_t)s->n + 1, sizeof *hashes);
    char *hashed = calloc((size_t)s->n + 1, 1);
    for (int i = 0; hash && hashes && hashed && i < s->n && !cs_cancel_pending(); i++) {
        if (s->files[i].foreign || s->files[i].index > 0) continue;
        int cached;
        if (s->files[i].size > (1u << 30) && isatty(2) && !cs_file_xxh64_cached(s->files[i].path, &hashes[i]))
            fprintf(stderr, "hashing %s (%.1f GB, once: the hash is cached)...\n", s->files[i].path,
                    s->files[i].size / 1e9);
        if (!cs_file_xxh64(s->files[i].path, &hashes[i], &cached)) hashed[i] = 1;
        else if (!cs_cancel_pending()) fprintf(stderr, "cascade models: %s\n", cs_last_error());
    }
    if (cs_cancel_pending()) {   /* the hashes finished so far are cached */
        int why = cs_cancel_pending();
        fprintf(stderr, "cascade models: %s while hashing; nothing listed\n", cli_stop_text(why));
        free(hashes);
        free(hashed);
        cs_models_free(s);
        return cli_stop_status(why);
    }
    for (int i = 0; hashes && hashed && i < s->n; i++)   /* later networks of one file share its hash */
        if (s->files[i].index > 0 && i >= s->files[i].index && hashed[i - s->files[i].index]) {
            hashes[i] = hashes[i - s->files[i].index];
            hashed[i] = 1;
        }

    int present[CS_PART_COUNT] = {0};
    for (int i = 0; i < s->n; i++)
        if (!s->files[i].problem) present[cs_net_part(s->files[i].info.net)] = 1;
    cs_choice ch;
    int crc = cs_models_choose(s, &req, &ch);
    char cerr[1024] = "";
    if (crc) {
        snprintf(cerr, sizeof cerr, "%s", cs_last_error());
        status = 1;
    } else if (!s->tokenizer) {
        snprintf(cerr, sizeof cerr, "no tokenizer folder (vocab.json + merges.txt) found (%s)", cs_models_looked(s));
        status = 1;
    }

    if (json) {
        json_t *root = json_object(), *roots = json_array(), *files = json_array(), *looked = json_array();
        for (int i = 0; i < s->n_roots; i++)
            json_array_append_new(roots, json_pack("{s:s, s:s}", "path", s->roots[i], "why", s->root_why[i]));
        for (int i = 0; i < s->n; i++) {
            const cs_model_file *f = &s->files[i];
            json_t *o = json_pack("{s:s, s:I}", "path", f->path, "size", (json_int_t)f->size);
            if (f->problem) {
                json_object_set_new(o, "problem", json_string(f->problem));
                json_object_set_new(o, "foreign", json_boolean(f->foreign));
            } else {
                cs_part p = cs_net_part(f->info.net);
                json_object_set_new(o, "part", json_string(cs_part_name(p)));
                json_object_set_new(o, "network", json_string(cs_net_name(f->info.net)));
                json_object_set_new(o, "variant", p <= CS_PART_STAGE_B ? json_string(variant_col(f)) : json_null());
                json_object_set_new(o, "dtype", json_string(dtype_str(&f->info)));
                json_object_set_new(o, "tensors", json_integer(f->info.n_tensors));
                json_object_set_new(o, "params", json_integer(f->info.params));
                json_object_set_new(o, "weight_bytes", json_integer((json_int_t)f->info.weight_bytes));
                json_object_set_new(o, "naming", json_string(cs_naming_name(f->info.naming)));
                json_object_set_new(o, "prefix", json_string(f->info.prefix));
                json_object_set_new(o, "extra_tensors", json_integer(f->info.n_extra));
                if (f->config) json_object_set_new(o, "config", json_string(f->config));
            }
            if (hashed && hashed[i]) {
                char h[17];
                snprintf(h, sizeof h, "%016" PRIx64, hashes[i]);
                json_object_set_new(o, "xxh64", json_string(h));
            }
            json_object_set_new(o, "root", f->root >= 0 ? json_string(s->roots[f->root]) : json_null());
            json_array_append_new(files, o);
        }
        for (int i = 0; i < s->n_looked; i++) json_array_append_new(looked, json_string(s->looked[i]));
        json_object_set_new(root, "roots", roots);
        json_object_set_new(root, "files", files);
        json_object_set_new(root, "tokenizer", s->tokenizer ? json_string(s->tokenizer) : json_null());
        json_object_set_new(root, "looked", looked);
        json_t *au = json_pack("{s:i, s:i, s:i}", "width", req.width, "height", req.height, "batch", req.batch);
        json_t *missing = json_array();
        if (!crc) {
            json_t *picks = json_object();
            for (int p = 0; p < CS_PART_COUNT; p++) {
                if (ch.file[p] < 0) continue;
                const cs_model_file *f = &s->files[ch.file[p]];
                json_object_set_new(picks, cs_part_name(p),
                    json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "path", f->path, "network",
                              cs_net_name(f->info.net), "dtype", dtype_str(&f->info), "need", (json_int_t)ch.need[p].total,
                              "weights", (json_int_t)ch.need[p].weights, "scratch", (json_int_t)ch.need[p].scratch,
                              "activations", (json_int_t)ch.need[p].acts, "why", ch.why[p]));
            }
            json_object_set_new(au, "picks", picks);
            json_object_set_new(au, "have", json_integer((json_int_t)ch.have));
            json_object_set_new(au, "have_source", json_string(ch.have_src));
            json_object_set_new(au, "margin", json_integer((json_int_t)ch.margin));
            json_object_set_new(au, "need", json_integer((json_int_t)ch.need_max));
            json_object_set_new(au, "need_part", ch.need_part >= 0 ? json_string(cs_part_name(ch.need_part)) : json_null());
            json_object_set_new(au, "fits", json_boolean(ch.fits));
        }
        for (int p = 0; p < CS_PART_COUNT; p++)
            if (!present[p])
                json_array_append_new(missing, json_pack("{s:s, s:b}", "part", cs_part_name(p), "required",
                                                         !strcmp(part_use(p), "required")));
        if (!s->tokenizer)
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
    for (int i = 0; i < s->n_roots; i++) printf("  %s  (%s)\n", s->roots[i], s->root_why[i]);
    if (!s->n_roots) printf("  none: pass --models DIR or set CASCADE_MODELS\n");
    int nf = 0, nbad = 0, nforeign = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->files[i].foreign) nforeign++;
        else if (s->files[i].problem) nbad++;
        else nf++;
    }
    printf("\nfiles (%d):\n", nf);
    if (nf) printf("  %-15s %-21s %-9s %-6s %9s  %-16s  %s\n", "part", "network", "variant", "dtype", "size", "xxh64", "path");
    for (int k = 0; k < s->n * CS_PART_COUNT; k++) {   /* grouped by part, in pipeline order */
        int i = k % s->n;
        const cs_model_file *f = &s->files[i];
        if (f->problem || (int)cs_net_part(f->info.net) != k / s->n) continue;
        char h[17] = "-", note[300];
        if (hashed && hashed[i]) snprintf(h, sizeof h, "%016" PRIx64, hashes[i]);
        note_of(f, note, sizeof note);
        printf("  %-15s %-21s %-9s %-6s %6.2f GB  %-16s  %s%s\n", cs_part_name(cs_net_part(f->info.net)),
               cs_net_name(f->info.net), variant_col(f), dtype_str(&f->info), f->size / 1e9, h, f->path,
               note);
    }
    if (nbad) {
        printf("\nunusable files:\n");
        for (int i = 0; i < s->n; i++)
            if (s->files[i].problem && !s->files[i].foreign) printf("  %s\n", s->files[i].problem);
    }
    if (nforeign) {
        printf("\nother safetensors files (not Stable Cascade, ignored):\n");
        for (int i = 0; i < s->n; i++)
            if (s->files[i].foreign) printf("  %s\n", s->files[i].path);
    }
    printf("\ntokenizer: %s\n", s->tokenizer ? s->tokenizer : "not found (needs vocab.json + merges.txt)");
    printf("\nauto for %dx%d, batch %d:\n", req.width, req.height, req.batch);
    if (crc) {
        printf("  cannot choose: %s\n", cerr);
    } else {
        printf("  memory: %.1f GiB available (%s), margin %.1f GiB\n", ch.have / GiB, ch.have_src, ch.margin / GiB);
        printf("  largest stage: %s needs %.1f GiB: %s\n", cs_part_title(ch.need_part), ch.need_max / GiB,
               ch.fits ? "fits" : "DOES NOT FIT (expect heavy swapping or failure; try a smaller variant or size)");
        for (int p = 0; p < CS_PART_COUNT; p++) {
            if (ch.file[p] < 0) continue;
            const cs_mem_need *nd = &ch.need[p];
            printf("  %-15s need %5.1f GiB (weights %.1f + scratch %.1f + activations %.1f)  %s\n", cs_part_name(p),
                   nd->total / GiB, nd->weights / GiB, nd->scratch / GiB, nd->acts / GiB, s->files[ch.file[p]].path);
            printf("  %-15s %s\n", "", ch.why[p]);
        }
    }
    int nmiss = 0;
    for (int p = 0; p < CS_PART_COUNT; p++) {
        if (present[p]) continue;
        if (!nmiss++) printf("\nmissing:\n");
        printf("  %-15s (%s)\n", cs_part_name(p), part_use(p));
    }
    if (!s->tokenizer) {
        if (!nmiss++) printf("\nmissing:\n");
        printf("  %-15s (required: vocab.json + merges.txt)\n", "tokenizer");
    }
    printf("\nlooked in:\n");
    for (int i = 0; i < s->n_looked; i++) printf("  %s\n", s->looked[i]);
    if (!s->n_looked) printf("  nothing\n");
    if (status) fprintf(stderr, "cascade models: %s\n", cerr);
out:
    free(hashes);
    free(hashed);
    cs_models_free(s);
    return status;
}
