/* The host SGEMM (backend/host_gemm.h), against a plain double-precision loop, within 1e-4 + 1e-4·|ref|:
 *  - every transposition of A and B, alpha and beta, leading dimensions wider than the rows, C cut by rows and by
 *    columns into several blocks with a shorter last one, a single block, k = 0 (C = beta·C) and empty C;
 *  - the same bits at 1, 2 and 3 threads and from inside a parallel region (each block is one single-threaded
 *    call whatever the team: what --adapt-threads relies on), and the caller's thread count left as it was;
 *  - a negative size, a missing matrix or a leading dimension below a row's length refused with SYNCO_ERR_ARG;
 *  - all of it with the build's default GEMM and with OpenBLAS's (SYNCO_HOST_GEMM=openblas), and a GEMM this build
 *    lacks refused, by the GEMM and when a backend is made. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/host_gemm.h"
#include "backend/registry.h"
#include "base/rng.h"
#include "test_util.h"

typedef struct {
  int ta, tb, m, n, k, pad;
  float alpha, beta;
} gemm_case;

static float *rnd(size_t n, uint64_t seed) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  synco_rng r = synco_rng_make(seed, 0, 0, SYNCO_RNG_TEST);
  for (size_t i = 0; i < n; i++) p[i] = 2.f * synco_rng_uniform(&r) - 1.f;
  return p;
}

/* C = alpha op(A) op(B) + beta C in double; A is stored rows x (cols + pad), as the case's lda says. */
static void reference(const gemm_case *g, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
  for (int i = 0; i < g->m; i++)
    for (int j = 0; j < g->n; j++) {
      double s = 0;
      for (int p = 0; p < g->k; p++) {
        const double av = g->ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
        const double bv = g->tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
        s += av * bv;
      }
      c[(size_t)i * ldc + j] = (float)(g->alpha * s + g->beta * c[(size_t)i * ldc + j]);
    }
}

static void run_case(const gemm_case *g, uint64_t seed) {
  const int lda = (g->ta ? g->m : g->k) + g->pad, ldb = (g->tb ? g->k : g->n) + g->pad, ldc = g->n + g->pad;
  const size_t na = (size_t)(g->ta ? g->k : g->m) * lda, nb = (size_t)(g->tb ? g->n : g->k) * ldb,
               nc = (size_t)g->m * ldc;
  float *a = rnd(na, seed), *b = rnd(nb, seed + 1), *c0 = rnd(nc, seed + 2);
  float *want = malloc((nc ? nc : 1) * sizeof(float)), *got[4];
  memcpy(want, c0, nc * sizeof(float));
  reference(g, a, lda, b, ldb, want, ldc);
  const int before = omp_get_max_threads();
  for (int t = 0; t < 4; t++) { /* 1, 2, 3 threads, then inside a parallel region of 2 */
    got[t] = malloc((nc ? nc : 1) * sizeof(float));
    memcpy(got[t], c0, nc * sizeof(float));
    synco_status st = SYNCO_OK;
    if (t < 3) {
      omp_set_num_threads(t + 1);
      st = synco_host_sgemm(g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, lda, b, ldb, g->beta, got[t], ldc);
    } else {
#pragma omp parallel num_threads(2)
#pragma omp single
      st = synco_host_sgemm(g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, lda, b, ldb, g->beta, got[t], ldc);
    }
    CHECK_OK(st);
  }
  omp_set_num_threads(before);
  CHECK(omp_get_max_threads() == before);
  char what[96];
  snprintf(what, sizeof what, "gemm %c%c %dx%dx%d pad %d", g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n, g->k,
           g->pad);
  CHECK_CLOSE(what, got[1], want, nc, 1e-4, 1e-4);
  for (int t = 0; t < 4; t++) {
    if (t != 1 && memcmp(got[t], got[1], nc * sizeof(float)) != 0) {
      fprintf(stderr, "%s: the result at setting %d differs from 2 threads' in its bits\n", what, t);
      synco_test_failures++;
    }
  }
  for (int t = 0; t < 4; t++) free(got[t]);
  free(a), free(b), free(c0), free(want);
}

static void results(void) {
  const gemm_case cases[] = {
      {0, 1, 128, 700, 64, 0, 1.f, 0.f},    /* the logits' shape, small: cut by columns, a shorter last block */
      {0, 0, 300, 40, 500, 3, 1.f, 1.f},    /* the logits' gradient: cut by rows, accumulating, padded */
      {1, 0, 10, 257, 2000, 0, 0.5f, 2.f},  /* the probe's gW: 10 rows, cut by columns */
      {1, 1, 77, 65, 33, 5, -1.f, 0.25f},   /* both transposed, padded, one block or a few */
      {0, 1, 3, 5, 7, 0, 1.f, 0.f},         /* tiny: a single block */
      {0, 0, 20, 30, 0, 0, 1.f, 0.5f},      /* k = 0: C = beta C */
      {0, 0, 0, 30, 10, 0, 1.f, 0.f},       /* empty C */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 100 + 10 * i);
}

static void errors(void) {
  float a[4] = {0}, b[4] = {0}, c[4] = {0};
  CHECK(synco_host_sgemm(0, 0, -1, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 2) == SYNCO_ERR_ARG);
  CHECK(synco_host_sgemm(0, 0, 2, 2, 2, 1.f, NULL, 2, b, 2, 0.f, c, 2) == SYNCO_ERR_ARG);
  CHECK(synco_host_sgemm(0, 0, 2, 2, 2, 1.f, a, 2, b, 2, 0.f, NULL, 2) == SYNCO_ERR_ARG);
  CHECK(synco_host_sgemm(0, 0, 2, 2, 2, 1.f, a, 1, b, 2, 0.f, c, 2) == SYNCO_ERR_ARG); /* lda < k */
  CHECK(synco_host_sgemm(1, 0, 2, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 1) == SYNCO_ERR_ARG); /* ldc < n */
  CHECK(strlen(synco_host_sgemm_name()) > 0);
}

int main(void) {
  /* the build's default (oneDNN where built in), then OpenBLAS in the same blocks (a build without oneDNN's) */
  const char *gemms[] = {NULL, "openblas"};
  for (int g = 0; g < 2; g++) {
    if (gemms[g]) setenv("SYNCO_HOST_GEMM", gemms[g], 1);
    printf("host gemm: %s\n", synco_host_sgemm_name());
    results();
    errors();
  }
  float a[4] = {0}, b[4] = {0}, c[4] = {0};
  setenv("SYNCO_HOST_GEMM", "mkl", 1);
  CHECK(synco_host_sgemm(0, 0, 2, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 2) == SYNCO_ERR_ARG);
  synco_backend *be = NULL; /* refused when the backend is made, before a command writes anything */
  CHECK(synco_backend_create("ref", &be) == SYNCO_ERR_ARG && be == NULL);
  unsetenv("SYNCO_HOST_GEMM");
  return synco_test_finish("host_gemm");
}
