/* backward.c — reverse-mode operators of the LLaMA layer in float32 (see backward.h). Matrix
 * products go through qnpu__sgemm (BLIS); row reductions accumulate in double, as the forward
 * operators of lib/float/ops.c do. */
#include <math.h>
#include <string.h>

#include "../float/ops.h"
#include "backward.h"

/* ---- RMSNorm ---------------------------------------------------------------------------------- */

void qnpu__rmsnorm_backward(float *dx, const float *x, const float *dy, int64_t T, int64_t d,
                            double eps, int acc)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * d, *g = dy + t * d;
        float *o = dx + t * d;
        double ss = 0.0, dot = 0.0;
        for (int64_t i = 0; i < d; i++) {
            ss += (double)xr[i] * xr[i];
            dot += (double)g[i] * xr[i];
        }
        /* y_i = x_i·r with r = (mean(x²) + eps)^(−1/2); ∂r/∂x_j = −r³·x_j/d, so
         * dx_j = r·dy_j + x_j·(−r³/d)·Σ_i dy_i·x_i */
        double r = 1.0 / sqrt(ss / (double)d + eps);
        double c = r * r * r * dot / (double)d;
        for (int64_t i = 0; i < d; i++) {
            float v = (float)(r * (double)g[i] - (double)xr[i] * c);
            o[i] = acc ? o[i] + v : v;
        }
    }
}

/* ---- linear -------------------------------------------------------------------------------------- */

void qnpu__linear_forward(int threads, int64_t T, int64_t n_out, int64_t n_in, const float *x,
                          const float *W, const float *b, float *y)
{
    /* y (T, out) = x (T, in) @ W (out, in)ᵀ */
    qnpu__sgemm(threads, T, n_out, n_in, 1.0f, x, n_in, W, n_in, 1, 0.0f, y, n_out);
    if (b)
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < n_out; o++)
                y[t * n_out + o] += b[o];
}

void qnpu__linear_backward(int threads, int64_t T, int64_t n_out, int64_t n_in, const float *x,
                           const float *W, const float *dy, float *dx, float *dW, float *db, int acc)
{
    float beta = acc ? 1.0f : 0.0f;
    /* dx (T, in) = dy (T, out) @ W (out, in) */
    if (dx)
        qnpu__sgemm(threads, T, n_in, n_out, 1.0f, dy, n_out, W, n_in, 0, beta, dx, n_in);
    /* dW (out, in) = dyᵀ (out, T) @ x (T, in) */
    if (dW)
        qnpu__sgemm_ex(threads, 1, 0, n_out, n_in, T, 1.0f, dy, n_out, x, n_in, beta, dW, n_in);
    /* db (out) = Σ_t dy[t] */
    if (db)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0.0;
            for (int64_t t = 0; t < T; t++)
                s += dy[t * n_out + o];
            db[o] = acc ? db[o] + (float)s : (float)s;
        }
}

/* ---- RoPE ------------------------------------------------------------------------------------------- */

qnpu_status qnpu__rope_backward(float *d, int64_t T, int64_t ld, int64_t n_heads, int64_t dh,
                                int64_t pos0, const float *cos_t, const float *sin_t, int half)
{
    int64_t hd = dh / 2;
    if (T <= 0 || hd <= 0)
        return QNPU_OK;
    /* The forward maps a pair (a, b) to (a·c − b·s, a·s + b·c), a rotation by θ; its Jacobian
     * is that rotation, so the vector-Jacobian product rotates dy by −θ: the forward with the
     * sine negated (negation is exact, so this is bit-for-bit the inverse rotation's formula). */
    float *neg_sin = qnpu__malloc((size_t)T * (size_t)hd * sizeof *neg_sin);
    if (!neg_sin)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "rope backward: out of memory (%lld positions)",
                          (long long)T);
    const float *s0 = sin_t + pos0 * hd;
    for (int64_t k = 0; k < T * hd; k++)
        neg_sin[k] = -s0[k];
    qnpu__rope(d, T, ld, n_heads, dh, 0, cos_t + pos0 * hd, neg_sin, half);
    qnpu__free(neg_sin);
    return QNPU_OK;
}

/* ---- causal attention with GQA --------------------------------------------------------------------- */

