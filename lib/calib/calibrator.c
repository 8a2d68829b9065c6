/* calibrator.c — qnpu_calibrator: static calibration of every quantization point of the deployed
 * graph (METHOD.md §3) on calibration text, and the construction of the quantized model.
 *
 * Steps: rotate/fuse the model if it is not yet (§4.1, §8.0); assign bit-widths (quant.*);
 * quantize the weights per output channel (max|w|/q_max, or the MSE shrink search); run the
 * calibration blocks through the simulated graph with every activation QP observing while it
 * fake-quantizes (§8.2 step 4); freeze the qparams and build the qmodel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../rotate/hadamard.h"
#include "calibrate_learned.h"
#include "qgraph.h"
#include "quant.h"
#include "simgraph.h"

struct qnpu_calibrator {
    const qnpu_model *src;
    const qnpu_tokenizer *tok;
    qnpu_options *opts;
    qnpu_progress_fn progress;
    void *user;
};

qnpu_status qnpu_calibrator_create(const qnpu_model *m, const qnpu_tokenizer *t,
                                   const qnpu_options *opts, qnpu_calibrator **out)
{
    if (!m || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_calibrator_create: NULL argument");
    *out = NULL;
    qnpu_calibrator *c = qnpu__calloc(1, sizeof *c);
    if (!c)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_calibrator_create: out of memory");
    qnpu_status s = qnpu_options_clone(opts, &c->opts);
    if (s != QNPU_OK) {
        qnpu__free(c);
        return s;
    }
    c->src = m;
    c->tok = t;
    qnpu__handle_acquire();
    *out = c;
    return QNPU_OK;
}

void qnpu_calibrator_free(qnpu_calibrator *c)
{
    if (!c)
        return;
    qnpu_options_free(c->opts);
    qnpu__free(c);
    qnpu__handle_release();
}

void qnpu_calibrator_set_progress(qnpu_calibrator *c, qnpu_progress_fn fn, void *user)
{
    if (!c)
        return;
    c->progress = fn;
    c->user = user;
}

/* ---- calibration data (METHOD.md §10.2) ---------------------------------------------------- */

#define EOT "<|endoftext|>"

/* [BOS] + encode(story) for every story between "<|endoftext|>" lines, concatenated; a text
 * without such lines falls back to the paragraph protocol. */
qnpu_status qnpu__calib_tokenize_stories(const qnpu_tokenizer *t, const char *text, size_t len,
                                         int32_t **ids, size_t *n)
{
    const char *hit = memmem(text, len, EOT, strlen(EOT));
    if (!hit)
        return qnpu_tokenize_paragraphs(t, text, len, ids, n);
    size_t cap = len + 16, count = 0;
    int32_t *out = qnpu__malloc(cap * sizeof *out);
    if (!out)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "calibration text: out of memory");
    size_t pos = 0;
    while (pos < len) {
        const char *end = memmem(text + pos, len - pos, EOT, strlen(EOT));
        size_t stop = end ? (size_t)(end - text) : len;
        size_t a = pos, b = stop;
        while (a < b && (text[a] == '\n' || text[a] == '\r'))
            a++;
        while (b > a && (text[b - 1] == '\n' || text[b - 1] == '\r'))
            b--;
        if (b > a) {
            size_t got = 0;
            qnpu_status s = qnpu_tokenizer_encode(t, text + a, b - a, 1, out + count, cap - count, &got);
            if (s != QNPU_OK) {
                qnpu__free(out);
                return s;
            }
            count += got;
        }
        pos = end ? stop + strlen(EOT) : len;
    }
    if (count == 0) {
        qnpu__free(out);
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "calibration text holds no story");
    }
    *ids = out;
    *n = count;
    return QNPU_OK;
}

/* ---- building the quantized model ------------------------------------------------------------ */

/* scales = NULL: computed by `method`; else the given (learned) per-row scales are used as they are
 * (METHOD.md §8.2 step 2, rule 14: the fused weight quantized with the learned s_w). */
