/* The encoder's layout and initialization against torchvision, plus its calling contract (reference backend).
 *
 * The hard-coded counts come from torchvision 0.14 (`/usr/bin/python3 tools/make_fixtures.py --counts`):
 * sum of numel over resnetXX().parameters() with fc replaced by Identity (backbone), over named_buffers()
 * without num_batches_tracked, with the 1000-way fc, and with MoCo's MLP head (dim 128). MAC counts were
 * summed with forward hooks over every Conv2d (out pixels × cin × kh × kw per output channel) and Linear
 * (in × out) of one 224×224 image (32×32 with the CIFAR stem). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "backend/registry.h"
#include "base/status.h"
#include "nn/encoder.h"
#include "test_util.h"

static synco_encoder_config config(int depth, int width, int head, int mlp, int dim) {
  synco_encoder_config c = {depth, width, 0, head, mlp, dim, 1};
  return c;
}

/* Views are in offset order, tile their buffer with no gap or overlap, and names are unique. */
static void check_tiling(const synco_param_view *v, int n, size_t total, const char *what) {
  size_t off = 0;
  int ok = 1;
  for (int i = 0; i < n; i++) {
    size_t numel = 1;
    for (int d = 0; d < v[i].ndim; d++) numel *= (size_t)v[i].shape[d];
    if (v[i].offset != off || v[i].numel != numel) ok = 0;
    off += v[i].numel;
    for (int j = 0; j < i; j++)
      if (!strcmp(v[i].name, v[j].name)) {
        fprintf(stderr, "%s: duplicate name %s\n", what, v[i].name);
        ok = 0;
      }
  }
  if (off != total) ok = 0;
  if (!ok) fprintf(stderr, "%s: views do not tile the buffer (%zu of %zu)\n", what, off, total);
  CHECK(ok);
}

/* backbone: the parameter count without fc; params/pviews: with the head as configured. macs = 0: unchecked. */
static void check_counts(synco_backend *be, int depth, int cifar, int size, int head, int mlp, int dim,
                         size_t backbone, size_t params, int pviews, size_t buffers, int bviews, int feat,
                         double macs) {
  synco_encoder_config c = config(depth, 64, head, mlp, dim);
  c.cifar_stem = cifar;
  synco_encoder *enc = NULL;
  CHECK_OK(synco_encoder_create(&enc, be, &c, 1, size, 1));
  if (!enc) return;
  int np = 0, nb = 0;
  const synco_param_view *pv = synco_encoder_param_views(enc, &np);
  const synco_param_view *bv = synco_encoder_buffer_views(enc, &nb);
  if (synco_encoder_num_params(enc) != params || np != pviews || synco_encoder_num_buffers(enc) != buffers ||
      nb != bviews)
    fprintf(stderr, "resnet%d head %d mlp %d: %zu params in %d views, %zu buffers in %d views\n", depth, head, mlp,
            synco_encoder_num_params(enc), np, synco_encoder_num_buffers(enc), nb);
  CHECK(synco_encoder_num_params(enc) == params);
  CHECK(np == pviews);
  size_t nfc = 0;
  for (int i = 0; i < np; i++)
    if (!strncmp(pv[i].name, "fc", 2)) nfc += pv[i].numel;
  CHECK(synco_encoder_num_params(enc) - nfc == backbone);
  if (macs > 0 && synco_encoder_macs_per_image(enc) != macs)
    fprintf(stderr, "resnet%d: %.0f MACs, want %.0f\n", depth, synco_encoder_macs_per_image(enc), macs);
  CHECK(macs == 0 || synco_encoder_macs_per_image(enc) == macs);
  CHECK(synco_encoder_num_buffers(enc) == buffers);
  CHECK(nb == bviews);
  CHECK(synco_encoder_feature_dim(enc) == feat);
  CHECK(synco_encoder_out_dim(enc) == (head ? dim : feat));
  check_tiling(pv, np, synco_encoder_num_params(enc), "params");
  check_tiling(bv, nb, synco_encoder_num_buffers(enc), "buffers");
  CHECK(!strcmp(pv[0].name, "conv1.weight") && !strcmp(pv[1].name, "bn1.weight") && !strcmp(pv[2].name, "bn1.bias"));
  CHECK(!strcmp(pv[3].name, "layer1.0.conv1.weight"));
  CHECK(!strcmp(bv[0].name, "bn1.running_mean") && !strcmp(bv[1].name, "bn1.running_var"));
  if (head) CHECK(!strcmp(pv[np - 1].name, mlp ? "fc.2.bias" : "fc.bias"));
  int isbuf = -1;
  const synco_param_view *v = synco_encoder_find(enc, "layer2.0.downsample.1.running_mean", &isbuf);
  CHECK(v && isbuf == 1 && v->numel == (size_t)(depth == 50 ? 512 : 128));
  v = synco_encoder_find(enc, "layer1.0.downsample.0.weight", &isbuf);
  CHECK(depth == 50 ? (v && isbuf == 0 && v->shape[0] == 256 && v->shape[1] == 64) : v == NULL);
  CHECK(synco_encoder_find(enc, "nope", &isbuf) == NULL);
  synco_encoder_free(enc);
}

