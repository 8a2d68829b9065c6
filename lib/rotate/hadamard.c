/* hadamard.c — Hadamard matrices of any order and their fast application (METHOD.md §4.5,
 * §4.6; the plan and its conventions are described in hadamard.h).
 *
 * Constructions, all built here from their definitions (no tables are copied):
 *   - Sylvester:  H_1 = [1], H_2k = [[H_k, H_k], [H_k, −H_k]], i.e. H[i][j] = (−1)^popcount(i&j);
 *   - Paley I:    q ≡ 3 (mod 4) prime, order q + 1;
 *   - Paley II:   q ≡ 1 (mod 4) prime, order 2(q + 1);
 *   - Williamson: order 4·43 = 172 from four symmetric circulant ±1 matrices found by a
 *                 deterministic search over cyclotomic classes (see williamson_cyclotomic).
 * Every ±1 matrix is checked against H·Hᵀ = N·I in exact integer arithmetic when it is built.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/prng.h"
#include "../kernels/fwht.h"
#include "hadamard.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#  define QNPU__HAD_X86 1
#  include <immintrin.h>
#endif

/* ---- small number theory ---------------------------------------------------------------- */

int qnpu__is_prime(int64_t q)
{
    if (q < 2)
        return 0;
    if (q % 2 == 0)
        return q == 2;
    for (int64_t d = 3; d * d <= q; d += 2)
        if (q % d == 0)
            return 0;
    return 1;
}

/* Quadratic character of GF(q), q an odd prime: chi[0] = 0, chi[x] = +1 if x is a non-zero
 * square mod q, −1 otherwise. Filled by squaring every x in 1..(q−1)/2 (x and q−x have the
 * same square, so this reaches each of the (q−1)/2 non-zero squares). */
static void quadratic_character(int64_t q, int8_t *chi)
{
    for (int64_t x = 0; x < q; x++)
        chi[x] = -1;
    chi[0] = 0;
    for (int64_t x = 1; x <= (q - 1) / 2; x++)
        chi[(x * x) % q] = 1;
}

/* (−1)^popcount(x): the Sylvester entry H[l][t] is parity_sign(l & t). */
static int parity_sign(uint64_t x)
{
    x ^= x >> 32;
    x ^= x >> 16;
    x ^= x >> 8;
    x ^= x >> 4;
    x ^= x >> 2;
    x ^= x >> 1;
    return (x & 1) ? -1 : 1;
}

/* ---- verification ----------------------------------------------------------------------- */

/* 1 if H (N × N, row-major) has entries ±1 and H·Hᵀ = N·I exactly (dot products in int64). */
static int is_hadamard(const int8_t *H, int64_t N)
{
    for (int64_t k = 0; k < N * N; k++)
        if (H[k] != 1 && H[k] != -1)
            return 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = i; j < N; j++) {
            const int8_t *a = H + i * N, *b = H + j * N;
            int64_t dot = 0;
            for (int64_t k = 0; k < N; k++)
                dot += a[k] * b[k];
            if (dot != (i == j ? N : 0))
                return 0;
        }
    return 1;
}

/* ---- Paley constructions ---------------------------------------------------------------- */

/* Paley I, order N = q + 1, q ≡ 3 (mod 4) prime. With the Jacobsthal matrix Q[i][j] = χ(j − i)
 * (antisymmetric because χ(−1) = −1 for q ≡ 3 mod 4) and the skew "core"
 *     S = [[0, 1ᵀ], [−1, Q]],
 * H = I + S. S·Sᵀ = q·I (Q·Qᵀ = q·I − J and Q·1 = 0), and S is skew, so
 * H·Hᵀ = I + S·Sᵀ = (q + 1)·I. Index 0 is the bordering point "∞", index 1 + x is x ∈ GF(q). */
static void paley1(int64_t q, const int8_t *chi, int8_t *H)
{
    int64_t N = q + 1;
    H[0] = 1;
    for (int64_t j = 0; j < q; j++) {
        H[1 + j] = 1;       /* first row: 1 on the diagonal plus 1ᵀ */
        H[(1 + j) * N] = -1; /* first column: −1                    */
    }
    for (int64_t i = 0; i < q; i++)
        for (int64_t j = 0; j < q; j++)
            H[(1 + i) * N + 1 + j] = (int8_t)(i == j ? 1 : chi[((j - i) % q + q) % q]);
}

/* Paley II, order N = 2(q + 1), q ≡ 1 (mod 4) prime. With the symmetric Jacobsthal matrix
 * (χ(−1) = +1) the bordered matrix C = [[0, 1ᵀ], [1, Q]] is a symmetric conference matrix:
 * zero diagonal, ±1 elsewhere, C·Cᵀ = q·I. Then
 *     H = C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]]
 * has entries ±1 (C's zeros sit exactly where I is 1) and H·Hᵀ = 2(q + 1)·I: the cross terms
 * vanish because C is symmetric and [[1,1],[1,−1]]·[[1,−1],[−1,−1]]ᵀ is skew. */
