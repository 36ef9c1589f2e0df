/* CLIP text encoder: loading/validation errors and forward invariants on a
 * small random model built in memory (the numerics against PyTorch are the
 * golden cases in tests/golden_clip.sh). */
#include "check.h"
#include "clip.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { V = 40, W = 16, HEADS = 2, LAYERS = 2, MLP = 32, CTX = 8, PROJ = 12, MAXT = 64 };

#define CONFIG_ACT(act)                                                                                 \
    "{\"vocab_size\": 40, \"hidden_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"      \
    " \"intermediate_size\": 32, \"max_position_embeddings\": 8, \"projection_dim\": 12,"                    \
    " \"layer_norm_eps\": 1e-5, \"hidden_act\": \"" act "\", \"eos_token_id\": 39}"
static const char CONFIG[] = CONFIG_ACT("quick_gelu");

typedef struct {
    cs_tensor t[MAXT];
    const cs_tensor *p[MAXT];
    char names[MAXT][96];
    int n;
} model;

static uint32_t rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static void add(model *m, cs_dtype dt, const char *name, int64_t d0, int64_t d1, float scale, float offset)
{
    cs_tensor *t = &m->t[m->n];
    snprintf(m->names[m->n], sizeof m->names[m->n], "%s", name);
    t->name = m->names[m->n];
    t->dtype = dt;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    size_t n = (size_t)(d0 * (d1 ? d1 : 1));
    void *data = malloc(n * (dt == CS_F32 ? 4 : 2));
    for (size_t i = 0; i < n; i++) {
        float v = cs_bf16_to_f32(cs_f32_to_bf16(offset + scale * frand()));   /* exact in BF16 */
        if (dt == CS_F32) ((float *)data)[i] = v;
        else ((uint16_t *)data)[i] = cs_f32_to_bf16(v);
    }
    t->data = data;
    m->p[m->n] = t;
    m->n++;
}

/* The full tensor set in HF names; same values for F32 and BF16 (same seed). */
static void build(model *m, cs_dtype dt, int width, int layers)
{
    char nm[96];
    rng = 12345;
    m->n = 0;
    add(m, dt, "text_model.embeddings.token_embedding.weight", V, width, 0.5f, 0);
    add(m, dt, "text_model.embeddings.position_embedding.weight", CTX, width, 0.2f, 0);
    const char *lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"};
    for (int l = 0; l < layers; l++) {
        for (int j = 0; j < 4; j++) {
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.%s.weight", l, lin[j]);
            add(m, dt, nm, width, width, 0.3f, 0);
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.%s.bias", l, lin[j]);
            add(m, dt, nm, width, 0, 0.1f, 0);
        }
        for (int j = 1; j <= 2; j++) {
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.layer_norm%d.weight", l, j);
            add(m, dt, nm, width, 0, 0.2f, 1);
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.layer_norm%d.bias", l, j);
            add(m, dt, nm, width, 0, 0.1f, 0);
        }
        snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc1.weight", l);
        add(m, dt, nm, MLP, width, 0.3f, 0);
        snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc1.bias", l);
        add(m, dt, nm, MLP, 0, 0.1f, 0);
        snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc2.weight", l);
        add(m, dt, nm, width, MLP, 0.2f, 0);
        snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc2.bias", l);
        add(m, dt, nm, width, 0, 0.1f, 0);
    }
    add(m, dt, "text_model.final_layer_norm.weight", width, 0, 0.2f, 1);
    add(m, dt, "text_model.final_layer_norm.bias", width, 0, 0.1f, 0);
    add(m, dt, "text_projection.weight", PROJ, width, 0.3f, 0);
}

static void release(model *m)
{
    for (int i = 0; i < m->n; i++) free((void *)m->t[i].data);
    m->n = 0;
}

static int find(model *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->names[i], name)) return i;
    return -1;
}

/* Loading must fail with code and a message containing want. */
static void expect_fail(model *m, const char *cfg, int code, const char *want, const char *what)
{
    cs_clip *c = (cs_clip *)1;
    int rc = cs_clip_from_tensors(m->p, m->n, "", cfg, "test.safetensors", &c);
    CHECK(rc == code && c == NULL, "%s: rc %d, expected %d", what, rc, code);
    CHECK(strstr(cs_last_error(), want) && strstr(cs_last_error(), "test.safetensors"), "%s: message '%s' lacks '%s'",
          what, cs_last_error(), want);
}

