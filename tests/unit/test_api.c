/* The public model API of include/synco.h: an export loaded through synco_model_load gives the features of the
 * encoder that wrote it (normalized batches of any size, files and RGB buffers through the evaluation transform),
 * and damaged weight files (a tensor of the wrong shape or dtype, a missing tensor, metadata that disagrees with
 * the tensors or is invalid) are refused with a message naming the file and the tensor, never crash. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/registry.h"
#include "base/rng.h"
#include "data/data.h"
#include "nn/encoder_weights.h"
#include "io/safetensors.h"
#include "nn/encoder.h"
#include "synco.h"
#include "test_util.h"

#define S 32
static const char *IMAGE = "data/cifar10-small/val/airplane/4500.jpg";

enum { KEEP, WRONG_SHAPE, WRONG_DTYPE, OMIT };

/* Writes enc's weights as an export, with `name` damaged as `how`, and the given "synco.encoder" metadata. */
static void write_export(synco_encoder *enc, const char *path, const char *meta, const char *name, int how) {
  synco_st_writer *w = synco_st_writer_new();
  int np = 0, nb = 0;
  const synco_param_view *pv = synco_encoder_param_views(enc, &np), *bv = synco_encoder_buffer_views(enc, &nb);
  for (int i = 0; i < np + nb; i++) {
    const synco_param_view *v = i < np ? &pv[i] : &bv[i - np];
    const float *data = (i < np ? synco_encoder_params(enc) : synco_encoder_buffers(enc)) + v->offset;
    int64_t shape[4];
    for (int d = 0; d < v->ndim; d++) shape[d] = v->shape[d];
    synco_st_dtype dt = SYNCO_ST_F32;
    if (name && !strcmp(v->name, name)) {
      if (how == OMIT) continue;
      if (how == WRONG_DTYPE) dt = SYNCO_ST_I32;
      if (how == WRONG_SHAPE) {
        shape[0] = v->shape[1];
        shape[1] = v->shape[0];
      }
    }
    CHECK_OK(synco_st_add(w, v->name, dt, v->ndim, shape, data));
  }
  if (meta) CHECK_OK(synco_st_set_meta(w, "synco.encoder", meta));
  CHECK_OK(synco_st_write(w, path));
  synco_st_writer_free(w);
}

/* synco_model_load must fail with `code` and a message holding every needle. */
static void expect_refused(const char *path, synco_status code, const char *needle1, const char *needle2) {
  synco_model *m = (synco_model *)1;
  const synco_status s = synco_model_load(&m, path, 2);
  CHECK(s == code);
  CHECK(m == NULL);
  if (s == SYNCO_OK) synco_model_free(m);
  const char *msg = synco_last_error();
  if (!strstr(msg, needle1) || (needle2 && !strstr(msg, needle2))) {
    fprintf(stderr, "message '%s' lacks '%s' / '%s'\n", msg, needle1, needle2 ? needle2 : "");
    synco_test_failures++;
  }
}

