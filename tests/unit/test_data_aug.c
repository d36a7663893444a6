/* Augmentations against torchvision 0.14 / PIL 9 fixtures (tools/make_aug_fixtures.py), each op with fixed
 * parameters, and the random parameter sampling against torchvision's distribution.
 * Bounds: PIL bilinear crop+resize and the eval resize are bit-exact (checked as max |diff| = 0 levels);
 * colour ops vs torchvision's float tensor ops within 1e-4 (float rounding only); RandomGrayscale vs PIL's
 * integer convert("L") within 1/255; GaussianBlur vs PIL bit-exact (on a uint8 image); a whole aug-plus view with fixed parameters within 5e-4 after Normalize. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "data/internal.h"
#include "data_fixtures.h"
#include "test_util.h"

static fx_file fx;
static const uint8_t *src;

static int max_u8_diff(const uint8_t *a, const uint8_t *b, size_t n) {
  int m = 0;
  for (size_t i = 0; i < n; i++) {
    const int d = abs((int)a[i] - (int)b[i]);
    if (d > m) m = d;
  }
  return m;
}

/* HWC uint8 -> CHW float in [0,1] */
static void to_planes(float *pl, const uint8_t *hwc, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < 3; c++) pl[c * n + i] = (float)hwc[3 * i + c] / 255.0f;
}

static void hwc_to_chw_f(float *out, const uint8_t *hwc, size_t n) { to_planes(out, hwc, n); }

static void test_resize(void) {
  int sh[4];
  const int32_t *crops = (const int32_t *)fx_get(&fx, "crops", sh);
  const int nc = sh[0];
  static uint8_t scratch[1 << 20], dst[64 * 64 * 3];
  for (int k = 0; k < nc; k++) {
    const int32_t *c = crops + 5 * k;
    char name[32];
    snprintf(name, sizeof name, "crop_%d", k);
    const uint8_t *ref = (const uint8_t *)fx_get(&fx, name, sh);
    CHECK(synco_aug_resample_scratch(c[2], c[3], c[4], c[4], c[4], c[4]) < sizeof scratch);
    synco_aug_resample(dst, src, 61, c[0], c[1], c[2], c[3], c[4], c[4], 0, 0, c[4], c[4], scratch);
    const int d = max_u8_diff(dst, ref, (size_t)c[4] * c[4] * 3);
    if (d != 0) fprintf(stderr, "crop %d (%dx%d+%d+%d -> %d): max diff %d levels\n", k, c[2], c[3], c[0], c[1], c[4], d);
    CHECK(d == 0);
  }
  /* eval: Resize(36) + CenterCrop(32) through synco_aug_apply with identity normalization */
  const uint8_t *ev = (const uint8_t *)fx_get(&fx, "eval32", sh);
  synco_aug_config cfg = {SYNCO_AUG_EVAL, 32, 0, {0, 0, 0}, {1, 1, 1}};
  synco_image img = {61, 47, (uint8_t *)src, 0};
  synco_aug_params p;
  synco_rng r = synco_rng_make(1, 0, 0, SYNCO_RNG_TEST);
  synco_aug_sample(&p, 61, 47, &cfg, &r);
  void *scr = malloc(synco_augment_scratch_bytes(61, 47, &cfg));
  float out[3 * 32 * 32], ref[3 * 32 * 32];
  CHECK_OK(synco_aug_apply(out, &img, &cfg, &p, scr));
  hwc_to_chw_f(ref, ev, 32 * 32);
  CHECK_CLOSE("eval resize+center crop", out, ref, 3 * 32 * 32, 1e-6, 0);
  free(scr);
}

