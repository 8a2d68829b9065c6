/* tokenizer.c — SentencePiece-style BPE tokenizer (llama2.c tokenizer.bin, GGUF SPM vocab).
 *
 * The encoder reproduces llama2.c run.c's `encode` bit for bit:
 *
 *   1. optional BOS; for non-empty text the piece " " (the SentencePiece dummy prefix);
 *   2. the text cut into UTF-8 "code points" the way run.c cuts them: a byte plus the
 *      continuation bytes (10xxxxxx) that follow it, at most 4 bytes per group; a group found in
 *      the vocabulary becomes its id, otherwise each of its bytes becomes a byte token <0xXX>;
 *   3. merges: while some adjacent pair of tokens concatenates to a piece of the vocabulary,
 *      replace the pair whose piece has the highest score (the leftmost one on ties) by it.
 *
 * run.c rescans the whole token list after every merge, which is O(n^2). Here step 3 is the
 * O(n log n) merge loop of merge.c, which provably picks the same pair at every step.
 * Pieces are looked up through an open-addressing hash table on their bytes (pieces may hold any
 * byte, NUL included, so lengths are used throughout).
 *
 * Decoding follows run.c's `decode`: the leading space of the piece right after BOS is dropped
 * and a piece spelled exactly <0xXX> stands for that one byte.
 *
 * A Hugging Face tokenizer.json (byte-level BPE) gives the same handle with `bpe` set
 * (tokenizer_bpe.c): encoding goes there, and decoding returns the piece, which then holds the
 * token's raw bytes. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "../internal.h"
#include "bpe.h"
#include "merge.h"

#define MAX_VOCAB       (1 << 24)   /* as model.c: a larger vocabulary is a corrupt file       */
#define MAX_PIECE_BYTES (1u << 20)  /* a longer piece is a corrupt file                        */
#define MAX_GROUP       4           /* run.c's longest UTF-8 group                             */
/* run.c starts its best-merge search at -1e10, so a pair whose piece scores -1e10 or less (or
 * NaN) never merges. Keeping that threshold keeps the results identical. */
#define MIN_MERGE_SCORE (-1e10f)

/* One slot of the piece table: the hash of the piece bytes, and its id (-1 = empty slot). */
typedef struct slot {
    uint32_t hash;
    int32_t id;
} slot;

struct qnpu_tokenizer {
    int64_t n;            /* vocabulary size                                               */
    char **pieces;        /* n pointers into `blob`, each NUL-terminated                    */
    uint32_t *lens;       /* byte length of each piece                                     */
    float *scores;
    int32_t *types;       /* SentencePiece token types, or NULL (llama2.c files have none)  */
    char *blob;           /* all pieces, each followed by a NUL                             */
    int32_t bos, eos;
    int32_t space_id;     /* the dummy-prefix piece " ", or -1 if absent                    */
    int32_t byte_id[256]; /* the token of each raw byte for the byte fallback               */
    slot *table;          /* open addressing, linear probing; size is a power of two        */
    uint32_t table_mask;
    qnpu__bpe *bpe;       /* byte-level BPE from a tokenizer.json, or NULL (SentencePiece)  */
};

/* ---- the piece table ---------------------------------------------------------------------- */

/* FNV-1a, continued from `h` over n bytes (so a pair hashes like its concatenation). */
static uint32_t fnv1a(uint32_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}
#define FNV_SEED 2166136261u

/* The id of the piece whose bytes are a (la bytes) followed by b (lb bytes), or -1.
 * With duplicate pieces the lowest id wins (it was inserted first). */
static int32_t lookup_pair(const qnpu_tokenizer *t, const char *a, size_t la, const char *b,
                           size_t lb)
{
    uint32_t h = fnv1a(fnv1a(FNV_SEED, a, la), b, lb);
    for (uint32_t i = h & t->table_mask;; i = (i + 1) & t->table_mask) {
        const slot *s = &t->table[i];
        if (s->id < 0)
            return -1;
        if (s->hash != h || t->lens[s->id] != la + lb)
            continue;
        const char *p = t->pieces[s->id];
        if (memcmp(p, a, la) == 0 && memcmp(p + la, b, lb) == 0)
            return s->id;
    }
}

