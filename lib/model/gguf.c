/* gguf.c — loader for GGUF v3 (and v2) files: llama and qwen2 architectures, F32/F16/BF16.
 *
 * Layout (little-endian):
 *   header      char magic[4] = "GGUF", uint32 version, uint64 tensor_count, uint64 kv_count
 *   kv pairs    kv_count x { string key, uint32 type, value }
 *   tensor info tensor_count x { string name, uint32 n_dims, uint64 ne[n_dims], uint32 type,
 *                                uint64 offset }
 *   padding     to a multiple of general.alignment (default 32)
 *   data        tensor bytes; each offset is relative to the start of this section
 * A string is uint64 len + len bytes (no NUL). Value types: 0 uint8, 1 int8, 2 uint16,
 * 3 int16, 4 uint32, 5 int32, 6 float32, 7 bool, 8 string, 10 uint64, 11 int64, 12 float64,
 * and 9 array = { uint32 element type, uint64 count, count values } (arrays may nest).
 * ne[0] is the innermost dimension: ne = [cols, rows] is row-major [rows][cols].
 *
 * Every read is bounds-checked. The file ending in the middle of something is QNPU_ERR_IO;
 * a count or length that the whole file could never hold is QNPU_ERR_FORMAT (checked before
 * anything is allocated from it). Tensor data stays in the mapping; qnpu__model_finish
 * converts F16/BF16 and checks shapes and finiteness. */
#include <stdio.h>
#include <string.h>

#include "../internal.h"

#define GGUF_HEADER_SIZE 24
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NESTING 8          /* arrays of arrays of ... */
#define GGUF_MIN_KV_SIZE 13         /* uint64 key len + uint32 type + a 1-byte value */
#define GGUF_MIN_TENSOR_INFO_SIZE 24 /* uint64 name len + uint32 n_dims + uint32 type + offset */

enum {
    T_UINT8 = 0, T_INT8 = 1, T_UINT16 = 2, T_INT16 = 3, T_UINT32 = 4, T_INT32 = 5,
    T_FLOAT32 = 6, T_BOOL = 7, T_STRING = 8, T_ARRAY = 9, T_UINT64 = 10, T_INT64 = 11,
    T_FLOAT64 = 12, T_COUNT = 13
};

