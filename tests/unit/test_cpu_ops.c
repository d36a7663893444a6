/* Every op of the cpu backend against the reference backend on random shapes and data, forward and
 * backward: convolutions (3x3 s1/s2, 1x1 s2, 7x7 s2 on a plain 3-channel input, channel counts that stay
 * plain, 8 and 24 channels next to blocks of 16, where oneDNN's own layouts have only its reference kernel and none
 * may be chosen), batch norm (train/eval, Split-BN with 2 groups, fused ReLU), max and average pooling, ReLU, add,
 * linear, L2 norm, and the plain <-> backend round trip. Parameter gradients start from non-zero values so
 * that accumulation (+=) is checked too. The blocked ops run with the ISA's block and the 3x3 stride-1 kernels
 * of the default rule, then measured (SYNCO_CONV_ALGO=auto), then with each candidate forced (direct, winograd =
 * synco's cpu_wino_conv.c, onednn-winograd, direct8 = synco's cpu_direct8_conv.c for nChw8c layers up to 32
 * channels on AVX-512), then the other block and all-plain (SYNCO_ONEDNN_BLOCK). fp32 tolerance: atol 1e-4 +
 * rtol 1e-4.
 *
 * Where the CPU has bf16 (AVX512-BF16, AMX), everything runs once more under --precision bf16, where the
 * convolutions and linear layers multiply bf16 copies of their inputs. Their reference is then the reference op on
 * inputs rounded to bf16 (round to nearest even, written here independently of the backend), which checks that the
 * backend rounds the right operands and accumulates in fp32: tolerance atol 1e-4 + rtol 4e-3, where 4e-3 is twice
 * half a bf16 ulp (2^-9), since a convolution's y and dx are bf16 before they are widened back to fp32 (as under
 * PyTorch's autocast); dw and the linear layer's outputs are fp32 sums. A check that the bf16 outputs differ from the
 * fp32 reference proves that bf16 ran at all. Elsewhere the bf16 part is skipped with a message. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_direct8_conv.h"
#include "backend/cpu/cpu_stem_conv.h"
#include "backend/cpu/cpu_stride2_conv.h"
#include "backend/cpu/cpu_onednn_util.h"
#include "backend/cpu/cpu_wino_conv.h"
#include "backend/registry.h"
#include "base/status.h"
#include "tensor/backend.h"
#include "test_util.h"

#ifndef SYNCO_HAVE_ONEDNN
int main(void) { SKIP("built without oneDNN"); }
#else

#define ATOL 1e-4
#define RTOL 1e-4

static unsigned g_seed = 1;
static int g_bf16; /* the backend computes in bf16: compare with the reference on bf16-rounded inputs */
#define BF16_ATOL 1e-4
#define BF16_RTOL 4e-3

static double tol_a(void) { return g_bf16 ? BF16_ATOL : ATOL; }
static double tol_r(void) { return g_bf16 ? BF16_RTOL : RTOL; }

/* x rounded to bf16 (round to nearest even), as a float. */
static float bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&x, &u, sizeof u);
  return x;
}

/* What the reference gets: p itself, or where `round` (under bf16) a rounded copy (freed with ref_free). */
static float *ref_in(float *p, size_t n, int round) {
  if (!round) return p;
  float *q = malloc(n * sizeof(float) + 16);
  for (size_t i = 0; i < n; i++) q[i] = bf16_round(p[i]);
  return q;
}

static void ref_free(float *q, float *p) {
  if (q != p) free(q);
}

/* Under bf16: the backend's plain result got[n] differs from the unrounded fp32 reference somewhere. */
static int g_bf16_differs;
static void note_bf16(const float *got, const float *fp32, size_t n) {
  for (size_t i = 0; i < n && g_bf16; i++)
    if (fabsf(got[i] - fp32[i]) > 1e-5f * (1.0f + fabsf(fp32[i]))) g_bf16_differs = 1;
}

static float *rnd(size_t n, float lo, float hi) {
  float *p = malloc(n * sizeof(float) + 16);
  synco_test_fill(p, n, g_seed++, lo, hi);
  return p;
}

static float *dup(const float *p, size_t n) {
  float *q = malloc(n * sizeof(float) + 16);
  memcpy(q, p, n * sizeof(float));
  return q;
}

/* A tensor in the backend's layout for its shape, filled from plain data (NULL: zeros). */
static synco_tensor mk(synco_backend *be, int n, int c, int h, int w, const float *plain) {
  synco_tensor t = {n, c, h, w, SYNCO_F32, be->act_layout(be, c, h, w, SYNCO_F32), NULL};
  const size_t bytes = be->act_bytes(be, n, c, h, w, SYNCO_F32);
  t.data = synco_aligned_alloc(bytes);
  memset(t.data, 0, bytes);
  if (plain) CHECK_OK(be->to_backend(be, &t, plain));
  return t;
}

/* Compares a backend tensor with a reference tensor (plain). */
static void cmp(const char *what, synco_backend *be, const synco_tensor *got, const synco_tensor *ref, double atol,
                double rtol) {
  const size_t n = synco_tensor_numel(ref);
  float *g = malloc(n * sizeof(float));
  CHECK_OK(be->to_plain(be, g, got));
  CHECK_CLOSE(what, g, ref->data, n, atol, rtol);
  free(g);
}

static void fr(synco_tensor *t) { free(t->data); }

/* ---- layouts ---------------------------------------------------------------------------------- */

static void test_layouts(synco_backend *be, int block) {
  const synco_layout blk = block == 16 ? SYNCO_LAYOUT_NCHW16C : block == 8 ? SYNCO_LAYOUT_NCHW8C : SYNCO_LAYOUT_PLAIN;
  CHECK(be->act_layout(be, 64, 8, 8, SYNCO_F32) == blk);
  CHECK(be->act_layout(be, 3, 32, 32, SYNCO_F32) == SYNCO_LAYOUT_PLAIN);
  CHECK(be->act_layout(be, 12, 8, 8, SYNCO_F32) == SYNCO_LAYOUT_PLAIN);
  CHECK(be->act_layout(be, 64, 1, 1, SYNCO_F32) == SYNCO_LAYOUT_PLAIN);
  const int shapes[][4] = {{2, 16, 5, 7}, {3, 32, 4, 4}, {2, 3, 6, 5}, {2, 12, 3, 3}};
  for (size_t s = 0; s < sizeof(shapes) / sizeof(*shapes); s++) {
    const int *d = shapes[s];
    const size_t n = (size_t)d[0] * d[1] * d[2] * d[3];
    float *x = rnd(n, -1, 1), *back = malloc(n * sizeof(float));
    synco_tensor t = mk(be, d[0], d[1], d[2], d[3], x);
    CHECK_OK(be->to_plain(be, back, &t));
    CHECK(memcmp(x, back, n * sizeof(float)) == 0);
    fr(&t);
    free(x);
    free(back);
  }
}

/* ---- convolution ------------------------------------------------------------------------------ */

/* The kernel name of pass `pass` ("fwd", "bwd_data", "bwd_weights") in the kernel log entry e (up to its closing
 * quote), or NULL. */
static const char *pass_kernel(const char *e, const char *pass) {
  char key[32];
  snprintf(key, sizeof key, "\"%s\":\"", pass);
  const char *v = e ? strstr(e, key) : NULL;
  return v && strchr(v + strlen(key), '"') ? v + strlen(key) : NULL;
}

/* 1 when the entry e says pass `pass` multiplies in fp32 in a bf16 layer ("(fp32)" after the kernel's name). */
static int pass_fp32(const char *e, const char *pass) {
  const char *v = pass_kernel(e, pass), *end = v ? strchr(v, '"') : NULL;
  return end && end - v >= 6 && !strncmp(end - 6, "(fp32)", 6);
}

/* Under bf16: 1 when the kernel log says pass `pass` of the layer op was planned to multiply in fp32 (oneDNN's
 * Winograd, which has no bf16 kernel, its fp32 direct kernel, or synco's direct8). */
static int pass_in_fp32(synco_backend *be, const synco_conv_op *op, const char *pass) {
  if (!g_bf16) return 0;
  char *log = synco_test_kernel_log(be), sig[96];
  snprintf(sig, sizeof sig, "\"conv\":\"%dx%dx%d->%dx%dx%d k%d s%d p%d\",\"batch\":%d,", op->cin, op->h, op->w,
           op->cout, op->oh, op->ow, op->kh, op->stride, op->pad, op->n);
  const char *e = NULL;
  for (const char *q = strstr(log, sig); q; q = strstr(q + 1, sig)) e = q; /* the latest plan of the shape */
  CHECK(pass_kernel(e, pass) != NULL);
  const int fp32 = pass_fp32(e, pass);
  free(log);
  return fp32;
}

/* A reference tensor of plain data p: rounded to bf16 first where `round` (a copy, freed by fr). */
static synco_tensor mk_ref(synco_backend *ref, int n, int c, int h, int w, float *p, int round) {
  float *q = ref_in(p, (size_t)n * c * h * w, round);
  synco_tensor t = mk(ref, n, c, h, w, q);
  ref_free(q, p);
  return t;
}

/* The layer against the reference backend, pass by pass. Under bf16 a pass's reference takes the bf16-rounded inputs
 * at bf16 tolerances, or, where the pass ran in fp32 (pass_in_fp32), the inputs as they are at fp32 ones. */
