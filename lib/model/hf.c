/* hf.c — loader for Hugging Face model directories (config.json + safetensors).
 *
 * A directory holds
 *   config.json                      hyper-parameters: architectures[0] (LlamaForCausalLM or
 *                                    Qwen2ForCausalLM), hidden_size, intermediate_size, ...
 *   model.safetensors                all weights in one file, or
 *   model.safetensors.index.json     {"weight_map": {"<tensor>": "<shard file>", ...}} naming
 *   model-00001-of-0000N.safetensors the shards that hold each tensor.
 *
 * A safetensors file is: uint64 little-endian N, then N bytes of JSON (not NUL-terminated,
 * possibly padded with spaces), then the data section. The JSON maps each tensor name to
 * {"dtype": "F32"|"F16"|"BF16"|..., "shape": [d0, d1, ...], "data_offsets": [begin, end]},
 * offsets relative to the first byte after the header; "__metadata__" holds free-form strings.
 * Weights are row-major [out][in], exactly what the model wants, so tensors are registered as
 * pointers into the mapped files. HF stores Q/K rows in rotate-half RoPE order (rope_half = 1).
 *
 * Names map to the canonical (GGUF) ones: model.embed_tokens.weight -> token_embd.weight,
 * model.layers.N.self_attn.q_proj.weight -> blk.N.attn_q.weight, and so on (see the tables
 * below); tensors without a canonical name (rotary_emb.inv_freq, ...) are skipped. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../internal.h"
#include "json.h"

/* The reference safetensors implementation refuses headers above 100 MB. */
#define MAX_HEADER_BYTES 100000000ull

/* ---- small helpers ---------------------------------------------------------------------- */

static int is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static qnpu_status oom(const char *path)
{
    return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
}

/* Read and parse a whole JSON file. */
static qnpu_status read_json_file(const char *path, qnpu__json_doc **out)
{
    char *text;
    size_t len;
    qnpu_status s = qnpu__read_text(path, &text, &len);
    if (s != QNPU_OK)
        return s;
    s = qnpu__json_parse(path, text, len, out);
    qnpu__free(text);
    return s;
}

/* ---- config.json ------------------------------------------------------------------------ */

typedef struct config {
    const char *path;          /* full path of config.json, for messages */
    const qnpu__json *root;
} config;

/* A value that is absent or JSON null counts as "not given". */
static const qnpu__json *cfg_get(const config *c, const char *key)
{
    const qnpu__json *v = qnpu__json_get(c->root, key);
    return qnpu__json_is_null(v) ? NULL : v;
}

static qnpu_status cfg_missing(const config *c, const char *key)
{
    return qnpu__fail(QNPU_ERR_FORMAT, "%s: required key '%s' is missing", c->path, key);
}

static qnpu_status cfg_wrong_type(const config *c, const char *key, const char *want)
{
    return qnpu__fail(QNPU_ERR_FORMAT, "%s: key '%s' must be %s, found %s", c->path, key, want,
                      qnpu__json_type_name(qnpu__json_get(c->root, key)));
}

/* A positive integer dimension; `def` <= 0 means required. */
static qnpu_status cfg_dim(const config *c, const char *key, int64_t def, int64_t *out)
{
    const qnpu__json *v = cfg_get(c, key);
    if (!v) {
        if (def <= 0)
            return cfg_missing(c, key);
        *out = def;
        return QNPU_OK;
    }
    if (!qnpu__json_int(v, out))
        return cfg_wrong_type(c, key, "an integer");
    if (*out <= 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: key '%s' must be positive, found %lld", c->path,
                          key, (long long)*out);
    return QNPU_OK;
}

static qnpu_status cfg_number(const config *c, const char *key, double def, double *out)
{
    const qnpu__json *v = cfg_get(c, key);
    *out = def;
    if (v && !qnpu__json_number(v, out))
        return cfg_wrong_type(c, key, "a number");
    return QNPU_OK;
}

