/* Training: trained weights in the file's own key layout (so that
 * `cascade generate --stage-c` and ComfyUI load them), and the resumable
 * state: a folder made under a temporary name and renamed into place, so a
 * state-<step> folder is always complete. */
#include "train_job.h"

#include "cancel.h"
#include "error.h"
#include "grad_blocks.h"
#include "safetensors.h"
#include "stage_c.h"
#include "tensor.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_float(cs_dtype d) { return d == CS_F32 || d == CS_BF16 || d == CS_F16; }

int cs_tj_save_weights(const cs_stage_c *m, const char *path, cs_tj_save_prec prec, const char *const *extra, int n_extra)
{
    cs_st_file *f = cs_stage_c_file(m);
    int n = cs_st_count(f), nm = cs_st_meta_count(f), rc = 0;
    cs_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    void **bufs = calloc((size_t)n + 1, sizeof *bufs);
    const char **meta = calloc(2 * ((size_t)nm + (size_t)n_extra) + 1, sizeof *meta);
    if (!ts || !bufs || !meta) rc = cs_oom("a checkpoint", (size_t)n * sizeof *ts);
    cs_dtype to = prec == CS_TJ_SAVE_BF16 ? CS_BF16 : prec == CS_TJ_SAVE_FP16 ? CS_F16 : CS_F32;
    for (int i = 0; !rc && i < n; i++) {
        const cs_tensor *w = cs_stage_c_weight(m, i);
        ts[i] = *w;
        ts[i].name = cs_st_at(f, i)->name;
        if (!is_float(w->dtype) || w->dtype == to) continue;
        size_t k = (size_t)cs_tensor_numel(w);
        float *x = w->dtype == CS_F32 ? NULL : cs_tensor_f32_dup(w);
        const float *src = x ? x : w->data;
        if (w->dtype != CS_F32 && !x) {
            rc = CS_ENOMEM;
            break;
        }
        void *out = malloc(k * cs_dtype_size(to) + 1);
        if (!out) {
            cs_free(x);
            rc = cs_oom("a checkpoint tensor", k * cs_dtype_size(to));
            break;
        }
        for (size_t j = 0; j < k; j++) {
            if (to == CS_F32) ((float *)out)[j] = src[j];
            else if (to == CS_BF16) ((uint16_t *)out)[j] = cs_f32_to_bf16(src[j]);
            else ((uint16_t *)out)[j] = cs_f32_to_f16(src[j]);
        }
        cs_free(x);
        bufs[i] = out;
        ts[i].data = out;
        ts[i].dtype = to;
    }
    int k = 0;
    for (int i = 0; !rc && i < nm; i++) {
        const char *key, *val;
        cs_st_meta_at(f, i, &key, &val);
        int dup = !strncmp(key, "cascade.train", 13);   /* ours, from a state: the new ones say where */
        for (int j = 0; j < n_extra; j++) dup |= !strcmp(key, extra[2 * j]);
        if (dup) continue;
        if (!strcmp(key, "dtype")) val = cs_dtype_name(to);   /* the golden files say what they hold */
        meta[2 * k] = key, meta[2 * k + 1] = val, k++;
    }
    for (int j = 0; !rc && j < n_extra; j++) meta[2 * k] = extra[2 * j], meta[2 * k + 1] = extra[2 * j + 1], k++;
    if (!rc) rc = cs_st_write(path, ts, n, meta, k);
    for (int i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs), free(ts), free(meta);
    return rc;
}

/* ---- the resumable state ---- */

typedef void (*opt_at_fn)(const void *obj, int i, cs_trainer_opt_view *v);
static void trainer_at(const void *t, int i, cs_trainer_opt_view *v) { cs_trainer_opt_at(t, i, v); }
static void lora_at(const void *n, int i, cs_trainer_opt_view *v) { cs_lora_net_opt_at(n, i, v); }

