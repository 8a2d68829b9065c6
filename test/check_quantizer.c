/* check_quantizer.c — quantizer primitives and observers (lib/calib/quant.h): integer ranges,
 * round-half-to-even in both fake-quant forms, the float32 order of METHOD.md §2.2 vs §2.3,
 * qparams rules (§2.3 observer, §7.2 init), the four observers, per-channel weight scales and
 * codes. Expected values are worked by hand in the comments, or come from small references
 * written here in double precision. Parity rules (METHOD.md §12) are cited by number. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "calib/quant.h"
#include "internal.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------------------- */

/* A small deterministic generator (64-bit LCG, top bits) and a Box-Muller normal. */
static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
    rng_state = s * 2862933555777941757ULL + 3037000493ULL;
}

static double rng_uniform(void) /* (0, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(void)
{
    double u = rng_uniform(), v = rng_uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* |a - b| <= tol * max(|a|, |b|) */
static int close_rel(double a, double b, double tol)
{
    return fabs(a - b) <= tol * fmax(fabs(a), fabs(b));
}

/* floats apart by at most `ulps` representable values (same sign) */
static int within_ulps(float a, float b, int ulps)
{
    for (int i = 0; i < ulps && a != b; i++)
        a = nextafterf(a, b);
    return a == b;
}

/* round half to even in double, written out (independent of rint) */
static double ref_rne(double v)
{
    double f = floor(v), d = v - f;
    if (d > 0.5)
        return f + 1.0;
    if (d < 0.5)
        return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

/* mean squared error of the observer fake-quant over data */
static double observer_mse(const float *x, size_t n, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    double e = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)qnpu__fq_observer(x[i], s, z, qmin, qmax) - x[i];
        e += d * d;
    }
    return e / (double)n;
}

/* ---- §2.1 ranges (parity rule 1) -------------------------------------------------------------- */

START_TEST(test_qrange)
{
    static const struct { int bits, sym; int32_t qmin, qmax; } t[] = {
        {4, 1, -8, 7},         {8, 1, -128, 127},  {16, 1, -32768, 32767},
        {4, 0, 0, 15},         {8, 0, 0, 255},     {16, 0, 0, 65535},
        {2, 1, -2, 1},         {2, 0, 0, 3},       {12, 1, -2048, 2047},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int32_t lo = 99, hi = 99;
        ck_assert_int_eq(qnpu__qrange(t[i].bits, t[i].sym, &lo, &hi), QNPU_OK);
        ck_assert_int_eq(lo, t[i].qmin);
        ck_assert_int_eq(hi, t[i].qmax);
    }
    int32_t lo = 99, hi = 99;
    ck_assert_int_eq(qnpu__qrange(1, 0, &lo, &hi), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__qrange(17, 1, &lo, &hi), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(lo, 99); /* untouched */
}
END_TEST

/* ---- rounding ties (parity rule 2) ------------------------------------------------------------ */

/* s = 0.5: x/s and x*(1/s) are exact, so x = k/2 + 1/4 lands exactly on k + 0.5. */
START_TEST(test_ties_learnable)
{
    const float s = 0.5f;
    /* symmetric 8-bit: u = x/s; ties to even: 0.5->0, 1.5->2, 2.5->2, -0.5->-0, -1.5->-2 */
    const float xs[] = {0.25f, 0.75f, 1.25f, -0.25f, -0.75f, -1.25f};
    const int32_t sym_codes[] = {0, 2, 2, 0, -2, -2};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(qnpu__fq_learnable_code(xs[i], s, 0.0f, -128, 127, 1), sym_codes[i]);
        ck_assert_float_eq(qnpu__fq_learnable(xs[i], s, 0.0f, -128, 127, 1), sym_codes[i] * s);
    }
    /* asymmetric, z = 3 (odd): u = x/s + 3 = 3.5, 4.5, 5.5 -> 4, 4, 6 (the tie is on u) */
    const int32_t odd_codes[] = {4, 4, 6};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(qnpu__fq_learnable_code(xs[i], s, 3.0f, 0, 255, 0), odd_codes[i]);
        ck_assert_float_eq(qnpu__fq_learnable(xs[i], s, 3.0f, 0, 255, 0), (odd_codes[i] - 3) * s);
    }
    /* z = 4 (even): 4.5, 5.5, 6.5 -> 4, 6, 6 */
    const int32_t even_codes[] = {4, 6, 6};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(qnpu__fq_learnable_code(xs[i], s, 4.0f, 0, 255, 0), even_codes[i]);
    /* the float z is rounded half to even first (parity rule 5): 2.5 -> 2, 3.5 -> 4, 2.4 -> 2 */
    ck_assert_int_eq(qnpu__fq_learnable_code(0.0f, s, 2.5f, 0, 255, 0), 2);
    ck_assert_int_eq(qnpu__fq_learnable_code(0.0f, s, 3.5f, 0, 255, 0), 4);
    ck_assert_int_eq(qnpu__fq_learnable_code(0.0f, s, 2.4f, 0, 255, 0), 2);
    ck_assert_float_eq(qnpu__fq_learnable(1.0f, s, 3.5f, 0, 255, 0), 1.0f); /* (6 - 4) * 0.5 */
    /* 16-bit asym: s = 2^-16, x = 2.5 * 2^-16 -> 2 */
    ck_assert_int_eq(qnpu__fq_learnable_code(2.5f * 0x1p-16f, 0x1p-16f, 0.0f, 0, 65535, 0), 2);
    ck_assert_int_eq(qnpu__fq_learnable_code(3.5f * 0x1p-16f, 0x1p-16f, 0.0f, 0, 65535, 0), 4);
}
END_TEST

START_TEST(test_ties_observer)
{
    const float s = 0.5f; /* inv_s = 2 exactly */
    ck_assert_float_eq(qnpu__inv_scale(s), 2.0f);
    const float xs[] = {0.25f, 0.75f, 1.25f, -0.25f, -0.75f, -1.25f};
    const int32_t sym_codes[] = {0, 2, 2, 0, -2, -2};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(qnpu__quantize_observer(xs[i], 2.0f, 0, -128, 127), sym_codes[i]);
        ck_assert_float_eq(qnpu__fq_observer(xs[i], s, 0, -128, 127), sym_codes[i] * s);
    }
    /* z = 3: round first, then add z (parity rule 4): rne(0.5)+3 = 3, rne(1.5)+3 = 5,
     * rne(2.5)+3 = 5 — not the learnable order's 4, 4, 6 */
    const int32_t codes[] = {3, 5, 5};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(qnpu__quantize_observer(xs[i], 2.0f, 3, 0, 255), codes[i]);
        ck_assert_float_eq(qnpu__fq_observer(xs[i], s, 3, 0, 255), (codes[i] - 3) * s);
    }
    /* 16-bit sym: s = 2^-15, x = -3.5 * 2^-15 -> -4 */
    ck_assert_int_eq(qnpu__quantize_observer(-3.5f * 0x1p-15f, 0x1p15f, 0, -32768, 32767), -4);
}
END_TEST

