/* compare.c — qnpu_compare: the integer engine against the simulated graph, point by point.
 *
 * Each window runs twice from an empty context: through a qnpu_session whose decoder tap records
 * every stored code, then through the simulated graph (lib/calib/simgraph.c) whose tap turns each
 * fake-quantized value back into its code, rne(x̂/s) + z, and counts the differences. Both give
 * logits, from which the perplexity of each and the agreement of their arg-max are taken. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/simgraph.h"
#include "../engine/decoder.h"
#include "../float/ops.h"

typedef struct point {
    int32_t *codes;          /* the engine's codes of the current window */
    int64_t n, cap;
    int64_t compared, mismatched, max_diff;
} point;

struct qnpu_compare {
    const qnpu_qmodel *q;
    int64_t n_points;        /* n_layers·QP_LAYER_COUNT + QP_GLOBAL_COUNT slots */
    point *pts;
    int64_t *order;          /* slots with compared codes, in graph order */
    char **names;
    int64_t n_listed;
    double nll_sim, nll_int;
    int64_t scored, agree;
    int failed;              /* out of memory inside a tap */
};

void qnpu_compare_free(qnpu_compare *c)
{
    if (!c)
        return;
    for (int64_t i = 0; c->pts && i < c->n_points; i++)
        qnpu__free(c->pts[i].codes);
    for (int64_t i = 0; c->names && i < c->n_listed; i++)
        qnpu__free(c->names[i]);
    qnpu__free(c->names);
    qnpu__free(c->order);
    qnpu__free(c->pts);
    qnpu__free(c);
    qnpu__handle_release();
}

static void engine_tap(void *user, int64_t index, int64_t offset, const void *codes, int ctype, int64_t n)
{
    qnpu_compare *c = user;
    point *pt = &c->pts[index];
    if (offset + n > pt->cap) {
        int64_t cap = offset + n;
        int32_t *b = qnpu__realloc(pt->codes, (size_t)pt->cap * sizeof *b, (size_t)cap * sizeof *b);
        if (!b) {
            c->failed = 1;
            return;
        }
        pt->codes = b;
        pt->cap = cap;
    }
    for (int64_t i = 0; i < n; i++)
        pt->codes[offset + i] = ctype < 0 ? ((const int32_t *)codes)[i] : qnpu__code_get(codes, ctype, i);
    if (offset + n > pt->n)
        pt->n = offset + n;
}

static void sim_tap(void *user, int64_t index, const float *before, const float *after, size_t n)
{
    (void)before;
    qnpu_compare *c = user;
    point *pt = &c->pts[index];
    if ((int64_t)n != pt->n)
        return; /* a point the engine does not store (the RoPE intermediates, the constants) */
    int64_t L = c->q->n_layers;
    const qnpu__qp *qp = index < L * QP_LAYER_COUNT ? &c->q->qp[index] : &c->q->gqp[index - L * QP_LAYER_COUNT];
    double s = qp->s;
    for (size_t i = 0; i < n; i++) {
        int64_t code = (int64_t)nearbyint((double)after[i] / s) + qp->z;
        int64_t diff = llabs(code - pt->codes[i]);
        pt->mismatched += diff != 0;
        if (diff > pt->max_diff)
            pt->max_diff = diff;
    }
    pt->compared += (int64_t)n;
}

static int64_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static qnpu_status list_points(qnpu_compare *c)
{
    int64_t L = c->q->n_layers;
    c->order = qnpu__calloc((size_t)c->n_points, sizeof *c->order);
    c->names = qnpu__calloc((size_t)c->n_points, sizeof *c->names);
    if (!c->order || !c->names)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "compare: out of memory");
    char buf[96];
    for (int64_t i = 0; i < c->n_points; i++) {
        if (!c->pts[i].compared)
            continue;
        if (i < L * QP_LAYER_COUNT)
            snprintf(buf, sizeof buf, "layer%lld.%s", (long long)(i / QP_LAYER_COUNT),
                     qnpu__qp_layer_name((int)(i % QP_LAYER_COUNT)));
        else
            snprintf(buf, sizeof buf, "%s", qnpu__qp_global_name((int)(i - L * QP_LAYER_COUNT)));
        if (!(c->names[c->n_listed] = qnpu__strdup(buf)))
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "compare: out of memory");
        c->order[c->n_listed++] = i;
    }
    return QNPU_OK;
}

