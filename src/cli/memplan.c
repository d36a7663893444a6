/* Memory plans of pretraining, benchmarks and evaluations, and the memory the machine has (see memplan.h). The
 * figures come from the code that allocates: synco_moco_memory_plan (the MoCo state, the loss, the negatives),
 * synco_encoder_memory_plan (a dry build of the same layout) and, through both, the backend's own report of what
 * its plans and workspaces take; this file groups them and adds the input batches and the runtime's allowance. */
#include "cli/memplan.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

/* What the process takes besides the planned buffers: oneDNN's JIT code and primitive caches, OpenMP and loader
 * thread stacks, stdio and allocator slack (20-40 MB measured on top of VmRSS at planning time). */
#define RUNTIME_ALLOWANCE ((size_t)40 << 20)

/* An encoder's parameters, gradients and BN statistics (its plans are counted by the caller). */
static size_t encoder_weights(const synco_encoder_memory *m) { return m->params + m->grads + m->buffers; }

static size_t base_bytes(void) { return synco_mem_rss() + RUNTIME_ALLOWANCE; }

synco_status synco_mem_plan_moco(synco_backend *be, const synco_moco_config *mc, int loader_slots, int workers,
                                 size_t aug_scratch, synco_mem_plan *p) {
  memset(p, 0, sizeof *p);
  synco_moco_memory m;
  SYNCO_TRY(synco_moco_memory_plan(be, mc, &m));
  p->activations = m.query.activations + m.key.activations;
  p->model = encoder_weights(&m.query) + encoder_weights(&m.key) + m.momentum + synco_plan_total(&m.plans);
  p->state = m.state + m.loss + m.negatives;
  const size_t B = (size_t)mc->batch, img = 3 * (size_t)mc->image_size * mc->image_size * sizeof(float);
  /* a slot's images: two views; with the key images shuffled by the loader (pretrain_setup.c's open_loader), the
   * queries' views and each direction's key images */
  const size_t images = mc->keys_preshuffled ? (mc->symmetric ? 4 : 2) : 2;
  p->io = (size_t)(loader_slots > 0 ? loader_slots : 0) * (images * B * img + 8 * B) +
          (size_t)(workers > 0 ? workers : 0) * aug_scratch;
  p->base = base_bytes();
  p->total = p->activations + p->model + p->state + p->io + p->base;
  return SYNCO_OK;
}

synco_status synco_mem_plan_encoders(synco_backend *be, const synco_encoder_config *cfg, int batch, int image_size,
                                     int encoders, synco_mem_plan *p) {
  memset(p, 0, sizeof *p);
  synco_encoder_memory m;
  SYNCO_TRY(synco_encoder_memory_plan(be, cfg, batch, image_size, &m));
  const size_t n = (size_t)(encoders > 0 ? encoders : 1);
  p->model = n * (encoder_weights(&m) + m.backend_ws); /* each on a backend of its own */
  p->activations = n * m.activations;
  p->io = n * (size_t)batch * (3 * (size_t)image_size * image_size * sizeof(float) + 8);
  p->base = base_bytes();
  p->total = p->activations + p->model + p->io + p->base;
  return SYNCO_OK;
}

/* The first number of a file, or 0 (also for "max"). */
static size_t read_number(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  unsigned long long v = 0;
  if (fscanf(f, "%llu", &v) != 1) v = 0;
  fclose(f);
  return (size_t)v;
}

/* A "Key:   N kB" line of a /proc file, in bytes; 0 when absent. */
static size_t proc_kb(const char *path, const char *key) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[256];
  size_t v = 0, n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, key, n) && line[n] == ':') {
      v = (size_t)strtoull(line + n + 1, NULL, 10) * 1024;
      break;
    }
  fclose(f);
  return v;
}

size_t synco_mem_rss(void) { return proc_kb("/proc/self/status", "VmRSS"); }

int synco_mem_check_disabled(void) {
  const char *e = getenv("SYNCO_NO_MEMORY_CHECK");
  return e && *e && strcmp(e, "0") != 0;
}

