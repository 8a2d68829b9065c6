/* stage1.h — loss and rotation gradients of stage 1 (issue 5; METHOD.md §4.3, §6.1, §8.1). Private.
 *
 * qnpu__s1_loss_grad runs one block of T tokens through a PREPARED float model (norm weights
 * fused to ones, rotate-half RoPE, online R4 in any layers) whose rotations R1 (d × d) and R2[l] (dh × dh,
 * one per layer) are kept UNFUSED: every weight is rotated on the fly by the map of §4.3, with
 * activations as row vectors (x' = x·R) and weights W [out][in]:
 *
 *     embedding   E'  = E·R1                    (only the T looked-up rows are rotated)
 *     q, k        W'  = W·R1                    (pre)
 *     v           W'  = B2ᵀ·W·R1,  b' = b·B2    (pre R1; post B2 = blockdiag of R2 over the KV heads)
 *     o           W'  = R1ᵀ·W·B2q               (pre B2q = blockdiag of R2 over the query heads; post R1)
 *     gate, up    W'  = W·R1                    (pre)
 *     down        W'  = R1ᵀ·W                   (post; W = W_down·R4 when the layer has online R4,
 *                                                as the rotator fused it)
 *     lm_head     W'  = W·R1                    (pre)
 *
 * The loss is the mean next-token cross-entropy of the block (§8.1): rows 0 .. T−2 predict
 * tokens 1 .. T−1 (T − 1 scored rows). The gradients follow the contributions table of §6.1:
 * G_W' = ∂L/∂W' comes from lib/optim/backward.c, then
 *     pre   W' = A·R         ∂L/∂R += Aᵀ·G_W'
 *     post  W' = Rᵀ·A        ∂L/∂R += A·G_W'ᵀ           (+ bᵀ·g_b' for a bias)
 * where A is the weight with the OTHER rotation of the same linear already applied (v and o
 * carry two), block-diagonal rotations summing their diagonal blocks, and the embedding adds
 * Σ_t E[tok_t]ᵀ·∂L/∂x0[t]. The gradients are Euclidean (∂L/∂R entry by entry, R unconstrained);
 * the Cayley step (cayley.h) turns them into a step on the manifold.
 *
 * Online R4 (m->r4[l], a fixed Hadamard plan, not learned): the down input is silu(g)·u·R4 (the
 * tensor the down-input hook sees, as the deployed graph's down.in), and the backward takes its
 * gradient back through R4ᵀ. Stage 1 applies R4 as a dense ff × ff product (BLIS).
 *
 * Batches: qnpu__s1_loss_grad_batch runs nseq sequences of T tokens at once (N = nseq·T rows
 * through every linear, norm and quantizer; RoPE and causal attention per sequence, each from
 * position 0). The loss is the mean over all nseq·(T − 1) scored rows, which equals the mean of
 * the sequences' losses. Each hook sees all N rows in ONE call: a micro-batch is one application
 * of every quantizer (one clamp, one warm-up call; METHOD.md §5, §7.3).
 *
 * Memory: the forward keeps each layer's input (L + 1 residual streams of N × d) and, when all
 * layers' activations fit in QNPU__S1_KEEP_BYTES, every layer's activations; otherwise the
 * backward recomputes each layer's activations from its input, so memory is bounded by one
 * layer's. Rotated weights are built one layer at a time.
 *
 * Quantization hook (the next step of issue 5): every weight is rotated first, THEN passed to
 * the hook (rotation before fake quantization, §6.1), and so are the four rotated linear inputs.
 * A hook is optional per kind; NULL means float (x̂ = x). See qnpu__s1_hooks.
 *
 * Thread safety: no global state; `threads` is the BLIS thread count of the products. */
#ifndef QNPU_OPTIM_STAGE1_H
#define QNPU_OPTIM_STAGE1_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

