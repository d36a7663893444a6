/* The public model API of include/synco.h: an opaque handle over a backend and a backbone-only encoder in
 * evaluation mode, loaded from an export or a checkpoint, plus the decoding and evaluation transform of src/data,
 * so that a program linked against libsynco gets exactly the features `synco embed` writes. The handle owns one
 * input batch and one decode/transform scratch area that grow on demand, so encoding many files of one size
 * allocates only on the first. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/rng.h"
#include "base/file_read.h"
#include "base/status.h"
#include "data/data.h"
#include "nn/encoder_weights.h"
#include "nn/encoder.h"
#include "synco.h"
#include "tensor/backend.h"

struct synco_model {
  synco_backend *be;
  synco_encoder *enc;
  int batch, size, dim;
  synco_aug_config aug;   /* SYNCO_AUG_EVAL at the model's size */
  float *x;               /* one transformed image [3, S, S] */
  synco_image img;        /* decoded pixels, grown by the decoder */
  uint8_t *file;          /* encoded bytes of the last file */
  size_t file_cap;
  void *scratch;
  size_t scratch_cap;
};

/* The rule of synco_cli_norm_stats (src/cli/common.c), which `synco embed` uses: CIFAR's statistics for images
 * of at most 64 pixels (MoCo's CIFAR demo), ImageNet's otherwise. */
static void norm_stats(int image_size, float mean[3], float std[3]) {
  static const float cifar_mean[3] = {0.4914f, 0.4822f, 0.4465f}, cifar_std[3] = {0.2023f, 0.1994f, 0.2010f};
  static const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};
  memcpy(mean, image_size <= 64 ? cifar_mean : in_mean, 3 * sizeof(float));
  memcpy(std, image_size <= 64 ? cifar_std : in_std, 3 * sizeof(float));
}

synco_status synco_model_load(synco_model **out, const char *path, int max_batch) {
  if (!out || !path) return synco_fail(SYNCO_ERR_ARG, "synco_model_load: NULL argument");
  *out = NULL;
  if (max_batch < 1) return synco_fail(SYNCO_ERR_ARG, "synco_model_load: max_batch must be >= 1, got %d", max_batch);
  synco_encoder_config cfg;
  int image_size = 0;
  SYNCO_TRY(synco_weights_read_config(path, &cfg, &image_size));
  if (image_size <= 0) image_size = cfg.cifar_stem ? 32 : 224;
  cfg.head = 0;
  cfg.bn_splits = 1;
  if (cfg.dim <= 0) cfg.dim = 128;
  synco_model *m = synco_calloc(1, sizeof *m);
  if (!m) return SYNCO_ERR_NOMEM;
  synco_status s = synco_backend_create("auto", &m->be);
  if (!s) s = synco_encoder_create(&m->enc, m->be, &cfg, max_batch, image_size, 0);
  if (!s) s = synco_weights_load(m->enc, path, "query", 0);
  if (!s) {
    m->batch = max_batch;
    m->size = image_size;
    m->dim = synco_encoder_feature_dim(m->enc);
    m->aug.kind = SYNCO_AUG_EVAL;
    m->aug.size = image_size;
    norm_stats(image_size, m->aug.mean, m->aug.std);
    m->x = synco_malloc((size_t)3 * image_size * image_size * sizeof(float));
    if (!m->x) s = SYNCO_ERR_NOMEM;
  }
  if (s) {
    synco_model_free(m);
    return s;
  }
  *out = m;
  return SYNCO_OK;
}

void synco_model_free(synco_model *m) {
  if (!m) return;
  synco_encoder_free(m->enc);
  if (m->be) synco_backend_destroy(m->be);
  synco_image_free(&m->img);
  free(m->x);
  free(m->file);
  free(m->scratch);
  free(m);
}

int synco_model_feature_dim(const synco_model *m) { return m ? m->dim : 0; }
int synco_model_image_size(const synco_model *m) { return m ? m->size : 0; }

void synco_model_norm_stats(const synco_model *m, float mean[3], float std[3]) {
  norm_stats(m ? m->size : 224, mean, std);
}

synco_status synco_model_encode(synco_model *m, const float *images, int n, float *features) {
  if (!m || (n > 0 && (!images || !features)))
    return synco_fail(SYNCO_ERR_ARG, "synco_model_encode: NULL argument");
  if (n < 0) return synco_fail(SYNCO_ERR_ARG, "synco_model_encode: negative image count %d", n);
  const size_t in = (size_t)3 * m->size * m->size;
  for (int i = 0; i < n; i += m->batch) {
    const int k = n - i < m->batch ? n - i : m->batch;
    SYNCO_TRY(synco_encoder_features(m->enc, features + (size_t)i * m->dim, images + (size_t)i * in, k));
  }
  return SYNCO_OK;
}

/* Transforms the image held in m->img and encodes it. */
static synco_status encode_img(synco_model *m, float *features) {
  const size_t need = synco_augment_scratch_bytes(m->img.w, m->img.h, &m->aug);
  if (need > m->scratch_cap) {
    free(m->scratch);
    m->scratch_cap = 0;
    m->scratch = synco_malloc(need);
    if (!m->scratch) return SYNCO_ERR_NOMEM;
    m->scratch_cap = need;
  }
  synco_rng r = synco_rng_make(0, 0, 0, SYNCO_RNG_EVAL); /* the evaluation transform draws nothing */
  SYNCO_TRY(synco_augment(m->x, &m->img, &m->aug, &r, m->scratch));
  return synco_encoder_features(m->enc, features, m->x, 1);
}

synco_status synco_model_encode_rgb(synco_model *m, const uint8_t *rgb, int width, int height, float *features) {
  if (!m || !rgb || !features) return synco_fail(SYNCO_ERR_ARG, "synco_model_encode_rgb: NULL argument");
  if (width < 1 || height < 1 || width > 65535 || height > 65535)
    return synco_fail(SYNCO_ERR_ARG, "synco_model_encode_rgb: bad image size %dx%d", width, height);
  /* A borrowed view: the transform only reads the pixels. */
  synco_image view = {.w = width, .h = height, .rgb = (uint8_t *)rgb, .cap = 0};
  synco_image own = m->img;
  m->img = view;
  synco_status s = encode_img(m, features);
  m->img = own;
  return s;
}

synco_status synco_model_encode_file(synco_model *m, const char *path, float *features) {
  if (!m || !path || !features) return synco_fail(SYNCO_ERR_ARG, "synco_model_encode_file: NULL argument");
  FILE *f = synco_fopen_read(path, "an image file", NULL); /* not a FIFO or a device: they never end */
  if (!f) return SYNCO_ERR_IO;
  size_t n = 0;
  synco_status s = SYNCO_OK;
  for (;;) {
    if (n == m->file_cap) {
      const size_t cap = m->file_cap ? 2 * m->file_cap : 1 << 16;
      uint8_t *p = realloc(m->file, cap);
      if (!p) {
        s = synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
        break;
      }
      m->file = p;
      m->file_cap = cap;
    }
    const size_t got = fread(m->file + n, 1, m->file_cap - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) s = synco_fail(SYNCO_ERR_IO, "%s: read error: %s", path, strerror(errno));
      break;
    }
  }
  fclose(f);
  if (s) return s;
  SYNCO_TRY(synco_image_decode(&m->img, m->file, n, path));
  return encode_img(m, features);
}
