/* decoder.c — the integer decoder loop (METHOD.md §3, FORMATS.md §3) over the plan of plan.h.
 *
 * Every tensor between operators is a code array with a static (s, z); only integers are
 * computed here (test/kernels/no_float.sh audits this object file). Per layer, for T new tokens
 * at positions pos .. pos + T − 1:
 *
 *   x  --RMSNorm-->  qkv.in  --q/k/v linears-->  q.out, k.out, v.out
 *   q.out, k.out  --RoPE chain (row 7)-->  q.rope, k.rope  --requant-->  k.cache (int8, cached)
 *   v.out  --requant-->  v.cache (int8, cached, stored transposed per KV head)
 *   per head: Q·Kᵀ (int64) -> rows 10–16 -> qk.masked -> softmax.out;  P·V -> o.in
 *   o.in --o linear--> o.out;   attn.res = x + o.out
 *   attn.res --RMSNorm--> gateup.in --gate/up--> gate.out, up.out
 *   gate.out --LUT--> gate.silu;   down.in = gate.silu·up.out (or FWHT(silu·up) exactly, R4)
 *   down.in --down linear--> down.out;   mlp.res = attn.res + down.out  (the next layer's x)
 *
 * then RMSNorm -> lm_head.in -> lm_head (A16 × W8) -> logit codes. Linears split their output
 * rows across the pool's threads and attention its heads; every split writes disjoint outputs
 * and each output is computed by the same kernel call sequence, so results do not depend on the
 * thread count. */
#include <string.h>

#include "../rotate/hadamard.h"
#include "decoder.h"

static size_t csz(int ct)
{
    return ct == QNPU__CT_U8 || ct == QNPU__CT_I8 ? 1 : 2;
}

#define AT(buf, ct, i) ((void *)((char *)(buf) + (size_t)(i) * csz(ct)))
#define CAT(buf, ct, i) ((const void *)((const char *)(buf) + (size_t)(i) * csz(ct)))

static void tap(const qnpu__idec *d, int64_t l, int k, int64_t off, const void *codes, int ct, int64_t n)
{
    if (d->tap)
        d->tap(d->tap_user, l * QP_LAYER_COUNT + k, off, codes, ct, n);
}

/* Narrow int32 codes (already in range) to storage type ct. */
static void narrow(const int32_t *y, int64_t n, int ct, void *out)
{
    switch (ct) {
    case QNPU__CT_U8: qnpu__narrow_u8(y, n, out); break;
    case QNPU__CT_I8: qnpu__narrow_s8(y, n, out); break;
    case QNPU__CT_U16: qnpu__narrow_u16(y, n, out); break;
    default: qnpu__narrow_s16(y, n, out); break;
    }
}

/* Split [0, n) into nth parts aligned to `align`; part ith is [*a, *b). */
static void split(int64_t n, int64_t align, int ith, int nth, int64_t *a, int64_t *b)
{
    int64_t blocks = (n + align - 1) / align, per = blocks / nth, extra = blocks % nth;
    int64_t first = ith * per + (ith < extra ? ith : extra);
    int64_t cnt = per + (ith < extra);
    *a = first * align < n ? first * align : n;
    *b = (first + cnt) * align < n ? (first + cnt) * align : n;
}

/* ---- linear layers -------------------------------------------------------------------------- */

typedef struct linear_task {
    const qnpu__idec *d;
    const qnpu__ilinear *L;
    int64_t T;
    const void *x;
    int64_t ldx;
    int32_t *i32;           /* [T][N] */
    void *y;                /* typed codes [T][ldy], or NULL: leave the int32 codes in i32 */
    int64_t ldy;
} linear_task;

static void linear_part(void *arg, int ith, int nth)
{
    const linear_task *a = arg;
    const qnpu__ilinear *L = a->L;
    int64_t o0, o1;
    split(L->N, 16, ith, nth, &o0, &o1);
    if (o1 <= o0)
        return;
    qnpu__igemm_out out = {a->i32 + o0, L->N, L->m0 + o0, L->shift + o0, L->y.z, L->y.qmin, L->y.qmax,
                           QNPU__RQ_RNE, NULL, 0};
    qnpu__igemm(a->d->impl, L->act, L->wfmt, a->T, o1 - o0, L->K, a->x, a->ldx,
                (const uint8_t *)L->w + o0 * L->ldw, L->ldw, L->c + o0, &out);
    for (int64_t t = 0; a->y && t < a->T; t++)
        narrow(a->i32 + t * L->N + o0, o1 - o0, L->y.ctype, AT(a->y, L->y.ctype, t * a->ldy + o0));
}

