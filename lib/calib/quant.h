/* quant.h — quantizer primitives and streaming observers (private to lib/).
 *
 * Everything here follows spec/METHOD.md:
 *   §2.1  integer ranges                        qnpu__qrange
 *   §2.2  learnable fake-quant (stage 1)        qnpu__fq_learnable*
 *   §2.3  observer fake-quant and qparams       qnpu__fq_observer*, qnpu__quantize_observer*,
 *                                               qnpu__qparams_observer
 *   §7.2  initializers (minmax, mean3sigma)     qnpu__qparams_init, QNPU__OBS_MEAN_KSIGMA,
 *                                               qnpu__weight_scales_ksigma
 *   §8.2  weight quantization with learned s_w  qnpu__weight_quantize, qnpu__weight_fake_quant
 *   §13   percentile observer, MSE clip search  QNPU__OBS_PERCENTILE, QNPU__OBS_MSE,
 *                                               QNPU__WSCALE_MSE
 *
 * Rounding (parity rule 2). Every real-to-integer step is round-half-to-even, done with rintf()
 * in the default rounding mode FE_TONEAREST. The library never changes the rounding mode, and a
 * caller that does so breaks parity; nothing checks fegetround() at run time. rintf is used
 * rather than nearbyintf because glibc's nearbyintf saves and restores the floating-point
 * environment on every call; the two give the same value, and the inexact flag is irrelevant here.
 *
 * Float32 evaluation. All fake-quant arithmetic is float32 with one rounding per operation: the
 * build is -std=c11 (GCC then uses -ffp-contract=off, so no FMA contraction) on x86-64 SSE
 * (FLT_EVAL_METHOD 0, no excess precision).
 *
 * Inputs to the fake-quant forms must be finite and s > 0; the observers and weight helpers are
 * the places that check for NaN/Inf (QNPU_ERR_NUMERIC).
 */
#ifndef QNPU_CALIB_QUANT_H
#define QNPU_CALIB_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

/* ---- §2.1 integer ranges ---------------------------------------------------------------- */

/* Smallest and largest bit-width accepted anywhere in this header. */
#define QNPU__QBITS_MIN 2
#define QNPU__QBITS_MAX 16

/* The integer range of a b-bit quantizer (METHOD.md §2.1, parity rule 1):
 *   sym (signed symmetric):      [-2^(b-1), 2^(b-1) - 1]   e.g. 4 -> [-8, 7], 8 -> [-128, 127]
 *   asym (unsigned asymmetric):  [0, 2^b - 1]              e.g. 8 -> [0, 255], 16 -> [0, 65535]
 * @return QNPU_OK, or QNPU_ERR_INVALID_ARG for bits outside [2, 16] (outputs untouched). */
qnpu_status qnpu__qrange(int bits, int sym, int32_t *qmin, int32_t *qmax);

/* Round half to even (parity rule 2); see the note at the top of this file. */
static inline float qnpu__rne(float v)
{
    return rintf(v);
}

/* ---- §2.2 learnable fake-quant, forward (stage 1) --------------------------------------- */

/* One element of the learnable quantizer, in float32 and in the reference order (parity rule 3):
 *     z_r = rne(z)                 (asymmetric only; z is the float parameter)
 *     u   = x / s + z_r            float32 division, then float32 add   (sym: u = x / s)
 *     q   = rne(clamp(u, qmin, qmax))
 *     x^  = (q - z_r) * s          (sym: q * s)
 * Note on the order: x/s + z_r rounds to float32 before rne, and ties of u go to the even u, so
 * this may differ by one code from rne(x/s) + z_r (the observer order, §2.3): for example
 * x/s = 2.5 with z_r = 3 gives u = 5.5 -> 6 here but 2 + 3 = 5 there, and x/s = nextafterf(2.5, 3)
 * with z_r = 100 gives u = 102.5 (the add rounds) -> 102 here but 3 + 100 = 103 there. */
float qnpu__fq_learnable(float x, float s, float z, int32_t qmin, int32_t qmax, int sym);
/* The integer code q of qnpu__fq_learnable (same steps, before dequantization). */
int32_t qnpu__fq_learnable_code(float x, float s, float z, int32_t qmin, int32_t qmax, int sym);
/* y[i] = qnpu__fq_learnable(x[i], ...), i < n. y may equal x (in place). */
void qnpu__fq_learnable_vec(const float *x, float *y, size_t n, float s, float z, int32_t qmin,
                            int32_t qmax, int sym);

