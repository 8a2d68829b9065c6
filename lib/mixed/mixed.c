/* mixed.c — sensitivity-guided mixed precision (METHOD.md §9); see mixed.h. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/qgraph.h"
#include "mixed.h"

/* The deployed graph's QP of stage-1 activation point a (the order of qnpu__train). */
static const int graph_point[QNPU__TRAIN_NA] = {QP_QKV_IN, QP_O_IN, QP_GATEUP_IN, QP_DOWN_IN};

static const char *const mode_names[] = {"none", "act_4to8", "down_8to16", "down_r4"};

/* ---- the metric (§9.1) ------------------------------------------------------------------------ */

double qnpu__mixed_rel_error_sum(const float *x, const float *q, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)(fabsf(q[i] - x[i]) / (fabsf(x[i]) + QNPU__MIXED_EPS));
    return sum;
}

/* ---- the selection (§9.2) --------------------------------------------------------------------- */

static int desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

qnpu_status qnpu__mixed_select(const double *r, int64_t n, double p, unsigned char *selected, int64_t *idx,
                               double *threshold)
{
    if (idx)
        *idx = -1;
    if (threshold)
        *threshold = NAN;
    if (n < 0 || (n > 0 && (!r || !selected)))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "mixed precision: no sensitivities to select from");
    if (!(p >= 0.0 && p <= 1.0))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "mixed precision: p = %g is not in [0, 1]", p);
    for (int64_t i = 0; i < n; i++)
        if (isnan(r[i]))
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "mixed precision: sensitivity %lld is NaN", (long long)i);
    int64_t k = (int64_t)ceil(p * (double)n) - 1;
    if (idx)
        *idx = k;
    if (n > 0)
        memset(selected, 0, (size_t)n);
    if (k < 0)
        return QNPU_OK; /* p = 0: nothing (the reference's threshold 1.5 "selects nothing in practice") */
    double *sorted = qnpu__malloc((size_t)n * sizeof *sorted);
    if (!sorted)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "mixed precision: out of memory");
    memcpy(sorted, r, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, desc);
    double th = sorted[k];
    qnpu__free(sorted);
    for (int64_t i = 0; i < n; i++)
        selected[i] = r[i] >= th;
    if (threshold)
        *threshold = th;
    return QNPU_OK;
}

/* ---- the run ---------------------------------------------------------------------------------- */

void qnpu__mixed_result_free(qnpu__mixed_result *r)
{
    if (!r)
        return;
    qnpu__free(r->opt_bits);
    qnpu__free(r->start_bits);
    qnpu__free(r->bits);
    qnpu__free(r->r);
    qnpu__free(r->cand);
    qnpu__free(r->sel);
    qnpu__free(r);
}

/* The measuring forward hook: the state's own hook computes y = Q(x) (fake quantization with the
 * current qparams, a copy for a pass-through point), then each linear input adds its relative
 * error. */
typedef struct measure {
    qnpu__s1_hooks inner;
    int64_t L;
    double *sum;
    int64_t *count;
} measure;

static qnpu_status measure_fq(void *user, int point, int64_t layer, const float *x, float *y, int64_t rows,
                              int64_t cols)
{
    measure *m = user;
    qnpu_status s = m->inner.fq(m->inner.user, point, layer, x, y, rows, cols);
    if (s != QNPU_OK || point < QNPU__S1_A_QKV || point > QNPU__S1_A_DOWN || layer < 0 || layer >= m->L)
        return s;
    int64_t k = layer * QNPU__TRAIN_NA + (point - QNPU__S1_A_QKV);
    m->sum[k] += qnpu__mixed_rel_error_sum(x, y, (size_t)(rows * cols));
    m->count[k] += rows * cols;
    return QNPU_OK;
}

