/* ComfyUI's WebP images (SaveAnimatedWEBP and the like): the graph is in the
 * RIFF container's EXIF chunk, as IFD0 text entries "prompt:{...}" (tag
 * 0x0110, Model) and "workflow:{...}" (0x010F, Make; further extra_pnginfo
 * keys count down from there). Only the container and the TIFF directory
 * are read; the image itself is never decoded, so no libwebp is needed. */
#include "cli.h"
#include "workflow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t le32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t rd32(const unsigned char *p, int be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : le32(p);
}

static uint16_t rd16(const unsigned char *p, int be)
{
    return be ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[0] | p[1] << 8);
}

/* text entries of a TIFF block (IFD0 only: where ComfyUI puts them) */
static int tiff_texts(const unsigned char *t, size_t n, const char *path, char **prompt, char **workflow)
{
    if (n >= 6 && !memcmp(t, "Exif\0\0", 6))   /* some writers keep the JPEG-style header */
        t += 6, n -= 6;
    if (n < 8 || !(!memcmp(t, "II*\0", 4) || !memcmp(t, "MM\0*", 4)))
        return cli_error(CASCADE_E_IO, "%s: the WebP's EXIF chunk is not a TIFF block", path);
    int be = t[0] == 'M';
    uint32_t ifd = rd32(t + 4, be);
    if (ifd > n - 2)
        return cli_error(CASCADE_E_IO, "%s: the WebP's EXIF directory lies outside its chunk", path);
    unsigned cnt = rd16(t + ifd, be);
    if ((size_t)cnt * 12 > n - ifd - 2)
        return cli_error(CASCADE_E_IO, "%s: the WebP's EXIF directory is cut short", path);
    for (unsigned i = 0; i < cnt; i++) {
        const unsigned char *e = t + ifd + 2 + 12 * (size_t)i;
        uint16_t type = rd16(e + 2, be);
        uint32_t len = rd32(e + 4, be);
        if (type != 2 && type != 7)   /* ASCII, or UNDEFINED bytes */
            continue;
        const unsigned char *v = e + 8;
        if (len > 4) {
            uint32_t off = rd32(e + 8, be);
            if (off > n || len > n - off)
                return cli_error(CASCADE_E_IO, "%s: an EXIF entry of the WebP lies outside its chunk", path);
            v = t + off;
        }
        while (len && v[len - 1] == 0)
            len--;
        char **dst = len > 7 && !memcmp(v, "prompt:", 7) ? prompt : len > 9 && !memcmp(v, "workflow:", 9) ? workflow
                                                                                                          : NULL;
        if (!dst || *dst)
            continue;
        size_t skip = dst == prompt ? 7 : 9;
        if (!(*dst = malloc(len - skip + 1)))
            return cli_error(CASCADE_E_NOMEM, "%s: out of memory", path);
        memcpy(*dst, v + skip, len - skip);
        (*dst)[len - skip] = 0;
    }
    return 0;
}

int wf_webp_texts(const unsigned char *d, size_t n, const char *path, char **prompt, char **workflow)
{
    *prompt = *workflow = NULL;
    if (n < 12 || memcmp(d, "RIFF", 4) || memcmp(d + 8, "WEBP", 4))
        return cli_error(CASCADE_E_IO, "%s: not a WebP file", path);
    size_t end = (size_t)le32(d + 4) + 8;
    if (end > n)
        end = n;   /* a short file: read what is there */
    for (size_t pos = 12; pos + 8 <= end;) {
        uint32_t len = le32(d + pos + 4);
        if (len > end - pos - 8)
            return cli_error(CASCADE_E_IO, "%s: WebP chunk '%.4s' runs past the end of the file", path, (const char *)d + pos);
        if (!memcmp(d + pos, "EXIF", 4)) {
            int rc = tiff_texts(d + pos + 8, len, path, prompt, workflow);
            if (rc) {
                free(*prompt), free(*workflow);
                *prompt = *workflow = NULL;
            }
            return rc;
        }
        pos += 8 + (size_t)len + (len & 1);
    }
    return 0;
}
