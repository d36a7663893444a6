/* Writing a backbone + classifier as a torchvision-named safetensors file (see model_out.h). */
#include "eval/model_out.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "nn/encoder_weights.h"
#include "io/safetensors.h"

synco_status synco_model_out_write(const char *path, synco_encoder *enc, const float *w, const float *b, int classes,
                                   const char *const *class_names, const char *const *meta) {
  if (synco_encoder_cfg(enc)->head)
    return synco_fail(SYNCO_ERR_ARG, "%s: the encoder has a projection head; a classifier file holds the backbone only", path);
  const int d = synco_encoder_feature_dim(enc);
  synco_st_writer *wr = synco_st_writer_new();
  cJSON *names = cJSON_CreateArray();
  char *names_js = NULL;
  synco_status s = wr && names ? SYNCO_OK : synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  if (!s) s = synco_weights_add(wr, enc, "");
  const int wshape[2] = {classes, d}, bshape[1] = {classes};
  if (!s) s = synco_st_add_f32(wr, "fc.weight", w, 2, wshape);
  if (!s) s = synco_st_add_f32(wr, "fc.bias", b, 1, bshape);
  for (int c = 0; c < classes && !s; c++) {
    char num[16];
    snprintf(num, sizeof num, "%d", c);
    cJSON_AddItemToArray(names, cJSON_CreateString(class_names && class_names[c] ? class_names[c] : num));
  }
  if (!s && !(names_js = cJSON_PrintUnformatted(names))) s = synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  if (!s) s = synco_st_set_meta(wr, "synco.format", "classifier");
  if (!s) s = synco_st_set_meta(wr, "synco.classes", names_js);
  for (int i = 0; meta && meta[i] && meta[i + 1] && !s; i += 2) s = synco_st_set_meta(wr, meta[i], meta[i + 1]);
  if (!s) s = synco_st_write(wr, path);
  free(names_js);
  cJSON_Delete(names);
  synco_st_writer_free(wr);
  return s;
}

synco_status synco_model_out_check(const char *path, const char *input, const char *what) {
  if (!path[0]) return synco_fail(SYNCO_ERR_ARG, "%s: empty file name", what);
  struct stat so, si;
  if (stat(path, &so) == 0) {
    if (S_ISDIR(so.st_mode)) return synco_fail(SYNCO_ERR_ARG, "%s %s is a folder; give a file name (.safetensors)", what, path);
    if (input && stat(input, &si) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
      return synco_fail(SYNCO_ERR_ARG, "%s %s is the input model itself; write to another file", what, path);
  }
  char dir[1024];
  const char *slash = strrchr(path, '/');
  if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) > 0 ? (int)(slash - path) : 1, path);
  else snprintf(dir, sizeof dir, ".");
  struct stat sd;
  if (stat(dir, &sd) != 0 || !S_ISDIR(sd.st_mode))
    return synco_fail(SYNCO_ERR_ARG, "%s %s: folder %s does not exist", what, path, dir);
  if (access(dir, W_OK) != 0)
    return synco_fail(SYNCO_ERR_ARG, "%s %s: cannot write to folder %s: %s", what, path, dir, strerror(errno));
  return SYNCO_OK;
}