static void paley2(int64_t q, const int8_t *chi, int8_t *H)
{
    int64_t M = q + 1, N = 2 * M;
    static const int8_t K1[2][2] = {{1, 1}, {1, -1}};
    static const int8_t K2[2][2] = {{1, -1}, {-1, -1}};
    for (int64_t u = 0; u < M; u++)
        for (int64_t v = 0; v < M; v++) {
            int c;
            if (u == 0 || v == 0)
                c = (u == v) ? 0 : 1;
            else
                c = chi[((v - u) % q + q) % q];
            for (int s = 0; s < 2; s++)
                for (int t = 0; t < 2; t++)
                    H[(2 * u + s) * N + 2 * v + t] =
                        (int8_t)(c * K1[s][t] + (u == v ? K2[s][t] : 0));
        }
}

/* ---- Williamson construction of order 4m (used for m = 43, order 172) -------------------
 *
 * Williamson matrices are four symmetric circulant ±1 matrices A, B, C, D of order m with
 *     A² + B² + C² + D² = 4m·I.
 * Circulants commute, so the Williamson array
 *     W = [[ A,  B,  C,  D],
 *          [−B,  A, −D,  C],
 *          [−C,  D,  A, −B],
 *          [−D, −C,  B,  A]]
 * satisfies W·Wᵀ = (A² + B² + C² + D²) ⊗ I_4 = 4m·I: every off-diagonal block of W·Wᵀ is a
 * sum like −AB + BA − CD + DC, which cancels.
 *
 * For a circulant X with first row x, X² = X·Xᵀ has entries PAF_x(s) = Σ_i x_i·x_{i+s}
 * (periodic autocorrelation, indices mod m). The condition is therefore
 *     PAF_a(s) + PAF_b(s) + PAF_c(s) + PAF_d(s) = 0   for every shift s = 1 .. m−1.
 *
 * Cyclotomic restriction (as in Baumert–Hall's searches). For prime m, (Z/m)^* is cyclic of
 * order m−1 with a primitive root g. Let K = ⟨g^e⟩ be its subgroup of order k = (m−1)/e with
 * k even, so −1 ∈ K. Take only sequences x constant on each coset g^c·K (c = 0..e−1), with a
 * free value x_0: they are symmetric (x_{−i} = x_i since −1 ∈ K), and their PAF is constant
 * on the cosets too (PAF(u·s) = PAF(s) for u ∈ K, by re-indexing i -> u·i). So a sequence is
 * e + 1 bits, and the condition is e equations, one per coset representative g^c.
 * Negating a sequence does not change its PAF, so x_0 = +1 is fixed: 2^e sequences.
 *
 * Search: meet in the middle. For every unordered pair {a, b} (a ≤ b) store the vector
 * PAF_a + PAF_b over the e representatives, sort these vectors, and for each pair {a, b} in
 * increasing (a, b) order look up the negated vector among the pairs {c, d}. The first hit is
 * the answer: the search is exhaustive within the class, deterministic and needs no seed.
 * For m = 43 with k = 6 (e = 7): 128 sequences, 8256 pairs — well under a millisecond. */

#define QNPU__WMAX_E 12 /* largest number of cosets the search handles */

typedef struct wpair {
    int16_t v[QNPU__WMAX_E]; /* PAF_a + PAF_b at the coset representatives (unused: 0) */
    uint16_t a, b;           /* the two sequence masks, a <= b                          */
} wpair;

static int wpair_cmp_vec(const int16_t *x, const int16_t *y)
{
    for (int c = 0; c < QNPU__WMAX_E; c++)
        if (x[c] != y[c])
            return x[c] < y[c] ? -1 : 1;
    return 0;
}

/* total order: the vector, then (a, b), so the sort result does not depend on qsort */
static int wpair_cmp(const void *p, const void *q)
{
    const wpair *x = p, *y = q;
    int c = wpair_cmp_vec(x->v, y->v);
    if (c)
        return c;
    if (x->a != y->a)
        return x->a < y->a ? -1 : 1;
    if (x->b != y->b)
        return x->b < y->b ? -1 : 1;
    return 0;
}

static int64_t primitive_root(int64_t m)
{
    for (int64_t g = 2; g < m; g++) {
        int64_t x = 1, ord = 0;
        do {
            x = x * g % m;
            ord++;
        } while (x != 1);
        if (ord == m - 1)
            return g;
    }
    return 1; /* m = 2 */
}

/* The ±1 sequence of length m for `mask`: x_0 = +1, x_i = bit coset(i) of mask. */
static void coset_sequence(int64_t m, const int *coset, unsigned mask, int8_t *x)
{
    x[0] = 1;
    for (int64_t i = 1; i < m; i++)
        x[i] = (int8_t)(((mask >> coset[i]) & 1) ? -1 : 1);
}

static int paf(const int8_t *x, int64_t m, int64_t s)
{
    int acc = 0;
    for (int64_t i = 0; i < m; i++)
        acc += x[i] * x[(i + s) % m];
    return acc;
}