static int write_optimizer(const char *path, int n, opt_at_fn at, const void *obj, const float *buckets)
{
    int k = 0, rc = 0;
    cs_tensor *ts = calloc(3 * (size_t)n + 1, sizeof *ts);
    char **names = calloc(3 * (size_t)n + 1, sizeof *names);
    int64_t *steps = calloc((size_t)n + 1, sizeof *steps);
    if (!ts || !names || !steps) rc = cs_oom("the optimizer state", 3 * (size_t)n * sizeof *ts);
    if (!rc) ts[k++] = (cs_tensor){CS_F32, 1, {CS_TRAIN_BUCKETS}, buckets, "adaptive_loss.bucket_losses"};
    for (int i = 0; !rc && i < n; i++) {
        cs_trainer_opt_view v;
        at(obj, i, &v);
        steps[i] = v.step;
        for (int j = 0; !rc && j <= v.n; j++) {
            size_t l = strlen(v.tensor) + 16;
            if (!(names[k] = malloc(l))) {
                rc = cs_oom("a name", l);
                break;
            }
            snprintf(names[k], l, "%s.%s", v.tensor, j < v.n ? v.part[j] : "step");
            if (j < v.n) ts[k] = (cs_tensor){CS_F32, 1, {(int64_t)v.len[j]}, v.data[j], names[k]};
            else ts[k] = (cs_tensor){CS_I64, 1, {1}, &steps[i], names[k]};
            k++;
        }
    }
    if (!rc) rc = cs_st_write(path, ts, k, NULL, 0);
    for (int i = 0; names && i < k; i++) free(names[i]);
    free(names), free(ts), free(steps);
    return rc;
}

static int write_json(const char *path, const cs_tj_pos *p, const char *fingerprint)
{
    json_t *o = json_pack("{s:I, s:I, s:i, s:I, s:I, s:s}", "step", (json_int_t)p->step, "micro",
                          (json_int_t)p->micro, "epoch", p->epoch, "batch", (json_int_t)p->batch, "seed",
                          (json_int_t)p->seed, "run", fingerprint);
    if (!o) return cs_error(CS_ENOMEM, "%s: out of memory", path);
    int h = cs_cleanup_add(path, 0);
    int rc = json_dump_file(o, path, JSON_INDENT(1)) ? cs_error(CS_EIO, "%s: cannot write", path) : 0;
    json_decref(o);
    if (rc) unlink(path);
    cs_cleanup_del(h);
    return rc;
}

static const char *const state_files[] = {"model.safetensors", "optimizer.safetensors", "train.json"};

static void remove_state(const char *dir)
{
    char p[4200];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, state_files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* m and t, or net (a LoRA run) */
static int state_save(const char *dir, const cs_stage_c *m, cs_trainer *t, const cs_lora_net *net,
                      const float *buckets, const cs_tj_pos *pos, const char *fingerprint, char *out, size_t out_len)
{
    char tmp[4096], p[4200];
    snprintf(out, out_len, "%s/state-%06" PRId64, dir, pos->step);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/.state-%06" PRId64 ".tmpXXXXXX", dir, pos->step) >= sizeof tmp)
        return cs_error(CS_EARG, "%s: path too long", dir);
    if (!mkdtemp(tmp)) return cs_error(CS_EIO, "%s: %s", tmp, cs_strerror(errno));
    chmod(tmp, cs_st_umask_mode(0777));
    int hd = cs_cleanup_add(tmp, 1), hf[3] = {0, 0, 0}, rc = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", tmp, state_files[i]);
        hf[i] = cs_cleanup_add(p, 0);
    }
    const char *extra[] = {"cascade.train", "state"};
    snprintf(p, sizeof p, "%s/%s", tmp, state_files[0]);
    rc = net ? cs_lora_net_save(net, p, CS_F32, extra, 1) : cs_tj_save_weights(m, p, CS_TJ_SAVE_FP32, extra, 1);
    snprintf(p, sizeof p, "%s/%s", tmp, state_files[1]);
    if (!rc)
        rc = net ? write_optimizer(p, cs_lora_net_opt_count(net), lora_at, net, buckets)
                 : write_optimizer(p, cs_trainer_opt_count(t), trainer_at, t, buckets);
    snprintf(p, sizeof p, "%s/%s", tmp, state_files[2]);
    if (!rc) rc = write_json(p, pos, fingerprint);
    struct stat st;
    if (!rc && stat(out, &st) == 0) remove_state(out);   /* an older save of the same step */
    if (!rc && rename(tmp, out) != 0) rc = cs_error(CS_EIO, "%s: %s", out, cs_strerror(errno));
    if (rc) remove_state(tmp);
    for (int i = 0; i < 3; i++) cs_cleanup_del(hf[i]);
    cs_cleanup_del(hd);
    return rc;
}

int cs_tj_state_save(const char *dir, const cs_stage_c *m, cs_trainer *t, const float *buckets, const cs_tj_pos *pos,
                  const char *fingerprint, char *out, size_t out_len)
{
    return state_save(dir, m, t, NULL, buckets, pos, fingerprint, out, out_len);
}

