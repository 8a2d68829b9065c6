/* mixed.h — sensitivity-guided mixed precision (issue 5 deliverable 6; METHOD.md §8.0 step 5, §9,
 * §12 rules 16–18). Private.
 *
 * It runs during preparation, on a freshly created stage-1 state (lib/optim/train.h), before
 * any training step. qnpu__mixed_run:
 *   1. start bits: the bit-widths the options give the L·4 linear inputs (quant.a_bits,
 *      quant.down_a_bits, quant.bits_override, resolved per layer by qnpu__train_option_bits);
 *      down_8to16 sets every down input to 8 (§9.3: "all start at 8 bits");
 *   2. measure (§9.1, rule 17), only when the selection depends on it (0 < p < 1 and at least
 *      one candidate): the state is initialized on the calibration blocks with the start bits
 *      (§7), then the mixed.num_samples held-out blocks that FOLLOW the calibration blocks
 *      (blocks calib.first_block + calib.num_samples ... + mixed.num_samples − 1 of the stream)
 *      run forward, one block at a time, through qnpu__s1_loss_grad with the state's own
 *      fake quantization (weights and linear inputs quantized with the freshly initialized
 *      qparams, as the reference runs its quantized model). A wrapper of the forward hook
 *      takes, for every linear input x (the tensor the quantizer receives) and its quantized
 *      value Q(x) (the state's learnable quantizer at that point's bits; a pass-through at 16
 *      bits, so r = 0 there), the sum of |Q(x) − x| / (|x| + 1e-8) and the element count over
 *      all held-out blocks: r = sum / count, the mean over all elements. The shared q/k/v and
 *      gate/up inputs are one quantizer application per layer, so each counts once;
 *   3. select (§9.2): qnpu__mixed_select over the candidates' r;
 *   4. final bits: act_4to8: a selected candidate below 8 bits goes to 8 (the others keep their
 *      bits); down_8to16: a selected down input goes to 16, the others stay at 8 (their init is
 *      min/max, §7.3, and stage 2 gives them an 8-bit down.out, §3.1 row 30);
 *   5. re-initialize (rule 18): qnpu__train_set_act_bits with the final bits, then
 *      qnpu__train_init on the calibration blocks, weights included. When the measured start
 *      bits are already the final ones the state is left as initialized in step 2 (the same
 *      initialization: it is deterministic).
 * On return the state is initialized with the final bits, whatever the mode.
 *
 * Candidates per mode (mixed.mode):
 *   none        none; the state is initialized with the options' bits;
 *   act_4to8    every quantized linear input (bits > 0), L·4 of them with the shared groups once,
 *               as the reference (utils/adapt_mix_precision.py) ranks every linear's input
 *               quantizer: N counts the points already at 8 or 16 bits too, and a selected point
 *               is promoted only if it is below 8 bits;
 *   down_8to16  the L down inputs (row 28), measured at 8 bits;
 *   down_r4     the L down inputs, measured at 8 bits without R4 (as down_8to16); a selected
 *               layer gets an online Hadamard R4 and a 4-bit down input, the others stay at 8
 *               bits without R4 (min/max init). The state t runs on a model without R4, so when
 *               some layer is selected (r4_layers > 0) step 5 only sets the final bits and leaves
 *               t UNINITIALIZED: the caller prepares the model again with rotate.r4 = selected on
 *               those layers, creates a new state on it with the final bits and initializes it
 *               (lib/optim/optimizer.c does), so the R4 layers' down inputs start from
 *               init.act_rotated (§7.3).
 * At p = 0 nothing is selected and at p = 1 every candidate is; the selection then does not
 * depend on r and nothing is measured (r stays NaN, "null" in the report). The default
 * configuration (down_8to16, p = 1) therefore costs one initialization and puts every down
 * input at 16 bits: with the default quant.down_a_bits = 16 that is exactly the state without
 * mixed precision. NOTE: under down_8to16 the mode owns the down inputs' bits, so an explicit
 * quant.down_a_bits (or a bits_override of down.in) is replaced by 8 or 16; use mixed.mode = none
 * to keep it.
 *
 * Stage 2 (§8.2) must build the graph with the same bits: qnpu__mixed_stage2_options returns the
 * options with quant.bits_override extended by one "layerN.POINT:BITS" entry for every linear
 * input whose stage-1 bit-width differs from what the options give (the last matching entry
 * wins), so qnpu__calibrate_learned's check of the per-layer bits holds and row 30 (down.out)
 * follows row 28 through the calibrator's own rule.
 *
 * The report (qnpu__mixed_report_json): what was selected and promoted, and what the linear
 * layers cost per token (see the function).
 *
 * Thread safety: no global state. */
#ifndef QNPU_MIXED_MIXED_H
#define QNPU_MIXED_MIXED_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"
#include "../optim/train.h"

/* mixed.mode choice indices ("none|act_4to8|down_8to16|down_r4", lib/common/params.def). */
enum { QNPU__MIXED_NONE = 0, QNPU__MIXED_ACT_4TO8 = 1, QNPU__MIXED_DOWN_8TO16 = 2, QNPU__MIXED_DOWN_R4 = 3 };

/* The ε of §9.1 (float32, added to |x| in float32). */
#define QNPU__MIXED_EPS 1e-8f

/* Σ_i |q_i − x_i| / (|x_i| + 1e-8) over n elements: each term in float32 (fabsf(q − x) divided by
 * fabsf(x) + 1e-8f), summed in double in element order. r(Q) of §9.1 is this sum over all the
 * elements Q received divided by their count. */
