/* CLIP byte-level BPE (doc/reference.md). See tokenizer.h for the pipeline. */
#include "tokenizer.h"

#include "error.h"
#include "infile.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MAX_VOCAB (1 << 24)
#define NO_RANK INT32_MAX
#define EMPTY_KEY UINT64_MAX

static const char SOT[] = "<|startoftext|>";
static const char EOT[] = "<|endoftext|>";
/* §2.2 without the special-token alternatives (those are split off first).
 * \s is written as ' ': after clean-up every White_Space run is one space,
 * and PCRE2's \s would also drop U+180E, which HF keeps as a symbol. */
static const char PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^ \\p{L}\\p{N}]+";

struct cs_tokenizer {
    int32_t size;               /* max id + 1 */
    char **str;                 /* id -> token string (NULL for gaps) */
    int32_t byte_id[256];       /* byte symbol */
    int32_t byte_end_id[256];   /* byte symbol + "</w>" */
    int32_t bos, eos;
    /* merge table: (left id << 32 | right id) -> rank, result id */
    uint64_t *pkey;
    int32_t *prank, *pres;
    size_t pmask;               /* capacity - 1 (power of two) */
    pcre2_code *re;
};

/* ---- byte-to-unicode (§2.3) ---------------------------------------------- */

static int is_printable_byte(int b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* byte -> code point; order of ids 0..255 is the printable bytes, then the rest. */
static void byte_table(int32_t cp[256], int order[256])
{
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if (is_printable_byte(b)) { cp[b] = b; order[n++] = b; }
    for (int b = 0; b < 256; b++)
        if (!is_printable_byte(b)) { cp[b] = 256 + extra++; order[n++] = b; }
}

/* ---- merge table ----------------------------------------------------------- */

static size_t pair_slot(const cs_tokenizer *t, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->pmask;
}

static int pair_init(cs_tokenizer *t, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    t->pkey = malloc(cap * sizeof *t->pkey);
    t->prank = malloc(cap * sizeof *t->prank);
    t->pres = malloc(cap * sizeof *t->pres);
    if (!t->pkey || !t->prank || !t->pres)
        return cs_error(CS_ENOMEM, "tokenizer: out of memory for %zu merges", n);
    for (size_t i = 0; i < cap; i++) t->pkey[i] = EMPTY_KEY;
    t->pmask = cap - 1;
    return 0;
}

/* Keeps the first (highest-priority) rank of a repeated pair. */
static void pair_put(cs_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t res)
{
    uint64_t key = (uint64_t)a << 32 | (uint32_t)b;
    size_t i = pair_slot(t, key);
    while (t->pkey[i] != EMPTY_KEY) {
        if (t->pkey[i] == key) return;
        i = (i + 1) & t->pmask;
    }
    t->pkey[i] = key;
    t->prank[i] = rank;
    t->pres[i] = res;
}

static int32_t pair_get(const cs_tokenizer *t, int32_t a, int32_t b, int32_t *res)
{
    uint64_t key = (uint64_t)a << 32 | (uint32_t)b;
    for (size_t i = pair_slot(t, key);; i = (i + 1) & t->pmask) {
        if (t->pkey[i] == key) { *res = t->pres[i]; return t->prank[i]; }
        if (t->pkey[i] == EMPTY_KEY) return NO_RANK;
    }
}

/* ---- loading -------------------------------------------------------------- */

static int read_file(const char *path, char **buf, size_t *len)
{
    return cs_infile_read(path, "tokenizer file", CS_MAX_TOKENIZER_FILE, buf, len);
}

static int compile_pattern(cs_tokenizer *t)
{
    int ec;
    PCRE2_SIZE off;
    t->re = pcre2_compile((PCRE2_SPTR)PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &ec, &off, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return cs_error(CS_EUNSUP, "tokenizer: PCRE2 pattern: %s", (char *)msg);
    }
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);   /* optional speed-up */
    return 0;
}

static int alloc_strings(cs_tokenizer *t, int32_t size)
{
    t->size = size;
    t->str = calloc((size_t)size, sizeof *t->str);
    return t->str ? 0 : cs_error(CS_ENOMEM, "tokenizer: out of memory");
}

