/* gptq.c — GPTQ weight rounding with the learned scales (METHOD.md §13); see gptq.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../calib/quant.h"
#include "gptq.h"
#include "stage1.h"

#define ROW_CHUNK 16 /* rows updated together, so each row of U is read once per chunk */

/* ---- dense float64 algebra (row-major n × n) ------------------------------------------------ */

/* In place: the lower triangle of A (i ≥ j) becomes L with A = L·Lᵀ; the upper triangle is not
 * read and is left as it was. Returns 0, or 1 if a pivot is not finite and positive (A not
 * positive definite in float64). */
static int chol_lower(double *A, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        double *Aj = A + j * n;
        double s = Aj[j];
        for (int64_t k = 0; k < j; k++)
            s -= Aj[k] * Aj[k];
        if (!(s > 0.0) || !isfinite(s))
            return 1;
        double piv = sqrt(s);
        Aj[j] = piv;
        for (int64_t i = j + 1; i < n; i++) {
            double *Ai = A + i * n, t = Ai[j];
            for (int64_t k = 0; k < j; k++)
                t -= Ai[k] * Aj[k];
            Ai[j] = t / piv;
        }
    }
    return 0;
}

/* X (lower triangular, n × n, zero above the diagonal) = L⁻¹ for the lower L of chol_lower (only
 * its lower triangle is read): forward substitution L·X = I, column by column. */
static void tri_inverse_lower(const double *L, double *X, int64_t n)
{
    memset(X, 0, (size_t)(n * n) * sizeof *X);
    for (int64_t j = 0; j < n; j++) {
        X[j * n + j] = 1.0 / L[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            const double *Li = L + i * n;
            double t = 0.0;
            for (int64_t k = j; k < i; k++)
                t += Li[k] * X[k * n + j];
            X[i * n + j] = -t / Li[i];
        }
    }
}

/* U (upper, row-major, zero below the diagonal) = the upper Cholesky factor of H⁻¹ for the
 * damped H (its lower triangle), H⁻¹ = Uᵀ·U. A and B are n × n scratch. Returns 0, or 1 if H
 * or H⁻¹ is not positive definite in float64. */
static int inverse_upper_factor(const double *H, double *U, double *A, double *B, int64_t n)
{
    memcpy(A, H, (size_t)(n * n) * sizeof *A);
    if (chol_lower(A, n))
        return 1;
    tri_inverse_lower(A, B, n); /* B = L⁻¹ */
    /* A (lower triangle) = H⁻¹ = L⁻ᵀ·L⁻¹: A[i][j] = Σ_k B[k][i]·B[k][j], k ≥ i ≥ j */
    memset(A, 0, (size_t)(n * n) * sizeof *A);
    for (int64_t k = 0; k < n; k++) {
        const double *Bk = B + k * n;
        for (int64_t i = 0; i <= k; i++) {
            double bi = Bk[i];
            if (bi == 0.0)
                continue;
            double *Ai = A + i * n;
            for (int64_t j = 0; j <= i; j++)
                Ai[j] += bi * Bk[j];
        }
    }
    if (chol_lower(A, n)) /* H⁻¹ = Lh·Lhᵀ, U = Lhᵀ */
        return 1;
    memset(U, 0, (size_t)(n * n) * sizeof *U);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++)
            U[i * n + j] = A[j * n + i];
    return 0;
}

/* ---- the kernel ----------------------------------------------------------------------------- */

