/* int_gemm_avx2.c — AVX2 twins of the integer GEMMs (int_gemm.h), bit-identical to
 * int_gemm_ref.c. Compiled for avx2 by function attribute only; the dispatcher calls them only
 * when __builtin_cpu_supports("avx2").
 *
 * Scheme. A tile of TB activation rows × NB weight rows keeps TB·NB = 8 ymm accumulators of 8
 * int32 lanes; every step loads TB activation and NB weight vectors along K.
 *   8-bit activations × int8 weights: VPMADDUBSW would saturate (2·255·127 > 32767), so both
 *     operands are widened to int16 (VPMOVZXBW / VPMOVSXBW) and multiplied by VPMADDWD, which is
 *     exact here: a pair sum is at most 2·255·128 = 65280 in magnitude, and VPMADDWD's one
 *     overflow (both pairs −32768·−32768) cannot occur. 16 columns per step. int8 activations
 *     are moved to uint8 by x ^ 0x80 (OFF = −128).
 *   8-bit activations × int4 weights: VPMADDUBSW is exact because |w| <= 8: a pair sum is at most
 *     2·255·8 = 4080 < 32767, and the sum of two such results (8160) is added with VPADDW without
 *     overflow, then VPMADDWD by 1 widens to int32. 64 columns (32 packed bytes) per step: the
 *     low and high nibbles are masked out, mapped to −8..7 by VPSHUFB, and interleaved by
 *     VPUNPCKLBW/VPUNPCKHBW. Those work per 128-bit lane, so the weight vectors hold columns
 *     [0..15 | 32..47] and [16..31 | 48..63]; the activations are loaded in the same order by
 *     VPERM2I128, and the dot product does not depend on the order of its terms.
 *   16-bit activations × int8 weights: weights widened by VPMOVSXBW, VPMADDWD: a pair sum is at
 *     most 2·32768·128 = 2^23 in magnitude. uint16 codes are re-centred by x ^ 0x8000. 16 columns.
 *   16-bit activations × int4 weights (u16_s4): VPMADDWD on weights sign-extended to int16 by
 *     shifts and activations permuted once per chunk; its own blocking, see its section below.
 * The K tail (shorter than a step) is copied into zero-padded buffers on the stack, the
 * activations already re-centred so that padding lanes are 0 whatever the weights hold.
 *
 * Exactness (docs/kernels.md): K is cut into blocks in which any partial sum of products is
 * below 2^31 in magnitude, so the int32 lanes and the transposing int32 reduction at the end of
 * a block are exact; block sums are added in int64.
 *   int8 weights: |product| <= 32640, KB = 65536: 65536·32640 = 2,139,095,040 < 2^31.
 *   int4 weights: |product| <= 2040,  KB = 2^20:  2^20·2040 = 2,139,095,040 < 2^31.
 *   16-bit acts:  |product| <= 2^22,  KB = 496:   496·2^22 = 2,080,374,784 < 2^31.
 *   u16 × s4:     |product| <= 2^18,  KB = 2048:  2048·2^18 = 2^29 (u16_s4 section below).
 * Requantization (store_row) runs 4 lanes at a time with the integer steps of qnpu__requant's
 * hot path and falls back to the scalar function outside it, so the codes are the reference's.
 * x86-64 only (other targets, or -DQNPU_NO_SIMD: the names run the reference). */
#include <stddef.h>
#include <string.h>

#include "int_gemm.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(QNPU_NO_SIMD)

#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx2")))
#define AVX2_INL static inline __attribute__((always_inline, target("avx2")))

enum { K_B8 = 0, K_B4 = 1, K_W16 = 2 };

#define KB8 (INT64_C(1) << 16)
#define KB4 (INT64_C(1) << 20)
#define KB16 INT64_C(496)
#define PANEL_BYTES (INT64_C(384) * 1024)

/* 8 int32 accumulators -> one vector whose lane j is the sum of the lanes of a[j] (exact within
 * a block, see above). */
