/* internal.h — private structures and qnpu__ helpers shared by lib/. Never installed. */
#ifndef QNPU_INTERNAL_H
#define QNPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "quantnpu.h"

#if defined(__GNUC__)
#  define QNPU__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define QNPU__PRINTF(a, b)
#endif

/* A loop kernel written in plain C, compiled for AVX-512, AVX2 and baseline x86-64 and picked at
 * load time (GCC function multi-versioning). The source is the same and -std=c11 keeps FMA
 * contraction off, so every version computes the same floats as long as the kernel fixes its
 * reduction order (partial sums per lane); the wider versions only do more lanes at once. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#  define QNPU__VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#  define QNPU__VEC_CLONES
#endif

/* ---- errors and logging (lib/common/error.c, log.c) ------------------------------------- */

/* Record a failure for qnpu_last_error() and return `s`, so callers write
 *     return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s' ...", path, name);        */
qnpu_status qnpu__fail(qnpu_status s, const char *fmt, ...) QNPU__PRINTF(2, 3);
/* Prefix the current thread's message with "prefix: " (adds context on the way out). */
void qnpu__error_prefix(const char *fmt, ...) QNPU__PRINTF(1, 2);
void qnpu__log(int level, const char *fmt, ...) QNPU__PRINTF(2, 3);

/* Live-handle counter: the global setters refuse to run while it is non-zero. */
void qnpu__handle_acquire(void);
void qnpu__handle_release(void);
int qnpu__handles_live(void);

/* ---- memory (lib/common/alloc.c): goes through the qnpu_set_allocator hook --------------- */

#define QNPU__ALIGN 64
void *qnpu__malloc(size_t size);              /* 64-byte aligned; NULL on failure or size 0 */
void *qnpu__calloc(size_t n, size_t size);    /* zeroed; NULL on overflow                  */
void *qnpu__realloc(void *p, size_t old_size, size_t new_size);
void qnpu__free(void *p);
char *qnpu__strdup(const char *s);
char *qnpu__strndup(const char *s, size_t n);
/* a * b into *out; 0 on overflow */
int qnpu__mul_ok(size_t a, size_t b, size_t *out);

/* ---- text buffer (lib/common/sbuf.c) ----------------------------------------------------- */

/* A NUL-terminated text that grows as it is printed to; start with {0}, free p with qnpu__free.
 * An allocation failure sets oom and ignores later prints. */
typedef struct qnpu__sbuf {
    char *p;
    size_t len, cap;
    int oom;
} qnpu__sbuf;
void qnpu__sb_printf(qnpu__sbuf *b, const char *fmt, ...) QNPU__PRINTF(2, 3);

/* ---- files (lib/common/file.c) --------------------------------------------------------- */

typedef struct qnpu__file {
    const unsigned char *data; /* whole file contents */
    size_t size;
    int mapped;                /* 1: mmap'ed (munmap), 0: owned buffer (qnpu__free) */
} qnpu__file;

/* Map (use_mmap) or read a whole file. QNPU_ERR_IO with the path in the message. */
qnpu_status qnpu__file_open(const char *path, int use_mmap, qnpu__file *f);
void qnpu__file_close(qnpu__file *f);
/* Read a whole (text) file into a NUL-terminated owned buffer. */
qnpu_status qnpu__read_text(const char *path, char **out, size_t *len);
int qnpu__is_dir(const char *path);
/* dir + "/" + name into a new string. */
char *qnpu__path_join(const char *dir, const char *name);
/* directory part of a path ("." if none), new string. */
char *qnpu__path_dirname(const char *path);

/* Atomic output file: the bytes go to `path`.tmp.XXXXXX in the same directory; commit fsyncs,
 * renames it over `path` (a new file gets 0644, a replaced one keeps its mode) and syncs the
 * directory; abort (or a failed commit) removes the temporary file, so a previous file at `path`
 * is never touched and nothing half-written is left. Writes are buffered; the first error is
 * sticky and reported by commit (QNPU_ERR_IO naming the path and the errno text). */
typedef struct qnpu__afile {
    const char *path;   /* borrowed */
    char *tmp;
    int fd;
    int err;            /* first errno, 0 if none */
    const char *what;   /* the failed step ("write", ...) */
    unsigned mode;
    uint64_t pos;       /* bytes appended so far */
    unsigned char *buf;
    size_t fill;
} qnpu__afile;

/* QNPU_ERR_IO (cannot create the temporary file) or QNPU_ERR_NO_MEMORY; f is then closed. */
qnpu_status qnpu__afile_open(qnpu__afile *f, const char *path);
/* Append n bytes. */
void qnpu__afile_write(qnpu__afile *f, const void *p, size_t n);
/* Append printf-formatted text. */
void qnpu__afile_printf(qnpu__afile *f, const char *fmt, ...) QNPU__PRINTF(2, 3);
/* Overwrite n bytes at offset `at` (< pos; e.g. a header written last). */
void qnpu__afile_pwrite(qnpu__afile *f, const void *p, size_t n, uint64_t at);
/* Flush, fsync, close, rename; on any failure the temporary file is removed. */
qnpu_status qnpu__afile_commit(qnpu__afile *f);
/* Close and remove the temporary file (safe after a failed open or commit, and twice). */
void qnpu__afile_abort(qnpu__afile *f);

