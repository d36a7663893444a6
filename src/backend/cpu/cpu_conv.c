/* Convolution on oneDNN. At plan time it creates the forward, backward-data and backward-weights
 * primitives with activations fixed to the backend's layout (so layers chain without reorders) and the
 * weights left to the primitive (format_tag any), plus three reorders: plain OIHW weights into the forward
 * and the backward-data formats (each call, since SGD and EMA change the weights in place between calls;
 * the reordered copies live in op->impl), and the backward-weights result back to OIHW with a sum post-op,
 * which gives the contract's dw += without a temporary.
 *
 * 3x3 stride-1 layers on nChw8c activations (AVX2 machines) run as Winograd F(2x2, 3x3) (cpu_wino_conv.c)
 * instead: all three passes from 64 channels, backward weights alone from 32 (plan_wino has the measurements).
 * oneDNN 2.x has Winograd only for AVX-512, and its AVX2 direct kernels already run near the FMA peak, so
 * fewer multiplications is what is left to gain (the ResNet-18 CIFAR step went from 24.6 to 37.4 images/s on
 * 2 cores). A layer with all three passes on Winograd creates no oneDNN primitive at all.
 * SYNCO_CONV_WINOGRAD=0 turns it off (to compare, or to rule it out). */
#include <omp.h>
#include <stdlib.h>

#include "backend/cpu/cpu_onednn_util.h"
#include "backend/cpu/cpu_wino_conv.h"

typedef struct {
  synco_layout lx, ly;
  synco_dnnl_md md_x, md_y, md_w, md_wany, md_dwany;
  dnnl_primitive_desc_t pd_f, pd_bd, pd_bw;
  synco_dnnl_prim fwd, bwd_d, bwd_w, r_wf, r_wb, r_dw;
  dnnl_memory_t m_x, m_y, m_w, m_wf, m_wb, m_dwo; /* m_x / m_y also carry dx / dy; m_w is plain OIHW */
  void *wf, *wb, *dwo;                            /* wb == wf when both passes want the same format */
  int wino_fb, wino_w; /* forward + backward data / backward weights through cpu_wino_conv.c */
  synco_wino_plan wp;
} conv_impl;

void synco_dnnl_conv_release(synco_backend *be, synco_conv_op *op) {
  conv_impl *k = op->impl;
  (void)be;
  if (!k) return;
  synco_dnnl_prim *prims[] = {&k->fwd, &k->bwd_d, &k->bwd_w, &k->r_wf, &k->r_wb, &k->r_dw};
  for (size_t i = 0; i < sizeof(prims) / sizeof(*prims); i++) synco_dnnl_prim_free(prims[i]);
  dnnl_memory_t *mems[] = {&k->m_x, &k->m_y, &k->m_w, &k->m_wf, &k->m_wb, &k->m_dwo};
  for (size_t i = 0; i < sizeof(mems) / sizeof(*mems); i++) synco_dnnl_mem_free(mems[i]);
  synco_dnnl_pd_free(&k->pd_f);
  synco_dnnl_pd_free(&k->pd_bd);
  synco_dnnl_pd_free(&k->pd_bw);
  synco_dnnl_md *mds[] = {&k->md_x, &k->md_y, &k->md_w, &k->md_wany, &k->md_dwany};
  for (size_t i = 0; i < sizeof(mds) / sizeof(*mds); i++) synco_dnnl_md_free(mds[i]);
  if (k->wb != k->wf) free(k->wb);
  free(k->wf);
  free(k->dwo);
  free(k);
  op->impl = NULL;
}

static size_t alloc_bytes(synco_dnnl_cmd md) {
  const size_t bytes = dnnl_memory_desc_get_size(md);
  return bytes ? bytes : 64;
}

static synco_status alloc_for(synco_dnnl_cmd md, void **out) {
  *out = synco_aligned_alloc(alloc_bytes(md));
  return *out ? SYNCO_OK : SYNCO_ERR_NOMEM;
}

