/* ComfyUI prompt syntax: escapes, (weights), segments and 77-token chunks.
 * See prompt.h for the rules; the comments here say where ComfyUI's
 * behaviour is odd on purpose (we follow it so prompts mean the same). */
#define _POSIX_C_SOURCE 200809L   /* strndup, strncasecmp */
#include "prompt.h"

#include "error.h"

#include <math.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Escaped parentheses become bytes that never occur in UTF-8 (the prompt is
 * validated by the tokenizer later; 0xFE/0xFF are rejected up front). */
#define ESC_CLOSE '\xfe'
#define ESC_OPEN '\xff'
#define GROUP_LARGE 8   /* ComfyUI's max_word_length */

const char *cs_prompt_style_name(cs_prompt_style s)
{
    return s == CS_PROMPT_OFFICIAL ? "official" : "comfyui";
}

int cs_prompt_style_parse(const char *s)
{
    if (!strcmp(s, "official")) return CS_PROMPT_OFFICIAL;
    if (!strcmp(s, "comfyui")) return CS_PROMPT_COMFYUI;
    return -1;
}

/* ---------------------------------------------------------------- text */

typedef struct {
    char *s;
    size_t n, cap;
} buf;

static int put(buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->s, cap);
        if (!p) return cs_oom("the prompt", cap);
        b->s = p, b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

/* Length of the UTF-8 White_Space character Python's str.isspace() accepts
 * at s (used by float() and str.split()), 0 if none. */
static size_t py_space(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n >= 1 && ((u[0] >= 0x09 && u[0] <= 0x0d) || (u[0] >= 0x1c && u[0] <= 0x20)))
        return 1;
    if (n >= 2 && u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0))
        return 2;
    if (n < 3) return 0;
    unsigned cp = ((u[0] & 0x0fu) << 12) | ((u[1] & 0x3fu) << 6) | (u[2] & 0x3fu);
    if ((u[0] & 0xf0) != 0xe0) return 0;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
        cp == 0x205f || cp == 0x3000)
        return 3;
    return 0;
}

/* Length of the last White_Space character ending at s + n, 0 if none. */
static size_t py_space_back(const char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++)
        if (py_space(s + n - k, k) == k) return k;
    return 0;
}

/* Python's float(s) for ASCII digits: surrounding White_Space, sign,
 * digits with single '_' between digits, '.', exponent, inf/infinity/nan.
 * (float() also takes non-ASCII decimal digits; we do not.) */
static int py_float(const char *s, size_t n, double *out)
{
    size_t k;
    while (n && (k = py_space(s, n)) != 0) s += k, n -= k;
    while (n && (k = py_space_back(s, n)) != 0) n -= k;
    char tmp[128];
    size_t m = 0, i = 0;
    if (n == 0 || n >= sizeof tmp) return -1;
    if (s[i] == '+' || s[i] == '-') tmp[m++] = s[i++];
    const char *words[] = {"inf", "infinity", "nan"};
    for (int w = 0; w < 3; w++)
        if (n - i == strlen(words[w]) && !strncasecmp(s + i, words[w], n - i)) {
            double v = w == 2 ? NAN : INFINITY;
            *out = tmp[0] == '-' ? -v : v;
            return 0;
        }
    int digits = 0, in_exp = 0;
    for (; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            tmp[m++] = c, digits++;
        } else if (c == '_') {   /* only between two digits */
            if (i == 0 || i + 1 >= n || s[i - 1] < '0' || s[i - 1] > '9' || s[i + 1] < '0' || s[i + 1] > '9')
                return -1;
        } else if (c == '.' && !in_exp) {
            if (memchr(tmp, '.', m)) return -1;
            tmp[m++] = c;
        } else if ((c == 'e' || c == 'E') && !in_exp && digits) {
            in_exp = 1, digits = 0;
            tmp[m++] = 'e';
            if (i + 1 < n && (s[i + 1] == '+' || s[i + 1] == '-')) tmp[m++] = s[++i];
        } else {
            return -1;
        }
    }
    if (!digits) return -1;
    tmp[m] = 0;
    *out = strtod(tmp, NULL);
    return 0;
}

