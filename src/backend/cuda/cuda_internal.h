/* Internal to the CUDA backend (compiled by nvcc as CUDA C++): the context (device, one stream, cuBLAS and cuDNN
 * handles, the planned cuDNN workspace, a few grow-once scratch buffers), the checks that turn every CUDA, cuBLAS
 * and cuDNN error into a synco_status whose message names the call, the file and the line, and the op functions
 * each cuda_*.cu file defines.
 *
 * Every op is asynchronous on the context's stream; `sync` waits for it, and a copy into host memory waits for
 * its own data. Activations are PLAIN NCHW fp32 (like the reference backend), parameters plain fp32, so
 * to_backend / to_plain are copies and checkpoints see the same layout as on the CPU. Under bf16 activations of 8k
 * channels are NHWC bf16 (SYNCO_LAYOUT_NHWC_BF16: cuDNN's tensor-core layout, half the bytes), every layer op takes
 * both layouts, and a convolution converts what is not NHWC bf16 (the network's 3-channel input; everything with
 * SYNCO_CUDA_NHWC=0). Parameters stay plain fp32 under every precision. */
#ifndef SYNCO_BACKEND_CUDA_INTERNAL_H
#define SYNCO_BACKEND_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "base/status.h"
#include "tensor/backend.h"
}

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/smem_plan.h"

#define SYNCO_CUDA_THREADS 256
#define SYNCO_CUDA_PIN_SLOTS 4 /* pinned staging buffers of uploads in flight (a step uploads 2-3) */

/* Grow-once scratch buffers of the context (device memory), each for one purpose. */
enum {
  SYNCO_CUDA_WS_STAGE = 0, /* host rows uploaded before a gather (permute_rows from host memory) */
  SYNCO_CUDA_WS_NEG_RNG,   /* per query: its stream (synco_rng) */
  SYNCO_CUDA_WS_NEG_WORD0, /* per query and type-4 synthetic: first noise word */
  SYNCO_CUDA_WS_NEG_SGN,   /* per query: sign(q) [B, dim] */
  SYNCO_CUDA_WS_NEG_STATS, /* per query: ‖q‖², Σ|q|, non-zeros (double) */
  SYNCO_CUDA_WS_NEG_SEL,   /* per query: selection workspace when it does not fit in shared memory */
  SYNCO_CUDA_WS_BN,        /* BN: per (group, channel) partial statistics */
  SYNCO_CUDA_WS_XENT,      /* xent: each row's loss (double) and hit (int) */
  SYNCO_CUDA_WS_CONV_X16,  /* bf16 convolutions: the input side (x or dx) in NHWC bf16 */
  SYNCO_CUDA_WS_CONV_Y16,  /* bf16 convolutions: the output side (y or dy) in NHWC bf16 */
  SYNCO_CUDA_WS_CONV_W16,  /* bf16 convolutions: the weights (or their gradient) in KRSC bf16 */
  SYNCO_CUDA_WS_COUNT
};

/* The buffers shared by the ops of a backend, as its *_plan_bytes report them (synco_plan_bytes' shared[i]). */
enum { SYNCO_CUDA_SHARED_CONV = 0, /* the cuDNN workspace (conv_ws) */
       SYNCO_CUDA_SHARED_BN = 1,   /* SYNCO_CUDA_WS_BN */
       SYNCO_CUDA_SHARED_X16 = 2,  /* SYNCO_CUDA_WS_CONV_X16 */
       SYNCO_CUDA_SHARED_Y16 = 3,  /* SYNCO_CUDA_WS_CONV_Y16 */
       SYNCO_CUDA_SHARED_W16 = 4 }; /* SYNCO_CUDA_WS_CONV_W16 */