static void test_conv(synco_backend *be, synco_backend *ref, int n, int cin, int h, int w, int cout, int k, int s,
                      int p) {
  char what[96];
  synco_conv_op op = {.n = n, .cin = cin, .h = h, .w = w, .cout = cout, .kh = k, .kw = k, .stride = s, .pad = p,
                      .dtype = SYNCO_F32};
  op.oh = synco_conv_out_size(h, k, s, p);
  op.ow = synco_conv_out_size(w, k, s, p);
  synco_conv_op rop = op;
  CHECK_OK(be->conv_plan(be, &op));
  CHECK_OK(ref->conv_plan(ref, &rop));
  const char *const pass[3] = {"fwd", "bwd_data", "bwd_weights"};
  int rnd16[3]; /* the pass's reference rounds its inputs to bf16 */
  for (int i = 0; i < 3; i++) rnd16[i] = g_bf16 && !pass_in_fp32(be, &op, pass[i]);
  const size_t nx = (size_t)n * cin * h * w, ny = (size_t)n * cout * op.oh * op.ow, nw = (size_t)cout * cin * k * k;
  float *x = rnd(nx, -1, 1), *wt = rnd(nw, -0.5f, 0.5f), *dy = rnd(ny, -1, 1), *dw0 = rnd(nw, -1, 1);
  synco_tensor fx = mk(be, n, cin, h, w, x), fy = mk(be, n, cout, op.oh, op.ow, NULL);
  synco_tensor fdy = mk(be, n, cout, op.oh, op.ow, dy), fdx = mk(be, n, cin, h, w, NULL);
  synco_tensor ry = mk(ref, n, cout, op.oh, op.ow, NULL), rdx = mk(ref, n, cin, h, w, NULL);
  double atol[3], rtol[3];
  for (int i = 0; i < 3; i++) atol[i] = rnd16[i] ? BF16_ATOL : ATOL, rtol[i] = rnd16[i] ? BF16_RTOL : RTOL;

  /* forward */
  synco_tensor rx = mk_ref(ref, n, cin, h, w, x, rnd16[0]);
  float *rwt = ref_in(wt, nw, rnd16[0]);
  CHECK_OK(be->conv_fwd(be, &op, &fy, &fx, wt));
  CHECK_OK(ref->conv_fwd(ref, &rop, &ry, &rx, rwt));
  snprintf(what, sizeof what, "conv %dx%d s%d p%d %d->%d y%s", k, k, s, p, cin, cout, rnd16[0] ? " bf16" : "");
  cmp(what, be, &fy, &ry, atol[0], rtol[0]);
  if (rnd16[0]) { /* the fp32 result of the unrounded inputs is not what bf16 gives */
    synco_tensor ux = mk(ref, n, cin, h, w, x), uy = mk(ref, n, cout, op.oh, op.ow, NULL);
    float *g = malloc(ny * sizeof(float));
    CHECK_OK(ref->conv_fwd(ref, &rop, &uy, &ux, wt));
    CHECK_OK(be->to_plain(be, g, &fy));
    note_bf16(g, uy.data, ny);
    free(g), fr(&ux), fr(&uy);
  }
  fr(&rx);
  ref_free(rwt, wt);

  /* backward data */
  synco_tensor rdy = mk_ref(ref, n, cout, op.oh, op.ow, dy, rnd16[1]);
  rwt = ref_in(wt, nw, rnd16[1]);
  CHECK_OK(be->conv_bwd_data(be, &op, &fdx, &fdy, wt));
  CHECK_OK(ref->conv_bwd_data(ref, &rop, &rdx, &rdy, rwt));
  snprintf(what, sizeof what, "conv %dx%d s%d p%d %d->%d dx%s", k, k, s, p, cin, cout, rnd16[1] ? " bf16" : "");
  cmp(what, be, &fdx, &rdx, atol[1], rtol[1]);
  fr(&rdy);
  ref_free(rwt, wt);

  /* backward weights, dw += : both start from the same non-zero values */
  rx = mk_ref(ref, n, cin, h, w, x, rnd16[2]);
  rdy = mk_ref(ref, n, cout, op.oh, op.ow, dy, rnd16[2]);
  float *fdw = dup(dw0, nw), *rdw = dup(dw0, nw);
  CHECK_OK(be->conv_bwd_weights(be, &op, fdw, &fdy, &fx));
  CHECK_OK(ref->conv_bwd_weights(ref, &rop, rdw, &rdy, &rx));
  snprintf(what, sizeof what, "conv %dx%d s%d p%d %d->%d dw%s", k, k, s, p, cin, cout, rnd16[2] ? " bf16" : "");
  CHECK_CLOSE(what, fdw, rdw, nw, atol[2], rtol[2]);
  /* a second call adds the same gradient again */
  CHECK_OK(be->conv_bwd_weights(be, &op, fdw, &fdy, &fx));
  CHECK_OK(ref->conv_bwd_weights(ref, &rop, rdw, &rdy, &rx));
  CHECK_CLOSE(what, fdw, rdw, nw, atol[2], rtol[2]);

  be->conv_release(be, &op);
  ref->conv_release(ref, &rop);
  CHECK(op.impl == NULL);
  synco_tensor *ts[] = {&fx, &fy, &fdy, &fdx, &rx, &ry, &rdy, &rdx};
  for (size_t i = 0; i < sizeof(ts) / sizeof(*ts); i++) fr(ts[i]);
  free(x), free(wt), free(dy), free(dw0), free(fdw), free(rdw);
}

/* ---- batch norm ------------------------------------------------------------------------------- */

/* The residual block's end in one pass (bn_fwd_train_add_relu) gives the bits of bn_fwd_train, add and relu_fwd:
 * y, the saved statistics and the running ones; a shortcut in x's or y's memory is refused. */
static void test_bn_add_relu(synco_backend *be, int n, int c, int h, int w, int groups) {
  synco_bn_op op = {.n = n, .c = c, .h = h, .w = w, .groups = groups, .relu = 0, .eps = 1e-5f, .momentum = 0.1f,
                    .dtype = SYNCO_F32};
  CHECK(be->bn_fwd_train_add_relu != NULL);
  if (!be->bn_fwd_train_add_relu) return;
  CHECK_OK(be->bn_plan(be, &op));
  const size_t nx = (size_t)n * c * h * w, ns = (size_t)groups * c;
  float *x = rnd(nx, -2, 3), *r = rnd(nx, -1, 1), *gamma = rnd(c, 0.5f, 1.5f), *beta = rnd(c, -0.5f, 0.5f);
  float *rm[2] = {rnd(c, -0.2f, 0.2f), NULL}, *rv[2] = {rnd(c, 0.8f, 1.2f), NULL};
  rm[1] = dup(rm[0], c), rv[1] = dup(rv[0], c);
  float *mean[2] = {malloc(ns * 4), malloc(ns * 4)}, *inv[2] = {malloc(ns * 4), malloc(ns * 4)};
  synco_tensor tx = mk(be, n, c, h, w, x), tr = mk(be, n, c, h, w, r);
  synco_tensor ty[2] = {mk(be, n, c, h, w, NULL), mk(be, n, c, h, w, NULL)};
  CHECK_OK(be->bn_fwd_train(be, &op, &ty[0], mean[0], inv[0], rm[0], rv[0], &tx, gamma, beta));
  CHECK_OK(be->add(be, &ty[0], &tr, &tr, 1));
  CHECK_OK(be->relu_fwd(be, &ty[0], &ty[0]));
  CHECK_OK(be->bn_fwd_train_add_relu(be, &op, &ty[1], mean[1], inv[1], rm[1], rv[1], &tx, gamma, beta, &tr));
  CHECK(!memcmp(ty[0].data, ty[1].data, nx * sizeof(float)));
  CHECK(!memcmp(mean[0], mean[1], ns * 4) && !memcmp(inv[0], inv[1], ns * 4));
  CHECK(!memcmp(rm[0], rm[1], (size_t)c * 4) && !memcmp(rv[0], rv[1], (size_t)c * 4));
  int zeros = 0; /* the ReLU did cut something */
  for (size_t i = 0; i < nx; i++) zeros += ((float *)ty[1].data)[i] == 0.f;
  CHECK(zeros > 0 && (size_t)zeros < nx);
  CHECK(be->bn_fwd_train_add_relu(be, &op, &ty[1], mean[1], inv[1], rm[1], rv[1], &tx, gamma, beta, &ty[1]) ==
        SYNCO_ERR_ARG);
  be->bn_release(be, &op);
  fr(&tx), fr(&tr), fr(&ty[0]), fr(&ty[1]);
  float *fs[] = {x, r, gamma, beta, rm[0], rm[1], rv[0], rv[1], mean[0], mean[1], inv[0], inv[1]};
  for (size_t i = 0; i < sizeof(fs) / sizeof(*fs); i++) free(fs[i]);
}

