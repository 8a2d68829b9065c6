/* qmodel.c — the quantized model's public face: point listing, dimensions, and evaluation of
 * the simulated NPU graph from the model's own integer weights and qparams. */
#include <stdio.h>
#include <string.h>

#include "../rotate/hadamard.h"
#include "qgraph.h"
#include "quant.h"
#include "simgraph.h"

void qnpu_qmodel_free(qnpu_qmodel *q)
{
    if (!q)
        return;
    qnpu__qmodel_destroy(q);
    qnpu__handle_release();
}

/* The activation points listed: every per-layer point (row 1 only in layer 0), then global. */
static int listed(int64_t l, int k)
{
    return l == 0 || k != QP_IN;
}

qnpu_status qnpu__qmodel_name_points(qnpu_qmodel *q)
{
    int64_t n = q->n_layers * (QP_LAYER_COUNT + W_COUNT) - (q->n_layers - 1) + QP_GLOBAL_COUNT + 1;
    q->names = qnpu__calloc((size_t)n, sizeof *q->names);
    if (!q->names)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "quantized model: out of memory");
    char buf[96];
    int64_t i = 0;
#define NAME(...) do { snprintf(buf, sizeof buf, __VA_ARGS__); \
        if (!(q->names[i++] = qnpu__strdup(buf))) return qnpu__fail(QNPU_ERR_NO_MEMORY, "out of memory"); \
        q->n_names = i; /* so that a failure part way frees the names made */ } while (0)
    for (int64_t l = 0; l < q->n_layers; l++)
        for (int k = 0; k < QP_LAYER_COUNT; k++)
            if (listed(l, k))
                NAME("layer%lld.%s", (long long)l, qnpu__qp_layer_name(k));
    for (int k = 0; k < QP_GLOBAL_COUNT; k++)
        NAME("%s", qnpu__qp_global_name(k));
    for (int64_t l = 0; l < q->n_layers; l++)
        for (int k = 0; k < W_COUNT; k++)
            NAME("layer%lld.%s", (long long)l, qnpu__weight_name(k));
    NAME("lm_head.w");
#undef NAME
    q->n_names = i;
    return QNPU_OK;
}

int64_t qnpu_qmodel_qp_count(const qnpu_qmodel *q)
{
    return q ? q->n_names : 0;
}

qnpu_status qnpu_qmodel_qp_info(const qnpu_qmodel *q, int64_t i, const char **name, int *bits, int *sym,
                                double *scale, int32_t *zero)
{
    if (!q || i < 0 || i >= q->n_names)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_qmodel_qp_info: no point %lld", (long long)i);
    if (name)
        *name = q->names[i];
    int64_t n_act = q->n_names - (q->n_layers * W_COUNT + 1);
    if (i >= n_act) {
        int64_t w = i - n_act;
        const qnpu__qlinear *ql = w < q->n_layers * W_COUNT ? &q->lin[w] : &q->head;
        if (bits) *bits = ql->bits;
        if (sym) *sym = 1;
        if (scale) *scale = ql->scale[0];
        if (zero) *zero = 0;
        return QNPU_OK;
    }
    const qnpu__qp *qp = NULL;
    int64_t k = 0;
    for (int64_t l = 0; l < q->n_layers && !qp; l++)
        for (int j = 0; j < QP_LAYER_COUNT && !qp; j++)
            if (listed(l, j) && k++ == i)
                qp = &q->qp[l * QP_LAYER_COUNT + j];
    if (!qp)
        qp = &q->gqp[i - k];
    if (bits) *bits = qp->bits;
    if (sym) *sym = qp->sym;
    if (scale) *scale = qp->s;
    if (zero) *zero = qp->z;
    return QNPU_OK;
}

