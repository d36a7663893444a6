/* The linear layer and the gemm op of the oneDNN backend. In fp32 (the default) the layer is the reference backend's
 * code on plain matrices, run on backend/host_gemm.h's SGEMM (oneDNN's, in blocks whose sums do not depend on the
 * thread count), as the gemm op is. Under --precision bf16 (ctx->bf16) it computes as PyTorch's
 * autocast does: x, W and dy are rounded to bf16 (round to nearest even) and multiplied by oneDNN's matmul with
 * fp32 accumulation into fp32 outputs; the bias, db and everything outside the products stay fp32, and dw
 * accumulates into the fp32 master gradient (the matmul's sum post-op).
 *
 * The layer has no plan of its own (the op table's linear ops take only tensors), so the matmul primitives are
 * made on the first call of each shape and thread count and kept in a small cache per backend (a head has two shapes
 * per pass; an evaluation's last, shorter batch adds one; --adapt-threads a second thread count); the bf16 copies live in one buffer grown on first use. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_onednn_util.h"
#include "backend/host_gemm.h"
#include "backend/ref/ref_internal.h"

enum { L_FWD = 0, L_FWD_NO_BIAS = 1, L_BWD_DATA = 2, L_BWD_WEIGHTS = 3 };
#define LIN_CACHE 32

typedef struct {
  int kind, m, n, k; /* dst [m, n] = src [m, k] x wei [k, n] */
  int threads;       /* the threads the primitive was made for (oneDNN splits its work into that many shares) */
  dnnl_primitive_desc_t pd;
  synco_dnnl_prim prim;
  dnnl_memory_t src, wei, bias, dst;
} lin_prim;

struct synco_dnnl_linear {
  lin_prim v[LIN_CACHE];
  int used, next; /* next: the entry a full cache replaces */
  uint16_t *buf;  /* bf16 copies: x | W | dy */
  size_t buf_elems;
};

static void prim_clear(lin_prim *p) {
  synco_dnnl_prim_free(&p->prim);
  synco_dnnl_pd_free(&p->pd);
  dnnl_memory_t *mems[] = {&p->src, &p->wei, &p->bias, &p->dst};
  for (size_t i = 0; i < sizeof(mems) / sizeof(*mems); i++) synco_dnnl_mem_free(mems[i]);
  memset(p, 0, sizeof(*p));
}

void synco_dnnl_linear_free(synco_dnnl_ctx *c) {
  struct synco_dnnl_linear *l = c->lin;
  if (!l) return;
  for (int i = 0; i < l->used; i++) prim_clear(&l->v[i]);
  free(l->buf);
  free(l);
  c->lin = NULL;
}

void synco_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) dst[i] = synco_bf16_of(src[i]);
}

/* A 2-D memory descriptor: rows x cols, row-major (trans 0) or its transpose read in place (trans 1). */
static synco_status md2(synco_dnnl_md *m, int rows, int cols, dnnl_data_type_t dt, int trans) {
  const dnnl_dims_t dims = {rows, cols};
  const dnnl_dims_t strides = {trans ? 1 : cols, trans ? rows : 1};
#if DNNL_VERSION_MAJOR >= 3
  synco_dnnl_md_free(m);
  SYNCO_DNNL(dnnl_memory_desc_create_with_strides(&m->h, 2, dims, dt, strides));
#else
  SYNCO_DNNL(dnnl_memory_desc_init_by_strides(&m->d, 2, dims, dt, strides));
#endif
  return SYNCO_OK;
}

/* Makes the matmul of one pass: fwd y[m,n] = x[m,k] Wᵀ (+ b); bwd data dx[m,n] = dy[m,k] W; bwd weights
 * dw[m,n] += dyᵀ[m,k] x. */