size_t qnpu__attention_work_floats(int64_t T)
{
    return T > 0 ? 2 * (size_t)T * (size_t)T : 0;
}

static qnpu_status attention_args(int64_t T, int64_t H, int64_t KV, int64_t dh, const char *what)
{
    if (T < 1 || H < 1 || KV < 1 || dh < 1 || H % KV != 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "attention %s: bad shape (T %lld, H %lld, KV %lld, "
                          "dh %lld)", what, (long long)T, (long long)H, (long long)KV, (long long)dh);
    size_t tt;
    if (!qnpu__mul_ok((size_t)T, (size_t)T, &tt) || tt > ((size_t)-1) / (2 * sizeof(float)))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "attention %s: %lld tokens are too many", what,
                          (long long)T);
    return QNPU_OK;
}

/* e^x for x <= 0 (a softmax argument after the row maximum): x = n·ln 2 + r with |r| <= ln 2 / 2
 * (Cody–Waite split of ln 2), e^r by its degree-6 Taylor polynomial (truncation < 1.2e-7
 * relative), 2^n through the exponent bits; x below −87 is taken as −87 (e^−87 ≈ 1.6e−38, still a
 * normal float). Plain arithmetic without branches or library calls, so the row loops below
 * vectorize. */
static inline float exp_nonpos(float x)
{
    x = x < -87.0f ? -87.0f : x;
    float n = x * 1.44269504f + 12582912.0f; /* round to nearest through the 2^23·1.5 shifter */
    n -= 12582912.0f;
    float r = x - n * 0.693145752f;
    r = r - n * 1.42860677e-6f;
    float p = 1.38888889e-3f;
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t e = ((int32_t)n + 127) * (1 << 23);
    float sc;
    memcpy(&sc, &e, sizeof sc);
    return p * sc;
}

#define LANES 16 /* independent partial sums per row: the loops vectorize, the order is fixed */

