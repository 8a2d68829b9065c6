/* check_tokenizer.c — tests of the tokenizer component.
 *
 * The library's O(n log n) encoder is compared with a naive reference written here: linear
 * search over the vocabulary and the O(n^2) merge loop with the structure of llama2.c run.c's
 * encode (rescan every pair after each merge, strictly greater score wins). The reference reads
 * tok512.bin with its own parser, so it shares nothing with lib/model/tokenizer.c. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

#define TOK512 "models/tok512.bin"
#define VALID  "data/tinystories_valid_head.txt"
#define GREEDY "models/stories260K.greedy256.txt"

/* ---- the reference vocabulary and encoder --------------------------------------------------- */

typedef struct ref_vocab {
    int n;
    char **pieces; /* not NUL-terminated: use lens */
    uint32_t *lens;
    float *scores;
    int32_t bos;
    size_t max_len;
} ref_vocab;

static void ref_free(ref_vocab *v)
{
    for (int i = 0; i < v->n; i++)
        free(v->pieces[i]);
    free(v->pieces);
    free(v->lens);
    free(v->scores);
    memset(v, 0, sizeof *v);
}

/* Add one piece (copied) with its score. */
static void ref_add(ref_vocab *v, const char *piece, size_t len, float score)
{
    v->pieces = realloc(v->pieces, (size_t)(v->n + 1) * sizeof *v->pieces);
    v->lens = realloc(v->lens, (size_t)(v->n + 1) * sizeof *v->lens);
    v->scores = realloc(v->scores, (size_t)(v->n + 1) * sizeof *v->scores);
    ck_assert(v->pieces && v->lens && v->scores);
    v->pieces[v->n] = malloc(len + 1);
    memcpy(v->pieces[v->n], piece, len);
    v->lens[v->n] = (uint32_t)len;
    v->scores[v->n] = score;
    if (len > v->max_len)
        v->max_len = len;
    v->n++;
}

/* Read a llama2.c tokenizer file: int32 max_token_length, then {float, int32 len, bytes}. */
static void ref_read_llama2c(const char *path, ref_vocab *v)
{
    size_t size;
    unsigned char *d = qt_read_file(path, &size);
    memset(v, 0, sizeof *v);
    v->bos = 1;
    size_t off = 4;
    while (off < size) {
        float score;
        int32_t len;
        memcpy(&score, d + off, 4);
        memcpy(&len, d + off + 4, 4);
        ref_add(v, (const char *)d + off + 8, (size_t)len, score);
        off += 8 + (size_t)len;
    }
    ck_assert_uint_eq(off, size);
    free(d);
}

/* Linear search, first match wins. */
static int ref_find(const ref_vocab *v, const char *s, size_t n)
{
    for (int i = 0; i < v->n; i++)
        if (v->lens[i] == n && memcmp(v->pieces[i], s, n) == 0)
            return i;
    return -1;
}

/* The byte-fallback token of byte b: "<0xXX>", else b + 3 if the vocabulary has no byte pieces
 * at all (run.c's layout), else 0. */
static int ref_byte_token(const ref_vocab *v, unsigned char b)
{
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    int id = ref_find(v, name, 6);
    if (id >= 0)
        return id;
    for (int c = 0; c < 256; c++) {
        snprintf(name, sizeof name, "<0x%02X>", c);
        if (ref_find(v, name, 6) >= 0)
            return 0;
    }
    return b + 3 < v->n ? b + 3 : 0;
}

/* run.c's encode, O(n^2): returns the number of ids written to out (room for len + 2). */
static size_t ref_encode(const ref_vocab *v, const char *text, size_t len, int add_bos,
                         int32_t *out)
{
    size_t n = 0;
    if (add_bos)
        out[n++] = v->bos;
    if (len > 0) {
        int sp = ref_find(v, " ", 1);
        if (sp >= 0)
            out[n++] = sp;
    }
    /* code points: reset on a non-continuation byte, stop at 4 bytes */
    char cp[5];
    size_t cp_len = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) != 0x80)
            cp_len = 0;
        cp[cp_len++] = (char)c;
        if (i + 1 < len && ((unsigned char)text[i + 1] & 0xC0) == 0x80 && cp_len < 4)
            continue;
        int id = ref_find(v, cp, cp_len);
        if (id >= 0) {
            out[n++] = id;
        } else {
            for (size_t k = 0; k < cp_len; k++)
                out[n++] = ref_byte_token(v, (unsigned char)cp[k]);
        }
        cp_len = 0;
    }
    /* merges: best score over all adjacent pairs, strictly greater wins (so leftmost on ties).
     * One deliberate difference from run.c: BOS is a control token and never merges (run.c
     * would try BOS's piece + the next piece; no real vocabulary has such a piece). */
    size_t first = add_bos ? 1 : 0;
    char *buf = malloc(2 * v->max_len + 1);
    for (;;) {
        float best_score = -1e10f;
        int best_id = -1;
        size_t best_idx = 0;
        for (size_t i = first; i + 1 < n; i++) {
            size_t la = v->lens[out[i]], lb = v->lens[out[i + 1]];
            memcpy(buf, v->pieces[out[i]], la);
            memcpy(buf + la, v->pieces[out[i + 1]], lb);
            int id = ref_find(v, buf, la + lb);
            if (id != -1 && v->scores[id] > best_score) {
                best_score = v->scores[id];
                best_id = id;
                best_idx = i;
            }
        }
        if (best_id == -1)
            break;
        out[best_idx] = best_id;
        memmove(out + best_idx + 1, out + best_idx + 2, (n - best_idx - 2) * sizeof *out);
        n--;
    }
    free(buf);
    return n;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static qnpu_tokenizer *load_tok512(void)
{
    qnpu_tokenizer *t = NULL;
    qnpu_status s = qnpu_tokenizer_load(qt_shared(TOK512), 0, &t);
    ck_assert_msg(s == QNPU_OK, "load: %s", qnpu_last_error());
    return t;
}

