/* requant.h — fixed-point requantization (FORMATS.md §3.1), exact integer semantics.
 *
 * A real multiplier M >= 0 (for a linear layer M[o] = s_x·s_w[o]/s_y) is represented as a
 * 31-bit mantissa M0 and a right shift n, M ≈ M0 · 2^−n:
 *
 *     (f, e) = frexp(M)                  M = f·2^e, f in [0.5, 1)
 *     M0 = rne(f · 2^31)                 in [2^30, 2^31]; if M0 == 2^31 { M0 = 2^30; e += 1 }
 *     n  = 31 − e
 *
 * and an accumulator acc (int64) becomes an output code
 *
 *     y = clamp(z + rshift_rne(acc · M0, n), qmin, qmax)
 *
 * where acc · M0 is formed exactly (it needs up to 94 bits: |acc| <= 2^63, M0 <= 2^31) and
 * rshift_rne divides by 2^n rounding half to even (the library default, METHOD.md rule 2).
 * For n <= 0 it is a left shift by −n that saturates at the int64 limits. The sum z + r and the
 * clamp are done without overflow, so every int64 acc gives a code in [qmin, qmax].
 *
 * The 128-bit product uses __int128 where the compiler has it (GCC, Clang: __SIZEOF_INT128__).
 * The portable versions (suffix _portable) split the product into 64×32-bit halves; they are
 * always compiled, the tests check that both agree, and they are what qnpu__requant uses when
 * __int128 does not exist. Both are pure functions of their arguments: no table, no state,
 * no dependence on the floating-point environment (only qnpu__quantize_multiplier uses double
 * arithmetic, which is exact except for the one rne, done by rint in the default mode).
 *
 * The gemmlowp/TFLite-compatible variant (engine.requant = gemmlowp) rounds twice:
 * SaturatingRoundingDoublingHighMul (ties toward +inf), then RoundingDivideByPOT (ties away from
 * zero); see qnpu__requant_gemmlowp. docs/kernels.md has worked examples of both.
 */
#ifndef QNPU_KERNELS_REQUANT_H
#define QNPU_KERNELS_REQUANT_H

#include <stdint.h>

#if defined(__SIZEOF_INT128__)
#  define QNPU__HAVE_INT128 1
__extension__ typedef __int128 qnpu__i128;
__extension__ typedef unsigned __int128 qnpu__u128;
#endif

/* Largest and smallest shift qnpu__quantize_multiplier returns (see there). */
#define QNPU__RQ_SHIFT_MAX 94
#define QNPU__RQ_SHIFT_MIN (-33)

/* M -> (M0, n) as above. Valid input: finite M >= 0. Returns 0, or −1 for a negative, NaN or
 * infinite M (then *M0 = 0, *shift = 0, which maps every accumulator to 0 — to the code z).
 *   M = 0, and every M < 2^−64: *M0 = 0, *shift = 0. This is exact, not an approximation:
 *     for |acc| <= 2^63 the true product |acc·M| < 1/2 rounds to 0, and so does M0·2^−n.
 *   2^−64 <= M < 2^63: M0 in [2^30, 2^31), n = 31 − e in [−33, 94] (e after the 2^31
 *     correction). n <= 0 happens for M >= 2^30 (and for M within
 *     2^−32 relative below it, where the correction raises e): a left shift, which saturates
 *     unless acc is small.
 *   M >= 2^63: *M0 = 2^30, *shift = −33, i.e. M is taken as 2^63: every acc != 0 saturates,
 *     which is also what the exact product does.
 * So n is always in [QNPU__RQ_SHIFT_MIN, QNPU__RQ_SHIFT_MAX] and fits an int8_t. */
int qnpu__quantize_multiplier(double M, int32_t *M0, int *shift);

/* rne(p / 2^n), saturated to int64, for any int64 p and any n:
 *   n >= 1: floor division by 2^n, then +1 if the remainder exceeds 2^(n−1) or equals it and
 *           the quotient is odd (round half to even; symmetric: rne(−x) = −rne(x));
 *   n >= 64: 0 (|p/2^n| <= 1/2, and the one tie −2^63/2^64 = −1/2 goes to the even 0);
 *   n <= 0: p · 2^−n, saturated to [INT64_MIN, INT64_MAX]. */
int64_t qnpu__rshift_rne(int64_t p, int n);
#ifdef QNPU__HAVE_INT128
/* The same for a 128-bit p (n >= 128 gives 0); the result is saturated to int64. */
int64_t qnpu__rshift_rne128(qnpu__i128 p, int n);
#endif

/* qnpu__rshift_rne for 1 <= n <= 63, inline (the body of the general function). */
static inline int64_t qnpu__rshift_rne_pos(int64_t p, int n)
{
    uint64_t u = (uint64_t)p;
    int64_t r = p >= 0 ? (int64_t)(u >> n) : -(int64_t)(~u >> n) - 1; /* floor(p / 2^n) */
    uint64_t rem = u & ((UINT64_C(1) << n) - 1);                       /* p − r·2^n       */
    uint64_t half = UINT64_C(1) << (n - 1);
    if (rem > half || (rem == half && (r & 1)))
        r += 1; /* cannot overflow: |r| <= 2^62 for n >= 1 */
    return r;
}
/* qnpu__rshift_rne with the common shifts inline (the same value). */
static inline int64_t qnpu__rshift_rne_i(int64_t p, int n)
{
    return n >= 1 && n <= 63 ? qnpu__rshift_rne_pos(p, n) : qnpu__rshift_rne(p, n);
}

