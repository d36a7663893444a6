/* Convolution on oneDNN, or on synco's own kernels (Winograd, cpu_wino_conv.c; on AVX-512 8-channel direct,
 * cpu_direct8_conv.c, the CIFAR stem's forward, cpu_stem_conv.c, and stride-2 layers from nChw8c into nChw16c,
 * cpu_stride2_conv.c), chosen per layer and per pass at plan time.
 *
 * Each pass (forward, backward data, backward weights) gets a kernel of its own:
 *  - oneDNN. The primitive descriptor is created with the activations in the layer's layout (so layers chain
 *    without reorders) and the weights left to the primitive (format_tag any). Its implementation name is read
 *    at once (dnnl_query_impl_info_str), and a reference implementation (`ref:*`, hundreds of times slower) is
 *    never kept: the next candidate formats for the activations are tried in order (the primitive's own choice
 *    for x, for y, for both, then nhwc, nChw16c, plain nchw), and the pass reorders its activations into and out
 *    of the format it takes, through two buffers shared by the layers (ctx->reo, grown at plan time). This is
 *    what an 8-channel nChw8c layer feeding a 16-channel nChw16c one needs on an AVX-512 CPU, where oneDNN has
 *    no JIT kernel for the mixed layouts. Weights: plain OIHW fp32 reordered into the pass's format at each call
 *    (SGD and EMA change them in place between calls; the copies live in op->impl), and backward weights
 *    reorders its result back to OIHW with a sum post-op, which gives the contract's dw += without a temporary.
 *  - Winograd for 3x3 stride-1 layers on blocked activations: synco's own (cpu_wino_conv.c, AVX2 code, nChw8c or
 *    nChw16c; F(4x4, 3x3) or F(2x2, 3x3) by the layer's sides and channels, F(2x2, 3x3) for backward weights) or
 *    oneDNN's (dnnl_convolution_winograd, where this oneDNN has a non-reference kernel for
 *    the pass: AVX-512 CPUs).
 *  - synco's direct8 (cpu_direct8_conv.c): 3x3 stride-1 layers on nChw8c (8 or 24 channels) on AVX-512 CPUs,
 *    where oneDNN has only AVX2 kernels for an 8-channel block (half of each register idle).
 *  - synco's stem (cpu_stem_conv.c): the forward of a 3x3 stride-1 layer from a plain image (at most 4 channels) into
 *    nChw8c or nChw16c on AVX-512 CPUs, where oneDNN's fp32 kernel into 8-channel blocks is an AVX2 one and its bf16
 *    kernel writes 16-channel blocks cut down by a reorder. fp32 under bf16 too.
 *  - synco's stride2 (cpu_stride2_conv.c): 3x3 and 1x1 stride-2 layers from nChw8c into nChw16c on AVX-512 CPUs,
 *    for which oneDNN has no kernel on the layers' own layouts (it reorders x or dy first). fp32 under bf16 too.
 *  - im2col + oneDNN's matmul (cpu_conv_gemm.c), "gemm": under --precision bf16 on AMX CPUs, the passes of layers
 *    with few output pixels, where oneDNN's AMX convolution kernels are slow (synco_conv_gemm_passes).
 *  - Fixed sums (--adapt-threads, on by default in pretrain: ctx->sum_threads): oneDNN's backward weights in fixed
 *    batch chunks on one-thread kernels (split_pass), so that a weight gradient does not change with the number of
 *    threads that runs it.
 * Which one a 3x3 stride-1 pass takes is, by default, a fixed rule (rule_kind): the kernels then depend only on
 * the CPU's ISA and the shapes, so a resumed run, the ranks of a run and a rerun take the same ones and the results
 * are bit-identical. SYNCO_CONV_ALGO=auto measures instead, once per process and shape (as cuDNN's benchmark mode
 * does): at plan time each candidate runs the pass on scratch data (one untimed run, then the faster of two
 * timed), and the fastest is kept, cached in memory for the process (conv_cache below), so the query and key
 * encoders and repeated blocks measure once; two processes may then choose differently, which changes the
 * rounding (measured: two identical runs differed in 181 of 211 tensors), and on a loaded machine the timings are
 * noise. SYNCO_CONV_ALGO also forces one candidate where it applies (direct, winograd = synco's, onednn-winograd,
 * direct-fp32, direct8, gemm, stem, stride2; rule, the default; SYNCO_CONV_WINOGRAD=0 is direct). The kernels chosen are logged in ctx->kernels (synco_dnnl_kernels,
 * reported by `bench --json`).
 *
 * Under --precision bf16 (ctx->bf16_conv when the layer is planned; ctx->bf16 alone, on an Intel CPU with AVX512-BF16
 * but no AMX, where every bf16 kernel is the slower, plans the layer as an fp32 one: bf16_conv_pays in cpu_backend.c)
 * every pass multiplies bf16 copies, as PyTorch's
 * autocast does: the layer's activations stay fp32 in its layout, and each pass reorders its inputs into bf16 in the
 * format its kernel chooses (any format is tried first: on AMX that is nhwc, where oneDNN's AMX kernels run, while
 * its bf16 kernels on the blocked layouts run slower than fp32) through the shared ctx->reo buffers (by
 * synco_dnnl_round_bf16 where that format is the layer's own: dnnl_pass.round_a / round_b); y and dx are
 * stored by the kernel in fp32 straight into the layer's tensors where the same kernel takes that (bf16_f32_output:
 * no rounding of the fp32 sum to bf16, as autocast's bf16 output has, and no copy to widen), else they come out in
 * bf16 and are widened into the layer's fp32 tensors; dw is
 * accumulated in fp32 by the kernel and added to the fp32 master gradient. The weights are reordered from the fp32
 * OIHW master copy into bf16 at each call. In bf16 the candidates are oneDNN's direct algorithm, where
 * synco_conv_gemm_passes says so im2col + matmul, oneDNN's direct algorithm in fp32 (direct-fp32), and for 3x3
 * stride-1 layers oneDNN's Winograd, which has no bf16 kernel, and synco's direct8 (nChw8c layers; bf16 in all three
 * passes, rounding its fp32 inputs as it reads them), the fp32 ones running on the layer's own tensors (no copies; the kernel log says "(fp32)"): where the CPU has AVX512-BF16 but no AMX (a Zen 4), its bf16 direct kernels reach only about
 * the speed of its fp32 ones, Winograd's 2.25x fewer multiplications win, and on 8 or 24 channels its bf16 kernels
 * run nchw copies, slower than direct8, and under 64 channels its bf16 kernels for 1x1 layers and for the backward
 * weights of the stride-2 layers and of the CIFAR stem are slower than its fp32 ones (rule_kind has the measurements). fp32 products are at least as exact as
 * bf16 ones, so a pass that takes Winograd is no less accurate than the bf16 the user asked for. The rule takes gemm
 * wherever it applies and Winograd where rule_kind says, so a bf16 run's kernels do not depend on timing either. */
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_affinity.h"
#include "backend/cpu/cpu_conv_gemm.h"
#include "backend/cpu/cpu_direct8_conv.h"
#include "backend/cpu/cpu_onednn_util.h"
#include "backend/cpu/cpu_stem_conv.h"
#include "backend/cpu/cpu_stride2_conv.h"
#include "backend/cpu/cpu_wino_conv.h"
#include "base/progress.h"

enum { P_FWD = 0, P_BWD_DATA = 1, P_BWD_WEIGHTS = 2, NPASS = 3 };
/* The kernels a pass can take. */
/* oneDNN's kinds come first (NDNNL of them), then synco's own kernels. */
/* K_DIRECT_F32: oneDNN's direct algorithm in fp32 on the layer's own tensors, a candidate of bf16 layers only (in an
 * fp32 layer it is K_DIRECT). */
enum {
  K_DIRECT = 0,
  K_DNNL_WINO = 1,
  K_DIRECT_F32 = 2,
  K_OWN_WINO = 3,
  K_OWN_DIRECT8 = 4,
  K_GEMM = 5,
  K_OWN_STEM = 6,
  K_OWN_STRIDE2 = 7,
  NKIND = 8,
  NDNNL = 3
};
static const char *const pass_names[NPASS] = {"fwd", "bwd_data", "bwd_weights"};
_Static_assert(SYNCO_GEMM_FWD == 1 << P_FWD && SYNCO_GEMM_BWD_DATA == 1 << P_BWD_DATA &&
                   SYNCO_GEMM_BWD_WEIGHTS == 1 << P_BWD_WEIGHTS,
               "a pass's bit in cpu_conv_gemm.h is 1 << its index here");
static const char *const kind_names[NKIND] = {"direct",  "onednn-winograd", "direct-fp32", "winograd",
                                              "direct8", "gemm",            "stem",        "stride2"};

/* One pass on one oneDNN algorithm. */
typedef struct {
  dnnl_primitive_desc_t pd;
  synco_dnnl_prim prim;
  dnnl_memory_t ma, mb;    /* x side / y side in the format the primitive takes; NULL: the layer's layout */
  synco_dnnl_prim ra, rb;  /* their reorders from / to the layer's layout (direction by pass) */
  dnnl_memory_t mw;        /* weights (fwd, bwd data) or diff weights (bwd weights) in the primitive's format */
  synco_dnnl_prim rw;      /* OIHW -> mw, or mw -> OIHW with a sum */
  void *wbuf;
  int wbuf_shared;         /* wbuf is the forward pass's (same format) */
  const char *impl;        /* oneDNN's implementation name */
  char fmt[48];            /* the activation formats when reordered, "" otherwise */
  size_t round_a, round_b; /* > 0: ra / rb into the pass is a plain rounding to bf16 of that many values in the
                            * layer's own layout, done by synco_dnnl_round_bf16 instead of oneDNN's reorder (2.7-3x
                            * as fast: the bulk of a bf16 pass's copies at small widths) */
} dnnl_pass;

/* A oneDNN backward-weights pass in fixed batch chunks (ctx->sum_threads > 1, --adapt-threads). oneDNN's kernels split
 * the batch sum of a weight gradient by the number of threads they are planned for, so a run whose thread count
 * changes would round differently after each change. Here chunk g of the batch (images g*n/chunks up to
 * (g+1)*n/chunks) goes to a primitive planned for one thread, the chunks run on whatever threads there are (dynamic
 * schedule: a thread slowed by another process takes fewer), and their partial gradients are added in chunk order.
 * The result is the same at any thread count. Measured on the Zen 4 (2 threads, batch 64 or 128): two chunks take
 * 0.80-1.14x the time of oneDNN's own two-thread pass, 1.00x on most of ResNet-18's layers. */
typedef struct {
  int n;                                  /* chunks; 0: the pass is not split */
  dnnl_primitive_desc_t pd[2];            /* a chunk of n_small images, and of n_small + 1 (NULL when none is) */
  int n_small;
  dnnl_primitive_t prim[SYNCO_DNNL_SPLIT_MAX]; /* a primitive per chunk, so that chunks may run at once */
  dnnl_memory_t x[SYNCO_DNNL_SPLIT_MAX], y[SYNCO_DNNL_SPLIT_MAX], dw[SYNCO_DNNL_SPLIT_MAX], sp[SYNCO_DNNL_SPLIT_MAX];
  synco_dnnl_prim rw;                     /* the sum of the chunks -> OIHW, accumulating (dw +=) */
  size_t x_img, y_img;                    /* bytes of one image of x / dy in the pass's formats */
  size_t dw_bytes, sp_bytes;              /* one chunk's diff weights and scratchpad in ctx->split_buf */
} split_pass;

