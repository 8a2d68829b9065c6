/* check_gguf.c — tests of the GGUF loader (lib/model/gguf.c).
 *
 * Three kinds of fixtures:
 *   - the real files ../shared/models/stories260K-f32.gguf and -f16.gguf (written by llama.cpp),
 *     compared tensor by tensor with the llama2.c checkpoint stories260K.bin and tok512.bin;
 *   - patched copies of the real file (one field changed), located with a small walker below;
 *   - tiny synthetic GGUF files written by a builder below (value types, dtypes, versions,
 *     qwen2, alignment, missing or mistyped keys).
 * Every failure test checks the status and that qnpu_last_error() names the file and the
 * key or tensor at fault. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define F32_GGUF "models/stories260K-f32.gguf"
#define F16_GGUF "models/stories260K-f16.gguf"
#define LLAMA2C "models/stories260K.bin"
#define TOK512 "models/tok512.bin"

enum { GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STR, GT_ARR,
       GT_U64, GT_I64, GT_F64 };

/* ---- little-endian helpers --------------------------------------------------------------- */

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void set_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- a walker over a valid GGUF file, to find the fields a test patches ------------------- */

static size_t scalar_bytes(uint32_t t)
{
    static const size_t sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? sz[t] : 0;
}

static size_t skip_val(const unsigned char *p, size_t o, uint32_t t)
{
    if (t == GT_STR)
        return o + 8 + get_le(p + o, 8);
    if (t != GT_ARR)
        return o + scalar_bytes(t);
    uint32_t et = (uint32_t)get_le(p + o, 4);
    uint64_t n = get_le(p + o + 4, 8);
    o += 12;
    for (uint64_t i = 0; i < n; i++)
        o = skip_val(p, o, et);
    return o;
}

typedef struct kv_loc {
    size_t start;     /* the key's length field */
    size_t type_off;  /* the uint32 type */
    size_t val_off;   /* the value */
} kv_loc;

typedef struct info_loc {
    size_t start, ndims_off, ne_off, type_off, offset_off;
    uint64_t ne[4], offset;
    uint32_t n_dims, type;
} info_loc;

/* Find key `key` (or, with key NULL, the end of the KV section in *end). */
static int find_kv_loc(const unsigned char *p, const char *key, kv_loc *out, size_t *end)
{
    uint64_t n_kv = get_le(p + 16, 8);
    size_t o = 24;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t len = get_le(p + o, 8);
        kv_loc k = {o, o + 8 + len, o + 12 + len};
        if (key && len == strlen(key) && memcmp(p + o + 8, key, len) == 0) {
            *out = k;
            return 1;
        }
        o = skip_val(p, k.val_off, (uint32_t)get_le(p + k.type_off, 4));
    }
    if (end)
        *end = o;
    return 0;
}

/* Find the tensor info of `name`, or with name NULL the end of the infos in *end. */
static int find_info(const unsigned char *p, const char *name, info_loc *out, size_t *end)
{
    size_t o;
    find_kv_loc(p, NULL, NULL, &o);
    uint64_t n_t = get_le(p + 8, 8);
    for (uint64_t i = 0; i < n_t; i++) {
        info_loc t = {0};
        uint64_t len = get_le(p + o, 8);
        t.start = o;
        t.ndims_off = o + 8 + len;
        t.n_dims = (uint32_t)get_le(p + t.ndims_off, 4);
        t.ne_off = t.ndims_off + 4;
        for (uint32_t d = 0; d < t.n_dims; d++)
            t.ne[d] = get_le(p + t.ne_off + 8 * d, 8);
        t.type_off = t.ne_off + 8 * t.n_dims;
        t.type = (uint32_t)get_le(p + t.type_off, 4);
        t.offset_off = t.type_off + 4;
        t.offset = get_le(p + t.offset_off, 8);
        if (name && len == strlen(name) && memcmp(p + o + 8, name, len) == 0) {
            *out = t;
            return 1;
        }
        o = t.offset_off + 8;
    }
    if (end)
        *end = o;
    return 0;
}

/* The fixtures have no general.alignment: the data section starts at the next multiple of 32. */
static size_t data_start(const unsigned char *p)
{
    size_t end;
    find_info(p, NULL, NULL, &end);
    return (end + 31) / 32 * 32;
}

static info_loc must_info(const unsigned char *p, const char *name)
{
    info_loc t;
    ck_assert_msg(find_info(p, name, &t, NULL), "no tensor info '%s' in the fixture", name);
    return t;
}

static kv_loc must_kv(const unsigned char *p, const char *key)
{
    kv_loc k;
    ck_assert_msg(find_kv_loc(p, key, &k, NULL), "no key '%s' in the fixture", key);
    return k;
}

/* ---- loading helpers ---------------------------------------------------------------------- */

static unsigned char *fixture(const char *rel, size_t *n)
{
    return qt_read_file(qt_shared(rel), n);
}

static qnpu_model *load_ok(const char *path, const qnpu_options *o)
{
    qnpu_model *m = NULL;
    qnpu_status s = qnpu_model_load(path, o, &m);
    ck_assert_msg(s == QNPU_OK, "%s: %s", path, qnpu_last_error());
    return m;
}

/* Load must fail with `want`; the message must name the file and contain both needles. */
static void expect_fail(const char *path, qnpu_status want, const char *needle, const char *needle2)
{
    qnpu_model *m = NULL;
    qnpu_status s = qnpu_model_load(path, NULL, &m);
    const char *e = qnpu_last_error();
    ck_assert_msg(s == want, "%s: status %d, expected %d (%s)", path, (int)s, (int)want, e);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(e, path) != NULL, "message '%s' does not name the file", e);
    if (needle)
        ck_assert_msg(strstr(e, needle) != NULL, "message '%s' lacks '%s'", e, needle);
    if (needle2)
        ck_assert_msg(strstr(e, needle2) != NULL, "message '%s' lacks '%s'", e, needle2);
}

/* Write a patched copy and expect the load to fail. */
static void expect_patched(const char *tmpname, const unsigned char *d, size_t n, qnpu_status want,
                           const char *needle, const char *needle2)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", qt_tmpfile(tmpname));
    qt_write_file(path, d, n);
    expect_fail(path, want, needle, needle2);
}

static int64_t dim_of(const qnpu_model *m, qnpu_model_dim which)
{
    int64_t v = -1;
    ck_assert_int_eq(qnpu_model_get_dim(m, which, &v), QNPU_OK);
    return v;
}

/* A tensor as float32 (malloc'ed) with its shape. */
static float *tensor(const qnpu_model *m, const char *name, int64_t *rows, int64_t *cols)
{
    int64_t i, r, c;
    ck_assert_msg(qnpu_model_tensor_find(m, name, &i) == QNPU_OK, "no tensor '%s'", name);
    ck_assert_int_eq(qnpu_model_tensor_shape(m, i, &r, &c), QNPU_OK);
    float *d = malloc((size_t)(r * c) * sizeof *d);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(qnpu_model_tensor_read(m, i, d, (size_t)(r * c)), QNPU_OK);
    if (rows) *rows = r;
    if (cols) *cols = c;
    return d;
}