/* r[k] for every candidate k over nh blocks of T tokens (the state initialized, in training mode). */
static qnpu_status measure_r(qnpu__train *t, const int32_t *held, int64_t nh, int64_t T, const unsigned char *cand,
                             double *r)
{
    int64_t na = t->L * QNPU__TRAIN_NA;
    measure m = {t->hooks, t->L, qnpu__calloc((size_t)na, sizeof(double)), qnpu__calloc((size_t)na, sizeof(int64_t))};
    if (!m.sum || !m.count) {
        qnpu__free(m.sum);
        qnpu__free(m.count);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "mixed precision: out of memory");
    }
    qnpu__s1_hooks h = t->hooks; /* forward only, through the measuring wrapper */
    h.user = &m;
    h.fq = measure_fq;
    h.fq_backward = NULL;
    qnpu_status s = QNPU_OK;
    for (int64_t b = 0; b < nh && s == QNPU_OK; b++) {
        s = qnpu__s1_loss_grad(t->m, t->R1, (const float *const *)t->R2, held + b * T, T, &h, t->threads, NULL, NULL,
                               NULL, 0);
        if (s != QNPU_OK)
            qnpu__error_prefix("mixed precision: held-out block %lld", (long long)b);
    }
    for (int64_t k = 0; k < na && s == QNPU_OK; k++) {
        if (!cand[k])
            continue;
        /* a point no hook saw (its kind is a pass-through in every layer) has r = 0 */
        r[k] = m.count[k] ? m.sum[k] / (double)m.count[k] : 0.0;
        if (!isfinite(r[k]))
            s = qnpu__fail(QNPU_ERR_NUMERIC, "mixed precision: layer%lld.%s: sensitivity %g",
                           (long long)(k / QNPU__TRAIN_NA), qnpu__qp_layer_name(graph_point[k % QNPU__TRAIN_NA]),
                           r[k]);
    }
    qnpu__free(m.sum);
    qnpu__free(m.count);
    return s;
}

