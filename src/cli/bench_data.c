/* synco bench data: throughput of the loader, in two-view augmented pairs per second (decode or copy,
 * two independent MoCo augmentations, normalization, batch assembly), for comparison with
 * tools/bench_torch_data.py, which times torchvision/PIL workers on the same data. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "data/data.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int synco_bench_data(int argc, char **argv) {
  const char *data = NULL, *split = NULL, *store = "auto", *aug = "v2";
  int threads = 0, batch = 256, size = 0, blur = -1, json = 0, skip_bad = 0;
  double seconds = 5.0;
  synco_arg args[] = {
      {"data", 0, SYNCO_ARG_STR, &data, "dataset path (ImageFolder, CIFAR, STL-10, idx; default: the bundled images)", 0},
      {"split", 0, SYNCO_ARG_STR, &split, "train or test (formats holding both)", 0},
      {"threads", 'j', SYNCO_ARG_INT, &threads, "loader threads (0: all cores)", 0},
      {"seconds", 0, SYNCO_ARG_FLOAT, &seconds, "timed duration after one warm-up batch", 0},
      {"batch", 'b', SYNCO_ARG_INT, &batch, "batch size", 0},
      {"size", 0, SYNCO_ARG_INT, &size, "output side (0: the image side up to 96, else 224)", 0},
      {"aug", 0, SYNCO_ARG_STR, &aug, "v2 (aug-plus) or v1", 0},
      {"blur", 0, SYNCO_ARG_FLAG, &blur, "GaussianBlur in aug-plus (default: on when size > 64)", 0},
      {"store", 0, SYNCO_ARG_STR, &store, "auto, decoded or encoded", 0},
      {"skip-bad", 0, SYNCO_ARG_FLAG, &skip_bad, "skip unreadable images", 0},
      {"json", 0, SYNCO_ARG_FLAG, &json, "print one JSON object", 0},
      {0},
  };
  const int rc = synco_args_parse("bench data", "loader throughput in two-view augmented pairs/s", args, argc, argv,
                                  NULL, 0, NULL);
  if (rc) return rc == 1 ? 0 : 2;
  if (!data && !(data = synco_cli_bundled_data("train"))) { /* ./data/cifar10-small, or the installed copy */
    fprintf(stderr, "synco bench data: no --data given and the bundled images are not here: pass --data DIR\n");
    return 2;
  }
  if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  synco_dataset_options dopt = {0};
  dopt.split = split;
  dopt.skip_bad = skip_bad;
  dopt.threads = threads;
  if (!strcmp(store, "decoded")) dopt.store = SYNCO_STORE_DECODED;
  else if (!strcmp(store, "encoded")) dopt.store = SYNCO_STORE_ENCODED;
  else if (strcmp(store, "auto")) {
    fprintf(stderr, "synco bench data: --store expects auto, decoded or encoded\n");
    return 2;
  }
  if (strcmp(aug, "v1") && strcmp(aug, "v2")) {
    fprintf(stderr, "synco bench data: --aug expects v1 or v2\n");
    return 2;
  }
  synco_dataset *ds;
  const double t_open = now_s();
  if (synco_dataset_open(&ds, data, &dopt) != SYNCO_OK) return synco_cli_error("bench data");
  const double open_s = now_s() - t_open;
  synco_image img = {0};
  if (synco_dataset_get(ds, 0, &img) != SYNCO_OK) {
    synco_dataset_free(ds);
    return synco_cli_error("bench data");
  }
  if (size <= 0) size = (img.w <= 96 && img.h <= 96) ? (img.w < img.h ? img.w : img.h) : 224;
  if (blur < 0) blur = size > 64;
  synco_image_free(&img);
  synco_loader_config cfg = {0};
  cfg.batch = batch;
  cfg.views = 2;
  cfg.threads = threads;
  cfg.prefetch = 2;
  cfg.shuffle = 1;
  cfg.drop_last = 0;
  cfg.seed = 1;
  cfg.rank = 0;
  cfg.world = 1;
  cfg.aug.kind = strcmp(aug, "v1") ? SYNCO_AUG_MOCO_V2 : SYNCO_AUG_MOCO_V1;
  cfg.aug.size = size;
  cfg.aug.blur = blur;
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  memcpy(cfg.aug.mean, mean, sizeof mean);
  memcpy(cfg.aug.std, std, sizeof std);
  synco_loader *ld;
  if (synco_loader_create(&ld, ds, &cfg) != SYNCO_OK) {
    synco_dataset_free(ds);
    return synco_cli_error("bench data");
  }
  int epoch = 0;
  long pairs = 0;
  synco_batch b;
  double t0 = 0, t1 = 0;
  int warm = 0;
  synco_status st = synco_loader_start_epoch(ld, epoch, 0);
  while (st == SYNCO_OK) {
    st = synco_loader_next(ld, &b);
    if (st != SYNCO_OK) break;
    if (b.n == 0) {
      st = synco_loader_start_epoch(ld, ++epoch, 0);
      continue;
    }
    if (!warm) {
      warm = 1;
      t0 = now_s();
      continue;
    }
    pairs += b.n;
    t1 = now_s();
    if (t1 - t0 >= seconds) break;
  }
  if (st != SYNCO_OK) {
    synco_loader_free(ld);
    synco_dataset_free(ds);
    return synco_cli_error("bench data");
  }
  const double dt = t1 - t0, rate = dt > 0 ? pairs / dt : 0;
  if (json)
    printf("{\"pairs_per_s\": %.1f, \"threads\": %d, \"pairs_per_s_per_thread\": %.1f, \"images\": %zu, "
           "\"format\": \"%s\", \"size\": %d, \"aug\": \"%s\", \"blur\": %d, \"batch\": %d, \"seconds\": %.3f, "
           "\"open_seconds\": %.3f, \"store\": \"%s\"}\n",
           rate, threads, rate / threads, synco_dataset_size(ds), synco_dataset_format(ds), size, aug, blur, batch,
           dt, open_s, store);
  else
    printf("bench data: %.0f pairs/s with %d thread%s (%.0f per thread); %zu %s images, size %d, aug %s%s, "
           "batch %d, %.1f s (open %.2f s)\n",
           rate, threads, synco_cli_s(threads), rate / threads, synco_dataset_size(ds), synco_dataset_format(ds), size, aug,
           blur ? " + blur" : "", batch, dt, open_s);
  synco_loader_free(ld);
  synco_dataset_free(ds);
  return 0;
}
