/* check_hadamard.c — Hadamard plans of METHOD.md §4.5 and their fast application (§4.6), the
 * FWHT kernels (scalar reference, AVX2 twin, integer versions), fallbacks and seeding.
 * Every check of a plan goes back to an independently computed dense R in double. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/prng.h"
#include "internal.h"
#include "kernels/fwht.h"
#include "rotate/hadamard.h"
#include "testutil.h"

/* Check records every passing ck_assert (one write to its pipe each), so hot loops count
 * failures in `bad` and assert once at the end. */
#define MAX_DENSE 1024
#define TOL_ORTH 1e-5  /* max |R·Rᵀ − I|                          */
#define TOL_APPLY 1e-5 /* max |fast − dense| / max |dense|          */

/* Small deterministic test PRNG (independent of the library's). */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double rnd_unit(void) /* [-1, 1) */
{
    return (double)(rnd() >> 11) * 0x1.0p-52 - 1.0;
}

static int sylvester(int64_t i, int64_t j)
{
    return (__builtin_popcountll((unsigned long long)(i & j)) & 1) ? -1 : 1;
}

/* ---- FWHT ----------------------------------------------------------------------------------- */

/* FWHT of the unit vector e_i is row i of Sylvester's matrix, for every version. */
START_TEST(test_fwht_unit_rows)
{
    for (int64_t n = 1; n <= 512; n *= 2) {
        float *x = malloc((size_t)n * sizeof *x);
        int32_t *xi = malloc((size_t)n * sizeof *xi);
        int64_t *xl = malloc((size_t)n * sizeof *xl);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) {
            for (int v = 0; v < 4; v++) {
                for (int64_t j = 0; j < n; j++)
                    x[j] = (float)(j == i);
                if (v == 0)
                    qnpu__fwht_ref_f32(x, n);
                else if (v == 1)
                    qnpu__fwht_f32(x, n);
                else if (v == 2 && qnpu__fwht_have_avx2())
                    qnpu__fwht_avx2_f32(x, n);
                else
                    continue;
                for (int64_t j = 0; j < n; j++)
                    bad += x[j] != (float)sylvester(i, j);
            }
            for (int64_t j = 0; j < n; j++)
                xi[j] = xl[j] = (j == i);
            qnpu__fwht_i32(xi, n);
            qnpu__fwht_i64(xl, n);
            for (int64_t j = 0; j < n; j++)
                bad += (xi[j] != sylvester(i, j)) + (xl[j] != sylvester(i, j));
        }
        ck_assert_msg(bad == 0, "n=%lld: %lld wrong entries", (long long)n, (long long)bad);
        free(x);
        free(xi);
        free(xl);
    }
}
END_TEST

/* H_n·H_n = n·I: twice gives n·x, exactly for small integers, closely for random floats. */
START_TEST(test_fwht_twice)
{
    for (int64_t n = 1; n <= 8192; n *= 2) {
        float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
        int32_t *xi = malloc((size_t)n * sizeof *xi), *yi = malloc((size_t)n * sizeof *yi);
        int64_t *xl = malloc((size_t)n * sizeof *xl), *yl = malloc((size_t)n * sizeof *yl);
        for (int64_t j = 0; j < n; j++) {
            xi[j] = (int32_t)(rnd() % 201) - 100;
            xl[j] = (int64_t)(rnd() % 2000001) - 1000000;
            x[j] = (float)xi[j];
        }
        memcpy(y, x, (size_t)n * sizeof *x);
        memcpy(yi, xi, (size_t)n * sizeof *xi);
        memcpy(yl, xl, (size_t)n * sizeof *xl);
        qnpu__fwht_f32(y, n);
        qnpu__fwht_f32(y, n);
        qnpu__fwht_i32(yi, n);
        qnpu__fwht_i32(yi, n);
        qnpu__fwht_i64(yl, n);
        qnpu__fwht_i64(yl, n);
        int64_t bad = 0;
        for (int64_t j = 0; j < n; j++)
            bad += (y[j] != (float)n * x[j]) + (yi[j] != (int32_t)n * xi[j]) + (yl[j] != n * xl[j]);
        ck_assert_msg(bad == 0, "n=%lld: H·H·x != n·x at %lld places", (long long)n, (long long)bad);
        /* random floats: within float rounding of n·x */
        for (int64_t j = 0; j < n; j++)
            y[j] = x[j] = (float)rnd_unit();
        qnpu__fwht_ref_f32(y, n);
        qnpu__fwht_ref_f32(y, n);
        double err = 0;
        for (int64_t j = 0; j < n; j++)
            err = fmax(err, fabs(y[j] / (double)n - x[j]));
        ck_assert_msg(err < 1e-5, "n=%lld: |H·H·x/n − x| = %g", (long long)n, err);
        free(x);
        free(y);
        free(xi);
        free(yi);
        free(xl);
        free(yl);
    }
}
END_TEST

