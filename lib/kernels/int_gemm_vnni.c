/* int_gemm_vnni.c — AVX-512 VNNI twins of the integer GEMMs (int_gemm.h), bit-identical to
 * int_gemm_ref.c. Compiled for avx512f/bw/vl/vnni by function attribute only; the dispatcher
 * calls them only when __builtin_cpu_supports says so (qnpu__igemm_have).
 *
 * Scheme. A tile of TB activation rows × NB weight rows keeps TB·NB = 16 zmm accumulators of 16
 * int32 lanes. Every step loads TB activation vectors and NB weight vectors (row-major, along K)
 * and issues TB·NB multiply-accumulates:
 *   8-bit activations × int8 / int4 weights: VPDPBUSD (u8 × s8, four products summed and added
 *     to the int32 lane without intermediate saturation), 64 columns per step. int8 activations
 *     are moved to uint8 by x ^ 0x80 = x + 128 (OFF = −128 in int_gemm.h). int4 weights are
 *     widened in registers: VPMOVZXBW puts packed byte j in 16-bit word j, (t | t << 4) & 0x0F0F
 *     (one VPTERNLOGD) leaves column 2j in byte 2j and column 2j+1 in byte 2j+1, and a VPSHUFB
 *     table maps the nibble 0..15 to its signed value −8..7.
 *   16-bit activations × int8 weights: VPDPWSSD (s16 × s16 pairs into int32, no saturation),
 *     32 columns per step, weights sign-extended by VPMOVSXBW; uint16 codes are re-centred by
 *     x ^ 0x8000 = x − 32768 (OFF = 32768).
 *   16-bit activations × int4 weights (u16_s4): VPDPWSSD on weights sign-extended to int16 by
 *     shifts and activations permuted once per chunk; its own blocking, see its section below.
 * A K tail shorter than one step uses masked loads (masked-off bytes read as 0 and never fault),
 * so any K works without reading past a row.
 *
 * Exactness (bounds proved in docs/kernels.md):
 *   8-bit: every product satisfies |u·w| <= 255·128 = 32640 (int8 weights) or 255·8 = 2040
 *     (int4). K is cut into blocks of KB8 = 65536 (int8) or KB4 = 2^20 (int4) columns, so any
 *     partial sum of one block has |s| <= 65536·32640 = 2,139,095,040 (resp. 2^20·2040, the
 *     same number) < 2^31: the lanes and the int32 transposing reduction are exact. Each block's
 *     16 sums are then added to int64.
 *   16-bit: |x·w| <= 32768·128 = 2^22, a step adds two products to a lane, blocks of KB16 = 4096
 *     columns are 128 steps: |lane| <= 2^30. Lanes are widened to int64 before they are combined,
 *     except in a block of at most 511 columns, where every partial sum is below 511·2^22 < 2^31
 *     and the int32 reduction is exact.
 *   u16_s4: |x·w| <= 32768·8 = 2^18, blocks of 2048 columns: |any partial sum| <= 2^29.
 * Requantization (store_row) runs 8 lanes at a time with the integer steps of qnpu__requant's
 * hot path and falls back to the scalar function outside it, so the codes are the reference's.
 * x86-64 only (other targets, or -DQNPU_NO_SIMD: the names run the reference). */
#include <stddef.h>

#include "int_gemm.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(QNPU_NO_SIMD)

#include <immintrin.h>

#define VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define VNNI_INL static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni")))

#define KB8 (INT64_C(1) << 16)
#define KB4 (INT64_C(1) << 20)
#define KB16 (INT64_C(1) << 12)
/* Weight rows kept hot per pass over the activation rows (about a third of a 1 MiB L2). */
#define PANEL_BYTES (INT64_C(384) * 1024)

enum { K_B8 = 0, K_B4 = 1, K_W16 = 2 };

/* acc += VPDPBUSD(u, s) / VPDPWSSD(a, b), in place. The intrinsics are fine semantically, but GCC
 * 12 copies every accumulator through a fresh register (and spills some) on each iteration of
 * the tile loops; the one-instruction asm keeps each accumulator in its register. */
#define DPBUSD(acc, u8, s8) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8))
#define DPWSSD(acc, a, b) __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))

/* 16 int32 accumulators -> one vector whose lane j is the sum of the 16 lanes of a[j]. All
 * partial sums are sums of products of one block, so they are exact (see above). */
