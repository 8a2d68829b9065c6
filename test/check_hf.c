/* check_hf.c — tests of the Hugging Face directory loader (lib/model/hf.c) and of the JSON
 * reader it is built on (lib/model/json.c).
 *
 * The real fixture is ../shared/models/stories260K-hf, compared tensor by tensor with the
 * llama2.c checkpoint of the same weights (Q/K rows differ by the rotate-half permutation).
 * Everything else is a tiny synthetic model (dim 8, ffn 12, 2 layers, 2 heads, 1 kv head,
 * vocab 16) written from C into a fresh directory: config.json plus model.safetensors, or two
 * shards and model.safetensors.index.json, then damaged in one specific way per error test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "model/json.h"
#include "testutil.h"

/* ======================================================================================== */
/* The synthetic model                                                                      */
/* ======================================================================================== */

enum { S_DIM = 8, S_FFN = 12, S_LAYERS = 2, S_HEADS = 2, S_HD = 4, S_VOCAB = 16, S_MAXT = 64 };

typedef struct syn_tensor {
    char name[80];         /* HF name                                           */
    char canon[64];        /* expected canonical name, "" when the loader skips it */
    int rank;
    int64_t rows, cols;    /* rank 1: rows = 1                                   */
    float *vals;
    const char *dtype;     /* per-tensor dtype, NULL = the file's               */
    int shard;             /* 0 or 1 in the sharded layout                       */
    int omit;              /* written nowhere                                    */
    int index_only;        /* listed in the index, absent from its shard          */
    int bad_shape;         /* header shape has one column too many               */
    int rank3;             /* header shape gets a trailing 1                     */
} syn_tensor;

typedef struct syn_model {
    int qwen2, tied, kv_heads;
    syn_tensor t[S_MAXT];
    int n;
} syn_model;

static uint32_t lcg(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

static syn_tensor *syn_add(syn_model *sm, const char *name, const char *canon, int rank,
                           int64_t rows, int64_t cols, uint32_t *seed)
{
    ck_assert_int_lt(sm->n, S_MAXT);
    syn_tensor *t = &sm->t[sm->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->canon, sizeof t->canon, "%s", canon);
    t->rank = rank;
    t->rows = rows;
    t->cols = cols;
    t->vals = calloc((size_t)(rows * cols), sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++)
        t->vals[i] = ((float)lcg(seed) / (float)(1u << 24) - 0.5f) * 0.75f;
    t->shard = sm->n > 14; /* the first 14 tensors go to shard 0 */
    return t;
}

static void syn_layer(syn_model *sm, int l, uint32_t *seed)
{
    static const struct { const char *hf, *canon; int what; } parts[] = {
        {"input_layernorm.weight", "attn_norm.weight", 0},
        {"self_attn.q_proj.weight", "attn_q.weight", 1},
        {"self_attn.k_proj.weight", "attn_k.weight", 2},
        {"self_attn.v_proj.weight", "attn_v.weight", 2},
        {"self_attn.o_proj.weight", "attn_output.weight", 3},
        {"post_attention_layernorm.weight", "ffn_norm.weight", 0},
        {"mlp.gate_proj.weight", "ffn_gate.weight", 4},
        {"mlp.up_proj.weight", "ffn_up.weight", 4},
        {"mlp.down_proj.weight", "ffn_down.weight", 5},
        {"self_attn.q_proj.bias", "attn_q.bias", 6},
        {"self_attn.k_proj.bias", "attn_k.bias", 7},
        {"self_attn.v_proj.bias", "attn_v.bias", 7},
    };
    int64_t q = S_HEADS * S_HD, kv = sm->kv_heads * S_HD;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char hf[80], canon[64];
        if (parts[i].what >= 6 && !sm->qwen2)
            break;
        snprintf(hf, sizeof hf, "model.layers.%d.%s", l, parts[i].hf);
        snprintf(canon, sizeof canon, "blk.%d.%s", l, parts[i].canon);
        switch (parts[i].what) {
        case 0: syn_add(sm, hf, canon, 1, 1, S_DIM, seed); break;
        case 1: syn_add(sm, hf, canon, 2, q, S_DIM, seed); break;
        case 2: syn_add(sm, hf, canon, 2, kv, S_DIM, seed); break;
        case 3: syn_add(sm, hf, canon, 2, S_DIM, q, seed); break;
        case 4: syn_add(sm, hf, canon, 2, S_FFN, S_DIM, seed); break;
        case 5: syn_add(sm, hf, canon, 2, S_DIM, S_FFN, seed); break;
        case 6: syn_add(sm, hf, canon, 1, 1, q, seed); break;
        default: syn_add(sm, hf, canon, 1, 1, kv, seed); break;
        }
    }
}

/* A complete model; `tied` drops lm_head. Two extra tensors the loader must ignore. */
static void syn_init(syn_model *sm, int qwen2, int tied, int kv_heads)
{
    uint32_t seed = 12345u + (uint32_t)(qwen2 * 7 + tied * 3 + kv_heads);
    memset(sm, 0, sizeof *sm);
    sm->qwen2 = qwen2;
    sm->tied = tied;
    sm->kv_heads = kv_heads;
    syn_add(sm, "model.embed_tokens.weight", "token_embd.weight", 2, S_VOCAB, S_DIM, &seed);
    for (int l = 0; l < S_LAYERS; l++)
        syn_layer(sm, l, &seed);
    syn_add(sm, "model.layers.0.self_attn.rotary_emb.inv_freq", "", 1, 1, S_HD / 2, &seed)->dtype =
        "F32";
    syn_add(sm, "model.extra_counter", "", 1, 1, 2, &seed)->dtype = "I64";
    syn_add(sm, "model.norm.weight", "output_norm.weight", 1, 1, S_DIM, &seed);
    if (!tied)
        syn_add(sm, "lm_head.weight", "output.weight", 2, S_VOCAB, S_DIM, &seed);
}

static void syn_free(syn_model *sm)
{
    for (int i = 0; i < sm->n; i++)
        free(sm->t[i].vals);
}

