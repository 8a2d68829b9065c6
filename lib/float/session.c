/* session.c — the float32 reference engine (qnpu_float_session).
 *
 * A forward over T new tokens at positions p0..p0+T-1, per decoder layer:
 *   xb = RMSNorm(x) * attn_norm
 *   q = xb Wq^T (+bq); k, v = xb Wk^T, xb Wv^T (+bk, bv) -> KV cache rows p0..p0+T-1
 *   RoPE(q), RoPE(k) at their positions
 *   per head h (KV head h / (H/KV)): P = softmax(q_h K^T / sqrt(dh), causal); o_h = P V
 *   x += o Wo^T
 *   xb = RMSNorm(x) * ffn_norm;   x += (silu(xb Wgate^T) * xb Wup^T) Wdown^T
 * then logits = RMSNorm(x) * output_norm @ output^T. Every product is one BLIS sgemm, so prefill
 * processes a whole window at once and decode (T = 1) uses the same code. */
#include <math.h>
#include <string.h>

#include "../internal.h"
#include "../rotate/hadamard.h"
#include "ops.h"

#define CHUNK 512 /* prefill positions per pass: bounds the workspace */

struct qnpu_float_session {
    const qnpu_model *m;
    int threads;
    int64_t eval_ctx;
    int64_t ctx;             /* positions the session can hold (engine.ctx_size) */
    int64_t pos;             /* positions held in the cache */
    int64_t cap;             /* positions the cache can hold */
    float **k_cache, **v_cache; /* per layer [cap][kv_dim] */
    float *rope_cos, *rope_sin; /* [ctx][dh/2] */
    /* workspace for CHUNK positions */
    float *x, *xb, *q, *att, *hb, *hb2, *scores;
    qnpu_progress_fn progress;
    void *progress_user;
};

void qnpu_float_session_free(qnpu_float_session *s)
{
    if (!s)
        return;
    for (int64_t l = 0; l < s->m->n_layers; l++) {
        if (s->k_cache) qnpu__free(s->k_cache[l]);
        if (s->v_cache) qnpu__free(s->v_cache[l]);
    }
    qnpu__free(s->k_cache);
    qnpu__free(s->v_cache);
    float *bufs[] = {s->rope_cos, s->rope_sin, s->x, s->xb, s->q, s->att, s->hb, s->hb2, s->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        qnpu__free(bufs[i]);
    qnpu__free(s);
    qnpu__handle_release();
}

/* Grow the KV cache to hold `need` positions (doubling, capped at the session's size). */
static qnpu_status ensure_cache(qnpu_float_session *s, int64_t need)
{
    if (need <= s->cap)
        return QNPU_OK;
    const qnpu_model *m = s->m;
    int64_t cap = s->cap ? s->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > s->ctx)
        cap = s->ctx;
    size_t kvd = (size_t)(m->n_kv_heads * m->head_dim);
    for (int64_t l = 0; l < m->n_layers; l++) {
        float *k = qnpu__realloc(s->k_cache[l], (size_t)s->cap * kvd * sizeof(float),
                                 (size_t)cap * kvd * sizeof(float));
        if (!k)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "float session: cannot grow the KV cache to %lld positions",
                              (long long)cap);
        s->k_cache[l] = k;
        float *v = qnpu__realloc(s->v_cache[l], (size_t)s->cap * kvd * sizeof(float),
                                 (size_t)cap * kvd * sizeof(float));
        if (!v)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "float session: cannot grow the KV cache to %lld positions",
                              (long long)cap);
        s->v_cache[l] = v;
    }
    s->cap = cap;
    return QNPU_OK;
}