/* The fake-quantization points the hooks see. */
typedef enum qnpu__s1_point {
    /* weights (rows × cols = out × in of the ROTATED weight) */
    QNPU__S1_W_Q = 0, QNPU__S1_W_K, QNPU__S1_W_V, QNPU__S1_W_O, QNPU__S1_W_GATE, QNPU__S1_W_UP,
    QNPU__S1_W_DOWN, QNPU__S1_W_LM_HEAD,
    /* activations (rows × cols = T × width): the four rotated linear inputs */
    QNPU__S1_A_QKV,  /* RMSNorm output read by q/k/v (one forward application, one shared QP) */
    QNPU__S1_A_O,    /* attention output read by o_proj                                     */
    QNPU__S1_A_GATE_UP, /* RMSNorm output read by gate/up                                    */
    QNPU__S1_A_DOWN, /* silu(gate)·up read by down_proj                                      */
    QNPU__S1_N_POINTS
} qnpu__s1_point;

/* Fake-quantization hooks. `layer` is −1 for lm_head. Either function may be NULL (the point is
 * then float for that direction: fq NULL = identity, fq_backward NULL = straight-through dx = g).
 *
 *   fq(user, point, layer, x, y, rows, cols)
 *       y = x̂ (the fake-quantized x); x and y do not alias. Called in the forward AND again when
 *       the backward recomputes the layer (it must be deterministic).
 *   fq_backward(user, point, layer, consumer, x, g, dx, rows, cols)
 *       x = the input of fq, g = ∂L/∂x̂ of ONE consuming linear; writes dx = that linear's share
 *       of ∂L/∂x (the STE passes g through; dx may equal g) and accumulates the quantizer's own
 *       parameter gradients (e.g. with qnpu__lq_backward_channel / _tensor of qgrad.h). Called
 *       in the backward pass (only when gradients are asked for) once per CONSUMING LINEAR of
 *       each application (METHOD.md §2.4, rule 11): the shared q/k/v input three times per
 *       layer (consumer 0 = q, 1 = k, 2 = v, each with that linear's own ∂L/∂x̂), the shared
 *       gate/up input twice (0 = gate, 1 = up), every other point once (consumer 0). The
 *       backward then sums the consumers' dx into ∂L/∂x (pure STE: the sum of their g).
 *       qnpu__s1_consumers(point) gives the count (the warm-up share of §7.3, rule 12).
 * A non-QNPU_OK return aborts qnpu__s1_loss_grad with that status. */
typedef struct qnpu__s1_hooks {
    void *user;
    qnpu_status (*fq)(void *user, int point, int64_t layer, const float *x, float *y, int64_t rows,
                      int64_t cols);
    qnpu_status (*fq_backward)(void *user, int point, int64_t layer, int consumer, const float *x,
                               const float *g, float *dx, int64_t rows, int64_t cols);
    unsigned enabled; /* bit p set: point p is quantized (both directions); 0 = all float      */
    int force_recompute; /* 1: recompute every layer in the backward even when the activations
                          * would fit in QNPU__S1_KEEP_BYTES (tests; the result is the same)    */
} qnpu__s1_hooks;

/* The number of linears that read point `point` (rule 11): 3 for QNPU__S1_A_QKV, 2 for
 * QNPU__S1_A_GATE_UP, 1 for every other point. */
static inline int qnpu__s1_consumers(int point)
{
    return point == QNPU__S1_A_QKV ? 3 : point == QNPU__S1_A_GATE_UP ? 2 : 1;
}

/* Activations kept for the backward instead of recomputed, at most this many bytes. */
#define QNPU__S1_KEEP_BYTES (1024.0 * 1024.0 * 1024.0)

/* A work space kept between calls (fresh pages cost a page fault each): base (qnpu__malloc'ed,
 * the owner frees it with qnpu__free) holds cap floats; {NULL, 0} to start. */
typedef struct qnpu__s1_ws {
    float *base;
    size_t cap;
} qnpu__s1_ws;

/* Forward and backward of nseq blocks of T tokens (tokens: nseq·T ids, block after block); ws
 * (may be NULL: allocate per call) is grown as needed; the other arguments as
 * qnpu__s1_loss_grad below, which is the one-block case. */
qnpu_status qnpu__s1_loss_grad_batch(const qnpu_model *m, const float *R1, const float *const *R2,
                                     const int32_t *tokens, int64_t nseq, int64_t T, const qnpu__s1_hooks *hooks,
                                     int threads, double *loss, float *gR1, float *const *gR2, int acc,
                                     qnpu__s1_ws *ws);

