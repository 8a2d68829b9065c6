/* report.c — qnpu_report: the quantization error report of a quantized model against the float
 * model it was made from.
 *
 * Everything runs through the simulated NPU graph (simgraph.c) built once on the prepared float
 * model; a configuration is a set of enabled QP records plus a choice, per linear, between the
 * float weights and the qmodel's dequantized integer weights:
 *   reference        float weights, every point off (bits 0, pass-through): the float model;
 *   fully quantized  dequantized weights, every point with the qmodel's record: what
 *                    qnpu_qmodel_perplexity_ids evaluates;
 *   only point i     the reference with point i alone quantized (an activation record, or one
 *                    weight tensor replaced by its dequantized version).
 * Per point: SQNR = 10 log10(sum x^2 / sum (x_hat - x)^2), activations measured by the sim's tap
 * in the fully quantized graph (x entering the point, x_hat leaving it), weights on the tensor
 * itself; mse_only = mean squared logit difference between "only point i" and the reference;
 * share = mse_only / sum over points. Windows follow the perplexity protocol (each window starts
 * from an empty context; ctx - 1 positions are run and scored), full windows only. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../float/ops.h"
#include "qgraph.h"
#include "quant.h"
#include "simgraph.h"

struct qnpu_report {
    int64_t n, n_act;          /* points (activations first, then weights), activation points */
    char **names;
    int *bits;
    double *sqnr, *mse_only, *share;
    double ppl_float, ppl_quant, logit_mse;
    int64_t ctx, windows, scored;
};

void qnpu_report_free(qnpu_report *r)
{
    if (!r)
        return;
    for (int64_t i = 0; r->names && i < r->n; i++)
        qnpu__free(r->names[i]);
    qnpu__free(r->names);
    qnpu__free(r->bits);
    qnpu__free(r->sqnr);
    qnpu__free(r->mse_only);
    qnpu__free(r->share);
    qnpu__free(r);
    qnpu__handle_release();
}

/* ---- the measurement ------------------------------------------------------------------------ */

/* Sums of x^2 and (x_hat - x)^2 per record index (the tap's index). */
typedef struct sums {
    double *sig, *err;
} sums;

static void tap(void *user, int64_t index, const float *before, const float *after, size_t n)
{
    sums *a = user;
    double s = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        double x = before[i], d = (double)after[i] - x;
        s += x * x;
        e += d * d;
    }
    a->sig[index] += s;
    a->err[index] += e;
}

static double db_of(double sig, double err)
{
    if (!(err > 0))
        return err == 0 && sig > 0 ? INFINITY : NAN;
    return 10.0 * log10(sig / err);
}

/* One simulated graph and what it takes to switch between configurations. */
typedef struct runner {
    qnpu__sim *sim;
    const qnpu_qmodel *q;
    qnpu__qp *full, *cfg;      /* [n_rec] the qmodel's records; the records the sim reads */
    int64_t n_rec, nw;         /* n_layers * QP_LAYER_COUNT + QP_GLOBAL_COUNT; n_layers * W_COUNT + 1 */
    float **deq;               /* [nw] dequantized weights (the last is lm_head) */
    const float **wf;          /* [nw] float weights */
    float *cos0, *sin0;        /* the float RoPE tables */
    size_t rope_n;
} runner;

/* act: the record to enable alone (-1 none), w: the weight to quantize alone (-1 none);
 * all: everything quantized. */
static qnpu_status configure(runner *r, int all, int64_t act, int64_t w)
{
    qnpu__sim *s = r->sim;
    if (all) {
        memcpy(r->cfg, r->full, (size_t)r->n_rec * sizeof *r->cfg);
    } else {
        memset(r->cfg, 0, (size_t)r->n_rec * sizeof *r->cfg);
        if (act >= 0)
            r->cfg[act] = r->full[act];
    }
    int64_t nl = r->nw - 1;
    for (int64_t i = 0; i < nl; i++)
        s->W[i] = all || i == w ? r->deq[i] : r->wf[i];
    s->head = all || w == nl ? r->deq[nl] : r->wf[nl];
    memcpy(s->rope_cos, r->cos0, r->rope_n * sizeof(float));
    memcpy(s->rope_sin, r->sin0, r->rope_n * sizeof(float));
    return qnpu__sim_quantize_rope(s);
}

