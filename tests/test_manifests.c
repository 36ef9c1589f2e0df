/* Recognition of every released network without the weights: for each
 * manifest in ../shared/spec/manifests, a safetensors file with exactly
 * those names/shapes (F32 and BF16, some F16; I64 counters) is written header-only and
 * extended sparsely to full size, then identified. Also: the built-in
 * expected lists equal the manifests; a renamed tensor, a changed shape and a
 * renamed signature tensor fail with the right message; diffusers- and
 * ComfyUI-spelled and prefixed (combined checkpoint) files are recognised;
 * and each network's own loader accepts every file so recognised.
 * Exit 77 = skip (shared data missing, unless CI is set: then 99). */
#include "check.h"
#include "clip.h"
#include "effnet.h"
#include "error.h"
#include "fake_st.h"
#include "models.h"
#include "previewer.h"
#include "stage_a.h"
#include "stage_b.h"
#include "stage_c.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[512];

static const struct {
    const char *manifest;
    cs_net net;
    const char *signature;   /* renaming it must make the file unrecognised */
} nets[] = {
    {"stage_c", CS_NET_STAGE_C, "clf.1.weight"},
    {"stage_c_lite", CS_NET_STAGE_C_LITE, "clf.1.weight"},
    {"stage_b", CS_NET_STAGE_B, "clf.1.weight"},
    {"stage_b_lite", CS_NET_STAGE_B_LITE, "clf.1.weight"},
    {"stage_a", CS_NET_STAGE_A, "vquantizer.codebook.weight"},
    {"effnet_encoder", CS_NET_EFFNET, "backbone.0.0.weight"},
    {"previewer", CS_NET_PREVIEWER, "blocks.24.weight"},
    {"text_encoder", CS_NET_TEXT_G, "text_model.final_layer_norm.weight"},
};

typedef struct {
    json_t *root;
    ft_list f32, bf16;    /* the manifest's tensors at each float dtype */
    int64_t params, elements;
    int n;
} manifest;

static int is_int64(json_t *root, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(root, "int64_tensors"), i, v)
        if (!strcmp(json_string_value(v), name)) return 1;
    return 0;
}

static int load_manifest(const char *dir, const char *name, manifest *m)
{
    char path[1100];
    json_error_t err;
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    if (!(m->root = json_load_file(path, 0, &err))) {
        CHECK(0, "%s: %s", path, err.text);
        return -1;
    }
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(m->root, "tensors"), i, t) {
        const char *tn = json_string_value(json_array_get(t, 0));
        json_t *sh = json_array_get(t, 1);
        int64_t s[8];
        int nd = (int)json_array_size(sh);
        for (int d = 0; d < nd && d < 8; d++) s[d] = json_integer_value(json_array_get(sh, (size_t)d));
        int i64 = is_int64(m->root, tn);
        ft_add(&m->f32, tn, nd, s, i64 ? CS_I64 : CS_F32);
        ft_add(&m->bf16, tn, nd, s, i64 ? CS_I64 : CS_BF16);
    }
    m->n = m->f32.n;
    m->params = json_integer_value(json_object_get(m->root, "params"));
    m->elements = json_integer_value(json_object_get(m->root, "state_dict_elements"));
    CHECK(m->n == json_integer_value(json_object_get(m->root, "num_tensors")), "%s: tensor count", name);
    return 0;
}

static void free_manifest(manifest *m)
{
    ft_free(&m->f32);
    ft_free(&m->bf16);
    json_decref(m->root);
}

/* The built-in expected list equals the manifest: names, shapes, kinds. */
static void check_expected(const manifest *m, cs_net net, const char *name)
{
    cs_expect *e;
    int n;
    CHECK(cs_net_expected(net, &e, &n) == 0, "%s: %s", name, cs_last_error());
    CHECK(n == m->n, "%s: %d expected tensors, manifest has %d", name, n, m->n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int k = ft_find(&m->f32, e[i].name);
        int ok = k >= 0 && m->f32.e[k].ndim == e[i].ndim;
        for (int d = 0; ok && d < e[i].ndim; d++) ok = m->f32.e[k].shape[d] == e[i].shape[d];
        ok = ok && (e[i].kind == CS_EXP_INT64) == (m->f32.e[k].dtype == CS_I64);
        if (!ok && bad++ < 3) CHECK(0, "%s: expected tensor '%s' differs from the manifest", name, e[i].name);
    }
    CHECK(!bad, "%s: %d tensors differ", name, bad);
    CHECK(cs_net_params(net) == m->params, "%s: params %lld vs %lld", name, (long long)cs_net_params(net),
          (long long)m->params);
    CHECK(cs_net_elements(net) == m->elements, "%s: elements %lld vs %lld", name, (long long)cs_net_elements(net),
          (long long)m->elements);
    free(e);
}

