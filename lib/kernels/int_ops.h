/* int_ops.h — integer-only element-wise, normalization and attention operators of the CPU engine
 * (FORMATS.md §3.3–§3.8), on the deployed graph of METHOD.md §3.
 *
 * Two halves:
 *   - int_ops_params.c turns the float records of the QPs (qnpu__qp: s, z, bits, sym) into the
 *     fixed-point parameters and tables below. It runs once at load, may use double, and is the
 *     only place that allocates (qnpu__malloc / qnpu__free).
 *   - int_ops_ref.c holds the plain scalar reference kernels. They take codes, the precomputed
 *     parameters, shapes and leading dimensions; they use integer arithmetic only (no float or
 *     double: test/kernels/no_float.sh audits the object file), never allocate, never print.
 *
 * Requantization is the one routine of requant.h (FORMATS.md §3.1): a real multiplier M is
 * (M0, n) with M ≈ M0·2^−n, and qnpu__requant(acc, M0, n, z, qmin, qmax) =
 * clamp(z + rshift_rne(acc·M0, n), qmin, qmax), rounding half to even (METHOD.md rule 2).
 *
 * Codes in memory. A QP's codes are stored by bit-width and scheme (qnpu__ctype_of):
 *     asym ≤ 8 bits -> uint8_t     asym 9..16 -> uint16_t
 *     sym  ≤ 8 bits -> int8_t      sym  9..16 -> int16_t
 * 4-bit codes are held one per byte (unpacked). Matrices are row-major with a leading dimension
 * counted in elements; "m × n" means m rows of n codes. Kernels trust their inputs to be codes
 * of their QP (in [qmin, qmax]); any stored value of the type still gives a defined result,
 * every output is clamped to its QP's [qmin, qmax].
 *
 * Accuracy. Every kernel computes the exact real function of its dequantized inputs up to the
 * 31-bit precision of the multipliers (relative error about 2^−31), then rounds once, half to
 * even, and clamps. So it equals clamp(z + rne(f/s_y)) except when f/s_y lies within about
 * |f/s_y|·2^−30 of a half-integer; the float32 fake-quant simulation (lib/calib/simgraph.c)
 * has its own float32 rounding errors, so the two differ by at most one code, and only near
 * such ties. test/check_int_ops.c measures the maximum error and the mismatch rate of each
 * kernel against a float64 evaluation and against the observer fake-quant formula.
 */
#ifndef QNPU_KERNELS_INT_OPS_H
#define QNPU_KERNELS_INT_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../calib/qgraph.h"
#include "../internal.h"
#include "requant.h"

/* ---- codes ------------------------------------------------------------------------------ */

/* (the same values as QNPU__ACT_U8/S8/U16/S16 of int_gemm.h) */
enum { QNPU__CT_U8 = 0, QNPU__CT_I8 = 1, QNPU__CT_U16 = 2, QNPU__CT_I16 = 3 };

/* The storage type of a bits-wide QP (bits in [2, 16]). */
static inline int qnpu__ctype_of(int bits, int sym)
{
    return bits <= 8 ? (sym ? QNPU__CT_I8 : QNPU__CT_U8) : (sym ? QNPU__CT_I16 : QNPU__CT_U16);
}

/* Element i of a code array of type ct. */
static inline int32_t qnpu__code_get(const void *p, int ct, int64_t i)
{
    switch (ct) {
    case QNPU__CT_U8: return ((const uint8_t *)p)[i];
    case QNPU__CT_I8: return ((const int8_t *)p)[i];
    case QNPU__CT_U16: return ((const uint16_t *)p)[i];
    default: return ((const int16_t *)p)[i];
    }
}

/* Store code v (already in the QP's range) as element i of an array of type ct. */
static inline void qnpu__code_put(void *p, int ct, int64_t i, int32_t v)
{
    switch (ct) {
    case QNPU__CT_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case QNPU__CT_I8: ((int8_t *)p)[i] = (int8_t)v; break;
    case QNPU__CT_U16: ((uint16_t *)p)[i] = (uint16_t)v; break;
    default: ((int16_t *)p)[i] = (int16_t)v; break;
    }
}

/* What a kernel needs to know of a QP: its zero point, its range and its storage type. The
 * scale lives only in the multipliers. */
typedef struct qnpu__iqp {
    int32_t z, qmin, qmax;
    int32_t ctype;          /* QNPU__CT_* */
} qnpu__iqp;

