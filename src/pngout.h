/* PNG output: float image -> uint8, and a libpng writer with text metadata
 * that never leaves a half-written file and never replaces an existing one
 * unless asked to. (Named pngout.h so it never shadows libpng's <png.h>.)
 *
 * Writing goes to a temporary file in the destination folder, is fsync'ed,
 * and is then moved into place with an atomic no-replace rename
 * (renameat2(RENAME_NOREPLACE), or link()+unlink() where that is missing), so
 * two writers racing for one name cannot clobber each other. On any error the
 * temporary file is removed and cs_last_error() is one line naming the path. */
#ifndef CS_PNGOUT_H
#define CS_PNGOUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *key;     /* 1..79 printable ASCII chars, e.g. "parameters" */
    const char *value;   /* UTF-8; written as tEXt if ASCII, else iTXt */
} cs_png_text;

enum {
    CS_PNG_FORCE = 1,    /* replace an existing regular file (still atomic) */
};

typedef enum {
    CS_U8_TRUNCATE = 0,  /* (uint8)(v*255): official notebook / ComfyUI (default) */
    CS_U8_ROUND,         /* round half to even of v*255: diffusers */
} cs_u8_mode;

/* Float images in [0,1] -> interleaved RGB uint8 [n, h, w, 3]; values are
 * clamped to [0,1] first (NaN -> 0), then v*255 in float is truncated or
 * rounded. nhwc: in [n, h, w, 3]; nchw: in [n, 3, h, w] (channels R, G, B). */
int cs_image_to_u8_nhwc(const float *in, size_t n, size_t h, size_t w, cs_u8_mode mode,
                        uint8_t *out);
int cs_image_to_u8_nchw(const float *in, size_t n, size_t h, size_t w, cs_u8_mode mode,
                        uint8_t *out);

/* Writes an 8-bit RGB PNG of width x height pixels; row y starts at
 * rgb + y*stride (stride >= 3*width, so a crop of a larger image can be
 * written in place). text: n_text key/value chunks (may be 0). flags:
 * CS_PNG_FORCE or 0. Returns 0 or CS_EARG / CS_EIO / CS_ENOMEM; an existing
 * file without CS_PNG_FORCE is CS_EIO with "... exists"; with it, anything
 * there but a regular file (FIFO, device, link) is CS_EIO, left in place. */
int cs_png_write_rgb8(const char *path, const uint8_t *rgb, int width, int height,
                      size_t stride, const cs_png_text *text, int n_text, int flags);

/* Can path be written (through its temporary name beside it)? Checks the
 * lengths of the name and path only; 0 or CS_EARG with the message set. */
int cs_png_check_name(const char *path);

/* "<dir>/<prefix>_NNNNN.png" with NNNNN one more than the largest number
 * already used by such a file in dir (00001 in an empty folder). */
int cs_png_next_name(const char *dir, const char *prefix, char *out, size_t out_len);

/* The same for any tail after the number ("_.latent": ComfyUI's SaveLatent). */
int cs_out_next_name(const char *dir, const char *prefix, const char *tail, char *out, size_t out_len);
/* Moves the finished file tmp to path; without force it never replaces
 * anything (-EEXIST when path is taken). 0 or -errno. For other writers
 * that number their files like the PNGs (latent.c). */
int cs_out_place(const char *tmp, const char *path, int force);

/* Picks the next name as above and writes there; if another writer takes the
 * name first, moves on to the next one. The chosen path goes to out_path. */
int cs_png_write_next(const char *dir, const char *prefix, const uint8_t *rgb, int width,
                      int height, size_t stride, const cs_png_text *text, int n_text,
                      char *out_path, size_t out_len);
/* The same with another tail after the number: "_.png" gives ComfyUI's
 * SaveImage names, "<prefix>_00001_.png" (numbered after its own files only). */
int cs_png_write_next_tail(const char *dir, const char *prefix, const char *tail, const uint8_t *rgb, int width,
                           int height, size_t stride, const cs_png_text *text, int n_text, char *out_path,
                           size_t out_len);

#endif