/* Encode with the library into a new array; *n gets the count. */
static int32_t *lib_encode(const qnpu_tokenizer *t, const char *text, size_t len, int add_bos,
                           size_t *n)
{
    int32_t *ids = malloc((len + 2) * sizeof *ids);
    qnpu_status s = qnpu_tokenizer_encode(t, text, len, add_bos, ids, len + 2, n);
    ck_assert_msg(s == QNPU_OK, "encode: %s", qnpu_last_error());
    return ids;
}

/* Compare the library with the reference on one text. */
static void check_same(const qnpu_tokenizer *t, const ref_vocab *v, const char *text, size_t len,
                       int add_bos, const char *what, size_t index)
{
    size_t n_lib;
    int32_t *lib = lib_encode(t, text, len, add_bos, &n_lib);
    int32_t *ref = malloc((len + 2) * sizeof *ref);
    size_t n_ref = ref_encode(v, text, len, add_bos, ref);
    ck_assert_msg(n_lib == n_ref, "%s %zu: %zu ids, reference %zu", what, index, n_lib, n_ref);
    for (size_t i = 0; i < n_ref; i++)
        ck_assert_msg(lib[i] == ref[i], "%s %zu: id %zu is %d, reference %d", what, index, i,
                      lib[i], ref[i]);
    free(lib);
    free(ref);
}

/* Decode ids[0..n) as a chain starting after `prev`, into a new NUL-terminated string. */
static char *decode_chain(const qnpu_tokenizer *t, int32_t prev, const int32_t *ids, size_t n,
                          size_t *out_len)
{
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        char piece[256];
        size_t k;
        qnpu_status st = qnpu_tokenizer_decode(t, prev, ids[i], piece, sizeof piece, &k);
        ck_assert_msg(st == QNPU_OK, "decode: %s", qnpu_last_error());
        while (len + k + 1 > cap)
            s = realloc(s, cap *= 2);
        memcpy(s + len, piece, k);
        len += k;
        prev = ids[i];
    }
    s[len] = '\0';
    *out_len = len;
    return s;
}

/* Split text on "\n\n" (as Python's str.split), strip '\n' around each part, keep non-empty
 * ones; at most max parts. Returns the count; starts/lens filled. */
static size_t split_paragraphs(const char *text, size_t len, size_t max, size_t *starts,
                               size_t *lens)
{
    size_t n = 0, b = 0;
    while (n < max && b <= len) {
        const char *sep = NULL;
        for (size_t i = b; i + 1 < len; i++)
            if (text[i] == '\n' && text[i + 1] == '\n') {
                sep = text + i;
                break;
            }
        size_t e = sep ? (size_t)(sep - text) : len;
        size_t s0 = b, e0 = e;
        while (s0 < e0 && text[s0] == '\n')
            s0++;
        while (e0 > s0 && text[e0 - 1] == '\n')
            e0--;
        if (e0 > s0) {
            starts[n] = s0;
            lens[n] = e0 - s0;
            n++;
        }
        b = e + 2;
    }
    return n;
}

/* A fixed-seed xorshift64* generator: the same strings on every run. */
static uint64_t rng_state;
static uint32_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

/* A random byte string: mixes ASCII text, spaces, NULs, stray continuation bytes, valid
 * multi-byte UTF-8 and arbitrary high bytes. */
static size_t random_text(char *buf, size_t max)
{
    static const char *const frags[] = {"\xc3\xa9", "\xe2\x80\x99", "\xf0\x9f\x98\x80", "\xe2\x80",
                                        "\x80\x80\x80\x80\x80\x80", "\xff", "\xc0", "\xf8\x88\x80\x80\x80",
                                        "<0x41>", " the", "\n"};
    size_t n = rng() % (max - 8);
    size_t len = 0;
    while (len < n) {
        uint32_t r = rng() % 10;
        if (r < 4) {
            buf[len++] = (char)("abcdefghijklmnopqrstuvwxyz .,"[rng() % 29]);
        } else if (r < 5) {
            buf[len++] = '\0';
        } else if (r < 7) {
            buf[len++] = (char)(0x80 + rng() % 128);
        } else {
            const char *f = frags[rng() % (sizeof frags / sizeof frags[0])];
            size_t k = strlen(f);
            if (len + k > n)
                break;
            memcpy(buf + len, f, k);
            len += k;
        }
    }
    return len;
}