/* ---- the real files ----------------------------------------------------------------------- */

START_TEST(test_f32_dims)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    qnpu_model *m = load_ok(qt_shared(F32_GGUF), NULL);
    ck_assert_str_eq(qnpu_model_format(m), "gguf");
    ck_assert_str_eq(qnpu_model_arch(m), "llama");
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HIDDEN), 64);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_FFN), 172);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_LAYERS), 5);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HEADS), 8);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_KV_HEADS), 4);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HEAD_DIM), 8);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_VOCAB), 512);
    /* convert-llama2c-to-ggml wrote llama.context_length = 128 (its default n_ctx), not the
     * checkpoint's seq_len 512; the loader reports what the file says */
    ck_assert_int_eq(dim_of(m, QNPU_DIM_MAX_SEQ), 128);
    /* the converter also wrote output.weight (a copy of token_embd), so the file is untied */
    ck_assert_int_eq(dim_of(m, QNPU_DIM_TIED), 0);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_ROPE_ORDER), 0);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_QKV_BIAS), 0);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_BOS), 1);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_EOS), 2);
    double theta, eps;
    ck_assert_int_eq(qnpu_model_get_hparam(m, QNPU_HP_ROPE_THETA, &theta), QNPU_OK);
    ck_assert_int_eq(qnpu_model_get_hparam(m, QNPU_HP_RMS_EPS, &eps), QNPU_OK);
    ck_assert(theta == 10000.0);        /* absent from the file: the default */
    ck_assert(eps == (double)1e-5f);    /* stored as float32 */
    ck_assert_int_eq(qnpu_model_tensor_count(m), 48);

    static const struct { const char *name; int64_t rows, cols; } shapes[] = {
        {"token_embd.weight", 512, 64},      {"output.weight", 512, 64},
        {"output_norm.weight", 1, 64},       {"blk.0.attn_norm.weight", 1, 64},
        {"blk.0.attn_q.weight", 64, 64},     {"blk.3.attn_k.weight", 32, 64},
        {"blk.4.attn_v.weight", 32, 64},     {"blk.1.attn_output.weight", 64, 64},
        {"blk.2.ffn_norm.weight", 1, 64},    {"blk.2.ffn_gate.weight", 172, 64},
        {"blk.2.ffn_up.weight", 172, 64},    {"blk.4.ffn_down.weight", 64, 172},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t idx, r, c;
        ck_assert_int_eq(qnpu_model_tensor_find(m, shapes[i].name, &idx), QNPU_OK);
        ck_assert_int_eq(qnpu_model_tensor_shape(m, idx, &r, &c), QNPU_OK);
        ck_assert_msg(r == shapes[i].rows && c == shapes[i].cols, "%s is [%lld x %lld]",
                      shapes[i].name, (long long)r, (long long)c);
    }
    /* F32 tensors are used in place from the mapping */
    size_t owned, mapped;
    ck_assert_int_eq(qnpu_model_memory_usage(m, &owned, &mapped), QNPU_OK);
    ck_assert_uint_eq(mapped, 1185376);
    ck_assert_uint_lt(owned, 65536);
    qnpu_model_free(m);
}
END_TEST

/* Every tensor of the llama2.c checkpoint against the GGUF file: `exact_f32` compares bits for
 * F32 tensors; F16 tensors must equal the float32 value rounded to F16. */
static void compare_with_llama2c(const char *gguf_rel, int half)
{
    if (!qt_have_shared(gguf_rel) || !qt_have_shared(LLAMA2C))
        return;
    qnpu_model *g = load_ok(qt_shared(gguf_rel), NULL);
    qnpu_model *l = load_ok(qt_shared(LLAMA2C), NULL);
    ck_assert_int_eq(qnpu_model_tensor_count(l), 47);
    int64_t n_half = 0;
    for (int64_t i = 0; i < qnpu_model_tensor_count(l); i++) {
        const char *name = qnpu_model_tensor_name(l, i);
        int64_t lr, lc, gr, gc;
        float *want = tensor(l, name, &lr, &lc);
        float *got = tensor(g, name, &gr, &gc);
        ck_assert_msg(lr == gr && lc == gc, "%s: shapes differ", name);
        /* in the F16 file, 2-D weights are F16 and the norms stay F32 */
        int is_half = half && lr > 1;
        n_half += is_half;
        for (int64_t j = 0; j < lr * lc; j++) {
            float w = is_half ? qnpu__f16_to_f32(qnpu__f32_to_f16(want[j])) : want[j];
            ck_assert_msg(memcmp(&w, &got[j], sizeof w) == 0, "%s[%lld]: %.9g vs %.9g", name,
                          (long long)j, got[j], w);
        }
        free(want);
        free(got);
    }
    ck_assert_int_eq(n_half, half ? 1 + 5 * 7 : 0);
    /* output.weight is the converter's copy of the shared classifier */
    float *emb = tensor(l, "token_embd.weight", NULL, NULL);
    float *out = tensor(g, "output.weight", NULL, NULL);
    for (int64_t j = 0; j < 512 * 64; j++) {
        float w = half ? qnpu__f16_to_f32(qnpu__f32_to_f16(emb[j])) : emb[j];
        ck_assert(memcmp(&w, &out[j], sizeof w) == 0);
    }
    free(emb);
    free(out);
    qnpu_model_free(g);
    qnpu_model_free(l);
}

START_TEST(test_f32_equals_llama2c) { compare_with_llama2c(F32_GGUF, 0); }
END_TEST

START_TEST(test_f16_equals_llama2c)
{
    compare_with_llama2c(F16_GGUF, 1);
    if (!qt_have_shared(F16_GGUF))
        return;
    qnpu_model *m = load_ok(qt_shared(F16_GGUF), NULL);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HIDDEN), 64);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_VOCAB), 512);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_MAX_SEQ), 128);
    ck_assert_int_eq(qnpu_model_tensor_count(m), 48);
    qnpu_model_free(m);
}
END_TEST

START_TEST(test_no_mmap)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    qnpu_options *o;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_MMAP, 0), QNPU_OK);
    qnpu_model *a = load_ok(qt_shared(F32_GGUF), o);
    qnpu_model *b = load_ok(qt_shared(F32_GGUF), NULL);
    size_t owned, mapped;
    ck_assert_int_eq(qnpu_model_memory_usage(a, &owned, &mapped), QNPU_OK);
    ck_assert_uint_eq(mapped, 0);
    ck_assert_uint_ge(owned, 1185376);
    ck_assert_int_eq(qnpu_model_tensor_count(a), qnpu_model_tensor_count(b));
    for (int64_t i = 0; i < qnpu_model_tensor_count(a); i++) {
        const char *name = qnpu_model_tensor_name(a, i);
        int64_t r, c;
        float *x = tensor(a, name, &r, &c);
        float *y = tensor(b, name, NULL, NULL);
        ck_assert(memcmp(x, y, (size_t)(r * c) * sizeof *x) == 0);
        free(x);
        free(y);
    }
    qnpu_model_free(a);
    qnpu_model_free(b);
    qnpu_options_free(o);
}
END_TEST