VNNI_INL __m512i reduce16_i32(const __m512i *a)
{
    __m512i t[8], u[4], v[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* per 128-bit lane: [a2i, a2i+1, a2i, a2i+1] */
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]),
                                _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* per 128-bit lane: [a4i, a4i+1, a4i+2, a4i+3] */
        u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                                _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* 128-bit lanes: u2i L0+L1, u2i L2+L3, u2i+1 L0+L1, L2+L3 */
        v[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

VNNI_INL void add_i32_to_i64(__m512i s, int64_t *a64)
{
    __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(s));
    __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(s, 1));
    _mm512_storeu_si512(a64, _mm512_add_epi64(_mm512_loadu_si512(a64), lo));
    _mm512_storeu_si512(a64 + 8, _mm512_add_epi64(_mm512_loadu_si512(a64 + 8), hi));
}

/* The same reduction with every lane widened to int64 first (16-bit kernels), added to a64. */
VNNI_INL void reduce16_i64_add(const __m512i *a, int64_t *a64)
{
    __m512i w[16], t[8], u[4], v[2];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        w[i] = _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(a[i])),
                                _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(a[i], 1)));
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* per 128-bit lane: [w2i, w2i+1] */
        t[i] = _mm512_add_epi64(_mm512_unpacklo_epi64(w[2 * i], w[2 * i + 1]),
                                _mm512_unpackhi_epi64(w[2 * i], w[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* lanes: (4i,4i+1) x2 partial, (4i+2,4i+3) x2 partial */
        u[i] = _mm512_add_epi64(_mm512_shuffle_i64x2(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_i64x2(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* lanes: (8i, 8i+1), (8i+2, 8i+3), ... totals */
        v[i] = _mm512_add_epi64(_mm512_shuffle_i64x2(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_i64x2(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    _mm512_storeu_si512(a64, _mm512_add_epi64(_mm512_loadu_si512(a64), v[0]));
    _mm512_storeu_si512(a64 + 8, _mm512_add_epi64(_mm512_loadu_si512(a64 + 8), v[1]));
}

/* 32 packed int4 bytes (64 columns) -> 64 int8 codes in column order. */
VNNI_INL __m512i decode_s4(__m256i p, __m512i lut, __m512i m0f)
{
    __m512i t = _mm512_cvtepu8_epi16(p); /* word j = byte j */
    /* imm 0xA8: (A | B) & C — bits 0..3 from t (column 2j), bits 8..11 from t << 4 (column 2j+1) */
    __m512i v = _mm512_ternarylogic_epi32(t, _mm512_slli_epi16(t, 4), m0f, 0xA8);
    return _mm512_shuffle_epi8(lut, v); /* nibble -> −8..7 */
}

/* One step of a tile at column k: TB·NB multiply-accumulates. `masked` (a constant) selects
 * the tail form, which reads only the `rem` columns left: masked-off activation lanes are 0
 * after the re-centring XOR too, so whatever the weight lanes hold (an int4 padding nibble)
 * contributes nothing. */
VNNI_INL void step(const int kind, const int tb, const int nb, const int masked, int64_t k,
                   int64_t rem, const char *const *xr, const char *const *wr, __m512i flip,
                   __m512i lut, __m512i m0f, __m512i *acc)
{
    __m512i xv[4];
    if (kind == K_W16) {
        const __mmask32 m = masked ? (__mmask32)(0xFFFFFFFFu >> (32 - rem)) : 0;
#pragma GCC unroll 4
        for (int t = 0; t < tb; t++)
            xv[t] = masked ? _mm512_maskz_mov_epi16(m, _mm512_xor_si512(
                                 _mm512_maskz_loadu_epi16(m, xr[t] + 2 * k), flip))
                           : _mm512_xor_si512(_mm512_loadu_si512(xr[t] + 2 * k), flip);
#pragma GCC unroll 16
        for (int o = 0; o < nb; o++) {
            __m256i w8 = masked ? _mm256_maskz_loadu_epi8(m, wr[o] + k)
                                : _mm256_loadu_si256((const __m256i *)(wr[o] + k));
            __m512i wv = _mm512_cvtepi8_epi16(w8);
#pragma GCC unroll 4
            for (int t = 0; t < tb; t++)
                DPWSSD(acc[t * nb + o], xv[t], wv);
        }
        return;
    }
    const __mmask64 m = masked ? (~(__mmask64)0) >> (64 - rem) : 0;
#pragma GCC unroll 4
    for (int t = 0; t < tb; t++)
        xv[t] = masked ? _mm512_maskz_mov_epi8(m, _mm512_xor_si512(
                             _mm512_maskz_loadu_epi8(m, xr[t] + k), flip))
                       : _mm512_xor_si512(_mm512_loadu_si512(xr[t] + k), flip);
#pragma GCC unroll 16
    for (int o = 0; o < nb; o++) {
        __m512i wv;
        if (kind == K_B4) {
            __m256i p;
            if (masked) {
                const int64_t nbytes = (rem + 1) / 2; /* <= 32 */
                p = _mm256_maskz_loadu_epi8((__mmask32)(0xFFFFFFFFu >> (32 - nbytes)), wr[o] + k / 2);
            } else {
                p = _mm256_loadu_si256((const __m256i *)(wr[o] + k / 2));
            }
            wv = decode_s4(p, lut, m0f);
        } else {
            wv = masked ? _mm512_maskz_loadu_epi8(m, wr[o] + k) : _mm512_loadu_si512(wr[o] + k);
        }
#pragma GCC unroll 4
        for (int t = 0; t < tb; t++)
            DPBUSD(acc[t * nb + o], xv[t], wv);
    }
}

/* One tile: a64[t*nb + o] += Σ_k (x_t[k] − OFF)·w_o[k] for t < tb, o < nb (tb·nb = 16), with
 * xr / wr the row pointers (bytes) and flip the XOR that re-centres the activation codes. */
VNNI_INL void tile(const int kind, const int tb, const int nb, int64_t K, const char *const *xr,
                   const char *const *wr, __m512i flip, int64_t *a64)
{
    const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5,
                                                             -4, -3, -2, -1));
    const __m512i m0f = _mm512_set1_epi16(0x0F0F);
    const int64_t KB = kind == K_B8 ? KB8 : kind == K_B4 ? KB4 : KB16;
    const int64_t S = kind == K_W16 ? 32 : 64; /* columns per step; KB is a multiple of it */
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const int64_t kend = K - k0 > KB ? k0 + KB : K;
        __m512i acc[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            acc[i] = _mm512_setzero_si512();
        int64_t k = k0;
        for (; k + S <= kend; k += S)
            step(kind, tb, nb, 0, k, S, xr, wr, flip, lut, m0f, acc);
        if (k < kend)
            step(kind, tb, nb, 1, k, kend - k, xr, wr, flip, lut, m0f, acc);
        /* a 16-bit block of at most 511 columns has |any partial sum| <= 511·2^22 < 2^31, so
         * it may use the cheaper int32 reduction too (short rows: attention heads) */
        if (kind == K_W16 && kend - k0 > 511)
            reduce16_i64_add(acc, a64);
        else
            add_i32_to_i64(reduce16_i32(acc), a64);
    }
}

/* Output row t, columns o0 .. o0 + nvalid, from the int64 sums v (c included). Requantization
 * (mode RNE) runs 8 lanes at a time with exactly the integer steps of qnpu__requant's hot path
 * (requant.c): p = acc·M0 by VPMULDQ, u = p + 2^62, q = (u + 2^(n−1) − 1 + (u >> n & 1)) >> n,
 * r = q − 2^(62−n), y = clamp(z + r). A group with any lane outside that path's domain (acc
 * beyond int32, M0 < 0, n outside [1, 61]) goes through the scalar qnpu__requant instead, as do
 * the raw and gemmlowp outputs, so the codes are those of the reference. */
VNNI_INL void store_row(const qnpu__igemm_out *out, int64_t t, int64_t o0, int64_t nvalid,
                        const int64_t *v)
{
    if (!out->y || out->mode != QNPU__RQ_RNE) {
        qnpu__igemm_store(out, t, o0, nvalid, v);
        return;
    }
    int32_t *y = out->y + t * out->ldy + o0;
    const int32_t *m0 = out->m0 + o0, *sh = out->shift + o0;
    const __m512i one = _mm512_set1_epi64(1), lo32 = _mm512_set1_epi64(INT32_MIN);
    const __m512i hi32 = _mm512_set1_epi64(INT32_MAX), bias = _mm512_set1_epi64(INT64_C(1) << 62);
    const __m512i n62 = _mm512_set1_epi64(62), n61 = _mm512_set1_epi64(61);
    const __m512i z = _mm512_set1_epi64(out->zy), qmin = _mm512_set1_epi64(out->qmin);
    const __m512i qmax = _mm512_set1_epi64(out->qmax), zero = _mm512_setzero_si512();
    for (int64_t i = 0; i < nvalid; i += 8) {
        const int64_t cnt = nvalid - i < 8 ? nvalid - i : 8;
        const __mmask8 m = (__mmask8)((1u << cnt) - 1);
        __m512i a = _mm512_maskz_loadu_epi64(m, v + i);
        __m512i mv = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(m, m0 + i));
        __m512i nv = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(m, sh + i));
        __mmask8 ok = _mm512_cmple_epi64_mask(a, hi32) & _mm512_cmpge_epi64_mask(a, lo32) &
                      _mm512_cmpge_epi64_mask(mv, zero) & _mm512_cmpge_epi64_mask(nv, one) &
                      _mm512_cmple_epi64_mask(nv, n61);
        if ((ok & m) != m) {
            for (int64_t j = i; j < i + cnt; j++)
                y[j] = qnpu__requant(v[j], m0[j], sh[j], out->zy, out->qmin, out->qmax);
            continue;
        }
        __m512i u = _mm512_add_epi64(_mm512_mul_epi32(a, mv), bias);
        __m512i hm1 = _mm512_sub_epi64(_mm512_sllv_epi64(one, _mm512_sub_epi64(nv, one)), one);
        __m512i odd = _mm512_and_si512(_mm512_srlv_epi64(u, nv), one);
        __m512i q = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_add_epi64(u, hm1), odd), nv);
        __m512i r = _mm512_sub_epi64(q, _mm512_sllv_epi64(one, _mm512_sub_epi64(n62, nv)));
        r = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(r, z), qmin), qmax);
        _mm256_mask_storeu_epi32(y + i, m, _mm512_cvtepi64_epi32(r));
    }
}