typedef struct {
  synco_layout lx, ly;
  synco_dnnl_md md_x, md_y, md_w;
  synco_dnnl_md md_x16, md_y16; /* bf16 layers: x and y in the layer's layouts in bf16 (see plain_rounding) */
  size_t nx, ny;                /* values of x and y (without any padding of a channel block) */
  dnnl_memory_t m_x, m_y, m_w; /* the layer's x / dx, y / dy, and plain OIHW weights, bound per call */
  dnnl_pass d[NDNNL][NPASS];     /* [K_DIRECT, K_DNNL_WINO or K_DIRECT_F32][pass]; pd NULL where it does not exist */
  int own_wino;                  /* synco's Winograd applies to the layer */
  int own_d8;                    /* synco's direct8 (AVX-512, nChw8c) applies (cpu_direct8_conv.c) */
  synco_direct8_shape d8;
  int own_stem;                  /* synco's stem kernel (AVX-512: the image into blocks) applies to the forward */
  synco_stem_shape stem;
  int own_s2;                    /* synco's stride-2 kernels (AVX-512, nChw8c -> nChw16c) apply */
  synco_stride2_shape s2;
  int own_gemm;                  /* the passes (SYNCO_GEMM_* bits) im2col + matmul applies to (bf16, cpu_conv_gemm.c) */
  synco_conv_gemm *gemm;         /* made when chosen (or measured) */
  synco_wino_plan wp;
  int kind[NPASS];               /* the chosen kernel of each pass */
  int bf16;                      /* the passes multiply bf16 copies (--precision bf16) */
  int n;                         /* the batch */
  split_pass split;              /* oneDNN's backward weights in fixed batch chunks (ctx->sum_threads) */
} conv_impl;

static void pass_free(dnnl_pass *p) {
  synco_dnnl_prim_free(&p->prim);
  synco_dnnl_prim_free(&p->ra);
  synco_dnnl_prim_free(&p->rb);
  synco_dnnl_prim_free(&p->rw);
  synco_dnnl_mem_free(&p->ma);
  synco_dnnl_mem_free(&p->mb);
  synco_dnnl_mem_free(&p->mw);
  synco_dnnl_pd_free(&p->pd);
  if (!p->wbuf_shared) free(p->wbuf);
  memset(p, 0, sizeof(*p));
}

static void split_free(split_pass *s) {
  for (int g = 0; g < SYNCO_DNNL_SPLIT_MAX; g++) {
    if (s->prim[g]) dnnl_primitive_destroy(s->prim[g]);
    synco_dnnl_mem_free(&s->x[g]);
    synco_dnnl_mem_free(&s->y[g]);
    synco_dnnl_mem_free(&s->dw[g]);
    synco_dnnl_mem_free(&s->sp[g]);
  }
  synco_dnnl_prim_free(&s->rw);
  synco_dnnl_pd_free(&s->pd[0]);
  synco_dnnl_pd_free(&s->pd[1]);
  memset(s, 0, sizeof(*s));
}

void synco_dnnl_conv_release(synco_backend *be, synco_conv_op *op) {
  conv_impl *k = op->impl;
  (void)be;
  if (!k) return;
  for (int a = 0; a < NDNNL; a++)
    for (int p = NPASS - 1; p >= 0; p--) pass_free(&k->d[a][p]); /* bwd data may share the forward's weights */
  split_free(&k->split);
  synco_conv_gemm_free(&k->gemm);
  synco_dnnl_mem_free(&k->m_x);
  synco_dnnl_mem_free(&k->m_y);
  synco_dnnl_mem_free(&k->m_w);
  synco_dnnl_md_free(&k->md_x);
  synco_dnnl_md_free(&k->md_y);
  synco_dnnl_md_free(&k->md_w);
  synco_dnnl_md_free(&k->md_x16);
  synco_dnnl_md_free(&k->md_y16);
  free(k);
  op->impl = NULL;
}

static size_t alloc_bytes(synco_dnnl_cmd md) {
  const size_t bytes = dnnl_memory_desc_get_size(md);
  return bytes ? bytes : 64;
}

/* ---- choosing a oneDNN primitive that is not a reference implementation ------------------------------------------ */

static const char *impl_name(const_dnnl_primitive_desc_t pd) {
  const char *s = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s) return "?";
  return s;
}

static int is_ref(const char *impl) { return strstr(impl, "ref") != NULL; }

/* The thread count a pass is planned for (0: the count in force): backward weights under fixed sums are planned for
 * ctx->sum_threads (where split_plan does not split them into chunks, they run whole for that count). */
static int pass_threads(const synco_dnnl_ctx *c, int pass) { return pass == P_BWD_WEIGHTS ? synco_dnnl_sum_threads(c) : 0; }

/* The primitive descriptor of one pass (hint: the forward one, for the backward passes). */
static dnnl_status_t pass_pd(synco_dnnl_ctx *c, const synco_conv_op *op, dnnl_alg_kind_t alg, int pass, synco_dnnl_cmd x,
                             synco_dnnl_cmd w, synco_dnnl_cmd y, const_dnnl_primitive_desc_t hint,
                             dnnl_primitive_desc_t *out) {
  const dnnl_dims_t strides = {op->stride, op->stride};
  const dnnl_dims_t pad = {op->pad, op->pad};
  *out = NULL;
#if DNNL_VERSION_MAJOR >= 3
  const dnnl_dims_t dil = {0, 0};
  if (pass == P_FWD)
    return dnnl_convolution_forward_primitive_desc_create(out, c->eng, dnnl_forward_training, alg, x, w, NULL, y,
                                                          strides, dil, pad, pad, c->attr);
  if (pass == P_BWD_DATA)
    return dnnl_convolution_backward_data_primitive_desc_create(out, c->eng, alg, x, w, y, strides, dil, pad, pad,
                                                                hint, c->attr);
  return dnnl_convolution_backward_weights_primitive_desc_create(out, c->eng, alg, x, w, NULL, y, strides, dil, pad,
                                                                 pad, hint, c->attr);
#else
  dnnl_convolution_desc_t d;
  dnnl_status_t st;
  if (pass == P_FWD)
    st = dnnl_convolution_forward_desc_init(&d, dnnl_forward_training, alg, x, w, NULL, y, strides, pad, pad);
  else if (pass == P_BWD_DATA)
    st = dnnl_convolution_backward_data_desc_init(&d, alg, x, w, y, strides, pad, pad);
  else
    st = dnnl_convolution_backward_weights_desc_init(&d, alg, x, w, NULL, y, strides, pad, pad);
  if (st != dnnl_success) return st;
  return dnnl_primitive_desc_create(out, &d, c->attr, c->eng, hint);
#endif
}

static dnnl_format_tag_t layout_tag(synco_layout l) {
  return l == SYNCO_LAYOUT_NCHW16C ? dnnl_nChw16c : l == SYNCO_LAYOUT_NCHW8C ? dnnl_nChw8c : dnnl_nchw;
}

/* A short name of an activation format: its tag when it is one of these, else "blocked". */
static const char *fmt_name(synco_dnnl_cmd md, const dnnl_dims_t dims, dnnl_data_type_t dt) {
  static const dnnl_format_tag_t tags[] = {dnnl_nchw, dnnl_nhwc, dnnl_nChw8c, dnnl_nChw16c};
  static const char *const names[] = {"nchw", "nhwc", "nChw8c", "nChw16c"};
  for (int i = 0; i < 4; i++) {
    synco_dnnl_md t = {0};
    if (synco_dnnl_md_tag(&t, 4, dims, dt, tags[i]) != SYNCO_OK) continue;
    const int eq = dnnl_memory_desc_equal(md, SYNCO_DNNL_MD(t));
    synco_dnnl_md_free(&t);
    if (eq) return names[i];
  }
  return "blocked";
}

/* The x-side and y-side memory descriptors a pass's primitive takes. */
static void pass_mds(const_dnnl_primitive_desc_t pd, int pass, synco_dnnl_cmd *xa, synco_dnnl_cmd *yb) {
  *xa = dnnl_primitive_desc_query_md(pd, pass == P_BWD_DATA ? dnnl_query_diff_src_md : dnnl_query_src_md, 0);
  *yb = dnnl_primitive_desc_query_md(pd, pass == P_FWD ? dnnl_query_dst_md : dnnl_query_diff_dst_md, 0);
}

#define ANY_TAG dnnl_format_tag_any

static dnnl_data_type_t md_dtype(synco_dnnl_cmd md) {
#if DNNL_VERSION_MAJOR >= 3
  dnnl_data_type_t t = dnnl_data_type_undef;
  dnnl_memory_desc_query(md, dnnl_query_data_type, &t);
  return t;
#else
  return md->data_type;
#endif
}

/* A bf16 pass's output (the forward's y, backward data's dx) stored by the kernel in fp32 straight into the layer's
 * tensor, where the same implementation takes it (oneDNN's bf16 kernels sum in fp32 and can store either): no bf16
 * copy to widen afterwards, and the output keeps the fp32 sum instead of its bf16 rounding. The pass keeps the kernel
 * it found with a bf16 output (the implementation names must match), so no CPU's choice of kernel changes; where the
 * kernel does not take the layer's layout in fp32 (AMX's nhwc, an 8-channel layer's padded nChw16c) nothing
 * changes. *done: 1 when d now outputs fp32. */
static synco_status bf16_f32_output(synco_dnnl_ctx *c, const synco_conv_op *op, const conv_impl *k,
                                    dnnl_alg_kind_t alg, int pass, dnnl_pass *d, int *done) {
  *done = 0;
  synco_dnnl_cmd xa, yb;
  pass_mds(d->pd, pass, &xa, &yb);
  const dnnl_dims_t wd = {op->cout, op->cin, op->kh, op->kw};
  synco_dnnl_md w = {0};
  SYNCO_TRY(synco_dnnl_md_tag(&w, 4, wd, dnnl_bf16, ANY_TAG));
  dnnl_primitive_desc_t fwd = NULL, pd = NULL;
  if (pass == P_FWD) {
    if (pass_pd(c, op, alg, P_FWD, xa, SYNCO_DNNL_MD(w), SYNCO_DNNL_MD(k->md_y), NULL, &pd) != dnnl_success) pd = NULL;
  } else if (pass_pd(c, op, alg, P_FWD, xa, SYNCO_DNNL_MD(w), yb, NULL, &fwd) == dnnl_success &&
             pass_pd(c, op, alg, P_BWD_DATA, SYNCO_DNNL_MD(k->md_x), SYNCO_DNNL_MD(w), yb, fwd, &pd) != dnnl_success) {
    pd = NULL;
  }
  if (fwd) dnnl_primitive_desc_destroy(fwd);
  synco_dnnl_md_free(&w);
  if (!pd) return SYNCO_OK;
  if (strcmp(impl_name(pd), d->impl) != 0) {
    dnnl_primitive_desc_destroy(pd);
    return SYNCO_OK;
  }
  dnnl_primitive_desc_destroy(d->pd);
  d->pd = pd;
  d->impl = impl_name(pd);
  *done = 1;
  return SYNCO_OK;
}
/* Finds the primitive descriptor of one pass of oneDNN kernel `kind` (K_DIRECT, K_DNNL_WINO, K_DIRECT_F32): the first
 * candidate pair of activation formats (x, y) whose implementation is not a reference one (0 = the layer's layouts;
 * see the file comment). Winograd is tried in the layer's layouts only. No candidate: d->pd stays NULL. */
