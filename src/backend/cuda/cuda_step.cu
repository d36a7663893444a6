/* Step ops of the CUDA backend: GEMM through cuBLAS (row-major, as the op table says, by computing the
 * column-major transpose: C^T = op(B)^T·op(A)^T; the linear layers' under --precision bf16 multiply in bf16,
 * cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF on fp32 matrices), SGD and EMA as one launch over the whole buffer of the
 * single-source element kernels (kernels/sgd_kernel.h), the queue's FIFO write (its pointer in device memory), the
 * key shuffle's row gather / scatter, the InfoNCE rows (kernels/infonce_kernel.h's arithmetic), one block per
 * row, and the loss record those rows add to on the device; a classifier's cross-entropy (a thread per row, then
 * one thread adding the rows in order to its record). */
#include "backend/cuda/cuda_internal.h"
#include "kernels/infonce_kernel.h"
#include "kernels/sgd_kernel.h"
#include "kernels/xent_kernel.h"

static synco_status gemm(synco_backend *be, int lowp, int trans_a, int trans_b, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  if (m < 0 || n < 0 || k < 0 || (m && n && (!c || (k && (!a || !b)))))
    return synco_fail(SYNCO_ERR_ARG, "gemm: %d x %d x %d with a missing matrix", m, n, k);
  if (!m || !n) return SYNCO_OK;
  const cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (lowp)
    SYNCO_CUBLAS(cublasGemmEx(synco_cuda(be)->blas, ob, oa, n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda,
                              &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
  else
    SYNCO_CUBLAS(cublasSgemm(synco_cuda(be)->blas, ob, oa, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
  return SYNCO_OK;
}

synco_status synco_cuda_gemm(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  return gemm(be, 0, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

synco_status synco_cuda_gemm_layer(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  return gemm(be, synco_cuda(be)->bf16, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- SGD, EMA ----------------------------------------------------------------------------------------- */

__global__ void sgd_kernel(float *p, float *buf, const float *grad, size_t n, float lr, float momentum, float wd,
                           int first) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    synco_k_sgd(&p[i], momentum == 0.f ? NULL : &buf[i], grad[i], lr, momentum, wd, first);
}

__global__ void ema_kernel(float *k, const float *q, size_t n, float m, float w) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    k[i] = synco_k_ema(k[i], q[i], m, w);
}

/* Grid-stride launches: enough blocks to fill the GPU, not one per element. */
static unsigned stride_blocks(size_t n) {
  const unsigned b = synco_cuda_blocks(n, SYNCO_CUDA_THREADS);
  return b < 65536u ? b : 65536u;
}

synco_status synco_cuda_sgd(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr,
                            float momentum, float wd, int first) {
  if (n && (!p || !grad || (momentum != 0.f && !buf)))
    return synco_fail(SYNCO_ERR_ARG, "sgd: a buffer of %zu values is missing", n);
  if (!n) return SYNCO_OK;
  sgd_kernel<<<stride_blocks(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(p, buf, grad, n, lr, momentum, wd,
                                                                                 first);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_ema(synco_backend *be, float *k, const float *q, size_t n, float m) {
  if (n && (!k || !q)) return synco_fail(SYNCO_ERR_ARG, "ema: a buffer of %zu values is missing", n);
  if (!n) return SYNCO_OK;
  ema_kernel<<<stride_blocks(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(k, q, n, m, 1.0f - m);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- queue and shuffle -------------------------------------------------------------------------------- */

/* Row r of rows to queue row (*ptr + r) mod K: every thread reads the pointer, which only the next kernel moves (a
 * pointer outside 0..K-1 raises bad_input and writes nothing). */
__global__ void enqueue_kernel(float *queue, int K, int dim, const int64_t *ptr, const float *rows, int n, int *bad) {
  const int64_t p = *ptr;
  if (p < 0 || p >= K) {
    if (blockIdx.x == 0 && threadIdx.x == 0) *bad = 1;
    return;
  }
  const size_t total = (size_t)n * dim;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const size_t r = e / dim, c = e % dim;
    queue[((size_t)(p + (int64_t)r) % (size_t)K) * dim + c] = rows[e];
  }
}

__global__ void enqueue_advance_kernel(int64_t *ptr, int K, int n) {
  if (blockIdx.x == 0 && threadIdx.x == 0 && *ptr >= 0 && *ptr < K) *ptr = (*ptr + n) % K;
}

synco_status synco_cuda_enqueue(synco_backend *be, float *queue, int K, int dim, int64_t *ptr, const float *rows,
                                int n) {
  if (K < 1 || dim < 1 || n < 0 || n > K || !ptr || (n && (!queue || !rows)))
    return synco_fail(SYNCO_ERR_ARG, "enqueue: %d rows into a queue of %d, or a missing buffer", n, K);
  if (!n) return SYNCO_OK;
  cudaStream_t s = synco_cuda_stream(be);
  enqueue_kernel<<<stride_blocks((size_t)n * dim), SYNCO_CUDA_THREADS, 0, s>>>(queue, K, dim, ptr, rows, n,
                                                                              synco_cuda(be)->bad_input);
  SYNCO_LAUNCHED();
  enqueue_advance_kernel<<<1, 1, 0, s>>>(ptr, K, n);
  SYNCO_LAUNCHED();
  synco_cuda(be)->bad_input_armed = 1;
  return SYNCO_OK;
}

__global__ void permute_kernel(float *dst, const float *src, const uint32_t *idx, int n, size_t cols, int scatter) {
  const size_t total = (size_t)n * cols;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const size_t i = e / cols, c = e % cols;
    const size_t d = scatter ? idx[i] : i, s = scatter ? i : idx[i];
    dst[d * cols + c] = src[s * cols + c];
  }
}

synco_status synco_cuda_permute_rows(synco_backend *be, float *dst, const float *src, const uint32_t *idx, int n,
                                     size_t cols, int scatter) {
  if (n < 0 || (n && (!dst || !src || !idx))) return synco_fail(SYNCO_ERR_ARG, "permute_rows: a buffer is missing");
  if (!n || !cols) return SYNCO_OK;
  const size_t bytes = (size_t)n * cols * sizeof(float);
  if (!synco_cuda_is_device(src)) { /* the loader's batch in host memory: upload it once, then permute */
    void *stage;
    SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_STAGE, bytes, &stage));
    SYNCO_TRY(synco_cuda_upload(be, stage, src, bytes));
    src = (const float *)stage;
  }
  if (!synco_cuda_is_device(dst) || !synco_cuda_is_device(idx))
    return synco_fail(SYNCO_ERR_ARG, "cuda permute_rows: dst and idx must be GPU memory");
  permute_kernel<<<stride_blocks((size_t)n * cols), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(dst, src, idx, n,
                                                                                                   cols, scatter);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- InfoNCE ------------------------------------------------------------------------------------------ */

/* One block per row: the arithmetic of synco_k_infonce_row (kernels/infonce_kernel.h) spread over the row's
 * columns: scale the raw dots by 1/T, the maxima over the queue and over every negative (for both proxy hits), the
 * exponentials, their sums in double over every column and over columns 0..K (a tree, not the CPU's left-to-right
 * order), the normalization, and the cross-entropies log Σ − (z0 − max) with and without the synthetic columns. Rows are a few thousand columns: one thread each would be latency-bound. */
#define INFONCE_THREADS 256

__global__ void infonce_fwd_kernel(float *logits, int ld, double *row_loss, int *hits, const float *q, const float *k,
                                   int B, int K, int ncol, int dim, float invT) {
  __shared__ float fmx[INFONCE_THREADS], fq[INFONCE_THREADS];
  __shared__ double dsum[INFONCE_THREADS], dsumq[INFONCE_THREADS];
  __shared__ float s_mx, s_r;
  const int i = blockIdx.x, t = threadIdx.x, nt = blockDim.x;
  float *z = logits + (size_t)i * ld;
  /* the positive q_i·k_i */
  float d = 0.f;
  for (int c = t; c < dim; c += nt) d += q[(size_t)i * dim + c] * k[(size_t)i * dim + c];
  fq[t] = d;
  __syncthreads();
  for (int s = nt / 2; s > 0; s /= 2) {
    if (t < s) fq[t] += fq[t + s];
    __syncthreads();
  }
  if (t == 0) z[0] = fq[0];
  __syncthreads();
  /* scale, then the queue maximum and the maximum over every negative */
  float mq = -INFINITY, ma = -INFINITY;
  for (int j = t; j < ncol; j += nt) {
    if (j <= K) z[j] *= invT;
    if (j == 0) continue;
    if (j <= K) mq = z[j] > mq ? z[j] : mq;
    ma = z[j] > ma ? z[j] : ma;
  }
  fmx[t] = mq;
  fq[t] = ma;
  __syncthreads();
  for (int s = nt / 2; s > 0; s /= 2) {
    if (t < s) {
      fmx[t] = fmx[t + s] > fmx[t] ? fmx[t + s] : fmx[t];
      fq[t] = fq[t + s] > fq[t] ? fq[t + s] : fq[t];
    }
    __syncthreads();
  }
  if (t == 0) {
    const float z0 = z[0], mneg = fq[0];
    hits[2 * i] = z0 >= fmx[0];
    hits[2 * i + 1] = z0 >= mneg;
    s_mx = mneg > z0 ? mneg : z0;
  }
  __syncthreads();
  const float mx = s_mx;
  const double z0 = (double)z[0] - mx;
  __syncthreads(); /* every thread has read z[0] before it becomes an exponential */
  double sum = 0.0, sumq = 0.0; /* over every column, over the positive and the queue (MoCo's loss) */
  for (int j = t; j < ncol; j += nt) {
    const float e = expf(z[j] - mx);
    z[j] = e;
    sum += e;
    if (j <= K) sumq += e;
  }
  dsum[t] = sum;
  dsumq[t] = sumq;
  __syncthreads();
  for (int s = nt / 2; s > 0; s /= 2) {
    if (t < s) {
      dsum[t] += dsum[t + s];
      dsumq[t] += dsumq[t + s];
    }
    __syncthreads();
  }
  if (t == 0) {
    s_r = (float)(1.0 / dsum[0]);
    row_loss[i] = log(dsum[0]) - z0;
    row_loss[B + i] = log(dsumq[0]) - z0;
  }
  __syncthreads();
  const float r = s_r;
  for (int j = t; j < ncol; j += nt) z[j] *= r;
}

__global__ void infonce_bwd_kernel(float *logits, int ld, float *dq, const float *k, int B, int K, int ncol, int dim,
                                   float invB, float invT) {
  const int i = blockIdx.x;
  float *g = logits + (size_t)i * ld;
  __shared__ float g0;
  if (threadIdx.x == 0) { /* column 0 first: dq needs it */
    g[0] = (g[0] - 1.0f) * invB * invT;
    g0 = g[0];
  }
  __syncthreads();
  for (int j = 1 + threadIdx.x; j < ncol; j += blockDim.x) g[j] *= j <= K ? invB * invT : invB;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) dq[(size_t)i * dim + c] = g0 * k[(size_t)i * dim + c];
}

synco_status synco_cuda_infonce_fwd(synco_backend *be, float *logits, int ld, double *row_loss, int *hits,
                                    const float *q, const float *k, int B, int K, int ncol, int dim, float T) {
  if (B < 1 || K < 1 || dim < 1 || ncol < 1 + K || ld < ncol || !logits || !row_loss || !hits || !q || !k)
    return synco_fail(SYNCO_ERR_ARG, "infonce_fwd: B %d, K %d, %d columns of %d, dim %d, or a missing buffer", B, K,
                      ncol, ld, dim);
  infonce_fwd_kernel<<<B, INFONCE_THREADS, 0, synco_cuda_stream(be)>>>(logits, ld, row_loss, hits, q, k, B, K, ncol,
                                                                       dim, 1.0f / T);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_infonce_bwd(synco_backend *be, float *logits, int ld, float *dq, const float *k, int B, int K,
                                    int ncol, int dim, float T) {
  if (B < 1 || K < 1 || dim < 1 || ncol < 1 + K || ld < ncol || !logits || !dq || !k)
    return synco_fail(SYNCO_ERR_ARG, "infonce_bwd: B %d, K %d, %d columns of %d, dim %d, or a missing buffer", B, K,
                      ncol, ld, dim);
  /* the same products as synco_k_infonce_grad_row, a block per row */
  infonce_bwd_kernel<<<B, SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(logits, ld, dq, k, B, K, ncol, dim,
                                                                          1.0f / (float)B, 1.0f / T);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- the loss record ---------------------------------------------------------------------------------- */

/* One thread: the record's sums in row order, the same bits as the CPU backends' (a B-row reduction is a few
 * microseconds; what it saves is the download and the host synchronization of every step). */
__global__ void loss_record_kernel(double *rec, const double *row_loss, const int *hits, int B, double tag) {
  if (blockIdx.x == 0 && threadIdx.x == 0) synco_k_loss_record(rec, row_loss, hits, B, tag);
}

synco_status synco_cuda_loss_record(synco_backend *be, double *rec, const double *row_loss, const int *hits, int B,
                                    double tag) {
  if (B < 1 || !rec || !row_loss || !hits)
    return synco_fail(SYNCO_ERR_ARG, "loss_record: B %d, or a missing buffer", B);
  loss_record_kernel<<<1, 1, 0, synco_cuda_stream(be)>>>(rec, row_loss, hits, B, tag);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- a classifier's cross-entropy ------------------------------------------------------------------------- */

/* A thread per row: dz and the row's loss and hit (a label outside 0..C-1 raises bad_input, its row scores 0). */
__global__ void xent_rows_kernel(float *dz, const float *z, const int *labels, int n, int C, float scale,
                                 double *row_loss, int *row_hit, int *bad) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int y = labels[i];
  if (y < 0 || y >= C) {
    *bad = 1;
    row_loss[i] = 0.0;
    row_hit[i] = 0;
    return;
  }
  row_loss[i] = synco_k_xent_row(z + (size_t)i * C, C, y, dz ? dz + (size_t)i * C : NULL, scale, &row_hit[i]);
}

__global__ void xent_add_kernel(double *rec, const double *row_loss, const int *row_hit, int n, double tag) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double loss = 0.0;
  long hits = 0;
  for (int i = 0; i < n; i++) {
    loss += row_loss[i];
    hits += row_hit[i];
  }
  synco_k_xent_add(rec, loss, hits, n, tag);
}

synco_status synco_cuda_xent(synco_backend *be, float *dz, const float *z, const int *labels, int n, int C, float scale,
                             double *rec, double tag) {
  if (n < 1 || C < 1 || !z || !labels || !rec) return synco_fail(SYNCO_ERR_ARG, "xent: %d x %d, or a missing buffer", n, C);
  void *ws;
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_XENT, (size_t)n * (sizeof(double) + sizeof(int)), &ws));
  double *row_loss = (double *)ws;
  int *row_hit = (int *)(row_loss + n);
  cudaStream_t s = synco_cuda_stream(be);
  xent_rows_kernel<<<synco_cuda_blocks(n, 128), 128, 0, s>>>(dz, z, labels, n, C, scale, row_loss, row_hit,
                                                             synco_cuda(be)->bad_input);
  SYNCO_LAUNCHED();
  synco_cuda(be)->bad_input_armed = 1;
  xent_add_kernel<<<1, 1, 0, s>>>(rec, row_loss, row_hit, n, tag);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}
