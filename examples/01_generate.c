/* 01_generate.c — load a model, generate greedily, and report the perplexity of a sentence.
 *
 *   cc 01_generate.c $(pkg-config --cflags --libs libquantnpu) -o 01_generate
 *   ./01_generate ../shared/models/stories260K.bin
 * Without arguments it only checks that the header matches the library it runs against. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <quantnpu.h>

static int check(qnpu_status s, const char *what)
{
    if (s != QNPU_OK)
        fprintf(stderr, "%s: %s: %s\n", what, qnpu_status_string(s), qnpu_last_error());
    return s != QNPU_OK;
}

int main(int argc, char **argv)
{
    /* the SQLite idiom: the header and the library must agree */
    if (qnpu_version_number() != QNPU_VERSION_NUMBER) {
        fprintf(stderr, "header %s, library %s\n", QNPU_VERSION_STRING, qnpu_version_string());
        return 1;
    }
    printf("libquantnpu %s\n", qnpu_version_string());
    if (argc < 2)
        return 0;

    qnpu_model *m = NULL;
    qnpu_tokenizer *t = NULL;
    qnpu_float_session *s = NULL;
    float *logits = NULL;
    int rc = 1;
    if (check(qnpu_model_load(argv[1], NULL, &m), "load") ||
        check(qnpu_tokenizer_from_model(m, &t), "tokenizer") ||
        check(qnpu_float_session_create(m, NULL, &s), "session"))
        goto out;

    int64_t vocab;
    qnpu_model_get_dim(m, QNPU_DIM_VOCAB, &vocab);
    logits = malloc((size_t)vocab * sizeof *logits);
    int32_t tok = qnpu_tokenizer_bos(t), prev = tok;
    for (int i = 0; i < 32 && logits; i++) {
        if (check(qnpu_float_session_eval(s, &tok, 1, 0, logits, (size_t)vocab), "eval"))
            goto out;
        int32_t best = 0;
        for (int32_t j = 1; j < vocab; j++)
            if (logits[j] > logits[best])
                best = j;
        char piece[64];
        size_t n;
        if (qnpu_tokenizer_decode(t, prev, best, piece, sizeof piece, &n) == QNPU_OK)
            fwrite(piece, 1, n, stdout);
        prev = tok = best;
    }
    printf("\n");

    const char *text = "Once upon a time, there was a little girl named Lily.";
    double ppl;
    int64_t scored;
    if (check(qnpu_float_session_perplexity(s, t, text, strlen(text), 64, &ppl, &scored), "perplexity"))
        goto out;
    printf("perplexity %.4f over %lld tokens\n", ppl, (long long)scored);
    rc = 0;
out:
    free(logits);
    qnpu_float_session_free(s);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
    return rc;
}
