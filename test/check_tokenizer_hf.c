/* check_tokenizer_hf.c — tests of the Hugging Face tokenizer.json reader (byte-level BPE,
 * lib/model/tokenizer_bpe.c).
 *
 * Every tokenizer.json here is written by the test: the 256 single-byte tokens (id = byte
 * value, spelled in the GPT-2 byte-to-unicode alphabet, which this file builds on its own), a
 * handful of merges, two added special tokens and one token reachable only through
 * ignore_merges. The expected ids below are derived by hand from those merges (comments show
 * the steps), for the Llama-3 and the Qwen2 pre-tokenizer patterns. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define VALID "data/tinystories_valid_head.txt"

static const char llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char qwen2_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* A JSON string literal of s (quotes included). */
static void tb_json_string(qt_buf *b, const char *s, size_t n)
{
    qt_buf_bytes(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            qt_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            qt_buf_printf(b, "\\u%04x", c);
        else
            qt_buf_bytes(b, &s[i], 1);
    }
    qt_buf_bytes(b, "\"", 1);
}

/* ---- the GPT-2 byte alphabet, built as GPT-2's bytes_to_unicode does ------------------------ */

static unsigned alphabet[256]; /* code point standing for each byte */

static void build_alphabet(void)
{
    int kept[256] = {0};
    for (int b = '!'; b <= '~'; b++)
        kept[b] = 1;
    for (int b = 0xA1; b <= 0xAC; b++)
        kept[b] = 1;
    for (int b = 0xAE; b <= 0xFF; b++)
        kept[b] = 1;
    unsigned next = 256;
    for (int b = 0; b < 256; b++)
        alphabet[b] = kept[b] ? (unsigned)b : next++;
    ck_assert_uint_eq(next, 256 + 68);
}

/* Raw bytes -> their byte-level spelling (UTF-8), appended to b. */
static void tb_bytelevel(qt_buf *b, const char *raw, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned cp = alphabet[(unsigned char)raw[i]];
        char u[2];
        if (cp < 0x80) {
            u[0] = (char)cp;
            qt_buf_bytes(b, u, 1);
        } else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            qt_buf_bytes(b, u, 2);
        }
    }
}

/* A JSON string holding the byte-level spelling of raw. */
static void tb_json_token(qt_buf *b, const char *raw, size_t n)
{
    qt_buf t = {0};
    tb_bytelevel(&t, raw, n);
    tb_json_string(b, t.p ? t.p : "", t.len);
    free(t.p);
}

/* ---- the test vocabulary ---------------------------------------------------------------------- */

/* Merges in rank order: left + right -> the token with id 256 + rank. */
static const struct {
    const char *left, *right;
} merges[] = {
    {" ", "t"},        /* 256 " t"    */
    {"h", "e"},        /* 257 "he"    */
    {" t", "he"},      /* 258 " the"  */
    {"l", "l"},        /* 259 "ll"    */
    {"he", "ll"},      /* 260 "hell"  */
    {"hell", "o"},     /* 261 "hello" */
    {" ", "w"},        /* 262 " w"    */
    {"\n", "\n"},      /* 263 "\n\n"  */
    {"1", "2"},        /* 264 "12"    */
    {"12", "3"},       /* 265 "123"   */
    {"'", "t"},        /* 266 "'t"    */
    {"\xC3", "\xA9"},  /* 267 "é"     */
    {"\xC3", "\xB6"},  /* 268 "ö"     */
    {" w", "\xC3\xB6"},/* 269 " wö"   */
    {"o", "n"},        /* 270 "on"    */
    {"d", "on"},       /* 271 "don"   */
    {" ", "b"},        /* 272 " b"    */
    {"'", "T"},        /* 273 "'T"    */
};
#define N_MERGES ((int)(sizeof merges / sizeof merges[0]))
enum {
    ID_BOT = 256 + N_MERGES, /* 274 <|begin_of_text|> */
    ID_EOT,                  /* 275 <|eot_id|>        */
    ID_LO,                   /* 276 "lo": in the vocabulary, produced by no merge */
    N_IDS
};

typedef struct tok_opts {
    const char *pattern;     /* Split regex; NULL: a lone ByteLevel with use_regex (GPT-2) */
    int ignore_merges;
    int nfc;
    int merge_arrays;        /* merges as ["a", "b"] pairs */
    const char *bad_merge;   /* replaces the last merge (raw JSON) */
    const char *model_type;  /* "BPE" when NULL */
    const char *normalizer;  /* raw JSON replacing the normalizer, or NULL */
    const char *behavior;    /* "Isolated" when NULL */
    int no_bytelevel;        /* drop the ByteLevel step */
    int omit_model;
    const char *bad_vocab;   /* raw JSON member appended to the vocab */
    const char *decoder;     /* raw JSON replacing the decoder, or NULL */
} tok_opts;