AVX2_INL __m256i reduce8_i32(const __m256i *a)
{
    __m256i t[4], u[2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* per 128-bit lane: [a2i, a2i+1, a2i, a2i+1] */
        t[i] = _mm256_add_epi32(_mm256_unpacklo_epi32(a[2 * i], a[2 * i + 1]),
                                _mm256_unpackhi_epi32(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* per 128-bit lane: [a4i, a4i+1, a4i+2, a4i+3] */
        u[i] = _mm256_add_epi32(_mm256_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                                _mm256_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(u[0], u[1], 0x20),
                            _mm256_permute2x128_si256(u[0], u[1], 0x31));
}

AVX2_INL void add_i32_to_i64(__m256i s, int64_t *a64)
{
    __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(s));
    __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(s, 1));
    _mm256_storeu_si256((__m256i *)a64, _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)a64), lo));
    _mm256_storeu_si256((__m256i *)(a64 + 4),
                        _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(a64 + 4)), hi));
}

/* One step at column k (bytes of x: k for 8-bit, 2k for 16-bit; of w: k, or k/2 for int4). */
AVX2_INL void step(const int kind, const int tb, const int nb, int64_t k, const char *const *xr,
                   const char *const *wr, __m256i flip, __m256i *acc)
{
    if (kind == K_B8) {
        __m256i xv[2];
#pragma GCC unroll 2
        for (int t = 0; t < tb; t++)
            xv[t] = _mm256_cvtepu8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(xr[t] + k)),
                                                       _mm256_castsi256_si128(flip)));
#pragma GCC unroll 8
        for (int o = 0; o < nb; o++) {
            __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr[o] + k)));
#pragma GCC unroll 2
            for (int t = 0; t < tb; t++)
                acc[t * nb + o] = _mm256_add_epi32(acc[t * nb + o], _mm256_madd_epi16(xv[t], wv));
        }
    } else if (kind == K_W16) {
        __m256i xv[2];
#pragma GCC unroll 2
        for (int t = 0; t < tb; t++)
            xv[t] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xr[t] + 2 * k)), flip);
#pragma GCC unroll 8
        for (int o = 0; o < nb; o++) {
            __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr[o] + k)));
#pragma GCC unroll 2
            for (int t = 0; t < tb; t++)
                acc[t * nb + o] = _mm256_add_epi32(acc[t * nb + o], _mm256_madd_epi16(xv[t], wv));
        }
    } else {
        const __m256i m0f = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
        const __m256i lut = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1,
                                             0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
        __m256i xa[2], xb[2];
#pragma GCC unroll 2
        for (int t = 0; t < tb; t++) {
            __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xr[t] + k)), flip);
            __m256i x1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xr[t] + k + 32)), flip);
            xa[t] = _mm256_permute2x128_si256(x0, x1, 0x20); /* columns 0..15 | 32..47  */
            xb[t] = _mm256_permute2x128_si256(x0, x1, 0x31); /* columns 16..31 | 48..63 */
        }
#pragma GCC unroll 8
        for (int o = 0; o < nb; o++) {
            __m256i p = _mm256_loadu_si256((const __m256i *)(wr[o] + k / 2));
            __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(p, m0f));
            __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(p, 4), m0f));
            __m256i wa = _mm256_unpacklo_epi8(lo, hi), wb = _mm256_unpackhi_epi8(lo, hi);
#pragma GCC unroll 2
            for (int t = 0; t < tb; t++) {
                __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(xa[t], wa),
                                             _mm256_maddubs_epi16(xb[t], wb));
                acc[t * nb + o] = _mm256_add_epi32(acc[t * nb + o], _mm256_madd_epi16(s, ones));
            }
        }
    }
}