static int32_t lookup(const qnpu_tokenizer *t, const char *s, size_t n)
{
    return lookup_pair(t, s, n, "", 0);
}

/* SentencePiece token types that text never produces: unknown (2) and control (3). */
static int unmatchable(const int32_t *types, int64_t id)
{
    return types && (types[id] == 2 || types[id] == 3);
}

/* Insert every piece text can produce, keeping the first id of duplicated pieces. */
static qnpu_status build_table(qnpu_tokenizer *t, const int32_t *types)
{
    uint32_t size = 16;
    while ((int64_t)size < 2 * t->n)
        size *= 2;
    t->table = qnpu__calloc(size, sizeof *t->table);
    if (!t->table)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "tokenizer: cannot allocate the piece table");
    t->table_mask = size - 1;
    for (uint32_t i = 0; i < size; i++)
        t->table[i].id = -1;
    for (int64_t id = 0; id < t->n; id++) {
        if (unmatchable(types, id) || lookup(t, t->pieces[id], t->lens[id]) >= 0)
            continue; /* control piece, or a duplicate: the lower id already answers */
        uint32_t h = fnv1a(FNV_SEED, t->pieces[id], t->lens[id]);
        uint32_t i = h & t->table_mask;
        while (t->table[i].id >= 0)
            i = (i + 1) & t->table_mask;
        t->table[i].hash = h;
        t->table[i].id = (int32_t)id;
    }
    return QNPU_OK;
}

/* The token of each raw byte: the piece "<0xXX>" (uppercase hex, as SentencePiece writes it).
 * When the vocabulary has no byte pieces at all, run.c's fixed layout (byte + 3, after <unk>,
 * BOS, EOS) is assumed; a byte with no token at all becomes 0 (<unk>). */
static void build_byte_ids(qnpu_tokenizer *t)
{
    static const char hex[] = "0123456789ABCDEF";
    int found = 0;
    for (int b = 0; b < 256; b++) {
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        t->byte_id[b] = lookup(t, name, sizeof name);
        found += t->byte_id[b] >= 0;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            t->byte_id[b] = (!found && b + 3 < t->n) ? b + 3 : 0;
}

/* ---- construction ------------------------------------------------------------------------- */

static void tokenizer_destroy(qnpu_tokenizer *t)
{
    if (!t)
        return;
    qnpu__free(t->pieces);
    qnpu__free(t->lens);
    qnpu__free(t->scores);
    qnpu__free(t->types);
    qnpu__free(t->blob);
    qnpu__free(t->table);
    qnpu__bpe_free(t->bpe);
    qnpu__free(t);
}

/* Check the arguments of qnpu__tokenizer_create; messages name the offending token. */
static qnpu_status check_vocab(int64_t n, char *const *pieces, const uint32_t *lens,
                               const float *scores, int32_t bos, int32_t eos, size_t *blob_size)
{
    if (n < 1 || n > MAX_VOCAB)
        return qnpu__fail(QNPU_ERR_FORMAT, "vocabulary size %lld is outside [1, %d]", (long long)n,
                          MAX_VOCAB);
    if (!pieces || !lens || !scores)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "tokenizer: NULL vocabulary array");
    if (bos < 0 || bos >= n || eos < 0 || eos >= n)
        return qnpu__fail(QNPU_ERR_FORMAT, "BOS %d or EOS %d is outside the vocabulary of %lld",
                          bos, eos, (long long)n);
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (lens[i] > MAX_PIECE_BYTES)
            return qnpu__fail(QNPU_ERR_FORMAT, "token %lld: piece of %u bytes (limit %u)",
                              (long long)i, lens[i], MAX_PIECE_BYTES);
        if (!pieces[i] && lens[i])
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "token %lld: NULL piece", (long long)i);
        if (isnan(scores[i]))
            return qnpu__fail(QNPU_ERR_FORMAT, "token %lld: score is NaN", (long long)i);
        total += (size_t)lens[i] + 1; /* n <= 2^24 pieces of <= 2^20 bytes: no overflow */
    }
    *blob_size = total;
    return QNPU_OK;
}

