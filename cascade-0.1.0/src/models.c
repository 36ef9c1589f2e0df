/* Finding model files: search roots in order (--models, $CASCADE_MODELS,
 * the XDG data folder), each laid out as a flat folder, a Hugging Face
 * snapshot or hub-cache repo, diffusers folders, or a ComfyUI tree. Every
 * *.safetensors / *.sft found is identified by its header, never its name. */
#include "models.h"

#include "error.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int grow(void **p, int n, int *cap, size_t sz)
{
    if (n < *cap) return 0;
    int c = *cap ? 2 * *cap : 16;
    void *q = realloc(*p, (size_t)c * sz);
    if (!q) return cs_error(CS_ENOMEM, "out of memory listing model files");
    *p = q;
    *cap = c;
    return 0;
}

typedef struct {
    cs_model_set s;
    int cap_files, cap_looked;
    char **seen;            /* real paths already identified */
    int n_seen, cap_seen;
} set_priv;

static int is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int add_looked(set_priv *sp, const char *dir, const char *note)
{
    cs_model_set *s = &sp->s;
    if (grow((void **)&s->looked, s->n_looked, &sp->cap_looked, sizeof *s->looked)) return CS_ENOMEM;
    size_t len = strlen(dir) + strlen(note) + 1;
    if (!(s->looked[s->n_looked] = malloc(len))) return cs_error(CS_ENOMEM, "out of memory listing model files");
    snprintf(s->looked[s->n_looked++], len, "%s%s", dir, note);
    return 0;
}

static cs_model_file *new_file(set_priv *sp, const char *path, uint64_t size, int root)
{
    cs_model_set *s = &sp->s;
    if (grow((void **)&s->files, s->n, &sp->cap_files, sizeof *s->files)) return NULL;
    cs_model_file *f = &s->files[s->n];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) {
        cs_error(CS_ENOMEM, "out of memory listing model files");
        return NULL;
    }
    f->size = size;
    f->root = root;
    s->n++;
    return f;
}

/* 1 if path (resolved) was seen before, else remembers it. */
static int seen(set_priv *sp, const char *path)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
    for (int i = 0; i < sp->n_seen; i++)
        if (!strcmp(sp->seen[i], real)) return 1;
    if (grow((void **)&sp->seen, sp->n_seen, &sp->cap_seen, sizeof *sp->seen)) return 0;
    if ((sp->seen[sp->n_seen] = strdup(real))) sp->n_seen++;
    return 0;
}

/* Identifies path and appends one entry per network (or one with a problem). */
static int add_path(set_priv *sp, const char *path, int root, int *first)
{
    struct stat st;
    if (stat(path, &st)) return cs_error(CS_EIO, "%s: %s", path, strerror(errno));
    *first = sp->s.n;
    cs_netid info[16];
    int n = cs_identify_path(path, info, 16);
    if (n <= 0) {
        cs_model_file *f = new_file(sp, path, (uint64_t)st.st_size, root);
        if (!f) return CS_ENOMEM;
        f->foreign = n == 0;
        if (!(f->problem = strdup(cs_last_error()))) return cs_error(CS_ENOMEM, "out of memory listing model files");
        return 0;
    }
    if (n > 16) n = 16;
    for (int i = 0; i < n; i++) {
        cs_model_file *f = new_file(sp, path, (uint64_t)st.st_size, root);
        if (!f) return CS_ENOMEM;
        f->info = info[i];
        f->n_nets = n;
        f->index = i;
        if (info[i].net == CS_NET_TEXT_G) {   /* HF layout: config.json beside the weights */
            char cfg[PATH_MAX + 16];
            const char *slash = strrchr(path, '/');
            snprintf(cfg, sizeof cfg, "%.*sconfig.json", slash ? (int)(slash - path + 1) : 0, path);
            if (is_file(cfg) && !(f->config = strdup(cfg))) return cs_error(CS_ENOMEM, "out of memory listing model files");
        }
    }
    return 0;
}

