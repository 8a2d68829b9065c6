/* gen_fuzz_corpus.c — write the seed corpora of the libFuzzer harnesses (test/fuzz/, see
 * docs/fuzzing.md) from tiny synthetic models; nothing is taken from ../shared.
 *
 *   gen_fuzz_corpus DIR      (make fuzz-corpus: DIR = test/fuzz/corpus)
 *
 * writes one directory DIR/NAME per harness:
 *   llama2c      llama2.c checkpoints (tied, untied with GQA), and a truncated one;
 *   gguf         GGUF v3 files: llama F32 with an embedded SentencePiece vocabulary, llama F16
 *                untied with 64-byte alignment and 64-bit keys, qwen2 BF16 with q/k/v biases;
 *   safetensors  the harness's part layouts (see fuzz_safetensors.c): a lone model.safetensors,
 *                config.json + model.safetensors (F16 tied; Qwen2 BF16 with biases), and
 *                config.json + index + one shard;
 *   tokenizer    a llama2.c tokenizer.bin behind each mode byte, and texts for the fixed tokenizer;
 *   qnpu         .qnpu files written by qnpu_qmodel_save after calibrating the tiny models
 *                (plain; with a tokenizer; with biases and R4 rotations), stored "unsealed"
 *                (every CRC field zero, see fuzz_qnpu.c);
 *   encodings    the QNN encodings (schema 0.6.1 and 1.0.0) of those models, by
 *                qnpu__encodings_write;
 *   tokenizer_json  byte-level BPE tokenizer.json files (a lone ByteLevel pre-tokenizer; Split +
 *                ByteLevel with NFC, array merges and ignore_merges; a tokenizer_config.json
 *                part and a text part; see fuzz_tokenizer_json.c).
 * The recipe seeds are the repository's YAML files (the Makefile copies them).
 * Weights come from a fixed LCG, so the output is the same on every run. Every file is a few KiB. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "export/encodings.h"
#include "export/qnpu_file.h"

#define SEP "\n#qnpu-fuzz-part#\n" /* fuzz_safetensors.c */

/* ---- output ---------------------------------------------------------------------------------- */

static const char *root;