/* The first `max` paragraphs of the validation text (the text itself through *text). */
static size_t valid_paragraphs(char **text, size_t max, size_t **starts, size_t **lens)
{
    size_t len;
    *text = qt_read_file(qt_shared(VALID), &len);
    *starts = malloc(max * sizeof **starts);
    *lens = malloc(max * sizeof **lens);
    return split_paragraphs(*text, len, max, *starts, *lens);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_readme_example)
{
    if (!qt_have_shared(TOK512))
        return;
    qnpu_tokenizer *t = load_tok512();
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), 512);
    ck_assert_int_eq(qnpu_tokenizer_bos(t), 1);
    ck_assert_int_eq(qnpu_tokenizer_eos(t), 2);
    const char *text = "Once upon a time, there was a little girl named Lily.";
    static const int32_t want[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                                   395, 317, 426};
    size_t n;
    int32_t *ids = lib_encode(t, text, strlen(text), 1, &n);
    ck_assert_uint_eq(n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], want[i]);
    /* without BOS: the same ids, minus the first */
    free(ids);
    ids = lib_encode(t, text, strlen(text), 0, &n);
    ck_assert_uint_eq(n, sizeof want / sizeof want[0] - 1);
    ck_assert_mem_eq(ids, want + 1, n * sizeof *ids);
    free(ids);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_empty_and_small)
{
    if (!qt_have_shared(TOK512))
        return;
    qnpu_tokenizer *t = load_tok512();
    int32_t ids[8];
    size_t n = 99;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "", 0, 0, ids, 8, &n), QNPU_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(qnpu_tokenizer_encode(t, NULL, 0, 1, ids, 8, &n), QNPU_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], 1);
    /* a NUL byte is text: dummy prefix then <0x00> (id 3) */
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "\0", 1, 0, ids, 8, &n), QNPU_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], 410);
    ck_assert_int_eq(ids[1], 3);
    /* an unknown code point falls back to its bytes: U+4E2D is <0xE4> <0xB8> <0xAD> */
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "\xe4\xb8\xad", 3, 0, ids, 8, &n), QNPU_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ids[1], 0xE4 + 3);
    ck_assert_int_eq(ids[2], 0xB8 + 3);
    ck_assert_int_eq(ids[3], 0xAD + 3);
    /* U+00E9 is a piece of its own (485) */
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "\xc3\xa9", 2, 0, ids, 8, &n), QNPU_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[1], 485);
    /* a code point that is a piece (id 511, U+200A) stays whole */
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "\xe2\x80\x8a", 3, 0, ids, 8, &n), QNPU_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[1], 511);
    ck_assert_str_eq(qnpu_tokenizer_piece(t, 259), " t");
    ck_assert_str_eq(qnpu_tokenizer_piece(t, 3), "<0x00>");
    ck_assert_ptr_null(qnpu_tokenizer_piece(t, 512));
    ck_assert_ptr_null(qnpu_tokenizer_piece(t, -1));
    ck_assert_ptr_null(qnpu_tokenizer_piece(NULL, 0));
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(NULL), 0);
    ck_assert_int_eq(qnpu_tokenizer_encode(NULL, "a", 1, 0, ids, 8, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_tokenizer_encode(t, NULL, 1, 0, ids, 8, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "a", 1, 0, ids, 8, NULL), QNPU_ERR_INVALID_ARG);
    qnpu_tokenizer_free(t);
    qnpu_tokenizer_free(NULL);
}
END_TEST

START_TEST(test_pieces_match_file)
{
    if (!qt_have_shared(TOK512))
        return;
    qnpu_tokenizer *t = load_tok512();
    ref_vocab v;
    ref_read_llama2c(qt_shared(TOK512), &v);
    ck_assert_int_eq(v.n, 512);
    for (int i = 0; i < v.n; i++) {
        const char *p = qnpu_tokenizer_piece(t, i);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq(strlen(p), v.lens[i]);
        ck_assert_mem_eq(p, v.pieces[i], v.lens[i]);
    }
    ref_free(&v);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_reference_paragraphs)
{
    if (!qt_have_shared(TOK512) || !qt_have_shared(VALID))
        return;
    qnpu_tokenizer *t = load_tok512();
    ref_vocab v;
    ref_read_llama2c(qt_shared(TOK512), &v);
    char *text;
    size_t *starts, *lens;
    size_t n = valid_paragraphs(&text, 200, &starts, &lens);
    ck_assert_uint_eq(n, 200);
    for (size_t i = 0; i < n; i++)
        check_same(t, &v, text + starts[i], lens[i], 1, "paragraph", i);
    free(text);
    free(starts);
    free(lens);
    ref_free(&v);
    qnpu_tokenizer_free(t);
}
END_TEST

/* The vocabulary embedded in the GGUF file (written by llama.cpp's converter, with U+2581 for
 * spaces and <s>/</s> as control tokens) encodes the validation text to the same ids as
 * tok512.bin, and the whole file's paragraph stream agrees too. */