/* UTF-8 of the byte symbol of b, optionally followed by "</w>". */
static void byte_symbol(const int32_t cp[256], int b, int end, char out[12])
{
    utf8proc_ssize_t k = utf8proc_encode_char(cp[b], (utf8proc_uint8_t *)out);
    strcpy(out + k, end ? "</w>" : "");
}

static int load_vocab(cs_tokenizer *t, const char *path, json_t **root_out)
{
    char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len);
    if (rc) return rc;
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    free(buf);
    if (!root)
        return cs_error(CS_EFORMAT, "%s: line %d column %d: %s", path, jerr.line, jerr.column,
                        jerr.text);
    if (!json_is_object(root) || json_object_size(root) < 514) {
        json_decref(root);
        return cs_error(CS_EFORMAT, "%s: expected a JSON object of token -> id (>= 514 entries)",
                        path);
    }
    const char *key;
    json_t *val;
    json_int_t max = -1;
    json_object_foreach(root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= MAX_VOCAB) {
            /* the message first: key belongs to root (use after free, found by fuzz_tokenizer) */
            rc = cs_error(CS_EFORMAT, "%s: token \"%s\": id is not an integer in [0, %d)", path, key,
                          MAX_VOCAB);
            json_decref(root);
            return rc;
        }
        if (id > max) max = id;
    }
    if ((rc = alloc_strings(t, (int32_t)max + 1))) { json_decref(root); return rc; }
    json_object_foreach(root, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (t->str[id]) {
            rc = cs_error(CS_EFORMAT, "%s: id %d is used by \"%s\" and \"%s\"", path, id,
                          t->str[id], key);
            json_decref(root);
            return rc;
        }
        if (!(t->str[id] = strdup(key))) { json_decref(root); return cs_error(CS_ENOMEM, "oom"); }
    }
    *root_out = root;
    return 0;
}

static int32_t vocab_id(json_t *vocab, const char *s)
{
    json_t *v = json_object_get(vocab, s);
    return v ? (int32_t)json_integer_value(v) : -1;
}

static int load_merges(cs_tokenizer *t, const char *path, json_t *vocab)
{
    char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len);
    if (rc) return rc;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    if ((rc = pair_init(t, lines))) { free(buf); return rc; }

    char *tmp = malloc(len + 1);
    int32_t rank = 0;
    char *p = buf;
    for (size_t lineno = 1; p < buf + len && rc == 0; lineno++) {
        char *e = strchr(p, '\n');
        if (!e) e = buf + len;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r') n--;
        char *line = p;
        p = e + 1;
        if (n == 0 || (lineno == 1 && n >= 8 && !memcmp(line, "#version", 8))) continue;
        char *sp = memchr(line, ' ', n);
        if (!sp || sp == line || sp == line + n - 1 || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - line))) {
            rc = cs_error(CS_EFORMAT, "%s: line %zu: expected \"left right\"", path, lineno);
            break;
        }
        size_t nl = (size_t)(sp - line), nr = n - nl - 1;
        if (memchr(line, 0, n)) {
            rc = cs_error(CS_EFORMAT, "%s: line %zu: NUL byte", path, lineno);
            break;
        }
        /* tmp = left \0 right \0 left+right \0 */
        memcpy(tmp, line, nl); tmp[nl] = 0;
        memcpy(tmp + nl + 1, sp + 1, nr); tmp[n] = 0;
        char *both = malloc(n);
        if (!both) { rc = cs_error(CS_ENOMEM, "oom"); break; }
        memcpy(both, line, nl); memcpy(both + nl, sp + 1, nr); both[n - 1] = 0;
        int32_t a = vocab_id(vocab, tmp), b = vocab_id(vocab, tmp + nl + 1), r = vocab_id(vocab, both);
        if (a < 0 || b < 0 || r < 0)
            rc = cs_error(CS_EFORMAT, "%s: line %zu: token \"%s\" is not in vocab.json", path,
                          lineno, a < 0 ? tmp : b < 0 ? tmp + nl + 1 : both);
        free(both);
        if (rc) break;
        pair_put(t, a, b, rank++, r);
    }
    free(tmp);
    free(buf);
    if (!rc && rank == 0) rc = cs_error(CS_EFORMAT, "%s: no merges found", path);
    return rc;
}

