/* bench_train.c — wall time of the whole Quant.npu pipeline (as `quantnpu quantize --recipe
 * quantnpu-w4a8 --train` runs it) and the GEMM throughput of its stage 1 against the BLIS sgemm
 * peak measured in the same run.
 *
 *   bench_train [--steps N] [--threads N] [--reps N] [--recipe R] [--text FILE]
 *               [--out-json FILE] [--out M.qnpu] [MODEL]
 *
 * MODEL defaults to ../shared/models/stories260K.bin, --text to
 * ../shared/data/tinystories_train_head.txt (the training text), --recipe to the preset
 * quantnpu-w4a8 (falling back to w4a8-hadamard with optim.train = true where that preset does not
 * exist), --steps to 512, --threads to 0 (all cores), --reps to 1. --out keeps the .qnpu of the
 * last run there (default: a temporary file, removed).
 *
 * Steps:
 *   1. machine_pick_blis_arch() (cli/machine.c, as the CLI does), then the machine: CPU model
 *      from /proc/cpuinfo, cores, BLIS version and sub-configuration.
 *   2. sgemm peak, pass 1: qnpu__sgemm (the library's BLIS wrapper) on all the run's threads,
 *      2048 x 2048 x 2048 with B stored [N][K] (as a weight) and [K][N]; best of 3 warm calls each.
 *   3. --reps times the pipeline through the public API, exactly as the CLI's quantize --train:
 *      MODEL loaded into memory (model.mmap = false: this machine drops its page cache), the
 *      recipe, optim.train = true, optim.steps = --steps, optim.batch = 16, calib.seq_len = 256,
 *      num_threads = --threads; qnpu_optimizer_create, a progress callback that timestamps every
 *      stage-1 step, qnpu_optimizer_run on the text, qnpu_qmodel_save into a temporary file
 *      (removed afterwards). Phases, from the callback's timestamps t_1 .. t_N (t_i = the end of
 *      step i):
 *        init      = run start -> t_1: tokenization, preparing the model, mixed precision, the
 *                    calibration/initialization forward passes, AND stage-1 step 1 (the API has
 *                    no event at the start of step 1); also shown minus one median step;
 *        stage 1   = t_1 -> t_N: steps 2 .. N (N - 1 steps); per step: min, median, max;
 *        stage 2   = t_N -> the file written: export (R1/R2 fused; GPTQ weights when the recipe
 *                    sets optim.weight_round = gptq), stage 2, qnpu_qmodel_save;
 *        total     = run start -> the file written (model and text loading are reported apart).
 *   4. sgemm peak, pass 2 (after the runs). Peak = the best of both passes and both layouts.
 * Every phase also reports how many cores other processes kept busy meanwhile (/proc/stat).
 *
 * FLOP model of one stage-1 step (multiply-add = 2 FLOPs): the matrix products of
 * lib/optim/stage1.c, backward.c and cayley.c, which all go through qnpu__sgemm / qnpu__sgemm_ex
 * (BLIS) except the attention products (backward.c's own row kernels). Notation: d = dim,
 * ff = hidden, L = layers, H = heads, dh = head dim, qd = H·dh, kvd = KV heads·dh, V = vocab,
 * T = calib.seq_len, B = optim.batch;
 * a step runs M = ceil(B / mb) micro-batches (mb = optim.micro_batch) of n_j sequences each,
 * N_j = n_j·T rows, Σ N_j = B·T; lib/optim/train.c runs them side by side, one BLIS thread each,
 * when there are several threads and micro-batches. Per micro-batch j
 * (qnpu__s1_loss_grad_batch):
 *   linears, forward      2·N_j·L·(d·qd + 2·d·kvd + qd·d + 3·d·ff)     q, k, v, o, gate, up, down
 *   linears, backward     2 x the forward: ∂x = ∂y·W and ∂W = ∂yᵀ·x for each of the 7
 *   lm_head               forward 2·N_j·V·d, backward 4·N_j·V·d (∂x and ∂W)
 *   attention, forward    n_j·L·H·2·a: Q·Kᵀ and P·V per head and sequence
 *   attention, backward   n_j·L·H·5·a: Q·Kᵀ again (P is recomputed), ∂P = ∂O·Vᵀ, ∂V = Pᵀ·∂O,
 *                         ∂Q = ∂S·K, ∂K = ∂Sᵀ·Q
 *                         where a, one such product of one head, is what backward.c executes:
 *                         since commit 4ce457e its row kernels visit only the causal triangle
 *                         (row i sees keys 0..i), a = 2·dh·T(T+1)/2, and are not BLIS; before
 *                         it, each product was a qnpu__sgemm over the full T x T rectangle (the
 *                         masked half zeroed, not skipped), a = 2·dh·T². The run-time check
 *                         below says which.
 *   recomputation         only when a micro-batch's activations exceed QNPU__S1_KEEP_BYTES
 *                         (lib/optim/stage1.h; stories260K keeps them): the layer forward again
 *                         without down_proj, 2·N_j·L·(d·qd + 2·d·kvd + qd·d + 2·d·ff), plus its
 *                         attention forward (counted under attention, forward)
 *   rotation builds       every layer's rotated weights are built twice, in the forward and again
 *                         in the backward: per build 2·d²·(2·qd + 2·kvd + 3·ff) (Wq·R1, Wk·R1,
 *                         Wv·R1, R1ᵀ·(Wo·R2), Wg·R1, Wu·R1, R1ᵀ·Wd) + 2·dh·d·(kvd + qd) (the
 *                         R2 blocks of v and o) [+ 2·kvd·dh with q/k/v biases]; the backward
 *                         build adds R2ᵀ·Wv and R1ᵀ·Wo for the gradients, 2·kvd·d·dh + 2·d²·qd;
 *                         plus the lm_head W·R1, 2·V·d², and the embedding rows E·R1, 2·N_j·d²
 *   ∂L/∂R products        (optim.train_rotation) ∂R1: lm_head 2·d²·V, embedding 2·d²·N_j, per
 *                         layer 2·d²·(2·qd + 2·kvd + 3·ff) (q, k, v, o, gate, up, down);
 *                         ∂R2 per layer 2·dh·d·(qd + kvd) [+ 2·kvd·dh with biases]
 * and once per step, the Cayley updates (lib/optim/cayley.c): (3 + optim.cayley_iters) products
 * of order n per rotation, 2·n³ each, for R1 (n = d) and the L R2s (n = dh); the occasional QR
 * retraction is not a product and is not counted. Not counted anywhere: elementwise work
 * (RMSNorm, RoPE, softmax, SwiGLU, the fake quantizers and their gradients, cross-entropy).
 * GFLOP/s of stage 1 = the model's FLOPs of N - 1 steps / (t_N - t_1): the achieved rate over the
 * whole stage, elementwise work included in the time; reported for all the products and for the
 * BLIS ones alone, each also as a fraction of the sgemm peak.
 *
 * Run-time check: the Makefile links this program with -Wl,--wrap=bli_sgemm_ex, so every BLIS
 * sgemm of the library adds its 2·m·n·k to a counter; the count over steps 2..N must equal the
 * model's BLIS part exactly (for one of the two attention variants, which selects it), else a
 * warning says the model is out of date.
 *
 * Output: plain text lines, then one JSON line starting with {"bench":"train_pipeline" (also
 * written to --out-json FILE). Exit status 0, 1 on a library error, 2 on a usage error. */
