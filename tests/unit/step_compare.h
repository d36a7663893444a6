/* Whole MoCo-v2 and SynCo steps through the reference backend and through another backend (oneDNN in
 * test_step_backends.c, CUDA in test_cuda_step.c) on the same inputs and weights: after each of several steps
 * (the queue wraps, synthetic negatives on, Split-BN with the key shuffle, the symmetric loss once) the loss,
 * dL/d(logits), every parameter gradient, the updated parameters, the SGD momentum, the key encoder's EMA weights
 * and BN buffers, and the queue agree within atol + rtol·|ref| (atol a small share of the tensor's largest
 * magnitude: gradients are sums that cancel) and in relative L2 error (2e-3; 1e-2 for gradients and momentum,
 * where one ReLU that flips on a near-zero input moves a few elements). Before each step the other model gets the
 * reference model's state (uploaded through its backend's copy): a tiny network with BN over 8 images and lr 0.06
 * is chaotic, so rounding differences of the convolutions would otherwise grow step by step, and what is compared
 * is one step of each backend from the same state. Its tensors are downloaded through copy to be compared (for a
 * CPU backend copy is memcpy). */
#ifndef SYNCO_TEST_STEP_COMPARE_H
#define SYNCO_TEST_STEP_COMPARE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ssl/moco.h"
#include "tensor/backend.h"
#include "test_moco.h"
#include "test_util.h"

enum { STEP_B = 16, STEP_S = 32, STEP_K = 32 };

typedef struct {
  synco_backend *ref, *other;
  double loose;          /* scales every tolerance (1: strict) */
  double grad_loose;     /* scales the parameter gradients' and the momentum's instead, when non-zero */
  double grad_l2;        /* their relative L2 bound before scaling, when non-zero (else 1e-2) */
  const char *case_name;
  float *host[2];        /* downloads of the other backend's tensors (two may be compared at once) */
  int which;
} step_compare;

/* A host copy of n floats of the other backend's memory, valid until the next-but-one call. */
static const float *step_download(step_compare *t, const float *src, size_t n) {
  t->which ^= 1;
  free(t->host[t->which]);
  t->host[t->which] = malloc(n * sizeof(float));
  CHECK_OK(t->other->copy(t->other, t->host[t->which], src, n * sizeof(float), SYNCO_COPY_D2H));
  return t->host[t->which];
}

static void step_upload(step_compare *t, float *dst, const float *src, size_t n) {
  CHECK_OK(t->other->copy(t->other, dst, src, n * sizeof(float), SYNCO_COPY_H2D));
}

/* The other backend's tensor `got` (its memory) against the reference's (test_util.h: synco_test_close_l2). */
static void step_check(step_compare *t, const char *what, int step, const float *got, const float *ref, size_t n,
                       double atol, double rtol, double rel_l2) {
  char name[160];
  snprintf(name, sizeof name, "%s, step %d: %s", t->case_name, step, what);
  const int grad = !strcmp(what, "parameter gradients") || !strcmp(what, "SGD momentum");
  synco_test_close_l2(name, step_download(t, got, n), ref, n, atol, rtol, rel_l2,
                      grad && t->grad_loose > 0 ? t->grad_loose : t->loose);
}

