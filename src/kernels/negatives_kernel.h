/* SynCo's synthetic negatives, single-source (kernels/hd.h): the pieces of one query's work that the reference
 * backend (backend/ref/ref_negatives.c) loops over and the CUDA backend (backend/cuda/cuda_negatives.cu) launches,
 * so that the CPU tests already test the GPU's arithmetic.
 *
 *  - draws: one query's counter-based stream (positions, coefficients, type-4 noise words), plus a seek into the
 *    stream so that a GPU can make the noise words of every (query, synthetic, pair) in parallel from their
 *    word index (synco_k_rng_word_at) and get the words the serial stream gives;
 *  - hard-set selection: the histogram cut and the stable radix sort of the candidates (position p = the p-th
 *    largest logit, ties to the lower queue index);
 *  - forward: one synthetic logit q·s/T from dot products, in closed form (synco_k_neg_logit);
 *  - backward: one query's weights per hard position and the scalar q- and sign(q)-coefficients
 *    (synco_k_neg_bwd_weights), one type-4 weight, and the final dq element.
 *
 * The descriptor is tensor/negatives_op.h's synco_negatives_draws (plain pointers into the backend's memory), so
 * a CUDA kernel takes it by value. SYNCO_K_PRAGMA keeps the CPU's `omp simd` hints (and so the CPU's bits) and
 * vanishes under nvcc, where each loop runs in order. */
#ifndef SYNCO_KERNELS_NEGATIVES_KERNEL_H
#define SYNCO_KERNELS_NEGATIVES_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/rng.h" /* the stream purposes; kernels/philox_kernel.h */
#include "kernels/hd.h"
#include "kernels/normal_kernel.h"
#include "tensor/negatives_op.h"

#ifdef __CUDACC__
#define SYNCO_K_PRAGMA(x)
#else
#define SYNCO_K_PRAGMA(x) _Pragma(x)
#endif

#define SYNCO_K_SEL_BINS 2048 /* histogram bins of the hard-set selection (sized by the backends' neg_workspace) */

/* ---- the counter stream: position and seek ---------------------------------------------------------- */

/* Words handed out so far by r (synco_rng_u32 counts one per word). */
SYNCO_HD static inline uint64_t synco_k_rng_count(const synco_rng *r) {
  return (uint64_t)r->ctr[0] * 4u + (uint64_t)r->used - 4u;
}

/* Puts r where it would be after `count` words, as if they had been drawn. */
SYNCO_HD static inline void synco_k_rng_seek(synco_rng *r, uint64_t count) {
  const uint32_t block = (uint32_t)(count / 4u), at = (uint32_t)(count % 4u);
  if (at == 0) {
    r->ctr[0] = block;
    r->used = 4;
    return;
  }
  r->ctr[0] = block;
  synco_k_philox10(r->buf, r->ctr, r->key);
  r->ctr[0] = block + 1u;
  r->used = (int)at;
}

/* The word of index `count` of the stream r was made from (r's key and counter words 1..3), with no state. */
SYNCO_HD static inline uint32_t synco_k_rng_word_at(const synco_rng *r, uint64_t count) {
  uint32_t c[4] = {(uint32_t)(count / 4u), r->ctr[1], r->ctr[2], r->ctr[3]}, out[4];
  synco_k_philox10(out, c, r->key);
  return out[count % 4u];
}

/* ---- draws -------------------------------------------------------------------------------------------- */

/* dim normals ×σ from dim + (dim & 1) words: pair k from words 2k, 2k+1; an odd dim's last normal from the
 * last pair's cosine. */
SYNCO_HD static inline void synco_k_neg_normals(float *out, const uint32_t *w, int dim, float sigma) {
  const int pairs = dim / 2;
  SYNCO_K_PRAGMA("omp simd")
  for (int k = 0; k < pairs; k++) synco_k_box_muller(w[2 * k], w[2 * k + 1], sigma, &out[2 * k], &out[2 * k + 1]);
  if (dim & 1) {
    float spare;
    synco_k_box_muller(w[dim - 1], w[dim], sigma, &out[dim - 1], &spare);
  }
}

/* Words the noise of one type-4 synthetic takes from the stream. */
SYNCO_HD static inline int synco_k_neg_noise_words(int dim) { return dim + (dim & 1); }