static qnpu_status cfg_bool(const config *c, const char *key, int def, int *out)
{
    const qnpu__json *v = cfg_get(c, key);
    *out = def;
    if (v && !qnpu__json_bool(v, out))
        return cfg_wrong_type(c, key, "true or false");
    return QNPU_OK;
}

/* bos_token_id / eos_token_id: used when an integer (or a list whose first item is one, as in
 * configs with several EOS ids); anything else keeps the default. */
static void cfg_token(const config *c, const char *key, int32_t *out)
{
    const qnpu__json *v = cfg_get(c, key);
    if (v && v->type == QNPU__JSON_ARRAY)
        v = qnpu__json_at(v, 0);
    int64_t id;
    if (qnpu__json_int(v, &id) && id >= INT32_MIN && id <= INT32_MAX)
        *out = (int32_t)id;
}

/* architectures[0] -> m->arch and the per-architecture flags. */
static qnpu_status cfg_arch(const config *c, qnpu_model *m)
{
    const qnpu__json *arr = cfg_get(c, "architectures");
    if (!arr)
        return cfg_missing(c, "architectures");
    const char *name = qnpu__json_string(qnpu__json_at(arr, 0));
    if (!name)
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: key 'architectures' must be a list whose first item is a string",
                          c->path);
    if (strcmp(name, "LlamaForCausalLM") == 0) {
        strcpy(m->arch, "llama");
        m->qkv_bias = 0;
    } else if (strcmp(name, "Qwen2ForCausalLM") == 0) {
        strcpy(m->arch, "qwen2");
        m->qkv_bias = 1;
    } else {
        return qnpu__fail(QNPU_ERR_UNSUPPORTED,
                          "%s: architecture '%.200s' is not supported (LlamaForCausalLM, "
                          "Qwen2ForCausalLM)", c->path, name);
    }
    return QNPU_OK;
}

/* Features of the HF configs that the float engine does not implement. */
static qnpu_status cfg_reject_unsupported(const config *c, const qnpu_model *m)
{
    const qnpu__json *v = cfg_get(c, "hidden_act");
    const char *act = qnpu__json_string(v);
    if (v && !act)
        return cfg_wrong_type(c, "hidden_act", "a string");
    if (act && strcmp(act, "silu") != 0)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: key 'hidden_act' is \"%.40s\"; only \"silu\" "
                          "is supported", c->path, act);
    if (cfg_get(c, "rope_scaling"))
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: key 'rope_scaling' is set; RoPE scaling is "
                          "not supported", c->path);
    static const char *const llama_bias_keys[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < 2 && strcmp(m->arch, "llama") == 0; i++) {
        int on;
        qnpu_status s = cfg_bool(c, llama_bias_keys[i], 0, &on);
        if (s != QNPU_OK)
            return s;
        if (on)
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: key '%s' is true; Llama projections "
                              "with biases are not supported", c->path, llama_bias_keys[i]);
    }
    return QNPU_OK;
}

/* Fill the dimensions and hyper-parameters of `m` from the parsed config. */
static qnpu_status cfg_fill(const config *c, qnpu_model *m)
{
    qnpu_status s;
    if ((s = cfg_arch(c, m)) != QNPU_OK || (s = cfg_reject_unsupported(c, m)) != QNPU_OK)
        return s;
    if ((s = cfg_dim(c, "hidden_size", 0, &m->dim)) != QNPU_OK ||
        (s = cfg_dim(c, "intermediate_size", 0, &m->ffn)) != QNPU_OK ||
        (s = cfg_dim(c, "num_hidden_layers", 0, &m->n_layers)) != QNPU_OK ||
        (s = cfg_dim(c, "num_attention_heads", 0, &m->n_heads)) != QNPU_OK ||
        (s = cfg_dim(c, "num_key_value_heads", m->n_heads, &m->n_kv_heads)) != QNPU_OK ||
        (s = cfg_dim(c, "vocab_size", 0, &m->vocab)) != QNPU_OK ||
        (s = cfg_dim(c, "max_position_embeddings", 0, &m->max_seq)) != QNPU_OK)
        return s;
    if (!cfg_get(c, "head_dim") && m->dim % m->n_heads)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: hidden_size %lld is not a multiple of "
                          "num_attention_heads %lld and no head_dim is given", c->path,
                          (long long)m->dim, (long long)m->n_heads);
    if ((s = cfg_dim(c, "head_dim", m->dim / m->n_heads, &m->head_dim)) != QNPU_OK ||
        (s = cfg_number(c, "rope_theta", 10000.0, &m->rope_theta)) != QNPU_OK ||
        (s = cfg_number(c, "rms_norm_eps", 1e-6, &m->rms_eps)) != QNPU_OK ||
        (s = cfg_bool(c, "tie_word_embeddings", 0, &m->tied)) != QNPU_OK)
        return s;
    cfg_token(c, "bos_token_id", &m->bos);
    cfg_token(c, "eos_token_id", &m->eos);
    m->rope_half = 1;
    return qnpu__model_check_dims(m);
}

