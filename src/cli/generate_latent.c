/* SaveLatent for `cascade run`: the Stage C / Stage B results of a run kept
 * from the pipeline's latent hook (channels last -> ComfyUI's NCHW) and
 * written as ComfyUI .latent files together with the run's images, so a
 * failed or interrupted run leaves none of them (nor a folder it made). */
#include "generate.h"

#include "cancel.h"
#include "error.h"
#include "latent.h"
#include "pngout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "<out>/<sub>" and the file name part of prefix k */
static int split(const opts *o, const gen_output *out, int k, char *dir, size_t len, const char **base)
{
    const char *pre = o->save_latent_prefix[k], *slash = strrchr(pre, '/');
    *base = slash ? slash + 1 : pre;
    int n = slash ? snprintf(dir, len, "%s/%.*s", out->dir, (int)(slash - pre), pre) : snprintf(dir, len, "%s", out->dir);
    if (n < 0 || (size_t)n >= len)
        return cs_error(CS_EARG, "SaveLatent prefix '%s': the path is too long", pre);
    return 0;
}

int gen_latents_plan(const opts *o, const gen_output *out)
{
    for (int k = 0; k < o->n_save_latent; k++) {
        char dir[GEN_PATH], name[GEN_PATH + 300];
        const char *base;
        struct stat st;
        int rc = split(o, out, k, dir, sizeof dir, &base);
        if (rc)
            return rc;
        /* a folder that is missing is made at the first write, as ComfyUI does */
        for (char *c = dir + strlen(out->dir); !rc; c++) {
            if (*c && *c != '/')
                continue;
            char keep = *c;
            *c = 0;
            if (lstat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
                rc = cs_error(CS_EIO, "SaveLatent prefix '%s': %s is not a folder", o->save_latent_prefix[k], dir);
            *c = keep;
            if (!keep)
                break;
        }
        snprintf(name, sizeof name, "%s/%s_000000001_.latent", dir, base);
        if (rc || (rc = cs_png_check_name(name)))
            return rc;
    }
    return 0;
}

static const char *what[3] = {"encoded image", "Stage C", "Stage B"};

int gen_latents_keep(gen_latents *l, const opts *o, cs_latent_id which, const float *x, int n, int h, int w, int c)
{
    int s = (int)which, want = 0;
    for (int k = 0; k < o->n_save_latent; k++)
        want |= o->save_latent_stage[k] == s;
    if (!want)
        return 0;
    size_t hw = (size_t)h * w, total = (size_t)n * hw * c;
    float *d = realloc(l->x[s], total * sizeof *d);
    if (!d)
        return cs_error(CS_ENOMEM, "out of memory keeping the %s latent", what[s]);
    /* ComfyUI's KSampler LATENT is the model's latent through its latent
     * format's process_out: Stage C's (SC_Prior) scale is 1, Stage B's
     * (SC_B) is 1 / 0.43, divided out in float32 as torch does; the
     * encoder's output is taken as it is */
    int b = which == CS_LATENT_B;
    const float scale = (float)(1.0 / 0.43);
    for (size_t i = 0; i < (size_t)n; i++)
        for (size_t p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++)
                d[(i * c + ch) * hw + p] = b ? x[(i * hw + p) * c + ch] / scale : x[(i * hw + p) * c + ch];
    l->x[s] = d;
    l->dim[s][0] = n, l->dim[s][1] = c, l->dim[s][2] = h, l->dim[s][3] = w;
    return 0;
}

/* makes the missing folders of dir below out_dir, each put on the cleanup
 * list until the batch is final */
static int make_dirs(gen_latents *l, const char *out_dir, char *dir)
{
    int rc = 0;
    for (char *c = dir + strlen(out_dir); !rc && *c; ) {
        c++;
        while (*c && *c != '/')
            c++;
        char keep = *c;
        *c = 0;
        if (mkdir(dir, 0777) == 0) {
            if (l->n_made < GEN_MAX_SAVE_LATENT * 4) {
                snprintf(l->made[l->n_made], GEN_PATH, "%s", dir);
                l->made_hnd[l->n_made++] = cs_cleanup_add(dir, 1);
            } else {
                rmdir(dir);
                rc = cs_error(CS_EARG, "%s: too many folders to make", dir);
            }
        } else if (errno != EEXIST) {
            rc = cs_error(CS_EIO, "cannot make folder %s: %s", dir, strerror(errno));
        }
        *c = keep;
    }
    return rc;
}

int gen_latents_write(gen_latents *l, const opts *o, gen_output *out, int *hnd)
{
    const char *meta[2] = {"prompt", o->latent_prompt};
    for (int k = 0; k < o->n_save_latent; k++) {
        int s = o->save_latent_stage[k], rc;
        char dir[GEN_PATH], path[GEN_PATH];
        const char *base;
        if (!l->x[s])
            return cs_error(CS_EARG, "SaveLatent '%s': the run gave no %s latent", o->save_latent_prefix[k], what[s]);
        if ((rc = cs_cancel_check()) || (rc = split(o, out, k, dir, sizeof dir, &base)) ||
            (rc = make_dirs(l, out->dir, dir)))
            return rc;
        const int *d = l->dim[s];
        if ((rc = cs_latent_write_next(dir, base, l->x[s], d[0], d[1], d[2], d[3], meta, o->latent_prompt ? 1 : 0,
                                       path, sizeof path)))
            return rc;
        hnd[k] = cs_cleanup_add(path, 0);
        if ((rc = gen_output_record(out, path))) {
            unlink(path);
            return rc;
        }
    }
    return 0;
}

void gen_latents_done(gen_latents *l, int failed)
{
    for (int i = l->n_made - 1; i >= 0; i--) {
        if (failed)
            rmdir(l->made[i]);
        cs_cleanup_del(l->made_hnd[i]);
    }
    l->n_made = 0;
}

void gen_latents_free(gen_latents *l)
{
    gen_latents_done(l, 0);
    for (int i = 0; i < 3; i++)
        free(l->x[i]);
    memset(l, 0, sizeof *l);
}
