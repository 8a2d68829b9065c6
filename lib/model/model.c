/* model.c — the qnpu_model handle: format dispatch, the tensor registry every loader fills,
 * shape validation, dtype conversion, NaN/Inf rejection and the read-only queries. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../internal.h"

/* Largest dimensions accepted before anything is allocated (a model beyond these is either
 * corrupt or far outside what this library targets). */
#define MAX_DIM    (1 << 20)
#define MAX_LAYERS 4096
#define MAX_HEADS  4096
#define MAX_VOCAB  (1 << 24)
#define MAX_SEQ    (1 << 24)

qnpu_status qnpu__model_add_tensor(qnpu_model *m, const char *name, const char *src_name, int dtype,
                                   int64_t rows, int64_t cols, const void *src)
{
    if (qnpu__model_tensor(m, name))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s' appears twice", m->path, src_name);
    if (m->n_tensors == m->cap_tensors) {
        int64_t cap = m->cap_tensors ? 2 * m->cap_tensors : 64;
        qnpu__tensor *t = qnpu__realloc(m->tensors, (size_t)m->cap_tensors * sizeof *t,
                                        (size_t)cap * sizeof *t);
        if (!t)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
        m->tensors = t;
        m->cap_tensors = cap;
    }
    qnpu__tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = qnpu__strdup(name);
    t->src_name = qnpu__strdup(src_name);
    if (!t->name || !t->src_name) {
        qnpu__free(t->name);
        qnpu__free(t->src_name);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
    }
    t->dtype = dtype;
    t->rows = rows;
    t->cols = cols;
    t->src = src;
    m->n_tensors++;
    return QNPU_OK;
}

qnpu_status qnpu__model_add_owned(qnpu_model *m, const char *name, int64_t rows, int64_t cols,
                                  float *data)
{
    qnpu_status s = qnpu__model_add_tensor(m, name, name, QNPU__F32, rows, cols, data);
    if (s != QNPU_OK)
        return s;
    qnpu__tensor *t = &m->tensors[m->n_tensors - 1];
    t->data = data;
    t->owned = 1;
    m->owned_bytes += (size_t)(rows * cols) * sizeof(float);
    return QNPU_OK;
}

qnpu_status qnpu__model_add_copy(qnpu_model *m, const char *name, int64_t rows, int64_t cols,
                                 const float *src, float **out)
{
    size_t n = (size_t)(rows * cols);
    float *d = qnpu__malloc(n * sizeof(float));
    if (!d)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: tensor '%s': out of memory", m->path, name);
    for (size_t i = 0; i < n; i++)
        d[i] = src ? src[i] : 1.0f;
    qnpu_status s = qnpu__model_add_owned(m, name, rows, cols, d);
    if (s != QNPU_OK) {
        qnpu__free(d);
        return s;
    }
    if (out)
        *out = d;
    return QNPU_OK;
}

qnpu_status qnpu__model_new_like(const qnpu_model *src, qnpu_model **out)
{
    qnpu_model *m = qnpu__calloc(1, sizeof *m);
    if (!m || !(m->path = qnpu__strdup(src->path))) {
        qnpu__free(m);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", src->path);
    }
    m->format = src->format;
    memcpy(m->arch, src->arch, sizeof m->arch);
    m->dim = src->dim;
    m->ffn = src->ffn;
    m->n_layers = src->n_layers;
    m->n_heads = src->n_heads;
    m->n_kv_heads = src->n_kv_heads;
    m->head_dim = src->head_dim;
    m->vocab = src->vocab;
    m->max_seq = src->max_seq;
    m->rope_theta = src->rope_theta;
    m->rms_eps = src->rms_eps;
    m->rope_half = src->rope_half;
    m->tied = src->tied;
    m->qkv_bias = src->qkv_bias;
    m->bos = src->bos;
    m->eos = src->eos;
    *out = m;
    return QNPU_OK;
}

