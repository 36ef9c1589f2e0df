/* ComfyUI .latent files (src/latent.c) against ComfyUI's own nodes:
 * tests/data/comfy_latent/NAME.latent was written by ComfyUI's SaveLatent
 * (or without the version marker, as before it), NAME.load.f32 is what
 * ComfyUI's LoadLatent gives for it (tests/ref/comfy_latent.py). Ours must
 * give the same floats bit for bit; what we write must read back the same
 * and carry the marker; broken files are refused with the file named. */
#include "check.h"

#include "error.h"
#include "latent.h"
#include "safetensors.h"
#include "tensor.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

static float *read_f32(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    float *v = malloc((size_t)len);
    if (v && fread(v, 1, (size_t)len, f) != (size_t)len) {
        free(v);
        v = NULL;
    }
    fclose(f);
    *n = (size_t)len / sizeof(float);
    return v;
}

static void comfy_case(const char *dir, const char *name, int n, int c, int h, int w, int legacy)
{
    char lp[600], fp[600];
    snprintf(lp, sizeof lp, "%s/%s.latent", dir, name);
    snprintf(fp, sizeof fp, "%s/%s.load.f32", dir, name);
    size_t ne;
    float *want = read_f32(fp, &ne);
    cs_latent l;
    int rc = cs_latent_read(lp, &l);
    CHECK(want && rc == 0, "%s: read: %s", lp, cs_last_error());
    if (!want || rc) {
        free(want);
        return;
    }
    CHECK(l.n == n && l.c == c && l.h == h && l.w == w, "%s: shape %d %d %d %d", name, l.n, l.c, l.h, l.w);
    CHECK(l.legacy == legacy, "%s: legacy %d", name, l.legacy);
    CHECK(ne == (size_t)n * c * h * w, "%s: %zu reference values", name, ne);
    size_t bad = 0;
    for (size_t i = 0; i < ne && ne == (size_t)n * c * h * w; i++)
        bad += memcmp(&l.data[i], &want[i], sizeof(float)) != 0;
    CHECK(bad == 0, "%s: %zu of %zu values differ from ComfyUI's LoadLatent", name, bad, ne);
    cs_latent_free(&l);
    free(want);
}

/* a file with these tensors (name, dtype, 4 dims or ndim < 4) */
static void write_st(const char *path, const char *name, cs_dtype dt, int ndim, const float *v)
{
    cs_tensor t[1] = {{dt, ndim, {1, 2, 2, 1}, v, name}};
    CHECK(cs_st_write(path, t, 1, NULL, 0) == 0, "write %s: %s", path, cs_last_error());
}

static void refused(const char *path, const char *what)
{
    cs_latent l;
    int rc = cs_latent_read(path, &l);
    CHECK(rc < 0 && strstr(cs_last_error(), path) && strstr(cs_last_error(), what) && !strchr(cs_last_error(), '\n'),
          "%s: rc %d, message '%s' (wanted one line with the file and '%s')", path, rc, cs_last_error(), what);
    CHECK(l.data == NULL, "%s: data left allocated", path);
}

int main(void)
{
    const char *top = getenv("TOP_SRCDIR") ? getenv("TOP_SRCDIR") : ".";
    char dir[512], tmp[] = "/tmp/test_latent.XXXXXX";
    snprintf(dir, sizeof dir, "%s/tests/data/comfy_latent", top);
    if (access(check_path(dir, "saved.latent"), R_OK)) {
        fprintf(stderr, "ERROR: %s missing\n", check_path(dir, "saved.latent"));
        return 99;
    }
    comfy_case(dir, "saved", 2, 16, 3, 5, 0);
    comfy_case(dir, "legacy", 1, 4, 6, 4, 1);

    if (!mkdtemp(tmp))
        return 99;
    /* ours: numbered as SaveLatent, the marker, the same floats back */
    float x[2 * 3 * 4 * 5];
    for (int i = 0; i < 120; i++)
        x[i] = check_urand() * 7;
    const char *meta[] = {"prompt", "{}"};
    char p1[600], p2[600];
    CHECK(cs_latent_write_next(tmp, "ComfyUI", x, 2, 3, 4, 5, meta, 1, p1, sizeof p1) == 0, "%s", cs_last_error());
    CHECK(cs_latent_write_next(tmp, "ComfyUI", x, 2, 3, 4, 5, meta, 1, p2, sizeof p2) == 0, "%s", cs_last_error());
    CHECK(!strcmp(p1, check_path(tmp, "ComfyUI_00001_.latent")), "first name %s", p1);
    CHECK(!strcmp(p2, check_path(tmp, "ComfyUI_00002_.latent")), "second name %s", p2);
    cs_st_file *f;
    if (cs_st_open(p1, &f) == 0) {
        const cs_tensor *m = cs_st_find(f, "latent_format_version_0");
        CHECK(m && m->ndim == 1 && m->shape[0] == 0, "no empty marker tensor");
        CHECK(cs_st_meta(f, "prompt") && !strcmp(cs_st_meta(f, "prompt"), "{}"), "prompt metadata");
        cs_st_close(f);
    } else {
        CHECK(0, "%s", cs_last_error());
    }
    cs_latent l;
    CHECK(cs_latent_read(p2, &l) == 0 && l.n == 2 && l.c == 3 && l.h == 4 && l.w == 5 && !l.legacy &&
          !memcmp(l.data, x, sizeof x), "round trip");
    cs_latent_free(&l);

    /* refused, with the file named */
    float v[4] = {1, 2, NAN, 4};
    char bad[600];
    snprintf(bad, sizeof bad, "%s/noname.latent", tmp);
    write_st(bad, "samples", CS_F32, 4, v);
    refused(bad, "latent_tensor");
    snprintf(bad, sizeof bad, "%s/rank3.latent", tmp);
    write_st(bad, "latent_tensor", CS_F32, 3, v);
    refused(bad, "[N, C, H, W]");
    snprintf(bad, sizeof bad, "%s/int.latent", tmp);
    write_st(bad, "latent_tensor", CS_I32, 4, v);
    refused(bad, "I32");
    snprintf(bad, sizeof bad, "%s/nan.latent", tmp);
    write_st(bad, "latent_tensor", CS_F32, 4, v);
    refused(bad, "non-finite");
    snprintf(bad, sizeof bad, "%s/text.latent", tmp);
    FILE *t = fopen(bad, "w");
    if (t) {
        fputs("not a latent\n", t);
        fclose(t);
    }
    refused(bad, "text.latent");
    refused(check_path(tmp, "missing.latent"), "missing.latent");

    /* nothing but the files we made: no temporary file left */
    DIR *d = opendir(tmp);
    struct dirent *de;
    int stray = 0;
    while (d && (de = readdir(d)))
        if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            stray++;
    if (d) closedir(d);
    CHECK(stray == 0, "%d temporary files left in %s", stray, tmp);
    const char *names[] = {"ComfyUI_00001_.latent", "ComfyUI_00002_.latent", "noname.latent", "rank3.latent",
                           "int.latent", "nan.latent", "text.latent"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        unlink(check_path(tmp, names[i]));
    rmdir(tmp);
    return check_exit();
}