/* The AVX2 twin (and the dispatcher) equal the reference bit for bit, on inputs spanning many
 * magnitudes so that rounding really happens. */
START_TEST(test_fwht_simd_bitexact)
{
    for (int64_t n = 1; n <= 16384; n *= 2) {
        for (int rep = 0; rep < 4; rep++) {
            float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b),
                  *c = malloc((size_t)n * sizeof *c);
            for (int64_t j = 0; j < n; j++)
                a[j] = (float)(rnd_unit() * ldexp(1.0, (int)(rnd() % 40) - 20));
            memcpy(b, a, (size_t)n * sizeof *a);
            memcpy(c, a, (size_t)n * sizeof *a);
            qnpu__fwht_ref_f32(a, n);
            qnpu__fwht_f32(b, n);
            ck_assert_msg(memcmp(a, b, (size_t)n * sizeof *a) == 0, "dispatch differs at n=%lld", (long long)n);
            if (qnpu__fwht_have_avx2()) {
                qnpu__fwht_avx2_f32(c, n);
                ck_assert_msg(memcmp(a, c, (size_t)n * sizeof *a) == 0, "avx2 differs at n=%lld", (long long)n);
            }
            free(a);
            free(b);
            free(c);
        }
    }
}
END_TEST

/* ---- plans of §4.5 ----------------------------------------------------------------------------- */

/* The sizes of the brief and of the §4.5 table. `spec` is the plan as §4.5 writes it
 * (H_{2^(a−c)} ⊗ H_N); `desc` is ours, which lists the factors in the Kronecker order actually
 * used (dense ⊗ Sylvester, §4.6) — the same factors. */
static const struct {
    int64_t n;
    const char *desc;
    const char *spec;
    int64_t p;
} plans[] = {
    {1, "H_1", "", 1},
    {2, "H_2", "", 1},
    {8, "H_8", "stories260K d_h", 1},
    {64, "H_64", "stories260K d", 1},
    {172, "Williamson(172)", "table", 172},
    {896, "PaleyII(13) \xe2\x8a\x97 H_32", "H_32 ⊗ PaleyII(13)", 28},
    {1536, "PaleyI(11) \xe2\x8a\x97 H_128", "H_{2^k} ⊗ PaleyI(11)", 12},
    {2048, "H_2048", "", 1},
    {3072, "PaleyI(11) \xe2\x8a\x97 H_256", "H_{2^k} ⊗ PaleyI(11)", 12},
    {4864, "PaleyII(37) \xe2\x8a\x97 H_64", "H_64 ⊗ PaleyII(37)", 76},
    {5632, "PaleyI(43) \xe2\x8a\x97 H_128", "H_128 ⊗ PaleyI(43)", 44},
    {6144, "PaleyI(11) \xe2\x8a\x97 H_512", "H_{2^k} ⊗ PaleyI(11)", 12},
    {8192, "H_8192", "", 1},
    {8960, "PaleyI(139) \xe2\x8a\x97 H_64", "H_64 ⊗ PaleyI(139)", 140},
    {11008, "Williamson(172) \xe2\x8a\x97 H_64", "H_64 ⊗ table(172)", 172},
    {14336, "PaleyII(13) \xe2\x8a\x97 H_512", "H_512 ⊗ PaleyII(13)", 28},
};
#define N_PLANS ((int)(sizeof plans / sizeof plans[0]))

static qnpu__hadamard *make_plan(int64_t n, int64_t cap, int fallback, uint64_t seed)
{
    qnpu__hadamard *h = NULL;
    qnpu_status s = qnpu__hadamard_plan(n, cap, fallback, seed, 1, &h);
    ck_assert_msg(s == QNPU_OK, "n=%lld: %s", (long long)n, qnpu_last_error());
    ck_assert_ptr_nonnull(h);
    return h;
}

