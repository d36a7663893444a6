/* Whole-encoder parity with PyTorch/torchvision: one train-mode step of a small ResNet-18 (width 8, CIFAR stem,
 * MLP head, Split-BN with 2 groups) and a small ResNet-50 (width 4, torchvision stem, MLP head), from fixtures
 * written by
 * tools/make_fixtures.py. The weights are copied in by torchvision name; the step is forward (train BN),
 * loss = sum(normalize(out) * G) through the backend's l2norm, backward; the output, loss, every parameter
 * gradient and every updated running statistic must match the float64 PyTorch reference. Runs on every
 * backend built (ref always, oneDNN when available).
 *
 * Tolerances (the C side is fp32 throughout; the references are float64 rounded to fp32): each tensor T is
 * compared with atol = s · max|T_ref| + 1e-7 and rtol = RTOL = 1e-3, i.e. relative to that tensor's own scale, so
 * that gradients of early layers (orders of magnitude smaller than the head's) are held to the same relative
 * standard. s = max(ATOL_SCALE = 2e-4, DEV_FACTOR = 10 × d), where d is PyTorch's own fp32-vs-float64 deviation
 * (max |err| / max |ref|) for that kind of tensor, recorded in the fixture: it measures how well conditioned the
 * tiny network is (ResNet-18 fixture: d ≈ 4e-6, so s = 2e-4; ResNet-50 at width 4: d(grads) ≈ 1.4e-4, so
 * s = 1.4e-3). The loss must match to 1e-4 + 1e-4·|loss|.
 *
 * Where the CPU has native bf16, the cpu backend runs the ResNet-18 fixture once more under --precision bf16
 * (convolutions and linear layers on bf16 copies, everything else fp32), against the same float64 reference. bf16
 * keeps 8 bits of mantissa (2^-9 relative rounding per operand); stated per kind of tensor, with 2-3x to spare over
 * what was measured here (AMX, oneDNN 2.6): the output s = 3e-2 (measured 1.2e-2), the running statistics s = 1.5e-2
 * (measured 4.4e-3), rtol 3e-2, the loss 1e-2 relative (measured 3.3e-3). The parameter gradients are printed, not
 * held to a per-tensor bound: the gradients of early layers are sums through BN backward that cancel, and bf16 moves
 * their worst element by up to 0.9 of the tensor's largest (measured); test_step_bf16 bounds the whole gradient
 * instead (relative L2 error). The ResNet-50 fixture at width 4 is too ill-conditioned for bf16 (its fp32 gradients
 * already deviate 1.4e-4 in PyTorch; bf16 moves its output by 0.37 of its scale), so it runs in fp32 only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/status.h"
#include "io/safetensors.h"
#include "nn/encoder.h"
#include "test_util.h"

#define RTOL 1e-3
#define ATOL_SCALE 2e-4
#define DEV_FACTOR 10.0
/* --precision bf16 (see above) */
#define BF16_S_OUT 3e-2
#define BF16_S_STAT 1.5e-2
#define BF16_RTOL 3e-2
#define BF16_LOSS 1e-2

static int g_bf16;

static double max_abs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
  return m;
}

/* Compares got with fixture tensor `name` at that tensor's scale; tracks the worst relative error seen. */
static void compare(const synco_safetensors *st, const char *name, const float *got, size_t n, double s,
                    double *worst) {
  float *ref = malloc(n * sizeof(float));
  if (!ref) return;
  CHECK_OK(synco_st_get_f32(st, name, ref, n, NULL, 0));
  const double scale = max_abs(ref, n);
  double err = 0;
  for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)got[i] - ref[i]) / (scale + 1e-30));
  if (err > *worst) *worst = err;
  CHECK_CLOSE(name, got, ref, n, s * scale + 1e-7, g_bf16 ? BF16_RTOL : RTOL);
  free(ref);
}

/* max |got - ref| / max |ref| of fixture tensor `name`, without a bound. */
static double rel_err(const synco_safetensors *st, const char *name, const float *got, size_t n) {
  float *ref = malloc(n * sizeof(float));
  double err = 0;
  if (!ref) return 0;
  CHECK_OK(synco_st_get_f32(st, name, ref, n, NULL, 0));
  const double scale = max_abs(ref, n);
  for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)got[i] - ref[i]) / (scale + 1e-30));
  free(ref);
  return err;
}