static void build_json(qt_buf *b, const tok_opts *o)
{
    build_alphabet();
    qt_buf_printf(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
    qt_buf_printf(b, "  \"added_tokens\": [\n");
    qt_buf_printf(b, "    {\"id\": %d, \"content\": \"<|begin_of_text|>\", \"single_word\": false, "
              "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},\n",
              ID_BOT);
    qt_buf_printf(b, "    {\"id\": %d, \"content\": \"<|eot_id|>\", \"single_word\": false, "
              "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}\n",
              ID_EOT);
    qt_buf_printf(b, "  ],\n");
    if (o->normalizer)
        qt_buf_printf(b, "  \"normalizer\": %s,\n", o->normalizer);
    else
        qt_buf_printf(b, "  \"normalizer\": %s,\n", o->nfc ? "{\"type\": \"NFC\"}" : "null");
    if (o->pattern) {
        qt_buf_printf(b, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n");
        qt_buf_printf(b, "    {\"type\": \"Split\", \"pattern\": {\"Regex\": ");
        tb_json_string(b, o->pattern, strlen(o->pattern));
        qt_buf_printf(b, "}, \"behavior\": \"%s\", \"invert\": false}%s\n",
                  o->behavior ? o->behavior : "Isolated", o->no_bytelevel ? "" : ",");
        if (!o->no_bytelevel)
            qt_buf_printf(b, "    {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                      "\"trim_offsets\": true, \"use_regex\": false}\n");
        qt_buf_printf(b, "  ]},\n");
    } else {
        qt_buf_printf(b, "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                  "\"trim_offsets\": true, \"use_regex\": true},\n");
    }
    qt_buf_printf(b, "  \"post_processor\": null,\n");
    qt_buf_printf(b, "  \"decoder\": %s,\n", o->decoder ? o->decoder :
              "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
              "\"use_regex\": true}");
    if (o->omit_model) {
        qt_buf_printf(b, "  \"nothing\": null\n}\n");
        return;
    }
    qt_buf_printf(b, "  \"model\": {\n    \"type\": \"%s\", \"dropout\": null, \"unk_token\": null,\n"
              "    \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null,\n"
              "    \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": %s,\n",
              o->model_type ? o->model_type : "BPE", o->ignore_merges ? "true" : "false");
    qt_buf_printf(b, "    \"vocab\": {\n");
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        qt_buf_printf(b, "      ");
        tb_json_token(b, &c, 1);
        qt_buf_printf(b, ": %d,\n", i);
    }
    for (int r = 0; r < N_MERGES; r++) {
        char raw[32];
        snprintf(raw, sizeof raw, "%s%s", merges[r].left, merges[r].right);
        qt_buf_printf(b, "      ");
        tb_json_token(b, raw, strlen(raw));
        qt_buf_printf(b, ": %d,\n", 256 + r);
    }
    if (o->bad_vocab)
        qt_buf_printf(b, "      %s,\n", o->bad_vocab);
    qt_buf_printf(b, "      \"lo\": %d\n    },\n    \"merges\": [\n", ID_LO);
    for (int r = 0; r < N_MERGES; r++) {
        qt_buf_printf(b, "      ");
        if (r == N_MERGES - 1 && o->bad_merge) {
            qt_buf_printf(b, "%s\n", o->bad_merge);
            continue;
        }
        if (o->merge_arrays) {
            qt_buf_printf(b, "[");
            tb_json_token(b, merges[r].left, strlen(merges[r].left));
            qt_buf_printf(b, ", ");
            tb_json_token(b, merges[r].right, strlen(merges[r].right));
            qt_buf_printf(b, "]");
        } else {
            qt_buf t = {0};
            tb_bytelevel(&t, merges[r].left, strlen(merges[r].left));
            qt_buf_bytes(&t, " ", 1);
            tb_bytelevel(&t, merges[r].right, strlen(merges[r].right));
            tb_json_string(b, t.p, t.len);
            free(t.p);
        }
        qt_buf_printf(b, "%s\n", r + 1 < N_MERGES ? "," : "");
    }
    qt_buf_printf(b, "    ]\n  }\n}\n");
}

/* Write the tokenizer.json for `o` to dir/name (dir made if needed); returns the path. */
static const char *write_tokenizer(const char *dir, const char *name, const tok_opts *o)
{
    static char path[4][4096];
    static int slot;
    char *p = path[slot++ % 4];
    mkdir(dir, 0755);
    snprintf(p, 4096, "%s/%s", dir, name);
    qt_buf b = {0};
    build_json(&b, o);
    qt_write_file(p, b.p, b.len);
    free(b.p);
    return p;
}

static qnpu_tokenizer *load_opts(const char *tag, const tok_opts *o)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", qt_tmpdir(), tag);
    const char *path = write_tokenizer(dir, "tokenizer.json", o);
    qnpu_tokenizer *t = NULL;
    ck_assert_msg(qnpu_tokenizer_load(path, 0, &t) == QNPU_OK, "%s", qnpu_last_error());
    return t;
}

static qnpu_tokenizer *load_llama3(void)
{
    tok_opts o = {.pattern = llama3_pattern, .ignore_merges = 1};
    return load_opts("llama3", &o);
}

static qnpu_tokenizer *load_qwen2(void)
{
    tok_opts o = {.pattern = qwen2_pattern, .nfc = 1};
    return load_opts("qwen2", &o);
}

/* Encode text (no BOS) and compare with the expected ids. */
static void expect_ids(const qnpu_tokenizer *t, const char *text, const int32_t *want, size_t n)
{
    int32_t got[256];
    size_t n_got = 0;
    qnpu_status s = qnpu_tokenizer_encode(t, text, strlen(text), 0, got, 256, &n_got);
    ck_assert_msg(s == QNPU_OK, "'%s': %s", text, qnpu_last_error());
    char buf[1024] = "";
    for (size_t i = 0; i < n_got && strlen(buf) < 1000; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " %d", got[i]);
    ck_assert_msg(n_got == n, "'%s': %zu ids (%s), expected %zu", text, n_got, buf, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "'%s': id %zu is %d, expected %d (%s)", text, i, got[i],
                      want[i], buf);
}
#define EXPECT(t, text, ...)                                                                  \
    do {                                                                                      \
        static const int32_t want_[] = {__VA_ARGS__};                                         \
        expect_ids(t, text, want_, sizeof want_ / sizeof want_[0]);                           \
    } while (0)

