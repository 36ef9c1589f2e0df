/* A LoRA step with the gradients on a device (lora_train.h, doc/training.md
 * §4). Shipping every G = dL/dW' to the host and every merged W' back cost
 * more than the step itself (GBs over PCIe for Stage C lite), so only the
 * small parts move:
 *   - dA and dB are summed on the device during the backward (lora_grad.c,
 *     from the device's copies of A and B); one download brings all of them;
 *   - clipping and the optimizer run on the host as on the CPU
 *     (cs_lora_net_step: same code, same bits); one upload sends A and B.
 * No W' is merged: the forward and backward add the term at run time
 * (lora_grad.c) from the device's copy of the file's W0, in the file's
 * dtype (weight_to_f32 into one float32 scratch; a float32 copy of W0 on an
 * older plugin). The products are the CPU's in the same order and
 * arguments, so the fake plugin (the CPU's code) gives the CPU's bits. */
#include "lora_net.h"

#include "device.h"
#include "error.h"
#include "grad_blocks.h"
#include "ops.h"
#include "tensor.h"

#include <stdlib.h>
#include <string.h>

/* per module: A [rank, K], B [rows, rank] in par at off; dA, dB in grad at goff */
static size_t na_of(const lmod *m) { return (size_t)(m->rank * m->K); }
static size_t nb_of(const lmod *m) { return (size_t)(m->rows * m->rank); }

void cs_lora_net_dev_free(cs_lora_net *n)
{
    lora_dev *v = &n->dev;
    float *p[3] = {v->par, v->grad, v->w0};
    for (int j = 0; j < 3 && v->d; j++)
        if (p[j]) v->d->free(p[j]);
    /* the copies of the file's W0 that the steps made (lora_grad.c): the
     * file outlives the network (a second training would find them held);
     * through cs_param_forget, as a recorded forward at the file's dtype may
     * share the copy and must not replay on a freed address */
    for (int i = 0; i < n->n && v->d; i++)
        cs_param_forget(n->v[i].w0->data, (size_t)cs_tensor_numel(n->v[i].w0) * cs_dtype_size(n->v[i].w0->dtype));
    cs_free(v->stage);
    memset(v, 0, sizeof *v);
    v->dirty = 1;
}

/* the device arrays and the host staging, made on the first step */
static int pools(cs_lora_net *n, const cs_dev_ops *d)
{
    lora_dev *v = &n->dev;
    if (v->d == d && v->par) return 0;
    cs_lora_net_dev_free(n);
    size_t np = 0, ng = 0;
    for (int i = 0; i < n->n; i++) {
        lmod *m = &n->v[i];
        m->off = np, m->goff = ng;
        np += na_of(m) + nb_of(m);
        ng += na_of(m) + nb_of(m);
    }
    v->d = d, v->npar = np, v->ngrad = ng;
    v->par = d->alloc(np * sizeof(float));
    v->grad = d->alloc(ng * sizeof(float));
    v->stage = cs_alloc(np * sizeof(float));
    if (!v->par || !v->grad) {
        cs_lora_net_dev_free(n);
        return cs_error(CS_ENOMEM, "LoRA training: out of device memory for A, B and their gradients (%.1f MiB): %s",
                        (double)(np + ng) * 4 / 1048576, d->errmsg());
    }
    if (!v->stage) {
        cs_lora_net_dev_free(n);
        return cs_oom("the LoRA's staging copy", np * sizeof(float));
    }
    return 0;
}

/* the host's A and B of every module to the device, in one copy */
static int upload_ab(cs_lora_net *n)
{
    lora_dev *v = &n->dev;
    for (int i = 0; i < n->n; i++) {
        const lmod *m = &n->v[i];
        size_t na = na_of(m), nb = nb_of(m);
        float *s = v->stage + m->off;
        memcpy(s, m->A, na * sizeof(float));
        memcpy(s + na, m->B, nb * sizeof(float));
    }
    if (v->d->upload(v->par, v->stage, v->npar * sizeof(float)))
        return cs_error(CS_EDEVICE, "LoRA training: copying A and B to the device failed: %s", v->d->errmsg());
    v->dirty = 0;
    return 0;
}

int cs_lora_net_dev_ready(cs_lora_net *n, const cs_dev_ops *d)
{
    int rc = pools(n, d);
    return !rc && n->dev.dirty ? upload_ab(n) : rc;
}

int cs_lora_net_apply_dev(cs_lora_net *n, const cs_grads *g, const cs_train_cfg *cfg, double *grad_norm)
{
    const cs_dev_ops *d = g->dev;
    if (!d) return cs_lora_net_apply(n, g, cfg, grad_norm);
    lora_dev *v = &n->dev;
    int rc = cs_lora_net_dev_ready(n, d);
    if (!rc && n->gfresh) cs_lora_net_zero_grads(n);   /* no backward reached a module */
    else if (!rc && d->download(v->stage, v->grad, v->ngrad * sizeof(float)))
        rc = cs_error(CS_EDEVICE, "LoRA training: copying dA and dB from the device failed: %s", d->errmsg());
    for (int i = 0; i < n->n && !rc && !n->gfresh; i++) {
        lmod *m = &n->v[i];
        memcpy(m->gA, v->stage + m->goff, na_of(m) * sizeof(float));
        memcpy(m->gB, v->stage + m->goff + na_of(m), nb_of(m) * sizeof(float));
    }
    n->gfresh = 1;
    n->stale = 1;   /* the model's W' (used by sampling only) */
    if (!rc) rc = cs_lora_net_step(n, cfg, grad_norm);
    if (!rc) rc = upload_ab(n);
    if (rc) v->dirty = 1;
    return rc;
}
