/* check_int_ops.c — the integer operators of lib/kernels/int_ops.h (FORMATS.md §3.3–§3.8).
 *
 * Each kernel runs on random codes of random QPs (built with the observer rule of METHOD.md §2.3)
 * and is compared, element by element, with
 *   "exact": the same math in double on the dequantized inputs, rounded once (rne) and clamped;
 *   "fq":    the observer fake-quant formula of lib/calib/quant.h: inputs dequantized as the
 *            simulated graph holds them ((q − z)·s in float32), the operation in double, the
 *            output quantized by qnpu__quantize_observer;
 *   "sim":   for chains, the float32 steps of lib/calib/simgraph.c themselves.
 * Every comparison asserts a maximum code error (1 unless stated) and counts the mismatches; with
 * QNPU_TEST_STATS=1 in the environment each comparison prints one line with both numbers.
 * Fused kernels must equal the composition of the stand-alone kernels bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/quant.h"
#include "float/ops.h"
#include "kernels/int_ops.h"
#include "testutil.h"

/* ---- random numbers ---------------------------------------------------------------------- */

/* QNPU_TEST_SEED=<n> in the environment changes the random cases (each test starts afresh) */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static void seed(unsigned salt)
{
    const char *e = getenv("QNPU_TEST_SEED");
    rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(e ? strtoull(e, NULL, 10) : 0) << 8) ^ salt;
}
static uint32_t rnd32(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}
static double rndu(void) /* [0, 1) */
{
    return (double)rnd32() / 4294967296.0;
}
static double rnd_between(double a, double b)
{
    return a + (b - a) * rndu();
}
static int32_t rnd_int(int32_t lo, int32_t hi) /* inclusive */
{
    return lo + (int32_t)(rnd32() % (uint32_t)((int64_t)hi - lo + 1));
}
static double rnd_normal(void)
{
    double u = (rnd32() + 1.0) / 4294967297.0, v = rndu();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- QPs and codes ------------------------------------------------------------------------ */

static qnpu__qp mkqp(double lo, double hi, int bits, int sym)
{
    qnpu__qp q;
    memset(&q, 0, sizeof q);
    q.bits = (int8_t)bits;
    q.sym = (int8_t)sym;
    ck_assert_int_eq(qnpu__qparams_observer((float)lo, (float)hi, bits, sym, 0, &q.s, &q.z), QNPU_OK);
    return q;
}

static qnpu__qp fixedqp(float s, int32_t z, int bits)
{
    qnpu__qp q;
    memset(&q, 0, sizeof q);
    q.s = s;
    q.z = z;
    q.bits = (int8_t)bits;
    q.fixed = 1;
    return q;
}

static int32_t qmin_of(const qnpu__qp *q)
{
    int32_t lo, hi;
    qnpu__qrange(q->bits, q->sym, &lo, &hi);
    return lo;
}
static int32_t qmax_of(const qnpu__qp *q)
{
    int32_t lo, hi;
    qnpu__qrange(q->bits, q->sym, &lo, &hi);
    return hi;
}
static int ct_of(const qnpu__qp *q)
{
    return qnpu__ctype_of(q->bits, q->sym);
}

static double dq64(int32_t c, const qnpu__qp *q) /* exact dequantization */
{
    return (double)q->s * (double)((int64_t)c - q->z);
}
static float dq32(int32_t c, const qnpu__qp *q) /* as the simulated graph holds it */
{
    return (float)((int64_t)c - q->z) * q->s;
}
/* clamp(z + rne(v / s)) in double; NaN -> qmin */
static int32_t code_d(double v, const qnpu__qp *q)
{
    double c = rint(v / (double)q->s) + (double)q->z;
    if (!(c > (double)qmin_of(q)))
        return qmin_of(q);
    if (c >= (double)qmax_of(q))
        return qmax_of(q);
    return (int32_t)c;
}
/* the observer fake-quant code of a value (rounded to float32 first) */
static int32_t code_f(double v, const qnpu__qp *q)
{
    return qnpu__quantize_observer((float)v, qnpu__inv_scale(q->s), q->z, qmin_of(q), qmax_of(q));
}

/* A random code of q: mostly uniform, sometimes qmin, qmax or z. */
static int32_t rnd_code(const qnpu__qp *q)
{
    switch (rnd32() % 16) {
    case 0: return qmin_of(q);
    case 1: return qmax_of(q);
    case 2: return q->z;
    default: return rnd_int(qmin_of(q), qmax_of(q));
    }
}

/* code buffers: 2 bytes per element is enough for every type */
static void *cbuf(int64_t n)
{
    void *p = calloc((size_t)n, 2);
    ck_assert_ptr_nonnull(p);
    return p;
}
static void *cat(void *buf, int ct, int64_t i) /* address of element i */
{
    return (char *)buf + i * ((ct == QNPU__CT_U8 || ct == QNPU__CT_I8) ? 1 : 2);
}
static int32_t get(const void *buf, const qnpu__qp *q, int64_t i)
{
    return qnpu__code_get(buf, ct_of(q), i);
}
static void put(void *buf, const qnpu__qp *q, int64_t i, int32_t v)
{
    qnpu__code_put(buf, ct_of(q), i, v);
}

/* ---- error statistics -------------------------------------------------------------------- */

typedef struct stat_t {
    const char *name;
    int64_t n, mis;
    int64_t max;
} stat_t;

static void st_add(stat_t *s, int32_t got, int32_t want)
{
    int64_t e = llabs((int64_t)got - want);
    s->n++;
    s->mis += e != 0;
    s->max = e > s->max ? e : s->max;
}

static void st_done(const stat_t *s, int64_t bound)
{
    if (getenv("QNPU_TEST_STATS"))
        fprintf(stderr, "int_ops: %-34s max %lld code(s), mismatches %lld / %lld (%.4f%%)\n", s->name,
                (long long)s->max, (long long)s->mis, (long long)s->n,
                s->n ? 100.0 * (double)s->mis / (double)s->n : 0.0);
    ck_assert_msg(s->max <= bound, "%s: max code error %lld > %lld (%lld mismatches of %lld)", s->name,
                  (long long)s->max, (long long)bound, (long long)s->mis, (long long)s->n);
}

#define OK(x) ck_assert_msg((x) == QNPU_OK, "%s", qnpu_last_error())

/* ---- requantization of codes and accumulators -------------------------------------------- */

START_TEST(test_requant_codes)
{
    seed(1u);
    stat_t ex = {"requant codes vs exact", 0, 0, 0}, fq = {"requant codes vs fq", 0, 0, 0};
    stat_t ea = {"requant acc vs exact", 0, 0, 0}, fa = {"requant acc vs fq", 0, 0, 0};
    enum { M = 4, N = 100, LDX = 103, LDY = 101 };
    void *x = cbuf(M * LDX), *y = cbuf(M * LDY);
    int64_t acc[M * LDX];
    for (int rep = 0; rep < 300; rep++) {
        qnpu__qp qx = mkqp(-rnd_between(0, 50), rnd_between(0.1, 50), rep % 2 ? 16 : 8, 0);
        double f = rnd_between(0.3, 3); /* f < 1: the output saturates */
        double lo = (double)qmin_of(&qx) - qx.z, hi = (double)qmax_of(&qx) - qx.z;
        int ysel = rep % 3;
        qnpu__qp qy = ysel == 2 ? mkqp(f * lo * qx.s, f * hi * qx.s, 8, 1)
                                : mkqp(f * lo * qx.s, f * hi * qx.s, ysel ? 8 : 16, 0);
        qnpu__irq p;
        OK(qnpu__irq_init(&p, &qx, &qy));
        for (int64_t i = 0; i < M * LDX; i++)
            put(x, &qx, i, rnd_code(&qx));
        qnpu__requant_codes_ref(&p, M, N, x, LDX, y, LDY);
        for (int64_t r = 0; r < M; r++)
            for (int64_t j = 0; j < N; j++) {
                int32_t c = get(x, &qx, r * LDX + j), g = get(y, &qy, r * LDY + j);
                st_add(&ex, g, code_d(dq64(c, &qx), &qy));
                st_add(&fq, g, code_f((double)dq32(c, &qx), &qy));
            }
        /* accumulators at scale s_acc, covering 1.5x the output range */
        double s_acc = (double)qy.s * rnd_between(1e-4, 1e-1);
        double span = 1.5 * (double)(qmax_of(&qy) - qmin_of(&qy)) * qy.s / s_acc;
        OK(qnpu__irq_init_acc(&p, s_acc, &qy));
        for (int64_t i = 0; i < M * LDX; i++)
            acc[i] = (int64_t)rnd_between(-span, span);
        acc[0] = INT64_MAX;
        acc[1] = INT64_MIN;
        qnpu__requant_acc_ref(&p, M, N, acc, LDX, y, LDY);
        for (int64_t r = 0; r < M; r++)
            for (int64_t j = 0; j < N; j++) {
                int32_t g = get(y, &qy, r * LDY + j);
                double v = (double)acc[r * LDX + j] * s_acc;
                st_add(&ea, g, code_d(v, &qy));
                st_add(&fa, g, code_f(v, &qy));
            }
        ck_assert_int_eq(get(y, &qy, 0), qmax_of(&qy));
        ck_assert_int_eq(get(y, &qy, 1), qmin_of(&qy));
    }
    st_done(&ex, 1);
    st_done(&fq, 1);
    st_done(&ea, 1);
    st_done(&fa, 1);
    free(x);
    free(y);
}
END_TEST

/* ---- §3.3 add ---------------------------------------------------------------------------- */

START_TEST(test_add)
{
    seed(2u);
    stat_t ex = {"add vs exact", 0, 0, 0}, fq = {"add vs fq", 0, 0, 0};
    stat_t exr = {"add (scale ratio > 2^14) vs exact", 0, 0, 0};
    enum { M = 3, N = 200, LD = 211 };
    void *a = cbuf(M * LD), *b = cbuf(M * LD), *y = cbuf(M * LD);
    for (int rep = 0; rep < 400; rep++) {
        double ra = rnd_between(0.5, 100), rb = rnd_between(0.05, 20);
        int extreme = rep % 10 == 0;
        if (extreme) /* one scale 2^20 times the other: the small multiplier is re-rounded */
            rb = ra * ldexp(1.0, -20) * rnd_between(1, 2);
        qnpu__qp qa = mkqp(-ra * rndu(), ra, 16, 0);
        qnpu__qp qb = mkqp(-rb, rb * rndu(), rep % 2 ? 8 : 16, 0);
        if (extreme && rep % 20 == 0) { /* and the other way round */
            qnpu__qp t = qa;
            qa = qb;
            qb = t;
        }
        double f = rnd_between(0.5, 1.2); /* f < 1: saturation at both ends */
        qnpu__qp qy = mkqp(f * (qmin_of(&qa) - qa.z) * (double)qa.s + f * (qmin_of(&qb) - qb.z) * (double)qb.s,
                           f * (qmax_of(&qa) - qa.z) * (double)qa.s + f * (qmax_of(&qb) - qb.z) * (double)qb.s,
                           16, 0);
        qnpu__iadd p;
        OK(qnpu__iadd_init(&p, &qa, &qb, &qy));
        for (int64_t i = 0; i < M * LD; i++) {
            put(a, &qa, i, rnd_code(&qa));
            put(b, &qb, i, rnd_code(&qb));
        }
        qnpu__add_ref(&p, M, N, a, LD, b, LD, y, LD);
        for (int64_t r = 0; r < M; r++)
            for (int64_t j = 0; j < N; j++) {
                int64_t i = r * LD + j;
                int32_t ca = get(a, &qa, i), cb = get(b, &qb, i), g = get(y, &qy, i);
                int32_t e = code_d(dq64(ca, &qa) + dq64(cb, &qb), &qy);
                st_add(extreme ? &exr : &ex, g, e);
                st_add(&fq, g, code_f((double)dq32(ca, &qa) + (double)dq32(cb, &qb), &qy));
            }
    }
    st_done(&ex, 1);
    st_done(&exr, 1);
    st_done(&fq, 1);
    free(a);
    free(b);
    free(y);
}
END_TEST

/* ---- §3.3 multiply ------------------------------------------------------------------------- */

START_TEST(test_mul)
{
    seed(3u);
    stat_t ex = {"mul vs exact", 0, 0, 0}, fq = {"mul vs fq", 0, 0, 0};
    stat_t exc = {"mul const vs exact", 0, 0, 0};
    enum { M = 2, N = 300, LD = 307 };
    void *a = cbuf(M * LD), *b = cbuf(M * LD), *y = cbuf(M * LD);
    int64_t h[M * LD];
    qnpu__qp sig = fixedqp(0x1p-16f, 0, 16);
    for (int rep = 0; rep < 300; rep++) {
        qnpu__qp qa, qb, qy;
        double r = rnd_between(0.5, 20);
        switch (rep % 3) {
        case 0: /* gate.silu = gate.out (u8) x gate.sig (u16, 2^-16) */
            qa = mkqp(-r * rndu(), r, 8, 0);
            qb = sig;
            qy = mkqp(-0.2785, r * rnd_between(0.6, 1.0), 16, 0);
            break;
        case 1: /* down.in = gate.silu (u16) x up.out (u8), 16 or 8 bits */
            qa = mkqp(-0.2785, r, 16, 0);
            qb = mkqp(-r * rndu(), r, 8, 0);
            qy = mkqp(-r * r * rnd_between(0.2, 1), r * r * rnd_between(0.2, 1), rep % 2 ? 16 : 8, 0);
            break;
        default: /* any two 16-bit QPs */
            qa = mkqp(-r * rndu(), r, 16, 0);
            qb = mkqp(-1, rnd_between(0.1, 3), 16, 0);
            qy = mkqp(-r * rnd_between(0.2, 2), r * rnd_between(0.2, 2), 16, 0);
            break;
        }
        qnpu__imul p;
        OK(qnpu__imul_init(&p, &qa, &qb, &qy));
        for (int64_t i = 0; i < M * LD; i++) {
            put(a, &qa, i, rnd_code(&qa));
            put(b, &qb, i, rnd_code(&qb));
        }
        qnpu__mul_ref(&p, M, N, a, LD, b, LD, y, LD);
        qnpu__mul_raw_ref(&p, M, N, a, LD, b, LD, h, LD);
        for (int64_t rr = 0; rr < M; rr++)
            for (int64_t j = 0; j < N; j++) {
                int64_t i = rr * LD + j;
                int32_t ca = get(a, &qa, i), cb = get(b, &qb, i), g = get(y, &qy, i);
                ck_assert_int_eq(h[i], ((int64_t)ca - qa.z) * ((int64_t)cb - qb.z));
                st_add(&ex, g, code_d(dq64(ca, &qa) * dq64(cb, &qb), &qy));
                st_add(&fq, g, code_f((double)dq32(ca, &qa) * (double)dq32(cb, &qb), &qy));
            }
        /* times a constant quantized by qb */
        float cv = (float)dq64(rnd_code(&qb), &qb) * (float)rnd_between(0.9, 1.1);
        OK(qnpu__imul_init_const(&p, &qa, &qb, cv, &qy));
        int32_t cc = code_f(cv, &qb);
        ck_assert_int_eq(p.bk, cc - qb.z);
        qnpu__mul_const_ref(&p, M, N, a, LD, y, LD);
        for (int64_t rr = 0; rr < M; rr++)
            for (int64_t j = 0; j < N; j++) {
                int64_t i = rr * LD + j;
                st_add(&exc, get(y, &qy, i), code_d(dq64(get(a, &qa, i), &qa) * dq64(cc, &qb), &qy));
            }
    }
    st_done(&ex, 1);
    st_done(&fq, 1);
    st_done(&exc, 1);
    free(a);
    free(b);
    free(y);
}
END_TEST

/* ---- §3.4 tables --------------------------------------------------------------------------- */

static double sigm(double v)
{
    return 1.0 / (1.0 + exp(-v));
}

START_TEST(test_lut_sigmoid)
{
    seed(4u);
    stat_t fq = {"sigmoid LUT (double) vs fq", 0, 0, 0}, sm = {"sigmoid LUT (sim_f32) vs sim", 0, 0, 0};
    stat_t dd = {"sigmoid LUT double vs sim_f32", 0, 0, 0};
    qnpu__qp sig = fixedqp(0x1p-16f, 0, 16);
    uint8_t x[256 * 2];
    uint16_t y[256 * 2];
    for (int i = 0; i < 256; i++)
        x[2 * i] = (uint8_t)i, x[2 * i + 1] = 0;
    for (int rep = 0; rep < 100; rep++) {
        double lo = rnd_between(0.5, 30), hi = rnd_between(0.5, 30);
        if (rep == 0)
            lo = hi = 30; /* saturates: sigma(30)·2^16 rounds to 65536, clamped to 65535 */
        qnpu__qp g = mkqp(-lo, hi, 8, 0);
        qnpu__lut l0, l1;
        OK(qnpu__lut_init_sigmoid(&l0, &g, &sig, 0));
        OK(qnpu__lut_init_sigmoid(&l1, &g, &sig, 1));
        ck_assert_int_eq(l0.size, 256);
        /* through the kernel with strides: row r of 128 codes at ldx = 256 (every other code) */
        qnpu__lut_ref(&l0, 2, 128, x, 256, y, 256);
        for (int q = 0; q < 256; q++) {
            int32_t t0 = (int32_t)l0.t[q], t1 = (int32_t)l1.t[q];
            /* double mode: exactly clamp(rne(sigma(s(q - z)) / 2^-16)) */
            ck_assert_int_eq(t0, code_d(sigm(dq64(q, &g)), &sig));
            st_add(&fq, t0, code_f(sigm((double)dq32(q, &g)), &sig));
            float sf = 1.0f / (1.0f + expf(-dq32(q, &g))); /* simgraph.c */
            st_add(&sm, t1, code_f(sf, &sig));
            st_add(&dd, t0, t1);
        }
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < 128; j++)
                ck_assert_int_eq(y[r * 256 + j], l0.t[x[r * 256 + j]]);
        if (rep == 0) {
            ck_assert_int_eq(l0.t[255], 65535);
            ck_assert_int_eq(l1.t[255], 65535);
            ck_assert_int_eq(l0.t[0], 0);
        }
        qnpu__lut_free(&l0);
        qnpu__lut_free(&l1);
    }
    st_done(&fq, 1);
    st_done(&sm, 0); /* bit-identical to the simulated graph */
    st_done(&dd, 1);
}
END_TEST