/* decode(encode(text)) into a malloc'ed buffer (its length in *out_len). */
static char *roundtrip(const qnpu_tokenizer *t, const char *text, size_t len, size_t *out_len)
{
    size_t cap = 3 * len + 2, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    ck_assert_msg(qnpu_tokenizer_encode(t, text, len, 1, ids, cap, &n) == QNPU_OK, "%s",
                  qnpu_last_error());
    char *out = malloc(4 * len + 64);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && qnpu_tokenizer_bos(t) >= 0 && ids[0] == qnpu_tokenizer_bos(t))
            continue;
        char piece[256];
        size_t k;
        ck_assert_int_eq(qnpu_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], piece,
                                               sizeof piece, &k), QNPU_OK);
        memcpy(out + used, piece, k);
        used += k;
    }
    free(ids);
    *out_len = used;
    return out;
}

static void expect_roundtrip(const qnpu_tokenizer *t, const char *text, size_t len)
{
    size_t n;
    char *back = roundtrip(t, text, len, &n);
    ck_assert_msg(n == len && memcmp(back, text, len) == 0, "round trip of %zu bytes gave %zu",
                  len, n);
    free(back);
}

/* ---- encodings ------------------------------------------------------------------------------- */

START_TEST(test_words_and_merges)
{
    qnpu_tokenizer *t = load_llama3();
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), N_IDS);
    /* h e l l o: (h,e) r1 -> he l l o; (l,l) r3 -> he ll o; (he,ll) r4; (hell,o) r5 */
    EXPECT(t, "hello", 261);
    /* "hello" | " world": Ġ w o r l d, only (Ġ,w) r6 applies */
    EXPECT(t, "hello world", 261, 262, 'o', 'r', 'l', 'd');
    /* " the": (Ġ,t) r0, (h,e) r1, then (Ġt,he) r2; "the" alone: t he */
    EXPECT(t, "hello the", 261, 258);
    EXPECT(t, "the", 't', 257);
    /* a run of the same pair merges from the left: l l l -> ll l */
    EXPECT(t, "lll", 259, 'l');
    qnpu_tokenizer_free(t);
}
END_TEST

/* EXPECT with zero ids: the empty initializer is not valid C, so this is its own check. */
START_TEST(test_empty_text)
{
    qnpu_tokenizer *t = load_llama3();
    int32_t ids[4];
    size_t n = 99;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "", 0, 0, ids, 4, &n), QNPU_OK);
    ck_assert_uint_eq(n, 0);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_contractions)
{
    qnpu_tokenizer *t = load_llama3();
    /* "don" | "'t": (o,n) r14, (d,on) r15; ('t) r10. (?i:) also takes "'T" (r17). */
    EXPECT(t, "don't", 271, 266);
    EXPECT(t, "DON'T", 'D', 'O', 'N', 273);
    qnpu_tokenizer_free(t);
    t = load_qwen2();
    EXPECT(t, "don't", 271, 266);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_digits)
{
    qnpu_tokenizer *t = load_llama3();
    /* Llama-3: \p{N}{1,3} -> "123" | "45": (1,2) r8, (12,3) r9 */
    EXPECT(t, "12345", 265, '4', '5');
    EXPECT(t, "1234567", 265, '4', '5', '6', '7'); /* "123" | "456" | "7" */
    qnpu_tokenizer_free(t);
    t = load_qwen2();
    /* Qwen2: \p{N} -> every digit alone, so no merge can apply */
    EXPECT(t, "12345", '1', '2', '3', '4', '5');
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_whitespace)
{
    qnpu_tokenizer *t = load_llama3();
    /* "a" | "\n\n" (\s*[\r\n]+) | "b"; (Ċ,Ċ) r7 */
    EXPECT(t, "a\n\nb", 'a', 263, 'b');
    /* "a" | " " (\s+(?!\S) backs off one space) | " b" (r16) */
    EXPECT(t, "a  b", 'a', ' ', 272);
    /* trailing spaces: \s+ at the end */
    EXPECT(t, "a   ", 'a', ' ', ' ', ' ');
    EXPECT(t, "\n\n\n", 263, '\n');
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_unicode_letters)
{
    qnpu_tokenizer *t = load_llama3();
    /* "héllo" = h C3 A9 l l o: (l,l) r3 before (C3,A9) r11; nothing joins h, é, ll, o.
     * " wörld" = Ġ w C3 B6 r l d: r6 -> Ġw, r12 -> ö, (Ġw,ö) r13 -> " wö". */
    EXPECT(t, "h\xC3\xA9llo w\xC3\xB6rld", 'h', 267, 259, 'o', 269, 'r', 'l', 'd');
    /* an emoji is four byte tokens (U+1F642 = F0 9F 99 82) */
    EXPECT(t, "\xF0\x9F\x99\x82", 0xF0, 0x9F, 0x99, 0x82);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_special_tokens)
{
    qnpu_tokenizer *t = load_llama3();
    EXPECT(t, "<|begin_of_text|>hello<|eot_id|>", ID_BOT, 261, ID_EOT);
    /* matched anywhere, even glued to words; the text around is pre-tokenized on its own */
    EXPECT(t, "don<|eot_id|>'t", 271, ID_EOT, 266);
    /* not a special token: an unfinished one is plain text */
    EXPECT(t, "<|eot", '<', '|', 'e', 'o', 't');
    char piece[64];
    size_t n;
    ck_assert_int_eq(qnpu_tokenizer_decode(t, -1, ID_EOT, piece, sizeof piece, &n), QNPU_OK);
    ck_assert_str_eq(piece, "<|eot_id|>");
    ck_assert_str_eq(qnpu_tokenizer_piece(t, 262), " w");
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_ignore_merges)
{
    qnpu_tokenizer *t = load_llama3();  /* ignore_merges: a whole word in the vocabulary wins */
    EXPECT(t, "lo", ID_LO);
    qnpu_tokenizer_free(t);
    t = load_qwen2();                   /* without it, "lo" is l o (no merge makes it) */
    EXPECT(t, "lo", 'l', 'o');
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_nfc)
{
    qnpu_tokenizer *t = load_qwen2();
    /* e + U+0301 (combining acute) is composed to U+00E9 = C3 A9 before BPE */
    EXPECT(t, "e\xCC\x81", 267);
    size_t n;
    char *back = roundtrip(t, "e\xCC\x81", 3, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert(memcmp(back, "\xC3\xA9", 2) == 0);
    free(back);
    qnpu_tokenizer_free(t);
    t = load_llama3(); /* no normalizer: the bytes stay as they are */
    EXPECT(t, "e\xCC\x81", 'e', 0xCC, 0x81);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_gpt2_bytelevel_and_array_merges)
{
    tok_opts o = {.pattern = NULL, .merge_arrays = 1};
    qnpu_tokenizer *t = load_opts("gpt2", &o);
    /* GPT-2 pattern: "hello" | " world"; " 12345" is one piece " ?\p{N}+" (Ġ 1 2 3 4 5) */
    EXPECT(t, "hello world", 261, 262, 'o', 'r', 'l', 'd');
    EXPECT(t, "don't", 271, 266);
    EXPECT(t, " 12345", ' ', 265, '4', '5');
    qnpu_tokenizer_free(t);
}
END_TEST

/* ---- round trips ------------------------------------------------------------------------------- */

START_TEST(test_roundtrip_varied)
{
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "h\xC3\xA9llo w\xC3\xB6rld \xE2\x80\x94 na\xC3\xAFve caf\xC3\xA9, \xC3\x9F\xC3\xA6\xC3\xB8",
        "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\xE3\x80\x82 \xD0\x9F\xD1\x80"
        "\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xCE\xB1\xCE\xB2\xCE\xB3 \xD8\xB3\xD9\x84\xD8\xA7\xD9\x85",
        "emoji \xF0\x9F\x99\x82\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD and flags \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",
        "  leading, trailing   \n\n\n\t tabs\r\nand CRLF\r\n",
        "numbers 3.14159, 1,000,000 and \xD9\xA3\xD9\xA4 \xE2\x85\xA7",
        "it's they're we've I'm you'll he'd IT'S",
        "<|begin_of_text|>special<|eot_id|><|eot_id|> <|begin_of_text|",
        "code: if (x != y) { return a->b[i] << 2; } // done",
    };
    qnpu_tokenizer *l3 = load_llama3(), *q2 = load_qwen2();
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        expect_roundtrip(l3, texts[i], strlen(texts[i]));
        expect_roundtrip(q2, texts[i], strlen(texts[i])); /* all NFC already */
    }
    /* bytes that are not UTF-8, and NUL, still round-trip (each invalid byte alone) */
    static const char junk[] = "ab\xFF\xFE" "c\x80\xC3(\xED\xA0\x80\0z\xF4\x90\x80\x80!";
    expect_roundtrip(l3, junk, sizeof junk - 1);
    qnpu_tokenizer_free(l3);
    qnpu_tokenizer_free(q2);
}
END_TEST