double qnpu__mixed_rel_error_sum(const float *x, const float *q, size_t n);

/* The selection of §9.2 on n sensitivities r[0..n−1] (any order): r sorted descending,
 * idx = ceil(p·n) − 1 (p·n in double, as numpy), threshold = r_sorted[idx] when idx >= 0;
 * selected[i] = r[i] >= threshold, so ties with the threshold are all selected. idx < 0 (p = 0,
 * or n = 0) selects nothing and *threshold is NaN. idx and threshold may be NULL.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL r or selected with n > 0, n < 0, p outside [0, 1]
 * or NaN, a NaN r); QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__mixed_select(const double *r, int64_t n, double p, unsigned char *selected, int64_t *idx,
                               double *threshold);

/* What qnpu__mixed_run decided. Arrays are L·4, index l·4 + a (a = 0 qkv.in, 1 o.in, 2 gateup.in,
 * 3 down.in, the order of qnpu__train). */
typedef struct qnpu__mixed_result {
    int mode;                   /* QNPU__MIXED_*                                                 */
    double p;                   /* mixed.p                                                       */
    int64_t L, d, qd, kvd, ff;  /* layers and linear shapes (q: d -> qd, k/v: d -> kvd, ...)     */
    int w_bits;                 /* decoder weight bits (the same for every linear in stage 1)    */
    int measured;               /* 1: r was measured                                             */
    int64_t held_first, held_n; /* the held-out blocks (first index, count) when measured        */
    int64_t n_cand, idx;        /* candidates N, threshold index ceil(p·N) − 1                   */
    double threshold;           /* NaN when nothing was measured or idx < 0                      */
    int *opt_bits;              /* the options' bits                                             */
    int *start_bits;            /* the bits the selection starts from (and measures at)          */
    int *bits;                  /* the final bits, which stage 1 trains and stage 2 deploys      */
    double *r;                  /* sensitivity; NaN when not measured or not a candidate         */
    unsigned char *cand, *sel;  /* candidate / selected                                          */
    int64_t r4_layers;          /* down_r4: layers selected for online R4                        */
    int64_t r4_adds;            /* their integer transforms' additions per token (set by the      */
                                /* caller that builds the plans; 0 until then)                   */
} qnpu__mixed_result;

void qnpu__mixed_result_free(qnpu__mixed_result *r);

/* Steps 1–5 above on the stage-1 state t (created by qnpu__train_create with the same options
 * o, not yet trained) with the token stream ids (n tokens, cut into blocks of calib.seq_len;
 * the calibration blocks are calib.num_samples from calib.first_block). *out (may be NULL)
 * receives the decisions (free with qnpu__mixed_result_free); on an error it is NULL and t is
 * left uninitialized or initialized with the start bits.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL t or
 * ids, too few blocks for the calibration or, when measuring, the held-out blocks);
 * QNPU_ERR_NUMERIC (a sensitivity that is not finite); the errors of qnpu__train_init and
 * qnpu__train_set_act_bits; QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__mixed_run(qnpu__train *t, const qnpu_options *o, const int32_t *ids, size_t n,
                            qnpu__mixed_result **out);

/* Stage-2 options: a clone of o whose quant.bits_override ends with "layerN.POINT:BITS" for every
 * linear input whose bits (L·4, e.g. qnpu__train_qparams.act_bits) differ from what o gives it.
 * Free *out with qnpu_options_free. @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL, a differing
 * bit-width that quant.bits_override cannot express: not 0, 4, 8 or 16); QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__mixed_stage2_options(const qnpu_options *o, int64_t L, const int *bits, qnpu_options **out);

/* The report as a JSON object (a new NUL-terminated string, free with qnpu__free):
 *   "changed"      linear inputs whose final bits differ from the options' (the first member);
 *   "mode", "p", "measured", "held_out_blocks" [first, count] (null when not measured),
 *   "candidates" N, "threshold_index" ceil(p·N) − 1, "threshold" (null when none);
 *   "points"       the L·4 linear-input QPs: "total", and "bits4", "bits8", "bits16", "other"
 *                  counts with "frac4", "frac8", "frac16" fractions of the final bits;
 *   "r4_layers"    layers with online R4 (down_r4), and "r4_adds_per_token" the integer
 *                  additions of their transforms per token (FORMATS.md §3.9: n·log2(r) for the
 *                  Sylvester part plus p·n for a dense ±1 factor, per layer);
 *   "selected"     [{"point": "layer3.o.in", "r": r or null, "from": start bits, "to": final}],
 *                  in layer and point order;
 *   "sensitivity"  every measured candidate [{"point", "bits" (start), "r"}], r descending
 *                  ([] when nothing was measured);
 *   "per_token"    the decoder linears' cost per token for the start bits ("start") and the final
 *                  bits ("final"): "weight_bytes" (the integer weight codes read, rows·cols·w_bits/8
 *                  summed over the 7·L linears; unchanged by activation bits), "macs" (rows·cols
 *                  summed: integer multiply-accumulates, unchanged), "act_bytes" (the input
 *                  activation codes the linears read: cols·bits/8 per linear, so a shared input
 *                  is read once by each of its 3 or 2 linears) and "macs_by_width"
 *                  {"A4xW4": n, "A8xW4": n, "A16xW4": n, ...}: the MACs split by the operand
 *                  widths (an input at 0 bits, not quantized, is "AfloatxW4" and its bytes are
 *                  counted as float32); "linears" is 7·L. lm_head is not included.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL); QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__mixed_report_json(const qnpu__mixed_result *r, char **out);

#endif