START_TEST(test_lut_silu_chain)
{
    seed(5u);
    stat_t sm = {"silu chain LUT (sim_f32) vs sim", 0, 0, 0};
    stat_t fq = {"silu chain LUT (double) vs sim (*)", 0, 0, 0};
    stat_t cm = {"silu chain LUT vs sigmoid LUT + mul", 0, 0, 0};
    qnpu__qp sig = fixedqp(0x1p-16f, 0, 16);
    uint8_t x[256];
    uint16_t sc[256], yc[256];
    for (int i = 0; i < 256; i++)
        x[i] = (uint8_t)i;
    for (int rep = 0; rep < 100; rep++) {
        double lo = rnd_between(0.5, 20), hi = rnd_between(0.5, 20);
        qnpu__qp g = mkqp(-lo, hi, 8, 0);
        double smin = fmin(-0.2785, -lo * sigm(-lo)), smax = hi * sigm(hi);
        qnpu__qp silu = mkqp(smin, smax * rnd_between(0.8, 1.0), 16, 0);
        qnpu__lut l0, l1, ls;
        qnpu__imul pm;
        OK(qnpu__lut_init_silu(&l0, &g, &sig, &silu, 0));
        OK(qnpu__lut_init_silu(&l1, &g, &sig, &silu, 1));
        OK(qnpu__lut_init_sigmoid(&ls, &g, &sig, 0));
        OK(qnpu__imul_init(&pm, &g, &sig, &silu));
        qnpu__lut_ref(&ls, 1, 256, x, 256, sc, 256);
        qnpu__mul_ref(&pm, 1, 256, x, 256, sc, 256, yc, 256);
        for (int q = 0; q < 256; q++) {
            /* the simulated graph: hb3 = sigma(g) -> gate.sig; hb = g·hb3 -> gate.silu */
            float gf = dq32(q, &g);
            int32_t cs = code_f(1.0f / (1.0f + expf(-gf)), &sig);
            int32_t want = code_f(gf * dq32(cs, &sig), &silu);
            st_add(&sm, (int32_t)l1.t[q] + qmin_of(&silu), want);
            st_add(&fq, (int32_t)l0.t[q] + qmin_of(&silu), want);
            /* a gate.sig code one off (double vs expf) moves the product by |g|·2^-16: the double
             * table may then differ from the simulation by 1 + ceil(|g|·2^-16/s_silu) codes */
            int32_t delta = abs(code_d(sigm(dq64(q, &g)), &sig) - cs);
            int32_t bound = 1 + (int32_t)ceil(fabs(dq64(q, &g)) * 0x1p-16 * delta / silu.s);
            ck_assert_int_le(abs((int32_t)l0.t[q] + qmin_of(&silu) - want), bound);
            st_add(&cm, (int32_t)l0.t[q] + qmin_of(&silu), yc[q]);
        }
        qnpu__lut_free(&l0);
        qnpu__lut_free(&l1);
        qnpu__lut_free(&ls);
    }
    st_done(&sm, 0);
    st_done(&fq, 1 << 16); /* bounded per element above */
    st_done(&cm, 1);
}
END_TEST

