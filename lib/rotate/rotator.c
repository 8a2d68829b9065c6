/* rotator.c — qnpu_rotator: METHOD.md §4.1 pre-processing and the offline fusion of the
 * rotations R1, R2 and R4 (§4.2–§4.4) into a new float model.
 *
 * Pre-processing: untie the embedding and lm_head; fuse each RMSNorm weight into the linears
 * that read the norm's output (W <- W diag(w), then w <- 1); permute interleaved-order q/k rows
 * to the rotate-half order, so the deployed graph has one RoPE form.
 * Fusion, with activations as row vectors and x' = x R:
 *   pre (input side):   W' = W B          (B = blockdiag(R, ..., R) when R is smaller)
 *   post (output side): W' = B^T W,  b' = b B
 *   embedding:          E' = E R1
 * The map (§4.3): q/k/gate/up/lm_head pre R1; v pre R1, post R2 over the KV heads; o pre R2
 * over the query heads, post R1; down pre R4 (online, when on), post R1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "fuse.h"
#include "hadamard.h"

enum { ROT_IDENTITY = 0, ROT_HADAMARD = 1, ROT_ORTHOGONAL = 2 };

struct qnpu_rotator {
    const qnpu_model *m;
    qnpu_options *opts;
};

qnpu_status qnpu_rotator_create(const qnpu_model *m, const qnpu_options *opts, qnpu_rotator **out)
{
    if (!m || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_rotator_create: NULL argument");
    *out = NULL;
    qnpu_rotator *r = qnpu__calloc(1, sizeof *r);
    if (!r)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_rotator_create: out of memory");
    qnpu_status s = qnpu_options_clone(opts, &r->opts);
    if (s != QNPU_OK) {
        qnpu__free(r);
        return s;
    }
    r->m = m;
    qnpu__handle_acquire();
    *out = r;
    return QNPU_OK;
}

void qnpu_rotator_free(qnpu_rotator *r)
{
    if (!r)
        return;
    qnpu_options_free(r->opts);
    qnpu__free(r);
    qnpu__handle_release();
}

/* W [rows][cols] <- W diag(w) */
static void scale_cols(float *W, int64_t rows, int64_t cols, const float *w)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            W[i * cols + j] *= w[j];
}

/* interleaved (2i, 2i+1) -> rotate-half (i, i + dh/2) order of the rows of each head */
static qnpu_status to_rotate_half(float *W, int64_t n_heads, int64_t dh, int64_t cols)
{
    float *tmp = qnpu__malloc((size_t)(dh * cols) * sizeof(float));
    if (!tmp)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "rotator: out of memory");
    for (int64_t h = 0; h < n_heads; h++) {
        float *head = W + h * dh * cols;
        for (int64_t i = 0; i < dh / 2; i++) {
            memcpy(tmp + i * cols, head + (2 * i) * cols, (size_t)cols * sizeof(float));
            memcpy(tmp + (dh / 2 + i) * cols, head + (2 * i + 1) * cols, (size_t)cols * sizeof(float));
        }
        memcpy(head, tmp, (size_t)(dh * cols) * sizeof(float));
    }
    qnpu__free(tmp);
    return QNPU_OK;
}

/* A rotation: NULL R means identity. R is n x n row-major float. */
typedef struct rotation {
    int64_t n;
    float *R;
} rotation;

/* Build rotation `which` (the CHOICE index of rotate.r1/r2) of order n; `keep` receives the
 * Hadamard plan (for online R4) when non-NULL. */
