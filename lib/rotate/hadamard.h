/* hadamard.h — (random) Hadamard rotations of any order, METHOD.md §4.4–§4.6. Private.
 *
 * A plan of order n is the orthogonal matrix
 *
 *     R = diag(σ) · (A ⊗ H_r) · scale,        n = p·r,  r = 2^k,  σ ∈ {±1}^n
 *
 * where H_r is Sylvester's Hadamard matrix (applied by the FWHT, kernels/fwht.h) and A is a
 * dense p × p factor:
 *   - a ±1 Hadamard matrix (p = 1 for powers of two; Paley I, Paley II, Williamson(172)),
 *     scale = 1/√n;                                                         exact = 1
 *   - the `partial` fallback: A = I_p (p = m, the odd part), scale = 1/√r;  exact = 1
 *   - the `random_orthogonal` fallback: A = Q_p, a seeded Haar-random orthogonal matrix,
 *     scale = 1/√r;                                                         exact = 0
 *
 * Kronecker order. The dense factor is the LEFT factor, as in METHOD.md §4.6 (R = D·(A ⊗ B)
 * with B the Sylvester factor): index a row vector x as a p × r matrix X[i][l] = x[i·r + l];
 * then x·R = vec(Aᵀ·X·H_r)·scale — an FWHT along each contiguous row of length r, then a
 * dense p × p product along i. §4.5 writes the same matrices as H_{2^(a−c)} ⊗ H_N; the two
 * orders differ only by a permutation of rows and columns and both are Hadamard. The
 * description string therefore lists the factors in the order actually used, e.g.
 * "PaleyI(43) ⊗ H_128" for §4.5's "H_128 ⊗ PaleyI(43)" (n = 5632).
 *
 * Choice of A (METHOD.md §4.5): write n = 2^a·m with m odd.
 *   1. m = 1: Sylvester only (p = 1).
 *   2. else the smallest c in [2, a] such that N = 2^c·m <= max_dense_block has a construction,
 *      tried in this order: Paley I (N = q + 1, q ≡ 3 mod 4 prime), Paley II
 *      (N = 2(q + 1), q ≡ 1 mod 4 prime), the built-in order 172 (Williamson, constructed in
 *      code by a deterministic cyclotomic search, see hadamard.c). Then p = N, r = 2^(a−c).
 *   3. else the fallback (rotate.hadamard_fallback):
 *        QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL (0): A = Q_m, r = 2^a. The dense block Q_m is a
 *            non-Sylvester Kronecker factor too, so m > max_dense_block is refused
 *            (QNPU_ERR_UNSUPPORTED; use 'partial' or raise the cap);
 *        QNPU__HAD_FALLBACK_ERROR (1): QNPU_ERR_UNSUPPORTED naming n;
 *        QNPU__HAD_FALLBACK_PARTIAL (2): A = I_m, r = 2^a (mixes only within groups of 2^a).
 *   The numbers 0 and 1 are the indices of rotate.hadamard_fallback's choices in params.def.
 *
 * Signs: σ is drawn from the library PRNG (common/prng.h, stream 0 of `seed`) when
 * random_signs, else all +1. The random_orthogonal block uses stream 1 of the same seed. The
 * same (n, max_dense_block, fallback, seed, random_signs) always gives the same plan. Callers
 * that need different rotations for different layers pass different seeds.
 *
 * Thread safety: building a plan touches no global state; a built plan is read-only, and
 * every function taking a const plan may run concurrently (workspaces are the caller's). */
#ifndef QNPU_ROTATE_HADAMARD_H
#define QNPU_ROTATE_HADAMARD_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

enum {
    QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL = 0,
    QNPU__HAD_FALLBACK_ERROR = 1,
    QNPU__HAD_FALLBACK_PARTIAL = 2
};

/* What the dense factor A is. */
typedef enum qnpu__had_kind {
    QNPU__HAD_SYLVESTER = 0,         /* p = 1, A = [1]                                     */
    QNPU__HAD_PALEY1 = 1,            /* A = Paley I of order q + 1                          */
    QNPU__HAD_PALEY2 = 2,            /* A = Paley II of order 2(q + 1)                      */
    QNPU__HAD_WILLIAMSON = 3,        /* A = the order-172 Williamson matrix built in code   */
    QNPU__HAD_RANDOM_ORTHOGONAL = 4, /* fallback: A = Q_m, Haar-random orthogonal           */
    QNPU__HAD_PARTIAL = 5            /* fallback: A = I_m                                   */
} qnpu__had_kind;

/* A plan. Read-only after qnpu__hadamard_plan; the fields are public to lib/ (the engine reads
 * sigma, a_pm1, p, r and scale to run the integer transform of FORMATS.md §3.9). */
typedef struct qnpu__hadamard {
    int64_t n;          /* order, n = p·r                                                   */
    int64_t p;          /* order of the dense factor A                                     */
    int64_t r;          /* order of the Sylvester factor, a power of two                   */
    qnpu__had_kind kind;
    int64_t q;          /* the Paley prime q, else 0                                        */
    int exact;          /* 1: A has integer entries (±1, or I for partial): x·R/scale is     */
                        /*    exact in integer arithmetic; 0: random_orthogonal             */
    double scale;       /* 1/√n if A is ±1, 1/√r for the fallbacks                          */
    int8_t *sigma;      /* [n] signs ±1                                                     */
    int8_t *a_pm1;      /* [p][p] A's ±1 entries, row-major; NULL for partial and random    */
    double *a;          /* [p][p] A in double, row-major; NULL for partial (identity)        */
    float *at_scaled;   /* [p][p] Aᵀ·scale in float (at_scaled[j·p + i] = A[i][j]·scale),   */
                        /*    used by the float apply; NULL when p = 1 or partial           */
    char desc[64];      /* e.g. "PaleyI(43) ⊗ H_128", "H_64", "Q_43 ⊗ H_2" (UTF-8)          */
} qnpu__hadamard;

