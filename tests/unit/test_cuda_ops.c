/* Every op of the CUDA backend against the reference backend on random data (atol + rtol·|ref|), in strict fp32
 * (SYNCO_CUDA_TF32 unset for the test): GEMM in its four transposes with leading dimensions wider than the
 * matrices, SGD (first step, momentum, none) and EMA, enqueue with a wrap, the row gather from device and from
 * host memory and the scatter, the InfoNCE rows forward and backward, SynCo's draws (bit for bit), hard sets (the
 * same sets from the same logits), synthetic logits and their backward, convolutions (3x3/1, 1x1/2, 7x7/2 and the
 * accumulation of bwd_weights), batch norm with and without Split-BN and ReLU (train, eval, backward), max pooling,
 * ReLU, add, average pooling, linear and L2 normalization; then under --precision bf16 the convolutions and linear
 * layers against the reference on bf16-rounded inputs (test_bf16 states its tolerances). Skipped (exit 77) in a build without CUDA or on a
 * machine without a GPU. Tolerances: 1e-5 + 1e-4·|ref| where both sides sum in the same order or in double,
 * 1e-4 + 1e-3·|ref| for cuBLAS / cuDNN reductions and the synthetic logits' float dot products. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "kernels/bf16_kernel.h"
#include "ssl/negatives.h"
#include "tensor/backend.h"
#include "test_util.h"
#ifdef SYNCO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

#ifdef SYNCO_HAVE_CUDA
static synco_backend *gpu, *ref;

static void *up(const void *h, size_t bytes) {
  void *d = gpu->alloc(gpu, bytes);
  CHECK(d != NULL);
  if (d && h) CHECK_OK(gpu->copy(gpu, d, h, bytes, SYNCO_COPY_H2D));
  return d;
}

static void *down(const void *d, size_t bytes) { /* a host copy of device memory (free it) */
  void *h = malloc(bytes ? bytes : 1);
  CHECK_OK(gpu->copy(gpu, h, d, bytes, SYNCO_COPY_D2H));
  return h;
}

static float *rnd(size_t n, unsigned seed, float lo, float hi) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  synco_test_fill(x, n, seed, lo, hi);
  return x;
}

static synco_tensor tens(int n, int c, int h, int w, void *data) {
  synco_tensor t = {n, c, h, w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, data};
  return t;
}

/* got (device) against ref (host). */
static void cmp_dev(const char *what, const float *got_dev, const float *ref_host, size_t n, double atol, double rtol) {
  float *g = down(got_dev, n * sizeof(float));
  CHECK_CLOSE(what, g, ref_host, n, atol, rtol);
  free(g);
}

/* Runs without a GPU too (tests/e2e/cuda_build.sh runs this test in the CUDA build on the CPU machine). */
static void test_names(void) {
  int d = -2;
  CHECK(synco_cuda_device_name("cuda", &d) && d == 0);
  CHECK(synco_cuda_device_name("cuda:3", &d) && d == 3);
  CHECK(synco_cuda_device_name("cuda:", &d) && d == -1);
  CHECK(synco_cuda_device_name("cuda:x", &d) && d == -1);
  CHECK(synco_cuda_device_name("cuda:-1", &d) && d == -1);
  CHECK(!synco_cuda_device_name("onednn", &d) && d == -1);
  synco_backend *be = NULL;
  CHECK(synco_backend_create("cuda:x", &be) == SYNCO_ERR_ARG && !be);
  char buf[1024] = "";
  synco_cuda_describe(buf, sizeof buf);
  CHECK(strstr(buf, "cuDNN 9.") != NULL);
  if (synco_cuda_device_count() == 0) {
    CHECK(synco_backend_create("cuda", &be) == SYNCO_ERR_UNSUPPORTED && !be);
  } else {
    CHECK(synco_backend_create("cuda:999", &be) == SYNCO_ERR_ARG && !be);
  }
}

/* Uploads from pageable memory go through a ring of pinned buffers: more uploads than the ring has slots, each from
 * the same host buffer rewritten right after its copy returns, and sizes that grow, must each land intact. */
static void test_uploads(void) {
  enum { N = 10, MAXN = 1 << 16 };
  float *h = malloc(MAXN * sizeof *h), *d[N];
  size_t n[N];
  for (int i = 0; i < N; i++) {
    n[i] = (size_t)(i % 3 + 1) * (MAXN / 3) + (size_t)i;
    d[i] = up(NULL, n[i] * sizeof(float));
    for (size_t j = 0; j < n[i]; j++) h[j] = (float)(i * 100000 + (int)j);
    CHECK_OK(gpu->copy(gpu, d[i], h, n[i] * sizeof(float), SYNCO_COPY_H2D));
    for (size_t j = 0; j < n[i]; j++) h[j] = -1.f; /* reused at once */
  }
  for (int i = 0; i < N; i++) {
    float *g = down(d[i], n[i] * sizeof(float));
    int ok = 1;
    for (size_t j = 0; j < n[i]; j++) ok &= g[j] == (float)(i * 100000 + (int)j);
    CHECK(ok);
    free(g);
    gpu->free(gpu, d[i]);
  }
  free(h);
}

static void test_gemm(void) {
  const int m = 37, n = 29, k = 53, pad = 3;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
      const int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
      float *a = rnd((size_t)ar * lda, 1, -1, 1), *b = rnd((size_t)br * ldb, 2, -1, 1), *c = rnd((size_t)m * ldc, 3, -1, 1);
      float *da = up(a, (size_t)ar * lda * 4), *db = up(b, (size_t)br * ldb * 4), *dc = up(c, (size_t)m * ldc * 4);
      CHECK_OK(ref->gemm(ref, ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, c, ldc));
      CHECK_OK(gpu->gemm(gpu, ta, tb, m, n, k, 0.7f, da, lda, db, ldb, 0.3f, dc, ldc));
      char name[64];
      snprintf(name, sizeof name, "gemm ta %d tb %d", ta, tb);
      cmp_dev(name, dc, c, (size_t)m * ldc, 1e-4, 1e-3);
      gpu->free(gpu, da), gpu->free(gpu, db), gpu->free(gpu, dc);
      free(a), free(b), free(c);
    }
}

static void test_sgd_ema(void) {
  const size_t n = 100003;
  for (int mode = 0; mode < 3; mode++) { /* momentum 0; first step; later step */
    float *p = rnd(n, 10, -1, 1), *buf = rnd(n, 11, -1, 1), *g = rnd(n, 12, -1, 1);
    float *dp = up(p, n * 4), *dbuf = up(buf, n * 4), *dg = up(g, n * 4);
    const float mom = mode == 0 ? 0.f : 0.9f;
    CHECK_OK(ref->sgd(ref, p, buf, g, n, 0.05f, mom, 1e-4f, mode == 1));
    CHECK_OK(gpu->sgd(gpu, dp, dbuf, dg, n, 0.05f, mom, 1e-4f, mode == 1));
    cmp_dev("sgd params", dp, p, n, 0, 0); /* the same element kernel: the same bits */
    cmp_dev("sgd momentum", dbuf, buf, n, 0, 0);
    CHECK_OK(ref->ema(ref, p, g, n, 0.99f));
    CHECK_OK(gpu->ema(gpu, dp, dg, n, 0.99f));
    cmp_dev("ema", dp, p, n, 0, 0);
    gpu->free(gpu, dp), gpu->free(gpu, dbuf), gpu->free(gpu, dg);
    free(p), free(buf), free(g);
  }
}

