/* SynCo's synthetic negatives on the GPU: launches over the single-source bodies of kernels/negatives_kernel.h,
 * composed as tests/unit/test_neg_kernels.c composes them on the CPU (where they are compared bit for bit with the
 * reference backend):
 *  - draws: one thread per query walks its stream, skipping the noise words and recording where they start; then
 *    one thread per (query, type-4 synthetic, pair of normals) makes its two words from their stream index;
 *  - selection: one block per query; min/max, bins and the histogram in parallel (shared-memory atomics, exact
 *    integer counts), then the cut, the candidates compacted in index order and a stable radix sort by the whole
 *    block (4-bit digits, 128 lanes), in shared memory when 4·K + 2048 words fit (K up to ~14000 on an H100), else
 *    in global scratch;
 *  - logits: ‖Q_j‖² one thread per queue row, the query's statistics one thread per query, then one thread per
 *    (query, synthetic) logit;
 *  - backward: one block per query: one thread accumulates the weights per hard position and the q- and sign(q)-
 *    coefficients (in synthetic order, as the CPU), then the threads make the dq elements (noise vectors in order)
 *    and scatter the weights into the queue-logit gradient (distinct queue rows, so no atomics).
 * Sums over dim (‖Q_j‖², n·n', the type-4 dots, n·sign(q)) run in index order here and in SIMD lanes on the CPU, so
 * logits agree to rounding; draws, hard sets (for the same logits) and the backward's arithmetic agree bit for bit. */
#include "backend/cuda/cuda_internal.h"
#include "kernels/negatives_kernel.h"

/* ---- draws -------------------------------------------------------------------------------------------- */

__global__ void neg_draw_query_kernel(synco_negatives_draws d, uint64_t seed, uint64_t step, uint64_t query0,
                                      float sigma, uint64_t *word0, synco_rng *rngs) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= d.B) return;
  synco_k_neg_draw_query(&d, i, seed, step, query0, sigma, NULL, word0 + (size_t)i * d.n[3], &rngs[i]);
}

__global__ void neg_noise_kernel(synco_negatives_draws d, float sigma, const uint64_t *word0, const synco_rng *rngs) {
  const int n4 = d.n[3], dim = d.dim, pairs = (dim + 1) / 2;
  const size_t total = (size_t)d.B * n4 * pairs;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const int k = (int)(e % pairs);
    const size_t is = e / pairs; /* query · n4 + synthetic */
    const int i = (int)(is / n4);
    synco_k_neg_noise_pair(d.noise + is * dim, &rngs[i], word0[is], k, dim, sigma);
  }
}

synco_status synco_cuda_neg_draw(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                                 uint64_t seed, uint64_t step, uint64_t query0) {
  if (d->total == 0) return SYNCO_OK;
  cudaStream_t s = synco_cuda_stream(be);
  void *w0, *rg;
  const int n4 = d->n[3];
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_NEG_WORD0, (size_t)d->B * (n4 ? n4 : 1) * sizeof(uint64_t), &w0));
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_NEG_RNG, (size_t)d->B * sizeof(synco_rng), &rg));
  neg_draw_query_kernel<<<synco_cuda_blocks(d->B, 128), 128, 0, s>>>(*d, seed, step, query0, cfg->sigma,
                                                                     (uint64_t *)w0, (synco_rng *)rg);
  SYNCO_LAUNCHED();
  if (n4) {
    const size_t total = (size_t)d->B * n4 * ((d->dim + 1) / 2);
    unsigned blocks = synco_cuda_blocks(total, SYNCO_CUDA_THREADS);
    if (blocks > 65536u) blocks = 65536u;
    neg_noise_kernel<<<blocks, SYNCO_CUDA_THREADS, 0, s>>>(*d, cfg->sigma, (const uint64_t *)w0, (const synco_rng *)rg);
    SYNCO_LAUNCHED();
  }
  return SYNCO_OK;
}

