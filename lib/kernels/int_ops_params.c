/* int_ops_params.c — fixed-point parameters and tables of the integer operators (int_ops.h), made
 * once at load from the float QP records. Double arithmetic is fine here; the kernels themselves
 * (int_ops_ref.c) are integer-only. */
#include <math.h>

#include "../calib/quant.h"
#include "../float/ops.h"
#include "int_ops.h"

/* ---- QP records ------------------------------------------------------------------------------- */

qnpu_status qnpu__iqp_init(qnpu__iqp *q, const qnpu__qp *r)
{
    int32_t qmin, qmax;
    if (!r || r->bits == 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer operator: a pass-through QP has no codes");
    if (qnpu__qrange(r->bits, r->sym, &qmin, &qmax) != QNPU_OK)
        return QNPU_ERR_INVALID_ARG;
    if (!(r->s > 0.0f) || !isfinite(r->s))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer operator: scale %g is not finite and positive",
                          (double)r->s);
    if (r->z < qmin || r->z > qmax)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer operator: zero point %d outside [%d, %d]",
                          (int)r->z, (int)qmin, (int)qmax);
    q->z = r->z;
    q->qmin = qmin;
    q->qmax = qmax;
    q->ctype = qnpu__ctype_of(r->bits, r->sym);
    return QNPU_OK;
}

