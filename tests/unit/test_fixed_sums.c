/* Fixed sums (synco_backend_fixed_sums, what --adapt-threads turns on): a run whose thread count changes between
 * steps must compute exactly what a run at its full count computes. oneDNN splits a weight gradient's sum over the
 * batch by the thread count it plans for, so the cpu backend sums it in fixed batch chunks (cpu_conv.c, split_pass)
 * and plans the other batch sums (linear layers, im2col + matmul) for the full count. Here two SynCo models start
 * from the same state: one steps at the full count, the other at counts that change between steps, replanned each
 * time as the governor does (synco_moco_replan); after every step their parameter gradients, parameters, momentum,
 * key encoder and queue must be bit-identical. Cases: 2 chunks of a batch of 16 at 1 and 2 threads, and 3 chunks
 * (5, 5 and 6 images) at 1, 2 and 3 threads; fp32, and bf16 where the CPU has it. That the chunks ran is checked in
 * the kernel log ("bwd_weights_chunks"). Without fixed sums the two models differ on some machines (on a Zen 4, in
 * 6 to 15 convolution weight gradients), which the test prints but does not require: oneDNN need not split by
 * thread count on every CPU. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "test_moco.h"
#include "test_util.h"

enum { B = 16, S = 32, K = 32, STEPS = 4 };

/* Bytes of a and b differ (as a count of differing floats). */
static size_t ndiff(const float *a, const float *b, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return d;
}

static synco_backend *make_backend(const char *precision, int sums) {
  synco_backend *be = NULL;
  if (synco_backend_create("cpu", &be) != SYNCO_OK) SKIP("this build has no cpu backend");
  if (synco_backend_set_precision(be, precision) != SYNCO_OK) {
    synco_backend_destroy(be);
    return NULL;
  }
  CHECK_OK(synco_backend_fixed_sums(be, sums));
  return be;
}

/* Steps a model at `full` threads and one at the counts threads[step % nthreads] (replanned before each step), both
 * with sums fixed for `full` threads when fixed; returns the floats that differ over all steps and tensors. */
static size_t run_case(const char *precision, int full, const int *threads, int nthreads, int fixed) {
  synco_backend *be_a = make_backend(precision, fixed ? full : 0), *be_b = make_backend(precision, fixed ? full : 0);
  if (!be_a || !be_b) {
    synco_backend_destroy(be_a);
    synco_backend_destroy(be_b);
    return (size_t)-1;
  }
  const synco_moco_config cfg = synco_test_moco_config(S, B, K, 2, 0, 1, 16, 5);
  synco_moco *a = NULL, *b = NULL;
  omp_set_num_threads(full);
  CHECK_OK(synco_moco_create(&a, be_a, &cfg));
  omp_set_num_threads(threads[0]);
  CHECK_OK(synco_moco_create(&b, be_b, &cfg));
  size_t diff = 0;
  if (a && b) {
    const size_t img = (size_t)B * 3 * S * S, Q = (size_t)cfg.K * cfg.enc.dim;
    float *xq = malloc(img * sizeof *xq), *xk = malloc(img * sizeof *xk);
    synco_encoder *qa = synco_moco_query(a), *qb = synco_moco_query(b), *ka = synco_moco_key(a), *kb = synco_moco_key(b);
    const size_t P = synco_encoder_num_params(qa), NB = synco_encoder_num_buffers(qa);
    for (int step = 0; step < STEPS; step++) {
      synco_test_fill(xq, img, 300 + step, -2.f, 2.f);
      synco_test_fill(xk, img, 400 + step, -2.f, 2.f);
      omp_set_num_threads(full);
      synco_step_stats sa, sb;
      CHECK_OK(synco_moco_step(a, xq, xk, 0.06f, 1, (uint64_t)step, &sa));
      const int t = threads[step % nthreads];
      omp_set_num_threads(t);
      if (step > 0 && t != threads[(step - 1) % nthreads]) CHECK_OK(synco_moco_replan(b));
      CHECK_OK(synco_moco_step(b, xq, xk, 0.06f, 1, (uint64_t)step, &sb));
      size_t d = ndiff(synco_encoder_grads(qa), synco_encoder_grads(qb), P);
      d += ndiff(synco_encoder_params(qa), synco_encoder_params(qb), P);
      d += ndiff(synco_moco_momentum(a), synco_moco_momentum(b), P);
      d += ndiff(synco_encoder_params(ka), synco_encoder_params(kb), P);
      d += ndiff(synco_encoder_buffers(ka), synco_encoder_buffers(kb), NB);
      d += ndiff(synco_moco_queue(a), synco_moco_queue(b), Q);
      d += memcmp(&sa.loss, &sb.loss, sizeof sa.loss) != 0;
      if (fixed && d) printf("FAIL: %s, sums fixed for %d threads: step %d at %d threads: %zu floats differ\n",
                             precision, full, step, t, d);
      diff += d;
    }
    free(xq);
    free(xk);
  }
  if (fixed) {
    char *log = synco_test_kernel_log(be_b);
    char want[48];
    snprintf(want, sizeof want, "\"bwd_weights_chunks\":%d", full);
    if (!strstr(log, want)) printf("FAIL: %s: no convolution's backward weights in %d chunks: %s\n", precision, full, log);
    CHECK(strstr(log, want) != NULL);
    free(log);
  }
  synco_moco_free(a);
  synco_moco_free(b);
  synco_backend_destroy(be_a);
  synco_backend_destroy(be_b);
  return diff;
}

int main(void) {
  synco_test_default_kernels(); /* bit-identical runs need the same kernels in each plan: the rule's */
  const int was = omp_get_max_threads();
  const int two[] = {1, 2, 1}, three[] = {1, 3, 2};
  const char *precisions[] = {"fp32", "bf16"};
  for (int p = 0; p < 2; p++) {
    const size_t d2 = run_case(precisions[p], 2, two, 3, 1);
    if (d2 == (size_t)-1) {
      printf("SKIP: %s: this CPU has no native bf16\n", precisions[p]);
      continue;
    }
    const size_t d3 = run_case(precisions[p], 3, three, 3, 1);
    CHECK(d2 == 0);
    CHECK(d3 == 0);
    if (!d2 && !d3)
      printf("%s: bit-identical at 1 and 2 threads (2 chunks) and at 1, 2 and 3 (3 chunks); without fixed sums %zu "
             "floats differ\n", precisions[p], run_case(precisions[p], 2, two, 3, 0));
  }
  omp_set_num_threads(was);
  return synco_test_finish("fixed_sums");
}
