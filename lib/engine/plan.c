/* plan.c — derive the integer program (plan.h) from a quantized model: pack the weights, fold the
 * zero points and biases into the accumulator constants, turn every scale ratio into a
 * fixed-point multiplier and build the tables (FORMATS.md §3). Runs once per model; float and
 * double arithmetic are allowed here and nowhere in decoder.c. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../calib/quant.h"
#include "../rotate/hadamard.h"
#include "plan.h"

static void linear_free(qnpu__ilinear *l)
{
    qnpu__free(l->w_own);
    qnpu__free(l->c);
    qnpu__free(l->m0);
    qnpu__free(l->shift);
}

void qnpu__iplan_free(qnpu__iplan *p)
{
    if (!p)
        return;
    for (int64_t l = 0; p->layers && l < p->n_layers; l++) {
        qnpu__ilayer *L = &p->layers[l];
        for (int k = 0; k < W_COUNT; k++)
            linear_free(&L->lin[k]);
        qnpu__isoftmax_free(&L->softmax);
        qnpu__lut_free(&L->silu);
        qnpu__free(L->pv_m0);
        qnpu__free(L->pv_shift);
    }
    qnpu__free(p->layers);
    linear_free(&p->head);
    qnpu__free(p->embd);
    qnpu__free(p);
}

/* Activation storage of a linear input: unsigned codes only (C2 of METHOD.md §1). */
static qnpu_status linear_act(const qnpu__qp *x, const char *name, int *act)
{
    if (x->sym || x->bits < 2 || x->bits > 16)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: the integer engine needs an asymmetric 2..16-bit "
                          "linear input (bits %d, %s)", name, x->bits, x->sym ? "symmetric" : "asymmetric");
    *act = x->bits <= 8 ? QNPU__ACT_U8 : QNPU__ACT_U16;
    return QNPU_OK;
}

/* y = x·Wᵀ (+ b) from the qmodel's codes [N][K] (int4 values held in int8). */
static qnpu_status linear_init(qnpu__ilinear *L, const qnpu__qlinear *ql, const qnpu__qp *x,
                               const qnpu__qp *y, const char *name)
{
    qnpu_status st;
    int64_t N = ql->rows, K = ql->cols;
    L->N = N, L->K = K;
    if ((st = linear_act(x, name, &L->act)) != QNPU_OK || (st = qnpu__iqp_init(&L->y, y)) != QNPU_OK)
        return st;
    if (ql->bits < 2 || ql->bits > 8)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %d-bit weights (the engine runs 2..8)", name, ql->bits);
    int64_t *wsum = qnpu__malloc((size_t)N * sizeof *wsum);
    int32_t *b_int = ql->bias ? qnpu__malloc((size_t)N * sizeof *b_int) : NULL;
    L->c = qnpu__malloc((size_t)N * sizeof *L->c);
    L->m0 = qnpu__malloc((size_t)N * sizeof *L->m0);
    L->shift = qnpu__malloc((size_t)N * sizeof *L->shift);
    st = QNPU_OK;
    if (!wsum || (ql->bias && !b_int) || !L->c || !L->m0 || !L->shift)
        st = qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", name);
    if (st == QNPU_OK && ql->bits <= 4) {
        L->wfmt = QNPU__W_S4;
        L->ldw = (K + 1) / 2;
        if (!(L->w_own = qnpu__malloc((size_t)(N * L->ldw))))
            st = qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", name);
        for (int64_t o = 0; st == QNPU_OK && o < N; o++)
            qnpu__s4_pack_row(ql->q + o * K, K, (uint8_t *)L->w_own + o * L->ldw);
        if (st == QNPU_OK)
            qnpu__igemm_rowsum_s4(N, K, L->w_own, L->ldw, wsum);
        L->w = L->w_own;
    } else if (st == QNPU_OK) {
        L->wfmt = QNPU__W_S8;
        L->ldw = K;
        L->w = ql->q;
        qnpu__igemm_rowsum_s8(N, K, ql->q, K, wsum);
    }
    for (int64_t o = 0; st == QNPU_OK && b_int && o < N; o++) {
        /* b_int = rne(b / (s_x·s_w)), FORMATS.md §3.2, saturated to int32 */
        double v = nearbyint((double)ql->bias[o] / ((double)x->s * (double)ql->scale[o]));
        b_int[o] = v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN : (int32_t)v;
    }
    if (st == QNPU_OK) {
        qnpu__igemm_fold_c(L->act, N, wsum, b_int, x->z, L->c);
        if (qnpu__igemm_multipliers(N, x->s, ql->scale, y->s, L->m0, L->shift) != 0)
            st = qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: a weight scale gives no finite multiplier", name);
    }
    qnpu__free(wsum);
    qnpu__free(b_int);
    return st;
}

