/* Subsets, held-out splits and the index-list batcher (see subset.h). The batcher keeps one decode buffer and
 * one augmentation scratch area per OpenMP thread, grown on demand, so filling a batch allocates only when a
 * larger image than any before comes along. */
#include "eval/subset.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/status.h"

synco_status synco_label_spec_parse(const char *spec, double *fraction, int *per_class) {
  *fraction = 0;
  *per_class = 0;
  if (!spec || !*spec) return synco_fail(SYNCO_ERR_ARG, "empty label spec (expected e.g. 1%%, 10%% or 25)");
  char *end;
  errno = 0;
  size_t len = strlen(spec);
  if (spec[len - 1] == '%') {
    double p = strtod(spec, &end);
    if (errno || end != spec + len - 1 || !(p > 0) || p > 100)
      return synco_fail(SYNCO_ERR_ARG, "label spec '%s': a percentage must be in (0, 100]", spec);
    *fraction = p / 100.0;
    return SYNCO_OK;
  }
  long v = strtol(spec, &end, 10);
  if (errno || *end || v < 1 || v > 1000000000)
    return synco_fail(SYNCO_ERR_ARG, "label spec '%s': expected a percentage (1%%, 10%%) or images per class", spec);
  *per_class = (int)v;
  return SYNCO_OK;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

synco_status synco_subset_balanced(uint32_t **idx, size_t *count, const int *labels, size_t n, int C,
                                   double fraction, int per_class, uint64_t seed) {
  *idx = NULL;
  *count = 0;
  if (C <= 0 || (per_class <= 0 && !(fraction > 0 && fraction <= 1)))
    return synco_fail(SYNCO_ERR_ARG, "balanced subset: need classes and a fraction in (0, 1] or a count per class");
  size_t *nc = synco_calloc((size_t)C, sizeof(size_t));
  uint32_t *out = synco_malloc((n ? n : 1) * sizeof(uint32_t)), *cls = synco_malloc((n ? n : 1) * sizeof(uint32_t));
  if (!nc || !out || !cls) {
    free(nc), free(out), free(cls);
    return SYNCO_ERR_NOMEM;
  }
  for (size_t i = 0; i < n; i++)
    if (labels[i] >= 0 && labels[i] < C) nc[labels[i]]++;
  size_t m = 0;
  for (int c = 0; c < C; c++) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (labels[i] == c) cls[k++] = (uint32_t)i;
    size_t take = per_class > 0 ? (size_t)per_class : (size_t)llround(fraction * (double)nc[c]);
    if (per_class <= 0 && take < 1 && nc[c]) take = 1;
    if (take > k) take = k;
    synco_rng r = synco_rng_make(seed, (uint64_t)c, 0, SYNCO_RNG_SPLIT);
    synco_rng_shuffle(&r, cls, (uint32_t)k);
    memcpy(out + m, cls, take * sizeof(uint32_t));
    m += take;
  }
  qsort(out, m, sizeof(uint32_t), cmp_u32);
  free(nc), free(cls);
  *idx = out;
  *count = m;
  return SYNCO_OK;
}

synco_status synco_split_last_per_class(uint32_t **rest, size_t *n_rest, uint32_t **held, size_t *n_held,
                                        const int *labels, size_t n, int C, int per_class) {
  size_t *seen = synco_calloc((size_t)(C > 0 ? C : 1), sizeof(size_t)), *tot = synco_calloc((size_t)(C > 0 ? C : 1), sizeof(size_t));
  uint32_t *a = synco_malloc((n ? n : 1) * sizeof(uint32_t)), *h = synco_malloc((n ? n : 1) * sizeof(uint32_t));
  if (!seen || !tot || !a || !h) {
    free(seen), free(tot), free(a), free(h);
    return SYNCO_ERR_NOMEM;
  }
  for (size_t i = 0; i < n; i++)
    if (labels[i] >= 0 && labels[i] < C) tot[labels[i]]++;
  size_t na = 0, nh = 0;
  for (size_t i = 0; i < n; i++) {
    const int c = labels[i];
    int hold = 0;
    if (c >= 0 && c < C) {
      hold = seen[c] + (size_t)per_class >= tot[c];
      seen[c]++;
    }
    if (hold) h[nh++] = (uint32_t)i;
    else a[na++] = (uint32_t)i;
  }
  free(seen), free(tot);
  *rest = a, *n_rest = na, *held = h, *n_held = nh;
  return SYNCO_OK;
}

void synco_dataset_labels(const synco_dataset *ds, int *labels) {
  const size_t n = synco_dataset_size(ds);
  for (size_t i = 0; i < n; i++) labels[i] = synco_dataset_label(ds, i);
}

