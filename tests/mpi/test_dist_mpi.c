/* Data-parallel MoCo-v2 and SynCo steps over MPI, run by `mpirun -np 2`: two processes with batch B each
 * against one process with batch 2B, on the same images in the same order. The one process uses --bn-splits 2,
 * so its BN groups are the two processes' batches, and the same permutation of the global batch for the key
 * shuffle (shuffle-BN across processes against shuffle-BN within one). After each of several steps (the queue
 * wraps; synthetic negatives on; the symmetric loss once):
 *  - the loss and accuracies logged (means over processes) equal the one process's;
 *  - the queue (the keys) and its pointer, the query parameters, the SGD momentum, the key encoder's EMA
 *    weights and both encoders' BN running statistics agree within atol + rtol·|ref| (fp32 rounding: the
 *    gradient is summed in another order);
 *  - both processes hold bit-identical state;
 *  - a third state that takes its key images already shuffled (synco_moco_step_shuffled: MoCo's shuffle-BN by
 *    indices, as `--key-shuffle indices` loads them) holds the gathering state's bits, and so does one whose
 *    gradient all-reduce runs in buckets started during the backward (synco_dist_buckets_*).
 * The hard set is the whole queue (n_hard = K): with a smaller one, a query whose n_hard-th and next logits
 * differ by less than rounding may pick another hard negative on one side (measured: from step 1 on, 6 of
 * 181k parameters then differ by 0.5 %, and the difference grows), which is selection, not distribution. The
 * selection itself is tested against PyTorch in tests/parity/test_negatives_parity.c.
 * Skipped unless started by an MPI launcher with 2 ranks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "dist/dist.h"
#include "ssl/moco.h"
#include "tensor/backend.h"
#include "test_moco.h"
#include "test_util.h"

enum { B = 8, S = 32, K = 64, STEPS = 4 };

static synco_dist *dist;
static const char *case_name;

/* One tensor against the one process's (test_util.h: synco_test_close_l2). The tiny network (BN over 8 images,
 * lr 0.03) amplifies rounding from step to step, most in the momentum, a sum of gradients whose elements cancel;
 * where a ReLU input near zero flips, single momentum elements move (seen in the sanitizer build: one element of
 * 181k at step 3, relative L2 2.7e-3; 2e-6 in the release build). */
static void close_to(const char *what, int step, const float *got, const float *ref, size_t n, double atol,
                     double rtol, double rel_l2) {
  char name[160];
  snprintf(name, sizeof name, "rank %d, %s, step %d: %s", dist->rank, case_name, step, what);
  synco_test_close_l2(name, got, ref, n, atol, rtol, rel_l2, 1);
}

/* Every rank's n floats equal rank 0's, bit for bit. */
static void same_on_all_ranks(const char *what, int step, const float *x, size_t n) {
  float *all = malloc((size_t)dist->world * n * sizeof *all);
  CHECK_OK(synco_dist_allgather_rows(dist, all, x, n));
  for (int r = 1; r < dist->world; r++)
    if (memcmp(all, all + (size_t)r * n, n * sizeof *all)) {
      fprintf(stderr, "%s, step %d: %s of rank %d differs from rank 0's\n", case_name, step, what, r);
      synco_test_failures++;
    }
  free(all);
}

