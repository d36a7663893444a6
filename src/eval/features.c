/* Frozen-backbone features of a whole dataset; see features.h. */
#include "eval/features.h"

#include <string.h>

#include "base/status.h"

synco_status synco_features_compute(float *feats, int *labels, synco_encoder *enc, const synco_dataset *ds,
                                    const float mean[3], const float std[3], int workers) {
  synco_loader_config lc = {0};
  lc.batch = synco_encoder_batch(enc);
  lc.views = 1;
  lc.threads = workers;
  lc.prefetch = 2;
  lc.shuffle = 0;
  lc.drop_last = 0;
  lc.world = 1;
  lc.aug.kind = SYNCO_AUG_EVAL;
  lc.aug.size = synco_encoder_image_size(enc);
  memcpy(lc.aug.mean, mean, sizeof lc.aug.mean);
  memcpy(lc.aug.std, std, sizeof lc.aug.std);
  synco_loader *ld = NULL;
  SYNCO_TRY(synco_loader_create(&ld, ds, &lc));
  const int d = synco_encoder_feature_dim(enc);
  synco_status s = synco_loader_start_epoch(ld, 0, 0);
  synco_batch b;
  size_t done = 0;
  while (!s) {
    s = synco_loader_next(ld, &b);
    if (s || b.n == 0) break;
    for (int i = 0; i < b.n && !s; i++)
      if (b.indices[i] != done + (size_t)i) s = synco_fail(SYNCO_ERR_ARG, "feature loader returned samples out of order");
    if (!s) s = synco_encoder_features(enc, feats + done * (size_t)d, b.x[0], b.n);
    if (!s && labels) memcpy(labels + done, b.labels, (size_t)b.n * sizeof *labels);
    done += (size_t)b.n;
  }
  synco_loader_free(ld);
  if (!s && done != synco_dataset_size(ds))
    s = synco_fail(SYNCO_ERR_ARG, "encoded %zu of %zu images", done, synco_dataset_size(ds));
  return s;
}