/* M -> (m0, n), refusing what qnpu__quantize_multiplier cannot represent. */
static qnpu_status multiplier(double M, int32_t *m0, int *n)
{
    if (qnpu__quantize_multiplier(M, m0, n) != 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer operator: multiplier %g is not finite and >= 0", M);
    return QNPU_OK;
}

/* The code of a float constant under its QP, as the simulated graph quantizes it. */
static int32_t const_code(const qnpu__qp *r, const qnpu__iqp *q, float value)
{
    return qnpu__quantize_observer(value, qnpu__inv_scale(r->s), q->z, q->qmin, q->qmax);
}

#define TRY(x) do { qnpu_status st_ = (x); if (st_ != QNPU_OK) return st_; } while (0)

/* ---- requantization ------------------------------------------------------------------------------ */

qnpu_status qnpu__irq_init(qnpu__irq *p, const qnpu__qp *x, const qnpu__qp *y)
{
    TRY(qnpu__iqp_init(&p->x, x));
    TRY(qnpu__iqp_init(&p->y, y));
    return multiplier((double)x->s / (double)y->s, &p->m0, &p->n);
}

qnpu_status qnpu__irq_init_acc(qnpu__irq *p, double s_acc, const qnpu__qp *y)
{
    if (!(s_acc > 0) || !isfinite(s_acc))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer operator: accumulator scale %g", s_acc);
    TRY(qnpu__iqp_init(&p->y, y));
    p->x.z = 0; /* an int64 accumulator, not a code */
    p->x.qmin = INT32_MIN;
    p->x.qmax = INT32_MAX;
    p->x.ctype = -1;
    return multiplier(s_acc / (double)y->s, &p->m0, &p->n);
}

/* ---- §3.3 add --------------------------------------------------------------------------------- */

/* Largest left shift of a term: |q − z|·m0 < 2^48, so 2^14 keeps each term below 2^62. */
#define ADD_MAX_LSHIFT 14

qnpu_status qnpu__iadd_init(qnpu__iadd *p, const qnpu__qp *a, const qnpu__qp *b, const qnpu__qp *y)
{
    TRY(qnpu__iqp_init(&p->a, a));
    TRY(qnpu__iqp_init(&p->b, b));
    TRY(qnpu__iqp_init(&p->y, y));
    p->bc = 0;
    double Ma = (double)a->s / (double)y->s, Mb = (double)b->s / (double)y->s;
    if (Ma >= 0x1p30 || Mb >= 0x1p30)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer add: scale ratio %g or %g is 2^30 or more", Ma, Mb);
    int32_t ma0, mb0;
    int na, nb;
    TRY(multiplier(Ma, &ma0, &na));
    TRY(multiplier(Mb, &mb0, &nb));
    /* a term whose multiplier underflowed to 0 contributes nothing: give it the other's shift */
    if (ma0 == 0)
        na = nb;
    if (mb0 == 0)
        nb = na;
    /* the term with the smaller shift (the larger multiplier) is shifted left to the other's */
    int big_is_a = na <= nb;
    int n_big = big_is_a ? na : nb, n_small = big_is_a ? nb : na;
    int32_t m_small = big_is_a ? mb0 : ma0;
    int n = n_small, l = n_small - n_big;
    if (l > ADD_MAX_LSHIFT) { /* re-round the small multiplier to the shift n_big + 14 */
        l = ADD_MAX_LSHIFT;
        n = n_big + ADD_MAX_LSHIFT;
        m_small = (int32_t)qnpu__rshift_rne(m_small, n_small - n);
    }
    if (n < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer add: scale ratio too large (shift %d)", n);
    p->ma0 = big_is_a ? ma0 : m_small;
    p->mb0 = big_is_a ? m_small : mb0;
    p->la = big_is_a ? l : 0;
    p->lb = big_is_a ? 0 : l;
    p->n = n;
    return QNPU_OK;
}

qnpu_status qnpu__iadd_init_const(qnpu__iadd *p, const qnpu__qp *a, const qnpu__qp *b, float value,
                                  const qnpu__qp *y)
{
    TRY(qnpu__iadd_init(p, a, b, y));
    p->bc = const_code(b, &p->b, value);
    return QNPU_OK;
}

/* ---- §3.3 multiply ------------------------------------------------------------------------------ */

qnpu_status qnpu__imul_init(qnpu__imul *p, const qnpu__qp *a, const qnpu__qp *b, const qnpu__qp *y)
{
    TRY(qnpu__iqp_init(&p->a, a));
    TRY(qnpu__iqp_init(&p->b, b));
    TRY(qnpu__iqp_init(&p->y, y));
    p->bk = 0;
    return multiplier((double)a->s * (double)b->s / (double)y->s, &p->m0, &p->n);
}

qnpu_status qnpu__imul_init_const(qnpu__imul *p, const qnpu__qp *a, const qnpu__qp *b, float value,
                                  const qnpu__qp *y)
{
    TRY(qnpu__imul_init(p, a, b, y));
    p->bk = const_code(b, &p->b, value) - p->b.z;
    return QNPU_OK;
}

/* ---- §3.4 tables ------------------------------------------------------------------------------- */

void qnpu__lut_free(qnpu__lut *l)
{
    if (!l)
        return;
    qnpu__free(l->t);
    l->t = NULL;
    l->size = 0;
}

/* clamp(z + rne(v), qmin, qmax) of a double, NaN -> qmin */
static int32_t code_of(double v, const qnpu__iqp *q)
{
    double c = rint(v) + (double)q->z;
    if (!(c > (double)q->qmin))
        return q->qmin;
    if (c >= (double)q->qmax)
        return q->qmax;
    return (int32_t)c;
}

/* Allocate l's table for x and y (bits of x ≤ 16). */
static qnpu_status lut_alloc(qnpu__lut *l, const qnpu__qp *x, const qnpu__qp *y)
{
    l->t = NULL;
    l->size = 0;
    TRY(qnpu__iqp_init(&l->x, x));
    TRY(qnpu__iqp_init(&l->y, y));
    int64_t size = (int64_t)l->x.qmax - l->x.qmin + 1;
    l->t = qnpu__malloc((size_t)size * sizeof *l->t);
    if (!l->t)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "integer table: out of memory for %lld entries", (long long)size);
    l->size = size;
    return QNPU_OK;
}

qnpu_status qnpu__lut_init(qnpu__lut *l, const qnpu__qp *x, const qnpu__qp *y,
                           double (*f)(double v, void *user), void *user)
{
    TRY(lut_alloc(l, x, y));
    for (int64_t i = 0; i < l->size; i++) {
        double v = (double)x->s * (double)(l->x.qmin + i - l->x.z);
        l->t[i] = (uint16_t)(code_of(f(v, user) / (double)y->s, &l->y) - l->y.qmin);
    }
    return QNPU_OK;
}

static double sigmoid_d(double v, void *user)
{
    (void)user;
    return 1.0 / (1.0 + exp(-v));
}

/* The dequantized value the simulated graph holds for code q: (q − z)·s in float32. */
static float dequant_f32(int32_t q, int32_t z, float s)
{
    return (float)((int64_t)q - z) * s;
}

/* σ of a dequantized input exactly as lib/calib/simgraph.c writes it */
static float sigmoid_f32(float g)
{
    return 1.0f / (1.0f + expf(-g));
}

qnpu_status qnpu__lut_init_sigmoid(qnpu__lut *l, const qnpu__qp *x, const qnpu__qp *y, int sim_f32)
{
    if (!sim_f32)
        return qnpu__lut_init(l, x, y, sigmoid_d, NULL);
    TRY(lut_alloc(l, x, y));
    float inv = qnpu__inv_scale(y->s);
    for (int64_t i = 0; i < l->size; i++) {
        float g = dequant_f32(l->x.qmin + (int32_t)i, l->x.z, x->s);
        int32_t c = qnpu__quantize_observer(sigmoid_f32(g), inv, l->y.z, l->y.qmin, l->y.qmax);
        l->t[i] = (uint16_t)(c - l->y.qmin);
    }
    return QNPU_OK;
}

qnpu_status qnpu__lut_init_silu(qnpu__lut *l, const qnpu__qp *gate, const qnpu__qp *sig,
                                const qnpu__qp *silu, int sim_f32)
{
    qnpu__iqp qs;
    TRY(qnpu__iqp_init(&qs, sig));
    TRY(lut_alloc(l, gate, silu));
    float inv_sig = qnpu__inv_scale(sig->s), inv_silu = qnpu__inv_scale(silu->s);
    for (int64_t i = 0; i < l->size; i++) {
        int32_t q = l->x.qmin + (int32_t)i, c;
        if (sim_f32) { /* simgraph.c: hb3 = σ(g) -> gate.sig; hb = g·hb3 -> gate.silu */
            float g = dequant_f32(q, l->x.z, gate->s);
            int32_t cs = qnpu__quantize_observer(sigmoid_f32(g), inv_sig, qs.z, qs.qmin, qs.qmax);
            float sg = dequant_f32(cs, qs.z, sig->s);
            c = qnpu__quantize_observer(g * sg, inv_silu, l->y.z, l->y.qmin, l->y.qmax);
        } else {
            double g = (double)gate->s * (double)(q - l->x.z);
            int32_t cs = code_of(sigmoid_d(g, NULL) / (double)sig->s, &qs);
            double sg = (double)sig->s * (double)(cs - qs.z);
            c = code_of(g * sg / (double)silu->s, &l->y);
        }
        l->t[i] = (uint16_t)(c - l->y.qmin);
    }
    return QNPU_OK;
}

/* ---- §3.7 RoPE ---------------------------------------------------------------------------------- */

qnpu_status qnpu__irope_init(qnpu__irope *p, const qnpu__qp *x, const qnpu__qp *cos_qp,
                             const qnpu__qp *sin_qp, const qnpu__qp *c, const qnpu__qp *rot,
                             const qnpu__qp *s, const qnpu__qp *y, int64_t dh)
{
    if (dh < 2 || dh % 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer RoPE: head dimension %lld is not even",
                          (long long)dh);
    TRY(qnpu__imul_init(&p->cmul, x, cos_qp, c));
    TRY(qnpu__irq_init(&p->rot, x, rot));
    TRY(qnpu__imul_init(&p->smul, rot, sin_qp, s));
    TRY(qnpu__iadd_init(&p->sum, c, s, y));
    p->dh = dh;
    return QNPU_OK;
}

qnpu_status qnpu__rope_table_codes(int64_t n_pos, int64_t dh, double theta, const qnpu__qp *cos_qp,
                                   const qnpu__qp *sin_qp, void *cos_codes, void *sin_codes)
{
    qnpu__iqp qc, qs;
    if (n_pos < 1 || dh < 2 || dh % 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "RoPE tables: %lld positions, head dimension %lld",
                          (long long)n_pos, (long long)dh);
    TRY(qnpu__iqp_init(&qc, cos_qp));
    TRY(qnpu__iqp_init(&qs, sin_qp));
    int64_t h = dh / 2;
    size_t bytes;
    if (!qnpu__mul_ok((size_t)n_pos, (size_t)h * sizeof(float), &bytes))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "RoPE tables: too large");
    float *c = qnpu__malloc(bytes), *s = qnpu__malloc(bytes);
    if (!c || !s) {
        qnpu__free(c);
        qnpu__free(s);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "RoPE tables: out of memory");
    }
    qnpu__rope_tables(c, s, n_pos, dh, theta);
    float ic = qnpu__inv_scale(cos_qp->s), is = qnpu__inv_scale(sin_qp->s);
    for (int64_t p = 0; p < n_pos; p++)
        for (int64_t i = 0; i < dh; i++) {
            float cv = c[p * h + i % h], sv = s[p * h + i % h];
            qnpu__code_put(cos_codes, qc.ctype, p * dh + i,
                           qnpu__quantize_observer(cv, ic, qc.z, qc.qmin, qc.qmax));
            qnpu__code_put(sin_codes, qs.ctype, p * dh + i,
                           qnpu__quantize_observer(sv, is, qs.z, qs.qmin, qs.qmax));
        }
    qnpu__free(c);
    qnpu__free(s);
    return QNPU_OK;
}