START_TEST(test_roundtrip_shared_text)
{
    if (!qt_have_shared(VALID))
        return;
    size_t len;
    char *text = qt_read_file(qt_shared(VALID), &len);
    if (len > 100000)
        len = 100000;
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
        len--; /* cut on a character boundary */
    qnpu_tokenizer *t = load_llama3();
    expect_roundtrip(t, text, len);
    /* the perplexity protocol works on it too: every paragraph gets BOS (none here: -1) */
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, text, len, &ids, &n), QNPU_OK);
    ck_assert_uint_gt(n, len / 8);
    for (size_t i = 0; i < n; i++)
        ck_assert(ids[i] >= 0 && ids[i] < N_IDS);
    qnpu_free(ids);
    qnpu_tokenizer_free(t);
    free(text);
}
END_TEST

typedef struct thread_job {
    const qnpu_tokenizer *t;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    qnpu_status s;
} thread_job;

static void *encode_job(void *arg)
{
    thread_job *j = arg;
    j->s = qnpu_tokenizer_encode(j->t, j->text, j->len, 0, j->ids, j->len + 2, &j->n);
    return NULL;
}

START_TEST(test_threads)
{
    size_t len = 0;
    char *text = NULL;
    if (qt_have_shared(VALID)) {
        text = qt_read_file(qt_shared(VALID), &len);
        if (len > 60000)
            len = 60000;
    } else {
        text = strdup("hello world, don't 12345 h\xC3\xA9llo\n\n");
        len = strlen(text);
    }
    qnpu_tokenizer *t = load_llama3();
    thread_job ref = {t, text, len, malloc((len + 2) * sizeof(int32_t)), 0, QNPU_OK};
    encode_job(&ref);
    ck_assert_int_eq(ref.s, QNPU_OK);
    enum { T = 4 };
    thread_job jobs[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        jobs[i] = ref;
        jobs[i].ids = malloc((len + 2) * sizeof(int32_t));
        ck_assert_int_eq(pthread_create(&th[i], NULL, encode_job, &jobs[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(jobs[i].s, QNPU_OK);
        ck_assert_uint_eq(jobs[i].n, ref.n);
        ck_assert(memcmp(jobs[i].ids, ref.ids, ref.n * sizeof(int32_t)) == 0);
        free(jobs[i].ids);
    }
    free(ref.ids);
    free(text);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_buffer_too_small)
{
    qnpu_tokenizer *t = load_llama3();
    int32_t ids[2];
    size_t n = 0;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "hello world", 11, 0, ids, 2, &n),
                     QNPU_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(ids[0], 261);
    ck_assert_int_eq(ids[1], 262);
    qnpu_tokenizer_free(t);
}
END_TEST

/* ---- BOS / EOS, detection, the .qnpu export ----------------------------------------------------- */

START_TEST(test_bos_eos)
{
    char dir[4096];
    tok_opts o = {.pattern = llama3_pattern, .ignore_merges = 1};
    /* nothing beside: no BOS, and add_bos adds nothing */
    qnpu_tokenizer *t = load_opts("bos-none", &o);
    ck_assert_int_eq(qnpu_tokenizer_bos(t), -1);
    ck_assert_int_eq(qnpu_tokenizer_eos(t), -1);
    EXPECT(t, "hello", 261);
    int32_t ids[4];
    size_t n;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "hello", 5, 1, ids, 4, &n), QNPU_OK);
    ck_assert_uint_eq(n, 1);
    qnpu_tokenizer_free(t);

    /* tokenizer_config.json: names, as a string or as an object with "content" */
    snprintf(dir, sizeof dir, "%s/bos-tc", qt_tmpdir());
    const char *path = write_tokenizer(dir, "tokenizer.json", &o);
    char side[4200];
    snprintf(side, sizeof side, "%s/tokenizer_config.json", dir);
    const char *tc = "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": {\"content\": "
                     "\"<|eot_id|>\", \"special\": true}}";
    qt_write_file(side, tc, strlen(tc));
    ck_assert_int_eq(qnpu_tokenizer_load(path, 0, &t), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_bos(t), ID_BOT);
    ck_assert_int_eq(qnpu_tokenizer_eos(t), ID_EOT);
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "hello", 5, 1, ids, 4, &n), QNPU_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], ID_BOT);
    ck_assert_int_eq(ids[1], 261);
    qnpu_tokenizer_free(t);

    /* config.json ids come first */
    snprintf(side, sizeof side, "%s/config.json", dir);
    const char *cfg = "{\"bos_token_id\": 7, \"eos_token_id\": [9, 10]}";
    qt_write_file(side, cfg, strlen(cfg));
    ck_assert_int_eq(qnpu_tokenizer_load(path, 0, &t), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_bos(t), 7);
    ck_assert_int_eq(qnpu_tokenizer_eos(t), 9);
    qnpu_tokenizer_free(t);
}
END_TEST

