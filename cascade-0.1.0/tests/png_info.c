/* Test helper: reads a PNG completely with libpng (every CRC checked, the
 * image data inflated and its size checked) and prints what tests ask for,
 * so the CLI tests need no python.
 *   png_info FILE          "WIDTH HEIGHT BITDEPTH COLORTYPE"
 *   png_info FILE --keys   the key of every text chunk, one a line, in file order
 *   png_info FILE --pixels a 64-bit FNV-1a hash of the decoded rows (images
 *                          that differ only in their text chunks hash the same)
 *   png_info FILE KEY      the text of chunk KEY (exit 3 when absent)
 * Exit 1 when the file is not a valid PNG, with the reason on stderr. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_error(png_structp png, png_const_charp msg)
{
    fprintf(stderr, "png_info: %s\n", msg);
    longjmp(png_jmpbuf(png), 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    /* a warning (bad ancillary CRC, bad text chunk) is a broken file to a test */
    on_error(png, msg);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: png_info FILE [--keys | --pixels | KEY]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, on_error, on_warning);
    png_infop info = png_create_info_struct(png), end = png_create_info_struct(png);
    png_bytep *rows = NULL;
    volatile png_uint_32 h = 0;
    if (setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "png_info: %s: not a valid PNG\n", argv[1]);
        return 1;
    }
    png_init_io(png, f);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info);
    h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), color = png_get_color_type(png, info);
    size_t rb = png_get_rowbytes(png, info);
    rows = calloc(h, sizeof *rows);
    for (png_uint_32 y = 0; rows && y < h; y++)
        if (!(rows[y] = malloc(rb))) return 1;
    if (!rows) return 1;
    png_read_image(png, rows);   /* too little image data is an error */
    png_read_end(png, end);      /* so is data after the last row, or no IEND */
    png_textp t;
    int n1 = 0, n2 = 0;
    png_textp t1 = NULL, t2 = NULL;
    png_get_text(png, info, &t1, &n1);
    png_get_text(png, end, &t2, &n2);
    int rc = 0;
    if (argc == 3 && !strcmp(argv[2], "--pixels")) {
        unsigned long long hash = 0xcbf29ce484222325ull;
        for (png_uint_32 y = 0; y < h; y++)
            for (size_t x = 0; x < rb; x++) hash = (hash ^ rows[y][x]) * 0x100000001b3ull;
        printf("%016llx\n", hash);
    } else if (argc == 2)
        printf("%lu %lu %d %d\n", (unsigned long)w, (unsigned long)h, depth, color);
    else {
        int found = 0;
        for (int i = 0; i < n1 + n2; i++) {
            t = i < n1 ? &t1[i] : &t2[i - n1];
            if (!strcmp(argv[2], "--keys"))
                printf("%s\n", t->key);
            else if (!strcmp(argv[2], t->key) && !found++)
                printf("%s\n", t->text ? t->text : "");
        }
        if (strcmp(argv[2], "--keys") && !found) rc = 3;
    }
    for (png_uint_32 y = 0; y < h; y++) free(rows[y]);
    free(rows);
    png_destroy_read_struct(&png, &info, &end);
    fclose(f);
    return rc;
}
