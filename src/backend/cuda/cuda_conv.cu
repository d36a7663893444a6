/* Convolutions through cuDNN 9's convolution API (cudnnConvolutionForward / BackwardData / BackwardFilter), NCHW
 * fp32. At plan time the descriptors are made and the three algorithms chosen once by benchmarking them on
 * scratch buffers (cudnnFind*AlgorithmEx, as torch's cudnn.benchmark): the fastest deterministic one that fits
 * the workspace cap (SYNCO_CUDA_WORKSPACE_MB, default 512), else the fastest that fits. The backend keeps one
 * workspace, the largest any plan chose, so the step allocates nothing. Strict fp32 by default; SYNCO_CUDA_TF32=1
 * lets cuDNN use TF32 tensor cores. The search reports the math type each algorithm was timed with (under the
 * default math it may be a tensor-op one); each direction runs with its own, set on the descriptor before the
 * call, so the algorithm runs as it was measured. bwd_weights accumulates (beta = 1), the others assign. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

typedef struct {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  cudnnMathType_t math[3]; /* per direction (fwd, bwd_data, bwd_filter): the math type its algorithm was timed with */
} cuda_conv_impl;

/* Algorithms chosen for a shape, so that the query and key encoders and repeated blocks benchmark once. */
typedef struct {
  int key[9];
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  cudnnMathType_t math[3];
  size_t need;
} conv_cached;

static void shape_key(const synco_conv_op *op, int key[9]) {
  const int k[9] = {op->n, op->cin, op->h, op->w, op->cout, op->kh, op->kw, op->stride, op->pad};
  memcpy(key, k, sizeof k);
}

static const conv_cached *cache_find(synco_cuda_ctx *c, const synco_conv_op *op) {
  int key[9];
  shape_key(op, key);
  const conv_cached *e = (const conv_cached *)c->conv_cache;
  for (int i = 0; i < c->conv_cached; i++)
    if (!memcmp(e[i].key, key, sizeof key)) return &e[i];
  return NULL;
}

static void cache_add(synco_cuda_ctx *c, const synco_conv_op *op, const cuda_conv_impl *im, size_t need) {
  if (c->conv_cached == c->conv_cache_cap) {
    const int cap = c->conv_cache_cap ? 2 * c->conv_cache_cap : 32;
    void *p = realloc(c->conv_cache, (size_t)cap * sizeof(conv_cached));
    if (!p) return; /* only a cache */
    c->conv_cache = p;
    c->conv_cache_cap = cap;
  }
  conv_cached *e = (conv_cached *)c->conv_cache + c->conv_cached++;
  shape_key(op, e->key);
  e->fwd = im->fwd;
  e->bwd_data = im->bwd_data;
  e->bwd_filter = im->bwd_filter;
  memcpy(e->math, im->math, sizeof e->math);
  e->need = need;
}

static size_t workspace_cap(void) {
  const char *s = getenv("SYNCO_CUDA_WORKSPACE_MB");
  const long mb = s ? atol(s) : 512;
  return (size_t)(mb > 0 ? mb : 512) << 20;
}

/* The algorithms are chosen by running them, so before planning only the cap is known: each conv's descriptors
 * (host memory) and the shared workspace, bounded by the cap. (While it plans, a layer also holds its benchmark's
 * tensors and up to the cap again for the search; they are freed before the next layer.) */
synco_status synco_cuda_conv_plan_bytes(synco_backend *be, const synco_conv_op *op, synco_plan_bytes *b) {
  b->kept += sizeof(cuda_conv_impl);
  synco_plan_share(b, SYNCO_CUDA_SHARED_CONV, workspace_cap());
  return SYNCO_OK;
}

static void release(cuda_conv_impl *im) {
  if (!im) return;
  if (im->x) cudnnDestroyTensorDescriptor(im->x);
  if (im->y) cudnnDestroyTensorDescriptor(im->y);
  if (im->w) cudnnDestroyFilterDescriptor(im->w);
  if (im->conv) cudnnDestroyConvolutionDescriptor(im->conv);
  free(im);
}

