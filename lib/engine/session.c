/* session.c — qnpu_session, the public face of the integer engine: the KV cache and workspace of
 * one stream of tokens over a shared plan (plan.h), prefill in chunks, decode, perplexity. The
 * decoder loop itself is decoder.c; here only the final logits are turned into floats. */
#include <string.h>

#include "decoder.h"

#define CHUNK 512 /* prefill positions per decoder call: bounds the workspace */

struct qnpu_session {
    const qnpu_qmodel *q;
    qnpu_qmodel *owned;      /* the model of qnpu_session_open */
    qnpu__idec d;
    int64_t pos, eval_ctx;
    int32_t *codes;          /* [chunk][vocab] logit codes */
    qnpu_progress_fn progress;
    void *progress_user;
};

static void dec_free(qnpu__idec *d, int64_t n_layers, int nth)
{
    for (int64_t l = 0; l < n_layers; l++) {
        if (d->k) qnpu__free(d->k[l]);
        if (d->vt) qnpu__free(d->vt[l]);
        if (d->ksum) qnpu__free(d->ksum[l]);
        if (d->vcum) qnpu__free(d->vcum[l]);
    }
    qnpu__free(d->k);
    qnpu__free(d->vt);
    qnpu__free(d->ksum);
    qnpu__free(d->vcum);
    void *bufs[] = {(void *)d->rope_cos, (void *)d->rope_sin, d->x, d->xr, d->xn, d->qo, d->ko, d->vo,
                    d->qr, d->kr, d->att, d->g, d->u, d->sl, d->din, d->dn, d->vtmp, d->i32, d->h64,
                    d->r4work};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        qnpu__free(bufs[i]);
    for (int i = 0; d->scr && i < nth; i++) {
        qnpu__free(d->scr[i].acc);
        qnpu__free(d->scr[i].c);
        qnpu__free(d->scr[i].wsum);
        qnpu__free(d->scr[i].masked);
        qnpu__free(d->scr[i].probs);
    }
    qnpu__free(d->scr);
    qnpu__pool_free(d->pool);
}

void qnpu_session_free(qnpu_session *s)
{
    if (!s)
        return;
    if (s->d.p)
        dec_free(&s->d, s->d.p->n_layers, qnpu__pool_size(s->d.pool));
    qnpu__free(s->codes);
    qnpu_qmodel_free(s->owned);
    qnpu__free(s);
    qnpu__handle_release();
}