static void test_validation(void)
{
    model m;
    build(&m, CS_F32, W, LAYERS);
    int i = find(&m, "text_model.final_layer_norm.weight");
    m.p[i] = m.p[--m.n];   /* drop it */
    expect_fail(&m, CONFIG, CS_EMODEL, "missing text_model.final_layer_norm.weight", "missing tensor");
    m.n++;
    m.p[i] = &m.t[i];
    m.p[m.n - 1] = &m.t[m.n - 1];

    i = find(&m, "text_model.encoder.layers.1.mlp.fc2.weight");
    m.t[i].shape[1] = MLP - 1;
    expect_fail(&m, CONFIG, CS_EMODEL, "layers.1.mlp.fc2.weight is [16,31], expected [16,32]", "misshaped");
    m.t[i].shape[1] = MLP;

    m.t[i].dtype = CS_I32;
    expect_fail(&m, CONFIG, CS_EMODEL, "has dtype I32", "integer weight");
    m.t[i].dtype = CS_F32;

    expect_fail(&m, "{\"hidden_act\": \"gelu_new\"}", CS_EUNSUP, "gelu_new", "unsupported act");
    expect_fail(&m, "{\"hidden_size\": \"big\"}", CS_EFORMAT, "hidden_size", "bad config value");
    expect_fail(&m, "{\"hidden_size\": ", CS_EFORMAT, "line", "broken config json");
    /* config says 3 layers: every tensor of layer 2 is missing (first few listed) */
    expect_fail(&m, "{\"num_hidden_layers\": 3, \"num_attention_heads\": 2}", CS_EMODEL,
                "missing text_model.encoder.layers.2.self_attn.q_proj.weight", "layer count");
    CHECK(strstr(cs_last_error(), "16 problems") != NULL, "problem count: %s", cs_last_error());
    /* a config asking for absurdly many layers is refused at once, not after
     * allocating 16 expectations a layer (tests/corpus/config/oom_layers) */
    expect_fail(&m, "{\"num_hidden_layers\": 2549408}", CS_EMODEL, "asks for 2549408 layers", "absurd layer count");

    /* an unknown tensor is an error, position_ids is not */
    add(&m, CS_F32, "text_model.embeddings.position_ids", 1, CTX, 0, 0);
    cs_clip *c = NULL;
    CHECK(cs_clip_from_tensors(m.p, m.n, "", CONFIG, "x", &c) == 0, "position_ids: %s", cs_last_error());
    cs_clip_free(c);
    add(&m, CS_F32, "text_model.encoder.layers.7.extra", 4, 0, 1, 0);
    expect_fail(&m, CONFIG, CS_EMODEL, "unexpected text_model.encoder.layers.7.extra", "extra tensor");
    release(&m);

    /* no config: everything from shapes, heads = width / 64 */
    build(&m, CS_BF16, 128, 3);
    CHECK(cs_clip_from_tensors(m.p, m.n, "", NULL, "x", &c) == 0, "shapes only: %s", cs_last_error());
    if (c) {
        const cs_clip_config *k = cs_clip_get_config(c);
        CHECK(k->width == 128 && k->heads == 2 && k->layers == 3 && k->mlp == MLP && k->vocab == V &&
              k->ctx == CTX && k->proj == PROJ && !k->quick_gelu && k->eos == 49407, "derived config");
    }
    cs_clip_free(c);
    release(&m);
}

static void forward(const cs_clip *c, const int32_t *ids, const int32_t *mask, size_t N, float *ct, float *lh,
                    float *te, float **hid)
{
    cs_clip_out o = {ct, lh, te, hid};
    int rc = cs_clip_forward(c, ids, mask, N, CTX, &o);
    CHECK(rc == 0, "forward: %s", cs_last_error());
}

