/* Golden handler for the torch-CPU-compatible normal generator: tensors
 * "seed<S>.draw<K>" are the K-th successive torch.randn(shape) after
 * torch.manual_seed(S); each seed's stream is reproduced in draw order. */
#include "golden.h"

#include "error.h"
#include "rng.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEEDS 64

static int parse_name(const char *name, unsigned long long *seed, int *draw)
{
    char tail;
    return sscanf(name, "seed%llu.draw%d%c", seed, draw, &tail) == 2;
}

static int run_randn(gcase *c)
{
    cs_st_file *io = golden_io(c);
    unsigned long long seeds[MAX_SEEDS];
    int nseeds = 0;
    for (int i = 0; i < cs_st_count(io); i++) {
        unsigned long long s;
        int k;
        if (!parse_name(cs_st_at(io, i)->name, &s, &k))
            continue;
        int seen = 0;
        for (int j = 0; j < nseeds; j++)
            seen |= seeds[j] == s;
        if (seen)
            continue;
        if (nseeds == MAX_SEEDS)
            return cs_error(CS_EFORMAT, "%s: more than %d seeds", golden_path(c), MAX_SEEDS);
        seeds[nseeds++] = s;
    }
    if (!nseeds)
        return cs_error(CS_EFORMAT, "%s: no seed<S>.draw<K> tensors", golden_path(c));

    for (int j = 0; j < nseeds; j++) {
        cs_rng r;
        cs_rng_seed(&r, seeds[j]);
        for (int k = 0;; k++) {
            char name[96];
            snprintf(name, sizeof name, "seed%llu.draw%d", seeds[j], k);
            const cs_tensor *t = golden_tensor(c, name);
            if (!t)
                break;
            size_t n = (size_t)cs_tensor_numel(t);
            float *y = cs_alloc((n ? n : 1) * sizeof(float));
            if (!y)
                return cs_error(CS_ENOMEM, "%s: out of memory", name);
            size_t d[CS_MAX_DIMS];
            for (int i = 0; i < t->ndim; i++)
                d[i] = (size_t)t->shape[i];
            int rc = cs_rng_randn(&r, y, n);
            if (!rc)   /* the draw's own shape: randn(shape) is defined by it */
                rc = golden_check(c, name, y, t->ndim, d);
            cs_free(y);
            if (rc)
                return rc;
        }
    }
    return 0;
}

const golden_handler golden_rng_handlers[] = {
    {"torch_cpu_randn", run_randn},
    {NULL, NULL},
};