static synco_status prim_make(synco_dnnl_ctx *c, lin_prim *p) {
  synco_dnnl_md s = {0}, w = {0}, b = {0}, d = {0};
  synco_status st = md2(&s, p->m, p->k, dnnl_bf16, p->kind == L_BWD_WEIGHTS);
  const int fwd = p->kind == L_FWD || p->kind == L_FWD_NO_BIAS;
  if (st == SYNCO_OK) st = md2(&w, p->k, p->n, dnnl_bf16, fwd);
  if (st == SYNCO_OK) st = md2(&b, 1, p->n, dnnl_f32, 0);
  if (st == SYNCO_OK) st = md2(&d, p->m, p->n, dnnl_f32, 0);
  const_dnnl_primitive_attr_t attr = p->kind == L_BWD_WEIGHTS ? c->attr_sum : c->attr;
  const synco_dnnl_cmd bias = p->kind == L_FWD ? SYNCO_DNNL_MD(b) : NULL;
  dnnl_status_t ds = dnnl_success;
  const int was = synco_dnnl_threads_set(p->threads); /* oneDNN splits the work for this count */
  if (st == SYNCO_OK) {
#if DNNL_VERSION_MAJOR >= 3
    ds = dnnl_matmul_primitive_desc_create(&p->pd, c->eng, SYNCO_DNNL_MD(s), SYNCO_DNNL_MD(w), bias, SYNCO_DNNL_MD(d),
                                           attr);
#else
    dnnl_matmul_desc_t md;
    ds = dnnl_matmul_desc_init(&md, SYNCO_DNNL_MD(s), SYNCO_DNNL_MD(w), bias, SYNCO_DNNL_MD(d));
    if (ds == dnnl_success) ds = dnnl_primitive_desc_create(&p->pd, &md, attr, c->eng, NULL);
#endif
    if (ds != dnnl_success)
      st = synco_fail(SYNCO_ERR_BACKEND, "cpu linear: no bf16 matmul for [%d x %d] x [%d x %d]: %s", p->m, p->k,
                      p->k, p->n, dnnl_status2str(ds));
  }
  if (st == SYNCO_OK) st = synco_dnnl_prim_make(c, &p->prim, p->pd);
  synco_dnnl_threads_set(was);
  if (st == SYNCO_OK) st = synco_dnnl_mem(c, &p->src, SYNCO_DNNL_MD(s));
  if (st == SYNCO_OK) st = synco_dnnl_mem(c, &p->wei, SYNCO_DNNL_MD(w));
  if (st == SYNCO_OK && bias) st = synco_dnnl_mem(c, &p->bias, bias);
  if (st == SYNCO_OK) st = synco_dnnl_mem(c, &p->dst, SYNCO_DNNL_MD(d));
  synco_dnnl_md *mds[] = {&s, &w, &b, &d};
  for (size_t i = 0; i < sizeof(mds) / sizeof(*mds); i++) synco_dnnl_md_free(mds[i]);
  return st;
}

static synco_status linear_state(synco_dnnl_ctx *c, size_t elems, struct synco_dnnl_linear **out) {
  if (!c->lin) {
    c->lin = synco_calloc(1, sizeof(struct synco_dnnl_linear));
    if (!c->lin) return SYNCO_ERR_NOMEM;
  }
  struct synco_dnnl_linear *l = c->lin;
  if (elems > l->buf_elems) {
    uint16_t *p = synco_aligned_alloc(elems * sizeof(uint16_t));
    if (!p) return SYNCO_ERR_NOMEM;
    free(l->buf);
    l->buf = p;
    l->buf_elems = elems;
  }
  *out = l;
  return SYNCO_OK;
}

/* The cached matmul of one pass and shape, made on first use. */
static synco_status get_prim(synco_dnnl_ctx *c, struct synco_dnnl_linear *l, int kind, int m, int n, int k,
                             lin_prim **out) {
  /* backward weights sums over the batch: under fixed sums planned for ctx->sum_threads */
  const int threads = kind == L_BWD_WEIGHTS && synco_dnnl_sum_threads(c) ? synco_dnnl_sum_threads(c) : omp_get_max_threads();
  for (int i = 0; i < l->used; i++) {
    lin_prim *p = &l->v[i];
    if (p->kind == kind && p->m == m && p->n == n && p->k == k && p->threads == threads) {
      *out = p;
      return SYNCO_OK;
    }
  }
  lin_prim *p = l->used < LIN_CACHE ? &l->v[l->used++] : &l->v[l->next++ % LIN_CACHE];
  prim_clear(p);
  *p = (lin_prim){.kind = kind, .m = m, .n = n, .k = k, .threads = threads};
  const synco_status s = prim_make(c, p);
  if (s != SYNCO_OK) {
    prim_clear(p);
    p->kind = -1;
    return s;
  }
  static const char *const pass[] = {"fwd", "fwd", "bwd_data", "bwd_weights"};
  const char *impl = NULL;
  if (dnnl_primitive_desc_query(p->pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl) impl = "?";
  char e[160];
  snprintf(e, sizeof e, "{\"linear\":\"[%d x %d] x [%d x %d] bf16\",\"%s\":\"%s\"}", m, k, k, n, pass[kind], impl);
  synco_dnnl_log_kernel(c, e);
  *out = p;
  return SYNCO_OK;
}

static synco_status run(synco_dnnl_ctx *c, lin_prim *p, const void *src, const void *wei, const float *bias,
                        float *dst) {
  SYNCO_TRY(synco_dnnl_bind(p->src, src));
  SYNCO_TRY(synco_dnnl_bind(p->wei, wei));
  SYNCO_TRY(synco_dnnl_bind(p->dst, dst));
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, p->src}, {DNNL_ARG_WEIGHTS, p->wei}, {DNNL_ARG_DST, p->dst}};
  int na = 3;
  if (bias) {
    SYNCO_TRY(synco_dnnl_bind(p->bias, bias));
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias};
  }
  return synco_dnnl_exec(c, &p->prim, na, a);
}