/* rne(acc · m0 / 2^n) saturated to int64, with the product formed exactly: __int128 when
 * available, otherwise the portable split. Any int64 acc, any int32 m0, any n. */
int64_t qnpu__mulshift_rne(int64_t acc, int32_t m0, int n);
/* The portable split version (64×32 bits as two 64-bit partial products, sign-magnitude
 * rounding). Always compiled; equal to qnpu__mulshift_rne for every input. */
int64_t qnpu__mulshift_rne_portable(int64_t acc, int32_t m0, int n);

/* y = clamp(z + rshift_rne(acc · M0, n), qmin, qmax), qmin <= qmax. Hot path: when acc fits
 * in int32, 0 <= M0 and 1 <= n <= 61, the product fits in int64 and is rounded without
 * branches (requant.c; the same value, and the formula the SIMD stores of int_gemm use). */
int32_t qnpu__requant(int64_t acc, int32_t M0, int n, int32_t z, int32_t qmin, int32_t qmax);
/* The hot path of qnpu__requant, inline for the element-wise kernels: when acc fits in int32,
 * 0 <= M0 and 1 <= n <= 61, sets *y and returns 1 (the product fits in int64 and is rounded
 * without branches: |p| = |acc·M0| < 2^62, so u = p + 2^62 is in [0, 2^63) and
 * floor(u / 2^n) = floor(p / 2^n) + 2^(62−n), whose parity is that of floor(p / 2^n) because
 * n <= 61; then rne(p / 2^n) = floor((u + 2^(n−1) − 1 + odd) / 2^n) − 2^(62−n) with
 * odd = floor(u / 2^n) & 1 — the SIMD stores of int_gemm compute the same). Otherwise returns 0. */
static inline int qnpu__requant_hot(int64_t acc, int32_t M0, int n, int32_t z, int32_t qmin, int32_t qmax,
                                    int32_t *y)
{
    if (!(acc >= INT32_MIN && acc <= INT32_MAX && M0 >= 0 && n >= 1 && n <= 61))
        return 0;
    uint64_t u = (uint64_t)(acc * M0 + (INT64_C(1) << 62));
    uint64_t q = (u + ((UINT64_C(1) << (n - 1)) - 1) + ((u >> n) & 1)) >> n;
    int64_t v = (int64_t)q - (INT64_C(1) << (62 - n)) + z;
    v = v < qmin ? qmin : v;
    *y = (int32_t)(v > qmax ? qmax : v);
    return 1;
}
/* qnpu__requant with the hot path inlined (the same value). */
static inline int32_t qnpu__requant_i(int64_t acc, int32_t M0, int n, int32_t z, int32_t qmin, int32_t qmax)
{
    int32_t y;
    return qnpu__requant_hot(acc, M0, n, z, qmin, qmax, &y) ? y : qnpu__requant(acc, M0, n, z, qmin, qmax);
}
/* The same through qnpu__mulshift_rne_portable (for tests and for compilers without
 * __int128; identical results). */
int32_t qnpu__requant_portable(int64_t acc, int32_t M0, int n, int32_t z, int32_t qmin,
                               int32_t qmax);

/* ---- gemmlowp / TFLite compatibility (round half away from zero) ------------------------- */

/* SaturatingRoundingDoublingHighMul: a·b / 2^31 rounded to nearest:
 *     a == b == INT32_MIN -> INT32_MAX (the only overflow);
 *     otherwise (a·b + (a·b >= 0 ? 2^30 : 1 − 2^30)) / 2^31, with C's truncating division.
 * For a negative product, truncation of (ab − 2^30 + 1)/2^31 equals floor((ab + 2^30)/2^31), so
 * ties go up (toward +inf) for both signs: 1.5 -> 2 but −1.5 -> −1 (like NEON VQRDMULH). Only
 * the second step below rounds half away from zero. */
int32_t qnpu__srdhm(int32_t a, int32_t b);
/* RoundingDivideByPOT: x / 2^e rounded half away from zero, e in [0, 63] (e > 63 acts as 63;
 * e < 0 as 0):  mask = 2^e − 1, r = x & mask, threshold = (mask >> 1) + (x < 0),
 *               result = (x >> e) + (r > threshold). */
int32_t qnpu__rdbpot(int32_t x, int e);
/* MultiplyByQuantizedMultiplier with our (M0, n): TFLite's exponent is 31 − n, so
 *     n < 31:  r = rdbpot(srdhm(sat32(acc) · 2^(31−n), M0), 0)  — the left shift saturates
 *              to int32 (TFLite's int32 multiply would overflow there, which is undefined);
 *     n >= 31: r = rdbpot(srdhm(sat32(acc), M0), n − 31);
 * y = clamp(z + r, qmin, qmax). The accumulator is saturated to int32 first: gemmlowp works on
 * int32 accumulators, so use this mode only for layers whose accumulator is int32 (FORMATS.md
 * §3.2 table). M0 should be >= 0 as made by qnpu__quantize_multiplier. */
int32_t qnpu__requant_gemmlowp(int64_t acc, int32_t M0, int n, int32_t z, int32_t qmin,
                               int32_t qmax);

/* Requantization modes (the engine.requant choice). */
enum { QNPU__RQ_RNE = 0, QNPU__RQ_GEMMLOWP = 1 };

#endif
