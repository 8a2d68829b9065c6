/* gemm_f32.c — the one entry point for float GEMM; everything float goes through BLIS here,
 * so BLIS stays swappable (and mockable) in a single file. */
#include <blis.h>

#include "../internal.h"

/* C (m,n) = alpha * A (m,k) @ op(B) + beta * C; row-major, leading dimensions lda/ldb/ldc.
 * transb = 1: B is stored (n,k), e.g. a weight [out][in]; transb = 0: B is stored (k,n). */
/* Below this many multiply-adds a product runs on one thread: waking BLIS's OpenMP team costs
 * more than it saves, and far more when the cores are busy (idle OpenMP workers spin). */
#define SMALL_GEMM (1 << 22)

void qnpu__sgemm_ex(int threads, int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                    int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if ((double)m * (double)n * (double)k < SMALL_GEMM)
        threads = 1;
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(threads > 0 ? threads : 1, &rntm);
    bli_sgemm_ex(transa ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, transb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 (dim_t)m, (dim_t)n, (dim_t)k, &alpha, (float *)a, (inc_t)lda, 1, (float *)b, (inc_t)ldb,
                 1, &beta, c, (inc_t)ldc, 1, NULL, &rntm);
}

void qnpu__sgemm(int threads, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, int transb, float beta, float *c,
                 int64_t ldc)
{
    qnpu__sgemm_ex(threads, 0, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* y (n) = W (n,k) x (k) + beta y: the single-token (decode) product. sgemm repacks all of W on
 * every call; gemv streams it once. */
void qnpu__sgemv(int threads, int64_t n, int64_t k, const float *W, int64_t ldw, const float *x, float beta,
                 float *y)
{
    if (n <= 0)
        return;
    float one = 1.0f;
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(threads > 0 ? threads : 1, &rntm);
    bli_sgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)n, (dim_t)k, &one, (float *)W, (inc_t)ldw, 1,
                 (float *)x, 1, &beta, y, 1, NULL, &rntm);
}
