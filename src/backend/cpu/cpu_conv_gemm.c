/* A bf16 convolution as im2col + matmul (see cpu_conv_gemm.h). */
#include "backend/cpu/cpu_conv_gemm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WS_BYTES ((size_t)512 << 20)
#define MAX_CIN 4096 /* col2im's per-thread row of sums */

/* The matrices, as oneDNN memory objects bound to the workspace per call. */
enum { M_X, M_Y, M_W, M_XB, M_YB, M_Y2, M_DYT, M_COL, M_WB4, M_WB, M_WBT, M_ACC, M_ACC4, M_DCOL, NMEM };
/* The primitives: x -> xb, dy -> yb, yb -> y, xb -> dx, w -> wb, acc -> dw (+=), and the three matmuls. */
enum { P_RX, P_RDY, P_RY, P_RDX, P_RW, P_RACC, P_MM_FWD, P_MM_DATA, P_MM_WEIGHTS, NPRIM };

struct synco_conv_gemm {
  synco_conv_op op;
  int passes; /* SYNCO_GEMM_* bits: the passes planned */
  synco_dnnl_prim prim[NPRIM];
  dnnl_primitive_desc_t mm_pd; /* the forward matmul's, kept for its implementation name */
  dnnl_memory_t mem[NMEM];
};

static size_t up64(size_t b) { return (b + 63) / 64 * 64; }
static long pixels(const synco_conv_op *op) { return (long)op->n * op->oh * op->ow; }
static long taps_cin(const synco_conv_op *op) { return (long)op->kh * op->kw * op->cin; }

/* The workspace: xb (also dx's bf16 copy), yb (dy's or y's), wb, then col and acc, or dcol in the same place;
 * total: what the passes in `passes` use. */
typedef struct {
  size_t xb, yb, wb, col, acc, dcol, total;
} ws_parts;

static ws_parts parts(const synco_conv_op *op, int passes) {
  const size_t P = (size_t)pixels(op), K = (size_t)taps_cin(op);
  ws_parts w;
  w.xb = 0;
  w.yb = w.xb + up64((size_t)op->n * op->cin * op->h * op->w * 2);
  w.wb = w.yb + up64(P * op->cout * 2);
  w.col = w.dcol = w.wb + up64((size_t)op->cout * K * 2);
  w.acc = w.col + up64(P * K * 2);
  const size_t a = w.acc + up64((size_t)op->cout * K * 4), d = passes & SYNCO_GEMM_BWD_DATA ? w.dcol + up64(P * K * 4) : 0;
  w.total = a > d ? a : d;
  return w;
}

int synco_conv_gemm_passes(const synco_conv_op *op, int bf16, const char *direct_bwd_weights_impl) {
  if (!bf16 || op->cin > MAX_CIN || !direct_bwd_weights_impl || !strstr(direct_bwd_weights_impl, "amx")) return 0;
  const int px = op->oh * op->ow;
  const int passes = px <= 16 ? SYNCO_GEMM_FWD | SYNCO_GEMM_BWD_DATA | SYNCO_GEMM_BWD_WEIGHTS
                     : px <= 64 ? SYNCO_GEMM_BWD_WEIGHTS
                                : 0;
  return passes && parts(op, passes).total <= MAX_WS_BYTES ? passes : 0;
}

size_t synco_conv_gemm_workspace_bytes(const synco_conv_op *op, int passes) { return parts(op, passes).total; }

/* ---- planning ------------------------------------------------------------------------------------------------------ */

typedef struct {
  synco_dnnl_md m[NMEM]; /* the descriptors this file makes (not M_X, M_Y, M_W: the layer's) */
} gemm_mds;

static void mds_free(gemm_mds *m) {
  for (int i = 0; i < NMEM; i++) synco_dnnl_md_free(&m->m[i]);
}

/* rows x cols with the given strides (in elements). */
static synco_status md_strided(synco_dnnl_md *m, long rows, long cols, dnnl_data_type_t dt, long rs, long cs) {
  const dnnl_dims_t dims = {rows, cols}, strides = {rs, cs};
#if DNNL_VERSION_MAJOR >= 3
  synco_dnnl_md_free(m);
  SYNCO_DNNL(dnnl_memory_desc_create_with_strides(&m->h, 2, dims, dt, strides));
#else
  SYNCO_DNNL(dnnl_memory_desc_init_by_strides(&m->d, 2, dims, dt, strides));
#endif
  return SYNCO_OK;
}

