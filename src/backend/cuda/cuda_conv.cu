/* Convolutions through cuDNN 9's convolution API (cudnnConvolutionForward / BackwardData / BackwardFilter), NCHW
 * fp32, or under bf16 NHWC bf16 with fp32 accumulation (PSEUDO_BFLOAT16_CONFIG: tensors and filter bf16, the
 * convolution's compute type float, tensor-op math). Under bf16 the activations are NHWC bf16 (cuda_backend.cu), read
 * and written by cuDNN in place; an operand that is not (the network's 3-channel input, or every activation with
 * SYNCO_CUDA_NHWC=0) is converted into grow-once NHWC bf16 scratch and its result converted back (cuda_bf16.cu: a
 * tiled transpose, rounding as kernels/bf16_kernel.h does). The weights are converted OIHW fp32 -> KRSC bf16 at
 * each pass, and dw comes back the same way and is added (the weight gradient is rounded to bf16 once per call, as
 * autocast's cast backward does). At plan time the descriptors are made and the three algorithms chosen once by benchmarking them on
 * scratch buffers (cudnnFind*AlgorithmEx, as torch's cudnn.benchmark; SYNCO_CUDA_CONV_SEARCH=heuristic: cuDNN's
 * heuristics, the same in every process): the fastest deterministic one that fits
 * the workspace cap (SYNCO_CUDA_WORKSPACE_MB, default 512), else the fastest that fits. The backend keeps one
 * workspace, the largest any plan chose, so the step allocates nothing. Strict fp32 by default; SYNCO_CUDA_TF32=1
 * lets cuDNN use TF32 tensor cores. The search reports the math type each algorithm was timed with (under the
 * default math it may be a tensor-op one); each direction runs with its own, set on the descriptor before the
 * call, so the algorithm runs as it was measured. bwd_weights accumulates (beta = 1), the others assign. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <limits.h>

#include "backend/cuda/cuda_internal.h"
#include "kernels/bf16_kernel.h"

typedef struct {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  cudnnMathType_t math[3]; /* per direction (fwd, bwd_data, bwd_filter): the math type its algorithm was timed with */
  int bf16;                /* planned under bf16: the descriptors are NHWC bf16 and the passes convert */
} cuda_conv_impl;

/* A convolution with no backward-data algorithm: cuDNN offered none for its shape (possibly the 3-channel stem in NHWC
 * bf16), which is no error for a layer whose input gradient nobody asks for (the network's first); conv_bwd_data
 * refuses it when called. */
#define NO_BWD_DATA CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT /* a member of the enum, never an algorithm */

/* Algorithms chosen for a shape, so that the query and key encoders and repeated blocks benchmark once. */
#define KEY_LEN 10
typedef struct {
  int key[KEY_LEN];
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  cudnnMathType_t math[3];
  float ms[3]; /* each pass's time in the search (cudnnFind*'s, on zero-filled scratch) */
  size_t need;
} conv_cached;

/* The shape and the arithmetic it was planned for (0 strict fp32, 1 TF32, 2 bf16). */
static void shape_key(const synco_cuda_ctx *c, const synco_conv_op *op, int key[KEY_LEN]) {
  const int k[KEY_LEN] = {op->n,  op->cin, op->h,      op->w,   op->cout,
                          op->kh, op->kw,  op->stride, op->pad, c->bf16 ? 2 : c->tf32};
  memcpy(key, k, sizeof k);
}

static const conv_cached *cache_find(synco_cuda_ctx *c, const synco_conv_op *op) {
  int key[KEY_LEN];
  shape_key(c, op, key);
  const conv_cached *e = (const conv_cached *)c->conv_cache;
  for (int i = 0; i < c->conv_cached; i++)
    if (!memcmp(e[i].key, key, sizeof key)) return &e[i];
  return NULL;
}

