/* Reading input images (image variation, img2img): PNG through libpng, JPEG
 * through libjpeg(-turbo), always to 8-bit RGB.
 *
 * PNG: every standard kind -- grey, grey+alpha, RGB, RGBA, palette (with or
 * without tRNS), 1/2/4/8/16 bits, interlaced; 16-bit samples are scaled to
 * 8 bits (rounded), grey is replicated to RGB and alpha is dropped (as
 * ComfyUI's image loader does for the image itself).
 * JPEG: grey and YCbCr/RGB; CMYK/YCCK are refused. The EXIF orientation
 * (APP1 tag 0x0112, values 2-8) is applied, as every viewer shows it.
 *
 * Limits (CS_IMAGE_MAX_*): a file of at most 256 MiB, each side at most
 * 16384 pixels, at most 64 megapixels. Anything else -- another format,
 * a truncated or corrupt file, 0 pixels, a larger image -- is one error
 * line naming the file and the problem (CS_EFORMAT / CS_EUNSUP / CS_EIO). */
#ifndef CS_IMAGE_IN_H
#define CS_IMAGE_IN_H

#include <stddef.h>
#include <stdint.h>

#define CS_IMAGE_MAX_FILE ((uint64_t)256 << 20)
#define CS_IMAGE_MAX_SIDE 16384
#define CS_IMAGE_MAX_PIXELS ((uint64_t)64 << 20)

typedef struct {
    uint8_t *rgb;          /* [h, w, 3], cs_free'd by cs_image_free */
    size_t w, h;
    uint64_t xxh64;        /* of the file's bytes (for metadata) */
    const char *format;    /* "PNG" or "JPEG" */
} cs_image;

int cs_image_read(const char *path, cs_image *out);
/* The same from bytes in memory; what names them in messages. */
int cs_image_decode(const unsigned char *data, size_t len, const char *what, cs_image *out);
void cs_image_free(cs_image *im);   /* zeroes it; NULL or an empty image is fine */

#endif
