/* fuzz_util.h — helpers shared by the libFuzzer harnesses in test/fuzz/ (see docs/fuzzing.md).
 *
 * The library reads models from paths, so a harness writes its input into a memfd and hands the
 * library "/proc/self/fd/N": no disk I/O and no file name collisions between parallel runs.
 * Every allocation of the library goes through posix_memalign with the exact size asked for
 * (qnpu_set_allocator), so AddressSanitizer's redzones start right at the end of each buffer
 * (the default allocator rounds sizes up to 64 bytes, which would hide small overruns).
 * A failing call must leave a message: fz_check_status aborts (a crash for libFuzzer) when a
 * status is not one of the documented codes or qnpu_last_error() is empty. */
#ifndef QNPU_FUZZ_UTIL_H
#define QNPU_FUZZ_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "quantnpu.h"

/* lib/internal.h: the harnesses link the library's objects, internal symbols included */
qnpu_status qnpu__fail(qnpu_status s, const char *fmt, ...);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static inline void *fz_alloc(void *user, size_t size, size_t align)
{
    (void)user;
    void *p = NULL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    return posix_memalign(&p, align, size) == 0 ? p : NULL;
}

static inline void fz_free(void *user, void *p)
{
    (void)user;
    free(p);
}

static inline void fz_die(const char *what)
{
    fprintf(stderr, "fuzz harness: %s: %s\n", what, strerror(errno));
    abort();
}

/* Once per process, before any handle exists. */
static inline void fz_setup(void)
{
    if (qnpu_set_allocator(fz_alloc, fz_free, NULL) != QNPU_OK)
        fz_die("qnpu_set_allocator");
}

/* Options for loading: num_threads 1 and model.mmap 0 (a heap copy, so ASan sees the end of
 * the file exactly; a mapping would let a read run into the zero-filled rest of the page). */
static inline qnpu_options *fz_options(void)
{
    qnpu_options *o;
    if (qnpu_options_create(&o) != QNPU_OK || qnpu_options_set_int(o, QNPU_P_NUM_THREADS, 1) != QNPU_OK ||
        qnpu_options_set_int(o, QNPU_P_MODEL_MMAP, 0) != QNPU_OK)
        fz_die("options");
    return o;
}

/* Empty qnpu_last_error(), so the next failure is known to have set its own message. */
static inline void fz_clear_error(void)
{
    qnpu__fail(QNPU_OK, "%s", "");
}

/* Options for running what was loaded: a context of 4 positions (the KV cache stays tiny
 * whatever max_seq the input claims). */
static inline qnpu_options *fz_run_options(void)
{
    qnpu_options *o = fz_options();
    if (qnpu_options_set_int(o, QNPU_P_ENGINE_CTX_SIZE, 4) != QNPU_OK)
        fz_die("options");
    return o;
}

/* A failure must carry a documented status (not QNPU_ERR_INTERNAL, a broken invariant) and a
 * message; call fz_clear_error() before the call being checked. */
static inline void fz_check_status(qnpu_status s, const char *call)
{
    static int verbose = -1; /* QNPU_FUZZ_VERBOSE=1: print every checked status (seed debugging) */
    if (verbose < 0)
        verbose = getenv("QNPU_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "%s: %s%s%s\n", call, qnpu_status_string(s), s ? ": " : "",
                s ? qnpu_last_error() : "");
    if (s == QNPU_OK)
        return;
    const char *name = qnpu_status_string(s);
    const char *msg = qnpu_last_error();
    if (s == QNPU_ERR_INTERNAL || !name || strstr(name, "unknown") || !msg || !*msg) {
        fprintf(stderr, "fuzz harness: %s returned status %d (%s) with message '%s'\n", call, (int)s,
                name ? name : "(null)", msg ? msg : "(null)");
        abort();
    }
}

/* Encode a fixed text and decode every id it gives (and the specials). */
static inline void fz_use_tokenizer(const qnpu_tokenizer *t)
{
    static const char text[] = "Once upon a time, a <0x41> \xe4\xbd\xa0\xff cat\n\n sat.";
    int32_t ids[3 * sizeof text + 2];
    size_t n = 0;
    fz_clear_error();
    qnpu_status s = qnpu_tokenizer_encode(t, text, sizeof text - 1, 1, ids, sizeof ids / sizeof ids[0], &n);
    fz_check_status(s, "qnpu_tokenizer_encode");
    if (s != QNPU_OK)
        abort(); /* 3 * len + 2 ids always suffice (len + 2 but for a tokenizer.json with NFC) */
    int64_t vocab = qnpu_tokenizer_vocab_size(t);
    char buf[64];
    size_t got;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= vocab)
            abort();
        qnpu_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf, &got);
    }
    qnpu_tokenizer_decode(t, qnpu_tokenizer_bos(t), qnpu_tokenizer_eos(t), buf, sizeof buf, &got);
    qnpu_tokenizer_decode(t, -1, (int32_t)(vocab - 1), buf, sizeof buf, &got);
}