static qnpu_status layer_init(qnpu__iplan *p, const qnpu_qmodel *q, int64_t l)
{
    qnpu__ilayer *L = &p->layers[l];
    const qnpu__qp *qp = q->qp + l * QP_LAYER_COUNT;
    const qnpu__qp *in = l == 0 ? &qp[QP_IN] : &q->qp[(l - 1) * QP_LAYER_COUNT + QP_MLP_RES];
    const qnpu__qlinear *lin = q->lin + l * W_COUNT;
    int64_t dh = q->head_dim;
    char name[64];
    qnpu_status st;
#define NAMED(what) (snprintf(name, sizeof name, "layer%lld.%s", (long long)l, what), name)
#define TRY(call, what) do { if ((st = (call)) != QNPU_OK) { \
        qnpu__error_prefix("%s", NAMED(what)); return st; } } while (0)
    TRY(qnpu__iqp_init(&L->in, in), "in");
    TRY(qnpu__irms_init(&L->attn_norm, in, &qp[QP_QKV_IN], q->dim, q->rms_eps), "qkv.in");
    static const int lin_in[W_COUNT] = {QP_QKV_IN, QP_QKV_IN, QP_QKV_IN, QP_O_IN, QP_GATEUP_IN,
                                        QP_GATEUP_IN, QP_DOWN_IN};
    static const int lin_out[W_COUNT] = {QP_Q_OUT, QP_K_OUT, QP_V_OUT, QP_O_OUT, QP_GATE_OUT,
                                         QP_UP_OUT, QP_DOWN_OUT};
    for (int k = 0; k < W_COUNT; k++)
        if ((st = linear_init(&L->lin[k], &lin[k], &qp[lin_in[k]], &qp[lin_out[k]],
                              NAMED(qnpu__weight_name(k)))) != QNPU_OK)
            return st;
    const qnpu__qp *cs = &q->gqp[QP_ROPE_COS], *sn = &q->gqp[QP_ROPE_SIN];
    TRY(qnpu__irope_init(&L->rope_q, &qp[QP_Q_OUT], cs, sn, &qp[QP_Q_ROPE_C], &qp[QP_Q_ROT],
                         &qp[QP_Q_ROPE_S], &qp[QP_Q_ROPE], dh), "q.rope");
    TRY(qnpu__irope_init(&L->rope_k, &qp[QP_K_OUT], cs, sn, &qp[QP_K_ROPE_C], &qp[QP_K_ROT],
                         &qp[QP_K_ROPE_S], &qp[QP_K_ROPE], dh), "k.rope");
    for (int k = QP_K_CACHE; k <= QP_V_CACHE; k++)
        if (!qp[k].sym || qp[k].bits > 8)
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: the integer engine's KV cache is symmetric int8 "
                              "(this point has %d bits, %s)", NAMED(qnpu__qp_layer_name(k)), qp[k].bits,
                              qp[k].sym ? "symmetric" : "asymmetric");
    TRY(qnpu__irq_init(&L->k_cache, &qp[QP_K_ROPE], &qp[QP_K_CACHE]), "k.cache");
    TRY(qnpu__irq_init(&L->v_cache, &qp[QP_V_OUT], &qp[QP_V_CACHE]), "v.cache");
    TRY(qnpu__iqp_init(&L->q_rope, &qp[QP_Q_ROPE]), "q.rope");
    if (qp[QP_Q_ROPE].sym || qp[QP_SOFTMAX].sym)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: q.rope and softmax.out must be asymmetric", NAMED("attn"));
    TRY(qnpu__iattn_init(&L->scores, (double)qp[QP_Q_ROPE].s * (double)qp[QP_K_CACHE].s, &qp[QP_QK],
                         &qp[QP_ATTN_SCALE], (float)(1.0 / sqrt((double)dh)), &qp[QP_QK_SCALED],
                         &qp[QP_QK_ROWMIN], &qp[QP_MASK_C], -20.0f, &qp[QP_QK_FILL], &qp[QP_QK_MASKED]),
        "qk");
    TRY(qnpu__isoftmax_init(&L->softmax, &qp[QP_QK_MASKED], &qp[QP_SOFTMAX]), "softmax.out");
    TRY(qnpu__iqp_init(&L->probs, &qp[QP_SOFTMAX]), "softmax.out");
    TRY(qnpu__iqp_init(&L->o_in, &qp[QP_O_IN]), "o.in");
    L->pv_m0 = qnpu__malloc((size_t)dh * sizeof *L->pv_m0);
    L->pv_shift = qnpu__malloc((size_t)dh * sizeof *L->pv_shift);
    if (!L->pv_m0 || !L->pv_shift)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", NAMED("o.in"));
    float sv = qp[QP_V_CACHE].s;
    for (int64_t i = 0; i < dh; i++)
        L->pv_m0[i] = 0;
    if (qnpu__igemm_multipliers(1, qp[QP_SOFTMAX].s, &sv, qp[QP_O_IN].s, L->pv_m0, L->pv_shift) != 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: no finite multiplier", NAMED("o.in"));
    for (int64_t i = 1; i < dh; i++)
        L->pv_m0[i] = L->pv_m0[0], L->pv_shift[i] = L->pv_shift[0];
    TRY(qnpu__iadd_init(&L->attn_res, in, &qp[QP_O_OUT], &qp[QP_ATTN_RES]), "attn.res");
    TRY(qnpu__irms_init(&L->mlp_norm, &qp[QP_ATTN_RES], &qp[QP_GATEUP_IN], q->dim, q->rms_eps), "gateup.in");
    TRY(qnpu__lut_init_silu(&L->silu, &qp[QP_GATE_OUT], &qp[QP_GATE_SIG], &qp[QP_GATE_SILU], 1), "gate.silu");
    TRY(qnpu__imul_init(&L->down_in, &qp[QP_GATE_SILU], &qp[QP_UP_OUT], &qp[QP_DOWN_IN]), "down.in");
    L->r4 = q->r4 ? q->r4[l] : NULL;
    if (L->r4) {
        if (!qnpu__hadamard_is_exact(L->r4) || L->r4->n != q->ffn)
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: the online R4 (%s) is not an exact ±1 transform of "
                              "order %lld; the integer engine runs exact Hadamard plans only",
                              NAMED("down.in"), qnpu__hadamard_describe(L->r4), (long long)q->ffn);
        double s_acc = (double)qp[QP_GATE_SILU].s * (double)qp[QP_UP_OUT].s * L->r4->scale;
        TRY(qnpu__irq_init_acc(&L->r4_rq, s_acc, &qp[QP_DOWN_IN]), "down.in");
        if (p->max_r4_work < q->ffn)
            p->max_r4_work = q->ffn;
    }
    TRY(qnpu__iadd_init(&L->mlp_res, &qp[QP_ATTN_RES], &qp[QP_DOWN_OUT], &qp[QP_MLP_RES]), "mlp.res");