static synco_status find_pd(synco_dnnl_ctx *c, const synco_conv_op *op, const conv_impl *k, int kind, int pass,
                            dnnl_pass *d) {
  const dnnl_format_tag_t lx = layout_tag(k->lx), ly = layout_tag(k->ly);
  /* an 8-channel nChw8c input of a 16-channel nChw16c layer (width 8 on AVX-512): plain nchw comes before the
   * kernel's own choice, which pads the 8 channels to a 16-channel block with a reorder 4.5x as slow as nchw's;
   * where no kernel takes nchw (backward data and weights), the 16 channels as two nChw8c blocks do (an AVX2
   * kernel, and a reorder of y's side): width 8, batch 64, alternated, 3 rounds: 1,884-1,977 -> 1,974-2,051
   * images/s, against the padded nChw16c */
  const int mixed = lx == dnnl_nChw8c && ly == dnnl_nChw16c;
  const dnnl_format_tag_t x2 = mixed ? dnnl_nchw : ANY_TAG, y3 = mixed ? dnnl_nChw8c : ANY_TAG;
  const dnnl_format_tag_t cand[][2] = {{lx, ly},           {x2, ly},   {lx, y3},   {ANY_TAG, ly},
                                       {lx, ANY_TAG},      {ANY_TAG, ANY_TAG},     {dnnl_nhwc, dnnl_nhwc},
                                       {dnnl_nChw16c, dnnl_nChw16c},               {dnnl_nchw, dnnl_nchw}};
  /* bf16: the copies are made anyway, so the kernel's own format comes first */
  const dnnl_format_tag_t cand_bf16[][2] = {{ANY_TAG, ANY_TAG}, {dnnl_nhwc, dnnl_nhwc}, {lx, ly}, {dnnl_nchw, dnnl_nchw}};
  /* oneDNN's Winograd has no bf16 kernel: in a bf16 layer it runs in fp32 on the layer's own tensors, as
   * K_DIRECT_F32 does */
  const int wino = kind == K_DNNL_WINO, bf16 = k->bf16 && kind == K_DIRECT;
  const dnnl_alg_kind_t alg = wino ? dnnl_convolution_winograd : dnnl_convolution_direct;
  const dnnl_format_tag_t(*cands)[2] = bf16 ? cand_bf16 : cand;
  const int ncand = wino   ? 1
                    : bf16 ? (int)(sizeof(cand_bf16) / sizeof(*cand_bf16))
                           : (int)(sizeof(cand) / sizeof(*cand));
  dnnl_data_type_t dt;
  SYNCO_TRY(synco_dnnl_dtype(c, op->dtype, &dt));
  if (bf16) dt = dnnl_bf16; /* the kernel's operands; the layer's tensors stay fp32 */
  const dnnl_dims_t xd = {op->n, op->cin, op->h, op->w}, yd = {op->n, op->cout, op->oh, op->ow};
  const dnnl_dims_t wd = {op->cout, op->cin, op->kh, op->kw};
  synco_dnnl_md mx = {0}, my = {0}, mw = {0};
  SYNCO_TRY(synco_dnnl_md_tag(&mw, 4, wd, pass == P_BWD_WEIGHTS ? dnnl_f32 : dt, ANY_TAG));
  synco_status s = SYNCO_OK;
  for (int i = 0; i < ncand && !d->pd; i++) {
    if ((s = synco_dnnl_md_tag(&mx, 4, xd, dt, cands[i][0])) != SYNCO_OK) break;
    if ((s = synco_dnnl_md_tag(&my, 4, yd, dt, cands[i][1])) != SYNCO_OK) break;
    dnnl_primitive_desc_t fwd = NULL, pd = NULL;
    synco_dnnl_md fw = {0};
    /* the backward passes' hint: a forward descriptor of the same formats (its weights in any format) */
    if (synco_dnnl_md_tag(&fw, 4, wd, dt, ANY_TAG) != SYNCO_OK) break;
    if (pass_pd(c, op, alg, P_FWD, SYNCO_DNNL_MD(mx), SYNCO_DNNL_MD(fw), SYNCO_DNNL_MD(my), NULL, &fwd) == dnnl_success) {
      if (pass == P_FWD) {
        pd = fwd;
        fwd = NULL;
      } else {
        const int was = synco_dnnl_threads_set(pass_threads(c, pass));
        if (pass_pd(c, op, alg, pass, SYNCO_DNNL_MD(mx), SYNCO_DNNL_MD(mw), SYNCO_DNNL_MD(my), fwd, &pd) != dnnl_success)
          pd = NULL;
        synco_dnnl_threads_set(was);
      }
    }
    synco_dnnl_md_free(&fw);
    if (fwd) dnnl_primitive_desc_destroy(fwd);
    if (pd && is_ref(impl_name(pd))) {
      dnnl_primitive_desc_destroy(pd);
      pd = NULL;
    }
    d->pd = pd;
  }
  synco_dnnl_md_free(&mx);
  synco_dnnl_md_free(&my);
  synco_dnnl_md_free(&mw);
  if (s != SYNCO_OK || !d->pd) return s;
  d->impl = impl_name(d->pd);
  int f32_out = 0;
  if (bf16 && pass != P_BWD_WEIGHTS) SYNCO_TRY(bf16_f32_output(c, op, k, alg, pass, d, &f32_out));
  synco_dnnl_cmd xa, yb;
  pass_mds(d->pd, pass, &xa, &yb);
  const int rx = !dnnl_memory_desc_equal(xa, SYNCO_DNNL_MD(k->md_x));
  const int ry = !dnnl_memory_desc_equal(yb, SYNCO_DNNL_MD(k->md_y));
  if (rx || ry)
    snprintf(d->fmt, sizeof d->fmt, "%s%s -> %s%s", bf16 ? "bf16 " : "", fmt_name(xa, xd, md_dtype(xa)),
             fmt_name(yb, yd, md_dtype(yb)), f32_out ? ", fp32 out" : "");
  return SYNCO_OK;
}

/* Bytes of the pass's reordered activations (x side, y side): 0 where it takes the layer's layout. */
static void pass_reo_bytes(const conv_impl *k, const dnnl_pass *d, int pass, size_t out[2]) {
  synco_dnnl_cmd xa, yb;
  pass_mds(d->pd, pass, &xa, &yb);
  out[0] = dnnl_memory_desc_equal(xa, SYNCO_DNNL_MD(k->md_x)) ? 0 : alloc_bytes(xa);
  out[1] = dnnl_memory_desc_equal(yb, SYNCO_DNNL_MD(k->md_y)) ? 0 : alloc_bytes(yb);
}

static synco_status grow(void **buf, size_t *have, size_t need) {
  if (need <= *have) return SYNCO_OK;
  void *p = synco_aligned_alloc(need);
  if (!p) return SYNCO_ERR_NOMEM;
  free(*buf);
  *buf = p;
  *have = need;
  return SYNCO_OK;
}

/* The number of values when a pass takes the layer's fp32 tensor (md_layer, `values` of them) as md_pass, which is
 * md_layer16 (the same layout in bf16): a plain rounding; 0 otherwise (another layout; a padded channel block, whose
 * padding oneDNN's reorder writes as zeros; no AVX512-BF16 for synco_dnnl_round_bf16). */
static size_t plain_rounding(const conv_impl *k, synco_dnnl_cmd md_pass, synco_dnnl_cmd md_layer,
                             synco_dnnl_cmd md_layer16, size_t values) {
  if (!k->bf16 || !synco_dnnl_round_bf16_available() || !dnnl_memory_desc_equal(md_pass, md_layer16) ||
      alloc_bytes(md_layer) != values * sizeof(float))
    return 0;
  return values;
}

/* Makes the primitive, the activation reorders and the weights of a found pass. fwd: the same algorithm's forward
 * pass (made first), whose weight buffer backward data shares when the formats agree. */