/* One tile: a64[t*nb + o] += Σ_k (x_t[k] − OFF)·w_o[k], t < tb, o < nb, tb·nb = 8. */
AVX2_INL void tile(const int kind, const int tb, const int nb, int64_t K, const char *const *xr,
                   const char *const *wr, __m256i flip, int64_t *a64)
{
    const int64_t KB = kind == K_B8 ? KB8 : kind == K_B4 ? KB4 : KB16;
    const int64_t S = kind == K_B4 ? 64 : 16; /* columns per step; KB is a multiple of it */
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const int64_t kend = K - k0 > KB ? k0 + KB : K;
        __m256i acc[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            acc[i] = _mm256_setzero_si256();
        int64_t k = k0;
        for (; k + S <= kend; k += S)
            step(kind, tb, nb, k, xr, wr, flip, acc);
        if (k < kend) {
            /* tail: re-centred activations and weights, zero-padded to one step */
            const int64_t rem = kend - k;
            _Alignas(32) char xbuf[2][128];
            _Alignas(32) char wbuf[8][64];
            const char *xp[2], *wp[8];
            memset(xbuf, 0, sizeof xbuf);
            memset(wbuf, 0, sizeof wbuf);
            for (int t = 0; t < tb; t++) {
                if (kind == K_W16) {
                    uint16_t f = (uint16_t)_mm256_extract_epi16(flip, 0);
                    for (int64_t i = 0; i < rem; i++) {
                        uint16_t v;
                        memcpy(&v, xr[t] + 2 * (k + i), 2);
                        v ^= f;
                        memcpy(xbuf[t] + 2 * i, &v, 2);
                    }
                } else {
                    unsigned char f = (unsigned char)_mm256_extract_epi8(flip, 0);
                    for (int64_t i = 0; i < rem; i++)
                        xbuf[t][i] = (char)((unsigned char)xr[t][k + i] ^ f);
                }
                xp[t] = xbuf[t];
            }
            for (int o = 0; o < nb; o++) {
                if (kind == K_B4)
                    memcpy(wbuf[o], wr[o] + k / 2, (size_t)(rem + 1) / 2);
                else
                    memcpy(wbuf[o], wr[o] + k, (size_t)rem);
                wp[o] = wbuf[o];
            }
            step(kind, tb, nb, 0, xp, wp, _mm256_setzero_si256(), acc);
        }
        add_i32_to_i64(reduce8_i32(acc), a64);
    }
}

/* Output row t, columns o0 .. o0 + nvalid, from the int64 sums v (c included). Requantization
 * (mode RNE) runs 4 lanes at a time with exactly the integer steps of qnpu__requant's hot path
 * (requant.c): p = acc·M0 by VPMULDQ, u = p + 2^62, q = (u + 2^(n−1) − 1 + (u >> n & 1)) >> n,
 * r = q − 2^(62−n), y = clamp(z + r). Groups with a lane outside that path's domain, a partial
 * group, and the raw and gemmlowp outputs go through the scalar code. */
AVX2_INL void store_row(const qnpu__igemm_out *out, int64_t t, int64_t o0, int64_t nvalid,
                        const int64_t *v)
{
    if (!out->y || out->mode != QNPU__RQ_RNE) {
        qnpu__igemm_store(out, t, o0, nvalid, v);
        return;
    }
    int32_t *y = out->y + t * out->ldy + o0;
    const int32_t *m0 = out->m0 + o0, *sh = out->shift + o0;
    const __m256i one = _mm256_set1_epi64x(1), lo32 = _mm256_set1_epi64x(INT32_MIN);
    const __m256i hi32 = _mm256_set1_epi64x(INT32_MAX), bias = _mm256_set1_epi64x(INT64_C(1) << 62);
    const __m256i n62 = _mm256_set1_epi64x(62), n61 = _mm256_set1_epi64x(61);
    const __m256i z = _mm256_set1_epi64x(out->zy), qmin = _mm256_set1_epi64x(out->qmin);
    const __m256i qmax = _mm256_set1_epi64x(out->qmax), zero = _mm256_setzero_si256();
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
    int64_t i = 0;
    for (; i + 4 <= nvalid; i += 4) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(v + i));
        __m256i mv = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(m0 + i)));
        __m256i nv = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(sh + i)));
        __m256i bad = _mm256_or_si256(_mm256_or_si256(_mm256_cmpgt_epi64(a, hi32), _mm256_cmpgt_epi64(lo32, a)),
                                      _mm256_or_si256(_mm256_cmpgt_epi64(zero, mv),
                                                      _mm256_or_si256(_mm256_cmpgt_epi64(one, nv),
                                                                      _mm256_cmpgt_epi64(nv, n61))));
        if (!_mm256_testz_si256(bad, bad)) {
            for (int64_t j = i; j < i + 4; j++)
                y[j] = qnpu__requant(v[j], m0[j], sh[j], out->zy, out->qmin, out->qmax);
            continue;
        }
        __m256i u = _mm256_add_epi64(_mm256_mul_epi32(a, mv), bias);
        __m256i hm1 = _mm256_sub_epi64(_mm256_sllv_epi64(one, _mm256_sub_epi64(nv, one)), one);
        __m256i odd = _mm256_and_si256(_mm256_srlv_epi64(u, nv), one);
        __m256i q = _mm256_srlv_epi64(_mm256_add_epi64(_mm256_add_epi64(u, hm1), odd), nv);
        __m256i r = _mm256_add_epi64(_mm256_sub_epi64(q, _mm256_sllv_epi64(one, _mm256_sub_epi64(n62, nv))), z);
        r = _mm256_blendv_epi8(r, qmin, _mm256_cmpgt_epi64(qmin, r));
        r = _mm256_blendv_epi8(r, qmax, _mm256_cmpgt_epi64(r, qmax));
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(r, pick)));
    }
    for (; i < nvalid; i++)
        y[i] = qnpu__requant(v[i], m0[i], sh[i], out->zy, out->qmin, out->qmax);
}