static int setup_bytes(cs_tokenizer *t, json_t *vocab, const char *vpath)
{
    int32_t cp[256];
    int order[256];
    byte_table(cp, order);
    for (int b = 0; b < 256; b++) {
        char s[12];
        for (int end = 0; end < 2; end++) {
            byte_symbol(cp, b, end, s);
            int32_t id = vocab_id(vocab, s);
            if (id < 0) return cs_error(CS_EFORMAT, "%s: byte symbol \"%s\" is missing", vpath, s);
            (end ? t->byte_end_id : t->byte_id)[b] = id;
        }
    }
    t->bos = vocab_id(vocab, SOT);
    t->eos = vocab_id(vocab, EOT);
    if (t->bos < 0 || t->eos < 0)
        return cs_error(CS_EFORMAT, "%s: special token %s is missing", vpath, t->bos < 0 ? SOT : EOT);
    return 0;
}

int cs_tokenizer_load(const char *dir, cs_tokenizer **out)
{
    *out = NULL;
    if (!dir || !*dir) return cs_error(CS_EARG, "tokenizer: no folder given");
    size_t dl = strlen(dir);
    char *vpath = malloc(dl + 16), *mpath = malloc(dl + 16);
    cs_tokenizer *t = calloc(1, sizeof *t);
    json_t *vocab = NULL;
    int rc = (!vpath || !mpath || !t) ? cs_error(CS_ENOMEM, "tokenizer: out of memory") : 0;
    if (!rc) {
        sprintf(vpath, "%s/vocab.json", dir);
        sprintf(mpath, "%s/merges.txt", dir);
        rc = load_vocab(t, vpath, &vocab);
    }
    if (!rc) rc = setup_bytes(t, vocab, vpath);
    if (!rc) rc = load_merges(t, mpath, vocab);
    if (!rc) rc = compile_pattern(t);
    json_decref(vocab);
    free(vpath);
    free(mpath);
    if (rc) { cs_tokenizer_free(t); return rc; }
    *out = t;
    return 0;
}

int cs_tokenizer_bytes(cs_tokenizer **out)
{
    *out = NULL;
    cs_tokenizer *t = calloc(1, sizeof *t);
    int rc = t ? alloc_strings(t, CS_TOK_EOS + 1) : cs_error(CS_ENOMEM, "tokenizer: oom");
    if (!rc) rc = pair_init(t, 0);
    int32_t cp[256];
    int order[256];
    byte_table(cp, order);
    for (int i = 0; i < 256 && !rc; i++) {
        char s[12];
        int b = order[i];
        byte_symbol(cp, b, 0, s);
        t->str[i] = strdup(s);
        byte_symbol(cp, b, 1, s);
        t->str[256 + i] = strdup(s);
        if (!t->str[i] || !t->str[256 + i]) rc = cs_error(CS_ENOMEM, "tokenizer: oom");
        t->byte_id[b] = i;
        t->byte_end_id[b] = 256 + i;
    }
    if (!rc) {
        t->bos = CS_TOK_BOS;
        t->eos = CS_TOK_EOS;
        t->str[CS_TOK_BOS] = strdup(SOT);
        t->str[CS_TOK_EOS] = strdup(EOT);
        rc = compile_pattern(t);
    }
    if (rc) { cs_tokenizer_free(t); return rc; }
    *out = t;
    return 0;
}

void cs_tokenizer_free(cs_tokenizer *t)
{
    if (!t) return;
    if (t->str)
        for (int32_t i = 0; i < t->size; i++) free(t->str[i]);
    free(t->str);
    free(t->pkey);
    free(t->prank);
    free(t->pres);
    pcre2_code_free(t->re);
    free(t);
}

int32_t cs_tokenizer_size(const cs_tokenizer *t) { return t->size; }

const char *cs_token_str(const cs_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->size ? t->str[id] : NULL;
}

/* ---- text clean-up (§2.1) -------------------------------------------------- */

