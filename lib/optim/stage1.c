/* stage1.c — forward, cross-entropy and ∂L/∂R1, ∂L/∂R2 of one block with the rotations applied
 * on the fly (see stage1.h; METHOD.md §4.3, §6.1, §8.1).
 *
 * Data flow of one layer (activations row vectors, weights [out][in], "ˆ" = after the hook):
 *     xn1 = rmsnorm(x);  q = xn1ˆ·Wq'ᵀ + bq;  k = xn1ˆ·Wk'ᵀ + bk;  v = xn1ˆ·Wv'ᵀ + bv'
 *     rope(q), rope(k);  att = attention(q, k, v)
 *     h = x + attˆ·Wo'ᵀ;  xn2 = rmsnorm(h);  g = xn2ˆ·Wg'ᵀ;  u = xn2ˆ·Wu'ᵀ;  s = silu(g)·u
 *     (s = silu(g)·u·R4 in a layer with online R4, whose Wd already holds R4 on its input side)
 *     x_next = h + sˆ·Wd'ᵀ
 * The forward stores x (each layer's input) only; the backward rebuilds the layer's rotated
 * weights and recomputes its activations from x before running the layer's reverse pass. */
#include <math.h>
#include <string.h>

#include "../float/ops.h"
#include "../rotate/hadamard.h"
#include "backward.h"
#include "stage1.h"

enum { WQ = 0, WK, WV, WO, WG, WU, WD, NW };

/* One layer's activations (N = nseq·T rows). */
typedef struct acts {
    float *xn1, *xn1q, *q, *k, *v, *att, *attq, *h, *xn2, *xn2q, *g, *u, *s, *sq;
} acts;

typedef struct s1 {
    const qnpu_model *m;
    const float *R1;
    const float *const *R2;
    const qnpu__s1_hooks *hk;
    int nt;
    int64_t nseq, T, N, d, ff, dh, H, KV, qd, kvd, V, L; /* N = nseq·T rows */
    float *cos_t, *sin_t, *work;
    /* the current layer: rotated weights (raw), after the hook (used; == raw when float) */
    float *Wr[NW], *Wq_[NW];
    float *Av, *Bv, *Ao, *Bo, *bv; /* Wv·R1, B2ᵀ·Wv, Wo·B2q, R1ᵀ·Wo, bv·B2 */
    /* online R4 (some layer has one): the current layer's R4 as a dense ff × ff matrix (built
     * from its Hadamard plan; the products run through BLIS), the plan's work space and one
     * N × ff buffer for the products; r4on: the current layer has R4 */
    int has_r4, r4on;
    float *R4d, *r4w, *r4t;
    /* activations (…q = after the hook, or the same buffer): the current layer's set, one of
     * `keep` (every layer's, when they fit in QNPU__S1_KEEP_BYTES: no recomputation) or a single
     * set the backward refills by recomputing the layer */
    float *xn1, *xn1q, *q, *k, *v, *att, *attq, *h, *xn2, *xn2q, *g, *u, *s, *sq;
    acts *keep;
    int64_t nkeep;
    int recompute;
    /* gradients */
    float *G, *dxn, *dxc, *dq, *dk, *dv, *datt, *ds, *dg, *du, *dbv;
} s1;

static int on(const s1 *S, int point)
{
    return S->hk && (S->hk->enabled >> point & 1u);
}

/* out = the hook's x̂ of x (rows × cols), or x itself when the point is float. */
static qnpu_status fq(const s1 *S, int point, int64_t layer, const float *x, float *buf, int64_t rows,
                      int64_t cols, float **out)
{
    if (!on(S, point) || !S->hk->fq) {
        *out = (float *)x;
        return QNPU_OK;
    }
    *out = buf;
    return S->hk->fq(S->hk->user, point, layer, x, buf, rows, cols);
}

static int has_bw(const s1 *S, int point)
{
    return on(S, point) && S->hk->fq_backward;
}

/* g (∂L/∂x̂ of consumer `consumer`) becomes its ∂L/∂x in place (STE when there is no backward
 * hook). */
static qnpu_status fq_bw(const s1 *S, int point, int64_t layer, int consumer, const float *x, float *g,
                         int64_t rows, int64_t cols)
{
    if (!has_bw(S, point))
        return QNPU_OK;
    return S->hk->fq_backward(S->hk->user, point, layer, consumer, x, g, g, rows, cols);
}

/* out (rows × cols) = A·blockdiag(R, …, R), R n × n (NULL = identity), cols a multiple of n. */
static void rot_pre(int nt, float *out, const float *A, int64_t rows, int64_t cols, const float *R,
                    int64_t n)
{
    if (!R) {
        memcpy(out, A, (size_t)(rows * cols) * sizeof *out);
        return;
    }
    for (int64_t b = 0; b < cols; b += n)
        qnpu__sgemm(nt, rows, n, n, 1.0f, A + b, cols, R, n, 0, 0.0f, out + b, cols);
}

/* out (rows × cols) = blockdiag(R, …, R)ᵀ·A, rows a multiple of n. */
static void rot_post(int nt, float *out, const float *A, int64_t rows, int64_t cols, const float *R,
                     int64_t n)
{
    if (!R) {
        memcpy(out, A, (size_t)(rows * cols) * sizeof *out);
        return;
    }
    for (int64_t b = 0; b < rows; b += n)
        qnpu__sgemm_ex(nt, 1, 0, n, cols, n, 1.0f, R, n, A + b * cols, cols, 0.0f, out + b * cols, cols);
}