static float *dequantize(const qnpu__qlinear *ql)
{
    size_t n = (size_t)(ql->rows * ql->cols);
    float *w = qnpu__malloc(n * sizeof(float));
    for (size_t i = 0; w && i < n; i++)
        w[i] = (float)ql->q[i] * ql->scale[i / (size_t)ql->cols];
    return w;
}

/* The quantized model must come from this float model under the same rotations: same
 * dimensions, the same rotated embedding, online R4 in the same layers, and weights that are
 * the rounding of these (symmetric rounding to the nearest level, zero included, never moves a
 * value further than its magnitude, so a weight SQNR below 0 dB means another rotation). */
static qnpu_status check_match(const qnpu_model *m, const qnpu_qmodel *q)
{
    if (m->dim != q->dim || m->ffn != q->ffn || m->n_layers != q->n_layers || m->n_heads != q->n_heads ||
        m->n_kv_heads != q->n_kv_heads || m->head_dim != q->head_dim || m->vocab != q->vocab ||
        (m->qkv_bias != 0) != (q->lin[0].bias != NULL))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "report: %s does not have the dimensions of the quantized model",
                          m->path);
    double num = 0, den = 0;
    size_t ne = (size_t)(m->vocab * m->dim);
    for (size_t i = 0; i < ne; i++) {
        double d = (double)m->tok_embd[i] - q->tok_embd[i];
        num += d * d;
        den += (double)m->tok_embd[i] * m->tok_embd[i];
    }
    if (!(num <= 1e-8 * den))
        return qnpu__fail(QNPU_ERR_INVALID_ARG,
                          "report: the quantized model was not made from %s with these options (the rotated "
                          "embeddings differ by %.3g relative RMS); pass the rotate.* options used to quantize",
                          m->path, sqrt(num / (den > 0 ? den : 1)));
    for (int64_t l = 0; l < m->n_layers; l++)
        if ((m->r4 && m->r4[l]) != (q->r4 && q->r4[l]))
            return qnpu__fail(QNPU_ERR_INVALID_ARG,
                              "report: layer %lld has online R4 in only one of %s and the quantized model; "
                              "pass the rotate.* options used to quantize", (long long)l, m->path);
    return QNPU_OK;
}

