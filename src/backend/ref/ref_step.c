/* Step ops of the reference backend (also the cpu backend's, but for the GEMM: they are memory-bound loops): GEMM
 * through OpenBLAS (the cpu backend's is backend/host_gemm.h's), SGD and EMA as parallel loops over the single-source element kernels, the
 * queue's FIFO write, the row permutation of the key shuffle, and the rows of the InfoNCE loss. */
#include <cblas.h>
#include <string.h>

#include "backend/ref/ref_internal.h"
#include "kernels/infonce_kernel.h"
#include "kernels/sgd_kernel.h"
#include "kernels/xent_kernel.h"

synco_status synco_ref_gemm(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  (void)be;
  if (m < 0 || n < 0 || k < 0 || (m && n && (!c || (k && (!a || !b)))))
    return synco_fail(SYNCO_ERR_ARG, "gemm: %d x %d x %d with a missing matrix", m, n, k);
  if (!m || !n) return SYNCO_OK;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
              a, lda, b, ldb, beta, c, ldc);
  return SYNCO_OK;
}

synco_status synco_ref_sgd(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr,
                           float momentum, float wd, int first) {
  (void)be;
  if (n && (!p || !grad || (momentum != 0.f && !buf)))
    return synco_fail(SYNCO_ERR_ARG, "sgd: a buffer of %zu values is missing", n);
  const long nn = (long)n;
  /* Three loops so that each vectorizes without a branch in its body (the kernel's branches are uniform). */
  if (momentum == 0.f) {
#pragma omp parallel for simd schedule(dynamic, 65536)
    for (long i = 0; i < nn; i++) synco_k_sgd(&p[i], NULL, grad[i], lr, 0.f, wd, 0);
  } else if (first) {
#pragma omp parallel for simd schedule(dynamic, 65536)
    for (long i = 0; i < nn; i++) synco_k_sgd(&p[i], &buf[i], grad[i], lr, momentum, wd, 1);
  } else {
#pragma omp parallel for simd schedule(dynamic, 65536)
    for (long i = 0; i < nn; i++) synco_k_sgd(&p[i], &buf[i], grad[i], lr, momentum, wd, 0);
  }
  return SYNCO_OK;
}

synco_status synco_ref_ema(synco_backend *be, float *k, const float *q, size_t n, float m) {
  (void)be;
  if (n && (!k || !q)) return synco_fail(SYNCO_ERR_ARG, "ema: a buffer of %zu values is missing", n);
  const long nn = (long)n;
  const float w = 1.0f - m;
#pragma omp parallel for simd schedule(dynamic, 65536)
  for (long i = 0; i < nn; i++) k[i] = synco_k_ema(k[i], q[i], m, w);
  return SYNCO_OK;
}

synco_status synco_ref_enqueue(synco_backend *be, float *queue, int K, int dim, int64_t *ptr, const float *rows,
                               int n) {
  (void)be;
  if (K < 1 || dim < 1 || n < 0 || n > K || !ptr || *ptr < 0 || *ptr >= K || (n && (!queue || !rows)))
    return synco_fail(SYNCO_ERR_ARG, "enqueue: %d rows into a queue of %d at %lld", n, K, ptr ? (long long)*ptr : -1LL);
  while (n > 0) { /* at most two pieces: the rows before the end of the queue, then from row 0 */
    const int64_t take = n < K - *ptr ? n : K - *ptr;
    memcpy(queue + (size_t)*ptr * dim, rows, (size_t)take * dim * sizeof(float));
    rows += (size_t)take * dim;
    n -= (int)take;
    *ptr = (*ptr + take) % K;
  }
  return SYNCO_OK;
}

synco_status synco_ref_permute_rows(synco_backend *be, float *dst, const float *src, const uint32_t *idx, int n,
                                    size_t cols, int scatter) {
  (void)be;
  if (n < 0 || (n && (!dst || !src || !idx))) return synco_fail(SYNCO_ERR_ARG, "permute_rows: a buffer is missing");
  for (int i = 0; i < n; i++) {
    const size_t d = scatter ? idx[i] : (size_t)i, s = scatter ? (size_t)i : idx[i];
    memcpy(dst + d * cols, src + s * cols, cols * sizeof(float));
  }
  return SYNCO_OK;
}