static synco_status create_pds(synco_dnnl_ctx *c, const synco_conv_op *op, conv_impl *k) {
  const dnnl_dims_t strides = {op->stride, op->stride};
  const dnnl_dims_t pad = {op->pad, op->pad};
  const synco_dnnl_cmd x = SYNCO_DNNL_MD(k->md_x), y = SYNCO_DNNL_MD(k->md_y);
  const synco_dnnl_cmd wany = SYNCO_DNNL_MD(k->md_wany), dwany = SYNCO_DNNL_MD(k->md_dwany);
#if DNNL_VERSION_MAJOR >= 3
  const dnnl_dims_t dil = {0, 0};
  SYNCO_DNNL(dnnl_convolution_forward_primitive_desc_create(&k->pd_f, c->eng, dnnl_forward_training,
                                                            dnnl_convolution_direct, x, wany, NULL, y, strides, dil,
                                                            pad, pad, c->attr));
  SYNCO_DNNL(dnnl_convolution_backward_data_primitive_desc_create(&k->pd_bd, c->eng, dnnl_convolution_direct, x, wany,
                                                                  y, strides, dil, pad, pad, k->pd_f, c->attr));
  SYNCO_DNNL(dnnl_convolution_backward_weights_primitive_desc_create(&k->pd_bw, c->eng, dnnl_convolution_direct, x,
                                                                     dwany, NULL, y, strides, dil, pad, pad, k->pd_f,
                                                                     c->attr));
#else
  dnnl_convolution_desc_t d;
  SYNCO_DNNL(dnnl_convolution_forward_desc_init(&d, dnnl_forward_training, dnnl_convolution_direct, x, wany, NULL, y,
                                                strides, pad, pad));
  SYNCO_DNNL(dnnl_primitive_desc_create(&k->pd_f, &d, c->attr, c->eng, NULL));
  SYNCO_DNNL(dnnl_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, x, wany, y, strides, pad, pad));
  SYNCO_DNNL(dnnl_primitive_desc_create(&k->pd_bd, &d, c->attr, c->eng, k->pd_f));
  SYNCO_DNNL(dnnl_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, x, dwany, NULL, y, strides, pad,
                                                         pad));
  SYNCO_DNNL(dnnl_primitive_desc_create(&k->pd_bw, &d, c->attr, c->eng, k->pd_f));
#endif
  return SYNCO_OK;
}

/* Which passes of the layer take Winograd (see the file comment), and the workspace shared by the backend's
 * layers for them. Narrow layers keep oneDNN: with few channels the transforms outweigh the saved products.
 * Measured per pass against oneDNN's direct AVX2 kernels (batch 128, 2 threads): 16 channels, 32x32: all
 * three 0.6-0.7x; 32 channels: forward and backward data 0.8x, backward weights 1.15-1.3x; 64 channels and
 * more: forward and backward data 1.0-1.5x, backward weights 1.3-2.4x. */
int synco_dnnl_winograd_on(const synco_dnnl_ctx *c) {
  const char *env = getenv("SYNCO_CONV_WINOGRAD");
  return !(env && *env == '0') && c->block == 8 && synco_wino_available();
}

/* Decides which passes take Winograd (filling k->wp); returns the shared workspace the layer needs, 0 for none. */
static size_t plan_wino(synco_dnnl_ctx *c, const synco_conv_op *op, conv_impl *k) {
  if (!synco_dnnl_winograd_on(c) || op->dtype != SYNCO_F32 || k->lx != SYNCO_LAYOUT_NCHW8C ||
      k->ly != SYNCO_LAYOUT_NCHW8C ||
      !synco_wino_applies(op->cin, op->cout, op->h, op->w, op->kh, op->kw, op->stride, op->pad))
    return 0;
  const int narrow = op->cin < op->cout ? op->cin : op->cout;
  if (narrow < 32) return 0;
  k->wino_fb = narrow >= 64;
  k->wino_w = narrow >= 32;
  return synco_wino_plan_make(&k->wp, op->n, op->cin, op->cout, op->h, op->w, omp_get_max_threads());
}

/* The decisions of a plan, nothing allocated yet: layouts, Winograd (*wino: the workspace it needs) and, unless all
 * three passes take Winograd, the memory descriptors and the three primitive descriptors. */
