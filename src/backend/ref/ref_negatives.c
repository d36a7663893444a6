/* The reference (and CPU) implementation of SynCo's synthetic negatives: the draws from the counter RNG, the
 * hard-set selection, the closed-form synthetic logits and their backward (see ssl/negatives.h for the contract
 * and docs/method.md for the method). Per query the hard set is found by a histogram selection over the K logits and a
 * radix sort of the winners, so position p is the p-th largest logit with ties going to the lower queue index.
 * Each synthetic s_raw = a·x + b·y is known only through dot products: q·s_raw and ‖s_raw‖² come from q·n (the
 * caller's l_neg), ‖n‖² (one pass over the queue per call), n·n' (type 3), q·ε, n·ε, ε·ε (type 4) and n·sign(q)
 * (type 6), combined in double. That makes the forward O(B·(K + n3·dim + n4·dim + n6·dim)) and lets the backward
 * fold the queue-row parts of Σ g·s into the caller's queue-logit gradient, which one GEMM turns into dq.
 * Parallel over queries; nothing is allocated per call. The per-query arithmetic is kernels/negatives_kernel.h,
 * which the CUDA backend launches as it is. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref_internal.h"
#include "base/rng.h"
#include "kernels/negatives_kernel.h"
#include "tensor/negatives_op.h"

/* ---- workspace -------------------------------------------------------------------------------------- */

/* A thread's share of the draws' `words` workspace, in 32-bit words: the stream index of each type-4 synthetic's first
 * noise word (n4 64-bit words), then the Philox blocks that cover one synthetic's noise words (at most dim + 1 words
 * from any position: dim + 8). Even, so that every share's 64-bit words stay aligned. */
static size_t words_share(const synco_negatives_draws *d) {
  return 2 * (size_t)d->n[3] + 2 * (((size_t)d->dim + 9) / 2);
}

/* Per thread (d->nthreads, the backend's threads): the hard-set selection's 4·K + bins words, the backward's weight
 * per hard position, sign(q), and the noise's random words. Nothing kept by the backend itself. */
synco_status synco_ref_neg_workspace(synco_backend *be, const synco_negatives_draws *d, synco_negatives_workspace *ws) {
  (void)be;
  const size_t nt = (size_t)(d->nthreads > 0 ? d->nthreads : 1);
  *ws = (synco_negatives_workspace){
      .sel = nt * (4 * (size_t)d->K + SYNCO_K_SEL_BINS) * sizeof(uint32_t),
      .wpos = nt * (size_t)d->n_hard * sizeof(float),
      .sgn = nt * (size_t)d->dim * sizeof(float),
      .words = nt * words_share(d) * sizeof(uint32_t),
  };
  return SYNCO_OK;
}

/* ---- draws ------------------------------------------------------------------------------------------ */

/* Philox blocks block0 .. block0 + nb - 1 of r's stream (its key and counter words 1..3) into out[4·nb]. The blocks
 * do not depend on each other, so the loop runs several in vector lanes; the clones let a CPU with AVX2 or AVX-512
 * use its wider lanes. Integer arithmetic only: every clone makes the same words, those synco_rng_u32 hands out. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NEG_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define NEG_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define NEG_ISA_CLONES
#define NEG_NO_CONTRACT
#endif
NEG_ISA_CLONES static void philox_blocks(uint32_t *restrict out, const synco_rng *r, uint32_t block0, int nb) {
  const uint32_t k0 = r->key[0], k1 = r->key[1], c1 = r->ctr[1], c2 = r->ctr[2], c3 = r->ctr[3];
#pragma omp simd
  for (int j = 0; j < nb; j++) {
    uint32_t x0 = block0 + (uint32_t)j, x1 = c1, x2 = c2, x3 = c3;
    synco_k_philox10_x(&x0, &x1, &x2, &x3, k0, k1);
    out[4 * j] = x0;
    out[4 * j + 1] = x1;
    out[4 * j + 2] = x2;
    out[4 * j + 3] = x3;
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define NEG_AVX512 __attribute__((target("avx512f")))

/* The high and low 32 bits of a·m in each of 16 lanes (m: one multiplier in every lane): the even lanes' 64-bit
 * products and the odd lanes' (shifted down), recombined by blends. */
