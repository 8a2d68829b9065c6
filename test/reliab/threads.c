/* threads.c — concurrency (issue 7, docs/threading.md, docs/reliability.md).
 *
 * 1. Independent handles: N threads each load stories260K, calibrate it with a tiny recipe, save
 *    the quantized model to their own path and measure its perplexity with a session; every file
 *    must equal the one made first on the main thread byte for byte, every perplexity exactly.
 * 2. Shared read-only handles, as docs/threading.md allows:
 *    - one qnpu_model, one qnpu_tokenizer and one qnpu_options: per thread a calibrator (to its
 *      own file), a session and a float session (perplexity of text) and tokenizer encodes;
 *    - one qnpu_qmodel: per thread a session (the integer program is built once, by whichever
 *      session comes first, under a lock), qnpu_qmodel_save to its own path,
 *      qnpu_qmodel_perplexity_ids, qnpu_tokenizer_from_qmodel, qnpu_compare_run and an exporter
 *      writing the encodings JSON — started together;
 *    - sessions with num_threads = 2 (each its own worker pool) on the shared qmodel;
 *    - qnpu_last_error() per thread.
 * Build and run under ThreadSanitizer with `make check-tsan` (BLIS_NUM_THREADS=1 and
 * OMP_NUM_THREADS=1: the OpenMP runtime BLIS uses is not instrumented).
 *
 * Usage: threads SHARED_DIR [NTHREADS] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quantnpu.h"

#define MAXT 16

static const char *shared;
static char dir[256];
static char text_path[600];
static char *text;
static size_t text_len;
static int failures;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t barrier;

#define FAILF(...) do { pthread_mutex_lock(&fail_mu); fprintf(stderr, "threads: " __VA_ARGS__); \
                        fputc('\n', stderr); failures++; pthread_mutex_unlock(&fail_mu); } while (0)
#define CHECK(call, what) do { qnpu_status st_ = (call); if (st_ != QNPU_OK) { \
        FAILF("%s: status %d: %s", what, (int)st_, qnpu_last_error()); goto out; } } while (0)

static const char *const CAL[] = {"calib.seq_len", "64", "calib.num_samples", "1", "calib.first_block", "0",
                                  "rotate.r1", "random_hadamard", "rotate.r2", "random_hadamard",
                                  "quant.w_bits", "4", "quant.a_bits", "8", "num_threads", "1", NULL};

static qnpu_options *opts(const char *const *kv, const char *threads)
{
    qnpu_options *o = NULL;
    if (qnpu_options_create(&o) != QNPU_OK)
        return NULL;
    for (; kv && kv[0]; kv += 2) {
        qnpu_param p;
        if (qnpu_param_from_name(kv[0], &p) != QNPU_OK || qnpu_options_set_str(o, p, kv[1]) != QNPU_OK) {
            qnpu_options_free(o);
            return NULL;
        }
    }
    if (threads)
        qnpu_options_set_str(o, QNPU_P_NUM_THREADS, threads);
    return o;
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
    if (b)
        b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* The evaluation stream: the first 256 tokens of the text by the perplexity protocol. */
static int32_t *eval_ids(const qnpu_tokenizer *t, size_t *n)
{
    int32_t *ids = NULL;
    if (qnpu_tokenize_paragraphs(t, text, text_len, &ids, n) != QNPU_OK)
        return NULL;
    if (*n > 256)
        *n = 256;
    return ids;
}

/* ---- 1. independent handles ---------------------------------------------------------------- */

typedef struct result {
    int idx;
    char path[600];
    double ppl, fppl;
    int64_t scored;
    int ok;
} result;

static qnpu_options *shared_o; /* one options object read by every thread (2a) */