static synco_status pass_make(synco_dnnl_ctx *c, conv_impl *k, int pass, dnnl_pass *d, const dnnl_pass *fwd) {
  if (!(pass == P_BWD_WEIGHTS && k->split.n)) { /* a split pass runs its chunks' primitives (split_plan) */
    const int was = synco_dnnl_threads_set(pass_threads(c, pass));
    const synco_status made = synco_dnnl_prim_make(c, &d->prim, d->pd);
    synco_dnnl_threads_set(was);
    SYNCO_TRY(made);
  }
  synco_dnnl_cmd xa, yb;
  pass_mds(d->pd, pass, &xa, &yb);
  const synco_dnnl_cmd lx = SYNCO_DNNL_MD(k->md_x), ly = SYNCO_DNNL_MD(k->md_y);
  if (!dnnl_memory_desc_equal(xa, lx)) {
    SYNCO_TRY(synco_dnnl_mem(c, &d->ma, xa));
    if (pass == P_BWD_DATA) SYNCO_TRY(synco_dnnl_reorder_make(c, &d->ra, xa, lx, c->attr));
    else SYNCO_TRY(synco_dnnl_reorder_make(c, &d->ra, lx, xa, c->attr));
    if (pass != P_BWD_DATA) d->round_a = plain_rounding(k, xa, lx, SYNCO_DNNL_MD(k->md_x16), k->nx);
    SYNCO_TRY(grow(&c->reo[0], &c->reo_bytes[0], alloc_bytes(xa)));
  }
  if (!dnnl_memory_desc_equal(yb, ly)) {
    SYNCO_TRY(synco_dnnl_mem(c, &d->mb, yb));
    if (pass == P_FWD) SYNCO_TRY(synco_dnnl_reorder_make(c, &d->rb, yb, ly, c->attr));
    else SYNCO_TRY(synco_dnnl_reorder_make(c, &d->rb, ly, yb, c->attr));
    if (pass != P_FWD) d->round_b = plain_rounding(k, yb, ly, SYNCO_DNNL_MD(k->md_y16), k->ny);
    SYNCO_TRY(grow(&c->reo[1], &c->reo_bytes[1], alloc_bytes(yb)));
  }
  const synco_dnnl_cmd wmd = dnnl_primitive_desc_query_md(
      d->pd, pass == P_BWD_WEIGHTS ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
  SYNCO_TRY(synco_dnnl_mem(c, &d->mw, wmd));
  if (pass == P_BWD_DATA && fwd && fwd->pd && fwd->wbuf &&
      dnnl_memory_desc_equal(wmd, dnnl_primitive_desc_query_md(fwd->pd, dnnl_query_weights_md, 0))) {
    d->wbuf = fwd->wbuf;
    d->wbuf_shared = 1;
  } else {
    d->wbuf = synco_aligned_alloc(alloc_bytes(wmd));
    if (!d->wbuf) return SYNCO_ERR_NOMEM;
  }
  if (pass == P_BWD_WEIGHTS) return synco_dnnl_reorder_make(c, &d->rw, wmd, SYNCO_DNNL_MD(k->md_w), c->attr_sum);
  return synco_dnnl_reorder_make(c, &d->rw, SYNCO_DNNL_MD(k->md_w), wmd, c->attr);
}

/* What pass_make would allocate (kept) and share (scratchpads, reorder buffers); split: the pass runs in batch chunks
 * (split_plan: their primitives and slots are counted by plan_bytes). */
static synco_status pass_bytes(synco_dnnl_ctx *c, const conv_impl *k, int pass, const dnnl_pass *d,
                               const dnnl_pass *fwd, int split, synco_plan_bytes *b) {
  size_t r[2];
  pass_reo_bytes(k, d, pass, r);
  synco_plan_share(b, SYNCO_DNNL_SHARED_REO_X, r[0]);
  synco_plan_share(b, SYNCO_DNNL_SHARED_REO_Y, r[1]);
  if (!split) synco_plan_share(b, SYNCO_DNNL_SHARED_SCRATCH, synco_dnnl_scratch_bytes(d->pd)); /* no whole primitive */
  const synco_dnnl_cmd wmd = dnnl_primitive_desc_query_md(
      d->pd, pass == P_BWD_WEIGHTS ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
  /* backward data shares the forward's weight copy when both take the same format (as pass_make does) */
  const int shared = pass == P_BWD_DATA && fwd && fwd->pd &&
                     dnnl_memory_desc_equal(wmd, dnnl_primitive_desc_query_md(fwd->pd, dnnl_query_weights_md, 0));
  b->kept += (shared ? 0 : alloc_bytes(wmd)) + SYNCO_DNNL_CODE_BYTES;
  size_t s;
  if (pass == P_BWD_WEIGHTS) SYNCO_TRY(synco_dnnl_reorder_scratch(c, wmd, SYNCO_DNNL_MD(k->md_w), c->attr_sum, &s));
  else SYNCO_TRY(synco_dnnl_reorder_scratch(c, SYNCO_DNNL_MD(k->md_w), wmd, c->attr, &s));
  synco_plan_share(b, SYNCO_DNNL_SHARED_SCRATCH, s);
  return SYNCO_OK;
}

/* ---- backward weights in fixed batch chunks (split_pass) ------------------------------------------------------------ */

/* Images g*n/chunks up to (g+1)*n/chunks: chunk g's first image and count. */
static int chunk_first(int g, int n, int chunks) { return (int)((long)g * n / chunks); }
static int chunk_images(int g, int n, int chunks) { return chunk_first(g + 1, n, chunks) - chunk_first(g, n, chunks); }

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

/* A chunk's pass for `imgs` images, in the full pass's formats xa / yb, planned for the thread count in force (the
 * caller's one). *out stays NULL where oneDNN has none or only a reference one. */
static synco_status split_pd(synco_dnnl_ctx *c, const synco_conv_op *op, const conv_impl *k, int kind, synco_dnnl_cmd xa,
                             synco_dnnl_cmd yb, int imgs, dnnl_primitive_desc_t *out) {
  *out = NULL;
  dnnl_data_type_t dt;
  SYNCO_TRY(synco_dnnl_dtype(c, op->dtype, &dt));
  if (k->bf16 && kind == K_DIRECT) dt = dnnl_bf16;
  const dnnl_alg_kind_t alg = kind == K_DNNL_WINO ? dnnl_convolution_winograd : dnnl_convolution_direct;
  const dnnl_dims_t wd = {op->cout, op->cin, op->kh, op->kw};
  synco_dnnl_md mx = {0}, my = {0}, fw = {0}, mw = {0};
  synco_status s = synco_dnnl_md_batch(&mx, xa, imgs);
  if (s == SYNCO_OK) s = synco_dnnl_md_batch(&my, yb, imgs);
  if (s == SYNCO_OK) s = synco_dnnl_md_tag(&fw, 4, wd, dt, ANY_TAG);
  if (s == SYNCO_OK) s = synco_dnnl_md_tag(&mw, 4, wd, dnnl_f32, ANY_TAG);
  dnnl_primitive_desc_t fwd = NULL;
  if (s == SYNCO_OK &&
      pass_pd(c, op, alg, P_FWD, SYNCO_DNNL_MD(mx), SYNCO_DNNL_MD(fw), SYNCO_DNNL_MD(my), NULL, &fwd) == dnnl_success &&
      pass_pd(c, op, alg, P_BWD_WEIGHTS, SYNCO_DNNL_MD(mx), SYNCO_DNNL_MD(mw), SYNCO_DNNL_MD(my), fwd, out) ==
          dnnl_success &&
      is_ref(impl_name(*out)))
    synco_dnnl_pd_free(out);
  if (fwd) dnnl_primitive_desc_destroy(fwd);
  synco_dnnl_md_free(&mx);
  synco_dnnl_md_free(&my);
  synco_dnnl_md_free(&fw);
  synco_dnnl_md_free(&mw);
  return s;
}

/* Plans k->split for the layer's chosen oneDNN backward-weights pass when ctx->sum_threads asks for fixed sums. It
 * stays off (the pass then runs whole, planned for sum_threads threads: the same sums, but a slowed thread holds
 * the others up) where the batch is smaller than the chunks, a chunk has no kernel of the same weight format, or
 * the chunks' partial gradients would outweigh the pass's inputs: their sum reads them all, which made the split
 * 1.14x as slow as oneDNN's own pass on ResNet-18's 512-channel 4x4 layers (2 chunks, batch 128, Zen 4; 2 x 9.4 MB
 * of partials against 8.4 MB of x and dy), and would grow with the chunks on a machine of many threads. */
/* Decides whether the layer's chosen oneDNN backward-weights pass is split and, if so, describes the chunks: their
 * descriptors (each planned for one thread), image sizes, and slot sizes in ctx->split_buf; s->n = the chunks, 0
 * where it is not split (nothing then kept). Makes no primitive: plan_bytes asks it too. */
static synco_status split_describe(synco_dnnl_ctx *c, const synco_conv_op *op, const conv_impl *k, split_pass *s) {
  const int kind = k->kind[P_BWD_WEIGHTS], chunks = c->sum_threads;
  memset(s, 0, sizeof(*s));
  if (chunks < 2 || kind >= NDNNL || op->n < chunks || !k->d[kind][P_BWD_WEIGHTS].pd) return SYNCO_OK;
  synco_dnnl_cmd xa, yb;
  const_dnnl_primitive_desc_t whole = k->d[kind][P_BWD_WEIGHTS].pd;
  pass_mds(whole, P_BWD_WEIGHTS, &xa, &yb);
  if ((size_t)chunks * alloc_bytes(dnnl_primitive_desc_query_md(whole, dnnl_query_diff_weights_md, 0)) >
      alloc_bytes(xa) + alloc_bytes(yb))
    return SYNCO_OK;
  s->x_img = alloc_bytes(xa) / (size_t)op->n;
  s->y_img = alloc_bytes(yb) / (size_t)op->n;
  if (s->x_img * (size_t)op->n != alloc_bytes(xa) || s->y_img * (size_t)op->n != alloc_bytes(yb)) return SYNCO_OK;
  s->n_small = op->n / chunks;
  /* chunks of n_small images, and of n_small + 1 where the batch does not divide */
  const int was = synco_dnnl_threads_set(1);
  synco_status st = split_pd(c, op, k, kind, xa, yb, s->n_small, &s->pd[0]);
  if (st == SYNCO_OK && op->n % chunks) st = split_pd(c, op, k, kind, xa, yb, s->n_small + 1, &s->pd[1]);
  synco_dnnl_threads_set(was);
  synco_dnnl_cmd dwmd = s->pd[0] ? dnnl_primitive_desc_query_md(s->pd[0], dnnl_query_diff_weights_md, 0) : NULL;
  const int ok = dwmd && (!(op->n % chunks) ||
                          (s->pd[1] && dnnl_memory_desc_equal(
                                           dwmd, dnnl_primitive_desc_query_md(s->pd[1], dnnl_query_diff_weights_md, 0))));
  if (st != SYNCO_OK || !ok) {
    split_free(s);
    return st;
  }
  size_t sp = synco_dnnl_scratch_bytes(s->pd[0]);
  if (s->pd[1] && synco_dnnl_scratch_bytes(s->pd[1]) > sp) sp = synco_dnnl_scratch_bytes(s->pd[1]);
  s->dw_bytes = round64(alloc_bytes(dwmd));
  s->sp_bytes = round64(sp);
  s->n = chunks;
  return SYNCO_OK;
}

/* Plans k->split when ctx->sum_threads asks for fixed sums (split_describe decides): a primitive per chunk, planned
 * for one thread, its memory objects and stream, the chunks' sum into OIHW, and ctx->split_buf grown. Before the
 * passes are made: a split pass's whole primitive is not made (its scratchpad would only take memory). */
static synco_status split_plan(synco_dnnl_ctx *c, const synco_conv_op *op, conv_impl *k) {
  split_pass *s = &k->split;
  SYNCO_TRY(split_describe(c, op, k, s));
  if (!s->n) return SYNCO_OK;
  synco_dnnl_cmd dwmd = dnnl_primitive_desc_query_md(s->pd[0], dnnl_query_diff_weights_md, 0);
  const int was = synco_dnnl_threads_set(1);
  synco_status st = SYNCO_OK;
  for (int g = 0; g < s->n && st == SYNCO_OK; g++) {
    const_dnnl_primitive_desc_t pd = s->pd[chunk_images(g, op->n, s->n) > s->n_small];
    synco_dnnl_cmd cx, cy;
    pass_mds(pd, P_BWD_WEIGHTS, &cx, &cy);
    if (dnnl_primitive_create(&s->prim[g], pd) != dnnl_success)
      st = synco_fail(SYNCO_ERR_BACKEND, "cpu conv: a batch chunk's backward weights");
    if (st == SYNCO_OK) st = synco_dnnl_mem(c, &s->x[g], cx);
    if (st == SYNCO_OK) st = synco_dnnl_mem(c, &s->y[g], cy);
    if (st == SYNCO_OK) st = synco_dnnl_mem(c, &s->dw[g], dwmd);
    if (st == SYNCO_OK && synco_dnnl_scratch_bytes(pd))
      st = synco_dnnl_mem(c, &s->sp[g], dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    if (st == SYNCO_OK && !c->split_strm[g] &&
        dnnl_stream_create(&c->split_strm[g], c->eng, dnnl_stream_default_flags) != dnnl_success)
      st = synco_fail(SYNCO_ERR_BACKEND, "cpu conv: a stream for a batch chunk");
  }
  synco_dnnl_threads_set(was);
  if (st == SYNCO_OK) st = synco_dnnl_reorder_make(c, &s->rw, dwmd, SYNCO_DNNL_MD(k->md_w), c->attr_sum);
  if (st == SYNCO_OK) st = grow(&c->split_buf, &c->split_bytes, (size_t)s->n * (s->dw_bytes + s->sp_bytes));
  if (st != SYNCO_OK) split_free(s);
  return st;
}

/* dw += the layer's weight gradient from x and dy (in the pass's formats, n images): each chunk's partial gradient
 * into its slot of ctx->split_buf, on the threads there are, then their sum in chunk order (each element's adds in
 * the same order whatever the threads), reordered into OIHW and added to dw. */
static synco_status split_run(synco_dnnl_ctx *c, split_pass *s, int n, const char *x, const char *y, float *dw,
                              dnnl_memory_t m_w) {
  char *buf = c->split_buf;
  const size_t slot = s->dw_bytes + s->sp_bytes;
  int bad = 0;
  synco_affinity a; /* chunk g in part g: its images are those the thread of part g took in the layer before */
  synco_affinity_init(&a, s->n, 1);
#pragma omp parallel num_threads(a.parts) reduction(| : bad)
  SYNCO_AFFINITY_FOR(a, gi) {
    const int g = (int)gi;
    const size_t i0 = (size_t)chunk_first(g, n, s->n);
    char *part = buf + (size_t)g * slot;
    bad |= dnnl_memory_set_data_handle(s->x[g], (void *)(uintptr_t)(x + i0 * s->x_img)) != dnnl_success;
    bad |= dnnl_memory_set_data_handle(s->y[g], (void *)(uintptr_t)(y + i0 * s->y_img)) != dnnl_success;
    bad |= dnnl_memory_set_data_handle(s->dw[g], part) != dnnl_success;
    if (s->sp[g]) bad |= dnnl_memory_set_data_handle(s->sp[g], part + s->dw_bytes) != dnnl_success;
    const dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, s->x[g]}, {DNNL_ARG_DIFF_DST, s->y[g]},
                                 {DNNL_ARG_DIFF_WEIGHTS, s->dw[g]}, {DNNL_ARG_SCRATCHPAD, s->sp[g]}};
    bad |= dnnl_primitive_execute(s->prim[g], c->split_strm[g], s->sp[g] ? 4 : 3, a) != dnnl_success;
    bad |= dnnl_stream_wait(c->split_strm[g]) != dnnl_success;
  }
  if (bad) return synco_fail(SYNCO_ERR_BACKEND, "cpu conv: backward weights of a batch chunk failed");
  float *sum = (float *)buf;
  const size_t m = s->dw_bytes / sizeof(float), step = slot / sizeof(float);
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < m; i++) {
    float a = sum[i];
    for (int g = 1; g < s->n; g++) a += sum[(size_t)g * step + i];
    sum[i] = a;
  }
  SYNCO_TRY(synco_dnnl_bind(s->dw[0], sum));
  SYNCO_TRY(synco_dnnl_bind(m_w, dw));
  const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, s->dw[0]}, {DNNL_ARG_DST, m_w}};
  return synco_dnnl_exec(c, &s->rw, 2, ra);
}

/* ---- running a pass ------------------------------------------------------------------------------------------------ */

/* One pass of the layer through kernel `kind`: xs is x (dx for backward data), ys is y (dy for the backward passes),
 * w the OIHW weights (dw, accumulated, for backward weights), ws synco's Winograd workspace. */
