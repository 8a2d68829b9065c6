/* backward.h — reverse-mode operators of the LLaMA layer in float32, for stage 1 (issue 5,
 * METHOD.md §6.1, §8.1). Private.
 *
 * Each function is the vector-Jacobian product of one forward operation: given the forward's
 * inputs and dy = ∂L/∂y, it returns the gradients of the inputs. The forward operations are
 * those of lib/float/ops.h (RMSNorm, RoPE, softmax, SwiGLU, NLL), which the backward reuses
 * where it needs a forward value; the two the float session keeps private (linear, causal GQA
 * attention) have forward twins here, computed the same way.
 *
 * Layouts (row-major, T = tokens):
 *   activations  x (T, d);  linear weights W [out][in] (y = x·Wᵀ + b)
 *   attention    q (T, H·dh), k and v (T, KV·dh), output o (T, H·dh); head h reads KV head
 *                h / (H/KV) (grouped-query attention)
 *
 * Output convention: `acc` = 0 overwrites the gradient outputs, `acc` = 1 adds to them (for
 * parameters shared across tokens, micro-batches or branches of the graph). Reductions run in a
 * fixed order, so results do not depend on anything but the inputs and the BLIS thread count.
 * Thread safety: no global state; `threads` is the BLIS thread count of the products. */
#ifndef QNPU_OPTIM_BACKWARD_H
#define QNPU_OPTIM_BACKWARD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../internal.h"

/* ---- RMSNorm (unit weight: the norms are fused into the linears, §4.1) ----------------------- */

/* Forward y = x·r per row, r = 1/sqrt(mean(x²) + eps) (qnpu__rmsnorm with w = 1). Backward:
 *     dx = r·dy − x·r³·(dy·x)/d          per row of width d (in double, stored as float)
 * dx may not alias x; it may alias dy when acc = 0. */
void qnpu__rmsnorm_backward(float *dx, const float *x, const float *dy, int64_t T, int64_t d,
                            double eps, int acc);

/* ---- linear ------------------------------------------------------------------------------------ */

/* y (T, out) = x (T, in)·Wᵀ + b (b may be NULL), through qnpu__sgemm. */
void qnpu__linear_forward(int threads, int64_t T, int64_t n_out, int64_t n_in, const float *x,
                          const float *W, const float *b, float *y);
/* Backward of y = x·Wᵀ + b:
 *     dx (T, in)   = dy·W            dW (out, in) = dyᵀ·x            db (out) = Σ_t dy[t]
 * through qnpu__sgemm (db summed in double). Any of dx, dW, db may be NULL (not wanted). */
void qnpu__linear_backward(int threads, int64_t T, int64_t n_out, int64_t n_in, const float *x,
                           const float *W, const float *dy, float *dx, float *dW, float *db, int acc);

/* ---- RoPE --------------------------------------------------------------------------------------- */

/* Backward of qnpu__rope (same arguments): each pair is rotated by −θ, the inverse (and
 * transpose) of the forward rotation. In place: d holds dy on entry and dx on return. Runs
 * qnpu__rope itself with a negated sine table of the T positions, so both orders (half = 1
 * rotate-half, half = 0 interleaved) are covered and the arithmetic is the forward's.
 * @return QNPU_OK or QNPU_ERR_NO_MEMORY (the table of T·dh/2 floats). */
qnpu_status qnpu__rope_backward(float *d, int64_t T, int64_t ld, int64_t n_heads, int64_t dh,
                                int64_t pos0, const float *cos_t, const float *sin_t, int half);

/* ---- causal attention with GQA ------------------------------------------------------------------ */

/* e^x for x <= 0 (a softmax argument after the row maximum): x = n·ln 2 + r with |r| <= ln 2 / 2
 * (Cody–Waite split of ln 2), e^r by its degree-6 Taylor polynomial (truncation < 1.2e-7
 * relative), 2^n through the exponent bits; x below −87 is taken as −87 (e^−87 ≈ 1.6e−38, still a
 * normal float). Plain arithmetic without branches or library calls, so the attention's row
 * loops (backward.c) vectorize; here so the tests' scalar reference uses the same function. */