static void pipeline(result *r, const qnpu_model *shared_m, const qnpu_tokenizer *shared_t)
{
    qnpu_model *m = NULL;
    qnpu_tokenizer *t = NULL;
    qnpu_options *own = shared_m ? NULL : opts(CAL, NULL);
    const qnpu_options *o = shared_m ? shared_o : own;
    qnpu_calibrator *c = NULL;
    qnpu_qmodel *q = NULL;
    qnpu_session *s = NULL;
    qnpu_float_session *fs = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    char bin[600];
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", shared);
    if (!o) {
        FAILF("options");
        return;
    }
    if (!shared_m) {
        CHECK(qnpu_model_load(bin, NULL, &m), "qnpu_model_load");
        CHECK(qnpu_tokenizer_from_model(m, &t), "qnpu_tokenizer_from_model");
    }
    const qnpu_model *M = shared_m ? shared_m : m;
    const qnpu_tokenizer *T = shared_t ? shared_t : t;
    CHECK(qnpu_calibrator_create(M, T, o, &c), "qnpu_calibrator_create");
    CHECK(qnpu_calibrator_run(c, text, text_len, &q), "qnpu_calibrator_run");
    CHECK(qnpu_qmodel_save(q, r->path), "qnpu_qmodel_save");
    CHECK(qnpu_session_create(q, o, &s), "qnpu_session_create");
    if (!(ids = eval_ids(T, &n))) {
        FAILF("tokenize: %s", qnpu_last_error());
        goto out;
    }
    CHECK(qnpu_session_perplexity_ids(s, ids, n, 64, &r->ppl, &r->scored), "qnpu_session_perplexity_ids");
    CHECK(qnpu_float_session_create(M, o, &fs), "qnpu_float_session_create");
    int64_t fscored;
    CHECK(qnpu_float_session_perplexity(fs, T, text, text_len < 4000 ? text_len : 4000, 64, &r->fppl, &fscored),
          "qnpu_float_session_perplexity");
    r->ok = 1;
out:
    qnpu_free(ids);
    qnpu_float_session_free(fs);
    qnpu_session_free(s);
    qnpu_qmodel_free(q);
    qnpu_calibrator_free(c);
    qnpu_options_free(own);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
}

typedef struct job {
    result r;
    const qnpu_model *m;
    const qnpu_tokenizer *t;
    const qnpu_qmodel *q;
    const int32_t *ids;
    size_t n;
    double ppl_int, ppl_sim, ppl_cmp;
    char saved[600];
    int enc_ok;
} job;

