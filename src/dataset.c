/* Scanning a dataset config into images, buckets and batches, the way
 * kohya sd-scripts does it (branch stable-cascade):
 *   library/train_util.py DreamBoothDataset.__init__ (read_caption,
 *     load_dreambooth_dir, the balancing of regularisation images),
 *   BaseDataset.make_buckets (bucket per image, num_repeats copies, batches
 *     of batch_size within a bucket),
 *   BucketManager.select_bucket, model_util.make_bucket_resolutions.
 * Differences, on purpose: a missing image_dir is an error (kohya warns and
 * skips it); .webp / .bmp are refused (we read PNG and JPEG); image sizes
 * are taken after the EXIF orientation (kohya's PIL sizes are not). */
#include "dataset.h"
#include "error.h"
#include "image_in.h"
#include "infile.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CAPTION_FILE ((uint64_t)1 << 20)

/* ---- buckets ---- */

static int cmp_reso(const void *a, const void *b)
{
    const int *x = a, *y = b;
    return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

static int add_reso(cs_bucketer *b, size_t *cap, int w, int h)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->resos[i][0] == w && b->resos[i][1] == h) return 0;
    if (b->n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        int(*r)[2] = realloc(b->resos, c * sizeof *r);
        if (!r) return cs_oom("buckets", c * sizeof *r);
        b->resos = r, *cap = c;
    }
    b->resos[b->n][0] = w, b->resos[b->n][1] = h;
    b->n++;
    return 0;
}

int cs_bucket_init(cs_bucketer *b, int width, int height, int min_size, int max_size, int steps, int no_upscale)
{
    memset(b, 0, sizeof *b);
    if (width < 1 || height < 1 || steps < 1 || min_size < 1 || max_size < min_size)
        return cs_error(CS_EARG, "buckets: bad sizes (resolution %dx%d, min %d, max %d, steps %d)", width, height,
                        min_size, max_size, steps);
    b->no_upscale = no_upscale;
    b->max_area = (int64_t)width * height;
    b->steps = steps;
    if (no_upscale) return 0;
    size_t cap = 0;
    int side = (int)((int64_t)sqrt((double)b->max_area) / steps * steps);
    int rc = side > 0 ? add_reso(b, &cap, side, side) : 0;
    for (int w = min_size; !rc && w <= max_size; w += steps) {
        int64_t h = b->max_area / w / steps * steps;
        if (h > max_size) h = max_size;
        if (h >= min_size) {
            rc = add_reso(b, &cap, w, (int)h);
            if (!rc) rc = add_reso(b, &cap, (int)h, w);
        }
    }
    if (!rc && !b->n) rc = cs_error(CS_EARG, "buckets: none between %d and %d for %dx%d", min_size, max_size, width, height);
    if (rc) {
        cs_bucket_free(b);
        return rc;
    }
    qsort(b->resos, b->n, sizeof *b->resos, cmp_reso);
    return 0;
}

int cs_bucket_init_fixed(cs_bucketer *b, int width, int height)
{
    memset(b, 0, sizeof *b);
    if (width < 1 || height < 1) return cs_error(CS_EARG, "buckets: bad resolution %dx%d", width, height);
    if (!(b->resos = malloc(sizeof *b->resos))) return cs_oom("buckets", sizeof *b->resos);
    b->resos[0][0] = width, b->resos[0][1] = height;
    b->n = 1;
    b->max_area = (int64_t)width * height;
    b->steps = 1;
    return 0;
}

void cs_bucket_free(cs_bucketer *b)
{
    if (b) free(b->resos), memset(b, 0, sizeof *b);
}

/* Python's int(x + 0.5) for x >= 0, then down to a multiple of steps */
static int64_t round_steps(double x, int steps)
{
    int64_t r = (int64_t)(x + 0.5);
    return r - r % steps;
}

