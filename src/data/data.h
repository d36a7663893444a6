/* Data pipeline contract: datasets (ImageFolder JPEG/PNG, CIFAR-10/100 binary, STL-10 binary, idx),
 * torchvision-semantics augmentations, and a multi-threaded prefetching batch loader.
 * Implementations: dataset.c (+ decode.c, formats), augment.c, loader.c. */
#ifndef SYNCO_DATA_DATA_H
#define SYNCO_DATA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "base/rng.h"
#include "synco.h"

/* ---- datasets ------------------------------------------------------------------------------- */
typedef enum { SYNCO_STORE_AUTO = 0, SYNCO_STORE_DECODED, SYNCO_STORE_ENCODED } synco_store_mode;

typedef struct {
  const char *split;      /* "train" or "test" where the format holds both; NULL = train */
  int split_if_any;       /* an ImageFolder without that split's folder (test: also val) is taken whole, where it
                           * is an error otherwise: a --val folder is the held-out images, or holds them as test/ */
  int skip_bad;           /* ImageFolder: skip unreadable images (counted) instead of failing */
  synco_store_mode store; /* decoded uint8 in memory (small images) or encoded bytes decoded per sample */
  int threads;            /* threads for decoding at open time (<= 0: all cores) */
  int coarse_labels;      /* CIFAR-100: the 20 coarse labels instead of the 100 fine ones */
} synco_dataset_options;

/* An RGB image, interleaved HWC uint8. */
typedef struct {
  int w, h;
  uint8_t *rgb;           /* w*h*3 bytes */
  size_t cap;             /* allocated bytes of rgb (owned by whoever filled it) */
} synco_image;

typedef struct synco_dataset synco_dataset;

/* Opens a dataset; the format is detected from the path (a folder of class folders, CIFAR .bin files or
 * their folder, STL-10 folder, idx files). On failure: SYNCO_ERR_IO / SYNCO_ERR_FORMAT and a one-line
 * message naming the file and the problem. */
synco_status synco_dataset_open(synco_dataset **out, const char *path, const synco_dataset_options *opt);
void synco_dataset_free(synco_dataset *ds);
size_t synco_dataset_size(const synco_dataset *ds);
int synco_dataset_num_classes(const synco_dataset *ds);       /* 0 if unlabelled */
const char *synco_dataset_class_name(const synco_dataset *ds, int c);
/* Whether `b` (named b_name, e.g. the --val path) labels its images as `a` does: the same number of classes with the
 * same names in the same order, since an evaluation pairs labels by class index. SYNCO_ERR_ARG and a message naming
 * both and the first difference otherwise. */
synco_status synco_dataset_check_same_classes(const synco_dataset *a, const char *a_name, const synco_dataset *b,
                                              const char *b_name);
int synco_dataset_label(const synco_dataset *ds, size_t i);   /* -1 if unlabelled */
/* How many images have a label (0 for an unlabelled folder or STL-10's unlabeled split; some for train+unlabeled). */
size_t synco_dataset_num_labelled(const synco_dataset *ds);
const char *synco_dataset_format(const synco_dataset *ds);    /* "imagefolder", "cifar10", ... */
size_t synco_dataset_skipped(const synco_dataset *ds);        /* images skipped by skip_bad */
/* A name for image i: its file's path for an ImageFolder, else "<format>:<index>" written to buf (n bytes). */
const char *synco_dataset_item_name(const synco_dataset *ds, size_t i, char *buf, size_t n);

/* What the open noticed but did not refuse (a symlink loop skipped, CIFAR batches missing): NULL, or one
 * warning per line, for the caller to show. */
const char *synco_dataset_warnings(const synco_dataset *ds);
/* Decodes image i into img (growing img->rgb with realloc as needed; start from a zeroed synco_image). */
synco_status synco_dataset_get(const synco_dataset *ds, size_t i, synco_image *img);
void synco_image_free(synco_image *img);
/* Decodes a JPEG or PNG held in memory into img (RGB; grayscale, palette and alpha converted as PIL's
 * convert("RGB") does). `name` (the file) is used in the error message. */
synco_status synco_image_decode(synco_image *img, const uint8_t *bytes, size_t n, const char *name);

/* ---- augmentation ----------------------------------------------------------------------------- */
typedef enum {
  SYNCO_AUG_MOCO_V2 = 0,  /* aug-plus: RandomResizedCrop(0.2,1) + p0.8 ColorJitter(.4,.4,.4,.1) + p0.2 gray
                             + (blur p0.5 if enabled) + flip */
  SYNCO_AUG_MOCO_V1,      /* MoCo v1: RandomResizedCrop(0.2,1) + RandomGrayscale(0.2) + ColorJitter(.4,.4,.4,.4) + flip */
  SYNCO_AUG_CROP_FLIP,    /* linear-probe training: RandomResizedCrop(0.08,1) + flip */
  SYNCO_AUG_EVAL,         /* evaluation: resize shorter side to size/0.875 and center crop (identity when the
                             image already has the target size) */
} synco_aug_kind;