qnpu_status qnpu__tokenizer_create(int64_t n, char *const *pieces, const uint32_t *lens,
                                   const float *scores, const int32_t *types, int32_t bos,
                                   int32_t eos, qnpu_tokenizer **out)
{
    size_t blob_size = 0;
    qnpu_status s = check_vocab(n, pieces, lens, scores, bos, eos, &blob_size);
    if (s != QNPU_OK)
        return s;
    qnpu_tokenizer *t = qnpu__calloc(1, sizeof *t);
    if (t) {
        t->pieces = qnpu__calloc((size_t)n, sizeof *t->pieces);
        t->lens = qnpu__calloc((size_t)n, sizeof *t->lens);
        t->scores = qnpu__calloc((size_t)n, sizeof *t->scores);
        t->blob = qnpu__malloc(blob_size);
    }
    if (t && types && (t->types = qnpu__malloc((size_t)n * sizeof *t->types)))
        memcpy(t->types, types, (size_t)n * sizeof *t->types);
    if (!t || !t->pieces || !t->lens || !t->scores || !t->blob || (types && !t->types)) {
        tokenizer_destroy(t);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "tokenizer: cannot allocate %lld pieces",
                          (long long)n);
    }
    t->n = n;
    t->bos = bos;
    t->eos = eos;
    char *p = t->blob;
    for (int64_t i = 0; i < n; i++) {
        if (lens[i])
            memcpy(p, pieces[i], lens[i]);
        p[lens[i]] = '\0';
        t->pieces[i] = p;
        t->lens[i] = lens[i];
        t->scores[i] = scores[i];
        p += lens[i] + 1;
    }
    if ((s = build_table(t, types)) != QNPU_OK) {
        tokenizer_destroy(t);
        return s;
    }
    t->space_id = lookup(t, " ", 1);
    build_byte_ids(t);
    qnpu__handle_acquire();
    *out = t;
    return QNPU_OK;
}

qnpu_status qnpu__tokenizer_create_bpe(int64_t n, char *const *pieces, const uint32_t *lens,
                                       int32_t bos, int32_t eos, qnpu__bpe *bpe,
                                       qnpu_tokenizer **out)
{
    if (n < 1 || n > MAX_VOCAB || bos < -1 || bos >= n || eos < -1 || eos >= n) {
        qnpu__bpe_free(bpe);
        return qnpu__fail(QNPU_ERR_FORMAT, "BOS %d or EOS %d is outside the vocabulary of %lld",
                          bos, eos, (long long)n);
    }
    float *scores = qnpu__calloc((size_t)n, sizeof *scores);
    if (!scores) {
        qnpu__bpe_free(bpe);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "tokenizer: cannot allocate %lld pieces",
                          (long long)n);
    }
    /* the SentencePiece fields are built too but unused: encoding goes to bpe */
    qnpu_status s = qnpu__tokenizer_create(n, pieces, lens, scores, NULL, 0, 0, out);
    qnpu__free(scores);
    if (s != QNPU_OK) {
        qnpu__bpe_free(bpe);
        return s;
    }
    (*out)->bos = bos;
    (*out)->eos = eos;
    (*out)->bpe = bpe;
    return QNPU_OK;
}

