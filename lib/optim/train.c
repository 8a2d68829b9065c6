/* train.c — the stage-1 training loop (METHOD.md §7, §8.1); see train.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../calib/qgraph.h"
#include "../rotate/fuse.h"
#include "../rotate/hadamard.h"
#include "train.h"

/* choice indices of rotate.r1 / rotate.r2 ("identity|random_hadamard|random_orthogonal") */
enum { ROT_IDENTITY = 0, ROT_HADAMARD = 1, ROT_ORTHOGONAL = 2 };

/* The rotator's seed mixing (lib/rotate/rotator.c), so the starting rotations equal the ones it
 * would fuse with the same options. */
static uint64_t seed_of(uint64_t seed, uint64_t which, uint64_t layer)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + which * 0xbf58476d1ce4e5b9ull + layer * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z * 0x9e3779b97f4a7c15ull;
}

/* R (n × n, float) <- rotation `kind` of order n with seed. */
static qnpu_status build_rotation(const qnpu_options *o, int kind, int64_t n, uint64_t seed, float *R)
{
    if (kind == ROT_IDENTITY) {
        memset(R, 0, (size_t)(n * n) * sizeof *R);
        for (int64_t i = 0; i < n; i++)
            R[i * n + i] = 1.0f;
        return QNPU_OK;
    }
    double *Rd = qnpu__malloc((size_t)(n * n) * sizeof *Rd);
    if (!Rd)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory for a %lld x %lld rotation",
                          (long long)n, (long long)n);
    qnpu_status s;
    if (kind == ROT_ORTHOGONAL) {
        s = qnpu__random_orthogonal(n, seed, 0, Rd);
    } else {
        qnpu__hadamard *h = NULL;
        s = qnpu__hadamard_plan(n, qnpu__opt_int(o, QNPU_P_ROTATE_MAX_DENSE_BLOCK),
                                (int)qnpu__opt_int(o, QNPU_P_ROTATE_HADAMARD_FALLBACK), seed, 1, &h);
        if (s == QNPU_OK)
            qnpu__hadamard_dense(h, Rd);
        qnpu__hadamard_free(h);
    }
    if (s == QNPU_OK)
        for (int64_t i = 0; i < n * n; i++)
            R[i] = (float)Rd[i];
    qnpu__free(Rd);
    return s;
}

/* ---- hooks ---------------------------------------------------------------------------------- */

static int is_weight(int point)
{
    return point >= QNPU__S1_W_Q && point <= QNPU__S1_W_DOWN;
}

static qnpu_status hook_fq(void *user, int point, int64_t layer, const float *x, float *y, int64_t rows,
                           int64_t cols)
{
    qnpu__train *t = ((qnpu__train_slot *)user)->t;
    if (layer < 0 || layer >= t->L || (!is_weight(point) && (point < QNPU__S1_A_QKV || point > QNPU__S1_A_DOWN)))
        return qnpu__fail(QNPU_ERR_INTERNAL, "stage 1: unexpected quantization point %d, layer %lld", point,
                          (long long)layer);
    if (is_weight(point)) {
        int64_t k = layer * QNPU__TRAIN_NW + point;
        float *s = t->ws + t->woff[k];
        if (t->mode) {
            memcpy(y, x, (size_t)(rows * cols) * sizeof *y);
            if (t->winit[k])
                return QNPU_OK;
            /* init.weight: minmax | mean3sigma (§7.2) | mse (§13's shrink search) */
            qnpu_status st = t->init_weight == 1
                                 ? qnpu__weight_scales_ksigma(x, rows, cols, cols, t->w_bits, t->sigma_k, s)
                                 : qnpu__weight_scales(x, rows, cols, cols, t->w_bits,
                                                       t->init_weight == 2 ? QNPU__WSCALE_MSE : QNPU__WSCALE_MAX, s);
            if (st != QNPU_OK)
                return st;
            memcpy(t->ws_init + t->woff[k], s, (size_t)rows * sizeof *s);
            t->winit[k] = 1;
            return QNPU_OK;
        }
        return qnpu__lq_forward_channel(x, y, rows, cols, cols, s, NULL, t->w_bits, 1);
    }
    int64_t k = layer * QNPU__TRAIN_NA + (point - QNPU__S1_A_QKV);
    if (t->mode || !qnpu__train_act_learned(t->act_bits[k])) /* observing, or a pass-through layer (rule 16) */
        memcpy(y, x, (size_t)(rows * cols) * sizeof *y);
    if (!qnpu__train_act_learned(t->act_bits[k]))
        return QNPU_OK;
    if (t->mode)
        return qnpu__observer_update(&t->obs[k], x, (size_t)(rows * cols));
    return qnpu__lq_forward_tensor(x, y, (size_t)(rows * cols), t->as[k], t->az[k], t->act_bits[k], 0);
}

