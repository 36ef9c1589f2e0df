/* torchsde's BrownianTree as ComfyUI uses it; see brownian.h. The float
 * operations follow torch's: a Python float times a float32 tensor is a
 * float32 multiply by the float-rounded scalar. */
#include "brownian.h"

#include "error.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- numpy's SeedSequence (hash-based pool mixing, 32-bit words) ---- */
#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_L 0xca01f9ddu
#define SS_MIX_R 0x4973f715u

static uint32_t hashmix(uint32_t v, uint32_t *hc)
{
    v ^= *hc;
    *hc *= SS_MULT_A;
    v *= *hc;
    return v ^ (v >> 16);
}

static uint32_t mix(uint32_t x, uint32_t y)
{
    uint32_t r = SS_MIX_L * x - SS_MIX_R * y;
    return r ^ (r >> 16);
}

/* an integer as numpy coerces it: 32-bit words, least significant first */
static int words(uint64_t v, uint32_t *w)
{
    int n = 0;
    do {
        w[n++] = (uint32_t)v;
        v >>= 32;
    } while (v);
    return n;
}

void cs_seed_sequence(uint64_t entropy, const uint64_t *spawn, int nspawn, int pool, uint32_t *out, int n)
{
    uint32_t e[64 + 8], m[64];
    int ne = words(entropy, e);
    if (nspawn > 0 && ne < pool)   /* run entropy padded to the pool size before a spawn key */
        while (ne < pool)
            e[ne++] = 0;
    for (int i = 0; i < nspawn; i++)
        ne += words(spawn[i], e + ne);
    uint32_t hc = SS_INIT_A;
    for (int i = 0; i < pool; i++)
        m[i] = hashmix(i < ne ? e[i] : 0, &hc);
    for (int s = 0; s < pool; s++)
        for (int d = 0; d < pool; d++)
            if (s != d)
                m[d] = mix(m[d], hashmix(m[s], &hc));
    for (int s = pool; s < ne; s++)
        for (int d = 0; d < pool; d++)
            m[d] = mix(m[d], hashmix(e[s], &hc));
    uint32_t h = SS_INIT_B;
    for (int i = 0; i < n; i++) {
        uint32_t v = m[i % pool] ^ h;
        h *= SS_MULT_B;
        v *= h;
        out[i] = v ^ (v >> 16);
    }
}

/* ---- the tree ---- */
#define POOL 24
#define MAX_DEPTH 200   /* a tree this deep means the rounding never met the point */

typedef struct {
    double start, end, mid;
    int parent, left, right, is_left, split;
    uint64_t spawn;
    int depth;
    uint32_t w_seed;
} node;

struct cs_brownian {
    node *nd;
    int nn, cap;
    size_t n;
    uint64_t entropy;
    uint32_t root_seed;
    double t0, t1;
    cs_seeded_noise_fn noise;
    void *ctx;
    float *w, *z, *acc;
    int *path, *found, nfound;
};

/* Python's round(x, 6): correctly rounded to 6 decimals, back to double */
static double round6(double x)
{
    char b[64];
    snprintf(b, sizeof b, "%.6f", x);
    return strtod(b, NULL);
}

static int new_node(cs_brownian *b, double start, double end, int parent, int is_left)
{
    if (b->nn == b->cap) {
        int cap = b->cap ? 2 * b->cap : 256;
        node *g = realloc(b->nd, (size_t)cap * sizeof *g);
        int *p = realloc(b->path, (size_t)cap * sizeof *p);
        if (p)
            b->path = p;
        int *f = p ? realloc(b->found, (size_t)cap * sizeof *f) : NULL;
        if (f)
            b->found = f;
        if (!g || !p || !f) {
            if (g)
                b->nd = g;
            return cs_error(CS_ENOMEM, "brownian tree: out of memory (%d nodes)", cap);
        }
        b->nd = g;
        b->cap = cap;
    }
    node *c = &b->nd[b->nn];
    memset(c, 0, sizeof *c);
    c->start = round6(start);
    c->end = round6(end);
    c->parent = parent;
    c->is_left = is_left;
    c->left = c->right = -1;
    if (parent >= 0) {
        c->spawn = 2 * b->nd[parent].spawn + (is_left ? 0 : 1);
        c->depth = b->nd[parent].depth + 1;
    }
    return b->nn++;
}

static int split_exact(cs_brownian *b, int i)
{
    node *p = &b->nd[i];
    double mid = 0.5 * (p->end + p->start);
    uint64_t key[2] = {p->spawn, (uint64_t)p->depth};
    uint32_t seed;
    cs_seed_sequence(b->entropy, key, 2, POOL, &seed, 1);
    double s = p->start, e = p->end;
    int l = new_node(b, s, mid, i, 1);
    if (l < 0)
        return l;
    int r = new_node(b, mid, e, i, 0);
    if (r < 0)
        return r;
    p = &b->nd[i];
    p->mid = round6(mid);
    p->split = 1;
    p->w_seed = seed;
    p->left = l;
    p->right = r;
    return 0;
}

