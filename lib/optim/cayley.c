/* cayley.c — Cayley SGD on the Stiefel manifold (METHOD.md §6.2), the learning-rate schedule
 * (§8.1), the global gradient-norm clip and plain SGD (§12 rule 13). See cayley.h. */
#include <math.h>
#include <string.h>

#include "cayley.h"

/* ---- configuration -------------------------------------------------------------------------- */

void qnpu__cayley_cfg_default(qnpu__cayley_cfg *cfg)
{
    cfg->iters = 5;
    cfg->qr_every = 101;
    cfg->threads = 1;
}

void qnpu__cayley_cfg_from_options(const qnpu_options *opts, qnpu__cayley_cfg *cfg)
{
    qnpu__cayley_cfg_default(cfg);
    if (!opts)
        return;
    cfg->iters = (int)qnpu__opt_int(opts, QNPU_P_OPTIM_CAYLEY_ITERS);
    cfg->qr_every = (int)qnpu__opt_int(opts, QNPU_P_OPTIM_QR_EVERY);
    cfg->threads = qnpu__opt_threads(opts);
}

size_t qnpu__cayley_work_floats(int64_t n)
{
    if (n < 1)
        return 0;
    return 4 * (size_t)n * (size_t)n + 2 * (size_t)n;
}

/* ---- QR retraction ------------------------------------------------------------------------ */

void qnpu__cayley_qr_retract(float *X, int64_t n, float *work)
{
    /* A = Xᵀ, so column c of A is row c of X: a copy of X is A stored column by column, and the
     * Householder vectors overwrite the part of each column below (and on) the diagonal. */
    size_t nn = (size_t)n * (size_t)n;
    float *H = work;              /* [n][n]: H[c·n + i] = A[i][c]       */
    float *beta = work + nn;      /* [n]: reflector P_k = I − beta_k·v·vᵀ */
    float *sign = beta + n;       /* [n]: sign(diag(Rm)), 0 counted as +1 */
    memcpy(H, X, nn * sizeof *H);

    /* Column k: x = A[k.., k]; alpha = −sign(x_k)·‖x‖ (no cancellation in v_k = x_k − alpha);
     * P_k maps x to alpha·e_k, so Rm[k][k] = alpha. Apply P_k to the columns to the right. */
    for (int64_t k = 0; k < n; k++) {
        float *v = H + k * n;
        double norm2 = 0.0;
        for (int64_t i = k; i < n; i++)
            norm2 += (double)v[i] * v[i];
        double norm = sqrt(norm2);
        double alpha = v[k] >= 0.0f ? -norm : norm;
        sign[k] = alpha < 0.0 ? -1.0f : 1.0f;
        v[k] = (float)((double)v[k] - alpha);
        double vv = 0.0;
        for (int64_t i = k; i < n; i++)
            vv += (double)v[i] * v[i];
        beta[k] = vv > 0.0 ? (float)(2.0 / vv) : 0.0f; /* x = 0: P_k = I */
        for (int64_t c = k + 1; c < n; c++) {
            float *col = H + c * n;
            double d = 0.0;
            for (int64_t i = k; i < n; i++)
                d += (double)v[i] * col[i];
            float f = (float)(d * beta[k]);
            for (int64_t i = k; i < n; i++)
                col[i] -= f * v[i];
        }
    }
    /* Qm = P_0·P_1·…·P_{n−1}. Row j of the result is column j of Qm·diag(sign), that is
     * sign_j · P_0(P_1(…P_{n−1} e_j)). */
    for (int64_t j = 0; j < n; j++) {
        float *q = X + j * n;
        memset(q, 0, (size_t)n * sizeof *q);
        q[j] = 1.0f;
        for (int64_t k = j; k >= 0; k--) {
            /* P_k with k > j leaves e_j unchanged (v is zero above row k and e_j's only entry
             * is row j < k), so the product starts at k = j */
            const float *v = H + k * n;
            double d = 0.0;
            for (int64_t i = k; i < n; i++)
                d += (double)v[i] * q[i];
            float f = (float)(d * beta[k]);
            for (int64_t i = k; i < n; i++)
                q[i] -= f * v[i];
        }
        for (int64_t i = 0; i < n; i++)
            q[i] *= sign[j];
    }
}

