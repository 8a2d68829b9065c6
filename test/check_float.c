/* check_float.c — the float engine against independent references: the float64 golden greedy
 * decode and perplexity of shared/, a naive double-precision forward written here, and the
 * same weights in four file formats. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define BIN "models/stories260K.bin"
#define GOLDEN "models/stories260K.greedy256.txt"

static qnpu_model *load_model(const char *rel, int threads)
{
    qnpu_options *o;
    qnpu_model *m;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_NUM_THREADS, threads), QNPU_OK);
    qnpu_status s = qnpu_model_load(qt_shared(rel), o, &m);
    ck_assert_msg(s == QNPU_OK, "%s: %s", rel, qnpu_last_error());
    qnpu_options_free(o);
    return m;
}

static qnpu_float_session *open_session(const qnpu_model *m, int threads)
{
    qnpu_options *o;
    qnpu_float_session *s;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_NUM_THREADS, threads), QNPU_OK);
    /* the GGUF files declare a 128-token training context; run all to 512 */
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_ENGINE_CTX_SIZE, 512), QNPU_OK);
    ck_assert_int_eq(qnpu_float_session_create(m, o, &s), QNPU_OK);
    qnpu_options_free(o);
    return s;
}

/* The 256 golden ids (line 3 of the golden file). */
static void golden_ids(int32_t ids[256])
{
    size_t len;
    char *txt = qt_read_file(qt_shared(GOLDEN), &len);
    char *line = txt;
    for (int i = 0; i < 2; i++)
        line = strchr(line, '\n') + 1;
    for (int i = 0; i < 256; i++)
        ids[i] = (int32_t)strtol(line, &line, 10);
    free(txt);
}

/* Greedy decode from BOS, one token at a time; returns how many ids match the golden file. */
static int greedy_match(const char *rel, int n)
{
    int32_t want[256];
    golden_ids(want);
    qnpu_model *m = load_model(rel, 1);
    qnpu_float_session *s = open_session(m, 1);
    float logits[512];
    int32_t tok = 1;
    int matched = 0;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(qnpu_float_session_eval(s, &tok, 1, 0, logits, 512), QNPU_OK);
        int32_t best = 0;
        for (int j = 1; j < 512; j++)
            if (logits[j] > logits[best])
                best = j;
        if (best != want[i])
            break;
        matched++;
        tok = best;
    }
    qnpu_float_session_free(s);
    qnpu_model_free(m);
    return matched;
}

START_TEST(test_greedy_llama2c) { if (qt_have_shared(BIN)) ck_assert_int_eq(greedy_match(BIN, 256), 256); }
END_TEST
START_TEST(test_greedy_gguf_f32)
{
    if (qt_have_shared("models/stories260K-f32.gguf"))
        ck_assert_int_eq(greedy_match("models/stories260K-f32.gguf", 256), 256);
}
END_TEST
START_TEST(test_greedy_hf)
{
    if (qt_have_shared("models/stories260K-hf/config.json"))
        ck_assert_int_eq(greedy_match("models/stories260K-hf", 256), 256);
}
END_TEST
START_TEST(test_greedy_gguf_f16)
{
    if (qt_have_shared("models/stories260K-f16.gguf"))
        ck_assert_int_ge(greedy_match("models/stories260K-f16.gguf", 256), 100);
}
END_TEST

/* A fixed 64-token sequence: the first 64 golden ids after BOS. */
static void test_sequence(int32_t seq[64])
{
    int32_t g[256];
    golden_ids(g);
    seq[0] = 1;
    memcpy(seq + 1, g, 63 * sizeof(int32_t));
}

/* The float32 sources give the same logits at every position to 1e-5 (relative to
 * max(1, |logit|); the Hugging Face file's rotate-half order sums q.k in another order). */