static synco_status mds_make(const synco_conv_op *op, gemm_mds *d) {
  const long P = pixels(op), K = taps_cin(op), co = op->cout;
  const dnnl_dims_t xd = {op->n, op->cin, op->h, op->w}, yd = {op->n, op->cout, op->oh, op->ow};
  const dnnl_dims_t wd = {op->cout, op->cin, op->kh, op->kw};
  synco_dnnl_md *m = d->m;
  SYNCO_TRY(synco_dnnl_md_tag(&m[M_XB], 4, xd, dnnl_bf16, dnnl_nhwc));
  SYNCO_TRY(synco_dnnl_md_tag(&m[M_YB], 4, yd, dnnl_bf16, dnnl_nhwc));
  SYNCO_TRY(md_strided(&m[M_Y2], P, co, dnnl_bf16, co, 1));  /* yb as [P, cout] */
  SYNCO_TRY(md_strided(&m[M_DYT], co, P, dnnl_bf16, 1, co)); /* yb as its transpose [cout, P] */
  SYNCO_TRY(md_strided(&m[M_COL], P, K, dnnl_bf16, K, 1));
  SYNCO_TRY(synco_dnnl_md_tag(&m[M_WB4], 4, wd, dnnl_bf16, dnnl_acdb)); /* O, H, W, I in memory */
  SYNCO_TRY(md_strided(&m[M_WB], co, K, dnnl_bf16, K, 1));              /* wb as [cout, K] */
  SYNCO_TRY(md_strided(&m[M_WBT], K, co, dnnl_bf16, 1, K));             /* and as its transpose [K, cout] */
  SYNCO_TRY(md_strided(&m[M_ACC], co, K, dnnl_f32, K, 1));
  SYNCO_TRY(synco_dnnl_md_tag(&m[M_ACC4], 4, wd, dnnl_f32, dnnl_acdb));
  return md_strided(&m[M_DCOL], P, K, dnnl_f32, K, 1);
}

static synco_dnnl_cmd md_of(const gemm_mds *d, int i, synco_dnnl_cmd x, synco_dnnl_cmd y, synco_dnnl_cmd w) {
  return i == M_X ? x : i == M_Y ? y : i == M_W ? w : SYNCO_DNNL_MD(d->m[i]);
}

/* The matmul dst = src · wei. */
static synco_status matmul_pd(synco_dnnl_ctx *c, synco_dnnl_cmd src, synco_dnnl_cmd wei, synco_dnnl_cmd dst,
                              dnnl_primitive_desc_t *pd) {
  *pd = NULL;
#if DNNL_VERSION_MAJOR >= 3
  SYNCO_DNNL(dnnl_matmul_primitive_desc_create(pd, c->eng, src, wei, NULL, dst, c->attr));
#else
  dnnl_matmul_desc_t d;
  SYNCO_DNNL(dnnl_matmul_desc_init(&d, src, wei, NULL, dst));
  SYNCO_DNNL(dnnl_primitive_desc_create(pd, &d, c->attr, c->eng, NULL));
#endif
  return SYNCO_OK;
}

/* Each primitive: a reorder (src -> dst) or a matmul (dst = src · wei), by memory index. */
static const struct {
  int src, wei, dst, sum; /* wei < 0: a reorder; sum: it accumulates into dst */
} prims[NPRIM] = {
    [P_RX] = {M_X, -1, M_XB, 0},          [P_RDY] = {M_Y, -1, M_YB, 0},          [P_RY] = {M_YB, -1, M_Y, 0},
    [P_RDX] = {M_XB, -1, M_X, 0},         [P_RW] = {M_W, -1, M_WB4, 0},          [P_RACC] = {M_ACC4, -1, M_W, 1},
    [P_MM_FWD] = {M_COL, M_WBT, M_Y2, 0}, [P_MM_DATA] = {M_Y2, M_WB, M_DCOL, 0}, [P_MM_WEIGHTS] = {M_DYT, M_COL, M_ACC, 0},
};
/* The passes that use each primitive. */
static const int prim_passes[NPRIM] = {
    [P_RX] = SYNCO_GEMM_FWD | SYNCO_GEMM_BWD_WEIGHTS, [P_RDY] = SYNCO_GEMM_BWD_DATA | SYNCO_GEMM_BWD_WEIGHTS,
    [P_RY] = SYNCO_GEMM_FWD, [P_RDX] = SYNCO_GEMM_BWD_DATA, [P_RW] = SYNCO_GEMM_FWD | SYNCO_GEMM_BWD_DATA,
    [P_RACC] = SYNCO_GEMM_BWD_WEIGHTS, [P_MM_FWD] = SYNCO_GEMM_FWD, [P_MM_DATA] = SYNCO_GEMM_BWD_DATA,
    [P_MM_WEIGHTS] = SYNCO_GEMM_BWD_WEIGHTS,
};

