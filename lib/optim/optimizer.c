/* optimizer.c — qnpu_optimizer: the two-stage Quant.npu pipeline (METHOD.md §8) behind one public
 * handle.
 *
 * Steps of one run, on a token stream cut into blocks of calib.seq_len tokens:
 *   1. prepare the float model (qnpu_rotator_run with rotate.r1 = rotate.r2 = identity and the
 *      options' rotate.r4: norms fused, untied, rotate-half RoPE, R1 / R2 NOT fused, a fixed
 *      online R4 fused into its layers' down weights) unless the source is already prepared;
 *      under mixed.mode = down_r4 without R4 first, then again with R4 on the selected layers;
 *   2. stage 1 (train.h): the state is created with the caller's options (its starting R1 / R2 are
 *      those of rotate.r1 / rotate.r2), initialized on the calib.num_samples calibration blocks
 *      from calib.first_block with the bit-widths of mixed precision (lib/mixed/mixed.h,
 *      METHOD.md §8.0 step 5, §9: mixed.mode selects on the mixed.num_samples held-out blocks after
 *      the calibration blocks, then re-initializes), then optim.steps optimizer steps of
 *      optim.batch blocks each, taken from ALL the stream's blocks (the training text, METHOD.md
 *      §8.1) in file order and cycling:
 *      step i uses blocks (i·batch + j) mod n_blocks, j = 0 .. batch − 1; with optim.shuffle each
 *      pass over the blocks follows its own seeded permutation (stream 6 of seed); with
 *      optim.loss = block_mse the steps train one layer at a time on its output MSE (blockwise.h);
 *   3. export: R1 / R2 fused into a new prepared model, and the learned quantizer parameters;
 *   4. stage 2 (calibrate_learned.h) on the same calibration blocks, with the options' bits_override
 *      extended by the per-layer bits stage 1 used (qnpu__mixed_stage2_options) -> the quantized
 *      model; with optim.weight_round = gptq the fused weights are first replaced by their GPTQ
 *      weights with the learned scales on those blocks (gptq.h), which stage 2's rounding keeps
 *      code for code. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/calibrate_learned.h"
#include "../common/prng.h"
#include "../mixed/mixed.h"
#include "../rotate/hadamard.h"
#include "blockwise.h"
#include "gptq.h"
#include "train.h"

struct qnpu_optimizer {
    const qnpu_model *src;
    const qnpu_tokenizer *tok;
    qnpu_options *opts;
    qnpu_progress_fn progress;
    void *user;
    qnpu__train_info last; /* the last completed stage-1 step of the current or last run */
    int64_t steps_done;    /* stage-1 steps completed in that run (0: last is unset) */
    qnpu__mixed_result *mixed; /* mixed-precision decisions of the last successful run (the report) */
};

qnpu_status qnpu_optimizer_create(const qnpu_model *m, const qnpu_tokenizer *t, const qnpu_options *opts,
                                  qnpu_optimizer **out)
{
    if (out)
        *out = NULL;
    if (!m || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_optimizer_create: NULL argument");
    qnpu_optimizer *o = qnpu__calloc(1, sizeof *o);
    if (!o)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_optimizer_create: out of memory");
    qnpu_status s = qnpu_options_clone(opts, &o->opts);
    if (s != QNPU_OK) {
        qnpu__free(o);
        return s;
    }
    o->src = m;
    o->tok = t;
    qnpu__handle_acquire();
    *out = o;
    return QNPU_OK;
}

void qnpu_optimizer_free(qnpu_optimizer *o)
{
    if (!o)
        return;
    qnpu_options_free(o->opts);
    qnpu__mixed_result_free(o->mixed);
    qnpu__free(o);
    qnpu__handle_release();
}

void qnpu_optimizer_set_progress(qnpu_optimizer *o, qnpu_progress_fn fn, void *user)
{
    if (!o)
        return;
    o->progress = fn;
    o->user = user;
}

double qnpu_optimizer_last_loss(const qnpu_optimizer *o)
{
    return o && o->steps_done > 0 ? o->last.loss : NAN;
}

/* The prepared model stage 1 trains: the source itself when it is prepared already, else a new
 * model (*owned) from the rotator with identity R1 / R2 and online R4 as the options say
 * (rotate.r4 / rotate.r4_layers) or, with r4_layers non-NULL, on exactly those layers ("" none). */
static qnpu_status prepare(const qnpu_optimizer *o, const qnpu_options *op, const char *r4_layers,
                           const qnpu_model **prep, qnpu_model **owned)
{
    *owned = NULL;
    if (o->src->prepared) {
        if (r4_layers && *r4_layers)
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "mixed.mode = down_r4 selected layers %s for online R4, but the "
                              "source model is prepared already (pass the unprepared model)", r4_layers);
        *prep = o->src;
        return QNPU_OK;
    }
    qnpu_options *po;
    qnpu_status s = qnpu_options_clone(op, &po);
    if (s != QNPU_OK)
        return s;
    if ((s = qnpu_options_set_str(po, QNPU_P_ROTATE_R1, "identity")) == QNPU_OK &&
        (s = qnpu_options_set_str(po, QNPU_P_ROTATE_R2, "identity")) == QNPU_OK && r4_layers) {
        if (!*r4_layers)
            s = qnpu_options_set_str(po, QNPU_P_ROTATE_R4, "off");
        else if ((s = qnpu_options_set_str(po, QNPU_P_ROTATE_R4, "selected")) == QNPU_OK)
            s = qnpu_options_set_str(po, QNPU_P_ROTATE_R4_LAYERS, r4_layers);
    }
    qnpu_rotator *r = NULL;
    if (s == QNPU_OK)
        s = qnpu_rotator_create(o->src, po, &r);
    if (s == QNPU_OK)
        s = qnpu_rotator_run(r, owned);
    qnpu_rotator_free(r);
    qnpu_options_free(po);
    if (s != QNPU_OK)
        return s;
    *prep = *owned;
    return QNPU_OK;
}