START_TEST(test_formats_agree)
{
    const char *srcs[] = {BIN, "models/stories260K-f32.gguf", "models/stories260K-hf"};
    for (int i = 0; i < 3; i++)
        if (!qt_have_shared(srcs[i]))
            return;
    int32_t seq[64];
    test_sequence(seq);
    float *ref = malloc(64 * 512 * sizeof(float)), *got = malloc(64 * 512 * sizeof(float));
    for (int i = 0; i < 3; i++) {
        qnpu_model *m = load_model(srcs[i], 1);
        qnpu_float_session *s = open_session(m, 1);
        ck_assert_int_eq(qnpu_float_session_eval(s, seq, 64, 1, i ? got : ref, 64 * 512), QNPU_OK);
        for (int j = 0; i && j < 64 * 512; j++)
            ck_assert_msg(fabsf(got[j] - ref[j]) <= 1e-5f * fmaxf(1.0f, fabsf(ref[j])), "%s: logit %d differs: %g vs %g", srcs[i], j,
                          (double)got[j], (double)ref[j]);
        qnpu_float_session_free(s);
        qnpu_model_free(m);
    }
    free(ref);
    free(got);
}
END_TEST

/* ---- a naive double-precision forward, written here from the model's definition ------ */

static double *read_t(const qnpu_model *m, const char *name, int64_t *rows, int64_t *cols)
{
    int64_t idx;
    ck_assert_int_eq(qnpu_model_tensor_find(m, name, &idx), QNPU_OK);
    qnpu_model_tensor_shape(m, idx, rows, cols);
    size_t n = (size_t)(*rows * *cols);
    float *f = malloc(n * sizeof *f);
    double *d = malloc(n * sizeof *d);
    qnpu_model_tensor_read(m, idx, f, n);
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
    free(f);
    return d;
}

static double *W(const qnpu_model *m, const char *fmt, int l)
{
    char name[64];
    int64_t r, c;
    snprintf(name, sizeof name, fmt, l);
    return read_t(m, name, &r, &c);
}

static void matvec(double *out, const double *w, const double *x, int rows, int cols)
{
    for (int i = 0; i < rows; i++) {
        double a = 0;
        for (int j = 0; j < cols; j++)
            a += w[(size_t)i * cols + j] * x[j];
        out[i] = a;
    }
}

static void rmsnorm_d(double *o, const double *x, const double *w, int d)
{
    double ss = 0;
    for (int i = 0; i < d; i++)
        ss += x[i] * x[i];
    ss = 1.0 / sqrt(ss / d + 1e-5);
    for (int i = 0; i < d; i++)
        o[i] = w[i] * x[i] * ss;
}