/* Output rows t0 .. t0+tb against weight rows oc .. oend in tiles of nb rows; the last tile of
 * a panel repeats its last valid weight row (computed, not stored). */
AVX2_INL void rows(const int kind, const int tb, const int nb, int64_t t0, int64_t oc, int64_t oend,
                   int64_t K, const char *x, int64_t ldxb, const char *w, int64_t ldw, __m256i flip,
                   const int64_t *c, const qnpu__igemm_out *out)
{
    const char *xr[2];
    for (int t = 0; t < 2; t++)
        xr[t] = x + (t0 + (t < tb ? t : 0)) * ldxb;
    for (int64_t o0 = oc; o0 < oend; o0 += nb) {
        const int64_t nvalid = oend - o0 < nb ? oend - o0 : nb;
        const char *wr[8];
        for (int o = 0; o < 8; o++)
            wr[o] = w + (o0 + (o < nvalid ? o : nvalid - 1)) * ldw;
        int64_t a64[8];
        for (int t = 0; t < tb; t++) /* the sums start at c */
            for (int o = 0; o < nb; o++)
                a64[t * nb + o] = c && o < nvalid ? c[o0 + o] : 0;
        tile(kind, tb, nb, K, xr, wr, flip, a64);
        for (int t = 0; t < tb; t++)
            store_row(out, t0 + t, o0, nvalid, a64 + t * nb);
    }
}

AVX2_INL void drive(const int kind, int64_t T, int64_t N, int64_t K, const void *x, int64_t ldxb,
                    const void *w, int64_t ldw, __m256i flip, const int64_t *c,
                    const qnpu__igemm_out *out)
{
    if (T <= 0 || N <= 0)
        return;
    int64_t rowbytes = kind == K_B4 ? (K + 1) / 2 : K;
    int64_t nc = PANEL_BYTES / (rowbytes > 0 ? rowbytes : 1);
    nc = nc < 8 ? 8 : nc / 8 * 8;
    for (int64_t oc = 0; oc < N; oc += nc) {
        const int64_t oend = N - oc > nc ? oc + nc : N;
        int64_t t0 = 0;
        for (; t0 + 2 <= T; t0 += 2)
            rows(kind, 2, 4, t0, oc, oend, K, x, ldxb, w, ldw, flip, c, out);
        for (; t0 < T; t0++)
            rows(kind, 1, 8, t0, oc, oend, K, x, ldxb, w, ldw, flip, c, out);
    }
}

#define AVX2_KERNEL(pair, xtype, wtype, kind, xbytes, flipv)                                       \
    AVX2_FN void qnpu__igemm_##pair##_avx2(int64_t T, int64_t N, int64_t K, const xtype *x,        \
                                           int64_t ldx, const wtype *w, int64_t ldw,               \
                                           const int64_t *c, const qnpu__igemm_out *out)           \
    {                                                                                              \
        if (!qnpu__igemm_have(QNPU__IGEMM_AVX2)) {                                                 \
            qnpu__igemm_##pair##_ref(T, N, K, x, ldx, w, ldw, c, out);                             \
            return;                                                                                \
        }                                                                                          \
        drive(kind, T, N, K, x, (xbytes) * ldx, w, ldw, flipv, c, out);                            \
    }

