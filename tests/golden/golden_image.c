/* Golden handlers for the image-side networks: Stage A (ResBlock, decode,
 * encode), the Previewer and the EfficientNet encoder. */
#include "golden.h"

#include "device.h"
#include "effnet.h"
#include "error.h"
#include "ops.h"
#include "previewer.h"
#include "stage_a.h"
#include "weights.h"

#include <stdlib.h>
#include <string.h>

/* The case's one weights file, whatever its role is called. */
static int weights_file(gcase *c, cs_st_file **f)
{
    const char *wj = golden_meta(c, "weights");
    json_t *root = wj ? json_loads(wj, 0, NULL) : NULL;
    const char *role = json_is_object(root) && json_object_size(root) == 1 ? json_object_iter_key(json_object_iter(root))
                                                                          : NULL;
    char buf[64];
    if (role) snprintf(buf, sizeof buf, "%s", role);
    json_decref(root);
    if (!role) return cs_error(CS_EFORMAT, "%s: metadata 'weights' should name exactly one file", golden_path(c));
    return golden_weights(c, buf, f);
}

/* Compares y (NHWC) with the NCHW reference name of shape [N,C,H,W]. */
static int check_nhwc(gcase *c, const char *name, const float *y, size_t N, size_t C, size_t H, size_t W)
{
    return golden_check_nhwc(c, name, y, N, C, H, W);
}

/* The reference has that NCHW shape: checked before the result is allocated. */
static int want(gcase *c, const char *name, size_t N, size_t C, size_t H, size_t W)
{
    size_t d[4] = {N, C, H, W};
    return golden_shape_is(golden_tensor(c, name), 4, d) ? 0 : golden_check(c, name, NULL, 4, d);
}

/* The buffer for output name [N, C, H, W] once the case's reference has
 * that shape, or NULL with *rc set. */
static float *output_y(gcase *c, const char *name, size_t N, size_t C, size_t H, size_t W, int *rc)
{
    float *y = NULL;
    if ((*rc = want(c, name, N, C, H, W)))
        return NULL;
    if (!(y = cs_alloc(N * C * H * W * sizeof(float))))
        *rc = cs_error(CS_ENOMEM, "out of memory");
    return y;
}

/* A config value that the file itself determines must agree with it. */
static int cfg_agrees(gcase *c, const char *key, int have)
{
    int v = golden_cfg_int(c, key, have, 0, GOLDEN_MAX_DIM);
    if (golden_cfg_error(c)) return golden_cfg_error(c);
    if (v != have)
        return cs_error(CS_EMODEL, "%s: config %s = %d but the weights have %d", golden_path(c), key, v, have);
    return 0;
}

static int run_sa_resblock(gcase *c)
{
    cs_wmap m;
    cs_sa_resblock b;
    int rc = cs_wmap_init(&m, golden_io(c), "w.");
    if (rc) return rc;
    cs_sa_resblock_bind(&b, &m, "", golden_cfg_int(c, "c", 0, 1, GOLDEN_MAX_DIM), golden_cfg_int(c, "c_hidden", 0, 1, GOLDEN_MAX_DIM));
    if ((rc = golden_cfg_error(c))) {
        cs_wmap_free(&m);
        return rc;
    }
    rc = cs_wmap_finish(&m, "Stage A ResBlock");
    cs_wmap_free(&m);
    if (rc) return rc;
    size_t N, C, H, W;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W);
    if (!x) return CS_EFORMAT;
    if (C != (size_t)b.c) rc = cs_error(CS_EFORMAT, "%s: in.x has %zu channels, the block %d", golden_path(c), C, b.c);
    if (!rc) {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        float *dx = cs_dev_out(&a, x, N * H * W * C), *work = a.rc ? NULL : cs_act_alloc(cs_sa_resblock_work(&b, H * W));
        if (dx && dx != x && cs_act_upload(dx, x, N * H * W * C)) a.rc = cs_dev_error();
        if (!(rc = a.rc)) rc = work ? cs_sa_resblock_forward(&b, dx, N, H, W, work) : CS_ENOMEM;
        cs_act_free(work);
        rc = cs_dev_args_finish(&a, rc);
    }
    if (!rc) rc = check_nhwc(c, "out.y", x, N, C, H, W);
    cs_free(x);
    return rc;
}

/* in.x as channels-last [N,H,W,C] with C == want_c (the network's input
 * width), or NULL with *rc set and one line naming the case. */
static float *input_x(gcase *c, size_t want_c, size_t *N, size_t *C, size_t *H, size_t *W, int *rc)
{
    float *x = golden_nhwc(c, "in.x", N, C, H, W);
    if (!x) {
        *rc = CS_EFORMAT;
        return NULL;
    }
    if (*C != want_c) {
        *rc = cs_error(CS_EFORMAT, "%s: in.x has %zu channels, the network takes %zu", golden_path(c), *C, want_c);
        cs_free(x);
        return NULL;
    }
    return x;
}

static int load_stage_a(gcase *c, cs_stage_a **m)
{
    cs_st_file *f;
    int rc = weights_file(c, &f);
    if (rc || (rc = cs_stage_a_load(f, NULL, m))) return rc;
    const cs_stage_a_config *k = cs_stage_a_get_config(*m);
    if ((rc = cfg_agrees(c, "levels", k->levels)) || (rc = cfg_agrees(c, "bottleneck_blocks", k->bottleneck_blocks)) ||
        (rc = cfg_agrees(c, "c_hidden", k->c_hidden)) || (rc = cfg_agrees(c, "c_latent", k->c_latent))) {
        cs_stage_a_free(*m);
        *m = NULL;
    }
    return rc;
}