NEG_AVX512 static inline void mulhilo16(__m512i a, __m512i m, __m512i *hi, __m512i *lo) {
  const __m512i pe = _mm512_mul_epu32(a, m), po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

/* philox_blocks with AVX-512 written out: 16 blocks at a time, each lane one block's counter, the ten rounds of
 * synco_k_philox10_x on whole vectors, then each block's 4 words stored in place. GCC's vectorization of the scalar
 * rounds widened every 32-bit product through shuffles, about 5 cycles a word on a Zen 4. Integer arithmetic: the
 * same words. */
NEG_AVX512 static void philox_blocks_avx512(uint32_t *restrict out, const synco_rng *r, uint32_t block0, int nb) {
  const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  uint32_t tmp[4][16] __attribute__((aligned(64)));
  for (int j0 = 0; j0 < nb; j0 += 16) {
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)(block0 + (uint32_t)j0)), lane);
    __m512i c1 = _mm512_set1_epi32((int)r->ctr[1]), c2 = _mm512_set1_epi32((int)r->ctr[2]);
    __m512i c3 = _mm512_set1_epi32((int)r->ctr[3]);
    uint32_t k0 = r->key[0], k1 = r->key[1];
    for (int i = 0; i < 10; i++) {
      __m512i hi0, lo0, hi1, lo1;
      mulhilo16(c0, m0, &hi0, &lo0);
      mulhilo16(c2, m1, &hi1, &lo1);
      c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
      c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
      c1 = lo1;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    _mm512_store_si512((void *)tmp[0], c0);
    _mm512_store_si512((void *)tmp[1], c1);
    _mm512_store_si512((void *)tmp[2], c2);
    _mm512_store_si512((void *)tmp[3], c3);
    const int n = nb - j0 < 16 ? nb - j0 : 16;
    for (int j = 0; j < n; j++)
      for (int w = 0; w < 4; w++) out[4 * (j0 + j) + w] = tmp[w][j];
  }
}
#endif

/* Philox blocks block0 .. block0 + nb - 1 of r's stream: the AVX-512 loop where the CPU has it, else the clones. */
static void philox_words(uint32_t *out, const synco_rng *r, uint32_t block0, int nb) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static int avx512 = -1;
  if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f") != 0;
  if (avx512) {
    philox_blocks_avx512(out, r, block0, nb);
    return;
  }
#endif
  philox_blocks(out, r, block0, nb);
}

/* synco_k_neg_normals in the clones' wider lanes, with no fused multiply-adds (the default build has none to use),
 * so that every clone rounds as the default does and gives the same floats. */
NEG_ISA_CLONES NEG_NO_CONTRACT static void normals(float *out, const uint32_t *w, int dim, float sigma) {
  synco_k_neg_normals(out, w, dim, sigma);
}

/* Query i's draws as the GPU composes them (kernels/negatives_kernel.h): one walk of its stream that skips the noise
 * and records where each type-4 synthetic's words start, then each synthetic's words made block by block from that
 * index and turned into normals: the floats the serial stream gives (test_neg_kernels checks it). */
static void draw_query(synco_negatives_draws *d, int i, uint64_t seed, uint64_t step, uint64_t query0, float sigma,
                       uint32_t *share) {
  const int n4 = d->n[3], dim = d->dim, nw = synco_k_neg_noise_words(dim);
  uint64_t *word0 = (uint64_t *)share;
  uint32_t *blocks = share + 2 * (size_t)n4;
  synco_rng r;
  synco_k_neg_draw_query(d, i, seed, step, query0, sigma, NULL, word0, &r);
  for (int s = 0; s < n4; s++) {
    const uint64_t first = word0[s] / 4u, last = (word0[s] + (uint64_t)nw - 1u) / 4u;
    philox_words(blocks, &r, (uint32_t)first, (int)(last - first + 1u));
    normals(d->noise + ((size_t)i * n4 + s) * (size_t)dim, blocks + word0[s] % 4u, dim, sigma);
  }
}

synco_status synco_ref_neg_draw(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                                uint64_t seed, uint64_t step, uint64_t query0) {
  (void)be;
  if (d->total == 0) return SYNCO_OK;
  const int B = d->B;
  const size_t share = words_share(d);
  /* the workspace has d->nthreads shares (the threads at plan time); fewer run after a process lowers its count */
  const int nt = omp_get_max_threads() < d->nthreads ? omp_get_max_threads() : d->nthreads;
#pragma omp parallel for schedule(dynamic, 2) num_threads(nt)
  for (int i = 0; i < B; i++)
    draw_query(d, i, seed, step, query0, cfg->sigma, d->words + (size_t)omp_get_thread_num() * share);
  return SYNCO_OK;
}

