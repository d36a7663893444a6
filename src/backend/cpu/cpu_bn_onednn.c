/* Batch normalization (+ fused ReLU, + Split-BN) on oneDNN, on the backend's activation layout.
 * Training runs the oneDNN primitive planned for n / groups images once per group: every layout here keeps
 * the batch outermost, so group g is one contiguous slice, and its statistics are those of the slice. The
 * primitive reports mean and biased variance; this file turns them into the saved invstd and the running
 * statistics (mean over groups of each group's mean and unbiased variance, as MoCo's SplitBatchNorm does).
 * Fused ReLU uses dnnl_fuse_norm_relu in the forward passes; the backward pass does not rely on the
 * forward's workspace (a layer may run forward more than once before its backward): it masks dy by y > 0
 * into dx and runs the plain backward primitive in place on dx. The backward recovers the variance from the
 * saved invstd, so it needs nothing from the forward call either. dgamma and dbeta accumulate.
 * fp32 goes to the OpenMP implementation of cpu_bn.c instead (one pass over all groups, no spin barriers);
 * the primitive path stays for bf16 and, with SYNCO_ONEDNN_BN=1, for comparisons. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_onednn_util.h"

typedef struct {
  synco_cpu_bn *native;     /* fp32: the OpenMP implementation (cpu_bn.c); nothing below is used */
  synco_layout l;
  int per;                  /* images per group */
  size_t slice_bytes;       /* bytes of one group's activations */
  synco_dnnl_md md_slice, md_full;
  dnnl_primitive_desc_t pd_ft, pd_fe, pd_hint, pd_b;
  synco_dnnl_prim ft, fe, b;
  dnnl_memory_t m_s, m_d, m_ds;      /* slice: src, dst or diff_dst, diff_src */
  dnnl_memory_t m_sf, m_df;          /* whole batch (eval) */
  dnnl_memory_t m_mean, m_var, m_ws;
  dnnl_memory_t m_sc, m_sh, m_dsc, m_dsh; /* separate scale/shift, or m_sc / m_dsc packed [2, C] */
  float *var;               /* [groups * c] biased variance from the last training forward */
  float *varb;              /* [c] variance recovered from invstd for the backward */
  float *ss;                /* packed [gamma | beta]; separate: zeros, the shift the backward wants bound */
  float *dss;               /* [dgamma | dbeta] of one call, before accumulating */
  void *ws;                 /* fused-ReLU workspace, groups * ws_bytes */
  size_t ws_bytes;
} bn_impl;

void synco_dnnl_bn_release(synco_backend *be, synco_bn_op *op) {
  bn_impl *k = op->impl;
  (void)be;
  if (!k) return;
  synco_cpu_bn_release(k->native);
  synco_dnnl_prim_free(&k->ft);
  synco_dnnl_prim_free(&k->fe);
  synco_dnnl_prim_free(&k->b);
  dnnl_memory_t *mems[] = {&k->m_s,  &k->m_d,  &k->m_ds, &k->m_sf,  &k->m_df, &k->m_mean,
                           &k->m_var, &k->m_ws, &k->m_sc, &k->m_sh, &k->m_dsc, &k->m_dsh};
  for (size_t i = 0; i < sizeof(mems) / sizeof(*mems); i++) synco_dnnl_mem_free(mems[i]);
  synco_dnnl_pd_free(&k->pd_ft);
  synco_dnnl_pd_free(&k->pd_fe);
  synco_dnnl_pd_free(&k->pd_hint);
  synco_dnnl_pd_free(&k->pd_b);
  synco_dnnl_md_free(&k->md_slice);
  synco_dnnl_md_free(&k->md_full);
  free(k->var);
  free(k->varb);
  free(k->ss);
  free(k->dss);
  free(k->ws);
  free(k);
  op->impl = NULL;
}

static unsigned ss_flags(void) {
#if SYNCO_ONEDNN_BN_SEPARATE
  return dnnl_use_scale | dnnl_use_shift;
#else
  return dnnl_use_scaleshift;
#endif
}