/* The draws of query i (its stream keyed by (seed, step, query0 + i, SYNCO_RNG_NEGATIVES)), in type order:
 * type 1 (position, α), 2 (position, β), 3 (two positions, γ), 4 (position, then the noise words), 5 and 6
 * (position). With words (dim + 1 words of workspace) the noise is made here; with words == NULL it is skipped
 * and noise_word0[s] (d->n[3] of them) gets the stream index of type-4 synthetic s's first noise word, for a
 * parallel pass (synco_k_neg_noise_pair). r_out (may be NULL) gets the stream's key and counter. */
SYNCO_HD static inline void synco_k_neg_draw_query(const synco_negatives_draws *d, int i, uint64_t seed, uint64_t step,
                                                   uint64_t query0, float sigma, uint32_t *words,
                                                   uint64_t *noise_word0, synco_rng *r_out) {
  synco_rng r = synco_rng_make(seed, step, query0 + (uint64_t)i, SYNCO_RNG_NEGATIVES);
  if (r_out) *r_out = r;
  const uint32_t nh = (uint32_t)d->n_hard;
  const int dim = d->dim;
  for (int s = 0, n = d->n[0]; s < n; s++) {
    d->pos[0][(size_t)i * n + s] = (int32_t)synco_rng_below(&r, nh);
    d->coef[0][(size_t)i * n + s] = 0.5f * synco_rng_uniform(&r);
  }
  for (int s = 0, n = d->n[1]; s < n; s++) {
    d->pos[1][(size_t)i * n + s] = (int32_t)synco_rng_below(&r, nh);
    d->coef[1][(size_t)i * n + s] = 1.0f + 0.5f * synco_rng_uniform(&r);
  }
  for (int s = 0, n = d->n[2]; s < n; s++) {
    d->pos[2][((size_t)i * n + s) * 2] = (int32_t)synco_rng_below(&r, nh);
    d->pos[2][((size_t)i * n + s) * 2 + 1] = (int32_t)synco_rng_below(&r, nh);
    d->coef[2][(size_t)i * n + s] = synco_rng_uniform(&r);
  }
  const int nw = synco_k_neg_noise_words(dim);
  for (int s = 0, n = d->n[3]; s < n; s++) {
    d->pos[3][(size_t)i * n + s] = (int32_t)synco_rng_below(&r, nh);
    if (words) {
      for (int c = 0; c < nw; c++) words[c] = synco_rng_u32(&r);
      synco_k_neg_normals(d->noise + ((size_t)i * n + s) * (size_t)dim, words, dim, sigma);
    } else {
      const uint64_t at = synco_k_rng_count(&r);
      noise_word0[s] = at;
      synco_k_rng_seek(&r, at + (uint64_t)nw);
    }
  }
  for (int t = 4; t < SYNCO_NEG_TYPES; t++)
    for (int s = 0, n = d->n[t]; s < n; s++) d->pos[t][(size_t)i * n + s] = (int32_t)synco_rng_below(&r, nh);
}

/* Normals 2k and 2k + 1 (or the last one of an odd dim) of one noise vector e whose words start at stream index
 * word0 of stream r: the same floats synco_k_neg_normals makes from the serial words. */
SYNCO_HD static inline void synco_k_neg_noise_pair(float *e, const synco_rng *r, uint64_t word0, int k, int dim,
                                                   float sigma) {
  const uint32_t w0 = synco_k_rng_word_at(r, word0 + 2u * (uint64_t)k), w1 = synco_k_rng_word_at(r, word0 + 2u * (uint64_t)k + 1u);
  float c, s;
  synco_k_box_muller(w0, w1, sigma, &c, &s);
  e[2 * k] = c;
  if (2 * k + 1 < dim) e[2 * k + 1] = s;
}

/* ---- hard-set selection -------------------------------------------------------------------------------- */

/* Maps a float to a uint32 whose unsigned order is the float order. */
SYNCO_HD static inline uint32_t synco_k_order_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Histogram scale of a row with minimum mn and maximum mx (0 when the row is flat or not finite). */
SYNCO_HD static inline float synco_k_sel_scale(float mn, float mx) {
  return (mx > mn && isfinite(mx - mn)) ? (float)SYNCO_K_SEL_BINS / (mx - mn) : 0.f;
}

