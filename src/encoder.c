/* CLIP's encoder layer (src/encoder.h). */
#include "encoder.h"

#include "device.h"
#include "error.h"
#include "ops.h"

int cs_enc_layer_forward(const cs_enc_layer *w, const cs_enc_dims *d, float *h, size_t N, size_t L,
                         const float *mask, float *x, float *q, float *k, float *v, float *a, float *f)
{
    size_t R = N * L, C = d->width, F = d->mlp;
    const float *l1w = cs_param(w->ln1_w, C), *l1b = cs_param(w->ln1_b, C), *l2w = cs_param(w->ln2_w, C),
                *l2b = cs_param(w->ln2_b, C);
    if (!l1w || !l1b || !l2w || !l2b) return CS_ENOMEM;
    cs_layernorm(h, x, R, C, d->eps, l1w, l1b);
    int rc = cs_linear(x, R, C, 0, &w->q_w, &w->q_b, q, 0, 0);
    if (!rc) rc = cs_linear(x, R, C, 0, &w->k_w, &w->k_b, k, 0, 0);
    if (!rc) rc = cs_linear(x, R, C, 0, &w->v_w, &w->v_b, v, 0, 0);
    if (!rc) rc = cs_attention(q, C, k, C, v, C, N, L, L, C, d->heads, mask, a, C);
    if (!rc) rc = cs_linear(a, R, C, 0, &w->o_w, &w->o_b, h, 0, 1);   /* h += out_proj(a) */
    if (rc) return rc;
    cs_layernorm(h, x, R, C, d->eps, l2w, l2b);
    if ((rc = cs_linear(x, R, C, 0, &w->fc1_w, &w->fc1_b, f, 0, 0))) return rc;
    if (d->quick_gelu) cs_quick_gelu(f, f, R * F);
    else cs_gelu(f, f, R * F);
    return cs_linear(f, R, F, 0, &w->fc2_w, &w->fc2_b, h, 0, 1);   /* h += fc2(f) */
}

void cs_enc_layer_free(cs_enc_layer *w)
{
    cs_param_free(w->ln1_w), cs_param_free(w->ln1_b), cs_param_free(w->ln2_w), cs_param_free(w->ln2_b);
}