START_TEST(test_plan_table)
{
    int64_t n = plans[_i].n;
    qnpu__hadamard *h = make_plan(n, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 7);
    ck_assert_str_eq(qnpu__hadamard_describe(h), plans[_i].desc);
    ck_assert_int_eq(h->n, n);
    ck_assert_int_eq(h->p, plans[_i].p);
    ck_assert_int_eq(h->p * h->r, n);
    ck_assert_int_eq(h->r & (h->r - 1), 0);
    ck_assert_int_eq(qnpu__hadamard_is_exact(h), 1);
    ck_assert(fabs(h->scale - 1.0 / sqrt((double)n)) < 1e-15);
    /* the ±1 factor: entries ±1 and A·Aᵀ = p·I exactly */
    ck_assert_ptr_nonnull(h->a_pm1);
    int64_t p = h->p, bad = 0;
    for (int64_t i = 0; i < p; i++)
        for (int64_t j = 0; j < p; j++) {
            int8_t v = h->a_pm1[i * p + j];
            bad += (v != 1 && v != -1) + (h->a[i * p + j] != (double)v);
            int64_t dot = 0;
            for (int64_t k = 0; k < p; k++)
                dot += h->a_pm1[i * p + k] * h->a_pm1[j * p + k];
            bad += dot != (i == j ? p : 0);
        }
    ck_assert_msg(bad == 0, "n=%lld: the ±1 factor is not Hadamard (%lld bad)", (long long)n, (long long)bad);
    for (int64_t i = 0; i < n; i++)
        bad += h->sigma[i] != 1 && h->sigma[i] != -1;
    ck_assert_int_eq(bad, 0);
    qnpu__hadamard_free(h);
}
END_TEST

/* One pass over every row of the dense R (built entry by entry by the library in double and
 * checked here against its definition on sampled entries) does two checks at once:
 *   - orthogonality: R·Rᵀ restricted to rows S (all rows when n <= 512, else a random sample)
 *     against every row, max |R·Rᵀ − I| < TOL_ORTH;
 *   - the fast apply on a few random vectors equals x·R accumulated in double. */
static void check_dense_and_apply(const qnpu__hadamard *h)
{
    const int64_t n = h->n;
    const int NV = 3;
    int64_t ns = n <= 512 ? n : 3;
    int64_t *S = malloc((size_t)ns * sizeof *S);
    for (int64_t k = 0; k < ns; k++)
        S[k] = n <= 512 ? k : (k == 0 ? 0 : k == 1 ? n - 1 : (int64_t)(rnd() % (uint64_t)n));
    double *RS = malloc((size_t)(ns * n) * sizeof *RS);
    for (int64_t k = 0; k < ns; k++)
        qnpu__hadamard_dense_rows(h, S[k], 1, RS + k * n);

    /* NV vectors, 2 of them in a strided two-row buffer */
    int64_t ld = n + 5;
    float *x = malloc((size_t)(NV * ld) * sizeof *x);
    double *xd = malloc((size_t)(NV * n) * sizeof *xd), *yd = calloc((size_t)(NV * n), sizeof *yd);
    for (int v = 0; v < NV; v++) {
        for (int64_t j = 0; j < n; j++)
            xd[v * n + j] = x[v * ld + j] = (float)rnd_unit();
        for (int64_t j = n; j < ld; j++)
            x[v * ld + j] = 777.0f; /* padding between rows, must stay untouched */
    }

    const int64_t BLK = 64;
    double *rows = malloc((size_t)(BLK * n) * sizeof *rows);
    double worst = 0;
    int64_t bad = 0;
    for (int64_t w0 = 0; w0 < n; w0 += BLK) {
        int64_t nb = n - w0 < BLK ? n - w0 : BLK;
        qnpu__hadamard_dense_rows(h, w0, nb, rows);
        for (int64_t b = 0; b < nb; b++) {
            const double *rw = rows + b * n;
            int64_t w = w0 + b;
            /* spot-check the dense row against the definition σ_w·A[i][j]·H_r[l][t]·scale */
            int64_t t = (int64_t)(rnd() % (uint64_t)n);
            double want = h->sigma[w] * sylvester(w % h->r, t % h->r) * h->scale *
                          (h->p == 1 ? 1.0 : h->a ? h->a[(w / h->r) * h->p + t / h->r]
                                                  : (double)(w / h->r == t / h->r));
            bad += (rw[t] != want) + (qnpu__hadamard_entry(h, w, t) != want);
            for (int64_t k = 0; k < ns; k++) {
                double d = 0;
                const double *rs = RS + k * n;
                for (int64_t c = 0; c < n; c++)
                    d += rs[c] * rw[c];
                d = fabs(d - (S[k] == w ? 1.0 : 0.0));
                if (d > worst)
                    worst = d;
            }
            for (int v = 0; v < NV; v++) {
                double xv = xd[v * n + w];
                double *y = yd + v * n;
                for (int64_t c = 0; c < n; c++)
                    y[c] += xv * rw[c];
            }
        }
    }
    ck_assert_msg(bad == 0, "n=%lld (%s): %lld dense entries differ from the definition", (long long)n,
                  h->desc, (long long)bad);
    ck_assert_msg(worst < TOL_ORTH, "n=%lld (%s): max |R·Rᵀ − I| = %g", (long long)n, h->desc, worst);

    /* fast apply: one vector through qnpu__hadamard_apply, two rows through apply_ws with ld */
    ck_assert_int_eq(qnpu__hadamard_apply(h, x, 1, ld), QNPU_OK);
    size_t nw = qnpu__hadamard_work_floats(h);
    float *work = nw ? malloc(nw * sizeof *work) : NULL;
    qnpu__hadamard_apply_ws(h, x + ld, NV - 1, ld, work);
    free(work);
    for (int v = 0; v < NV; v++) {
        double mx = 0, err = 0;
        for (int64_t c = 0; c < n; c++) {
            double ref = yd[v * n + c];
            mx = fmax(mx, fabs(ref));
            err = fmax(err, fabs(ref - x[v * ld + c]));
        }
        ck_assert_msg(err <= TOL_APPLY * mx, "n=%lld (%s) vector %d: |fast − dense| = %g (max %g)",
                      (long long)n, h->desc, v, err, mx);
        for (int64_t c = n; c < ld; c++)
            bad += x[v * ld + c] != 777.0f;
        ck_assert_msg(bad == 0, "n=%lld: apply wrote outside the rows", (long long)n);
    }
    free(S);
    free(RS);
    free(x);
    free(xd);
    free(yd);
    free(rows);
}