static synco_status fwd_pd(synco_dnnl_ctx *c, dnnl_primitive_desc_t *pd, dnnl_prop_kind_t prop, synco_dnnl_cmd md,
                           float eps, unsigned flags) {
#if DNNL_VERSION_MAJOR >= 3
  SYNCO_DNNL(dnnl_batch_normalization_forward_primitive_desc_create(pd, c->eng, prop, md, md, eps, flags, c->attr));
#else
  dnnl_batch_normalization_desc_t d;
  SYNCO_DNNL(dnnl_batch_normalization_forward_desc_init(&d, prop, md, eps, flags));
  SYNCO_DNNL(dnnl_primitive_desc_create(pd, &d, c->attr, c->eng, NULL));
#endif
  return SYNCO_OK;
}

static synco_status bwd_pd(synco_dnnl_ctx *c, dnnl_primitive_desc_t *pd, synco_dnnl_cmd md, float eps, unsigned flags,
                           const_dnnl_primitive_desc_t hint) {
#if DNNL_VERSION_MAJOR >= 3
  SYNCO_DNNL(dnnl_batch_normalization_backward_primitive_desc_create(pd, c->eng, dnnl_backward, md, md, md, eps, flags,
                                                                     hint, c->attr));
#else
  dnnl_batch_normalization_desc_t d;
  SYNCO_DNNL(dnnl_batch_normalization_backward_desc_init(&d, dnnl_backward, md, md, eps, flags));
  SYNCO_DNNL(dnnl_primitive_desc_create(pd, &d, c->attr, c->eng, hint));
#endif
  return SYNCO_OK;
}

static synco_status arg_mem(synco_dnnl_ctx *c, dnnl_memory_t *m, const_dnnl_primitive_desc_t pd, int arg) {
  synco_dnnl_cmd md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
  if (!md || dnnl_memory_desc_get_size(md) == 0)
    return synco_fail(SYNCO_ERR_BACKEND, "cpu bn: primitive has no argument %d", arg);
  return synco_dnnl_mem(c, m, md);
}

/* fp32 runs cpu_bn.c's loops; SYNCO_ONEDNN_BN=1 keeps oneDNN's primitive for fp32 too (for comparisons). */
static int native(const synco_bn_op *op) {
  const char *env = getenv("SYNCO_ONEDNN_BN");
  return op->dtype == SYNCO_F32 && !(env && *env == '1');
}

/* The decisions of a plan, nothing allocated yet: the layout and, for the primitive path, the descriptors and the
 * primitive descriptors. */
static synco_status describe(synco_backend *be, const synco_bn_op *op, bn_impl *k) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  dnnl_data_type_t dt;
  SYNCO_TRY(synco_dnnl_dtype(c, op->dtype, &dt));
  const int C = op->c;
  k->l = synco_dnnl_act_layout(be, C, op->h, op->w, op->dtype);
  k->per = op->n / op->groups;
  if (native(op)) return SYNCO_OK;
  k->slice_bytes = (size_t)k->per * C * op->h * op->w * synco_dtype_size(op->dtype);
  SYNCO_TRY(synco_dnnl_md_act(&k->md_slice, k->per, C, op->h, op->w, op->dtype, k->l));
  SYNCO_TRY(synco_dnnl_md_act(&k->md_full, op->n, C, op->h, op->w, op->dtype, k->l));
  const synco_dnnl_cmd ms = SYNCO_DNNL_MD(k->md_slice), mf = SYNCO_DNNL_MD(k->md_full);
  const unsigned ss = ss_flags(), relu = op->relu ? dnnl_fuse_norm_relu : 0;
  SYNCO_TRY(fwd_pd(c, &k->pd_ft, dnnl_forward_training, ms, op->eps, ss | relu));
  SYNCO_TRY(fwd_pd(c, &k->pd_fe, dnnl_forward_inference, mf, op->eps, ss | relu | dnnl_use_global_stats));
  if (relu) SYNCO_TRY(fwd_pd(c, &k->pd_hint, dnnl_forward_training, ms, op->eps, ss));
  SYNCO_TRY(bwd_pd(c, &k->pd_b, ms, op->eps, ss, relu ? k->pd_hint : k->pd_ft));
  return SYNCO_OK;
}

