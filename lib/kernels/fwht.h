/* fwht.h — the fast Walsh–Hadamard transform (FWHT), in place, unnormalized.
 *
 *     x (n,) -> x · H_n          n = 2^k, H_1 = [1], H_2k = [[H_k, H_k], [H_k, −H_k]]
 *
 * H_n is Sylvester's Hadamard matrix: H_n[i][j] = (−1)^popcount(i & j). It is symmetric, so
 * x·H_n = H_n·x, and H_n·H_n = n·I: applying the transform twice multiplies by n.
 *
 * The algorithm runs k stages h = 1, 2, 4, ..., n/2; stage h replaces every pair
 * (x[j], x[j+h]) with j & h == 0 by (x[j] + x[j+h], x[j] − x[j+h]). That order of stages and
 * that form of each butterfly define the float result; the AVX2 twin performs exactly the same
 * IEEE additions and subtractions (only grouped into vectors), so it is bit-identical to the
 * reference. Nothing is scaled: callers divide by sqrt(n) where they need an orthogonal map.
 *
 * n must be a power of two (n = 1 is the identity); other n are a caller bug and leave x
 * unchanged. */
#ifndef QNPU_KERNELS_FWHT_H
#define QNPU_KERNELS_FWHT_H

#include <stdint.h>

/* Plain scalar reference: x (n,) <- x · H_n. */
void qnpu__fwht_ref_f32(float *x, int64_t n);

/* The fastest available version, chosen at run time from the CPU features (AVX2 on x86-64,
 * otherwise the reference). Bit-identical to qnpu__fwht_ref_f32. */
void qnpu__fwht_f32(float *x, int64_t n);

/* 1 if the AVX2 version can run on this CPU (and was compiled in). */
int qnpu__fwht_have_avx2(void);
/* The AVX2 version; call only when qnpu__fwht_have_avx2() (otherwise it runs the reference). */
void qnpu__fwht_avx2_f32(float *x, int64_t n);

/* Integer transforms for the integer engine (FORMATS.md §3.9): exact as long as the result
 * fits, i.e. n · max|x| <= INT32_MAX (resp. INT64_MAX). The arithmetic is done modulo 2^32
 * (2^64) on unsigned values, so an out-of-range input wraps instead of being undefined. */
void qnpu__fwht_i32(int32_t *x, int64_t n);
void qnpu__fwht_i64(int64_t *x, int64_t n);

#endif
