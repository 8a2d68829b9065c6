/* qgraph.h — the deployed integer graph of METHOD.md §3 as data: its quantization points (QPs),
 * their names and bit-widths, and the quantized model (qnpu_qmodel) that carries them. */
#ifndef QNPU_QGRAPH_H
#define QNPU_QGRAPH_H

#include "../internal.h"

struct qnpu__hadamard;

/* Per-layer QPs, in execution order (METHOD.md §3.1; the row number is in the comment).
 * Row 1 of layer l > 0 is row 31 of layer l - 1, so `in` exists only in layer 0's records;
 * row 2/22 (norm weights) vanish with RMSNorm fusion; rows 4/19/24/29 are weights (below). */
enum {
    QP_IN,          /*  1 residual entering layer 0 (the embedding output)  16 asym */
    QP_QKV_IN,      /*  3 RMSNorm output, shared input of q/k/v              a_bits */
    QP_Q_OUT,       /*  5 */
    QP_K_OUT,       /*  5 */
    QP_V_OUT,       /*  5 */
    QP_Q_ROPE_C,    /*  7 q*cos */
    QP_Q_ROT,       /*  7 rotate_half(q) */
    QP_Q_ROPE_S,    /*  7 rotate_half(q)*sin */
    QP_Q_ROPE,      /*  7 sum */
    QP_K_ROPE_C,    /*  7 */
    QP_K_ROT,       /*  7 */
    QP_K_ROPE_S,    /*  7 */
    QP_K_ROPE,      /*  7 */
    QP_K_CACHE,     /*  8 K after RoPE as cached                           kv sym */
    QP_V_CACHE,     /*  9 V as cached                                      kv sym */
    QP_QK,          /* 10 Q.K^T */
    QP_ATTN_SCALE,  /* 11 the constant d_h^-1/2 */
    QP_QK_SCALED,   /* 12 */
    QP_QK_ROWMIN,   /* 13 row minimum of qk.scaled over all keys, before masking */
    QP_MASK_C,      /* 14 the constant -20 */
    QP_QK_FILL,     /* 15 rowmin + mask.c */
    QP_QK_MASKED,   /* 16 select(mask, fill, scaled) */
    QP_SOFTMAX,     /* 17 */
    QP_O_IN,        /* 18 P.V, input of o_proj                            a_bits */
    QP_O_OUT,       /* 20 */
    QP_ATTN_RES,    /* 21 residual + o.out */
    QP_GATEUP_IN,   /* 23 RMSNorm output, shared input of gate/up          a_bits */
    QP_GATE_OUT,    /* 25 */
    QP_UP_OUT,      /* 25 */
    QP_GATE_SIG,    /* 26 sigmoid(gate), fixed s = 2^-16, z = 0 */
    QP_GATE_SILU,   /* 27 gate * sigmoid(gate) */
    QP_DOWN_IN,     /* 28 silu * up (times R4 when online)            down_a_bits */
    QP_DOWN_OUT,    /* 30 16, or out_bits when down.in is below 16 */
    QP_MLP_RES,     /* 31 attn.res + down.out (= row 1 of the next layer) */
    QP_LAYER_COUNT
};

/* Model-wide QPs (METHOD.md §3.1 row 6, §3.2). T1 (norm.in) is the last layer's mlp.res. */
enum {
    QP_ROPE_COS,    /*  6 */
    QP_ROPE_SIN,    /*  6 */
    QP_LM_HEAD_IN,  /* T2 final RMSNorm output */
    QP_LOGITS,      /* T4 */
    QP_GLOBAL_COUNT
};

/* Observer classes: which observer.* parameter calibrates a QP. */
enum { QPC_LINEAR_IN, QPC_LINEAR_OUT, QPC_KV, QPC_ATTENTION, QPC_OTHER, QPC_FIXED };

/* One activation QP record (FORMATS.md §0): bits 0 = not quantized (pass-through). */
typedef struct qnpu__qp {
    float s;
    int32_t z;
    int8_t bits;
    int8_t sym;      /* 1: signed symmetric, z = 0 */
    int8_t fixed;    /* 1: not calibrated (sigmoid output) */
    int8_t origin;   /* 0 minmax/observer, 1 learned, 2 fixed */
} qnpu__qp;

/* The name of per-layer QP k ("qkv.in") and of global QP k ("lm_head.in"). */
const char *qnpu__qp_layer_name(int k);
const char *qnpu__qp_global_name(int k);
int qnpu__qp_layer_class(int k);
int qnpu__qp_global_class(int k);

/* Weights of the seven decoder linears, in this order, and their names ("q.w"). */
enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN, W_COUNT };
const char *qnpu__weight_name(int w);

/* Bit-widths and schemes of every QP from the options (quant.*, bits_override), for a model of
 * n_layers. `layer` is [n_layers][QP_LAYER_COUNT], `global` [QP_GLOBAL_COUNT]; w_bits gets the
 * decoder weight bits per layer and linear [n_layers][W_COUNT], and *head_w_bits. */
qnpu_status qnpu__qp_assign_bits(const qnpu_options *opts, int64_t n_layers, qnpu__qp *layer,
                                 qnpu__qp *global, int8_t *w_bits, int *head_w_bits);

/* A quantized linear: codes [rows][cols] (int4 values held in int8), one scale per row, an
 * optional float bias (exported as int32 with s_x * s_w). */
typedef struct qnpu__qlinear {
    int64_t rows, cols;
    int bits;
    int8_t *q;
    float *scale;
    float *bias;
} qnpu__qlinear;

/* The quantized model: everything the deployed graph needs, fully static. */
struct qnpu_qmodel {
    char arch[32];
    int64_t dim, ffn, n_layers, n_heads, n_kv_heads, head_dim, vocab, max_seq;
    double rope_theta, rms_eps;
    int32_t bos, eos;
    float *tok_embd;             /* [vocab][dim] float, rotated; quantized by layer0.in */
    qnpu__qlinear *lin;          /* [n_layers][W_COUNT] */
    qnpu__qlinear head;          /* lm_head, W8 per channel */
    qnpu__qp *qp;                /* [n_layers][QP_LAYER_COUNT] */
    qnpu__qp gqp[QP_GLOBAL_COUNT];
    struct qnpu__hadamard **r4;  /* [n_layers] online R4 plan, or NULL per layer */
    qnpu__vocab *vocab_tok;      /* tokenizer pieces, or NULL */
    char **names;                /* [n_names] point names, activations then weights */
    int64_t n_names;
    /* The integer engine's plan (lib/engine/plan.h), built on first use by qnpu__iplan_get
     * under its lock and freed with the model through iplan_free. */
    struct qnpu__iplan *iplan;
    void (*iplan_free)(struct qnpu__iplan *p);
};

/* Build q->names (every QP, then every weight) once the model is complete. */
qnpu_status qnpu__qmodel_name_points(qnpu_qmodel *q);

void qnpu__qmodel_destroy(qnpu_qmodel *q);

#endif