static const char *const type_names[T_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

/* a string inside the mapping (not NUL-terminated) */
typedef struct str {
    const char *p;
    size_t n;
} str;

/* a bounds-checked cursor over the file; `what` names the item being read, for messages */
typedef struct reader {
    const unsigned char *data;
    size_t size, pos;
    const char *path;
    char what[192];
} reader;

typedef struct kv {
    str key;
    uint32_t type;
    size_t pos;          /* offset of the value in the file */
} kv;

typedef struct tinfo {
    str name;
    uint32_t n_dims, type;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t offset;     /* relative to the data section */
    int64_t rows, cols;
    uint64_t nbytes;
} tinfo;

typedef struct gguf {
    reader r;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    kv *kvs;
    tinfo *infos;
    char arch[32];
} gguf;

#define TRY(expr)                                                                                \
    do {                                                                                         \
        qnpu_status s_ = (expr);                                                                 \
        if (s_ != QNPU_OK)                                                                       \
            return s_;                                                                           \
    } while (0)

/* ---- little-endian reads ---------------------------------------------------------------- */

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static float le_f32(const unsigned char *p)
{
    uint32_t u = (uint32_t)le(p, 4);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double le_f64(const unsigned char *p)
{
    uint64_t u = le(p, 8);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* ---- the reader ------------------------------------------------------------------------- */

static qnpu_status need(reader *r, uint64_t n)
{
    if (n > r->size - r->pos)
        return qnpu__fail(QNPU_ERR_IO,
                          "%s: truncated while reading %s (needs bytes %zu..%llu, the file has %zu)",
                          r->path, r->what, r->pos, (unsigned long long)r->pos + n, r->size);
    return QNPU_OK;
}

static qnpu_status rd_skip(reader *r, uint64_t n)
{
    TRY(need(r, n));
    r->pos += (size_t)n;
    return QNPU_OK;
}

static qnpu_status rd_u32(reader *r, uint32_t *v)
{
    TRY(need(r, 4));
    *v = (uint32_t)le(r->data + r->pos, 4);
    r->pos += 4;
    return QNPU_OK;
}

static qnpu_status rd_u64(reader *r, uint64_t *v)
{
    TRY(need(r, 8));
    *v = le(r->data + r->pos, 8);
    r->pos += 8;
    return QNPU_OK;
}

static qnpu_status rd_str(reader *r, str *s)
{
    uint64_t n;
    TRY(rd_u64(r, &n));
    if (n > r->size)
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: string of %llu bytes at offset %zu while reading %s: longer than the "
                          "whole file (%zu bytes)", r->path, (unsigned long long)n, r->pos - 8,
                          r->what, r->size);
    TRY(need(r, n));
    s->p = (const char *)r->data + r->pos;
    s->n = (size_t)n;
    r->pos += (size_t)n;
    return QNPU_OK;
}

static int str_eq(str s, const char *c)
{
    return s.n == strlen(c) && memcmp(s.p, c, s.n) == 0;
}

/* Bytes of a fixed-size value type, 0 for string/array/unknown. */
static size_t scalar_size(uint32_t type)
{
    switch (type) {
    case T_UINT8: case T_INT8: case T_BOOL: return 1;
    case T_UINT16: case T_INT16: return 2;
    case T_UINT32: case T_INT32: case T_FLOAT32: return 4;
    case T_UINT64: case T_INT64: case T_FLOAT64: return 8;
    }
    return 0;
}

/* Walk over one value of `type`, checking every length against the file. */
static qnpu_status skip_value(reader *r, uint32_t type, int depth)
{
    size_t size = scalar_size(type);
    if (size)
        return rd_skip(r, size);
    if (type == T_STRING) {
        str s;
        return rd_str(r, &s);
    }
    if (type != T_ARRAY)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: unknown value type %u in %s", r->path, type, r->what);
    if (depth >= GGUF_MAX_NESTING)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: arrays nested deeper than %d in %s", r->path,
                          GGUF_MAX_NESTING, r->what);
    uint32_t etype;
    uint64_t count;
    TRY(rd_u32(r, &etype));
    TRY(rd_u64(r, &count));
    if (etype >= T_COUNT)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: unknown array element type %u in %s", r->path,
                          etype, r->what);
    size = scalar_size(etype);
    if (size) {
        /* compare counts, not byte products, so a huge count cannot overflow */
        if (count > (r->size - r->pos) / size)
            return qnpu__fail(QNPU_ERR_IO, "%s: truncated while reading %s (an array of %llu %s "
                              "values at offset %zu, the file has %zu bytes)", r->path, r->what,
                              (unsigned long long)count, type_names[etype], r->pos, r->size);
        return rd_skip(r, count * size);
    }
    for (uint64_t i = 0; i < count; i++)
        TRY(skip_value(r, etype, depth + 1));
    return QNPU_OK;
}

/* ---- header, key-value pairs, tensor infos ---------------------------------------------- */

static qnpu_status parse_header(gguf *g)
{
    reader *r = &g->r;
    snprintf(r->what, sizeof r->what, "the GGUF header");
    TRY(need(r, GGUF_HEADER_SIZE));
    if (memcmp(r->data, "GGUF", 4) != 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: not a GGUF file (bad magic)", r->path);
    r->pos = 4;
    TRY(rd_u32(r, &g->version));
    TRY(rd_u64(r, &g->n_tensors));
    TRY(rd_u64(r, &g->n_kv));
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: big-endian GGUF is not supported", r->path);
    if (g->version != 2 && g->version != 3)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (only 2 and 3)",
                          r->path, g->version);
    size_t room = r->size - GGUF_HEADER_SIZE;
    if (g->n_kv > room / GGUF_MIN_KV_SIZE)
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: the header claims %llu key-value pairs, more than a file of %zu bytes "
                          "could hold (corrupt or truncated)", r->path,
                          (unsigned long long)g->n_kv, r->size);
    if (g->n_tensors > room / GGUF_MIN_TENSOR_INFO_SIZE)
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: the header claims %llu tensors, more than a file of %zu bytes could "
                          "hold (corrupt or truncated)", r->path,
                          (unsigned long long)g->n_tensors, r->size);
    return QNPU_OK;
}