/* Find Williamson sequences (first rows of A, B, C, D) of prime order m, constant on the
 * cosets of the subgroup of order k; seqs receives 4 rows of m. Returns 1 if found, 0 if the
 * class holds none, −1 on allocation failure. */
static int williamson_cyclotomic(int64_t m, int64_t k, int8_t *seqs)
{
    int64_t e = (m - 1) / k;
    if (!qnpu__is_prime(m) || (m - 1) % k != 0 || k % 2 != 0 || e < 1 || e > QNPU__WMAX_E)
        return 0;
    int64_t g = primitive_root(m);
    unsigned nseq = 1u << e;
    size_t npair = (size_t)nseq * (nseq + 1) / 2;
    int *coset = qnpu__malloc((size_t)m * sizeof *coset);
    int8_t *x = qnpu__malloc((size_t)m);
    int16_t *pafs = qnpu__malloc((size_t)nseq * QNPU__WMAX_E * sizeof *pafs);
    wpair *pairs = qnpu__malloc(npair * sizeof *pairs);
    int found = -1;
    if (!coset || !x || !pafs || !pairs)
        goto done;

    /* coset index of every non-zero residue: g^t lies in coset t mod e; reps[c] = g^c */
    int64_t reps[QNPU__WMAX_E];
    int64_t pw = 1;
    coset[0] = -1;
    for (int64_t t = 0; t < m - 1; t++) {
        coset[pw] = (int)(t % e);
        if (t < e)
            reps[t] = pw;
        pw = pw * g % m;
    }

    /* PAF of every candidate at the coset representatives */
    for (unsigned s = 0; s < nseq; s++) {
        coset_sequence(m, coset, s, x);
        for (int c = 0; c < QNPU__WMAX_E; c++)
            pafs[s * QNPU__WMAX_E + c] = (int16_t)(c < e ? paf(x, m, reps[c]) : 0);
    }

    /* all unordered pairs with their summed PAF vectors, sorted */
    size_t np = 0;
    for (unsigned a = 0; a < nseq; a++)
        for (unsigned b = a; b < nseq; b++, np++) {
            pairs[np].a = (uint16_t)a;
            pairs[np].b = (uint16_t)b;
            for (int c = 0; c < QNPU__WMAX_E; c++)
                pairs[np].v[c] = (int16_t)(pafs[a * QNPU__WMAX_E + c] + pafs[b * QNPU__WMAX_E + c]);
        }
    qsort(pairs, npair, sizeof *pairs, wpair_cmp);

    /* for each {a, b} in increasing order, the first {c, d} (in sorted order) with the
     * negated vector */
    found = 0;
    for (unsigned a = 0; a < nseq && !found; a++)
        for (unsigned b = a; b < nseq && !found; b++) {
            int16_t want[QNPU__WMAX_E];
            for (int c = 0; c < QNPU__WMAX_E; c++)
                want[c] = (int16_t)-(pafs[a * QNPU__WMAX_E + c] + pafs[b * QNPU__WMAX_E + c]);
            size_t lo = 0, hi = npair; /* lower bound of want */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (wpair_cmp_vec(pairs[mid].v, want) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < npair && wpair_cmp_vec(pairs[lo].v, want) == 0) {
                unsigned masks[4] = {a, b, pairs[lo].a, pairs[lo].b};
                for (int w = 0; w < 4; w++)
                    coset_sequence(m, coset, masks[w], seqs + w * m);
                found = 1;
            }
        }

    /* the restriction argument above is checked, not trusted: every shift must cancel */
    for (int64_t s = 1; found && s < m; s++) {
        int tot = 0;
        for (int w = 0; w < 4; w++)
            tot += paf(seqs + w * m, m, s);
        if (tot != 0)
            found = 0;
    }
done:
    qnpu__free(coset);
    qnpu__free(x);
    qnpu__free(pafs);
    qnpu__free(pairs);
    return found;
}

/* Assemble the Williamson array (see above) from the four first rows: block (bi, bj) of W is
 * sign[bi][bj] · circulant(seqs[which[bi][bj]]), circulant(x)[u][v] = x[(v − u) mod m]. */
static void williamson_array(int64_t m, const int8_t *seqs, int8_t *H)
{
    static const int which[4][4] = {{0, 1, 2, 3}, {1, 0, 3, 2}, {2, 3, 0, 1}, {3, 2, 1, 0}};
    static const int sign[4][4] = {{1, 1, 1, 1}, {-1, 1, -1, 1}, {-1, 1, 1, -1}, {-1, -1, 1, 1}};
    int64_t N = 4 * m;
    for (int bi = 0; bi < 4; bi++)
        for (int bj = 0; bj < 4; bj++) {
            const int8_t *x = seqs + which[bi][bj] * m;
            for (int64_t u = 0; u < m; u++)
                for (int64_t v = 0; v < m; v++)
                    H[(bi * m + u) * N + bj * m + v] =
                        (int8_t)(sign[bi][bj] * x[((v - u) % m + m) % m]);
        }
}

