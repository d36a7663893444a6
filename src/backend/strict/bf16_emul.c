/* The cuda backend's --precision bf16 arithmetic, emulated over the reference ops in host memory, so that the CPU
 * can run what a GPU runs under bf16 (the strict backend takes it as its arithmetic under --precision bf16:
 * `--backend strict --precision bf16`):
 *  - activations of 8k channels and more than one pixel are NHWC bf16 (SYNCO_LAYOUT_NHWC_BF16, synco_nhwc_bf16_applies),
 *    the others plain fp32, as on the GPU; to_backend / to_plain convert;
 *  - each layer op unpacks its NHWC bf16 operands into plain fp32 (exactly: bf16 values are floats), runs the
 *    reference op and rounds its activation results back into bf16 (to nearest even, kernels/bf16_kernel.h);
 *  - convolutions and linear layers multiply bf16: their activation and weight operands are rounded to bf16 first
 *    (plain fp32 ones too: the stem's input, the matrices of the head), and a convolution's result is rounded to bf16
 *    whatever its layout (cuDNN writes bf16); a convolution's weight gradient is summed from zero, rounded to bf16
 *    and then added to the fp32 gradient, as the GPU's does;
 *  - a residual block's end, relu(bn(x) + shortcut), and its backward's masked sum are one pass each, rounded once,
 *    as the GPU's bn_fwd_train_add_relu and add_relu_bwd;
 *  - everything else (the step ops, BN statistics, parameters) is the reference's fp32.
 * What differs from the GPU is the order of sums (so rounding, not formulas). Host memory, allocating scratch per
 * call: a test backend. */
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/status.h"
#include "kernels/bf16_kernel.h"

typedef struct {
  synco_backend *ref;
} emul_ctx;

static synco_backend *R(synco_backend *be) { return ((emul_ctx *)be->ctx)->ref; }

static synco_layout e_act_layout(synco_backend *be, int c, int h, int w, synco_dtype dt) {
  (void)be, (void)dt;
  return synco_nhwc_bf16_applies(c, h, w) ? SYNCO_LAYOUT_NHWC_BF16 : SYNCO_LAYOUT_PLAIN;
}

static size_t e_act_bytes(synco_backend *be, int n, int c, int h, int w, synco_dtype dt) {
  (void)be;
  return (size_t)n * c * h * w * synco_dtype_size(dt);
}

static float bf16_round(float x) { return synco_k_f32_of_bf16(synco_k_bf16_of(x)); }

/* ---- an operand as a plain fp32 tensor ---- */

/* NHWC bf16 t <-> plain fp32 (its values exactly, and rounded to nearest even back). */
static void nhwc_to_plain(float *d, const synco_tensor *t) {
  synco_k_from_nhwc16(d, t->data, t->n, t->c, (size_t)t->h * t->w, 0);
}

static void plain_to_nhwc(const synco_tensor *t, const float *s) {
  synco_k_to_nhwc16(t->data, s, t->n, t->c, (size_t)t->h * t->w);
}

/* The plain fp32 form an op of the reference runs on: the tensor itself where it is plain and needs no rounding, else
 * a copy (NHWC bf16 values are exact floats). */
typedef struct {
  synco_tensor t;        /* what the reference op gets */
  const synco_tensor *of; /* the operand (NULL: none) */
} view;

/* An input, or an output whose old values the op reads (accumulate, in place): unpacked; round: rounded to bf16. */
static synco_status view_in(view *v, const synco_tensor *t, int round) {
  v->of = t;
  if (!t) return SYNCO_OK;
  v->t = *t;
  if (!t->data || (t->layout != SYNCO_LAYOUT_NHWC_BF16 && !round)) return SYNCO_OK;
  const size_t n = synco_tensor_numel(t);
  float *d = synco_malloc((n ? n : 1) * sizeof(float));
  if (!d) return SYNCO_ERR_NOMEM;
  if (t->layout == SYNCO_LAYOUT_NHWC_BF16) {
    nhwc_to_plain(d, t);
  } else {
    const float *s = t->data;
    for (size_t i = 0; i < n; i++) d[i] = bf16_round(s[i]);
  }
  v->t.data = d;
  v->t.layout = SYNCO_LAYOUT_PLAIN;
  v->t.dtype = SYNCO_F32;
  return SYNCO_OK;
}

/* After the op: an output written back (NHWC bf16 rounded; plain as it is, or rounded to bf16 values with round),
 * and the copy freed. */