static qnpu_status hook_bw(void *user, int point, int64_t layer, int consumer, const float *x, const float *g,
                           float *dx, int64_t rows, int64_t cols)
{
    qnpu__train_slot *sl = user;
    qnpu__train *t = sl->t;
    size_t n = (size_t)(rows * cols);
    if (t->mode || layer < 0 || layer >= t->L || consumer < 0 || consumer >= qnpu__s1_consumers(point))
        return qnpu__fail(QNPU_ERR_INTERNAL, "stage 1: unexpected backward call (point %d, layer %lld, consumer %d)",
                          point, (long long)layer, consumer);
    if (n > sl->scratch_n) {
        qnpu__free(sl->scratch);
        sl->scratch = qnpu__malloc(n * sizeof *sl->scratch);
        sl->scratch_n = sl->scratch ? n : 0;
        if (!sl->scratch)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory");
    }
    /* the quantizer's gradient is of the step's loss (micro-batch loss · its share); the STE leaves
     * g as it is */
    for (size_t i = 0; i < n; i++)
        sl->scratch[i] = g[i] * sl->gscale;
    if (dx != g)
        memcpy(dx, g, n * sizeof *dx);
    if (is_weight(point)) {
        int64_t k = layer * QNPU__TRAIN_NW + point;
        qnpu__lq_cfg c = t->cfg;
        c.warmup = 0;
        c.share = 1.0f;
        return qnpu__lq_backward_channel(&c, x, sl->scratch, rows, cols, cols, t->ws + t->woff[k], NULL, t->w_bits,
                                         1, NULL, sl->gws + t->woff[k], NULL, &sl->stats);
    }
    int a = point - QNPU__S1_A_QKV;
    int64_t k = layer * QNPU__TRAIN_NA + a;
    if (!qnpu__train_act_learned(t->act_bits[k])) /* a pass-through layer: pure STE, no parameter gradient */
        return QNPU_OK;
    qnpu__lq_cfg c = t->cfg;
    /* one call per consuming linear (rule 11), each with its own warm-up counter and share (rule 12);
     * micro-batch mb of the step is the counter's (mb+1)-th call of the step, and the step takes
     * its calls off the counter afterwards */
    c.warmup = t->warm[k * QNPU__TRAIN_NC + consumer] > sl->mb;
    c.share = (float)qnpu__s1_consumers(point);
    return qnpu__lq_backward_tensor(&c, x, sl->scratch, n, t->as[k], t->az[k], t->act_bits[k], 0, NULL, &sl->gas[k],
                                    &sl->gaz[k], &sl->stats);
}

/* ---- micro-batch slots ---------------------------------------------------------------------- */

static void slot_free(qnpu__train_slot *sl)
{
    qnpu__free(sl->gR1);
    qnpu__free(sl->gR2all);
    qnpu__free(sl->gR2);
    qnpu__free(sl->gws);
    qnpu__free(sl->gas);
    qnpu__free(sl->gaz);
    qnpu__free(sl->scratch);
    qnpu__free(sl->ws.base);
}

/* At least n slots, each with its gradient buffers; the hooks' user pointers follow the array. */
static qnpu_status slots_grow(qnpu__train *t, int64_t n)
{
    if (n <= t->nslots)
        return QNPU_OK;
    qnpu__train_slot *a = qnpu__calloc((size_t)n, sizeof *a);
    if (!a)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory for %lld micro-batches", (long long)n);
    if (t->nslots)
        memcpy(a, t->slots, (size_t)t->nslots * sizeof *a);
    int64_t na = t->L * QNPU__TRAIN_NA, i = t->nslots;
    qnpu__free(t->slots);
    t->slots = a;
    t->nslots = n;
    for (int64_t j = 0; j < n; j++)
        a[j].hooks.user = &a[j];
    t->hooks.user = &a[0];
    for (; i < n; i++) {
        qnpu__train_slot *sl = &a[i];
        sl->t = t;
        sl->gscale = 1.0f;
        sl->hooks = t->hooks;
        sl->hooks.user = sl;
        sl->gR1 = qnpu__malloc((size_t)(t->d * t->d) * sizeof(float));
        sl->gR2all = qnpu__malloc((size_t)(t->L * t->dh * t->dh) * sizeof(float));
        sl->gR2 = qnpu__malloc((size_t)t->L * sizeof(float *));
        sl->gws = qnpu__malloc((size_t)t->wtotal * sizeof(float));
        sl->gas = qnpu__malloc((size_t)na * sizeof(float));
        sl->gaz = qnpu__malloc((size_t)na * sizeof(float));
        if (!sl->gR1 || !sl->gR2all || !sl->gR2 || !sl->gws || !sl->gas || !sl->gaz)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory for the micro-batch gradients");
        for (int64_t l = 0; l < t->L; l++)
            sl->gR2[l] = sl->gR2all + l * t->dh * t->dh;
    }
    return QNPU_OK;
}

/* ---- activation bit-widths (per layer) ------------------------------------------------------- */

/* The hooks' enabled kinds: the weights when below 16 bits, and each activation kind that some
 * layer learns (its other layers pass through in the hooks). */
static unsigned enabled_kinds(const qnpu__train *t)
{
    unsigned en = 0;
    if (t->w_bits < 16)
        for (int p = QNPU__S1_W_Q; p <= QNPU__S1_W_DOWN; p++)
            en |= 1u << p;
    for (int64_t k = 0; k < t->L * QNPU__TRAIN_NA; k++)
        if (qnpu__train_act_learned(t->act_bits[k]))
            en |= 1u << (QNPU__S1_A_QKV + (int)(k % QNPU__TRAIN_NA));
    return en;
}