/* Σ x[0..n) in LANES interleaved partial sums, then added in lane order. */
static inline __attribute__((always_inline)) float lane_sum(const float *x, int64_t n)
{
    float acc[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += x[j + l];
    for (; j < n; j++)
        acc[j % LANES] += x[j];
    float s = 0.0f;
    for (int l = 0; l < LANES; l++)
        s += acc[l];
    return s;
}

/* max x[0..n), n >= 1, in LANES interleaved partial maxima. */
static inline __attribute__((always_inline)) float lane_max(const float *x, int64_t n)
{
    float acc[LANES];
    for (int l = 0; l < LANES; l++)
        acc[l] = x[0];
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
    for (; j < n; j++)
        acc[0] = x[j] > acc[0] ? x[j] : acc[0];
    float m = acc[0];
    for (int l = 1; l < LANES; l++)
        m = acc[l] > m ? acc[l] : m;
    return m;
}

/* The row kernels are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
 * (GCC function multi-versioning). The C is the same and -std=c11 keeps FMA contraction off, so
 * every version computes the same floats; the wider ones only do more lanes at once. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define ROW_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ROW_KERNEL
#endif

/* p[0..n) <- softmax(p[0..n)), n >= 1. */
ROW_KERNEL static void softmax_row(float *p, int64_t n)
{
    float mx = lane_max(p, n);
    for (int64_t j = 0; j < n; j++)
        p[j] = exp_nonpos(p[j] - mx);
    float inv = 1.0f / lane_sum(p, n);
    for (int64_t j = 0; j < n; j++)
        p[j] *= inv;
}

/* Softmax backward of one row on its n unmasked entries: r_j <- p_j·(r_j − Σ_l p_l·r_l). */
ROW_KERNEL static void softmax_row_backward(const float *p, float *r, int64_t n)
{
    float acc[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += p[j + l] * r[j + l];
    for (; j < n; j++)
        acc[0] += p[j] * r[j];
    float c = 0.0f;
    for (int l = 0; l < LANES; l++)
        c += acc[l];
    for (j = 0; j < n; j++)
        r[j] = p[j] * (r[j] - c);
}

/* P (T, T) of one head: softmax(q_h·k_gᵀ·scale) over the keys j <= i, zero for j > i — the
 * float session's steps with p0 = 0 (lib/float/session.c), with the exponential above. */
static void head_probs(int nt, int64_t T, int64_t dh, int64_t qd, int64_t kvd, const float *qh,
                       const float *kg, float scale, float *P)
{
    /* S (T, T) = q_h (T, dh) @ k_g (T, dh)ᵀ, scaled */
    qnpu__sgemm(nt, T, T, dh, scale, qh, qd, kg, kvd, 1, 0.0f, P, T);
    for (int64_t t = 0; t < T; t++) {
        softmax_row(P + t * T, t + 1); /* keys after t are masked */
        for (int64_t j = t + 1; j < T; j++)
            P[t * T + j] = 0.0f;
    }
}

qnpu_status qnpu__attention_forward(int threads, int64_t T, int64_t H, int64_t KV, int64_t dh,
                                    const float *q, const float *k, const float *v, float *o,
                                    float *work)
{
    qnpu_status st = attention_args(T, H, KV, dh, "forward");
    if (st != QNPU_OK)
        return st;
    float *own = NULL;
    if (!work) {
        own = qnpu__malloc(qnpu__attention_work_floats(T) * sizeof *own);
        if (!own)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "attention forward: out of memory (T %lld)",
                              (long long)T);
        work = own;
    }
    int64_t qd = H * dh, kvd = KV * dh, group = H / KV;
    float scale = (float)(1.0 / sqrt((double)dh));
    for (int64_t h = 0; h < H; h++) {
        int64_t g = h / group;
        head_probs(threads, T, dh, qd, kvd, q + h * dh, k + g * dh, scale, work);
        /* o_h (T, dh) = P (T, T) @ v_g (T, dh) */
        qnpu__sgemm(threads, T, dh, T, 1.0f, work, T, v + g * dh, kvd, 0, 0.0f, o + h * dh, qd);
    }
    qnpu__free(own);
    return QNPU_OK;
}

qnpu_status qnpu__attention_backward(int threads, int64_t T, int64_t H, int64_t KV, int64_t dh,
                                     const float *q, const float *k, const float *v, const float *dout,
                                     float *dq, float *dk, float *dv, int acc, float *work)
{
    qnpu_status st = attention_args(T, H, KV, dh, "backward");
    if (st != QNPU_OK)
        return st;
    float *own = NULL;
    if (!work) {
        own = qnpu__malloc(qnpu__attention_work_floats(T) * sizeof *own);
        if (!own)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "attention backward: out of memory (T %lld)",
                              (long long)T);
        work = own;
    }
    int64_t qd = H * dh, kvd = KV * dh, group = H / KV;
    float scale = (float)(1.0 / sqrt((double)dh));
    float *P = work, *dS = work + (size_t)T * (size_t)T;
    /* the KV heads collect H/KV contributions each: start from zero unless accumulating */
    if (!acc) {
        if (dk)
            memset(dk, 0, (size_t)T * (size_t)kvd * sizeof *dk);
        if (dv)
            memset(dv, 0, (size_t)T * (size_t)kvd * sizeof *dv);
    }
    for (int64_t h = 0; h < H; h++) {
        int64_t g = h / group;
        const float *qh = q + h * dh, *kg = k + g * dh, *vg = v + g * dh, *doh = dout + h * dh;
        head_probs(threads, T, dh, qd, kvd, qh, kg, scale, P);
        /* dv_g (T, dh) += Pᵀ (T, T) @ do_h (T, dh) */
        if (dv)
            qnpu__sgemm_ex(threads, 1, 0, T, dh, T, 1.0f, P, T, doh, qd, 1.0f, dv + g * dh, kvd);
        if (!dq && !dk)
            continue;
        /* dP (T, T) = do_h (T, dh) @ v_g (T, dh)ᵀ */
        qnpu__sgemm(threads, T, T, dh, 1.0f, doh, qd, vg, kvd, 1, 0.0f, dS, T);
        /* softmax backward per row, on the unmasked keys j <= i:
         * dS_ij = P_ij·(dP_ij − Σ_l P_il·dP_il); masked entries have P = 0 and get 0 */
        for (int64_t i = 0; i < T; i++) {
            softmax_row_backward(P + i * T, dS + i * T, i + 1);
            memset(dS + i * T + i + 1, 0, (size_t)(T - i - 1) * sizeof *dS);
        }
        /* S = scale·q_h·k_gᵀ:  dq_h (T, dh) = scale·dS (T, T) @ k_g (T, dh) */
        if (dq)
            qnpu__sgemm(threads, T, dh, T, scale, dS, T, kg, kvd, 0, acc ? 1.0f : 0.0f, dq + h * dh,
                        qd);
        /* dk_g (T, dh) += scale·dSᵀ (T, T) @ q_h (T, dh) */
        if (dk)
            qnpu__sgemm_ex(threads, 1, 0, T, dh, T, scale, dS, T, qh, qd, 1.0f, dk + g * dh, kvd);
    }
    qnpu__free(own);
    return QNPU_OK;
}

