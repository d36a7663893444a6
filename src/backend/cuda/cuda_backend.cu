/* The CUDA backend's op table, its context and its memory: device memory from cudaMalloc (zeroed, 256-byte
 * aligned), every op on one stream, copies by cudaMemcpyAsync with the direction taken from the pointers
 * (cudaMemcpyDefault, so a copy whose source or destination is host memory works whatever `dir` says; a copy into
 * host memory waits for its data). Activations are PLAIN NCHW fp32, so the layout hooks are the identity and
 * to_backend / to_plain are copies (from or to host or device memory). The ops live in cuda_step.cu,
 * cuda_negatives.cu, cuda_conv.cu and cuda_layers.cu. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

#include <cuda_profiler_api.h>

/* ---- errors ------------------------------------------------------------------------------------------- */

static const char *base_name(const char *file) {
  const char *s = strrchr(file, '/');
  return s ? s + 1 : file;
}

synco_status synco_cuda_fail(cudaError_t e, const char *call, const char *file, int line) {
  if (e == cudaErrorMemoryAllocation) {
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return synco_fail(SYNCO_ERR_NOMEM, "%s failed at %s:%d: out of GPU memory (%.0f MiB free of %.0f MiB); use a "
                      "smaller batch (-b) or queue (--moco-k)", call, base_name(file), line, fr / 1048576.0,
                      tot / 1048576.0);
  }
  return synco_fail(SYNCO_ERR_BACKEND, "%s failed at %s:%d: %s (%s)", call, base_name(file), line,
                    cudaGetErrorString(e), cudaGetErrorName(e));
}

synco_status synco_cublas_fail(cublasStatus_t e, const char *call, const char *file, int line) {
  return synco_fail(e == CUBLAS_STATUS_ALLOC_FAILED ? SYNCO_ERR_NOMEM : SYNCO_ERR_BACKEND, "%s failed at %s:%d: %s",
                    call, base_name(file), line, cublasGetStatusString(e));
}

synco_status synco_cudnn_fail(cudnnStatus_t e, const char *call, const char *file, int line) {
  char detail[256] = "";
  cudnnGetLastErrorString(detail, sizeof detail);
  return synco_fail(e == CUDNN_STATUS_ALLOC_FAILED ? SYNCO_ERR_NOMEM : SYNCO_ERR_BACKEND, "%s failed at %s:%d: %s%s%s",
                    call, base_name(file), line, cudnnGetErrorString(e), detail[0] ? ": " : "", detail);
}

/* ---- memory ------------------------------------------------------------------------------------------- */

synco_status synco_cuda_malloc(synco_backend *be, void **out, size_t bytes, const char *what) {
  *out = NULL;
  const cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    *out = NULL;
    size_t fr = 0, tot = 0;
    cudaGetLastError(); /* clear it */
    cudaMemGetInfo(&fr, &tot);
    return synco_fail(e == cudaErrorMemoryAllocation ? SYNCO_ERR_NOMEM : SYNCO_ERR_BACKEND,
                      "cuda: cannot allocate %.1f MiB for %s on GPU %d (%s; %.0f MiB free of %.0f MiB); use a smaller "
                      "batch (-b) or queue (--moco-k)", bytes / 1048576.0, what, synco_cuda(be)->device,
                      cudaGetErrorString(e), fr / 1048576.0, tot / 1048576.0);
  }
  return SYNCO_OK;
}

static void *cuda_alloc(synco_backend *be, size_t bytes) {
  void *p = NULL;
  if (synco_cuda_malloc(be, &p, bytes, "a buffer")) return NULL;
  /* zeroed, as the contract says, on the backend's stream (ordered before every op that touches the buffer; the
   * legacy default stream would not be, as the backend's stream does not wait for it) */
  if (cudaMemsetAsync(p, 0, bytes ? bytes : 1, synco_cuda_stream(be)) != cudaSuccess) {
    cudaGetLastError();
    cudaFree(p);
    synco_fail(SYNCO_ERR_BACKEND, "cuda: cudaMemsetAsync of a new buffer of %zu bytes failed", bytes);
    return NULL;
  }
  return p;
}

