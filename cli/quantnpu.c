/* quantnpu — command-line front end of libquantnpu (public API only).
 *
 *   quantnpu info MODEL [--tensors]
 *   quantnpu generate MODEL [--tokenizer T] [--prompt TEXT] [-n N] [--temp T] [--seed S] [--ids]
 *                           [--ignore-eos]
 *   quantnpu eval MODEL|M.qnpu [--tokenizer T] (--text FILE | --tokens FILE) [--ctx N] [--json]
 *   quantnpu quantize MODEL --recipe R [--calib FILE] [--set KEY=VALUE]... [--train] --out M.qnpu
 *   quantnpu inspect M.qnpu
 *   quantnpu recipe [NAME]
 *   quantnpu report MODEL M.qnpu --text FILE [--ctx N] [--svg F] [--json] [--recipe R] [--set K=V]...
 *   quantnpu export M.qnpu --format onnx|onnx-float|encodings|qnpu -o OUT [--flavor standard|compat]
 *                   [--seq-len N] [--past-len P] [--set K=V]...
 * Common: --threads N, --no-mmap. Exit status: 0 success, 1 library error, 2 usage error. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quantnpu.h"
#include "machine.h"

typedef struct args {
    const char *cmd, *model, *tokenizer, *prompt, *text, *tokens, *recipe, *calib, *out, *engine, *kernels;
    const char *sets[64];
    int n_sets;
    long n, ctx, threads, windows, reps;
    int ctx_given;
    const char *float_model;
    double temp;
    unsigned long long seed;
    int ids, json, tensors, no_mmap, ignore_eos, train;
} args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: quantnpu COMMAND MODEL [options]\n"
            "\n"
            "MODEL is a llama2.c checkpoint, a GGUF file, or a Hugging Face directory.\n"
            "\n"
            "commands:\n"
            "  info      dimensions, format and tensors of a model\n"
            "  generate  generate text (greedy at --temp 0)\n"
            "  eval      window perplexity of a text (docs/perplexity.md); a .qnpu file is\n"
            "            evaluated through the simulated NPU graph\n"
            "  quantize  calibrate a static quantized model and write a .qnpu file (with --train\n"
            "            or optim.train = true, as in the quantnpu-* presets: learn rotations and\n"
            "            scales first, the Quant.npu two-stage pipeline, showing step and loss)\n"
            "  inspect   list every quantization point of a .qnpu file\n"
            "  bench     M.qnpu: integer engine speed: prefill tokens/s at --ctx (default 512) and\n"
            "            integer GOPS against the VNNI peak, decode tokens/s (-n, default 64)\n"
            "            against the memory-bandwidth roofline, all measured in one run\n"
            "  compare   M.qnpu: the integer engine against the simulated graph, per point\n"
            "            (codes that differ), perplexity and top-1 agreement (--windows N)\n"
            "  recipe    list the shipped recipe presets, or print one (quantnpu recipe NAME)\n"
            "  export    M.qnpu --format onnx|onnx-float|encodings|qnpu -o OUT: write the model\n"
            "            for deployment (docs/export.md): ONNX QDQ (--flavor standard|compat),\n"
            "            the float ONNX graph and the QNN encodings JSON; --seq-len N tokens\n"
            "            at positions --past-len P .. (P > 0: K/V cache inputs)\n"
            "  report    MODEL M.qnpu: per quantization point, SQNR and share of the logit\n"
            "            error against the float model (first 8 windows of --text)\n"
            "\n"
            "options:\n"
            "  --tokenizer FILE   llama2.c tokenizer or Hugging Face tokenizer.json (default: embedded,\n"
            "                     tokenizer.bin/tok512.bin beside the checkpoint, tokenizer.json in\n"
            "                     an HF directory)\n"
            "  --prompt TEXT      generate: text to continue (default: start from BOS)\n"
            "  -n N               generate: tokens to generate (default 256)\n"
            "  --temp T           generate: temperature, 0 = greedy (default 0)\n"
            "  --seed S           generate: sampling seed (default 0)\n"
            "  --ids              generate: print the generated token ids on one line\n"
            "  --ignore-eos       generate: do not stop at EOS or BOS\n"
            "  --text FILE        eval, report: text file (paragraphs separated by blank lines)\n"
            "  --tokens FILE      eval, quantize: whitespace-separated token ids instead of text\n"
            "  --ctx N            eval, report: window length (default 256)\n"
            "  --json             eval, report: one JSON object on stdout\n"
            "  --svg FILE         report: draw the shares as an SVG chart (--recipe/--set give\n"
            "                     the rotate.* options used to quantize)\n"
            "  --tensors          info: list every tensor\n"
            "  --recipe R         quantize: a YAML recipe file or a preset name (w8a8, w4a8, ...)\n"
            "  --calib FILE       quantize: calibration text (default: the recipe's calib.text)\n"
            "  --set KEY=VALUE    quantize: override one recipe key (repeatable)\n"
            "  --out FILE         quantize: the .qnpu file to write\n"
            "  --train            quantize: set optim.train = true, the two-stage pipeline:\n"
            "                     stage 1 trains R1/R2 and the rotated tensors' scales\n"
            "                     (optim.steps steps of optim.batch blocks), stage 2 calibrates\n"
            "                     the other points\n"
            "  --engine E         eval: float (float models); for .qnpu files sim (the simulated\n"
            "                     graph, the default) or int (the integer engine)\n"
            "  --kernels K        integer engine kernels: auto, ref, avx2 or vnni (bit-identical)\n"
            "  --windows N        compare: at most N windows of --text (default 8)\n"
            "  --reps N           bench: runs of each measurement, the best counts (default 3)\n"
            "  --float MODEL      bench: also time the float engine's prefill on MODEL\n"
            "  --threads N        worker threads (default: all cores)\n"
            "  --no-mmap          read weights into memory instead of mapping them\n"
            "  --version, --help\n");
}

static int die_usage(const char *msg, const char *arg)
{
    fprintf(stderr, "quantnpu: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    fprintf(stderr, "try 'quantnpu --help'\n");
    return 2;
}

static int fail(qnpu_status s)
{
    fprintf(stderr, "quantnpu: %s: %s\n", qnpu_status_string(s), qnpu_last_error());
    return 1;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->n = 256;
    a->ctx = 256;
    a->windows = 8;
    a->reps = 3;
    if (argc < 3)
        return die_usage("missing COMMAND or MODEL", NULL);
    a->cmd = argv[1];
    a->model = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() do { if (!v) return die_usage("missing value for", o); i++; } while (0)
        if (!strcmp(o, "--tokenizer")) { NEED_VALUE(); a->tokenizer = v; }
        else if (!strcmp(o, "--prompt")) { NEED_VALUE(); a->prompt = v; }
        else if (!strcmp(o, "--text")) { NEED_VALUE(); a->text = v; }
        else if (!strcmp(o, "--tokens")) { NEED_VALUE(); a->tokens = v; }
        else if (!strcmp(o, "-n")) { NEED_VALUE(); if (!parse_long(v, 0, 100000000, &a->n)) return die_usage("bad -n", v); }
        else if (!strcmp(o, "--ctx")) { NEED_VALUE(); if (!parse_long(v, 2, 1 << 24, &a->ctx)) return die_usage("bad --ctx", v); a->ctx_given = 1; }
        else if (!strcmp(o, "--reps")) { NEED_VALUE(); if (!parse_long(v, 1, 1000, &a->reps)) return die_usage("bad --reps", v); }
        else if (!strcmp(o, "--float")) { NEED_VALUE(); a->float_model = v; }
        else if (!strcmp(o, "--threads")) { NEED_VALUE(); if (!parse_long(v, 0, 1024, &a->threads)) return die_usage("bad --threads", v); }
        else if (!strcmp(o, "--seed")) { NEED_VALUE(); a->seed = strtoull(v, NULL, 10); }
        else if (!strcmp(o, "--temp")) {
            NEED_VALUE();
            char *end;
            a->temp = strtod(v, &end);
            if (end == v || *end || !(a->temp >= 0) || a->temp > 100)
                return die_usage("bad --temp", v);
        }
        else if (!strcmp(o, "--recipe")) { NEED_VALUE(); a->recipe = v; }
        else if (!strcmp(o, "--calib")) { NEED_VALUE(); a->calib = v; }
        else if (!strcmp(o, "--out")) { NEED_VALUE(); a->out = v; }
        else if (!strcmp(o, "--engine")) { NEED_VALUE(); a->engine = v; }
        else if (!strcmp(o, "--kernels")) { NEED_VALUE(); a->kernels = v; }
        else if (!strcmp(o, "--windows")) {
            NEED_VALUE();
            if (!parse_long(v, 0, 1L << 30, &a->windows))
                return die_usage("bad --windows", v);
        }
        else if (!strcmp(o, "--set")) {
            NEED_VALUE();
            if (a->n_sets == (int)(sizeof a->sets / sizeof a->sets[0]) || !strchr(v, '='))
                return die_usage("bad --set (KEY=VALUE, at most 64)", v);
            a->sets[a->n_sets++] = v;
        }
        else if (!strcmp(o, "--ids")) a->ids = 1;
        else if (!strcmp(o, "--ignore-eos")) a->ignore_eos = 1;
        else if (!strcmp(o, "--json")) a->json = 1;
        else if (!strcmp(o, "--tensors")) a->tensors = 1;
        else if (!strcmp(o, "--no-mmap")) a->no_mmap = 1;
        else if (!strcmp(o, "--train")) a->train = 1;
        else return die_usage("unknown option", o);
#undef NEED_VALUE
    }
    return 0;
}

/* ---- progress: a bar redrawn in place on a TTY, or a short log ------------------------- */