qnpu_status qnpu__train_option_bits(const qnpu_options *o, int64_t L, int *bits)
{
    if (!bits || L < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__train_option_bits: NULL argument");
    static const int point[QNPU__TRAIN_NA] = {QP_QKV_IN, QP_O_IN, QP_GATEUP_IN, QP_DOWN_IN};
    qnpu__qp *qp = qnpu__malloc((size_t)(L * QP_LAYER_COUNT) * sizeof *qp), g[QP_GLOBAL_COUNT];
    int8_t *wb = qnpu__malloc((size_t)(L * W_COUNT));
    int head_bits, w = (int)qnpu__opt_int(o, QNPU_P_QUANT_W_BITS);
    qnpu_status s = qp && wb ? qnpu__qp_assign_bits(o, L, qp, g, wb, &head_bits)
                             : qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory");
    for (int64_t l = 0; s == QNPU_OK && l < L; l++) {
        for (int a = 0; a < QNPU__TRAIN_NA; a++)
            bits[l * QNPU__TRAIN_NA + a] = qp[l * QP_LAYER_COUNT + point[a]].bits;
        for (int k = 0; k < W_COUNT && s == QNPU_OK; k++)
            if (wb[l * W_COUNT + k] != w)
                s = qnpu__fail(QNPU_ERR_UNSUPPORTED, "layer%lld.%s: quant.bits_override gives %d weight bits; stage 1 "
                               "learns every decoder weight at quant.w_bits = %d", (long long)l,
                               qnpu__weight_name(k), wb[l * W_COUNT + k], w);
    }
    qnpu__free(qp);
    qnpu__free(wb);
    return s;
}

qnpu_status qnpu__train_set_act_bits(qnpu__train *t, const int *bits)
{
    if (!t || !bits)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__train_set_act_bits: NULL argument");
    int64_t na = t->L * QNPU__TRAIN_NA;
    for (int64_t k = 0; k < na; k++)
        if (bits[k] != 0 && (bits[k] < 2 || bits[k] > 16))
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: %d activation bits for point %lld of layer %lld (0 or "
                              "2..16)", bits[k], (long long)(k % QNPU__TRAIN_NA), (long long)(k / QNPU__TRAIN_NA));
    for (int64_t k = 0; k < na; k++) {
        int nb = qnpu__train_act_learned(bits[k]) ? bits[k] : 16;
        if (t->obs[k].bits != nb) { /* the observer quantizes at the point's bits */
            qnpu__observer o = t->obs[k];
            qnpu__observer_free(&t->obs[k]);
            qnpu_status s = qnpu__observer_init(&t->obs[k], o.kind, nb, 0, &o.cfg);
            if (s != QNPU_OK)
                return s;
        }
        t->act_bits[k] = bits[k];
    }
    t->hooks.enabled = enabled_kinds(t);
    for (int64_t i = 0; i < t->nslots; i++) /* the micro-batch slots carry copies of the hooks */
        t->slots[i].hooks.enabled = t->hooks.enabled;
    t->initialized = 0;
    return QNPU_OK;
}

/* ---- create / free -------------------------------------------------------------------------- */

void qnpu__train_free(qnpu__train *t)
{
    if (!t)
        return;
    for (int64_t i = 0; i < t->nslots; i++)
        slot_free(&t->slots[i]);
    qnpu__free(t->slots);
    qnpu__pool_free(t->pool);
    qnpu__free(t->R1);
    qnpu__free(t->R2all);
    qnpu__free(t->gR1);
    qnpu__free(t->gR2all);
    qnpu__free(t->R2);
    qnpu__free(t->gR2);
    qnpu__free(t->woff);
    qnpu__free(t->ws);
    qnpu__free(t->gws);
    qnpu__free(t->ws_init);
    qnpu__free(t->winit);
    qnpu__free(t->as);
    qnpu__free(t->az);
    qnpu__free(t->gas);
    qnpu__free(t->gaz);
    qnpu__free(t->as_init);
    qnpu__free(t->act_bits);
    qnpu__free(t->warm);
    qnpu__free(t->cwork);
    if (t->obs) {
        for (int64_t i = 0; i < t->L * QNPU__TRAIN_NA; i++)
            qnpu__observer_free(&t->obs[i]);
        qnpu__free(t->obs);
    }
    qnpu__free(t);
}

qnpu_status qnpu__train_create(const qnpu_model *m, const qnpu_options *o, qnpu__train **out)
{
    if (!out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__train_create: NULL argument");
    *out = NULL;
    if (!m)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__train_create: NULL model");
    if (!m->prepared)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: the model is not prepared (run the rotator with "
                                                "rotate.r1 = rotate.r2 = identity first)");
    qnpu__train *t = qnpu__calloc(1, sizeof *t);
    if (!t)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory");
    t->m = m;
    int64_t d = m->dim, dh = m->head_dim, L = m->n_layers, ff = m->ffn;
    int64_t qd = m->n_heads * dh, kvd = m->n_kv_heads * dh;
    t->d = d;
    t->dh = dh;
    t->L = L;
    const int64_t rows[QNPU__TRAIN_NW] = {qd, kvd, kvd, d, ff, ff, d};
    const int64_t cols[QNPU__TRAIN_NW] = {d, d, d, qd, d, d, ff};
    memcpy(t->wrows, rows, sizeof rows);
    memcpy(t->wcols, cols, sizeof cols);
    int64_t per = 0;
    for (int w = 0; w < QNPU__TRAIN_NW; w++)
        per += rows[w];
    t->wtotal = per * L;
    int64_t na = L * QNPU__TRAIN_NA, nmax = d > dh ? d : dh;

    t->R1 = qnpu__malloc((size_t)(d * d) * sizeof(float));
    t->gR1 = qnpu__calloc((size_t)(d * d), sizeof(float));
    t->R2all = qnpu__malloc((size_t)(L * dh * dh) * sizeof(float));
    t->gR2all = qnpu__calloc((size_t)(L * dh * dh), sizeof(float));
    t->R2 = qnpu__calloc((size_t)L, sizeof(float *));
    t->gR2 = qnpu__calloc((size_t)L, sizeof(float *));
    t->woff = qnpu__calloc((size_t)(L * QNPU__TRAIN_NW), sizeof(int64_t));
    t->ws = qnpu__calloc((size_t)t->wtotal, sizeof(float));
    t->gws = qnpu__calloc((size_t)t->wtotal, sizeof(float));
    t->ws_init = qnpu__calloc((size_t)t->wtotal, sizeof(float));
    t->winit = qnpu__calloc((size_t)(L * QNPU__TRAIN_NW), 1);
    t->as = qnpu__calloc((size_t)na, sizeof(float));
    t->az = qnpu__calloc((size_t)na, sizeof(float));
    t->gas = qnpu__calloc((size_t)na, sizeof(float));
    t->gaz = qnpu__calloc((size_t)na, sizeof(float));
    t->as_init = qnpu__calloc((size_t)na, sizeof(float));
    t->act_bits = qnpu__calloc((size_t)na, sizeof(int));
    t->warm = qnpu__calloc((size_t)(na * QNPU__TRAIN_NC), sizeof(int64_t));
    t->cwork = qnpu__malloc(qnpu__cayley_work_floats(nmax) * sizeof(float));
    if (!t->R1 || !t->gR1 || !t->R2all || !t->gR2all || !t->R2 || !t->gR2 || !t->woff || !t->ws || !t->gws ||
        !t->ws_init || !t->winit || !t->as || !t->az || !t->gas || !t->gaz || !t->as_init || !t->act_bits ||
        !t->warm || !t->cwork) {
        qnpu__train_free(t);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory for the training state");
    }
    int64_t off = 0;
    for (int64_t l = 0; l < L; l++) {
        t->R2[l] = t->R2all + l * dh * dh;
        t->gR2[l] = t->gR2all + l * dh * dh;
        for (int w = 0; w < QNPU__TRAIN_NW; w++) {
            t->woff[l * QNPU__TRAIN_NW + w] = off;
            off += rows[w];
        }
    }

    /* rotations (§8.0 step 2) */
    uint64_t seed = (uint64_t)qnpu__opt_int(o, QNPU_P_ROTATE_SEED);
    qnpu_status s = build_rotation(o, (int)qnpu__opt_int(o, QNPU_P_ROTATE_R1), d, seed_of(seed, 1, 0), t->R1);
    if (s != QNPU_OK) {
        qnpu__error_prefix("stage 1: R1");
        qnpu__train_free(t);
        return s;
    }
    for (int64_t l = 0; l < L; l++) {
        s = build_rotation(o, (int)qnpu__opt_int(o, QNPU_P_ROTATE_R2), dh, seed_of(seed, 2, (uint64_t)l), t->R2[l]);
        if (s != QNPU_OK) {
            qnpu__error_prefix("stage 1: R2 of layer %lld", (long long)l);
            qnpu__train_free(t);
            return s;
        }
    }

    /* quantizers (§2.5; rule 16: 16 bits or more = pass-through) */
    t->w_bits = (int)qnpu__opt_int(o, QNPU_P_QUANT_W_BITS);
    if ((s = qnpu__train_option_bits(o, L, t->act_bits)) != QNPU_OK) { /* per layer, with bits_override */
        qnpu__train_free(t);
        return s;
    }
    t->hooks.fq = hook_fq;
    t->hooks.fq_backward = hook_bw;
    t->hooks.enabled = enabled_kinds(t);
    t->sigma_k = qnpu__opt_float(o, QNPU_P_INIT_SIGMA_K);
    t->warmup_calls = qnpu__opt_int(o, QNPU_P_INIT_WARMUP_CALLS);
    t->init_weight = (int)qnpu__opt_int(o, QNPU_P_INIT_WEIGHT);
    t->init_rot = (int)qnpu__opt_int(o, QNPU_P_INIT_ACT_ROTATED);
    t->init_unrot = (int)qnpu__opt_int(o, QNPU_P_INIT_ACT_UNROTATED);

    /* optimizer (§8.1) */
    qnpu__lq_cfg_from_options(o, &t->cfg);
    qnpu__cayley_cfg_from_options(o, &t->ccfg);
    qnpu__prng_seed_stream(&t->prng, seed, 5);
    t->threads = qnpu__opt_threads(o);
    t->schedule = (int)qnpu__opt_int(o, QNPU_P_OPTIM_SCHEDULE);
    t->train_rot = (int)qnpu__opt_int(o, QNPU_P_OPTIM_TRAIN_ROTATION);
    t->train_q = (int)qnpu__opt_int(o, QNPU_P_OPTIM_TRAIN_QPARAMS);
    t->steps = qnpu__opt_int(o, QNPU_P_OPTIM_STEPS);
    t->lr = qnpu__opt_float(o, QNPU_P_OPTIM_LR);
    t->qlr_ratio = qnpu__opt_float(o, QNPU_P_OPTIM_QPARAM_LR_RATIO);
    t->clip = qnpu__opt_float(o, QNPU_P_OPTIM_CLIP_NORM);
    t->micro_batch = qnpu__opt_int(o, QNPU_P_OPTIM_MICRO_BATCH);

    t->obs = qnpu__calloc((size_t)na, sizeof *t->obs);
    if (!t->obs || slots_grow(t, 1) != QNPU_OK) {
        qnpu__train_free(t);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory");
    }
    qnpu__observer_cfg oc;
    qnpu__observer_cfg_default(&oc);
    oc.sigma_k = t->sigma_k;
    oc.ema = qnpu__opt_float(o, QNPU_P_INIT_EMA);
    for (int64_t l = 0; l < L; l++)
        for (int a = 0; a < QNPU__TRAIN_NA; a++) {
            /* the down input is rotated only in a layer with online R4 (§7.3) */
            int kind = a == 3 && !(m->r4 && m->r4[l]) ? t->init_unrot : t->init_rot;
            int ab = t->act_bits[l * QNPU__TRAIN_NA + a], bits = qnpu__train_act_learned(ab) ? ab : 16;
            if ((s = qnpu__observer_init(&t->obs[l * QNPU__TRAIN_NA + a], kind, bits, 0, &oc)) != QNPU_OK) {
                qnpu__train_free(t);
                return s;
            }
        }
    *out = t;
    return QNPU_OK;
}

/* ---- initialization (§7) -------------------------------------------------------------------- */

static qnpu_status check_blocks(const qnpu__train *t, const int32_t *blocks, int64_t n, int64_t T)
{
    if (!t || !blocks || n < 1 || T < 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: need at least one block of at least 2 tokens");
    return QNPU_OK;
}

qnpu_status qnpu__train_init(qnpu__train *t, const int32_t *blocks, int64_t n, int64_t T)
{
    qnpu_status s = check_blocks(t, blocks, n, T);
    if (s != QNPU_OK)
        return s;
    int64_t na = t->L * QNPU__TRAIN_NA;
    for (int64_t i = 0; i < na; i++)
        qnpu__observer_reset(&t->obs[i]);
    memset(t->winit, 0, (size_t)(t->L * QNPU__TRAIN_NW));
    /* forward only: no backward hook, no R gradients */
    qnpu__s1_hooks fwd = t->hooks;
    fwd.fq_backward = NULL;
    t->mode = 1;
    t->initialized = 0;
    int64_t b = 0;
    for (; b < n && s == QNPU_OK; b++)
        s = qnpu__s1_loss_grad(t->m, t->R1, (const float *const *)t->R2, blocks + b * T, T, &fwd, t->threads,
                               NULL, NULL, NULL, 0);
    t->mode = 0;
    if (s != QNPU_OK) {
        qnpu__error_prefix("stage 1 initialization, block %lld", (long long)b - 1);
        return s;
    }
    for (int64_t k = 0; k < na; k++) {
        if (!qnpu__train_act_learned(t->act_bits[k])) {
            t->as[k] = 1.0f;
            t->az[k] = 0.0f;
        } else if ((s = qnpu__observer_init_qparams(&t->obs[k], &t->as[k], &t->az[k])) != QNPU_OK) {
            return s;
        }
        t->as_init[k] = t->as[k];
        for (int c = 0; c < QNPU__TRAIN_NC; c++)
            t->warm[k * QNPU__TRAIN_NC + c] = t->warmup_calls;
    }
    if (t->w_bits >= 16)
        for (int64_t i = 0; i < t->wtotal; i++)
            t->ws[i] = t->ws_init[i] = 1.0f;
    t->t = 0;
    t->projections = 0;
    memset(&t->stats, 0, sizeof t->stats);
    t->initialized = 1;
    return QNPU_OK;
}

/* ---- one step (rule 13) --------------------------------------------------------------------- */

static void zero_grads(qnpu__train *t)
{
    int64_t na = t->L * QNPU__TRAIN_NA;
    memset(t->gR1, 0, (size_t)(t->d * t->d) * sizeof(float));
    memset(t->gR2all, 0, (size_t)(t->L * t->dh * t->dh) * sizeof(float));
    memset(t->gws, 0, (size_t)t->wtotal * sizeof(float));
    memset(t->gas, 0, (size_t)na * sizeof(float));
    memset(t->gaz, 0, (size_t)na * sizeof(float));
}

typedef struct run_ctx {
    qnpu__train *t;
    int64_t M;
    int grads; /* 0: forward only (the loss) */
    qnpu__train_mb_fn fn; /* NULL: end-to-end cross-entropy; else the caller's micro-batch (block loss) */
    void *ctx;
} run_ctx;

/* Worker ith of nth runs micro-batches ith, ith + nth, … (each into its own slot). */
static void run_slots(void *arg, int ith, int nth)
{
    run_ctx *rc = arg;
    qnpu__train *t = rc->t;
    for (int64_t j = ith; j < rc->M; j += nth) {
        qnpu__train_slot *sl = &t->slots[j];
        sl->loss = 0.0;
        int gr = rc->grads && t->train_rot;
        qnpu__s1_hooks hk = sl->hooks;
        if (!rc->grads)
            hk.fq_backward = NULL;
        if (rc->fn)
            sl->st = rc->fn(rc->ctx, sl, &hk, gr);
        else
            sl->st = qnpu__s1_loss_grad_batch(t->m, t->R1, (const float *const *)t->R2, sl->tokens, sl->nseq,
                                              sl->T, &hk, sl->threads, &sl->loss, gr ? sl->gR1 : NULL,
                                              gr ? sl->gR2 : NULL, 0, &sl->ws);
        if (sl->st != QNPU_OK)
            snprintf(sl->err, sizeof sl->err, "%s", qnpu_last_error());
    }
}

/* n blocks of T tokens as micro-batches of optim.micro_batch sequences, one slot each (the
 * slots' gradients when `grads`), through fn (NULL: the end-to-end cross-entropy); *M = the
 * number of micro-batches, *loss = the mean loss over all scored rows. */
static qnpu_status run_micro_batches(qnpu__train *t, const int32_t *blocks, int64_t n, int64_t T, int grads,
                                     qnpu__train_mb_fn fn, void *ctx, int64_t *M_out, double *loss)
{
    int64_t na = t->L * QNPU__TRAIN_NA;
    int64_t mbs = t->micro_batch < 1 ? 1 : t->micro_batch, M = (n + mbs - 1) / mbs;
    qnpu_status s = slots_grow(t, M);
    if (s != QNPU_OK)
        return s;
    /* micro-batches run side by side (one BLIS thread each) when there are several, else the one
     * micro-batch gets every thread */
    int par = t->threads > 1 && M > 1;
    if (par && !t->pool && (s = qnpu__pool_create(t->threads < M ? t->threads : (int)M, &t->pool)) != QNPU_OK)
        return s;
    for (int64_t j = 0; j < M; j++) {
        qnpu__train_slot *sl = &t->slots[j];
        sl->hooks = t->hooks;
        sl->hooks.user = sl;
        sl->mb = j;
        sl->tokens = blocks + j * mbs * T;
        sl->nseq = n - j * mbs < mbs ? n - j * mbs : mbs;
        sl->T = T;
        sl->gscale = (float)((double)sl->nseq / (double)n);
        sl->threads = par ? 1 : t->threads;
        memset(sl->gws, 0, (size_t)t->wtotal * sizeof(float));
        memset(sl->gas, 0, (size_t)na * sizeof(float));
        memset(sl->gaz, 0, (size_t)na * sizeof(float));
        memset(&sl->stats, 0, sizeof sl->stats);
    }
    run_ctx rc = {t, M, grads, fn, ctx};
    if (par)
        qnpu__pool_run(t->pool, run_slots, &rc);
    else
        run_slots(&rc, 0, 1);
    *M_out = M;
    *loss = 0.0;
    for (int64_t j = 0; j < M; j++) {
        const qnpu__train_slot *sl = &t->slots[j];
        if (sl->st != QNPU_OK) {
            s = qnpu__fail(sl->st, "%s", sl->err);
            qnpu__error_prefix("micro-batch %lld", (long long)j);
            return s;
        }
        *loss += sl->loss * (double)sl->gscale;
    }
    return QNPU_OK;
}

/* One step (rule 13) of the parameters of layers l0 .. l1 − 1 (their R2, weight scales and
 * activation s / z) and, with r1, of R1; the layer-major layouts make each of them one slice.
 * fn NULL: the end-to-end cross-entropy; lr_t = qnpu__lr_at(schedule, lr, step, steps). */
static qnpu_status step_layers(qnpu__train *t, int64_t l0, int64_t l1, int r1, qnpu__train_mb_fn fn, void *ctx,
                               const int32_t *blocks, int64_t n, int64_t T, int64_t step, int64_t steps,
                               qnpu__train_info *info)
{
    qnpu_status s = check_blocks(t, blocks, n, T);
    if (s != QNPU_OK)
        return s;
    if (!t->initialized)
        return qnpu__fail(QNPU_ERR_STATE, "stage 1: the quantizers are not initialized (qnpu__train_init)");
    int64_t nr1 = t->d * t->d, r2o = l0 * t->dh * t->dh, nr2 = (l1 - l0) * t->dh * t->dh, M;
    int64_t wo = t->woff[l0 * QNPU__TRAIN_NW], nw = (l1 == t->L ? t->wtotal : t->woff[l1 * QNPU__TRAIN_NW]) - wo;
    int64_t ao = l0 * QNPU__TRAIN_NA, na = (l1 - l0) * QNPU__TRAIN_NA;
    float *gR2 = t->gR2all + r2o, *ws = t->ws + wo, *gws = t->gws + wo, *ws_init = t->ws_init + wo;
    float *as = t->as + ao, *az = t->az + ao, *gas = t->gas + ao, *gaz = t->gaz + ao, *as_init = t->as_init + ao;
    double loss;
    if ((s = run_micro_batches(t, blocks, n, T, 1, fn, ctx, &M, &loss)) != QNPU_OK) {
        qnpu__error_prefix("stage 1 step %lld", (long long)t->t);
        return s;
    }
    /* the step's gradient: the micro-batches' in order (independent of the thread count) */
    zero_grads(t);
    for (int64_t j = 0; j < M; j++) {
        const qnpu__train_slot *sl = &t->slots[j];
        if (t->train_rot) {
            for (int64_t i = 0; r1 && i < nr1; i++)
                t->gR1[i] += sl->gscale * sl->gR1[i];
            for (int64_t i = 0; i < nr2; i++)
                gR2[i] += sl->gscale * sl->gR2all[r2o + i];
        }
        for (int64_t i = 0; i < nw; i++)
            gws[i] += sl->gws[wo + i];
        for (int64_t i = 0; i < na; i++) {
            gas[i] += sl->gas[ao + i];
            gaz[i] += sl->gaz[ao + i];
        }
        t->stats.inside += sl->stats.inside;
        t->stats.below += sl->stats.below;
        t->stats.above += sl->stats.above;
        t->stats.clamped += sl->stats.clamped;
    }
    /* each micro-batch was one warm-up call of the trained layers' quantizers */
    for (int64_t i = ao * QNPU__TRAIN_NC; i < (ao + na) * QNPU__TRAIN_NC; i++)
        t->warm[i] = t->warm[i] > M ? t->warm[i] - M : 0;

    /* the global clip over every trained parameter (R and qparams together) */
    qnpu__grad_ref refs[5];
    size_t nref = 0;
    if (t->train_rot) {
        if (r1)
            refs[nref++] = (qnpu__grad_ref){t->gR1, (size_t)nr1};
        refs[nref++] = (qnpu__grad_ref){gR2, (size_t)nr2};
    }
    if (t->train_q) {
        refs[nref++] = (qnpu__grad_ref){gws, (size_t)nw};
        refs[nref++] = (qnpu__grad_ref){gas, (size_t)na};
        refs[nref++] = (qnpu__grad_ref){gaz, (size_t)na};
    }
    double gnorm = 0.0;
    int clipped = 0;
    if ((s = qnpu__clip_grad_norm(refs, nref, t->clip, &gnorm, &clipped)) != QNPU_OK) {
        qnpu__error_prefix("stage 1 step %lld", (long long)t->t);
        return s;
    }
    double lr_t = qnpu__lr_at(t->schedule, t->lr, step, steps);
    if (t->train_q) {
        float qlr = (float)(t->qlr_ratio * lr_t);
        qnpu__sgd_step(ws, gws, (size_t)nw, qlr);
        qnpu__sgd_step(as, gas, (size_t)na, qlr);
        qnpu__sgd_step(az, gaz, (size_t)na, qlr);
        /* §2.2 guard: s >= 1e-3·s_init */
        for (int64_t i = 0; i < nw; i++)
            if (!(ws[i] >= 1e-3f * ws_init[i])) {
                ws[i] = 1e-3f * ws_init[i];
                t->projections++;
            }
        for (int64_t i = 0; i < na; i++)
            if (!(as[i] >= 1e-3f * as_init[i])) {
                as[i] = 1e-3f * as_init[i];
                t->projections++;
            }
    }
    if (t->train_rot) {
        if (r1 && (s = qnpu__cayley_step(&t->ccfg, t->R1, t->gR1, t->d, (float)lr_t, &t->prng, t->cwork, NULL,
                                         NULL)) != QNPU_OK) {
            qnpu__error_prefix("stage 1 step %lld, R1", (long long)t->t);
            return s;
        }
        for (int64_t l = l0; l < l1; l++)
            if ((s = qnpu__cayley_step(&t->ccfg, t->R2[l], t->gR2[l], t->dh, (float)lr_t, &t->prng, t->cwork, NULL,
                                       NULL)) != QNPU_OK) {
                qnpu__error_prefix("stage 1 step %lld, R2 of layer %lld", (long long)t->t, (long long)l);
                return s;
            }
    }
    t->t++;
    if (info) {
        info->loss = loss;
        info->gnorm = gnorm;
        info->lr = lr_t;
        info->clipped = clipped;
    }
    return QNPU_OK;
}

qnpu_status qnpu__train_step(qnpu__train *t, const int32_t *blocks, int64_t n, int64_t T,
                             qnpu__train_info *info)
{
    return step_layers(t, 0, t ? t->L : 0, 1, NULL, NULL, blocks, n, T, t ? t->t : 0, t ? t->steps : 0, info);
}

qnpu_status qnpu__train_step_layer(qnpu__train *t, int64_t layer, qnpu__train_mb_fn fn, void *ctx,
                                   const int32_t *blocks, int64_t n, int64_t T, int64_t step, int64_t steps,
                                   qnpu__train_info *info)
{
    if (t && (!fn || layer < 0 || layer >= t->L))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: layer %lld outside 0 .. %lld, or no micro-batch function",
                          (long long)layer, (long long)t->L - 1);
    return step_layers(t, t ? layer : 0, t ? layer + 1 : 0, 0, fn, ctx, blocks, n, T, step, steps, info);
}

qnpu_status qnpu__train_loss(qnpu__train *t, const int32_t *blocks, int64_t n, int64_t T, double *loss)
{
    qnpu_status s = check_blocks(t, blocks, n, T);
    if (s != QNPU_OK)
        return s;
    if (!loss)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__train_loss: NULL loss");
    if (!t->initialized)
        return qnpu__fail(QNPU_ERR_STATE, "stage 1: the quantizers are not initialized (qnpu__train_init)");
    int64_t M;
    return run_micro_batches(t, blocks, n, T, 0, NULL, NULL, &M, loss); /* the step's forward, without gradients */
}

/* ---- hand-off to stage 2 -------------------------------------------------------------------- */

void qnpu__train_qparams_free(qnpu__train_qparams *q)
{
    if (!q)
        return;
    qnpu__free(q->woff);
    qnpu__free(q->ws);
    qnpu__free(q->as);
    qnpu__free(q->az);
    qnpu__free(q->act_bits);
    qnpu__free(q->act_learned);
    qnpu__free(q);
}

static qnpu_status copy_qparams(const qnpu__train *t, qnpu__train_qparams **out)
{
    int64_t na = t->L * QNPU__TRAIN_NA, nw = t->L * QNPU__TRAIN_NW;
    qnpu__train_qparams *q = qnpu__calloc(1, sizeof *q);
    if (q) {
        q->woff = qnpu__malloc((size_t)nw * sizeof *q->woff);
        q->ws = qnpu__malloc((size_t)t->wtotal * sizeof *q->ws);
        q->as = qnpu__malloc((size_t)na * sizeof *q->as);
        q->az = qnpu__malloc((size_t)na * sizeof *q->az);
        q->act_bits = qnpu__malloc((size_t)na * sizeof *q->act_bits);
        q->act_learned = qnpu__malloc((size_t)na);
    }
    if (!q || !q->woff || !q->ws || !q->as || !q->az || !q->act_bits || !q->act_learned) {
        qnpu__train_qparams_free(q);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1 export: out of memory");
    }
    q->L = t->L;
    q->wtotal = t->wtotal;
    memcpy(q->wrows, t->wrows, sizeof q->wrows);
    memcpy(q->woff, t->woff, (size_t)nw * sizeof *q->woff);
    memcpy(q->ws, t->ws, (size_t)t->wtotal * sizeof *q->ws);
    q->w_bits = t->w_bits;
    memcpy(q->as, t->as, (size_t)na * sizeof *q->as);
    memcpy(q->az, t->az, (size_t)na * sizeof *q->az);
    for (int64_t k = 0; k < na; k++) {
        q->act_bits[k] = t->act_bits[k];
        q->act_learned[k] = (unsigned char)qnpu__train_act_learned(t->act_bits[k]);
    }
    *out = q;
    return QNPU_OK;
}

qnpu_status qnpu__train_export(const qnpu__train *t, const qnpu_model *m_prepared, const qnpu_options *opts,
                               qnpu_model **out_model, qnpu__train_qparams **out_qp)
{
    if (out_model)
        *out_model = NULL;
    if (out_qp)
        *out_qp = NULL;
    if (!t || (!out_model && !out_qp))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__train_export: NULL argument");
    if (!t->initialized)
        return qnpu__fail(QNPU_ERR_STATE, "stage 1 export: the quantizers are not initialized (qnpu__train_init)");
    const qnpu_model *m = m_prepared ? m_prepared : t->m;
    if (m->dim != t->m->dim || m->ffn != t->m->ffn || m->n_layers != t->m->n_layers ||
        m->n_heads != t->m->n_heads || m->n_kv_heads != t->m->n_kv_heads || m->head_dim != t->m->head_dim ||
        m->vocab != t->m->vocab || m->qkv_bias != t->m->qkv_bias)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1 export: the model does not match the training state's");
    qnpu__train_qparams *q = NULL;
    qnpu_status s;
    if (out_qp && (s = copy_qparams(t, &q)) != QNPU_OK)
        return s;
    if (out_model) {
        int threads = opts ? qnpu__opt_threads(opts) : t->threads;
        if ((s = qnpu__rotator_fuse(m, t->R1, (const float *const *)t->R2, threads, out_model)) != QNPU_OK) {
            qnpu__error_prefix("stage 1 export");
            qnpu__train_qparams_free(q);
            return s;
        }
    }
    if (out_qp)
        *out_qp = q;
    return QNPU_OK;
}