typedef struct linears_task {
    int count;
    linear_task t[3];
} linears_task;

static void linears_part(void *arg, int ith, int nth)
{
    linears_task *a = arg;
    for (int i = 0; i < a->count; i++)
        linear_part(&a->t[i], ith, nth);
}

/* y_i (T × N_i codes, contiguous) = requant(x · W_iᵀ + c_i) for up to three linears that read
 * the same input (q/k/v, gate/up): one pool task for all, so one handoff instead of three. */
static void linears(qnpu__idec *d, int count, const qnpu__ilinear *const *L, int64_t T, const void *x,
                    void *const *y)
{
    linears_task a = {count, {{0}}};
    int32_t *i32 = d->i32;
    for (int i = 0; i < count; i++) {
        a.t[i] = (linear_task){d, L[i], T, x, L[i]->K, i32, y[i], L[i]->N};
        i32 += T * L[i]->N;
    }
    qnpu__pool_run(d->tap ? NULL : d->pool, linears_part, &a);
}

static void linear(qnpu__idec *d, const qnpu__ilinear *L, int64_t T, const void *x, void *y)
{
    linears(d, 1, &L, T, x, &y);
}

/* ---- attention ------------------------------------------------------------------------------ */

typedef struct attn_task {
    qnpu__idec *d;
    const qnpu__ilayer *L;
    int64_t l, T, pos;
} attn_task;

static void attention_head(qnpu__idec *d, qnpu__iscratch *s, const qnpu__ilayer *L, int64_t l,
                           int64_t T, int64_t pos, int64_t h)
{
    const qnpu__iplan *p = d->p;
    int64_t dh = p->head_dim, qd = p->n_heads * dh, kvd = p->n_kv_heads * dh;
    int64_t g = h / (p->n_heads / p->n_kv_heads), n = pos + T;
    int qct = L->q_rope.ctype, mct = L->scores.from_scaled.y.ctype, pct = L->probs.ctype;
    /* Q·Kᵀ: acc[t][j] = Σ_i (q_i − z_q)·k_j,i, the zero point folded in through the row sums */
    for (int64_t j = 0; j < n; j++)
        s->wsum[j] = d->ksum[l][j * p->n_kv_heads + g];
    int qact = qct == QNPU__CT_U8 ? QNPU__ACT_U8 : QNPU__ACT_U16;
    qnpu__igemm_fold_c(qact, n, s->wsum, NULL, L->q_rope.z, s->c);
    qnpu__igemm_out acc = {NULL, 0, NULL, NULL, 0, 0, 0, QNPU__RQ_RNE, s->acc, n};
    qnpu__igemm(d->impl, qact, QNPU__W_S8, T, n, dh, CAT(d->qr, qct, h * dh), qd, d->k[l] + g * dh, kvd,
                s->c, &acc);
    /* rows 10–16, then the softmax, over all n keys (the causal mask of METHOD.md §3) */
    qnpu__attn_scores_ref(&L->scores, T, n, s->acc, n, NULL, 0, pos, s->masked, n);
    qnpu__softmax_ref(&L->softmax, T, n, s->masked, n, s->probs, n);
    tap(d, l, QP_QK_MASKED, h * T * n, s->masked, mct, T * n);
    tap(d, l, QP_SOFTMAX, h * T * n, s->probs, pct, T * n);
    /* P·V with V transposed: o[t][i] = Σ_j (p_j − z_p)·v_i,j, requantized into o.in */
    const int8_t *vt = d->vt[l] + g * dh * d->cap;
    int pact = pct == QNPU__CT_U8 ? QNPU__ACT_U8 : QNPU__ACT_U16;
    for (int64_t i = 0; i < dh; i++)
        s->wsum[i] = d->vcum[l][(n - 1) * kvd + g * dh + i];
    qnpu__igemm_fold_c(pact, dh, s->wsum, NULL, L->probs.z, s->c);
    qnpu__igemm_out out = {d->i32 + h * dh, qd, L->pv_m0, L->pv_shift, L->o_in.z, L->o_in.qmin,
                           L->o_in.qmax, QNPU__RQ_RNE, NULL, 0};
    qnpu__igemm(d->impl, pact, QNPU__W_S8, T, dh, n, s->probs, n, vt, d->cap, s->c, &out);
}

