/* alloc_sweep.c — allocation-failure injection over the whole pipeline (issue 7, docs/reliability.md).
 *
 * A counting allocator is installed with qnpu_set_allocator. Each phase (recipe, load of each
 * format, tokenize, rotate, calibrate, .qnpu save and load, every exporter format, session, float
 * session, compare, report, optimize; PHASES below) first runs once without failure to count its
 * allocations; then, for N = 1, 2, ... it runs again with the N-th allocation failing,
 * until a run makes no N-th allocation. Every injected failure must
 *   - return QNPU_ERR_NO_MEMORY with a non-empty qnpu_last_error() (a failure the library absorbs
 *     — a best-effort step — must still give a correct result: the run is then checked as a
 *     successful one and counted as "absorbed"),
 *   - free everything: the allocator's live count is back to its value before the phase (and
 *     LeakSanitizer checks the process at exit),
 *   - leave no output file and no temporary file (saves and exports into an empty directory), or
 *     leave the previous file byte for byte (the save over an existing file).
 * Every N runs in the same process. By default an N whose allocation has the same call stack
 * (16 frames) as an earlier one is skipped, so each allocation site and call path fails once (a
 * loop over layers or graph nodes is not failed at every iteration); ALLOC_SWEEP_FULL=1 fails
 * every N. Build and run: `make check-alloc` (ASan + LSan + UBSan).
 *
 * Usage: alloc_sweep SHARED_DIR [PHASE...]    (no phase: all of them)
 *
 * Only the library's own allocations go through the hook: libyaml (recipes), BLIS (its packing
 * buffers), PCRE2's JIT and the C library (stdio, pthread_create) allocate elsewhere and are not
 * failed here. Everything runs with num_threads = 1 (session-pool: 2, whose workers allocate
 * nothing) so that the N-th allocation is the same call in every run (docs/reliability.md). */
#include <dirent.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "quantnpu.h"

/* ---- the counting allocator ---------------------------------------------------------------- */

static atomic_long n_alloc;  /* allocations in the current run */
static atomic_long n_live;   /* blocks allocated and not yet freed */
static atomic_long fail_at;  /* 0: never fail */
static atomic_int injected;  /* the run reached allocation fail_at */

/* The call stack of each allocation of the dry run, hashed (record = 1). By default an N whose
 * allocation has the stack of an earlier N is skipped: every distinct allocation site and call
 * path is failed once — the first time it occurs — rather than every iteration of a loop over
 * layers or graph nodes. ALLOC_SWEEP_FULL=1 fails every N. */
static int record;
static uint64_t *sigs;
static long n_sigs, cap_sigs;

static uint64_t stack_sig(void)
{
    void *fr[16];
    int n = backtrace(fr, 16);
    uint64_t h = 1469598103934665603u;
    for (int i = 2; i < n; i++) { /* skip stack_sig and t_alloc */
        h ^= (uint64_t)(uintptr_t)fr[i];
        h *= 1099511628211u;
    }
    return h;
}

/* ALLOC_SWEEP_TRACE=N prints the stack of the injected failure of allocation N (ASan's
 * symbolizer), to find the call site of a reported N; use it with one phase. */
void __sanitizer_print_stack_trace(void) __attribute__((weak));
static long trace;

static void *t_alloc(void *user, size_t size, size_t align)
{
    (void)user;
    long k = atomic_fetch_add(&n_alloc, 1) + 1;
    if (record) {
        if (n_sigs == cap_sigs) {
            cap_sigs = cap_sigs ? 2 * cap_sigs : 4096;
            sigs = realloc(sigs, (size_t)cap_sigs * sizeof *sigs);
            if (!sigs)
                abort();
        }
        sigs[n_sigs++] = stack_sig();
    }
    if (k == atomic_load(&fail_at)) {
        atomic_store(&injected, 1);
        if (trace == k && __sanitizer_print_stack_trace) {
            fprintf(stderr, "alloc_sweep: failing allocation %ld (%zu bytes):\n", k, size);
            __sanitizer_print_stack_trace();
        }
        return NULL;
    }
    size_t r = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, r);
    if (p)
        atomic_fetch_add(&n_live, 1);
    return p;
}