static void cuda_free(synco_backend *be, void *p) {
  (void)be;
  if (p) cudaFree(p); /* implicitly synchronizing */
}

static cudaMemoryType memory_type(const void *p) {
  cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return cudaMemoryTypeUnregistered;
  }
  return a.type;
}

int synco_cuda_is_device(const void *p) {
  const cudaMemoryType t = memory_type(p);
  return t == cudaMemoryTypeDevice || t == cudaMemoryTypeManaged;
}

synco_status synco_cuda_upload(synco_backend *be, void *dst, const void *src, size_t bytes) {
  synco_cuda_ctx *c = synco_cuda(be);
  if (memory_type(src) != cudaMemoryTypeUnregistered) { /* pinned already: asynchronous as it is */
    SYNCO_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    return SYNCO_OK;
  }
  const int k = c->pin_next;
  c->pin_next = (k + 1) % SYNCO_CUDA_PIN_SLOTS;
  SYNCO_CU(cudaEventSynchronize(c->pin_done[k])); /* the slot's previous copy has left it (at once if none) */
  if (c->pin_bytes[k] < bytes) {
    if (c->pin[k]) cudaFreeHost(c->pin[k]);
    c->pin[k] = NULL;
    c->pin_bytes[k] = 0;
    if (cudaHostAlloc(&c->pin[k], bytes, cudaHostAllocDefault) != cudaSuccess) { /* pageable, as before */
      cudaGetLastError();
      c->pin[k] = NULL;
      SYNCO_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
      return SYNCO_OK;
    }
    c->pin_bytes[k] = bytes;
  }
  memcpy(c->pin[k], src, bytes);
  SYNCO_CU(cudaMemcpyAsync(dst, c->pin[k], bytes, cudaMemcpyHostToDevice, c->stream));
  SYNCO_CU(cudaEventRecord(c->pin_done[k], c->stream));
  return SYNCO_OK;
}

static synco_status cuda_memset(synco_backend *be, void *dst, int byte, size_t bytes) {
  if (!bytes) return SYNCO_OK;
  if (!dst) return synco_fail(SYNCO_ERR_ARG, "cuda memset: dst is missing");
  SYNCO_CU(cudaMemsetAsync(dst, byte, bytes, synco_cuda_stream(be)));
  return SYNCO_OK;
}

/* After a wait: the flag a kernel raised on bad input since the last check, as an error (then cleared); read only
 * when a kernel that can raise it ran since (one more small download otherwise spent at every wait). */
static synco_status check_bad_input(synco_backend *be) {
  synco_cuda_ctx *c = synco_cuda(be);
  if (!c->bad_input_armed) return SYNCO_OK;
  c->bad_input_armed = 0;
  int bad = 0;
  SYNCO_CU(cudaMemcpyAsync(&bad, c->bad_input, sizeof bad, cudaMemcpyDeviceToHost, c->stream));
  SYNCO_CU(cudaStreamSynchronize(c->stream));
  if (!bad) return SYNCO_OK;
  SYNCO_CU(cudaMemsetAsync(c->bad_input, 0, sizeof(int), c->stream));
  return synco_fail(SYNCO_ERR_ARG, "cuda: since the last wait a kernel found bad input (negatives: a drawn position "
                    "outside 0..n_hard-1; xent: a label outside 0..C-1; enqueue: a queue pointer outside 0..K-1)");
}