/* The embedded vocabulary must be tok512.bin's, with U+2581 turned back into spaces. */
START_TEST(test_vocab_equals_tok512)
{
    if (!qt_have_shared(F32_GGUF) || !qt_have_shared(TOK512))
        return;
    qnpu_model *m = load_ok(qt_shared(F32_GGUF), NULL);
    const qnpu__vocab *v = m->vocab_emb;
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->n, 512);
    ck_assert_ptr_nonnull(v->types);
    size_t n;
    unsigned char *t = fixture(TOK512, &n);
    size_t o = 4;
    for (int64_t i = 0; i < 512; i++) {
        float score;
        memcpy(&score, t + o, 4);
        uint32_t len = (uint32_t)get_le(t + o + 4, 4);
        const char *piece = (const char *)t + o + 8;
        o += 8 + len;
        ck_assert_msg(score == v->scores[i], "token %lld: score %g vs %g", (long long)i,
                      v->scores[i], score);
        ck_assert_uint_eq(strlen(v->pieces[i]), v->lens[i]);
        ck_assert_msg(!strstr(v->pieces[i], "\xe2\x96\x81"), "token %lld keeps U+2581", (long long)i);
        if (i == 1 || i == 2) {
            /* convert-llama2c-to-ggml renames the control tokens: tok512.bin has "\n<s>\n" and
             * "\n</s>\n", the GGUF file "<s>" and "</s>" (both are never printed) */
            ck_assert(len == (i == 1 ? 5u : 6u) && piece[0] == '\n' && piece[len - 1] == '\n');
            ck_assert_str_eq(v->pieces[i], i == 1 ? "<s>" : "</s>");
            ck_assert_int_eq(v->types[i], 3);
            continue;
        }
        ck_assert_msg(len == v->lens[i] && memcmp(piece, v->pieces[i], len) == 0,
                      "token %lld: '%s' vs '%.*s'", (long long)i, v->pieces[i], (int)len, piece);
        int32_t type = i == 0 ? 2 : i <= 258 ? 6 : 1;   /* unknown, byte, normal */
        ck_assert_int_eq(v->types[i], type);
    }
    ck_assert_uint_eq(o, n);
    ck_assert_str_eq(v->pieces[259], " t");
    ck_assert_str_eq(v->pieces[410], " ");
    free(t);
    qnpu_model_free(m);
}
END_TEST

/* ---- patched copies of the real file ------------------------------------------------------ */

START_TEST(test_unknown_dtype)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    info_loc t = must_info(d, "blk.0.attn_k.weight");
    set_le(d + t.type_off, 8, 4);   /* Q8_0 */
    expect_patched("dtype.gguf", d, n, QNPU_ERR_UNSUPPORTED, "'blk.0.attn_k.weight'", "type 8");
    set_le(d + t.type_off, 999, 4);
    expect_patched("dtype2.gguf", d, n, QNPU_ERR_UNSUPPORTED, "'blk.0.attn_k.weight'", "type 999");
    free(d);
}
END_TEST

START_TEST(test_bad_dims)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    unsigned char *c = malloc(n);
    info_loc t = must_info(d, "blk.1.ffn_gate.weight");
    /* 64 x 2^58 elements overflow 64 bits */
    memcpy(c, d, n);
    set_le(c + t.ne_off + 8, 1ull << 58, 8);
    expect_patched("ne1.gguf", c, n, QNPU_ERR_FORMAT, "'blk.1.ffn_gate.weight'", "overflow");
    memcpy(c, d, n);
    set_le(c + t.ne_off, UINT64_MAX, 8);
    expect_patched("ne0.gguf", c, n, QNPU_ERR_FORMAT, "'blk.1.ffn_gate.weight'", "overflow");
    memcpy(c, d, n);
    set_le(c + t.ne_off, 0, 8);
    expect_patched("ne_zero.gguf", c, n, QNPU_ERR_FORMAT, "'blk.1.ffn_gate.weight'", "zero");
    memcpy(c, d, n);
    set_le(c + t.ndims_off, 5, 4);
    expect_patched("ndims.gguf", c, n, QNPU_ERR_FORMAT, "'blk.1.ffn_gate.weight'", "5 dimensions");
    memcpy(c, d, n);
    set_le(c + t.ndims_off, 0, 4);
    expect_patched("ndims0.gguf", c, n, QNPU_ERR_FORMAT, "'blk.1.ffn_gate.weight'", "0 dimensions");
    /* a plausible but wrong shape is caught by qnpu__model_finish */
    memcpy(c, d, n);
    set_le(c + t.ne_off + 8, 86, 8);
    expect_patched("shape.gguf", c, n, QNPU_ERR_FORMAT, "'blk.1.ffn_gate.weight'", "shape");
    free(c);
    free(d);
}
END_TEST

START_TEST(test_absurd_counts)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    unsigned char *c = malloc(n);
    memcpy(c, d, n);
    set_le(c + 8, 1ull << 40, 8);
    expect_patched("ntensors.gguf", c, n, QNPU_ERR_FORMAT, "1099511627776 tensors", NULL);
    memcpy(c, d, n);
    set_le(c + 16, UINT64_MAX, 8);
    expect_patched("nkv.gguf", c, n, QNPU_ERR_FORMAT, "18446744073709551615 key-value", NULL);
    /* a key length beyond the file */
    memcpy(c, d, n);
    set_le(c + 24, 1ull << 40, 8);
    expect_patched("keylen.gguf", c, n, QNPU_ERR_FORMAT, "key-value pair #0",
                   "longer than the whole file");
    /* a token string length beyond the file */
    memcpy(c, d, n);
    kv_loc k = must_kv(d, "tokenizer.ggml.tokens");
    set_le(c + k.val_off + 12, UINT64_MAX - 3, 8);
    expect_patched("strlen.gguf", c, n, QNPU_ERR_FORMAT, "'tokenizer.ggml.tokens'", "longer than");
    /* a tensor name length beyond the file */
    memcpy(c, d, n);
    info_loc t = must_info(d, "blk.3.attn_q.weight");
    set_le(c + t.start, n + 1, 8);
    expect_patched("namelen.gguf", c, n, QNPU_ERR_FORMAT, "tensor info #", "longer than");
    /* an array element type that does not exist */
    memcpy(c, d, n);
    set_le(c + k.val_off, 13, 4);
    expect_patched("etype.gguf", c, n, QNPU_ERR_FORMAT, "'tokenizer.ggml.tokens'", "type 13");
    /* a value type that does not exist */
    memcpy(c, d, n);
    set_le(c + k.type_off, 77, 4);
    expect_patched("vtype.gguf", c, n, QNPU_ERR_FORMAT, "'tokenizer.ggml.tokens'", "type 77");
    free(c);
    free(d);
}
END_TEST

