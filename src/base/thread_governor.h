/* --adapt-threads: fewer compute threads while other processes take cores, all of them again when the cores are
 * free (thread_governor.c says why and how). */
#ifndef SYNCO_BASE_THREAD_GOVERNOR_H
#define SYNCO_BASE_THREAD_GOVERNOR_H

#define SYNCO_GOV_MAX_WINDOW 64 /* steps a window holds at most */

/* CPU time since boot, read from /proc/stat and getrusage: the idle time of the CPUs this process may run on, and
 * this process's own CPU time (all its threads), in seconds; wall: a monotonic clock. */
typedef struct {
  double wall, idle, ours;
  int cores; /* the CPUs this process may run on */
} synco_cpu_times;

/* 0 when read; -1 where /proc/stat cannot be read (not Linux): the governor then never probes. */
int synco_cpu_times_read(synco_cpu_times *t);
/* The CPUs this process may run on (its affinity mask; else the online CPUs; at least 1). */
int synco_cores_available(void);

typedef struct {
  int full;              /* --threads: the most the governor runs, and where it starts */
  int now;               /* the threads the plans are made for */
  /* the window being measured */
  double step_s[SYNCO_GOV_MAX_WINDOW];
  int n;                 /* steps in it */
  int skip;              /* steps not measured after a switch (the new plans' first run) */
  synco_cpu_times t0;    /* at the window's start */
  int have_t0;
  double min_window_s;   /* a window lasts at least this long (the CPU times tick every 10 ms) and 5 steps */
  /* the probe */
  int probing;           /* the window being measured runs on the probe's count */
  int from;              /* the count before the probe */
  double from_s;         /* the median step of the window before the probe */
  int holdoff, backoff;  /* windows before the next probe may start; holdoff after the next failed probe */
  int since_probe;       /* windows since the last probe */
  /* what the caller prints when a switch is kept */
  char note[200];
  int noted;
} synco_thread_governor;

void synco_governor_init(synco_thread_governor *g, int full);

/* The decision at the end of a measured window: its median step in seconds, the CPUs the process may run on, and
 * the cores other processes kept busy and the cores left idle, each averaged over the window. Returns the thread
 * count of the next window (g->now). A probe starts when other processes take at least half a core and leave fewer
 * cores than there are threads (fewer threads: the cores they leave, at least 1) or, below full, when at least half
 * a core is idle or 64 windows passed (more threads); it is kept when its median step is at least 3 % faster, and a
 * probe that is not kept waits 1, 2, 4 ... 64 windows before the next. */
int synco_governor_window(synco_thread_governor *g, double median_s, int cores, double others, double idle);

/* After each step, its seconds (the compute, not the wait for data): collects the window, reads the CPU times at
 * its ends and decides. Returns the thread count for the next step; the caller sets it and plans again
 * (synco_cli_adapt_threads). g->noted: a switch was kept, g->note says so (the caller clears noted). */
int synco_governor_step(synco_thread_governor *g, double step_s);

#endif
