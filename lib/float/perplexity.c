/* perplexity.c — the project's window perplexity (docs/perplexity.md, METHOD.md §10.2), shared by
 * every engine: cut the stream into non-overlapping windows of ctx tokens (a final window of at
 * least 2 counts), score every token of a window but its first, PPL = exp(mean NLL). */
#include <math.h>

#include "../internal.h"
#include "ops.h"

qnpu_status qnpu__perplexity_windows(const int32_t *ids, size_t n, int64_t ctx, int64_t max_ctx,
                                     int64_t vocab, qnpu__window_fn forward, void *engine,
                                     qnpu_progress_fn progress, void *user, double *ppl,
                                     int64_t *scored)
{
    if (ctx < 2 || ctx > max_ctx)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "perplexity window %lld is outside [2, %lld]",
                          (long long)ctx, (long long)max_ctx);
    if (n < 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "perplexity needs at least 2 tokens, got %zu", n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "token id %d at position %zu is outside the vocabulary of %lld",
                              ids[i], i, (long long)vocab);
    float *logits = qnpu__calloc((size_t)ctx * (size_t)vocab, sizeof(float));
    if (!logits)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "perplexity: cannot allocate logits for %lld positions",
                          (long long)ctx);
    double nll = 0;
    int64_t count = 0, n_windows = (int64_t)((n + (size_t)ctx - 1) / (size_t)ctx);
    qnpu_status st = QNPU_OK;
    for (int64_t w = 0; w < n_windows && st == QNPU_OK; w++) {
        size_t start = (size_t)(w * ctx), len = n - start < (size_t)ctx ? n - start : (size_t)ctx;
        if (len < 2)
            break;
        st = forward(engine, ids + start, (int64_t)len - 1, logits);
        for (size_t t = 0; st == QNPU_OK && t + 1 < len; t++) {
            nll += qnpu__nll(logits + t * (size_t)vocab, vocab, ids[start + t + 1]);
            count++;
        }
        if (st == QNPU_OK && progress && progress(user, "eval", w + 1, n_windows))
            st = qnpu__fail(QNPU_ERR_CANCELLED, "perplexity cancelled after %lld of %lld windows",
                            (long long)(w + 1), (long long)n_windows);
    }
    qnpu__free(logits);
    if (st != QNPU_OK)
        return st;
    *ppl = exp(nll / (double)count);
    if (scored)
        *scored = count;
    return QNPU_OK;
}