/* Rows t0 .. t0+tb of the output, weight rows oc .. oend, tiles of nb rows. The last tile of a
 * panel repeats its last valid weight row (computed, not stored), so no row is read past N. */
VNNI_INL void rows(const int kind, const int tb, const int nb, int64_t t0, int64_t oc, int64_t oend,
                   int64_t K, const char *x, int64_t ldxb, const char *w, int64_t ldw, __m512i flip,
                   const int64_t *c, const qnpu__igemm_out *out)
{
    const char *xr[4];
    for (int t = 0; t < 4; t++)
        xr[t] = x + (t0 + (t < tb ? t : 0)) * ldxb;
    for (int64_t o0 = oc; o0 < oend; o0 += nb) {
        const int64_t nvalid = oend - o0 < nb ? oend - o0 : nb;
        const char *wr[16];
        for (int o = 0; o < 16; o++)
            wr[o] = w + (o0 + (o < nvalid ? o : nvalid - 1)) * ldw;
        int64_t a64[16];
        for (int t = 0; t < tb; t++) /* the sums start at c */
            for (int o = 0; o < nb; o++)
                a64[t * nb + o] = c && o < nvalid ? c[o0 + o] : 0;
        tile(kind, tb, nb, K, xr, wr, flip, a64);
        for (int t = 0; t < tb; t++)
            store_row(out, t0 + t, o0, nvalid, a64 + t * nb);
    }
}