static void t_free(void *user, void *p)
{
    (void)user;
    if (p) {
        atomic_fetch_sub(&n_live, 1);
        free(p);
    }
}

/* ---- fixtures -------------------------------------------------------------------------------- */

typedef struct ctx {
    const char *shared;
    char dir[256];             /* a private temporary directory for the outputs */
    char bin[512], gguf[512], hf[512];
    char *text;                /* calibration / evaluation text (malloc) */
    size_t text_len;
    qnpu_model *m;
    qnpu_tokenizer *t;
    qnpu_options *calib_o, *optim_o, *eval_o, *export_o, *pool_o;
    qnpu_qmodel *q;            /* a calibrated model to save */
    qnpu_qmodel *sq;           /* a fresh copy of `saved` for each session run */
    qnpu_model *rot;           /* the rotated model (the calibrator's input) */
    char saved[512];           /* q saved here (for the load and session phases) */
    char out[512];             /* the save phase's output */
    unsigned char *prev;       /* the previous file at `out` in the replace phase */
    size_t prev_len;
    int32_t ids[64];
} ctx;

static int failures;

#define FAILF(...) do { fprintf(stderr, "alloc_sweep: " __VA_ARGS__); fputc('\n', stderr); failures++; } while (0)

static void die(const char *what)
{
    fprintf(stderr, "alloc_sweep: %s: %s\n", what, qnpu_last_error());
    exit(2);
}

static qnpu_options *opts(const char *const *kv)
{
    qnpu_options *o;
    if (qnpu_options_create(&o) != QNPU_OK || qnpu_options_set_int(o, QNPU_P_NUM_THREADS, 1) != QNPU_OK)
        die("options");
    for (; kv && kv[0]; kv += 2) {
        qnpu_param p;
        if (qnpu_param_from_name(kv[0], &p) != QNPU_OK || qnpu_options_set_str(o, p, kv[1]) != QNPU_OK)
            die(kv[0]);
    }
    return o;
}