START_TEST(test_plan_dense_and_apply)
{
    qnpu__hadamard *h = make_plan(plans[_i].n, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 1234 + (uint64_t)_i);
    check_dense_and_apply(h);
    qnpu__hadamard_free(h);
}
END_TEST

/* Full R·Rᵀ with the library's own dense writer, for the small orders. */
START_TEST(test_dense_full_small)
{
    const int64_t ns[] = {1, 2, 4, 8, 12, 64, 172};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int64_t n = ns[k];
        qnpu__hadamard *h = make_plan(n, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 3);
        double *R = malloc((size_t)(n * n) * sizeof *R);
        qnpu__hadamard_dense(h, R);
        double worst = 0, worst_abs = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                double d = 0;
                for (int64_t c = 0; c < n; c++)
                    d += R[i * n + c] * R[j * n + c];
                worst = fmax(worst, fabs(d - (i == j)));
                /* and every entry is ±1/√n */
                worst_abs = fmax(worst_abs, fabs(fabs(R[i * n + j]) * sqrt((double)n) - 1.0));
            }
        ck_assert_msg(worst < 1e-12 && worst_abs < 1e-12, "n=%lld: |R·Rᵀ − I| = %g, |√n·|R|−1| = %g",
                      (long long)n, worst, worst_abs);
        free(R);
        qnpu__hadamard_free(h);
    }
}
END_TEST

/* The integer transform of an exact plan equals x·R/scale computed from the dense entries. */
static void check_integer_apply(const qnpu__hadamard *h)
{
    int64_t n = h->n;
    int64_t *x = malloc((size_t)n * sizeof *x), *x0 = malloc((size_t)n * sizeof *x0);
    int64_t *work = malloc((size_t)n * sizeof *work);
    for (int64_t j = 0; j < n; j++)
        x0[j] = x[j] = (int64_t)(rnd() % 65535) - 32767;
    ck_assert_int_eq(qnpu__hadamard_apply_i64(h, x, 1, n, work), QNPU_OK);
    int64_t bad = 0;
    for (int64_t c = 0; c < n; c++) {
        int64_t want = 0;
        for (int64_t j = 0; j < n; j++) {
            double e = qnpu__hadamard_entry(h, j, c) / h->scale; /* exactly ±1 or 0 */
            int64_t s = (int64_t)llround(e);
            bad += fabs(e - (double)s) > 1e-9;
            want += s * x0[j];
        }
        bad += x[c] != want;
    }
    ck_assert_msg(bad == 0, "n=%lld (%s): integer transform differs at %lld places", (long long)n, h->desc,
                  (long long)bad);
    free(x);
    free(x0);
    free(work);
}

