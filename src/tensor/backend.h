/* The backend op table: every layer of the network runs through these function pointers.
 *
 * A backend is a struct of function pointers plus its private context. Each op kind has a small
 * descriptor struct (shape and hyper-parameters) that the caller fills, then `*_plan` lets the backend
 * prepare it once (choose layouts, create oneDNN primitives, size scratch memory) and store what it needs
 * in `impl`; `*_release` frees that. Plans are made at model construction; the per-step calls never
 * allocate. `*_plan_bytes` says what a plan would allocate without making it, so that a run is sized from the
 * backend's own figures before anything exists.
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
#include "tensor/loss_record.h"
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

/* What plans would take, asked of a backend before anything is planned (the memory plans of cli/memplan.c, through
 * synco_encoder_memory_plan): each `*_plan_bytes` op adds what its `*_plan` of the same descriptor would allocate,
 * without allocating it. `kept` sums what a plan holds for itself until its release (weight copies, an argmax,
 * per-op statistics, code). shared[i] is a buffer the backend grows once and shares among its ops (a
 * scratchpad, a workspace): an op raises it to its own need, so the largest need counts, once per backend however
 * many encoders it holds. Which i is which buffer is the backend's own business. */
#define SYNCO_PLAN_SHARED 5
typedef struct {
  size_t kept;
  size_t shared[SYNCO_PLAN_SHARED];
} synco_plan_bytes;

static inline void synco_plan_share(synco_plan_bytes *b, int i, size_t bytes) {
  if (bytes > b->shared[i]) b->shared[i] = bytes;
}

/* Adds b's plans to *to, as if they were made on the same backend (a query and a key encoder). */
static inline void synco_plan_add(synco_plan_bytes *to, const synco_plan_bytes *b) {
  to->kept += b->kept;
  for (int i = 0; i < SYNCO_PLAN_SHARED; i++) synco_plan_share(to, i, b->shared[i]);
}

static inline size_t synco_plan_total(const synco_plan_bytes *b) {
  size_t t = b->kept;
  for (int i = 0; i < SYNCO_PLAN_SHARED; i++) t += b->shared[i];
  return t;
}

/* Direction of a copy: host memory <-> backend memory, or within the backend. */
typedef enum { SYNCO_COPY_H2D = 0, SYNCO_COPY_D2H = 1, SYNCO_COPY_D2D = 2 } synco_copy_dir;

/* What a caller may ask a backend through `supports` (as ggml's supports_op): the features that options and
 * reports depend on, so that no code outside backend/ includes a backend's private headers to find out. */
typedef enum {
  SYNCO_CAP_BF16 = 0,        /* --precision bf16: convolutions and linear layers multiply bf16 copies (fp32 elsewhere) */
  SYNCO_CAP_BF16_NATIVE = 1, /* the hardware has bf16 arithmetic (a CPU: AVX512-BF16), whether the ops use it yet
                                or not */
  SYNCO_CAP_WINOGRAD = 2,    /* synco's Winograd (F(2x2, 3x3), F(4x4, 3x3)) is a candidate for the 3x3 stride-1 convolutions */
  SYNCO_CAP_ASYNC = 3,       /* ops return before their work is done (a GPU's stream): time with `sync` */
  SYNCO_CAP_DEVICE_MEMORY = 4, /* backend memory the host cannot touch (a GPU's; the strict backend's by design): a
                                  transport that reads host memory (MPI) stages it through copy */
} synco_capability;

/* ---- The ops' signatures and contracts ----------------------------------------------------------------------
 * Each op's signature is written once, here, as a function type: the table below holds pointers to them, and a
 * backend declares its implementation with the type (`synco_conv_fwd_fn synco_ref_conv_fwd;`), so the compiler
 * checks every definition against this contract. */

/* 1 when the backend has capability `cap`, else 0 (ask through synco_backend_supports: NULL means none). */
typedef int synco_supports_fn(synco_backend *be, synco_capability cap);

/* Memory. Every buffer of a step (parameters, gradients, momentum, BN statistics, activations, the queue,
 * logits, workspaces) is backend memory; host code reaches it only through `copy` (input upload, checkpoints,
 * a few metrics). alloc returns memory aligned to 64 bytes whose contents are undefined (the strict test backend
 * fills it with NaN, so a read before a write shows; zero it with memset where zeros are meant), or NULL with a
 * message naming the size.
 * The CPU backends' memory is host memory, so their copies are memcpy. */