static void test_bn(synco_backend *be, synco_backend *ref, int n, int c, int h, int w, int groups, int relu) {
  char what[96];
  synco_bn_op op = {.n = n, .c = c, .h = h, .w = w, .groups = groups, .relu = relu, .eps = 1e-5f, .momentum = 0.1f,
                    .dtype = SYNCO_F32};
  synco_bn_op rop = op;
  CHECK_OK(be->bn_plan(be, &op));
  CHECK_OK(ref->bn_plan(ref, &rop));
  const size_t nx = (size_t)n * c * h * w, ns = (size_t)groups * c;
  /* an offset and scale per element keep the statistics away from 0 and 1 */
  float *x = rnd(nx, -2, 3), *dy = rnd(nx, -1, 1), *gamma = rnd(c, 0.5f, 1.5f), *beta = rnd(c, -0.5f, 0.5f);
  float *rm0 = rnd(c, -0.2f, 0.2f), *rv0 = rnd(c, 0.8f, 1.2f), *dg0 = rnd(c, -1, 1), *db0 = rnd(c, -1, 1);
  float *frm = dup(rm0, c), *frv = dup(rv0, c), *rrm = dup(rm0, c), *rrv = dup(rv0, c);
  float *fmean = malloc(ns * 4), *finv = malloc(ns * 4), *rmean = malloc(ns * 4), *rinv = malloc(ns * 4);
  synco_tensor fx = mk(be, n, c, h, w, x), fy = mk(be, n, c, h, w, NULL), fdy = mk(be, n, c, h, w, dy);
  synco_tensor fdx = mk(be, n, c, h, w, NULL);
  synco_tensor rx = mk(ref, n, c, h, w, x), ry = mk(ref, n, c, h, w, NULL), rdy = mk(ref, n, c, h, w, dy);
  synco_tensor rdx = mk(ref, n, c, h, w, NULL);
  const char *tag = relu ? "+relu" : "";

  CHECK_OK(be->bn_fwd_train(be, &op, &fy, fmean, finv, frm, frv, &fx, gamma, beta));
  CHECK_OK(ref->bn_fwd_train(ref, &rop, &ry, rmean, rinv, rrm, rrv, &rx, gamma, beta));
  snprintf(what, sizeof what, "bn%s g%d c%d train y", tag, groups, c);
  cmp(what, be, &fy, &ry, ATOL, RTOL);
  CHECK_CLOSE("bn save_mean", fmean, rmean, ns, ATOL, RTOL);
  CHECK_CLOSE("bn save_invstd", finv, rinv, ns, ATOL, RTOL);
  CHECK_CLOSE("bn running_mean", frm, rrm, c, ATOL, RTOL);
  CHECK_CLOSE("bn running_var", frv, rrv, c, ATOL, RTOL);

  float *fdg = dup(dg0, c), *fdb = dup(db0, c), *rdg = dup(dg0, c), *rdb = dup(db0, c);
  CHECK_OK(be->bn_bwd(be, &op, &fdx, fdg, fdb, &fdy, &fy, &fx, gamma, fmean, finv));
  CHECK_OK(ref->bn_bwd(ref, &rop, &rdx, rdg, rdb, &rdy, &ry, &rx, gamma, rmean, rinv));
  snprintf(what, sizeof what, "bn%s g%d c%d dx", tag, groups, c);
  cmp(what, be, &fdx, &rdx, ATOL, RTOL);
  snprintf(what, sizeof what, "bn%s g%d c%d dgamma", tag, groups, c);
  CHECK_CLOSE(what, fdg, rdg, c, ATOL, RTOL);
  snprintf(what, sizeof what, "bn%s g%d c%d dbeta", tag, groups, c);
  CHECK_CLOSE(what, fdb, rdb, c, ATOL, RTOL);

  /* backward in place (dx = dy), as a layer may do */
  synco_tensor fdy2 = mk(be, n, c, h, w, dy);
  float *fdg2 = dup(dg0, c), *fdb2 = dup(db0, c);
  CHECK_OK(be->bn_bwd(be, &op, &fdy2, fdg2, fdb2, &fdy2, &fy, &fx, gamma, fmean, finv));
  snprintf(what, sizeof what, "bn%s g%d c%d dx in place", tag, groups, c);
  cmp(what, be, &fdy2, &rdx, ATOL, RTOL);
  CHECK_CLOSE("bn dgamma (in place)", fdg2, rdg, c, ATOL, RTOL);

  CHECK_OK(be->bn_fwd_eval(be, &op, &fy, &fx, gamma, beta, frm, frv));
  CHECK_OK(ref->bn_fwd_eval(ref, &rop, &ry, &rx, gamma, beta, rrm, rrv));
  snprintf(what, sizeof what, "bn%s g%d c%d eval y", tag, groups, c);
  cmp(what, be, &fy, &ry, ATOL, RTOL);

  be->bn_release(be, &op);
  ref->bn_release(ref, &rop);
  CHECK(op.impl == NULL);
  synco_tensor *ts[] = {&fx, &fy, &fdy, &fdx, &rx, &ry, &rdy, &rdx, &fdy2};
  for (size_t i = 0; i < sizeof(ts) / sizeof(*ts); i++) fr(ts[i]);
  float *fs[] = {x, dy, gamma, beta, rm0, rv0, dg0, db0, frm, frv, rrm, rrv, fmean, finv, rmean, rinv,
                 fdg, fdb, rdg, rdb, fdg2, fdb2};
  for (size_t i = 0; i < sizeof(fs) / sizeof(*fs); i++) free(fs[i]);
}

/* ---- pooling ---------------------------------------------------------------------------------- */

static void test_maxpool(synco_backend *be, synco_backend *ref, int n, int c, int h, int w) {
  synco_pool_op op = {.n = n, .c = c, .h = h, .w = w, .k = 3, .stride = 2, .pad = 1, .dtype = SYNCO_F32};
  op.oh = synco_conv_out_size(h, 3, 2, 1);
  op.ow = synco_conv_out_size(w, 3, 2, 1);
  synco_pool_op rop = op;
  CHECK_OK(be->pool_plan(be, &op));
  CHECK_OK(ref->pool_plan(ref, &rop));
  const size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * op.oh * op.ow;
  float *x = rnd(nx, -1, 1), *dy = rnd(ny, -1, 1);
  synco_tensor fx = mk(be, n, c, h, w, x), fy = mk(be, n, c, op.oh, op.ow, NULL);
  synco_tensor fdy = mk(be, n, c, op.oh, op.ow, dy), fdx = mk(be, n, c, h, w, NULL);
  synco_tensor rx = mk(ref, n, c, h, w, x), ry = mk(ref, n, c, op.oh, op.ow, NULL);
  synco_tensor rdy = mk(ref, n, c, op.oh, op.ow, dy), rdx = mk(ref, n, c, h, w, NULL);
  CHECK_OK(be->maxpool_fwd(be, &op, &fy, &fx));
  CHECK_OK(ref->maxpool_fwd(ref, &rop, &ry, &rx));
  cmp("maxpool y", be, &fy, &ry, 0, 0);
  CHECK_OK(be->maxpool_bwd(be, &op, &fdx, &fdy));
  CHECK_OK(ref->maxpool_bwd(ref, &rop, &rdx, &rdy));
  cmp("maxpool dx", be, &fdx, &rdx, ATOL, RTOL);
  be->pool_release(be, &op);
  ref->pool_release(ref, &rop);
  synco_tensor *ts[] = {&fx, &fy, &fdy, &fdx, &rx, &ry, &rdy, &rdx};
  for (size_t i = 0; i < sizeof(ts) / sizeof(*ts); i++) fr(ts[i]);
  free(x), free(dy);
}

static void test_avgpool(synco_backend *be, synco_backend *ref, int n, int c, int h, int w) {
  const size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c;
  float *x = rnd(nx, -1, 1), *dy = rnd(ny, -1, 1);
  synco_tensor fx = mk(be, n, c, h, w, x), fy = mk(be, n, c, 1, 1, NULL), fdy = mk(be, n, c, 1, 1, dy);
  synco_tensor fdx = mk(be, n, c, h, w, NULL);
  synco_tensor rx = mk(ref, n, c, h, w, x), ry = mk(ref, n, c, 1, 1, NULL), rdy = mk(ref, n, c, 1, 1, dy);
  synco_tensor rdx = mk(ref, n, c, h, w, NULL);
  CHECK(fy.layout == SYNCO_LAYOUT_PLAIN);
  CHECK_OK(be->avgpool_fwd(be, &fy, &fx));
  CHECK_OK(ref->avgpool_fwd(ref, &ry, &rx));
  CHECK_CLOSE("avgpool y", fy.data, ry.data, ny, ATOL, RTOL);
  CHECK_OK(be->avgpool_bwd(be, &fdx, &fdy));
  CHECK_OK(ref->avgpool_bwd(ref, &rdx, &rdy));
  cmp("avgpool dx", be, &fdx, &rdx, ATOL, RTOL);
  synco_tensor *ts[] = {&fx, &fy, &fdy, &fdx, &rx, &ry, &rdy, &rdx};
  for (size_t i = 0; i < sizeof(ts) / sizeof(*ts); i++) fr(ts[i]);
  free(x), free(dy);
}

/* ---- element-wise and matrices ---------------------------------------------------------------- */

static void test_eltwise(synco_backend *be, synco_backend *ref, int n, int c, int h, int w) {
  const size_t nx = (size_t)n * c * h * w;
  float *a = rnd(nx, -1, 1), *b = rnd(nx, -1, 1), *g = rnd(nx, -1, 1);
  synco_tensor fa = mk(be, n, c, h, w, a), fb = mk(be, n, c, h, w, b), fg = mk(be, n, c, h, w, g);
  synco_tensor fy = mk(be, n, c, h, w, NULL), fd = mk(be, n, c, h, w, NULL);
  synco_tensor ra = mk(ref, n, c, h, w, a), rb = mk(ref, n, c, h, w, b), rg = mk(ref, n, c, h, w, g);
  synco_tensor ry = mk(ref, n, c, h, w, NULL), rd = mk(ref, n, c, h, w, NULL);
  CHECK_OK(be->relu_fwd(be, &fy, &fa));
  CHECK_OK(ref->relu_fwd(ref, &ry, &ra));
  cmp("relu y", be, &fy, &ry, 0, 0);
  CHECK_OK(be->relu_bwd(be, &fd, &fg, &fy));
  CHECK_OK(ref->relu_bwd(ref, &rd, &rg, &ry));
  cmp("relu dx", be, &fd, &rd, 0, 0);
  CHECK_OK(be->add(be, &fy, &fa, &fb, 0));
  CHECK_OK(ref->add(ref, &ry, &ra, &rb, 0));
  cmp("add", be, &fy, &ry, 0, 0);
  CHECK_OK(be->add(be, &fy, &fg, NULL, 1));
  CHECK_OK(ref->add(ref, &ry, &rg, NULL, 1));
  cmp("add accumulate", be, &fy, &ry, 0, 0);
  /* add_relu_bwd: the reference's add, then its relu_bwd by a ReLU output (ry, zeros included), bit for bit, into a
   * third tensor and in place on either operand */
  CHECK(be->add_relu_bwd != NULL);
  CHECK_OK(ref->relu_fwd(ref, &ry, &ra));
  CHECK_OK(ref->add(ref, &rd, &rg, &rb, 0));
  CHECK_OK(ref->relu_bwd(ref, &rd, &rd, &ry));
  synco_tensor fr_y = mk(be, n, c, h, w, ry.data);
  for (int where = 0; where < 3 && be->add_relu_bwd; where++) {
    synco_tensor fg2 = mk(be, n, c, h, w, g), fb2 = mk(be, n, c, h, w, b), *to = where == 1 ? &fg2 : where == 2 ? &fb2 : &fd;
    CHECK_OK(be->add_relu_bwd(be, to, &fg2, &fb2, &fr_y));
    cmp(where ? "add_relu_bwd in place" : "add_relu_bwd", be, to, &rd, 0, 0);
    fr(&fg2), fr(&fb2);
  }
  fr(&fr_y);
  synco_tensor *ts[] = {&fa, &fb, &fg, &fy, &fd, &ra, &rb, &rg, &ry, &rd};
  for (size_t i = 0; i < sizeof(ts) / sizeof(*ts); i++) fr(ts[i]);
  free(a), free(b), free(g);
}