typedef struct {
  int device;
  cudaStream_t stream;
  cublasHandle_t blas;
  cudnnHandle_t dnn;
  int tf32;                  /* SYNCO_CUDA_TF32=1: TF32 tensor cores for fp32 convs and GEMMs */
  int bf16;                  /* SYNCO_CUDA_BF16=1 / --precision bf16: convolutions in bf16 NHWC (cuda_conv.cu), the
                                linear layers' GEMMs in bf16 */
  int nhwc;                  /* under bf16, activations NHWC bf16 (SYNCO_LAYOUT_NHWC_BF16) where they have 8k channels
                                and more than one pixel; SYNCO_CUDA_NHWC=0: fp32 NCHW, each convolution converting */
  int bn_block;              /* SYNCO_CUDA_BN=block: BN as one block per (group, channel), the first kernels */
  int sel_thread;            /* SYNCO_CUDA_SEL=thread: the selection's last phase on one thread, the first kernel */
  int smem_optin;            /* bytes of shared memory a block may opt in to */
  int cc_major;              /* compute capability (8 and up: bf16 tensor cores) */
  void *conv_ws;             /* the cuDNN workspace: planned once, the largest any planned conv needs */
  size_t conv_ws_bytes;
  void *conv_cache;          /* cuda_conv.cu: algorithms already chosen, by shape */
  int conv_cached, conv_cache_cap;
  void *ws[SYNCO_CUDA_WS_COUNT];
  size_t ws_bytes[SYNCO_CUDA_WS_COUNT];
  int *bad_input;            /* one device int a kernel sets on bad input (a drawn position outside the hard set, a
                                label outside the classes, a queue pointer outside the queue):
                                kept on the device, not read after each op, and checked after the next wait (a
                                download or a sync) when such a kernel ran since the last check (bad_input_armed),
                                which then fails and clears it */
  int bad_input_armed;
  /* uploads from pageable host memory: a ring of pinned buffers (synco_cuda_upload), each with the event of its last
     copy, so that an upload neither waits for the stream nor lets the caller's buffer be read after it returns */
  void *pin[SYNCO_CUDA_PIN_SLOTS];
  size_t pin_bytes[SYNCO_CUDA_PIN_SLOTS];
  cudaEvent_t pin_done[SYNCO_CUDA_PIN_SLOTS];
  int pin_next;
  cudaEvent_t *marks;        /* timer_mark's events, made as slots are first used */
  int nmarks;
} synco_cuda_ctx;

static inline synco_cuda_ctx *synco_cuda(synco_backend *be) { return (synco_cuda_ctx *)be->ctx; }
static inline cudaStream_t synco_cuda_stream(synco_backend *be) { return synco_cuda(be)->stream; }

/* Messages: "<call> failed at <file>:<line>: <library's words>". */
synco_status synco_cuda_fail(cudaError_t e, const char *call, const char *file, int line);
synco_status synco_cublas_fail(cublasStatus_t e, const char *call, const char *file, int line);
synco_status synco_cudnn_fail(cudnnStatus_t e, const char *call, const char *file, int line);