static int add_seg(cs_prompt_seg **segs, size_t *n, size_t *cap, const char *s, size_t len, double w)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        cs_prompt_seg *p = realloc(*segs, c * sizeof *p);
        if (!p) return cs_oom("the prompt segments", c * sizeof *p);
        *segs = p, *cap = c;
    }
    char *t = malloc(len + 1);
    if (!t) return cs_oom("the prompt segments", len + 1);
    /* unescape: the markers become literal parentheses */
    for (size_t i = 0; i < len; i++)
        t[i] = s[i] == ESC_OPEN ? '(' : s[i] == ESC_CLOSE ? ')' : s[i];
    t[len] = 0;
    (*segs)[(*n)++] = (cs_prompt_seg){t, w};
    return 0;
}

static int weights_rec(const char *s, size_t len, double w, cs_prompt_seg **segs, size_t *n, size_t *cap,
                       int depth);

/* One item of the scanner: "(...)" is weighted and parsed again, anything
 * else is text with the current weight. */
static int item(const char *x, size_t xl, double w, cs_prompt_seg **segs, size_t *n, size_t *cap, int depth)
{
    if (xl < 2 || x[0] != '(' || x[xl - 1] != ')')
        return add_seg(segs, n, cap, x, xl, w);
    const char *in = x + 1;
    size_t il = xl - 2, colon = il;
    double nw = w * 1.1, v;
    for (size_t k = il; k-- > 0;)
        if (in[k] == ':') {
            colon = k;
            break;
        }
    if (colon < il && colon > 0 && py_float(in + colon + 1, il - colon - 1, &v) == 0) {
        if (!isfinite(v))
            return cs_error(CS_EARG, "prompt: weight '%.*s' is not a finite number", (int)(il - colon - 1),
                            in + colon + 1);
        nw = v, il = colon;
    }
    return weights_rec(in, il, nw, segs, n, cap, depth + 1);
}

/* ComfyUI's token_weights over s[0..len): top-level items are split by a
 * depth counter that may go negative on a stray ')' (then that ')' and what
 * follows stay in the current item until the depth returns to 0). An item
 * ends before a '(' at depth 0, after a ')' that brings the depth to 0, and
 * at the end of the text. */
static int weights_rec(const char *s, size_t len, double w, cs_prompt_seg **segs, size_t *n, size_t *cap,
                       int depth)
{
    if (depth > 1000)
        return cs_error(CS_EARG, "prompt: parentheses nested more than 1000 deep");
    size_t start = 0;
    int level = 0, rc = 0;
    for (size_t i = 0; i < len && !rc; i++) {
        if (s[i] == '(') {
            if (level == 0) {
                if (i > start) rc = item(s + start, i - start, w, segs, n, cap, depth);
                start = i;
            }
            level++;
        } else if (s[i] == ')' && --level == 0) {
            rc = item(s + start, i + 1 - start, w, segs, n, cap, depth);
            start = i + 1;
        }
    }
    if (!rc && start < len)
        rc = item(s + start, len - start, w, segs, n, cap, depth);
    return rc;
}

void cs_prompt_segs_free(cs_prompt_seg *segs, size_t n)
{
    for (size_t i = 0; segs && i < n; i++) free(segs[i].text);
    free(segs);
}