/* Monotone in v: a larger value never gets a smaller bin (NaN goes to bin 0). */
SYNCO_HD static inline uint32_t synco_k_sel_bin(float v, float mn, float scale) {
  const float top = (float)(SYNCO_K_SEL_BINS - 1);
  float f = (v - mn) * scale;
  f = f > 0.f ? f : 0.f;
  return (uint32_t)(int)(f < top ? f : top);
}

/* The lowest bin such that it and the bins above hold at least nh values (0 if the row has fewer). */
SYNCO_HD static inline uint32_t synco_k_sel_cut(const uint32_t *cnt, int nh) {
  uint32_t cut = SYNCO_K_SEL_BINS - 1;
  for (uint32_t run = cnt[cut]; run < (uint32_t)nh && cut > 0;) run += cnt[--cut];
  return cut;
}

/* Radix pass of a stable descending sort on 32-bit keys: digit = (key >> shift) & mask. cnt: mask + 1 words. */
SYNCO_HD static inline void synco_k_radix_pass_desc(uint32_t *kout, int32_t *iout, const uint32_t *kin,
                                                    const int32_t *iin, int n, int shift, uint32_t mask,
                                                    uint32_t *cnt) {
  for (uint32_t b = 0; b <= mask; b++) cnt[b] = 0;
  for (int j = 0; j < n; j++) cnt[(kin[j] >> shift) & mask]++;
  uint32_t run = 0;
  for (int b = (int)mask; b >= 0; b--) { /* largest digit first */
    const uint32_t c = cnt[b];
    cnt[b] = run;
    run += c;
  }
  for (int j = 0; j < n; j++) {
    const uint32_t at = cnt[(kin[j] >> shift) & mask]++;
    kout[at] = kin[j];
    iout[at] = iin[j];
  }
}

/* Sorts the c candidates (k0 = order bits, i0 = queue index, in index order) descending, stably, by three LSD
 * passes, and writes the first nh indices to h. k1, i1: c words each; cnt: SYNCO_K_SEL_BINS words. */
SYNCO_HD static inline void synco_k_sel_sort(int32_t *h, uint32_t *k0, int32_t *i0, uint32_t *k1, int32_t *i1, int c,
                                             int nh, uint32_t *cnt) {
  synco_k_radix_pass_desc(k1, i1, k0, i0, c, 0, 0x7FF, cnt);
  synco_k_radix_pass_desc(k0, i0, k1, i1, c, 11, 0x7FF, cnt);
  synco_k_radix_pass_desc(k1, i1, k0, i0, c, 22, 0x3FF, cnt);
  for (int p = 0; p < nh; p++) h[p] = i1[p];
}

/* Writes to h[0..nh) the indices of the nh largest of x[0..K), largest first, ties to the lower index.
 * A linear histogram of the row over [min, max] finds the bin holding the nh-th largest value; everything
 * from that bin up (nh plus a few) is collected in index order and sorted by a stable three-pass LSD radix
 * sort on the order-preserving bits, so the cost is a few passes over K and over nh, with no comparisons
 * that depend on the data. ws: 4·K + SYNCO_K_SEL_BINS words. Non-finite values only make the result arbitrary
 * (but deterministic); a training step with them fails on its loss anyway. */
SYNCO_HD static inline void synco_k_select_hard(int32_t *h, const float *x, int K, int nh, uint32_t *ws) {
  uint32_t *k0 = ws, *k1 = ws + K, *cnt = ws + 4 * (size_t)K;
  int32_t *i0 = (int32_t *)(ws + 2 * (size_t)K), *i1 = (int32_t *)(ws + 3 * (size_t)K);
  float mn = x[0], mx = x[0];
  SYNCO_K_PRAGMA("omp simd reduction(min : mn) reduction(max : mx)")
  for (int j = 0; j < K; j++) {
    mn = x[j] < mn ? x[j] : mn;
    mx = x[j] > mx ? x[j] : mx;
  }
  const float scale = synco_k_sel_scale(mn, mx);
  uint32_t *bin = k1; /* free until the radix passes */
  SYNCO_K_PRAGMA("omp simd")
  for (int j = 0; j < K; j++) bin[j] = synco_k_sel_bin(x[j], mn, scale);
  for (int b = 0; b < SYNCO_K_SEL_BINS; b++) cnt[b] = 0;
  for (int j = 0; j < K; j++) cnt[bin[j]]++;
  const uint32_t cut = synco_k_sel_cut(cnt, nh);
  int c = 0;
  for (int j = 0; j < K; j++) { /* branch-free: always write, advance only when kept */
    k0[c] = synco_k_order_bits(x[j]);
    i0[c] = j;
    c += bin[j] >= cut;
  }
  synco_k_sel_sort(h, k0, i0, k1, i1, c, nh, cnt);
}

