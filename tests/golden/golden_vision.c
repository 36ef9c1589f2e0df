/* Golden handlers for image variation: "clip_vision" (CLIPVisionModelWithProjection
 * on in.pixel_values [N,3,H,W], checking image_embeds, last_hidden_state and
 * every hidden_states_NN the case lists) and "clip_preprocess" (uint8 image
 * in.image_u8 [H,W,3] -> out.pixel_values [1,3,224,224]). */
#include "golden.h"

#include "clip_vision.h"
#include "error.h"
#include "image_prep.h"
#include "ops.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The case's one weights file: the metadata names it bare or as {role: file}. */
static int weights_file(gcase *c, cs_st_file **f)
{
    const char *wj = golden_meta(c, "weights");
    json_t *root = wj ? json_loads(wj, 0, NULL) : NULL;
    char role[64] = "clip_vision";
    if (json_is_object(root) && json_object_size(root) == 1)
        snprintf(role, sizeof role, "%s", json_object_iter_key(json_object_iter(root)));
    json_decref(root);
    return golden_weights(c, role, f);
}

static int known_output(const char *name, int layers)
{
    int l;
    char tail;
    if (!strcmp(name, "out.image_embeds") || !strcmp(name, "out.last_hidden_state")) return 1;
    return sscanf(name, "out.hidden_states_%d%c", &l, &tail) == 1 && l >= 0 && l <= layers;
}

static int run_clip_vision(gcase *c)
{
    cs_st_file *wf;
    int rc = weights_file(c, &wf);
    if (rc) return rc;
    cs_clip_vision *m;
    if ((rc = cs_clip_vision_load(wf, NULL, &m))) return rc;
    const cs_clip_vision_config *cfg = cs_clip_vision_get_config(m);
    cs_st_file *io = golden_io(c);
    for (int i = 0; i < cs_st_count(io); i++) {
        const char *nm = cs_st_at(io, i)->name;
        if (!strncmp(nm, "out.", 4) && !known_output(nm, cfg->layers)) {
            cs_clip_vision_free(m);
            return cs_error(CS_EFORMAT, "%s: output %s is not computed by the clip_vision handler", golden_path(c), nm);
        }
    }
    const cs_tensor *t = golden_tensor(c, "in.pixel_values");
    size_t S = (size_t)cfg->image, Ch = (size_t)cfg->channels;
    if (!t || t->ndim != 4 || t->shape[1] != (int64_t)Ch || t->shape[2] != (int64_t)S || t->shape[3] != (int64_t)S) {
        cs_clip_vision_free(m);
        return cs_error(CS_EFORMAT, "%s: in.pixel_values missing or not [N, %zu, %zu, %zu] (the model's config)",
                        golden_path(c), Ch, S, S);
    }
    size_t N, C, H, W;
    float *px = golden_nhwc(c, "in.pixel_values", &N, &C, &H, &W);
    size_t T = (S / (size_t)cfg->patch) * (S / (size_t)cfg->patch) + 1, RC = N * T * (size_t)cfg->width;
    size_t d3[3] = {N, T, (size_t)cfg->width};
    int nh = cfg->layers + 1;
    float *last = cs_alloc(RC * sizeof(float)), *emb = cs_alloc(N * (size_t)cfg->proj * sizeof(float));
    float **hidden = calloc((size_t)nh, sizeof *hidden);
    int ok = px && last && emb && hidden;
    for (int l = 0; ok && l < nh; l++) ok = (hidden[l] = cs_alloc(RC * sizeof(float))) != NULL;
    if (!ok) rc = cs_error(CS_ENOMEM, "%s: out of memory", golden_path(c));
    cs_clip_vision_out out = {emb, last, hidden};
    if (!rc) rc = cs_clip_vision_forward(m, px, N, &out);
    if (!rc) rc = golden_check(c, "out.image_embeds", emb, 2, (size_t[]){N, (size_t)cfg->proj});
    if (!rc && golden_tensor(c, "out.last_hidden_state")) rc = golden_check(c, "out.last_hidden_state", last, 3, d3);
    for (int l = 0; !rc && l < nh; l++) {
        char name[64];
        snprintf(name, sizeof name, "out.hidden_states_%02d", l);
        if (golden_tensor(c, name)) rc = golden_check(c, name, hidden[l], 3, d3);
    }
    for (int l = 0; hidden && l < nh; l++) cs_free(hidden[l]);
    free(hidden);
    cs_free(px);
    cs_free(last);
    cs_free(emb);
    cs_clip_vision_free(m);
    return rc;
}

/* The image's bytes as they are; the output size from the reference's shape
 * (224 in the cases: CLIP's input). */
static int run_clip_preprocess(gcase *c)
{
    const cs_tensor *t = golden_tensor(c, "in.image_u8"), *r = golden_tensor(c, "out.pixel_values");
    if (!t || t->dtype != CS_U8 || t->ndim != 3 || t->shape[2] != 3 || !t->shape[0] || !t->shape[1])
        return cs_error(CS_EFORMAT, "%s: in.image_u8 missing or not a uint8 [H, W, 3] image", golden_path(c));
    if (!r || r->ndim != 4 || r->shape[0] != 1 || r->shape[1] != 3 || r->shape[2] != r->shape[3] || r->shape[2] > 4096)
        return cs_error(CS_EFORMAT, "%s: out.pixel_values missing or not [1, 3, S, S] (S <= 4096)", golden_path(c));
    size_t H = (size_t)t->shape[0], W = (size_t)t->shape[1], S = (size_t)r->shape[2];
    float *y = cs_alloc(S * S * 3 * sizeof *y);
    if (!y) return cs_error(CS_ENOMEM, "%s: out of memory", golden_path(c));
    int rc = cs_clip_preprocess(t->data, H, W, (int)S, y);
    if (!rc) rc = golden_check_nhwc(c, "out.pixel_values", y, 1, 3, S, S);
    cs_free(y);
    return rc;
}

const golden_handler golden_vision_handlers[] = {
    {"clip_vision", run_clip_vision},
    {"clip_preprocess", run_clip_preprocess},
    {NULL, NULL},
};
