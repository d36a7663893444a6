/* The cpu backend's pooling and element-wise ops: max pooling (a oneDNN primitive with its argmax
 * workspace in op->impl), and the memory-bound ops written as OpenMP loops so that they need no plan and
 * never allocate: ReLU, add and their fused backward (layout-agnostic, because operands share a layout without
 * padding) and
 * global average pooling from any layout to a plain [n, c] matrix. Linear and L2 normalization work on
 * plain matrices, where the reference backend's cblas code is already the fast path: the op table
 * points at it (cpu_backend.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_affinity.h"
#include "backend/cpu/cpu_onednn_util.h"

/* The statements given last for each element i of 0 .. n-1, in chunks of 16384 under affinity scheduling
 * (cpu_affinity.h: a thread takes the images it took in the layers before), each chunk a simd loop. */
#define ELEMENTWISE(n, ...)                                                                          \
  do {                                                                                               \
    synco_affinity a_;                                                                               \
    synco_affinity_init(&a_, (n), 16384);                                                            \
    _Pragma("omp parallel num_threads(a_.parts)")                                                    \
    for (synco_affinity_cursor c_ = synco_affinity_start(&a_); synco_affinity_next(&a_, &c_);)        \
      _Pragma("omp simd") for (long i = c_.i0; i < c_.i1; i++) __VA_ARGS__                          \
  } while (0) /* (not SYNCO_AFFINITY_FOR: the simd pragma goes on the inner loop) */

/* ---- max pooling ------------------------------------------------------------------------------- */

typedef struct {
  synco_layout lx, ly;
  synco_dnnl_md md_x, md_y;
  dnnl_primitive_desc_t pd_f, pd_b;
  synco_dnnl_prim f, b;
  dnnl_memory_t m_x, m_y, m_ws;
  void *ws;
} pool_impl;

void synco_dnnl_pool_release(synco_backend *be, synco_pool_op *op) {
  pool_impl *k = op->impl;
  (void)be;
  if (!k) return;
  synco_dnnl_prim_free(&k->f);
  synco_dnnl_prim_free(&k->b);
  synco_dnnl_mem_free(&k->m_x);
  synco_dnnl_mem_free(&k->m_y);
  synco_dnnl_mem_free(&k->m_ws);
  synco_dnnl_pd_free(&k->pd_f);
  synco_dnnl_pd_free(&k->pd_b);
  synco_dnnl_md_free(&k->md_x);
  synco_dnnl_md_free(&k->md_y);
  free(k->ws);
  free(k);
  op->impl = NULL;
}

/* The decisions of a plan, nothing allocated yet: layouts, descriptors, primitive descriptors. */
static synco_status pool_describe(synco_backend *be, const synco_pool_op *op, pool_impl *k) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  dnnl_data_type_t dt;
  SYNCO_TRY(synco_dnnl_dtype(c, op->dtype, &dt));
  k->lx = synco_dnnl_act_layout(be, op->c, op->h, op->w, op->dtype);
  k->ly = synco_dnnl_act_layout(be, op->c, op->oh, op->ow, op->dtype);
  SYNCO_TRY(synco_dnnl_md_act(&k->md_x, op->n, op->c, op->h, op->w, op->dtype, k->lx));
  SYNCO_TRY(synco_dnnl_md_act(&k->md_y, op->n, op->c, op->oh, op->ow, op->dtype, k->ly));
  const synco_dnnl_cmd x = SYNCO_DNNL_MD(k->md_x), y = SYNCO_DNNL_MD(k->md_y);
  const dnnl_dims_t strides = {op->stride, op->stride}, kernel = {op->k, op->k}, pad = {op->pad, op->pad};
  const dnnl_dims_t dil = {0, 0};
#if DNNL_VERSION_MAJOR >= 3
  SYNCO_DNNL(dnnl_pooling_forward_primitive_desc_create(&k->pd_f, c->eng, dnnl_forward_training, dnnl_pooling_max, x, y,
                                                        strides, kernel, dil, pad, pad, c->attr));
  SYNCO_DNNL(dnnl_pooling_backward_primitive_desc_create(&k->pd_b, c->eng, dnnl_pooling_max, x, y, strides, kernel, dil,
                                                         pad, pad, k->pd_f, c->attr));
