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

/* The attention runs row by row on transposed keys and values (Kt, Vt: dh × T), so every inner
 * loop runs over key positions j, contiguous, and only over the unmasked ones (j <= i): the
 * causal half of the products, no T × T matrix. Work: Kt, Vt, dKt, dVt (dh × T each) and two rows
 * of T. */
size_t qnpu__attention_work_floats(int64_t T, int64_t dh)
{
    return T > 0 && dh > 0 ? 4 * (size_t)dh * (size_t)T + 2 * (size_t)T : 0;
}

static qnpu_status attention_args(int64_t T, int64_t H, int64_t KV, int64_t dh, const char *what)
{
    if (T < 1 || H < 1 || KV < 1 || dh < 1 || H % KV != 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "attention %s: bad shape (T %lld, H %lld, KV %lld, "
                          "dh %lld)", what, (long long)T, (long long)H, (long long)KV, (long long)dh);
    size_t tt;
    if (!qnpu__mul_ok((size_t)T, (size_t)(4 * dh + 2), &tt) || tt > ((size_t)-1) / sizeof(float))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "attention %s: %lld tokens are too many", what,
                          (long long)T);
    return QNPU_OK;
}

#define LANES 16 /* independent partial results of a reduction: the loops vectorize, the order is fixed */
#define INLINE static inline __attribute__((always_inline))

