/* observer.c — streaming observers: minmax and the stage-2 observer rule (METHOD.md §2.3),
 * mean_ksigma (§7.2 mean3sigma with its EMA), and two histogram observers (§13): percentile and
 * an MSE clip-range search. Memory does not grow with the number of values observed.
 *
 * The histogram (percentile, mse) covers [h_lo, h_lo + h_width] with `bins` bins of equal width;
 * an asymmetric observer bins x, a symmetric one bins |x| (h_lo = 0). The first batch sets the
 * range to its own [min, max]. When later values fall outside, the range doubles (downwards or
 * upwards, towards the side that overflows most) until they fit. A doubling merges old bins
 * exactly in pairs: upwards old bin i goes to i/2, downwards to (bins + i)/2, because every old
 * bin lies inside one new bin. So the counts stay exact, only the resolution coarsens; the
 * range ends up at most 4x wider than the data's span (alignment to the old bin grid). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant.h"

static const char *const kind_names[] = {"minmax", "mean_ksigma", "percentile", "mse"};

void qnpu__observer_cfg_default(qnpu__observer_cfg *cfg)
{
    cfg->sigma_k = 3.0;       /* init.sigma_k, observer.sigma_k */
    cfg->ema = 0.9;           /* init.ema                        */
    cfg->percentile = 99.99;  /* observer.percentile             */
    cfg->bins = 2048;         /* observer.bins                   */
    cfg->half_range = 0;      /* observer.sym_divisor = qmax     */
}

void qnpu__observer_cfg_from_options(const qnpu_options *opts, qnpu__observer_cfg *cfg)
{
    cfg->sigma_k = qnpu__opt_float(opts, QNPU_P_OBSERVER_SIGMA_K);
    cfg->ema = qnpu__opt_float(opts, QNPU_P_INIT_EMA);
    cfg->percentile = qnpu__opt_float(opts, QNPU_P_OBSERVER_PERCENTILE);
    cfg->bins = (int)qnpu__opt_int(opts, QNPU_P_OBSERVER_BINS);
    cfg->half_range = qnpu__opt_int(opts, QNPU_P_OBSERVER_SYM_DIVISOR) == 1; /* "qmax|half_range" */
}

static int uses_histogram(int kind)
{
    return kind == QNPU__OBS_PERCENTILE || kind == QNPU__OBS_MSE;
}

qnpu_status qnpu__observer_init(qnpu__observer *o, int kind, int bits, int sym,
                                const qnpu__observer_cfg *cfg)
{
    if (!o)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "observer: NULL observer");
    memset(o, 0, sizeof *o);
    if (kind < QNPU__OBS_MINMAX || kind > QNPU__OBS_MSE)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "observer: unknown kind %d", kind);
    qnpu_status st = qnpu__qrange(bits, sym, &o->qmin, &o->qmax);
    if (st != QNPU_OK)
        return st;
    if (cfg)
        o->cfg = *cfg;
    else
        qnpu__observer_cfg_default(&o->cfg);
    const qnpu__observer_cfg *c = &o->cfg;
    if (kind == QNPU__OBS_MEAN_KSIGMA && (!(c->sigma_k >= 0.0) || !isfinite(c->sigma_k) ||
                                          !(c->ema >= 0.0 && c->ema <= 1.0)))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "observer mean_ksigma: sigma_k %g, ema %g",
                          c->sigma_k, c->ema);
    if (kind == QNPU__OBS_PERCENTILE && !(c->percentile > 0.0 && c->percentile <= 100.0))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "observer percentile: %g is outside (0, 100]",
                          c->percentile);
    if (uses_histogram(kind) && (c->bins < 2 || c->bins > (1 << 24)))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "observer %s: %d bins is outside [2, 2^24]",
                          kind_names[kind], c->bins);
    o->kind = kind;
    o->bits = bits;
    o->sym = sym ? 1 : 0;
    if (uses_histogram(kind)) {
        o->bins = c->bins;
        o->hist = qnpu__calloc((size_t)o->bins, sizeof *o->hist);
        o->scratch = qnpu__calloc((size_t)o->bins, sizeof *o->scratch);
        o->allocs = 2;
        if (!o->hist || !o->scratch) {
            qnpu__observer_free(o);
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "observer %s: %d bins", kind_names[kind],
                              c->bins);
        }
    }
    return QNPU_OK;
}

