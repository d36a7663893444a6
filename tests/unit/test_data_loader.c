/* The loader: identical bytes for 1, 2 and 3 threads; each epoch a permutation (all samples once, without
 * drop_last); drop_last step counts; shards of two ranks partition the epoch; a resumed epoch
 * (start_epoch(e, k)) repeats the batches of an uninterrupted one; labels follow the dataset; each epoch's statistics
 * count its images, and the threads a consumer needs follow from the rates; the key images of MoCo's shuffle-BN by
 * indices are the owning ranks' views in the key order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "data/internal.h"
#include "test_util.h"

#define N 203
#define B 16
#define S 24

static float *run(const synco_dataset *ds, int threads, int epochs, int drop_last, int rank, int world,
                  uint32_t *idx_out, int *steps_out) {
  synco_loader_config cfg = {0};
  cfg.batch = B;
  cfg.views = 2;
  cfg.threads = threads;
  cfg.prefetch = 2;
  cfg.shuffle = 1;
  cfg.drop_last = drop_last;
  cfg.seed = 5;
  cfg.rank = rank;
  cfg.world = world;
  cfg.aug = (synco_aug_config){SYNCO_AUG_MOCO_V2, S, 1, {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
  synco_loader *ld;
  CHECK_OK(synco_loader_create(&ld, ds, &cfg));
  if (!ld) return NULL;
  const size_t per = 3 * S * S;
  float *all = (float *)calloc((size_t)epochs * N * 2 * per, sizeof(float));
  size_t k = 0;
  int steps = 0;
  for (int e = 0; e < epochs; e++) {
    CHECK_OK(synco_loader_start_epoch(ld, e, 0));
    synco_batch b;
    long images = 0;
    for (;;) {
      CHECK_OK(synco_loader_next(ld, &b));
      if (b.n == 0) break;
      CHECK(b.step == steps % synco_loader_steps_per_epoch(ld));
      steps++;
      images += b.n;
      for (int i = 0; i < b.n; i++, k++) {
        CHECK(b.labels[i] == synco_dataset_label(ds, b.indices[i]));
        memcpy(all + k * 2 * per, b.x[0] + i * per, per * sizeof(float));
        memcpy(all + k * 2 * per + per, b.x[1] + i * per, per * sizeof(float));
        if (idx_out) idx_out[k] = b.indices[i];
      }
    }
    /* the epoch's statistics: every image it handed out filled once, in time spent, by the threads asked for */
    synco_loader_stats st;
    synco_loader_stats_get(ld, &st);
    CHECK(st.images == images && st.threads == threads);
    CHECK(st.fill_s > 0 && st.wait_s >= 0 && synco_loader_rate_per_thread(&st) > 0);
  }
  if (steps_out) *steps_out = steps;
  synco_loader_free(ld);
  return all;
}

/* A key order for the key-shuffle test: a shuffle keyed by (epoch, step, pass), as MoCo's is by its step. */
static void test_key_order(void *ctx, int epoch, int step, int pass, uint32_t *perm) {
  const int G = *(const int *)ctx;
  synco_rng r = synco_rng_make(77, (uint64_t)epoch * 1000 + (uint64_t)step, (uint64_t)pass, SYNCO_RNG_TEST);
  for (int i = 0; i < G; i++) perm[i] = (uint32_t)i;
  synco_rng_shuffle(&r, perm, (uint32_t)G);
}

/* Epoch 1 of rank `rank` of 2 (drop_last) with key_passes passes: every batch's views into views[step][v][B, per]
 * and its key images into keys[step][p][B, per] (each [steps][2][B·per]). Returns the steps. */
