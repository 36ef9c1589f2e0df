/* Test helper: safetensors files with real headers and no data. The header
 * lists the tensors (names, shapes, dtypes, contiguous offsets); the file is
 * then extended to its full size with ftruncate, so a 14 GB Stage C costs a
 * few hundred kB of disk (sparse) and the reader sees a valid file. */
#ifndef FAKE_ST_H
#define FAKE_ST_H

#include "models.h"

#include <stdint.h>

typedef struct {
    char name[200];
    int ndim;
    int64_t shape[8];
    cs_dtype dtype;
} ft_entry;

typedef struct {
    ft_entry *e;
    int n, cap;
} ft_list;

enum { FT_OFFICIAL, FT_DIFFUSERS, FT_COMFY };

void ft_add(ft_list *l, const char *name, int ndim, const int64_t *shape, cs_dtype dt);
/* Appends src with prefix and key spelling naming (FT_*): diffusers splits
 * attn.in_proj into to_q/to_k/to_v, renames out_proj to to_out.0, Stage B's
 * clip_mapper to clip_txt_pooled_mapper (stage_b != 0) and Stage A's
 * vquantizer.codebook to vquantizer.embedding; FT_COMFY only splits. */
void ft_append(ft_list *dst, const ft_list *src, const char *prefix, int naming, int stage_b);
/* The expected list of net: parameters at dt, BatchNorm buffers F32,
 * counters I64. */
int ft_from_net(ft_list *l, cs_net net, cs_dtype dt);
int ft_find(const ft_list *l, const char *name);   /* index or -1 */
void ft_remove(ft_list *l, int i);
void ft_free(ft_list *l);
/* Writes the header, then ftruncate()s to full size. Returns 0 or -1 (errno). */
int ft_write(const char *path, const ft_list *l, uint64_t *data_bytes);
/* Writes net (spelling naming, prefix "") to path. */
int ft_write_net(const char *path, cs_net net, cs_dtype dt, int naming);

#endif
