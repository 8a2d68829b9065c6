/* prng.c — xoshiro256** seeded by splitmix64 (see prng.h). Written from the published
 * definitions of both generators. */
#include <math.h>

#include "prng.h"

/* splitmix64: a Weyl sequence (add the odd constant 2^64/φ) followed by a bijective
 * avalanche mix (xor-shift, multiply, xor-shift, multiply, xor-shift). Every 64-bit seed,
 * including 0, gives a well-mixed, distinct output. */
uint64_t qnpu__splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void qnpu__prng_seed_stream(qnpu__prng *g, uint64_t seed, uint64_t stream)
{
    /* Mix the stream number through splitmix first, so streams k and k+1 of a seed do not
     * start from neighbouring splitmix states of some other seed. Stream 0 keeps `seed`. */
    uint64_t st = seed;
    if (stream != 0) {
        uint64_t k = stream;
        st ^= qnpu__splitmix64(&k);
    }
    for (int i = 0; i < 4; i++)
        g->s[i] = qnpu__splitmix64(&st);
    /* xoshiro's only forbidden state is all zeros; splitmix64 cannot produce four zero
     * outputs in a row, but keep the invariant explicit. */
    if ((g->s[0] | g->s[1] | g->s[2] | g->s[3]) == 0)
        g->s[0] = 1;
}

void qnpu__prng_seed(qnpu__prng *g, uint64_t seed)
{
    qnpu__prng_seed_stream(g, seed, 0);
}

/* xoshiro256**: output = rotl(s1·5, 7)·9 (the "**" scrambler), then the linear xor/shift
 * state transition of the xoshiro family with shift 17 and rotation 45. */
uint64_t qnpu__prng_next(qnpu__prng *g)
{
    uint64_t *s = g->s;
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

double qnpu__prng_uniform(qnpu__prng *g)
{
    /* the top 53 bits as an integer, times 2^-53: exactly representable, in [0, 1) */
    return (double)(qnpu__prng_next(g) >> 11) * 0x1.0p-53;
}

uint64_t qnpu__prng_below(qnpu__prng *g, uint64_t bound)
{
    if (bound <= 1)
        return 0;
    /* reject the top partial copy of [0, bound) so every residue is equally likely */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t v;
    do
        v = qnpu__prng_next(g);
    while (v >= limit);
    return v % bound;
}

double qnpu__prng_gauss(qnpu__prng *g)
{
    /* Box–Muller: for U1 in (0, 1] and U2 in [0, 1), sqrt(−2 ln U1)·cos(2π U2) ~ N(0, 1).
     * U1 = 1 − uniform avoids log(0). The sine twin is discarded to keep the state a plain
     * value (no cached second normal), which keeps streams easy to reason about. */
    double u1 = 1.0 - qnpu__prng_uniform(g);
    double u2 = qnpu__prng_uniform(g);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925286766559 * u2);
}

int qnpu__prng_sign(qnpu__prng *g)
{
    return (qnpu__prng_next(g) >> 63) ? -1 : 1;
}
