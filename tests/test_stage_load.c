/* Stage C / Stage B loading from the real layouts: sparse files built from
 * the spec manifests (all four released variants, F32/BF16/F16, official,
 * diffusers and ComfyUI-prefixed names) must load with the right inferred
 * configuration, variant name and parameter count; broken files (missing,
 * unexpected, mis-shaped tensors, the wrong stage) must fail with one clear
 * message naming the file and the first problems.
 * Exit 77 = skip (shared data missing, unless CI is set: then 99). */
#include "check.h"
#include "error.h"
#include "manifest_st.h"
#include "stage_b.h"
#include "stage_c.h"
#include "unet.h"
#include "weights.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

typedef struct {
    const char *variant;   /* manifest name */
    int stage_b;
    json_t *man;           /* the whole manifest */
    ms_tensor *t;
    int n;
} manifest;

static const char *shared_dir(void)
{
    const char *e = getenv("SHARED_DIR");
    return e ? e : "../shared";
}

static int load_manifest(manifest *m, const char *variant)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/spec/manifests/%s.json", shared_dir(), variant);
    m->variant = variant;
    m->stage_b = !strncmp(variant, "stage_b", 7);
    m->man = json_load_file(p, 0, NULL);
    return m->man && !ms_load(p, &m->t, &m->n) ? 0 : -1;
}

/* loads path as its stage; returns rc and fills info on success */
static int load(const char *path, int stage_b, cs_net_info *info, const cs_unet_opts *opt)
{
    cs_st_file *f;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    if (stage_b) {
        cs_stage_b *m;
        if (!(rc = cs_stage_b_load_opts(f, opt, &m))) cs_stage_b_info(m, info), cs_stage_b_free(m);
    } else {
        cs_stage_c *m;
        if (!(rc = cs_stage_c_load_opts(f, opt, &m))) cs_stage_c_info(m, info), cs_stage_c_free(m);
    }
    cs_st_close(f);
    return rc;
}

static int json_int_at(json_t *a, size_t i) { return (int)json_integer_value(json_array_get(a, i)); }

/* everything the info says against the manifest's constructor */
static void check_info(const manifest *m, const cs_net_info *in, const char *what, int naming_diffusers)
{
    json_t *k = json_object_get(m->man, "constructor");
    json_t *ch = json_object_get(k, "c_hidden"), *bl = json_object_get(k, "blocks"), *br = json_object_get(k, "block_repeat"),
           *lc = json_object_get(k, "level_config"), *tc = json_object_get(k, "t_conds");
    const char *want = strstr(m->variant, "lite") ? "lite" : "full";
    CHECK(!strcmp(in->variant, want), "%s: variant %s, expected %s", what, in->variant, want);
    CHECK(in->nparams == json_integer_value(json_object_get(m->man, "params")), "%s: %lld parameters", what,
          (long long)in->nparams);
    if (!naming_diffusers)
        CHECK(in->ntensors == json_integer_value(json_object_get(m->man, "num_tensors")), "%s: %d tensors", what, in->ntensors);
    CHECK(in->nlevels == (int)json_array_size(ch), "%s: %d levels", what, in->nlevels);
    for (int l = 0; l < in->nlevels && l < (int)json_array_size(ch); l++) {
        CHECK(in->c_hidden[l] == json_int_at(ch, (size_t)l), "%s: level %d width %d", what, l, in->c_hidden[l]);
        CHECK(in->nhead[l] == in->c_hidden[l] / 64, "%s: level %d heads %d", what, l, in->nhead[l]);
        CHECK(in->blocks_down[l] == json_int_at(json_array_get(bl, 0), (size_t)l), "%s: level %d blocks %d", what, l,
              in->blocks_down[l]);
        /* up index u handles level L-1-u: blocks[1][::-1][L-1-u] = blocks[1][u], same for repeats */
        CHECK(in->blocks_up[l] == json_int_at(json_array_get(bl, 1), (size_t)l), "%s: up %d blocks %d", what, l,
              in->blocks_up[l]);
        CHECK(in->repeat_down[l] == json_int_at(json_array_get(br, 0), (size_t)l), "%s: level %d repeat", what, l);
        CHECK(in->repeat_up[l] == json_int_at(json_array_get(br, 1), (size_t)l), "%s: up %d passes %d", what, l,
              in->repeat_up[l]);
        CHECK(!strcmp(in->level_config[l], json_string_value(json_array_get(lc, (size_t)l))), "%s: level %d is %s", what,
              l, in->level_config[l]);
    }
    CHECK(in->c_cond == json_integer_value(json_object_get(k, "c_cond")), "%s: c_cond %d", what, in->c_cond);
    CHECK(in->c_clip_seq == 4 && in->c_r == 64 && in->patch_size == json_integer_value(json_object_get(k, "patch_size")),
          "%s: seq %d c_r %d patch %d", what, in->c_clip_seq, in->c_r, in->patch_size);
    CHECK(in->nconds == (int)json_array_size(tc), "%s: %d t_conds", what, in->nconds);
    for (int i = 0; i < in->nconds && i < (int)json_array_size(tc); i++)
        CHECK(!strcmp(in->t_conds[i], json_string_value(json_array_get(tc, (size_t)i))), "%s: t_cond %d is %s", what, i,
              in->t_conds[i]);
    if (m->stage_b)
        CHECK(in->c_clip_pooled == 1280 && in->c_effnet == 16 && in->c_pixels == 3 && in->c_in == 4 && in->c_out == 4,
              "%s: Stage B widths", what);
    else
        CHECK(in->c_clip_text == 1280 && in->c_clip_pooled == 1280 && in->c_clip_img == 768 && in->c_in == 16 &&
                  in->c_out == 16,
              "%s: Stage C widths", what);
}

