/* Packed weights for the CPU's bf16 products: a Linear weight [N, K] as the
 * bf16 kernel's panels of k pairs (simd/gemm_bf16.h), made on the first
 * product that uses it and kept until forgotten -- packing once instead of
 * per call, as the GPU plugin keeps its device copies. Keyed by the
 * weight's data pointer (plus dtype and shape, so a reused address with
 * another tensor is never mistaken for it). A view of rows [r0, r0+n) of
 * an entry with r0 a multiple of 16 (an in_proj's k|v rows) uses the
 * entry's panels instead of a second copy; a whole weight packed after
 * such a view replaces it.
 *
 * Size: 2 bytes per weight (columns padded to 16, K to even), the size of
 * a BF16 file's own data and half an F32 file's. Once packed, the mapped
 * file pages of that weight are no longer read by the CPU products, and
 * when the weight lies in a safetensors mapping they are dropped from this
 * process (cs_st_release_pages), so RSS holds the weight once, not twice.
 *
 * Whoever unmaps or frees weight memory calls cs_param_forget (device.h),
 * which calls cs_wpack_forget: entries whose data lies in the range go.
 * Lookups, inserts and forgets are serialised by one mutex. */
#ifndef CS_WPACK_H
#define CS_WPACK_H

#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint32_t *p;   /* ceil(N/16) panels, panel j at p + j * pstride */
    size_t pstride;      /* uint32 per panel: ceil(K/2) * 16 */
} cs_wpack;

/* The packed bf16 form of W ([N, K], F32/BF16/F16), packing it on first use.
 * Returns 0 or CS_ENOMEM / CS_EUNSUP with cs_error set. */
int cs_wpack_get(const cs_tensor *W, size_t N, size_t K, cs_wpack *out);
/* The same for a weight W whose data is [K, N] (a product's B as it is, e.g.
 * a transposed convolution's [Cin, Cout k k]): the same panels as its
 * transpose would give. Kept apart from [N, K] entries of the same data. */
int cs_wpack_get_kn(const cs_tensor *W, size_t K, size_t N, cs_wpack *out);
/* Drops the entries whose weight data starts in [host, host + bytes). */
void cs_wpack_forget(const void *host, size_t bytes);
/* Drops every entry. */
void cs_wpack_clear(void);
/* Bytes held by the cache, and the number of entries. */
size_t cs_wpack_bytes(size_t *count);

#endif