/* The built-in order-172 matrix: Williamson with m = 43, cosets of the order-6 subgroup. */
static qnpu_status williamson172(int8_t *H)
{
    int8_t seqs[4 * 43];
    int r = williamson_cyclotomic(43, 6, seqs);
    if (r < 0)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "hadamard: order 172: out of memory");
    if (r == 0)
        return qnpu__fail(QNPU_ERR_INTERNAL, "hadamard: order 172: Williamson search found nothing");
    williamson_array(43, seqs, H);
    return QNPU_OK;
}

/* ---- Haar-random orthogonal matrices ----------------------------------------------------- */

qnpu_status qnpu__random_orthogonal(int64_t m, uint64_t seed, uint64_t stream, double *Q)
{
    if (m < 1 || !Q)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "random orthogonal: bad order %lld", (long long)m);
    size_t mm;
    if (!qnpu__mul_ok((size_t)m, (size_t)m, &mm))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "random orthogonal: order %lld is too large", (long long)m);
    /* W holds G column by column (W[c·m + i] = G[i][c]) so reflections run on contiguous
     * memory; the Householder vectors overwrite the part of column k below the diagonal. */
    double *W = qnpu__malloc(mm * sizeof *W);
    double *Qc = qnpu__malloc(mm * sizeof *Qc);
    double *beta = qnpu__malloc((size_t)m * sizeof *beta);
    double *rdiag = qnpu__malloc((size_t)m * sizeof *rdiag);
    if (!W || !Qc || !beta || !rdiag) {
        qnpu__free(W);
        qnpu__free(Qc);
        qnpu__free(beta);
        qnpu__free(rdiag);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "random orthogonal: order %lld: out of memory", (long long)m);
    }
    qnpu__prng g;
    qnpu__prng_seed_stream(&g, seed, stream);
    for (int64_t i = 0; i < m; i++) /* G row by row from the stream */
        for (int64_t c = 0; c < m; c++)
            W[c * m + i] = qnpu__prng_gauss(&g);

    /* Householder QR: for column k, x = G[k.., k]; alpha = −sign(x_0)·‖x‖ (no cancellation in
     * v_0 = x_0 − alpha); the reflector P_k = I − beta·v·vᵀ with beta = 2/(vᵀv) maps x to
     * alpha·e_1, so R[k][k] = alpha. Apply P_k to the remaining columns. */
    for (int64_t k = 0; k < m; k++) {
        double *v = W + k * m;
        double norm2 = 0;
        for (int64_t i = k; i < m; i++)
            norm2 += v[i] * v[i];
        double norm = sqrt(norm2);
        double alpha = v[k] >= 0 ? -norm : norm;
        v[k] -= alpha;
        double vv = 0;
        for (int64_t i = k; i < m; i++)
            vv += v[i] * v[i];
        beta[k] = vv > 0 ? 2.0 / vv : 0.0; /* x = 0 (probability 0): P_k = I */
        rdiag[k] = alpha;
        for (int64_t c = k + 1; c < m; c++) {
            double *col = W + c * m, d = 0;
            for (int64_t i = k; i < m; i++)
                d += v[i] * col[i];
            d *= beta[k];
            for (int64_t i = k; i < m; i++)
                col[i] -= d * v[i];
        }
    }
    /* Q = P_0·P_1·…·P_{m−1}: column j of Q is P_0(P_1(…P_{m−1} e_j)). */
    memset(Qc, 0, mm * sizeof *Qc);
    for (int64_t j = 0; j < m; j++)
        Qc[j * m + j] = 1.0;
    for (int64_t k = m - 1; k >= 0; k--) {
        const double *v = W + k * m;
        for (int64_t j = 0; j < m; j++) {
            double *col = Qc + j * m, d = 0;
            for (int64_t i = k; i < m; i++)
                d += v[i] * col[i];
            d *= beta[k];
            for (int64_t i = k; i < m; i++)
                col[i] -= d * v[i];
        }
    }
    /* G = Q·R is unique once diag(R) > 0: replace Q by Q·diag(sign(R_kk)). With that choice
     * Q is exactly Haar-distributed (Mezzadri, 2007). Store row-major. */
    for (int64_t j = 0; j < m; j++) {
        double s = rdiag[j] < 0 ? -1.0 : 1.0;
        for (int64_t i = 0; i < m; i++)
            Q[i * m + j] = s * Qc[j * m + i];
    }
    qnpu__free(W);
    qnpu__free(Qc);
    qnpu__free(beta);
    qnpu__free(rdiag);
    return QNPU_OK;
}

/* max |Q·Qᵀ − I| for a row-major m × m matrix */
static double orthogonality_error(const double *Q, int64_t m)
{
    double worst = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = i; j < m; j++) {
            double d = 0;
            for (int64_t k = 0; k < m; k++)
                d += Q[i * m + k] * Q[j * m + k];
            d = fabs(d - (i == j ? 1.0 : 0.0));
            if (d > worst)
                worst = d;
        }
    return worst;
}

