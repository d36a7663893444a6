/* synco bench fwdbwd / step: time the encoder's forward + backward, or one whole pretraining step, on random
 * data. Reports the median images/s over the timed iterations, GFLOP/s (the direct convolution's operation
 * count, as tools/bench_torch.py counts it, so Winograd layers count what they replace, not what they
 * execute), the peak resident memory, and the time the convolutions alone took inside the same iterations
 * (the encoders' per-op timer, synco_encoder_set_timing), so the overhead of everything else is step / conv;
 * --compare-torch also runs tools/bench_torch.py with the same settings, one after the other, and prints its
 * figures and the ratio. */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backend/host_gemm.h"
#include "backend/registry.h"
#include "base/progress.h"
#include "base/rng.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/bench_layers.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/memplan.h"
#include "dist/dist.h"
#include "nn/encoder.h"
#include "ssl/moco.h"

typedef struct {
  const char *arch, *method, *backend, *precision, *python;
  int cifar_stem, width, batch, image_size, iters, warmup, threads, json, moco_k, compare, mlp, dim, bn_splits;
  int n_hard, n[SYNCO_NEG_TYPES]; /* step: the synthetic counts timed (resolved for --moco-k), given to PyTorch too */
  int memory_check;
  int adapt;              /* --adapt-threads (step): the thread governor (thread_governor.c) */
  int threads_end;        /* the threads the governor ended on */
  int profile;            /* --profile N: the last N timed iterations are marked for an external profiler */
  size_t planned;         /* the memory plan's total (memplan.h), printed beside the measured peak */
  int world;              /* processes of a `mpirun -np N synco bench step` (0 or 1: one) */
  double comm_share, allreduce_share; /* world > 1: the collectives' and the gradient all-reduce's share of a step */
  double bucket_mb;       /* --bucket-mb (step, world > 1) */
  const char *transport;  /* world > 1: the collectives' ("mpi", "nccl") */
  const char *timer;      /* what timed the steps: "host clock" or "device events" (step) */
  const char *key_shuffle; /* --key-shuffle (step, world > 1): images or indices */
  int layers;             /* --layers: the per-op table (lt) of the timed iterations */
  synco_bench_layers lt;
} bench_opts;