static syn_tensor *syn_find(syn_model *sm, const char *name)
{
    for (int i = 0; i < sm->n; i++)
        if (strcmp(sm->t[i].name, name) == 0)
            return &sm->t[i];
    ck_abort_msg("no synthetic tensor %s", name);
    return NULL;
}

/* ======================================================================================== */
/* Writing the directory                                                                    */
/* ======================================================================================== */

static size_t dtype_size(const char *dt)
{
    if (strcmp(dt, "F16") == 0 || strcmp(dt, "BF16") == 0)
        return 2;
    if (strcmp(dt, "I8") == 0)
        return 1;
    if (strcmp(dt, "I64") == 0 || strcmp(dt, "F64") == 0)
        return 8;
    return 4;
}

/* The value the loader must return for x stored as dtype dt. */
static float stored(float x, const char *dt)
{
    if (strcmp(dt, "F16") == 0)
        return qnpu__f16_to_f32(qnpu__f32_to_f16(x));
    if (strcmp(dt, "BF16") == 0)
        return qnpu__bf16_to_f32(qnpu__f32_to_bf16(x));
    return x;
}

static void put_values(qt_buf *d, const syn_tensor *t, const char *dt)
{
    for (int64_t i = 0; i < t->rows * t->cols; i++) {
        unsigned char b[8] = {0};
        if (strcmp(dt, "F32") == 0) {
            memcpy(b, &t->vals[i], 4);
        } else if (strcmp(dt, "F16") == 0 || strcmp(dt, "BF16") == 0) {
            uint16_t h = dt[0] == 'F' ? qnpu__f32_to_f16(t->vals[i]) : qnpu__f32_to_bf16(t->vals[i]);
            b[0] = (unsigned char)h;
            b[1] = (unsigned char)(h >> 8);
        }
        qt_buf_bytes(d, b, dtype_size(dt));
    }
}

static void put_shape(qt_buf *h, const syn_tensor *t)
{
    if (t->rank == 1)
        qt_buf_printf(h, "[%lld]", (long long)t->cols);
    else
        qt_buf_printf(h, "[%lld, %lld%s]", (long long)t->rows, (long long)(t->cols + t->bad_shape),
                  t->rank3 ? ", 1" : "");
}

/* A safetensors image of the tensors of `shard` (-1: all); *hlen gets the header length. */
static unsigned char *st_image(const syn_model *sm, int shard, const char *dtype, size_t *len,
                               size_t *hlen)
{
    qt_buf h = {0}, d = {0};
    qt_buf_printf(&h, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (int i = 0; i < sm->n; i++) {
        const syn_tensor *t = &sm->t[i];
        if (t->omit || t->index_only || (shard >= 0 && t->shard != shard))
            continue;
        const char *dt = t->dtype ? t->dtype : dtype;
        size_t begin = d.len;
        put_values(&d, t, dt);
        qt_buf_printf(&h, ",\n \"%s\": {\"dtype\": \"%s\", \"shape\": ", t->name, dt);
        put_shape(&h, t);
        qt_buf_printf(&h, ", \"data_offsets\": [%zu, %zu]}", begin, d.len);
    }
    qt_buf_printf(&h, "}");
    while (h.len % 8)
        qt_buf_bytes(&h, " ", 1);
    *hlen = h.len;
    *len = 8 + h.len + d.len;
    unsigned char *img = malloc(*len);
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    memcpy(img + 8, h.p, h.len);
    if (d.len)
        memcpy(img + 8 + h.len, d.p, d.len);
    free(h.p);
    free(d.p);
    return img;
}

/* A fresh directory under the test's temporary directory. */
static void make_dir(char *dir, size_t cap, const char *name)
{
    snprintf(dir, cap, "%s", qt_tmpfile(name));
    ck_assert_msg(mkdir(dir, 0755) == 0, "mkdir %s", dir);
}

static void put_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    qt_write_file(path, data, len);
}