static int has_ext(const char *name)
{
    size_t n = strlen(name);
    return (n > 12 && !strcmp(name + n - 12, ".safetensors")) || (n > 4 && !strcmp(name + n - 4, ".sft"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of dir's entries (files if want_dirs == 0, folders if 1). */
static int list_dir(const char *dir, int want_dirs, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int cap = 0, rc = 0;
    struct dirent *e;
    char p[PATH_MAX];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (want_dirs ? !is_dir(p) : !(is_file(p) && has_ext(e->d_name))) continue;
        if ((rc = grow((void **)out, *n, &cap, sizeof **out))) break;
        if (!((*out)[*n] = strdup(e->d_name))) {
            rc = cs_error(CS_ENOMEM, "out of memory listing model files");
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(*out, (size_t)*n, sizeof **out, cmp_str);
    return rc;
}

static void free_list(char **l, int n)
{
    for (int i = 0; i < n; i++) free(l[i]);
    free(l);
}

static int scan_dir(set_priv *sp, const char *dir, int root)
{
    char **names;
    int n, rc;
    if ((rc = list_dir(dir, 0, &names, &n))) return rc;
    if ((rc = add_looked(sp, dir, ""))) goto out;
    for (int i = 0; i < n && !rc; i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        /* the same blob may be reachable twice (HF snapshots link into blobs/) */
        if (seen(sp, p)) continue;
        int first;
        rc = add_path(sp, p, root, &first);
    }
out:
    free_list(names, n);
    return rc;
}

static int icontains(const char *s, const char *sub)
{
    size_t n = strlen(sub);
    for (; *s; s++) {
        size_t i = 0;
        while (i < n && s[i] && tolower((unsigned char)s[i]) == sub[i]) i++;
        if (i == n) return 1;
    }
    return 0;
}

static void find_tokenizer(set_priv *sp, const char *dir)
{
    char v[PATH_MAX + 16], m[PATH_MAX + 16];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    if (!sp->s.tokenizer && is_file(v) && is_file(m)) sp->s.tokenizer = strdup(dir);
}

static int scan_root(set_priv *sp, const char *R, int root, int depth)
{
    static const char *const hf_sub[] = {"text_encoder", "prior", "prior_lite", "decoder", "decoder_lite",
                                         "vqgan", "comfyui_checkpoints"};
    static const char *const comfy_sub[] = {"unet", "diffusion_models", "vae", "clip", "text_encoders",
                                            "checkpoints", "clip_vision"};
    char p[PATH_MAX], q[PATH_MAX + 256];
    int rc;
    if (!is_dir(R)) return add_looked(sp, R, " (does not exist)");
    if ((rc = scan_dir(sp, R, root))) return rc;
    for (size_t i = 0; i < sizeof hf_sub / sizeof *hf_sub; i++) {
        snprintf(p, sizeof p, "%s/%s", R, hf_sub[i]);
        if (is_dir(p) && (rc = scan_dir(sp, p, root))) return rc;
    }
    for (int base = 0; base < 2; base++) {   /* a ComfyUI root, or its models/ folder */
        for (size_t i = 0; i < sizeof comfy_sub / sizeof *comfy_sub; i++) {
            snprintf(p, sizeof p, base ? "%s/models/%s" : "%s/%s", R, comfy_sub[i]);
            if (!is_dir(p)) continue;
            if ((rc = scan_dir(sp, p, root))) return rc;
            char **sub;
            int n;
            if ((rc = list_dir(p, 1, &sub, &n))) return rc;
            for (int k = 0; k < n && !rc; k++) {   /* users sort models into one level of subfolders */
                snprintf(q, sizeof q, "%s/%s", p, sub[k]);
                rc = scan_dir(sp, q, root);
            }
            free_list(sub, n);
            if (rc) return rc;
        }
    }
    snprintf(p, sizeof p, "%s/tokenizer", R);
    find_tokenizer(sp, p);
    find_tokenizer(sp, R);
    if (depth >= 2) return 0;
    /* Hugging Face hub cache: <repo>/snapshots/<rev>/, or a cache folder of such repos */
    const char *nested[] = {"snapshots", ".", "hub"};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", R, nested[k]);
        if (!is_dir(p)) continue;
        char **sub;
        int n;
        if ((rc = list_dir(p, 1, &sub, &n))) return rc;
        for (int i = 0; i < n && !rc; i++) {
            if (k > 0 && !(strncmp(sub[i], "models--", 8) == 0 && icontains(sub[i], "stable-cascade"))) continue;
            snprintf(q, sizeof q, "%s/%s", p, sub[i]);
            rc = scan_root(sp, q, root, depth + 1);
        }
        free_list(sub, n);
        if (rc) return rc;
    }
    return 0;
}

int cs_models_scan_roots(const char *const *roots, const char *const *why, int n, cs_model_set **out)
{
    *out = NULL;
    set_priv *sp = calloc(1, sizeof *sp);
    if (!sp) return cs_error(CS_ENOMEM, "out of memory listing model files");
    cs_model_set *s = &sp->s;
    for (int p = 0; p < CS_PART_COUNT; p++) s->forced[p] = -1;
    int rc = 0;
    if (n > 0) {
        s->roots = calloc((size_t)n, sizeof *s->roots);
        s->root_why = calloc((size_t)n, sizeof *s->root_why);
        if (!s->roots || !s->root_why) rc = cs_error(CS_ENOMEM, "out of memory listing model files");
    }
    for (int i = 0; i < n && !rc; i++) {
        s->roots[i] = strdup(roots[i]);
        s->root_why[i] = strdup(why && why[i] ? why[i] : "");
        if (!s->roots[i] || !s->root_why[i]) rc = cs_error(CS_ENOMEM, "out of memory listing model files");
        s->n_roots++;
    }
    for (int i = 0; i < n && !rc; i++) rc = scan_root(sp, roots[i], i, 0);
    if (rc) {
        cs_models_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int cs_models_scan(const char *models_dir, cs_model_set **out)
{
    char *roots[34], *why[34], xdg[PATH_MAX], env[8192];
    int n = 0;
    if (models_dir && *models_dir) {
        roots[n] = (char *)models_dir;
        why[n++] = "--models";
    }
    const char *e = getenv("CASCADE_MODELS");
    if (e && *e) {
        snprintf(env, sizeof env, "%s", e);
        for (char *t = strtok(env, ":"); t && n < 32; t = strtok(NULL, ":")) {
            roots[n] = t;
            why[n++] = "$CASCADE_MODELS";
        }
    }
    const char *data = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    xdg[0] = 0;
    if (data && data[0] == '/') snprintf(xdg, sizeof xdg, "%s/cascade/models", data);
    else if (home && *home) snprintf(xdg, sizeof xdg, "%s/.local/share/cascade/models", home);
    if (xdg[0]) {
        roots[n] = xdg;
        why[n++] = "default";
    }
    /* drop repeats, keeping the first */
    int m = 0;
    for (int i = 0; i < n; i++) {
        int dup = 0;
        for (int k = 0; k < m; k++) dup |= !strcmp(roots[k], roots[i]);
        if (!dup) {
            roots[m] = roots[i];
            why[m++] = why[i];
        }
    }
    return cs_models_scan_roots((const char *const *)roots, (const char *const *)why, m, out);
}

int cs_models_force(cs_model_set *s, cs_part part, const char *path)
{
    set_priv *sp = (set_priv *)s;   /* s is the first member */
    int first, rc = add_path(sp, path, -1, &first);
    if (rc) return rc;
    cs_model_file *f = &s->files[first];
    if (f->problem) return cs_error(CS_EMODEL, "%s", f->problem);
    char held[300] = "";
    size_t o = 0;
    for (int i = first; i < s->n; i++) {
        if (cs_net_part(s->files[i].info.net) == part) {
            s->forced[part] = i;
            return 0;
        }
        if (o < sizeof held)
            o += (size_t)snprintf(held + o, sizeof held - o, "%s%s", o ? " + " : "", cs_net_title(s->files[i].info.net));
    }
    return cs_error(CS_EMODEL, "%s: holds %s, not a %s", path, held, cs_part_title(part));
}

const char *cs_models_looked(const cs_model_set *s)
{
    static _Thread_local char buf[4096];
    size_t o = (size_t)snprintf(buf, sizeof buf, "looked in:");
    for (int i = 0; i < s->n_looked && o < sizeof buf; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s %s", i ? "," : "", s->looked[i]);
    if (!s->n_looked && o < sizeof buf) snprintf(buf + o, sizeof buf - o, " nothing (no search folder: pass --models DIR)");
    if (o >= sizeof buf) memcpy(buf + sizeof buf - 4, "...", 4);
    return buf;
}

void cs_models_free(cs_model_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free(s->files[i].path);
        free(s->files[i].problem);
        free(s->files[i].config);
    }
    free(s->files);
    for (int i = 0; i < s->n_roots; i++) {
        free(s->roots[i]);
        free(s->root_why[i]);
    }
    free(s->roots);
    free(s->root_why);
    for (int i = 0; i < s->n_looked; i++) free(s->looked[i]);
    free(s->looked);
    free(s->tokenizer);
    set_priv *sp = (set_priv *)s;
    for (int i = 0; i < sp->n_seen; i++) free(sp->seen[i]);
    free(sp->seen);
    free(sp);
}