/* Strict UTF-8 decoder: code point and its length, or -1. */
static int32_t utf8_next(const unsigned char *s, size_t n, int *len)
{
    unsigned c = s[0];
    int k;
    int32_t cp, min;
    if (c < 0x80) { *len = 1; return (int32_t)c; }
    if (c >= 0xC2 && c <= 0xDF) { k = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { k = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 4; cp = c & 0x07; min = 0x10000; }
    else return -1;
    if ((size_t)k > n) return -1;
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    *len = k;
    return cp;
}

static int is_white_space(int32_t cp)
{
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85) return 1;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

static int check_utf8(const char *text)
{
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        int k;
        if (utf8_next((const unsigned char *)text + i, n - i, &k) < 0)
            return cs_error(CS_EARG, "prompt: invalid UTF-8 at byte %zu", i);
        i += (size_t)k;
    }
    return 0;
}

/* text[0..n) (valid UTF-8): NFC, White_Space runs -> ' ', lowercase.
 * *out is malloc'ed. */
static int normalize(const char *text, size_t n, char **out)
{
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) return cs_error(CS_EARG, "prompt: %s", utf8proc_errmsg(m));
    /* a lowercase form is at most 1.5x longer in UTF-8 (2-byte -> 3-byte) */
    char *o = malloc(2 * (size_t)m + 1);
    if (!o) { free(nfc); return cs_error(CS_ENOMEM, "prompt: out of memory"); }
    size_t j = 0;
    int in_space = 0;
    for (utf8proc_ssize_t i = 0; i < m;) {
        utf8proc_int32_t cp;
        i += utf8proc_iterate(nfc + i, m - i, &cp);
        if (is_white_space(cp)) {
            if (!in_space) o[j++] = ' ';
            in_space = 1;
            continue;
        }
        in_space = 0;
        if (cp == 0x130) {   /* full lowercase mapping: i + combining dot above */
            j += (size_t)utf8proc_encode_char('i', (utf8proc_uint8_t *)o + j);
            cp = 0x307;
        } else {
            cp = utf8proc_tolower(cp);
        }
        j += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)o + j);
    }
    o[j] = 0;
    free(nfc);
    *out = o;
    return 0;
}

/* ---- growing id list and the per-call word cache --------------------------- */

typedef struct {
    int32_t *v;
    size_t n, cap;
} idvec;

static int idvec_push(idvec *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return cs_error(CS_ENOMEM, "tokenizer: out of memory");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* word (pointer into the normalised text) -> its ids, stored in pool */
typedef struct {
    const char *word;    /* NULL = empty slot */
    size_t len;
    size_t off, cnt;     /* ids at pool.v[off .. off+cnt) */
} cache_entry;

typedef struct {
    cache_entry *e;
    size_t mask, used;
    idvec pool;
    int32_t *sym;        /* BPE scratch */
    size_t sym_cap;
} word_cache;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static cache_entry *cache_find(word_cache *c, const char *w, size_t n)
{
    for (size_t i = hash_bytes(w, n) & c->mask;; i = (i + 1) & c->mask) {
        cache_entry *e = &c->e[i];
        if (!e->word || (e->len == n && !memcmp(e->word, w, n))) return e;
    }
}

static int cache_grow(word_cache *c)
{
    word_cache old = *c;
    size_t cap = old.e ? 2 * (old.mask + 1) : 256;
    c->e = calloc(cap, sizeof *c->e);
    if (!c->e) { c->e = old.e; return cs_error(CS_ENOMEM, "tokenizer: out of memory"); }
    c->mask = cap - 1;
    for (size_t i = 0; old.e && i <= old.mask; i++)
        if (old.e[i].word) *cache_find(c, old.e[i].word, old.e[i].len) = old.e[i];
    free(old.e);
    return 0;
}

/* ---- BPE (§2.4) ------------------------------------------------------------ */

/* Merges sym[0..n) in place; returns the new length. */
static size_t bpe(const cs_tokenizer *t, int32_t *sym, size_t n)
{
    while (n > 1) {
        int32_t best = NO_RANK, res = 0, r2;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t r = pair_get(t, sym[i], sym[i + 1], &r2);
            if (r < best) { best = r; at = i; res = r2; }
        }
        if (best == NO_RANK) break;
        /* merge every non-overlapping occurrence, leftmost first */
        int32_t a = sym[at], b = sym[at + 1];
        size_t j = at;
        for (size_t i = at; i < n;) {
            if (i + 1 < n && sym[i] == a && sym[i + 1] == b) { sym[j++] = res; i += 2; }
            else sym[j++] = sym[i++];
        }
        n = j;
    }
    return n;
}