#define SYNCO_CU(call)                                                                                  \
  do {                                                                                                  \
    const cudaError_t e_ = (call);                                                                      \
    if (e_ != cudaSuccess) return synco_cuda_fail(e_, #call, __FILE__, __LINE__);                       \
  } while (0)
#define SYNCO_CUBLAS(call)                                                                              \
  do {                                                                                                  \
    const cublasStatus_t e_ = (call);                                                                   \
    if (e_ != CUBLAS_STATUS_SUCCESS) return synco_cublas_fail(e_, #call, __FILE__, __LINE__);           \
  } while (0)
#define SYNCO_CUDNN(call)                                                                               \
  do {                                                                                                  \
    const cudnnStatus_t e_ = (call);                                                                    \
    if (e_ != CUDNN_STATUS_SUCCESS) return synco_cudnn_fail(e_, #call, __FILE__, __LINE__);             \
  } while (0)
/* After a kernel launch: a bad configuration is reported here (and cleared), a fault in the kernel by a later call
 * (faults are sticky). Calls whose failure is handled elsewhere clear the last error, so it is the launch's. */
#define SYNCO_LAUNCHED() SYNCO_CU(cudaGetLastError())

/* Shared memory of a launch of `kernel` with `dyn` dynamic bytes (smem_plan.h): opts the kernel in when its
 * static and dynamic shared memory together pass 48 KiB; *fits = 0 when the block cannot have that much. */
template <typename Kernel>
static inline synco_status synco_cuda_smem_setup(synco_backend *be, Kernel kernel, size_t dyn, int *fits) {
  cudaFuncAttributes fa;
  SYNCO_CU(cudaFuncGetAttributes(&fa, kernel));
  const synco_smem_plan p = synco_cuda_smem_plan(fa.sharedSizeBytes, dyn, (size_t)synco_cuda(be)->smem_optin);
  *fits = p != SYNCO_SMEM_TOO_LARGE;
  if (p == SYNCO_SMEM_OPTIN) SYNCO_CU(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dyn));
  return SYNCO_OK;
}

static inline unsigned synco_cuda_blocks(size_t n, unsigned threads) {
  size_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 1 ? 1 : (b > 2147483647u ? 2147483647u : b));
}

/* Device memory of the scratch buffer `slot`, at least `bytes` (grown with the stream synchronized first). */
synco_status synco_cuda_ws(synco_backend *be, int slot, size_t bytes, void **out);
/* Allocates device memory (NULL and a message naming the size and what is free on failure). */
synco_status synco_cuda_malloc(synco_backend *be, void **out, size_t bytes, const char *what);
/* 1 when p is device (or managed) memory, 0 when host memory. */
int synco_cuda_is_device(const void *p);
/* Host memory src (pageable or pinned) into device memory dst, in stream order, returning without waiting for the
 * stream: a pageable source is first copied into the next pinned staging buffer of the ring (once that buffer's
 * previous copy has left it), so the caller may reuse src at once. (cudaMemcpyAsync from pageable memory may
 * synchronize with the stream, which would stop the host from running ahead of the GPU at every step's upload.) */
synco_status synco_cuda_upload(synco_backend *be, void *dst, const void *src, size_t bytes);
/* Makes the conv workspace at least `bytes` (plan time). */
synco_status synco_cuda_reserve_conv_ws(synco_backend *be, size_t bytes);

/* Checks like the reference backend's: PLAIN fp32 of exactly n×c×h×w with data. */
synco_status synco_cuda_check(const synco_tensor *t, const char *op, const char *what, int n, int c, int h, int w);
/* The layout of an activation of c channels and h×w pixels on this backend (PLAIN, or NHWC_BF16 under bf16). */
synco_layout synco_cuda_act_layout(synco_backend *be, int c, int h, int w);
/* An activation: n×c×h×w with data, in this backend's layout for its shape (fp32 PLAIN or bf16 NHWC). */
synco_status synco_cuda_check_act(synco_backend *be, const synco_tensor *t, const char *op, const char *what, int n,
                                  int c, int h, int w);
static inline int synco_cuda_is_nhwc(const synco_tensor *t) { return t->layout == SYNCO_LAYOUT_NHWC_BF16; }

/* cuda_bf16.cu: src [n][c][hw] fp32 -> dst [n][hw][c] bf16, and back (assigned, or added with accumulate). */
synco_status synco_cuda_to_nhwc16(synco_backend *be, uint16_t *dst, const float *src, int n, int c, int hw);
synco_status synco_cuda_from_nhwc16(synco_backend *be, float *dst, const uint16_t *src, int n, int c, int hw,
                                    int accumulate);

/* cuda_step.cu */
synco_status synco_cuda_gemm(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* The linear layers' GEMM: synco_cuda_gemm, but multiplying in bf16 (fp32 matrices and accumulation) under bf16. */
synco_status synco_cuda_gemm_layer(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
synco_status synco_cuda_sgd(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr,
                            float momentum, float wd, int first);
synco_status synco_cuda_ema(synco_backend *be, float *k, const float *q, size_t n, float m);
synco_status synco_cuda_enqueue(synco_backend *be, float *queue, int K, int dim, int64_t *ptr, const float *rows, int n);
synco_status synco_cuda_permute_rows(synco_backend *be, float *dst, const float *src, const uint32_t *idx, int n,
                                     size_t cols, int scatter);
synco_status synco_cuda_infonce_fwd(synco_backend *be, float *logits, int ld, double *row_loss, int *hits,
                                    const float *q, const float *k, int B, int K, int ncol, int dim, float T);
synco_status synco_cuda_infonce_bwd(synco_backend *be, float *logits, int ld, float *dq, const float *k, int B, int K,
                                    int ncol, int dim, float T);
synco_status synco_cuda_loss_record(synco_backend *be, double *rec, const double *row_loss, const int *hits, int B,
                                    double tag);
synco_status synco_cuda_xent(synco_backend *be, float *dz, const float *z, const int *labels, int n, int C, float scale,
                             double *rec, double tag);

/* cuda_negatives.cu */
synco_status synco_cuda_neg_draw(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                                 uint64_t seed, uint64_t step, uint64_t query0);
synco_status synco_cuda_neg_logits(synco_backend *be, synco_negatives_draws *d, float *syn, int ld_syn,
                                   const float *l_neg, int ld_lneg, const float *q, const float *queue, float T);
synco_status synco_cuda_neg_backward(synco_backend *be, synco_negatives_draws *d, float *dq, float *g_raw,
                                     int ld_graw, const float *g_syn, int ld_gsyn, const float *q, float T);
synco_status synco_cuda_neg_workspace(synco_backend *be, const synco_negatives_draws *d,
                                      synco_negatives_workspace *ws);

/* cuda_conv.cu */
synco_status synco_cuda_conv_plan(synco_backend *be, synco_conv_op *op);
/* The convolutions planned so far (synco_kernels_fn): cuDNN's algorithms by shape and precision. */
size_t synco_cuda_kernels(synco_backend *be, char *buf, size_t n);
synco_status synco_cuda_conv_plan_bytes(synco_backend *be, const synco_conv_op *op, synco_plan_bytes *b);
void synco_cuda_conv_release(synco_backend *be, synco_conv_op *op);
synco_status synco_cuda_conv_fwd(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                                 const float *w);
synco_status synco_cuda_conv_bwd_data(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                      const float *w);
synco_status synco_cuda_conv_bwd_weights(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                         const synco_tensor *x);

/* cuda_layers.cu */
synco_status synco_cuda_bn_plan(synco_backend *be, synco_bn_op *op);
synco_status synco_cuda_bn_plan_bytes(synco_backend *be, const synco_bn_op *op, synco_plan_bytes *b);
void synco_cuda_bn_release(synco_backend *be, synco_bn_op *op);
synco_status synco_cuda_bn_fwd_train(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                     float *save_invstd, float *running_mean, float *running_var,
                                     const synco_tensor *x, const float *gamma, const float *beta);
synco_status synco_cuda_bn_fwd_train_add_relu(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                              float *save_invstd, float *running_mean, float *running_var,
                                              const synco_tensor *x, const float *gamma, const float *beta,
                                              const synco_tensor *res);
synco_status synco_cuda_add_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *a, const synco_tensor *b,
                                     const synco_tensor *y);
synco_status synco_cuda_bn_fwd_eval(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                    const float *gamma, const float *beta, const float *running_mean,
                                    const float *running_var);
synco_status synco_cuda_bn_bwd(synco_backend *be, synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                               const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                               const float *gamma, const float *save_mean, const float *save_invstd);
synco_status synco_cuda_pool_plan(synco_backend *be, synco_pool_op *op);
synco_status synco_cuda_pool_plan_bytes(synco_backend *be, const synco_pool_op *op, synco_plan_bytes *b);
void synco_cuda_pool_release(synco_backend *be, synco_pool_op *op);
synco_status synco_cuda_maxpool_fwd(synco_backend *be, synco_pool_op *op, synco_tensor *y, const synco_tensor *x);
synco_status synco_cuda_maxpool_bwd(synco_backend *be, synco_pool_op *op, synco_tensor *dx, const synco_tensor *dy);
synco_status synco_cuda_relu_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x);
synco_status synco_cuda_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y);
synco_status synco_cuda_add(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                            int accumulate);
synco_status synco_cuda_avgpool_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x);
synco_status synco_cuda_avgpool_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy);
synco_status synco_cuda_linear_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                                   const float *b);
synco_status synco_cuda_linear_bwd(synco_backend *be, synco_tensor *dx, float *dw, float *db, const synco_tensor *dy,
                                   const synco_tensor *x, const float *w);
synco_status synco_cuda_l2norm_fwd(synco_backend *be, synco_tensor *y, float *norms, const synco_tensor *x);
synco_status synco_cuda_l2norm_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y,
                                   const float *norms);

#endif