static synco_status run_pass(synco_dnnl_ctx *c, conv_impl *k, int kind, int pass, void *xs, void *ys, float *w,
                             float *ws) {
  if (kind == K_OWN_WINO) {
    if (pass == P_FWD) return synco_wino_fwd(&k->wp, ys, xs, w, ws);
    if (pass == P_BWD_DATA) return synco_wino_bwd_data(&k->wp, xs, ys, w, ws);
    return synco_wino_bwd_weights(&k->wp, w, ys, xs, ws);
  }
  if (kind == K_GEMM) {
    if (!k->gemm) return synco_fail(SYNCO_ERR_BACKEND, "cpu conv: gemm kernel not planned");
    if (pass == P_FWD) return synco_conv_gemm_fwd(c, k->gemm, ys, xs, w, ws);
    if (pass == P_BWD_DATA) return synco_conv_gemm_bwd_data(c, k->gemm, xs, ys, w, ws);
    return synco_conv_gemm_bwd_weights(c, k->gemm, w, ys, xs, ws);
  }
  if (kind == K_OWN_STEM) {
    if (pass != P_FWD) return synco_fail(SYNCO_ERR_BACKEND, "cpu conv: the stem kernel has only a forward pass");
    return synco_stem_fwd(&k->stem, ys, xs, w, ws);
  }
  if (kind == K_OWN_STRIDE2) {
    if (pass == P_FWD) return synco_stride2_fwd(&k->s2, ys, xs, w, ws);
    if (pass == P_BWD_DATA) return synco_stride2_bwd_data(&k->s2, xs, ys, w, ws);
    return synco_stride2_bwd_weights(&k->s2, w, ys, xs, ws);
  }
  if (kind == K_OWN_DIRECT8) {
    if (pass == P_FWD) return synco_direct8_fwd(&k->d8, ys, xs, w, ws);
    if (pass == P_BWD_DATA) return synco_direct8_bwd_data(&k->d8, xs, ys, w, ws);
    return synco_direct8_bwd_weights(&k->d8, w, ys, xs, ws);
  }
  dnnl_pass *d = &k->d[kind][pass];
  SYNCO_TRY(synco_dnnl_bind(k->m_x, xs));
  SYNCO_TRY(synco_dnnl_bind(k->m_y, ys));
  SYNCO_TRY(synco_dnnl_bind(k->m_w, w));
  SYNCO_TRY(synco_dnnl_bind(d->mw, d->wbuf));
  if (pass != P_BWD_WEIGHTS) {
    const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, k->m_w}, {DNNL_ARG_DST, d->mw}};
    SYNCO_TRY(synco_dnnl_exec(c, &d->rw, 2, ra));
  }
  if (d->ma) {
    SYNCO_TRY(synco_dnnl_bind(d->ma, c->reo[0]));
    if (pass != P_BWD_DATA && d->round_a) synco_dnnl_round_bf16(c->reo[0], (const float *)xs, d->round_a);
    else if (pass != P_BWD_DATA) {
      const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, k->m_x}, {DNNL_ARG_DST, d->ma}};
      SYNCO_TRY(synco_dnnl_exec(c, &d->ra, 2, ra));
    }
  }
  if (d->mb) {
    SYNCO_TRY(synco_dnnl_bind(d->mb, c->reo[1]));
    if (pass != P_FWD && d->round_b) synco_dnnl_round_bf16(c->reo[1], (const float *)ys, d->round_b);
    else if (pass != P_FWD) {
      const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, k->m_y}, {DNNL_ARG_DST, d->mb}};
      SYNCO_TRY(synco_dnnl_exec(c, &d->rb, 2, ra));
    }
  }
  dnnl_memory_t xm = d->ma ? d->ma : k->m_x, ym = d->mb ? d->mb : k->m_y;
  if (pass == P_FWD) {
    const dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, d->mw}, {DNNL_ARG_DST, ym}};
    SYNCO_TRY(synco_dnnl_exec(c, &d->prim, 3, a));
    if (d->mb) {
      const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, d->mb}, {DNNL_ARG_DST, k->m_y}};
      SYNCO_TRY(synco_dnnl_exec(c, &d->rb, 2, ra));
    }
    return SYNCO_OK;
  }
  if (pass == P_BWD_DATA) {
    const dnnl_exec_arg_t a[] = {{DNNL_ARG_DIFF_SRC, xm}, {DNNL_ARG_WEIGHTS, d->mw}, {DNNL_ARG_DIFF_DST, ym}};
    SYNCO_TRY(synco_dnnl_exec(c, &d->prim, 3, a));
    if (d->ma) {
      const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, d->ma}, {DNNL_ARG_DST, k->m_x}};
      SYNCO_TRY(synco_dnnl_exec(c, &d->ra, 2, ra));
    }
    return SYNCO_OK;
  }
  if (k->split.n && kind == k->kind[P_BWD_WEIGHTS])
    return split_run(c, &k->split, k->n, d->ma ? c->reo[0] : xs, d->mb ? c->reo[1] : ys, w, k->m_w);
  const dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_DIFF_WEIGHTS, d->mw}};
  SYNCO_TRY(synco_dnnl_exec(c, &d->prim, 3, a));
  const dnnl_exec_arg_t ra[] = {{DNNL_ARG_SRC, d->mw}, {DNNL_ARG_DST, k->m_w}};
  return synco_dnnl_exec(c, &d->rw, 2, ra);
}

/* ---- the choice: forced, or measured once per shape and process ---------------------------------------------------- */

/* SYNCO_CONV_ALGO: ALGO_RULE (unset or "rule", the default: a fixed rule, so that every process of a run, and a
 * resumed run, takes the same kernels), ALGO_MEASURE ("auto": measured per shape), else the forced K_* (where it
 * applies to a pass; direct elsewhere); ALGO_BAD for a value not known. */
enum { ALGO_MEASURE = -1, ALGO_BAD = -2, ALGO_RULE = -3 };
static int forced_kind(void) {
  const char *w = getenv("SYNCO_CONV_WINOGRAD");
  if (w && *w == '0') return K_DIRECT;
  const char *e = getenv("SYNCO_CONV_ALGO");
  if (!e || !*e || !strcmp(e, "rule")) return ALGO_RULE;
  if (!strcmp(e, "auto")) return ALGO_MEASURE;
  for (int i = 0; i < NKIND; i++)
    if (!strcmp(e, kind_names[i])) return i;
  return ALGO_BAD;
}

/* The default rule, from measurements on 2 cores (see the file's comment): bf16's im2col + matmul wherever it
 * applies (cpu_conv_gemm.h has the measurements); synco's direct8 wherever it applies
 * (nChw8c layers up to 32 channels on AVX-512; measured on the AMX VM by SYNCO_CONV_ALGO=auto, batch 64, 32x32:
 * 8 -> 8 channels, forward 0.50-0.57 ms against oneDNN's 1.37-1.63, backward data 0.50-0.63 against 0.95-1.0,
 * backward weights 0.30-0.31 against 0.60-1.70, synco's Winograd 1.2-3.6; 24 -> 24, 2.1-4.2 / 2.1 / 2.8 ms against
 * oneDNN's 7.3 / 6.9 / 3.7 and synco's Winograd 5.6 / 2.9 / 7.8); synco's Winograd on nChw8c layers (AVX2
 * machines, where oneDNN has no Winograd): F(4x4, 3x3) forward and backward data wherever the plan takes that tile
 * and the batch has 1,024 output pixels, F(2x2, 3x3) from 64 channels, backward weights from 32 (measurements
 * below);
 * oneDNN's Winograd where it has a kernel for the pass (AVX-512) from 64 channels (measured on the AMX machine,
 * idle, ResNet-18 CIFAR stem, batch 128: SYNCO_CONV_ALGO=auto chose it for every 3x3 stride-1 layer of 64 channels
 * and more, 106 images/s against 67 with direct kernels; that network has no narrower layer), and on the Zen 4 from
 * 32 channels, and for the backward weights from 16 (2026-12-06, idle, 2 threads, SYNCO_CONV_ALGO=auto, medians of
 * 3, batches 32 / 64 / 128 / 256, ms of direct / Winograd: 32 channels at 8x8 forward 0.15/0.12, 0.29/0.22,
 * 0.57/0.38, 1.15/0.80, backward data and weights alike; at 16x16 forward 1.52/1.20, 1.35/0.92, 2.71/1.64,
 * 5.47/4.01; at 32x32 5.45/3.72, 9.57/6.91, 14.8/7.39, 22.4/14.2; 48 channels at 16x16, batch 128, 5.7-5.9/3.2 for
 * forward and backward data; 16 channels: backward weights at 16x16 0.38/0.31, 0.77/0.62, 1.35/1.16, at 32x32
 * 3.99/2.13, 3.57/1.67, 3.23/3.05, 6.55/6.63, but forward 0.31/3.5 at 16x16, batch 64; a --width 8 step 1.08x as
 * fast, --width 16 1.06x, paired medians of 5 alternated rounds). The same kernels run fp32 layers on AMX
 * machines, where the narrower layers have not been measured. oneDNN's direct kernels elsewhere. */