/* The block order of one pass over n blocks: file order, or a Fisher–Yates permutation from g. */
static void order_pass(int64_t *order, int64_t n, qnpu__prng *g)
{
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; g && i > 0; i--) {
        int64_t j = (int64_t)qnpu__prng_below(g, (uint64_t)i + 1), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
}

/* The whole pipeline on the token stream ids (owned by the caller, already range-checked). */
/* optim.naive_joint (the ablation of §8): no distribution-aware split. Every linear input the
 * stage-1 graph simulates — the unrotated down_proj input included, at quant.a_bits — is
 * min/max-initialized (no μ ± 3σ, no warm-up refinement) and learned with R; no mixed-precision
 * selection. The points the stage-1 graph has no learnable stand-in for (linear outputs, the KV
 * cache, the attention chain) are still min/max-calibrated after training, since the deployed
 * graph needs qparams for them. *nj = the modified copy (NULL when the switch is off). */
static qnpu_status naive_joint_options(const qnpu_options *op, qnpu_options **nj)
{
    *nj = NULL;
    if (!qnpu__opt_int(op, QNPU_P_OPTIM_NAIVE_JOINT))
        return QNPU_OK;
    qnpu_status s = qnpu_options_clone(op, nj);
    if (s == QNPU_OK && (s = qnpu_options_set_str(*nj, QNPU_P_INIT_ACT_ROTATED, "minmax")) == QNPU_OK &&
        (s = qnpu_options_set_str(*nj, QNPU_P_INIT_ACT_UNROTATED, "minmax")) == QNPU_OK &&
        (s = qnpu_options_set_int(*nj, QNPU_P_INIT_WARMUP_CALLS, 0)) == QNPU_OK &&
        (s = qnpu_options_set_str(*nj, QNPU_P_MIXED_MODE, "none")) == QNPU_OK)
        s = qnpu_options_set_int(*nj, QNPU_P_QUANT_DOWN_A_BITS, qnpu__opt_int(op, QNPU_P_QUANT_A_BITS));
    if (s != QNPU_OK) {
        qnpu_options_free(*nj);
        *nj = NULL;
    }
    return s;
}

static qnpu_status run_opts(qnpu_optimizer *o, const qnpu_options *op, const int32_t *ids, size_t n,
                            qnpu_qmodel **out);

static qnpu_status run(qnpu_optimizer *o, const int32_t *ids, size_t n, qnpu_qmodel **out)
{
    qnpu_options *nj;
    qnpu_status s = naive_joint_options(o->opts, &nj);
    if (s == QNPU_OK)
        s = run_opts(o, nj ? nj : o->opts, ids, n, out);
    qnpu_options_free(nj);
    return s;
}

/* mixed.mode = down_r4 selected layers for online R4 (mixed.h): prepare the model again with R4 on
 * them, and create and initialize a new stage-1 state on it with the selection's final bits. */
