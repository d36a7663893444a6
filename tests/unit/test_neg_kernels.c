/* The single-source negatives kernels (kernels/negatives_kernel.h) composed as the CUDA backend composes them,
 * run here on the CPU and compared bit for bit with the reference backend's ops, so that the GPU's arithmetic is
 * tested on every machine:
 *  - the stream seek and the word at an index give the serial stream's words (any position, any count);
 *  - the draws made from the serial stream (each query's words in order, the noise's as they come), as the GPU
 *    makes them (one pass per query that skips the noise and records where its words start, then every noise pair
 *    from its word index) and as synco_ref_neg_draw makes them (that pass, then each synthetic's Philox blocks in
 *    vector lanes) are the same, for odd and even dim and an n_hard that is not a power of two (so rejection in
 *    synco_rng_below happens);
 *  - the hard-set selection split as the GPU's block does it (strided min/max, histogram, then the cut, ordered
 *    compaction and radix sort on one thread, or by the block's threads and lanes, with 128 and 256 threads)
 *    equals synco_k_select_hard on rows with ties;
 *  - the backward as the GPU's block does it (weights first, then each dq element over the noise vectors in
 *    order, then the scatter) equals synco_ref_neg_backward. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/rng.h"
#include "kernels/negatives_kernel.h"
#include "ssl/negatives.h"
#include "test_util.h"

static synco_backend *test_be(void) {
  static synco_backend *be;
  if (!be && synco_backend_ref_create(&be) != SYNCO_OK) abort();
  return be;
}

static void test_seek(void) {
  synco_rng r = synco_rng_make(11, 3, 5, SYNCO_RNG_NEGATIVES);
  uint32_t serial[64];
  for (int c = 0; c < 64; c++) serial[c] = synco_rng_u32(&r);
  synco_rng t0 = synco_rng_make(11, 3, 5, SYNCO_RNG_NEGATIVES);
  for (int c = 0; c < 64; c++) CHECK(synco_k_rng_word_at(&t0, (uint64_t)c) == serial[c]);
  for (int at = 0; at < 40; at++) {
    synco_rng t = synco_rng_make(11, 3, 5, SYNCO_RNG_NEGATIVES);
    for (int c = 0; c < at % 7; c++) (void)synco_rng_u32(&t); /* seek from anywhere, forward */
    synco_k_rng_seek(&t, (uint64_t)at);
    CHECK(synco_k_rng_count(&t) == (uint64_t)at);
    for (int c = at; c < 64; c++) CHECK(synco_rng_u32(&t) == serial[c]);
  }
}

/* The GPU's draw: pass 1 per query, pass 2 per (query, synthetic, pair). */
static void gpu_style_draw(synco_negatives_draws *d, const synco_negatives_config *cfg, uint64_t seed, uint64_t step,
                           uint64_t query0) {
  const int n4 = d->n[3], dim = d->dim;
  uint64_t *w0 = malloc((size_t)d->B * (n4 ? n4 : 1) * sizeof *w0);
  synco_rng *rs = malloc((size_t)d->B * sizeof *rs);
  for (int i = 0; i < d->B; i++) synco_k_neg_draw_query(d, i, seed, step, query0, cfg->sigma, NULL, w0 + (size_t)i * n4, &rs[i]);
  for (int i = 0; i < d->B; i++)
    for (int s = 0; s < n4; s++)
      for (int k = 0; k < (dim + 1) / 2; k++)
        synco_k_neg_noise_pair(d->noise + ((size_t)i * n4 + s) * dim, &rs[i], w0[(size_t)i * n4 + s], k, dim, cfg->sigma);
  free(w0);
  free(rs);
}

/* The definition: each query's stream drawn word after word, the noise made as its words come. */
static void serial_draw(synco_negatives_draws *d, const synco_negatives_config *cfg, uint64_t seed, uint64_t step,
                        uint64_t query0) {
  uint32_t *words = malloc((size_t)(d->dim + 1) * sizeof *words);
  for (int i = 0; i < d->B; i++) synco_k_neg_draw_query(d, i, seed, step, query0, cfg->sigma, words, NULL, NULL);
  free(words);
}

static size_t pos_len(const synco_negatives_draws *d, int t) { return (size_t)d->B * d->n[t] * (t == 2 ? 2 : 1); }

static void same_draws(const synco_negatives_draws *a, const synco_negatives_draws *b) {
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) CHECK(!memcmp(a->pos[t], b->pos[t], pos_len(a, t) * sizeof(int32_t)));
  for (int t = 0; t < 3; t++) CHECK(!memcmp(a->coef[t], b->coef[t], (size_t)a->B * a->n[t] * sizeof(float)));
  CHECK(!memcmp(a->noise, b->noise, (size_t)a->B * a->n[3] * a->dim * sizeof(float)));
}