/* ---- clamping at both ends ---------------------------------------------------------------------- */

START_TEST(test_clamp)
{
    /* 8-bit asym, s = 0.25, z = 10: representable [-2.5, 61.25] */
    ck_assert_int_eq(qnpu__quantize_observer(-5.0f, 4.0f, 10, 0, 255), 0);
    ck_assert_int_eq(qnpu__quantize_observer(100.0f, 4.0f, 10, 0, 255), 255);
    ck_assert_float_eq(qnpu__fq_observer(-5.0f, 0.25f, 10, 0, 255), -2.5f);
    ck_assert_float_eq(qnpu__fq_observer(100.0f, 0.25f, 10, 0, 255), 61.25f);
    ck_assert_int_eq(qnpu__fq_learnable_code(-5.0f, 0.25f, 10.0f, 0, 255, 0), 0);
    ck_assert_int_eq(qnpu__fq_learnable_code(100.0f, 0.25f, 10.0f, 0, 255, 0), 255);
    ck_assert_float_eq(qnpu__fq_learnable(-5.0f, 0.25f, 10.0f, 0, 255, 0), -2.5f);
    ck_assert_float_eq(qnpu__fq_learnable(100.0f, 0.25f, 10.0f, 0, 255, 0), 61.25f);
    /* exactly at the ends */
    ck_assert_int_eq(qnpu__quantize_observer(-2.5f, 4.0f, 10, 0, 255), 0);
    ck_assert_int_eq(qnpu__quantize_observer(61.25f, 4.0f, 10, 0, 255), 255);
    /* W4 sym: [-8, 7] */
    ck_assert_int_eq(qnpu__fq_learnable_code(-100.0f, 1.0f, 0.0f, -8, 7, 1), -8);
    ck_assert_int_eq(qnpu__fq_learnable_code(7.49f, 1.0f, 0.0f, -8, 7, 1), 7);
    ck_assert_int_eq(qnpu__fq_learnable_code(7.5f, 1.0f, 0.0f, -8, 7, 1), 7);
    /* 16 bits, and values so large that x * inv_s overflows to Inf: no int overflow */
    ck_assert_int_eq(qnpu__quantize_observer(0.5f, 65536.0f, 0, 0, 65535), 32768);
    ck_assert_int_eq(qnpu__quantize_observer(1.0f, 65536.0f, 0, 0, 65535), 65535);
    ck_assert_int_eq(qnpu__quantize_observer(-1.0f, 65536.0f, 0, 0, 65535), 0);
    ck_assert_int_eq(qnpu__quantize_observer(1.0f, 32768.0f, 0, -32768, 32767), 32767);
    ck_assert_int_eq(qnpu__quantize_observer(-1.0f, 32768.0f, 0, -32768, 32767), -32768);
    ck_assert_int_eq(qnpu__quantize_observer(FLT_MAX, 65536.0f, 7, 0, 65535), 65535);
    ck_assert_int_eq(qnpu__quantize_observer(-FLT_MAX, 65536.0f, 7, 0, 65535), 0);
    ck_assert_int_eq(qnpu__fq_learnable_code(FLT_MAX, 0x1p-16f, 7.0f, 0, 65535, 0), 65535);
    ck_assert_int_eq(qnpu__fq_learnable_code(-FLT_MAX, 0x1p-16f, 7.0f, 0, 65535, 0), 0);
    /* a zero point outside the range still clamps correctly */
    ck_assert_int_eq(qnpu__quantize_observer(0.0f, 1.0f, -510, 0, 255), 0);
    ck_assert_int_eq(qnpu__fq_learnable_code(600.0f, 1.0f, -510.0f, 0, 255, 0), 90);
}
END_TEST

/* ---- the float32 order of §2.2 vs §2.3 (parity rules 3, 4) -------------------------------------- */

START_TEST(test_order_difference)
{
    /* x/s = nextafterf(2.5, 3) = 2.50000024, exactly (s = 0.25 is a power of two). z = 100.
     *   learnable: u = 2.50000024 + 100 rounds in float32 to 102.5 (ulp 7.6e-6), rne -> 102
     *   observer:  rne(2.50000024) = 3, + 100 = 103                                        */
    float t = nextafterf(2.5f, 3.0f);
    float x = t * 0.25f;
    ck_assert_float_eq(x / 0.25f, t);
    ck_assert_float_eq(t + 100.0f, 102.5f);
    ck_assert_int_eq(qnpu__fq_learnable_code(x, 0.25f, 100.0f, 0, 255, 0), 102);
    ck_assert_int_eq(qnpu__quantize_observer(x, 4.0f, 100, 0, 255), 103);
    ck_assert_float_eq(qnpu__fq_learnable(x, 0.25f, 100.0f, 0, 255, 0), 0.5f);
    ck_assert_float_eq(qnpu__fq_observer(x, 0.25f, 100, 0, 255), 0.75f);
    /* with z = 0 both give 3 */
    ck_assert_int_eq(qnpu__fq_learnable_code(x, 0.25f, 0.0f, 0, 255, 0), 3);

    /* Everywhere else the two orders agree with exact arithmetic: compare both against a double
     * reference on random inputs, excluding the float32 near-ties where the orders may differ. */
    rng_seed(7);
    int checked = 0;
    for (int i = 0; i < 200000; i++) {
        float s = (float)(0.001 + 0.1 * rng_uniform());
        float xv = (float)(40.0 * rng_normal() * s);
        int32_t z = (int32_t)(rng_uniform() * 256.0);
        double u = (double)xv / (double)s;
        double frac = u - floor(u);
        if (fabs(frac - 0.5) < 1e-4)
            continue; /* near a tie: float32 rounding may legitimately decide */
        double q = ref_rne(u) + z;
        int32_t ref = q < 0 ? 0 : q > 255 ? 255 : (int32_t)q;
        ck_assert_int_eq(qnpu__fq_learnable_code(xv, s, (float)z, 0, 255, 0), ref);
        ck_assert_int_eq(qnpu__quantize_observer(xv, qnpu__inv_scale(s), z, 0, 255), ref);
        checked++;
    }
    ck_assert_int_gt(checked, 190000);
}
END_TEST