static inline __attribute__((always_inline)) float qnpu__exp_nonpos(float x)
{
    x = x < -87.0f ? -87.0f : x;
    float n = x * 1.44269504f + 12582912.0f; /* round to nearest through the 2^23·1.5 shifter */
    n -= 12582912.0f;
    float r = x - n * 0.693145752f;
    r = r - n * 1.42860677e-6f;
    float p = 1.38888889e-3f;
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t e = ((int32_t)n + 127) * (1 << 23);
    float sc;
    memcpy(&sc, &e, sizeof sc);
    return p * sc;
}

/* Floats of workspace for the attention functions: 4·dh·T + 2·T. */
size_t qnpu__attention_work_floats(int64_t T, int64_t dh);

/* Forward, per head h with g = h / (H/KV), positions 0 .. T−1:
 *     S = q_h·k_gᵀ/√dh,  P = softmax over the keys j <= i of row i,
 *     P[i][j] = 0 for j > i (causal mask),  o_h = P·v_g
 * row by row over the unmasked keys only, in float32 with fixed-order partial sums and a
 * polynomial exponential (relative error < 2e-7; not bit-identical to the float session's
 * expf). `threads` is unused (the callers run sequences in parallel). `work` holds
 * qnpu__attention_work_floats(T, dh) floats or is NULL (then allocated).
 * @return QNPU_OK, QNPU_ERR_INVALID_ARG (H not a multiple of KV, bad sizes), QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__attention_forward(int threads, int64_t T, int64_t H, int64_t KV, int64_t dh,
                                    const float *q, const float *k, const float *v, float *o,
                                    float *work);
/* Backward of the forward above, recomputing P from q and k (nothing is stored between the two
 * passes). Per head, with do_h = ∂L/∂o_h:
 *     dP = do_h·v_gᵀ;   dS[i][j] = P[i][j]·(dP[i][j] − Σ_l P[i][l]·dP[i][l])   (j <= i)
 *     dq_h = dS·k_g/√dh;   dk_g += dSᵀ·q_h/√dh;   dv_g += Pᵀ·do_h
 * (the KV heads sum over the H/KV query heads of their group). dq, dk, dv may each be NULL.
 * @return as qnpu__attention_forward. */
qnpu_status qnpu__attention_backward(int threads, int64_t T, int64_t H, int64_t KV, int64_t dh,
                                     const float *q, const float *k, const float *v, const float *dout,
                                     float *dq, float *dk, float *dv, int acc, float *work);

/* ---- SwiGLU --------------------------------------------------------------------------------------- */

/* Backward of h = silu(g)·u (qnpu__swiglu), n elements, σ = 1/(1 + e^−g):
 *     dg = dh·u·σ·(1 + g·(1 − σ)),     du = dh·silu(g) = dh·g·σ
 * dg or du may be NULL. Outputs may alias dh when acc = 0 (element-wise). */
void qnpu__swiglu_backward(float *dg, float *du, const float *g, const float *u, const float *dh,
                           int64_t n, int acc);

/* ---- embedding ------------------------------------------------------------------------------------ */

/* Backward of the lookup x[t] = E[tokens[t]]: dE[tokens[t]] += dx[t] (scatter-add over t in
 * order; always accumulates). dE is (vocab, d).
 * @return QNPU_OK or QNPU_ERR_INVALID_ARG (a token outside [0, vocab); nothing is added). */
qnpu_status qnpu__embedding_backward(float *dE, const float *dx, const int32_t *tokens, int64_t T,
                                     int64_t d, int64_t vocab);

/* ---- cross-entropy ----------------------------------------------------------------------------------- */

/* Mean next-token cross-entropy over the N rows of logits (N, vocab) (§8.1: mean over all
 * predicted positions of the batch). targets[i] < 0 marks a row that is not scored.
 *     loss = (1/N_s)·Σ_scored −log softmax(logits_i)[targets_i]      (qnpu__nll, double)
 *     dlogits_i = (softmax(logits_i) − onehot(targets_i)) / N_s       (qnpu__softmax), 0 if not scored
 * N_s = the number of scored rows (loss 0 and dlogits 0 when N_s = 0). dlogits may be NULL; it
 * may not alias logits unless acc = 0. loss and scored may be NULL.
 * @return QNPU_OK, QNPU_ERR_INVALID_ARG (a target >= vocab; nothing is written),
 * QNPU_ERR_NO_MEMORY (acc = 1 needs one row of scratch). */
qnpu_status qnpu__cross_entropy(const float *logits, const int32_t *targets, int64_t N, int64_t vocab,
                                float *dlogits, int acc, double *loss, int64_t *scored);

#endif