/* ---- §2.3 observer fake-quant (stage 2; PyTorch fake_quantize_per_tensor_affine) --------- */

/* The float32 reciprocal that the observer forms multiply by: 1.0f / s. */
static inline float qnpu__inv_scale(float s)
{
    return 1.0f / s;
}

/* Integer code of one element (parity rule 4):
 *     q = clamp(rne(x * inv_s) + z, qmin, qmax)        round first, then add z, then clamp
 * inv_s is qnpu__inv_scale(s). The clamp is done without overflow for any finite x. */
int32_t qnpu__quantize_observer(float x, float inv_s, int32_t z, int32_t qmin, int32_t qmax);
/* One element fake-quantized: x^ = (q - z) * s with q as above and inv_s = 1.0f / s.
 * A symmetric quantizer is the same formula with z = 0. */
float qnpu__fq_observer(float x, float s, int32_t z, int32_t qmin, int32_t qmax);
/* Vector forms over n elements (the reciprocal is computed once; same values as the scalars).
 * y may equal x. */
void qnpu__fq_observer_vec(const float *x, float *y, size_t n, float s, int32_t z, int32_t qmin,
                           int32_t qmax);
void qnpu__quantize_observer_vec(const float *x, int32_t *q, size_t n, float s, int32_t z,
                                 int32_t qmin, int32_t qmax);

/* ---- qparams from a range ---------------------------------------------------------------- */

/* eps of the observer rule: 1e-4 / (2^b - 1), computed in double and rounded to float32 (the
 * reference passes the Python float to MinMaxObserver.with_args(eps=...), a float32 tensor). */
float qnpu__observer_eps(int bits);

/* The observer rule (METHOD.md §2.3, parity rule 6): the range is first widened to contain 0,
 *     lo = min(lo, 0), hi = max(hi, 0)
 *   asym: s = max((hi - lo) / (qmax - qmin), eps),  z = clamp(qmin - rne(lo / s), qmin, qmax)
 *   sym:  s = max(max(-lo, hi) / D, eps),  z = 0,   D = qmax (our observers' rule, default)
 *                                                   or (qmax - qmin) / 2 when half_range
 *                                                   (observer.sym_divisor = half_range: 127.5)
 * with eps = qnpu__observer_eps(bits); float32 arithmetic throughout.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (bits, NaN bounds); QNPU_ERR_NUMERIC if the scale is not
 * finite (a range wider than FLT_MAX). */
qnpu_status qnpu__qparams_observer(float lo, float hi, int bits, int sym, int half_range, float *s,
                                   int32_t *z);

/* The initializer rule (METHOD.md §7.2 "minmax"); the range is NOT widened to contain 0:
 *   asym: s = max(hi - lo, 1e-5) / (qmax - qmin),   z = rne(qmin - lo / s)   (a float, not clamped)
 *   sym:  s = max(|lo|, |hi|, 1e-5) / qmax,          z = 0
 * float32 arithmetic in that order. z can lie outside [qmin, qmax] (parity rule 6's note).
 * @return QNPU_OK, QNPU_ERR_INVALID_ARG, or QNPU_ERR_NUMERIC if s or z is not finite. */
qnpu_status qnpu__qparams_init(float lo, float hi, int bits, int sym, float *s, float *z);

/* Round a float zero point to int32 (rne), saturating at the int32 limits. */
int32_t qnpu__round_zero_point(float z);

/* ---- streaming observers ------------------------------------------------------------------ */

/* Observer kinds. The values are the indices of the choices "minmax|mean_ksigma|percentile|mse"
 * of the observer.* parameters (lib/common/params.def), so an option value maps directly. */
typedef enum qnpu__observer_kind {
    QNPU__OBS_MINMAX = 0,      /* running min / max                                       */
    QNPU__OBS_MEAN_KSIGMA = 1, /* §7.2 mean3sigma: per-sample mu +- k sigma, EMA of (s, z) */
    QNPU__OBS_PERCENTILE = 2,  /* §13: percentiles of a streaming histogram                */
    QNPU__OBS_MSE = 3          /* clip range minimizing the histogram's expected MSE       */
} qnpu__observer_kind;

/* Parameters of an observer (NULL -> qnpu__observer_cfg_default). */
typedef struct qnpu__observer_cfg {
    double sigma_k;    /* mean_ksigma: the multiplier k (init.sigma_k / observer.sigma_k), 3       */
    double ema;        /* mean_ksigma: EMA factor (init.ema), 0.9; s <- ema*s + (1-ema)*s_i         */
    double percentile; /* percentile: kept share of values in percent (observer.percentile), 99.99 */
    int bins;          /* percentile, mse: histogram bins (observer.bins), 2048                     */
    int half_range;    /* symmetric divisor (qmax-qmin)/2 instead of qmax (observer.sym_divisor)    */
} qnpu__observer_cfg;