static void test_draws(int dim, int n_hard) {
  synco_negatives_config cfg = {.n_hard = n_hard, .n = {5, 4, 3, 6, 2, 2}, .sigma = 0.3f, .delta = 0.01f, .eta = 0.01f};
  const int B = 7, K = 64;
  synco_negatives_draws a, b, c;
  CHECK_OK(synco_negatives_init(&a, test_be(), &cfg, B, dim, K));
  CHECK_OK(synco_negatives_init(&b, test_be(), &cfg, B, dim, K));
  CHECK_OK(synco_negatives_init(&c, test_be(), &cfg, B, dim, K));
  CHECK_OK(synco_negatives_draw_at(&a, &cfg, 42, 9, 100));
  gpu_style_draw(&b, &cfg, 42, 9, 100);
  serial_draw(&c, &cfg, 42, 9, 100);
  same_draws(&c, &a);
  same_draws(&c, &b);
  synco_negatives_free(&a);
  synco_negatives_free(&b);
  synco_negatives_free(&c);
}

/* The GPU block's selection (the phases of kernels/negatives_kernel.h the CUDA kernel runs), with `nthr` threads
 * run one after the other between the barriers; the last phase by one thread (synco_k_sel_finish) or, with
 * `parallel`, as the block's threads and lanes run it (cut, compaction, radix passes, emit). */
static void gpu_style_select(int32_t *h, const float *x, int K, int nh, uint32_t *ws, int nthr, int parallel) {
  float mns[256], mxs[256], mn, scale;
  for (int t = 0; t < nthr; t++) synco_k_sel_minmax(x, K, t, nthr, &mns[t], &mxs[t]);
  for (int b = 0; b < SYNCO_K_SEL_BINS; b++) ws[4 * (size_t)K + b] = 0;
  synco_k_sel_reduce(mns, mxs, nthr, x[0], &mn, &scale);
  for (int t = nthr - 1; t >= 0; t--) synco_k_sel_bins(ws, x, K, t, nthr, mn, scale); /* any order */
  if (!parallel) {
    synco_k_sel_finish(h, x, K, nh, ws);
    return;
  }
  uint32_t part[256], *k0 = ws, *k1 = ws + K, *cnt = ws + 4 * (size_t)K;
  int32_t *i0 = (int32_t *)(ws + 2 * (size_t)K), *i1 = (int32_t *)(ws + 3 * (size_t)K);
  for (int t = 0; t < nthr; t++) synco_k_sel_cut_part(part, cnt, t, nthr);
  const uint32_t cut = synco_k_sel_cut_find(part, cnt, nthr, nh);
  CHECK(cut == synco_k_sel_cut(cnt, nh));
  for (int t = 0; t < nthr; t++) synco_k_sel_keep_count(part, k1, K, cut, t, nthr);
  const int c = (int)synco_k_sel_scan(part, nthr);
  for (int t = nthr - 1; t >= 0; t--) synco_k_sel_keep_write(k0, i0, x, k1, K, cut, part, t, nthr);
  for (int pass = 0; pass < SYNCO_K_SEL_PASSES; pass++) {
    const int shift = pass * SYNCO_K_SEL_RADIX_BITS;
    uint32_t *kin = pass % 2 ? k1 : k0, *kout = pass % 2 ? k0 : k1;
    int32_t *iin = pass % 2 ? i1 : i0, *iout = pass % 2 ? i0 : i1;
    for (int u = SYNCO_K_SEL_LANES - 1; u >= 0; u--) synco_k_sel_rhist(cnt, kin, c, shift, u);
    for (int t = 0; t < nthr; t++) synco_k_sel_rsum(part, cnt, t, nthr);
    synco_k_sel_scan(part, nthr);
    for (int t = nthr - 1; t >= 0; t--) synco_k_sel_roffsets(cnt, part, t, nthr);
    for (int u = SYNCO_K_SEL_LANES - 1; u >= 0; u--) synco_k_sel_rscatter(kout, iout, kin, iin, c, shift, cnt, u);
  }
  for (int t = 0; t < nthr; t++) synco_k_sel_emit(h, i0, nh, t, nthr);
}