static qnpu_status build(qnpu_report *rep, const qnpu_model *m, const qnpu_qmodel *q, const qnpu_options *opts,
                         const int32_t *ids, int64_t ctx)
{
    int64_t L = m->n_layers, nw = L * W_COUNT + 1, n_rec = L * QP_LAYER_COUNT + QP_GLOBAL_COUNT;
    int64_t n_act = rep->n_act, T = ctx - 1, V = m->vocab;
    size_t nlog = (size_t)T * (size_t)V;
    runner r = {0};
    sums acc = {0};
    int64_t *rec = NULL;
    float *ref = NULL, *lg = NULL;
    qnpu_status s = check_match(m, q);
    if (s != QNPU_OK)
        return s;
    r.q = q;
    r.n_rec = n_rec;
    r.nw = nw;
    r.full = qnpu__calloc((size_t)n_rec, sizeof *r.full);
    r.cfg = qnpu__calloc((size_t)n_rec, sizeof *r.cfg);
    r.deq = qnpu__calloc((size_t)nw, sizeof *r.deq);
    r.wf = qnpu__calloc((size_t)nw, sizeof *r.wf);
    acc.sig = qnpu__calloc((size_t)n_rec, sizeof(double));
    acc.err = qnpu__calloc((size_t)n_rec, sizeof(double));
    rec = qnpu__calloc((size_t)n_act, sizeof *rec);
    ref = qnpu__malloc(nlog * sizeof(float));
    lg = qnpu__malloc(nlog * sizeof(float));
    if (!r.full || !r.cfg || !r.deq || !r.wf || !acc.sig || !acc.err || !rec || !ref || !lg) {
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "report: out of memory");
        goto done;
    }
    memcpy(r.full, q->qp, (size_t)(L * QP_LAYER_COUNT) * sizeof *r.full);
    memcpy(r.full + L * QP_LAYER_COUNT, q->gqp, sizeof q->gqp);
    /* the listed activation points, in the qmodel's order (row 1 only in layer 0), then global */
    int64_t k = 0;
    for (int64_t l = 0; l < L; l++)
        for (int j = 0; j < QP_LAYER_COUNT; j++)
            if (l == 0 || j != QP_IN)
                rec[k++] = l * QP_LAYER_COUNT + j;
    for (int j = 0; j < QP_GLOBAL_COUNT; j++)
        rec[k++] = L * QP_LAYER_COUNT + j;
    /* weights: float, dequantized, and their SQNR */
    for (int64_t w = 0; w < nw; w++) {
        const qnpu__qlinear *ql = w < nw - 1 ? &q->lin[w] : &q->head;
        const qnpu__layer *Ly = w < nw - 1 ? &m->layers[w / W_COUNT] : NULL;
        const float *src[W_COUNT] = {0};
        if (Ly) {
            src[W_Q] = Ly->wq, src[W_K] = Ly->wk, src[W_V] = Ly->wv, src[W_O] = Ly->wo;
            src[W_GATE] = Ly->w_gate, src[W_UP] = Ly->w_up, src[W_DOWN] = Ly->w_down;
        }
        r.wf[w] = Ly ? src[w % W_COUNT] : m->output;
        if (!(r.deq[w] = dequantize(ql))) {
            s = qnpu__fail(QNPU_ERR_NO_MEMORY, "report: out of memory");
            goto done;
        }
        double sig = 0, err = 0;
        for (size_t i = 0; i < (size_t)(ql->rows * ql->cols); i++) {
            double x = r.wf[w][i], d = (double)r.deq[w][i] - x;
            sig += x * x;
            err += d * d;
        }
        int64_t p = n_act + w;
        rep->sqnr[p] = db_of(sig, err);
        if (rep->sqnr[p] < -1.0) {
            s = qnpu__fail(QNPU_ERR_INVALID_ARG,
                           "report: %s: the quantized weights are not a rounding of %s's (SQNR %.2f dB); "
                           "pass the rotate.* options used to quantize", rep->names[p], m->path, rep->sqnr[p]);
            goto done;
        }
    }
    if ((s = qnpu__sim_create(m, qnpu__opt_threads(opts), ctx, ctx, &r.sim)) != QNPU_OK)
        goto done;
    r.rope_n = (size_t)ctx * (size_t)m->head_dim;
    r.cos0 = qnpu__malloc(r.rope_n * sizeof(float));
    r.sin0 = qnpu__malloc(r.rope_n * sizeof(float));
    if (!r.cos0 || !r.sin0) {
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "report: out of memory");
        goto done;
    }
    memcpy(r.cos0, r.sim->rope_cos, r.rope_n * sizeof(float));
    memcpy(r.sin0, r.sim->rope_sin, r.rope_n * sizeof(float));
    r.sim->qp = r.cfg;
    r.sim->gqp = r.cfg + L * QP_LAYER_COUNT;
    r.sim->tap_user = &acc;

    double nll_f = 0, nll_q = 0, mse = 0;
    for (int64_t win = 0; win < rep->windows; win++) {
        const int32_t *tok = ids + win * ctx;
        /* the reference */
        if ((s = configure(&r, 0, -1, -1)) != QNPU_OK || (s = qnpu__sim_forward(r.sim, tok, T, ref)) != QNPU_OK)
            goto done;
        for (int64_t t = 0; t < T; t++)
            nll_f += qnpu__nll(ref + (size_t)t * (size_t)V, V, tok[t + 1]);
        /* fully quantized, with the tap */
        r.sim->tap = tap;
        s = configure(&r, 1, -1, -1);
        if (s == QNPU_OK)
            s = qnpu__sim_forward(r.sim, tok, T, lg);
        r.sim->tap = NULL;
        if (s != QNPU_OK)
            goto done;
        for (int64_t t = 0; t < T; t++)
            nll_q += qnpu__nll(lg + (size_t)t * (size_t)V, V, tok[t + 1]);
        for (size_t i = 0; i < nlog; i++)
            mse += ((double)lg[i] - ref[i]) * ((double)lg[i] - ref[i]);
        /* one point at a time */
        for (int64_t p = 0; p < rep->n; p++) {
            if (rep->bits[p] == 0)
                continue;
            if ((s = configure(&r, 0, p < n_act ? rec[p] : -1, p < n_act ? -1 : p - n_act)) != QNPU_OK ||
                (s = qnpu__sim_forward(r.sim, tok, T, lg)) != QNPU_OK)
                goto done;
            double e = 0;
            for (size_t i = 0; i < nlog; i++)
                e += ((double)lg[i] - ref[i]) * ((double)lg[i] - ref[i]);
            rep->mse_only[p] += e;
        }
    }
    double count = (double)rep->windows * (double)nlog, total = 0;
    rep->scored = rep->windows * T;
    rep->ppl_float = exp(nll_f / (double)rep->scored);
    rep->ppl_quant = exp(nll_q / (double)rep->scored);
    rep->logit_mse = mse / count;
    for (int64_t p = 0; p < rep->n; p++) {
        rep->mse_only[p] /= count;
        if (!isfinite(rep->mse_only[p])) {
            s = qnpu__fail(QNPU_ERR_NUMERIC, "report: NaN or Inf logits with only %s quantized", rep->names[p]);
            goto done;
        }
        total += rep->mse_only[p];
        if (p < n_act)
            rep->sqnr[p] = rep->bits[p] ? db_of(acc.sig[rec[p]], acc.err[rec[p]]) : NAN;
    }
    if (!isfinite(rep->ppl_float) || !isfinite(rep->ppl_quant) || !isfinite(rep->logit_mse)) {
        s = qnpu__fail(QNPU_ERR_NUMERIC, "report: NaN or Inf logits in the %s graph",
                       isfinite(rep->ppl_float) ? "quantized" : "float");
        goto done;
    }
    for (int64_t p = 0; p < rep->n; p++)
        rep->share[p] = total > 0 ? rep->mse_only[p] / total : 0.0;