/* ---- §3.6 RMSNorm ------------------------------------------------------------------------------- */

qnpu_status qnpu__irms_init(qnpu__irms *p, const qnpu__qp *x, const qnpu__qp *y, int64_t d,
                            double eps)
{
    if (d < 1 || d > ((int64_t)1 << 30))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer RMSNorm: row length %lld", (long long)d);
    if (!(eps >= 0) || !isfinite(eps))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer RMSNorm: eps %g", eps);
    TRY(qnpu__iqp_init(&p->x, x));
    TRY(qnpu__iqp_init(&p->y, y));
    p->d = d;
    /* the largest SS of a row: d·vmax², vmax = max|q − z| over the codes (< 2^16), so < 2^62 */
    int64_t lo = (int64_t)p->x.z - p->x.qmin, hi = (int64_t)p->x.qmax - p->x.z;
    int64_t vmax = lo > hi ? lo : hi;
    uint64_t ssmax = (uint64_t)d * (uint64_t)(vmax * vmax);
    double E = eps * (double)d / ((double)x->s * (double)x->s); /* eps in code units */
    if (!isfinite(E))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "integer RMSNorm: eps·d/s² = %g", E);
    /* the largest even k with (ssmax + E)·2^k < 2^62, at most 60 */
    int k = 60;
    while (ldexp((double)ssmax + E, k) >= 0x1p62)
        k -= 2;
    p->k = k;
    p->e = (uint64_t)rint(ldexp(E, k));
    /* integer check of the bound (the double test above may round): X < 2^62 for every row */
    uint64_t ssk = k >= 0 ? ssmax << k : (uint64_t)qnpu__rshift_rne((int64_t)ssmax, -k);
    if (ssk > ((uint64_t)1 << 62) - p->e) {
        p->k = k -= 2;
        p->e = (uint64_t)rint(ldexp(E, k));
    }
    return multiplier(sqrt((double)d) / (double)y->s, &p->c0, &p->nc);
}