static qnpu_status rebuild_with_r4(const qnpu_optimizer *o, const qnpu_options *op, qnpu__mixed_result *mix,
                                   const int32_t *blocks, int64_t nb, int64_t T, const qnpu_model **prep,
                                   qnpu_model **owned, qnpu__train **t)
{
    qnpu__sbuf list = {0};
    for (int64_t l = 0; l < mix->L; l++)
        if (mix->sel[l * QNPU__TRAIN_NA + 3])
            qnpu__sb_printf(&list, "%s%lld", list.len ? "," : "", (long long)l);
    if (list.oom || !list.p) {
        qnpu__free(list.p);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_optimizer: out of memory");
    }
    qnpu__train_free(*t);
    *t = NULL;
    qnpu_model_free(*owned);
    *owned = NULL;
    qnpu_status s = prepare(o, op, list.p, prep, owned);
    qnpu__free(list.p);
    if (s == QNPU_OK)
        s = qnpu__train_create(*prep, op, t);
    if (s == QNPU_OK)
        s = qnpu__train_set_act_bits(*t, mix->bits);
    if (s == QNPU_OK)
        s = qnpu__train_init(*t, blocks, nb, T);
    mix->r4_adds = 0; /* FORMATS.md §3.9: the FWHT's n·log2(r) and a dense ±1 factor's p·n additions */
    for (int64_t l = 0; s == QNPU_OK && l < mix->L; l++) {
        const qnpu__hadamard *h = (*prep)->r4 ? (*prep)->r4[l] : NULL;
        if (!h)
            continue;
        int64_t lg = 0;
        while ((INT64_C(1) << lg) < h->r)
            lg++;
        mix->r4_adds += h->n * lg + (h->p > 1 && h->a_pm1 ? h->p * h->n : 0);
    }
    return s;
}

static qnpu_status run_opts(qnpu_optimizer *o, const qnpu_options *op, const int32_t *ids, size_t n,
                            qnpu_qmodel **out)
{
    o->steps_done = 0;
    int64_t T = qnpu__opt_int(op, QNPU_P_CALIB_SEQ_LEN), first = qnpu__opt_int(op, QNPU_P_CALIB_FIRST_BLOCK);
    int64_t nb = qnpu__opt_int(op, QNPU_P_CALIB_NUM_SAMPLES);
    int64_t steps = qnpu__opt_int(op, QNPU_P_OPTIM_STEPS), batch = qnpu__opt_int(op, QNPU_P_OPTIM_BATCH);
    int mode = (int)qnpu__opt_int(op, QNPU_P_MIXED_MODE);
    if ((mode == QNPU__MIXED_DOWN_8TO16 || mode == QNPU__MIXED_DOWN_R4) && qnpu__opt_int(op, QNPU_P_ROTATE_R4) != 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "rotate.r4 (not off) cannot be combined with mixed.mode = %s, "
                          "which decides online R4 itself (METHOD.md §9.3); use mixed.mode = none to keep the "
                          "options' R4", mode == QNPU__MIXED_DOWN_R4 ? "down_r4" : "down_8to16");
    if (T < 2 || nb < 1 || (int64_t)(n / (size_t)T) < first + nb)
        return qnpu__fail(QNPU_ERR_INVALID_ARG,
                          "calibration data gives %zu blocks of %lld tokens; calib.first_block %lld + "
                          "calib.num_samples %lld need more", T > 0 ? n / (size_t)T : (size_t)0, (long long)T,
                          (long long)first, (long long)nb);
    const int32_t *blocks = ids + (size_t)(first * T);
    const qnpu_model *prep = NULL;
    qnpu_model *owned = NULL, *fused = NULL;
    qnpu__train *t = NULL;
    qnpu__train_qparams *qp = NULL;
    int32_t *buf = NULL;
    qnpu_status s = prepare(o, op, mode == QNPU__MIXED_DOWN_R4 ? "" : NULL, &prep, &owned);
    if (s == QNPU_OK)
        s = qnpu__train_create(prep, op, &t);
    qnpu__mixed_result *mix = NULL;
    qnpu_options *op2 = NULL; /* stage 2's options: the per-layer bits of stage 1 as bits_override */
    if (s == QNPU_OK) /* mixed precision (§9), then the initialization with the final bits (rule 18) */
        s = qnpu__mixed_run(t, op, ids, n, &mix);
    if (s == QNPU_OK && mix->r4_layers) /* down_r4: the same pipeline on a model with R4 there */
        s = rebuild_with_r4(o, op, mix, blocks, nb, T, &prep, &owned, &t);
    int64_t nall = (int64_t)(n / (size_t)T); /* every full block of the stream trains */
    int64_t *order = NULL;
    qnpu__blockwise *bw = NULL; /* optim.loss = block_mse: layer by layer (blockwise.h) */
    if (s == QNPU_OK && qnpu__opt_int(op, QNPU_P_OPTIM_LOSS) == 1 &&
        (s = qnpu__blockwise_create(t, steps, &bw)) == QNPU_OK)
        steps = qnpu__blockwise_total(bw); /* optim.steps split over the layers, at least one each */
    if (s == QNPU_OK && steps > 0 &&
        (!(buf = qnpu__malloc((size_t)(batch * T) * sizeof *buf)) ||
         !(order = qnpu__malloc((size_t)nall * sizeof *order))))
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_optimizer: out of memory");
    qnpu__prng g;
    qnpu__prng_seed_stream(&g, (uint64_t)qnpu__opt_int(op, QNPU_P_SEED), 6);
    int shuffle = (int)qnpu__opt_int(op, QNPU_P_OPTIM_SHUFFLE);
    for (int64_t i = 0; s == QNPU_OK && i < steps; i++) {
        for (int64_t j = 0; j < batch; j++) {
            int64_t k = (i * batch + j) % nall;
            if (k == 0) /* a new pass over the blocks */
                order_pass(order, nall, shuffle ? &g : NULL);
            memcpy(buf + j * T, ids + (size_t)(order[k] * T), (size_t)T * sizeof *buf);
        }
        qnpu__train_info info;
        s = bw ? qnpu__blockwise_step(bw, buf, batch, T, &info, NULL) : qnpu__train_step(t, buf, batch, T, &info);
        if (s == QNPU_OK) { /* read by qnpu_optimizer_last_loss, also from the progress callback */
            o->last = info;
            o->steps_done = i + 1;
        }
        if (s != QNPU_OK)
            qnpu__error_prefix("stage 1, step %lld", (long long)(i + 1));
        else if (o->progress && o->progress(o->user, "train", i + 1, steps))
            s = qnpu__fail(QNPU_ERR_CANCELLED, "training cancelled after %lld of %lld steps", (long long)(i + 1),
                           (long long)steps);
    }
    if (s == QNPU_OK)
        s = qnpu__train_export(t, prep, op, &fused, &qp);
    qnpu__blockwise_free(bw);
    qnpu__free(order);
    qnpu__free(buf);
    qnpu__train_free(t);
    qnpu_model_free(owned);
    if (s == QNPU_OK && qnpu__opt_int(op, QNPU_P_OPTIM_WEIGHT_ROUND) == 1) /* gptq: codes chosen here (gptq.h) */
        s = qnpu__gptq_weights(fused, qp, blocks, nb, T, op);
    if (s == QNPU_OK)
        s = qnpu__mixed_stage2_options(op, qp->L, qp->act_bits, &op2);
    if (s == QNPU_OK)
        s = qnpu__calibrate_learned(fused, o->tok, op2, ids, n, qp, out);
    qnpu_options_free(op2);
    qnpu__train_qparams_free(qp);
    qnpu_model_free(fused);
    if (s == QNPU_OK) {
        qnpu__mixed_result_free(o->mixed);
        o->mixed = mix;
    } else {
        qnpu__mixed_result_free(mix);
    }
    return s;
}

