/* qgrad.h — the learnable quantizer of stage 1: forward helpers and backward (METHOD.md §2.2,
 * §5, §7.3 warm-up; parity rules 3, 5, 9–12). Private.
 *
 * Two granularities (§2.4):
 *   - per tensor (activation QPs): one (s, z) for all elements of one application;
 *   - per output channel (weights): one s[r] (and z[r] when asymmetric) per row of W [rows][cols],
 *     aggregated over the input dimension.
 *
 * Forward. The helpers here call the learnable fake-quant of lib/calib/quant.h
 * (qnpu__fq_learnable_vec / qnpu__fq_learnable_code), so the backward sees exactly the codes the
 * forward produced:  z_r = rne(z),  u = x/s + z_r (float32, in that order),
 * q = rne(clamp(u, q_min, q_max)),  x̂ = (q − z_r)·s   (symmetric: z_r = 0).
 * Whether a quantizer of 16 bits is a pass-through in stage 1 (rule 16) is the caller's policy;
 * these functions quantize at any bit-width of [2, 16].
 *
 * Backward (§5), per element on the UNROUNDED u:
 *     inside (q_min < u < q_max, strict)   ∂x̂/∂s = q − u          ∂x̂/∂z = 0
 *     below  (u <= q_min)                  ∂x̂/∂s = q_min − z_r    ∂x̂/∂z = −s
 *     above  (u >= q_max)                  ∂x̂/∂s = q_max − z_r    ∂x̂/∂z = −s
 *     ∂x̂/∂x = 1 everywhere (pure STE, no clipping mask), so dx = g
 * (symmetric: z_r = 0 and there is no z). One call is ONE APPLICATION of the quantizer:
 *     G_s = Σ (g + w)·∂x̂/∂s,   G_z = Σ (g + w)·∂x̂/∂z         (sums in double, in element order)
 *     w   = 2(x̂ − x)/share with the warm-up term (§7.3, rule 12), else 0
 *     G_s, G_z <- clamp(·, −clamp, clamp)                      (rule 11: after aggregation)
 * and the clamped values are ADDED to *gs, *gz, so a shared parameter (q/k/v, gate/up) that is
 * applied by three or two linears accumulates one clamped contribution per call (rule 11), and
 * a micro-batch loop accumulates naturally. No LSQ gradient scaling (rule 10). The caller zeroes
 * the accumulators at the start of an optimizer step.
 *
 * Thread safety: no global state. */
#ifndef QNPU_OPTIM_QGRAD_H
#define QNPU_OPTIM_QGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

/* The three cases of §5. */
typedef enum qnpu__lq_region {
    QNPU__LQ_INSIDE = 0,
    QNPU__LQ_BELOW = 1,
    QNPU__LQ_ABOVE = 2,
    QNPU__LQ_NAN = 3 /* u is NaN (x or s not finite): the partials are NaN */
} qnpu__lq_region;

typedef struct qnpu__lq_cfg {
    float clamp;  /* clamp of each aggregated gradient (optim.qparam_grad_clamp, 0.1); 0 = none  */
    int warmup;   /* 1: add the warm-up term of §7.3 in this call (counters: train.h)          */
    float share;  /* warm-up divisor: 3 for the q/k/v input, 2 for gate/up, 1 otherwise (> 0)  */
} qnpu__lq_cfg;

/* clamp 0.1, no warm-up, share 1. */
void qnpu__lq_cfg_default(qnpu__lq_cfg *cfg);
/* clamp from optim.qparam_grad_clamp (NULL = default); warmup 0, share 1. */
void qnpu__lq_cfg_from_options(const qnpu_options *opts, qnpu__lq_cfg *cfg);


/* Counters over the calls they are passed to (accumulated; the caller zeroes them). */
typedef struct qnpu__lq_stats {
    int64_t inside, below, above; /* elements per case of §5                                  */
    int64_t clamped;              /* aggregated gradients that the clamp changed                */
} qnpu__lq_stats;

/* The §5 partials of one element, with the forward value: *xhat = x̂ (bit-identical to
 * qnpu__fq_learnable(x, s, z, qmin, qmax, sym)), *ds = ∂x̂/∂s, *dz = ∂x̂/∂z (0 when sym).
 * Returns the qnpu__lq_region. s > 0 and x finite are the caller's business here. */
int qnpu__lq_partials(float x, float s, float z, int32_t qmin, int32_t qmax, int sym, float *xhat,
                      float *ds, float *dz);

/* ---- forward ------------------------------------------------------------------------------- */

/* y[i] = x̂ of x[i], i < n, one (s, z) (per tensor). y may equal x.
 * @return QNPU_OK, QNPU_ERR_INVALID_ARG (bits outside [2, 16], s not finite and > 0). */
qnpu_status qnpu__lq_forward_tensor(const float *x, float *y, size_t n, float s, float z, int bits,
                                    int sym);
/* Per output channel: row r of x (rows, cols, leading dimension ld) with s[r] (and z[r] when
 * asymmetric; z may be NULL when sym) into the same place of y. y may equal x.
 * @return as qnpu__lq_forward_tensor (the message names the row). */
qnpu_status qnpu__lq_forward_channel(const float *x, float *y, int64_t rows, int64_t cols, int64_t ld,
                                     const float *s, const float *z, int bits, int sym);

/* ---- backward ------------------------------------------------------------------------------ */

/* One application of a per-tensor quantizer: x (the input of the forward) and g = ∂L/∂x̂, n
 * elements. dx (may be NULL, may equal g) receives g (STE). *gs += clamp(G_s); *gz += clamp(G_z)
 * when asymmetric (gs, gz may be NULL to skip; gz is untouched when sym). cfg NULL = defaults.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (bits, s, share); QNPU_ERR_NUMERIC if an aggregated
 * gradient is not finite (NaN/Inf in x or g; nothing is added then, dx is still written). */
qnpu_status qnpu__lq_backward_tensor(const qnpu__lq_cfg *cfg, const float *x, const float *g, size_t n,
                                     float s, float z, int bits, int sym, float *dx, float *gs,
                                     float *gz, qnpu__lq_stats *stats);

/* One application of a per-output-channel quantizer: x, g and dx (rows, cols) share the leading
 * dimension ld; row r uses s[r] (z[r] when asymmetric; z may be NULL when sym). gs[r] (and
 * gz[r] when asymmetric) += the clamped aggregate of row r over the input dimension. Each row
 * is its own aggregated gradient for the clamp. Same conventions and returns as
 * qnpu__lq_backward_tensor (on a NUMERIC error nothing is added to any row). */
qnpu_status qnpu__lq_backward_channel(const qnpu__lq_cfg *cfg, const float *x, const float *g,
                                      int64_t rows, int64_t cols, int64_t ld, const float *s,
                                      const float *z, int bits, int sym, float *dx, float *gs,
                                      float *gz, qnpu__lq_stats *stats);

#endif