static void test_matrices(synco_backend *be, synco_backend *ref) {
  const int n = 6, in = 24, out = 10;
  float *x = rnd((size_t)n * in, -1, 1), *w = rnd((size_t)out * in, -1, 1), *b = rnd(out, -1, 1);
  float *dy = rnd((size_t)n * out, -1, 1), *dw0 = rnd((size_t)out * in, -1, 1), *db0 = rnd(out, -1, 1);
  float *rxd = ref_in(x, (size_t)n * in, g_bf16), *rw = ref_in(w, (size_t)out * in, g_bf16);
  float *rdyd = ref_in(dy, (size_t)n * out, g_bf16);
  synco_tensor fx = mk(be, n, in, 1, 1, x), fy = mk(be, n, out, 1, 1, NULL), fdy = mk(be, n, out, 1, 1, dy);
  synco_tensor fdx = mk(be, n, in, 1, 1, NULL), ry = mk(ref, n, out, 1, 1, NULL), rdx = mk(ref, n, in, 1, 1, NULL);
  synco_tensor rx = mk(ref, n, in, 1, 1, rxd), rdy = mk(ref, n, out, 1, 1, rdyd);
  const double atol = tol_a(), rtol = tol_r();
  CHECK_OK(be->linear_fwd(be, &fy, &fx, w, b));
  CHECK_OK(ref->linear_fwd(ref, &ry, &rx, rw, b));
  CHECK_CLOSE("linear y", fy.data, ry.data, (size_t)n * out, atol, rtol);
  if (g_bf16) {
    synco_tensor ux = mk(ref, n, in, 1, 1, x), uy = mk(ref, n, out, 1, 1, NULL);
    CHECK_OK(ref->linear_fwd(ref, &uy, &ux, w, b));
    note_bf16(fy.data, uy.data, (size_t)n * out);
    fr(&ux), fr(&uy);
  }
  float *fdw = dup(dw0, (size_t)out * in), *rdw = dup(dw0, (size_t)out * in), *fdb = dup(db0, out),
        *rdb = dup(db0, out);
  CHECK_OK(be->linear_bwd(be, &fdx, fdw, fdb, &fdy, &fx, w));
  CHECK_OK(ref->linear_bwd(ref, &rdx, rdw, rdb, &rdy, &rx, rw));
  CHECK_CLOSE("linear dx", fdx.data, rdx.data, (size_t)n * in, atol, rtol);
  CHECK_CLOSE("linear dw", fdw, rdw, (size_t)out * in, atol, rtol);
  /* db sums dy in fp32 under every precision: the unrounded dy */
  float *udb = dup(db0, out);
  synco_tensor udy = mk(ref, n, out, 1, 1, dy);
  CHECK_OK(ref->linear_bwd(ref, NULL, NULL, udb, &udy, &rx, NULL));
  CHECK_CLOSE("linear db", fdb, udb, out, ATOL, RTOL);
  fr(&udy), free(udb);
  ref_free(rxd, x), ref_free(rw, w), ref_free(rdyd, dy);
  float fn[6], rn[6];
  synco_tensor ux = mk(ref, n, in, 1, 1, x); /* L2 normalization is fp32 under every precision */
  CHECK_OK(be->l2norm_fwd(be, &fdx, fn, &fx));
  CHECK_OK(ref->l2norm_fwd(ref, &rdx, rn, &ux));
  fr(&ux);
  CHECK_CLOSE("l2norm y", fdx.data, rdx.data, (size_t)n * in, ATOL, RTOL);
  CHECK_CLOSE("l2norm norms", fn, rn, n, ATOL, RTOL);
  synco_tensor fg = mk(be, n, in, 1, 1, x), fo = mk(be, n, in, 1, 1, NULL), ro = mk(ref, n, in, 1, 1, NULL);
  CHECK_OK(be->l2norm_bwd(be, &fo, &fg, &fdx, fn));
  CHECK_OK(ref->l2norm_bwd(ref, &ro, &fg, &rdx, rn));
  CHECK_CLOSE("l2norm dx", fo.data, ro.data, (size_t)n * in, ATOL, RTOL);
  synco_tensor *ts[] = {&fx, &fy, &fdy, &fdx, &ry, &rdx, &rx, &rdy, &fg, &fo, &ro};
  for (size_t i = 0; i < sizeof(ts) / sizeof(*ts); i++) fr(ts[i]);
  free(x), free(w), free(b), free(dy), free(dw0), free(db0), free(fdw), free(rdw), free(fdb), free(rdb);
}

static void test_errors(synco_backend *be) {
  /* bf16 needs AVX-512; fp32 tensors of the wrong layout are refused with a message, not read */
  synco_conv_op op = {.n = 2, .cin = 16, .h = 8, .w = 8, .cout = 16, .kh = 3, .kw = 3, .stride = 1, .pad = 1,
                      .dtype = SYNCO_BF16};
  const synco_status s = be->conv_plan(be, &op);
  CHECK(s == SYNCO_OK || s == SYNCO_ERR_UNSUPPORTED);
  if (s == SYNCO_OK) be->conv_release(be, &op);
  op.dtype = SYNCO_F32;
  op.oh = op.ow = 0;
  CHECK_OK(be->conv_plan(be, &op));
  CHECK(op.oh == 8 && op.ow == 8);
  float w[16 * 16 * 9] = {0};
  synco_tensor x = mk(be, 2, 16, 8, 8, NULL), y = mk(be, 2, 16, 8, 8, NULL);
  x.layout = x.layout == SYNCO_LAYOUT_PLAIN ? SYNCO_LAYOUT_NCHW8C : SYNCO_LAYOUT_PLAIN;
  CHECK(be->conv_fwd(be, &op, &y, &x, w) == SYNCO_ERR_ARG);
  be->conv_release(be, &op);
  fr(&x), fr(&y);
}

/* No convolution planned on this backend took one of oneDNN's reference kernels (be->kernels names them). */
static void test_no_ref_kernels(synco_backend *be) {
  char *k = synco_test_kernel_log(be);
  CHECK(k[0] == '[' && strstr(k, "\"fwd\":") != NULL);
  if (strstr(k, "ref")) fprintf(stderr, "a reference kernel was chosen: %s\n", k);
  CHECK(strstr(k, "ref") == NULL);
  free(k);
}

/* Plans op; the backend's kernel log, whose last entry is op's (malloc'd). */
static char *plan_log(synco_backend *be, synco_conv_op *op) {
  CHECK_OK(be->conv_plan(be, op));
  return synco_test_kernel_log(be);
}

/* Plans a 3x3 stride-1 layer of c channels into c (8x8, batch 2) on be and returns be's kernel list (malloc'd). */
/* A c -> c 3x3 stride-1 layer of n images of side x side (plan_square: 2 of 8x8). */
static char *plan_square_n(synco_backend *be, synco_conv_op *op, int c, int n, int side) {
  *op = (synco_conv_op){.n = n, .cin = c, .h = side, .w = side, .cout = c, .oh = side, .ow = side, .kh = 3, .kw = 3,
                        .stride = 1, .pad = 1, .dtype = SYNCO_F32};
  return plan_log(be, op);
}

static char *plan_square(synco_backend *be, synco_conv_op *op, int c) { return plan_square_n(be, op, c, 2, 8); }

/* The default (SYNCO_CONV_ALGO unset) is the fixed rule: nothing is measured, a 64-channel 3x3 stride-1 layer takes
 * synco's Winograd where the layer is nChw8c (AVX2 machines: rule_kind's cases below), one of oneDNN's otherwise, and
 * an 8 -> 8 layer (nChw8c) takes synco's direct8 where the CPU has AVX-512. */