/* Names in the output directory other than `keep` (NULL: none allowed). */
static int stray_files(const ctx *c, const char *keep)
{
    DIR *d = opendir(c->dir);
    if (!d)
        return 1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (keep && !strcmp(e->d_name, keep))
            continue;
        fprintf(stderr, "alloc_sweep: stray file %s/%s\n", c->dir, e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---- phases: each makes and frees its own handles; `ok` checks the outputs of a success ---- */

typedef struct phase {
    const char *name;
    qnpu_status (*run)(ctx *c);
    int (*after)(ctx *c, qnpu_status st);   /* output checks; 0 = fine */
    void (*reset)(ctx *c);                  /* before each run (allocations not counted) */
    void (*done)(ctx *c);                   /* after each run, before the leak check */
} phase;

static qnpu_status load_with_tok(const char *path)
{
    qnpu_model *m = NULL;
    qnpu_tokenizer *t = NULL;
    qnpu_status st = qnpu_model_load(path, NULL, &m);
    if (st == QNPU_OK)
        st = qnpu_tokenizer_from_model(m, &t);
    if (st == QNPU_OK) {
        int32_t ids[32];
        size_t n;
        st = qnpu_tokenizer_encode(t, "Once upon a time", 16, 1, ids, 32, &n);
    }
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
    return st;
}

static qnpu_status ph_load_bin(ctx *c) { return load_with_tok(c->bin); }
static qnpu_status ph_load_gguf(ctx *c) { return load_with_tok(c->gguf); }

static qnpu_status ph_load_hf(ctx *c)
{
    qnpu_model *m = NULL;
    qnpu_status st = qnpu_model_load(c->hf, NULL, &m);
    qnpu_model_free(m);
    return st;
}

static qnpu_status ph_recipe(ctx *c)
{
    qnpu_options *o = NULL;
    qnpu_status st = qnpu_options_create(&o);
    if (st == QNPU_OK)
        st = qnpu_options_load_recipe(o, "quantnpu-w4a8");
    qnpu_options *o2 = NULL;
    if (st == QNPU_OK)
        st = qnpu_options_clone(o, &o2);
    if (st == QNPU_OK)
        st = qnpu_options_set_str(o2, QNPU_P_CALIB_TEXT, "some/path.txt");
    qnpu_options_free(o2);
    qnpu_options_free(o);
    return st;
}

static qnpu_status ph_tokenize(ctx *c)
{
    int32_t *ids = NULL;
    size_t n = 0;
    qnpu_status st = qnpu_tokenize_paragraphs(c->t, c->text, c->text_len, &ids, &n);
    qnpu_free(ids);
    return st;
}

static qnpu_status ph_calibrate(ctx *c)
{
    qnpu_calibrator *k = NULL;
    qnpu_qmodel *q = NULL;
    qnpu_status st = qnpu_calibrator_create(c->rot, c->t, c->calib_o, &k);
    if (st == QNPU_OK)
        st = qnpu_calibrator_run(k, c->text, 400, &q);
    if (st == QNPU_OK && !q)
        st = QNPU_ERR_INTERNAL;
    qnpu_qmodel_free(q);
    qnpu_calibrator_free(k);
    return st;
}

static qnpu_status ph_optimize(ctx *c)
{
    qnpu_optimizer *o = NULL;
    qnpu_qmodel *q = NULL;
    qnpu_status st = qnpu_optimizer_create(c->m, c->t, c->optim_o, &o);
    if (st == QNPU_OK) {
        st = qnpu_optimizer_run(o, c->text, c->text_len, &q);
        if ((st == QNPU_OK) != (q != NULL))
            FAILF("optimize: status %d with *out %s", (int)st, q ? "set" : "NULL");
    }
    if (st == QNPU_OK) {
        size_t need = 0;
        qnpu_status r = qnpu_optimizer_report_json(o, NULL, 0, &need);
        if (r != QNPU_ERR_BUFFER_TOO_SMALL && r != QNPU_OK)
            st = r;
    }
    qnpu_qmodel_free(q);
    qnpu_optimizer_free(o);
    return st;
}

static void reset_new(ctx *c) { unlink(c->out); }

static qnpu_status ph_save(ctx *c) { return qnpu_qmodel_save(c->q, c->out); }

static int after_save_new(ctx *c, qnpu_status st)
{
    if (st != QNPU_OK)
        return stray_files(c, NULL);
    /* a success: the file is there and loads, nothing else is */
    qnpu_qmodel *q2 = NULL;
    long saved_fail = atomic_exchange(&fail_at, 0);
    qnpu_status l = qnpu_qmodel_load(c->out, NULL, &q2);
    atomic_store(&fail_at, saved_fail);
    qnpu_qmodel_free(q2);
    int bad = stray_files(c, "out.qnpu");
    if (l != QNPU_OK) {
        fprintf(stderr, "alloc_sweep: the saved file does not load: %s\n", qnpu_last_error());
        bad++;
    }
    unlink(c->out);
    return bad;
}

static void reset_replace(ctx *c)
{
    FILE *f = fopen(c->out, "wb");
    if (!f || fwrite(c->prev, 1, c->prev_len, f) != c->prev_len)
        die("cannot write the previous file");
    fclose(f);
}

static int after_save_replace(ctx *c, qnpu_status st)
{
    int bad = stray_files(c, "out.qnpu");
    size_t len = 0;
    unsigned char *now = slurp(c->out, &len);
    if (!now) {
        fprintf(stderr, "alloc_sweep: the output file is gone\n");
        return bad + 1;
    }
    int same = len == c->prev_len && memcmp(now, c->prev, len) == 0;
    free(now);
    if (st != QNPU_OK && !same) {
        fprintf(stderr, "alloc_sweep: a failed save changed the previous file\n");
        bad++;
    }
    if (st == QNPU_OK && same) {
        fprintf(stderr, "alloc_sweep: a successful save left the previous file\n");
        bad++;
    }
    unlink(c->out);
    return bad;
}

static qnpu_status ph_qmodel_load(ctx *c)
{
    qnpu_qmodel *q = NULL;
    qnpu_tokenizer *t = NULL;
    qnpu_status st = qnpu_qmodel_load(c->saved, NULL, &q);
    if (st == QNPU_OK)
        st = qnpu_tokenizer_from_qmodel(q, &t);
    qnpu_tokenizer_free(t);
    qnpu_qmodel_free(q);
    return st;
}

/* A fresh quantized model for every run, so that the integer program (cached in the model by the
 * first session) is built (and failed) in each; loading it is the qmodel-load phase. */
static void reset_session(ctx *c)
{
    if (qnpu_qmodel_load(c->saved, NULL, &c->sq) != QNPU_OK)
        die("qmodel load");
}

static void done_session(ctx *c)
{
    qnpu_qmodel_free(c->sq);
    c->sq = NULL;
}

static qnpu_status session_run(ctx *c, const qnpu_options *o)
{
    qnpu_session *s = NULL;
    float logits[512];
    qnpu_status st = qnpu_session_create(c->sq, o, &s);
    if (st == QNPU_OK)
        st = qnpu_session_eval(s, c->ids, 4, 0, logits, 512);
    if (st == QNPU_OK)
        st = qnpu_session_eval(s, c->ids + 4, 1, 0, logits, 512);
    double ppl;
    int64_t scored;
    if (st == QNPU_OK)
        st = qnpu_session_perplexity_ids(s, c->ids, 24, 8, &ppl, &scored);
    qnpu_session_free(s);
    return st;
}

static qnpu_status ph_session(ctx *c) { return session_run(c, c->eval_o); }
/* the same on a worker pool of 2 threads (its workers allocate nothing, so the N-th allocation is
 * still the same call in every run) */
static qnpu_status ph_session_pool(ctx *c) { return session_run(c, c->pool_o); }

static qnpu_status ph_float_session(ctx *c)
{
    qnpu_float_session *s = NULL;
    double ppl;
    int64_t scored;
    qnpu_status st = qnpu_float_session_create(c->m, c->eval_o, &s);
    if (st == QNPU_OK)
        st = qnpu_float_session_perplexity(s, c->t, c->text, c->text_len < 600 ? c->text_len : 600, 16, &ppl,
                                           &scored);
    qnpu_float_session_free(s);
    return st;
}

static qnpu_status ph_rotator(ctx *c)
{
    qnpu_rotator *r = NULL;
    qnpu_model *rot = NULL;
    qnpu_status st = qnpu_rotator_create(c->m, c->calib_o, &r);
    if (st == QNPU_OK)
        st = qnpu_rotator_run(r, &rot);
    qnpu_model_free(rot);
    qnpu_rotator_free(r);
    return st;
}

static qnpu_status ph_compare(ctx *c)
{
    qnpu_compare *k = NULL;
    qnpu_status st = qnpu_compare_run(c->sq, c->eval_o, c->ids, 16, 8, 1, &k);
    qnpu_compare_free(k);
    return st;
}

static qnpu_status ph_report(ctx *c)
{
    qnpu_report *r = NULL;
    qnpu_status st = qnpu_report_create(c->rot, c->q, c->calib_o, c->ids, 8, 8, &r);
    char path[600];
    snprintf(path, sizeof path, "%s/out.json", c->dir);
    if (st == QNPU_OK)
        st = qnpu_report_write_json(r, path);
    unlink(path);
    qnpu_report_free(r);
    return st;
}

/* The exporter (each format) into the empty output directory: on failure nothing is left. */
static qnpu_status export_fmt(ctx *c, qnpu_export_format fmt)
{
    qnpu_exporter *e = NULL;
    qnpu_status st = qnpu_exporter_create(c->q, c->export_o, &e);
    if (st == QNPU_OK)
        st = qnpu_exporter_write(e, fmt, c->out);
    qnpu_exporter_free(e);
    return st;
}

static qnpu_status ph_export_qnpu(ctx *c) { return export_fmt(c, QNPU_EXPORT_QNPU); }
static qnpu_status ph_export_enc(ctx *c) { return export_fmt(c, QNPU_EXPORT_ENCODINGS); }
static qnpu_status ph_export_qdq(ctx *c) { return export_fmt(c, QNPU_EXPORT_ONNX_QDQ); }
static qnpu_status ph_export_float(ctx *c) { return export_fmt(c, QNPU_EXPORT_ONNX_FLOAT); }

static int after_export(ctx *c, qnpu_status st)
{
    int bad = stray_files(c, st == QNPU_OK ? "out.qnpu" : NULL);
    if (st == QNPU_OK && access(c->out, R_OK) != 0) {
        fprintf(stderr, "alloc_sweep: a successful export left no file\n");
        bad++;
    }
    unlink(c->out);
    return bad;
}

/* ---- the sweep ---------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sweep(ctx *c, const phase *ph)
{
    double t0 = now_s();
    long base = atomic_load(&n_live);
    atomic_store(&fail_at, 0);
    if (ph->reset)
        ph->reset(c);
    atomic_store(&n_alloc, 0);
    n_sigs = 0;
    record = 1;
    double t1 = now_s();
    qnpu_status st = ph->run(c);
    double one = now_s() - t1;
    record = 0;
    long total = atomic_load(&n_alloc);
    if (st != QNPU_OK) {
        FAILF("%s: the run without failures returned %d: %s", ph->name, (int)st, qnpu_last_error());
        return;
    }
    if (ph->after && ph->after(c, st))
        FAILF("%s: the run without failures left bad outputs", ph->name);
    if (ph->done)
        ph->done(c);
    if (atomic_load(&n_live) != base)
        FAILF("%s: the run without failures leaks %ld blocks", ph->name, atomic_load(&n_live) - base);
    if (getenv("ALLOC_SWEEP_VERBOSE"))
        fprintf(stderr, "alloc_sweep: %s: %ld allocations, one run %.0f ms\n", ph->name, total, 1e3 * one);
    long absorbed = 0, n, runs = 0;
    int full = getenv("ALLOC_SWEEP_FULL") != NULL;
    for (n = 1;; n++) {
        if (!full && n <= n_sigs) {
            int seen = 0;
            for (long j = 0; j < n - 1 && !seen; j++)
                seen = sigs[j] == sigs[n - 1];
            if (seen)
                continue;
        }
        runs++;
        if (ph->reset)
            ph->reset(c);
        atomic_store(&injected, 0);
        atomic_store(&n_alloc, 0);
        atomic_store(&fail_at, n);
        st = ph->run(c);
        atomic_store(&fail_at, 0);
        int inj = atomic_load(&injected);
        if (!inj) {
            if (st != QNPU_OK)
                FAILF("%s: N=%ld: no failure injected but status %d: %s", ph->name, n, (int)st, qnpu_last_error());
            if (ph->after && ph->after(c, st))
                FAILF("%s: N=%ld: bad outputs", ph->name, n);
            if (ph->done)
                ph->done(c);
            break;
        }
        if (st == QNPU_OK) {
            absorbed++;
            fprintf(stderr, "alloc_sweep: %s: N=%ld: the failure was absorbed (status OK)\n", ph->name, n);
        } else if (st != QNPU_ERR_NO_MEMORY) {
            FAILF("%s: N=%ld: status %d (%s), expected QNPU_ERR_NO_MEMORY: %s", ph->name, n, (int)st,
                  qnpu_status_string(st), qnpu_last_error());
        } else if (!qnpu_last_error()[0]) {
            FAILF("%s: N=%ld: QNPU_ERR_NO_MEMORY without a message", ph->name, n);
        }
        if (ph->after && ph->after(c, st))
            FAILF("%s: N=%ld: bad outputs after status %d", ph->name, n, (int)st);
        if (ph->done)
            ph->done(c);
        long leak = atomic_load(&n_live) - base;
        if (leak) {
            FAILF("%s: N=%ld: %ld blocks not freed (status %d: %s)", ph->name, n, leak, (int)st, qnpu_last_error());
            atomic_fetch_sub(&n_live, leak); /* report each leak once */
        }
        if (failures > 50) {
            fprintf(stderr, "alloc_sweep: too many failures, stopping\n");
            exit(1);
        }
    }
    printf("%-17s %6ld allocations, %6ld runs, %ld absorbed, %.1f s (one run %.0f ms)\n", ph->name, total, runs,
           absorbed, now_s() - t0, 1e3 * one);
    fflush(stdout);
}