/* --profile N: the profiler records the last N timed iterations (called at the top of iteration i). */
static void profile_mark(synco_backend *be, const bench_opts *o, int i) {
  const int n = o->profile < o->iters ? o->profile : o->iters;
  if (n > 0 && i == o->warmup + o->iters - n) synco_backend_profiler(be, 1);
  if (n > 0 && i == o->warmup + o->iters) synco_backend_profiler(be, 0);
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

static int parse(const char *kind, bench_opts *o, int argc, char **argv, int step) {
  synco_arg args[] = {
      {"arch", 'a', SYNCO_ARG_STR, &o->arch, "resnet18, resnet34 or resnet50"},
      {"cifar-stem", 0, SYNCO_ARG_FLAG, &o->cifar_stem, "3x3 stride-1 stem without max-pool"},
      {"width", 0, SYNCO_ARG_INT, &o->width, "base width"},
      {"batch", 'b', SYNCO_ARG_INT, &o->batch, "images per step"},
      {"image-size", 0, SYNCO_ARG_INT, &o->image_size, "image side (default 32 with --cifar-stem, else 224)"},
      {"iters", 0, SYNCO_ARG_INT, &o->iters, "timed iterations (median reported)"},
      {"warmup", 0, SYNCO_ARG_INT, &o->warmup, "untimed iterations first"},
      {"threads", 0, SYNCO_ARG_INT, &o->threads, "compute threads (0 = all cores)"},
      {"backend", 0, SYNCO_ARG_STR, &o->backend, "auto, cpu (oneDNN and own kernels), ref, strict (a test backend), cuda or cuda:N (alias --device)"},
      {"precision", 0, SYNCO_ARG_STR, &o->precision, SYNCO_PRECISION_HELP},
      {"method", 0, SYNCO_ARG_STR, &o->method, step ? "synco, mochi or moco" : "(step only)"},
      {"moco-k", 0, SYNCO_ARG_INT, &o->moco_k, "queue size (step)"},
      {"bn-splits", 0, SYNCO_ARG_INT, &o->bn_splits, "Split-BN groups"},
      {"key-shuffle", 0, SYNCO_ARG_STR, &o->key_shuffle, step ? "under mpirun, images (the key images gathered) or "
       "indices (each process's shuffled key images made beforehand, as pretrain's loader does)" : "(step only)"},
      {"bucket-mb", 0, SYNCO_ARG_FLOAT, &o->bucket_mb, step ? "under mpirun, the gradient all-reduce in buckets of "
       "this many MB, each started as the backward finishes it (0: one all-reduce after the backward)" : "(step only)",
       SYNCO_ARG_RANGE(0, 1e6)},
      {"layers", 0, SYNCO_ARG_FLAG, &o->layers, "also the time of every layer's forward and backward passes (and, in "
       "a step, of its other pieces: loss, negatives, SGD ...), ms per iteration, each op between two waits for the "
       "backend"},
      {"json", 0, SYNCO_ARG_FLAG, &o->json, "print one JSON object"},
      {"compare-torch", 0, SYNCO_ARG_FLAG, &o->compare, "also run tools/bench_torch.py and print the ratio"},
      {"python", 0, SYNCO_ARG_STR, &o->python, "python with torch for --compare-torch"},
      {"adapt-threads", 0, SYNCO_ARG_FLAG, &o->adapt, step ? "fewer compute threads while other processes take cores (as in pretrain; sums fixed for --threads; --no-adapt-threads: off)" : "(step only)"},
      {"profile", 0, SYNCO_ARG_INT, &o->profile, "mark the last N timed iterations for a profiler (ncu --profile-from-start off)"},
      {"memory-check", 0, SYNCO_ARG_FLAG, &o->memory_check, "refuse a run planned to need more memory than is free (--no-memory-check: run anyway)"},
      {NULL},
  };
  char cmd[32];
  snprintf(cmd, sizeof cmd, "bench %s", kind);
  int rc = synco_args_parse(cmd, step ? "Times one full pretraining step (MoCo-v2 / SynCo) on random images."
                                       : "Times forward + backward of the encoder on random images.",
                            args, argc, argv, NULL, 0, NULL);
  if (rc) return rc;
  /* a step's options given to fwdbwd (the encoder alone) would change nothing: refused, not passed over */
  static const char *const step_only[] = {"method", "moco-k", "key-shuffle", "bucket-mb", "adapt-threads"};
  for (size_t i = 0; !step && i < sizeof step_only / sizeof *step_only; i++)
    if (synco_args_seen(args, step_only[i])) {
      fprintf(stderr, "synco bench fwdbwd: --%s is bench step's (fwdbwd times the encoder alone)\n", step_only[i]);
      return 2;
    }
  if (o->profile > o->iters)
    fprintf(stderr, "synco bench: --profile %d marks more iterations than the %d timed (--iters): all of them\n",
            o->profile, o->iters);
  if (!o->image_size) o->image_size = o->cifar_stem ? 32 : 224;
  if (synco_cli_precision("bench", o->backend, o->precision)) return 2;
  o->threads = synco_cli_set_threads("bench", o->threads, NULL);
  return 0;
}

static int depth_of(const char *arch) {
  return !strcmp(arch, "resnet18") ? 18 : !strcmp(arch, "resnet34") ? 34 : !strcmp(arch, "resnet50") ? 50 : 0;
}

/* src in single quotes for sh, each ' written as '\'' (a path with spaces or shell characters stays one word);
 * 0 when it does not fit in cap bytes. */
static int shell_quote(char *dst, size_t cap, const char *src) {
  size_t n = 0;
  if (cap < 3) return 0;
  dst[n++] = '\'';
  for (const char *c = src; *c; c++) {
    const char *piece = *c == '\'' ? "'\\''" : NULL;
    const size_t len = piece ? 4 : 1;
    if (n + len + 2 > cap) return 0;
    if (piece) memcpy(dst + n, piece, len);
    else dst[n] = *c;
    n += len;
  }
  dst[n++] = '\'';
  dst[n] = 0;
  return 1;
}

/* Runs tools/bench_torch.py with the same settings (model, batch, image size, precision, Split-BN, iterations; a
 * step's queue and synthetic counts) and returns its images/s, or -1 with why (cap bytes) said. */
static double torch_images_per_s(const bench_opts *o, const char *mode, double *rss, char *why, size_t cap) {
  char script[4200], cmd[10000], extra[256] = "";
  why[0] = 0;
  if (strcmp(o->precision, "fp32") && strcmp(o->precision, "bf16")) {
    snprintf(why, cap, "tools/bench_torch.py times fp32 or bf16, not %s", o->precision);
    return -1;
  }
  if (!synco_cli_shipped("tools/bench_torch.py", "tools/bench_torch.py", 0, script, sizeof script)) {
    snprintf(why, cap, "tools/bench_torch.py not found (in ./tools, a build tree's or PREFIX/share/synco/tools)");
    return -1;
  }
  if (!strcmp(mode, "step"))
    snprintf(extra, sizeof extra, " --method %s --moco-k %d --n-hard %d --n1 %d --n2 %d --n3 %d --n4 %d --n5 %d --n6 %d",
             o->method, o->moco_k, o->n_hard, o->n[0], o->n[1], o->n[2], o->n[3], o->n[4], o->n[5]);
  char qpy[4400], qscript[4400];
  if (!shell_quote(qpy, sizeof qpy, o->python) || !shell_quote(qscript, sizeof qscript, script) ||
      snprintf(cmd, sizeof cmd, "%s %s %s --arch %s%s --width %d --batch %d --image-size %d --threads %d --precision %s "
               "--bn-splits %d --warmup %d --iters %d%s --json 2>&1", qpy, qscript, mode, o->arch,
               o->cifar_stem ? " --cifar-stem" : "", o->width, o->batch, o->image_size, o->threads, o->precision,
               o->bn_splits, o->warmup, o->iters, extra) >= (int)sizeof cmd) {
    snprintf(why, cap, "the command for %s is too long", o->python);
    return -1;
  }
  FILE *p = popen(cmd, "r");
  if (!p) {
    snprintf(why, cap, "cannot start %s", o->python);
    return -1;
  }
  char line[4096];
  double ips = -1;
  while (fgets(line, sizeof line, p)) {
    const char *k = strstr(line, "\"images_per_s\":");
    if (k) ips = atof(k + 15);
    const char *r = strstr(line, "\"peak_rss_mb\":");
    if (r) *rss = atof(r + 14);
    if (!k && line[0] != '{' && line[0] != '\n') { /* its last word on stderr: the reason when it fails */
      line[strcspn(line, "\n")] = 0;
      snprintf(why, cap, "%.400s", line);
    }
  }
  if (pclose(p) != 0 || ips <= 0) {
    if (!why[0]) snprintf(why, cap, "%.200s %.200s failed", o->python, script);
    return -1;
  }
  return ips;
}

/* conv: seconds the convolutions took in each timed iteration (median reported next to the step's). Timing them
 * synchronizes the backend around every convolution, so on an asynchronous backend (a GPU) the step is timed in
 * one pass without that and the convolutions in a second pass of as many iterations (the conv timing pass). */
/* The kernels the backend's layers chose (a JSON array, malloc'ed), or NULL when the backend does not say. */
static char *kernel_list(synco_backend *be) {
  if (!be->kernels) return NULL;
  const size_t n = be->kernels(be, NULL, 0) + 1;
  char *s = malloc(n);
  if (s) be->kernels(be, s, n);
  return s;
}

static int report(const char *kind, const bench_opts *o, double *times, double *conv, int n, double flops_per_image,
                  synco_backend *be) {
  char *kernels = kernel_list(be);
  qsort(times, (size_t)n, sizeof *times, cmp_double);
  qsort(conv, (size_t)n, sizeof *conv, cmp_double);
  const double med = times[n / 2], ips = o->batch / med, gflops = flops_per_image * ips / 1e9, rss = peak_rss_mb();
  const double planned = o->planned / 1048576.0;
  const double cmed = conv[n / 2], over = cmed > 0 ? med / cmed : -1;
  double tips = -1, trss = -1;
  char why[512] = "";
  if (o->compare) tips = torch_images_per_s(o, kind, &trss, why, sizeof why);
  if (o->json) {
    printf("{\"program\":\"synco\",\"mode\":\"%s\",\"arch\":\"%s\",\"width\":%d,\"cifar_stem\":%d,\"batch\":%d,"
           "\"image_size\":%d,\"threads\":%d,\"backend\":\"%s\",\"precision\":\"%s\",\"method\":\"%s\",\"iters\":%d,"
           "\"median_s\":%.6f,\"images_per_s\":%.3f,\"gflops_per_s\":%.3f,\"peak_rss_mb\":%.1f,"
           "\"planned_mb\":%.1f,\"conv_median_s\":%.6f,\"step_over_conv\":%.3f",
           kind, o->arch, o->width, o->cifar_stem, o->batch, o->image_size, o->threads, be->name, o->precision,
           strcmp(kind, "step") ? "" : o->method, n, med, ips, gflops, rss, planned, cmed, over);
    printf(",\"bn_splits\":%d", o->bn_splits);
    if (!strcmp(kind, "step")) printf(",\"moco_k\":%d,\"n_hard\":%d", o->moco_k, o->n_hard);
    if (o->world > 1)
      printf(",\"ranks\":%d,\"transport\":\"%s\",\"comm_share\":%.4f,\"allreduce_share\":%.4f,\"bucket_mb\":%g,"
             "\"key_shuffle\":\"%s\"", o->world, o->transport, o->comm_share, o->allreduce_share, o->bucket_mb,
             o->key_shuffle);
    if (o->timer) printf(",\"timer\":\"%s\"", o->timer);
    if (o->adapt) printf(",\"adapt_threads\":1,\"threads_at_end\":%d", o->threads_end);
    if (o->compare) printf(",\"torch_images_per_s\":%.3f,\"torch_peak_rss_mb\":%.1f,\"ratio\":%.3f", tips, trss, tips > 0 ? ips / tips : -1);
    if (o->compare && tips <= 0) { /* why, as a JSON string */
      cJSON *w = cJSON_CreateString(why);
      char *t = w ? cJSON_PrintUnformatted(w) : NULL;
      if (t) printf(",\"torch_error\":%s", t);
      free(t);
      cJSON_Delete(w);
    }
    if (!strcmp(be->name, "cpu")) printf(",\"host_gemm\":\"%s\"", synco_host_sgemm_name()); /* the head, logits, loss */
    if (kernels) printf(",\"kernels\":%s", kernels);
    if (o->layers) synco_bench_layers_json(&o->lt, stdout);
    printf("}\n");
  } else {
    printf("synco bench %s: %s%s width %d, batch %d, %dx%d, %d thread%s, backend %s, %s%s%s\n", kind, o->arch,
           o->cifar_stem ? " (CIFAR stem)" : "", o->width, o->batch, o->image_size, o->image_size, o->threads,
           synco_cli_s(o->threads), be->name, synco_backend_precision_label(be, o->precision),
           strcmp(kind, "step") ? "" : ", method ", strcmp(kind, "step") ? "" : o->method);
    printf("  synco   : %8.2f images/s  (median %.3f s of %d%s%s)  %.1f GFLOP/s  peak RSS %.0f MB (planned %.0f MB)\n",
           ips, med, n, o->timer ? ", " : "", o->timer ? o->timer : "", gflops, rss, planned);
    printf("  convs   : median %.3f s of the same iterations; %s / convs = %.3fx\n", cmed, kind, over);
    if (o->adapt) printf("  threads : --adapt-threads ended on %d\n", o->threads_end);
    if (o->world > 1)
      printf("  ranks   : %d processes x batch %d over %s; collectives %.1f %% of a step (the all-reduces %.1f %%)\n",
             o->world, o->batch / o->world, o->transport, 100 * o->comm_share, 100 * o->allreduce_share);
    if (o->compare) {
      if (tips > 0) printf("  pytorch : %8.2f images/s  peak RSS %.0f MB\n  ratio   : %.2fx\n", tips, trss, ips / tips);
      else printf("  pytorch : not compared: %s\n", why);
    }
    if (kernels) {
      int shapes = 0, refs = 0;
      for (const char *p = kernels; (p = strstr(p, "{\"conv\":")); p++) shapes++;
      for (const char *p = kernels; (p = strstr(p, "ref")); p++) refs++;
      printf("  kernels : %d convolution shapes, %s (--json lists them)\n", shapes,
             refs ? "SOME ON oneDNN's REFERENCE KERNELS" : "none on a reference kernel");
    }
    if (o->layers) synco_bench_layers_print(&o->lt, med, stdout);
  }
  free(kernels);
  return 0;
}

static void fill_input(float *x, size_t n, uint64_t seed) {
  synco_rng r = synco_rng_make(seed, 0, 0, SYNCO_RNG_TEST);
  for (size_t i = 0; i < n; i++) x[i] = synco_rng_normal(&r);
}

int synco_bench_fwdbwd(int argc, char **argv) {
  bench_opts o = {.arch = "resnet18", .method = "synco", .backend = "auto", .precision = "fp32", .python = "/usr/bin/python3",
                  .width = 64, .batch = 128, .iters = 5, .warmup = 2, .moco_k = 4096, .mlp = 1, .dim = 128, .bn_splits = 1,
                  .memory_check = 1};
  int rc = parse("fwdbwd", &o, argc, argv, 0);
  if (rc) return rc == 1 ? 0 : rc;
  const int depth = depth_of(o.arch);
  if (!depth) {
    fprintf(stderr, "synco bench: unknown --arch '%s'\n", o.arch);
    return 2;
  }
  synco_backend *be = NULL;
  synco_encoder *enc = NULL;
  synco_encoder_config ec = {.depth = depth, .width = o.width, .cifar_stem = o.cifar_stem, .head = 1, .mlp = 1, .dim = 128,
                             .bn_splits = o.bn_splits};
  /* the backend first (nothing planned on it yet): the memory plan asks it what its plans take */
  if (synco_cli_backend(o.backend, o.precision, &be)) return synco_cli_error("bench");
  synco_mem_plan mp;
  if (synco_mem_plan_encoders(be, &ec, o.batch, o.image_size, 1, &mp) == SYNCO_OK) {
    mp.io += (size_t)o.batch * 128 * 2 * sizeof(float); /* out, dout */
    mp.total += (size_t)o.batch * 128 * 2 * sizeof(float);
    o.planned = mp.total;
    if (o.memory_check && synco_mem_refuse("bench", &mp, o.batch, o.image_size, "Use a smaller -b or --image-size.")) {
      synco_backend_destroy(be);
      return 2;
    }
  }
  if (synco_encoder_create(&enc, be, &ec, o.batch, o.image_size, 0)) {
    synco_backend_destroy(be);
    return synco_cli_error("bench");
  }
  const size_t nx = (size_t)o.batch * 3 * o.image_size * o.image_size, no = (size_t)o.batch * synco_encoder_out_dim(enc);
  float *x = malloc(nx * sizeof(float)), *out = malloc(no * sizeof(float)), *dout = malloc(no * sizeof(float));
  double *times = malloc((size_t)(o.iters > 0 ? o.iters : 1) * sizeof(double));
  double *conv = malloc((size_t)(o.iters > 0 ? o.iters : 1) * sizeof(double));
  int ret = 1;
  if (!x || !out || !dout || !times || !conv) goto done;
  fill_input(x, nx, 1);
  fill_input(dout, no, 2);
  const int async = synco_backend_supports(be, SYNCO_CAP_ASYNC);
  synco_encoder_set_timing(enc, !async);
  for (int i = 0; i < o.warmup + (async ? 2 : 1) * o.iters; i++) {
    profile_mark(be, &o, i);
    if (async && i == o.warmup + o.iters) synco_encoder_set_timing(enc, 1); /* the conv timing pass */
    if (i == o.warmup + (async ? o.iters : 0)) synco_encoder_op_times_reset(enc); /* the op table's iterations */
    const double t0 = synco_now();
    /* sync: a GPU backend's ops are asynchronous, so the time is the work's, not its launches' */
    if (synco_encoder_forward(enc, out, x, o.batch, 1) || synco_encoder_backward(enc, dout) || be->sync(be)) {
      synco_cli_error("bench");
      goto done;
    }
    const double dt = synco_now() - t0, dc = synco_encoder_conv_seconds(enc, 1);
    if (i >= o.warmup && i < o.warmup + o.iters) times[i - o.warmup] = dt;
    if (i >= o.warmup + (async ? o.iters : 0)) conv[i - o.warmup - (async ? o.iters : 0)] = dc;
  }
  if (o.profile > 0) synco_backend_profiler(be, 0); /* a synchronous backend has no second pass */
  int nt;
  const synco_op_time *ot = synco_encoder_op_times(enc, &nt);
  if (o.layers && synco_bench_layers_add(&o.lt, ot, nt, o.iters, 0)) {
    synco_cli_error("bench");
    goto done;
  }
  ret = report("fwdbwd", &o, times, conv, o.iters, 3.0 * 2.0 * synco_encoder_macs_per_image(enc), be);
done:
  free(x);
  free(out);
  free(dout);
  free(times);
  free(conv);
  synco_bench_layers_free(&o.lt);
  synco_encoder_free(enc);
  synco_backend_destroy(be);
  return ret;
}

int synco_bench_step(int argc, char **argv) {
  bench_opts o = {.arch = "resnet18", .method = "synco", .backend = "auto", .precision = "fp32", .python = "/usr/bin/python3",
                  .width = 64, .batch = 128, .iters = 5, .warmup = 2, .moco_k = 4096, .mlp = 1, .dim = 128, .bn_splits = 8,
                  .memory_check = 1, .adapt = 1, .bucket_mb = SYNCO_MOCO_BUCKET_MB, .key_shuffle = "images"};
  int rc = parse("step", &o, argc, argv, 1);
  if (rc) return rc == 1 ? 0 : rc;
  const int depth = depth_of(o.arch);
  if (!depth) {
    fprintf(stderr, "synco bench: unknown --arch '%s'\n", o.arch);
    return 2;
  }
  /* Under mpirun every process runs its block of the batch (-b is the global batch); rank 0 reports. */
  synco_dist *dist = NULL;
  if (synco_dist_create(&dist)) return synco_cli_error("bench");
  o.world = dist->world;
  if (o.batch % o.world) {
    fprintf(stderr, "synco bench: -b %d does not divide across %d processes\n", o.batch, o.world);
    synco_dist_free(dist);
    return 2;
  }
  if (o.world > 1) o.compare = 0;
  synco_moco_config mc = {0};
  mc.enc = (synco_encoder_config){.depth = depth, .width = o.width, .cifar_stem = o.cifar_stem, .head = 1, .mlp = 1,
                                  .dim = 128, .bn_splits = o.bn_splits};
  mc.image_size = o.image_size;
  mc.batch = o.batch / o.world;
  mc.dist = dist;
  mc.grad_bucket = synco_moco_bucket_floats(o.bucket_mb);
  if (strcmp(o.key_shuffle, "images") && strcmp(o.key_shuffle, "indices")) {
    fprintf(stderr, "synco bench: --key-shuffle must be images or indices, got '%s'\n", o.key_shuffle);
    synco_dist_free(dist);
    return 2;
  }
  mc.keys_preshuffled = o.world > 1 && !strcmp(o.key_shuffle, "indices");
  mc.K = o.moco_k;
  mc.m = 0.99f;
  mc.T = 0.1f;
  mc.momentum = 0.9f;
  mc.wd = 5e-4f;
  mc.neg = (synco_negatives_config){.n_hard = 1024, .sigma = 0.01f, .delta = 0.01f, .eta = 0.01f};
  if (!strcmp(o.method, "synco")) {
    const int n[6] = {256, 256, 256, 64, 64, 64};
    memcpy(mc.neg.n, n, sizeof n);
  } else if (!strcmp(o.method, "mochi")) {
    mc.neg.n[0] = mc.neg.n[2] = 256;
  } else if (strcmp(o.method, "moco")) {
    fprintf(stderr, "synco bench: --method must be synco, mochi or moco\n");
    return 2;
  }
  /* the counts pretrain takes for this queue size (n_hard = min(1024, K/4), each count at most n_hard), so that the
   * step timed is the step a `pretrain --moco-k K` run takes */
  const int none_given[SYNCO_NEG_TYPES] = {0};
  synco_negatives_scale_defaults(&mc.neg, mc.K, 0, none_given);
  o.n_hard = mc.neg.n_hard;
  memcpy(o.n, mc.neg.n, sizeof o.n);
  synco_backend *be = NULL;
  synco_moco *m = NULL;
  synco_mem_plan mp;
  /* the backend first (nothing planned on it yet): the memory plan asks it what its plans take; with --adapt-threads
   * its sums fixed for the full thread count, as pretrain has them (synco_backend_fixed_sums) */
  if (!synco_cli_backend(o.backend, o.precision, &be) && !synco_backend_fixed_sums(be, o.adapt ? o.threads : 0) &&
      synco_mem_plan_moco(be, &mc, 0, 0, 0, &mp) == SYNCO_OK) {
    const size_t inputs = 2 * (size_t)o.batch * 3 * o.image_size * o.image_size * sizeof(float); /* xq, xk */
    mp.io += inputs;
    mp.total += inputs;
    o.planned = mp.total;
    if (o.memory_check && synco_mem_refuse("bench", &mp, o.batch, o.image_size, "Use a smaller -b or --image-size.")) {
      synco_backend_destroy(be);
      synco_dist_free(dist);
      return 2;
    }
  }
  char note[320] = "";
  if (be && synco_cli_gpu_transport(&dist, be, note, sizeof note) != SYNCO_OK) {
    synco_backend_destroy(be);
    be = NULL;
  }
  mc.dist = dist;
  o.transport = dist->name;
  if (note[0] && dist->rank == 0 && !o.json) printf("%s\n", note);
  if (!be || synco_moco_create(&m, be, &mc)) {
    synco_backend_destroy(be);
    const int code = synco_cli_error("bench");
    synco_dist_abort(dist, code);
    synco_dist_free(dist);
    return code;
  }
  const size_t nx = (size_t)mc.batch * 3 * o.image_size * o.image_size;
  float *xq = malloc(nx * sizeof(float)), *xk = malloc(nx * sizeof(float));
  double *times = malloc((size_t)(o.iters > 0 ? o.iters : 1) * sizeof(double));
  double *conv = malloc((size_t)(o.iters > 0 ? o.iters : 1) * sizeof(double));
  /* --key-shuffle indices: each pass's key images in the shuffled order, made before each step (a loader's work) */
  float *shuf = mc.keys_preshuffled ? malloc(2 * nx * sizeof(float)) : NULL;
  uint32_t *perm = mc.keys_preshuffled ? malloc((size_t)o.batch * sizeof(uint32_t)) : NULL;
  int ret = 1;
  if (!xq || !xk || !times || !conv || (mc.keys_preshuffled && (!shuf || !perm))) goto done;
  fill_input(xq, nx, 1);
  fill_input(xk, nx, 2);
  synco_encoder *eq = synco_moco_query(m), *ek = synco_moco_key(m);
  const int async = synco_backend_supports(be, SYNCO_CAP_ASYNC);
  synco_moco_set_timing(m, !async);
  double comm = 0, allreduce = 0, total = 0;
  synco_thread_governor gov;
  synco_governor_init(&gov, o.adapt && !async ? o.threads : 1);
  /* On a GPU the timed steps run back to back, as in a run, each between two of the device's timing marks (CUDA
   * events), and its time is the device's from one mark to the next; elsewhere (and in the conv timing pass) a
   * host clock times each step and a wait for the backend. */
  int marks = async && be->timer_mark && be->timer_seconds;
  if (marks) { /* the device timer tried once: where it fails, the host clock times the steps (with a note) */
    double s0;
    if (be->timer_mark(be, 0) || be->timer_mark(be, 1) || be->sync(be) || be->timer_seconds(be, 0, 1, &s0)) {
      fprintf(stderr, "synco bench: the device timer failed (%s); timing the steps on the host clock\n",
              synco_last_error());
      synco_clear_error();
      marks = 0;
    }
  }
  o.timer = marks ? "device events" : "host clock";
  double t_first = 0;
  for (int i = 0; i < o.warmup + (async ? 2 : 1) * o.iters; i++) {
    profile_mark(be, &o, i);
    if (async && i == o.warmup + o.iters) synco_moco_set_timing(m, 1); /* the conv timing pass */
    if (i == o.warmup + (async ? o.iters : 0)) synco_moco_op_times_reset(m); /* the op tables' iterations */
    if (shuf) { /* every rank holds the same images, so image g of the global batch is row g % batch of its own */
      const size_t img = nx / (size_t)mc.batch;
      for (int p = 0; p < (mc.symmetric ? 2 : 1); p++) {
        synco_moco_key_order(mc.seed, (uint64_t)i, p, o.batch, perm);
        for (int k = 0; k < mc.batch; k++)
          memcpy(shuf + (size_t)p * nx + (size_t)k * img,
                 (p ? xq : xk) + (size_t)(perm[dist->rank * mc.batch + k] % (uint32_t)mc.batch) * img,
                 img * sizeof(float));
      }
    }
    const float *const xs[2] = {shuf, shuf ? shuf + nx : NULL};
    const int timed = i >= o.warmup && i < o.warmup + o.iters, marked = marks && timed;
    if (marked && i == o.warmup) t_first = synco_now();
    const double t0 = synco_now(), c0 = dist->seconds, a0 = dist->allreduce_seconds;
    /* the loss record is read once, after the loop, as pretrain reads it once per log window */
    if ((marked && be->timer_mark(be, i - o.warmup)) ||
        (shuf ? synco_moco_step_shuffled(m, xq, xk, xs, 0.06f, 1, (uint64_t)i, NULL)
              : synco_moco_step(m, xq, xk, 0.06f, 1, (uint64_t)i, NULL)) ||
        (!marked && be->sync(be))) {
      synco_dist_abort(dist, synco_cli_error("bench"));
      goto done;
    }
    double dt = synco_now() - t0;
    if (timed) {
      total += dt;
      comm += dist->seconds - c0;
      allreduce += dist->allreduce_seconds - a0;
      times[i - o.warmup] = dt;
    }
    if (marked && i == o.warmup + o.iters - 1) { /* the last timed step: every step's device time */
      if (be->timer_mark(be, o.iters) || be->sync(be)) {
        synco_dist_abort(dist, synco_cli_error("bench"));
        goto done;
      }
      total = synco_now() - t_first; /* the collectives' share: of the host's wall time for the steps */
      for (int k = 0; k < o.iters; k++)
        if (be->timer_seconds(be, k, k + 1, &times[k])) {
          synco_dist_abort(dist, synco_cli_error("bench"));
          goto done;
        }
      dt = times[o.iters - 1];
    }
    const double dc = synco_encoder_conv_seconds(eq, 1) + synco_encoder_conv_seconds(ek, 1);
    if (i >= o.warmup + (async ? o.iters : 0)) conv[i - o.warmup - (async ? o.iters : 0)] = dc;
    const char *note;
    if (synco_cli_adapt_threads(&gov, m, dt, &note)) {
      synco_dist_abort(dist, synco_cli_error("bench"));
      goto done;
    }
    if (note && !o.json) printf("%s\n", note);
  }
  o.threads_end = gov.now;
  if (o.profile > 0) synco_backend_profiler(be, 0);
  if (synco_moco_read_stats(m, NULL)) { /* a non-finite loss in any step is an error, not a speed */
    synco_dist_abort(dist, synco_cli_error("bench"));
    goto done;
  }
  if (o.layers) { /* the query encoder's layers, the key encoder's forwards beside them, then the step's pieces */
    int n;
    const synco_op_time *e = synco_encoder_op_times(eq, &n);
    int bad = synco_bench_layers_add(&o.lt, e, n, o.iters, 0);
    e = synco_encoder_op_times(ek, &n);
    bad |= synco_bench_layers_add(&o.lt, e, n, o.iters, 1);
    e = synco_moco_op_times(m, &n);
    if (bad | synco_bench_layers_add(&o.lt, e, n, o.iters, 0)) {
      synco_dist_abort(dist, synco_cli_error("bench"));
      goto done;
    }
  }
  o.comm_share = total > 0 ? comm / total : 0;
  o.allreduce_share = total > 0 ? allreduce / total : 0;
  ret = dist->rank ? 0
                   : report("step", &o, times, conv, o.iters, 4.0 * 2.0 * synco_encoder_macs_per_image(synco_moco_query(m)), be);
done:
  free(xq);
  free(xk);
  free(shuf);
  free(perm);
  free(times);
  free(conv);
  synco_bench_layers_free(&o.lt);
  synco_moco_free(m);
  synco_backend_destroy(be);
  synco_dist_free(dist);
  return ret;
}