static qnpu_status load_config(qnpu_model *m)
{
    char *path = qnpu__path_join(m->path, "config.json");
    if (!path)
        return oom(m->path);
    qnpu__json_doc *doc = NULL;
    qnpu_status s = read_json_file(path, &doc);
    if (s == QNPU_OK) {
        config c = {path, qnpu__json_root(doc)};
        if (c.root->type != QNPU__JSON_OBJECT)
            s = qnpu__fail(QNPU_ERR_FORMAT, "%s: expected a JSON object, found %s", path,
                           qnpu__json_type_name(c.root));
        else
            s = cfg_fill(&c, m);
    }
    qnpu__json_free(doc);
    qnpu__free(path);
    return s;
}

/* ---- tensor names ----------------------------------------------------------------------- */

typedef struct name_map {
    const char *hf, *canon;
} name_map;

static const name_map global_names[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

/* Suffixes after "model.layers.N."; the canonical name is "blk.N." + canon. */
static const name_map layer_names[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Parse "N." (a layer number without leading zeros) at *p; -1 if it is not one. */
static long layer_number(const char **p)
{
    const char *s = *p;
    long n = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 7) {
        n = n * 10 + (*s++ - '0');
        digits++;
    }
    if (digits == 0 || *s != '.' || (digits > 1 && **p == '0'))
        return -1;
    *p = s + 1;
    return n;
}

/* The canonical name of an HF tensor into out; 0 if the tensor is not used. */
static int canonical_name(const char *hf, int tied, char *out, size_t cap)
{
    for (size_t i = 0; i < COUNT(global_names); i++)
        if (strcmp(hf, global_names[i].hf) == 0) {
            if (tied && strcmp(global_names[i].canon, "output.weight") == 0)
                return 0; /* the classifier is the embedding */
            snprintf(out, cap, "%s", global_names[i].canon);
            return 1;
        }
    static const char prefix[] = "model.layers.";
    if (strncmp(hf, prefix, sizeof prefix - 1) != 0)
        return 0;
    const char *rest = hf + sizeof prefix - 1;
    long layer = layer_number(&rest);
    if (layer < 0)
        return 0;
    for (size_t i = 0; i < COUNT(layer_names); i++)
        if (strcmp(rest, layer_names[i].hf) == 0) {
            snprintf(out, cap, "blk.%ld.%s", layer, layer_names[i].canon);
            return 1;
        }
    return 0;
}

/* ---- safetensors ------------------------------------------------------------------------ */

typedef struct st_dtype {
    const char *name;
    int size;        /* bytes per element */
    int qnpu;        /* qnpu__dtype, or -1 when known but not supported */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, QNPU__F32},  {"F16", 2, QNPU__F16}, {"BF16", 2, QNPU__BF16},
    {"F64", 8, -1},         {"I64", 8, -1},        {"U64", 8, -1},
    {"I32", 4, -1},         {"U32", 4, -1},        {"I16", 2, -1},
    {"U16", 2, -1},         {"I8", 1, -1},         {"U8", 1, -1},
    {"BOOL", 1, -1},        {"F8_E4M3", 1, -1},    {"F8_E5M2", 1, -1},
};

