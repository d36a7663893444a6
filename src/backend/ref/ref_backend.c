/* The reference backend's op table: plain-C (OpenBLAS for GEMMs) implementations of every op in
 * tensor/backend.h, written to be read and trusted rather than to be fastest. Every activation is PLAIN
 * NCHW fp32, so the layout hooks are the identity and to_backend / to_plain are copies. The op bodies live
 * in ref_conv.c, ref_batchnorm.c, ref_pool.c, ref_elementwise.c and ref_linear.c. */
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref_internal.h"
#include "backend/registry.h"

synco_status synco_ref_check(const synco_tensor *t, const char *op, const char *what, int n, int c, int h, int w) {
  return synco_tensor_check(t, "ref", op, what, n, c, h, w, SYNCO_LAYOUT_PLAIN, 1);
}

synco_status synco_ref_check_like(const synco_tensor *t, const char *op, const char *what, const synco_tensor *like) {
  return synco_ref_check(t, op, what, like->n, like->c, like->h, like->w);
}

static synco_layout ref_act_layout(synco_backend *be, int c, int h, int w, synco_dtype dt) {
  return SYNCO_LAYOUT_PLAIN;
}

static size_t ref_act_bytes(synco_backend *be, int n, int c, int h, int w, synco_dtype dt) {
  return (size_t)n * c * h * w * synco_dtype_size(dt);
}

static synco_status ref_to_backend(synco_backend *be, synco_tensor *dst, const float *src_plain) {
  SYNCO_TRY(synco_ref_check(dst, "to_backend", "dst", dst ? dst->n : 0, dst ? dst->c : 0, dst ? dst->h : 0,
                            dst ? dst->w : 0));
  if (!src_plain) return synco_fail(SYNCO_ERR_ARG, "ref to_backend: src is missing");
  if (dst->data != src_plain) memmove(dst->data, src_plain, synco_tensor_numel(dst) * sizeof(float));
  return SYNCO_OK;
}

static synco_status ref_to_plain(synco_backend *be, float *dst_plain, const synco_tensor *src) {
  SYNCO_TRY(synco_ref_check(src, "to_plain", "src", src ? src->n : 0, src ? src->c : 0, src ? src->h : 0,
                            src ? src->w : 0));
  if (!dst_plain) return synco_fail(SYNCO_ERR_ARG, "ref to_plain: dst is missing");
  if (dst_plain != src->data) memmove(dst_plain, src->data, synco_tensor_numel(src) * sizeof(float));
  return SYNCO_OK;
}

static void ref_destroy(synco_backend *be) { free(be); }

/* fp32 only, direct convolutions: the reference has none of the optional features. */
static int ref_supports(synco_backend *be, synco_capability cap) { return 0; }

static const synco_backend ref_ops = {
    .name = "ref",
    .destroy = ref_destroy,
    .supports = ref_supports,
    SYNCO_REF_HOST_OPS,
    .gemm = synco_ref_gemm,
    .act_layout = ref_act_layout,
    .act_bytes = ref_act_bytes,
    .to_backend = ref_to_backend,
    .to_plain = ref_to_plain,
    .conv_plan = synco_ref_conv_plan,
    .conv_plan_bytes = synco_ref_conv_plan_bytes,
    .conv_release = synco_ref_conv_release,
    .conv_fwd = synco_ref_conv_fwd,
    .conv_bwd_data = synco_ref_conv_bwd_data,
    .conv_bwd_weights = synco_ref_conv_bwd_weights,
    .bn_plan = synco_ref_bn_plan,
    .bn_plan_bytes = synco_ref_bn_plan_bytes,
    .bn_release = synco_ref_bn_release,
    .bn_fwd_train = synco_ref_bn_fwd_train,
    .bn_fwd_eval = synco_ref_bn_fwd_eval,
    .bn_bwd = synco_ref_bn_bwd,
    .pool_plan = synco_ref_pool_plan,
    .pool_plan_bytes = synco_ref_pool_plan_bytes,
    .pool_release = synco_ref_pool_release,
    .maxpool_fwd = synco_ref_maxpool_fwd,
    .maxpool_bwd = synco_ref_maxpool_bwd,
    .relu_fwd = synco_ref_relu_fwd,
    .relu_bwd = synco_ref_relu_bwd,
    .add = synco_ref_add,
    .avgpool_fwd = synco_ref_avgpool_fwd,
    .avgpool_bwd = synco_ref_avgpool_bwd,
    .linear_fwd = synco_ref_linear_fwd,
    .linear_bwd = synco_ref_linear_bwd,
    .l2norm_fwd = synco_ref_l2norm_fwd,
    .l2norm_bwd = synco_ref_l2norm_bwd,
};

synco_status synco_backend_ref_create(synco_backend **out) {
  if (!out) return synco_fail(SYNCO_ERR_ARG, "synco_backend_ref_create: out is NULL");
  *out = NULL;
  synco_backend *be = synco_malloc(sizeof *be);
  if (!be) return SYNCO_ERR_NOMEM;
  *be = ref_ops;
  *out = be;
  return SYNCO_OK;
}
