/* cayley.h — the optimizer pieces of stage 1 (METHOD.md §6.2, §8.1, §12 rule 13). Private.
 *
 *   qnpu__cayley_step        Cayley SGD on the Stiefel manifold for R1 / R2 (§6.2)
 *   qnpu__cayley_qr_retract  the occasional QR retraction inside that step (§6.2)
 *   qnpu__lr_at              the learning-rate schedule (§8.1: cosine from lr to 0, no warm-up)
 *   qnpu__clip_grad_norm     the global gradient-norm clip (rule 13 step 2)
 *   qnpu__sgd_step           plain SGD for the scales and zero points (rule 13 step 3)
 *
 * One optimizer step of stage 1 (rule 13) is, in this vocabulary:
 *     lr_t = qnpu__lr_at(schedule, optim.lr, t, optim.steps);
 *     qnpu__clip_grad_norm(every R gradient and every qparam gradient, optim.clip_norm);
 *     qnpu__sgd_step(qparams, their gradients, optim.qparam_lr_ratio * lr_t);
 *     qnpu__cayley_step(R, its gradient, lr_t)  for R1 and every R2.
 *
 * Matrices are n × n, row-major, float32. Thread safety: no global state; concurrent calls on
 * different matrices, work buffers and generators are safe. */
#ifndef QNPU_OPTIM_CAYLEY_H
#define QNPU_OPTIM_CAYLEY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/prng.h"
#include "../internal.h"

/* ---- Cayley SGD (§6.2) ------------------------------------------------------------------ */

typedef struct qnpu__cayley_cfg {
    int iters;    /* fixed-point iterations of the Cayley transform (optim.cayley_iters, 5)        */
    int qr_every; /* QR retraction with probability 1/qr_every (optim.qr_every, 101; 0 = never) */
    int threads;  /* BLIS threads of the products (>= 1)                                         */
} qnpu__cayley_cfg;

/* iters 5, qr_every 101, threads 1 (METHOD.md §11). */
void qnpu__cayley_cfg_default(qnpu__cayley_cfg *cfg);
/* From options (NULL = defaults): optim.cayley_iters, optim.qr_every, num_threads. */
void qnpu__cayley_cfg_from_options(const qnpu_options *opts, qnpu__cayley_cfg *cfg);

/* Floats of workspace qnpu__cayley_step needs for an n × n parameter: 4n² + 2n. */
size_t qnpu__cayley_work_floats(int64_t n);

/* One Cayley SGD step with momentum 0 on R (n, n), in place, exactly the routine of §6.2:
 *
 *     X = R with each row divided by (its L2 norm + 1e-8)
 *     with probability 1/qr_every:  X <- qnpu__cayley_qr_retract(X)
 *     V = −Gᵀ;   M = V·X;   Ŵ = M − ½·Xᵀ·(X·M);   W = Ŵ − Ŵᵀ
 *     α = min(1 / (‖W‖₁ + 1e-8), lr)          ‖W‖₁ = max column sum of |W|
 *     Y = Xᵀ + α·V;   iters times:  Y = Xᵀ + α·W·½(Xᵀ + Y)
 *     R <- Yᵀ
 *
 * Float32 throughout; the three products per iteration go through qnpu__sgemm (BLIS). The QR
 * event is decided by one draw qnpu__prng_below(g, qr_every) == 0 per call (none when g is NULL
 * or qr_every is 0; qr_every = 1 retracts on every call without drawing), so a run is
 * reproducible from its seed. G = ∂L/∂R (n, n) is not modified. `work` holds
 * qnpu__cayley_work_floats(n) floats, or is NULL (then the step allocates). *did_qr (may be
 * NULL) receives 1 if the retraction ran, *alpha_out (may be NULL) the step size α.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (n < 1, NULL matrices, lr negative or not finite, bad
 * cfg); QNPU_ERR_NUMERIC (a NaN/Inf in R or G; R is left unchanged); QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__cayley_step(const qnpu__cayley_cfg *cfg, float *R, const float *G, int64_t n,
                              float lr, qnpu__prng *g, float *work, int *did_qr,
                              float *alpha_out);

/* The QR retraction of §6.2, in place on X (n, n):
 *     (Qm, Rm) = qr(Xᵀ);   Qm <- Qm·diag(sign(diag(Rm)));   X <- Qmᵀ
 * i.e. X becomes the transpose of the orthogonal factor of the QR decomposition of Xᵀ whose
 * triangular factor has a non-negative diagonal (that QR is unique for an invertible X, so the
 * result does not depend on how the decomposition is computed). Householder reflections in
 * float32 storage with the inner products accumulated in double; a zero diagonal entry of Rm
 * (a singular X, probability 0) counts as sign +1 where the reference's sign() would zero the
 * column. `work` holds n² + 2n floats (not NULL). */
void qnpu__cayley_qr_retract(float *X, int64_t n, float *work);

/* ---- schedule, clipping, SGD (§8.1, rule 13) --------------------------------------------- */

/* Schedules; the values are the choice indices of optim.schedule ("cosine|constant"). */
typedef enum qnpu__lr_schedule {
    QNPU__LR_COSINE = 0,  /* lr · ½(1 + cos(π·t/T)), no warm-up (§8.1)  */
    QNPU__LR_CONSTANT = 1 /* lr                                          */
} qnpu__lr_schedule;

/* The rate of optimizer step t (0-based) out of T. Cosine: lr·½(1 + cos(π·t/T)) for t < T, so
 * step 0 runs at lr and the rate decays towards 0 at t = T (the Hugging Face cosine schedule
 * with zero warm-up that the reference uses); 0 for t >= T. T <= 0 or an unknown schedule:
 * lr (constant). Computed in double. */
double qnpu__lr_at(int schedule, double lr, int64_t t, int64_t T);

/* One gradient tensor of the set clipped together. */
typedef struct qnpu__grad_ref {
    float *g;
    size_t n;
} qnpu__grad_ref;

/* Global L2-norm clip over every tensor together (rule 13 step 2; PyTorch's
 * clip_grad_norm_ semantics):
 *     norm = sqrt(Σ over all tensors Σ g²)            (double, tensors in order: deterministic)
 *     c    = max_norm / (norm + 1e-6);  if c < 1: every g <- g · (float)c
 * max_norm = 0 turns the clip off (the norm is still computed). *norm_out (may be NULL)
 * receives the norm before clipping, *clipped (may be NULL) 1 if the gradients were scaled.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (max_norm negative or NaN, a NULL tensor with n > 0);
 * QNPU_ERR_NUMERIC if the norm is not finite (the gradients are left unchanged). */
qnpu_status qnpu__clip_grad_norm(const qnpu__grad_ref *refs, size_t count, double max_norm,
                                 double *norm_out, int *clipped);

/* Plain SGD (momentum 0, no weight decay): p[i] <- p[i] − lr·g[i] in float32, i < n. */
void qnpu__sgd_step(float *p, const float *g, size_t n, float lr);

#endif
