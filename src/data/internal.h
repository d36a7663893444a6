/* Internals of the data module shared by dataset.c, the format readers (fmt_*.c), decode.c, augment.c and
 * the tests: the dataset structure with its three kinds of storage, and the augmentation's individual
 * operations with explicit parameters (so each can be tested against torchvision/PIL on its own). */
#ifndef SYNCO_DATA_INTERNAL_H
#define SYNCO_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"

/* Largest image accepted by the decoders (pixels); guards allocations against hostile headers. */
#define SYNCO_MAX_PIXELS ((size_t)1 << 26)

/* ---- storage ---- */
typedef enum {
  SYNCO_DS_DECODED = 1, /* HWC uint8 pixels per image in memory */
  SYNCO_DS_FILES,       /* ImageFolder, encoded: the file is read and decoded per sample */
  SYNCO_DS_RAW,         /* fixed-size binary records (CIFAR, STL-10, idx), converted per sample */
} synco_ds_kind;

typedef enum { SYNCO_RAW_PLANAR = 1, SYNCO_RAW_PLANAR_COLMAJOR, SYNCO_RAW_GRAY } synco_raw_layout;

/* One file's worth of records: memory either mmap'ed (map) or malloc'ed (owned). */
typedef struct {
  const uint8_t *base;
  size_t count;
  void *map;
  size_t map_len;
  uint8_t *owned;
} synco_ds_segment;

#define SYNCO_DS_MAX_SEGMENTS 8

struct synco_dataset {
  char format[16];
  char *root;
  synco_ds_kind kind;
  size_t n;
  int num_classes;
  char **class_names;
  int *labels;          /* [n], -1 when unlabelled */
  size_t skipped;
  char *warnings;       /* NULL, or lines for the user (synco_ds_warn) */
  int nwarnings;
  /* SYNCO_DS_DECODED */
  uint8_t **pix;        /* [n] HWC */
  int *w, *h;           /* [n] */
  /* SYNCO_DS_FILES */
  char **paths;         /* [n] */
  /* SYNCO_DS_RAW */
  synco_ds_segment seg[SYNCO_DS_MAX_SEGMENTS];
  int nseg;
  size_t rec_bytes, pix_offset;
  int raw_w, raw_h;
  synco_raw_layout layout;
};

/* dataset.c helpers used by the format readers */
synco_dataset *synco_ds_new(const char *format, const char *root);
synco_status synco_ds_set_classes(synco_dataset *ds, const char *const *names, int n);
/* Adds a line to the dataset's warnings (the first few are kept, then a count). */
void synco_ds_warn(synco_dataset *ds, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads a whole file (gzip-compressed files are inflated when gz != 0); only a regular file (base/file_read.h). */
synco_status synco_read_file(const char *path, int gz, uint8_t **buf, size_t *n);
/* Maps a regular file read-only (falls back to reading it). */
synco_status synco_ds_map_file(synco_ds_segment *seg, const char *path, size_t *len);
int synco_path_is_dir(const char *path);
/* Something other than a folder is at path: a regular file, or a FIFO or device that the format's reader then
 * refuses with the file named (base/file_read.h), rather than the format going unrecognized. */
int synco_path_is_file(const char *path);

synco_status synco_fmt_imagefolder_open(synco_dataset **out, const char *root, const synco_dataset_options *opt);
synco_status synco_fmt_cifar_open(synco_dataset **out, const char *path, const synco_dataset_options *opt);
synco_status synco_fmt_stl10_open(synco_dataset **out, const char *path, const synco_dataset_options *opt);
synco_status synco_fmt_idx_open(synco_dataset **out, const char *path, const synco_dataset_options *opt);
/* Recognizers: does `path` (file or folder) look like this format? */
int synco_fmt_cifar_detect(const char *path);
int synco_fmt_stl10_detect(const char *path);
int synco_fmt_idx_detect(const char *path);

/* ---- augmentation operations (augment.c), on planar float images in [0,1] ---- */
/* Every random choice of one view, drawn up front by synco_aug_sample. */
typedef struct {
  int crop_x, crop_y, crop_w, crop_h;   /* RandomResizedCrop box (torchvision's j, i, w, h) */
  int jitter;                           /* ColorJitter applied */
  int order[4];                         /* 0 brightness, 1 contrast, 2 saturation, 3 hue */
  float brightness, contrast, saturation, hue;
  int gray;                             /* RandomGrayscale applied */
  int blur;                             /* GaussianBlur applied */
  float sigma;
  int flip;
} synco_aug_params;

void synco_aug_sample(synco_aug_params *p, int w, int h, const synco_aug_config *cfg, synco_rng *r);
/* torchvision RandomResizedCrop.get_params (10 tries, then the central crop clamped to the ratio range). */
void synco_aug_sample_crop(int w, int h, float scale_lo, float scale_hi, synco_rng *r, int *x, int *y, int *cw,
                           int *ch);
/* Applies fixed parameters (synco_augment = sample + apply). */
synco_status synco_aug_apply(float *out, const synco_image *img, const synco_aug_config *cfg,
                             const synco_aug_params *p, void *scratch);

/* PIL's Image.resize(BILINEAR) of the crop (cx, cy, cw, ch) of src (w x h, HWC) to out_w x out_h, bit-exact
 * (fixed point, horizontal pass then vertical, each rounded to uint8 as PIL does; antialiased when
 * shrinking because the filter support widens with the scale), evaluating only the window
 * (ox, oy, win_w, win_h) of the output. dst: win_w*win_h*3 HWC. scratch: synco_aug_resample_scratch bytes. */
size_t synco_aug_resample_scratch(int cw, int ch, int out_w, int out_h, int win_w, int win_h);
void synco_aug_resample(uint8_t *dst, const uint8_t *src, int w, int cx, int cy, int cw, int ch, int out_w,
                        int out_h, int ox, int oy, int win_w, int win_h, void *scratch);

/* torchvision.transforms.functional tensor ops on CHW planes of n = h*w floats each. */
void synco_aug_brightness(float *chw, size_t n, float f);
void synco_aug_contrast(float *chw, size_t n, float f);
void synco_aug_saturation(float *chw, size_t n, float f);
void synco_aug_hue(float *chw, size_t n, float f);
/* RandomGrayscale: ITU-R 601-2 luma replicated to the 3 planes. */
void synco_aug_grayscale(float *chw, size_t n);
/* PIL ImageFilter.GaussianBlur(radius=sigma): 3 box-blur passes per axis of PIL's extended-box radius in
 * PIL's fixed point, on the image rounded to uint8 (as PIL holds it). tmp: w*h + max(w,h) + 64 bytes. */
void synco_aug_blur(float *chw, int w, int h, float sigma, uint8_t *tmp);
/* PIL's extended box radius for one of `passes` passes approximating a Gaussian of sigma. */
float synco_aug_box_radius(float sigma, int passes);

/* Reads the header of the image file at path (JPEG or PNG), nothing more, and judges it as synco_image_decode would:
 * the format, the size against the decoders' limits, and the size against the file's bytes (a header claiming
 * more pixels than its data could hold, e.g. 8192x8192 patched onto a 32x32 JPEG). *w, *h: the image's size. */
synco_status synco_image_probe_file(const char *path, int *w, int *h);

/* Sizes img for a w x h RGB image (growing its buffer as needed) and sets img->w, img->h. */
synco_status synco_image_reserve(synco_image *img, int w, int h);

#endif