START_TEST(test_integer_apply)
{
    const int64_t ns[] = {2, 64, 172, 896, 1536, 5632};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        qnpu__hadamard *h = make_plan(ns[k], MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 11);
        check_integer_apply(h);
        qnpu__hadamard_free(h);
    }
    qnpu__hadamard *h = make_plan(86, MAX_DENSE, QNPU__HAD_FALLBACK_PARTIAL, 11);
    check_integer_apply(h);
    qnpu__hadamard_free(h);
    /* a random orthogonal plan is refused */
    h = make_plan(86, MAX_DENSE, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 11);
    int64_t x[86] = {0}, w[86];
    ck_assert_int_eq(qnpu__hadamard_apply_i64(h, x, 1, 86, w), QNPU_ERR_INVALID_ARG);
    qnpu__hadamard_free(h);
}
END_TEST

/* The float apply is a fixed sequence of IEEE operations: signs, the FWHT butterflies, then for
 * every output the products (A[i][j]·scale)·X[i][l] added from 0 in increasing i. A plain
 * scalar re-implementation of that sequence must agree bit for bit, whatever SIMD path the
 * library took (r >= 8 axpys, r < 8 dot products, AVX2 or not). */
static void check_apply_bitexact(const qnpu__hadamard *h)
{
    int64_t n = h->n, p = h->p, r = h->r;
    float *x = malloc((size_t)n * sizeof *x), *want = malloc((size_t)n * sizeof *want);
    float *t = malloc((size_t)n * sizeof *t);
    for (int64_t j = 0; j < n; j++)
        want[j] = x[j] = (float)(rnd_unit() * ldexp(1.0, (int)(rnd() % 16) - 8));
    for (int64_t j = 0; j < n; j++)
        if (h->sigma[j] < 0)
            want[j] = -want[j];
    for (int64_t i = 0; i < p; i++)
        qnpu__fwht_ref_f32(want + i * r, r);
    if (h->at_scaled) {
        for (int64_t j = 0; j < p; j++)
            for (int64_t l = 0; l < r; l++) {
                float acc = 0;
                for (int64_t i = 0; i < p; i++)
                    acc += h->at_scaled[j * p + i] * want[i * r + l];
                t[j * r + l] = acc;
            }
        memcpy(want, t, (size_t)n * sizeof *t);
    } else {
        for (int64_t j = 0; j < n; j++)
            want[j] *= (float)h->scale;
    }
    ck_assert_int_eq(qnpu__hadamard_apply(h, x, 1, n), QNPU_OK);
    ck_assert_msg(memcmp(x, want, (size_t)n * sizeof *x) == 0, "n=%lld (%s): apply is not the scalar sequence",
                  (long long)n, h->desc);
    free(x);
    free(want);
    free(t);
}

START_TEST(test_apply_bitexact)
{
    const int64_t ns[] = {1, 8, 36, 172, 896, 5632, 11008};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        qnpu__hadamard *h = make_plan(ns[k], MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 21);
        check_apply_bitexact(h);
        qnpu__hadamard_free(h);
    }
    const int64_t nf[] = {43, 86, 172 * 4, 2 * 1031};
    for (size_t k = 0; k < sizeof nf / sizeof nf[0]; k++) {
        for (int fb = 0; fb <= 2; fb += 2) {
            qnpu__hadamard *h = NULL;
            /* cap 100 forces the fallbacks for 172·4; 2·1031 only has 'partial' */
            if (qnpu__hadamard_plan(nf[k], 100, fb, 21, 1, &h) != QNPU_OK)
                continue;
            check_apply_bitexact(h);
            qnpu__hadamard_free(h);
        }
    }
}
END_TEST

/* qnpu__hadamard_derive rebuilds desc and at_scaled from the primary fields, as a loader does. */
START_TEST(test_derive)
{
    const int64_t ns[] = {64, 172, 5632, 86};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        qnpu__hadamard *h = make_plan(ns[k], MAX_DENSE, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 4);
        qnpu__hadamard *c = qnpu__calloc(1, sizeof *c);
        ck_assert_ptr_nonnull(c);
        c->n = h->n, c->p = h->p, c->r = h->r, c->kind = h->kind, c->q = h->q;
        c->exact = h->exact, c->scale = h->scale;
        size_t pp = (size_t)(h->p * h->p);
        c->sigma = qnpu__malloc((size_t)h->n);
        memcpy(c->sigma, h->sigma, (size_t)h->n);
        c->a = qnpu__malloc(pp * sizeof *c->a);
        memcpy(c->a, h->a, pp * sizeof *c->a);
        ck_assert_int_eq(qnpu__hadamard_derive(c), QNPU_OK);
        ck_assert_str_eq(c->desc, h->desc);
        ck_assert_int_eq(qnpu__hadamard_work_floats(c), qnpu__hadamard_work_floats(h));
        if (h->at_scaled)
            ck_assert(memcmp(c->at_scaled, h->at_scaled, pp * sizeof(float)) == 0);
        else
            ck_assert_ptr_null(c->at_scaled);
        qnpu__hadamard_free(c);
        qnpu__hadamard_free(h);
    }
}
END_TEST