static int encode_word(const cs_tokenizer *t, word_cache *c, const char *w, size_t n, idvec *out)
{
    if (2 * (c->used + 1) > c->mask + 1) {
        int rc = cache_grow(c);
        if (rc) return rc;
    }
    cache_entry *e = cache_find(c, w, n);
    if (!e->word) {
        if (n > c->sym_cap) {
            int32_t *s = realloc(c->sym, n * sizeof *s);
            if (!s) return cs_error(CS_ENOMEM, "tokenizer: out of memory");
            c->sym = s;
            c->sym_cap = n;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char b = (unsigned char)w[i];
            c->sym[i] = i + 1 < n ? t->byte_id[b] : t->byte_end_id[b];
        }
        /* BPE is quadratic in the word length: a word longer than
         * CS_TOK_WORD_MAX bytes (never seen in real prompts; a run of
         * letters, digits or punctuation) is merged in pieces of at most
         * that size, cut at UTF-8 character starts */
        size_t m = 0;
        for (size_t at = 0; at < n;) {
            size_t len = n - at;
            if (len > CS_TOK_WORD_MAX) {
                len = CS_TOK_WORD_MAX;
                while (len > 1 && ((unsigned char)w[at + len] & 0xC0) == 0x80)
                    len--;
            }
            size_t k = bpe(t, c->sym + at, len);
            memmove(c->sym + m, c->sym + at, k * sizeof *c->sym);
            m += k;
            at += len;
        }
        e->word = w;
        e->len = n;
        e->off = c->pool.n;
        e->cnt = m;
        c->used++;
        for (size_t i = 0; i < m; i++) {
            int rc = idvec_push(&c->pool, c->sym[i]);
            if (rc) return rc;
        }
    }
    for (size_t i = 0; i < e->cnt; i++) {
        int rc = idvec_push(out, c->pool.v[e->off + i]);
        if (rc) return rc;
    }
    return 0;
}

/* Splits s[0..n) into regex words and appends their ids. */
static int encode_segment(const cs_tokenizer *t, word_cache *c, pcre2_match_data *md,
                          const char *s, size_t n, idvec *out)
{
    size_t pos = 0;
    while (pos < n) {
        int r = pcre2_match(t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (r == PCRE2_ERROR_NOMATCH) break;
        if (r < 0) return cs_error(CS_EUNSUP, "tokenizer: PCRE2 match error %d", r);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] <= ov[0]) return cs_error(CS_EUNSUP, "tokenizer: empty regex match");
        int rc = encode_word(t, c, s + ov[0], ov[1] - ov[0], out);
        if (rc) return rc;
        pos = ov[1];
    }
    return 0;
}

/* Next special-token string in p (case-sensitive, on the raw text like HF's
 * non-normalised added tokens): its position (NULL if none) and id. */
static const char *next_special(const cs_tokenizer *t, const char *p, int32_t *id, size_t *len)
{
    const char *a = strstr(p, SOT), *b = strstr(p, EOT);
    if (a && (!b || a < b)) { *id = t->bos; *len = sizeof SOT - 1; return a; }
    *id = t->eos;
    *len = sizeof EOT - 1;
    return b;
}