#else
  dnnl_pooling_v2_desc_t d;
  SYNCO_DNNL(dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_training, dnnl_pooling_max, x, y, strides, kernel, dil,
                                               pad, pad));
  SYNCO_DNNL(dnnl_primitive_desc_create(&k->pd_f, &d, c->attr, c->eng, NULL));
  SYNCO_DNNL(dnnl_pooling_v2_backward_desc_init(&d, dnnl_pooling_max, x, y, strides, kernel, dil, pad, pad));
  SYNCO_DNNL(dnnl_primitive_desc_create(&k->pd_b, &d, c->attr, c->eng, k->pd_f));
#endif
  return SYNCO_OK;
}

/* The argmax workspace the forward primitive writes for the backward. */
static size_t pool_ws_bytes(const pool_impl *k) {
  synco_dnnl_cmd wmd = dnnl_primitive_desc_query_md(k->pd_f, dnnl_query_workspace_md, 0);
  return wmd ? dnnl_memory_desc_get_size(wmd) : 0;
}

static synco_status pool_plan(synco_backend *be, synco_pool_op *op, pool_impl *k) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  SYNCO_TRY(pool_describe(be, op, k));
  const synco_dnnl_cmd x = SYNCO_DNNL_MD(k->md_x), y = SYNCO_DNNL_MD(k->md_y);
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_x, x));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_y, y));
  const size_t wb = pool_ws_bytes(k);
  if (wb) {
    SYNCO_TRY(synco_dnnl_mem(c, &k->m_ws, dnnl_primitive_desc_query_md(k->pd_f, dnnl_query_workspace_md, 0)));
    if (!(k->ws = synco_aligned_alloc(wb))) return SYNCO_ERR_NOMEM;
  }
  SYNCO_TRY(synco_dnnl_prim_make(c, &k->f, k->pd_f));
  SYNCO_TRY(synco_dnnl_prim_make(c, &k->b, k->pd_b));
  return SYNCO_OK;
}

synco_status synco_dnnl_pool_plan(synco_backend *be, synco_pool_op *op) {
  if (op->n <= 0 || op->c <= 0 || op->h <= 0 || op->w <= 0 || op->k <= 0 || op->stride <= 0 || op->pad < 0 ||
      op->pad >= op->k)
    return synco_fail(SYNCO_ERR_ARG, "cpu pool: bad shape n%d c%d %dx%d k%d s%d p%d", op->n, op->c, op->h, op->w,
                      op->k, op->stride, op->pad);
  const int oh = synco_conv_out_size(op->h, op->k, op->stride, op->pad);
  const int ow = synco_conv_out_size(op->w, op->k, op->stride, op->pad);
  if (op->oh == 0 && op->ow == 0) {
    op->oh = oh;
    op->ow = ow;
  }
  if (op->oh != oh || op->ow != ow || oh <= 0 || ow <= 0)
    return synco_fail(SYNCO_ERR_ARG, "cpu pool: output %dx%d, expected %dx%d", op->oh, op->ow, oh, ow);
  pool_impl *k = synco_calloc(1, sizeof(*k));
  if (!k) return SYNCO_ERR_NOMEM;
  op->impl = k;
  const synco_status s = pool_plan(be, op, k);
  if (s != SYNCO_OK) synco_dnnl_pool_release(be, op);
  return s;
}

/* What pool_plan would allocate: the argmax workspace and two primitives' code; their scratchpad is shared. */
synco_status synco_dnnl_pool_plan_bytes(synco_backend *be, const synco_pool_op *op, synco_plan_bytes *b) {
  pool_impl *k = synco_calloc(1, sizeof(*k));
  if (!k) return SYNCO_ERR_NOMEM;
  synco_pool_op tmp = *op;
  tmp.impl = k;
  const synco_status s = pool_describe(be, op, k);
  if (!s) {
    b->kept += sizeof(*k) + pool_ws_bytes(k) + 2 * SYNCO_DNNL_CODE_BYTES;
    synco_plan_share(b, SYNCO_DNNL_SHARED_SCRATCH, synco_dnnl_scratch_bytes(k->pd_f));
    synco_plan_share(b, SYNCO_DNNL_SHARED_SCRATCH, synco_dnnl_scratch_bytes(k->pd_b));
  }
  synco_dnnl_pool_release(be, &tmp);
  return s;
}

