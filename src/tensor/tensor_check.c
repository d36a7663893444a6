/* The argument check of every backend's ops (tensor.h: synco_tensor_check), so that all backends refuse a wrong
 * tensor with the same words. */
#include "base/status.h"
#include "tensor/tensor.h"

const char *synco_layout_name(synco_layout l) {
  switch (l) {
    case SYNCO_LAYOUT_PLAIN: return "plain";
    case SYNCO_LAYOUT_NCHW16C: return "nChw16c";
    case SYNCO_LAYOUT_NCHW8C: return "nChw8c";
    case SYNCO_LAYOUT_NHWC_BF16: return "nhwc bf16";
  }
  return "unknown";
}

synco_status synco_tensor_check(const synco_tensor *t, const char *backend, const char *op, const char *what, int n,
                                int c, int h, int w, synco_layout layout, int f32_only) {
  if (!t || !t->data) return synco_fail(SYNCO_ERR_ARG, "%s %s: %s is missing", backend, op, what);
  if (t->dtype != SYNCO_F32 && (f32_only || t->dtype != SYNCO_BF16))
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "%s %s: %s must be f32 (the %s backend has no bf16 %s)", backend, op, what,
                      backend, t->dtype == SYNCO_BF16 ? "here" : "or other dtype");
  if (t->layout != layout)
    return synco_fail(SYNCO_ERR_ARG, "%s %s: %s has layout %s, expected %s", backend, op, what,
                      synco_layout_name(t->layout), synco_layout_name(layout));
  if (t->n != n || t->c != c || t->h != h || t->w != w)
    return synco_fail(SYNCO_ERR_ARG, "%s %s: %s is %dx%dx%dx%d, expected %dx%dx%dx%d", backend, op, what, t->n, t->c,
                      t->h, t->w, n, c, h, w);
  return SYNCO_OK;
}