/* The optional user data of progress_bar (NULL: a plain bar, for a TTY only). */
typedef struct progress {
    const qnpu_optimizer *opt; /* stage-1 training: show the loss of the step just done */
    int tty;                   /* 0: print one line per tenth of the run (a log, not a bar) */
    int64_t shown;             /* not a TTY: the tenth last printed (start at -1) */
} progress;

static int progress_bar(void *user, const char *stage, int64_t done, int64_t total)
{
    progress *p = user;
    double loss = p && p->opt ? qnpu_optimizer_last_loss(p->opt) : NAN;
    if (p && !p->tty) { /* the first step, then every 10 % */
        int64_t tenth = total > 0 ? 10 * done / total : 10;
        if (tenth == p->shown)
            return 0;
        p->shown = tenth;
        fprintf(stderr, "%s  %" PRId64 "/%" PRId64, stage, done, total);
        if (!isnan(loss))
            fprintf(stderr, "  loss %.4f", loss);
        fputc('\n', stderr);
        fflush(stderr);
        return 0;
    }
    int width = 40, fill = total > 0 ? (int)(width * done / total) : width;
    fprintf(stderr, "\r%-8s [", stage);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %" PRId64 "/%" PRId64, done, total);
    if (!isnan(loss))
        fprintf(stderr, "  loss %8.4f", loss);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
    return 0;
}

/* ---- shared setup ---------------------------------------------------------------------- */

typedef struct ctx {
    qnpu_options *opts;
    qnpu_model *model;          /* a float model, or NULL for a .qnpu file */
    qnpu_tokenizer *tok;
    qnpu_float_session *sess;   /* float models */
    qnpu_qmodel *q;             /* a .qnpu file */
    qnpu_session *isess;        /* its integer engine */
} ctx;

static void ctx_free(ctx *c)
{
    qnpu_float_session_free(c->sess);
    qnpu_session_free(c->isess);
    qnpu_qmodel_free(c->q);
    qnpu_tokenizer_free(c->tok);
    qnpu_model_free(c->model);
    qnpu_options_free(c->opts);
}

static int is_qnpu(const char *path);

static int64_t ctx_dim(const ctx *c, qnpu_model_dim which)
{
    int64_t v = 0;
    if (c->model)
        qnpu_model_get_dim(c->model, which, &v);
    else
        qnpu_qmodel_get_dim(c->q, which, &v);
    return v;
}

static qnpu_status ctx_eval(ctx *c, const int32_t *tok, size_t n, float *logits, size_t cap)
{
    return c->isess ? qnpu_session_eval(c->isess, tok, n, 0, logits, cap)
                    : qnpu_float_session_eval(c->sess, tok, n, 0, logits, cap);
}

/* need_tok: 2 = required, 1 = optional. A .qnpu MODEL opens the integer engine. */
static qnpu_status ctx_open(ctx *c, const args *a, int need_tok, int need_session)
{
    memset(c, 0, sizeof *c);
    int quant = is_qnpu(a->model);
    qnpu_status s = qnpu_options_create(&c->opts);
    if (s == QNPU_OK)
        s = qnpu_options_set_int(c->opts, QNPU_P_NUM_THREADS, a->threads);
    if (s == QNPU_OK)
        s = qnpu_options_set_int(c->opts, QNPU_P_MODEL_MMAP, !a->no_mmap);
    if (s == QNPU_OK && a->ctx)
        s = qnpu_options_set_int(c->opts, QNPU_P_EVAL_SEQ_LEN, a->ctx);
    if (s == QNPU_OK && a->kernels)
        s = qnpu_options_set_str(c->opts, QNPU_P_ENGINE_KERNELS, a->kernels);
    int64_t max_seq = 0;
    if (s == QNPU_OK && quant) {
        if ((s = qnpu_qmodel_load(a->model, c->opts, &c->q)) == QNPU_OK)
            qnpu_qmodel_get_dim(c->q, QNPU_DIM_MAX_SEQ, &max_seq);
    } else if (s == QNPU_OK) {
        s = qnpu_model_load(a->model, c->opts, &c->model);
        if (s == QNPU_OK)
            qnpu_model_get_dim(c->model, QNPU_DIM_MAX_SEQ, &max_seq);
    }
    /* Let a session run past the trained context when asked to, as llama.cpp's -c does:
     * --ctx for eval, prompt + -n for generate. */
    int64_t need = !strcmp(a->cmd, "eval") ? a->ctx : (int64_t)(a->prompt ? strlen(a->prompt) : 0) + 2 + a->n;
    if (s == QNPU_OK && need_session && need > max_seq)
        s = qnpu_options_set_int(c->opts, QNPU_P_ENGINE_CTX_SIZE, need);
    if (s == QNPU_OK && quant && need_session)
        s = qnpu_session_create(c->q, c->opts, &c->isess);
    if (s == QNPU_OK && need_tok) {
        if (a->tokenizer)
            s = qnpu_tokenizer_load(a->tokenizer, ctx_dim(c, QNPU_DIM_VOCAB), &c->tok);
        else if (quant)
            s = qnpu_tokenizer_from_qmodel(c->q, &c->tok);
        else
            s = qnpu_tokenizer_from_model(c->model, &c->tok);
        if (s == QNPU_ERR_UNSUPPORTED && need_tok == 1)
            s = QNPU_OK; /* optional: go on without one */
    }
    if (s == QNPU_OK && need_session && !quant)
        s = qnpu_float_session_create(c->model, c->opts, &c->sess);
    return s;
}