static qnpu_status parse_kvs(gguf *g)
{
    reader *r = &g->r;
    if (g->n_kv == 0)
        return QNPU_OK;
    g->kvs = qnpu__calloc((size_t)g->n_kv, sizeof *g->kvs);
    if (!g->kvs)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", r->path);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        kv *e = &g->kvs[i];
        snprintf(r->what, sizeof r->what, "the key of key-value pair #%llu", (unsigned long long)i);
        TRY(rd_str(r, &e->key));
        snprintf(r->what, sizeof r->what, "key '%.*s'", (int)(e->key.n > 120 ? 120 : e->key.n),
                 e->key.p);
        TRY(rd_u32(r, &e->type));
        e->pos = r->pos;
        TRY(skip_value(r, e->type, 0));
    }
    return QNPU_OK;
}

static const kv *find_kv(const gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_eq(g->kvs[i].key, key))
            return &g->kvs[i];
    return NULL;
}

/* Name of a ggml tensor type, for messages. */
static const char *ggml_type_name(uint32_t t)
{
    static const char *const names[] = {
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
        "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
        "IQ1_M", "BF16",
    };
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

static size_t dtype_size(uint32_t t)
{
    return t == QNPU__F32 ? 4 : t == QNPU__F16 || t == QNPU__BF16 ? 2 : 0;
}

/* Check one tensor info's shape and type and derive rows, cols and the byte size. */
static qnpu_status check_tensor_info(const gguf *g, tinfo *t)
{
    const char *path = g->r.path;
    int nl = (int)(t->name.n > 120 ? 120 : t->name.n);
    uint64_t elems = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->ne[d] == 0)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%.*s' has a zero dimension (ne[%u])",
                              path, nl, t->name.p, d);
        if (t->ne[d] > (uint64_t)INT64_MAX / 8 / elems)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%.*s' dimensions overflow (ne[%u] = %llu)",
                              path, nl, t->name.p, d, (unsigned long long)t->ne[d]);
        elems *= t->ne[d];
    }
    size_t size = dtype_size(t->type);
    if (!size)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED,
                          "%s: tensor '%.*s' has type %u (%s); only F32, F16 and BF16 are supported",
                          path, nl, t->name.p, t->type, ggml_type_name(t->type));
    t->cols = (int64_t)t->ne[0];
    t->rows = (int64_t)(elems / t->ne[0]);
    t->nbytes = elems * size;
    return QNPU_OK;
}

static qnpu_status parse_tensor_info(gguf *g, uint64_t i, tinfo *t)
{
    reader *r = &g->r;
    snprintf(r->what, sizeof r->what, "the name of tensor info #%llu", (unsigned long long)i);
    TRY(rd_str(r, &t->name));
    snprintf(r->what, sizeof r->what, "tensor info '%.*s'", (int)(t->name.n > 120 ? 120 : t->name.n),
             t->name.p);
    TRY(rd_u32(r, &t->n_dims));
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s has %u dimensions (1..%d allowed)", r->path,
                          r->what, t->n_dims, GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < t->n_dims; d++)
        TRY(rd_u64(r, &t->ne[d]));
    TRY(rd_u32(r, &t->type));
    TRY(rd_u64(r, &t->offset));
    return check_tensor_info(g, t);
}

