/* Whole MoCo-v2 and SynCo steps through the reference backend and through the CUDA backend on the same inputs
 * and weights: after each of several steps (the queue wraps, synthetic negatives on, Split-BN with the key
 * shuffle, the symmetric loss once) the loss, dL/d(logits), every parameter gradient, the updated parameters,
 * the SGD momentum, the key encoder's EMA weights and BN buffers, and the queue agree within atol + rtol·|ref|
 * (atol a small share of the tensor's largest magnitude: gradients are sums that cancel) and in relative L2 error
 * (2e-3; 1e-2 for gradients and momentum, where one ReLU that flips on a near-zero input moves a few elements). Before each
 * step the GPU model gets the reference model's state (uploaded): a tiny network with BN over 8 images and lr 0.06 is
 * chaotic, so rounding differences of the convolutions would otherwise grow step by step, and what is compared
 * is one step of each backend from the same state. The GPU's tensors are downloaded to be compared. The same test as
 * test_step_backends.c (oneDNN), with the same tolerances; strict fp32 (SYNCO_CUDA_TF32 unset), and with
 * SYNCO_CUDA_TF32=1 in the environment of a second run (tools/gpu_check.sh) at 10x the tolerances. Skipped (77)
 * in a build without CUDA or on a machine without a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ssl/moco.h"
#include "backend/registry.h"
#include "tensor/backend.h"
#include "test_util.h"
#ifdef SYNCO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

#ifdef SYNCO_HAVE_CUDA
static double loose = 1; /* 10 under TF32 */
static synco_backend *gpu;

static const float *dl(const float *dev, size_t n) { /* a host copy (freed by the next call with the same slot) */
  static float *slot[2];
  static int which;
  which ^= 1;
  free(slot[which]);
  slot[which] = malloc(n * sizeof(float));
  CHECK_OK(gpu->copy(gpu, slot[which], dev, n * sizeof(float), SYNCO_COPY_D2H));
  return slot[which];
}

static void ul(float *dev, const float *host, size_t n) {
  CHECK_OK(gpu->copy(gpu, dev, host, n * sizeof(float), SYNCO_COPY_H2D));
}

enum { B = 16, S = 32, K = 32 };

static const char *case_name;

/* One tensor of step `step` against the reference (test_util.h: synco_test_close_l2). */
static void compare(const char *what, int step, const float *got, const float *ref, size_t n, double atol, double rtol,
                    double rel_l2) {
  char name[160];
  snprintf(name, sizeof name, "%s, step %d: %s", case_name, step, what);
  synco_test_close_l2(name, got, ref, n, atol, rtol, rel_l2, loose);
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
    ul(synco_encoder_params(qb), synco_encoder_params(qa), P);
    ul(synco_encoder_buffers(qb), synco_encoder_buffers(qa), NB);
    ul(synco_encoder_params(kb), synco_encoder_params(ka), P);
    ul(synco_encoder_buffers(kb), synco_encoder_buffers(ka), NB);
    ul((float *)synco_moco_momentum(b), synco_moco_momentum(a), P);
    ul((float *)synco_moco_queue(b), synco_moco_queue(a), (size_t)cfg.K * cfg.enc.dim);
    synco_step_stats sa, sb;
    CHECK_OK(synco_moco_step(a, xq, xk, 0.06f, negatives, (uint64_t)step, &sa));
    CHECK_OK(synco_moco_step(b, xq, xk, 0.06f, negatives, (uint64_t)step, &sb));
    const float la = (float)sa.loss, lb = (float)sb.loss;
    compare("loss", step, &lb, &la, 1, 1e-4, 1e-4, 2e-3);
    CHECK(sa.acc == sb.acc || fabs(sa.acc - sb.acc) <= 1.0 / B); /* a near-tie may flip one query */
    int ra, lda, rb, ldb;
    const float *ga = synco_moco_logit_grads(a, &ra, &lda), *gb = synco_moco_logit_grads(b, &rb, &ldb);
    CHECK(ra == rb && lda == ldb);
    compare("dL/dlogits", step, dl(gb, (size_t)rb * ldb), ga, (size_t)ra * lda, 1e-6, 1e-2, 1e-2);
    compare("parameter gradients", step, dl(synco_encoder_grads(qb), P), synco_encoder_grads(qa), P, 1e-4, 0.1, 1e-2);
    compare("query parameters", step, dl(synco_encoder_params(qb), P), synco_encoder_params(qa), P, 1e-5, 1e-3, 2e-3);
    compare("SGD momentum", step, dl(synco_moco_momentum(b), P), synco_moco_momentum(a), P, 1e-4, 0.1, 1e-2);
    compare("key parameters (EMA)", step, dl(synco_encoder_params(kb), P), synco_encoder_params(ka), P, 1e-5, 1e-3, 2e-3);
    compare("key BN buffers", step, dl(synco_encoder_buffers(kb), NB), synco_encoder_buffers(ka), NB, 1e-4, 1e-3, 2e-3);
    compare("queue", step, dl(synco_moco_queue(b), (size_t)cfg.K * cfg.enc.dim), synco_moco_queue(a), (size_t)cfg.K * cfg.enc.dim, 1e-4, 1e-3, 2e-3);
    CHECK(synco_moco_queue_ptr(a) == synco_moco_queue_ptr(b));
  }
  CHECK(synco_moco_queue_ptr(a) == (4L * B * (symmetric ? 2 : 1)) % cfg.K);
  free(xq);
  free(xk);
  synco_moco_free(a);
  synco_moco_free(b);
}

#endif

int main(void) {
#ifndef SYNCO_HAVE_CUDA
  SKIP("built without CUDA (make CUDA=1)");
#else
  if (synco_cuda_device_count() == 0) SKIP("no GPU on this machine");
  const char *tf = getenv("SYNCO_CUDA_TF32");
  if (tf && !strcmp(tf, "1")) loose = 10;
  synco_backend *ref_be = NULL;
  CHECK_OK(synco_backend_ref_create(&ref_be));
  CHECK_OK(synco_backend_create("cuda", &gpu));
  if (!ref_be || !gpu) return synco_test_finish("cuda_step");
  run_case(ref_be, gpu, 0, 0); /* MoCo-v2 */
  run_case(ref_be, gpu, 0, 1); /* SynCo */
  run_case(ref_be, gpu, 1, 1); /* SynCo, symmetric loss */
  synco_backend_destroy(gpu);
  synco_backend_destroy(ref_be);
  return synco_test_finish("cuda_step");
#endif
}