static synco_status cuda_copy(synco_backend *be, void *dst, const void *src, size_t bytes, synco_copy_dir dir) {
  if (!bytes || dst == src) return SYNCO_OK;
  if (!dst || !src) return synco_fail(SYNCO_ERR_ARG, "cuda copy: %s is missing", dst ? "src" : "dst");
  cudaStream_t s = synco_cuda_stream(be);
  const int to_device = synco_cuda_is_device(dst);
  if (to_device && !synco_cuda_is_device(src)) return synco_cuda_upload(be, dst, src, bytes);
  SYNCO_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
  /* the caller reads host memory right after a download */
  if (dir == SYNCO_COPY_D2H || !to_device) {
    SYNCO_CU(cudaStreamSynchronize(s));
    return check_bad_input(be);
  }
  return SYNCO_OK;
}

static synco_status cuda_sync(synco_backend *be) {
  SYNCO_CU(cudaStreamSynchronize(synco_cuda_stream(be)));
  return check_bad_input(be);
}

synco_status synco_cuda_ws(synco_backend *be, int slot, size_t bytes, void **out) {
  synco_cuda_ctx *c = synco_cuda(be);
  if (c->ws_bytes[slot] < bytes) {
    SYNCO_CU(cudaStreamSynchronize(c->stream));
    if (c->ws[slot]) cudaFree(c->ws[slot]);
    c->ws[slot] = NULL;
    c->ws_bytes[slot] = 0;
    SYNCO_TRY(synco_cuda_malloc(be, &c->ws[slot], bytes, "a scratch buffer"));
    c->ws_bytes[slot] = bytes;
  }
  *out = c->ws[slot];
  return SYNCO_OK;
}

synco_status synco_cuda_reserve_conv_ws(synco_backend *be, size_t bytes) {
  synco_cuda_ctx *c = synco_cuda(be);
  if (bytes <= c->conv_ws_bytes) return SYNCO_OK;
  SYNCO_CU(cudaStreamSynchronize(c->stream));
  if (c->conv_ws) cudaFree(c->conv_ws);
  c->conv_ws = NULL;
  c->conv_ws_bytes = 0;
  SYNCO_TRY(synco_cuda_malloc(be, &c->conv_ws, bytes, "the cuDNN workspace"));
  c->conv_ws_bytes = bytes;
  return SYNCO_OK;
}

/* bf16 tensor-core convolutions from compute capability 8.0 (Ampere). */
static int bf16_capable_cc(int major) { return major >= 8; }
static int bf16_capable(const synco_cuda_ctx *c) { return bf16_capable_cc(c->cc_major); }

static int cuda_supports(synco_backend *be, synco_capability cap) {
  if (cap == SYNCO_CAP_BF16 || cap == SYNCO_CAP_BF16_NATIVE) return bf16_capable(synco_cuda(be));
  return cap == SYNCO_CAP_ASYNC || cap == SYNCO_CAP_DEVICE_MEMORY;
}

static int cuda_threads(synco_backend *be) {
  (void)be;
  return 1;
}

/* ---- layouts ------------------------------------------------------------------------------------------ */

synco_status synco_cuda_check(const synco_tensor *t, const char *op, const char *what, int n, int c, int h, int w) {
  return synco_tensor_check(t, "cuda", op, what, n, c, h, w, SYNCO_LAYOUT_PLAIN, 1);
}

synco_layout synco_cuda_act_layout(synco_backend *be, int c, int h, int w) {
  const synco_cuda_ctx *x = synco_cuda(be);
  return x->bf16 && x->nhwc && synco_nhwc_bf16_applies(c, h, w) ? SYNCO_LAYOUT_NHWC_BF16 : SYNCO_LAYOUT_PLAIN;
}

synco_status synco_cuda_check_act(synco_backend *be, const synco_tensor *t, const char *op, const char *what, int n,
                                  int c, int h, int w) {
  const synco_layout l = synco_cuda_act_layout(be, c, h, w);
  SYNCO_TRY(synco_tensor_check(t, "cuda", op, what, n, c, h, w, l, l != SYNCO_LAYOUT_NHWC_BF16));
  if (t->dtype != synco_layout_dtype(l))
    return synco_fail(SYNCO_ERR_ARG, "cuda %s: %s is %s in layout %s", op, what, t->dtype == SYNCO_BF16 ? "bf16" : "f32",
                      synco_layout_name(l));
  return SYNCO_OK;
}