qnpu_status qnpu__gptq_matrix(float *W, int64_t rows, int64_t cols, const double *H, const float *scales,
                              int bits, double damp, int8_t *codes)
{
    if (!W || !H || !scales)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: NULL argument");
    if (rows < 1 || cols < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: bad shape %lld x %lld", (long long)rows, (long long)cols);
    if (bits < 2 || bits > 8)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: weight bits %d outside [2, 8]", bits);
    if (!(damp >= 0.0) || !isfinite(damp))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: damping %g is not finite and >= 0", damp);
    for (int64_t r = 0; r < rows; r++)
        if (!(scales[r] > 0.0f) || !isfinite(scales[r]))
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: scale of row %lld is %g (not finite and positive)",
                              (long long)r, (double)scales[r]);
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(W[i]))
            return qnpu__fail(QNPU_ERR_NUMERIC, "gptq: weight [%lld][%lld] is not finite", (long long)(i / cols),
                              (long long)(i % cols));
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = 0; j <= i; j++)
            if (!isfinite(H[i * cols + j]))
                return qnpu__fail(QNPU_ERR_NUMERIC, "gptq: Hessian [%lld][%lld] is not finite", (long long)i,
                                  (long long)j);
    int32_t qmin, qmax;
    qnpu_status st = qnpu__qrange(bits, 1, &qmin, &qmax);
    if (st != QNPU_OK)
        return st;

    int64_t n = cols;
    size_t nn = (size_t)(n * n);
    double *Hd = qnpu__malloc(nn * sizeof *Hd), *U = qnpu__malloc(nn * sizeof *U);
    double *A = qnpu__malloc(nn * sizeof *A), *B = qnpu__malloc(nn * sizeof *B);
    double *Wd = qnpu__malloc((size_t)(rows * n) * sizeof *Wd);
    int8_t *q = qnpu__malloc((size_t)(rows * n) * sizeof *q);
    unsigned char *dead = qnpu__calloc((size_t)n, 1);
    if (!Hd || !U || !A || !B || !Wd || !q || !dead) {
        st = qnpu__fail(QNPU_ERR_NO_MEMORY, "gptq: out of memory for a %lld x %lld weight", (long long)rows,
                        (long long)cols);
        goto done;
    }

    /* steps 2 and 3: the lower triangle of H, dead inputs, damping */
    memset(Hd, 0, nn * sizeof *Hd);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++)
            Hd[i * n + j] = H[i * n + j];
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (Hd[i * n + i] == 0.0) {
            dead[i] = 1;
            Hd[i * n + i] = 1.0;
        }
        mean += Hd[i * n + i];
    }
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++)
        Hd[i * n + i] += damp * mean;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < n; c++)
            Wd[r * n + c] = dead[c] ? 0.0 : (double)W[r * n + c];

    /* step 4 */
    if (inverse_upper_factor(Hd, U, A, B, n)) {
        st = qnpu__fail(QNPU_ERR_NUMERIC, "gptq: the damped Hessian (%lld x %lld, damping %g of the mean diagonal "
                        "%g) is not positive definite", (long long)n, (long long)n, damp, mean);
        goto done;
    }

    /* step 5, ROW_CHUNK rows at a time */
    for (int64_t r0 = 0; r0 < rows; r0 += ROW_CHUNK) {
        int64_t r1 = r0 + ROW_CHUNK < rows ? r0 + ROW_CHUNK : rows;
        double err[ROW_CHUNK];
        for (int64_t i = 0; i < n; i++) {
            const double *Ui = U + i * n;
            for (int64_t r = r0; r < r1; r++) {
                double s = (double)scales[r], w = Wd[r * n + i];
                double c = rint(w / s);
                c = c < (double)qmin ? (double)qmin : c > (double)qmax ? (double)qmax : c;
                q[r * n + i] = (int8_t)c;
                err[r - r0] = (w - c * s) / Ui[i];
            }
            for (int64_t r = r0; r < r1; r++) {
                double e = err[r - r0], *w = Wd + r * n;
                if (e == 0.0)
                    continue;
                for (int64_t j = i + 1; j < n; j++)
                    w[j] -= e * Ui[j];
            }
        }
    }

    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < n; c++)
            W[r * n + c] = (float)q[r * n + c] * scales[r];
    if (codes)
        memcpy(codes, q, (size_t)(rows * n) * sizeof *codes);
    st = QNPU_OK;
done:
    qnpu__free(Hd);
    qnpu__free(U);
    qnpu__free(A);
    qnpu__free(B);
    qnpu__free(Wd);
    qnpu__free(q);
    qnpu__free(dead);
    return st;
}

/* ---- the model pass ------------------------------------------------------------------------- */

enum { NW = QNPU__LEARNED_NW, NA = QNPU__LEARNED_NA, NGROUPS = 4 };

/* The groups of linears sharing an input, in execution order: input point, first weight, count. */
static const struct {
    int point, w0, nw;
} groups[NGROUPS] = {
    {QNPU__S1_A_QKV, QNPU__S1_W_Q, 3},
    {QNPU__S1_A_O, QNPU__S1_W_O, 1},
    {QNPU__S1_A_GATE_UP, QNPU__S1_W_GATE, 2},
    {QNPU__S1_A_DOWN, QNPU__S1_W_DOWN, 1},
};

static const char *const wname[NW] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                      "ffn_down"};