static void test_default_rule(int block) {
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_cpu_create(&be));
  if (!be) return;
  synco_conv_op op;
  char *k = plan_square_n(be, &op, 64, 32, 8);
  CHECK(strstr(k, "measured_ms") == NULL);
  const int wino = block == 8 && synco_wino_available();
  CHECK((strstr(k, "\"fwd\":\"synco:winograd") != NULL) == wino);
  if ((strstr(k, "\"fwd\":\"synco:winograd") != NULL) != wino) fprintf(stderr, "default rule, block %d: %s\n", block, k);
  const int dnnl_wino = strstr(k, "\"fwd\":\"jit_wino") != NULL; /* oneDNN has a Winograd kernel (AVX-512) */
  if (wino && !getenv("SYNCO_WINO_TILE") && !getenv("SYNCO_CONV_ALGO")) { /* the rule, not a forced kernel */
    CHECK(strstr(k, "\"fwd\":\"synco:winograd_f4x3:nChw8c\"") && strstr(k, "\"bwd_data\":\"synco:winograd_f4x3:nChw8c\"") &&
          strstr(k, "\"bwd_weights\":\"synco:winograd_f2x3:nChw8c\""));
    /* channels, side, batch: the forward's kernel and backward weights' (0: oneDNN's direct) */
    const int cases[6][5] = {{64, 6, 2, 2, 2},    /* 6x6: F(2x2, 3x3) from 64 channels */
                             {512, 4, 2, 2, 2},   /* over 256 channels: F(2x2, 3x3) */
                             {256, 8, 16, 4, 2},  /* 1,024 output pixels */
                             {64, 4, 32, 0, 2},   /* 512 output pixels: direct for the data passes */
                             {8, 32, 2, 4, 0},    /* 8 channels: F(4x4, 3x3) forward, direct backward weights */
                             {16, 16, 4, 4, 0}};
    for (int i = 0; i < 6; i++) {
      synco_conv_op o;
      char *e = plan_square_n(be, &o, cases[i][0], cases[i][2], cases[i][1]), fwd[64], bww[64];
      if (cases[i][3]) snprintf(fwd, sizeof fwd, "\"fwd\":\"synco:winograd_f%dx3:nChw8c\"", cases[i][3]);
      else snprintf(fwd, sizeof fwd, "\"fwd\":\"jit:");
      if (cases[i][4]) snprintf(bww, sizeof bww, "\"bwd_weights\":\"synco:winograd_f2x3:nChw8c\"");
      else snprintf(bww, sizeof bww, "\"bwd_weights\":\"jit:");
      CHECK(strstr(e, fwd) != NULL && strstr(e, bww) != NULL);
      if (!strstr(e, fwd) || !strstr(e, bww))
        fprintf(stderr, "default rule, %d channels of %dx%d, batch %d: %s\n", cases[i][0], cases[i][1], cases[i][1],
                cases[i][2], e);
      free(e);
      be->conv_release(be, &o);
    }
  }
  free(k);
  be->conv_release(be, &op);
  /* a bad SYNCO_WINO_TILE is refused when a layer is planned */
  setenv("SYNCO_WINO_TILE", "3", 1);
  op = (synco_conv_op){.n = 2, .cin = 64, .h = 8, .w = 8, .cout = 64, .oh = 8, .ow = 8, .kh = 3, .kw = 3, .stride = 1,
                       .pad = 1, .dtype = SYNCO_F32};
  CHECK(be->conv_plan(be, &op) == SYNCO_ERR_ARG);
  CHECK(strstr(synco_last_error(), "SYNCO_WINO_TILE=3") != NULL);
  unsetenv("SYNCO_WINO_TILE");
  /* where oneDNN has one, its Winograd also takes every pass of a 32-channel layer and the backward weights of a
   * 16-channel one, where the batch has enough output pixels (rule_kind's measurements): 32 images of 32x32 do, 2 of
   * 8x8 do not (direct for those passes, or synco's F(4x4, 3x3) below) */
  for (int c = 16; c <= 32 && dnnl_wino; c += 16)
    for (int big = 0; big <= 1; big++) {
      k = big ? plan_square_n(be, &op, c, 32, 32) : plan_square(be, &op, c);
      const char *e = strrchr(k, '{'), *f = pass_kernel(e, "fwd"), *w = pass_kernel(e, "bwd_weights");
      const int f_wino = f && strncmp(f, "jit_wino", 8) == 0, w_wino = w && strncmp(w, "jit_wino", 8) == 0;
      CHECK(f && f_wino == (big && c == 32));
      CHECK(w && w_wino == (big || c == 32));
      /* and on a Zen 4 (AMD family 19h, AVX-512) synco's F(4x4, 3x3) takes the 16-channel layer's forward and
       * backward data from 8,192 output pixels over the batch */
      const char *f4 = "synco:winograd_f4x3:nChw16c", *d = pass_kernel(e, "bwd_data");
      const int own = c == 16 && big && synco_wino_available() && __builtin_cpu_is("amdfam19h");
      const int f_own = f && !strncmp(f, f4, strlen(f4)), d_own = d && !strncmp(d, f4, strlen(f4));
      CHECK(f && f_own == own);
      CHECK(d && d_own == own);
      if (!f || f_wino != (big && c == 32) || !w || w_wino != (big || c == 32) || f_own != own || !d || d_own != own)
        fprintf(stderr, "default rule, %d channels, %s batch: %s\n", c, big ? "a large" : "a small", e ? e : k);
      free(k);
      be->conv_release(be, &op);
    }
  k = plan_square(be, &op, 8);
  const int d8 = synco_direct8_available();
  CHECK((strstr(k, "\"fwd\":\"synco:direct8_avx512:nChw8c\"") != NULL) == d8);
  CHECK((strstr(k, "\"bwd_weights\":\"synco:direct8_avx512:nChw8c\"") != NULL) == d8);
  if (!d8) printf("SKIP (direct8 part): this CPU has no AVX-512; 8-channel layers stay on oneDNN\n");
  free(k);
  be->conv_release(be, &op);
  /* 24 channels (nChw8c on AVX-512) take direct8 too, but on a Zen 4 synco's F(4x4, 3x3) for the forward and
   * backward data where the batch has 8,192 output pixels (32 images of 32x32 do, 2 of 8x8 do not) */
  for (int big = 0; big <= 1 && d8; big++) {
    k = big ? plan_square_n(be, &op, 24, 32, 32) : plan_square(be, &op, 24);
    const char *e = strrchr(k, '{'), *f4 = "synco:winograd_f4x3:nChw8c", *d8k = "synco:direct8_avx512:nChw8c";
    const char *want = big && synco_wino_available() && __builtin_cpu_is("amdfam19h") ? f4 : d8k;
    const char *f = pass_kernel(e, "fwd"), *d = pass_kernel(e, "bwd_data"), *w = pass_kernel(e, "bwd_weights");
    const int ok = f && d && w && !strncmp(f, want, strlen(want)) && !strncmp(d, want, strlen(want)) &&
                   !strncmp(w, d8k, strlen(d8k));
    CHECK(ok);
    if (!ok) fprintf(stderr, "default rule, 24 channels, %s batch: %s\n", big ? "a large" : "a small", e ? e : k);
    free(k);
    be->conv_release(be, &op);
  }
  /* the 8 -> 16 stride-2 layers where 16 channels are nChw16c (AVX-512): synco's stride2 kernels for the forwards and
   * for the 1x1 layer's backward passes; oneDNN's for the 3x3 layer's backward passes */
  for (int kk = 1; kk <= 3 && block == 16; kk += 2) {
    op = (synco_conv_op){.n = 2, .cin = 8, .h = 16, .w = 16, .cout = 16, .kh = kk, .kw = kk, .stride = 2,
                         .pad = kk / 2, .dtype = SYNCO_F32};
    k = plan_log(be, &op);
    const char *e = strrchr(k, '{'), *s2 = "synco:stride2_avx512:nChw8c->nChw16c";
    const int s2_ok = synco_stride2_available();
    CHECK(e && (strncmp(pass_kernel(e, "fwd"), s2, strlen(s2)) == 0) == s2_ok);
    CHECK(e && (strncmp(pass_kernel(e, "bwd_data"), s2, strlen(s2)) == 0) == (s2_ok && kk == 1));
    CHECK(e && (strncmp(pass_kernel(e, "bwd_weights"), s2, strlen(s2)) == 0) == (s2_ok && kk == 1));
    free(k);
    be->conv_release(be, &op);
  }
  /* the CIFAR stem's forward takes synco's stem kernel on AVX-512 into 8 channels; into 64 it keeps oneDNN's */
  for (int c = 8; c <= 64; c *= 8) {
    op = (synco_conv_op){.n = 2, .cin = 3, .h = 8, .w = 8, .cout = c, .kh = 3, .kw = 3, .stride = 1, .pad = 1,
                         .dtype = SYNCO_F32};
    k = plan_log(be, &op);
    const char *f = pass_kernel(strrchr(k, '{'), "fwd");
    CHECK(f && (strncmp(f, "synco:stem_avx512:", 18) == 0) == (synco_stem_available() && c == 8));
    if (!synco_stem_available()) printf("SKIP (stem part): this CPU has no AVX-512; the stem stays on oneDNN\n");
    free(k);
    be->conv_release(be, &op);
  }
  synco_backend_destroy(be);
}

/* synco's own convolutions give the same bits with 1 and 2 threads: Winograd's chunking of tiles does not depend on
 * the thread count, and chunks go to threads dynamically without changing any sum; direct8, the stem and stride2
 * kernels write each output from one thread and sum backward weights per image, then over images in order. So a
 * run's results do not depend on --threads or on which thread was slower. Planned at 2 threads with the kernel forced
 * (SYNCO_CONV_ALGO=algo); the passes it has (the stem: forward only) run at 1 and at 2 threads. */
static void test_own_threads_agree(synco_backend *be, const char *algo_forced, int n, int cin, int cout, int h, int w,
                                   int k, int s) {
  synco_conv_op op = {.n = n, .cin = cin, .h = h, .w = w, .cout = cout, .kh = k, .kw = k, .stride = s, .pad = k / 2,
                      .dtype = SYNCO_F32};
  op.oh = synco_conv_out_size(h, k, s, k / 2);
  op.ow = synco_conv_out_size(w, k, s, k / 2);
  const int threads = omp_get_max_threads(), all = strcmp(algo_forced, "stem") != 0;
  omp_set_num_threads(2);
  char *algo = getenv("SYNCO_CONV_ALGO") ? strdup(getenv("SYNCO_CONV_ALGO")) : NULL;
  setenv("SYNCO_CONV_ALGO", algo_forced, 1);
  char *log = plan_log(be, &op), name[48];
  if (algo) setenv("SYNCO_CONV_ALGO", algo, 1);
  else unsetenv("SYNCO_CONV_ALGO");
  free(algo);
  snprintf(name, sizeof name, "\"synco:%s_avx512:", algo_forced);
  const char *e = strrchr(log, '{');
  if (!strcmp(algo_forced, "stem") || !strcmp(algo_forced, "stride2")) { /* they apply where the caller runs them */
    CHECK(e && strstr(e, name) == pass_kernel(e, "fwd") - 1);
    if (all) CHECK(e && strstr(pass_kernel(e, "bwd_weights"), name + 1) == pass_kernel(e, "bwd_weights"));
  }
  free(log);
  const size_t nx = (size_t)n * cin * h * w, ny = (size_t)n * cout * op.oh * op.ow, nw = (size_t)cout * cin * k * k;
  float *x = rnd(nx, -1, 1), *wt = rnd(nw, -0.5f, 0.5f), *dy = rnd(ny, -1, 1);
  synco_tensor tx = mk(be, n, cin, h, w, x), tdy = mk(be, n, cout, op.oh, op.ow, dy);
  synco_tensor ty[2] = {mk(be, n, cout, op.oh, op.ow, NULL), mk(be, n, cout, op.oh, op.ow, NULL)};
  synco_tensor tdx[2] = {mk(be, n, cin, h, w, NULL), mk(be, n, cin, h, w, NULL)};
  float *dw[2] = {calloc(nw, sizeof(float)), calloc(nw, sizeof(float))};
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t + 1);
    CHECK_OK(be->conv_fwd(be, &op, &ty[t], &tx, wt));
    if (!all) continue;
    CHECK_OK(be->conv_bwd_data(be, &op, &tdx[t], &tdy, wt));
    CHECK_OK(be->conv_bwd_weights(be, &op, dw[t], &tdy, &tx));
  }
  omp_set_num_threads(threads);
  CHECK(!memcmp(ty[0].data, ty[1].data, ny * sizeof(float)));
  CHECK(!memcmp(tdx[0].data, tdx[1].data, nx * sizeof(float)));
  CHECK(!memcmp(dw[0], dw[1], nw * sizeof(float)));
  be->conv_release(be, &op);
  synco_tensor *ts[] = {&tx, &tdy, &ty[0], &ty[1], &tdx[0], &tdx[1]};
  for (size_t i = 0; i < sizeof(ts) / sizeof(*ts); i++) fr(ts[i]);
  free(x), free(wt), free(dy), free(dw[0]), free(dw[1]);
}