static float maxdiff(const float *a, const float *b, size_t n)
{
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static void test_forward(void)
{
    model m32, m16;
    build(&m32, CS_F32, W, LAYERS);
    build(&m16, CS_BF16, W, LAYERS);
    cs_clip *c32, *c16;
    CHECK(cs_clip_from_tensors(m32.p, m32.n, "", CONFIG, "f32", &c32) == 0, "load f32: %s", cs_last_error());
    CHECK(cs_clip_from_tensors(m16.p, m16.n, "", CONFIG, "bf16", &c16) == 0, "load bf16: %s", cs_last_error());
    if (!c32 || !c16) return;
    /* two prompts: bos, 3 tokens, eos, pad | bos, 5 tokens, eos, pad (eos = 39) */
    const int32_t ids[2 * CTX] = {38, 5, 6, 7, 39, 39, 39, 39, 38, 9, 8, 1, 2, 3, 39, 39};
    const int32_t mask[2 * CTX] = {1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
    enum { RC = 2 * CTX * W };
    static float ct[RC], lh[RC], te[2 * PROJ], h0[RC], h1[RC], h2[RC];
    static float ct2[RC], lh2[RC], te2[2 * PROJ], ctu[RC], one[CTX * W], tone[PROJ];
    float *hid[3] = {h0, h1, h2};
    forward(c32, ids, mask, 2, ct, lh, te, hid);

    /* F32 and BF16 files holding the same values give the same result */
    forward(c16, ids, mask, 2, ct2, lh2, te2, NULL);
    CHECK(!memcmp(ct, ct2, sizeof ct) && !memcmp(te, te2, sizeof te), "bf16 vs f32 weights differ");

    /* hidden[0] = token + position embedding, hidden[layers] = clip_text */
    const float *tok = m32.t[0].data, *pos = m32.t[1].data;
    float d = 0;
    for (int r = 0; r < 2 * CTX; r++)
        for (int j = 0; j < W; j++) d = fmaxf(d, fabsf(h0[r * W + j] - (tok[ids[r] * W + j] + pos[(r % CTX) * W + j])));
    CHECK(d == 0, "embeddings differ by %g", d);
    CHECK(!memcmp(h2, ct, sizeof ct), "last hidden state != clip_text");

    /* text_embeds = text_projection(last_hidden at the first eos): positions 4 and 6 */
    const float *P = m32.t[m32.n - 1].data;
    for (int n = 0; n < 2; n++) {
        int e = n ? 6 : 4;
        for (int p = 0; p < PROJ; p++) {
            double s = 0;
            for (int j = 0; j < W; j++) s += (double)P[p * W + j] * lh[(n * CTX + e) * W + j];
            CHECK(fabs(s - te[n * PROJ + p]) < 1e-5, "text_embeds[%d][%d]: %g vs %g", n, p, te[n * PROJ + p], s);
        }
    }

    /* the mask changes only the padding positions */
    forward(c32, ids, NULL, 2, ctu, NULL, NULL, NULL);
    CHECK(!memcmp(ctu, ct, 5 * W * sizeof(float)) && !memcmp(ctu + CTX * W, ct + CTX * W, 7 * W * sizeof(float)),
          "mask changed real positions");
    CHECK(maxdiff(ctu + 5 * W, ct + 5 * W, 3 * W) > 1e-3, "mask did not change padding positions");

    /* batch rows are independent */
    forward(c32, ids + CTX, mask + CTX, 1, one, NULL, tone, NULL);
    CHECK(maxdiff(one, ct + CTX * W, CTX * W) < 1e-5 && maxdiff(tone, te + PROJ, PROJ) < 1e-5, "batch dependence");

    /* quick_gelu vs gelu is read from the config */
    cs_clip *cg;
    CHECK(cs_clip_from_tensors(m32.p, m32.n, "", CONFIG_ACT("gelu"), "gelu", &cg) == 0, "gelu config: %s", cs_last_error());
    if (cg) {
        forward(cg, ids, mask, 2, ct2, NULL, NULL, NULL);
        CHECK(maxdiff(ct, ct2, RC) > 1e-3, "activation choice has no effect");
        cs_clip_free(cg);
    }

    /* bad inputs */
    int32_t bad[CTX] = {38, 40, 39, 39, 39, 39, 39, 39}, m0[CTX] = {0, 1, 1, 0, 0, 0, 0, 0};
    cs_clip_out o = {ct, NULL, NULL, NULL};
    CHECK(cs_clip_forward(c32, bad, NULL, 1, CTX, &o) == CS_EARG && strstr(cs_last_error(), "token id 40"),
          "out-of-range id: %s", cs_last_error());
    CHECK(cs_clip_forward(c32, ids, m0, 1, CTX, &o) == CS_EARG, "mask 0 at BOS accepted");
    CHECK(cs_clip_forward(c32, ids, NULL, 1, CTX + 1, &o) == CS_EARG, "too many positions accepted");

    cs_clip_free(c32);
    cs_clip_free(c16);
    release(&m32);
    release(&m16);
}

/* cs_clip_open: reads config.json beside the weights; a broken one is named. */
static void test_open(void)
{
    model m;
    build(&m, CS_BF16, W, LAYERS);
    char dir[] = "/tmp/cs_clip_XXXXXX", path[256], cpath[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    CHECK(cs_st_write(path, m.t, m.n, NULL, 0) == 0, "write: %s", cs_last_error());
    FILE *f = fopen(cpath, "w");
    fputs(CONFIG, f);
    fclose(f);
    cs_clip *c = NULL;
    CHECK(cs_clip_open(path, &c) == 0 && cs_clip_get_config(c)->heads == 2 && cs_clip_get_config(c)->quick_gelu,
          "open with config.json: %s", cs_last_error());
    cs_clip_free(c);
    f = fopen(cpath, "w");
    fputs("{\"hidden_size\": 16,", f);
    fclose(f);
    CHECK(cs_clip_open(path, &c) == CS_EFORMAT && strstr(cs_last_error(), cpath), "broken config.json: %s",
          cs_last_error());
    unlink(cpath);
    /* without config.json: shapes say 1 head of 16 (not head dim 64) -> still loads */
    CHECK(cs_clip_open(path, &c) == 0 && cs_clip_get_config(c)->heads == 1, "open without config: %s",
          cs_last_error());
    cs_clip_free(c);
    unlink(path);
    rmdir(dir);
    release(&m);
}

int main(void)
{
    if (cs_simd_init()) {
        fprintf(stderr, "simd: %s\n", cs_last_error());
        return 99;
    }
    test_validation();
    test_forward();
    test_open();
    if (failures) fprintf(stderr, "%d failures\n", failures);
    else printf("all clip tests passed\n");
    return check_exit();
}
