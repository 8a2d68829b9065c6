/* tokenizer_bpe.c — byte-level BPE read from a Hugging Face tokenizer.json (GPT-2, Llama-3,
 * Qwen2 and their relatives).
 *
 * What is read:
 *   model         {"type": "BPE", "vocab": {"<token>": id, ...}, "merges": ["a b", ...] or
 *                 [["a", "b"], ...], "unk_token", "ignore_merges"}; tokens are spelled in the
 *                 GPT-2 byte-to-unicode alphabet (each byte is one code point: the printable
 *                 bytes 33-126, 161-172 and 174-255 stand for themselves, the other 68 bytes
 *                 for U+0100.. in byte order, so ' ' is 'Ġ' and '\n' is 'Ċ').
 *   added_tokens  [{"id", "content", "special", ...}]: matched literally in the raw text
 *                 (leftmost, then longest) before anything else; the text between them is
 *                 normalized, pre-tokenized and BPE-encoded.
 *   normalizer    null or NFC (also inside a Sequence). NFC goes through libutf8proc.
 *   pre_tokenizer Split {"pattern": {"Regex"|"String"}, "behavior": "Isolated"} steps followed
 *                 by ByteLevel (use_regex adds the GPT-2 pattern), alone or in a Sequence. The
 *                 regexes run in PCRE2 with PCRE2_UTF | PCRE2_UCP (\p{L}, \p{N}, \s are the
 *                 Unicode classes, as in the Oniguruma engine Hugging Face uses), compiled once
 *                 per tokenizer (and JIT-compiled when possible). Isolated: every match is a
 *                 piece, and so is every stretch of text between matches.
 *   decoder       null or ByteLevel.
 * Anything else that changes the result (other model types, normalizers, pre-tokenizers,
 * behaviours, add_prefix_space, dropout, subword prefixes/suffixes, lstrip/rstrip/single_word
 * added tokens) is refused with QNPU_ERR_UNSUPPORTED naming the field.
 *
 * Each piece is encoded on raw bytes: one symbol per byte (the token of that byte's character),
 * then the adjacent pair with the lowest merge rank is merged (leftmost among equal ranks) until
 * no pair has a merge: merge.c's loop, shared with tokenizer.c, O(k log k) for a piece of k
 * bytes. With ignore_merges a piece that is itself a
 * vocabulary token is emitted as it is.
 *
 * Text that is not valid UTF-8 (which Hugging Face cannot even represent) is encoded too: each
 * invalid byte is a piece of its own, so decode(encode(x)) == x for any bytes when there is no
 * normalizer. Decoding is the inverse byte map: the handle stores every token as its raw bytes
 * (added tokens as their content).
 *
 * qnpu__bpe_serialize / qnpu__bpe_deserialize carry the whole tokenizer (raw vocabulary, merges,
 * added tokens, pattern sources, flags) through the .qnpu file's 'vocab' section; the reader
 * checks everything again and recompiles the patterns. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "../internal.h"
#include "bpe.h"
#include "json.h"
#include "merge.h"

#define MAX_VOCAB  (1 << 24) /* as the rest of the library                                  */
#define MAX_HOLES  1024      /* unused ids allowed beyond one per defined token (scan_ids)    */
#define MAX_STEPS  8         /* regex steps of the pre-tokenizer                             */
#define MAX_DEPTH  8         /* Sequence nesting                                             */
#define EMPTY_KEY  UINT64_MAX

/* The GPT-2 pattern that ByteLevel applies when use_regex is true. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct vslot {
    uint32_t hash;
    int32_t id;      /* -1: empty */
    uint32_t len;    /* the token's bytes, kept here to spare a cache miss per probe */
    uint32_t off;
} vslot;

typedef struct mslot {
    uint64_t key;    /* left id << 32 | right id; EMPTY_KEY: empty */
    uint32_t rank;
    int32_t merged;
} mslot;

typedef struct added {
    char *s;         /* content bytes (owned by added_blob) */
    uint32_t len;
    int32_t id;
} added;

struct qnpu__bpe {
    int64_t n;                 /* ids 0 .. n-1 */
    char *blob;                /* raw bytes of the vocabulary tokens */
    size_t *voff;              /* per id: offset in blob                     */
    uint32_t *vlen;            /* per id: length, UINT32_MAX when not in model.vocab */
    vslot *vt;                 /* raw bytes -> id (model.vocab only)       */
    uint32_t vmask;
    mslot *mt;                 /* (left, right) -> rank, merged id          */
    uint32_t mmask;
    added *added;              /* longest first                             */
    size_t n_added;
    char *added_blob;
    unsigned char added_first[256];
    int32_t byte_id[256];      /* the token of each single byte, -1 if none */
    int32_t unk;
    int ignore_merges, nfc;
    pcre2_general_context *gctx;
    pcre2_code *re[MAX_STEPS];
    char *pat[MAX_STEPS];      /* the source of each step (for the .qnpu file) */
    uint32_t pat_len[MAX_STEPS];
    int literal[MAX_STEPS];
    int n_steps;
    size_t n_merges;           /* distinct pairs in mt */
};

/* ---- the GPT-2 byte map and UTF-8 ------------------------------------------------------- */

/* The code point standing for byte b. */
static uint32_t byte_char(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        return b;
    /* the k-th byte outside those ranges (in byte order) is U+0100 + k */
    unsigned k = b <= 32 ? b : b <= 160 ? 33 + (b - 127) : 67;
    return 256 + k;
}

/* The byte a code point stands for, or -1. */
static int char_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_char(cp) == cp ? (int)cp : -1;
    if (cp > 256 + 67)
        return -1;
    unsigned k = cp - 256;
    return k <= 32 ? (int)k : k <= 66 ? (int)(127 + k - 33) : 173;
}

/* Length of the valid UTF-8 character at s (n > 0 bytes available) and its code point, or 0. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp_out)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp_out = c;
        return 1;
    }
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *cp_out = cp;
    return len;
}

/* A token spelled in the byte-level alphabet -> its raw bytes (at most n of them) in out.
 * A character outside the alphabet (or invalid UTF-8) is kept as its own bytes. */
static size_t bytelevel_to_raw(const char *s, size_t n, char *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_char(u + i, n - i, &cp);
        int b = k ? char_byte(cp) : -1;
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            if (!k)
                k = 1;
            memcpy(out + o, s + i, k);
            o += k;
        }
        i += k;
    }
    return o;
}

/* ---- hash tables ------------------------------------------------------------------------ */

static uint32_t fnv1a(uint32_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}
#define FNV_SEED 2166136261u

/* The vocabulary token whose raw bytes are a (la) followed by c (lc), or -1. */
static int32_t vlookup2(const qnpu__bpe *b, const char *a, size_t la, const char *c, size_t lc)
{
    uint32_t h = fnv1a(fnv1a(FNV_SEED, a, la), c, lc);
    for (uint32_t i = h & b->vmask;; i = (i + 1) & b->vmask) {
        const vslot *s = &b->vt[i];
        if (s->id < 0)
            return -1;
        if (s->hash != h || s->len != la + lc)
            continue;
        const char *p = b->blob + s->off;
        if (memcmp(p, a, la) == 0 && memcmp(p + la, c, lc) == 0)
            return s->id;
    }
}