static int has_kind(const conv_impl *k, int kind, int pass);
static int rule_kind(const synco_conv_op *op, const conv_impl *k, int pass) {
  const int narrow = op->cin < op->cout ? op->cin : op->cout;
  if (k->own_gemm >> pass & 1) return K_GEMM;
  /* In fp32 and, where the bf16 kernels are not AMX ones, in bf16 (the kernels multiply in fp32 there): synco's stem
   * kernel for the CIFAR stem's forward into 8 channels (Zen 4, idle, 2 threads, batch 64, 32x32, ms of oneDNN /
   * stem: fp32 0.49 / 0.21, oneDNN's AVX2 kernel; bf16 0.30 + 0.14 / 0.21, oneDNN's kernel writing 16-channel blocks
   * that a reorder cuts down). Into 16 or more channels it is faster in fp32 too (3 -> 16 0.41 / 0.30, 3 -> 32 0.62 /
   * 0.57, 3 -> 64 1.37 / 1.22; bf16 0.30 / 0.30, 0.51 / 0.57, 1.13 / 1.22), but by 0.3 % of a step or less, while
   * its rounding moved a --width 16 run's results (the make-demo recipe, seed 1: kNN 33.60 -> 35.30 %, seed-to-seed
   * noise): those layers keep oneDNN's kernel and their results. And synco's stride-2 kernels for the nChw8c ->
   * nChw16c layers (the 8 -> 16 and 24 -> 48 ones), where oneDNN reorders x or dy first: the forwards and the 1x1
   * layer's backward passes; the 3x3 layer's backward passes keep oneDNN's (Zen 4, idle, 2 threads, --width 8 -b 64
   * steps, medians of 3 runs, ms of oneDNN / stride2 per call: fp32 3x3 forward 0.42 / 0.24, backward weights
   * 0.27 / 0.32, backward data 0.32 / 0.31; 1x1 0.12-0.16 / 0.06-0.09, 0.20 / 0.14, 0.13 / 0.10; bf16 3x3 0.33 /
   * 0.24-0.25, 0.31 / 0.32, 0.33 / 0.33; 1x1 0.19 / 0.06-0.08, 0.21 / 0.15, 0.16 / 0.11). */
  const int bf16_amx = k->bf16 && strstr(k->d[K_DIRECT][pass].impl, "amx") != NULL;
  if (!bf16_amx && k->own_stem && pass == P_FWD && k->stem.block == 8) return K_OWN_STEM;
  if (!bf16_amx && k->own_s2 && (pass == P_FWD || op->kh == 1)) return K_OWN_STRIDE2;
  if (k->bf16) {
    /* a bf16 layer: oneDNN's fp32 Winograd from 64 channels where its bf16 kernels are not AMX ones (AVX512-BF16
     * alone, a Zen 4), but for the forward and backward data passes of layers of at most 16 output pixels (Zen 4,
     * idle, batch 128, SYNCO_CONV_ALGO=auto, ms of bf16 direct / Winograd: 64 channels at 32x32 26.0/20.4, 25.7/19.9,
     * 32.6/27.8 for the three passes; 256 at 8x8 22.1/17.2, 21.6/16.5, 22.7/15.9; 512 at 4x4 15.6/17.6, 15.9/17.1,
     * 22.7/19.0); synco's direct8 (bf16 since 2026-12-06: forward 0.235 ms against its fp32 0.37, backward
     * weights 0.25-0.28 against 0.36-0.48, for the first row's layer) where it applies and the bf16 kernel is not
     * an AMX one (Zen 4, idle, batch 64, 32x32, ms of bf16 direct / direct8: 8 channels 1.88/0.73, 2.68/0.73, 18.1/0.35; 24 channels
     * 7.32/6.31, 6.69/5.92, 3.59/3.14: a --width 8 step went from 45-47 to 28 ms, as fast as fp32's); oneDNN's
     * fp32 direct kernel, without AMX, in layers of under 64 channels, for every pass of 1x1 layers and for the
     * backward weights of 3x3 stride-2 layers and of those whose bf16 kernel is x64:gemm:jit (the CIFAR stem): there
     * the bf16 kernels are slower (Zen 4, idle, batch 64, SYNCO_CONV_ALGO=auto, ms of bf16 / fp32 direct: the CIFAR
     * stem's backward weights 3->8 channels 23.0/0.15, 3->16 3.7/0.9, 3->64 1.5/1.1; but the 7x7 stride-2 stem's at
     * 224x224, batch 16, 13.4/18.6, on jit_bf16, which it keeps); 3x3 stride-2 backward
     * weights 16->32 at 16x16 0.44/0.18, 32->64 at 8x8 0.39/0.21, 16->32 at 32x32 0.94-0.99/0.70; 1x1 stride-2
     * 8->16 at 32x32 0.27/0.08, 0.09/0.06, 0.27/0.05 for the three passes, 16->32 at 32x32 0.21/0.11 each), and
     * beside a competing process the bf16 stride-2 backward weights, which wait in a spin barrier, took 51 of the
     * 116 ms of a --width 8 step; bf16 direct elsewhere */
    const int pays = pass == P_BWD_WEIGHTS || op->oh * op->ow > 16;
    if (bf16_amx) return K_DIRECT;
    if (k->own_d8) return K_OWN_DIRECT8;
    if (narrow >= 64) return pays && has_kind(k, K_DNNL_WINO, pass) ? K_DNNL_WINO : K_DIRECT;
    /* and its Winograd for the backward weights from 32 channels up to 16x16 outputs (Zen 4, measured with the
     * fp32 rule's numbers above, ms of bf16 direct / Winograd: 32 channels at 8x8 0.17/0.23, 0.35/0.21, 0.51/0.35,
     * 1.27/0.75 at batches 32 / 64 / 128 / 256, at 16x16 0.53/0.39, 1.00/0.76, 1.81/1.62, 4.77/5.36, at 32x32
     * 2.08/2.06, 4.73/4.79, 9.66/11.0; its forward and backward data stay bf16: 0.17/0.21 at 8x8, batch 64; a
     * --width 8 step 1.10x as fast, --width 16 1.02x) */
    if (pass == P_BWD_WEIGHTS && narrow >= 32 && op->oh * op->ow <= 256 && has_kind(k, K_DNNL_WINO, pass))
      return K_DNNL_WINO;
    const int gemm = strstr(k->d[K_DIRECT][pass].impl, "gemm") != NULL; /* x64:gemm:jit, the CIFAR stem's */
    const int s2_3x3 = op->kh == 3 && op->kw == 3 && op->stride == 2;
    const int f32 = (op->kh == 1 && op->kw == 1) || (pass == P_BWD_WEIGHTS && (s2_3x3 || gemm));
    return f32 && has_kind(k, K_DIRECT_F32, pass) ? K_DIRECT_F32 : K_DIRECT;
  }
  const long pixels = (long)op->n * op->oh * op->ow;
  /* On a Zen 4 (AMD family 19h with AVX-512, which runs a 512-bit instruction as two 256-bit halves, so that synco's
   * AVX2 code multiplies as fast as oneDNN's AVX-512 kernels and synco's direct8), synco's F(4x4, 3x3) for the forward
   * and backward data of layers of 16 channels (nChw16c) or 24 (nChw8c) from 8,192 output pixels over the batch. Zen 4,
   * 2 threads, 2026-12-07, ms per call inside `bench step` steps (2 runs each, the kernel before / F(4x4, 3x3), forward
   * and backward data): 16 channels at 32x32 (--width 16, oneDNN's direct) 0.89-0.93 / 0.52-0.56 and 0.64-0.67 /
   * 0.49-0.52 at batch 32, 1.80-1.84 / 1.07-1.14 and 1.33-1.37 / 1.08-1.26 at 64, 3.74-3.79 / 2.20-2.58 and 2.77-2.94 /
   * 2.32-2.76 at 128, 7.66-8.09 / 4.62-4.65 and 5.78-5.92 / 4.69-4.78 at 256; at 16x16 (--width 8) 0.18-0.21 /
   * 0.15-0.19 and 0.16-0.17 / 0.13-0.20 at batch 32, 0.34-0.36 / 0.29-0.33 and 0.31-0.32 / 0.25-0.30 at 64, 0.65-0.66 /
   * 0.52-0.56 and 0.62-0.68 / 0.50-0.56 at 128, 1.25-1.39 / 1.14-1.15 and 1.23-1.33 / 1.18-1.24 at 256; 24 channels at
   * 32x32 (--width 24, direct8) 1.46-1.49 / 0.88-0.90 and 1.45-1.50 / 0.81-0.88 at batch 32, 3.07-3.73 / 1.86-2.07 and
   * 3.06-3.46 / 2.04-2.33 at 64, 5.81-5.93 / 3.90-4.52 and 5.85-5.92 / 4.17-4.53 at 128, 11.8-11.9 / 9.0-9.8 and
   * 11.8-12.1 / 8.5-9.5 at 256 (not measured under 32,768 pixels). Not for 8 channels, where direct8 is the faster
   * (0.69-0.71 / 1.08-1.22 forward at batch 128, 1.33-1.42 / 1.93-2.30 at 256), nor from 32, where oneDNN's Winograd is
   * (batch 64 and 128, forward: 32 channels at 32x32 3.3-7.3 against 3.8-9.1, 48 at 16x16 1.5-2.9 against 1.5-3.3, 64
   * at 32x32 9.1-19.1 against 10.8-22.0, 256 at 4x4 2.7-5.1 against 7.3-10.8). Not on Intel's AVX-512 or a Zen 5
   * (family 1Ah), whose full-width 512-bit FMA units give oneDNN's direct kernels twice the rate of AVX2 code (not
   * measured there). */
  if (k->own_wino && k->wp.m == 4 && (narrow == 16 || narrow == 24) && pass != P_BWD_WEIGHTS && pixels >= 8192 &&
      synco_direct8_available() && __builtin_cpu_is("amdfam19h"))
    return K_OWN_WINO;
  if (k->own_d8) return K_OWN_DIRECT8;
  /* synco's Winograd on nChw8c (AVX2 machines): F(4x4, 3x3)'s forward and backward data (the plan's tile 4) at any
   * width where the pass has at least 1,024 output pixels over the batch; F(2x2, 3x3)'s from 64 channels; backward
   * weights (always F(2x2, 3x3)) from 32. Zen 3 (AVX2), 2 threads, 2026-12-07, SYNCO_CONV_ALGO=auto inside `bench step`
   * of --width 8 and 16 at batches 32 and 128, ms of direct / F(4x4, 3x3), forward and backward data: 8 channels at
   * 32x32 1.49/1.14, 1.08/1.08 (b32), 3.51/2.24, 3.29/1.95 (b128); 16 at 16x16 1.16/0.85, 1.11/0.77 (b32), 3.36/2.64,
   * 2.99/2.42 (b128); 16 at 32x32 3.12/2.59, 2.82/2.81 (b32), 12.0/9.0, 10.6/4.7 (b128); 32 at 8x8 1.10/0.90,
   * 0.84/0.83 (b32), 1.67/0.89, 1.26/0.85 (b128); 64 at 4x4 1.07/1.31, 0.98/1.24 (b32: 512 pixels), 1.71/0.90,
   * 1.27/0.89 (b128); 128 at 4x4, b32, 1.68/1.85, 1.38/1.83. Backward weights of 8 channels: 3.4/18.6 and 2.3/13.6 on
   * F(2x2, 3x3), so those stay direct. */
  if (k->own_wino && k->wp.block == 8) {
    if (pass == P_BWD_WEIGHTS) return narrow >= 32 ? K_OWN_WINO : K_DIRECT;
    return (k->wp.m == 4 ? pixels >= 1024 : narrow >= 64) ? K_OWN_WINO : K_DIRECT;
  }
  /* oneDNN's Winograd (AVX-512) from 32 channels, and for the backward weights from 16, where the pass has enough
   * output pixels over the batch for its transforms to pay: direct for the forward and backward data under 1,024
   * (batch 32 at 4x4) and for 16 channels' backward weights under 32,768 (batch 128 at 16x16, 32 at 32x32). Intel Xeon
   * model 207 (AVX-512, no AMX), 2 threads, 2026-12-07, ms per call inside `bench step` steps of --width 8 / 16
   * (2 runs each, Winograd / direct): 64 channels at 4x4, batch 32, forward 0.18-0.19 / 0.13, backward data
   * 0.20-0.21 / 0.11, backward weights 0.18 / 0.18; batch 64 0.22 / 0.23, 0.24 / 0.19-0.21, 0.27-0.28 / 0.33-0.36;
   * batch 128 0.34 / 0.45, 0.34-0.38 / 0.36, 0.44 / 0.63; 128 channels at 4x4, batch 32, 0.51-0.52 / 0.46-0.47,
   * 0.55-0.60 / 0.42-0.43, 0.50-0.52 / 0.63-0.65; batch 64 0.78-0.79 / 0.89-0.90, 0.78-0.81 / 0.81-0.82; 16
   * channels' backward weights at 16x16, batch 32 0.25-0.26 / 0.16, 64 0.45-0.47 / 0.34-0.35, 128 0.57-0.58 /
   * 0.69-0.70, 256 1.11-1.22 / 1.29-1.33, at 32x32, batch 32 0.54 / 0.59-0.61, 64 1.09-1.13 / 1.25-1.28. */
  const int wino = pass == P_BWD_WEIGHTS ? narrow >= 32 || (narrow >= 16 && pixels >= 32768)
                                         : narrow >= 32 && pixels >= 1024;
  return wino && has_kind(k, K_DNNL_WINO, pass) ? K_DNNL_WINO : K_DIRECT;
}

/* 1 when SYNCO_CONV_ALGO's value f lets a layer take kernel `kind`: measured, by the rule, or forced to it. */
static int algo_allows(int f, int kind) { return f == ALGO_MEASURE || f == ALGO_RULE || f == kind; }

int synco_dnnl_winograd_on(const synco_dnnl_ctx *c) {
  const int f = forced_kind();
  return algo_allows(f, K_OWN_WINO) && (c->block == 8 || c->block == 16) &&
         synco_wino_available();
}

typedef struct {
  int n, cin, cout, h, w, kh, kw, stride, pad, lx, ly, threads, dtype;
  int kind[NPASS];
  double ms[NPASS][NKIND]; /* measured; 0 = not a candidate */
} conv_choice;

/* The choices measured so far in this process (a few dozen shapes at most; searched linearly). */
static struct {
  pthread_mutex_t lock;
  conv_choice *v;
  int n, cap;
} conv_cache = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

static int same_shape(const conv_choice *a, const conv_choice *b) {
  return a->n == b->n && a->cin == b->cin && a->cout == b->cout && a->h == b->h && a->w == b->w && a->kh == b->kh &&
         a->kw == b->kw && a->stride == b->stride && a->pad == b->pad && a->lx == b->lx && a->ly == b->ly &&
         a->threads == b->threads && a->dtype == b->dtype;
}

static int cache_find(conv_choice *q) {
  int hit = 0;
  pthread_mutex_lock(&conv_cache.lock);
  for (int i = 0; i < conv_cache.n && !hit; i++)
    if (same_shape(&conv_cache.v[i], q)) {
      *q = conv_cache.v[i];
      hit = 1;
    }
  pthread_mutex_unlock(&conv_cache.lock);
  return hit;
}