typedef struct {
  synco_aug_kind kind;
  int size;               /* output side (32 for CIFAR, 224 for ImageNet) */
  int blur;               /* GaussianBlur p = 0.5, sigma ~ U(0.1, 2.0) (aug-plus on large images) */
  float mean[3], std[3];  /* Normalize */
} synco_aug_config;

/* Applies the augmentation to img, writing a normalized float image [3, size, size] (plain CHW) to out.
 * All randomness comes from r. scratch: at least synco_augment_scratch_bytes(img, cfg) bytes. */
size_t synco_augment_scratch_bytes(int w, int h, const synco_aug_config *cfg);
synco_status synco_augment(float *out, const synco_image *img, const synco_aug_config *cfg, synco_rng *r,
                           void *scratch);

/* ---- loader ------------------------------------------------------------------------------------ */
typedef struct {
  int batch;              /* per rank */
  int views;              /* 1 or 2 (two independently augmented views of each image) */
  int threads;            /* worker threads (<= 0: all cores) */
  int prefetch;           /* batches queued ahead (>= 2) */
  int shuffle;            /* per-epoch permutation keyed by (seed, epoch) */
  int drop_last;          /* drop the last incomplete batch (training); else it is returned short */
  uint64_t seed;
  int rank, world;        /* sharding for distributed runs: rank takes every world-th sample of the order */
  synco_aug_config aug;
  /* MoCo's shuffle-BN by indices (ssl/moco.h, synco_moco_step_shuffled): with key_passes 1 or 2 (and drop_last),
   * each batch also holds xk[p], this rank's rows of the global batch shuffled into key_order's order for pass p:
   * for pass 0 view 1 (AUG_K) of each image, for pass 1 view 0 (AUG_Q). Every rank decodes and augments those
   * images itself, bit for bit as their own rank does for its views, so no image crosses between ranks (which costs
   * a decode per key image that is another rank's). key_order (called from the worker threads) fills perm
   * [world·batch] for the batch `step` of epoch `epoch`. */
  int key_passes;
  void (*key_order)(void *ctx, int epoch, int step, int pass, uint32_t *perm);
  void *key_ctx;
} synco_loader_config;

typedef struct {
  int n;                  /* images in this batch (== batch unless the last, short one) */
  float *x[2];            /* views: [n, 3, size, size] plain fp32; x[1] NULL with one view */
  float *xk[2];           /* key_passes > 0: the shuffled key images of pass 0 and 1 (see above); else NULL */
  int *labels;            /* [n], -1 if unlabelled */
  uint32_t *indices;      /* [n] dataset indices */
  int step;               /* index of this batch within the epoch */
} synco_batch;

typedef struct synco_loader synco_loader;

synco_status synco_loader_create(synco_loader **out, const synco_dataset *ds, const synco_loader_config *cfg);
void synco_loader_free(synco_loader *ld);
int synco_loader_steps_per_epoch(const synco_loader *ld);
/* Starts (or restarts) an epoch at batch `first_step` (resume mid-epoch). Output is identical for any number
 * of threads: sample i of epoch e is augmented with streams keyed by (seed, e, i, AUG_Q/AUG_K). */
synco_status synco_loader_start_epoch(synco_loader *ld, int epoch, int first_step);
/* Next batch of the epoch, in order; returns SYNCO_OK with b->n == 0 at the end of the epoch. The batch's
 * memory stays valid until the next call. Decode errors surface here with the file named. */
synco_status synco_loader_next(synco_loader *ld, synco_batch *b);
/* What the loader did since the epoch started, read by the consumer's thread between batches. */
typedef struct {
  double wait_s;   /* seconds synco_loader_next waited for a batch: how long the consumer (a training step) sat idle
                    * for want of data, which more loader threads would shorten */
  double fill_s;   /* seconds the worker threads spent filling batches (decode + augment), summed over threads */
  long images;     /* images those batches held (each augmented into every view) */
  int threads;     /* worker threads */
} synco_loader_stats;
void synco_loader_stats_get(synco_loader *ld, synco_loader_stats *out);
/* Images per second one worker thread augments (images / fill_s; 0 before any batch): "pairs/s per thread" for two
 * views, measured on the machine as loaded during the run (compute threads competing included). */
double synco_loader_rate_per_thread(const synco_loader_stats *s);
/* Worker threads that would keep up with a consumer taking `demand` images per second when each makes `per_thread`
 * (at least 1; 0 when either is unknown, <= 0). */
int synco_loader_threads_needed(double demand, double per_thread);

#endif