static void test_queue_permute(void) {
  const int K = 50, dim = 7, n = 20;
  float *q = rnd((size_t)K * dim, 20, -1, 1), *rows = rnd((size_t)n * dim, 21, -1, 1);
  float *dq = up(q, (size_t)K * dim * 4), *drows = up(rows, (size_t)n * dim * 4);
  int64_t pa = 41, pb;
  int64_t *dp = up(&pa, sizeof pa); /* the pointer is device memory */
  CHECK_OK(ref->enqueue(ref, q, K, dim, &pa, rows, n));
  CHECK_OK(gpu->enqueue(gpu, dq, K, dim, dp, drows, n));
  CHECK_OK(gpu->copy(gpu, &pb, dp, sizeof pb, SYNCO_COPY_D2H));
  CHECK(pa == pb && pa == (41 + n) % K);
  cmp_dev("enqueue (wraps)", dq, q, (size_t)K * dim, 0, 0);
  gpu->free(gpu, dp);
  uint32_t idx[20];
  for (int i = 0; i < n; i++) idx[i] = (uint32_t)((i * 7 + 3) % n);
  uint32_t *didx = up(idx, sizeof idx);
  float *out = malloc((size_t)n * dim * 4), *dout = up(NULL, (size_t)n * dim * 4);
  for (int scatter = 0; scatter < 2; scatter++)
    for (int from_host = 0; from_host < 2; from_host++) {
      CHECK_OK(ref->permute_rows(ref, out, rows, idx, n, dim, scatter));
      CHECK_OK(gpu->permute_rows(gpu, dout, from_host ? rows : drows, didx, n, dim, scatter));
      cmp_dev(scatter ? "permute_rows scatter" : from_host ? "permute_rows gather from host" : "permute_rows gather",
              dout, out, (size_t)n * dim, 0, 0);
    }
  gpu->free(gpu, dq), gpu->free(gpu, drows), gpu->free(gpu, didx), gpu->free(gpu, dout);
  free(q), free(rows), free(out);
}

static void test_infonce(void) {
  const int B = 9, K = 300, S = 20, dim = 16, ncol = 1 + K + S, ld = ncol + 5;
  float *L = rnd((size_t)B * ld, 30, -1, 1), *q = rnd((size_t)B * dim, 31, -0.3f, 0.3f), *k = rnd((size_t)B * dim, 32, -0.3f, 0.3f);
  float *dL = up(L, (size_t)B * ld * 4), *dqv = up(q, (size_t)B * dim * 4), *dk = up(k, (size_t)B * dim * 4);
  double loss[18]; /* each row's loss, then each row's loss over the positive and the queue alone */
  int hits[18];
  double *dloss = up(NULL, sizeof loss);
  int *dhits = up(NULL, sizeof hits);
  CHECK_OK(ref->infonce_fwd(ref, L, ld, loss, hits, q, k, B, K, ncol, dim, 0.2f));
  CHECK_OK(gpu->infonce_fwd(gpu, dL, ld, dloss, dhits, dqv, dk, B, K, ncol, dim, 0.2f));
  double *gl = down(dloss, sizeof loss);
  int *gh = down(dhits, sizeof hits);
  for (int i = 0; i < 2 * B; i++) CHECK(fabs(gl[i] - loss[i]) <= 1e-5 + 1e-5 * fabs(loss[i]));
  CHECK(!memcmp(gh, hits, sizeof hits));
  cmp_dev("infonce softmax rows", dL, L, (size_t)B * ld, 1e-6, 1e-4);
  float *dq = malloc((size_t)B * dim * 4), *ddq = up(NULL, (size_t)B * dim * 4);
  CHECK_OK(ref->infonce_bwd(ref, L, ld, dq, k, B, K, ncol, dim, 0.2f));
  CHECK_OK(gpu->infonce_bwd(gpu, dL, ld, ddq, dk, B, K, ncol, dim, 0.2f));
  cmp_dev("infonce dL/dlogits", dL, L, (size_t)B * ld, 1e-6, 1e-4);
  cmp_dev("infonce dq (positive part)", ddq, dq, (size_t)B * dim, 1e-6, 1e-4);
  free(gl), free(gh), free(L), free(q), free(k), free(dq);
  gpu->free(gpu, dL), gpu->free(gpu, dqv), gpu->free(gpu, dk), gpu->free(gpu, dloss), gpu->free(gpu, dhits);
  gpu->free(gpu, ddq);
}

/* The loss record: two calls added on the device equal the reference's bit for bit (one thread, row order); a
 * non-finite loss in the second keeps its tag. */
static void test_loss_record(void) {
  enum { B = 7 };
  double loss[2 * B], rec[SYNCO_REC_LEN] = {0};
  int hits[2 * B];
  for (int i = 0; i < 2 * B; i++) {
    loss[i] = 0.37 * i + 1.0 / (i + 3);
    hits[i] = (i * 5) % 3 == 0;
  }
  double *dloss = up(loss, sizeof loss), *drec = up(NULL, sizeof rec);
  int *dhits = up(hits, sizeof hits);
  CHECK_OK(gpu->memset(gpu, drec, 0, sizeof rec));
  CHECK_OK(ref->loss_record(ref, rec, loss, hits, B, 3.0));
  CHECK_OK(gpu->loss_record(gpu, drec, dloss, dhits, B, 3.0));
  loss[2] = NAN;
  CHECK_OK(gpu->copy(gpu, dloss, loss, sizeof loss, SYNCO_COPY_H2D));
  CHECK_OK(ref->loss_record(ref, rec, loss, hits, B, 4.0));
  CHECK_OK(gpu->loss_record(gpu, drec, dloss, dhits, B, 4.0));
  double *g = down(drec, sizeof rec);
  CHECK(rec[SYNCO_REC_BAD] == 1.0 && rec[SYNCO_REC_BAD_TAG] == 4.0 && rec[SYNCO_REC_CALLS] == 2.0);
  for (int i = 0; i < SYNCO_REC_LEN; i++)
    if (!(g[i] == rec[i] || (isnan(g[i]) && isnan(rec[i])))) {
      fprintf(stderr, "loss record [%d]: gpu %.17g, ref %.17g\n", i, g[i], rec[i]);
      CHECK(0);
    }
  free(g);
  gpu->free(gpu, dloss), gpu->free(gpu, drec), gpu->free(gpu, dhits);
}

/* A classifier's cross-entropy: dz and the record against the reference (libm's exp and log against CUDA's). */
static void test_xent(void) {
  enum { n = 37, C = 11 };
  float *z = rnd((size_t)n * C, 40, -4, 4), dz[n * C];
  int y[n];
  for (int i = 0; i < n; i++) y[i] = (i * 7) % C;
  double rec[SYNCO_XREC_LEN] = {0};
  float *dzd = up(NULL, sizeof dz), *zd = up(z, (size_t)n * C * sizeof(float));
  int *yd = up(y, sizeof y);
  double *recd = up(NULL, sizeof rec);
  CHECK_OK(gpu->memset(gpu, recd, 0, sizeof rec));
  CHECK_OK(ref->xent(ref, dz, z, y, n, C, 1.0f / n, rec, 2.0));
  CHECK_OK(gpu->xent(gpu, dzd, zd, yd, n, C, 1.0f / n, recd, 2.0));
  cmp_dev("xent dz", dzd, dz, (size_t)n * C, 1e-7, 1e-5);
  double *g = down(recd, sizeof rec);
  CHECK(fabs(g[SYNCO_XREC_LOSS] - rec[SYNCO_XREC_LOSS]) <= 1e-6 * fabs(rec[SYNCO_XREC_LOSS]));
  CHECK(g[SYNCO_XREC_HITS] == rec[SYNCO_XREC_HITS] && g[SYNCO_XREC_ROWS] == n && g[SYNCO_XREC_CALLS] == 1.0 &&
        g[SYNCO_XREC_BAD] == 0.0);
  free(g), free(z);
  gpu->free(gpu, dzd), gpu->free(gpu, zd), gpu->free(gpu, yd), gpu->free(gpu, recd);
}

