/* Finding, choosing and hashing model files, on trees of header-only sparse
 * files built from the expected tensor lists: flat folders, Hugging Face
 * snapshots (hub cache with symlinked blobs), diffusers folders, ComfyUI
 * trees, root precedence, overrides, broken and foreign files; the memory
 * estimates against the spec's byte counts; the variant choice at exact
 * memory thresholds; the xxh64 cache.
 * Also a tool for tests/cli_models.sh: test_models --make-tree DIR LAYOUT. */
#include "check.h"
#include "error.h"
#include "fake_st.h"
#include "models.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <xxhash.h>

#define GiB (1024.0 * 1024.0 * 1024.0)

static char tmp[512];

static void mkdirs(const char *path)
{
    char p[1024];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static void put_net(const char *dir, const char *name, cs_net net, cs_dtype dt, int naming)
{
    char p[1024];
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (ft_write_net(p, net, dt, naming)) CHECK(0, "cannot write %s: %s", p, strerror(errno));
}

static void put_text(const char *dir, const char *name, const char *text)
{
    char p[1024];
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static const struct { const char *file; cs_net net; cs_dtype dt; } official[] = {
    {"stage_c.safetensors", CS_NET_STAGE_C, CS_F32}, {"stage_c_bf16.safetensors", CS_NET_STAGE_C, CS_BF16},
    {"stage_c_lite.safetensors", CS_NET_STAGE_C_LITE, CS_F32},
    {"stage_c_lite_bf16.safetensors", CS_NET_STAGE_C_LITE, CS_BF16},
    {"stage_b.safetensors", CS_NET_STAGE_B, CS_F32}, {"stage_b_bf16.safetensors", CS_NET_STAGE_B, CS_BF16},
    {"stage_b_lite.safetensors", CS_NET_STAGE_B_LITE, CS_F32},
    {"stage_b_lite_bf16.safetensors", CS_NET_STAGE_B_LITE, CS_BF16},
    {"stage_a.safetensors", CS_NET_STAGE_A, CS_F32}, {"effnet_encoder.safetensors", CS_NET_EFFNET, CS_F32},
    {"previewer.safetensors", CS_NET_PREVIEWER, CS_F32},
};

static void tokenizer_files(const char *dir)
{
    put_text(dir, "vocab.json", "{}\n");
    put_text(dir, "merges.txt", "#version: 0.2\n");
}

/* Layouts for the CLI test and for these tests. */
static int make_tree(const char *root, const char *layout)
{
    char d[1200];
    if (!strcmp(layout, "flat") || !strcmp(layout, "flat-min")) {
        int all = !strcmp(layout, "flat");
        for (size_t i = 0; i < sizeof official / sizeof *official; i++)
            if (all || official[i].dt == CS_BF16 || official[i].net == CS_NET_STAGE_A)
                put_net(root, official[i].file, official[i].net, official[i].dt, FT_OFFICIAL);
        snprintf(d, sizeof d, "%s/text_encoder", root);
        put_net(d, "model.safetensors", CS_NET_TEXT_G, CS_BF16, FT_OFFICIAL);
        put_text(d, "config.json", "{\"hidden_size\": 1280}\n");
        snprintf(d, sizeof d, "%s/tokenizer", root);
        tokenizer_files(d);
    } else if (!strcmp(layout, "small")) {   /* the small networks only, for hashing */
        put_net(root, "stage_a.safetensors", CS_NET_STAGE_A, CS_F32, FT_OFFICIAL);
        put_net(root, "previewer.safetensors", CS_NET_PREVIEWER, CS_F32, FT_OFFICIAL);
    } else if (!strcmp(layout, "comfyui")) {
        snprintf(d, sizeof d, "%s/models/unet/cascade", root);
        put_net(d, "stage_c_lite_bf16.safetensors", CS_NET_STAGE_C_LITE, CS_BF16, FT_OFFICIAL);
        put_net(d, "stage_b_lite_bf16.safetensors", CS_NET_STAGE_B_LITE, CS_BF16, FT_OFFICIAL);
        snprintf(d, sizeof d, "%s/models/vae", root);
        put_net(d, "stage_a.safetensors", CS_NET_STAGE_A, CS_F32, FT_OFFICIAL);
        put_net(d, "previewer.safetensors", CS_NET_PREVIEWER, CS_F32, FT_OFFICIAL);
        snprintf(d, sizeof d, "%s/models/clip", root);
        put_net(d, "cascade_clip_g.safetensors", CS_NET_TEXT_G, CS_BF16, FT_OFFICIAL);
        ft_list l = {0};
        int64_t s[2] = {320, 4};
        ft_add(&l, "model.diffusion_model.input_blocks.0.0.weight", 2, s, CS_F16);
        snprintf(d, sizeof d, "%s/models/checkpoints", root);
        mkdirs(d);
        strcat(d, "/sdxl.safetensors");   /* another model: listed as foreign */
        if (ft_write(d, &l, NULL)) CHECK(0, "cannot write %s", d);
        ft_free(&l);
    } else if (!strcmp(layout, "diffusers")) {
        snprintf(d, sizeof d, "%s/prior", root);
        put_net(d, "diffusion_pytorch_model.bf16.safetensors", CS_NET_STAGE_C, CS_BF16, FT_DIFFUSERS);
        snprintf(d, sizeof d, "%s/decoder_lite", root);
        put_net(d, "diffusion_pytorch_model.safetensors", CS_NET_STAGE_B_LITE, CS_F32, FT_DIFFUSERS);
        snprintf(d, sizeof d, "%s/vqgan", root);
        put_net(d, "diffusion_pytorch_model.safetensors", CS_NET_STAGE_A, CS_F32, FT_DIFFUSERS);
        snprintf(d, sizeof d, "%s/text_encoder", root);
        put_net(d, "model.safetensors", CS_NET_TEXT_G, CS_F32, FT_OFFICIAL);
        snprintf(d, sizeof d, "%s/tokenizer", root);
        tokenizer_files(d);
    } else if (!strcmp(layout, "hfcache")) {   /* <cache>/models--stabilityai--stable-cascade/{blobs,snapshots} */
        static const struct { const char *name, *blob; cs_net net; cs_dtype dt; } f[] = {
            {"stage_c_lite_bf16.safetensors", "b1", CS_NET_STAGE_C_LITE, CS_BF16},
            {"stage_b_lite_bf16.safetensors", "b2", CS_NET_STAGE_B_LITE, CS_BF16},
            {"stage_a.safetensors", "b3", CS_NET_STAGE_A, CS_F32},
            {"text_encoder/model.safetensors", "b4", CS_NET_TEXT_G, CS_BF16},
        };
        char repo[1024], snap[1100], blobs[1100], blob[1200], link[1200];
        snprintf(repo, sizeof repo, "%s/models--stabilityai--stable-cascade", root);
        snprintf(blobs, sizeof blobs, "%s/blobs", repo);
        for (int i = 0; i < 4; i++) put_net(blobs, f[i].blob, f[i].net, f[i].dt, FT_OFFICIAL);
        for (int rev = 0; rev < 2; rev++) {   /* two revisions sharing the blobs */
            snprintf(snap, sizeof snap, "%s/snapshots/%s", repo, rev ? "bbbb" : "aaaa");
            snprintf(d, sizeof d, "%s/text_encoder", snap);
            mkdirs(d);
            snprintf(d, sizeof d, "%s/tokenizer", snap);
            tokenizer_files(d);
            for (int i = 0; i < 4; i++) {
                snprintf(blob, sizeof blob, "%s/%s", blobs, f[i].blob);
                snprintf(link, sizeof link, "%s/%s", snap, f[i].name);
                if (symlink(blob, link)) CHECK(0, "symlink %s: %s", link, strerror(errno));
            }
        }
    } else {
        fprintf(stderr, "unknown layout '%s'\n", layout);
        return 2;
    }
    return 0;
}

static int count_part(const cs_model_set *s, cs_part p, int include_bad)
{
    int n = 0;
    for (int i = 0; i < s->n; i++) n += (include_bad || !s->files[i].problem) && cs_net_part(s->files[i].info.net) == p;
    return n;
}

static const cs_model_file *pick(const cs_model_set *s, const cs_choice *c, cs_part p)
{
    return c->file[p] >= 0 ? &s->files[c->file[p]] : NULL;
}

static cs_model_set *scan1(const char *root)
{
    cs_model_set *s = NULL;
    const char *roots[1] = {root};
    CHECK(cs_models_scan_roots(roots, NULL, 1, &s) == 0, "scan %s: %s", root, cs_last_error());
    return s;
}

/* need of the file of part p with the given variant class */
static uint64_t need_of(const cs_model_set *s, cs_part p, cs_variant v, const cs_choice_req *r)
{
    for (int i = 0; i < s->n; i++)
        if (!s->files[i].problem && cs_net_part(s->files[i].info.net) == p && cs_variant_of(&s->files[i].info) == v) {
            cs_mem_need nd;
            cs_mem_need_of(&s->files[i].info, r->width, r->height, r->batch, &nd);
            return nd.total;
        }
    return 0;
}

static void test_flat_and_choice(void)
{
    char root[600];
    snprintf(root, sizeof root, "%s/flat", tmp);
    make_tree(root, "flat");
    cs_model_set *s = scan1(root);
    if (!s) return;
    CHECK(s->n == 12, "flat: %d files", s->n);
    CHECK(count_part(s, CS_PART_STAGE_C, 1) == 4 && count_part(s, CS_PART_STAGE_B, 1) == 4, "flat: C/B counts");
    CHECK(s->tokenizer && strstr(s->tokenizer, "/flat/tokenizer"), "flat: tokenizer %s", s->tokenizer ? s->tokenizer : "-");
    for (int i = 0; i < s->n; i++) {
        CHECK(!s->files[i].problem, "flat: %s", s->files[i].problem);
        if (s->files[i].info.net == CS_NET_TEXT_G)
            CHECK(s->files[i].config && strstr(s->files[i].config, "text_encoder/config.json"), "flat: text config");
    }
    cs_choice_req r;
    cs_choice_req_init(&r);
    cs_choice c;
    /* plenty of memory: the best of everything */
    r.have = (uint64_t)(1024 * GiB);
    CHECK(cs_models_choose(s, &r, &c) == 0, "choose: %s", cs_last_error());
    CHECK(pick(s, &c, CS_PART_STAGE_C)->info.net == CS_NET_STAGE_C && pick(s, &c, CS_PART_STAGE_C)->info.dtype == CS_F32,
          "1 TiB: Stage C %s", pick(s, &c, CS_PART_STAGE_C)->path);
    CHECK(cs_variant_of(&pick(s, &c, CS_PART_STAGE_B)->info) == CS_VAR_FULL, "1 TiB: Stage B");
    CHECK(c.fits && c.need_part == CS_PART_STAGE_C, "1 TiB: fits %d, need part %d", c.fits, c.need_part);
    uint64_t mx = 0;
    for (int p = 0; p < CS_PART_COUNT; p++) mx = c.need[p].total > mx ? c.need[p].total : mx;
    CHECK(c.need_max == mx, "need is the max over stages");
    CHECK(pick(s, &c, CS_PART_EFFNET) && pick(s, &c, CS_PART_PREVIEWER), "optional parts picked when present");
    /* exact thresholds: need + margin == have fits, one byte less does not */
    uint64_t full = need_of(s, CS_PART_STAGE_C, CS_VAR_FULL, &r), bf16 = need_of(s, CS_PART_STAGE_C, CS_VAR_BF16, &r);
    uint64_t lite = need_of(s, CS_PART_STAGE_C, CS_VAR_LITE, &r);
    CHECK(full > bf16 && bf16 > lite && lite > 0, "needs: full %llu bf16 %llu lite %llu", (unsigned long long)full,
          (unsigned long long)bf16, (unsigned long long)lite);
    /* have h with h - max(h/10, 256M) == full: h = full * 10/9 rounded up */
    uint64_t h = (full * 10 + 8) / 9;
    while (h - cs_mem_margin(h) < full) h++;
    while (h - 1 - cs_mem_margin(h - 1) >= full) h--;
    r.have = h;
    CHECK(cs_models_choose(s, &r, &c) == 0 && cs_variant_of(&pick(s, &c, CS_PART_STAGE_C)->info) == CS_VAR_FULL,
          "at the threshold: full");
    r.have = h - 1;
    CHECK(cs_models_choose(s, &r, &c) == 0 && cs_variant_of(&pick(s, &c, CS_PART_STAGE_C)->info) == CS_VAR_BF16,
          "one byte under: bf16 (%s)", c.why[CS_PART_STAGE_C]);
    CHECK(strstr(c.why[CS_PART_STAGE_C], "Stage C F32 needs"), "why names the skipped variant: %s",
          c.why[CS_PART_STAGE_C]);
    /* nothing fits: the smallest, flagged */
    r.have = (uint64_t)(1 * GiB);
    CHECK(cs_models_choose(s, &r, &c) == 0, "1 GiB: %s", cs_last_error());
    CHECK(cs_variant_of(&pick(s, &c, CS_PART_STAGE_C)->info) == CS_VAR_LITE_BF16 && !c.fits &&
          strstr(c.why[CS_PART_STAGE_C], "nothing present fits"), "1 GiB: %s", c.why[CS_PART_STAGE_C]);
    /* explicit variants, per stage */
    r.have = (uint64_t)(1024 * GiB);
    r.variant[CS_PART_STAGE_C] = CS_VAR_LITE;
    r.variant[CS_PART_STAGE_B] = CS_VAR_BF16;
    CHECK(cs_models_choose(s, &r, &c) == 0, "explicit: %s", cs_last_error());
    CHECK(cs_variant_of(&pick(s, &c, CS_PART_STAGE_C)->info) == CS_VAR_LITE &&
          cs_variant_of(&pick(s, &c, CS_PART_STAGE_B)->info) == CS_VAR_BF16, "explicit lite / bf16");
    /* bigger images and batches need more */
    cs_choice_req r2 = r;
    r2.width = r2.height = 2048;
    r2.batch = 2;
    CHECK(need_of(s, CS_PART_STAGE_B, CS_VAR_FULL, &r2) > need_of(s, CS_PART_STAGE_B, CS_VAR_FULL, &r) &&
          need_of(s, CS_PART_STAGE_A, CS_VAR_FULL, &r2) > need_of(s, CS_PART_STAGE_A, CS_VAR_FULL, &r),
          "size/batch raise the need");
    cs_models_free(s);

    /* an explicit variant that is absent names what is present */
    snprintf(root, sizeof root, "%s/flatmin", tmp);
    make_tree(root, "flat-min");
    s = scan1(root);
    if (!s) return;
    CHECK(s->n == 6, "flat-min: %d files", s->n);
    cs_choice_req_init(&r);
    r.have = (uint64_t)(1024 * GiB);
    r.variant[CS_PART_STAGE_C] = CS_VAR_FULL;
    int rc = cs_models_choose(s, &r, &c);
    CHECK(rc == CS_EMODEL && strstr(cs_last_error(), "no Stage C file of variant 'full' (present: bf16, lite-bf16"),
          "absent variant: %d %s", rc, cs_last_error());
    /* auto without the optional parts: they are not required */
    cs_choice_req_init(&r);
    r.have = (uint64_t)(1024 * GiB);
    CHECK(cs_models_choose(s, &r, &c) == 0 && c.file[CS_PART_EFFNET] < 0, "optional parts: %s", cs_last_error());
    r.want_previewer = 1;
    rc = cs_models_choose(s, &r, &c);
    CHECK(rc == CS_EMODEL && strstr(cs_last_error(), "no Previewer found (looked in: ") &&
          strstr(cs_last_error(), "/flatmin"), "wanted previewer: %s", cs_last_error());
    /* forcing a file for a part */
    char p[1200];
    snprintf(p, sizeof p, "%s/stage_b_bf16.safetensors", root);
    rc = cs_models_force(s, CS_PART_STAGE_C, p);
    CHECK(rc == CS_EMODEL && strstr(cs_last_error(), "holds Stage B, not a Stage C"), "force wrong part: %s",
          cs_last_error());
    snprintf(p, sizeof p, "%s/flat/stage_c_lite.safetensors", tmp);
    CHECK(cs_models_force(s, CS_PART_STAGE_C, p) == 0, "force: %s", cs_last_error());
    cs_choice_req_init(&r);
    r.have = (uint64_t)(1024 * GiB);
    CHECK(cs_models_choose(s, &r, &c) == 0 && !strcmp(pick(s, &c, CS_PART_STAGE_C)->path, p) &&
          !strcmp(c.why[CS_PART_STAGE_C], "given on the command line"), "forced Stage C used");
    cs_models_free(s);
}

static void test_layouts(void)
{
    char root[600], root2[600];
    cs_choice_req r;
    cs_choice c;
    cs_choice_req_init(&r);
    r.have = (uint64_t)(1024 * GiB);

    /* ComfyUI: from the ComfyUI root and from its models/ folder */
    snprintf(root, sizeof root, "%s/ComfyUI", tmp);
    make_tree(root, "comfyui");
    for (int k = 0; k < 2; k++) {
        snprintf(root2, sizeof root2, k ? "%s/models" : "%s", root);
        cs_model_set *s = scan1(root2);
        if (!s) continue;
        int foreign = 0;
        for (int i = 0; i < s->n; i++) foreign += s->files[i].foreign;
        CHECK(s->n == 6 && foreign == 1, "comfyui %d: %d files, %d foreign", k, s->n, foreign);
        CHECK(cs_models_choose(s, &r, &c) == 0, "comfyui: %s", cs_last_error());
        CHECK(strstr(pick(s, &c, CS_PART_STAGE_C)->path, "/unet/cascade/") &&
              strstr(pick(s, &c, CS_PART_TEXT)->path, "/clip/cascade_clip_g"), "comfyui picks");
        CHECK(!s->tokenizer, "comfyui: ComfyUI trees have no tokenizer folder");
        cs_models_free(s);
    }

    /* diffusers folders */
    snprintf(root, sizeof root, "%s/diffusers", tmp);
    make_tree(root, "diffusers");
    cs_model_set *s = scan1(root);
    if (s) {
        CHECK(s->n == 4, "diffusers: %d files", s->n);
        CHECK(cs_models_choose(s, &r, &c) == 0, "diffusers: %s", cs_last_error());
        CHECK(pick(s, &c, CS_PART_STAGE_C)->info.naming == CS_NAMES_DIFFUSERS &&
              pick(s, &c, CS_PART_STAGE_A)->info.naming == CS_NAMES_DIFFUSERS, "diffusers naming");
        CHECK(pick(s, &c, CS_PART_STAGE_B)->info.net == CS_NET_STAGE_B_LITE, "diffusers decoder_lite");
        cs_models_free(s);
    }

    /* Hugging Face hub cache: the cache folder, the repo folder, or one snapshot */
    snprintf(root, sizeof root, "%s/hub", tmp);
    make_tree(root, "hfcache");
    const char *sub[] = {"", "/models--stabilityai--stable-cascade", "/models--stabilityai--stable-cascade/snapshots/aaaa"};
    for (int k = 0; k < 3; k++) {
        snprintf(root2, sizeof root2, "%s%s", root, sub[k]);
        s = scan1(root2);
        if (!s) continue;
        CHECK(s->n == 4, "hub %d: %d files (blobs linked from two snapshots count once)", k, s->n);
        CHECK(s->tokenizer != NULL, "hub %d: tokenizer", k);
        CHECK(cs_models_choose(s, &r, &c) == 0, "hub %d: %s", k, cs_last_error());
        cs_models_free(s);
    }

    /* root precedence: a part comes from the first root that has one */
    snprintf(root, sizeof root, "%s/first", tmp);
    put_net(root, "my_stage_c.safetensors", CS_NET_STAGE_C_LITE, CS_BF16, FT_OFFICIAL);
    snprintf(root2, sizeof root2, "%s/flat", tmp);
    const char *roots[2] = {root, root2}, *why[2] = {"--models", "default"};
    CHECK(cs_models_scan_roots(roots, why, 2, &s) == 0, "two roots: %s", cs_last_error());
    if (s) {
        CHECK(cs_models_choose(s, &r, &c) == 0, "two roots: %s", cs_last_error());
        CHECK(pick(s, &c, CS_PART_STAGE_C)->root == 0 && pick(s, &c, CS_PART_STAGE_C)->info.net == CS_NET_STAGE_C_LITE,
              "Stage C from the first root even though the second has better");
        CHECK(pick(s, &c, CS_PART_STAGE_B)->root == 1 && pick(s, &c, CS_PART_STAGE_B)->info.net == CS_NET_STAGE_B,
              "Stage B from the second root");
        cs_models_free(s);
    }

    /* broken and foreign files; a missing part lists where it looked */
    snprintf(root, sizeof root, "%s/broken", tmp);
    put_net(root, "stage_a.safetensors", CS_NET_STAGE_A, CS_F32, FT_OFFICIAL);
    put_text(root, "stage_c.safetensors", "not a safetensors file at all, just text\n");
    s = scan1(root);
    if (s) {
        CHECK(s->n == 2, "broken: %d files", s->n);
        int bad = -1;
        for (int i = 0; i < s->n; i++)
            if (s->files[i].problem) bad = i;
        CHECK(bad >= 0 && !s->files[bad].foreign && strstr(s->files[bad].problem, "stage_c.safetensors"),
              "broken file reported");
        int rc = cs_models_choose(s, &r, &c);
        CHECK(rc == CS_EMODEL && strstr(cs_last_error(), "no Stage C found (looked in: ") &&
              strstr(cs_last_error(), "/broken"), "missing Stage C: %s", cs_last_error());
        cs_models_free(s);
    }
    snprintf(root, sizeof root, "%s/does/not/exist", tmp);
    s = scan1(root);
    if (s) {
        CHECK(s->n_looked == 1 && strstr(s->looked[0], "(does not exist)"), "nonexistent root noted");
        cs_models_free(s);
    }
}

static void test_memory(void)
{
    /* weights of the official files: the data bytes of stabilityai/stable-cascade's files */
    static const struct { cs_net net; cs_dtype dt; uint64_t bytes; } w[] = {
        {CS_NET_STAGE_C, CS_F32, 14356414528ull}, {CS_NET_STAGE_C, CS_BF16, 7178207264ull},
        {CS_NET_STAGE_C_LITE, CS_F32, 4123140160ull}, {CS_NET_STAGE_C_LITE, CS_BF16, 2061570080ull},
        {CS_NET_STAGE_B, CS_F32, 6251764544ull}, {CS_NET_STAGE_B, CS_BF16, 3125882272ull},
        {CS_NET_STAGE_B_LITE, CS_F32, 2797884992ull}, {CS_NET_STAGE_B_LITE, CS_BF16, 1398942496ull},
        {CS_NET_STAGE_A, CS_F32, 73627616ull}, {CS_NET_EFFNET, CS_F32, 81408376ull},
        {CS_NET_PREVIEWER, CS_F32, 15935052ull},
    };
    for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
        cs_netid ni;
        cs_mem_need nd;
        cs_netid_nominal(w[i].net, w[i].dt, &ni);
        CHECK(ni.weight_bytes == w[i].bytes, "%s %s: %llu bytes, spec says %llu", cs_net_name(w[i].net),
              cs_dtype_name(w[i].dt), (unsigned long long)ni.weight_bytes, (unsigned long long)w[i].bytes);
        cs_mem_need_of(&ni, 1024, 1024, 1, &nd);
        CHECK(nd.total == nd.weights + nd.scratch + nd.acts && nd.weights == w[i].bytes, "need adds up");
        CHECK((w[i].dt == CS_F32) == (nd.scratch == 0), "scratch only for 16-bit weights");
    }
    cs_choice_req r;
    cs_choice_req_init(&r);
    uint64_t need_full, need_small;
    CHECK(cs_models_recommend(&r, (uint64_t)(1024 * GiB), &need_full) == CS_VAR_FULL, "recommend with 1 TiB");
    CHECK(cs_models_recommend(&r, (uint64_t)(1 * GiB), &need_small) == CS_VAR_LITE_BF16, "recommend with 1 GiB");
    CHECK(need_full > need_small, "recommend needs");
    cs_variant last = CS_VAR_FULL;
    for (double g = 64; g >= 1; g -= 0.25) {   /* less memory never gives a bigger variant */
        cs_variant v = cs_models_recommend(&r, (uint64_t)(g * GiB), NULL);
        CHECK(v >= last, "recommend not monotonic at %.2f GiB", g);
        last = v;
    }
    uint64_t have;
    char src[200];
    setenv("CASCADE_MEMORY", "3G", 1);
    CHECK(cs_mem_available(&have, src, sizeof src) == 0 && have == 3ull << 30 && strstr(src, "CASCADE_MEMORY"),
          "CASCADE_MEMORY=3G: %llu %s", (unsigned long long)have, src);
    setenv("CASCADE_MEMORY", "1.5GiB", 1);
    CHECK(cs_mem_available(&have, src, sizeof src) == 0 && have == 3ull << 29, "1.5GiB");
    setenv("CASCADE_MEMORY", "lots", 1);
    CHECK(cs_mem_available(&have, src, sizeof src) == CS_EARG && strstr(cs_last_error(), "CASCADE_MEMORY='lots'"),
          "bad CASCADE_MEMORY: %s", cs_last_error());
    unsetenv("CASCADE_MEMORY");
    CHECK(cs_mem_available(&have, src, sizeof src) == 0 && have > (16u << 20), "measured: %llu (%s) %s",
          (unsigned long long)have, src, cs_last_error());
    printf("memory here: %.1f GiB (%s)\n", have / GiB, src);
}

static void test_hash(void)
{
    char cache[600], file[600], line[1200];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    setenv("XDG_CACHE_HOME", cache, 1);
    snprintf(file, sizeof file, "%s/blob.bin", tmp);
    size_t n = (8u << 20) + 12345;   /* more than one 8 MiB read */
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 2654435761u >> 13);
    FILE *f = fopen(file, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    uint64_t want = XXH64(buf, n, 0), got = 0;
    int cached = -1;
    CHECK(cs_file_xxh64(file, &got, &cached) == 0 && got == want && cached == 0, "first hash %llx vs %llx, cached %d",
          (unsigned long long)got, (unsigned long long)want, cached);
    CHECK(cs_file_xxh64(file, &got, &cached) == 0 && got == want && cached == 1, "second hash from the cache");
    snprintf(line, sizeof line, "%s/cascade/hashes", cache);
    f = fopen(line, "r");
    CHECK(f != NULL, "no cache file at %s", line);
    if (f) {
        char l[1200] = "";
        CHECK(fgets(l, sizeof l, f) && strstr(l, "/blob.bin\n"), "cache line: %s", l);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)want);
        CHECK(!strncmp(l, hex, 16), "cache line starts with the hash: %s", l);
        fclose(f);
    }
    /* same size, new content and mtime: hashed again */
    buf[7] ^= 1;
    f = fopen(file, "r+b");
    fwrite(buf, 1, n, f);
    fclose(f);
    struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
    utimes(file, tv);
    CHECK(cs_file_xxh64(file, &got, &cached) == 0 && got == XXH64(buf, n, 0) && cached == 0, "changed file rehashed");
    /* a damaged cache is ignored, then rewritten */
    f = fopen(line, "w");
    fputs("garbage without a newline", f);
    fclose(f);
    CHECK(cs_file_xxh64(file, &got, &cached) == 0 && got == XXH64(buf, n, 0) && cached == 0, "damaged cache");
    CHECK(cs_file_xxh64(file, &got, &cached) == 0 && cached == 1, "cache rewritten");
    CHECK(cs_file_xxh64("/nonexistent/file", &got, &cached) == CS_EIO, "missing file");
    free(buf);
    unsetenv("XDG_CACHE_HOME");
}

static int rm_rf(const char *p)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    return system(cmd);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--make-tree")) return make_tree(argv[2], argv[3]) || failures ? 1 : 0;
    if (argc > 1) {
        fprintf(stderr, "usage: test_models [--make-tree DIR flat|flat-min|small|comfyui|diffusers|hfcache]\n");
        return 2;
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/cs_models.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp)) {
        printf("ERROR: cannot create a temporary folder\n");
        return 99;
    }
    test_flat_and_choice();
    test_layouts();
    test_memory();
    test_hash();
    rm_rf(tmp);
    if (failures) printf("%d failures\n", failures);
    return check_exit();
}
