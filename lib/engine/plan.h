/* plan.h — the integer program of a quantized model: every fixed-point parameter, table and
 * packed weight the integer engine (decoder.c) runs, derived once from a qnpu_qmodel.
 *
 * plan.c builds it (float and double are allowed there: it turns the float QP records into
 * multipliers, tables and codes, as FORMATS.md §3 prescribes); decoder.c only reads it and uses
 * integer arithmetic. The RoPE tables, whose length depends on the session's context, are the
 * session's (qnpu__rope_table_codes). A plan is immutable after qnpu__iplan_build and may be shared by any number
 * of sessions and threads. It borrows from the qmodel (8-bit weight codes, R4 plans), which must
 * outlive it. */
#ifndef QNPU_ENGINE_PLAN_H
#define QNPU_ENGINE_PLAN_H

#include "../calib/qgraph.h"
#include "../kernels/int_gemm.h"
#include "../kernels/int_ops.h"

/* One quantized linear y = x·Wᵀ (+ b) with its input and output QPs (FORMATS.md §3.2). */
typedef struct qnpu__ilinear {
    int64_t N, K;           /* W is [N][K] */
    int act;                /* QNPU__ACT_U8 or QNPU__ACT_U16: the input QP's storage */
    int wfmt;               /* QNPU__W_S4 (packed, ≤ 4 bits) or QNPU__W_S8 */
    const void *w;          /* packed int4 (owned: w_own) or the qmodel's int8 codes */
    void *w_own;
    int64_t ldw;            /* bytes per weight row */
    int64_t *c;             /* [N] b_int − (z_x − OFF)·Σ_k q_w (qnpu__igemm_fold_c) */
    int32_t *m0, *shift;    /* [N] M[o] = s_x·s_w[o]/s_y */
    qnpu__iqp y;            /* output QP */
} qnpu__ilinear;

/* One decoder layer of METHOD.md §3.1. */
typedef struct qnpu__ilayer {
    qnpu__iqp in;                   /* row 1: this layer's input (layer 0: `in`, else the previous mlp.res) */
    qnpu__irms attn_norm;           /* in -> qkv.in */
    qnpu__ilinear lin[W_COUNT];     /* q, k, v, o, gate, up, down */
    qnpu__irope rope_q, rope_k;     /* q.out -> q.rope, k.out -> k.rope */
    qnpu__irq k_cache, v_cache;     /* k.rope -> k.cache, v.out -> v.cache (int8, symmetric) */
    qnpu__iqp q_rope;               /* z of Q in Q·Kᵀ */
    qnpu__iattn scores;             /* Q·Kᵀ accumulators -> qk.masked (rows 10–16) */
    qnpu__isoftmax softmax;         /* qk.masked -> softmax.out */
    qnpu__iqp probs;                /* softmax.out: the activation of P·V */
    int32_t *pv_m0, *pv_shift;      /* [head_dim] M = s_p·s_v/s_(o.in), the same for every row */
    qnpu__iqp o_in;
    qnpu__iadd attn_res;            /* in + o.out -> attn.res */
    qnpu__irms mlp_norm;            /* attn.res -> gateup.in */
    qnpu__lut silu;                 /* gate.out -> gate.silu (the collapsed σ chain, §3.4) */
    qnpu__imul down_in;             /* gate.silu × up.out -> down.in (without R4; with R4 only a, b) */
    const struct qnpu__hadamard *r4;/* online R4 (exact plan) or NULL */
    qnpu__irq r4_rq;                /* FWHT(silu·up) accumulators -> down.in, M = s_silu·s_up·scale/s_down */
    qnpu__iadd mlp_res;             /* attn.res + down.out -> mlp.res */
} qnpu__ilayer;

typedef struct qnpu__iplan {
    int64_t dim, ffn, n_layers, n_heads, n_kv_heads, head_dim, vocab;
    qnpu__ilayer *layers;           /* [n_layers] */
    void *embd;                     /* [vocab][dim] codes of layer0.in (the embedding, pre-quantized) */
    int rope_ctype;                 /* storage of the rope.cos / rope.sin codes (the session's tables) */
    qnpu__irms out_norm;            /* last mlp.res -> lm_head.in */
    qnpu__ilinear head;             /* lm_head.in × lm_head.w -> logits */
    float logit_s;                  /* logits are dequantized at the very end: (q − z)·s */
    int32_t logit_z;
    int64_t max_r4_work;            /* int64 workspace of the largest R4 transform */
} qnpu__iplan;

/* Build the plan of q. QNPU_ERR_UNSUPPORTED (names the
 * point) for graphs the engine cannot run: a K/V cache wider than 8 bits, a linear input or
 * softmax output that is symmetric, an inexact (random orthogonal) R4; QNPU_ERR_INVALID_ARG for
 * impossible records; QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__iplan_build(const qnpu_qmodel *q, qnpu__iplan **out);
/* The integer bounds of every reduction (docs/engine.md, "Integer bounds of every reduction") hold
 * for these dimensions: reduction lengths K (dim, ffn, n_heads·head_dim, the context ctx) below
 * 2^40, head_dim below 2^24 (int32 K-cache row sums), dim below 2^32 (RMSNorm's uint64 Σv²), ffn
 * below 2^31 (the int64 online R4) and ctx below 2^33 (the softmax's uint64 sum). Otherwise
 * QNPU_ERR_UNSUPPORTED naming the dimension and its bound. Called by qnpu__iplan_build. */
qnpu_status qnpu__iplan_check_bounds(int64_t dim, int64_t ffn, int64_t n_heads, int64_t head_dim, int64_t ctx);
/* The plan of q, built on first use and kept in q (freed with it); thread-safe. */
qnpu_status qnpu__iplan_get(const qnpu_qmodel *q, const qnpu__iplan **out);
void qnpu__iplan_free(qnpu__iplan *p);

#endif