static void attention_part(void *arg, int ith, int nth)
{
    attn_task *a = arg;
    int64_t h0, h1;
    split(a->d->p->n_heads, 1, ith, nth, &h0, &h1);
    for (int64_t h = h0; h < h1; h++)
        attention_head(a->d, &a->d->scr[ith], a->L, a->l, a->T, a->pos, h);
}

/* ---- element-wise and row operators, split by rows ---------------------------------------- */

enum { OP_RMS, OP_ADD, OP_MUL, OP_LUT, OP_RQ, OP_ROPE, OP_R4 };

typedef struct rows_task {
    qnpu__idec *d;
    int op;
    const void *p;              /* the operator's parameters */
    int64_t m, n;               /* rows, columns (RoPE: heads) */
    const void *a, *b;          /* inputs (b: second operand, or the RoPE cos table) */
    int act, bct, yct;          /* storage types */
    int64_t lda, ldb, ldy;
    void *y;
    const qnpu__ilayer *L;      /* OP_R4 */
} rows_task;

static void rows_part(void *arg, int ith, int nth)
{
    const rows_task *t = arg;
    int64_t r0, r1;
    split(t->m, 1, ith, nth, &r0, &r1);
    if (r1 <= r0)
        return;
    int64_t m = r1 - r0;
    const void *a = CAT(t->a, t->act, r0 * t->lda);
    const void *b = t->b ? CAT(t->b, t->bct, r0 * t->ldb) : NULL;
    void *y = AT(t->y, t->yct, r0 * t->ldy);
    switch (t->op) {
    case OP_RMS: qnpu__rmsnorm_ref(t->p, m, a, t->lda, y, t->ldy); break;
    case OP_ADD: qnpu__add_ref(t->p, m, t->n, a, t->lda, b, t->ldb, y, t->ldy); break;
    case OP_MUL: qnpu__mul_ref(t->p, m, t->n, a, t->lda, b, t->ldb, y, t->ldy); break;
    case OP_LUT: qnpu__lut_ref(t->p, m, t->n, a, t->lda, y, t->ldy); break;
    case OP_RQ: qnpu__requant_codes_ref(t->p, m, t->n, a, t->lda, y, t->ldy); break;
    case OP_ROPE: { /* b is the cos table at the first position; sin is at the same offset */
        const qnpu__idec *d = t->d;
        size_t off = (size_t)((const char *)t->b - (const char *)d->rope_cos);
        const void *sn = CAT((const char *)d->rope_sin + off, t->bct, r0 * t->ldb);
        qnpu__rope_ref(t->p, m, t->n, a, t->lda, b, sn, t->ldb, y, t->ldy);
        break;
    }
    case OP_R4: { /* FORMATS.md §3.9: exact silu·up, exact ±1 transform, one requantization */
        const qnpu__ilayer *L = t->L;
        int64_t ff = t->n, *h = t->d->h64 + r0 * ff;
        qnpu__mul_raw_ref(&L->down_in, m, ff, a, t->lda, b, t->ldb, h, ff);
        qnpu__hadamard_apply_i64(L->r4, h, m, ff, t->d->r4work + (int64_t)ith * t->d->p->max_r4_work);
        qnpu__requant_acc_ref(&L->r4_rq, m, ff, h, ff, y, t->ldy);
        break;
    }
    }
}

/* Run a row operator, split across the pool when there are rows enough to share. */
static void rows(qnpu__idec *d, rows_task t)
{
    t.d = d;
    qnpu__pool_run(d->tap || t.m < 4 ? NULL : d->pool, rows_part, &t);
}

/* ---- one layer ------------------------------------------------------------------------------ */

