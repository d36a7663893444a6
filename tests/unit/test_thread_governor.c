/* --adapt-threads (base/thread_governor.c, synco_moco_replan):
 *  - the governor's decisions from made-up windows: nothing alone; a probe of the cores other processes leave, kept
 *    when faster; back, and a longer wait before the next probe, when not; more threads when cores come free, or
 *    every 64 windows;
 *  - the CPU times it reads on this machine;
 *  - a MoCo step after synco_moco_replan at the same thread count equals one without (bit for bit: the same plans
 *    again), and after a replan for 1 thread stays within a step's tolerance of the 2-thread step (oneDNN's sums
 *    depend on the count), on the default backend (fp32, and bf16 where the CPU has it) and the strict one. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/status.h"
#include "base/thread_governor.h"
#include "ssl/moco.h"
#include "test_moco.h"
#include "test_util.h"

static synco_thread_governor fresh(int full) {
  synco_thread_governor g;
  synco_governor_init(&g, full);
  return g;
}

static void decisions(void) {
  /* alone: no probe, ever */
  synco_thread_governor g = fresh(2);
  for (int i = 0; i < 200; i++) CHECK(synco_governor_window(&g, 0.030, 2, 0.0, 0.05) == 2);
  CHECK(!g.noted);

  /* one competitor on 2 cores: probe 1 thread; faster, kept, with a note */
  g = fresh(2);
  CHECK(synco_governor_window(&g, 0.110, 2, 0.7, 0.0) == 1);
  CHECK(synco_governor_window(&g, 0.057, 2, 1.0, 0.0) == 1);
  CHECK(g.noted && strstr(g.note, "1 thread"));
  for (int i = 0; i < 10; i++) CHECK(synco_governor_window(&g, 0.057, 2, 1.0, 0.0) == 1); /* no core free */
  /* at 1 thread with the others on more than 1.5 of the 2 cores: no probe of "1 thread", so a window that happens to
   * be faster says nothing (it printed "1 thread from now on (... 674.2 ms on 1, 568.8 ms on 1)") */
  g.noted = 0;
  CHECK(synco_governor_window(&g, 0.057, 2, 1.6, 0.0) == 1);
  CHECK(!g.probing);
  CHECK(synco_governor_window(&g, 0.040, 2, 1.6, 0.0) == 1);
  CHECK(!g.noted);
  /* the competitor leaves: probe 2, faster, kept */
  g.noted = 0;
  CHECK(synco_governor_window(&g, 0.057, 2, 0.0, 1.0) == 2);
  CHECK(synco_governor_window(&g, 0.030, 2, 0.0, 0.0) == 2);
  CHECK(g.noted && strstr(g.note, "2 threads"));
  CHECK(synco_governor_window(&g, 0.030, 2, 0.0, 0.0) == 2);

  /* a probe that is not faster goes back and waits 1, 2, 4 ... 64 windows before the next (width 64 beside yes) */
  g = fresh(2);
  int probes = 0, windows = 0, last_probe = -1, gaps_ok = 1, gap_want = 0;
  for (; windows < 2000; windows++) {
    const int was = g.now;
    const int n = synco_governor_window(&g, was == 1 ? 1.00 : 0.99, 2, 0.7, 0.0); /* 1 thread never 3 % faster */
    if (was == 2 && n == 1) {
      if (last_probe >= 0 && windows - last_probe != gap_want + 2) gaps_ok = 0; /* the probe window + the wait */
      gap_want = probes < 6 ? 1 << probes : 64;
      last_probe = windows;
      probes++;
    }
  }
  CHECK(gaps_ok);
  CHECK(probes >= 20 && probes <= 40); /* 1 + 2 + ... + 64, then one in 66 */
  CHECK(g.now == 2 && !g.noted);

  /* many cores: the cores the others leave */
  g = fresh(16);
  CHECK(synco_governor_window(&g, 0.1, 16, 1.0, 0.0) == 15);
  g = fresh(2); /* 16 cores, 10 busy: 2 threads still have theirs */
  CHECK(synco_governor_window(&g, 0.1, 16, 10.0, 4.0) == 2);
  g = fresh(8);
  CHECK(synco_governor_window(&g, 0.1, 8, 7.6, 0.0) == 1); /* at least 1 */

  /* below full with no idle core: a probe up every 64 windows all the same */
  g = fresh(2);
  CHECK(synco_governor_window(&g, 0.110, 2, 0.7, 0.0) == 1);
  CHECK(synco_governor_window(&g, 0.057, 2, 1.0, 0.0) == 1);
  int up = -1;
  for (int i = 0; i < 100 && up < 0; i++)
    if (synco_governor_window(&g, 0.057, 2, 1.0, 0.0) == 2) up = i;
  CHECK(up >= 60 && up <= 64);
  CHECK(synco_governor_window(&g, 0.110, 2, 0.7, 0.0) == 1); /* slower: back */

  /* one thread: nothing to adapt, whatever the steps */
  g = fresh(1);
  for (int i = 0; i < 50; i++) CHECK(synco_governor_step(&g, 0.01) == 1);
}