static void test_negatives(void) {
  synco_negatives_config cfg = {.n_hard = 96, .n = {24, 24, 24, 8, 8, 8}, .sigma = 0.05f, .delta = 0.02f, .eta = 0.03f};
  const int B = 12, K = 640, dim = 33, S = synco_negatives_total(&cfg);
  const float T = 0.2f;
  synco_negatives_draws a, b;
  CHECK_OK(synco_negatives_init(&a, ref, &cfg, B, dim, K));
  CHECK_OK(synco_negatives_init(&b, gpu, &cfg, B, dim, K));
  CHECK_OK(synco_negatives_draw_at(&a, &cfg, 77, 5, 1000));
  CHECK_OK(synco_negatives_draw_at(&b, &cfg, 77, 5, 1000));
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) {
    const size_t n = (size_t)B * cfg.n[t] * (t == 2 ? 2 : 1);
    int32_t *p = down(b.pos[t], n * 4);
    CHECK(!memcmp(p, a.pos[t], n * 4));
    free(p);
    if (t < 3) cmp_dev("draw coefficients", b.coef[t], a.coef[t], (size_t)B * cfg.n[t], 0, 0);
  }
  cmp_dev("draw noise (bit for bit)", b.noise, a.noise, (size_t)B * cfg.n[3] * dim, 0, 0);
  /* logits from the same q·Qᵀ */
  float *q = rnd((size_t)B * dim, 40, -1, 1), *queue = rnd((size_t)K * dim, 41, -1, 1), *l = malloc((size_t)B * K * 4);
  CHECK_OK(ref->gemm(ref, 0, 1, B, K, dim, 1.f, q, dim, queue, dim, 0.f, l, K));
  float *dqv = up(q, (size_t)B * dim * 4), *dqueue = up(queue, (size_t)K * dim * 4), *dl = up(l, (size_t)B * K * 4);
  float *syn = malloc((size_t)B * S * 4), *dsyn = up(NULL, (size_t)B * S * 4);
  CHECK_OK(synco_negatives_logits(&a, syn, S, l, K, q, queue, T));
  CHECK_OK(synco_negatives_logits(&b, dsyn, S, dl, K, dqv, dqueue, T));
  int32_t *h = down(b.hard, (size_t)B * cfg.n_hard * 4);
  CHECK(!memcmp(h, a.hard, (size_t)B * cfg.n_hard * 4));
  free(h);
  cmp_dev("synthetic logits", dsyn, syn, (size_t)B * S, 1e-4, 1e-3);
  cmp_dev("synthetic inverse norms", b.inv_norm, a.inv_norm, (size_t)B * S, 1e-5, 1e-4);
  /* backward */
  float *g = rnd((size_t)B * S, 42, -0.1f, 0.1f), *dq = rnd((size_t)B * dim, 43, -1, 1), *gr = rnd((size_t)B * K, 44, -1, 1);
  float *dg = up(g, (size_t)B * S * 4), *ddq = up(dq, (size_t)B * dim * 4), *dgr = up(gr, (size_t)B * K * 4);
  CHECK_OK(synco_negatives_backward(&a, dq, gr, K, g, S, q, T));
  CHECK_OK(synco_negatives_backward(&b, ddq, dgr, K, dg, S, dqv, T));
  cmp_dev("negatives backward dq", ddq, dq, (size_t)B * dim, 1e-5, 1e-4);
  cmp_dev("negatives backward queue-logit gradient", dgr, gr, (size_t)B * K, 1e-5, 1e-4);
  free(q), free(queue), free(l), free(syn), free(g), free(dq), free(gr);
  gpu->free(gpu, dqv), gpu->free(gpu, dqueue), gpu->free(gpu, dl), gpu->free(gpu, dsyn), gpu->free(gpu, dg);
  gpu->free(gpu, ddq), gpu->free(gpu, dgr);
  synco_negatives_free(&a);
  synco_negatives_free(&b);
}

static void test_conv(void) {
  const int shapes[][7] = {/* n, cin, h, cout, k, stride, pad */ {4, 8, 12, 16, 3, 1, 1}, {3, 16, 9, 8, 1, 2, 0},
                           {2, 3, 20, 8, 7, 2, 3}};
  for (int s = 0; s < 3; s++) {
    synco_conv_op oa = {.n = shapes[s][0], .cin = shapes[s][1], .h = shapes[s][2], .w = shapes[s][2],
                        .cout = shapes[s][3], .kh = shapes[s][4], .kw = shapes[s][4], .stride = shapes[s][5],
                        .pad = shapes[s][6], .dtype = SYNCO_F32};
    synco_conv_op ob = oa;
    CHECK_OK(ref->conv_plan(ref, &oa));
    CHECK_OK(gpu->conv_plan(gpu, &ob));
    const size_t nx = (size_t)oa.n * oa.cin * oa.h * oa.w, ny = (size_t)oa.n * oa.cout * oa.oh * oa.ow,
                 nw = (size_t)oa.cout * oa.cin * oa.kh * oa.kw;
    float *x = rnd(nx, 50 + s, -1, 1), *w = rnd(nw, 60 + s, -0.3f, 0.3f), *y = malloc(ny * 4), *dy = rnd(ny, 70 + s, -1, 1);
    float *dx = malloc(nx * 4), *dw = rnd(nw, 80 + s, -1, 1);
    float *gx = up(x, nx * 4), *gw = up(w, nw * 4), *gy = up(NULL, ny * 4), *gdy = up(dy, ny * 4), *gdx = up(NULL, nx * 4);
    float *gdw = up(dw, nw * 4);
    synco_tensor tx = tens(oa.n, oa.cin, oa.h, oa.w, x), ty = tens(oa.n, oa.cout, oa.oh, oa.ow, y);
    synco_tensor tdy = tens(oa.n, oa.cout, oa.oh, oa.ow, dy), tdx = tens(oa.n, oa.cin, oa.h, oa.w, dx);
    synco_tensor ux = tens(oa.n, oa.cin, oa.h, oa.w, gx), uy = tens(oa.n, oa.cout, oa.oh, oa.ow, gy);
    synco_tensor udy = tens(oa.n, oa.cout, oa.oh, oa.ow, gdy), udx = tens(oa.n, oa.cin, oa.h, oa.w, gdx);
    CHECK_OK(ref->conv_fwd(ref, &oa, &ty, &tx, w));
    CHECK_OK(gpu->conv_fwd(gpu, &ob, &uy, &ux, gw));
    cmp_dev("conv fwd", gy, y, ny, 1e-4, 1e-3);
    CHECK_OK(ref->conv_bwd_data(ref, &oa, &tdx, &tdy, w));
    CHECK_OK(gpu->conv_bwd_data(gpu, &ob, &udx, &udy, gw));
    cmp_dev("conv bwd_data", gdx, dx, nx, 1e-4, 1e-3);
    CHECK_OK(ref->conv_bwd_weights(ref, &oa, dw, &tdy, &tx));
    CHECK_OK(gpu->conv_bwd_weights(gpu, &ob, gdw, &udy, &ux));
    cmp_dev("conv bwd_weights (accumulated)", gdw, dw, nw, 1e-3, 1e-3);
    if (s == 2) { /* the kernel list names every shape planned, with cuDNN's algorithms */
      char list[8192];
      const size_t want = gpu->kernels(gpu, NULL, 0);
      CHECK(want > 0 && want < sizeof list && gpu->kernels(gpu, list, sizeof list) == want);
      CHECK(list[0] == '[' && list[want - 1] == ']' && strstr(list, "\"fwd\":\"cudnn ") != NULL);
      CHECK(strstr(list, "\"conv\":\"3x20x20->8x10x10 k7 s2 p3\"") != NULL);
    }
    ref->conv_release(ref, &oa);
    gpu->conv_release(gpu, &ob);
    free(x), free(w), free(y), free(dy), free(dx), free(dw);
    gpu->free(gpu, gx), gpu->free(gpu, gw), gpu->free(gpu, gy), gpu->free(gpu, gdy), gpu->free(gpu, gdx);
    gpu->free(gpu, gdw);
  }
}