static qnpu_status make_rotation(const qnpu_options *o, int which, int64_t n, uint64_t seed,
                                 const char *what, rotation *out, qnpu__hadamard **keep)
{
    out->n = n;
    out->R = NULL;
    if (which == ROT_IDENTITY)
        return QNPU_OK;
    double *Rd = qnpu__malloc((size_t)(n * n) * sizeof(double));
    out->R = qnpu__malloc((size_t)(n * n) * sizeof(float));
    if (!Rd || !out->R) {
        qnpu__free(Rd);
        qnpu__free(out->R);
        out->R = NULL;
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory for a %lld x %lld rotation", what,
                          (long long)n, (long long)n);
    }
    qnpu_status s;
    qnpu__hadamard *h = NULL;
    if (which == ROT_ORTHOGONAL) {
        s = qnpu__random_orthogonal(n, seed, 0, Rd);
    } else {
        s = qnpu__hadamard_plan(n, qnpu__opt_int(o, QNPU_P_ROTATE_MAX_DENSE_BLOCK),
                                (int)qnpu__opt_int(o, QNPU_P_ROTATE_HADAMARD_FALLBACK), seed, 1, &h);
        if (s == QNPU_OK)
            qnpu__hadamard_dense(h, Rd);
    }
    if (s == QNPU_OK)
        for (int64_t i = 0; i < n * n; i++)
            out->R[i] = (float)Rd[i];
    qnpu__free(Rd);
    if (s != QNPU_OK) {
        qnpu__free(out->R);
        out->R = NULL;
        qnpu__error_prefix("%s", what);
        return s;
    }
    if (keep)
        *keep = h;
    else
        qnpu__hadamard_free(h);
    return QNPU_OK;
}

/* W [rows][k*n], each block of n columns: W_blk <- W_blk R  (pre rotation) */
static qnpu_status rotate_pre(int threads, float *W, int64_t rows, int64_t cols, const rotation *r)
{
    if (!r->R)
        return QNPU_OK;
    float *tmp = qnpu__malloc((size_t)(rows * r->n) * sizeof(float));
    if (!tmp)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "rotator: out of memory");
    for (int64_t b = 0; b < cols; b += r->n) {
        qnpu__sgemm(threads, rows, r->n, r->n, 1.0f, W + b, cols, r->R, r->n, 0, 0.0f, tmp, r->n);
        for (int64_t i = 0; i < rows; i++)
            memcpy(W + i * cols + b, tmp + i * r->n, (size_t)r->n * sizeof(float));
    }
    qnpu__free(tmp);
    return QNPU_OK;
}

/* W [k*n][cols], each block of n rows: W_blk <- R^T W_blk (post rotation); bias b_blk <- b_blk R */
static qnpu_status rotate_post(int threads, float *W, float *bias, int64_t rows, int64_t cols,
                               const rotation *r)
{
    if (!r->R)
        return QNPU_OK;
    float *tmp = qnpu__malloc((size_t)(r->n * cols) * sizeof(float));
    if (!tmp)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "rotator: out of memory");
    for (int64_t b = 0; b < rows; b += r->n) {
        qnpu__sgemm_ex(threads, 1, 0, r->n, cols, r->n, 1.0f, r->R, r->n, W + b * cols, cols, 0.0f,
                       tmp, cols);
        memcpy(W + b * cols, tmp, (size_t)(r->n * cols) * sizeof(float));
        if (bias) {
            qnpu__sgemm(1, 1, r->n, r->n, 1.0f, bias + b, r->n, r->R, r->n, 0, 0.0f, tmp, r->n);
            memcpy(bias + b, tmp, (size_t)r->n * sizeof(float));
        }
    }
    qnpu__free(tmp);
    return QNPU_OK;
}

static uint64_t mix_seed(uint64_t seed, uint64_t which, uint64_t layer)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + which * 0xbf58476d1ce4e5b9ull + layer * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z * 0x9e3779b97f4a7c15ull;
}

/* Which layers get online R4: rotate.r4 = off | all | selected (rotate.r4_layers "0,3,4"). */
static qnpu_status r4_layers(const qnpu_options *o, int64_t n_layers, char *on)
{
    int mode = (int)qnpu__opt_int(o, QNPU_P_ROTATE_R4);
    memset(on, mode == 1, (size_t)n_layers);
    if (mode != 2)
        return QNPU_OK;
    const char *p = qnpu__opt_str(o, QNPU_P_ROTATE_R4_LAYERS);
    while (*p) {
        char *end;
        long l = strtol(p, &end, 10);
        if (end == p || l < 0 || l >= n_layers)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "rotate.r4_layers: '%s' is not a list of layers in 0..%lld",
                              qnpu__opt_str(o, QNPU_P_ROTATE_R4_LAYERS), (long long)n_layers - 1);
        on[l] = 1;
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return QNPU_OK;
}