static void die(const char *what)
{
    fprintf(stderr, "gen_fuzz_corpus: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static void check(qnpu_status s, const char *what)
{
    if (s != QNPU_OK) {
        fprintf(stderr, "gen_fuzz_corpus: %s: %s\n", what, qnpu_last_error());
        exit(1);
    }
}

static const char *path_of(const char *dir, const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, dir);
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        die(p);
    snprintf(p, sizeof p, "%s/%s/%s", root, dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
        die(path);
}

/* A growing byte buffer. */
typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        if (!(b->p = realloc(b->p, b->cap)))
            die("realloc");
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_u8(buf *b, unsigned v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void put_u16(buf *b, unsigned v) { put_u8(b, v & 0xff); put_u8(b, (v >> 8) & 0xff); }
static void put_u32(buf *b, uint32_t v) { put_u16(b, v & 0xffff); put_u16(b, v >> 16); }
static void put_u64(buf *b, uint64_t v) { put_u32(b, (uint32_t)v); put_u32(b, (uint32_t)(v >> 32)); }
static void put_f32(buf *b, float f) { uint32_t u; memcpy(&u, &f, 4); put_u32(b, u); }
static void put_text(buf *b, const char *s) { put(b, s, strlen(s)); }
static void pad_to(buf *b, size_t align) { while (b->n % align) put_u8(b, 0); }

static void save_buf(const char *dir, const char *name, const buf *b)
{
    write_file(path_of(dir, name), b->p, b->n);
}

/* ---- tiny models ----------------------------------------------------------------------------- */

typedef struct shape {
    const char *arch;          /* "llama" or "qwen2" */
    int dim, ffn, layers, heads, kv_heads, vocab, seq;
    int tied, bias;
} shape;

static const shape LLAMA = {"llama", 8, 16, 1, 2, 1, 32, 16, 0, 0};
static const shape LLAMA_TIED = {"llama", 8, 16, 1, 2, 1, 32, 16, 1, 0};
static const shape LLAMA2 = {"llama", 8, 16, 2, 2, 2, 32, 16, 0, 0};
static const shape QWEN2 = {"qwen2", 8, 16, 1, 2, 1, 32, 16, 0, 1};
static const shape LLAMA_BPE = {"llama", 8, 16, 1, 2, 1, 270, 16, 1, 0}; /* the tokenizer.json's vocab */

/* One tensor of a model: canonical (GGUF) and Hugging Face names, row-major [rows][cols]
 * (rows 1 for vectors), values. */
typedef struct tensor {
    char canon[64], hf[96];
    int rows, cols, is_vector;
    float *v;
} tensor;

static uint64_t lcg = 0x9E3779B97F4A7C15ull;

static float rnd(float lo, float hi)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)(lcg >> 40) / 16777216.0f;
}

static int add_tensor(tensor *t, int n, const char *canon, const char *hf, int rows, int cols,
                      int vec, float lo, float hi)
{
    tensor *x = &t[n];
    snprintf(x->canon, sizeof x->canon, "%s", canon);
    snprintf(x->hf, sizeof x->hf, "%s", hf);
    x->rows = rows, x->cols = cols, x->is_vector = vec;
    if (!(x->v = malloc(sizeof(float) * (size_t)rows * (size_t)cols)))
        die("malloc");
    for (int i = 0; i < rows * cols; i++)
        x->v[i] = rnd(lo, hi);
    return n + 1;
}

/* All tensors of shape s in llama2.c file order (embedding, then per-kind stacks, final norm,
 * classifier last); returns the count. */
static int model_tensors(const shape *s, tensor *t)
{
    int n = 0, d = s->dim, hd = s->dim / s->heads, q = s->heads * hd, kv = s->kv_heads * hd;
    char c[64], h[96];
    float w = 0.35f;
    n = add_tensor(t, n, "token_embd.weight", "model.embed_tokens.weight", s->vocab, d, 0, -1, 1);
    static const char *const kinds[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                        "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"};
    static const char *const hfk[] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                                      "self_attn.v_proj", "self_attn.o_proj",
                                      "post_attention_layernorm", "mlp.gate_proj", "mlp.down_proj",
                                      "mlp.up_proj"};
    const int rows[] = {1, q, kv, kv, d, 1, s->ffn, d, s->ffn};
    const int cols[] = {d, d, d, d, q, d, d, s->ffn, d};
    for (int k = 0; k < 9; k++)
        for (int l = 0; l < s->layers; l++) {
            snprintf(c, sizeof c, "blk.%d.%s.weight", l, kinds[k]);
            snprintf(h, sizeof h, "model.layers.%d.%s.weight", l, hfk[k]);
            int norm = rows[k] == 1;
            n = add_tensor(t, n, c, h, rows[k], cols[k], norm, norm ? 0.9f : -w, norm ? 1.1f : w);
        }
    if (s->bias)
        for (int k = 1; k <= 3; k++)
            for (int l = 0; l < s->layers; l++) {
                snprintf(c, sizeof c, "blk.%d.%s.bias", l, kinds[k]);
                snprintf(h, sizeof h, "model.layers.%d.%s.bias", l, hfk[k]);
                n = add_tensor(t, n, c, h, 1, rows[k], 1, -0.1f, 0.1f);
            }
    n = add_tensor(t, n, "output_norm.weight", "model.norm.weight", 1, d, 1, 0.9f, 1.1f);
    if (!s->tied)
        n = add_tensor(t, n, "output.weight", "lm_head.weight", s->vocab, d, 0, -w, w);
    return n;
}

static void free_tensors(tensor *t, int n)
{
    for (int i = 0; i < n; i++)
        free(t[i].v);
}

/* ---- a vocabulary of 32 pieces (real spaces; GGUF writes them as U+2581) -------------------- */

