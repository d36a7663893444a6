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

SYNCO_HD static inline void synco_k_philox_round(uint32_t ctr[4], const uint32_t key[2]) {
  const uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0];
  const uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr[2];
  const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
  const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
  const uint32_t c0 = hi1 ^ ctr[1] ^ key[0], c2 = hi0 ^ ctr[3] ^ key[1];
  ctr[0] = c0;
  ctr[1] = lo1;
  ctr[2] = c2;
  ctr[3] = lo0;
}

SYNCO_HD static inline void synco_k_philox10(uint32_t out[4], const uint32_t in[4], const uint32_t key_in[2]) {
  uint32_t c[4] = {in[0], in[1], in[2], in[3]};
  uint32_t k[2] = {key_in[0], key_in[1]};
  for (int i = 0; i < 10; i++) {
    synco_k_philox_round(c, k);
    k[0] += 0x9E3779B9u;
    k[1] += 0xBB67AE85u;
  }
  for (int i = 0; i < 4; i++) out[i] = c[i];
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