qnpu__tensor *qnpu__model_tensor(const qnpu_model *m, const char *name)
{
    for (int64_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

qnpu_status qnpu__model_check_dims(const qnpu_model *m)
{
    const char *p = m->path;
#define DIM_IN(v, lo, hi, what)                                                                  \
    if ((v) < (lo) || (v) > (hi))                                                                \
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s = %lld is outside [%lld, %lld]", p, what,     \
                          (long long)(v), (long long)(lo), (long long)(hi));
    DIM_IN(m->dim, 1, MAX_DIM, "hidden size");
    DIM_IN(m->ffn, 1, MAX_DIM, "ffn size");
    DIM_IN(m->n_layers, 1, MAX_LAYERS, "layer count");
    DIM_IN(m->n_heads, 1, MAX_HEADS, "head count");
    DIM_IN(m->n_kv_heads, 1, m->n_heads, "kv head count");
    DIM_IN(m->head_dim, 2, MAX_DIM, "head dim");
    DIM_IN(m->vocab, 1, MAX_VOCAB, "vocab size");
    DIM_IN(m->max_seq, 1, MAX_SEQ, "context length");
#undef DIM_IN
    if (m->n_heads % m->n_kv_heads)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %lld heads are not a multiple of %lld kv heads", p,
                          (long long)m->n_heads, (long long)m->n_kv_heads);
    if (m->head_dim % 2)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: head dim %lld is odd (RoPE needs pairs)", p,
                          (long long)m->head_dim);
    if (m->n_heads * m->head_dim > MAX_DIM)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: heads x head dim = %lld is too large", p,
                          (long long)(m->n_heads * m->head_dim));
    if (!(m->rms_eps > 0 && m->rms_eps < 1) || !(m->rope_theta > 1 && isfinite(m->rope_theta)))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: rms_norm_eps %g or rope_theta %g out of range", p,
                          m->rms_eps, m->rope_theta);
    if (m->bos < 0 || m->bos >= m->vocab || m->eos < 0 || m->eos >= m->vocab)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: bos %d or eos %d outside the vocabulary of %lld", p,
                          m->bos, m->eos, (long long)m->vocab);
    return QNPU_OK;
}

/* Make t->data a float32 view of the source bytes, converting where needed. */
static qnpu_status to_f32(qnpu_model *m, qnpu__tensor *t)
{
    size_t n = (size_t)(t->rows * t->cols);
    if (t->dtype == QNPU__F32 && ((uintptr_t)t->src % sizeof(float)) == 0) {
        t->data = (float *)t->src;
        return QNPU_OK;
    }
    float *d = qnpu__calloc(n, sizeof(float));
    if (!d)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: cannot allocate tensor '%s'", m->path, t->src_name);
    const unsigned char *s = t->src;
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == QNPU__F32) {
            memcpy(&d[i], s + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            d[i] = t->dtype == QNPU__F16 ? qnpu__f16_to_f32(h) : qnpu__bf16_to_f32(h);
        }
    }
    t->data = d;
    t->owned = 1;
    m->owned_bytes += n * sizeof(float);
    return QNPU_OK;
}

static qnpu_status check_finite(const qnpu_model *m, const qnpu__tensor *t)
{
    size_t n = (size_t)(t->rows * t->cols);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(t->data[i]))
            return qnpu__fail(QNPU_ERR_NUMERIC, "%s: tensor '%s' holds %s at element %zu (row %zu)",
                              m->path, t->src_name, isnan(t->data[i]) ? "NaN" : "Inf", i,
                              i / (size_t)t->cols);
    return QNPU_OK;
}

/* Look up an expected tensor, check its shape, and return its float32 data. */
static qnpu_status bind(qnpu_model *m, const char *name, int64_t rows, int64_t cols, int check,
                        const float **out)
{
    qnpu__tensor *t = qnpu__model_tensor(m, name);
    if (!t)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: missing tensor '%s'", m->path, name);
    if (t->rows != rows || t->cols != cols)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s' has shape [%lld x %lld], expected [%lld x %lld]",
                          m->path, t->src_name, (long long)t->rows, (long long)t->cols,
                          (long long)rows, (long long)cols);
    if (!t->data) {
        qnpu_status s = to_f32(m, t);
        if (s == QNPU_OK && check)
            s = check_finite(m, t);
        if (s != QNPU_OK)
            return s;
    }
    *out = t->data;
    return QNPU_OK;
}