START_TEST(test_gguf_vocab_same_ids)
{
    const char *gguf = "models/stories260K-f32.gguf";
    if (!qt_have_shared(TOK512) || !qt_have_shared(VALID) || !qt_have_shared(gguf))
        return;
    qnpu_tokenizer *a = load_tok512(), *b;
    qnpu_model *m;
    ck_assert_int_eq(qnpu_model_load(qt_shared(gguf), NULL, &m), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &b), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(b), 512);
    ck_assert_int_eq(qnpu_tokenizer_bos(b), 1);
    ck_assert_int_eq(qnpu_tokenizer_eos(b), 2);
    char *text;
    size_t *starts, *lens;
    size_t n = valid_paragraphs(&text, 200, &starts, &lens);
    int32_t *ia = malloc(4096 * sizeof *ia), *ib = malloc(4096 * sizeof *ib);
    for (size_t i = 0; i < n; i++) {
        size_t na, nb;
        ck_assert_int_eq(qnpu_tokenizer_encode(a, text + starts[i], lens[i], 1, ia, 4096, &na), QNPU_OK);
        ck_assert_int_eq(qnpu_tokenizer_encode(b, text + starts[i], lens[i], 1, ib, 4096, &nb), QNPU_OK);
        ck_assert_uint_eq(na, nb);
        ck_assert_int_eq(memcmp(ia, ib, na * sizeof *ia), 0);
    }
    size_t len;
    char *all = qt_read_file(qt_shared(VALID), &len);
    int32_t *sa, *sb;
    size_t na, nb;
    ck_assert_int_eq(qnpu_tokenize_paragraphs(a, all, len, &sa, &na), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenize_paragraphs(b, all, len, &sb, &nb), QNPU_OK);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(sa, sb, na * sizeof *sa), 0);
    qnpu_free(sa);
    qnpu_free(sb);
    free(all);
    free(ia);
    free(ib);
    free(text);
    free(starts);
    free(lens);
    qnpu_tokenizer_free(a);
    qnpu_tokenizer_free(b);
    qnpu_model_free(m);
}
END_TEST

START_TEST(test_reference_random_bytes)
{
    if (!qt_have_shared(TOK512))
        return;
    qnpu_tokenizer *t = load_tok512();
    ref_vocab v;
    ref_read_llama2c(qt_shared(TOK512), &v);
    rng_state = 0x9E3779B97F4A7C15ull;
    char buf[200];
    for (size_t i = 0; i < 400; i++) {
        size_t len = random_text(buf, sizeof buf);
        check_same(t, &v, buf, len, (int)(i & 1), "random string", i);
        /* and the round trip: after BOS, the decoded ids give the bytes back */
        size_t n, dlen;
        int32_t *ids = lib_encode(t, buf, len, 0, &n);
        char *back = decode_chain(t, 1, ids, n, &dlen);
        ck_assert_msg(dlen == len && memcmp(back, buf, len) == 0, "random string %zu: round trip",
                      i);
        free(back);
        free(ids);
    }
    ref_free(&v);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_roundtrip_paragraphs)
{
    if (!qt_have_shared(TOK512) || !qt_have_shared(VALID))
        return;
    qnpu_tokenizer *t = load_tok512();
    char *text;
    size_t *starts, *lens;
    size_t n = valid_paragraphs(&text, 200, &starts, &lens);
    for (size_t i = 0; i < n; i++) {
        size_t k, dlen;
        int32_t *ids = lib_encode(t, text + starts[i], lens[i], 1, &k);
        ck_assert_int_eq(ids[0], 1);
        char *back = decode_chain(t, ids[0], ids + 1, k - 1, &dlen);
        ck_assert_msg(dlen == lens[i] && memcmp(back, text + starts[i], dlen) == 0,
                      "paragraph %zu does not round-trip:\n%s", i, back);
        free(back);
        free(ids);
    }
    free(text);
    free(starts);
    free(lens);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_greedy_golden_decode)
{
    if (!qt_have_shared(TOK512) || !qt_have_shared(GREEDY))
        return;
    qnpu_tokenizer *t = load_tok512();
    size_t size;
    char *file = qt_read_file(qt_shared(GREEDY), &size);
    /* line 3 holds the ids, lines 4+ the text */
    char *line3 = strchr(strchr(file, '\n') + 1, '\n') + 1;
    char *text = strchr(line3, '\n') + 1;
    int32_t ids[256];
    size_t n = 0;
    for (char *p = line3; p < text - 1 && n < 256;) {
        char *end;
        long v = strtol(p, &end, 10);
        ck_assert_ptr_ne(end, p);
        ids[n++] = (int32_t)v;
        p = end;
    }
    ck_assert_uint_eq(n, 256);
    /* the file ends with one newline after the text; the last id (426 ".") is not a newline */
    size_t text_len = size - (size_t)(text - file);
    ck_assert(text_len > 0 && text[text_len - 1] == '\n');
    text_len--;
    size_t dlen;
    char *got = decode_chain(t, 1, ids, n, &dlen);
    ck_assert_uint_eq(dlen, text_len);
    ck_assert_mem_eq(got, text, text_len);
    free(got);
    free(file);
    qnpu_tokenizer_free(t);
}
END_TEST

/* Write `len` bytes of `data` to a temporary file, load it and expect status `want` and a
 * message that contains the path and `word` (a token index, for example). */
