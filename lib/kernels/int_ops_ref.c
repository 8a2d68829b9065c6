/* int_ops_ref.c — plain scalar reference kernels of the integer operators (see int_ops.h).
 *
 * Integer arithmetic only: no float or double anywhere in this file, so that the results do
 * not depend on the floating-point environment. test/kernels/no_float.sh checks the object
 * file for x87/SSE/AVX floating-point instructions. Nothing here allocates or prints. */
#include "int_ops.h"

static inline int32_t clamp64(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* rne(num / den) for den > 0, ties to even. */
static inline uint64_t div_rne(uint64_t num, uint64_t den)
{
    uint64_t q = num / den, r = num % den;
    if (r > den - r || (r == den - r && (q & 1u)))
        q++;
    return q;
}

#ifdef QNPU__HAVE_INT128
/* The same rne(num / den) for num < 2^63 through a reciprocal inv = ⌊(2^64 − 1)/den⌋ computed once
 * per denominator: q0 = ⌊num·inv/2^64⌋ is q or q − 1 (inv > 2^64/den − 1 and num < 2^64), so one
 * correction gives the exact quotient and remainder, then the tie rule as above. Equal to div_rne
 * for every input; a multiply instead of a division in the softmax's inner loop. */
static inline uint64_t div_rne_inv(uint64_t num, uint64_t den, uint64_t inv)
{
    uint64_t q = (uint64_t)(((qnpu__u128)num * inv) >> 64), r = num - q * den;
    if (r >= den)
        q++, r -= den;
    if (r > den - r || (r == den - r && (q & 1u)))
        q++;
    return q;
}
#endif

/* Index of the highest set bit of x > 0 (0 … 63). */
static int msb64(uint64_t x)
{
    int b = 0;
    for (int s = 32; s > 0; s >>= 1)
        if (x >> s) {
            x >>= s;
            b += s;
        }
    return b;
}

/* rne(√x) by the digit-by-digit method: r = ⌊√x⌋ with remainder x − r² ∈ [0, 2r]; √x ≥ r + ½
 * exactly when the remainder is ≥ r + ¼, i.e. > r (no ties: x is an integer). */
static uint64_t isqrt_rne(uint64_t x)
{
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > x)
        bit >>= 2;
    while (bit) {
        if (x >= r + bit) {
            x -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return x > r ? r + 1 : r;
}

/* ---- single elements, shared by the stand-alone and the fused kernels --------------------- */

static inline int32_t rq1(const qnpu__irq *p, int64_t centred)
{
    return qnpu__requant_i(centred, p->m0, p->n, p->y.z, p->y.qmin, p->y.qmax);
}

static inline int32_t add1(const qnpu__iadd *p, int32_t qa, int32_t qb)
{
    /* |q − z| < 2^17, m < 2^31, la, lb ≤ 14: each term < 2^62 (shifts written as products) */
    int64_t t = (int64_t)(qa - p->a.z) * p->ma0 * ((int64_t)1 << p->la) +
                (int64_t)(qb - p->b.z) * p->mb0 * ((int64_t)1 << p->lb);
    return clamp64((int64_t)p->y.z + qnpu__rshift_rne_i(t, p->n), p->y.qmin, p->y.qmax);
}

static inline int32_t mul1(const qnpu__imul *p, int32_t qa, int32_t qb)
{
    int64_t acc = (int64_t)(qa - p->a.z) * (int64_t)(qb - p->b.z);
    return qnpu__requant_i(acc, p->m0, p->n, p->y.z, p->y.qmin, p->y.qmax);
}

static inline int32_t mulc1(const qnpu__imul *p, int32_t qa)
{
    return qnpu__requant_i((int64_t)(qa - p->a.z) * p->bk, p->m0, p->n, p->y.z, p->y.qmin, p->y.qmax);
}

/* ---- requantization of codes and accumulators --------------------------------------------- */

/* x (m, n) codes -> y (m, n) codes */
void qnpu__requant_codes_ref(const qnpu__irq *p, int64_t m, int64_t n, const void *x, int64_t ldx,
                             void *y, int64_t ldy)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            int32_t q = qnpu__code_get(x, p->x.ctype, r * ldx + j);
            qnpu__code_put(y, p->y.ctype, r * ldy + j, rq1(p, (int64_t)q - p->x.z));
        }
}

/* acc (m, n) int64 -> y (m, n) codes */
void qnpu__requant_acc_ref(const qnpu__irq *p, int64_t m, int64_t n, const int64_t *acc,
                           int64_t lda, void *y, int64_t ldy)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++)
            qnpu__code_put(y, p->y.ctype, r * ldy + j, rq1(p, acc[r * lda + j]));
}

/* ---- §3.3 add and multiply ------------------------------------------------------------------ */