static double tanh_f(double v, void *user)
{
    (void)user;
    return tanh(v);
}

START_TEST(test_lut_16bit_input)
{
    seed(6u);
    /* a 16-bit input takes the full 65,536-entry table; signed input and output */
    qnpu__qp xs[2] = {mkqp(-8, 6, 16, 0), mkqp(-8, 8, 16, 1)};
    qnpu__qp ys[2] = {mkqp(-1, 1, 16, 0), mkqp(-1, 1, 8, 1)};
    enum { N = 5000 };
    void *x = cbuf(N), *y = cbuf(N);
    for (int k = 0; k < 2; k++) {
        qnpu__lut l;
        OK(qnpu__lut_init(&l, &xs[k], &ys[k], tanh_f, NULL));
        ck_assert_int_eq(l.size, 65536);
        for (int64_t i = 0; i < l.size; i++)
            ck_assert_int_eq((int32_t)l.t[i] + qmin_of(&ys[k]),
                             code_d(tanh(dq64(qmin_of(&xs[k]) + (int32_t)i, &xs[k])), &ys[k]));
        for (int64_t i = 0; i < N; i++)
            put(x, &xs[k], i, rnd_code(&xs[k]));
        qnpu__lut_ref(&l, 1, N, x, N, y, N);
        for (int64_t i = 0; i < N; i++)
            ck_assert_int_eq(get(y, &ys[k], i), code_d(tanh(dq64(get(x, &xs[k], i), &xs[k])), &ys[k]));
        qnpu__lut_free(&l);
    }
    free(x);
    free(y);
}
END_TEST

