/* kohya's dataset config (TOML) -> cs_ds_config. The key table follows
 * sd-scripts library/config_util.py (ConfigSanitizer, branch stable-cascade):
 * where each key may stand ([general], [[datasets]], [[datasets.subsets]]),
 * its type, and what we do with it. */
#include "dataset.h"
#include "error.h"
#include "infile.h"
#include "toml.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_FILE ((uint64_t)1 << 20)

enum { LV_G = 1, LV_D = 2, LV_S = 4, LV_ANY = 7 };
enum { K_STR, K_INT, K_BOOL, K_NUM, K_RESO, K_FPAIR };
enum { USE, IGNORE, REFUSE };

typedef struct {
    const char *name;
    int kind, levels, use;
    size_t off;     /* into cs_ds_subset (LV_S keys) or cs_ds_dataset (the others) */
} key_def;

#define SUB(f) offsetof(cs_ds_subset, f)
#define DS(f) offsetof(cs_ds_dataset, f)
static const key_def keys[] = {
    /* dataset options: [general] and [[datasets]] */
    {"batch_size", K_INT, LV_G | LV_D, USE, DS(batch_size)},
    {"bucket_no_upscale", K_BOOL, LV_G | LV_D, USE, DS(bucket_no_upscale)},
    {"bucket_reso_steps", K_INT, LV_G | LV_D, USE, DS(bucket_reso_steps)},
    {"enable_bucket", K_BOOL, LV_G | LV_D, USE, DS(enable_bucket)},
    {"max_bucket_reso", K_INT, LV_G | LV_D, USE, DS(max_bucket_reso)},
    {"min_bucket_reso", K_INT, LV_G | LV_D, USE, DS(min_bucket_reso)},
    {"resolution", K_RESO, LV_G | LV_D, USE, DS(width)},
    {"network_multiplier", K_NUM, LV_G | LV_D, IGNORE, 0},
    /* subset options: anywhere */
    {"num_repeats", K_INT, LV_ANY, USE, SUB(num_repeats)},
    {"caption_extension", K_STR, LV_ANY, USE, SUB(caption_extension)},
    {"class_tokens", K_STR, LV_ANY, USE, SUB(class_tokens)},
    {"caption_prefix", K_STR, LV_ANY, USE, SUB(caption_prefix)},
    {"caption_suffix", K_STR, LV_ANY, USE, SUB(caption_suffix)},
    {"shuffle_caption", K_BOOL, LV_ANY, USE, SUB(shuffle_caption)},
    {"keep_tokens", K_INT, LV_ANY, USE, SUB(keep_tokens)},
    {"flip_aug", K_BOOL, LV_ANY, USE, SUB(flip_aug)},
    {"caption_dropout_rate", K_NUM, LV_ANY, USE, SUB(caption_dropout_rate)},
    {"caption_tag_dropout_rate", K_NUM, LV_ANY, USE, SUB(caption_tag_dropout_rate)},
    {"caption_dropout_every_n_epochs", K_INT, LV_ANY, USE, SUB(caption_dropout_every_n_epochs)},
    {"color_aug", K_BOOL, LV_ANY, IGNORE, 0},
    {"random_crop", K_BOOL, LV_ANY, IGNORE, 0},
    {"face_crop_aug_range", K_FPAIR, LV_ANY, IGNORE, 0},
    {"keep_tokens_separator", K_STR, LV_ANY, IGNORE, 0},
    {"token_warmup_min", K_INT, LV_ANY, IGNORE, 0},
    {"token_warmup_step", K_NUM, LV_ANY, IGNORE, 0},
    /* in kohya's newer docs (config_README-en.md), not on the stable-cascade branch */
    {"caption_separator", K_STR, LV_ANY, IGNORE, 0},
    {"secondary_separator", K_STR, LV_ANY, IGNORE, 0},
    {"enable_wildcard", K_BOOL, LV_ANY, IGNORE, 0},
    {"resize_interpolation", K_STR, LV_ANY, IGNORE, 0},
    {"cache_info", K_BOOL, LV_ANY, IGNORE, 0},
    /* subset only */
    {"image_dir", K_STR, LV_S, USE, SUB(image_dir)},
    {"is_reg", K_BOOL, LV_S, USE, SUB(is_reg)},
    {"metadata_file", K_STR, LV_S, REFUSE, 0},
    {"conditioning_data_dir", K_STR, LV_S, REFUSE, 0},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const char *level_name(int lv)
{
    return lv == LV_G ? "[general]" : lv == LV_D ? "[[datasets]]" : "[[datasets.subsets]]";
}

static const key_def *key_find(const char *k)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].name, k)) return &keys[i];
    return NULL;
}