START_TEST(test_vec_forms)
{
    enum { N = 1000 };
    float x[N], y[N], y2[N];
    int32_t q[N];
    rng_seed(3);
    for (int i = 0; i < N; i++)
        x[i] = (float)(3.0 * rng_normal());
    const float s = 0.037f, zf = 117.3f;
    qnpu__fq_learnable_vec(x, y, N, s, zf, 0, 255, 0);
    for (int i = 0; i < N; i++) {
        ck_assert_float_eq(y[i], qnpu__fq_learnable(x[i], s, zf, 0, 255, 0));
        int32_t c = qnpu__fq_learnable_code(x[i], s, zf, 0, 255, 0);
        ck_assert_float_eq(y[i], (float)(c - 117) * s); /* rne(117.3) = 117 */
    }
    qnpu__fq_learnable_vec(x, y2, N, s, 0.0f, -8, 7, 1);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(y2[i], qnpu__fq_learnable(x[i], s, 0.0f, -8, 7, 1));
    qnpu__fq_observer_vec(x, y, N, s, 117, 0, 255);
    qnpu__quantize_observer_vec(x, q, N, s, 117, 0, 255);
    for (int i = 0; i < N; i++) {
        ck_assert_float_eq(y[i], qnpu__fq_observer(x[i], s, 117, 0, 255));
        ck_assert_int_eq(q[i], qnpu__quantize_observer(x[i], 1.0f / s, 117, 0, 255));
        ck_assert_float_eq(y[i], (float)(q[i] - 117) * s);
    }
    /* in place */
    memcpy(y2, x, sizeof x);
    qnpu__fq_observer_vec(y2, y2, N, s, 117, 0, 255);
    ck_assert_int_eq(memcmp(y, y2, sizeof y), 0);
    qnpu__fq_learnable_vec(x, y, 0, s, zf, 0, 255, 0); /* n = 0: nothing */
}
END_TEST

/* ---- qparams rules (parity rule 6) --------------------------------------------------------------- */