/* ---- §3.6 RMSNorm -------------------------------------------------------------------------- */

START_TEST(test_rmsnorm)
{
    seed(7u);
    stat_t ex = {"rmsnorm vs exact", 0, 0, 0}, fq = {"rmsnorm vs fq", 0, 0, 0};
    stat_t sm = {"rmsnorm vs sim (float32)", 0, 0, 0};
    stat_t ex16 = {"rmsnorm 16-bit out vs exact", 0, 0, 0}, sm16 = {"rmsnorm 16-bit out vs sim", 0, 0, 0};
    const int64_t ds[] = {64, 172, 288, 2048};
    const double epss[] = {1e-5, 1e-6, 0.0};
    enum { M = 12 };
    for (int rep = 0; rep < 48; rep++) {
        int64_t d = ds[rep % 4], ld = d + 3;
        double eps = epss[rep % 3];
        qnpu__qp qx = mkqp(-rnd_between(1, 200) * rndu(), rnd_between(1, 200), 16, 0);
        int out16 = rep % 4 == 3;
        qnpu__qp qy = out16 ? mkqp(-sqrt((double)d), sqrt((double)d), 16, 0)
                            : mkqp(-rnd_between(2, 8), rnd_between(2, 8), 8, 0);
        qnpu__irms p;
        OK(qnpu__irms_init(&p, &qx, &qy, d, eps));
        void *x = cbuf(M * ld), *y = cbuf(M * ld);
        float *xf = malloc((size_t)d * sizeof *xf), *of = malloc((size_t)d * sizeof *of), *w = malloc((size_t)d * sizeof *w);
        for (int64_t i = 0; i < d; i++)
            w[i] = 1.0f;
        int32_t lo = qmin_of(&qx), hi = qmax_of(&qx);
        for (int64_t r = 0; r < M; r++) {
            int64_t one = rnd_int(0, (int32_t)d - 1);
            double spread = r == 9 ? 10 : r == 10 ? 300 : 5000;
            for (int64_t i = 0; i < d; i++) {
                int32_t c;
                switch (r) {
                case 0: c = qx.z; break;                                  /* all-zero row */
                case 1: c = hi; break;                                    /* all equal, extreme */
                case 2: c = lo; break;
                case 3: c = i == one ? hi : qx.z; break;                  /* one non-zero */
                case 4: c = i % 2 ? hi : lo; break;
                case 5: c = qx.z + rnd_int(-1, 1); break;                 /* eps matters */
                case 6: c = i == one ? qx.z + 1 : qx.z; break;            /* smallest non-zero row */
                default: {
                    double v = qx.z + spread * rnd_normal();
                    c = v < lo ? lo : v > hi ? hi : (int32_t)v;
                }
                }
                if (c < lo) c = lo;
                if (c > hi) c = hi;
                put(x, &qx, r * ld + i, c);
            }
        }
        qnpu__rmsnorm_ref(&p, M, x, ld, y, ld);
        for (int64_t r = 0; r < M; r++) {
            double ss = 0, ssf = 0;
            for (int64_t i = 0; i < d; i++) {
                int32_t c = get(x, &qx, r * ld + i);
                ss += dq64(c, &qx) * dq64(c, &qx);
                xf[i] = dq32(c, &qx);
                ssf += (double)xf[i] * xf[i];
            }
            qnpu__rmsnorm(of, xf, w, 1, d, eps); /* the simulated graph's RMSNorm */
            for (int64_t i = 0; i < d; i++) {
                int32_t c = get(x, &qx, r * ld + i), g = get(y, &qy, r * ld + i);
                double den = sqrt(ss / (double)d + eps), denf = sqrt(ssf / (double)d + eps);
                int32_t e = ss == 0 ? qy.z : code_d(dq64(c, &qx) / den, &qy);
                int32_t ef = ssf == 0 ? qy.z : code_f((double)xf[i] / denf, &qy);
                int32_t es = ssf == 0 ? qy.z : code_f(of[i], &qy);
                st_add(out16 ? &ex16 : &ex, g, e);
                if (!out16)
                    st_add(&fq, g, ef);
                st_add(out16 ? &sm16 : &sm, g, es);
            }
            if (r == 0) /* the all-zero row maps to z_y, also with eps = 0 */
                for (int64_t i = 0; i < d; i++)
                    ck_assert_int_eq(get(y, &qy, i), qy.z);
        }
        free(x);
        free(y);
        free(xf);
        free(of);
        free(w);
    }
    st_done(&ex, 1);
    st_done(&fq, 1);
    st_done(&sm, 1);
    st_done(&ex16, 1);
    st_done(&sm16, 1);
}
END_TEST

