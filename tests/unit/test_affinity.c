/* Affinity scheduling (backend/cpu/cpu_affinity.h), the loop schedule of the cpu backend's own kernels:
 *  - the parts: contiguous, in order, whole chunks, together 0 .. n-1, sizes within a chunk of each other;
 *  - every item taken exactly once, for many item counts, chunks and thread counts (more threads than cores too);
 *  - a thread that starts only after the others are done finds nothing left: the others took its part (the
 *    straggler case), so no item waits for a slow thread. No timing: the late thread waits on a flag. */
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "backend/cpu/cpu_affinity.h"
#include "test_util.h"

static void parts(void) {
  const long ns[] = {0, 1, 7, 64, 1000, 2048, 2049};
  const long chunks[] = {1, 4, 16384};
  for (int a_ = 0; a_ < 7; a_++)
    for (int b_ = 0; b_ < 3; b_++)
      for (int threads = 1; threads <= 5; threads++) {
        const long n = ns[a_], chunk = chunks[b_];
        synco_affinity a;
        synco_affinity_init_parts(&a, n, chunk, threads);
        const long nchunks = (n + chunk - 1) / chunk;
        CHECK(a.parts >= 1 && a.parts <= threads && (n == 0 || a.parts <= nchunks));
        long at = 0, lo = n + 1, hi = -1;
        for (int p = 0; p < a.parts; p++) {
          const long first = atomic_load(&a.p[p].next), end = a.p[p].end;
          CHECK(first == at);          /* contiguous and in order */
          CHECK(first % chunk == 0);   /* whole chunks */
          CHECK(end >= first);
          const long size = (end - first + chunk - 1) / chunk;
          if (size < lo) lo = size;
          if (size > hi) hi = size;
          at = end;
        }
        CHECK(at == n);
        CHECK(n == 0 || hi - lo <= 1);
      }
}

static void each_item_once(void) {
  const long ns[] = {1, 5, 64, 999, 4096, 40000};
  const long chunks[] = {1, 3, 16, 16384};
  for (int a_ = 0; a_ < 6; a_++)
    for (int b_ = 0; b_ < 4; b_++)
      for (int threads = 1; threads <= 4; threads++) {
        const long n = ns[a_];
        atomic_int *seen = calloc((size_t)n, sizeof *seen);
        CHECK(seen != NULL);
        if (!seen) return;
        omp_set_num_threads(threads);
        synco_affinity a;
        synco_affinity_init(&a, n, chunks[b_]);
        CHECK(a.parts <= threads);
#pragma omp parallel num_threads(a.parts)
        SYNCO_AFFINITY_FOR(a, i) atomic_fetch_add(&seen[i], 1);
        int bad = 0;
        for (long i = 0; i < n; i++) bad += atomic_load(&seen[i]) != 1;
        CHECK(bad == 0);
        free(seen);
      }
}

static void late_thread(void) {
  enum { N = 1000 };
  static int taken_by[N];
  omp_set_num_threads(2);
  synco_affinity a;
  synco_affinity_init(&a, N, 4);
  atomic_int done = 0, team = 0;
#pragma omp parallel num_threads(a.parts)
  {
#pragma omp single
    atomic_store(&team, omp_get_num_threads());
    /* implicit barrier: team is set */
    const int me = omp_get_thread_num();
    if (me == 0 && atomic_load(&team) > 1)
      while (!atomic_load(&done)) {
      } /* thread 0 starts only when thread 1 has found every part empty */
    for (synco_affinity_cursor c = synco_affinity_start(&a); synco_affinity_next(&a, &c);)
      for (long i = c.i0; i < c.i1; i++) taken_by[i] = me;
    if (me == 1) atomic_store(&done, 1);
  }
  if (atomic_load(&team) < 2) {
    printf("late thread: the runtime gave a team of 1 thread, nothing to check\n");
    return;
  }
  int by1 = 0;
  for (int i = 0; i < N; i++) by1 += taken_by[i] == 1;
  CHECK(by1 == N); /* thread 1 took its part and all of thread 0's */
}

int main(void) {
  parts();
  each_item_once();
  late_thread();
  return synco_test_finish("affinity");
}