done:
    qnpu__sim_free(r.sim);
    for (int64_t w = 0; r.deq && w < nw; w++)
        qnpu__free(r.deq[w]);
    qnpu__free(r.deq);
    qnpu__free(r.wf);
    qnpu__free(r.full);
    qnpu__free(r.cfg);
    qnpu__free(r.cos0);
    qnpu__free(r.sin0);
    qnpu__free(acc.sig);
    qnpu__free(acc.err);
    qnpu__free(rec);
    qnpu__free(ref);
    qnpu__free(lg);
    return s;
}

qnpu_status qnpu_report_create(const qnpu_model *m, const qnpu_qmodel *q, const qnpu_options *opts,
                               const int32_t *ids, size_t n, int64_t ctx, qnpu_report **out)
{
    if (out)
        *out = NULL;
    if (!m || !q || !ids || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_report_create: NULL argument");
    if (ctx <= 0)
        ctx = qnpu__opt_int(opts, QNPU_P_EVAL_SEQ_LEN);
    if (ctx < 2 || ctx > (int64_t)1 << 16)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "report: window %lld is outside [2, 65536]", (long long)ctx);
    if (n < (size_t)ctx)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "report: %zu tokens do not fill one window of %lld", n,
                          (long long)ctx);
    if (!q->names || q->n_names != q->n_layers * (QP_LAYER_COUNT + W_COUNT) - (q->n_layers - 1) + QP_GLOBAL_COUNT + 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "report: the quantized model's points are not named");
    int64_t windows = (int64_t)(n / (size_t)ctx);
    for (size_t i = 0; i < (size_t)(windows * ctx); i++)
        if (ids[i] < 0 || ids[i] >= q->vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "token id %d at position %zu is outside the vocabulary of %lld",
                              ids[i], i, (long long)q->vocab);
    qnpu_model *rotated = NULL;
    qnpu_status s = QNPU_OK;
    if (!m->prepared) {
        qnpu_rotator *rot;
        if ((s = qnpu_rotator_create(m, opts, &rot)) != QNPU_OK)
            return s;
        s = qnpu_rotator_run(rot, &rotated);
        qnpu_rotator_free(rot);
        if (s != QNPU_OK)
            return s;
        m = rotated;
    }
    qnpu_report *r = qnpu__calloc(1, sizeof *r);
    if (r) {
        r->n = q->n_names;
        r->n_act = q->n_names - (q->n_layers * W_COUNT + 1);
        r->ctx = ctx;
        r->windows = windows;
        r->names = qnpu__calloc((size_t)r->n, sizeof *r->names);
        r->bits = qnpu__calloc((size_t)r->n, sizeof *r->bits);
        r->sqnr = qnpu__calloc((size_t)r->n, sizeof *r->sqnr);
        r->mse_only = qnpu__calloc((size_t)r->n, sizeof *r->mse_only);
        r->share = qnpu__calloc((size_t)r->n, sizeof *r->share);
    }
    int ok = r && r->names && r->bits && r->sqnr && r->mse_only && r->share;
    for (int64_t i = 0; ok && i < r->n; i++) {
        ok = (r->names[i] = qnpu__strdup(q->names[i])) != NULL;
        qnpu_qmodel_qp_info(q, i, NULL, &r->bits[i], NULL, NULL, NULL);
    }
    if (!ok)
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "report: out of memory");
    else
        s = build(r, m, q, opts, ids, ctx);
    qnpu_model_free(rotated);
    if (r)
        qnpu__handle_acquire(); /* released by qnpu_report_free, also on the failure path below */
    if (s != QNPU_OK) {
        qnpu_report_free(r);
        return s;
    }
    *out = r;
    return QNPU_OK;
}