/* ---- the plan ---------------------------------------------------------------------------- */

void qnpu__hadamard_free(qnpu__hadamard *h)
{
    if (!h)
        return;
    qnpu__free(h->sigma);
    qnpu__free(h->a_pm1);
    qnpu__free(h->a);
    qnpu__free(h->at_scaled);
    qnpu__free(h);
}

/* The description, factors in the order of the Kronecker product actually used (A ⊗ H_r). */
static void describe(qnpu__hadamard *h)
{
    char aname[40] = "";
    switch (h->kind) {
    case QNPU__HAD_SYLVESTER: break;
    case QNPU__HAD_PALEY1: snprintf(aname, sizeof aname, "PaleyI(%lld)", (long long)h->q); break;
    case QNPU__HAD_PALEY2: snprintf(aname, sizeof aname, "PaleyII(%lld)", (long long)h->q); break;
    case QNPU__HAD_WILLIAMSON: snprintf(aname, sizeof aname, "Williamson(%lld)", (long long)h->p); break;
    case QNPU__HAD_RANDOM_ORTHOGONAL: snprintf(aname, sizeof aname, "Q_%lld", (long long)h->p); break;
    case QNPU__HAD_PARTIAL: snprintf(aname, sizeof aname, "I_%lld", (long long)h->p); break;
    }
    if (!aname[0])
        snprintf(h->desc, sizeof h->desc, "H_%lld", (long long)h->r);
    else if (h->r == 1)
        snprintf(h->desc, sizeof h->desc, "%s", aname);
    else
        snprintf(h->desc, sizeof h->desc, "%s \xe2\x8a\x97 H_%lld", aname, (long long)h->r); /* ⊗ */
}

/* A deep copy of a Hadamard plan (online R4 travels with the quantized model). */
qnpu_status qnpu__hadamard_clone(const qnpu__hadamard *h, qnpu__hadamard **out)
{
    qnpu__hadamard *c = qnpu__calloc(1, sizeof *c);
    if (!c)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "hadamard: order %lld: out of memory", (long long)h->n);
    *c = *h;
    c->sigma = NULL, c->a_pm1 = NULL, c->a = NULL, c->at_scaled = NULL;
    size_t pp = (size_t)(h->p * h->p);
    int ok = (c->sigma = qnpu__malloc((size_t)h->n)) != NULL;
    if (ok)
        memcpy(c->sigma, h->sigma, (size_t)h->n);
    if (ok && h->a_pm1 && (ok = (c->a_pm1 = qnpu__malloc(pp)) != NULL))
        memcpy(c->a_pm1, h->a_pm1, pp);
    if (ok && h->a && (ok = (c->a = qnpu__malloc(pp * sizeof(double))) != NULL))
        memcpy(c->a, h->a, pp * sizeof(double));
    if (ok && h->at_scaled && (ok = (c->at_scaled = qnpu__malloc(pp * sizeof(float))) != NULL))
        memcpy(c->at_scaled, h->at_scaled, pp * sizeof(float));
    if (!ok) {
        qnpu__hadamard_free(c);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "hadamard: order %lld: out of memory", (long long)h->n);
    }
    *out = c;
    return QNPU_OK;
}

qnpu_status qnpu__hadamard_derive(qnpu__hadamard *h)
{
    describe(h);
    int64_t p = h->p;
    qnpu__free(h->at_scaled);
    h->at_scaled = NULL;
    /* the float apply reads Aᵀ·scale, so that row j of it is contiguous over i */
    if (p > 1 && h->a) {
        h->at_scaled = qnpu__malloc((size_t)p * (size_t)p * sizeof *h->at_scaled);
        if (!h->at_scaled)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "hadamard: order %lld: out of memory", (long long)h->n);
        for (int64_t i = 0; i < p; i++)
            for (int64_t j = 0; j < p; j++)
                h->at_scaled[j * p + i] = (float)(h->a[i * p + j] * h->scale);
    }
    return QNPU_OK;
}

/* Which ±1 construction exists for order N (not a power of two), or −1. Order of preference:
 * Paley I, Paley II, the built-in 172 — so N = 12 is PaleyI(11), as in the §4.5 table. */
static int construction_for(int64_t N, int64_t *q)
{
    if (qnpu__is_prime(N - 1) && (N - 1) % 4 == 3) {
        *q = N - 1;
        return QNPU__HAD_PALEY1;
    }
    if (N % 2 == 0 && qnpu__is_prime(N / 2 - 1) && (N / 2 - 1) % 4 == 1) {
        *q = N / 2 - 1;
        return QNPU__HAD_PALEY2;
    }
    if (N == 172) {
        *q = 0;
        return QNPU__HAD_WILLIAMSON;
    }
    return -1;
}