/* ---- requantize codes or accumulators into a QP ------------------------------------------ */

/* y = clamp(z_y + requant(q_x − z_x, M)). Built by qnpu__irq_init (M = s_x/s_y: codes of one QP
 * into another, e.g. k.rope -> k.cache, qk.scaled -> qk.masked) or qnpu__irq_init_acc (x is an
 * int64 accumulator at scale s_acc with z_x = 0, e.g. Q·Kᵀ -> qk with s_acc = s_q·s_k). */
typedef struct qnpu__irq {
    qnpu__iqp x, y;
    int32_t m0;
    int n;
} qnpu__irq;

/* Codes x (m × n, type p->x.ctype) -> codes y (m × n, type p->y.ctype). */
void qnpu__requant_codes_ref(const qnpu__irq *p, int64_t m, int64_t n, const void *x, int64_t ldx,
                             void *y, int64_t ldy);
/* Accumulators acc (m × n, int64) -> codes y: y = clamp(z_y + requant(acc, M)). The row 10
 * step of the attention chain (Q·Kᵀ -> qk) and the §3.9 step (FWHT(silu·up) -> down.in). */
void qnpu__requant_acc_ref(const qnpu__irq *p, int64_t m, int64_t n, const int64_t *acc,
                           int64_t lda, void *y, int64_t ldy);

/* ---- §3.3 element-wise add ---------------------------------------------------------------- */

/* y = a + b into the QP of y, with one rounding:
 *     t = ((q_a − z_a)·ma0 << la) + ((q_b − z_b)·mb0 << lb)              exact in int64
 *     y = clamp(z_y + rshift_rne(t, n))                                  (ties to even)
 * with M_a = s_a/s_y ≈ ma0·2^−(n − la), M_b = s_b/s_y ≈ mb0·2^−(n − lb); one of la, lb is 0,
 * n = max(n_a, n_b). |q − z| < 2^16 and ma0, mb0 < 2^31, so t fits int64 while la, lb ≤ 14;
 * when the two multipliers differ by more than 2^14, the smaller one is re-rounded to the
 * common shift (an absolute error below 2^(1 − n_big) codes, i.e. ~2^−30 codes for M ≈ 1).
 * The init functions refuse M_a or M_b ≥ 2^30 (n would be < 1), which no graph produces.
 * A constant operand (rows 14–15: qk.fill = qk.rowmin + mask.c) is b with a fixed code bc. */
typedef struct qnpu__iadd {
    qnpu__iqp a, b, y;
    int32_t ma0, mb0;
    int la, lb, n;
    int32_t bc;             /* the code of a constant b (qnpu__iadd_init_const), else 0 */
} qnpu__iadd;

/* a (m × n) + b (m × n) -> y (m × n). */
void qnpu__add_ref(const qnpu__iadd *p, int64_t m, int64_t n, const void *a, int64_t lda,
                   const void *b, int64_t ldb, void *y, int64_t ldy);
/* a (m × n) + the constant code p->bc -> y (m × n). */
void qnpu__add_const_ref(const qnpu__iadd *p, int64_t m, int64_t n, const void *a, int64_t lda,
                         void *y, int64_t ldy);

/* ---- §3.3 element-wise multiply ------------------------------------------------------------- */

/* y = a·b into the QP of y: acc = (q_a − z_a)·(q_b − z_b) (exact, |acc| < 2^32), then
 * y = clamp(z_y + requant(acc, M)), M = s_a·s_b/s_y. Rows 27 (gate.silu = gate.out × gate.sig),
 * 28 (down.in = gate.silu × up.out, without R4), 7 (q.rope_c = q.out × rope.cos, …). A constant
 * operand (row 12: qk.scaled = qk × attn.scale) is b with a fixed centred code
 * bk = c − z_c: acc = (q_a − z_a)·bk. */
typedef struct qnpu__imul {
    qnpu__iqp a, b, y;
    int32_t m0;
    int n;
    int32_t bk;             /* centred code of a constant b (qnpu__imul_init_const), else 0 */
} qnpu__imul;

/* a (m × n) · b (m × n) -> y (m × n). */
void qnpu__mul_ref(const qnpu__imul *p, int64_t m, int64_t n, const void *a, int64_t lda,
                   const void *b, int64_t ldb, void *y, int64_t ldy);