static qnpu_status quantize_linear(const float *W, const float *bias, int64_t rows, int64_t cols, int bits,
                                   int method, const float *scales, const char *name, qnpu__qlinear *ql,
                                   float *deq)
{
    if (bits < 2 || bits > 8)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: weights take 2..8 bits in a deployable model, not %d",
                          name, bits);
    ql->rows = rows;
    ql->cols = cols;
    ql->bits = bits;
    ql->q = qnpu__malloc((size_t)(rows * cols));
    ql->scale = qnpu__malloc((size_t)rows * sizeof(float));
    if (bias && (ql->bias = qnpu__malloc((size_t)rows * sizeof(float))))
        memcpy(ql->bias, bias, (size_t)rows * sizeof(float));
    if (!ql->q || !ql->scale || (bias && !ql->bias))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", name);
    qnpu_status s = QNPU_OK;
    if (scales)
        memcpy(ql->scale, scales, (size_t)rows * sizeof(float));
    else
        s = qnpu__weight_scales(W, rows, cols, cols, bits, method, ql->scale);
    if (s == QNPU_OK)
        s = qnpu__weight_quantize(W, rows, cols, cols, ql->scale, bits, ql->q, cols);
    if (s == QNPU_OK)
        s = qnpu__weight_fake_quant(W, rows, cols, cols, ql->scale, bits, deq, cols);
    if (s != QNPU_OK)
        qnpu__error_prefix("%s", name);
    return s;
}

/* The per-layer QP of learned activation point a (calibrate_learned.h's order). */
static const int learned_point[QNPU__LEARNED_NA] = {QP_QKV_IN, QP_O_IN, QP_GATEUP_IN, QP_DOWN_IN};

/* Check that the learned parameters fit model m and the bit-widths just assigned (qp, wb), then
 * fix the learned activation points at (s, rne(z)), origin 1 (§8.2 step 3). */
static qnpu_status apply_learned_points(const qnpu_model *m, const qnpu__train_qparams *lp, qnpu__qp *qp,
                                        const int8_t *wb)
{
    if (lp->L != m->n_layers || !lp->woff || !lp->ws || !lp->as || !lp->az || !lp->act_bits || !lp->act_learned)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "learned parameters: %lld layers for a model of %lld, or missing arrays",
                          (long long)lp->L, (long long)m->n_layers);
    for (int64_t l = 0; l < m->n_layers; l++)
        for (int k = 0; k < W_COUNT; k++)
            if (wb[l * W_COUNT + k] != lp->w_bits)
                return qnpu__fail(QNPU_ERR_INVALID_ARG, "layer%lld.%s: the options give %d weight bits, the learned "
                                  "scales are for %d", (long long)l, qnpu__weight_name(k), wb[l * W_COUNT + k],
                                  lp->w_bits);
    for (int64_t l = 0; l < m->n_layers; l++)
        for (int a = 0; a < QNPU__LEARNED_NA; a++) {
            int64_t k = l * QNPU__LEARNED_NA + a;
            qnpu__qp *r = &qp[l * QP_LAYER_COUNT + learned_point[a]];
            const char *nm = qnpu__qp_layer_name(learned_point[a]);
            /* every linear input, learned or not, at the bits stage 1 used (per layer) */
            if (r->bits != lp->act_bits[k] || (lp->act_learned[k] && r->sym))
                return qnpu__fail(QNPU_ERR_INVALID_ARG, "layer%lld.%s: the options give %d bits%s, stage 1 used %s%d "
                                  "bits", (long long)l, nm, r->bits, r->sym ? " symmetric" : "",
                                  lp->act_learned[k] ? "learned asymmetric (s, z) at " : "", lp->act_bits[k]);
            if (!lp->act_learned[k])
                continue;
            float sc = lp->as[k], zf = lp->az[k];
            if (!(sc > 0.0f) || !isfinite(sc) || !isfinite(zf))
                return qnpu__fail(QNPU_ERR_INVALID_ARG, "layer%lld.%s: learned s = %g, z = %g", (long long)l, nm,
                                  (double)sc, (double)zf);
            r->s = sc;
            r->z = qnpu__round_zero_point(zf);
            r->origin = 1;
        }
    return QNPU_OK;
}

/* A new qmodel shell with m's dimensions, bits assigned, weights quantized (deq receives the
 * dequantized weights, [n_layers][W_COUNT] + head, allocated here). lp (may be NULL): learned
 * stage-1 parameters, whose weight scales replace the computed ones and whose activation points
 * are fixed (origin 1). */
