/* check_reliab.c — reliability checks (issue 7, docs/reliability.md): integer safety (the plan's
 * accumulator bounds, saturating requantization at the extremes against a wide-integer
 * reference), NaN/Inf in weights and activations, absurd dimensions in model headers rejected
 * before any large allocation, and the atomic writer on a bad descriptor. The allocation-failure
 * sweep, the I/O error tests and the thread tests are programs (test/reliab/, make check-alloc,
 * make check-tsan). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/plan.h"
#include "internal.h"
#include "kernels/requant.h"
#include "testutil.h"

#define BIN "models/stories260K.bin"

/* ---- a counting allocator (each test runs in its own process: installed per test) ---------- */

static size_t ca_count, ca_largest, ca_live;

static void *ca_alloc(void *u, size_t size, size_t align)
{
    (void)u;
    ca_count++;
    if (size > ca_largest)
        ca_largest = size;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    ca_live += p != NULL;
    return p;
}

static void ca_free(void *u, void *p)
{
    (void)u;
    ca_live -= p != NULL;
    free(p);
}

/* ---- integer safety ------------------------------------------------------------------------ */

/* The plan refuses dimensions past the bounds of docs/engine.md, naming the dimension. */
START_TEST(test_plan_bounds)
{
    /* TinyLlama and far beyond: fine */
    ck_assert_int_eq(qnpu__iplan_check_bounds(2048, 5632, 32, 64, 2048), QNPU_OK);
    ck_assert_int_eq(qnpu__iplan_check_bounds(1 << 20, 1 << 22, 1 << 10, 1 << 12, 1 << 24), QNPU_OK);
    ck_assert_int_eq(qnpu__iplan_check_bounds((INT64_C(1) << 32) - 1, (INT64_C(1) << 31) - 1, 1, (1 << 24) - 1,
                                              (INT64_C(1) << 33) - 1), QNPU_OK);
    struct { int64_t d, ff, h, dh, ctx; const char *word; } bad[] = {
        {INT64_C(1) << 32, 64, 1, 64, 64, "hidden size"},
        {INT64_C(1) << 40, 64, 1, 64, 64, "hidden size"},
        {64, INT64_C(1) << 31, 1, 64, 64, "ffn size"},
        {64, 64, 1, 1 << 24, 64, "head dim"},
        {64, 64, 1, 64, INT64_C(1) << 33, "context"},
        {64, 64, INT64_C(1) << 31, 1 << 10, 64, "heads x head dim"},
        {0, 64, 1, 64, 64, "hidden size"},
        {64, 64, 0, 64, 64, "heads"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(qnpu__iplan_check_bounds(bad[i].d, bad[i].ff, bad[i].h, bad[i].dh, bad[i].ctx) ==
                          QNPU_ERR_UNSUPPORTED, "case %zu accepted", i);
        ck_assert_msg(strstr(qnpu_last_error(), bad[i].word) != NULL, "%zu: %s", i, qnpu_last_error());
    }
}
END_TEST

#ifdef QNPU__HAVE_INT128
/* y = clamp(z + rne(acc·M0 / 2^n), qmin, qmax) in 128-bit arithmetic, the shifted product
 * saturated to int64 first (requant.h). */
static int32_t requant_wide(int64_t acc, int32_t m0, int n, int32_t z, int32_t qmin, int32_t qmax)
{
    qnpu__i128 p = (qnpu__i128)acc * m0, r;
    if (n <= 0) {
        r = p;
        for (int i = 0; i < -n && r != 0; i++) {
            r *= 2;
            if (r > (qnpu__i128)INT64_MAX * 4 || r < (qnpu__i128)INT64_MIN * 4)
                break; /* saturates below anyway */
        }
    } else if (n >= 127) {
        r = 0;
    } else {
        qnpu__i128 d = (qnpu__i128)1 << n, q = p / d, rem = p % d;
        if (rem < 0)
            q -= 1, rem += d;
        if (2 * rem > d || (2 * rem == d && (q & 1)))
            q += 1;
        r = q;
    }
    if (r > INT64_MAX)
        r = INT64_MAX;
    if (r < INT64_MIN)
        r = INT64_MIN;
    qnpu__i128 y = r + z;
    return (int32_t)(y < qmin ? qmin : y > qmax ? qmax : y);
}
#endif

/* Saturating requantization at the extremes: accumulators at the int32 and int64 limits,
 * multipliers at their limits (0, 2^30, 2^31 − 1), every shift the multiplier can have, zero
 * points and ranges of every storage type, against the wide-integer reference. */
START_TEST(test_requant_extremes)
{
#ifdef QNPU__HAVE_INT128
    static const int64_t acc[] = {0, 1, -1, INT32_MAX, INT32_MIN, (int64_t)INT32_MAX + 1, (int64_t)INT32_MIN - 1,
                                  INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, INT64_C(1) << 40,
                                  -(INT64_C(1) << 40), 255 * 128 * INT64_C(65793), -255 * 128 * INT64_C(65793)};
    static const int32_t m0s[] = {0, 1, 1 << 30, (1 << 30) + 1, INT32_MAX, INT32_MAX - 1, 1610612736};
    static const struct { int32_t lo, hi; } range[] = {
        {0, 255}, {-128, 127}, {0, 65535}, {-32768, 32767}, {-8, 7}, {0, 15}, {INT32_MIN, INT32_MAX}};
    static const int32_t zs[] = {0, 1, -1, 128, 255, 32768, 65535, -32768, INT32_MAX, INT32_MIN};
    int64_t checked = 0;
    for (size_t a = 0; a < sizeof acc / sizeof acc[0]; a++)
        for (size_t m = 0; m < sizeof m0s / sizeof m0s[0]; m++)
            for (int n = QNPU__RQ_SHIFT_MIN; n <= QNPU__RQ_SHIFT_MAX; n++)
                for (size_t r = 0; r < sizeof range / sizeof range[0]; r++)
                    for (size_t zi = 0; zi < sizeof zs / sizeof zs[0]; zi++) {
                        int32_t want = requant_wide(acc[a], m0s[m], n, zs[zi], range[r].lo, range[r].hi);
                        int32_t got = qnpu__requant(acc[a], m0s[m], n, zs[zi], range[r].lo, range[r].hi);
                        int32_t port = qnpu__requant_portable(acc[a], m0s[m], n, zs[zi], range[r].lo, range[r].hi);
                        int32_t inl = qnpu__requant_i(acc[a], m0s[m], n, zs[zi], range[r].lo, range[r].hi);
                        ck_assert_msg(got == want && port == want && inl == want,
                                      "acc %lld m0 %d n %d z %d [%d, %d]: %d / %d / %d, want %d",
                                      (long long)acc[a], m0s[m], n, zs[zi], range[r].lo, range[r].hi, got, port,
                                      inl, want);
                        checked++;
                    }
    ck_assert_int_gt(checked, 100000);
#endif
    /* the multiplier itself at its limits */
    int32_t m0;
    int n;
    ck_assert_int_eq(qnpu__quantize_multiplier(ldexp(1.0, 63), &m0, &n), 0);
    ck_assert(m0 == (1 << 30) && n == QNPU__RQ_SHIFT_MIN);
    ck_assert_int_eq(qnpu__quantize_multiplier(ldexp(1.0, -64), &m0, &n), 0);
    ck_assert(m0 == (1 << 30) && n == QNPU__RQ_SHIFT_MAX);
    ck_assert_int_eq(qnpu__quantize_multiplier(ldexp(1.0, -65), &m0, &n), 0);
    ck_assert(m0 == 0 && n == 0);
    ck_assert_int_eq(qnpu__quantize_multiplier(NAN, &m0, &n), -1);
    ck_assert_int_eq(qnpu__quantize_multiplier(INFINITY, &m0, &n), -1);
    ck_assert_int_eq(qnpu__quantize_multiplier(-1.0, &m0, &n), -1);
    ck_assert(m0 == 0 && n == 0);
}
END_TEST

/* ---- NaN / Inf ------------------------------------------------------------------------------ */

/* A copy of stories260K.bin with one float replaced at element `at` of the float payload. */
static const char *patched_bin(const char *name, size_t at, float v)
{
    size_t len;
    unsigned char *b = qt_read_file(qt_shared(BIN), &len);
    ck_assert_uint_gt(len, 28 + 4 * (at + 1));
    memcpy(b + 28 + 4 * at, &v, 4);
    const char *path = qt_tmpfile(name);
    qt_write_file(path, b, len);
    free(b);
    /* the tokenizer beside it */
    size_t tl;
    void *tok = qt_read_file(qt_shared("models/tok512.bin"), &tl);
    qt_write_file(qt_tmpfile("tok512.bin"), tok, tl);
    free(tok);
    return path;
}

/* A NaN in wq[0] (layer 0's query weight; the payload is embedding [512][64], rms_att [5][64],
 * then wq): rejected at load by default, and by the rotator (so by the calibrator and the
 * optimizer, which rotate a plain model) when model.check_finite is off — each naming it. */
START_TEST(test_nan_weight)
{
    if (!qt_have_shared(BIN))
        return;
    const char *path = patched_bin("nan.bin", 512 * 64 + 5 * 64 + 3 * 64 + 7, NAN);
    qnpu_model *m = NULL;
    ck_assert_int_eq(qnpu_model_load(path, NULL, &m), QNPU_ERR_NUMERIC);
    ck_assert_msg(strstr(qnpu_last_error(), "wq[0]") && strstr(qnpu_last_error(), "NaN"), "%s", qnpu_last_error());

    const char *kv[] = {"model.check_finite", "false", "calib.seq_len", "16", "calib.num_samples", "1",
                        "calib.first_block", "0", "optim.steps", "1", "optim.batch", "1", "optim.micro_batch", "1",
                        NULL};
    qnpu_options *o = qt_options(kv);
    ck_assert_int_eq(qnpu_model_load(path, o, &m), QNPU_OK);
    int32_t ids[64];
    for (int i = 0; i < 64; i++)
        ids[i] = 1 + (i * 37) % 500;

    qnpu_rotator *r;
    qnpu_model *rot = NULL;
    ck_assert_int_eq(qnpu_rotator_create(m, o, &r), QNPU_OK);
    ck_assert_int_eq(qnpu_rotator_run(r, &rot), QNPU_ERR_NUMERIC);
    ck_assert_ptr_null(rot);
    ck_assert_msg(strstr(qnpu_last_error(), "wq[0]") && strstr(qnpu_last_error(), "NaN"), "%s", qnpu_last_error());
    qnpu_rotator_free(r);

    qnpu_calibrator *c;
    qnpu_qmodel *q = NULL;
    ck_assert_int_eq(qnpu_calibrator_create(m, NULL, o, &c), QNPU_OK);
    ck_assert_int_eq(qnpu_calibrator_run_ids(c, ids, 64, &q), QNPU_ERR_NUMERIC);
    ck_assert_ptr_null(q);
    ck_assert_msg(strstr(qnpu_last_error(), "wq[0]"), "%s", qnpu_last_error());
    qnpu_calibrator_free(c);

    qnpu_optimizer *op;
    ck_assert_int_eq(qnpu_optimizer_create(m, NULL, o, &op), QNPU_OK);
    ck_assert_int_eq(qnpu_optimizer_run_ids(op, ids, 64, &q), QNPU_ERR_NUMERIC);
    ck_assert_ptr_null(q);
    ck_assert_msg(strstr(qnpu_last_error(), "wq[0]"), "%s", qnpu_last_error());
    qnpu_optimizer_free(op);
    qnpu_options_free(o);
    qnpu_model_free(m);
}
END_TEST

/* An Inf weight likewise; and a finite but huge embedding row (3e38: its RMSNorm's sum of squares
 * overflows) gives non-finite activations, which calibration rejects naming the point. */
START_TEST(test_nonfinite_activation)
{
    if (!qt_have_shared(BIN))
        return;
    const char *path = patched_bin("inf.bin", 512 * 64 + 5 * 64 + 3, INFINITY);
    qnpu_model *m = NULL;
    ck_assert_int_eq(qnpu_model_load(path, NULL, &m), QNPU_ERR_NUMERIC);
    ck_assert_msg(strstr(qnpu_last_error(), "Inf"), "%s", qnpu_last_error());

    /* token 300's embedding row, every element 3e38 */
    size_t len;
    unsigned char *b = qt_read_file(qt_shared(BIN), &len);
    float big = 3e38f;
    for (int k = 0; k < 64; k++)
        memcpy(b + 28 + 4 * (300 * 64 + k), &big, 4);
    const char *hpath = qt_tmpfile("huge.bin");
    qt_write_file(hpath, b, len);
    free(b);
    ck_assert_int_eq(qnpu_model_load(hpath, NULL, &m), QNPU_OK);
    const char *kv[] = {"calib.seq_len", "16", "calib.num_samples", "1", "calib.first_block", "0", NULL};
    qnpu_options *o = qt_options(kv);
    int32_t ids[16];
    for (int i = 0; i < 16; i++)
        ids[i] = i == 5 ? 300 : 1 + i;
    qnpu_calibrator *c;
    qnpu_qmodel *q = NULL;
    ck_assert_int_eq(qnpu_calibrator_create(m, NULL, o, &c), QNPU_OK);
    qnpu_status st = qnpu_calibrator_run_ids(c, ids, 16, &q);
    ck_assert_msg(st == QNPU_ERR_NUMERIC, "status %d: %s", (int)st, qnpu_last_error());
    ck_assert_ptr_null(q);
    ck_assert_msg(strstr(qnpu_last_error(), "layer") || strstr(qnpu_last_error(), "lm_head") ||
                      strstr(qnpu_last_error(), "logits"),
                  "the message names no point: %s", qnpu_last_error());
    qnpu_calibrator_free(c);
    qnpu_options_free(o);
    qnpu_model_free(m);
}
END_TEST

/* ---- absurd headers: rejected before any large allocation ---------------------------------- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Load `path` with the counting allocator: it must fail with one of the statuses given (not
 * NO_MEMORY), name the file (and `word` if given), and allocate no block above 64 KiB beyond the
 * file's own size (model.mmap = false reads the file into memory). */
static void expect_rejected(const char *path, int mmap, const char *word, qnpu_status want1, qnpu_status want2)
{
    qnpu_options *o = qt_options(NULL);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_MMAP, mmap), QNPU_OK);
    ca_largest = 0;
    qnpu_model *m = NULL;
    qnpu_status st = qnpu_model_load(path, o, &m);
    ck_assert_msg(st == want1 || st == want2, "%s: status %d: %s", path, (int)st, qnpu_last_error());
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(qnpu_last_error(), path) != NULL, "the message does not name the file: %s",
                  qnpu_last_error());
    if (word)
        ck_assert_msg(strstr(qnpu_last_error(), word) != NULL, "the message does not name '%s': %s", word,
                      qnpu_last_error());
    struct stat sb;
    size_t fsize = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? (size_t)sb.st_size : 0;
    ck_assert_msg(ca_largest <= fsize + (1u << 16), "%s: a block of %zu bytes was allocated", path, ca_largest);
    qnpu_options_free(o);
}

