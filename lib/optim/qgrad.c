/* qgrad.c — forward helpers and backward of the learnable quantizer (METHOD.md §2.2, §5, §7.3).
 * The conventions are described in qgrad.h; the forward arithmetic itself lives in
 * lib/calib/quantizer.c and is only called from here. */
#include <math.h>
#include <string.h>

#include "../calib/quant.h"
#include "qgrad.h"

/* ---- configuration -------------------------------------------------------------------------- */

void qnpu__lq_cfg_default(qnpu__lq_cfg *cfg)
{
    cfg->clamp = 0.1f;
    cfg->warmup = 0;
    cfg->share = 1.0f;
}

void qnpu__lq_cfg_from_options(const qnpu_options *opts, qnpu__lq_cfg *cfg)
{
    qnpu__lq_cfg_default(cfg);
    if (opts)
        cfg->clamp = (float)qnpu__opt_float(opts, QNPU_P_OPTIM_QPARAM_GRAD_CLAMP);
}


/* ---- per element ------------------------------------------------------------------------------ */

int qnpu__lq_partials(float x, float s, float z, int32_t qmin, int32_t qmax, int sym, float *xhat,
                      float *ds, float *dz)
{
    float zr = sym ? 0.0f : qnpu__rne(z);
    /* u exactly as the forward forms it (§2.2, rule 3): float32 division, then float32 add */
    float u = x / s;
    if (!sym)
        u = u + zr;
    /* the forward's own code and dequantization (quantizer.c), so x̂ is the forward's value */
    float q = (float)qnpu__fq_learnable_code(x, s, z, qmin, qmax, sym);
    *xhat = sym ? q * s : (q - zr) * s;
    float lo = (float)qmin, hi = (float)qmax;
    if (u > lo && u < hi) { /* inside: strict inequalities (rule 9) */
        *ds = q - u;
        *dz = 0.0f;
        return QNPU__LQ_INSIDE;
    }
    if (u <= lo) {
        *ds = lo - zr;
        *dz = sym ? 0.0f : -s;
        return QNPU__LQ_BELOW;
    }
    if (u >= hi) {
        *ds = hi - zr;
        *dz = sym ? 0.0f : -s;
        return QNPU__LQ_ABOVE;
    }
    *ds = *dz = NAN; /* u is NaN */
    return QNPU__LQ_NAN;
}

/* ---- argument checks ---------------------------------------------------------------------------- */

static int scale_ok(float s)
{
    return s > 0.0f && isfinite(s);
}

static qnpu_status check_cfg(const qnpu__lq_cfg *cfg)
{
    if (!(cfg->clamp >= 0.0f) || (cfg->warmup && !(cfg->share > 0.0f && isfinite(cfg->share))))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer backward: bad configuration (clamp %g, "
                          "share %g)", (double)cfg->clamp, (double)cfg->share);
    return QNPU_OK;
}

/* index of the first non-finite element of a (rows, cols, ld) block, or -1 */
static int64_t first_nonfinite(const float *a, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            if (!isfinite(a[r * ld + c]))
                return r * cols + c;
    return -1;
}

/* ---- forward -------------------------------------------------------------------------------------- */

qnpu_status qnpu__lq_forward_tensor(const float *x, float *y, size_t n, float s, float z, int bits,
                                    int sym)
{
    int32_t qmin, qmax;
    qnpu_status st = qnpu__qrange(bits, sym, &qmin, &qmax);
    if (st != QNPU_OK)
        return st;
    if (!scale_ok(s))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer forward: scale %g is not finite and > 0",
                          (double)s);
    if (n > 0 && (!x || !y))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer forward: NULL tensor");
    qnpu__fq_learnable_vec(x, y, n, s, z, qmin, qmax, sym);
    return QNPU_OK;
}

