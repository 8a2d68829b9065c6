/* quantizer.c — integer ranges, the two fake-quant forward forms, qparams from a range, and
 * per-channel symmetric weight scales / codes. Section numbers refer to spec/METHOD.md; the
 * rounding and float32 conventions are in quant.h. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "../kernels/fq.h"
#include "quant.h"

/* ---- §2.1 integer ranges ---------------------------------------------------------------- */

qnpu_status qnpu__qrange(int bits, int sym, int32_t *qmin, int32_t *qmax)
{
    if (bits < QNPU__QBITS_MIN || bits > QNPU__QBITS_MAX)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer: %d bits is outside [%d, %d]", bits,
                          QNPU__QBITS_MIN, QNPU__QBITS_MAX);
    if (sym) {
        /* signed: [-2^(b-1), 2^(b-1) - 1]; the symmetric scale divides by qmax (rule 1) */
        *qmin = -(int32_t)(1 << (bits - 1));
        *qmax = (int32_t)(1 << (bits - 1)) - 1;
    } else {
        /* unsigned: [0, 2^b - 1] */
        *qmin = 0;
        *qmax = (int32_t)(1 << bits) - 1;
    }
    return QNPU_OK;
}

/* Clamp a float to [lo, hi]; a NaN passes through unchanged (callers pass finite values). */
static float clampf(float v, float lo, float hi)
{
    if (v < lo)
        return lo;
    if (v > hi)
        return hi;
    return v;
}

/* ---- §2.2 learnable fake-quant ------------------------------------------------------------ */

/* The shared first half of the learnable forward: the rounded, clamped code as a float. */
static float learnable_q(float x, float s, float zr, int32_t qmin, int32_t qmax, int sym)
{
    float u = x / s;                  /* float32 division                                */
    if (!sym)
        u = u + zr;                   /* float32 add: may round before rne (§2.2 note)   */
    u = clampf(u, (float)qmin, (float)qmax); /* clamp first ...                          */
    return qnpu__rne(u);              /* ... then round half to even (parity rule 3)     */
}

float qnpu__fq_learnable(float x, float s, float z, int32_t qmin, int32_t qmax, int sym)
{
    float zr = sym ? 0.0f : qnpu__rne(z); /* parity rule 5: z is a float, rounded here */
    float q = learnable_q(x, s, zr, qmin, qmax, sym);
    return sym ? q * s : (q - zr) * s;
}

int32_t qnpu__fq_learnable_code(float x, float s, float z, int32_t qmin, int32_t qmax, int sym)
{
    float zr = sym ? 0.0f : qnpu__rne(z);
    float q = learnable_q(x, s, zr, qmin, qmax, sym);
    if (q != q) /* NaN input: no defined code; avoid an undefined conversion */
        return qmin;
    return (int32_t)q;
}

void qnpu__fq_learnable_vec(const float *x, float *y, size_t n, float s, float z, int32_t qmin,
                            int32_t qmax, int sym)
{
    float zr = sym ? 0.0f : qnpu__rne(z);
    for (size_t i = 0; i < n; i++) {
        float q = learnable_q(x[i], s, zr, qmin, qmax, sym);
        y[i] = sym ? q * s : (q - zr) * s;
    }
}

/* ---- §2.3 observer fake-quant ------------------------------------------------------------- */

int32_t qnpu__quantize_observer(float x, float inv_s, int32_t z, int32_t qmin, int32_t qmax)
{
    /* rne(x * inv_s) is an integer-valued float; adding z in double is exact while that value
     * is below 2^53, and anything larger is far outside [qmin, qmax] and clamps the same way.
     * PyTorch adds z in float32 and converts to int64, which is exact in the range that matters
     * (|code| < 2^24) and undefined beyond it. */
    double v = (double)qnpu__rne(x * inv_s) + (double)z; /* round first, then add z (rule 4) */
    if (!(v > (double)qmin)) /* also catches NaN */
        return qmin;
    if (v >= (double)qmax)
        return qmax;
    return (int32_t)v;
}

float qnpu__fq_observer(float x, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    int32_t q = qnpu__quantize_observer(x, qnpu__inv_scale(s), z, qmin, qmax);
    return (float)((int64_t)q - z) * s; /* (q - z) * s */
}