static void layer(qnpu__idec *d, int64_t l, int64_t T, int64_t pos)
{
    const qnpu__iplan *p = d->p;
    const qnpu__ilayer *L = &p->layers[l];
    int64_t dim = p->dim, dh = p->head_dim, H = p->n_heads, KV = p->n_kv_heads;
    int64_t qd = H * dh, kvd = KV * dh, ff = p->ffn;
    const qnpu__ilinear *W = L->lin;

    rows(d, (rows_task){.op = OP_RMS, .p = &L->attn_norm, .m = T, .a = d->x, .act = L->attn_norm.x.ctype,
                        .lda = dim, .y = d->xn, .yct = L->attn_norm.y.ctype, .ldy = dim});
    tap(d, l, QP_QKV_IN, 0, d->xn, L->attn_norm.y.ctype, T * dim);
    linears(d, 3, (const qnpu__ilinear *const[]){&W[W_Q], &W[W_K], &W[W_V]}, T, d->xn,
            (void *const[]){d->qo, d->ko, d->vo});
    tap(d, l, QP_Q_OUT, 0, d->qo, W[W_Q].y.ctype, T * qd);
    tap(d, l, QP_K_OUT, 0, d->ko, W[W_K].y.ctype, T * kvd);
    tap(d, l, QP_V_OUT, 0, d->vo, W[W_V].y.ctype, T * kvd);

    /* RoPE at positions pos.., then the caches */
    const void *cs = CAT(d->rope_cos, p->rope_ctype, pos * dh);
    rows(d, (rows_task){.op = OP_ROPE, .p = &L->rope_q, .m = T, .n = H, .a = d->qo, .act = W[W_Q].y.ctype,
                        .lda = qd, .b = cs, .bct = p->rope_ctype, .ldb = dh, .y = d->qr,
                        .yct = L->rope_q.sum.y.ctype, .ldy = qd});
    rows(d, (rows_task){.op = OP_ROPE, .p = &L->rope_k, .m = T, .n = KV, .a = d->ko, .act = W[W_K].y.ctype,
                        .lda = kvd, .b = cs, .bct = p->rope_ctype, .ldb = dh, .y = d->kr,
                        .yct = L->rope_k.sum.y.ctype, .ldy = kvd});
    tap(d, l, QP_Q_ROPE, 0, d->qr, L->rope_q.sum.y.ctype, T * qd);
    tap(d, l, QP_K_ROPE, 0, d->kr, L->rope_k.sum.y.ctype, T * kvd);
    int8_t *kc = d->k[l] + pos * kvd;
    rows(d, (rows_task){.op = OP_RQ, .p = &L->k_cache, .m = T, .n = kvd, .a = d->kr, .act = L->k_cache.x.ctype,
                        .lda = kvd, .y = kc, .yct = QNPU__CT_I8, .ldy = kvd});
    for (int64_t t = 0; t < T; t++)
        for (int64_t g = 0; g < KV; g++) {
            int32_t sum = 0;
            for (int64_t i = 0; i < dh; i++)
                sum += kc[t * kvd + g * dh + i];
            d->ksum[l][(pos + t) * KV + g] = sum;
        }
    rows(d, (rows_task){.op = OP_RQ, .p = &L->v_cache, .m = T, .n = kvd, .a = d->vo, .act = L->v_cache.x.ctype,
                        .lda = kvd, .y = d->vtmp, .yct = QNPU__CT_I8, .ldy = kvd});
    for (int64_t t = 0; t < T; t++) {
        int32_t *cum = d->vcum[l] + (pos + t) * kvd;
        for (int64_t i = 0; i < kvd; i++) {
            d->vt[l][i * d->cap + pos + t] = d->vtmp[t * kvd + i]; /* [g][i][pos] with g·dh + i = i */
            cum[i] = (pos + t ? cum[i - kvd] : 0) + d->vtmp[t * kvd + i];
        }
    }
    tap(d, l, QP_K_CACHE, 0, kc, QNPU__CT_I8, T * kvd);
    tap(d, l, QP_V_CACHE, 0, d->vtmp, QNPU__CT_I8, T * kvd);

    attn_task at = {d, L, l, T, pos};
    qnpu__pool_run(d->tap ? NULL : d->pool, attention_part, &at);
    for (int64_t t = 0; t < T; t++)
        narrow(d->i32 + t * qd, qd, L->o_in.ctype, AT(d->att, L->o_in.ctype, t * qd));
    tap(d, l, QP_O_IN, 0, d->att, L->o_in.ctype, T * qd);

    linear(d, &W[W_O], T, d->att, d->qo);
    tap(d, l, QP_O_OUT, 0, d->qo, W[W_O].y.ctype, T * dim);
    rows(d, (rows_task){.op = OP_ADD, .p = &L->attn_res, .m = T, .n = dim, .a = d->x, .act = L->attn_res.a.ctype,
                        .lda = dim, .b = d->qo, .bct = L->attn_res.b.ctype, .ldb = dim, .y = d->xr,
                        .yct = L->attn_res.y.ctype, .ldy = dim});
    tap(d, l, QP_ATTN_RES, 0, d->xr, L->attn_res.y.ctype, T * dim);

    rows(d, (rows_task){.op = OP_RMS, .p = &L->mlp_norm, .m = T, .a = d->xr, .act = L->mlp_norm.x.ctype,
                        .lda = dim, .y = d->xn, .yct = L->mlp_norm.y.ctype, .ldy = dim});
    tap(d, l, QP_GATEUP_IN, 0, d->xn, L->mlp_norm.y.ctype, T * dim);
    linears(d, 2, (const qnpu__ilinear *const[]){&W[W_GATE], &W[W_UP]}, T, d->xn, (void *const[]){d->g, d->u});
    tap(d, l, QP_GATE_OUT, 0, d->g, W[W_GATE].y.ctype, T * ff);
    tap(d, l, QP_UP_OUT, 0, d->u, W[W_UP].y.ctype, T * ff);
    rows(d, (rows_task){.op = OP_LUT, .p = &L->silu, .m = T, .n = ff, .a = d->g, .act = L->silu.x.ctype,
                        .lda = ff, .y = d->sl, .yct = L->silu.y.ctype, .ldy = ff});
    tap(d, l, QP_GATE_SILU, 0, d->sl, L->silu.y.ctype, T * ff);
    rows(d, (rows_task){.op = L->r4 ? OP_R4 : OP_MUL, .p = &L->down_in, .m = T, .n = ff, .a = d->sl,
                        .act = L->down_in.a.ctype, .lda = ff, .b = d->u, .bct = L->down_in.b.ctype, .ldb = ff,
                        .y = d->din, .yct = L->down_in.y.ctype, .ldy = ff, .L = L});
    tap(d, l, QP_DOWN_IN, 0, d->din, L->down_in.y.ctype, T * ff);
    linear(d, &W[W_DOWN], T, d->din, d->dn);
    tap(d, l, QP_DOWN_OUT, 0, d->dn, W[W_DOWN].y.ctype, T * dim);
    rows(d, (rows_task){.op = OP_ADD, .p = &L->mlp_res, .m = T, .n = dim, .a = d->xr, .act = L->mlp_res.a.ctype,
                        .lda = dim, .b = d->dn, .bct = L->mlp_res.b.ctype, .ldb = dim, .y = d->x,
                        .yct = L->mlp_res.y.ctype, .ldy = dim});
    tap(d, l, QP_MLP_RES, 0, d->x, L->mlp_res.y.ctype, T * dim);
}