/* Query a loaded float model, read every tensor, use its tokenizer if it has one, and run a
 * prefill and a decode step when it is small. */
static inline void fz_use_model(const qnpu_model *m)
{
    int64_t dims[QNPU_DIM_EOS + 1] = {0};
    for (int d = QNPU_DIM_HIDDEN; d <= QNPU_DIM_EOS; d++)
        if (qnpu_model_get_dim(m, (qnpu_model_dim)d, &dims[d]) != QNPU_OK)
            abort();
    double hp;
    qnpu_model_get_hparam(m, QNPU_HP_ROPE_THETA, &hp);
    (void)qnpu_model_arch(m);
    (void)qnpu_model_format(m);
    int64_t nt = qnpu_model_tensor_count(m);
    for (int64_t i = 0; i < nt; i++) {
        int64_t rows, cols, found;
        const char *name = qnpu_model_tensor_name(m, i);
        if (!name || qnpu_model_tensor_shape(m, i, &rows, &cols) != QNPU_OK ||
            qnpu_model_tensor_find(m, name, &found) != QNPU_OK || found != i)
            abort();
        float *buf = malloc((size_t)(rows * cols) * sizeof(float) + 1);
        if (!buf || qnpu_model_tensor_read(m, i, buf, (size_t)(rows * cols)) != QNPU_OK)
            abort();
        free(buf);
    }
    size_t owned, mapped;
    qnpu_model_memory_usage(m, &owned, &mapped);

    qnpu_tokenizer *t = NULL;
    fz_clear_error();
    qnpu_status s = qnpu_tokenizer_from_model(m, &t);
    fz_check_status(s, "qnpu_tokenizer_from_model");
    if (s == QNPU_OK) {
        fz_use_tokenizer(t);
        qnpu_tokenizer_free(t);
    }

    int64_t vocab = dims[QNPU_DIM_VOCAB], d = dims[QNPU_DIM_HIDDEN];
    if (vocab * d > (1 << 16) || dims[QNPU_DIM_FFN] * d > (1 << 16) || dims[QNPU_DIM_LAYERS] > 4)
        return;
    qnpu_options *o = fz_run_options();
    qnpu_float_session *fs = NULL;
    fz_clear_error();
    s = qnpu_float_session_create(m, o, &fs);
    fz_check_status(s, "qnpu_float_session_create");
    if (s == QNPU_OK) {
        int32_t tok[3] = {(int32_t)dims[QNPU_DIM_BOS], 0, (int32_t)(vocab - 1)};
        float *logits = malloc((size_t)vocab * sizeof(float));
        if (!logits)
            abort();
        fz_clear_error();
        fz_check_status(qnpu_float_session_eval(fs, tok, 2, 0, logits, (size_t)vocab), "float eval");
        fz_clear_error();
        fz_check_status(qnpu_float_session_eval(fs, tok + 2, 1, 0, logits, (size_t)vocab), "float eval");
        free(logits);
        qnpu_float_session_free(fs);
    }
    qnpu_options_free(o);
}

/* Load the model at `path`; one that loads is used (fz_use_model) and freed. A failure must
 * leave the out pointer NULL. */
static inline void fz_load_model(const char *path, const qnpu_options *opts)
{
    qnpu_model *m = NULL;
    fz_clear_error();
    qnpu_status s = qnpu_model_load(path, opts, &m);
    fz_check_status(s, "qnpu_model_load");
    if (s == QNPU_OK) {
        fz_use_model(m);
        qnpu_model_free(m);
    } else if (m) {
        abort(); /* *out must stay NULL on failure */
    }
}

/* An anonymous in-memory file, reachable by path. */
typedef struct fz_file {
    int fd;
    char path[64];
} fz_file;

static inline void fz_file_init(fz_file *f, const char *name)
{
    f->fd = memfd_create(name, MFD_CLOEXEC);
    if (f->fd < 0)
        fz_die("memfd_create");
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

/* Make the file's contents exactly `n` bytes of `data`. */
static inline void fz_file_set(fz_file *f, const void *data, size_t n)
{
    if (ftruncate(f->fd, 0) != 0)
        fz_die("ftruncate");
    const unsigned char *p = data;
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(f->fd, p + done, n - done, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fz_die("pwrite");
        done += (size_t)w;
    }
}

/* The first occurrence of `sep` in [p, p + n), or NULL. */
static inline const uint8_t *fz_find(const uint8_t *p, size_t n, const char *sep)
{
    size_t k = strlen(sep);
    if (k == 0 || n < k)
        return NULL;
    for (size_t i = 0; i + k <= n; i++)
        if (p[i] == (uint8_t)sep[0] && memcmp(p + i, sep, k) == 0)
            return p + i;
    return NULL;
}

#endif
