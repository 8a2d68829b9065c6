/* bench_int_gemm.c — micro-benchmark of the integer GEMM kernels (lib/kernels/int_gemm.h).
 *
 *   build/bench/bench_int_gemm [--reps N] [--min-time SEC] [--no-ref] [--quick]
 *
 * One thread. First the instruction peak: a register-resident loop of independent VPDPBUSD zmm
 * (and VPDPWSSD zmm) accumulators, reported as GOPS with 1 MAC = 2 ops (VPDPBUSD: 64 MACs per
 * instruction, VPDPWSSD: 32), when the CPU has AVX-512 VNNI. Then, for each shape T×N×K
 * (activation rows × weight rows × reduction length) and format — uint8 activations × int4
 * packed / int8 weights, uint16 activations × int8 and × int4 — it times the reference, the AVX2
 * and the AVX-512 VNNI kernels (those the CPU has), requantizing into uint8 codes as a linear
 * layer does, and prints GOPS = 2·T·N·K / time (best of the runs) and the VNNI kernel's fraction
 * of the peak of the instruction it issues (VPDPBUSD for 8-bit activations, VPDPWSSD for 16-bit
 * ones). The down_proj shapes (K = 5632: T = 1 decoding, T = 512 prefill) run A16 × W4 only.
 * The reference runs once per shape (it is slow); --no-ref skips it, and --quick (small shapes
 * plus the down_proj ones, 3 runs / 0.1 s per kernel unless --reps / --min-time say otherwise)
 * skips it on shapes above 2·10^9 operations. Every optimized result is compared with the
 * reference (or with the first optimized one) and a mismatch is reported as an error. Timing
 * only: test/check_int_gemm.c asserts correctness. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* ---- instruction peak ---------------------------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(QNPU_NO_SIMD)
/* iters × 16 independent VPDPBUSD (word = 0) or VPDPWSSD (word = 1) on zmm0..15, operands in
 * zmm16/17: nothing but the multiply-accumulate pipes and their latency (16 chains cover it). */
__attribute__((target("avx512f,avx512vnni"), noinline)) static void peak_loop(long iters, int word)
{
#define PEAK_CLOBBER                                                                               \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",       \
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "cc"
#define PEAK16(op)                                                                                 \
    op " %%zmm17, %%zmm16, %%zmm0\n\t" op " %%zmm17, %%zmm16, %%zmm1\n\t"                        \
    op " %%zmm17, %%zmm16, %%zmm2\n\t" op " %%zmm17, %%zmm16, %%zmm3\n\t"                        \
    op " %%zmm17, %%zmm16, %%zmm4\n\t" op " %%zmm17, %%zmm16, %%zmm5\n\t"                        \
    op " %%zmm17, %%zmm16, %%zmm6\n\t" op " %%zmm17, %%zmm16, %%zmm7\n\t"                        \
    op " %%zmm17, %%zmm16, %%zmm8\n\t" op " %%zmm17, %%zmm16, %%zmm9\n\t"                        \
    op " %%zmm17, %%zmm16, %%zmm10\n\t" op " %%zmm17, %%zmm16, %%zmm11\n\t"                      \
    op " %%zmm17, %%zmm16, %%zmm12\n\t" op " %%zmm17, %%zmm16, %%zmm13\n\t"                      \
    op " %%zmm17, %%zmm16, %%zmm14\n\t" op " %%zmm17, %%zmm16, %%zmm15\n\t"
    if (word)
        __asm__ volatile("vpternlogd $0xFF, %%zmm16, %%zmm16, %%zmm16\n\t"
                         "vpternlogd $0xFF, %%zmm17, %%zmm17, %%zmm17\n\t"
                         "1:\n\t" PEAK16("vpdpwssd") "dec %0\n\t"
                         "jnz 1b"
                         : "+r"(iters)
                         :
                         : PEAK_CLOBBER);
    else
        __asm__ volatile("vpternlogd $0xFF, %%zmm16, %%zmm16, %%zmm16\n\t"
                         "vpternlogd $0xFF, %%zmm17, %%zmm17, %%zmm17\n\t"
                         "1:\n\t" PEAK16("vpdpbusd") "dec %0\n\t"
                         "jnz 1b"
                         : "+r"(iters)
                         :
                         : PEAK_CLOBBER);
#undef PEAK16
#undef PEAK_CLOBBER
}

/* GOPS (2 ops per MAC) of one thread issuing VPDPBUSD (word = 0) or VPDPWSSD zmm: the best of
 * runs of about a millisecond for a quarter of a second, so that a run without preemption is
 * found on a loaded machine. 0 when the CPU has no AVX-512 VNNI. */