static void test_bn(int groups, int relu) {
  synco_bn_op oa = {.n = 8, .c = 6, .h = 5, .w = 7, .groups = groups, .relu = relu, .eps = 1e-5f, .momentum = 0.1f,
                    .dtype = SYNCO_F32};
  synco_bn_op ob = oa;
  CHECK_OK(ref->bn_plan(ref, &oa));
  CHECK_OK(gpu->bn_plan(gpu, &ob));
  const int C = oa.c, G = groups;
  const size_t n = (size_t)oa.n * C * oa.h * oa.w;
  float *x = rnd(n, 90, -2, 3), *gam = rnd(C, 91, 0.5f, 1.5f), *bet = rnd(C, 92, -0.5f, 0.5f);
  float *rm = rnd(C, 93, -0.1f, 0.1f), *rv = rnd(C, 94, 0.5f, 1.5f), *y = malloc(n * 4), *sm = malloc(G * C * 4),
        *si = malloc(G * C * 4);
  float *gx = up(x, n * 4), *ggam = up(gam, C * 4), *gbet = up(bet, C * 4), *grm = up(rm, C * 4), *grv = up(rv, C * 4);
  float *gy = up(NULL, n * 4), *gsm = up(NULL, G * C * 4), *gsi = up(NULL, G * C * 4);
  synco_tensor tx = tens(oa.n, C, oa.h, oa.w, x), ty = tens(oa.n, C, oa.h, oa.w, y);
  synco_tensor ux = tens(oa.n, C, oa.h, oa.w, gx), uy = tens(oa.n, C, oa.h, oa.w, gy);
  CHECK_OK(ref->bn_fwd_train(ref, &oa, &ty, sm, si, rm, rv, &tx, gam, bet));
  CHECK_OK(gpu->bn_fwd_train(gpu, &ob, &uy, gsm, gsi, grm, grv, &ux, ggam, gbet));
  cmp_dev("bn fwd_train y", gy, y, n, 1e-5, 1e-4);
  cmp_dev("bn saved mean", gsm, sm, G * C, 1e-6, 1e-5);
  cmp_dev("bn saved invstd", gsi, si, G * C, 1e-6, 1e-5);
  cmp_dev("bn running mean", grm, rm, C, 1e-6, 1e-5);
  cmp_dev("bn running var", grv, rv, C, 1e-6, 1e-5);
  float *dy = rnd(n, 95, -1, 1), *dx = malloc(n * 4), *dga = rnd(C, 96, -1, 1), *dbe = rnd(C, 97, -1, 1);
  float *gdy = up(dy, n * 4), *gdx = up(NULL, n * 4), *gdga = up(dga, C * 4), *gdbe = up(dbe, C * 4);
  synco_tensor tdy = tens(oa.n, C, oa.h, oa.w, dy), tdx = tens(oa.n, C, oa.h, oa.w, dx);
  synco_tensor udy = tens(oa.n, C, oa.h, oa.w, gdy), udx = tens(oa.n, C, oa.h, oa.w, gdx);
  CHECK_OK(ref->bn_bwd(ref, &oa, &tdx, dga, dbe, &tdy, &ty, &tx, gam, sm, si));
  CHECK_OK(gpu->bn_bwd(gpu, &ob, &udx, gdga, gdbe, &udy, &uy, &ux, ggam, gsm, gsi));
  cmp_dev("bn bwd dx", gdx, dx, n, 1e-5, 1e-4);
  cmp_dev("bn bwd dgamma", gdga, dga, C, 1e-5, 1e-4);
  cmp_dev("bn bwd dbeta", gdbe, dbe, C, 1e-5, 1e-4);
  CHECK_OK(ref->bn_fwd_eval(ref, &oa, &ty, &tx, gam, bet, rm, rv));
  CHECK_OK(gpu->bn_fwd_eval(gpu, &ob, &uy, &ux, ggam, gbet, grm, grv));
  cmp_dev("bn fwd_eval", gy, y, n, 1e-5, 1e-4);
  ref->bn_release(ref, &oa);
  gpu->bn_release(gpu, &ob);
  free(x), free(gam), free(bet), free(rm), free(rv), free(y), free(sm), free(si), free(dy), free(dx), free(dga), free(dbe);
  float *ds[] = {gx, ggam, gbet, grm, grv, gy, gsm, gsi, gdy, gdx, gdga, gdbe};
  for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) gpu->free(gpu, ds[i]);
}

