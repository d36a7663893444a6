/* The backend op table: every layer of the network runs through these function pointers.
 *
 * A backend is a struct of function pointers plus its private context. Each op kind has a small
 * descriptor struct (shape and hyper-parameters) that the caller fills, then `*_plan` lets the backend
 * prepare it once (choose layouts, create oneDNN primitives, size scratch memory) and store what it needs
 * in `impl`; `*_release` frees that. Plans are made at model construction; the per-step calls never
 * allocate.
 *
 * Conventions (all ops):
 *  - outputs first, then saved statistics, then inputs, then parameters;
 *  - activations are synco_tensor in the backend's own layout for that shape (see `act_layout`);
 *    the network input (C = 3) and matrices (H = W = 1) are always PLAIN;
 *  - parameters (conv weights OIHW, BN gamma/beta, linear W [out,in] and b) are plain fp32;
 *  - parameter gradients ACCUMULATE (+=); activation gradients ASSIGN (=). A tensor with two consumers
 *    (a residual shortcut) gets its second gradient through `add` with accumulate = 1;
 *  - every function returns SYNCO_OK or an error status with a message (base/status.h).
 *
 * Every op exists in the reference backend (backend/ref), which is the readable truth: each fast op is
 * tested against it on random data, and each reference backward is checked by finite differences.
 *
 * This header knows no concrete backend: they are created by name through backend/registry.h. */
#ifndef SYNCO_TENSOR_BACKEND_H
#define SYNCO_TENSOR_BACKEND_H

#include "synco.h"
#include "tensor/negatives_op.h"
#include "tensor/tensor.h"

typedef struct synco_backend synco_backend;

/* 2-D convolution, no groups, no bias (ResNet convs are followed by BN). */
typedef struct {
  int n, cin, h, w;        /* input */
  int cout, kh, kw;        /* weight [cout, cin, kh, kw] */
  int stride, pad;         /* same in both directions */
  int oh, ow;              /* output size, filled by the caller or by synco_conv_out_size */
  synco_dtype dtype;       /* activation dtype (F32; BF16 where the backend supports it) */
  void *impl;
} synco_conv_op;

/* Batch normalization over (N, H, W) per channel, optionally followed by ReLU (fused).
 * groups > 1 is Split-BN: the batch is cut into `groups` contiguous equal parts and each part is
 * normalized with its own statistics (train mode); running statistics are updated with the mean over the
 * groups of each group's (mean, unbiased var), as MoCo's SplitBatchNorm does. Saved statistics are
 * [groups * c] means and inverse standard deviations. */
typedef struct {
  int n, c, h, w;
  int groups;              /* 1 = plain BatchNorm2d */
  int relu;                /* 1 = y = relu(bn(x)); backward then needs y */
  float eps;               /* 1e-5 */
  float momentum;          /* 0.1: running = (1 - momentum) * running + momentum * batch */
  synco_dtype dtype;
  void *impl;
} synco_bn_op;

/* Max pooling (ResNet stem: k 3, stride 2, pad 1). */
typedef struct {
  int n, c, h, w;
  int k, stride, pad;
  int oh, ow;
  synco_dtype dtype;
  void *impl;              /* the backend keeps its argmax workspace here */
} synco_pool_op;

/* Element-wise ops, global average pooling and matrices need only a shape: pass the tensors. */

/* Direction of a copy: host memory <-> backend memory, or within the backend. */
typedef enum { SYNCO_COPY_H2D = 0, SYNCO_COPY_D2H = 1, SYNCO_COPY_D2D = 2 } synco_copy_dir;

/* What a caller may ask a backend through `supports` (as ggml's supports_op): the features that options and
 * reports depend on, so that no code outside backend/ includes a backend's private headers to find out. */
typedef enum {
  SYNCO_CAP_BF16 = 0,        /* the layer ops run bf16 activations (fp32 master weights, loss and optimizer) */
  SYNCO_CAP_BF16_NATIVE = 1, /* the hardware has bf16 arithmetic (a CPU: AVX512-BF16), whether the ops use it yet
                                or not */
  SYNCO_CAP_WINOGRAD = 2,    /* 3x3 stride-1 convolutions of 32 channels and more run as Winograd F(2x2, 3x3) */
} synco_capability;

