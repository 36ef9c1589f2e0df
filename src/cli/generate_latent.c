/* SaveLatent for `cascade run`: the encoded image, Stage C and Stage B
 * latents of a run kept from the latent callback (ComfyUI's [n, c, h, w]
 * form) and written as ComfyUI .latent files together with the run's
 * images, so a failed or interrupted run leaves none of them (nor a folder
 * it made). A client of cascade.h. */
#include "cli.h"
#include "generate.h"

#include "cascade.h"

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
        return cli_error(CASCADE_E_ARG, "SaveLatent prefix '%s': the path is too long", pre);
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
                rc = cli_error(CASCADE_E_IO, "SaveLatent prefix '%s': %s is not a folder", o->save_latent_prefix[k],
                               dir);
            *c = keep;
            if (!keep)
                break;
        }
        snprintf(name, sizeof name, "%s/%s_000000001_.latent", dir, base);
        if (rc)
            return rc;
        if ((rc = cascade_check_output_name(cli_ctx(), name)) != 0)
            return cli_error(rc, "%s", cascade_errmsg(cli_ctx()));
    }
    return 0;
}

static const char *what[3] = {"encoded image", "Stage C", "Stage B"};

int gen_latents_keep(gen_latents *l, const opts *o, int which, const float *x, int n, int c, int h, int w)
{
    int want = 0;
    for (int k = 0; k < o->n_save_latent; k++)
        want |= o->save_latent_stage[k] == which;
    if (!want || which < 0 || which > 2)
        return 0;
    size_t total = (size_t)n * c * h * w;
    float *d = realloc(l->x[which], total * sizeof *d);
    if (!d)
        return cli_error(CASCADE_E_NOMEM, "out of memory keeping the %s latent", what[which]);
    memcpy(d, x, total * sizeof *d);
    l->x[which] = d;
    l->dim[which][0] = n, l->dim[which][1] = c, l->dim[which][2] = h, l->dim[which][3] = w;
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
                l->made_hnd[l->n_made++] = cli_cleanup_add(dir, 1);
            } else {
                rmdir(dir);
                rc = cli_error(CASCADE_E_ARG, "%s: too many folders to make", dir);
            }
        } else if (errno != EEXIST) {
            rc = cli_error(CASCADE_E_IO, "cannot make folder %s: %s", dir, strerror(errno));
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
        char dir[GEN_PATH], where[GEN_PATH + 300], path[GEN_PATH];
        const char *base;
        if (!l->x[s])
            return cli_error(CASCADE_E_ARG, "SaveLatent '%s': the run gave no %s latent", o->save_latent_prefix[k],
                             what[s]);
        if (cli_stop_pending())
            return CASCADE_E_INTR;
        if ((rc = split(o, out, k, dir, sizeof dir, &base)) || (rc = make_dirs(l, out->dir, dir)))
            return rc;
        snprintf(where, sizeof where, "%s/%s", dir, base);
        const int *d = l->dim[s];
        if ((rc = cascade_latent_write(cli_ctx(), l->x[s], d[0], d[1], d[2], d[3], meta, o->latent_prompt ? 1 : 0,
                                       where, path, sizeof path)) != 0)
            return cli_error(rc, "%s", cascade_errmsg(cli_ctx()));
        hnd[k] = cli_cleanup_add(path, 0);
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
        cli_cleanup_del(l->made_hnd[i]);
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
