/* gptq.h — GPTQ weight rounding with the learned scales (issue 5; METHOD.md §8.2 step 2, §13
 * "GPTQ weight rounding": optim.weight_round = gptq, optim.gptq_damp). Private.
 *
 * Stage 2 quantizes each fused decoder weight round-to-nearest with the learned per-row scale,
 * q = clamp(rne(W/s_w[o]), qmin, qmax). GPTQ keeps those scales and chooses the codes instead,
 * column by column, feeding each column's rounding error forward into the columns not yet
 * quantized (second-order error feedback through the inverse Hessian of the layer's input). The
 * result is written back into the float model as s_w[o]·q, so stage 2's round-to-nearest with the
 * same scales reproduces exactly the GPTQ codes (|q| ≤ 2^(b−1) and s·q is one float32 rounding
 * away from the exact product, so (s·q)/s rounds back to q).
 *
 * The kernel (qnpu__gptq_matrix), per linear y = x·Wᵀ, W [rows][cols], in float64:
 *   1. H is 2·XᵀX of the linear's input X over the calibration tokens (cols × cols);
 *   2. dead inputs (H_ii == 0): H_ii = 1 and column i of W is zeroed (its code is 0);
 *   3. damping: H_ii += damp · mean(diag H) (the mean after step 2);
 *   4. U = the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), through H = LLᵀ, H⁻¹ = L⁻ᵀL⁻¹;
 *   5. for i = 0 .. cols − 1, for every row r:
 *          q[r][i] = clamp(rne(w[r][i] / s[r]), qmin, qmax)      (w in float64, s[r] widened)
 *          e       = (w[r][i] − s[r]·q[r][i]) / U[i][i]
 *          w[r][j] −= e · U[i][j]                    for j > i   (error feedback)
 *      where w is the working copy updated by the earlier columns. This is the OBS update of
 *      the remaining columns with the inverse Hessian of the remaining block, in the form of the
 *      GPTQ paper (rows are independent; they are processed in chunks so U's row i is read once
 *      per chunk). No activation ordering; no lazy column blocks (they regroup the same updates
 *      for memory traffic, which the row chunks take care of here).
 *
 * The model pass (qnpu__gptq_weights), on the fused model stage 2 will quantize, in place,
 * sequential over the layers: layer l's Hessians are taken with layers < l already replaced by
 * their GPTQ weights. One forward of every calibration block per layer, through
 * qnpu__s1_loss_grad (R1 = R2 = NULL: the rotations are fused), collects the four inputs of
 * layer l; then GPTQ runs on its four groups of linears that share an input:
 *     q/k/v   (input QNPU__S1_A_QKV, one H, the three weights stacked row-wise, one kernel call)
 *     o       (QNPU__S1_A_O)
 *     gate/up (QNPU__S1_A_GATE_UP, one H, stacked)
 *     down    (QNPU__S1_A_DOWN)
 * The forward-only hook makes the forward the one the deployed model runs at the linear inputs
 * and weights:
 *   - weights already replaced (layers < l) pass unchanged (they hold s·q); every other decoder
 *     weight (layer l and later) is round-to-nearest with the learned scales
 *     (qnpu__weight_fake_quant, = stage 2's codes), so within layer l the inputs of o, gate/up and
 *     down are those of the RTN q/k/v, o, gate/up (GPTQ's default, not its "true sequential"
 *     variant: on stories260K W4A8 the latter took twice as long for no gain, 6.54 vs 6.51 PPL);
 *   - a learned linear input (qp->act_learned[l·4 + a]) is fake-quantized as the deployed graph
 *     does it, the observer form of §2.3 with (s, rne(z)) at act_bits (qnpu__fq_observer_vec; the
 *     learnable form of §2.2 can differ from it by one code on rare ties); a point not learned
 *     (16 bits, or not quantized) stays float (stage 2 calibrates it at 16 bits: nearly float);
 *   - at each of layer l's four inputs the fake-quantized X is added into its H (2·XᵀX: a float32
 *     product per block, accumulated in float64); the forward stops after the down input (the
 *     rest of the model is not needed).
 * Cost: layer l's pass runs l + 1 layers, so L(L + 1)/2 layer forwards per block in all (a
 * per-layer forward from cached layer inputs would make it L; stage1.h does not offer one).
 * Everything else the deployed graph quantizes (16-bit norms, KV cache, attention, lm_head) is
 * float in these forwards, as in stage 1.
 *
 * Determinism: no global state; the same model, qparams, blocks and thread count give the same
 * weights (the float32 products are BLIS's, fixed for a thread count).
 *
 * Thread safety: the functions are reentrant; `fused` is modified and must not be shared. */
#ifndef QNPU_OPTIM_GPTQ_H
#define QNPU_OPTIM_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "../calib/calibrate_learned.h"
#include "../internal.h"

/* GPTQ on one matrix (steps 2–5 above).
 *   W       rows × cols, row-major (leading dimension cols): on return W[r][c] = codes · scales[r]
 *           in float32 (the dequantized GPTQ weight)
 *   H       cols × cols, symmetric, row-major, float64: 2·XᵀX (only the lower triangle i ≥ j is
 *           read); not modified
 *   scales  rows per-row symmetric scales (finite, > 0)
 *   bits    weight bits in [2, 8] (symmetric range of METHOD.md §2.1)
 *   damp    the damping fraction (optim.gptq_damp), finite, >= 0
 *   codes   (may be NULL) rows × cols int8 codes
 * On an error W and codes are left unchanged.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL pointers, sizes < 1, bits, a bad scale or damp);
 * QNPU_ERR_NUMERIC (NaN/Inf in W or H, or the damped H is not positive definite, e.g. damp = 0
 * with a singular H); QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__gptq_matrix(float *W, int64_t rows, int64_t cols, const double *H, const float *scales,
                              int bits, double damp, int8_t *codes);

/* Replace, in place, the seven decoder weights of every layer of `fused` by their GPTQ weights
 * s_w·q with the learned scales of qp (see above), the Hessians taken on nblocks calibration
 * blocks of T tokens (blocks + i·T). fused must be a prepared float model that OWNS its decoder
 * weights (e.g. from qnpu__train_export or qnpu__rotator_fuse; a model whose weights are mapped
 * from a file is refused); qp must match it (qnpu__train_export's qparams). Options: only
 * optim.gptq_damp and num_threads are read (NULL = defaults). On an error the model may be
 * partly replaced (layers already done) and should be discarded.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL arguments, nblocks < 1, T < 2, a token out of
 * range, a model that is not prepared or does not own its weights, qparams that do not match the
 * model, weight bits outside [2, 8], a learned scale that is not finite and positive);
 * QNPU_ERR_NUMERIC; QNPU_ERR_NO_MEMORY. Online R4 (m->r4) is part of the layer forward that
 * collects each down input. */
qnpu_status qnpu__gptq_weights(qnpu_model *fused, const qnpu__train_qparams *qp, const int32_t *blocks,
                               int64_t nblocks, int64_t T, const qnpu_options *o);

#endif