START_TEST(test_detect_by_content)
{
    tok_opts o = {.pattern = llama3_pattern, .ignore_merges = 1};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/detect", qt_tmpdir());
    const char *path = write_tokenizer(dir, "vocab.tok", &o);
    qnpu_tokenizer *t;
    ck_assert_msg(qnpu_tokenizer_load(path, 0, &t) == QNPU_OK, "%s", qnpu_last_error());
    EXPECT(t, "hello", 261);
    qnpu_tokenizer_free(t);
    /* vocab_size bounds the ids */
    ck_assert_int_eq(qnpu_tokenizer_load(path, 100, &t), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), path));
    ck_assert_int_eq(qnpu_tokenizer_load(path, N_IDS, &t), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), N_IDS);
    qnpu_tokenizer_free(t);
    /* a larger model vocabulary pads the tokenizer: the extra ids decode to nothing */
    ck_assert_int_eq(qnpu_tokenizer_load(path, 600, &t), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), 600);
    char piece[8];
    size_t n = 9;
    ck_assert_int_eq(qnpu_tokenizer_decode(t, -1, 599, piece, sizeof piece, &n), QNPU_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_str_eq(qnpu_tokenizer_piece(t, 599), "");
    EXPECT(t, "hello", 261);
    qnpu_tokenizer_free(t);
}
END_TEST

/* Both tokenizers give the same ids and pieces on `text`. */
static void same_tokenizer(const qnpu_tokenizer *a, const qnpu_tokenizer *b, const char *text,
                           size_t len)
{
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(a), qnpu_tokenizer_vocab_size(b));
    for (int32_t id = 0; id < qnpu_tokenizer_vocab_size(a); id++)
        ck_assert_str_eq(qnpu_tokenizer_piece(a, id), qnpu_tokenizer_piece(b, id));
    size_t cap = 3 * len + 2, na, nb;
    int32_t *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    ck_assert_int_eq(qnpu_tokenizer_encode(a, text, len, 0, x, cap, &na), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_encode(b, text, len, 0, y, cap, &nb), QNPU_OK);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(x, y, na * sizeof *x) == 0);
    free(x);
    free(y);
}

static const char mixed_text[] =
    "<|begin_of_text|>Hello world! It's 12345 and don't \n\n  h\xC3\xA9llo w\xC3\xB6rld "
    "\xF0\x9F\x99\x82 e\xCC\x81 lo lll<|eot_id|>\xFF";

/* The serialized form (what the .qnpu vocab section carries) rebuilds the same tokenizer, for
 * both the Llama-3 (ignore_merges) and the Qwen2 (NFC) settings. */
