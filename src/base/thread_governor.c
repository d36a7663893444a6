/* --adapt-threads (on by default in pretrain and bench step): the compute threads follow the cores other processes
 * leave free.
 *
 * A step is hundreds of short parallel regions (oneDNN's kernels split their work statically, one share per thread),
 * and each waits for its slowest thread. When another process takes a core, the thread that shares it runs at a
 * fraction of its speed and every region waits for it: measured on 2 cores (Zen 4, `bench step --cifar-stem
 * --width 8 -b 64 --moco-k 4096`), 2 threads run at about 2,000 images/s alone and 540-670 beside one
 * `yes >/dev/null`, while 1 thread runs at about 1,110-1,140 alone and beside `yes` alike (it gets a core to itself).
 * PyTorch loses about 47 % there; 2 threads lose 70 %. The governor measures and switches:
 *  - Windows of steps (at least 5, and half a second, as /proc/stat counts in 10 ms ticks): the median step, and
 *    from /proc/stat and getrusage the cores other processes kept busy and the cores left idle.
 *  - A probe: when the others take at least half of the cores the threads need, the threads the others leave (at
 *    least 1); below the full count, when half a core is idle, or every 64 windows, more. The probe's window is
 *    kept when its median step is at least 3 % faster than the window before; otherwise the count goes back and the
 *    next probe waits 1, 2, 4 ... 64 windows (at width 64, 2 threads beside `yes` beat 1, and the probes then cost
 *    little).
 *  - A switch (the caller's: synco_cli_adapt_threads) sets omp_set_num_threads and plans both encoders again: oneDNN makes a primitive for the threads there
 *    are when it is made, and runs that many whatever the count at run time (measured: 2-thread plans run with
 *    omp_set_num_threads(1) did not get 1 thread's speed beside `yes`). Planning takes milliseconds, and the first
 *    step on new plans is not measured.
 * Alone the governor reads /proc/stat twice a second and does nothing else. SYNCO_GOVERNOR_TRACE=1 prints each
 * window's figures and decision on stderr. A switch changes no result: oneDNN splits a weight gradient's batch sum
 * by the thread count it plans for, so the run's backend fixes its sums for the full count
 * (synco_backend_fixed_sums: fixed batch chunks, cpu_conv.c), and a run whose threads changed is bit-identical to one
 * whose did not (tests/unit/test_fixed_sums.c). */
#include "base/thread_governor.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/progress.h"

int synco_cores_available(void) {
  cpu_set_t set;
  int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? n : 1;
}

int synco_cpu_times_read(synco_cpu_times *t) {
  memset(t, 0, sizeof *t);
  cpu_set_t set;
  const int have_set = sched_getaffinity(0, sizeof set, &set) == 0;
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return -1;
  const double tick = 1.0 / (double)sysconf(_SC_CLK_TCK);
  char line[512];
  while (fgets(line, sizeof line, f)) {
    int cpu;
    unsigned long long user, nice, sys, idle, iowait;
    if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9') continue; /* the per-CPU lines */
    if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu", &cpu, &user, &nice, &sys, &idle, &iowait) != 6) continue;
    if (have_set && (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set))) continue;
    t->idle += (double)(idle + iowait) * tick;
    t->cores++;
  }
  fclose(f);
  struct rusage ru;
  if (t->cores == 0 || getrusage(RUSAGE_SELF, &ru)) return -1;
  t->ours = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
            1e-6 * (double)ru.ru_stime.tv_usec;
  t->wall = synco_now();
  return 0;
}

void synco_governor_init(synco_thread_governor *g, int full) {
  memset(g, 0, sizeof *g);
  g->full = g->now = full < 1 ? 1 : full;
  g->min_window_s = 0.5;
  g->backoff = 1;
  g->skip = 1; /* the first step of a run (the caller's plans, caches cold) */
}

static int round_cores(double x) { return (int)(x + 0.5); }

/* Starts a probe of `to` threads from the window just measured. */
static int probe(synco_thread_governor *g, int to, double median_s) {
  g->probing = 1;
  g->from = g->now;
  g->from_s = median_s;
  g->since_probe = 0;
  g->now = to;
  return g->now;
}

int synco_governor_window(synco_thread_governor *g, double median_s, int cores, double others, double idle) {
  g->since_probe++;
  if (g->probing) {
    g->probing = 0;
    if (median_s < 0.97 * g->from_s) { /* kept */
      snprintf(g->note, sizeof g->note,
               "--adapt-threads: %d thread%s from now on (other processes keep %.1f cores busy; a step took %.1f ms on "
               "%d, %.1f ms on %d)", g->now, g->now == 1 ? "" : "s", others, 1e3 * g->from_s, g->from, 1e3 * median_s,
               g->now);
      g->noted = 1;
      g->backoff = 1;
      g->holdoff = 0;
      return g->now;
    }
    g->now = g->from; /* back; the next probe waits longer */
    g->holdoff = g->backoff;
    g->backoff = g->backoff < 64 ? 2 * g->backoff : 64;
    return g->now;
  }
  if (g->holdoff > 0) {
    g->holdoff--;
    return g->now;
  }
  /* the cores the threads could have: all but those the others kept busy */
  const int free_cores = round_cores((double)cores - others);
  const int down = free_cores < 1 ? 1 : free_cores; /* at least 1: at 1 already, there is nothing to probe */
  if (others >= 0.5 && down < g->now) return probe(g, down, median_s);
  if (g->now < g->full && (idle >= 0.5 || g->since_probe >= 64)) {
    const int up = g->now + (idle >= 0.5 ? round_cores(idle) : 1);
    return probe(g, up > g->full ? g->full : up, median_s);
  }
  return g->now;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int synco_governor_step(synco_thread_governor *g, double step_s) {
  if (g->full < 2) return g->now;
  if (g->skip > 0) { /* not measured; the window starts after it */
    g->skip--;
    g->have_t0 = g->skip == 0 && synco_cpu_times_read(&g->t0) == 0;
    g->n = 0;
    return g->now;
  }
  if (!g->have_t0) return g->now; /* no /proc/stat: nothing to go by */
  if (g->n < SYNCO_GOV_MAX_WINDOW) g->step_s[g->n++] = step_s;
  synco_cpu_times t;
  if (g->n < 5 || synco_now() - g->t0.wall < g->min_window_s) return g->now;
  if (synco_cpu_times_read(&t) != 0 || t.cores != g->t0.cores || t.wall <= g->t0.wall) {
    g->have_t0 = 0;
    return g->now;
  }
  const double wall = t.wall - g->t0.wall;
  const double idle = (t.idle - g->t0.idle) / wall, ours = (t.ours - g->t0.ours) / wall;
  double others = (double)t.cores - idle - ours;
  if (others < 0) others = 0;
  double sorted[SYNCO_GOV_MAX_WINDOW];
  memcpy(sorted, g->step_s, (size_t)g->n * sizeof *sorted);
  qsort(sorted, (size_t)g->n, sizeof *sorted, cmp_double);
  const double median = g->n % 2 ? sorted[g->n / 2] : 0.5 * (sorted[g->n / 2 - 1] + sorted[g->n / 2]);
  const int before = g->now;
  synco_governor_window(g, median, t.cores, others, idle);
  if (getenv("SYNCO_GOVERNOR_TRACE"))
    fprintf(stderr, "governor: %d steps, median %.1f ms, others %.2f, idle %.2f, ours %.2f cores: %d -> %d threads\n",
            g->n, 1e3 * median, others, idle, ours, before, g->now);
  g->n = 0;
  g->t0 = t;
  if (g->now != before) g->skip = 1;
  return g->now;
}
