/* fuzz_tokenizer.c — libFuzzer harness for lib/model/tokenizer.c. The first input byte picks:
 *
 *   even   the rest is a llama2.c tokenizer.bin (qnpu_tokenizer_load, vocab_size = byte / 2 when
 *          that is >= 3, else 0 = as many records as the file holds); a tokenizer that loads
 *          encodes and decodes a fixed text;
 *   odd    the rest is text for a fixed real tokenizer: qnpu_tokenizer_encode (with BOS when
 *          bit 1 is set), qnpu_tokenizer_decode of every id, qnpu_tokenize_paragraphs. When the
 *          tokenizer has all 256 byte pieces and the text has no '<' (so no byte piece can be
 *          spelled out), decoding the ids must give the text back exactly.
 *
 * The fixed tokenizer is $QNPU_SHARED/models/tok512.bin (default ../shared), the 512-piece
 * SentencePiece vocabulary of stories260K, read at start-up and never copied; without it a
 * synthetic vocabulary (<unk>, <s>, </s>, the 256 byte pieces, ASCII letters and some merges)
 * is built, and the harness says so on stderr. */
#include "fuzz_util.h"

qnpu_status qnpu__tokenizer_create(int64_t n, char *const *pieces, const uint32_t *lens,
                                   const float *scores, const int32_t *types, int32_t bos,
                                   int32_t eos, qnpu_tokenizer **out);

static fz_file file;
static qnpu_tokenizer *fixed;
static int round_trip; /* the fixed tokenizer has every byte piece */

static qnpu_tokenizer *synthetic(void)
{
    static const char *const words[] = {" ", "a", "e", "t", "o", " t", "th", " th", "he", " the",
                                        "an", " a", "in", "on", "er", "at", " c", " ca", " cat"};
    enum { NW = sizeof words / sizeof words[0], N = 3 + 256 + 26 + NW };
    static char bytes[256][7], letters[26][2];
    char *pieces[N];
    uint32_t lens[N];
    float scores[N];
    int n = 0;
    const char *const special[3] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++, n++)
        pieces[n] = (char *)special[i], lens[n] = (uint32_t)strlen(special[i]), scores[n] = 0;
    for (int b = 0; b < 256; b++, n++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[n] = bytes[b], lens[n] = 6, scores[n] = 0;
    }
    for (int c = 0; c < 26; c++, n++) {
        letters[c][0] = (char)('a' + c);
        pieces[n] = letters[c], lens[n] = 1, scores[n] = -100.0f - (float)c;
    }
    for (int w = 0; w < NW; w++, n++)
        pieces[n] = (char *)words[w], lens[n] = (uint32_t)strlen(words[w]), scores[n] = -(float)w;
    qnpu_tokenizer *t = NULL;
    if (qnpu__tokenizer_create(n, pieces, lens, scores, NULL, 1, 2, &t) != QNPU_OK)
        fz_die("synthetic tokenizer");
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    fz_file_init(&file, "tokenizer");
    const char *shared = getenv("QNPU_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/tok512.bin", shared ? shared : "../shared");
    if (qnpu_tokenizer_load(path, 512, &fixed) != QNPU_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s not found, using a synthetic vocabulary\n", path);
        fixed = synthetic();
    }
    round_trip = 1;
    for (int b = 0; b < 256 && round_trip; b++) {
        char name[7];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int found = 0;
        for (int64_t id = 0; id < qnpu_tokenizer_vocab_size(fixed) && !found; id++)
            found = strcmp(qnpu_tokenizer_piece(fixed, (int32_t)id), name) == 0;
        round_trip = found;
    }
    return 0;
}

static void text_mode(const char *text, size_t len, int add_bos)
{
    size_t cap = len + 2, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *back = malloc(len + 8);
    if (!ids || !back)
        abort();
    fz_clear_error();
    qnpu_status s = qnpu_tokenizer_encode(fixed, text, len, add_bos, ids, cap, &n);
    fz_check_status(s, "qnpu_tokenizer_encode");
    if (s != QNPU_OK || n > cap)
        abort(); /* len + 2 ids always suffice */
    size_t used = 0;
    int exact = round_trip && add_bos && !memchr(text, '<', len);
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        size_t got;
        fz_clear_error();
        s = qnpu_tokenizer_decode(fixed, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf, &got);
        fz_check_status(s, "qnpu_tokenizer_decode");
        if (s != QNPU_OK)
            abort();
        if (i > 0 && exact) {
            if (used + got > len)
                abort();
            memcpy(back + used, buf, got);
            used += got;
        }
    }
    if (exact && (used != len || memcmp(back, text, len) != 0)) {
        fprintf(stderr, "fuzz_tokenizer: decode(encode(text)) differs from the text\n");
        abort();
    }
    /* a too small buffer reports the size it needs */
    if (n > 0) {
        size_t need = 0;
        if (qnpu_tokenizer_encode(fixed, text, len, add_bos, ids, n - 1, &need) != QNPU_ERR_BUFFER_TOO_SMALL ||
            need != n)
            abort();
    }
    int32_t *para = NULL;
    size_t np = 0;
    fz_clear_error();
    s = qnpu_tokenize_paragraphs(fixed, text, len, &para, &np);
    fz_check_status(s, "qnpu_tokenize_paragraphs");
    qnpu_free(para);
    free(ids);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++, size--;
    if (mode & 1) {
        text_mode((const char *)data, size, (mode & 2) != 0);
        return 0;
    }
    fz_file_set(&file, data, size);
    int64_t vocab = mode / 2 >= 3 ? mode / 2 : 0;
    qnpu_tokenizer *t = NULL;
    fz_clear_error();
    qnpu_status s = qnpu_tokenizer_load(file.path, vocab, &t);
    fz_check_status(s, "qnpu_tokenizer_load");
    if (s == QNPU_OK) {
        if (vocab && qnpu_tokenizer_vocab_size(t) != vocab)
            abort();
        fz_use_tokenizer(t);
        qnpu_tokenizer_free(t);
    } else if (t) {
        abort();
    }
    return 0;
}