/* Primitive i's descriptor. */
static synco_status prim_pd(synco_dnnl_ctx *c, const gemm_mds *d, int i, synco_dnnl_cmd x, synco_dnnl_cmd y,
                            synco_dnnl_cmd w, dnnl_primitive_desc_t *pd) {
  const synco_dnnl_cmd src = md_of(d, prims[i].src, x, y, w), dst = md_of(d, prims[i].dst, x, y, w);
  if (prims[i].wei >= 0) return matmul_pd(c, src, md_of(d, prims[i].wei, x, y, w), dst, pd);
  *pd = NULL;
  SYNCO_DNNL(dnnl_reorder_primitive_desc_create(pd, src, c->eng, dst, c->eng, prims[i].sum ? c->attr_sum : c->attr));
  return SYNCO_OK;
}

static synco_status plan(synco_dnnl_ctx *c, synco_conv_gemm *g, const gemm_mds *d, synco_dnnl_cmd x, synco_dnnl_cmd y,
                         synco_dnnl_cmd w) {
  for (int i = 0; i < NPRIM; i++) {
    if (!(prim_passes[i] & g->passes)) continue;
    dnnl_primitive_desc_t pd = NULL;
    /* the weight gradient's matmul sums over the batch: under fixed sums planned for ctx->sum_threads */
    const int was = synco_dnnl_threads_set(i == P_MM_WEIGHTS ? synco_dnnl_sum_threads(c) : 0);
    synco_status s = prim_pd(c, d, i, x, y, w, &pd);
    if (s == SYNCO_OK) s = synco_dnnl_prim_make(c, &g->prim[i], pd);
    synco_dnnl_threads_set(was);
    if (s == SYNCO_OK && !g->mm_pd && (i == P_MM_FWD || i == P_MM_WEIGHTS)) g->mm_pd = pd;
    else synco_dnnl_pd_free(&pd);
    SYNCO_TRY(s);
  }
  for (int i = 0; i < NMEM; i++) SYNCO_TRY(synco_dnnl_mem(c, &g->mem[i], md_of(d, i, x, y, w)));
  return SYNCO_OK;
}

synco_status synco_conv_gemm_plan(synco_dnnl_ctx *c, const synco_conv_op *op, int passes, synco_dnnl_cmd md_x,
                                  synco_dnnl_cmd md_y, synco_dnnl_cmd md_w, synco_conv_gemm **out) {
  synco_conv_gemm *g = synco_calloc(1, sizeof(*g));
  *out = g;
  if (!g) return SYNCO_ERR_NOMEM;
  g->op = *op;
  g->op.impl = NULL;
  g->passes = passes;
  gemm_mds d = {0};
  synco_status s = mds_make(op, &d);
  if (s == SYNCO_OK) s = plan(c, g, &d, md_x, md_y, md_w);
  mds_free(&d);
  if (s != SYNCO_OK) synco_conv_gemm_free(out);
  return s;
}

synco_status synco_conv_gemm_plan_bytes(synco_dnnl_ctx *c, const synco_conv_op *op, int passes, synco_dnnl_cmd md_x,
                                        synco_dnnl_cmd md_y, synco_dnnl_cmd md_w, synco_plan_bytes *b) {
  gemm_mds d = {0};
  synco_status s = mds_make(op, &d);
  for (int i = 0; i < NPRIM && s == SYNCO_OK; i++) {
    if (!(prim_passes[i] & passes)) continue;
    dnnl_primitive_desc_t pd = NULL;
    s = prim_pd(c, &d, i, md_x, md_y, md_w, &pd);
    if (s == SYNCO_OK) synco_plan_share(b, SYNCO_DNNL_SHARED_SCRATCH, synco_dnnl_scratch_bytes(pd));
    synco_dnnl_pd_free(&pd);
  }
  if (s == SYNCO_OK) b->kept += sizeof(synco_conv_gemm) + NPRIM * SYNCO_DNNL_CODE_BYTES;
  mds_free(&d);
  return s;
}