/* a (m × n) · the constant -> y (m × n). */
void qnpu__mul_const_ref(const qnpu__imul *p, int64_t m, int64_t n, const void *a, int64_t lda,
                         void *y, int64_t ldy);
/* The exact product without a QP (FORMATS.md §3.9, silu·up before the online R4):
 * h (m × n, int64) = (q_a − z_a)·(q_b − z_b); only p->a and p->b are read. */
void qnpu__mul_raw_ref(const qnpu__imul *p, int64_t m, int64_t n, const void *a, int64_t lda,
                       const void *b, int64_t ldb, int64_t *h, int64_t ldh);

/* ---- §3.4 lookup tables for unary operators ------------------------------------------------ */

/* A unary operator on a QP of at most 16 bits, as a full table over the input codes:
 *     y = qmin_y + t[q_x − qmin_x]
 * Entries are offsets from qmin_y, so uint16_t holds any output of at most 16 bits, signed or
 * not. Size = 2^bits_x entries: 256 (512 bytes) for the 8-bit gate.out of the default graph;
 * a 16-bit input takes the full 65,536-entry table (128 KiB per QP pair), which the init
 * functions build the same way (FORMATS.md §3.4; TFLite's 513-point interpolation is the
 * alternative when that is too big, and is not implemented). */
typedef struct qnpu__lut {
    qnpu__iqp x, y;
    int64_t size;           /* 2^bits_x */
    uint16_t *t;            /* owned (qnpu__lut_free) */
} qnpu__lut;

/* x (m × n) -> y (m × n). */
void qnpu__lut_ref(const qnpu__lut *l, int64_t m, int64_t n, const void *x, int64_t ldx, void *y,
                   int64_t ldy);

/* ---- §3.6 RMSNorm (fused unit weight) -------------------------------------------------------- */

/* One row of d codes of x (rows 1/21, int16 path) -> d codes of y (rows 3/23, or T2):
 *     v_i = q_i − z_x,   SS = Σ v_i²                                    (uint64, exact)
 *     X   = SS·2^k + e,  e = rne(eps·d/s_x² · 2^k)                     (eps folded into codes)
 *     y_i = clamp(z_y + rne(v_i · √d / (s_y · √(SS + eps·d/s_x²))))
 * k is even, chosen at init so that X < 2^62 for every row (k < 0, a rounding right shift of SS,
 * only when eps·d/s_x² alone is near 2^62). The row's 1/√X is fixed point: X is normalized by an
 * even shift 2j into [2^62, 2^64), u = rne(√X_n) by an integer square root (u in [2^31, 2^32]),
 * w = rne(2^63/u); the row multiplier M_row = (√d/s_y)·2^(k/2 + j)·w·2^−63 is c0·w rounded to 31
 * bits, and every element is qnpu__requant(v_i, M_row). Relative error about 2^−30 in total
 * (c0, u, w and the row mantissa each contribute ≤ 2^−31).
 * X = 0 (an all-zero row with eps = 0) gives y = z_y without dividing; any all-zero row gives
 * z_y. */
typedef struct qnpu__irms {
    qnpu__iqp x, y;
    int64_t d;
    int k;                  /* even; SS is scaled by 2^k (k < 0: rshift_rne by −k) */
    uint64_t e;             /* eps·d/s_x²·2^k, rounded */
    int32_t c0;             /* √d/s_y ≈ c0·2^−nc */
    int nc;
} qnpu__irms;

/* x (m × d, rows at ldx) -> y (m × d, rows at ldy), d = p->d. */
void qnpu__rmsnorm_ref(const qnpu__irms *p, int64_t m, const void *x, int64_t ldx, void *y,
                       int64_t ldy);

/* ---- §3.7 RoPE, rotate-half, through the four QPs of METHOD.md §3.1 row 7 ------------------- */