/* Copy layer l of m into r: the seven linears (W[] in q, k, v, o, gate, up, down order), the
 * q/k/v biases when the model has them, and unit norm weights (they are fused). */
static qnpu_status copy_layer(qnpu_model *r, const qnpu_model *m, int64_t l, float *W[7], float *bias[3])
{
    int64_t d = m->dim, ff = m->ffn, qd = m->n_heads * m->head_dim, kvd = m->n_kv_heads * m->head_dim;
    const qnpu__layer *S = &m->layers[l];
    struct { const char *name; const float *src; int64_t rows, cols; } lin[] = {
        {"attn_q", S->wq, qd, d}, {"attn_k", S->wk, kvd, d}, {"attn_v", S->wv, kvd, d},
        {"attn_output", S->wo, d, qd}, {"ffn_gate", S->w_gate, ff, d}, {"ffn_up", S->w_up, ff, d},
        {"ffn_down", S->w_down, d, ff},
    };
    char name[96];
    qnpu_status s;
    for (int i = 0; i < 7; i++) {
        snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, lin[i].name);
        if ((s = qnpu__model_add_copy(r, name, lin[i].rows, lin[i].cols, lin[i].src, &W[i])) != QNPU_OK)
            return s;
    }
    const float *bsrc[3] = {S->bq, S->bk, S->bv};
    static const char *const bname[3] = {"attn_q", "attn_k", "attn_v"};
    for (int i = 0; i < 3 && m->qkv_bias; i++) {
        snprintf(name, sizeof name, "blk.%lld.%s.bias", (long long)l, bname[i]);
        if ((s = qnpu__model_add_copy(r, name, 1, i ? kvd : qd, bsrc[i], &bias[i])) != QNPU_OK)
            return s;
    }
    for (int i = 0; i < 2; i++) { /* fused norm weights: ones */
        snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, i ? "ffn_norm" : "attn_norm");
        if ((s = qnpu__model_add_copy(r, name, 1, d, NULL, NULL)) != QNPU_OK)
            return s;
    }
    return QNPU_OK;
}

/* The rotation map of METHOD.md §4.3 on one layer's copied weights: q, k, v, gate, up pre R1;
 * v post R2 (with its bias); o pre R2, post R1; down post R1. */
static qnpu_status rotate_layer(int threads, const qnpu_model *m, float *W[7], float *bias[3],
                                const rotation *R1, const rotation *R2)
{
    int64_t d = m->dim, ff = m->ffn, qd = m->n_heads * m->head_dim, kvd = m->n_kv_heads * m->head_dim;
    const int64_t rows[3] = {qd, kvd, kvd};
    qnpu_status s;
    for (int i = 0; i < 3; i++)
        if ((s = rotate_pre(threads, W[i], rows[i], d, R1)) != QNPU_OK)
            return s;
    if ((s = rotate_post(threads, W[2], bias[2], kvd, d, R2)) != QNPU_OK ||
        (s = rotate_pre(threads, W[3], d, qd, R2)) != QNPU_OK ||
        (s = rotate_post(threads, W[3], NULL, d, qd, R1)) != QNPU_OK ||
        (s = rotate_pre(threads, W[4], ff, d, R1)) != QNPU_OK ||
        (s = rotate_pre(threads, W[5], ff, d, R1)) != QNPU_OK)
        return s;
    return rotate_post(threads, W[6], NULL, d, ff, R1);
}

/* Every source weight must be finite: a NaN or Inf (a model loaded with model.check_finite =
 * false) would spread through the rotations into every tensor, so it is caught here, by name. */
static qnpu_status check_finite(const qnpu_model *m)
{
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const qnpu__tensor *t = &m->tensors[i];
        size_t n = (size_t)(t->rows * t->cols);
        for (size_t k = 0; t->data && k < n; k++)
            if (!isfinite(t->data[k]))
                return qnpu__fail(QNPU_ERR_NUMERIC, "rotator: %s: tensor '%s' holds %s at element %zu (row %zu)",
                                  m->path, t->src_name ? t->src_name : t->name, isnan(t->data[k]) ? "NaN" : "Inf",
                                  k, k / (size_t)(t->cols > 0 ? t->cols : 1));
    }
    return QNPU_OK;
}