int cs_tokenize(const cs_tokenizer *t, const char *text, int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!text) return cs_error(CS_EARG, "prompt: NULL text");
    int rc = check_utf8(text);
    if (rc) return rc;
    word_cache c = {0};
    idvec out = {0};
    char **segs = NULL;   /* normalised segments; the word cache points into them */
    size_t nsegs = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
    rc = md ? idvec_push(&out, t->bos) : cs_error(CS_ENOMEM, "tokenizer: out of memory");
    /* special-token strings split the raw text first, then each piece is cleaned up */
    for (const char *p = text; !rc && *p;) {
        int32_t id;
        size_t sl;
        const char *sp = next_special(t, p, &id, &sl);
        size_t seg = sp ? (size_t)(sp - p) : strlen(p);
        char **g = realloc(segs, (nsegs + 1) * sizeof *segs);
        if (!g) { rc = cs_error(CS_ENOMEM, "tokenizer: out of memory"); break; }
        segs = g;
        if ((rc = normalize(p, seg, &segs[nsegs]))) break;
        nsegs++;
        rc = encode_segment(t, &c, md, segs[nsegs - 1], strlen(segs[nsegs - 1]), &out);
        if (!sp || rc) break;
        rc = idvec_push(&out, id);
        p = sp + sl;
    }
    if (!rc) rc = idvec_push(&out, t->eos);
    pcre2_match_data_free(md);
    free(c.e);
    free(c.pool.v);
    free(c.sym);
    for (size_t i = 0; i < nsegs; i++) free(segs[i]);
    free(segs);
    if (rc) { free(out.v); return rc; }
    *ids = out.v;
    *n = out.n;
    return 0;
}

int cs_tokens_77(const cs_tokenizer *t, const char *text,
                 int32_t ids[CS_TOK_CTX], int32_t mask[CS_TOK_CTX], size_t *n_full)
{
    int32_t *all;
    size_t n;
    int rc = cs_tokenize(t, text, &all, &n);
    if (rc) return rc;
    size_t keep = n - 2 < CS_TOK_CTX - 2 ? n - 2 : CS_TOK_CTX - 2;
    ids[0] = all[0];
    for (size_t i = 0; i < keep; i++) ids[1 + i] = all[1 + i];
    ids[keep + 1] = t->eos;
    for (size_t i = 0; i < CS_TOK_CTX; i++) {
        mask[i] = i < keep + 2;
        if (i >= keep + 2) ids[i] = t->eos;
    }
    if (n_full) *n_full = n;
    free(all);
    return 0;
}

/* ---- decoding (§4) ---------------------------------------------------------- */

int cs_detokenize(const cs_tokenizer *t, const int32_t *ids, size_t n, char **text)
{
    *text = NULL;
    int32_t cp_of[256], inv[324];
    int order[256];
    byte_table(cp_of, order);
    for (int i = 0; i < 324; i++) inv[i] = '?';
    for (int b = 0; b < 256; b++) inv[cp_of[b]] = b;
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        const char *s = cs_token_str(t, ids[i]);
        if (s) total += strlen(s);
    }
    unsigned char *raw = malloc(total);
    char *o = malloc(3 * total + 1);
    if (!raw || !o) { free(raw); free(o); return cs_error(CS_ENOMEM, "detokenize: oom"); }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = cs_token_str(t, ids[i]);
        if (!s || ids[i] == t->bos || ids[i] == t->eos) continue;
        size_t sl = strlen(s);
        for (size_t p = 0; p < sl;) {
            int len;
            int32_t cp = utf8_next((const unsigned char *)s + p, sl - p, &len);
            if (cp < 0) { len = 1; cp = '?'; }
            if (!strncmp(s + p, "</w>", 4)) { raw[k++] = ' '; p += 4; continue; }
            raw[k++] = cp < 324 ? (unsigned char)inv[cp] : '?';
            p += (size_t)len;
        }
    }
    /* bytes -> UTF-8 with U+FFFD for bad sequences, then strip */
    size_t j = 0;
    for (size_t p = 0; p < k;) {
        int len;
        if (utf8_next(raw + p, k - p, &len) < 0) {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            p++;
        } else {
            memcpy(o + j, raw + p, (size_t)len);
            j += (size_t)len;
            p += (size_t)len;
        }
    }
    while (j && o[j - 1] == ' ') j--;
    o[j] = 0;
    size_t lead = strspn(o, " ");
    memmove(o, o + lead, j - lead + 1);
    free(raw);
    *text = o;
    return 0;
}