/* For each head vector x (dh codes of q.out or k.out) at a position with table rows cos, sin
 * (dh codes each of rope.cos / rope.sin: cos[i] = cos(p·θ_(i mod dh/2)), as the simulated
 * graph builds them), exactly the requantizations of the simulated graph:
 *     c_i   = mul(x_i, cos_i)                        -> *.rope_c   (§3.3 multiply)
 *     r_i   = requant(−(x_(i+h) − z_x)) for i < h,   -> *.rot      (h = dh/2; M = s_x/s_rot)
 *             requant(+(x_(i−h) − z_x)) for i ≥ h
 *     s_i   = mul(r_i, sin_i)                        -> *.rope_s   (§3.3 multiply)
 *     y_i   = add(c_i, s_i)                          -> *.rope     (§3.3 add)
 * Each step equals the stand-alone kernel (qnpu__mul_ref, qnpu__rotate_half_ref,
 * qnpu__add_ref) bit for bit; nothing is stored between steps. Each step is within one code of
 * the simulation given the same input codes. Over the whole chain the result can differ from the
 * float32 simulation by 2 codes: when the simulation's rope_c or rope_s code is one off (its
 * float32 rounding near a tie), the sum moves by s_c/s_y or s_s/s_y (≈ 0.7 code) before the last
 * rounding (measured: max 2, 0.09 % of codes). */
typedef struct qnpu__irope {
    qnpu__imul cmul;        /* x · cos -> rope_c */
    qnpu__irq rot;          /* centred ±x -> rot (x.z is z of x) */
    qnpu__imul smul;        /* rot · sin -> rope_s */
    qnpu__iadd sum;         /* rope_c + rope_s -> rope */
    int64_t dh;             /* even head dimension */
} qnpu__irope;

/* The *.rot step alone (for an engine that keeps the intermediate, and for tests): for each head
 * vector, y_i = clamp(z_rot + requant(∓(x_(i±h) − z_x))) as above; p is qnpu__irope.rot. */
void qnpu__rotate_half_ref(const qnpu__irq *p, int64_t T, int64_t heads, int64_t dh, const void *x,
                           int64_t ldx, void *y, int64_t ldy);

/* x (T × heads·dh, ldx) at positions pos0 + t, tables cos/sin pointing at row pos0 and
 * advancing ldt codes per position (types of the rope.cos / rope.sin QPs) -> y (T × heads·dh,
 * ldy, type of the *.rope QP). */
void qnpu__rope_ref(const qnpu__irope *p, int64_t T, int64_t heads, const void *x, int64_t ldx,
                    const void *cos_t, const void *sin_t, int64_t ldt, void *y, int64_t ldy);

/* ---- §3.5 softmax (table method) ------------------------------------------------------------ */

/* One row of n codes of qk.masked (scale s) -> n codes of softmax.out:
 *     d_i = max_j q_j − q_i                            (0 … qmax − qmin)
 *     E_i = e[d_i] for d_i < size, else 0;   e[d] = rne(2^30·exp(−s·d))
 *     S   = Σ E_i                                      (uint64, ≥ 2^30: the max has d = 0)
 *     r_i = rne(E_i·2^32 / S)                          (integer division, ties to even)
 *     y_i = clamp(z_o + requant(r_i, M)),   M = 2^−32/s_o
 * size = min(⌈31·ln 2/s⌉, qmax − qmin + 1): beyond it 2^30·exp(−s·d) < 1/2. Masked keys hold
 * the code of rowmin − 20 and need no special case. Errors: each E has an absolute error ≤ 1/2
 * and the dropped tail < 1/2 per key, so p_i has an absolute error ≤ ~(n + 1)·2^−31; that is
 * 0.06 codes of a 16-bit output with s_o = 2^−16 at n = 2048, so ±1 code near ties. */
typedef struct qnpu__isoftmax {
    qnpu__iqp x, y;
    int64_t size;
    uint32_t *e;            /* owned (qnpu__isoftmax_free) */
    int32_t m0;
    int n;
} qnpu__isoftmax;

/* x (m × n, ldx) -> y (m × n, ldy), each row normalized on its own. n ≥ 1. */
void qnpu__softmax_ref(const qnpu__isoftmax *p, int64_t m, int64_t n, const void *x, int64_t ldx,
                       void *y, int64_t ldy);

/* ---- §3.8 the attention score chain, rows 10–16 -------------------------------------------- */

/* Rows 10–16 of METHOD.md §3.1 as the simulated graph computes them:
 *     qk      = requant(acc)                    acc = Σ (q.rope − z)·k.cache, M = s_q·s_k/s_qk
 *     scaled  = mul(qk, attn.scale)             the constant's code, as quantized by its QP
 *     rowmin  = requant(min_j scaled_j)         over all keys of the row, before masking
 *     fill    = add(rowmin, mask.c)             the constant −20's code
 *     masked  = requant(fill) where masked, requant(scaled) elsewhere  (both -> qk.masked)
 * The minimum of codes is the code of the minimum because requantization is monotone. Each step is
 * within one code of the simulation given the same input codes; over the chain an upstream
 * one-code difference can add to the last rounding (bound 2 codes, measured max 1). */
