/* 03_session.c — run a quantized model (.qnpu) on the integer-only engine and stream the text it
 * generates, token by token, as a chat UI would.
 *
 *   cc 03_session.c $(pkg-config --cflags --libs libquantnpu) -o 03_session
 *   ./03_session model.qnpu ["Once upon a time" [TOKENS [TEMPERATURE]]]
 *
 * Make model.qnpu with 02_quantize or `quantnpu quantize`. TEMPERATURE 0 (the default) is greedy
 * decoding; above 0 it samples with a fixed seed, so every run prints the same story. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <quantnpu.h>

static int failed(qnpu_status st, const char *what)
{
    if (st != QNPU_OK)
        fprintf(stderr, "%s: %s: %s\n", what, qnpu_status_string(st), qnpu_last_error());
    return st != QNPU_OK;
}

/* Pick the next token from the logits: the arg-max, or a sample of softmax(logits / temp). */
static int32_t pick(const float *logits, int64_t vocab, double temp, uint64_t *rng)
{
    int32_t best = 0;
    for (int32_t j = 1; j < vocab; j++)
        if (logits[j] > logits[best])
            best = j;
    if (temp <= 0)
        return best;
    double sum = 0;
    for (int32_t j = 0; j < vocab; j++)
        sum += exp((logits[j] - logits[best]) / temp);
    *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17; /* xorshift64 */
    double r = (double)(*rng >> 11) / 9007199254740992.0 * sum;
    for (int32_t j = 0; j < vocab; j++)
        if ((r -= exp((logits[j] - logits[best]) / temp)) <= 0)
            return j;
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.qnpu [PROMPT [TOKENS [TEMPERATURE]]]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
    int steps = argc > 3 ? atoi(argv[3]) : 128;
    double temp = argc > 4 ? atof(argv[4]) : 0.0;

    qnpu_session *s = NULL;
    qnpu_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    int rc = 1, generated = 0;

    /* The session owns the quantized model it loads; the .qnpu file carries the tokenizer. */
    if (failed(qnpu_session_open(argv[1], NULL, &s), "open") ||
        failed(qnpu_tokenizer_from_qmodel(qnpu_session_qmodel(s), &tok), "tokenizer"))
        goto out;
    int64_t vocab, max_seq;
    qnpu_qmodel_get_dim(qnpu_session_qmodel(s), QNPU_DIM_VOCAB, &vocab);
    qnpu_qmodel_get_dim(qnpu_session_qmodel(s), QNPU_DIM_MAX_SEQ, &max_seq);

    /* Encode the prompt with BOS first; len + 2 ids always suffice. */
    size_t n, cap = strlen(prompt) + 2;
    ids = malloc(cap * sizeof *ids);
    logits = malloc((size_t)vocab * sizeof *logits);
    if (!ids || !logits ||
        failed(qnpu_tokenizer_encode(tok, prompt, strlen(prompt), 1, ids, cap, &n), "encode"))
        goto out;

    /* Prefill: the whole prompt in one call; we get the logits of its last position. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (failed(qnpu_session_eval(s, ids, n, 0, logits, (size_t)vocab), "prefill"))
        goto out;
    fputs(prompt, stdout);

    /* Decode: one token per call, each printed (and flushed) as soon as it exists. */
    uint64_t rng = 42;
    int32_t prev = ids[n - 1];
    while (generated < steps && qnpu_session_pos(s) < max_seq) {
        int32_t next = pick(logits, vocab, temp, &rng);
        if (next == qnpu_tokenizer_eos(tok) || next == qnpu_tokenizer_bos(tok))
            break; /* the story is over */
        char piece[64];
        size_t len;
        if (qnpu_tokenizer_decode(tok, prev, next, piece, sizeof piece, &len) == QNPU_OK) {
            fwrite(piece, 1, len, stdout);
            fflush(stdout);
        }
        generated++;
        prev = next;
        if (failed(qnpu_session_eval(s, &next, 1, 0, logits, (size_t)vocab), "decode"))
            goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    putchar('\n');
    fprintf(stderr, "[%d tokens after a %zu-token prompt, %.0f tokens/s]\n", generated, n,
            (double)generated / (sec > 0 ? sec : 1e-9));
    rc = generated > 0 ? 0 : 1; /* a model that says nothing at all is broken */
out:
    free(logits);
    free(ids);
    qnpu_tokenizer_free(tok);
    qnpu_session_free(s);
    return rc;
}
