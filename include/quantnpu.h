/*
 * quantnpu.h — libquantnpu, fully static integer-only quantization of LLMs for NPUs.
 *
 * This header is the reference documentation of the library. It includes only <stddef.h> and
 * <stdint.h>; every object is an opaque handle created and freed by the library.
 *
 * The pipeline, in ten lines (0.1.0 ships the foundation: load, tokenize, float engine, eval):
 *
 *     qnpu_model *m;      qnpu_tokenizer *t;     qnpu_float_session *s;
 *     if (qnpu_model_load("stories260K.bin", NULL, &m) != QNPU_OK)
 *         fprintf(stderr, "%s\n", qnpu_last_error());
 *     qnpu_tokenizer_from_model(m, &t);                  // embedded or beside the checkpoint
 *     qnpu_float_session_create(m, NULL, &s);            // float32 forward, KV cache
 *     double ppl; int64_t scored;
 *     qnpu_float_session_perplexity(s, t, text, len, 256, &ppl, &scored);
 *     qnpu_float_session_free(s); qnpu_tokenizer_free(t); qnpu_model_free(m);
 *
 * Conventions used throughout:
 *   - Every fallible function returns a qnpu_status; QNPU_OK is 0. On failure a message with
 *     context (file, tensor, line:column) is available from qnpu_last_error() on the same thread.
 *   - Constructors write the new handle through an out-parameter; destructors (`_free`) accept NULL.
 *   - Strings in are UTF-8 and copied. Returned `const char *` are static or owned by the handle
 *     they came from; each function says how long they stay valid.
 *   - The library never prints, exits or aborts. Logging is silent unless a callback is set.
 *   - Thread safety: a handle is used by one thread at a time (it may move between threads);
 *     different handles may be used concurrently. Functions taking `const` handles say when they
 *     are safe to call concurrently. See docs/threading.md.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef QUANTNPU_H
#define QUANTNPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#  define QNPU_API __attribute__((visibility("default")))
#else
#  define QNPU_API
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define QNPU_DEPRECATED(msg) __attribute__((deprecated(msg)))
#else
#  define QNPU_DEPRECATED(msg)
#endif

/* ======================================================================================== */
/* Version                                                                                  */
/* ======================================================================================== */

/* The release version. The Makefile reads these three lines; keep their form. */
#define QNPU_VERSION_MAJOR 0
#define QNPU_VERSION_MINOR 1
#define QNPU_VERSION_PATCH 0
#define QNPU_VERSION_NUMBER (QNPU_VERSION_MAJOR * 10000 + QNPU_VERSION_MINOR * 100 + QNPU_VERSION_PATCH)
#define QNPU_VERSION_STRING "0.1.0"
/* The version of the .qnpu file format this library writes and the newest it reads
 * (docs/formats.md); independent of the release version. */
#define QNPU_FORMAT_VERSION 1

/** @return QNPU_VERSION_NUMBER of the library actually loaded (compare with the macro).
 *  Thread-safety: always safe. Since: 0.1 */
QNPU_API unsigned qnpu_version_number(void);
/** @return QNPU_VERSION_STRING of the library actually loaded; static storage. Since: 0.1 */
QNPU_API const char *qnpu_version_string(void);

/* ======================================================================================== */
/* Status codes — values are pinned forever; a removed value is never reused.               */
/* ======================================================================================== */

typedef enum qnpu_status {
    QNPU_OK = 0,
    QNPU_ERR_INVALID_ARG = 1,      /* a NULL handle, a bad value, an out-of-range option        */
    QNPU_ERR_NO_MEMORY = 2,        /* an allocation failed                                       */
    QNPU_ERR_IO = 3,               /* open/read/write/mmap failed, or a file is truncated        */
    QNPU_ERR_FORMAT = 4,           /* a file is malformed: magic, header, shapes, offsets        */
    QNPU_ERR_UNSUPPORTED = 5,      /* well-formed but not supported: dtype, architecture, ...    */
    QNPU_ERR_STATE = 6,            /* the call is not valid now (e.g. a global setter too late)  */
    QNPU_ERR_CANCELLED = 7,        /* a progress callback asked to stop                          */
    QNPU_ERR_BUFFER_TOO_SMALL = 8, /* the caller's buffer is too small; the needed size is given */
    QNPU_ERR_NUMERIC = 9,          /* NaN or Inf found in weights or activations                 */
    QNPU_ERR_RECIPE = 10,          /* a YAML recipe is invalid                                   */
    QNPU_ERR_INTERNAL = 11         /* a broken invariant: please report it                       */
} qnpu_status;

/** @return static English text for a status, never NULL ("unknown status" for unknown values).
 *  Thread-safety: always safe. Since: 0.1 */
QNPU_API const char *qnpu_status_string(qnpu_status s);

/** @return the message of the last failing call on this thread ("" if none). Valid until the next
 *  failing call on the same thread. Thread-safety: per thread. Since: 0.1 */
QNPU_API const char *qnpu_last_error(void);

/* ======================================================================================== */
/* Opaque handles                                                                           */
/* ======================================================================================== */

typedef struct qnpu_options qnpu_options;             /* typed parameters, see qnpu_param     */
typedef struct qnpu_model qnpu_model;                 /* float model weights, read-only       */
typedef struct qnpu_tokenizer qnpu_tokenizer;         /* SentencePiece-style BPE vocabulary   */
typedef struct qnpu_float_session qnpu_float_session; /* float32 forward with a KV cache       */
typedef struct qnpu_rotator qnpu_rotator;             /* norm fusion and R1/R2/R4 rotations    */
typedef struct qnpu_calibrator qnpu_calibrator;       /* static calibration of every QP        */
typedef struct qnpu_optimizer qnpu_optimizer;         /* Quant.npu two-stage learned pipeline  */
typedef struct qnpu_qmodel qnpu_qmodel;               /* the quantized model (.qnpu)           */
typedef struct qnpu_report qnpu_report;               /* quantization error per point         */
typedef struct qnpu_session qnpu_session;             /* integer-only engine over a qmodel     */
typedef struct qnpu_compare qnpu_compare;             /* integer engine vs simulated graph     */
typedef struct qnpu_exporter qnpu_exporter;           /* writes a qmodel as .qnpu/ONNX/encodings */

/* ======================================================================================== */
/* Callbacks                                                                                */
/* ======================================================================================== */

/** Progress: `stage` is a short static string ("load", "eval", ...); `done` of `total` units.
 *  Return non-zero to cancel: the running call then returns QNPU_ERR_CANCELLED at its next safe
 *  point. Called only on the thread that made the API call. */
typedef int (*qnpu_progress_fn)(void *user, const char *stage, int64_t done, int64_t total);

/** Log levels. */
typedef enum qnpu_log_level {
    QNPU_LOG_ERROR = 1,
    QNPU_LOG_WARN = 2,
    QNPU_LOG_INFO = 3,
    QNPU_LOG_DEBUG = 4
} qnpu_log_level;

/** Log sink: one complete line per call, no trailing newline. */
typedef void (*qnpu_log_fn)(void *user, int level, const char *message);

/** Allocator hook: `alignment` is a power of two (64 for tensors). Return NULL on failure. */
typedef void *(*qnpu_alloc_fn)(void *user, size_t size, size_t alignment);
typedef void (*qnpu_free_fn)(void *user, void *ptr);

/* ======================================================================================== */
/* Global settings — call before the first handle is created.                               */
/* ======================================================================================== */

/** Set the process-wide log sink (NULL restores silence). Messages at or below the level set by
 *  qnpu_set_log_level (default QNPU_LOG_WARN) are delivered. If the environment variable
 *  QNPU_LOG_LEVEL (1..4) is set and no callback is installed, messages go to stderr.
 *  @return QNPU_OK, or QNPU_ERR_STATE if a handle exists. Since: 0.1 */