static double mean_of(const float *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i];
  return s / (double)n;
}

static double std_of(const float *x, size_t n) {
  const double m = mean_of(x, n);
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
  return sqrt(s / (double)n);
}

static void check_init(synco_backend *be) {
  synco_encoder_config c = config(18, 64, 1, 1, 128), small = config(18, 16, 1, 1, 128);
  synco_encoder *enc = NULL, *again = NULL, *other = NULL;
  CHECK_OK(synco_encoder_create(&enc, be, &c, 1, 32, 7));
  CHECK_OK(synco_encoder_create(&again, be, &small, 1, 32, 7));
  CHECK_OK(synco_encoder_create(&other, be, &small, 1, 32, 8));
  if (!enc || !again || !other) return;
  /* Same seed, same numbers (whatever the batch, image size or thread count); another seed, other numbers. */
  const float *p = synco_encoder_params(enc);
  const float *q = synco_encoder_params(again), *r = synco_encoder_params(other);
  CHECK(memcmp(q, r, synco_encoder_num_params(again) * sizeof(float)) != 0);
  synco_encoder *same = NULL;
  CHECK_OK(synco_encoder_create(&same, be, &small, 2, 16, 7));
  if (same) CHECK(!memcmp(q, synco_encoder_params(same), synco_encoder_num_params(again) * sizeof(float)));
  synco_encoder_free(same);

  int np = 0;
  const synco_param_view *pv = synco_encoder_param_views(enc, &np);
  for (int i = 0; i < np; i++) {
    const float *w = p + pv[i].offset;
    const size_t k = pv[i].numel;
    if (pv[i].ndim == 4) { /* kaiming_normal_(fan_out, relu) */
      const double want = sqrt(2.0 / ((double)pv[i].shape[0] * pv[i].shape[2] * pv[i].shape[3]));
      const double tol = 4.0 / sqrt((double)k) + 0.002; /* a few standard errors of the sample std */
      if (fabs(std_of(w, k) / want - 1.0) > tol || fabs(mean_of(w, k)) > 4.0 * want / sqrt((double)k)) {
        fprintf(stderr, "%s: std %g mean %g, want std %g\n", pv[i].name, std_of(w, k), mean_of(w, k), want);
        synco_test_failures++;
      }
    } else if (!strncmp(pv[i].name, "fc.", 3)) { /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
      const int fan_in = pv[i].ndim == 2 ? pv[i].shape[1] : pv[i - 1].shape[1];
      const double b = 1.0 / sqrt((double)fan_in);
      double maxabs = 0;
      for (size_t j = 0; j < k; j++) maxabs = fmax(maxabs, fabs(w[j]));
      CHECK(maxabs <= b);
      if (k > 10000) CHECK(fabs(std_of(w, k) / (b / sqrt(3.0)) - 1.0) < 0.02);
    } else { /* BN: weight 1, bias 0 */
      const int is_weight = strstr(pv[i].name, ".weight") != NULL;
      for (size_t j = 0; j < k; j++) CHECK(w[j] == (is_weight ? 1.0f : 0.0f));
    }
  }
  int nb = 0;
  const synco_param_view *bv = synco_encoder_buffer_views(enc, &nb);
  const float *buf = synco_encoder_buffers(enc);
  for (int i = 0; i < nb; i++) {
    const float want = strstr(bv[i].name, "running_var") ? 1.0f : 0.0f;
    for (size_t j = 0; j < bv[i].numel; j++) CHECK(buf[bv[i].offset + j] == want);
  }
  synco_encoder_free(enc);
  synco_encoder_free(again);
  synco_encoder_free(other);
}