/* The same selection as a block of nthr threads runs it (the CUDA backend; test_neg_kernels runs these phases on the
 * CPU, thread by thread, and compares with synco_k_select_hard bit for bit). ws as above; the block's threads t run
 *   1. synco_k_sel_minmax: thread t's minimum and maximum over x[t], x[t + nthr], ... (kept per thread);
 *   2. synco_k_sel_reduce (one thread): the row's minimum and histogram scale from the nthr partials;
 *   3. synco_k_sel_bins: thread t's bins into k1 and counts into the histogram (atomically on a GPU; the counts are
 *      integers, so the order does not matter), after the histogram was zeroed;
 *   4. synco_k_sel_finish (one thread): the cut, the candidates in index order, the stable radix sort.
 * with a barrier between the phases. */
SYNCO_HD static inline void synco_k_sel_minmax(const float *x, int K, int t, int nthr, float *mn, float *mx) {
  float a = x[0], b = x[0];
  for (int j = t; j < K; j += nthr) {
    a = x[j] < a ? x[j] : a;
    b = x[j] > b ? x[j] : b;
  }
  *mn = a;
  *mx = b;
}

SYNCO_HD static inline void synco_k_sel_reduce(const float *mns, const float *mxs, int nthr, float x0, float *mn,
                                               float *scale) {
  float a = x0, b = x0;
  for (int u = 0; u < nthr; u++) {
    a = mns[u] < a ? mns[u] : a;
    b = mxs[u] > b ? mxs[u] : b;
  }
  *mn = a;
  *scale = synco_k_sel_scale(a, b);
}

SYNCO_HD static inline void synco_k_sel_bins(uint32_t *ws, const float *x, int K, int t, int nthr, float mn,
                                             float scale) {
  uint32_t *bin = ws + K, *cnt = ws + 4 * (size_t)K;
  for (int j = t; j < K; j += nthr) {
    const uint32_t b = synco_k_sel_bin(x[j], mn, scale);
    bin[j] = b;
#ifdef __CUDA_ARCH__
    atomicAdd(&cnt[b], 1u);
#else
    cnt[b]++;
#endif
  }
}

SYNCO_HD static inline void synco_k_sel_finish(int32_t *h, const float *x, int K, int nh, uint32_t *ws) {
  uint32_t *k0 = ws, *k1 = ws + K, *cnt = ws + 4 * (size_t)K;
  int32_t *i0 = (int32_t *)(ws + 2 * (size_t)K), *i1 = (int32_t *)(ws + 3 * (size_t)K);
  const uint32_t cut = synco_k_sel_cut(cnt, nh);
  int c = 0;
  for (int j = 0; j < K; j++)
    if (k1[j] >= cut) {
      k0[c] = synco_k_order_bits(x[j]);
      i0[c++] = j;
    }
  synco_k_sel_sort(h, k0, i0, k1, i1, c, nh, cnt);
}

