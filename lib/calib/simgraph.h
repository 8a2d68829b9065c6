/* simgraph.h — the simulated NPU graph (a float fake-quant forward of METHOD.md §3). */
#ifndef QNPU_SIMGRAPH_H
#define QNPU_SIMGRAPH_H

#include "qgraph.h"
#include "quant.h"

typedef struct qnpu__sim {
    const qnpu_model *m;       /* prepared float model: embedding, biases, R4, dims */
    int threads;
    int64_t max_T, rope_len;
    const float **W;           /* [n_layers][W_COUNT] the weights used (float or fake-quantized) */
    const float *head;         /* lm_head weights used */
    qnpu__qp *qp;              /* [n_layers][QP_LAYER_COUNT]; bits 0 = pass-through */
    qnpu__qp *gqp;             /* [QP_GLOBAL_COUNT] */
    int calibrating;           /* observe, then fake-quant with the running qparams */
    qnpu__observer *obs;       /* [n_layers][QP_LAYER_COUNT] when calibrating, else NULL */
    qnpu__observer *gobs;      /* [QP_GLOBAL_COUNT] */
    float *rope_cos, *rope_sin; /* [rope_len][dh], quantized by qnpu__sim_quantize_rope */
    /* Optional tap, called at every enabled QP with the values before and after its fake-quant
     * (index = layer * QP_LAYER_COUNT + k, or n_layers * QP_LAYER_COUNT + k for global QPs). */
    void (*tap)(void *user, int64_t index, const float *before, const float *after, size_t n);
    void *tap_user;
    float *tap_buf;            /* scratch for the tap's "before" copy */
    size_t tap_cap;
    float *x, *xb, *q, *k, *v, *t1, *t2, *att, *scores, *rowmin, *hb, *hb2, *hb3, *lm_in;
} qnpu__sim;

/* A simulator for windows of up to max_T positions; RoPE tables for rope_len positions. W and
 * head start as the model's float weights; qp/gqp must be set before a forward. */
qnpu_status qnpu__sim_create(const qnpu_model *m, int threads, int64_t max_T, int64_t rope_len,
                             qnpu__sim **out);
void qnpu__sim_free(qnpu__sim *s);
/* Quantize the RoPE tables with rope.cos / rope.sin (observing the whole table when calibrating). */
qnpu_status qnpu__sim_quantize_rope(qnpu__sim *s);
/* Logits [T][vocab] of T tokens at positions 0..T-1 through the fake-quant graph. */
qnpu_status qnpu__sim_forward(qnpu__sim *s, const int32_t *tok, int64_t T, float *logits);

/* The simulated graph of a quantized model: a float view of it (its dequantized integer weights,
 * unit norms, its R4 plans) and a simulator over it with the model's records and quantized RoPE
 * tables. Free with qnpu__sim_free, then qnpu__model_destroy(*view). */
qnpu_status qnpu__qmodel_sim(const qnpu_qmodel *q, int threads, int64_t max_T, int64_t rope_len,
                             qnpu_model **view, qnpu__sim **sim);

#endif