static void cpu_times(void) {
  synco_cpu_times a, b;
  if (synco_cpu_times_read(&a) != 0) {
    printf("cpu times: /proc/stat unreadable here; the governor never probes (not checked)\n");
    return;
  }
  volatile double x = 0;
  for (long i = 0; i < 30000000; i++) x += 1e-9 * (double)i;
  CHECK(synco_cpu_times_read(&b) == 0);
  CHECK(a.cores >= 1 && b.cores == a.cores);
  CHECK(b.wall > a.wall && b.ours > a.ours && b.idle >= a.idle);
}

enum { B = 8, S = 16, STEPS = 2 };

static void images(float *xq, float *xk, int step) {
  const size_t n = (size_t)B * 3 * S * S;
  synco_test_fill(xq, n, 300 + step, -2.f, 2.f);
  synco_test_fill(xk, n, 400 + step, -2.f, 2.f);
}

static void params(synco_backend *be, synco_moco *m, float *out) {
  synco_encoder *q = synco_moco_query(m);
  CHECK_OK(be->copy(be, out, synco_encoder_params(q), synco_encoder_num_params(q) * sizeof(float), SYNCO_COPY_D2H));
}

/* Three models from one seed: a at 2 threads; same replanned at 2 threads after its first step; one replanned for
 * 1 thread after its first step (each steps with its own thread count set). */
static void replan_case(const char *backend, const char *precision) {
  synco_backend *be = NULL;
  if (synco_backend_create(backend, &be) != SYNCO_OK) {
    printf("replan on %s: not built in (%s)\n", backend, synco_last_error());
    return;
  }
  if (synco_backend_set_precision(be, precision) != SYNCO_OK) {
    printf("replan on %s in %s: not checked here (%s)\n", backend, precision, synco_last_error());
    synco_backend_destroy(be);
    return;
  }
  const synco_moco_config cfg = synco_test_moco_config(S, B, 32, 2, 0, 1, 16, 7);
  synco_moco *a = NULL, *same = NULL, *one = NULL;
  CHECK_OK(synco_moco_create(&a, be, &cfg));
  CHECK_OK(synco_moco_create(&same, be, &cfg));
  CHECK_OK(synco_moco_create(&one, be, &cfg));
  const size_t n = (size_t)B * 3 * S * S, P = a ? synco_encoder_num_params(synco_moco_query(a)) : 0;
  float *xq = malloc(n * sizeof *xq), *xk = malloc(n * sizeof *xk);
  float *pa = malloc(P * sizeof *pa), *ps = malloc(P * sizeof *ps), *p1 = malloc(P * sizeof *p1);
  if (!a || !same || !one || !xq || !xk || !pa || !ps || !p1) {
    CHECK(0);
    goto done;
  }
  for (int step = 0; step < STEPS; step++) {
    images(xq, xk, step);
    omp_set_num_threads(2);
    CHECK_OK(synco_moco_step(a, xq, xk, 0.06f, 1, (uint64_t)step, NULL));
    if (step == 1) CHECK_OK(synco_moco_replan(same));
    CHECK_OK(synco_moco_step(same, xq, xk, 0.06f, 1, (uint64_t)step, NULL));
    if (step == 1) {
      omp_set_num_threads(1);
      CHECK_OK(synco_moco_replan(one));
    }
    CHECK_OK(synco_moco_step(one, xq, xk, 0.06f, 1, (uint64_t)step, NULL));
  }
  omp_set_num_threads(2);
  params(be, a, pa);
  params(be, same, ps);
  params(be, one, p1);
  char what[96];
  snprintf(what, sizeof what, "%s %s: replanned at 2 threads vs not replanned (bit for bit)", backend, precision);
  CHECK_CLOSE(what, ps, pa, P, 0, 0);
  snprintf(what, sizeof what, "%s %s: second step on 1 thread vs 2", backend, precision);
  synco_test_close_l2(what, p1, pa, P, 1e-5, 1e-3, 2e-3, 1);
  synco_step_stats st;
  CHECK_OK(synco_moco_read_stats(one, &st));
done:
  free(xq);
  free(xk);
  free(pa);
  free(ps);
  free(p1);
  synco_moco_free(a);
  synco_moco_free(same);
  synco_moco_free(one);
  synco_backend_destroy(be);
}

int main(void) {
  synco_test_default_kernels(); /* bit-identical runs need the same kernels in each plan: the rule's */
  decisions();
  cpu_times();
  replan_case("auto", "fp32");
  replan_case("auto", "bf16"); /* where the CPU has native bf16 */
  replan_case("strict", "fp32");
  return synco_test_finish("test_thread_governor");
}