/* §6.1 pre:  W' = A·blockdiag(R):  gR (n × n) += Σ_blocks A_blkᵀ·G_blk  (column blocks) */
static void grad_pre(int nt, float *gR, const float *A, const float *G, int64_t rows, int64_t cols,
                     int64_t n)
{
    for (int64_t b = 0; b < cols; b += n)
        qnpu__sgemm_ex(nt, 1, 0, n, n, rows, 1.0f, A + b, cols, G + b, cols, 1.0f, gR, n);
}

/* §6.1 post: W' = blockdiag(R)ᵀ·A:  gR += Σ_blocks A_blk·G_blkᵀ  (row blocks) */
static void grad_post(int nt, float *gR, const float *A, const float *G, int64_t rows, int64_t cols,
                      int64_t n)
{
    for (int64_t b = 0; b < rows; b += n)
        qnpu__sgemm(nt, n, n, cols, 1.0f, A + b * cols, cols, G + b * cols, cols, 1, 1.0f, gR, n);
}

static const float *r2_of(const s1 *S, int64_t l)
{
    return S->R2 ? S->R2[l] : NULL;
}

/* Rotate layer l's weights (and pass them through the weight hooks). `grads`: also the partially
 * rotated weights the gradient formulas need (Bv, Bo). */
static qnpu_status build_layer(s1 *S, int64_t l, int grads)
{
    const qnpu__layer *Ly = &S->m->layers[l];
    const float *R1 = S->R1, *R2 = r2_of(S, l);
    int nt = S->nt;
    int64_t d = S->d, ff = S->ff, dh = S->dh, qd = S->qd, kvd = S->kvd;
    rot_pre(nt, S->Wr[WQ], Ly->wq, qd, d, R1, d);
    rot_pre(nt, S->Wr[WK], Ly->wk, kvd, d, R1, d);
    rot_pre(nt, S->Av, Ly->wv, kvd, d, R1, d);
    rot_post(nt, S->Wr[WV], S->Av, kvd, d, R2, dh);
    rot_pre(nt, S->Ao, Ly->wo, d, qd, R2, dh);
    rot_post(nt, S->Wr[WO], S->Ao, d, qd, R1, d);
    rot_pre(nt, S->Wr[WG], Ly->w_gate, ff, d, R1, d);
    rot_pre(nt, S->Wr[WU], Ly->w_up, ff, d, R1, d);
    rot_post(nt, S->Wr[WD], Ly->w_down, d, ff, R1, d);
    if (Ly->bv)
        rot_pre(nt, S->bv, Ly->bv, 1, kvd, R2, dh);
    S->r4on = S->m->r4 && S->m->r4[l];
    if (S->r4on) { /* R4 = I·R4: the plan applied to the rows of the identity */
        memset(S->R4d, 0, (size_t)(ff * ff) * sizeof *S->R4d);
        for (int64_t i = 0; i < ff; i++)
            S->R4d[i * ff + i] = 1.0f;
        qnpu__hadamard_apply_ws(S->m->r4[l], S->R4d, ff, ff, S->r4w);
    }
    if (grads) {
        rot_post(nt, S->Bv, Ly->wv, kvd, d, R2, dh);
        rot_post(nt, S->Bo, Ly->wo, d, qd, R1, d);
    }
    const int64_t rows[NW] = {qd, kvd, kvd, d, ff, ff, d}, cols[NW] = {d, d, d, qd, d, d, ff};
    for (int i = 0; i < NW; i++) {
        float *out; /* the hook writes into Wq_[i]; wused() picks the buffer */
        qnpu_status st = fq(S, QNPU__S1_W_Q + i, l, S->Wr[i], S->Wq_[i], rows[i], cols[i], &out);
        if (st != QNPU_OK)
            return st;
    }
    return QNPU_OK;
}

/* The weight actually used by the products: after the hook when the point is quantized. */
static const float *wused(const s1 *S, int i)
{
    return on(S, QNPU__S1_W_Q + i) && S->hk->fq ? S->Wq_[i] : S->Wr[i];
}

static void add_bias(float *y, const float *b, int64_t T, int64_t n)
{
    if (!b)
        return;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++)
            y[t * n + i] += b[i];
}

/* Layer l's forward from x; x_out (may be NULL: stop after s) receives the next residual. The
 * activations stay in S for the backward. build_layer(l) must have run. */
