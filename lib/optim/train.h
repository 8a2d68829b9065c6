/* train.h — the stage-1 training loop (issue 5; METHOD.md §7, §8.0 steps 2–4, §8.1, §12 rules
 * 5, 7, 8, 11–13, 16, 25). Private.
 *
 * The model. A PREPARED float model with its rotations NOT fused: qnpu_rotator_run with
 * rotate.r1 = rotate.r2 = identity (norms fused, untied, rotate-half RoPE), and rotate.r4 off or
 * on the layers that get an online R4 (its fixed Hadamard fused into their down weights).
 * The rotations live here, unfused, and qnpu__s1_loss_grad (stage1.h) applies them on the fly.
 *
 * Initial rotations (§8.0 step 2). Built by qnpu__train_create from the TRAINING options'
 * rotate.r1 / rotate.r2 (identity | random_hadamard | random_orthogonal), with the same seeds as
 * the rotator (rotate.seed mixed with (1, 0) for R1 and (2, l) for R2 of layer l), so the
 * starting R1 / R2 are exactly the matrices qnpu_rotator_run would have fused with those options.
 * A random Hadamard comes from qnpu__hadamard_plan (random signs) made dense in double and
 * rounded to float32; random_orthogonal from qnpu__random_orthogonal (stream 0).
 *
 * The learned quantizers (§2.5, §2.4):
 *   - the 7 decoder weights of each layer (q, k, v, o, gate, up, down): per output channel,
 *     symmetric, quant.w_bits (4), one scale per row of the ROTATED weight;
 *   - the four linear inputs of each layer, per tensor, asymmetric: q/k/v (one shared QP), o,
 *     gate/up (one shared QP) at quant.a_bits (8) and down at quant.down_a_bits (16), with
 *     quant.bits_override applied per layer by the calibrator's resolver (qnpu__qp_assign_bits,
 *     lib/calib/qgraph.h; e.g. 'layer0.*.in:8'), so every layer has its own bit-width per point
 *     (qnpu__train_option_bits); mixed precision (lib/mixed/mixed.h) may change them before
 *     training (qnpu__train_set_act_bits). A point at 16 bits or more, or at 0 (not quantized),
 *     is a pass-through and is not learned (rule 16): a point kind stays enabled in the hooks
 *     while any layer quantizes it, and its pass-through layers give y = x forward and a pure
 *     straight-through backward with no parameter gradient.
 *   lm_head and the embedding stay float (§2.5).
 *
 * Initialization (qnpu__train_init, §7). One forward per calibration block through
 * qnpu__s1_loss_grad with every quantizer a pass-through (§7.1) while it observes:
 *   - activations: one observer update per block (one sample of §7.2) with init.act_rotated
 *     (mean3sigma default: per-sample μ ± init.sigma_k·σ, EMA init.ema; z kept as a float, rule 7)
 *     for q/k/v, o, gate/up and the down input of a layer with online R4 (m->r4[l]), and
 *     init.act_unrotated (minmax) for the down input of a layer without;
 *   - weights: once, on the first call, per output row of the rotated weight: init.weight
 *     (mean3sigma: s_r = max(|μ_r − kσ_r|, |μ_r + kσ_r|, 1e-5)/qmax, rule 8; minmax: max|w_r|).
 *
 * One optimizer step (qnpu__train_step, rule 13), on B blocks of T tokens:
 *   1. the B blocks are cut into micro-batches of optim.micro_batch sequences (8: two per step
 *      of 16, like the reference's two accumulation steps per device); each micro-batch is one
 *      qnpu__s1_loss_grad_batch call into its own slot (qnpu__train_slot), i.e. one application
 *      of every quantizer. The loss of the step is the mean over all predicted positions, so a
 *      micro-batch of m sequences contributes (its loss)·m/B: its quantizer gradients see
 *      g·m/B (the per-application clamp of rule 11 acts on the gradient of the step's loss, like
 *      the reference's loss/accumulation; the STE passes g on unchanged) and its ∂L/∂R is
 *      weighted by m/B. With several micro-batches and threads they run side by side, one BLIS
 *      thread each, and the slots are summed in micro-batch order, so the step's gradients do
 *      not depend on the thread count.
 *   2. qnpu__clip_grad_norm over every trained gradient (R1, all R2, weight scales, activation s
 *      and z, in that order) to optim.clip_norm;
 *   3. qnpu__sgd_step on the scales and zero points at optim.qparam_lr_ratio · lr_t, then the
 *      guard of §2.2: s <- max(s, 1e-3·s_init), counted in `projections`;
 *   4. qnpu__cayley_step on R1 and every R2[l] at lr_t (one PRNG for the QR draws, stream 5 of
 *      rotate.seed, drawn in the order R1, R2[0], R2[1], …);
 *   lr_t = qnpu__lr_at(optim.schedule, optim.lr, t, optim.steps), t = steps taken so far.
 *   optim.train_rotation = false skips 4 (and the R gradients); optim.train_qparams = false
 *   skips 3 (static RTN after initialization, the qparam gradients are still accumulated).
 *
 * Sharing (rule 11): stage1.h calls the q/k/v input's backward hook three times per layer and
 * block (consumer 0 = q, 1 = k, 2 = v), each with that linear's own ∂L/∂x̂, and the gate/up
 * input's twice (gate, up); each call is one application of qnpu__lq_backward_tensor, so the
 * shared QP receives one CLAMPED contribution per consuming linear (not one clamp of the sum).
 * The warm-up term (§7.3, rule 12) is added in each of those calls with share 3 (q/k/v), 2
 * (gate/up) or 1, and its counter is per application, i.e. per (layer, point, consumer):
 * init.warmup_calls backward calls of each consuming linear, one per micro-batch (micro-batch mb
 * of a step warms up while the counter exceeds mb; the step then takes its micro-batches off the
 * counter), so 256 calls last 128 steps of two micro-batches, as in the reference.
 *
 * Determinism (rule 25): no global state; the same model, options and blocks give bit-identical
 * R, scales and zero points, whatever the thread count (tested) — as long as BLIS runs one thread
 * per micro-batch, i.e. a step has at least two micro-batches or the state has one thread.
 *
 * Thread safety: a qnpu__train is used by one thread at a time. */