qnpu_status qnpu_rotator_run(qnpu_rotator *rt, qnpu_model **out)
{
    if (!rt || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_rotator_run: NULL argument");
    *out = NULL;
    const qnpu_model *m = rt->m;
    const qnpu_options *o = rt->opts;
    if (m->prepared)
        return qnpu__fail(QNPU_ERR_STATE, "%s: the model is already rotated", m->path);
    qnpu_status fin = check_finite(m);
    if (fin != QNPU_OK)
        return fin;
    int threads = qnpu__opt_threads(o);
    uint64_t seed = (uint64_t)qnpu__opt_int(o, QNPU_P_ROTATE_SEED);
    int64_t d = m->dim, ff = m->ffn, dh = m->head_dim, L = m->n_layers;
    int64_t qd = m->n_heads * dh, kvd = m->n_kv_heads * dh;
    qnpu_model *r;
    qnpu_status s = qnpu__model_new_like(m, &r);
    if (s != QNPU_OK)
        return s;
    r->tied = 0;
    r->rope_half = 1;
    r->prepared = 1;
    r->r4_free = qnpu__hadamard_free;
    rotation R1 = {d, NULL}, R2 = {dh, NULL}, R4 = {ff, NULL};
    char *r4_on = qnpu__calloc((size_t)L, 1);
    r->r4 = qnpu__calloc((size_t)L, sizeof *r->r4);
    if (!r4_on || !r->r4) {
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "rotator: out of memory");
        goto fail;
    }
    if ((s = r4_layers(o, L, r4_on)) != QNPU_OK ||
        (s = make_rotation(o, (int)qnpu__opt_int(o, QNPU_P_ROTATE_R1), d, mix_seed(seed, 1, 0), "R1", &R1, NULL)) != QNPU_OK)
        goto fail;

    /* embedding E' = E R1; lm_head = (untied copy) diag(final norm), pre R1 */
    float *E, *H;
    if ((s = qnpu__model_add_copy(r, "token_embd.weight", m->vocab, d, m->tok_embd, &E)) != QNPU_OK ||
        (s = qnpu__model_add_copy(r, "output.weight", m->vocab, d, m->output, &H)) != QNPU_OK ||
        (s = qnpu__model_add_copy(r, "output_norm.weight", 1, d, NULL, NULL)) != QNPU_OK)
        goto fail;
    scale_cols(H, m->vocab, d, m->out_norm);
    if ((s = rotate_pre(threads, E, m->vocab, d, &R1)) != QNPU_OK ||
        (s = rotate_pre(threads, H, m->vocab, d, &R1)) != QNPU_OK)
        goto fail;

    for (int64_t l = 0; l < L; l++) {
        const qnpu__layer *S = &m->layers[l];
        float *W[7] = {0}, *bias[3] = {0};
        if ((s = copy_layer(r, m, l, W, bias)) != QNPU_OK)
            goto fail;
        /* §4.1: fuse the norms, canonicalize RoPE */
        for (int i = 0; i < 3; i++)
            scale_cols(W[i], i ? kvd : qd, d, S->attn_norm);
        scale_cols(W[4], ff, d, S->ffn_norm);
        scale_cols(W[5], ff, d, S->ffn_norm);
        if (!m->rope_half) {
            if ((s = to_rotate_half(W[0], m->n_heads, dh, d)) != QNPU_OK ||
                (s = to_rotate_half(W[1], m->n_kv_heads, dh, d)) != QNPU_OK)
                goto fail;
            if (bias[0] && ((s = to_rotate_half(bias[0], m->n_heads, dh, 1)) != QNPU_OK ||
                            (s = to_rotate_half(bias[1], m->n_kv_heads, dh, 1)) != QNPU_OK))
                goto fail;
        }
        /* §4.3 */
        char what[32];
        snprintf(what, sizeof what, "R2 of layer %lld", (long long)l);
        if ((s = make_rotation(o, (int)qnpu__opt_int(o, QNPU_P_ROTATE_R2), dh, mix_seed(seed, 2, (uint64_t)l),
                               what, &R2, NULL)) != QNPU_OK)
            goto fail;
        if ((s = rotate_layer(threads, m, W, bias, &R1, &R2)) != QNPU_OK)
            goto fail;
        qnpu__free(R2.R);
        R2.R = NULL;
        if (r4_on[l]) {
            snprintf(what, sizeof what, "R4 of layer %lld", (long long)l);
            if ((s = make_rotation(o, ROT_HADAMARD, ff, mix_seed(seed, 4, (uint64_t)l), what, &R4,
                                   &r->r4[l])) != QNPU_OK ||
                (s = rotate_pre(threads, W[6], d, ff, &R4)) != QNPU_OK)
                goto fail;
            qnpu__free(R4.R);
            R4.R = NULL;
        }
    }
    qnpu__free(R1.R);
    qnpu__free(r4_on);
    if ((s = qnpu__model_finish(r, NULL)) != QNPU_OK) {
        qnpu__model_destroy(r);
        return s;
    }
    qnpu__handle_acquire();
    *out = r;
    return QNPU_OK;
fail:
    qnpu__free(R1.R);
    qnpu__free(R2.R);
    qnpu__free(R4.R);
    qnpu__free(r4_on);
    qnpu__model_destroy(r);
    return s;
}