static const st_dtype *find_dtype(const char *name)
{
    for (size_t i = 0; i < COUNT(st_dtypes); i++)
        if (strcmp(name, st_dtypes[i].name) == 0)
            return &st_dtypes[i];
    return NULL;
}

/* One open safetensors file. */
typedef struct shard {
    const char *path;
    const unsigned char *data; /* first byte after the header */
    size_t data_size;
    qnpu__json_doc *header;
    const qnpu__json *root;    /* the header object */
} shard;

/* A validated header entry. */
typedef struct st_tensor {
    const st_dtype *dtype;     /* NULL: unknown dtype string */
    const char *dtype_name;
    int64_t dims[2];
    size_t rank;
    const unsigned char *bytes;
} st_tensor;

/* Map the file into m->files and parse its JSON header. */
static qnpu_status shard_open(qnpu_model *m, const qnpu_options *opts, const char *path, shard *sh)
{
    memset(sh, 0, sizeof *sh);
    sh->path = path;
    if (m->n_files >= QNPU__MAX_SHARDS)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: more than %d safetensors files", path,
                          QNPU__MAX_SHARDS);
    qnpu__file *f = &m->files[m->n_files];
    qnpu_status s = qnpu__file_open(path, (int)qnpu__opt_int(opts, QNPU_P_MODEL_MMAP), f);
    if (s != QNPU_OK)
        return s;
    m->n_files++;
    if (f->size < 8)
        return qnpu__fail(QNPU_ERR_IO, "%s: truncated: %zu bytes, the header length needs 8",
                          path, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | f->data[i];
    if (n > MAX_HEADER_BYTES)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: header length %llu is absurd (limit %llu)", path,
                          (unsigned long long)n, MAX_HEADER_BYTES);
    if (n > f->size - 8)
        return qnpu__fail(QNPU_ERR_IO, "%s: truncated: header length %llu, but only %zu bytes "
                          "follow", path, (unsigned long long)n, f->size - 8);
    sh->data = f->data + 8 + n;
    sh->data_size = f->size - 8 - (size_t)n;
    if ((s = qnpu__json_parse(path, f->data + 8, (size_t)n, &sh->header)) != QNPU_OK)
        return s;
    sh->root = qnpu__json_root(sh->header);
    if (sh->root->type != QNPU__JSON_OBJECT)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: the header is a JSON %s, expected an object",
                          path, qnpu__json_type_name(sh->root));
    return QNPU_OK;
}

static void shard_close(shard *sh)
{
    qnpu__json_free(sh->header);
    sh->header = NULL;
}

static qnpu_status entry_error(const shard *sh, const char *name, const char *what)
{
    return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s': %s", sh->path, name, what);
}

/* Read "shape" (non-negative integers) and its element count. */
static qnpu_status entry_shape(const shard *sh, const char *name, const qnpu__json *shape,
                               st_tensor *t, size_t *count)
{
    if (!shape || shape->type != QNPU__JSON_ARRAY)
        return entry_error(sh, name, "'shape' must be a list of integers");
    t->rank = shape->len;
    *count = 1;
    size_t i = 0;
    for (const qnpu__json *d = shape->first; d; d = d->next, i++) {
        int64_t v;
        if (!qnpu__json_int(d, &v) || v < 0)
            return entry_error(sh, name, "'shape' must be a list of non-negative integers");
        if (!qnpu__mul_ok(*count, (size_t)v, count))
            return entry_error(sh, name, "'shape' overflows");
        if (i < 2)
            t->dims[i] = v;
    }
    return QNPU_OK;
}

/* Read "data_offsets" as [begin, end] with 0 <= begin <= end. */
static qnpu_status entry_offsets(const shard *sh, const char *name, const qnpu__json *offs,
                                 int64_t *begin, int64_t *end)
{
    if (!offs || offs->type != QNPU__JSON_ARRAY || offs->len != 2 ||
        !qnpu__json_int(qnpu__json_at(offs, 0), begin) ||
        !qnpu__json_int(qnpu__json_at(offs, 1), end) || *begin < 0 || *end < *begin)
        return entry_error(sh, name, "'data_offsets' must be [begin, end] with 0 <= begin <= end");
    return QNPU_OK;
}