typedef struct qnpu__iattn {
    qnpu__irq qk;           /* acc -> qk */
    qnpu__imul scale;       /* qk · attn.scale (constant) -> qk.scaled */
    qnpu__irq rowmin;       /* qk.scaled -> qk.rowmin */
    qnpu__iadd fill;        /* qk.rowmin + mask.c (constant) -> qk.fill */
    qnpu__irq from_scaled;  /* qk.scaled -> qk.masked */
    qnpu__irq from_fill;    /* qk.fill -> qk.masked */
} qnpu__iattn;

/* Row minimum: y[r] = requant(min_j x[r][j]) for m rows of n ≥ 1 codes (rowmin: qk.scaled ->
 * qk.rowmin). y is a vector of m codes of p->y's type. */
void qnpu__rowmin_ref(const qnpu__irq *p, int64_t m, int64_t n, const void *x, int64_t ldx, void *y);

/* Key j of query row r is masked when mask[r·ldm + j] != 0 (int8, 1 = masked) or, with
 * mask = NULL, causally: when j > past + r (row r is the query at position past + r). */
static inline int qnpu__is_masked(const int8_t *mask, int64_t ldm, int64_t past, int64_t r,
                                  int64_t j)
{
    return mask ? mask[r * ldm + j] != 0 : j > past + r;
}

/* Row 16: masked codes y (m × n) from the qk.scaled codes x (m × n) and the m qk.fill codes. */
void qnpu__mask_select_ref(const qnpu__iattn *p, int64_t m, int64_t n, const void *x, int64_t ldx,
                           const void *fill, const int8_t *mask, int64_t ldm, int64_t past, void *y,
                           int64_t ldy);

/* Rows 10–16 fused, from the Q·Kᵀ accumulators acc (m × n, int64) to the qk.masked codes y (m × n);
 * bit-identical to requant_acc -> mul_const -> rowmin -> add_const -> mask_select. The row
 * minimum is taken on the accumulators (the chain to qk.scaled is monotone), so masked keys cost
 * one store and nothing but y is written. */
void qnpu__attn_scores_ref(const qnpu__iattn *p, int64_t m, int64_t n, const int64_t *acc,
                           int64_t lda, const int8_t *mask, int64_t ldm, int64_t past, void *y,
                           int64_t ldy);

/* ---- parameters (int_ops_params.c; float/double allowed, run once at load) ------------------ */

/* Each init validates the QP records (bits in [2, 16], s finite and > 0, z in [qmin, qmax];
 * bits 0 = pass-through is refused) and returns QNPU_OK, QNPU_ERR_INVALID_ARG, or
 * QNPU_ERR_NO_MEMORY (tables). Multipliers come from qnpu__quantize_multiplier (requant.h). */
qnpu_status qnpu__iqp_init(qnpu__iqp *q, const qnpu__qp *r);

/* M = s_x / s_y. */
qnpu_status qnpu__irq_init(qnpu__irq *p, const qnpu__qp *x, const qnpu__qp *y);
/* Accumulators at scale s_acc > 0 (for example s_q·s_k, or s_silu·s_up/√n for §3.9). */
qnpu_status qnpu__irq_init_acc(qnpu__irq *p, double s_acc, const qnpu__qp *y);

qnpu_status qnpu__iadd_init(qnpu__iadd *p, const qnpu__qp *a, const qnpu__qp *b, const qnpu__qp *y);
/* b is the constant `value`, quantized by its QP with the observer quantizer (as the simulated
 * graph does: mask.c = −20). */
qnpu_status qnpu__iadd_init_const(qnpu__iadd *p, const qnpu__qp *a, const qnpu__qp *b, float value,
                                  const qnpu__qp *y);

qnpu_status qnpu__imul_init(qnpu__imul *p, const qnpu__qp *a, const qnpu__qp *b, const qnpu__qp *y);
/* b is the constant `value` quantized by its QP (attn.scale = (float)(1/√d_h)). */
qnpu_status qnpu__imul_init_const(qnpu__imul *p, const qnpu__qp *a, const qnpu__qp *b, float value,
                                  const qnpu__qp *y);