static int32_t read_i32(const unsigned char *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static float read_f32(const unsigned char *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* Parse the records of a llama2.c tokenizer file into pointers into the file (`count` records,
 * or as many as the file holds when count is 0), then build the tokenizer from them. */
static qnpu_status parse_llama2c(const char *path, const qnpu__file *f, int64_t count,
                                 qnpu_tokenizer **out)
{
    if (f->size < 4)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %zu bytes, too short for a tokenizer header", path,
                          f->size);
    if (read_i32(f->data) < 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: negative max_token_length %d", path,
                          read_i32(f->data));
    /* records take at least 8 bytes, which bounds their number before anything is allocated */
    int64_t room = (int64_t)((f->size - 4) / 8);
    int64_t cap = count ? count : room;
    if (cap > room)
        cap = room + 1; /* the file cannot hold them all: fail while parsing, naming the token */
    if (cap == 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: the file holds no tokens", path);

    char **pieces = qnpu__calloc((size_t)cap, sizeof *pieces);
    uint32_t *lens = qnpu__calloc((size_t)cap, sizeof *lens);
    float *scores = qnpu__calloc((size_t)cap, sizeof *scores);
    qnpu_status s = QNPU_OK;
    if (!pieces || !lens || !scores)
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: cannot allocate %lld tokens", path, (long long)cap);

    size_t off = 4;
    int64_t n = 0;
    while (s == QNPU_OK && (count ? n < count : off < f->size)) {
        if (n == cap || f->size - off < 8) {
            s = qnpu__fail(QNPU_ERR_IO, "%s: truncated at token %lld (offset %zu of %zu bytes)",
                           path, (long long)n, off, f->size);
            break;
        }
        float score = read_f32(f->data + off);
        int32_t len = read_i32(f->data + off + 4);
        off += 8;
        if (isnan(score))
            s = qnpu__fail(QNPU_ERR_FORMAT, "%s: token %lld has a NaN score", path, (long long)n);
        else if (len < 0 || (uint32_t)len > MAX_PIECE_BYTES)
            s = qnpu__fail(QNPU_ERR_FORMAT, "%s: token %lld has length %d (allowed 0..%u)", path,
                           (long long)n, len, MAX_PIECE_BYTES);
        else if ((size_t)len > f->size - off)
            s = qnpu__fail(QNPU_ERR_IO, "%s: token %lld of %d bytes runs past the end of the file",
                           path, (long long)n, len);
        if (s != QNPU_OK)
            break;
        pieces[n] = (char *)(f->data + off);
        lens[n] = (uint32_t)len;
        scores[n] = score;
        off += (size_t)len;
        n++;
    }
    if (s == QNPU_OK && n < 3)
        s = qnpu__fail(QNPU_ERR_FORMAT, "%s: %lld tokens; <unk>, BOS and EOS (ids 0-2) are required",
                       path, (long long)n);
    if (s == QNPU_OK && (s = qnpu__tokenizer_create(n, pieces, lens, scores, NULL, 1, 2, out)) != QNPU_OK)
        qnpu__error_prefix("%s", path);
    qnpu__free(pieces);
    qnpu__free(lens);
    qnpu__free(scores);
    return s;
}

qnpu_status qnpu_tokenizer_load(const char *path, int64_t vocab_size, qnpu_tokenizer **out)
{
    if (!path || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_tokenizer_load: NULL argument");
    *out = NULL;
    if (vocab_size < 0 || vocab_size > MAX_VOCAB)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: vocab_size %lld is outside [0, %d]", path,
                          (long long)vocab_size, MAX_VOCAB);
    if (qnpu__bpe_is_json(path))
        return qnpu__bpe_load(path, vocab_size, out);
    qnpu__file f;
    qnpu_status s = qnpu__file_open(path, 0, &f);
    if (s != QNPU_OK)
        return s;
    s = parse_llama2c(path, &f, vocab_size, out);
    qnpu__file_close(&f);
    return s;
}

/* Load dir/name if that file exists; *found tells whether it did. */
static qnpu_status load_beside(const char *dir, const char *name, int64_t vocab, int *found,
                               qnpu_tokenizer **out)
{
    char *path = qnpu__path_join(dir, name);
    if (!path)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "tokenizer: out of memory");
    *found = access(path, F_OK) == 0;
    qnpu_status s = *found ? qnpu_tokenizer_load(path, vocab, out) : QNPU_OK;
    qnpu__free(path);
    return s;
}

qnpu_status qnpu__tokenizer_export(const qnpu_tokenizer *t, qnpu__vocab **out)
{
    *out = NULL;
    qnpu__vocab *v = qnpu__calloc(1, sizeof *v);
    if (v) {
        v->pieces = qnpu__calloc((size_t)t->n, sizeof *v->pieces);
        v->lens = qnpu__malloc((size_t)t->n * sizeof *v->lens);
        v->scores = qnpu__malloc((size_t)t->n * sizeof *v->scores);
        v->types = t->types ? qnpu__malloc((size_t)t->n * sizeof *v->types) : NULL;
    }
    int ok = v && v->pieces && v->lens && v->scores && (!t->types || v->types);
    if (ok) {
        v->n = t->n;
        memcpy(v->lens, t->lens, (size_t)t->n * sizeof *v->lens);
        memcpy(v->scores, t->scores, (size_t)t->n * sizeof *v->scores);
        if (t->types)
            memcpy(v->types, t->types, (size_t)t->n * sizeof *v->types);
        for (int64_t i = 0; ok && i < t->n; i++)
            ok = (v->pieces[i] = qnpu__strndup(t->pieces[i], t->lens[i])) != NULL;
    }
    if (!ok) {
        qnpu__vocab_free(v);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "tokenizer: out of memory");
    }
    /* a byte-level BPE travels as its serialized form beside the pieces (used for decoding) */
    qnpu_status s = t->bpe ? qnpu__bpe_serialize(t->bpe, &v->bpe, &v->bpe_size) : QNPU_OK;
    if (s != QNPU_OK) {
        qnpu__vocab_free(v);
        return s;
    }
    *out = v;
    return QNPU_OK;
}