static int32_t vlookup(const qnpu__bpe *b, const char *s, size_t n)
{
    return vlookup2(b, s, n, "", 0);
}

/* Insert id (its bytes already in blob); a duplicate spelling keeps the first id. */
static void vinsert(qnpu__bpe *b, int32_t id)
{
    const char *p = b->blob + b->voff[id];
    if (vlookup(b, p, b->vlen[id]) >= 0)
        return;
    uint32_t h = fnv1a(FNV_SEED, p, b->vlen[id]);
    uint32_t i = h & b->vmask;
    while (b->vt[i].id >= 0)
        i = (i + 1) & b->vmask;
    b->vt[i].hash = h;
    b->vt[i].id = id;
    b->vt[i].len = b->vlen[id];
    b->vt[i].off = (uint32_t)b->voff[id];
}

static uint32_t mhash(uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32);
}

static const mslot *mfind(const qnpu__bpe *b, int32_t left, int32_t right)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = mhash(key) & b->mmask;; i = (i + 1) & b->mmask) {
        const mslot *s = &b->mt[i];
        if (s->key == EMPTY_KEY)
            return NULL;
        if (s->key == key)
            return s;
    }
}

/* A pair listed twice keeps its first (lowest) rank. */
static void minsert(qnpu__bpe *b, int32_t left, int32_t right, uint32_t rank, int32_t merged)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t i = mhash(key) & b->mmask;
    for (; b->mt[i].key != EMPTY_KEY; i = (i + 1) & b->mmask)
        if (b->mt[i].key == key)
            return;
    b->mt[i].key = key;
    b->mt[i].rank = rank;
    b->mt[i].merged = merged;
    b->n_merges++;
}

/* A power of two of at least 2 * n + 16 slots. */
static uint32_t table_size(size_t n)
{
    uint32_t size = 16;
    while ((size_t)size < 2 * n + 16)
        size *= 2;
    return size;
}

/* ---- allocation hooks for PCRE2 ---------------------------------------------------------- */

static void *pcre_alloc(PCRE2_SIZE size, void *data)
{
    (void)data;
    return qnpu__malloc(size ? size : 1);
}

static void pcre_free(void *p, void *data)
{
    (void)data;
    qnpu__free(p);
}

void qnpu__bpe_free(qnpu__bpe *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n_steps; i++) {
        pcre2_code_free(b->re[i]);
        qnpu__free(b->pat[i]);
    }
    pcre2_general_context_free(b->gctx);
    qnpu__free(b->blob);
    qnpu__free(b->voff);
    qnpu__free(b->vlen);
    qnpu__free(b->vt);
    qnpu__free(b->mt);
    qnpu__free(b->added);
    qnpu__free(b->added_blob);
    qnpu__free(b);
}

size_t qnpu__bpe_ids_per_byte(const qnpu__bpe *b)
{
    return b && b->nfc ? 3 : 1;
}

/* ---- loading ---------------------------------------------------------------------------- */

typedef struct loader {
    const char *path;
    qnpu__bpe *b;
    const qnpu__json *root, *model, *vocab, *merges, *added;
    int seen_bytelevel; /* a ByteLevel step was parsed (no Split may follow it) */
} loader;

static qnpu_status oom(const loader *ld)
{
    return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", ld->path);
}

/* A string member, or NULL when absent or null; *bad when present with another type. */
static const char *opt_string(const qnpu__json *obj, const char *key, int *bad)
{
    const qnpu__json *v = qnpu__json_get(obj, key);
    *bad = v && !qnpu__json_is_null(v) && v->type != QNPU__JSON_STRING;
    return qnpu__json_string(v);
}

/* A boolean member that must be false (or absent/null) for this implementation. */
static qnpu_status must_be_false(const loader *ld, const qnpu__json *obj, const char *key,
                                 const char *field)
{
    const qnpu__json *v = qnpu__json_get(obj, key);
    int on = 0;
    if (!v || qnpu__json_is_null(v))
        return QNPU_OK;
    if (!qnpu__json_bool(v, &on))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s.%s must be true or false, found %s", ld->path,
                          field, key, qnpu__json_type_name(v));
    if (on)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %s.%s is true, which is not supported",
                          ld->path, field, key);
    return QNPU_OK;
}

/* Check the "model" object's scalar fields. */
static qnpu_status read_model_fields(loader *ld)
{
    const qnpu__json *m = ld->model;
    int bad;
    const char *type = opt_string(m, "type", &bad);
    if (bad)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.type must be a string", ld->path);
    if (type && strcmp(type, "BPE") != 0)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: model.type '%.40s' is not supported (only "
                          "byte-level BPE)", ld->path, type);
    ld->vocab = qnpu__json_get(m, "vocab");
    if (!ld->vocab || ld->vocab->type != QNPU__JSON_OBJECT)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.vocab must be an object, found %s",
                          ld->path, ld->vocab ? qnpu__json_type_name(ld->vocab) : "nothing");
    ld->merges = qnpu__json_get(m, "merges");
    if (!ld->merges || ld->merges->type != QNPU__JSON_ARRAY)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.merges must be an array, found %s",
                          ld->path, ld->merges ? qnpu__json_type_name(ld->merges) : "nothing");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const char *s = opt_string(m, affixes[i], &bad);
        if (bad || (s && s[0]))
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: model.%s must be null or empty for "
                              "byte-level BPE", ld->path, affixes[i]);
    }
    const qnpu__json *d = qnpu__json_get(m, "dropout");
    double p = 0;
    if (d && !qnpu__json_is_null(d) && (!qnpu__json_number(d, &p) || p != 0))
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: model.dropout must be null or 0 (BPE "
                          "dropout is not supported)", ld->path);
    const qnpu__json *im = qnpu__json_get(m, "ignore_merges");
    if (im && !qnpu__json_is_null(im) && !qnpu__json_bool(im, &ld->b->ignore_merges))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.ignore_merges must be true or false",
                          ld->path);
    return QNPU_OK;
}

/* The largest id used by model.vocab and added_tokens (checking every id); the added tokens'
 * fields are checked here too. Ids may leave holes (unused ids decode to nothing), but at most
 * one per defined token plus MAX_HOLES: every id costs memory, and real files are dense, so a
 * few bytes naming id 2^24 - 1 must not make a 16.7M-id tokenizer. */