START_TEST(test_wrong_magic_and_version)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    unsigned char *c = malloc(n);
    /* qnpu_model_load sends a file without "GGUF" to the llama2.c loader, so call the GGUF
     * loader directly to see its own check */
    memcpy(c, d, n);
    c[3] = 'X';
    const char *path = qt_tmpfile("magic.gguf");
    qt_write_file(path, c, n);
    qnpu_model *m = qnpu__calloc(1, sizeof *m);
    ck_assert_ptr_nonnull(m);
    m->path = qnpu__strdup(path);
    ck_assert_int_eq(qnpu__load_gguf(m, NULL), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), path));
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "magic"));
    for (int i = 0; i < m->n_files; i++)
        qnpu__file_close(&m->files[i]);
    qnpu__free(m->path);
    qnpu__free(m);
    expect_fail(path, QNPU_ERR_FORMAT, NULL, NULL);   /* through the llama2.c loader */

    static const uint32_t bad[] = {0, 1, 4, 0x03000000u};
    static const char *const needle[] = {"version 0", "version 1", "version 4", "big-endian"};
    for (int i = 0; i < 4; i++) {
        memcpy(c, d, n);
        set_le(c + 4, bad[i], 4);
        expect_patched("version.gguf", c, n, QNPU_ERR_UNSUPPORTED, needle[i], NULL);
    }
    memcpy(c, d, n);
    set_le(c + 4, 2, 4);   /* v2 has the same layout */
    path = qt_tmpfile("v2.gguf");
    qt_write_file(path, c, n);
    qnpu_model_free(load_ok(path, NULL));
    free(c);
    free(d);
}
END_TEST

START_TEST(test_missing_and_duplicate_tensor)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    unsigned char *c = malloc(n);
    info_loc t = must_info(d, "blk.2.ffn_up.weight");
    memcpy(c, d, n);
    c[t.start + 8 + strlen("blk.2.ffn_u")] = 'q';   /* blk.2.ffn_uq.weight */
    expect_patched("missing.gguf", c, n, QNPU_ERR_FORMAT, "missing tensor 'blk.2.ffn_up.weight'", NULL);
    t = must_info(d, "blk.1.attn_q.weight");
    memcpy(c, d, n);
    c[t.start + 8 + strlen("blk.")] = '0';          /* a second blk.0.attn_q.weight */
    expect_patched("twice.gguf", c, n, QNPU_ERR_FORMAT, "'blk.0.attn_q.weight'", "twice");
    t = must_info(d, "token_embd.weight");
    memcpy(c, d, n);
    c[t.start + 8] = 'T';
    expect_patched("no_embd.gguf", c, n, QNPU_ERR_FORMAT, "missing tensor 'token_embd.weight'", NULL);
    free(c);
    free(d);
}
END_TEST

START_TEST(test_nan_weight)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    info_loc t = must_info(d, "blk.1.attn_q.weight");
    size_t at = data_start(d) + t.offset + 4 * 70;   /* row 1, column 6 */
    set_le(d + at, 0x7fc00000u, 4);
    expect_patched("nan.gguf", d, n, QNPU_ERR_NUMERIC, "'blk.1.attn_q.weight'", "NaN");
    set_le(d + at, 0xff800000u, 4);
    expect_patched("inf.gguf", d, n, QNPU_ERR_NUMERIC, "'blk.1.attn_q.weight'", "Inf");
    /* without model.check_finite the file loads */
    qnpu_options *o;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_CHECK_FINITE, 0), QNPU_OK);
    qnpu_model_free(load_ok(qt_tmpfile("inf.gguf"), o));
    qnpu_options_free(o);
    free(d);

    if (!qt_have_shared(F16_GGUF))
        return;
    d = fixture(F16_GGUF, &n);
    t = must_info(d, "blk.3.ffn_down.weight");
    set_le(d + data_start(d) + t.offset + 2 * 200, 0x7e00, 2);   /* F16 NaN */
    expect_patched("nan16.gguf", d, n, QNPU_ERR_NUMERIC, "'blk.3.ffn_down.weight'", "NaN");
    free(d);
}
END_TEST

START_TEST(test_kv_types)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    unsigned char *c = malloc(n);
    kv_loc k = must_kv(d, "llama.block_count");
    ck_assert_uint_eq(get_le(d + k.type_off, 4), GT_U32);
    memcpy(c, d, n);
    set_le(c + k.type_off, GT_F32, 4);   /* same size, wrong type */
    expect_patched("kvtype.gguf", c, n, QNPU_ERR_FORMAT, "'llama.block_count'", "float32");
    memcpy(c, d, n);
    set_le(c + k.type_off, GT_I32, 4);   /* any integer type will do */
    const char *path = qt_tmpfile("kvint.gguf");
    qt_write_file(path, c, n);
    qnpu_model *m = load_ok(path, NULL);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_LAYERS), 5);
    qnpu_model_free(m);
    /* a negative layer count is rejected by the dimension check */
    memcpy(c, d, n);
    set_le(c + k.type_off, GT_I32, 4);
    set_le(c + k.val_off, (uint32_t)-5, 4);
    expect_patched("kvneg.gguf", c, n, QNPU_ERR_FORMAT, "layer count", NULL);
    /* token ids must be integers */
    k = must_kv(d, "tokenizer.ggml.bos_token_id");
    memcpy(c, d, n);
    set_le(c + k.type_off, GT_F32, 4);
    expect_patched("bostype.gguf", c, n, QNPU_ERR_FORMAT, "'tokenizer.ggml.bos_token_id'", "float32");
    /* a different architecture */
    k = must_kv(d, "general.architecture");
    memcpy(c, d, n);
    memcpy(c + k.val_off + 8, "gpt2x", 5);
    expect_patched("arch.gguf", c, n, QNPU_ERR_UNSUPPORTED, "'gpt2x'", "general.architecture");
    /* a missing required key */
    k = must_kv(d, "llama.feed_forward_length");
    memcpy(c, d, n);
    c[k.start + 8] = 'L';
    expect_patched("nokey.gguf", c, n, QNPU_ERR_FORMAT, "missing key 'llama.feed_forward_length'", NULL);
    /* the scores must be floats */
    k = must_kv(d, "tokenizer.ggml.scores");
    memcpy(c, d, n);
    set_le(c + k.val_off, GT_I32, 4);
    expect_patched("scores.gguf", c, n, QNPU_ERR_FORMAT, "'tokenizer.ggml.scores'", NULL);
    free(c);
    free(d);
}
END_TEST