/* ---- getters -------------------------------------------------------------------------------- */

int64_t qnpu_report_count(const qnpu_report *r)
{
    return r ? r->n : 0;
}

qnpu_status qnpu_report_point(const qnpu_report *r, int64_t i, const char **name, int *bits, double *sqnr_db,
                              double *mse_only, double *share)
{
    if (!r || i < 0 || i >= r->n)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_report_point: no point %lld", (long long)i);
    if (name) *name = r->names[i];
    if (bits) *bits = r->bits[i];
    if (sqnr_db) *sqnr_db = r->sqnr[i];
    if (mse_only) *mse_only = r->mse_only[i];
    if (share) *share = r->share[i];
    return QNPU_OK;
}

qnpu_status qnpu_report_totals(const qnpu_report *r, double *ppl_float, double *ppl_quant, double *logit_mse)
{
    if (!r)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_report_totals: NULL report");
    if (ppl_float) *ppl_float = r->ppl_float;
    if (ppl_quant) *ppl_quant = r->ppl_quant;
    if (logit_mse) *logit_mse = r->logit_mse;
    return QNPU_OK;
}

/* ---- output: a text buffer, written atomically ---------------------------------------------- */

/* XML text: the five special characters as entities, control characters (not allowed in XML
 * 1.0) as '?'. */
static void sb_xml(qnpu__sbuf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': qnpu__sb_printf(b, "&amp;"); break;
        case '<': qnpu__sb_printf(b, "&lt;"); break;
        case '>': qnpu__sb_printf(b, "&gt;"); break;
        case '"': qnpu__sb_printf(b, "&quot;"); break;
        case '\'': qnpu__sb_printf(b, "&apos;"); break;
        default: qnpu__sb_printf(b, "%c", c < 0x20 && c != '\t' ? '?' : (char)c);
        }
    }
}