static void expect_load_failure(const char *name, const void *data, size_t len, int64_t vocab,
                                qnpu_status want, const char *word)
{
    const char *path = qt_tmpfile(name);
    qt_write_file(path, data, len);
    qnpu_tokenizer *t = (qnpu_tokenizer *)&t; /* must be reset to NULL */
    qnpu_status s = qnpu_tokenizer_load(path, vocab, &t);
    ck_assert_msg(s == want, "%s: status %d, expected %d (%s)", name, s, want, qnpu_last_error());
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(qnpu_last_error(), path), "%s: message '%s' does not name the file", name,
                  qnpu_last_error());
    if (word)
        ck_assert_msg(strstr(qnpu_last_error(), word), "%s: message '%s' lacks '%s'", name,
                      qnpu_last_error(), word);
}

/* Byte offset of record `k` in a tokenizer file. */
static size_t record_offset(const unsigned char *d, int k)
{
    size_t off = 4;
    for (int i = 0; i < k; i++) {
        int32_t len;
        memcpy(&len, d + off + 4, 4);
        off += 8 + (size_t)len;
    }
    return off;
}

START_TEST(test_bad_files)
{
    if (!qt_have_shared(TOK512))
        return;
    size_t size;
    unsigned char *d = qt_read_file(qt_shared(TOK512), &size);
    unsigned char *c = malloc(size);

    /* empty, short header, header only */
    expect_load_failure("empty.bin", d, 0, 0, QNPU_ERR_FORMAT, NULL);
    expect_load_failure("short.bin", d, 3, 0, QNPU_ERR_FORMAT, NULL);
    expect_load_failure("header.bin", d, 4, 0, QNPU_ERR_FORMAT, NULL);
    expect_load_failure("header512.bin", d, 4, 512, QNPU_ERR_IO, "token 0");
    /* truncated inside records: in the score/length, and inside the piece bytes */
    size_t r100 = record_offset(d, 100);
    expect_load_failure("trunc1.bin", d, r100 + 3, 0, QNPU_ERR_IO, "token 100");
    expect_load_failure("trunc2.bin", d, r100 + 9, 0, QNPU_ERR_IO, "token 100");
    expect_load_failure("trunc3.bin", d, size - 1, 0, QNPU_ERR_IO, "token 511");
    expect_load_failure("trunc4.bin", d, 10, 512, QNPU_ERR_IO, "token 0");
    /* cut at a record boundary: fine when reading to the end, too short for 512 */
    expect_load_failure("trunc5.bin", d, r100, 512, QNPU_ERR_IO, "token 100");
    expect_load_failure("big.bin", d, size, 513, QNPU_ERR_IO, "token 512");
    qnpu_tokenizer *t;
    const char *p = qt_tmpfile("prefix.bin");
    qt_write_file(p, d, r100);
    ck_assert_int_eq(qnpu_tokenizer_load(p, 0, &t), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), 100);
    qnpu_tokenizer_free(t);
    ck_assert_int_eq(qnpu_tokenizer_load(qt_shared(TOK512), 300, &t), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), 300);
    qnpu_tokenizer_free(t);
    /* two records only: BOS and EOS need ids 1 and 2 */
    expect_load_failure("two.bin", d, record_offset(d, 2), 0, QNPU_ERR_FORMAT, NULL);

    /* negative and huge lengths, NaN score, in record 37 */
    size_t r37 = record_offset(d, 37);
    int32_t bad = -5;
    memcpy(c, d, size);
    memcpy(c + r37 + 4, &bad, 4);
    expect_load_failure("neg.bin", c, size, 0, QNPU_ERR_FORMAT, "token 37");
    bad = (1 << 20) + 1;
    memcpy(c + r37 + 4, &bad, 4);
    expect_load_failure("huge.bin", c, size, 0, QNPU_ERR_FORMAT, "token 37");
    bad = (int32_t)size; /* within the limit but past the end of the file */
    memcpy(c + r37 + 4, &bad, 4);
    expect_load_failure("past.bin", c, size, 0, QNPU_ERR_IO, "token 37");
    memcpy(c, d, size);
    float nan = NAN;
    memcpy(c + r37, &nan, 4);
    expect_load_failure("nan.bin", c, size, 0, QNPU_ERR_FORMAT, "token 37");

    /* a missing file, and bad arguments */
    const char *missing = qt_tmpfile("does-not-exist.bin");
    ck_assert_int_eq(qnpu_tokenizer_load(missing, 0, &t), QNPU_ERR_IO);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), missing));
    ck_assert_int_eq(qnpu_tokenizer_load(qt_shared(TOK512), -1, &t), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_tokenizer_load(NULL, 0, &t), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_tokenizer_load(qt_shared(TOK512), 0, NULL), QNPU_ERR_INVALID_ARG);
    free(c);
    free(d);
}
END_TEST