/* ---- selection ---------------------------------------------------------------------------------------- */

#define SEL_THREADS 256
static_assert(SEL_THREADS >= SYNCO_K_SEL_LANES, "the selection's radix passes need a thread per lane");

/* ws: 4·K + SYNCO_K_SEL_BINS words (shared memory when sel_global is NULL). */
__global__ void neg_select_kernel(int32_t *hard, const float *l_neg, int ld_lneg, int K, int nh, uint32_t *sel_global,
                                  int one_thread) {
  extern __shared__ uint32_t sh[];
  const int i = blockIdx.x, t = threadIdx.x;
  uint32_t *ws = sel_global ? sel_global + (size_t)i * (4 * (size_t)K + SYNCO_K_SEL_BINS) : sh;
  const float *x = l_neg + (size_t)i * ld_lneg;
  __shared__ float rmn[SEL_THREADS], rmx[SEL_THREADS];
  __shared__ float s_mn, s_scale;
  synco_k_sel_minmax(x, K, t, blockDim.x, &rmn[t], &rmx[t]);
  for (int j = t; j < SYNCO_K_SEL_BINS; j += blockDim.x) ws[4 * (size_t)K + j] = 0;
  __syncthreads();
  if (t == 0) synco_k_sel_reduce(rmn, rmx, blockDim.x, x[0], &s_mn, &s_scale);
  __syncthreads();
  synco_k_sel_bins(ws, x, K, t, blockDim.x, s_mn, s_scale);
  __syncthreads();
  if (one_thread) { /* SYNCO_CUDA_SEL=thread: the first kernel's last phase */
    if (t == 0) synco_k_sel_finish(hard + (size_t)i * nh, x, K, nh, ws);
    return;
  }
  /* the cut, the ordered compaction and the stable radix sort, by the whole block (kernels/negatives_kernel.h) */
  const int nthr = blockDim.x;
  __shared__ uint32_t part[SEL_THREADS];
  __shared__ uint32_t s_cut, s_c;
  uint32_t *k0 = ws, *k1 = ws + K, *cnt = ws + 4 * (size_t)K;
  int32_t *i0 = (int32_t *)(ws + 2 * (size_t)K), *i1 = (int32_t *)(ws + 3 * (size_t)K);
  synco_k_sel_cut_part(part, cnt, t, nthr);
  __syncthreads();
  if (t == 0) s_cut = synco_k_sel_cut_find(part, cnt, nthr, nh);
  __syncthreads();
  synco_k_sel_keep_count(part, k1, K, s_cut, t, nthr);
  __syncthreads();
  if (t == 0) s_c = synco_k_sel_scan(part, nthr);
  __syncthreads();
  synco_k_sel_keep_write(k0, i0, x, k1, K, s_cut, part, t, nthr);
  const int c = (int)s_c;
  for (int pass = 0; pass < SYNCO_K_SEL_PASSES; pass++) {
    const int shift = pass * SYNCO_K_SEL_RADIX_BITS;
    uint32_t *kin = pass % 2 ? k1 : k0, *kout = pass % 2 ? k0 : k1;
    int32_t *iin = pass % 2 ? i1 : i0, *iout = pass % 2 ? i0 : i1;
    __syncthreads();
    if (t < SYNCO_K_SEL_LANES) synco_k_sel_rhist(cnt, kin, c, shift, t);
    __syncthreads();
    synco_k_sel_rsum(part, cnt, t, nthr);
    __syncthreads();
    if (t == 0) synco_k_sel_scan(part, nthr);
    __syncthreads();
    synco_k_sel_roffsets(cnt, part, t, nthr);
    __syncthreads();
    if (t < SYNCO_K_SEL_LANES) synco_k_sel_rscatter(kout, iout, kin, iin, c, shift, cnt, t);
  }
  __syncthreads();
  synco_k_sel_emit(hard + (size_t)i * nh, i0, nh, t, nthr);
}