/* A JSON string literal. */
static void sb_json_str(qnpu__sbuf *b, const char *s)
{
    qnpu__sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            qnpu__sb_printf(b, "\\%c", c);
        else if (c < 0x20)
            qnpu__sb_printf(b, "\\u%04x", c);
        else
            qnpu__sb_printf(b, "%c", c);
    }
    qnpu__sb_printf(b, "\"");
}

/* A JSON number; NaN and infinities have no JSON form and become null. */
static void sb_json_num(qnpu__sbuf *b, double v)
{
    if (isfinite(v))
        qnpu__sb_printf(b, "%.9g", v);
    else
        qnpu__sb_printf(b, "null");
}

/* Write `len` bytes to `path` through a temporary file beside it (fsync, rename); a new file
 * gets mode 0644, a replaced one keeps its mode; on failure nothing is left behind. */
static qnpu_status write_atomic(const char *path, const char *data, size_t len)
{
    size_t pl = strlen(path);
    char *tmp = qnpu__malloc(pl + 16);
    if (!tmp)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
    mode_t mode = 0644;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        mode = st.st_mode & 07777;
    snprintf(tmp, pl + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        qnpu_status s = qnpu__fail(QNPU_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                                   strerror(errno));
        qnpu__free(tmp);
        return s;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    const char *what = NULL;
    int err = 0;
    for (size_t off = 0; off < len && !err;) {
        ssize_t k = write(fd, data + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            err = k < 0 ? errno : EIO, what = "write";
        else
            off += (size_t)k;
    }
    if (!err && fchmod(fd, mode) != 0)
        err = errno, what = "fchmod";
    if (!err && fsync(fd) != 0)
        err = errno, what = "fsync";
    if (close(fd) != 0 && !err)
        err = errno, what = "close";
    if (!err && rename(tmp, path) != 0)
        err = errno, what = "rename";
    qnpu_status s = QNPU_OK;
    if (err) {
        unlink(tmp);
        s = qnpu__fail(QNPU_ERR_IO, "%s: cannot write (%s of the temporary file %s failed): %s", path, what, tmp,
                       strerror(err));
    }
    qnpu__free(tmp);
    return s;
}

static qnpu_status finish(qnpu__sbuf *b, const char *path)
{
    qnpu_status s = b->oom ? qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path)
                           : write_atomic(path, b->p, b->len);
    qnpu__free(b->p);
    return s;
}

static int is_weight(const qnpu_report *r, int64_t i)
{
    return i >= r->n_act;
}

qnpu_status qnpu_report_write_json(const qnpu_report *r, const char *path)
{
    if (!r || !path || !*path)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_report_write_json: NULL argument");
    qnpu__sbuf b = {0};
    qnpu__sb_printf(&b, "{\n  \"ctx\": %lld,\n  \"windows\": %lld,\n  \"tokens_scored\": %lld,\n  \"ppl_float\": ",
              (long long)r->ctx, (long long)r->windows, (long long)r->scored);
    sb_json_num(&b, r->ppl_float);
    qnpu__sb_printf(&b, ",\n  \"ppl_quant\": ");
    sb_json_num(&b, r->ppl_quant);
    qnpu__sb_printf(&b, ",\n  \"logit_mse\": ");
    sb_json_num(&b, r->logit_mse);
    qnpu__sb_printf(&b, ",\n  \"points\": [");
    for (int64_t i = 0; i < r->n; i++) {
        qnpu__sb_printf(&b, "%s\n    {\"name\": ", i ? "," : "");
        sb_json_str(&b, r->names[i]);
        qnpu__sb_printf(&b, ", \"kind\": \"%s\", \"bits\": %d, \"sqnr_db\": ", is_weight(r, i) ? "weight" : "activation",
                  r->bits[i]);
        sb_json_num(&b, r->sqnr[i]);
        qnpu__sb_printf(&b, ", \"mse_only\": ");
        sb_json_num(&b, r->mse_only[i]);
        qnpu__sb_printf(&b, ", \"share\": ");
        sb_json_num(&b, r->share[i]);
        qnpu__sb_printf(&b, "}");
    }
    qnpu__sb_printf(&b, "\n  ]\n}\n");
    return finish(&b, path);
}

/* Points by share, descending (ties in point order). */
typedef struct ranked {
    double share;
    int64_t i;
} ranked;

static int by_share(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->share != y->share)
        return x->share > y->share ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static void sqnr_text(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "n/a");
    else if (isinf(v))
        snprintf(buf, cap, "%sinf dB", v > 0 ? "" : "-");
    else
        snprintf(buf, cap, "%.1f dB", v);
}