/* The standard config.json for `sm`, one key per line (so tests can edit single keys). */
static void config_text(const syn_model *sm, qt_buf *c)
{
    qt_buf_printf(c, "{\n  \"architectures\": [\"%s\"],\n",
              sm->qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
    qt_buf_printf(c, "  \"model_type\": \"%s\",\n", sm->qwen2 ? "qwen2" : "llama");
    qt_buf_printf(c, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n", S_DIM, S_FFN);
    qt_buf_printf(c, "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n", S_LAYERS, S_HEADS);
    qt_buf_printf(c, "  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n", sm->kv_heads, S_VOCAB);
    qt_buf_printf(c, "  \"max_position_embeddings\": 32,\n  \"rms_norm_eps\": 1e-05,\n");
    qt_buf_printf(c, "  \"rope_theta\": %s,\n", sm->qwen2 ? "1000000.0" : "10000.0");
    qt_buf_printf(c, "  \"tie_word_embeddings\": %s,\n", sm->tied ? "true" : "false");
    qt_buf_printf(c, "  \"hidden_act\": \"silu\",\n  \"rope_scaling\": null,\n");
    qt_buf_printf(c, "  \"bos_token_id\": %s,\n", sm->qwen2 ? "5" : "1");
    qt_buf_printf(c, "  \"eos_token_id\": %s,\n", sm->qwen2 ? "[7, 9]" : "2");
    qt_buf_printf(c, "  \"torch_dtype\": \"float32\"\n}\n");
}

/* Replace the line holding "key" by `line` ("" deletes it). */
static void config_edit(qt_buf *c, const char *key, const char *line)
{
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    char *at = strstr(c->p, quoted);
    ck_assert_ptr_nonnull(at);
    while (at > c->p && at[-1] != '\n')
        at--;
    char *end = strchr(at, '\n') + 1;
    qt_buf out = {0};
    qt_buf_bytes(&out, c->p, (size_t)(at - c->p));
    qt_buf_printf(&out, "%s", line);
    qt_buf_printf(&out, "%s", end);
    free(c->p);
    *c = out;
}

static void write_config(const char *dir, const qt_buf *c)
{
    put_file(dir, "config.json", c->p, c->len);
}

static void shard_name(char *buf, size_t cap, int shard)
{
    snprintf(buf, cap, "model-%05d-of-00002.safetensors", shard + 1);
}

/* model.safetensors.index.json naming each tensor's shard. */
static void write_index(const char *dir, const syn_model *sm)
{
    qt_buf ix = {0};
    qt_buf_printf(&ix, "{\n  \"metadata\": {\"total_size\": 1234},\n  \"weight_map\": {");
    int first = 1;
    for (int i = 0; i < sm->n; i++) {
        char file[64];
        if (sm->t[i].omit)
            continue;
        shard_name(file, sizeof file, sm->t[i].shard);
        qt_buf_printf(&ix, "%s\n    \"%s\": \"%s\"", first ? "" : ",", sm->t[i].name, file);
        first = 0;
    }
    qt_buf_printf(&ix, "\n  }\n}\n");
    put_file(dir, "model.safetensors.index.json", ix.p, ix.len);
    free(ix.p);
}

static void write_weights(const char *dir, const syn_model *sm, const char *dtype, int sharded)
{
    size_t len, hlen;
    if (!sharded) {
        unsigned char *img = st_image(sm, -1, dtype, &len, &hlen);
        put_file(dir, "model.safetensors", img, len);
        free(img);
        return;
    }
    for (int s = 0; s < 2; s++) {
        char file[64];
        shard_name(file, sizeof file, s);
        unsigned char *img = st_image(sm, s, dtype, &len, &hlen);
        put_file(dir, file, img, len);
        free(img);
    }
    write_index(dir, sm);
}

/* A whole directory for `sm` in `dtype`; its path goes to dir. */
static void write_model(char *dir, size_t cap, const char *name, const syn_model *sm,
                        const char *dtype, int sharded)
{
    make_dir(dir, cap, name);
    qt_buf c = {0};
    config_text(sm, &c);
    write_config(dir, &c);
    free(c.p);
    write_weights(dir, sm, dtype, sharded);
}

/* ======================================================================================== */
/* Checking a loaded model                                                                  */
/* ======================================================================================== */

static int64_t dim_of(const qnpu_model *m, qnpu_model_dim d)
{
    int64_t v = -1;
    ck_assert_int_eq(qnpu_model_get_dim(m, d, &v), QNPU_OK);
    return v;
}

static void check_syn_dims(const qnpu_model *m, const syn_model *sm)
{
    ck_assert_str_eq(qnpu_model_arch(m), sm->qwen2 ? "qwen2" : "llama");
    ck_assert_str_eq(qnpu_model_format(m), "safetensors");
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HIDDEN), S_DIM);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_FFN), S_FFN);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_LAYERS), S_LAYERS);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HEADS), S_HEADS);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_KV_HEADS), sm->kv_heads);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HEAD_DIM), S_HD);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_VOCAB), S_VOCAB);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_MAX_SEQ), 32);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_ROPE_ORDER), 1);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_TIED), sm->tied);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_QKV_BIAS), sm->qwen2);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_BOS), sm->qwen2 ? 5 : 1);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_EOS), sm->qwen2 ? 7 : 2);
    double theta, eps;
    ck_assert_int_eq(qnpu_model_get_hparam(m, QNPU_HP_ROPE_THETA, &theta), QNPU_OK);
    ck_assert_int_eq(qnpu_model_get_hparam(m, QNPU_HP_RMS_EPS, &eps), QNPU_OK);
    ck_assert(theta == (sm->qwen2 ? 1e6 : 1e4));
    ck_assert(eps == 1e-5);
}

/* Every tensor the loader should keep is there, with the stored values; nothing else is. */
static void check_syn_values(const qnpu_model *m, const syn_model *sm, const char *dtype)
{
    int expected = 0;
    for (int i = 0; i < sm->n; i++) {
        const syn_tensor *t = &sm->t[i];
        if (!t->canon[0])
            continue;
        expected++;
        int64_t idx, rows, cols;
        ck_assert_msg(qnpu_model_tensor_find(m, t->canon, &idx) == QNPU_OK, "%s", t->canon);
        ck_assert_int_eq(qnpu_model_tensor_shape(m, idx, &rows, &cols), QNPU_OK);
        ck_assert_int_eq(rows, t->rows);
        ck_assert_int_eq(cols, t->cols);
        size_t n = (size_t)(rows * cols);
        float *got = malloc(n * sizeof(float));
        ck_assert_int_eq(qnpu_model_tensor_read(m, idx, got, n), QNPU_OK);
        for (size_t j = 0; j < n; j++)
            ck_assert_msg(got[j] == stored(t->vals[j], dtype), "%s[%zu]: %.9g != %.9g", t->canon,
                          j, got[j], stored(t->vals[j], dtype));
        free(got);
    }
    ck_assert_int_eq(qnpu_model_tensor_count(m), expected);
}

static void load_and_check(const syn_model *sm, const char *dir, const char *dtype)
{
    qnpu_model *m = NULL;
    qnpu_status s = qnpu_model_load(dir, NULL, &m);
    ck_assert_msg(s == QNPU_OK, "load %s: %s", dir, qnpu_last_error());
    check_syn_dims(m, sm);
    check_syn_values(m, sm, dtype);
    qnpu_model_free(m);
}

/* Load a directory that must fail with `want`; the message must contain both needles. */
static void expect_fail(const char *dir, qnpu_status want, const char *needle1, const char *needle2)
{
    qnpu_model *m = (qnpu_model *)1;
    qnpu_status s = qnpu_model_load(dir, NULL, &m);
    const char *msg = qnpu_last_error();
    ck_assert_msg(s == want, "status %d (%s), want %d: %s", s, qnpu_status_string(s), want, msg);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(msg, needle1) != NULL, "'%s' not in: %s", needle1, msg);
    ck_assert_msg(!needle2 || strstr(msg, needle2) != NULL, "'%s' not in: %s", needle2, msg);
}

/* ======================================================================================== */
/* The JSON reader                                                                          */
/* ======================================================================================== */

static qnpu_status parse(const char *text, qnpu__json_doc **doc)
{
    return qnpu__json_parse("t.json", text, strlen(text), doc);
}