/* Validate one header entry. `used`: the model needs this tensor, so its dtype must be
 * supported and its rank 1 or 2. An unused tensor with an unknown dtype is skipped
 * (t->dtype stays NULL). */
static qnpu_status entry_read(const shard *sh, const char *name, const qnpu__json *v, int used,
                              st_tensor *t)
{
    memset(t, 0, sizeof *t);
    if (!v || v->type != QNPU__JSON_OBJECT)
        return entry_error(sh, name, "the header entry is not an object");
    t->dtype_name = qnpu__json_string(qnpu__json_get(v, "dtype"));
    if (!t->dtype_name)
        return entry_error(sh, name, "'dtype' must be a string");
    size_t count;
    int64_t begin, end;
    qnpu_status s = entry_shape(sh, name, qnpu__json_get(v, "shape"), t, &count);
    if (s == QNPU_OK)
        s = entry_offsets(sh, name, qnpu__json_get(v, "data_offsets"), &begin, &end);
    if (s != QNPU_OK)
        return s;
    t->dtype = find_dtype(t->dtype_name);
    if (!t->dtype && used)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: tensor '%s' has unknown dtype '%.40s'",
                          sh->path, name, t->dtype_name);
    if (!t->dtype)
        return QNPU_OK;
    size_t bytes;
    if (!qnpu__mul_ok(count, (size_t)t->dtype->size, &bytes) || bytes != (uint64_t)(end - begin))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s': shape holds %zu %s elements but "
                          "data_offsets [%lld, %lld] span %lld bytes", sh->path, name, count,
                          t->dtype->name, (long long)begin, (long long)end,
                          (long long)(end - begin));
    if ((uint64_t)end > sh->data_size)
        return qnpu__fail(QNPU_ERR_IO, "%s: truncated: tensor '%s' needs data bytes %lld..%lld, "
                          "the data section has %zu", sh->path, name, (long long)begin,
                          (long long)end, sh->data_size);
    if (used && t->dtype->qnpu < 0)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; only F32, F16 "
                          "and BF16 are supported", sh->path, name, t->dtype->name);
    if (used && (t->rank < 1 || t->rank > 2))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s' has %zu dimensions, expected 1 or 2",
                          sh->path, name, t->rank);
    t->bytes = sh->data + begin;
    return QNPU_OK;
}

/* Validate the header entry `v` of tensor `name` and register it if the model uses it. */
static qnpu_status add_entry(qnpu_model *m, const shard *sh, const char *name, const qnpu__json *v)
{
    char canon[96];
    int used = canonical_name(name, m->tied, canon, sizeof canon);
    st_tensor t;
    qnpu_status s = entry_read(sh, name, v, used, &t);
    if (s != QNPU_OK || !used)
        return s;
    int64_t rows = t.rank == 2 ? t.dims[0] : 1, cols = t.rank == 2 ? t.dims[1] : t.dims[0];
    return qnpu__model_add_tensor(m, canon, name, t.dtype->qnpu, rows, cols, t.bytes);
}

/* model.safetensors: every header entry. */
static qnpu_status load_single(qnpu_model *m, const qnpu_options *opts, const char *path)
{
    shard sh;
    qnpu_status s = shard_open(m, opts, path, &sh);
    const qnpu__json *e = s == QNPU_OK ? sh.root->first : NULL;
    for (; s == QNPU_OK && e; e = e->next)
        if (strcmp(e->key, "__metadata__") != 0)
            s = add_entry(m, &sh, e->key, e);
    shard_close(&sh);
    return s;
}

/* ---- the sharded layout ----------------------------------------------------------------- */

typedef struct index_file {
    const char *path;
    qnpu__json_doc *doc;
    const qnpu__json *weight_map;
    const char *shards[QNPU__MAX_SHARDS]; /* distinct file names, in order of appearance */
    int n_shards;
} index_file;