qnpu_status qnpu__tokenizer_from_vocab(const qnpu__vocab *v, const char *what, int32_t bos,
                                       int32_t eos, qnpu_tokenizer **out)
{
    if (!v->bpe)
        return qnpu__tokenizer_create(v->n, v->pieces, v->lens, v->scores, v->types, bos, eos,
                                      out);
    qnpu_status s = qnpu__bpe_deserialize(v->bpe, v->bpe_size, what, bos, eos, out);
    if (s == QNPU_OK && (*out)->n != v->n) {
        int64_t n = (*out)->n;
        qnpu_tokenizer_free(*out);
        *out = NULL;
        s = qnpu__fail(QNPU_ERR_FORMAT, "%s: byte-level BPE of %lld ids beside %lld pieces", what,
                       (long long)n, (long long)v->n);
    }
    return s;
}

qnpu_status qnpu_tokenizer_from_model(const qnpu_model *m, qnpu_tokenizer **out)
{
    if (!m || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_tokenizer_from_model: NULL argument");
    *out = NULL;
    if (m->vocab_emb) {
        const qnpu__vocab *v = m->vocab_emb;
        qnpu_status s = qnpu__tokenizer_create(v->n, v->pieces, v->lens, v->scores, v->types,
                                               m->bos, m->eos, out);
        if (s != QNPU_OK)
            qnpu__error_prefix("%s: embedded vocabulary", m->path);
        return s;
    }
    if (m->format && strcmp(m->format, "safetensors") == 0) { /* a Hugging Face directory */
        int found = 0;
        qnpu_status s = load_beside(m->path, "tokenizer.json", m->vocab, &found, out);
        if (s == QNPU_OK && !found)
            s = qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: no tokenizer: %s/tokenizer.json does not "
                           "exist", m->path, m->path);
        return s;
    }
    if (!m->format || strcmp(m->format, "llama2c") != 0)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED,
                          "%s: no tokenizer: the %s file embeds no vocabulary, and only llama2.c "
                          "checkpoints look for tokenizer.bin or tok512.bin beside them",
                          m->path, m->format ? m->format : "model");
    char *dir = qnpu__path_dirname(m->path);
    if (!dir)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "tokenizer: out of memory");
    static const char *const names[] = {"tokenizer.bin", "tok512.bin"};
    qnpu_status s = QNPU_OK;
    int found = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !found && s == QNPU_OK; i++)
        s = load_beside(dir, names[i], m->vocab, &found, out);
    if (s == QNPU_OK && !found)
        s = qnpu__fail(QNPU_ERR_UNSUPPORTED,
                       "%s: no tokenizer: neither %s/tokenizer.bin nor %s/tok512.bin exists",
                       m->path, dir, dir);
    qnpu__free(dir);
    return s;
}

void qnpu_tokenizer_free(qnpu_tokenizer *t)
{
    if (!t)
        return;
    tokenizer_destroy(t);
    qnpu__handle_release();
}

int64_t qnpu_tokenizer_vocab_size(const qnpu_tokenizer *t)
{
    return t ? t->n : 0;
}

int32_t qnpu_tokenizer_bos(const qnpu_tokenizer *t)
{
    return t ? t->bos : -1;
}

int32_t qnpu_tokenizer_eos(const qnpu_tokenizer *t)
{
    return t ? t->eos : -1;
}