static qnpu_status parse_tensor_infos(gguf *g)
{
    if (g->n_tensors == 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: the file holds no tensors", g->r.path);
    g->infos = qnpu__calloc((size_t)g->n_tensors, sizeof *g->infos);
    if (!g->infos)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", g->r.path);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        TRY(parse_tensor_info(g, i, &g->infos[i]));
    return QNPU_OK;
}

/* ---- typed key lookups ------------------------------------------------------------------ */

/* Read a scalar of `type` at p: 1 integer (*iv), 2 float (*fv), 0 not a number,
 * -1 an unsigned 64-bit value too large for int64. */
static int read_number(const unsigned char *p, uint32_t type, int64_t *iv, double *fv)
{
    switch (type) {
    case T_UINT8: *iv = p[0]; return 1;
    case T_INT8: *iv = (int8_t)p[0]; return 1;
    case T_UINT16: *iv = (int64_t)le(p, 2); return 1;
    case T_INT16: *iv = (int16_t)le(p, 2); return 1;
    case T_UINT32: *iv = (int64_t)le(p, 4); return 1;
    case T_INT32: *iv = (int32_t)le(p, 4); return 1;
    case T_UINT64: {
        uint64_t u = le(p, 8);
        if (u > (uint64_t)INT64_MAX)
            return -1;
        *iv = (int64_t)u;
        return 1;
    }
    case T_INT64: *iv = (int64_t)le(p, 8); return 1;
    case T_FLOAT32: *fv = le_f32(p); return 2;
    case T_FLOAT64: *fv = le_f64(p); return 2;
    }
    return 0;
}

static qnpu_status wrong_type(const gguf *g, const char *key, uint32_t type, const char *expected)
{
    return qnpu__fail(QNPU_ERR_FORMAT, "%s: key '%s' is a %s, expected %s", g->r.path, key,
                      type_names[type], expected);
}

/* An integer key stored as any integer type; `required` keys must be present. */
static qnpu_status get_int(const gguf *g, const char *key, int required, int64_t def, int64_t *out)
{
    const kv *e = find_kv(g, key);
    if (!e) {
        if (required)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: missing key '%s'", g->r.path, key);
        *out = def;
        return QNPU_OK;
    }
    double f;
    int kind = read_number(g->r.data + e->pos, e->type, out, &f);
    if (kind == -1)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: key '%s' = %llu is out of range", g->r.path, key,
                          (unsigned long long)le(g->r.data + e->pos, 8));
    if (kind != 1)
        return wrong_type(g, key, e->type, "an integer");
    return QNPU_OK;
}

/* An optional number key (float or integer types). */
static qnpu_status get_float(const gguf *g, const char *key, double def, double *out)
{
    const kv *e = find_kv(g, key);
    if (!e) {
        *out = def;
        return QNPU_OK;
    }
    int64_t i;
    int kind = read_number(g->r.data + e->pos, e->type, &i, out);
    if (kind == 1)
        *out = (double)i;
    else if (kind != 2)
        return wrong_type(g, key, e->type, "a number");
    return QNPU_OK;
}

/* A string key; *found = 0 when absent. */
static qnpu_status get_str(const gguf *g, const char *key, str *out, int *found)
{
    const kv *e = find_kv(g, key);
    *found = e != NULL;
    if (!e)
        return QNPU_OK;
    if (e->type != T_STRING)
        return wrong_type(g, key, e->type, "a string");
    reader r = g->r;
    r.pos = e->pos;
    return rd_str(&r, out);
}

/* An array key: its element type, count and the offset of its first element. */
static qnpu_status get_array(const gguf *g, const kv *e, const char *key, uint32_t *etype,
                             uint64_t *count, size_t *first)
{
    if (e->type != T_ARRAY)
        return wrong_type(g, key, e->type, "an array");
    *etype = (uint32_t)le(g->r.data + e->pos, 4);
    *count = le(g->r.data + e->pos + 4, 8);
    *first = e->pos + 12;
    return QNPU_OK;
}

/* ---- hyper-parameters ------------------------------------------------------------------- */