START_TEST(test_serialized_roundtrip)
{
    for (int k = 0; k < 2; k++) {
        qnpu_tokenizer *t = k ? load_qwen2() : load_llama3(), *u = NULL;
        qnpu__vocab *v = NULL;
        ck_assert_int_eq(qnpu__tokenizer_export(t, &v), QNPU_OK);
        ck_assert_ptr_nonnull(v->bpe);
        ck_assert_int_eq(v->n, N_IDS);
        ck_assert_msg(qnpu__tokenizer_from_vocab(v, "test", 3, 4, &u) == QNPU_OK, "%s",
                      qnpu_last_error());
        ck_assert_int_eq(qnpu_tokenizer_bos(u), 3);
        ck_assert_int_eq(qnpu_tokenizer_eos(u), 4);
        same_tokenizer(t, u, mixed_text, sizeof mixed_text - 1);
        if (qt_have_shared(VALID)) {
            size_t len;
            char *text = qt_read_file(qt_shared(VALID), &len);
            same_tokenizer(t, u, text, len < 50000 ? len : 50000);
            free(text);
        }
        qnpu_tokenizer_free(u);
        qnpu__vocab_free(v);
        qnpu_tokenizer_free(t);
    }
}
END_TEST

/* Damaged serialized forms: an error naming the place (or, for a harmless change, a working
 * tokenizer), never a crash. */
START_TEST(test_serialized_damage)
{
    qnpu_tokenizer *t = load_llama3(), *u;
    qnpu__vocab *v;
    ck_assert_int_eq(qnpu__tokenizer_export(t, &v), QNPU_OK);
    unsigned char *good = v->bpe;
    size_t size = v->bpe_size;
    unsigned char *copy = malloc(size);
    for (size_t cut = 0; cut < size; cut += 1 + cut / 8) { /* every truncation fails */
        v->bpe = copy;
        memcpy(copy, good, cut);
        v->bpe_size = cut;
        u = NULL;
        qnpu_status s = qnpu__tokenizer_from_vocab(v, "damaged", -1, -1, &u);
        ck_assert_msg(s == QNPU_ERR_FORMAT, "cut at %zu: status %d", cut, s);
        ck_assert_ptr_null(u);
        ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "damaged"));
    }
    for (size_t pos = 0; pos < size; pos += 1 + pos / 16) { /* byte flips */
        memcpy(copy, good, size);
        copy[pos] ^= 0x5A;
        v->bpe = copy;
        v->bpe_size = size;
        u = NULL;
        qnpu_status s = qnpu__tokenizer_from_vocab(v, "damaged", -1, -1, &u);
        if (s == QNPU_OK) {
            size_t n;
            int32_t ids[256];
            ck_assert_int_eq(qnpu_tokenizer_encode(u, mixed_text, sizeof mixed_text - 1, 0, ids,
                                                   256, &n), QNPU_OK);
            qnpu_tokenizer_free(u);
        } else {
            ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "damaged"));
        }
    }
    v->bpe = good;
    v->bpe_size = size;
    qnpu__vocab_free(v);
    free(copy);
    qnpu_tokenizer_free(t);
}
END_TEST

/* ---- malformed files -------------------------------------------------------------------------- */

/* Load o's file; expect status `want` and a message naming the file and `field`. */
static void expect_error(const char *tag, const tok_opts *o, qnpu_status want, const char *field)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", qt_tmpdir(), tag);
    const char *path = write_tokenizer(dir, "tokenizer.json", o);
    qnpu_tokenizer *t = (qnpu_tokenizer *)1;
    qnpu_status s = qnpu_tokenizer_load(path, 0, &t);
    ck_assert_msg(s == want, "%s: status %d, expected %d (%s)", tag, s, want, qnpu_last_error());
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(qnpu_last_error(), path), "%s: '%s' does not name the file", tag,
                  qnpu_last_error());
    ck_assert_msg(strstr(qnpu_last_error(), field), "%s: '%s' does not name '%s'", tag,
                  qnpu_last_error(), field);
}

START_TEST(test_errors_format)
{
    /* not JSON at all: the JSON reader's message, file:line:column */
    const char *bad = qt_tmpfile("bad.json");
    qt_write_file(bad, "{\"model\": {\"vocab\": [1, }", 25);
    qnpu_tokenizer *t = (qnpu_tokenizer *)1;
    ck_assert_int_eq(qnpu_tokenizer_load(bad, 0, &t), QNPU_ERR_FORMAT);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(qnpu_last_error(), bad), "%s", qnpu_last_error());
    qt_write_file(bad, "[1, 2]", 6); /* JSON, but not an object */
    ck_assert_int_eq(qnpu_tokenizer_load(bad, 0, &t), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "expected a JSON object"));
    tok_opts o = {.pattern = llama3_pattern};
    o.omit_model = 1;
    expect_error("e-nomodel", &o, QNPU_ERR_FORMAT, "'model'");
    o.omit_model = 0;
    o.bad_merge = "\"h zz\"";
    expect_error("e-mergetok", &o, QNPU_ERR_FORMAT, "model.merges[17]");
    o.bad_merge = "\"l o\""; /* both tokens exist, "lo" too: fine */
    {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/e-ok", qt_tmpdir());
        qnpu_tokenizer *t;
        ck_assert_int_eq(qnpu_tokenizer_load(write_tokenizer(dir, "tokenizer.json", &o), 0, &t),
                         QNPU_OK);
        qnpu_tokenizer_free(t);
    }
    o.bad_merge = "\"o l\""; /* "ol" is not in the vocabulary */
    expect_error("e-merged", &o, QNPU_ERR_FORMAT, "model.merges[17]");
    o.bad_merge = "\"he\"";
    expect_error("e-mergeform", &o, QNPU_ERR_FORMAT, "model.merges[17]");
    o.bad_merge = "[\"h\", 3]";
    expect_error("e-mergearr", &o, QNPU_ERR_FORMAT, "model.merges[17]");
    o.bad_merge = NULL;
    o.bad_vocab = "\"zz\": \"seven\"";
    expect_error("e-vocabid", &o, QNPU_ERR_FORMAT, "model.vocab['zz']");
    o.bad_vocab = "\"zz\": 5";
    expect_error("e-vocabdup", &o, QNPU_ERR_FORMAT, "model.vocab");
    /* holes: at most one unused id per token plus 1024 (256 bytes, the merges, zz, lo, 2 added) */
    int tokens = 256 + N_MERGES + 4;
    char zz[64];
    snprintf(zz, sizeof zz, "\"zz\": %d", 2 * tokens + 1023);
    o.bad_vocab = zz;
    t = load_opts("e-holes-ok", &o);
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), 2 * tokens + 1024);
    qnpu_tokenizer_free(t);
    snprintf(zz, sizeof zz, "\"zz\": %d", 2 * tokens + 1024);
    expect_error("e-holes", &o, QNPU_ERR_FORMAT, "ids go up to");
    o.bad_vocab = "\"zz\": 16777215"; /* a few bytes must not make a 16.7M-id tokenizer */
    expect_error("e-holes-2e24", &o, QNPU_ERR_FORMAT, "ids go up to 16777215");
    o.bad_vocab = NULL;
    o.pattern = "(\\p{L}+";
    expect_error("e-regex", &o, QNPU_ERR_FORMAT, "pre_tokenizer.pretokenizers[0].pattern.Regex");
    o.pattern = "\\p{Nonsense}";
    expect_error("e-regex2", &o, QNPU_ERR_FORMAT, "pre_tokenizer.pretokenizers[0].pattern.Regex");
}
END_TEST