int cs_prompt_segments(const char *text, cs_prompt_seg **segs, size_t *n)
{
    *segs = NULL, *n = 0;
    size_t len = strlen(text), cap = 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] >= 0xfe)
            return cs_error(CS_EARG, "prompt: invalid UTF-8 at byte %zu", i);
    char *e = malloc(len + 1);
    if (!e) return cs_oom("the prompt", len + 1);
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {   /* \) and \( are literal */
        if (text[i] == '\\' && i + 1 < len && (text[i + 1] == ')' || text[i + 1] == '(')) {
            e[m++] = text[i + 1] == ')' ? ESC_CLOSE : ESC_OPEN;
            i++;
        } else {
            e[m++] = text[i];
        }
    }
    int rc = weights_rec(e, m, 1.0, segs, n, &cap, 0);
    free(e);
    if (rc) {
        cs_prompt_segs_free(*segs, *n);
        *segs = NULL, *n = 0;
    }
    return rc;
}

/* ---------------------------------------------------------------- tokens */

typedef struct {
    int32_t *id;
    double *w;
    size_t n, cap;
} toks;

static int tpush(toks *t, int32_t id, double w)
{
    if (t->n == t->cap) {
        size_t c = t->cap ? t->cap * 2 : 256;
        int32_t *a = realloc(t->id, c * sizeof *a);
        if (!a) return cs_oom("the prompt tokens", c * sizeof *a);
        t->id = a;
        double *b = realloc(t->w, c * sizeof *b);
        if (!b) return cs_oom("the prompt tokens", c * sizeof *b);
        t->w = b, t->cap = c;
    }
    t->id[t->n] = id, t->w[t->n] = w, t->n++;
    return 0;
}

/* Chunker state: the output so far and the current chunk's fill. */
typedef struct {
    toks out;
    size_t fill;   /* tokens in the current (last) chunk */
} chunker;

static int close_chunk(chunker *c)
{
    int rc = tpush(&c->out, CS_TOK_EOS, 1.0);
    while (!rc && ++c->fill < CS_TOK_CTX) rc = tpush(&c->out, CS_TOK_EOS, 1.0);   /* pad = EOS */
    if (!rc) rc = tpush(&c->out, CS_TOK_BOS, 1.0);
    c->fill = 1;
    return rc;
}

/* One word group: small groups never straddle chunks, large ones split. */
static int add_group(chunker *c, const int32_t *id, size_t n, double w)
{
    int large = n >= GROUP_LARGE, rc = 0;
    while (n > 0 && !rc) {
        if (c->fill + n > CS_TOK_CTX - 1) {
            size_t room = CS_TOK_CTX - 1 - c->fill;
            if (large) {
                for (size_t i = 0; i < room && !rc; i++) rc = tpush(&c->out, id[i], w);
                id += room, n -= room, c->fill += room;
            }
            if (!rc) rc = close_chunk(c);
        } else {
            for (size_t i = 0; i < n && !rc; i++) rc = tpush(&c->out, id[i], w);
            c->fill += n, n = 0;
        }
    }
    return rc;
}

static void warnf(cs_prompt_warn_fn warn, void *ctx, const char *fmt, const char *a)
{
    if (!warn) return;
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a);
    warn(ctx, msg);
}