static qnpu_status read_arch(qnpu_model *m, gguf *g)
{
    str a;
    int found;
    TRY(get_str(g, "general.architecture", &a, &found));
    if (!found)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: missing key 'general.architecture'", m->path);
    if (!str_eq(a, "llama") && !str_eq(a, "qwen2"))
        return qnpu__fail(QNPU_ERR_UNSUPPORTED,
                          "%s: general.architecture '%.*s' is not supported (llama or qwen2)",
                          m->path, (int)(a.n > 64 ? 64 : a.n), a.p);
    memcpy(g->arch, a.p, a.n);
    g->arch[a.n] = '\0';
    snprintf(m->arch, sizeof m->arch, "%s", g->arch);
    return QNPU_OK;
}

static qnpu_status read_alignment(gguf *g, uint64_t *align)
{
    int64_t a;
    TRY(get_int(g, "general.alignment", 0, GGUF_DEFAULT_ALIGNMENT, &a));
    if (a < 1 || a > (1 << 30) || (a & (a - 1)))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: general.alignment = %lld is not a power of two",
                          g->r.path, (long long)a);
    *align = (uint64_t)a;
    return QNPU_OK;
}

/* {arch}.suffix into buf */
static const char *akey(const gguf *g, char *buf, size_t cap, const char *suffix)
{
    snprintf(buf, cap, "%s.%s", g->arch, suffix);
    return buf;
}

static qnpu_status read_hparams(qnpu_model *m, const gguf *g)
{
    char k[96];
    int64_t v;
    TRY(get_int(g, akey(g, k, sizeof k, "embedding_length"), 1, 0, &m->dim));
    TRY(get_int(g, akey(g, k, sizeof k, "feed_forward_length"), 1, 0, &m->ffn));
    TRY(get_int(g, akey(g, k, sizeof k, "block_count"), 1, 0, &m->n_layers));
    TRY(get_int(g, akey(g, k, sizeof k, "attention.head_count"), 1, 0, &m->n_heads));
    TRY(get_int(g, akey(g, k, sizeof k, "attention.head_count_kv"), 0, m->n_heads, &m->n_kv_heads));
    TRY(get_int(g, akey(g, k, sizeof k, "context_length"), 1, 0, &m->max_seq));
    TRY(get_float(g, akey(g, k, sizeof k, "rope.freq_base"), 10000.0, &m->rope_theta));
    TRY(get_float(g, akey(g, k, sizeof k, "attention.layer_norm_rms_epsilon"), 1e-5, &m->rms_eps));
    if (m->n_heads <= 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s.attention.head_count = %lld", m->path, g->arch,
                          (long long)m->n_heads);
    int has_key_length = find_kv(g, akey(g, k, sizeof k, "attention.key_length")) != NULL;
    if (has_key_length) {
        TRY(get_int(g, k, 1, 0, &m->head_dim));
    } else {
        if (m->dim % m->n_heads)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s.embedding_length %lld is not a multiple of "
                              "the head count %lld", m->path, g->arch, (long long)m->dim,
                              (long long)m->n_heads);
        m->head_dim = m->dim / m->n_heads;
    }
    /* shapes this library cannot run: values of another width, partial rotary */
    TRY(get_int(g, akey(g, k, sizeof k, "attention.value_length"), 0, m->head_dim, &v));
    if (v != m->head_dim)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: key '%s' = %lld differs from the key length %lld",
                          m->path, k, (long long)v, (long long)m->head_dim);
    TRY(get_int(g, akey(g, k, sizeof k, "rope.dimension_count"), 0, m->head_dim, &v));
    if (v != m->head_dim)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: key '%s' = %lld: partial rotary embeddings "
                          "(head dim %lld) are not supported", m->path, k, (long long)v,
                          (long long)m->head_dim);
    /* llama.cpp keeps Meta's interleaved Q/K order for llama, NEOX (rotate-half) for qwen2 */
    m->rope_half = strcmp(g->arch, "qwen2") == 0;
    return QNPU_OK;
}