const char *qnpu_tokenizer_piece(const qnpu_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n)
        return NULL;
    return t->pieces[id];
}

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct encoder {
    const qnpu_tokenizer *t;
    qnpu__msym *sym;
    int32_t n_sym;
} encoder;

/* run.c's merge rule: a pair merges if its concatenation is a piece scoring above
 * MIN_MERGE_SCORE; the highest score first (key = -score, exact in double). */
static int spm_rule(const void *ctx, int32_t a, int32_t b, double *key, int32_t *merged)
{
    const qnpu_tokenizer *t = ctx;
    int32_t m = lookup_pair(t, t->pieces[a], t->lens[a], t->pieces[b], t->lens[b]);
    if (m < 0 || !(t->scores[m] > MIN_MERGE_SCORE))
        return 0;
    *key = -(double)t->scores[m];
    *merged = m;
    return 1;
}

static void push_symbol(encoder *e, int32_t id)
{
    e->sym[e->n_sym++].id = id;
}

/* Step 2: the dummy prefix, then run.c's UTF-8 groups with the byte fallback. */
static void initial_symbols(encoder *e, const char *text, size_t len)
{
    const qnpu_tokenizer *t = e->t;
    if (len > 0 && t->space_id >= 0)
        push_symbol(e, t->space_id);
    size_t i = 0;
    while (i < len) {
        /* a group is one byte plus the continuation bytes after it, at most MAX_GROUP bytes;
         * like run.c, a stray continuation byte starts a group of its own */
        size_t n = 1;
        while (n < MAX_GROUP && i + n < len && ((unsigned char)text[i + n] & 0xC0) == 0x80)
            n++;
        int32_t id = lookup(t, text + i, n);
        if (id >= 0) {
            push_symbol(e, id);
        } else {
            for (size_t k = 0; k < n; k++)
                push_symbol(e, t->byte_id[(unsigned char)text[i + k]]);
        }
        i += n;
    }
}

qnpu_status qnpu_tokenizer_encode(const qnpu_tokenizer *t, const char *text, size_t len,
                                  int add_bos, int32_t *ids, size_t cap, size_t *n_out)
{
    if (n_out)
        *n_out = 0;
    if (!t || !n_out || (!text && len) || (!ids && cap))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_tokenizer_encode: NULL argument");
    if (len > (size_t)INT32_MAX - 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_tokenizer_encode: %zu bytes is too long",
                          len);

    if (t->bpe) {
        size_t n = 0;
        if (add_bos && t->bos >= 0) {
            if (n < cap)
                ids[n] = t->bos;
            n++;
        }
        qnpu_status s = qnpu__bpe_encode(t->bpe, text, len, ids, cap, &n);
        *n_out = n;
        if (s == QNPU_OK && n > cap)
            s = qnpu__fail(QNPU_ERR_BUFFER_TOO_SMALL,
                           "qnpu_tokenizer_encode: %zu ids do not fit in a buffer of %zu", n, cap);
        return s;
    }
    /* scratch, per call, so that concurrent calls on one tokenizer do not interfere */
    encoder e = {t, qnpu__calloc(len + 1, sizeof *e.sym), 0};
    qnpu__merger mg = {spm_rule, t, NULL, 0, 0};
    qnpu_status s = QNPU_OK;
    if (!e.sym)
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_tokenizer_encode: cannot allocate for %zu bytes",
                       len);
    if (s == QNPU_OK) {
        initial_symbols(&e, text, len);
        s = qnpu__merge_word(&mg, e.sym, e.n_sym);
    }
    if (s == QNPU_OK) {
        size_t n = 0;
        if (add_bos) {
            if (n < cap)
                ids[n] = t->bos;
            n++;
        }
        for (int32_t i = e.n_sym > 0 ? 0 : -1; i >= 0; i = e.sym[i].next) {
            if (n < cap)
                ids[n] = e.sym[i].id;
            n++;
        }
        *n_out = n;
        if (n > cap)
            s = qnpu__fail(QNPU_ERR_BUFFER_TOO_SMALL,
                           "qnpu_tokenizer_encode: %zu ids do not fit in a buffer of %zu", n, cap);
    }
    qnpu__free(e.sym);
    qnpu__merger_free(&mg);
    return s;
}