/* ---- forward ---------------------------------------------------------------------------------------- */

synco_status synco_ref_neg_logits(synco_backend *be, synco_negatives_draws *d, float *syn, int ld_syn,
                                  const float *l_neg, int ld_lneg, const float *q, const float *queue, float T) {
  (void)be;
  if (!(T > 0.f) || !isfinite(T)) return synco_fail(SYNCO_ERR_ARG, "negatives: temperature %g, expected > 0", (double)T);
  if (d->total == 0) return SYNCO_OK;
  const int B = d->B, dim = d->dim, K = d->K, nh = d->n_hard, total = d->total;
  const double invT = 1.0 / T;
  int nt = omp_get_max_threads();
  if (nt > d->nthreads) nt = d->nthreads;
  int bad = 0;

#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(dynamic, 64)
    for (int j = 0; j < K; j++) d->row_sq[j] = synco_k_dotf(queue + (size_t)j * dim, queue + (size_t)j * dim, dim);

    const int tid = omp_get_thread_num();
    uint32_t *ws = d->sel + (size_t)tid * (4 * (size_t)K + SYNCO_K_SEL_BINS);
    float *sg = d->sgn + (size_t)tid * dim;
#pragma omp for schedule(dynamic, 2) reduction(| : bad)
    for (int i = 0; i < B; i++) {
      synco_k_neg_row r = {.i = i, .q = q + (size_t)i * dim, .l = l_neg + (size_t)i * ld_lneg,
                           .h = d->hard + (size_t)i * nh, .sg = sg};
      synco_k_select_hard(d->hard + (size_t)i * nh, r.l, K, nh, ws);
      synco_k_neg_query_stats(r.q, dim, sg, &r.qq, &r.qabs, &r.nz);
      float *out = syn + (size_t)i * ld_syn, *inv = d->inv_norm + (size_t)i * total;
      int row_bad = 0;
      for (int o = 0; o < total; o++) out[o] = synco_k_neg_logit(d, &r, o, queue, invT, &inv[o], &row_bad);
      bad |= row_bad;
    }
  }
  if (bad) return synco_fail(SYNCO_ERR_ARG, "negatives: a drawn position is outside 0..n_hard-1 (n_hard = %d)", nh);
  return SYNCO_OK;
}

/* ---- backward --------------------------------------------------------------------------------------- */

synco_status synco_ref_neg_backward(synco_backend *be, synco_negatives_draws *d, float *dq, float *g_raw,
                                    int ld_graw, const float *g_syn, int ld_gsyn, const float *q, float T) {
  (void)be;
  if (d->total == 0) return SYNCO_OK;
  const int B = d->B, dim = d->dim, nh = d->n_hard, total = d->total, n4 = d->n[3];
  int nt = omp_get_max_threads();
  if (nt > d->nthreads) nt = d->nthreads;
  const double invT = 1.0 / T;

#pragma omp parallel num_threads(nt)
  {
    float *W = d->wpos + (size_t)omp_get_thread_num() * nh;
#pragma omp for schedule(dynamic, 4)
    for (int i = 0; i < B; i++) {
      const float *g = g_syn + (size_t)i * ld_gsyn, *inv = d->inv_norm + (size_t)i * total, *qi = q + (size_t)i * dim;
      float *dqi = dq + (size_t)i * dim, *gr = g_raw + (size_t)i * ld_graw;
      const int32_t *h = d->hard + (size_t)i * nh;
      double cq, cs;
      synco_k_neg_bwd_weights(d, i, g, inv, invT, W, &cq, &cs);
      for (int s = 0; s < n4; s++) { /* the noise parts, in synthetic order per element */
        const float w = synco_k_neg_w4(d, g, inv, s, invT);
        const float *e = d->noise + ((size_t)i * n4 + s) * (size_t)dim;
#pragma omp simd
        for (int c = 0; c < dim; c++) dqi[c] += w * e[c];
      }
      const float fq = (float)cq, fs = (float)cs;
#pragma omp simd
      for (int c = 0; c < dim; c++) dqi[c] = synco_k_neg_dq_final(dqi[c], qi[c], fq, fs);
      for (int p = 0; p < nh; p++) gr[h[p]] += W[p];
    }
  }
  return SYNCO_OK;
}