QNPU_API qnpu_status qnpu_set_log_callback(qnpu_log_fn fn, void *user);
/** @return QNPU_OK, or QNPU_ERR_INVALID_ARG for a level outside 0..4 (0 = off). Since: 0.1 */
QNPU_API qnpu_status qnpu_set_log_level(int level);

/** Replace the allocator used for libquantnpu's tensors and workspaces (BLIS and libyaml keep
 *  their own malloc, as do the C library and PCRE2's JIT compiler; every other allocation of the
 *  library goes through the hook, and its worker threads allocate nothing). An allocation that
 *  fails makes the call return QNPU_ERR_NO_MEMORY having freed what it made (docs/reliability.md).
 *  Both functions or neither (NULL, NULL restores the default).
 *  @return QNPU_OK, QNPU_ERR_INVALID_ARG, or QNPU_ERR_STATE if a handle exists. Since: 0.1 */
QNPU_API qnpu_status qnpu_set_allocator(qnpu_alloc_fn alloc, qnpu_free_fn free_fn, void *user);

/* ======================================================================================== */
/* Parameters — one table (lib/common/params.def) drives the C API, YAML recipe keys, Python */
/* keyword arguments and docs/recipes.md. IDs are pinned forever, grouped by component.     */
/* ======================================================================================== */

typedef enum qnpu_param {
    /* 1-99: global */
    QNPU_P_NUM_THREADS = 1,
    QNPU_P_SEED = 2,
    QNPU_P_EVAL_SEQ_LEN = 10,
    QNPU_P_MODEL_CHECK_FINITE = 20,
    QNPU_P_MODEL_MMAP = 21,
    /* 100s: calibration and initialization */
    QNPU_P_CALIB_SEQ_LEN = 100,
    QNPU_P_CALIB_NUM_SAMPLES = 101,
    QNPU_P_CALIB_FIRST_BLOCK = 102,
    QNPU_P_CALIB_TEXT = 103,
    QNPU_P_INIT_ACT_ROTATED = 110,
    QNPU_P_INIT_ACT_UNROTATED = 111,
    QNPU_P_INIT_WEIGHT = 112,
    QNPU_P_INIT_SIGMA_K = 113,
    QNPU_P_INIT_EMA = 114,
    QNPU_P_INIT_WARMUP_CALLS = 115,
    QNPU_P_OBSERVER_SYM_DIVISOR = 120,
    QNPU_P_OBSERVER_LINEAR_IN = 121,
    QNPU_P_OBSERVER_LINEAR_OUT = 122,
    QNPU_P_OBSERVER_KV = 123,
    QNPU_P_OBSERVER_ATTENTION = 124,
    QNPU_P_OBSERVER_OTHER = 125,
    QNPU_P_OBSERVER_PERCENTILE = 126,
    QNPU_P_OBSERVER_SIGMA_K = 127,
    QNPU_P_OBSERVER_BINS = 128,
    QNPU_P_QUANT_W_BITS = 150,
    QNPU_P_QUANT_A_BITS = 151,
    QNPU_P_QUANT_DOWN_A_BITS = 152,
    QNPU_P_QUANT_KV_BITS = 153,
    QNPU_P_QUANT_HEAD_W_BITS = 154,
    QNPU_P_QUANT_OUT_BITS = 155,
    QNPU_P_QUANT_WEIGHT_CLIP = 156,
    QNPU_P_QUANT_BITS_OVERRIDE = 157,
    /* 200s: rotation */
    QNPU_P_ROTATE_R1 = 200,
    QNPU_P_ROTATE_R2 = 201,
    QNPU_P_ROTATE_R4 = 202,
    QNPU_P_ROTATE_HADAMARD_FALLBACK = 203,
    QNPU_P_ROTATE_MAX_DENSE_BLOCK = 204,
    QNPU_P_ROTATE_SEED = 205,
    QNPU_P_ROTATE_R4_LAYERS = 206,
    /* 300s: optimizer */
    QNPU_P_OPTIM_STEPS = 300,
    QNPU_P_OPTIM_BATCH = 301,
    QNPU_P_OPTIM_LR = 302,
    QNPU_P_OPTIM_QPARAM_LR_RATIO = 303,
    QNPU_P_OPTIM_SCHEDULE = 304,
    QNPU_P_OPTIM_CLIP_NORM = 305,
    QNPU_P_OPTIM_QPARAM_GRAD_CLAMP = 306,
    QNPU_P_OPTIM_CAYLEY_ITERS = 307,
    QNPU_P_OPTIM_QR_EVERY = 308,
    QNPU_P_OPTIM_TRAIN_ROTATION = 309,
    QNPU_P_OPTIM_TRAIN_QPARAMS = 310,
    QNPU_P_OPTIM_SHUFFLE = 311,
    QNPU_P_OPTIM_MICRO_BATCH = 312,
    QNPU_P_OPTIM_WEIGHT_ROUND = 313,
    QNPU_P_OPTIM_GPTQ_DAMP = 314,
    QNPU_P_OPTIM_LOSS = 315,
    QNPU_P_OPTIM_NAIVE_JOINT = 316,
    QNPU_P_OPTIM_TRAIN = 317,
    /* 400s: mixed precision */
    QNPU_P_MIXED_MODE = 400,
    QNPU_P_MIXED_P = 401,
    QNPU_P_MIXED_NUM_SAMPLES = 402,
    /* 500s: export */
    QNPU_P_EXPORT_ENCODINGS_VERSION = 500,
    QNPU_P_EXPORT_ONNX_FLAVOR = 501,
    QNPU_P_EXPORT_SEQ_LEN = 502,
    QNPU_P_EXPORT_QNN_LINEAR_AS = 503,
    QNPU_P_EXPORT_PAST_LEN = 504,
    /* 600s: engine */
    QNPU_P_ENGINE_CTX_SIZE = 600,
    QNPU_P_ENGINE_KERNELS = 601
} qnpu_param;

/** Parameter value types, as reported by qnpu_param_info. */
typedef enum qnpu_param_type {
    QNPU_PTYPE_INT = 1,    /* int64, bounded by [min, max]                             */
    QNPU_PTYPE_FLOAT = 2,  /* double, bounded by [min, max]                            */
    QNPU_PTYPE_BOOL = 3,   /* an int 0 or 1; set with qnpu_options_set_int             */
    QNPU_PTYPE_CHOICE = 4, /* one of the words listed by qnpu_param_choices            */
    QNPU_PTYPE_STRING = 5  /* free text (a path, a list of names); default empty        */
} qnpu_param_type;

/** @return the number of parameters in the table. Since: 0.1 */
QNPU_API int qnpu_param_count(void);
/** The i-th parameter of the table (0 <= i < qnpu_param_count()), in table order.
 *  @return QNPU_OK or QNPU_ERR_INVALID_ARG. Since: 0.1 */
QNPU_API qnpu_status qnpu_param_at(int i, qnpu_param *out);
/** Look a parameter up by its name, which is also its YAML recipe key ("calib.num_samples").
 *  @return QNPU_OK or QNPU_ERR_INVALID_ARG (unknown name). Since: 0.1 */
QNPU_API qnpu_status qnpu_param_from_name(const char *name, qnpu_param *out);
/** Describe a parameter; any out pointer may be NULL. `name` is static. For CHOICE parameters
 *  min and max are 0. @return QNPU_OK or QNPU_ERR_INVALID_ARG (unknown id). Since: 0.1 */
QNPU_API qnpu_status qnpu_param_info(qnpu_param p, const char **name, int *type, double *min,
                                     double *max);