START_TEST(test_misaligned_offset)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    info_loc t = must_info(d, "blk.0.ffn_norm.weight");
    set_le(d + t.offset_off, t.offset + 4, 8);
    expect_patched("misaligned.gguf", d, n, QNPU_ERR_FORMAT, "'blk.0.ffn_norm.weight'", "alignment");
    set_le(d + t.offset_off, 1ull << 62, 8);
    expect_patched("far.gguf", d, n, QNPU_ERR_IO, "'blk.0.ffn_norm.weight'", "needs bytes");
    free(d);
}
END_TEST

/* ---- truncation --------------------------------------------------------------------------- */

static void expect_truncated(const unsigned char *d, size_t cut, qnpu_status want,
                             const char *needle, const char *needle2)
{
    char name[64];
    snprintf(name, sizeof name, "cut%zu.gguf", cut);
    expect_patched(name, d, cut, want, needle, needle2);
}

START_TEST(test_truncated_sections)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    size_t data = data_start(d);
    kv_loc k = must_kv(d, "tokenizer.ggml.tokens");
    kv_loc eps = must_kv(d, "llama.attention.layer_norm_rms_epsilon");
    info_loc q = must_info(d, "blk.0.attn_q.weight");
    info_loc down = must_info(d, "blk.2.ffn_down.weight");
    info_loc last = must_info(d, "blk.4.ffn_norm.weight");

    expect_truncated(d, 10, QNPU_ERR_IO, "truncated while reading the GGUF header", NULL);
    /* right after the header, the counts cannot fit (the message says so) */
    expect_truncated(d, 24, QNPU_ERR_FORMAT, "19 key-value pairs", "truncated");
    /* inside the KV section */
    expect_truncated(d, k.val_off + 3000, QNPU_ERR_IO,
                     "truncated while reading key 'tokenizer.ggml.tokens'", NULL);
    expect_truncated(d, eps.val_off + 2, QNPU_ERR_IO,
                     "truncated while reading key 'llama.attention.layer_norm_rms_epsilon'", NULL);
    expect_truncated(d, eps.start + 12, QNPU_ERR_IO, "key-value pair #18", NULL);
    /* inside the tensor infos */
    expect_truncated(d, q.start + 4, QNPU_ERR_IO, "the name of tensor info #3", NULL);
    expect_truncated(d, q.ne_off + 3, QNPU_ERR_IO,
                     "truncated while reading tensor info 'blk.0.attn_q.weight'", NULL);
    expect_truncated(d, q.offset_off + 7, QNPU_ERR_IO, "tensor info 'blk.0.attn_q.weight'", NULL);
    /* at the end of the infos, before and at the start of the data section */
    expect_truncated(d, last.offset_off + 8, QNPU_ERR_IO, "tensor 'token_embd.weight' needs bytes",
                     NULL);
    expect_truncated(d, data, QNPU_ERR_IO, "tensor 'token_embd.weight' needs bytes", NULL);
    /* inside the data section */
    char want[128];
    snprintf(want, sizeof want, "tensor 'blk.2.ffn_down.weight' needs bytes %zu..%zu, the file has %zu",
             (size_t)(data + down.offset), (size_t)(data + down.offset + 172 * 64 * 4),
             (size_t)(data + down.offset + 100));
    expect_truncated(d, data + down.offset + 100, QNPU_ERR_IO, want, NULL);
    expect_truncated(d, n - 1, QNPU_ERR_IO, "tensor 'blk.4.ffn_norm.weight' needs bytes", NULL);
    free(d);
}
END_TEST

/* Cut the real file at many offsets: every cut fails cleanly, with a message that names the
 * file and says it is truncated. */
START_TEST(test_truncated_everywhere)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    size_t data = data_start(d);
    const char *path = qt_tmpfile("cut.gguf");
    qt_write_file(path, d, n);
    /* every byte of the header and the first KV, then strides through KVs, infos and data;
     * the file is shortened in place from the end */
    size_t cut = n - 1;
    int count = 0;
    while (1) {
        ck_assert_int_eq(truncate(path, (off_t)cut), 0);
        qnpu_model *m = NULL;
        qnpu_status s = qnpu_model_load(path, NULL, &m);
        const char *e = qnpu_last_error();
        ck_assert_msg(s != QNPU_OK && m == NULL, "cut at %zu loaded", cut);
        ck_assert_msg(strstr(e, path) && strstr(e, "truncated"), "cut at %zu: %s", cut, e);
        /* until the header's counts fit, the count check may answer first (FORMAT) */
        if (cut >= 24 + 48 * 24)
            ck_assert_msg(s == QNPU_ERR_IO, "cut at %zu: status %d: %s", cut, (int)s, e);
        count++;
        if (cut == 0)
            break;
        size_t step = cut > data + 1024 ? 4099 : cut > 200 ? 7 : 1;
        cut = cut > step ? cut - step : 0;
    }
    ck_assert_int_gt(count, 2000);
    free(d);
}
END_TEST

/* Overwrite random bytes of the header, KV section and tensor infos (patched in place and
 * restored): no crash, no leak (under ASan), and a failure always leaves a message. */
START_TEST(test_random_corruption)
{
    if (!qt_have_shared(F32_GGUF))
        return;
    size_t n;
    unsigned char *d = fixture(F32_GGUF, &n);
    size_t data = data_start(d);
    const char *path = qt_tmpfile("fuzz.gguf");
    qt_write_file(path, d, n);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int failed = 0;
    for (int it = 0; it < 1500; it++) {
        size_t pos[4];
        int k = 1 + it % 4;
        for (int j = 0; j < k; j++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            /* favour the header and the tensor infos, where the counts and sizes live */
            size_t span = j % 2 ? data : 64;
            pos[j] = (size_t)(rng >> 33) % span;
            unsigned char b = (unsigned char)(rng >> 17);
            fseek(f, (long)pos[j], SEEK_SET);
            fputc(b, f);
        }
        fflush(f);
        qnpu_model *m = NULL;
        qnpu_status s = qnpu_model_load(path, NULL, &m);
        if (s == QNPU_OK)
            qnpu_model_free(m);
        else
            ck_assert_msg(qnpu_last_error()[0] != '\0' && m == NULL, "iteration %d", it);
        failed += s != QNPU_OK;
        for (int j = 0; j < k; j++) {
            fseek(f, (long)pos[j], SEEK_SET);
            fputc(d[pos[j]], f);
        }
    }
    fclose(f);
    ck_assert_int_gt(failed, 100);
    free(d);
}
END_TEST

/* ---- synthetic files ---------------------------------------------------------------------- */

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_le(buf *b, uint64_t v, int n)
{
    unsigned char t[8];
    set_le(t, v, n);
    put(b, t, (size_t)n);
}

static void put_str(buf *b, const char *s)
{
    put_le(b, strlen(s), 8);
    put(b, s, strlen(s));
}

static void put_f32(buf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_le(b, u, 4);
}