START_TEST(test_json_values)
{
    const char *text = "{\"i\":42, \"neg\": -7, \"f\": 2.5e-3, \"big\": 123456789012345,\n"
                       " \"huge\": 99999999999999999999, \"s\": \"a\\\"b\\u00e9\\n\",\n"
                       " \"t\": true, \"fa\": false, \"nu\": null, \"arr\": [1, [2], {}],\n"
                       " \"o\": {\"k\": \"v\"}, \"i\": 43, \"z\": \"\\u0000x\"}";
    qnpu__json_doc *doc;
    ck_assert_int_eq(parse(text, &doc), QNPU_OK);
    const qnpu__json *r = qnpu__json_root(doc);
    ck_assert_int_eq(r->type, QNPU__JSON_OBJECT);
    ck_assert_uint_eq(r->len, 13);
    int64_t i;
    double d;
    int b;
    ck_assert(qnpu__json_int(qnpu__json_get(r, "i"), &i) && i == 43); /* the last one wins */
    ck_assert(qnpu__json_int(qnpu__json_get(r, "neg"), &i) && i == -7);
    ck_assert(!qnpu__json_int(qnpu__json_get(r, "f"), &i));
    ck_assert(qnpu__json_number(qnpu__json_get(r, "f"), &d) && d == 2.5e-3);
    ck_assert(qnpu__json_int(qnpu__json_get(r, "big"), &i) && i == 123456789012345LL);
    ck_assert(!qnpu__json_int(qnpu__json_get(r, "huge"), &i));
    ck_assert(qnpu__json_number(qnpu__json_get(r, "huge"), &d) && d == 1e20);
    ck_assert_str_eq(qnpu__json_string(qnpu__json_get(r, "s")), "a\"b\xc3\xa9\n");
    ck_assert(qnpu__json_bool(qnpu__json_get(r, "t"), &b) && b == 1);
    ck_assert(qnpu__json_bool(qnpu__json_get(r, "fa"), &b) && b == 0);
    ck_assert(qnpu__json_is_null(qnpu__json_get(r, "nu")));
    ck_assert(!qnpu__json_is_null(qnpu__json_get(r, "missing")));
    const qnpu__json *arr = qnpu__json_get(r, "arr");
    ck_assert_uint_eq(arr->len, 3);
    ck_assert_int_eq(qnpu__json_at(arr, 1)->type, QNPU__JSON_ARRAY);
    ck_assert_int_eq(qnpu__json_at(arr, 2)->type, QNPU__JSON_OBJECT);
    ck_assert_ptr_null(qnpu__json_at(arr, 3));
    ck_assert_str_eq(qnpu__json_string(qnpu__json_get(qnpu__json_get(r, "o"), "k")), "v");
    const qnpu__json *z = qnpu__json_get(r, "z");
    ck_assert_uint_eq(z->len, 2);
    ck_assert(z->str[0] == '\0' && z->str[1] == 'x');
    ck_assert_uint_eq(qnpu__json_get(r, "s")->line, 2);
    ck_assert_str_eq(qnpu__json_type_name(qnpu__json_get(r, "t")), "boolean");
    ck_assert_str_eq(qnpu__json_type_name(NULL), "missing");
    qnpu__json_free(doc);
}
END_TEST

/* The text need not be NUL-terminated: only `len` bytes are read. */
START_TEST(test_json_exact_length)
{
    const char text[] = "[1, 2]]]garbage";
    qnpu__json_doc *doc;
    ck_assert_int_eq(qnpu__json_parse("t.json", text, 6, &doc), QNPU_OK);
    ck_assert_uint_eq(qnpu__json_root(doc)->len, 2);
    qnpu__json_free(doc);
    ck_assert_int_eq(qnpu__json_parse("t.json", text, 7, &doc), QNPU_ERR_FORMAT);
}
END_TEST

START_TEST(test_json_syntax_error_position)
{
    qnpu__json_doc *doc = (qnpu__json_doc *)1;
    ck_assert_int_eq(parse("{\n  \"a\": 1,\n  \"b\": [1, 2\n}\n", &doc), QNPU_ERR_FORMAT);
    ck_assert_ptr_null(doc);
    const char *msg = qnpu_last_error();
    ck_assert_msg(strncmp(msg, "t.json:4:1: ", 12) == 0, "%s", msg);
}
END_TEST

/* Valid YAML, but not JSON: each is refused with a position. */
START_TEST(test_json_rejects_non_json)
{
    static const char *const bad[] = {
        "{\"a\": hello}", "{a: 1}", "{'a': 1}", "{\"a\": 'x'}", "a: 1\n", "- 1\n",
        "{\"a\": 01}", "{\"a\": .5}", "{\"a\": 1.}", "{\"a\": NaN}", "{\"a\": 1e999}",
        "{\"a\": +1}", "{\"a\": 0x10}", "[&x 1, *x]", "!!map {}", "{\"a\": yes}", "{\"a\": ~}",
        "{\"a\"}", "{\"a\": }", "{[1]: 2}", "{} {}", "{}\n--- {}\n", "--- {}", "",
        "   ", "{\"a\": \"\\ud83d\\ude00\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qnpu__json_doc *doc = NULL;
        qnpu_status s = parse(bad[i], &doc);
        ck_assert_msg(s == QNPU_ERR_FORMAT, "accepted: %s", bad[i]);
        ck_assert_msg(strncmp(qnpu_last_error(), "t.json:", 7) == 0, "%s", qnpu_last_error());
    }
}
END_TEST

START_TEST(test_json_depth)
{
    char deep[1200];
    memset(deep, '[', 600);
    memset(deep + 600, ']', 600);
    qnpu__json_doc *doc;
    ck_assert_int_eq(qnpu__json_parse("t.json", deep, sizeof deep, &doc), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "deeply"));
    ck_assert_int_eq(qnpu__json_parse("t.json", deep + 500, 200, &doc), QNPU_OK);
    qnpu__json_free(doc);
}
END_TEST

/* ======================================================================================== */
/* The real fixture: stories260K-hf against stories260K.bin                                 */
/* ======================================================================================== */