/* The whole product: panels of weight rows that stay in L2, and for each panel every activation
 * row in tiles of 4 (then 2, then 1) rows. ldxb is the activation row stride in bytes. */
VNNI_INL void drive(const int kind, int64_t T, int64_t N, int64_t K, const void *x, int64_t ldxb,
                    const void *w, int64_t ldw, __m512i flip, const int64_t *c,
                    const qnpu__igemm_out *out)
{
    if (T <= 0 || N <= 0)
        return;
    int64_t rowbytes = kind == K_B4 ? (K + 1) / 2 : K;
    int64_t nc = PANEL_BYTES / (rowbytes > 0 ? rowbytes : 1);
    nc = nc < 16 ? 16 : nc / 16 * 16;
    for (int64_t oc = 0; oc < N; oc += nc) {
        const int64_t oend = N - oc > nc ? oc + nc : N;
        int64_t t0 = 0;
        for (; t0 + 4 <= T; t0 += 4)
            rows(kind, 4, 4, t0, oc, oend, K, x, ldxb, w, ldw, flip, c, out);
        for (; t0 + 2 <= T; t0 += 2)
            rows(kind, 2, 8, t0, oc, oend, K, x, ldxb, w, ldw, flip, c, out);
        for (; t0 < T; t0++)
            rows(kind, 1, 16, t0, oc, oend, K, x, ldxb, w, ldw, flip, c, out);
    }
}