static synco_status describe(synco_backend *be, const synco_conv_op *op, conv_impl *k, size_t *wino) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  dnnl_data_type_t dt;
  SYNCO_TRY(synco_dnnl_dtype(c, op->dtype, &dt));
  k->lx = synco_dnnl_act_layout(be, op->cin, op->h, op->w, op->dtype);
  k->ly = synco_dnnl_act_layout(be, op->cout, op->oh, op->ow, op->dtype);
  *wino = plan_wino(c, op, k);
  if (k->wino_fb && k->wino_w) return SYNCO_OK; /* no oneDNN primitive or weight copy needed */
  SYNCO_TRY(synco_dnnl_md_act(&k->md_x, op->n, op->cin, op->h, op->w, op->dtype, k->lx));
  SYNCO_TRY(synco_dnnl_md_act(&k->md_y, op->n, op->cout, op->oh, op->ow, op->dtype, k->ly));
  const dnnl_dims_t wd = {op->cout, op->cin, op->kh, op->kw};
  SYNCO_TRY(synco_dnnl_md_tag(&k->md_w, 4, wd, dnnl_f32, dnnl_oihw));
  SYNCO_TRY(synco_dnnl_md_tag(&k->md_wany, 4, wd, dt, dnnl_format_tag_any));
  SYNCO_TRY(synco_dnnl_md_tag(&k->md_dwany, 4, wd, dnnl_f32, dnnl_format_tag_any));
  return create_pds(c, op, k);
}

static synco_status plan(synco_backend *be, synco_conv_op *op, conv_impl *k) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  size_t need;
  SYNCO_TRY(describe(be, op, k, &need));
  if (need > c->wino_bytes) {
    float *p = synco_aligned_alloc(need);
    if (!p) return SYNCO_ERR_NOMEM;
    free(c->wino);
    c->wino = p;
    c->wino_bytes = need;
  }
  if (k->wino_fb && k->wino_w) return SYNCO_OK;

  const synco_dnnl_cmd wf = dnnl_primitive_desc_query_md(k->pd_f, dnnl_query_weights_md, 0);
  const synco_dnnl_cmd wb = dnnl_primitive_desc_query_md(k->pd_bd, dnnl_query_weights_md, 0);
  const synco_dnnl_cmd dwo = dnnl_primitive_desc_query_md(k->pd_bw, dnnl_query_diff_weights_md, 0);
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_x, SYNCO_DNNL_MD(k->md_x)));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_y, SYNCO_DNNL_MD(k->md_y)));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_w, SYNCO_DNNL_MD(k->md_w)));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_wf, wf));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_wb, wb));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_dwo, dwo));
  SYNCO_TRY(alloc_for(wf, &k->wf));
  if (dnnl_memory_desc_equal(wf, wb))
    k->wb = k->wf;
  else
    SYNCO_TRY(alloc_for(wb, &k->wb));
  SYNCO_TRY(alloc_for(dwo, &k->dwo));

  SYNCO_TRY(synco_dnnl_prim_make(c, &k->fwd, k->pd_f));
  SYNCO_TRY(synco_dnnl_prim_make(c, &k->bwd_d, k->pd_bd));
  SYNCO_TRY(synco_dnnl_prim_make(c, &k->bwd_w, k->pd_bw));
  SYNCO_TRY(synco_dnnl_reorder_make(c, &k->r_wf, SYNCO_DNNL_MD(k->md_w), wf, c->attr));
  SYNCO_TRY(synco_dnnl_reorder_make(c, &k->r_wb, SYNCO_DNNL_MD(k->md_w), wb, c->attr));
  SYNCO_TRY(synco_dnnl_reorder_make(c, &k->r_dw, dwo, SYNCO_DNNL_MD(k->md_w), c->attr_sum));
  return SYNCO_OK;
}

/* What plan() would allocate, from the same decisions and primitive descriptors (no primitive is made, no memory
 * taken): the layer keeps its forward and backward-data weight copies (one when both passes want the same format),
 * its diff-weights buffer and the code of its three convolution primitives; the backend's scratchpad (convolutions
 * and reorders) and Winograd workspace grow to the largest layer's need. */