qnpu_status qnpu__lq_forward_channel(const float *x, float *y, int64_t rows, int64_t cols, int64_t ld,
                                     const float *s, const float *z, int bits, int sym)
{
    int32_t qmin, qmax;
    qnpu_status st = qnpu__qrange(bits, sym, &qmin, &qmax);
    if (st != QNPU_OK)
        return st;
    if (rows < 0 || cols < 0 || ld < cols || (rows > 0 && (!x || !y || !s || (!sym && !z))))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer forward: bad per-channel arguments");
    for (int64_t r = 0; r < rows; r++)
        if (!scale_ok(s[r]))
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer forward: row %lld: scale %g is not "
                              "finite and > 0", (long long)r, (double)s[r]);
    for (int64_t r = 0; r < rows; r++)
        qnpu__fq_learnable_vec(x + r * ld, y + r * ld, (size_t)cols, s[r], sym ? 0.0f : z[r], qmin,
                               qmax, sym);
    return QNPU_OK;
}

/* ---- backward ------------------------------------------------------------------------------------- */

/* One element of the aggregation: the forward's own arithmetic (quantizer.c's learnable_q, rule 3,
 * and qnpu__lq_partials: the same float operations, so the same bits), the §5 partials by the
 * region of the unrounded u, and the task gradient plus the warm-up term (wsc = 2/share during
 * warm-up, else 0; §7.3, rule 12) times ∂x̂/∂s and ∂x̂/∂z. x and g are finite here. */
static inline __attribute__((always_inline)) void agg_elem(float x, float g, float s, float zr, float lo, float hi,
                                                           int sym, double wsc, double *as, double *az, int64_t *cin,
                                                           int64_t *cbe)
{
    float u = x / s;
    if (!sym)
        u = u + zr;
    float v = u < lo ? lo : u > hi ? hi : u;
    float q = rintf(v); /* round half to even in the default rounding mode (qnpu__rne) */
    float xh = sym ? q * s : (q - zr) * s;
    int inside = u > lo && u < hi, below = u <= lo;
    float ds = inside ? q - u : below ? lo - zr : hi - zr;
    float dz = inside || sym ? 0.0f : -s;
    double w = (double)g + wsc * ((double)xh - (double)x);
    *as += w * (double)ds;
    *az += w * (double)dz;
    *cin += inside;
    *cbe += below;
}

#define AGG_LANES 8 /* partial sums in a fixed order: the same result for every vector width */

/* Σ over n elements of (g + warm-up term)·∂x̂/∂s and ·∂x̂/∂z, with the §5 case counts; one source
 * for every vector width (QNPU__VEC_CLONES, internal.h). */
QNPU__VEC_CLONES static void aggregate(const qnpu__lq_cfg *cfg, const float *x, const float *g, size_t n, float s,
                      float z, int32_t qmin, int32_t qmax, int sym, double *Gs, double *Gz,
                      qnpu__lq_stats *stats)
{
    float zr = sym ? 0.0f : qnpu__rne(z), lo = (float)qmin, hi = (float)qmax;
    double wsc = cfg->warmup ? 2.0 / (double)cfg->share : 0.0;
    double as[AGG_LANES] = {0}, az[AGG_LANES] = {0};
    int64_t cin[AGG_LANES] = {0}, cbe[AGG_LANES] = {0};
    size_t i = 0;
    for (; i + AGG_LANES <= n; i += AGG_LANES)
        for (int l = 0; l < AGG_LANES; l++)
            agg_elem(x[i + l], g[i + l], s, zr, lo, hi, sym, wsc, &as[l], &az[l], &cin[l], &cbe[l]);
    for (; i < n; i++)
        agg_elem(x[i], g[i], s, zr, lo, hi, sym, wsc, &as[i % AGG_LANES], &az[i % AGG_LANES],
                 &cin[i % AGG_LANES], &cbe[i % AGG_LANES]);
    double sum_s = 0.0, sum_z = 0.0;
    int64_t inside = 0, below = 0;
    for (int l = 0; l < AGG_LANES; l++) {
        sum_s += as[l];
        sum_z += az[l];
        inside += cin[l];
        below += cbe[l];
    }
    *Gs = sum_s;
    *Gz = sym ? 0.0 : sum_z;
    if (stats) {
        stats->inside += inside;
        stats->below += below;
        stats->above += (int64_t)n - inside - below;
    }
}

/* Clamp one aggregated gradient to ±c (c = 0: none) in float32 and add it to *acc. */
static void add_clamped(float *acc, double G, float c, qnpu__lq_stats *stats)
{
    float v = (float)G;
    if (c > 0.0f) {
        if (v > c)
            v = c;
        else if (v < -c)
            v = -c;
        if (stats && v != (float)G)
            stats->clamped++;
    }
    *acc += v;
}