static qnpu_status read_special_ids(qnpu_model *m, const gguf *g)
{
    static const char *const keys[2] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    int32_t *dst[2] = {&m->bos, &m->eos};
    for (int i = 0; i < 2; i++) {
        int64_t v;
        TRY(get_int(g, keys[i], 0, *dst[i], &v));
        if (v < 0 || v > INT32_MAX)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: key '%s' = %lld is out of range", m->path,
                              keys[i], (long long)v);
        *dst[i] = (int32_t)v;
    }
    return QNPU_OK;
}

/* ---- tensors ---------------------------------------------------------------------------- */

static qnpu_status add_tensors(qnpu_model *m, const gguf *g, uint64_t align)
{
    const reader *r = &g->r;
    uint64_t start = ((uint64_t)r->pos + align - 1) / align * align;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const tinfo *t = &g->infos[i];
        int nl = (int)(t->name.n > 120 ? 120 : t->name.n);
        if (t->offset % align)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%.*s' offset %llu is not a multiple of "
                              "the alignment %llu", m->path, nl, t->name.p,
                              (unsigned long long)t->offset, (unsigned long long)align);
        /* start <= size + align and nbytes < 2^61, so only a huge offset can overflow */
        if (t->offset > UINT64_MAX / 2 || start + t->offset + t->nbytes > r->size)
            return qnpu__fail(QNPU_ERR_IO, "%s: truncated: tensor '%.*s' needs bytes %llu..%llu, "
                              "the file has %zu", m->path, nl, t->name.p,
                              (unsigned long long)(start + t->offset),
                              (unsigned long long)(start + t->offset + t->nbytes), r->size);
        char *name = qnpu__strndup(t->name.p, t->name.n);
        if (!name)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
        qnpu_status s = qnpu__model_add_tensor(m, name, name, (int)t->type, t->rows, t->cols,
                                               r->data + start + t->offset);
        qnpu__free(name);
        if (s != QNPU_OK)
            return s;
    }
    return QNPU_OK;
}

/* vocab, tied, qkv_bias: facts that depend on which tensors exist */
static qnpu_status read_tensor_facts(qnpu_model *m)
{
    const qnpu__tensor *emb = qnpu__model_tensor(m, "token_embd.weight");
    if (!emb)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", m->path);
    m->vocab = emb->rows;
    m->tied = qnpu__model_tensor(m, "output.weight") == NULL;
    m->qkv_bias = strcmp(m->arch, "qwen2") == 0 && qnpu__model_tensor(m, "blk.0.attn_q.bias");
    return QNPU_OK;
}

/* ---- the embedded SentencePiece vocabulary ---------------------------------------------- */

/* Copy a piece, turning each U+2581 (E2 96 81, SentencePiece's space) into ' '. */
static char *copy_piece(str s, uint32_t *len)
{
    char *d = qnpu__malloc(s.n + 1);
    if (!d)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (i + 2 < s.n && memcmp(s.p + i, "\xe2\x96\x81", 3) == 0) {
            d[n++] = ' ';
            i += 2;
        } else {
            d[n++] = s.p[i];
        }
    }
    d[n] = '\0';
    *len = (uint32_t)n;
    return d;
}

static qnpu_status read_pieces(qnpu_model *m, const gguf *g, const kv *e, qnpu__vocab *v)
{
    const char *key = "tokenizer.ggml.tokens";
    uint32_t et;
    uint64_t n;
    size_t pos;
    TRY(get_array(g, e, key, &et, &n, &pos));
    if (et != T_STRING)
        return wrong_type(g, key, et, "an array of strings");
    if (n == 0 || n > (uint64_t)m->vocab)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: key '%s' holds %llu tokens, token_embd.weight "
                          "has %lld rows", m->path, key, (unsigned long long)n, (long long)m->vocab);
    v->pieces = qnpu__calloc((size_t)n, sizeof *v->pieces);
    v->lens = qnpu__calloc((size_t)n, sizeof *v->lens);
    v->scores = qnpu__calloc((size_t)n, sizeof *v->scores);
    if (!v->pieces || !v->lens || !v->scores)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
    v->n = (int64_t)n;
    reader r = g->r;   /* the array was walked by parse_kvs, so these reads cannot fail */
    r.pos = pos;
    for (int64_t i = 0; i < v->n; i++) {
        str s;
        TRY(rd_str(&r, &s));
        if (!(v->pieces[i] = copy_piece(s, &v->lens[i])))
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
    }
    return QNPU_OK;
}