static const char *const pieces[32] = {
    "<unk>", "<s>", "</s>", " ", "a", "e", "o", "t", "h", "n", "s", "c", "d", "i", " t", "th",
    " the", "he", "an", " a", "on", "at", " c", " ca", " cat", "in", "er", ".", ",", "!",
    "<0x0A>", "<0xE4>"};

static float piece_score(int i)
{
    return i < 3 ? 0.0f : -(float)i;
}

static int piece_type(int i)
{
    return i == 0 ? 2 : i < 3 ? 3 : i >= 30 ? 6 : 1;
}

/* ---- llama2.c -------------------------------------------------------------------------------- */

static void llama2c_file(const char *path, const shape *s, size_t truncate)
{
    tensor t[64];
    int n = model_tensors(s, t);
    buf b = {0};
    int32_t h[7] = {s->dim, s->ffn, s->layers, s->heads, s->kv_heads,
                    s->tied ? s->vocab : -s->vocab, s->seq};
    for (int i = 0; i < 7; i++)
        put_u32(&b, (uint32_t)h[i]);
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].canon, "output.weight") == 0) {
            /* freq_cis_real, freq_cis_imag [seq][head_dim / 2] come before the classifier */
            for (int k = 0; k < 2 * s->seq * (s->dim / s->heads / 2); k++)
                put_f32(&b, rnd(-1, 1));
        }
        for (int k = 0; k < t[i].rows * t[i].cols; k++)
            put_f32(&b, t[i].v[k]);
    }
    if (s->tied)
        for (int k = 0; k < 2 * s->seq * (s->dim / s->heads / 2); k++)
            put_f32(&b, rnd(-1, 1));
    if (truncate && truncate < b.n)
        b.n = truncate;
    write_file(path, b.p, b.n);
    free(b.p);
    free_tensors(t, n);
}

static void llama2c(const char *name, const shape *s, size_t truncate)
{
    llama2c_file(path_of("llama2c", name), s, truncate);
}

/* ---- GGUF ------------------------------------------------------------------------------------ */

enum { G_U32 = 4, G_I32 = 5, G_F32 = 6, G_STR = 8, G_ARR = 9, G_U64 = 10 };

static void g_str(buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put_text(b, s);
}

static void g_key(buf *b, const char *key, uint32_t type)
{
    g_str(b, key);
    put_u32(b, type);
}

/* An integer key as uint64 (wide) or uint32. */
static void g_int(buf *b, const char *key, int wide, uint64_t v)
{
    g_key(b, key, wide ? G_U64 : G_U32);
    if (wide)
        put_u64(b, v);
    else
        put_u32(b, (uint32_t)v);
}

