/* kohya's shuffle_caption / keep_tokens / caption dropout (caption.h has
 * the rules and where they come from). */
#include "caption.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t z) /* splitmix64's finaliser */
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t next(uint64_t *s) { return mix(*s += 0x9E3779B97F4A7C15ull); }

/* uniform in [0, 1) with 53 bits, as Python's random.random() */
static double uniform(uint64_t *s) { return (double)(next(s) >> 11) * 0x1p-53; }

/* uniform in [0, n), without modulo bias */
static size_t below(uint64_t *s, size_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = next(s);
    while (x >= lim);
    return (size_t)(x % n);
}

int cs_caption_varies(const cs_ds_subset *s)
{
    return s->shuffle_caption || s->caption_dropout_rate > 0 || s->caption_tag_dropout_rate > 0 ||
           s->caption_dropout_every_n_epochs > 0;
}

uint64_t cs_caption_key(uint64_t seed, uint64_t micro, uint64_t slot)
{
    return mix(mix(mix(seed ^ 0x63617074696F6E73ull) + micro) + slot); /* "captions" */
}

/* Python's str.strip(): ASCII whitespace (captions are UTF-8; the other
 * Unicode spaces are left, a difference only for exotic captions) */
static int space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

typedef struct {
    const char *p;
    size_t n;
} tag;

int cs_caption_process(const cs_ds_subset *s, const char *caption, int epoch, uint64_t key, char **out)
{
    uint64_t st = key;
    *out = NULL;
    int drop = s->caption_dropout_rate > 0 && uniform(&st) < s->caption_dropout_rate;
    drop = drop || (s->caption_dropout_every_n_epochs > 0 && epoch % s->caption_dropout_every_n_epochs == 0);
    if (drop || !(s->shuffle_caption || s->caption_tag_dropout_rate > 0)) {
        if (!(*out = strdup(drop ? "" : caption))) return cs_oom("a caption", strlen(caption) + 1);
        return 0;
    }
    size_t len = strlen(caption), n = 1;
    for (size_t i = 0; i < len; i++) n += caption[i] == ',';
    tag *t = malloc(n * sizeof *t);
    char *o = malloc(len + 2 * n + 1); /* each tag, ", " between them */
    if (!t || !o) {
        free(t), free(o);
        return cs_oom("a caption", len + 2 * n + 1);
    }
    /* split on ',' and strip each piece (the outer strip is then implied) */
    const char *p = caption;
    for (size_t k = 0; k < n; k++) {
        const char *e = strchr(p, ',');
        if (!e) e = caption + len;
        const char *a = p, *b = e;
        while (a < b && space(*a)) a++;
        while (b > a && space(b[-1])) b--;
        t[k].p = a, t[k].n = (size_t)(b - a);
        p = e + 1;
    }
    size_t keep = s->keep_tokens > 0 ? (size_t)s->keep_tokens : 0;
    if (keep > n) keep = n;
    tag *flex = t + keep;
    size_t nf = n - keep;
    if (s->shuffle_caption)
        for (size_t i = nf; i > 1; i--) {
            size_t j = below(&st, i);
            tag x = flex[i - 1];
            flex[i - 1] = flex[j], flex[j] = x;
        }
    if (s->caption_tag_dropout_rate > 0) {
        size_t m = 0;
        for (size_t i = 0; i < nf; i++)
            if (uniform(&st) >= s->caption_tag_dropout_rate) flex[m++] = flex[i];
        nf = m;
    }
    size_t l = 0;
    for (size_t k = 0; k < keep + nf; k++) {
        if (k) o[l++] = ',', o[l++] = ' ';
        memcpy(o + l, t[k].p, t[k].n);
        l += t[k].n;
    }
    o[l] = 0;
    free(t);
    *out = o;
    return 0;
}