void qnpu__observer_reset(qnpu__observer *o)
{
    o->count = 0;
    o->samples = 0;
    o->min = o->max = 0.0f;
    o->ema_s = o->ema_z = 0.0f;
    o->h_lo = o->h_width = 0.0;
    o->grows = 0;
    if (o->hist)
        memset(o->hist, 0, (size_t)o->bins * sizeof *o->hist);
}

void qnpu__observer_free(qnpu__observer *o)
{
    if (!o)
        return;
    qnpu__free(o->hist);
    qnpu__free(o->scratch);
    memset(o, 0, sizeof *o);
}

/* ---- histogram ------------------------------------------------------------------------------ */

/* The first batch's range [vmin, vmax]; a zero-width range (a constant batch) gets a small
 * positive width so that bins exist: |c| / 1024, or FLT_MIN around 0. */
static void hist_start(qnpu__observer *o, double vmin, double vmax)
{
    o->h_lo = vmin;
    o->h_width = vmax - vmin;
    if (!(o->h_width > 0.0))
        o->h_width = vmin != 0.0 ? fabs(vmin) * 0x1p-10 : (double)FLT_MIN;
}

/* Double the range, extending it downwards (down = 1) or upwards, and merge the counts. */
static void hist_double(qnpu__observer *o, int down)
{
    int B = o->bins;
    double *from = o->hist, *to = o->scratch;
    memset(to, 0, (size_t)B * sizeof *to);
    for (int i = 0; i < B; i++) {
        /* new bins are twice as wide; downwards the old range is the upper half */
        int j = down ? (B + i) / 2 : i / 2;
        to[j] += from[i];
    }
    o->hist = to;
    o->scratch = from;
    if (down)
        o->h_lo -= o->h_width;
    o->h_width *= 2.0;
    o->grows++;
}

/* Grow the range until it contains [vmin, vmax]. */
static void hist_cover(qnpu__observer *o, double vmin, double vmax)
{
    while (vmin < o->h_lo || vmax > o->h_lo + o->h_width) {
        double below = o->h_lo - vmin, above = vmax - (o->h_lo + o->h_width);
        hist_double(o, below > 0.0 && below >= above);
    }
}

static void hist_add(qnpu__observer *o, const float *x, size_t n)
{
    int B = o->bins;
    double inv_w = (double)B / o->h_width;
    for (size_t i = 0; i < n; i++) {
        double v = o->sym ? fabs((double)x[i]) : (double)x[i];
        double t = (v - o->h_lo) * inv_w;
        int64_t j = t > 0.0 ? (int64_t)t : 0; /* floor for t >= 0 */
        if (j >= B)
            j = B - 1;                         /* the top edge belongs to the last bin */
        o->hist[j] += 1.0;
    }
}

/* The value below which a fraction `frac` of the histogram's mass lies, interpolating linearly
 * inside the bin where the cumulative count reaches frac * total. */
static double hist_quantile(const qnpu__observer *o, double frac)
{
    double w = o->h_width / o->bins, target = frac * (double)o->count, cum = 0.0;
    for (int i = 0; i < o->bins; i++) {
        double h = o->hist[i];
        if (h > 0.0 && cum + h >= target) {
            double pos = (target - cum) / h;
            pos = pos < 0.0 ? 0.0 : pos > 1.0 ? 1.0 : pos;
            return o->h_lo + ((double)i + pos) * w;
        }
        cum += h;
    }
    return o->h_lo + o->h_width;
}

/* ---- update ------------------------------------------------------------------------------- */

/* §7.2 mean3sigma, one sample: mu, unbiased sigma (double, then float32), lo/hi = mu -+ k sigma,
 * (s_i, z_i) by the init rule with z_i rounded, then the EMA (z stays a float, parity rule 7). */
