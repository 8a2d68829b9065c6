/* check_int_gemm.c — requantization (FORMATS.md §3.1) and the integer GEMMs (§3.2, §3.10):
 * hand-computed rounding cases, the 128-bit product against its portable split, every SIMD
 * kernel against its scalar reference bit for bit, and the whole integer linear layer against
 * a float reference within ±1 code. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib/quant.h"
#include "kernels/int_gemm.h"
#include "kernels/requant.h"
#include "testutil.h"

/* ---- random numbers ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rnd64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}
/* uniform in [lo, hi] */
static int64_t rnd_range(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd64() % (uint64_t)(hi - lo + 1));
}
static double rnd_unit(void)
{
    return (double)(rnd64() >> 11) * 0x1p-53;
}

/* ---- requantization: hand-computed cases ----------------------------------------------------- */

START_TEST(test_rshift_rne_hand)
{
    static const struct { int64_t p; int n; int64_t r; } c[] = {
        /* ties at .5 go to the even neighbour, both signs */
        {1, 1, 0}, {3, 1, 2}, {5, 1, 2}, {7, 1, 4}, {-1, 1, 0}, {-3, 1, -2}, {-5, 1, -2}, {-7, 1, -4},
        {6, 2, 2}, {10, 2, 2}, {14, 2, 4}, {-6, 2, -2}, {-10, 2, -2}, {-14, 2, -4},
        /* not ties: nearest */
        {9, 2, 2}, {11, 2, 3}, {-9, 2, -2}, {-11, 2, -3}, {1, 2, 0}, {3, 2, 1}, {-3, 2, -1},
        {0, 5, 0}, {1000, 3, 125}, {1004, 3, 126}, {1003, 3, 125}, {-1004, 3, -126},
        /* n <= 0: left shifts, saturating */
        {3, 0, 3}, {3, -2, 12}, {-3, -2, -12}, {0, -100, 0},
        {INT64_C(1) << 61, -1, INT64_C(1) << 62}, {INT64_C(1) << 62, -1, INT64_MAX},
        {-(INT64_C(1) << 62), -1, INT64_MIN}, {-(INT64_C(1) << 62) - 1, -1, INT64_MIN},
        {1, -62, INT64_C(1) << 62}, {1, -63, INT64_MAX}, {-1, -63, INT64_MIN}, {5, -200, INT64_MAX},
        {-5, -200, INT64_MIN}, {INT64_MAX, 0, INT64_MAX}, {INT64_MIN, 0, INT64_MIN},
        /* big shifts */
        {INT64_MIN, 63, -1}, {INT64_MAX, 63, 1}, {INT64_C(1) << 62, 63, 0}, {INT64_C(3) << 61, 63, 1},
        {-(INT64_C(1) << 62), 63, 0}, {-(INT64_C(3) << 61), 63, -1},
        {INT64_MIN, 64, 0}, {INT64_MAX, 64, 0}, {INT64_MAX, 1000, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        ck_assert_msg(qnpu__rshift_rne(c[i].p, c[i].n) == c[i].r, "rshift_rne(%lld, %d) = %lld, want %lld",
                      (long long)c[i].p, c[i].n, (long long)qnpu__rshift_rne(c[i].p, c[i].n),
                      (long long)c[i].r);
#ifdef QNPU__HAVE_INT128
        ck_assert(qnpu__rshift_rne128(c[i].p, c[i].n) == c[i].r);
#endif
    }
#ifdef QNPU__HAVE_INT128
    /* 128-bit inputs: 2^80 + 2^15 over 2^16 = 2^64 + 1/2 -> saturates; 3·2^70 / 2^71 = 1.5 -> 2 */
    qnpu__i128 big = ((qnpu__i128)1 << 80) + (1 << 15);
    ck_assert(qnpu__rshift_rne128(big, 16) == INT64_MAX);
    ck_assert(qnpu__rshift_rne128(-big, 16) == INT64_MIN);
    ck_assert(qnpu__rshift_rne128((qnpu__i128)3 << 70, 71) == 2);
    ck_assert(qnpu__rshift_rne128(-((qnpu__i128)3 << 70), 71) == -2);
    ck_assert(qnpu__rshift_rne128((qnpu__i128)5 << 70, 72) == 1); /* 1.25 */
    ck_assert(qnpu__rshift_rne128((qnpu__i128)5 << 69, 71) == 1); /* 1.25 */
    ck_assert(qnpu__rshift_rne128((qnpu__i128)1 << 126, 127) == 0);
#endif
}
END_TEST

START_TEST(test_quantize_multiplier)
{
    int32_t m0;
    int n;
    /* 0.5 = 0.5·2^0: M0 = 2^30, n = 31 */
    ck_assert_int_eq(qnpu__quantize_multiplier(0.5, &m0, &n), 0);
    ck_assert_int_eq(m0, 1 << 30);
    ck_assert_int_eq(n, 31);
    /* 0.75: M0 = 0.75·2^31 = 1610612736, n = 31 */
    qnpu__quantize_multiplier(0.75, &m0, &n);
    ck_assert_int_eq(m0, 1610612736);
    ck_assert_int_eq(n, 31);
    /* 1/3 = 0.6667·2^−1: M0 = rne(2^32/3) = rne(1431655765.33) = 1431655765, n = 32 */
    qnpu__quantize_multiplier(1.0 / 3.0, &m0, &n);
    ck_assert_int_eq(m0, 1431655765);
    ck_assert_int_eq(n, 32);
    /* the 2^31 correction: f = 1 − 2^−40 rounds to 2^31, so M0 = 2^30 at e + 1 = 1, n = 30 */
    qnpu__quantize_multiplier(1.0 - 0x1p-40, &m0, &n);
    ck_assert_int_eq(m0, 1 << 30);
    ck_assert_int_eq(n, 30);
    /* just below the correction: f = 1 − 2^−31 -> M0 = 2^31 − 1 exactly */
    qnpu__quantize_multiplier(1.0 - 0x1p-31, &m0, &n);
    ck_assert_int_eq(m0, INT32_MAX);
    ck_assert_int_eq(n, 31);
    /* ties of f·2^31 go to even: f = 0.5 + 2^−32 gives 2^30 + 0.5 -> 2^30;
     * f = 0.5 + 3·2^−32 gives 2^30 + 1.5 -> 2^30 + 2 */
    qnpu__quantize_multiplier(0.5 + 0x1p-32, &m0, &n);
    ck_assert_int_eq(m0, 1 << 30);
    qnpu__quantize_multiplier(0.5 + 3 * 0x1p-32, &m0, &n);
    ck_assert_int_eq(m0, (1 << 30) + 2); /* 2^30 + 1.5 -> even 2^30 + 2 */
    /* large: 3·2^30 = 0.75·2^32 -> n = −1 */
    qnpu__quantize_multiplier(3.0 * 0x1p30, &m0, &n);
    ck_assert_int_eq(m0, 1610612736);
    ck_assert_int_eq(n, -1);
    /* edges */
    ck_assert_int_eq(qnpu__quantize_multiplier(0.0, &m0, &n), 0);
    ck_assert(m0 == 0 && n == 0);
    ck_assert_int_eq(qnpu__quantize_multiplier(1e-30, &m0, &n), 0);
    ck_assert(m0 == 0 && n == 0);
    ck_assert_int_eq(qnpu__quantize_multiplier(0x1p-64, &m0, &n), 0);
    ck_assert(m0 == 1 << 30 && n == QNPU__RQ_SHIFT_MAX);
    ck_assert_int_eq(qnpu__quantize_multiplier(1e30, &m0, &n), 0);
    ck_assert(m0 == 1 << 30 && n == QNPU__RQ_SHIFT_MIN);
    ck_assert_int_eq(qnpu__quantize_multiplier(0x1p63 * (1 - 0x1p-50), &m0, &n), 0);
    ck_assert(m0 == 1 << 30 && n == QNPU__RQ_SHIFT_MIN); /* corrected to 2^63 */
    ck_assert_int_eq(qnpu__quantize_multiplier(-1.0, &m0, &n), -1);
    ck_assert(m0 == 0 && n == 0);
    ck_assert_int_eq(qnpu__quantize_multiplier(NAN, &m0, &n), -1);
    ck_assert_int_eq(qnpu__quantize_multiplier(INFINITY, &m0, &n), -1);
    /* every M in range: M0·2^−n within 2^−31 relative, n within the documented range */
    for (int i = 0; i < 2000; i++) {
        double M = ldexp(0.5 + 0.5 * rnd_unit(), (int)rnd_range(-63, 62));
        ck_assert_int_eq(qnpu__quantize_multiplier(M, &m0, &n), 0);
        ck_assert(m0 >= (1 << 30) && n >= QNPU__RQ_SHIFT_MIN && n <= QNPU__RQ_SHIFT_MAX);
        ck_assert(fabs(ldexp((double)m0, -n) / M - 1.0) <= 0x1p-31);
    }
}
END_TEST

START_TEST(test_requant_hand)
{
    /* M = 0.5 (M0 = 2^30, n = 31): acc/2 rounded half to even, then + z and clamp */
    const int32_t h = 1 << 30;
    ck_assert_int_eq(qnpu__requant(5, h, 31, 0, -1000, 1000), 2);    /*  2.5 -> 2 */
    ck_assert_int_eq(qnpu__requant(7, h, 31, 0, -1000, 1000), 4);    /*  3.5 -> 4 */
    ck_assert_int_eq(qnpu__requant(-5, h, 31, 0, -1000, 1000), -2);  /* −2.5 -> −2 */
    ck_assert_int_eq(qnpu__requant(-7, h, 31, 0, -1000, 1000), -4);  /* −3.5 -> −4 */
    ck_assert_int_eq(qnpu__requant(-8, h, 31, 0, -1000, 1000), -4);
    ck_assert_int_eq(qnpu__requant(-9, h, 31, 10, 0, 255), 6);        /* −4.5 -> −4, + 10 */
    ck_assert_int_eq(qnpu__requant(-100, h, 31, 10, 0, 255), 0);      /* clamp low  */
    ck_assert_int_eq(qnpu__requant(1000, h, 31, 10, 0, 255), 255);    /* clamp high */
    /* M = 0.75: 10·0.75 = 7.5 -> 8, 6·0.75 = 4.5 -> 4, −6·0.75 -> −4, −10·0.75 -> −8 */
    const int32_t t = 1610612736;
    ck_assert_int_eq(qnpu__requant(10, t, 31, 0, -1000, 1000), 8);
    ck_assert_int_eq(qnpu__requant(6, t, 31, 0, -1000, 1000), 4);
    ck_assert_int_eq(qnpu__requant(-6, t, 31, 0, -1000, 1000), -4);
    ck_assert_int_eq(qnpu__requant(-10, t, 31, 0, -1000, 1000), -8);
    /* the M0 = 2^31 correction (M = 1 − 2^−40 -> M0 = 2^30, n = 30): exactly the identity */
    int32_t m0;
    int n;
    qnpu__quantize_multiplier(1.0 - 0x1p-40, &m0, &n);
    for (int64_t a = -300; a <= 300; a += 7)
        ck_assert_int_eq(qnpu__requant(a, m0, n, 3, -1000, 1000), 3 + a);
    /* n <= 0: M = 3·2^30 (M0 = 0.75·2^31, n = −1): acc·3·2^30 saturates the int32 clamp fast */
    qnpu__quantize_multiplier(3.0 * 0x1p30, &m0, &n);
    ck_assert_int_eq(qnpu__requant(0, m0, n, 5, INT32_MIN, INT32_MAX), 5);
    ck_assert_int_eq(qnpu__requant(1, m0, n, 0, INT32_MIN, INT32_MAX), INT32_MAX);
    ck_assert_int_eq(qnpu__requant(-1, m0, n, 0, INT32_MIN, INT32_MAX), INT32_MIN);
    /* n = 0, M0 = 1: identity with saturation at the clamp bounds */
    ck_assert_int_eq(qnpu__requant(-5, 1, 0, 0, -3, 3), -3);
    ck_assert_int_eq(qnpu__requant(2, 1, -3, 0, -100, 100), 16);      /* 2·1·2^3 */
    /* int64 accumulators beyond int32 (A16 × W8): 3·10^10 · 2^−35 = 0.873 -> 1 */
    ck_assert_int_eq(qnpu__requant(INT64_C(30000000000), 1 << 30, 65, 0, -10, 10), 1);
    /* 3·2^39 · 2^30 / 2^70 = 1.5 -> 2; minus -> −2; 2^40 · 2^30 / 2^71 = 0.5 -> 0 */
    ck_assert_int_eq(qnpu__requant((INT64_C(3) << 39), 1 << 30, 70, 0, -10, 10), 2);
    ck_assert_int_eq(qnpu__requant(-(INT64_C(3) << 39), 1 << 30, 70, 0, -10, 10), -2);
    ck_assert_int_eq(qnpu__requant(INT64_C(1) << 40, 1 << 30, 71, 0, -10, 10), 0);
    /* the extremes never overflow the add of z */
    ck_assert_int_eq(qnpu__requant(INT64_MAX, INT32_MAX, -33, INT32_MAX, INT32_MIN, INT32_MAX), INT32_MAX);
    ck_assert_int_eq(qnpu__requant(INT64_MIN, INT32_MAX, -33, INT32_MIN, INT32_MIN, INT32_MAX), INT32_MIN);
    ck_assert_int_eq(qnpu__requant(INT64_MIN, INT32_MAX, -33, INT32_MAX, INT32_MIN, INT32_MAX), INT32_MIN);
    ck_assert_int_eq(qnpu__requant(0, 0, 0, 7, 0, 255), 7); /* M = 0 */
    /* the portable split gives the same on all of the above */
    ck_assert_int_eq(qnpu__requant_portable(-9, h, 31, 10, 0, 255), 6);
    ck_assert_int_eq(qnpu__requant_portable((INT64_C(3) << 39), 1 << 30, 70, 0, -10, 10), 2);
    ck_assert_int_eq(qnpu__requant_portable(-(INT64_C(3) << 39), 1 << 30, 70, 0, -10, 10), -2);
    ck_assert_int_eq(qnpu__requant_portable(INT64_MIN, INT32_MAX, -33, INT32_MAX, INT32_MIN, INT32_MAX),
                     INT32_MIN);
}
END_TEST

/* 128-bit product vs the portable 64×32 split, on random and extreme inputs. */
START_TEST(test_requant_portable_agrees)
{
    static const int64_t edge_a[] = {0, 1, -1, 2, -2, INT32_MAX, INT32_MIN, (int64_t)INT32_MAX + 1,
                                     (int64_t)INT32_MIN - 1, INT64_MAX, INT64_MIN, INT64_MAX - 1,
                                     INT64_MIN + 1, INT64_C(1) << 62, -(INT64_C(1) << 62),
                                     INT64_C(0xFFFFFFFF), INT64_C(0x100000000)};
    static const int32_t edge_m[] = {0, 1, -1, 1 << 30, INT32_MAX, INT32_MIN, INT32_MIN + 1, 1610612736};
    int64_t count = 0;
    for (int i = 0; i < 200000; i++) {
        int64_t a;
        int32_t m;
        int n;
        switch (i % 4) {
        case 0: a = edge_a[rnd64() % (sizeof edge_a / sizeof edge_a[0])]; break;
        case 1: a = (int64_t)rnd64(); break;
        case 2: a = (int64_t)rnd64() >> rnd_range(0, 63); break;
        default: a = rnd_range(-100000, 100000); break;
        }
        m = (i % 3 == 0) ? edge_m[rnd64() % (sizeof edge_m / sizeof edge_m[0])] : (int32_t)rnd64();
        if (i % 5 == 0)
            m = (int32_t)rnd_range(1 << 30, INT32_MAX); /* what quantize_multiplier makes */
        n = (int)rnd_range(-70, 130);
        if (i % 2)
            n = (int)rnd_range(QNPU__RQ_SHIFT_MIN, QNPU__RQ_SHIFT_MAX);
        int64_t r1 = qnpu__mulshift_rne(a, m, n), r2 = qnpu__mulshift_rne_portable(a, m, n);
        ck_assert_msg(r1 == r2, "acc %lld m0 %d n %d: %lld vs portable %lld", (long long)a, m, n,
                      (long long)r1, (long long)r2);
        int32_t z = (int32_t)rnd_range(-70000, 70000), lo = (int32_t)rnd_range(-70000, 0);
        int32_t hi = (int32_t)rnd_range(0, 70000);
        if (m >= 0)
            ck_assert_int_eq(qnpu__requant(a, m, n, z, lo, hi), qnpu__requant_portable(a, m, n, z, lo, hi));
#ifdef QNPU__HAVE_INT128
        /* and both equal an independent 128-bit evaluation: round(p / 2^n) with ties to even */
        if (n >= 1 && n <= 100) {
            qnpu__i128 p = (qnpu__i128)a * m;
            qnpu__i128 d = (qnpu__i128)1 << n;
            qnpu__i128 q = p / d, r = p % d; /* truncating */
            if (r < 0) {
                q -= 1;
                r += d;
            }
            if (2 * r > d || (2 * r == d && (q & 1)))
                q += 1;
            int64_t e = q > INT64_MAX ? INT64_MAX : q < INT64_MIN ? INT64_MIN : (int64_t)q;
            ck_assert(e == r1);
            count++;
        }
#endif
    }
    (void)count;
}
END_TEST

START_TEST(test_gemmlowp_hand)
{
    /* SRDHM rounds a·b/2^31 to nearest, ties up: 3·2^30/2^31 = 1.5 -> 2, −1.5 -> −1 */
    ck_assert_int_eq(qnpu__srdhm(3, 1 << 30), 2);
    ck_assert_int_eq(qnpu__srdhm(-3, 1 << 30), -1);
    ck_assert_int_eq(qnpu__srdhm(5, 1 << 30), 3);
    ck_assert_int_eq(qnpu__srdhm(-5, 1 << 30), -2);
    ck_assert_int_eq(qnpu__srdhm(1 << 30, 1 << 30), 1 << 29);
    ck_assert_int_eq(qnpu__srdhm(INT32_MIN, INT32_MIN), INT32_MAX);
    ck_assert_int_eq(qnpu__srdhm(INT32_MIN, INT32_MAX), -INT32_MAX);
    ck_assert_int_eq(qnpu__srdhm(100, 1610612736), 75); /* 100·0.75 */
    /* RDBPOT rounds half away from zero */
    ck_assert_int_eq(qnpu__rdbpot(5, 1), 3);
    ck_assert_int_eq(qnpu__rdbpot(-5, 1), -3);
    ck_assert_int_eq(qnpu__rdbpot(-3, 1), -2);
    ck_assert_int_eq(qnpu__rdbpot(-1, 1), -1);
    ck_assert_int_eq(qnpu__rdbpot(10, 2), 3);  /*  2.5  */
    ck_assert_int_eq(qnpu__rdbpot(-10, 2), -3); /* −2.5  */
    ck_assert_int_eq(qnpu__rdbpot(9, 2), 2);    /*  2.25 */
    ck_assert_int_eq(qnpu__rdbpot(-9, 2), -2);
    ck_assert_int_eq(qnpu__rdbpot(11, 2), 3);   /*  2.75 */
    ck_assert_int_eq(qnpu__rdbpot(INT32_MIN, 31), -1);
    ck_assert_int_eq(qnpu__rdbpot(INT32_MIN, 32), -1); /* −0.5 -> −1 */
    ck_assert_int_eq(qnpu__rdbpot(INT32_MAX, 40), 0);
    ck_assert_int_eq(qnpu__rdbpot(7, 0), 7);
    /* The whole requantization. M = 0.5 (M0 = 2^30, n = 31): 5·0.5 = 2.5 -> 3 (RNE: 2);
     * −5 -> SRDHM floor((−5·2^30 + 2^30)/2^31) = −2; −7·0.5 = −3.5 -> −3 (RNE: −4). */
    const int32_t h = 1 << 30;
    ck_assert_int_eq(qnpu__requant_gemmlowp(5, h, 31, 0, -100, 100), 3);
    ck_assert_int_eq(qnpu__requant(5, h, 31, 0, -100, 100), 2);
    ck_assert_int_eq(qnpu__requant_gemmlowp(-5, h, 31, 0, -100, 100), -2);
    ck_assert_int_eq(qnpu__requant_gemmlowp(-7, h, 31, 0, -100, 100), -3);
    ck_assert_int_eq(qnpu__requant(-7, h, 31, 0, -100, 100), -4);
    /* M = 1/8 (M0 = 2^30, n = 33): SRDHM gives acc/2 rounded, RDBPOT(., 2) the rest.
     *   20: 10 -> 10/4 = 2.5 -> 3 (away from zero; RNE of 20/8 = 2.5 is 2)
     *  −20: −10 -> −2.5 -> −3
     *    3: 1.5 -> 2 -> 2/4 = 0.5 -> 1, although 3/8 = 0.375: the double rounding of gemmlowp
     *   −3: −1.5 -> −1 -> −0.25 -> 0 */
    ck_assert_int_eq(qnpu__requant_gemmlowp(20, h, 33, 0, -100, 100), 3);
    ck_assert_int_eq(qnpu__requant(20, h, 33, 0, -100, 100), 2);
    ck_assert_int_eq(qnpu__requant_gemmlowp(-20, h, 33, 0, -100, 100), -3);
    ck_assert_int_eq(qnpu__requant_gemmlowp(3, h, 33, 0, -100, 100), 1);
    ck_assert_int_eq(qnpu__requant(3, h, 33, 0, -100, 100), 0);
    ck_assert_int_eq(qnpu__requant_gemmlowp(-3, h, 33, 0, -100, 100), 0);
    /* z and the clamp; left shifts (n < 31): M = 2 (M0 = 2^30, n = 29): 3 -> 6 */
    ck_assert_int_eq(qnpu__requant_gemmlowp(3, h, 29, 128, 0, 255), 134);
    ck_assert_int_eq(qnpu__requant_gemmlowp(1000, h, 29, 128, 0, 255), 255);
    ck_assert_int_eq(qnpu__requant_gemmlowp(INT64_C(1) << 40, h, 29, 0, INT32_MIN, INT32_MAX),
                     INT32_MAX / 2 + 1); /* acc saturates to int32 first, ·4 saturates, /2 */
    /* a realistic one: M = 0.0123 on acc = 12345: 151.84 -> 152 both ways */
    int32_t m0;
    int n;
    qnpu__quantize_multiplier(0.0123, &m0, &n);
    ck_assert_int_eq(qnpu__requant_gemmlowp(12345, m0, n, 0, -1000, 1000), 152);
    ck_assert_int_eq(qnpu__requant(12345, m0, n, 0, -1000, 1000), 152);
}
END_TEST

/* ---- GEMM: helpers ------------------------------------------------------------------------- */

static const char *act_name[] = {"u8", "s8", "u16", "s16"};
static int act_bytes(int act)
{
    return act == QNPU__ACT_U16 || act == QNPU__ACT_S16 ? 2 : 1;
}
static void act_range(int act, int32_t *lo, int32_t *hi)
{
    switch (act) {
    case QNPU__ACT_U8: *lo = 0, *hi = 255; break;
    case QNPU__ACT_S8: *lo = -128, *hi = 127; break;
    case QNPU__ACT_U16: *lo = 0, *hi = 65535; break;
    default: *lo = -32768, *hi = 32767; break;
    }
}
static void put_x(void *x, int act, int64_t i, int32_t v)
{
    if (act_bytes(act) == 1) {
        ((uint8_t *)x)[i] = (uint8_t)(v & 0xFF);
    } else {
        uint16_t u = (uint16_t)(v & 0xFFFF);
        memcpy((uint8_t *)x + 2 * i, &u, 2);
    }
}
static void put_s4(uint8_t *row, int64_t k, int32_t v)
{
    int sh = (int)(k & 1) * 4;
    row[k >> 1] = (uint8_t)((row[k >> 1] & ~(0xF << sh)) | ((v & 0xF) << sh));
}

/* A code in [lo, hi]: mode 0 uniform; 1 mostly the extremes; 2 always `hi` (fill = 1) or `lo`. */
static int32_t code(int mode, int32_t lo, int32_t hi, int fill)
{
    if (mode == 2)
        return fill ? hi : lo;
    if (mode == 1) {
        uint64_t r = rnd64() % 10;
        if (r < 4)
            return lo;
        if (r < 8)
            return hi;
    }
    return (int32_t)rnd_range(lo, hi);
}

typedef struct gemm_case {
    int act, wfmt;
    int64_t T, N, K, ldx, ldw;
    void *x;
    uint8_t *w;
    int64_t *c;
} gemm_case;

/* Random operands (codes in the format's range; the padding of every row, including an int4
 * padding nibble, is random garbage that must not reach the result). xfill/wfill for mode 2.
 * The row strides exceed the minimum by xpad elements and wpad bytes. */
static void make_case_ld(gemm_case *g, int act, int wfmt, int64_t T, int64_t N, int64_t K, int mode,
                         int xfill, int wfill, int with_c, int64_t xpad, int64_t wpad)
{
    g->act = act, g->wfmt = wfmt, g->T = T, g->N = N, g->K = K;
    g->ldx = K + xpad;
    int64_t rowb = wfmt == QNPU__W_S4 ? (K + 1) / 2 : K;
    g->ldw = rowb + wpad;
    size_t xb = (size_t)(T * g->ldx * act_bytes(act)) + 1, wb = (size_t)(N * g->ldw) + 1;
    g->x = malloc(xb);
    g->w = malloc(wb);
    ck_assert(g->x && g->w);
    for (size_t i = 0; i < xb; i++)
        ((uint8_t *)g->x)[i] = (uint8_t)rnd64();
    for (size_t i = 0; i < wb; i++)
        g->w[i] = (uint8_t)rnd64();
    int32_t lo, hi;
    act_range(act, &lo, &hi);
    for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < K; k++)
            put_x(g->x, act, t * g->ldx + k, code(mode, lo, hi, xfill));
    int32_t wlo = wfmt == QNPU__W_S4 ? -8 : -128, whi = wfmt == QNPU__W_S4 ? 7 : 127;
    for (int64_t o = 0; o < N; o++)
        for (int64_t k = 0; k < K; k++) {
            int32_t v = code(mode, wlo, whi, wfill);
            if (wfmt == QNPU__W_S4)
                put_s4(g->w + o * g->ldw, k, v);
            else
                g->w[o * g->ldw + k] = (uint8_t)(int8_t)v;
        }
    g->c = NULL;
    if (with_c) {
        g->c = malloc((size_t)N * sizeof *g->c);
        for (int64_t o = 0; o < N; o++)
            g->c[o] = (int64_t)rnd64() >> rnd_range(20, 63);
    }
}