static synco_status plan_bytes(synco_backend *be, const synco_conv_op *op, conv_impl *k, synco_plan_bytes *b) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  size_t wino;
  SYNCO_TRY(describe(be, op, k, &wino));
  synco_plan_share(b, SYNCO_DNNL_SHARED_WINO, wino);
  if (k->wino_fb && k->wino_w) return SYNCO_OK;
  const synco_dnnl_cmd wf = dnnl_primitive_desc_query_md(k->pd_f, dnnl_query_weights_md, 0);
  const synco_dnnl_cmd wb = dnnl_primitive_desc_query_md(k->pd_bd, dnnl_query_weights_md, 0);
  const synco_dnnl_cmd dwo = dnnl_primitive_desc_query_md(k->pd_bw, dnnl_query_diff_weights_md, 0);
  b->kept += alloc_bytes(wf) + (dnnl_memory_desc_equal(wf, wb) ? 0 : alloc_bytes(wb)) + alloc_bytes(dwo) +
             3 * SYNCO_DNNL_CODE_BYTES;
  const_dnnl_primitive_desc_t pds[] = {k->pd_f, k->pd_bd, k->pd_bw};
  for (int i = 0; i < 3; i++) synco_plan_share(b, SYNCO_DNNL_SHARED_SCRATCH, synco_dnnl_scratch_bytes(pds[i]));
  size_t r[3];
  SYNCO_TRY(synco_dnnl_reorder_scratch(c, SYNCO_DNNL_MD(k->md_w), wf, c->attr, &r[0]));
  SYNCO_TRY(synco_dnnl_reorder_scratch(c, SYNCO_DNNL_MD(k->md_w), wb, c->attr, &r[1]));
  SYNCO_TRY(synco_dnnl_reorder_scratch(c, dwo, SYNCO_DNNL_MD(k->md_w), c->attr_sum, &r[2]));
  for (int i = 0; i < 3; i++) synco_plan_share(b, SYNCO_DNNL_SHARED_SCRATCH, r[i]);
  return SYNCO_OK;
}

synco_status synco_dnnl_conv_plan_bytes(synco_backend *be, const synco_conv_op *op, synco_plan_bytes *b) {
  conv_impl *k = synco_calloc(1, sizeof(*k));
  if (!k) return SYNCO_ERR_NOMEM;
  synco_conv_op tmp = *op;
  tmp.impl = k;
  b->kept += sizeof(*k);
  const synco_status s = plan_bytes(be, &tmp, k, b);
  synco_dnnl_conv_release(be, &tmp);
  return s;
}

synco_status synco_dnnl_conv_plan(synco_backend *be, synco_conv_op *op) {
  if (op->n <= 0 || op->cin <= 0 || op->h <= 0 || op->w <= 0 || op->cout <= 0 || op->kh <= 0 || op->kw <= 0 ||
      op->stride <= 0 || op->pad < 0)
    return synco_fail(SYNCO_ERR_ARG, "cpu conv: bad shape n%d c%d %dx%d -> %d k%dx%d s%d p%d", op->n, op->cin,
                      op->h, op->w, op->cout, op->kh, op->kw, op->stride, op->pad);
  const int oh = synco_conv_out_size(op->h, op->kh, op->stride, op->pad);
  const int ow = synco_conv_out_size(op->w, op->kw, op->stride, op->pad);
  if (op->oh == 0 && op->ow == 0) {
    op->oh = oh;
    op->ow = ow;
  }
  if (op->oh != oh || op->ow != ow || oh <= 0 || ow <= 0)
    return synco_fail(SYNCO_ERR_ARG, "cpu conv: output %dx%d, expected %dx%d", op->oh, op->ow, oh, ow);
  conv_impl *k = synco_calloc(1, sizeof(*k));
  if (!k) return SYNCO_ERR_NOMEM;
  op->impl = k;
  const synco_status s = plan(be, op, k);
  if (s != SYNCO_OK) synco_dnnl_conv_release(be, op);
  return s;
}

static synco_status planned(const synco_conv_op *op) {
  return op->impl ? SYNCO_OK : synco_fail(SYNCO_ERR_ARG, "cpu conv: op used before conv_plan");
}

