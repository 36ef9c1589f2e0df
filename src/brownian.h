/* The Brownian motion ComfyUI's SDE samplers draw their noise from:
 * torchsde 0.2.6's BrownianTree (a BrownianInterval with halfway_tree=True,
 * tol 1e-6, pool_size 24, no Levy area) as k_diffusion's
 * BrownianTreeNoiseSampler builds it with a seed.
 *
 * The path is a binary tree over [t0, t1]: the root's increment is
 * sqrt(t1 - t0) * N(0, 1); a node split at its (6-decimal rounded) midpoint
 * gives its left child a Brownian-bridge draw from the node's increment and
 * a noise tensor, the right child the rest. Every noise tensor is a fresh
 * torch CPU generator seeded with a 32-bit word of numpy's SeedSequence
 * (entropy = the seed; spawn_key = (the node's path as a number, its depth)).
 * A query [ta, tb] is the sum of the tree's nodes that cover it, the tree
 * grown as torchsde grows it, so the sums round as torchsde's do. */
#ifndef CS_BROWNIAN_H
#define CS_BROWNIAN_H

#include <stddef.h>
#include <stdint.h>

/* n standard normals from a torch CPU generator seeded with seed (as
 * torch.Generator().manual_seed(seed); torch.randn(shape)), in the caller's
 * layout. */
typedef int (*cs_seeded_noise_fn)(void *ctx, uint32_t seed, float *out, size_t n);

typedef struct cs_brownian cs_brownian;

/* The tree on [t0, t1] (t0 <= t1) for tensors of n floats. 0 or CS_E*. */
int cs_brownian_new(double t0, double t1, uint64_t entropy, size_t n, cs_seeded_noise_fn noise, void *ctx,
                    cs_brownian **out);
/* w = W(tb) - W(ta), ta <= tb (clamped to [t0, t1] as torchsde does). */
int cs_brownian_increment(cs_brownian *b, double ta, double tb, float *w);
void cs_brownian_free(cs_brownian *b);

/* numpy.random.SeedSequence(entropy, spawn_key=(k0, k1) or () when
 * nspawn is 0, pool_size=pool).generate_state(n) (uint32). */
void cs_seed_sequence(uint64_t entropy, const uint64_t *spawn, int nspawn, int pool, uint32_t *out, int n);

#endif