qnpu_status qnpu__mixed_run(qnpu__train *t, const qnpu_options *o, const int32_t *ids, size_t n,
                            qnpu__mixed_result **out)
{
    if (out)
        *out = NULL;
    if (!t || !ids)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__mixed_run: NULL argument");
    int mode = (int)qnpu__opt_int(o, QNPU_P_MIXED_MODE);
    double p = qnpu__opt_float(o, QNPU_P_MIXED_P);
    if (mode < QNPU__MIXED_NONE || mode > QNPU__MIXED_DOWN_R4)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "mixed.mode %d is unknown", mode);
    int64_t T = qnpu__opt_int(o, QNPU_P_CALIB_SEQ_LEN), first = qnpu__opt_int(o, QNPU_P_CALIB_FIRST_BLOCK);
    int64_t nb = qnpu__opt_int(o, QNPU_P_CALIB_NUM_SAMPLES), nh = qnpu__opt_int(o, QNPU_P_MIXED_NUM_SAMPLES);
    int64_t blocks = T > 0 ? (int64_t)(n / (size_t)T) : 0;
    if (T < 2 || nb < 1 || blocks < first + nb)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "mixed precision: the data gives %lld blocks of %lld tokens; "
                          "calib.first_block %lld + calib.num_samples %lld need more", (long long)blocks,
                          (long long)T, (long long)first, (long long)nb);
    const int32_t *calib = ids + (size_t)(first * T);

    int64_t L = t->L, na = L * QNPU__TRAIN_NA;
    qnpu__mixed_result *res = qnpu__calloc(1, sizeof *res);
    if (res) {
        res->opt_bits = qnpu__malloc((size_t)na * sizeof(int));
        res->start_bits = qnpu__malloc((size_t)na * sizeof(int));
        res->bits = qnpu__malloc((size_t)na * sizeof(int));
        res->r = qnpu__malloc((size_t)na * sizeof(double));
        res->cand = qnpu__calloc((size_t)na, 1);
        res->sel = qnpu__calloc((size_t)na, 1);
    }
    if (!res || !res->opt_bits || !res->start_bits || !res->bits || !res->r || !res->cand || !res->sel) {
        qnpu__mixed_result_free(res);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "mixed precision: out of memory");
    }
    const qnpu_model *m = t->m;
    res->mode = mode;
    res->p = p;
    res->L = L;
    res->d = m->dim;
    res->qd = m->n_heads * m->head_dim;
    res->kvd = m->n_kv_heads * m->head_dim;
    res->ff = m->ffn;
    res->w_bits = t->w_bits;
    res->threshold = NAN;
    res->idx = -1;
    qnpu_status s = qnpu__train_option_bits(o, L, res->opt_bits);
    if (s != QNPU_OK)
        goto fail;

    /* 1. start bits and candidates */
    for (int64_t k = 0; k < na; k++) {
        int a = (int)(k % QNPU__TRAIN_NA);
        int down_mode = mode == QNPU__MIXED_DOWN_8TO16 || mode == QNPU__MIXED_DOWN_R4;
        res->start_bits[k] = down_mode && a == 3 ? 8 : res->opt_bits[k];
        res->cand[k] = mode == QNPU__MIXED_ACT_4TO8 ? res->start_bits[k] > 0 : down_mode && a == 3;
        res->r[k] = NAN;
        res->n_cand += res->cand[k];
    }

    /* 2. measure, when the selection depends on r */
    double *rc = qnpu__malloc((size_t)(res->n_cand ? res->n_cand : 1) * sizeof *rc);
    unsigned char *sc = qnpu__calloc((size_t)(res->n_cand ? res->n_cand : 1), 1);
    if (!rc || !sc) {
        qnpu__free(rc);
        qnpu__free(sc);
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "mixed precision: out of memory");
        goto fail;
    }
    res->measured = res->n_cand > 0 && p > 0.0 && p < 1.0;
    if (res->measured) {
        if (blocks < first + nb + nh) {
            s = qnpu__fail(QNPU_ERR_INVALID_ARG, "mixed precision: the data gives %lld blocks of %lld tokens; the "
                           "%lld held-out blocks (mixed.num_samples) after calib.first_block %lld + "
                           "calib.num_samples %lld need more", (long long)blocks, (long long)T, (long long)nh,
                           (long long)first, (long long)nb);
        }
        if (s == QNPU_OK && (s = qnpu__train_set_act_bits(t, res->start_bits)) == QNPU_OK)
            s = qnpu__train_init(t, calib, nb, T);
        res->held_first = first + nb;
        res->held_n = nh;
        if (s == QNPU_OK)
            s = measure_r(t, ids + (size_t)((first + nb) * T), nh, T, res->cand, res->r);
    }
    /* 3. select over the candidates (unmeasured: r = 0 for all, so p = 1 takes all, p = 0 none) */
    for (int64_t k = 0, j = 0; s == QNPU_OK && k < na; k++)
        if (res->cand[k])
            rc[j++] = res->measured ? res->r[k] : 0.0;
    double th = NAN;
    if (s == QNPU_OK)
        s = qnpu__mixed_select(rc, res->n_cand, p, sc, &res->idx, &th);
    if (res->measured)
        res->threshold = th;
    /* 4. final bits */
    for (int64_t k = 0, j = 0; s == QNPU_OK && k < na; k++) {
        res->bits[k] = res->start_bits[k];
        if (!res->cand[k])
            continue;
        res->sel[k] = sc[j++];
        if (mode == QNPU__MIXED_ACT_4TO8 && res->sel[k] && res->start_bits[k] < 8)
            res->bits[k] = 8;
        else if (mode == QNPU__MIXED_DOWN_8TO16)
            res->bits[k] = res->sel[k] ? 16 : 8;
        else if (mode == QNPU__MIXED_DOWN_R4 && res->sel[k]) {
            res->bits[k] = 4; /* online R4 and 4 bits; the others stay at 8 without R4 */
            res->r4_layers++;
        }
    }
    qnpu__free(rc);
    qnpu__free(sc);
    if (s != QNPU_OK)
        goto fail;
    /* 5. (re-)initialize with the final bits (rule 18); with layers selected for online R4 the
     * state is on a model without it, so the caller rebuilds it (see mixed.h) */
    if (!res->measured || memcmp(res->bits, res->start_bits, (size_t)na * sizeof(int)) != 0) {
        if ((s = qnpu__train_set_act_bits(t, res->bits)) == QNPU_OK && !res->r4_layers)
            s = qnpu__train_init(t, calib, nb, T);
        if (s != QNPU_OK)
            goto fail;
    }
    if (out)
        *out = res;
    else
        qnpu__mixed_result_free(res);
    return QNPU_OK;
fail:
    qnpu__mixed_result_free(res);
    return s;
}

/* ---- stage-2 options -------------------------------------------------------------------------- */

