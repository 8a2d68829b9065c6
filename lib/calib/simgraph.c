/* simgraph.c — the simulated NPU graph: a float32 fake-quant forward that computes what the
 * deployed integer graph of METHOD.md §3 computes. Every quantization point (QP) applies the
 * observer-form fake-quant of §2.3 with its record (bits 0 = pass-through), in the order of §3;
 * while calibrating, each QP first feeds its observer and takes the running qparams, so
 * downstream observers see quantized upstream values (§8.2 step 4).
 *
 * Layout: activations are row-major [T][width]; attention tensors are [head][T][T]. The model is a
 * prepared (rotated, norm-fused, rotate-half) float model; the weights used are given per linear,
 * so the caller decides whether they are float or fake-quantized. */
#include <math.h>
#include <string.h>

#include "../float/ops.h"
#include "../rotate/hadamard.h"
#include "quant.h"
#include "simgraph.h"

void qnpu__sim_free(qnpu__sim *s)
{
    if (!s)
        return;
    float *bufs[] = {s->rope_cos, s->rope_sin, s->x, s->xb, s->q, s->k, s->v, s->t1, s->t2, s->att,
                     s->scores, s->rowmin, s->hb, s->hb2, s->hb3, s->lm_in};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        qnpu__free(bufs[i]);
    qnpu__free(s->W);
    qnpu__free(s->tap_buf);
    qnpu__free(s);
}

qnpu_status qnpu__sim_create(const qnpu_model *m, int threads, int64_t max_T, int64_t rope_len,
                             qnpu__sim **out)
{
    *out = NULL;
    if (!m->prepared)
        return qnpu__fail(QNPU_ERR_STATE, "%s: the simulated graph needs a rotated (prepared) model", m->path);
    qnpu__sim *s = qnpu__calloc(1, sizeof *s);
    if (!s)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "simulated graph: out of memory");
    size_t T = (size_t)max_T, d = (size_t)m->dim, qd = (size_t)(m->n_heads * m->head_dim);
    size_t kvd = (size_t)(m->n_kv_heads * m->head_dim), ff = (size_t)m->ffn, dh = (size_t)m->head_dim;
    s->m = m;
    s->threads = threads;
    s->max_T = max_T;
    s->rope_len = rope_len;
    s->W = qnpu__calloc((size_t)m->n_layers * W_COUNT, sizeof *s->W);
    s->rope_cos = qnpu__calloc((size_t)rope_len * dh, sizeof(float));
    s->rope_sin = qnpu__calloc((size_t)rope_len * dh, sizeof(float));
    s->x = qnpu__calloc(T * d, sizeof(float));
    s->xb = qnpu__calloc(T * d, sizeof(float));
    s->q = qnpu__calloc(T * qd, sizeof(float));
    s->k = qnpu__calloc(T * kvd, sizeof(float));
    s->v = qnpu__calloc(T * kvd, sizeof(float));
    s->t1 = qnpu__calloc(T * qd, sizeof(float));
    s->t2 = qnpu__calloc(T * qd, sizeof(float));
    s->att = qnpu__calloc(T * qd, sizeof(float));
    s->scores = qnpu__calloc((size_t)m->n_heads * T * T, sizeof(float));
    s->rowmin = qnpu__calloc((size_t)m->n_heads * T, sizeof(float));
    s->hb = qnpu__calloc(T * ff, sizeof(float));
    s->hb2 = qnpu__calloc(T * ff, sizeof(float));
    s->hb3 = qnpu__calloc(T * ff, sizeof(float));
    s->lm_in = qnpu__calloc(T * d, sizeof(float));
    if (!s->W || !s->rope_cos || !s->rope_sin || !s->x || !s->xb || !s->q || !s->k || !s->v || !s->t1 ||
        !s->t2 || !s->att || !s->scores || !s->rowmin || !s->hb || !s->hb2 || !s->hb3 || !s->lm_in) {
        qnpu__sim_free(s);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "simulated graph: out of memory for %lld positions",
                          (long long)max_T);
    }
    /* rotate-half tables over the whole head: cos[p][i] = cos(p * theta^(-2 (i mod dh/2) / dh)) */
    float *c = qnpu__malloc((size_t)rope_len * dh / 2 * sizeof(float));
    float *sn = qnpu__malloc((size_t)rope_len * dh / 2 * sizeof(float));
    if (!c || !sn) {
        qnpu__free(c);
        qnpu__free(sn);
        qnpu__sim_free(s);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "simulated graph: out of memory");
    }
    qnpu__rope_tables(c, sn, rope_len, m->head_dim, m->rope_theta);
    for (int64_t p = 0; p < rope_len; p++)
        for (size_t i = 0; i < dh; i++) {
            s->rope_cos[(size_t)p * dh + i] = c[(size_t)p * dh / 2 + i % (dh / 2)];
            s->rope_sin[(size_t)p * dh + i] = sn[(size_t)p * dh / 2 + i % (dh / 2)];
        }
    qnpu__free(c);
    qnpu__free(sn);
    for (int64_t l = 0; l < m->n_layers; l++) {
        const qnpu__layer *L = &m->layers[l];
        const float **w = s->W + l * W_COUNT;
        w[W_Q] = L->wq, w[W_K] = L->wk, w[W_V] = L->wv, w[W_O] = L->wo;
        w[W_GATE] = L->w_gate, w[W_UP] = L->w_up, w[W_DOWN] = L->w_down;
    }
    s->head = m->output;
    *out = s;
    return QNPU_OK;
}