static void make_case(gemm_case *g, int act, int wfmt, int64_t T, int64_t N, int64_t K, int mode,
                      int xfill, int wfill, int with_c)
{
    int64_t xpad = rnd_range(0, 3), wpad = rnd_range(0, 2);
    make_case_ld(g, act, wfmt, T, N, K, mode, xfill, wfill, with_c, xpad, wpad);
}

static void free_case(gemm_case *g)
{
    free(g->x);
    free(g->w);
    free(g->c);
}

static void run(int impl, const gemm_case *g, const qnpu__igemm_out *out)
{
    ck_assert_int_eq(qnpu__igemm(impl, g->act, g->wfmt, g->T, g->N, g->K, g->x, g->ldx, g->w, g->ldw,
                                 g->c, out), 0);
}

/* Every optimized implementation against the reference: raw accumulators, RNE codes and
 * gemmlowp codes, bit for bit. */
static void check_case(const gemm_case *g)
{
    int64_t T = g->T, N = g->N;
    int64_t *a0 = malloc((size_t)(T * N) * sizeof *a0), *a1 = malloc((size_t)(T * N) * sizeof *a1);
    int32_t *y0 = malloc((size_t)(T * N) * sizeof *y0), *y1 = malloc((size_t)(T * N) * sizeof *y1);
    int32_t *m0 = malloc((size_t)N * sizeof *m0), *sh = malloc((size_t)N * sizeof *sh);
    qnpu__igemm_out raw = {0}, rq = {0};
    raw.acc = a0, raw.ldacc = N;
    run(QNPU__IGEMM_REF, g, &raw);
    /* per-row multipliers: most rows scaled so that the codes spread over [0, 255] (M about
     * 100 / max|acc|), the others anything from a left shift to a huge right shift */
    for (int64_t o = 0; o < N; o++) {
        int64_t mx = 1;
        for (int64_t t = 0; t < T; t++)
            mx = llabs(a0[t * N + o]) > mx ? llabs(a0[t * N + o]) : mx;
        int n;
        if (rnd64() % 4) {
            qnpu__quantize_multiplier((50.0 + 100.0 * rnd_unit()) / (double)mx, &m0[o], &n);
        } else {
            m0[o] = (int32_t)rnd_range(1 << 30, INT32_MAX);
            n = (int)rnd_range(-3, 75);
        }
        sh[o] = n;
    }
    rq.y = y0, rq.ldy = N, rq.m0 = m0, rq.shift = sh, rq.zy = (int32_t)rnd_range(0, 255);
    rq.qmin = 0, rq.qmax = 255;
    run(QNPU__IGEMM_REF, g, &rq);
    for (int impl = QNPU__IGEMM_AVX2; impl <= QNPU__IGEMM_VNNI + 1; impl++) {
        int use = impl > QNPU__IGEMM_VNNI ? -1 : impl; /* -1: the dispatcher */
        memset(a1, 0x55, (size_t)(T * N) * sizeof *a1);
        raw.acc = a1;
        run(use, g, &raw);
        raw.acc = a0;
        for (int64_t i = 0; i < T * N; i++)
            ck_assert_msg(a0[i] == a1[i],
                          "%s x %s impl %d T %lld N %lld K %lld: acc[%lld][%lld] = %lld, ref %lld",
                          act_name[g->act], g->wfmt == QNPU__W_S4 ? "s4" : "s8", use, (long long)T,
                          (long long)N, (long long)g->K, (long long)(i / N), (long long)(i % N),
                          (long long)a1[i], (long long)a0[i]);
        memset(y1, 0x55, (size_t)(T * N) * sizeof *y1);
        rq.y = y1;
        run(use, g, &rq);
        rq.y = y0;
        ck_assert_int_eq(memcmp(y0, y1, (size_t)(T * N) * sizeof *y0), 0);
    }
    /* requantized output = requant of the raw accumulator, both modes */
    for (int64_t i = 0; i < T * N; i++)
        ck_assert_int_eq(y0[i], qnpu__requant(a0[i], m0[i % N], sh[i % N], rq.zy, 0, 255));
    rq.mode = QNPU__RQ_GEMMLOWP;
    run(QNPU__IGEMM_REF, g, &rq);
    for (int64_t i = 0; i < T * N; i++)
        ck_assert_int_eq(y0[i], qnpu__requant_gemmlowp(a0[i], m0[i % N], sh[i % N], rq.zy, 0, 255));
    rq.y = y1;
    run(-1, g, &rq);
    ck_assert_int_eq(memcmp(y0, y1, (size_t)(T * N) * sizeof *y0), 0);
    free(a0);
    free(a1);
    free(y0);
    free(y1);
    free(m0);
    free(sh);
}