synco_status synco_dnnl_maxpool_fwd(synco_backend *be, synco_pool_op *op, synco_tensor *y, const synco_tensor *x) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  pool_impl *k = op->impl;
  if (!k) return synco_fail(SYNCO_ERR_ARG, "cpu maxpool_fwd: op used before pool_plan");
  SYNCO_TRY(synco_dnnl_check("maxpool_fwd x", x, op->n, op->c, op->h, op->w, k->lx));
  SYNCO_TRY(synco_dnnl_check("maxpool_fwd y", y, op->n, op->c, op->oh, op->ow, k->ly));
  SYNCO_TRY(synco_dnnl_bind(k->m_x, x->data));
  SYNCO_TRY(synco_dnnl_bind(k->m_y, y->data));
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, k->m_x}, {DNNL_ARG_DST, k->m_y}};
  int na = 2;
  if (k->m_ws) {
    SYNCO_TRY(synco_dnnl_bind(k->m_ws, k->ws));
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, k->m_ws};
  }
  return synco_dnnl_exec(c, &k->f, na, a);
}

synco_status synco_dnnl_maxpool_bwd(synco_backend *be, synco_pool_op *op, synco_tensor *dx, const synco_tensor *dy) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  pool_impl *k = op->impl;
  if (!k) return synco_fail(SYNCO_ERR_ARG, "cpu maxpool_bwd: op used before pool_plan");
  SYNCO_TRY(synco_dnnl_check("maxpool_bwd dx", dx, op->n, op->c, op->h, op->w, k->lx));
  SYNCO_TRY(synco_dnnl_check("maxpool_bwd dy", dy, op->n, op->c, op->oh, op->ow, k->ly));
  SYNCO_TRY(synco_dnnl_bind(k->m_x, dx->data));
  SYNCO_TRY(synco_dnnl_bind(k->m_y, dy->data));
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_SRC, k->m_x}, {DNNL_ARG_DIFF_DST, k->m_y}};
  int na = 2;
  if (k->m_ws) {
    SYNCO_TRY(synco_dnnl_bind(k->m_ws, k->ws));
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, k->m_ws};
  }
  return synco_dnnl_exec(c, &k->b, na, a);
}

/* ---- element-wise ------------------------------------------------------------------------------ */

static synco_status same(const char *what, const synco_tensor *a, const synco_tensor *b) {
  if (!a || !b || !a->data || !b->data) return synco_fail(SYNCO_ERR_ARG, "cpu %s: missing tensor", what);
  if (a->n != b->n || a->c != b->c || a->h != b->h || a->w != b->w || a->layout != b->layout || a->dtype != b->dtype)
    return synco_fail(SYNCO_ERR_ARG, "cpu %s: tensors differ (%dx%dx%dx%d layout %d vs %dx%dx%dx%d layout %d)",
                      what, a->n, a->c, a->h, a->w, (int)a->layout, b->n, b->c, b->h, b->w, (int)b->layout);
  if (a->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu %s: only fp32 so far", what);
  return SYNCO_OK;
}

synco_status synco_dnnl_relu_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  (void)be;
  SYNCO_TRY(same("relu_fwd", y, x));
  const float *px = x->data;
  float *py = y->data;
  const long n = (long)synco_tensor_numel(x);
  ELEMENTWISE(n, { py[i] = px[i] < 0.f ? 0.f : px[i]; }); /* NaN stays NaN, as torch's ReLU */
  return SYNCO_OK;
}

synco_status synco_dnnl_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y) {
  (void)be;
  SYNCO_TRY(same("relu_bwd", dx, dy));
  SYNCO_TRY(same("relu_bwd", dx, y));
  const float *pdy = dy->data, *py = y->data;
  float *pdx = dx->data;
  const long n = (long)synco_tensor_numel(dx);
  ELEMENTWISE(n, { pdx[i] = synco_relu_mask(py[i], pdy[i]); });
  return SYNCO_OK;
}