qnpu_status qnpu_float_session_create(const qnpu_model *m, const qnpu_options *opts,
                                      qnpu_float_session **out)
{
    if (!m || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_float_session_create: NULL argument");
    *out = NULL;
    qnpu_float_session *s = qnpu__calloc(1, sizeof *s);
    if (!s)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_float_session_create: out of memory");
    qnpu__handle_acquire();
    s->m = m;
    s->threads = qnpu__opt_threads(opts);
    s->eval_ctx = qnpu__opt_int(opts, QNPU_P_EVAL_SEQ_LEN);
    s->ctx = qnpu__opt_int(opts, QNPU_P_ENGINE_CTX_SIZE);
    if (s->ctx == 0)
        s->ctx = m->max_seq;
    size_t T = CHUNK < s->ctx ? CHUNK : (size_t)s->ctx;
    size_t hd = (size_t)m->head_dim / 2, qd = (size_t)(m->n_heads * m->head_dim);
    s->k_cache = qnpu__calloc((size_t)m->n_layers, sizeof(float *));
    s->v_cache = qnpu__calloc((size_t)m->n_layers, sizeof(float *));
    s->rope_cos = qnpu__calloc((size_t)s->ctx * hd, sizeof(float));
    s->rope_sin = qnpu__calloc((size_t)s->ctx * hd, sizeof(float));
    s->x = qnpu__calloc(T * (size_t)m->dim, sizeof(float));
    s->xb = qnpu__calloc(T * (size_t)m->dim, sizeof(float));
    s->q = qnpu__calloc(T * qd, sizeof(float));
    s->att = qnpu__calloc(T * qd, sizeof(float));
    s->hb = qnpu__calloc(T * (size_t)m->ffn, sizeof(float));
    s->hb2 = qnpu__calloc(T * (size_t)m->ffn, sizeof(float));
    s->scores = qnpu__calloc(T * (size_t)s->ctx, sizeof(float));
    if (!s->k_cache || !s->v_cache || !s->rope_cos || !s->rope_sin || !s->x || !s->xb || !s->q ||
        !s->att || !s->hb || !s->hb2 || !s->scores) {
        qnpu_float_session_free(s);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_float_session_create: out of memory");
    }
    qnpu__rope_tables(s->rope_cos, s->rope_sin, s->ctx, m->head_dim, m->rope_theta);
    *out = s;
    return QNPU_OK;
}

void qnpu_float_session_reset(qnpu_float_session *s)
{
    if (s)
        s->pos = 0;
}

int64_t qnpu_float_session_pos(const qnpu_float_session *s)
{
    return s ? s->pos : 0;
}

void qnpu_float_session_set_progress(qnpu_float_session *s, qnpu_progress_fn fn, void *user)
{
    if (!s)
        return;
    s->progress = fn;
    s->progress_user = user;
}

static void add_bias(float *y, const float *b, int64_t T, int64_t n)
{
    if (!b)
        return;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++)
            y[t * n + i] += b[i];
}

/* Causal attention of T queries at positions p0.. over the cache rows 0..p0+T-1. */
static void attention(qnpu_float_session *s, int64_t l, int64_t T, int64_t p0)
{
    const qnpu_model *m = s->m;
    int64_t dh = m->head_dim, qd = m->n_heads * dh, kvd = m->n_kv_heads * dh;
    int64_t group = m->n_heads / m->n_kv_heads, n_keys = p0 + T;
    float scale = (float)(1.0 / sqrt((double)dh));
    for (int64_t h = 0; h < m->n_heads; h++) {
        const float *K = s->k_cache[l] + (h / group) * dh, *V = s->v_cache[l] + (h / group) * dh;
        /* scores (T, n_keys) = q_h (T, dh) @ K_h^T */
        qnpu__sgemm(s->threads, T, n_keys, dh, scale, s->q + h * dh, qd, K, kvd, 1, 0.0f, s->scores,
                    n_keys);
        for (int64_t t = 0; t < T; t++)
            qnpu__softmax(s->scores + t * n_keys, p0 + t + 1); /* keys after p0+t are masked */
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = p0 + t + 1; j < n_keys; j++)
                s->scores[t * n_keys + j] = 0.0f;
        /* o_h (T, dh) = P (T, n_keys) @ V_h (n_keys, dh) */
        qnpu__sgemm(s->threads, T, dh, n_keys, 1.0f, s->scores, n_keys, V, kvd, 0, 0.0f,
                    s->att + h * dh, qd);
    }
}

/* y (T, n) = x (T, k) W^T + beta y for a weight W [n][k]; one token goes through gemv. */
static void linear(int nt, int64_t T, int64_t n, int64_t k, const float *x, const float *W, float beta,
                   float *y)
{
    if (T == 1)
        qnpu__sgemv(nt, n, k, W, k, x, beta, y);
    else
        qnpu__sgemm(nt, T, n, k, 1.0f, x, k, W, k, 1, beta, y, n);
}