static qnpu_status ksigma_sample(qnpu__observer *o, const float *x, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += x[i];
    double mu = sum / (double)n, ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += ((double)x[i] - mu) * ((double)x[i] - mu);
    double sd = n > 1 ? sqrt(ss / (double)(n - 1)) : 0.0; /* one value: no spread */
    float muf = (float)mu, sdf = (float)sd, k = (float)o->cfg.sigma_k;
    float s_i, z_i;
    qnpu_status st = qnpu__qparams_init(muf - k * sdf, muf + k * sdf, o->bits, o->sym, &s_i, &z_i);
    if (st != QNPU_OK) {
        qnpu__error_prefix("observer mean_ksigma, sample %lld", (long long)o->samples + 1);
        return st;
    }
    if (o->samples == 0) {
        o->ema_s = s_i;             /* the first sample sets (s, z) */
        o->ema_z = z_i;
    } else {
        /* s <- ema*s + (1-ema)*s_i in float32; the factors are rounded to float32 as PyTorch
         * does with the Python scalars 0.9 and 0.1 */
        float a = (float)o->cfg.ema, b = (float)(1.0 - o->cfg.ema);
        o->ema_s = a * o->ema_s + b * s_i;
        o->ema_z = a * o->ema_z + b * z_i;
    }
    return QNPU_OK;
}

qnpu_status qnpu__observer_update(qnpu__observer *o, const float *x, size_t n)
{
    if (!o)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "observer: NULL observer");
    if (n == 0)
        return QNPU_OK;
    if (!x)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "observer %s: NULL data", kind_names[o->kind]);
    /* reject NaN/Inf before anything is recorded */
    float bmin = x[0], bmax = x[0];
    int bad = 0;
    for (size_t i = 0; i < n; i++) { /* branch-free: it vectorizes; the values are checked below */
        bad |= !isfinite(x[i]);
        bmin = x[i] < bmin ? x[i] : bmin;
        bmax = x[i] > bmax ? x[i] : bmax;
    }
    for (size_t i = 0; bad && i < n; i++)
        if (!isfinite(x[i]))
            return qnpu__fail(QNPU_ERR_NUMERIC, "observer %s: value %zu of %zu is %s",
                              kind_names[o->kind], i, n, isnan(x[i]) ? "NaN" : "Inf");

    if (o->kind == QNPU__OBS_MEAN_KSIGMA) {
        qnpu_status st = ksigma_sample(o, x, n);
        if (st != QNPU_OK)
            return st;
    } else if (uses_histogram(o->kind)) {
        double vmin = bmin, vmax = bmax;
        if (o->sym) {
            vmax = fmax(-vmin, vmax); /* the histogram of |x| */
            vmin = 0.0;
        }
        if (o->count == 0)
            hist_start(o, vmin, vmax);
        else
            hist_cover(o, vmin, vmax);
        hist_add(o, x, n);
    }

    if (o->count == 0) {
        o->min = bmin;
        o->max = bmax;
    } else {
        o->min = fminf(o->min, bmin);
        o->max = fmaxf(o->max, bmax);
    }
    o->count += (int64_t)n;
    o->samples++;
    return QNPU_OK;
}

/* ---- the MSE clip-range search -------------------------------------------------------------- */

/* Prefix sums over the bins, with the mass of each bin spread uniformly over it:
 * C[j] = count of bins < j, M1[j] = sum h c, M2[j] = sum h (c^2 + w^2/12) (c = bin centre). */
typedef struct hist_moments {
    double *C, *M1, *M2;
    double a, w, total;
    int B;
} hist_moments;

/* Count and squared clipping error of the mass below t, every such value clipped to t. */
static void clip_below(const hist_moments *m, double t, double *cnt, double *err)
{
    double pos = (t - m->a) / m->w;
    *cnt = *err = 0.0;
    if (!(pos > 0.0))
        return;
    int64_t j = pos >= m->B ? m->B : (int64_t)pos;
    double c = m->C[j], e = t * t * m->C[j] - 2.0 * t * m->M1[j] + m->M2[j]; /* whole bins */
    if (j < m->B) {
        /* the part [bin start, t] of bin j: length d, error integral of u^2 over [0, d] */
        double h = m->C[j + 1] - m->C[j], d = fmax(t - (m->a + (double)j * m->w), 0.0);
        c += h * d / m->w;
        e += h * d * d * d / (3.0 * m->w);
    }
    *cnt = c;
    *err = fmax(e, 0.0);
}

