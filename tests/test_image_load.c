/* Loading Stage A, the Previewer and the EfficientNet encoder from files in
 * the exact layout of the released checkpoints (spec manifests, sparse files:
 * headers only), bare and under ComfyUI prefixes, F32 and BF16: the
 * structure read off the names must be the released one. Then the strict
 * validation: a file of another network, a missing and a mis-shaped tensor. */
#include "check.h"
#include "effnet.h"
#include "error.h"
#include "manifest_st.h"
#include "previewer.h"
#include "stage_a.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char mdir[1024], tmp[512];

static int write_sparse(const char *variant, const char *prefix, cs_dtype dt, char *path, size_t len,
                        void (*edit)(ms_tensor *, int *))
{
    char man[1200];
    snprintf(man, sizeof man, "%s/%s.json", mdir, variant);
    ms_tensor *t;
    int n;
    if (ms_load(man, &t, &n)) return -1;
    if (edit) edit(t, &n);
    snprintf(path, len, "%s/cs_test_%s_%d.safetensors", tmp, variant, (int)getpid());
    int rc = ms_write(path, t, n, dt, prefix, MS_OFFICIAL, 0, 0, 0);
    free(t);
    return rc;
}

static void test_stage_a(const char *prefix, cs_dtype dt)
{
    char path[1024];
    cs_stage_a *m = NULL;
    if (write_sparse("stage_a", prefix, dt, path, sizeof path, NULL)) {
        failures++;
        return;
    }
    int rc = cs_stage_a_open(path, &m);
    CHECK(!rc, "stage_a (prefix '%s', %s): %s", prefix, cs_dtype_name(dt), cs_last_error());
    if (!rc) {
        const cs_stage_a_config *c = cs_stage_a_get_config(m);
        CHECK(c->levels == 2 && c->bottleneck_blocks == 12 && c->c_hidden == 384 && c->c_latent == 4 &&
                  c->c_levels[0] == 192 && c->c_levels[1] == 384 && c->codebook_size == 8192 && c->has_encoder,
              "stage_a config: levels %d blocks %d c_hidden %d latent %d codebook %d", c->levels, c->bottleneck_blocks,
              c->c_hidden, c->c_latent, c->codebook_size);
        CHECK(cs_stage_a_halo(m) == 13 && cs_stage_a_factor(m) == 4, "stage_a halo %d factor %d", cs_stage_a_halo(m),
              cs_stage_a_factor(m));
    }
    cs_stage_a_free(m);
    unlink(path);
}

static void test_previewer(const char *prefix, cs_dtype dt)
{
    char path[1024];
    cs_previewer *m = NULL;
    if (write_sparse("previewer", prefix, dt, path, sizeof path, NULL)) {
        failures++;
        return;
    }
    int rc = cs_previewer_open(path, &m);
    CHECK(!rc, "previewer (prefix '%s'): %s", prefix, cs_last_error());
    if (!rc) {
        const cs_previewer_config *c = cs_previewer_get_config(m);
        CHECK(c->c_in == 16 && c->c_hidden == 512 && c->c_out == 3, "previewer config %d %d %d", c->c_in, c->c_hidden,
              c->c_out);
    }
    cs_previewer_free(m);
    unlink(path);
}

static void test_effnet(const char *prefix, cs_dtype dt)
{
    static const int blocks[6] = {2, 4, 4, 6, 9, 15}, widths[6] = {24, 48, 64, 128, 160, 256};
    char path[1024];
    cs_effnet *m = NULL;
    if (write_sparse("effnet_encoder", prefix, dt, path, sizeof path, NULL)) {
        failures++;
        return;
    }
    int rc = cs_effnet_open(path, &m);
    CHECK(!rc, "effnet (prefix '%s'): %s", prefix, cs_last_error());
    if (!rc) {
        const cs_effnet_config *c = cs_effnet_get_config(m);
        int ok = c->c_latent == 16 && c->c_stem == 24 && c->c_head == 1280;
        for (int s = 0; s < 6; s++) ok &= c->blocks[s] == blocks[s] && c->c_out[s] == widths[s];
        CHECK(ok, "effnet config: latent %d stem %d head %d, blocks %d %d %d %d %d %d", c->c_latent, c->c_stem,
              c->c_head, c->blocks[0], c->blocks[1], c->blocks[2], c->blocks[3], c->blocks[4], c->blocks[5]);
    }
    CHECK(cs_effnet_out_size(768) == 24 && cs_effnet_out_size(96) == 3 && cs_effnet_out_size(100) == 4,
          "effnet output sizes");
    cs_effnet_free(m);
    unlink(path);
}