static int type_ok(const key_def *d, const cs_toml *v)
{
    switch (d->kind) {
    case K_STR: return v->type == CS_TOML_STRING;
    case K_INT: return v->type == CS_TOML_INT;
    case K_BOOL: return v->type == CS_TOML_BOOL;
    case K_NUM: return v->type == CS_TOML_INT || v->type == CS_TOML_FLOAT;
    case K_RESO:
        return v->type == CS_TOML_INT || (v->type == CS_TOML_ARRAY && v->n == 2 && v->items[0]->type == CS_TOML_INT &&
                                          v->items[1]->type == CS_TOML_INT);
    default:
        return v->type == CS_TOML_ARRAY && v->n == 2 &&
               (v->items[0]->type == CS_TOML_INT || v->items[0]->type == CS_TOML_FLOAT) &&
               (v->items[1]->type == CS_TOML_INT || v->items[1]->type == CS_TOML_FLOAT);
    }
}

static const char *kind_name(int k)
{
    static const char *n[] = {"a string", "an integer", "true or false", "a number", "an integer or [width, height]",
                              "[low, high]"};
    return n[k];
}

/* every key of table t (at level lv) is known, allowed there, of its type */
static int check_table(const cs_toml *t, int lv, const char *name, cs_prompt_warn_fn warn, void *ctx)
{
    for (size_t i = 0; i < t->n; i++) {
        const char *k = t->keys[i];
        const cs_toml *v = t->items[i];
        if (lv == LV_D && !strcmp(k, "subsets")) continue;   /* checked by the caller */
        const key_def *d = key_find(k);
        if (!d) return cs_error(CS_EFORMAT, "%s:%d:%d: unknown key '%s' in %s", name, v->line, v->col, k, level_name(lv));
        if (!(d->levels & lv))
            return cs_error(CS_EFORMAT, "%s:%d:%d: '%s' belongs in %s, not in %s", name, v->line, v->col, k,
                            d->levels == LV_S ? "[[datasets.subsets]]" : "[general] or [[datasets]]", level_name(lv));
        if (!type_ok(d, v))
            return cs_error(CS_EFORMAT, "%s:%d:%d: '%s' must be %s, not %s %s", name, v->line, v->col, k,
                            kind_name(d->kind), strchr("aeiou", cs_toml_type_name(v->type)[0]) ? "an" : "a",
                            cs_toml_type_name(v->type));
        if (v->type == CS_TOML_STRING && strlen(v->s) != v->len)
            return cs_error(CS_EFORMAT, "%s:%d:%d: '%s' holds a NUL character", name, v->line, v->col, k);
        if (d->use == REFUSE)
            return cs_error(CS_EUNSUP, "%s:%d:%d: '%s' (kohya's fine-tuning / ControlNet datasets) is not supported; "
                            "use image_dir with caption files", name, v->line, v->col, k);
        if (d->use == IGNORE && warn) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s:%d:%d: '%s' is ignored (cascade does not implement it)", name, v->line,
                     v->col, k);
            warn(ctx, msg);
        }
    }
    return 0;
}

/* the value of key from the most specific of the tables (NULL ones skipped) */
static const cs_toml *lookup(const char *key, const cs_toml *a, const cs_toml *b, const cs_toml *c)
{
    const cs_toml *v = cs_toml_get(a, key);
    if (!v) v = cs_toml_get(b, key);
    if (!v) v = cs_toml_get(c, key);
    return v;
}

static int set_value(const key_def *d, const cs_toml *v, void *base, const char *name)
{
    char *p = (char *)base + d->off;
    switch (d->kind) {
    case K_STR: {
        char *s = strdup(v->s);
        if (!s) return cs_oom("config string", v->len + 1);
        free(*(char **)p);
        *(char **)p = s;
        return 0;
    }
    case K_BOOL: *(int *)p = (int)v->i; return 0;
    case K_NUM: *(double *)p = v->type == CS_TOML_INT ? (double)v->i : v->f; return 0;
    case K_RESO: {
        int64_t w = v->type == CS_TOML_INT ? v->i : v->items[0]->i, h = v->type == CS_TOML_INT ? v->i : v->items[1]->i;
        if (w < 1 || h < 1 || w > 16384 || h > 16384)
            return cs_error(CS_EFORMAT, "%s:%d:%d: 'resolution' %lldx%lld: each side must be 1 to 16384", name, v->line,
                            v->col, (long long)w, (long long)h);
        ((cs_ds_dataset *)base)->width = (int)w, ((cs_ds_dataset *)base)->height = (int)h;
        return 0;
    }
    default: {   /* K_INT: every integer key is a count or a size */
        if (v->i < 0 || v->i > 1000000)
            return cs_error(CS_EFORMAT, "%s:%d:%d: '%s' = %lld is out of range (0 to 1000000)", name, v->line, v->col,
                            d->name, (long long)v->i);
        *(int *)p = (int)v->i;
        return 0;
    }
    }
}