/* ---- logits ------------------------------------------------------------------------------------------- */

__global__ void row_sq_kernel(float *row_sq, const float *queue, int K, int dim) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < K) row_sq[j] = synco_k_dotf(queue + (size_t)j * dim, queue + (size_t)j * dim, dim);
}

__global__ void query_stats_kernel(double *stats, float *sgn, const float *q, int B, int dim) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < B)
    synco_k_neg_query_stats(q + (size_t)i * dim, dim, sgn + (size_t)i * dim, &stats[3 * i], &stats[3 * i + 1],
                            &stats[3 * i + 2]);
}

__global__ void neg_logit_kernel(synco_negatives_draws d, float *syn, int ld_syn, const float *l_neg, int ld_lneg,
                                 const float *q, const float *queue, double invT, const double *stats, const float *sgn,
                                 int *bad) {
  const size_t total = (size_t)d.B * d.total;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const int i = (int)(e / d.total), o = (int)(e % d.total);
    synco_k_neg_row r;
    r.i = i;
    r.q = q + (size_t)i * d.dim;
    r.l = l_neg + (size_t)i * ld_lneg;
    r.h = d.hard + (size_t)i * d.n_hard;
    r.sg = sgn + (size_t)i * d.dim;
    r.qq = stats[3 * i];
    r.qabs = stats[3 * i + 1];
    r.nz = stats[3 * i + 2];
    int b = 0;
    syn[(size_t)i * ld_syn + o] = synco_k_neg_logit(&d, &r, o, queue, invT, &d.inv_norm[(size_t)i * d.total + o], &b);
    if (b) *bad = 1;
  }
}

synco_status synco_cuda_neg_logits(synco_backend *be, synco_negatives_draws *d, float *syn, int ld_syn,
                                   const float *l_neg, int ld_lneg, const float *q, const float *queue, float T) {
  if (!(T > 0.f) || !isfinite(T)) return synco_fail(SYNCO_ERR_ARG, "negatives: temperature %g, expected > 0", (double)T);
  if (d->total == 0) return SYNCO_OK;
  cudaStream_t s = synco_cuda_stream(be);
  const int B = d->B, dim = d->dim, K = d->K, nh = d->n_hard;
  void *sgn, *stats, *selg = NULL;
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_NEG_SGN, (size_t)B * dim * sizeof(float), &sgn));
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_NEG_STATS, (size_t)B * 3 * sizeof(double), &stats));
  const size_t sel_bytes = (4 * (size_t)K + SYNCO_K_SEL_BINS) * sizeof(uint32_t);
  size_t smem = sel_bytes;
  int fits;
  SYNCO_TRY(synco_cuda_smem_setup(be, neg_select_kernel, smem, &fits));
  if (!fits) { /* the workspace in global memory instead */
    SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_NEG_SEL, (size_t)B * sel_bytes, &selg));
    smem = 0;
  }
  row_sq_kernel<<<synco_cuda_blocks(K, 128), 128, 0, s>>>(d->row_sq, queue, K, dim);
  SYNCO_LAUNCHED();
  neg_select_kernel<<<B, SEL_THREADS, smem, s>>>(d->hard, l_neg, ld_lneg, K, nh, (uint32_t *)selg,
                                                 synco_cuda(be)->sel_thread);
  SYNCO_LAUNCHED();
  query_stats_kernel<<<synco_cuda_blocks(B, 128), 128, 0, s>>>((double *)stats, (float *)sgn, q, B, dim);
  SYNCO_LAUNCHED();
  const size_t total = (size_t)B * d->total;
  unsigned blocks = synco_cuda_blocks(total, SYNCO_CUDA_THREADS);
  if (blocks > 65536u) blocks = 65536u;
  neg_logit_kernel<<<blocks, SYNCO_CUDA_THREADS, 0, s>>>(*d, syn, ld_syn, l_neg, ld_lneg, q, queue, 1.0 / T,
                                                         (const double *)stats, (const float *)sgn,
                                                         synco_cuda(be)->bad_input);
  SYNCO_LAUNCHED();
  synco_cuda(be)->bad_input_armed = 1;
  return SYNCO_OK; /* a position outside the hard set raises bad_input, reported at the next wait */
}