static void cache_add(synco_cuda_ctx *c, const synco_conv_op *op, const cuda_conv_impl *im, const float ms[3],
                      size_t need) {
  if (c->conv_cached == c->conv_cache_cap) {
    const int cap = c->conv_cache_cap ? 2 * c->conv_cache_cap : 32;
    void *p = realloc(c->conv_cache, (size_t)cap * sizeof(conv_cached));
    if (!p) return; /* only a cache */
    c->conv_cache = p;
    c->conv_cache_cap = cap;
  }
  conv_cached *e = (conv_cached *)c->conv_cache + c->conv_cached++;
  shape_key(c, op, e->key);
  e->fwd = im->fwd;
  e->bwd_data = im->bwd_data;
  e->bwd_filter = im->bwd_filter;
  memcpy(e->math, im->math, sizeof e->math);
  memcpy(e->ms, ms, sizeof e->ms);
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
/* The bf16 scratch of a convolution: its input side and output side where those are not NHWC bf16 already (2 bytes
 * a value), and its weights. */
static size_t x16_bytes(synco_backend *be, const synco_conv_op *op) {
  if (synco_cuda_act_layout(be, op->cin, op->h, op->w) == SYNCO_LAYOUT_NHWC_BF16) return 0;
  return (size_t)op->n * op->cin * op->h * op->w * 2;
}
static size_t y16_bytes(synco_backend *be, const synco_conv_op *op) {
  const int oh = synco_conv_out_size(op->h, op->kh, op->stride, op->pad);
  const int ow = synco_conv_out_size(op->w, op->kw, op->stride, op->pad);
  if (synco_cuda_act_layout(be, op->cout, oh, ow) == SYNCO_LAYOUT_NHWC_BF16) return 0;
  return (size_t)op->n * op->cout * oh * ow * 2;
}
static size_t w16_bytes(const synco_conv_op *op) { return (size_t)op->cout * op->cin * op->kh * op->kw * 2; }

synco_status synco_cuda_conv_plan_bytes(synco_backend *be, const synco_conv_op *op, synco_plan_bytes *b) {
  b->kept += sizeof(cuda_conv_impl);
  synco_plan_share(b, SYNCO_CUDA_SHARED_CONV, workspace_cap());
  if (synco_cuda(be)->bf16) {
    synco_plan_share(b, SYNCO_CUDA_SHARED_X16, x16_bytes(be, op));
    synco_plan_share(b, SYNCO_CUDA_SHARED_Y16, y16_bytes(be, op));
    synco_plan_share(b, SYNCO_CUDA_SHARED_W16, w16_bytes(op));
  }
  return SYNCO_OK;
}

/* The bf16 scratch (planned, so these only look the buffers up). */
static synco_status scratch16(synco_backend *be, const synco_conv_op *op, uint16_t **x, uint16_t **y, uint16_t **w) {
  void *p;
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_CONV_X16, x16_bytes(be, op), &p));
  *x = (uint16_t *)p;
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_CONV_Y16, y16_bytes(be, op), &p));
  *y = (uint16_t *)p;
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_CONV_W16, w16_bytes(op), &p));
  *w = (uint16_t *)p;
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

/* SYNCO_CUDA_CONV_SEARCH=heuristic: each algorithm from cuDNN's heuristics (cudnnGet*Algorithm_v7, in its order of
 * expected speed) instead of timing them (cudnnFind*AlgorithmEx): the same choice in every process and run on the same
 * GPU, as torch.backends.cudnn.benchmark = False, where timing lets two processes on one GPU, or two runs, choose
 * differently and so differ in their last bits. */