/* A key and its type; the caller writes the value. */
static void put_key(buf *b, int *n_kv, const char *key, uint32_t type)
{
    put_str(b, key);
    put_le(b, type, 4);
    (*n_kv)++;
}

typedef struct tiny {
    uint32_t version;      /* 0 = 3 */
    const char *arch;      /* NULL = "llama" */
    int int_type;          /* value type of the integer hyper-parameters (0 = uint32) */
    const char *omit_key;  /* leave this key out */
    const char *str_key;   /* write this integer key as a string */
    int dtype;             /* of the matrices: QNPU__F32, QNPU__F16, QNPU__BF16 */
    int bias, untied, no_kv_heads, extras;
    int64_t alignment;     /* 0 = key absent (32) */
} tiny;

enum { T_DIM = 16, T_FF = 24, T_LAYERS = 2, T_HEADS = 4, T_KV = 2, T_HD = 4, T_VOCAB = 8, T_CTX = 32 };

typedef struct tiny_tensor {
    char name[48];
    int n_dims;
    uint64_t ne[3];
    int dtype;
} tiny_tensor;

static float tval(int t, int64_t i)
{
    return 0.25f * sinf(0.37f * (float)i + (float)t) + (t % 3 == 0 ? 1.0f : 0.0f);
}

/* The float a tensor element is stored as, after rounding to its dtype. */
static float tstored(int dtype, float v)
{
    if (dtype == QNPU__F16)
        return qnpu__f16_to_f32(qnpu__f32_to_f16(v));
    if (dtype == QNPU__BF16)
        return qnpu__bf16_to_f32(qnpu__f32_to_bf16(v));
    return v;
}

static int tiny_tensors(const tiny *o, tiny_tensor *ts)
{
    int n = 0, kv = o->no_kv_heads ? T_HEADS : T_KV;
#define ADD(nd, e0, e1, e2, dt, ...)                                                             \
    do {                                                                                         \
        snprintf(ts[n].name, sizeof ts[n].name, __VA_ARGS__);                                    \
        ts[n].n_dims = nd;                                                                       \
        ts[n].ne[0] = e0; ts[n].ne[1] = e1; ts[n].ne[2] = e2;                                    \
        ts[n].dtype = dt;                                                                        \
        n++;                                                                                     \
    } while (0)
    ADD(2, T_DIM, T_VOCAB, 1, o->dtype, "token_embd.weight");
    ADD(1, T_DIM, 1, 1, QNPU__F32, "output_norm.weight");
    if (o->untied)
        ADD(2, T_DIM, T_VOCAB, 1, o->dtype, "output.weight");
    for (int l = 0; l < T_LAYERS; l++) {
        ADD(1, T_DIM, 1, 1, QNPU__F32, "blk.%d.attn_norm.weight", l);
        ADD(2, T_DIM, T_HEADS * T_HD, 1, o->dtype, "blk.%d.attn_q.weight", l);
        ADD(2, T_DIM, kv * T_HD, 1, o->dtype, "blk.%d.attn_k.weight", l);
        ADD(2, T_DIM, kv * T_HD, 1, o->dtype, "blk.%d.attn_v.weight", l);
        if (o->bias) {
            ADD(1, T_HEADS * T_HD, 1, 1, QNPU__F32, "blk.%d.attn_q.bias", l);
            ADD(1, kv * T_HD, 1, 1, QNPU__F32, "blk.%d.attn_k.bias", l);
            ADD(1, kv * T_HD, 1, 1, QNPU__F32, "blk.%d.attn_v.bias", l);
        }
        ADD(2, T_HEADS * T_HD, T_DIM, 1, o->dtype, "blk.%d.attn_output.weight", l);
        ADD(1, T_DIM, 1, 1, QNPU__F32, "blk.%d.ffn_norm.weight", l);
        ADD(2, T_DIM, T_FF, 1, o->dtype, "blk.%d.ffn_gate.weight", l);
        ADD(2, T_DIM, T_FF, 1, o->dtype, "blk.%d.ffn_up.weight", l);
        ADD(2, T_FF, T_DIM, 1, o->dtype, "blk.%d.ffn_down.weight", l);
    }
    if (o->extras) {
        ADD(1, T_HD / 2, 1, 1, QNPU__F32, "rope_freqs.weight");
        ADD(3, 4, 3, 2, o->dtype, "extra.cube");
    }
#undef ADD
    return n;
}

static void put_int_kv(buf *b, int *n_kv, const tiny *o, const char *arch, const char *suffix,
                       int64_t v)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (o->omit_key && strcmp(o->omit_key, key) == 0)
        return;
    if (o->str_key && strcmp(o->str_key, key) == 0) {
        char text[32];
        snprintf(text, sizeof text, "%lld", (long long)v);
        put_key(b, n_kv, key, GT_STR);
        put_str(b, text);
        return;
    }
    int t = o->int_type ? o->int_type : GT_U32;
    put_key(b, n_kv, key, (uint32_t)t);
    put_le(b, (uint64_t)v, (int)scalar_bytes((uint32_t)t));
}

static const char *const tiny_pieces[T_VOCAB] = {
    "<unk>", "<s>", "</s>", "\xe2\x96\x81" "a", "b", "\xe2\x96\x81\xe2\x96\x81", "a\xe2\x96\x81" "b",
    "x\xe2\x96",
};

/* Keys of every value type, nested arrays included: the loader must walk over all of them. */
static void put_extra_kvs(buf *b, int *n_kv)
{
    for (uint32_t t = 0; t < 13; t++) {
        if (t == GT_STR || t == GT_ARR)
            continue;
        char key[32];
        snprintf(key, sizeof key, "test.scalar.%u", t);
        put_key(b, n_kv, key, t);
        put_le(b, 0x0102030405060708ull, (int)scalar_bytes(t));
    }
    put_key(b, n_kv, "test.array.u16", GT_ARR);
    put_le(b, GT_U16, 4);
    put_le(b, 3, 8);
    put_le(b, 0xffffffffffffull, 6);
    put_key(b, n_kv, "test.array.empty", GT_ARR);
    put_le(b, GT_F64, 4);
    put_le(b, 0, 8);
    put_key(b, n_kv, "test.array.nested", GT_ARR);   /* [["x", "yz"], []] */
    put_le(b, GT_ARR, 4);
    put_le(b, 2, 8);
    put_le(b, GT_STR, 4);
    put_le(b, 2, 8);
    put_str(b, "x");
    put_str(b, "yz");
    put_le(b, GT_BOOL, 4);
    put_le(b, 0, 8);
    put_key(b, n_kv, "test.array.deep", GT_ARR);     /* [[[int64 7]]] */
    put_le(b, GT_ARR, 4);
    put_le(b, 1, 8);
    put_le(b, GT_ARR, 4);
    put_le(b, 1, 8);
    put_le(b, GT_I64, 4);
    put_le(b, 1, 8);
    put_le(b, 7, 8);
}