/* scores (float) or token types (integer): an optional array of n numbers */
static qnpu_status read_numbers(qnpu_model *m, const gguf *g, const char *key, int64_t n,
                                float *scores, int32_t **types)
{
    const kv *e = find_kv(g, key);
    if (!e)
        return QNPU_OK;
    uint32_t et;
    uint64_t count;
    size_t pos;
    TRY(get_array(g, e, key, &et, &count, &pos));
    size_t size = scalar_size(et);
    if (count != (uint64_t)n)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: key '%s' holds %llu values for %lld tokens",
                          m->path, key, (unsigned long long)count, (long long)n);
    if (types && !(*types = qnpu__calloc((size_t)n, sizeof **types)))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
    for (int64_t i = 0; i < n; i++) {
        int64_t iv = 0;
        double fv = 0;
        int kind = size ? read_number(g->r.data + pos + (size_t)i * size, et, &iv, &fv) : 0;
        if (scores && kind == 2)
            scores[i] = (float)fv;
        else if (types && kind == 1 && iv >= INT32_MIN && iv <= INT32_MAX)
            (*types)[i] = (int32_t)iv;
        else
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: key '%s' element %lld is not %s", m->path, key,
                              (long long)i, scores ? "a float" : "a 32-bit integer");
    }
    return QNPU_OK;
}

static qnpu_status read_vocab(qnpu_model *m, const gguf *g)
{
    str model;
    int found;
    TRY(get_str(g, "tokenizer.ggml.model", &model, &found));
    const kv *tokens = find_kv(g, "tokenizer.ggml.tokens");
    if (!found || !str_eq(model, "llama") || !tokens)
        return QNPU_OK;   /* no SentencePiece vocabulary to embed */
    qnpu__vocab *v = qnpu__calloc(1, sizeof *v);
    if (!v)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
    m->vocab_emb = v;   /* freed with the model, also on failure */
    TRY(read_pieces(m, g, tokens, v));
    TRY(read_numbers(m, g, "tokenizer.ggml.scores", v->n, v->scores, NULL));
    TRY(read_numbers(m, g, "tokenizer.ggml.token_type", v->n, NULL, &v->types));
    return QNPU_OK;
}

/* ---- the loader ------------------------------------------------------------------------- */

static qnpu_status parse(qnpu_model *m, gguf *g)
{
    uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    TRY(parse_header(g));
    TRY(parse_kvs(g));
    TRY(read_arch(m, g));
    TRY(read_alignment(g, &align));
    TRY(parse_tensor_infos(g));
    TRY(add_tensors(m, g, align));
    TRY(read_tensor_facts(m));
    TRY(read_hparams(m, g));
    TRY(read_special_ids(m, g));
    TRY(read_vocab(m, g));
    return QNPU_OK;
}

qnpu_status qnpu__load_gguf(qnpu_model *m, const qnpu_options *opts)
{
    qnpu__file *f = &m->files[0];
    qnpu_status s = qnpu__file_open(m->path, (int)qnpu__opt_int(opts, QNPU_P_MODEL_MMAP), f);
    if (s != QNPU_OK)
        return s;
    m->n_files = 1;
    gguf g;
    memset(&g, 0, sizeof g);
    g.r.data = f->data;
    g.r.size = f->size;
    g.r.path = m->path;
    s = parse(m, &g);
    qnpu__free(g.kvs);
    qnpu__free(g.infos);
    return s;
}