/* The defaults of METHOD.md §11 / params.def. */
void qnpu__observer_cfg_default(qnpu__observer_cfg *cfg);
/* Stage-2 observer parameters from options (NULL = defaults): observer.sigma_k, init.ema,
 * observer.percentile, observer.bins, observer.sym_divisor. */
void qnpu__observer_cfg_from_options(const qnpu_options *opts, qnpu__observer_cfg *cfg);

/* One observer. Memory does not depend on the number of values seen: the histogram kinds hold
 * `bins` counts plus a re-binning scratch of the same size, allocated once by
 * qnpu__observer_init; no update call allocates. Fields are read-only outside observer.c,
 * except through the functions below. */
typedef struct qnpu__observer {
    int kind;                 /* qnpu__observer_kind                                         */
    int bits, sym;
    int32_t qmin, qmax;       /* qnpu__qrange(bits, sym)                                     */
    qnpu__observer_cfg cfg;

    int64_t count;            /* values seen (all kinds)                                     */
    int64_t samples;          /* update calls with n > 0 (mean_ksigma: samples averaged)     */
    float min, max;           /* running min / max of the values seen (all kinds)            */

    /* mean_ksigma: the EMA state (§7.2); z is a float, rounded by qnpu__observer_qparams */
    float ema_s, ema_z;

    /* percentile / mse: histogram of x (asym) or of |x| (sym) over [h_lo, h_lo + h_width],
     * bins of equal width; counts are doubles (exact below 2^53 values). */
    double *hist, *scratch;
    int bins;
    double h_lo, h_width;
    int64_t grows;            /* range doublings so far (diagnostic)                         */
    int allocs;               /* allocations made by this observer (test hook: stays 2/0)    */
} qnpu__observer;

/* Initialize `o` (any previous contents are ignored). kind is a qnpu__observer_kind; bits in
 * [2, 16]; sym selects the signed symmetric scheme. On failure `o` is left so that
 * qnpu__observer_free is safe. @return QNPU_OK, QNPU_ERR_INVALID_ARG, QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__observer_init(qnpu__observer *o, int kind, int bits, int sym,
                                const qnpu__observer_cfg *cfg);
/* Forget all data (keeps the allocation and the configuration). */
void qnpu__observer_reset(qnpu__observer *o);
/* Observe n values. For mean_ksigma one call is one sample (§7.2). n = 0 is a no-op for every
 * kind. If any value is NaN or Inf, nothing is recorded and QNPU_ERR_NUMERIC is returned with
 * the index in the message. */
qnpu_status qnpu__observer_update(qnpu__observer *o, const float *x, size_t n);
/* The range the observer settled on, before the observer rule widens it to contain 0:
 *   minmax: [min, max] seen; percentile: the percentiles (clamped to [min, max]);
 *   mse: the chosen clipping range; mean_ksigma: the range its (s, rne(z)) represent,
 *   [(qmin - z) * s, (qmax - z) * s].  With no data: [0, 0].
 * @return QNPU_OK or QNPU_ERR_NO_MEMORY (mse allocates its prefix sums here). */
qnpu_status qnpu__observer_range(const qnpu__observer *o, float *lo, float *hi);
/* Final qparams (stage 2).
 *   minmax, percentile, mse: the observer rule (qnpu__qparams_observer, range includes 0,
 *     z clamped to [qmin, qmax]) on qnpu__observer_range.
 *   mean_ksigma: the EMA'd init-rule scale and qnpu__round_zero_point(z) (parity rule 5). This z
 *     is NOT clamped and may lie outside [qmin, qmax] when mu +- k sigma excludes 0; the caller
 *     decides (parity rule 6's note). Stage-1 init wants the float z: qnpu__observer_init_qparams.
 * With no data, the rule is applied to [0, 0] (s = eps or the 1e-5 floor, z = qmin or 0).
 * @return QNPU_OK, QNPU_ERR_NO_MEMORY (mse), QNPU_ERR_NUMERIC. */