VNNI_FN void qnpu__igemm_u8_s8_vnni(int64_t T, int64_t N, int64_t K, const uint8_t *x, int64_t ldx,
                                    const int8_t *w, int64_t ldw, const int64_t *c,
                                    const qnpu__igemm_out *out)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_VNNI)) {
        qnpu__igemm_u8_s8_ref(T, N, K, x, ldx, w, ldw, c, out);
        return;
    }
    drive(K_B8, T, N, K, x, ldx, w, ldw, _mm512_setzero_si512(), c, out);
}

VNNI_FN void qnpu__igemm_s8_s8_vnni(int64_t T, int64_t N, int64_t K, const int8_t *x, int64_t ldx,
                                    const int8_t *w, int64_t ldw, const int64_t *c,
                                    const qnpu__igemm_out *out)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_VNNI)) {
        qnpu__igemm_s8_s8_ref(T, N, K, x, ldx, w, ldw, c, out);
        return;
    }
    drive(K_B8, T, N, K, x, ldx, w, ldw, _mm512_set1_epi8((char)0x80), c, out);
}

VNNI_FN void qnpu__igemm_u8_s4_vnni(int64_t T, int64_t N, int64_t K, const uint8_t *x, int64_t ldx,
                                    const uint8_t *w, int64_t ldw, const int64_t *c,
                                    const qnpu__igemm_out *out)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_VNNI)) {
        qnpu__igemm_u8_s4_ref(T, N, K, x, ldx, w, ldw, c, out);
        return;
    }
    drive(K_B4, T, N, K, x, ldx, w, ldw, _mm512_setzero_si512(), c, out);
}

VNNI_FN void qnpu__igemm_s8_s4_vnni(int64_t T, int64_t N, int64_t K, const int8_t *x, int64_t ldx,
                                    const uint8_t *w, int64_t ldw, const int64_t *c,
                                    const qnpu__igemm_out *out)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_VNNI)) {
        qnpu__igemm_s8_s4_ref(T, N, K, x, ldx, w, ldw, c, out);
        return;
    }
    drive(K_B4, T, N, K, x, ldx, w, ldw, _mm512_set1_epi8((char)0x80), c, out);
}

VNNI_FN void qnpu__igemm_u16_s8_vnni(int64_t T, int64_t N, int64_t K, const uint16_t *x, int64_t ldx,
                                     const int8_t *w, int64_t ldw, const int64_t *c,
                                     const qnpu__igemm_out *out)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_VNNI)) {
        qnpu__igemm_u16_s8_ref(T, N, K, x, ldx, w, ldw, c, out);
        return;
    }
    drive(K_W16, T, N, K, x, 2 * ldx, w, ldw, _mm512_set1_epi16((short)0x8000), c, out);
}

VNNI_FN void qnpu__igemm_s16_s8_vnni(int64_t T, int64_t N, int64_t K, const int16_t *x, int64_t ldx,
                                     const int8_t *w, int64_t ldw, const int64_t *c,
                                     const qnpu__igemm_out *out)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_VNNI)) {
        qnpu__igemm_s16_s8_ref(T, N, K, x, ldx, w, ldw, c, out);
        return;
    }
    drive(K_W16, T, N, K, x, 2 * ldx, w, ldw, _mm512_setzero_si512(), c, out);
}