synco_status synco_dnnl_conv_fwd(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                                 const float *w) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  SYNCO_TRY(planned(op));
  conv_impl *k = op->impl;
  SYNCO_TRY(synco_dnnl_check("conv_fwd x", x, op->n, op->cin, op->h, op->w, k->lx));
  SYNCO_TRY(synco_dnnl_check("conv_fwd y", y, op->n, op->cout, op->oh, op->ow, k->ly));
  if (k->wino_fb) return synco_wino_fwd(&k->wp, y->data, x->data, w, c->wino);
  SYNCO_TRY(synco_dnnl_bind(k->m_w, w));
  SYNCO_TRY(synco_dnnl_bind(k->m_wf, k->wf));
  const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, k->m_w}, {DNNL_ARG_DST, k->m_wf}};
  SYNCO_TRY(synco_dnnl_exec(c, &k->r_wf, 2, ra));
  SYNCO_TRY(synco_dnnl_bind(k->m_x, x->data));
  SYNCO_TRY(synco_dnnl_bind(k->m_y, y->data));
  const dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, k->m_x}, {DNNL_ARG_WEIGHTS, k->m_wf}, {DNNL_ARG_DST, k->m_y}};
  return synco_dnnl_exec(c, &k->fwd, 3, a);
}

synco_status synco_dnnl_conv_bwd_data(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                      const float *w) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  SYNCO_TRY(planned(op));
  conv_impl *k = op->impl;
  SYNCO_TRY(synco_dnnl_check("conv_bwd_data dx", dx, op->n, op->cin, op->h, op->w, k->lx));
  SYNCO_TRY(synco_dnnl_check("conv_bwd_data dy", dy, op->n, op->cout, op->oh, op->ow, k->ly));
  if (k->wino_fb) return synco_wino_bwd_data(&k->wp, dx->data, dy->data, w, c->wino);
  SYNCO_TRY(synco_dnnl_bind(k->m_w, w));
  SYNCO_TRY(synco_dnnl_bind(k->m_wb, k->wb));
  const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, k->m_w}, {DNNL_ARG_DST, k->m_wb}};
  SYNCO_TRY(synco_dnnl_exec(c, &k->r_wb, 2, ra));
  SYNCO_TRY(synco_dnnl_bind(k->m_x, dx->data));
  SYNCO_TRY(synco_dnnl_bind(k->m_y, dy->data));
  const dnnl_exec_arg_t a[] = {{DNNL_ARG_DIFF_SRC, k->m_x}, {DNNL_ARG_WEIGHTS, k->m_wb}, {DNNL_ARG_DIFF_DST, k->m_y}};
  return synco_dnnl_exec(c, &k->bwd_d, 3, a);
}

synco_status synco_dnnl_conv_bwd_weights(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                         const synco_tensor *x) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  SYNCO_TRY(planned(op));
  conv_impl *k = op->impl;
  SYNCO_TRY(synco_dnnl_check("conv_bwd_weights x", x, op->n, op->cin, op->h, op->w, k->lx));
  SYNCO_TRY(synco_dnnl_check("conv_bwd_weights dy", dy, op->n, op->cout, op->oh, op->ow, k->ly));
  if (k->wino_w) return synco_wino_bwd_weights(&k->wp, dw, dy->data, x->data, c->wino);
  SYNCO_TRY(synco_dnnl_bind(k->m_x, x->data));
  SYNCO_TRY(synco_dnnl_bind(k->m_y, dy->data));
  SYNCO_TRY(synco_dnnl_bind(k->m_dwo, k->dwo));
  const dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, k->m_x}, {DNNL_ARG_DIFF_DST, k->m_y}, {DNNL_ARG_DIFF_WEIGHTS, k->m_dwo}};
  SYNCO_TRY(synco_dnnl_exec(c, &k->bwd_w, 3, a));
  SYNCO_TRY(synco_dnnl_bind(k->m_w, dw));
  const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, k->m_dwo}, {DNNL_ARG_DST, k->m_w}};
  return synco_dnnl_exec(c, &k->r_dw, 2, ra);
}