static void good(const manifest *m, cs_dtype dt, const char *prefix, int naming)
{
    char path[512], what[256];
    snprintf(path, sizeof path, "%s/%s_%s%s.safetensors", dir, m->variant, cs_dtype_name(dt),
             naming == MS_DIFFUSERS ? "_diffusers" : *prefix ? "_comfy" : "");
    snprintf(what, sizeof what, "%s %s %s%s", m->variant, cs_dtype_name(dt), naming == MS_DIFFUSERS ? "diffusers" : "official",
             *prefix ? " prefixed" : "");
    if (ms_write(path, m->t, m->n, dt, prefix, naming, m->stage_b, 0, 0)) {
        failures++;
        return;
    }
    cs_net_info in;
    int rc = load(path, m->stage_b, &in, NULL);
    CHECK(rc == 0, "%s: load failed: %s", what, cs_last_error());
    if (!rc) {
        check_info(m, &in, what, naming == MS_DIFFUSERS);
        CHECK(in.dtype == (int)dt, "%s: dtype %d", what, in.dtype);
        const char *nm = *prefix ? "comfyui" : naming == MS_DIFFUSERS ? "diffusers" : "official";
        CHECK(!strcmp(in.naming, nm) && !strcmp(in.prefix, prefix), "%s: naming %s prefix '%s'", what, in.naming, in.prefix);
        printf("ok   %-40s %s, %lld parameters\n", what, in.variant, (long long)in.nparams);
    }
    /* the other stage's loader must refuse it, naming the stage it looks like */
    rc = load(path, !m->stage_b, &in, NULL);
    CHECK(rc == CS_EMODEL && strstr(cs_last_error(), m->stage_b ? "not a Stage C checkpoint" : "not a Stage B checkpoint") &&
              strstr(cs_last_error(), m->stage_b ? "looks like a Stage B" : "looks like a Stage C"),
          "%s as the other stage: rc %d, '%s'", what, rc, cs_last_error());
    unlink(path);
}

