/* fwht.c — fast Walsh–Hadamard transform: scalar reference, AVX2 twin, integer versions.
 * See fwht.h for the definition and the exactness contract. */
#include <stddef.h>
#include <stdint.h>

#include "fwht.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#  define QNPU__FWHT_X86 1
#  include <immintrin.h>
#endif

static int is_pow2(int64_t n)
{
    return n >= 1 && (n & (n - 1)) == 0;
}

/* x (n,) -> x · H_n, stages h = 1, 2, ..., n/2; butterfly (a, b) -> (a + b, a − b). */
void qnpu__fwht_ref_f32(float *x, int64_t n)
{
    if (!is_pow2(n))
        return;
    for (int64_t h = 1; h < n; h *= 2)
        for (int64_t i = 0; i < n; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

#ifdef QNPU__FWHT_X86

/* The three smallest stages (h = 1, 2, 4) act inside one group of 8 floats, so they are done
 * in a register. For a stage of distance h inside the register, let s = v with each element
 * swapped with its partner at distance h. Then
 *     v + s  holds a + b in both partners (IEEE addition is commutative, so b + a == a + b),
 *     s − v  holds a − b in the upper partner (the element whose partner is below it),
 * and a blend takes the sum in the lower partner and the difference in the upper one. These
 * are exactly the operations of the reference butterfly, so the result is bit-identical. */
__attribute__((target("avx2"))) static __m256 fwht8_stages(__m256 v)
{
    __m256 s;
    /* h = 1: partners (0,1) (2,3) ...; upper partners are the odd lanes (blend mask 0xAA) */
    s = _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1));
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xAA);
    /* h = 2: partners (0,2) (1,3) in each 128-bit half; upper partners lanes 2,3,6,7 (0xCC) */
    s = _mm256_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2));
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xCC);
    /* h = 4: partners are the two 128-bit halves; upper partner is the high half (0xF0) */
    s = _mm256_permute2f128_ps(v, v, 0x01);
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xF0);
    return v;
}

__attribute__((target("avx2"))) void qnpu__fwht_avx2_f32(float *x, int64_t n)
{
    if (!is_pow2(n))
        return;
    if (n < 8) {
        qnpu__fwht_ref_f32(x, n);
        return;
    }
    /* stages 1, 2, 4: each group of 8 is independent of the others for these stages */
    for (int64_t i = 0; i < n; i += 8)
        _mm256_storeu_ps(x + i, fwht8_stages(_mm256_loadu_ps(x + i)));
    /* stages h >= 8: the butterfly pairs 8 consecutive j with 8 consecutive j + h */
    for (int64_t h = 8; h < n; h *= 2)
        for (int64_t i = 0; i < n; i += 2 * h)
            for (int64_t j = i; j < i + h; j += 8) {
                __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
                _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
                _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
            }
}

int qnpu__fwht_have_avx2(void)
{
    return __builtin_cpu_supports("avx2") ? 1 : 0;
}

#else

void qnpu__fwht_avx2_f32(float *x, int64_t n)
{
    qnpu__fwht_ref_f32(x, n);
}

int qnpu__fwht_have_avx2(void)
{
    return 0;
}

#endif

void qnpu__fwht_f32(float *x, int64_t n)
{
    if (n >= 8 && qnpu__fwht_have_avx2())
        qnpu__fwht_avx2_f32(x, n);
    else
        qnpu__fwht_ref_f32(x, n);
}

/* Integer versions: the same butterflies on unsigned copies (two's-complement wrap-around is
 * well defined for unsigned types; the conversion back is the usual modular one). */
void qnpu__fwht_i32(int32_t *x, int64_t n)
{
    if (!is_pow2(n))
        return;
    for (int64_t h = 1; h < n; h *= 2)
        for (int64_t i = 0; i < n; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                uint32_t a = (uint32_t)x[j], b = (uint32_t)x[j + h];
                x[j] = (int32_t)(a + b);
                x[j + h] = (int32_t)(a - b);
            }
}

void qnpu__fwht_i64(int64_t *x, int64_t n)
{
    if (!is_pow2(n))
        return;
    for (int64_t h = 1; h < n; h *= 2)
        for (int64_t i = 0; i < n; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                uint64_t a = (uint64_t)x[j], b = (uint64_t)x[j + h];
                x[j] = (int64_t)(a + b);
                x[j + h] = (int64_t)(a - b);
            }
}
