/* int_gemm_ref.c — the plain scalar reference of every integer GEMM (int_gemm.h), the load-time
 * helpers (row sums, c, multipliers, int4 packing), the common output step and the run-time
 * dispatch. The SIMD twins live in int_gemm_avx2.c and int_gemm_vnni.c. */
#include <stddef.h>

#include "int_gemm.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(QNPU_NO_SIMD)
#  define QNPU__IGEMM_X86 1
#endif

int32_t qnpu__igemm_act_offset(int act)
{
    switch (act) {
    case QNPU__ACT_S8: return -128;
    case QNPU__ACT_U16: return 32768;
    default: return 0; /* u8, s16 */
    }
}

void qnpu__s4_pack_row(const int8_t *q, int64_t K, uint8_t *out)
{
    for (int64_t j = 0; 2 * j < K; j++) {
        unsigned lo = (unsigned)q[2 * j] & 0xF;
        unsigned hi = 2 * j + 1 < K ? (unsigned)q[2 * j + 1] & 0xF : 0;
        out[j] = (uint8_t)(lo | hi << 4);
    }
}

/* ---- precomputation ------------------------------------------------------------------------ */

void qnpu__igemm_rowsum_s8(int64_t N, int64_t K, const int8_t *w, int64_t ldw, int64_t *sum)
{
    for (int64_t o = 0; o < N; o++) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; k++)
            s += w[o * ldw + k];
        sum[o] = s;
    }
}

void qnpu__igemm_rowsum_s4(int64_t N, int64_t K, const uint8_t *w, int64_t ldw, int64_t *sum)
{
    for (int64_t o = 0; o < N; o++) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; k++)
            s += qnpu__s4_get(w + o * ldw, k);
        sum[o] = s;
    }
}

void qnpu__igemm_fold_c(int act, int64_t N, const int64_t *wsum, const int32_t *b_int, int32_t z_x,
                        int64_t *c)
{
    int64_t zeff = (int64_t)z_x - qnpu__igemm_act_offset(act);
    for (int64_t o = 0; o < N; o++)
        c[o] = (b_int ? b_int[o] : 0) - zeff * wsum[o];
}

int qnpu__igemm_multipliers(int64_t N, float s_x, const float *s_w, float s_y, int32_t *m0,
                            int32_t *shift)
{
    int bad = 0;
    for (int64_t o = 0; o < N; o++) {
        double M = (double)s_x * (double)s_w[o] / (double)s_y;
        int n;
        if (qnpu__quantize_multiplier(M, &m0[o], &n) != 0)
            bad = 1;
        shift[o] = n;
    }
    return bad ? -1 : 0;
}

/* ---- output ---------------------------------------------------------------------------------- */

void qnpu__igemm_store(const qnpu__igemm_out *out, int64_t t, int64_t o0, int64_t nvalid,
                       const int64_t *acc)
{
    if (!out->y) {
        int64_t *a = out->acc + t * out->ldacc + o0;
        for (int64_t i = 0; i < nvalid; i++)
            a[i] = acc[i];
        return;
    }
    int32_t *y = out->y + t * out->ldy + o0;
    const int32_t *m0 = out->m0 + o0, *sh = out->shift + o0;
    if (out->mode == QNPU__RQ_GEMMLOWP) {
        for (int64_t i = 0; i < nvalid; i++)
            y[i] = qnpu__requant_gemmlowp(acc[i], m0[i], sh[i], out->zy, out->qmin, out->qmax);
    } else {
        for (int64_t i = 0; i < nvalid; i++)
            y[i] = qnpu__requant_i(acc[i], m0[i], sh[i], out->zy, out->qmin, out->qmax);
    }
}

void qnpu__narrow_u8(const int32_t *y, int64_t n, uint8_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = (uint8_t)(y[i] < 0 ? 0 : y[i] > 255 ? 255 : y[i]);
}

void qnpu__narrow_s8(const int32_t *y, int64_t n, int8_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = (int8_t)(y[i] < -128 ? -128 : y[i] > 127 ? 127 : y[i]);
}

void qnpu__narrow_u16(const int32_t *y, int64_t n, uint16_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = (uint16_t)(y[i] < 0 ? 0 : y[i] > 65535 ? 65535 : y[i]);
}

void qnpu__narrow_s16(const int32_t *y, int64_t n, int16_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = (int16_t)(y[i] < -32768 ? -32768 : y[i] > 32767 ? 32767 : y[i]);
}

