/* check_model.c — the model handle and the llama2.c loader: dimensions, tensors against the
 * byte offsets documented in shared/models/README.md, and bad input (truncation at every
 * section boundary, bad headers, overflowing dimensions, NaN weights). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define BIN "models/stories260K.bin"

/* Byte offsets of each section of stories260K.bin (shared/models/README.md). */
static const struct { const char *name; long off; } sections[] = {
    {"token_embedding_table", 28}, {"rms_att_weight", 131100}, {"wq", 132380}, {"wk", 214300},
    {"wv", 255260}, {"wo", 296220}, {"rms_ffn_weight", 378140}, {"w1", 379420}, {"w2", 599580},
    {"w3", 819740}, {"rms_final_weight", 1039900}, {"freq_cis_real", 1040156},
    {"freq_cis_imag", 1048348},
};
#define FILE_SIZE 1056540L

static qnpu_status load(const char *path, qnpu_model **m)
{
    return qnpu_model_load(path, NULL, m);
}

START_TEST(test_llama2c_dims)
{
    if (!qt_have_shared(BIN))
        return;
    qnpu_model *m;
    ck_assert_int_eq(load(qt_shared(BIN), &m), QNPU_OK);
    const int64_t want[][2] = {
        {QNPU_DIM_HIDDEN, 64}, {QNPU_DIM_FFN, 172}, {QNPU_DIM_LAYERS, 5}, {QNPU_DIM_HEADS, 8},
        {QNPU_DIM_KV_HEADS, 4}, {QNPU_DIM_HEAD_DIM, 8}, {QNPU_DIM_VOCAB, 512}, {QNPU_DIM_MAX_SEQ, 512},
        {QNPU_DIM_ROPE_ORDER, 0}, {QNPU_DIM_TIED, 1}, {QNPU_DIM_QKV_BIAS, 0}, {QNPU_DIM_BOS, 1},
        {QNPU_DIM_EOS, 2},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t v;
        ck_assert_int_eq(qnpu_model_get_dim(m, (qnpu_model_dim)want[i][0], &v), QNPU_OK);
        ck_assert_int_eq(v, want[i][1]);
    }
    double eps, theta;
    ck_assert_int_eq(qnpu_model_get_hparam(m, QNPU_HP_RMS_EPS, &eps), QNPU_OK);
    ck_assert_int_eq(qnpu_model_get_hparam(m, QNPU_HP_ROPE_THETA, &theta), QNPU_OK);
    ck_assert(eps == 1e-5 && theta == 10000.0);
    ck_assert_str_eq(qnpu_model_format(m), "llama2c");
    ck_assert_str_eq(qnpu_model_arch(m), "llama");
    ck_assert_int_eq(qnpu_model_tensor_count(m), 2 + 5 * 9);
    size_t owned, mapped;
    ck_assert_int_eq(qnpu_model_memory_usage(m, &owned, &mapped), QNPU_OK);
    ck_assert_uint_eq(mapped, FILE_SIZE);
    int64_t v;
    ck_assert_int_eq(qnpu_model_get_dim(m, (qnpu_model_dim)99, &v), QNPU_ERR_INVALID_ARG);
    qnpu_model_free(m);
}
END_TEST

/* Each tensor read through the API equals the bytes at its documented offset. */
START_TEST(test_llama2c_tensors)
{
    if (!qt_have_shared(BIN))
        return;
    size_t len;
    unsigned char *raw = qt_read_file(qt_shared(BIN), &len);
    qnpu_model *m;
    ck_assert_int_eq(load(qt_shared(BIN), &m), QNPU_OK);
    struct { const char *name; long off; int64_t rows, cols; } t[] = {
        {"token_embd.weight", 28, 512, 64},
        {"blk.0.attn_norm.weight", 131100, 1, 64},
        {"blk.2.attn_q.weight", 132380 + 2 * 64 * 64 * 4, 64, 64},
        {"blk.4.attn_k.weight", 214300 + 4 * 32 * 64 * 4, 32, 64},
        {"blk.1.attn_v.weight", 255260 + 1 * 32 * 64 * 4, 32, 64},
        {"blk.3.attn_output.weight", 296220 + 3 * 64 * 64 * 4, 64, 64},
        {"blk.0.ffn_gate.weight", 379420, 172, 64},
        {"blk.4.ffn_down.weight", 599580 + 4 * 64 * 172 * 4, 64, 172},
        {"blk.2.ffn_up.weight", 819740 + 2 * 172 * 64 * 4, 172, 64},
        {"output_norm.weight", 1039900, 1, 64},
    };
    float buf[512 * 64];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int64_t idx, r, c;
        ck_assert_int_eq(qnpu_model_tensor_find(m, t[i].name, &idx), QNPU_OK);
        ck_assert_str_eq(qnpu_model_tensor_name(m, idx), t[i].name);
        ck_assert_int_eq(qnpu_model_tensor_shape(m, idx, &r, &c), QNPU_OK);
        ck_assert_int_eq(r, t[i].rows);
        ck_assert_int_eq(c, t[i].cols);
        ck_assert_int_eq(qnpu_model_tensor_read(m, idx, buf, (size_t)(r * c) - 1), QNPU_ERR_BUFFER_TOO_SMALL);
        ck_assert_int_eq(qnpu_model_tensor_read(m, idx, buf, sizeof buf / sizeof buf[0]), QNPU_OK);
        ck_assert_int_eq(memcmp(buf, raw + t[i].off, (size_t)(r * c) * 4), 0);
    }
    int64_t idx;
    ck_assert_int_eq(qnpu_model_tensor_find(m, "output.weight", &idx), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_null(qnpu_model_tensor_name(m, 1000));
    qnpu_model_free(m);

    /* the same through read() instead of mmap */
    qnpu_options *o;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_MMAP, 0), QNPU_OK);
    ck_assert_int_eq(qnpu_model_load(qt_shared(BIN), o, &m), QNPU_OK);
    size_t owned, mapped;
    qnpu_model_memory_usage(m, &owned, &mapped);
    ck_assert_uint_eq(mapped, 0);
    ck_assert_uint_ge(owned, FILE_SIZE);
    ck_assert_int_eq(qnpu_model_tensor_find(m, "blk.4.ffn_down.weight", &idx), QNPU_OK);
    ck_assert_int_eq(qnpu_model_tensor_read(m, idx, buf, sizeof buf / sizeof buf[0]), QNPU_OK);
    ck_assert_int_eq(memcmp(buf, raw + 599580 + 4 * 64 * 172 * 4, 64 * 172 * 4), 0);
    qnpu_model_free(m);
    qnpu_options_free(o);
    free(raw);
}
END_TEST