static void test_pool_elementwise(void) {
  /* max pooling, the ResNet stem's */
  synco_pool_op oa = {.n = 3, .c = 4, .h = 11, .w = 10, .k = 3, .stride = 2, .pad = 1, .dtype = SYNCO_F32};
  synco_pool_op ob = oa;
  CHECK_OK(ref->pool_plan(ref, &oa));
  CHECK_OK(gpu->pool_plan(gpu, &ob));
  const size_t nx = (size_t)oa.n * oa.c * oa.h * oa.w, ny = (size_t)oa.n * oa.c * oa.oh * oa.ow;
  float *x = rnd(nx, 100, -1, 1), *y = malloc(ny * 4), *dy = rnd(ny, 101, -1, 1), *dx = malloc(nx * 4);
  for (size_t i = 0; i < nx; i += 7) x[i] = x[i > 0 ? i - 1 : 0]; /* ties */
  float *gx = up(x, nx * 4), *gy = up(NULL, ny * 4), *gdy = up(dy, ny * 4), *gdx = up(NULL, nx * 4);
  synco_tensor tx = tens(oa.n, oa.c, oa.h, oa.w, x), ty = tens(oa.n, oa.c, oa.oh, oa.ow, y);
  synco_tensor ux = tens(oa.n, oa.c, oa.h, oa.w, gx), uy = tens(oa.n, oa.c, oa.oh, oa.ow, gy);
  synco_tensor tdy = tens(oa.n, oa.c, oa.oh, oa.ow, dy), tdx = tens(oa.n, oa.c, oa.h, oa.w, dx);
  synco_tensor udy = tens(oa.n, oa.c, oa.oh, oa.ow, gdy), udx = tens(oa.n, oa.c, oa.h, oa.w, gdx);
  CHECK_OK(ref->maxpool_fwd(ref, &oa, &ty, &tx));
  CHECK_OK(gpu->maxpool_fwd(gpu, &ob, &uy, &ux));
  cmp_dev("maxpool fwd", gy, y, ny, 0, 0);
  CHECK_OK(ref->maxpool_bwd(ref, &oa, &tdx, &tdy));
  CHECK_OK(gpu->maxpool_bwd(gpu, &ob, &udx, &udy));
  cmp_dev("maxpool bwd", gdx, dx, nx, 0, 0);
  ref->pool_release(ref, &oa);
  gpu->pool_release(gpu, &ob);
  /* relu, add, on the pooling input */
  float *b = rnd(nx, 102, -1, 1), *gb = up(b, nx * 4);
  synco_tensor tb = tens(oa.n, oa.c, oa.h, oa.w, b), ub = tens(oa.n, oa.c, oa.h, oa.w, gb);
  CHECK_OK(ref->add(ref, &tdx, &tx, &tb, 0));
  CHECK_OK(gpu->add(gpu, &udx, &ux, &ub, 0));
  cmp_dev("add", gdx, dx, nx, 0, 0);
  CHECK_OK(ref->add(ref, &tdx, &tb, NULL, 1));
  CHECK_OK(gpu->add(gpu, &udx, &ub, NULL, 1));
  cmp_dev("add (accumulate)", gdx, dx, nx, 0, 0);
  CHECK_OK(ref->relu_fwd(ref, &tb, &tx));
  CHECK_OK(gpu->relu_fwd(gpu, &ub, &ux));
  cmp_dev("relu fwd", gb, b, nx, 0, 0);
  CHECK_OK(ref->relu_bwd(ref, &tdx, &tx, &tb));
  CHECK_OK(gpu->relu_bwd(gpu, &udx, &ux, &ub));
  cmp_dev("relu bwd", gdx, dx, nx, 0, 0);
  /* average pooling */
  float *m = malloc((size_t)oa.n * oa.c * 4), *gm = up(NULL, (size_t)oa.n * oa.c * 4);
  synco_tensor tm = tens(oa.n, oa.c, 1, 1, m), um = tens(oa.n, oa.c, 1, 1, gm);
  CHECK_OK(ref->avgpool_fwd(ref, &tm, &tx));
  CHECK_OK(gpu->avgpool_fwd(gpu, &um, &ux));
  cmp_dev("avgpool fwd", gm, m, (size_t)oa.n * oa.c, 0, 0);
  CHECK_OK(ref->avgpool_bwd(ref, &tdx, &tm));
  CHECK_OK(gpu->avgpool_bwd(gpu, &udx, &um));
  cmp_dev("avgpool bwd", gdx, dx, nx, 0, 0);
  free(x), free(y), free(dy), free(dx), free(b), free(m);
  gpu->free(gpu, gx), gpu->free(gpu, gy), gpu->free(gpu, gdy), gpu->free(gpu, gdx), gpu->free(gpu, gb), gpu->free(gpu, gm);
}

/* An activation of backend b (its layout for the shape: NHWC bf16 under bf16 where the channels allow), filled from
 * plain host values, and read back as plain host values. */
static synco_tensor act(synco_backend *b, int n, int c, int h, int w, const float *host) {
  synco_tensor t = {n, c, h, w, SYNCO_F32, b->act_layout(b, c, h, w, SYNCO_F32), NULL};
  t.dtype = synco_layout_dtype(t.layout);
  t.data = b->alloc(b, b->act_bytes(b, n, c, h, w, t.dtype));
  CHECK(t.data != NULL);
  if (host) CHECK_OK(b->to_backend(b, &t, host));
  return t;
}

static float *plain_of(synco_backend *b, const synco_tensor *t) {
  const size_t bytes = synco_tensor_numel(t) * 4;
  float *d = b->alloc(b, bytes), *h = malloc(bytes);
  CHECK_OK(b->to_plain(b, d, t));
  CHECK_OK(b->copy(b, h, d, bytes, SYNCO_COPY_D2H));
  b->free(b, d);
  return h;
}

static void cmp_act(const char *what, synco_backend *b, const synco_tensor *t, const float *ref_host, double atol,
                    double rtol) {
  float *h = plain_of(b, t);
  CHECK_CLOSE(what, h, ref_host, synco_tensor_numel(t), atol, rtol);
  free(h);
}

static float *bf16_rounded(const float *x, size_t n) {
  float *r = malloc((n ? n : 1) * sizeof *r);
  for (size_t i = 0; i < n; i++) r[i] = synco_k_f32_of_bf16(synco_k_bf16_of(x[i]));
  return r;
}

/* The layer ops under bf16 against the reference on the same bf16-rounded inputs: with NHWC bf16 activations (the
 * default) each result is rounded to bf16 once, so within one bf16 step (1e-5 + 2^-7·|ref|); BN's dx, a sum that
 * cancels, 1e-3 + 2e-2·|ref|; with SYNCO_CUDA_NHWC=0 the same ops on fp32 NCHW pass the same bounds. */