qnpu_status qnpu_report_write_svg(const qnpu_report *r, const char *path)
{
    if (!r || !path || !*path)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_report_write_svg: NULL argument");
    ranked *order = qnpu__malloc((size_t)(r->n > 0 ? r->n : 1) * sizeof *order);
    if (!order)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
    for (int64_t i = 0; i < r->n; i++)
        order[i].share = r->share[i], order[i].i = i;
    qsort(order, (size_t)r->n, sizeof *order, by_share);
    int64_t top = r->n < 40 ? r->n : 40;
    double mx = top > 0 ? order[0].share : 0;
    const int width = 980, name_w = 240, bar_x = name_w + 10, bar_w = 420, row = 20, head = 74;
    int height = head + (int)top * row + 56;
    qnpu__sbuf b = {0};
    qnpu__sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"12\">\n",
              width, height, width, height);
    qnpu__sb_printf(&b, "<title>Quantization error report</title>\n"
                  "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", width, height);
    qnpu__sb_printf(&b, "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Share of the logit MSE per "
                  "quantization point (top %lld of %lld)</text>\n", (long long)top, (long long)r->n);
    qnpu__sb_printf(&b, "<text x=\"10\" y=\"42\">ppl float %.4f, quantized %.4f (%+.2f %%); logit MSE %.4g; "
                  "%lld windows of %lld tokens</text>\n",
              r->ppl_float, r->ppl_quant, 100.0 * (r->ppl_quant / r->ppl_float - 1.0), r->logit_mse,
              (long long)r->windows, (long long)r->ctx);
    qnpu__sb_printf(&b, "<text x=\"10\" y=\"60\" fill=\"#555555\">share = logit MSE with only that point quantized "
                  "/ sum over points; SQNR in the fully quantized graph</text>\n");
    for (int64_t k = 0; k < top; k++) {
        int64_t i = order[k].i;
        int y = head + (int)k * row;
        double frac = mx > 0 ? r->share[i] / mx : 0;
        char sq[32];
        sqnr_text(sq, sizeof sq, r->sqnr[i]);
        qnpu__sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", name_w, y + 14);
        sb_xml(&b, r->names[i]);
        qnpu__sb_printf(&b, "</text>\n<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", bar_x, y + 3,
                  frac * bar_w, row - 6, is_weight(r, i) ? "#d95f02" : "#1b9e77");
        qnpu__sb_printf(&b, "<text x=\"%.1f\" y=\"%d\">%.2f %%, SQNR %s, %d-bit</text>\n", bar_x + frac * bar_w + 6, y + 14,
                  100.0 * r->share[i], sq, r->bits[i]);
    }
    int ly = head + (int)top * row + 24;
    qnpu__sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#1b9e77\"/>\n"
                  "<text x=\"%d\" y=\"%d\">activation point</text>\n"
                  "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#d95f02\"/>\n"
                  "<text x=\"%d\" y=\"%d\">weight</text>\n</svg>\n",
              bar_x, ly, bar_x + 18, ly + 11, bar_x + 160, ly, bar_x + 178, ly + 11);
    qnpu__free(order);
    return finish(&b, path);
}