static int write_file(const char *name, const ft_list *l, uint64_t *bytes, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.safetensors", tmpdir, name);
    if (ft_write(path, l, bytes)) {
        CHECK(0, "%s: cannot write", path);
        return -1;
    }
    struct stat st;
    stat(path, &st);
    /* the data is a hole: nothing close to the apparent size reaches the disk */
    CHECK((uint64_t)st.st_blocks * 512 < (4u << 20), "%s: %lld bytes allocated, file not sparse", path,
          (long long)st.st_blocks * 512);
    return 0;
}

/* The network's own loader accepts what the detector found, at its prefix
 * (the data are holes: zeros, never needed for a plan). */
static void check_loads(const char *path, const cs_netid *ni)
{
    cs_st_file *f;
    int rc = cs_st_open(path, &f);
    CHECK(rc == 0, "%s: %s", path, cs_last_error());
    if (rc) return;
    const char *what = cs_net_title(ni->net);
    switch (cs_net_part(ni->net)) {
    case CS_PART_STAGE_C: {
        cs_stage_c *m;
        cs_net_info in;
        if (!(rc = cs_stage_c_load(f, &m))) {
            cs_stage_c_info(m, &in);
            CHECK(in.nparams == ni->params && !strcmp(in.prefix, ni->prefix) &&
                  !strcmp(in.variant, cs_net_is_lite(ni->net) ? "lite" : "full"),
                  "%s: loader says %lld params at '%s', %s", path, (long long)in.nparams, in.prefix, in.variant);
            cs_stage_c_free(m);
        }
        break;
    }
    case CS_PART_STAGE_B: {
        cs_stage_b *m;
        cs_net_info in;
        if (!(rc = cs_stage_b_load(f, &m))) {
            cs_stage_b_info(m, &in);
            CHECK(in.nparams == ni->params && !strcmp(in.prefix, ni->prefix) &&
                  !strcmp(in.variant, cs_net_is_lite(ni->net) ? "lite" : "full"),
                  "%s: loader says %lld params at '%s', %s", path, (long long)in.nparams, in.prefix, in.variant);
            cs_stage_b_free(m);
        }
        break;
    }
    case CS_PART_STAGE_A: {
        cs_stage_a *m;
        if (!(rc = cs_stage_a_load(f, ni->prefix, &m))) cs_stage_a_free(m);
        break;
    }
    case CS_PART_EFFNET: {
        cs_effnet *m;
        if (!(rc = cs_effnet_load(f, ni->prefix, &m))) cs_effnet_free(m);
        break;
    }
    case CS_PART_PREVIEWER: {
        cs_previewer *m;
        if (!(rc = cs_previewer_load(f, ni->prefix, &m))) cs_previewer_free(m);
        break;
    }
    case CS_PART_TEXT: {
        cs_clip *m;
        if (!(rc = cs_clip_load(f, ni->prefix, NULL, &m))) cs_clip_free(m);
        break;
    }
    default:
        break;
    }
    CHECK(rc == 0, "%s: %s at '%s' recognised, but its loader refuses it: %s", path, what, ni->prefix,
          cs_last_error());
    cs_st_close(f);
}