static qnpu_status scan_ids(loader *ld, int64_t *max_id, size_t *blob_size, size_t *added_size)
{
    *max_id = -1;
    *blob_size = 0;
    *added_size = 0;
    for (const qnpu__json *e = ld->vocab->first; e; e = e->next) {
        int64_t id;
        if (!qnpu__json_int(e, &id) || id < 0 || id >= MAX_VOCAB)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.vocab['%.60s']: the id must be an "
                              "integer in [0, %d)", ld->path, e->key, MAX_VOCAB);
        if (e->key_len == 0)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.vocab: empty token (id %lld)",
                              ld->path, (long long)id);
        if (id > *max_id)
            *max_id = id;
        *blob_size += e->key_len;
    }
    const qnpu__json *a = ld->added;
    if (a && !qnpu__json_is_null(a) && a->type != QNPU__JSON_ARRAY)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: added_tokens must be an array, found %s",
                          ld->path, qnpu__json_type_name(a));
    size_t i = 0;
    for (const qnpu__json *e = a ? a->first : NULL; e; e = e->next, i++) {
        char field[48];
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        int64_t id;
        const char *content = qnpu__json_string(qnpu__json_get(e, "content"));
        if (e->type != QNPU__JSON_OBJECT || !qnpu__json_int(qnpu__json_get(e, "id"), &id) ||
            id < 0 || id >= MAX_VOCAB)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s must be an object with an integer 'id' "
                              "in [0, %d)", ld->path, field, MAX_VOCAB);
        if (!content || !content[0])
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s.content must be a non-empty string",
                              ld->path, field);
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        for (size_t k = 0; k < 3; k++) {
            qnpu_status s = must_be_false(ld, e, flags[k], field);
            if (s != QNPU_OK)
                return s;
        }
        if (id > *max_id)
            *max_id = id;
        *added_size += qnpu__json_get(e, "content")->len + 1;
    }
    if (*max_id < 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.vocab is empty", ld->path);
    size_t tokens = ld->vocab->len + i;
    if ((uint64_t)*max_id >= 2 * (uint64_t)tokens + MAX_HOLES)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: ids go up to %lld for %zu tokens: more than "
                          "%zu + %d ids would be unused", ld->path, (long long)*max_id, tokens,
                          tokens, MAX_HOLES);
    return QNPU_OK;
}

/* The arrays for b->n ids, blob_size token bytes and a table for `count` tokens (all ids
 * start "not in the vocabulary"). 0 when out of memory. */
static int alloc_vocab(qnpu__bpe *b, size_t blob_size, size_t count)
{
    b->blob = qnpu__malloc(blob_size + 1);
    b->voff = qnpu__calloc((size_t)b->n, sizeof *b->voff);
    b->vlen = qnpu__malloc((size_t)b->n * sizeof *b->vlen);
    uint32_t size = table_size(count);
    b->vt = qnpu__malloc((size_t)size * sizeof *b->vt);
    if (!b->blob || !b->voff || !b->vlen || !b->vt)
        return 0;
    b->vmask = size - 1;
    for (uint32_t i = 0; i < size; i++)
        b->vt[i].id = -1;
    memset(b->vlen, 0xFF, (size_t)b->n * sizeof *b->vlen);
    return 1;
}

/* The token of each single byte. */
static void index_bytes(qnpu__bpe *b)
{
    for (int c = 0; c < 256; c++) {
        char byte = (char)c;
        b->byte_id[c] = vlookup(b, &byte, 1);
    }
}

/* A merge table for `count` pairs; 0 when out of memory. */
static int alloc_merges(qnpu__bpe *b, size_t count)
{
    uint32_t size = table_size(count);
    b->mt = qnpu__malloc((size_t)size * sizeof *b->mt);
    if (!b->mt)
        return 0;
    b->mmask = size - 1;
    for (uint32_t i = 0; i < size; i++)
        b->mt[i].key = EMPTY_KEY;
    return 1;
}

/* Fill the raw bytes of every vocabulary token and the lookup table. */
static qnpu_status read_vocab(loader *ld, size_t blob_size)
{
    qnpu__bpe *b = ld->b;
    if (blob_size >= UINT32_MAX)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.vocab holds %zu bytes of tokens", ld->path,
                          blob_size);
    if (!alloc_vocab(b, blob_size, ld->vocab->len))
        return oom(ld);
    size_t off = 0;
    for (const qnpu__json *e = ld->vocab->first; e; e = e->next) {
        int64_t id = e->i;
        if (b->vlen[id] != UINT32_MAX)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.vocab: id %lld is given to two "
                              "tokens, the second '%.40s'", ld->path, (long long)id, e->key);
        size_t len = bytelevel_to_raw(e->key, e->key_len, b->blob + off);
        b->voff[id] = off;
        b->vlen[id] = (uint32_t)len;
        off += len;
        vinsert(b, (int32_t)id);
    }
    index_bytes(b);
    return QNPU_OK;
}

/* The id of a token spelled in the byte-level alphabet, or -1. `tmp` holds n bytes. */
static int32_t token_id(const qnpu__bpe *b, const char *s, size_t n, char *tmp)
{
    return vlookup(b, tmp, bytelevel_to_raw(s, n, tmp));
}

/* The two tokens of merge i: "a b" (exactly one space) or ["a", "b"]. */
static int merge_parts(const qnpu__json *e, const char **a, size_t *la, const char **c, size_t *lc)
{
    if (e->type == QNPU__JSON_STRING) {
        const char *sp = memchr(e->str, ' ', e->len);
        if (!sp || memchr(sp + 1, ' ', e->len - (size_t)(sp + 1 - e->str)))
            return 0;
        *a = e->str;
        *la = (size_t)(sp - e->str);
        *c = sp + 1;
        *lc = e->len - *la - 1;
        return *la > 0 && *lc > 0;
    }
    if (e->type != QNPU__JSON_ARRAY || e->len != 2)
        return 0;
    const qnpu__json *x = qnpu__json_at(e, 0), *y = qnpu__json_at(e, 1);
    if (!qnpu__json_string(x) || !qnpu__json_string(y) || !x->len || !y->len)
        return 0;
    *a = x->str, *la = x->len, *c = y->str, *lc = y->len;
    return 1;
}

static qnpu_status read_merges(loader *ld)
{
    qnpu__bpe *b = ld->b;
    size_t count = ld->merges->len;
    if (count >= UINT32_MAX / 4)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.merges has %zu entries", ld->path, count);
    int have_table = alloc_merges(b, count);
    size_t longest = 0;
    for (const qnpu__json *e = ld->merges->first; e; e = e->next)
        if (e->type == QNPU__JSON_STRING && e->len > longest)
            longest = e->len;
        else if (e->type == QNPU__JSON_ARRAY)
            for (const qnpu__json *x = e->first; x; x = x->next)
                if (x->type == QNPU__JSON_STRING && x->len > longest)
                    longest = x->len;
    char *tmp = qnpu__malloc(longest + 1);
    if (!have_table || !tmp) {
        qnpu__free(tmp);
        return oom(ld);
    }
    qnpu_status s = QNPU_OK;
    uint32_t rank = 0;
    for (const qnpu__json *e = ld->merges->first; e && s == QNPU_OK; e = e->next, rank++) {
        const char *pa, *pc;
        size_t la, lc;
        if (!merge_parts(e, &pa, &la, &pc, &lc)) {
            s = qnpu__fail(QNPU_ERR_FORMAT, "%s: model.merges[%u] must be \"a b\" (one space) or "
                           "[\"a\", \"b\"]", ld->path, rank);
            break;
        }
        int32_t a = token_id(b, pa, la, tmp), c = token_id(b, pc, lc, tmp);
        if (a < 0 || c < 0) {
            size_t lbad = a < 0 ? la : lc;
            s = qnpu__fail(QNPU_ERR_FORMAT, "%s: model.merges[%u]: token '%.*s' is not in "
                           "model.vocab", ld->path, rank, (int)(lbad > 60 ? 60 : lbad),
                           a < 0 ? pa : pc);
            break;
        }
        int32_t merged = vlookup2(b, b->blob + b->voff[a], b->vlen[a], b->blob + b->voff[c],
                                  b->vlen[c]);
        if (merged < 0) {
            s = qnpu__fail(QNPU_ERR_FORMAT, "%s: model.merges[%u]: the merged token '%.*s%.*s' "
                           "is not in model.vocab", ld->path, rank, (int)(la > 30 ? 30 : la), pa,
                           (int)(lc > 30 ? 30 : lc), pc);
            break;
        }
        minsert(b, a, c, rank, merged);
    }
    qnpu__free(tmp);
    return s;
}

