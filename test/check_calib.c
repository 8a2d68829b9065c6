/* check_calib.c — rotator, simulated NPU graph and calibrator on stories260K:
 * rotations leave the float model unchanged (parity rule 15), the simulated graph with every
 * point off is the float model, bit assignment and overrides, calibration end to end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/qgraph.h"
#include "calib/simgraph.h"
#include "testutil.h"

#define BIN "models/stories260K.bin"
#define TRAIN "data/tinystories_train_head.txt"
#define VALID "data/tinystories_valid_head.txt"

static qnpu_model *rotate(const qnpu_model *m, const qnpu_options *o)
{
    qnpu_rotator *r;
    qnpu_model *out;
    ck_assert_int_eq(qnpu_rotator_create(m, o, &r), QNPU_OK);
    ck_assert_msg(qnpu_rotator_run(r, &out) == QNPU_OK, "%s", qnpu_last_error());
    qnpu_rotator_free(r);
    return out;
}

/* all logits of the first 64 golden-ish tokens */
static float *logits_of(const qnpu_model *m)
{
    static const int32_t seq[16] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
    qnpu_float_session *s;
    ck_assert_int_eq(qnpu_float_session_create(m, NULL, &s), QNPU_OK);
    float *lg = malloc(16 * 512 * sizeof(float));
    ck_assert_int_eq(qnpu_float_session_eval(s, seq, 16, 1, lg, 16 * 512), QNPU_OK);
    qnpu_float_session_free(s);
    return lg;
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double mx = 0, scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(a[i]));
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)a[i] - b[i]) / scale);
    return mx;
}

/* Parity rule 15: the float model with rotations fused reproduces the original's logits to
 * within 1e-4 relative, for identity (fusion only), Hadamard R1/R2, and online R4 too. */
START_TEST(test_rotations_preserve_logits)
{
    if (!qt_have_shared(BIN))
        return;
    qnpu_model *m;
    ck_assert_int_eq(qnpu_model_load(qt_shared(BIN), NULL, &m), QNPU_OK);
    float *ref = logits_of(m);
    const char *cfg[][9] = {
        {"rotate.r1", "identity", "rotate.r2", "identity", NULL},
        {"rotate.r1", "random_hadamard", "rotate.r2", "random_hadamard", "rotate.seed", "7", NULL},
        {"rotate.r1", "random_orthogonal", "rotate.r2", "random_orthogonal", NULL},
        {"rotate.r4", "all", NULL},
    };
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        qnpu_options *o = qt_options(cfg[i]);
        qnpu_model *r = rotate(m, o);
        int64_t v;
        qnpu_model_get_dim(r, QNPU_DIM_ROPE_ORDER, &v);
        ck_assert_int_eq(v, 1);
        qnpu_model_get_dim(r, QNPU_DIM_TIED, &v);
        ck_assert_int_eq(v, 0);
        float *got = logits_of(r);
        double err = max_rel(ref, got, 16 * 512);
        ck_assert_msg(err < 1e-4, "config %zu: max relative logit error %g", i, err);
        free(got);
        /* a rotated model cannot be rotated again */
        qnpu_rotator *rr;
        qnpu_model *twice;
        ck_assert_int_eq(qnpu_rotator_create(r, o, &rr), QNPU_OK);
        ck_assert_int_eq(qnpu_rotator_run(rr, &twice), QNPU_ERR_STATE);
        qnpu_rotator_free(rr);
        qnpu_model_free(r);
        qnpu_options_free(o);
    }
    free(ref);
    qnpu_model_free(m);
}
END_TEST

/* The simulated graph with every point off runs the float model. */
START_TEST(test_sim_all_off_is_float)
{
    if (!qt_have_shared(BIN))
        return;
    static const int32_t seq[16] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
    qnpu_model *m;
    ck_assert_int_eq(qnpu_model_load(qt_shared(BIN), NULL, &m), QNPU_OK);
    float *ref = logits_of(m);
    const char *kv[] = {"rotate.r4", "all", NULL};
    qnpu_options *o = qt_options(kv);
    qnpu_model *r = rotate(m, o);
    qnpu__sim *sim;
    ck_assert_int_eq(qnpu__sim_create(r, 1, 16, 512, &sim), QNPU_OK);
    qnpu__qp *qp = calloc(5 * QP_LAYER_COUNT, sizeof *qp), gqp[QP_GLOBAL_COUNT] = {{0}};
    sim->qp = qp;
    sim->gqp = gqp;
    ck_assert_int_eq(qnpu__sim_quantize_rope(sim), QNPU_OK);
    float *got = malloc(16 * 512 * sizeof(float));
    ck_assert_int_eq(qnpu__sim_forward(sim, seq, 16, got), QNPU_OK);
    double err = max_rel(ref, got, 16 * 512);
    ck_assert_msg(err < 1e-4, "max relative logit error %g", err);
    qnpu__sim_free(sim);
    free(qp);
    free(got);
    free(ref);
    qnpu_model_free(r);
    qnpu_options_free(o);
    qnpu_model_free(m);
}
END_TEST