static void cache_put(const conv_choice *q) {
  pthread_mutex_lock(&conv_cache.lock);
  if (conv_cache.n == conv_cache.cap) {
    const int cap = conv_cache.cap ? 2 * conv_cache.cap : 32;
    conv_choice *v = realloc(conv_cache.v, (size_t)cap * sizeof(*v));
    if (v) {
      conv_cache.v = v;
      conv_cache.cap = cap;
    }
  }
  if (conv_cache.n < conv_cache.cap) conv_cache.v[conv_cache.n++] = *q;
  pthread_mutex_unlock(&conv_cache.lock);
}

static int has_kind(const conv_impl *k, int kind, int pass) {
  if (kind == K_GEMM) return k->own_gemm >> pass & 1; /* P_* and SYNCO_GEMM_* bits agree */
  if (kind == K_OWN_STEM) return k->own_stem && pass == P_FWD;
  if (kind == K_OWN_STRIDE2) return k->own_s2;
  return kind == K_OWN_WINO ? k->own_wino : kind == K_OWN_DIRECT8 ? k->own_d8 : k->d[kind][pass].pd != NULL;
}

static void fill(float *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (float)(seed >> 9) * (1.0f / 8388608.0f) - 0.5f;
  }
}

/* Times every candidate of every pass that has more than one on scratch data: one untimed run, then the faster
 * of two timed ones (one when the first took 3x the best so far); keeps the fastest in q (ties: the earlier kind).
 * The untimed run pays what a first call pays (oneDNN's Winograd on an Intel Xeon: 133-215 ms on 8x8 and 4x4
 * layers at batch 128 that then run in 16-20), so it never decides. synco's Winograd runs in a workspace of its
 * own here, so that the shared one grows only for layers that keep it. */
static synco_status measure(synco_backend *be, const synco_conv_op *op, conv_impl *k, size_t wino, conv_choice *q) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  const size_t nx = (size_t)op->n * op->cin * op->h * op->w, ny = (size_t)op->n * op->cout * op->oh * op->ow;
  const size_t nw = (size_t)op->cout * op->cin * op->kh * op->kw;
  float *x = synco_aligned_alloc(nx * sizeof(float)), *y = synco_aligned_alloc(ny * sizeof(float));
  float *w = synco_aligned_alloc(nw * sizeof(float)), *dw = synco_aligned_alloc(nw * sizeof(float));
  const int own = k->own_wino || k->own_d8 || k->own_gemm || k->own_stem || k->own_s2;
  float *ws = own ? synco_aligned_alloc(wino) : NULL;
  synco_status s = (x && y && w && dw && (ws || !own)) ? SYNCO_OK : SYNCO_ERR_NOMEM;
  if (s == SYNCO_OK) {
    fill(x, nx, 1);
    fill(y, ny, 2);
    fill(w, nw, 3);
    memset(dw, 0, nw * sizeof(float));
  }
  for (int p = 0; p < NPASS && s == SYNCO_OK; p++) {
    int best = -1;
    for (int kind = 0; kind < NKIND && s == SYNCO_OK; kind++) {
      if (!has_kind(k, kind, p)) continue;
      double t = 1e30;
      for (int r = 0; r < 3 && s == SYNCO_OK; r++) {
        const double t0 = synco_now();
        s = run_pass(c, k, kind, p, x, y, p == P_BWD_WEIGHTS ? dw : w, ws);
        const double dt = synco_now() - t0;
        if (r > 0 && dt < t) t = dt;
        /* a candidate 3x slower than the best so far on its first timed run has lost: not timed again */
        if (r == 1 && best >= 0 && dt > 3e-3 * q->ms[p][best]) break;
      }
      q->ms[p][kind] = t * 1e3;
      if (best < 0 || q->ms[p][kind] < q->ms[p][best]) best = kind;
    }
    q->kind[p] = best < 0 ? K_DIRECT : best;
  }
  free(x);
  free(y);
  free(w);
  free(dw);
  free(ws);
  return s;
}

/* The choice for this layer without measuring: forced by SYNCO_CONV_ALGO, the only candidate, or cached earlier in
 * the process. Returns 1 when q->kind is set, 0 when it must be measured. */
static int choice_known(const synco_conv_op *op, const conv_impl *k, conv_choice *q) {
  const int f = forced_kind();
  *q = (conv_choice){.n = op->n, .cin = op->cin, .cout = op->cout, .h = op->h, .w = op->w, .kh = op->kh, .kw = op->kw,
                     .stride = op->stride, .pad = op->pad, .lx = k->lx, .ly = k->ly,
                     .threads = omp_get_max_threads(), .dtype = k->bf16 ? (int)SYNCO_BF16 : (int)op->dtype};
  int candidates = 0;
  for (int p = 0; p < NPASS; p++) {
    int m = 0;
    for (int kind = 0; kind < NKIND; kind++) m += has_kind(k, kind, p);
    if (m > 1) candidates = 1;
  }
  if (f == ALGO_RULE) {
    for (int p = 0; p < NPASS; p++) q->kind[p] = rule_kind(op, k, p);
    return 1;
  }
  if (f >= 0 || !candidates) {
    for (int p = 0; p < NPASS; p++) q->kind[p] = f >= 0 && has_kind(k, f, p) ? f : K_DIRECT;
    return 1;
  }
  return cache_find(q);
}

/* ---- the kernel log ------------------------------------------------------------------------------------------------ */

static void log_kernels(synco_dnnl_ctx *c, const synco_conv_op *op, const conv_impl *k, const conv_choice *q,
                        int measured) {
  char e[1024];
  int n = snprintf(e, sizeof e, "{\"conv\":\"%dx%dx%d->%dx%dx%d k%d s%d p%d\",\"batch\":%d", op->cin, op->h, op->w,
                   op->cout, op->oh, op->ow, op->kh, op->stride, op->pad, op->n);
  for (int p = 0; p < NPASS && n > 0 && (size_t)n < sizeof e; p++) {
    const int kind = k->kind[p];
    const dnnl_pass *d = kind >= NDNNL ? NULL : &k->d[kind][p];
    char gemm[96];
    snprintf(gemm, sizeof gemm, "synco:im2col+matmul:%s", synco_conv_gemm_impl(k->gemm));
    const int d8_bf16 = kind == K_OWN_DIRECT8 && k->d8.bf16;
    const char *own = kind == K_GEMM          ? gemm
                      : kind == K_OWN_STEM    ? (k->stem.block == 16 ? "synco:stem_avx512:nChw16c" : "synco:stem_avx512:nChw8c")
                      : kind == K_OWN_STRIDE2 ? "synco:stride2_avx512:nChw8c->nChw16c"
                      : d8_bf16               ? "synco:direct8_avx512_bf16:nChw8c"
                      : kind == K_OWN_DIRECT8 ? "synco:direct8_avx512:nChw8c"
                                              : synco_wino_impl(&k->wp, p == P_BWD_WEIGHTS);
    /* a pass that multiplies in fp32 under --precision bf16 says so: a bf16 layer's (oneDNN's Winograd, synco's fp32
     * kernels), and every pass where this CPU's bf16 convolutions are the slower (k->bf16 is 0 there) */
    const int fp32 = c->bf16 && (!k->bf16 || (kind != K_DIRECT && kind != K_GEMM && !d8_bf16));
    n += snprintf(e + n, sizeof e - (size_t)n, ",\"%s\":\"%s%s%s%s%s\"", pass_names[p], d ? d->impl : own,
                  d && d->fmt[0] ? " (" : "", d ? d->fmt : "", d && d->fmt[0] ? ")" : "", fp32 ? " (fp32)" : "");
  }
  /* fixed sums (--adapt-threads): the batch chunks of backward weights, or the threads it is planned for */
  if (c->sum_threads > 1 && k->kind[P_BWD_WEIGHTS] < NDNNL && n > 0 && (size_t)n < sizeof e)
    n += snprintf(e + n, sizeof e - (size_t)n, k->split.n ? ",\"bwd_weights_chunks\":%d" : ",\"bwd_weights_threads\":%d",
                  c->sum_threads);
  if (measured && n > 0 && (size_t)n < sizeof e) {
    n += snprintf(e + n, sizeof e - (size_t)n, ",\"measured_ms\":{");
    for (int p = 0; p < NPASS && n > 0 && (size_t)n < sizeof e; p++) {
      n += snprintf(e + n, sizeof e - (size_t)n, "%s\"%s\":{", p ? "," : "", pass_names[p]);
      int first = 1;
      for (int kind = 0; kind < NKIND && n > 0 && (size_t)n < sizeof e; kind++)
        if (q->ms[p][kind] > 0) {
          n += snprintf(e + n, sizeof e - (size_t)n, "%s\"%s\":%.3f", first ? "" : ",", kind_names[kind],
                        q->ms[p][kind]);
          first = 0;
        }
      if (n > 0 && (size_t)n < sizeof e) n += snprintf(e + n, sizeof e - (size_t)n, "}");
    }
    if (n > 0 && (size_t)n < sizeof e) n += snprintf(e + n, sizeof e - (size_t)n, "}");
  }
  if (n <= 0 || (size_t)n + 2 >= sizeof e) return;
  memcpy(e + n, "}", 2);
  synco_dnnl_log_kernel(c, e);
}

void synco_dnnl_log_kernel(synco_dnnl_ctx *c, const char *e) {
  if (c->kernels && strstr(c->kernels, e)) return; /* the same shape planned again (the key encoder, a repeated block) */
  const size_t len = strlen(e);
  char *p = realloc(c->kernels, c->kernels_len + len + 2);
  if (!p) return;
  c->kernels = p;
  if (c->kernels_len) p[c->kernels_len++] = ',';
  memcpy(p + c->kernels_len, e, len + 1);
  c->kernels_len += len;
}

size_t synco_dnnl_kernels(synco_backend *be, char *buf, size_t n) {
  const synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  return (size_t)snprintf(buf, n, "[%s]", c->kernels ? c->kernels : "");
}

/* ---- planning ------------------------------------------------------------------------------------------------------ */

/* The decisions of a plan that need nothing allocated: layouts, the layer's memory descriptors, which oneDNN
 * descriptors exist for each pass and algorithm, whether synco's Winograd and direct8 apply (*wino: the workspace
 * of synco's kernels, the larger of the two where both apply; ctx->wino holds it, shared by the layers). */
