/* requant.c — fixed-point requantization (FORMATS.md §3.1). See requant.h and docs/kernels.md.
 *
 * Everything is written so that it does not depend on implementation-defined behaviour of
 * signed shifts: a floor division of a negative p by 2^n is −((−p − 1) >> n) − 1 on the
 * non-negative value −p − 1 = ~p, and low bits are taken from the two's-complement (modular)
 * conversion to an unsigned type, which C defines. */
#include <math.h>

#include "requant.h"

int qnpu__quantize_multiplier(double M, int32_t *M0, int *shift)
{
    *M0 = 0;
    *shift = 0;
    if (!(M >= 0.0) || isinf(M)) /* negative, NaN, +Inf */
        return -1;
    if (M < 0x1p-64) /* exact: |acc·M| < 1/2 for every int64 acc */
        return 0;
    if (M >= 0x1p63) { /* every acc != 0 saturates, as with the exact product */
        *M0 = INT32_C(1) << 30;
        *shift = QNPU__RQ_SHIFT_MIN;
        return 0;
    }
    int e;
    double f = frexp(M, &e);            /* M = f·2^e, f in [0.5, 1) */
    int64_t m = (int64_t)rint(ldexp(f, 31)); /* f·2^31 is exact; rint rounds half to even */
    if (m == (INT64_C(1) << 31)) {      /* f rounded up to 1.0: M0 = 2^30 at the next exponent */
        m = INT64_C(1) << 30;
        e += 1;
    }
    *M0 = (int32_t)m;
    *shift = 31 - e;
    return 0;
}

/* p · 2^s saturated to int64, s >= 0. */
static int64_t shl_sat64(int64_t p, int s)
{
    if (p == 0 || s == 0)
        return p;
    if (s >= 63) /* only p = −1, s = 63 is representable (INT64_MIN) — the saturated value too */
        return p > 0 ? INT64_MAX : INT64_MIN;
    int64_t lim = (int64_t)((UINT64_C(1) << 63) >> s); /* 2^(63−s) */
    if (p >= lim)
        return INT64_MAX;
    if (p < -lim)
        return INT64_MIN;
    return p * ((int64_t)1 << s);
}

int64_t qnpu__rshift_rne(int64_t p, int n)
{
    if (n <= 0)
        return shl_sat64(p, -n);
    if (n >= 64)
        return 0;
    return qnpu__rshift_rne_pos(p, n); /* requant.h */
}

#ifdef QNPU__HAVE_INT128
int64_t qnpu__rshift_rne128(qnpu__i128 p, int n)
{
    if (n <= 0) {
        if (p > INT64_MAX)
            return INT64_MAX;
        if (p < INT64_MIN)
            return INT64_MIN;
        return shl_sat64((int64_t)p, -n);
    }
    if (n >= 128)
        return 0;
    qnpu__u128 u = (qnpu__u128)p;
    qnpu__i128 r = p >= 0 ? (qnpu__i128)(u >> n) : -(qnpu__i128)(~u >> n) - 1;
    qnpu__u128 rem = u & ((((qnpu__u128)1) << n) - 1);
    qnpu__u128 half = ((qnpu__u128)1) << (n - 1);
    if (rem > half || (rem == half && (r & 1)))
        r += 1;
    if (r > INT64_MAX)
        return INT64_MAX;
    if (r < INT64_MIN)
        return INT64_MIN;
    return (int64_t)r;
}
#endif

/* ---- the portable split product --------------------------------------------------------- */

/* |acc|·|m0| = hi·2^64 + lo, then rne(|acc·m0| / 2^n) (or the saturated left shift) on the
 * magnitude, then the sign. Round half to even is symmetric (rne(−v) = −rne(v)), so this equals
 * the floor-based rounding of the signed product; the magnitude saturates at 2^63 − 1 for a
 * positive result and at 2^63 for a negative one, which are the int64 limits. */