static synco_layout cuda_act_layout(synco_backend *be, int c, int h, int w, synco_dtype dt) {
  (void)dt;
  return synco_cuda_act_layout(be, c, h, w);
}

static size_t cuda_act_bytes(synco_backend *be, int n, int c, int h, int w, synco_dtype dt) {
  return (size_t)n * c * h * w * synco_dtype_size(dt);
}

/* Plain fp32 (host or device memory) into the backend's layout: a copy, or for NHWC bf16 a copy to the device (where
 * the source is host memory, through the staging buffer) and the conversion. */
static synco_status cuda_to_backend(synco_backend *be, synco_tensor *dst, const float *src_plain) {
  if (!dst) return synco_fail(SYNCO_ERR_ARG, "cuda to_backend: dst is missing");
  SYNCO_TRY(synco_cuda_check_act(be, dst, "to_backend", "dst", dst->n, dst->c, dst->h, dst->w));
  if (!src_plain) return synco_fail(SYNCO_ERR_ARG, "cuda to_backend: src is missing");
  const size_t bytes = synco_tensor_numel(dst) * sizeof(float);
  if (!synco_cuda_is_nhwc(dst)) return cuda_copy(be, dst->data, src_plain, bytes, SYNCO_COPY_H2D);
  const float *src = src_plain;
  if (!synco_cuda_is_device(src_plain)) {
    void *stage;
    SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_STAGE, bytes, &stage));
    SYNCO_TRY(cuda_copy(be, stage, src_plain, bytes, SYNCO_COPY_H2D));
    src = (const float *)stage;
  }
  return synco_cuda_to_nhwc16(be, (uint16_t *)dst->data, src, dst->n, dst->c, dst->h * dst->w);
}

/* The backend's layout into plain fp32 (backend memory). */
static synco_status cuda_to_plain(synco_backend *be, float *dst_plain, const synco_tensor *src) {
  if (!src) return synco_fail(SYNCO_ERR_ARG, "cuda to_plain: src is missing");
  SYNCO_TRY(synco_cuda_check_act(be, src, "to_plain", "src", src->n, src->c, src->h, src->w));
  if (!dst_plain) return synco_fail(SYNCO_ERR_ARG, "cuda to_plain: dst is missing");
  if (synco_cuda_is_nhwc(src))
    return synco_cuda_from_nhwc16(be, dst_plain, (const uint16_t *)src->data, src->n, src->c, src->h * src->w, 0);
  return cuda_copy(be, dst_plain, src->data, synco_tensor_numel(src) * sizeof(float), SYNCO_COPY_D2D);
}

/* ---- life cycle --------------------------------------------------------------------------------------- */

/* Timing marks: an event per slot, recorded on the stream (bench's GPU time of a step, from CUDA events). */
static synco_status cuda_timer_mark(synco_backend *be, int slot) {
  synco_cuda_ctx *c = synco_cuda(be);
  if (slot < 0) return synco_fail(SYNCO_ERR_ARG, "timer mark %d", slot);
  if (slot >= c->nmarks) {
    const int n = slot + 1 > 2 * c->nmarks ? slot + 1 : 2 * c->nmarks;
    cudaEvent_t *m = (cudaEvent_t *)realloc(c->marks, (size_t)n * sizeof *m);
    if (!m) return synco_fail(SYNCO_ERR_NOMEM, "out of memory for %d timer marks", n);
    for (int k = c->nmarks; k < n; k++) m[k] = NULL;
    c->marks = m;
    c->nmarks = n;
  }
  if (!c->marks[slot]) SYNCO_CU(cudaEventCreate(&c->marks[slot]));
  SYNCO_CU(cudaEventRecord(c->marks[slot], c->stream));
  return SYNCO_OK;
}