/** @return a static one-line description of the parameter, or NULL for an unknown id. */
QNPU_API const char *qnpu_param_doc(qnpu_param p);
/** @return for CHOICE parameters the allowed words separated by '|' (static); otherwise NULL. */
QNPU_API const char *qnpu_param_choices(qnpu_param p);

/* ======================================================================================== */
/* Options — a bag of typed parameter values; NULL wherever options are taken means defaults. */
/* ======================================================================================== */

/** Create an options object holding every parameter at its default. Since: 0.1 */
QNPU_API qnpu_status qnpu_options_create(qnpu_options **out);
/** Free an options object; NULL is accepted. */
QNPU_API void qnpu_options_free(qnpu_options *o);
/** Copy `src` into a new object. */
QNPU_API qnpu_status qnpu_options_clone(const qnpu_options *src, qnpu_options **out);
/** Set an INT or BOOL parameter. @return QNPU_ERR_INVALID_ARG for a type mismatch or an
 *  out-of-range value (the message names the parameter and its bounds). */
QNPU_API qnpu_status qnpu_options_set_int(qnpu_options *o, qnpu_param p, int64_t v);
/** Set a FLOAT parameter (an INT parameter accepts an integral value too). */
QNPU_API qnpu_status qnpu_options_set_float(qnpu_options *o, qnpu_param p, double v);
/** Set a parameter from text: a CHOICE word, a STRING (copied), a number for INT/FLOAT, or
 *  true/false/0/1 for BOOL. This is what recipes and the command line use. */
QNPU_API qnpu_status qnpu_options_set_str(qnpu_options *o, qnpu_param p, const char *v);
/** Read a parameter (a NULL `o` reads the default). INT, BOOL and CHOICE (its index in the
 *  choice list) read as int; FLOAT reads as float. */
QNPU_API qnpu_status qnpu_options_get_int(const qnpu_options *o, qnpu_param p, int64_t *out);
QNPU_API qnpu_status qnpu_options_get_float(const qnpu_options *o, qnpu_param p, double *out);
/** Read a CHOICE parameter's word (valid until the next call of this function on the same
 *  thread) or a STRING parameter's text (owned by `o`, valid until it is set again or freed). */
QNPU_API qnpu_status qnpu_options_get_str(const qnpu_options *o, qnpu_param p, const char **out);

/** Apply a YAML recipe to `o` (docs/recipes.md). `recipe` is a file path — any text holding a
 *  '/' or ending in ".yaml" or ".yml" — or else the name of a preset compiled into the library
 *  ("w4a8"; see qnpu_recipe_preset_name). A recipe is one mapping: `version: 1` (required),
 *  then parameter names as keys, flat (`calib.num_samples: 16`) or nested (`calib:` then
 *  `  num_samples: 16`); each value is set as by qnpu_options_set_str; a list is accepted for
 *  STRING parameters and joined with ','. Parameters the recipe does not name keep their values.
 *  @return QNPU_OK; QNPU_ERR_RECIPE with "FILE:LINE:COLUMN: problem" naming the key (unknown
 *  key with a suggestion, bad value with the bounds or choices, duplicate key, missing or
 *  unsupported version, YAML syntax, anchors/aliases/tags, invalid UTF-8, empty file);
 *  QNPU_ERR_IO (the file cannot be read; the message names it); QNPU_ERR_INVALID_ARG (NULL,
 *  unknown preset name); QNPU_ERR_NO_MEMORY. On failure `o` is unchanged (unless memory runs
 *  out while the validated values are copied in).
 *  Thread-safety: uses only `o`. Since: 0.1 */
QNPU_API qnpu_status qnpu_options_load_recipe(qnpu_options *o, const char *recipe);
/** @return the name of the i-th preset shipped in the library (0 <= i), static, or NULL past
 *  the end. 0.1 ships, in this order, "quantnpu-w4a4-mixed" and "quantnpu-w4a8" (the learned
 *  two-stage pipeline, optim.train = true), "w4a16", "w4a4-mixed", "w4a8-hadamard", "w4a8" and
 *  "w8a8" (static calibration). Since: 0.1 */
QNPU_API const char *qnpu_recipe_preset_name(int i);
/** The YAML text of a preset (static storage, NUL-terminated), exactly as shipped in
 *  recipes/NAME.yaml. @return QNPU_OK or QNPU_ERR_INVALID_ARG (NULL, unknown name). Since: 0.1 */
QNPU_API qnpu_status qnpu_recipe_preset_text(const char *name, const char **yaml);

/* ======================================================================================== */
/* Model — float weights loaded from llama2.c, GGUF v3 or a Hugging Face directory.         */
/* ======================================================================================== */

/** Load a model. `path` is
 *   - a llama2.c checkpoint (legacy version-0 header, shared or separate classifier);
 *   - a GGUF v3 file, llama architecture, F32/F16/BF16 tensors (interleaved Q/K RoPE order);
 *   - a Hugging Face directory with config.json and model.safetensors, or sharded
 *     model-XXXXX-of-YYYYY.safetensors with model.safetensors.index.json; LlamaForCausalLM or
 *     Qwen2ForCausalLM; F32/F16/BF16 (rotate-half RoPE order).
 * F32 weights are memory-mapped (option model.mmap); F16/BF16 are converted to float32.
 * Options used: model.check_finite (reject NaN/Inf weights), model.mmap.
 * @return QNPU_OK; QNPU_ERR_IO (cannot open/read, truncated), QNPU_ERR_FORMAT (bad magic,
 *   header, shape, offset), QNPU_ERR_UNSUPPORTED (dtype, architecture, version),
 *   QNPU_ERR_NUMERIC (NaN/Inf weight), QNPU_ERR_NO_MEMORY. The message names the file and tensor.
 * Thread-safety: a loaded model is read-only: every `const qnpu_model *` function is safe to
 * call concurrently, and many sessions may share one model. Since: 0.1 */
QNPU_API qnpu_status qnpu_model_load(const char *path, const qnpu_options *opts, qnpu_model **out);
/** Free a model; NULL is accepted. It must outlive every tokenizer, session made from it. */
QNPU_API void qnpu_model_free(qnpu_model *m);

/** Model dimensions, read with qnpu_model_get_dim. */
typedef enum qnpu_model_dim {
    QNPU_DIM_HIDDEN = 1,      /* d, the residual width                         */
    QNPU_DIM_FFN = 2,         /* d_ff, the MLP width                           */
    QNPU_DIM_LAYERS = 3,      /* decoder layers                                */
    QNPU_DIM_HEADS = 4,       /* query heads                                   */
    QNPU_DIM_KV_HEADS = 5,    /* key/value heads (GQA)                         */
    QNPU_DIM_HEAD_DIM = 6,    /* d_h                                           */
    QNPU_DIM_VOCAB = 7,       /* vocabulary size                               */
    QNPU_DIM_MAX_SEQ = 8,     /* maximum context length                        */
    QNPU_DIM_ROPE_ORDER = 9,  /* 0 = interleaved pairs (llama2.c, GGUF), 1 = rotate-half (HF) */
    QNPU_DIM_TIED = 10,       /* 1 if the classifier shares the token embedding */
    QNPU_DIM_QKV_BIAS = 11,   /* 1 if q/k/v carry biases (Qwen2)               */
    QNPU_DIM_BOS = 12,        /* BOS token id                                   */
    QNPU_DIM_EOS = 13         /* EOS token id                                   */
} qnpu_model_dim;

/** Read a dimension. @return QNPU_OK or QNPU_ERR_INVALID_ARG. */
QNPU_API qnpu_status qnpu_model_get_dim(const qnpu_model *m, qnpu_model_dim which, int64_t *out);
/** Float hyper-parameters, read with qnpu_model_get_hparam. */
typedef enum qnpu_model_hparam {
    QNPU_HP_ROPE_THETA = 1,   /* RoPE base frequency                   */
    QNPU_HP_RMS_EPS = 2       /* RMSNorm epsilon                       */
} qnpu_model_hparam;