synco_status synco_ref_infonce_fwd(synco_backend *be, float *logits, int ld, double *row_loss, int *hits,
                                   const float *q, const float *k, int B, int K, int ncol, int dim, float T) {
  (void)be;
  if (B < 1 || K < 1 || dim < 1 || ncol < 1 + K || ld < ncol || !logits || !row_loss || !hits || !q || !k)
    return synco_fail(SYNCO_ERR_ARG, "infonce_fwd: B %d, K %d, %d columns of %d, dim %d, or a missing buffer", B, K,
                      ncol, ld, dim);
  for (int i = 0; i < B; i++) { /* the positive logit, a vectorized sum (its order is the compiler's) */
    const float *qi = q + (size_t)i * dim, *ki = k + (size_t)i * dim;
    float d = 0.f;
#pragma omp simd reduction(+ : d)
    for (int c = 0; c < dim; c++) d += qi[c] * ki[c];
    logits[(size_t)i * ld] = d;
  }
  const float invT = 1.0f / T;
#pragma omp parallel for schedule(dynamic, 4)
  for (int i = 0; i < B; i++)
    row_loss[i] = synco_k_infonce_row(logits + (size_t)i * ld, K, ncol, invT, hits + 2 * i, row_loss + B + i);
  return SYNCO_OK;
}

synco_status synco_ref_infonce_bwd(synco_backend *be, float *logits, int ld, float *dq, const float *k, int B, int K,
                                   int ncol, int dim, float T) {
  (void)be;
  if (B < 1 || K < 1 || dim < 1 || ncol < 1 + K || ld < ncol || !logits || !dq || !k)
    return synco_fail(SYNCO_ERR_ARG, "infonce_bwd: B %d, K %d, %d columns of %d, dim %d, or a missing buffer", B, K,
                      ncol, ld, dim);
  const float invT = 1.0f / T, invB = 1.0f / (float)B;
  for (int i = 0; i < B; i++) {
    float *g = logits + (size_t)i * ld;
    synco_k_infonce_grad_row(g, K, ncol, invB, invT);
    const float *ki = k + (size_t)i * dim;
    float *dqi = dq + (size_t)i * dim;
    for (int c = 0; c < dim; c++) dqi[c] = g[0] * ki[c];
  }
  return SYNCO_OK;
}

synco_status synco_ref_loss_record(synco_backend *be, double *rec, const double *row_loss, const int *hits, int B,
                                   double tag) {
  (void)be;
  if (B < 1 || !rec || !row_loss || !hits)
    return synco_fail(SYNCO_ERR_ARG, "loss_record: B %d, or a missing buffer", B);
  synco_k_loss_record(rec, row_loss, hits, B, tag);
  return SYNCO_OK;
}

synco_status synco_ref_xent(synco_backend *be, float *dz, const float *z, const int *labels, int n, int C, float scale,
                            double *rec, double tag) {
  (void)be;
  if (n < 1 || C < 1 || !z || !labels || !rec) return synco_fail(SYNCO_ERR_ARG, "xent: %d x %d, or a missing buffer", n, C);
  double loss = 0.0;
  long hits = 0;
  for (int i = 0; i < n; i++) { /* in row order: the sum the CUDA backend's one-thread pass makes */
    if (labels[i] < 0 || labels[i] >= C) return synco_fail(SYNCO_ERR_ARG, "xent: label %d outside [0, %d)", labels[i], C);
    int h;
    loss += synco_k_xent_row(z + (size_t)i * C, C, labels[i], dz ? dz + (size_t)i * C : NULL, scale, &h);
    hits += h;
  }
  synco_k_xent_add(rec, loss, hits, n, tag);
  return SYNCO_OK;
}