/* Fill h->a_pm1 (p × p) for a ±1 kind and check it. */
static qnpu_status build_pm1(qnpu__hadamard *h)
{
    int64_t p = h->p;
    qnpu_status st = QNPU_OK;
    if (h->kind == QNPU__HAD_SYLVESTER) {
        h->a_pm1[0] = 1;
        return QNPU_OK;
    }
    if (h->kind == QNPU__HAD_PALEY1 || h->kind == QNPU__HAD_PALEY2) {
        int8_t *chi = qnpu__malloc((size_t)h->q);
        if (!chi)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "hadamard: order %lld: out of memory", (long long)h->n);
        quadratic_character(h->q, chi);
        if (h->kind == QNPU__HAD_PALEY1)
            paley1(h->q, chi, h->a_pm1);
        else
            paley2(h->q, chi, h->a_pm1);
        qnpu__free(chi);
    } else if (h->kind == QNPU__HAD_WILLIAMSON) {
        st = williamson172(h->a_pm1);
        if (st != QNPU_OK) {
            qnpu__error_prefix("hadamard: order %lld", (long long)h->n);
            return st;
        }
    }
    if (!is_hadamard(h->a_pm1, p))
        return qnpu__fail(QNPU_ERR_INTERNAL, "hadamard: order %lld: the %s factor fails H·Hᵀ = %lld·I",
                          (long long)h->n, h->desc, (long long)p);
    return QNPU_OK;
}

qnpu_status qnpu__hadamard_plan(int64_t n, int64_t max_dense_block, int fallback, uint64_t seed,
                                int random_signs, qnpu__hadamard **out)
{
    if (!out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "hadamard: NULL output");
    *out = NULL;
    if (n < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "hadamard: order %lld must be positive", (long long)n);
    if (max_dense_block < 1)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "hadamard: order %lld: max_dense_block %lld must be >= 1",
                          (long long)n, (long long)max_dense_block);
    if (fallback < QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL || fallback > QNPU__HAD_FALLBACK_PARTIAL)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "hadamard: order %lld: unknown fallback %d", (long long)n,
                          fallback);

    /* n = 2^a · m, m odd */
    int a = 0;
    int64_t m = n;
    while (m % 2 == 0) {
        m /= 2;
        a++;
    }

    int kind = -1;
    int64_t p = 1, q = 0;
    if (m == 1) {
        kind = QNPU__HAD_SYLVESTER;
    } else {
        /* the smallest N = 2^c·m (2 <= c <= a) under the cap with a construction */
        for (int c = 2; c <= a; c++) {
            int64_t N = m << c;
            if (N > max_dense_block)
                break;
            int k = construction_for(N, &q);
            if (k >= 0) {
                kind = k;
                p = N;
                break;
            }
        }
        if (kind < 0) {
            if (fallback == QNPU__HAD_FALLBACK_ERROR)
                return qnpu__fail(QNPU_ERR_UNSUPPORTED,
                                  "hadamard: no Hadamard construction of order %lld = 2^%d·%lld with a "
                                  "dense block <= %lld (rotate.hadamard_fallback = error)",
                                  (long long)n, a, (long long)m, (long long)max_dense_block);
            if (fallback == QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL && m > max_dense_block)
                return qnpu__fail(QNPU_ERR_UNSUPPORTED,
                                  "hadamard: order %lld = 2^%d·%lld has no Hadamard construction and its "
                                  "random orthogonal block %lld exceeds rotate.max_dense_block = %lld "
                                  "(raise it or use the 'partial' fallback)",
                                  (long long)n, a, (long long)m, (long long)m, (long long)max_dense_block);
            kind = fallback == QNPU__HAD_FALLBACK_PARTIAL ? QNPU__HAD_PARTIAL : QNPU__HAD_RANDOM_ORTHOGONAL;
            p = m;
            q = 0;
        }
    }

    qnpu__hadamard *h = qnpu__calloc(1, sizeof *h);
    if (!h)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "hadamard: order %lld: out of memory", (long long)n);
    h->n = n;
    h->p = p;
    h->r = n / p;
    h->kind = (qnpu__had_kind)kind;
    h->q = q;
    h->exact = kind != QNPU__HAD_RANDOM_ORTHOGONAL;
    h->scale = 1.0 / sqrt((double)(kind == QNPU__HAD_RANDOM_ORTHOGONAL || kind == QNPU__HAD_PARTIAL ? h->r : n));

    describe(h);

    qnpu_status st = QNPU_OK;
    size_t pp = (size_t)p * (size_t)p;
    h->sigma = qnpu__malloc((size_t)n);
    if (!h->sigma)
        goto nomem;
    if (random_signs) {
        qnpu__prng g;
        qnpu__prng_seed_stream(&g, seed, 0);
        for (int64_t i = 0; i < n; i++)
            h->sigma[i] = (int8_t)qnpu__prng_sign(&g);
    } else {
        memset(h->sigma, 1, (size_t)n);
    }

    if (h->kind == QNPU__HAD_PARTIAL) {
        /* A = I: no dense data at all */
    } else if (h->kind == QNPU__HAD_RANDOM_ORTHOGONAL) {
        h->a = qnpu__malloc(pp * sizeof *h->a);
        if (!h->a)
            goto nomem;
        st = qnpu__random_orthogonal(p, seed, 1, h->a);
        if (st != QNPU_OK) {
            qnpu__error_prefix("hadamard: order %lld", (long long)n);
            goto fail;
        }
        double err = orthogonality_error(h->a, p);
        if (!(err < 1e-9)) {
            st = qnpu__fail(QNPU_ERR_INTERNAL, "hadamard: order %lld: random orthogonal block %lld has "
                            "|Q·Qᵀ − I| = %g", (long long)n, (long long)p, err);
            goto fail;
        }
    } else {
        h->a_pm1 = qnpu__malloc(pp);
        h->a = qnpu__malloc(pp * sizeof *h->a);
        if (!h->a_pm1 || !h->a)
            goto nomem;
        st = build_pm1(h);
        if (st != QNPU_OK)
            goto fail;
        for (size_t k = 0; k < pp; k++)
            h->a[k] = h->a_pm1[k];
    }

    if ((st = qnpu__hadamard_derive(h)) != QNPU_OK)
        goto fail;
    *out = h;
    return QNPU_OK;