#ifndef QNPU_OPTIM_TRAIN_H
#define QNPU_OPTIM_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "../calib/calibrate_learned.h"
#include "../calib/quant.h"
#include "../common/prng.h"
#include "../internal.h"
#include "cayley.h"
#include "qgrad.h"
#include "stage1.h"

#define QNPU__TRAIN_NW 7 /* learned weights per layer: the points QNPU__S1_W_Q .. QNPU__S1_W_DOWN */
#define QNPU__TRAIN_NA 4 /* activation QPs per layer: QNPU__S1_A_QKV .. QNPU__S1_A_DOWN          */
#define QNPU__TRAIN_NC 3 /* most linears reading one activation QP (q/k/v)                       */

struct qnpu__train;

/* One micro-batch of a step: its private gradients (the hooks of its forward/backward write
 * here), its position mb in the step (the warm-up offset) and its result. The step sums the
 * slots in micro-batch order, so the result does not depend on which thread ran which slot. */
typedef struct qnpu__train_slot {
    struct qnpu__train *t;
    qnpu__s1_hooks hooks;  /* user = this slot */
    float *gR1, *gR2all, **gR2, *gws, *gas, *gaz;
    float *scratch;
    size_t scratch_n;
    qnpu__s1_ws ws;        /* the forward/backward's work space, kept between steps             */
    qnpu__lq_stats stats;
    int64_t mb;            /* micro-batch index within the step                                  */
    float gscale;          /* the micro-batch's share of the step's loss: its sequences / B        */
    const int32_t *tokens; /* nseq blocks of T tokens                                              */
    int64_t nseq, T;
    int threads;           /* BLIS threads inside this micro-batch                                 */
    double loss;
    qnpu_status st;
    char err[256];         /* the worker thread's error message                                    */
} qnpu__train_slot;