synco_status synco_dnnl_add_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *a, const synco_tensor *b,
                                     const synco_tensor *y) {
  (void)be;
  SYNCO_TRY(same("add_relu_bwd", dx, a));
  SYNCO_TRY(same("add_relu_bwd", dx, b));
  SYNCO_TRY(same("add_relu_bwd", dx, y));
  const float *pa = a->data, *pb = b->data, *py = y->data;
  float *pdx = dx->data;
  const long n = (long)synco_tensor_numel(dx);
  ELEMENTWISE(n, {
    /* add's sum, then relu_bwd's mask (sum where y > 0, else +0), as bits: written as synco_relu_mask, the compiler
     * moved the add into the taken branch and left scalar code with an unpredictable branch (0.6 ms a call at width
     * 8, 6x the two passes it replaces) */
    const float sum = pa[i] + pb[i];
    uint32_t bits;
    memcpy(&bits, &sum, sizeof bits);
    bits &= py[i] > 0.f ? 0xFFFFFFFFu : 0u;
    memcpy(&pdx[i], &bits, sizeof bits);
  });
  return SYNCO_OK;
}

synco_status synco_dnnl_add(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                            int accumulate) {
  (void)be;
  SYNCO_TRY(same("add", y, a));
  const float *pa = a->data;
  float *py = y->data;
  const long n = (long)synco_tensor_numel(y);
  if (accumulate) {
    ELEMENTWISE(n, { py[i] += pa[i]; });
    return SYNCO_OK;
  }
  SYNCO_TRY(same("add", y, b));
  const float *pb = b->data;
  ELEMENTWISE(n, { py[i] = pa[i] + pb[i]; });
  return SYNCO_OK;
}

/* ---- global average pooling -------------------------------------------------------------------- */

/* x in a backend layout (blocks of B channels; plain is B = 1), m the plain [n, c] matrix. */
static synco_status gap_check(const char *what, const synco_tensor *x, const synco_tensor *m, int *B) {
  if (!x || !m || !x->data || !m->data) return synco_fail(SYNCO_ERR_ARG, "cpu %s: missing tensor", what);
  if (x->dtype != SYNCO_F32 || m->dtype != SYNCO_F32)
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu %s: only fp32 so far", what);
  if (m->n != x->n || m->c != x->c || m->h != 1 || m->w != 1 || m->layout != SYNCO_LAYOUT_PLAIN)
    return synco_fail(SYNCO_ERR_ARG, "cpu %s: matrix %dx%dx%dx%d (layout %d) does not match %dx%d plain", what,
                      m->n, m->c, m->h, m->w, (int)m->layout, x->n, x->c);
  *B = synco_dnnl_layout_block(x->layout);
  if (x->c % *B) return synco_fail(SYNCO_ERR_ARG, "cpu %s: %d channels in blocks of %d", what, x->c, *B);
  return SYNCO_OK;
}

synco_status synco_dnnl_avgpool_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  int B;
  (void)be;
  SYNCO_TRY(gap_check("avgpool_fwd", x, y, &B));
  const long CB = x->c / B, HW = (long)x->h * x->w, N = x->n;
  const float inv = 1.f / (float)HW;
  const float *px = x->data;
  float *py = y->data;
  synco_affinity a;
  synco_affinity_init(&a, N * CB, 4);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, ncb) {
    const float *s = px + ncb * HW * B;
    float *o = py + ncb * B; /* [n][cb*B + b] is ncb*B + b */
    float acc[16] = {0};
    if (B == 1) {
      double a = 0;
      for (long p = 0; p < HW; p++) a += s[p];
      o[0] = (float)(a * inv);
      continue;
    }
    for (long p = 0; p < HW; p++)
      for (int b = 0; b < B; b++) acc[b] += s[p * B + b];
    for (int b = 0; b < B; b++) o[b] = acc[b] * inv;
  }
  return SYNCO_OK;
}

synco_status synco_dnnl_avgpool_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy) {
  int B;
  (void)be;
  SYNCO_TRY(gap_check("avgpool_bwd", dx, dy, &B));
  const long CB = dx->c / B, HW = (long)dx->h * dx->w, N = dx->n;
  const float inv = 1.f / (float)HW;
  const float *pdy = dy->data;
  float *pdx = dx->data;
  synco_affinity a;
  synco_affinity_init(&a, N * CB, 4);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, ncb) {
    const float *g = pdy + ncb * B;
    float *o = pdx + ncb * HW * B;
    for (long p = 0; p < HW; p++)
      for (int b = 0; b < B; b++) o[p * B + b] = g[b] * inv;
  }
  return SYNCO_OK;
}