static int run_sa_decode(gcase *c)
{
    cs_stage_a *m;
    int rc = load_stage_a(c, &m);
    if (rc) return rc;
    size_t N, C, h, w, f = (size_t)cs_stage_a_factor(m);
    float *z = input_x(c, (size_t)cs_stage_a_get_config(m)->c_latent, &N, &C, &h, &w, &rc), *y = NULL;
    if (!z)
        ;
    else if (!(y = output_y(c, "out.y", N, 3, f * h, f * w, &rc)))
        ;
    else if (!(rc = cs_stage_a_decode(m, z, N, h, w, (float)golden_cfg_num(c, "scale_factor", CS_STAGE_A_SCALE, 1e-6, 1e6), 0, 0, y)))
        rc = check_nhwc(c, "out.y", y, N, 3, f * h, f * w);
    cs_free(z);
    cs_free(y);
    cs_stage_a_free(m);
    return rc;
}

static int run_sa_encode(gcase *c)
{
    cs_stage_a *m;
    int rc = load_stage_a(c, &m);
    if (rc) return rc;
    size_t N, C, H, W, f = (size_t)cs_stage_a_factor(m), cl = (size_t)cs_stage_a_get_config(m)->c_latent;
    float *x = input_x(c, 3, &N, &C, &H, &W, &rc), *z = NULL;
    int32_t *idx = NULL;
    int q = golden_cfg_int(c, "quantize", 0, 0, 1);
    if (!x)
        ;
    else if (H % f || W % f)
        rc = cs_error(CS_EFORMAT, "%s: in.x is %zux%zu, not a multiple of %zu", golden_path(c), H, W, f);
    else if ((rc = want(c, "out.z", N, cl, H / f, W / f)) || (rc = golden_cfg_error(c)))
        ;
    else if (!(z = cs_alloc(N * (H / f) * (W / f) * cl * sizeof(float))) ||
             (q && !(idx = malloc(N * (H / f) * (W / f) * sizeof *idx))))
        rc = cs_error(CS_ENOMEM, "out of memory");
    else if (!(rc = cs_stage_a_encode(m, x, N, H, W, (float)golden_cfg_num(c, "scale_factor", CS_STAGE_A_SCALE, 1e-6, 1e6), z, idx)))
        rc = check_nhwc(c, "out.z", z, N, cl, H / f, W / f);
    free(idx);
    cs_free(x);
    cs_free(z);
    cs_stage_a_free(m);
    return rc;
}

static int run_previewer(gcase *c)
{
    cs_st_file *f;
    cs_previewer *m = NULL;
    int rc = weights_file(c, &f);
    if (rc || (rc = cs_previewer_load(f, NULL, &m))) return rc;
    const cs_previewer_config *k = cs_previewer_get_config(m);
    size_t N, C, h, w;
    float *x = NULL, *y = NULL;
    if ((rc = cfg_agrees(c, "c_in", k->c_in)) || (rc = cfg_agrees(c, "c_hidden", k->c_hidden)) ||
        (rc = cfg_agrees(c, "c_out", k->c_out)))
        ;
    else if (!(x = input_x(c, (size_t)k->c_in, &N, &C, &h, &w, &rc)))
        ;
    else if (!(y = output_y(c, "out.y", N, (size_t)k->c_out, 8 * h, 8 * w, &rc)))
        ;
    else if (!(rc = cs_previewer_forward(m, x, N, h, w, y))) rc = check_nhwc(c, "out.y", y, N, (size_t)k->c_out, 8 * h, 8 * w);
    cs_free(x);
    cs_free(y);
    cs_previewer_free(m);
    return rc;
}

static int run_effnet(gcase *c)
{
    cs_st_file *f;
    cs_effnet *m = NULL;
    int rc = weights_file(c, &f);
    if (rc || (rc = cs_effnet_load(f, NULL, &m))) return rc;
    const cs_effnet_config *k = cs_effnet_get_config(m);
    size_t N, C, H, W;
    float *x = NULL, *y = NULL;
    if ((rc = cfg_agrees(c, "c_latent", k->c_latent)))
        ;
    else if (!(x = input_x(c, 3, &N, &C, &H, &W, &rc)))
        ;
    else {
        size_t ho = cs_effnet_out_size(H), wo = cs_effnet_out_size(W);
        if ((y = output_y(c, "out.y", N, (size_t)k->c_latent, ho, wo, &rc)) && !(rc = cs_effnet_forward(m, x, N, H, W, y)))
            rc = check_nhwc(c, "out.y", y, N, (size_t)k->c_latent, ho, wo);
    }
    cs_free(x);
    cs_free(y);
    cs_effnet_free(m);
    return rc;
}

const golden_handler golden_image_handlers[] = {
    {"modules.stage_a.ResBlock", run_sa_resblock},
    {"modules.stage_a.StageA.decode", run_sa_decode},
    {"modules.stage_a.StageA.encode", run_sa_encode},
    {"modules.previewer.Previewer", run_previewer},
    {"modules.effnet.EfficientNetEncoder", run_effnet},
    {NULL, NULL},
};