/* ---- running ------------------------------------------------------------------------------------------------------- */

/* Binds memory i to p. */
static synco_status bind(synco_conv_gemm *g, int i, const void *p) { return synco_dnnl_bind(g->mem[i], p); }

/* Runs primitive i on its memory objects (bound by the caller). */
static synco_status run(synco_dnnl_ctx *c, synco_conv_gemm *g, int i) {
  if (!g->prim[i].p) return synco_fail(SYNCO_ERR_BACKEND, "cpu conv gemm: a pass that was not planned");
  if (prims[i].wei < 0) {
    const dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, g->mem[prims[i].src]}, {DNNL_ARG_DST, g->mem[prims[i].dst]}};
    return synco_dnnl_exec(c, &g->prim[i], 2, a);
  }
  const dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, g->mem[prims[i].src]},
                               {DNNL_ARG_WEIGHTS, g->mem[prims[i].wei]},
                               {DNNL_ARG_DST, g->mem[prims[i].dst]}};
  return synco_dnnl_exec(c, &g->prim[i], 3, a);
}

/* Output pixel p's (image, row, column). */
static void pixel_of(const synco_conv_op *op, long p, long *img, int *oy, int *ox) {
  *img = p / ((long)op->oh * op->ow);
  *oy = (int)(p / op->ow % op->oh);
  *ox = (int)(p % op->ow);
}

/* Row p of col: for each tap, the cin channels of the input pixel it reads (xb is nhwc), zeros in the padding. */
static void im2col(const synco_conv_op *op, uint16_t *col, const uint16_t *xb) {
  const long P = pixels(op), K = taps_cin(op);
  const size_t run = (size_t)op->cin * sizeof(uint16_t);
#pragma omp parallel for schedule(static)
  for (long p = 0; p < P; p++) {
    long img;
    int oy, ox;
    pixel_of(op, p, &img, &oy, &ox);
    for (int ky = 0; ky < op->kh; ky++)
      for (int kx = 0; kx < op->kw; kx++) {
        const int iy = oy * op->stride - op->pad + ky, ix = ox * op->stride - op->pad + kx;
        uint16_t *dst = col + p * K + ((long)ky * op->kw + kx) * op->cin;
        if (iy < 0 || iy >= op->h || ix < 0 || ix >= op->w) memset(dst, 0, run);
        else memcpy(dst, xb + ((img * op->h + iy) * op->w + ix) * op->cin, run);
      }
  }
}

/* The transpose of im2col, summed: input pixel (img, iy, ix) of dxb (nhwc, bf16) = the sum, in tap order, of the
 * dcol entries of the (output pixel, tap) pairs that read it. */
static void col2im(const synco_conv_op *op, uint16_t *dxb, const float *dcol) {
  const long K = taps_cin(op), in_pixels = (long)op->n * op->h * op->w;
#pragma omp parallel
  {
    float sum[MAX_CIN];
#pragma omp for schedule(static)
    for (long q = 0; q < in_pixels; q++) {
      const long img = q / ((long)op->h * op->w);
      const int iy = (int)(q / op->w % op->h), ix = (int)(q % op->w);
      for (int ci = 0; ci < op->cin; ci++) sum[ci] = 0.f;
      for (int ky = 0; ky < op->kh; ky++) {
        const int ty = iy + op->pad - ky, oy = ty / op->stride;
        if (ty < 0 || ty % op->stride || oy >= op->oh) continue;
        for (int kx = 0; kx < op->kw; kx++) {
          const int tx = ix + op->pad - kx, ox = tx / op->stride;
          if (tx < 0 || tx % op->stride || ox >= op->ow) continue;
          const float *src = dcol + ((img * op->oh + oy) * op->ow + ox) * K + ((long)ky * op->kw + kx) * op->cin;
          for (int ci = 0; ci < op->cin; ci++) sum[ci] += src[ci];
        }
      }
      for (int ci = 0; ci < op->cin; ci++) dxb[q * op->cin + ci] = synco_bf16_of(sum[ci]);
    }
  }
}