static void view_end(view *v, int write, int round) {
  const synco_tensor *t = v->of;
  if (!t || !t->data) return;
  const size_t n = synco_tensor_numel(t);
  const float *s = v->t.data;
  if (write && t->layout == SYNCO_LAYOUT_NHWC_BF16) {
    plain_to_nhwc(t, s);
  } else if (write) {
    float *d = t->data;
    for (size_t i = 0; i < n; i++) d[i] = round ? bf16_round(s[i]) : s[i];
  }
  if (v->t.data != t->data) free(v->t.data);
}

/* n values rounded to bf16 (a copy; NULL stays NULL). */
static float *rounded(const float *w, size_t n) {
  if (!w) return NULL;
  float *r = synco_malloc((n ? n : 1) * sizeof(float));
  if (r)
    for (size_t i = 0; i < n; i++) r[i] = bf16_round(w[i]);
  return r;
}

/* The views of up to 4 operands; each op lists which are read (in) and which written (out). */
typedef struct {
  view v[4];
  int n;
  synco_status s;
} views;

static synco_tensor *use(views *vs, const synco_tensor *t, int round) {
  view *v = &vs->v[vs->n++];
  if (!vs->s) vs->s = view_in(v, t, round);
  else v->of = NULL;
  return t ? &v->t : NULL;
}

/* Writes back the outputs (mask bit i: operand i is written; round_out: rounded to bf16 values where plain) and frees. */
static synco_status finish(views *vs, synco_status s, unsigned outs, int round_out) {
  for (int i = 0; i < vs->n; i++) view_end(&vs->v[i], !s && !vs->s && (outs >> i & 1u), round_out);
  return vs->s ? vs->s : s;
}

#define BEGIN views vs_ = {.n = 0, .s = SYNCO_OK}
#define IN(t) use(&vs_, (t), 0)
#define IN_ROUNDED(t) use(&vs_, (t), 1)
#define RUN_OP(call) (vs_.s ? vs_.s : (call))
#define END(s, outs, round) return finish(&vs_, (s), (outs), (round))

/* ---- to and from plain ---- */

static synco_status e_to_backend(synco_backend *be, synco_tensor *dst, const float *src_plain) {
  if (!dst || !dst->data || !src_plain || dst->layout != SYNCO_LAYOUT_NHWC_BF16)
    return R(be)->to_backend(R(be), dst, src_plain);
  plain_to_nhwc(dst, src_plain);
  return SYNCO_OK;
}

static synco_status e_to_plain(synco_backend *be, float *dst_plain, const synco_tensor *src) {
  if (!src || !src->data || !dst_plain || src->layout != SYNCO_LAYOUT_NHWC_BF16)
    return R(be)->to_plain(R(be), dst_plain, src);
  nhwc_to_plain(dst_plain, src);
  return SYNCO_OK;
}

/* ---- convolutions and linear layers: bf16 products ---- */

/* A pass from one activation to another through the weights (forward: y from x; backward data: dx from dy, the two
 * signatures alike): its input and the weights rounded to bf16, its result rounded as cuDNN writes it. */
static synco_status e_conv_pass(synco_backend *be, synco_conv_op *op, synco_tensor *out, const synco_tensor *in,
                                const float *w, synco_conv_fwd_fn *pass) {
  BEGIN;
  synco_tensor *po = IN(out), *pi = IN_ROUNDED(in);
  float *wr = rounded(w, (size_t)op->cout * op->cin * op->kh * op->kw);
  const synco_status s = w && !wr ? SYNCO_ERR_NOMEM : RUN_OP(pass(R(be), op, po, pi, wr));
  free(wr);
  END(s, 1u, 1);
}

static synco_status e_conv_fwd(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                               const float *w) {
  return e_conv_pass(be, op, y, x, w, R(be)->conv_fwd);
}

static synco_status e_conv_bwd_data(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                    const float *w) {
  return e_conv_pass(be, op, dx, dy, w, R(be)->conv_bwd_data);
}

/* The sum from zero, rounded to bf16, then added (the GPU's: cuDNN writes a bf16 dw, converted and added). */
static synco_status e_conv_bwd_weights(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                       const synco_tensor *x) {
  BEGIN;
  synco_tensor *pdy = IN_ROUNDED(dy), *px = IN_ROUNDED(x);
  const size_t n = (size_t)op->cout * op->cin * op->kh * op->kw;
  float *part = dw ? calloc(n ? n : 1, sizeof(float)) : NULL;
  synco_status s = dw && !part ? SYNCO_ERR_NOMEM : RUN_OP(R(be)->conv_bwd_weights(R(be), op, part, pdy, px));
  if (!s && dw)
    for (size_t i = 0; i < n; i++) dw[i] += bf16_round(part[i]);
  free(part);
  END(s, 0u, 0);
}

