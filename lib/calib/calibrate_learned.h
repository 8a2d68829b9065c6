/* calibrate_learned.h — stage 2 of the two-stage pipeline (METHOD.md §8.2). Private.
 *
 * The learned quantizer parameters that stage 1 hands to stage 2 are defined here, in the
 * calibrator's layer, so the data flows one way: lib/optim fills this struct (train.h names it
 * qnpu__train_qparams) and lib/calib reads it without including any lib/optim header.
 *
 * Layout (the training state's, a plain copy):
 *   - weight scales: layer l, weight w (0 = q, 1 = k, 2 = v, 3 = o, 4 = gate, 5 = up, 6 = down,
 *     the order of W_Q .. W_DOWN of qgraph.h) at ws + woff[l·7 + w], wrows[w] of them, one per
 *     output row of the ROTATED weight, which is the row of the same index in the fused model
 *     (symmetric, w_bits);
 *   - activations: index k = l·4 + a (a = 0 q/k/v input, 1 o input, 2 gate/up input, 3 down
 *     input, i.e. QP_QKV_IN, QP_O_IN, QP_GATEUP_IN, QP_DOWN_IN): per tensor, asymmetric, as[k]
 *     and az[k] (z a float: it is rounded when used, rule 7) at act_bits[k], the bit-width of that
 *     point IN THAT LAYER (the options' quant.a_bits / quant.down_a_bits / quant.bits_override,
 *     then mixed precision, METHOD.md §9); act_learned[k] = 0 for a point at 16 bits or more, or
 *     at 0 (not quantized): a pass-through in stage 1 (rule 16), s = 1, z = 0 are placeholders
 *     and stage 2 calibrates it like every other point. */
#ifndef QNPU_CALIB_CALIBRATE_LEARNED_H
#define QNPU_CALIB_CALIBRATE_LEARNED_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

#define QNPU__LEARNED_NW 7 /* learned weights per layer (W_Q .. W_DOWN)             */
#define QNPU__LEARNED_NA 4 /* learned activation QPs per layer (qkv, o, gateup, down) */

typedef struct qnpu__train_qparams {
    int64_t L, wtotal;
    int64_t wrows[QNPU__LEARNED_NW];
    int64_t *woff;   /* L·7 */
    float *ws;       /* wtotal */
    int w_bits;
    float *as, *az;  /* L·4 */
    int *act_bits;   /* L·4: bit-width of activation QP l·4 + a (0 = not quantized) */
    unsigned char *act_learned; /* L·4: 1 = learned in stage 1 (0 < bits < 16) */
} qnpu__train_qparams;

/* Stage 2 (§8.2 steps 2–4) on a model whose rotations are already fused (`fused`: a prepared
 * float model, e.g. from qnpu__train_export): builds the deployed graph's quantized model with
 *   - the seven decoder weights of every layer quantized round-to-nearest with the LEARNED
 *     per-channel scales, q_w = clamp(rne(W'/s_w[o]), qmin, qmax) (rule 14; no re-initialization);
 *     the weight bits the options assign must equal learned->w_bits;
 *   - every learned activation QP (learned->act_learned[k]) fixed at (s, rne(z)) with origin 1
 *     and NOT observed; the bits the options give each of the L·4 linear inputs (quant.a_bits,
 *     quant.down_a_bits, quant.bits_override) must equal learned->act_bits[k], learned or not
 *     (so stage 2 builds the graph stage 1 trained; mixed precision passes its per-layer choices
 *     as quant.bits_override entries, see lib/mixed/mixed.h);
 *   - every other QP calibrated through the simulated graph on the calibration blocks of ids
 *     (calib.seq_len, calib.first_block, calib.num_samples) with the recipe's observers, exactly
 *     as qnpu_calibrator_run_ids; lm_head gets per-channel min/max scales (T3).
 * t may be NULL (the qmodel then carries no tokenizer). learned = NULL is plain calibration.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL arguments, a model that is not prepared, token ids
 * out of range, too few blocks, learned parameters that do not match the model or the options'
 * bit-widths, a scale that is not finite and positive); the calibrator's errors. */
qnpu_status qnpu__calibrate_learned(const qnpu_model *fused, const qnpu_tokenizer *t, const qnpu_options *opts,
                                    const int32_t *ids, size_t n, const qnpu__train_qparams *learned,
                                    qnpu_qmodel **out);

/* The calibrator's text -> ids split (qnpu_calibrator_run): the text is cut into stories on lines
 * holding "<|endoftext|>" (or, without such lines, by the paragraph protocol of
 * qnpu_tokenize_paragraphs); each story becomes [BOS] + encode(story), concatenated into a new
 * array (free it with qnpu__free). Shared with qnpu_optimizer_run.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (no story); QNPU_ERR_NO_MEMORY; a tokenizer error. */
qnpu_status qnpu__calib_tokenize_stories(const qnpu_tokenizer *t, const char *text, size_t len,
                                         int32_t **ids, size_t *n);

#endif
