/* int_gemm.h — integer GEMM / GEMV for linear layers and attention products (FORMATS.md §3.2,
 * §3.8, §3.10). Exact semantics, bounds and the proofs are in docs/kernels.md.
 *
 *     X (T, K) codes  ·  W (N, K)ᵀ codes  ->  Y (T, N)
 *
 *     acc[t][o] = Σ_k (q_x[t][k] − OFF) · q_w[o][k] + c[o]          exact, in int64
 *     y[t][o]   = clamp(z_y + rshift_rne(acc[t][o] · M0[o], n[o]), qmin, qmax)
 *
 * OFF is a constant of the activation format (qnpu__igemm_act_offset): 0 for uint8 and int16,
 * 32768 for uint16 (the codes are re-centred to int16 for VPMADDWD/VPDPWSSD, §3.10) and −128 for
 * int8 (the codes are moved to uint8 for VPDPBUSD). It is folded into c together with the
 * activation zero point and the integer bias by qnpu__igemm_fold_c:
 *
 *     c[o] = b_int[o] − (z_x − OFF) · Σ_k q_w[o][k]     so that   acc = Σ_k (q_x − z_x)·q_w + b_int
 *
 * Formats (the name of a kernel is qnpu__igemm_<activation>_<weight>[_<impl>]):
 *   activations  u8   uint8 codes, x[t*ldx + k]                           (A8, asymmetric)
 *                s8   int8 codes                                           (attention, symmetric)
 *                u16  uint16 codes                                         (A16, e.g. lm_head.in)
 *                s16  int16 codes                                          (A16 already centred)
 *   weights      s8   int8 codes, w[o*ldw + k], ldw in bytes >= K
 *                s4   packed int4: row o starts at byte o*ldw (ldw >= ⌈K/2⌉); column k is the low
 *                     nibble of byte k/2 when k is even, the high nibble when odd; 4-bit two's
 *                     complement, [−8, 7] — the packing of the .qnpu file (docs/formats.md). A
 *                     padding nibble (odd K) is never read into the result.
 * The attention product Q·Kᵀ is s16_s8 or u16_s8 with W = the int8 K cache ([ctx][d_h], ldw = the
 * cache row stride).
 *
 * Accumulation: the reference accumulates in int64 directly. The SIMD kernels accumulate in int32
 * lanes over K blocks short enough that no lane can overflow (the block lengths and proofs are
 * beside each kernel and in docs/kernels.md), and add each block into int64. The sum is the same
 * integer, so every implementation is bit-identical to the reference, for every K.
 *
 * Implementations: _ref (plain C), _avx2, _vnni (AVX-512 F/BW/VL + VNNI), and the dispatching
 * name without a suffix, which picks VNNI > AVX2 > ref from the CPU at run time. Calling an _avx2
 * or _vnni function directly on a CPU without the feature (or on a non-x86 build) runs the
 * reference instead; qnpu__igemm_have tells which ones are real. -DQNPU_NO_SIMD compiles the
 * references only. Kernels do not allocate, keep no
 * state and never start threads: a caller splits T or N across threads by offsetting x / w / c /
 * the output pointers and the per-row m0 / shift (see qnpu__igemm_out). Shapes with T, N or K
 * <= 0 write nothing (K = 0 gives acc = c).
 */
#ifndef QNPU_KERNELS_INT_GEMM_H
#define QNPU_KERNELS_INT_GEMM_H

#include <stdint.h>

#include "requant.h"

/* ---- formats ------------------------------------------------------------------------------ */

enum { QNPU__ACT_U8 = 0, QNPU__ACT_S8 = 1, QNPU__ACT_U16 = 2, QNPU__ACT_S16 = 3 };
enum { QNPU__W_S8 = 0, QNPU__W_S4 = 1 };
enum { QNPU__IGEMM_REF = 0, QNPU__IGEMM_AVX2 = 1, QNPU__IGEMM_VNNI = 2 };

/* OFF of an activation format: 0 (u8, s16), −128 (s8), 32768 (u16). */
int32_t qnpu__igemm_act_offset(int act);

/* Column k of a packed int4 row (the .qnpu packing). */
static inline int32_t qnpu__s4_get(const uint8_t *row, int64_t k)
{
    int v = (row[k >> 1] >> ((k & 1) * 4)) & 0xF;
    return v - ((v & 8) << 1); /* 4-bit two's complement */
}
/* Pack K codes in [−8, 7] into ⌈K/2⌉ bytes (low nibble first, zero padding nibble). */
void qnpu__s4_pack_row(const int8_t *q, int64_t K, uint8_t *out);

/* ---- precomputation at load ---------------------------------------------------------------- */

/* sum[o] = Σ_k q_w[o][k] for the N rows of an int8 / packed int4 weight. */
void qnpu__igemm_rowsum_s8(int64_t N, int64_t K, const int8_t *w, int64_t ldw, int64_t *sum);
void qnpu__igemm_rowsum_s4(int64_t N, int64_t K, const uint8_t *w, int64_t ldw, int64_t *sum);
/* c[o] = b_int[o] − (z_x − OFF(act))·wsum[o]; b_int may be NULL (no bias, e.g. LLaMA).
 * |c| stays far inside int64 for every shape the kernels accept (|wsum| <= 128·K). */