/* ---- explicit rotations into a prepared model (fuse.h) ---------------------------------------- */

static int all_ones(const float *w, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (w[i] != 1.0f)
            return 0;
    return 1;
}

qnpu_status qnpu__rotator_fuse(const qnpu_model *m, const float *R1, const float *const *R2, int threads,
                               qnpu_model **out)
{
    if (!m || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__rotator_fuse: NULL argument");
    *out = NULL;
    int64_t d = m->dim, dh = m->head_dim, L = m->n_layers;
    if (!m->prepared || !m->rope_half || !all_ones(m->out_norm, d))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: fusing learned rotations needs a prepared model", m->path);
    for (int64_t l = 0; l < L; l++) {
        if (!all_ones(m->layers[l].attn_norm, d) || !all_ones(m->layers[l].ffn_norm, d))
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: layer %lld's norm weights are not fused", m->path,
                              (long long)l);
    }
    if (threads < 1)
        threads = 1;
    qnpu_model *r;
    qnpu_status s = qnpu__model_new_like(m, &r);
    if (s != QNPU_OK)
        return s;
    r->tied = 0;
    r->rope_half = 1;
    r->prepared = 1;
    r->r4_free = qnpu__hadamard_free;
    r->r4 = qnpu__calloc((size_t)L, sizeof *r->r4); /* online R4 stays where it was, unchanged */
    if (!r->r4) {
        qnpu__model_destroy(r);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", m->path);
    }
    for (int64_t l = 0; m->r4 && l < L; l++)
        if (m->r4[l] && (s = qnpu__hadamard_clone(m->r4[l], &r->r4[l])) != QNPU_OK) {
            qnpu__model_destroy(r);
            return s;
        }
    /* the rotations are the caller's: the helpers only read them */
    rotation r1 = {d, (float *)R1}, r2 = {dh, NULL};
    float *E, *H;
    if ((s = qnpu__model_add_copy(r, "token_embd.weight", m->vocab, d, m->tok_embd, &E)) != QNPU_OK ||
        (s = qnpu__model_add_copy(r, "output.weight", m->vocab, d, m->output, &H)) != QNPU_OK ||
        (s = qnpu__model_add_copy(r, "output_norm.weight", 1, d, NULL, NULL)) != QNPU_OK ||
        (s = rotate_pre(threads, E, m->vocab, d, &r1)) != QNPU_OK ||
        (s = rotate_pre(threads, H, m->vocab, d, &r1)) != QNPU_OK)
        goto fail;
    for (int64_t l = 0; l < L; l++) {
        float *W[7] = {0}, *bias[3] = {0};
        if ((s = copy_layer(r, m, l, W, bias)) != QNPU_OK)
            goto fail;
        r2.R = R2 ? (float *)R2[l] : NULL;
        if ((s = rotate_layer(threads, m, W, bias, &r1, &r2)) != QNPU_OK)
            goto fail;
    }
    if ((s = qnpu__model_finish(r, NULL)) != QNPU_OK)
        goto fail;
    qnpu__handle_acquire();
    *out = r;
    return QNPU_OK;
fail:
    qnpu__model_destroy(r);
    return s;
}