static synco_status check_plain(const synco_tensor *t, const char *op, const char *what, int n, int c) {
  return synco_tensor_check(t, "cpu", op, what, n, c, 1, 1, SYNCO_LAYOUT_PLAIN, 1);
}

synco_status synco_dnnl_linear_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                                   const float *b) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  if (!c->bf16) return synco_ref_linear_fwd_on(synco_host_sgemm, y, x, w, b);
  if (!x || !y || !w) return synco_fail(SYNCO_ERR_ARG, "cpu linear_fwd: a tensor or the weights are missing");
  SYNCO_TRY(check_plain(x, "linear_fwd", "x", x->n, x->c));
  SYNCO_TRY(check_plain(y, "linear_fwd", "y", x->n, y->c));
  const int n = x->n, in = x->c, out = y->c;
  struct synco_dnnl_linear *l;
  SYNCO_TRY(linear_state(c, (size_t)n * in + (size_t)out * in, &l));
  uint16_t *xb = l->buf, *wb = l->buf + (size_t)n * in;
  synco_f32_to_bf16(xb, x->data, (size_t)n * in);
  synco_f32_to_bf16(wb, w, (size_t)out * in);
  lin_prim *p;
  SYNCO_TRY(get_prim(c, l, b ? L_FWD : L_FWD_NO_BIAS, n, out, in, &p));
  return run(c, p, xb, wb, b, y->data);
}

synco_status synco_dnnl_linear_bwd(synco_backend *be, synco_tensor *dx, float *dw, float *db, const synco_tensor *dy,
                                   const synco_tensor *x, const float *w) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  if (!c->bf16) return synco_ref_linear_bwd_on(synco_host_sgemm, dx, dw, db, dy, x, w);
  if (!x || !dy) return synco_fail(SYNCO_ERR_ARG, "cpu linear_bwd: a tensor is missing");
  SYNCO_TRY(check_plain(x, "linear_bwd", "x", x->n, x->c));
  SYNCO_TRY(check_plain(dy, "linear_bwd", "dy", x->n, dy->c));
  const int n = x->n, in = x->c, out = dy->c;
  struct synco_dnnl_linear *l;
  SYNCO_TRY(linear_state(c, (size_t)n * in + (size_t)out * in + (size_t)n * out, &l));
  uint16_t *xb = l->buf, *wb = l->buf + (size_t)n * in, *dyb = wb + (size_t)out * in;
  synco_f32_to_bf16(dyb, dy->data, (size_t)n * out);
  lin_prim *p;
  if (dx) {
    SYNCO_TRY(check_plain(dx, "linear_bwd", "dx", n, in));
    if (!w) return synco_fail(SYNCO_ERR_ARG, "cpu linear_bwd: weights are missing (needed for dx)");
    synco_f32_to_bf16(wb, w, (size_t)out * in);
    SYNCO_TRY(get_prim(c, l, L_BWD_DATA, n, in, out, &p));
    SYNCO_TRY(run(c, p, dyb, wb, NULL, dx->data));
  }
  if (dw) {
    synco_f32_to_bf16(xb, x->data, (size_t)n * in);
    SYNCO_TRY(get_prim(c, l, L_BWD_WEIGHTS, out, in, n, &p));
    SYNCO_TRY(run(c, p, dyb, xb, NULL, dw));
  }
  return db ? synco_ref_linear_bwd(be, NULL, NULL, db, dy, x, NULL) : SYNCO_OK; /* db += Σ dy, fp32 */
}

synco_status synco_dnnl_gemm(synco_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  (void)be;
  return synco_host_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