/* Phase 4 in parallel (the CUDA kernel; synco_k_sel_finish is its one-thread form, and test_neg_kernels checks that
 * both give the same hard set bit for bit). part[nthr] is the block's per-thread scratch; between the steps, a
 * barrier:
 *   a. synco_k_sel_cut_part (each thread), synco_k_sel_cut_find (one thread): the cut of synco_k_sel_cut;
 *   b. synco_k_sel_keep_count (each), synco_k_sel_scan (one), synco_k_sel_keep_write (each): the candidates in index
 *      order into k0 / i0, each thread a contiguous range of the row;
 *   c. SYNCO_K_SEL_PASSES stable passes of SYNCO_K_SEL_RADIX_BITS bits, largest digit first, each: synco_k_sel_rhist
 *      (lanes < SYNCO_K_SEL_LANES, each a contiguous range of the candidates), synco_k_sel_rsum (each),
 *      synco_k_sel_scan (one), synco_k_sel_roffsets (each), synco_k_sel_rscatter (lanes): an even number of
 *      passes, so the sorted candidates end in k0 / i0;
 *   d. synco_k_sel_emit (each): the first nh indices into h.
 * A stable sort on the whole 32-bit key has one result, so the digits' width does not change it. */
#define SYNCO_K_SEL_RADIX_BITS 4
#define SYNCO_K_SEL_DIGITS (1 << SYNCO_K_SEL_RADIX_BITS)
#define SYNCO_K_SEL_PASSES (32 / SYNCO_K_SEL_RADIX_BITS)
#define SYNCO_K_SEL_LANES 128 /* SYNCO_K_SEL_DIGITS · lanes counters fit in the histogram's SYNCO_K_SEL_BINS words */

/* [lo, hi) of part t of n split into nthr contiguous parts. */
SYNCO_HD static inline void synco_k_sel_range(int n, int t, int nthr, int *lo, int *hi) {
  *lo = (int)((long)n * t / nthr);
  *hi = (int)((long)n * (t + 1) / nthr);
}

SYNCO_HD static inline void synco_k_sel_cut_part(uint32_t *part, const uint32_t *cnt, int t, int nthr) {
  int lo, hi;
  synco_k_sel_range(SYNCO_K_SEL_BINS, t, nthr, &lo, &hi);
  uint32_t s = 0;
  for (int b = lo; b < hi; b++) s += cnt[b];
  part[t] = s;
}

/* synco_k_sel_cut from the parts: the chunk where the count from the top reaches nh, then its bins. */
SYNCO_HD static inline uint32_t synco_k_sel_cut_find(const uint32_t *part, const uint32_t *cnt, int nthr, int nh) {
  uint32_t run = 0;
  for (int u = nthr - 1; u >= 0; u--) {
    if (run + part[u] < (uint32_t)nh) {
      run += part[u];
      continue;
    }
    int lo, hi;
    synco_k_sel_range(SYNCO_K_SEL_BINS, u, nthr, &lo, &hi);
    for (int b = hi - 1; b >= lo; b--) {
      run += cnt[b];
      if (run >= (uint32_t)nh) return (uint32_t)b;
    }
  }
  return 0;
}

SYNCO_HD static inline void synco_k_sel_keep_count(uint32_t *part, const uint32_t *bin, int K, uint32_t cut, int t,
                                                   int nthr) {
  int lo, hi;
  synco_k_sel_range(K, t, nthr, &lo, &hi);
  uint32_t c = 0;
  for (int j = lo; j < hi; j++) c += bin[j] >= cut;
  part[t] = c;
}

/* In place: part[0..n) becomes its exclusive prefix sums; returns the total. */
SYNCO_HD static inline uint32_t synco_k_sel_scan(uint32_t *part, int n) {
  uint32_t run = 0;
  for (int u = 0; u < n; u++) {
    const uint32_t v = part[u];
    part[u] = run;
    run += v;
  }
  return run;
}

SYNCO_HD static inline void synco_k_sel_keep_write(uint32_t *k0, int32_t *i0, const float *x, const uint32_t *bin,
                                                   int K, uint32_t cut, const uint32_t *part, int t, int nthr) {
  int lo, hi;
  synco_k_sel_range(K, t, nthr, &lo, &hi);
  uint32_t at = part[t];
  for (int j = lo; j < hi; j++)
    if (bin[j] >= cut) {
      k0[at] = synco_k_order_bits(x[j]);
      i0[at++] = j;
    }
}

/* The counters of a radix pass, in the order of the scan: digit from the largest down, then lane. */
SYNCO_HD static inline int synco_k_sel_rslot(int q) {
  const int digit = SYNCO_K_SEL_DIGITS - 1 - q / SYNCO_K_SEL_LANES, lane = q % SYNCO_K_SEL_LANES;
  return digit * SYNCO_K_SEL_LANES + lane;
}