static void test_select(void) {
  const int K = 1000;
  float *x = malloc(K * sizeof *x);
  uint32_t *ws = malloc((4 * (size_t)K + SYNCO_K_SEL_BINS) * sizeof *ws);
  int32_t h1[300], h2[300];
  for (int trial = 0; trial < 6; trial++) {
    synco_test_fill(x, K, 100 + trial, -1.f, 1.f);
    if (trial >= 2)
      for (int j = 0; j < K; j++) x[j] = roundf(x[j] * (trial == 5 ? 1 : 20)) / 20; /* ties; a flat-ish row */
    if (trial == 4)
      for (int j = 0; j < K; j++) x[j] = 0.25f;
    const int nh = trial == 1 ? 1 : 300;
    synco_k_select_hard(h1, x, K, nh, ws);
    gpu_style_select(h2, x, K, nh, ws, 256, 0);
    CHECK(!memcmp(h1, h2, nh * sizeof *h1));
    for (int nthr = 128; nthr <= 256; nthr += 128) { /* the parallel finish, with as many threads as lanes and more */
      memset(h2, 0xff, sizeof h2);
      gpu_style_select(h2, x, K, nh, ws, nthr, 1);
      CHECK(!memcmp(h1, h2, nh * sizeof *h1));
    }
    for (int p = 1; p < nh; p++)
      CHECK(x[h1[p - 1]] > x[h1[p]] || (x[h1[p - 1]] == x[h1[p]] && h1[p - 1] < h1[p]));
  }
  free(x);
  free(ws);
}

static void test_backward(void) {
  synco_negatives_config cfg = {.n_hard = 24, .n = {5, 4, 3, 6, 2, 2}, .sigma = 0.1f, .delta = 0.02f, .eta = 0.03f};
  const int B = 5, K = 80, dim = 17, S = synco_negatives_total(&cfg);
  const float T = 0.2f;
  synco_negatives_draws d;
  CHECK_OK(synco_negatives_init(&d, test_be(), &cfg, B, dim, K));
  CHECK_OK(synco_negatives_draw(&d, &cfg, B, dim, 5, 1));
  float *q = malloc((size_t)B * dim * 4), *queue = malloc((size_t)K * dim * 4), *l = malloc((size_t)B * K * 4);
  float *syn = malloc((size_t)B * S * 4), *g = malloc((size_t)B * S * 4);
  float *dq1 = malloc((size_t)B * dim * 4), *dq2 = malloc((size_t)B * dim * 4);
  float *gr1 = malloc((size_t)B * K * 4), *gr2 = malloc((size_t)B * K * 4);
  synco_test_fill(q, (size_t)B * dim, 1, -1, 1);
  synco_test_fill(queue, (size_t)K * dim, 2, -1, 1);
  for (int i = 0; i < B; i++)
    for (int j = 0; j < K; j++) l[i * K + j] = synco_k_dotf(q + i * dim, queue + j * dim, dim);
  CHECK_OK(synco_negatives_logits(&d, syn, S, l, K, q, queue, T));
  synco_test_fill(g, (size_t)B * S, 3, -0.1f, 0.1f);
  synco_test_fill(dq1, (size_t)B * dim, 4, -1, 1);
  memcpy(dq2, dq1, (size_t)B * dim * 4);
  synco_test_fill(gr1, (size_t)B * K, 5, -1, 1);
  memcpy(gr2, gr1, (size_t)B * K * 4);
  CHECK_OK(synco_negatives_backward(&d, dq1, gr1, K, g, S, q, T));
  const double invT = 1.0 / T;
  float W[24];
  for (int i = 0; i < B; i++) { /* the GPU block of query i */
    const float *gi = g + i * S, *inv = d.inv_norm + i * S, *qi = q + i * dim;
    double cq, cs;
    synco_k_neg_bwd_weights(&d, i, gi, inv, invT, W, &cq, &cs);
    for (int c = dim - 1; c >= 0; c--) { /* one thread per element */
      float acc = dq2[i * dim + c];
      for (int s = 0; s < d.n[3]; s++)
        acc += synco_k_neg_w4(&d, gi, inv, s, invT) * d.noise[((size_t)i * d.n[3] + s) * dim + c];
      dq2[i * dim + c] = synco_k_neg_dq_final(acc, qi[c], (float)cq, (float)cs);
    }
    for (int p = 0; p < d.n_hard; p++) gr2[i * K + d.hard[i * d.n_hard + p]] += W[p];
  }
  CHECK(!memcmp(dq1, dq2, (size_t)B * dim * 4));
  CHECK(!memcmp(gr1, gr2, (size_t)B * K * 4));
  free(q), free(queue), free(l), free(syn), free(g), free(dq1), free(dq2), free(gr1), free(gr2);
  synco_negatives_free(&d);
}

int main(void) {
  test_seek();
  test_draws(16, 32);
  test_draws(17, 24);
  test_draws(3, 7);
  test_select();
  test_backward();
  return synco_test_finish("neg_kernels");
}