typedef void *synco_alloc_fn(synco_backend *be, size_t bytes);
typedef void synco_free_fn(synco_backend *be, void *p);
typedef synco_status synco_memset_fn(synco_backend *be, void *dst, int byte, size_t bytes);
typedef synco_status synco_copy_fn(synco_backend *be, void *dst, const void *src, size_t bytes, synco_copy_dir dir);
/* Waits until every op issued so far has finished (a no-op where ops are synchronous). */
typedef synco_status synco_sync_fn(synco_backend *be);
/* Device-side timing where ops are asynchronous (a GPU's events; NULL elsewhere, where a host clock around a sync
 * times the same): timer_mark records mark `slot` (0, 1, ...; marks are reused by slot) in the order of the ops
 * issued, without waiting; timer_seconds waits for mark b and gives the device time from mark a to mark b. */
typedef synco_status synco_timer_mark_fn(synco_backend *be, int slot);
typedef synco_status synco_timer_seconds_fn(synco_backend *be, int a, int b, double *seconds);

/* Step ops on plain fp32 backend buffers (the training step outside the network layers). */
/* C[m, n] = alpha·op(A)·op(B) + beta·C, row-major, op(X) = Xᵀ when trans_X. */
typedef synco_status synco_gemm_fn(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* torch.optim.SGD over n values (see kernels/sgd_kernel.h); buf may be NULL when momentum is 0. */
typedef synco_status synco_sgd_fn(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr,
                                  float momentum, float wd, int first);
/* Key encoder: k = m·k + (1 − m)·q over n values. */
typedef synco_status synco_ema_fn(synco_backend *be, float *k, const float *q, size_t n, float m);
/* n <= K rows of dim floats into queue [K, dim] from row *ptr on, wrapping at K; *ptr advances by n (mod K). ptr is
 * backend memory (one int64), so that a step neither reads it on the host nor waits for the backend (and a captured
 * step, a CUDA graph, can replay it). */
typedef synco_status synco_enqueue_fn(synco_backend *be, float *queue, int K, int dim, int64_t *ptr, const float *rows,
                                      int n);
/* Rows of `cols` floats: dst[i] = src[idx[i]] (gather), or with scatter = 1 dst[idx[i]] = src[i]; idx [n] is
 * backend memory holding a permutation or selection of row indices. */
typedef synco_status synco_permute_rows_fn(synco_backend *be, float *dst, const float *src, const uint32_t *idx,
                                           int n, size_t cols, int scatter);
/* InfoNCE rows (kernels/infonce_kernel.h) over logits [B, ld] with ncol = 1 + K + S columns: column 0 gets
 * q_i·k_i, columns 1..K hold q·Qᵀ, K+1.. the synthetic logits (already / T). Each row becomes its softmax;
 * row_loss [2B]: row_loss[i] its cross-entropy, row_loss[B + i] the cross-entropy over columns 0..K alone (MoCo's,
 * without the synthetic negatives); hits[2i] / hits[2i + 1] whether the positive beats every queue logit / every
 * logit. q, k: [B, dim]. */
typedef synco_status synco_infonce_fwd_fn(synco_backend *be, float *logits, int ld, double *row_loss, int *hits,
                                          const float *q, const float *k, int B, int K, int ncol, int dim, float T);
/* In place: the softmax rows become dL/d(column) of the batch-mean loss (raw dots for columns 0..K);
 * dq [B, dim] = g_i0 · k_i (assigned; the queue and synthetic parts are added by the caller). */
typedef synco_status synco_infonce_bwd_fn(synco_backend *be, float *logits, int ld, float *dq, const float *k, int B,
                                          int K, int ncol, int dim, float T);
/* Adds one InfoNCE call's scalars (row_loss [2B] and hits [2B] of infonce_fwd) to rec [SYNCO_REC_LEN] doubles, a
 * record in backend memory that the host reads once per log interval instead of downloading every step
 * (kernels/infonce_kernel.h: synco_k_loss_record, whose row-order sums every backend runs). tag: the step, kept
 * with the first call whose loss is not finite. */
typedef synco_status synco_loss_record_fn(synco_backend *be, double *rec, const double *row_loss, const int *hits,
                                          int B, double tag);
/* A classifier's softmax cross-entropy over logits z [n, C] (plain) against labels [n] (backend memory, each in
 * 0..C-1): dz [n, C] = (softmax − onehot)·scale (dz may be NULL), and the call's mean loss, top-1 hits and rows
 * added to rec [SYNCO_XREC_LEN] on the backend (kernels/xent_kernel.h), tag kept with a first non-finite loss. */
typedef synco_status synco_xent_fn(synco_backend *be, float *dz, const float *z, const int *labels, int n, int C,
                                   float scale, double *rec, double tag);
/* SynCo's synthetic negatives over the draws d (tensor/negatives_op.h; contract in ssl/negatives.h): the
 * counter-based draws of queries query0.., the hard sets and closed-form synthetic logits, and their backward. */
typedef synco_status synco_neg_draw_fn(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                                       uint64_t seed, uint64_t step, uint64_t query0);
typedef synco_status synco_neg_logits_fn(synco_backend *be, synco_negatives_draws *d, float *syn, int ld_syn,
                                         const float *l_neg, int ld_lneg, const float *q, const float *queue, float T);
typedef synco_status synco_neg_backward_fn(synco_backend *be, synco_negatives_draws *d, float *dq, float *g_raw,
                                           int ld_graw, const float *g_syn, int ld_gsyn, const float *q, float T);
/* The workspace the three ops above need for draws of d's shape (B, dim, K, n_hard, n[], nthreads; no array need
 * exist yet): the bytes of each workspace array of the draws that the backend's ops index (0: not used, left NULL)
 * and of the scratch the backend grows for itself on first use. synco_negatives_init allocates what this says. */
typedef synco_status synco_neg_workspace_fn(synco_backend *be, const synco_negatives_draws *d,
                                            synco_negatives_workspace *ws);
/* Threads the backend's CPU ops run on (workspaces per thread are sized by it); 1 for a GPU. */
typedef int synco_threads_fn(synco_backend *be);

/* Layout this backend keeps for an activation of c channels and h×w pixels (h = w = 1: matrix). */
typedef synco_layout synco_act_layout_fn(synco_backend *be, int c, int h, int w, synco_dtype dt);
/* Bytes an activation of this shape takes in that layout (padding included). */
typedef size_t synco_act_bytes_fn(synco_backend *be, int n, int c, int h, int w, synco_dtype dt);
/* Plain NCHW fp32 <-> backend layout; src and dst shapes must match. */
typedef synco_status synco_to_backend_fn(synco_backend *be, synco_tensor *dst, const float *src_plain);
typedef synco_status synco_to_plain_fn(synco_backend *be, float *dst_plain, const synco_tensor *src);

/* The implementations the layers planned so far on this backend chose, as a JSON array written into buf (n bytes,
 * NUL-terminated, truncated if short): one object per distinct convolution shape, naming the kernel of each pass
 * (oneDNN's implementation names, or synco's own) and how it was chosen. Returns the length it wanted. A backend
 * without the op (NULL) has one implementation per op. */
typedef size_t synco_kernels_fn(synco_backend *be, char *buf, size_t n);

/* Convolution. bwd_data: dx = conv_transpose(dy, w); bwd_weights: dw += corr(x, dy). */
typedef synco_status synco_conv_plan_fn(synco_backend *be, synco_conv_op *op);
/* Adds to *b what conv_plan of op would allocate (see synco_plan_bytes); op->oh and op->ow are filled. */
typedef synco_status synco_conv_plan_bytes_fn(synco_backend *be, const synco_conv_op *op, synco_plan_bytes *b);
typedef void synco_conv_release_fn(synco_backend *be, synco_conv_op *op);
typedef synco_status synco_conv_fwd_fn(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                                       const float *w);
typedef synco_status synco_conv_bwd_data_fn(synco_backend *be, synco_conv_op *op, synco_tensor *dx,
                                            const synco_tensor *dy, const float *w);
typedef synco_status synco_conv_bwd_weights_fn(synco_backend *be, synco_conv_op *op, float *dw,
                                               const synco_tensor *dy, const synco_tensor *x);

/* Batch norm (+ReLU). fwd_train writes y, saves mean/invstd, updates running stats in place.
 * fwd_eval uses running stats. bwd: dx =, dgamma +=, dbeta +=; with op->relu it masks dy by y > 0. */
typedef synco_status synco_bn_plan_fn(synco_backend *be, synco_bn_op *op);
typedef synco_status synco_bn_plan_bytes_fn(synco_backend *be, const synco_bn_op *op, synco_plan_bytes *b);
typedef void synco_bn_release_fn(synco_backend *be, synco_bn_op *op);
typedef synco_status synco_bn_fwd_train_fn(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                           float *save_invstd, float *running_mean, float *running_var,
                                           const synco_tensor *x, const float *gamma, const float *beta);
/* bn_fwd_train of a BN without fused ReLU (op->relu 0), then y = relu(y + res) in the same pass: the end of a residual
 * block (res: its shortcut, the layout of y). Optional: a backend without it leaves it NULL and the encoder runs
 * bn_fwd_train, add and relu_fwd, which give the same values. */
typedef synco_status synco_bn_fwd_train_add_relu_fn(synco_backend *be, synco_bn_op *op, synco_tensor *y,
                                                    float *save_mean, float *save_invstd, float *running_mean,
                                                    float *running_var, const synco_tensor *x, const float *gamma,
                                                    const float *beta, const synco_tensor *res);
typedef synco_status synco_bn_fwd_eval_fn(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                          const float *gamma, const float *beta, const float *running_mean,
                                          const float *running_var);
typedef synco_status synco_bn_bwd_fn(synco_backend *be, synco_bn_op *op, synco_tensor *dx, float *dgamma,
                                     float *dbeta, const synco_tensor *dy, const synco_tensor *y,
                                     const synco_tensor *x, const float *gamma, const float *save_mean,
                                     const float *save_invstd);

/* Max pooling; the argmax lives in op->impl between fwd and bwd. */
typedef synco_status synco_pool_plan_fn(synco_backend *be, synco_pool_op *op);
typedef synco_status synco_pool_plan_bytes_fn(synco_backend *be, const synco_pool_op *op, synco_plan_bytes *b);
typedef void synco_pool_release_fn(synco_backend *be, synco_pool_op *op);
typedef synco_status synco_maxpool_fwd_fn(synco_backend *be, synco_pool_op *op, synco_tensor *y,
                                          const synco_tensor *x);
typedef synco_status synco_maxpool_bwd_fn(synco_backend *be, synco_pool_op *op, synco_tensor *dx,
                                          const synco_tensor *dy);

/* y = relu(x) (in place allowed); dx = dy * (y > 0) (in place allowed). */
typedef synco_status synco_relu_fwd_fn(synco_backend *be, synco_tensor *y, const synco_tensor *x);
typedef synco_status synco_relu_bwd_fn(synco_backend *be, synco_tensor *dx, const synco_tensor *dy,
                                       const synco_tensor *y);
/* dx = (a + b) * (y > 0) (dx may be a or b): a block's input gradient, the sum of its two paths', masked by the
 * previous block's ReLU in one pass. Optional (NULL: add, then relu_bwd, which give the same values). */
typedef synco_status synco_add_relu_bwd_fn(synco_backend *be, synco_tensor *dx, const synco_tensor *a,
                                           const synco_tensor *b, const synco_tensor *y);
/* y = a + b, or with accumulate = 1: y += a (b ignored). Same shapes and layouts. */
typedef synco_status synco_add_fn(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                                  int accumulate);
/* y[n, c] = mean over h, w of x (y PLAIN matrix n×c); dx[n,c,h,w] = dy[n,c] / (h*w). */
typedef synco_status synco_avgpool_fwd_fn(synco_backend *be, synco_tensor *y, const synco_tensor *x);
typedef synco_status synco_avgpool_bwd_fn(synco_backend *be, synco_tensor *dx, const synco_tensor *dy);

/* Linear on PLAIN matrices: y[n,out] = x[n,in] W[out,in]^T + b. bwd: dx = (NULL to skip), dw +=, db +=. */
typedef synco_status synco_linear_fwd_fn(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                                         const float *b);
typedef synco_status synco_linear_bwd_fn(synco_backend *be, synco_tensor *dx, float *dw, float *db,
                                         const synco_tensor *dy, const synco_tensor *x, const float *w);
/* Row-wise L2 normalization of a PLAIN matrix: y = x / max(|x|, 1e-12) (torch.nn.functional.normalize);
 * norms[n] saved for backward. dx = (dy - y (y·dy)) / max(|x|, 1e-12). */
typedef synco_status synco_l2norm_fwd_fn(synco_backend *be, synco_tensor *y, float *norms, const synco_tensor *x);
typedef synco_status synco_l2norm_bwd_fn(synco_backend *be, synco_tensor *dx, const synco_tensor *dy,
                                         const synco_tensor *y, const float *norms);

/* ---- The table: one pointer per op, in the order of the contracts above ------------------------------------ */
struct synco_backend {
  const char *name;        /* "ref", "strict", "cpu", "cuda" */
  void *ctx;
  void (*destroy)(synco_backend *be);
  synco_supports_fn *supports;

  /* memory */
  synco_alloc_fn *alloc;
  synco_free_fn *free;
  synco_memset_fn *memset;
  synco_copy_fn *copy;
  synco_sync_fn *sync;
  synco_timer_mark_fn *timer_mark;       /* NULL: no device timer */
  synco_timer_seconds_fn *timer_seconds;

  /* step ops */
  synco_gemm_fn *gemm;
  synco_sgd_fn *sgd;
  synco_ema_fn *ema;
  synco_enqueue_fn *enqueue;
  synco_permute_rows_fn *permute_rows;
  synco_infonce_fwd_fn *infonce_fwd;
  synco_infonce_bwd_fn *infonce_bwd;
  synco_loss_record_fn *loss_record;
  synco_xent_fn *xent;
  synco_neg_draw_fn *neg_draw;
  synco_neg_logits_fn *neg_logits;
  synco_neg_backward_fn *neg_backward;
  synco_neg_workspace_fn *neg_workspace;
  synco_threads_fn *threads;

  /* activation layouts */
  synco_act_layout_fn *act_layout;
  synco_act_bytes_fn *act_bytes;
  synco_to_backend_fn *to_backend;
  synco_to_plain_fn *to_plain;

  /* layers */
  synco_kernels_fn *kernels; /* optional */
  synco_conv_plan_fn *conv_plan;
  synco_conv_plan_bytes_fn *conv_plan_bytes;
  synco_conv_release_fn *conv_release;
  synco_conv_fwd_fn *conv_fwd;
  synco_conv_bwd_data_fn *conv_bwd_data;
  synco_conv_bwd_weights_fn *conv_bwd_weights;
  synco_bn_plan_fn *bn_plan;
  synco_bn_plan_bytes_fn *bn_plan_bytes;
  synco_bn_release_fn *bn_release;
  synco_bn_fwd_train_fn *bn_fwd_train;
  synco_bn_fwd_train_add_relu_fn *bn_fwd_train_add_relu; /* optional (NULL) */
  synco_bn_fwd_eval_fn *bn_fwd_eval;
  synco_bn_bwd_fn *bn_bwd;
  synco_pool_plan_fn *pool_plan;
  synco_pool_plan_bytes_fn *pool_plan_bytes;
  synco_pool_release_fn *pool_release;
  synco_maxpool_fwd_fn *maxpool_fwd;
  synco_maxpool_bwd_fn *maxpool_bwd;
  synco_relu_fwd_fn *relu_fwd;
  synco_relu_bwd_fn *relu_bwd;
  synco_add_fn *add;
  synco_add_relu_bwd_fn *add_relu_bwd; /* optional (NULL) */
  synco_avgpool_fwd_fn *avgpool_fwd;
  synco_avgpool_bwd_fn *avgpool_bwd;
  synco_linear_fwd_fn *linear_fwd;
  synco_linear_bwd_fn *linear_bwd;
  synco_l2norm_fwd_fn *l2norm_fwd;
  synco_l2norm_bwd_fn *l2norm_bwd;
};

static inline int synco_backend_supports(synco_backend *be, synco_capability cap) {
  return be && be->supports && be->supports(be, cap);
}

/* Output size of a convolution or pooling window. */
static inline int synco_conv_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

#endif