int cs_bucket_select(const cs_bucketer *b, int w, int h, int reso[2], int resized[2])
{
    if (w < 1 || h < 1) return cs_error(CS_EARG, "bucket of a %dx%d image", w, h);
    double ar = (double)w / h;
    if (!b->no_upscale) {
        size_t best = 0;
        int found = 0;
        for (size_t i = 0; i < b->n && !found; i++)
            if (b->resos[i][0] == w && b->resos[i][1] == h) best = i, found = 1;
        /* np.abs(ar_errors).argmin(): the first of the smallest errors */
        for (size_t i = 0; i < b->n && !found; i++)
            if (fabs((double)b->resos[i][0] / b->resos[i][1] - ar) < fabs((double)b->resos[best][0] / b->resos[best][1] - ar))
                best = i;
        reso[0] = b->resos[best][0], reso[1] = b->resos[best][1];
        double scale = ar > (double)reso[0] / reso[1] ? (double)reso[1] / h : (double)reso[0] / w;
        resized[0] = (int)(w * scale + 0.5), resized[1] = (int)(h * scale + 0.5);
        return 0;
    }
    int64_t rw = w, rh = h;
    if ((int64_t)w * h > b->max_area) {
        /* scaled down to the area, the side that keeps the aspect better
         * rounded to steps */
        double fw = sqrt((double)b->max_area * ar), fh = (double)b->max_area / fw;
        int64_t bw = round_steps(fw, b->steps), bh_w = round_steps(bw / ar, b->steps);
        int64_t bh = round_steps(fh, b->steps), bw_h = round_steps(bh * ar, b->steps);
        if (!bh_w || !bh) return cs_error(CS_EARG, "image %dx%d: too narrow for buckets of %d pixels", w, h, b->steps);
        if (fabs((double)bw / bh_w - ar) < fabs((double)bw_h / bh - ar)) rw = bw, rh = (int64_t)(bw / ar + 0.5);
        else rw = (int64_t)(bh * ar + 0.5), rh = bh;
    }
    resized[0] = (int)rw, resized[1] = (int)rh;
    reso[0] = (int)(rw - rw % b->steps), reso[1] = (int)(rh - rh % b->steps);
    if (!reso[0] || !reso[1])
        return cs_error(CS_EARG, "image %dx%d: a side is below bucket_reso_steps (%d) after scaling", w, h, b->steps);
    return 0;
}

/* ---- scanning ---- */

typedef struct {
    cs_dataset *ds;
    size_t cap;
    cs_prompt_warn_fn warn;
    void *ctx;
} scan;

__attribute__((format(printf, 2, 3)))
static void warnf(scan *s, const char *fmt, ...)
{
    if (!s->warn) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->warn(s->ctx, msg);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_ext(const char *name, const char *const *exts)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (; *exts; exts++)
        if (!strcmp(dot, *exts)) return 1;
    return 0;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

/* the image files of dir, sorted (kohya: glob of each extension, sorted) */
static int list_images(const char *dir, char ***out, size_t *n_out)
{
    static const char *const ok[] = {".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", NULL};
    static const char *const no[] = {".webp", ".bmp", ".WEBP", ".BMP", NULL};
    *out = NULL, *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return cs_error(CS_EIO, "image_dir '%s': %s", dir, cs_strerror(errno));
    char **l = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (errno = 0, e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int good = has_ext(e->d_name, ok);
        if (!good && !has_ext(e->d_name, no)) continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) {
            rc = cs_oom("file name", len);
            break;
        }
        snprintf(p, len, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) || !S_ISREG(st.st_mode)) {   /* glob matches folders too; images are files */
            free(p);
            continue;
        }
        if (!good) {
            rc = cs_error(CS_EUNSUP, "%s: WebP and BMP images are not supported (PNG and JPEG are); convert it or "
                          "move it out of image_dir", p);
            free(p);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **m = realloc(l, cap * sizeof *m);
            if (!m) {
                free(p);
                rc = cs_oom("file list", cap * sizeof *m);
                break;
            }
            l = m;
        }
        l[n++] = p;
    }
    if (!rc && errno) rc = cs_error(CS_EIO, "image_dir '%s': %s", dir, cs_strerror(errno));
    closedir(d);
    if (rc) {
        free_list(l, n);
        return rc;
    }
    qsort(l, n, sizeof *l, cmp_str);
    *out = l, *n_out = n;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* kohya's read_caption: BASE + ext, else (face-crop names a_b_c_d_e) the
 * base without its last four '_' parts; the first line, stripped.
 * *cap = NULL when there is no caption file. */
