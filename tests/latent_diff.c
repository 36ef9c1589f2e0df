/* Test helper: compares two ComfyUI .latent files (src/latent.c reads
 * them as LoadLatent does) of the same shape.
 *   latent_diff A.latent B.latent   "max D, rel_l2 R, max|B| M, N values" (exit 0)
 * Exit 1 when a file cannot be read or the shapes differ, with the reason. */
#include "error.h"
#include "latent.h"

#include <math.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: latent_diff A.latent B.latent\n");
        return 2;
    }
    cs_latent a, b;
    if (cs_latent_read(argv[1], &a) || cs_latent_read(argv[2], &b)) {
        fprintf(stderr, "latent_diff: %s\n", cs_last_error());
        return 1;
    }
    if (a.n != b.n || a.c != b.c || a.h != b.h || a.w != b.w) {
        fprintf(stderr, "latent_diff: shapes differ: [%d, %d, %d, %d] and [%d, %d, %d, %d]\n", a.n, a.c, a.h, a.w, b.n,
                b.c, b.h, b.w);
        return 1;
    }
    size_t n = (size_t)a.n * a.c * a.h * a.w;
    double md = 0, mb = 0, d2 = 0, b2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a.data[i] - b.data[i]);
        if (d > md) md = d;
        if (fabs(b.data[i]) > mb) mb = fabs(b.data[i]);
        d2 += d * d;
        b2 += (double)b.data[i] * b.data[i];
    }
    printf("max %.3g, rel_l2 %.3g, max|B| %.3g, %zu values\n", md, b2 > 0 ? sqrt(d2 / b2) : sqrt(d2), mb, n);
    cs_latent_free(&a);
    cs_latent_free(&b);
    return 0;
}