/* fills the USE keys of one level (dataset or subset struct) */
static int fill(void *base, int lv, const cs_toml *s, const cs_toml *d, const cs_toml *g, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (k->use != USE || (lv == LV_S) != (k->levels == LV_ANY || k->levels == LV_S)) continue;
        const cs_toml *v = lookup(k->name, s, d, g);
        if (!v) continue;
        int rc = set_value(k, v, base, name);
        if (rc) return rc;
    }
    return 0;
}

static void subset_free(cs_ds_subset *s)
{
    free(s->image_dir);
    free(s->caption_extension);
    free(s->class_tokens);
    free(s->caption_prefix);
    free(s->caption_suffix);
}

void cs_ds_config_free(cs_ds_config *c)
{
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        for (int j = 0; j < c->datasets[i].n_subsets; j++) subset_free(&c->datasets[i].subsets[j]);
        free(c->datasets[i].subsets);
    }
    free(c->datasets);
    memset(c, 0, sizeof *c);
}

static void dataset_defaults(cs_ds_dataset *d)
{
    memset(d, 0, sizeof *d);
    d->batch_size = 1;
    d->min_bucket_reso = 256, d->max_bucket_reso = 1024, d->bucket_reso_steps = 64;
}

/* ".txt" from "txt" (kohya adds the dot too) */
static int dot_extension(cs_ds_subset *s)
{
    const char *e = s->caption_extension ? s->caption_extension : ".caption";
    char *x = malloc(strlen(e) + 2);
    if (!x) return cs_oom("caption extension", strlen(e) + 2);
    snprintf(x, strlen(e) + 2, "%s%s", e[0] == '.' || !e[0] ? "" : ".", e);
    free(s->caption_extension);
    s->caption_extension = x;
    return 0;
}

/* the dataset-level rules kohya asserts (and the stable-cascade script's
 * bucket_reso_steps % 32); the resolution ones only when it is given */
static int check_dataset(const cs_ds_dataset *d, const cs_toml *at, const char *name)
{
    int line = at->line, col = at->col;
    if (d->batch_size < 1) return cs_error(CS_EFORMAT, "%s:%d:%d: batch_size must be at least 1", name, line, col);
    if (!d->enable_bucket) return 0;
    if (d->bucket_reso_steps < 1 || d->bucket_reso_steps % 32)
        return cs_error(CS_EFORMAT, "%s:%d:%d: bucket_reso_steps = %d: it must be a multiple of 32 (EffNet's stride)",
                        name, line, col, d->bucket_reso_steps);
    if (d->min_bucket_reso < 1 || d->min_bucket_reso > d->max_bucket_reso)
        return cs_error(CS_EFORMAT, "%s:%d:%d: min_bucket_reso (%d) must be 1 to max_bucket_reso (%d)", name, line,
                        col, d->min_bucket_reso, d->max_bucket_reso);
    return 0;
}