/* ---- A16 × W4: uint16 activations × packed int4 weights (u16_s4) -----------------------------
 *
 * VPDPWSSD (s16 × s16 pairs into int32) on the activations re-centred to int16 (x ^ 0x8000 =
 * x − 32768, OFF = 32768, already folded into c) and the int4 weights sign-extended to int16 in
 * registers. A step covers 128 columns = 64 packed bytes = one zmm load of a weight row, read as
 * 32 words: word i holds columns 4i, 4i+1, 4i+2, 4i+3 in its nibbles 0..3 (bits 0-3 .. 12-15).
 * Nibble r goes to the top of the word with VPSLLW by 12 − 4r (nothing for r = 3) and comes back
 * sign-extended with VPSRAW by 12, so the four vectors
 *     V_r word i = w[4i + r]                                   r = 0..3, i = 0..31
 * cost 7 shifts and no shuffle per weight row and step. The activations are permuted to match
 * once per row and chunk, not per tile: u16s4_pack_x writes, per step of 128 columns,
 *     XA_r word i = x[4i + r] − 32768                          (0 past the end of the row)
 * (two VPERMT2W per 64 columns, then VSHUFI64X2 to join the halves) into a stack buffer. The dot
 * product of a step is then Σ_r VPDPWSSD(XA_r, V_r): every column once, in another order.
 *
 * Blocking: weight rows in panels (PANEL_BYTES, at most U16S4_NC rows); for each panel, the
 * activation rows in groups of 4 (then 2, then 1), and for each group K in chunks of
 * U16S4_KC = 2048 columns: the group's chunk is re-centred and permuted into the buffer
 * (4·2048·2 = 16 KiB of stack), then every tile of the panel (4×4, 2×8 or 1×16: 16 zmm int32
 * accumulators) runs over the chunk and adds its sums into the group's int64 partial results
 * (a64, 4·U16S4_NC·8 = 8 KiB of stack), which start at c and are requantized at the end.
 * A weight row tail (fewer than 64 bytes left) is read with a masked load: nothing past byte
 * ⌈K/2⌉ of a row is touched, and the padding nibble of an odd K meets a 0 activation.
 *
 * Exactness: the int32 block is the chunk, U16S4_KC = 2048 columns. Every product satisfies
 * |(x − 32768)·w| <= 32768·8 = 2^18. A lane, and every combination of lanes formed by the int32
 * transposing reduction (reduce16_i32), is a sum of distinct products of one chunk, so its
 * magnitude is at most 2048·2^18 = 2^29 < 2^31: exact. (Any chunk up to 8191 columns would do:
 * 8191·2^18 = 2,147,221,504 < 2^31 − 1; 2048 keeps the buffer small.) The chunk sums are added
 * in int64, so the result is the exact integer of the reference for every K. */

#define U16S4_KC INT64_C(2048)
#define U16S4_NC INT64_C(256)
#define U16S4_TB 4

/* VPERMT2W indices over the 64 words of (a, b): words 4i + r0 (i < 16) then 4i + r1. */
static const int16_t u16s4_idx[2][32] __attribute__((aligned(64))) = {
    {0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60,
     1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61},
    {2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 50, 54, 58, 62,
     3, 7, 11, 15, 19, 23, 27, 31, 35, 39, 43, 47, 51, 55, 59, 63},
};

/* 32 activation codes from x (columns c .. c+31 of a row of len columns), re-centred; columns at
 * or past len read as 0 (masked: nothing past the row is loaded). */
VNNI_INL __m512i u16s4_load_x(const uint16_t *x, int64_t c, int64_t len, __m512i flip)
{
    if (c + 32 <= len)
        return _mm512_xor_si512(_mm512_loadu_si512(x + c), flip);
    if (c >= len)
        return _mm512_setzero_si512();
    const __mmask32 m = (__mmask32)(0xFFFFFFFFu >> (32 - (len - c)));
    return _mm512_maskz_mov_epi16(m, _mm512_xor_si512(_mm512_maskz_loadu_epi16(m, x + c), flip));
}

/* Re-centre and permute columns 0 .. len of one activation row (len <= U16S4_KC) into dst:
 * dst[128s + 32r + i] = x[128s + 4i + r] − 32768, 0 past len; whole steps are written. */