static void break_effnet(ms_tensor *t, int *n)
{
    for (int i = 0; i < *n; i++) {
        if (!strcmp(t[i].name, "mapper.0.weight")) t[i].shape[1] = 1024;
        if (!strcmp(t[i].name, "backbone.5.3.block.1.0.weight")) {
            memmove(&t[i], &t[i + 1], (size_t)(*n - i - 1) * sizeof *t);
            (*n)--;
            i--;
        }
    }
}

static void test_errors(void)
{
    char path[1024];
    if (write_sparse("previewer", "", CS_F32, path, sizeof path, NULL)) {
        failures++;
        return;
    }
    cs_stage_a *a = NULL;
    cs_effnet *e = NULL;
    int rc = cs_stage_a_open(path, &a);
    CHECK(rc == CS_EMODEL && !a && strstr(cs_last_error(), "cs_test_previewer") && strstr(cs_last_error(), "Stage A"),
          "previewer file as Stage A: rc %d, %s", rc, cs_last_error());
    rc = cs_effnet_open(path, &e);
    CHECK(rc == CS_EMODEL && !e && strstr(cs_last_error(), "EfficientNet"), "previewer file as effnet: %s",
          cs_last_error());
    unlink(path);

    cs_previewer *p = NULL;
    if (write_sparse("effnet_encoder", "", CS_BF16, path, sizeof path, NULL)) {
        failures++;
        return;
    }
    rc = cs_previewer_open(path, &p);
    CHECK(rc == CS_EMODEL && !p && strstr(cs_last_error(), "Previewer"), "effnet file as previewer: %s",
          cs_last_error());
    unlink(path);

    if (write_sparse("effnet_encoder", "", CS_F32, path, sizeof path, break_effnet)) {
        failures++;
        return;
    }
    rc = cs_effnet_open(path, &e);
    const char *msg = cs_last_error();
    CHECK(rc == CS_EMODEL && !e && strstr(msg, "cs_test_effnet_encoder") && strstr(msg, "backbone.5.3.block.1.0.weight") &&
              strstr(msg, "mapper.0.weight: shape [16,1024,1,1], expected [16,1280,1,1]"),
          "broken effnet: %s", msg);
    unlink(path);
}

int main(void)
{
    const char *s = getenv("SHARED_DIR"), *t = getenv("TMPDIR");
    snprintf(mdir, sizeof mdir, "%s/spec/manifests", s ? s : "../shared");
    snprintf(tmp, sizeof tmp, "%s", t && *t ? t : "/tmp");
    if (access(mdir, R_OK)) {
        if (check_under_ci()) {
            printf("ERROR: %s is missing (CI needs ../shared beside the checkout)\n", mdir);
            return 99;
        }
        printf("SKIP: %s not found\n", mdir);
        return 77;
    }
    static const cs_dtype dts[2] = {CS_F32, CS_BF16};
    for (int d = 0; d < 2; d++) {
        test_stage_a("", dts[d]);
        test_stage_a("vae.", dts[d]);
        test_previewer("", dts[d]);
        test_previewer("vae.previewer.", dts[d]);
        test_effnet("", dts[d]);
        test_effnet("vae.encoder.", dts[d]);
    }
    test_errors();
    if (failures) printf("%d check(s) failed\n", failures);
    else printf("image networks load: all checks passed\n");
    return check_exit();
}