START_TEST(test_bit_assignment)
{
    qnpu__qp qp[2 * QP_LAYER_COUNT], g[QP_GLOBAL_COUNT];
    int8_t wb[2 * W_COUNT];
    int head;
    const char *kv[] = {"quant.a_bits", "4", "quant.down_a_bits", "8",
                        "quant.bits_override", "layer1.*.in:8,layer0.q.w:8,lm_head.w:4,logits:0", NULL};
    qnpu_options *o = qt_options(kv);
    ck_assert_int_eq(qnpu__qp_assign_bits(o, 2, qp, g, wb, &head), QNPU_OK);
    ck_assert_int_eq(qp[QP_IN].bits, 16);                        /* layer 0's input */
    ck_assert_int_eq(qp[QP_LAYER_COUNT + QP_IN].bits, 0);        /* = previous mlp.res */
    ck_assert_int_eq(qp[QP_QKV_IN].bits, 4);
    ck_assert_int_eq(qp[QP_LAYER_COUNT + QP_QKV_IN].bits, 8);    /* override */
    ck_assert_int_eq(qp[QP_LAYER_COUNT + QP_DOWN_IN].bits, 8);
    ck_assert_int_eq(qp[QP_DOWN_OUT].bits, 8);                   /* row 30 follows row 28 */
    ck_assert_int_eq(qp[QP_K_CACHE].sym, 1);
    ck_assert_int_eq(qp[QP_K_CACHE].bits, 8);
    ck_assert_int_eq(qp[QP_GATE_SIG].fixed, 1);
    ck_assert_int_eq(qp[QP_SOFTMAX].bits, 16);
    ck_assert_int_eq(wb[W_Q], 8);
    ck_assert_int_eq(wb[W_K], 4);
    ck_assert_int_eq(head, 4);
    ck_assert_int_eq(g[QP_LOGITS].bits, 0);
    qnpu_options_free(o);
    const char *bad[] = {"quant.bits_override", "layer0.qkv.in:5", NULL};
    o = qt_options(bad);
    ck_assert_int_eq(qnpu__qp_assign_bits(o, 2, qp, g, wb, &head), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "layer0.qkv.in:5"));
    qnpu_options_free(o);
}
END_TEST

static char *text_of(const char *rel, size_t *len)
{
    return qt_read_file(qt_shared(rel), len);
}

/* Calibrate W8A8 on 2 blocks; the quantized graph stays close to the float model on a few
 * windows, every point is listed with a valid record, and the run is deterministic. */