static int key_run(const synco_dataset *ds, int rank, int views, int key_passes, int threads, float *vout,
                   float *kout) {
  static int G = 2 * B;
  synco_loader_config cfg = {.batch = B, .views = views, .threads = threads, .prefetch = 2, .shuffle = 1,
                             .drop_last = 1, .seed = 5, .rank = rank, .world = 2, .key_passes = key_passes,
                             .key_order = test_key_order, .key_ctx = &G};
  cfg.aug = (synco_aug_config){SYNCO_AUG_MOCO_V2, S, 1, {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
  synco_loader *ld;
  CHECK_OK(synco_loader_create(&ld, ds, &cfg));
  if (!ld) return 0;
  const size_t per = 3 * S * S, blk = (size_t)B * per;
  int steps = 0;
  CHECK_OK(synco_loader_start_epoch(ld, 1, 0));
  for (synco_batch b; synco_loader_next(ld, &b) == SYNCO_OK && b.n > 0; steps++) {
    CHECK(b.n == B && (views == 2) == (b.x[1] != NULL) && (key_passes == 2) == (b.xk[1] != NULL) && b.xk[0]);
    for (int v = 0; v < views; v++) memcpy(vout + ((size_t)steps * 2 + v) * blk, b.x[v], blk * sizeof(float));
    for (int p = 0; p < key_passes; p++) memcpy(kout + ((size_t)steps * 2 + p) * blk, b.xk[p], blk * sizeof(float));
  }
  synco_loader_free(ld);
  return steps;
}

/* MoCo's shuffle-BN by indices (key_passes): each rank's key images of pass p are its rows of the global batch of
 * view 1 (p = 0) or view 0 (p = 1) in the key order, bit for bit the images the owning rank made for its views; the
 * same with one view and one pass (the asymmetric loss), and with another thread count. */
static void key_shuffle(const synco_dataset *ds) {
  const size_t per = 3 * S * S, blk = (size_t)B * per, cap = (size_t)(N / (2 * B)) * 2 * blk;
  float *v0 = calloc(cap, sizeof(float)), *v1 = calloc(cap, sizeof(float)), *k0 = calloc(cap, sizeof(float)),
        *k1 = calloc(cap, sizeof(float)), *a = calloc(cap, sizeof(float)), *ka = calloc(cap, sizeof(float));
  const int steps = key_run(ds, 0, 2, 2, 2, v0, k0);
  CHECK(steps == N / (2 * B) && key_run(ds, 1, 2, 2, 1, v1, k1) == steps);
  const int G = 2 * B;
  uint32_t perm[2 * B];
  int bad = 0;
  for (int j = 0; j < steps && !bad; j++)
    for (int p = 0; p < 2; p++) {
      test_key_order((void *)&G, 1, j, p, perm);
      for (int r = 0; r < 2; r++)
        for (int k = 0; k < B; k++) {
          const int g = (int)perm[r * B + k], v = p == 0 ? 1 : 0;
          const float *want = (g / B ? v1 : v0) + ((size_t)j * 2 + v) * blk + (size_t)(g % B) * per;
          const float *got = (r ? k1 : k0) + ((size_t)j * 2 + p) * blk + (size_t)k * per;
          bad += memcmp(got, want, per * sizeof(float)) != 0;
        }
    }
  CHECK(bad == 0);
  /* one view and one pass (the asymmetric loss): the same view 0 and pass-0 keys */
  CHECK(key_run(ds, 1, 1, 1, 3, a, ka) == steps);
  for (int j = 0; j < steps; j++) {
    CHECK(!memcmp(a + (size_t)j * 2 * blk, v1 + (size_t)j * 2 * blk, blk * sizeof(float)));
    CHECK(!memcmp(ka + (size_t)j * 2 * blk, k1 + (size_t)j * 2 * blk, blk * sizeof(float)));
  }
  /* refused: a key shuffle without drop_last, or without an order */
  synco_loader_config cfg = {.batch = B, .views = 1, .threads = 1, .prefetch = 2, .world = 1, .key_passes = 1,
                             .key_order = test_key_order, .key_ctx = (void *)&G};
  cfg.aug = (synco_aug_config){SYNCO_AUG_MOCO_V2, S, 1, {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
  synco_loader *ld = NULL;
  CHECK(synco_loader_create(&ld, ds, &cfg) == SYNCO_ERR_ARG && !ld);
  cfg.drop_last = 1;
  cfg.key_order = NULL;
  CHECK(synco_loader_create(&ld, ds, &cfg) == SYNCO_ERR_ARG && !ld);
  free(v0), free(v1), free(k0), free(k1), free(a), free(ka);
}

/* The threads that keep up with a consumer: the demand over one thread's rate, rounded up; 0 when either is unknown. */
static void threads_needed(void) {
  CHECK(synco_loader_threads_needed(33000, 16900) == 2);
  CHECK(synco_loader_threads_needed(33800, 16900) == 2);
  CHECK(synco_loader_threads_needed(33801, 16900) == 3);
  CHECK(synco_loader_threads_needed(700, 16900) == 1);
  CHECK(synco_loader_threads_needed(0, 16900) == 0 && synco_loader_threads_needed(700, 0) == 0);
  synco_loader_stats none = {0};
  CHECK(synco_loader_rate_per_thread(&none) == 0);
}

int main(void) {
  threads_needed();
  /* a CIFAR-10 file of N random images */
  char dir[128], path[200];
  snprintf(dir, sizeof dir, "/tmp/synco_test_loader_%d", (int)getpid());
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/data_batch_1.bin", dir);
  uint8_t *buf = (uint8_t *)malloc((size_t)N * 3073);
  synco_rng r = synco_rng_make(1, 0, 0, SYNCO_RNG_TEST);
  for (size_t i = 0; i < (size_t)N * 3073; i++) buf[i] = (uint8_t)synco_rng_u32(&r);
  for (int i = 0; i < N; i++) buf[(size_t)i * 3073] = (uint8_t)(i % 10);
  FILE *f = fopen(path, "wb");
  fwrite(buf, 1, (size_t)N * 3073, f);
  fclose(f);
  free(buf);
  synco_dataset *ds;
  synco_dataset_options opt = {0};
  CHECK_OK(synco_dataset_open(&ds, dir, &opt));
  if (!ds) return synco_test_finish("test_data_loader");
  key_shuffle(ds);

  const size_t per = 3 * S * S, bytes = 2 * (size_t)N * 2 * per * sizeof(float);
  uint32_t idx[2 * N];
  int steps;
  float *a = run(ds, 1, 2, 0, 0, 1, idx, &steps);
  float *b2 = run(ds, 2, 2, 0, 0, 1, NULL, NULL);
  float *b3 = run(ds, 3, 2, 0, 0, 1, NULL, NULL);
  CHECK(steps == 2 * ((N + B - 1) / B));
  CHECK(a && b2 && b3 && !memcmp(a, b2, bytes) && !memcmp(a, b3, bytes));
  /* each epoch is a permutation, and the two epochs differ */
  for (int e = 0; e < 2; e++) {
    int seen[N] = {0}, ok = 1;
    for (int i = 0; i < N; i++) seen[idx[e * N + i]]++;
    for (int i = 0; i < N; i++) ok &= seen[i] == 1;
    CHECK(ok);
  }
  CHECK(memcmp(idx, idx + N, sizeof(uint32_t) * N) != 0);
  /* the two views differ */
  CHECK(memcmp(a, a + per, per * sizeof(float)) != 0);
  /* drop_last */
  free(run(ds, 2, 1, 1, 0, 1, NULL, &steps));
  CHECK(steps == N / B);
  /* two ranks: disjoint shards of N/2 samples each; rank r takes block r of each global batch of 2B (its
   * sample j is the epoch's element 2B·(j / B) + r·B + j % B), the tail after the last one round-robin */
  uint32_t i0[N], i1[N];
  int s0, s1;
  float *r0 = run(ds, 2, 1, 0, 0, 2, i0, &s0);
  free(run(ds, 2, 1, 0, 1, 2, i1, &s1));
  CHECK(s0 == s1 && s0 == (N / 2 + B - 1) / B);
  int seen[N] = {0}, ok = 1;
  for (int i = 0; i < N / 2; i++) seen[i0[i]]++, seen[i1[i]]++;
  for (int i = 0; i < N; i++) ok &= seen[i] <= 1;
  CHECK(ok);
  const int whole = N / (2 * B);
  for (int j = 0; j < N / 2; j++) {
    const int g0 = j / B < whole ? 2 * B * (j / B) + j % B : 2 * B * whole + 2 * (j - B * whole);
    const int g1 = j / B < whole ? g0 + B : g0 + 1;
    CHECK(i0[j] == idx[g0] && i1[j] == idx[g1]);
    if (i0[j] != idx[g0] || i1[j] != idx[g1]) break;
  }
  /* augmentations follow the dataset index: rank 0's sample 1 is the epoch's sample 1 */
  CHECK(r0 && !memcmp(r0 + 2 * per, a + 2 * per, 2 * per * sizeof(float)));
  free(r0);
  /* resume epoch 1 at step 5 */
  synco_loader_config cfg = {0};
  cfg.batch = B;
  cfg.views = 2;
  cfg.threads = 2;
  cfg.prefetch = 3;
  cfg.shuffle = 1;
  cfg.seed = 5;
  cfg.world = 1;
  cfg.aug = (synco_aug_config){SYNCO_AUG_MOCO_V2, S, 1, {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
  synco_loader *ld;
  CHECK_OK(synco_loader_create(&ld, ds, &cfg));
  if (ld) {
    synco_batch b;
    CHECK_OK(synco_loader_start_epoch(ld, 0, 0)); /* abandoned mid-epoch */
    CHECK_OK(synco_loader_next(ld, &b));
    CHECK_OK(synco_loader_start_epoch(ld, 1, 5));
    CHECK_OK(synco_loader_next(ld, &b));
    CHECK(b.step == 5 && b.n == B);
    const size_t k = (size_t)N + 5 * B;
    CHECK(!memcmp(b.x[0], a + k * 2 * per, per * sizeof(float)));
    CHECK(!memcmp(b.x[1], a + k * 2 * per + per, per * sizeof(float)));
    CHECK(b.indices[0] == idx[k]);
    synco_loader_free(ld);
  }
  free(a);
  free(b2);
  free(b3);
  synco_dataset_free(ds);
  remove(path);
  rmdir(dir);
  return synco_test_finish("test_data_loader");
}