/* ---- the references ------------------------------------------------------------------------ */

/* One plain triple loop per format pair:
 *   X (T,K) @ W (N,K)ᵀ -> acc (T,N) = Σ_k (x[t][k] − OFF)·w[o][k] + c[o]   in int64, exact
 * then the common requantizing store. */
#define W_S8(row, k) ((int64_t)(row)[k])
#define W_S4(row, k) ((int64_t)qnpu__s4_get((row), (k)))

#define REF_KERNEL(pair, xtype, wtype, OFF, WGET)                                                  \
    void qnpu__igemm_##pair##_ref(int64_t T, int64_t N, int64_t K, const xtype *x, int64_t ldx,    \
                                  const wtype *w, int64_t ldw, const int64_t *c,                   \
                                  const qnpu__igemm_out *out)                                      \
    {                                                                                              \
        for (int64_t t = 0; t < T; t++) {                                                          \
            const xtype *xr = x + t * ldx;                                                         \
            for (int64_t o = 0; o < N; o++) {                                                      \
                const wtype *wr = w + o * ldw;                                                     \
                int64_t acc = c ? c[o] : 0;                                                        \
                for (int64_t k = 0; k < K; k++)                                                    \
                    acc += ((int64_t)xr[k] - (OFF)) * WGET(wr, k);                                 \
                qnpu__igemm_store(out, t, o, 1, &acc);                                             \
            }                                                                                      \
        }                                                                                          \
    }

REF_KERNEL(u8_s8, uint8_t, int8_t, 0, W_S8)
REF_KERNEL(u8_s4, uint8_t, uint8_t, 0, W_S4)
REF_KERNEL(s8_s8, int8_t, int8_t, -128, W_S8)
REF_KERNEL(s8_s4, int8_t, uint8_t, -128, W_S4)
REF_KERNEL(u16_s8, uint16_t, int8_t, 32768, W_S8)
REF_KERNEL(s16_s8, int16_t, int8_t, 0, W_S8)
REF_KERNEL(u16_s4, uint16_t, uint8_t, 32768, W_S4)

/* ---- dispatch -------------------------------------------------------------------------------- */

int qnpu__igemm_have(int impl)
{
    switch (impl) {
    case QNPU__IGEMM_REF: return 1;
#ifdef QNPU__IGEMM_X86
    case QNPU__IGEMM_AVX2: return __builtin_cpu_supports("avx2") ? 1 : 0;
    case QNPU__IGEMM_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    default: return 0;
    }
}

int qnpu__igemm_best(void)
{
    if (qnpu__igemm_have(QNPU__IGEMM_VNNI))
        return QNPU__IGEMM_VNNI;
    if (qnpu__igemm_have(QNPU__IGEMM_AVX2))
        return QNPU__IGEMM_AVX2;
    return QNPU__IGEMM_REF;
}

#define DISPATCH(pair, xtype, wtype)                                                               \
    void qnpu__igemm_##pair(int64_t T, int64_t N, int64_t K, const xtype *x, int64_t ldx,          \
                            const wtype *w, int64_t ldw, const int64_t *c,                         \
                            const qnpu__igemm_out *out)                                            \
    {                                                                                              \
        switch (qnpu__igemm_best()) {                                                              \
        case QNPU__IGEMM_VNNI: qnpu__igemm_##pair##_vnni(T, N, K, x, ldx, w, ldw, c, out); break;  \
        case QNPU__IGEMM_AVX2: qnpu__igemm_##pair##_avx2(T, N, K, x, ldx, w, ldw, c, out); break;  \
        default: qnpu__igemm_##pair##_ref(T, N, K, x, ldx, w, ldw, c, out); break;                 \
        }                                                                                          \
    }

DISPATCH(u8_s8, uint8_t, int8_t)
DISPATCH(u8_s4, uint8_t, uint8_t)
DISPATCH(s8_s8, int8_t, int8_t)
DISPATCH(s8_s4, int8_t, uint8_t)
DISPATCH(u16_s8, uint16_t, int8_t)
DISPATCH(s16_s8, int16_t, int8_t)
DISPATCH(u16_s4, uint16_t, uint8_t)