static qnpu_status layer_fwd(s1 *S, int64_t l, const float *x, float *x_out)
{
    const qnpu_model *m = S->m;
    const qnpu__layer *Ly = &m->layers[l];
    int nt = S->nt;
    int64_t T = S->N, Ts = S->T, d = S->d, ff = S->ff, dh = S->dh, qd = S->qd, kvd = S->kvd;
    qnpu_status st;
    float *a;
    qnpu__rmsnorm(S->xn1, x, Ly->attn_norm, T, d, m->rms_eps);
    if ((st = fq(S, QNPU__S1_A_QKV, l, S->xn1, S->xn1q, T, d, &a)) != QNPU_OK)
        return st;
    const float *xa = a;
    qnpu__linear_forward(nt, T, qd, d, xa, wused(S, WQ), NULL, S->q);
    qnpu__linear_forward(nt, T, kvd, d, xa, wused(S, WK), NULL, S->k);
    qnpu__linear_forward(nt, T, kvd, d, xa, wused(S, WV), NULL, S->v);
    add_bias(S->q, Ly->bq, T, qd);
    add_bias(S->k, Ly->bk, T, kvd);
    add_bias(S->v, Ly->bv ? S->bv : NULL, T, kvd);
    for (int64_t i = 0; i < S->nseq; i++) { /* each sequence from position 0 */
        qnpu__rope(S->q + i * Ts * qd, Ts, qd, S->H, dh, 0, S->cos_t, S->sin_t, 1);
        qnpu__rope(S->k + i * Ts * kvd, Ts, kvd, S->KV, dh, 0, S->cos_t, S->sin_t, 1);
        if ((st = qnpu__attention_forward(nt, Ts, S->H, S->KV, dh, S->q + i * Ts * qd, S->k + i * Ts * kvd,
                                          S->v + i * Ts * kvd, S->att + i * Ts * qd, S->work)) != QNPU_OK)
            return st;
    }
    if ((st = fq(S, QNPU__S1_A_O, l, S->att, S->attq, T, qd, &a)) != QNPU_OK)
        return st;
    qnpu__linear_forward(nt, T, d, qd, a, wused(S, WO), NULL, S->h);
    for (int64_t i = 0; i < T * d; i++)
        S->h[i] += x[i];
    qnpu__rmsnorm(S->xn2, S->h, Ly->ffn_norm, T, d, m->rms_eps);
    if ((st = fq(S, QNPU__S1_A_GATE_UP, l, S->xn2, S->xn2q, T, d, &a)) != QNPU_OK)
        return st;
    qnpu__linear_forward(nt, T, ff, d, a, wused(S, WG), NULL, S->g);
    qnpu__linear_forward(nt, T, ff, d, a, wused(S, WU), NULL, S->u);
    memcpy(S->s, S->g, (size_t)(T * ff) * sizeof *S->s);
    qnpu__swiglu(S->s, S->u, T * ff);
    if (S->r4on) { /* online R4: the down input is silu(g)·u·R4 (R4 is fused into Wd) */
        memcpy(S->r4t, S->s, (size_t)(T * ff) * sizeof *S->s);
        qnpu__sgemm(nt, T, ff, ff, 1.0f, S->r4t, ff, S->R4d, ff, 0, 0.0f, S->s, ff);
    }
    if ((st = fq(S, QNPU__S1_A_DOWN, l, S->s, S->sq, T, ff, &a)) != QNPU_OK)
        return st;
    if (x_out) {
        qnpu__linear_forward(nt, T, d, ff, a, wused(S, WD), NULL, x_out);
        for (int64_t i = 0; i < T * d; i++)
            x_out[i] += S->h[i];
    }
    return QNPU_OK;
}

/* The activation a linear read: after the hook when the point is quantized. */
static const float *aused(const s1 *S, int point, const float *raw, const float *q)
{
    return on(S, point) && S->hk->fq ? q : raw;
}

/* G = ∂L/∂W' of the used weight i (through its hook's backward: ∂L/∂ of the raw rotated weight).
 * y = x·W_usedᵀ with x (T × n_in) and dy (T × n_out). */
static qnpu_status weight_grad(s1 *S, int64_t l, int i, int point, const float *x, const float *dy,
                               int64_t n_out, int64_t n_in, const float *Wraw)
{
    qnpu__linear_backward(S->nt, S->N, n_out, n_in, x, NULL, dy, NULL, S->G, NULL, 0);
    return fq_bw(S, point, l, 0, Wraw, S->G, n_out, n_in);
}

/* ∂L/∂x of an input x (T × n_in) read through point `point` by nc linears y_c = x̂·W_cᵀ (W_c
 * n_out[c] × n_in, upstream dy[c]), into dxn. Without a backward hook the input gradients are
 * summed directly; with one, each linear's ∂L/∂x̂ goes through the hook on its own (one clamped
 * contribution per consuming linear, rule 11) and the results are summed. */
static qnpu_status shared_input_bw(s1 *S, int64_t l, int point, const float *x, const float *a, int64_t n_in,
                                   int nc, const float *const *W, const float *const *dy, const int64_t *n_out,
                                   float *dxn)
{
    int64_t n = S->N * n_in;
    for (int c = 0; c < nc; c++) {
        if (!has_bw(S, point)) {
            qnpu__linear_backward(S->nt, S->N, n_out[c], n_in, a, W[c], dy[c], dxn, NULL, NULL, c > 0);
            continue;
        }
        float *dst = c == 0 ? dxn : S->dxc;
        qnpu__linear_backward(S->nt, S->N, n_out[c], n_in, a, W[c], dy[c], dst, NULL, NULL, 0);
        qnpu_status st = fq_bw(S, point, l, c, x, dst, S->N, n_in);
        if (st != QNPU_OK)
            return st;
        if (c > 0)
            for (int64_t i = 0; i < n; i++)
                dxn[i] += dst[i];
    }
    return QNPU_OK;
}

/* Layer l's reverse pass: dx holds ∂L/∂x_out on entry and ∂L/∂x on return. The activations of
 * layer_fwd(l, x) and build_layer(l, 1) must be current. */