/* The fused ReLU's workspace of one group (64-byte aligned; 0 without ReLU). */
static size_t relu_ws_bytes(const synco_bn_op *op, const bn_impl *k) {
  synco_dnnl_cmd wmd = op->relu ? dnnl_primitive_desc_query_md(k->pd_ft, dnnl_query_workspace_md, 0) : NULL;
  const size_t b = wmd ? dnnl_memory_desc_get_size(wmd) : 0;
  return (b + 63) & ~(size_t)63;
}

static synco_status plan(synco_backend *be, synco_bn_op *op, bn_impl *k) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  const int G = op->groups, C = op->c;
  SYNCO_TRY(describe(be, op, k));
  if (native(op)) return synco_cpu_bn_plan(be, op, &k->native);
  const synco_dnnl_cmd ms = SYNCO_DNNL_MD(k->md_slice), mf = SYNCO_DNNL_MD(k->md_full);
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_s, ms));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_d, ms));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_ds, ms));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_sf, mf));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_df, mf));
  SYNCO_TRY(arg_mem(c, &k->m_mean, k->pd_ft, DNNL_ARG_MEAN));
  SYNCO_TRY(arg_mem(c, &k->m_var, k->pd_ft, DNNL_ARG_VARIANCE));
#if SYNCO_ONEDNN_BN_SEPARATE
  SYNCO_TRY(arg_mem(c, &k->m_sc, k->pd_ft, DNNL_ARG_SCALE));
  SYNCO_TRY(arg_mem(c, &k->m_sh, k->pd_ft, DNNL_ARG_SHIFT));
  SYNCO_TRY(arg_mem(c, &k->m_dsc, k->pd_b, DNNL_ARG_DIFF_SCALE));
  SYNCO_TRY(arg_mem(c, &k->m_dsh, k->pd_b, DNNL_ARG_DIFF_SHIFT));
  if (!(k->ss = synco_calloc(2 * (size_t)C, sizeof(float)))) return SYNCO_ERR_NOMEM;
#else
  SYNCO_TRY(arg_mem(c, &k->m_sc, k->pd_ft, DNNL_ARG_SCALE_SHIFT));
  SYNCO_TRY(arg_mem(c, &k->m_dsc, k->pd_b, DNNL_ARG_DIFF_SCALE_SHIFT));
  if (!(k->ss = synco_malloc(2 * (size_t)C * sizeof(float)))) return SYNCO_ERR_NOMEM;
#endif
  if (!(k->dss = synco_malloc(2 * (size_t)C * sizeof(float)))) return SYNCO_ERR_NOMEM;
  if (!(k->var = synco_malloc((size_t)G * C * sizeof(float)))) return SYNCO_ERR_NOMEM;
  if (!(k->varb = synco_malloc((size_t)C * sizeof(float)))) return SYNCO_ERR_NOMEM;
  k->ws_bytes = relu_ws_bytes(op, k);
  if (k->ws_bytes) {
    SYNCO_TRY(synco_dnnl_mem(c, &k->m_ws, dnnl_primitive_desc_query_md(k->pd_ft, dnnl_query_workspace_md, 0)));
    if (!(k->ws = synco_aligned_alloc(k->ws_bytes * (size_t)G))) return SYNCO_ERR_NOMEM;
  }
  SYNCO_TRY(synco_dnnl_prim_make(c, &k->ft, k->pd_ft));
  SYNCO_TRY(synco_dnnl_prim_make(c, &k->fe, k->pd_fe));
  SYNCO_TRY(synco_dnnl_prim_make(c, &k->b, k->pd_b));
  return SYNCO_OK;
}