static qnpu_status check_ids(const qnpu_model *m, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "training token id %d at position %zu is outside the "
                              "vocabulary of %lld", ids[i], i, (long long)m->vocab);
    return QNPU_OK;
}

qnpu_status qnpu_optimizer_run_ids(qnpu_optimizer *o, const int32_t *ids, size_t n, qnpu_qmodel **out)
{
    if (out)
        *out = NULL;
    if (!o || !out || (!ids && n))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_optimizer_run_ids: NULL argument");
    qnpu_status s = check_ids(o->src, ids, n);
    return s == QNPU_OK ? run(o, ids, n, out) : s;
}

qnpu_status qnpu_optimizer_run(qnpu_optimizer *o, const char *text, size_t len, qnpu_qmodel **out)
{
    if (out)
        *out = NULL;
    if (!o || !out || (!text && len))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_optimizer_run: NULL argument");
    if (!o->tok)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_optimizer_run: training on text needs a tokenizer "
                          "(use qnpu_optimizer_run_ids for token ids)");
    int32_t *ids;
    size_t n;
    qnpu_status s = qnpu__calib_tokenize_stories(o->tok, text ? text : "", len, &ids, &n);
    if (s != QNPU_OK)
        return s;
    s = check_ids(o->src, ids, n);
    if (s == QNPU_OK)
        s = run(o, ids, n, out);
    qnpu__free(ids);
    return s;
}

qnpu_status qnpu_optimizer_report_json(const qnpu_optimizer *o, char *buf, size_t cap, size_t *needed)
{
    if (needed)
        *needed = 0;
    if (!o || (!buf && cap))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_optimizer_report_json: NULL argument");
    if (!o->mixed)
        return qnpu__fail(QNPU_ERR_STATE, "qnpu_optimizer_report_json: no report (no run of this optimizer has "
                          "completed)");
    char *json;
    qnpu_status s = qnpu__mixed_report_json(o->mixed, &json);
    if (s != QNPU_OK)
        return s;
    size_t len = strlen(json);
    if (needed)
        *needed = len + 1;
    if (cap < len + 1) {
        qnpu__free(json);
        return qnpu__fail(QNPU_ERR_BUFFER_TOO_SMALL, "qnpu_optimizer_report_json: the report needs %zu bytes, the "
                          "buffer has %zu", len + 1, cap);
    }
    memcpy(buf, json, len + 1);
    qnpu__free(json);
    return QNPU_OK;
}