/* ---- Cayley SGD step ------------------------------------------------------------------------ */

/* dst (n, n) = srcᵀ */
static void transpose(float *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            dst[j * n + i] = src[i * n + j];
}

static int all_finite(const float *a, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) {
            *bad = i;
            return 0;
        }
    return 1;
}

qnpu_status qnpu__cayley_step(const qnpu__cayley_cfg *cfg, float *R, const float *G, int64_t n,
                              float lr, qnpu__prng *g, float *work, int *did_qr,
                              float *alpha_out)
{
    qnpu__cayley_cfg def;
    if (!cfg) {
        qnpu__cayley_cfg_default(&def);
        cfg = &def;
    }
    if (n < 1 || !R || !G)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "cayley: bad arguments (n = %lld)", (long long)n);
    if (!(lr >= 0.0f) || !isfinite(lr))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "cayley: learning rate %g is not a finite value >= 0",
                          (double)lr);
    if (cfg->iters < 1 || cfg->qr_every < 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "cayley: bad configuration (iters %d, qr_every %d)",
                          cfg->iters, cfg->qr_every);
    size_t nn;
    if (!qnpu__mul_ok((size_t)n, (size_t)n, &nn) || nn > ((size_t)-1) / (5 * sizeof(float)))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "cayley: order %lld is too large", (long long)n);
    size_t bad = 0;
    if (!all_finite(G, nn, &bad))
        return qnpu__fail(QNPU_ERR_NUMERIC, "cayley: gradient entry (%zu, %zu) is not finite",
                          bad / (size_t)n, bad % (size_t)n);
    if (!all_finite(R, nn, &bad))
        return qnpu__fail(QNPU_ERR_NUMERIC, "cayley: parameter entry (%zu, %zu) is not finite",
                          bad / (size_t)n, bad % (size_t)n);
    float *own = NULL;
    if (!work) {
        own = qnpu__malloc(qnpu__cayley_work_floats(n) * sizeof *own);
        if (!own)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "cayley: order %lld: out of memory", (long long)n);
        work = own;
    }
    /* Four n × n buffers; their roles change as the step proceeds (noted at each use). */
    float *X = work, *A = X + nn, *B = A + nn, *C = B + nn;
    float *aux = C + nn; /* 2n floats */
    int nt = cfg->threads > 0 ? cfg->threads : 1;

    /* X = R with each row divided by (its L2 norm + 1e-8) */
    for (int64_t i = 0; i < n; i++) {
        const float *r = R + i * n;
        double ss = 0.0;
        for (int64_t j = 0; j < n; j++)
            ss += (double)r[j] * r[j];
        float den = (float)sqrt(ss) + 1e-8f;
        for (int64_t j = 0; j < n; j++)
            X[i * n + j] = r[j] / den;
    }

    /* the occasional QR retraction, one draw per step */
    int qr = 0;
    if (cfg->qr_every == 1)
        qr = 1;
    else if (g && cfg->qr_every > 1)
        qr = qnpu__prng_below(g, (uint64_t)cfg->qr_every) == 0;
    if (qr)
        qnpu__cayley_qr_retract(X, n, A); /* scratch from A on (contiguous, >= n² + 2n floats) */

    /* B = V = −Gᵀ (momentum 0) */
    transpose(B, G, n);
    for (size_t k = 0; k < nn; k++)
        B[k] = -B[k];
    /* C = M = V·X */
    qnpu__sgemm(nt, n, n, n, 1.0f, B, n, X, n, 0, 0.0f, C, n);
    /* A = X·M */
    qnpu__sgemm(nt, n, n, n, 1.0f, X, n, C, n, 0, 0.0f, A, n);
    /* C = Ŵ = M − ½·Xᵀ·(X·M) */
    qnpu__sgemm_ex(nt, 1, 0, n, n, n, -0.5f, X, n, A, n, 1.0f, C, n);
    /* A = W = Ŵ − Ŵᵀ (skew-symmetric) */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            A[i * n + j] = C[i * n + j] - C[j * n + i];

    /* α = min(1 / (‖W‖₁ + 1e-8), lr), ‖W‖₁ = max column sum of |W| (rows added in order) */
    float *colsum = aux;
    memset(colsum, 0, (size_t)n * sizeof *colsum);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            colsum[j] += fabsf(A[i * n + j]);
    float norm1 = 0.0f;
    for (int64_t j = 0; j < n; j++)
        if (colsum[j] > norm1)
            norm1 = colsum[j];
    float alpha = 1.0f / (norm1 + 1e-8f);
    if (lr < alpha)
        alpha = lr;

    /* B = Y = Xᵀ + α·V */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            B[i * n + j] = X[j * n + i] + alpha * B[i * n + j];
    /* fixed-point iterations of the Cayley transform: Y = Xᵀ + α·W·½(Xᵀ + Y) */
    for (int it = 0; it < cfg->iters; it++) {
        /* C = ½(Xᵀ + Y); then B = Xᵀ and B += α·W·C */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                C[i * n + j] = 0.5f * (X[j * n + i] + B[i * n + j]);
        transpose(B, X, n);
        qnpu__sgemm(nt, n, n, n, alpha, A, n, C, n, 0, 1.0f, B, n);
    }
    /* R <- Yᵀ */
    transpose(R, B, n);

    if (did_qr)
        *did_qr = qr;
    if (alpha_out)
        *alpha_out = alpha;
    qnpu__free(own);
    return QNPU_OK;
}