static synco_status cuda_timer_seconds(synco_backend *be, int a, int b, double *seconds) {
  synco_cuda_ctx *c = synco_cuda(be);
  if (a < 0 || b < 0 || a >= c->nmarks || b >= c->nmarks || !c->marks[a] || !c->marks[b])
    return synco_fail(SYNCO_ERR_ARG, "timer marks %d and %d were not both recorded", a, b);
  SYNCO_CU(cudaEventSynchronize(c->marks[b]));
  float ms = 0;
  SYNCO_CU(cudaEventElapsedTime(&ms, c->marks[a], c->marks[b]));
  *seconds = ms * 1e-3;
  return SYNCO_OK;
}

static void cuda_destroy(synco_backend *be) {
  if (!be) return;
  synco_cuda_ctx *c = synco_cuda(be);
  if (c) {
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    for (int i = 0; i < SYNCO_CUDA_WS_COUNT; i++)
      if (c->ws[i]) cudaFree(c->ws[i]);
    if (c->conv_ws) cudaFree(c->conv_ws);
    if (c->bad_input) cudaFree(c->bad_input);
    for (int k = 0; k < SYNCO_CUDA_PIN_SLOTS; k++) {
      if (c->pin[k]) cudaFreeHost(c->pin[k]);
      if (c->pin_done[k]) cudaEventDestroy(c->pin_done[k]);
    }
    free(c->conv_cache);
    for (int k = 0; k < c->nmarks; k++)
      if (c->marks[k]) cudaEventDestroy(c->marks[k]);
    free(c->marks);
    if (c->dnn) cudnnDestroy(c->dnn);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
  }
  free(be);
}

/* The mode of the convolutions and GEMMs planned from now on. Under bf16 cuBLAS's math mode is its default (fp32
 * for cublasSgemm: the step's GEMMs, the logits among them), the linear layers ask for bf16 themselves. */
static synco_status set_precision(synco_cuda_ctx *c, synco_cuda_precision p) {
  if (p == SYNCO_CUDA_BF16 && !bf16_capable(c))
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "--precision bf16 on cuda:%d needs a GPU of compute capability 8.0 or "
                      "newer (this one: %d.x): use --precision tf32 or fp32", c->device, c->cc_major);
  c->tf32 = p == SYNCO_CUDA_TF32;
  c->bf16 = p == SYNCO_CUDA_BF16;
  SYNCO_CUBLAS(cublasSetMathMode(c->blas, c->tf32   ? CUBLAS_TF32_TENSOR_OP_MATH
                                          : c->bf16 ? CUBLAS_DEFAULT_MATH
                                                    : CUBLAS_PEDANTIC_MATH));
  return SYNCO_OK;
}