/* ---- §3.7 RoPE ------------------------------------------------------------------------------ */

START_TEST(test_rope)
{
    seed(8u);
    stat_t sc = {"rope: rope_c vs exact", 0, 0, 0}, sr = {"rope: rot vs exact", 0, 0, 0};
    stat_t ss = {"rope: rope_s vs exact", 0, 0, 0}, sy = {"rope: rope vs exact", 0, 0, 0};
    stat_t fc = {"rope: rope_c vs fq", 0, 0, 0}, fs = {"rope: rope_s vs fq", 0, 0, 0};
    stat_t fy = {"rope: rope vs fq", 0, 0, 0}, sim = {"rope: chain vs sim (float32)", 0, 0, 0};
    enum { NPOS = 300, T = 8, HEADS = 3 };
    const int64_t dhs[] = {8, 64};
    qnpu__qp qcos = mkqp(-1, 1, 16, 0), qsin = mkqp(-1, 1, 16, 0);
    for (int rep = 0; rep < 40; rep++) {
        int64_t dh = dhs[rep % 2], w = HEADS * dh, ldx = w + 5, ldy = w + 2;
        int64_t pos0 = rep % 4 < 2 ? 0 : 37 + rep;
        void *ct = cbuf(NPOS * dh), *st = cbuf(NPOS * dh);
        OK(qnpu__rope_table_codes(NPOS, dh, 10000.0, &qcos, &qsin, ct, st));
        double lo = rnd_between(0.5, 8), hi = rnd_between(0.5, 8), xm = fmax(lo, hi);
        double f = rep % 5 == 4 ? 0.6 : 1.0; /* f < 1: saturation */
        qnpu__qp qx = mkqp(-lo, hi, 8, 0);
        qnpu__qp qc = mkqp(-xm * f, xm * f, 16, 0), qr = mkqp(-xm, xm, 16, 0);
        qnpu__qp qs = mkqp(-xm * f, xm * f, 16, 0), qy = mkqp(-1.42 * xm * f, 1.42 * xm * f, 16, 0);
        qnpu__irope p;
        OK(qnpu__irope_init(&p, &qx, &qcos, &qsin, &qc, &qr, &qs, &qy, dh));
        void *x = cbuf(T * ldx), *y = cbuf(T * ldy), *c = cbuf(T * w), *r = cbuf(T * w);
        void *s = cbuf(T * w), *y2 = cbuf(T * w);
        for (int64_t i = 0; i < T * ldx; i++)
            put(x, &qx, i, rnd_code(&qx));
        const void *cos0 = cat(ct, ct_of(&qcos), pos0 * dh), *sin0 = cat(st, ct_of(&qsin), pos0 * dh);
        qnpu__rope_ref(&p, T, HEADS, x, ldx, cos0, sin0, dh, y, ldy);
        /* the same through the stand-alone kernels */
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < HEADS; h++) {
                int64_t o = t * w + h * dh;
                qnpu__mul_ref(&p.cmul, 1, dh, cat(x, ct_of(&qx), t * ldx + h * dh), dh,
                              cat(ct, ct_of(&qcos), (pos0 + t) * dh), dh, cat(c, ct_of(&qc), o), dh);
            }
        qnpu__rotate_half_ref(&p.rot, T, HEADS, dh, x, ldx, r, w);
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < HEADS; h++) {
                int64_t o = t * w + h * dh;
                qnpu__mul_ref(&p.smul, 1, dh, cat(r, ct_of(&qr), o), dh,
                              cat(st, ct_of(&qsin), (pos0 + t) * dh), dh, cat(s, ct_of(&qs), o), dh);
            }
        qnpu__add_ref(&p.sum, T, w, c, w, s, w, y2, w);
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < w; i++) {
                int64_t hb = (i / dh) * dh, k = i % dh, half = dh / 2;
                int32_t yi = get(y, &qy, t * ldy + i);
                ck_assert_int_eq(yi, get(y2, &qy, t * w + i)); /* fused == composed, bit for bit */
                int32_t xc = get(x, &qx, t * ldx + i);
                int32_t cc = get(ct, &qcos, (pos0 + t) * dh + k), sn = get(st, &qsin, (pos0 + t) * dh + k);
                int32_t xp = get(x, &qx, t * ldx + hb + (k < half ? k + half : k - half));
                double rv = k < half ? -dq64(xp, &qx) : dq64(xp, &qx);
                int32_t gc = get(c, &qc, t * w + i), gr = get(r, &qr, t * w + i), gs = get(s, &qs, t * w + i);
                /* each step against its own integer inputs */
                st_add(&sc, gc, code_d(dq64(xc, &qx) * dq64(cc, &qcos), &qc));
                st_add(&fc, gc, code_f((double)dq32(xc, &qx) * dq32(cc, &qcos), &qc));
                st_add(&sr, gr, code_d(rv, &qr));
                st_add(&ss, gs, code_d(dq64(gr, &qr) * dq64(sn, &qsin), &qs));
                st_add(&fs, gs, code_f((double)dq32(gr, &qr) * dq32(sn, &qsin), &qs));
                st_add(&sy, yi, code_d(dq64(gc, &qc) + dq64(gs, &qs), &qy));
                st_add(&fy, yi, code_f((double)dq32(gc, &qc) + (double)dq32(gs, &qs), &qy));
                /* the chain of simgraph.c rope(), float32 throughout, its own intermediate codes */
                float xf = dq32(xc, &qx), xpf = dq32(xp, &qx);
                float cf = dq32(code_f(xf * dq32(cc, &qcos), &qc), &qc);
                float rf = dq32(code_f(k < half ? -xpf : xpf, &qr), &qr);
                float sf = dq32(code_f(rf * dq32(sn, &qsin), &qs), &qs);
                st_add(&sim, yi, code_f(cf + sf, &qy));
            }
        free(ct);
        free(st);
        free(x);
        free(y);
        free(c);
        free(r);
        free(s);
        free(y2);
    }
    st_done(&sc, 1);
    st_done(&fc, 1);
    st_done(&sr, 1);
    st_done(&ss, 1);
    st_done(&fs, 1);
    st_done(&sy, 1);
    st_done(&fy, 1);
    st_done(&sim, 2); /* see the note in the report: a ±1 upstream can add to the last rounding */
}
END_TEST