static int added_longer(const void *x, const void *y)
{
    const added *a = x, *c = y;
    if (a->len != c->len)
        return a->len > c->len ? -1 : 1;
    return a->id < c->id ? -1 : a->id > c->id;
}

/* Longest first, and the table of bytes an added token can start with. */
static void finish_added(qnpu__bpe *b)
{
    for (size_t i = 0; i < b->n_added; i++)
        b->added_first[(unsigned char)b->added[i].s[0]] = 1;
    qsort(b->added, b->n_added, sizeof *b->added, added_longer);
}

static qnpu_status read_added(loader *ld, size_t added_size)
{
    qnpu__bpe *b = ld->b;
    const qnpu__json *a = ld->added;
    if (!a || a->type != QNPU__JSON_ARRAY || a->len == 0)
        return QNPU_OK;
    b->added = qnpu__calloc(a->len, sizeof *b->added);
    b->added_blob = qnpu__malloc(added_size);
    if (!b->added || !b->added_blob)
        return oom(ld);
    size_t off = 0;
    for (const qnpu__json *e = a->first; e; e = e->next) {
        const qnpu__json *c = qnpu__json_get(e, "content");
        added *t = &b->added[b->n_added++];
        t->s = b->added_blob + off;
        memcpy(t->s, c->str, c->len + 1);
        t->len = (uint32_t)c->len;
        t->id = (int32_t)qnpu__json_get(e, "id")->i;
        off += c->len + 1;
    }
    finish_added(b);
    return QNPU_OK;
}

/* The 'type' of a normalizer / pre-tokenizer / decoder node `field`: *type = NULL for an absent
 * or null node, QNPU_ERR_FORMAT for anything but an object with a string 'type'. */
static qnpu_status node_type(const loader *ld, const qnpu__json *v, const char *field, const char **type)
{
    *type = NULL;
    if (!v || qnpu__json_is_null(v))
        return QNPU_OK;
    int bad;
    *type = opt_string(v, "type", &bad);
    if (v->type != QNPU__JSON_OBJECT || !*type)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s must be null or an object with a string "
                          "'type'", ld->path, field);
    return QNPU_OK;
}

typedef qnpu_status (*node_reader)(loader *ld, const qnpu__json *v, const char *field, int depth);

/* A "Sequence" node: every element of its array v[key], read by `each` one level deeper. */
static qnpu_status read_sequence(loader *ld, const qnpu__json *v, const char *field,
                                 const char *key, int depth, node_reader each)
{
    const qnpu__json *list = qnpu__json_get(v, key);
    if (!list || list->type != QNPU__JSON_ARRAY)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s.%s must be an array", ld->path, field, key);
    size_t i = 0;
    for (const qnpu__json *e = list->first; e; e = e->next, i++) {
        char sub[160];
        snprintf(sub, sizeof sub, "%s.%s[%zu]", field, key, i);
        qnpu_status s = each(ld, e, sub, depth + 1);
        if (s != QNPU_OK)
            return s;
    }
    return QNPU_OK;
}

static qnpu_status read_normalizer(loader *ld, const qnpu__json *v, const char *field, int depth)
{
    const char *type;
    qnpu_status s = node_type(ld, v, field, &type);
    if (s != QNPU_OK || !type)
        return s;
    if (strcmp(type, "NFC") == 0) {
        ld->b->nfc = 1;
        return QNPU_OK;
    }
    if (strcmp(type, "Sequence") == 0 && depth < MAX_DEPTH)
        return read_sequence(ld, v, field, "normalizers", depth, read_normalizer);
    return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %s: type '%.40s' is not supported (only NFC "
                      "or none)", ld->path, field, type);
}

/* Compile one pre-tokenizer regex (or literal string) as the next step. */
static qnpu_status add_step(qnpu__bpe *b, const char *path, const char *pat, size_t len,
                           int literal, const char *field)
{
    if (b->n_steps == MAX_STEPS)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %s: more than %d pre-tokenizer steps",
                          path, field, MAX_STEPS);
    char *copy = qnpu__malloc(len + 1);
    pcre2_compile_context *cc = copy ? pcre2_compile_context_create(b->gctx) : NULL;
    if (!cc) {
        qnpu__free(copy);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    memcpy(copy, pat, len);
    copy[len] = '\0';
    int err = 0;
    PCRE2_SIZE where = 0;
    uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &where, cc);
    pcre2_compile_context_free(cc);
    if (!re) {
        qnpu__free(copy);
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(err, msg, sizeof msg) < 0)
            strcpy((char *)msg, "unknown error");
        if (err == PCRE2_ERROR_NOMEMORY)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s: bad regex at offset %zu: %s", path, field,
                          (size_t)where, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is used without it */
    b->re[b->n_steps] = re;
    b->pat[b->n_steps] = copy;
    b->pat_len[b->n_steps] = (uint32_t)len;
    b->literal[b->n_steps] = literal;
    b->n_steps++;
    return QNPU_OK;
}

static qnpu_status read_pretokenizer(loader *ld, const qnpu__json *v, const char *field, int depth)
{
    const char *type;
    qnpu_status s = node_type(ld, v, field, &type);
    if (s != QNPU_OK || !type)
        return s;
    if (strcmp(type, "Sequence") == 0 && depth < MAX_DEPTH)
        return read_sequence(ld, v, field, "pretokenizers", depth, read_pretokenizer);
    if (ld->seen_bytelevel)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %s: a '%.40s' step after ByteLevel is not "
                          "supported", ld->path, field, type);
    if (strcmp(type, "ByteLevel") == 0) {
        if ((s = must_be_false(ld, v, "add_prefix_space", field)) != QNPU_OK)
            return s;
        int use_regex = 1;
        const qnpu__json *u = qnpu__json_get(v, "use_regex");
        if (u && !qnpu__json_is_null(u) && !qnpu__json_bool(u, &use_regex))
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s.use_regex must be true or false",
                              ld->path, field);
        ld->seen_bytelevel = 1;
        return use_regex ? add_step(ld->b, ld->path, gpt2_pattern, sizeof gpt2_pattern - 1, 0,
                                    field)
                         : QNPU_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const qnpu__json *pat = qnpu__json_get(v, "pattern");
        const qnpu__json *re = qnpu__json_get(pat, "Regex"), *str = qnpu__json_get(pat, "String");
        const qnpu__json *p = re ? re : str;
        char sub[192];
        snprintf(sub, sizeof sub, "%s.pattern.%s", field, re ? "Regex" : "String");
        if (!qnpu__json_string(p))
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: %s.pattern must be {\"Regex\": string} or "
                              "{\"String\": string}", ld->path, field);
        int bad;
        const char *behavior = opt_string(v, "behavior", &bad);
        if (!behavior || strcmp(behavior, "Isolated") != 0)
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %s.behavior '%.40s' is not supported "
                              "(only Isolated)", ld->path, field, behavior ? behavior : "");
        if ((s = must_be_false(ld, v, "invert", field)) != QNPU_OK)
            return s;
        return add_step(ld->b, ld->path, p->str, p->len, p == str, sub);
    }
    return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %s: type '%.40s' is not supported (Split, "
                      "ByteLevel, Sequence)", ld->path, field, type);
}