#include <blis.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../cli/machine.h"
#define BENCH_NAME "bench_train"
#include "bench_util.h"
#include "internal.h"
#include "optim/stage1.h"
#include "quantnpu.h"

#define NOISY 0.2 /* other load (cores) above which a measurement is flagged */



/* The whole file, NUL-terminated; NULL on failure (errno set). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = 2 * cap + 65536 + 1;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* "model name" of /proc/cpuinfo plus family/model numbers, into buf. */
static void cpu_model(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512], name[256] = "unknown", fam[32] = "?", mod[32] = "?";
    int got = 0;
    while (fgets(line, sizeof line, f) && got != 7) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\n")] = '\0';
        if (!(got & 1) && !strncmp(line, "model name", 10)) {
            snprintf(name, sizeof name, "%s", v);
            got |= 1;
        } else if (!(got & 2) && !strncmp(line, "cpu family", 10)) {
            snprintf(fam, sizeof fam, "%s", v);
            got |= 2;
        } else if (!(got & 4) && !strncmp(line, "model", 5) && (line[5] == ' ' || line[5] == '\t')) {
            snprintf(mod, sizeof mod, "%s", v);
            got |= 4;
        }
    }
    fclose(f);
    long fa = strtol(fam, NULL, 10), mo = strtol(mod, NULL, 10);
    snprintf(buf, cap, "%s (family 0x%lx, model 0x%lx)", name, fa, mo);
}