/* ---- decoding ----------------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

qnpu_status qnpu_tokenizer_decode(const qnpu_tokenizer *t, int32_t prev, int32_t id, char *buf,
                                  size_t cap, size_t *n_out)
{
    if (n_out)
        *n_out = 0;
    if (!t || !n_out || (!buf && cap))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_tokenizer_decode: NULL argument");
    if (id < 0 || id >= t->n)
        return qnpu__fail(QNPU_ERR_INVALID_ARG,
                          "qnpu_tokenizer_decode: token id %d is outside the vocabulary of %lld",
                          id, (long long)t->n);
    const char *p = t->pieces[id];
    size_t n = t->lens[id];
    if (!t->bpe && prev == t->bos && n > 0 && p[0] == ' ') { /* SentencePiece drops it after BOS */
        p++;
        n--;
    }
    char byte;
    if (!t->bpe && n == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && hex_value(p[3]) >= 0 &&
        hex_value(p[4]) >= 0) {
        byte = (char)(hex_value(p[3]) * 16 + hex_value(p[4]));
        p = &byte;
        n = 1;
    }
    *n_out = n;
    if (n >= cap) { /* no room for the bytes and the NUL: write what fits, terminated */
        if (cap > 0) {
            memcpy(buf, p, cap - 1);
            buf[cap - 1] = '\0';
        }
        return qnpu__fail(QNPU_ERR_BUFFER_TOO_SMALL,
                          "qnpu_tokenizer_decode: token %d needs %zu bytes plus NUL, buffer holds %zu",
                          id, n, cap);
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
    return QNPU_OK;
}

/* ---- the perplexity protocol ------------------------------------------------------------- */

/* The next paragraph of the text from byte *pos: up to the next "\n\n" (or the end), with
 * surrounding '\n' stripped, as Python's text.split("\n\n") then strip("\n"). Returns 0 when
 * the text is exhausted; the paragraph (start, plen) may be empty, which the caller skips. */
static int next_paragraph(const char *text, size_t len, size_t *pos, size_t *start, size_t *plen)
{
    if (*pos > len)
        return 0;
    size_t b = *pos, e = b;
    while (e < len && !(text[e] == '\n' && e + 1 < len && text[e + 1] == '\n'))
        e++;
    *pos = e < len ? e + 2 : len + 1; /* past the separator; len + 1 marks the end */
    while (b < e && text[b] == '\n')
        b++;
    while (e > b && text[e - 1] == '\n')
        e--;
    *start = b;
    *plen = e - b;
    return 1;
}

qnpu_status qnpu_tokenize_paragraphs(const qnpu_tokenizer *t, const char *text, size_t len,
                                     int32_t **ids, size_t *n)
{
    if (ids)
        *ids = NULL;
    if (n)
        *n = 0;
    if (!t || !ids || !n || (!text && len))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_tokenize_paragraphs: NULL argument");

    /* pass 1: a bound on the ids, BOS + dummy prefix + one per byte for each paragraph (a BPE
     * with NFC may expand the text 3x) */
    size_t pos = 0, start, plen, bound = 0, per_byte = t->bpe ? qnpu__bpe_ids_per_byte(t->bpe) : 1;
    while (next_paragraph(text, len, &pos, &start, &plen))
        if (plen)
            bound += per_byte * plen + 2;
    if (bound == 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_tokenize_paragraphs: no text");

    int32_t *out = qnpu__calloc(bound, sizeof *out);
    if (!out)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_tokenize_paragraphs: cannot allocate %zu ids",
                          bound);
    /* pass 2: encode each paragraph straight into its place */
    size_t used = 0;
    qnpu_status s = QNPU_OK;
    pos = 0;
    while (s == QNPU_OK && next_paragraph(text, len, &pos, &start, &plen)) {
        if (!plen)
            continue;
        size_t got;
        s = qnpu_tokenizer_encode(t, text + start, plen, 1, out + used, bound - used, &got);
        used += got;
    }
    if (s != QNPU_OK) {
        qnpu__free(out);
        return s;
    }
    *ids = out;
    *n = used;
    return QNPU_OK;
}