static qnpu_status read_decoder(const loader *ld)
{
    const qnpu__json *d = qnpu__json_get(ld->root, "decoder");
    const char *type;
    qnpu_status s = node_type(ld, d, "decoder", &type);
    if (s != QNPU_OK || !type)
        return s;
    if (strcmp(type, "ByteLevel") != 0)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: decoder: type '%.40s' is not supported "
                          "(only ByteLevel)", ld->path, type);
    return QNPU_OK;
}

/* ---- BOS and EOS from the files beside ---------------------------------------------------- */

static int32_t special_id(const qnpu__bpe *b, const qnpu__json *v)
{
    if (v && v->type == QNPU__JSON_OBJECT)
        v = qnpu__json_get(v, "content");
    const char *s = qnpu__json_string(v);
    if (!s || !v->len)
        return -1;
    for (size_t i = 0; i < b->n_added; i++)
        if (b->added[i].len == v->len && memcmp(b->added[i].s, s, v->len) == 0)
            return b->added[i].id;
    return vlookup(b, s, v->len);
}

static int32_t config_id(const qnpu__bpe *b, const qnpu__json *v)
{
    if (v && v->type == QNPU__JSON_ARRAY)
        v = qnpu__json_at(v, 0);
    int64_t id;
    return qnpu__json_int(v, &id) && id >= 0 && id < b->n ? (int32_t)id : -1;
}

/* Parse dir/name if it exists; NULL otherwise (a broken side file is ignored). */
static qnpu__json_doc *side_file(const char *dir, const char *name)
{
    char *path = qnpu__path_join(dir, name);
    qnpu__json_doc *doc = NULL;
    char *text = NULL;
    size_t len;
    if (path && access(path, R_OK) == 0 && qnpu__read_text(path, &text, &len) == QNPU_OK &&
        qnpu__json_parse(path, text, len, &doc) != QNPU_OK)
        doc = NULL;
    qnpu__free(text);
    qnpu__free(path);
    return doc;
}

/* config.json's bos_token_id / eos_token_id first (what the model uses), then the bos_token /
 * eos_token names of tokenizer_config.json; -1 when neither gives one. */
static void resolve_specials(const char *path, const qnpu__bpe *b, int32_t *bos, int32_t *eos)
{
    *bos = *eos = -1;
    char *dir = qnpu__path_dirname(path);
    if (!dir)
        return;
    qnpu__json_doc *doc = side_file(dir, "config.json");
    if (doc) {
        *bos = config_id(b, qnpu__json_get(qnpu__json_root(doc), "bos_token_id"));
        *eos = config_id(b, qnpu__json_get(qnpu__json_root(doc), "eos_token_id"));
        qnpu__json_free(doc);
    }
    if ((*bos < 0 || *eos < 0) && (doc = side_file(dir, "tokenizer_config.json"))) {
        if (*bos < 0)
            *bos = special_id(b, qnpu__json_get(qnpu__json_root(doc), "bos_token"));
        if (*eos < 0)
            *eos = special_id(b, qnpu__json_get(qnpu__json_root(doc), "eos_token"));
        qnpu__json_free(doc);
    }
    qnpu__free(dir);
}

/* ---- the handle --------------------------------------------------------------------------- */

/* The pieces of the handle: added tokens as their content, vocabulary tokens as raw bytes,
 * unused ids empty. */
static qnpu_status make_handle(qnpu__bpe *b, const char *path, int32_t bos, int32_t eos,
                               qnpu_tokenizer **out)
{
    char **pieces = qnpu__calloc((size_t)b->n, sizeof *pieces);
    uint32_t *lens = qnpu__calloc((size_t)b->n, sizeof *lens);
    if (!pieces || !lens) {
        qnpu__free(pieces);
        qnpu__free(lens);
        qnpu__bpe_free(b);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    for (int64_t id = 0; id < b->n; id++)
        if (b->vlen[id] != UINT32_MAX) {
            pieces[id] = b->blob + b->voff[id];
            lens[id] = b->vlen[id];
        }
    for (size_t i = 0; i < b->n_added; i++) {
        pieces[b->added[i].id] = b->added[i].s;
        lens[b->added[i].id] = b->added[i].len;
    }
    qnpu_status s = qnpu__tokenizer_create_bpe(b->n, pieces, lens, bos, eos, b, out);
    if (s != QNPU_OK)
        qnpu__error_prefix("%s", path);
    qnpu__free(pieces);
    qnpu__free(lens);
    return s;
}

static qnpu_status load_doc(loader *ld, int64_t vocab_size)
{
    qnpu__bpe *b = ld->b;
    if (ld->root->type != QNPU__JSON_OBJECT)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: expected a JSON object, found %s", ld->path,
                          qnpu__json_type_name(ld->root));
    ld->model = qnpu__json_get(ld->root, "model");
    if (!ld->model || ld->model->type != QNPU__JSON_OBJECT)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: key 'model' must be an object, found %s",
                          ld->path, ld->model ? qnpu__json_type_name(ld->model) : "nothing");
    ld->added = qnpu__json_get(ld->root, "added_tokens");
    qnpu_status s = read_model_fields(ld);
    int64_t max_id;
    size_t blob_size, added_size;
    if (s == QNPU_OK)
        s = scan_ids(ld, &max_id, &blob_size, &added_size);
    if (s != QNPU_OK)
        return s;
    b->n = max_id + 1;
    if (vocab_size > 0 && b->n > vocab_size)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: the tokenizer uses ids up to %lld, beyond the "
                          "model's vocabulary of %lld", ld->path, (long long)max_id,
                          (long long)vocab_size);
    if (vocab_size > b->n)
        b->n = vocab_size; /* the model's padding ids: unused, decoding to nothing */
    b->unk = -1;
    if ((s = read_vocab(ld, blob_size)) != QNPU_OK || (s = read_merges(ld)) != QNPU_OK ||
        (s = read_added(ld, added_size)) != QNPU_OK)
        return s;
    int bad;
    const char *unk = opt_string(ld->model, "unk_token", &bad);
    if (bad)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: model.unk_token must be a string or null",
                          ld->path);
    if (unk)
        b->unk = special_id(b, qnpu__json_get(ld->model, "unk_token"));
    if ((s = read_normalizer(ld, qnpu__json_get(ld->root, "normalizer"), "normalizer", 0)) !=
            QNPU_OK ||
        (s = read_pretokenizer(ld, qnpu__json_get(ld->root, "pre_tokenizer"), "pre_tokenizer",
                               0)) != QNPU_OK ||
        (s = read_decoder(ld)) != QNPU_OK)
        return s;
    if (!ld->seen_bytelevel)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: pre_tokenizer has no ByteLevel step; only "
                          "byte-level BPE tokenizers are supported", ld->path);
    return QNPU_OK;
}