static qnpu_status build_qmodel(const qnpu_model *m, const qnpu_options *o, const qnpu__train_qparams *lp,
                                qnpu_qmodel **out, float ***deq)
{
    qnpu_qmodel *q = qnpu__calloc(1, sizeof *q);
    if (!q)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "calibrator: out of memory");
    memcpy(q->arch, m->arch, sizeof q->arch);
    q->dim = m->dim, q->ffn = m->ffn, q->n_layers = m->n_layers, q->n_heads = m->n_heads;
    q->n_kv_heads = m->n_kv_heads, q->head_dim = m->head_dim, q->vocab = m->vocab;
    q->max_seq = m->max_seq, q->rope_theta = m->rope_theta, q->rms_eps = m->rms_eps;
    q->bos = m->bos, q->eos = m->eos;
    int64_t L = m->n_layers, nw = L * W_COUNT;
    q->lin = qnpu__calloc((size_t)nw, sizeof *q->lin);
    q->qp = qnpu__calloc((size_t)(L * QP_LAYER_COUNT), sizeof *q->qp);
    q->r4 = qnpu__calloc((size_t)L, sizeof *q->r4);
    q->tok_embd = qnpu__malloc((size_t)(m->vocab * m->dim) * sizeof(float));
    int8_t *wb = qnpu__malloc((size_t)nw);
    float **d = qnpu__calloc((size_t)nw + 1, sizeof *d);
    *deq = d;
    *out = q;
    if (!q->lin || !q->qp || !q->r4 || !q->tok_embd || !wb || !d) {
        qnpu__free(wb);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "calibrator: out of memory");
    }
    memcpy(q->tok_embd, m->tok_embd, (size_t)(m->vocab * m->dim) * sizeof(float));
    int head_bits;
    qnpu_status s = qnpu__qp_assign_bits(o, L, q->qp, q->gqp, wb, &head_bits);
    if (s == QNPU_OK && lp)
        s = apply_learned_points(m, lp, q->qp, wb);
    int method = (int)qnpu__opt_int(o, QNPU_P_QUANT_WEIGHT_CLIP);
    char name[64];
    for (int64_t l = 0; s == QNPU_OK && l < L; l++) {
        const qnpu__layer *Ly = &m->layers[l];
        const float *src[W_COUNT] = {Ly->wq, Ly->wk, Ly->wv, Ly->wo, Ly->w_gate, Ly->w_up, Ly->w_down};
        const float *bias[W_COUNT] = {Ly->bq, Ly->bk, Ly->bv};
        int64_t qd = m->n_heads * m->head_dim, kvd = m->n_kv_heads * m->head_dim;
        const int64_t rows[W_COUNT] = {qd, kvd, kvd, m->dim, m->ffn, m->ffn, m->dim};
        const int64_t cols[W_COUNT] = {m->dim, m->dim, m->dim, qd, m->dim, m->dim, m->ffn};
        for (int k = 0; s == QNPU_OK && k < W_COUNT; k++) {
            float **dk = &d[l * W_COUNT + k];
            snprintf(name, sizeof name, "layer%lld.%s", (long long)l, qnpu__weight_name(k));
            const float *ls = NULL;
            if (lp) {
                int64_t off = lp->woff[l * QNPU__LEARNED_NW + k];
                if (lp->wrows[k] != rows[k] || off < 0 || off + rows[k] > lp->wtotal) {
                    s = qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: %lld learned scales at offset %lld (of %lld) for "
                                   "%lld rows", name, (long long)lp->wrows[k], (long long)off,
                                   (long long)lp->wtotal, (long long)rows[k]);
                    break;
                }
                ls = lp->ws + off;
            }
            *dk = qnpu__malloc((size_t)(rows[k] * cols[k]) * sizeof(float));
            s = *dk ? quantize_linear(src[k], bias[k], rows[k], cols[k], wb[l * W_COUNT + k], method, ls, name,
                                      &q->lin[l * W_COUNT + k], *dk)
                    : qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", name);
        }
    }
    qnpu__free(wb);
    if (s != QNPU_OK)
        return s;
    d[nw] = qnpu__malloc((size_t)(m->vocab * m->dim) * sizeof(float));
    if (!d[nw])
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "lm_head.w: out of memory");
    /* T3: per-channel symmetric min/max on the rotated, norm-fused weight */
    return quantize_linear(m->output, NULL, m->vocab, m->dim, head_bits, 0, NULL, "lm_head.w", &q->head, d[nw]);
}

