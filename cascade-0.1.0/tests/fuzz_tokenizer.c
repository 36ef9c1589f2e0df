/* libFuzzer target for the tokenizer's files and prompts: the input is
 * vocab.json \0 merges.txt \0 prompt. Loading must either succeed or fail
 * cleanly; a loaded tokenizer must turn any prompt into ids in range (or
 * reject it), and the byte-level fallback must take the same prompt.
 * A vocab part that starts with '{' gets the 512 byte symbols and the two
 * special tokens put in front of its entries (ids from 100000 up), so small
 * inputs reach the merge and BPE code; any other vocab part is written as is.
 * Built and run by tests/fuzz.sh. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

static char dir[64], vpath[96], mpath[96];

static void cleanup(void)   /* libFuzzer ends with exit() */
{
    unlink(vpath);
    unlink(mpath);
    rmdir(dir);
}

/* The byte-to-unicode alphabet (printable bytes map to themselves, the rest
 * to 256 + n), written as "symbol":id pairs. */
static void write_base(FILE *f)
{
    int extra = 0, id = 100000;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int cp = printable ? b : 256 + extra++;
        unsigned char u[8];
        utf8proc_ssize_t k = utf8proc_encode_char(cp, u);
        if (b == '"' || b == '\\') fputc('\\', f);
        fwrite(u, 1, (size_t)k, f);
        fprintf(f, "\":%d,\"", id++);
        if (b == '"' || b == '\\') fputc('\\', f);
        fwrite(u, 1, (size_t)k, f);
        fprintf(f, "</w>\":%d,\"", id++);
    }
    fprintf(f, "<|startoftext|>\":%d,\"<|endoftext|>\":%d", id, id + 1);
}

static int write_part(const char *path, const unsigned char *p, size_t n, int vocab)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    if (vocab && n && p[0] == '{') {
        fputs("{\"", f);
        write_base(f);
        /* "{}" stays a valid object; "{ ..." continues after a comma */
        size_t i = 1;
        while (i < n && (p[i] == ' ' || p[i] == '\n')) i++;
        if (i < n && p[i] != '}') fputc(',', f);
        fwrite(p + 1, 1, n - 1, f);
    } else
        fwrite(p, 1, n, f);
    return fclose(f);
}

static void use(const cs_tokenizer *t, const char *prompt)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (cs_tokenize(t, prompt, &ids, &n) == 0) {
        int32_t size = cs_tokenizer_size(t);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= size) abort();
        char *text = NULL;
        if (cs_detokenize(t, ids, n, &text) == 0) free(text);
        free(ids);
        int32_t ids77[CS_TOK_CTX], mask[CS_TOK_CTX];
        size_t full;
        if (cs_tokens_77(t, prompt, ids77, mask, &full) != 0) abort();   /* tokenize took it */
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static cs_tokenizer *bytes;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/cs_fuzz_tok_%d", (int)getpid());
        mkdir(dir, 0700);
        snprintf(vpath, sizeof vpath, "%s/vocab.json", dir);
        snprintf(mpath, sizeof mpath, "%s/merges.txt", dir);
        if (cs_tokenizer_bytes(&bytes)) abort();
        atexit(cleanup);
    }
    const unsigned char *z1 = memchr(data, 0, size);
    size_t nv = z1 ? (size_t)(z1 - data) : size;
    const unsigned char *m = z1 ? z1 + 1 : data + size;
    const unsigned char *z2 = memchr(m, 0, (size_t)(data + size - m));
    size_t nm = z2 ? (size_t)(z2 - m) : (size_t)(data + size - m);
    const unsigned char *pr = z2 ? z2 + 1 : data + size;
    size_t np = (size_t)(data + size - pr);
    char *prompt = malloc(np + 1);
    if (!prompt) return 0;
    memcpy(prompt, pr, np);
    prompt[np] = 0;
    use(bytes, prompt);
    if (write_part(vpath, data, nv, 1) == 0 && write_part(mpath, m, nm, 0) == 0) {
        cs_tokenizer *t;
        if (cs_tokenizer_load(dir, &t) == 0) {
            use(t, prompt);
            cs_tokenizer_free(t);
        }
    }
    free(prompt);
    return 0;
}