int qnpu__igemm(int impl, int act, int wfmt, int64_t T, int64_t N, int64_t K, const void *x,
                int64_t ldx, const void *w, int64_t ldw, const int64_t *c,
                const qnpu__igemm_out *out)
{
    if (impl < 0)
        impl = qnpu__igemm_best();
    if (impl != QNPU__IGEMM_REF && impl != QNPU__IGEMM_AVX2 && impl != QNPU__IGEMM_VNNI)
        return -1;
    if (wfmt == QNPU__W_S8) {
        switch (act) {
        case QNPU__ACT_U8: {
            void (*f)(int64_t, int64_t, int64_t, const uint8_t *, int64_t, const int8_t *, int64_t,
                      const int64_t *, const qnpu__igemm_out *) = impl == QNPU__IGEMM_VNNI
                ? qnpu__igemm_u8_s8_vnni : impl == QNPU__IGEMM_AVX2 ? qnpu__igemm_u8_s8_avx2
                : qnpu__igemm_u8_s8_ref;
            f(T, N, K, x, ldx, w, ldw, c, out);
            return 0;
        }
        case QNPU__ACT_S8: {
            void (*f)(int64_t, int64_t, int64_t, const int8_t *, int64_t, const int8_t *, int64_t,
                      const int64_t *, const qnpu__igemm_out *) = impl == QNPU__IGEMM_VNNI
                ? qnpu__igemm_s8_s8_vnni : impl == QNPU__IGEMM_AVX2 ? qnpu__igemm_s8_s8_avx2
                : qnpu__igemm_s8_s8_ref;
            f(T, N, K, x, ldx, w, ldw, c, out);
            return 0;
        }
        case QNPU__ACT_U16: {
            void (*f)(int64_t, int64_t, int64_t, const uint16_t *, int64_t, const int8_t *, int64_t,
                      const int64_t *, const qnpu__igemm_out *) = impl == QNPU__IGEMM_VNNI
                ? qnpu__igemm_u16_s8_vnni : impl == QNPU__IGEMM_AVX2 ? qnpu__igemm_u16_s8_avx2
                : qnpu__igemm_u16_s8_ref;
            f(T, N, K, x, ldx, w, ldw, c, out);
            return 0;
        }
        case QNPU__ACT_S16: {
            void (*f)(int64_t, int64_t, int64_t, const int16_t *, int64_t, const int8_t *, int64_t,
                      const int64_t *, const qnpu__igemm_out *) = impl == QNPU__IGEMM_VNNI
                ? qnpu__igemm_s16_s8_vnni : impl == QNPU__IGEMM_AVX2 ? qnpu__igemm_s16_s8_avx2
                : qnpu__igemm_s16_s8_ref;
            f(T, N, K, x, ldx, w, ldw, c, out);
            return 0;
        }
        default: return -1;
        }
    }
    if (wfmt == QNPU__W_S4) {
        switch (act) {
        case QNPU__ACT_U8: {
            void (*f)(int64_t, int64_t, int64_t, const uint8_t *, int64_t, const uint8_t *, int64_t,
                      const int64_t *, const qnpu__igemm_out *) = impl == QNPU__IGEMM_VNNI
                ? qnpu__igemm_u8_s4_vnni : impl == QNPU__IGEMM_AVX2 ? qnpu__igemm_u8_s4_avx2
                : qnpu__igemm_u8_s4_ref;
            f(T, N, K, x, ldx, w, ldw, c, out);
            return 0;
        }
        case QNPU__ACT_S8: {
            void (*f)(int64_t, int64_t, int64_t, const int8_t *, int64_t, const uint8_t *, int64_t,
                      const int64_t *, const qnpu__igemm_out *) = impl == QNPU__IGEMM_VNNI
                ? qnpu__igemm_s8_s4_vnni : impl == QNPU__IGEMM_AVX2 ? qnpu__igemm_s8_s4_avx2
                : qnpu__igemm_s8_s4_ref;
            f(T, N, K, x, ldx, w, ldw, c, out);
            return 0;
        }
        case QNPU__ACT_U16: {
            void (*f)(int64_t, int64_t, int64_t, const uint16_t *, int64_t, const uint8_t *, int64_t,
                      const int64_t *, const qnpu__igemm_out *) = impl == QNPU__IGEMM_VNNI
                ? qnpu__igemm_u16_s4_vnni : impl == QNPU__IGEMM_AVX2 ? qnpu__igemm_u16_s4_avx2
                : qnpu__igemm_u16_s4_ref;
            f(T, N, K, x, ldx, w, ldw, c, out);
            return 0;
        }
        default: return -1;
        }
    }
    return -1;
}