/* ---- schedule, clipping, SGD ------------------------------------------------------------------ */

double qnpu__lr_at(int schedule, double lr, int64_t t, int64_t T)
{
    if (schedule != QNPU__LR_COSINE || T <= 0)
        return lr;
    if (t >= T)
        return 0.0;
    if (t < 0)
        t = 0;
    /* §8.1: factor ½(1 + cos(π·t/T)), applied to both parameter groups */
    return lr * 0.5 * (1.0 + cos(M_PI * (double)t / (double)T));
}

qnpu_status qnpu__clip_grad_norm(const qnpu__grad_ref *refs, size_t count, double max_norm,
                                 double *norm_out, int *clipped)
{
    if (clipped)
        *clipped = 0;
    if (!(max_norm >= 0.0))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gradient clip: max norm %g is not >= 0", max_norm);
    if (count > 0 && !refs)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gradient clip: NULL tensor list");
    double ss = 0.0;
    for (size_t t = 0; t < count; t++) {
        if (refs[t].n > 0 && !refs[t].g)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "gradient clip: tensor %zu is NULL", t);
        for (size_t i = 0; i < refs[t].n; i++)
            ss += (double)refs[t].g[i] * refs[t].g[i];
    }
    double norm = sqrt(ss);
    if (norm_out)
        *norm_out = norm;
    if (!isfinite(norm))
        return qnpu__fail(QNPU_ERR_NUMERIC, "gradient clip: the gradient norm is not finite");
    if (max_norm == 0.0) /* optim.clip_norm = 0: off */
        return QNPU_OK;
    double c = max_norm / (norm + 1e-6);
    if (c < 1.0) {
        float cf = (float)c;
        for (size_t t = 0; t < count; t++)
            for (size_t i = 0; i < refs[t].n; i++)
                refs[t].g[i] *= cf;
        if (clipped)
            *clipped = 1;
    }
    return QNPU_OK;
}

void qnpu__sgd_step(float *p, const float *g, size_t n, float lr)
{
    for (size_t i = 0; i < n; i++)
        p[i] = p[i] - lr * g[i];
}