static void check_recognised(const manifest *m, cs_net net, const char *name, cs_dtype dt)
{
    char path[1024];
    uint64_t bytes;
    ft_list l = {0};
    ft_append(&l, dt == CS_F32 ? &m->f32 : &m->bf16, "", FT_OFFICIAL, 0);
    for (int i = 0; i < l.n; i++)   /* F16: third-party re-uploads */
        if (l.e[i].dtype == CS_BF16) l.e[i].dtype = dt;
    int wrc = write_file(name, &l, &bytes, path, sizeof path);
    ft_free(&l);
    if (wrc) return;
    cs_netid ni[4];
    int n = cs_identify_path(path, ni, 4);
    CHECK(n == 1, "%s %s: %d networks: %s", name, cs_dtype_name(dt), n, cs_last_error());
    if (n == 1) {
        CHECK(ni[0].net == net, "%s: recognised as %s", name, cs_net_name(ni[0].net));
        CHECK(ni[0].dtype == dt && !ni[0].mixed, "%s: dtype %s", name, cs_dtype_name(ni[0].dtype));
        CHECK(ni[0].n_tensors == m->n, "%s: %d tensors used of %d", name, ni[0].n_tensors, m->n);
        CHECK(ni[0].params == m->params, "%s: params %lld", name, (long long)ni[0].params);
        CHECK(ni[0].weight_bytes == bytes, "%s: weight bytes %llu vs %llu", name,
              (unsigned long long)ni[0].weight_bytes, (unsigned long long)bytes);
        CHECK(ni[0].n_extra == 0 && !ni[0].prefix[0] && ni[0].naming == CS_NAMES_OFFICIAL, "%s: extra/prefix/naming",
              name);
        if (cs_net_part(net) <= CS_PART_STAGE_B) {
            cs_variant want = cs_net_is_lite(net) ? (dt == CS_F32 ? CS_VAR_LITE : CS_VAR_LITE_BF16)
                                                  : (dt == CS_F32 ? CS_VAR_FULL : CS_VAR_BF16);
            CHECK(cs_variant_of(&ni[0]) == want, "%s %s: variant %s", name, cs_dtype_name(dt),
                  cs_variant_name(cs_variant_of(&ni[0])));
        }
        check_loads(path, &ni[0]);
    }
    unlink(path);
}

/* A broken copy must fail with a message naming the network and the tensor. */
static void expect_error(const ft_list *l, const char *name, const char *want1, const char *want2, int unrecognised)
{
    char path[1024];
    if (write_file(name, l, NULL, path, sizeof path)) return;
    cs_netid ni[4];
    int n = cs_identify_path(path, ni, 4);
    const char *msg = cs_last_error();
    if (unrecognised) CHECK(n == 0, "%s: expected unrecognised, got %d", name, n);
    else CHECK(n == CS_EMODEL, "%s: expected CS_EMODEL, got %d", name, n);
    CHECK(strstr(msg, want1) && (!want2 || strstr(msg, want2)), "%s: message '%s' lacks '%s' / '%s'", name, msg,
          want1, want2 ? want2 : "");
    unlink(path);
}

static void check_mismatches(const manifest *m, cs_net net, const char *name, const char *sig)
{
    ft_list l = {0};
    char want[300], label[128];
    /* a tensor in the middle renamed */
    ft_append(&l, &m->bf16, "", FT_OFFICIAL, 0);
    int k = l.n / 2;
    while (l.e[k].dtype == CS_I64) k++;
    char orig[200];
    snprintf(orig, sizeof orig, "%s", l.e[k].name);
    snprintf(l.e[k].name, sizeof l.e[k].name, "%.180s_renamed", orig);
    snprintf(want, sizeof want, "missing tensor '%s'", orig);
    snprintf(label, sizeof label, "%s_renamed", name);
    expect_error(&l, label, want, cs_net_title(net), 0);
    /* a shape changed */
    snprintf(l.e[k].name, sizeof l.e[k].name, "%s", orig);
    k = l.n / 3;
    while (l.e[k].dtype == CS_I64) k++;
    l.e[k].shape[0] += 1;
    snprintf(want, sizeof want, "tensor '%s' has shape [", l.e[k].name);
    snprintf(label, sizeof label, "%s_reshaped", name);
    expect_error(&l, label, want, ", expected [", 0);
    l.e[k].shape[0] -= 1;
    /* the signature tensor renamed: not recognised at all */
    int s = ft_find(&l, sig);
    CHECK(s >= 0, "%s: no %s", name, sig);
    if (s >= 0) {
        snprintf(l.e[s].name, sizeof l.e[s].name, "%s.old", sig);
        snprintf(label, sizeof label, "%s_nosig", name);
        expect_error(&l, label, "no Stable Cascade network recognised", NULL, 1);
        snprintf(l.e[s].name, sizeof l.e[s].name, "%s", sig);
    }
    /* int64 counters are optional; an extra tensor is ignored and counted */
    for (int i = l.n - 1; i >= 0; i--)
        if (l.e[i].dtype == CS_I64) ft_remove(&l, i);
    int64_t pos[2] = {1, 77};
    ft_add(&l, "text_model.embeddings.position_ids", 2, pos, CS_I64);
    char path[1024];
    snprintf(label, sizeof label, "%s_extra", name);
    if (!write_file(label, &l, NULL, path, sizeof path)) {
        cs_netid ni[2];
        int n = cs_identify_path(path, ni, 2);
        CHECK(n == 1 && ni[0].net == net && ni[0].n_extra == 1, "%s: without counters, with an extra: %d %s", name,
              n, n < 0 ? cs_last_error() : "");
        unlink(path);
    }
    ft_free(&l);
}