qnpu_status qnpu__model_finish(qnpu_model *m, const qnpu_options *opts)
{
    qnpu_status s = qnpu__model_check_dims(m);
    if (s != QNPU_OK)
        return s;
    int check = (int)qnpu__opt_int(opts, QNPU_P_MODEL_CHECK_FINITE);
    int64_t d = m->dim, ff = m->ffn, q = m->n_heads * m->head_dim, kv = m->n_kv_heads * m->head_dim;
    m->layers = qnpu__calloc((size_t)m->n_layers, sizeof *m->layers);
    if (!m->layers)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
    char name[96];
#define BIND(ptr, r, c, ...)                                                                     \
    do {                                                                                         \
        snprintf(name, sizeof name, __VA_ARGS__);                                                \
        if ((s = bind(m, name, r, c, check, &(ptr))) != QNPU_OK)                                 \
            return s;                                                                            \
    } while (0)
    BIND(m->tok_embd, m->vocab, d, "token_embd.weight");
    BIND(m->out_norm, 1, d, "output_norm.weight");
    if (m->tied)
        m->output = m->tok_embd;
    else
        BIND(m->output, m->vocab, d, "output.weight");
    for (int64_t l = 0; l < m->n_layers; l++) {
        qnpu__layer *L = &m->layers[l];
        BIND(L->attn_norm, 1, d, "blk.%lld.attn_norm.weight", (long long)l);
        BIND(L->wq, q, d, "blk.%lld.attn_q.weight", (long long)l);
        BIND(L->wk, kv, d, "blk.%lld.attn_k.weight", (long long)l);
        BIND(L->wv, kv, d, "blk.%lld.attn_v.weight", (long long)l);
        BIND(L->wo, d, q, "blk.%lld.attn_output.weight", (long long)l);
        if (m->qkv_bias) {
            BIND(L->bq, 1, q, "blk.%lld.attn_q.bias", (long long)l);
            BIND(L->bk, 1, kv, "blk.%lld.attn_k.bias", (long long)l);
            BIND(L->bv, 1, kv, "blk.%lld.attn_v.bias", (long long)l);
        }
        BIND(L->ffn_norm, 1, d, "blk.%lld.ffn_norm.weight", (long long)l);
        BIND(L->w_gate, ff, d, "blk.%lld.ffn_gate.weight", (long long)l);
        BIND(L->w_up, ff, d, "blk.%lld.ffn_up.weight", (long long)l);
        BIND(L->w_down, d, ff, "blk.%lld.ffn_down.weight", (long long)l);
    }
#undef BIND
    /* Tensors the graph does not use must still be readable through the API. */
    for (int64_t i = 0; i < m->n_tensors; i++)
        if (!m->tensors[i].data && (s = to_f32(m, &m->tensors[i])) != QNPU_OK)
            return s;
    return QNPU_OK;
}

void qnpu__vocab_free(qnpu__vocab *v)
{
    if (!v)
        return;
    for (int64_t i = 0; i < v->n && v->pieces; i++)
        qnpu__free(v->pieces[i]);
    qnpu__free(v->pieces);
    qnpu__free(v->lens);
    qnpu__free(v->scores);
    qnpu__free(v->types);
    qnpu__free(v->bpe);
    qnpu__free(v);
}

void qnpu__model_destroy(qnpu_model *m)
{
    for (int64_t i = 0; i < m->n_tensors; i++) {
        qnpu__free(m->tensors[i].name);
        qnpu__free(m->tensors[i].src_name);
        if (m->tensors[i].owned)
            qnpu__free(m->tensors[i].data);
    }
    qnpu__free(m->tensors);
    qnpu__free(m->layers);
    for (int i = 0; i < m->n_files; i++)
        qnpu__file_close(&m->files[i]);
    qnpu__vocab_free(m->vocab_emb);
    for (int64_t l = 0; m->r4 && l < m->n_layers; l++)
        m->r4_free(m->r4[l]);
    qnpu__free(m->r4);
    qnpu__free(m->tokenizer_path);
    qnpu__free(m->path);
    qnpu__free(m);
}

