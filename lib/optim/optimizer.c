/* optimizer.c — qnpu_optimizer: the two-stage Quant.npu pipeline (METHOD.md §8) behind one public
 * handle.
 *
 * Steps of one run, on a token stream cut into blocks of calib.seq_len tokens:
 *   1. prepare the float model (qnpu_rotator_run with rotate.r1 = rotate.r2 = identity,
 *      rotate.r4 = off: norms fused, untied, rotate-half RoPE, rotations NOT fused) unless the
 *      source is already prepared;
 *   2. stage 1 (train.h): the state is created with the caller's options (its starting R1 / R2 are
 *      those of rotate.r1 / rotate.r2), initialized on the calib.num_samples calibration blocks
 *      from calib.first_block, then optim.steps optimizer steps of optim.batch blocks each, taken
 *      from ALL the stream's blocks (the training text, METHOD.md §8.1) in file order and cycling:
 *      step i uses blocks (i·batch + j) mod n_blocks, j = 0 .. batch − 1; with optim.shuffle each
 *      pass over the blocks follows its own seeded permutation (stream 6 of seed);
 *   3. export: R1 / R2 fused into a new prepared model, and the learned quantizer parameters;
 *   4. stage 2 (calibrate_learned.h) on the same calibration blocks -> the quantized model. */
#include <stdlib.h>
#include <string.h>

#include "../calib/calibrate_learned.h"
#include "../common/prng.h"
#include "train.h"

struct qnpu_optimizer {
    const qnpu_model *src;
    const qnpu_tokenizer *tok;
    qnpu_options *opts;
    qnpu_progress_fn progress;
    void *user;
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

/* The prepared model stage 1 trains: the source itself when it is prepared already, else a new
 * model (*owned) from the rotator with identity R1 / R2 and no R4. */
static qnpu_status prepare(const qnpu_optimizer *o, const qnpu_model **prep, qnpu_model **owned)
{
    *owned = NULL;
    if (o->src->prepared) {
        *prep = o->src;
        return QNPU_OK;
    }
    qnpu_options *po;
    qnpu_status s = qnpu_options_clone(o->opts, &po);
    if (s != QNPU_OK)
        return s;
    if ((s = qnpu_options_set_str(po, QNPU_P_ROTATE_R1, "identity")) == QNPU_OK &&
        (s = qnpu_options_set_str(po, QNPU_P_ROTATE_R2, "identity")) == QNPU_OK)
        s = qnpu_options_set_str(po, QNPU_P_ROTATE_R4, "off");
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
static qnpu_status run(qnpu_optimizer *o, const int32_t *ids, size_t n, qnpu_qmodel **out)
{
    const qnpu_options *op = o->opts;
    int64_t T = qnpu__opt_int(op, QNPU_P_CALIB_SEQ_LEN), first = qnpu__opt_int(op, QNPU_P_CALIB_FIRST_BLOCK);
    int64_t nb = qnpu__opt_int(op, QNPU_P_CALIB_NUM_SAMPLES);
    int64_t steps = qnpu__opt_int(op, QNPU_P_OPTIM_STEPS), batch = qnpu__opt_int(op, QNPU_P_OPTIM_BATCH);
    if (qnpu__opt_int(op, QNPU_P_ROTATE_R4) != 0)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "qnpu_optimizer: online R4 (rotate.r4) is not trained; set "
                          "rotate.r4 = off");
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
    qnpu_status s = prepare(o, &prep, &owned);
    if (s == QNPU_OK)
        s = qnpu__train_create(prep, op, &t);
    if (s == QNPU_OK)
        s = qnpu__train_init(t, blocks, nb, T);
    int64_t nall = (int64_t)(n / (size_t)T); /* every full block of the stream trains */
    int64_t *order = NULL;
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
        s = qnpu__train_step(t, buf, batch, T, NULL);
        if (s != QNPU_OK)
            qnpu__error_prefix("stage 1, step %lld", (long long)(i + 1));
        else if (o->progress && o->progress(o->user, "train", i + 1, steps))
            s = qnpu__fail(QNPU_ERR_CANCELLED, "training cancelled after %lld of %lld steps", (long long)(i + 1),
                           (long long)steps);
    }
    if (s == QNPU_OK)
        s = qnpu__train_export(t, prep, op, &fused, &qp);
    qnpu__free(order);
    qnpu__free(buf);
    qnpu__train_free(t);
    qnpu_model_free(owned);
    if (s == QNPU_OK)
        s = qnpu__calibrate_learned(fused, o->tok, op, ids, n, qp, out);
    qnpu__train_qparams_free(qp);
    qnpu_model_free(fused);
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