/** Read a float hyper-parameter. @return QNPU_OK or QNPU_ERR_INVALID_ARG. */
QNPU_API qnpu_status qnpu_model_get_hparam(const qnpu_model *m, qnpu_model_hparam which, double *out);
/** @return the architecture ("llama" or "qwen2"), owned by the model. */
QNPU_API const char *qnpu_model_arch(const qnpu_model *m);
/** @return the source format ("llama2c", "gguf", "safetensors"), static. */
QNPU_API const char *qnpu_model_format(const qnpu_model *m);

/** Number of weight tensors. Names are canonical across formats (GGUF's: "token_embd.weight",
 *  "blk.0.attn_q.weight", ..., "output_norm.weight", "output.weight" when untied). */
QNPU_API int64_t qnpu_model_tensor_count(const qnpu_model *m);
/** Name of tensor i, owned by the model (valid until qnpu_model_free), or NULL if out of range. */
QNPU_API const char *qnpu_model_tensor_name(const qnpu_model *m, int64_t i);
/** Find a tensor by canonical name. @return QNPU_OK or QNPU_ERR_INVALID_ARG (no such tensor). */
QNPU_API qnpu_status qnpu_model_tensor_find(const qnpu_model *m, const char *name, int64_t *index);
/** Shape of tensor i: rows (output features) and cols (input features); a vector has rows 1.
 *  Either pointer may be NULL. */
QNPU_API qnpu_status qnpu_model_tensor_shape(const qnpu_model *m, int64_t i, int64_t *rows,
                                             int64_t *cols);
/** Copy tensor i as row-major float32 into dst (capacity `cap` floats, at least rows*cols).
 *  @return QNPU_OK, QNPU_ERR_INVALID_ARG or QNPU_ERR_BUFFER_TOO_SMALL. */
QNPU_API qnpu_status qnpu_model_tensor_read(const qnpu_model *m, int64_t i, float *dst, size_t cap);
/** Bytes of memory the model holds: owned buffers plus mapped file bytes. */
QNPU_API qnpu_status qnpu_model_memory_usage(const qnpu_model *m, size_t *owned, size_t *mapped);

/* ======================================================================================== */
/* Tokenizer — llama2.c tokenizer.bin, the SPM vocabulary embedded in GGUF, or a Hugging    */
/* Face tokenizer.json with byte-level BPE (GPT-2, Llama-3, Qwen2; docs/formats.md).         */
/* SPM encoding: optional BOS, a dummy-prefix " " piece for non-empty text, one piece per    */
/* UTF-8 code point (byte fallback <0xXX> when absent), then repeated merges of the adjacent */
/* pair whose concatenation has the highest score (leftmost on ties), in O(n log n).         */
/* Byte-level BPE: added (special) tokens matched literally, NFC if the file asks, the       */
/* pre-tokenizer regexes (PCRE2), then per piece the merge of lowest rank first.             */
/* ======================================================================================== */

/** Load a tokenizer file. A Hugging Face tokenizer.json (a name ending in ".json", or content
 *  starting with '{') is read as byte-level BPE; BOS/EOS then come from config.json
 *  (bos_token_id, eos_token_id) or tokenizer_config.json (bos_token, eos_token) beside it, and
 *  are -1 when neither names one. Anything else is a llama2.c tokenizer file (int32
 *  max_token_length, then per token float score, int32 len, len bytes). `vocab_size` is the
 *  number of llama2.c records (0 = read to end of file); for tokenizer.json, when > 0, the
 *  largest id must be below it and the tokenizer gets vocab_size ids (the model's padding ids
 *  decode to nothing). @return QNPU_ERR_FORMAT (malformed; the message names the file
 *  and the JSON field), QNPU_ERR_UNSUPPORTED (a tokenizer.json feature that is not implemented:
 *  a model other than BPE, a normalizer other than NFC, a pre-tokenizer other than Split
 *  (Isolated) and ByteLevel, a decoder other than ByteLevel; names the field), QNPU_ERR_IO. */
QNPU_API qnpu_status qnpu_tokenizer_load(const char *path, int64_t vocab_size, qnpu_tokenizer **out);
/** The tokenizer that goes with a model: the one embedded in a GGUF file, tokenizer.bin or
 *  tok512.bin beside a llama2.c checkpoint, or tokenizer.json in a Hugging Face checkpoint
 *  directory. The new handle is independent of the model.
 *  @return QNPU_ERR_UNSUPPORTED if none is found (the message says where it looked). */
QNPU_API qnpu_status qnpu_tokenizer_from_model(const qnpu_model *m, qnpu_tokenizer **out);
QNPU_API void qnpu_tokenizer_free(qnpu_tokenizer *t);
QNPU_API int64_t qnpu_tokenizer_vocab_size(const qnpu_tokenizer *t);
/** BOS / EOS ids; -1 for a NULL tokenizer or a tokenizer.json that names none. */
QNPU_API int32_t qnpu_tokenizer_bos(const qnpu_tokenizer *t);
QNPU_API int32_t qnpu_tokenizer_eos(const qnpu_tokenizer *t);

/** Encode UTF-8 text (`len` bytes; embedded NUL bytes are text too). With add_bos, the BOS id
 *  comes first (nothing when the tokenizer has none). Writes at most `cap` ids; `*n_out`
 *  receives the number produced (also when the buffer is too small, which returns
 *  QNPU_ERR_BUFFER_TOO_SMALL; len + 2 ids always suffice, 3 * len + 2 for a tokenizer.json
 *  with the NFC normalizer). Byte-level BPE encodes bytes that are not valid UTF-8 one by one.
 *  Thread-safety: safe concurrently on one tokenizer. */
QNPU_API qnpu_status qnpu_tokenizer_encode(const qnpu_tokenizer *t, const char *text, size_t len,
                                           int add_bos, int32_t *ids, size_t cap, size_t *n_out);
/** Decode one token given the previous one: the piece's bytes, a byte piece <0xXX> as its byte,
 *  and the leading space dropped right after BOS (SPM; a byte-level BPE token decodes to its
 *  raw bytes, an added token to its content, whatever `prev`). Writes at most `cap` bytes including a
 *  terminating NUL; `*n_out` gets the byte count without it (also on BUFFER_TOO_SMALL). @return QNPU_ERR_INVALID_ARG for an id out of range,
 *  QNPU_ERR_BUFFER_TOO_SMALL. */
QNPU_API qnpu_status qnpu_tokenizer_decode(const qnpu_tokenizer *t, int32_t prev, int32_t id,
                                           char *buf, size_t cap, size_t *n_out);
/** The raw piece of token `id` (owned by the tokenizer), or NULL if out of range. For a
 *  tokenizer.json: the token's bytes (byte-level alphabet undone), "" for an unused id. */
QNPU_API const char *qnpu_tokenizer_piece(const qnpu_tokenizer *t, int32_t id);

/* ======================================================================================== */
/* Float session — the float32 reference engine: prefill of many positions at once through  */
/* BLIS sgemm, incremental decode with a KV cache, GQA, both RoPE orders.                   */
/* ======================================================================================== */

/** Create a float session over `m` (which must outlive it). Options used: num_threads
 *  (0 = all cores), eval.seq_len (default window for perplexity), engine.ctx_size (positions
 *  the session can hold; 0 = the model's context length; larger values run past the trained
 *  context, as llama.cpp's -c does). The KV cache grows on demand up to that size. */
QNPU_API qnpu_status qnpu_float_session_create(const qnpu_model *m, const qnpu_options *opts,
                                               qnpu_float_session **out);
