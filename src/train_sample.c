/* Training: sample images during training, as kohya's stable-cascade
 * script makes them: Stage C sampling with the weights being trained, then
 * the previewer decodes the latent (no Stage B/A in memory). The prompts
 * were encoded before training, so the text encoder is not kept either. */
#include "train_job.h"

#include "error.h"
#include "models.h"
#include "pipeline.h"
#include "pngout.h"
#include "previewer.h"
#include "rng.h"
#include "stage_c.h"
#include "tensor.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cs_tj_prompts_free(cs_tj_prompt *p, int n)
{
    for (int i = 0; p && i < n; i++) {
        free(p[i].text), free(p[i].negative);
        cs_free(p[i].clip_text), cs_free(p[i].pooled);
    }
    free(p);
}

static int opt_num(const char *path, int line, const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi))
        return cs_error(CS_EFORMAT, "%s:%d: --%s '%s' is not a number in %g..%g", path, line, flag, v, lo, hi);
    *out = x;
    return 0;
}

/* kohya's line format: the prompt, then " --X value" options */
static int parse_line(const char *path, int ln, char *s, cs_tj_prompt *p)
{
    p->width = p->height = 1024;
    p->steps = 20;
    p->cfg = 4.0f;
    char *o = strstr(s, " --");
    if (o) *o = 0;
    if (!(p->text = strdup(s)) || !(p->negative = strdup(""))) return cs_oom("a prompt", strlen(s));
    while (o) {
        char *f = o + 3, *next = strstr(f, " --");
        if (next) *next = 0;
        char *v = f;
        while (*v && !isspace((unsigned char)*v)) v++;
        if (*v) *v++ = 0;
        while (isspace((unsigned char)*v)) v++;
        size_t vl = strlen(v);
        while (vl && isspace((unsigned char)v[vl - 1])) v[--vl] = 0;
        double x;
        int rc = 0;
        if (!strcmp(f, "n")) {
            free(p->negative);
            if (!(p->negative = strdup(v))) return cs_oom("a prompt", vl);
        } else if (!strcmp(f, "w") || !strcmp(f, "h")) {
            if (!(rc = opt_num(path, ln, f, v, 64, 8192, &x))) *(f[0] == 'w' ? &p->width : &p->height) = (int)x;
        } else if (!strcmp(f, "d")) {
            if (!(rc = opt_num(path, ln, f, v, 0, 4294967295.0, &x))) p->seed = (uint64_t)x, p->seed_given = 1;
        } else if (!strcmp(f, "l")) {
            if (!(rc = opt_num(path, ln, f, v, 0, 100, &x))) p->cfg = (float)x;
        } else if (!strcmp(f, "s")) {
            if (!(rc = opt_num(path, ln, f, v, 1, 1000, &x))) p->steps = (int)x;
        } else {
            rc = cs_error(CS_EFORMAT, "%s:%d: --%s is not supported (--n --w --h --d --l --s)", path, ln, f);
        }
        if (rc) return rc;
        o = next;
    }
    return 0;
}

int cs_tj_prompts_read(const char *path, cs_tj_prompt **out, int *n)
{
    *out = NULL, *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return cs_error(CS_EIO, "%s: %s", path, cs_strerror(errno));
    char buf[4096];
    int ln = 0, rc = 0, cap = 0;
    cs_tj_prompt *p = NULL;
    while (!rc && fgets(buf, sizeof buf, f)) {
        ln++;
        size_t l = strlen(buf);
        while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r' || buf[l - 1] == ' ')) buf[--l] = 0;
        char *s = buf;
        while (isspace((unsigned char)*s)) s++;
        if (!*s || *s == '#') continue;
        if (*n == cap) {
            cs_tj_prompt *q = realloc(p, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *q);
            if (!q) {
                rc = cs_oom("prompts", (size_t)cap * sizeof *q);
                break;
            }
            p = q;
        }
        memset(&p[*n], 0, sizeof *p);
        rc = parse_line(path, ln, s, &p[(*n)++]);
    }
    fclose(f);
    if (!rc && !*n) rc = cs_error(CS_EFORMAT, "%s: no prompts", path);
    if (rc) {
        cs_tj_prompts_free(p, *n);
        *n = 0;
        return rc;
    }
    *out = p;
    return 0;
}

int cs_tj_samples(cs_stage_c *m, const cs_previewer *pv, const cs_tj_prompt *p, int n, const char *out_dir,
               const char *name, int epoch, const cs_tj_opts *o)
{
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/sample", out_dir);
    if (mkdir(dir, 0777) && errno != EEXIST) return cs_error(CS_EIO, "%s: %s", dir, cs_strerror(errno));
    cs_net_info in;
    cs_stage_c_info(m, &in);
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        size_t h = (size_t)cs_latent_c(p[i].height), w = (size_t)cs_latent_c(p[i].width), per = h * w * 16;
        cs_sample_params sp;
        cs_sample_defaults_c(&sp);
        sp.steps = p[i].steps;
        sp.cfg = p[i].cfg;
        cs_rng r;
        cs_rng_seed(&r, p[i].seed);
        cs_rng_nhwc z = {&r, 16, h, w};
        cs_stage_io io = {cs_rng_noise_nhwc, &z, NULL, NULL, NULL, cs_rng_noise_nhwc, &z, NULL, 0};
        float *x = cs_alloc(per * sizeof *x), *x0 = cs_alloc(per * sizeof *x0);
        float *img = cs_alloc(per / 16 * 64 * 3 * sizeof *img);
        uint8_t *rgb = malloc(per / 16 * 64 * 3);
        if (!x || !x0 || !img || !rgb) rc = cs_oom("a sample", per * 64 * 3);
        if (!rc) rc = cs_pipe_sample_c(m, &sp, 1, h, w, p[i].clip_text, 77, p[i].pooled, &io, x, x0);
        if (!rc) rc = cs_previewer_forward(pv, x0, 1, h, w, img);
        if (!rc) rc = cs_image_to_u8_nhwc(img, 1, 8 * h, 8 * w, CS_U8_TRUNCATE, rgb);
        snprintf(path, sizeof path, "%s/%s_e%06d_%02d.png", dir, name, epoch, i);
        cs_png_text t[1] = {{"parameters", p[i].text}};
        if (!rc) rc = cs_png_write_rgb8(path, rgb, (int)(8 * w), (int)(8 * h), 8 * w * 3, t, 1, CS_PNG_FORCE);
        if (!rc) cs_tj_emit(o, CASCADE_TE_SAMPLE, path);
        cs_free(x), cs_free(x0), cs_free(img), free(rgb);
    }
    return rc;
}