/* a broken copy of m: edit() changes the list; expect every string in want[] */
static void bad(const manifest *m, const char *what, void (*edit)(ms_tensor *t, int *n), const char *const *want)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s_bf16.safetensors", dir, m->variant);
    ms_tensor *t = malloc(((size_t)m->n + 4) * sizeof *t);
    if (!t) return;
    memcpy(t, m->t, (size_t)m->n * sizeof *t);
    int n = m->n;
    edit(t, &n);
    int wr = ms_write(path, t, n, CS_BF16, "", MS_OFFICIAL, m->stage_b, 0, 0);
    free(t);
    if (wr) {
        failures++;
        return;
    }
    cs_net_info in;
    int rc = load(path, m->stage_b, &in, NULL);
    const char *e = cs_last_error();
    int ok = rc == CS_EMODEL && !strchr(e, '\n');
    for (int i = 0; want[i]; i++) ok = ok && strstr(e, want[i]);
    CHECK(ok, "%s: rc %d, message '%s'", what, rc, e);
    if (ok) printf("ok   %-40s %s\n", what, e);
    unlink(path);
}

static int find(const ms_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return i;
    return -1;
}

static void drop(ms_tensor *t, int *n, const char *name)
{
    int i = find(t, *n, name);
    if (i < 0) return;
    memmove(t + i, t + i + 1, (size_t)(*n - i - 1) * sizeof *t);
    (*n)--;
}

static void e_no_effnet(ms_tensor *t, int *n) { drop(t, n, "effnet_mapper.0.weight"); }
static void e_no_gamma(ms_tensor *t, int *n) { drop(t, n, "up_blocks.1.6.channelwise.2.gamma"); }
static void e_extra(ms_tensor *t, int *n)
{
    t[*n] = t[0];
    snprintf(t[*n].name, sizeof t[*n].name, "foo.bar");
    (*n)++;
}
static void e_shape(ms_tensor *t, int *n)
{
    int i = find(t, *n, "down_blocks.2.2.kv_mapper.1.weight");
    if (i >= 0) t[i].shape[1] = 1024;
}
static void e_many(ms_tensor *t, int *n)
{
    static const char *const gone[] = {"clf.1.bias", "down_blocks.0.0.depthwise.bias", "down_blocks.0.1.mapper_sca.bias",
                                       "down_blocks.2.2.attention.attn.out_proj.weight", "up_blocks.3.0.channelwise.4.bias",
                                       "up_repeat_mappers.2.0.bias"};
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) drop(t, n, gone[i]);
}
static void e_c_no_img(ms_tensor *t, int *n) { drop(t, n, "clip_img_mapper.weight"); }

static void overrides(const manifest *m)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s_opts.safetensors", dir, m->variant);
    if (ms_write(path, m->t, m->n, CS_BF16, "", MS_OFFICIAL, 0, 0, 0)) {
        failures++;
        return;
    }
    cs_unet_opts o;
    cs_net_info in;
    memset(&o, 0, sizeof o);
    CHECK(!cs_unet_opts_from_json(&o, "{\"nhead\": [12, -1], \"t_conds\": [\"crp\", \"sca\"]}", "test"), "opts json");
    int rc = load(path, 0, &in, &o);
    CHECK(!rc && in.nhead[0] == 12 && in.nhead[1] == 24 && !strcmp(in.t_conds[0], "crp") && !strcmp(in.t_conds[1], "sca"),
          "overrides: rc %d heads %d %d conds %s %s", rc, in.nhead[0], in.nhead[1], in.t_conds[0], in.t_conds[1]);
    /* a t_conds list naming a mapper the file lacks is a load error */
    CHECK(!cs_unet_opts_from_json(&o, "{\"t_conds\": [\"sca\", \"xyz\"]}", "test"), "opts json 2");
    rc = load(path, 0, &in, &o);
    CHECK(rc == CS_EMODEL && strstr(cs_last_error(), "missing down_blocks.0.1.mapper_xyz.weight"), "bad t_conds: %s",
          cs_last_error());
    CHECK(cs_unet_opts_from_json(&o, "{\"nhead\": \"x\"}", "test") == CS_EFORMAT, "opts json type error");
    unlink(path);
    if (!failures) printf("ok   overrides (nhead, t_conds)\n");
}

/* A file that is no U-Net: cs_unet_bind records the problem in the map and
 * answers CS_EMODEL, a real error code (it once returned -1, which is
 * CS_EIO), and the load names the file. Needs no shared data. */