#undef TRY
#undef NAMED
    return QNPU_OK;
}

qnpu_status qnpu__iplan_check_bounds(int64_t dim, int64_t ffn, int64_t n_heads, int64_t head_dim, int64_t ctx)
{
    const int64_t K_MAX = INT64_C(1) << 40;
    struct { const char *what; int64_t v, bound; const char *why; } b[] = {
        {"hidden size", dim, K_MAX, "linear reduction length"},
        {"hidden size", dim, INT64_C(1) << 32, "RMSNorm sum of squares (uint64)"},
        {"ffn size", ffn, K_MAX, "down_proj reduction length"},
        {"ffn size", ffn, INT64_C(1) << 31, "online R4 (int64)"},
        {"head dim", head_dim, INT64_C(1) << 24, "K-cache row sums (int32)"},
        {"context", ctx, INT64_C(1) << 33, "softmax sum (uint64) and P·V reduction length"},
    };
    if (n_heads < 1 || head_dim < 1 || n_heads > K_MAX / head_dim)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "integer engine: %lld heads x head dim %lld is not a reduction "
                          "length below 2^40 (o_proj)", (long long)n_heads, (long long)head_dim);
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i].v < 1 || b[i].v >= b[i].bound)
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "integer engine: %s %lld is outside [1, %lld): the %s would "
                              "overflow its accumulator (docs/engine.md)", b[i].what, (long long)b[i].v,
                              (long long)b[i].bound, b[i].why);
    return QNPU_OK;
}