static void test_bf16_layers(synco_backend *g16) {
  /* batch norm with Split-BN and the fused ReLU, on 40 channels (a block and a part) */
  synco_bn_op oa = {.n = 8, .c = 40, .h = 5, .w = 6, .groups = 2, .relu = 1, .eps = 1e-5f, .momentum = 0.1f,
                    .dtype = SYNCO_F32};
  synco_bn_op ob = oa;
  CHECK_OK(ref->bn_plan(ref, &oa));
  CHECK_OK(g16->bn_plan(g16, &ob));
  const int C = oa.c, G = oa.groups;
  const size_t n = (size_t)oa.n * C * oa.h * oa.w;
  float *x0 = rnd(n, 190, -1, 3), *x = bf16_rounded(x0, n), *dy0 = rnd(n, 191, -1, 1), *dy = bf16_rounded(dy0, n);
  float *gam = rnd(C, 192, 0.5f, 1.5f), *bet = rnd(C, 193, -0.5f, 0.5f), *rm = rnd(C, 194, -1, 1);
  float *rv = rnd(C, 195, 0.5f, 2);
  float *y = malloc(n * 4), *dx = malloc(n * 4), *sm = malloc(G * C * 4), *si = malloc(G * C * 4);
  float *dga = calloc(C, 4), *dbe = calloc(C, 4);
  float *ggam = up(gam, C * 4), *gbet = up(bet, C * 4), *grm = up(rm, C * 4), *grv = up(rv, C * 4);
  float *gsm = up(NULL, G * C * 4), *gsi = up(NULL, G * C * 4), *gdga = up(dga, C * 4), *gdbe = up(dbe, C * 4);
  synco_tensor tx = tens(oa.n, C, oa.h, oa.w, x), ty = tens(oa.n, C, oa.h, oa.w, y);
  synco_tensor tdy = tens(oa.n, C, oa.h, oa.w, dy), tdx = tens(oa.n, C, oa.h, oa.w, dx);
  synco_tensor ux = act(g16, oa.n, C, oa.h, oa.w, x), uy = act(g16, oa.n, C, oa.h, oa.w, NULL);
  synco_tensor udy = act(g16, oa.n, C, oa.h, oa.w, dy), udx = act(g16, oa.n, C, oa.h, oa.w, NULL);
  CHECK_OK(ref->bn_fwd_train(ref, &oa, &ty, sm, si, rm, rv, &tx, gam, bet));
  CHECK_OK(g16->bn_fwd_train(g16, &ob, &uy, gsm, gsi, grm, grv, &ux, ggam, gbet));
  cmp_act("bf16 bn fwd_train y", g16, &uy, y, 1e-5, 1.0 / 128);
  cmp_dev("bf16 bn saved mean", gsm, sm, G * C, 1e-5, 1e-4);
  cmp_dev("bf16 bn saved invstd", gsi, si, G * C, 1e-5, 1e-4);
  cmp_dev("bf16 bn running var", grv, rv, C, 1e-5, 1e-4);
  CHECK_OK(ref->bn_bwd(ref, &oa, &tdx, dga, dbe, &tdy, &ty, &tx, gam, sm, si));
  CHECK_OK(g16->bn_bwd(g16, &ob, &udx, gdga, gdbe, &udy, &uy, &ux, ggam, gsm, gsi));
  cmp_act("bf16 bn bwd dx", g16, &udx, dx, 1e-3, 2e-2);
  cmp_dev("bf16 bn bwd dgamma", gdga, dga, C, 1e-3, 1e-2);
  cmp_dev("bf16 bn bwd dbeta", gdbe, dbe, C, 1e-3, 1e-2);
  CHECK_OK(ref->bn_fwd_eval(ref, &oa, &ty, &tx, gam, bet, rm, rv));
  CHECK_OK(g16->bn_fwd_eval(g16, &ob, &uy, &ux, ggam, gbet, grm, grv));
  cmp_act("bf16 bn fwd_eval", g16, &uy, y, 1e-5, 1.0 / 128);
  /* ReLU, add, average pooling, on the same tensors */
  CHECK_OK(ref->add(ref, &ty, &tx, &tdy, 0));
  CHECK_OK(g16->add(g16, &uy, &ux, &udy, 0));
  cmp_act("bf16 add", g16, &uy, y, 1e-5, 1.0 / 128);
  CHECK_OK(ref->relu_fwd(ref, &tdx, &tx));
  CHECK_OK(g16->relu_fwd(g16, &udx, &ux));
  cmp_act("bf16 relu fwd", g16, &udx, dx, 0, 0);
  CHECK_OK(ref->relu_bwd(ref, &tdx, &tdy, &tx));
  CHECK_OK(g16->relu_bwd(g16, &udx, &udy, &ux));
  cmp_act("bf16 relu bwd", g16, &udx, dx, 0, 0);
  float *m = malloc((size_t)oa.n * C * 4), *gm = up(NULL, (size_t)oa.n * C * 4);
  synco_tensor tm = tens(oa.n, C, 1, 1, m), um = tens(oa.n, C, 1, 1, gm);
  CHECK_OK(ref->avgpool_fwd(ref, &tm, &tx));
  CHECK_OK(g16->avgpool_fwd(g16, &um, &ux));
  cmp_dev("bf16 avgpool fwd", gm, m, (size_t)oa.n * C, 1e-6, 1e-6);
  CHECK_OK(ref->avgpool_bwd(ref, &tdx, &tm));
  CHECK_OK(g16->avgpool_bwd(g16, &udx, &um));
  cmp_act("bf16 avgpool bwd", g16, &udx, dx, 1e-6, 1.0 / 128);
  /* a residual block's end, relu(bn(x) + res), in one pass (BN planned without its own ReLU), and the backward's
   * (a + b)·(y > 0) */
  synco_bn_op fa = oa, fb = ob;
  fa.relu = fb.relu = 0;
  ref->bn_release(ref, &oa);
  g16->bn_release(g16, &ob);
  CHECK_OK(ref->bn_plan(ref, &fa));
  CHECK_OK(g16->bn_plan(g16, &fb));
  CHECK(g16->bn_fwd_train_add_relu != NULL && g16->add_relu_bwd != NULL);
  CHECK_OK(ref->bn_fwd_train(ref, &fa, &ty, sm, si, rm, rv, &tx, gam, bet));
  CHECK_OK(ref->add(ref, &ty, &tdy, NULL, 1)); /* res: the dy tensor */
  CHECK_OK(ref->relu_fwd(ref, &ty, &ty));
  CHECK_OK(g16->bn_fwd_train_add_relu(g16, &fb, &uy, gsm, gsi, grm, grv, &ux, ggam, gbet, &udy));
  cmp_act("bf16 bn_fwd_train_add_relu", g16, &uy, y, 1e-5, 1.0 / 64);
  CHECK_OK(ref->add(ref, &tdx, &tx, &tdy, 0));
  CHECK_OK(ref->relu_bwd(ref, &tdx, &tdx, &ty));
  CHECK_OK(g16->add_relu_bwd(g16, &udx, &ux, &udy, &uy));
  cmp_act("bf16 add_relu_bwd", g16, &udx, dx, 1e-5, 1.0 / 128);
  ref->bn_release(ref, &fa);
  g16->bn_release(g16, &fb);
  /* max pooling (the ImageNet stem's), with ties */
  synco_pool_op pa = {.n = 3, .c = 16, .h = 11, .w = 10, .k = 3, .stride = 2, .pad = 1, .dtype = SYNCO_F32};
  synco_pool_op pb = pa;
  CHECK_OK(ref->pool_plan(ref, &pa));
  CHECK_OK(g16->pool_plan(g16, &pb));
  const size_t px = (size_t)pa.n * pa.c * pa.h * pa.w, py = (size_t)pa.n * pa.c * pa.oh * pa.ow;
  float *p0 = rnd(px, 196, -1, 1), *pd0 = rnd(py, 197, -1, 1);
  for (size_t i = 0; i < px; i += 7) p0[i] = p0[i > 0 ? i - 1 : 0];
  float *pxr = bf16_rounded(p0, px), *pdr = bf16_rounded(pd0, py), *pyo = malloc(py * 4), *pdx = malloc(px * 4);
  synco_tensor tpx = tens(pa.n, pa.c, pa.h, pa.w, pxr), tpy = tens(pa.n, pa.c, pa.oh, pa.ow, pyo);
  synco_tensor tpd = tens(pa.n, pa.c, pa.oh, pa.ow, pdr), tpdx = tens(pa.n, pa.c, pa.h, pa.w, pdx);
  synco_tensor upx = act(g16, pa.n, pa.c, pa.h, pa.w, pxr), upy = act(g16, pa.n, pa.c, pa.oh, pa.ow, NULL);
  synco_tensor upd = act(g16, pa.n, pa.c, pa.oh, pa.ow, pdr), updx = act(g16, pa.n, pa.c, pa.h, pa.w, NULL);
  CHECK_OK(ref->maxpool_fwd(ref, &pa, &tpy, &tpx));
  CHECK_OK(g16->maxpool_fwd(g16, &pb, &upy, &upx));
  cmp_act("bf16 maxpool fwd", g16, &upy, pyo, 0, 0);
  CHECK_OK(ref->maxpool_bwd(ref, &pa, &tpdx, &tpd));
  CHECK_OK(g16->maxpool_bwd(g16, &pb, &updx, &upd));
  cmp_act("bf16 maxpool bwd", g16, &updx, pdx, 1e-6, 1.0 / 128);
  ref->pool_release(ref, &pa);
  g16->pool_release(g16, &pb);
  free(x0), free(x), free(dy0), free(dy), free(gam), free(bet), free(rm), free(rv), free(y), free(dx), free(sm), free(si);
  free(dga), free(dbe), free(m), free(p0), free(pd0), free(pxr), free(pdr), free(pyo), free(pdx);
  void *ds[] = {ggam, gbet, grm,     grv,     gsm,      gsi,      gdga,     gdbe,    gm,
                ux.data, uy.data, udy.data, udx.data, upx.data, upy.data, upd.data, updx.data};
  for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) g16->free(g16, ds[i]);
}