synco_status synco_mem_limit(size_t *bytes) {
  *bytes = 0;
  const char *lim = getenv("SYNCO_MEMORY_LIMIT_MB");
  if (!lim || !*lim) return SYNCO_OK;
  const char *p = lim;
  while (*p == ' ') p++;
  char *end = NULL;
  errno = 0;
  const unsigned long long mb = *p >= '0' && *p <= '9' ? strtoull(p, &end, 10) : 0;
  while (end && *end == ' ') end++;
  if (!end || *end || errno || mb < 1 || mb > (unsigned long long)(SIZE_MAX / 1000000))
    return synco_fail(SYNCO_ERR_ARG, "SYNCO_MEMORY_LIMIT_MB=%s is not a whole number of megabytes from 1 to %llu (unset "
                      "it for no cap)", lim, (unsigned long long)(SIZE_MAX / 1000000));
  *bytes = (size_t)mb * 1000000;
  return SYNCO_OK;
}

size_t synco_mem_available(const char **what) {
  const size_t rss = synco_mem_rss();
  const char *w = "MemAvailable";
  size_t free_b = proc_kb("/proc/meminfo", "MemAvailable");
  /* cgroup v2: the limit of this process's group (the root group has none) */
  char cg[512] = "", path[700];
  FILE *f = fopen("/proc/self/cgroup", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f))
      if (!strncmp(line, "0::", 3)) {
        snprintf(cg, sizeof cg, "%s", line + 3);
        cg[strcspn(cg, "\n")] = 0;
      }
    fclose(f);
  }
  snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", strcmp(cg, "/") ? cg : "");
  const size_t max = read_number(path);
  snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.current", strcmp(cg, "/") ? cg : "");
  const size_t cur = read_number(path);
  if (max > 0) {
    const size_t left = max > cur ? max - cur : 0;
    if (!free_b || left < free_b) {
      free_b = left;
      w = "cgroup memory.max";
    }
  }
  size_t avail = free_b + rss;
  size_t l = 0;
  if (synco_mem_limit(&l) == SYNCO_OK && l > 0 && l < avail) { /* a bad value: refused by main before any command */
    avail = l;
    w = "SYNCO_MEMORY_LIMIT_MB";
  }
  if (what) *what = w;
  return free_b ? avail : (size_t)-1; /* no /proc: nothing to check against */
}

const char *synco_mem_str(size_t bytes, char *buf, size_t n) {
  if (bytes >= (size_t)1000000000) snprintf(buf, n, "%.1f GB", bytes / 1e9);
  else snprintf(buf, n, "%.0f MB", bytes / 1e6);
  return buf;
}

int synco_mem_refuse(const char *cmd, const synco_mem_plan *p, int batch, int image_size, const char *advice) {
  const char *what = NULL;
  const size_t avail = synco_mem_available(&what);
  const char *rep = getenv("SYNCO_MEMORY_REPORT");
  if (rep && *rep && strcmp(rep, "0")) {
    char b[7][32];
    fprintf(stderr, "synco %s: memory plan %s = activations %s + model %s + state %s + io %s + base %s; %s available (%s)\n",
            cmd, synco_mem_str(p->total, b[0], 32), synco_mem_str(p->activations, b[1], 32),
            synco_mem_str(p->model, b[2], 32), synco_mem_str(p->state, b[3], 32), synco_mem_str(p->io, b[4], 32),
            synco_mem_str(p->base, b[5], 32), avail == (size_t)-1 ? "unknown" : synco_mem_str(avail, b[6], 32), what);
  }
  if (synco_mem_check_disabled()) return 0;
  if (p->total <= avail) return 0;
  char need[32], act[32], have[32];
  fprintf(stderr,
          "synco %s: this run needs about %s (activations %s at batch %d, %d px); %s are available (%s). %s\n", cmd,
          synco_mem_str(p->total, need, sizeof need), synco_mem_str(p->activations, act, sizeof act), batch,
          image_size, synco_mem_str(avail, have, sizeof have), what, advice);
  return 2;
}