START_TEST(test_decode_errors)
{
    if (!qt_have_shared(TOK512))
        return;
    qnpu_tokenizer *t = load_tok512();
    char buf[16];
    size_t n = 99;
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 0, 512, buf, sizeof buf, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "512"));
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 0, -7, buf, sizeof buf, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "-7"));
    ck_assert_int_eq(qnpu_tokenizer_decode(NULL, 0, 5, buf, sizeof buf, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 0, 5, buf, sizeof buf, NULL), QNPU_ERR_INVALID_ARG);

    /* the plain piece, the space dropped after BOS, a byte piece */
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 300, 403, buf, sizeof buf, &n), QNPU_OK);
    ck_assert_str_eq(buf, qnpu_tokenizer_piece(t, 403));
    ck_assert_uint_eq(n, strlen(qnpu_tokenizer_piece(t, 403)));
    ck_assert_int_eq(buf[0], ' ');
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 1, 403, buf, sizeof buf, &n), QNPU_OK);
    ck_assert_str_eq(buf, qnpu_tokenizer_piece(t, 403) + 1);
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 1, 'A' + 3, buf, sizeof buf, &n), QNPU_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(buf, "A");
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 5, 3, buf, sizeof buf, &n), QNPU_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(buf[0], '\0');

    /* buffer too small: " upon" (403) needs 5 bytes + NUL */
    const char *piece = qnpu_tokenizer_piece(t, 403);
    size_t need = strlen(piece);
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 0, 403, buf, need, &n), QNPU_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, need);
    ck_assert_uint_eq(strlen(buf), need - 1);
    ck_assert_mem_eq(buf, piece, need - 1);
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 0, 403, NULL, 0, &n), QNPU_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, need);
    ck_assert_int_eq(qnpu_tokenizer_decode(t, 0, 403, buf, need + 1, &n), QNPU_OK);
    ck_assert_str_eq(buf, piece);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_encode_buffer_too_small)
{
    if (!qt_have_shared(TOK512))
        return;
    qnpu_tokenizer *t = load_tok512();
    const char *text = "Once upon a time, there was a little girl named Lily.";
    size_t len = strlen(text), full;
    int32_t *all = lib_encode(t, text, len, 1, &full);
    ck_assert_uint_eq(full, 16);
    int32_t ids[32];
    for (size_t cap = 0; cap < full; cap++) {
        size_t n = 0;
        for (size_t i = 0; i < 32; i++)
            ids[i] = -99;
        ck_assert_int_eq(qnpu_tokenizer_encode(t, text, len, 1, cap ? ids : NULL, cap, &n),
                         QNPU_ERR_BUFFER_TOO_SMALL);
        ck_assert_uint_eq(n, full);
        ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "16"));
        for (size_t i = 0; i < cap; i++)
            ck_assert_int_eq(ids[i], all[i]);
        for (size_t i = cap; i < 32; i++)
            ck_assert_int_eq(ids[i], -99); /* nothing written past cap */
    }
    size_t n;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, text, len, 1, ids, full, &n), QNPU_OK);
    ck_assert_uint_eq(n, full);
    free(all);
    qnpu_tokenizer_free(t);
}
END_TEST

/* ids of the perplexity protocol for one paragraph: BOS + encode(p) */
static size_t para_ids(const qnpu_tokenizer *t, const char *p, int32_t *out)
{
    size_t n;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, p, strlen(p), 1, out, strlen(p) + 2, &n), QNPU_OK);
    return n;
}

START_TEST(test_paragraphs)
{
    if (!qt_have_shared(TOK512))
        return;
    qnpu_tokenizer *t = load_tok512();
    int32_t want[32];
    size_t nw = 0;
    nw += para_ids(t, "a", want + nw);
    nw += para_ids(t, "b", want + nw);
    nw += para_ids(t, "c", want + nw);
    const char *text = "a\n\nb\n\n\n\nc\n";
    int32_t *ids = NULL;
    size_t n = 0;
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, text, strlen(text), &ids, &n), QNPU_OK);
    ck_assert_uint_eq(n, nw);
    ck_assert_mem_eq(ids, want, n * sizeof *ids);
    qnpu_free(ids);

    /* three newlines: the third one is stripped from the next paragraph */
    text = "\n\na b\n\n\nc";
    nw = para_ids(t, "a b", want);
    nw += para_ids(t, "c", want + nw);
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, text, strlen(text), &ids, &n), QNPU_OK);
    ck_assert_uint_eq(n, nw);
    ck_assert_mem_eq(ids, want, n * sizeof *ids);
    qnpu_free(ids);

    /* a single newline stays inside the paragraph */
    text = "x\ny";
    nw = para_ids(t, "x\ny", want);
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, text, strlen(text), &ids, &n), QNPU_OK);
    ck_assert_uint_eq(n, nw);
    ck_assert_mem_eq(ids, want, n * sizeof *ids);
    qnpu_free(ids);

    ids = (int32_t *)&n;
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, "", 0, &ids, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "no text"));
    ck_assert_ptr_null(ids);
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, NULL, 0, &ids, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, "\n", 1, &ids, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, "\n\n\n\n\n", 5, &ids, &n), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_tokenize_paragraphs(NULL, "a", 1, &ids, &n), QNPU_ERR_INVALID_ARG);
    qnpu_tokenizer_free(t);
}
END_TEST