AVX2_KERNEL(u8_s8, uint8_t, int8_t, K_B8, 1, _mm256_setzero_si256())
AVX2_KERNEL(s8_s8, int8_t, int8_t, K_B8, 1, _mm256_set1_epi8((char)0x80))
AVX2_KERNEL(u8_s4, uint8_t, uint8_t, K_B4, 1, _mm256_setzero_si256())
AVX2_KERNEL(s8_s4, int8_t, uint8_t, K_B4, 1, _mm256_set1_epi8((char)0x80))
AVX2_KERNEL(u16_s8, uint16_t, int8_t, K_W16, 2, _mm256_set1_epi16((short)0x8000))
AVX2_KERNEL(s16_s8, int16_t, int8_t, K_W16, 2, _mm256_setzero_si256())

/* ---- A16 × W4: uint16 activations × packed int4 weights (u16_s4) -----------------------------
 *
 * VPMADDWD on the activations re-centred to int16 (x ^ 0x8000 = x − 32768; OFF = 32768 is folded
 * into c) and the int4 weights sign-extended to int16 in registers; VPADDD into int32 lanes.
 * A step covers 64 columns = 32 packed bytes = one ymm load of a weight row, read as 16 words:
 * word i holds columns 4i .. 4i+3 in its nibbles 0..3. VPSLLW by 12 − 4r (none for r = 3) then
 * VPSRAW by 12 gives
 *     V_r word i = w[4i + r]                                   r = 0..3, i = 0..15
 * (7 shifts, no shuffle, per weight row and step). The activations are permuted to match once
 * per row and chunk (u16s4_pack_x: VPSHUFB pairs words r and r+4 of each 128-bit lane, then a
 * VPERM2I128 / VPUNPCK[LH]DQ / VPUNPCK[LH]QDQ transpose of the dwords), into a stack buffer:
 *     XA_r word i = x[4i + r] − 32768                          (0 past the end of the row)
 * and a step is Σ_r VPMADDWD(XA_r, V_r): every column once, in another order. VPMADDWD is exact
 * here: a pair sum is at most 2·2^18 = 2^19 in magnitude, and the weight word is >= −8, so its
 * one overflow case (−32768·−32768 twice) cannot occur.
 *
 * Blocking: weight rows in panels (PANEL_BYTES, at most U16S4_NC rows); per panel, activation
 * rows in groups of 4 (tile 4×2), then 2 (2×4), then 1 (1×8): 8 ymm int32 accumulators; K in
 * chunks of U16S4_KC = 2048 columns, the group's chunk re-centred and permuted once into the
 * buffer (4·2048·2 = 16 KiB of stack) and run against every tile of the panel; each tile's
 * chunk sums are added to the group's int64 results (a64, 4·U16S4_NC·8 = 8 KiB), which start at
 * c. A weight row tail (fewer than 32 bytes) is copied into a zeroed stack buffer, so nothing
 * past byte ⌈K/2⌉ of a row is read; its padding nibble (odd K) meets a 0 activation.
 *
 * Exactness: the int32 block is the chunk, 2048 columns. |(x − 32768)·w| <= 32768·8 = 2^18, and
 * every lane or combination of lanes in reduce8_i32 is a sum of distinct products of one chunk,
 * so it is at most 2048·2^18 = 2^29 < 2^31 in magnitude (a chunk of up to 8191 columns would
 * still be exact). Chunk sums are added in int64: the reference's integer for every K. */

#define U16S4_KC INT64_C(2048)
#define U16S4_NC INT64_C(256)
#define U16S4_TB 4

/* acc += p, in place. With the intrinsic GCC 12 re-associates the 4·tb·nb additions of a step
 * into trees of products and spills half the accumulators; the one-instruction asm keeps each
 * accumulator in its register. */
#define ADD_I32(acc, p) __asm__("vpaddd %1, %0, %0" : "+x"(acc) : "x"(p))

/* 16 activation codes, columns c .. c+15 of a row of len columns, re-centred; 0 at or past len
 * (a partial vector is assembled on the stack: nothing past the row is read). */