/* dtype: 0 F32, 1 F16, 30 BF16 */
static void gguf(const char *name, const shape *s, int dtype, unsigned align, int wide_keys,
                 int with_vocab)
{
    tensor t[64];
    int nt = model_tensors(s, t);
    buf kv = {0};
    int nkv = 0;
    char k[96];
    g_key(&kv, "general.architecture", G_STR), g_str(&kv, s->arch), nkv++;
    if (align != 32)
        g_key(&kv, "general.alignment", G_U32), put_u32(&kv, align), nkv++;
    static const char *const keys[] = {"embedding_length", "feed_forward_length", "block_count",
                                       "attention.head_count", "attention.head_count_kv",
                                       "context_length", "attention.key_length",
                                       "rope.dimension_count"};
    const int vals[] = {s->dim, s->ffn, s->layers, s->heads, s->kv_heads, s->seq,
                        s->dim / s->heads, s->dim / s->heads};
    for (int i = 0; i < (wide_keys ? 8 : 6); i++) {
        snprintf(k, sizeof k, "%s.%s", s->arch, keys[i]);
        g_int(&kv, k, wide_keys, (uint64_t)vals[i]), nkv++;
    }
    snprintf(k, sizeof k, "%s.rope.freq_base", s->arch);
    g_key(&kv, k, G_F32), put_f32(&kv, 10000.0f), nkv++;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", s->arch);
    g_key(&kv, k, G_F32), put_f32(&kv, 1e-5f), nkv++;
    if (with_vocab) {
        g_key(&kv, "tokenizer.ggml.model", G_STR), g_str(&kv, "llama"), nkv++;
        g_key(&kv, "tokenizer.ggml.tokens", G_ARR), put_u32(&kv, G_STR), put_u64(&kv, 32), nkv++;
        for (int i = 0; i < 32; i++) {
            char p[32];
            size_t m = 0;
            for (const char *c = pieces[i]; *c; c++) {
                if (*c == ' ') {
                    memcpy(p + m, "\xe2\x96\x81", 3);
                    m += 3;
                } else {
                    p[m++] = *c;
                }
            }
            p[m] = '\0';
            g_str(&kv, p);
        }
        g_key(&kv, "tokenizer.ggml.scores", G_ARR), put_u32(&kv, G_F32), put_u64(&kv, 32), nkv++;
        for (int i = 0; i < 32; i++)
            put_f32(&kv, piece_score(i));
        g_key(&kv, "tokenizer.ggml.token_type", G_ARR), put_u32(&kv, G_I32), put_u64(&kv, 32), nkv++;
        for (int i = 0; i < 32; i++)
            put_u32(&kv, (uint32_t)piece_type(i));
        g_int(&kv, "tokenizer.ggml.bos_token_id", wide_keys, 1), nkv++;
        g_int(&kv, "tokenizer.ggml.eos_token_id", wide_keys, 2), nkv++;
    }
    buf b = {0};
    put_text(&b, "GGUF");
    put_u32(&b, 3);
    put_u64(&b, (uint64_t)nt);
    put_u64(&b, (uint64_t)nkv);
    put(&b, kv.p, kv.n);
    /* tensor infos, then the data section with each tensor aligned */
    int esize = dtype == 0 ? 4 : 2;
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        g_str(&b, t[i].canon);
        if (t[i].is_vector) {
            put_u32(&b, 1);
            put_u64(&b, (uint64_t)t[i].cols);
        } else {
            put_u32(&b, 2);
            put_u64(&b, (uint64_t)t[i].cols);
            put_u64(&b, (uint64_t)t[i].rows);
        }
        put_u32(&b, (uint32_t)dtype);
        put_u64(&b, off);
        off += (uint64_t)t[i].rows * (uint64_t)t[i].cols * (uint64_t)esize;
        off = (off + align - 1) / align * align;
    }
    pad_to(&b, align);
    for (int i = 0; i < nt; i++) {
        for (int j = 0; j < t[i].rows * t[i].cols; j++) {
            if (dtype == 0)
                put_f32(&b, t[i].v[j]);
            else
                put_u16(&b, dtype == 1 ? qnpu__f32_to_f16(t[i].v[j]) : qnpu__f32_to_bf16(t[i].v[j]));
        }
        if (i + 1 < nt)
            pad_to(&b, align);
    }
    save_buf("gguf", name, &b);
    free(b.p);
    free(kv.p);
    free_tensors(t, nt);
}

/* ---- safetensors ----------------------------------------------------------------------------- */

static void hf_config(buf *b, const shape *s)
{
    char c[1024];
    snprintf(c, sizeof c,
             "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n  \"hidden_size\": %d,\n"
             "  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n"
             "  \"hidden_act\": \"silu\",\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n"
             "  \"rope_scaling\": null,\n  \"tie_word_embeddings\": %s,\n  \"bos_token_id\": 1,\n"
             "  \"eos_token_id\": [2],\n  \"torch_dtype\": \"float32\"\n}\n",
             s->bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM", s->arch, s->dim, s->ffn, s->layers,
             s->heads, s->kv_heads, s->vocab, s->seq, s->tied ? "true" : "false");
    put_text(b, c);
}