static void check_spelling(const manifest *m, cs_net net, const char *name, int naming)
{
    ft_list l = {0};
    char path[1024], label[128];
    ft_append(&l, &m->bf16, "", naming, cs_net_part(net) == CS_PART_STAGE_B);
    snprintf(label, sizeof label, "%s_%s", name, naming == FT_DIFFUSERS ? "diffusers" : "comfy");
    if (!write_file(label, &l, NULL, path, sizeof path)) {
        cs_netid ni[2];
        int n = cs_identify_path(path, ni, 2);
        cs_naming want = naming == FT_DIFFUSERS ? CS_NAMES_DIFFUSERS : CS_NAMES_COMFY;
        CHECK(n == 1 && ni[0].net == net && ni[0].naming == want && ni[0].params == m->params && !ni[0].n_extra,
              "%s: %d %s naming %s", label, n, n < 0 ? cs_last_error() : "", n > 0 ? cs_naming_name(ni[0].naming) : "");
        CHECK(n != 1 || ni[0].n_tensors == l.n, "%s: used %d of %d tensors", label, ni[0].n_tensors, l.n);
        if (n == 1) check_loads(path, &ni[0]);
        unlink(path);
    }
    ft_free(&l);
}

/* ComfyUI combined checkpoints: several networks under prefixes in one file. */
static void check_combined(manifest *ms)
{
    ft_list l = {0};
    char path[1024];
    ft_append(&l, &ms[1].bf16, "model.diffusion_model.", FT_OFFICIAL, 0);   /* stage_c_lite */
    ft_append(&l, &ms[5].f32, "vae.encoder.", FT_OFFICIAL, 0);             /* effnet */
    ft_append(&l, &ms[6].f32, "vae.previewer.", FT_OFFICIAL, 0);           /* previewer */
    ft_append(&l, &ms[7].bf16, "text_encoder.", FT_OFFICIAL, 0);           /* HF CLIP names */
    int64_t two[2] = {3, 3};
    ft_add(&l, "clip_l_vision.vision_model.post_layernorm.weight", 1, two, CS_F32);
    if (!write_file("combined_c", &l, NULL, path, sizeof path)) {
        cs_netid ni[8];
        int n = cs_identify_path(path, ni, 8);
        CHECK(n == 5, "combined C: %d networks (%s)", n, n < 0 ? cs_last_error() : "");
        static const struct { cs_net net; const char *prefix; } want[] = {
            {CS_NET_STAGE_C_LITE, "model.diffusion_model."}, {CS_NET_EFFNET, "vae.encoder."},
            {CS_NET_PREVIEWER, "vae.previewer."}, {CS_NET_TEXT_G, "text_encoder."},
            {CS_NET_CLIP_VISION, "clip_l_vision."},
        };
        for (int w = 0; w < 5 && n == 5; w++) {
            int found = 0;
            for (int i = 0; i < n; i++) found |= ni[i].net == want[w].net && !strcmp(ni[i].prefix, want[w].prefix);
            CHECK(found, "combined C: no %s at '%s'", cs_net_name(want[w].net), want[w].prefix);
        }
        for (int i = 0; i < n && n == 5; i++) check_loads(path, &ni[i]);
        unlink(path);
    }
    ft_free(&l);
    /* Stage B combined, ComfyUI-split Stage B, text encoder under clip_g.transformer. */
    ft_append(&l, &ms[3].bf16, "model.diffusion_model.", FT_COMFY, 1);     /* stage_b_lite */
    ft_append(&l, &ms[4].f32, "vae.", FT_OFFICIAL, 0);                     /* stage_a */
    ft_list t = {0};
    ft_append(&t, &ms[7].bf16, "text_encoder.clip_g.transformer.", FT_OFFICIAL, 0);
    ft_append(&l, &t, "", FT_OFFICIAL, 0);
    if (!write_file("combined_b", &l, NULL, path, sizeof path)) {
        cs_netid ni[8];
        int n = cs_identify_path(path, ni, 8);
        CHECK(n == 3, "combined B: %d networks (%s)", n, n < 0 ? cs_last_error() : "");
        for (int i = 0; i < n && n == 3; i++) {
            if (ni[i].net == CS_NET_STAGE_B_LITE)
                CHECK(!strcmp(ni[i].prefix, "model.diffusion_model.") && ni[i].naming == CS_NAMES_COMFY,
                      "combined B: Stage B at '%s' naming %s", ni[i].prefix, cs_naming_name(ni[i].naming));
            else if (ni[i].net == CS_NET_STAGE_A) CHECK(!strcmp(ni[i].prefix, "vae."), "combined B: Stage A prefix");
            else CHECK(ni[i].net == CS_NET_TEXT_G && !strcmp(ni[i].prefix, "text_encoder.clip_g.transformer.") &&
                       ni[i].params == ms[7].params, "combined B: network %s at '%s'", cs_net_name(ni[i].net),
                       ni[i].prefix);
        }
        for (int i = 0; i < n && n == 3; i++) check_loads(path, &ni[i]);
        unlink(path);
    }
    ft_free(&l);
    /* ComfyUI's own save format moves the projection out of the text model,
     * transposed; the CLIP loader does not read that, so neither do we */
    int k = ft_find(&t, "text_encoder.clip_g.transformer.text_projection.weight");
    CHECK(k >= 0, "no text_projection");
    if (k >= 0) snprintf(t.e[k].name, sizeof t.e[k].name, "text_encoder.clip_g.text_projection");
    expect_error(&t, "clip_g_projection", "missing tensor 'text_encoder.clip_g.transformer.text_projection.weight'",
                 "CLIP-G text encoder", 0);
    ft_free(&t);
}