qnpu_status qnpu_qmodel_get_dim(const qnpu_qmodel *q, qnpu_model_dim which, int64_t *out)
{
    if (!q || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_qmodel_get_dim: NULL argument");
    switch (which) {
    case QNPU_DIM_HIDDEN: *out = q->dim; break;
    case QNPU_DIM_FFN: *out = q->ffn; break;
    case QNPU_DIM_LAYERS: *out = q->n_layers; break;
    case QNPU_DIM_HEADS: *out = q->n_heads; break;
    case QNPU_DIM_KV_HEADS: *out = q->n_kv_heads; break;
    case QNPU_DIM_HEAD_DIM: *out = q->head_dim; break;
    case QNPU_DIM_VOCAB: *out = q->vocab; break;
    case QNPU_DIM_MAX_SEQ: *out = q->max_seq; break;
    case QNPU_DIM_ROPE_ORDER: *out = 1; break;
    case QNPU_DIM_TIED: *out = 0; break;
    case QNPU_DIM_QKV_BIAS: *out = q->lin[0].bias != NULL; break;
    case QNPU_DIM_BOS: *out = q->bos; break;
    case QNPU_DIM_EOS: *out = q->eos; break;
    default:
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_qmodel_get_dim: unknown dimension %d", (int)which);
    }
    return QNPU_OK;
}

qnpu_status qnpu_tokenizer_from_qmodel(const qnpu_qmodel *q, qnpu_tokenizer **out)
{
    if (!q || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_tokenizer_from_qmodel: NULL argument");
    *out = NULL;
    const qnpu__vocab *v = q->vocab_tok;
    if (!v)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "the quantized model carries no tokenizer");
    return qnpu__tokenizer_from_vocab(v, "quantized model: section 'vocab'", q->bos, q->eos, out);
}

/* ---- evaluation ---------------------------------------------------------------------------- */

static void borrowed_r4(struct qnpu__hadamard *h) { (void)h; }

/* w [rows][cols] = q * s_row */
static void dequantize(const qnpu__qlinear *ql, float *w)
{
    size_t n = (size_t)(ql->rows * ql->cols);
    for (size_t i = 0; i < n; i++)
        w[i] = (float)ql->q[i] * ql->scale[i / (size_t)ql->cols];
}

/* A prepared float model whose weights are the dequantized integer weights (the RMSNorm weights
 * are ones, the RoPE order rotate-half): what the simulated graph runs on. */
static qnpu_status float_view(const qnpu_qmodel *q, qnpu_model **out)
{
    qnpu_model *m = qnpu__calloc(1, sizeof *m);
    if (!m || !(m->path = qnpu__strdup("quantized model"))) {
        qnpu__free(m);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "quantized model: out of memory");
    }
    *out = m;
    m->format = "qnpu";
    memcpy(m->arch, q->arch, sizeof m->arch);
    m->dim = q->dim, m->ffn = q->ffn, m->n_layers = q->n_layers, m->n_heads = q->n_heads;
    m->n_kv_heads = q->n_kv_heads, m->head_dim = q->head_dim, m->vocab = q->vocab;
    m->max_seq = q->max_seq, m->rope_theta = q->rope_theta, m->rms_eps = q->rms_eps;
    m->bos = q->bos, m->eos = q->eos, m->rope_half = 1, m->prepared = 1;
    m->qkv_bias = q->lin[0].bias != NULL;
    m->r4_free = borrowed_r4; /* the plans stay the qmodel's; the array is the view's own */
    m->r4 = qnpu__calloc((size_t)q->n_layers, sizeof *m->r4);
    if (!m->r4)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "quantized model: out of memory");
    if (q->r4) /* NULL in a file without R4 (config flag clear) */
        memcpy(m->r4, q->r4, (size_t)q->n_layers * sizeof *m->r4);
    static const char *const canon[W_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                               "ffn_gate", "ffn_up", "ffn_down"};
    char name[96];
    qnpu_status s;
    float *t;
    if ((s = qnpu__model_add_copy(m, "token_embd.weight", q->vocab, q->dim, q->tok_embd, NULL)) != QNPU_OK ||
        (s = qnpu__model_add_copy(m, "output.weight", q->vocab, q->dim, NULL, &t)) != QNPU_OK ||
        (s = qnpu__model_add_copy(m, "output_norm.weight", 1, q->dim, NULL, NULL)) != QNPU_OK)
        return s;
    dequantize(&q->head, t);
    for (int64_t l = 0; l < q->n_layers; l++) {
        for (int k = 0; k < 2; k++) {   /* unit norm weights */
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, k ? "ffn_norm" : "attn_norm");
            if ((s = qnpu__model_add_copy(m, name, 1, q->dim, NULL, NULL)) != QNPU_OK)
                return s;
        }
        for (int k = 0; k < W_COUNT; k++) {
            const qnpu__qlinear *ql = &q->lin[l * W_COUNT + k];
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, canon[k]);
            if ((s = qnpu__model_add_copy(m, name, ql->rows, ql->cols, NULL, &t)) != QNPU_OK)
                return s;
            dequantize(ql, t);
            snprintf(name, sizeof name, "blk.%lld.%s.bias", (long long)l, canon[k]);
            if (ql->bias && (s = qnpu__model_add_copy(m, name, 1, ql->rows, ql->bias, NULL)) != QNPU_OK)
                return s;
        }
    }
    return qnpu__model_finish(m, NULL);
}

static qnpu_status sim_window(void *engine, const int32_t *tokens, int64_t T, float *logits)
{
    return qnpu__sim_forward(engine, tokens, T, logits);
}

qnpu_status qnpu__qmodel_sim(const qnpu_qmodel *q, int threads, int64_t max_T, int64_t rope_len,
                             qnpu_model **view, qnpu__sim **sim)
{
    *view = NULL;
    *sim = NULL;
    qnpu_status s = float_view(q, view);
    if (s == QNPU_OK)
        s = qnpu__sim_create(*view, threads, max_T, rope_len, sim);
    if (s == QNPU_OK) {
        /* the sim reads its records mutably (calibration); evaluation only reads them */
        (*sim)->qp = q->qp;
        (*sim)->gqp = (qnpu__qp *)q->gqp;
        s = qnpu__sim_quantize_rope(*sim);
    }
    if (s != QNPU_OK) {
        qnpu__sim_free(*sim);
        if (*view)
            qnpu__model_destroy(*view);
        *view = NULL;
        *sim = NULL;
    }
    return s;
}

qnpu_status qnpu_qmodel_perplexity_ids(const qnpu_qmodel *q, const qnpu_options *opts, const int32_t *ids,
                                       size_t n, int64_t ctx, double *ppl, int64_t *scored)
{
    if (!q || !ids || !ppl)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_qmodel_perplexity_ids: NULL argument");
    if (ctx <= 0)
        ctx = qnpu__opt_int(opts, QNPU_P_EVAL_SEQ_LEN);
    /* every window is evaluated from position 0, so the RoPE tables need ctx positions only (a
     * table over max_seq, up to 2^24 positions, cost 1.2 GB and 44 s for a 4 KB fuzzed file) */
    int64_t rope_len = ctx;
    if (ctx < 2 || ctx > (int64_t)1 << 16)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "perplexity window %lld is outside [2, 65536]", (long long)ctx);
    qnpu_model *m;
    qnpu__sim *sim;
    qnpu_status s = qnpu__qmodel_sim(q, qnpu__opt_threads(opts), ctx, rope_len, &m, &sim);
    if (s == QNPU_OK)
        s = qnpu__perplexity_windows(ids, n, ctx, ctx, q->vocab, sim_window, sim, NULL, NULL, ppl, scored);
    qnpu__sim_free(sim);
    if (m)
        qnpu__model_destroy(m);
    return s;
}