void synco_cuda_conv_release(synco_backend *be, synco_conv_op *op) {
  if (!op) return;
  release((cuda_conv_impl *)op->impl);
  op->impl = NULL;
}

/* Index of the result to use: fastest deterministic that fits, else fastest that fits; -1 when none ran. */
template <typename Perf> static int pick(const Perf *p, int n, size_t cap) {
  int best = -1;
  for (int pass = 0; pass < 2 && best < 0; pass++)
    for (int i = 0; i < n; i++) { /* cuDNN sorts by time */
      if (p[i].status != CUDNN_STATUS_SUCCESS || p[i].memory > cap) continue;
      if (pass == 0 && p[i].determinism != CUDNN_DETERMINISTIC) continue;
      best = i;
      break;
    }
  return best;
}

static synco_status plan(synco_backend *be, synco_conv_op *op, cuda_conv_impl *im) {
  synco_cuda_ctx *c = synco_cuda(be);
  SYNCO_CUDNN(cudnnCreateTensorDescriptor(&im->x));
  SYNCO_CUDNN(cudnnCreateTensorDescriptor(&im->y));
  SYNCO_CUDNN(cudnnCreateFilterDescriptor(&im->w));
  SYNCO_CUDNN(cudnnCreateConvolutionDescriptor(&im->conv));
  SYNCO_CUDNN(cudnnSetTensor4dDescriptor(im->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, op->n, op->cin, op->h, op->w));
  SYNCO_CUDNN(cudnnSetTensor4dDescriptor(im->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, op->n, op->cout, op->oh, op->ow));
  SYNCO_CUDNN(cudnnSetFilter4dDescriptor(im->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, op->cout, op->cin, op->kh, op->kw));
  SYNCO_CUDNN(cudnnSetConvolution2dDescriptor(im->conv, op->pad, op->pad, op->stride, op->stride, 1, 1,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  SYNCO_CUDNN(cudnnSetConvolutionMathType(im->conv, c->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  int n, on, oc, oh, ow;
  SYNCO_CUDNN(cudnnGetConvolution2dForwardOutputDim(im->conv, im->x, im->w, &on, &oc, &oh, &ow));
  if (on != op->n || oc != op->cout || oh != op->oh || ow != op->ow)
    return synco_fail(SYNCO_ERR_ARG, "cuda conv_plan: cuDNN makes a %dx%dx%dx%d output, the op says %dx%dx%dx%d", on,
                      oc, oh, ow, op->n, op->cout, op->oh, op->ow);

  const conv_cached *hit = cache_find(c, op);
  if (hit) {
    im->fwd = hit->fwd;
    im->bwd_data = hit->bwd_data;
    im->bwd_filter = hit->bwd_filter;
    memcpy(im->math, hit->math, sizeof im->math);
    return synco_cuda_reserve_conv_ws(be, hit->need);
  }
  /* scratch tensors for the benchmark (freed at the end of the plan) */
  const size_t xb = (size_t)op->n * op->cin * op->h * op->w * 4, yb = (size_t)op->n * op->cout * op->oh * op->ow * 4,
               wb = (size_t)op->cout * op->cin * op->kh * op->kw * 4, cap = workspace_cap();
  void *x = NULL, *y = NULL, *w = NULL, *ws = NULL;
  synco_status s = synco_cuda_malloc(be, &x, xb, "a convolution benchmark");
  if (!s) s = synco_cuda_malloc(be, &y, yb, "a convolution benchmark");
  if (!s) s = synco_cuda_malloc(be, &w, wb, "a convolution benchmark");
  size_t ws_bytes = cap;
  while (!s && ws_bytes >= (1u << 20) && cudaMalloc(&ws, ws_bytes) != cudaSuccess) { /* what fits, up to the cap */
    cudaGetLastError();
    ws = NULL;
    ws_bytes /= 2;
  }
  if (!ws) ws_bytes = 0;
  if (!s && (cudaMemsetAsync(x, 0, xb, c->stream) != cudaSuccess || cudaMemsetAsync(y, 0, yb, c->stream) != cudaSuccess ||
             cudaMemsetAsync(w, 0, wb, c->stream) != cudaSuccess))
    s = synco_fail(SYNCO_ERR_BACKEND, "cuda conv_plan: cudaMemsetAsync of the benchmark tensors failed");
  size_t need = 0;
  if (!s) {
    cudnnConvolutionFwdAlgoPerf_t p[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    const cudnnStatus_t e = cudnnFindConvolutionForwardAlgorithmEx(c->dnn, im->x, x, im->w, w, im->conv, im->y, y,
                                                                   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, p, ws, ws_bytes);
    const int k = e == CUDNN_STATUS_SUCCESS ? pick(p, n, ws_bytes) : -1;
    if (e != CUDNN_STATUS_SUCCESS) s = synco_cudnn_fail(e, "cudnnFindConvolutionForwardAlgorithmEx", __FILE__, __LINE__);
    else if (k < 0) s = synco_fail(SYNCO_ERR_BACKEND, "cuda conv_plan: no forward algorithm for this convolution");
    else {
      im->fwd = p[k].algo;
      im->math[0] = p[k].mathType;
      need = p[k].memory > need ? p[k].memory : need;
    }
  }
  if (!s) {
    cudnnConvolutionBwdDataAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    const cudnnStatus_t e = cudnnFindConvolutionBackwardDataAlgorithmEx(
        c->dnn, im->w, w, im->y, y, im->conv, im->x, x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, p, ws, ws_bytes);
    const int k = e == CUDNN_STATUS_SUCCESS ? pick(p, n, ws_bytes) : -1;
    if (e != CUDNN_STATUS_SUCCESS)
      s = synco_cudnn_fail(e, "cudnnFindConvolutionBackwardDataAlgorithmEx", __FILE__, __LINE__);
    else if (k < 0) s = synco_fail(SYNCO_ERR_BACKEND, "cuda conv_plan: no backward-data algorithm for this convolution");
    else {
      im->bwd_data = p[k].algo;
      im->math[1] = p[k].mathType;
      need = p[k].memory > need ? p[k].memory : need;
    }
  }
  if (!s) {
    cudnnConvolutionBwdFilterAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    const cudnnStatus_t e = cudnnFindConvolutionBackwardFilterAlgorithmEx(
        c->dnn, im->x, x, im->y, y, im->conv, im->w, w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, p, ws, ws_bytes);
    const int k = e == CUDNN_STATUS_SUCCESS ? pick(p, n, ws_bytes) : -1;
    if (e != CUDNN_STATUS_SUCCESS)
      s = synco_cudnn_fail(e, "cudnnFindConvolutionBackwardFilterAlgorithmEx", __FILE__, __LINE__);
    else if (k < 0) s = synco_fail(SYNCO_ERR_BACKEND, "cuda conv_plan: no backward-filter algorithm for this convolution");
    else {
      im->bwd_filter = p[k].algo;
      im->math[2] = p[k].mathType;
      need = p[k].memory > need ? p[k].memory : need;
    }
  }
  cudaStreamSynchronize(c->stream);
  cudaFree(x);
  cudaFree(y);
  cudaFree(w);
  if (ws) cudaFree(ws);
  /* the benchmark's own failed allocations (algorithms that did not fit) may leave the runtime's last error set;
   * the launch checks (SYNCO_LAUNCHED) must not see them */
  cudaGetLastError();
  if (!s) s = synco_cuda_reserve_conv_ws(be, need);
  if (!s) cache_add(c, op, im, need);
  return s;
}

synco_status synco_cuda_conv_plan(synco_backend *be, synco_conv_op *op) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda conv_plan: op is NULL");
  op->impl = NULL;
  if (op->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda conv_plan: only f32 is implemented");
  if (op->n <= 0 || op->cin <= 0 || op->h <= 0 || op->w <= 0 || op->cout <= 0 || op->kh <= 0 || op->kw <= 0 ||
      op->stride <= 0 || op->pad < 0)
    return synco_fail(SYNCO_ERR_ARG, "cuda conv_plan: bad shape");
  const int oh = synco_conv_out_size(op->h, op->kh, op->stride, op->pad);
  const int ow = synco_conv_out_size(op->w, op->kw, op->stride, op->pad);
  if (op->oh == 0 && op->ow == 0) {
    op->oh = oh;
    op->ow = ow;
  }
  if (oh <= 0 || ow <= 0 || op->oh != oh || op->ow != ow)
    return synco_fail(SYNCO_ERR_ARG, "cuda conv_plan: output %dx%d given, %dx%d follows from the input", op->oh, op->ow,
                      oh, ow);
  cuda_conv_impl *im = (cuda_conv_impl *)synco_calloc(1, sizeof *im);
  if (!im) return SYNCO_ERR_NOMEM;
  const synco_status s = plan(be, op, im);
  if (s) {
    release(im);
    return s;
  }
  op->impl = im;
  return SYNCO_OK;
}

synco_status synco_cuda_conv_fwd(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                                 const float *w) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "cuda conv_fwd: the op was not planned");
  SYNCO_TRY(synco_cuda_check(x, "conv_fwd", "x", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(y, "conv_fwd", "y", op->n, op->cout, op->oh, op->ow));
  if (!w) return synco_fail(SYNCO_ERR_ARG, "cuda conv_fwd: weights are missing");
  synco_cuda_ctx *c = synco_cuda(be);
  const cuda_conv_impl *im = (const cuda_conv_impl *)op->impl;
  const float one = 1.f, zero = 0.f;
  SYNCO_CUDNN(cudnnSetConvolutionMathType(im->conv, im->math[0]));
  SYNCO_CUDNN(cudnnConvolutionForward(c->dnn, &one, im->x, x->data, im->w, w, im->conv, im->fwd, c->conv_ws,
                                      c->conv_ws_bytes, &zero, im->y, y->data));
  return SYNCO_OK;
}

synco_status synco_cuda_conv_bwd_data(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                      const float *w) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "cuda conv_bwd_data: the op was not planned");
  SYNCO_TRY(synco_cuda_check(dx, "conv_bwd_data", "dx", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(dy, "conv_bwd_data", "dy", op->n, op->cout, op->oh, op->ow));
  if (!w) return synco_fail(SYNCO_ERR_ARG, "cuda conv_bwd_data: weights are missing");
  synco_cuda_ctx *c = synco_cuda(be);
  const cuda_conv_impl *im = (const cuda_conv_impl *)op->impl;
  const float one = 1.f, zero = 0.f;
  SYNCO_CUDNN(cudnnSetConvolutionMathType(im->conv, im->math[1]));
  SYNCO_CUDNN(cudnnConvolutionBackwardData(c->dnn, &one, im->w, w, im->y, dy->data, im->conv, im->bwd_data, c->conv_ws,
                                           c->conv_ws_bytes, &zero, im->x, dx->data));
  return SYNCO_OK;
}

synco_status synco_cuda_conv_bwd_weights(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                         const synco_tensor *x) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "cuda conv_bwd_weights: the op was not planned");
  SYNCO_TRY(synco_cuda_check(x, "conv_bwd_weights", "x", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(dy, "conv_bwd_weights", "dy", op->n, op->cout, op->oh, op->ow));
  if (!dw) return synco_fail(SYNCO_ERR_ARG, "cuda conv_bwd_weights: dw is missing");
  synco_cuda_ctx *c = synco_cuda(be);
  const cuda_conv_impl *im = (const cuda_conv_impl *)op->impl;
  const float one = 1.f;
  SYNCO_CUDNN(cudnnSetConvolutionMathType(im->conv, im->math[2]));
  SYNCO_CUDNN(cudnnConvolutionBackwardFilter(c->dnn, &one, im->x, x->data, im->y, dy->data, im->conv, im->bwd_filter,
                                             c->conv_ws, c->conv_ws_bytes, &one, im->w, dw));
  return SYNCO_OK;
}