/* --precision bf16 (a second backend; skipped before compute capability 8.0), with NHWC bf16 activations (nhwc = 1,
 * the default) and with fp32 NCHW ones (SYNCO_CUDA_NHWC=0): the convolutions against the reference on bf16-rounded
 * inputs, within 1e-3 + 8e-3·|ref| (cuDNN's output is bf16: one rounding, twice that where the sum's order tips
 * it); the weight gradient from zero, added twice (each call rounds its sum, then adds it); a 3-channel input (the
 * stem's: plain fp32 in either mode). The linear layers' bf16 GEMMs likewise, their output fp32: 1e-4 + 2e-3·|ref|.
 * The step's GEMM (the logits) stays fp32: 1e-5 + 1e-4·|ref| against the unrounded reference. Then the other layer
 * ops (test_bf16_layers). */
static void test_bf16(int nhwc) {
  synco_backend *g16 = NULL;
  if (!nhwc) setenv("SYNCO_CUDA_NHWC", "0", 1);
  CHECK_OK(synco_backend_create("cuda", &g16));
  unsetenv("SYNCO_CUDA_NHWC");
  if (!g16) return;
  if (!synco_backend_supports(g16, SYNCO_CAP_BF16)) {
    CHECK(synco_backend_set_precision(g16, "bf16") == SYNCO_ERR_UNSUPPORTED);
    printf("bf16: not checked, this GPU has no bf16 tensor cores (%s)\n", synco_last_error());
    synco_backend_destroy(g16);
    return;
  }
  CHECK_OK(synco_backend_set_precision(g16, "bf16"));
  CHECK((g16->act_layout(g16, 64, 8, 8, SYNCO_F32) == SYNCO_LAYOUT_NHWC_BF16) == nhwc);
  CHECK(g16->act_layout(g16, 3, 8, 8, SYNCO_F32) == SYNCO_LAYOUT_PLAIN);
  synco_backend *keep = gpu;
  gpu = g16; /* up() and down() */
  const int shapes[][7] = {/* n, cin, h, cout, k, stride, pad */ {4, 64, 16, 64, 3, 1, 1}, {3, 16, 9, 40, 1, 2, 0},
                           {2, 3, 20, 8, 3, 1, 1}, {2, 24, 10, 48, 3, 2, 1}};
  for (int s = 0; s < 4; s++) {
    synco_conv_op oa = {.n = shapes[s][0], .cin = shapes[s][1], .h = shapes[s][2], .w = shapes[s][2],
                        .cout = shapes[s][3], .kh = shapes[s][4], .kw = shapes[s][4], .stride = shapes[s][5],
                        .pad = shapes[s][6], .dtype = SYNCO_F32};
    synco_conv_op ob = oa;
    CHECK_OK(ref->conv_plan(ref, &oa));
    CHECK_OK(g16->conv_plan(g16, &ob));
    const size_t nx = (size_t)oa.n * oa.cin * oa.h * oa.w, ny = (size_t)oa.n * oa.cout * oa.oh * oa.ow,
                 nw = (size_t)oa.cout * oa.cin * oa.kh * oa.kw;
    float *x = rnd(nx, 150 + s, -1, 1), *w = rnd(nw, 160 + s, -0.3f, 0.3f), *dy = rnd(ny, 170 + s, -1, 1);
    float *xr = bf16_rounded(x, nx), *wr = bf16_rounded(w, nw), *dyr = bf16_rounded(dy, ny);
    float *y = malloc(ny * 4), *dx = malloc(nx * 4), *dw = calloc(nw, 4);
    float *gw = up(w, nw * 4), *gdw = up(dw, nw * 4);
    synco_tensor tx = tens(oa.n, oa.cin, oa.h, oa.w, xr), ty = tens(oa.n, oa.cout, oa.oh, oa.ow, y);
    synco_tensor tdy = tens(oa.n, oa.cout, oa.oh, oa.ow, dyr), tdx = tens(oa.n, oa.cin, oa.h, oa.w, dx);
    synco_tensor ux = act(g16, oa.n, oa.cin, oa.h, oa.w, x), uy = act(g16, oa.n, oa.cout, oa.oh, oa.ow, NULL);
    synco_tensor udy = act(g16, oa.n, oa.cout, oa.oh, oa.ow, dy), udx = act(g16, oa.n, oa.cin, oa.h, oa.w, NULL);
    CHECK_OK(ref->conv_fwd(ref, &oa, &ty, &tx, wr));
    CHECK_OK(g16->conv_fwd(g16, &ob, &uy, &ux, gw));
    cmp_act("bf16 conv fwd", g16, &uy, y, 1e-3, 8e-3);
    CHECK_OK(ref->conv_bwd_data(ref, &oa, &tdx, &tdy, wr));
    CHECK_OK(g16->conv_bwd_data(g16, &ob, &udx, &udy, gw));
    cmp_act("bf16 conv bwd_data", g16, &udx, dx, 1e-3, 8e-3);
    for (int twice = 0; twice < 2; twice++) {
      CHECK_OK(ref->conv_bwd_weights(ref, &oa, dw, &tdy, &tx));
      CHECK_OK(g16->conv_bwd_weights(g16, &ob, gdw, &udy, &ux));
    }
    cmp_dev("bf16 conv bwd_weights (added twice)", gdw, dw, nw, 1e-3, 8e-3);
    char list[8192];
    CHECK(g16->kernels(g16, list, sizeof list) < sizeof list && strstr(list, "bf16 NHWC") != NULL);
    ref->conv_release(ref, &oa);
    g16->conv_release(g16, &ob);
    free(x), free(w), free(dy), free(xr), free(wr), free(dyr), free(y), free(dx), free(dw);
    void *ds[] = {gw, gdw, ux.data, uy.data, udy.data, udx.data};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) g16->free(g16, ds[i]);
  }
  /* the linear layers in bf16, the step's GEMM in fp32 */
  const int n = 12, in = 40, out = 24;
  float *x = rnd((size_t)n * in, 180, -1, 1), *w = rnd((size_t)out * in, 181, -0.5f, 0.5f);
  float *dy = rnd((size_t)n * out, 182, -1, 1);
  float *xr = bf16_rounded(x, (size_t)n * in), *wr = bf16_rounded(w, (size_t)out * in);
  float *dyr = bf16_rounded(dy, (size_t)n * out);
  float *y = malloc((size_t)n * out * 4), *dx = malloc((size_t)n * in * 4), *dw = calloc((size_t)out * in, 4);
  float *gx = up(x, (size_t)n * in * 4), *gw = up(w, (size_t)out * in * 4), *gy = up(NULL, (size_t)n * out * 4);
  float *gdy = up(dy, (size_t)n * out * 4), *gdx = up(NULL, (size_t)n * in * 4), *gdw = up(dw, (size_t)out * in * 4);
  synco_tensor tx = tens(n, in, 1, 1, xr), ty = tens(n, out, 1, 1, y), tdy = tens(n, out, 1, 1, dyr);
  synco_tensor tdx = tens(n, in, 1, 1, dx), ux = tens(n, in, 1, 1, gx), uy = tens(n, out, 1, 1, gy);
  synco_tensor udy = tens(n, out, 1, 1, gdy), udx = tens(n, in, 1, 1, gdx);
  CHECK_OK(ref->linear_fwd(ref, &ty, &tx, wr, NULL));
  CHECK_OK(g16->linear_fwd(g16, &uy, &ux, gw, NULL));
  cmp_dev("bf16 linear fwd", gy, y, (size_t)n * out, 1e-4, 2e-3);
  CHECK_OK(ref->linear_bwd(ref, &tdx, dw, NULL, &tdy, &tx, wr));
  CHECK_OK(g16->linear_bwd(g16, &udx, gdw, NULL, &udy, &ux, gw));
  cmp_dev("bf16 linear bwd dx", gdx, dx, (size_t)n * in, 1e-4, 2e-3);
  cmp_dev("bf16 linear bwd dw", gdw, dw, (size_t)out * in, 1e-4, 2e-3);
  CHECK_OK(ref->gemm(ref, 0, 1, n, out, in, 1.f, x, in, w, in, 0.f, y, out)); /* unrounded */
  CHECK_OK(g16->gemm(g16, 0, 1, n, out, in, 1.f, gx, in, gw, in, 0.f, gy, out));
  cmp_dev("gemm under bf16 (fp32)", gy, y, (size_t)n * out, 1e-5, 1e-4);
  free(x), free(w), free(dy), free(xr), free(wr), free(dyr), free(y), free(dx), free(dw);
  float *ds[] = {gx, gw, gy, gdy, gdx, gdw};
  for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) g16->free(g16, ds[i]);
  test_bf16_layers(g16);
  CHECK_OK(g16->sync(g16));
  gpu = keep;
  synco_backend_destroy(g16);
}