void qnpu__fq_observer_vec(const float *x, float *y, size_t n, float s, int32_t z, int32_t qmin,
                           int32_t qmax)
{
    /* the vector kernel (kernels/fq.c) computes exactly qnpu__fq_observer per element for the
     * ranges of at most 16 bits used here; a test compares the two over edge cases */
    qnpu__fq_f32(x, y, n, s, z, qmin, qmax);
}

void qnpu__quantize_observer_vec(const float *x, int32_t *q, size_t n, float s, int32_t z,
                                 int32_t qmin, int32_t qmax)
{
    float inv_s = qnpu__inv_scale(s);
    for (size_t i = 0; i < n; i++)
        q[i] = qnpu__quantize_observer(x[i], inv_s, z, qmin, qmax);
}

/* ---- qparams from a range ------------------------------------------------------------------ */

float qnpu__observer_eps(int bits)
{
    /* 1e-4 / (2^b - 1): 1e-4/255 for 8 bits, 1e-4/65535 for 16 (§2.3) */
    return (float)(1e-4 / (double)((1L << bits) - 1));
}

int32_t qnpu__round_zero_point(float z)
{
    float r = qnpu__rne(z);
    if (!(r > -2147483648.0f)) /* -2^31 and below, or NaN */
        return INT32_MIN;
    if (r >= 2147483648.0f)
        return INT32_MAX;
    return (int32_t)r;
}

qnpu_status qnpu__qparams_observer(float lo, float hi, int bits, int sym, int half_range, float *s,
                                   int32_t *z)
{
    int32_t qmin = 0, qmax = 0;
    qnpu_status st = qnpu__qrange(bits, sym, &qmin, &qmax);
    if (st != QNPU_OK)
        return st;
    if (lo != lo || hi != hi)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "observer qparams: NaN range bound");
    float eps = qnpu__observer_eps(bits);
    /* the observer range always contains 0 (§2.3, parity rule 6) */
    lo = fminf(lo, 0.0f);
    hi = fmaxf(hi, 0.0f);
    float scale;
    int32_t zero;
    if (sym) {
        float amax = fmaxf(-lo, hi);
        /* our rule divides by qmax; observer.sym_divisor = half_range divides by
         * (qmax - qmin) / 2 = 2^(b-1) - 0.5 (127.5 for 8 bits), PyTorch's rule */
        float div = half_range ? (float)(qmax - qmin) / 2.0f : (float)qmax;
        scale = fmaxf(amax / div, eps);
        zero = 0;
    } else {
        scale = fmaxf((hi - lo) / (float)(qmax - qmin), eps);
        if (!isfinite(scale))
            return qnpu__fail(QNPU_ERR_NUMERIC, "observer qparams: range [%g, %g] is too wide",
                              (double)lo, (double)hi);
        /* z = clamp(qmin - rne(lo / s), qmin, qmax); lo <= 0 so |lo / s| <= qmax - qmin */
        int64_t zz = (int64_t)qmin - (int64_t)qnpu__rne(lo / scale);
        zero = (int32_t)(zz < qmin ? qmin : zz > qmax ? qmax : zz);
    }
    if (!isfinite(scale))
        return qnpu__fail(QNPU_ERR_NUMERIC, "observer qparams: range [%g, %g] is too wide",
                          (double)lo, (double)hi);
    *s = scale;
    *z = zero;
    return QNPU_OK;
}

qnpu_status qnpu__qparams_init(float lo, float hi, int bits, int sym, float *s, float *z)
{
    int32_t qmin = 0, qmax = 0;
    qnpu_status st = qnpu__qrange(bits, sym, &qmin, &qmax);
    if (st != QNPU_OK)
        return st;
    if (lo != lo || hi != hi)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "init qparams: NaN range bound");
    float scale, zero;
    if (sym) {
        /* s = max(|lo|, |hi|, 1e-5) / qmax */
        scale = fmaxf(fmaxf(fabsf(lo), fabsf(hi)), QNPU__SCALE_FLOOR) / (float)qmax;
        zero = 0.0f;
    } else {
        /* s = max(hi - lo, 1e-5) / (qmax - qmin);  z = rne(qmin - lo / s), not clamped, and
         * 0 is not forced into the range (§7.2, parity rule 6) */
        scale = fmaxf(hi - lo, QNPU__SCALE_FLOOR) / (float)(qmax - qmin);
        zero = qnpu__rne((float)qmin - lo / scale);
    }
    if (!isfinite(scale) || !isfinite(zero))
        return qnpu__fail(QNPU_ERR_NUMERIC, "init qparams: range [%g, %g] gives no finite qparams",
                          (double)lo, (double)hi);
    *s = scale;
    *z = zero;
    return QNPU_OK;
}