static const phase PHASES[] = {
    {"recipe", ph_recipe, NULL, NULL, NULL},
    {"load-llama2c", ph_load_bin, NULL, NULL, NULL},
    {"load-gguf", ph_load_gguf, NULL, NULL, NULL},
    {"load-hf", ph_load_hf, NULL, NULL, NULL},
    {"tokenize", ph_tokenize, NULL, NULL, NULL},
    {"rotate", ph_rotator, NULL, NULL, NULL},
    {"calibrate", ph_calibrate, NULL, NULL, NULL},
    {"save-new", ph_save, after_save_new, reset_new, NULL},
    {"save-replace", ph_save, after_save_replace, reset_replace, NULL},
    {"qmodel-load", ph_qmodel_load, NULL, NULL, NULL},
    {"export-qnpu", ph_export_qnpu, after_export, reset_new, NULL},
    {"export-encodings", ph_export_enc, after_export, reset_new, NULL},
    {"export-onnx-qdq", ph_export_qdq, after_export, reset_new, NULL},
    {"export-onnx-float", ph_export_float, after_export, reset_new, NULL},
    {"session", ph_session, NULL, reset_session, done_session},
    {"session-pool", ph_session_pool, NULL, reset_session, done_session},
    {"float-session", ph_float_session, NULL, NULL, NULL},
    {"compare", ph_compare, NULL, reset_session, done_session},
    {"report", ph_report, NULL, NULL, NULL},
    {"optimize", ph_optimize, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: alloc_sweep SHARED_DIR [PHASE...]\n");
        return 2;
    }
    trace = getenv("ALLOC_SWEEP_TRACE") ? atol(getenv("ALLOC_SWEEP_TRACE")) : 0;
    if (qnpu_set_allocator(t_alloc, t_free, NULL) != QNPU_OK)
        die("qnpu_set_allocator");
    ctx c = {.shared = argv[1]};
    snprintf(c.bin, sizeof c.bin, "%s/models/stories260K.bin", c.shared);
    snprintf(c.gguf, sizeof c.gguf, "%s/models/stories260K-f16.gguf", c.shared);
    snprintf(c.hf, sizeof c.hf, "%s/models/stories260K-hf", c.shared);
    const char *tmp = getenv("TMPDIR");
    snprintf(c.dir, sizeof c.dir, "%s/qnpu-alloc-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(c.dir))
        die("mkdtemp");
    snprintf(c.out, sizeof c.out, "%s/out.qnpu", c.dir);
    snprintf(c.saved, sizeof c.saved, "%s.saved.qnpu", c.dir); /* beside the directory */

    char path[600];
    snprintf(path, sizeof path, "%s/data/tinystories_train_head.txt", c.shared);
    size_t full;
    char *all = (char *)slurp(path, &full);
    if (!all)
        die(path);
    c.text_len = full < 3000 ? full : 3000;
    c.text = all;

    /* the fixtures, made with the counting allocator but never failing */
    if (qnpu_model_load(c.bin, NULL, &c.m) != QNPU_OK || qnpu_tokenizer_from_model(c.m, &c.t) != QNPU_OK)
        die("load");
    static const char *const CAL[] = {"calib.seq_len", "8", "calib.num_samples", "1", "calib.first_block", "0",
                                      "rotate.r1", "random_hadamard", "rotate.r2", "random_hadamard",
                                      "rotate.r4", "all", "quant.w_bits", "4", "quant.a_bits", "8", NULL};
    static const char *const OPT[] = {"optim.steps", "2", "optim.batch", "1", "optim.micro_batch", "1",
                                      "calib.seq_len", "8", "calib.num_samples", "1", "calib.first_block", "0",
                                      "mixed.num_samples", "1", NULL};
    static const char *const EV[] = {"engine.ctx_size", "32", "eval.seq_len", "16", NULL};
    c.calib_o = opts(CAL);
    c.optim_o = opts(OPT);
    c.eval_o = opts(EV);
    static const char *const EX[] = {"export.seq_len", "8", NULL};
    c.export_o = opts(EX);
    c.pool_o = opts(EV);
    if (qnpu_options_set_int(c.pool_o, QNPU_P_NUM_THREADS, 2) != QNPU_OK)
        die("options");
    {
        qnpu_rotator *r;
        if (qnpu_rotator_create(c.m, c.calib_o, &r) != QNPU_OK || qnpu_rotator_run(r, &c.rot) != QNPU_OK)
            die("rotate");
        qnpu_rotator_free(r);
        qnpu_calibrator *k;
        if (qnpu_calibrator_create(c.rot, c.t, c.calib_o, &k) != QNPU_OK ||
            qnpu_calibrator_run(k, c.text, c.text_len, &c.q) != QNPU_OK)
            die("calibrate");
        qnpu_calibrator_free(k);
    }
    if (qnpu_qmodel_save(c.q, c.saved) != QNPU_OK)
        die("save");
    size_t nid;
    if (qnpu_tokenizer_encode(c.t, c.text, 400, 1, c.ids, 64, &nid) != QNPU_OK && nid < 32)
        die("encode");
    c.prev = (unsigned char *)strdup("a previous file that a failed save must leave as it is\n");
    c.prev_len = strlen((char *)c.prev);

    double t0 = now_s();
    for (size_t i = 0; i < sizeof PHASES / sizeof PHASES[0]; i++) {
        int want = argc == 2;
        for (int a = 2; a < argc; a++)
            want |= !strcmp(argv[a], PHASES[i].name);
        if (want)
            sweep(&c, &PHASES[i]);
    }

    qnpu_qmodel_free(c.q);
    qnpu_model_free(c.rot);
    qnpu_options_free(c.calib_o);
    qnpu_options_free(c.optim_o);
    qnpu_options_free(c.eval_o);
    qnpu_options_free(c.export_o);
    qnpu_options_free(c.pool_o);
    qnpu_tokenizer_free(c.t);
    qnpu_model_free(c.m);
    if (atomic_load(&n_live) != 0)
        FAILF("%ld blocks still allocated after every handle is freed", atomic_load(&n_live));
    if (stray_files(&c, NULL))
        failures++;
    unlink(c.saved);
    rmdir(c.dir);
    free(all);
    free(c.prev);
    free(sigs);
    printf("alloc_sweep: %s (%.1f s)\n", failures ? "FAILED" : "all phases passed", now_s() - t0);
    return failures ? 1 : 0;
}