typedef struct {
  synco_image img;
  void *scratch;
  size_t cap;
} thread_buf;

struct synco_batcher {
  const synco_dataset *ds;
  synco_aug_config aug;
  int nt;
  thread_buf *tb;
};

synco_status synco_batcher_create(synco_batcher **out, const synco_dataset *ds, const synco_aug_config *aug) {
  synco_batcher *b = synco_calloc(1, sizeof *b);
  if (!b) return SYNCO_ERR_NOMEM;
  b->ds = ds;
  b->aug = *aug;
  b->nt = omp_get_max_threads();
  b->tb = synco_calloc((size_t)b->nt, sizeof(thread_buf));
  if (!b->tb) {
    free(b);
    return SYNCO_ERR_NOMEM;
  }
  *out = b;
  return SYNCO_OK;
}

void synco_batcher_free(synco_batcher *b) {
  if (!b) return;
  for (int t = 0; t < b->nt; t++) {
    synco_image_free(&b->tb[t].img);
    free(b->tb[t].scratch);
  }
  free(b->tb);
  free(b);
}

const synco_aug_config *synco_batcher_aug(const synco_batcher *b) { return &b->aug; }

synco_status synco_batcher_fill(synco_batcher *b, float *x, int *labels, const uint32_t *idx, int n, uint64_t seed,
                                int epoch, uint32_t purpose) {
  const size_t per = (size_t)3 * b->aug.size * b->aug.size;
  synco_status first = SYNCO_OK;
  int first_at = n;
  char msg[512] = "";
#pragma omp parallel for schedule(dynamic, 4) num_threads(b->nt)
  for (int i = 0; i < n; i++) {
    thread_buf *t = &b->tb[omp_get_thread_num()];
    synco_status s = synco_dataset_get(b->ds, idx[i], &t->img);
    if (!s) {
      size_t need = synco_augment_scratch_bytes(t->img.w, t->img.h, &b->aug);
      if (need > t->cap) {
        void *p = realloc(t->scratch, need);
        if (!p) s = synco_fail(SYNCO_ERR_NOMEM, "out of memory for augmentation scratch (%zu bytes)", need);
        else t->scratch = p, t->cap = need;
      }
    }
    if (!s) {
      synco_rng r = synco_rng_make(seed, (uint64_t)epoch, idx[i], purpose);
      s = synco_augment(x + (size_t)i * per, &t->img, &b->aug, &r, t->scratch);
    }
    if (labels) labels[i] = synco_dataset_label(b->ds, idx[i]);
    if (s) {
#pragma omp critical(synco_batcher_err)
      if (i < first_at) { /* report the first failing image, whatever the thread timing */
        first_at = i;
        first = s;
        snprintf(msg, sizeof msg, "%s", synco_last_error());
      }
    }
  }
  if (first) return synco_fail(first, "%s", msg);
  return SYNCO_OK;
}

synco_status synco_encode_subset(float *out, int *labels, synco_encoder *enc, synco_batcher *b, const uint32_t *idx,
                                 size_t n, uint64_t seed, int epoch, uint32_t purpose, int use_head,
                                 synco_progress *prog) {
  const int B = synco_encoder_batch(enc), S = b->aug.size;
  if (S != synco_encoder_image_size(enc))
    return synco_fail(SYNCO_ERR_ARG, "batcher makes %dx%d images, the encoder expects %d", S, S,
                      synco_encoder_image_size(enc));
  const int d = use_head ? synco_encoder_out_dim(enc) : synco_encoder_feature_dim(enc);
  float *x = synco_malloc((size_t)B * 3 * S * S * sizeof(float));
  uint32_t *ix = synco_malloc((size_t)B * sizeof(uint32_t));
  if (!x || !ix) {
    free(x), free(ix);
    return SYNCO_ERR_NOMEM;
  }
  synco_status s = SYNCO_OK;
  for (size_t i0 = 0; i0 < n && !s; i0 += B) {
    const int nb = (int)(n - i0 < (size_t)B ? n - i0 : (size_t)B);
    for (int i = 0; i < nb; i++) ix[i] = idx ? idx[i0 + i] : (uint32_t)(i0 + i);
    s = synco_batcher_fill(b, x, labels ? labels + i0 : NULL, ix, nb, seed, epoch, purpose);
    if (!s)
      s = use_head ? synco_encoder_forward(enc, out + i0 * d, x, nb, 0) : synco_encoder_features(enc, out + i0 * d, x, nb);
    if (prog) synco_progress_update(prog, (long)((i0 + nb + B - 1) / B), NULL);
  }
  free(x), free(ix);
  return s;
}