/* ---- per-channel symmetric weights ------------------------------------------------------------ */

static qnpu_status check_matrix(const char *what, const void *w, int64_t rows, int64_t cols,
                                int64_t ld, int bits, int max_bits, const void *out)
{
    if ((!w || !out) && rows > 0 && cols > 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: NULL matrix", what);
    if (rows < 0 || cols < 0 || ld < cols)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: bad shape %lld x %lld (ld %lld)", what,
                          (long long)rows, (long long)cols, (long long)ld);
    if (bits < QNPU__QBITS_MIN || bits > max_bits)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: %d bits is outside [%d, %d]", what, bits,
                          QNPU__QBITS_MIN, max_bits);
    return QNPU_OK;
}

/* The symmetric weight code: clamp(rne(w / s), qmin, qmax) (§8.2 step 2). */
static float weight_code(float w, float s, float qmin, float qmax)
{
    return clampf(qnpu__rne(w / s), qmin, qmax);
}

/* sum over a row of |q * s - w|^NORM, stopping early once it reaches `stop` (the search only
 * needs to know that it is not smaller). */
static double row_clip_error(const float *w, int64_t cols, float s, float qmin, float qmax,
                             double stop)
{
    double e = 0.0;
    for (int64_t c = 0; c < cols; c++) {
        float d = weight_code(w[c], s, qmin, qmax) * s - w[c];
        e += pow(fabs((double)d), QNPU__WCLIP_NORM);
        if (e >= stop)
            break;
    }
    return e;
}

qnpu_status qnpu__weight_scales(const float *w, int64_t rows, int64_t cols, int64_t ld, int bits,
                                int method, float *scales)
{
    qnpu_status st = check_matrix("weight scales", w, rows, cols, ld, bits, QNPU__QBITS_MAX, scales);
    if (st != QNPU_OK)
        return st;
    if (method != QNPU__WSCALE_MAX && method != QNPU__WSCALE_MSE)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "weight scales: unknown method %d", method);
    int32_t qmin = 0, qmax = 0;
    qnpu__qrange(bits, 1, &qmin, &qmax);
    const int steps = (int)(QNPU__WCLIP_MAXSHRINK * QNPU__WCLIP_GRID); /* 80 */

    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * ld;
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            if (!isfinite(row[c]))
                return qnpu__fail(QNPU_ERR_NUMERIC, "weight scales: row %lld, column %lld is %s",
                                  (long long)r, (long long)c, isnan(row[c]) ? "NaN" : "Inf");
            amax = fmaxf(amax, fabsf(row[c]));
        }
        /* max|w| with the 1e-5 floor of §7.2; an all-zero row gets 1e-5/qmax, never 0 */
        float base = fmaxf(amax, QNPU__SCALE_FLOOR);
        float best_s = base / (float)qmax;
        if (method == QNPU__WSCALE_MSE) {
            /* §13: shrink p = 1 - i/grid for i < grid * maxshrink, error sum |Q(w) - w|^2.4;
             * i = 0 is the max scale above and wins ties (strict <) */
            double best_e = row_clip_error(row, cols, best_s, (float)qmin, (float)qmax, INFINITY);
            for (int i = 1; i < steps && best_e > 0.0; i++) {
                float p = (float)(1.0 - (double)i / QNPU__WCLIP_GRID);
                float s = p * base / (float)qmax;
                double e = row_clip_error(row, cols, s, (float)qmin, (float)qmax, best_e);
                if (e < best_e) {
                    best_e = e;
                    best_s = s;
                }
            }
        }
        scales[r] = best_s;
    }
    return QNPU_OK;
}