AVX2_INL __m256i u16s4_load_x(const uint16_t *x, int64_t c, int64_t len, __m256i flip)
{
    if (c + 16 <= len)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + c)), flip);
    _Alignas(32) uint16_t tmp[16] = {0};
    for (int64_t i = 0; c + i < len; i++)
        tmp[i] = (uint16_t)(x[c + i] ^ 0x8000u);
    return _mm256_load_si256((const __m256i *)tmp);
}

/* Re-centre and permute columns 0 .. len of one activation row (len <= U16S4_KC) into dst:
 * dst[64s + 16r + i] = x[64s + 4i + r] − 32768, 0 past len; whole steps are written. */
AVX2_INL void u16s4_pack_x(const uint16_t *x, int64_t len, __m256i flip, int16_t *dst)
{
    /* per 128-bit lane: dword r <- words r and r + 4 (columns 8m + r, 8m + 4 + r of block m) */
    const __m256i pair = _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,
                                          0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
    for (int64_t s = 0; s < len; s += 64) {
        __m256i y[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) /* lanes of y[q]: blocks 2q, 2q + 1 (8 columns each) */
            y[q] = _mm256_shuffle_epi8(u16s4_load_x(x, s + 16 * q, len, flip), pair);
        __m256i p = _mm256_permute2x128_si256(y[0], y[2], 0x20); /* blocks 0 | 4 */
        __m256i q = _mm256_permute2x128_si256(y[0], y[2], 0x31); /* 1 | 5 */
        __m256i r = _mm256_permute2x128_si256(y[1], y[3], 0x20); /* 2 | 6 */
        __m256i u = _mm256_permute2x128_si256(y[1], y[3], 0x31); /* 3 | 7 */
        __m256i a = _mm256_unpacklo_epi32(p, q), b = _mm256_unpackhi_epi32(p, q);
        __m256i c = _mm256_unpacklo_epi32(r, u), d = _mm256_unpackhi_epi32(r, u);
        _mm256_store_si256((__m256i *)(dst + s), _mm256_unpacklo_epi64(a, c));      /* pairs 0 */
        _mm256_store_si256((__m256i *)(dst + s + 16), _mm256_unpackhi_epi64(a, c)); /* pairs 1 */
        _mm256_store_si256((__m256i *)(dst + s + 32), _mm256_unpacklo_epi64(b, d)); /* pairs 2 */
        _mm256_store_si256((__m256i *)(dst + s + 48), _mm256_unpackhi_epi64(b, d)); /* pairs 3 */
    }
}

/* One step (64 columns) of a tb × nb tile (tb·nb = 8): activations at column s of the packed
 * rows (row t at xp + t·U16S4_KC), weights at byte wb of the rows wr. */
AVX2_INL void u16s4_step(const int tb, const int nb, int64_t s, const int16_t *xp,
                         const uint8_t *const *wr, int64_t wb, __m256i *acc)
{
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        __m256i xa[U16S4_TB];
#pragma GCC unroll 4
        for (int t = 0; t < tb; t++)
            xa[t] = _mm256_load_si256((const __m256i *)(xp + t * U16S4_KC + s + 16 * r));
#pragma GCC unroll 8
        for (int o = 0; o < nb; o++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(wr[o] + wb));
            __m256i v = _mm256_srai_epi16(r == 3 ? raw : _mm256_slli_epi16(raw, 12 - 4 * r), 12);
#pragma GCC unroll 4
            for (int t = 0; t < tb; t++)
                ADD_I32(acc[t * nb + o], _mm256_madd_epi16(xa[t], v));
        }
    }
}

/* A tile over the len columns of the current chunk (wr at the chunk's first byte): lane j of the
 * result is Σ (x_t − 32768)·w_o for j = t·nb + o, exact in int32 (len <= U16S4_KC). */