/* Table of any unary f, computed in double (FORMATS.md §3.4):
 *     t[q] = clamp(z_y + rne(f(s_x·(q − z_x)) / s_y)) − qmin_y      (NaN -> qmin_y)
 * x may have up to 16 bits (65,536 entries). */
qnpu_status qnpu__lut_init(qnpu__lut *l, const qnpu__qp *x, const qnpu__qp *y,
                           double (*f)(double v, void *user), void *user);
/* σ into y (row 26: gate.sig, fixed s = 2^−16, z = 0; σ = 1 saturates at 65535).
 *   sim_f32 = 0: f = 1/(1 + e^−v) in double, as qnpu__lut_init (FORMATS.md §3.4);
 *   sim_f32 = 1: exactly the float32 steps of the simulated graph — the dequantized input
 *     (float)(q − z)·s, 1.0f/(1.0f + expf(−v)), the observer quantizer — so the table equals
 *     the simulation's codes bit for bit. */
qnpu_status qnpu__lut_init_sigmoid(qnpu__lut *l, const qnpu__qp *x, const qnpu__qp *y, int sim_f32);
/* The collapsed chain gate.out -> σ -> gate.sig -> gate·σ -> gate.silu (FORMATS.md §3.4), with the
 * intermediate rounding to the gate.sig grid: sim_f32 as above (1: the simulation bit for bit;
 * 0: σ and the product in double, each rounded once).
 * Use sim_f32 = 1 for parity with the simulated graph. In double, a σ that lands within float32
 * noise of a half-step of 2^−16 can round to the other gate.sig code than expf does, and the
 * product then moves by |g|·2^−16, i.e. up to 1 + ⌈|g|·2^−16/s_silu⌉ codes of gate.silu (measured
 * up to 4 codes for a narrow gate.silu range, 0.12 % of entries). The same holds for the sigmoid
 * table followed by qnpu__mul_ref, so the engine should build gate.sig with sim_f32 = 1 too. */
qnpu_status qnpu__lut_init_silu(qnpu__lut *l, const qnpu__qp *gate, const qnpu__qp *sig,
                                const qnpu__qp *silu, int sim_f32);
void qnpu__lut_free(qnpu__lut *l);

/* x: q.out or k.out; cos, sin: rope.cos / rope.sin; c, rot, s, y: the four row-7 QPs. */
qnpu_status qnpu__irope_init(qnpu__irope *p, const qnpu__qp *x, const qnpu__qp *cos_qp,
                             const qnpu__qp *sin_qp, const qnpu__qp *c, const qnpu__qp *rot,
                             const qnpu__qp *s, const qnpu__qp *y, int64_t dh);
/* The RoPE tables as the simulated graph quantizes them: for p < n_pos, i < dh,
 * cos_codes[p·dh + i] = code of (float)cos(p·θ^(−2(i mod dh/2)/dh)) under cos_qp (likewise sin),
 * via qnpu__rope_tables and the observer quantizer. Arrays of n_pos·dh codes of the QPs' types. */
qnpu_status qnpu__rope_table_codes(int64_t n_pos, int64_t dh, double theta, const qnpu__qp *cos_qp,
                                   const qnpu__qp *sin_qp, void *cos_codes, void *sin_codes);

/* RMSNorm over rows of d values with eps (the model's rms_eps) from x to y. */
qnpu_status qnpu__irms_init(qnpu__irms *p, const qnpu__qp *x, const qnpu__qp *y, int64_t d,
                            double eps);

/* Softmax from x (qk.masked) to y (softmax.out); allocates the exponent table. */
qnpu_status qnpu__isoftmax_init(qnpu__isoftmax *p, const qnpu__qp *x, const qnpu__qp *y);
void qnpu__isoftmax_free(qnpu__isoftmax *p);

/* Rows 10–16 from their QPs; s_acc = s(q.rope)·s(k.cache), the constants as the simulated
 * graph makes them: attn.scale = (float)(1/√d_h), mask.c = −20.0f. */
qnpu_status qnpu__iattn_init(qnpu__iattn *p, double s_acc, const qnpu__qp *qk,
                             const qnpu__qp *attn_scale, float scale_value, const qnpu__qp *scaled,
                             const qnpu__qp *rowmin, const qnpu__qp *mask_c, float mask_value,
                             const qnpu__qp *fill, const qnpu__qp *masked);

#endif
