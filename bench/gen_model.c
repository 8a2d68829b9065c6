/* gen_model.c — write a synthetic llama2.c checkpoint of a given shape for benchmarks.
 *
 *   gen_model [--dim N] [--hidden N] [--layers N] [--heads N] [--kv-heads N] [--vocab N]
 *             [--seq N] [--seed N] OUTPUT
 *
 * The defaults are the TinyLlama-1.1B shape (dim 2048, hidden 5632, 22 layers, 32 heads,
 * 4 KV heads, vocab 32000) with seq_len 2048: about 4.4 GB of float32.
 *
 * Format: the legacy (version 0) llama2.c checkpoint, little-endian:
 *   int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}
 *   (vocab_size positive: the classifier shares the token embedding), then float32 arrays
 *   token_embedding_table[vocab][dim], rms_att_weight[L][dim], wq[L][dim][dim],
 *   wk[L][kv_dim][dim], wv[L][kv_dim][dim], wo[L][dim][dim], rms_ffn_weight[L][dim],
 *   w1[L][hidden][dim], w2[L][dim][hidden], w3[L][hidden][dim], rms_final_weight[dim],
 *   freq_cis_real[seq][head_size/2], freq_cis_imag[seq][head_size/2].
 *
 * Values: a linear weight of fan-in n is uniform in [-1/sqrt(n), 1/sqrt(n)] (the PyTorch
 * nn.Linear default), the token embedding uniform in [-1, 1], norm weights uniform in
 * [0.9, 1.1], and freq_cis the real RoPE table (theta 10000). All of it comes from one
 * xoshiro256** stream seeded by splitmix64(seed), in file order, so a seed fixes the file.
 *
 * The file is streamed out in chunks of CHUNK floats (it never sits in memory whole) to
 * OUTPUT.tmp.PID, flushed, fsync'ed and renamed onto OUTPUT, so a reader never sees a
 * partial file. Exit status 0 on success, 1 on an I/O error, 2 on bad arguments. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1u << 20) /* floats per write: 4 MiB */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [-1, 1): the top 24 bits give an exact float in [0, 1). */
static inline float rng_sym(rng *r)
{
    return (float)(rng_next(r) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

typedef struct writer {
    FILE *f;
    const char *path;
    float *buf;
    size_t n;   /* floats buffered */
    uint64_t written; /* bytes written */
    int err;
} writer;

static void w_flush(writer *w)
{
    if (w->err || w->n == 0) {
        w->n = 0;
        return;
    }
    if (fwrite(w->buf, sizeof(float), w->n, w->f) != w->n) {
        fprintf(stderr, "gen_model: write to %s failed: %s\n", w->path, strerror(errno));
        w->err = 1;
    }
    w->written += (uint64_t)w->n * sizeof(float);
    w->n = 0;
}

static inline void w_put(writer *w, float v)
{
    w->buf[w->n++] = v;
    if (w->n == CHUNK)
        w_flush(w);
}

/* `count` floats uniform in [center - halfwidth, center + halfwidth). */
static void w_uniform(writer *w, rng *r, uint64_t count, float center, float halfwidth)
{
    for (uint64_t i = 0; i < count && !w->err; i++)
        w_put(w, center + halfwidth * rng_sym(r));
}

static int parse_int(const char *opt, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "gen_model: %s needs an integer in [%lld, %lld], got '%s'\n", opt, lo, hi,
                v ? v : "(nothing)");
        return 0;
    }
    *out = x;
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: gen_model [--dim N] [--hidden N] [--layers N] [--heads N] [--kv-heads N]\n"
               "                 [--vocab N] [--seq N] [--seed N] OUTPUT\n"
               "Writes a llama2.c (version 0) checkpoint with seeded random weights.\n"
               "Defaults: TinyLlama-1.1B shape: --dim 2048 --hidden 5632 --layers 22 --heads 32\n"
               "          --kv-heads 4 --vocab 32000 --seq 2048 --seed 1\n");
}