static synco_status describe(synco_backend *be, const synco_conv_op *op, conv_impl *k, size_t *wino) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  dnnl_data_type_t dt;
  SYNCO_TRY(synco_dnnl_dtype(c, op->dtype, &dt));
  k->bf16 = c->bf16_conv && op->dtype == SYNCO_F32; /* not on CPUs whose bf16 kernels are the slower: fp32 layers */
  k->n = op->n;
  k->lx = synco_dnnl_act_layout(be, op->cin, op->h, op->w, op->dtype);
  k->ly = synco_dnnl_act_layout(be, op->cout, op->oh, op->ow, op->dtype);
  SYNCO_TRY(synco_dnnl_md_act(&k->md_x, op->n, op->cin, op->h, op->w, op->dtype, k->lx));
  SYNCO_TRY(synco_dnnl_md_act(&k->md_y, op->n, op->cout, op->oh, op->ow, op->dtype, k->ly));
  k->nx = (size_t)op->n * op->cin * op->h * op->w;
  k->ny = (size_t)op->n * op->cout * op->oh * op->ow;
  if (k->bf16) {
    SYNCO_TRY(synco_dnnl_md_act(&k->md_x16, op->n, op->cin, op->h, op->w, SYNCO_BF16, k->lx));
    SYNCO_TRY(synco_dnnl_md_act(&k->md_y16, op->n, op->cout, op->oh, op->ow, SYNCO_BF16, k->ly));
  }
  const dnnl_dims_t wd = {op->cout, op->cin, op->kh, op->kw};
  SYNCO_TRY(synco_dnnl_md_tag(&k->md_w, 4, wd, dnnl_f32, dnnl_oihw));
  const int f = forced_kind();
  if (f == ALGO_BAD)
    return synco_fail(SYNCO_ERR_ARG,
                      "SYNCO_CONV_ALGO=%s: expected rule, auto, direct, winograd, onednn-winograd, direct-fp32, direct8, gemm, "
                      "stem or stride2",
                      getenv("SYNCO_CONV_ALGO"));
  SYNCO_TRY(synco_wino_check_env());
  const int block = synco_dnnl_layout_block(k->lx);
  const int wino_shape = op->kh == 3 && op->kw == 3 && op->stride == 1 && op->pad == 1 && k->lx == k->ly && block > 1;
  *wino = 0;
  /* synco's own kernels are fp32 kernels: its Winograd for fp32 layers only; a bf16 layer may take its direct8 and
   * oneDNN's Winograd (below), in fp32 on the layer's own tensors */
  if (wino_shape && !k->bf16 && op->dtype == SYNCO_F32 && synco_dnnl_winograd_on(c) &&
      synco_wino_applies(op->cin, op->cout, op->h, op->w, op->kh, op->kw, op->stride, op->pad, block)) {
    k->own_wino = 1;
    *wino = synco_wino_plan_make(&k->wp, op->n, op->cin, op->cout, op->h, op->w, block, omp_get_max_threads());
  }
  if (wino_shape && op->dtype == SYNCO_F32 && algo_allows(f, K_OWN_DIRECT8) &&
      synco_direct8_applies(op->cin, op->cout, op->kh, op->kw, op->stride, op->pad, block)) {
    k->own_d8 = 1;
    k->d8 = (synco_direct8_shape){.n = op->n, .cin = op->cin, .cout = op->cout, .h = op->h, .w = op->w,
                                  .bf16 = k->bf16 && synco_direct8_bf16_available()};
    const size_t d8 = synco_direct8_workspace_bytes(&k->d8);
    if (d8 > *wino) *wino = d8;
  }
  if (op->dtype == SYNCO_F32 && algo_allows(f, K_OWN_STEM) &&
      synco_stem_applies(op->cin, op->cout, op->kh, op->kw, op->stride, op->pad, block,
                         synco_dnnl_layout_block(k->ly))) {
    k->own_stem = 1;
    k->stem = (synco_stem_shape){.n = op->n, .cin = op->cin, .cout = op->cout, .h = op->h, .w = op->w,
                                 .block = synco_dnnl_layout_block(k->ly)};
    const size_t st = synco_stem_workspace_bytes(&k->stem);
    if (st > *wino) *wino = st;
  }
  if (op->dtype == SYNCO_F32 && algo_allows(f, K_OWN_STRIDE2) &&
      synco_stride2_applies(op->cin, op->cout, op->kh, op->kw, op->stride, op->pad, block,
                            synco_dnnl_layout_block(k->ly))) {
    k->own_s2 = 1;
    k->s2 = (synco_stride2_shape){.n = op->n, .cin = op->cin, .cout = op->cout, .h = op->h, .w = op->w, .k = op->kh,
                                  .pad = op->pad};
    const size_t s2 = synco_stride2_workspace_bytes(&k->s2);
    if (s2 > *wino) *wino = s2;
  }
  for (int p = 0; p < NPASS; p++) {
    SYNCO_TRY(find_pd(c, op, k, K_DIRECT, p, &k->d[K_DIRECT][p]));
    if (!k->d[K_DIRECT][p].pd)
      return synco_fail(SYNCO_ERR_BACKEND, "cpu conv: no non-reference %s kernel for %dx%dx%d -> %d k%d s%d",
                        pass_names[p], op->cin, op->h, op->w, op->cout, op->kh, op->stride);
    if (wino_shape && algo_allows(f, K_DNNL_WINO))
      SYNCO_TRY(find_pd(c, op, k, K_DNNL_WINO, p, &k->d[K_DNNL_WINO][p]));
    if (k->bf16 && algo_allows(f, K_DIRECT_F32)) SYNCO_TRY(find_pd(c, op, k, K_DIRECT_F32, p, &k->d[K_DIRECT_F32][p]));
  }
  if (algo_allows(f, K_GEMM)) k->own_gemm = synco_conv_gemm_passes(op, k->bf16, k->d[K_DIRECT][P_BWD_WEIGHTS].impl);
  if (k->own_gemm) {
    const size_t g = synco_conv_gemm_workspace_bytes(op, k->own_gemm);
    if (g > *wino) *wino = g;
  }
  return SYNCO_OK;
}

/* 1 when some pass takes the im2col + matmul kernel (cpu_conv_gemm.c). */
static int uses_gemm(const int kind_of[NPASS]) {
  return kind_of[P_FWD] == K_GEMM || kind_of[P_BWD_DATA] == K_GEMM || kind_of[P_BWD_WEIGHTS] == K_GEMM;
}

/* 1 when some pass takes one of synco's own kernels (which run in ctx->wino). */
static int uses_own(const int kind_of[NPASS]) {
  return kind_of[P_FWD] >= NDNNL || kind_of[P_BWD_DATA] >= NDNNL || kind_of[P_BWD_WEIGHTS] >= NDNNL;
}

/* Makes the passes of the oneDNN algorithms: all that exist when `all` (to measure them), else the chosen ones. */
static synco_status make_passes(synco_dnnl_ctx *c, conv_impl *k, int all) {
  for (int a = 0; a < NDNNL; a++)
    for (int p = 0; p < NPASS; p++) {
      dnnl_pass *d = &k->d[a][p];
      if (d->pd && (all || k->kind[p] == a) && !d->prim.p) SYNCO_TRY(pass_make(c, k, p, d, &k->d[a][P_FWD]));
    }
  return SYNCO_OK;
}

/* Frees the passes the chosen kernels do not use (a kept backward-data pass takes over the weight buffer it shared
 * with a dropped forward pass). */
static void drop_losers(conv_impl *k) {
  for (int a = 0; a < NDNNL; a++)
    for (int p = NPASS - 1; p >= 0; p--) {
      dnnl_pass *d = &k->d[a][p];
      if (k->kind[p] == a || !d->pd) continue;
      if (p == P_FWD && k->d[a][P_BWD_DATA].wbuf_shared) {
        k->d[a][P_BWD_DATA].wbuf_shared = 0;
        d->wbuf_shared = 1;
      }
      pass_free(d);
    }
}

static synco_status plan(synco_backend *be, synco_conv_op *op, conv_impl *k) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  size_t wino;
  SYNCO_TRY(describe(be, op, k, &wino));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_x, SYNCO_DNNL_MD(k->md_x)));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_y, SYNCO_DNNL_MD(k->md_y)));
  SYNCO_TRY(synco_dnnl_mem(c, &k->m_w, SYNCO_DNNL_MD(k->md_w)));
  conv_choice q;
  const int known = choice_known(op, k, &q);
  if (k->own_gemm && (!known || uses_gemm(q.kind)))
    SYNCO_TRY(synco_conv_gemm_plan(c, op, k->own_gemm, SYNCO_DNNL_MD(k->md_x), SYNCO_DNNL_MD(k->md_y),
                                   SYNCO_DNNL_MD(k->md_w), &k->gemm));
  if (!known) {
    SYNCO_TRY(make_passes(c, k, 1));
    SYNCO_TRY(measure(be, op, k, wino, &q));
    cache_put(&q);
  }
  memcpy(k->kind, q.kind, sizeof k->kind);
  drop_losers(k);
  if (!uses_gemm(k->kind)) synco_conv_gemm_free(&k->gemm);
  SYNCO_TRY(split_plan(c, op, k));
  SYNCO_TRY(make_passes(c, k, 0));
  if (uses_own(k->kind)) SYNCO_TRY(grow((void **)&c->wino, &c->wino_bytes, wino));
  int measured = 0;
  for (int p = 0; p < NPASS; p++)
    for (int kind = 0; kind < NKIND; kind++) measured |= q.ms[p][kind] > 0;
  log_kernels(c, op, k, &q, measured);
  return SYNCO_OK;
}

/* What plan() would allocate, from the same decisions and primitive descriptors (no primitive is made, no memory
 * taken): the chosen passes' weight copies, diff-weights buffers and code; the backend's scratchpad, reorder buffers
 * and Winograd workspace grow to the largest layer's need. Before a shape's choice is measured (the process's first
 * plan of it measures) every candidate counts, so the figure errs high. */
static synco_status plan_bytes(synco_backend *be, const synco_conv_op *op, conv_impl *k, synco_plan_bytes *b) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  size_t wino;
  SYNCO_TRY(describe(be, op, k, &wino));
  conv_choice q;
  const int known = choice_known(op, k, &q);
  if (!known || uses_own(q.kind)) synco_plan_share(b, SYNCO_DNNL_SHARED_WINO, wino);
  /* fixed sums: a split backward-weights pass's chunks, each its partial gradient and scratchpad, and their code */
  split_pass sp = {0};
  if (known) {
    memcpy(k->kind, q.kind, sizeof k->kind);
    SYNCO_TRY(split_describe(c, op, k, &sp));
  }
  const int chunks = sp.n;
  if (chunks) {
    synco_plan_share(b, SYNCO_DNNL_SHARED_SPLIT, (size_t)chunks * (sp.dw_bytes + sp.sp_bytes));
    b->kept += (size_t)chunks * SYNCO_DNNL_CODE_BYTES;
  }
  split_free(&sp);
  for (int a = 0; a < NDNNL; a++)
    for (int p = 0; p < NPASS; p++)
      if (k->d[a][p].pd && (!known || q.kind[p] == a))
        SYNCO_TRY(pass_bytes(c, k, p, &k->d[a][p], !known || q.kind[P_FWD] == a ? &k->d[a][P_FWD] : NULL,
                             p == P_BWD_WEIGHTS && chunks, b));
  if (k->own_gemm && (!known || uses_gemm(q.kind)))
    SYNCO_TRY(synco_conv_gemm_plan_bytes(c, op, k->own_gemm, SYNCO_DNNL_MD(k->md_x), SYNCO_DNNL_MD(k->md_y),
                                         SYNCO_DNNL_MD(k->md_w), b));
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
  SYNCO_TRY(planned(op));
  conv_impl *k = op->impl;
  SYNCO_TRY(synco_dnnl_check("conv_fwd x", x, op->n, op->cin, op->h, op->w, k->lx));
  SYNCO_TRY(synco_dnnl_check("conv_fwd y", y, op->n, op->cout, op->oh, op->ow, k->ly));
  /* the kernels never write x or w; run_pass takes them as the buffers of any pass */
  return run_pass(synco_dnnl_ctx_of(be), k, k->kind[P_FWD], P_FWD, (void *)(uintptr_t)x->data, y->data,
                  (float *)(uintptr_t)w, synco_dnnl_ctx_of(be)->wino);
}

synco_status synco_dnnl_conv_bwd_data(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                      const float *w) {
  SYNCO_TRY(planned(op));
  conv_impl *k = op->impl;
  SYNCO_TRY(synco_dnnl_check("conv_bwd_data dx", dx, op->n, op->cin, op->h, op->w, k->lx));
  SYNCO_TRY(synco_dnnl_check("conv_bwd_data dy", dy, op->n, op->cout, op->oh, op->ow, k->ly));
  return run_pass(synco_dnnl_ctx_of(be), k, k->kind[P_BWD_DATA], P_BWD_DATA, dx->data, (void *)(uintptr_t)dy->data,
                  (float *)(uintptr_t)w, synco_dnnl_ctx_of(be)->wino);
}

synco_status synco_dnnl_conv_bwd_weights(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                         const synco_tensor *x) {
  SYNCO_TRY(planned(op));
  conv_impl *k = op->impl;
  SYNCO_TRY(synco_dnnl_check("conv_bwd_weights x", x, op->n, op->cin, op->h, op->w, k->lx));
  SYNCO_TRY(synco_dnnl_check("conv_bwd_weights dy", dy, op->n, op->cout, op->oh, op->ow, k->ly));
  return run_pass(synco_dnnl_ctx_of(be), k, k->kind[P_BWD_WEIGHTS], P_BWD_WEIGHTS, (void *)(uintptr_t)x->data,
                  (void *)(uintptr_t)dy->data, dw, synco_dnnl_ctx_of(be)->wino);
}