static void put_kvs(buf *b, int *n_kv, const tiny *o)
{
    const char *arch = o->arch ? o->arch : "llama";
    put_key(b, n_kv, "general.architecture", GT_STR);
    put_str(b, arch);
    if (o->extras)
        put_extra_kvs(b, n_kv);
    if (o->alignment) {
        put_key(b, n_kv, "general.alignment", GT_U32);
        put_le(b, (uint64_t)o->alignment, 4);
    }
    put_int_kv(b, n_kv, o, arch, "embedding_length", T_DIM);
    put_int_kv(b, n_kv, o, arch, "feed_forward_length", T_FF);
    put_int_kv(b, n_kv, o, arch, "block_count", T_LAYERS);
    put_int_kv(b, n_kv, o, arch, "attention.head_count", T_HEADS);
    if (!o->no_kv_heads)
        put_int_kv(b, n_kv, o, arch, "attention.head_count_kv", T_KV);
    put_int_kv(b, n_kv, o, arch, "context_length", T_CTX);
    char key[96];
    if (strcmp(arch, "qwen2") == 0) {
        snprintf(key, sizeof key, "%s.rope.freq_base", arch);
        put_key(b, n_kv, key, GT_F64);
        double theta = 1e6;
        uint64_t u;
        memcpy(&u, &theta, 8);
        put_le(b, u, 8);
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    put_key(b, n_kv, key, GT_F32);
    put_f32(b, 1e-6f);

    put_key(b, n_kv, "tokenizer.ggml.model", GT_STR);
    put_str(b, "llama");
    put_key(b, n_kv, "tokenizer.ggml.tokens", GT_ARR);
    put_le(b, GT_STR, 4);
    put_le(b, T_VOCAB, 8);
    for (int i = 0; i < T_VOCAB; i++)
        put_str(b, tiny_pieces[i]);
    put_key(b, n_kv, "tokenizer.ggml.scores", GT_ARR);
    put_le(b, GT_F32, 4);
    put_le(b, T_VOCAB, 8);
    for (int i = 0; i < T_VOCAB; i++)
        put_f32(b, -0.5f * (float)i);
    put_key(b, n_kv, "tokenizer.ggml.token_type", GT_ARR);
    put_le(b, GT_I32, 4);
    put_le(b, T_VOCAB, 8);
    for (int i = 0; i < T_VOCAB; i++)
        put_le(b, i == 0 ? 2 : i < 3 ? 3 : 1, 4);
    put_key(b, n_kv, "tokenizer.ggml.bos_token_id", GT_U32);
    put_le(b, 1, 4);
    put_key(b, n_kv, "tokenizer.ggml.eos_token_id", GT_I64);
    put_le(b, 2, 8);
}

static size_t elem_size(int dtype)
{
    return dtype == QNPU__F32 ? 4 : 2;
}

static uint64_t n_elems(const tiny_tensor *t)
{
    uint64_t e = 1;
    for (int d = 0; d < t->n_dims; d++)
        e *= t->ne[d];
    return e;
}

/* Write the tiny model described by `o` into a temporary file; return its path. */
static const char *write_tiny(const tiny *o, const char *name)
{
    buf b = {0};
    tiny_tensor ts[64];
    int n_t = tiny_tensors(o, ts), n_kv = 0;
    uint64_t align = o->alignment > 0 ? (uint64_t)o->alignment : 32;
    put(&b, "GGUF", 4);
    put_le(&b, o->version ? o->version : 3, 4);
    put_le(&b, (uint64_t)n_t, 8);
    put_le(&b, 0, 8);   /* kv count, patched below */
    put_kvs(&b, &n_kv, o);
    set_le(b.p + 16, (uint64_t)n_kv, 8);
    uint64_t off = 0;
    for (int i = 0; i < n_t; i++) {
        put_str(&b, ts[i].name);
        put_le(&b, (uint64_t)ts[i].n_dims, 4);
        for (int d = 0; d < ts[i].n_dims; d++)
            put_le(&b, ts[i].ne[d], 8);
        put_le(&b, (uint64_t)ts[i].dtype, 4);
        put_le(&b, off, 8);
        off += n_elems(&ts[i]) * elem_size(ts[i].dtype);
        off = (off + align - 1) / align * align;
    }
    while (b.n % align)
        put_le(&b, 0, 1);
    size_t start = b.n;
    for (int i = 0; i < n_t; i++) {
        while ((b.n - start) % align)
            put_le(&b, 0, 1);
        for (uint64_t j = 0; j < n_elems(&ts[i]); j++) {
            float v = tval(i, (int64_t)j);
            if (ts[i].dtype == QNPU__F32)
                put_f32(&b, v);
            else
                put_le(&b, ts[i].dtype == QNPU__F16 ? qnpu__f32_to_f16(v) : qnpu__f32_to_bf16(v), 2);
        }
    }
    const char *path = qt_tmpfile(name);
    qt_write_file(path, b.p, b.n);
    free(b.p);
    return path;
}

/* Load a tiny model and check every tensor's shape and values against the generator. */
static qnpu_model *load_tiny(const tiny *o, const char *name)
{
    qnpu_model *m = load_ok(write_tiny(o, name), NULL);
    tiny_tensor ts[64];
    int n_t = tiny_tensors(o, ts);
    ck_assert_int_eq(qnpu_model_tensor_count(m), n_t);
    for (int i = 0; i < n_t; i++) {
        int64_t r, c;
        float *d = tensor(m, ts[i].name, &r, &c);
        ck_assert_int_eq(c, (int64_t)ts[i].ne[0]);
        ck_assert_int_eq(r * c, (int64_t)n_elems(&ts[i]));
        for (int64_t j = 0; j < r * c; j++)
            ck_assert_msg(d[j] == tstored(ts[i].dtype, tval(i, j)), "%s[%lld]", ts[i].name,
                          (long long)j);
        free(d);
    }
    return m;
}

START_TEST(test_tiny_llama)
{
    tiny o = {.extras = 1};
    qnpu_model *m = load_tiny(&o, "tiny.gguf");
    ck_assert_str_eq(qnpu_model_arch(m), "llama");
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HIDDEN), T_DIM);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_FFN), T_FF);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_LAYERS), T_LAYERS);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HEADS), T_HEADS);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_KV_HEADS), T_KV);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HEAD_DIM), T_HD);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_VOCAB), T_VOCAB);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_MAX_SEQ), T_CTX);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_TIED), 1);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_ROPE_ORDER), 0);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_QKV_BIAS), 0);
    double theta, eps;
    qnpu_model_get_hparam(m, QNPU_HP_ROPE_THETA, &theta);
    qnpu_model_get_hparam(m, QNPU_HP_RMS_EPS, &eps);
    ck_assert(theta == 10000.0);
    ck_assert(eps == (double)1e-6f);
    int64_t i, r, c;
    ck_assert_int_eq(qnpu_model_tensor_find(m, "extra.cube", &i), QNPU_OK);
    qnpu_model_tensor_shape(m, i, &r, &c);
    ck_assert(r == 6 && c == 4);   /* ne = [4, 3, 2] flattens to [6][4] */

    const qnpu__vocab *v = m->vocab_emb;
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->n, T_VOCAB);
    static const char *const want[T_VOCAB] = {"<unk>", "<s>", "</s>", " a",
                                              "b",     "  ",  "a b",  "x\xe2\x96"};
    for (int k = 0; k < T_VOCAB; k++) {
        ck_assert_str_eq(v->pieces[k], want[k]);
        ck_assert_uint_eq(v->lens[k], strlen(want[k]));
        ck_assert(v->scores[k] == -0.5f * (float)k);
        ck_assert_int_eq(v->types[k], k == 0 ? 2 : k < 3 ? 3 : 1);
    }
    qnpu_model_free(m);
}
END_TEST