/* Under bf16 without AMX the rule takes fp32 kernels where oneDNN's bf16 ones are slower (rule_kind): direct8 for an
 * 8 -> 8 layer (nChw8c; Zen 4, idle, batch 64, 32x32, ms of oneDNN's bf16 kernel / direct8: forward 1.88 / 0.73,
 * backward data 2.68 / 0.73, backward weights 18.1 / 0.35); oneDNN's fp32 direct for every pass of a 1x1 layer under 64 channels and for the backward weights of
 * a 3x3 stride-2 one, whose forward stays bf16; no backward weights on oneDNN's x64:gemm:jit (a CIFAR stem into 8
 * channels). On AMX none of these. */
static void test_bf16_rule(void) {
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_cpu_create(&be));
  if (!be) return;
  CHECK_OK(synco_backend_set_precision(be, "bf16"));
  synco_conv_op op;
  char *k = plan_square(be, &op, 8);
  const int amx = strstr(k, "amx") != NULL;
  /* direct8 in bf16 for all three passes (every bf16 CPU has AVX512-BF16) */
  CHECK(strstr(k, "\"fwd\":\"synco:direct8_avx512_bf16:nChw8c\"") != NULL || amx);
  CHECK(strstr(k, "\"bwd_data\":\"synco:direct8_avx512_bf16:nChw8c\"") != NULL || amx);
  CHECK(strstr(k, "\"bwd_weights\":\"synco:direct8_avx512_bf16:nChw8c\"") != NULL || amx);
  if (!amx && strstr(k, "direct8") == NULL) fprintf(stderr, "bf16 rule, 8 channels: %s\n", k);
  free(k);
  be->conv_release(be, &op);
  /* the CIFAR stem's forward into 8 channels on synco's stem kernel, in fp32; into 64 on oneDNN's bf16 kernel */
  for (int c = 8; c <= 64 && !amx; c *= 8) {
    op = (synco_conv_op){.n = 2, .cin = 3, .h = 8, .w = 8, .cout = c, .kh = 3, .kw = 3, .stride = 1, .pad = 1,
                         .dtype = SYNCO_F32};
    k = plan_log(be, &op);
    const char *e = strrchr(k, '{'), *f = pass_kernel(e, "fwd");
    CHECK(f && (strncmp(f, "synco:stem_avx512:nChw8c", 24) == 0) == (c == 8) && pass_fp32(e, "fwd") == (c == 8));
    free(k);
    be->conv_release(be, &op);
  }
  const int shapes[2][2] = {{1, 0}, {3, 1}}; /* kernel, padding: a 1x1 and a 3x3 layer, stride 2, 16 -> 32 */
  for (int i = 0; i < 2 && !amx; i++) {
    op = (synco_conv_op){.n = 2, .cin = 16, .h = 8, .w = 8, .cout = 32, .kh = shapes[i][0], .kw = shapes[i][0],
                         .stride = 2, .pad = shapes[i][1], .dtype = SYNCO_F32};
    k = plan_log(be, &op);
    const char *e = strrchr(k, '{'); /* this layer's entry, the log's last */
    CHECK(e && pass_fp32(e, "bwd_weights"));
    CHECK(e && pass_fp32(e, "fwd") == (i == 0) && pass_fp32(e, "bwd_data") == (i == 0));
    if (!e || !pass_fp32(e, "bwd_weights")) fprintf(stderr, "bf16 rule, %dx%d stride 2: %s\n", shapes[i][0], shapes[i][0], k);
    free(k);
    be->conv_release(be, &op);
  }
  /* a 32-channel layer of at most 16x16 outputs: oneDNN's fp32 Winograd for the backward weights, where it has one;
   * the forward stays bf16 */
  k = plan_square(be, &op, 64); /* oneDNN has a Winograd kernel here when a 64-channel layer's backward weights take it */
  const char *w = pass_kernel(strrchr(k, '{'), "bwd_weights");
  const int dnnl_wino = w && !strncmp(w, "jit_wino", 8);
  free(k);
  be->conv_release(be, &op);
  k = plan_square(be, &op, 32);
  const char *e = strrchr(k, '{');
  w = pass_kernel(e, "bwd_weights");
  CHECK(amx || !dnnl_wino || (w && !strncmp(w, "jit_wino", 8) && pass_fp32(e, "bwd_weights") && !pass_fp32(e, "fwd")));
  if (!amx && !dnnl_wino) printf("SKIP (bf16 Winograd part): oneDNN has no Winograd kernel on this CPU\n");
  free(k);
  be->conv_release(be, &op);
  if (!amx) {
    op = (synco_conv_op){.n = 2, .cin = 3, .h = 8, .w = 8, .cout = 8, .kh = 3, .kw = 3, .stride = 1, .pad = 1,
                         .dtype = SYNCO_F32};
    k = plan_log(be, &op);
    const char *w = pass_kernel(strrchr(k, '{'), "bwd_weights");
    CHECK(w && strncmp(w, "x64:gemm", 8) != 0);
    if (!w || !strncmp(w, "x64:gemm", 8)) fprintf(stderr, "bf16 rule, stem 3 -> 8: %s\n", k);
    free(k);
    be->conv_release(be, &op);
  }
  synco_backend_destroy(be);
}

/* op's three passes on be from plain x, wt and dy (planned here, released after): y and dx in plain order, dw. */
static void conv_passes(synco_backend *be, synco_conv_op *op, const float *x, const float *wt, const float *dy,
                        float *y, float *dx, float *dw) {
  CHECK_OK(be->conv_plan(be, op));
  synco_tensor tx = mk(be, op->n, op->cin, op->h, op->w, x), tdy = mk(be, op->n, op->cout, op->oh, op->ow, dy);
  synco_tensor ty = mk(be, op->n, op->cout, op->oh, op->ow, NULL), tdx = mk(be, op->n, op->cin, op->h, op->w, NULL);
  CHECK_OK(be->conv_fwd(be, op, &ty, &tx, wt));
  CHECK_OK(be->conv_bwd_data(be, op, &tdx, &tdy, wt));
  CHECK_OK(be->conv_bwd_weights(be, op, dw, &tdy, &tx));
  CHECK_OK(be->to_plain(be, y, &ty));
  CHECK_OK(be->to_plain(be, dx, &tdx));
  be->conv_release(be, op);
  fr(&tx), fr(&tdy), fr(&ty), fr(&tdx);
}

/* Whether the convolutions multiply in bf16 under --precision bf16: by default yes, but on an Intel CPU with
 * AVX512-BF16 and no AMX, whose bf16 convolution kernels are the slower (bf16_conv_pays in cpu_backend.c);
 * SYNCO_BF16_CONV chooses on any bf16 CPU (a bad value fails a bf16 run, not an fp32 one). Where they do not, every
 * pass says "(fp32)" in the kernel log, and a bf16 backend's convolutions give an fp32 backend's bits (the same kernels
 * on the same tensors): checked on direct8's 8-channel layer, a 64-channel 3x3 and a 1x1 stride-2 layer, with
 * SYNCO_BF16_CONV=fp32 so that it runs on every bf16 CPU. */
static void test_bf16_conv_choice(void) {
  const int intel_no_amx = __builtin_cpu_is("intel") && (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_amx) !=
                                                            dnnl_cpu_isa_avx512_core_amx;
  const char *set[] = {NULL, "bf16", "fp32"};
  for (int i = 0; i < 3; i++) {
    if (set[i]) setenv("SYNCO_BF16_CONV", set[i], 1);
    else unsetenv("SYNCO_BF16_CONV");
    synco_backend *be = NULL;
    CHECK_OK(synco_backend_cpu_create(&be));
    if (!be) continue;
    CHECK_OK(synco_backend_set_precision(be, "bf16"));
    const int want = i == 0 ? !intel_no_amx : i == 1;
    CHECK(synco_backend_cpu_bf16_conv(be) == want);
    /* a run's header line says where the convolutions run fp32 under bf16 */
    CHECK((strstr(synco_backend_precision_label(be, "bf16"), "convolutions in fp32") != NULL) == !want);
    synco_conv_op op;
    char *k = plan_square(be, &op, 8);
    const char *e = strrchr(k, '{');
    CHECK(e && (pass_fp32(e, "fwd") && pass_fp32(e, "bwd_data") && pass_fp32(e, "bwd_weights")) == !want);
    free(k);
    be->conv_release(be, &op);
    synco_backend_destroy(be);
  }
  setenv("SYNCO_BF16_CONV", "invalid", 1);
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_cpu_create(&be));
  CHECK(be && synco_backend_set_precision(be, "bf16") == SYNCO_ERR_ARG);
  CHECK(strstr(synco_last_error(), "SYNCO_BF16_CONV=invalid") != NULL);
  CHECK(be && synco_backend_set_precision(be, "fp32") == SYNCO_OK); /* means nothing to an fp32 run */
  synco_backend_destroy(be);

  setenv("SYNCO_BF16_CONV", "fp32", 1);
  const int shapes[3][5] = {{8, 8, 16, 3, 1}, {64, 64, 8, 3, 1}, {16, 32, 8, 1, 2}}; /* cin, cout, h = w, k, stride */
  for (int s = 0; s < 3; s++) {
    const int *d = shapes[s], oh = synco_conv_out_size(d[2], d[3], d[4], d[3] / 2);
    synco_conv_op op = {.n = 3, .cin = d[0], .h = d[2], .w = d[2], .cout = d[1], .oh = oh, .ow = oh, .kh = d[3],
                        .kw = d[3], .stride = d[4], .pad = d[3] / 2, .dtype = SYNCO_F32};
    const size_t nx = (size_t)op.n * d[0] * d[2] * d[2], ny = (size_t)op.n * d[1] * oh * oh,
                 nw = (size_t)d[1] * d[0] * d[3] * d[3];
    float *x = rnd(nx, -1, 1), *wt = rnd(nw, -0.5f, 0.5f), *dy = rnd(ny, -1, 1);
    float *y[2], *dx[2], *dw[2];
    for (int b = 0; b < 2; b++) {
      y[b] = malloc(ny * sizeof(float)), dx[b] = malloc(nx * sizeof(float)), dw[b] = calloc(nw, sizeof(float));
      synco_backend *bb = NULL;
      CHECK_OK(synco_backend_cpu_create(&bb));
      if (!bb) continue;
      CHECK_OK(synco_backend_set_precision(bb, b ? "bf16" : "fp32"));
      conv_passes(bb, &op, x, wt, dy, y[b], dx[b], dw[b]);
      synco_backend_destroy(bb);
    }
    CHECK(!memcmp(y[0], y[1], ny * sizeof(float)) && !memcmp(dx[0], dx[1], nx * sizeof(float)) &&
          !memcmp(dw[0], dw[1], nw * sizeof(float)));
    for (int b = 0; b < 2; b++) free(y[b]), free(dx[b]), free(dw[b]);
    free(x), free(wt), free(dy);
  }
  unsetenv("SYNCO_BF16_CONV");
}