/* The whole validation file through the protocol equals the per-paragraph encodings. */
START_TEST(test_paragraphs_file)
{
    if (!qt_have_shared(TOK512) || !qt_have_shared(VALID))
        return;
    qnpu_tokenizer *t = load_tok512();
    size_t len;
    char *text = qt_read_file(qt_shared(VALID), &len);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, text, len, &ids, &n), QNPU_OK);
    size_t *starts = malloc(4000 * sizeof *starts), *lens = malloc(4000 * sizeof *lens);
    size_t np = split_paragraphs(text, len, 4000, starts, lens);
    ck_assert_uint_eq(np, 2795);
    size_t at = 0, bos = 0;
    for (size_t i = 0; i < np; i++) {
        size_t k;
        int32_t *one = lib_encode(t, text + starts[i], lens[i], 1, &k);
        ck_assert_uint_le(at + k, n);
        ck_assert_mem_eq(ids + at, one, k * sizeof *one);
        at += k;
        free(one);
    }
    ck_assert_uint_eq(at, n);
    for (size_t i = 0; i < n; i++)
        bos += ids[i] == 1;
    ck_assert_uint_eq(bos, 2795);
    qnpu_free(ids);
    free(starts);
    free(lens);
    free(text);
    qnpu_tokenizer_free(t);
}
END_TEST

/* Synthetic vocabularies through qnpu__tokenizer_create: small alphabets, many equal scores
 * (to exercise the leftmost-on-ties rule), scores at or below run.c's -1e10 floor, pieces that
 * hold NUL bytes, duplicated pieces, with and without " " and byte pieces. */
static void random_vocab(ref_vocab *v, int variant)
{
    static const char alphabet[] = {'a', 'b', 'c', ' ', '\0', '\xc3', '\xa9'};
    memset(v, 0, sizeof *v);
    v->bos = 1;
    ref_add(v, "<unk>", 5, 0);
    ref_add(v, "<s>", 3, 0);
    ref_add(v, "</s>", 4, 0);
    if (variant % 3 == 0) /* byte pieces for a few bytes only */
        for (int b = 0x00; b < 0x70; b += 7) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            ref_add(v, name, 6, 0);
        }
    for (size_t i = 0; i < sizeof alphabet; i++)
        if (variant % 2 == 0 || alphabet[i] != ' ')
            ref_add(v, &alphabet[i], 1, -100);
    int pieces = 10 + (int)(rng() % 60);
    for (int i = 0; i < pieces; i++) {
        char p[6];
        size_t len = 2 + rng() % 4;
        for (size_t k = 0; k < len; k++)
            p[k] = alphabet[rng() % sizeof alphabet];
        float score = -(float)(rng() % 4); /* few distinct scores: many ties */
        uint32_t r = rng() % 16;
        if (r == 0)
            score = -1e10f;
        else if (r == 1)
            score = -INFINITY;
        else if (r == 2)
            score = -0.0f;
        ref_add(v, p, len, score);
    }
}

START_TEST(test_reference_random_vocabularies)
{
    rng_state = 0x0123456789ABCDEFull;
    for (int variant = 0; variant < 60; variant++) {
        ref_vocab v;
        random_vocab(&v, variant);
        qnpu_tokenizer *t = NULL;
        qnpu_status s = qnpu__tokenizer_create(v.n, v.pieces, v.lens, v.scores, NULL, 1, 2, &t);
        ck_assert_msg(s == QNPU_OK, "create: %s", qnpu_last_error());
        for (int k = 0; k < 40; k++) {
            char text[120];
            size_t len = rng() % sizeof text;
            for (size_t i = 0; i < len; i++) {
                static const char chars[] = "aaabbbccc   \0\xc3\xa9\x80z";
                text[i] = chars[rng() % (sizeof chars - 1)];
            }
            check_same(t, &v, text, len, k & 1, "synthetic text", (size_t)(variant * 100 + k));
        }
        qnpu_tokenizer_free(t);
        ref_free(&v);
    }
}
END_TEST

START_TEST(test_create_errors)
{
    char *pieces[3] = {"<unk>", "<s>", "</s>"};
    uint32_t lens[3] = {5, 3, 4};
    float scores[3] = {0, 0, 0};
    qnpu_tokenizer *t = NULL;
    ck_assert_int_eq(qnpu__tokenizer_create(3, pieces, lens, scores, NULL, 1, 3, &t), QNPU_ERR_FORMAT);
    ck_assert_int_eq(qnpu__tokenizer_create(0, pieces, lens, scores, NULL, 0, 0, &t), QNPU_ERR_FORMAT);
    scores[2] = NAN;
    ck_assert_int_eq(qnpu__tokenizer_create(3, pieces, lens, scores, NULL, 1, 2, &t), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "token 2"));
    scores[2] = 0;
    ck_assert_int_eq(qnpu__tokenizer_create(3, pieces, lens, scores, NULL, 1, 2, &t), QNPU_OK);
    /* no " " piece and no byte pieces: no dummy prefix, bytes fall back to <unk> (b + 3 >= 3) */
    int32_t ids[8];
    size_t n;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "xy", 2, 1, ids, 8, &n), QNPU_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[1], 0);
    ck_assert_int_eq(ids[2], 0);
    qnpu_tokenizer_free(t);
}
END_TEST

