/* SGD against torch.optim.SGD (three steps with changing lr, momentum 0.9, weight decay; numbers in
 * tests/fixtures/synco_sgd.safetensors from tools/make_synco_fixtures.py), against a hand-computed sequence, the
 * momentum-free case, and the EMA update. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "io/safetensors.h"
#include "optim/sgd.h"
#include "tensor/backend.h"
#include "test_util.h"

#define FIXTURE "tests/fixtures/synco_sgd.safetensors"
#define N 37

static synco_backend *be; /* the reference backend: SGD and EMA are its ops */

static void test_torch_fixture(void) {
  synco_safetensors st;
  if (synco_st_open(&st, FIXTURE) != SYNCO_OK) {
    fprintf(stderr, "cannot read %s: %s\n", FIXTURE, synco_last_error());
    synco_test_failures++;
    return;
  }
  float p[N], buf[N], grad[N], ref[N], lrs[3], hyper[2];
  CHECK_OK(synco_st_get_f32(&st, "p0", p, N, NULL, 0));
  CHECK_OK(synco_st_get_f32(&st, "lrs", lrs, 3, NULL, 0));
  CHECK_OK(synco_st_get_f32(&st, "hyper", hyper, 2, NULL, 0));
  for (int s = 0; s < 3; s++) {
    char name[32], what[64];
    snprintf(name, sizeof name, "grad%d", s);
    CHECK_OK(synco_st_get_f32(&st, name, grad, N, NULL, 0));
    CHECK_OK(synco_sgd_step(be, p, buf, grad, N, lrs[s], hyper[0], hyper[1], s == 0));
    snprintf(name, sizeof name, "p%d", s + 1);
    CHECK_OK(synco_st_get_f32(&st, name, ref, N, NULL, 0));
    snprintf(what, sizeof what, "parameters after step %d", s + 1);
    CHECK_CLOSE(what, p, ref, N, 1e-7, 1e-6);
    snprintf(name, sizeof name, "buf%d", s + 1);
    CHECK_OK(synco_st_get_f32(&st, name, ref, N, NULL, 0));
    snprintf(what, sizeof what, "momentum after step %d", s + 1);
    CHECK_CLOSE(what, buf, ref, N, 1e-7, 1e-6);
  }
  synco_st_close(&st);
}

static void test_by_hand(void) {
  /* p = 1, grads 0.5, -1, 2; lr 0.1; momentum 0.9; wd 0.01 */
  float p = 1.f, buf = 123.f; /* garbage in buf: the first step must not read it */
  const float grads[3] = {0.5f, -1.f, 2.f};
  double pr = 1.0, br = 0.0;
  for (int s = 0; s < 3; s++) {
    CHECK_OK(synco_sgd_step(be, &p, &buf, &grads[s], 1, 0.1f, 0.9f, 0.01f, s == 0));
    const double g = grads[s] + 0.01 * pr;
    br = s == 0 ? g : 0.9 * br + g;
    pr -= 0.1 * br;
  }
  /* step 1: g = .51, buf = .51, p = .949; step 2: g = -.99051, buf = -.53151, p = 1.002151;
   * step 3: g = 2.01002151, buf = 1.53166251, p = .848984749 */
  CHECK(fabs(pr - 0.848984749) < 1e-9);
  const float pref = (float)pr, bref = (float)br;
  CHECK_CLOSE("hand-computed p", &p, &pref, 1, 1e-6, 1e-6);
  CHECK_CLOSE("hand-computed buf", &buf, &bref, 1, 1e-6, 1e-6);
  /* no momentum: plain gradient step, buffer unused */
  float q = 2.f;
  const float gq = 1.f;
  CHECK_OK(synco_sgd_step(be, &q, NULL, &gq, 1, 0.5f, 0.f, 0.1f, 1));
  const float qref = 2.f - 0.5f * (1.f + 0.2f);
  CHECK_CLOSE("momentum-free step", &q, &qref, 1, 1e-7, 1e-7);
}

static void test_ema(void) {
  enum { M = 1000 };
  float *k = malloc(M * sizeof *k), *q = malloc(M * sizeof *q), *ref = malloc(M * sizeof *ref);
  synco_test_fill(k, M, 5, -1.f, 1.f);
  synco_test_fill(q, M, 6, -1.f, 1.f);
  for (int i = 0; i < M; i++) ref[i] = (float)(0.99 * k[i] + 0.01 * q[i]);
  CHECK_OK(synco_ema_update(be, k, q, M, 0.99f));
  CHECK_CLOSE("EMA", k, ref, M, 1e-7, 1e-6);
  /* m = 1 keeps k; m = 0 copies q */
  memcpy(ref, k, M * sizeof *k);
  CHECK_OK(synco_ema_update(be, k, q, M, 1.f));
  CHECK(memcmp(ref, k, M * sizeof *k) == 0);
  CHECK_OK(synco_ema_update(be, k, q, M, 0.f));
  CHECK(memcmp(q, k, M * sizeof *k) == 0);
  free(k);
  free(q);
  free(ref);
}

int main(void) {
  CHECK_OK(synco_backend_ref_create(&be));
  test_torch_fixture();
  test_by_hand();
  test_ema();
  synco_backend_destroy(be);
  return synco_test_finish("sgd");
}