/* a (m, n) + b (m, n) -> y (m, n) */
void qnpu__add_ref(const qnpu__iadd *p, int64_t m, int64_t n, const void *a, int64_t lda,
                   const void *b, int64_t ldb, void *y, int64_t ldy)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            int32_t qa = qnpu__code_get(a, p->a.ctype, r * lda + j);
            int32_t qb = qnpu__code_get(b, p->b.ctype, r * ldb + j);
            qnpu__code_put(y, p->y.ctype, r * ldy + j, add1(p, qa, qb));
        }
}

/* a (m, n) + constant -> y (m, n) */
void qnpu__add_const_ref(const qnpu__iadd *p, int64_t m, int64_t n, const void *a, int64_t lda,
                         void *y, int64_t ldy)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            int32_t qa = qnpu__code_get(a, p->a.ctype, r * lda + j);
            qnpu__code_put(y, p->y.ctype, r * ldy + j, add1(p, qa, p->bc));
        }
}

/* a (m, n) * b (m, n) -> y (m, n) */
void qnpu__mul_ref(const qnpu__imul *p, int64_t m, int64_t n, const void *a, int64_t lda,
                   const void *b, int64_t ldb, void *y, int64_t ldy)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            int32_t qa = qnpu__code_get(a, p->a.ctype, r * lda + j);
            int32_t qb = qnpu__code_get(b, p->b.ctype, r * ldb + j);
            qnpu__code_put(y, p->y.ctype, r * ldy + j, mul1(p, qa, qb));
        }
}

/* a (m, n) * constant -> y (m, n) */
void qnpu__mul_const_ref(const qnpu__imul *p, int64_t m, int64_t n, const void *a, int64_t lda,
                         void *y, int64_t ldy)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            int32_t qa = qnpu__code_get(a, p->a.ctype, r * lda + j);
            qnpu__code_put(y, p->y.ctype, r * ldy + j, mulc1(p, qa));
        }
}

/* a (m, n) * b (m, n) -> h (m, n) int64, exact */
void qnpu__mul_raw_ref(const qnpu__imul *p, int64_t m, int64_t n, const void *a, int64_t lda,
                       const void *b, int64_t ldb, int64_t *h, int64_t ldh)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            int32_t qa = qnpu__code_get(a, p->a.ctype, r * lda + j);
            int32_t qb = qnpu__code_get(b, p->b.ctype, r * ldb + j);
            h[r * ldh + j] = (int64_t)(qa - p->a.z) * (int64_t)(qb - p->b.z);
        }
}

/* ---- §3.4 tables ----------------------------------------------------------------------------- */

/* x (m, n) -> y (m, n) = qmin_y + t[x − qmin_x] */
void qnpu__lut_ref(const qnpu__lut *l, int64_t m, int64_t n, const void *x, int64_t ldx, void *y,
                   int64_t ldy)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            int64_t i = (int64_t)qnpu__code_get(x, l->x.ctype, r * ldx + j) - l->x.qmin;
            i = i < 0 ? 0 : i >= l->size ? l->size - 1 : i; /* stray values stay in the table */
            qnpu__code_put(y, l->y.ctype, r * ldy + j, l->y.qmin + (int32_t)l->t[i]);
        }
}

/* ---- §3.6 RMSNorm ------------------------------------------------------------------------------ */

/* x (m, d) -> y (m, d), one row at a time */
void qnpu__rmsnorm_ref(const qnpu__irms *p, int64_t m, const void *x, int64_t ldx, void *y,
                       int64_t ldy)
{
    const int64_t d = p->d;
    for (int64_t r = 0; r < m; r++) {
        const int64_t xo = r * ldx, yo = r * ldy;
        uint64_t ss = 0;
        for (int64_t i = 0; i < d; i++) {
            int64_t v = (int64_t)qnpu__code_get(x, p->x.ctype, xo + i) - p->x.z;
            ss += (uint64_t)(v * v);
        }
        uint64_t X = p->k >= 0 ? (ss << p->k) + p->e
                               : (uint64_t)qnpu__rshift_rne_i((int64_t)ss, -p->k) + p->e;
        if (ss == 0 || X == 0) { /* every v_i is 0: y = z_y, and no 1/√0 is formed */
            int32_t zc = clamp64(p->y.z, p->y.qmin, p->y.qmax);
            for (int64_t i = 0; i < d; i++)
                qnpu__code_put(y, p->y.ctype, yo + i, zc);
            continue;
        }
        /* X = Xn·2^−2j with Xn in [2^62, 2^64); 1/√X = 2^j/√Xn ≈ 2^j·w·2^−63, w = rne(2^63/u) */
        int j = (63 - msb64(X)) / 2;
        uint64_t u = isqrt_rne(X << (2 * j));          /* [2^31, 2^32] */
        uint64_t w = div_rne((uint64_t)1 << 63, u);    /* [2^31, 2^32] */
        int64_t cw = (int64_t)((uint64_t)p->c0 * w);   /* [2^61, 2^63) */
        int sh = msb64((uint64_t)cw) - 30;             /* m0 = rne(cw/2^sh) in [2^30, 2^31] */
        int64_t m0 = qnpu__rshift_rne_i(cw, sh);
        if (m0 > INT32_MAX) {
            sh++;
            m0 = qnpu__rshift_rne_i(cw, sh);
        }
        /* v·√d/(s_y·√(SS + E)) = v·c0·2^−nc·2^(k/2 + j)·w·2^−63 = v·m0·2^(sh + k/2 + j − nc − 63) */
        int n = 63 + p->nc - sh - p->k / 2 - j;
        for (int64_t i = 0; i < d; i++) {
            int64_t v = (int64_t)qnpu__code_get(x, p->x.ctype, xo + i) - p->x.z;
            qnpu__code_put(y, p->y.ctype, yo + i,
                           qnpu__requant_i(v, (int32_t)m0, n, p->y.z, p->y.qmin, p->y.qmax));
        }
    }
}

