/* How idle OpenMP threads wait between and inside parallel regions.
 *
 * oneDNN's kernels split their work statically, one share per thread, and a step runs thousands of short parallel
 * regions. libgomp's default lets a thread that has finished its share spin for 300,000 turns before it sleeps.
 * On a machine where another process competes for a core, the spinning thread keeps its core busy while the thread
 * that shares a core with the competitor finishes its share at half speed, and everyone waits for it. Measured on
 * 2 cores (AMX Xeon, 2026-12-04, `bench step --cifar-stem --threads 2` beside one `yes >/dev/null`, alternated):
 *   batch 128, width 64:  alone ~99 images/s either way; beside `yes` 36 (default) vs 50-52 (spin 10,000);
 *   batch 64, width 16:   alone 711-723 vs 699-725 (spin 1,000-100,000); beside `yes` 120-139 (default), 102-110
 *                         (100,000), 161-174 (30,000), 235-238 (10,000), 293-307 (3,000), 307-322 (1,000);
 *   batch 32, width 8:    alone 1,507 (default), 1,432-1,462 (3,000), 1,380-1,446 (1,000); beside `yes` 105-156
 *                         (default), 342-347 (3,000);
 *   OMP_WAIT_POLICY=passive (no spinning) halved the width-8 step alone (1,480 -> 800 images/s).
 * So synco runs with GOMP_SPINCOUNT=3000 unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT. libgomp reads them
 * once, when it loads, before main: setting the variable means executing the program again (the file
 * /proc/self/exe names, same arguments, same pid and name, so MPI launchers and pgrep are unaffected). The
 * re-executed process then removes the variable again, so that programs it starts (python for --compare-torch) see
 * the user's environment. */
#include "cli/wait_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MARK "SYNCO_SET_GOMP_SPINCOUNT"

static const char *chosen = "libgomp's default (OMP_WAIT_POLICY and GOMP_SPINCOUNT unset)";

void synco_wait_policy_init(char **argv) {
  if (getenv(MARK)) { /* the re-executed process: libgomp has read the spin count */
    unsetenv(MARK);
    unsetenv("GOMP_SPINCOUNT");
    chosen = "spin " SYNCO_GOMP_SPINCOUNT " turns, then sleep (synco's default; OMP_WAIT_POLICY or GOMP_SPINCOUNT "
             "to choose)";
    return;
  }
  const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
  if (policy || spin) {
    chosen = policy ? "OMP_WAIT_POLICY, as set" : "GOMP_SPINCOUNT, as set";
    return;
  }
  /* valgrind runs the program through its preloads and does not follow an exec: a re-executed synco would run
   * without it */
  const char *preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "vgpreload")) {
    chosen = "libgomp's default (under valgrind, which an exec to set the spin count would leave)";
    return;
  }
#ifdef __linux__
  /* the file itself, not /proc/self/exe, so that the process keeps its name (ps, top, pgrep -x synco) */
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0 || (size_t)n >= sizeof exe - 1) return;
  exe[n] = 0;
  if (setenv("GOMP_SPINCOUNT", SYNCO_GOMP_SPINCOUNT, 1) == 0 && setenv(MARK, "1", 1) == 0) {
    fflush(NULL);
    execv(exe, argv); /* fails for a binary deleted since it started ("... (deleted)"): run on as is */
  }
  unsetenv(MARK); /* the exec failed: run on with libgomp's default */
  unsetenv("GOMP_SPINCOUNT");
#endif
}

const char *synco_wait_policy_describe(void) { return chosen; }