VNNI_INL void u16s4_pack_x(const uint16_t *x, int64_t len, __m512i flip, int16_t *dst)
{
    const __m512i i01 = _mm512_load_si512(u16s4_idx[0]), i23 = _mm512_load_si512(u16s4_idx[1]);
    for (int64_t s = 0; s < len; s += 128) {
        __m512i x0 = u16s4_load_x(x, s, len, flip), x1 = u16s4_load_x(x, s + 32, len, flip);
        __m512i x2 = u16s4_load_x(x, s + 64, len, flip), x3 = u16s4_load_x(x, s + 96, len, flip);
        __m512i a01 = _mm512_permutex2var_epi16(x0, i01, x1); /* r0 | r1 of columns s .. s+63 */
        __m512i a23 = _mm512_permutex2var_epi16(x0, i23, x1);
        __m512i b01 = _mm512_permutex2var_epi16(x2, i01, x3); /* the same of s+64 .. s+127 */
        __m512i b23 = _mm512_permutex2var_epi16(x2, i23, x3);
        _mm512_store_si512(dst + s, _mm512_shuffle_i64x2(a01, b01, _MM_SHUFFLE(1, 0, 1, 0)));
        _mm512_store_si512(dst + s + 32, _mm512_shuffle_i64x2(a01, b01, _MM_SHUFFLE(3, 2, 3, 2)));
        _mm512_store_si512(dst + s + 64, _mm512_shuffle_i64x2(a23, b23, _MM_SHUFFLE(1, 0, 1, 0)));
        _mm512_store_si512(dst + s + 96, _mm512_shuffle_i64x2(a23, b23, _MM_SHUFFLE(3, 2, 3, 2)));
    }
}

/* Word i of raw (columns 4i .. 4i+3) -> its nibble r, sign-extended: V_r above. */
VNNI_INL __m512i u16s4_nibble(__m512i raw, const int r)
{
    return _mm512_srai_epi16(r == 3 ? raw : _mm512_slli_epi16(raw, (unsigned)(12 - 4 * r)), 12);
}

/* One step (128 columns, from column s of the chunk) of a tb × nb tile (tb·nb = 16). xp: the
 * packed activations of the group (row t at xp + t·U16S4_KC); wr: the weight rows at the chunk's
 * first byte. masked: only nbytes (< 64) bytes of each weight row are left. */
VNNI_INL void u16s4_step(const int tb, const int nb, const int masked, int64_t s, int64_t nbytes,
                         const int16_t *xp, const uint8_t *const *wr, __m512i *acc)
{
    const __mmask64 m = masked ? (~(__mmask64)0) >> (64 - nbytes) : 0;
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        __m512i xa[U16S4_TB];
#pragma GCC unroll 4
        for (int t = 0; t < tb; t++)
            xa[t] = _mm512_load_si512(xp + t * U16S4_KC + s + 32 * r);
#pragma GCC unroll 16
        for (int o = 0; o < nb; o++) {
            __m512i raw = masked ? _mm512_maskz_loadu_epi8(m, wr[o] + s / 2)
                                 : _mm512_loadu_si512(wr[o] + s / 2);
            __m512i v = u16s4_nibble(raw, r);
#pragma GCC unroll 4
            for (int t = 0; t < tb; t++)
                DPWSSD(acc[t * nb + o], xa[t], v);
        }
    }
}

/* A tile over the len columns of the current chunk: sums[t·nb + o] = Σ (x_t − 32768)·w_o, exact
 * in int32 (len <= U16S4_KC, see above). */
VNNI_INL __m512i u16s4_tile(const int tb, const int nb, int64_t len, const int16_t *xp,
                            const uint8_t *const *wr)
{
    __m512i acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        acc[i] = _mm512_setzero_si512();
    int64_t s = 0;
    for (; s + 128 <= len; s += 128)
        u16s4_step(tb, nb, 0, s, 64, xp, wr, acc);
    if (s < len)
        u16s4_step(tb, nb, 1, s, (len - s + 1) / 2, xp, wr, acc);
    return reduce16_i32(acc);
}

/* Activation rows t0 .. t0+tb against the weight rows oc .. oend of a panel (oend − oc <=
 * U16S4_NC). xp (U16S4_TB·U16S4_KC int16) and a64 (U16S4_TB·U16S4_NC) are the caller's stack
 * buffers. The last tile of the panel repeats its last valid weight row (computed, not kept). */