static qnpu_status layer_bwd(s1 *S, int64_t l, const float *x, float *dx, float *gR1, float *gR2)
{
    const qnpu_model *m = S->m;
    const qnpu__layer *Ly = &m->layers[l];
    int nt = S->nt;
    int64_t T = S->N, Ts = S->T, d = S->d, ff = S->ff, dh = S->dh, qd = S->qd, kvd = S->kvd;
    qnpu_status st;
    const float *a;

    /* down: x_out = h + sˆ·Wd'ᵀ, Wd' = R1ᵀ·Wd (post) */
    a = aused(S, QNPU__S1_A_DOWN, S->s, S->sq);
    qnpu__linear_backward(nt, T, d, ff, a, wused(S, WD), dx, S->ds, NULL, NULL, 0);
    if ((st = weight_grad(S, l, WD, QNPU__S1_W_DOWN, a, dx, d, ff, S->Wr[WD])) != QNPU_OK)
        return st;
    if (gR1)
        grad_post(nt, gR1, Ly->w_down, S->G, d, ff, d);
    if ((st = fq_bw(S, QNPU__S1_A_DOWN, l, 0, S->s, S->ds, T, ff)) != QNPU_OK)
        return st;
    if (S->r4on) { /* ∂L/∂(silu·u) = ∂L/∂(silu·u·R4)·R4ᵀ */
        memcpy(S->r4t, S->ds, (size_t)(T * ff) * sizeof *S->ds);
        qnpu__sgemm(nt, T, ff, ff, 1.0f, S->r4t, ff, S->R4d, ff, 1, 0.0f, S->ds, ff);
    }
    qnpu__swiglu_backward(S->dg, S->du, S->g, S->u, S->ds, T * ff, 0);

    /* gate, up: pre R1 */
    a = aused(S, QNPU__S1_A_GATE_UP, S->xn2, S->xn2q);
    if ((st = weight_grad(S, l, WG, QNPU__S1_W_GATE, a, S->dg, ff, d, S->Wr[WG])) != QNPU_OK)
        return st;
    if (gR1)
        grad_pre(nt, gR1, Ly->w_gate, S->G, ff, d, d);
    if ((st = weight_grad(S, l, WU, QNPU__S1_W_UP, a, S->du, ff, d, S->Wr[WU])) != QNPU_OK)
        return st;
    if (gR1)
        grad_pre(nt, gR1, Ly->w_up, S->G, ff, d, d);
    {
        const float *Wc[2] = {wused(S, WG), wused(S, WU)}, *dyc[2] = {S->dg, S->du};
        const int64_t no[2] = {ff, ff};
        if ((st = shared_input_bw(S, l, QNPU__S1_A_GATE_UP, S->xn2, a, d, 2, Wc, dyc, no, S->dxn)) != QNPU_OK)
            return st;
    }
    qnpu__rmsnorm_backward(dx, S->h, S->dxn, T, d, m->rms_eps, 1); /* dx is now ∂L/∂h */

    /* o: h = x + attˆ·Wo'ᵀ, Wo' = R1ᵀ·Wo·B2q (pre B2q, post R1) */
    a = aused(S, QNPU__S1_A_O, S->att, S->attq);
    qnpu__linear_backward(nt, T, d, qd, a, wused(S, WO), dx, S->datt, NULL, NULL, 0);
    if ((st = weight_grad(S, l, WO, QNPU__S1_W_O, a, dx, d, qd, S->Wr[WO])) != QNPU_OK)
        return st;
    if (gR1)
        grad_post(nt, gR1, S->Ao, S->G, d, qd, d);
    if (gR2)
        grad_pre(nt, gR2, S->Bo, S->G, d, qd, dh);
    if ((st = fq_bw(S, QNPU__S1_A_O, l, 0, S->att, S->datt, T, qd)) != QNPU_OK)
        return st;

    /* attention and RoPE, sequence by sequence */
    for (int64_t i = 0; i < S->nseq; i++) {
        float *dq = S->dq + i * Ts * qd, *dk = S->dk + i * Ts * kvd;
        if ((st = qnpu__attention_backward(nt, Ts, S->H, S->KV, dh, S->q + i * Ts * qd, S->k + i * Ts * kvd,
                                           S->v + i * Ts * kvd, S->datt + i * Ts * qd, dq, dk,
                                           S->dv + i * Ts * kvd, 0, S->work)) != QNPU_OK)
            return st;
        if ((st = qnpu__rope_backward(dq, Ts, qd, S->H, dh, 0, S->cos_t, S->sin_t, 1)) != QNPU_OK ||
            (st = qnpu__rope_backward(dk, Ts, kvd, S->KV, dh, 0, S->cos_t, S->sin_t, 1)) != QNPU_OK)
            return st;
    }

    /* q, k: pre R1;  v: W' = B2ᵀ·Wv·R1 (pre R1, post B2), b' = b·B2 */
    a = aused(S, QNPU__S1_A_QKV, S->xn1, S->xn1q);
    if ((st = weight_grad(S, l, WQ, QNPU__S1_W_Q, a, S->dq, qd, d, S->Wr[WQ])) != QNPU_OK)
        return st;
    if (gR1)
        grad_pre(nt, gR1, Ly->wq, S->G, qd, d, d);
    if ((st = weight_grad(S, l, WK, QNPU__S1_W_K, a, S->dk, kvd, d, S->Wr[WK])) != QNPU_OK)
        return st;
    if (gR1)
        grad_pre(nt, gR1, Ly->wk, S->G, kvd, d, d);
    if ((st = weight_grad(S, l, WV, QNPU__S1_W_V, a, S->dv, kvd, d, S->Wr[WV])) != QNPU_OK)
        return st;
    if (gR1)
        grad_pre(nt, gR1, S->Bv, S->G, kvd, d, d);
    if (gR2)
        grad_post(nt, gR2, S->Av, S->G, kvd, d, dh);
    if (gR2 && Ly->bv) {
        qnpu__linear_backward(nt, T, kvd, d, a, wused(S, WV), S->dv, NULL, NULL, S->dbv, 0);
        grad_pre(nt, gR2, Ly->bv, S->dbv, 1, kvd, dh);
    }
    {
        const float *Wc[3] = {wused(S, WQ), wused(S, WK), wused(S, WV)}, *dyc[3] = {S->dq, S->dk, S->dv};
        const int64_t no[3] = {qd, kvd, kvd};
        if ((st = shared_input_bw(S, l, QNPU__S1_A_QKV, S->xn1, a, d, 3, Wc, dyc, no, S->dxn)) != QNPU_OK)
            return st;
    }
    qnpu__rmsnorm_backward(dx, x, S->dxn, T, d, m->rms_eps, 1);
    return QNPU_OK;
}