START_TEST(test_errors_unsupported)
{
    tok_opts o = {.pattern = llama3_pattern};
    o.normalizer = "{\"type\": \"NFKC\"}";
    expect_error("u-nfkc", &o, QNPU_ERR_UNSUPPORTED, "normalizer");
    o.normalizer = "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
                   "{\"type\": \"Lowercase\"}]}";
    expect_error("u-seq", &o, QNPU_ERR_UNSUPPORTED, "normalizer.normalizers[1]");
    o.normalizer = NULL;
    o.model_type = "WordPiece";
    expect_error("u-model", &o, QNPU_ERR_UNSUPPORTED, "model.type");
    o.model_type = NULL;
    o.behavior = "Removed";
    expect_error("u-behavior", &o, QNPU_ERR_UNSUPPORTED, "pretokenizers[0].behavior");
    o.behavior = NULL;
    o.no_bytelevel = 1;
    expect_error("u-nobytelevel", &o, QNPU_ERR_UNSUPPORTED, "ByteLevel");
    o.no_bytelevel = 0;
    o.decoder = "{\"type\": \"WordPiece\"}";
    expect_error("u-decoder", &o, QNPU_ERR_UNSUPPORTED, "decoder");
}
END_TEST

/* Every prefix of a valid file, and a few corrupted bytes: an error, never a crash. */
START_TEST(test_truncated_and_corrupted)
{
    tok_opts o = {.pattern = llama3_pattern, .ignore_merges = 1};
    qt_buf b = {0};
    build_json(&b, &o);
    const char *path = qt_tmpfile("trunc.json");
    for (size_t cut = 0; cut < b.len - 2; cut += 1 + cut / 16) {
        qt_write_file(path, b.p, cut);
        qnpu_tokenizer *t = NULL;
        qnpu_status s = qnpu_tokenizer_load(path, 0, &t);
        ck_assert_msg(s == QNPU_ERR_FORMAT, "cut at %zu: status %d (%s)", cut, s,
                      qnpu_last_error());
        ck_assert_ptr_null(t);
        ck_assert_ptr_nonnull(strstr(qnpu_last_error(), path));
    }
    static const char junk[] = {'"', '{', ']', ':', ',', '\\', 0, '\xFF'};
    for (size_t pos = 7; pos < b.len; pos += 97) {
        char *copy = malloc(b.len);
        memcpy(copy, b.p, b.len);
        copy[pos] = junk[pos % sizeof junk];
        qt_write_file(path, copy, b.len);
        qnpu_tokenizer *t = NULL;
        qnpu_status s = qnpu_tokenizer_load(path, 0, &t);
        if (s == QNPU_OK) /* some changes keep it valid (a different byte in a token) */
            qnpu_tokenizer_free(t);
        else
            ck_assert_ptr_nonnull(strstr(qnpu_last_error(), path));
        free(copy);
    }
    free(b.p);
}
END_TEST

/* ---- a Hugging Face checkpoint directory, end to end -------------------------------------------- */

/* A Hugging Face directory tmp/tag: stories260K-hf's config.json and model.safetensors as
 * symlinks, no tokenizer yet. */
static void make_hf_dir(const char *tag, char *dir, size_t cap)
{
    char src[4200], dst[4200];
    snprintf(dir, cap, "%s/%s", qt_tmpdir(), tag);
    mkdir(dir, 0755);
    static const char *const files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        const char *rel = qt_shared("models/stories260K-hf");
        char *abs = realpath(rel, NULL);
        ck_assert_ptr_nonnull(abs);
        snprintf(src, sizeof src, "%s/%s", abs, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        free(abs);
        ck_assert_int_eq(symlink(src, dst), 0);
    }
}