int main(int argc, char **argv)
{
    long long dim = 2048, hidden = 5632, layers = 22, heads = 32, kv_heads = 4, vocab = 32000,
              seq = 2048, seed = 1;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long *dst = NULL, lo = 1, hi = INT32_MAX;
        if (!strcmp(a, "--dim")) dst = &dim;
        else if (!strcmp(a, "--hidden")) dst = &hidden;
        else if (!strcmp(a, "--layers")) dst = &layers;
        else if (!strcmp(a, "--heads")) dst = &heads;
        else if (!strcmp(a, "--kv-heads")) dst = &kv_heads;
        else if (!strcmp(a, "--vocab")) dst = &vocab;
        else if (!strcmp(a, "--seq")) dst = &seq;
        else if (!strcmp(a, "--seed")) { dst = &seed; lo = 0; hi = INT64_MAX; }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "gen_model: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else if (out) {
            fprintf(stderr, "gen_model: more than one output path ('%s', '%s')\n", out, a);
            return 2;
        } else {
            out = a;
            continue;
        }
        if (!parse_int(a, v, lo, hi, dst))
            return 2;
        i++;
    }
    if (!out) {
        usage(stderr);
        return 2;
    }
    if (dim % heads || (dim / heads) % 2 || heads % kv_heads) {
        fprintf(stderr, "gen_model: need dim %% heads == 0, an even head size and heads %% kv-heads == 0 "
                        "(dim %lld, heads %lld, kv-heads %lld)\n", dim, heads, kv_heads);
        return 2;
    }
    uint64_t d = (uint64_t)dim, ff = (uint64_t)hidden, L = (uint64_t)layers, V = (uint64_t)vocab;
    uint64_t dh = d / (uint64_t)heads, kvd = dh * (uint64_t)kv_heads, S = (uint64_t)seq;
    uint64_t n_floats = V * d + L * (d + d * d + 2 * kvd * d + d * d + d + 3 * ff * d) + d +
                        2 * S * (dh / 2);
    uint64_t total = 28 + n_floats * sizeof(float);

    size_t tlen = strlen(out) + 32;
    char *tmp = malloc(tlen);
    writer w = {0};
    w.buf = malloc(CHUNK * sizeof(float));
    if (!tmp || !w.buf) {
        fprintf(stderr, "gen_model: out of memory\n");
        return 1;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", out, (long)getpid());
    w.f = fopen(tmp, "wb");
    w.path = tmp;
    if (!w.f) {
        fprintf(stderr, "gen_model: cannot create %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    fprintf(stderr, "gen_model: dim %llu hidden %llu layers %llu heads %lld kv-heads %lld vocab %llu "
                    "seq %llu seed %lld -> %s (%.2f GB)\n",
            (unsigned long long)d, (unsigned long long)ff, (unsigned long long)L, heads, kv_heads,
            (unsigned long long)V, (unsigned long long)S, seed, out, (double)total / 1e9);

    int32_t hdr[7] = {(int32_t)dim, (int32_t)hidden, (int32_t)layers, (int32_t)heads,
                      (int32_t)kv_heads, (int32_t)vocab /* positive: shared classifier */,
                      (int32_t)seq};
    if (fwrite(hdr, sizeof hdr, 1, w.f) != 1) {
        fprintf(stderr, "gen_model: write to %s failed: %s\n", tmp, strerror(errno));
        w.err = 1;
    }
    w.written = sizeof hdr;

    rng r;
    rng_seed(&r, (uint64_t)seed);
    float in_d = (float)(1.0 / sqrt((double)d));                        /* fan-in dim */
    float in_q = (float)(1.0 / sqrt((double)(dh * (uint64_t)heads)));   /* fan-in heads*dh */
    float in_ff = (float)(1.0 / sqrt((double)ff));                      /* fan-in hidden */
    w_uniform(&w, &r, V * d, 0.0f, 1.0f);            /* token_embedding_table */
    w_uniform(&w, &r, L * d, 1.0f, 0.1f);            /* rms_att_weight */
    w_uniform(&w, &r, L * d * d, 0.0f, in_d);        /* wq  [dim][dim], fan-in dim */
    w_uniform(&w, &r, L * kvd * d, 0.0f, in_d);      /* wk  [kv_dim][dim] */
    w_uniform(&w, &r, L * kvd * d, 0.0f, in_d);      /* wv  [kv_dim][dim] */
    w_uniform(&w, &r, L * d * d, 0.0f, in_q);        /* wo  [dim][dim], fan-in heads*dh = dim */
    w_uniform(&w, &r, L * d, 1.0f, 0.1f);            /* rms_ffn_weight */
    w_uniform(&w, &r, L * ff * d, 0.0f, in_d);       /* w1  [hidden][dim] */
    w_uniform(&w, &r, L * d * ff, 0.0f, in_ff);      /* w2  [dim][hidden], fan-in hidden */
    w_uniform(&w, &r, L * ff * d, 0.0f, in_d);       /* w3  [hidden][dim] */
    w_uniform(&w, &r, d, 1.0f, 0.1f);                /* rms_final_weight */
    for (int part = 0; part < 2; part++)             /* freq_cis_real, then freq_cis_imag */
        for (uint64_t p = 0; p < S && !w.err; p++)
            for (uint64_t i = 0; i < dh / 2; i++) {
                double ang = (double)p * pow(10000.0, -2.0 * (double)i / (double)dh);
                w_put(&w, (float)(part == 0 ? cos(ang) : sin(ang)));
            }
    w_flush(&w);

    if (!w.err && w.written != total) {
        fprintf(stderr, "gen_model: internal error: wrote %" PRIu64 " bytes, expected %" PRIu64 "\n",
                w.written, total);
        w.err = 1;
    }
    if (fflush(w.f) != 0 || fsync(fileno(w.f)) != 0) {
        if (!w.err)
            fprintf(stderr, "gen_model: flushing %s failed: %s\n", tmp, strerror(errno));
        w.err = 1;
    }
    if (fclose(w.f) != 0) {
        if (!w.err)
            fprintf(stderr, "gen_model: closing %s failed: %s\n", tmp, strerror(errno));
        w.err = 1;
    }
    if (!w.err && rename(tmp, out) != 0) {
        fprintf(stderr, "gen_model: renaming %s to %s failed: %s\n", tmp, out, strerror(errno));
        w.err = 1;
    }
    if (w.err)
        unlink(tmp);
    else
        fprintf(stderr, "gen_model: wrote %s, %" PRIu64 " bytes\n", out, w.written);
    free(w.buf);
    free(tmp);
    return w.err ? 1 : 0;
}