static float *read_tensor(const qnpu_model *m, const char *name, int64_t *rows, int64_t *cols)
{
    int64_t idx;
    ck_assert_msg(qnpu_model_tensor_find(m, name, &idx) == QNPU_OK, "%s", name);
    ck_assert_int_eq(qnpu_model_tensor_shape(m, idx, rows, cols), QNPU_OK);
    size_t n = (size_t)(*rows * *cols);
    float *v = malloc(n * sizeof(float));
    ck_assert_int_eq(qnpu_model_tensor_read(m, idx, v, n), QNPU_OK);
    return v;
}

/* HF row i of a head equals llama2.c row 2i, row dh/2 + i equals row 2i + 1. */
static void check_rope_permutation(const char *name, const float *hf, const float *ref,
                                   int64_t rows, int64_t cols, int64_t dh)
{
    for (int64_t h = 0; h < rows / dh; h++)
        for (int64_t i = 0; i < dh / 2; i++) {
            const float *even = ref + (h * dh + 2 * i) * cols, *odd = even + cols;
            ck_assert_msg(memcmp(hf + (h * dh + i) * cols, even, (size_t)cols * 4) == 0,
                          "%s head %lld row %lld", name, (long long)h, (long long)i);
            ck_assert_msg(memcmp(hf + (h * dh + dh / 2 + i) * cols, odd, (size_t)cols * 4) == 0,
                          "%s head %lld row %lld", name, (long long)h, (long long)(dh / 2 + i));
        }
}

START_TEST(test_stories260k_hf)
{
    if (!qt_have_shared("models/stories260K-hf/config.json") ||
        !qt_have_shared("models/stories260K.bin"))
        return;
    qnpu_model *hf, *ref;
    ck_assert_msg(qnpu_model_load(qt_shared("models/stories260K-hf"), NULL, &hf) == QNPU_OK, "%s",
                  qnpu_last_error());
    ck_assert_int_eq(qnpu_model_load(qt_shared("models/stories260K.bin"), NULL, &ref), QNPU_OK);
    ck_assert_str_eq(qnpu_model_arch(hf), "llama");
    static const struct { qnpu_model_dim d; int64_t v; } dims[] = {
        {QNPU_DIM_HIDDEN, 64}, {QNPU_DIM_FFN, 172}, {QNPU_DIM_LAYERS, 5}, {QNPU_DIM_HEADS, 8},
        {QNPU_DIM_KV_HEADS, 4}, {QNPU_DIM_HEAD_DIM, 8}, {QNPU_DIM_VOCAB, 512},
        {QNPU_DIM_MAX_SEQ, 512}, {QNPU_DIM_ROPE_ORDER, 1}, {QNPU_DIM_TIED, 1},
        {QNPU_DIM_QKV_BIAS, 0}, {QNPU_DIM_BOS, 1}, {QNPU_DIM_EOS, 2},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        ck_assert_int_eq(dim_of(hf, dims[i].d), dims[i].v);
    double eps;
    ck_assert_int_eq(qnpu_model_get_hparam(hf, QNPU_HP_RMS_EPS, &eps), QNPU_OK);
    ck_assert(eps == 1e-5);
    ck_assert_int_eq(qnpu_model_tensor_count(hf), qnpu_model_tensor_count(ref));
    for (int64_t i = 0; i < qnpu_model_tensor_count(ref); i++) {
        const char *name = qnpu_model_tensor_name(ref, i);
        int64_t r1, c1, r2, c2;
        float *a = read_tensor(hf, name, &r1, &c1), *b = read_tensor(ref, name, &r2, &c2);
        ck_assert_msg(r1 == r2 && c1 == c2, "%s shape", name);
        if (strstr(name, "attn_q.weight") || strstr(name, "attn_k.weight"))
            check_rope_permutation(name, a, b, r1, c1, 8);
        else
            ck_assert_msg(memcmp(a, b, (size_t)(r1 * c1) * 4) == 0, "%s differs", name);
        free(a);
        free(b);
    }
    qnpu_model_free(hf);
    qnpu_model_free(ref);
}
END_TEST

/* Without mmap the file is read into memory; the values are the same. */
START_TEST(test_stories260k_hf_no_mmap)
{
    if (!qt_have_shared("models/stories260K-hf/config.json"))
        return;
    qnpu_options *o;
    qnpu_model *a, *b;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_MMAP, 0), QNPU_OK);
    ck_assert_int_eq(qnpu_model_load(qt_shared("models/stories260K-hf"), o, &a), QNPU_OK);
    ck_assert_int_eq(qnpu_model_load(qt_shared("models/stories260K-hf"), NULL, &b), QNPU_OK);
    size_t owned, mapped;
    ck_assert_int_eq(qnpu_model_memory_usage(a, &owned, &mapped), QNPU_OK);
    ck_assert_uint_eq(mapped, 0);
    ck_assert_int_eq(qnpu_model_memory_usage(b, &owned, &mapped), QNPU_OK);
    ck_assert_uint_ge(mapped, 1000000);
    int64_t r, c;
    float *x = read_tensor(a, "blk.4.ffn_down.weight", &r, &c);
    float *y = read_tensor(b, "blk.4.ffn_down.weight", &r, &c);
    ck_assert(memcmp(x, y, (size_t)(r * c) * 4) == 0);
    free(x);
    free(y);
    qnpu_model_free(a);
    qnpu_model_free(b);
    qnpu_options_free(o);
}
END_TEST

/* ======================================================================================== */
/* Synthetic models that load                                                               */
/* ======================================================================================== */

static void roundtrip(const char *name, int qwen2, int tied, const char *dtype, int sharded)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, qwen2, tied, 1);
    write_model(dir, sizeof dir, name, &sm, dtype, sharded);
    load_and_check(&sm, dir, dtype);
    syn_free(&sm);
}