qnpu_status qnpu__lq_backward_tensor(const qnpu__lq_cfg *cfg, const float *x, const float *g, size_t n,
                                     float s, float z, int bits, int sym, float *dx, float *gs,
                                     float *gz, qnpu__lq_stats *stats)
{
    qnpu__lq_cfg def;
    if (!cfg) {
        qnpu__lq_cfg_default(&def);
        cfg = &def;
    }
    int32_t qmin, qmax;
    qnpu_status st = qnpu__qrange(bits, sym, &qmin, &qmax);
    if (st != QNPU_OK)
        return st;
    if ((st = check_cfg(cfg)) != QNPU_OK)
        return st;
    if (!scale_ok(s) || (!sym && !isfinite(z)))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer backward: bad qparams (s %g, z %g)",
                          (double)s, (double)z);
    if (n > 0 && (!x || !g))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer backward: NULL tensor");
    /* ∂x̂/∂x = 1: the input gradient is the upstream gradient (STE, rule 9) */
    if (dx && dx != g && n > 0)
        memmove(dx, g, n * sizeof *dx);
    int64_t bad = first_nonfinite(x, 1, (int64_t)n, (int64_t)n);
    if (bad < 0)
        bad = first_nonfinite(g, 1, (int64_t)n, (int64_t)n);
    if (bad >= 0)
        return qnpu__fail(QNPU_ERR_NUMERIC, "quantizer backward: element %lld of x or g is not "
                          "finite", (long long)bad);
    double Gs, Gz;
    aggregate(cfg, x, g, n, s, z, qmin, qmax, sym, &Gs, &Gz, stats);
    if (gs)
        add_clamped(gs, Gs, cfg->clamp, stats);
    if (gz && !sym)
        add_clamped(gz, Gz, cfg->clamp, stats);
    return QNPU_OK;
}

qnpu_status qnpu__lq_backward_channel(const qnpu__lq_cfg *cfg, const float *x, const float *g,
                                      int64_t rows, int64_t cols, int64_t ld, const float *s,
                                      const float *z, int bits, int sym, float *dx, float *gs,
                                      float *gz, qnpu__lq_stats *stats)
{
    qnpu__lq_cfg def;
    if (!cfg) {
        qnpu__lq_cfg_default(&def);
        cfg = &def;
    }
    int32_t qmin, qmax;
    qnpu_status st = qnpu__qrange(bits, sym, &qmin, &qmax);
    if (st != QNPU_OK)
        return st;
    if ((st = check_cfg(cfg)) != QNPU_OK)
        return st;
    if (rows < 0 || cols < 0 || ld < cols || (rows > 0 && (!x || !g || !s || (!sym && !z))))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer backward: bad per-channel arguments");
    for (int64_t r = 0; r < rows; r++)
        if (!scale_ok(s[r]) || (!sym && !isfinite(z[r])))
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "quantizer backward: row %lld: bad qparams "
                              "(s %g, z %g)", (long long)r, (double)s[r], sym ? 0.0 : (double)z[r]);
    if (dx && dx != g)
        for (int64_t r = 0; r < rows; r++)
            memmove(dx + r * ld, g + r * ld, (size_t)cols * sizeof *dx);
    int64_t bad = first_nonfinite(x, rows, cols, ld);
    if (bad < 0)
        bad = first_nonfinite(g, rows, cols, ld);
    if (bad >= 0)
        return qnpu__fail(QNPU_ERR_NUMERIC, "quantizer backward: element (%lld, %lld) of x or g is "
                          "not finite", (long long)(bad / cols), (long long)(bad % cols));
    for (int64_t r = 0; r < rows; r++) {
        double Gs, Gz;
        float zr = sym ? 0.0f : z[r];
        aggregate(cfg, x + r * ld, g + r * ld, (size_t)cols, s[r], zr, qmin, qmax, sym, &Gs, &Gz,
                  stats);
        if (gs)
            add_clamped(gs + r, Gs, cfg->clamp, stats);
        if (gz && !sym)
            add_clamped(gz + r, Gz, cfg->clamp, stats);
    }
    return QNPU_OK;
}