/* the RoPE tables equal the simulated graph's quantized tables */
START_TEST(test_rope_tables)
{
    enum { NPOS = 50, DH = 16 };
    qnpu__qp qc = mkqp(-1, 1, 16, 0), qs = mkqp(-1, 1, 16, 0);
    void *c = cbuf(NPOS * DH), *s = cbuf(NPOS * DH);
    float cf[NPOS * DH / 2], sf[NPOS * DH / 2];
    OK(qnpu__rope_table_codes(NPOS, DH, 10000.0, &qc, &qs, c, s));
    qnpu__rope_tables(cf, sf, NPOS, DH, 10000.0);
    for (int p = 0; p < NPOS; p++)
        for (int i = 0; i < DH; i++) {
            ck_assert_int_eq(get(c, &qc, p * DH + i), code_f(cf[p * DH / 2 + i % (DH / 2)], &qc));
            ck_assert_int_eq(get(s, &qs, p * DH + i), code_f(sf[p * DH / 2 + i % (DH / 2)], &qs));
        }
    free(c);
    free(s);
}
END_TEST

/* ---- §3.5 softmax --------------------------------------------------------------------------- */

START_TEST(test_softmax)
{
    seed(9u);
    stat_t ex = {"softmax vs exact", 0, 0, 0}, fq = {"softmax vs fq", 0, 0, 0};
    stat_t sm = {"softmax vs sim (float32)", 0, 0, 0};
    const int64_t ns[] = {1, 2, 7, 172, 1000};
    for (int rep = 0; rep < 60; rep++) {
        int64_t n = ns[rep % 5], ld = n + 1;
        int xbits = rep % 7 == 6 ? 8 : 16;
        double lo = rnd_between(20, 60), hi = rnd_between(2, 30);
        qnpu__qp qx = mkqp(-lo, hi, xbits, 0);
        int ysel = (rep / 5) % 3;
        qnpu__qp qy = ysel == 0 ? mkqp(0, 1, 16, 0) : ysel == 1 ? mkqp(0, 0.25, 16, 0) : mkqp(-0.05, 1, 16, 0);
        qnpu__isoftmax p;
        OK(qnpu__isoftmax_init(&p, &qx, &qy));
        ck_assert(p.size >= 1 && p.size <= qmax_of(&qx) - qmin_of(&qx) + 1);
        ck_assert_uint_eq(p.e[0], 1u << 30);
        enum { M = 8 };
        void *x = cbuf(M * ld), *y = cbuf(M * ld);
        float *row = malloc((size_t)n * sizeof *row);
        int32_t fill = code_f(-lo + 1, &qx);
        for (int64_t r = 0; r < M; r++) {
            double sd = r % 3 == 0 ? 0.5 : r % 3 == 1 ? 3 : 10;
            int32_t eq = rnd_code(&qx);
            for (int64_t j = 0; j < n; j++) {
                int32_t c;
                if (r == 0)
                    c = eq; /* all equal */
                else if (r == 1)
                    c = j % 2 ? qmax_of(&qx) : qmin_of(&qx); /* extremes: d beyond the table */
                else if (r >= 5 && j > (r - 5) * n / 3)
                    c = fill; /* masked positions hold rowmin - 20 */
                else
                    c = code_f(sd * rnd_normal(), &qx);
                put(x, &qx, r * ld + j, c);
            }
        }
        qnpu__softmax_ref(&p, M, n, x, ld, y, ld);
        for (int64_t r = 0; r < M; r++) {
            int32_t mx = qmin_of(&qx);
            for (int64_t j = 0; j < n; j++)
                mx = get(x, &qx, r * ld + j) > mx ? get(x, &qx, r * ld + j) : mx;
            double S = 0, Sf = 0;
            float mxf = dq32(mx, &qx);
            for (int64_t j = 0; j < n; j++) {
                int32_t c = get(x, &qx, r * ld + j);
                S += exp(-(double)qx.s * (double)(mx - c));
                Sf += exp((double)dq32(c, &qx) - (double)mxf);
                row[j] = dq32(c, &qx);
            }
            qnpu__softmax(row, n); /* the simulated graph's softmax */
            /* the integer formula of int_ops.h, with plain divisions: bit for bit */
            uint64_t Si = 0;
            for (int64_t j = 0; j < n; j++) {
                int64_t d = mx - get(x, &qx, r * ld + j);
                Si += d < p.size ? p.e[d] : 0;
            }
            for (int64_t j = 0; j < n; j++) {
                int64_t d = mx - get(x, &qx, r * ld + j);
                uint64_t E = d < p.size ? p.e[d] : 0, num = E << 32, q = num / Si, rem = num % Si;
                q += rem > Si - rem || (rem == Si - rem && (q & 1));
                ck_assert_int_eq(get(y, &qy, r * ld + j),
                                 qnpu__requant((int64_t)q, p.m0, p.n, p.y.z, p.y.qmin, p.y.qmax));
            }
            for (int64_t j = 0; j < n; j++) {
                int32_t c = get(x, &qx, r * ld + j), g = get(y, &qy, r * ld + j);
                st_add(&ex, g, code_d(exp(-(double)qx.s * (double)(mx - c)) / S, &qy));
                st_add(&fq, g, code_f(exp((double)dq32(c, &qx) - (double)mxf) / Sf, &qy));
                st_add(&sm, g, code_f(row[j], &qy));
                if (r == 0) /* all equal: 1/n each */
                    ck_assert_int_le(llabs((long long)g - code_d(1.0 / (double)n, &qy)), 1);
            }
        }
        free(row);
        free(x);
        free(y);
        qnpu__isoftmax_free(&p);
    }
    st_done(&ex, 1);
    st_done(&fq, 1);
    st_done(&sm, 1);
}
END_TEST

/* ---- §3.8 attention score chain -------------------------------------------------------------- */