SYNCO_HD static inline void synco_k_sel_rhist(uint32_t *hist, const uint32_t *kin, int c, int shift, int u) {
  for (int d = 0; d < SYNCO_K_SEL_DIGITS; d++) hist[d * SYNCO_K_SEL_LANES + u] = 0;
  int lo, hi;
  synco_k_sel_range(c, u, SYNCO_K_SEL_LANES, &lo, &hi);
  for (int j = lo; j < hi; j++) hist[((kin[j] >> shift) & (SYNCO_K_SEL_DIGITS - 1)) * SYNCO_K_SEL_LANES + u]++;
}

SYNCO_HD static inline void synco_k_sel_rsum(uint32_t *part, const uint32_t *hist, int t, int nthr) {
  int lo, hi;
  synco_k_sel_range(SYNCO_K_SEL_DIGITS * SYNCO_K_SEL_LANES, t, nthr, &lo, &hi);
  uint32_t s = 0;
  for (int q = lo; q < hi; q++) s += hist[synco_k_sel_rslot(q)];
  part[t] = s;
}

/* The counters become each (digit, lane)'s first output position. */
SYNCO_HD static inline void synco_k_sel_roffsets(uint32_t *hist, const uint32_t *part, int t, int nthr) {
  int lo, hi;
  synco_k_sel_range(SYNCO_K_SEL_DIGITS * SYNCO_K_SEL_LANES, t, nthr, &lo, &hi);
  uint32_t run = part[t];
  for (int q = lo; q < hi; q++) {
    const int s = synco_k_sel_rslot(q);
    const uint32_t v = hist[s];
    hist[s] = run;
    run += v;
  }
}

SYNCO_HD static inline void synco_k_sel_rscatter(uint32_t *kout, int32_t *iout, const uint32_t *kin, const int32_t *iin,
                                                 int c, int shift, uint32_t *hist, int u) {
  int lo, hi;
  synco_k_sel_range(c, u, SYNCO_K_SEL_LANES, &lo, &hi);
  for (int j = lo; j < hi; j++) {
    const uint32_t at = hist[((kin[j] >> shift) & (SYNCO_K_SEL_DIGITS - 1)) * SYNCO_K_SEL_LANES + u]++;
    kout[at] = kin[j];
    iout[at] = iin[j];
  }
}

SYNCO_HD static inline void synco_k_sel_emit(int32_t *h, const int32_t *i0, int nh, int t, int nthr) {
  for (int p = t; p < nh; p += nthr) h[p] = i0[p];
}

/* ---- forward --------------------------------------------------------------------------------------------- */

SYNCO_HD static inline float synco_k_dotf(const float *a, const float *b, int n) {
  float s = 0.f;
  SYNCO_K_PRAGMA("omp simd reduction(+ : s)")
  for (int c = 0; c < n; c++) s += a[c] * b[c];
  return s;
}

/* Per query: ‖q‖², Σ|q| and the number of non-zeros of q in double, sign(q) into sg [dim]. */
SYNCO_HD static inline void synco_k_neg_query_stats(const float *qi, int dim, float *sg, double *qq, double *qabs,
                                                    double *nz) {
  double a = 0.0, b = 0.0, z = 0.0;
  for (int c = 0; c < dim; c++) {
    a += (double)qi[c] * qi[c];
    b += fabs((double)qi[c]);
    sg[c] = qi[c] > 0.f ? 1.f : (qi[c] < 0.f ? -1.f : 0.f);
    z += sg[c] != 0.f;
  }
  *qq = a;
  *qabs = b;
  *nz = z;
}

/* Logit q·s/T of s = s_raw / max(‖s_raw‖, eps) from num = q·s_raw and den2 = ‖s_raw‖². */
SYNCO_HD static inline float synco_k_neg_finish(double num, double den2, double invT, float *inv_out) {
  double nrm = sqrt(den2 > 0.0 ? den2 : 0.0);
  if (nrm < 1e-12) nrm = 1e-12;
  const double inv = 1.0 / nrm;
  *inv_out = (float)inv;
  return (float)(num * inv * invT);
}