static const int pairs[][2] = {
    {QNPU__ACT_U8, QNPU__W_S8},  {QNPU__ACT_U8, QNPU__W_S4},  {QNPU__ACT_S8, QNPU__W_S8},
    {QNPU__ACT_S8, QNPU__W_S4},  {QNPU__ACT_U16, QNPU__W_S8}, {QNPU__ACT_S16, QNPU__W_S8},
    {QNPU__ACT_U16, QNPU__W_S4},
};
#define NPAIRS ((int)(sizeof pairs / sizeof pairs[0]))

/* ---- GEMM: the tests ------------------------------------------------------------------------ */

/* The reference itself: acc = Σ (q_x − z_x)·q_w + b_int through qnpu__igemm_fold_c, for every
 * activation format (checks OFF), computed here independently. */
START_TEST(test_ref_definition)
{
    for (int p = 0; p < NPAIRS; p++) {
        gemm_case g;
        make_case(&g, pairs[p][0], pairs[p][1], 3, 7, 37, 1, 0, 0, 0);
        int32_t lo, hi;
        act_range(g.act, &lo, &hi);
        int32_t zx = (int32_t)rnd_range(lo, hi);
        int64_t wsum[7], c[7], acc[21];
        int32_t b[7];
        for (int o = 0; o < 7; o++)
            b[o] = (int32_t)rnd_range(-100000, 100000);
        if (g.wfmt == QNPU__W_S4)
            qnpu__igemm_rowsum_s4(7, 37, g.w, g.ldw, wsum);
        else
            qnpu__igemm_rowsum_s8(7, 37, (const int8_t *)g.w, g.ldw, wsum);
        qnpu__igemm_fold_c(g.act, 7, wsum, b, zx, c);
        g.c = c;
        qnpu__igemm_out raw = {0};
        raw.acc = acc, raw.ldacc = 7;
        run(QNPU__IGEMM_REF, &g, &raw);
        for (int t = 0; t < 3; t++)
            for (int o = 0; o < 7; o++) {
                int64_t e = b[o];
                for (int k = 0; k < 37; k++) {
                    int32_t xv;
                    if (act_bytes(g.act) == 1) {
                        uint8_t u = ((uint8_t *)g.x)[t * g.ldx + k];
                        xv = g.act == QNPU__ACT_S8 ? (int8_t)u : u;
                    } else {
                        uint16_t u;
                        memcpy(&u, (uint8_t *)g.x + 2 * (t * g.ldx + k), 2);
                        xv = g.act == QNPU__ACT_S16 ? (int16_t)u : u;
                    }
                    int32_t wv = g.wfmt == QNPU__W_S4 ? qnpu__s4_get(g.w + o * g.ldw, k)
                                                      : (int8_t)g.w[o * g.ldw + k];
                    e += (int64_t)(xv - zx) * wv;
                }
                ck_assert_msg(acc[t * 7 + o] == e, "%s: %lld vs %lld", act_name[g.act],
                              (long long)acc[t * 7 + o], (long long)e);
            }
        g.c = NULL;
        free_case(&g);
    }
    /* unknown combinations are refused */
    qnpu__igemm_out raw = {0};
    ck_assert_int_eq(qnpu__igemm(0, QNPU__ACT_S16, QNPU__W_S4, 1, 1, 1, NULL, 1, NULL, 1, NULL, &raw), -1);
    ck_assert_int_eq(qnpu__igemm(0, 9, QNPU__W_S8, 1, 1, 1, NULL, 1, NULL, 1, NULL, &raw), -1);
    ck_assert_int_eq(qnpu__igemm(7, QNPU__ACT_U8, QNPU__W_S8, 1, 1, 1, NULL, 1, NULL, 1, NULL, &raw), -1);
}
END_TEST