QNPU_API void qnpu_float_session_free(qnpu_float_session *s);
/** Forget all positions (the KV cache is reused). */
QNPU_API void qnpu_float_session_reset(qnpu_float_session *s);
/** @return the number of positions held in the KV cache. */
QNPU_API int64_t qnpu_float_session_pos(const qnpu_float_session *s);
/** Install a progress callback (NULL removes it); stages "eval". */
QNPU_API void qnpu_float_session_set_progress(qnpu_float_session *s, qnpu_progress_fn fn, void *user);

/** Run `n` tokens at the next positions (prefill when n > 1, decode when n == 1).
 *  Logits go to `logits` (may be NULL): with all_logits, n×vocab floats for every position
 *  (cap >= n*vocab), otherwise vocab floats for the last one.
 *  @return QNPU_ERR_INVALID_ARG (a token id out of range, names it), QNPU_ERR_STATE (the context
 *  would exceed the session's size, engine.ctx_size), QNPU_ERR_BUFFER_TOO_SMALL. */
QNPU_API qnpu_status qnpu_float_session_eval(qnpu_float_session *s, const int32_t *tokens, size_t n,
                                             int all_logits, float *logits, size_t cap);

/** Window perplexity of a token stream (docs/perplexity.md): cut `ids` into windows of `ctx`
 *  tokens (a final window of at least 2 counts), score every token but each window's first.
 *  The session is reset. @return QNPU_ERR_INVALID_ARG for fewer than 2 tokens, ids out of
 *  range, ctx < 2 or above the session's size; QNPU_ERR_CANCELLED. */
QNPU_API qnpu_status qnpu_float_session_perplexity_ids(qnpu_float_session *s, const int32_t *ids,
                                                       size_t n, int64_t ctx, double *ppl,
                                                       int64_t *scored);
/** The project's perplexity protocol on text: split on blank lines into paragraphs, strip
 *  surrounding newlines, skip empty ones, each becomes [BOS] + encode(paragraph); concatenate;
 *  then as qnpu_float_session_perplexity_ids. @return QNPU_ERR_INVALID_ARG for empty text. */
QNPU_API qnpu_status qnpu_float_session_perplexity(qnpu_float_session *s, const qnpu_tokenizer *t,
                                                   const char *text, size_t len, int64_t ctx,
                                                   double *ppl, int64_t *scored);

/** Tokenize text by the perplexity protocol into a new array (free it with qnpu_free).
 *  Useful to feed other engines the same stream. */
QNPU_API qnpu_status qnpu_tokenize_paragraphs(const qnpu_tokenizer *t, const char *text, size_t len,
                                              int32_t **ids, size_t *n);
/** Free memory returned by the library (qnpu_tokenize_paragraphs); NULL is accepted. */
QNPU_API void qnpu_free(void *p);

/* ======================================================================================== */
/* Rotator — METHOD.md §4: untie the embedding and lm_head, fuse every RMSNorm weight into the  */
/* linears that read it, put q/k rows in the rotate-half RoPE order, and fuse the rotations    */
/* R1 (rotate.r1), R2 per layer (rotate.r2) and R4 (rotate.r4, online before down_proj) into a */
/* new float model. With every rotation `identity`, only the pre-processing is done.           */
/* ======================================================================================== */

/** Create a rotator over `m` (which must outlive it). Options used: rotate.*, num_threads.
 *  Since: 0.1 */
QNPU_API qnpu_status qnpu_rotator_create(const qnpu_model *m, const qnpu_options *opts,
                                         qnpu_rotator **out);
QNPU_API void qnpu_rotator_free(qnpu_rotator *r);
/** Build the rotated float model: a new, independent qnpu_model (free it with qnpu_model_free)
 *  whose float outputs equal the source's up to rounding. Its tokenizer is found as the
 *  source's was (beside a llama2.c checkpoint). @return QNPU_ERR_STATE if `m` is already
 *  rotated; QNPU_ERR_UNSUPPORTED for an order with no Hadamard construction when
 *  rotate.hadamard_fallback = error; QNPU_ERR_NUMERIC (a NaN or Inf source weight, possible when
 *  the model was loaded with model.check_finite = false: the message names the tensor and the
 *  element; the calibrator and the optimizer, which rotate a plain model, report it the same
 *  way); QNPU_ERR_NO_MEMORY. */
QNPU_API qnpu_status qnpu_rotator_run(qnpu_rotator *r, qnpu_model **rotated);

/* ======================================================================================== */
/* Calibrator — runs calibration text through the rotated, fused model's simulated NPU graph  */
/* (METHOD.md §3), quantizing while it observes (§8.2 step 4), and fixes every scale and zero  */
/* point: observers per tensor class (observer.*), static per-channel weights (quant.*).       */
/* ======================================================================================== */

/** Create a calibrator. `m` may be a rotated model (qnpu_rotator_run) or a plain one, which is
 *  then rotated with the same options. `t` tokenizes the calibration text (NULL: only
 *  qnpu_calibrator_run_ids works, and the model carries no tokenizer). Both must outlive
 *  the calibrator. Options: calib.* (blocks of calib.seq_len tokens, calib.num_samples blocks
 *  from calib.first_block), quant.*, observer.*, rotate.*, num_threads. Since: 0.1 */
QNPU_API qnpu_status qnpu_calibrator_create(const qnpu_model *m, const qnpu_tokenizer *t,
                                            const qnpu_options *opts, qnpu_calibrator **out);
QNPU_API void qnpu_calibrator_free(qnpu_calibrator *c);
/** Install a progress callback (stage "calibrate", one unit per block; NULL removes it). */
QNPU_API void qnpu_calibrator_set_progress(qnpu_calibrator *c, qnpu_progress_fn fn, void *user);
/** Calibrate on `text` and build the quantized model (free it with qnpu_qmodel_free). The text is
 *  split into stories on lines holding `<|endoftext|>` (or, without such lines, into paragraphs
 *  on blank lines); each becomes [BOS] + encode(story); the stream is cut into blocks.
 *  @return QNPU_ERR_INVALID_ARG if the text gives too few blocks; QNPU_ERR_NUMERIC for NaN/Inf
 *  activations (names the point); QNPU_ERR_CANCELLED; QNPU_ERR_INVALID_ARG without a tokenizer. */
QNPU_API qnpu_status qnpu_calibrator_run(qnpu_calibrator *c, const char *text, size_t len,
                                         qnpu_qmodel **out);
/** Calibrate on a token stream instead of text: blocks are cut from `ids` as they are (no BOS is
 *  added). With a NULL tokenizer the quantized model carries none. @return as qnpu_calibrator_run;
 *  QNPU_ERR_INVALID_ARG for an id outside the vocabulary (names its position). Since: 0.1 */
QNPU_API qnpu_status qnpu_calibrator_run_ids(qnpu_calibrator *c, const int32_t *ids, size_t n,
                                             qnpu_qmodel **out);

/* ======================================================================================== */
/* Optimizer — the Quant.npu two-stage pipeline (METHOD.md §8): stage 1 learns the rotations   */
/* R1 and R2 (Cayley SGD) with the rotated tensors' scales and zero points on end-to-end       */
/* cross-entropy under fake quantization; stage 2 fuses the learned rotations, keeps the       */
/* learned parameters and min/max-calibrates every other point, like the calibrator.           */
/* ======================================================================================== */

