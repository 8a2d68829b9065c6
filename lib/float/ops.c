/* ops.c — float32 reference operators (see ops.h). Reductions accumulate in double so the
 * float engine tracks a float64 reference closely; every output is float32. */
#include <math.h>

#include "ops.h"

void qnpu__rmsnorm(float *out, const float *x, const float *w, int64_t T, int64_t d, double eps)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * d;
        float *o = out + t * d;
        double ss = 0;
        for (int64_t i = 0; i < d; i++)
            ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)d + eps));
        for (int64_t i = 0; i < d; i++)
            o[i] = w[i] * (inv * xr[i]);
    }
}

void qnpu__rope_tables(float *cos_t, float *sin_t, int64_t n_pos, int64_t dh, double theta)
{
    int64_t half = dh / 2;
    for (int64_t p = 0; p < n_pos; p++)
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)p * pow(theta, -2.0 * (double)i / (double)dh);
            cos_t[p * half + i] = (float)cos(ang);
            sin_t[p * half + i] = (float)sin(ang);
        }
}

void qnpu__rope(float *x, int64_t T, int64_t ld, int64_t n_heads, int64_t dh, int64_t pos0,
                const float *cos_t, const float *sin_t, int half)
{
    int64_t hd = dh / 2;
    for (int64_t t = 0; t < T; t++) {
        const float *c = cos_t + (pos0 + t) * hd, *s = sin_t + (pos0 + t) * hd;
        for (int64_t h = 0; h < n_heads; h++) {
            float *v = x + t * ld + h * dh;
            for (int64_t i = 0; i < hd; i++) {
                int64_t a = half ? i : 2 * i, b = half ? i + hd : 2 * i + 1;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * c[i] - x1 * s[i];
                v[b] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

void qnpu__softmax(float *x, int64_t n)
{
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

void qnpu__swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

double qnpu__nll(const float *logits, int64_t vocab, int32_t target)
{
    double mx = logits[0];
    for (int64_t i = 1; i < vocab; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0;
    for (int64_t i = 0; i < vocab; i++)
        sum += exp((double)logits[i] - mx);
    return mx + log(sum) - (double)logits[target];
}