/* A safetensors file of shape s in dtype "F32", "F16" or "BF16". */
static void safetensors(buf *b, const shape *s, const char *dtype)
{
    tensor t[64];
    int nt = model_tensors(s, t);
    int esize = strcmp(dtype, "F32") == 0 ? 4 : 2;
    buf h = {0};
    put_text(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        char e[256];
        uint64_t bytes = (uint64_t)t[i].rows * (uint64_t)t[i].cols * (uint64_t)esize;
        if (t[i].is_vector)
            snprintf(e, sizeof e, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%llu,%llu]}",
                     t[i].hf, dtype, t[i].cols, (unsigned long long)off, (unsigned long long)(off + bytes));
        else
            snprintf(e, sizeof e, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%llu,%llu]}",
                     t[i].hf, dtype, t[i].rows, t[i].cols, (unsigned long long)off,
                     (unsigned long long)(off + bytes));
        put_text(&h, e);
        off += bytes;
    }
    put_text(&h, "}");
    while (h.n % 8)
        put_u8(&h, ' ');
    put_u64(b, h.n);
    put(b, h.p, h.n);
    for (int i = 0; i < nt; i++)
        for (int j = 0; j < t[i].rows * t[i].cols; j++) {
            if (esize == 4)
                put_f32(b, t[i].v[j]);
            else
                put_u16(b, strcmp(dtype, "F16") == 0 ? qnpu__f32_to_f16(t[i].v[j])
                                                     : qnpu__f32_to_bf16(t[i].v[j]));
        }
    free(h.p);
    free_tensors(t, nt);
}

static void safetensors_seeds(void)
{
    buf b = {0};
    safetensors(&b, &LLAMA, "F32"); /* the harness's default config has this shape */
    save_buf("safetensors", "single_f32", &b);

    b.n = 0;
    hf_config(&b, &LLAMA_TIED);
    put_text(&b, SEP);
    safetensors(&b, &LLAMA_TIED, "F16");
    save_buf("safetensors", "config_f16_tied", &b);

    b.n = 0;
    hf_config(&b, &QWEN2);
    put_text(&b, SEP);
    safetensors(&b, &QWEN2, "BF16");
    save_buf("safetensors", "config_qwen2_bf16", &b);

    /* sharded: the index maps every tensor to the one shard */
    b.n = 0;
    hf_config(&b, &LLAMA);
    put_text(&b, SEP);
    tensor t[64];
    int nt = model_tensors(&LLAMA, t);
    put_text(&b, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < nt; i++) {
        char e[160];
        snprintf(e, sizeof e, "%s\n  \"%s\": \"model-00001-of-00001.safetensors\"", i ? "," : "",
                 t[i].hf);
        put_text(&b, e);
    }
    put_text(&b, "}}");
    free_tensors(t, nt);
    put_text(&b, SEP);
    safetensors(&b, &LLAMA, "F32");
    save_buf("safetensors", "sharded", &b);
    free(b.p);
}

/* ---- tokenizer.bin --------------------------------------------------------------------------- */

static void tokenizer_bin(buf *b)
{
    put_u32(b, 8); /* max_token_length */
    for (int i = 0; i < 32; i++) {
        put_f32(b, piece_score(i));
        put_u32(b, (uint32_t)strlen(pieces[i]));
        put_text(b, pieces[i]);
    }
}

static void tokenizer_seeds(const char *tok_path)
{
    buf b = {0};
    put_u8(&b, 0); /* as many records as the file holds */
    tokenizer_bin(&b);
    save_buf("tokenizer", "bin_all", &b);
    write_file(tok_path, b.p + 1, b.n - 1);
    b.n = 0;
    put_u8(&b, 2 * 32); /* vocab_size 32 */
    tokenizer_bin(&b);
    save_buf("tokenizer", "bin_32", &b);
    static const struct {
        const char *name, *text;
        unsigned mode;
    } texts[] = {
        {"text_story", "Once upon a time there was a cat. The cat sat on the mat, and it was happy!", 3},
        {"text_paragraphs", "\n\nTom had a red ball.\n\n\nHe threw it high.\n\nThe end.\n", 3},
        {"text_utf8", "na\xc3\xafve caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 \xe2\x96\x81x", 1},
        {"text_bytes", "\xff\xfe\x80 \xc3 \xe4\xbd tab\there\r\nend\x01", 3},
        {"text_nobos", "  leading spaces and trailing  ", 1},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        b.n = 0;
        put_u8(&b, texts[i].mode);
        put_text(&b, texts[i].text);
        save_buf("tokenizer", texts[i].name, &b);
    }
    free(b.p);
}