START_TEST(test_qparams_observer)
{
    float s;
    int32_t z;
    /* FORMATS.md §0.1: A8 asym s = 0.018501389771699905, z = 114, min -2.1091585, max 2.6086960 */
    const float s_ref = 0.018501389771699905f;
    ck_assert_int_eq(qnpu__qparams_observer(-2.109158515930176f, 2.6086959838867188f, 8, 0, 0, &s, &z),
                     QNPU_OK);
    ck_assert_int_eq(z, 114);
    ck_assert(within_ulps(s, s_ref, 2));
    /* the same from lo = -114 s, hi = (255 - 114) s */
    ck_assert_int_eq(qnpu__qparams_observer(-114.0f * s_ref, 141.0f * s_ref, 8, 0, 0, &s, &z), QNPU_OK);
    ck_assert_int_eq(z, 114);
    ck_assert(within_ulps(s, s_ref, 2));

    /* the range is widened to contain 0; z clamped */
    ck_assert_int_eq(qnpu__qparams_observer(2.0f, 3.0f, 8, 0, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 3.0f / 255.0f);
    ck_assert_int_eq(z, 0);
    ck_assert_int_eq(qnpu__qparams_observer(-3.0f, -2.0f, 8, 0, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 3.0f / 255.0f);
    ck_assert_int_eq(z, 255);
    /* asym: lo = -1, hi = 3 -> s = 4/255, z = 0 - rne(-1 / s) = rne(63.75) = 64 */
    ck_assert_int_eq(qnpu__qparams_observer(-1.0f, 3.0f, 8, 0, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 4.0f / 255.0f);
    ck_assert_int_eq(z, 64);
    /* 4-bit asym: lo = -1, hi = 2 -> s = 3/15 = 0.2, z = rne(5) = 5 */
    ck_assert_int_eq(qnpu__qparams_observer(-1.0f, 2.0f, 4, 0, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 3.0f / 15.0f);
    ck_assert_int_eq(z, 5);

    /* symmetric: max|x| / qmax by default, / 127.5 with half_range; z = 0 */
    ck_assert_int_eq(qnpu__qparams_observer(-1.0f, 0.5f, 8, 1, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 1.0f / 127.0f);
    ck_assert_int_eq(z, 0);
    ck_assert_int_eq(qnpu__qparams_observer(-1.0f, 0.5f, 8, 1, 1, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 1.0f / 127.5f);
    ck_assert_int_eq(qnpu__qparams_observer(-0.5f, 2.0f, 4, 1, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 2.0f / 7.0f);
    ck_assert_int_eq(qnpu__qparams_observer(-0.5f, 2.0f, 4, 1, 1, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 2.0f / 7.5f);

    /* empty / constant-zero range: s = eps = 1e-4 / (2^b - 1) */
    ck_assert_int_eq(qnpu__qparams_observer(0.0f, 0.0f, 8, 0, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, (float)(1e-4 / 255.0));
    ck_assert_int_eq(z, 0);
    ck_assert_int_eq(qnpu__qparams_observer(0.0f, 0.0f, 16, 0, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, (float)(1e-4 / 65535.0));
    ck_assert_int_eq(qnpu__qparams_observer(0.0f, 0.0f, 8, 1, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, (float)(1e-4 / 255.0));
    ck_assert_int_eq(z, 0);
    ck_assert_float_eq(qnpu__observer_eps(16), (float)(1e-4 / 65535.0));
    /* 16-bit asym */
    ck_assert_int_eq(qnpu__qparams_observer(-1.0f, 1.0f, 16, 0, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 2.0f / 65535.0f);
    ck_assert_int_eq(z, 32768); /* rne(32767.5) = 32768 */

    ck_assert_int_eq(qnpu__qparams_observer(0.0f, 1.0f, 17, 0, 0, &s, &z), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__qparams_observer(NAN, 1.0f, 8, 0, 0, &s, &z), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__qparams_observer(-FLT_MAX, FLT_MAX, 8, 0, 0, &s, &z), QNPU_ERR_NUMERIC);
}
END_TEST

START_TEST(test_qparams_init)
{
    float s, z;
    /* asym: lo = -1, hi = 3 -> s = 4/255; z = rne(0 + 63.75) = 64 */
    ck_assert_int_eq(qnpu__qparams_init(-1.0f, 3.0f, 8, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 4.0f / 255.0f);
    ck_assert_float_eq(z, 64.0f);
    /* not forced to contain 0: lo = 2, hi = 3 -> s = 1/255, z = rne(0 - 510) = -510 (no clamp) */
    ck_assert_int_eq(qnpu__qparams_init(2.0f, 3.0f, 8, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 1.0f / 255.0f);
    ck_assert_float_eq(z, -510.0f);
    /* sym: max(|lo|, |hi|) / qmax, W4 -> / 7 */
    ck_assert_int_eq(qnpu__qparams_init(-0.5f, 0.25f, 4, 1, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 0.5f / 7.0f);
    ck_assert_float_eq(z, 0.0f);
    /* the 1e-5 floor */
    ck_assert_int_eq(qnpu__qparams_init(0.0f, 0.0f, 8, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 1e-5f / 255.0f);
    ck_assert_float_eq(z, 0.0f);
    ck_assert_int_eq(qnpu__qparams_init(0.0f, 0.0f, 4, 1, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 1e-5f / 7.0f);
    /* 4-bit asym: lo = -0.3, hi = 0.9 -> s = 1.2/15 = 0.08, z = rne(3.75) = 4 */
    ck_assert_int_eq(qnpu__qparams_init(-0.3f, 0.9f, 4, 0, &s, &z), QNPU_OK);
    ck_assert(close_rel(s, 0.08, 1e-6));
    ck_assert_float_eq(z, 4.0f);
    /* ties of the zero point go to even; s = 0.125 exactly so lo / s is exact:
     * 8 bits, hi - lo = 255 * 0.125: lo / s = -127.5 -> z = 128; 4 bits: -7.5 -> 8, -6.5 -> 6 */
    ck_assert_int_eq(qnpu__qparams_init(-15.9375f, 15.9375f, 8, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 0.125f);
    ck_assert_float_eq(z, 128.0f);
    ck_assert_int_eq(qnpu__qparams_init(-0.9375f, 0.9375f, 4, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 0.125f);
    ck_assert_float_eq(z, 8.0f);
    ck_assert_int_eq(qnpu__qparams_init(-0.8125f, 1.0625f, 4, 0, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 0.125f);
    ck_assert_float_eq(z, 6.0f);
    ck_assert_int_eq(qnpu__round_zero_point(50.2f), 50);
    ck_assert_int_eq(qnpu__round_zero_point(50.5f), 50);
    ck_assert_int_eq(qnpu__round_zero_point(-1e20f), INT32_MIN);
    ck_assert_int_eq(qnpu__round_zero_point(1e20f), INT32_MAX);
}
END_TEST

/* ---- observers ---------------------------------------------------------------------------------- */

START_TEST(test_minmax_observer)
{
    qnpu__observer o;
    float s, lo, hi;
    int32_t z;
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MINMAX, 8, 0, NULL), QNPU_OK);
    /* no data: the rule on [0, 0] */
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, qnpu__observer_eps(8));
    ck_assert_int_eq(z, 0);
    const float a[] = {1.0f, -2.0f, 3.0f}, b[] = {5.0f};
    ck_assert_int_eq(qnpu__observer_update(&o, a, 3), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, a, 0), QNPU_OK); /* n = 0: no-op */
    ck_assert_int_eq(qnpu__observer_update(&o, NULL, 0), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, b, 1), QNPU_OK);
    ck_assert_int_eq(o.count, 4);
    ck_assert_int_eq(qnpu__observer_range(&o, &lo, &hi), QNPU_OK);
    ck_assert_float_eq(lo, -2.0f);
    ck_assert_float_eq(hi, 5.0f);
    /* s = 7/255, z = 0 - rne(-2 / s) = rne(72.857) = 73 */
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 7.0f / 255.0f);
    ck_assert_int_eq(z, 73);
    /* stage-1 init view: §7.2 minmax rule, same range here, z = rne(72.857) */
    float fz;
    ck_assert_int_eq(qnpu__observer_init_qparams(&o, &s, &fz), QNPU_OK);
    ck_assert_float_eq(s, 7.0f / 255.0f);
    ck_assert_float_eq(fz, 73.0f);
    qnpu__observer_free(&o);

    /* constant tensors: all zero -> s = eps, z finite; all 5 -> [0, 5]; single -1 */
    const float zeros[4] = {0}, fives[3] = {5.0f, 5.0f, 5.0f}, neg[1] = {-1.0f};
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MINMAX, 16, 0, NULL), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, zeros, 4), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, (float)(1e-4 / 65535.0));
    ck_assert_int_eq(z, 0);
    qnpu__observer_reset(&o);
    ck_assert_int_eq(qnpu__observer_update(&o, fives, 3), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 5.0f / 65535.0f);
    ck_assert_int_eq(z, 0);
    qnpu__observer_reset(&o);
    ck_assert_int_eq(qnpu__observer_update(&o, neg, 1), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 1.0f / 65535.0f);
    ck_assert_int_eq(z, 65535);
    qnpu__observer_free(&o);

    /* symmetric KV-style observer, 8 bits, both divisors */
    qnpu__observer_cfg cfg;
    qnpu__observer_cfg_default(&cfg);
    cfg.half_range = 1;
    const float kv[] = {-0.5f, 0.25f, 2.0f};
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MINMAX, 8, 1, &cfg), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, kv, 3), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 2.0f / 127.5f);
    ck_assert_int_eq(z, 0);
    qnpu__observer_free(&o);
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MINMAX, 8, 1, NULL), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, kv, 3), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, 2.0f / 127.0f);
    qnpu__observer_free(&o);
}
END_TEST

START_TEST(test_mean_ksigma_ema)
{
    qnpu__observer o;
    float s, fz;
    int32_t z;
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MEAN_KSIGMA, 8, 0, NULL), QNPU_OK);
    /* sample 1: {1, 2, 3, 4}: mu = 2.5, sigma = sqrt(5/3) = 1.2909944 (unbiased)
     *   lo = 2.5 - 3.8729833 = -1.3729833, hi = 6.3729833
     *   s1 = 7.7459667 / 255 = 0.030376340, z1 = rne(1.3729833 / s1) = rne(45.1990) = 45 */
    const float x1[] = {1.0f, 2.0f, 3.0f, 4.0f};
    ck_assert_int_eq(qnpu__observer_update(&o, x1, 4), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_init_qparams(&o, &s, &fz), QNPU_OK);
    ck_assert(close_rel(s, 0.030376340, 1e-6));
    ck_assert_float_eq(fz, 45.0f);
    /* sample 2: {0, 10}: mu = 5, sigma = sqrt(50) = 7.0710678
     *   lo = -16.213203, hi = 26.213203, s2 = 42.426407 / 255 = 0.16637807,
     *   z2 = rne(16.213203 / s2) = rne(97.4490) = 97
     * EMA: s = 0.9 * 0.030376340 + 0.1 * 0.16637807 = 0.043976513
     *      z = 0.9 * 45 + 0.1 * 97 = 50.2 (a float), rounded for stage 2 -> 50 */
    const float x2[] = {0.0f, 10.0f};
    ck_assert_int_eq(qnpu__observer_update(&o, x2, 2), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_init_qparams(&o, &s, &fz), QNPU_OK);
    ck_assert(close_rel(s, 0.043976513, 1e-6));
    ck_assert(fabsf(fz - 50.2f) < 1e-5f);
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert(close_rel(s, 0.043976513, 1e-6));
    ck_assert_int_eq(z, 50);
    ck_assert_int_eq(o.samples, 2);
    /* n = 0 is not a sample */
    ck_assert_int_eq(qnpu__observer_update(&o, x2, 0), QNPU_OK);
    ck_assert_int_eq(o.samples, 2);
    float lo, hi;
    ck_assert_int_eq(qnpu__observer_range(&o, &lo, &hi), QNPU_OK);
    ck_assert(close_rel(lo, -50.0 * 0.043976513, 1e-5));
    ck_assert(close_rel(hi, 205.0 * 0.043976513, 1e-5));
    qnpu__observer_free(&o);

    /* sigma = 0 (constant sample, and a single value): s = 1e-5/255, z = rne(-2 / s), finite */
    const float c[] = {2.0f, 2.0f, 2.0f}, one[] = {2.0f};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MEAN_KSIGMA, 8, 0, NULL), QNPU_OK);
        ck_assert_int_eq(qnpu__observer_update(&o, k ? one : c, k ? 1 : 3), QNPU_OK);
        ck_assert_int_eq(qnpu__observer_init_qparams(&o, &s, &fz), QNPU_OK);
        ck_assert_float_eq(s, 1e-5f / 255.0f);
        ck_assert_float_eq(fz, rintf(0.0f - 2.0f / (1e-5f / 255.0f)));
        ck_assert(isfinite(fz));
        ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
        ck_assert_int_eq(z, (int32_t)fz); /* about -5.1e7: outside [0, 255], not clamped */
        qnpu__observer_free(&o);
    }

    /* symmetric, k = 2, ema = 0.5: {-1, 1}: mu 0, sigma sqrt(2); s1 = 2 sqrt(2) / 127;
     * {-3, 3}: sigma 3 sqrt(2); s2 = 6 sqrt(2) / 127; EMA 0.5/0.5 -> 4 sqrt(2) / 127 */
    qnpu__observer_cfg cfg;
    qnpu__observer_cfg_default(&cfg);
    cfg.sigma_k = 2.0;
    cfg.ema = 0.5;
    const float y1[] = {-1.0f, 1.0f}, y2[] = {-3.0f, 3.0f};
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MEAN_KSIGMA, 8, 1, &cfg), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, y1, 2), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, y2, 2), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert(close_rel(s, 4.0 * sqrt(2.0) / 127.0, 1e-6));
    ck_assert_int_eq(z, 0);
    qnpu__observer_free(&o);
}
END_TEST