/* ---- SwiGLU ------------------------------------------------------------------------------------------- */

void qnpu__swiglu_backward(float *dg, float *du, const float *g, const float *u, const float *dh,
                           int64_t n, int acc)
{
    for (int64_t i = 0; i < n; i++) {
        float x = g[i], d = dh[i];
        float sg = 1.0f / (1.0f + expf(-x)); /* σ(g), as in qnpu__swiglu */
        float silu = x * sg;
        /* d silu/dg = σ + g·σ(1 − σ) = σ·(1 + g·(1 − σ)) */
        float vg = d * u[i] * (sg * (1.0f + x * (1.0f - sg)));
        float vu = d * silu;
        if (dg)
            dg[i] = acc ? dg[i] + vg : vg;
        if (du)
            du[i] = acc ? du[i] + vu : vu;
    }
}

/* ---- embedding ------------------------------------------------------------------------------------------ */

qnpu_status qnpu__embedding_backward(float *dE, const float *dx, const int32_t *tokens, int64_t T,
                                     int64_t d, int64_t vocab)
{
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "embedding backward: token %lld at position %lld "
                              "is outside [0, %lld)", (long long)tokens[t], (long long)t,
                              (long long)vocab);
    for (int64_t t = 0; t < T; t++) {
        float *row = dE + (int64_t)tokens[t] * d;
        const float *g = dx + t * d;
        for (int64_t i = 0; i < d; i++)
            row[i] += g[i];
    }
    return QNPU_OK;
}

/* ---- cross-entropy --------------------------------------------------------------------------------------- */

qnpu_status qnpu__cross_entropy(const float *logits, const int32_t *targets, int64_t N, int64_t vocab,
                                float *dlogits, int acc, double *loss, int64_t *scored)
{
    int64_t ns = 0;
    for (int64_t i = 0; i < N; i++) {
        if (targets[i] >= vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "cross-entropy: target %lld of row %lld is "
                              "outside [0, %lld)", (long long)targets[i], (long long)i,
                              (long long)vocab);
        if (targets[i] >= 0)
            ns++;
    }
    float *tmp = NULL;
    if (dlogits && acc && ns > 0) {
        tmp = qnpu__malloc((size_t)vocab * sizeof *tmp);
        if (!tmp)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "cross-entropy: out of memory (vocab %lld)",
                              (long long)vocab);
    }
    double sum = 0.0;
    float inv = ns > 0 ? (float)(1.0 / (double)ns) : 0.0f;
    for (int64_t i = 0; i < N; i++) {
        const float *l = logits + i * vocab;
        if (targets[i] < 0) {
            if (dlogits && !acc)
                memset(dlogits + i * vocab, 0, (size_t)vocab * sizeof *dlogits);
            continue;
        }
        sum += qnpu__nll(l, vocab, targets[i]);
        if (!dlogits)
            continue;
        /* softmax(l) − onehot(target), divided by the number of scored rows */
        float *p = acc ? tmp : dlogits + i * vocab;
        memmove(p, l, (size_t)vocab * sizeof *p);
        qnpu__softmax(p, vocab);
        p[targets[i]] -= 1.0f;
        for (int64_t j = 0; j < vocab; j++)
            p[j] *= inv;
        if (acc)
            for (int64_t j = 0; j < vocab; j++)
                dlogits[i * vocab + j] += p[j];
    }
    qnpu__free(tmp);
    if (loss)
        *loss = ns > 0 ? sum / (double)ns : 0.0;
    if (scored)
        *scored = ns;
    return QNPU_OK;
}