/* ---- numbers (lib/common/half.c) -------------------------------------------------------- */

float qnpu__f16_to_f32(uint16_t h);
float qnpu__bf16_to_f32(uint16_t h);
uint16_t qnpu__f32_to_f16(float f);   /* round to nearest even */
uint16_t qnpu__f32_to_bf16(float f);  /* round to nearest even */

/* ---- options (lib/common/options.c) ----------------------------------------------------- */

int64_t qnpu__opt_int(const qnpu_options *o, qnpu_param p);   /* INT, BOOL, CHOICE index */
const char *qnpu__opt_str(const qnpu_options *o, qnpu_param p); /* STRING ("" when unset) */
double qnpu__opt_float(const qnpu_options *o, qnpu_param p);
/* the resolved thread count of num_threads (0 -> online cores) */
int qnpu__opt_threads(const qnpu_options *o);

/* ---- thread pool (lib/common/pool.c) ---------------------------------------------------- */

/* A task runs once on every worker: fn(arg, ith, nth), ith in [0, nth); the caller is worker 0. */
typedef void (*qnpu__task_fn)(void *arg, int ith, int nth);
typedef struct qnpu__pool qnpu__pool;
/* n threads in all (n − 1 started). QNPU_ERR_NO_MEMORY if a thread cannot start. */
qnpu_status qnpu__pool_create(int n, qnpu__pool **out);
/* Run fn on every worker and wait for all; a NULL or 1-thread pool runs fn(arg, 0, 1) inline.
 * One task at a time per pool (the owner of the pool calls this). */
void qnpu__pool_run(qnpu__pool *p, qnpu__task_fn fn, void *arg);
int qnpu__pool_size(const qnpu__pool *p);
void qnpu__pool_free(qnpu__pool *p);

/* ---- model (lib/model/) ----------------------------------------------------------------- */

typedef enum qnpu__dtype { QNPU__F32 = 0, QNPU__F16 = 1, QNPU__BF16 = 30 } qnpu__dtype;

typedef struct qnpu__tensor {
    char *name;          /* canonical (GGUF) name, e.g. "blk.3.ffn_down.weight"         */
    char *src_name;      /* the name in the source file, for messages                   */
    int dtype;           /* qnpu__dtype of the source bytes                             */
    int64_t rows, cols;  /* row-major [rows][cols]; vectors have rows = 1               */
    const void *src;     /* source bytes (inside a qnpu__file)                          */
    float *data;         /* float32 view: == src when usable in place, else owned       */
    int owned;
} qnpu__tensor;

typedef struct qnpu__layer {
    const float *attn_norm, *wq, *wk, *wv, *wo; /* wq [H*dh][d], wk/wv [KV*dh][d], wo [d][H*dh] */
    const float *bq, *bk, *bv;                  /* NULL unless qkv_bias                          */
    const float *ffn_norm, *w_gate, *w_up, *w_down; /* gate/up [ff][d], down [d][ff]             */
} qnpu__layer;

/* An embedded vocabulary (GGUF): pieces with spaces as ' ' (not U+2581), scores, types. */
typedef struct qnpu__vocab {
    int64_t n;
    char **pieces;       /* NUL-terminated; lens give the byte length (pieces may hold NUL) */
    uint32_t *lens;
    float *scores;
    int32_t *types;      /* SentencePiece token types (1 normal, 2 unknown, 3 control, 6 byte) or NULL */
    unsigned char *bpe;  /* a byte-level BPE tokenizer (tokenizer_bpe.c's serialized form), or NULL */
    size_t bpe_size;
} qnpu__vocab;

#define QNPU__MAX_SHARDS 256

struct qnpu_model {
    char *path;                /* as given to qnpu_model_load */
    const char *format;        /* "llama2c", "gguf", "safetensors" */
    char arch[32];
    int64_t dim, ffn, n_layers, n_heads, n_kv_heads, head_dim, vocab, max_seq;
    double rope_theta, rms_eps;
    int rope_half;             /* 0 interleaved pairs (2i, 2i+1); 1 rotate-half (i, i + dh/2) */
    int tied, qkv_bias;
    int32_t bos, eos;

    const float *tok_embd;     /* [vocab][dim] */
    const float *out_norm;     /* [dim] */
    const float *output;       /* [vocab][dim]; == tok_embd when tied */
    qnpu__layer *layers;

    qnpu__tensor *tensors;
    int64_t n_tensors, cap_tensors;
    qnpu__file files[QNPU__MAX_SHARDS];
    int n_files;
    size_t owned_bytes;

    qnpu__vocab *vocab_emb;    /* GGUF's embedded vocabulary, or NULL */