static void test_color(void) {
  int sh[4];
  const uint8_t *base = (const uint8_t *)fx_get(&fx, "crop_0", sh);
  const size_t n = 32 * 32;
  float pl[3 * 32 * 32];
  static const char *names[4] = {"brightness", "contrast", "saturation", "hue"};
  void (*fns[4])(float *, size_t, float) = {synco_aug_brightness, synco_aug_contrast, synco_aug_saturation,
                                            synco_aug_hue};
  for (int o = 0; o < 4; o++) {
    char key[64];
    snprintf(key, sizeof key, "%s_factors", names[o]);
    const float *f = (const float *)fx_get(&fx, key, sh);
    const int nf = sh[0];
    for (int k = 0; k < nf; k++) {
      snprintf(key, sizeof key, "%s_%d", names[o], k);
      const float *ref = (const float *)fx_get(&fx, key, sh);
      to_planes(pl, base, n);
      fns[o](pl, n, f[k]);
      char what[64];
      snprintf(what, sizeof what, "%s(%g)", names[o], f[k]);
      CHECK_CLOSE(what, pl, ref, 3 * n, 1e-4, 0);
    }
  }
  /* RandomGrayscale vs PIL convert("L") */
  const uint8_t *gray = (const uint8_t *)fx_get(&fx, "gray", sh);
  float ref[3 * 32 * 32];
  to_planes(pl, base, n);
  synco_aug_grayscale(pl, n);
  to_planes(ref, gray, n);
  CHECK_CLOSE("grayscale", pl, ref, 3 * n, 1.0 / 255 + 1e-6, 0);
  /* GaussianBlur vs PIL */
  const float *sig = (const float *)fx_get(&fx, "blur_sigmas", sh);
  const int ns = sh[0];
  static uint8_t tmp[32 * 32 + 256];
  for (int k = 0; k < ns; k++) {
    char key[32], what[32];
    snprintf(key, sizeof key, "blur_%d", k);
    to_planes(ref, (const uint8_t *)fx_get(&fx, key, sh), n);
    to_planes(pl, base, n);
    synco_aug_blur(pl, 32, 32, sig[k], tmp);
    snprintf(what, sizeof what, "blur(sigma %g)", sig[k]);
    CHECK_CLOSE(what, pl, ref, 3 * n, 1e-6, 0);
  }
}