/* Odd shapes: K not a multiple of 8/16/32/64, odd N, T = 1 and T > 1 (every tile remainder). */
START_TEST(test_simd_matches_ref_shapes)
{
    static const int64_t shapes[][3] = {
        {1, 1, 1},    {1, 1, 2},    {1, 3, 7},    {2, 5, 15},   {1, 17, 63},  {3, 9, 64},
        {4, 33, 65},  {5, 19, 127}, {7, 31, 129}, {6, 40, 257}, {1, 64, 511}, {2, 8, 496},
        {3, 11, 497}, {9, 23, 1000}, {1, 300, 2048}, {8, 16, 33}, {11, 13, 95}, {13, 7, 31},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int p = 0; p < NPAIRS; p++)
            for (int mode = 0; mode < 2; mode++) {
                gemm_case g;
                make_case(&g, pairs[p][0], pairs[p][1], shapes[s][0], shapes[s][1], shapes[s][2],
                          mode, 0, 0, (int)(s & 1));
                check_case(&g);
                free_case(&g);
            }
}
END_TEST

/* A16 × W4 (u16_s4, the down_proj of the deployed graph) over a grid of shapes: every tile
 * remainder in T (4/2/1 rows), weight panels and partial tiles in N, K below, at and across the
 * 64/128-column steps and the 2048-column int32 blocks, odd K (padding nibble), wide strides. */