START_TEST(test_attention_chain)
{
    seed(10u);
    stat_t s10 = {"attn: qk vs exact", 0, 0, 0}, s12 = {"attn: qk.scaled vs exact", 0, 0, 0};
    stat_t s13 = {"attn: qk.rowmin vs exact", 0, 0, 0}, s15 = {"attn: qk.fill vs exact", 0, 0, 0};
    stat_t s16 = {"attn: qk.masked vs exact", 0, 0, 0};
    stat_t f12 = {"attn: qk.scaled vs fq", 0, 0, 0}, f15 = {"attn: qk.fill vs fq", 0, 0, 0};
    stat_t sim = {"attn: chain vs sim (float32)", 0, 0, 0};
    enum { DH = 64, NK = 24 };
    for (int rep = 0; rep < 40; rep++) {
        int64_t m = rep % 2 ? 3 : NK, past = NK - m, n = NK, lda = n + 1, ldy = n + 2;
        qnpu__qp qq = mkqp(-rnd_between(1, 6), rnd_between(1, 6), 16, 0);
        qnpu__qp qk8 = mkqp(-rnd_between(1, 6), rnd_between(1, 6), 8, 1);
        int32_t qc[NK * DH], kc[NK * DH];
        for (int i = 0; i < NK * DH; i++) {
            qc[i] = code_f(rnd_normal() * 2, &qq);
            kc[i] = code_f(rnd_normal() * 2, &qk8);
        }
        int64_t *acc = malloc((size_t)(m * lda) * sizeof *acc);
        double s_acc = (double)qq.s * (double)qk8.s, amin = 1e300, amax = -1e300;
        for (int64_t t = 0; t < m; t++)
            for (int64_t j = 0; j < n; j++) {
                int64_t a = 0;
                for (int i = 0; i < DH; i++)
                    a += ((int64_t)qc[(past + t) * DH + i] - qq.z) * kc[j * DH + i];
                if (rep % 8 == 3 && t == 1) /* a row of equal scores */
                    a = 12345;
                acc[t * lda + j] = a;
                amin = fmin(amin, (double)a * s_acc);
                amax = fmax(amax, (double)a * s_acc);
            }
        double f = rep % 5 == 4 ? 0.7 : 1.0; /* f < 1: qk saturates */
        /* a negative constant (rep % 6 == 5) reverses the order of the scaled scores */
        float scale = (rep % 6 == 5 ? -1.0f : 1.0f) * (float)(1.0 / sqrt((double)DH)), m20 = -20.0f;
        double sl = fmin(amin * f * scale, amax * f * scale), sh = fmax(amin * f * scale, amax * f * scale);
        qnpu__qp qqk = mkqp(amin * f, amax * f, 16, 0), qsc = mkqp(scale, scale, 16, 0);
        qnpu__qp qscaled = mkqp(sl, sh, 16, 0);
        qnpu__qp qrm = mkqp(sl, sl * 0.5, 16, 0);
        qnpu__qp qmc = mkqp(m20, m20, 16, 0);
        qnpu__qp qfill = mkqp(sl + m20, 0, 16, 0);
        qnpu__qp qmasked = mkqp(sl + m20, sh, 16, 0);
        qnpu__iattn p;
        OK(qnpu__iattn_init(&p, s_acc, &qqk, &qsc, scale, &qscaled, &qrm, &qmc, m20, &qfill, &qmasked));
        void *y = cbuf(m * ldy), *yq = cbuf(m * n), *ys = cbuf(m * n), *rm = cbuf(m), *fl = cbuf(m);
        void *y2 = cbuf(m * n), *y3 = cbuf(m * ldy);
        int8_t *mask = calloc((size_t)(m * n), 1);
        qnpu__attn_scores_ref(&p, m, n, acc, lda, NULL, 0, past, y, ldy);
        /* composed from the helpers */
        qnpu__requant_acc_ref(&p.qk, m, n, acc, lda, yq, n);
        qnpu__mul_const_ref(&p.scale, m, n, yq, n, ys, n);
        qnpu__rowmin_ref(&p.rowmin, m, n, ys, n, rm);
        qnpu__add_const_ref(&p.fill, m, 1, rm, 1, fl, 1);
        qnpu__mask_select_ref(&p, m, n, ys, n, fl, NULL, 0, past, y2, n);
        for (int64_t t = 0; t < m; t++)
            for (int64_t j = 0; j < n; j++)
                mask[t * n + j] = j > past + t;
        qnpu__attn_scores_ref(&p, m, n, acc, lda, mask, n, 0, y3, ldy);
        int32_t cmc = code_f(m20, &qmc), csc = code_f(scale, &qsc);
        for (int64_t t = 0; t < m; t++) {
            int32_t mn = INT32_MAX;
            float mnf = INFINITY;
            for (int64_t j = 0; j < n; j++)
                mn = get(ys, &qscaled, t * n + j) < mn ? get(ys, &qscaled, t * n + j) : mn;
            int32_t grm = get(rm, &qrm, t), gfl = get(fl, &qfill, t);
            st_add(&s13, grm, code_d(dq64(mn, &qscaled), &qrm));
            st_add(&s15, gfl, code_d(dq64(grm, &qrm) + dq64(cmc, &qmc), &qfill));
            st_add(&f15, gfl, code_f((double)dq32(grm, &qrm) + (double)dq32(cmc, &qmc), &qfill));
            /* the simulated graph, float32 (scores from the dequantized q, k in double) */
            float sc[NK];
            for (int64_t j = 0; j < n; j++) {
                double dot = 0;
                for (int i = 0; i < DH; i++)
                    dot += (double)dq32(qc[(past + t) * DH + i], &qq) * (double)dq32(kc[j * DH + i], &qk8);
                if (rep % 8 == 3 && t == 1)
                    dot = 12345.0 * s_acc;
                float qkf = dq32(code_f((float)dot, &qqk), &qqk);
                sc[j] = dq32(code_f(qkf * dq32(csc, &qsc), &qscaled), &qscaled);
                mnf = sc[j] < mnf ? sc[j] : mnf;
            }
            float rmf = dq32(code_f(mnf, &qrm), &qrm);
            float flf = dq32(code_f(rmf + dq32(cmc, &qmc), &qfill), &qfill);
            for (int64_t j = 0; j < n; j++) {
                int32_t g = get(y, &qmasked, t * ldy + j);
                ck_assert_int_eq(g, get(y2, &qmasked, t * n + j)); /* fused == composed */
                ck_assert_int_eq(g, get(y3, &qmasked, t * ldy + j)); /* explicit mask == causal */
                int32_t gq = get(yq, &qqk, t * n + j), gs = get(ys, &qscaled, t * n + j);
                st_add(&s10, gq, code_d((double)acc[t * lda + j] * s_acc, &qqk));
                st_add(&s12, gs, code_d(dq64(gq, &qqk) * dq64(csc, &qsc), &qscaled));
                st_add(&f12, gs, code_f((double)dq32(gq, &qqk) * (double)dq32(csc, &qsc), &qscaled));
                int masked = j > past + t;
                st_add(&s16, g, code_d(masked ? dq64(gfl, &qfill) : dq64(gs, &qscaled), &qmasked));
                st_add(&sim, g, code_f(masked ? flf : sc[j], &qmasked));
            }
        }
        free(acc);
        free(y);
        free(yq);
        free(ys);
        free(rm);
        free(fl);
        free(y2);
        free(y3);
        free(mask);
    }
    st_done(&s10, 1);
    st_done(&s12, 1);
    st_done(&f12, 1);
    st_done(&s13, 1);
    st_done(&s15, 1);
    st_done(&f15, 1);
    st_done(&s16, 1);
    st_done(&sim, 2);
}
END_TEST

