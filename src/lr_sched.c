/* Learning-rate schedules as kohya's get_scheduler_fix -> diffusers'
 * get_scheduler compute them (lr_sched.h has the formulas). */
#include "lr_sched.h"

#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
};

int cs_lr_kind_parse(const char *name, cs_lr_kind *out)
{
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
        if (!strcmp(name, names[i])) {
            *out = (cs_lr_kind)i;
            return 0;
        }
    return cs_error(CS_EARG,
                    "'%s' is not supported (constant, constant_with_warmup, linear, cosine, cosine_with_restarts, "
                    "polynomial)",
                    name);
}

const char *cs_lr_kind_name(cs_lr_kind k) { return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?"; }

int cs_lr_sched_check(const cs_lr_sched *s)
{
    if ((unsigned)s->kind >= sizeof names / sizeof *names) return cs_error(CS_EARG, "unknown lr scheduler %d", s->kind);
    if (!(s->lr >= 0) || !isfinite(s->lr)) return cs_error(CS_EARG, "learning rate %g out of range", s->lr);
    if (s->warmup < 0 || s->total < 0) return cs_error(CS_EARG, "negative warmup or total steps");
    /* kohya's wrap_check_needless_num_warmup_steps */
    if (s->kind == CS_LR_CONSTANT && s->warmup)
        return cs_error(CS_EARG, "constant does not take warmup steps (use constant_with_warmup)");
    if (s->kind == CS_LR_COSINE_WITH_RESTARTS && s->cycles < 0)
        return cs_error(CS_EARG, "cosine_with_restarts: a negative number of cycles");
    if (s->kind == CS_LR_POLYNOMIAL && (!isfinite(s->power) || !(s->lr > CS_LR_POLY_END)))
        return cs_error(CS_EARG, "polynomial needs a learning rate above its end rate 1e-7 and a finite power");
    return 0;
}

/* diffusers' lr_lambda of each kind at current_step = step */
static double factor(const cs_lr_sched *s, int64_t step)
{
    double cur = (double)step, W = (double)s->warmup, T = (double)s->total;
    if (s->kind == CS_LR_CONSTANT) return 1.0;
    if (step < s->warmup) return cur / (W > 1 ? W : 1.0);
    double span = T - W > 1 ? T - W : 1.0, p = (cur - W) / span;
    switch (s->kind) {
    case CS_LR_LINEAR: {
        double left = (T - cur) / span;
        return left > 0 ? left : 0.0;
    }
    case CS_LR_COSINE: { /* num_cycles = 0.5: kohya passes none */
        double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * p));
        return f > 0 ? f : 0.0;
    }
    case CS_LR_COSINE_WITH_RESTARTS: {
        if (p >= 1.0) return 0.0;
        double f = 0.5 * (1.0 + cos(M_PI * fmod((double)s->cycles * p, 1.0)));
        return f > 0 ? f : 0.0;
    }
    case CS_LR_POLYNOMIAL: {
        if (step > s->total || s->total == s->warmup) return CS_LR_POLY_END / s->lr;
        /* T = W: diffusers divides by zero at step T (never run: steps < T) */
        double rem = 1.0 - (cur - W) / (T - W), range = s->lr - CS_LR_POLY_END;
        return (range * pow(rem, s->power) + CS_LR_POLY_END) / s->lr;
    }
    default: return 1.0;
    }
}

/* kohya's int_or_float: "N%" and values below 1 are a ratio of the total
 * steps, others must be whole numbers */
int cs_lr_warmup_parse(const char *v, int64_t *steps, double *ratio)
{
    char *end;
    size_t n = strlen(v);
    *steps = 0, *ratio = -1;
    if (n && v[n - 1] == '%') {
        char num[64];
        if (n - 1 >= sizeof num || n == 1) return cs_error(CS_EARG, "'%s' is not a percentage", v);
        memcpy(num, v, n - 1), num[n - 1] = 0;
        double x = strtod(num, &end);
        if (*end || !(x >= 0) || !isfinite(x)) return cs_error(CS_EARG, "'%s': not a percentage", v);
        *ratio = x / 100.0;
        return 0;
    }
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= 0) || !isfinite(x))
        return cs_error(CS_EARG, "'%s': steps (an integer) or a ratio of the total below 1", v);
    if (x < 1) {
        *ratio = x;
        return 0;
    }
    long long k = strtoll(v, &end, 10);
    if (*end || k < 1 || k > (1LL << 40)) return cs_error(CS_EARG, "'%s': a step count must be a whole number", v);
    *steps = k;
    return 0;
}

int64_t cs_lr_warmup_resolve(int64_t steps, double ratio, int64_t total)
{
    return ratio >= 0 ? (int64_t)(ratio * (double)total) : steps; /* Python's int(): towards zero */
}

double cs_lr_at(const cs_lr_sched *s, int64_t step) { return s->lr * factor(s, step); }