/* ---- tokenizer.json -------------------------------------------------------------------------- */

/* GPT-2's byte-to-unicode alphabet: printable bytes stand for themselves, the 68 others for
 * U+0100.. in byte order. Appends byte c's character as UTF-8. */
static void put_bytelevel(buf *b, unsigned char c)
{
    unsigned cp;
    if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174) {
        cp = c;
    } else {
        unsigned k = 0;
        for (unsigned x = 0; x < c; x++)
            k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174);
        cp = 256 + k;
    }
    if (cp < 0x80) {
        put_u8(b, cp);
    } else {
        put_u8(b, 0xC0 | (cp >> 6));
        put_u8(b, 0x80 | (cp & 0x3F));
    }
}

/* A JSON string of raw bytes spelled in the byte-level alphabet (or as they are with raw = 1,
 * for ASCII text). */
static void put_json_token(buf *b, const char *s, size_t n, int raw)
{
    put_u8(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (raw || c < 128) {
            if (c == '"' || c == '\\') {
                put_u8(b, '\\');
                put_u8(b, c);
            } else if (c < 0x20 || (!raw && c < 33)) {
                if (raw) {
                    char e[8];
                    snprintf(e, sizeof e, "\\u%04x", c);
                    put_text(b, e);
                } else {
                    put_bytelevel(b, c);
                }
            } else if (!raw && c == 127) {
                put_bytelevel(b, c);
            } else {
                put_u8(b, c);
            }
        } else {
            put_bytelevel(b, c);
        }
    }
    put_u8(b, '"');
}

static const char *const tj_merges[][2] = {
    {" ", "t"}, {"t", "h"}, {" t", "h"}, {" th", "e"}, {"a", "n"}, {"i", "n"},
    {" ", "c"}, {" c", "a"}, {" ca", "t"}, {"\n", "\n"}, {"e", "r"}, {" ", "a"},
};
enum { TJ_MERGES = sizeof tj_merges / sizeof tj_merges[0] };

static void tokenizer_json(buf *b, int split, int nfc, int arrays, int ignore)
{
    put_text(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                "  \"added_tokens\": [\n");
    static const char *const added[] = {"<|begin_of_text|>", "<|end_of_text|>"};
    for (int i = 0; i < 2; i++) {
        char e[256];
        snprintf(e, sizeof e, "    {\"id\": %d, \"content\": \"%s\", \"single_word\": false, "
                 "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}%s\n",
                 256 + TJ_MERGES + i, added[i], i ? "" : ",");
        put_text(b, e);
    }
    put_text(b, "  ],\n");
    put_text(b, nfc ? "  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]},\n"
                    : "  \"normalizer\": null,\n");
    if (split)
        put_text(b, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
                    "    {\"type\": \"Split\", \"pattern\": {\"Regex\": "
                    "\"(?i:'s|'t|'re)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+\"}, "
                    "\"behavior\": \"Isolated\", \"invert\": false},\n"
                    "    {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
                    "\"use_regex\": false}\n  ]},\n");
    else
        put_text(b, "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                    "\"trim_offsets\": true, \"use_regex\": true},\n");
    put_text(b, "  \"post_processor\": null,\n  \"decoder\": {\"type\": \"ByteLevel\", "
                "\"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n");
    put_text(b, "  \"model\": {\n    \"type\": \"BPE\", \"dropout\": null, \"unk_token\": null,\n"
                "    \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null,\n"
                "    \"fuse_unk\": false, \"byte_fallback\": false, ");
    put_text(b, ignore ? "\"ignore_merges\": true,\n" : "\"ignore_merges\": false,\n");
    put_text(b, "    \"vocab\": {");
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        put_text(b, i % 8 ? " " : "\n      ");
        put_json_token(b, &c, 1, 0);
        char e[16];
        snprintf(e, sizeof e, ": %d,", i);
        put_text(b, e);
    }
    for (int r = 0; r < TJ_MERGES; r++) {
        char raw[16], e[16];
        snprintf(raw, sizeof raw, "%s%s", tj_merges[r][0], tj_merges[r][1]);
        put_text(b, "\n      ");
        put_json_token(b, raw, strlen(raw), 0);
        snprintf(e, sizeof e, ": %d%s", 256 + r, r + 1 < TJ_MERGES ? "," : "");
        put_text(b, e);
    }
    put_text(b, "\n    },\n    \"merges\": [");
    for (int r = 0; r < TJ_MERGES; r++) {
        put_text(b, "\n      ");
        if (arrays) {
            put_u8(b, '[');
            put_json_token(b, tj_merges[r][0], strlen(tj_merges[r][0]), 0);
            put_text(b, ", ");
            put_json_token(b, tj_merges[r][1], strlen(tj_merges[r][1]), 0);
            put_u8(b, ']');
        } else {
            buf t = {0};
            put_json_token(&t, tj_merges[r][0], strlen(tj_merges[r][0]), 0);
            t.n--; /* drop the closing quote: "left right" is one string */
            put_u8(&t, ' ');
            buf u = {0};
            put_json_token(&u, tj_merges[r][1], strlen(tj_merges[r][1]), 0);
            put(&t, u.p + 1, u.n - 1);
            put(b, t.p, t.n);
            free(t.p);
            free(u.p);
        }
        if (r + 1 < TJ_MERGES)
            put_u8(b, ',');
    }
    put_text(b, "\n    ]\n  }\n}\n");
}