static int unit(const float *w, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (w[i] != 1.0f)
            return 0;
    return 1;
}

static qnpu_status check_tokens(const qnpu_model *m, const int32_t *tokens, int64_t T)
{
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= m->vocab)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: token %d at position %lld is outside the vocabulary of %lld",
                              tokens[t], (long long)t, (long long)m->vocab);
    return QNPU_OK;
}

/* The model stage 1 runs on: prepared, unit norm weights, online R4 (if any) of the FFN width, a
 * valid head layout. */
static qnpu_status check_model(const qnpu_model *m)
{
    if (!m->prepared || !m->rope_half)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: the model is not prepared (run the rotator first)");
    for (int64_t l = 0; m->r4 && l < m->n_layers; l++)
        if (m->r4[l] && m->r4[l]->n != m->ffn)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: layer %lld's online R4 has order %lld, the FFN width "
                              "is %lld", (long long)l, (long long)m->r4[l]->n, (long long)m->ffn);
    if (!unit(m->out_norm, m->dim))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: the final norm weight is not fused (not all ones)");
    for (int64_t l = 0; l < m->n_layers; l++)
        if (!unit(m->layers[l].attn_norm, m->dim) || !unit(m->layers[l].ffn_norm, m->dim))
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: layer %lld's norm weights are not fused (not all ones)",
                              (long long)l);
    if (m->n_heads % m->n_kv_heads || m->head_dim % 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: bad head layout");
    return QNPU_OK;
}

static qnpu_status check_args(const qnpu_model *m, const int32_t *tokens, int64_t T)
{
    if (!m || !tokens)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: NULL model or tokens");
    if (T < 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: a block needs at least 2 tokens (got %lld)",
                          (long long)T);
    qnpu_status st = check_tokens(m, tokens, T);
    return st == QNPU_OK ? check_model(m) : st;
}

/* nseq sequences of T tokens: at least one, and nseq·T representable. */
static qnpu_status check_batch(int64_t nseq, int64_t T, int64_t tmin)
{
    if (T < tmin)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: a block needs at least %lld token%s (got %lld)",
                          (long long)tmin, tmin == 1 ? "" : "s", (long long)T);
    if (nseq < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: need at least one sequence (got %lld)", (long long)nseq);
    if (T > 0 && nseq > INT64_MAX / T)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1: %lld sequences of %lld tokens are too many",
                          (long long)nseq, (long long)T);
    return QNPU_OK;
}

/* Carve 64-byte aligned pieces out of one block: pass 1 (base NULL) counts, pass 2 assigns. */
typedef struct arena {
    float *base;
    size_t used;
} arena;

static float *take(arena *A, size_t n)
{
    float *p = A->base ? A->base + A->used : NULL;
    A->used += (n + 15) & ~(size_t)15;
    return p;
}

static void carve_acts(arena *A, acts *a, size_t N, size_t d, size_t ff, size_t qd, size_t kvd, int aq)
{
    a->xn1 = take(A, N * d);
    a->xn1q = aq ? take(A, N * d) : NULL;
    a->q = take(A, N * qd);
    a->k = take(A, N * kvd);
    a->v = take(A, N * kvd);
    a->att = take(A, N * qd);
    a->attq = aq ? take(A, N * qd) : NULL;
    a->h = take(A, N * d);
    a->xn2 = take(A, N * d);
    a->xn2q = aq ? take(A, N * d) : NULL;
    a->g = take(A, N * ff);
    a->u = take(A, N * ff);
    a->s = take(A, N * ff);
    a->sq = aq ? take(A, N * ff) : NULL;
}

/* Make layer l's activation set (or the one shared set) current. */
static void use_acts(s1 *S, int64_t l)
{
    const acts *a = &S->keep[S->recompute ? 0 : l];
    S->xn1 = a->xn1;
    S->xn1q = a->xn1q;
    S->q = a->q;
    S->k = a->k;
    S->v = a->v;
    S->att = a->att;
    S->attq = a->attq;
    S->h = a->h;
    S->xn2 = a->xn2;
    S->xn2q = a->xn2q;
    S->g = a->g;
    S->u = a->u;
    S->s = a->s;
    S->sq = a->sq;
}

/* The pieces of one layer's forward and backward: RoPE tables, rotated weights, S->nkeep
 * activation sets and, with `grads`, the reverse pass's buffers (G of at least gmin floats). */