synco_status synco_dnnl_bn_plan(synco_backend *be, synco_bn_op *op) {
  if (op->n <= 0 || op->c <= 0 || op->h <= 0 || op->w <= 0 || op->groups <= 0 || op->n % op->groups)
    return synco_fail(SYNCO_ERR_ARG, "cpu bn: bad shape n%d c%d %dx%d groups %d (n must divide into groups)",
                      op->n, op->c, op->h, op->w, op->groups);
  bn_impl *k = synco_calloc(1, sizeof(*k));
  if (!k) return SYNCO_ERR_NOMEM;
  op->impl = k;
  const synco_status s = plan(be, op, k);
  if (s != SYNCO_OK) synco_dnnl_bn_release(be, op);
  return s;
}

/* What plan() would allocate: cpu_bn.c's statistics for fp32; else the primitive path's per-channel arrays, the
 * fused ReLU's workspace per group and the primitives' code, and their scratchpad in the shared one. */
synco_status synco_dnnl_bn_plan_bytes(synco_backend *be, const synco_bn_op *op, synco_plan_bytes *b) {
  bn_impl *k = synco_calloc(1, sizeof(*k));
  if (!k) return SYNCO_ERR_NOMEM;
  synco_bn_op tmp = *op;
  tmp.impl = k;
  b->kept += sizeof(*k);
  synco_status s = describe(be, op, k);
  if (!s && native(op)) b->kept += synco_cpu_bn_plan_bytes(op);
  else if (!s) {
    const size_t C = (size_t)op->c, G = (size_t)op->groups;
    b->kept += (2 * C + 2 * C + G * C + C) * sizeof(float) + relu_ws_bytes(op, k) * G + 3 * SYNCO_DNNL_CODE_BYTES;
    const_dnnl_primitive_desc_t pds[] = {k->pd_ft, k->pd_fe, k->pd_b};
    for (int i = 0; i < 3; i++) synco_plan_share(b, SYNCO_DNNL_SHARED_SCRATCH, synco_dnnl_scratch_bytes(pds[i]));
  }
  synco_dnnl_bn_release(be, &tmp);
  return s;
}

/* Binds gamma/beta for a forward pass; returns the number of args written into a. */
static synco_status bind_scale_shift(bn_impl *k, int C, const float *gamma, const float *beta, dnnl_exec_arg_t *a,
                                     int *na) {
#if SYNCO_ONEDNN_BN_SEPARATE
  (void)C;
  SYNCO_TRY(synco_dnnl_bind(k->m_sc, gamma));
  SYNCO_TRY(synco_dnnl_bind(k->m_sh, beta));
  a[(*na)++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, k->m_sc};
  a[(*na)++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, k->m_sh};
#else
  memcpy(k->ss, gamma, (size_t)C * sizeof(float));
  memcpy(k->ss + C, beta, (size_t)C * sizeof(float));
  SYNCO_TRY(synco_dnnl_bind(k->m_sc, k->ss));
  a[(*na)++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE_SHIFT, k->m_sc};
#endif
  return SYNCO_OK;
}

static synco_status ready(const char *what, synco_bn_op *op, const synco_tensor *t) {
  if (!op->impl) return synco_fail(SYNCO_ERR_ARG, "cpu %s: op used before bn_plan", what);
  const bn_impl *k = op->impl;
  return synco_dnnl_check(what, t, op->n, op->c, op->h, op->w, k->l);
}

/* The residual block's end in one pass where synco's own BN runs the layer (fp32), else the three ops. */
synco_status synco_dnnl_bn_fwd_train_add_relu(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                              float *save_invstd, float *running_mean, float *running_var,
                                              const synco_tensor *x, const float *gamma, const float *beta,
                                              const synco_tensor *res) {
  if (op->relu) return synco_fail(SYNCO_ERR_ARG, "cpu bn_fwd_train_add_relu: the BN has a fused ReLU already");
  SYNCO_TRY(ready("bn_fwd_train_add_relu x", op, x));
  SYNCO_TRY(ready("bn_fwd_train_add_relu y", op, y));
  SYNCO_TRY(ready("bn_fwd_train_add_relu res", op, res));
  if (res->data == y->data || res->data == x->data)
    return synco_fail(SYNCO_ERR_ARG, "cpu bn_fwd_train_add_relu: the shortcut shares memory with x or y");
  bn_impl *k = op->impl;
  if (k->native)
    return synco_cpu_bn_fwd_train(k->native, op, y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta,
                                  res);
  SYNCO_TRY(synco_dnnl_bn_fwd_train(be, op, y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta));
  SYNCO_TRY(synco_dnnl_add(be, y, res, res, 1));
  return synco_dnnl_relu_fwd(be, y, y);
}

