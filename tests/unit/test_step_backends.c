/* Whole MoCo-v2 and SynCo steps through the reference backend and through the oneDNN backend on the same inputs
 * and weights: after each of several steps (the queue wraps, synthetic negatives on, Split-BN with the key
 * shuffle, the symmetric loss once) the loss, dL/d(logits), every parameter gradient, the updated parameters,
 * the SGD momentum, the key encoder's EMA weights and BN buffers, and the queue agree within atol + rtol·|ref|
 * (atol a small share of the tensor's largest magnitude: gradients are sums that cancel) and in relative L2 error
 * (2e-3; 1e-2 for gradients and momentum, where one ReLU that flips on a near-zero input moves a few elements). Before each
 * step the oneDNN model gets the reference model's state: a tiny network with BN over 8 images and lr 0.06 is
 * chaotic, so rounding differences of the convolutions would otherwise grow step by step, and what is compared
 * is one step of each backend from the same state. Skipped in a build without oneDNN. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "ssl/moco.h"
#include "tensor/backend.h"
#include "test_util.h"

enum { B = 16, S = 32, K = 32 };

static const char *case_name;

/* One tensor of step `step` against the reference (test_util.h: synco_test_close_l2). */
static void compare(const char *what, int step, const float *got, const float *ref, size_t n, double atol, double rtol,
                    double rel_l2) {
  char name[160];
  snprintf(name, sizeof name, "%s, step %d: %s", case_name, step, what);
  synco_test_close_l2(name, got, ref, n, atol, rtol, rel_l2, 1);
}

static void run_case(synco_backend *ref_be, synco_backend *fast_be, int symmetric, int negatives) {
  case_name = negatives ? symmetric ? "SynCo symmetric" : "SynCo" : "MoCo-v2";
  synco_moco_config cfg = {0};
  cfg.enc = (synco_encoder_config){.depth = 18, .width = 8, .cifar_stem = 1, .head = 1, .mlp = 1, .dim = 16,
                                   .bn_splits = 2};
  cfg.image_size = S;
  cfg.batch = B;
  cfg.K = K * (symmetric ? 2 : 1);
  cfg.m = 0.99f;
  cfg.T = 0.2f;
  cfg.symmetric = symmetric;
  if (negatives) cfg.neg = (synco_negatives_config){.n_hard = 16, .n = {8, 8, 8, 4, 4, 4}, .sigma = 0.01f,
                                                     .delta = 0.01f, .eta = 0.01f};
  cfg.momentum = 0.9f;
  cfg.wd = 5e-4f;
  cfg.seed = 11;
  synco_moco *a = NULL, *b = NULL;
  CHECK_OK(synco_moco_create(&a, ref_be, &cfg));
  CHECK_OK(synco_moco_create(&b, fast_be, &cfg));
  if (!a || !b) {
    synco_moco_free(a);
    synco_moco_free(b);
    return;
  }
  const size_t img = (size_t)B * 3 * S * S;
  float *xq = malloc(img * sizeof *xq), *xk = malloc(img * sizeof *xk);
  synco_encoder *qa = synco_moco_query(a), *qb = synco_moco_query(b), *ka = synco_moco_key(a), *kb = synco_moco_key(b);
  const size_t P = synco_encoder_num_params(qa), NB = synco_encoder_num_buffers(qa);
  for (int step = 0; step < 4; step++) { /* 4 x 16 keys through a queue of 32: it wraps twice */
    synco_test_fill(xq, img, 100 + step, -2.f, 2.f);
    synco_test_fill(xk, img, 200 + step, -2.f, 2.f);
    /* b starts the step from a's state */
    memcpy(synco_encoder_params(qb), synco_encoder_params(qa), P * sizeof(float));
    memcpy(synco_encoder_buffers(qb), synco_encoder_buffers(qa), NB * sizeof(float));
    memcpy(synco_encoder_params(kb), synco_encoder_params(ka), P * sizeof(float));
    memcpy(synco_encoder_buffers(kb), synco_encoder_buffers(ka), NB * sizeof(float));
    memcpy((float *)synco_moco_momentum(b), synco_moco_momentum(a), P * sizeof(float));
    memcpy((float *)synco_moco_queue(b), synco_moco_queue(a), (size_t)cfg.K * cfg.enc.dim * sizeof(float));
    synco_step_stats sa, sb;
    CHECK_OK(synco_moco_step(a, xq, xk, 0.06f, negatives, (uint64_t)step, &sa));
    CHECK_OK(synco_moco_step(b, xq, xk, 0.06f, negatives, (uint64_t)step, &sb));
    const float la = (float)sa.loss, lb = (float)sb.loss;
    compare("loss", step, &lb, &la, 1, 1e-4, 1e-4, 2e-3);
    CHECK(sa.acc == sb.acc || fabs(sa.acc - sb.acc) <= 1.0 / B); /* a near-tie may flip one query */
    int ra, lda, rb, ldb;
    const float *ga = synco_moco_logit_grads(a, &ra, &lda), *gb = synco_moco_logit_grads(b, &rb, &ldb);
    CHECK(ra == rb && lda == ldb);
    compare("dL/dlogits", step, gb, ga, (size_t)ra * lda, 1e-6, 1e-2, 1e-2);
    compare("parameter gradients", step, synco_encoder_grads(qb), synco_encoder_grads(qa), P, 1e-4, 0.1, 1e-2);
    compare("query parameters", step, synco_encoder_params(qb), synco_encoder_params(qa), P, 1e-5, 1e-3, 2e-3);
    compare("SGD momentum", step, synco_moco_momentum(b), synco_moco_momentum(a), P, 1e-4, 0.1, 1e-2);
    compare("key parameters (EMA)", step, synco_encoder_params(kb), synco_encoder_params(ka), P, 1e-5, 1e-3, 2e-3);
    compare("key BN buffers", step, synco_encoder_buffers(kb), synco_encoder_buffers(ka), NB, 1e-4, 1e-3, 2e-3);
    compare("queue", step, synco_moco_queue(b), synco_moco_queue(a), (size_t)cfg.K * cfg.enc.dim, 1e-4, 1e-3, 2e-3);
    CHECK(synco_moco_queue_ptr(a) == synco_moco_queue_ptr(b));
  }
  CHECK(synco_moco_queue_ptr(a) == (4L * B * (symmetric ? 2 : 1)) % cfg.K);
  free(xq);
  free(xk);
  synco_moco_free(a);
  synco_moco_free(b);
}

int main(void) {
  synco_backend *ref_be = NULL, *fast_be = NULL;
  CHECK_OK(synco_backend_ref_create(&ref_be));
  if (synco_backend_create("onednn", &fast_be) != SYNCO_OK) {
    synco_backend_destroy(ref_be);
    SKIP("this build has no oneDNN backend");
  }
  run_case(ref_be, fast_be, 0, 0); /* MoCo-v2 */
  run_case(ref_be, fast_be, 0, 1); /* SynCo */
  run_case(ref_be, fast_be, 1, 1); /* SynCo, symmetric loss */
  synco_backend_destroy(fast_be);
  synco_backend_destroy(ref_be);
  return synco_test_finish("step_backends");
}
