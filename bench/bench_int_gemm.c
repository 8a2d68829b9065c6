/* bench_int_gemm.c — micro-benchmark of the integer GEMM kernels (lib/kernels/int_gemm.h).
 *
 *   build/bench/bench_int_gemm [--reps N] [--min-time SEC] [--no-ref] [--quick]
 *
 * One thread. For each shape T×N×K (activation rows × weight rows × reduction length) and each
 * weight format (int4 packed, int8) with uint8 activations, plus uint16 activations × int8, it
 * times the reference, the AVX2 and the AVX-512 VNNI kernels (those the CPU has), requantizing
 * into uint8 codes as a linear layer does, and prints GOPS = 2·T·N·K / time (best of the runs).
 * The reference runs once per shape (it is slow); --no-ref skips it. Every optimized result is
 * compared with the reference (or with the first optimized one under --no-ref) and a mismatch
 * is reported as an error. Timing only: the tests in test/check_int_gemm.c assert correctness. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/int_gemm.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rs = 42;
static uint32_t rnd(void)
{
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rs >> 33);
}

static const char *impl_name[] = {"ref", "avx2", "vnni"};

int main(int argc, char **argv)
{
    int reps = 5, no_ref = 0, quick = 0;
    double min_time = 0.3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc)
            min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--no-ref"))
            no_ref = 1;
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: %s [--reps N] [--min-time SEC] [--no-ref] [--quick]\n", argv[0]);
            return 2;
        }
    }
    static const int64_t shapes_full[][3] = {{1, 2048, 2048}, {512, 2048, 2048}, {512, 5632, 2048},
                                             {1, 32000, 2048}};
    static const int64_t shapes_quick[][3] = {{1, 256, 256}, {64, 256, 256}};
    const int64_t (*shapes)[3] = quick ? shapes_quick : shapes_full;
    int nshapes = quick ? 2 : 4;
    struct { int act, wfmt; const char *name; } fmts[] = {
        {QNPU__ACT_U8, QNPU__W_S4, "u8 x s4"},
        {QNPU__ACT_U8, QNPU__W_S8, "u8 x s8"},
        {QNPU__ACT_U16, QNPU__W_S8, "u16 x s8"},
    };
    printf("int GEMM micro-benchmark, one thread; GOPS = 2*T*N*K / best time\n");
    printf("implementations available: ref%s%s (dispatch picks %s)\n",
           qnpu__igemm_have(QNPU__IGEMM_AVX2) ? ", avx2" : "",
           qnpu__igemm_have(QNPU__IGEMM_VNNI) ? ", vnni" : "", impl_name[qnpu__igemm_best()]);
    printf("%-9s %-18s %10s %10s %10s\n", "format", "T x N x K", "ref", "avx2", "vnni");
    int errors = 0;
    for (int s = 0; s < nshapes; s++) {
        int64_t T = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
            int act = fmts[f].act, wfmt = fmts[f].wfmt;
            /* lm_head shape: only the A16 × W8 row (and the A8 rows, which are cheap) */
            if (N == 32000 && act != QNPU__ACT_U16)
                continue;
            if (N != 32000 && act == QNPU__ACT_U16 && T > 1)
                continue;
            int xb = act == QNPU__ACT_U16 ? 2 : 1;
            int64_t ldw = wfmt == QNPU__W_S4 ? (K + 1) / 2 : K;
            uint8_t *x = malloc((size_t)(T * K * xb)), *w = malloc((size_t)(N * ldw));
            int32_t *y0 = malloc((size_t)(T * N) * sizeof *y0), *y1 = malloc((size_t)(T * N) * sizeof *y1);
            int32_t *m0 = malloc((size_t)N * sizeof *m0), *sh = malloc((size_t)N * sizeof *sh);
            int64_t *c = malloc((size_t)N * sizeof *c), *ws = malloc((size_t)N * sizeof *ws);
            if (!x || !w || !y0 || !y1 || !m0 || !sh || !c || !ws) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            for (int64_t i = 0; i < T * K * xb; i++)
                x[i] = (uint8_t)rnd();
            for (int64_t i = 0; i < N * ldw; i++)
                w[i] = (uint8_t)rnd();
            if (wfmt == QNPU__W_S4)
                qnpu__igemm_rowsum_s4(N, K, w, ldw, ws);
            else
                qnpu__igemm_rowsum_s8(N, K, (const int8_t *)w, ldw, ws);
            qnpu__igemm_fold_c(act, N, ws, NULL, act == QNPU__ACT_U16 ? 30000 : 120, c);
            for (int64_t o = 0; o < N; o++) {
                int n;
                qnpu__quantize_multiplier((act == QNPU__ACT_U16 ? 1e-7 : 3e-4) * (1 + (rnd() % 100) / 100.0),
                                          &m0[o], &n);
                sh[o] = n;
            }
            qnpu__igemm_out out = {0};
            out.ldy = N, out.m0 = m0, out.shift = sh, out.zy = 128, out.qmin = 0, out.qmax = 255;
            double gops[3] = {0, 0, 0};
            int have_ref_result = 0;
            for (int impl = 0; impl < 3; impl++) {
                if (!qnpu__igemm_have(impl) || (impl == QNPU__IGEMM_REF && no_ref))
                    continue;
                out.y = have_ref_result ? y1 : y0;
                double best = 1e30, spent = 0;
                int runs = impl == QNPU__IGEMM_REF ? 1 : reps;
                for (int r = 0; r < runs || (spent < min_time && r < 1000 && impl); r++) {
                    double t0 = now();
                    qnpu__igemm(impl, act, wfmt, T, N, K, x, K, w, ldw, c, &out);
                    double dt = now() - t0;
                    spent += dt;
                    if (dt < best)
                        best = dt;
                }
                gops[impl] = 2.0 * (double)T * (double)N * (double)K / best * 1e-9;
                if (have_ref_result) {
                    if (memcmp(y0, y1, (size_t)(T * N) * sizeof *y0) != 0) {
                        fprintf(stderr, "ERROR: %s %s differs from the first result\n",
                                fmts[f].name, impl_name[impl]);
                        errors++;
                    }
                } else {
                    have_ref_result = 1;
                }
            }
            char shape[64];
            snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)T, (long long)N, (long long)K);
            printf("%-9s %-18s", fmts[f].name, shape);
            for (int impl = 0; impl < 3; impl++) {
                if (gops[impl] > 0)
                    printf(" %10.2f", gops[impl]);
                else
                    printf(" %10s", "-");
            }
            printf("\n");
            fflush(stdout);
            free(x), free(w), free(y0), free(y1), free(m0), free(sh), free(c), free(ws);
        }
    }
    return errors ? 1 : 0;
}