void qnpu__idec_forward(qnpu__idec *d, const int32_t *tok, int64_t T, int64_t pos, int64_t n_out,
                        int32_t *logits)
{
    const qnpu__iplan *p = d->p;
    int64_t dim = p->dim;
    int ct = p->layers[0].in.ctype;
    size_t row = (size_t)dim * csz(ct);
    for (int64_t t = 0; t < T; t++)
        memcpy((char *)d->x + (size_t)t * row, (const char *)p->embd + (size_t)tok[t] * row, row);
    tap(d, 0, QP_IN, 0, d->x, ct, T * dim);
    for (int64_t l = 0; l < p->n_layers; l++)
        layer(d, l, T, pos);
    if (n_out <= 0)
        return;
    int64_t gbase = p->n_layers; /* global point k taps at n_layers·QP_LAYER_COUNT + k */
    int xct = p->out_norm.x.ctype, yct = p->out_norm.y.ctype;
    qnpu__rmsnorm_ref(&p->out_norm, n_out, CAT(d->x, xct, (T - n_out) * dim), dim, d->xn, dim);
    tap(d, gbase, QP_LM_HEAD_IN, 0, d->xn, yct, n_out * dim);
    /* the head writes its int32 codes straight into logits */
    linear_task a = {d, &p->head, n_out, d->xn, dim, logits, NULL, 0};
    qnpu__pool_run(d->tap ? NULL : d->pool, linear_part, &a);
    tap(d, gbase, QP_LOGITS, 0, logits, -1, n_out * p->head.N);
}