/* exact quantile of the sorted values 0, 1, ..., n-1 (linear interpolation) */
static double exact_quantile_iota(int n, double frac)
{
    return frac * (double)(n - 1);
}

START_TEST(test_percentile_observer)
{
    enum { N = 10000 };
    static float v[N];
    for (int i = 0; i < N; i++)
        v[i] = (float)i;
    qnpu__observer_cfg cfg;
    qnpu__observer_cfg_default(&cfg);
    cfg.percentile = 99.0;
    qnpu__observer o;
    float lo, hi, s;
    int32_t z;

    /* asym: cut 0.5 % on each side -> [q(0.005), q(0.995)] = [49.995, 9949.005] */
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_PERCENTILE, 8, 0, &cfg), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, v, N), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_range(&o, &lo, &hi), QNPU_OK);
    double bin = o.h_width / o.bins;
    ck_assert(fabs(lo - exact_quantile_iota(N, 0.005)) <= bin);
    ck_assert(fabs(hi - exact_quantile_iota(N, 0.995)) <= bin);
    /* qparams: the observer rule on [0, hi] */
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, hi / 255.0f);
    ck_assert_int_eq(z, 0);
    qnpu__observer_free(&o);

    /* the same data in chunks, middle first, so the histogram must grow both ways */
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_PERCENTILE, 8, 0, &cfg), QNPU_OK);
    static const int order[] = {5, 4, 6, 0, 9, 1, 8, 2, 7, 3};
    for (int c = 0; c < 10; c++)
        ck_assert_int_eq(qnpu__observer_update(&o, v + order[c] * 1000, 1000), QNPU_OK);
    ck_assert_int_gt(o.grows, 0);
    ck_assert_int_eq(o.count, N);
    double total = 0.0;
    for (int i = 0; i < o.bins; i++)
        total += o.hist[i];
    ck_assert(total == (double)N); /* merges are exact */
    ck_assert_int_eq(qnpu__observer_range(&o, &lo, &hi), QNPU_OK);
    bin = o.h_width / o.bins;
    ck_assert(o.h_width <= 4.0 * N);
    ck_assert(fabs(lo - exact_quantile_iota(N, 0.005)) <= bin);
    ck_assert(fabs(hi - exact_quantile_iota(N, 0.995)) <= bin);
    qnpu__observer_free(&o);

    /* sym: |x| of -5000 .. 4999 (|x| from 0 to 5000), 99th percentile of |x| ~ 4950 */
    static float w[N];
    for (int i = 0; i < N; i++)
        w[i] = (float)(i - 5000);
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_PERCENTILE, 8, 1, &cfg), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, w, N), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_range(&o, &lo, &hi), QNPU_OK);
    bin = o.h_width / o.bins;
    /* sorted |x|: 0, 1, 1, 2, 2, ..., 4999, 4999, 5000; the 0.99 * 10000 = 9900th value ~ 4950 */
    ck_assert(fabs(hi - 4950.0) <= bin + 1.0);
    ck_assert_float_eq(lo, -hi);
    ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
    ck_assert_float_eq(s, hi / 127.0f);
    ck_assert_int_eq(z, 0);
    qnpu__observer_free(&o);

    /* p = 100 reproduces minmax */
    cfg.percentile = 100.0;
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_PERCENTILE, 8, 0, &cfg), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, w, N), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_range(&o, &lo, &hi), QNPU_OK);
    ck_assert_float_eq(lo, -5000.0f);
    ck_assert_float_eq(hi, 4999.0f);
    qnpu__observer_free(&o);
}
END_TEST

/* Constant and single-element data for the histogram observers. */
START_TEST(test_histogram_constant)
{
    const float zeros[5] = {0}, sevens[4] = {7.0f, 7.0f, 7.0f, 7.0f}, one[1] = {-3.0f};
    for (int kind = QNPU__OBS_PERCENTILE; kind <= QNPU__OBS_MSE; kind++)
        for (int sym = 0; sym <= 1; sym++) {
            qnpu__observer o;
            float s, lo, hi;
            int32_t z;
            ck_assert_int_eq(qnpu__observer_init(&o, kind, 8, sym, NULL), QNPU_OK);
            /* no data */
            ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
            ck_assert_float_eq(s, qnpu__observer_eps(8));
            /* all zero: s = eps, z = 0 */
            ck_assert_int_eq(qnpu__observer_update(&o, zeros, 5), QNPU_OK);
            ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
            ck_assert_float_eq(s, qnpu__observer_eps(8));
            ck_assert_int_eq(z, 0);
            /* all 7 (after a reset): range [7, 7] -> rule on [0, 7] (percentile: within a bin) */
            qnpu__observer_reset(&o);
            ck_assert_int_eq(qnpu__observer_update(&o, sevens, 4), QNPU_OK);
            ck_assert_int_eq(qnpu__observer_range(&o, &lo, &hi), QNPU_OK);
            ck_assert(fabsf(hi - 7.0f) <= 7.0f / 1024.0f);
            ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
            ck_assert(close_rel(s, sym ? 7.0 / 127.0 : 7.0 / 255.0, 1e-3));
            ck_assert_int_eq(z, 0);
            /* then zeros join: the histogram grows down to 0 */
            ck_assert_int_eq(qnpu__observer_update(&o, zeros, 5), QNPU_OK);
            ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
            ck_assert(isfinite(s) && s > 0.0f);
            /* one element */
            qnpu__observer_reset(&o);
            ck_assert_int_eq(qnpu__observer_update(&o, one, 1), QNPU_OK);
            ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
            ck_assert(close_rel(s, sym ? 3.0 / 127.0 : 3.0 / 255.0, 1e-3));
            ck_assert_int_eq(z, sym ? 0 : 255);
            qnpu__observer_free(&o);
        }
}
END_TEST