static void test_matrices(void) {
  const int n = 10, in = 24, out = 13;
  float *x = rnd((size_t)n * in, 110, -1, 1), *w = rnd((size_t)out * in, 111, -0.5f, 0.5f), *b = rnd(out, 112, -1, 1);
  float *y = malloc((size_t)n * out * 4), *dy = rnd((size_t)n * out, 113, -1, 1), *dx = malloc((size_t)n * in * 4);
  float *dw = rnd((size_t)out * in, 114, -1, 1), *db = rnd(out, 115, -1, 1);
  float *gx = up(x, (size_t)n * in * 4), *gw = up(w, (size_t)out * in * 4), *gb = up(b, out * 4);
  float *gy = up(NULL, (size_t)n * out * 4), *gdy = up(dy, (size_t)n * out * 4), *gdx = up(NULL, (size_t)n * in * 4);
  float *gdw = up(dw, (size_t)out * in * 4), *gdb = up(db, out * 4);
  synco_tensor tx = tens(n, in, 1, 1, x), ty = tens(n, out, 1, 1, y), tdy = tens(n, out, 1, 1, dy), tdx = tens(n, in, 1, 1, dx);
  synco_tensor ux = tens(n, in, 1, 1, gx), uy = tens(n, out, 1, 1, gy), udy = tens(n, out, 1, 1, gdy), udx = tens(n, in, 1, 1, gdx);
  CHECK_OK(ref->linear_fwd(ref, &ty, &tx, w, b));
  CHECK_OK(gpu->linear_fwd(gpu, &uy, &ux, gw, gb));
  cmp_dev("linear fwd", gy, y, (size_t)n * out, 1e-5, 1e-4);
  CHECK_OK(ref->linear_bwd(ref, &tdx, dw, db, &tdy, &tx, w));
  CHECK_OK(gpu->linear_bwd(gpu, &udx, gdw, gdb, &udy, &ux, gw));
  cmp_dev("linear bwd dx", gdx, dx, (size_t)n * in, 1e-5, 1e-4);
  cmp_dev("linear bwd dw", gdw, dw, (size_t)out * in, 1e-5, 1e-4);
  cmp_dev("linear bwd db", gdb, db, out, 0, 0);
  float *norms = malloc(n * 4), *gnorms = up(NULL, n * 4);
  memset(x, 0, in * sizeof *x); /* a row of zeros: the eps branch */
  CHECK_OK(gpu->copy(gpu, gx, x, (size_t)n * in * 4, SYNCO_COPY_H2D));
  float *yn = malloc((size_t)n * in * 4), *gyn = up(NULL, (size_t)n * in * 4);
  synco_tensor tyn = tens(n, in, 1, 1, yn), uyn = tens(n, in, 1, 1, gyn);
  CHECK_OK(ref->l2norm_fwd(ref, &tyn, norms, &tx));
  CHECK_OK(gpu->l2norm_fwd(gpu, &uyn, gnorms, &ux));
  cmp_dev("l2norm fwd", gyn, yn, (size_t)n * in, 0, 0);
  cmp_dev("l2norm norms", gnorms, norms, n, 0, 0);
  float *dyn = rnd((size_t)n * in, 116, -1, 1), *gdyn = up(dyn, (size_t)n * in * 4);
  synco_tensor tdyn = tens(n, in, 1, 1, dyn), udyn = tens(n, in, 1, 1, gdyn);
  CHECK_OK(ref->l2norm_bwd(ref, &tdx, &tdyn, &tyn, norms));
  CHECK_OK(gpu->l2norm_bwd(gpu, &udx, &udyn, &uyn, gnorms));
  cmp_dev("l2norm bwd", gdx, dx, (size_t)n * in, 0, 0);
  free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(norms), free(yn), free(dyn);
  float *ds[] = {gx, gw, gb, gy, gdy, gdx, gdw, gdb, gnorms, gyn, gdyn};
  for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) gpu->free(gpu, ds[i]);
}
#endif

int main(void) {
#ifndef SYNCO_HAVE_CUDA
  SKIP("built without CUDA (make CUDA=1)");
#else
  test_names();
  if (synco_cuda_device_count() == 0) {
    if (synco_test_failures) return synco_test_finish("cuda_ops");
    SKIP("no GPU on this machine (the device names and the missing-GPU error were checked)");
  }
  unsetenv("SYNCO_CUDA_TF32");
  unsetenv("SYNCO_CUDA_BF16");
  CHECK_OK(synco_backend_ref_create(&ref));
  CHECK_OK(synco_backend_create("cuda", &gpu));
  if (!ref || !gpu) return synco_test_finish("cuda_ops");
  test_uploads();
  test_gemm();
  test_sgd_ema();
  test_queue_permute();
  test_infonce();
  test_loss_record();
  test_xent();
  test_negatives();
  test_conv();
  test_bn(1, 0);
  test_bn(2, 1);
  test_bn(4, 0);
  test_pool_elementwise();
  test_matrices();
  test_bf16(1);
  test_bf16(0);
  CHECK_OK(gpu->sync(gpu));
  synco_backend_destroy(gpu);
  synco_backend_destroy(ref);
  return synco_test_finish("cuda_ops");
#endif
}
