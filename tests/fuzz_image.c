/* libFuzzer target for input images (PNG and JPEG with EXIF orientation):
 * cs_image_decode must either give an image within the limits with its
 * pixels allocated, or fail with one error line and nothing allocated.
 * Built and run by tests/fuzz.sh; seeds in tests/corpus/image. */
#include "error.h"
#include "image_in.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_image im;
    int rc = cs_image_decode(data, size, "fuzz", &im);
    if (rc == 0) {
        if (!im.rgb || !im.w || !im.h || im.w > CS_IMAGE_MAX_SIDE || im.h > CS_IMAGE_MAX_SIDE) abort();
        volatile uint8_t sum = 0;   /* touch the last pixel: the buffer is w*h*3 */
        sum ^= im.rgb[im.w * im.h * 3 - 1];
        (void)sum;
    } else if (im.rgb || strchr(cs_last_error(), '\n')) {
        abort();
    }
    cs_image_free(&im);
    return 0;
}
