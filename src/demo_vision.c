/* The demo CLIP vision tower (see demo_vision.h). */
#include "demo_vision.h"

#include "error.h"
#include "models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put(cs_demo_list *l, int init, float std, int64_t d0, int64_t d1, const char *name)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        cs_demo_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) return cs_error(CS_ENOMEM, "demo: out of memory");
        l->t = t, l->cap = cap;
    }
    cs_demo_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0, t->shape[1] = d1;
    t->init = init, t->std = std;
    return 0;
}

/* Linear(in -> out): weight N(0, 1/in), bias N(0, 0.1^2) */
static int lin(cs_demo_list *l, const char *p, int in, int out)
{
    char nm[96];
    snprintf(nm, sizeof nm, "%s.weight", p);
    int rc = put(l, CS_DI_NORMAL, (float)(1.0 / sqrt((double)in)), out, in, nm);
    snprintf(nm, sizeof nm, "%s.bias", p);
    return rc ? rc : put(l, CS_DI_NORMAL, 0.1f, out, 0, nm);
}

/* LayerNorm: weight 1 + N(0, 0.1^2), bias N(0, 0.1^2) */
static int ln(cs_demo_list *l, const char *p, int w)
{
    char nm[96];
    snprintf(nm, sizeof nm, "%s.weight", p);
    int rc = put(l, CS_DI_ONE_PLUS, 0.1f, w, 0, nm);
    snprintf(nm, sizeof nm, "%s.bias", p);
    return rc ? rc : put(l, CS_DI_NORMAL, 0.1f, w, 0, nm);
}

int cs_demo_clip_vision(int w, int layers, int mlp, int proj, int image, int patch, cs_demo_list *l)
{
    memset(l, 0, sizeof *l);
    int g = image / patch, rc = put(l, CS_DI_NORMAL, 1.0f, w, 0, "vision_model.embeddings.class_embedding");
    if (!rc) {   /* the conv weight [w, 3, patch, patch] */
        rc = put(l, CS_DI_NORMAL, (float)(1.0 / sqrt(3.0 * patch * patch)), w, 3,
                 "vision_model.embeddings.patch_embedding.weight");
        l->t[l->n - 1].ndim = 4;
        l->t[l->n - 1].shape[2] = l->t[l->n - 1].shape[3] = patch;
    }
    if (!rc) rc = put(l, CS_DI_NORMAL, 0.5f, (int64_t)g * g + 1, w, "vision_model.embeddings.position_embedding.weight");
    if (!rc) rc = ln(l, "vision_model.pre_layrnorm", w);
    char p[96];
    for (int i = 0; i < layers && !rc; i++) {
        static const char *const pr[] = {"k_proj", "v_proj", "q_proj", "out_proj"};
        for (int j = 0; j < 4 && !rc; j++) {
            snprintf(p, sizeof p, "vision_model.encoder.layers.%d.self_attn.%s", i, pr[j]);
            rc = lin(l, p, w, w);
        }
        snprintf(p, sizeof p, "vision_model.encoder.layers.%d.layer_norm1", i);
        if (!rc) rc = ln(l, p, w);
        snprintf(p, sizeof p, "vision_model.encoder.layers.%d.mlp.fc1", i);
        if (!rc) rc = lin(l, p, w, mlp);
        snprintf(p, sizeof p, "vision_model.encoder.layers.%d.mlp.fc2", i);
        if (!rc) rc = lin(l, p, mlp, w);
        snprintf(p, sizeof p, "vision_model.encoder.layers.%d.layer_norm2", i);
        if (!rc) rc = ln(l, p, w);
    }
    if (!rc) rc = ln(l, "vision_model.post_layernorm", w);
    if (!rc) rc = put(l, CS_DI_NORMAL, (float)(1.0 / sqrt((double)w)), proj, w, "visual_projection.weight");
    if (rc) cs_demo_list_free(l);
    return rc;
}

int cs_demo_clip_vision_write(const char *path)
{
    cs_demo_unet uc;
    cs_demo_stage_c_cfg(&uc);
    cs_demo_list l;
    int rc = cs_demo_clip_vision(64, 2, 256, uc.c_clip_img, 224, 14, &l);
    if (rc) return rc;
    const char *meta[] = {"demo", "cascade tiny random CLIP vision tower"};
    rc = cs_demo_write(path, &l, "F32", CS_DEMO_SEED + 6, meta, 1);
    cs_demo_list_free(&l);
    return rc;
}

int cs_demo_effnet_write(const char *path)
{
    cs_expect *e;
    int n, rc = cs_net_expected(CS_NET_EFFNET, &e, &n);
    if (rc) return rc;
    cs_demo_list l = {0};
    for (int i = 0; i < n && !rc; i++) {
        int s, b;
        const char *nm = e[i].name;
        if (e[i].kind == CS_EXP_INT64) continue;   /* num_batches_tracked: optional */
        if (sscanf(nm, "backbone.%d.%d.", &s, &b) == 2 && s >= 1 && s <= 6 && b > 0) continue;
        const char *dot = strrchr(nm, '.');
        int init = CS_DI_NORMAL;
        float std = 0.1f;
        if (e[i].ndim == 4) {   /* conv: N(0, 1/fan_in) */
            std = (float)(1.0 / sqrt((double)(e[i].shape[1] * e[i].shape[2] * e[i].shape[3])));
        } else if (!strcmp(dot, ".weight") || !strcmp(dot, ".running_var")) {
            init = CS_DI_UNIFORM_POS;   /* BatchNorm scale and variance: U(0.5, 1.5) */
        }
        rc = put(&l, init, std, e[i].shape[0], e[i].ndim >= 2 ? e[i].shape[1] : 0, nm);
        if (!rc) {
            cs_demo_tensor *t = &l.t[l.n - 1];
            t->ndim = e[i].ndim;
            for (int d = 0; d < e[i].ndim; d++) t->shape[d] = e[i].shape[d];
        }
    }
    free(e);
    const char *meta[] = {"demo", "cascade reduced random EfficientNet encoder"};
    if (!rc) rc = cs_demo_write(path, &l, "F32", CS_DEMO_SEED + 7, meta, 1);
    cs_demo_list_free(&l);
    return rc;
}