int cs_ds_config_parse(const char *text, size_t len, const char *name, cs_prompt_warn_fn warn, void *ctx,
                       cs_ds_config *out)
{
    memset(out, 0, sizeof *out);
    cs_toml *root = NULL;
    int rc = cs_toml_parse(text, len, name, &root);
    if (rc) return rc;
    const cs_toml *g = NULL, *ds = NULL;
    for (size_t i = 0; i < root->n && !rc; i++) {
        const char *k = root->keys[i];
        const cs_toml *v = root->items[i];
        if (!strcmp(k, "general") && v->type == CS_TOML_TABLE) g = v;
        else if (!strcmp(k, "datasets") && v->type == CS_TOML_ARRAY) ds = v;
        else
            rc = cs_error(CS_EFORMAT, "%s:%d:%d: unexpected %s '%s' at the top level (a config has [general] and "
                          "[[datasets]])", name, v->line, v->col, cs_toml_type_name(v->type), k);
    }
    if (!rc && g) rc = check_table(g, LV_G, name, warn, ctx);
    if (!rc && (!ds || !ds->n)) rc = cs_error(CS_EFORMAT, "%s: no [[datasets]]", name);
    if (!rc && !(out->datasets = calloc(ds->n, sizeof *out->datasets))) rc = cs_oom("datasets", ds->n * sizeof *out->datasets);
    for (size_t i = 0; !rc && i < ds->n; i++) {
        const cs_toml *d = ds->items[i];
        if (d->type != CS_TOML_TABLE) {
            rc = cs_error(CS_EFORMAT, "%s:%d:%d: datasets must be tables", name, d->line, d->col);
            break;
        }
        if ((rc = check_table(d, LV_D, name, warn, ctx))) break;
        const cs_toml *ss = cs_toml_get(d, "subsets");
        if (!ss || ss->type != CS_TOML_ARRAY || !ss->n) {
            rc = ss ? cs_error(CS_EFORMAT, "%s:%d:%d: 'subsets' must be [[datasets.subsets]] tables", name, ss->line, ss->col)
                    : cs_error(CS_EFORMAT, "%s:%d:%d: this dataset has no [[datasets.subsets]]", name, d->line, d->col);
            break;
        }
        cs_ds_dataset *o = &out->datasets[out->n++];
        dataset_defaults(o);
        if (!(o->subsets = calloc(ss->n, sizeof *o->subsets))) {
            rc = cs_oom("subsets", ss->n * sizeof *o->subsets);
            break;
        }
        if ((rc = fill(o, LV_D, NULL, d, g, name)) || (rc = check_dataset(o, d, name))) break;
        for (size_t j = 0; !rc && j < ss->n; j++) {
            const cs_toml *s = ss->items[j];
            if (s->type != CS_TOML_TABLE) {
                rc = cs_error(CS_EFORMAT, "%s:%d:%d: subsets must be tables", name, s->line, s->col);
                break;
            }
            if ((rc = check_table(s, LV_S, name, warn, ctx))) break;
            cs_ds_subset *u = &o->subsets[o->n_subsets++];
            u->num_repeats = 1;
            if ((rc = fill(u, LV_S, s, d, g, name)) || (rc = dot_extension(u))) break;
            if (!u->image_dir || !u->image_dir[0])
                rc = cs_error(CS_EFORMAT, "%s:%d:%d: this subset has no image_dir", name, s->line, s->col);
            else if (u->caption_dropout_rate < 0 || u->caption_dropout_rate > 1 || u->caption_tag_dropout_rate < 0 ||
                     u->caption_tag_dropout_rate > 1)
                rc = cs_error(CS_EFORMAT, "%s:%d:%d: caption dropout rates must be 0 to 1", name, s->line, s->col);
        }
    }
    cs_toml_free(root);
    if (rc) cs_ds_config_free(out);
    return rc;
}

int cs_ds_config_load(const char *path, cs_prompt_warn_fn warn, void *ctx, cs_ds_config *out)
{
    memset(out, 0, sizeof *out);
    char *buf = NULL;
    size_t len = 0;
    int rc = cs_infile_read(path, "dataset config", MAX_CONFIG_FILE, &buf, &len);
    if (rc) return rc;
    rc = cs_ds_config_parse(buf, len, path, warn, ctx, out);
    free(buf);
    return rc;
}

int cs_ds_config_folder(const char *dir, cs_ds_config *out)
{
    memset(out, 0, sizeof *out);
    if (!(out->datasets = calloc(1, sizeof *out->datasets))) return cs_oom("datasets", sizeof *out->datasets);
    out->n = 1;
    cs_ds_dataset *d = &out->datasets[0];
    dataset_defaults(d);
    if (!(d->subsets = calloc(1, sizeof *d->subsets))) {
        cs_ds_config_free(out);
        return cs_oom("subsets", sizeof *d->subsets);
    }
    d->n_subsets = 1;
    d->subsets[0].num_repeats = 1;
    d->subsets[0].image_dir = strdup(dir);
    d->subsets[0].caption_extension = strdup(".txt");
    if (!d->subsets[0].image_dir || !d->subsets[0].caption_extension) {
        cs_ds_config_free(out);
        return cs_oom("dataset folder", strlen(dir));
    }
    return 0;
}