/* One query's inputs to its synthetic logits. */
typedef struct {
  int i;              /* the query */
  const float *q;     /* q_i [dim] */
  const float *l;     /* q_i·Qᵀ [K] (raw dots) */
  const int32_t *h;   /* its hard set [n_hard] */
  const float *sg;    /* sign(q_i) [dim] */
  double qq, qabs, nz;
} synco_k_neg_row;

/* Type (0..5) and index within its block of synthetic o. */
SYNCO_HD static inline int synco_k_neg_type_of(const int n[SYNCO_NEG_TYPES], int o, int *s) {
  int t = 0;
  while (t < SYNCO_NEG_TYPES - 1 && o >= n[t]) o -= n[t++];
  *s = o;
  return t;
}

/* Synthetic logit o (0..total) of query r->i, its inverse norm into *inv; *bad = 1 when a drawn position is outside
 * 0..n_hard-1 (the position is clamped, so nothing is read out of bounds). */
SYNCO_HD static inline float synco_k_neg_logit(const synco_negatives_draws *d, const synco_k_neg_row *r, int o,
                                               const float *queue, double invT, float *inv, int *bad) {
  const int dim = d->dim, nh = d->n_hard, i = r->i;
  const float *li = r->l;
  const int32_t *h = r->h;
  int s;
  const int t = synco_k_neg_type_of(d->n, o, &s);
  const size_t at = (size_t)i * d->n[t] + s;
/* Reads a position, clamping a bad one (from an externally filled draw) and flagging it. */
#define SYNCO_K_ROW(pp) (((unsigned)(pp) < (unsigned)nh) ? h[(pp)] : (*bad = 1, h[0]))
  switch (t) {
    case 0: { /* α·q + (1−α)·n */
      const int j = SYNCO_K_ROW(d->pos[0][at]);
      const double a = d->coef[0][at], b = 1.0 - a, qn = li[j];
      return synco_k_neg_finish(a * r->qq + b * qn, a * a * r->qq + 2 * a * b * qn + b * b * d->row_sq[j], invT, inv);
    }
    case 1: { /* q + β·(n − q) = (1−β)·q + β·n */
      const int j = SYNCO_K_ROW(d->pos[1][at]);
      const double bt = d->coef[1][at], a = 1.0 - bt, qn = li[j];
      return synco_k_neg_finish(a * r->qq + bt * qn, a * a * r->qq + 2 * a * bt * qn + bt * bt * d->row_sq[j], invT,
                                inv);
    }
    case 2: { /* γ·n_i + (1−γ)·n_j */
      const int32_t *pp = d->pos[2] + at * 2;
      const int ja = SYNCO_K_ROW(pp[0]), jb = SYNCO_K_ROW(pp[1]);
      const double g = d->coef[2][at], g1 = 1.0 - g;
      const double ab = synco_k_dotf(queue + (size_t)ja * dim, queue + (size_t)jb * dim, dim);
      return synco_k_neg_finish(g * li[ja] + g1 * li[jb],
                                g * g * d->row_sq[ja] + 2 * g * g1 * ab + g1 * g1 * d->row_sq[jb], invT, inv);
    }
    case 3: { /* n + ε */
      const int j = SYNCO_K_ROW(d->pos[3][at]);
      const float *e = d->noise + at * (size_t)dim, *n = queue + (size_t)j * dim, *qi = r->q;
      float qe = 0.f, ne = 0.f, ee = 0.f;
      SYNCO_K_PRAGMA("omp simd reduction(+ : qe, ne, ee)")
      for (int c = 0; c < dim; c++) {
        qe += qi[c] * e[c];
        ne += n[c] * e[c];
        ee += e[c] * e[c];
      }
      return synco_k_neg_finish((double)li[j] + qe, (double)d->row_sq[j] + 2.0 * ne + ee, invT, inv);
    }
    case 4: { /* n + δ·q */
      const int j = SYNCO_K_ROW(d->pos[4][at]);
      const double qn = li[j], delta = d->delta;
      return synco_k_neg_finish(qn + delta * r->qq, d->row_sq[j] + 2 * delta * qn + delta * delta * r->qq, invT, inv);
    }
    default: { /* n + η·sign(q) */
      const int j = SYNCO_K_ROW(d->pos[5][at]);
      const double ns = synco_k_dotf(queue + (size_t)j * dim, r->sg, dim), qn = li[j], eta = d->eta;
      return synco_k_neg_finish(qn + eta * r->qabs, d->row_sq[j] + 2 * eta * ns + eta * eta * r->nz, invT, inv);
    }
  }
#undef SYNCO_K_ROW
}

