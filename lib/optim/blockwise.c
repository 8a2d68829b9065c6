/* blockwise.c — stage 1 with the block-wise reconstruction loss (METHOD.md §13); see blockwise.h. */
#include <string.h>

#include "blockwise.h"

struct qnpu__blockwise {
    qnpu__train *t;
    int64_t steps, total, done; /* optim.steps, the run's steps, steps taken */
    int64_t layer;              /* the layer of the current step (read by the micro-batches) */
    float **xin;                /* per micro-batch: its blocks' input of `layer` */
    int64_t nx;                 /* buffers in xin */
    size_t xcap;                /* floats in each */
    qnpu__s1_ws ws;             /* qnpu__blockwise_mse's work space */
};

int64_t qnpu__blockwise_layer_steps(int64_t steps, int64_t L, int64_t l)
{
    if (steps <= 0 || L < 1 || l < 0 || l >= L)
        return 0;
    if (steps < L)
        return 1;
    return steps / L + (l < steps % L);
}

int64_t qnpu__blockwise_total_steps(int64_t steps, int64_t L)
{
    return steps <= 0 || L < 1 ? 0 : steps < L ? L : steps;
}

qnpu_status qnpu__blockwise_create(qnpu__train *t, int64_t steps, qnpu__blockwise **out)
{
    if (out)
        *out = NULL;
    if (!t || !out || steps < 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__blockwise_create: NULL argument or negative steps");
    qnpu__blockwise *b = qnpu__calloc(1, sizeof *b);
    if (!b)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "block-wise stage 1: out of memory");
    b->t = t;
    b->steps = steps;
    b->total = qnpu__blockwise_total_steps(steps, t->L);
    *out = b;
    return QNPU_OK;
}

static void free_inputs(qnpu__blockwise *b)
{
    for (int64_t j = 0; j < b->nx; j++)
        qnpu__free(b->xin[j]);
    qnpu__free(b->xin);
    b->xin = NULL;
    b->nx = 0;
    b->xcap = 0;
}

void qnpu__blockwise_free(qnpu__blockwise *b)
{
    if (!b)
        return;
    free_inputs(b);
    qnpu__free(b->ws.base);
    qnpu__free(b);
}

int64_t qnpu__blockwise_total(const qnpu__blockwise *b)
{
    return b ? b->total : 0;
}

/* One input buffer of per floats for each of M micro-batches. */
static qnpu_status inputs_for(qnpu__blockwise *b, int64_t M, size_t per)
{
    if (M <= b->nx && per <= b->xcap)
        return QNPU_OK;
    free_inputs(b);
    b->xin = qnpu__calloc((size_t)M, sizeof *b->xin);
    if (!b->xin)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "block-wise stage 1: out of memory");
    b->nx = M;
    b->xcap = per;
    for (int64_t j = 0; j < M; j++)
        if (!(b->xin[j] = qnpu__malloc(per * sizeof(float)))) {
            free_inputs(b);
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "block-wise stage 1: out of memory for the layer inputs (%lld x "
                              "%zu floats)", (long long)M, per);
        }
    return QNPU_OK;
}

/* Micro-batch sl of the current step (qnpu__train_mb_fn): its input of b->layer through the
 * quantized earlier layers, then the layer's mse and gradients. */
static qnpu_status mb_run(void *ctx, qnpu__train_slot *sl, const qnpu__s1_hooks *hooks, int rot_grads)
{
    qnpu__blockwise *b = ctx;
    const qnpu__train *t = b->t;
    const float *const *R2 = (const float *const *)t->R2;
    float *x = b->xin[sl->mb];
    qnpu__s1_hooks fwd = *hooks;
    fwd.fq_backward = NULL;
    qnpu_status s = qnpu__s1_block_input(t->m, t->R1, R2, sl->tokens, sl->nseq, sl->T, b->layer, &fwd, sl->threads,
                                         x, &sl->ws);
    if (s == QNPU_OK)
        s = qnpu__s1_block_grad(t->m, t->R1, R2, b->layer, x, sl->nseq, sl->T, hooks, sl->threads, &sl->loss,
                                rot_grads ? sl->gR2[b->layer] : NULL, NULL, &sl->ws);
    return s;
}

qnpu_status qnpu__blockwise_step(qnpu__blockwise *b, const int32_t *blocks, int64_t n, int64_t T,
                                 qnpu__train_info *info, int64_t *layer)
{
    if (!b || !blocks || n < 1 || T < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "block-wise stage 1: need at least one block of at least 1 token");
    if (b->done >= b->total)
        return qnpu__fail(QNPU_ERR_STATE, "block-wise stage 1: all %lld steps of the run are taken",
                          (long long)b->total);
    qnpu__train *t = b->t;
    int64_t l = 0, first = 0, nl;
    while ((nl = qnpu__blockwise_layer_steps(b->steps, t->L, l)) <= b->done - first) {
        first += nl;
        l++;
    }
    int64_t mbs = t->micro_batch < 1 ? 1 : t->micro_batch, M = (n + mbs - 1) / mbs;
    qnpu_status s = inputs_for(b, M, (size_t)((n < mbs ? n : mbs) * T * t->d));
    if (s != QNPU_OK)
        return s;
    b->layer = l;
    if ((s = qnpu__train_step_layer(t, l, mb_run, b, blocks, n, T, b->done - first, nl, info)) != QNPU_OK) {
        qnpu__error_prefix("block-wise stage 1, layer %lld", (long long)l);
        return s;
    }
    b->done++;
    if (layer)
        *layer = l;
    return QNPU_OK;
}

qnpu_status qnpu__blockwise_mse(qnpu__blockwise *b, int64_t l, const int32_t *blocks, int64_t n, int64_t T,
                                double *mse)
{
    if (!b || !blocks || !mse || n < 1 || T < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__blockwise_mse: NULL argument or no blocks");
    qnpu__train *t = b->t;
    if (!t->initialized)
        return qnpu__fail(QNPU_ERR_STATE, "stage 1: the quantizers are not initialized (qnpu__train_init)");
    if (l < 0 || l >= t->L)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__blockwise_mse: layer %lld outside 0 .. %lld", (long long)l,
                          (long long)t->L - 1);
    int64_t mbs = t->micro_batch < 1 ? 1 : t->micro_batch, per = n < mbs ? n : mbs;
    qnpu_status s = inputs_for(b, 1, (size_t)(per * T * t->d));
    if (s != QNPU_OK)
        return s;
    const float *const *R2 = (const float *const *)t->R2;
    qnpu__s1_hooks hk = t->hooks;
    hk.fq_backward = NULL;
    double acc = 0.0;
    for (int64_t j = 0; j < n && s == QNPU_OK; j += mbs) {
        int64_t ns = n - j < mbs ? n - j : mbs;
        double e = 0.0;
        s = qnpu__s1_block_input(t->m, t->R1, R2, blocks + j * T, ns, T, l, &hk, t->threads, b->xin[0], &b->ws);
        if (s == QNPU_OK)
            s = qnpu__s1_block_grad(t->m, t->R1, R2, l, b->xin[0], ns, T, &hk, t->threads, &e, NULL, NULL, &b->ws);
        acc += e * (double)ns / (double)n;
    }
    *mse = acc;
    return s;
}