/* ---- ties --------------------------------------------------------------------------------------- */

/* Power-of-two scales make every multiplier exact and every dequantized value exact in float32,
 * so x.5 results are true ties: they must go to the even code, as rintf does in the simulation. */
START_TEST(test_ties_half_even)
{
    seed(11u);
    stat_t st = {"ties (power-of-two scales)", 0, 0, 0};
    enum { N = 4096 };
    void *a = cbuf(N), *b = cbuf(N), *y = cbuf(N);
    for (int k = 1; k <= 3; k++) {
        qnpu__qp qa = fixedqp(0x1p-10f, 30000, 16), qb = fixedqp(0x1p-11f, 100, 8);
        qnpu__qp qy = fixedqp(ldexpf(0x1p-10f, k), 20000 + k, 16), qm = fixedqp(ldexpf(0x1p-21f, k), 7, 16);
        qnpu__irq r;
        qnpu__iadd ad;
        qnpu__imul mu;
        OK(qnpu__irq_init(&r, &qa, &qy));
        OK(qnpu__iadd_init(&ad, &qa, &qb, &qy));
        OK(qnpu__imul_init(&mu, &qa, &qb, &qm));
        for (int64_t i = 0; i < N; i++) {
            put(a, &qa, i, rnd_int(20000, 40000));
            put(b, &qb, i, rnd_code(&qb));
        }
        qnpu__requant_codes_ref(&r, 1, N, a, N, y, N);
        for (int64_t i = 0; i < N; i++) {
            int32_t g = get(y, &qy, i), ca = get(a, &qa, i);
            ck_assert_int_eq(g, code_d(dq64(ca, &qa), &qy));
            st_add(&st, g, code_f(dq32(ca, &qa), &qy));
        }
        qnpu__add_ref(&ad, 1, N, a, N, b, N, y, N);
        for (int64_t i = 0; i < N; i++) {
            int32_t g = get(y, &qy, i), ca = get(a, &qa, i), cb = get(b, &qb, i);
            ck_assert_int_eq(g, code_d(dq64(ca, &qa) + dq64(cb, &qb), &qy));
            st_add(&st, g, code_f((double)dq32(ca, &qa) + dq32(cb, &qb), &qy));
        }
        qnpu__mul_ref(&mu, 1, N, a, N, b, N, y, N);
        for (int64_t i = 0; i < N; i++) {
            int32_t g = get(y, &qm, i), ca = get(a, &qa, i), cb = get(b, &qb, i);
            ck_assert_int_eq(g, code_d(dq64(ca, &qa) * dq64(cb, &qb), &qm));
            st_add(&st, g, code_f((double)dq32(ca, &qa) * dq32(cb, &qb), &qm));
        }
    }
    st_done(&st, 0);
    free(a);
    free(b);
    free(y);
}
END_TEST

/* eps·d/s² near or above 2^62: the sum of squares is shifted right (k < 0) */
START_TEST(test_rmsnorm_eps_dominant)
{
    seed(12u);
    stat_t ex = {"rmsnorm (eps dominant, k < 0) vs exact", 0, 0, 0};
    enum { D = 4096, M = 4 };
    qnpu__qp qx = mkqp(-1e-4, 1e-4, 16, 0), qy = mkqp(-1e-4, 1e-4, 8, 0);
    qnpu__irms p;
    OK(qnpu__irms_init(&p, &qx, &qy, D, 1.0));
    ck_assert_int_lt(p.k, 0);
    void *x = cbuf(M * D), *y = cbuf(M * D);
    for (int64_t i = 0; i < M * D; i++)
        put(x, &qx, i, i < D ? qx.z : rnd_code(&qx));
    qnpu__rmsnorm_ref(&p, M, x, D, y, D);
    for (int64_t r = 0; r < M; r++) {
        double ss = 0;
        for (int64_t i = 0; i < D; i++)
            ss += dq64(get(x, &qx, r * D + i), &qx) * dq64(get(x, &qx, r * D + i), &qx);
        for (int64_t i = 0; i < D; i++)
            st_add(&ex, get(y, &qy, r * D + i),
                   code_d(dq64(get(x, &qx, r * D + i), &qx) / sqrt(ss / D + 1.0), &qy));
    }
    for (int64_t i = 0; i < D; i++)
        ck_assert_int_eq(get(y, &qy, i), qy.z);
    st_done(&ex, 1);
    free(x);
    free(y);
}
END_TEST

/* ---- parameter validation ----------------------------------------------------------------------- */

START_TEST(test_params_refuse)
{
    qnpu__qp ok = mkqp(-1, 1, 16, 0), pass = ok, bad_s = ok, bad_z = ok;
    pass.bits = 0;
    bad_s.s = 0;
    bad_z.z = 70000;
    qnpu__irq r;
    qnpu__iadd a;
    qnpu__irms n;
    qnpu__irope ro;
    ck_assert_int_eq(qnpu__irq_init(&r, &pass, &ok), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__irq_init(&r, &ok, &bad_s), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__irq_init(&r, &bad_z, &ok), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__irq_init_acc(&r, -1.0, &ok), QNPU_ERR_INVALID_ARG);
    qnpu__qp huge = ok;
    huge.s = ok.s * 0x1p31f;
    ck_assert_int_eq(qnpu__iadd_init(&a, &huge, &ok, &ok), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__irms_init(&n, &ok, &ok, 0, 1e-5), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__irms_init(&n, &ok, &ok, 64, -1), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__irope_init(&ro, &ok, &ok, &ok, &ok, &ok, &ok, &ok, 7), QNPU_ERR_INVALID_ARG);
}
END_TEST

Suite *qnpu_int_ops_suite(void)
{
    Suite *s = suite_create("int_ops");
    TCase *tc = tcase_create("int_ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_requant_codes);
    tcase_add_test(tc, test_add);
    tcase_add_test(tc, test_mul);
    tcase_add_test(tc, test_lut_sigmoid);
    tcase_add_test(tc, test_lut_silu_chain);
    tcase_add_test(tc, test_lut_16bit_input);
    tcase_add_test(tc, test_rmsnorm);
    tcase_add_test(tc, test_rope);
    tcase_add_test(tc, test_rope_tables);
    tcase_add_test(tc, test_softmax);
    tcase_add_test(tc, test_attention_chain);
    tcase_add_test(tc, test_ties_half_even);
    tcase_add_test(tc, test_rmsnorm_eps_dominant);
    tcase_add_test(tc, test_params_refuse);
    suite_add_tcase(s, tc);
    return s;
}