nomem:
    st = qnpu__fail(QNPU_ERR_NO_MEMORY, "hadamard: order %lld: out of memory", (long long)n);
fail:
    qnpu__hadamard_free(h);
    return st;
}

int qnpu__hadamard_is_exact(const qnpu__hadamard *h)
{
    return h && h->exact;
}

const char *qnpu__hadamard_describe(const qnpu__hadamard *h)
{
    return h ? h->desc : "";
}

/* ---- application ------------------------------------------------------------------------- */

size_t qnpu__hadamard_work_floats(const qnpu__hadamard *h)
{
    return (h->p > 1 && h->at_scaled) ? (size_t)h->n : 0;
}

/* y (len,) += c · x (len,), every element computed as fl(y + fl(c·x)): no fused multiply-add
 * (the library builds as ISO C, where GCC does not contract), so the AVX2 version below and
 * this loop produce identical bits and a plan gives the same float result on every CPU. */
static void axpy_ref(float *restrict y, float c, const float *restrict x, int64_t len)
{
    for (int64_t l = 0; l < len; l++)
        y[l] += c * x[l];
}

#ifdef QNPU__HAD_X86
__attribute__((target("avx2"))) static void axpy_avx2(float *restrict y, float c,
                                                      const float *restrict x, int64_t len)
{
    __m256 vc = _mm256_set1_ps(c);
    int64_t l = 0;
    for (; l + 8 <= len; l += 8)
        _mm256_storeu_ps(y + l, _mm256_add_ps(_mm256_loadu_ps(y + l),
                                              _mm256_mul_ps(vc, _mm256_loadu_ps(x + l))));
    for (; l < len; l++)
        y[l] += c * x[l];
}
#else
#  define axpy_avx2 axpy_ref
#endif

/* Small r: Y[j][l] = Σ_i at[j][i]·X[i][l] as dot products over i, eight outputs j at a time
 * so that eight independent accumulation chains run in parallel. Each output still adds its
 * products in increasing i, exactly as the axpy form does. */
static void dense_small_r(const float *at, const float *v, float *y, int64_t p, int64_t r)
{
    for (int64_t l = 0; l < r; l++) {
        int64_t j = 0;
        for (; j + 8 <= p; j += 8) {
            const float *a0 = at + j * p;
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t i = 0; i < p; i++) {
                const float xi = v[i * r + l];
                for (int k = 0; k < 8; k++)
                    acc[k] += a0[k * p + i] * xi;
            }
            for (int k = 0; k < 8; k++)
                y[(j + k) * r + l] = acc[k];
        }
        for (; j < p; j++) {
            float acc = 0;
            for (int64_t i = 0; i < p; i++)
                acc += at[j * p + i] * v[i * r + l];
            y[j * r + l] = acc;
        }
    }
}

/* x (rows, n), stride ld -> x·R. See hadamard.h and METHOD.md §4.6:
 *     x·R = vec(Aᵀ · X · H_r) · scale,   X[i][l] = (σ ⊙ x)[i·r + l].
 * The dense step Y = Aᵀ·X·scale adds, for every output, the products
 * (A[i][j]·scale)·X[i][l] in increasing i, starting from 0 (so the float result does not
 * depend on the path taken or on the CPU):
 *   - r >= 8: Y[j][:] += at[j][i] · X[i][:], contiguous axpys of length r;
 *   - r <  8: dot products over i, eight outputs at a time (dense_small_r). */