/* Allocate the cache and workspace of d for cap positions and chunks of `chunk`. */
static qnpu_status dec_alloc(qnpu__idec *d, const qnpu_qmodel *q, int nth)
{
    const qnpu__iplan *p = d->p;
    size_t cap = (size_t)d->cap, T = (size_t)d->chunk, dim = (size_t)p->dim, ff = (size_t)p->ffn;
    size_t dh = (size_t)p->head_dim, qd = (size_t)p->n_heads * dh, kvd = (size_t)p->n_kv_heads * dh;
    size_t wide = 2 * ff > qd + 2 * kvd ? 2 * ff : qd + 2 * kvd; /* q/k/v or gate/up together */
    wide = wide > dim ? wide : dim;
    size_t L = (size_t)p->n_layers, rsz = p->rope_ctype == QNPU__CT_U8 || p->rope_ctype == QNPU__CT_I8 ? 1 : 2;
    int ok = 1;
#define A(ptr, n, sz) ok &= ((ptr) = qnpu__calloc((n), (sz))) != NULL
    A(d->k, L, sizeof *d->k);
    A(d->vt, L, sizeof *d->vt);
    A(d->ksum, L, sizeof *d->ksum);
    A(d->vcum, L, sizeof *d->vcum);
    for (size_t l = 0; ok && l < L; l++) {
        A(d->vcum[l], cap * kvd, sizeof(int32_t));
        A(d->k[l], cap * kvd, 1);
        A(d->vt[l], cap * kvd, 1);
        A(d->ksum[l], cap * (size_t)p->n_kv_heads, sizeof(int32_t));
    }
    void *cos = NULL, *sin = NULL;
    A(cos, cap * dh, rsz);
    A(sin, cap * dh, rsz);
    d->rope_cos = cos, d->rope_sin = sin;
    A(d->x, T * dim, 2);
    A(d->xr, T * dim, 2);
    A(d->xn, T * dim, 2);
    A(d->qo, T * (qd > dim ? qd : dim), 2);
    A(d->ko, T * kvd, 2);
    A(d->vo, T * kvd, 2);
    A(d->qr, T * qd, 2);
    A(d->kr, T * kvd, 2);
    A(d->att, T * qd, 2);
    A(d->g, T * ff, 2);
    A(d->u, T * ff, 2);
    A(d->sl, T * ff, 2);
    A(d->din, T * ff, 2);
    A(d->dn, T * dim, 2);
    A(d->vtmp, T * kvd, 1);
    A(d->i32, T * wide, sizeof(int32_t));
    if (p->max_r4_work) {
        A(d->h64, T * ff, sizeof(int64_t));
        A(d->r4work, (size_t)(nth * p->max_r4_work), sizeof(int64_t));
    }
    A(d->scr, (size_t)nth, sizeof *d->scr);
    for (int i = 0; ok && i < nth; i++) {
        A(d->scr[i].acc, T * cap, sizeof(int64_t));
        A(d->scr[i].c, cap > dh ? cap : dh, sizeof(int64_t)); /* keys of Q·Kᵀ, channels of P·V */
        A(d->scr[i].wsum, cap > dh ? cap : dh, sizeof(int64_t));
        A(d->scr[i].masked, T * cap, 2);
        A(d->scr[i].probs, T * cap, 2);
    }
#undef A
    if (!ok)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "integer session: out of memory for %lld positions",
                          (long long)d->cap);
    return qnpu__rope_table_codes(d->cap, p->head_dim, q->rope_theta, &q->gqp[QP_ROPE_COS],
                                  &q->gqp[QP_ROPE_SIN], cos, sin);
}