static synco_status e_linear_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                                 const float *b) {
  BEGIN;
  synco_tensor *py = IN(y), *px = IN_ROUNDED(x);
  float *wr = rounded(w, x && y ? (size_t)y->c * x->c : 0);
  const synco_status s = w && !wr ? SYNCO_ERR_NOMEM : RUN_OP(R(be)->linear_fwd(R(be), py, px, wr, b));
  free(wr);
  END(s, 1u, 0);
}

static synco_status e_linear_bwd(synco_backend *be, synco_tensor *dx, float *dw, float *db, const synco_tensor *dy,
                                 const synco_tensor *x, const float *w) {
  BEGIN;
  synco_tensor *pdx = IN(dx), *pdy = IN_ROUNDED(dy), *px = IN_ROUNDED(x);
  float *wr = rounded(w, x && dy ? (size_t)dy->c * x->c : 0);
  /* db sums the unrounded dy (the GPU's bias gradient reads the fp32 matrix) */
  synco_status s = w && !wr ? SYNCO_ERR_NOMEM : RUN_OP(R(be)->linear_bwd(R(be), pdx, dw, NULL, pdy, px, wr));
  if (!s && db) s = R(be)->linear_bwd(R(be), NULL, NULL, db, dy, x, NULL);
  free(wr);
  END(s, 1u, 0);
}

/* ---- the other layers: bf16 in, fp32 arithmetic, bf16 out ---- */

static synco_status e_bn_fwd_train(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                   float *save_invstd, float *running_mean, float *running_var, const synco_tensor *x,
                                   const float *gamma, const float *beta) {
  BEGIN;
  synco_tensor *py = IN(y), *px = IN(x);
  END(RUN_OP(R(be)->bn_fwd_train(R(be), op, py, save_mean, save_invstd, running_mean, running_var, px, gamma, beta)),
      1u, 0);
}

/* A block's end as the GPU's one pass: relu(bn(x) + res) in fp32, rounded once. */
static synco_status e_bn_fwd_train_add_relu(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                            float *save_invstd, float *running_mean, float *running_var,
                                            const synco_tensor *x, const float *gamma, const float *beta,
                                            const synco_tensor *res) {
  if (!op || op->relu)
    return synco_fail(SYNCO_ERR_ARG, "bf16-emul bn_fwd_train_add_relu: the BN must be planned without its own ReLU");
  BEGIN;
  synco_tensor *py = IN(y), *px = IN(x), *pr = IN(res);
  synco_status s = RUN_OP(R(be)->bn_fwd_train(R(be), op, py, save_mean, save_invstd, running_mean, running_var, px,
                                              gamma, beta));
  if (!s && !pr) s = synco_fail(SYNCO_ERR_ARG, "bf16-emul bn_fwd_train_add_relu: res is missing");
  if (!s) {
    float *yv = py->data;
    const float *rv = pr->data;
    for (size_t i = 0, n = synco_tensor_numel(y); i < n; i++) {
      const float u = yv[i] + rv[i];
      yv[i] = u < 0.f ? 0.f : u;
    }
  }
  END(s, 1u, 0);
}

static synco_status e_bn_fwd_eval(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                  const float *gamma, const float *beta, const float *running_mean,
                                  const float *running_var) {
  BEGIN;
  synco_tensor *py = IN(y), *px = IN(x);
  END(RUN_OP(R(be)->bn_fwd_eval(R(be), op, py, px, gamma, beta, running_mean, running_var)), 1u, 0);
}

static synco_status e_bn_bwd(synco_backend *be, synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                             const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x, const float *gamma,
                             const float *save_mean, const float *save_invstd) {
  BEGIN;
  synco_tensor *pdx = IN(dx), *pdy = IN(dy), *py = IN(y), *px = IN(x);
  END(RUN_OP(R(be)->bn_bwd(R(be), op, pdx, dgamma, dbeta, pdy, py, px, gamma, save_mean, save_invstd)), 1u, 0);
}

static synco_status e_maxpool_fwd(synco_backend *be, synco_pool_op *op, synco_tensor *y, const synco_tensor *x) {
  BEGIN;
  synco_tensor *py = IN(y), *px = IN(x);
  END(RUN_OP(R(be)->maxpool_fwd(R(be), op, py, px)), 1u, 0);
}

static synco_status e_maxpool_bwd(synco_backend *be, synco_pool_op *op, synco_tensor *dx, const synco_tensor *dy) {
  BEGIN;
  synco_tensor *pdx = IN(dx), *pdy = IN(dy);
  END(RUN_OP(R(be)->maxpool_bwd(R(be), op, pdx, pdy)), 1u, 0);
}