/* Count and squared clipping error of the mass above t, every such value clipped to t. */
static void clip_above(const hist_moments *m, double t, double *cnt, double *err)
{
    double pos = (t - m->a) / m->w;
    *cnt = *err = 0.0;
    if (pos >= m->B)
        return;
    int64_t first = 0;  /* first bin lying wholly above t */
    double c = 0.0, e = 0.0;
    if (pos >= 0.0) {
        int64_t j = (int64_t)pos;
        double h = m->C[j + 1] - m->C[j], d = fmax(m->a + (double)(j + 1) * m->w - t, 0.0);
        c = h * d / m->w;
        e = h * d * d * d / (3.0 * m->w);
        first = j + 1;
    }
    double C = m->C[m->B] - m->C[first], M1 = m->M1[m->B] - m->M1[first];
    double M2 = m->M2[m->B] - m->M2[first];
    c += C;
    e += M2 - 2.0 * t * M1 + t * t * C;
    *cnt = c;
    *err = fmax(e, 0.0);
}

/* Expected squared error over the histogram of quantizing with the observer-rule qparams of
 * [lo, hi]: clipping error outside the representable range [(qmin-z)s, (qmax-z)s], plus the
 * uniform rounding noise s^2/12 per value inside it. Symmetric observers hold |x|, so only the
 * upper clip (at qmax*s) applies. */
static double candidate_error(const qnpu__observer *o, const hist_moments *m, float lo, float hi)
{
    float s;
    int32_t z;
    if (qnpu__qparams_observer(lo, hi, o->bits, o->sym, o->cfg.half_range, &s, &z) != QNPU_OK)
        return INFINITY;
    double qlo = ((double)o->qmin - z) * s, qhi = ((double)o->qmax - z) * s;
    double cb = 0.0, eb = 0.0, ca, ea;
    if (!o->sym)
        clip_below(m, qlo, &cb, &eb);
    clip_above(m, qhi, &ca, &ea);
    double inside = fmax(m->total - cb - ca, 0.0);
    return eb + ea + inside * (double)s * (double)s / 12.0;
}

/* Candidate shrink factors p = 2^(-u / (COARSE * FINE)): a coarse grid of COARSE steps per
 * octave down to 2^-OCTAVES, then a refinement of FINE sub-steps around the coarse optimum. */
#define MSE_COARSE 16
#define MSE_OCTAVES 10
#define MSE_FINE 16

static double shrink_factor(int u)
{
    return exp2(-(double)u / (MSE_COARSE * MSE_FINE));
}

/* The range for shrink indices (ul, uh) in fine units: [lo0 p(ul), hi0 p(uh)], symmetric
 * observers use one factor, [-a0 p(uh), a0 p(uh)]. */
static void candidate_range(const qnpu__observer *o, float lo0, float hi0, int ul, int uh,
                            float *lo, float *hi)
{
    *hi = (float)((double)hi0 * shrink_factor(uh));
    *lo = o->sym ? -*hi : (float)((double)lo0 * shrink_factor(ul));
}

static qnpu_status mse_range(const qnpu__observer *o, float *lo_out, float *hi_out)
{
    int B = o->bins;
    double *buf = qnpu__malloc(3 * ((size_t)B + 1) * sizeof *buf);
    if (!buf)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "observer mse: prefix sums of %d bins", B);
    hist_moments m = {buf, buf + B + 1, buf + 2 * (B + 1), o->h_lo, o->h_width / B,
                      (double)o->count, B};
    m.C[0] = m.M1[0] = m.M2[0] = 0.0;
    for (int j = 0; j < B; j++) {
        double h = o->hist[j], c = m.a + ((double)j + 0.5) * m.w;
        m.C[j + 1] = m.C[j] + h;
        m.M1[j + 1] = m.M1[j] + h * c;
        m.M2[j + 1] = m.M2[j] + h * (c * c + m.w * m.w / 12.0);
    }

    /* the search starts from the observed range widened to contain 0, as the rule will do */
    float lo0 = fminf(o->min, 0.0f), hi0 = fmaxf(o->max, 0.0f);
    if (o->sym) {
        hi0 = fmaxf(-lo0, hi0);
        lo0 = -hi0;
    }
    const int umax = MSE_COARSE * MSE_OCTAVES * MSE_FINE;
    /* an end at 0 cannot shrink; a symmetric range has one free end */
    int nl = (o->sym || lo0 == 0.0f) ? 0 : MSE_COARSE * MSE_OCTAVES;
    int nh = hi0 == 0.0f ? 0 : MSE_COARSE * MSE_OCTAVES;

    double best = INFINITY;
    int bl = 0, bh = 0;
    float lo, hi;
    for (int kl = 0; kl <= nl; kl++)          /* coarse grid, widest first: ties keep wider */
        for (int kh = 0; kh <= nh; kh++) {
            candidate_range(o, lo0, hi0, kl * MSE_FINE, kh * MSE_FINE, &lo, &hi);
            double e = candidate_error(o, &m, lo, hi);
            if (e < best) {
                best = e;
                bl = kl * MSE_FINE;
                bh = kh * MSE_FINE;
            }
        }
    int cl = bl, ch = bh;                    /* refinement around the coarse optimum */
    for (int ul = cl - (MSE_FINE - 1); ul <= cl + (MSE_FINE - 1); ul++) {
        if (ul < 0 || ul > (nl ? umax : 0))
            continue;
        for (int uh = ch - (MSE_FINE - 1); uh <= ch + (MSE_FINE - 1); uh++) {
            if (uh < 0 || uh > (nh ? umax : 0))
                continue;
            candidate_range(o, lo0, hi0, ul, uh, &lo, &hi);
            double e = candidate_error(o, &m, lo, hi);
            if (e < best) {
                best = e;
                bl = ul;
                bh = uh;
            }
        }
    }
    qnpu__free(buf);
    candidate_range(o, lo0, hi0, bl, bh, lo_out, hi_out);
    return QNPU_OK;
}