synco_status synco_dnnl_bn_fwd_train(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                     float *save_invstd, float *running_mean, float *running_var,
                                     const synco_tensor *x, const float *gamma, const float *beta) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  SYNCO_TRY(ready("bn_fwd_train x", op, x));
  SYNCO_TRY(ready("bn_fwd_train y", op, y));
  bn_impl *k = op->impl;
  if (k->native)
    return synco_cpu_bn_fwd_train(k->native, op, y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta,
                                  NULL);
  const int G = op->groups, C = op->c;
  dnnl_exec_arg_t a[8] = {{DNNL_ARG_SRC, k->m_s}, {DNNL_ARG_DST, k->m_d}, {DNNL_ARG_MEAN, k->m_mean},
                          {DNNL_ARG_VARIANCE, k->m_var}};
  int na = 4;
  SYNCO_TRY(bind_scale_shift(k, C, gamma, beta, a, &na));
  if (k->m_ws) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, k->m_ws};
  for (int g = 0; g < G; g++) {
    SYNCO_TRY(synco_dnnl_bind(k->m_s, (const char *)x->data + g * k->slice_bytes));
    SYNCO_TRY(synco_dnnl_bind(k->m_d, (char *)y->data + g * k->slice_bytes));
    SYNCO_TRY(synco_dnnl_bind(k->m_mean, save_mean + (size_t)g * C));
    SYNCO_TRY(synco_dnnl_bind(k->m_var, k->var + (size_t)g * C));
    if (k->m_ws) SYNCO_TRY(synco_dnnl_bind(k->m_ws, (char *)k->ws + g * k->ws_bytes));
    SYNCO_TRY(synco_dnnl_exec(c, &k->ft, na, a));
  }
  const double m = (double)k->per * op->h * op->w;
  const double unbias = m > 1 ? m / (m - 1) : 1.0;
  const float mom = op->momentum;
  for (int i = 0; i < C; i++) {
    double mean = 0, var = 0;
    for (int g = 0; g < G; g++) {
      const size_t j = (size_t)g * C + i;
      save_invstd[j] = (float)(1.0 / sqrt((double)k->var[j] + op->eps));
      mean += save_mean[j];
      var += k->var[j] * unbias;
    }
    running_mean[i] = (1.f - mom) * running_mean[i] + mom * (float)(mean / G);
    running_var[i] = (1.f - mom) * running_var[i] + mom * (float)(var / G);
  }
  return SYNCO_OK;
}

synco_status synco_dnnl_bn_fwd_eval(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                    const float *gamma, const float *beta, const float *running_mean,
                                    const float *running_var) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  SYNCO_TRY(ready("bn_fwd_eval x", op, x));
  SYNCO_TRY(ready("bn_fwd_eval y", op, y));
  bn_impl *k = op->impl;
  if (k->native) return synco_cpu_bn_fwd_eval(k->native, op, y, x, gamma, beta, running_mean, running_var);
  dnnl_exec_arg_t a[8] = {{DNNL_ARG_SRC, k->m_sf}, {DNNL_ARG_DST, k->m_df}, {DNNL_ARG_MEAN, k->m_mean},
                          {DNNL_ARG_VARIANCE, k->m_var}};
  int na = 4;
  SYNCO_TRY(bind_scale_shift(k, op->c, gamma, beta, a, &na));
  SYNCO_TRY(synco_dnnl_bind(k->m_sf, x->data));
  SYNCO_TRY(synco_dnnl_bind(k->m_df, y->data));
  SYNCO_TRY(synco_dnnl_bind(k->m_mean, running_mean));
  SYNCO_TRY(synco_dnnl_bind(k->m_var, running_var));
  return synco_dnnl_exec(c, &k->fe, na, a);
}