static int meta_int(const synco_safetensors *st, const char *key) {
  const char *v = synco_st_meta(st, key);
  return v ? atoi(v) : -1;
}

static double tol_scale(const synco_safetensors *st, const char *key) {
  const char *v = synco_st_meta(st, key);
  const double d = v ? atof(v) : 0.0;
  return fmax(ATOL_SCALE, DEV_FACTOR * d);
}

static void run_fixture(synco_backend *be, const char *path) {
  synco_safetensors st;
  memset(&st, 0, sizeof st);
  CHECK_OK(synco_st_open(&st, path));
  if (!st.buf) return;
  synco_encoder_config cfg = {meta_int(&st, "depth"), meta_int(&st, "width"), meta_int(&st, "cifar_stem"), 1,
                              meta_int(&st, "mlp"), meta_int(&st, "dim"), meta_int(&st, "bn_splits")};
  const int batch = meta_int(&st, "batch"), size = meta_int(&st, "image_size");
  synco_encoder *enc = NULL;
  CHECK_OK(synco_encoder_create(&enc, be, &cfg, batch, size, 123));
  if (!enc) {
    synco_st_close(&st);
    return;
  }

  /* Our views must be torchvision's named_parameters() / named_buffers(), in order. */
  int np = 0, nb = 0;
  const synco_param_view *pv = synco_encoder_param_views(enc, &np);
  const synco_param_view *bv = synco_encoder_buffer_views(enc, &nb);
  const char *lists[2] = {synco_st_meta(&st, "params"), synco_st_meta(&st, "buffers")};
  for (int k = 0; k < 2; k++) {
    const synco_param_view *v = k ? bv : pv;
    const int count = k ? nb : np;
    const char *s = lists[k];
    int i = 0, ok = s != NULL;
    while (ok && *s) {
      const size_t len = strcspn(s, ",");
      if (i >= count || strlen(v[i].name) != len || strncmp(v[i].name, s, len)) ok = 0;
      i++;
      s += len + (s[len] == ',');
    }
    if (!ok || i != count) fprintf(stderr, "%s: %s order differs from torchvision (at %d)\n", path, k ? "buffer" : "parameter", i);
    CHECK(ok && i == count);
  }

  float *params = synco_encoder_params(enc), *buffers = synco_encoder_buffers(enc);
  for (int i = 0; i < np; i++) CHECK_OK(synco_st_get_f32(&st, pv[i].name, params + pv[i].offset, pv[i].numel, pv[i].shape, pv[i].ndim));
  for (int i = 0; i < nb; i++) CHECK_OK(synco_st_get_f32(&st, bv[i].name, buffers + bv[i].offset, bv[i].numel, bv[i].shape, 1));

  const int dim = synco_encoder_out_dim(enc);
  const size_t nx = (size_t)batch * 3 * size * size, no = (size_t)batch * dim;
  float *x = malloc(nx * sizeof(float)), *G = malloc(no * sizeof(float)), *out = malloc(no * sizeof(float));
  float *y = malloc(no * sizeof(float)), *dout = malloc(no * sizeof(float)), *norms = malloc(batch * sizeof(float));
  float loss_ref = 0;
  CHECK_OK(synco_st_get_f32(&st, "x", x, nx, NULL, 0));
  CHECK_OK(synco_st_get_f32(&st, "G", G, no, NULL, 0));
  CHECK_OK(synco_st_get_f32(&st, "loss", &loss_ref, 1, NULL, 0));

  double worst_out = 0, worst_grad = 0, worst_stat = 0;
  memset(synco_encoder_grads(enc), 0, synco_encoder_num_params(enc) * sizeof(float));
  CHECK_OK(synco_encoder_forward(enc, out, x, batch, 1));
  const double s_out = g_bf16 ? BF16_S_OUT : tol_scale(&st, "torch_fp32_dev_out");
  const double s_grad = tol_scale(&st, "torch_fp32_dev_grad"); /* not held under bf16 (see above) */
  const double s_stat = g_bf16 ? BF16_S_STAT : tol_scale(&st, "torch_fp32_dev_stats");
  compare(&st, "out", out, no, s_out, &worst_out);

  synco_tensor to = {batch, dim, 1, 1, SYNCO_F32, SYNCO_LAYOUT_PLAIN, out};
  synco_tensor ty = {batch, dim, 1, 1, SYNCO_F32, SYNCO_LAYOUT_PLAIN, y};
  synco_tensor tg = {batch, dim, 1, 1, SYNCO_F32, SYNCO_LAYOUT_PLAIN, G};
  synco_tensor td = {batch, dim, 1, 1, SYNCO_F32, SYNCO_LAYOUT_PLAIN, dout};
  CHECK_OK(be->l2norm_fwd(be, &ty, norms, &to));
  double loss = 0;
  for (size_t i = 0; i < no; i++) loss += (double)y[i] * G[i];
  if (g_bf16 ? fabs(loss - loss_ref) > BF16_LOSS * fabs(loss_ref) : fabs(loss - loss_ref) > 1e-4 + 1e-4 * fabs(loss_ref)) {
    fprintf(stderr, "%s: loss %.8g, ref %.8g\n", path, loss, loss_ref);
    synco_test_failures++;
  }
  CHECK_OK(be->l2norm_bwd(be, &td, &tg, &ty, norms));
  CHECK_OK(synco_encoder_backward(enc, dout));

  char key[96];
  const float *grads = synco_encoder_grads(enc);
  for (int i = 0; i < np; i++) {
    snprintf(key, sizeof key, "grad.%s", pv[i].name);
    if (g_bf16) worst_grad = fmax(worst_grad, rel_err(&st, key, grads + pv[i].offset, pv[i].numel));
    else compare(&st, key, grads + pv[i].offset, pv[i].numel, s_grad, &worst_grad);
  }
  for (int i = 0; i < nb; i++) {
    snprintf(key, sizeof key, "updated.%s", bv[i].name);
    compare(&st, key, buffers + bv[i].offset, bv[i].numel, s_stat, &worst_stat);
  }
  char grad_bound[32] = "printed only";
  if (!g_bf16) snprintf(grad_bound, sizeof grad_bound, "%.1e", s_grad);
  printf("%s [%s%s]: loss %.7f (ref %.7f); worst |err|/max|ref|: out %.2e, grads %.2e, running stats %.2e "
         "(allowed %.1e, %s, %.1e + rtol %.0e)\n", path, be->name, g_bf16 ? " bf16" : "", loss, loss_ref, worst_out, worst_grad, worst_stat,
         s_out, grad_bound, s_stat, g_bf16 ? BF16_RTOL : RTOL);
  free(x);
  free(G);
  free(out);
  free(y);
  free(dout);
  free(norms);
  synco_encoder_free(enc);
  synco_st_close(&st);
}

static void run_backend(synco_backend *be) {
  run_fixture(be, "tests/fixtures/resnet18_w8_cifar_split2.safetensors");
  run_fixture(be, "tests/fixtures/resnet50_w4.safetensors");
}

int main(void) {
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_ref_create(&be));
  if (be) {
    run_backend(be);
    synco_backend_destroy(be);
  }
#ifdef SYNCO_HAVE_ONEDNN
  be = NULL;
  if (synco_backend_cpu_create(&be) == SYNCO_OK && be) {
    run_backend(be);
    synco_backend_destroy(be);
  } else {
    printf("cpu backend (oneDNN) not available: %s\n", synco_last_error());
  }
  be = NULL;
  if (synco_backend_cpu_create(&be) == SYNCO_OK && synco_backend_set_precision(be, "bf16") == SYNCO_OK) {
    g_bf16 = 1;
    run_fixture(be, "tests/fixtures/resnet18_w8_cifar_split2.safetensors");
    g_bf16 = 0;
  } else {
    printf("SKIP (bf16 part): %s\n", synco_last_error());
  }
  synco_backend_destroy(be);
#endif
  return synco_test_finish("test_resnet_parity");
}