/* _split with halfway_tree: halve until a midpoint is the point */
static int split_to(cs_brownian *b, int i, double point)
{
    for (int guard = 0; guard < MAX_DEPTH; guard++) {
        int rc = split_exact(b, i);
        if (rc)
            return rc;
        const node *p = &b->nd[i];
        if (point > p->mid)
            i = p->right;
        else if (point < p->mid)
            i = p->left;
        else
            return 0;
    }
    return cs_error(CS_EARG, "brownian tree: no split point reaches %.9g", point);
}

/* _loc_inner: the nodes covering [ta, tb], in order */
static int locate(cs_brownian *b, int i, double ta, double tb, int depth)
{
    if (depth > 4 * MAX_DEPTH)
        return cs_error(CS_EARG, "brownian tree: the search for [%.9g, %.9g] does not end", ta, tb);
    for (;;) {
        node *p = &b->nd[i];
        if (ta < p->start || tb > p->end) {
            i = p->parent;
            continue;
        }
        if (ta == p->start && tb == p->end) {
            b->found[b->nfound++] = i;
            return 0;
        }
        if (!p->split) {
            int first = ta == p->start;
            int rc = split_to(b, i, first ? tb : ta);
            if (rc)
                return rc;
            i = first ? b->nd[i].left : b->nd[i].right;
            continue;
        }
        if (tb <= p->mid) {
            i = p->left;
            continue;
        }
        if (ta >= p->mid) {
            i = p->right;
            continue;
        }
        double mid = p->mid;
        int r = p->right, rc = locate(b, p->left, ta, mid, depth + 1);
        if (rc)
            return rc;
        i = r;
        ta = mid;
    }
}

/* the increment over node i: from the root down its path */
static int node_increment(cs_brownian *b, int i, float *w)
{
    int np = 0;
    for (int k = i; k >= 0; k = b->nd[k].parent)
        b->path[np++] = k;
    int rc = b->noise(b->ctx, b->root_seed, w, b->n);
    if (rc)
        return rc;
    float sc = (float)sqrt(b->t1 - b->t0);
    for (size_t k = 0; k < b->n; k++)
        w[k] = w[k] * sc;
    for (int d = np - 1; d > 0; d--) {
        const node *p = &b->nd[b->path[d]], *c = &b->nd[b->path[d - 1]];
        if ((rc = b->noise(b->ctx, p->w_seed, b->z, b->n)) != 0)
            return rc;
        double hr = 1 / (p->end - p->start), ld = p->mid - p->start, rd = p->end - p->mid;
        float fl = (float)ld, fh = (float)hr, sd = (float)sqrt(ld * rd * hr);
        for (size_t k = 0; k < b->n; k++) {
            float lw = (fl * w[k]) * fh + sd * b->z[k];   /* mean + sqrt(var) * noise */
            w[k] = c->is_left ? lw : w[k] - lw;
        }
    }
    return 0;
}

int cs_brownian_new(double t0, double t1, uint64_t entropy, size_t n, cs_seeded_noise_fn noise, void *ctx,
                    cs_brownian **out)
{
    *out = NULL;
    if (!(t0 <= t1) || !n || !noise)
        return cs_error(CS_EARG, "brownian tree: bad interval [%g, %g] or size %zu", t0, t1, n);
    cs_brownian *b = calloc(1, sizeof *b);
    if (!b)
        return cs_error(CS_ENOMEM, "brownian tree: out of memory");
    b->n = n;
    b->entropy = entropy;
    b->t0 = t0;
    b->t1 = t1;
    b->noise = noise;
    b->ctx = ctx;
    cs_seed_sequence(entropy, NULL, 0, POOL, &b->root_seed, 1);
    b->w = cs_alloc(n * sizeof(float));
    b->z = cs_alloc(n * sizeof(float));
    b->acc = cs_alloc(n * sizeof(float));
    if (!b->w || !b->z || !b->acc || new_node(b, t0, t1, -1, 0) < 0) {
        cs_brownian_free(b);
        return cs_oom("the Brownian tree", 3 * n * sizeof(float));
    }
    *out = b;
    return 0;
}

int cs_brownian_increment(cs_brownian *b, double ta, double tb, float *w)
{
    const node *r = &b->nd[0];
    ta = fmin(fmax(ta, r->start), r->end);
    tb = fmin(fmax(tb, r->start), r->end);
    if (ta > tb)
        return cs_error(CS_EARG, "brownian tree: query [%g, %g] is reversed", ta, tb);
    if (ta == tb) {
        memset(w, 0, b->n * sizeof(float));
        return 0;
    }
    b->nfound = 0;
    int rc = locate(b, 0, round6(ta), round6(tb), 0);
    for (int f = 0; !rc && f < b->nfound; f++) {
        if ((rc = node_increment(b, b->found[f], f ? b->acc : w)) != 0)
            break;
        for (size_t k = 0; f && k < b->n; k++)
            w[k] = w[k] + b->acc[k];
    }
    return rc;
}

void cs_brownian_free(cs_brownian *b)
{
    if (!b)
        return;
    free(b->nd);
    free(b->path);
    free(b->found);
    cs_free(b->w);
    cs_free(b->z);
    cs_free(b->acc);
    free(b);
}
