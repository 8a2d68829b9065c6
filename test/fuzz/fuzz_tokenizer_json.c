/* fuzz_tokenizer_json.c — libFuzzer harness for the Hugging Face tokenizer.json reader
 * (lib/model/tokenizer_bpe.c: byte-level BPE, added tokens, NFC, Split/ByteLevel
 * pre-tokenizers through PCRE2; on lib/model/json.c), reached through qnpu_tokenizer_load.
 *
 * The input is cut into parts at each SEP (as in fuzz_safetensors.c):
 *   part 1   tokenizer.json;
 *   part 2   tokenizer_config.json beside it (BOS/EOS), absent if there is no part 2;
 *   part 3   text to encode (a fixed text if there is no part 3).
 * The files live in a /dev/shm directory as symbolic links to memfds. A tokenizer that loads
 * encodes the text (and the fixed one), decodes every id, and the ids must fit the documented
 * bound (3 * len + 2 with BOS). */
#include <sys/stat.h>

#include "fuzz_util.h"

#define SEP "\n#qnpu-fuzz-part#\n"

static char dir[64], json_path[128];
static fz_file files[2];
static int have_config = -1;

static void link_to(const fz_file *f, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    if (f && symlink(f->path, path) != 0)
        fz_die("symlink");
}

static void cleanup(void)
{
    link_to(NULL, "tokenizer.json");
    link_to(NULL, "tokenizer_config.json");
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    snprintf(dir, sizeof dir, "/dev/shm/qnpu-fuzz-tj-XXXXXX");
    if (!mkdtemp(dir))
        fz_die("mkdtemp");
    atexit(cleanup);
    fz_file_init(&files[0], "tokenizer.json");
    fz_file_init(&files[1], "tokenizer_config.json");
    link_to(&files[0], "tokenizer.json");
    snprintf(json_path, sizeof json_path, "%s/tokenizer.json", dir);
    return 0;
}

static void encode(const qnpu_tokenizer *t, const char *text, size_t len)
{
    /* the documented bound: 3 * len + 2 (NFC may expand text 3x) */
    size_t cap = 3 * len + 2, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        abort();
    fz_clear_error();
    qnpu_status s = qnpu_tokenizer_encode(t, text, len, 1, ids, cap, &n);
    fz_check_status(s, "qnpu_tokenizer_encode");
    if (s == QNPU_ERR_BUFFER_TOO_SMALL || n > cap) {
        fprintf(stderr, "fuzz_tokenizer_json: %zu ids for %zu bytes\n", n, len);
        abort();
    }
    if (s != QNPU_OK) {
        free(ids);
        return;
    }
    int64_t vocab = qnpu_tokenizer_vocab_size(t);
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        size_t got;
        if (ids[i] < 0 || ids[i] >= vocab)
            abort();
        fz_clear_error();
        s = qnpu_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf, &got);
        fz_check_status(s, "qnpu_tokenizer_decode");
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3] = {data};
    size_t len[3] = {size};
    int parts = 1;
    while (parts < 3) {
        const uint8_t *sep = fz_find(part[parts - 1], len[parts - 1], SEP);
        if (!sep)
            break;
        part[parts] = sep + strlen(SEP);
        len[parts] = (size_t)(data + size - part[parts]);
        len[parts - 1] = (size_t)(sep - part[parts - 1]);
        parts++;
    }
    fz_file_set(&files[0], part[0], len[0]);
    int config = parts >= 2;
    if (config)
        fz_file_set(&files[1], part[1], len[1]);
    if (config != have_config) {
        link_to(config ? &files[1] : NULL, "tokenizer_config.json");
        have_config = config;
    }

    qnpu_tokenizer *t = NULL;
    fz_clear_error();
    qnpu_status s = qnpu_tokenizer_load(json_path, 0, &t);
    fz_check_status(s, "qnpu_tokenizer_load");
    if (s != QNPU_OK) {
        if (t)
            abort();
        return 0;
    }
    fz_use_tokenizer(t);
    if (parts == 3)
        encode(t, (const char *)part[2], len[2]);
    qnpu_tokenizer_free(t);
    return 0;
}