static int read_caption(const char *img, const char *ext, char **cap)
{
    *cap = NULL;
    const char *dot = strrchr(img, '.');
    size_t base = (size_t)(dot - img), len = strlen(img) + strlen(ext) + 1;
    char *p = malloc(len);
    if (!p) return cs_oom("file name", len);
    for (int pass = 0; pass < 2; pass++) {
        size_t b = base;
        if (pass) {   /* "_".join(tokens[:-4]) of the whole path, with at least 5 tokens */
            size_t k = 0;
            while (b > 0 && !(img[--b] == '_' && ++k == 4)) {}
            if (k < 4) break;
        }
        snprintf(p, len, "%.*s%s", (int)b, img, ext);
        struct stat st;
        if (stat(p, &st) || !S_ISREG(st.st_mode)) continue;   /* os.path.isfile */
        char *text = NULL;
        size_t n = 0;
        int rc = cs_infile_read(p, "caption file", MAX_CAPTION_FILE, &text, &n);
        if (rc) {
            free(p);
            return rc;
        }
        if (strlen(text) != n) rc = cs_error(CS_EFORMAT, "%s: the caption holds a NUL byte", p);
        char *e = text;
        while (*e && *e != '\n') e++;
        if (!rc && e == text && !*e) rc = cs_error(CS_EFORMAT, "%s: the caption file is empty", p);
        *e = 0;
        char *s = text;
        while (is_space(*s)) s++;
        for (e = s + strlen(s); e > s && is_space(e[-1]);) *--e = 0;
        if (!rc && !(*cap = strdup(s))) rc = cs_oom("caption", strlen(s) + 1);
        free(text);
        free(p);
        return rc;
    }
    free(p);
    return 0;
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t n = (a ? strlen(a) + 1 : 0) + strlen(b) + (c ? strlen(c) + 1 : 0) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s%s%s", a ? a : "", a ? " " : "", b, c ? " " : "", c ? c : "");
    return s;
}

static int add_image(scan *s, char *path, const cs_ds_subset *u, int di, int si)
{
    cs_dataset *ds = s->ds;
    if (ds->n_images == s->cap) {
        size_t c = s->cap ? 2 * s->cap : 64;
        cs_ds_image *m = realloc(ds->images, c * sizeof *m);
        if (!m) return cs_oom("image list", c * sizeof *m);
        ds->images = m, s->cap = c;
    }
    cs_ds_image *im = &ds->images[ds->n_images];
    memset(im, 0, sizeof *im);
    im->path = path;
    ds->n_images++;   /* owns path from here */
    im->num_repeats = u->num_repeats, im->is_reg = u->is_reg, im->dataset = di, im->subset = si;
    char *cap = NULL;
    int rc = read_caption(path, u->caption_extension, &cap);
    if (rc) return rc;
    if (!cap) {
        if (!u->class_tokens) warnf(s, "%s: no caption file (%s) and no class_tokens: an empty caption", path,
                                    u->caption_extension);
        cap = strdup(u->class_tokens ? u->class_tokens : "");
        if (!cap) return cs_oom("caption", 1);
    }
    im->caption = join3(u->caption_prefix, cap, u->caption_suffix);
    free(cap);
    if (!im->caption) return cs_oom("caption", 1);
    cs_image img;
    if ((rc = cs_image_read(path, &img))) return rc;
    im->width = (int)img.w, im->height = (int)img.h, im->xxh64 = img.xxh64;
    cs_image_free(&img);
    return 0;
}

static int cmp_bucket(const void *a, const void *b)
{
    const cs_ds_bucket *x = a, *y = b;
    if (x->dataset != y->dataset) return x->dataset - y->dataset;
    return x->w != y->w ? x->w - y->w : x->h - y->h;
}

