/* Test helper: compares two 8-bit PNGs of the same size value by value.
 *   png_diff A.png B.png   "max D, N of T values differ" (exit 0)
 * Exit 1 when a file is not a PNG or the sizes differ, with the reason. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *load(const char *path, png_image *im)
{
    memset(im, 0, sizeof *im);
    im->version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(im, path)) {
        fprintf(stderr, "png_diff: %s: %s\n", path, im->message);
        return NULL;
    }
    im->format = PNG_FORMAT_RGB;
    unsigned char *px = malloc(PNG_IMAGE_SIZE(*im));
    if (!px || !png_image_finish_read(im, NULL, px, 0, NULL)) {
        fprintf(stderr, "png_diff: %s: %s\n", path, px ? im->message : "out of memory");
        free(px);
        return NULL;
    }
    return px;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: png_diff A.png B.png\n");
        return 2;
    }
    png_image a, b;
    unsigned char *pa = load(argv[1], &a), *pb = pa ? load(argv[2], &b) : NULL;
    if (!pa || !pb) {
        free(pa);
        return 1;
    }
    if (a.width != b.width || a.height != b.height) {
        fprintf(stderr, "png_diff: %s is %ux%u, %s is %ux%u\n", argv[1], a.width, a.height, argv[2], b.width,
                b.height);
        free(pa), free(pb);
        return 1;
    }
    size_t n = PNG_IMAGE_SIZE(a), differ = 0;
    int max = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)pa[i] - (int)pb[i]);
        differ += d != 0;
        if (d > max)
            max = d;
    }
    printf("max %d, %zu of %zu values differ\n", max, differ, n);
    free(pa), free(pb);
    return 0;
}