/* Shard names must be plain file names inside the directory. */
static int plain_file_name(const char *s)
{
    return s[0] && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Check weight_map and collect its distinct shard names. */
static qnpu_status index_collect(index_file *ix)
{
    for (const qnpu__json *e = ix->weight_map->first; e; e = e->next) {
        const char *file = qnpu__json_string(e);
        if (!file || strlen(file) != e->len || !plain_file_name(file))
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: weight_map entry '%s' must be a file name "
                              "in the model directory", ix->path, e->key);
        int seen = 0;
        for (int i = 0; i < ix->n_shards && !seen; i++)
            seen = strcmp(ix->shards[i], file) == 0;
        if (seen)
            continue;
        if (ix->n_shards == QNPU__MAX_SHARDS)
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: more than %d shard files", ix->path,
                              QNPU__MAX_SHARDS);
        ix->shards[ix->n_shards++] = file;
    }
    if (ix->n_shards == 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: weight_map is empty", ix->path);
    return QNPU_OK;
}

/* Register every tensor that weight_map places in shard `file`. */
static qnpu_status index_load_shard(qnpu_model *m, const qnpu_options *opts, const index_file *ix,
                                    const char *file)
{
    char *path = qnpu__path_join(m->path, file);
    if (!path)
        return oom(m->path);
    shard sh;
    qnpu_status s = shard_open(m, opts, path, &sh);
    for (const qnpu__json *e = ix->weight_map->first; s == QNPU_OK && e; e = e->next) {
        if (strcmp(qnpu__json_string(e), file) != 0)
            continue;
        const qnpu__json *v = qnpu__json_get(sh.root, e->key);
        if (!v)
            s = qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s' is listed in %s but missing from "
                           "this shard", path, e->key, ix->path);
        else
            s = add_entry(m, &sh, e->key, v);
    }
    shard_close(&sh);
    qnpu__free(path);
    return s;
}

static qnpu_status load_sharded(qnpu_model *m, const qnpu_options *opts, const char *index_path)
{
    index_file *ix = qnpu__calloc(1, sizeof *ix);
    if (!ix)
        return oom(index_path);
    ix->path = index_path;
    qnpu_status s = read_json_file(index_path, &ix->doc);
    if (s == QNPU_OK) {
        ix->weight_map = qnpu__json_get(qnpu__json_root(ix->doc), "weight_map");
        if (!ix->weight_map || ix->weight_map->type != QNPU__JSON_OBJECT)
            s = qnpu__fail(QNPU_ERR_FORMAT, "%s: key 'weight_map' must be an object, found %s",
                           index_path, qnpu__json_type_name(ix->weight_map));
    }
    if (s == QNPU_OK)
        s = index_collect(ix);
    for (int i = 0; s == QNPU_OK && i < ix->n_shards; i++)
        s = index_load_shard(m, opts, ix, ix->shards[i]);
    qnpu__json_free(ix->doc);
    qnpu__free(ix);
    return s;
}

/* ---- entry point ------------------------------------------------------------------------ */

static qnpu_status load_weights(qnpu_model *m, const qnpu_options *opts)
{
    char *single = qnpu__path_join(m->path, "model.safetensors");
    char *index = qnpu__path_join(m->path, "model.safetensors.index.json");
    qnpu_status s;
    if (!single || !index)
        s = oom(m->path);
    else if (is_regular_file(single))
        s = load_single(m, opts, single);
    else if (is_regular_file(index))
        s = load_sharded(m, opts, index);
    else
        s = qnpu__fail(QNPU_ERR_IO, "%s: found neither model.safetensors nor "
                       "model.safetensors.index.json", m->path);
    qnpu__free(single);
    qnpu__free(index);
    return s;
}

qnpu_status qnpu__load_hf(qnpu_model *m, const qnpu_options *opts)
{
    qnpu_status s = load_config(m);
    if (s == QNPU_OK)
        s = load_weights(m, opts);
    return s;
}