static size_t n_alloc, n_free;

static void *count_alloc(void *user, size_t size, size_t align)
{
    (void)user;
    n_alloc++;
    return aligned_alloc(align, (size + align - 1) / align * align);
}

static void count_free(void *user, void *p)
{
    (void)user;
    n_free++;
    free(p);
}

/* Memory is flat: 10^6 values in 100 chunks whose range keeps growing allocate nothing after
 * the observer's init. */
START_TEST(test_observer_memory_flat)
{
    ck_assert_int_eq(qnpu_set_allocator(count_alloc, count_free, NULL), QNPU_OK);
    enum { CHUNK = 10000 };
    static float buf[CHUNK];
    for (int kind = QNPU__OBS_MINMAX; kind <= QNPU__OBS_MSE; kind++) {
        qnpu__observer o;
        n_alloc = n_free = 0;
        ck_assert_int_eq(qnpu__observer_init(&o, kind, 8, 0, NULL), QNPU_OK);
        size_t after_init = n_alloc;
        ck_assert_int_eq(after_init, (size_t)o.allocs);
        rng_seed(11);
        for (int c = 0; c < 100; c++) {
            for (int i = 0; i < CHUNK; i++)
                buf[i] = (float)((1.0 + c) * rng_normal());
            ck_assert_int_eq(qnpu__observer_update(&o, buf, CHUNK), QNPU_OK);
        }
        ck_assert_int_eq(o.count, 100 * CHUNK);
        ck_assert_uint_eq(n_alloc, after_init);
        ck_assert_int_eq(o.allocs, (int)after_init);
        float s;
        int32_t z;
        ck_assert_int_eq(qnpu__observer_qparams(&o, &s, &z), QNPU_OK);
        qnpu__observer_free(&o);
        ck_assert_uint_eq(n_alloc, n_free);
    }
    ck_assert_int_eq(qnpu_set_allocator(NULL, NULL, NULL), QNPU_OK);
}
END_TEST

/* Gaussian data with a few large outliers: the MSE observer clips them, minmax cannot. */
START_TEST(test_mse_outliers)
{
    enum { N = 1 << 18 };
    static float x[N];
    rng_seed(5);
    for (int i = 0; i < N; i++)
        x[i] = (float)rng_normal();
    x[100] = 50.0f;
    x[2000] = -45.0f;
    x[3000] = 40.0f;
    static const int bits_list[] = {8, 4};
    for (int b = 0; b < 2; b++)
        for (int sym = 0; sym <= 1; sym++) {
            int bits = bits_list[b];
            qnpu__observer mm, mse;
            float s_mm, s_mse, lo_mm, hi_mm, lo, hi;
            int32_t z_mm, z_mse, qmin, qmax;
            qnpu__qrange(bits, sym, &qmin, &qmax);
            ck_assert_int_eq(qnpu__observer_init(&mm, QNPU__OBS_MINMAX, bits, sym, NULL), QNPU_OK);
            ck_assert_int_eq(qnpu__observer_init(&mse, QNPU__OBS_MSE, bits, sym, NULL), QNPU_OK);
            for (int c = 0; c < 4; c++) { /* in chunks */
                ck_assert_int_eq(qnpu__observer_update(&mm, x + c * (N / 4), N / 4), QNPU_OK);
                ck_assert_int_eq(qnpu__observer_update(&mse, x + c * (N / 4), N / 4), QNPU_OK);
            }
            ck_assert_int_eq(qnpu__observer_range(&mm, &lo_mm, &hi_mm), QNPU_OK);
            ck_assert_int_eq(qnpu__observer_range(&mse, &lo, &hi), QNPU_OK);
            ck_assert_int_eq(qnpu__observer_qparams(&mm, &s_mm, &z_mm), QNPU_OK);
            ck_assert_int_eq(qnpu__observer_qparams(&mse, &s_mse, &z_mse), QNPU_OK);
            /* clearly narrower than minmax: at 8 bits the optimum keeps the outliers partly
             * (about [-25, 35] against [-45, 50]: 3 outliers weigh against 2^18 values' rounding
             * noise); at 4 bits it clips them hard */
            ck_assert(hi - lo < (bits == 8 ? 0.75f : 0.25f) * (hi_mm - lo_mm));
            ck_assert(hi > 2.0f && lo < -2.0f); /* but it keeps the Gaussian bulk */
            double e_mm = observer_mse(x, N, s_mm, z_mm, qmin, qmax);
            double e_mse = observer_mse(x, N, s_mse, z_mse, qmin, qmax);
            ck_assert(e_mse < 0.8 * e_mm);
            /* the result sits at a minimum: stretching or shrinking by 25 % is not better */
            int32_t z2;
            float s2;
            for (int k = -1; k <= 1; k += 2) {
                float f = k < 0 ? 0.75f : 1.25f;
                qnpu__qparams_observer(lo * f, hi * f, bits, sym, 0, &s2, &z2);
                ck_assert(observer_mse(x, N, s2, z2, qmin, qmax) >= 0.98 * e_mse);
            }
            qnpu__observer_free(&mm);
            qnpu__observer_free(&mse);
        }
}
END_TEST

/* On clean Gaussian data at 8 bits, a good clip is still narrower than max|x| (about 4-5 sigma
 * out of ~4.6), and never wider than the data. */
START_TEST(test_mse_range_inside_data)
{
    enum { N = 50000 };
    static float x[N];
    rng_seed(9);
    for (int i = 0; i < N; i++)
        x[i] = (float)(2.0 + rng_normal());
    qnpu__observer o;
    float lo, hi;
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MSE, 8, 0, NULL), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, x, N), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_range(&o, &lo, &hi), QNPU_OK);
    ck_assert(lo >= fminf(o.min, 0.0f) && hi <= o.max);
    ck_assert(lo < 0.0f && hi > 4.0f);
    qnpu__observer_free(&o);
}
END_TEST

/* ---- weights ------------------------------------------------------------------------------------ */

/* sum |q s - w|^2.4 over a row, written out here */
static double ref_row_error(const float *w, int cols, float s, int qmin, int qmax)
{
    double e = 0.0;
    for (int c = 0; c < cols; c++) {
        double q = ref_rne((double)(w[c] / s));
        q = q < qmin ? qmin : q > qmax ? qmax : q;
        e += pow(fabs(q * s - w[c]), 2.4);
    }
    return e;
}