/** Create an optimizer. `m` is a plain float model (it is prepared by the rotator with
 *  rotate.r1 = rotate.r2 = identity and the options' rotate.r4: norms fused, R1 / R2 not fused,
 *  a fixed online R4 fused into its layers' down weights) or one already prepared that way. `t` tokenizes the training text (NULL: only
 *  qnpu_optimizer_run_ids works, and the model carries no tokenizer). Both must outlive the
 *  optimizer. Options (docs/learning.md):
 *  - calib.*: the text is cut into blocks of calib.seq_len tokens; calib.num_samples of them
 *    from calib.first_block initialize stage 1 and calibrate stage 2;
 *  - optim.*: optim.steps steps of optim.batch blocks, taken from all the blocks in file order
 *    and cycling (a seeded permutation per pass with optim.shuffle), in micro-batches of
 *    optim.micro_batch sequences run side by side on num_threads threads (the result does not
 *    depend on the thread count); optim.weight_round = gptq rounds the fused weights by GPTQ
 *    (damping optim.gptq_damp) with the learned scales instead of to nearest; optim.loss =
 *    block_mse trains layer by layer on each layer's output MSE against the float layer (its R2
 *    and qparams; R1 fixed; optim.steps split over the layers; qnpu_optimizer_last_loss is that
 *    MSE); optim.naive_joint is the ablation without the rotated/unrotated split;
 *  - init.*, quant.*, observer.*, rotate.r1 / rotate.r2 / rotate.seed (the starting rotations);
 *    rotate.r4 / rotate.r4_layers (online R4, fixed, trained through; only with mixed.mode none
 *    or act_4to8);
 *  - mixed.*: mixed precision before stage 1 (see qnpu_optimizer_report_json); mixed.mode =
 *    down_r4 gives the selected layers an online R4 and a 4-bit down input.
 *  @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL `m` or `out`);
 *  QNPU_ERR_NO_MEMORY. Since: 0.1 */
QNPU_API qnpu_status qnpu_optimizer_create(const qnpu_model *m, const qnpu_tokenizer *t,
                                           const qnpu_options *opts, qnpu_optimizer **out);
/** Free an optimizer; NULL is accepted. Since: 0.1 */
QNPU_API void qnpu_optimizer_free(qnpu_optimizer *o);
/** Install a progress callback (stage "train", one unit per optimizer step; NULL removes it).
 *  A nonzero return cancels the run. Since: 0.1 */
QNPU_API void qnpu_optimizer_set_progress(qnpu_optimizer *o, qnpu_progress_fn fn, void *user);
/** @return the loss of the last completed stage-1 step of the current (or most recent) run: the
 *  mean next-token cross-entropy, in nats, of the step's optim.batch blocks under fake
 *  quantization, measured before the step's update. The "train" progress callback runs after each
 *  step, so it may call this to show the loss of step `done`. NaN for NULL, before the first step
 *  of a run, or when the run trains no step (optim.steps = 0). Since: 0.1 */
QNPU_API double qnpu_optimizer_last_loss(const qnpu_optimizer *o);
/** Run both stages on `text` and build the quantized model (free it with qnpu_qmodel_free). The
 *  text is split into stories and blocks as by qnpu_calibrator_run. On an error *out is NULL.
 *  @return QNPU_ERR_INVALID_ARG (NULL arguments, no tokenizer, too few blocks, rotate.r4 not off
 *  with mixed.mode down_8to16 or down_r4); QNPU_ERR_UNSUPPORTED (mixed.mode = down_r4 selecting
 *  layers of a model that is prepared already); QNPU_ERR_NUMERIC (a NaN/Inf gradient or
 *  activation); QNPU_ERR_CANCELLED; QNPU_ERR_NO_MEMORY. Since: 0.1 */
QNPU_API qnpu_status qnpu_optimizer_run(qnpu_optimizer *o, const char *text, size_t len,
                                        qnpu_qmodel **out);
/** Run both stages on a token stream instead of text: blocks are cut from `ids` as they are (no
 *  BOS is added). With a NULL tokenizer the quantized model carries none. @return as
 *  qnpu_optimizer_run; QNPU_ERR_INVALID_ARG for an id outside the vocabulary (names its
 *  position). Since: 0.1 */
QNPU_API qnpu_status qnpu_optimizer_run_ids(qnpu_optimizer *o, const int32_t *ids, size_t n,
                                            qnpu_qmodel **out);
/** The mixed-precision report of the last successful run (METHOD.md §9: mixed.mode, mixed.p and
 *  mixed.num_samples select, before stage 1, which linear inputs change bits by their relative
 *  quantization error on the held-out blocks after the calibration blocks), as one JSON object:
 *  "changed" (its first member: how many of the n_layers·4 linear-input points qkv.in, o.in,
 *  gateup.in, down.in end at other bits than quant.* give them), "mode", "p", "measured",
 *  "held_out_blocks", "candidates", "threshold_index", "threshold", "points" (counts and fractions
 *  at 4, 8 and 16 bits), "selected" (each point with its error r and bits from/to), "sensitivity"
 *  (every measured point, r descending) and "per_token" (the decoder linears' cost per token before
 *  and after the selection: weight bytes and integer MACs, which activation bits do not change, the
 *  activation bytes the linears read, and the MACs split by operand width, e.g. "A4xW4",
 *  "A8xW4", "A16xW4"). Writes at most `cap` bytes including the terminating NUL; `*needed` (may
 *  be NULL) receives the size the report needs including the NUL, also on
 *  QNPU_ERR_BUFFER_TOO_SMALL (buf may be NULL with cap 0 to ask for it). @return QNPU_OK;
 *  QNPU_ERR_INVALID_ARG (NULL `o`, NULL buf with cap > 0); QNPU_ERR_STATE (no run has completed);
 *  QNPU_ERR_BUFFER_TOO_SMALL; QNPU_ERR_NO_MEMORY. Since: 0.1 */
QNPU_API qnpu_status qnpu_optimizer_report_json(const qnpu_optimizer *o, char *buf, size_t cap,
                                                size_t *needed);

/* ======================================================================================== */
/* Quantized model — every tensor of the deployed graph with its bits, scale and zero point. */
/* Quantization points are named "layer{N}.{point}" (points as in METHOD.md §3.1: qkv.in,    */
/* q.out, k.cache, softmax.out, down.in, ...), weights "layer{N}.q.w" ... "lm_head.w", and    */
/* the model-wide "rope.cos", "rope.sin", "lm_head.in", "logits".                            */
/* ======================================================================================== */

QNPU_API void qnpu_qmodel_free(qnpu_qmodel *q);
/** Save a quantized model as a .qnpu file (docs/formats.md: little-endian, QNPU_FORMAT_VERSION,
 *  a CRC-32 per section, data aligned to 64 bytes for mmap). The bytes depend only on the model
 *  and the library version. The write is atomic: the file is written to `path`.tmp.XXXXXX in the
 *  same directory, fsync'ed and renamed over `path`; on any failure the temporary file is removed
 *  and a previous file at `path` is left untouched. A new file gets mode 0644, a replaced one
 *  keeps its mode. @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL, or a model with impossible
 *  values: the message names the tensor); QNPU_ERR_IO (create, write, fsync, close or rename
 *  failed, e.g. ENOSPC: the message names the path and the error); QNPU_ERR_NO_MEMORY.
 *  Thread-safety: reads `q` only; concurrent saves of one model are safe. Since: 0.1 */
QNPU_API qnpu_status qnpu_qmodel_save(const qnpu_qmodel *q, const char *path);
/** Load a .qnpu file written by qnpu_qmodel_save into a new quantized model (free it with
 *  qnpu_qmodel_free); it owns all its memory and is independent of the file. Options used:
 *  model.mmap (map the file rather than read it while loading). Every byte is checked.
 *  @return QNPU_OK; QNPU_ERR_FORMAT (bad magic, an inconsistent section table, a checksum
 *  mismatch, an impossible value: bits, scales, shapes, dimensions — the message names the
 *  section or tensor); QNPU_ERR_UNSUPPORTED (a newer format version); QNPU_ERR_IO (cannot open,
 *  or truncated: "truncated: section 'X' needs bytes a..b, the file has n");
 *  QNPU_ERR_NO_MEMORY; QNPU_ERR_INVALID_ARG (NULL). Since: 0.1 */