/* ---- results -------------------------------------------------------------------------------- */

qnpu_status qnpu__observer_range(const qnpu__observer *o, float *lo, float *hi)
{
    *lo = *hi = 0.0f;
    if (o->count == 0)
        return QNPU_OK;
    switch (o->kind) {
    case QNPU__OBS_MINMAX:
        *lo = o->min;
        *hi = o->max;
        return QNPU_OK;
    case QNPU__OBS_MEAN_KSIGMA: {
        int32_t z = o->sym ? 0 : qnpu__round_zero_point(o->ema_z);
        *lo = (float)((double)o->qmin - z) * o->ema_s;
        *hi = (float)((double)o->qmax - z) * o->ema_s;
        return QNPU_OK;
    }
    case QNPU__OBS_PERCENTILE: {
        double keep = o->cfg.percentile / 100.0;
        if (o->sym) {
            /* the p-th percentile of |x|: p % of the values keep their magnitude */
            float amax = fmaxf(-o->min, o->max);
            float a = fminf((float)hist_quantile(o, keep), amax);
            *lo = -a;
            *hi = a;
        } else {
            /* (100 - p)/2 % cut on each side: p % of the values inside (params.def "kept
             * share"; ONNX Runtime's percentile calibrator does the same) */
            double cut = (1.0 - keep) / 2.0;
            *lo = fmaxf((float)hist_quantile(o, cut), o->min);
            *hi = fminf((float)hist_quantile(o, 1.0 - cut), o->max);
            if (*lo > *hi)
                *lo = *hi;
        }
        return QNPU_OK;
    }
    case QNPU__OBS_MSE:
        return mse_range(o, lo, hi);
    }
    return qnpu__fail(QNPU_ERR_INTERNAL, "observer: kind %d", o->kind);
}

qnpu_status qnpu__observer_qparams(const qnpu__observer *o, float *s, int32_t *z)
{
    if (o->kind == QNPU__OBS_MEAN_KSIGMA) {
        float fs, fz;
        qnpu_status st = qnpu__observer_init_qparams(o, &fs, &fz);
        if (st != QNPU_OK)
            return st;
        *s = fs;
        *z = qnpu__round_zero_point(fz); /* rounded, not clamped (parity rules 5, 6) */
        return QNPU_OK;
    }
    float lo, hi;
    qnpu_status st = qnpu__observer_range(o, &lo, &hi);
    if (st != QNPU_OK)
        return st;
    return qnpu__qparams_observer(lo, hi, o->bits, o->sym, o->cfg.half_range, s, z);
}

qnpu_status qnpu__observer_init_qparams(const qnpu__observer *o, float *s, float *z)
{
    if (o->count == 0)
        return qnpu__qparams_init(0.0f, 0.0f, o->bits, o->sym, s, z);
    if (o->kind == QNPU__OBS_MEAN_KSIGMA) {
        *s = o->ema_s;
        *z = o->ema_z;
        return QNPU_OK;
    }
    float lo, hi;
    qnpu_status st = qnpu__observer_range(o, &lo, &hi);
    if (st != QNPU_OK)
        return st;
    return qnpu__qparams_init(lo, hi, o->bits, o->sym, s, z);
}