int main(void) {
  char path[] = "/tmp/synco_test_api_XXXXXX";
  close(mkstemp(path));
  synco_backend *be = NULL;
  synco_encoder *enc = NULL;
  const synco_encoder_config cfg = {.depth = 18, .width = 4, .cifar_stem = 1, .head = 0, .mlp = 1, .dim = 16, .bn_splits = 1};
  CHECK_OK(synco_backend_create("ref", &be));
  CHECK_OK(synco_encoder_create(&enc, be, &cfg, 4, S, 7));
  /* Non-trivial BN statistics, so that eval mode is not the identity. */
  float *buf = synco_encoder_buffers(enc);
  int nb = 0;
  const synco_param_view *bv = synco_encoder_buffer_views(enc, &nb);
  for (int i = 0; i < nb; i++) {
    const int var = strstr(bv[i].name, "running_var") != NULL;
    synco_test_fill(buf + bv[i].offset, bv[i].numel, 100 + (unsigned)i, var ? 0.5f : -0.2f, var ? 1.5f : 0.2f);
  }
  char *meta = synco_weights_config_json(enc);
  CHECK(meta != NULL);
  synco_st_writer *w = synco_st_writer_new();
  CHECK_OK(synco_weights_add(w, enc, ""));
  CHECK_OK(synco_st_write(w, path));
  synco_st_writer_free(w);

  /* ---- a good export ---- */
  synco_model *m = NULL;
  CHECK_OK(synco_model_load(&m, path, 3));
  const int d = synco_encoder_feature_dim(enc);
  CHECK(m && synco_model_feature_dim(m) == d && d == 32);
  CHECK(m && synco_model_image_size(m) == S);
  float mean[3], std[3];
  synco_model_norm_stats(m, mean, std);
  CHECK(fabsf(mean[0] - 0.4914f) < 1e-6f && fabsf(std[2] - 0.2010f) < 1e-6f); /* CIFAR's, as synco embed */

  /* Five normalized images: the model splits them into forwards of 3 and 2. */
  const int n = 5;
  float *x = malloc((size_t)n * 3 * S * S * sizeof(float));
  float *got = malloc((size_t)n * d * sizeof(float)), *ref = malloc((size_t)n * d * sizeof(float));
  synco_test_fill(x, (size_t)n * 3 * S * S, 1, -2.f, 2.f);
  CHECK_OK(synco_model_encode(m, x, n, got));
  CHECK_OK(synco_encoder_features(enc, ref, x, 4));
  CHECK_OK(synco_encoder_features(enc, ref + 4 * d, x + (size_t)4 * 3 * S * S, 1));
  CHECK_CLOSE("encode vs reference encoder", got, ref, (size_t)n * d, 1e-4, 1e-4);
  CHECK_OK(synco_model_encode(m, x, 0, got));

  /* A file: decoded and transformed as synco embed does (eval transform, CIFAR statistics). */
  FILE *f = fopen(IMAGE, "rb");
  CHECK(f != NULL);
  uint8_t bytes[1 << 16];
  const size_t nbytes = f ? fread(bytes, 1, sizeof bytes, f) : 0;
  if (f) fclose(f);
  synco_image img = {0};
  CHECK_OK(synco_image_decode(&img, bytes, nbytes, IMAGE));
  synco_aug_config aug = {.kind = SYNCO_AUG_EVAL, .size = S};
  synco_model_norm_stats(m, aug.mean, aug.std);
  void *scratch = malloc(synco_augment_scratch_bytes(img.w, img.h, &aug));
  synco_rng r = synco_rng_make(0, 0, 0, SYNCO_RNG_EVAL);
  CHECK_OK(synco_augment(x, &img, &aug, &r, scratch));
  CHECK_OK(synco_encoder_features(enc, ref, x, 1));
  CHECK_OK(synco_model_encode_file(m, IMAGE, got));
  CHECK_CLOSE("encode_file vs decode + eval transform + reference", got, ref, (size_t)d, 1e-4, 1e-4);
  CHECK_OK(synco_model_encode_rgb(m, img.rgb, img.w, img.h, got + d));
  CHECK_CLOSE("encode_rgb vs encode_file", got + d, got, (size_t)d, 0, 0);
  /* A larger, non-square image goes through resize + centre crop. */
  uint8_t *big = malloc(48 * 40 * 3);
  for (int i = 0; i < 48 * 40 * 3; i++) big[i] = (uint8_t)(i * 7);
  CHECK_OK(synco_model_encode_rgb(m, big, 48, 40, got));
  int finite = 1;
  for (int j = 0; j < d; j++) finite &= isfinite(got[j]) != 0;
  CHECK(finite);

  /* Misuse and unreadable inputs. */
  CHECK(synco_model_encode_file(m, "/nonexistent/x.jpg", got) == SYNCO_ERR_IO);
  CHECK(strstr(synco_last_error(), "/nonexistent/x.jpg") != NULL);
  CHECK(synco_model_encode_file(m, path, got) == SYNCO_ERR_FORMAT); /* a safetensors file is no image */
  CHECK(strstr(synco_last_error(), path) != NULL);
  CHECK(synco_model_encode_rgb(m, big, 0, 40, got) == SYNCO_ERR_ARG);
  CHECK(synco_model_encode(m, x, -1, got) == SYNCO_ERR_ARG);
  synco_model_free(m);
  synco_model_free(NULL);
  m = (synco_model *)1;
  CHECK(synco_model_load(&m, path, 0) == SYNCO_ERR_ARG && m == NULL);
  expect_refused("/nonexistent/enc.safetensors", SYNCO_ERR_IO, "/nonexistent/enc.safetensors", NULL);

  /* ---- damaged exports ---- */
  write_export(enc, path, meta, "layer2.0.conv1.weight", WRONG_SHAPE);   /* [8,4,3,3] stored as [4,8,3,3] */
  expect_refused(path, SYNCO_ERR_FORMAT, "'layer2.0.conv1.weight' has shape [4,8,3,3], expected [8,4,3,3]", path);
  write_export(enc, path, meta, "bn1.weight", WRONG_DTYPE);
  expect_refused(path, SYNCO_ERR_FORMAT, "'bn1.weight' has dtype I32", path);
  write_export(enc, path, meta, "layer4.1.bn2.running_var", OMIT);
  expect_refused(path, SYNCO_ERR_FORMAT, "missing", "layer4.1.bn2.running_var");
  write_export(enc, path, "{\"depth\":18,\"width\":8,\"cifar_stem\":1,\"image_size\":32}", NULL, KEEP);
  expect_refused(path, SYNCO_ERR_FORMAT, "says width 8 with the CIFAR stem, but tensor 'conv1.weight' has shape [4,3,3,3]", path);
  write_export(enc, path, "{\"depth\":50,\"width\":4,\"cifar_stem\":1,\"image_size\":32}", NULL, KEEP);
  expect_refused(path, SYNCO_ERR_FORMAT, "says depth 50, but the tensors are those of a ResNet-18", path);
  write_export(enc, path, "{\"depth\":", NULL, KEEP);
  expect_refused(path, SYNCO_ERR_FORMAT, "not valid JSON", path);
  /* Invalid architectures in the metadata are refused by whoever checks them first; never a crash. */
  const char *bad_arch[] = {"{\"depth\":19,\"width\":4}", "{\"depth\":18,\"width\":0}", "{\"depth\":18,\"width\":-4}",
                            "{\"depth\":18,\"width\":4,\"image_size\":0}", "{\"depth\":18,\"width\":4,\"image_size\":-5}"};
  for (size_t i = 0; i < sizeof bad_arch / sizeof *bad_arch; i++) {
    write_export(enc, path, bad_arch[i], NULL, KEEP);
    m = NULL;
    const synco_status s = synco_model_load(&m, path, 2);
    if (s == SYNCO_OK) {
      fprintf(stderr, "metadata %s accepted\n", bad_arch[i]);
      synco_test_failures++;
      synco_model_free(m);
    } else {
      CHECK(strlen(synco_last_error()) > 0);
    }
  }

  unlink(path);
  free(meta);
  free(x);
  free(got);
  free(ref);
  free(big);
  free(scratch);
  synco_image_free(&img);
  synco_encoder_free(enc);
  synco_backend_destroy(be);
  return synco_test_finish("test_api");
}