/* synco_dnnl_round_bf16, which bf16 convolution passes use for their inputs in the layer's own layout, against the
 * oneDNN reorder it stands for (f32 -> bf16 in nChw16c or nChw8c), bit for bit: random values over a wide range of
 * exponents, rounding ties, denormals (flushed to zero by both), infinities and NaNs; lengths with a tail of 8 or 16
 * values and over several of its chunks. */
static void test_round_bf16(synco_backend *be) {
  if (!synco_dnnl_round_bf16_available()) {
    printf("SKIP (bf16 rounding): this CPU has no AVX512-BF16\n");
    return;
  }
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  static const uint32_t special[] = {0x00000001u, 0x007fffffu, 0x80400000u, 0x3f808000u, 0x3f818000u, 0x3f80ffffu,
                                     0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00001u, 0xff800001u, 0x80000000u};
  const int shapes[][3] = {{1, 16, 1}, {1, 16, 9}, {3, 16, 899}, {1, 8, 1}, {2, 8, 77}}; /* n, c, h*w */
  for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
    const int n = shapes[t][0], ch = shapes[t][1], hw = shapes[t][2];
    const size_t len = (size_t)n * ch * hw;
    float *in = rnd(len, -1, 1);
    for (size_t i = 0; i < len; i++) {
      const int e = (int)(i * 2654435761u % 240u) - 130; /* 2^-130 .. 2^109 */
      in[i] = ldexpf(in[i], e);
      if (i % 7 == 3) memcpy(&in[i], &special[i / 7 % (sizeof special / sizeof *special)], sizeof(float));
    }
    uint16_t *ours = calloc(len, sizeof *ours), *theirs = calloc(len, sizeof *theirs);
    synco_dnnl_round_bf16(ours, in, len);
    synco_dnnl_md ms = {0}, md = {0};
    synco_dnnl_prim r = {0};
    dnnl_memory_t m1 = NULL, m2 = NULL;
    const synco_layout l = ch == 16 ? SYNCO_LAYOUT_NCHW16C : SYNCO_LAYOUT_NCHW8C;
    CHECK_OK(synco_dnnl_md_act(&ms, n, ch, 1, hw, SYNCO_F32, l));
    CHECK_OK(synco_dnnl_md_act(&md, n, ch, 1, hw, SYNCO_BF16, l));
    CHECK_OK(synco_dnnl_reorder_make(c, &r, SYNCO_DNNL_MD(ms), SYNCO_DNNL_MD(md), c->attr));
    CHECK_OK(synco_dnnl_mem(c, &m1, SYNCO_DNNL_MD(ms)));
    CHECK_OK(synco_dnnl_mem(c, &m2, SYNCO_DNNL_MD(md)));
    CHECK_OK(synco_dnnl_bind(m1, in));
    CHECK_OK(synco_dnnl_bind(m2, theirs));
    const dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, m1}, {DNNL_ARG_DST, m2}};
    CHECK_OK(synco_dnnl_exec(c, &r, 2, a));
    size_t diff = 0, first = len;
    for (size_t i = 0; i < len; i++)
      if (ours[i] != theirs[i] && diff++ == 0) first = i;
    CHECK(diff == 0);
    if (diff) {
      uint32_t u;
      memcpy(&u, &in[first], sizeof u);
      fprintf(stderr, "round_bf16, %zu values: %zu differ from oneDNN's reorder, first [%zu] %08x: %04x vs %04x\n", len,
              diff, first, u, ours[first], theirs[first]);
    }
    synco_dnnl_mem_free(&m1);
    synco_dnnl_mem_free(&m2);
    synco_dnnl_prim_free(&r);
    synco_dnnl_md_free(&ms);
    synco_dnnl_md_free(&md);
    free(in);
    free(ours);
    free(theirs);
  }
}

static void run_all(synco_backend *be, synco_backend *ref, int block, int full) {
  test_layouts(be, block);
  /* the narrow layers of a --width 8 ResNet: 8 channels (nChw8c, plain with blocks of 16) into 16 (nChw16c), where
   * oneDNN has only its reference kernel for the layer's own layouts on AVX-512 */
  test_conv(be, ref, 3, 8, 8, 8, 16, 3, 2, 1);
  test_conv(be, ref, 3, 8, 8, 8, 16, 1, 2, 0);
  test_conv(be, ref, 2, 8, 6, 6, 8, 3, 1, 1);
  test_conv(be, ref, 2, 24, 6, 6, 48, 3, 2, 1);   /* 24 channels: nChw8c, into blocks of 16 */
  test_conv(be, ref, 2, 16, 8, 6, 16, 3, 1, 1);   /* Winograd on blocks of 16 where the block is 16 */
  test_conv(be, ref, 2, 16, 9, 9, 24, 3, 1, 1);   /* 3x3 s1 p1 */
  test_conv(be, ref, 2, 16, 10, 10, 32, 3, 2, 1); /* 3x3 s2 p1 */
  test_conv(be, ref, 2, 16, 9, 9, 32, 1, 2, 0);   /* 1x1 s2 (downsample shortcut) */
  test_conv(be, ref, 2, 3, 20, 18, 16, 7, 2, 3);  /* stem: plain 3-channel input */
  test_conv(be, ref, 2, 3, 9, 21, 8, 3, 1, 1);    /* CIFAR stem into 8 channels (synco's stem kernel on AVX-512):
                                                   * 21 columns, a second vector of 5 */
  test_conv(be, ref, 2, 3, 5, 37, 16, 3, 1, 1);   /* into 16: 37 columns, 2 vectors and 5 */
  /* every BN kernel set this CPU has (SYNCO_BN_ISA: avx512, avx2, c; one the CPU lacks falls back to one it has):
   * blocks of 16 and of 8, a slice of an odd pixel count (the AVX-512 kernels' half vector at the end), a group of
   * several images (their statistics merged) */
  const char *bn_isas[] = {"avx512", "avx2", "c"};
  for (int i = 0; i < 3; i++) {
    setenv("SYNCO_BN_ISA", bn_isas[i], 1);
    test_bn(be, ref, 4, 16, 5, 5, 1, 0);
    test_bn(be, ref, 4, 16, 5, 5, 2, 1);
    test_bn(be, ref, 8, 8, 3, 7, 2, 1);
    test_bn(be, ref, 6, 24, 4, 4, 1, 0);
    test_bn(be, ref, 16, 8, 16, 16, 2, 0);
  }
  unsetenv("SYNCO_BN_ISA");
  test_bn_add_relu(be, 4, 16, 5, 5, 2);
  test_bn_add_relu(be, 8, 8, 3, 7, 4);            /* blocks of 8 where the CPU takes them */
  test_bn_add_relu(be, 3, 12, 4, 4, 1);           /* plain layout */
  test_maxpool(be, ref, 2, 16, 11, 10);
  test_avgpool(be, ref, 3, 32, 4, 3);
  test_eltwise(be, ref, 2, 16, 5, 3);
  if (!full) return;
  test_conv(be, ref, 3, 32, 8, 8, 32, 3, 1, 1);   /* equal widths, as in a basic block */
  test_conv(be, ref, 2, 12, 7, 7, 20, 3, 1, 1);   /* channel counts that stay plain */
  test_conv(be, ref, 2, 16, 6, 6, 12, 3, 1, 1);   /* blocked in, plain out */
  test_conv(be, ref, 5, 64, 4, 4, 72, 3, 1, 1);   /* Winograd: 4x4 tiles (F(4x4, 3x3) forward and backward data, 2x2
                                                   * backward weights), chunks that cross images */
  test_conv(be, ref, 2, 80, 6, 10, 64, 3, 1, 1);  /* Winograd: not square, more inputs than outputs */
  test_conv(be, ref, 3, 64, 16, 16, 64, 3, 1, 1); /* Winograd: several chunks per thread (F(4x4, 3x3) and F(2x2, 3x3)) */
  test_conv(be, ref, 2, 64, 12, 8, 64, 3, 1, 1);  /* Winograd: F(4x4, 3x3), not square */
  test_conv(be, ref, 2, 32, 6, 6, 40, 3, 1, 1);   /* Winograd backward weights only (32 channels) */
  test_conv(be, ref, 3, 64, 6, 6, 64, 3, 1, 1);   /* Winograd: chunks of 8 and 3 tiles (GEMM row remainders) */
  test_conv(be, ref, 1, 64, 2, 26, 64, 3, 1, 1);  /* Winograd: one row of tiles, chunks of 8 and 5 */
  test_conv(be, ref, 3, 8, 5, 19, 8, 3, 1, 1);    /* direct8 (AVX-512): blocks of 8 columns, inner and at the edges,
                                                   * then 3 columns one by one */
  test_conv(be, ref, 1, 8, 3, 32, 8, 3, 1, 1);    /* direct8: two inner blocks */
  test_conv(be, ref, 2, 8, 1, 9, 8, 3, 1, 1);     /* direct8: one row */
  test_conv(be, ref, 3, 8, 6, 1, 8, 3, 1, 1);     /* direct8: one column */
  test_conv(be, ref, 2, 24, 7, 10, 24, 3, 1, 1);  /* direct8: 3 input and 3 output blocks of 8 channels */
  test_conv(be, ref, 2, 8, 5, 11, 24, 3, 1, 1);   /* direct8: 1 input block into 3 */
  test_conv(be, ref, 2, 24, 6, 9, 8, 3, 1, 1);    /* direct8: 3 into 1 */
  test_conv(be, ref, 1, 40, 4, 5, 40, 3, 1, 1);   /* nChw8c beyond direct8's 32 channels: oneDNN's */
  test_conv(be, ref, 3, 1, 6, 7, 8, 3, 1, 1);     /* stem kernel: one (grayscale) input channel */
  test_conv(be, ref, 1, 3, 1, 1, 8, 3, 1, 1);     /* stem kernel: a 1x1 image */
  test_conv(be, ref, 2, 3, 3, 33, 24, 3, 1, 1);   /* stem kernel: 3 blocks of 8, 33 columns */
  test_conv(be, ref, 2, 4, 4, 16, 32, 3, 1, 1);   /* stem kernel: 4 input channels, 2 blocks of 16, one vector */
  /* stride-2 layers from nChw8c into nChw16c (synco's stride2 kernels where the block is 16 on AVX-512): inner pixels
   * in strips of 8 (the last moved back), the edges one by one */
  test_conv(be, ref, 2, 8, 11, 33, 16, 3, 2, 1);  /* 17 output columns: the last reads the padding */
  test_conv(be, ref, 2, 8, 9, 36, 32, 1, 2, 0);   /* 1x1, 2 output blocks, 18 columns */
  test_conv(be, ref, 2, 24, 5, 34, 48, 3, 2, 1);  /* 3 input blocks into 3 */
  test_conv(be, ref, 1, 8, 2, 1, 16, 3, 2, 1);    /* one column */
  /* at most 16 output pixels: under bf16 on AMX, backward weights by im2col + matmul (cpu_conv_gemm.c); the 8 -> 16,
   * 24 -> 48 and 64 -> 72 layers above take it too */
  test_conv(be, ref, 2, 12, 4, 4, 20, 3, 1, 1);   /* plain in and out */
  test_conv(be, ref, 2, 16, 4, 3, 12, 3, 1, 1);   /* blocked in, plain out, not square */
  test_conv(be, ref, 3, 32, 7, 7, 48, 3, 2, 1);   /* stride 2, padding read on one side only */
  /* the own kernels' property: synco's Winograd (fp32 layers only), direct8 (in bf16 too, where its forward and
   * backward data run bf16) */
  if (!g_bf16) test_own_threads_agree(be, "winograd", 6, 64, 64, 12, 12, 3, 1);
  if (synco_direct8_available()) {
    test_own_threads_agree(be, "direct8", 5, 8, 8, 17, 17, 3, 1);
    test_own_threads_agree(be, "direct8", 3, 24, 24, 9, 9, 3, 1);
  }
  if (synco_stem_available() && block > 1) { /* blocked outputs */
    test_own_threads_agree(be, "stem", 5, 3, 8, 7, 35, 3, 1);
    test_own_threads_agree(be, "stem", 3, 3, 16, 6, 18, 3, 1);
  }
  if (synco_stride2_available() && block == 16) { /* nChw8c into nChw16c */
    test_own_threads_agree(be, "stride2", 5, 8, 16, 9, 34, 3, 2);
    test_own_threads_agree(be, "stride2", 3, 24, 48, 6, 35, 1, 2);
  }
  test_bn(be, ref, 4, 16, 5, 5, 1, 1);
  test_bn(be, ref, 4, 16, 5, 5, 2, 0);
  test_bn(be, ref, 6, 32, 3, 4, 3, 1);
  test_bn(be, ref, 4, 12, 5, 5, 2, 1);            /* plain layout */
  test_maxpool(be, ref, 2, 12, 9, 9);
  test_avgpool(be, ref, 2, 12, 5, 5);
  test_eltwise(be, ref, 2, 12, 4, 4);
  test_matrices(be, ref);
  test_errors(be);
  test_no_ref_kernels(be);
}