static void step_compare_case(step_compare *t, int symmetric, int negatives) {
  enum { B = STEP_B, S = STEP_S };
  t->case_name = negatives ? symmetric ? "SynCo symmetric" : "SynCo" : "MoCo-v2";
  const synco_moco_config cfg = synco_test_moco_config(S, B, STEP_K * (symmetric ? 2 : 1), 2, symmetric, negatives,
                                                       16, 11);
  synco_moco *a = NULL, *b = NULL;
  CHECK_OK(synco_moco_create(&a, t->ref, &cfg));
  CHECK_OK(synco_moco_create(&b, t->other, &cfg));
  if (!a || !b) {
    synco_moco_free(a);
    synco_moco_free(b);
    return;
  }
  const size_t img = (size_t)B * 3 * S * S, Q = (size_t)cfg.K * cfg.enc.dim;
  float *xq = malloc(img * sizeof *xq), *xk = malloc(img * sizeof *xk);
  synco_encoder *qa = synco_moco_query(a), *qb = synco_moco_query(b), *ka = synco_moco_key(a), *kb = synco_moco_key(b);
  const size_t P = synco_encoder_num_params(qa), NB = synco_encoder_num_buffers(qa);
  for (int step = 0; step < 4; step++) { /* 4 x 16 keys through a queue of 32: it wraps twice */
    synco_test_fill(xq, img, 100 + step, -2.f, 2.f);
    synco_test_fill(xk, img, 200 + step, -2.f, 2.f);
    /* b starts the step from a's state */
    step_upload(t, synco_encoder_params(qb), synco_encoder_params(qa), P);
    step_upload(t, synco_encoder_buffers(qb), synco_encoder_buffers(qa), NB);
    step_upload(t, synco_encoder_params(kb), synco_encoder_params(ka), P);
    step_upload(t, synco_encoder_buffers(kb), synco_encoder_buffers(ka), NB);
    step_upload(t, (float *)synco_moco_momentum(b), synco_moco_momentum(a), P);
    step_upload(t, (float *)synco_moco_queue(b), synco_moco_queue(a), Q);
    synco_step_stats sa, sb;
    CHECK_OK(synco_moco_step(a, xq, xk, 0.06f, negatives, (uint64_t)step, &sa));
    CHECK_OK(synco_moco_step(b, xq, xk, 0.06f, negatives, (uint64_t)step, &sb));
    const float la = (float)sa.loss, lb = (float)sb.loss;
    char name[160];
    snprintf(name, sizeof name, "%s, step %d: loss", t->case_name, step);
    synco_test_close_l2(name, &lb, &la, 1, 1e-4, 1e-4, 2e-3, t->loose); /* a host value: no download */
    CHECK(sa.acc == sb.acc || fabs(sa.acc - sb.acc) <= 1.0 / B); /* a near-tie may flip one query */
    int ra, lda, rb, ldb;
    const float *ga = synco_moco_logit_grads(a, &ra, &lda), *gb = synco_moco_logit_grads(b, &rb, &ldb);
    CHECK(ra == rb && lda == ldb);
    step_check(t, "dL/dlogits", step, gb, ga, (size_t)ra * lda, 1e-6, 1e-2, 1e-2);
    const double gl2 = t->grad_l2 > 0 ? t->grad_l2 : 1e-2;
    step_check(t, "parameter gradients", step, synco_encoder_grads(qb), synco_encoder_grads(qa), P, 1e-4, 0.1, gl2);
    step_check(t, "query parameters", step, synco_encoder_params(qb), synco_encoder_params(qa), P, 1e-5, 1e-3, 2e-3);
    step_check(t, "SGD momentum", step, synco_moco_momentum(b), synco_moco_momentum(a), P, 1e-4, 0.1, gl2);
    step_check(t, "key parameters (EMA)", step, synco_encoder_params(kb), synco_encoder_params(ka), P, 1e-5, 1e-3, 2e-3);
    step_check(t, "key BN buffers", step, synco_encoder_buffers(kb), synco_encoder_buffers(ka), NB, 1e-4, 1e-3, 2e-3);
    step_check(t, "queue", step, synco_moco_queue(b), synco_moco_queue(a), Q, 1e-4, 1e-3, 2e-3);
    CHECK(synco_moco_queue_ptr(a) == synco_moco_queue_ptr(b));
  }
  CHECK(synco_moco_queue_ptr(a) == (4L * B * (symmetric ? 2 : 1)) % cfg.K);
  free(xq);
  free(xk);
  synco_moco_free(a);
  synco_moco_free(b);
}

/* The three cases: MoCo-v2, SynCo, SynCo with the symmetric loss. */
static void step_compare_all(step_compare *t) {
  step_compare_case(t, 0, 0);
  step_compare_case(t, 0, 1);
  step_compare_case(t, 1, 1);
  free(t->host[0]);
  free(t->host[1]);
}

#endif