/* Expect `want` and a message containing both the file path and `needle`. */
static void expect_fail(const char *path, qnpu_status want, const char *needle)
{
    qnpu_model *m = (qnpu_model *)1;
    qnpu_status s = load(path, &m);
    ck_assert_msg(s == want, "%s: status %d (%s), expected %d; message: %s", path, s,
                  qnpu_status_string(s), want, qnpu_last_error());
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(qnpu_last_error(), path) != NULL, "message lacks the path: %s", qnpu_last_error());
    if (needle)
        ck_assert_msg(strstr(qnpu_last_error(), needle) != NULL, "message lacks '%s': %s", needle,
                      qnpu_last_error());
}

START_TEST(test_llama2c_truncated)
{
    if (!qt_have_shared(BIN))
        return;
    size_t len;
    unsigned char *raw = qt_read_file(qt_shared(BIN), &len);
    const char *p = qt_tmpfile("trunc.bin");
    /* cut at every section boundary and in the middle of each section: the message names
     * the section that no longer fits */
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        long next = i + 1 < sizeof sections / sizeof sections[0] ? sections[i + 1].off : FILE_SIZE;
        long cuts[] = {sections[i].off, (sections[i].off + next) / 2};
        for (int c = 0; c < 2; c++) {
            qt_write_file(p, raw, (size_t)cuts[c]);
            expect_fail(p, QNPU_ERR_IO, sections[i].name);
        }
    }
    /* inside the header, and an empty file */
    for (size_t cut = 0; cut < 28; cut += 9) {
        qt_write_file(p, raw, cut);
        expect_fail(p, QNPU_ERR_IO, "truncated");
    }
    /* one byte short, and one byte too many */
    qt_write_file(p, raw, (size_t)FILE_SIZE - 1);
    expect_fail(p, QNPU_ERR_IO, "freq_cis_imag");
    unsigned char *big = malloc((size_t)FILE_SIZE + 1);
    memcpy(big, raw, (size_t)FILE_SIZE);
    big[FILE_SIZE] = 0;
    qt_write_file(p, big, (size_t)FILE_SIZE + 1);
    expect_fail(p, QNPU_ERR_FORMAT, "1056541 bytes");
    free(big);
    free(raw);
}
END_TEST

static void write_patched_header(const char *p, const unsigned char *raw, int field, int32_t value)
{
    unsigned char *c = malloc((size_t)FILE_SIZE);
    memcpy(c, raw, (size_t)FILE_SIZE);
    memcpy(c + 4 * field, &value, 4);
    qt_write_file(p, c, (size_t)FILE_SIZE);
    free(c);
}