START_TEST(test_weight_scales_hand)
{
    /* rows with ld = 5 > cols = 4 (the fifth column is garbage that must be ignored) */
    const float w[3 * 5] = {
        -0.875f, 0.4375f, 0.0625f, 0.3125f, 99.0f, /* max 0.875 -> s = 0.125     */
        1.75f,   -1.75f,  0.25f,   0.0f,    99.0f, /* max 1.75  -> s = 0.25      */
        0.0f,    0.0f,    0.0f,    0.0f,    99.0f, /* all zero  -> s = 1e-5 / 7  */
    };
    float sc[3];
    ck_assert_int_eq(qnpu__weight_scales(w, 3, 4, 5, 4, QNPU__WSCALE_MAX, sc), QNPU_OK);
    ck_assert_float_eq(sc[0], 0.125f);
    ck_assert_float_eq(sc[1], 0.25f);
    ck_assert_float_eq(sc[2], 1e-5f / 7.0f);
    int8_t q[3 * 4];
    ck_assert_int_eq(qnpu__weight_quantize(w, 3, 4, 5, sc, 4, q, 4), QNPU_OK);
    /* row 0: -7, 3.5 -> 4, 0.5 -> 0, 2.5 -> 2 (ties to even); row 1: 7, -7, 1, 0; row 2: 0 */
    const int8_t want[12] = {-7, 4, 0, 2, 7, -7, 1, 0, 0, 0, 0, 0};
    ck_assert_int_eq(memcmp(q, want, sizeof want), 0);
    float out[3 * 4];
    ck_assert_int_eq(qnpu__weight_fake_quant(w, 3, 4, 5, sc, 4, out, 4), QNPU_OK);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            ck_assert_float_eq(out[r * 4 + c], (float)want[r * 4 + c] * sc[r]);
            ck_assert(isfinite(out[r * 4 + c]));
        }
    /* clamping in the code: a scale too small for the row */
    float small[3] = {0.1f, 0.1f, 0.1f};
    ck_assert_int_eq(qnpu__weight_quantize(w, 3, 4, 5, small, 4, q, 4), QNPU_OK);
    ck_assert_int_eq(q[4], 7);  /* 17.5 -> 7  */
    ck_assert_int_eq(q[5], -8); /* -17.5 -> -8 */
    /* 8-bit */
    ck_assert_int_eq(qnpu__weight_scales(w, 3, 4, 5, 8, QNPU__WSCALE_MAX, sc), QNPU_OK);
    ck_assert_float_eq(sc[0], 0.875f / 127.0f);
    ck_assert_float_eq(sc[2], 1e-5f / 127.0f);
    /* the MSE search on the all-zero row keeps the max scale, and codes stay 0 */
    ck_assert_int_eq(qnpu__weight_scales(w + 10, 1, 4, 5, 4, QNPU__WSCALE_MSE, sc), QNPU_OK);
    ck_assert_float_eq(sc[0], 1e-5f / 7.0f);
    /* bad arguments */
    ck_assert_int_eq(qnpu__weight_scales(w, 3, 4, 3, 4, 0, sc), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__weight_scales(w, 3, 4, 5, 4, 7, sc), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__weight_quantize(w, 3, 4, 5, sc, 16, q, 4), QNPU_ERR_INVALID_ARG);
    float zero_scale[3] = {0.0f, 1.0f, 1.0f};
    ck_assert_int_eq(qnpu__weight_quantize(w, 3, 4, 5, zero_scale, 4, q, 4), QNPU_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_weight_scales_mse)
{
    enum { ROWS = 24, COLS = 172 }; /* not a power of two */
    static float w[ROWS * COLS];
    rng_seed(21);
    for (int i = 0; i < ROWS * COLS; i++)
        w[i] = (float)(0.02 * rng_normal());
    for (int r = 0; r < ROWS; r += 3)
        w[r * COLS + r] = 0.3f; /* an outlier in every third row */
    float s_max[ROWS], s_mse[ROWS];
    int shrunk = 0;
    for (int bits = 4; bits <= 8; bits += 4) {
        int32_t qmin, qmax;
        qnpu__qrange(bits, 1, &qmin, &qmax);
        ck_assert_int_eq(qnpu__weight_scales(w, ROWS, COLS, COLS, bits, QNPU__WSCALE_MAX, s_max), QNPU_OK);
        ck_assert_int_eq(qnpu__weight_scales(w, ROWS, COLS, COLS, bits, QNPU__WSCALE_MSE, s_mse), QNPU_OK);
        for (int r = 0; r < ROWS; r++) {
            const float *row = w + r * COLS;
            double e_max = ref_row_error(row, COLS, s_max[r], qmin, qmax);
            double e_mse = ref_row_error(row, COLS, s_mse[r], qmin, qmax);
            ck_assert(e_mse <= e_max);                   /* never worse */
            ck_assert(s_mse[r] <= s_max[r]);
            ck_assert(s_mse[r] >= 0.2f * s_max[r]);      /* p >= 1 - 79/100 */
            /* the chosen p is on the grid 1 - i/100 */
            double p = (double)s_mse[r] / s_max[r];
            double i = (1.0 - p) * 100.0;
            ck_assert(fabs(i - rint(i)) < 1e-3);
            shrunk += s_mse[r] < s_max[r];
        }
    }
    ck_assert_int_gt(shrunk, ROWS / 2);

    /* fake-quant = the learnable symmetric forward, bit for bit, and = q * s */
    static float out[ROWS * COLS];
    static int8_t q[ROWS * COLS];
    ck_assert_int_eq(qnpu__weight_fake_quant(w, ROWS, COLS, COLS, s_mse, 8, out, COLS), QNPU_OK);
    ck_assert_int_eq(qnpu__weight_quantize(w, ROWS, COLS, COLS, s_mse, 8, q, COLS), QNPU_OK);
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) {
            int i = r * COLS + c;
            float ref = qnpu__fq_learnable(w[i], s_mse[r], 0.0f, -128, 127, 1);
            ck_assert(memcmp(&out[i], &ref, sizeof ref) == 0);
            ck_assert_float_eq(out[i], (float)q[i] * s_mse[r]);
            ck_assert_int_eq(q[i], qnpu__fq_learnable_code(w[i], s_mse[r], 0.0f, -128, 127, 1));
        }
    /* in place (out aliases w) */
    static float w2[ROWS * COLS];
    memcpy(w2, w, sizeof w);
    ck_assert_int_eq(qnpu__weight_fake_quant(w2, ROWS, COLS, COLS, s_mse, 8, w2, COLS), QNPU_OK);
    ck_assert_int_eq(memcmp(w2, out, sizeof out), 0);
}
END_TEST