int main(void) {
  synco_backend *ref = NULL, *be = NULL;
  synco_test_default_kernels();
  CHECK_OK(synco_backend_ref_create(&ref));
  unsetenv("SYNCO_ONEDNN_BLOCK");
  CHECK_OK(synco_backend_cpu_create(&be));
  if (!ref || !be) return synco_test_finish("test_cpu_ops");
  const int native = be->act_layout(be, 64, 8, 8, SYNCO_F32) == SYNCO_LAYOUT_NCHW16C ? 16 : 8;
  run_all(be, ref, native, 1);
  synco_backend_destroy(be);

  /* the kernels measured (whichever wins), then each candidate of the 3x3 stride-1 layers forced (a forced one that
   * does not apply to a layer or pass, as oneDNN's Winograd on an AVX2 CPU, leaves it on direct) */
  test_default_rule(native);
  const char *algos[] = {"auto", "direct", "winograd", "onednn-winograd", "direct8", "stem", "stride2"};
  for (int i = 0; i < 7; i++) {
    setenv("SYNCO_CONV_ALGO", algos[i], 1);
    be = NULL;
    CHECK_OK(synco_backend_cpu_create(&be));
    if (be) {
      run_all(be, ref, native, 1);
      synco_backend_destroy(be);
    }
  }
  unsetenv("SYNCO_CONV_ALGO");
  /* SYNCO_CONV_WINOGRAD=0 (the older switch) is direct; a value not known is refused at plan time */
  setenv("SYNCO_CONV_WINOGRAD", "0", 1);
  be = NULL;
  CHECK_OK(synco_backend_cpu_create(&be));
  if (be) {
    CHECK(!synco_backend_supports(be, SYNCO_CAP_WINOGRAD));
    synco_backend_destroy(be);
  }
  unsetenv("SYNCO_CONV_WINOGRAD");
  setenv("SYNCO_CONV_ALGO", "fastest", 1);
  be = NULL;
  CHECK_OK(synco_backend_cpu_create(&be));
  if (be) {
    synco_conv_op op = {.n = 1, .cin = 16, .h = 4, .w = 4, .cout = 16, .kh = 3, .kw = 3, .stride = 1, .pad = 1,
                        .dtype = SYNCO_F32};
    CHECK(be->conv_plan(be, &op) == SYNCO_ERR_ARG);
    CHECK(op.impl == NULL);
    synco_backend_destroy(be);
  }
  unsetenv("SYNCO_CONV_ALGO");

  /* the other blocked layout and all-plain, on the short list, with synco's Winograd forced where it applies (its
   * nChw8c and nChw16c addressing both checked, whichever block this CPU takes), then direct8 (on AVX-512, blocks of
   * 8: 16 and 24 channels as 2 and 3 blocks) */
  const char *own[] = {"winograd", "direct8"};
  const int others[] = {native == 16 ? 8 : 16, 1};
  for (int a = 0; a < 2; a++)
    for (int i = 0; i < 2; i++) {
      char v[8];
      snprintf(v, sizeof v, "%d", others[i]);
      setenv("SYNCO_CONV_ALGO", own[a], 1);
      setenv("SYNCO_ONEDNN_BLOCK", v, 1);
      be = NULL;
      CHECK_OK(synco_backend_cpu_create(&be));
      if (be) {
        run_all(be, ref, others[i], 0);
        synco_backend_destroy(be);
      }
    }
  unsetenv("SYNCO_ONEDNN_BLOCK");
  unsetenv("SYNCO_CONV_ALGO");

  /* --precision bf16, where the CPU has it */
  be = NULL;
  CHECK_OK(synco_backend_cpu_create(&be));
  if (be && synco_backend_supports(be, SYNCO_CAP_BF16)) {
    test_bf16_conv_choice();
    /* the bf16 kernels and the rule for bf16 layers, on every bf16 CPU: also where the default runs fp32 kernels */
    setenv("SYNCO_BF16_CONV", "bf16", 1);
    CHECK_OK(synco_backend_set_precision(be, "bf16"));
    test_round_bf16(be);
    g_bf16 = 1;
    run_all(be, ref, native, 1);
    test_bf16_rule();
    /* the fp32 kernels bf16 layers take where the rule says (without AMX): oneDNN's Winograd (from 64 channels;
     * backward weights from 32), oneDNN's fp32 direct (1x1 and stride-2 layers under 64 channels); and synco's
     * direct8 for nChw8c layers, bf16 in all three passes; each forced, on every bf16 CPU (all have AVX-512) */
    const char *fp32_in_bf16[3][2] = {{"onednn-winograd", "\"fwd\":\"jit_wino"},
                                      {"direct8", "\"bwd_weights\":\"synco:direct8_avx512_bf16:nChw8c\""},
                                      {"direct-fp32", "(fp32)\",\"bwd_data\":"}};
    for (int a = 0; a < 3; a++) {
      setenv("SYNCO_CONV_ALGO", fp32_in_bf16[a][0], 1);
      synco_backend *bw = NULL;
      CHECK_OK(synco_backend_cpu_create(&bw));
      if (!bw) continue;
      CHECK_OK(synco_backend_set_precision(bw, "bf16"));
      run_all(bw, ref, native, 0);
      synco_conv_op op;
      char *k = plan_square(bw, &op, a == 1 ? 8 : 64);
      const char *e = strrchr(k, '{'); /* the square layer's entry, the log's last */
      CHECK(e && strstr(e, fp32_in_bf16[a][1]) != NULL && (strstr(e, "(fp32)") != NULL) == (a != 1));
      free(k);
      bw->conv_release(bw, &op);
      synco_backend_destroy(bw);
    }
    unsetenv("SYNCO_CONV_ALGO");
    unsetenv("SYNCO_BF16_CONV");
    g_bf16 = 0;
    CHECK(g_bf16_differs);
  } else if (be) {
    printf("SKIP (bf16 part): this CPU has no native bf16 (%s)\n",
           synco_backend_set_precision(be, "bf16") == SYNCO_OK ? "?" : synco_last_error());
  }
  synco_backend_destroy(be);
  synco_backend_destroy(ref);
  return synco_test_finish("test_cpu_ops");
}
#endif
