/* check_report.c — the quantization error report on stories260K: W4A8 calibrated on 2 blocks,
 * reported on 2 windows of 64 tokens. Shares are a distribution, SQNRs follow the bit-widths,
 * the totals agree with the float session and with qnpu_qmodel_perplexity_ids, the SVG and JSON
 * files are well formed, and a quantized model from other rotations is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

#define BIN "models/stories260K.bin"
#define TRAIN "data/tinystories_train_head.txt"
#define VALID "data/tinystories_valid_head.txt"
#define CTX 64
#define NTOK (2 * CTX + 17) /* two full windows and a tail that is ignored */

/* Shared fixture: the float model, W4A8 (logits left float to cover 0-bit points), the stream. */
typedef struct fixture {
    qnpu_model *m;
    qnpu_tokenizer *t;
    qnpu_options *o;
    qnpu_qmodel *q;
    int32_t *ids;
    size_t n;
} fixture;

static int setup(fixture *f)
{
    memset(f, 0, sizeof *f);
    if (!qt_have_shared(BIN) || !qt_have_shared(TRAIN) || !qt_have_shared(VALID))
        return 0;
    ck_assert_int_eq(qnpu_model_load(qt_shared(BIN), NULL, &f->m), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_from_model(f->m, &f->t), QNPU_OK);
    const char *kv[] = {"quant.w_bits", "4", "quant.a_bits", "8", "rotate.r1", "identity", "rotate.r2",
                        "identity", "calib.num_samples", "2", "quant.bits_override", "logits:0", NULL};
    f->o = qt_options(kv);
    size_t clen, vlen;
    char *calib = qt_read_file(qt_shared(TRAIN), &clen), *valid = qt_read_file(qt_shared(VALID), &vlen);
    qnpu_calibrator *c;
    ck_assert_int_eq(qnpu_calibrator_create(f->m, f->t, f->o, &c), QNPU_OK);
    ck_assert_msg(qnpu_calibrator_run(c, calib, clen, &f->q) == QNPU_OK, "%s", qnpu_last_error());
    qnpu_calibrator_free(c);
    ck_assert_int_eq(qnpu_tokenize_paragraphs(f->t, valid, vlen, &f->ids, &f->n), QNPU_OK);
    ck_assert_uint_ge(f->n, NTOK);
    f->n = NTOK;
    free(calib);
    free(valid);
    return 1;
}

static void teardown(fixture *f)
{
    qnpu_free(f->ids);
    qnpu_qmodel_free(f->q);
    qnpu_options_free(f->o);
    qnpu_tokenizer_free(f->t);
    qnpu_model_free(f->m);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static size_t count_of(const char *s, const char *what)
{
    size_t k = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        k++;
    return k;
}

/* Balanced {} and [] outside strings, valid escapes, no NaN/Inf spelled out. */
static void check_json(const char *s)
{
    int depth = 0, in_str = 0;
    for (const char *p = s; *p; p++) {
        if (in_str) {
            ck_assert((unsigned char)*p >= 0x20);
            if (*p == '\\') {
                p++;
                ck_assert_ptr_nonnull(strchr("\"\\/bfnrtu", *p));
            } else if (*p == '"') {
                in_str = 0;
            }
            continue;
        }
        if (*p == '"')
            in_str = 1;
        else if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']')
            ck_assert_int_ge(--depth, 0);
        else
            ck_assert_msg(!strchr("nN", *p) || !strncmp(p, "null", 4), "bare word in JSON: %.20s", p);
        if (*p == 'n' && !strncmp(p, "null", 4))
            p += 3;
    }
    ck_assert_int_eq(in_str, 0);
    ck_assert_int_eq(depth, 0);
    ck_assert_ptr_null(strstr(s, "inf"));
    ck_assert_ptr_null(strstr(s, "nan"));
}

/* Well-formed enough: XML declaration, one svg element, every <text> closed with no raw '<' or
 * bare '&' in its content. */
static void check_svg(const char *s)
{
    ck_assert(!strncmp(s, "<?xml", 5));
    ck_assert_int_eq(count_of(s, "<svg "), 1);
    ck_assert(ends_with(s, "</svg>\n"));
    ck_assert_ptr_nonnull(strstr(s, "xmlns=\"http://www.w3.org/2000/svg\""));
    size_t texts = count_of(s, "<text");
    ck_assert_uint_eq(texts, count_of(s, "</text>"));
    ck_assert_uint_ge(texts, 40);
    for (const char *p = s; (p = strstr(p, "<text"));) {
        const char *gt = strchr(p, '>'), *end = strstr(p, "</text>");
        ck_assert(gt && end && gt < end);
        for (const char *c = gt + 1; c < end; c++) {
            ck_assert_msg(*c != '<' && *c != '>', "raw markup in a text node: %.40s", gt + 1);
            if (*c == '&')
                ck_assert(!strncmp(c, "&amp;", 5) || !strncmp(c, "&lt;", 4) || !strncmp(c, "&gt;", 4) ||
                          !strncmp(c, "&quot;", 6) || !strncmp(c, "&apos;", 6));
        }
        p = end;
    }
}