static void free_deq(float **d, int64_t n)
{
    for (int64_t i = 0; d && i < n; i++)
        qnpu__free(d[i]);
    qnpu__free(d);
}

/* Calibrate on the token stream ids (owned by the caller). learned (may be NULL): stage-1
 * parameters (calibrate_learned.h) for a model whose rotations are fused; their weight scales are
 * used and their activation points are fixed and not observed (METHOD.md §8.2). */
static qnpu_status run(qnpu_calibrator *c, const int32_t *ids, size_t n_ids, const qnpu__train_qparams *learned,
                       qnpu_qmodel **out)
{
    const qnpu_options *o = c->opts;
    qnpu_model *rotated = NULL;
    const qnpu_model *m = c->src;
    qnpu_status s = QNPU_OK;
    if (!m->prepared && learned)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 2: the model must be prepared with its learned rotations "
                          "fused (qnpu__train_export)");
    if (!m->prepared) {
        qnpu_rotator *r;
        if ((s = qnpu_rotator_create(m, o, &r)) != QNPU_OK)
            return s;
        s = qnpu_rotator_run(r, &rotated);
        qnpu_rotator_free(r);
        if (s != QNPU_OK)
            return s;
        m = rotated;
    }
    int64_t L = qnpu__opt_int(o, QNPU_P_CALIB_SEQ_LEN), first = qnpu__opt_int(o, QNPU_P_CALIB_FIRST_BLOCK);
    int64_t nblocks = qnpu__opt_int(o, QNPU_P_CALIB_NUM_SAMPLES);
    qnpu_qmodel *q = NULL;
    float **deq = NULL;
    qnpu__sim *sim = NULL;
    qnpu__observer *obs = NULL;
    float *logits = NULL;
    int64_t n_obs = m->n_layers * QP_LAYER_COUNT + QP_GLOBAL_COUNT;
    if ((int64_t)(n_ids / (size_t)L) < first + nblocks) {
        s = qnpu__fail(QNPU_ERR_INVALID_ARG,
                       "calibration data gives %zu blocks of %lld tokens; calib.first_block %lld + "
                       "calib.num_samples %lld need more", n_ids / (size_t)L, (long long)L,
                       (long long)first, (long long)nblocks);
        goto done;
    }
    if ((s = build_qmodel(m, o, learned, &q, &deq)) != QNPU_OK)
        goto done;
    int64_t rope_len = m->max_seq > L ? m->max_seq : L;
    if ((s = qnpu__sim_create(m, qnpu__opt_threads(o), L, rope_len, &sim)) != QNPU_OK)
        goto done;
    for (int64_t i = 0; i < m->n_layers * W_COUNT; i++)
        sim->W[i] = deq[i];
    sim->head = deq[m->n_layers * W_COUNT];
    sim->qp = q->qp;
    sim->gqp = q->gqp;
    obs = qnpu__calloc((size_t)n_obs, sizeof *obs);
    logits = qnpu__malloc((size_t)(L * m->vocab) * sizeof(float));
    if (!obs || !logits) {
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "calibrator: out of memory");
        goto done;
    }
    static const qnpu_param class_param[] = {QNPU_P_OBSERVER_LINEAR_IN, QNPU_P_OBSERVER_LINEAR_OUT,
                                             QNPU_P_OBSERVER_KV, QNPU_P_OBSERVER_ATTENTION,
                                             QNPU_P_OBSERVER_OTHER, QNPU_P_OBSERVER_OTHER};
    qnpu__observer_cfg cfg;
    qnpu__observer_cfg_from_options(o, &cfg);
    for (int64_t i = 0; i < n_obs && s == QNPU_OK; i++) {
        int global = i >= m->n_layers * QP_LAYER_COUNT;
        int k = (int)(global ? i - m->n_layers * QP_LAYER_COUNT : i % QP_LAYER_COUNT);
        qnpu__qp *qp = global ? &q->gqp[k] : &q->qp[i];
        int cls = global ? qnpu__qp_global_class(k) : qnpu__qp_layer_class(k);
        if (qp->fixed) {                 /* row 26: s = 2^-16, z = 0 */
            qp->s = 1.0f / 65536.0f;
            qp->z = 0;
        }
        if (qp->bits && qp->origin != 1) /* a learned point is fixed, never observed (§8.2 step 3) */
            s = qnpu__observer_init(&obs[i], (int)qnpu__opt_int(o, class_param[cls]), qp->bits, qp->sym, &cfg);
    }
    sim->obs = obs;
    sim->gobs = obs + m->n_layers * QP_LAYER_COUNT;
    sim->calibrating = 1;
    if (s == QNPU_OK)
        s = qnpu__sim_quantize_rope(sim);
    for (int64_t b = 0; s == QNPU_OK && b < nblocks; b++) {
        s = qnpu__sim_forward(sim, ids + (size_t)((first + b) * L), L, logits);
        if (s == QNPU_OK && c->progress && c->progress(c->user, "calibrate", b + 1, nblocks))
            s = qnpu__fail(QNPU_ERR_CANCELLED, "calibration cancelled after %lld of %lld blocks",
                           (long long)(b + 1), (long long)nblocks);
    }
    if (s == QNPU_OK && c->tok)
        s = qnpu__tokenizer_export(c->tok, &q->vocab_tok);
    if (s == QNPU_OK)
        s = qnpu__qmodel_name_points(q);
    /* online R4 travels with the quantized model */
    for (int64_t l = 0; s == QNPU_OK && m->r4 && l < m->n_layers; l++)
        if (m->r4[l])
            s = qnpu__hadamard_clone(m->r4[l], &q->r4[l]);