START_TEST(test_weight_ksigma)
{
    /* row 0: {1, 2, 3, 4}: mu 2.5, sigma sqrt(5/3) = 1.2909944;
     *        max(|2.5 - 3.8729833|, |2.5 + 3.8729833|) = 6.3729833 -> / 7 = 0.91042619
     * row 1: zero -> 1e-5 / 7;  row 2: {-1, 1, -1, 1}: mu 0, sigma sqrt(4/3) -> 3.4641016 / 7 */
    const float w[12] = {1, 2, 3, 4, 0, 0, 0, 0, -1, 1, -1, 1};
    float sc[3];
    ck_assert_int_eq(qnpu__weight_scales_ksigma(w, 3, 4, 4, 4, 3.0, sc), QNPU_OK);
    ck_assert(close_rel(sc[0], 0.91042619, 1e-6));
    ck_assert_float_eq(sc[1], 1e-5f / 7.0f);
    ck_assert(close_rel(sc[2], 3.4641016 / 7.0, 1e-6));
    /* one column: sigma = 0 -> |mu| / qmax */
    const float col[2] = {-0.7f, 0.0f};
    ck_assert_int_eq(qnpu__weight_scales_ksigma(col, 2, 1, 1, 8, 3.0, sc), QNPU_OK);
    ck_assert_float_eq(sc[0], 0.7f / 127.0f);
    ck_assert_float_eq(sc[1], 1e-5f / 127.0f);
}
END_TEST

/* ---- NaN / Inf ------------------------------------------------------------------------------- */

START_TEST(test_nonfinite_rejected)
{
    float x[6] = {1.0f, 2.0f, -1.0f, NAN, 0.5f, 3.0f};
    for (int kind = QNPU__OBS_MINMAX; kind <= QNPU__OBS_MSE; kind++) {
        qnpu__observer o;
        ck_assert_int_eq(qnpu__observer_init(&o, kind, 8, 0, NULL), QNPU_OK);
        x[3] = NAN;
        ck_assert_int_eq(qnpu__observer_update(&o, x, 6), QNPU_ERR_NUMERIC);
        ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "NaN"));
        ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "value 3"));
        x[3] = -INFINITY;
        ck_assert_int_eq(qnpu__observer_update(&o, x, 6), QNPU_ERR_NUMERIC);
        ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "Inf"));
        ck_assert_int_eq(o.count, 0); /* nothing recorded */
        ck_assert_int_eq(o.samples, 0);
        x[3] = 0.0f;
        ck_assert_int_eq(qnpu__observer_update(&o, x, 6), QNPU_OK);
        ck_assert_int_eq(o.count, 6);
        qnpu__observer_free(&o);
    }
    float w[8] = {1, 2, 3, 4, 5, INFINITY, 7, 8}, sc[2];
    ck_assert_int_eq(qnpu__weight_scales(w, 2, 4, 4, 4, QNPU__WSCALE_MAX, sc), QNPU_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "row 1"));
    w[5] = NAN;
    ck_assert_int_eq(qnpu__weight_scales(w, 2, 4, 4, 4, QNPU__WSCALE_MSE, sc), QNPU_ERR_NUMERIC);
    ck_assert_int_eq(qnpu__weight_scales_ksigma(w, 2, 4, 4, 4, 3.0, sc), QNPU_ERR_NUMERIC);
}
END_TEST

START_TEST(test_observer_bad_args)
{
    qnpu__observer o;
    qnpu__observer_cfg cfg;
    ck_assert_int_eq(qnpu__observer_init(&o, 9, 8, 0, NULL), QNPU_ERR_INVALID_ARG);
    qnpu__observer_free(&o);
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MINMAX, 1, 0, NULL), QNPU_ERR_INVALID_ARG);
    qnpu__observer_free(&o);
    qnpu__observer_cfg_default(&cfg);
    cfg.percentile = 0.0;
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_PERCENTILE, 8, 0, &cfg), QNPU_ERR_INVALID_ARG);
    qnpu__observer_free(&o);
    qnpu__observer_cfg_default(&cfg);
    cfg.bins = 1;
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MSE, 8, 0, &cfg), QNPU_ERR_INVALID_ARG);
    qnpu__observer_free(&o);
    qnpu__observer_cfg_default(&cfg);
    cfg.ema = 1.5;
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_MEAN_KSIGMA, 8, 0, &cfg), QNPU_ERR_INVALID_ARG);
    qnpu__observer_free(&o);
    qnpu__observer_free(NULL);
    /* options map onto the configuration (defaults of params.def) */
    qnpu__observer_cfg_from_options(NULL, &cfg);
    ck_assert(cfg.sigma_k == 3.0 && cfg.ema == 0.9 && cfg.percentile == 99.99);
    ck_assert_int_eq(cfg.bins, 2048);
    ck_assert_int_eq(cfg.half_range, 0);
    /* an odd bin count works (re-binning maps every old bin into one new bin) */
    cfg.bins = 17;
    ck_assert_int_eq(qnpu__observer_init(&o, QNPU__OBS_PERCENTILE, 8, 0, &cfg), QNPU_OK);
    const float a[] = {0.0f, 1.0f}, b[] = {-3.0f, 5.0f};
    ck_assert_int_eq(qnpu__observer_update(&o, a, 2), QNPU_OK);
    ck_assert_int_eq(qnpu__observer_update(&o, b, 2), QNPU_OK);
    double total = 0.0;
    for (int i = 0; i < o.bins; i++)
        total += o.hist[i];
    ck_assert(total == 4.0);
    ck_assert(o.h_lo <= -3.0 && o.h_lo + o.h_width >= 5.0);
    qnpu__observer_free(&o);
}
END_TEST

Suite *qnpu_quantizer_suite(void)
{
    Suite *s = suite_create("quantizer");
    TCase *tc = tcase_create("primitives");
    tcase_add_test(tc, test_qrange);
    tcase_add_test(tc, test_ties_learnable);
    tcase_add_test(tc, test_ties_observer);
    tcase_add_test(tc, test_clamp);
    tcase_add_test(tc, test_order_difference);
    tcase_add_test(tc, test_vec_forms);
    tcase_add_test(tc, test_qparams_observer);
    tcase_add_test(tc, test_qparams_init);
    suite_add_tcase(s, tc);

    tc = tcase_create("observers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_minmax_observer);
    tcase_add_test(tc, test_mean_ksigma_ema);
    tcase_add_test(tc, test_percentile_observer);
    tcase_add_test(tc, test_histogram_constant);
    tcase_add_test(tc, test_observer_memory_flat);
    tcase_add_test(tc, test_mse_outliers);
    tcase_add_test(tc, test_mse_range_inside_data);
    tcase_add_test(tc, test_nonfinite_rejected);
    tcase_add_test(tc, test_observer_bad_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("weights");
    tcase_add_test(tc, test_weight_scales_hand);
    tcase_add_test(tc, test_weight_scales_mse);
    tcase_add_test(tc, test_weight_ksigma);
    suite_add_tcase(s, tc);
    return s;
}