START_TEST(test_simd_matches_ref_u16_s4)
{
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 7, 9};
    static const int64_t Ns[] = {1, 2, 3, 17, 43, 172};
    static const int64_t Ks[] = {1, 2, 3, 43, 63, 64, 65, 127, 128, 129, 172, 255, 2047, 2048, 2049, 4225};
    int i = 0;
    for (size_t a = 0; a < sizeof Ts / sizeof Ts[0]; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++)
            for (size_t k = 0; k < sizeof Ks / sizeof Ks[0]; k++, i++) {
                /* the largest shapes only for a few T, N, to keep the reference cheap */
                if (Ks[k] > 2000 && Ts[a] * Ns[b] > 60 && (i % 5) != 0)
                    continue;
                gemm_case g;
                int64_t xpad = i % 3 == 0 ? 0 : i % 3 == 1 ? 5 : 67;
                int64_t wpad = i % 4 == 0 ? 0 : i % 4 == 1 ? 1 : i % 4 == 2 ? 33 : 70;
                make_case_ld(&g, QNPU__ACT_U16, QNPU__W_S4, Ts[a], Ns[b], Ks[k], i & 1, 0, 0,
                             (i >> 1) & 1, xpad, wpad);
                check_case(&g);
                free_case(&g);
            }
    /* the extreme codes only (0 and 65535 against −8 and 7), with the panel of the VNNI and
     * AVX2 kernels crossed (N = 300 > 256 rows at K = 2048) */
    for (int m = 0; m < 4; m++) {
        gemm_case g;
        make_case_ld(&g, QNPU__ACT_U16, QNPU__W_S4, 5, 300, 2048 + (m & 1), 2, m & 1, m >> 1, 1,
                     m, 3 * m);
        check_case(&g);
        free_case(&g);
        make_case_ld(&g, QNPU__ACT_U16, QNPU__W_S4, 6, 270, 2500 - m, 1, 0, 0, m & 1, 2, 1);
        check_case(&g);
        free_case(&g);
    }
}
END_TEST