typedef struct gctx {
    const qnpu__train_qparams *qp;
    unsigned char *done;     /* per (layer, weight): holds its GPTQ weight */
    int64_t layer;           /* the layer being measured                    */
    unsigned collect;        /* bit gi: accumulate group gi's input         */
    int last;                /* the last collected point: stop after it     */
    int threads;
    double *H[NGROUPS];      /* n × n accumulators                          */
    float *xtx;              /* n × n float32 product of one block          */
    int reached;             /* the forward reached `last`                  */
} gctx;

static qnpu_status hook_fq(void *user, int point, int64_t layer, const float *x, float *y, int64_t rows,
                           int64_t cols)
{
    gctx *g = user;
    const qnpu__train_qparams *qp = g->qp;
    size_t n = (size_t)(rows * cols);
    if (layer < 0 || layer >= qp->L)
        return qnpu__fail(QNPU_ERR_INTERNAL, "gptq: unexpected quantization point %d, layer %lld", point,
                          (long long)layer);
    if (point >= QNPU__S1_W_Q && point <= QNPU__S1_W_DOWN) {
        int64_t k = layer * NW + point;
        if (g->done[k]) {
            memcpy(y, x, n * sizeof *y);
            return QNPU_OK;
        }
        return qnpu__weight_fake_quant(x, rows, cols, cols, qp->ws + qp->woff[k], qp->w_bits, y, cols);
    }
    if (point < QNPU__S1_A_QKV || point > QNPU__S1_A_DOWN)
        return qnpu__fail(QNPU_ERR_INTERNAL, "gptq: unexpected quantization point %d", point);
    int a = point - QNPU__S1_A_QKV; /* = the group index */
    int64_t k = layer * NA + a;
    if (qp->act_learned[k]) {
        int32_t qmin, qmax;
        qnpu_status st = qnpu__qrange(qp->act_bits[k], 0, &qmin, &qmax);
        if (st != QNPU_OK)
            return st;
        qnpu__fq_observer_vec(x, y, n, qp->as[k], qnpu__round_zero_point(qp->az[k]), qmin, qmax);
    } else {
        memcpy(y, x, n * sizeof *y);
    }
    if (layer != g->layer || !(g->collect >> a & 1u))
        return QNPU_OK;
    /* H += 2·yᵀ·y (cols × cols) */
    qnpu__sgemm_ex(g->threads, 1, 0, cols, cols, rows, 1.0f, y, cols, y, cols, 0.0f, g->xtx, cols);
    double *H = g->H[a];
    for (int64_t i = 0; i < cols * cols; i++)
        H[i] += 2.0 * (double)g->xtx[i];
    if (point != g->last)
        return QNPU_OK;
    g->reached = 1;
    return QNPU_ERR_CANCELLED; /* a private stop signal (no message): caught by measure() */
}

/* g->H[gi] = 2·XᵀX of the input of group gi of g->layer over the blocks, for every gi in
 * g->collect (sizes n[gi] × n[gi]). */
static qnpu_status measure(const qnpu_model *m, gctx *g, const qnpu__s1_hooks *hk, const int32_t *blocks,
                           int64_t nblocks, int64_t T, const int64_t *n)
{
    for (int gi = 0; gi < NGROUPS; gi++)
        if (g->collect >> gi & 1u) {
            memset(g->H[gi], 0, (size_t)(n[gi] * n[gi]) * sizeof *g->H[gi]);
            g->last = groups[gi].point;
        }
    for (int64_t b = 0; b < nblocks; b++) {
        g->reached = 0;
        qnpu_status st = qnpu__s1_loss_grad(m, NULL, NULL, blocks + b * T, T, hk, g->threads, NULL, NULL, NULL, 0);
        if (st == QNPU_ERR_CANCELLED && g->reached)
            continue;
        if (st == QNPU_OK)
            return qnpu__fail(QNPU_ERR_INTERNAL, "gptq: the forward never reached layer %lld's point %d",
                              (long long)g->layer, g->last);
        qnpu__error_prefix("gptq, layer %lld, block %lld", (long long)g->layer, (long long)b);
        return st;
    }
    return QNPU_OK;
}

