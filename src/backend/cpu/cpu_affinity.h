/* Affinity scheduling of the cpu backend's own parallel loops (Markatos and LeBlanc, "Using processor affinity in
 * loop scheduling on shared-memory multiprocessors", 1994): the items 0 .. n-1 are cut into one contiguous part per
 * thread; each thread takes chunks from the front of its own part, and when that is empty, from the front of the
 * others' parts in turn, until every part is empty.
 *
 * Why not OpenMP's schedule(dynamic): dynamic hands the chunks out in turn, so two threads interleave through the
 * whole batch and each consecutive layer's thread reads images that the other thread wrote, out of the other core's
 * cache. oneDNN's kernels split a batch into one contiguous share of images per thread (balance211). With a part per
 * thread in image order, a thread takes the same images in every layer, oneDNN's or synco's, and finds them in its
 * own L2. Measured (Intel Xeon, AVX-512, 2 threads, `bench step --cifar-stem -b 64 --moco-k 256`, 2026-12-06): the
 * 8-channel direct8 forward took 0.52 ms in a width-8 step under dynamic, 0.28-0.30 ms under static; whole steps,
 * 3 rounds alternated with the dynamic build: width 8 1,827-1,890 -> 2,082-2,241 images/s, width 16 645-766 ->
 * 695-816. Why not schedule(static): static waits for the slowest thread, and a thread that shares its core with
 * another process is slow (issue 20's straggler case); stealing gives its last chunks to the others, as dynamic did.
 *
 * Which thread runs an item never changes a result: each item writes its own outputs, as under dynamic.
 *
 * Use, in place of `#pragma omp parallel for schedule(dynamic, chunk)` over 0 .. n-1:
 *
 *   synco_affinity a;
 *   synco_affinity_init(&a, n, chunk);
 *   #pragma omp parallel num_threads(a.parts)
 *   SYNCO_AFFINITY_FOR(a, t) body(t);
 *
 * A loop inside a larger parallel region that continues with work needing all items done ends with
 * `#pragma omp barrier` (the stealing loop has none of its own). */
#ifndef SYNCO_BACKEND_CPU_AFFINITY_H
#define SYNCO_BACKEND_CPU_AFFINITY_H

#include <omp.h>
#include <stdatomic.h>

#define SYNCO_AFFINITY_MAX_PARTS 64

typedef struct {
  _Alignas(64) atomic_long next; /* the part's first item not yet taken (past end once it is empty) */
  long end;
} synco_affinity_part;

typedef struct {
  int parts;  /* the threads the loop runs on: one part each */
  long chunk; /* items taken at a time */
  synco_affinity_part p[SYNCO_AFFINITY_MAX_PARTS];
} synco_affinity;

typedef struct {
  int part, left; /* the part being taken from; parts not yet found empty */
  long i0, i1;    /* the chunk taken: items i0 .. i1-1 */
} synco_affinity_cursor;

/* n items in chunks of `chunk`, one part per thread, at most `threads` parts (and one per chunk), the parts whole
 * chunks, as equal as they can be. */
static inline void synco_affinity_init_parts(synco_affinity *a, long n, long chunk, int threads) {
  if (chunk < 1) chunk = 1;
  const long chunks = n > 0 ? (n + chunk - 1) / chunk : 0;
  long parts = threads;
  if (parts > SYNCO_AFFINITY_MAX_PARTS) parts = SYNCO_AFFINITY_MAX_PARTS;
  if (parts > chunks) parts = chunks;
  if (parts < 1) parts = 1;
  a->parts = (int)parts;
  a->chunk = chunk;
  for (long p = 0; p < parts; p++) {
    const long c0 = chunks * p / parts, c1 = chunks * (p + 1) / parts;
    atomic_init(&a->p[p].next, c0 * chunk);
    a->p[p].end = c1 * chunk < n ? c1 * chunk : n;
  }
}

/* The same with a part for each of omp_get_max_threads() threads. */
static inline void synco_affinity_init(synco_affinity *a, long n, long chunk) {
  synco_affinity_init_parts(a, n, chunk, omp_get_max_threads());
}

/* The calling thread's cursor: its own part first. */
static inline synco_affinity_cursor synco_affinity_start(const synco_affinity *a) {
  return (synco_affinity_cursor){.part = omp_get_thread_num() % a->parts, .left = a->parts};
}

/* Takes the next chunk into c->i0, c->i1: 1, or 0 once every part is empty. */
static inline int synco_affinity_next(synco_affinity *a, synco_affinity_cursor *c) {
  while (c->left > 0) {
    synco_affinity_part *p = &a->p[c->part];
    const long i = atomic_fetch_add_explicit(&p->next, a->chunk, memory_order_relaxed);
    if (i < p->end) {
      c->i0 = i;
      c->i1 = i + a->chunk < p->end ? i + a->chunk : p->end;
      return 1;
    }
    c->part = (c->part + 1) % a->parts;
    c->left--;
  }
  return 0;
}

/* Inside the parallel region: the items t this thread takes, chunk by chunk (a `for` statement: a body follows). */
#define SYNCO_AFFINITY_FOR(a, t)                                                                       \
  for (synco_affinity_cursor t##_chunk = synco_affinity_start(&(a)); synco_affinity_next(&(a), &t##_chunk);) \
    for (long t = t##_chunk.i0; t < t##_chunk.i1; t++)

#endif