/* Long rows: K up to 5632 (TinyLlama's FFN), the AVX2 16-bit block (496) and the VNNI 16-bit
 * block (4096) crossed, extremes everywhere. */
START_TEST(test_simd_matches_ref_long)
{
    static const int64_t shapes[][3] = {
        {1, 5, 5632}, {3, 6, 5632}, {2, 3, 4096}, {5, 2, 4097}, {1, 9, 2047}, {4, 4, 5631},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int p = 0; p < NPAIRS; p++) {
            gemm_case g;
            make_case(&g, pairs[p][0], pairs[p][1], shapes[s][0], shapes[s][1], shapes[s][2], 1, 0, 0, 1);
            check_case(&g);
            free_case(&g);
        }
}
END_TEST

/* The worst cases of the accumulator bounds (docs/kernels.md): every product at its largest
 * magnitude, both signs, with K past the point where a plain int32 sum would overflow:
 *   u8 × s8: 255·128 = 32640 per product, int32 overflows beyond K = 65793 -> K = 66000;
 *   u8 × s4: 2040 per product, beyond K = 1,052,688 -> K = 1,052,800 (one row);
 *   u16 × s8 (re-centred −32768 · −128 = 2^22), beyond K = 511 -> K = 513, 4100, 5632;
 *   u16 × s4 (−32768 · −8 = 2^18), beyond K = 8191 -> K = 8193, 8300, 20001 (the SIMD kernels'
 *     int32 blocks are 2048 columns: 5 to 10 blocks, a partial one last, odd K).
 * Besides agreeing with the reference, the result must be the exact product K·x·w. */