static double peak_gops(int word)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_VNNI))
        return 0;
    const long iters = 500000;
    double best = 1e30, t_end = now() + 0.25;
    peak_loop(20 * iters, word); /* warm-up: let the clock ramp up */
    for (int r = 0; r < 5 || (now() < t_end && r < 10000); r++) {
        double t0 = now();
        peak_loop(iters, word);
        double dt = now() - t0;
        if (dt < best)
            best = dt;
    }
    const double macs = (double)iters * 16 * (word ? 32 : 64);
    return 2.0 * macs / best * 1e-9;
}
#else
static double peak_gops(int word)
{
    (void)word;
    return 0;
}
#endif

int main(int argc, char **argv)
{
    int reps = -1, no_ref = 0, quick = 0;
    double min_time = -1;
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
    /* 2048×2048: q/o projections; 5632×2048: gate/up; 32000×2048: lm_head; 2048×5632: down_proj
     * (A16 × W4 in the deployed graph), decoding (T = 1) and a 512-token prefill */
    static const int64_t shapes_full[][3] = {{1, 2048, 2048}, {512, 2048, 2048}, {512, 5632, 2048},
                                             {1, 32000, 2048}, {1, 2048, 5632}, {512, 2048, 5632}};
    static const int64_t shapes_quick[][3] = {{1, 256, 256}, {64, 256, 256}, {1, 2048, 5632},
                                              {512, 2048, 5632}};
    const int64_t (*shapes)[3] = quick ? shapes_quick : shapes_full;
    int nshapes = quick ? 4 : 6;
    /* defaults: 5 runs and 0.3 s per kernel; --quick: 3 runs and 0.1 s (explicit values win) */
    if (reps < 0)
        reps = quick ? 3 : 5;
    if (min_time < 0)
        min_time = quick ? 0.1 : 0.3;
    struct { int act, wfmt; const char *name; } fmts[] = {
        {QNPU__ACT_U8, QNPU__W_S4, "u8 x s4"},
        {QNPU__ACT_U8, QNPU__W_S8, "u8 x s8"},
        {QNPU__ACT_U16, QNPU__W_S8, "u16 x s8"},
        {QNPU__ACT_U16, QNPU__W_S4, "u16 x s4"},
    };
    printf("int GEMM micro-benchmark, one thread; GOPS = 2*T*N*K / best time\n");
    printf("implementations available: ref%s%s (dispatch picks %s)\n",
           qnpu__igemm_have(QNPU__IGEMM_AVX2) ? ", avx2" : "",
           qnpu__igemm_have(QNPU__IGEMM_VNNI) ? ", vnni" : "", impl_name[qnpu__igemm_best()]);
    double peak8 = peak_gops(0), peak16 = peak_gops(1);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (peak8 > 0)
        printf("VNNI peak, one thread, register-resident loop (1 MAC = 2 ops): VPDPBUSD zmm %.1f GOPS"
               " (%.2f G instr/s), VPDPWSSD zmm %.1f GOPS (%.2f G instr/s); %ld CPUs online\n",
               peak8, peak8 / 128.0, peak16, peak16 / 64.0, ncpu);
    else
        printf("VNNI peak: - (no AVX-512 VNNI)\n");
    if (quick && !no_ref)
        printf("--quick: the reference is skipped on shapes above 2e9 operations\n");
    printf("%-9s %-18s %10s %10s %10s %10s\n", "format", "T x N x K", "ref", "avx2", "vnni",
           "vnni/peak");
    int errors = 0;
    for (int s = 0; s < nshapes; s++) {
        int64_t T = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
            int act = fmts[f].act, wfmt = fmts[f].wfmt;
            /* lm_head shape: only the A16 × W8 row */
            if (N == 32000 && !(act == QNPU__ACT_U16 && wfmt == QNPU__W_S8))
                continue;
            /* down_proj shapes: only the A16 × W4 rows */
            if (K == 5632 && !(act == QNPU__ACT_U16 && wfmt == QNPU__W_S4))
                continue;
            /* otherwise the A16 rows only in decoding (their prefill is the down_proj shape) */
            if (N != 32000 && K != 5632 && act == QNPU__ACT_U16 && T > 1)
                continue;
            const int skip_ref = no_ref || (quick && 2.0 * (double)T * (double)N * (double)K > 2e9);
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
                if (!qnpu__igemm_have(impl) || (impl == QNPU__IGEMM_REF && skip_ref))
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
            double pk = act == QNPU__ACT_U16 || act == QNPU__ACT_S16 ? peak16 : peak8;
            if (pk > 0 && gops[QNPU__IGEMM_VNNI] > 0)
                printf(" %9.1f%%", 100.0 * gops[QNPU__IGEMM_VNNI] / pk);
            else
                printf(" %10s", "-");
            printf("\n");
            fflush(stdout);
            free(x), free(w), free(y0), free(y1), free(m0), free(sh), free(c), free(ws);
        }
    }
    return errors ? 1 : 0;
}