/* The order-172 construction is fast (it runs on every plan of a 172-multiple). */
START_TEST(test_williamson_fast)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; k < 10; k++) {
        qnpu__hadamard *h = make_plan(172, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, (uint64_t)k);
        ck_assert_int_eq(h->kind, QNPU__HAD_WILLIAMSON);
        qnpu__hadamard_free(h);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ck_assert_msg(s < 5.0, "10 plans of order 172 took %.3f s", s);
}
END_TEST

/* ---- fallbacks ----------------------------------------------------------------------------------- */

START_TEST(test_fallback_random_orthogonal)
{
    /* 86 = 2·43 is not a multiple of 4: no Hadamard matrix exists */
    qnpu__hadamard *h = make_plan(86, MAX_DENSE, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 5);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "Q_43 \xe2\x8a\x97 H_2");
    ck_assert_int_eq(h->kind, QNPU__HAD_RANDOM_ORTHOGONAL);
    ck_assert_int_eq(qnpu__hadamard_is_exact(h), 0);
    ck_assert_ptr_null(h->a_pm1);
    check_dense_and_apply(h);
    qnpu__hadamard_free(h);

    /* 172 under a cap of 100: §4.5's "fallback H_4 ⊗ Q_43" */
    h = make_plan(172, 100, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 5);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "Q_43 \xe2\x8a\x97 H_4");
    ck_assert(fabs(h->scale - 0.5) < 1e-15);
    check_dense_and_apply(h);
    qnpu__hadamard_free(h);

    /* odd orders: no Sylvester factor at all */
    h = make_plan(43, MAX_DENSE, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 5);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "Q_43");
    check_dense_and_apply(h);
    qnpu__hadamard_free(h);

    /* the random block is a non-Sylvester factor too: refused above the cap */
    qnpu__hadamard *bad = (qnpu__hadamard *)1;
    ck_assert_int_eq(qnpu__hadamard_plan(2 * 1031, MAX_DENSE, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 0, 1, &bad),
                     QNPU_ERR_UNSUPPORTED);
    ck_assert_ptr_null(bad);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "2062"));
}
END_TEST

START_TEST(test_fallback_partial)
{
    qnpu__hadamard *h = make_plan(86, MAX_DENSE, QNPU__HAD_FALLBACK_PARTIAL, 5);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "I_43 \xe2\x8a\x97 H_2");
    ck_assert_int_eq(h->kind, QNPU__HAD_PARTIAL);
    ck_assert_int_eq(qnpu__hadamard_is_exact(h), 1);
    ck_assert_int_eq(qnpu__hadamard_work_floats(h), 0);
    check_dense_and_apply(h);
    /* it mixes only within groups of 2: R is block diagonal */
    int64_t bad = 0;
    for (int64_t i = 0; i < 86; i++)
        for (int64_t j = 0; j < 86; j++)
            if (i / 2 != j / 2)
                bad += qnpu__hadamard_entry(h, i, j) != 0.0;
    ck_assert_int_eq(bad, 0);
    qnpu__hadamard_free(h);

    h = make_plan(2 * 1031, MAX_DENSE, QNPU__HAD_FALLBACK_PARTIAL, 5);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "I_1031 \xe2\x8a\x97 H_2");
    check_dense_and_apply(h);
    qnpu__hadamard_free(h);
}
END_TEST

