/* bench_util.h — helpers shared by the benchmark programs (bench_float, bench_train): error exits
 * and integer options, clocks, the load of other processes during a phase, a seeded generator, a
 * median, and the BLIS sgemm timer behind the "fraction of sgemm peak" figures.
 *
 * Header only, every function static inline: the Makefile builds each bench .c file into its own
 * program, so a shared .c file would become a program of its own. Needs the library's
 * internal.h (qnpu__sgemm, qnpu__calloc) on the include path (-Ilib, as the bench rule gives). */
#ifndef QNPU_BENCH_UTIL_H
#define QNPU_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* The program's name in messages: each program defines BENCH_NAME before including this. */
#ifndef BENCH_NAME
#define BENCH_NAME "bench"
#endif

/* Report a library failure and exit. */
static inline void die_status(qnpu_status s, const char *what)
{
    fprintf(stderr, BENCH_NAME ": %s: %s: %s\n", what, qnpu_status_string(s), qnpu_last_error());
    exit(1);
}

/* *out = the integer v of option opt in [lo, hi]; 0 (with a message) when it is not one. */
static inline int parse_int(const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, BENCH_NAME ": %s needs an integer in [%ld, %ld]\n", opt, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

/* Monotonic wall clock in seconds. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Process CPU time (user + system) in seconds: CPU time / wall time over a phase is the
 * number of cores actually kept busy, which shows how many threads really ran. */
static inline double cpu_time(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* Machine-wide busy CPU seconds (user, nice, system, irq, softirq, steal) from /proc/stat;
 * minus this process's CPU time it gives the load of everything else during a phase: on a
 * small shared machine another process's work slows the OpenMP barriers of every sgemm, and
 * a run with a high "other" load is not a clean measurement. -1 if unavailable. */
static inline double machine_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    unsigned long long u = 0, n = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0, st = 0;
    int k = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &sy, &id, &io, &irq,
                   &sirq, &st);
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (k < 4 || hz <= 0)
        return -1;
    return (double)(u + n + sy + irq + sirq + st) / (double)hz;
}

typedef struct phase {
    double wall0, cpu0, busy0;
    double own, other; /* cores kept busy by this process, by everything else */
} phase;

static inline void phase_start(phase *p)
{
    p->busy0 = machine_busy();
    p->cpu0 = cpu_time();
    p->wall0 = now();
}

static inline void phase_end(phase *p)
{
    double wall = now() - p->wall0, cpu = cpu_time() - p->cpu0, busy = machine_busy();
    p->own = cpu / wall;
    p->other = busy >= 0 && p->busy0 >= 0 ? (busy - p->busy0 - cpu) / wall : -1;
    if (p->other < 0 && busy >= 0)
        p->other = 0; /* tick granularity */
}

/* splitmix64 on *state. */
static inline uint64_t bench_rng(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* p[0..n) uniform in [-1, 1) (24-bit resolution) from *state. */
static inline void bench_fill_random(uint64_t *state, float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(bench_rng(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n), n >= 1 (v is not reordered). */
static inline double median(const double *v, int n)
{
    double *c = malloc((size_t)n * sizeof *c);
    if (!c)
        return v[0];
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, bench_cmp_double);
    double r = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return r;
}

/* Best wall time in seconds of `reps` calls of qnpu__sgemm (the library's own BLIS wrapper)
 * C (m × n) = A (m × k) · op(B) on `threads` threads, B stored [n][k] when transb (a weight),
 * else [k][n]; A and B uniform in [-1, 1) from *rng (A first, then B), one untimed warm-up call
 * first. ph (may be NULL) receives the load during the timed calls. The buffers are 64-byte
 * aligned (the library's allocator, as the engine's are). Exits on out of memory. */
static inline double sgemm_best_s(int threads, int64_t m, int64_t n, int64_t k, int transb, int reps,
                                  uint64_t *rng, phase *ph)
{
    size_t a_n = (size_t)(m * k), b_n = (size_t)(n * k), c_n = (size_t)(m * n);
    float *a = qnpu__calloc(a_n, sizeof(float)), *b = qnpu__calloc(b_n, sizeof(float)),
          *c = qnpu__calloc(c_n, sizeof(float));
    if (!a || !b || !c) {
        fprintf(stderr, "bench: out of memory for a %lld x %lld x %lld sgemm\n", (long long)m,
                (long long)n, (long long)k);
        exit(1);
    }
    bench_fill_random(rng, a, a_n);
    bench_fill_random(rng, b, b_n);
    int64_t ldb = transb ? k : n;
    qnpu__sgemm(threads, m, n, k, 1.0f, a, k, b, ldb, transb, 0.0f, c, n); /* warm */
    double best = 1e30;
    phase local;
    phase_start(ph ? ph : &local);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        qnpu__sgemm(threads, m, n, k, 1.0f, a, k, b, ldb, transb, 0.0f, c, n);
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    phase_end(ph ? ph : &local);
    qnpu__free(a);
    qnpu__free(b);
    qnpu__free(c);
    return best;
}

#endif
