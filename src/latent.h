/* ComfyUI's .latent files (its SaveLatent / LoadLatent nodes): safetensors
 * with the tensor latent_tensor [N, C, H, W] and the empty marker tensor
 * latent_format_version_0. A file without the marker is from before it,
 * when latents were stored scaled: LoadLatent multiplies those by
 * 1 / 0.18215, and so do we. The metadata ("prompt", "workflow") is
 * ComfyUI's and is not read. */
#ifndef CS_LATENT_H
#define CS_LATENT_H

#include <stddef.h>

typedef struct {
    float *data;        /* [n, c, h, w] float32 (cs_alloc), the multiplier applied */
    int n, c, h, w;
    int legacy;         /* 1: no marker, scaled by 1 / 0.18215 */
} cs_latent;

/* Reads path (any float dtype, as LoadLatent's .float()); a file that is not
 * safetensors, lacks latent_tensor, holds another rank or dtype, or values
 * that are not finite is one line naming the file. */
int cs_latent_read(const char *path, cs_latent *out);
void cs_latent_free(cs_latent *l);   /* NULL is fine */

/* Writes x [n, c, h, w] float32 with the marker and string metadata pairs
 * meta[0..2*n_meta) as "<dir>/<prefix>_NNNNN_.latent", the number one past
 * the largest of such files in dir (as SaveLatent counts), through a
 * temporary file and a no-replace rename; out: the path written. */
int cs_latent_write_next(const char *dir, const char *prefix, const float *x, int n, int c, int h, int w,
                         const char *const *meta, int n_meta, char *out, size_t out_len);

/* The pipeline's channels-last latent x [n, h, w, c] as ComfyUI's LATENT
 * out [n, c, h, w]: Stage C's latent format (SC_Prior) has scale 1, Stage
 * B's (SC_B) 1 / 0.43, divided out in float32 as torch does (stage_b = 1);
 * the encoder's output is taken as it is. */
void cs_latent_to_comfy(const float *x, int n, int h, int w, int c, int stage_b, float *out);

#endif