/* ---- backward ----------------------------------------------------------------------------------------- */

__global__ void neg_backward_kernel(synco_negatives_draws d, float *dq, float *g_raw, int ld_graw, const float *g_syn,
                                    int ld_gsyn, const float *q, double invT) {
  extern __shared__ float W[]; /* [n_hard] */
  __shared__ double s_cq, s_cs;
  const int i = blockIdx.x, dim = d.dim, nh = d.n_hard, n4 = d.n[3];
  const float *g = g_syn + (size_t)i * ld_gsyn, *inv = d.inv_norm + (size_t)i * d.total, *qi = q + (size_t)i * dim;
  if (threadIdx.x == 0) synco_k_neg_bwd_weights(&d, i, g, inv, invT, W, &s_cq, &s_cs);
  __syncthreads();
  const float fq = (float)s_cq, fs = (float)s_cs;
  float *dqi = dq + (size_t)i * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    float acc = dqi[c];
    for (int s = 0; s < n4; s++) acc += synco_k_neg_w4(&d, g, inv, s, invT) * d.noise[((size_t)i * n4 + s) * dim + c];
    dqi[c] = synco_k_neg_dq_final(acc, qi[c], fq, fs);
  }
  const int32_t *h = d.hard + (size_t)i * nh;
  float *gr = g_raw + (size_t)i * ld_graw;
  for (int p = threadIdx.x; p < nh; p += blockDim.x) gr[h[p]] += W[p]; /* a hard set's rows are distinct */
}

synco_status synco_cuda_neg_backward(synco_backend *be, synco_negatives_draws *d, float *dq, float *g_raw,
                                     int ld_graw, const float *g_syn, int ld_gsyn, const float *q, float T) {
  if (d->total == 0) return SYNCO_OK;
  const size_t smem = (size_t)d->n_hard * sizeof(float);
  int fits;
  SYNCO_TRY(synco_cuda_smem_setup(be, neg_backward_kernel, smem, &fits));
  if (!fits)
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda negatives: n_hard = %d needs %zu bytes of shared memory, the GPU "
                      "has %d per block", d->n_hard, smem, synco_cuda(be)->smem_optin);
  neg_backward_kernel<<<d->B, 128, smem, synco_cuda_stream(be)>>>(*d, dq, g_raw, ld_graw, g_syn, ld_gsyn, q, 1.0 / T);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- workspace ---------------------------------------------------------------------------------------- */

/* The kernels index none of the draws' workspace arrays (they are per CPU thread): the backend's own scratch holds
 * per query its stream, its noise words' start, sign(q) and statistics, and the selection's words where they do not
 * fit in shared memory (the sizes the ops above ask synco_cuda_ws for). */
synco_status synco_cuda_neg_workspace(synco_backend *be, const synco_negatives_draws *d,
                                      synco_negatives_workspace *ws) {
  const size_t B = (size_t)d->B, n4 = (size_t)(d->n[3] ? d->n[3] : 1);
  const size_t sel_bytes = (4 * (size_t)d->K + SYNCO_K_SEL_BINS) * sizeof(uint32_t);
  int fits = 1;
  SYNCO_TRY(synco_cuda_smem_setup(be, neg_select_kernel, sel_bytes, &fits));
  *ws = (synco_negatives_workspace){0};
  ws->scratch = B * n4 * sizeof(uint64_t) + B * sizeof(synco_rng) + B * (size_t)d->dim * sizeof(float) +
                B * 3 * sizeof(double) + (fits ? 0 : B * sel_bytes);
  return SYNCO_OK;
}