struct synco_backend {
  const char *name;        /* "ref", "onednn", "cuda" */
  void *ctx;
  void (*destroy)(synco_backend *be);
  /* 1 when the backend has capability `cap`, else 0 (ask through synco_backend_supports: NULL means none). */
  int (*supports)(synco_backend *be, synco_capability cap);

  /* Memory. Every buffer of a step (parameters, gradients, momentum, BN statistics, activations, the queue,
   * logits, workspaces) is backend memory; host code reaches it only through `copy` (input upload, checkpoints,
   * a few metrics). alloc returns zeroed memory aligned to 64 bytes, or NULL with a message naming the size.
   * The CPU backends' memory is host memory, so their copies are memcpy. */
  void *(*alloc)(synco_backend *be, size_t bytes);
  void (*free)(synco_backend *be, void *p);
  synco_status (*memset)(synco_backend *be, void *dst, int byte, size_t bytes);
  synco_status (*copy)(synco_backend *be, void *dst, const void *src, size_t bytes, synco_copy_dir dir);
  /* Waits until every op issued so far has finished (a no-op where ops are synchronous). */
  synco_status (*sync)(synco_backend *be);

  /* Step ops on plain fp32 backend buffers (the training step outside the network layers). */
  /* C[m, n] = alpha·op(A)·op(B) + beta·C, row-major, op(X) = Xᵀ when trans_X. */
  synco_status (*gemm)(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc);
  /* torch.optim.SGD over n values (see kernels/sgd_kernel.h); buf may be NULL when momentum is 0. */
  synco_status (*sgd)(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr, float momentum,
                      float wd, int first);
  /* Key encoder: k = m·k + (1 − m)·q over n values. */
  synco_status (*ema)(synco_backend *be, float *k, const float *q, size_t n, float m);
  /* n rows of dim floats into queue [K, dim] from row *ptr on, wrapping at K; *ptr (a host integer) advances. */
  synco_status (*enqueue)(synco_backend *be, float *queue, int K, int dim, long *ptr, const float *rows, int n);
  /* Rows of `cols` floats: dst[i] = src[idx[i]] (gather), or with scatter = 1 dst[idx[i]] = src[i]; idx [n] is
   * backend memory holding a permutation or selection of row indices. */
  synco_status (*permute_rows)(synco_backend *be, float *dst, const float *src, const uint32_t *idx, int n,
                               size_t cols, int scatter);
  /* InfoNCE rows (kernels/infonce_kernel.h) over logits [B, ld] with ncol = 1 + K + S columns: column 0 gets
   * q_i·k_i, columns 1..K hold q·Qᵀ, K+1.. the synthetic logits (already / T). Each row becomes its softmax;
   * row_loss[i] its cross-entropy, hits[2i] / hits[2i + 1] whether the positive beats every queue logit / every
   * logit. q, k: [B, dim]. */
  synco_status (*infonce_fwd)(synco_backend *be, float *logits, int ld, double *row_loss, int *hits, const float *q,
                              const float *k, int B, int K, int ncol, int dim, float T);
  /* In place: the softmax rows become dL/d(column) of the batch-mean loss (raw dots for columns 0..K);
   * dq [B, dim] = g_i0 · k_i (assigned; the queue and synthetic parts are added by the caller). */
  synco_status (*infonce_bwd)(synco_backend *be, float *logits, int ld, float *dq, const float *k, int B, int K,
                              int ncol, int dim, float T);
  /* SynCo's synthetic negatives over the draws d (tensor/negatives_op.h; contract in ssl/negatives.h): the
   * counter-based draws of queries query0.., the hard sets and closed-form synthetic logits, and their backward. */
  synco_status (*neg_draw)(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                           uint64_t seed, uint64_t step, uint64_t query0);
  synco_status (*neg_logits)(synco_backend *be, synco_negatives_draws *d, float *syn, int ld_syn, const float *l_neg,
                             int ld_lneg, const float *q, const float *queue, float T);
  synco_status (*neg_backward)(synco_backend *be, synco_negatives_draws *d, float *dq, float *g_raw, int ld_graw,
                               const float *g_syn, int ld_gsyn, const float *q, float T);
  /* Threads the backend's CPU ops run on (workspaces per thread are sized by it); 1 for a GPU. */
  int (*threads)(synco_backend *be);