/* ---- §3.7 RoPE --------------------------------------------------------------------------------- */

/* The centred rotate-half partner of element i of a head vector at x + o: −(x_(i+h) − z) for
 * i < h, +(x_(i−h) − z) for i ≥ h. */
static inline int64_t rot_centred(const void *x, int ct, int32_t z, int64_t o, int64_t i, int64_t h)
{
    return i < h ? -((int64_t)qnpu__code_get(x, ct, o + i + h) - z)
                 : (int64_t)qnpu__code_get(x, ct, o + i - h) - z;
}

/* x (T, heads*dh) -> y (T, heads*dh) in the rot QP */
void qnpu__rotate_half_ref(const qnpu__irq *p, int64_t T, int64_t heads, int64_t dh, const void *x,
                           int64_t ldx, void *y, int64_t ldy)
{
    const int64_t h = dh / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t hd = 0; hd < heads; hd++) {
            const int64_t xo = t * ldx + hd * dh, yo = t * ldy + hd * dh;
            for (int64_t i = 0; i < dh; i++)
                qnpu__code_put(y, p->y.ctype, yo + i,
                               rq1(p, rot_centred(x, p->x.ctype, p->x.z, xo, i, h)));
        }
}

/* x (T, heads*dh), cos/sin (T, dh) at ldt -> y (T, heads*dh) */
void qnpu__rope_ref(const qnpu__irope *p, int64_t T, int64_t heads, const void *x, int64_t ldx,
                    const void *cos_t, const void *sin_t, int64_t ldt, void *y, int64_t ldy)
{
    const int64_t dh = p->dh, h = dh / 2;
    const int xct = p->cmul.a.ctype;
    for (int64_t t = 0; t < T; t++)
        for (int64_t hd = 0; hd < heads; hd++) {
            const int64_t xo = t * ldx + hd * dh, yo = t * ldy + hd * dh;
            for (int64_t i = 0; i < dh; i++) {
                int32_t xi = qnpu__code_get(x, xct, xo + i);
                int32_t ci = qnpu__code_get(cos_t, p->cmul.b.ctype, t * ldt + i);
                int32_t si = qnpu__code_get(sin_t, p->smul.b.ctype, t * ldt + i);
                int32_t c = mul1(&p->cmul, xi, ci);                                   /* rope_c */
                int32_t rt = rq1(&p->rot, rot_centred(x, xct, p->rot.x.z, xo, i, h)); /* rot */
                int32_t s = mul1(&p->smul, rt, si);                                   /* rope_s */
                qnpu__code_put(y, p->sum.y.ctype, yo + i, add1(&p->sum, c, s));       /* rope */
            }
        }
}

/* ---- §3.5 softmax ------------------------------------------------------------------------------ */

