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

/* ref_conv.c */
synco_status synco_ref_conv_plan(synco_backend *be, synco_conv_op *op);
void synco_ref_conv_release(synco_backend *be, synco_conv_op *op);
synco_status synco_ref_conv_fwd(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                                const float *w);
synco_status synco_ref_conv_bwd_data(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                     const float *w);
synco_status synco_ref_conv_bwd_weights(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                        const synco_tensor *x);

/* ref_batchnorm.c */
synco_status synco_ref_bn_plan(synco_backend *be, synco_bn_op *op);
void synco_ref_bn_release(synco_backend *be, synco_bn_op *op);
synco_status synco_ref_bn_fwd_train(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                    float *save_invstd, float *running_mean, float *running_var,
                                    const synco_tensor *x, const float *gamma, const float *beta);
synco_status synco_ref_bn_fwd_eval(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                   const float *gamma, const float *beta, const float *running_mean,
                                   const float *running_var);
synco_status synco_ref_bn_bwd(synco_backend *be, synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                              const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                              const float *gamma, const float *save_mean, const float *save_invstd);

/* ref_pool.c */
synco_status synco_ref_pool_plan(synco_backend *be, synco_pool_op *op);
void synco_ref_pool_release(synco_backend *be, synco_pool_op *op);
synco_status synco_ref_maxpool_fwd(synco_backend *be, synco_pool_op *op, synco_tensor *y, const synco_tensor *x);
synco_status synco_ref_maxpool_bwd(synco_backend *be, synco_pool_op *op, synco_tensor *dx, const synco_tensor *dy);
synco_status synco_ref_avgpool_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x);
synco_status synco_ref_avgpool_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy);

/* ref_elementwise.c */
synco_status synco_ref_relu_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x);
synco_status synco_ref_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y);
synco_status synco_ref_add(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                           int accumulate);

/* ref_linear.c */
synco_status synco_ref_linear_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                                  const float *b);
synco_status synco_ref_linear_bwd(synco_backend *be, synco_tensor *dx, float *dw, float *db, const synco_tensor *dy,
                                  const synco_tensor *x, const float *w);
synco_status synco_ref_l2norm_fwd(synco_backend *be, synco_tensor *y, float *norms, const synco_tensor *x);
synco_status synco_ref_l2norm_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y,
                                  const float *norms);

/* ref_step.c: the step ops outside the network layers (tensor/backend.h) */
synco_status synco_ref_gemm(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
synco_status synco_ref_sgd(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr,
                           float momentum, float wd, int first);
synco_status synco_ref_ema(synco_backend *be, float *k, const float *q, size_t n, float m);
synco_status synco_ref_enqueue(synco_backend *be, float *queue, int K, int dim, long *ptr, const float *rows, int n);
synco_status synco_ref_permute_rows(synco_backend *be, float *dst, const float *src, const uint32_t *idx, int n,
                                    size_t cols, int scatter);
synco_status synco_ref_infonce_fwd(synco_backend *be, float *logits, int ld, double *row_loss, int *hits,
                                   const float *q, const float *k, int B, int K, int ncol, int dim, float T);
synco_status synco_ref_infonce_bwd(synco_backend *be, float *logits, int ld, float *dq, const float *k, int B, int K,
                                   int ncol, int dim, float T);

/* ref_negatives.c */
synco_status synco_ref_neg_draw(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                                uint64_t seed, uint64_t step, uint64_t query0);
synco_status synco_ref_neg_logits(synco_backend *be, synco_negatives_draws *d, float *syn, int ld_syn,
                                  const float *l_neg, int ld_lneg, const float *q, const float *queue, float T);
synco_status synco_ref_neg_backward(synco_backend *be, synco_negatives_draws *d, float *dq, float *g_raw,
                                    int ld_graw, const float *g_syn, int ld_gsyn, const float *q, float T);

/* ref_memory.c: fills be's memory ops (host memory) and step ops; the oneDNN backend uses them as they are. */
void synco_ref_set_host_ops(synco_backend *be);

#endif