/* Several threads encode the same paragraphs on one tokenizer at once. */
typedef struct thread_job {
    const qnpu_tokenizer *t;
    const char *text;
    const size_t *starts, *lens;
    size_t n;
    const int32_t *want; /* concatenated ids */
    int ok;
} thread_job;

static void *encode_thread(void *arg)
{
    thread_job *j = arg;
    const int32_t *w = j->want;
    j->ok = 1;
    for (size_t i = 0; i < j->n; i++) {
        int32_t ids[4096];
        size_t k;
        if (qnpu_tokenizer_encode(j->t, j->text + j->starts[i], j->lens[i], 1, ids, 4096, &k) !=
                QNPU_OK ||
            memcmp(ids, w, k * sizeof *ids) != 0)
            j->ok = 0;
        w += k;
    }
    return NULL;
}

START_TEST(test_concurrent_encode)
{
    if (!qt_have_shared(TOK512) || !qt_have_shared(VALID))
        return;
    qnpu_tokenizer *t = load_tok512();
    char *text;
    size_t *starts, *lens;
    size_t n = valid_paragraphs(&text, 300, &starts, &lens);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lens[i] + 2;
    int32_t *want = malloc(total * sizeof *want);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        int32_t *one = lib_encode(t, text + starts[i], lens[i], 1, &k);
        ck_assert_uint_le(lens[i] + 2, 4096);
        memcpy(want + at, one, k * sizeof *one);
        at += k;
        free(one);
    }
    pthread_t th[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){t, text, starts, lens, n, want, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, encode_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(jobs[i].ok, "thread %d got different ids", i);
    }
    free(want);
    free(text);
    free(starts);
    free(lens);
    qnpu_tokenizer_free(t);
}
END_TEST

/* qnpu_tokenizer_from_model: tok512.bin beside stories260K.bin; none beside a copy. */
START_TEST(test_from_model)
{
    if (!qt_have_shared("models/stories260K.bin") || !qt_have_shared(TOK512))
        return;
    qnpu_model *m = NULL;
    qnpu_status s = qnpu_model_load(qt_shared("models/stories260K.bin"), NULL, &m);
    ck_assert_msg(s == QNPU_OK, "model: %s", qnpu_last_error());
    qnpu_tokenizer *t = NULL;
    s = qnpu_tokenizer_from_model(m, &t);
    ck_assert_msg(s == QNPU_OK, "from_model: %s", qnpu_last_error());
    qnpu_model_free(m); /* the tokenizer does not depend on the model */
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), 512);
    ck_assert_str_eq(qnpu_tokenizer_piece(t, 259), " t");
    int32_t ids[8];
    size_t n;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "Once", 4, 1, ids, 8, &n), QNPU_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[1], 403);
    qnpu_tokenizer_free(t);

    /* a copy of the checkpoint alone in a directory: no tokenizer */
    size_t size;
    void *bytes = qt_read_file(qt_shared("models/stories260K.bin"), &size);
    const char *copy = qt_tmpfile("alone-stories260K.bin");
    qt_write_file(copy, bytes, size);
    free(bytes);
    ck_assert_int_eq(qnpu_model_load(copy, NULL, &m), QNPU_OK);
    t = (qnpu_tokenizer *)&t;
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_ERR_UNSUPPORTED);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "tokenizer.bin"));
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), qt_tmpdir()));
    /* ... until a tokenizer.bin appears beside it */
    bytes = qt_read_file(qt_shared(TOK512), &size);
    qt_write_file(qt_tmpfile("tokenizer.bin"), bytes, size);
    free(bytes);
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), 512);
    qnpu_tokenizer_free(t);
    remove(qt_tmpfile("tokenizer.bin"));
    ck_assert_int_eq(qnpu_tokenizer_from_model(NULL, &t), QNPU_ERR_INVALID_ARG);
    qnpu_model_free(m);
}
END_TEST

Suite *qnpu_tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tok512");
    tcase_add_test(tc, test_readme_example);
    tcase_add_test(tc, test_empty_and_small);
    tcase_add_test(tc, test_pieces_match_file);
    tcase_add_test(tc, test_greedy_golden_decode);
    tcase_add_test(tc, test_decode_errors);
    tcase_add_test(tc, test_encode_buffer_too_small);
    tcase_add_test(tc, test_paragraphs);
    tcase_add_test(tc, test_paragraphs_file);
    tcase_add_test(tc, test_concurrent_encode);
    tcase_add_test(tc, test_from_model);
    suite_add_tcase(s, tc);

    TCase *bad = tcase_create("bad_input");
    tcase_add_test(bad, test_bad_files);
    tcase_add_test(bad, test_create_errors);
    suite_add_tcase(s, bad);

    /* the naive reference is O(n^2 * vocab): give it time, especially under sanitizers */
    TCase *ref = tcase_create("reference");
    tcase_set_timeout(ref, 120);
    tcase_add_test(ref, test_reference_paragraphs);
    tcase_add_test(ref, test_gguf_vocab_same_ids);
    tcase_add_test(ref, test_reference_random_bytes);
    tcase_add_test(ref, test_reference_random_vocabularies);
    tcase_add_test(ref, test_roundtrip_paragraphs);
    suite_add_tcase(s, ref);
    return s;
}