done:
    for (int64_t i = 0; obs && i < n_obs; i++)
        qnpu__observer_free(&obs[i]);
    qnpu__free(obs);
    qnpu__free(logits);
    qnpu__sim_free(sim);
    free_deq(deq, m->n_layers * W_COUNT + 1);
    qnpu_model_free(rotated);
    if (s != QNPU_OK) {
        qnpu__qmodel_destroy(q);
        return s;
    }
    qnpu__handle_acquire();
    *out = q;
    return QNPU_OK;
}

qnpu_status qnpu_calibrator_run(qnpu_calibrator *c, const char *text, size_t len, qnpu_qmodel **out)
{
    if (!c || !out || (!text && len))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_calibrator_run: NULL argument");
    *out = NULL;
    if (!c->tok)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_calibrator_run: calibrating on text needs a tokenizer "
                          "(use qnpu_calibrator_run_ids for token ids)");
    int32_t *ids;
    size_t n;
    qnpu_status s = qnpu__calib_tokenize_stories(c->tok, text ? text : "", len, &ids, &n);
    if (s != QNPU_OK)
        return s;
    s = run(c, ids, n, NULL, out);
    qnpu__free(ids);
    return s;
}

static qnpu_status check_ids(const qnpu_model *m, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "calibration token id %d at position %zu is outside the "
                              "vocabulary of %lld", ids[i], i, (long long)m->vocab);
    return QNPU_OK;
}

qnpu_status qnpu_calibrator_run_ids(qnpu_calibrator *c, const int32_t *ids, size_t n, qnpu_qmodel **out)
{
    if (!c || !out || (!ids && n))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_calibrator_run_ids: NULL argument");
    *out = NULL;
    qnpu_status s = check_ids(c->src, ids, n);
    return s == QNPU_OK ? run(c, ids, n, NULL, out) : s;
}

/* ---- stage 2 (METHOD.md §8.2, calibrate_learned.h) -------------------------------------------- */

qnpu_status qnpu__calibrate_learned(const qnpu_model *fused, const qnpu_tokenizer *t, const qnpu_options *opts,
                                    const int32_t *ids, size_t n, const qnpu__train_qparams *learned,
                                    qnpu_qmodel **out)
{
    if (out)
        *out = NULL;
    if (!fused || !out || (!ids && n))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__calibrate_learned: NULL argument");
    qnpu_status s = check_ids(fused, ids, n);
    if (s != QNPU_OK)
        return s;
    qnpu_calibrator *c;
    if ((s = qnpu_calibrator_create(fused, t, opts, &c)) != QNPU_OK)
        return s;
    s = run(c, ids, n, learned, out);
    qnpu_calibrator_free(c);
    if (s != QNPU_OK)
        qnpu__error_prefix("stage 2");
    return s;
}