static void check_contract(synco_backend *be) {
  synco_encoder *enc = NULL;
  synco_encoder_config c = config(18, 8, 1, 1, 16);
  c.cifar_stem = 1;
  c.bn_splits = 3;
  CHECK(synco_encoder_create(&enc, be, &c, 4, 16, 1) == SYNCO_ERR_ARG && enc == NULL);
  c.bn_splits = 2;
  c.depth = 20;
  CHECK(synco_encoder_create(&enc, be, &c, 4, 16, 1) == SYNCO_ERR_ARG && enc == NULL);
  c.depth = 18;
  CHECK_OK(synco_encoder_create(&enc, be, &c, 4, 16, 1));
  if (!enc) return;
  CHECK(synco_encoder_batch(enc) == 4 && synco_encoder_image_size(enc) == 16);
  CHECK(synco_encoder_cfg(enc)->bn_splits == 2);
  const int img = 3 * 16 * 16, d = synco_encoder_feature_dim(enc);
  float x[4 * 3 * 16 * 16], out[4 * 16], out2[4 * 16], dout[4 * 16], f4[4 * 64], f2[4 * 64];
  synco_test_fill(x, 4 * (size_t)img, 3, -1.f, 1.f);
  synco_test_fill(dout, 4 * 16, 4, -1.f, 1.f);
  CHECK(d == 64);

  CHECK(synco_encoder_backward(enc, dout) == SYNCO_ERR_ARG); /* no train forward yet */
  CHECK(synco_encoder_forward(enc, out, x, 3, 1) == SYNCO_ERR_ARG); /* train needs the whole batch */
  /* Eval is per image: fewer images give the same rows, whatever the padding. */
  CHECK_OK(synco_encoder_forward(enc, out, x, 4, 0));
  CHECK_OK(synco_encoder_forward(enc, out2, x, 2, 0));
  CHECK_CLOSE("eval rows with n < batch", out2, out, 2 * 16, 1e-6, 1e-5);
  CHECK_OK(synco_encoder_features(enc, f4, x, 4));
  CHECK_OK(synco_encoder_features(enc, f2, x + img, 1));
  CHECK_CLOSE("features of image 1 alone", f2, f4 + d, (size_t)d, 1e-6, 1e-5);

  /* Train: running statistics move, gradients accumulate (twice the same step = twice the gradient). */
  const float *buf = synco_encoder_buffers(enc);
  const float rm0 = buf[0];
  const size_t np = synco_encoder_num_params(enc);
  float *g1 = malloc(np * sizeof(float));
  CHECK_OK(synco_encoder_forward(enc, out, x, 4, 1));
  CHECK(buf[0] != rm0);
  CHECK_OK(synco_encoder_backward(enc, dout));
  CHECK(synco_encoder_backward(enc, dout) == SYNCO_ERR_ARG); /* one backward per train forward */
  memcpy(g1, synco_encoder_grads(enc), np * sizeof(float));
  double gn = 0;
  for (size_t i = 0; i < np; i++) gn += (double)g1[i] * g1[i];
  CHECK(gn > 0 && isfinite(gn));
  CHECK_OK(synco_encoder_forward(enc, out2, x, 4, 1));
  CHECK_CLOSE("train forward is repeatable", out2, out, 4 * 16, 1e-6, 1e-5);
  CHECK_OK(synco_encoder_backward(enc, dout));
  for (size_t i = 0; i < np; i++) g1[i] *= 2.0f;
  CHECK_CLOSE("gradients accumulate", synco_encoder_grads(enc), g1, np, 1e-6, 1e-4);
  free(g1);
  synco_encoder_free(enc);
}