START_TEST(test_hf_directory)
{
    if (!qt_have_shared("models/stories260K-hf/config.json"))
        return;
    char dir[4096];
    make_hf_dir("hfdir", dir, sizeof dir);
    qnpu_model *m;
    ck_assert_msg(qnpu_model_load(dir, NULL, &m) == QNPU_OK, "%s", qnpu_last_error());
    qnpu_tokenizer *t = (qnpu_tokenizer *)1;
    /* no tokenizer.json yet */
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "tokenizer.json"));
    tok_opts o = {.pattern = llama3_pattern, .ignore_merges = 1};
    write_tokenizer(dir, "tokenizer.json", &o);
    ck_assert_msg(qnpu_tokenizer_from_model(m, &t) == QNPU_OK, "%s", qnpu_last_error());
    /* BOS/EOS from config.json (1 and 2 in stories260K-hf); padded to the model's 512 ids */
    ck_assert_int_eq(qnpu_tokenizer_vocab_size(t), 512);
    ck_assert_int_eq(qnpu_tokenizer_bos(t), 1);
    ck_assert_int_eq(qnpu_tokenizer_eos(t), 2);
    int32_t ids[16];
    size_t n;
    ck_assert_int_eq(qnpu_tokenizer_encode(t, "hello world", 11, 1, ids, 16, &n), QNPU_OK);
    static const int32_t want[] = {1, 261, 262, 'o', 'r', 'l', 'd'};
    ck_assert_uint_eq(n, 7);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], want[i]);
    /* the ids run through the float engine */
    qnpu_options *opts = qt_options(NULL);
    qnpu_float_session *s;
    ck_assert_int_eq(qnpu_float_session_create(m, opts, &s), QNPU_OK);
    float *logits = malloc(512 * sizeof *logits);
    ck_assert_msg(qnpu_float_session_eval(s, ids, n, 0, logits, 512) == QNPU_OK, "%s",
                  qnpu_last_error());
    for (int i = 0; i < 512; i++)
        ck_assert(logits[i] == logits[i]);
    free(logits);
    qnpu_float_session_free(s);
    qnpu_options_free(opts);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
}
END_TEST

/* Quantize the HF directory with its tokenizer.json: the .qnpu carries the byte-level BPE, and
 * qnpu_tokenizer_from_qmodel gives back the same tokenizer after save and load. */
START_TEST(test_qnpu_file_roundtrip)
{
    const char *train = "data/tinystories_train_head.txt";
    if (!qt_have_shared("models/stories260K-hf/config.json") || !qt_have_shared(train))
        return;
    char dir[4096];
    make_hf_dir("hfq", dir, sizeof dir);
    tok_opts o = {.pattern = qwen2_pattern, .nfc = 1};
    write_tokenizer(dir, "tokenizer.json", &o);
    qnpu_model *m;
    qnpu_tokenizer *t, *u;
    ck_assert_msg(qnpu_model_load(dir, NULL, &m) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_msg(qnpu_tokenizer_from_model(m, &t) == QNPU_OK, "%s", qnpu_last_error());
    static const char *const kv[] = {"calib.num_samples", "1", "calib.first_block", "0",
                                     "calib.seq_len", "64", NULL};
    qnpu_options *opts = qt_options(kv);
    size_t clen;
    char *calib = qt_read_file(qt_shared(train), &clen);
    if (clen > 20000)
        clen = 20000;
    qnpu_calibrator *c;
    qnpu_qmodel *a, *b;
    ck_assert_int_eq(qnpu_calibrator_create(m, t, opts, &c), QNPU_OK);
    ck_assert_msg(qnpu_calibrator_run(c, calib, clen, &a) == QNPU_OK, "%s", qnpu_last_error());
    qnpu_calibrator_free(c);
    const char *path = qt_tmpfile("hf_bpe.qnpu");
    ck_assert_msg(qnpu_qmodel_save(a, path) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_msg(qnpu_qmodel_load(path, NULL, &b) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_msg(qnpu_tokenizer_from_qmodel(b, &u) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_int_eq(qnpu_tokenizer_bos(u), 1); /* the model's, from config.json */
    same_tokenizer(t, u, mixed_text, sizeof mixed_text - 1);
    same_tokenizer(t, u, calib, clen);
    EXPECT(u, "e\xCC\x81 12345", 267, ' ', '1', '2', '3', '4', '5'); /* NFC, single digits */
    qnpu_tokenizer_free(u);
    qnpu_qmodel_free(b);
    qnpu_qmodel_free(a);
    qnpu_options_free(opts);
    free(calib);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
}
END_TEST

Suite *qnpu_tokenizer_hf_suite(void)
{
    Suite *s = suite_create("tokenizer_hf");
    TCase *tc = tcase_create("encode");
    tcase_add_test(tc, test_words_and_merges);
    tcase_add_test(tc, test_empty_text);
    tcase_add_test(tc, test_contractions);
    tcase_add_test(tc, test_digits);
    tcase_add_test(tc, test_whitespace);
    tcase_add_test(tc, test_unicode_letters);
    tcase_add_test(tc, test_special_tokens);
    tcase_add_test(tc, test_ignore_merges);
    tcase_add_test(tc, test_nfc);
    tcase_add_test(tc, test_gpt2_bytelevel_and_array_merges);
    tcase_add_test(tc, test_buffer_too_small);
    suite_add_tcase(s, tc);
    tc = tcase_create("roundtrip");
    tcase_add_test(tc, test_roundtrip_varied);
    tcase_add_test(tc, test_roundtrip_shared_text);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    tc = tcase_create("load");
    tcase_add_test(tc, test_bos_eos);
    tcase_add_test(tc, test_detect_by_content);
    tcase_add_test(tc, test_serialized_roundtrip);
    tcase_add_test(tc, test_serialized_damage);
    tcase_add_test(tc, test_hf_directory);
    tcase_add_test(tc, test_qnpu_file_roundtrip);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, test_errors_format);
    tcase_add_test(tc, test_errors_unsupported);
    tcase_add_test(tc, test_truncated_and_corrupted);
    suite_add_tcase(s, tc);
    return s;
}