static synco_status make_ctx(synco_cuda_ctx *c, int device) {
  c->device = device;
  SYNCO_CU(cudaSetDevice(device));
  SYNCO_CU(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  SYNCO_CUBLAS(cublasCreate(&c->blas));
  SYNCO_CUBLAS(cublasSetStream(c->blas, c->stream));
  SYNCO_CUDNN(cudnnCreate(&c->dnn));
  SYNCO_CUDNN(cudnnSetStream(c->dnn, c->stream));
  const char *bn = getenv("SYNCO_CUDA_BN");
  c->bn_block = bn && !strcmp(bn, "block");
  const char *sel = getenv("SYNCO_CUDA_SEL");
  c->sel_thread = sel && !strcmp(sel, "thread");
  SYNCO_CU(cudaDeviceGetAttribute(&c->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  SYNCO_CU(cudaDeviceGetAttribute(&c->cc_major, cudaDevAttrComputeCapabilityMajor, device));
  const char *tf = getenv("SYNCO_CUDA_TF32"), *bf = getenv("SYNCO_CUDA_BF16"), *nhwc = getenv("SYNCO_CUDA_NHWC");
  c->nhwc = !(nhwc && !strcmp(nhwc, "0"));
  SYNCO_TRY(set_precision(c, bf && !strcmp(bf, "1") ? SYNCO_CUDA_BF16 : tf && !strcmp(tf, "1") ? SYNCO_CUDA_TF32
                                                                                             : SYNCO_CUDA_FP32));
  for (int k = 0; k < SYNCO_CUDA_PIN_SLOTS; k++)
    SYNCO_CU(cudaEventCreateWithFlags(&c->pin_done[k], cudaEventDisableTiming));
  SYNCO_CU(cudaMalloc((void **)&c->bad_input, sizeof(int)));
  /* on the backend's stream, which is non-blocking: a memset on the legacy stream is not ordered before its kernels */
  SYNCO_CU(cudaMemsetAsync(c->bad_input, 0, sizeof(int), c->stream));
  return SYNCO_OK;
}

extern "C" int synco_cuda_backend_device(synco_backend *be) { return synco_cuda(be)->device; }

extern "C" void *synco_cuda_backend_stream(synco_backend *be) { return (void *)synco_cuda(be)->stream; }

extern "C" int synco_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

extern "C" int synco_cuda_device_name(const char *name, int *device) {
  *device = -1;
  if (!name || strncmp(name, "cuda", 4)) return 0;
  if (!name[4]) {
    *device = 0;
    return 1;
  }
  if (name[4] != ':' || !name[5]) return 1;
  char *end = NULL;
  const long d = strtol(name + 5, &end, 10);
  if (*end || d < 0 || d > 1024) return 1;
  *device = (int)d;
  return 1;
}

/* Designated initializers (C++20, which nvcc and g++ take in C++17 too): in the order of the members. */
static const synco_backend cuda_ops = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .supports = cuda_supports,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .memset = cuda_memset,
    .copy = cuda_copy,
    .sync = cuda_sync,
    .timer_mark = cuda_timer_mark,
    .timer_seconds = cuda_timer_seconds,
    .gemm = synco_cuda_gemm,
    .sgd = synco_cuda_sgd,
    .ema = synco_cuda_ema,
    .enqueue = synco_cuda_enqueue,
    .permute_rows = synco_cuda_permute_rows,
    .infonce_fwd = synco_cuda_infonce_fwd,
    .infonce_bwd = synco_cuda_infonce_bwd,
    .loss_record = synco_cuda_loss_record,
    .xent = synco_cuda_xent,
    .neg_draw = synco_cuda_neg_draw,
    .neg_logits = synco_cuda_neg_logits,
    .neg_backward = synco_cuda_neg_backward,
    .neg_workspace = synco_cuda_neg_workspace,
    .threads = cuda_threads,
    .act_layout = cuda_act_layout,
    .act_bytes = cuda_act_bytes,
    .to_backend = cuda_to_backend,
    .to_plain = cuda_to_plain,
    .kernels = synco_cuda_kernels,
    .conv_plan = synco_cuda_conv_plan,
    .conv_plan_bytes = synco_cuda_conv_plan_bytes,
    .conv_release = synco_cuda_conv_release,
    .conv_fwd = synco_cuda_conv_fwd,
    .conv_bwd_data = synco_cuda_conv_bwd_data,
    .conv_bwd_weights = synco_cuda_conv_bwd_weights,
    .bn_plan = synco_cuda_bn_plan,
    .bn_plan_bytes = synco_cuda_bn_plan_bytes,
    .bn_release = synco_cuda_bn_release,
    .bn_fwd_train = synco_cuda_bn_fwd_train,
    .bn_fwd_train_add_relu = synco_cuda_bn_fwd_train_add_relu,
    .bn_fwd_eval = synco_cuda_bn_fwd_eval,
    .bn_bwd = synco_cuda_bn_bwd,
    .pool_plan = synco_cuda_pool_plan,
    .pool_plan_bytes = synco_cuda_pool_plan_bytes,
    .pool_release = synco_cuda_pool_release,
    .maxpool_fwd = synco_cuda_maxpool_fwd,
    .maxpool_bwd = synco_cuda_maxpool_bwd,
    .relu_fwd = synco_cuda_relu_fwd,
    .relu_bwd = synco_cuda_relu_bwd,
    .add = synco_cuda_add,
    .add_relu_bwd = synco_cuda_add_relu_bwd,
    .avgpool_fwd = synco_cuda_avgpool_fwd,
    .avgpool_bwd = synco_cuda_avgpool_bwd,
    .linear_fwd = synco_cuda_linear_fwd,
    .linear_bwd = synco_cuda_linear_bwd,
    .l2norm_fwd = synco_cuda_l2norm_fwd,
    .l2norm_bwd = synco_cuda_l2norm_bwd,
};

extern "C" synco_status synco_backend_cuda_create(int device, synco_backend **out) {
  if (!out) return synco_fail(SYNCO_ERR_ARG, "synco_backend_cuda_create: out is NULL");
  *out = NULL;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "backend 'cuda': no usable GPU (%s)",
                      e != cudaSuccess ? cudaGetErrorString(e) : "the CUDA runtime sees no device");
  }
  if (device < 0 || device >= count)
    return synco_fail(SYNCO_ERR_ARG, "backend 'cuda:%d': this machine has %d GPU%s (cuda:0..cuda:%d)", device, count,
                      count == 1 ? "" : "s", count - 1);
  synco_backend *be = (synco_backend *)synco_calloc(1, sizeof *be);
  synco_cuda_ctx *c = (synco_cuda_ctx *)synco_calloc(1, sizeof *c);
  if (!be || !c) {
    free(be);
    free(c);
    return SYNCO_ERR_NOMEM;
  }
  *be = cuda_ops;
  be->ctx = c;
  synco_status s = make_ctx(c, device);
  if (s) {
    cuda_destroy(be);
    return s;
  }
  *out = be;
  return SYNCO_OK;
}