    /* Set by the rotator (METHOD.md §4.1): norm weights fused (all ones), untied, rotate-half
     * RoPE; r4[l] is layer l's online R4 (applied to silu*up before down_proj), or NULL. */
    int prepared;
    struct qnpu__hadamard **r4;
    void (*r4_free)(struct qnpu__hadamard *); /* set with r4 (keeps model/ free of rotate/) */
    char *tokenizer_path;      /* where the source's tokenizer lives (llama2.c: beside it) */
};

/* Helpers used by every loader. The loader fills the dims and hyper-parameters, maps its
 * files into m->files, and registers each tensor by canonical name; qnpu__model_finish then
 * checks that every expected tensor is present with the expected shape, converts F16/BF16
 * (and misaligned F32) to float32, optionally rejects NaN/Inf, and binds m->layers. */
qnpu_status qnpu__model_add_tensor(qnpu_model *m, const char *name, const char *src_name, int dtype,
                                   int64_t rows, int64_t cols, const void *src);
qnpu_status qnpu__model_finish(qnpu_model *m, const qnpu_options *opts);
/* Validate dims (positive, consistent, not absurd). Message names the file. */
qnpu_status qnpu__model_check_dims(const qnpu_model *m);
qnpu__tensor *qnpu__model_tensor(const qnpu_model *m, const char *name);
/* Register an owned float32 tensor (the model frees `data`). */
qnpu_status qnpu__model_add_owned(qnpu_model *m, const char *name, int64_t rows, int64_t cols,
                                  float *data);
/* Register an owned copy of src (NULL: a tensor of ones, e.g. a fused norm weight); *out (may be
 * NULL) receives the copy, which the model frees. */
qnpu_status qnpu__model_add_copy(qnpu_model *m, const char *name, int64_t rows, int64_t cols,
                                 const float *src, float **out);
/* A new empty model with m's dimensions and hyper-parameters (no tensors). */
qnpu_status qnpu__model_new_like(const qnpu_model *m, qnpu_model **out);
/* Free a model made by qnpu__model_new_like before it was handed out. */
void qnpu__model_destroy(qnpu_model *m);

/* The loaders; each returns with `m` partially filled on failure (the caller frees it). */
qnpu_status qnpu__load_llama2c(qnpu_model *m, const qnpu_options *opts);
qnpu_status qnpu__load_gguf(qnpu_model *m, const qnpu_options *opts);
qnpu_status qnpu__load_hf(qnpu_model *m, const qnpu_options *opts);

void qnpu__vocab_free(qnpu__vocab *v);

/* ---- tokenizer (lib/model/tokenizer.c) -------------------------------------------------- */

/* Build a tokenizer from pieces (copied). Pieces are raw bytes with real spaces. `types`
 * (SentencePiece token types, may be NULL) keeps unknown/control pieces out of encoding. */
qnpu_status qnpu__tokenizer_create(int64_t n, char *const *pieces, const uint32_t *lens,
                                   const float *scores, const int32_t *types, int32_t bos,
                                   int32_t eos, qnpu_tokenizer **out);

/* ---- perplexity (lib/float/perplexity.c) ---------------------------------------------- */

/* Logits [T][vocab] of T tokens evaluated from an empty context. */
typedef qnpu_status (*qnpu__window_fn)(void *engine, const int32_t *tokens, int64_t T, float *logits);
/* The window protocol over any engine (checks ctx in [2, max_ctx] and every id). */
qnpu_status qnpu__perplexity_windows(const int32_t *ids, size_t n, int64_t ctx, int64_t max_ctx,
                                     int64_t vocab, qnpu__window_fn forward, void *engine,
                                     qnpu_progress_fn progress, void *user, double *ppl,
                                     int64_t *scored);

/* A copy of the tokenizer's vocabulary (for the .qnpu file). */
qnpu_status qnpu__tokenizer_export(const qnpu_tokenizer *t, qnpu__vocab **out);
/* The tokenizer of an exported vocabulary (SentencePiece, or the byte-level BPE in v->bpe,
 * checked again; `what` starts the messages). */
qnpu_status qnpu__tokenizer_from_vocab(const qnpu__vocab *v, const char *what, int32_t bos,
                                       int32_t eos, qnpu_tokenizer **out);

/* ---- kernels (lib/kernels/) ------------------------------------------------------------- */

/* C (m,n) = alpha * A (m,k) @ op(B) + beta * C, row-major with leading dimensions.
 * transb = 1: B is stored (n,k) (a weight matrix [out][in]); 0: B is (k,n). */
void qnpu__sgemm(int threads, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, int transb, float beta, float *c,
                 int64_t ldc);
/* y (n) = W (n,k) x + beta y (W row-major with leading dimension ldw). */
void qnpu__sgemv(int threads, int64_t n, int64_t k, const float *W, int64_t ldw, const float *x, float beta,
                 float *y);
/* The same with op(A) too: transa = 1 means A is stored (k,m). */
void qnpu__sgemm_ex(int threads, int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                    int64_t ldc);

#endif
