/* synco: self-supervised pretraining of image encoders with SynCo (MoCo-v2 + synthetic hard negatives).
 * The public C API. Internal modules live under src/ and are not installed. */
#ifndef SYNCO_H
#define SYNCO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SYNCO_OK = 0,
  SYNCO_ERR_ARG,          /* a bad argument or option */
  SYNCO_ERR_IO,           /* a file could not be opened, read or written */
  SYNCO_ERR_FORMAT,       /* a file's contents are malformed */
  SYNCO_ERR_NOMEM,        /* an allocation failed */
  SYNCO_ERR_BACKEND,      /* oneDNN / CUDA reported an error */
  SYNCO_ERR_NUMERIC,      /* a non-finite loss or value */
  SYNCO_ERR_UNSUPPORTED,  /* not available in this build or on this machine */
} synco_status;

/* Name of a status code. */
const char *synco_strerror(synco_status s);
/* The last error message recorded on this thread: one line naming the file and the problem. */
const char *synco_last_error(void);
/* Library version, "MAJOR.MINOR.PATCH". */
const char *synco_version(void);

/* ---- trained encoders: load one and compute image features ----------------------------------------------
 * A model is the backbone of an encoder saved by `synco export` (torchvision key names) or the query encoder of a
 * `synco pretrain` checkpoint, in evaluation mode (BN running statistics): its features are those `synco embed`
 * writes and torchvision computes from the same weights. A model is not thread-safe: use one per thread. Compute
 * threads follow OpenMP (OMP_NUM_THREADS). Every function returning a status leaves a message for
 * synco_last_error() on failure. */
typedef struct synco_model synco_model;

/* Loads the encoder in path for batches of up to max_batch images per forward pass (larger n are split). */
synco_status synco_model_load(synco_model **out, const char *path, int max_batch);
void synco_model_free(synco_model *m);
/* Length of one image's feature vector (512 for a ResNet-18, 2048 for a ResNet-50, scaled by width/64). */
int synco_model_feature_dim(const synco_model *m);
/* Side of the square input the encoder was trained on (32 for CIFAR, 224 for ImageNet). */
int synco_model_image_size(const synco_model *m);
/* The mean and standard deviation of the evaluation transform's Normalize (per RGB channel, on [0, 1] values). */
void synco_model_norm_stats(const synco_model *m, float mean[3], float std[3]);
/* Features of n images already transformed: images is [n, 3, S, S] float32 (S = image size, RGB planes,
 * normalized), features receives [n, feature_dim]. */
synco_status synco_model_encode(synco_model *m, const float *images, int n, float *features);
/* Features of one RGB image (interleaved HWC uint8, width x height) after the evaluation transform: resize of the
 * shorter side to S/0.875 and a centre crop of S (nothing when the image is already S x S), then Normalize. */
synco_status synco_model_encode_rgb(synco_model *m, const uint8_t *rgb, int width, int height, float *features);
/* Features of one JPEG or PNG file, decoded and transformed as synco_model_encode_rgb. */
synco_status synco_model_encode_file(synco_model *m, const char *path, float *features);

#ifdef __cplusplus
}
#endif
#endif