/* ---- info ------------------------------------------------------------------------------ */

static int cmd_info(const args *a)
{
    ctx c;
    qnpu_status s = ctx_open(&c, a, 0, 0);
    if (s != QNPU_OK) {
        ctx_free(&c);
        return fail(s);
    }
    static const struct { qnpu_model_dim d; const char *name; } dims[] = {
        {QNPU_DIM_HIDDEN, "hidden"}, {QNPU_DIM_FFN, "ffn"}, {QNPU_DIM_LAYERS, "layers"},
        {QNPU_DIM_HEADS, "heads"}, {QNPU_DIM_KV_HEADS, "kv_heads"}, {QNPU_DIM_HEAD_DIM, "head_dim"},
        {QNPU_DIM_VOCAB, "vocab"}, {QNPU_DIM_MAX_SEQ, "max_seq"}, {QNPU_DIM_ROPE_ORDER, "rope_half"},
        {QNPU_DIM_TIED, "tied"}, {QNPU_DIM_QKV_BIAS, "qkv_bias"}, {QNPU_DIM_BOS, "bos"},
        {QNPU_DIM_EOS, "eos"},
    };
    printf("model:    %s\nformat:   %s\narch:     %s\n", a->model, qnpu_model_format(c.model),
           qnpu_model_arch(c.model));
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        int64_t v = 0;
        qnpu_model_get_dim(c.model, dims[i].d, &v);
        printf("%-9s %" PRId64 "\n", dims[i].name, v);
    }
    double theta = 0, eps = 0;
    qnpu_model_get_hparam(c.model, QNPU_HP_ROPE_THETA, &theta);
    qnpu_model_get_hparam(c.model, QNPU_HP_RMS_EPS, &eps);
    size_t owned = 0, mapped = 0;
    qnpu_model_memory_usage(c.model, &owned, &mapped);
    int64_t nt = qnpu_model_tensor_count(c.model), params = 0;
    for (int64_t i = 0; i < nt; i++) {
        int64_t r, k;
        qnpu_model_tensor_shape(c.model, i, &r, &k);
        params += r * k;
    }
    printf("rope_theta %g\nrms_eps   %g\ntensors   %" PRId64 "\nparams    %" PRId64 "\n"
           "memory    %zu bytes owned, %zu mapped\n", theta, eps, nt, params, owned, mapped);
    for (int64_t i = 0; a->tensors && i < nt; i++) {
        int64_t r, k;
        qnpu_model_tensor_shape(c.model, i, &r, &k);
        printf("  %-32s [%" PRId64 " x %" PRId64 "]\n", qnpu_model_tensor_name(c.model, i), r, k);
    }
    ctx_free(&c);
    return 0;
}

/* ---- generate -------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *st) /* splitmix64 */
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int32_t pick(float *logits, int64_t vocab, double temp, uint64_t *rng)
{
    int32_t best = 0;
    for (int64_t i = 1; i < vocab; i++)
        if (logits[i] > logits[best])
            best = (int32_t)i;
    if (temp <= 0)
        return best;
    double sum = 0, mx = logits[best];
    for (int64_t i = 0; i < vocab; i++)
        sum += exp(((double)logits[i] - mx) / temp);
    double r = (double)(rng_next(rng) >> 11) * 0x1.0p-53 * sum, acc = 0;
    for (int64_t i = 0; i < vocab; i++) {
        acc += exp(((double)logits[i] - mx) / temp);
        if (acc >= r)
            return (int32_t)i;
    }
    return best;
}

static void print_piece(const qnpu_tokenizer *t, int32_t prev, int32_t id)
{
    char buf[256];
    size_t n = 0;
    if (qnpu_tokenizer_decode(t, prev, id, buf, sizeof buf, &n) == QNPU_OK)
        fwrite(buf, 1, n, stdout);
}

static int cmd_generate(const args *a)
{
    ctx c;
    qnpu_status s = ctx_open(&c, a, a->ids && !a->prompt ? 1 : 2, 1);
    if (s != QNPU_OK) {
        ctx_free(&c);
        return fail(s);
    }
    int64_t vocab = ctx_dim(&c, QNPU_DIM_VOCAB), bos = ctx_dim(&c, QNPU_DIM_BOS), eos = ctx_dim(&c, QNPU_DIM_EOS);
    size_t plen = a->prompt ? strlen(a->prompt) : 0, cap = plen + 2, n_prompt = 0;
    int32_t *prompt = malloc(cap * sizeof *prompt);
    float *logits = malloc((size_t)vocab * sizeof *logits);
    int rc = 0;
    if (!prompt || !logits) {
        fprintf(stderr, "quantnpu: out of memory\n");
        rc = 1;
        goto out;
    }
    if (a->prompt)
        s = qnpu_tokenizer_encode(c.tok, a->prompt, plen, 1, prompt, cap, &n_prompt);
    else
        prompt[n_prompt++] = (int32_t)bos;
    if (s == QNPU_OK)
        s = ctx_eval(&c, prompt, n_prompt, logits, (size_t)vocab);
    int32_t prev = prompt[n_prompt - 1];
    if (s == QNPU_OK && !a->ids && c.tok)
        for (size_t i = 1; i < n_prompt; i++)
            print_piece(c.tok, prompt[i - 1], prompt[i]);
    uint64_t rng = a->seed;
    for (long i = 0; s == QNPU_OK && i < a->n; i++) {
        int32_t next = pick(logits, vocab, a->temp, &rng);
        if ((next == eos || next == bos) && !a->ignore_eos)
            break;
        if (a->ids)
            printf(i ? " %d" : "%d", next);
        else
            print_piece(c.tok, prev, next);
        fflush(stdout);
        prev = next;
        s = ctx_eval(&c, &next, 1, logits, (size_t)vocab);
    }
    printf("\n");
    if (s != QNPU_OK)
        rc = fail(s);
out:
    free(prompt);
    free(logits);
    ctx_free(&c);
    return rc;
}

/* ---- eval ------------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Parse whitespace-separated token ids. Returns 0 on a malformed file. */
static int parse_ids(const char *text, int32_t **ids, size_t *n)
{
    size_t cap = 1024, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = text;
    while (v) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX) {
            free(v);
            return 0;
        }
        p = end;
        if (k == cap) {
            int32_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                return 0;
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
    }
    *ids = v;
    *n = k;
    return v != NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void print_result(const args *a, const char *path, const char *engine, double ppl, int64_t scored,
                         double secs)
{
    if (a->json) {
        printf("{\"model\": ");
        json_string(a->model);
        printf(", \"text\": ");
        json_string(path);
        printf(", \"engine\": \"%s\", \"ctx\": %ld, \"ppl\": %.6f, \"nll\": %.8f, "
               "\"tokens_scored\": %" PRId64 ", \"seconds\": %.3f}\n",
               engine, a->ctx, ppl, log(ppl), scored, secs);
    } else {
        printf("ppl %.6f over %" PRId64 " scored tokens (ctx %ld, %s, %.2f s)\n", ppl, scored, a->ctx,
               engine, secs);
    }
}

/* ---- eval --text, streamed (docs/perplexity.md "Long texts") ------------------------------ */

#define EVAL_CHUNK ((size_t)4 << 20) /* bytes of text read at a time */

