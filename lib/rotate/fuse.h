/* fuse.h — fuse explicit (learned) rotations into a prepared float model (issue 5; METHOD.md
 * §4.3, §8.0 step 5 "fuse the rotations"). Private; implemented in rotator.c with the same
 * pre/post helpers qnpu_rotator_run uses.
 *
 * qnpu__rotator_fuse takes a PREPARED model m (norm weights fused to ones, untied, rotate-half
 * RoPE, online R4 in any layers, its Hadamard already fused into their down weights; e.g. qnpu_rotator_run with rotate.r1 = rotate.r2 = identity, r4 = off)
 * and float rotations R1 (d × d) and R2[l] (dh × dh), row-major (R1 NULL or R2 NULL: identity;
 * an individual R2[l] NULL: identity for that layer), and returns a new prepared model with the
 * map of §4.3 applied: E' = E·R1; q, k, gate, up, lm_head pre R1; v pre R1, post R2 over the KV
 * heads (bias b·B2); o pre R2 over the query heads, post R1; down post R1. Online R4 plans are
 * copied to the result (R4 acts on the down input's side, which R1 does not touch).
 * The result is handed out (free it with qnpu_model_free). m is not modified.
 * @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL m or out, m not prepared, norms not ones);
 * QNPU_ERR_NO_MEMORY. */
#ifndef QNPU_ROTATE_FUSE_H
#define QNPU_ROTATE_FUSE_H

#include "../internal.h"

qnpu_status qnpu__rotator_fuse(const qnpu_model *m, const float *R1, const float *const *R2, int threads,
                               qnpu_model **out);

#endif