typedef struct qnpu__train {
    const qnpu_model *m;
    int64_t d, dh, L;

    /* rotations (row-major) and their gradients; R2[l] = R2all + l·dh², same for gR2 */
    float *R1, *R2all, *gR1, *gR2all;
    float **R2, **gR2;

    /* weight scales: layer l, weight w (0 = q … 6 = down) at ws + woff[l·7 + w], wrows[w] rows */
    int64_t wrows[QNPU__TRAIN_NW], wcols[QNPU__TRAIN_NW];
    int64_t *woff, wtotal;
    float *ws, *gws, *ws_init;
    unsigned char *winit; /* per (l, w): initialized */

    /* activation QPs: index l·4 + a (a = point − QNPU__S1_A_QKV) */
    float *as, *az, *gas, *gaz, *as_init;
    int64_t *warm;         /* warm-up calls left per (l, a, consumer): (l·4 + a)·3 + consumer */
    int64_t warmup_calls;  /* init.warmup_calls */
    int *act_bits;         /* L·4: bit-width of activation QP l·4 + a (qnpu__train_act_learned) */
    int w_bits;
    qnpu__observer *obs;   /* L·4, live only inside qnpu__train_init */

    qnpu__s1_hooks hooks;  /* enabled = the quantized points (lm_head never); user = slots[0] */
    qnpu__train_slot *slots; /* nslots micro-batch slots; slots[0] also serves init and loss */
    int64_t nslots, micro_batch;
    qnpu__pool *pool;      /* min(threads, micro-batches) workers, made by the first step       */
    int mode;              /* 0 training (fake quant), 1 initializing (pass-through + observe) */
    double sigma_k;
    int init_weight, init_rot, init_unrot;

    /* optimizer */
    qnpu__lq_cfg cfg;
    qnpu__cayley_cfg ccfg;
    qnpu__prng prng;
    float *cwork;          /* Cayley workspace for the larger of d, dh */
    int threads, schedule, train_rot, train_q;
    int64_t steps, t;
    double lr, qlr_ratio, clip;

    /* diagnostics */
    int initialized;
    int64_t projections;   /* scale projections of the §2.2 guard (expected 0) */
    qnpu__lq_stats stats;  /* §5 case counts over the backward calls of every step */
} qnpu__train;

/* Last step's figures. */
typedef struct qnpu__train_info {
    double loss;    /* mean cross-entropy of the step's blocks, with fake quantization */
    double gnorm;   /* global gradient norm before the clip */
    double lr;      /* lr_t of the step */
    int clipped;    /* 1 if the clip scaled the gradients */
} qnpu__train_info;

/* Create the state for prepared model m (kept by reference; must outlive the state) with the
 * training options o (NULL = defaults): rotations built as described above, qparams zero until
 * qnpu__train_init. @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL, a model that is not prepared
 * or dims the rotations do not divide); QNPU_ERR_NO_MEMORY; a rotation-building error. */
qnpu_status qnpu__train_create(const qnpu_model *m, const qnpu_options *o, qnpu__train **out);
void qnpu__train_free(qnpu__train *t);

/* Initialize every learned quantizer on n calibration blocks of T tokens (blocks + i·T), §7.
 * Also resets the warm-up counters and the step counter. May be called again (re-initialization
 * after a selection, rule 18). @return QNPU_OK, QNPU_ERR_INVALID_ARG (n < 1, T < 2, a token out
 * of range), QNPU_ERR_NUMERIC, QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__train_init(qnpu__train *t, const int32_t *blocks, int64_t n, int64_t T);

/* 1 when an activation bit-width is learned (fake-quantized) in stage 1: 0 < bits < 16 (rule 16:
 * 16 bits or more is a pass-through; 0 = not quantized). */
static inline int qnpu__train_act_learned(int bits)
{
    return bits > 0 && bits < 16;
}

/* The bit-widths options o (NULL = defaults) give the L·4 activation QPs of stage 1, index
 * l·4 + a (a = 0 qkv.in, 1 o.in, 2 gateup.in, 3 down.in): quant.a_bits, quant.down_a_bits and
 * quant.bits_override through the calibrator's qnpu__qp_assign_bits, the same values stage 2
 * assigns. @return QNPU_OK; QNPU_ERR_INVALID_ARG (a malformed bits_override);
 * QNPU_ERR_UNSUPPORTED (a bits_override that gives some decoder weight other bits than
 * quant.w_bits: stage 1 learns one weight bit-width); QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__train_option_bits(const qnpu_options *o, int64_t L, int *bits);

/* Set the bit-widths of the L·4 activation QPs (bits[l·4 + a], each 0 or 2..16), e.g. after a
 * mixed-precision selection (METHOD.md §9.3): the observers and the hooks' enabled kinds follow,
 * and the state is marked uninitialized, so qnpu__train_init must run next (rule 18).
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL, a bit-width outside 0, 2..16);
 * QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__train_set_act_bits(qnpu__train *t, const int *bits);

/* One optimizer step on n blocks of T tokens (see above). info may be NULL.
 * @return QNPU_OK; QNPU_ERR_STATE (not initialized); QNPU_ERR_INVALID_ARG; QNPU_ERR_NUMERIC (a
 * NaN/Inf gradient; the parameters are then left as they were before the optimizer part);
 * QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__train_step(qnpu__train *t, const int32_t *blocks, int64_t n, int64_t T,
                             qnpu__train_info *info);

/* One micro-batch of a step with another loss (the block-wise MSE of blockwise.h): run the
 * slot's sl->nseq blocks of sl->T tokens (sl->tokens) with `hooks` (the slot's, fq_backward set:
 * they accumulate the slot's qparam gradients) on sl->threads BLIS threads, set sl->loss (the
 * micro-batch's mean loss) and, when rot_grads, the slot's gR2 of the trained layer (Euclidean,
 * of that loss). Called from worker threads, one slot each; sl->mb is the micro-batch index. */