qnpu_status qnpu__mixed_stage2_options(const qnpu_options *o, int64_t L, const int *bits, qnpu_options **out)
{
    if (out)
        *out = NULL;
    if (!out || !bits || L < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__mixed_stage2_options: NULL argument");
    int64_t na = L * QNPU__TRAIN_NA;
    int *ob = qnpu__malloc((size_t)na * sizeof *ob);
    if (!ob)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "mixed precision: out of memory");
    qnpu_status s = qnpu__train_option_bits(o, L, ob);
    const char *base = qnpu__opt_str(o, QNPU_P_QUANT_BITS_OVERRIDE);
    size_t cap = strlen(base) + 1, len = strlen(base);
    for (int64_t k = 0; k < na; k++)
        cap += bits[k] != ob[k] ? 48 : 0;
    char *text = s == QNPU_OK ? qnpu__malloc(cap) : NULL;
    if (s == QNPU_OK && !text)
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "mixed precision: out of memory");
    if (text)
        memcpy(text, base, len + 1);
    for (int64_t k = 0; s == QNPU_OK && k < na; k++) {
        if (bits[k] == ob[k])
            continue;
        const char *nm = qnpu__qp_layer_name(graph_point[k % QNPU__TRAIN_NA]);
        if (!(bits[k] == 0 || bits[k] == 4 || bits[k] == 8 || bits[k] == 16)) {
            s = qnpu__fail(QNPU_ERR_INVALID_ARG, "layer%lld.%s: %d bits cannot be passed to stage 2 "
                           "(quant.bits_override takes 0, 4, 8 or 16)", (long long)(k / QNPU__TRAIN_NA), nm, bits[k]);
            break;
        }
        len += (size_t)snprintf(text + len, cap - len, "%slayer%lld.%s:%d", len ? "," : "",
                                (long long)(k / QNPU__TRAIN_NA), nm, bits[k]);
    }
    qnpu__free(ob);
    qnpu_options *c = NULL;
    if (s == QNPU_OK)
        s = qnpu_options_clone(o, &c);
    if (s == QNPU_OK)
        s = qnpu_options_set_str(c, QNPU_P_QUANT_BITS_OVERRIDE, text);
    qnpu__free(text);
    if (s != QNPU_OK) {
        qnpu_options_free(c);
        return s;
    }
    *out = c;
    return QNPU_OK;
}

/* ---- the report ------------------------------------------------------------------------------- */

/* a double as JSON: %.9g, or null when not finite */
static void put_num(qnpu__sbuf *b, double v)
{
    if (isfinite(v))
        qnpu__sb_printf(b, "%.9g", v);
    else
        qnpu__sb_printf(b, "null");
}

static void point_name(char *buf, size_t cap, int64_t k)
{
    snprintf(buf, cap, "layer%lld.%s", (long long)(k / QNPU__TRAIN_NA),
             qnpu__qp_layer_name(graph_point[k % QNPU__TRAIN_NA]));
}

/* The per-token cost of the decoder linears with activation bits `bits`. */
static void put_cost(qnpu__sbuf *b, const qnpu__mixed_result *r, const int *bits)
{
    /* linears per layer: input point, in, out (q, k, v, o, gate, up, down) */
    const int in_pt[W_COUNT] = {0, 0, 0, 1, 2, 2, 3};
    const int64_t cin[W_COUNT] = {r->d, r->d, r->d, r->qd, r->d, r->d, r->ff};
    const int64_t cout[W_COUNT] = {r->qd, r->kvd, r->kvd, r->d, r->ff, r->ff, r->d};
    int64_t macs_by[17] = {0}, macs_other = 0, macs = 0;
    double act_bytes = 0.0;
    for (int64_t l = 0; l < r->L; l++)
        for (int w = 0; w < W_COUNT; w++) {
            int ab = bits[l * QNPU__TRAIN_NA + in_pt[w]];
            int64_t mm = cin[w] * cout[w];
            macs += mm;
            if (ab >= 0 && ab <= 16)
                macs_by[ab] += mm;
            else
                macs_other += mm;
            act_bytes += (double)cin[w] * (ab > 0 ? ab : 32) / 8.0; /* not quantized: a float32 input */
        }
    double wbytes = (double)macs * r->w_bits / 8.0;
    qnpu__sb_printf(b, "{\"weight_bytes\": %.0f, \"macs\": %lld, \"act_bytes\": %.1f, \"macs_by_width\": {", wbytes,
        (long long)macs, act_bytes);
    int first = 1;
    for (int ab = 0; ab <= 16; ab++)
        if (macs_by[ab]) {
            if (ab == 0)
                qnpu__sb_printf(b, "%s\"AfloatxW%d\": %lld", first ? "" : ", ", r->w_bits, (long long)macs_by[ab]);
            else
                qnpu__sb_printf(b, "%s\"A%dxW%d\": %lld", first ? "" : ", ", ab, r->w_bits, (long long)macs_by[ab]);
            first = 0;
        }
    if (macs_other)
        qnpu__sb_printf(b, "%s\"other\": %lld", first ? "" : ", ", (long long)macs_other);
    qnpu__sb_printf(b, "}}");
}