static synco_status e_relu_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  BEGIN;
  synco_tensor *py = IN(y), *px = IN(x);
  END(RUN_OP(R(be)->relu_fwd(R(be), py, px)), 1u, 0);
}

static synco_status e_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y) {
  BEGIN;
  synco_tensor *pdx = IN(dx), *pdy = IN(dy), *py = IN(y);
  END(RUN_OP(R(be)->relu_bwd(R(be), pdx, pdy, py)), 1u, 0);
}

static synco_status e_add(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                          int accumulate) {
  BEGIN;
  synco_tensor *py = IN(y), *pa = IN(a), *pb = IN(accumulate ? NULL : b);
  END(RUN_OP(R(be)->add(R(be), py, pa, pb, accumulate)), 1u, 0);
}

/* dx = (a + b)·(y > 0) in one pass, rounded once (the GPU's add_relu_bwd). */
static synco_status e_add_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *a, const synco_tensor *b,
                                   const synco_tensor *y) {
  (void)be;
  if (!dx || !a || !b || !y || synco_tensor_numel(a) != synco_tensor_numel(dx) ||
      synco_tensor_numel(b) != synco_tensor_numel(dx) || synco_tensor_numel(y) != synco_tensor_numel(dx))
    return synco_fail(SYNCO_ERR_ARG, "bf16-emul add_relu_bwd: a tensor is missing or of another size");
  BEGIN;
  synco_tensor *pdx = IN(dx), *pa = IN(a), *pb = IN(b), *py = IN(y);
  if (!vs_.s) {
    float *d = pdx->data;
    const float *av = pa->data, *bv = pb->data, *yv = py->data;
    for (size_t i = 0, n = synco_tensor_numel(dx); i < n; i++) d[i] = yv[i] > 0.f ? av[i] + bv[i] : 0.f;
  }
  END(SYNCO_OK, 1u, 0);
}

static synco_status e_avgpool_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  BEGIN;
  synco_tensor *py = IN(y), *px = IN(x);
  END(RUN_OP(R(be)->avgpool_fwd(R(be), py, px)), 1u, 0);
}

static synco_status e_avgpool_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy) {
  BEGIN;
  synco_tensor *pdx = IN(dx), *pdy = IN(dy);
  END(RUN_OP(R(be)->avgpool_bwd(R(be), pdx, pdy)), 1u, 0);
}

/* ---- the backend ---- */

static int e_supports(synco_backend *be, synco_capability cap) {
  (void)be;
  return cap == SYNCO_CAP_BF16;
}

static void e_destroy(synco_backend *be) {
  if (!be) return;
  synco_backend_destroy(R(be));
  free(be->ctx);
  free(be);
}

synco_status synco_backend_bf16_emul_create(synco_backend **out) {
  *out = NULL;
  emul_ctx *c = synco_calloc(1, sizeof *c);
  synco_backend *be = synco_malloc(sizeof *be);
  synco_status s = c && be ? synco_backend_ref_create(&c->ref) : SYNCO_ERR_NOMEM;
  if (s) {
    free(c);
    free(be);
    return s;
  }
  *be = *c->ref; /* the step ops, memory and plans are the reference's */
  be->name = "bf16-emul";
  be->ctx = c;
  be->destroy = e_destroy;
  be->supports = e_supports;
  be->act_layout = e_act_layout;
  be->act_bytes = e_act_bytes;
  be->to_backend = e_to_backend;
  be->to_plain = e_to_plain;
  be->conv_fwd = e_conv_fwd;
  be->conv_bwd_data = e_conv_bwd_data;
  be->conv_bwd_weights = e_conv_bwd_weights;
  be->bn_fwd_train = e_bn_fwd_train;
  be->bn_fwd_train_add_relu = e_bn_fwd_train_add_relu;
  be->bn_fwd_eval = e_bn_fwd_eval;
  be->bn_bwd = e_bn_bwd;
  be->maxpool_fwd = e_maxpool_fwd;
  be->maxpool_bwd = e_maxpool_bwd;
  be->relu_fwd = e_relu_fwd;
  be->relu_bwd = e_relu_bwd;
  be->add = e_add;
  be->add_relu_bwd = e_add_relu_bwd;
  be->avgpool_fwd = e_avgpool_fwd;
  be->avgpool_bwd = e_avgpool_bwd;
  be->linear_fwd = e_linear_fwd;
  be->linear_bwd = e_linear_bwd;
  *out = be;
  return SYNCO_OK;
}