int main(void)
{
    const char *shared = getenv("SHARED_DIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/spec/manifests", shared ? shared : "../shared");
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        if (check_under_ci()) {
            printf("ERROR: %s is missing (CI needs ../shared beside the checkout)\n", dir);
            return 99;
        }
        printf("SKIP: %s not found (put the shared data beside the checkout)\n", dir);
        return 77;
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/cs_manifests.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        printf("ERROR: cannot create a temporary folder in %s\n", t && *t ? t : "/tmp");
        return 99;
    }
    enum { N = sizeof nets / sizeof *nets };
    manifest ms[N];
    int loaded = 1;
    for (int i = 0; i < N; i++) loaded &= load_manifest(dir, nets[i].manifest, &ms[i]) == 0;
    if (loaded) {
        for (int i = 0; i < N; i++) {
            const char *name = nets[i].manifest;
            check_expected(&ms[i], nets[i].net, name);
            check_recognised(&ms[i], nets[i].net, name, CS_F32);
            check_recognised(&ms[i], nets[i].net, name, CS_BF16);
            if (i == 3 || i == 7) check_recognised(&ms[i], nets[i].net, name, CS_F16);
            check_mismatches(&ms[i], nets[i].net, name, nets[i].signature);
            if (cs_net_part(nets[i].net) <= CS_PART_STAGE_A) check_spelling(&ms[i], nets[i].net, name, FT_DIFFUSERS);
            if (cs_net_part(nets[i].net) <= CS_PART_STAGE_B) check_spelling(&ms[i], nets[i].net, name, FT_COMFY);
            printf("%s: %d tensors, %lld parameters checked\n", name, ms[i].n, (long long)ms[i].params);
        }
        check_combined(ms);
    }
    for (int i = 0; i < N; i++) free_manifest(&ms[i]);
    rmdir(tmpdir);
    if (failures) printf("%d failures\n", failures);
    return check_exit();
}