/* Forward T tokens (T <= CHUNK) at positions s->pos.. ; logits rows for the last n_out tokens. */
static void forward_chunk(qnpu_float_session *s, const int32_t *tok, int64_t T, float *logits,
                          int64_t n_out)
{
    const qnpu_model *m = s->m;
    int64_t d = m->dim, dh = m->head_dim, qd = m->n_heads * dh, kvd = m->n_kv_heads * dh;
    int64_t ff = m->ffn, p0 = s->pos;
    int nt = s->threads;
    for (int64_t t = 0; t < T; t++)
        memcpy(s->x + t * d, m->tok_embd + (int64_t)tok[t] * d, (size_t)d * sizeof(float));
    for (int64_t l = 0; l < m->n_layers; l++) {
        const qnpu__layer *L = &m->layers[l];
        float *kc = s->k_cache[l] + p0 * kvd, *vc = s->v_cache[l] + p0 * kvd;
        qnpu__rmsnorm(s->xb, s->x, L->attn_norm, T, d, m->rms_eps);
        linear(nt, T, qd, d, s->xb, L->wq, 0.0f, s->q);
        linear(nt, T, kvd, d, s->xb, L->wk, 0.0f, kc);
        linear(nt, T, kvd, d, s->xb, L->wv, 0.0f, vc);
        add_bias(s->q, L->bq, T, qd);
        add_bias(kc, L->bk, T, kvd);
        add_bias(vc, L->bv, T, kvd);
        qnpu__rope(s->q, T, qd, m->n_heads, dh, p0, s->rope_cos, s->rope_sin, m->rope_half);
        qnpu__rope(kc, T, kvd, m->n_kv_heads, dh, p0, s->rope_cos, s->rope_sin, m->rope_half);
        attention(s, l, T, p0);
        linear(nt, T, d, qd, s->att, L->wo, 1.0f, s->x);
        qnpu__rmsnorm(s->xb, s->x, L->ffn_norm, T, d, m->rms_eps);
        linear(nt, T, ff, d, s->xb, L->w_gate, 0.0f, s->hb);
        linear(nt, T, ff, d, s->xb, L->w_up, 0.0f, s->hb2);
        qnpu__swiglu(s->hb, s->hb2, T * ff);
        if (m->r4 && m->r4[l]) /* online R4 of a rotated model (METHOD.md §4.4) */
            qnpu__hadamard_apply_ws(m->r4[l], s->hb, T, ff, s->hb2);
        linear(nt, T, d, ff, s->hb, L->w_down, 1.0f, s->x);
    }
    s->pos += T;
    if (!logits || n_out <= 0)
        return;
    const float *xl = s->x + (T - n_out) * d;
    qnpu__rmsnorm(s->xb, xl, m->out_norm, n_out, d, m->rms_eps);
    if (T == 1)
        qnpu__sgemv(nt, m->vocab, d, m->output, d, s->xb, 0.0f, logits);
    else
        qnpu__sgemm(nt, n_out, m->vocab, d, 1.0f, s->xb, d, m->output, d, 1, 0.0f, logits, m->vocab);
}

qnpu_status qnpu_float_session_eval(qnpu_float_session *s, const int32_t *tokens, size_t n,
                                    int all_logits, float *logits, size_t cap)
{
    if (!s || (!tokens && n))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_float_session_eval: NULL argument");
    const qnpu_model *m = s->m;
    if (n == 0)
        return QNPU_OK;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "token id %d at position %zu is outside the vocabulary of %lld",
                              tokens[i], i, (long long)m->vocab);
    if ((int64_t)n > s->ctx - s->pos)
        return qnpu__fail(QNPU_ERR_STATE, "%zu more tokens would exceed the context of %lld (%lld held); "
                          "raise engine.ctx_size", n, (long long)s->ctx, (long long)s->pos);
    size_t need = all_logits ? n * (size_t)m->vocab : (size_t)m->vocab;
    if (logits && cap < need)
        return qnpu__fail(QNPU_ERR_BUFFER_TOO_SMALL, "logits need %zu floats, buffer holds %zu", need, cap);
    qnpu_status st = ensure_cache(s, s->pos + (int64_t)n);
    if (st != QNPU_OK)
        return st;
    for (size_t done = 0; done < n;) {
        int64_t T = (int64_t)(n - done) < CHUNK ? (int64_t)(n - done) : CHUNK;
        int last = done + (size_t)T == n;
        float *out = NULL;
        int64_t n_out = 0;
        if (logits && all_logits) {
            out = logits + done * (size_t)m->vocab;
            n_out = T;
        } else if (logits && last) {
            out = logits;
            n_out = 1;
        }
        forward_chunk(s, tokens + done, T, out, n_out);
        done += (size_t)T;
    }
    return QNPU_OK;
}

/* One window for the perplexity protocol: all logits of `T` tokens from an empty cache. */
static qnpu_status eval_window(void *engine, const int32_t *tokens, int64_t T, float *logits)
{
    qnpu_float_session *s = engine;
    qnpu_float_session_reset(s);
    return qnpu_float_session_eval(s, tokens, (size_t)T, 1, logits, (size_t)(T * s->m->vocab));
}

qnpu_status qnpu_float_session_perplexity_ids(qnpu_float_session *s, const int32_t *ids, size_t n,
                                              int64_t ctx, double *ppl, int64_t *scored)
{
    if (!s || !ids || !ppl)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_float_session_perplexity_ids: NULL argument");
    qnpu_status st = qnpu__perplexity_windows(ids, n, ctx > 0 ? ctx : s->eval_ctx, s->ctx, s->m->vocab,
                                              eval_window, s, s->progress, s->progress_user, ppl, scored);
    qnpu_float_session_reset(s);
    return st;
}

qnpu_status qnpu_float_session_perplexity(qnpu_float_session *s, const qnpu_tokenizer *t,
                                          const char *text, size_t len, int64_t ctx, double *ppl,
                                          int64_t *scored)
{
    if (!s || !t || (!text && len))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_float_session_perplexity: NULL argument");
    int32_t *ids;
    size_t n;
    qnpu_status st = qnpu_tokenize_paragraphs(t, text ? text : "", len, &ids, &n);
    if (st != QNPU_OK)
        return st;
    st = qnpu_float_session_perplexity_ids(s, ids, n, ctx, ppl, scored);
    qnpu__free(ids);
    return st;
}