int cs_tj_state_save_lora(const char *dir, const cs_lora_net *net, const float *buckets, const cs_tj_pos *pos,
                       const char *fingerprint, char *out, size_t out_len)
{
    return state_save(dir, NULL, NULL, net, buckets, pos, fingerprint, out, out_len);
}

int cs_tj_state_read(const char *dir, cs_tj_pos *pos, const char *fingerprint)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/train.json", dir);
    json_error_t je;
    json_t *o = json_load_file(p, 0, &je);
    if (!o) return cs_error(CS_EIO, "%s: not a cascade train state (%s)", p, je.text);
    json_int_t step = -1, micro = -1, batch = -1, seed = -1;
    int epoch = -1;
    const char *run = NULL;
    int bad = json_unpack(o, "{s:I, s:I, s:i, s:I, s:I, s:s}", "step", &step, "micro", &micro, "epoch", &epoch,
                          "batch", &batch, "seed", &seed, "run", &run);
    int rc = 0;
    if (bad || step < 0 || micro < 0 || epoch < 0 || batch < 0 || seed < 0)
        rc = cs_error(CS_EFORMAT, "%s: not a cascade train state (fields missing or out of range)", p);
    else if (strcmp(run, fingerprint))
        rc = cs_error(CS_EARG, "%s: the state was saved by another run (%s); now: %s", dir, run, fingerprint);
    else
        *pos = (cs_tj_pos){step, micro, epoch, batch, (uint64_t)seed};
    json_decref(o);
    return rc;
}

struct cs_tj_resume {
    cs_st_file *f;
};

static int fill(void *ctx, cs_trainer_opt_view *v)
{
    cs_tj_resume *r = ctx;
    char name[512];
    for (int j = 0; j <= v->n; j++) {
        snprintf(name, sizeof name, "%s.%s", v->tensor, j < v->n ? v->part[j] : "step");
        const cs_tensor *t = cs_st_find(r->f, name);
        size_t want = j < v->n ? v->len[j] : 1;
        cs_dtype dt = j < v->n ? CS_F32 : CS_I64;
        if (!t || t->dtype != dt || (size_t)cs_tensor_numel(t) != want)
            return cs_error(CS_EFORMAT, "%s: no optimizer state %s of %zu values", cs_st_path(r->f), name, want);
        if (j < v->n) memcpy(v->data[j], t->data, want * sizeof(float));
        else memcpy(&v->step, t->data, sizeof v->step);
    }
    return 0;
}

/* optimizer.safetensors of dir, its buckets copied into t */
static int open_optimizer(const char *dir, cs_trainer *t, cs_tj_resume **out)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    cs_tj_resume *r = calloc(1, sizeof *r);
    if (!r) return cs_oom("resume", sizeof *r);
    int rc = cs_st_open(p, &r->f);
    const cs_tensor *b = rc ? NULL : cs_st_find(r->f, "adaptive_loss.bucket_losses");
    if (!rc && (!b || b->dtype != CS_F32 || cs_tensor_numel(b) != CS_TRAIN_BUCKETS))
        rc = cs_error(CS_EFORMAT, "%s: no adaptive_loss.bucket_losses [%d] F32", p, CS_TRAIN_BUCKETS);
    if (rc) {
        cs_tj_state_close(r);
        return rc;
    }
    memcpy(cs_trainer_buckets(t), b->data, CS_TRAIN_BUCKETS * sizeof(float));
    *out = r;
    return 0;
}

int cs_tj_state_restore(const char *dir, cs_trainer *t, cs_tj_resume **out)
{
    int rc = open_optimizer(dir, t, out);
    if (!rc) cs_trainer_opt_restore(t, fill, *out);
    return rc;
}

int cs_tj_state_restore_lora(const char *dir, cs_trainer *t, cs_lora_net *net, cs_opt_kind opt)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    cs_tj_resume *r = NULL;
    int rc = cs_lora_net_load(net, p);
    if (!rc) rc = open_optimizer(dir, t, &r);
    if (!rc) rc = cs_lora_net_opt_restore(net, opt, fill, r);
    cs_tj_state_close(r);
    return rc;
}

void cs_tj_state_close(cs_tj_resume *r)
{
    if (!r) return;
    cs_st_close(r->f);
    free(r);
}
