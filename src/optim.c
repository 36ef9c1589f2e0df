/* Adafactor and AdamW (optim.h), step by step as their PyTorch versions
 * do it, so that a run matches kohya's to float rounding. */
#include "optim.h"

#include "error.h"
#include "tensor.h"

#include <math.h>
#include <string.h>

void cs_adafactor_cfg_default(cs_adafactor_cfg *c, double lr)
{
    c->lr = lr, c->eps1 = 1e-30, c->clip_threshold = 1.0, c->decay_rate = -0.8, c->weight_decay = 0;
}

void cs_adamw_cfg_default(cs_adamw_cfg *c, double lr)
{
    c->lr = lr, c->beta1 = 0.9, c->beta2 = 0.999, c->eps = 1e-8, c->weight_decay = 1e-2;
}

int cs_adafactor_init(cs_adafactor *s, int ndim, const int64_t *shape)
{
    memset(s, 0, sizeof *s);
    if (ndim < 1 || ndim > 8) return cs_error(CS_EARG, "Adafactor: a tensor of %d dimensions", ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return cs_error(CS_EARG, "Adafactor: empty dimension %d", i);
        n *= (size_t)shape[i];
    }
    s->factored = ndim >= 2;
    s->C = (size_t)shape[ndim - 1];
    s->R = ndim >= 2 ? (size_t)shape[ndim - 2] : 1;
    s->B = n / (s->R * s->C);
    if (s->factored) {
        s->row = cs_calloc(s->B * s->R * sizeof(float));
        s->col = cs_calloc(s->B * s->C * sizeof(float));
    } else {
        s->v = cs_calloc(n * sizeof(float));
    }
    if (s->factored ? !s->row || !s->col : !s->v) {
        cs_adafactor_free(s);
        return cs_oom("Adafactor state", (s->factored ? s->B * (s->R + s->C) : n) * sizeof(float));
    }
    return 0;
}

void cs_adafactor_free(cs_adafactor *s)
{
    cs_free(s->row);
    cs_free(s->col);
    cs_free(s->v);
    memset(s, 0, sizeof *s);
}

void cs_adafactor_coef(cs_adafactor *s, const cs_adafactor_cfg *c, cs_adafactor_k *k)
{
    s->step++;
    double b2d = 1.0 - pow((double)s->step, c->decay_rate);
    k->b2 = (float)b2d, k->a2 = (float)(1.0 - b2d), k->e1 = (float)c->eps1;
    k->clip = (float)c->clip_threshold, k->lr = (float)c->lr, k->wd = (float)(-c->weight_decay * c->lr);
    k->decay = c->weight_decay != 0;
}

/* Per step t: beta2t = 1 - t^decay; u = g^2 + eps1;
 *   factored:  row = beta2t row + (1-beta2t) mean_C(u), col likewise over R,
 *              u = g / sqrt(row / mean_R(row)) / sqrt(col)
 *   else:      v = beta2t v + (1-beta2t) u,  u = g / sqrt(v)
 *   u /= max(rms(u) / clip, 1);  p -= lr wd p;  p -= lr u */
void cs_adafactor_update(const cs_adafactor_k *k, size_t B, size_t R, size_t C, float *p, const float *g, float *row_,
                         float *col_, float *v, float *u)
{
    size_t n = B * R * C;
    float b2 = k->b2, a2 = k->a2, e1 = k->e1;
    for (size_t i = 0; i < n; i++) u[i] = g[i] * g[i] + e1;
    if (row_) {
        for (size_t b = 0; b < B; b++) {
            float *ub = u + b * R * C, *row = row_ + b * R, *col = col_ + b * C;
            for (size_t r = 0; r < R; r++) {
                double t = 0;
                for (size_t q = 0; q < C; q++) t += ub[r * C + q];
                row[r] = row[r] * b2 + (float)(t / (double)C) * a2;
            }
            for (size_t q = 0; q < C; q++) {
                double t = 0;
                for (size_t r = 0; r < R; r++) t += ub[r * C + q];
                col[q] = col[q] * b2 + (float)(t / (double)R) * a2;
            }
            double rm = 0;
            for (size_t r = 0; r < R; r++) rm += row[r];
            float rmean = (float)(rm / (double)R);
            const float *gb = g + b * R * C;
            for (size_t r = 0; r < R; r++) {
                float rf = 1.0f / sqrtf(row[r] / rmean);
                for (size_t q = 0; q < C; q++) ub[r * C + q] = rf * (1.0f / sqrtf(col[q])) * gb[r * C + q];
            }
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            v[i] = v[i] * b2 + u[i] * a2;
            u[i] = 1.0f / sqrtf(v[i]) * g[i];
        }
    }
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)u[i] * u[i];
    float rms = (float)(sqrt(ss) / sqrt((double)n));
    float div = rms / k->clip;
    if (div < 1.0f) div = 1.0f;
    for (size_t i = 0; i < n; i++) {
        float up = u[i] / div * k->lr;
        if (k->decay) p[i] += p[i] * k->wd;
        p[i] += -up;
    }
}

void cs_adafactor_step(cs_adafactor *s, const cs_adafactor_cfg *c, float *p, const float *g, float *u)
{
    cs_adafactor_k k;
    cs_adafactor_coef(s, c, &k);
    cs_adafactor_update(&k, s->B, s->R, s->C, p, g, s->factored ? s->row : NULL, s->col, s->v, u);
}

int cs_adamw_init(cs_adamw *s, size_t n)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->m = cs_calloc(n * sizeof(float) + 1);
    s->v = cs_calloc(n * sizeof(float) + 1);
    if (!s->m || !s->v) {
        cs_adamw_free(s);
        return cs_oom("AdamW state", 2 * n * sizeof(float));
    }
    return 0;
}

void cs_adamw_free(cs_adamw *s)
{
    cs_free(s->m);
    cs_free(s->v);
    memset(s, 0, sizeof *s);
}

void cs_adamw_coef(cs_adamw *s, const cs_adamw_cfg *c, cs_adamw_k *k)
{
    s->step++;
    double t = (double)s->step;
    k->decay = (float)(1.0 - c->lr * c->weight_decay), k->w1 = (float)(1.0 - c->beta1), k->b2 = (float)c->beta2;
    k->a2 = (float)(1.0 - c->beta2), k->eps = (float)c->eps;
    k->bc2s = (float)sqrt(1.0 - pow(c->beta2, t)), k->step = (float)(c->lr / (1.0 - pow(c->beta1, t)));
}

/* torch's single-tensor AdamW:
 *   p *= 1 - lr wd;  m = lerp(m, g, 1-b1);  v = b2 v + (1-b2) g^2
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) */
void cs_adamw_update(const cs_adamw_k *k, size_t n, float *p, const float *g, float *m, float *v)
{
    for (size_t i = 0; i < n; i++) {
        p[i] *= k->decay;
        m[i] += k->w1 * (g[i] - m[i]);
        v[i] = v[i] * k->b2 + g[i] * g[i] * k->a2;
        p[i] += -k->step * (m[i] / (sqrtf(v[i]) / k->bc2s + k->eps));
    }
}

void cs_adamw_step(cs_adamw *s, const cs_adamw_cfg *c, float *p, const float *g)
{
    cs_adamw_k k;
    cs_adamw_coef(s, c, &k);
    cs_adamw_update(&k, s->n, p, g, s->m, s->v);
}

double cs_sumsq(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}