static void run_case(synco_backend *be, int symmetric, int negatives) {
  case_name = negatives ? symmetric ? "SynCo symmetric" : "SynCo" : "MoCo-v2";
  const int world = dist->world, rank = dist->rank, G = B * world;
  const int Kc = K * (symmetric ? 2 : 1);
  const synco_moco_config cfg = synco_test_moco_config(S, B, Kc, 1, symmetric, negatives, Kc, 11);
  synco_moco_config one = cfg, many = cfg;
  one.batch = G;
  one.enc.bn_splits = world;
  many.batch = B;
  many.dist = dist;
  synco_moco_config pre = many, buckets = many;
  pre.keys_preshuffled = 1;
  buckets.grad_bucket = 4099; /* ~44 buckets of the ~181k gradients, the last one short */
  synco_moco *ref = NULL, *m = NULL, *mp = NULL, *mb = NULL;
  CHECK_OK(synco_moco_create(&ref, be, &one));
  CHECK_OK(synco_moco_create(&m, be, &many));
  CHECK_OK(synco_moco_create(&mp, be, &pre));
  CHECK_OK(synco_moco_create(&mb, be, &buckets));
  const size_t img = (size_t)3 * S * S;
  float *xq = malloc((size_t)G * img * sizeof *xq), *xk = malloc((size_t)G * img * sizeof *xk);
  float *shuf = malloc(2 * (size_t)B * img * sizeof *shuf);
  uint32_t *perm = malloc((size_t)G * sizeof *perm);
  if (!ref || !m || !mp || !mb || !xq || !xk || !shuf || !perm) goto done;
  synco_encoder *qr = synco_moco_query(ref), *qm = synco_moco_query(m), *kr = synco_moco_key(ref),
                *km = synco_moco_key(m);
  const size_t P = synco_encoder_num_params(qr), NB = synco_encoder_num_buffers(qr), Q = (size_t)cfg.K * cfg.enc.dim;
  for (int step = 0; step < STEPS; step++) { /* 4 x 16 keys through a queue of 64 (32 per direction): it wraps */
    synco_test_fill(xq, (size_t)G * img, 100 + step, -2.f, 2.f);
    synco_test_fill(xk, (size_t)G * img, 200 + step, -2.f, 2.f);
    synco_step_stats sr, sm;
    CHECK_OK(synco_moco_step(ref, xq, xk, 0.03f, negatives, (uint64_t)step, &sr));
    CHECK_OK(synco_moco_step(m, xq + (size_t)rank * B * img, xk + (size_t)rank * B * img, 0.03f, negatives,
                             (uint64_t)step, &sm));
    /* the key images shuffled as a loader does (--key-shuffle indices): this rank's rows of each direction's key
     * order, taken from the global batch here; no image crosses, and the state is the gathering one's bit for bit */
    for (int p = 0; p < (symmetric ? 2 : 1); p++) {
      synco_moco_key_order(cfg.seed, (uint64_t)step, p, G, perm);
      for (int k = 0; k < B; k++)
        memcpy(shuf + ((size_t)p * B + k) * img, (p ? xq : xk) + perm[rank * B + k] * img, img * sizeof *shuf);
    }
    const float *const xs[2] = {shuf, shuf + (size_t)B * img};
    synco_step_stats sp;
    CHECK(synco_moco_step(mp, xq, xk, 0.03f, negatives, (uint64_t)step, NULL) == SYNCO_ERR_ARG); /* takes them shuffled */
    CHECK_OK(synco_moco_step_shuffled(mp, xq + (size_t)rank * B * img, symmetric ? xk + (size_t)rank * B * img : NULL,
                                      xs, 0.03f, negatives, (uint64_t)step, &sp));
    /* the gradient all-reduce in buckets started during the backward: the same means, so the same bits */
    CHECK_OK(synco_moco_step(mb, xq + (size_t)rank * B * img, xk + (size_t)rank * B * img, 0.03f, negatives,
                             (uint64_t)step, NULL));
    CHECK(sp.loss == sm.loss && sp.acc == sm.acc);
    synco_moco *same[2] = {mp, mb};
    for (int i = 0; i < 2; i++) {
      CHECK(!memcmp(synco_encoder_params(synco_moco_query(same[i])), synco_encoder_params(qm), P * sizeof(float)));
      CHECK(!memcmp(synco_moco_momentum(same[i]), synco_moco_momentum(m), P * sizeof(float)));
      CHECK(!memcmp(synco_encoder_buffers(synco_moco_key(same[i])), synco_encoder_buffers(km), NB * sizeof(float)));
      CHECK(!memcmp(synco_moco_queue(same[i]), synco_moco_queue(m), Q * sizeof(float)));
    }
    const float lr_ = (float)sr.loss, lm = (float)sm.loss;
    close_to("loss (mean over processes)", step, &lm, &lr_, 1, 1e-4, 1e-4, 1e-4);
    CHECK(fabs(sr.acc - sm.acc) <= 1e-6 || fabs(sr.acc - sm.acc) <= 1.0 / G); /* a near-tie may flip a query */
    close_to("queue (every process's keys)", step, synco_moco_queue(m), synco_moco_queue(ref), Q, 1e-4, 1e-3, 1e-3);
    CHECK(synco_moco_queue_ptr(m) == synco_moco_queue_ptr(ref));
    close_to("query parameters", step, synco_encoder_params(qm), synco_encoder_params(qr), P, 1e-5, 1e-3, 1e-3);
    close_to("SGD momentum", step, synco_moco_momentum(m), synco_moco_momentum(ref), P, 1e-4, 0.1, 1e-2);
    close_to("key parameters (EMA)", step, synco_encoder_params(km), synco_encoder_params(kr), P, 1e-5, 1e-3, 1e-3);
    close_to("query BN buffers", step, synco_encoder_buffers(qm), synco_encoder_buffers(qr), NB, 1e-4, 1e-3, 1e-3);
    close_to("key BN buffers", step, synco_encoder_buffers(km), synco_encoder_buffers(kr), NB, 1e-4, 1e-3, 1e-3);
    same_on_all_ranks("query parameters", step, synco_encoder_params(qm), P);
    same_on_all_ranks("SGD momentum", step, synco_moco_momentum(m), P);
    same_on_all_ranks("key parameters", step, synco_encoder_params(km), P);
    same_on_all_ranks("query BN buffers", step, synco_encoder_buffers(qm), NB);
    same_on_all_ranks("key BN buffers", step, synco_encoder_buffers(km), NB);
    same_on_all_ranks("queue", step, synco_moco_queue(m), Q);
  }
done:
  free(xq);
  free(xk);
  free(shuf);
  free(perm);
  synco_moco_free(ref);
  synco_moco_free(m);
  synco_moco_free(mp);
  synco_moco_free(mb);
}

