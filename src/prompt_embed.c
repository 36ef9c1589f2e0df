/* Textual-inversion embeddings for embedding:NAME in comfyui prompts.
 *
 * Format (what ComfyUI's load_embed reads for Stable Cascade, whose CLIP-G
 * tokenizer asks for key "clip_g", width 1280): a safetensors file whose
 * "clip_g" tensor is [n, width] or [width]; a file with a single tensor of
 * that shape (SD-style "emb_params") is taken as well. Not supported: .pt /
 * .bin pickles (arbitrary code on load; ComfyUI reads them with torch.load),
 * ComfyUI's search of subfolders (NAME may name one: sub/NAME), and its
 * "first tensor of any shape" fallback. Files are read once per run. */
#include "prompt.h"

#include "error.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char *name;
    float *rows;
    size_t n;
} entry;

struct cs_embeddings {
    char *dir;
    int width;
    entry *e;
    size_t n, cap;
};

int cs_embeddings_new(const char *dir, int width, cs_embeddings **out)
{
    *out = NULL;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cs_error(CS_EIO, "--embeddings %s: not a folder", dir);
    cs_embeddings *e = calloc(1, sizeof *e);
    if (!e || !(e->dir = strdup(dir))) {
        free(e);
        return cs_oom("the embeddings list", sizeof *e);
    }
    e->width = width;
    *out = e;
    return 0;
}

void cs_embeddings_free(cs_embeddings *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->n; i++) free(e->e[i].name), cs_free(e->e[i].rows);
    free(e->e);
    free(e->dir);
    free(e);
}

int cs_embeddings_width(const cs_embeddings *e) { return e->width; }
size_t cs_embeddings_count(const cs_embeddings *e) { return e ? e->n : 0; }
const char *cs_embeddings_name(const cs_embeddings *e, size_t i) { return e->e[i].name; }

/* NAME must stay inside the folder (ComfyUI skips such names as well). */
static int safe_name(const char *s)
{
    if (!*s || s[0] == '/') return 0;
    for (const char *p = s; *p;) {
        size_t k = strcspn(p, "/");
        if ((k == 2 && !strncmp(p, "..", 2)) || (k == 1 && p[0] == '.')) return 0;
        p += k + (p[k] == '/');
    }
    return 1;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int load(cs_embeddings *e, const char *name, const char *path, entry *out)
{
    cs_st_file *f;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    const cs_tensor *t = cs_st_find(f, "clip_g");
    if (!t && cs_st_count(f) == 1) t = cs_st_at(f, 0);
    char sh[64];
    if (!t)
        rc = cs_error(CS_EFORMAT, "embedding:%s: %s has no \"clip_g\" tensor (and more than one tensor)", name, path);
    else if (!((t->ndim == 2 && t->shape[1] == e->width && t->shape[0] > 0) || (t->ndim == 1 && t->shape[0] == e->width)))
        rc = cs_error(CS_EMODEL, "embedding:%s: %s tensor %s is %s; the text encoder needs [n, %d]", name, path,
                      t->name ? t->name : "?", cs_shape_str(t, sh, sizeof sh), e->width);
    else if (!(out->rows = cs_tensor_f32_dup(t)))
        rc = CS_ENOMEM;
    if (!rc) {
        out->n = t->ndim == 2 ? (size_t)t->shape[0] : 1;
        if (!(out->name = strdup(name))) {
            cs_free(out->rows);
            rc = cs_oom("the embeddings list", strlen(name));
        }
    }
    cs_st_close(f);
    return rc;
}

int cs_embeddings_get(cs_embeddings *e, const char *name, const float **rows, size_t *n)
{
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->e[i].name, name)) {
            *rows = e->e[i].rows, *n = e->e[i].n;
            return 1;
        }
    if (!safe_name(name)) return 0;
    int rc0;
    size_t len = strlen(e->dir) + strlen(name) + 32;
    char *path = malloc(len);
    if (!path) return cs_oom("a path", len);
    snprintf(path, len, "%s/%s", e->dir, name);
    if (!is_file(path)) snprintf(path, len, "%s/%s.safetensors", e->dir, name);
    for (int k = 0; k < 2 && !is_file(path); k++)
        snprintf(path, len, "%s/%s.%s", e->dir, name, k ? "bin" : "pt");
    if (!is_file(path)) {
        free(path);
        return 0;
    }
    size_t pl = strlen(path);
    if ((pl > 3 && !strcmp(path + pl - 3, ".pt")) || (pl > 4 && !strcmp(path + pl - 4, ".bin"))) {
        rc0 = cs_error(CS_EUNSUP, "embedding:%s: %s is a pickle (.pt/.bin); only .safetensors is read", name, path);
        free(path);
        return rc0;
    }
    if (e->n == e->cap) {
        size_t c = e->cap ? e->cap * 2 : 4;
        entry *p = realloc(e->e, c * sizeof *p);
        if (!p) {
            free(path);
            return cs_oom("the embeddings list", c * sizeof *p);
        }
        e->e = p, e->cap = c;
    }
    entry en = {0};
    int rc = load(e, name, path, &en);
    free(path);
    if (rc) return rc;
    e->e[e->n++] = en;
    *rows = en.rows, *n = en.n;
    return 1;
}