/* Build the plan of order n (see above). max_dense_block >= 1 caps p; fallback is one of the
 * QNPU__HAD_FALLBACK_* values. Errors: QNPU_ERR_INVALID_ARG (n < 1, bad cap or fallback),
 * QNPU_ERR_UNSUPPORTED (no construction and fallback = error, or a random block above the
 * cap), QNPU_ERR_NO_MEMORY, QNPU_ERR_INTERNAL (a constructed matrix failed its H·Hᵀ = N·I
 * check). Every message names the order n. */
qnpu_status qnpu__hadamard_plan(int64_t n, int64_t max_dense_block, int fallback, uint64_t seed,
                                int random_signs, qnpu__hadamard **out);
void qnpu__hadamard_free(qnpu__hadamard *h);
/* A deep copy of a plan (online R4 travels from the rotated model to the quantized model). */
qnpu_status qnpu__hadamard_clone(const qnpu__hadamard *h, qnpu__hadamard **out);

/* Recompute the derived fields — desc and at_scaled — from the primary ones (n, p, r, kind, q,
 * scale, a). For code that rebuilds a plan from storage (the plan must come from
 * qnpu__calloc, with sigma/a_pm1/a allocated by qnpu__malloc so qnpu__hadamard_free works).
 * QNPU_OK or QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__hadamard_derive(qnpu__hadamard *h);

/* 1 if the plan is integer-exact (A ±1 or identity), 0 for random_orthogonal. */
int qnpu__hadamard_is_exact(const qnpu__hadamard *h);
/* The human-readable description (owned by the plan). */
const char *qnpu__hadamard_describe(const qnpu__hadamard *h);

/* Floats of workspace qnpu__hadamard_apply_ws needs: n if a dense product is run, else 0. */
size_t qnpu__hadamard_work_floats(const qnpu__hadamard *h);

/* x (rows, n) with row stride ld  ->  x · R, in place, for every row. Per row (METHOD.md §4.6):
 * multiply by σ, FWHT (kernels/fwht.h) along each of the p contiguous runs of length r, then
 * Y[j] = Σ_i A[i][j]·scale · X[i] (rows of length r) in float. Cost O(n·(log r + p)).
 * Float accumulation is used deliberately (this is the online path); the max abs error
 * against the double dense product is ~1e-6 relative for the orders of §4.5. The result is
 * bit-identical on every CPU: the FWHT's AVX2 twin is bit-exact and the dense step's AVX2
 * axpy uses separate multiply and add (no FMA), exactly like its scalar loop.
 * `work` holds qnpu__hadamard_work_floats(h) floats (may be NULL when that is 0). */
void qnpu__hadamard_apply_ws(const qnpu__hadamard *h, float *x, int64_t rows, int64_t ld,
                             float *work);
/* The same, allocating its own workspace: QNPU_OK or QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__hadamard_apply(const qnpu__hadamard *h, float *x, int64_t rows, int64_t ld);

/* Integer transform of an exact plan (FORMATS.md §3.9): x (rows, n) -> x · diag(σ)·(A ⊗ H_r),
 * i.e. x·R / scale, exactly in int64 (the caller folds `scale` into its requantization).
 * Exact while n·max|x| < 2^63. `work` holds n int64 when p > 1 and A is not the identity.
 * Returns QNPU_ERR_INVALID_ARG (and does nothing) for a non-exact plan. */
qnpu_status qnpu__hadamard_apply_i64(const qnpu__hadamard *h, int64_t *x, int64_t rows,
                                     int64_t ld, int64_t *work);

/* One entry R[i][j] in double. */
double qnpu__hadamard_entry(const qnpu__hadamard *h, int64_t i, int64_t j);
/* Rows row0 .. row0 + nrows − 1 of R into out (nrows, n), row-major, in double. */
void qnpu__hadamard_dense_rows(const qnpu__hadamard *h, int64_t row0, int64_t nrows, double *out);
/* The whole n × n matrix R into out (for offline fusion and tests). */
void qnpu__hadamard_dense(const qnpu__hadamard *h, double *R);

/* A seeded Haar-random orthogonal m × m matrix (row-major) into Q: QR of a matrix of i.i.d.
 * N(0, 1) entries (stream `stream` of `seed`) by Householder reflections in double, with the
 * signs of diag(R) folded into Q so the distribution is exactly Haar. Also used for
 * rotate.r1/r2 = random_orthogonal. QNPU_ERR_NO_MEMORY or QNPU_ERR_INVALID_ARG (m < 1). */
qnpu_status qnpu__random_orthogonal(int64_t m, uint64_t seed, uint64_t stream, double *Q);

/* Search helpers, exposed for the tests: 1 if q is prime. */
int qnpu__is_prime(int64_t q);

#endif