START_TEST(test_absurd_llama2c)
{
    if (!qt_have_shared(BIN))
        return;
    ck_assert_int_eq(qnpu_set_allocator(ca_alloc, ca_free, NULL), QNPU_OK);
    size_t len;
    unsigned char *orig = qt_read_file(qt_shared(BIN), &len);
    /* {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len} */
    struct { int i; int32_t v; const char *word; } cases[] = {
        {0, 1 << 30, "hidden size"}, {1, INT32_MAX, "ffn size"}, {2, 1 << 30, "layer count"},
        {5, INT32_MAX, "vocab size"}, {6, INT32_MAX, "context length"}, {0, -64, NULL}, {3, 0, NULL},
        /* plausible dims, far more bytes than the file has: truncated */
        {0, 8192, "truncated"}, {1, 1 << 20, NULL}, {5, 1 << 20, "truncated"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        unsigned char *b = malloc(len);
        memcpy(b, orig, len);
        put32(b + 4 * cases[k].i, (uint32_t)cases[k].v);
        if (cases[k].i == 0 && cases[k].v == 8192)
            put32(b + 4 * 3, 128); /* keep dim a multiple of the heads */
        char name[32];
        snprintf(name, sizeof name, "absurd%zu.bin", k);
        const char *path = qt_tmpfile(name);
        qt_write_file(path, b, len);
        free(b);
        for (int mm = 0; mm < 2; mm++)
            expect_rejected(path, mm, cases[k].word, QNPU_ERR_FORMAT, QNPU_ERR_IO);
    }
    free(orig);
    ck_assert_uint_eq(ca_live, 0);
}
END_TEST

/* GGUF: huge tensor and key-value counts, a huge string length, a huge tensor shape. */
START_TEST(test_absurd_gguf)
{
    ck_assert_int_eq(qnpu_set_allocator(ca_alloc, ca_free, NULL), QNPU_OK);
    unsigned char b[256];
    for (int k = 0; k < 4; k++) {
        memset(b, 0, sizeof b);
        memcpy(b, "GGUF", 4);
        put32(b + 4, 3);
        size_t n = 24;
        if (k == 0) {
            put64(b + 8, UINT64_C(1) << 60); /* tensors */
            put64(b + 16, 0);
        } else if (k == 1) {
            put64(b + 8, 0);
            put64(b + 16, UINT64_C(1) << 60); /* key-values */
        } else if (k == 2) {
            put64(b + 8, 0);
            put64(b + 16, 1);
            put64(b + 24, UINT64_C(1) << 62); /* the key's length */
            n = 40;
        } else {
            /* one tensor info: name "t", 2 dims of 2^40 each, F32, offset 0 */
            put64(b + 8, 1);
            put64(b + 16, 0);
            put64(b + 24, 1);
            b[32] = 't';
            put32(b + 33, 2);
            put64(b + 37, UINT64_C(1) << 40);
            put64(b + 45, UINT64_C(1) << 40);
            put32(b + 53, 0);
            put64(b + 57, 0);
            n = 65;
        }
        char name[32];
        snprintf(name, sizeof name, "absurd%d.gguf", k);
        const char *path = qt_tmpfile(name);
        qt_write_file(path, b, n);
        for (int mm = 0; mm < 2; mm++)
            expect_rejected(path, mm, NULL, QNPU_ERR_FORMAT, QNPU_ERR_IO);
    }
    ck_assert_uint_eq(ca_live, 0);
}
END_TEST

/* safetensors: a header length of 2^62, and a tensor shape of 2^40 x 2^40. */
START_TEST(test_absurd_safetensors)
{
    ck_assert_int_eq(qnpu_set_allocator(ca_alloc, ca_free, NULL), QNPU_OK);
    const char *dir = qt_tmpfile("absurd_hf");
    mkdir(dir, 0755);
    char cfg[700], st[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    size_t cl;
    if (!qt_have_shared("models/stories260K-hf/config.json"))
        return;
    void *c = qt_read_file(qt_shared("models/stories260K-hf/config.json"), &cl);
    qt_write_file(cfg, c, cl);
    free(c);
    unsigned char b[512];
    memset(b, 0, sizeof b);
    put64(b, UINT64_C(1) << 62);
    memcpy(b + 8, "{}", 2);
    qt_write_file(st, b, 16);
    for (int mm = 0; mm < 2; mm++)
        expect_rejected(dir, mm, NULL, QNPU_ERR_FORMAT, QNPU_ERR_IO);
    const char *js = "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                     "\"data_offsets\":[0,16]}}";
    size_t jl = strlen(js);
    put64(b, jl);
    memcpy(b + 8, js, jl);
    qt_write_file(st, b, 8 + jl + 16);
    for (int mm = 0; mm < 2; mm++)
        expect_rejected(dir, mm, NULL, QNPU_ERR_FORMAT, QNPU_ERR_IO);
    ck_assert_uint_eq(ca_live, 0);
}
END_TEST

/* .qnpu: a section count of 2^31 and a file size field of 2^62. */
START_TEST(test_absurd_qnpu)
{
    ck_assert_int_eq(qnpu_set_allocator(ca_alloc, ca_free, NULL), QNPU_OK);
    if (!qt_have_shared(BIN))
        return;
    /* a real file first, then its header patched */
    qnpu_model *m;
    ck_assert_int_eq(qnpu_model_load(qt_shared(BIN), NULL, &m), QNPU_OK);
    const char *kv[] = {"calib.seq_len", "16", "calib.num_samples", "1", "calib.first_block", "0", NULL};
    qnpu_options *o = qt_options(kv);
    qnpu_calibrator *c;
    qnpu_qmodel *q;
    int32_t ids[16];
    for (int i = 0; i < 16; i++)
        ids[i] = 1 + i;
    ck_assert_int_eq(qnpu_calibrator_create(m, NULL, o, &c), QNPU_OK);
    ck_assert_int_eq(qnpu_calibrator_run_ids(c, ids, 16, &q), QNPU_OK);
    const char *good = qt_tmpfile("good.qnpu");
    ck_assert_int_eq(qnpu_qmodel_save(q, good), QNPU_OK);
    qnpu_qmodel_free(q);
    qnpu_calibrator_free(c);
    qnpu_options_free(o);
    qnpu_model_free(m);
    size_t len;
    unsigned char *orig = qt_read_file(good, &len);
    /* the header (docs/formats.md): magic, format version, library version, header size,
     * section count at byte 16, entry size at 20, table offset at 24, file size at 32 */
    struct { size_t at; int w; uint64_t v; } cases[] = {{16, 4, UINT64_C(1) << 31}, {16, 4, UINT32_MAX},
                                                         {32, 8, UINT64_C(1) << 62}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        unsigned char *b = malloc(len);
        memcpy(b, orig, len);
        if (cases[k].w == 4)
            put32(b + cases[k].at, (uint32_t)cases[k].v);
        else
            put64(b + cases[k].at, cases[k].v);
        char name[32];
        snprintf(name, sizeof name, "absurd%zu.qnpu", k);
        const char *path = qt_tmpfile(name);
        qt_write_file(path, b, len);
        free(b);
        for (int mm = 0; mm < 2; mm++) {
            qnpu_options *lo = qt_options(NULL);
            ck_assert_int_eq(qnpu_options_set_int(lo, QNPU_P_MODEL_MMAP, mm), QNPU_OK);
            ca_largest = 0;
            size_t before = ca_live;
            qnpu_qmodel *bad = NULL;
            qnpu_status st = qnpu_qmodel_load(path, lo, &bad);
            ck_assert_msg(st == QNPU_ERR_FORMAT || st == QNPU_ERR_IO, "status %d: %s", (int)st, qnpu_last_error());
            ck_assert_ptr_null(bad);
            ck_assert_msg(strstr(qnpu_last_error(), path) != NULL, "%s", qnpu_last_error());
            /* the file itself may be read into memory (model.mmap = false), nothing larger */
            ck_assert_msg(ca_largest <= len + 4096, "a block of %zu bytes for a %zu-byte file", ca_largest, len);
            ck_assert_uint_eq(ca_live, before); /* everything the load made is freed */
            qnpu_options_free(lo);
        }
    }
    free(orig);
    ck_assert_uint_eq(ca_live, 0);
}
END_TEST

/* ---- the atomic writer on a descriptor closed behind its back ------------------------------ */

START_TEST(test_afile_bad_fd)
{
    const char *path = qt_tmpfile("afile.out");
    qt_write_file(path, "previous", 8);
    qnpu__afile f;
    ck_assert_int_eq(qnpu__afile_open(&f, path), QNPU_OK);
    qnpu__afile_write(&f, "some bytes", 10);
    close(f.fd); /* e.g. a bug elsewhere in the process closed it */
    static unsigned char big[1 << 17];
    qnpu__afile_write(&f, big, sizeof big); /* past the buffer: reaches write(2) */
    char *tmp = qnpu__strdup(f.tmp);
    ck_assert_int_eq(qnpu__afile_commit(&f), QNPU_ERR_IO);
    ck_assert_msg(strstr(qnpu_last_error(), path) && strstr(qnpu_last_error(), strerror(EBADF)), "%s",
                  qnpu_last_error());
    ck_assert_int_ne(access(tmp, F_OK), 0); /* the temporary file is gone */
    size_t len;
    char *now = qt_read_file(path, &len);
    ck_assert(len == 8 && memcmp(now, "previous", 8) == 0);
    free(now);
    qnpu__free(tmp);
    qnpu__afile_abort(&f); /* harmless after commit */
}
END_TEST

Suite *qnpu_reliab_suite(void)
{
    Suite *s = suite_create("reliab");
    TCase *tc = tcase_create("integer");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_plan_bounds);
    tcase_add_test(tc, test_requant_extremes);
    suite_add_tcase(s, tc);
    tc = tcase_create("numeric");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_nan_weight);
    tcase_add_test(tc, test_nonfinite_activation);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_absurd_llama2c);
    tcase_add_test(tc, test_absurd_gguf);
    tcase_add_test(tc, test_absurd_safetensors);
    tcase_add_test(tc, test_absurd_qnpu);
    tcase_add_test(tc, test_afile_bad_fd);
    suite_add_tcase(s, tc);
    return s;
}