QNPU_API qnpu_status qnpu_qmodel_load(const char *path, const qnpu_options *opts, qnpu_qmodel **out);
/** Number of quantization points: the activation points in graph order, then the weights. */
QNPU_API int64_t qnpu_qmodel_qp_count(const qnpu_qmodel *q);
/** Describe point i: name (owned by q), bits (0 = not quantized), sym (1 signed symmetric),
 *  scale and zero point (per-tensor; for weights, the scale of row 0 and zero 0). Any out
 *  pointer may be NULL. @return QNPU_ERR_INVALID_ARG for i out of range. */
QNPU_API qnpu_status qnpu_qmodel_qp_info(const qnpu_qmodel *q, int64_t i, const char **name, int *bits,
                                         int *sym, double *scale, int32_t *zero);
/** The tokenizer stored in the quantized model (an independent handle): the SentencePiece
 *  vocabulary, or the whole byte-level BPE of a tokenizer.json (merges, added tokens,
 *  pre-tokenizer patterns), with the model's BOS/EOS.
 *  @return QNPU_ERR_UNSUPPORTED if it carries none. */
QNPU_API qnpu_status qnpu_tokenizer_from_qmodel(const qnpu_qmodel *q, qnpu_tokenizer **out);
/** Dimensions, as qnpu_model_get_dim. */
QNPU_API qnpu_status qnpu_qmodel_get_dim(const qnpu_qmodel *q, qnpu_model_dim which, int64_t *out);
/** Window perplexity (docs/perplexity.md) of the simulated NPU graph on a token stream.
 *  Options: num_threads. */
QNPU_API qnpu_status qnpu_qmodel_perplexity_ids(const qnpu_qmodel *q, const qnpu_options *opts,
                                                const int32_t *ids, size_t n, int64_t ctx,
                                                double *ppl, int64_t *scored);

/* ======================================================================================== */
/* Exporter — one quantized model written in the deployment formats (docs/export.md): the    */
/* library's .qnpu, the QNN/AIMET encodings JSON, an ONNX QDQ graph (ONNX Runtime runs it    */
/* as is) and the float ONNX graph that goes with the encodings. Every format takes its       */
/* scales and zero points from the model's one record per point; names are the point names.  */
/* ======================================================================================== */

typedef enum qnpu_export_format {
    QNPU_EXPORT_QNPU = 0,       /* the .qnpu file, as qnpu_qmodel_save                             */
    QNPU_EXPORT_ENCODINGS = 1,  /* QNN/AIMET encodings JSON (export.encodings_version)             */
    QNPU_EXPORT_ONNX_QDQ = 2,   /* ONNX with a QuantizeLinear/DequantizeLinear pair per point      */
    QNPU_EXPORT_ONNX_FLOAT = 3  /* float ONNX (dequantized weights, same tensor names), opset 17   */
} qnpu_export_format;

/** Create an exporter over `q`, which must outlive it. The options are copied (NULL = defaults);
 *  used: export.encodings_version, export.onnx_flavor (standard: ai.onnx opset 21, IR 10;
 *  compat: opset 17 with the com.microsoft Q/DQ for 16- and 4-bit types, IR 8), export.seq_len
 *  (the token count T of the ONNX graphs), export.past_len (P, past positions) and
 *  export.qnn.linear_as (float graph: conv1x1 or gemm). The ONNX graphs have static shapes:
 *  input "input_ids" int64 [1, T] at positions P .. P+T-1 -> output "logits" float
 *  [1, T, vocab], plus "layerN.k.cache" / "layerN.v.cache" [1, T, kv_heads, head_dim] (the new
 *  tokens' K and V as cached); with P > 0 also inputs "layerN.k.past" / "layerN.v.past"
 *  [1, P, kv_heads, head_dim], the cache of the earlier positions (the concatenated k/v.cache
 *  outputs of the graphs that ran them). P = 0 is a prefill from an empty cache.
 *  @return QNPU_ERR_INVALID_ARG (NULL), QNPU_ERR_NO_MEMORY. Since: 0.1 */
QNPU_API qnpu_status qnpu_exporter_create(const qnpu_qmodel *q, const qnpu_options *opts,
                                          qnpu_exporter **out);
QNPU_API void qnpu_exporter_free(qnpu_exporter *e);
/** Write the model in format `fmt` to `path`. Every format is written atomically as
 *  qnpu_qmodel_save writes (a temporary file beside `path`, fsync, rename; on failure nothing is
 *  left and a previous file at `path` is untouched). The bytes depend only on the model, the
 *  options and the library version. The QDQ graph computes what qnpu_qmodel_perplexity_ids
 *  evaluates (the simulated NPU graph) when run without graph optimizations.
 *  @return QNPU_OK; QNPU_ERR_INVALID_ARG (NULL, an unknown format); QNPU_ERR_UNSUPPORTED (an
 *  activation point whose bit-width ONNX Q/DQ cannot express (4, 8 and 16 can), or an ONNX model
 *  over the 2 GB protobuf limit); QNPU_ERR_IO (names the path and the error); QNPU_ERR_NO_MEMORY.
 *  Thread-safety: reads the model only; one exporter may be used by one thread at a time.
 *  Since: 0.1 */
QNPU_API qnpu_status qnpu_exporter_write(qnpu_exporter *e, qnpu_export_format fmt, const char *path);

/* ======================================================================================== */
/* Report — the quantization error of every point against the float model: per point, its  */
/* SQNR and its share of the output error; totals; an SVG chart and a JSON file.             */
/* ======================================================================================== */

/** Measure the quantization error of `q` against `m`, the float model it was made from, on a
 *  token stream: every full window of `ctx` tokens of `ids` (ctx <= 0: eval.seq_len; a partial
 *  tail is ignored), each run from an empty context on its first ctx - 1 tokens as in the
 *  perplexity protocol (docs/perplexity.md). Keep the stream short: the report runs one forward
 *  per window for every quantized point.
 *  `m` may be rotated (qnpu_rotator_run) or plain; a plain model is rotated with `opts`, which
 *  must then carry the rotate.* options used to quantize (as the calibrator does). Options:
 *  rotate.*, eval.seq_len, num_threads. All runs use the simulated NPU graph on `m`:
 *    - reference: float weights, every point off; fully quantized: the integer weights and
 *      every point's record (what qnpu_qmodel_perplexity_ids evaluates);
 *    - per point (in qnpu_qmodel_qp_info order: activation points, then weights): SQNR in dB,
 *      10 log10(sum x^2 / sum (x_hat - x)^2), for an activation point measured in the fully
 *      quantized graph over the values entering it (x) and leaving its fake-quant (x_hat), for
 *      a weight over the tensor (float vs dequantized); +Inf when the error is zero;
 *    - mse_only: the mean squared logit difference from the reference when only that point is
 *      quantized; share = mse_only / the sum of mse_only over points (the sum of the shares is
 *      1, or every share is 0 if no point changes the logits). Interactions between points are
 *      not attributed: the sum of mse_only is not the fully quantized logit MSE;
 *    - points at 0 bits have NaN SQNR and 0 mse_only and share.
 *  Free the report with qnpu_report_free; it is independent of m, q and ids.
 *  @return QNPU_ERR_INVALID_ARG (NULL, ctx outside [2, 65536], fewer than ctx tokens, an id out
 *  of range; `q` not made from `m` with these rotations: the message says what differs);
 *  QNPU_ERR_NUMERIC (NaN or Inf logits); QNPU_ERR_NO_MEMORY; a rotator error.
 *  Thread-safety: reads `m` and `q` only. Since: 0.1 */