int main(void) {
#ifndef SYNCO_HAVE_MPI
  SKIP("this build has no MPI");
#else
  if (!synco_dist_mpi_launched()) SKIP("not started by mpirun");
  /* The cpu backend measures which 3x3 kernel (direct or Winograd) each shape takes: batch B on the ranks and 2B in
   * one process may choose differently, and Winograd's rounding (not the distribution) then exceeds the tolerance.
   * One kernel for all (the user's SYNCO_CONV_ALGO if set). */
  setenv("SYNCO_CONV_ALGO", "direct", 0);
  CHECK_OK(synco_dist_mpi_create(&dist));
  if (!dist) return synco_test_finish("dist_mpi");
  if (dist->world != 2) {
    synco_dist_free(dist);
    SKIP("needs 2 ranks");
  }
  { /* the ranks' host agreement: the element-wise maximum, the same on both ranks */
    int v[3] = {dist->rank ? 7 : -3, dist->rank ? -1 : 5, -2};
    CHECK_OK(synco_dist_max_ints(dist, v, 3));
    CHECK(v[0] == 7 && v[1] == 5 && v[2] == -2);
  }
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_create("auto", &be));
  if (be) {
    run_case(be, 0, 0); /* MoCo-v2 */
    run_case(be, 0, 1); /* SynCo */
    run_case(be, 1, 1); /* SynCo, symmetric loss */
  }
  synco_backend_destroy(be);
  const int rank = dist->rank;
  synco_dist_free(dist);
  return synco_test_finish(rank ? "dist_mpi (rank 1)" : "dist_mpi");
#endif
}