static void tokenizer_json_seeds(void)
{
    static const char config[] = "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": "
                                 "{\"content\": \"<|end_of_text|>\", \"special\": true}, "
                                 "\"add_bos_token\": true}";
    static const char text[] = "<|begin_of_text|>The cat's 123 ca\xc3\xa9 \xe4\xbd\xa0 \n\n  in\xff the<|end_of_text|>";
    buf b = {0};
    tokenizer_json(&b, 0, 0, 0, 0);
    save_buf("tokenizer_json", "gpt2_bytelevel", &b);
    put_text(&b, SEP);
    put_text(&b, config);
    put_text(&b, SEP);
    put_text(&b, text);
    save_buf("tokenizer_json", "gpt2_config_text", &b);
    b.n = 0;
    tokenizer_json(&b, 1, 1, 1, 1);
    put_text(&b, SEP);
    put_text(&b, config);
    put_text(&b, SEP);
    put_text(&b, text);
    save_buf("tokenizer_json", "split_nfc_arrays", &b);
    free(b.p);
}

/* ---- .qnpu ----------------------------------------------------------------------------------- */

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Calibrate model `mpath` on a fixed id stream with `kv` options and save the .qnpu unsealed,
 * and (encodings) its QNN encodings in both schema versions. */
static void qnpu_seed(const char *name, const char *mpath, const char *tok_path,
                      const char *const *kv, const char *tmp, int encodings)
{
    qnpu_options *o;
    check(qnpu_options_create(&o), "options");
    static const char *const base[] = {"num_threads", "1", "calib.seq_len", "8",
                                       "calib.num_samples", "2", "calib.first_block", "0", NULL};
    for (int pass = 0; pass < 2; pass++)
        for (const char *const *p = pass ? kv : base; p && *p; p += 2) {
            qnpu_param prm;
            check(qnpu_param_from_name(p[0], &prm), p[0]);
            check(qnpu_options_set_str(o, prm, p[1]), p[0]);
        }
    qnpu_model *m;
    check(qnpu_model_load(mpath, o, &m), mpath);
    qnpu_tokenizer *t = NULL;
    if (tok_path)
        check(qnpu_tokenizer_load(tok_path, strstr(tok_path, ".json") ? 0 : 32, &t), tok_path);
    qnpu_calibrator *c;
    check(qnpu_calibrator_create(m, t, o, &c), "calibrator");
    int32_t ids[24];
    for (int i = 0; i < 24; i++)
        ids[i] = (int32_t)((i * 7 + 3) % 32);
    qnpu_qmodel *q;
    check(qnpu_calibrator_run_ids(c, ids, 24, &q), "calibrate");
    check(qnpu_qmodel_save(q, tmp), "save");
    for (int v = 0; v < 2 * encodings; v++) {
        qnpu_options *eo;
        check(qnpu_options_create(&eo), "options");
        check(qnpu_options_set_str(eo, QNPU_P_EXPORT_ENCODINGS_VERSION, v ? "1.0.0" : "0.6.1"),
              "encodings version");
        char ename[128];
        snprintf(ename, sizeof ename, "%.*s_%s.encodings", (int)(strlen(name) - 5), name,
                 v ? "v100" : "v061");
        check(qnpu__encodings_write(q, eo, path_of("encodings", ename)), "encodings");
        qnpu_options_free(eo);
    }
    qnpu_qmodel_free(q);
    qnpu_calibrator_free(c);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
    qnpu_options_free(o);

    FILE *f = fopen(tmp, "rb");
    if (!f)
        die(tmp);
    buf b = {0};
    unsigned char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        put(&b, chunk, got);
    fclose(f);
    remove(tmp);
    /* unseal: zero the header CRC and every section CRC */
    uint32_t count = get32(b.p + QNPU__QH_SECTION_COUNT);
    memset(b.p + QNPU__QH_CRC, 0, 4);
    for (uint32_t i = 0; i < count; i++)
        memset(b.p + QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * i + QNPU__QE_CRC, 0, 4);
    save_buf("qnpu", name, &b);
    free(b.p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_fuzz_corpus DIR\n");
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) != 0 && errno != EEXIST)
        die(root);

    llama2c("tiny_untied_gqa", &LLAMA, 0);
    llama2c("tiny_tied", &LLAMA_TIED, 0);
    llama2c("two_layers", &LLAMA2, 0);
    llama2c("truncated", &LLAMA_TIED, 100);

    gguf("llama_f32_vocab.gguf", &LLAMA_TIED, 0, 32, 0, 1);
    gguf("llama_f16_untied.gguf", &LLAMA, 1, 64, 1, 0);
    gguf("qwen2_bf16_bias.gguf", &QWEN2, 30, 32, 0, 1);

    safetensors_seeds();
    tokenizer_json_seeds();

    /* scratch files for the .qnpu seeds, next to the output */
    char tok[4096], model[4096], qwen[4096], tmp[4096];
    snprintf(tok, sizeof tok, "%s/.tok.bin", root);
    snprintf(model, sizeof model, "%s/llama2c/tiny_untied_gqa", root);
    snprintf(qwen, sizeof qwen, "%s/gguf/qwen2_bf16_bias.gguf", root);
    snprintf(tmp, sizeof tmp, "%s/.tmp.qnpu", root);
    tokenizer_seeds(tok);

    static const char *const plain[] = {"rotate.r1", "identity", "rotate.r2", "identity", NULL};
    static const char *const r4[] = {"rotate.r4", "all", "quant.w_bits", "8", NULL};
    qnpu_seed("plain.qnpu", model, NULL, plain, tmp, 1);
    qnpu_seed("tokenizer.qnpu", model, tok, NULL, tmp, 1);
    qnpu_seed("qwen2_r4.qnpu", qwen, NULL, r4, tmp, 1);

    /* a byte-level BPE tokenizer in the vocab section: a model with its 270 ids */
    char tj[4096], bpe_model[4096];
    snprintf(tj, sizeof tj, "%s/.tokenizer.json", root);
    snprintf(bpe_model, sizeof bpe_model, "%s/.bpe_model.bin", root);
    buf b = {0};
    tokenizer_json(&b, 1, 0, 0, 0);
    write_file(tj, b.p, b.n);
    free(b.p);
    llama2c_file(bpe_model, &LLAMA_BPE, 0);
    qnpu_seed("bpe.qnpu", bpe_model, tj, plain, tmp, 0);
    remove(tj);
    remove(bpe_model);
    remove(tok);
    return 0;
}
