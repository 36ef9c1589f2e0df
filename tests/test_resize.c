/* cs_resize_bicubic_torch against torch's plain bicubic interpolate (what
 * ComfyUI's StableCascade_StageC_VAEEncode resizes with):
 * tests/data/resize_bicubic_cases.txt from tests/ref/make_resize_cases.py.
 * Downscale, upscale, same size, mixed, and 256 -> 192 (the img2img
 * workflow's); each value within 2e-6 (float rounding of the sums). */
#include "check.h"

#include "error.h"
#include "image_prep.h"

#include <string.h>

int main(void)
{
    const char *top = getenv("TOP_SRCDIR") ? getenv("TOP_SRCDIR") : ".";
    char path[600];
    snprintf(path, sizeof path, "%s/tests/data/resize_bicubic_cases.txt", top);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ERROR: %s missing\n", path);
        return 99;
    }
    int cases = 0;
    size_t H, W, C, Ho, Wo;
    char line[64];
    while (fscanf(f, "%zu %zu %zu %zu %zu", &H, &W, &C, &Ho, &Wo) == 5) {
        int step = 1;
        if (!fgets(line, sizeof line, f))
            break;
        if (strstr(line, "sample97"))
            step = 97;
        float *x = malloc(H * W * C * sizeof *x), *y = malloc(Ho * Wo * C * sizeof *y);
        if (!x || !y)
            return 99;
        for (size_t i = 0; i < H * W; i++)
            for (size_t c = 0; c < C; c++)
                x[i * C + c] = (float)(sin(0.37 * (double)i + 0.1 * (double)c) * 0.8 + 0.5);
        CHECK(cs_resize_bicubic_torch(x, H, W, C, y, Ho, Wo) == 0, "%s", cs_last_error());
        double worst = 0;
        size_t n = 0;
        for (size_t i = 0; i < Ho * Wo * C; i += (size_t)step, n++) {
            double want;
            if (fscanf(f, "%lf", &want) != 1) {
                CHECK(0, "case %zux%zu -> %zux%zu: too few reference values", W, H, Wo, Ho);
                break;
            }
            double d = fabs(y[i] - want);
            if (d > worst) worst = d;
        }
        CHECK(worst <= 2e-6, "case %zux%zux%zu -> %zux%zu: max |diff| %.3g", W, H, C, Wo, Ho, worst);
        printf("%zux%zux%zu -> %zux%zu: %zu values, max |diff| %.3g\n", W, H, C, Wo, Ho, n, worst);
        free(x);
        free(y);
        cases++;
    }
    fclose(f);
    CHECK(cases == 5, "%d cases read", cases);
    return check_exit();
}