static qnpu_status check_inputs(const qnpu_model *m, const qnpu__train_qparams *qp, int64_t nblocks, int64_t T,
                                float *W[][NW])
{
    int64_t d = m->dim, ff = m->ffn, qd = m->n_heads * m->head_dim, kvd = m->n_kv_heads * m->head_dim;
    const int64_t rows[NW] = {qd, kvd, kvd, d, ff, ff, d}, cols[NW] = {d, d, d, qd, d, d, ff};
    if (!m->prepared)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: the model is not prepared (fused rotations expected)");
    if (nblocks < 1 || T < 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: %lld blocks of %lld tokens (need >= 1 block of >= 2)",
                          (long long)nblocks, (long long)T);
    if (!qp->woff || !qp->ws || !qp->as || !qp->az || !qp->act_bits || !qp->act_learned)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: incomplete learned parameters (NULL arrays)");
    if (qp->L != m->n_layers)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: the learned parameters are for %lld layers, the model has "
                          "%lld", (long long)qp->L, (long long)m->n_layers);
    if (qp->w_bits < 2 || qp->w_bits > 8)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: weight bits %d outside [2, 8]", qp->w_bits);
    for (int w = 0; w < NW; w++)
        if (qp->wrows[w] != rows[w])
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: the learned %s scales have %lld rows, the model %lld",
                              wname[w], (long long)qp->wrows[w], (long long)rows[w]);
    for (int64_t l = 0; l < m->n_layers; l++) {
        const qnpu__layer *Ly = &m->layers[l];
        const float *lw[NW] = {Ly->wq, Ly->wk, Ly->wv, Ly->wo, Ly->w_gate, Ly->w_up, Ly->w_down};
        for (int w = 0; w < NW; w++) {
            int64_t k = l * NW + w;
            if (qp->woff[k] < 0 || qp->woff[k] + rows[w] > qp->wtotal)
                return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: bad scale offset of layer %lld's %s", (long long)l,
                                  wname[w]);
            const float *s = qp->ws + qp->woff[k];
            for (int64_t r = 0; r < rows[w]; r++)
                if (!(s[r] > 0.0f) || !isfinite(s[r]))
                    return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: layer %lld %s: learned scale of row %lld is %g",
                                      (long long)l, wname[w], (long long)r, (double)s[r]);
            /* the writable copy behind the layer's pointer: an owned float32 tensor */
            char name[96];
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, wname[w]);
            qnpu__tensor *t = qnpu__model_tensor(m, name);
            if (!t || !t->owned || t->data != lw[w] || t->rows != rows[w] || t->cols != cols[w])
                return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: tensor '%s' is not an owned float32 copy of the "
                                  "expected shape (pass a fused model, e.g. from the stage-1 export)", name);
            W[l][w] = t->data;
        }
        for (int a = 0; a < NA; a++) {
            int64_t k = l * NA + a;
            if (qp->act_learned[k] && (!(qp->as[k] > 0.0f) || !isfinite(qp->as[k]) || !isfinite(qp->az[k])))
                return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: layer %lld: learned activation qparams %d are "
                                  "(%g, %g)", (long long)l, a, (double)qp->as[k], (double)qp->az[k]);
            if (qp->act_learned[k] && (qp->act_bits[k] < 2 || qp->act_bits[k] > 16))
                return qnpu__fail(QNPU_ERR_INVALID_ARG, "gptq: layer %lld: learned activation %d at %d bits",
                                  (long long)l, a, qp->act_bits[k]);
        }
    }
    return QNPU_OK;
}