START_TEST(test_simd_matches_ref_bounds)
{
    static const struct { int act, wfmt; int64_t T, N, K; } b[] = {
        {QNPU__ACT_U8, QNPU__W_S8, 2, 3, 65536}, {QNPU__ACT_U8, QNPU__W_S8, 2, 3, 66000},
        {QNPU__ACT_S8, QNPU__W_S8, 1, 2, 66000}, {QNPU__ACT_U8, QNPU__W_S4, 1, 2, 1052800},
        {QNPU__ACT_S8, QNPU__W_S4, 1, 1, 1052800}, {QNPU__ACT_U16, QNPU__W_S8, 2, 3, 511},
        {QNPU__ACT_U16, QNPU__W_S8, 2, 3, 513}, {QNPU__ACT_U16, QNPU__W_S8, 3, 2, 4100},
        {QNPU__ACT_S16, QNPU__W_S8, 2, 17, 5632}, {QNPU__ACT_U16, QNPU__W_S4, 1, 2, 5000},
        {QNPU__ACT_U16, QNPU__W_S4, 2, 3, 8191}, {QNPU__ACT_U16, QNPU__W_S4, 1, 17, 8193},
        {QNPU__ACT_U16, QNPU__W_S4, 5, 3, 8300}, {QNPU__ACT_U16, QNPU__W_S4, 3, 18, 20001},
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        for (int xf = 0; xf < 2; xf++)
            for (int wf = 0; wf < 2; wf++) {
                gemm_case g;
                make_case(&g, b[i].act, b[i].wfmt, b[i].T, b[i].N, b[i].K, 2, xf, wf, 0);
                int64_t *acc = malloc((size_t)(b[i].T * b[i].N) * sizeof *acc);
                qnpu__igemm_out raw = {0};
                raw.acc = acc, raw.ldacc = b[i].N;
                run(-1, &g, &raw);
                int32_t lo, hi;
                act_range(b[i].act, &lo, &hi);
                int64_t xv = (xf ? hi : lo) - qnpu__igemm_act_offset(b[i].act);
                int64_t wv = b[i].wfmt == QNPU__W_S4 ? (wf ? 7 : -8) : (wf ? 127 : -128);
                for (int64_t j = 0; j < b[i].T * b[i].N; j++)
                    ck_assert_msg(acc[j] == b[i].K * xv * wv, "%s K %lld: %lld vs %lld",
                                  act_name[b[i].act], (long long)b[i].K, (long long)acc[j],
                                  (long long)(b[i].K * xv * wv));
                free(acc);
                check_case(&g);
                free_case(&g);
            }
}
END_TEST

/* The int path of a whole linear layer against floats: dequantize the codes, multiply in double,
 * quantize the result with the observer rule. Within ±1 code everywhere. */
static void linear_vs_float(int act, int wbits, int with_bias, int *mismatch, int64_t *total)
{
    const int64_t T = 9, N = 37, K = 300;
    float *xf = malloc(T * K * sizeof *xf), *wf = malloc(N * K * sizeof *wf);
    float *sw = malloc(N * sizeof *sw), *bias = malloc(N * sizeof *bias);
    for (int64_t i = 0; i < T * K; i++)
        xf[i] = (float)(8.0 * rnd_unit() - 3.0);
    for (int64_t i = 0; i < N * K; i++)
        wf[i] = (float)((rnd_unit() - 0.5) * 0.2);
    for (int64_t o = 0; o < N; o++)
        bias[o] = with_bias ? (float)(rnd_unit() - 0.5) : 0.0f;
    int xbits = act == QNPU__ACT_U16 ? 16 : 8;
    float sx, sy;
    int32_t zx, zy, xmin, xmax;
    qnpu__qrange(xbits, 0, &xmin, &xmax);
    ck_assert_int_eq(qnpu__qparams_observer(-3.0f, 5.0f, xbits, 0, 0, &sx, &zx), QNPU_OK);
    int8_t *qw = malloc(N * K);
    ck_assert_int_eq(qnpu__weight_scales(wf, N, K, K, wbits, QNPU__WSCALE_MAX, sw), QNPU_OK);
    ck_assert_int_eq(qnpu__weight_quantize(wf, N, K, K, sw, wbits, qw, K), QNPU_OK);
    /* activation codes */
    void *qx = malloc(T * K * 2);
    for (int64_t i = 0; i < T * K; i++)
        put_x(qx, act, i, qnpu__quantize_observer(xf[i], qnpu__inv_scale(sx), zx, xmin, xmax));
    /* integer bias b_int = rne(b / (s_x·s_w)), as FORMATS.md §3.2 */
    int32_t *bint = malloc(N * sizeof *bint);
    for (int64_t o = 0; o < N; o++)
        bint[o] = (int32_t)rint((double)bias[o] / ((double)sx * sw[o]));
    /* float reference on the dequantized operands */
    double *yd = malloc(T * N * sizeof *yd);
    float lo = 0, hi = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < N; o++) {
            double s = (double)bint[o] * sx * sw[o];
            for (int64_t k = 0; k < K; k++) {
                int32_t q = qnpu__quantize_observer(xf[t * K + k], qnpu__inv_scale(sx), zx, xmin, xmax);
                s += (double)((float)(q - zx) * sx) * (double)((float)qw[o * K + k] * sw[o]);
            }
            yd[t * N + o] = s;
            lo = fminf(lo, (float)s);
            hi = fmaxf(hi, (float)s);
        }
    ck_assert_int_eq(qnpu__qparams_observer(lo, hi, 8, 0, 0, &sy, &zy), QNPU_OK);
    /* integer path */
    int64_t *wsum = malloc(N * sizeof *wsum), *c = malloc(N * sizeof *c);
    int32_t *m0 = malloc(N * sizeof *m0), *sh = malloc(N * sizeof *sh), *y = malloc(T * N * sizeof *y);
    int64_t ldw = wbits == 4 ? (K + 1) / 2 : K;
    uint8_t *wq = malloc(N * ldw);
    for (int64_t o = 0; o < N; o++) {
        if (wbits == 4)
            qnpu__s4_pack_row(qw + o * K, K, wq + o * ldw);
        else
            memcpy(wq + o * ldw, qw + o * K, K);
    }
    if (wbits == 4)
        qnpu__igemm_rowsum_s4(N, K, wq, ldw, wsum);
    else
        qnpu__igemm_rowsum_s8(N, K, (const int8_t *)wq, ldw, wsum);
    qnpu__igemm_fold_c(act, N, wsum, bint, zx, c);
    ck_assert_int_eq(qnpu__igemm_multipliers(N, sx, sw, sy, m0, sh), 0);
    qnpu__igemm_out out = {0};
    out.y = y, out.ldy = N, out.m0 = m0, out.shift = sh, out.zy = zy, out.qmin = 0, out.qmax = 255;
    ck_assert_int_eq(qnpu__igemm(-1, act, wbits == 4 ? QNPU__W_S4 : QNPU__W_S8, T, N, K, qx, K, wq,
                                 ldw, c, &out), 0);
    for (int64_t i = 0; i < T * N; i++) {
        int32_t e = qnpu__quantize_observer((float)yd[i], qnpu__inv_scale(sy), zy, 0, 255);
        ck_assert_msg(abs(e - y[i]) <= 1, "act %s W%d: int %d vs float %d (y = %g)", act_name[act],
                      wbits, y[i], e, yd[i]);
        *mismatch += e != y[i];
        (*total)++;
    }
    free(xf), free(wf), free(sw), free(bias), free(qw), free(qx), free(bint), free(yd);
    free(wsum), free(c), free(m0), free(sh), free(y), free(wq);
}

START_TEST(test_linear_vs_float)
{
    int mismatch = 0;
    int64_t total = 0;
    for (int bias = 0; bias < 2; bias++) {
        linear_vs_float(QNPU__ACT_U8, 8, bias, &mismatch, &total);
        linear_vs_float(QNPU__ACT_U8, 4, bias, &mismatch, &total);
        linear_vs_float(QNPU__ACT_U16, 8, bias, &mismatch, &total);
    }
    /* ±1 is the contract; in practice only near-ties of the float value differ */
    ck_assert_msg(mismatch * 100 <= total, "%d of %lld codes differ by one", mismatch, (long long)total);
}
END_TEST