AVX2_INL __m256i u16s4_tile(const int tb, const int nb, int64_t len, const int16_t *xp,
                            const uint8_t *const *wr)
{
    __m256i acc[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        acc[i] = _mm256_setzero_si256();
    int64_t s = 0;
    for (; s + 64 <= len; s += 64)
        u16s4_step(tb, nb, s, xp, wr, s / 2, acc);
    if (s < len) {
        /* the weight tail, zero-padded (the activations past len are 0 already) */
        _Alignas(32) uint8_t wbuf[8][32];
        const uint8_t *wp[8];
        const size_t nbytes = (size_t)(len - s + 1) / 2;
        memset(wbuf, 0, sizeof wbuf);
        for (int o = 0; o < nb; o++) {
            memcpy(wbuf[o], wr[o] + s / 2, nbytes);
            wp[o] = wbuf[o];
        }
        u16s4_step(tb, nb, s, xp, wp, 0, acc);
    }
    return reduce8_i32(acc);
}

/* Activation rows t0 .. t0+tb against the weight rows oc .. oend of a panel (oend − oc <=
 * U16S4_NC); xp and a64 are the caller's stack buffers. The last tile of the panel repeats its
 * last valid weight row (computed, not kept). */
AVX2_INL void u16s4_rows(const int tb, const int nb, int64_t t0, int64_t oc, int64_t oend,
                         int64_t K, const uint16_t *x, int64_t ldx, const uint8_t *w, int64_t ldw,
                         __m256i flip, const int64_t *c, const qnpu__igemm_out *out, int16_t *xp,
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
            const uint8_t *wr[8];
            for (int o = 0; o < nb; o++)
                wr[o] = w + (o0 + (o < nvalid ? o : nvalid - 1)) * ldw + k0 / 2;
            _Alignas(32) int32_t sums[8];
            _mm256_store_si256((__m256i *)sums, u16s4_tile(tb, nb, len, xp, wr));
            for (int t = 0; t < tb; t++)
                for (int64_t o = 0; o < nvalid; o++)
                    a64[t * U16S4_NC + (o0 - oc) + o] += sums[t * nb + o];
        }
    }
    for (int t = 0; t < tb; t++)
        store_row(out, t0 + t, oc, np, a64 + t * U16S4_NC);
}

AVX2_INL void u16s4_drive(int64_t T, int64_t N, int64_t K, const uint16_t *x, int64_t ldx,
                          const uint8_t *w, int64_t ldw, const int64_t *c,
                          const qnpu__igemm_out *out)
{
    if (T <= 0 || N <= 0)
        return;
    _Alignas(32) int16_t xp[U16S4_TB * U16S4_KC];
    int64_t a64[U16S4_TB * U16S4_NC];
    const __m256i flip = _mm256_set1_epi16((short)0x8000);
    const int64_t rowbytes = (K + 1) / 2;
    int64_t nc = PANEL_BYTES / (rowbytes > 0 ? rowbytes : 1);
    nc = nc > U16S4_NC ? U16S4_NC : nc < 8 ? 8 : nc / 8 * 8;
    for (int64_t oc = 0; oc < N; oc += nc) {
        const int64_t oend = N - oc > nc ? oc + nc : N;
        int64_t t0 = 0;
        for (; t0 + 4 <= T; t0 += 4)
            u16s4_rows(4, 2, t0, oc, oend, K, x, ldx, w, ldw, flip, c, out, xp, a64);
        for (; t0 + 2 <= T; t0 += 2)
            u16s4_rows(2, 4, t0, oc, oend, K, x, ldx, w, ldw, flip, c, out, xp, a64);
        for (; t0 < T; t0++)
            u16s4_rows(1, 8, t0, oc, oend, K, x, ldx, w, ldw, flip, c, out, xp, a64);
    }
}

AVX2_FN void qnpu__igemm_u16_s4_avx2(int64_t T, int64_t N, int64_t K, const uint16_t *x, int64_t ldx,
                                     const uint8_t *w, int64_t ldw, const int64_t *c,
                                     const qnpu__igemm_out *out)
{
    if (!qnpu__igemm_have(QNPU__IGEMM_AVX2)) {
        qnpu__igemm_u16_s4_ref(T, N, K, x, ldx, w, ldw, c, out);
        return;
    }
    u16s4_drive(T, N, K, x, ldx, w, ldw, c, out);
}

#else /* not x86 with GCC/Clang: the names exist and run the reference */

#define FALLBACK(pair, xtype, wtype)                                                               \
    void qnpu__igemm_##pair##_avx2(int64_t T, int64_t N, int64_t K, const xtype *x, int64_t ldx,   \
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