qnpu_status qnpu_model_load(const char *path, const qnpu_options *opts, qnpu_model **out)
{
    if (!path || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_load: NULL argument");
    *out = NULL;
    qnpu_model *m = qnpu__calloc(1, sizeof *m);
    if (!m || !(m->path = qnpu__strdup(path))) {
        qnpu__free(m);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    /* defaults every loader may override */
    m->rope_theta = 10000.0;
    m->rms_eps = 1e-5;
    m->bos = 1;
    m->eos = 2;
    strcpy(m->arch, "llama");

    qnpu_status s;
    if (qnpu__is_dir(path)) {
        m->format = "safetensors";
        s = qnpu__load_hf(m, opts);
    } else {
        qnpu__file probe;
        s = qnpu__file_open(path, 1, &probe);
        if (s == QNPU_OK) {
            int gguf = probe.size >= 4 && memcmp(probe.data, "GGUF", 4) == 0;
            qnpu__file_close(&probe);
            m->format = gguf ? "gguf" : "llama2c";
            s = gguf ? qnpu__load_gguf(m, opts) : qnpu__load_llama2c(m, opts);
        }
    }
    if (s == QNPU_OK)
        s = qnpu__model_finish(m, opts);
    if (s != QNPU_OK) {
        qnpu__model_destroy(m);
        return s;
    }
    qnpu__handle_acquire();
    *out = m;
    return QNPU_OK;
}

void qnpu_model_free(qnpu_model *m)
{
    if (!m)
        return;
    qnpu__model_destroy(m);
    qnpu__handle_release();
}

qnpu_status qnpu_model_get_dim(const qnpu_model *m, qnpu_model_dim which, int64_t *out)
{
    if (!m || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_get_dim: NULL argument");
    switch (which) {
    case QNPU_DIM_HIDDEN: *out = m->dim; break;
    case QNPU_DIM_FFN: *out = m->ffn; break;
    case QNPU_DIM_LAYERS: *out = m->n_layers; break;
    case QNPU_DIM_HEADS: *out = m->n_heads; break;
    case QNPU_DIM_KV_HEADS: *out = m->n_kv_heads; break;
    case QNPU_DIM_HEAD_DIM: *out = m->head_dim; break;
    case QNPU_DIM_VOCAB: *out = m->vocab; break;
    case QNPU_DIM_MAX_SEQ: *out = m->max_seq; break;
    case QNPU_DIM_ROPE_ORDER: *out = m->rope_half; break;
    case QNPU_DIM_TIED: *out = m->tied; break;
    case QNPU_DIM_QKV_BIAS: *out = m->qkv_bias; break;
    case QNPU_DIM_BOS: *out = m->bos; break;
    case QNPU_DIM_EOS: *out = m->eos; break;
    default:
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_get_dim: unknown dimension %d", (int)which);
    }
    return QNPU_OK;
}

qnpu_status qnpu_model_get_hparam(const qnpu_model *m, qnpu_model_hparam which, double *out)
{
    if (!m || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_get_hparam: NULL argument");
    switch (which) {
    case QNPU_HP_ROPE_THETA: *out = m->rope_theta; return QNPU_OK;
    case QNPU_HP_RMS_EPS: *out = m->rms_eps; return QNPU_OK;
    }
    return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_get_hparam: unknown parameter %d", (int)which);
}

const char *qnpu_model_arch(const qnpu_model *m) { return m ? m->arch : NULL; }
const char *qnpu_model_format(const qnpu_model *m) { return m ? m->format : NULL; }
int64_t qnpu_model_tensor_count(const qnpu_model *m) { return m ? m->n_tensors : 0; }

const char *qnpu_model_tensor_name(const qnpu_model *m, int64_t i)
{
    return m && i >= 0 && i < m->n_tensors ? m->tensors[i].name : NULL;
}

qnpu_status qnpu_model_tensor_find(const qnpu_model *m, const char *name, int64_t *index)
{
    if (!m || !name || !index)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_tensor_find: NULL argument");
    const qnpu__tensor *t = qnpu__model_tensor(m, name);
    if (!t)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: no tensor named '%s'", m->path, name);
    *index = t - m->tensors;
    return QNPU_OK;
}

qnpu_status qnpu_model_tensor_shape(const qnpu_model *m, int64_t i, int64_t *rows, int64_t *cols)
{
    if (!m || i < 0 || i >= m->n_tensors)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_tensor_shape: no tensor %lld", (long long)i);
    if (rows) *rows = m->tensors[i].rows;
    if (cols) *cols = m->tensors[i].cols;
    return QNPU_OK;
}

qnpu_status qnpu_model_tensor_read(const qnpu_model *m, int64_t i, float *dst, size_t cap)
{
    if (!m || !dst || i < 0 || i >= m->n_tensors)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_tensor_read: no tensor %lld or NULL buffer",
                          (long long)i);
    const qnpu__tensor *t = &m->tensors[i];
    size_t n = (size_t)(t->rows * t->cols);
    if (cap < n)
        return qnpu__fail(QNPU_ERR_BUFFER_TOO_SMALL, "tensor '%s' needs %zu floats, buffer holds %zu",
                          t->name, n, cap);
    memcpy(dst, t->data, n * sizeof(float));
    return QNPU_OK;
}

qnpu_status qnpu_model_memory_usage(const qnpu_model *m, size_t *owned, size_t *mapped)
{
    if (!m)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_model_memory_usage: NULL model");
    size_t mp = 0, own = m->owned_bytes + sizeof *m + (size_t)m->cap_tensors * sizeof(qnpu__tensor);
    for (int i = 0; i < m->n_files; i++)
        *(m->files[i].mapped ? &mp : &own) += m->files[i].size;
    if (owned) *owned = own;
    if (mapped) *mapped = mp;
    return QNPU_OK;
}