qnpu_status qnpu__observer_qparams(const qnpu__observer *o, float *s, int32_t *z);
/* Stage-1 initialization values with a float zero point (METHOD.md §7.2, parity rules 5, 7):
 *   mean_ksigma: the EMA state (s, z), z a float;
 *   minmax: the §7.2 minmax init rule on [min, max] (not forced to contain 0), z = rne(...) as a
 *           float;
 *   percentile, mse: the init rule on qnpu__observer_range.
 * @return as qnpu__observer_qparams. */
qnpu_status qnpu__observer_init_qparams(const qnpu__observer *o, float *s, float *z);
/* Release the histogram (accepts a zeroed or failed-init observer); `o` may be re-initialized. */
void qnpu__observer_free(qnpu__observer *o);

/* ---- per-channel symmetric weights (§2.4, §7.2 "Weights", §8.2, §13) ------------------------ */

/* Scale selection methods; values = choice indices of quant.weight_clip ("none|mse"). */
typedef enum qnpu__wscale_method {
    QNPU__WSCALE_MAX = 0, /* s_r = max(max|w_r|, 1e-5) / qmax                               */
    QNPU__WSCALE_MSE = 1  /* §13 shrink search: p = 1 - i/100, i < 80, min sum |Q(w)-w|^2.4   */
} qnpu__wscale_method;

#define QNPU__WCLIP_GRID 100      /* §13 grid                     */
#define QNPU__WCLIP_MAXSHRINK 0.8 /* §13 maxshrink                */
#define QNPU__WCLIP_NORM 2.4      /* §13 error exponent           */
#define QNPU__SCALE_FLOOR 1e-5f   /* §7.2 range floor, also guards all-zero rows (CONVENTIONS §14) */

/* Per-output-row symmetric scales of W [rows][cols] (row r at w + r*ld), `bits` in [2, 16].
 *   QNPU__WSCALE_MAX: s_r = max(max|w_r|, 1e-5) / qmax — §7.2's minmax rule, symmetric. The 1e-5
 *     floor is the guard for all-zero rows: s_r = 1e-5/qmax, and every code of the row is 0.
 *   QNPU__WSCALE_MSE: for i = 0 .. 79, p = 1 - i/100, s = p * max(max|w_r|, 1e-5) / qmax; keep the
 *     first s with the smallest sum |qnpu__weight_fake_quant(w) - w|^2.4 (strict <, so i = 0,
 *     the MAX scale, wins ties and the error never exceeds MAX's).
 * @return QNPU_OK, QNPU_ERR_INVALID_ARG, QNPU_ERR_NUMERIC (NaN/Inf, message names the row). */
qnpu_status qnpu__weight_scales(const float *w, int64_t rows, int64_t cols, int64_t ld, int bits,
                                int method, float *scales);
/* §7.2 "Weights" (mean3sigma, per output row, symmetric), computed once on the rotated weight:
 *   s_r = max(|mu_r - k sigma_r|, |mu_r + k sigma_r|, 1e-5) / qmax,  sigma unbiased (N - 1),
 * mu and sigma in double, rounded to float32, then the formula in float32; cols = 1 -> sigma = 0.
 * @return QNPU_OK, QNPU_ERR_INVALID_ARG, QNPU_ERR_NUMERIC. */
qnpu_status qnpu__weight_scales_ksigma(const float *w, int64_t rows, int64_t cols, int64_t ld,
                                       int bits, double k, float *scales);
/* Integer weights (§8.2 step 2): q[r][c] = clamp(rne(w[r][c] / s_r), qmin, qmax), written to q
 * with leading dimension ldq. The order is division by s (not multiplication by 1/s), round,
 * clamp: the learnable forward of §2.2 computes u = w/s and clamps-then-rounds, and because
 * the clamp bounds are integers the two orders give the same code; so the integer weights equal
 * the codes stage 1 trained against, bit for bit. bits in [2, 8].
 * @return QNPU_OK, QNPU_ERR_INVALID_ARG (bits, a scale that is not finite and positive). */
qnpu_status qnpu__weight_quantize(const float *w, int64_t rows, int64_t cols, int64_t ld,
                                  const float *scales, int bits, int8_t *q, int64_t ldq);
/* Dequantized weights: out[r][c] = q[r][c] * s_r with q as in qnpu__weight_quantize; equal bit
 * for bit to qnpu__fq_learnable(w, s_r, 0, qmin, qmax, 1). out (leading dimension ldo) may
 * alias w when ldo == ld. bits in [2, 16]. @return as qnpu__weight_quantize. */
qnpu_status qnpu__weight_fake_quant(const float *w, int64_t rows, int64_t cols, int64_t ld,
                                    const float *scales, int bits, float *out, int64_t ldo);

#endif
