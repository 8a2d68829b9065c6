/* fq.c — observer-form fake-quant over a vector: scalar reference and AVX2 twin (see fq.h). */
#include <math.h>

#include "fq.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QNPU_HAVE_X86 1
#endif

static inline float clampf(float v, float lo, float hi)
{
    v = v > lo ? v : lo; /* NaN -> lo */
    return v < hi ? v : hi;
}

void qnpu__fq_ref_f32(const float *x, float *y, size_t n, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    float inv = 1.0f / s, fz = (float)z, lo = (float)qmin, hi = (float)qmax;
    for (size_t i = 0; i < n; i++) {
        float q = clampf(rintf(x[i] * inv) + fz, lo, hi);
        y[i] = (q - fz) * s;
    }
}

#ifdef QNPU_HAVE_X86
__attribute__((target("avx2"))) void qnpu__fq_avx2_f32(const float *x, float *y, size_t n, float s,
                                                        int32_t z, int32_t qmin, int32_t qmax)
{
    float inv = 1.0f / s, fz = (float)z;
    __m256 vinv = _mm256_set1_ps(inv), vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(fz);
    __m256 lo = _mm256_set1_ps((float)qmin), hi = _mm256_set1_ps((float)qmax);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
        v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_add_ps(v, vz);
        v = _mm256_max_ps(v, lo); /* vmaxps returns the second operand when the first is NaN */
        v = _mm256_min_ps(v, hi);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(v, vz), vs));
    }
    qnpu__fq_ref_f32(x + i, y + i, n - i, s, z, qmin, qmax);
}

int qnpu__fq_have_avx2(void)
{
    return __builtin_cpu_supports("avx2") ? 1 : 0;
}
#else
void qnpu__fq_avx2_f32(const float *x, float *y, size_t n, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    qnpu__fq_ref_f32(x, y, n, s, z, qmin, qmax);
}

int qnpu__fq_have_avx2(void)
{
    return 0;
}
#endif

void qnpu__fq_f32(const float *x, float *y, size_t n, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    if (n >= 8 && qnpu__fq_have_avx2())
        qnpu__fq_avx2_f32(x, y, n, s, z, qmin, qmax);
    else
        qnpu__fq_ref_f32(x, y, n, s, z, qmin, qmax);
}
