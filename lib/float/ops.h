/* ops.h — float32 reference operators of the LLaMA graph (one function per operation). */
#ifndef QNPU_FLOAT_OPS_H
#define QNPU_FLOAT_OPS_H

#include <stdint.h>

/* out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, for T rows of width d (out may alias x). */
void qnpu__rmsnorm(float *out, const float *x, const float *w, int64_t T, int64_t d, double eps);

/* RoPE tables: cos/sin[pos][i] = cos/sin(pos * theta^(-2i/dh)), i < dh/2, computed in double. */
void qnpu__rope_tables(float *cos_t, float *sin_t, int64_t n_pos, int64_t dh, double theta);

/* Rotate T rows of n_heads heads (row stride ld) for positions pos0.. pos0+T-1.
 * half = 0: pairs (2i, 2i+1) (llama2.c, GGUF); half = 1: pairs (i, i + dh/2) (Hugging Face). */
void qnpu__rope(float *x, int64_t T, int64_t ld, int64_t n_heads, int64_t dh, int64_t pos0,
                const float *cos_t, const float *sin_t, int half);

/* In-place softmax of the first n entries of a row. */
void qnpu__softmax(float *x, int64_t n);

/* g[i] = silu(g[i]) * u[i] for n entries. */
void qnpu__swiglu(float *g, const float *u, int64_t n);

/* -log softmax(logits)[target], in double. */
double qnpu__nll(const float *logits, int64_t vocab, int32_t target);

#endif