static void carve_layer(s1 *S, arena *A, int grads, int wq, int aq, size_t gmin)
{
    size_t T = (size_t)S->T, N = (size_t)S->N, d = (size_t)S->d, ff = (size_t)S->ff, qd = (size_t)S->qd,
           kvd = (size_t)S->kvd, hd = (size_t)S->dh / 2;
    const size_t wsz[NW] = {qd * d, kvd * d, kvd * d, d * qd, ff * d, ff * d, d * ff};
    S->cos_t = take(A, T * hd);
    S->sin_t = take(A, T * hd);
    S->work = take(A, qnpu__attention_work_floats(S->T, S->dh));
    for (int i = 0; i < NW; i++) {
        S->Wr[i] = take(A, wsz[i]);
        S->Wq_[i] = wq ? take(A, wsz[i]) : NULL;
    }
    S->Av = take(A, kvd * d);
    S->Ao = take(A, d * qd);
    S->bv = take(A, kvd);
    S->Bv = grads ? take(A, kvd * d) : NULL;
    S->Bo = grads ? take(A, d * qd) : NULL;
    S->R4d = S->has_r4 ? take(A, ff * ff) : NULL;
    S->r4w = S->has_r4 ? take(A, ff) : NULL;
    S->r4t = S->has_r4 ? take(A, N * ff) : NULL;
    for (int64_t l = 0; l < S->nkeep; l++)
        carve_acts(A, &S->keep[l], N, d, ff, qd, kvd, aq);
    if (grads) {
        size_t gmax = gmin;
        for (int i = 0; i < NW; i++)
            gmax = wsz[i] > gmax ? wsz[i] : gmax;
        S->G = take(A, gmax);
        S->dxn = take(A, N * d);
        S->dxc = take(A, N * d);
        S->dq = take(A, N * qd);
        S->dk = take(A, N * kvd);
        S->dv = take(A, N * kvd);
        S->datt = take(A, N * qd);
        S->ds = take(A, N * ff);
        S->dg = take(A, N * ff);
        S->du = take(A, N * ff);
        S->dbv = take(A, kvd);
    }
}

static void carve(s1 *S, arena *A, int grads, int wq, int aq, float ***xs, float **E, float **xf,
                  float **Wout, float **Woutq, float **logits, float **dlog, float **dx)
{
    size_t N = (size_t)S->N, d = (size_t)S->d, V = (size_t)S->V;
    carve_layer(S, A, grads, wq, aq, V * d);
    if (grads) {
        *dlog = take(A, N * V);
        *dx = take(A, N * d);
    }
    float **x = (float **)take(A, ((size_t)S->L + 1) * sizeof(float *) / sizeof(float) + 1);
    if (x)
        for (int64_t l = 0; l <= S->L; l++)
            x[l] = take(A, N * d);
    else
        for (int64_t l = 0; l <= S->L; l++)
            take(A, N * d);
    *xs = x;
    *E = take(A, N * d);
    *xf = take(A, N * d);
    *Wout = take(A, V * d);
    *Woutq = wq ? take(A, V * d) : NULL;
    *logits = take(A, N * V);
}

/* x0 (N × d) = E[tokens]·R1: E receives the N looked-up rows. */
static void embed(const s1 *S, const int32_t *tokens, float *E, float *x0)
{
    int64_t d = S->d;
    for (int64_t t = 0; t < S->N; t++)
        memcpy(E + t * d, S->m->tok_embd + (int64_t)tokens[t] * d, (size_t)d * sizeof *E);
    rot_pre(S->nt, x0, E, S->N, d, S->R1, d);
}

/* The dimensions and hooks of a call on nseq sequences of T tokens; *wq / *aq = 1 when some
 * weight / activation point is fake-quantized (its output buffers are needed). */
static void s1_setup(s1 *S, const qnpu_model *m, const float *R1, const float *const *R2,
                     const qnpu__s1_hooks *hooks, int threads, int64_t nseq, int64_t T, int *wq, int *aq)
{
    memset(S, 0, sizeof *S);
    S->m = m;
    S->R1 = R1;
    S->R2 = R2;
    S->hk = hooks && hooks->enabled ? hooks : NULL;
    S->nt = threads < 1 ? 1 : threads;
    S->nseq = nseq;
    S->T = T;
    S->N = nseq * T;
    S->d = m->dim;
    S->ff = m->ffn;
    S->dh = m->head_dim;
    S->H = m->n_heads;
    S->KV = m->n_kv_heads;
    S->qd = S->H * S->dh;
    S->kvd = S->KV * S->dh;
    S->V = m->vocab;
    S->L = m->n_layers;
    for (int64_t l = 0; m->r4 && l < S->L; l++)
        S->has_r4 |= m->r4[l] != NULL;
    *wq = *aq = 0;
    if (S->hk && S->hk->fq) {
        for (int p = QNPU__S1_W_Q; p <= QNPU__S1_W_LM_HEAD; p++)
            *wq |= on(S, p);
        for (int p = QNPU__S1_A_QKV; p < QNPU__S1_N_POINTS; p++)
            *aq |= on(S, p);
    }
}

/* After the counting pass (A->base NULL, A->used floats): point A at ws's space when it is
 * large enough, else at a new block that replaces ws's (or, without ws, is returned in *own for
 * the caller to free); A->used is reset for the assigning pass. */
static qnpu_status arena_get(arena *A, qnpu__s1_ws *ws, float **own)
{
    *own = NULL;
    if (ws && ws->cap >= A->used) {
        A->base = ws->base;
    } else {
        A->base = *own = qnpu__malloc(A->used * sizeof(float));
        if (!A->base)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory (%zu floats of work space)", A->used);
        if (ws) { /* the larger space serves the later calls */
            qnpu__free(ws->base);
            ws->base = *own;
            ws->cap = A->used;
            *own = NULL;
        }
    }
    A->used = 0;
    return QNPU_OK;
}