VNNI_INL void u16s4_rows(const int tb, const int nb, int64_t t0, int64_t oc, int64_t oend,
                         int64_t K, const uint16_t *x, int64_t ldx, const uint8_t *w, int64_t ldw,
                         __m512i flip, const int64_t *c, const qnpu__igemm_out *out, int16_t *xp,
                         int64_t *a64)
{
    const int64_t np = oend - oc;
    for (int t = 0; t < tb; t++) /* the sums start at c */
        for (int64_t i = 0; i < np; i++)
            a64[t * U16S4_NC + i] = c ? c[oc + i] : 0;
    for (int64_t k0 = 0; k0 < K; k0 += U16S4_KC) {
        const int64_t len = K - k0 < U16S4_KC ? K - k0 : U16S4_KC;
        for (int t = 0; t < tb; t++)
            u16s4_pack_x(x + (t0 + t) * ldx + k0, len, flip, xp + t * U16S4_KC);
        for (int64_t o0 = oc; o0 < oend; o0 += nb) {
            const int64_t nvalid = oend - o0 < nb ? oend - o0 : nb;
            const uint8_t *wr[16];
            for (int o = 0; o < nb; o++)
                wr[o] = w + (o0 + (o < nvalid ? o : nvalid - 1)) * ldw + k0 / 2;
            _Alignas(64) int32_t sums[16];
            _mm512_store_si512(sums, u16s4_tile(tb, nb, len, xp, wr));
            for (int t = 0; t < tb; t++)
                for (int64_t o = 0; o < nvalid; o++)
                    a64[t * U16S4_NC + (o0 - oc) + o] += sums[t * nb + o];
        }
    }
    for (int t = 0; t < tb; t++)
        store_row(out, t0 + t, oc, np, a64 + t * U16S4_NC);
}

VNNI_INL void u16s4_drive(int64_t T, int64_t N, int64_t K, const uint16_t *x, int64_t ldx,
                          const uint8_t *w, int64_t ldw, const int64_t *c,
                          const qnpu__igemm_out *out)
{
    if (T <= 0 || N <= 0)
        return;
    _Alignas(64) int16_t xp[U16S4_TB * U16S4_KC];
    int64_t a64[U16S4_TB * U16S4_NC];
    const __m512i flip = _mm512_set1_epi16((short)0x8000);
    const int64_t rowbytes = (K + 1) / 2;
    int64_t nc = PANEL_BYTES / (rowbytes > 0 ? rowbytes : 1);
    nc = nc > U16S4_NC ? U16S4_NC : nc < 16 ? 16 : nc / 16 * 16;
    for (int64_t oc = 0; oc < N; oc += nc) {
        const int64_t oend = N - oc > nc ? oc + nc : N;
        int64_t t0 = 0;
        for (; t0 + 4 <= T; t0 += 4)
            u16s4_rows(4, 4, t0, oc, oend, K, x, ldx, w, ldw, flip, c, out, xp, a64);
        for (; t0 + 2 <= T; t0 += 2)
            u16s4_rows(2, 8, t0, oc, oend, K, x, ldx, w, ldw, flip, c, out, xp, a64);
        for (; t0 < T; t0++)
            u16s4_rows(1, 16, t0, oc, oend, K, x, ldx, w, ldw, flip, c, out, xp, a64);
    }
}

VNNI_FN void qnpu__igemm_u16_s4_vnni(int64_t T, int64_t N, int64_t K, const uint16_t *x, int64_t ldx,
                                     const uint8_t *w, int64_t ldw, const int64_t *c,
                                     const qnpu__igemm_out *out)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_VNNI)) {
        qnpu__igemm_u16_s4_ref(T, N, K, x, ldx, w, ldw, c, out);
        return;
    }
    u16s4_drive(T, N, K, x, ldx, w, ldw, c, out);
}

#else /* not x86 with GCC/Clang: the names exist and run the reference */

#define FALLBACK(pair, xtype, wtype)                                                               \
    void qnpu__igemm_##pair##_vnni(int64_t T, int64_t N, int64_t K, const xtype *x, int64_t ldx,   \
                                   const wtype *w, int64_t ldw, const int64_t *c,                  \
                                   const qnpu__igemm_out *out)                                     \
    {                                                                                              \
        qnpu__igemm_##pair##_ref(T, N, K, x, ldx, w, ldw, c, out);                                 \
    }
FALLBACK(u8_s8, uint8_t, int8_t)
FALLBACK(s8_s8, int8_t, int8_t)
FALLBACK(u8_s4, uint8_t, uint8_t)
FALLBACK(s8_s4, int8_t, uint8_t)
FALLBACK(u16_s8, uint16_t, int8_t)
FALLBACK(s16_s8, int16_t, int8_t)
FALLBACK(u16_s4, uint16_t, uint8_t)

#endif