qnpu_status qnpu_compare_run(const qnpu_qmodel *q, const qnpu_options *opts, const int32_t *ids, size_t n,
                             int64_t ctx, int64_t max_windows, qnpu_compare **out)
{
    if (!q || !ids || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_compare_run: NULL argument");
    *out = NULL;
    if (ctx <= 0)
        ctx = qnpu__opt_int(opts, QNPU_P_EVAL_SEQ_LEN);
    if (ctx < 2 || (size_t)ctx > n)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "compare: %zu tokens hold no window of %lld", n, (long long)ctx);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= q->vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "token id %d at position %zu is outside the vocabulary of %lld",
                              ids[i], i, (long long)q->vocab);
    int64_t windows = (int64_t)(n / (size_t)ctx), T = ctx - 1, V = q->vocab;
    if (max_windows > 0 && windows > max_windows)
        windows = max_windows;
    qnpu_compare *c = qnpu__calloc(1, sizeof *c);
    if (!c)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "compare: out of memory");
    qnpu__handle_acquire();
    c->q = q;
    c->n_points = q->n_layers * QP_LAYER_COUNT + QP_GLOBAL_COUNT;
    c->pts = qnpu__calloc((size_t)c->n_points, sizeof *c->pts);
    float *li = qnpu__malloc((size_t)(T * V) * sizeof(float)), *ls = qnpu__malloc((size_t)(T * V) * sizeof(float));
    qnpu_session *ses = NULL;
    qnpu_model *view = NULL;
    qnpu__sim *sim = NULL;
    qnpu_status st = !c->pts || !li || !ls ? qnpu__fail(QNPU_ERR_NO_MEMORY, "compare: out of memory") : QNPU_OK;
    if (st == QNPU_OK)
        st = qnpu_session_create(q, opts, &ses);
    if (st == QNPU_OK)
        st = qnpu__qmodel_sim(q, qnpu__opt_threads(opts), T, q->max_seq > ctx ? q->max_seq : ctx, &view, &sim);
    if (st == QNPU_OK) {
        qnpu__session_set_tap(ses, engine_tap, c);
        sim->tap = sim_tap;
        sim->tap_user = c;
    }
    for (int64_t w = 0; st == QNPU_OK && w < windows; w++) {
        const int32_t *tok = ids + w * ctx;
        for (int64_t i = 0; i < c->n_points; i++)
            c->pts[i].n = 0;
        qnpu_session_reset(ses);
        st = qnpu_session_eval(ses, tok, (size_t)T, 1, li, (size_t)(T * V));
        if (st == QNPU_OK && c->failed)
            st = qnpu__fail(QNPU_ERR_NO_MEMORY, "compare: out of memory");
        if (st == QNPU_OK)
            st = qnpu__sim_forward(sim, tok, T, ls);
        for (int64_t t = 0; st == QNPU_OK && t < T; t++) {
            c->nll_int += qnpu__nll(li + t * V, V, tok[t + 1]);
            c->nll_sim += qnpu__nll(ls + t * V, V, tok[t + 1]);
            c->agree += argmax(li + t * V, V) == argmax(ls + t * V, V);
            c->scored++;
        }
    }
    if (st == QNPU_OK)
        st = list_points(c);
    qnpu__free(li);
    qnpu__free(ls);
    qnpu_session_free(ses);
    qnpu__sim_free(sim);
    if (view)
        qnpu__model_destroy(view);
    if (st != QNPU_OK) {
        qnpu_compare_free(c);
        return st;
    }
    *out = c;
    return QNPU_OK;
}

int64_t qnpu_compare_count(const qnpu_compare *c)
{
    return c ? c->n_listed : 0;
}

qnpu_status qnpu_compare_point(const qnpu_compare *c, int64_t i, const char **name, int64_t *codes,
                               int64_t *mismatched, int64_t *max_diff)
{
    if (!c || i < 0 || i >= c->n_listed)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_compare_point: no point %lld", (long long)i);
    const point *pt = &c->pts[c->order[i]];
    if (name) *name = c->names[i];
    if (codes) *codes = pt->compared;
    if (mismatched) *mismatched = pt->mismatched;
    if (max_diff) *max_diff = pt->max_diff;
    return QNPU_OK;
}

qnpu_status qnpu_compare_totals(const qnpu_compare *c, double *ppl_sim, double *ppl_int,
                                double *top1_agreement, int64_t *scored)
{
    if (!c || !c->scored)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_compare_totals: no comparison");
    if (ppl_sim) *ppl_sim = exp(c->nll_sim / (double)c->scored);
    if (ppl_int) *ppl_int = exp(c->nll_int / (double)c->scored);
    if (top1_agreement) *top1_agreement = (double)c->agree / (double)c->scored;
    if (scored) *scored = c->scored;
    return QNPU_OK;
}