typedef qnpu_status (*ppl_ids_fn)(ctx *c, const int32_t *ids, size_t n, int64_t w, double *ppl, int64_t *sc);
static qnpu_status ppl_float(ctx *c, const int32_t *ids, size_t n, int64_t w, double *ppl, int64_t *sc)
{
    return qnpu_float_session_perplexity_ids(c->sess, ids, n, w, ppl, sc);
}
static qnpu_status ppl_int(ctx *c, const int32_t *ids, size_t n, int64_t w, double *ppl, int64_t *sc)
{
    return qnpu_session_perplexity_ids(c->isess, ids, n, w, ppl, sc);
}
static qnpu_status ppl_sim(ctx *c, const int32_t *ids, size_t n, int64_t w, double *ppl, int64_t *sc)
{
    return qnpu_qmodel_perplexity_ids(c->q, c->opts, ids, n, w, ppl, sc);
}

/* The perplexity protocol over a text file without holding all of it: the file is read in chunks
 * of EVAL_CHUNK bytes, each cut after its last paragraph separator ("\n\n", found scanning from
 * the chunk's start as qnpu_tokenize_paragraphs does, so the paragraphs are the same as the whole
 * text's; a paragraph longer than a chunk makes the chunk grow), tokenized, and every full window
 * of the token stream is evaluated as soon as it exists; the tokens that do not fill a window wait
 * for the next chunk; at the end the remainder is the final window (scored if >= 2 tokens). Memory
 * stays at about a chunk of text and its ids whatever the file size. The windows are those of the
 * whole stream, so the result is the whole-text perplexity up to the rounding of combining each
 * call's mean log-likelihood (relative 1e-15). */