/* logits [T][vocab] of stories260K (interleaved RoPE) in double precision */
static void naive_forward(const qnpu_model *m, const int32_t *tok, int T, double *logits)
{
    enum { D = 64, FF = 172, L = 5, H = 8, KVH = 4, DH = 8, V = 512 };
    int64_t r, c;
    double *emb = read_t(m, "token_embd.weight", &r, &c), *fin = read_t(m, "output_norm.weight", &r, &c);
    double *kc = calloc((size_t)L * T * KVH * DH, sizeof(double)), *vc = calloc((size_t)L * T * KVH * DH, sizeof(double));
    for (int t = 0; t < T; t++) {
        double x[D], xb[D], q[D], k[KVH * DH], v[KVH * DH], o[D], y[D], g[FF], u[FF];
        memcpy(x, emb + (size_t)tok[t] * D, sizeof x);
        for (int l = 0; l < L; l++) {
            double *an = W(m, "blk.%d.attn_norm.weight", l), *wq = W(m, "blk.%d.attn_q.weight", l),
                   *wk = W(m, "blk.%d.attn_k.weight", l), *wv = W(m, "blk.%d.attn_v.weight", l),
                   *wo = W(m, "blk.%d.attn_output.weight", l), *fn = W(m, "blk.%d.ffn_norm.weight", l),
                   *wg = W(m, "blk.%d.ffn_gate.weight", l), *wu = W(m, "blk.%d.ffn_up.weight", l),
                   *wd = W(m, "blk.%d.ffn_down.weight", l);
            rmsnorm_d(xb, x, an, D);
            matvec(q, wq, xb, D, D);
            matvec(k, wk, xb, KVH * DH, D);
            matvec(v, wv, xb, KVH * DH, D);
            for (int i = 0; i < D; i += 2) {
                int j = i % DH;
                double f = t * pow(10000.0, -(double)j / DH), cs = cos(f), sn = sin(f);
                double a = q[i], b = q[i + 1];
                q[i] = a * cs - b * sn;
                q[i + 1] = a * sn + b * cs;
                if (i < KVH * DH) {
                    a = k[i], b = k[i + 1];
                    k[i] = a * cs - b * sn;
                    k[i + 1] = a * sn + b * cs;
                }
            }
            memcpy(kc + ((size_t)l * T + t) * KVH * DH, k, sizeof k);
            memcpy(vc + ((size_t)l * T + t) * KVH * DH, v, sizeof v);
            for (int h = 0; h < H; h++) {
                int kh = h / (H / KVH);
                double sc[512], mx = -1e300, sum = 0;
                for (int s = 0; s <= t; s++) {
                    const double *ks = kc + ((size_t)l * T + s) * KVH * DH + kh * DH;
                    double a = 0;
                    for (int i = 0; i < DH; i++)
                        a += q[h * DH + i] * ks[i];
                    sc[s] = a / sqrt((double)DH);
                    mx = sc[s] > mx ? sc[s] : mx;
                }
                for (int s = 0; s <= t; s++)
                    sum += (sc[s] = exp(sc[s] - mx));
                for (int i = 0; i < DH; i++) {
                    double a = 0;
                    for (int s = 0; s <= t; s++)
                        a += sc[s] / sum * vc[((size_t)l * T + s) * KVH * DH + kh * DH + i];
                    o[h * DH + i] = a;
                }
            }
            matvec(y, wo, o, D, D);
            for (int i = 0; i < D; i++)
                x[i] += y[i];
            rmsnorm_d(xb, x, fn, D);
            matvec(g, wg, xb, FF, D);
            matvec(u, wu, xb, FF, D);
            for (int i = 0; i < FF; i++)
                g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            matvec(y, wd, g, D, FF);
            for (int i = 0; i < D; i++)
                x[i] += y[i];
            free(an); free(wq); free(wk); free(wv); free(wo); free(fn); free(wg); free(wu); free(wd);
        }
        rmsnorm_d(xb, x, fin, D);
        matvec(logits + (size_t)t * V, emb, xb, V, D);
    }
    free(kc);
    free(vc);
    free(emb);
    free(fin);
}

/* Prefill (all positions at once) and decode (one at a time) both match the naive forward. */
START_TEST(test_naive_reference)
{
    if (!qt_have_shared(BIN))
        return;
    enum { T = 40 };
    int32_t seq[64];
    test_sequence(seq);
    double *ref = malloc((size_t)T * 512 * sizeof(double));
    float *pre = malloc((size_t)T * 512 * sizeof(float)), dec[512];
    qnpu_model *m = load_model(BIN, 1);
    naive_forward(m, seq, T, ref);
    qnpu_float_session *s = open_session(m, 2);
    ck_assert_int_eq(qnpu_float_session_eval(s, seq, T, 1, pre, (size_t)T * 512), QNPU_OK);
    ck_assert_int_eq(qnpu_float_session_pos(s), T);
    qnpu_float_session_reset(s);
    for (int t = 0; t < T; t++) {
        ck_assert_int_eq(qnpu_float_session_eval(s, &seq[t], 1, 0, dec, 512), QNPU_OK);
        for (int j = 0; j < 512; j++) {
            double r = ref[(size_t)t * 512 + j];
            ck_assert_msg(fabs(pre[(size_t)t * 512 + j] - r) < 1e-4, "prefill t=%d j=%d: %g vs %g", t, j,
                          (double)pre[(size_t)t * 512 + j], r);
            ck_assert_msg(fabs(dec[j] - r) < 1e-4, "decode t=%d j=%d: %g vs %g", t, j, (double)dec[j], r);
        }
    }
    /* logits of only the last position equal the last row of all_logits */
    qnpu_float_session_reset(s);
    ck_assert_int_eq(qnpu_float_session_eval(s, seq, T, 0, dec, 512), QNPU_OK);
    ck_assert_int_eq(memcmp(dec, pre + (size_t)(T - 1) * 512, sizeof dec), 0);
    qnpu_float_session_free(s);
    qnpu_model_free(m);
    free(ref);
    free(pre);
}
END_TEST