/* The op table of synco_encoder_set_timing: one entry per layer, named as torchvision names the module, with one
 * call of each pass a layer has per forward + backward (the stem's convolution has no backward data: the images need
 * no gradient), nothing while timing is off, and the convolutions' seconds equal to synco_encoder_conv_seconds. */
static const synco_op_time *find_op(const synco_op_time *e, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(e[i].name, name)) return &e[i];
  return NULL;
}

static void check_op_times(synco_backend *be) {
  synco_encoder *enc = NULL;
  synco_encoder_config c = config(18, 8, 1, 1, 16);
  c.cifar_stem = 1;
  CHECK_OK(synco_encoder_create(&enc, be, &c, 2, 16, 1));
  if (!enc) return;
  float x[2 * 3 * 16 * 16], out[2 * 16], dout[2 * 16];
  synco_test_fill(x, sizeof x / sizeof *x, 5, -1.f, 1.f);
  synco_test_fill(dout, 2 * 16, 6, -1.f, 1.f);
  int n = -1;
  CHECK_OK(synco_encoder_forward(enc, out, x, 2, 1));
  CHECK_OK(synco_encoder_backward(enc, dout));
  synco_encoder_op_times(enc, &n);
  CHECK(n == 0); /* timing off: nothing recorded */
  synco_encoder_set_timing(enc, 1);
  for (int it = 0; it < 2; it++) {
    if (it == 1) synco_encoder_op_times_reset(enc);
    (void)synco_encoder_conv_seconds(enc, 1);
    CHECK_OK(synco_encoder_forward(enc, out, x, 2, 1));
    CHECK_OK(synco_encoder_backward(enc, dout));
  }
  const synco_op_time *e = synco_encoder_op_times(enc, &n);
  /* ResNet-18: 20 convolutions and 20 BNs, 8 residuals, avgpool, fc.0, fc.1 (ReLU), fc.2, input/output */
  CHECK(n == 20 + 20 + 8 + 1 + 3 + 1);
  const synco_op_time *stem = find_op(e, n, "conv1"), *c11 = find_op(e, n, "layer1.0.conv1");
  const synco_op_time *bn = find_op(e, n, "layer2.0.downsample.1"), *res = find_op(e, n, "layer4.1.relu");
  const synco_op_time *fc = find_op(e, n, "fc.2");
  CHECK(stem && !strcmp(stem->op, "conv") && stem->calls[SYNCO_PASS_FWD] == 1 &&
        stem->calls[SYNCO_PASS_BWD_DATA] == 0 && stem->calls[SYNCO_PASS_BWD_WEIGHTS] == 1);
  CHECK(c11 && c11->calls[SYNCO_PASS_FWD] == 1 && c11->calls[SYNCO_PASS_BWD_DATA] == 1 &&
        c11->calls[SYNCO_PASS_BWD_WEIGHTS] == 1);
  CHECK(bn && !strcmp(bn->op, "bn") && bn->calls[SYNCO_PASS_FWD] == 1 && bn->calls[SYNCO_PASS_BWD_DATA] == 1);
  CHECK(res && !strcmp(res->op, "add+relu") && res->calls[SYNCO_PASS_BWD_DATA] >= 1);
  CHECK(fc && !strcmp(fc->op, "linear") && fc->calls[SYNCO_PASS_FWD] == 1 && fc->calls[SYNCO_PASS_BWD_DATA] == 1);
  double conv = 0;
  int nonneg = 1;
  for (int i = 0; i < n; i++)
    for (int p = 0; p < SYNCO_NPASS; p++) {
      nonneg &= e[i].seconds[p] >= 0 && (e[i].calls[p] > 0 || e[i].seconds[p] == 0);
      if (!strcmp(e[i].op, "conv")) conv += e[i].seconds[p];
    }
  CHECK(nonneg);
  const double cs = synco_encoder_conv_seconds(enc, 0);
  CHECK(cs > 0 && fabs(conv - cs) <= 1e-9 + 1e-9 * cs);
  synco_encoder_free(enc);
}