qnpu_status qnpu__s1_loss_grad_batch(const qnpu_model *m, const float *R1, const float *const *R2,
                                     const int32_t *tokens, int64_t nseq, int64_t T, const qnpu__s1_hooks *hooks,
                                     int threads, double *loss, float *gR1, float *const *gR2, int acc,
                                     qnpu__s1_ws *ws)
{
    qnpu_status st = check_batch(nseq, T, 2);
    if (st != QNPU_OK || (st = check_args(m, tokens, nseq * T)) != QNPU_OK)
        return st;
    s1 S;
    int wq, aq;
    s1_setup(&S, m, R1, R2, hooks, threads, nseq, T, &wq, &aq);
    int grads = gR1 || gR2 || (S.hk && S.hk->fq_backward);
    /* keep every layer's activations when they fit in the budget (the backward then skips the
     * recomputation), else one set refilled per layer */
    double per_layer = (double)S.N * (double)(S.d * (aq ? 6 : 3) + S.qd * (aq ? 3 : 2) + S.kvd * 2 +
                                              S.ff * (aq ? 4 : 3)) * sizeof(float);
    S.recompute = !(grads && per_layer * (double)S.L <= QNPU__S1_KEEP_BYTES) || (hooks && hooks->force_recompute);
    S.nkeep = S.recompute ? 1 : S.L;
    S.keep = qnpu__malloc((size_t)S.nkeep * sizeof *S.keep);
    if (!S.keep)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory");
    float **xs, *E, *xf, *Wout, *Woutq, *logits, *dlog = NULL, *dx = NULL;
    arena A = {NULL, 0};
    carve(&S, &A, grads, wq, aq, &xs, &E, &xf, &Wout, &Woutq, &logits, &dlog, &dx);
    float *own;
    if ((st = arena_get(&A, ws, &own)) != QNPU_OK) {
        qnpu__free(S.keep);
        return st;
    }
    carve(&S, &A, grads, wq, aq, &xs, &E, &xf, &Wout, &Woutq, &logits, &dlog, &dx);
    int64_t N = S.N;
    int32_t *targets = qnpu__malloc((size_t)N * sizeof *targets);
    if (!targets) {
        qnpu__free(S.keep);
        qnpu__free(own);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "stage 1: out of memory");
    }
    for (int64_t t = 0; t < N; t++) /* the last row of each sequence predicts nothing */
        targets[t] = (t + 1) % T ? tokens[t + 1] : -1;
    qnpu__rope_tables(S.cos_t, S.sin_t, T, S.dh, m->rope_theta);
    int64_t d = S.d, V = S.V;
    int nt = S.nt;

    if (acc == 0) {
        if (gR1)
            memset(gR1, 0, (size_t)(d * d) * sizeof *gR1);
        for (int64_t l = 0; gR2 && l < S.L; l++)
            memset(gR2[l], 0, (size_t)(S.dh * S.dh) * sizeof *gR2[l]);
    }

    /* forward: x0 = E[tokens]·R1, keep every layer's input */
    embed(&S, tokens, E, xs[0]);
    for (int64_t l = 0; l < S.L; l++) {
        use_acts(&S, l);
        if ((st = build_layer(&S, l, 0)) != QNPU_OK || (st = layer_fwd(&S, l, xs[l], xs[l + 1])) != QNPU_OK)
            goto done;
    }
    qnpu__rmsnorm(xf, xs[S.L], m->out_norm, N, d, m->rms_eps);
    rot_pre(nt, Wout, m->output, V, d, R1, d);
    float *Wu;
    if ((st = fq(&S, QNPU__S1_W_LM_HEAD, -1, Wout, Woutq, V, d, &Wu)) != QNPU_OK)
        goto done;
    qnpu__linear_forward(nt, N, V, d, xf, Wu, NULL, logits);
    if ((st = qnpu__cross_entropy(logits, targets, N, V, dlog, 0, loss, NULL)) != QNPU_OK || !grads)
        goto done;

    /* backward: lm_head (pre R1), final norm, then the layers in reverse */
    qnpu__linear_backward(nt, N, V, d, xf, Wu, dlog, S.dxn, S.G, NULL, 0);
    if ((st = fq_bw(&S, QNPU__S1_W_LM_HEAD, -1, 0, Wout, S.G, V, d)) != QNPU_OK)
        goto done;
    if (gR1)
        grad_pre(nt, gR1, m->output, S.G, V, d, d);
    qnpu__rmsnorm_backward(dx, xs[S.L], S.dxn, N, d, m->rms_eps, 0);
    for (int64_t l = S.L - 1; l >= 0; l--) {
        use_acts(&S, l);
        if ((st = build_layer(&S, l, 1)) != QNPU_OK ||
            (S.recompute && (st = layer_fwd(&S, l, xs[l], NULL)) != QNPU_OK) ||
            (st = layer_bwd(&S, l, xs[l], dx, gR1, gR2 ? gR2[l] : NULL)) != QNPU_OK)
            goto done;
    }
    /* embedding E' = E·R1: Σ_t E[tok_t]ᵀ·∂L/∂x0[t] */
    if (gR1)
        grad_pre(nt, gR1, E, dx, N, d, d);
done:
    qnpu__free(targets);
    qnpu__free(S.keep);
    qnpu__free(own);
    return st;
}

/* ---- block-wise reconstruction (METHOD.md §13, optim.loss = block_mse) ---------------------- */

/* Arguments shared by the block entries: the model, nseq sequences of T >= 1 tokens, layer l in
 * [0, lmax]. */
