/* Tiny test helpers: checks that count failures, tolerance comparisons of the form atol + rtol*|ref|,
 * and skipping (exit 77, which CTest reports as skipped). */
#ifndef SYNCO_TEST_UTIL_H
#define SYNCO_TEST_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

extern int synco_test_failures;

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
      synco_test_failures++;                                                             \
    }                                                                                    \
  } while (0)

#define CHECK_OK(expr)                                                                   \
  do {                                                                                   \
    synco_status _st = (expr);                                                           \
    if (_st != SYNCO_OK) {                                                               \
      fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,                \
              synco_strerror(_st), synco_last_error());                                  \
      synco_test_failures++;                                                             \
    }                                                                                    \
  } while (0)

/* Compares got[i] with ref[i] within atol + rtol*|ref[i]|; prints the worst element; returns 1 if close. */
int synco_test_allclose(const char *what, const float *got, const float *ref, size_t n, double atol, double rtol);
#define CHECK_CLOSE(what, got, ref, n, atol, rtol) \
  do { if (!synco_test_allclose(what, got, ref, n, atol, rtol)) synco_test_failures++; } while (0)

/* The relative L2 error |got - ref| / |ref| of a whole tensor (|got - ref| where ref is all zeros). */
double synco_test_rel_l2(const float *got, const float *ref, size_t n);

/* A whole tensor of a training step against the reference: every element within atol + rtol·|ref| (atol raised to
 * 1e-3 of the largest |ref|, 1e-2 when rel_l2 > 2e-3: the loosely compared gradients and momentum, whose
 * elements are sums that cancel), and the relative L2 error at most rel_l2 (printed with SYNCO_TEST_VERBOSE).
 * loose scales all three (1: none). Counts a failure and says why. */
void synco_test_close_l2(const char *name, const float *got, const float *ref, size_t n, double atol, double rtol,
                         double rel_l2, double loose);

/* Fills x[n] with uniform values in [lo, hi) from a seeded counter-based stream. */
void synco_test_fill(float *x, size_t n, unsigned seed, float lo, float hi);

/* Skip the test (CTest: skipped) with a reason. */
#define SKIP(...) do { printf("SKIP: "); printf(__VA_ARGS__); printf("\n"); exit(77); } while (0)

/* The backend's kernel log (be->kernels: the implementation of each pass of every layer planned), malloc'd. */
typedef struct synco_backend synco_backend;
char *synco_test_kernel_log(synco_backend *be);

/* Unsets the variables that choose the cpu backend's kernels (SYNCO_CONV_ALGO, SYNCO_CONV_WINOGRAD, SYNCO_BF16_CONV,
 * SYNCO_WINO_TILE, SYNCO_ONEDNN_BLOCK, SYNCO_ONEDNN_BN, SYNCO_BN_ISA, SYNCO_HOST_GEMM), saying so on stderr for each one
 * set: for the tests that check which kernel the default rule takes, or that set a choice themselves, so that a
 * shell where one is exported (to time a kernel) does not fail them. */
void synco_test_default_kernels(void);

/* Prints a summary line and returns the exit status for main. */
int synco_test_finish(const char *name);

#endif