qnpu_status qnpu__weight_scales_ksigma(const float *w, int64_t rows, int64_t cols, int64_t ld,
                                       int bits, double k, float *scales)
{
    qnpu_status st = check_matrix("weight init", w, rows, cols, ld, bits, QNPU__QBITS_MAX, scales);
    if (st != QNPU_OK)
        return st;
    if (!(k >= 0.0) || !isfinite(k))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "weight init: sigma multiplier %g", k);
    int32_t qmin = 0, qmax = 0;
    qnpu__qrange(bits, 1, &qmin, &qmax);
    float kf = (float)k;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * ld;
        double sum = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            if (!isfinite(row[c]))
                return qnpu__fail(QNPU_ERR_NUMERIC, "weight init: row %lld, column %lld is %s",
                                  (long long)r, (long long)c, isnan(row[c]) ? "NaN" : "Inf");
            sum += row[c];
        }
        double mu = cols > 0 ? sum / (double)cols : 0.0;
        double ss = 0.0;
        for (int64_t c = 0; c < cols; c++)
            ss += ((double)row[c] - mu) * ((double)row[c] - mu);
        /* unbiased (N - 1), parity rule 7; a single column has no spread */
        double sd = cols > 1 ? sqrt(ss / (double)(cols - 1)) : 0.0;
        float muf = (float)mu, sdf = (float)sd;
        /* s_r = max(|mu - k sigma|, |mu + k sigma|, 1e-5) / qmax  (§7.2 "Weights") */
        float a = fmaxf(fabsf(muf - kf * sdf), fabsf(muf + kf * sdf));
        scales[r] = fmaxf(a, QNPU__SCALE_FLOOR) / (float)qmax;
        if (!isfinite(scales[r]))
            return qnpu__fail(QNPU_ERR_NUMERIC, "weight init: row %lld has no finite scale",
                              (long long)r);
    }
    return QNPU_OK;
}

static qnpu_status check_scales(const char *what, const float *scales, int64_t rows)
{
    for (int64_t r = 0; r < rows; r++)
        if (!(scales[r] > 0.0f) || !isfinite(scales[r]))
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: scale of row %lld is %g", what,
                              (long long)r, (double)scales[r]);
    return QNPU_OK;
}

/* The arguments shared by qnpu__weight_quantize and qnpu__weight_fake_quant. */
static qnpu_status check_apply(const char *what, const float *w, int64_t rows, int64_t cols, int64_t ld,
                               int bits, int max_bits, const void *dst, int64_t ldd, const float *scales)
{
    qnpu_status st = check_matrix(what, w, rows, cols, ld, bits, max_bits, dst);
    if (st == QNPU_OK && ldd < cols)
        st = qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: output stride %lld < cols %lld", what,
                        (long long)ldd, (long long)cols);
    if (st == QNPU_OK && rows > 0 && !scales)
        st = qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: NULL scales", what);
    if (st == QNPU_OK)
        st = check_scales(what, scales, rows);
    return st;
}

qnpu_status qnpu__weight_quantize(const float *w, int64_t rows, int64_t cols, int64_t ld,
                                  const float *scales, int bits, int8_t *q, int64_t ldq)
{
    qnpu_status st = check_apply("weight quantize", w, rows, cols, ld, bits, 8, q, ldq, scales);
    if (st != QNPU_OK)
        return st;
    int32_t qmin = 0, qmax = 0;
    qnpu__qrange(bits, 1, &qmin, &qmax);
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * ld;
        int8_t *out = q + r * ldq;
        for (int64_t c = 0; c < cols; c++) {
            /* W'/s_w[o] (division), rne, then clamp — §8.2 step 2 */
            float v = weight_code(row[c], scales[r], (float)qmin, (float)qmax);
            out[c] = (int8_t)(v == v ? v : 0.0f); /* a NaN weight has no code; write 0 */
        }
    }
    return QNPU_OK;
}

qnpu_status qnpu__weight_fake_quant(const float *w, int64_t rows, int64_t cols, int64_t ld,
                                    const float *scales, int bits, float *out, int64_t ldo)
{
    qnpu_status st = check_apply("weight fake-quant", w, rows, cols, ld, bits, QNPU__QBITS_MAX, out, ldo,
                                 scales);
    if (st != QNPU_OK)
        return st;
    int32_t qmin = 0, qmax = 0;
    qnpu__qrange(bits, 1, &qmin, &qmax);
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * ld;
        float *dst = out + r * ldo;
        float s = scales[r];
        for (int64_t c = 0; c < cols; c++)
            dst[c] = weight_code(row[c], s, (float)qmin, (float)qmax) * s; /* q * s */
    }
    return QNPU_OK;
}