static qnpu_status check_block(const qnpu_model *m, const void *x, int64_t nseq, int64_t T, int64_t l,
                               int64_t lmax)
{
    if (!m || !x)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1 (block): NULL argument");
    qnpu_status st = check_batch(nseq, T, 1);
    if (st != QNPU_OK)
        return st;
    if (l < 0 || l > lmax)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1 (block): layer %lld outside 0 .. %lld", (long long)l,
                          (long long)lmax);
    return check_model(m);
}

qnpu_status qnpu__s1_block_input(const qnpu_model *m, const float *R1, const float *const *R2,
                                 const int32_t *tokens, int64_t nseq, int64_t T, int64_t l,
                                 const qnpu__s1_hooks *hooks, int threads, float *x, qnpu__s1_ws *ws)
{
    qnpu_status st = check_block(m, tokens, nseq, T, l, m ? m->n_layers : 0);
    if (st != QNPU_OK || (st = check_tokens(m, tokens, nseq * T)) != QNPU_OK)
        return st;
    if (!x)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1 (block): NULL output");
    s1 S;
    int wq, aq;
    s1_setup(&S, m, R1, R2, hooks, threads, nseq, T, &wq, &aq);
    acts one;
    S.keep = &one; /* forward only: one activation set, refilled per layer */
    S.nkeep = 1;
    S.recompute = 1;
    size_t nd = (size_t)(S.N * S.d);
    arena A = {NULL, 0};
    float *tmp = NULL, *own = NULL;
    for (int pass = 0; pass < 2; pass++) {
        carve_layer(&S, &A, 0, wq, aq, 0);
        tmp = take(&A, nd);
        if (pass == 0 && (st = arena_get(&A, ws, &own)) != QNPU_OK)
            return st;
    }
    qnpu__rope_tables(S.cos_t, S.sin_t, T, S.dh, m->rope_theta);
    embed(&S, tokens, tmp, x);
    use_acts(&S, 0);
    float *cur = x, *nxt = tmp; /* ping-pong between x and tmp */
    for (int64_t k = 0; k < l; k++) {
        if ((st = build_layer(&S, k, 0)) != QNPU_OK || (st = layer_fwd(&S, k, cur, nxt)) != QNPU_OK)
            break;
        float *sw = cur;
        cur = nxt;
        nxt = sw;
    }
    if (st == QNPU_OK && cur != x)
        memcpy(x, cur, nd * sizeof *x);
    qnpu__free(own);
    return st;
}

qnpu_status qnpu__s1_block_grad(const qnpu_model *m, const float *R1, const float *const *R2, int64_t l,
                                const float *x_in, int64_t nseq, int64_t T, const qnpu__s1_hooks *hooks,
                                int threads, double *mse, float *gR2l, float *x_out_q, qnpu__s1_ws *ws)
{
    qnpu_status st = check_block(m, x_in, nseq, T, l, m ? m->n_layers - 1 : 0);
    if (st != QNPU_OK)
        return st;
    if (x_out_q == x_in)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "stage 1 (block): the output may not overwrite the input");
    s1 S;
    int wq, aq;
    s1_setup(&S, m, R1, R2, hooks, threads, nseq, T, &wq, &aq);
    const qnpu__s1_hooks *hk = S.hk;
    int grads = gR2l || (hk && hk->fq_backward);
    acts one;
    S.keep = &one; /* the quantized pass's activations, read by the reverse pass */
    S.nkeep = 1;
    S.recompute = 1;
    size_t nd = (size_t)(S.N * S.d);
    arena A = {NULL, 0};
    float *yf = NULL, *yq = NULL, *dx = NULL, *own = NULL;
    for (int pass = 0; pass < 2; pass++) {
        carve_layer(&S, &A, grads, wq, aq, 0);
        yf = take(&A, nd);
        yq = x_out_q ? x_out_q : take(&A, nd);
        dx = grads ? take(&A, nd) : NULL;
        if (pass == 0 && (st = arena_get(&A, ws, &own)) != QNPU_OK)
            return st;
    }
    qnpu__rope_tables(S.cos_t, S.sin_t, T, S.dh, m->rope_theta);
    use_acts(&S, 0);
    /* the target: the float layer (no hooks) with R1 and without R2, which the float layer's
     * output does not depend on — so the target is a constant of the trained R2[l] */
    S.hk = NULL;
    S.R2 = NULL;
    if ((st = build_layer(&S, l, 0)) != QNPU_OK || (st = layer_fwd(&S, l, x_in, yf)) != QNPU_OK)
        goto done;
    S.hk = hk;
    S.R2 = R2;
    if ((st = build_layer(&S, l, grads)) != QNPU_OK || (st = layer_fwd(&S, l, x_in, yq)) != QNPU_OK)
        goto done;
    double acc = 0.0;
    for (size_t i = 0; i < nd; i++) {
        double e = (double)yq[i] - (double)yf[i];
        acc += e * e;
    }
    if (mse)
        *mse = acc / (double)nd;
    if (!grads)
        goto done;
    /* ∂mse/∂y_q = 2(y_q − y_f)/n, then the quantized layer's reverse pass (R1 is not learned here) */
    float c = (float)(2.0 / (double)nd);
    for (size_t i = 0; i < nd; i++)
        dx[i] = c * (yq[i] - yf[i]);
    if (gR2l)
        memset(gR2l, 0, (size_t)(S.dh * S.dh) * sizeof *gR2l);
    st = layer_bwd(&S, l, x_in, dx, NULL, gR2l);
done:
    qnpu__free(own);
    return st;
}
