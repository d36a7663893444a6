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

/* Per thread (d->nthreads, the backend's threads): the hard-set selection's 4·K + bins words, the backward's weight
 * per hard position, sign(q), and the noise's random words. Nothing kept by the backend itself. */
synco_status synco_ref_neg_workspace(synco_backend *be, const synco_negatives_draws *d, synco_negatives_workspace *ws) {
  (void)be;
  const size_t nt = (size_t)(d->nthreads > 0 ? d->nthreads : 1);
  *ws = (synco_negatives_workspace){
      .sel = nt * (4 * (size_t)d->K + SYNCO_K_SEL_BINS) * sizeof(uint32_t),
      .wpos = nt * (size_t)d->n_hard * sizeof(float),
      .sgn = nt * (size_t)d->dim * sizeof(float),
      .words = nt * (size_t)(d->dim + 1) * sizeof(uint32_t),
  };
  return SYNCO_OK;
}

/* ---- draws ------------------------------------------------------------------------------------------ */

synco_status synco_ref_neg_draw(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                                uint64_t seed, uint64_t step, uint64_t query0) {
  (void)be;
  if (d->total == 0) return SYNCO_OK;
  const int B = d->B, dim = d->dim;
  const float sigma = cfg->sigma;
  /* the workspace has d->nthreads shares (the threads at plan time); fewer run after a process lowers its count */
  const int nt = omp_get_max_threads() < d->nthreads ? omp_get_max_threads() : d->nthreads;
#pragma omp parallel for schedule(dynamic, 2) num_threads(nt)
  for (int i = 0; i < B; i++)
    synco_k_neg_draw_query(d, i, seed, step, query0, sigma, d->words + (size_t)omp_get_thread_num() * (size_t)(dim + 1),
                           NULL, NULL);
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