qnpu_status qnpu__bpe_load(const char *path, int64_t vocab_size, qnpu_tokenizer **out)
{
    char *text = NULL;
    size_t len = 0;
    qnpu_status s = qnpu__read_text(path, &text, &len);
    if (s != QNPU_OK)
        return s;
    qnpu__json_doc *doc = NULL;
    s = qnpu__json_parse(path, text, len, &doc);
    qnpu__free(text);
    if (s != QNPU_OK)
        return s;
    loader ld = {path, qnpu__calloc(1, sizeof(qnpu__bpe)), qnpu__json_root(doc), NULL, NULL,
                 NULL, NULL, 0};
    if (!ld.b || !(ld.b->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL)))
        s = oom(&ld);
    if (s == QNPU_OK)
        s = load_doc(&ld, vocab_size);
    qnpu__json_free(doc);
    if (s != QNPU_OK) {
        qnpu__bpe_free(ld.b);
        return s;
    }
    int32_t bos, eos;
    resolve_specials(path, ld.b, &bos, &eos);
    return make_handle(ld.b, path, bos, eos, out);
}

int qnpu__bpe_is_json(const char *path)
{
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".json") == 0)
        return 1;
    qnpu__file f;
    if (qnpu__file_open(path, 1, &f) != QNPU_OK)
        return 0;
    size_t i = 0;
    while (i < f.size && (f.data[i] == ' ' || f.data[i] == '\t' || f.data[i] == '\n' ||
                          f.data[i] == '\r'))
        i++;
    int json = i + 1 < f.size && f.data[i] == '{' &&
               strchr(" \t\r\n\"}", f.data[i + 1]) && f.data[i + 1] != '\0';
    qnpu__file_close(&f);
    return json;
}

/* ---- encoding ------------------------------------------------------------------------------ */

typedef struct run {
    const qnpu__bpe *b;
    int32_t *ids;
    size_t cap, n;
    pcre2_match_data *md[MAX_STEPS];
    qnpu__msym *sym;
    size_t cap_sym;
    qnpu__merger merger;
    utf8proc_int32_t *u32;   /* NFC scratch */
    size_t cap_u32;
} run;

static void emit(run *r, int32_t id)
{
    if (r->n < r->cap)
        r->ids[r->n] = id;
    r->n++;
}

static qnpu_status run_oom(void)
{
    return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_tokenizer_encode: out of memory");
}

/* Grow a scratch array to hold at least `need` elements of `size` bytes. */
static qnpu_status grow(void **p, size_t *cap, size_t need, size_t size, size_t used)
{
    if (need <= *cap)
        return QNPU_OK;
    size_t n = *cap ? *cap : 64, bytes;
    while (n < need)
        n *= 2;
    if (!qnpu__mul_ok(n, size, &bytes))
        return run_oom();
    void *q = qnpu__realloc(*p, used * size, bytes);
    if (!q)
        return run_oom();
    *p = q;
    *cap = n;
    return QNPU_OK;
}

/* The merges' rule: a listed pair merges, the lowest rank first. */
static int bpe_rule(const void *ctx, int32_t a, int32_t b, double *key, int32_t *merged)
{
    const mslot *m = mfind(ctx, a, b);
    if (!m)
        return 0;
    *key = m->rank;
    *merged = m->merged;
    return 1;
}

/* BPE on one pre-tokenized piece of raw bytes (merge.c: the lowest rank first, the leftmost
 * among equal ranks). */
static qnpu_status bpe_word(run *r, const char *w, size_t n)
{
    const qnpu__bpe *b = r->b;
    if (n == 0)
        return QNPU_OK;
    if (b->ignore_merges || n == 1) {
        int32_t id = vlookup(b, w, n);
        if (id >= 0) {
            emit(r, id);
            return QNPU_OK;
        }
    }
    qnpu_status s = grow((void **)&r->sym, &r->cap_sym, n, sizeof *r->sym, 0);
    if (s != QNPU_OK)
        return s;
    int32_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[(unsigned char)w[i]];
        if (id < 0)
            id = b->unk;
        if (id >= 0) /* else no token for this byte and no unk_token: dropped, as HF does */
            r->sym[ns++].id = id;
    }
    s = qnpu__merge_word(&r->merger, r->sym, ns);
    for (int32_t i = ns > 0 ? 0 : -1; s == QNPU_OK && i >= 0; i = r->sym[i].next)
        emit(r, r->sym[i].id);
    return s;
}

/* Pre-tokenizer step k on valid UTF-8 s[0..n): Isolated split by the step's regex (each match
 * and each gap is a piece), each piece going to step k + 1; after the last step, BPE. */
