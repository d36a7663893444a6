#include "test_util.h"

#include <math.h>

#include "base/rng.h"
#include "tensor/backend.h"

int synco_test_failures = 0;

int synco_test_allclose(const char *what, const float *got, const float *ref, size_t n, double atol, double rtol) {
  size_t bad = 0, worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)got[i] - (double)ref[i]);
    const double tol = atol + rtol * fabs((double)ref[i]);
    const double excess = isfinite(got[i]) ? d - tol : INFINITY;
    if (excess > 0) bad++;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (bad) {
    fprintf(stderr, "%s: %zu of %zu elements off (atol %g rtol %g); worst [%zu]: got %.8g ref %.8g\n", what, bad, n,
            atol, rtol, worst, n ? got[worst] : 0.f, n ? ref[worst] : 0.f);
    return 0;
  }
  return 1;
}

void synco_test_fill(float *x, size_t n, unsigned seed, float lo, float hi) {
  synco_rng r = synco_rng_make(seed, 0, 0, SYNCO_RNG_TEST);
  for (size_t i = 0; i < n; i++) x[i] = synco_rng_range(&r, lo, hi);
}

char *synco_test_kernel_log(synco_backend *be) {
  const size_t n = be->kernels(be, NULL, 0) + 1;
  char *log = malloc(n);
  if (log) be->kernels(be, log, n);
  return log;
}

int synco_test_finish(const char *name) {
  if (synco_test_failures) {
    printf("%s: FAILED (%d checks)\n", name, synco_test_failures);
    return 1;
  }
  printf("%s: ok\n", name);
  return 0;
}

double synco_test_rel_l2(const float *got, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

void synco_test_close_l2(const char *name, const float *got, const float *ref, size_t n, double atol, double rtol,
                         double rel_l2, double loose) {
  double mx = 0;
  for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
  atol = fmax(atol, (rel_l2 > 2e-3 ? 1e-2 : 1e-3) * mx) * loose;
  if (!synco_test_allclose(name, got, ref, n, atol, rtol * loose)) synco_test_failures++;
  /* and as a whole: the relative error of the tensor's L2 norm stays tight even where single elements that are
   * sums of cancelling terms (or a ReLU that flips on a near-zero input) are allowed more */
  const double rel = synco_test_rel_l2(got, ref, n);
  if (getenv("SYNCO_TEST_VERBOSE")) fprintf(stderr, "%s: relative L2 error %.2e\n", name, rel);
  if (!(rel <= rel_l2 * loose)) {
    fprintf(stderr, "%s: relative L2 error %.3g > %g\n", name, rel, rel_l2 * loose);
    synco_test_failures++;
  }
}

void synco_test_default_kernels(void) {
  static const char *vars[] = {"SYNCO_CONV_ALGO", "SYNCO_CONV_WINOGRAD", "SYNCO_BF16_CONV", "SYNCO_WINO_TILE",
                               "SYNCO_ONEDNN_BLOCK", "SYNCO_ONEDNN_BN", "SYNCO_BN_ISA", "SYNCO_HOST_GEMM"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
    if (getenv(vars[i])) {
      fprintf(stderr, "(%s=%s unset: this test chooses the kernels itself)\n", vars[i], getenv(vars[i]));
      unsetenv(vars[i]);
    }
}