START_TEST(test_helpers)
{
    /* int4 packing round trip, low nibble first, zero padding nibble */
    int8_t q[7] = {-8, 7, -1, 0, 3, -5, 6};
    uint8_t p[4];
    qnpu__s4_pack_row(q, 7, p);
    ck_assert_int_eq(p[0], 0x78); /* −8 -> 0x8 low, 7 -> 0x7 high */
    ck_assert_int_eq(p[3], 0x06);
    for (int k = 0; k < 7; k++)
        ck_assert_int_eq(qnpu__s4_get(p, k), q[k]);
    int64_t s;
    qnpu__igemm_rowsum_s4(1, 7, p, 4, &s);
    ck_assert_int_eq(s, 2);
    qnpu__igemm_rowsum_s8(1, 7, q, 7, &s);
    ck_assert_int_eq(s, 2);
    /* offsets */
    ck_assert_int_eq(qnpu__igemm_act_offset(QNPU__ACT_U8), 0);
    ck_assert_int_eq(qnpu__igemm_act_offset(QNPU__ACT_S8), -128);
    ck_assert_int_eq(qnpu__igemm_act_offset(QNPU__ACT_U16), 32768);
    ck_assert_int_eq(qnpu__igemm_act_offset(QNPU__ACT_S16), 0);
    /* narrowing saturates */
    int32_t y[5] = {-70000, -1, 100, 300, 70000};
    uint8_t u8[5];
    int8_t s8[5];
    uint16_t u16[5];
    int16_t s16[5];
    qnpu__narrow_u8(y, 5, u8);
    qnpu__narrow_s8(y, 5, s8);
    qnpu__narrow_u16(y, 5, u16);
    qnpu__narrow_s16(y, 5, s16);
    ck_assert(u8[0] == 0 && u8[2] == 100 && u8[3] == 255);
    ck_assert(s8[0] == -128 && s8[1] == -1 && s8[3] == 127);
    ck_assert(u16[1] == 0 && u16[3] == 300 && u16[4] == 65535);
    ck_assert(s16[0] == -32768 && s16[4] == 32767);
    /* multipliers from scales */
    float sw[2] = {0.01f, 0.02f};
    int32_t m0[2], sh[2];
    ck_assert_int_eq(qnpu__igemm_multipliers(2, 0.5f, sw, 0.25f, m0, sh), 0);
    ck_assert(fabs(ldexp(m0[0], -sh[0]) - 0.02) < 1e-8 && fabs(ldexp(m0[1], -sh[1]) - 0.04) < 1e-8);
    sw[1] = -1.0f;
    ck_assert_int_eq(qnpu__igemm_multipliers(2, 0.5f, sw, 0.25f, m0, sh), -1);
    ck_assert(m0[1] == 0 && sh[1] == 0);
    /* empty shapes write nothing; K = 0 gives c */
    int64_t acc[2] = {11, 22}, c[2] = {5, -6};
    uint8_t x1[1] = {0};
    int8_t w1[2] = {0, 0};
    qnpu__igemm_out raw = {0};
    raw.acc = acc, raw.ldacc = 2;
    for (int impl = 0; impl < 3; impl++) {
        acc[0] = 11, acc[1] = 22;
        qnpu__igemm(impl, QNPU__ACT_U8, QNPU__W_S8, 0, 2, 5, x1, 1, w1, 1, c, &raw);
        ck_assert(acc[0] == 11 && acc[1] == 22);
        qnpu__igemm(impl, QNPU__ACT_U8, QNPU__W_S8, 1, 2, 0, x1, 1, w1, 1, c, &raw);
        ck_assert(acc[0] == 5 && acc[1] == -6);
    }
    /* reported implementations */
    ck_assert_int_eq(qnpu__igemm_have(QNPU__IGEMM_REF), 1);
    int best = qnpu__igemm_best();
    ck_assert(qnpu__igemm_have(best));
}
END_TEST

/* Splitting N across "threads" (offset pointers) gives the same result as one call. */
START_TEST(test_split_rows)
{
    gemm_case g;
    make_case(&g, QNPU__ACT_U8, QNPU__W_S4, 5, 45, 200, 0, 0, 0, 1);
    int64_t a0[5 * 45], a1[5 * 45];
    qnpu__igemm_out raw = {0};
    raw.acc = a0, raw.ldacc = 45;
    run(QNPU__IGEMM_REF, &g, &raw);
    for (int64_t o0 = 0; o0 < 45; o0 += 13) {
        int64_t n = 45 - o0 < 13 ? 45 - o0 : 13;
        qnpu__igemm_out part = {0};
        part.acc = a1 + o0, part.ldacc = 45;
        qnpu__igemm_u8_s4(5, n, 200, g.x, g.ldx, g.w + o0 * g.ldw, g.ldw, g.c + o0, &part);
    }
    ck_assert_int_eq(memcmp(a0, a1, sizeof a0), 0);
    free_case(&g);
    /* the same for A16 × W4, split in N and in T (offset x and the output rows) */
    make_case(&g, QNPU__ACT_U16, QNPU__W_S4, 5, 45, 301, 1, 0, 0, 1);
    raw.acc = a0, raw.ldacc = 45;
    run(QNPU__IGEMM_REF, &g, &raw);
    memset(a1, 0, sizeof a1);
    const uint16_t *x16 = g.x;
    for (int64_t t0 = 0; t0 < 5; t0 += 3)
        for (int64_t o0 = 0; o0 < 45; o0 += 13) {
            int64_t n = 45 - o0 < 13 ? 45 - o0 : 13, tn = 5 - t0 < 3 ? 5 - t0 : 3;
            qnpu__igemm_out part = {0};
            part.acc = a1 + t0 * 45 + o0, part.ldacc = 45;
            qnpu__igemm_u16_s4(tn, n, 301, x16 + t0 * g.ldx, g.ldx, g.w + o0 * g.ldw, g.ldw,
                               g.c + o0, &part);
        }
    ck_assert_int_eq(memcmp(a0, a1, sizeof a0), 0);
    free_case(&g);
}
END_TEST

Suite *qnpu_int_gemm_suite(void)
{
    Suite *s = suite_create("int_gemm");
    TCase *tr = tcase_create("requant");
    tcase_add_test(tr, test_rshift_rne_hand);
    tcase_add_test(tr, test_quantize_multiplier);
    tcase_add_test(tr, test_requant_hand);
    tcase_add_test(tr, test_requant_portable_agrees);
    tcase_add_test(tr, test_gemmlowp_hand);
    suite_add_tcase(s, tr);
    TCase *tg = tcase_create("gemm");
    tcase_set_timeout(tg, 300);
    tcase_add_test(tg, test_ref_definition);
    tcase_add_test(tg, test_simd_matches_ref_shapes);
    tcase_add_test(tg, test_simd_matches_ref_u16_s4);
    tcase_add_test(tg, test_simd_matches_ref_long);
    tcase_add_test(tg, test_simd_matches_ref_bounds);
    tcase_add_test(tg, test_linear_vs_float);
    tcase_add_test(tg, test_helpers);
    tcase_add_test(tg, test_split_rows);
    suite_add_tcase(s, tg);
    return s;
}