/* ---- synco info --------------------------------------------------------------------------------------- */

static void appendf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void appendf(char *buf, size_t n, const char *fmt, ...) {
  const size_t len = strlen(buf);
  if (len + 1 >= n) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + len, n - len, fmt, ap);
  va_end(ap);
}

extern "C" void synco_cuda_describe(char *buf, size_t n) {
  if (!n) return;
  int rt = 0, drv = 0, bmaj = 0, bmin = 0, bpat = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  const size_t dnn = cudnnGetVersion();
  cublasGetProperty(MAJOR_VERSION, &bmaj);
  cublasGetProperty(MINOR_VERSION, &bmin);
  cublasGetProperty(PATCH_LEVEL, &bpat);
  appendf(buf, n, "CUDA runtime %d.%d, driver %d.%d, cuDNN %zu.%zu.%zu, cuBLAS %d.%d.%d\n", rt / 1000, rt % 1000 / 10,
          drv / 1000, drv % 1000 / 10, dnn / 10000, dnn % 10000 / 100, dnn % 100, bmaj, bmin, bpat);
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    appendf(buf, n, "GPUs: none usable (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "no device");
    return;
  }
  for (int d = 0; d < count; d++) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
      cudaGetLastError();
      appendf(buf, n, "cuda:%d: properties unavailable\n", d);
      continue;
    }
    appendf(buf, n, "cuda:%d: %s, compute capability %d.%d, %.1f GiB, %d SMs, --precision bf16 %s\n", d, p.name,
            p.major, p.minor, p.totalGlobalMem / 1073741824.0, p.multiProcessorCount,
            bf16_capable_cc(p.major) ? "yes (NHWC bf16 activations)" : "no (before compute capability 8.0)");
  }
}

extern "C" void synco_cuda_profiler(int on) {
  if (on) cudaProfilerStart();
  else cudaProfilerStop();
  cudaGetLastError(); /* without a profiler attached these are no-ops; never blame a later launch */
}

extern "C" synco_status synco_cuda_set_precision(synco_backend *be, synco_cuda_precision p) {
  return set_precision(synco_cuda(be), p);
}
