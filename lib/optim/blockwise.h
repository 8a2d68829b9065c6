/* blockwise.h — stage 1 with the block-wise reconstruction loss (optim.loss = block_mse;
 * METHOD.md §13). Private.
 *
 * For models whose end-to-end forward/backward does not fit, stage 1 trains one decoder layer
 * at a time. For layer l = 0 .. L − 1 in turn, each step minimizes
 *     mse_l = mean over the batch's N·d elements of (y_q − y_f)²
 * where, on the same input x_l (the training blocks' embedding rows E·R1 taken through the
 * already-trained, fake-quantized layers 0 .. l − 1, stage1.h's qnpu__s1_block_input),
 *     y_f = the float layer l (no quantization, no R2: the target does not move),
 *     y_q = the fake-quantized layer l with its learned quantizers and R2[l]
 * (qnpu__s1_block_grad). The step trains layer l's parameters only: its 7 weight scales, its 4
 * activation s / z (through train.c's hooks: same clamp per application, warm-up, SGD rate
 * optim.lr · optim.qparam_lr_ratio and §2.2 guard) and R2[l] (Cayley, optim.lr), with the
 * gradient-norm clip optim.clip_norm over those parameters (qnpu__train_step_layer). R1 stays
 * at its initialization (rotate.r1: the random Hadamard by default); the other layers are
 * frozen. Micro-batches (optim.micro_batch) run side by side and are summed in order as in the
 * end-to-end step, so the result does not depend on the thread count.
 *
 * Budget: optim.steps steps of optim.batch blocks in total, split evenly over the layers — layer
 * l gets steps / L steps, plus one for the first steps mod L layers (at least one step each:
 * with steps < L every layer gets one, L steps in total; steps = 0 trains nothing). The cosine
 * schedule restarts for every layer over that layer's steps. The blocks of each step are chosen
 * by the caller (optimizer.c: the same data order as the end-to-end loop).
 *
 * Warm-up (§7.3): each activation quantizer's counter counts its own backward applications,
 * so a layer's quantizers warm up during that layer's first init.warmup_calls micro-batches.
 *
 * Memory: one micro-batch's layer input per slot (micro_batch·T·d floats) plus one layer's
 * activations; never the whole model's activations (every step recomputes its layer's input
 * through the earlier layers).
 *
 * Thread safety: a qnpu__blockwise and its training state are used by one thread at a time. */
#ifndef QNPU_OPTIM_BLOCKWISE_H
#define QNPU_OPTIM_BLOCKWISE_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"
#include "train.h"

typedef struct qnpu__blockwise qnpu__blockwise;

/* The steps layer l of L gets out of `steps` (see above), and their total over the layers. */
int64_t qnpu__blockwise_layer_steps(int64_t steps, int64_t L, int64_t l);
int64_t qnpu__blockwise_total_steps(int64_t steps, int64_t L);

/* A block-wise run of `steps` (optim.steps) over the layers of the INITIALIZED training state t
 * (qnpu__train_init; t is kept by reference and must outlive the run). @return QNPU_OK;
 * QNPU_ERR_INVALID_ARG (NULL, steps < 0); QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__blockwise_create(qnpu__train *t, int64_t steps, qnpu__blockwise **out);
void qnpu__blockwise_free(qnpu__blockwise *b);

/* Total steps of the run (qnpu__blockwise_total_steps of its steps and layers). */
int64_t qnpu__blockwise_total(const qnpu__blockwise *b);

/* The run's next step on n blocks of T tokens: the layer and its position in that layer's
 * schedule follow from the steps already taken. info (may be NULL) as qnpu__train_step, with
 * info->loss the step's mse (before the update); *layer (may be NULL) the trained layer.
 * @return QNPU_OK; QNPU_ERR_STATE (every step of the run taken, or t not initialized);
 * QNPU_ERR_INVALID_ARG; QNPU_ERR_NUMERIC; QNPU_ERR_NO_MEMORY; stage 1's errors. */
qnpu_status qnpu__blockwise_step(qnpu__blockwise *b, const int32_t *blocks, int64_t n, int64_t T,
                                 qnpu__train_info *info, int64_t *layer);

/* Forward only: layer l's mse on n blocks of T tokens under the current parameters (the mean
 * over every element of the n blocks; micro-batches of optim.micro_batch blocks). @return
 * QNPU_OK; QNPU_ERR_INVALID_ARG; QNPU_ERR_STATE (t not initialized); stage 1's errors. */
qnpu_status qnpu__blockwise_mse(qnpu__blockwise *b, int64_t l, const int32_t *blocks, int64_t n, int64_t T,
                                double *mse);

#endif