int64_t qnpu__mulshift_rne_portable(int64_t acc, int32_t m0, int n)
{
    int neg = (acc < 0) != (m0 < 0);
    uint64_t a = acc < 0 ? UINT64_C(0) - (uint64_t)acc : (uint64_t)acc;             /* <= 2^63 */
    uint64_t m = m0 < 0 ? UINT64_C(0) - (uint64_t)(int64_t)m0 : (uint64_t)m0;     /* <= 2^31 */
    if (a == 0 || m == 0)
        return 0;
    uint64_t lim = neg ? UINT64_C(1) << 63 : (UINT64_C(1) << 63) - 1; /* largest magnitude */

    /* 64 × 32 bits: a = ah·2^32 + al, so a·m = ah·m·2^32 + al·m with ah·m <= 2^62, al·m < 2^63 */
    uint64_t al = a & 0xFFFFFFFFu, ah = a >> 32;
    uint64_t pl = al * m, ph = ah * m;
    uint64_t lo = pl + (ph << 32);
    uint64_t hi = (ph >> 32) + (lo < pl ? 1 : 0);

    uint64_t mag;
    if (n <= 0) {
        int s = -n;
        if (hi != 0 || s >= 64 || lo > (lim >> s))
            mag = lim;
        else
            mag = lo << s;
    } else if (n >= 128) {
        mag = 0;
    } else {
        /* q = P >> n (qh:ql), rem = P mod 2^n (rh:rl), half = 2^(n−1) (hh:hl) */
        uint64_t qh, ql, rh, rl, hh, hl;
        if (n < 64) {
            ql = (lo >> n) | (hi << (64 - n)); /* n >= 1, so the shift 64 − n is < 64 */
            qh = hi >> n;
            rl = lo & ((UINT64_C(1) << n) - 1);
            rh = 0;
            hl = UINT64_C(1) << (n - 1);
            hh = 0;
        } else if (n == 64) {
            ql = hi;
            qh = 0;
            rl = lo;
            rh = 0;
            hl = UINT64_C(1) << 63;
            hh = 0;
        } else {
            ql = hi >> (n - 64);
            qh = 0;
            rl = lo;
            rh = hi & ((UINT64_C(1) << (n - 64)) - 1);
            hl = 0;
            hh = UINT64_C(1) << (n - 65);
        }
        int gt = rh > hh || (rh == hh && rl > hl);
        int eq = rh == hh && rl == hl;
        if (gt || (eq && (ql & 1))) {
            ql += 1;
            if (ql == 0)
                qh += 1;
        }
        mag = (qh != 0 || ql > lim) ? lim : ql;
    }
    if (!neg)
        return (int64_t)mag;
    return mag == (UINT64_C(1) << 63) ? INT64_MIN : -(int64_t)mag;
}

int64_t qnpu__mulshift_rne(int64_t acc, int32_t m0, int n)
{
#ifdef QNPU__HAVE_INT128
    return qnpu__rshift_rne128((qnpu__i128)acc * m0, n);
#else
    return qnpu__mulshift_rne_portable(acc, m0, n);
#endif
}

/* clamp(z + r, qmin, qmax) without overflow for any int64 r. */
static int32_t add_clamp(int64_t r, int32_t z, int32_t qmin, int32_t qmax)
{
    if (r >= (int64_t)qmax - z)
        return qmax;
    if (r <= (int64_t)qmin - z)
        return qmin;
    return (int32_t)(z + r);
}

int32_t qnpu__requant(int64_t acc, int32_t M0, int n, int32_t z, int32_t qmin, int32_t qmax)
{
    int32_t y;
    if (qnpu__requant_hot(acc, M0, n, z, qmin, qmax, &y)) /* requant.h: branch-free rounding */
        return y;
    return add_clamp(qnpu__mulshift_rne(acc, M0, n), z, qmin, qmax);
}

int32_t qnpu__requant_portable(int64_t acc, int32_t M0, int n, int32_t z, int32_t qmin,
                               int32_t qmax)
{
    return add_clamp(qnpu__mulshift_rne_portable(acc, M0, n), z, qmin, qmax);
}

/* ---- gemmlowp / TFLite compatibility ------------------------------------------------------ */

int32_t qnpu__srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN)
        return INT32_MAX;
    int64_t ab = (int64_t)a * b;
    int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : 1 - (INT64_C(1) << 30);
    return (int32_t)((ab + nudge) / (INT64_C(1) << 31)); /* C division truncates toward 0 */
}

int32_t qnpu__rdbpot(int32_t x, int e)
{
    if (e <= 0)
        return x;
    if (e > 63)
        e = 63;
    int64_t v = x;
    uint64_t u = (uint64_t)v;
    int64_t mask = (int64_t)((UINT64_C(1) << e) - 1);
    int64_t rem = (int64_t)(u & (uint64_t)mask);
    int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    int64_t fl = v >= 0 ? (int64_t)(u >> e) : -(int64_t)(~u >> e) - 1; /* floor(x / 2^e) */
    return (int32_t)(fl + (rem > threshold ? 1 : 0));
}

int32_t qnpu__requant_gemmlowp(int64_t acc, int32_t M0, int n, int32_t z, int32_t qmin,
                               int32_t qmax)
{
    int32_t x = acc > INT32_MAX ? INT32_MAX : acc < INT32_MIN ? INT32_MIN : (int32_t)acc;
    int32_t r;
    if (n < 31) {
        int left = 31 - n;
        int64_t v;
        if (x == 0)
            v = 0;
        else if (left >= 32)
            v = x > 0 ? INT32_MAX : INT32_MIN;
        else
            v = (int64_t)x * ((int64_t)1 << left); /* |v| <= 2^62 */
        if (v > INT32_MAX)
            v = INT32_MAX;
        if (v < INT32_MIN)
            v = INT32_MIN;
        r = qnpu__srdhm((int32_t)v, M0);
    } else {
        r = qnpu__rdbpot(qnpu__srdhm(x, M0), n - 31);
    }
    return add_clamp(r, z, qmin, qmax);
}