synco_status synco_dnnl_bn_bwd(synco_backend *be, synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                               const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                               const float *gamma, const float *save_mean, const float *save_invstd) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  SYNCO_TRY(ready("bn_bwd dx", op, dx));
  SYNCO_TRY(ready("bn_bwd dy", op, dy));
  SYNCO_TRY(ready("bn_bwd x", op, x));
  bn_impl *k = op->impl;
  if (op->relu) SYNCO_TRY(ready("bn_bwd y", op, y));
  if (k->native) return synco_cpu_bn_bwd(k->native, op, dx, dgamma, dbeta, dy, y, x, gamma, save_mean, save_invstd);
  const int G = op->groups, C = op->c;
  const void *diff_dst = dy->data;
  if (op->relu) {
    if (dx->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu bn_bwd: fused relu is fp32 only");
    SYNCO_TRY(synco_dnnl_relu_bwd(be, dx, dy, y));
    diff_dst = dx->data; /* the backward primitive runs in place on dx */
  }
  dnnl_exec_arg_t a[10] = {{DNNL_ARG_SRC, k->m_s},       {DNNL_ARG_DIFF_DST, k->m_d}, {DNNL_ARG_DIFF_SRC, k->m_ds},
                           {DNNL_ARG_MEAN, k->m_mean},   {DNNL_ARG_VARIANCE, k->m_var}};
  int na = 5;
#if SYNCO_ONEDNN_BN_SEPARATE
  float *dsc = k->dss, *dsh = k->dss + C;
  SYNCO_TRY(synco_dnnl_bind(k->m_sc, gamma));
  SYNCO_TRY(synco_dnnl_bind(k->m_sh, k->ss)); /* the backward ignores beta's value but wants the argument */
  SYNCO_TRY(synco_dnnl_bind(k->m_dsc, dsc));
  SYNCO_TRY(synco_dnnl_bind(k->m_dsh, dsh));
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, k->m_sc};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, k->m_sh};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SCALE, k->m_dsc};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SHIFT, k->m_dsh};
#else
  /* the packed layout is [gamma | beta] for inputs and [dgamma | dbeta] for outputs */
  const float *dsc = k->dss, *dsh = k->dss + C;
  memcpy(k->ss, gamma, (size_t)C * sizeof(float));
  memset(k->ss + C, 0, (size_t)C * sizeof(float));
  SYNCO_TRY(synco_dnnl_bind(k->m_sc, k->ss));
  SYNCO_TRY(synco_dnnl_bind(k->m_dsc, k->dss));
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE_SHIFT, k->m_sc};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SCALE_SHIFT, k->m_dsc};
#endif
  SYNCO_TRY(synco_dnnl_bind(k->m_var, k->varb));
  for (int g = 0; g < G; g++) {
    for (int i = 0; i < C; i++) {
      const double is = save_invstd[(size_t)g * C + i];
      const double v = 1.0 / (is * is) - op->eps;
      k->varb[i] = v > 0 ? (float)v : 0.f;
    }
    SYNCO_TRY(synco_dnnl_bind(k->m_s, (const char *)x->data + g * k->slice_bytes));
    SYNCO_TRY(synco_dnnl_bind(k->m_d, (const char *)diff_dst + g * k->slice_bytes));
    SYNCO_TRY(synco_dnnl_bind(k->m_ds, (char *)dx->data + g * k->slice_bytes));
    SYNCO_TRY(synco_dnnl_bind(k->m_mean, save_mean + (size_t)g * C));
    SYNCO_TRY(synco_dnnl_exec(c, &k->b, na, a));
    for (int i = 0; i < C; i++) {
      dgamma[i] += dsc[i];
      dbeta[i] += dsh[i];
    }
  }
  return SYNCO_OK;
}