static qnpu_status eval_stream(FILE *f, ctx *c, int64_t w, ppl_ids_fn fn, double *ppl, int64_t *scored)
{
    size_t cap = EVAL_CHUNK, fill = 0, ncarry = 0, cap_carry = 0;
    const char *env = getenv("QUANTNPU_EVAL_CHUNK"); /* smaller chunks, for the tests */
    if (env && atol(env) >= 16)
        cap = (size_t)atol(env);
    char *buf = malloc(cap);
    int32_t *carry = NULL;
    double nll = 0;
    int64_t total = 0;
    qnpu_status s = buf ? QNPU_OK : QNPU_ERR_NO_MEMORY;
    int eof = 0;
    while (s == QNPU_OK && !eof) {
        size_t r = fread(buf + fill, 1, cap - fill, f);
        fill += r;
        eof = r == 0 || feof(f);
        if (ferror(f)) {
            s = QNPU_ERR_IO;
            break;
        }
        /* the cut: past the last separator of the left-to-right scan (everything, at the end) */
        size_t cut = 0;
        for (size_t e = 0; e + 1 < fill; e++)
            if (buf[e] == '\n' && buf[e + 1] == '\n')
                cut = e + 2, e++;
        if (eof)
            cut = fill;
        if (cut == 0) { /* no separator yet: a longer chunk */
            if (fill == cap) {
                char *nb = realloc(buf, 2 * cap);
                if (!nb) {
                    s = QNPU_ERR_NO_MEMORY;
                    break;
                }
                buf = nb, cap *= 2;
            }
            continue;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        qnpu_status t = qnpu_tokenize_paragraphs(c->tok, buf, cut, &ids, &n);
        if (t != QNPU_OK && t != QNPU_ERR_INVALID_ARG) /* INVALID_ARG: only blank lines here */
            s = t;
        if (s == QNPU_OK && n) {
            if (ncarry + n > cap_carry) {
                size_t nc = 2 * (ncarry + n);
                int32_t *cc = realloc(carry, nc * sizeof *cc);
                if (!cc)
                    s = QNPU_ERR_NO_MEMORY;
                else
                    carry = cc, cap_carry = nc;
            }
            if (s == QNPU_OK)
                memcpy(carry + ncarry, ids, n * sizeof *ids), ncarry += n;
        }
        qnpu_free(ids);
        memmove(buf, buf + cut, fill - cut);
        fill -= cut;
        /* every full window now; the last one only at the end of the file */
        size_t full = (ncarry / (size_t)w) * (size_t)w;
        if (eof && (ncarry - full >= 2 || (total == 0 && full == 0)))
            full = ncarry; /* the final window (or the protocol's error for too few tokens) */
        if (s == QNPU_OK && full) {
            double p;
            int64_t k;
            s = fn(c, carry, full, w, &p, &k);
            if (s == QNPU_OK) {
                nll += log(p) * (double)k;
                total += k;
            }
            memmove(carry, carry + full, (ncarry - full) * sizeof *carry);
            ncarry -= full;
        }
    }
    free(buf);
    free(carry);
    if (s == QNPU_ERR_NO_MEMORY || s == QNPU_ERR_IO)
        fprintf(stderr, "quantnpu: reading the text: %s\n", s == QNPU_ERR_IO ? strerror(errno) : "out of memory");
    if (s == QNPU_OK && total == 0) {
        fprintf(stderr, "quantnpu: the text has fewer than 2 tokens\n");
        s = QNPU_ERR_INVALID_ARG;
    }
    if (s == QNPU_OK) {
        *ppl = exp(nll / (double)total);
        *scored = total;
    }
    return s;
}

/* 1 if the file starts with the .qnpu magic */
static int is_qnpu(const char *path)
{
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(magic, "QNPU", 4);
}

/* eval of a .qnpu file: the simulated NPU graph (--engine sim) or the integer engine (int) */
static int eval_qnpu(const args *a, const char *path, char *data, size_t len, FILE *tf)
{
    const char *engine = a->engine ? a->engine : "sim";
    int integer = !strcmp(engine, "int");
    if (!integer && strcmp(engine, "sim"))
        return die_usage("a .qnpu file is evaluated with --engine sim or --engine int, not", engine);
    ctx c;
    int32_t *ids = NULL;
    size_t n = 0;
    qnpu_status s = ctx_open(&c, a, a->text ? 2 : 0, integer);
    if (s == QNPU_OK && !a->text && !parse_ids(data, &ids, &n)) {
        fprintf(stderr, "quantnpu: %s: not a list of integer token ids\n", path);
        ctx_free(&c);
        return 1;
    }
    if (s == QNPU_OK && integer && isatty(STDERR_FILENO))
        qnpu_session_set_progress(c.isess, progress_bar, NULL);
    double ppl = 0, t0 = now();
    int64_t scored = 0;
    if (s == QNPU_OK && a->text)
        s = eval_stream(tf, &c, a->ctx, integer ? ppl_int : ppl_sim, &ppl, &scored);
    else if (s == QNPU_OK && integer)
        s = qnpu_session_perplexity_ids(c.isess, ids, n, a->ctx, &ppl, &scored);
    else if (s == QNPU_OK)
        s = qnpu_qmodel_perplexity_ids(c.q, c.opts, ids, n, a->ctx, &ppl, &scored);
    double secs = now() - t0;
    free(ids);
    ctx_free(&c);
    if (s != QNPU_OK)
        return fail(s);
    print_result(a, path, engine, ppl, scored, secs);
    return 0;
}

static int cmd_eval(const args *a)
{
    if (!a->text == !a->tokens)
        return die_usage("eval needs exactly one of --text FILE or --tokens FILE", NULL);
    const char *path = a->text ? a->text : a->tokens;
    size_t len = 0;
    /* a text is streamed (eval_stream), token ids are read whole */
    FILE *tf = a->text ? fopen(path, "rb") : NULL;
    char *data = a->text ? NULL : slurp(path, &len);
    if (a->text ? !tf : !data) {
        fprintf(stderr, "quantnpu: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (is_qnpu(a->model)) {
        int rc = eval_qnpu(a, path, data, len, tf);
        free(data);
        if (tf)
            fclose(tf);
        return rc;
    }
    if (a->engine && strcmp(a->engine, "float")) {
        free(data);
        if (tf)
            fclose(tf);
        return die_usage("a float model is evaluated with --engine float", NULL);
    }
    ctx c;
    qnpu_status s = ctx_open(&c, a, a->text ? 2 : 0, 1);
    int32_t *ids = NULL;
    size_t n = 0;
    if (s == QNPU_OK && a->tokens && !parse_ids(data, &ids, &n)) {
        fprintf(stderr, "quantnpu: %s: not a list of integer token ids\n", path);
        free(data);
        ctx_free(&c);
        return 1;
    }
    (void)len;
    if (s == QNPU_OK && isatty(STDERR_FILENO))
        qnpu_float_session_set_progress(c.sess, progress_bar, NULL);
    double ppl = 0, t0 = now();
    int64_t scored = 0;
    if (s == QNPU_OK && a->text)
        s = eval_stream(tf, &c, a->ctx, ppl_float, &ppl, &scored);
    else if (s == QNPU_OK)
        s = qnpu_float_session_perplexity_ids(c.sess, ids, n, a->ctx, &ppl, &scored);
    double secs = now() - t0;
    free(ids);
    free(data);
    if (tf)
        fclose(tf);
    ctx_free(&c);
    if (s != QNPU_OK)
        return fail(s);
    print_result(a, path, "float", ppl, scored, secs);
    return 0;
}

/* ---- bench ------------------------------------------------------------------------------ */

/* Weight bytes of linear point `name` ("layer3.down.w", "lm_head.w") as the engine stores them. */
static double weight_bytes(const qnpu_qmodel *q, const char *name, int64_t rows, int64_t cols)
{
    for (int64_t i = qnpu_qmodel_qp_count(q) - 1; i >= 0; i--) {
        const char *nm;
        int bits = 8;
        qnpu_qmodel_qp_info(q, i, &nm, &bits, NULL, NULL, NULL);
        if (!strcmp(nm, name))
            return (double)rows * (double)(bits <= 4 ? (cols + 1) / 2 : cols);
    }
    return 0;
}

/* quantnpu bench M.qnpu: prefill and decode speed of the integer engine, with the machine's
 * integer peak and read bandwidth measured in the same run. */
static int cmd_bench(const args *a)
{
    if (!is_qnpu(a->model))
        return die_usage("bench needs a .qnpu file, not", a->model);
    args b = *a;
    b.ctx = a->ctx_given ? a->ctx : 512;
    b.n = a->n == 256 ? 64 : a->n; /* -n default for bench: 64 decode steps */
    b.cmd = "eval";
    ctx c;
    qnpu_status s = ctx_open(&c, &b, 0, 0);
    int64_t d = 0, ff = 0, L = 0, H = 0, KV = 0, dh = 0, V = 0;
    if (s == QNPU_OK) {
        d = ctx_dim(&c, QNPU_DIM_HIDDEN), ff = ctx_dim(&c, QNPU_DIM_FFN), L = ctx_dim(&c, QNPU_DIM_LAYERS);
        H = ctx_dim(&c, QNPU_DIM_HEADS), KV = ctx_dim(&c, QNPU_DIM_KV_HEADS), dh = ctx_dim(&c, QNPU_DIM_HEAD_DIM);
        V = ctx_dim(&c, QNPU_DIM_VOCAB);
        s = qnpu_options_set_int(c.opts, QNPU_P_ENGINE_CTX_SIZE, b.ctx + b.n);
    }
    if (s == QNPU_OK)
        s = qnpu_session_create(c.q, c.opts, &c.isess);
    if (s != QNPU_OK) {
        ctx_free(&c);
        return fail(s);
    }
    int threads = (int)(a->threads ? a->threads : sysconf(_SC_NPROCESSORS_ONLN));
    long T = b.ctx;
    int32_t *ids = malloc((size_t)(T + b.n) * sizeof *ids);
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!ids || !logits) {
        free(ids);
        free(logits);
        ctx_free(&c);
        fprintf(stderr, "quantnpu: out of memory\n");
        return 1;
    }
    uint64_t rng = a->seed * 2654435761u + 12345;
    for (long i = 0; i < T + b.n; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((rng >> 33) % (uint64_t)V);
    }
    /* operations: every linear, Q·Kᵀ and P·V over all keys of the window, the head on 1 row */
    double qd = (double)(H * dh), kvd = (double)(KV * dh);
    double lin_mac = (double)d * (qd + 2 * kvd) + qd * (double)d + 3.0 * (double)d * (double)ff;
    double pre_ops = 2.0 * ((double)T * (double)L * (lin_mac + 2.0 * (double)H * (double)T * (double)dh) +
                            (double)d * (double)V);
    double w_bytes = 0;
    static const char *const lin[] = {"q", "k", "v", "o", "gate", "up", "down"};
    const int64_t rows[] = {H * dh, KV * dh, KV * dh, d, ff, ff, d}, cols[] = {d, d, d, H * dh, d, d, ff};
    char name[64];
    for (int64_t l = 0; l < L; l++)
        for (int k = 0; k < 7; k++) {
            snprintf(name, sizeof name, "layer%lld.%s.w", (long long)l, lin[k]);
            w_bytes += weight_bytes(c.q, name, rows[k], cols[k]);
        }
    w_bytes += weight_bytes(c.q, "lm_head.w", V, d);

    const char *what;
    double peak = machine_int_peak_gops(threads, 0.5, &what);
    double bw = machine_read_gbs(threads, (size_t)1 << 30, 10);
    double best_pre = 1e30, best_dec = 1e30, fl_best = 0;
    for (long r = 0; s == QNPU_OK && r < a->reps; r++) {
        qnpu_session_reset(c.isess);
        double t0 = now();
        s = qnpu_session_eval(c.isess, ids, (size_t)T, 0, logits, (size_t)V);
        double t1 = now();
        for (long i = 0; s == QNPU_OK && i < b.n; i++)
            s = qnpu_session_eval(c.isess, &ids[T + i], 1, 0, logits, (size_t)V);
        double t2 = now();
        best_pre = t1 - t0 < best_pre ? t1 - t0 : best_pre;
        if (b.n)
            best_dec = (t2 - t1) / (double)b.n < best_dec ? (t2 - t1) / (double)b.n : best_dec;
    }
    if (s == QNPU_OK && a->float_model) {
        qnpu_model *fm = NULL;
        qnpu_float_session *fs = NULL;
        s = qnpu_model_load(a->float_model, c.opts, &fm);
        if (s == QNPU_OK)
            s = qnpu_float_session_create(fm, c.opts, &fs);
        for (long r = 0; s == QNPU_OK && r < a->reps; r++) {
            qnpu_float_session_reset(fs);
            double t0 = now();
            s = qnpu_float_session_eval(fs, ids, (size_t)T, 0, logits, (size_t)V);
            double tps = (double)T / (now() - t0);
            fl_best = tps > fl_best ? tps : fl_best;
        }
        qnpu_float_session_free(fs);
        qnpu_model_free(fm);
    }
    if (s == QNPU_OK) {
        /* bytes a decode step must read: every weight, plus the K and V caches it attends over */
        double kv_bytes = 2.0 * (double)L * kvd * ((double)T + (double)b.n / 2);
        double tok_bytes = w_bytes + kv_bytes, roof = bw * 1e9 / tok_bytes;
        double pre_tps = (double)T / best_pre, gops = pre_ops / best_pre * 1e-9, dec_tps = 1.0 / best_dec;
        printf("model %s: %lld layers, dim %lld, ffn %lld, %lld heads (%lld KV), vocab %lld; %.1f MB of weights\n",
               a->model, (long long)L, (long long)d, (long long)ff, (long long)H, (long long)KV, (long long)V,
               w_bytes * 1e-6);
        printf("threads %d, best of %ld runs\n", threads, a->reps);
        printf("integer peak (%s, %d threads): %.1f GOPS\n", what, threads, peak);
        printf("read bandwidth (%d threads, 1 GiB): %.2f GB/s\n", threads, bw);
        printf("prefill %ld tokens: %.3f s = %.1f tokens/s, %.1f GOPS", T, best_pre, pre_tps, gops);
        if (peak > 0)
            printf(" = %.1f %% of peak", 100.0 * gops / peak);
        printf("\n");
        if (a->float_model)
            printf("float engine prefill: %.1f tokens/s; integer speed-up %.2fx\n", fl_best, pre_tps / fl_best);
        if (b.n)
            printf("decode %ld tokens after the prompt: %.2f ms/token = %.2f tokens/s; roofline %.2f tokens/s "
                   "(%.1f MB/token) -> %.1f %%\n", b.n, 1e3 * best_dec, dec_tps, roof, tok_bytes * 1e-6,
                   100.0 * dec_tps / roof);
    }
    free(ids);
    free(logits);
    ctx_free(&c);
    return s == QNPU_OK ? 0 : fail(s);
}

/* ---- compare ---------------------------------------------------------------------------- */

/* The integer engine against the simulated graph, point by point (qnpu_compare_run). */
static int cmd_compare(const args *a)
{
    if (!is_qnpu(a->model))
        return die_usage("compare needs a .qnpu file, not", a->model);
    if (!a->text)
        return die_usage("compare needs --text FILE", NULL);
    size_t len = 0;
    char *data = slurp(a->text, &len);
    if (!data) {
        fprintf(stderr, "quantnpu: cannot read %s: %s\n", a->text, strerror(errno));
        return 1;
    }
    ctx c;
    int32_t *ids = NULL;
    size_t n = 0;
    qnpu_compare *cmp = NULL;
    qnpu_status s = ctx_open(&c, a, 2, 0);
    if (s == QNPU_OK)
        s = qnpu_tokenize_paragraphs(c.tok, data, len, &ids, &n);
    if (s == QNPU_OK)
        s = qnpu_compare_run(c.q, c.opts, ids, n, a->ctx, a->windows, &cmp);
    double ps = 0, pi = 0, top1 = 0;
    int64_t scored = 0, total = 0, bad = 0;
    if (s == QNPU_OK)
        s = qnpu_compare_totals(cmp, &ps, &pi, &top1, &scored);
    int64_t count = qnpu_compare_count(cmp);
    if (s == QNPU_OK && a->json)
        printf("{\"model\": \"%s\", \"ctx\": %ld, \"points\": [", a->model, a->ctx);
    for (int64_t i = 0; s == QNPU_OK && i < count; i++) {
        const char *name;
        int64_t codes, mism, maxd;
        qnpu_compare_point(cmp, i, &name, &codes, &mism, &maxd);
        total += codes, bad += mism;
        if (a->json)
            printf("%s\n  {\"name\": \"%s\", \"codes\": %" PRId64 ", \"mismatched\": %" PRId64
                   ", \"max_diff\": %" PRId64 "}", i ? "," : "", name, codes, mism, maxd);
        else
            printf("%-22s %10" PRId64 " codes  %8.4f %% differ  max %" PRId64 "\n", name, codes,
                   100.0 * (double)mism / (double)codes, maxd);
    }
    if (s == QNPU_OK && a->json)
        printf("],\n \"codes\": %" PRId64 ", \"mismatched\": %" PRId64 ", \"ppl_sim\": %.6f, \"ppl_int\": %.6f, "
               "\"top1_agreement\": %.6f, \"tokens_scored\": %" PRId64 "}\n", total, bad, ps, pi, top1, scored);
    else if (s == QNPU_OK)
        printf("all points: %" PRId64 " of %" PRId64 " codes differ (%.4f %%); ppl sim %.6f, int %.6f; "
               "top-1 agreement %.4f over %" PRId64 " positions\n", bad, total,
               100.0 * (double)bad / (double)(total ? total : 1), ps, pi, top1, scored);
    qnpu_compare_free(cmp);
    qnpu_free(ids);
    free(data);
    ctx_free(&c);
    return s == QNPU_OK ? 0 : fail(s);
}

/* ---- quantize and inspect ---------------------------------------------------------------- */

/* The mixed-precision report of a --train run (qnpu_optimizer_report_json), on stderr when the
 * selection changed the bit-width of any linear input. */
static void print_mixed_report(const qnpu_optimizer *opt)
{
    size_t need = 0;
    if (qnpu_optimizer_report_json(opt, NULL, 0, &need) != QNPU_ERR_BUFFER_TOO_SMALL || !need)
        return;
    char *buf = malloc(need);
    long long changed = 0;
    if (buf && qnpu_optimizer_report_json(opt, buf, need, NULL) == QNPU_OK &&
        sscanf(buf, "{\"changed\": %lld", &changed) == 1 && changed > 0)
        fprintf(stderr, "quantnpu: mixed precision changed %lld linear inputs:\n%s", changed, buf);
    free(buf);
}

static int cmd_quantize(const args *a)
{
    if (!a->recipe || !a->out)
        return die_usage("quantize needs --recipe R and --out FILE", NULL);
    if (a->calib && a->tokens)
        return die_usage("quantize takes --calib FILE (text) or --tokens FILE (ids), not both", NULL);
    ctx c;
    qnpu_status s = ctx_open(&c, a, a->tokens ? 1 : 2, 0);
    qnpu_calibrator *cal = NULL;
    qnpu_optimizer *opt = NULL;
    qnpu_qmodel *q = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n_ids = 0;
    if (s == QNPU_OK)
        s = qnpu_options_load_recipe(c.opts, a->recipe);
    for (int i = 0; s == QNPU_OK && i < a->n_sets; i++) {
        char key[128];
        const char *eq = strchr(a->sets[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - a->sets[i]), a->sets[i]);
        qnpu_param p;
        s = qnpu_param_from_name(key, &p);
        if (s == QNPU_OK)
            s = qnpu_options_set_str(c.opts, p, eq + 1);
    }
    if (s == QNPU_OK && a->threads)
        s = qnpu_options_set_int(c.opts, QNPU_P_NUM_THREADS, a->threads);
    if (s == QNPU_OK && a->train) /* --train is optim.train = true */
        s = qnpu_options_set_int(c.opts, QNPU_P_OPTIM_TRAIN, 1);
    int64_t train = 0;
    if (s == QNPU_OK)
        s = qnpu_options_get_int(c.opts, QNPU_P_OPTIM_TRAIN, &train);
    const char *calib = a->tokens ? a->tokens : a->calib;
    if (s == QNPU_OK && !calib)
        s = qnpu_options_get_str(c.opts, QNPU_P_CALIB_TEXT, &calib);
    if (s == QNPU_OK && (!calib || !*calib)) {
        ctx_free(&c);
        return die_usage("quantize needs calibration data: --calib FILE, --tokens FILE or calib.text in the "
                         "recipe", NULL);
    }
    if (s == QNPU_OK && !(text = slurp(calib, &len))) {
        fprintf(stderr, "quantnpu: cannot read %s: %s\n", calib, strerror(errno));
        ctx_free(&c);
        return 1;
    }
    if (s == QNPU_OK && a->tokens && !parse_ids(text, &ids, &n_ids)) {
        fprintf(stderr, "quantnpu: %s: not a list of integer token ids\n", calib);
        free(text);
        ctx_free(&c);
        return 1;
    }
    double t0 = now();
    progress prog = {NULL, isatty(STDERR_FILENO), -1};
    if (s == QNPU_OK && train) {
        s = qnpu_optimizer_create(c.model, c.tok, c.opts, &opt);
        prog.opt = opt;
        if (s == QNPU_OK) /* step and loss: a bar on a TTY, else a line per 10 % */
            qnpu_optimizer_set_progress(opt, progress_bar, &prog);
        if (s == QNPU_OK)
            s = a->tokens ? qnpu_optimizer_run_ids(opt, ids, n_ids, &q) : qnpu_optimizer_run(opt, text, len, &q);
    } else if (s == QNPU_OK) {
        s = qnpu_calibrator_create(c.model, c.tok, c.opts, &cal);
        if (s == QNPU_OK && isatty(STDERR_FILENO))
            qnpu_calibrator_set_progress(cal, progress_bar, NULL);
        if (s == QNPU_OK)
            s = a->tokens ? qnpu_calibrator_run_ids(cal, ids, n_ids, &q) : qnpu_calibrator_run(cal, text, len, &q);
    }
    if (s == QNPU_OK)
        s = qnpu_qmodel_save(q, a->out);
    if (s == QNPU_OK)
        fprintf(stderr, "quantnpu: wrote %s (%lld quantization points, %.1f s)\n", a->out,
                (long long)qnpu_qmodel_qp_count(q), now() - t0);
    if (s == QNPU_OK && opt)
        print_mixed_report(opt);
    free(ids);
    free(text);
    qnpu_qmodel_free(q);
    qnpu_calibrator_free(cal);
    qnpu_optimizer_free(opt);
    ctx_free(&c);
    return s == QNPU_OK ? 0 : fail(s);
}

static int cmd_inspect(const args *a)
{
    qnpu_qmodel *q;
    qnpu_status s = qnpu_qmodel_load(a->model, NULL, &q);
    if (s != QNPU_OK)
        return fail(s);
    printf("%-28s %4s %-6s %14s %6s\n", "point", "bits", "scheme", "scale", "zero");
    for (int64_t i = 0; i < qnpu_qmodel_qp_count(q); i++) {
        const char *name;
        int bits, sym;
        double scale;
        int32_t zero;
        qnpu_qmodel_qp_info(q, i, &name, &bits, &sym, &scale, &zero);
        if (bits)
            printf("%-28s %4d %-6s %14.8g %6d\n", name, bits, sym ? "sym" : "asym", scale, zero);
        else
            printf("%-28s %4s %-6s %14s %6s\n", name, "-", "float", "-", "-");
    }
    qnpu_qmodel_free(q);
    return 0;
}

/* ---- report ------------------------------------------------------------------------------ */

typedef struct ranked { double share; int64_t i; } ranked;

static int by_share_desc(const void *x, const void *y)
{
    const ranked *a = x, *b = y;
    if (a->share != b->share)
        return a->share > b->share ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

static void json_num(double v)
{
    if (isfinite(v))
        printf("%.9g", v);
    else
        printf("null");
}

/* quantnpu report MODEL M.qnpu --text FILE [--ctx N] [--svg F] [--json] [--recipe R] [--set K=V]:
 * per point, SQNR and share of the logit error on the first 8 windows of the text. M.qnpu and
 * --svg F are taken out of argv here; parse_args reads the rest. */
static int cmd_report(int argc, char **argv)
{
    if (argc < 4 || argv[3][0] == '-')
        return die_usage("report needs MODEL and M.qnpu", NULL);
    const char *qpath = argv[3], *svg = NULL;
    char *av[512];
    int ac = 0;
    for (int i = 0; i < argc; i++) {
        if (i == 3)
            continue;
        if (i > 3 && !strcmp(argv[i], "--svg")) {
            if (i + 1 >= argc)
                return die_usage("missing value for", "--svg");
            svg = argv[++i];
        } else if (ac < 512) {
            av[ac++] = argv[i];
        } else {
            return die_usage("too many arguments", NULL);
        }
    }
    args a;
    int rc = parse_args(ac, av, &a);
    if (rc)
        return rc;
    if (!a.text)
        return die_usage("report needs --text FILE", NULL);
    size_t len = 0;
    char *text = slurp(a.text, &len);
    if (!text) {
        fprintf(stderr, "quantnpu: cannot read %s: %s\n", a.text, strerror(errno));
        return 1;
    }
    ctx c;
    qnpu_qmodel *q = NULL;
    qnpu_tokenizer *t = NULL;
    qnpu_report *r = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    qnpu_status s = ctx_open(&c, &a, 0, 0);
    if (s == QNPU_OK && a.recipe) /* the rotate.* options must be those used to quantize */
        s = qnpu_options_load_recipe(c.opts, a.recipe);
    for (int i = 0; s == QNPU_OK && i < a.n_sets; i++) {
        char key[128];
        const char *eq = strchr(a.sets[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - a.sets[i]), a.sets[i]);
        qnpu_param p;
        s = qnpu_param_from_name(key, &p);
        if (s == QNPU_OK)
            s = qnpu_options_set_str(c.opts, p, eq + 1);
    }
    if (s == QNPU_OK && a.threads)
        s = qnpu_options_set_int(c.opts, QNPU_P_NUM_THREADS, a.threads);
    if (s == QNPU_OK)
        s = qnpu_qmodel_load(qpath, c.opts, &q);
    if (s == QNPU_OK && a.tokenizer) {
        int64_t vocab = 0;
        qnpu_qmodel_get_dim(q, QNPU_DIM_VOCAB, &vocab);
        s = qnpu_tokenizer_load(a.tokenizer, vocab, &t);
    } else if (s == QNPU_OK) {
        s = qnpu_tokenizer_from_qmodel(q, &t);
    }
    if (s == QNPU_OK)
        s = qnpu_tokenize_paragraphs(t, text, len, &ids, &n);
    if (n > (size_t)(8 * a.ctx))
        n = (size_t)(8 * a.ctx);
    if (s == QNPU_OK)
        s = qnpu_report_create(c.model, q, c.opts, ids, n, a.ctx, &r);
    if (s == QNPU_OK && svg && (s = qnpu_report_write_svg(r, svg)) == QNPU_OK)
        fprintf(stderr, "quantnpu: wrote %s\n", svg);
    int64_t count = qnpu_report_count(r);
    ranked *order = s == QNPU_OK ? malloc((size_t)(count > 0 ? count : 1) * sizeof *order) : NULL;
    if (order) {
        double pf, pq, mse;
        qnpu_report_totals(r, &pf, &pq, &mse);
        for (int64_t i = 0; i < count; i++) {
            order[i].i = i;
            qnpu_report_point(r, i, NULL, NULL, NULL, NULL, &order[i].share);
        }
        qsort(order, (size_t)count, sizeof *order, by_share_desc);
        if (a.json) {
            printf("{\"model\": ");
            json_string(a.model);
            printf(", \"qnpu\": ");
            json_string(qpath);
            printf(", \"text\": ");
            json_string(a.text);
            printf(", \"ctx\": %ld, \"windows\": %zu, \"ppl_float\": ", a.ctx, n / (size_t)a.ctx);
            json_num(pf);
            printf(", \"ppl_quant\": ");
            json_num(pq);
            printf(", \"logit_mse\": ");
            json_num(mse);
            printf(", \"points\": [");
        } else {
            printf("%-28s %4s %9s %8s\n", "point", "bits", "SQNR dB", "share %");
        }
        for (int64_t k = 0; k < count && (a.json || k < 30); k++) {
            const char *name;
            int bits;
            double sq, only, share;
            qnpu_report_point(r, a.json ? k : order[k].i, &name, &bits, &sq, &only, &share);
            if (a.json) {
                printf("%s\n  {\"name\": ", k ? "," : "");
                json_string(name);
                printf(", \"bits\": %d, \"sqnr_db\": ", bits);
                json_num(sq);
                printf(", \"mse_only\": ");
                json_num(only);
                printf(", \"share\": ");
                json_num(share);
                printf("}");
            } else if (bits) {
                printf("%-28s %4d %9.2f %8.3f\n", name, bits, sq, 100.0 * share);
            } else {
                printf("%-28s %4s %9s %8s\n", name, "-", "-", "-");
            }
        }
        if (a.json)
            printf("\n]}\n");
        else
            printf("(top %lld of %lld points by share of the logit MSE)\nppl float %.4f, quantized %.4f "
                   "(%+.2f %%); logit MSE %.6g over %zu windows of %ld tokens\n",
                   (long long)(count < 30 ? count : 30), (long long)count, pf, pq, 100.0 * (pq / pf - 1.0),
                   mse, n / (size_t)a.ctx, a.ctx);
    } else if (s == QNPU_OK) {
        fprintf(stderr, "quantnpu: out of memory\n");
    }
    int ok = s == QNPU_OK && order;
    free(order);
    free(text);
    qnpu_free(ids);
    qnpu_report_free(r);
    qnpu_tokenizer_free(t);
    qnpu_qmodel_free(q);
    ctx_free(&c);
    return ok ? 0 : s != QNPU_OK ? fail(s) : 1;
}

/* quantnpu recipe [NAME]: list the shipped presets, or print one preset's YAML */
/* quantnpu export M.qnpu --format F -o OUT [--flavor standard|compat] [--seq-len N] [--set K=V]... */
static int cmd_export(int argc, char **argv)
{
    static const struct { const char *name; qnpu_export_format fmt; } formats[] = {
        {"onnx", QNPU_EXPORT_ONNX_QDQ}, {"onnx-float", QNPU_EXPORT_ONNX_FLOAT},
        {"encodings", QNPU_EXPORT_ENCODINGS}, {"qnpu", QNPU_EXPORT_QNPU}};
    const char *model = NULL, *format = NULL, *out = NULL, *flavor = NULL, *seq_len = NULL, *past_len = NULL;
    const char *sets[64];
    int n_sets = 0;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (o[0] != '-') {
            if (model)
                return die_usage("export takes one M.qnpu, not also", o);
            model = o;
            continue;
        }
        if (!v)
            return die_usage("missing value for", o);
        i++;
        if (!strcmp(o, "--format")) format = v;
        else if (!strcmp(o, "-o") || !strcmp(o, "--out")) out = v;
        else if (!strcmp(o, "--flavor")) flavor = v;
        else if (!strcmp(o, "--seq-len")) seq_len = v;
        else if (!strcmp(o, "--past-len")) past_len = v;
        else if (!strcmp(o, "--set")) {
            if (n_sets == 64 || !strchr(v, '='))
                return die_usage("bad --set (KEY=VALUE, at most 64)", v);
            sets[n_sets++] = v;
        }
        else return die_usage("unknown option", o);
    }
    if (!model || !format || !out)
        return die_usage("export needs M.qnpu, --format onnx|onnx-float|encodings|qnpu and -o OUT", NULL);
    int f = -1;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(format, formats[i].name))
            f = (int)i;
    if (f < 0)
        return die_usage("--format is onnx, onnx-float, encodings or qnpu, not", format);
    qnpu_options *opts = NULL;
    qnpu_qmodel *q = NULL;
    qnpu_exporter *e = NULL;
    qnpu_status s = qnpu_options_create(&opts);
    for (int i = 0; s == QNPU_OK && i < n_sets; i++) {
        char key[128];
        const char *eq = strchr(sets[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - sets[i]), sets[i]);
        qnpu_param p;
        s = qnpu_param_from_name(key, &p);
        if (s == QNPU_OK)
            s = qnpu_options_set_str(opts, p, eq + 1);
    }
    qnpu_param p;
    if (s == QNPU_OK && flavor && (s = qnpu_param_from_name("export.onnx_flavor", &p)) == QNPU_OK)
        s = qnpu_options_set_str(opts, p, flavor);
    if (s == QNPU_OK && seq_len && (s = qnpu_param_from_name("export.seq_len", &p)) == QNPU_OK)
        s = qnpu_options_set_str(opts, p, seq_len);
    if (s == QNPU_OK && past_len && (s = qnpu_param_from_name("export.past_len", &p)) == QNPU_OK)
        s = qnpu_options_set_str(opts, p, past_len);
    if (s == QNPU_OK)
        s = qnpu_qmodel_load(model, opts, &q);
    if (s == QNPU_OK)
        s = qnpu_exporter_create(q, opts, &e);
    double t0 = now();
    if (s == QNPU_OK)
        s = qnpu_exporter_write(e, formats[f].fmt, out);
    qnpu_exporter_free(e);
    qnpu_qmodel_free(q);
    qnpu_options_free(opts);
    if (s != QNPU_OK)
        return fail(s);
    fprintf(stderr, "quantnpu: wrote %s (%s, %.1f s)\n", out, format, now() - t0);
    return 0;
}