/* Apply one QP to n values in place (observe first when calibrating). */
static qnpu_status qp_apply(qnpu__sim *s, qnpu__qp *qp, qnpu__observer *obs, float *x, size_t n)
{
    if (qp->bits == 0)
        return QNPU_OK;
    if (s->tap && n > s->tap_cap) {
        float *b = qnpu__realloc(s->tap_buf, s->tap_cap * sizeof(float), n * sizeof(float));
        if (!b)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "simulated graph: out of memory");
        s->tap_buf = b;
        s->tap_cap = n;
    }
    if (s->tap)
        memcpy(s->tap_buf, x, n * sizeof(float));
    if (s->calibrating && obs && !qp->fixed && qp->origin != 1) { /* learned points stay fixed (§8.2) */
        qnpu_status st = qnpu__observer_update(obs, x, n);
        if (st == QNPU_OK)
            st = qnpu__observer_qparams(obs, &qp->s, &qp->z);
        if (st != QNPU_OK)
            return st;
    }
    int32_t qmin, qmax;
    qnpu__qrange(qp->bits, qp->sym, &qmin, &qmax);
    qnpu__fq_observer_vec(x, x, n, qp->s, qp->z, qmin, qmax);
    if (s->tap) {
        uintptr_t a = (uintptr_t)qp, g = (uintptr_t)s->gqp;
        int64_t index = a >= g && a < g + sizeof(qnpu__qp) * QP_GLOBAL_COUNT
                            ? s->m->n_layers * QP_LAYER_COUNT + (int64_t)((a - g) / sizeof(qnpu__qp))
                            : (int64_t)((a - (uintptr_t)s->qp) / sizeof(qnpu__qp));
        s->tap(s->tap_user, index, s->tap_buf, x, n);
    }
    return QNPU_OK;
}

#define QP(l, k) (&s->qp[(l) * QP_LAYER_COUNT + (k)])
#define OBS(l, k) (s->obs ? &s->obs[(l) * QP_LAYER_COUNT + (k)] : NULL)
#define GQP(k) (&s->gqp[k])
#define GOBS(k) (s->gobs ? &s->gobs[k] : NULL)
#define APPLY(l, k, x, n) do { if ((st = qp_apply(s, QP(l, k), OBS(l, k), (x), (size_t)(n))) != QNPU_OK) return st; } while (0)
#define GAPPLY(k, x, n) do { if ((st = qp_apply(s, GQP(k), GOBS(k), (x), (size_t)(n))) != QNPU_OK) return st; } while (0)

qnpu_status qnpu__sim_quantize_rope(qnpu__sim *s)
{
    qnpu_status st;
    size_t n = (size_t)s->rope_len * (size_t)s->m->head_dim;
    GAPPLY(QP_ROPE_COS, s->rope_cos, n);
    GAPPLY(QP_ROPE_SIN, s->rope_sin, n);
    return QNPU_OK;
}

/* y (T, n) = x (T, k) W^T (+ b) */
static void linear(qnpu__sim *s, const float *x, int64_t T, int64_t k, const float *W, const float *b,
                   int64_t n, float *y)
{
    qnpu__sgemm(s->threads, T, n, k, 1.0f, x, k, W, k, 1, 0.0f, y, n);
    for (int64_t t = 0; b && t < T; t++)
        for (int64_t i = 0; i < n; i++)
            y[t * n + i] += b[i];
}