/* ---- §3.5 softmax ------------------------------------------------------------------------------- */

void qnpu__isoftmax_free(qnpu__isoftmax *p)
{
    if (!p)
        return;
    qnpu__free(p->e);
    p->e = NULL;
    p->size = 0;
}

qnpu_status qnpu__isoftmax_init(qnpu__isoftmax *p, const qnpu__qp *x, const qnpu__qp *y)
{
    p->e = NULL;
    p->size = 0;
    TRY(qnpu__iqp_init(&p->x, x));
    TRY(qnpu__iqp_init(&p->y, y));
    double s = (double)x->s;
    /* D = ⌈31·ln 2 / s⌉: from there on 2^30·e^(−s·d) ≤ 2^−1, which rounds to 0 */
    double D = ceil(31.0 * log(2.0) / s);
    int64_t range = (int64_t)p->x.qmax - p->x.qmin + 1;
    int64_t size = D < (double)range ? (int64_t)D : range;
    if (size < 1)
        size = 1;
    p->e = qnpu__malloc((size_t)size * sizeof *p->e);
    if (!p->e)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "integer softmax: out of memory for %lld entries",
                          (long long)size);
    for (int64_t d = 0; d < size; d++)
        p->e[d] = (uint32_t)rint(ldexp(exp(-s * (double)d), 30));
    p->size = size;
    qnpu_status st = multiplier(0x1p-32 / (double)y->s, &p->m0, &p->n);
    if (st != QNPU_OK)
        qnpu__isoftmax_free(p);
    return st;
}

/* ---- §3.8 attention chain ----------------------------------------------------------------------- */

qnpu_status qnpu__iattn_init(qnpu__iattn *p, double s_acc, const qnpu__qp *qk,
                             const qnpu__qp *attn_scale, float scale_value, const qnpu__qp *scaled,
                             const qnpu__qp *rowmin, const qnpu__qp *mask_c, float mask_value,
                             const qnpu__qp *fill, const qnpu__qp *masked)
{
    TRY(qnpu__irq_init_acc(&p->qk, s_acc, qk));
    TRY(qnpu__imul_init_const(&p->scale, qk, attn_scale, scale_value, scaled));
    TRY(qnpu__irq_init(&p->rowmin, scaled, rowmin));
    TRY(qnpu__iadd_init_const(&p->fill, rowmin, mask_c, mask_value, fill));
    TRY(qnpu__irq_init(&p->from_scaled, scaled, masked));
    return qnpu__irq_init(&p->from_fill, fill, masked);
}