static int cmd_recipe(int argc, char **argv)
{
    if (argc < 3) {
        for (int i = 0; qnpu_recipe_preset_name(i); i++)
            printf("%s\n", qnpu_recipe_preset_name(i));
        return 0;
    }
    const char *yaml;
    qnpu_status s = qnpu_recipe_preset_text(argv[2], &yaml);
    if (s != QNPU_OK)
        return fail(s);
    fputs(yaml, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    machine_pick_blis_arch();
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "--version")) {
        printf("quantnpu %s\n", qnpu_version_string());
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "report"))
        return cmd_report(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "recipe"))
        return cmd_recipe(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "export"))
        return cmd_export(argc, argv);
    args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    if (!strcmp(a.cmd, "info"))
        return cmd_info(&a);
    if (!strcmp(a.cmd, "generate"))
        return cmd_generate(&a);
    if (!strcmp(a.cmd, "eval"))
        return cmd_eval(&a);
    if (!strcmp(a.cmd, "quantize"))
        return cmd_quantize(&a);
    if (!strcmp(a.cmd, "inspect"))
        return cmd_inspect(&a);
    if (!strcmp(a.cmd, "compare"))
        return cmd_compare(&a);
    if (!strcmp(a.cmd, "bench"))
        return cmd_bench(&a);
    return die_usage("unknown command", a.cmd);
}