/* RoPE of METHOD.md §3.1 row 7 on x (T, heads*dh): rope_c = x cos, rot = rotate_half(x),
 * rope_s = rot sin, x = rope_c + rope_s, each through its QP. t1/t2 are scratch. */
static qnpu_status rope(qnpu__sim *s, int64_t l, float *x, int64_t T, int64_t heads, int first_qp)
{
    qnpu_status st;
    int64_t dh = s->m->head_dim, w = heads * dh, half = dh / 2;
    float *c = s->t1, *r = s->t2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < heads; h++) {
            const float *xr = x + t * w + h * dh;
            const float *cs = s->rope_cos + t * dh;
            float *cr = c + t * w + h * dh, *rr = r + t * w + h * dh;
            for (int64_t i = 0; i < dh; i++)
                cr[i] = xr[i] * cs[i];
            for (int64_t i = 0; i < half; i++) {
                rr[i] = -xr[i + half];
                rr[i + half] = xr[i];
            }
        }
    APPLY(l, first_qp, c, T * w);         /* *.rope_c */
    APPLY(l, first_qp + 1, r, T * w);     /* *.rot */
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < w; i++)
            r[t * w + i] *= s->rope_sin[t * dh + i % dh];
    APPLY(l, first_qp + 2, r, T * w);     /* *.rope_s */
    for (int64_t i = 0; i < T * w; i++)
        x[i] = c[i] + r[i];
    APPLY(l, first_qp + 3, x, T * w);     /* *.rope */
    return QNPU_OK;
}

/* Rows 10-18: the attention chain of one layer. q (T, qd) and k, v (T, kvd) are the quantized
 * q.rope, k.cache and v.cache; the result goes to s->att (T, qd). */
static qnpu_status attention(qnpu__sim *s, int64_t l, int64_t T)
{
    qnpu_status st;
    const qnpu_model *m = s->m;
    int64_t H = m->n_heads, dh = m->head_dim, qd = H * dh, kvd = m->n_kv_heads * dh;
    int64_t group = H / m->n_kv_heads;
    size_t n = (size_t)(H * T * T);
    for (int64_t h = 0; h < H; h++)  /* qk (T, T) per head = q_h k_h^T */
        qnpu__sgemm(s->threads, T, T, dh, 1.0f, s->q + h * dh, qd, s->k + (h / group) * dh, kvd, 1, 0.0f,
                    s->scores + h * T * T, T);
    APPLY(l, QP_QK, s->scores, n);
    float scale = (float)(1.0 / sqrt((double)dh)), minus20 = -20.0f;
    APPLY(l, QP_ATTN_SCALE, &scale, 1);
    for (size_t i = 0; i < n; i++)
        s->scores[i] *= scale;
    APPLY(l, QP_QK_SCALED, s->scores, n);
    for (int64_t r = 0; r < H * T; r++) {   /* row minimum over all keys, before masking */
        const float *row = s->scores + r * T;
        float mn = row[0];
        for (int64_t j = 1; j < T; j++)
            mn = row[j] < mn ? row[j] : mn;
        s->rowmin[r] = mn;
    }
    APPLY(l, QP_QK_ROWMIN, s->rowmin, H * T);
    APPLY(l, QP_MASK_C, &minus20, 1);
    for (int64_t r = 0; r < H * T; r++)
        s->rowmin[r] += minus20;
    APPLY(l, QP_QK_FILL, s->rowmin, H * T);
    for (int64_t h = 0; h < H; h++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = t + 1; j < T; j++)
                s->scores[(h * T + t) * T + j] = s->rowmin[h * T + t];
    APPLY(l, QP_QK_MASKED, s->scores, n);
    for (int64_t r = 0; r < H * T; r++)
        qnpu__softmax(s->scores + r * T, T);
    APPLY(l, QP_SOFTMAX, s->scores, n);
    for (int64_t h = 0; h < H; h++)  /* o_h (T, dh) = P_h (T, T) v_h (T, dh) */
        qnpu__sgemm(s->threads, T, dh, T, 1.0f, s->scores + h * T * T, T, s->v + (h / group) * dh, kvd, 0,
                    0.0f, s->att + h * dh, qd);
    APPLY(l, QP_O_IN, s->att, T * qd);
    return QNPU_OK;
}

/* RMSNorm with the fused (unit) weight: out = x / sqrt(mean(x^2) + eps). */
static void norm(const qnpu_model *m, float *out, const float *x, const float *w, int64_t T)
{
    qnpu__rmsnorm(out, x, w, T, m->dim, m->rms_eps);
}