static void test_pipeline(void) {
  int sh[4];
  const int32_t *pp = (const int32_t *)fx_get(&fx, "pipe_params", sh);
  const float *fac = (const float *)fx_get(&fx, "pipe_factors", sh);
  const float *ref = (const float *)fx_get(&fx, "pipe_out", sh);
  synco_aug_config cfg = {SYNCO_AUG_MOCO_V2, pp[4], 0, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  synco_aug_params p;
  memset(&p, 0, sizeof p);
  p.crop_x = pp[0];
  p.crop_y = pp[1];
  p.crop_w = pp[2];
  p.crop_h = pp[3];
  p.jitter = 1;
  for (int k = 0; k < 4; k++) p.order[k] = pp[5 + k];
  p.brightness = fac[0];
  p.contrast = fac[1];
  p.saturation = fac[2];
  p.hue = fac[3];
  p.gray = 1;
  p.flip = 1;
  synco_image img = {61, 47, (uint8_t *)src, 0};
  void *scr = malloc(synco_augment_scratch_bytes(61, 47, &cfg));
  float out[3 * 32 * 32];
  CHECK_OK(synco_aug_apply(out, &img, &cfg, &p, scr));
  CHECK_CLOSE("aug-plus view with fixed parameters", out, ref, 3 * 32 * 32, 5e-4, 0);
  /* same key, same bytes; another key, other bytes */
  float a[3 * 32 * 32], b[3 * 32 * 32];
  synco_rng r1 = synco_rng_make(7, 3, 11, SYNCO_RNG_AUG_Q), r2 = synco_rng_make(7, 3, 11, SYNCO_RNG_AUG_Q);
  synco_rng r3 = synco_rng_make(7, 3, 11, SYNCO_RNG_AUG_K);
  CHECK_OK(synco_augment(a, &img, &cfg, &r1, scr));
  CHECK_OK(synco_augment(b, &img, &cfg, &r2, scr));
  CHECK(!memcmp(a, b, sizeof a));
  CHECK_OK(synco_augment(b, &img, &cfg, &r3, scr));
  CHECK(memcmp(a, b, sizeof a) != 0);
  free(scr);
}

static void test_distribution(void) {
  int sh[4];
  const float *st = (const float *)fx_get(&fx, "crop_stats", sh);
  const int rows = sh[0], N = 100000;
  for (int k = 0; k < rows; k++) {
    const float *s = st + 7 * k;
    const int w = (int)s[0], h = (int)s[1];
    synco_rng r = synco_rng_make(42, (uint64_t)k, 0, SYNCO_RNG_TEST);
    double sa = 0, sr = 0;
    int inside = 1;
    for (int i = 0; i < N; i++) {
      int x, y, cw, ch;
      synco_aug_sample_crop(w, h, s[2], 1.0f, &r, &x, &y, &cw, &ch);
      inside &= x >= 0 && y >= 0 && x + cw <= w && y + ch <= h && cw > 0 && ch > 0;
      sa += (double)cw * ch / ((double)w * h);
      sr += (double)cw / ch;
    }
    CHECK(inside);
    sa /= N;
    sr /= N;
    /* torchvision's mean from 100k of its own draws; 5 standard errors of the difference of two means */
    const double ta = 5 * sqrt(2.0) * s[4] / sqrt((double)N), tr = 5 * sqrt(2.0) * s[6] / sqrt((double)N);
    printf("crop %dx%d scale (%.2f,1): area %.4f (torchvision %.4f), ratio %.4f (torchvision %.4f)\n", w, h, s[2],
           sa, s[3], sr, s[5]);
    CHECK(fabs(sa - s[3]) < ta);
    CHECK(fabs(sr - s[5]) < tr);
  }
  /* Bernoulli choices and factor ranges of aug-plus with blur */
  synco_aug_config cfg = {SYNCO_AUG_MOCO_V2, 32, 1, {0, 0, 0}, {1, 1, 1}};
  const int M = 40000;
  int jit = 0, gray = 0, blur = 0, flip = 0, first[4] = {0, 0, 0, 0}, range_ok = 1;
  double bsum = 0, hsum = 0, ssum = 0;
  synco_rng r = synco_rng_make(3, 0, 0, SYNCO_RNG_TEST);
  for (int i = 0; i < M; i++) {
    synco_aug_params p;
    synco_aug_sample(&p, 32, 32, &cfg, &r);
    jit += p.jitter;
    gray += p.gray;
    blur += p.blur;
    flip += p.flip;
    first[p.order[0]]++;
    int seen = 0;
    for (int k = 0; k < 4; k++) seen |= 1 << p.order[k];
    range_ok &= seen == 15;
    range_ok &= p.brightness >= 0.6f && p.brightness <= 1.4f && p.contrast >= 0.6f && p.contrast <= 1.4f &&
                p.saturation >= 0.6f && p.saturation <= 1.4f && p.hue >= -0.1f && p.hue <= 0.1f &&
                p.sigma >= 0.1f && p.sigma <= 2.0f;
    bsum += p.brightness;
    hsum += p.hue;
    ssum += p.sigma;
  }
  CHECK(range_ok);
  /* 5 standard errors of a Bernoulli mean: 5*sqrt(p(1-p)/M) */
  const double se = 5 * sqrt(0.25 / M);
  CHECK(fabs((double)jit / M - 0.8) < 5 * sqrt(0.16 / M));
  CHECK(fabs((double)gray / M - 0.2) < 5 * sqrt(0.16 / M));
  CHECK(fabs((double)blur / M - 0.5) < se);
  CHECK(fabs((double)flip / M - 0.5) < se);
  for (int k = 0; k < 4; k++) CHECK(fabs((double)first[k] / M - 0.25) < 5 * sqrt(0.1875 / M));
  CHECK(fabs(bsum / M - 1.0) < 5 * 0.8 / sqrt(12.0 * M));
  CHECK(fabs(hsum / M) < 5 * 0.2 / sqrt(12.0 * M));
  CHECK(fabs(ssum / M - 1.05) < 5 * 1.9 / sqrt(12.0 * M));
  printf("rates: jitter %.3f gray %.3f blur %.3f flip %.3f\n", (double)jit / M, (double)gray / M, (double)blur / M,
         (double)flip / M);
}

int main(void) {
  if (!fx_open(&fx, "tests/fixtures/data/aug_fixtures.safetensors")) {
    fprintf(stderr, "cannot read tests/fixtures/data/aug_fixtures.safetensors\n");
    return 1;
  }
  int sh[4];
  src = (const uint8_t *)fx_get(&fx, "src", sh);
  CHECK(sh[0] == 47 && sh[1] == 61 && sh[2] == 3);
  test_resize();
  test_color();
  test_pipeline();
  test_distribution();
  fx_close(&fx);
  return synco_test_finish("test_data_aug");
}