START_TEST(test_llama_f32) { roundtrip("llama-f32", 0, 1, "F32", 0); }
END_TEST
START_TEST(test_llama_f16) { roundtrip("llama-f16", 0, 1, "F16", 0); }
END_TEST
START_TEST(test_llama_bf16) { roundtrip("llama-bf16", 0, 1, "BF16", 0); }
END_TEST
START_TEST(test_llama_sharded) { roundtrip("llama-sharded", 0, 0, "F32", 1); }
END_TEST
START_TEST(test_qwen2_untied) { roundtrip("qwen2", 1, 0, "F32", 0); }
END_TEST
START_TEST(test_qwen2_sharded_bf16) { roundtrip("qwen2-sharded", 1, 0, "BF16", 1); }
END_TEST

/* A tied checkpoint may still carry lm_head.weight; the loader skips it. */
START_TEST(test_tied_with_lm_head)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 0, 1);
    sm.tied = 1;
    syn_find(&sm, "lm_head.weight")->canon[0] = '\0';
    write_model(dir, sizeof dir, "tied-lm-head", &sm, "F32", 0);
    load_and_check(&sm, dir, "F32");
    syn_free(&sm);
}
END_TEST

/* Optional keys left out take the Hugging Face defaults. */
START_TEST(test_config_defaults)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 0, S_HEADS);
    write_model(dir, sizeof dir, "defaults", &sm, "F32", 0);
    qt_buf c = {0};
    config_text(&sm, &c);
    static const char *const optional[] = {"num_key_value_heads", "rms_norm_eps", "rope_theta",
                                           "tie_word_embeddings", "bos_token_id", "eos_token_id",
                                           "hidden_act", "rope_scaling"};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        config_edit(&c, optional[i], "");
    write_config(dir, &c);
    free(c.p);
    qnpu_model *m;
    ck_assert_msg(qnpu_model_load(dir, NULL, &m) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_int_eq(dim_of(m, QNPU_DIM_KV_HEADS), S_HEADS);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_HEAD_DIM), S_HD);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_TIED), 0);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_BOS), 1);
    ck_assert_int_eq(dim_of(m, QNPU_DIM_EOS), 2);
    double theta, eps;
    qnpu_model_get_hparam(m, QNPU_HP_ROPE_THETA, &theta);
    qnpu_model_get_hparam(m, QNPU_HP_RMS_EPS, &eps);
    ck_assert(theta == 10000.0 && eps == 1e-6);
    check_syn_values(m, &sm, "F32");
    qnpu_model_free(m);
    syn_free(&sm);
}
END_TEST

/* An allocator that refuses the n-th request, to walk every out-of-memory path. */
static int alloc_budget;

static void *failing_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    if (alloc_budget-- <= 0)
        return NULL;
    return aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}

static void plain_free(void *user, void *p)
{
    (void)user;
    free(p);
}

START_TEST(test_out_of_memory)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 1, 0, 1);
    write_model(dir, sizeof dir, "oom", &sm, "BF16", 1);
    ck_assert_int_eq(qnpu_set_allocator(failing_alloc, plain_free, NULL), QNPU_OK);
    int loaded = 0;
    for (int n = 0; n < 10000 && !loaded; n++) {
        qnpu_model *m = NULL;
        alloc_budget = n;
        qnpu_status s = qnpu_model_load(dir, NULL, &m);
        ck_assert_msg(s == QNPU_OK || s == QNPU_ERR_NO_MEMORY, "budget %d: %s", n,
                      qnpu_last_error());
        loaded = s == QNPU_OK;
        qnpu_model_free(m);
    }
    ck_assert(loaded);
    ck_assert_int_eq(qnpu_set_allocator(NULL, NULL, NULL), QNPU_OK);
    syn_free(&sm);
}
END_TEST

/* ======================================================================================== */
/* Bad config.json                                                                          */
/* ======================================================================================== */

/* A good model directory whose config.json line for `key` is replaced by `line`. */
static void dir_with_config_line(char *dir, size_t cap, const char *name, const char *key,
                                 const char *line)
{
    syn_model sm;
    syn_init(&sm, 0, 1, 1);
    write_model(dir, cap, name, &sm, "F32", 0);
    qt_buf c = {0};
    config_text(&sm, &c);
    config_edit(&c, key, line);
    write_config(dir, &c);
    free(c.p);
    syn_free(&sm);
}

START_TEST(test_missing_config)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 1, 1);
    make_dir(dir, sizeof dir, "no-config");
    write_weights(dir, &sm, "F32", 0);
    expect_fail(dir, QNPU_ERR_IO, dir, "config.json");
    syn_free(&sm);
}
END_TEST

START_TEST(test_config_syntax_error)
{
    char dir[1024], want[4200];
    dir_with_config_line(dir, sizeof dir, "config-syntax", "hidden_size",
                         "  \"hidden_size\" 8,\n");
    /* the key is on line 4; libyaml notices the missing ':' where the value starts */
    snprintf(want, sizeof want, "%s/config.json:4:", dir);
    expect_fail(dir, QNPU_ERR_FORMAT, want, NULL);
    const char *after = strstr(qnpu_last_error(), want) + strlen(want);
    int col = 0;
    ck_assert_msg(sscanf(after, "%d:", &col) == 1 && col > 1, "%s", qnpu_last_error());
}
END_TEST

START_TEST(test_unknown_architecture)
{
    char dir[1024];
    dir_with_config_line(dir, sizeof dir, "config-arch", "architectures",
                         "  \"architectures\": [\"MistralForCausalLM\"],\n");
    expect_fail(dir, QNPU_ERR_UNSUPPORTED, "config.json", "MistralForCausalLM");
}
END_TEST

START_TEST(test_missing_key)
{
    char dir[1024];
    dir_with_config_line(dir, sizeof dir, "config-missing", "num_hidden_layers", "");
    expect_fail(dir, QNPU_ERR_FORMAT, "config.json", "'num_hidden_layers'");
}
END_TEST

START_TEST(test_wrong_key_type)
{
    char dir[1024];
    dir_with_config_line(dir, sizeof dir, "config-type", "hidden_size", "  \"hidden_size\": \"8\",\n");
    expect_fail(dir, QNPU_ERR_FORMAT, "config.json", "'hidden_size' must be an integer");
    dir_with_config_line(dir, sizeof dir, "config-type2", "tie_word_embeddings",
                         "  \"tie_word_embeddings\": 1,\n");
    expect_fail(dir, QNPU_ERR_FORMAT, "config.json", "'tie_word_embeddings'");
}
END_TEST