START_TEST(test_fallback_error)
{
    qnpu__hadamard *h = (qnpu__hadamard *)1;
    ck_assert_int_eq(qnpu__hadamard_plan(86, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 0, 1, &h), QNPU_ERR_UNSUPPORTED);
    ck_assert_ptr_null(h);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "86"));
    /* the cap alone can force it: 5632 needs a 44 block */
    ck_assert_int_eq(qnpu__hadamard_plan(5632, 40, QNPU__HAD_FALLBACK_ERROR, 0, 1, &h), QNPU_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "5632"));
    /* a cap that still admits 44 */
    h = make_plan(5632, 44, QNPU__HAD_FALLBACK_ERROR, 0);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "PaleyI(43) \xe2\x8a\x97 H_128");
    qnpu__hadamard_free(h);
    /* bad arguments */
    ck_assert_int_eq(qnpu__hadamard_plan(0, MAX_DENSE, 0, 0, 1, &h), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__hadamard_plan(-4, MAX_DENSE, 0, 0, 1, &h), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__hadamard_plan(8, 0, 0, 0, 1, &h), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__hadamard_plan(8, MAX_DENSE, 3, 0, 1, &h), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__hadamard_plan(8, MAX_DENSE, 0, 0, 1, NULL), QNPU_ERR_INVALID_ARG);
    qnpu__hadamard_free(NULL);
}
END_TEST

/* The smallest N wins: 2^c·m with c = 2 first; larger c only when the smaller has no
 * construction or exceeds the cap. */
START_TEST(test_smallest_block)
{
    /* 24 = 2^3·3: N = 12 (PaleyI(11)), not 24 (PaleyI(23)) */
    qnpu__hadamard *h = make_plan(24, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 0);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "PaleyI(11) \xe2\x8a\x97 H_2");
    check_dense_and_apply(h);
    qnpu__hadamard_free(h);
    /* 40 = 2^3·5: N = 20 = PaleyI(19) */
    h = make_plan(40, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 0);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "PaleyI(19) \xe2\x8a\x97 H_2");
    qnpu__hadamard_free(h);
    /* 36 = 2^2·9: N = 36 = PaleyII(17) (35 is not prime) */
    h = make_plan(36, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 0);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "PaleyII(17)");
    check_dense_and_apply(h);
    qnpu__hadamard_free(h);
    /* 2^5·29 = 928: 116 has no construction (115, 57 composite), 232 = PaleyI(231)? no
     * (231 = 3·7·11); 232 = 2(115 + 1)? 115 composite; 464 = PaleyI(463) (463 ≡ 3 mod 4 prime) */
    h = make_plan(928, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 0);
    ck_assert_str_eq(qnpu__hadamard_describe(h), "PaleyI(463) \xe2\x8a\x97 H_2");
    check_dense_and_apply(h);
    qnpu__hadamard_free(h);
    ck_assert_int_eq(qnpu__is_prime(463), 1);
    ck_assert_int_eq(qnpu__is_prime(231), 0);
}
END_TEST

/* ---- seeds ------------------------------------------------------------------------------------------ */

START_TEST(test_seeds)
{
    const int64_t ns[] = {64, 86, 172};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int64_t n = ns[k];
        qnpu__hadamard *a = make_plan(n, MAX_DENSE, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 42);
        qnpu__hadamard *b = make_plan(n, MAX_DENSE, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 42);
        qnpu__hadamard *c = make_plan(n, MAX_DENSE, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, 43);
        ck_assert(memcmp(a->sigma, b->sigma, (size_t)n) == 0);
        ck_assert(memcmp(a->sigma, c->sigma, (size_t)n) != 0);
        ck_assert_str_eq(a->desc, b->desc);
        if (a->a) {
            ck_assert(memcmp(a->a, b->a, (size_t)(a->p * a->p) * sizeof(double)) == 0);
            /* a ±1 factor does not depend on the seed, a random one does */
            int same = memcmp(a->a, c->a, (size_t)(a->p * a->p) * sizeof(double)) == 0;
            ck_assert_int_eq(same, a->exact);
        }
        /* both signs occur, roughly half each */
        int64_t neg = 0;
        for (int64_t i = 0; i < n; i++)
            neg += a->sigma[i] < 0;
        ck_assert(neg > n / 4 && neg < 3 * n / 4);
        qnpu__hadamard_free(a);
        qnpu__hadamard_free(b);
        qnpu__hadamard_free(c);
    }
    /* random_signs = 0: all +1, so R = H_n/√n exactly */
    qnpu__hadamard *h = NULL;
    ck_assert_int_eq(qnpu__hadamard_plan(16, MAX_DENSE, 0, 9, 0, &h), QNPU_OK);
    int64_t bad = 0;
    for (int64_t i = 0; i < 16; i++)
        for (int64_t j = 0; j < 16; j++)
            bad += qnpu__hadamard_entry(h, i, j) != sylvester(i, j) * 0.25;
    ck_assert_int_eq(bad, 0);
    qnpu__hadamard_free(h);
}
END_TEST