static int conv_search_heuristic(void) {
  const char *e = getenv("SYNCO_CUDA_CONV_SEARCH");
  return e && !strcmp(e, "heuristic");
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
  im->bf16 = c->bf16;
  const cudnnTensorFormat_t fmt = im->bf16 ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  const cudnnDataType_t dt = im->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  const size_t esize = im->bf16 ? 2 : 4;
  SYNCO_CUDNN(cudnnSetTensor4dDescriptor(im->x, fmt, dt, op->n, op->cin, op->h, op->w));
  SYNCO_CUDNN(cudnnSetTensor4dDescriptor(im->y, fmt, dt, op->n, op->cout, op->oh, op->ow));
  SYNCO_CUDNN(cudnnSetFilter4dDescriptor(im->w, dt, fmt, op->cout, op->cin, op->kh, op->kw));
  SYNCO_CUDNN(cudnnSetConvolution2dDescriptor(im->conv, op->pad, op->pad, op->stride, op->stride, 1, 1,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  SYNCO_CUDNN(cudnnSetConvolutionMathType(
      im->conv, im->bf16 ? CUDNN_TENSOR_OP_MATH : c->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  if (im->bf16) { /* the conversions' scratch, grown once here so that a step allocates nothing */
    uint16_t *x16, *y16, *w16;
    SYNCO_TRY(scratch16(be, op, &x16, &y16, &w16));
    if (op->n > 65535 || op->cout > 65535)
      return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda conv_plan: bf16 converts at most 65535 images or channels a call");
  }
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
  const size_t xb = (size_t)op->n * op->cin * op->h * op->w * esize,
               yb = (size_t)op->n * op->cout * op->oh * op->ow * esize,
               wb = (size_t)op->cout * op->cin * op->kh * op->kw * esize, cap = workspace_cap();
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
  float ms[3] = {0, 0, 0}; /* heuristic: -1, none timed */
  const int heuristic = conv_search_heuristic();
  if (!s) {
    cudnnConvolutionFwdAlgoPerf_t p[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    const cudnnStatus_t e =
        heuristic ? cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, im->x, im->w, im->conv, im->y,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, p)
                  : cudnnFindConvolutionForwardAlgorithmEx(c->dnn, im->x, x, im->w, w, im->conv, im->y, y,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, p, ws, ws_bytes);
    const int k = e == CUDNN_STATUS_SUCCESS ? pick(p, n, ws_bytes) : -1;
    if (e != CUDNN_STATUS_SUCCESS) s = synco_cudnn_fail(e, "cudnnFindConvolutionForwardAlgorithmEx", __FILE__, __LINE__);
    else if (k < 0) s = synco_fail(SYNCO_ERR_BACKEND, "cuda conv_plan: no forward algorithm for this convolution");
    else {
      im->fwd = p[k].algo;
      im->math[0] = p[k].mathType;
      ms[0] = p[k].time;
      need = p[k].memory > need ? p[k].memory : need;
    }
  }
  if (!s) {
    cudnnConvolutionBwdDataAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    const cudnnStatus_t e =
        heuristic ? cudnnGetConvolutionBackwardDataAlgorithm_v7(c->dnn, im->w, im->y, im->conv, im->x,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, p)
                  : cudnnFindConvolutionBackwardDataAlgorithmEx(c->dnn, im->w, w, im->y, y, im->conv, im->x, x,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, p, ws, ws_bytes);
    const int k = e == CUDNN_STATUS_SUCCESS ? pick(p, n, ws_bytes) : -1;
    int any = 0; /* an algorithm that runs, whatever its workspace: then none fitting is the plan's error, as before */
    for (int i = 0; e == CUDNN_STATUS_SUCCESS && i < n; i++) any |= p[i].status == CUDNN_STATUS_SUCCESS;
    if (e != CUDNN_STATUS_SUCCESS && e != CUDNN_STATUS_NOT_SUPPORTED)
      s = synco_cudnn_fail(e, "cudnnFindConvolutionBackwardDataAlgorithmEx", __FILE__, __LINE__);
    else if (k < 0 && any)
      s = synco_fail(SYNCO_ERR_BACKEND, "cuda conv_plan: no backward-data algorithm for this convolution fits the "
                     "workspace (%zu bytes)", ws_bytes);
    else if (k < 0) { /* none at all: refused by conv_bwd_data if a backward ever asks (NO_BWD_DATA) */
      im->bwd_data = NO_BWD_DATA;
      im->math[1] = CUDNN_DEFAULT_MATH;
      ms[1] = -1;
    } else {
      im->bwd_data = p[k].algo;
      im->math[1] = p[k].mathType;
      ms[1] = p[k].time;
      need = p[k].memory > need ? p[k].memory : need;
    }
  }
  if (!s) {
    cudnnConvolutionBwdFilterAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    const cudnnStatus_t e =
        heuristic ? cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->dnn, im->x, im->y, im->conv, im->w,
                                                                  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, p)
                  : cudnnFindConvolutionBackwardFilterAlgorithmEx(c->dnn, im->x, x, im->y, y, im->conv, im->w, w,
                                                                  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, p, ws,
                                                                  ws_bytes);
    const int k = e == CUDNN_STATUS_SUCCESS ? pick(p, n, ws_bytes) : -1;
    if (e != CUDNN_STATUS_SUCCESS)
      s = synco_cudnn_fail(e, "cudnnFindConvolutionBackwardFilterAlgorithmEx", __FILE__, __LINE__);
    else if (k < 0) s = synco_fail(SYNCO_ERR_BACKEND, "cuda conv_plan: no backward-filter algorithm for this convolution");
    else {
      im->bwd_filter = p[k].algo;
      im->math[2] = p[k].mathType;
      ms[2] = p[k].time;
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
  if (!s) cache_add(c, op, im, ms, need);
  return s;
}

synco_status synco_cuda_conv_plan(synco_backend *be, synco_conv_op *op) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda conv_plan: op is NULL");
  op->impl = NULL;
  if (op->dtype != SYNCO_F32)
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda conv_plan: activations are f32 (bf16 is the backend's precision)");
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
  /* cuDNN's 4-D descriptors count a tensor's elements in int */
  const size_t nx = (size_t)op->n * op->cin * op->h * op->w, ny = (size_t)op->n * op->cout * oh * ow;
  if (nx > (size_t)INT_MAX || ny > (size_t)INT_MAX)
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda conv_plan: a %dx%dx%d -> %dx%dx%d convolution of %d images holds "
                      "%zu elements in one tensor, over cuDNN's 2^31 - 1: use a smaller batch per GPU", op->cin, op->h,
                      op->w, op->cout, oh, ow, op->n, nx > ny ? nx : ny);
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

/* The NHWC bf16 form of an activation operand: the tensor itself where it is NHWC bf16, else converted into scratch. */
static synco_status operand16(synco_backend *be, const synco_tensor *t, uint16_t *scratch, const uint16_t **out) {
  if (synco_cuda_is_nhwc(t)) {
    *out = (const uint16_t *)t->data;
    return SYNCO_OK;
  }
  SYNCO_TRY(synco_cuda_to_nhwc16(be, scratch, (const float *)t->data, t->n, t->c, t->h * t->w));
  *out = scratch;
  return SYNCO_OK;
}

/* Where a pass writes an activation result in NHWC bf16: the tensor itself, or scratch that finish16 converts. */
static uint16_t *result16(synco_tensor *t, uint16_t *scratch) {
  return synco_cuda_is_nhwc(t) ? (uint16_t *)t->data : scratch;
}
static synco_status finish16(synco_backend *be, synco_tensor *t, const uint16_t *r) {
  if (synco_cuda_is_nhwc(t)) return SYNCO_OK;
  return synco_cuda_from_nhwc16(be, (float *)t->data, r, t->n, t->c, t->h * t->w, 0);
}

/* The plan of op, made under the precision the backend has now (the layouts of its tensors follow from it). */
static synco_status planned(synco_backend *be, const synco_conv_op *op, const char *pass, const cuda_conv_impl **im) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "cuda %s: the op was not planned", pass);
  *im = (const cuda_conv_impl *)op->impl;
  if ((*im)->bf16 != synco_cuda(be)->bf16)
    return synco_fail(SYNCO_ERR_ARG, "cuda %s: planned under another precision than the backend's now", pass);
  return SYNCO_OK;
}

synco_status synco_cuda_conv_fwd(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                                 const float *w) {
  const cuda_conv_impl *im = NULL;
  SYNCO_TRY(planned(be, op, "conv_fwd", &im));
  SYNCO_TRY(synco_cuda_check_act(be, x, "conv_fwd", "x", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, y, "conv_fwd", "y", op->n, op->cout, op->oh, op->ow));
  if (!w) return synco_fail(SYNCO_ERR_ARG, "cuda conv_fwd: weights are missing");
  synco_cuda_ctx *c = synco_cuda(be);
  const float one = 1.f, zero = 0.f;
  SYNCO_CUDNN(cudnnSetConvolutionMathType(im->conv, im->math[0]));
  if (!im->bf16) {
    SYNCO_CUDNN(cudnnConvolutionForward(c->dnn, &one, im->x, x->data, im->w, w, im->conv, im->fwd, c->conv_ws,
                                        c->conv_ws_bytes, &zero, im->y, y->data));
    return SYNCO_OK;
  }
  uint16_t *x16, *y16, *w16;
  const uint16_t *xs;
  SYNCO_TRY(scratch16(be, op, &x16, &y16, &w16));
  SYNCO_TRY(operand16(be, x, x16, &xs));
  SYNCO_TRY(synco_cuda_to_nhwc16(be, w16, w, op->cout, op->cin, op->kh * op->kw));
  uint16_t *ys = result16(y, y16);
  SYNCO_CUDNN(cudnnConvolutionForward(c->dnn, &one, im->x, xs, im->w, w16, im->conv, im->fwd, c->conv_ws,
                                      c->conv_ws_bytes, &zero, im->y, ys));
  return finish16(be, y, ys);
}

synco_status synco_cuda_conv_bwd_data(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                      const float *w) {
  const cuda_conv_impl *im = NULL;
  SYNCO_TRY(planned(be, op, "conv_bwd_data", &im));
  SYNCO_TRY(synco_cuda_check_act(be, dx, "conv_bwd_data", "dx", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, dy, "conv_bwd_data", "dy", op->n, op->cout, op->oh, op->ow));
  if (!w) return synco_fail(SYNCO_ERR_ARG, "cuda conv_bwd_data: weights are missing");
  if (im->bwd_data == NO_BWD_DATA)
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda conv_bwd_data: cuDNN offered no backward-data algorithm for this "
                      "%dx%dx%d -> %dx%dx%d convolution%s", op->cin, op->h, op->w, op->cout, op->oh, op->ow,
                      im->bf16 ? " in NHWC bf16 (--precision tf32 or fp32 plans it in NCHW fp32)" : "");
  synco_cuda_ctx *c = synco_cuda(be);
  const float one = 1.f, zero = 0.f;
  SYNCO_CUDNN(cudnnSetConvolutionMathType(im->conv, im->math[1]));
  if (!im->bf16) {
    SYNCO_CUDNN(cudnnConvolutionBackwardData(c->dnn, &one, im->w, w, im->y, dy->data, im->conv, im->bwd_data,
                                             c->conv_ws, c->conv_ws_bytes, &zero, im->x, dx->data));
    return SYNCO_OK;
  }
  uint16_t *x16, *y16, *w16;
  const uint16_t *dys;
  SYNCO_TRY(scratch16(be, op, &x16, &y16, &w16));
  SYNCO_TRY(operand16(be, dy, y16, &dys));
  SYNCO_TRY(synco_cuda_to_nhwc16(be, w16, w, op->cout, op->cin, op->kh * op->kw));
  uint16_t *dxs = result16(dx, x16);
  SYNCO_CUDNN(cudnnConvolutionBackwardData(c->dnn, &one, im->w, w16, im->y, dys, im->conv, im->bwd_data, c->conv_ws,
                                           c->conv_ws_bytes, &zero, im->x, dxs));
  return finish16(be, dx, dxs);
}

synco_status synco_cuda_conv_bwd_weights(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                         const synco_tensor *x) {
  const cuda_conv_impl *im = NULL;
  SYNCO_TRY(planned(be, op, "conv_bwd_weights", &im));
  SYNCO_TRY(synco_cuda_check_act(be, x, "conv_bwd_weights", "x", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, dy, "conv_bwd_weights", "dy", op->n, op->cout, op->oh, op->ow));
  if (!dw) return synco_fail(SYNCO_ERR_ARG, "cuda conv_bwd_weights: dw is missing");
  synco_cuda_ctx *c = synco_cuda(be);
  const float one = 1.f, zero = 0.f;
  SYNCO_CUDNN(cudnnSetConvolutionMathType(im->conv, im->math[2]));
  if (!im->bf16) {
    SYNCO_CUDNN(cudnnConvolutionBackwardFilter(c->dnn, &one, im->x, x->data, im->y, dy->data, im->conv,
                                               im->bwd_filter, c->conv_ws, c->conv_ws_bytes, &one, im->w, dw));
    return SYNCO_OK;
  }
  uint16_t *x16, *y16, *w16;
  const uint16_t *xs, *dys;
  SYNCO_TRY(scratch16(be, op, &x16, &y16, &w16));
  SYNCO_TRY(operand16(be, x, x16, &xs));
  SYNCO_TRY(operand16(be, dy, y16, &dys));
  SYNCO_CUDNN(cudnnConvolutionBackwardFilter(c->dnn, &one, im->x, xs, im->y, dys, im->conv, im->bwd_filter, c->conv_ws,
                                             c->conv_ws_bytes, &zero, im->w, w16));
  return synco_cuda_from_nhwc16(be, dw, w16, op->cout, op->cin, op->kh * op->kw, 1);
}

/* ---- what was chosen ------------------------------------------------------------------------------------ */

static const char *fwd_name(cudnnConvolutionFwdAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "implicit_gemm";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "implicit_precomp_gemm";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "gemm";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "direct";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "fft";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "fft_tiling";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "winograd";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "winograd_nonfused";
    default: return "other";
  }
}

static const char *bwd_data_name(cudnnConvolutionBwdDataAlgo_t a) {
  if (a == NO_BWD_DATA) return "none (cuDNN offered no algorithm for this shape)";
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return "algo_0";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return "algo_1";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return "fft";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return "fft_tiling";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return "winograd";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return "winograd_nonfused";
    default: return "other";
  }
}