qnpu_status qnpu__iplan_build(const qnpu_qmodel *q, qnpu__iplan **out)
{
    *out = NULL;
    qnpu_status bst = qnpu__iplan_check_bounds(q->dim, q->ffn, q->n_heads, q->head_dim, q->max_seq);
    if (bst != QNPU_OK)
        return bst;
    qnpu__iplan *p = qnpu__calloc(1, sizeof *p);
    if (!p)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "integer engine: out of memory");
    p->dim = q->dim, p->ffn = q->ffn, p->n_layers = q->n_layers, p->n_heads = q->n_heads;
    p->n_kv_heads = q->n_kv_heads, p->head_dim = q->head_dim, p->vocab = q->vocab;
    qnpu_status st = QNPU_OK;
    if (q->head_dim % 2 || q->n_heads % q->n_kv_heads)
        st = qnpu__fail(QNPU_ERR_UNSUPPORTED, "integer engine: head_dim %lld must be even and %lld heads a "
                        "multiple of %lld KV heads", (long long)q->head_dim, (long long)q->n_heads,
                        (long long)q->n_kv_heads);
    if (st == QNPU_OK && !(p->layers = qnpu__calloc((size_t)q->n_layers, sizeof *p->layers)))
        st = qnpu__fail(QNPU_ERR_NO_MEMORY, "integer engine: out of memory");
    for (int64_t l = 0; st == QNPU_OK && l < q->n_layers; l++)
        st = layer_init(p, q, l);
    const qnpu__qp *last = &q->qp[(q->n_layers - 1) * QP_LAYER_COUNT + QP_MLP_RES];
    if (st == QNPU_OK)
        st = qnpu__irms_init(&p->out_norm, last, &q->gqp[QP_LM_HEAD_IN], q->dim, q->rms_eps);
    if (st == QNPU_OK)
        st = linear_init(&p->head, &q->head, &q->gqp[QP_LM_HEAD_IN], &q->gqp[QP_LOGITS], "lm_head");
    p->logit_s = q->gqp[QP_LOGITS].s;
    p->logit_z = q->gqp[QP_LOGITS].z;
    p->rope_ctype = qnpu__ctype_of(q->gqp[QP_ROPE_COS].bits, q->gqp[QP_ROPE_COS].sym);
    if (st == QNPU_OK && p->rope_ctype != qnpu__ctype_of(q->gqp[QP_ROPE_SIN].bits, q->gqp[QP_ROPE_SIN].sym))
        st = qnpu__fail(QNPU_ERR_UNSUPPORTED, "integer engine: rope.cos and rope.sin must have one storage type");
    /* the embedding, pre-quantized with layer 0's `in` exactly as the simulated graph does (§3.2) */
    const qnpu__qp *in0 = &q->qp[QP_IN];
    int ct = qnpu__ctype_of(in0->bits, in0->sym);
    size_t esz = ct == QNPU__CT_U8 || ct == QNPU__CT_I8 ? 1 : 2, n = (size_t)(q->vocab * q->dim);
    if (st == QNPU_OK && !(p->embd = qnpu__malloc(n * esz)))
        st = qnpu__fail(QNPU_ERR_NO_MEMORY, "integer engine: out of memory for the embedding codes");
    if (st == QNPU_OK) {
        int32_t qmin, qmax;
        qnpu__qrange(in0->bits, in0->sym, &qmin, &qmax);
        float inv = qnpu__inv_scale(in0->s);
        for (size_t i = 0; i < n; i++)
            qnpu__code_put(p->embd, ct, (int64_t)i,
                           qnpu__quantize_observer(q->tok_embd[i], inv, in0->z, qmin, qmax));
    }
    if (st != QNPU_OK) {
        qnpu__iplan_free(p);
        return st;
    }
    *out = p;
    return QNPU_OK;
}

static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

qnpu_status qnpu__iplan_get(const qnpu_qmodel *q, const qnpu__iplan **out)
{
    qnpu_status st = QNPU_OK;
    pthread_mutex_lock(&plan_lock);
    if (!q->iplan) {
        /* the cache is the only mutable part of a quantized model; it is written once, here */
        qnpu_qmodel *mq = (qnpu_qmodel *)q;
        st = qnpu__iplan_build(q, &mq->iplan);
        if (st == QNPU_OK)
            mq->iplan_free = qnpu__iplan_free;
    }
    *out = q->iplan;
    pthread_mutex_unlock(&plan_lock);
    return st;
}