static void loadavg(char *buf, size_t cap)
{
    snprintf(buf, cap, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    double a = 0, b = 0, c = 0;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(buf, cap, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

/* s as a JSON string (quotes, backslashes and control characters escaped). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* ---- the FLOP model (see the top of the file) --------------------------------------------- */

typedef struct dims {
    int64_t d, ff, L, H, KV, dh, qd, kvd, V;
    int bias; /* q/k/v biases */
} dims;

typedef struct s1cfg {
    int64_t T, batch, mb, cayley_iters;
    int train_rot, aq; /* ∂L/∂R computed; some activation point quantized (stage1.c's `aq`) */
} s1cfg;

enum { F_LIN_FWD, F_LIN_BWD, F_HEAD_FWD, F_HEAD_BWD, F_ATT_FWD, F_ATT_BWD, F_RECOMP, F_ROT_BUILD,
       F_ROT_GRAD, F_CAYLEY, F_COUNT };
static const char *const f_name[F_COUNT] = {
    "linears forward", "linears backward", "lm_head forward", "lm_head backward", "attention forward",
    "attention backward", "recomputed linears", "rotation builds", "dL/dR products", "Cayley updates"};
static const char *const f_key[F_COUNT] = {
    "linear_fwd", "linear_bwd", "lm_head_fwd", "lm_head_bwd", "attention_fwd", "attention_bwd",
    "recompute_linear", "rotation_build", "rotation_grad", "cayley"};

/* How stage 1 computes the attention products: ATT_ROWS = lib/optim/backward.c's row kernels over
 * the causal triangle (not BLIS; since commit 4ce457e), ATT_GEMM = qnpu__sgemm over the full T x T
 * rectangle (before it). The run-time count of the BLIS FLOPs tells them apart. */
enum { ATT_ROWS, ATT_GEMM, ATT_COUNT };
static const char *const att_name[ATT_COUNT] = {"row kernels over the causal triangle (not BLIS)",
                                                "qnpu__sgemm over the full T x T rectangle"};

typedef struct flops {
    double f[F_COUNT];
    double total, blis; /* every product; those that go through BLIS */
    int64_t M, n_recomp; /* micro-batches per step; how many of them recompute */
} flops;

/* FLOPs of one stage-1 step by category, attention computed as `att`. */
static void step_flops(const dims *s, const s1cfg *c, int att, flops *out)
{
    double d = (double)s->d, ff = (double)s->ff, L = (double)s->L, H = (double)s->H, dh = (double)s->dh,
           qd = (double)s->qd, kvd = (double)s->kvd, V = (double)s->V, T = (double)c->T;
    double *f = out->f;
    for (int i = 0; i < F_COUNT; i++)
        f[i] = 0;
    int64_t mb = c->mb < 1 ? 1 : c->mb;
    out->M = (c->batch + mb - 1) / mb;
    out->n_recomp = 0;
    double lin_row = 2.0 * L * (d * qd + 2.0 * d * kvd + qd * d + 3.0 * d * ff); /* per row */
    double lin_row_nodown = 2.0 * L * (d * qd + 2.0 * d * kvd + qd * d + 2.0 * d * ff);
    /* one product of a head: T(T+1)/2 (causal rows) or T² (rectangle) dot products of length dh */
    double prod = att == ATT_ROWS ? 2.0 * dh * T * (T + 1.0) / 2.0 : 2.0 * dh * T * T;
    double att_fwd_seq = L * H * 2.0 * prod, att_bwd_seq = L * H * 5.0 * prod;
    double build = 2.0 * d * d * (2.0 * qd + 2.0 * kvd + 3.0 * ff) + 2.0 * dh * d * (kvd + qd) +
                   (s->bias ? 2.0 * kvd * dh : 0.0);
    double build_grad_extra = 2.0 * kvd * d * dh + 2.0 * d * d * qd;
    double rgrad_layer = 2.0 * d * d * (2.0 * qd + 2.0 * kvd + 3.0 * ff) + 2.0 * dh * d * (qd + kvd) +
                         (s->bias ? 2.0 * kvd * dh : 0.0);
    for (int64_t j = 0; j < out->M; j++) {
        int64_t nj = c->batch - j * mb < mb ? c->batch - j * mb : mb;
        double N = (double)nj * T;
        /* stage1.c's rule: keep every layer's activations when they fit in the budget */
        double per_layer = N * (double)(s->d * (c->aq ? 6 : 3) + s->qd * (c->aq ? 3 : 2) + s->kvd * 2 +
                                        s->ff * (c->aq ? 4 : 3)) * sizeof(float);
        int recompute = per_layer * L > QNPU__S1_KEEP_BYTES;
        out->n_recomp += recompute;
        f[F_LIN_FWD] += N * lin_row;
        f[F_LIN_BWD] += 2.0 * N * lin_row;
        f[F_HEAD_FWD] += 2.0 * N * V * d;
        f[F_HEAD_BWD] += 4.0 * N * V * d;
        f[F_ATT_FWD] += (double)nj * att_fwd_seq * (recompute ? 2.0 : 1.0); /* again when recomputing */
        f[F_ATT_BWD] += (double)nj * att_bwd_seq;
        if (recompute)
            f[F_RECOMP] += N * lin_row_nodown;
        f[F_ROT_BUILD] += L * (2.0 * build + build_grad_extra) + 2.0 * V * d * d + 2.0 * N * d * d;
        if (c->train_rot)
            f[F_ROT_GRAD] += 2.0 * d * d * V + 2.0 * d * d * N + L * rgrad_layer;
    }
    if (c->train_rot) {
        double k = 3.0 + (double)c->cayley_iters;
        f[F_CAYLEY] = k * 2.0 * d * d * d + L * k * 2.0 * dh * dh * dh;
    }
    out->total = out->blis = 0;
    for (int i = 0; i < F_COUNT; i++) {
        out->total += f[i];
        if (att == ATT_GEMM || (i != F_ATT_FWD && i != F_ATT_BWD))
            out->blis += f[i];
    }
}

/* ---- run-time count of the BLIS sgemm FLOPs ---------------------------------------------------- */

/* The Makefile links this program with -Wl,--wrap=bli_sgemm_ex: every sgemm of the library (one
 * call site, lib/kernels/gemm_f32.c) then comes here first and adds its 2·m·n·k, which checks the
 * FLOP model on every run. Without that flag the wrapper is never called and the count stays
 * unavailable (__real_bli_sgemm_ex is weak so the program still links). */
static _Atomic unsigned long long blis_flop_count;
static _Atomic int blis_counting;
extern __typeof__(bli_sgemm_ex) __real_bli_sgemm_ex __attribute__((weak));
__typeof__(bli_sgemm_ex) __wrap_bli_sgemm_ex;

void __wrap_bli_sgemm_ex(trans_t transa, trans_t transb, dim_t m, dim_t n, dim_t k, float *alpha, float *a,
                         inc_t rs_a, inc_t cs_a, float *b, inc_t rs_b, inc_t cs_b, float *beta, float *c,
                         inc_t rs_c, inc_t cs_c, cntx_t *cntx, rntm_t *rntm)
{
    if (m > 0 && n > 0 && k > 0)
        atomic_fetch_add_explicit(&blis_flop_count, 2ull * (unsigned long long)m * (unsigned long long)n *
                                  (unsigned long long)k, memory_order_relaxed);
    atomic_store_explicit(&blis_counting, 1, memory_order_relaxed);
    __real_bli_sgemm_ex(transa, transb, m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c, cntx,
                        rntm);
}

/* ---- one pipeline run ------------------------------------------------------------------------ */

typedef struct run_result {
    double *t_step;      /* [steps + 1]: t_step[i] = wall clock at the end of step i (1-based) */
    double *loss;        /* [steps + 1]: the loss of step i */
    int64_t seen;        /* steps reported by the callback */
    double t0, t_end;    /* run start, file written */
    phase ph_init, ph_s1, ph_s2, ph_all;
    double init_s, s1_s, s2_s, total_s, step_min, step_med, step_max;
    unsigned long long blis0, blis1; /* BLIS FLOP counter at t_1 and t_N */
    long long file_bytes;
} run_result;

typedef struct cb_state {
    run_result *r;
    const qnpu_optimizer *opt;
    int64_t steps;
    int verbose;
} cb_state;

static int on_progress(void *user, const char *stage, int64_t done, int64_t total)
{
    cb_state *cs = user;
    run_result *r = cs->r;
    if (strcmp(stage, "train") != 0 || done < 1 || done > cs->steps)
        return 0;
    double t = now();
    r->t_step[done] = t;
    r->loss[done] = qnpu_optimizer_last_loss(cs->opt);
    r->seen = done;
    if (done == 1) {
        r->blis0 = atomic_load(&blis_flop_count);
        phase_end(&r->ph_init);
        phase_start(&r->ph_s1);
    }
    if (done == total) {
        r->blis1 = atomic_load(&blis_flop_count);
        phase_end(&r->ph_s1);
        phase_start(&r->ph_s2);
    }
    if (cs->verbose && (done == 1 || done == total || done % 64 == 0)) {
        printf("    step %4lld/%lld  loss %.4f  %.2f s since the run started\n", (long long)done,
               (long long)total, r->loss[done], t - r->t0);
        fflush(stdout);
    }
    return 0;
}

/* One run of the pipeline, the .qnpu written to `out` (NULL: a temporary file, removed). */
static void run_pipeline(const qnpu_model *m, const qnpu_tokenizer *tok, const qnpu_options *opts,
                         const char *text, size_t len, int64_t steps, const char *out, run_result *r)
{
    char tmp[512];
    if (out) {
        snprintf(tmp, sizeof tmp, "%s", out);
    } else {
        const char *dir = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/bench_train-XXXXXX.qnpu", dir && *dir ? dir : "/tmp");
        int fd = mkstemps(tmp, 5);
        if (fd < 0) {
            fprintf(stderr, "bench_train: cannot create a temporary file %s: %s\n", tmp, strerror(errno));
            exit(1);
        }
        close(fd);
    }

    memset(r, 0, sizeof *r);
    r->t_step = calloc((size_t)steps + 1, sizeof *r->t_step);
    r->loss = calloc((size_t)steps + 1, sizeof *r->loss);
    if (!r->t_step || !r->loss) {
        fprintf(stderr, "bench_train: out of memory\n");
        exit(1);
    }
    qnpu_optimizer *opt = NULL;
    qnpu_qmodel *q = NULL;
    phase_start(&r->ph_all);
    phase_start(&r->ph_init);
    r->t0 = r->ph_all.wall0;
    qnpu_status st = qnpu_optimizer_create(m, tok, opts, &opt);
    if (st != QNPU_OK)
        die_status(st, "qnpu_optimizer_create");
    cb_state cs = {r, opt, steps, 1};
    qnpu_optimizer_set_progress(opt, on_progress, &cs);
    if ((st = qnpu_optimizer_run(opt, text, len, &q)) != QNPU_OK)
        die_status(st, "qnpu_optimizer_run");
    if ((st = qnpu_qmodel_save(q, tmp)) != QNPU_OK)
        die_status(st, "qnpu_qmodel_save");
    r->t_end = now();
    phase_end(&r->ph_s2);
    phase_end(&r->ph_all);
    struct stat sb;
    r->file_bytes = stat(tmp, &sb) == 0 ? (long long)sb.st_size : -1;
    if (!out)
        unlink(tmp);
    qnpu_qmodel_free(q);
    qnpu_optimizer_free(opt);
    if (r->seen != steps) {
        fprintf(stderr, "bench_train: the progress callback saw %lld of %lld steps\n", (long long)r->seen,
                (long long)steps);
        exit(1);
    }
    r->init_s = r->t_step[1] - r->t0;
    r->s1_s = r->t_step[steps] - r->t_step[1];
    r->s2_s = r->t_end - r->t_step[steps];
    r->total_s = r->t_end - r->t0;
    double *dt = malloc((size_t)(steps - 1) * sizeof *dt);
    if (!dt) {
        fprintf(stderr, "bench_train: out of memory\n");
        exit(1);
    }
    r->step_min = 1e30;
    r->step_max = 0;
    for (int64_t i = 1; i < steps; i++) {
        dt[i - 1] = r->t_step[i + 1] - r->t_step[i];
        r->step_min = dt[i - 1] < r->step_min ? dt[i - 1] : r->step_min;
        r->step_max = dt[i - 1] > r->step_max ? dt[i - 1] : r->step_max;
    }
    r->step_med = median(dt, (int)(steps - 1));
    free(dt);
}

/* ---- sgemm peak ------------------------------------------------------------------------------ */

#define PEAK_N 2048
#define PEAK_REPS 3

typedef struct peak_pass {
    double gflops[2]; /* B stored [N][K] (transb), [K][N] */
    phase ph[2];
} peak_pass;

static void measure_peak(int threads, uint64_t *rng, peak_pass *p, int pass)
{
    double flop = 2.0 * PEAK_N * (double)PEAK_N * PEAK_N;
    for (int i = 0; i < 2; i++) {
        int transb = i == 0;
        double best = sgemm_best_s(threads, PEAK_N, PEAK_N, PEAK_N, transb, PEAK_REPS, rng, &p->ph[i]);
        p->gflops[i] = flop / best / 1e9;
        printf("  pass %d: sgemm %d x %d x %d %s: %8.2f GFLOP/s (best of %d: %.4f s; %.2f cores busy, "
               "other load %.2f)\n", pass, PEAK_N, PEAK_N, PEAK_N, transb ? "B^T" : "B  ", p->gflops[i],
               PEAK_REPS, best, p->ph[i].own, p->ph[i].other);
        fflush(stdout);
    }
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_train [--steps N] [--threads N] [--reps N] [--recipe R] [--text FILE]\n"
               "                   [--out-json FILE] [--out M.qnpu] [MODEL]\n"
               "defaults: --steps 512 --threads 0 (all cores) --reps 1 --recipe quantnpu-w4a8\n"
               "          --text ../shared/data/tinystories_train_head.txt\n"
               "          MODEL ../shared/models/stories260K.bin\n");
}

int main(int argc, char **argv)
{
    int picked = machine_pick_blis_arch(); /* first, before BLIS or any thread starts */
    long steps = 512, threads_opt = 0, reps = 1;
    const char *path = "../shared/models/stories260K.bin";
    const char *text_path = "../shared/data/tinystories_train_head.txt";
    const char *recipe = "quantnpu-w4a8", *json_path = NULL, *out_path = NULL;
    int have_path = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *dst = NULL, lo = 1, hi = 10000000;
        if (!strcmp(a, "--steps")) { dst = &steps; lo = 2; }
        else if (!strcmp(a, "--threads")) { dst = &threads_opt; lo = 0; hi = 1024; }
        else if (!strcmp(a, "--reps")) { dst = &reps; hi = 100; }
        else if (!strcmp(a, "--recipe") || !strcmp(a, "--text") || !strcmp(a, "--out-json") ||
                 !strcmp(a, "--out")) {
            if (!v) {
                fprintf(stderr, "bench_train: %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--recipe"))
                recipe = v;
            else if (!strcmp(a, "--text"))
                text_path = v;
            else if (!strcmp(a, "--out"))
                out_path = v;
            else
                json_path = v;
            i++;
            continue;
        }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (a[0] == '-') {
            fprintf(stderr, "bench_train: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else if (have_path) {
            fprintf(stderr, "bench_train: more than one model path ('%s', '%s')\n", path, a);
            return 2;
        } else {
            path = a;
            have_path = 1;
            continue;
        }
        if (!parse_int(a, v, lo, hi, dst))
            return 2;
        i++;
    }

    /* options: as `quantnpu quantize MODEL --recipe R --train --no-mmap --threads N` */
    qnpu_options *opts;
    qnpu_status st = qnpu_options_create(&opts);
    if (st != QNPU_OK)
        die_status(st, "options");
    if ((st = qnpu_options_set_int(opts, QNPU_P_NUM_THREADS, threads_opt)) != QNPU_OK ||
        (st = qnpu_options_set_int(opts, QNPU_P_MODEL_MMAP, 0)) != QNPU_OK)
        die_status(st, "options");
    const char *recipe_used = recipe;
    int fallback = 0;
    if ((st = qnpu_options_load_recipe(opts, recipe)) != QNPU_OK) {
        if (strcmp(recipe, "quantnpu-w4a8") != 0)
            die_status(st, recipe);
        fprintf(stderr, "bench_train: no preset quantnpu-w4a8 (%s); using w4a8-hadamard with optim.train\n",
                qnpu_last_error());
        recipe_used = "w4a8-hadamard";
        fallback = 1;
        if ((st = qnpu_options_load_recipe(opts, recipe_used)) != QNPU_OK)
            die_status(st, recipe_used);
    }
    if ((st = qnpu_options_set_int(opts, QNPU_P_NUM_THREADS, threads_opt)) != QNPU_OK ||
        (st = qnpu_options_set_int(opts, QNPU_P_MODEL_MMAP, 0)) != QNPU_OK ||
        (st = qnpu_options_set_int(opts, QNPU_P_OPTIM_TRAIN, 1)) != QNPU_OK ||
        (st = qnpu_options_set_int(opts, QNPU_P_OPTIM_STEPS, steps)) != QNPU_OK ||
        (st = qnpu_options_set_int(opts, QNPU_P_OPTIM_BATCH, 16)) != QNPU_OK ||
        (st = qnpu_options_set_int(opts, QNPU_P_CALIB_SEQ_LEN, 256)) != QNPU_OK)
        die_status(st, "options");
    int threads = qnpu__opt_threads(opts);
    int64_t mb = 1, train_rot = 1, iters = 5, a_bits = 16, down_bits = 16, T = 256, batch = 16, gptq = 0;
    if ((st = qnpu_options_get_int(opts, QNPU_P_OPTIM_MICRO_BATCH, &mb)) != QNPU_OK ||
        (st = qnpu_options_get_int(opts, QNPU_P_OPTIM_TRAIN_ROTATION, &train_rot)) != QNPU_OK ||
        (st = qnpu_options_get_int(opts, QNPU_P_OPTIM_CAYLEY_ITERS, &iters)) != QNPU_OK ||
        (st = qnpu_options_get_int(opts, QNPU_P_QUANT_A_BITS, &a_bits)) != QNPU_OK ||
        (st = qnpu_options_get_int(opts, QNPU_P_QUANT_DOWN_A_BITS, &down_bits)) != QNPU_OK ||
        (st = qnpu_options_get_int(opts, QNPU_P_CALIB_SEQ_LEN, &T)) != QNPU_OK ||
        (st = qnpu_options_get_int(opts, QNPU_P_OPTIM_BATCH, &batch)) != QNPU_OK ||
        (st = qnpu_options_get_int(opts, QNPU_P_OPTIM_WEIGHT_ROUND, &gptq)) != QNPU_OK)
        die_status(st, "options");

    /* the machine; bli_init first: with BLIS_ARCH_TYPE set, querying the arch before the kernel
     * structure is initialised makes BLIS 0.9 abort */
    bli_init();
    const char *arch = bli_arch_string(bli_arch_query_id());
    char cpu[400], la0[64];
    cpu_model(cpu, sizeof cpu);
    loadavg(la0, sizeof la0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("== machine\n");
    printf("cpu: %s; %ld cores online\n", cpu, cores);
    printf("BLIS %s, arch config '%s' (gemm kernel: %s), threading %s; BLIS_ARCH_TYPE=%s%s\n",
           bli_info_get_version_str(), arch, bli_info_get_gemm_ukr_impl_string(BLIS_NAT, BLIS_FLOAT),
           bli_info_get_enable_openmp() ? "openmp" : bli_info_get_enable_pthreads() ? "pthreads" : "none",
           getenv("BLIS_ARCH_TYPE") ? getenv("BLIS_ARCH_TYPE") : "(unset)",
           picked ? " (set by machine_pick_blis_arch)" : "");
    if (!strcmp(arch, "generic"))
        printf("WARNING: BLIS runs its reference kernels on this CPU\n");
    printf("load average at start: %s\n", la0);

    /* model (into memory), tokenizer, text */
    double t0 = now();
    qnpu_model *m;
    if ((st = qnpu_model_load(path, opts, &m)) != QNPU_OK)
        die_status(st, path);
    qnpu_tokenizer *tok;
    if ((st = qnpu_tokenizer_from_model(m, &tok)) != QNPU_OK)
        die_status(st, "tokenizer");
    size_t len = 0;
    char *text = slurp(text_path, &len);
    if (!text) {
        fprintf(stderr, "bench_train: cannot read %s: %s\n", text_path, strerror(errno));
        return 1;
    }
    double load_s = now() - t0;
    dims s = {0};
    qnpu_model_get_dim(m, QNPU_DIM_HIDDEN, &s.d);
    qnpu_model_get_dim(m, QNPU_DIM_FFN, &s.ff);
    qnpu_model_get_dim(m, QNPU_DIM_LAYERS, &s.L);
    qnpu_model_get_dim(m, QNPU_DIM_HEADS, &s.H);
    qnpu_model_get_dim(m, QNPU_DIM_KV_HEADS, &s.KV);
    qnpu_model_get_dim(m, QNPU_DIM_HEAD_DIM, &s.dh);
    qnpu_model_get_dim(m, QNPU_DIM_VOCAB, &s.V);
    s.qd = s.H * s.dh;
    s.kvd = s.KV * s.dh;
    s.bias = m->qkv_bias;
    printf("model %s: dim %lld, hidden %lld, layers %lld, heads %lld, kv heads %lld, head dim %lld, vocab %lld%s; "
           "text %s (%zu bytes); loaded in %.3f s (into memory, model.mmap = false)\n",
           path, (long long)s.d, (long long)s.ff, (long long)s.L, (long long)s.H, (long long)s.KV,
           (long long)s.dh, (long long)s.V, s.bias ? ", q/k/v biases" : "", text_path, len, load_s);

    s1cfg c = {.T = T, .batch = batch, .mb = mb, .cayley_iters = iters, .train_rot = (int)train_rot,
               .aq = a_bits < 16 || down_bits < 16};
    flops fm[ATT_COUNT];
    for (int a = 0; a < ATT_COUNT; a++)
        step_flops(&s, &c, a, &fm[a]);
    int64_t M = fm[0].M;
    printf("== pipeline: recipe %s%s, optim.steps %ld, optim.batch %lld, calib.seq_len %lld, %d threads; "
           "stage-1 steps as %lld micro-batch(es) of up to %lld sequences%s\n",
           recipe_used, fallback ? " + optim.train" : "", steps, (long long)batch, (long long)T, threads,
           (long long)M, (long long)mb,
           threads > 1 && M > 1 ? " side by side (1 BLIS thread each)" : " (all threads per product)");

    /* peak, pass 1 */
    uint64_t rng = 1;
    peak_pass pk[2];
    printf("== sgemm peak (qnpu__sgemm, %d threads)\n", threads);
    measure_peak(threads, &rng, &pk[0], 1);

    /* the runs */
    run_result *rr = calloc((size_t)reps, sizeof *rr);
    if (!rr) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 1;
    }
    for (long i = 0; i < reps; i++) {
        printf("== run %ld of %ld\n", i + 1, reps);
        fflush(stdout);
        run_pipeline(m, tok, opts, text, len, steps, out_path, &rr[i]);
        const run_result *r = &rr[i];
        printf("  init (tokenize, prepare, mixed precision, calibration/init) + step 1: %.2f s "
               "(other load %.2f)\n", r->init_s, r->ph_init.other);
        printf("  stage 1, steps 2..%ld: %.2f s (%.2f cores busy, other load %.2f); per step min %.4f, "
               "median %.4f, max %.4f s\n", steps, r->s1_s, r->ph_s1.own, r->ph_s1.other, r->step_min,
               r->step_med, r->step_max);
        printf("  stage 2 + export (fuse R1/R2, %sstage 2, save %lld bytes): %.2f s (other load %.2f)\n",
               gptq ? "GPTQ, " : "", r->file_bytes, r->s2_s, r->ph_s2.other);
        printf("  total: %.2f s (other load %.2f); loss step 1 %.4f -> step %ld %.4f\n", r->total_s,
               r->ph_all.other, r->loss[1], steps, r->loss[steps]);
        fflush(stdout);
    }

    /* peak, pass 2 */
    printf("== sgemm peak, after the runs\n");
    measure_peak(threads, &rng, &pk[1], 2);
    double peak = 0, peak_other = 0;
    int ip = 0, il = 0;
    for (int p = 0; p < 2; p++)
        for (int l = 0; l < 2; l++)
            if (pk[p].gflops[l] > peak) {
                peak = pk[p].gflops[l];
                peak_other = pk[p].ph[l].other;
                ip = p;
                il = l;
            }

    /* the FLOP model, checked against the BLIS FLOPs counted over steps 2..N of every run */
    int counting = atomic_load(&blis_counting), att = ATT_ROWS, model_ok = 1;
    double counted = 0; /* per step */
    if (counting) {
        for (long i = 0; i < reps; i++) {
            double ci = (double)(rr[i].blis1 - rr[i].blis0) / (double)(steps - 1);
            if (i == 0)
                counted = ci;
            else if (fabs(ci - counted) > 1e-9 * counted)
                model_ok = 0; /* the runs disagree */
        }
        int hit = -1;
        for (int a = 0; a < ATT_COUNT && hit < 0; a++)
            if (fabs(counted - fm[a].blis) <= 1e-9 * fm[a].blis)
                hit = a;
        if (hit < 0)
            model_ok = 0;
        else
            att = hit;
    }
    const flops *F = &fm[att];
    printf("== stage-1 FLOPs per step (model at the top of bench/bench_train.c; attention: %s)\n", att_name[att]);
    for (int i = 0; i < F_COUNT; i++)
        printf("  %-20s %9.4f GFLOP %5.1f %%%s\n", f_name[i], F->f[i] / 1e9, 100.0 * F->f[i] / F->total,
               att == ATT_ROWS && (i == F_ATT_FWD || i == F_ATT_BWD) ? "  (not BLIS)" : "");
    printf("  %-20s %9.4f GFLOP, of which BLIS sgemm %.4f GFLOP\n", "total", F->total / 1e9, F->blis / 1e9);
    printf("  activations %s (%lld of %lld micro-batches recompute)\n",
           F->n_recomp ? "partly recomputed" : "kept, not recomputed", (long long)F->n_recomp, (long long)M);
    if (!counting)
        printf("  BLIS FLOPs not counted at run time (not linked with -Wl,--wrap=bli_sgemm_ex)\n");
    else if (model_ok)
        printf("  check: BLIS sgemm FLOPs counted at run time over steps 2..%ld: %.6f GFLOP per step = the "
               "model's\n", steps, counted / 1e9);
    else
        printf("  WARNING: BLIS sgemm FLOPs counted at run time: %.6f GFLOP per step; the model gives %.6f "
               "(attention as row kernels) or %.6f (as sgemm): the FLOP model is out of date\n",
               counted / 1e9, fm[ATT_ROWS].blis / 1e9, fm[ATT_GEMM].blis / 1e9);

    /* summary: the fastest run by total time, and the median over the runs */
    int best = 0;
    double *tot = malloc((size_t)reps * sizeof *tot);
    if (!tot)
        return 1;
    for (long i = 0; i < reps; i++) {
        tot[i] = rr[i].total_s;
        if (rr[i].total_s < rr[best].total_s)
            best = (int)i;
    }
    double tot_med = median(tot, (int)reps);
    free(tot);
    const run_result *b = &rr[best];
    double n1 = (double)(steps - 1);
    double gf = F->total * n1 / b->s1_s / 1e9, gf_blis = F->blis * n1 / b->s1_s / 1e9;
    double med_gf = F->total / b->step_med / 1e9;
    char la1[64];
    loadavg(la1, sizeof la1);
    int noisy = b->ph_all.other > NOISY || peak_other > NOISY;
    printf("== summary (%s, %d threads, BLIS arch %s; run %d of %ld, the fastest)\n", cpu, threads, arch, best + 1,
           reps);
    printf("sgemm peak: %.2f GFLOP/s (%d^3, B%s, pass %d; other load %.2f)\n", peak, PEAK_N,
           il == 0 ? "^T" : "", ip + 1, peak_other);
    printf("init + step 1:      %7.2f s   (minus one median step: %.2f s)\n", b->init_s, b->init_s - b->step_med);
    printf("stage 1 (%ld steps): %7.2f s   measured over steps 2..%ld: %.2f s, %.4f s per step (median)\n",
           steps, b->s1_s + b->step_med, steps, b->s1_s, b->step_med);
    printf("stage 2 + export:   %7.2f s\n", b->s2_s);
    printf("total:              %7.2f s   (median of %ld runs: %.2f s; model and text loading apart: %.3f s)\n",
           b->total_s, reps, tot_med, load_s);
    printf("stage-1 forward+backward products: %.2f GFLOP/s over steps 2..%ld (%.3f GFLOP per step) = %.1f %% of "
           "the sgemm peak; at the median step %.2f GFLOP/s = %.1f %%\n", gf, steps, F->total / 1e9,
           100.0 * gf / peak, med_gf, 100.0 * med_gf / peak);
    printf("  of which through BLIS sgemm: %.2f GFLOP/s (%.3f GFLOP per step) = %.1f %% of the peak\n", gf_blis,
           F->blis / 1e9, 100.0 * gf_blis / peak);
    if (steps == 512 && batch == 16 && T == 256)
        printf("acceptance (issue 5): total <= 120 s: %s; goal <= 60 s: %s\n", b->total_s <= 120 ? "yes" : "NO",
               b->total_s <= 60 ? "yes" : "no");
    else
        printf("acceptance (issue 5) needs --steps 512 (batch 16, seq_len 256)\n");
    printf("load average at end: %s (at start: %s); other load during the run %.2f cores\n", la1, la0,
           b->ph_all.other);
    if (noisy)
        printf("WARNING: other processes used more than %.1f cores during the run or the peak sgemm; the "
               "numbers are not a clean measurement\n", NOISY);

    /* JSON */
    char *json = NULL;
    size_t jlen = 0;
    FILE *js = open_memstream(&json, &jlen);
    if (!js)
        return 1;
    fprintf(js, "{\"bench\":\"train_pipeline\",\"cpu\":");
    json_str(js, cpu);
    fprintf(js, ",\"model_path\":");
    json_str(js, path);
    fprintf(js, ",\"cores\":%ld,\"threads\":%d,\"blis_arch\":\"%s\",\"model\":{\"dim\":%lld,\"hidden\":%lld,"
                "\"layers\":%lld,\"heads\":%lld,\"kv_heads\":%lld,\"vocab\":%lld},\"recipe\":\"%s\",\"steps\":%ld,"
                "\"batch\":%lld,\"seq_len\":%lld,\"micro_batches\":%lld,\"micro_batch\":%lld,\"load_s\":%.4f,"
                "\"loadavg_start\":\"%s\",\"loadavg_end\":\"%s\",\"noisy\":%s,",
            cores, threads, arch, (long long)s.d, (long long)s.ff, (long long)s.L, (long long)s.H,
            (long long)s.KV, (long long)s.V, recipe_used, steps, (long long)batch, (long long)T, (long long)M,
            (long long)mb, load_s, la0, la1, noisy ? "true" : "false");
    fprintf(js, "\"weight_round\":\"%s\",\"sgemm_peak_gflops\":%.2f,\"sgemm\":[", gptq ? "gptq" : "rtn", peak);
    for (int p = 0; p < 2; p++)
        for (int l = 0; l < 2; l++)
            fprintf(js, "%s{\"pass\":%d,\"n\":%d,\"transb\":%d,\"gflops\":%.2f,\"other_load\":%.2f}",
                    p + l ? "," : "", p + 1, PEAK_N, l == 0, pk[p].gflops[l], pk[p].ph[l].other);
    fprintf(js, "],\"attention\":\"%s\",\"step_gflop\":{", att == ATT_ROWS ? "rows_causal" : "sgemm_full");
    for (int i = 0; i < F_COUNT; i++)
        fprintf(js, "%s\"%s\":%.6f", i ? "," : "", f_key[i], F->f[i] / 1e9);
    fprintf(js, ",\"total\":%.6f,\"blis\":%.6f},\"blis_counted_step_gflop\":", F->total / 1e9, F->blis / 1e9);
    if (counting)
        fprintf(js, "%.6f", counted / 1e9);
    else
        fprintf(js, "null");
    fprintf(js, ",\"flop_model_ok\":%s,\"recompute_micro_batches\":%lld,\"runs\":[",
            counting ? (model_ok ? "true" : "false") : "null", (long long)F->n_recomp);
    for (long i = 0; i < reps; i++) {
        const run_result *r = &rr[i];
        double g = F->total * n1 / r->s1_s / 1e9;
        fprintf(js, "%s{\"init_plus_step1_s\":%.4f,\"stage1_steps2_to_n_s\":%.4f,\"stage1_est_s\":%.4f,"
                    "\"stage2_export_s\":%.4f,\"total_s\":%.4f,\"step_s\":{\"min\":%.5f,\"median\":%.5f,"
                    "\"max\":%.5f},\"stage1_gflops\":%.3f,\"stage1_ratio_to_peak\":%.4f,"
                    "\"other_load\":{\"init\":%.2f,\"stage1\":%.2f,\"stage2\":%.2f,\"all\":%.2f},"
                    "\"cores_busy_stage1\":%.2f,\"loss_first\":%.5f,\"loss_last\":%.5f,\"qnpu_bytes\":%lld}",
                i ? "," : "", r->init_s, r->s1_s, r->s1_s + r->step_med, r->s2_s, r->total_s, r->step_min,
                r->step_med, r->step_max, g, g / peak, r->ph_init.other, r->ph_s1.other, r->ph_s2.other,
                r->ph_all.other, r->ph_s1.own, r->loss[1], r->loss[steps], r->file_bytes);
    }
    fprintf(js, "],\"best_run\":%d,\"total_s\":%.4f,\"total_median_s\":%.4f,\"stage1_gflops\":%.3f,"
                "\"stage1_ratio_to_peak\":%.4f,\"stage1_blis_gflops\":%.3f,\"stage1_blis_ratio_to_peak\":%.4f}\n",
            best + 1, b->total_s, tot_med, gf, gf / peak, gf_blis, gf_blis / peak);
    fclose(js);
    fputs(json, stdout);
    int rc = 0;
    if (json_path) {
        FILE *jf = fopen(json_path, "w");
        if (!jf || fputs(json, jf) == EOF || fclose(jf) != 0) {
            fprintf(stderr, "bench_train: cannot write %s: %s\n", json_path, strerror(errno));
            rc = 1;
        }
    }
    free(json);
    for (long i = 0; i < reps; i++) {
        free(rr[i].t_step);
        free(rr[i].loss);
    }
    free(rr);
    free(text);
    qnpu_tokenizer_free(tok);
    qnpu_model_free(m);
    qnpu_options_free(opts);
    return rc;
}