START_TEST(test_report_stories260k)
{
    fixture f;
    if (!setup(&f))
        return;
    qnpu_report *r;
    ck_assert_msg(qnpu_report_create(f.m, f.q, f.o, f.ids, f.n, CTX, &r) == QNPU_OK, "%s", qnpu_last_error());
    int64_t count = qnpu_report_count(r);
    ck_assert_int_eq(count, qnpu_qmodel_qp_count(f.q));
    double sum = 0, wsum = 0, s8 = 0, s16 = 0, w4 = 0, head_sqnr = NAN, top_share = -1;
    int n8 = 0, n16 = 0, nw4 = 0, zero_seen = 0;
    const char *top = NULL;
    for (int64_t i = 0; i < count; i++) {
        const char *name, *qname;
        int bits, qbits;
        double sq, mse, share;
        ck_assert_int_eq(qnpu_report_point(r, i, &name, &bits, &sq, &mse, &share), QNPU_OK);
        ck_assert_int_eq(qnpu_qmodel_qp_info(f.q, i, &qname, &qbits, NULL, NULL, NULL), QNPU_OK);
        ck_assert_str_eq(name, qname);
        ck_assert_int_eq(bits, qbits);
        ck_assert_msg(share >= 0 && mse >= 0, "%s: share %g mse %g", name, share, mse);
        sum += share;
        int weight = ends_with(name, ".w");
        if (weight)
            wsum += share;
        if (bits == 0) {
            zero_seen = 1;
            ck_assert_msg(isnan(sq) && share == 0 && mse == 0, "%s: 0 bits, sqnr %g share %g", name, sq, share);
            continue;
        }
        ck_assert_msg(!isnan(sq), "%s: SQNR is NaN", name);
        if (share > top_share)
            top_share = share, top = name;
        if (!strcmp(name, "lm_head.w")) {
            ck_assert_int_eq(bits, 8);
            head_sqnr = sq;
        } else if (weight) {
            ck_assert_int_eq(bits, 4);
            ck_assert_msg(sq > 5 && sq < 30, "%s: 4-bit weight SQNR %g dB", name, sq);
            w4 += sq, nw4++;
        } else if (isfinite(sq) && bits == 8) {
            ck_assert_msg(sq > 15, "%s: 8-bit SQNR %g dB", name, sq);
            s8 += sq, n8++;
        } else if (isfinite(sq) && bits == 16) {
            s16 += sq, n16++;
        }
    }
    ck_assert(zero_seen);  /* logits:0 */
    ck_assert_msg(fabs(sum - 1.0) < 1e-9, "shares sum to %.12f", sum);
    ck_assert(n8 > 0 && n16 > 0 && nw4 == 5 * 7);
    ck_assert_msg(s16 / n16 > s8 / n8 + 20, "mean SQNR 16-bit %g, 8-bit %g", s16 / n16, s8 / n8);
    ck_assert_msg(head_sqnr > w4 / nw4 + 10, "lm_head.w %g dB, 4-bit weights %g dB", head_sqnr, w4 / nw4);
    ck_assert_msg(wsum > 0.2, "weights take %g of the error (top point %s)", wsum, top);
    /* totals: the reference is the float model, the quantized graph is qnpu_qmodel_perplexity_ids */
    double pf, pq, mse;
    ck_assert_int_eq(qnpu_report_totals(r, &pf, &pq, &mse), QNPU_OK);
    ck_assert_msg(pq > pf && mse > 0, "ppl float %g quant %g mse %g", pf, pq, mse);
    double ref_f, ref_q;
    qnpu_float_session *fs;
    ck_assert_int_eq(qnpu_float_session_create(f.m, f.o, &fs), QNPU_OK);
    ck_assert_int_eq(qnpu_float_session_perplexity_ids(fs, f.ids, 2 * CTX, CTX, &ref_f, NULL), QNPU_OK);
    qnpu_float_session_free(fs);
    ck_assert_int_eq(qnpu_qmodel_perplexity_ids(f.q, f.o, f.ids, 2 * CTX, CTX, &ref_q, NULL), QNPU_OK);
    ck_assert_msg(fabs(pf / ref_f - 1) < 1e-4, "report float ppl %.8g, float session %.8g", pf, ref_f);
    ck_assert_msg(fabs(pq / ref_q - 1) < 1e-6, "report quant ppl %.8g, qmodel %.8g", pq, ref_q);
    ck_assert_int_eq(qnpu_report_point(r, count, NULL, NULL, NULL, NULL, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_report_point(r, -1, NULL, NULL, NULL, NULL, NULL), QNPU_ERR_INVALID_ARG);

    /* SVG */
    const char *svg = qt_tmpfile("report.svg");
    ck_assert_msg(qnpu_report_write_svg(r, svg) == QNPU_OK, "%s", qnpu_last_error());
    size_t len;
    char *text = qt_read_file(svg, &len);
    text = realloc(text, len + 1);
    text[len] = '\0';
    check_svg(text);
    ck_assert_ptr_nonnull(strstr(text, top));   /* the largest share is drawn */
    free(text);
    struct stat st;
    ck_assert_int_eq(stat(svg, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    ck_assert_int_eq(qnpu_report_write_svg(r, "/nonexistent-dir/report.svg"), QNPU_ERR_IO);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "/nonexistent-dir/report.svg"));

    /* JSON */
    const char *json = qt_tmpfile("report.json");
    ck_assert_msg(qnpu_report_write_json(r, json) == QNPU_OK, "%s", qnpu_last_error());
    text = qt_read_file(json, &len);
    text = realloc(text, len + 1);
    text[len] = '\0';
    check_json(text);
    ck_assert_ptr_nonnull(strstr(text, "\"points\": ["));
    ck_assert_ptr_nonnull(strstr(text, "\"ppl_quant\": "));
    ck_assert_uint_eq(count_of(text, "\"name\": "), (size_t)count);
    ck_assert_ptr_nonnull(strstr(text, "{\"name\": \"logits\", \"kind\": \"activation\", \"bits\": 0, "
                                       "\"sqnr_db\": null, \"mse_only\": 0, \"share\": 0}"));
    ck_assert_ptr_nonnull(strstr(text, "{\"name\": \"lm_head.w\", \"kind\": \"weight\", \"bits\": 8, "));
    free(text);
    ck_assert_int_eq(qnpu_report_write_json(r, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_report_write_json(NULL, json), QNPU_ERR_INVALID_ARG);
    qnpu_report_free(r);
    teardown(&f);
}
END_TEST

/* A pre-rotated model gives the same report as the plain one rotated inside. */
START_TEST(test_report_prerotated)
{
    fixture f;
    if (!setup(&f))
        return;
    qnpu_rotator *rot;
    qnpu_model *rm;
    ck_assert_int_eq(qnpu_rotator_create(f.m, f.o, &rot), QNPU_OK);
    ck_assert_int_eq(qnpu_rotator_run(rot, &rm), QNPU_OK);
    qnpu_rotator_free(rot);
    qnpu_report *a, *b;
    ck_assert_int_eq(qnpu_report_create(f.m, f.q, f.o, f.ids, CTX, CTX, &a), QNPU_OK);
    ck_assert_int_eq(qnpu_report_create(rm, f.q, f.o, f.ids, CTX, CTX, &b), QNPU_OK);
    for (int64_t i = 0; i < qnpu_report_count(a); i++) {
        double sa, sb, ma, mb;
        qnpu_report_point(a, i, NULL, NULL, &sa, &ma, NULL);
        qnpu_report_point(b, i, NULL, NULL, &sb, &mb, NULL);
        ck_assert((isnan(sa) && isnan(sb)) || sa == sb || fabs(sa - sb) < 1e-6);
        ck_assert(fabs(ma - mb) <= 1e-6 * fabs(ma) + 1e-12);
    }
    qnpu_report_free(a);
    qnpu_report_free(b);
    qnpu_model_free(rm);
    teardown(&f);
}
END_TEST

/* Arguments, and a quantized model from other rotations is refused with a reason. */
START_TEST(test_report_errors)
{
    fixture f;
    if (!setup(&f))
        return;
    qnpu_report *r = (qnpu_report *)1;
    ck_assert_int_eq(qnpu_report_create(NULL, f.q, f.o, f.ids, f.n, CTX, &r), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qnpu_report_create(f.m, NULL, f.o, f.ids, f.n, CTX, &r), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_report_create(f.m, f.q, f.o, f.ids, CTX - 1, CTX, &r), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "window"));
    ck_assert_int_eq(qnpu_report_create(f.m, f.q, f.o, f.ids, f.n, 1, &r), QNPU_ERR_INVALID_ARG);
    int32_t bad[CTX];
    memcpy(bad, f.ids, sizeof bad);
    bad[5] = 100000;
    ck_assert_int_eq(qnpu_report_create(f.m, f.q, f.o, bad, CTX, CTX, &r), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "100000"));
    const char *r1[] = {"rotate.r1", "random_hadamard", "rotate.r2", "identity", NULL};
    qnpu_options *o = qt_options(r1);
    ck_assert_int_eq(qnpu_report_create(f.m, f.q, o, f.ids, CTX, CTX, &r), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "rotate"));
    qnpu_options_free(o);
    const char *r2[] = {"rotate.r1", "identity", "rotate.r2", "random_hadamard", NULL};
    o = qt_options(r2);
    ck_assert_int_eq(qnpu_report_create(f.m, f.q, o, f.ids, CTX, CTX, &r), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "rotate"));
    qnpu_options_free(o);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qnpu_report_count(NULL), 0);
    ck_assert_int_eq(qnpu_report_totals(NULL, NULL, NULL, NULL), QNPU_ERR_INVALID_ARG);
    qnpu_report_free(NULL);
    teardown(&f);
}
END_TEST

Suite *qnpu_report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("stories260K");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_report_stories260k);
    tcase_add_test(tc, test_report_prerotated);
    tcase_add_test(tc, test_report_errors);
    suite_add_tcase(s, tc);
    return s;
}
