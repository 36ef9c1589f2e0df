/* Header-only sparse safetensors files for tests (see fake_st.h). */
#include "fake_st.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ft_add(ft_list *l, const char *name, int ndim, const int64_t *shape, cs_dtype dt)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->e = realloc(l->e, (size_t)l->cap * sizeof *l->e);
        if (!l->e) abort();   /* test helper: out of memory ends the test */
    }
    ft_entry *e = &l->e[l->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->dtype = dt;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

void ft_append(ft_list *dst, const ft_list *src, const char *prefix, int naming, int stage_b)
{
    char name[256];
    for (int i = 0; i < src->n; i++) {
        const ft_entry *e = &src->e[i];
        const char *cut = strstr(e->name, ".attention.attn.in_proj_");
        if (naming != FT_OFFICIAL && cut) {
            static const char *const qkv[] = {"to_q", "to_k", "to_v"};
            int64_t s[8];
            memcpy(s, e->shape, sizeof s);
            s[0] /= 3;
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "%s%.*s.attention.%s%s.%s", prefix, (int)(cut - e->name), e->name,
                         naming == FT_COMFY ? "attn." : "", qkv[j], ends_with(e->name, "bias") ? "bias" : "weight");
                ft_add(dst, name, e->ndim, s, e->dtype);
            }
            continue;
        }
        if (naming == FT_DIFFUSERS && (cut = strstr(e->name, ".attention.attn.out_proj.")))
            snprintf(name, sizeof name, "%s%.*s.attention.to_out.0.%s", prefix, (int)(cut - e->name), e->name,
                     cut + strlen(".attention.attn.out_proj."));
        else if (naming == FT_DIFFUSERS && stage_b && !strncmp(e->name, "clip_mapper.", 12))
            snprintf(name, sizeof name, "%sclip_txt_pooled_mapper.%s", prefix, e->name + 12);
        else if (naming == FT_DIFFUSERS && !strcmp(e->name, "vquantizer.codebook.weight"))
            snprintf(name, sizeof name, "%svquantizer.embedding.weight", prefix);
        else
            snprintf(name, sizeof name, "%s%s", prefix, e->name);
        ft_add(dst, name, e->ndim, e->shape, e->dtype);
    }
}

int ft_from_net(ft_list *l, cs_net net, cs_dtype dt)
{
    cs_expect *x;
    int n;
    if (cs_net_expected(net, &x, &n)) return -1;
    for (int i = 0; i < n; i++)
        ft_add(l, x[i].name, x[i].ndim, x[i].shape,
               x[i].kind == CS_EXP_PARAM ? dt : x[i].kind == CS_EXP_BUFFER ? CS_F32 : CS_I64);
    free(x);
    return 0;
}

int ft_find(const ft_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->e[i].name, name)) return i;
    return -1;
}

void ft_remove(ft_list *l, int i)
{
    memmove(&l->e[i], &l->e[i + 1], (size_t)(l->n - i - 1) * sizeof *l->e);
    l->n--;
}

void ft_free(ft_list *l)
{
    free(l->e);
    memset(l, 0, sizeof *l);
}

int ft_write(const char *path, const ft_list *l, uint64_t *data_bytes)
{
    json_t *root = json_object();
    uint64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        const ft_entry *e = &l->e[i];
        uint64_t numel = 1;
        json_t *sh = json_array();
        for (int d = 0; d < e->ndim; d++) {
            numel *= (uint64_t)e->shape[d];
            json_array_append_new(sh, json_integer(e->shape[d]));
        }
        uint64_t bytes = numel * cs_dtype_size(e->dtype);
        json_object_set_new(root, e->name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", cs_dtype_name(e->dtype), "shape", sh,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"));
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr) return -1;
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), rc = -1;
    if (fd >= 0) {
        int ok = write(fd, len8, 8) == 8 && write(fd, hdr, hl) == (ssize_t)hl;
        for (size_t i = hl; ok && i < padded; i++) ok = write(fd, " ", 1) == 1;
        ok = ok && ftruncate(fd, (off_t)(8 + padded + off)) == 0;   /* the data: a hole */
        rc = close(fd) == 0 && ok ? 0 : -1;
    }
    free(hdr);
    if (data_bytes) *data_bytes = off;
    return rc;
}

int ft_write_net(const char *path, cs_net net, cs_dtype dt, int naming)
{
    ft_list a = {0}, b = {0};
    int rc = ft_from_net(&a, net, dt);
    if (!rc) {
        ft_append(&b, &a, "", naming, cs_net_part(net) == CS_PART_STAGE_B);
        rc = ft_write(path, &b, NULL);
    }
    ft_free(&a);
    ft_free(&b);
    return rc;
}