/* x (m, n) -> y (m, n), row by row */
void qnpu__softmax_ref(const qnpu__isoftmax *p, int64_t m, int64_t n, const void *x, int64_t ldx,
                       void *y, int64_t ldy)
{
    for (int64_t r = 0; r < m; r++) {
        const int64_t xo = r * ldx, yo = r * ldy;
        int32_t mx = qnpu__code_get(x, p->x.ctype, xo);
        for (int64_t j = 1; j < n; j++) {
            int32_t q = qnpu__code_get(x, p->x.ctype, xo + j);
            mx = q > mx ? q : mx;
        }
        uint64_t S = 0; /* ≥ e[0] = 2^30 from the maximum; ≤ n·2^30 */
        for (int64_t j = 0; j < n; j++) {
            int64_t d = (int64_t)mx - qnpu__code_get(x, p->x.ctype, xo + j);
            S += d < p->size ? p->e[d] : 0;
        }
#ifdef QNPU__HAVE_INT128
        const uint64_t inv = UINT64_MAX / S;
#endif
        const int32_t y0 = qnpu__requant_i(0, p->m0, p->n, p->y.z, p->y.qmin, p->y.qmax);
        for (int64_t j = 0; j < n; j++) {
            int64_t d = (int64_t)mx - qnpu__code_get(x, p->x.ctype, xo + j);
            uint64_t E = d < p->size ? p->e[d] : 0;
            if (E == 0) { /* beyond the table: p = 0 */
                qnpu__code_put(y, p->y.ctype, yo + j, y0);
                continue;
            }
#ifdef QNPU__HAVE_INT128
            uint64_t ri = div_rne_inv(E << 32, S, inv); /* E < 2^31: E·2^32 < 2^63; ri ≤ 2^32 */
#else
            uint64_t ri = div_rne(E << 32, S);
#endif
            qnpu__code_put(y, p->y.ctype, yo + j,
                           qnpu__requant_i((int64_t)ri, p->m0, p->n, p->y.z, p->y.qmin, p->y.qmax));
        }
    }
}

/* ---- §3.8 attention score chain ------------------------------------------------------------------ */

/* x (m, n) -> y (m,): requantized row minima */
void qnpu__rowmin_ref(const qnpu__irq *p, int64_t m, int64_t n, const void *x, int64_t ldx, void *y)
{
    for (int64_t r = 0; r < m; r++) {
        int32_t mn = qnpu__code_get(x, p->x.ctype, r * ldx);
        for (int64_t j = 1; j < n; j++) {
            int32_t q = qnpu__code_get(x, p->x.ctype, r * ldx + j);
            mn = q < mn ? q : mn;
        }
        qnpu__code_put(y, p->y.ctype, r, rq1(p, (int64_t)mn - p->x.z));
    }
}

/* x (m, n) scaled, fill (m,) -> y (m, n) masked */
void qnpu__mask_select_ref(const qnpu__iattn *p, int64_t m, int64_t n, const void *x, int64_t ldx,
                           const void *fill, const int8_t *mask, int64_t ldm, int64_t past, void *y,
                           int64_t ldy)
{
    const qnpu__irq *fs = &p->from_scaled, *ff = &p->from_fill;
    for (int64_t r = 0; r < m; r++) {
        int32_t fm = rq1(ff, (int64_t)qnpu__code_get(fill, ff->x.ctype, r) - ff->x.z);
        for (int64_t j = 0; j < n; j++) {
            int32_t v = qnpu__is_masked(mask, ldm, past, r, j)
                            ? fm
                            : rq1(fs, (int64_t)qnpu__code_get(x, fs->x.ctype, r * ldx + j) - fs->x.z);
            qnpu__code_put(y, fs->y.ctype, r * ldy + j, v);
        }
    }
}

/* acc -> qk -> qk.scaled, one element */
static inline int32_t scaled1(const qnpu__iattn *p, int64_t acc)
{
    return mulc1(&p->scale, rq1(&p->qk, acc));
}

/* acc (m, n) int64 -> y (m, n) qk.masked codes */
void qnpu__attn_scores_ref(const qnpu__iattn *p, int64_t m, int64_t n, const int64_t *acc,
                           int64_t lda, const int8_t *mask, int64_t ldm, int64_t past, void *y,
                           int64_t ldy)
{
    const qnpu__irq *fs = &p->from_scaled, *ff = &p->from_fill;
    const int ct = fs->y.ctype;
    /* acc -> qk -> qk.scaled is monotone: non-decreasing when the constant's centred code bk >= 0
     * (requantization and clamping are monotone), non-increasing when bk < 0. So the row minimum
     * of the scaled codes is the scaled code of the extreme accumulator, and masked keys need no
     * scaled code of their own. */
    const int up = p->scale.bk >= 0;
    for (int64_t r = 0; r < m; r++) {
        const int64_t *a = acc + r * lda;
        int64_t ext = a[0];
        for (int64_t j = 1; j < n; j++)
            ext = up ? (a[j] < ext ? a[j] : ext) : (a[j] > ext ? a[j] : ext);
        int32_t rowmin = rq1(&p->rowmin, (int64_t)scaled1(p, ext) - p->rowmin.x.z); /* row 13 */
        int32_t fill = add1(&p->fill, rowmin, p->fill.bc);                          /* row 15 */
        int32_t fm = rq1(ff, (int64_t)fill - ff->x.z);                              /* row 16, masked keys */
        for (int64_t j = 0; j < n; j++)
            qnpu__code_put(y, ct, r * ldy + j,
                           qnpu__is_masked(mask, ldm, past, r, j) ? fm
                                                                  : rq1(fs, (int64_t)scaled1(p, a[j]) - fs->x.z));
    }
}