QNPU_API qnpu_status qnpu_report_create(const qnpu_model *m, const qnpu_qmodel *q, const qnpu_options *opts,
                                        const int32_t *ids, size_t n, int64_t ctx, qnpu_report **out);
QNPU_API void qnpu_report_free(qnpu_report *r);
/** @return the number of points (qnpu_qmodel_qp_count of the model reported on); 0 for NULL. */
QNPU_API int64_t qnpu_report_count(const qnpu_report *r);
/** Point i: name (owned by r), bits, SQNR in dB, mse_only and share, as in qnpu_report_create.
 *  Any out pointer may be NULL. @return QNPU_ERR_INVALID_ARG for i out of range. */
QNPU_API qnpu_status qnpu_report_point(const qnpu_report *r, int64_t i, const char **name, int *bits,
                                       double *sqnr_db, double *mse_only, double *share);
/** Totals over the windows: perplexity of the reference (float) and of the fully quantized
 *  graph, and the mean squared logit difference between them. Any out pointer may be NULL. */
QNPU_API qnpu_status qnpu_report_totals(const qnpu_report *r, double *ppl_float, double *ppl_quant,
                                        double *logit_mse);
/** Write an SVG 1.1 chart (standalone, UTF-8): a horizontal bar of share per point, the 40
 *  largest in descending order, each with its share, SQNR and bits; weights and activation points
 *  in two colors; the totals in the title lines. Written atomically as qnpu_qmodel_save writes
 *  (a temporary file beside `path`, fsync, rename; nothing is left on failure).
 *  @return QNPU_ERR_INVALID_ARG (NULL); QNPU_ERR_IO (names the path and the error). */
QNPU_API qnpu_status qnpu_report_write_svg(const qnpu_report *r, const char *path);
/** Write the report as one JSON object, atomically as qnpu_report_write_svg: "ctx", "windows",
 *  "tokens_scored", "ppl_float", "ppl_quant", "logit_mse", and "points", an array in point
 *  order of {"name", "kind" ("activation" or "weight"), "bits", "sqnr_db", "mse_only", "share"};
 *  NaN and infinite values are null. `path` is a file name ("-" is not stdout).
 *  @return QNPU_ERR_INVALID_ARG (NULL); QNPU_ERR_IO. */
QNPU_API qnpu_status qnpu_report_write_json(const qnpu_report *r, const char *path);

/* ======================================================================================== */
/* Session — the integer-only engine: runs a quantized model exactly as the NPU graph of      */
/* METHOD.md §3 would, with integer codes end to end (docs/kernels.md): int4/int8 weights,    */
/* fixed-point requantization, integer RMSNorm, RoPE, softmax and SiLU, a symmetric int8 KV   */
/* cache. Only the final logits are dequantized to float.                                     */
/* ======================================================================================== */

/** Create a session over `q`, which must outlive it. Any number of sessions (on any threads)
 *  may share one quantized model: the integer program derived from it (packed weights,
 *  multipliers, tables) is built once, on the first session, and kept in `q`; each session owns
 *  its KV cache and workspace. Options used: num_threads (kernel threads of this session,
 *  0 = all cores), eval.seq_len, engine.ctx_size (positions the session holds, 0 = the model's
 *  context length; the int8 cache for all of them is allocated here), engine.kernels
 *  (auto | ref | avx2 | vnni: every choice gives bit-identical results; one the CPU lacks runs
 *  the reference).
 *  @return QNPU_ERR_UNSUPPORTED (a graph the engine cannot run: a K/V cache wider than 8 bits, a
 *  symmetric linear input, an inexact random-orthogonal R4 — the message names the point);
 *  QNPU_ERR_NO_MEMORY; QNPU_ERR_INVALID_ARG. Since: 0.1 */
QNPU_API qnpu_status qnpu_session_create(const qnpu_qmodel *q, const qnpu_options *opts,
                                         qnpu_session **out);
/** Load a .qnpu file (qnpu_qmodel_load) and create a session that owns it.
 *  @return the errors of qnpu_qmodel_load and qnpu_session_create. */
QNPU_API qnpu_status qnpu_session_open(const char *path, const qnpu_options *opts, qnpu_session **out);
QNPU_API void qnpu_session_free(qnpu_session *s);
/** The quantized model the session runs (owned by the caller, or by the session when opened
 *  from a path). */
QNPU_API const qnpu_qmodel *qnpu_session_qmodel(const qnpu_session *s);
/** Forget all positions. */
QNPU_API void qnpu_session_reset(qnpu_session *s);
/** @return the number of positions held in the KV cache. */
QNPU_API int64_t qnpu_session_pos(const qnpu_session *s);
/** Install a progress callback (NULL removes it); stage "eval" in perplexity runs. */
QNPU_API void qnpu_session_set_progress(qnpu_session *s, qnpu_progress_fn fn, void *user);
/** Run `n` tokens at the next positions, as qnpu_float_session_eval (prefill in chunks of up to
 *  512 positions, decode when n == 1). The logits are the dequantized codes of the `logits` QP:
 *  (q − z)·s. @return QNPU_ERR_INVALID_ARG (a token id out of range), QNPU_ERR_STATE (the
 *  context would exceed engine.ctx_size), QNPU_ERR_BUFFER_TOO_SMALL. */
QNPU_API qnpu_status qnpu_session_eval(qnpu_session *s, const int32_t *tokens, size_t n,
                                       int all_logits, float *logits, size_t cap);
/** Window perplexity (docs/perplexity.md) as qnpu_float_session_perplexity_ids; each window is
 *  one prefill from an empty cache. The session is reset. */
QNPU_API qnpu_status qnpu_session_perplexity_ids(qnpu_session *s, const int32_t *ids, size_t n,
                                                 int64_t ctx, double *ppl, int64_t *scored);

/* ======================================================================================== */
/* Compare — the integer engine against the simulated (float fake-quant) graph on the same    */
/* windows: per point, how many stored codes differ and by how much; perplexity and top-1     */
/* agreement of both. This is the check to run before a model ships.                          */
/* ======================================================================================== */

/** Run both graphs on every full window of `ctx` tokens of `ids` (ctx <= 0: eval.seq_len; at
 *  most `max_windows` windows, 0 = all) from an empty context. Options: as qnpu_session_create.
 *  @return QNPU_ERR_INVALID_ARG (fewer than ctx tokens, ids out of range), the errors of
 *  qnpu_session_create, QNPU_ERR_NO_MEMORY. */
QNPU_API qnpu_status qnpu_compare_run(const qnpu_qmodel *q, const qnpu_options *opts, const int32_t *ids,
                                      size_t n, int64_t ctx, int64_t max_windows, qnpu_compare **out);
QNPU_API void qnpu_compare_free(qnpu_compare *c);
/** @return the number of compared points: the stored tensors of the engine, in graph order
 *  (the RoPE intermediates q/k.rope_c, .rot, .rope_s are fused and not compared). */
QNPU_API int64_t qnpu_compare_count(const qnpu_compare *c);
/** Point i: name (owned by c, as in qnpu_qmodel_qp_info), codes compared, codes that differ,
 *  the largest absolute difference in codes. Any out pointer may be NULL. */
QNPU_API qnpu_status qnpu_compare_point(const qnpu_compare *c, int64_t i, const char **name,
                                        int64_t *codes, int64_t *mismatched, int64_t *max_diff);
/** Totals: perplexity of the simulated graph and of the engine on the compared windows, the
 *  share of scored positions whose arg-max logit agrees, and the scored positions. */
QNPU_API qnpu_status qnpu_compare_totals(const qnpu_compare *c, double *ppl_sim, double *ppl_int,
                                         double *top1_agreement, int64_t *scored);

#ifdef __cplusplus
}
#endif
#endif /* QUANTNPU_H */
