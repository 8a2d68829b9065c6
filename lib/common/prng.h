/* prng.h — the library's seeded pseudo-random generator (sign vectors, fallback rotations,
 * sampling). Deterministic across platforms: the same seed gives the same stream everywhere.
 *
 * Generator: xoshiro256** (Blackman & Vigna, 2018), a 256-bit-state generator with period
 * 2^256 − 1, whose state is filled from the 64-bit seed by splitmix64 (Steele, Lea & Flood,
 * 2014), as its authors recommend. It is not cryptographic; it is fast and statistically good.
 *
 * Streams: qnpu__prng_seed_stream(g, seed, k) gives independent-looking streams for the same
 * user seed (e.g. k = 0 for a sign vector, k = 1 for a Gaussian matrix), so adding draws to one
 * use never shifts another. A generator is a plain value: one per thread, no global state. */
#ifndef QNPU_COMMON_PRNG_H
#define QNPU_COMMON_PRNG_H

#include <stdint.h>

typedef struct qnpu__prng {
    uint64_t s[4];
} qnpu__prng;

/* One splitmix64 step: advances *state by the golden-ratio increment and returns the mixed
 * value. Exposed because it is also a good 64-bit hash for deriving seeds. */
uint64_t qnpu__splitmix64(uint64_t *state);

/* Seed from a 64-bit value (stream 0). */
void qnpu__prng_seed(qnpu__prng *g, uint64_t seed);
/* Seed stream `stream` of `seed`; stream 0 equals qnpu__prng_seed(g, seed). */
void qnpu__prng_seed_stream(qnpu__prng *g, uint64_t seed, uint64_t stream);

/* Next 64 uniformly distributed bits. */
uint64_t qnpu__prng_next(qnpu__prng *g);
/* Uniform double in [0, 1) with 53 random bits. */
double qnpu__prng_uniform(qnpu__prng *g);
/* Uniform integer in [0, bound), bound >= 1, without modulo bias (rejection). */
uint64_t qnpu__prng_below(qnpu__prng *g, uint64_t bound);
/* Standard normal N(0, 1) by the Box–Muller transform; one normal per call (two uniforms). */
double qnpu__prng_gauss(qnpu__prng *g);
/* +1 or −1 with probability 1/2 each (the top bit of one draw). */
int qnpu__prng_sign(qnpu__prng *g);

#endif