synco_status synco_conv_gemm_fwd(synco_dnnl_ctx *c, synco_conv_gemm *g, void *y, const void *x, const float *w,
                                 void *ws) {
  const ws_parts o = parts(&g->op, g->passes);
  char *b = ws;
  SYNCO_TRY(bind(g, M_X, x));
  SYNCO_TRY(bind(g, M_XB, b + o.xb));
  SYNCO_TRY(bind(g, M_W, w));
  SYNCO_TRY(bind(g, M_WB4, b + o.wb));
  SYNCO_TRY(bind(g, M_WBT, b + o.wb));
  SYNCO_TRY(bind(g, M_COL, b + o.col));
  SYNCO_TRY(bind(g, M_Y2, b + o.yb));
  SYNCO_TRY(bind(g, M_YB, b + o.yb));
  SYNCO_TRY(bind(g, M_Y, y));
  SYNCO_TRY(run(c, g, P_RX));
  im2col(&g->op, (uint16_t *)(b + o.col), (const uint16_t *)(b + o.xb));
  SYNCO_TRY(run(c, g, P_RW));
  SYNCO_TRY(run(c, g, P_MM_FWD));
  return run(c, g, P_RY);
}

synco_status synco_conv_gemm_bwd_data(synco_dnnl_ctx *c, synco_conv_gemm *g, void *dx, const void *dy, const float *w,
                                      void *ws) {
  const ws_parts o = parts(&g->op, g->passes);
  char *b = ws;
  SYNCO_TRY(bind(g, M_Y, dy));
  SYNCO_TRY(bind(g, M_YB, b + o.yb));
  SYNCO_TRY(bind(g, M_Y2, b + o.yb));
  SYNCO_TRY(bind(g, M_W, w));
  SYNCO_TRY(bind(g, M_WB4, b + o.wb));
  SYNCO_TRY(bind(g, M_WB, b + o.wb));
  SYNCO_TRY(bind(g, M_DCOL, b + o.dcol));
  SYNCO_TRY(bind(g, M_XB, b + o.xb));
  SYNCO_TRY(bind(g, M_X, dx));
  SYNCO_TRY(run(c, g, P_RDY));
  SYNCO_TRY(run(c, g, P_RW));
  SYNCO_TRY(run(c, g, P_MM_DATA));
  col2im(&g->op, (uint16_t *)(b + o.xb), (const float *)(b + o.dcol));
  return run(c, g, P_RDX);
}

synco_status synco_conv_gemm_bwd_weights(synco_dnnl_ctx *c, synco_conv_gemm *g, float *dw, const void *dy,
                                         const void *x, void *ws) {
  const ws_parts o = parts(&g->op, g->passes);
  char *b = ws;
  SYNCO_TRY(bind(g, M_X, x));
  SYNCO_TRY(bind(g, M_XB, b + o.xb));
  SYNCO_TRY(bind(g, M_Y, dy));
  SYNCO_TRY(bind(g, M_YB, b + o.yb));
  SYNCO_TRY(bind(g, M_DYT, b + o.yb));
  SYNCO_TRY(bind(g, M_COL, b + o.col));
  SYNCO_TRY(bind(g, M_ACC, b + o.acc));
  SYNCO_TRY(bind(g, M_ACC4, b + o.acc));
  SYNCO_TRY(bind(g, M_W, dw));
  SYNCO_TRY(run(c, g, P_RX));
  SYNCO_TRY(run(c, g, P_RDY));
  im2col(&g->op, (uint16_t *)(b + o.col), (const uint16_t *)(b + o.xb));
  SYNCO_TRY(run(c, g, P_MM_WEIGHTS));
  return run(c, g, P_RACC);
}

const char *synco_conv_gemm_impl(const synco_conv_gemm *g) {
  const char *s = NULL;
  if (!g || !g->mm_pd || dnnl_primitive_desc_query(g->mm_pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s)
    return "?";
  return s;
}

void synco_conv_gemm_free(synco_conv_gemm **gp) {
  synco_conv_gemm *g = *gp;
  if (!g) return;
  for (int i = 0; i < NPRIM; i++) synco_dnnl_prim_free(&g->prim[i]);
  for (int i = 0; i < NMEM; i++) synco_dnnl_mem_free(&g->mem[i]);
  synco_dnnl_pd_free(&g->mm_pd);
  free(g);
  *gp = NULL;
}