void qnpu__igemm_fold_c(int act, int64_t N, const int64_t *wsum, const int32_t *b_int, int32_t z_x,
                        int64_t *c);
/* Per-row multipliers M[o] = s_x·s_w[o]/s_y (in double from the float32 scales) as
 * qnpu__quantize_multiplier pairs. Returns 0, or −1 if some M is not finite or negative (those
 * rows get m0 = 0, shift = 0). */
int qnpu__igemm_multipliers(int64_t N, float s_x, const float *s_w, float s_y, int32_t *m0,
                            int32_t *shift);

/* ---- output -------------------------------------------------------------------------------- */

/* Where a kernel writes its T×N results (row t of the output is output row t, column o is weight
 * row o). Either requantized codes (y != NULL):
 *     y[t*ldy + o] = requant(acc[t][o], m0[o], shift[o], zy, qmin, qmax)   (mode: QNPU__RQ_RNE,
 *                    or QNPU__RQ_GEMMLOWP for qnpu__requant_gemmlowp)
 * or, when y == NULL, the raw accumulators acc[t*ldacc + o] (int64; c included).
 * To split N across threads, offset y (or acc), m0 and shift by the first row o0 (and w, c). */
typedef struct qnpu__igemm_out {
    int32_t *y;
    int64_t ldy;
    const int32_t *m0, *shift; /* [N] */
    int32_t zy, qmin, qmax;
    int mode;
    int64_t *acc;
    int64_t ldacc;
} qnpu__igemm_out;

/* Store acc[0 .. nvalid) (c already added) as output row t, columns o0 .. o0 + nvalid; every
 * implementation ends with this, so requantization is the same code everywhere. */
void qnpu__igemm_store(const qnpu__igemm_out *out, int64_t t, int64_t o0, int64_t nvalid,
                       const int64_t *acc);

/* Narrow int32 codes (already within the output range) to the storage type, saturating. */
void qnpu__narrow_u8(const int32_t *y, int64_t n, uint8_t *out);
void qnpu__narrow_s8(const int32_t *y, int64_t n, int8_t *out);
void qnpu__narrow_u16(const int32_t *y, int64_t n, uint16_t *out);
void qnpu__narrow_s16(const int32_t *y, int64_t n, int16_t *out);

/* ---- kernels ------------------------------------------------------------------------------- */

/* Y (T,N) = X (T,K) · W (N,K)ᵀ + c, requantized per row — see the top of this file. c may be
 * NULL (0). The signature of every kernel: */
#define QNPU__IGEMM_DECL(name, xtype, wtype)                                                        \
    void name(int64_t T, int64_t N, int64_t K, const xtype *x, int64_t ldx, const wtype *w,         \
              int64_t ldw, const int64_t *c, const qnpu__igemm_out *out)
#define QNPU__IGEMM_FAMILY(pair, xtype, wtype)                                                      \
    QNPU__IGEMM_DECL(qnpu__igemm_##pair##_ref, xtype, wtype);                                       \
    QNPU__IGEMM_DECL(qnpu__igemm_##pair##_avx2, xtype, wtype);                                      \
    QNPU__IGEMM_DECL(qnpu__igemm_##pair##_vnni, xtype, wtype);                                      \
    QNPU__IGEMM_DECL(qnpu__igemm_##pair, xtype, wtype)

QNPU__IGEMM_FAMILY(u8_s8, uint8_t, int8_t);   /* A8 × W8: linear layers                         */
QNPU__IGEMM_FAMILY(u8_s4, uint8_t, uint8_t);  /* A8 × W4 (packed): linear layers                */
QNPU__IGEMM_FAMILY(s8_s8, int8_t, int8_t);    /* int8 × int8: symmetric attention operands      */
QNPU__IGEMM_FAMILY(s8_s4, int8_t, uint8_t);   /* int8 × W4                                      */
QNPU__IGEMM_FAMILY(u16_s8, uint16_t, int8_t); /* A16 × W8: lm_head; Q (uint16) · Kᵀ (int8 cache) */
QNPU__IGEMM_FAMILY(s16_s8, int16_t, int8_t);  /* centred int16 Q · Kᵀ                            */
QNPU__IGEMM_FAMILY(u16_s4, uint16_t, uint8_t);/* A16 × W4 (packed): down_proj (int32 blocks of
                                                 2048 columns in the SIMD kernels)             */

/* 1 if implementation `impl` (QNPU__IGEMM_*) is compiled in and runs on this CPU (REF: always). */
int qnpu__igemm_have(int impl);
/* The implementation the dispatching names use: VNNI > AVX2 > REF (asked of the CPU per call,
 * as __builtin_cpu_supports is a cheap read). */
int qnpu__igemm_best(void);

/* Any kernel by format and implementation (x, w typed by act / wfmt). Returns 0, or −1 for an
 * unknown combination (nothing written). impl < 0 means qnpu__igemm_best(). */
int qnpu__igemm(int impl, int act, int wfmt, int64_t T, int64_t N, int64_t K, const void *x,
                int64_t ldx, const void *w, int64_t ldw, const int64_t *c,
                const qnpu__igemm_out *out);

#endif