/* Results do not depend on the thread count. */
START_TEST(test_threads_identical)
{
    if (!qt_have_shared(BIN))
        return;
    int32_t seq[64];
    test_sequence(seq);
    float *a = malloc(64 * 512 * sizeof(float)), *b = malloc(64 * 512 * sizeof(float));
    qnpu_model *m = load_model(BIN, 1);
    qnpu_float_session *s1 = open_session(m, 1), *s2 = open_session(m, 2);
    ck_assert_int_eq(qnpu_float_session_eval(s1, seq, 64, 1, a, 64 * 512), QNPU_OK);
    ck_assert_int_eq(qnpu_float_session_eval(s2, seq, 64, 1, b, 64 * 512), QNPU_OK);
    ck_assert_int_eq(memcmp(a, b, 64 * 512 * sizeof(float)), 0);
    qnpu_float_session_free(s1);
    qnpu_float_session_free(s2);
    qnpu_model_free(m);
    free(a);
    free(b);
}
END_TEST

/* Window protocol: compare perplexity_ids with a direct computation from eval logits. */
START_TEST(test_perplexity_windows)
{
    if (!qt_have_shared(BIN))
        return;
    int32_t g[256];
    golden_ids(g);
    qnpu_model *m = load_model(BIN, 1);
    qnpu_float_session *s = open_session(m, 1);
    const int ctx = 16;
    size_t ns[] = {33, 34, 40, 2};  /* a final window of 1 token is dropped; of 2 counts */
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        double nll = 0;
        int64_t count = 0;
        float lg[16 * 512];
        for (size_t st = 0; st + 1 < n; st += ctx) {
            size_t len = n - st < (size_t)ctx ? n - st : (size_t)ctx;
            qnpu_float_session_reset(s);
            ck_assert_int_eq(qnpu_float_session_eval(s, g + st, len - 1, 1, lg, sizeof lg / sizeof lg[0]), QNPU_OK);
            for (size_t t = 0; t + 1 < len; t++) {
                double mx = -1e30, sum = 0;
                for (int j = 0; j < 512; j++)
                    mx = lg[t * 512 + j] > mx ? lg[t * 512 + j] : mx;
                for (int j = 0; j < 512; j++)
                    sum += exp(lg[t * 512 + j] - mx);
                nll += log(sum) + mx - lg[t * 512 + g[st + t + 1]];
                count++;
            }
        }
        double ppl;
        int64_t scored;
        ck_assert_int_eq(qnpu_float_session_perplexity_ids(s, g, n, ctx, &ppl, &scored), QNPU_OK);
        ck_assert_int_eq(scored, count);
        ck_assert_msg(fabs(ppl - exp(nll / count)) < 1e-9 * ppl, "n=%zu: %g vs %g", n, ppl, exp(nll / count));
    }
    double ppl;
    ck_assert_int_eq(qnpu_float_session_perplexity_ids(s, g, 1, ctx, &ppl, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_float_session_perplexity_ids(s, g, 10, 1, &ppl, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_float_session_perplexity_ids(s, g, 10, 513, &ppl, NULL), QNPU_ERR_INVALID_ARG);
    qnpu_float_session_free(s);
    qnpu_model_free(m);
}
END_TEST

/* The project's protocol on the validation head reproduces the float64 reference of
 * shared/data/README.md: PPL 5.256892 over 245,408 scored tokens at ctx 256. */
START_TEST(test_perplexity_reference)
{
    if (!qt_have_shared(BIN) || !qt_have_shared("data/tinystories_valid_head.txt"))
        return;
    size_t len;
    char *text = qt_read_file(qt_shared("data/tinystories_valid_head.txt"), &len);
    qnpu_model *m = load_model(BIN, 0);
    qnpu_tokenizer *t;
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_OK);
    qnpu_float_session *s = open_session(m, 0);
    double ppl;
    int64_t scored;
    ck_assert_int_eq(qnpu_float_session_perplexity(s, t, text, len, 256, &ppl, &scored), QNPU_OK);
    ck_assert_int_eq(scored, 245408);
    ck_assert_msg(fabs(ppl - 5.256892) < 5e-6 * 5.256892, "ppl %.7f", ppl);
    qnpu_float_session_free(s);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
    free(text);
}
END_TEST