/* ---- backward -------------------------------------------------------------------------------------------- */

/* Query i's backward through its synthetic logits, all but the dim-sized parts: W[p] (n_hard floats, zeroed here)
 * gets the weight of hard position p in Σ g·s/T (types 1-6), *cq and *cs the coefficients of q and sign(q).
 * g, inv: the query's g_syn row and inverse norms. Positions are clamped so a misuse cannot write out of bounds. */
SYNCO_HD static inline void synco_k_neg_bwd_weights(const synco_negatives_draws *d, int i, const float *g,
                                                    const float *inv, double invT, float *W, double *cq_out,
                                                    double *cs_out) {
  const int nh = d->n_hard;
  const int n1 = d->n[0], n2 = d->n[1], n3 = d->n[2], n4 = d->n[3], n5 = d->n[4], n6 = d->n[5];
  const double delta = d->delta, eta = d->eta;
  for (int p = 0; p < nh; p++) W[p] = 0.f;
  double cq = 0.0, cs = 0.0;
  int o = 0;
#define SYNCO_K_POS(pp) (((unsigned)(pp) < (unsigned)nh) ? (pp) : 0)
  for (int s = 0; s < n1; s++, o++) {
    const double w = g[o] * inv[o] * invT, a = d->coef[0][(size_t)i * n1 + s];
    cq += w * a;
    W[SYNCO_K_POS(d->pos[0][(size_t)i * n1 + s])] += (float)(w * (1.0 - a));
  }
  for (int s = 0; s < n2; s++, o++) {
    const double w = g[o] * inv[o] * invT, bt = d->coef[1][(size_t)i * n2 + s];
    cq += w * (1.0 - bt);
    W[SYNCO_K_POS(d->pos[1][(size_t)i * n2 + s])] += (float)(w * bt);
  }
  for (int s = 0; s < n3; s++, o++) {
    const double w = g[o] * inv[o] * invT, gm = d->coef[2][(size_t)i * n3 + s];
    const int32_t *pp = d->pos[2] + ((size_t)i * n3 + s) * 2;
    W[SYNCO_K_POS(pp[0])] += (float)(w * gm);
    W[SYNCO_K_POS(pp[1])] += (float)(w * (1.0 - gm));
  }
  for (int s = 0; s < n4; s++, o++) W[SYNCO_K_POS(d->pos[3][(size_t)i * n4 + s])] += (float)(g[o] * inv[o] * invT);
  for (int s = 0; s < n5; s++, o++) {
    const double w = g[o] * inv[o] * invT;
    cq += w * delta;
    W[SYNCO_K_POS(d->pos[4][(size_t)i * n5 + s])] += (float)w;
  }
  for (int s = 0; s < n6; s++, o++) {
    const double w = g[o] * inv[o] * invT;
    cs += w * eta;
    W[SYNCO_K_POS(d->pos[5][(size_t)i * n6 + s])] += (float)w;
  }
#undef SYNCO_K_POS
  *cq_out = cq;
  *cs_out = cs;
}

/* The weight of type-4 synthetic s of a query in dq (its noise vector's coefficient). */
SYNCO_HD static inline float synco_k_neg_w4(const synco_negatives_draws *d, const float *g, const float *inv, int s,
                                            double invT) {
  const int o = d->n[0] + d->n[1] + d->n[2] + s;
  return (float)(g[o] * inv[o] * invT);
}

/* Last term of one dq element: the q- and sign(q)-parts, fq = (float)cq, fs = (float)cs. */
SYNCO_HD static inline float synco_k_neg_dq_final(float dq, float qc, float fq, float fs) {
  return dq + (fq * qc + (qc > 0.f ? fs : (qc < 0.f ? -fs : 0.f)));
}

#endif
