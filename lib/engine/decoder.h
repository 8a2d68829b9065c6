/* decoder.h — the integer decoder loop: METHOD.md §3 on codes, with an int8 KV cache.
 *
 * decoder.c holds only integer arithmetic (test/kernels/no_float.sh audits its object file): it
 * reads the plan (plan.h), runs the kernels of lib/kernels/ and writes integer logit codes. The
 * session (session.c) allocates this state, dequantizes the logits and owns the public API. */
#ifndef QNPU_ENGINE_DECODER_H
#define QNPU_ENGINE_DECODER_H

#include "plan.h"

/* Optional observer of every stored tensor (for verification against the simulated graph):
 * index = layer·QP_LAYER_COUNT + k, or n_layers·QP_LAYER_COUNT + k for the model-wide points;
 * `n` codes of storage type ctype at element offset `offset` of the point's tensor (the attention
 * points qk.masked and softmax.out arrive per head, at offset head·T·n_keys; ctype −1 means
 * int32, for the logit codes). */
typedef void (*qnpu__itap_fn)(void *user, int64_t index, int64_t offset, const void *codes, int ctype,
                              int64_t n);

/* Per-worker attention scratch. */
typedef struct qnpu__iscratch {
    int64_t *acc;           /* [chunk][cap] Q·Kᵀ accumulators of one head */
    int64_t *c, *wsum;      /* [max(cap, head_dim)] */
    void *masked, *probs;   /* [chunk][cap] 16-bit codes */
} qnpu__iscratch;

typedef struct qnpu__idec {
    const qnpu__iplan *p;
    int impl;               /* kernel implementation (QNPU__IGEMM_*), or −1 for the best */
    qnpu__pool *pool;       /* NULL: one thread */
    int64_t cap;            /* positions the cache holds */
    int64_t chunk;          /* positions per forward call */
    const void *rope_cos, *rope_sin; /* [cap][head_dim] codes (plan->rope_ctype) */
    /* KV cache, per layer: K codes [cap][kv_dim], their per-KV-head row sums [cap][n_kv_heads],
     * V codes transposed [n_kv_heads][head_dim][cap] (so P·V is a GEMM over positions) and their
     * running sums over positions (the zero-point fold of P·V) */
    int8_t **k, **vt;
    int32_t **ksum;
    int32_t **vcum;         /* per layer [cap][kv_dim]: Σ of V codes over positions 0..p, per channel */
    /* workspace for `chunk` positions; code buffers hold 2 bytes per element */
    void *x, *xr, *xn, *qo, *ko, *vo, *qr, *kr, *att, *g, *u, *sl, *din, *dn;
    int8_t *vtmp;           /* [chunk][kv_dim] */
    int32_t *i32;           /* [chunk][max(2·ffn, q_dim + 2·kv_dim, dim)] GEMM outputs before narrowing */
    int64_t *h64, *r4work;  /* [chunk][ffn] the exact silu·up of the online R4; [threads][ffn] */
    qnpu__iscratch *scr;    /* [threads] */
    qnpu__itap_fn tap;      /* runs single-threaded when set */
    void *tap_user;
} qnpu__idec;

/* Forward T ≤ chunk tokens at positions pos .. pos + T − 1 (the cache holds 0 .. pos − 1 and
 * pos + T ≤ cap). Logit codes of the last n_out positions (n_out ≤ T) go to logits
 * ([n_out][vocab], int32, codes of the logits QP); n_out = 0 computes no head. The caller has
 * checked every argument. */
void qnpu__idec_forward(qnpu__idec *d, const int32_t *tok, int64_t T, int64_t pos, int64_t n_out,
                        int32_t *logits);

/* Install (or remove, fn = NULL) the tap of a session's decoder (session.c), for the comparison
 * with the simulated graph. */
void qnpu__session_set_tap(qnpu_session *s, qnpu__itap_fn fn, void *user);

#endif