static void *run_pipeline(void *v)
{
    job *j = v;
    pthread_barrier_wait(&barrier);
    pipeline(&j->r, j->m, j->t);
    return NULL;
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void compare_results(const char *what, const result *ref, job *jobs, int nt)
{
    for (int i = 0; i < nt; i++) {
        const result *r = &jobs[i].r;
        if (!r->ok)
            continue; /* already reported */
        if (!same_file(ref->path, r->path))
            FAILF("%s: thread %d: %s differs from %s", what, i, r->path, ref->path);
        if (memcmp(&r->ppl, &ref->ppl, sizeof r->ppl) != 0 || r->scored != ref->scored)
            FAILF("%s: thread %d: perplexity %.17g (%lld) != %.17g (%lld)", what, i, r->ppl, (long long)r->scored,
                  ref->ppl, (long long)ref->scored);
        if (memcmp(&r->fppl, &ref->fppl, sizeof r->fppl) != 0)
            FAILF("%s: thread %d: float perplexity %.17g != %.17g", what, i, r->fppl, ref->fppl);
        unlink(r->path);
    }
}

/* ---- 2. one shared quantized model --------------------------------------------------------- */

static void *run_shared_qmodel(void *v)
{
    job *j = v;
    qnpu_session *s = NULL;
    qnpu_tokenizer *t = NULL;
    qnpu_compare *cmp = NULL;
    qnpu_exporter *ex = NULL;
    /* odd jobs run their session on a pool of 2 threads: the result must not change */
    qnpu_options *o = opts(NULL, j->r.idx % 2 ? "2" : "1");
    int64_t scored;
    pthread_barrier_wait(&barrier);
    CHECK(qnpu_session_create(j->q, o, &s), "qnpu_session_create (shared qmodel)");
    CHECK(qnpu_session_perplexity_ids(s, j->ids, j->n, 64, &j->ppl_int, &scored), "session perplexity (shared)");
    CHECK(qnpu_qmodel_save(j->q, j->r.path), "qnpu_qmodel_save (shared qmodel)");
    CHECK(qnpu_qmodel_perplexity_ids(j->q, o, j->ids, j->n, 64, &j->ppl_sim, &scored), "qnpu_qmodel_perplexity_ids");
    CHECK(qnpu_tokenizer_from_qmodel(j->q, &t), "qnpu_tokenizer_from_qmodel");
    CHECK(qnpu_compare_run(j->q, o, j->ids, 64, 32, 1, &cmp), "qnpu_compare_run (shared qmodel)");
    CHECK(qnpu_compare_totals(cmp, NULL, &j->ppl_cmp, NULL, NULL), "qnpu_compare_totals");
    CHECK(qnpu_exporter_create(j->q, o, &ex), "qnpu_exporter_create (shared qmodel)");
    {
        char enc[700];
        snprintf(enc, sizeof enc, "%s.json", j->r.path);
        CHECK(qnpu_exporter_write(ex, QNPU_EXPORT_ENCODINGS, enc), "qnpu_exporter_write (shared qmodel)");
        unlink(enc);
    }
    {
        int32_t ids[300];
        size_t n;
        CHECK(qnpu_tokenizer_encode(t, text, 200, 1, ids, 300, &n), "encode");
        CHECK(qnpu_tokenizer_encode(j->t, text, 200, 1, ids + 0, 300, &n), "encode (shared tokenizer)");
        j->enc_ok = n > 10;
    }
    /* qnpu_last_error is per thread: make a distinct error here and read it back */
    {
        char want[64];
        snprintf(want, sizeof want, "no-such-file-%d.qnpu", j->r.idx);
        qnpu_qmodel *bad = NULL;
        if (qnpu_qmodel_load(want, NULL, &bad) == QNPU_OK) {
            FAILF("loading %s succeeded", want);
            qnpu_qmodel_free(bad);
        } else {
            sched_yield();
            if (!strstr(qnpu_last_error(), want))
                FAILF("thread %d: qnpu_last_error() is '%s', not about %s", j->r.idx, qnpu_last_error(), want);
        }
    }
    j->r.ok = 1;
out:
    qnpu_exporter_free(ex);
    qnpu_compare_free(cmp);
    qnpu_tokenizer_free(t);
    qnpu_session_free(s);
    qnpu_options_free(o);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: threads SHARED_DIR [NTHREADS]\n");
        return 2;
    }
    shared = argv[1];
    int nt = argc > 2 ? atoi(argv[2]) : 4;
    if (nt < 1 || nt > MAXT)
        nt = 4;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qnpu-threads-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(text_path, sizeof text_path, "%s/data/tinystories_train_head.txt", shared);
    size_t full;
    text = (char *)slurp(text_path, &full);
    if (!text) {
        fprintf(stderr, "threads: cannot read %s\n", text_path);
        return 2;
    }
    text_len = full < 20000 ? full : 20000;
    pthread_barrier_init(&barrier, NULL, (unsigned)nt);
    job jobs[MAXT];
    pthread_t th[MAXT];

    /* the reference, on the main thread */
    result ref = {.idx = -1};
    snprintf(ref.path, sizeof ref.path, "%s/ref.qnpu", dir);
    pipeline(&ref, NULL, NULL);
    if (!ref.ok)
        return 1;
    printf("threads: reference: perplexity %.6f int, %.6f float\n", ref.ppl, ref.fppl);

    /* 1. independent handles */
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < nt; i++) {
        jobs[i].r.idx = i;
        snprintf(jobs[i].r.path, sizeof jobs[i].r.path, "%s/own%d.qnpu", dir, i);
        pthread_create(&th[i], NULL, run_pipeline, &jobs[i]);
    }
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    compare_results("independent handles", &ref, jobs, nt);
    printf("threads: %d threads with their own handles: %s\n", nt, failures ? "FAILED" : "identical");

    /* 2a. one model and one tokenizer shared by every thread */
    char bin[600];
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", shared);
    qnpu_model *m = NULL;
    qnpu_tokenizer *t = NULL;
    if (qnpu_model_load(bin, NULL, &m) != QNPU_OK || qnpu_tokenizer_from_model(m, &t) != QNPU_OK) {
        fprintf(stderr, "threads: load: %s\n", qnpu_last_error());
        return 1;
    }
    int before = failures;
    shared_o = opts(CAL, NULL);
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < nt; i++) {
        jobs[i].r.idx = i;
        jobs[i].m = m;
        jobs[i].t = t;
        snprintf(jobs[i].r.path, sizeof jobs[i].r.path, "%s/sharedm%d.qnpu", dir, i);
        pthread_create(&th[i], NULL, run_pipeline, &jobs[i]);
    }
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    compare_results("shared model", &ref, jobs, nt);
    qnpu_options_free(shared_o);
    printf("threads: %d threads sharing one model, tokenizer and options: %s\n", nt, failures > before ? "FAILED" : "identical");

    /* 2b. one quantized model shared by every thread (loaded from the reference file, so no
     * session exists yet and the threads race to build the integer program) */
    qnpu_qmodel *q = NULL;
    if (qnpu_qmodel_load(ref.path, NULL, &q) != QNPU_OK) {
        fprintf(stderr, "threads: qmodel load: %s\n", qnpu_last_error());
        return 1;
    }
    size_t n = 0;
    int32_t *ids = eval_ids(t, &n);
    before = failures;
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < nt; i++) {
        jobs[i].r.idx = i;
        jobs[i].q = q;
        jobs[i].t = t;
        jobs[i].ids = ids;
        jobs[i].n = n;
        snprintf(jobs[i].r.path, sizeof jobs[i].r.path, "%s/sharedq%d.qnpu", dir, i);
        pthread_create(&th[i], NULL, run_shared_qmodel, &jobs[i]);
    }
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < nt; i++) {
        if (!jobs[i].r.ok)
            continue;
        if (memcmp(&jobs[i].ppl_int, &ref.ppl, sizeof ref.ppl) != 0)
            FAILF("shared qmodel: thread %d: session perplexity %.17g != %.17g", i, jobs[i].ppl_int, ref.ppl);
        if (memcmp(&jobs[i].ppl_cmp, &jobs[0].ppl_cmp, sizeof ref.ppl) != 0)
            FAILF("shared qmodel: thread %d: compare perplexity %.17g != %.17g", i, jobs[i].ppl_cmp,
                  jobs[0].ppl_cmp);
        if (memcmp(&jobs[i].ppl_sim, &jobs[0].ppl_sim, sizeof ref.ppl) != 0)
            FAILF("shared qmodel: thread %d: simulated perplexity %.17g != %.17g", i, jobs[i].ppl_sim,
                  jobs[0].ppl_sim);
        if (!same_file(ref.path, jobs[i].r.path))
            FAILF("shared qmodel: thread %d: the saved file differs from the reference", i);
        if (!jobs[i].enc_ok)
            FAILF("shared qmodel: thread %d: encode gave too few tokens", i);
        unlink(jobs[i].r.path);
    }
    printf("threads: %d threads sharing one quantized model: %s\n", nt, failures > before ? "FAILED" : "identical");

    qnpu_free(ids);
    qnpu_qmodel_free(q);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
    unlink(ref.path);
    rmdir(dir);
    free(text);
    pthread_barrier_destroy(&barrier);
    printf("threads: %s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