START_TEST(test_rope_scaling_unsupported)
{
    char dir[1024];
    dir_with_config_line(dir, sizeof dir, "config-rope", "rope_scaling",
                         "  \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0},\n");
    expect_fail(dir, QNPU_ERR_UNSUPPORTED, "config.json", "rope_scaling");
}
END_TEST

/* intermediate_size disagrees with the tensors: reported by the shape check. */
START_TEST(test_shape_disagrees_with_config)
{
    char dir[1024];
    dir_with_config_line(dir, sizeof dir, "config-ffn", "intermediate_size",
                         "  \"intermediate_size\": 16,\n");
    expect_fail(dir, QNPU_ERR_FORMAT, "model.layers.0.mlp.gate_proj.weight' has shape", dir);
}
END_TEST

/* ======================================================================================== */
/* Bad safetensors                                                                          */
/* ======================================================================================== */

/* A directory with the standard config and `sm` written as model.safetensors. */
static void dir_with(char *dir, size_t cap, const char *name, const syn_model *sm)
{
    write_model(dir, cap, name, sm, "F32", 0);
}

/* The full path of model.safetensors in dir. */
static const char *st_path(const char *dir)
{
    static char path[2048];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return path;
}

START_TEST(test_unknown_dtype)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 1, 1);
    syn_find(&sm, "model.layers.1.self_attn.v_proj.weight")->dtype = "Q7";
    dir_with(dir, sizeof dir, "dtype-unknown", &sm);
    expect_fail(dir, QNPU_ERR_UNSUPPORTED, "model.layers.1.self_attn.v_proj.weight", "'Q7'");
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), st_path(dir)));
    syn_free(&sm);
}
END_TEST

START_TEST(test_unsupported_dtype)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 1, 1);
    syn_find(&sm, "model.norm.weight")->dtype = "I8";
    dir_with(dir, sizeof dir, "dtype-i8", &sm);
    expect_fail(dir, QNPU_ERR_UNSUPPORTED, "'model.norm.weight' has dtype I8", st_path(dir));
    syn_free(&sm);
}
END_TEST

START_TEST(test_header_shape_mismatch)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 1, 1);
    syn_find(&sm, "model.layers.0.mlp.up_proj.weight")->bad_shape = 1;
    dir_with(dir, sizeof dir, "header-shape", &sm);
    expect_fail(dir, QNPU_ERR_FORMAT, "'model.layers.0.mlp.up_proj.weight': shape holds 108",
                st_path(dir));
    syn_free(&sm);
}
END_TEST

START_TEST(test_rank3)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 1, 1);
    syn_find(&sm, "model.layers.1.self_attn.o_proj.weight")->rank3 = 1;
    dir_with(dir, sizeof dir, "rank3", &sm);
    expect_fail(dir, QNPU_ERR_FORMAT, "'model.layers.1.self_attn.o_proj.weight' has 3 dimensions",
                st_path(dir));
    syn_free(&sm);
}
END_TEST

/* A model.safetensors image of the standard model, to be damaged by the caller. */
static unsigned char *good_image(char *dir, size_t cap, const char *name, size_t *len, size_t *hlen)
{
    syn_model sm;
    syn_init(&sm, 0, 1, 1);
    write_model(dir, cap, name, &sm, "F32", 0);
    unsigned char *img = st_image(&sm, -1, "F32", len, hlen);
    syn_free(&sm);
    return img;
}

START_TEST(test_header_length_beyond_file)
{
    char dir[1024];
    size_t len, hlen;
    unsigned char *img = good_image(dir, sizeof dir, "header-long", &len, &hlen);
    uint64_t n = len; /* more than the 8 + header + data that follow */
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)(n >> (8 * i));
    put_file(dir, "model.safetensors", img, len);
    expect_fail(dir, QNPU_ERR_IO, st_path(dir), "truncated");
    img[5] = 0x7f; /* 2^46 and more: absurd */
    put_file(dir, "model.safetensors", img, len);
    expect_fail(dir, QNPU_ERR_FORMAT, st_path(dir), "absurd");
    put_file(dir, "model.safetensors", img, 5);
    expect_fail(dir, QNPU_ERR_IO, st_path(dir), "truncated");
    free(img);
}
END_TEST

START_TEST(test_header_syntax_error)
{
    char dir[1024], want[4200];
    size_t len, hlen;
    unsigned char *img = good_image(dir, sizeof dir, "header-syntax", &len, &hlen);
    char *colon = memchr(img + 8, ':', hlen); /* "__metadata__": -> "__metadata__"; */
    *colon = ';';
    put_file(dir, "model.safetensors", img, len);
    snprintf(want, sizeof want, "%s:1:", st_path(dir));
    expect_fail(dir, QNPU_ERR_FORMAT, want, NULL);
    free(img);
}
END_TEST

START_TEST(test_truncated_data)
{
    char dir[1024];
    size_t len, hlen;
    unsigned char *img = good_image(dir, sizeof dir, "truncated", &len, &hlen);
    /* cut inside the data section: the last tensor (lm_head absent, so model.norm) is short */
    put_file(dir, "model.safetensors", img, len - 6);
    expect_fail(dir, QNPU_ERR_IO, "truncated: tensor 'model.norm.weight'", st_path(dir));
    /* cut right after the header: the first tensor already lacks its bytes */
    put_file(dir, "model.safetensors", img, 8 + hlen);
    expect_fail(dir, QNPU_ERR_IO, "truncated: tensor 'model.embed_tokens.weight'", st_path(dir));
    free(img);
}
END_TEST

START_TEST(test_missing_tensor)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 1, 1);
    syn_find(&sm, "model.layers.1.mlp.up_proj.weight")->omit = 1;
    dir_with(dir, sizeof dir, "missing-tensor", &sm);
    expect_fail(dir, QNPU_ERR_FORMAT, "missing tensor 'blk.1.ffn_up.weight'", dir);
    syn_free(&sm);
}
END_TEST

