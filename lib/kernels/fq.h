/* fq.h — the observer-form fake-quant of METHOD.md §2.3 over a vector:
 *
 *     q = clamp(rne(x · (1/s)) + z, qmin, qmax),   y = (q − z) · s
 *
 * The reference works in float32: rne via rintf, then + z, then the clamp, then (q − z)·s. Adding
 * z in float32 is exact while |rne(x/s)| < 2^24; beyond that the value is far outside any
 * [qmin, qmax] of at most 16 bits and clamps the same way. NaN clamps to qmin, ±Inf to the
 * bound. The AVX2 twin performs the same IEEE operations eight lanes at a time
 * (vroundps with round-to-nearest-even, vaddps, vmaxps/vminps ordered so NaN yields qmin), so
 * it is bit-identical to the reference. */
#ifndef QNPU_KERNELS_FQ_H
#define QNPU_KERNELS_FQ_H

#include <stddef.h>
#include <stdint.h>

/* Plain scalar reference. y may equal x. */
void qnpu__fq_ref_f32(const float *x, float *y, size_t n, float s, int32_t z, int32_t qmin, int32_t qmax);
/* AVX2 version; call only when qnpu__fq_have_avx2(). */
void qnpu__fq_avx2_f32(const float *x, float *y, size_t n, float s, int32_t z, int32_t qmin,
                       int32_t qmax);
int qnpu__fq_have_avx2(void);
/* The fastest available version (bit-identical to the reference). */
void qnpu__fq_f32(const float *x, float *y, size_t n, float s, int32_t z, int32_t qmin, int32_t qmax);

#endif