qnpu_status qnpu__gptq_weights(qnpu_model *fused, const qnpu__train_qparams *qp, const int32_t *blocks,
                               int64_t nblocks, int64_t T, const qnpu_options *o)
{
    if (!fused || !qp || !blocks)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__gptq_weights: NULL argument");
    int64_t L = fused->n_layers, d = fused->dim, ff = fused->ffn;
    int64_t qd = fused->n_heads * fused->head_dim, kvd = fused->n_kv_heads * fused->head_dim;
    const int64_t rows[NW] = {qd, kvd, kvd, d, ff, ff, d}, cols[NW] = {d, d, d, qd, d, d, ff};
    float *(*W)[NW] = qnpu__calloc((size_t)L, sizeof *W);
    if (!W)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "gptq: out of memory");
    qnpu_status st = check_inputs(fused, qp, nblocks, T, W);
    if (st != QNPU_OK) {
        qnpu__free(W);
        return st;
    }
    double damp = qnpu__opt_float(o, QNPU_P_OPTIM_GPTQ_DAMP);
    int64_t n[NGROUPS], R[NGROUPS], nmax = 0, rmax = 0;
    for (int gi = 0; gi < NGROUPS; gi++) {
        n[gi] = cols[groups[gi].w0];
        R[gi] = 0;
        for (int w = groups[gi].w0; w < groups[gi].w0 + groups[gi].nw; w++)
            R[gi] += rows[w];
        nmax = n[gi] > nmax ? n[gi] : nmax;
        rmax = R[gi] > rmax ? R[gi] : rmax;
    }
    gctx g = {0};
    g.qp = qp;
    g.threads = qnpu__opt_threads(o);
    g.done = qnpu__calloc((size_t)(L * NW), 1);
    g.xtx = qnpu__malloc((size_t)(nmax * nmax) * sizeof *g.xtx);
    int ok = g.done && g.xtx;
    for (int gi = 0; gi < NGROUPS; gi++)
        ok &= (g.H[gi] = qnpu__malloc((size_t)(n[gi] * n[gi]) * sizeof *g.H[gi])) != NULL;
    float *Ws = qnpu__malloc((size_t)(rmax * nmax) * sizeof *Ws), *Ss = qnpu__malloc((size_t)rmax * sizeof *Ss);
    int8_t *check = qnpu__malloc((size_t)(rmax * nmax) * sizeof *check);
    int8_t *codes = qnpu__malloc((size_t)(rmax * nmax) * sizeof *codes);
    if (!ok || !Ws || !Ss || !check || !codes) {
        st = qnpu__fail(QNPU_ERR_NO_MEMORY, "gptq: out of memory");
        goto done;
    }
    qnpu__s1_hooks hk = {0};
    hk.user = &g;
    hk.fq = hook_fq;
    for (int p = QNPU__S1_W_Q; p <= QNPU__S1_W_DOWN; p++)
        hk.enabled |= 1u << p;
    for (int p = QNPU__S1_A_QKV; p <= QNPU__S1_A_DOWN; p++)
        hk.enabled |= 1u << p;

    for (int64_t l = 0; l < L; l++) {
        g.layer = l;
        for (int gi = 0; gi < NGROUPS; gi++) {
            if (gi == 0) { /* one pass per layer: the four inputs with this layer's weights RTN */
                g.collect = (1u << NGROUPS) - 1u;
                if ((st = measure(fused, &g, &hk, blocks, nblocks, T, n)) != QNPU_OK)
                    goto done;
            }
            int w0 = groups[gi].w0, w1 = w0 + groups[gi].nw;
            int64_t nc = n[gi], r = 0;
            /* the group's weights stacked row-wise, with their scales: rows are independent in GPTQ */
            for (int w = w0; w < w1; w++) {
                memcpy(Ws + r * nc, W[l][w], (size_t)(rows[w] * nc) * sizeof *Ws);
                memcpy(Ss + r, qp->ws + qp->woff[l * NW + w], (size_t)rows[w] * sizeof *Ss);
                r += rows[w];
            }
            if ((st = qnpu__gptq_matrix(Ws, r, nc, g.H[gi], Ss, qp->w_bits, damp, codes)) != QNPU_OK) {
                qnpu__error_prefix("gptq, layer %lld, %s", (long long)l, wname[w0]);
                goto done;
            }
            /* stage 2's round-to-nearest with the same scales must give back the GPTQ codes */
            if ((st = qnpu__weight_quantize(Ws, r, nc, nc, Ss, qp->w_bits, check, nc)) != QNPU_OK)
                goto done;
            if (memcmp(check, codes, (size_t)(r * nc)) != 0) {
                st = qnpu__fail(QNPU_ERR_INTERNAL, "gptq, layer %lld, %s: s*q does not round back to q", (long long)l,
                                wname[w0]);
                goto done;
            }
            r = 0;
            for (int w = w0; w < w1; w++) {
                memcpy(W[l][w], Ws + r * nc, (size_t)(rows[w] * nc) * sizeof *Ws);
                r += rows[w];
                g.done[l * NW + w] = 1;
            }
        }
    }
    st = QNPU_OK;
done:
    qnpu__free(g.done);
    for (int gi = 0; gi < NGROUPS; gi++)
        qnpu__free(g.H[gi]);
    qnpu__free(g.xtx);
    qnpu__free(Ws);
    qnpu__free(Ss);
    qnpu__free(check);
    qnpu__free(codes);
    qnpu__free(W);
    return st;
}