static void bind_codes(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/cs_unet_bind_%d.safetensors", tmp ? tmp : "/tmp", (int)getpid());
    float one = 1;
    cs_tensor t = {.dtype = CS_F32, .ndim = 1, .shape = {1}, .data = &one, .name = "not_a_unet.weight"};
    if (cs_st_write(path, &t, 1, NULL, 0)) {
        CHECK(0, "writing %s: %s", path, cs_last_error());
        return;
    }
    cs_st_file *f = NULL;
    cs_wmap m;
    int ok = !cs_st_open(path, &f) && !cs_wmap_init(&m, f, "");
    CHECK(ok, "opening %s: %s", path, cs_last_error());
    if (ok) {
        cs_unet u;
        int rc = cs_unet_bind(&u, &m, 1280, NULL);
        CHECK(rc == CS_EMODEL && m.nprob > 0, "cs_unet_bind on a non-U-Net: %d (want CS_EMODEL %d), %d problems", rc,
              CS_EMODEL, m.nprob);
        cs_unet_free(&u);
        rc = cs_wmap_finish(&m, "Stage C");
        CHECK(rc == CS_EMODEL && strstr(cs_last_error(), "not a Stage C checkpoint"), "finish: %d %s", rc,
              cs_last_error());
        cs_wmap_free(&m);
    }
    cs_st_close(f);
    unlink(path);
}

int main(void)
{
    bind_codes();
    char p[1024];
    snprintf(p, sizeof p, "%s/spec/manifests", shared_dir());
    if (access(p, R_OK)) {
        if (failures) return 1;
        printf("SKIP: %s not found\n", p);
        return check_under_ci() ? 99 : 77;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cs_stage_load_XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 99;
    manifest c, cl, b, bl;
    if (load_manifest(&c, "stage_c") || load_manifest(&cl, "stage_c_lite") || load_manifest(&b, "stage_b") ||
        load_manifest(&bl, "stage_b_lite"))
        return 99;
    good(&c, CS_F32, "", MS_OFFICIAL);
    good(&c, CS_BF16, "", MS_DIFFUSERS);
    good(&cl, CS_BF16, "", MS_OFFICIAL);
    good(&cl, CS_BF16, "model.diffusion_model.", MS_OFFICIAL);
    good(&b, CS_BF16, "", MS_OFFICIAL);
    good(&b, CS_F32, "", MS_DIFFUSERS);
    good(&bl, CS_BF16, "", MS_OFFICIAL);
    good(&bl, CS_F16, "", MS_DIFFUSERS);

    bad(&bl, "stage_b_lite: no effnet_mapper.0.weight", e_no_effnet,
        (const char *[]){"stage_b_lite_bf16.safetensors: not a Stage B checkpoint: missing effnet_mapper.0.weight", NULL});
    bad(&bl, "stage_b_lite: no GRN gamma", e_no_gamma,
        (const char *[]){"not a Stage B checkpoint: missing up_blocks.1.6.channelwise.2.gamma", NULL});
    bad(&bl, "stage_b_lite: extra tensor", e_extra, (const char *[]){"not a Stage B checkpoint: unexpected foo.bar", NULL});
    bad(&bl, "stage_b_lite: wrong shape", e_shape,
        (const char *[]){"down_blocks.2.2.kv_mapper.1.weight: shape [1152,1024], expected [1152,1280]", NULL});
    bad(&bl, "stage_b_lite: six tensors missing", e_many,
        (const char *[]){"missing clf.1.bias", "missing down_blocks.0.0.depthwise.bias", "(+2 more problems)", NULL});
    bad(&cl, "stage_c_lite: no clip_img_mapper", e_c_no_img,
        (const char *[]){"stage_c_lite_bf16.safetensors: not a Stage C checkpoint", "clip_img_mapper.weight", NULL});
    overrides(&cl);

    manifest *all[] = {&c, &cl, &b, &bl};
    for (int i = 0; i < 4; i++) free(all[i]->t), json_decref(all[i]->man);
    rmdir(dir);
    return check_exit();
}
