/* The memory a command will need, planned from its configuration before anything big is allocated, and the
 * memory the machine has for it. Pretraining and benchmarks refuse a run that cannot fit (instead of being
 * killed by the kernel's OOM killer hours later with no message); evaluations pick a batch that fits.
 *
 * Available memory: MemAvailable of /proc/meminfo, or the cgroup's memory.max minus memory.current when that is
 * lower, plus what this process already holds (the plan counts it too). SYNCO_MEMORY_LIMIT_MB=N caps it at N MB (10^6 bytes)
 * (for tests and for users who share a machine); SYNCO_NO_MEMORY_CHECK=1 turns every refusal off;
 * SYNCO_MEMORY_REPORT=1 prints each plan's breakdown on stderr. */
#ifndef SYNCO_CLI_MEMPLAN_H
#define SYNCO_CLI_MEMPLAN_H

#include <stddef.h>

#include "nn/encoder.h"
#include "ssl/moco.h"
#include "synco.h"

typedef struct {
  size_t total;       /* all of it, what the process holds already included */
  size_t activations; /* the encoders' activations and gradient buffers at this batch and image size */
  size_t model;       /* parameters, gradients, SGD momentum, BN statistics, the backend's plans and workspaces */
  size_t state;       /* queue, logits, synthetic negatives and their workspace, the step's small buffers */
  size_t io;          /* loader prefetch slots or input batches */
  size_t base;        /* this process so far (VmRSS: libraries, the dataset) plus the runtime's allowance */
} synco_mem_plan;

/* Pretraining (synco_moco_create's allocations on be, which is asked and nothing planned on it) with a loader of
 * `loader_slots` two-view batches and `workers` threads each keeping an augmentation scratch of `aug_scratch`
 * bytes. */
synco_status synco_mem_plan_moco(synco_backend *be, const synco_moco_config *mc, int loader_slots, int workers,
                                 size_t aug_scratch, synco_mem_plan *p);
/* `encoders` encoders as synco_encoder_create makes them on a backend like be (each its own), plus one plain input
 * batch per encoder. */
synco_status synco_mem_plan_encoders(synco_backend *be, const synco_encoder_config *cfg, int batch, int image_size,
                                     int encoders, synco_mem_plan *p);

/* SYNCO_MEMORY_LIMIT_MB in bytes (0: unset or empty, no cap); a value that is not a whole number of MB >= 1 (-5,
 * abc, 12x) is SYNCO_ERR_ARG naming it. main refuses such a value before any command runs. */
synco_status synco_mem_limit(size_t *bytes);
/* Bytes this process may hold in all (see the top of this file); *what names the limit ("MemAvailable",
 * "cgroup memory.max", "SYNCO_MEMORY_LIMIT_MB"). */
size_t synco_mem_available(const char **what);
/* Current resident set of this process (VmRSS), bytes; 0 if unknown. */
size_t synco_mem_rss(void);
/* 1 when SYNCO_NO_MEMORY_CHECK is set to a value other than 0. */
int synco_mem_check_disabled(void);
/* "31.2 GB" (10^9 bytes, as free -g and the OOM report do not, but as users read it), or "512 MB" below 1 GB. */
const char *synco_mem_str(size_t bytes, char *buf, size_t n);

/* Refuses a plan larger than the available memory: prints "synco CMD: this run needs about X (activations Y at
 * batch B, S px); Z are available. ADVICE" and returns 2; 0 when it fits or checks are disabled. */
int synco_mem_refuse(const char *cmd, const synco_mem_plan *p, int batch, int image_size, const char *advice);

#endif