/* ---- n = 1, 2 and the PRNG ---------------------------------------------------------------------- */

START_TEST(test_tiny_orders)
{
    qnpu__hadamard *h = make_plan(1, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 0);
    float x = 3.5f;
    ck_assert_int_eq(qnpu__hadamard_apply(h, &x, 1, 1), QNPU_OK);
    ck_assert(x == 3.5f * h->sigma[0]);
    qnpu__hadamard_free(h);
    h = make_plan(2, MAX_DENSE, QNPU__HAD_FALLBACK_ERROR, 0);
    float y[2] = {1.0f, 2.0f};
    ck_assert_int_eq(qnpu__hadamard_apply(h, y, 1, 2), QNPU_OK);
    double u0 = h->sigma[0], u1 = 2.0 * h->sigma[1];
    ck_assert(fabs(y[0] - (u0 + u1) / sqrt(2.0)) < 1e-6);
    ck_assert(fabs(y[1] - (u0 - u1) / sqrt(2.0)) < 1e-6);
    qnpu__hadamard_free(h);
}
END_TEST

START_TEST(test_random_orthogonal_small)
{
    for (int64_t m = 1; m <= 9; m++) {
        double Q[81];
        ck_assert_int_eq(qnpu__random_orthogonal(m, 77, 1, Q), QNPU_OK);
        double worst = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < m; j++) {
                double d = 0;
                for (int64_t k = 0; k < m; k++)
                    d += Q[i * m + k] * Q[j * m + k];
                worst = fmax(worst, fabs(d - (i == j)));
            }
        ck_assert_msg(worst < 1e-12, "m=%lld: %g", (long long)m, worst);
    }
    ck_assert_int_eq(qnpu__random_orthogonal(0, 1, 0, NULL), QNPU_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_prng)
{
    qnpu__prng a, b, c;
    qnpu__prng_seed(&a, 1);
    qnpu__prng_seed_stream(&b, 1, 0);
    qnpu__prng_seed_stream(&c, 1, 1);
    int differ = 0, bad = 0;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t x = qnpu__prng_next(&a), y = qnpu__prng_next(&b), z = qnpu__prng_next(&c);
        bad += x != y;
        differ += x != z;
        double u = qnpu__prng_uniform(&a);
        qnpu__prng_uniform(&b);
        bad += !(u >= 0.0 && u < 1.0);
        bad += qnpu__prng_below(&a, 7) >= 7;
        qnpu__prng_below(&b, 7);
        double g = qnpu__prng_gauss(&a);
        qnpu__prng_gauss(&b);
        sum += g;
        sum2 += g * g;
    }
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(differ, 20000);
    ck_assert(fabs(sum / 20000) < 0.05);
    ck_assert(fabs(sum2 / 20000 - 1.0) < 0.05);
    /* seed 0 is a valid, non-degenerate seed */
    qnpu__prng_seed(&a, 0);
    ck_assert(qnpu__prng_next(&a) != qnpu__prng_next(&a));
}
END_TEST

Suite *qnpu_hadamard_suite(void)
{
    Suite *s = suite_create("hadamard");
    TCase *tc = tcase_create("fwht");
    tcase_add_test(tc, test_fwht_unit_rows);
    tcase_add_test(tc, test_fwht_twice);
    tcase_add_test(tc, test_fwht_simd_bitexact);
    suite_add_tcase(s, tc);

    tc = tcase_create("plans");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_plan_table, 0, N_PLANS);
    tcase_add_loop_test(tc, test_plan_dense_and_apply, 0, N_PLANS);
    tcase_add_test(tc, test_dense_full_small);
    tcase_add_test(tc, test_integer_apply);
    tcase_add_test(tc, test_apply_bitexact);
    tcase_add_test(tc, test_derive);
    tcase_add_test(tc, test_williamson_fast);
    tcase_add_test(tc, test_smallest_block);
    suite_add_tcase(s, tc);

    tc = tcase_create("fallbacks");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fallback_random_orthogonal);
    tcase_add_test(tc, test_fallback_partial);
    tcase_add_test(tc, test_fallback_error);
    tcase_add_test(tc, test_tiny_orders);
    suite_add_tcase(s, tc);

    tc = tcase_create("seeds");
    tcase_add_test(tc, test_seeds);
    tcase_add_test(tc, test_random_orthogonal_small);
    tcase_add_test(tc, test_prng);
    suite_add_tcase(s, tc);
    return s;
}