/* Forward and backward of one block.
 *   m       prepared float model (m->prepared, unit norm weights, rope_half; online R4 plans of
 *           order ffn in any layers)
 *   R1      d × d row-major;  R2  n_layers pointers to dh × dh row-major (R2 may be NULL: identity
 *           everywhere, R1 may be NULL: identity)
 *   tokens  T ids in [0, vocab), T >= 2
 *   hooks   NULL = float everywhere
 *   loss    (may be NULL) the mean cross-entropy over the T − 1 scored rows (double)
 *   gR1     (may be NULL) d × d: ∂L/∂R1;  gR2 (may be NULL) n_layers pointers to dh × dh: ∂L/∂R2[l]
 *           With both NULL (and no fq_backward hook) only the forward runs.
 *   acc     0: overwrite gR1 / gR2;  1: add to them (micro-batches)
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL model or tokens, T < 2, a token outside the
 * vocabulary, a model that is not prepared, has norm weights other than 1 or an online R4 whose
 * order is not the FFN width); QNPU_ERR_NO_MEMORY; a hook's status. */
static inline qnpu_status qnpu__s1_loss_grad(const qnpu_model *m, const float *R1, const float *const *R2,
                                             const int32_t *tokens, int64_t T, const qnpu__s1_hooks *hooks,
                                             int threads, double *loss, float *gR1, float *const *gR2, int acc)
{
    return qnpu__s1_loss_grad_batch(m, R1, R2, tokens, 1, T, hooks, threads, loss, gR1, gR2, acc, NULL);
}

/* ---- block-wise reconstruction (METHOD.md §13, optim.loss = block_mse) --------------------------
 *
 * The residual stream of nseq blocks of T tokens (N = nseq·T rows of d) is taken through the
 * layers one at a time. Same model conditions, rotations and hooks as above.
 *
 * qnpu__s1_block_input: x (N × d) = the input of layer l (0 <= l <= n_layers): E[tokens]·R1
 * taken through layers 0 .. l − 1 with the hooks' forward (fake-quantized); l = 0 gives the
 * rotated embedding rows. Forward only (no backward hook is called). Memory: one layer's
 * activations and one extra residual stream.
 *
 * qnpu__s1_block_grad: layer l (0 <= l < n_layers) run twice on the same input x_in (N × d):
 *     y_f = the float layer: no hooks, R1 as given, R2[l] left out (identity; the float layer's
 *           output does not depend on R2, so y_f is a constant of the trained parameters);
 *     y_q = the fake-quantized layer: the hooks, R1 and R2[l];
 *     mse = Σ (y_q − y_f)² / (N·d)                                          (double)
 * then the reverse pass of mse through the quantized layer: the hooks' backward (weights and
 * activations, as in qnpu__s1_loss_grad_batch, rule 11's per-consumer calls) and gR2l =
 * ∂mse/∂R2[l] (dh × dh, overwritten; NULL = not asked). R1 gets no gradient. With gR2l NULL and
 * no fq_backward hook only the two forwards run. x_out_q (may be NULL) receives y_q, the next
 * layer's input; it may not be x_in. mse may be NULL.
 *
 * Both: T >= 1 (sequences of one token are allowed), each sequence from position 0; ws as in
 * qnpu__s1_loss_grad_batch (may be NULL). @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL model or
 * input, nseq < 1, T < 1, l out of range, a token outside the vocabulary, a model as refused
 * above); QNPU_ERR_NO_MEMORY; a hook's status. */
qnpu_status qnpu__s1_block_input(const qnpu_model *m, const float *R1, const float *const *R2,
                                 const int32_t *tokens, int64_t nseq, int64_t T, int64_t l,
                                 const qnpu__s1_hooks *hooks, int threads, float *x, qnpu__s1_ws *ws);

qnpu_status qnpu__s1_block_grad(const qnpu_model *m, const float *R1, const float *const *R2, int64_t l,
                                const float *x_in, int64_t nseq, int64_t T, const qnpu__s1_hooks *hooks,
                                int threads, double *mse, float *gR2l, float *x_out_q, qnpu__s1_ws *ws);

#endif