qnpu_status qnpu__sim_forward(qnpu__sim *s, const int32_t *tok, int64_t T, float *logits)
{
    const qnpu_model *m = s->m;
    qnpu_status st;
    int64_t d = m->dim, dh = m->head_dim, qd = m->n_heads * dh, kvd = m->n_kv_heads * dh, ff = m->ffn;
    if (T > s->max_T || T > s->rope_len)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "simulated graph: %lld positions, at most %lld",
                          (long long)T, (long long)(s->max_T < s->rope_len ? s->max_T : s->rope_len));
    for (int64_t t = 0; t < T; t++)
        memcpy(s->x + t * d, m->tok_embd + (int64_t)tok[t] * d, (size_t)d * sizeof(float));
    APPLY(0, QP_IN, s->x, T * d);
    for (int64_t l = 0; l < m->n_layers; l++) {
        const qnpu__layer *L = &m->layers[l];
        const float **W = s->W + l * W_COUNT;
        norm(m, s->xb, s->x, L->attn_norm, T);
        APPLY(l, QP_QKV_IN, s->xb, T * d);
        linear(s, s->xb, T, d, W[W_Q], L->bq, qd, s->q);
        linear(s, s->xb, T, d, W[W_K], L->bk, kvd, s->k);
        linear(s, s->xb, T, d, W[W_V], L->bv, kvd, s->v);
        APPLY(l, QP_Q_OUT, s->q, T * qd);
        APPLY(l, QP_K_OUT, s->k, T * kvd);
        APPLY(l, QP_V_OUT, s->v, T * kvd);
        if ((st = rope(s, l, s->q, T, m->n_heads, QP_Q_ROPE_C)) != QNPU_OK ||
            (st = rope(s, l, s->k, T, m->n_kv_heads, QP_K_ROPE_C)) != QNPU_OK)
            return st;
        APPLY(l, QP_K_CACHE, s->k, T * kvd);
        APPLY(l, QP_V_CACHE, s->v, T * kvd);
        if ((st = attention(s, l, T)) != QNPU_OK)
            return st;
        linear(s, s->att, T, qd, W[W_O], NULL, d, s->xb);
        APPLY(l, QP_O_OUT, s->xb, T * d);
        for (int64_t i = 0; i < T * d; i++)
            s->x[i] += s->xb[i];
        APPLY(l, QP_ATTN_RES, s->x, T * d);
        norm(m, s->xb, s->x, L->ffn_norm, T);
        APPLY(l, QP_GATEUP_IN, s->xb, T * d);
        linear(s, s->xb, T, d, W[W_GATE], NULL, ff, s->hb);
        linear(s, s->xb, T, d, W[W_UP], NULL, ff, s->hb2);
        APPLY(l, QP_GATE_OUT, s->hb, T * ff);
        APPLY(l, QP_UP_OUT, s->hb2, T * ff);
        for (int64_t i = 0; i < T * ff; i++)
            s->hb3[i] = 1.0f / (1.0f + expf(-s->hb[i]));
        APPLY(l, QP_GATE_SIG, s->hb3, T * ff);
        for (int64_t i = 0; i < T * ff; i++)
            s->hb[i] *= s->hb3[i];
        APPLY(l, QP_GATE_SILU, s->hb, T * ff);
        for (int64_t i = 0; i < T * ff; i++)
            s->hb[i] *= s->hb2[i];
        if (m->r4 && m->r4[l] && (st = qnpu__hadamard_apply(m->r4[l], s->hb, T, ff)) != QNPU_OK)
            return st;
        APPLY(l, QP_DOWN_IN, s->hb, T * ff);
        linear(s, s->hb, T, ff, W[W_DOWN], NULL, d, s->xb);
        APPLY(l, QP_DOWN_OUT, s->xb, T * d);
        for (int64_t i = 0; i < T * d; i++)
            s->x[i] += s->xb[i];
        APPLY(l, QP_MLP_RES, s->x, T * d);
    }
    norm(m, s->lm_in, s->x, m->out_norm, T);
    GAPPLY(QP_LM_HEAD_IN, s->lm_in, T * d);
    linear(s, s->lm_in, T, d, s->head, NULL, m->vocab, logits);
    GAPPLY(QP_LOGITS, logits, T * m->vocab);
    return QNPU_OK;
}