/* Σ_j a[j]·b[j] over j < n, in LANES interleaved partial sums added in lane order. */
INLINE float lane_dot(const float *a, const float *b, int64_t n)
{
    float acc[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += a[j + l] * b[j + l];
    for (; j < n; j++)
        acc[j % LANES] += a[j] * b[j];
    float s = 0.0f;
    for (int l = 0; l < LANES; l++)
        s += acc[l];
    return s;
}

/* Σ x[0..n) in LANES interleaved partial sums added in lane order. */
INLINE float lane_sum(const float *x, int64_t n)
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
INLINE float lane_max(const float *x, int64_t n)
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

/* p[0..n) <- the attention probabilities of query row qi (dh values) against the keys Kt (dh × T,
 * row stride T) at positions j < n: softmax_j(scale · Σ_d qi[d]·Kt[d][j]). */
INLINE void probs_row(float *p, const float *qi, const float *Kt, int64_t T, int64_t dh, float scale,
                      int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        p[j] = 0.0f;
    for (int64_t d = 0; d < dh; d++) {
        const float *kr = Kt + d * T;
        float a = qi[d];
        for (int64_t j = 0; j < n; j++)
            p[j] += a * kr[j];
    }
    for (int64_t j = 0; j < n; j++)
        p[j] *= scale;
    float mx = lane_max(p, n);
    for (int64_t j = 0; j < n; j++)
        p[j] = qnpu__exp_nonpos(p[j] - mx);
    float inv = 1.0f / lane_sum(p, n);
    for (int64_t j = 0; j < n; j++)
        p[j] *= inv;
}

/* dst (dh × T) = srcᵀ for src (T rows of dh at stride ld). */
static void transpose_in(float *dst, const float *src, int64_t T, int64_t dh, int64_t ld)
{
    for (int64_t j = 0; j < T; j++)
        for (int64_t d = 0; d < dh; d++)
            dst[d * T + j] = src[j * ld + d];
}

/* One query head's forward: o_h[i] = Σ_{j<=i} P[i][j]·v[j] (QNPU__VEC_CLONES, internal.h). */
QNPU__VEC_CLONES static void head_forward(int64_t T, int64_t dh, int64_t qd, const float *qh, const float *Kt,
                                    const float *Vt, float scale, float *oh, float *p)
{
    for (int64_t i = 0; i < T; i++) {
        int64_t n = i + 1; /* keys after i are masked */
        probs_row(p, qh + i * qd, Kt, T, dh, scale, n);
        for (int64_t d = 0; d < dh; d++)
            oh[i * qd + d] = lane_dot(p, Vt + d * T, n);
    }
}

/* One query head's backward, adding into dKt, dVt (dh × T) and writing (or adding, acc) dq_h
 * (rows at stride ldq). */
QNPU__VEC_CLONES static void head_backward(int64_t T, int64_t dh, int64_t qd, const float *qh, const float *Kt,
                                     const float *Vt, const float *doh, float scale, float *dqh, int64_t ldq,
                                     int acc, float *dKt, float *dVt, float *p, float *r)
{
    for (int64_t i = 0; i < T; i++) {
        int64_t n = i + 1;
        const float *qi = qh + i * qd, *gi = doh + i * qd;
        probs_row(p, qi, Kt, T, dh, scale, n);
        /* dP[i][j] = do_i · v_j;  dv_j += P[i][j]·do_i */
        for (int64_t j = 0; j < n; j++)
            r[j] = 0.0f;
        for (int64_t d = 0; d < dh; d++) {
            const float *vr = Vt + d * T;
            float *dvr = dVt + d * T, a = gi[d];
            for (int64_t j = 0; j < n; j++) {
                r[j] += a * vr[j];
                dvr[j] += p[j] * a;
            }
        }
        /* softmax backward on the unmasked entries: dS = P·(dP − Σ P·dP), then the scale */
        float c = lane_dot(p, r, n);
        for (int64_t j = 0; j < n; j++)
            r[j] = p[j] * (r[j] - c) * scale;
        /* dq_i = Σ_j dS[i][j]·k_j;  dk_j += dS[i][j]·q_i */
        for (int64_t d = 0; d < dh; d++) {
            float g = lane_dot(r, Kt + d * T, n);
            dqh[i * ldq + d] = acc ? dqh[i * ldq + d] + g : g;
            float *dkr = dKt + d * T, a = qi[d];
            for (int64_t j = 0; j < n; j++)
                dkr[j] += r[j] * a;
        }
    }
}

static float *attention_work(int64_t T, int64_t dh, float *work, float **own)
{
    *own = NULL;
    if (work)
        return work;
    return *own = qnpu__malloc(qnpu__attention_work_floats(T, dh) * sizeof(float));
}

qnpu_status qnpu__attention_forward(int threads, int64_t T, int64_t H, int64_t KV, int64_t dh,
                                    const float *q, const float *k, const float *v, float *o,
                                    float *work)
{
    qnpu_status st = attention_args(T, H, KV, dh, "forward");
    if (st != QNPU_OK)
        return st;
    float *own, *w = attention_work(T, dh, work, &own);
    if (!w)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "attention forward: out of memory (T %lld)", (long long)T);
    int64_t qd = H * dh, kvd = KV * dh, group = H / KV;
    float scale = (float)(1.0 / sqrt((double)dh));
    float *Kt = w, *Vt = Kt + dh * T, *p = Vt + 3 * dh * T;
    for (int64_t g = 0; g < KV; g++) {
        transpose_in(Kt, k + g * dh, T, dh, kvd);
        transpose_in(Vt, v + g * dh, T, dh, kvd);
        for (int64_t h = g * group; h < (g + 1) * group; h++)
            head_forward(T, dh, qd, q + h * dh, Kt, Vt, scale, o + h * dh, p);
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
    float *own, *w = attention_work(T, dh, work, &own);
    if (!w)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "attention backward: out of memory (T %lld)", (long long)T);
    int64_t qd = H * dh, kvd = KV * dh, group = H / KV;
    float scale = (float)(1.0 / sqrt((double)dh));
    float *Kt = w, *Vt = Kt + dh * T, *dKt = Vt + dh * T, *dVt = dKt + dh * T, *p = dVt + dh * T, *r = p + T;
    float *dqs = NULL;
    if (!dq && !(dqs = qnpu__malloc((size_t)(T * dh) * sizeof *dqs))) {
        qnpu__free(own);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "attention backward: out of memory (T %lld)", (long long)T);
    }
    for (int64_t g = 0; g < KV; g++) {
        transpose_in(Kt, k + g * dh, T, dh, kvd);
        transpose_in(Vt, v + g * dh, T, dh, kvd);
        memset(dKt, 0, (size_t)(2 * dh * T) * sizeof *dKt); /* dKt and dVt */
        for (int64_t h = g * group; h < (g + 1) * group; h++)
            head_backward(T, dh, qd, q + h * dh, Kt, Vt, dout + h * dh, scale, dq ? dq + h * dh : dqs,
                          dq ? qd : dh, dq ? acc : 0, dKt, dVt, p, r);
        /* the KV heads collect their group's contributions */
        for (int64_t j = 0; j < T; j++)
            for (int64_t d = 0; d < dh; d++) {
                if (dk)
                    dk[j * kvd + g * dh + d] = (acc ? dk[j * kvd + g * dh + d] : 0.0f) + dKt[d * T + j];
                if (dv)
                    dv[j * kvd + g * dh + d] = (acc ? dv[j * kvd + g * dh + d] : 0.0f) + dVt[d * T + j];
            }
    }
    qnpu__free(dqs);
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