qnpu_status qnpu_session_create(const qnpu_qmodel *q, const qnpu_options *opts, qnpu_session **out)
{
    if (!q || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_session_create: NULL argument");
    *out = NULL;
    const qnpu__iplan *p;
    qnpu_status st = qnpu__iplan_get(q, &p);
    if (st != QNPU_OK)
        return st;
    qnpu_session *s = qnpu__calloc(1, sizeof *s);
    if (!s)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_session_create: out of memory");
    qnpu__handle_acquire();
    s->q = q;
    s->eval_ctx = qnpu__opt_int(opts, QNPU_P_EVAL_SEQ_LEN);
    qnpu__idec *d = &s->d;
    d->p = p;
    static const int impls[] = {-1, QNPU__IGEMM_REF, QNPU__IGEMM_AVX2, QNPU__IGEMM_VNNI};
    d->impl = impls[qnpu__opt_int(opts, QNPU_P_ENGINE_KERNELS)];
    d->cap = qnpu__opt_int(opts, QNPU_P_ENGINE_CTX_SIZE);
    if (d->cap == 0)
        d->cap = q->max_seq;
    d->chunk = d->cap < CHUNK ? d->cap : CHUNK;
    int nth = qnpu__opt_threads(opts);
    if (nth > p->n_heads)
        nth = (int)p->n_heads; /* attention splits heads; linears gain little beyond that */
    if ((st = qnpu__pool_create(nth, &d->pool)) == QNPU_OK && (st = dec_alloc(d, q, nth)) == QNPU_OK &&
        !(s->codes = qnpu__malloc((size_t)(d->chunk * p->vocab) * sizeof *s->codes)))
        st = qnpu__fail(QNPU_ERR_NO_MEMORY, "integer session: out of memory");
    if (st != QNPU_OK) {
        qnpu_session_free(s);
        return st;
    }
    *out = s;
    return QNPU_OK;
}

qnpu_status qnpu_session_open(const char *path, const qnpu_options *opts, qnpu_session **out)
{
    if (!path || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_session_open: NULL argument");
    *out = NULL;
    qnpu_qmodel *q;
    qnpu_status st = qnpu_qmodel_load(path, opts, &q);
    if (st != QNPU_OK)
        return st;
    if ((st = qnpu_session_create(q, opts, out)) != QNPU_OK) {
        qnpu_qmodel_free(q);
        return st;
    }
    (*out)->owned = q;
    return QNPU_OK;
}

const qnpu_qmodel *qnpu_session_qmodel(const qnpu_session *s)
{
    return s ? s->q : NULL;
}

void qnpu_session_reset(qnpu_session *s)
{
    if (s)
        s->pos = 0;
}

int64_t qnpu_session_pos(const qnpu_session *s)
{
    return s ? s->pos : 0;
}

void qnpu_session_set_progress(qnpu_session *s, qnpu_progress_fn fn, void *user)
{
    if (!s)
        return;
    s->progress = fn;
    s->progress_user = user;
}

/* The logits QP's codes as floats: (q − z)·s, as the simulated graph's fake-quant gives them. */
static void dequantize(const qnpu__iplan *p, const int32_t *codes, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)(codes[i] - p->logit_z) * p->logit_s;
}

qnpu_status qnpu_session_eval(qnpu_session *s, const int32_t *tokens, size_t n, int all_logits,
                              float *logits, size_t cap)
{
    if (!s || (!tokens && n))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_session_eval: NULL argument");
    const qnpu__iplan *p = s->d.p;
    if (n == 0)
        return QNPU_OK;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= p->vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "token id %d at position %zu is outside the vocabulary of %lld",
                              tokens[i], i, (long long)p->vocab);
    if ((int64_t)n > s->d.cap - s->pos)
        return qnpu__fail(QNPU_ERR_STATE, "%zu more tokens would exceed the context of %lld (%lld held); "
                          "raise engine.ctx_size", n, (long long)s->d.cap, (long long)s->pos);
    size_t V = (size_t)p->vocab, need = all_logits ? n * V : V;
    if (logits && cap < need)
        return qnpu__fail(QNPU_ERR_BUFFER_TOO_SMALL, "logits need %zu floats, buffer holds %zu", need, cap);
    for (size_t done = 0; done < n;) {
        int64_t T = (int64_t)(n - done) < s->d.chunk ? (int64_t)(n - done) : s->d.chunk;
        int last = done + (size_t)T == n;
        int64_t n_out = !logits ? 0 : all_logits ? T : last ? 1 : 0;
        qnpu__idec_forward(&s->d, tokens + done, T, s->pos, n_out, s->codes);
        s->pos += T;
        if (n_out)
            dequantize(p, s->codes, n_out * p->vocab, all_logits ? logits + done * V : logits);
        done += (size_t)T;
    }
    return QNPU_OK;
}

static qnpu_status eval_window(void *engine, const int32_t *tokens, int64_t T, float *logits)
{
    qnpu_session *s = engine;
    qnpu_session_reset(s);
    return qnpu_session_eval(s, tokens, (size_t)T, 1, logits, (size_t)(T * s->d.p->vocab));
}

qnpu_status qnpu_session_perplexity_ids(qnpu_session *s, const int32_t *ids, size_t n, int64_t ctx,
                                        double *ppl, int64_t *scored)
{
    if (!s || !ids || !ppl)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_session_perplexity_ids: NULL argument");
    qnpu_status st = qnpu__perplexity_windows(ids, n, ctx > 0 ? ctx : s->eval_ctx, s->d.cap, s->d.p->vocab,
                                              eval_window, s, s->progress, s->progress_user, ppl, scored);
    qnpu_session_reset(s);
    return st;
}

/* For the comparison with the simulated graph (lib/export/compare.c): install a tap. */
void qnpu__session_set_tap(qnpu_session *s, qnpu__itap_fn fn, void *user)
{
    s->d.tap = fn;
    s->d.tap_user = user;
}