void qnpu__hadamard_apply_ws(const qnpu__hadamard *h, float *x, int64_t rows, int64_t ld,
                             float *work)
{
    const int64_t n = h->n, p = h->p, r = h->r;
    const int dense = qnpu__hadamard_work_floats(h) > 0;
    const float sc = (float)h->scale;
    const float *at = h->at_scaled;
    void (*axpy)(float *restrict, float, const float *restrict, int64_t) =
        qnpu__fwht_have_avx2() ? axpy_avx2 : axpy_ref;
    for (int64_t row = 0; row < rows; row++) {
        float *v = x + row * ld;
        /* 1. signs: v ← σ ⊙ v (sign flips are exact) */
        for (int64_t i = 0; i < n; i++)
            if (h->sigma[i] < 0)
                v[i] = -v[i];
        /* 2. X ← X·H_r: one FWHT per row of X (each a contiguous run of r) */
        if (r > 1)
            for (int64_t i = 0; i < p; i++)
                qnpu__fwht_f32(v + i * r, r);
        if (!dense) {
            /* 3'. Sylvester only, or partial (A = I): just the scale */
            for (int64_t i = 0; i < n; i++)
                v[i] *= sc;
            continue;
        }
        /* 3. Y = Aᵀ·X·scale into work, then back into v */
        if (r >= 8) {
            memset(work, 0, (size_t)n * sizeof *work);
            for (int64_t j = 0; j < p; j++)
                for (int64_t i = 0; i < p; i++)
                    axpy(work + j * r, at[j * p + i], v + i * r, r);
        } else {
            dense_small_r(at, v, work, p, r);
        }
        memcpy(v, work, (size_t)n * sizeof *v);
    }
}

qnpu_status qnpu__hadamard_apply(const qnpu__hadamard *h, float *x, int64_t rows, int64_t ld)
{
    size_t nw = qnpu__hadamard_work_floats(h);
    float *work = NULL;
    if (nw) {
        work = qnpu__malloc(nw * sizeof *work);
        if (!work)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "hadamard: order %lld: out of memory", (long long)h->n);
    }
    qnpu__hadamard_apply_ws(h, x, rows, ld, work);
    qnpu__free(work);
    return QNPU_OK;
}

qnpu_status qnpu__hadamard_apply_i64(const qnpu__hadamard *h, int64_t *x, int64_t rows,
                                     int64_t ld, int64_t *work)
{
    if (!h->exact)
        return qnpu__fail(QNPU_ERR_INVALID_ARG,
                          "hadamard: order %lld: %s is not integer-exact", (long long)h->n, h->desc);
    const int64_t n = h->n, p = h->p, r = h->r;
    const int dense = p > 1 && h->a_pm1 != NULL;
    for (int64_t row = 0; row < rows; row++) {
        int64_t *v = x + row * ld;
        for (int64_t i = 0; i < n; i++)
            if (h->sigma[i] < 0)
                v[i] = -v[i];
        if (r > 1)
            for (int64_t i = 0; i < p; i++)
                qnpu__fwht_i64(v + i * r, r);
        if (!dense)
            continue;
        /* Y[j][:] = Σ_i A[i][j]·X[i][:] with A[i][j] = ±1: additions and subtractions only */
        for (int64_t j = 0; j < p; j++) {
            int64_t *y = work + j * r;
            for (int64_t l = 0; l < r; l++)
                y[l] = 0;
            for (int64_t i = 0; i < p; i++) {
                const int64_t *xi = v + i * r;
                if (h->a_pm1[i * p + j] > 0)
                    for (int64_t l = 0; l < r; l++)
                        y[l] += xi[l];
                else
                    for (int64_t l = 0; l < r; l++)
                        y[l] -= xi[l];
            }
        }
        memcpy(v, work, (size_t)n * sizeof *v);
    }
    return QNPU_OK;
}

/* ---- dense form ---------------------------------------------------------------------------- */

/* A[i][j] of the plan (identity for partial) */
static double a_entry(const qnpu__hadamard *h, int64_t i, int64_t j)
{
    if (h->p == 1)
        return 1.0;
    if (!h->a)
        return i == j ? 1.0 : 0.0;
    return h->a[i * h->p + j];
}

/* R[u][v] = σ_u · A[i][j] · H_r[l][t] · scale with u = i·r + l, v = j·r + t */
double qnpu__hadamard_entry(const qnpu__hadamard *h, int64_t u, int64_t v)
{
    int64_t r = h->r;
    int64_t i = u / r, l = u % r, j = v / r, t = v % r;
    return h->sigma[u] * a_entry(h, i, j) * parity_sign((uint64_t)(l & t)) * h->scale;
}

void qnpu__hadamard_dense_rows(const qnpu__hadamard *h, int64_t row0, int64_t nrows, double *out)
{
    int64_t n = h->n, r = h->r, p = h->p;
    for (int64_t k = 0; k < nrows; k++) {
        int64_t u = row0 + k, i = u / r, l = u % r;
        double su = h->sigma[u] * h->scale;
        double *o = out + k * n;
        for (int64_t j = 0; j < p; j++) {
            double aij = a_entry(h, i, j) * su;
            for (int64_t t = 0; t < r; t++)
                o[j * r + t] = aij * parity_sign((uint64_t)(l & t));
        }
    }
}

void qnpu__hadamard_dense(const qnpu__hadamard *h, double *R)
{
    qnpu__hadamard_dense_rows(h, 0, h->n, R);
}