typedef struct ranked {
    double r;
    int64_t k;
} ranked;

static int ranked_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->r != y->r)
        return x->r < y->r ? 1 : -1;
    return x->k < y->k ? -1 : x->k > y->k;
}

qnpu_status qnpu__mixed_report_json(const qnpu__mixed_result *r, char **out)
{
    if (out)
        *out = NULL;
    if (!r || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__mixed_report_json: NULL argument");
    int64_t na = r->L * QNPU__TRAIN_NA, changed = 0, c4 = 0, c8 = 0, c16 = 0;
    for (int64_t k = 0; k < na; k++) {
        changed += r->bits[k] != r->opt_bits[k];
        c4 += r->bits[k] == 4;
        c8 += r->bits[k] == 8;
        c16 += r->bits[k] == 16;
    }
    qnpu__sbuf b = {0};
    char nm[64];
    qnpu__sb_printf(&b, "{\"changed\": %lld, \"mode\": \"%s\", \"p\": ", (long long)changed,
        r->mode >= 0 && r->mode <= 3 ? mode_names[r->mode] : "?");
    put_num(&b, r->p);
    qnpu__sb_printf(&b, ", \"measured\": %s, \"held_out_blocks\": ", r->measured ? "true" : "false");
    if (r->measured)
        qnpu__sb_printf(&b, "[%lld, %lld]", (long long)r->held_first, (long long)r->held_n);
    else
        qnpu__sb_printf(&b, "null");
    qnpu__sb_printf(&b, ", \"candidates\": %lld, \"threshold_index\": %lld, \"threshold\": ", (long long)r->n_cand,
        (long long)r->idx);
    put_num(&b, r->threshold);
    double tot = na > 0 ? (double)na : 1.0;
    qnpu__sb_printf(&b, ",\n \"points\": {\"total\": %lld, \"bits4\": %lld, \"bits8\": %lld, \"bits16\": %lld, \"other\": %lld, "
        "\"frac4\": %.6g, \"frac8\": %.6g, \"frac16\": %.6g}, \"r4_layers\": %lld, \"r4_adds_per_token\": %lld,"
        "\n \"selected\": [", (long long)na, (long long)c4, (long long)c8, (long long)c16,
        (long long)(na - c4 - c8 - c16), c4 / tot, c8 / tot, c16 / tot, (long long)r->r4_layers,
        (long long)r->r4_adds);
    int first = 1;
    for (int64_t k = 0; k < na; k++)
        if (r->sel[k]) {
            point_name(nm, sizeof nm, k);
            qnpu__sb_printf(&b, "%s\n  {\"point\": \"%s\", \"r\": ", first ? "" : ",", nm);
            put_num(&b, r->r[k]);
            qnpu__sb_printf(&b, ", \"from\": %d, \"to\": %d}", r->start_bits[k], r->bits[k]);
            first = 0;
        }
    qnpu__sb_printf(&b, "],\n \"sensitivity\": [");
    ranked *rk = qnpu__malloc((size_t)(na ? na : 1) * sizeof *rk);
    int64_t nr = 0;
    if (!rk)
        b.oom = 1;
    for (int64_t k = 0; rk && k < na; k++)
        if (r->cand[k] && !isnan(r->r[k]))
            rk[nr++] = (ranked){r->r[k], k};
    if (rk)
        qsort(rk, (size_t)nr, sizeof *rk, ranked_desc);
    for (int64_t i = 0; i < nr; i++) {
        point_name(nm, sizeof nm, rk[i].k);
        qnpu__sb_printf(&b, "%s\n  {\"point\": \"%s\", \"bits\": %d, \"r\": ", i ? "," : "", nm, r->start_bits[rk[i].k]);
        put_num(&b, rk[i].r);
        qnpu__sb_printf(&b, "}");
    }
    qnpu__free(rk);
    qnpu__sb_printf(&b, "],\n \"per_token\": {\"linears\": %lld, \"start\": ", (long long)(r->L * W_COUNT));
    put_cost(&b, r, r->start_bits);
    qnpu__sb_printf(&b, ",\n  \"final\": ");
    put_cost(&b, r, r->bits);
    qnpu__sb_printf(&b, "}}\n");
    if (b.oom || !b.p) {
        qnpu__free(b.p);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "mixed precision report: out of memory");
    }
    *out = b.p;
    return QNPU_OK;
}