static int cancel_after_two(void *user, const char *stage, int64_t done, int64_t total)
{
    (void)total;
    ck_assert_str_eq(stage, "eval");
    *(int64_t *)user = done;
    return done >= 2;
}

START_TEST(test_bad_input)
{
    if (!qt_have_shared(BIN))
        return;
    qnpu_model *m = load_model(BIN, 1);
    qnpu_float_session *s = open_session(m, 1);
    qnpu_tokenizer *t;
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_OK);
    float lg[512];
    int32_t bad[3] = {1, 512, 5};
    ck_assert_int_eq(qnpu_float_session_eval(s, bad, 3, 0, lg, 512), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "512"));
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "position 1"));
    bad[1] = -3;
    ck_assert_int_eq(qnpu_float_session_eval(s, bad, 3, 0, lg, 512), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_float_session_eval(s, bad, 1, 1, lg, 511), QNPU_ERR_BUFFER_TOO_SMALL);
    ck_assert_int_eq(qnpu_float_session_pos(s), 0);
    /* context overflow */
    int32_t *many = calloc(513, sizeof(int32_t));
    ck_assert_int_eq(qnpu_float_session_eval(s, many, 513, 0, NULL, 0), QNPU_ERR_STATE);
    ck_assert_int_eq(qnpu_float_session_eval(s, many, 512, 0, NULL, 0), QNPU_OK);
    ck_assert_int_eq(qnpu_float_session_eval(s, many, 1, 0, NULL, 0), QNPU_ERR_STATE);
    free(many);
    /* an id out of range as the last target of a window */
    int32_t tail[3] = {1, 2, 9999};
    double ppl;
    ck_assert_int_eq(qnpu_float_session_perplexity_ids(s, tail, 3, 256, &ppl, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "9999"));
    /* empty text */
    ck_assert_int_eq(qnpu_float_session_perplexity(s, t, "", 0, 256, &ppl, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_float_session_perplexity(s, t, "\n\n\n", 3, 256, &ppl, NULL), QNPU_ERR_INVALID_ARG);
    /* cancel from the progress callback */
    int32_t g[256];
    golden_ids(g);
    int64_t seen = 0;
    qnpu_float_session_set_progress(s, cancel_after_two, &seen);
    ck_assert_int_eq(qnpu_float_session_perplexity_ids(s, g, 256, 16, &ppl, NULL), QNPU_ERR_CANCELLED);
    ck_assert_int_eq(seen, 2);
    qnpu_float_session_free(s);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
}
END_TEST

Suite *qnpu_float_suite(void)
{
    Suite *s = suite_create("float");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_greedy_llama2c);
    tcase_add_test(tc, test_greedy_gguf_f32);
    tcase_add_test(tc, test_greedy_hf);
    tcase_add_test(tc, test_greedy_gguf_f16);
    tcase_add_test(tc, test_formats_agree);
    tcase_add_test(tc, test_naive_reference);
    tcase_add_test(tc, test_threads_identical);
    tcase_add_test(tc, test_perplexity_windows);
    tcase_add_test(tc, test_perplexity_reference);
    tcase_add_test(tc, test_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
