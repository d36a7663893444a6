/* Philox-4x32-10 (Salmon et al., SC'11), the generator cuRAND and JAX use: a keyed bijection of a 128-bit
 * counter, so any (key, counter) is computed directly with no state carried between draws. Single-source
 * (kernels/hd.h): integer arithmetic only, so every backend draws the same words, integers and uniforms bit for
 * bit. A stream is keyed by (seed, epoch, sample, purpose); base/rng.h documents the purposes. */
#ifndef SYNCO_KERNELS_PHILOX_KERNEL_H
#define SYNCO_KERNELS_PHILOX_KERNEL_H

#include <stdint.h>

#include "kernels/hd.h"

typedef struct {
  uint32_t key[2];
  uint32_t ctr[4];
  uint32_t buf[4];
  int used;      /* words of buf already handed out (4 = empty) */
  int has_spare; /* Box-Muller keeps its second normal */
  float spare;
} synco_rng;

/* Ten rounds on the counter (x0, x1, x2, x3) under the key (k0, k1), in place. Scalars rather than an array, so
 * that a loop over many counters vectorizes (backend/ref/ref_negatives.c's philox_blocks). */
SYNCO_HD static inline void synco_k_philox10_x(uint32_t *x0, uint32_t *x1, uint32_t *x2, uint32_t *x3, uint32_t k0,
                                               uint32_t k1) {
  uint32_t c0 = *x0, c1 = *x1, c2 = *x2, c3 = *x3;
  for (int i = 0; i < 10; i++) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    const uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  *x0 = c0;
  *x1 = c1;
  *x2 = c2;
  *x3 = c3;
}

SYNCO_HD static inline void synco_k_philox10(uint32_t out[4], const uint32_t in[4], const uint32_t key[2]) {
  uint32_t c0 = in[0], c1 = in[1], c2 = in[2], c3 = in[3];
  synco_k_philox10_x(&c0, &c1, &c2, &c3, key[0], key[1]);
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

SYNCO_HD static inline uint64_t synco_k_mix64(uint64_t x) { /* splitmix64 finalizer */
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

SYNCO_HD static inline synco_rng synco_rng_make(uint64_t seed, uint64_t epoch, uint64_t sample, uint32_t purpose) {
  synco_rng r;
  const uint64_t k = synco_k_mix64(seed ^ synco_k_mix64(epoch + 0x632BE59BD9B4E019ull));
  r.key[0] = (uint32_t)k;
  r.key[1] = (uint32_t)(k >> 32);
  r.ctr[0] = 0;                      /* block index within the stream */
  r.ctr[1] = purpose;
  r.ctr[2] = (uint32_t)sample;
  r.ctr[3] = (uint32_t)(sample >> 32);
  r.used = 4;
  r.has_spare = 0;
  r.spare = 0.f;
  for (int i = 0; i < 4; i++) r.buf[i] = 0;
  return r;
}

SYNCO_HD static inline uint32_t synco_rng_u32(synco_rng *r) {
  if (r->used == 4) {
    synco_k_philox10(r->buf, r->ctr, r->key);
    r->ctr[0]++;
    r->used = 0;
  }
  return r->buf[r->used++];
}

/* Uniform in [0, 1) with 24 random bits. */
SYNCO_HD static inline float synco_rng_uniform(synco_rng *r) {
  return (float)(synco_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* Uniform in [0, 1) with 53 random bits. */
SYNCO_HD static inline double synco_rng_uniform_d(synco_rng *r) {
  const uint64_t a = synco_rng_u32(r) >> 5, b = synco_rng_u32(r) >> 6;
  return (double)(a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

/* Uniform in [lo, hi). */
SYNCO_HD static inline float synco_rng_range(synco_rng *r, float lo, float hi) {
  return lo + (hi - lo) * synco_rng_uniform(r);
}

/* Unbiased integer in [0, n), n > 0. */
SYNCO_HD static inline uint32_t synco_rng_below(synco_rng *r, uint32_t n) {
  /* Lemire's multiply-shift with rejection: exact for every n. */
  uint64_t m = (uint64_t)synco_rng_u32(r) * n;
  uint32_t lo = (uint32_t)m;
  if (lo < n) {
    const uint32_t t = (uint32_t)(-n) % n;
    while (lo < t) {
      m = (uint64_t)synco_rng_u32(r) * n;
      lo = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

#endif
