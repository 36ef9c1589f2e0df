/* Shared constants of the vector exp and erf used by every SIMD level, and
 * the per-level array entry points that tests/test_kernels.c sweeps.
 *
 * exp(x): x = n ln2 + r, |r| <= ln2/2 (Cody-Waite split of ln2, exact with
 *   FMA for |n| <= 151), exp(r) = 1 + r + r^2 (E0 + E1 r + ... + E4 r^4),
 *   2^n applied as 2^(n>>1) * 2^(n-(n>>1)) so subnormal results are rounded
 *   once. Coefficients: weighted Remez fit of (exp(r)-1-r)/r^2 for relative
 *   error of exp, rounded to float one at a time (low order first) and the
 *   rest refitted; fit error 3.2e-9 relative (0.03 ulp).
 * erf(x), |x| < 1: x + x q(x^2), q(s) = A0 + A1 s + ... + A6 s^6 (same
 *   procedure, relative error 1.4e-9).
 * erf(x), 1 <= |x| < 4: 1 - exp(Q(|x| - 2)), Q ~ log(erfc) of degree 7,
 *   fitted with weight erfc(x), i.e. for absolute error in erf (6.9e-10 =
 *   0.01 ulp near 1). |x| - 2 is exact on [1, 4] (Sterbenz). The rounding
 *   of Q (|Q| < 18) costs erfc(x)|Q| 2^-24 <= 0.33 ulp of erf.
 * erf(|x| >= 4) = +-1 in float (erfc(4) = 1.5e-8 < 2^-25). */
#ifndef CS_VMATH_H
#define CS_VMATH_H

#include <stddef.h>

#define CS_EXP_HI 88.8f        /* above: +inf (exp(88.7229) > FLT_MAX) */
#define CS_EXP_LO (-104.0f)    /* below: +0 (exp(-104) < 2^-150) */
#define CS_LOG2E 1.44269502f
#define CS_LN2_HI 0.693147182f         /* 0x3f317218 = float(ln 2) */
#define CS_LN2_LO (-1.904654300e-09f)   /* ln 2 - CS_LN2_HI */
#define CS_EXP_C0 4.999999404e-01f
#define CS_EXP_C1 1.666651666e-01f
#define CS_EXP_C2 4.166810215e-02f
#define CS_EXP_C3 8.369192481e-03f
#define CS_EXP_C4 1.383890281e-03f

#define CS_ERF_SPLIT 1.0f
#define CS_ERF_MAX 4.0f
#define CS_ERF_A0 1.283791661e-01f
#define CS_ERF_A1 (-3.761262596e-01f)
#define CS_ERF_A2 1.128357872e-01f
#define CS_ERF_A3 (-2.685334720e-02f)
#define CS_ERF_A4 5.187162198e-03f
#define CS_ERF_A5 (-7.997853099e-04f)
#define CS_ERF_A6 7.806903886e-05f
#define CS_ERF_Q0 (-5.364941120e+00f)
#define CS_ERF_Q1 (-4.418159962e+00f)
#define CS_ERF_Q2 (-9.237529039e-01f)
#define CS_ERF_Q3 (-1.647982374e-02f)
#define CS_ERF_Q4 3.555317177e-03f
#define CS_ERF_Q5 (-7.168850861e-04f)
#define CS_ERF_Q6 1.676763641e-04f
#define CS_ERF_Q7 (-8.852880455e-06f)

/* y[i] = exp(x[i]) / erf(x[i]) with one level's vector code (any n, any
 * alignment); for tests. Present only in builds with that level. */
void cs_vexp_avx2(const float *x, float *y, size_t n);
void cs_verf_avx2(const float *x, float *y, size_t n);
void cs_vexp_avx512(const float *x, float *y, size_t n);
void cs_verf_avx512(const float *x, float *y, size_t n);
void cs_vexp_neon(const float *x, float *y, size_t n);
void cs_verf_neon(const float *x, float *y, size_t n);

#endif
