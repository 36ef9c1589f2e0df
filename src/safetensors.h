/* safetensors files: mmap reader with full validation, and a small writer.
 * Format: the safetensors README (huggingface/safetensors, "Format"). Tensors point into the mapping (zero-copy,
 * possibly unaligned); lookup by name is a hash table. */
#ifndef CS_SAFETENSORS_H
#define CS_SAFETENSORS_H

#include "tensor.h"

typedef struct cs_st_file cs_st_file;

#define CS_ST_MAX_HEADER (100u * 1024u * 1024u)

/* Opens and validates path; every failure is one line naming the file (and
 * the tensor) in cs_last_error(). */
int cs_st_open(const char *path, cs_st_file **out);
void cs_st_close(cs_st_file *f);   /* NULL is fine */
/* Drops this process's pages of [p, p + bytes) (whole pages inside it) when
 * the range lies in an open file's mapping: for data copied elsewhere (the
 * CPU's packed bf16 weights), so RSS does not hold it twice. Touching it
 * again reads it back. Returns 1 if the range was in a mapping, else 0. */
int cs_st_release_pages(const void *p, size_t bytes);

const char *cs_st_path(const cs_st_file *f);
uint64_t cs_st_file_size(const cs_st_file *f);
int cs_st_count(const cs_st_file *f);
const cs_tensor *cs_st_at(const cs_st_file *f, int i);           /* header order */
const cs_tensor *cs_st_find(const cs_st_file *f, const char *name); /* NULL if absent */
/* __metadata__ value for key, or NULL. */
const char *cs_st_meta(const cs_st_file *f, const char *key);
int cs_st_meta_count(const cs_st_file *f);
void cs_st_meta_at(const cs_st_file *f, int i, const char **key, const char **value);


/* Writes tensors (data taken from each cs_tensor, dtype as given) and string
 * metadata pairs meta[0..2*n_meta) to path, atomically (temp + rename). */
int cs_st_write(const char *path, const cs_tensor *tensors, int n,
                const char *const *meta, int n_meta);

/* mode & ~umask, for files and folders made with mkstemp/mkdtemp (0600/0700)
 * that become the user's outputs: they get the mode open() would give. */
unsigned cs_st_umask_mode(unsigned mode);

#endif