static qnpu_status split(run *r, int k, const char *s, size_t n)
{
    const qnpu__bpe *b = r->b;
    if (k == b->n_steps)
        return bpe_word(r, s, n);
    size_t off = 0, last = 0;
    qnpu_status st = QNPU_OK;
    while (st == QNPU_OK && off <= n) {
        int rc = pcre2_match(b->re[k], (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, r->md[k], NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(b->re[k], (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                             r->md[k], NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
                strcpy((char *)msg, "unknown error");
            return qnpu__fail(rc == PCRE2_ERROR_NOMEMORY || rc == PCRE2_ERROR_HEAPLIMIT
                                  ? QNPU_ERR_NO_MEMORY : QNPU_ERR_INVALID_ARG,
                              "qnpu_tokenizer_encode: pre-tokenizer regex %d failed: %s", k,
                              (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md[k]);
        size_t ms = ov[0], me = ov[1];
        if (ms < last)  /* \K can move the start back; keep the pieces in order */
            ms = last;
        if (me <= ms) { /* an empty match: step one character on */
            if (ms >= n)
                break;
            uint32_t cp;
            size_t cl = utf8_char((const unsigned char *)s + ms, n - ms, &cp);
            off = ms + (cl ? cl : 1);
            continue;
        }
        if (ms > last)
            st = split(r, k + 1, s + last, ms - last);
        if (st == QNPU_OK)
            st = split(r, k + 1, s + ms, me - ms);
        last = off = me;
    }
    if (st == QNPU_OK && last < n)
        st = split(r, k + 1, s + last, n - last);
    return st;
}

/* NFC of valid UTF-8 s[0..n) into r->u32 (as UTF-8 bytes). */
static qnpu_status nfc(run *r, const char *s, size_t n, const char **out, size_t *out_n)
{
    const utf8proc_option_t opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    utf8proc_ssize_t got;
    size_t need = n + 1; /* code points never outnumber bytes before decomposition */
    for (;;) {
        qnpu_status st = grow((void **)&r->u32, &r->cap_u32, need, sizeof *r->u32, 0);
        if (st != QNPU_OK)
            return st;
        /* one element stays free: utf8proc_reencode needs a byte past the code points */
        got = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, r->u32,
                                 (utf8proc_ssize_t)r->cap_u32 - 1, opts);
        if (got < 0 || (size_t)got < r->cap_u32)
            break;
        need = (size_t)got + 1; /* the room needed; decompose again */
    }
    if (got >= 0)
        got = utf8proc_reencode(r->u32, got, opts);
    if (got < 0) { /* cannot happen on valid UTF-8; keep the text as it is */
        *out = s;
        return QNPU_OK;
    }
    *out = (const char *)r->u32;
    *out_n = (size_t)got;
    return QNPU_OK;
}

/* Text between added tokens: valid UTF-8 runs are normalized and pre-tokenized; each invalid
 * byte is a piece of its own. */
static qnpu_status segment(run *r, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    qnpu_status st = QNPU_OK;
    while (st == QNPU_OK && i < n) {
        size_t j = i, k;
        uint32_t cp;
        while (j < n && (k = utf8_char(u + j, n - j, &cp)) > 0)
            j += k;
        if (j > i) {
            const char *p = s + i;
            size_t pn = j - i;
            if (r->b->nfc)
                st = nfc(r, s + i, j - i, &p, &pn);
            if (st == QNPU_OK)
                st = split(r, 0, p, pn);
        }
        if (st == QNPU_OK && j < n) {
            st = bpe_word(r, s + j, 1);
            j++;
        }
        i = j;
    }
    return st;
}

/* The first added token at or after pos (leftmost, then longest): start, length and id;
 * start = len when there is none. */
static void find_added(const qnpu__bpe *b, const char *text, size_t len, size_t pos,
                       size_t *start, size_t *mlen, int32_t *id)
{
    *start = len;
    if (!b->n_added)
        return;
    for (size_t i = pos; i < len; i++) {
        if (!b->added_first[(unsigned char)text[i]])
            continue;
        for (size_t k = 0; k < b->n_added; k++) {
            const added *t = &b->added[k];
            if (t->len <= len - i && memcmp(text + i, t->s, t->len) == 0) {
                *start = i;
                *mlen = t->len;
                *id = t->id;
                return;
            }
        }
    }
}

qnpu_status qnpu__bpe_encode(const qnpu__bpe *b, const char *text, size_t len, int32_t *ids,
                             size_t cap, size_t *n)
{
    run r;
    memset(&r, 0, sizeof r);
    r.b = b;
    r.merger.rule = bpe_rule;
    r.merger.ctx = b;
    r.ids = ids;
    r.cap = cap;
    r.n = *n;
    qnpu_status s = QNPU_OK;
    for (int k = 0; k < b->n_steps && s == QNPU_OK; k++)
        if (!(r.md[k] = pcre2_match_data_create_from_pattern(b->re[k], b->gctx)))
            s = run_oom();
    size_t pos = 0;
    while (s == QNPU_OK && pos < len) {
        size_t start, mlen = 0;
        int32_t id = -1;
        find_added(b, text, len, pos, &start, &mlen, &id);
        s = segment(&r, text + pos, start - pos);
        if (start < len)
            emit(&r, id);
        pos = start + mlen;
    }
    for (int k = 0; k < b->n_steps; k++)
        pcre2_match_data_free(r.md[k]);
    qnpu__free(r.sym);
    qnpu__merger_free(&r.merger);
    qnpu__free(r.u32);
    *n = r.n;
    return s;
}

/* ---- the serialized form (section 'vocab' of a .qnpu file) --------------------------------- *
 *
 * Little-endian: u32 magic "QBPE", u32 version 1, u32 flags (bit 0 NFC, bit 1 ignore_merges),
 * i32 unk (-1: none), u64 n; per id a u32 length (UINT32_MAX: not in model.vocab) and the
 * token's raw bytes; u32 added-token count, each i32 id, u32 length, content; u32 step count,
 * each u32 literal (0 regex, 1 string), u32 length, the pattern; u64 merge count, each u32
 * rank, i32 left, i32 right, i32 merged id. Everything is checked again when read. */

#define SER_MAGIC   0x45504251u /* "QBPE" */
#define SER_VERSION 1u

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    int oom;
} wbuf;

static void wb_put(wbuf *w, const void *d, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        unsigned char *q = qnpu__realloc(w->p, w->len, cap);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->p = q;
        w->cap = cap;
    }
    if (n)
        memcpy(w->p + w->len, d, n);
    w->len += n;
}

static void wb_u32(wbuf *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    wb_put(w, b, 4);
}

static void wb_u64(wbuf *w, uint64_t v)
{
    wb_u32(w, (uint32_t)v);
    wb_u32(w, (uint32_t)(v >> 32));
}

qnpu_status qnpu__bpe_serialize(const qnpu__bpe *b, unsigned char **out, size_t *size)
{
    wbuf w = {0};
    wb_u32(&w, SER_MAGIC);
    wb_u32(&w, SER_VERSION);
    wb_u32(&w, (uint32_t)(b->nfc | b->ignore_merges << 1));
    wb_u32(&w, (uint32_t)b->unk);
    wb_u64(&w, (uint64_t)b->n);
    for (int64_t id = 0; id < b->n; id++) {
        wb_u32(&w, b->vlen[id]);
        if (b->vlen[id] != UINT32_MAX)
            wb_put(&w, b->blob + b->voff[id], b->vlen[id]);
    }
    wb_u32(&w, (uint32_t)b->n_added);
    for (size_t i = 0; i < b->n_added; i++) {
        wb_u32(&w, (uint32_t)b->added[i].id);
        wb_u32(&w, b->added[i].len);
        wb_put(&w, b->added[i].s, b->added[i].len);
    }
    wb_u32(&w, (uint32_t)b->n_steps);
    for (int k = 0; k < b->n_steps; k++) {
        wb_u32(&w, (uint32_t)b->literal[k]);
        wb_u32(&w, b->pat_len[k]);
        wb_put(&w, b->pat[k], b->pat_len[k]);
    }
    wb_u64(&w, b->n_merges);
    for (uint32_t i = 0; i <= b->mmask; i++) {
        const mslot *m = &b->mt[i];
        if (m->key == EMPTY_KEY)
            continue;
        wb_u32(&w, m->rank);
        wb_u32(&w, (uint32_t)(m->key >> 32));
        wb_u32(&w, (uint32_t)m->key);
        wb_u32(&w, (uint32_t)m->merged);
    }
    if (w.oom) {
        qnpu__free(w.p);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "tokenizer: out of memory");
    }
    *out = w.p;
    *size = w.len;
    return QNPU_OK;
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, off;
} rbuf;

/* n bytes, or NULL when fewer are left. */
static const unsigned char *rb_take(rbuf *r, size_t n)
{
    if (r->len - r->off < n)
        return NULL;
    r->off += n;
    return r->p + r->off - n;
}

static int rb_u32(rbuf *r, uint32_t *v)
{
    const unsigned char *b = rb_take(r, 4);
    if (b)
        *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return b != NULL;
}

static int rb_u64(rbuf *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (!rb_u32(r, &lo) || !rb_u32(r, &hi))
        return 0;
    *v = (uint64_t)hi << 32 | lo;
    return 1;
}

static qnpu_status ser_bad(const char *what, const char *problem)
{
    return qnpu__fail(QNPU_ERR_FORMAT, "%s: byte-level BPE: %s", what, problem);
}

static qnpu_status ser_oom(const char *what)
{
    return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", what);
}

static qnpu_status ser_vocab(qnpu__bpe *b, rbuf *r, const char *what)
{
    uint64_t n;
    if (!rb_u64(r, &n) || n < 1 || n > MAX_VOCAB || r->len >= UINT32_MAX)
        return ser_bad(what, "the id count is missing or outside [1, 2^24]");
    b->n = (int64_t)n;
    if ((size_t)n > (r->len - r->off) / 4)
        return ser_bad(what, "the tokens run past the end");
    if (!alloc_vocab(b, r->len, (size_t)n))
        return ser_oom(what);
    size_t off = 0;
    for (int64_t id = 0; id < b->n; id++) {
        uint32_t len;
        const unsigned char *bytes = NULL;
        if (!rb_u32(r, &len) || (len != UINT32_MAX && !(bytes = rb_take(r, len))))
            return ser_bad(what, "a token runs past the end");
        if (len == UINT32_MAX)
            continue;
        if (len == 0)
            return ser_bad(what, "an empty token");
        memcpy(b->blob + off, bytes, len);
        b->voff[id] = off;
        b->vlen[id] = len;
        off += len;
        vinsert(b, (int32_t)id);
    }
    index_bytes(b);
    return QNPU_OK;
}

static qnpu_status ser_added(qnpu__bpe *b, rbuf *r, const char *what)
{
    uint32_t count;
    if (!rb_u32(r, &count) || count > (r->len - r->off) / 9)
        return ser_bad(what, "the added-token count is missing or too large");
    if (!count)
        return QNPU_OK;
    b->added = qnpu__calloc(count, sizeof *b->added);
    b->added_blob = qnpu__malloc(r->len - r->off + count);
    if (!b->added || !b->added_blob)
        return ser_oom(what);
    size_t off = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t id, len;
        const unsigned char *bytes;
        if (!rb_u32(r, &id) || !rb_u32(r, &len) || !(bytes = rb_take(r, len)))
            return ser_bad(what, "an added token runs past the end");
        if ((int64_t)id >= b->n || len == 0)
            return ser_bad(what, "an added token has an id outside the vocabulary, or no content");
        added *t = &b->added[b->n_added++];
        t->s = b->added_blob + off;
        memcpy(t->s, bytes, len);
        t->s[len] = '\0';
        t->len = len;
        t->id = (int32_t)id;
        off += (size_t)len + 1;
    }
    finish_added(b);
    return QNPU_OK;
}

