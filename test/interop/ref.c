/* ref.c — the library's side of `make check-interop`: the token windows, the simulated graph's
 * perplexity on them and the integer engine's arg-max per position, as one JSON object for
 * test/interop/run_ort.js to compare ONNX Runtime against.
 *
 *   ref M.qnpu TEXT T WINDOWS OUT.json [CHUNK]
 *
 * TEXT is tokenized with the model's tokenizer by the perplexity protocol (docs/perplexity.md);
 * the first WINDOWS windows of T tokens are used. "top1_sim_int" is the simulated graph's top-1
 * agreement with the engine (qnpu_compare) on the same windows. Exit status 0, or 1 with a
 * message. With CHUNK, the engine runs each window as two calls (CHUNK tokens, then the rest on
 * top of its KV cache): "int_argmax" and "ppl_int_chunked" come from that run, for graphs
 * exported with export.past_len = CHUNK. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantnpu.h"

static int fail(const char *what, qnpu_status s)
{
    fprintf(stderr, "ref: %s: %s: %s\n", what, qnpu_status_string(s), qnpu_last_error());
    return 1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                buf = NULL;
            }
            buf = b;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: ref M.qnpu TEXT T WINDOWS OUT.json [CHUNK]\n");
        return 2;
    }
    long T = atol(argv[3]), W = atol(argv[4]), C = argc == 7 ? atol(argv[6]) : 0;
    if (T < 2 || W < 1 || C < 0 || C >= T) {
        fprintf(stderr, "ref: bad T or WINDOWS\n");
        return 2;
    }
    qnpu_qmodel *q;
    qnpu_tokenizer *tok;
    qnpu_session *sess;
    qnpu_status s = qnpu_qmodel_load(argv[1], NULL, &q);
    if (s != QNPU_OK)
        return fail(argv[1], s);
    if ((s = qnpu_tokenizer_from_qmodel(q, &tok)) != QNPU_OK)
        return fail("tokenizer", s);
    size_t len;
    char *text = slurp(argv[2], &len);
    if (!text) {
        fprintf(stderr, "ref: cannot read %s\n", argv[2]);
        return 1;
    }
    int32_t *ids;
    size_t n;
    if ((s = qnpu_tokenize_paragraphs(tok, text, len, &ids, &n)) != QNPU_OK)
        return fail("tokenize", s);
    size_t need = (size_t)(T * W);
    if (n < need) {
        fprintf(stderr, "ref: %zu tokens, %zu needed\n", n, need);
        return 1;
    }
    double ppl_sim, ppl_int;
    int64_t scored_sim, scored_int, vocab;
    if ((s = qnpu_qmodel_perplexity_ids(q, NULL, ids, need, T, &ppl_sim, &scored_sim)) != QNPU_OK)
        return fail("simulated graph", s);
    if ((s = qnpu_qmodel_get_dim(q, QNPU_DIM_VOCAB, &vocab)) != QNPU_OK ||
        (s = qnpu_session_create(q, NULL, &sess)) != QNPU_OK)
        return fail("session", s);
    if ((s = qnpu_session_perplexity_ids(sess, ids, need, T, &ppl_int, &scored_int)) != QNPU_OK)
        return fail("integer engine", s);
    /* the simulated graph's own top-1 agreement with the engine, for scale */
    qnpu_compare *cmp;
    double top1_sim_int;
    if ((s = qnpu_compare_run(q, NULL, ids, need, T, W, &cmp)) != QNPU_OK ||
        (s = qnpu_compare_totals(cmp, NULL, NULL, &top1_sim_int, NULL)) != QNPU_OK)
        return fail("compare", s);
    qnpu_compare_free(cmp);
    size_t cap = (size_t)(T * vocab);
    float *logits = malloc(cap * sizeof *logits);
    int32_t *amax = malloc(need * sizeof *amax);
    if (!logits || !amax)
        return 1;
    double nll = 0;
    for (long w = 0; w < W; w++) {
        qnpu_session_reset(sess);
        if (C) {
            if ((s = qnpu_session_eval(sess, ids + w * T, (size_t)C, 1, logits, cap)) != QNPU_OK ||
                (s = qnpu_session_eval(sess, ids + w * T + C, (size_t)(T - C), 1, logits + C * vocab,
                                       cap - (size_t)(C * vocab))) != QNPU_OK)
                return fail("integer engine", s);
        } else if ((s = qnpu_session_eval(sess, ids + w * T, (size_t)T, 1, logits, cap)) != QNPU_OK) {
            return fail("integer engine", s);
        }
        for (long t = 0; t < T; t++) {
            const float *r = logits + t * vocab;
            int32_t best = 0;
            for (int64_t v = 1; v < vocab; v++)
                if (r[v] > r[best])
                    best = (int32_t)v;
            amax[w * T + t] = best;
            if (t + 1 < T) {
                double se = 0;
                for (int64_t v = 0; v < vocab; v++)
                    se += exp((double)r[v] - r[best]);
                nll += log(se) + r[best] - r[ids[w * T + t + 1]];
            }
        }
    }
    double ppl_int_run = exp(nll / (double)(W * (T - 1)));
    FILE *f = fopen(argv[5], "w");
    if (!f) {
        fprintf(stderr, "ref: cannot write %s\n", argv[5]);
        return 1;
    }
    fprintf(f, "{\"model\": \"%s\", \"T\": %ld, \"windows\": %ld, \"ppl_sim\": %.9g, \"scored_sim\": %lld, "
               "\"ppl_int\": %.9g, \"scored_int\": %lld, \"top1_sim_int\": %.9g, \"chunk\": %ld, "
               "\"ppl_int_chunked\": %.9g,\n \"ids\": [",
            argv[1], T, W, ppl_sim, (long long)scored_sim, ppl_int, (long long)scored_int, top1_sim_int, C,
            ppl_int_run);
    for (size_t i = 0; i < need; i++)
        fprintf(f, "%s%d", i ? "," : "", ids[i]);
    fprintf(f, "],\n \"int_argmax\": [");
    for (size_t i = 0; i < need; i++)
        fprintf(f, "%s%d", i ? "," : "", amax[i]);
    fprintf(f, "]}\n");
    if (fclose(f)) {
        fprintf(stderr, "ref: cannot write %s\n", argv[5]);
        return 1;
    }
    free(logits);
    free(amax);
    free(text);
    qnpu_free(ids);
    qnpu_session_free(sess);
    qnpu_tokenizer_free(tok);
    qnpu_qmodel_free(q);
    return 0;
}