/* kohya's balancing: reg images are registered, then their repeats grown
 * one at a time in order, until they match the training images */
static void balance_reg(cs_dataset *ds, size_t first, size_t *order, size_t *n_order)
{
    int64_t n_train = 0, n = 0;
    for (size_t i = first; i < ds->n_images; i++)
        if (!ds->images[i].is_reg) n_train += ds->images[i].num_repeats, order[(*n_order)++] = i;
    for (int pass = 0; n < n_train; pass++) {
        int any = 0;
        for (size_t i = first; i < ds->n_images && n < n_train; i++) {
            cs_ds_image *im = &ds->images[i];
            if (!im->is_reg) continue;
            any = 1;
            if (!pass) order[(*n_order)++] = i, n += im->num_repeats;
            else im->num_repeats++, n++;
        }
        if (!any) break;
    }
}

static int dataset_buckets(scan *s, const cs_ds_dataset *d, int di, size_t first)
{
    cs_dataset *ds = s->ds;
    if (!d->width || !d->height) return cs_error(CS_EARG, "dataset %d: resolution is required", di + 1);
    cs_bucketer b;
    int rc;
    if (d->enable_bucket) {
        if (d->min_bucket_reso > (d->width < d->height ? d->width : d->height) ||
            d->max_bucket_reso < (d->width > d->height ? d->width : d->height))
            return cs_error(CS_EARG, "dataset %d: resolution %dx%d must lie within min_bucket_reso %d and "
                            "max_bucket_reso %d", di + 1, d->width, d->height, d->min_bucket_reso, d->max_bucket_reso);
        if (d->bucket_no_upscale)
            warnf(s, "dataset %d: min_bucket_reso and max_bucket_reso are ignored with bucket_no_upscale", di + 1);
        rc = cs_bucket_init(&b, d->width, d->height, d->min_bucket_reso, d->max_bucket_reso, d->bucket_reso_steps,
                            d->bucket_no_upscale);
    } else {
        rc = cs_bucket_init_fixed(&b, d->width, d->height);
    }
    if (rc) return rc;
    size_t n_new = ds->n_images - first, n_order = 0;
    size_t *order = malloc((n_new ? n_new : 1) * sizeof *order);
    if (!order) {
        cs_bucket_free(&b);
        return cs_oom("image order", n_new * sizeof *order);
    }
    balance_reg(ds, first, order, &n_order);
    size_t b0 = ds->n_buckets;
    for (size_t k = 0; !rc && k < n_order; k++) {
        cs_ds_image *im = &ds->images[order[k]];
        int reso[2], rs[2];
        if ((rc = cs_bucket_select(&b, im->width, im->height, reso, rs))) {
            char why[256];
            snprintf(why, sizeof why, "%s", cs_last_error());
            rc = cs_error(rc, "%s: %s", im->path, why);
            break;
        }
        im->bucket_w = reso[0], im->bucket_h = reso[1], im->resized_w = rs[0], im->resized_h = rs[1];
        size_t j = b0;
        while (j < ds->n_buckets && (ds->buckets[j].w != reso[0] || ds->buckets[j].h != reso[1])) j++;
        if (j == ds->n_buckets) {
            cs_ds_bucket *m = realloc(ds->buckets, (j + 1) * sizeof *m);
            if (!m) {
                rc = cs_oom("buckets", (j + 1) * sizeof *m);
                break;
            }
            ds->buckets = m;
            memset(&m[j], 0, sizeof *m);
            m[j].dataset = di, m[j].w = reso[0], m[j].h = reso[1];
            ds->n_buckets++;
        }
        cs_ds_bucket *bk = &ds->buckets[j];
        size_t *idx = realloc(bk->idx, (bk->n + (size_t)im->num_repeats) * sizeof *idx);
        if (!idx) {
            rc = cs_oom("bucket", (bk->n + (size_t)im->num_repeats) * sizeof *idx);
            break;
        }
        bk->idx = idx;
        for (int r = 0; r < im->num_repeats; r++) idx[bk->n++] = order[k];
    }
    free(order);
    cs_bucket_free(&b);
    if (rc) return rc;
    qsort(ds->buckets + b0, ds->n_buckets - b0, sizeof *ds->buckets, cmp_bucket);
    for (size_t j = b0; j < ds->n_buckets; j++) {
        size_t nb = (ds->buckets[j].n + (size_t)d->batch_size - 1) / (size_t)d->batch_size;
        cs_ds_batch *m = realloc(ds->batches, (ds->n_batches + nb) * sizeof *m);
        if (!m) return cs_oom("batches", (ds->n_batches + nb) * sizeof *m);
        ds->batches = m;
        for (size_t k = 0; k < nb; k++) {
            size_t f = k * (size_t)d->batch_size, left = ds->buckets[j].n - f;
            m[ds->n_batches++] = (cs_ds_batch){j, f, left < (size_t)d->batch_size ? left : (size_t)d->batch_size};
        }
    }
    return 0;
}