/* Appends ids [vocab + n_emb ...) for rows to p->emb. */
static int add_emb_rows(cs_prompt *p, const float *rows, size_t n, int width, chunker *c, double w)
{
    float *e = realloc(p->emb, (p->n_emb + n) * (size_t)width * sizeof *e);
    if (!e) return cs_oom("the prompt embeddings", (p->n_emb + n) * (size_t)width * sizeof *e);
    p->emb = e;
    memcpy(e + p->n_emb * (size_t)width, rows, n * (size_t)width * sizeof *e);
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return cs_oom("the prompt embeddings", n * sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = p->vocab + (int32_t)(p->n_emb + i);
    p->n_emb += n, p->emb_width = width;
    int rc = add_group(c, ids, n, w);
    free(ids);
    return rc;
}

static int bpe_group(const cs_tokenizer *t, const char *s, size_t len, chunker *c, double w)
{
    char *tmp = malloc(len + 1);
    if (!tmp) return cs_oom("the prompt", len + 1);
    memcpy(tmp, s, len);
    tmp[len] = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = cs_tokenize(t, tmp, &ids, &n);   /* BOS ... EOS */
    free(tmp);
    if (!rc && n >= 2) rc = add_group(c, ids + 1, n - 2, w);
    free(ids);
    return rc;
}

static const char EMB[] = "embedding:";
#define EMB_LEN (sizeof EMB - 1)

/* A word starting with "embedding:". ComfyUI: the name is the first
 * whitespace-separated word; the rest (joined by single spaces) is text.
 * If NAME is missing but NAME without its ','s exists, that one is used and
 * the cut-off tail + " " + rest is text (tail taken from the end: ComfyUI's
 * way, even for leading commas). */
static int embedding_word(const cs_tokenizer *t, cs_embeddings *emb, const char *word, size_t len, chunker *c,
                          cs_prompt *p, double w, cs_prompt_warn_fn warn, void *wctx)
{
    const char *s = word + EMB_LEN;
    size_t n = len - EMB_LEN, k;
    while (n && s[0] == '\n') s++, n--;   /* .strip('\n') */
    while (n && s[n - 1] == '\n') n--;
    /* words of s, by Python whitespace */
    buf name = {0}, rest = {0};
    int rc = 0, nw = 0;
    for (size_t i = 0; i < n && !rc;) {
        if ((k = py_space(s + i, n - i)) != 0) { i += k; continue; }
        size_t j = i;
        while (j < n && !py_space(s + j, n - j)) j++;
        if (nw++ == 0) rc = put(&name, s + i, j - i);
        else rc = (rest.n ? put(&rest, " ", 1) : 0) || put(&rest, s + i, j - i) ? CS_ENOMEM : 0;
        i = j;
    }
    if (!rc && name.n == 0) rc = put(&name, "", 0);
    size_t cut = rc ? 0 : strcspn(name.s, "<[");
    if (!rc && cut < name.n) {   /* "embedding:x<lora:..>": the tail is text */
        buf r2 = {0};
        rc = put(&r2, name.s + cut, name.n - cut) || (rest.n && (put(&r2, " ", 1) || put(&r2, rest.s, rest.n)))
                 ? CS_ENOMEM : 0;
        free(rest.s);
        rest = r2;
        name.s[cut] = 0, name.n = cut;
    }
    const float *rows = NULL;
    size_t nr = 0;
    int found = 0;
    buf left = {0};
    if (!rc && emb) found = cs_embeddings_get(emb, name.s, &rows, &nr);
    if (found < 0) rc = found;
    if (!rc && !found) {
        size_t a = 0, b = name.n;
        while (a < b && name.s[a] == ',') a++;
        while (b > a && name.s[b - 1] == ',') b--;
        if (b - a < name.n) {
            char *st = strndup(name.s + a, b - a);
            if (!st) rc = cs_oom("the prompt", b - a);
            if (!rc && emb) found = cs_embeddings_get(emb, st, &rows, &nr);
            free(st);
            if (found < 0) rc = found;
            if (!rc)
                rc = put(&left, name.s + (b - a), name.n - (b - a)) || put(&left, " ", 1) ||
                             put(&left, rest.s ? rest.s : "", rest.n) ? CS_ENOMEM : 0;
        } else if (!rc) {
            rc = put(&left, rest.s ? rest.s : "", rest.n);
        }
    } else if (!rc) {
        rc = put(&left, rest.s ? rest.s : "", rest.n);
    }
    if (!rc && !found)
        warnf(warn, wctx,
              emb ? "prompt: embedding:%s not found in the embeddings folder; it is ignored"
                  : "prompt: embedding:%s is ignored (no --embeddings folder)",
              name.s);
    if (!rc && found) rc = add_emb_rows(p, rows, nr, emb ? cs_embeddings_width(emb) : 0, c, w);
    if (!rc && left.n) rc = bpe_group(t, left.s, left.n, c, w);
    free(name.s), free(rest.s), free(left.s);
    return rc;
}

void cs_prompt_free(cs_prompt *p)
{
    if (!p) return;
    free(p->ids), free(p->weights), free(p->emb);
    memset(p, 0, sizeof *p);
}

/* Splits a segment before each "embedding:" that follows White_Space
 * (ComfyUI's regex (?<=\s)embedding: -- the space stays with the text). */
static int segment(const cs_tokenizer *t, cs_embeddings *emb, const cs_prompt_seg *sg, chunker *c, cs_prompt *p,
                   cs_prompt_warn_fn warn, void *wctx)
{
    const char *s = sg->text;
    size_t len = strlen(s), a = 0;
    int rc = 0;
    while (!rc && a < len) {
        size_t b = a + (a > 0 ? EMB_LEN : 0);   /* pieces after the first start with "embedding:" */
        for (; b < len; b++)
            if (!strncmp(s + b, EMB, EMB_LEN) && b > 0 && py_space_back(s, b)) break;
        const char *w = s + a;
        size_t wl = b - a;
        if (wl >= EMB_LEN && !strncmp(w, EMB, EMB_LEN))
            rc = embedding_word(t, emb, w, wl, c, p, sg->weight, warn, wctx);
        else if (wl > 0)
            rc = bpe_group(t, w, wl, c, sg->weight);
        a = b;
    }
    return rc;
}

int cs_prompt_tokenize(const cs_tokenizer *t, const char *text, cs_embeddings *emb, cs_prompt_warn_fn warn,
                       void *warn_ctx, cs_prompt *out)
{
    memset(out, 0, sizeof *out);
    out->vocab = cs_tokenizer_size(t);
    cs_prompt_seg *segs;
    size_t ns;
    int rc = cs_prompt_segments(text, &segs, &ns);
    if (rc) return rc;
    chunker c = {{0}, 1};
    rc = tpush(&c.out, CS_TOK_BOS, 1.0);
    for (size_t i = 0; i < ns && !rc; i++) rc = segment(t, emb, &segs[i], &c, out, warn, warn_ctx);
    cs_prompt_segs_free(segs, ns);
    if (!rc) {   /* the last chunk: EOS and padding */
        rc = tpush(&c.out, CS_TOK_EOS, 1.0);
        while (!rc && c.out.n % CS_TOK_CTX) rc = tpush(&c.out, CS_TOK_EOS, 1.0);
    }
    if (rc) {
        free(c.out.id), free(c.out.w);
        cs_prompt_free(out);
        return rc;
    }
    out->ids = c.out.id, out->weights = c.out.w;
    out->n_chunks = c.out.n / CS_TOK_CTX;
    for (size_t i = 0; i < c.out.n; i++)
        if (c.out.w[i] != 1.0) out->has_weights = 1;
    return 0;
}

void cs_prompt_mask(const int32_t ids[CS_TOK_CTX], int32_t mask[CS_TOK_CTX])
{
    int on = 1;
    for (int j = 0; j < CS_TOK_CTX; j++) {
        mask[j] = on;
        if (ids[j] == CS_TOK_EOS) on = 0;
    }
}

void cs_prompt_empty_ids(int32_t ids[CS_TOK_CTX])
{
    ids[0] = CS_TOK_BOS;
    for (int j = 1; j < CS_TOK_CTX; j++) ids[j] = CS_TOK_EOS;
}

void cs_prompt_weight(const cs_prompt *p, float *z, const float *z_empty, size_t width)
{
    for (size_t k = 0; k < p->n_chunks; k++)
        for (size_t j = 0; j < CS_TOK_CTX; j++) {
            double w = p->weights[k * CS_TOK_CTX + j];
            if (w == 1.0) continue;
            float wf = (float)w;
            float *r = z + (k * CS_TOK_CTX + j) * width;
            const float *e = z_empty + j * width;
            for (size_t i = 0; i < width; i++) r[i] = (r[i] - e[i]) * wf + e[i];
        }
}
