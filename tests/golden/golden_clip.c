/* Golden handler for module "clip_text": CLIPTextModelWithProjection on the
 * case's token ids (and attention mask when present), checking clip_text,
 * last_hidden_state, text_embeds and every hidden_states_NN the case lists. */
#include "golden.h"

#include "clip.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* [N, L] integer tensor as int32 (NULL if absent when optional). */
static int32_t *int_input(gcase *c, const char *name, size_t *N, size_t *L)
{
    const cs_tensor *t = golden_tensor(c, name);
    if (!t) return NULL;
    if (t->ndim != 2) {
        cs_error(CS_EFORMAT, "%s: %s: expected [N, L]", golden_path(c), name);
        return NULL;
    }
    float *f = golden_f32(c, name, NULL);   /* ids < 2^24 are exact in float */
    int32_t *v = f ? malloc((size_t)cs_tensor_numel(t) * sizeof *v) : NULL;
    if (!v) cs_error(CS_ENOMEM, "%s: out of memory", golden_path(c));
    for (int64_t i = 0; v && i < cs_tensor_numel(t); i++) {
        if (!(f[i] >= 0 && f[i] < 16777216.0f)) {   /* converting more would be undefined */
            cs_error(CS_EFORMAT, "%s: %s[%lld] = %g is not a token id / mask value", golden_path(c), name,
                     (long long)i, (double)f[i]);
            free(v);
            v = NULL;
            break;
        }
        v[i] = (int32_t)f[i];
    }
    cs_free(f);
    *N = (size_t)t->shape[0];
    *L = (size_t)t->shape[1];
    return v;
}

/* Every out.* tensor of the case must be one this handler computes. */
static int known_output(const char *name, int layers)
{
    int l;
    char tail;
    if (!strcmp(name, "out.clip_text") || !strcmp(name, "out.last_hidden_state") || !strcmp(name, "out.text_embeds"))
        return 1;
    return sscanf(name, "out.hidden_states_%d%c", &l, &tail) == 1 && l >= 0 && l <= layers;
}

static int run_clip_text(gcase *c)
{
    cs_st_file *wf;
    int rc = golden_weights(c, "text_encoder", &wf);
    if (rc) return rc;
    cs_clip *m;
    cs_lora_list lo;
    if ((rc = golden_lora(c, &lo))) return rc;
    rc = cs_clip_load_lora(wf, "", NULL, &lo, &m);
    golden_lora_free(&lo);
    if (rc) return rc;
    const cs_clip_config *cfg = cs_clip_get_config(m);
    cs_st_file *io = golden_io(c);
    for (int i = 0; i < cs_st_count(io); i++) {
        const char *nm = cs_st_at(io, i)->name;
        if (!strncmp(nm, "out.", 4) && !known_output(nm, cfg->layers)) {
            cs_clip_free(m);
            return cs_error(CS_EFORMAT, "%s: output %s is not computed by the clip_text handler", golden_path(c), nm);
        }
    }
    size_t N, L, N2 = 0, L2 = 0;
    int32_t *ids = int_input(c, "in.input_ids", &N, &L);
    int32_t *mask = golden_tensor(c, "in.attention_mask") ? int_input(c, "in.attention_mask", &N2, &L2) : NULL;
    if (!ids || (golden_tensor(c, "in.attention_mask") && (!mask || N2 != N || L2 != L))) {
        if (ids && mask) cs_error(CS_EFORMAT, "%s: attention_mask shape differs from input_ids", golden_path(c));
        else if (!ids && !golden_tensor(c, "in.input_ids")) cs_error(CS_EFORMAT, "%s: no in.input_ids", golden_path(c));
        free(ids);
        free(mask);
        cs_clip_free(m);
        return CS_EFORMAT;
    }
    size_t RC = N * L * (size_t)cfg->width, d3[3] = {N, L, (size_t)cfg->width};
    int nh = cfg->layers + 1;
    float *clip_text = cs_alloc(RC * sizeof(float)), *last = cs_alloc(RC * sizeof(float));
    float *emb = cs_alloc(N * (size_t)cfg->proj * sizeof(float));
    float **hidden = calloc((size_t)nh, sizeof *hidden);
    int ok = clip_text && last && emb && hidden;
    for (int l = 0; ok && l < nh; l++) ok = (hidden[l] = cs_alloc(RC * sizeof(float))) != NULL;
    if (!ok) rc = cs_error(CS_ENOMEM, "%s: out of memory", golden_path(c));
    cs_clip_out out = {clip_text, last, emb, hidden};
    if (!rc) rc = cs_clip_forward(m, ids, mask, N, L, &out);
    if (!rc && golden_has_output(c, "out.clip_text")) rc = golden_check(c, "out.clip_text", clip_text, 3, d3);
    if (!rc && golden_has_output(c, "out.last_hidden_state")) rc = golden_check(c, "out.last_hidden_state", last, 3, d3);
    if (!rc && golden_has_output(c, "out.text_embeds"))
        rc = golden_check(c, "out.text_embeds", emb, 2, (size_t[]){N, (size_t)cfg->proj});
    for (int l = 0; !rc && l < nh; l++) {
        char name[64];
        snprintf(name, sizeof name, "out.hidden_states_%02d", l);
        if (golden_has_output(c, name)) rc = golden_check(c, name, hidden[l], 3, d3);
    }
    for (int l = 0; hidden && l < nh; l++) cs_free(hidden[l]);
    free(hidden);
    cs_free(clip_text);
    cs_free(last);
    cs_free(emb);
    free(ids);
    free(mask);
    cs_clip_free(m);
    return rc;
}

const golden_handler golden_clip_handlers[] = {
    {"clip_text", run_clip_text},
    {NULL, NULL},
};
