/* Internal to the reference backend: the op functions each ref_*.c file defines, and the argument checks
 * they share. The reference backend keeps every activation PLAIN (NCHW, matrices N×C) in fp32; each op
 * checks the shape, dtype and layout of what it is given against its descriptor and fails with a message
 * rather than reading out of bounds, because it is the code every other backend is judged by. */
#ifndef SYNCO_BACKEND_REF_INTERNAL_H
#define SYNCO_BACKEND_REF_INTERNAL_H

#include "base/status.h"
#include "tensor/backend.h"

/* Loops over fewer elements than this run on one thread: below it, starting and joining a team costs more
 * than the work (and a parallel region on a busy machine waits for a descheduled thread). */
#define SYNCO_REF_PAR_MIN 32768

/* SYNCO_OK when t is a PLAIN fp32 tensor of exactly n×c×h×w with data; else a message naming `op`/`what`. */
synco_status synco_ref_check(const synco_tensor *t, const char *op, const char *what, int n, int c, int h, int w);
/* Same shape and layout as `like` (element-wise ops). */
synco_status synco_ref_check_like(const synco_tensor *t, const char *op, const char *what, const synco_tensor *like);

/* The ops, each declared with its signature's type from tensor/backend.h (where its contract is), one block per
 * file that defines them. */

/* ref_conv.c */
synco_conv_plan_fn synco_ref_conv_plan;
synco_conv_plan_bytes_fn synco_ref_conv_plan_bytes;
synco_conv_release_fn synco_ref_conv_release;
synco_conv_fwd_fn synco_ref_conv_fwd;
synco_conv_bwd_data_fn synco_ref_conv_bwd_data;
synco_conv_bwd_weights_fn synco_ref_conv_bwd_weights;

/* ref_batchnorm.c */
synco_bn_plan_fn synco_ref_bn_plan;
synco_bn_plan_bytes_fn synco_ref_bn_plan_bytes;
synco_bn_release_fn synco_ref_bn_release;
synco_bn_fwd_train_fn synco_ref_bn_fwd_train;
synco_bn_fwd_eval_fn synco_ref_bn_fwd_eval;
synco_bn_bwd_fn synco_ref_bn_bwd;

/* ref_pool.c */
synco_pool_plan_fn synco_ref_pool_plan;
synco_pool_plan_bytes_fn synco_ref_pool_plan_bytes;
synco_pool_release_fn synco_ref_pool_release;
synco_maxpool_fwd_fn synco_ref_maxpool_fwd;
synco_maxpool_bwd_fn synco_ref_maxpool_bwd;
synco_avgpool_fwd_fn synco_ref_avgpool_fwd;
synco_avgpool_bwd_fn synco_ref_avgpool_bwd;

/* ref_elementwise.c */
synco_relu_fwd_fn synco_ref_relu_fwd;
synco_relu_bwd_fn synco_ref_relu_bwd;
synco_add_fn synco_ref_add;

/* ref_linear.c */
synco_linear_fwd_fn synco_ref_linear_fwd;
synco_linear_bwd_fn synco_ref_linear_bwd;
/* The same layers on another SGEMM (row-major, C = alpha op(A) op(B) + beta C): the cpu backend's fp32 path runs them
 * on backend/host_gemm.h's, the reference on OpenBLAS's (synco_ref_gemm). */
typedef synco_status synco_ref_sgemm_fn(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                                        int lda, const float *b, int ldb, float beta, float *c, int ldc);
synco_status synco_ref_linear_fwd_on(synco_ref_sgemm_fn *gemm, synco_tensor *y, const synco_tensor *x, const float *w,
                                     const float *b);
synco_status synco_ref_linear_bwd_on(synco_ref_sgemm_fn *gemm, synco_tensor *dx, float *dw, float *db,
                                     const synco_tensor *dy, const synco_tensor *x, const float *w);
synco_l2norm_fwd_fn synco_ref_l2norm_fwd;
synco_l2norm_bwd_fn synco_ref_l2norm_bwd;

/* ref_step.c: the step ops outside the network layers (tensor/backend.h); gemm is OpenBLAS's (be may be NULL) */
synco_gemm_fn synco_ref_gemm;
synco_sgd_fn synco_ref_sgd;
synco_ema_fn synco_ref_ema;
synco_enqueue_fn synco_ref_enqueue;
synco_permute_rows_fn synco_ref_permute_rows;
synco_infonce_fwd_fn synco_ref_infonce_fwd;
synco_infonce_bwd_fn synco_ref_infonce_bwd;
synco_loss_record_fn synco_ref_loss_record;
synco_xent_fn synco_ref_xent;

/* ref_negatives.c */
synco_neg_draw_fn synco_ref_neg_draw;
synco_neg_logits_fn synco_ref_neg_logits;
synco_neg_backward_fn synco_ref_neg_backward;
synco_neg_workspace_fn synco_ref_neg_workspace;

/* ref_memory.c: fills be's memory ops (host memory) and step ops; the cpu backend uses them as they are. */
/* The memory and step ops of both CPU backends (host memory), as designated initializers of an op table; each sets
 * its own gemm (the reference OpenBLAS's, the cpu backend backend/host_gemm.h's). */
synco_alloc_fn synco_ref_host_alloc;
synco_free_fn synco_ref_host_free;
synco_memset_fn synco_ref_host_memset;
synco_copy_fn synco_ref_host_copy;
synco_sync_fn synco_ref_host_sync;
synco_threads_fn synco_ref_host_threads;
#define SYNCO_REF_HOST_OPS                                                                                       \
  .alloc = synco_ref_host_alloc, .free = synco_ref_host_free, .memset = synco_ref_host_memset,                 \
  .copy = synco_ref_host_copy, .sync = synco_ref_host_sync, .sgd = synco_ref_sgd,                             \
  .ema = synco_ref_ema, .enqueue = synco_ref_enqueue, .permute_rows = synco_ref_permute_rows,                  \
  .infonce_fwd = synco_ref_infonce_fwd, .infonce_bwd = synco_ref_infonce_bwd,                                 \
  .loss_record = synco_ref_loss_record, .xent = synco_ref_xent, .neg_draw = synco_ref_neg_draw,              \
  .neg_logits = synco_ref_neg_logits, .neg_backward = synco_ref_neg_backward,                                  \
  .neg_workspace = synco_ref_neg_workspace, .threads = synco_ref_host_threads

#endif