static const char *bwd_filter_name(cudnnConvolutionBwdFilterAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return "algo_0";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return "algo_1";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return "fft";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return "algo_3";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return "winograd_nonfused";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return "fft_tiling";
    default: return "other";
  }
}

static const char *math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "default math";
    case CUDNN_TENSOR_OP_MATH: return "tensor op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor op, conversion allowed";
    case CUDNN_FMA_MATH: return "fma";
    default: return "other math";
  }
}

/* Appends to buf (n bytes) at *len, as snprintf would; *len counts what was wanted, so a first call with n = 0 sizes. */
static void put(char *buf, size_t n, size_t *len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int w = vsnprintf(buf && *len < n ? buf + *len : NULL, *len < n ? n - *len : 0, fmt, ap);
  va_end(ap);
  if (w > 0) *len += (size_t)w;
}

/* One object per shape and precision planned, as the cpu backend's list: cuDNN's algorithm of each pass, its math
 * type and the time the search measured for it, with the precision the layer runs in. */
size_t synco_cuda_kernels(synco_backend *be, char *buf, size_t n) {
  const synco_cuda_ctx *c = synco_cuda(be);
  const conv_cached *e = (const conv_cached *)c->conv_cache;
  size_t len = 0;
  put(buf, n, &len, "[");
  for (int i = 0; i < c->conv_cached; i++) {
    const int *k = e[i].key; /* n, cin, h, w, cout, kh, kw, stride, pad, precision */
    const int oh = synco_conv_out_size(k[2], k[5], k[7], k[8]), ow = synco_conv_out_size(k[3], k[6], k[7], k[8]);
    const char *prec = k[9] == 2 ? "bf16 NHWC" : k[9] == 1 ? "tf32" : "fp32";
    put(buf, n, &len, "%s{\"conv\":\"%dx%dx%d->%dx%dx%d k%d s%d p%d\",\"batch\":%d,", i ? "," : "", k[1], k[2], k[3],
        k[4], oh, ow, k[5], k[7], k[8], k[0]);
    put(buf, n, &len, "\"fwd\":\"cudnn %s (%s, %s)\",", fwd_name(e[i].fwd), math_name(e[i].math[0]), prec);
    put(buf, n, &len, "\"bwd_data\":\"cudnn %s (%s, %s)\",", bwd_data_name(e[i].bwd_data), math_name(e[i].math[1]), prec);
    put(buf, n, &len, "\"bwd_weights\":\"cudnn %s (%s, %s)\",", bwd_filter_name(e[i].bwd_filter),
        math_name(e[i].math[2]), prec);
    put(buf, n, &len, "\"search_ms\":[%.4f,%.4f,%.4f],\"workspace_bytes\":%zu}", e[i].ms[0], e[i].ms[1], e[i].ms[2],
        e[i].need);
  }
  put(buf, n, &len, "]");
  return len;
}