START_TEST(test_calibrate_end_to_end)
{
    if (!qt_have_shared(BIN) || !qt_have_shared(TRAIN) || !qt_have_shared(VALID))
        return;
    qnpu_model *m;
    qnpu_tokenizer *t;
    ck_assert_int_eq(qnpu_model_load(qt_shared(BIN), NULL, &m), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_OK);
    size_t clen, vlen;
    char *calib = text_of(TRAIN, &clen), *valid = text_of(VALID, &vlen);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, valid, vlen, &ids, &n), QNPU_OK);
    n = 8 * 256; /* eight windows */
    const char *kv[] = {"quant.w_bits", "8", "quant.a_bits", "8", "rotate.r1", "identity", "rotate.r2",
                        "identity", "calib.num_samples", "2", NULL};
    qnpu_options *o = qt_options(kv);
    qnpu_qmodel *q[2];
    for (int i = 0; i < 2; i++) {
        qnpu_calibrator *c;
        ck_assert_int_eq(qnpu_calibrator_create(m, t, o, &c), QNPU_OK);
        ck_assert_msg(qnpu_calibrator_run(c, calib, clen, &q[i]) == QNPU_OK, "%s", qnpu_last_error());
        qnpu_calibrator_free(c);
    }
    double ppl_q, ppl_f;
    qnpu_float_session *fs;
    ck_assert_int_eq(qnpu_float_session_create(m, o, &fs), QNPU_OK);
    ck_assert_int_eq(qnpu_float_session_perplexity_ids(fs, ids, n, 256, &ppl_f, NULL), QNPU_OK);
    ck_assert_int_eq(qnpu_qmodel_perplexity_ids(q[0], o, ids, n, 256, &ppl_q, NULL), QNPU_OK);
    ck_assert_msg(ppl_q > ppl_f * 0.995 && ppl_q < ppl_f * 1.05, "W8A8 %g vs float %g", ppl_q, ppl_f);
    /* listing and determinism */
    int64_t count = qnpu_qmodel_qp_count(q[0]);
    ck_assert_int_eq(count, qnpu_qmodel_qp_count(q[1]));
    ck_assert_int_eq(count, 5 * (QP_LAYER_COUNT + W_COUNT) - 4 + QP_GLOBAL_COUNT + 1);
    int seen_kcache = 0;
    for (int64_t i = 0; i < count; i++) {
        const char *na, *nb;
        int ba, bb, sa, sb;
        double xa, xb;
        int32_t za, zb;
        ck_assert_int_eq(qnpu_qmodel_qp_info(q[0], i, &na, &ba, &sa, &xa, &za), QNPU_OK);
        ck_assert_int_eq(qnpu_qmodel_qp_info(q[1], i, &nb, &bb, &sb, &xb, &zb), QNPU_OK);
        ck_assert_str_eq(na, nb);
        ck_assert(ba == bb && sa == sb && xa == xb && za == zb);
        if (ba) {
            ck_assert_msg(isfinite(xa) && xa > 0, "%s: scale %g", na, xa);
            int32_t lo = sa ? -(1 << (ba - 1)) : 0, hi = sa ? (1 << (ba - 1)) - 1 : (1 << ba) - 1;
            ck_assert_msg(za >= lo && za <= hi, "%s: zero %d", na, za);
        }
        if (!strcmp(na, "layer2.k.cache")) {
            seen_kcache = 1;
            ck_assert(ba == 8 && sa == 1 && za == 0);
        }
        if (!strcmp(na, "layer0.gate.sig"))
            ck_assert(ba == 16 && xa == 1.0 / 65536 && za == 0);
    }
    ck_assert(seen_kcache);
    ck_assert_int_eq(qnpu_qmodel_qp_info(q[0], count, NULL, NULL, NULL, NULL, NULL), QNPU_ERR_INVALID_ARG);
    /* the tokenizer travels with the model */
    qnpu_tokenizer *t2;
    ck_assert_int_eq(qnpu_tokenizer_from_qmodel(q[0], &t2), QNPU_OK);
    int32_t a[64], b[64];
    size_t na, nb;
    const char *s = "Once upon a time, there was a little girl named Lily.";
    ck_assert_int_eq(qnpu_tokenizer_encode(t, s, strlen(s), 1, a, 64, &na), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_encode(t2, s, strlen(s), 1, b, 64, &nb), QNPU_OK);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(a, b, na * sizeof *a), 0);
    qnpu_tokenizer_free(t2);
    /* too few blocks */
    qnpu_calibrator *c;
    ck_assert_int_eq(qnpu_calibrator_create(m, t, o, &c), QNPU_OK);
    qnpu_qmodel *none;
    ck_assert_int_eq(qnpu_calibrator_run(c, "a short story", 13, &none), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "blocks"));
    qnpu_calibrator_free(c);
    qnpu_float_session_free(fs);
    qnpu_qmodel_free(q[0]);
    qnpu_qmodel_free(q[1]);
    qnpu_options_free(o);
    qnpu_free(ids);
    free(calib);
    free(valid);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
}
END_TEST

static int cancel_first(void *user, const char *stage, int64_t done, int64_t total)
{
    (void)user;
    (void)total;
    ck_assert_str_eq(stage, "calibrate");
    return done >= 1;
}

START_TEST(test_calibrate_cancel)
{
    if (!qt_have_shared(BIN) || !qt_have_shared(TRAIN))
        return;
    qnpu_model *m;
    qnpu_tokenizer *t;
    ck_assert_int_eq(qnpu_model_load(qt_shared(BIN), NULL, &m), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_OK);
    size_t clen;
    char *calib = text_of(TRAIN, &clen);
    qnpu_options *o = qt_options(NULL);
    qnpu_calibrator *c;
    qnpu_qmodel *q = (qnpu_qmodel *)1;
    ck_assert_int_eq(qnpu_calibrator_create(m, t, o, &c), QNPU_OK);
    qnpu_calibrator_set_progress(c, cancel_first, NULL);
    ck_assert_int_eq(qnpu_calibrator_run(c, calib, clen, &q), QNPU_ERR_CANCELLED);
    ck_assert_ptr_null(q);
    qnpu_calibrator_free(c);
    qnpu_options_free(o);
    free(calib);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
}
END_TEST

Suite *qnpu_calib_suite(void)
{
    Suite *s = suite_create("calib");
    TCase *tc = tcase_create("pipeline");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_rotations_preserve_logits);
    tcase_add_test(tc, test_sim_all_off_is_float);
    tcase_add_test(tc, test_bit_assignment);
    tcase_add_test(tc, test_calibrate_end_to_end);
    tcase_add_test(tc, test_calibrate_cancel);
    suite_add_tcase(s, tc);
    return s;
}