START_TEST(test_tiny_int_types)
{
    static const int types[] = {GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_U64, GT_I64};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        tiny o = {.int_type = types[k]};
        qnpu_model *m = load_tiny(&o, "ints.gguf");
        ck_assert_int_eq(dim_of(m, QNPU_DIM_FFN), T_FF);
        ck_assert_int_eq(dim_of(m, QNPU_DIM_KV_HEADS), T_KV);
        qnpu_model_free(m);
    }
}
END_TEST

START_TEST(test_tiny_dtypes)
{
    static const int dtypes[] = {QNPU__F16, QNPU__BF16};
    for (int k = 0; k < 2; k++) {
        tiny o = {.dtype = dtypes[k], .untied = 1, .extras = 1};
        qnpu_model *m = load_tiny(&o, "dtypes.gguf");
        ck_assert_int_eq(dim_of(m, QNPU_DIM_TIED), 0);
        qnpu_model_free(m);
    }
}
END_TEST

START_TEST(test_tiny_versions)
{
    tiny o = {.version = 2};
    qnpu_model_free(load_tiny(&o, "v2.gguf"));
    o.version = 1;
    expect_fail(write_tiny(&o, "v1.gguf"), QNPU_ERR_UNSUPPORTED, "version 1", NULL);
    o.version = 4;
    expect_fail(write_tiny(&o, "v4.gguf"), QNPU_ERR_UNSUPPORTED, "version 4", NULL);
}
END_TEST

START_TEST(test_tiny_qwen2)
{
    tiny o = {.arch = "qwen2", .bias = 1, .untied = 1};
    qnpu_model *m = load_tiny(&o, "qwen2.gguf");
    ck_assert_str_eq(qnpu_model_arch(m), "qwen2");
    ck_assert_int_eq(dim_of(m, QNPU_DIM_QKV_BIAS), 1);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_ROPE_ORDER), 1);
    double theta;
    qnpu_model_get_hparam(m, QNPU_HP_ROPE_THETA, &theta);
    ck_assert(theta == 1e6);
    qnpu_model_free(m);
    o.bias = 0;
    m = load_tiny(&o, "qwen2nb.gguf");
    ck_assert_int_eq(dim_of(m, QNPU_DIM_QKV_BIAS), 0);
    qnpu_model_free(m);
    /* biases in a llama file are registered but not used */
    tiny l = {.bias = 1};
    m = load_tiny(&l, "llamab.gguf");
    ck_assert_int_eq(dim_of(m, QNPU_DIM_QKV_BIAS), 0);
    qnpu_model_free(m);
}
END_TEST

START_TEST(test_tiny_bad_keys)
{
    tiny o = {.arch = "gpt2"};
    expect_fail(write_tiny(&o, "gpt2.gguf"), QNPU_ERR_UNSUPPORTED, "'gpt2'", NULL);
    tiny s = {.str_key = "llama.attention.head_count"};
    expect_fail(write_tiny(&s, "strkey.gguf"), QNPU_ERR_FORMAT, "'llama.attention.head_count'",
                "is a string, expected an integer");
    tiny mk = {.omit_key = "llama.block_count"};
    expect_fail(write_tiny(&mk, "nokey.gguf"), QNPU_ERR_FORMAT, "missing key 'llama.block_count'",
                NULL);
    tiny mc = {.omit_key = "llama.context_length"};
    expect_fail(write_tiny(&mc, "noctx.gguf"), QNPU_ERR_FORMAT,
                "missing key 'llama.context_length'", NULL);
    /* head_count_kv defaults to head_count */
    tiny kv = {.no_kv_heads = 1};
    qnpu_model *m = load_tiny(&kv, "nokv.gguf");
    ck_assert_int_eq(dim_of(m, QNPU_DIM_KV_HEADS), T_HEADS);
    qnpu_model_free(m);
}
END_TEST

START_TEST(test_tiny_alignment)
{
    tiny o = {.alignment = 64};
    qnpu_model_free(load_tiny(&o, "align64.gguf"));
    o.alignment = 1;   /* F32 data at odd addresses is copied, still equal */
    qnpu_model_free(load_tiny(&o, "align1.gguf"));
    o.alignment = 48;
    expect_fail(write_tiny(&o, "align48.gguf"), QNPU_ERR_FORMAT, "general.alignment", NULL);
}
END_TEST

Suite *qnpu_gguf_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *real = tcase_create("real");
    tcase_set_timeout(real, 60);
    tcase_add_test(real, test_f32_dims);
    tcase_add_test(real, test_f32_equals_llama2c);
    tcase_add_test(real, test_f16_equals_llama2c);
    tcase_add_test(real, test_no_mmap);
    tcase_add_test(real, test_vocab_equals_tok512);
    suite_add_tcase(s, real);

    TCase *bad = tcase_create("bad");
    tcase_set_timeout(bad, 60);
    tcase_add_test(bad, test_unknown_dtype);
    tcase_add_test(bad, test_bad_dims);
    tcase_add_test(bad, test_absurd_counts);
    tcase_add_test(bad, test_wrong_magic_and_version);
    tcase_add_test(bad, test_missing_and_duplicate_tensor);
    tcase_add_test(bad, test_nan_weight);
    tcase_add_test(bad, test_kv_types);
    tcase_add_test(bad, test_misaligned_offset);
    tcase_add_test(bad, test_truncated_sections);
    tcase_add_test(bad, test_truncated_everywhere);
    tcase_add_test(bad, test_random_corruption);
    suite_add_tcase(s, bad);

    TCase *syn = tcase_create("synthetic");
    tcase_add_test(syn, test_tiny_llama);
    tcase_add_test(syn, test_tiny_int_types);
    tcase_add_test(syn, test_tiny_dtypes);
    tcase_add_test(syn, test_tiny_versions);
    tcase_add_test(syn, test_tiny_qwen2);
    tcase_add_test(syn, test_tiny_bad_keys);
    tcase_add_test(syn, test_tiny_alignment);
    suite_add_tcase(s, syn);
    return s;
}