typedef qnpu_status (*qnpu__train_mb_fn)(void *ctx, qnpu__train_slot *sl, const qnpu__s1_hooks *hooks,
                                         int rot_grads);

/* qnpu__train_step restricted to decoder layer `layer` (METHOD.md §13, optim.loss = block_mse):
 * each micro-batch runs fn instead of the end-to-end cross-entropy; then steps 2–4 on that
 * layer's parameters only — its R2, its 7 weight scales and 4 activation s / z (R1 and the other
 * layers stay as they are): the clip over those gradients, SGD + guard, Cayley on R2[layer] (one
 * PRNG draw); lr_t = qnpu__lr_at(optim.schedule, optim.lr, step, steps); only that layer's
 * warm-up counters count the micro-batches (the other layers' quantizers were not applied
 * backwards). The state's step counter advances by one. info->loss = the step's mean fn loss.
 * @return as qnpu__train_step; QNPU_ERR_INVALID_ARG (layer out of range, NULL fn). */
qnpu_status qnpu__train_step_layer(qnpu__train *t, int64_t layer, qnpu__train_mb_fn fn, void *ctx,
                                   const int32_t *blocks, int64_t n, int64_t T, int64_t step, int64_t steps,
                                   qnpu__train_info *info);

/* Mean cross-entropy of n blocks under the current rotations and fake quantization (forward
 * only). @return as qnpu__train_step. */
qnpu_status qnpu__train_loss(qnpu__train *t, const int32_t *blocks, int64_t n, int64_t T, double *loss);

/* ---- hand-off to stage 2 (§8.0 step 5) -------------------------------------------------------- */

/* The learned quantizer parameters, in the layout of the training state (a plain copy):
 * qnpu__train_qparams, defined with its layout in lib/calib/calibrate_learned.h so that stage 2
 * (qnpu__calibrate_learned) reads it without depending on lib/optim. act_bits[l·4 + a] is the
 * state's per-layer bit-width; act_learned[l·4 + a] = 0 for a point at 16 bits or more, or 0
 * (pass-through in stage 1: s = 1, z = 0 are placeholders, stage 2 calibrates). */
_Static_assert(QNPU__TRAIN_NW == QNPU__LEARNED_NW && QNPU__TRAIN_NA == QNPU__LEARNED_NA,
               "train.h and calibrate_learned.h disagree on the learned points per layer");

void qnpu__train_qparams_free(qnpu__train_qparams *q);

/* Write the learned stage-1 state out: *out_model (may be NULL to skip) receives a new prepared
 * float model, m_prepared with the CURRENT R1 / R2 fused in (qnpu__rotator_fuse of
 * lib/rotate/fuse.h; free it with qnpu_model_free), and *out_qp (may be NULL to skip) a copy of
 * the learned quantizer parameters (free with qnpu__train_qparams_free). m_prepared is the
 * unrotated prepared model the state trains (NULL = t->m); its dimensions must match. opts: only
 * the thread count is read (NULL = the state's). On an error nothing is returned.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL t, both outputs NULL, mismatched model);
 * QNPU_ERR_STATE (not initialized); QNPU_ERR_NO_MEMORY; a fusion error. */
qnpu_status qnpu__train_export(const qnpu__train *t, const qnpu_model *m_prepared, const qnpu_options *opts,
                               qnpu_model **out_model, qnpu__train_qparams **out_qp);

#endif