START_TEST(test_llama2c_bad_header)
{
    if (!qt_have_shared(BIN))
        return;
    size_t len;
    unsigned char *raw = qt_read_file(qt_shared(BIN), &len);
    const char *p = qt_tmpfile("bad.bin");
    write_patched_header(p, raw, 0, 0x616b3432); /* llama2.c v1 magic */
    expect_fail(p, QNPU_ERR_UNSUPPORTED, "version");
    write_patched_header(p, raw, 0, 0x7fffffff); /* dim that overflows every product */
    expect_fail(p, QNPU_ERR_FORMAT, "dim");
    write_patched_header(p, raw, 1, -5);
    expect_fail(p, QNPU_ERR_FORMAT, "ffn");
    write_patched_header(p, raw, 2, 1 << 30);
    expect_fail(p, QNPU_ERR_FORMAT, "layer");
    write_patched_header(p, raw, 3, 0);
    expect_fail(p, QNPU_ERR_FORMAT, "n_heads");
    write_patched_header(p, raw, 4, 3); /* 8 heads not a multiple of 3 kv heads */
    expect_fail(p, QNPU_ERR_FORMAT, "kv heads");
    write_patched_header(p, raw, 5, 0x40000000);
    expect_fail(p, QNPU_ERR_FORMAT, "vocab");
    write_patched_header(p, raw, 6, -1);
    expect_fail(p, QNPU_ERR_FORMAT, "context");
    write_patched_header(p, raw, 6, 4); /* a shorter freq_cis: the size no longer adds up */
    expect_fail(p, QNPU_ERR_FORMAT, "bytes");
    expect_fail(qt_tmpfile("does-not-exist.bin"), QNPU_ERR_IO, "cannot open");
    free(raw);
}
END_TEST

START_TEST(test_llama2c_nan)
{
    if (!qt_have_shared(BIN))
        return;
    size_t len;
    unsigned char *raw = qt_read_file(qt_shared(BIN), &len);
    const char *p = qt_tmpfile("nan.bin");
    float bad[2] = {NAN, INFINITY};
    for (int i = 0; i < 2; i++) {
        memcpy(raw + 132380 + 2 * 64 * 64 * 4 + 100 * 4, &bad[i], 4); /* wq, layer 2 */
        qt_write_file(p, raw, len);
        expect_fail(p, QNPU_ERR_NUMERIC, "wq[2]");
        ck_assert_ptr_nonnull(strstr(qnpu_last_error(), i ? "Inf" : "NaN"));
    }
    /* model.check_finite = 0 lets it through */
    qnpu_options *o;
    qnpu_model *m;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_CHECK_FINITE, 0), QNPU_OK);
    ck_assert_int_eq(qnpu_model_load(p, o, &m), QNPU_OK);
    qnpu_model_free(m);
    qnpu_options_free(o);
    free(raw);
}
END_TEST

/* A tiny llama2.c file with a separate classifier (negative vocab_size). */
START_TEST(test_llama2c_separate_classifier)
{
    const int32_t h[7] = {8, 12, 1, 2, 1, -16, 4};
    int dim = 8, ff = 12, hs = 4, kv = 4, vocab = 16, seq = 4;
    size_t n = (size_t)vocab * dim + dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * ff * dim + dim +
               2 * (size_t)seq * hs / 2 + (size_t)vocab * dim;
    float *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++)
        w[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    const char *p = qt_tmpfile("sep.bin");
    unsigned char *buf = malloc(28 + n * 4);
    memcpy(buf, h, 28);
    memcpy(buf + 28, w, n * 4);
    qt_write_file(p, buf, 28 + n * 4);
    qnpu_model *m;
    ck_assert_int_eq(load(p, &m), QNPU_OK);
    int64_t tied, idx;
    qnpu_model_get_dim(m, QNPU_DIM_TIED, &tied);
    ck_assert_int_eq(tied, 0);
    ck_assert_int_eq(qnpu_model_tensor_find(m, "output.weight", &idx), QNPU_OK);
    float out[16 * 8];
    ck_assert_int_eq(qnpu_model_tensor_read(m, idx, out, 128), QNPU_OK);
    ck_assert_int_eq(memcmp(out, w + n - 128, sizeof out), 0);
    qnpu_model_free(m);
    /* without its classifier the file is truncated */
    qt_write_file(p, buf, 28 + (n - 128) * 4);
    expect_fail(p, QNPU_ERR_IO, "wcls");
    free(buf);
    free(w);
}
END_TEST

START_TEST(test_bad_arguments)
{
    qnpu_model *m;
    ck_assert_int_eq(qnpu_model_load(NULL, NULL, &m), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_model_load("x", NULL, NULL), QNPU_ERR_INVALID_ARG);
    qnpu_model_free(NULL);
    int64_t v;
    ck_assert_int_eq(qnpu_model_get_dim(NULL, QNPU_DIM_HIDDEN, &v), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_model_tensor_count(NULL), 0);
    /* a directory without config.json */
    qnpu_status s = qnpu_model_load(qt_tmpdir(), NULL, &m);
    ck_assert_int_ne(s, QNPU_OK);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "config.json"));
}
END_TEST

Suite *qnpu_model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("llama2c");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_llama2c_dims);
    tcase_add_test(tc, test_llama2c_tensors);
    tcase_add_test(tc, test_llama2c_truncated);
    tcase_add_test(tc, test_llama2c_bad_header);
    tcase_add_test(tc, test_llama2c_nan);
    tcase_add_test(tc, test_llama2c_separate_classifier);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}
