/* machine.c — the peak microbenchmarks behind `quantnpu bench` (machine.h). */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "machine.h"

#if __has_include(<blis.h>)
#  include <blis.h>
#  define BLIS_ARCH_SKX_ID ((int)BLIS_ARCH_SKX)
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#  include <immintrin.h>
#  define HAVE_X86 1
#endif

int machine_pick_blis_arch(void)
{
#if defined(HAVE_X86) && defined(BLIS_ARCH_SKX_ID)
    if (getenv("BLIS_ARCH_TYPE"))
        return 0;
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    if (b != 0x68747541u || d != 0x69746e65u || c != 0x444d4163u) /* "AuthenticAMD" */
        return 0;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf)
        family += (a >> 20) & 0xff;
    __builtin_cpu_init();
    if (family < 0x1a || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl"))
        return 0;
    char id[16];
    snprintf(id, sizeof id, "%d", BLIS_ARCH_SKX_ID);
    return setenv("BLIS_ARCH_TYPE", id, 0) == 0;
#else
    return 0;
#endif
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct peak_arg {
    double seconds;
    uint64_t macs;
    int sink;
} peak_arg;

#ifdef HAVE_X86
/* 12 independent accumulator chains in registers hide the instruction's latency (enough for two
 * issues per cycle at a latency of 5); each VPDPBUSD zmm does 16 lanes × 4 u8·s8 products. */
__attribute__((target("avx512f,avx512vnni"))) static void *peak_vnni(void *v)
{
    peak_arg *a = v;
    __m512i x = _mm512_set1_epi8(3), w = _mm512_set1_epi8(-2);
    /* distinct starting values, so no two chains can be merged by the compiler */
    __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2);
    __m512i a3 = _mm512_set1_epi32(3), a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5);
    __m512i a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7), a8 = _mm512_set1_epi32(8);
    __m512i a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
    uint64_t iters = 0;
    double t0 = seconds_now();
    do {
        for (int r = 0; r < 1000; r++) {
#define STEP(acc) acc = _mm512_dpbusd_epi32(acc, x, w)
            STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
            STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
#undef STEP
        }
        iters += 1000;
    } while (seconds_now() - t0 < a->seconds);
    a->seconds = seconds_now() - t0;
    a->macs = iters * 12 * 64;
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                 _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
    uint32_t lanes[16], sum = 0; /* the lanes wrap; sum them unsigned (no signed overflow) */
    _mm512_storeu_si512((void *)lanes, s);
    for (int i = 0; i < 16; i++)
        sum += lanes[i];
    a->sink = (int)(sum & 1);
    return NULL;
}
#endif

double machine_int_peak_gops(int threads, double seconds, const char **what)
{
    *what = "none";
#ifdef HAVE_X86
    if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512f"))
        return 0;
    *what = "VPDPBUSD zmm";
    if (threads < 1)
        threads = 1;
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    peak_arg *arg = calloc((size_t)threads, sizeof *arg);
    double gops = 0;
    if (tid && arg) {
        int started = 0;
        for (int i = 0; i < threads; i++) {
            arg[i].seconds = seconds;
            if (i == 0 || pthread_create(&tid[i], NULL, peak_vnni, &arg[i]) == 0)
                started = i + 1;
        }
        peak_vnni(&arg[0]);
        for (int i = 1; i < started; i++)
            pthread_join(tid[i], NULL);
        for (int i = 0; i < started; i++)
            gops += 2.0 * (double)arg[i].macs / arg[i].seconds * 1e-9;
    }
    free(tid);
    free(arg);
    return gops;
#else
    (void)threads, (void)seconds;
    return 0;
#endif
}

typedef struct bw_arg {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_arg;

static void *read_part(void *v)
{
    bw_arg *a = v;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= a->n; i += 4) {
        s0 += a->p[i];
        s1 += a->p[i + 1];
        s2 += a->p[i + 2];
        s3 += a->p[i + 3];
    }
    a->sum = s0 + s1 + s2 + s3;
    return NULL;
}

double machine_read_gbs(int threads, size_t bytes, int reps)
{
    if (threads < 1)
        threads = 1;
    size_t n = bytes / sizeof(uint64_t);
    uint64_t *buf = malloc(n * sizeof *buf);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    bw_arg *arg = calloc((size_t)threads, sizeof *arg);
    double best = 0;
    if (buf && tid && arg) {
        for (size_t i = 0; i < n; i++)
            buf[i] = i;
        size_t per = n / (size_t)threads / 4 * 4;
        for (int r = 0; r < reps; r++) {
            int started = 1;
            double t0 = seconds_now();
            for (int i = 0; i < threads; i++)
                arg[i] = (bw_arg){buf + (size_t)i * per, per, 0};
            while (started < threads && pthread_create(&tid[started], NULL, read_part, &arg[started]) == 0)
                started++;
            for (int i = started; i < threads; i++) /* threads that could not start: read here */
                read_part(&arg[i]);
            read_part(&arg[0]);
            for (int i = 1; i < started; i++)
                pthread_join(tid[i], NULL);
            double gbs = (double)(per * (size_t)threads * sizeof *buf) / (seconds_now() - t0) * 1e-9;
            best = gbs > best ? gbs : best;
        }
    }
    free(buf);
    free(tid);
    free(arg);
    return best;
}