  /* Layout this backend keeps for an activation of c channels and h×w pixels (h = w = 1: matrix). */
  synco_layout (*act_layout)(synco_backend *be, int c, int h, int w, synco_dtype dt);
  /* Bytes an activation of this shape takes in that layout (padding included). */
  size_t (*act_bytes)(synco_backend *be, int n, int c, int h, int w, synco_dtype dt);
  /* Plain NCHW fp32 <-> backend layout; src and dst shapes must match. */
  synco_status (*to_backend)(synco_backend *be, synco_tensor *dst, const float *src_plain);
  synco_status (*to_plain)(synco_backend *be, float *dst_plain, const synco_tensor *src);

  /* Convolution. bwd_data: dx = conv_transpose(dy, w); bwd_weights: dw += corr(x, dy). */
  synco_status (*conv_plan)(synco_backend *be, synco_conv_op *op);
  void (*conv_release)(synco_backend *be, synco_conv_op *op);
  synco_status (*conv_fwd)(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                           const float *w);
  synco_status (*conv_bwd_data)(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                const float *w);
  synco_status (*conv_bwd_weights)(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                   const synco_tensor *x);

  /* Batch norm (+ReLU). fwd_train writes y, saves mean/invstd, updates running stats in place.
   * fwd_eval uses running stats. bwd: dx =, dgamma +=, dbeta +=; with op->relu it masks dy by y > 0. */
  synco_status (*bn_plan)(synco_backend *be, synco_bn_op *op);
  void (*bn_release)(synco_backend *be, synco_bn_op *op);
  synco_status (*bn_fwd_train)(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                               float *save_invstd, float *running_mean, float *running_var,
                               const synco_tensor *x, const float *gamma, const float *beta);
  synco_status (*bn_fwd_eval)(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                              const float *gamma, const float *beta, const float *running_mean,
                              const float *running_var);
  synco_status (*bn_bwd)(synco_backend *be, synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                         const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                         const float *gamma, const float *save_mean, const float *save_invstd);

  /* Max pooling; the argmax lives in op->impl between fwd and bwd. */
  synco_status (*pool_plan)(synco_backend *be, synco_pool_op *op);
  void (*pool_release)(synco_backend *be, synco_pool_op *op);
  synco_status (*maxpool_fwd)(synco_backend *be, synco_pool_op *op, synco_tensor *y, const synco_tensor *x);
  synco_status (*maxpool_bwd)(synco_backend *be, synco_pool_op *op, synco_tensor *dx, const synco_tensor *dy);

  /* y = relu(x) (in place allowed); dx = dy * (y > 0) (in place allowed). */
  synco_status (*relu_fwd)(synco_backend *be, synco_tensor *y, const synco_tensor *x);
  synco_status (*relu_bwd)(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y);
  /* y = a + b, or with accumulate = 1: y += a (b ignored). Same shapes and layouts. */
  synco_status (*add)(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                      int accumulate);
  /* y[n, c] = mean over h, w of x (y PLAIN matrix n×c); dx[n,c,h,w] = dy[n,c] / (h*w). */
  synco_status (*avgpool_fwd)(synco_backend *be, synco_tensor *y, const synco_tensor *x);
  synco_status (*avgpool_bwd)(synco_backend *be, synco_tensor *dx, const synco_tensor *dy);

  /* Linear on PLAIN matrices: y[n,out] = x[n,in] W[out,in]^T + b. bwd: dx = (NULL to skip), dw +=, db +=. */
  synco_status (*linear_fwd)(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                             const float *b);
  synco_status (*linear_bwd)(synco_backend *be, synco_tensor *dx, float *dw, float *db, const synco_tensor *dy,
                             const synco_tensor *x, const float *w);
  /* Row-wise L2 normalization of a PLAIN matrix: y = x / max(|x|, 1e-12) (torch.nn.functional.normalize);
   * norms[n] saved for backward. dx = (dy - y (y·dy)) / max(|x|, 1e-12). */
  synco_status (*l2norm_fwd)(synco_backend *be, synco_tensor *y, float *norms, const synco_tensor *x);
  synco_status (*l2norm_bwd)(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y,
                             const float *norms);
};

static inline int synco_backend_supports(synco_backend *be, synco_capability cap) {
  return be && be->supports && be->supports(be, cap);
}

/* Output size of a convolution or pooling window. */
static inline int synco_conv_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

#endif
