/* 02_quantize.c — the whole quantization pipeline through the C API, on stories260K:
 *
 *   load -> rotate (Hadamard R1/R2) -> calibrate (static W4A8) -> save .qnpu -> integer session
 *   and, for comparison, a few steps of the learned Quant.npu pipeline (qnpu_optimizer).
 *
 *   cc 02_quantize.c $(pkg-config --cflags --libs libquantnpu) -o 02_quantize
 *   ./02_quantize ../shared out.qnpu          # SHARED holds models/ and data/
 *
 * The settings are cut down so that it runs in seconds (4 calibration blocks, 4 training steps);
 * `quantnpu quantize` with the full presets is the real thing. Exit 77 when SHARED is missing. */
#include <stdio.h>
#include <stdlib.h>

#include <quantnpu.h>

/* Every fallible call returns a qnpu_status; on failure qnpu_last_error() says why. */
#define TRY(call)                                                                                \
    do {                                                                                         \
        qnpu_status st_ = (call);                                                                \
        if (st_ != QNPU_OK) {                                                                    \
            fprintf(stderr, "%s failed: %s: %s\n", #call, qnpu_status_string(st_),               \
                    qnpu_last_error());                                                          \
            goto out;                                                                            \
        }                                                                                        \
    } while (0)

/* The first `max` bytes of a file (a short calibration and evaluation text is enough here). */
static char *read_head(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc(max) : NULL;
    *len = buf ? fread(buf, 1, max, f) : 0;
    if (f)
        fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SHARED OUT.qnpu\n", argv[0]);
        return 2;
    }
    char model_path[4096], train_path[4096], valid_path[4096];
    snprintf(model_path, sizeof model_path, "%s/models/stories260K.bin", argv[1]);
    snprintf(train_path, sizeof train_path, "%s/data/tinystories_train_head.txt", argv[1]);
    snprintf(valid_path, sizeof valid_path, "%s/data/tinystories_valid_head.txt", argv[1]);
    size_t train_len, valid_len;
    char *train = read_head(train_path, 64 * 1024, &train_len);
    char *valid = read_head(valid_path, 12 * 1024, &valid_len);
    FILE *probe = fopen(model_path, "rb");
    if (!train || !valid || !probe) {
        printf("skipped: %s, %s or %s not found\n", model_path, train_path, valid_path);
        free(train);
        free(valid);
        if (probe)
            fclose(probe);
        return 77; /* the automake convention for "skipped" */
    }
    fclose(probe);

    int rc = 1;
    qnpu_options *opts = NULL, *learned = NULL;
    qnpu_model *model = NULL, *rotated = NULL;
    qnpu_tokenizer *tok = NULL;
    qnpu_rotator *rot = NULL;
    qnpu_calibrator *cal = NULL;
    qnpu_optimizer *opt = NULL;
    qnpu_qmodel *q = NULL, *q2 = NULL;
    qnpu_float_session *fs = NULL;
    qnpu_session *s = NULL, *s2 = NULL;
    int32_t *ids = NULL;
    size_t n_ids;

    /* 1. Options: a preset recipe, then overrides (the names are the YAML keys). */
    TRY(qnpu_options_create(&opts));
    TRY(qnpu_options_load_recipe(opts, "w4a8-hadamard"));
    TRY(qnpu_options_set_int(opts, QNPU_P_NUM_THREADS, 1));    /* a tiny model: one thread */
    TRY(qnpu_options_set_int(opts, QNPU_P_CALIB_SEQ_LEN, 128)); /* blocks of 128 tokens ... */
    TRY(qnpu_options_set_int(opts, QNPU_P_CALIB_NUM_SAMPLES, 4)); /* ... four of them */
    TRY(qnpu_options_set_int(opts, QNPU_P_CALIB_FIRST_BLOCK, 0));

    /* 2. The float model and its tokenizer (tok512.bin beside the checkpoint). */
    TRY(qnpu_model_load(model_path, opts, &model));
    TRY(qnpu_tokenizer_from_model(model, &tok));

    /* 3. Rotate: fuse the RMSNorm weights and the Hadamard rotations into a new float model.
     *    (The calibrator would do this itself given the plain model; done here to show it.) */
    TRY(qnpu_rotator_create(model, opts, &rot));
    TRY(qnpu_rotator_run(rot, &rotated));

    /* 4. Calibrate every scale and zero point on the text, then save the .qnpu file. */
    TRY(qnpu_calibrator_create(rotated, tok, opts, &cal));
    TRY(qnpu_calibrator_run(cal, train, train_len, &q));
    TRY(qnpu_qmodel_save(q, argv[2]));
    printf("calibrated %lld quantization points, saved %s\n", (long long)qnpu_qmodel_qp_count(q),
           argv[2]);

    /* 5. Perplexity on the same token stream: the float model, then the integer-only engine
     *    opened from the file just written (as a deployment would). */
    TRY(qnpu_tokenize_paragraphs(tok, valid, valid_len, &ids, &n_ids));
    double ppl_f, ppl_i, ppl_l;
    int64_t scored;
    TRY(qnpu_float_session_create(model, opts, &fs));
    TRY(qnpu_float_session_perplexity_ids(fs, ids, n_ids, 256, &ppl_f, &scored));
    TRY(qnpu_session_open(argv[2], opts, &s));
    TRY(qnpu_session_perplexity_ids(s, ids, n_ids, 256, &ppl_i, &scored));
    printf("perplexity over %lld tokens: float %.4f, static w4a8-hadamard (integer) %.4f\n",
           (long long)scored, ppl_f, ppl_i);

    /* 6. The learned pipeline (METHOD.md §8): the quantnpu-w4a8 preset, cut to 4 steps of 2
     *    blocks of 64 tokens. It takes the plain float model: it rotates it itself. */
    TRY(qnpu_options_clone(opts, &learned));
    TRY(qnpu_options_load_recipe(learned, "quantnpu-w4a8"));
    TRY(qnpu_options_set_str(learned, QNPU_P_OPTIM_STEPS, "4"));
    TRY(qnpu_options_set_int(learned, QNPU_P_OPTIM_BATCH, 2));
    TRY(qnpu_options_set_int(learned, QNPU_P_CALIB_SEQ_LEN, 64)); /* the recipe set these too */
    TRY(qnpu_options_set_int(learned, QNPU_P_CALIB_NUM_SAMPLES, 2));
    TRY(qnpu_options_set_int(learned, QNPU_P_CALIB_FIRST_BLOCK, 0));
    TRY(qnpu_options_set_int(learned, QNPU_P_INIT_WARMUP_CALLS, 16));
    TRY(qnpu_optimizer_create(model, tok, learned, &opt));
    TRY(qnpu_optimizer_run(opt, train, train_len, &q2));
    TRY(qnpu_session_create(q2, learned, &s2)); /* straight from memory this time */
    TRY(qnpu_session_perplexity_ids(s2, ids, n_ids, 256, &ppl_l, &scored));
    printf("learned quantnpu-w4a8, 4 steps (last loss %.4f): perplexity %.4f\n",
           qnpu_optimizer_last_loss(opt), ppl_l);

    /* A sanity check that can fail: quantization costs something, but not everything. */
    rc = (ppl_i >= ppl_f * 0.99 && ppl_i < ppl_f * 2 && ppl_l < ppl_f * 2) ? 0 : 1;
    if (rc)
        fprintf(stderr, "unexpected perplexities\n");
out:
    /* Destructors accept NULL; free users before what they use (sessions before models). */
    qnpu_session_free(s2);
    qnpu_session_free(s);
    qnpu_float_session_free(fs);
    qnpu_free(ids);
    qnpu_qmodel_free(q2);
    qnpu_qmodel_free(q);
    qnpu_optimizer_free(opt);
    qnpu_calibrator_free(cal);
    qnpu_rotator_free(rot);
    qnpu_model_free(rotated);
    qnpu_tokenizer_free(tok);
    qnpu_model_free(model);
    qnpu_options_free(learned);
    qnpu_options_free(opts);
    free(train);
    free(valid);
    return rc;
}
