/* check_kernels.c — every SIMD kernel against its plain scalar reference, bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib/quant.h"
#include "kernels/fq.h"
#include "testutil.h"

static uint64_t rng = 0x12345678u;
static uint32_t next32(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}

/* Values that stress rounding: exact ties of x/s, huge, tiny, NaN, +-Inf, random floats. */
static void fill(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++) {
        switch (next32() % 6) {
        case 0: x[i] = ((float)(int)(next32() % 2001) - 1000.0f + 0.5f) * s; break;  /* ties */
        case 1: x[i] = ((float)(int)(next32() % 200001) - 100000.0f) * s * 0.37f; break;
        case 2: { uint32_t b = next32(); memcpy(&x[i], &b, 4); } break;            /* any bits */
        case 3: x[i] = (next32() & 1 ? 1 : -1) * INFINITY; break;
        case 4: x[i] = NAN; break;
        default: x[i] = ((float)next32() / 4294967296.0f - 0.5f) * 300.0f * s; break;
        }
    }
}

START_TEST(test_fq_avx2_matches_reference)
{
    enum { N = 4099 };
    float *x = malloc(N * sizeof *x), *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    const int bits[] = {4, 8, 16};
    for (int bi = 0; bi < 3; bi++)
        for (int sym = 0; sym < 2; sym++)
            for (int rep = 0; rep < 20; rep++) {
                int32_t qmin, qmax;
                qnpu__qrange(bits[bi], sym, &qmin, &qmax);
                float s = ldexpf(1.0f + (float)(next32() % 1000) / 1000.0f, (int)(next32() % 40) - 20);
                int32_t z = sym ? 0 : qmin + (int32_t)(next32() % (uint32_t)(qmax - qmin + 1));
                fill(x, N, s);
                qnpu__fq_ref_f32(x, a, N, s, z, qmin, qmax);
                for (size_t i = 0; i < N; i++) {
                    /* the reference equals the element-wise observer quantizer of quant.h */
                    float e = qnpu__fq_observer(x[i], s, z, qmin, qmax);
                    ck_assert_msg(memcmp(&e, &a[i], 4) == 0, "ref %a vs observer %a at x = %a",
                                  (double)a[i], (double)e, (double)x[i]);
                }
                if (qnpu__fq_have_avx2()) {
                    qnpu__fq_avx2_f32(x, b, N, s, z, qmin, qmax);
                    ck_assert_int_eq(memcmp(a, b, N * sizeof *a), 0);
                }
                memcpy(b, x, N * sizeof *b);            /* in place, through the dispatcher */
                qnpu__fq_f32(b, b, N, s, z, qmin, qmax);
                ck_assert_int_eq(memcmp(a, b, N * sizeof *a), 0);
            }
    free(x);
    free(a);
    free(b);
}
END_TEST

Suite *qnpu_kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("simd");
    tcase_add_test(tc, test_fq_avx2_matches_reference);
    suite_add_tcase(s, tc);
    return s;
}