int cs_ds_scan(const cs_ds_config *cfg, cs_prompt_warn_fn warn, void *ctx, cs_dataset **out)
{
    *out = NULL;
    cs_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return cs_oom("dataset", sizeof *ds);
    scan s = {ds, 0, warn, ctx};
    int rc = 0;
    for (int di = 0; !rc && di < cfg->n; di++) {
        const cs_ds_dataset *d = &cfg->datasets[di];
        size_t first = ds->n_images;
        for (int si = 0; !rc && si < d->n_subsets; si++) {
            const cs_ds_subset *u = &d->subsets[si];
            int dup = 0;
            for (int k = 0; k < si; k++) dup |= !strcmp(d->subsets[k].image_dir, u->image_dir);
            if (dup || u->num_repeats < 1) {
                warnf(&s, "dataset %d: subset '%s' ignored: %s", di + 1, u->image_dir,
                      dup ? "the same image_dir as an earlier subset" : "num_repeats is less than 1");
                continue;
            }
            char **files = NULL;
            size_t n = 0;
            if ((rc = list_images(u->image_dir, &files, &n))) break;
            if (!n) warnf(&s, "image_dir '%s': no images found (PNG or JPEG)", u->image_dir);
            size_t i = 0;
            for (; !rc && i < n; i++) rc = add_image(&s, files[i], u, di, si);
            for (; i < n; i++) free(files[i]);
            free(files);
        }
        if (!rc && ds->n_images > first) rc = dataset_buckets(&s, d, di, first);
    }
    if (!rc && !ds->n_batches) rc = cs_error(CS_EARG, "the dataset has no images");
    if (rc) {
        cs_ds_free(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

void cs_ds_free(cs_dataset *ds)
{
    if (!ds) return;
    for (size_t i = 0; i < ds->n_images; i++) free(ds->images[i].path), free(ds->images[i].caption);
    for (size_t i = 0; i < ds->n_buckets; i++) free(ds->buckets[i].idx);
    free(ds->images);
    free(ds->buckets);
    free(ds->batches);
    free(ds);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fisher-Yates; the modulo bias of 64-bit draws is negligible here */
static void shuffle_batches(cs_ds_batch *a, size_t n, uint64_t *st)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(st) % i);
        cs_ds_batch t = a[i - 1];
        a[i - 1] = a[j], a[j] = t;
    }
}

static void shuffle_idx(size_t *a, size_t n, uint64_t *st)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(st) % i), t = a[i - 1];
        a[i - 1] = a[j], a[j] = t;
    }
}

void cs_ds_shuffle(cs_dataset *ds, uint64_t seed, uint64_t epoch)
{
    uint64_t st = seed + epoch;
    shuffle_batches(ds->batches, ds->n_batches, &st);
    for (size_t b = 0; b < ds->n_buckets; b++) shuffle_idx(ds->buckets[b].idx, ds->buckets[b].n, &st);
}