START_TEST(test_missing_lm_head_untied)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 1, 0, 1);
    syn_find(&sm, "lm_head.weight")->omit = 1;
    dir_with(dir, sizeof dir, "missing-lm-head", &sm);
    expect_fail(dir, QNPU_ERR_FORMAT, "missing tensor 'output.weight'", dir);
    syn_free(&sm);
}
END_TEST

START_TEST(test_nan_weights)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 1, 1);
    syn_find(&sm, "model.layers.1.mlp.down_proj.weight")->vals[13] = NAN;
    dir_with(dir, sizeof dir, "nan", &sm);
    expect_fail(dir, QNPU_ERR_NUMERIC, "model.layers.1.mlp.down_proj.weight", dir);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "NaN"));
    /* with model.check_finite off the same directory loads */
    qnpu_options *o;
    qnpu_model *m;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_CHECK_FINITE, 0), QNPU_OK);
    ck_assert_int_eq(qnpu_model_load(dir, o, &m), QNPU_OK);
    qnpu_model_free(m);
    qnpu_options_free(o);
    syn_free(&sm);
}
END_TEST

START_TEST(test_no_weights)
{
    char dir[1024];
    dir_with_config_line(dir, sizeof dir, "no-weights", "model_type", "  \"model_type\": \"llama\",\n");
    char path[4200];
    snprintf(path, sizeof path, "%s", st_path(dir));
    ck_assert_int_eq(remove(path), 0);
    expect_fail(dir, QNPU_ERR_IO, dir, "model.safetensors.index.json");
}
END_TEST

/* ======================================================================================== */
/* Bad sharded layouts                                                                      */
/* ======================================================================================== */

START_TEST(test_index_missing_shard_file)
{
    syn_model sm;
    char dir[1024], want[4200];
    syn_init(&sm, 0, 1, 1);
    make_dir(dir, sizeof dir, "shard-missing");
    qt_buf c = {0};
    config_text(&sm, &c);
    write_config(dir, &c);
    free(c.p);
    write_weights(dir, &sm, "F32", 1);
    syn_find(&sm, "model.norm.weight")->shard = 2; /* model-00003-of-00002: never written */
    write_index(dir, &sm);
    snprintf(want, sizeof want, "%s/model-00003-of-00002.safetensors", dir);
    expect_fail(dir, QNPU_ERR_IO, want, NULL);
    syn_free(&sm);
}
END_TEST

START_TEST(test_index_tensor_absent_from_shard)
{
    syn_model sm;
    char dir[1024];
    syn_init(&sm, 0, 1, 1);
    syn_find(&sm, "model.layers.1.mlp.down_proj.weight")->index_only = 1;
    write_model(dir, sizeof dir, "shard-absent", &sm, "F32", 1);
    expect_fail(dir, QNPU_ERR_FORMAT, "'model.layers.1.mlp.down_proj.weight' is listed in",
                "model-00002-of-00002.safetensors");
    syn_free(&sm);
}
END_TEST

START_TEST(test_index_bad_weight_map)
{
    char dir[1024];
    make_dir(dir, sizeof dir, "bad-index");
    syn_model sm;
    syn_init(&sm, 0, 1, 1);
    qt_buf c = {0};
    config_text(&sm, &c);
    write_config(dir, &c);
    free(c.p);
    const char *ix = "{\"metadata\": {}, \"weight_map\": [\"model-00001-of-00001.safetensors\"]}";
    put_file(dir, "model.safetensors.index.json", ix, strlen(ix));
    expect_fail(dir, QNPU_ERR_FORMAT, "model.safetensors.index.json", "'weight_map'");
    ix = "{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}";
    put_file(dir, "model.safetensors.index.json", ix, strlen(ix));
    expect_fail(dir, QNPU_ERR_FORMAT, "model.safetensors.index.json", "'model.norm.weight'");
    syn_free(&sm);
}
END_TEST

Suite *qnpu_hf_suite(void)
{
    Suite *s = suite_create("hf");
    TCase *tc = tcase_create("json");
    tcase_add_test(tc, test_json_values);
    tcase_add_test(tc, test_json_exact_length);
    tcase_add_test(tc, test_json_syntax_error_position);
    tcase_add_test(tc, test_json_rejects_non_json);
    tcase_add_test(tc, test_json_depth);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_test(tc, test_stories260k_hf);
    tcase_add_test(tc, test_stories260k_hf_no_mmap);
    tcase_add_test(tc, test_llama_f32);
    tcase_add_test(tc, test_llama_f16);
    tcase_add_test(tc, test_llama_bf16);
    tcase_add_test(tc, test_llama_sharded);
    tcase_add_test(tc, test_qwen2_untied);
    tcase_add_test(tc, test_qwen2_sharded_bf16);
    tcase_add_test(tc, test_tied_with_lm_head);
    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_out_of_memory);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_missing_config);
    tcase_add_test(tc, test_config_syntax_error);
    tcase_add_test(tc, test_unknown_architecture);
    tcase_add_test(tc, test_missing_key);
    tcase_add_test(tc, test_wrong_key_type);
    tcase_add_test(tc, test_rope_scaling_unsupported);
    tcase_add_test(tc, test_shape_disagrees_with_config);
    tcase_add_test(tc, test_unknown_dtype);
    tcase_add_test(tc, test_unsupported_dtype);
    tcase_add_test(tc, test_header_shape_mismatch);
    tcase_add_test(tc, test_rank3);
    tcase_add_test(tc, test_header_length_beyond_file);
    tcase_add_test(tc, test_header_syntax_error);
    tcase_add_test(tc, test_truncated_data);
    tcase_add_test(tc, test_missing_tensor);
    tcase_add_test(tc, test_missing_lm_head_untied);
    tcase_add_test(tc, test_nan_weights);
    tcase_add_test(tc, test_no_weights);
    tcase_add_test(tc, test_index_missing_shard_file);
    tcase_add_test(tc, test_index_tensor_absent_from_shard);
    tcase_add_test(tc, test_index_bad_weight_map);
    suite_add_tcase(s, tc);
    return s;
}