static qnpu_status ser_steps(qnpu__bpe *b, rbuf *r, const char *what)
{
    uint32_t count;
    if (!rb_u32(r, &count) || count > MAX_STEPS)
        return ser_bad(what, "the pre-tokenizer step count is missing or too large");
    for (uint32_t k = 0; k < count; k++) {
        uint32_t literal, len;
        const unsigned char *pat;
        if (!rb_u32(r, &literal) || !rb_u32(r, &len) || !(pat = rb_take(r, len)) || literal > 1)
            return ser_bad(what, "a pre-tokenizer step is cut short or malformed");
        char field[48];
        snprintf(field, sizeof field, "byte-level BPE: pre-tokenizer step %u", k);
        qnpu_status s = add_step(b, what, (const char *)pat, len, (int)literal, field);
        if (s != QNPU_OK)
            return s;
    }
    return QNPU_OK;
}

static qnpu_status ser_merges(qnpu__bpe *b, rbuf *r, const char *what)
{
    uint64_t count;
    if (!rb_u64(r, &count) || count > (r->len - r->off) / 16)
        return ser_bad(what, "the merge count is missing or too large");
    if (!alloc_merges(b, (size_t)count))
        return ser_oom(what);
    for (uint64_t i = 0; i < count; i++) {
        uint32_t rank, a, c, m;
        if (!rb_u32(r, &rank) || !rb_u32(r, &a) || !rb_u32(r, &c) || !rb_u32(r, &m))
            return ser_bad(what, "a merge runs past the end");
        if ((int64_t)a >= b->n || (int64_t)c >= b->n || (int64_t)m >= b->n ||
            b->vlen[a] == UINT32_MAX || b->vlen[c] == UINT32_MAX ||
            vlookup2(b, b->blob + b->voff[a], b->vlen[a], b->blob + b->voff[c], b->vlen[c]) !=
                (int32_t)m)
            return ser_bad(what, "a merge names tokens that do not join into its result");
        size_t before = b->n_merges;
        minsert(b, (int32_t)a, (int32_t)c, rank, (int32_t)m);
        if (b->n_merges == before)
            return ser_bad(what, "a merge is listed twice");
    }
    return QNPU_OK;
}

qnpu_status qnpu__bpe_deserialize(const unsigned char *p, size_t size, const char *what,
                                  int32_t bos, int32_t eos, qnpu_tokenizer **out)
{
    rbuf r = {p, size, 0};
    uint32_t magic, version, flags, unk;
    if (!rb_u32(&r, &magic) || magic != SER_MAGIC || !rb_u32(&r, &version))
        return ser_bad(what, "bad magic");
    if (version != SER_VERSION)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: byte-level BPE version %u (this library "
                          "reads %u)", what, version, SER_VERSION);
    if (!rb_u32(&r, &flags) || flags > 3 || !rb_u32(&r, &unk))
        return ser_bad(what, "bad flags");
    qnpu__bpe *b = qnpu__calloc(1, sizeof *b);
    if (!b || !(b->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL))) {
        qnpu__bpe_free(b);
        return ser_oom(what);
    }
    b->nfc = flags & 1;
    b->ignore_merges = (flags >> 1) & 1;
    qnpu_status s = ser_vocab(b, &r, what);
    if (s == QNPU_OK && (int32_t)unk != -1 && (int64_t)unk >= b->n)
        s = ser_bad(what, "unk id outside the vocabulary");
    b->unk = (int32_t)unk;
    if (s == QNPU_OK)
        s = ser_added(b, &r, what);
    if (s == QNPU_OK)
        s = ser_steps(b, &r, what);
    if (s == QNPU_OK)
        s = ser_merges(b, &r, what);
    if (s == QNPU_OK && r.off != r.len)
        s = ser_bad(what, "bytes after the merges");
    if (s != QNPU_OK) {
        qnpu__bpe_free(b);
        return s;
    }
    return make_handle(b, what, bos, eos, out);
}