/* synco_encoder_memory_plan: the dry build counts the same parameters as a real encoder, and the plan grows with
 * the batch and the image size; a forward-only encoder plans fewer activations; a bad config is refused. */
static void check_memory_plan(synco_backend *be) {
  synco_encoder_config c = config(18, 8, 1, 1, 128);
  c.cifar_stem = 1;
  c.bn_splits = 2;
  synco_encoder_memory m8, m16, m64px, fo;
  CHECK_OK(synco_encoder_memory_plan(be, &c, 8, 32, &m8));
  CHECK_OK(synco_encoder_memory_plan(be, &c, 16, 32, &m16));
  CHECK_OK(synco_encoder_memory_plan(be, &c, 8, 64, &m64px));
  synco_encoder *enc = NULL;
  CHECK_OK(synco_encoder_create(&enc, be, &c, 8, 32, 0));
  if (enc) {
    CHECK(m8.params == synco_encoder_num_params(enc) * sizeof(float));
    CHECK(m8.grads == m8.params);
    CHECK(m8.buffers == synco_encoder_num_buffers(enc) * sizeof(float));
    synco_encoder_free(enc);
  }
  CHECK(m16.params == m8.params);
  CHECK(m16.activations > m8.activations + m8.activations / 2);  /* about twice */
  CHECK(m64px.activations > 3 * m8.activations);                  /* about four times */
  CHECK(m16.total > m8.total && m64px.total > m8.total);
  CHECK(m8.total == m8.params + m8.grads + m8.buffers + m8.activations + m8.backend_ws);
  c.forward_only = 1;
  CHECK_OK(synco_encoder_memory_plan(be, &c, 8, 32, &fo));
  CHECK(fo.activations < m8.activations);
  c.forward_only = 0;
  synco_encoder_memory bad;
  CHECK(synco_encoder_memory_plan(be, &c, 7, 32, &bad) == SYNCO_ERR_ARG); /* 7 images in 2 Split-BN groups */
  /* ResNet-50 at 224 px, batch 256 (the ImageNet recipe): tens of GB of activations, planned without allocating */
  synco_encoder_config r50 = config(50, 64, 1, 1, 128);
  synco_encoder_memory big;
  CHECK_OK(synco_encoder_memory_plan(be, &r50, 256, 224, &big));
  CHECK(big.activations > (size_t)10000000000ull && big.params == 27966656 * sizeof(float));
}

int main(void) {
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_ref_create(&be));
  if (!be) return synco_test_finish("test_encoder");
  /* resnetXX(): backbone, buffers; then with fc(1000) and with the MoCo MLP head (dim 128). */
  /* torchvision's MACs at 224 include fc(512·1000 or 2048·1000); swap in the MLP head's d·d + d·128. */
  check_counts(be, 18, 0, 224, 1, 1, 128, 11176512, 11504832, 64, 9600, 40, 512,
               1814073344.0 - 512 * 1000 + 512 * 512 + 512 * 128);
  check_counts(be, 34, 0, 32, 0, 0, 0, 21284672, 21284672, 108, 17024, 72, 512, 0);
  check_counts(be, 50, 0, 224, 1, 1, 128, 23508032, 27966656, 163, 53120, 106, 2048,
               4089184256.0 - 2048 * 1000 + 2048 * 2048 + 2048 * 128);
  /* CIFAR stem: conv1 is 64·3·3·3 = 1728 weights instead of 64·3·7·7 = 9408. */
  check_counts(be, 18, 1, 32, 1, 0, 1000, 11176512 - 9408 + 1728, 11689512 - 9408 + 1728, 62, 9600, 40, 512,
               555929600.0);
  check_init(be);
  check_contract(be);
  check_memory_plan(be);
  check_op_times(be);
  synco_backend_destroy(be);
#ifdef SYNCO_HAVE_ONEDNN
  be = NULL;
  if (synco_backend_cpu_create(&be) == SYNCO_OK && be) check_contract(be); /* blocked layouts, same contract */
  synco_backend_destroy(be);
#endif
  return synco_test_finish("test_encoder");
}
