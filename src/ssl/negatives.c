/* SynCo synthetic negatives: the configuration's checks and the draws' life cycle in backend memory; the draws,
 * the hard-set selection, the synthetic logits and their backward are the backend's ops (the reference and CPU
 * implementation is backend/ref/ref_negatives.c). See negatives.h for the contract and docs/method.md for the method. */
#include "ssl/negatives.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

int synco_negatives_total(const synco_negatives_config *cfg) {
  long long t = 0; /* six ints can sum past INT_MAX (--n1 2147483647 once gave S = -2147483621) */
  for (int i = 0; i < SYNCO_NEG_TYPES; i++) t += cfg->n[i] > 0 ? cfg->n[i] : 0;
  return t > INT_MAX ? INT_MAX : (int)t;
}

void synco_negatives_scale_defaults(synco_negatives_config *cfg, int K, int n_hard_given, const int given[SYNCO_NEG_TYPES]) {
  if (!n_hard_given) {
    const int quarter = K / 4 > 1 ? K / 4 : 1;
    cfg->n_hard = quarter < SYNCO_NEG_HARD_DEFAULT ? quarter : SYNCO_NEG_HARD_DEFAULT;
  }
  for (int t = 0; t < SYNCO_NEG_TYPES; t++)
    if (!given[t] && cfg->n[t] > cfg->n_hard) cfg->n[t] = cfg->n_hard > 0 ? cfg->n_hard : 0;
}

synco_status synco_negatives_check(const synco_negatives_config *cfg, int K) {
  if (!cfg) return synco_fail(SYNCO_ERR_ARG, "negatives: no config");
  int maxn = 0;
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) {
    if (cfg->n[t] < 0) return synco_fail(SYNCO_ERR_ARG, "negatives: n%d = %d, expected >= 0", t + 1, cfg->n[t]);
    if (cfg->n[t] > maxn) maxn = cfg->n[t];
  }
  if (maxn == 0) return SYNCO_OK;
  if (cfg->n_hard < 1 || cfg->n_hard > K)
    return synco_fail(SYNCO_ERR_ARG, "negatives: n_hard = %d, expected 1..K (K = %d)", cfg->n_hard, K);
  if (maxn > cfg->n_hard)
    return synco_fail(SYNCO_ERR_ARG, "negatives: n_hard = %d is smaller than a synthetic count (%d)", cfg->n_hard,
                      maxn);
  if (!(cfg->sigma >= 0.f && isfinite(cfg->sigma)) || !(cfg->delta >= 0.f && isfinite(cfg->delta)) ||
      !(cfg->eta >= 0.f && isfinite(cfg->eta)))
    return synco_fail(SYNCO_ERR_ARG, "negatives: sigma, delta, eta must be finite and >= 0 (got %g, %g, %g)",
                      (double)cfg->sigma, (double)cfg->delta, (double)cfg->eta);
  return SYNCO_OK;
}

/* The shape of the draws for B queries of size dim against K queue rows on be, nothing allocated. */
static synco_status describe(synco_negatives_draws *d, synco_backend *be, const synco_negatives_config *cfg, int B,
                             int dim, int K) {
  memset(d, 0, sizeof *d);
  if (!be) return synco_fail(SYNCO_ERR_ARG, "negatives: no backend");
  if (B < 1 || dim < 1 || K < 1)
    return synco_fail(SYNCO_ERR_ARG, "negatives: B = %d, dim = %d, K = %d, expected all >= 1", B, dim, K);
  SYNCO_TRY(synco_negatives_check(cfg, K));
  d->be = be;
  d->B = B;
  d->dim = dim;
  d->K = K;
  d->total = synco_negatives_total(cfg);
  d->n_hard = d->total > 0 ? cfg->n_hard : 0;
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) d->n[t] = cfg->n[t];
  d->delta = cfg->delta;
  d->eta = cfg->eta;
  d->nthreads = be->threads(be);
  if (d->nthreads < 1) d->nthreads = 1;
  return SYNCO_OK;
}

/* Every array of d with its bytes (0: not allocated), as X(field, bytes): the draws, what the logits keep for the
 * backward, ‖Q_j‖², and the workspace the backend asks for (ws). One list for init, free and the memory plan. */
#define NEG_ARRAYS(X, d, ws)                                                                                       \
  X(pos[0], pos_bytes(d, 0)) X(pos[1], pos_bytes(d, 1)) X(pos[2], pos_bytes(d, 2)) X(pos[3], pos_bytes(d, 3))     \
  X(pos[4], pos_bytes(d, 4)) X(pos[5], pos_bytes(d, 5)) X(coef[0], coef_bytes(d, 0)) X(coef[1], coef_bytes(d, 1)) \
  X(coef[2], coef_bytes(d, 2)) X(noise, (size_t)(d)->B * (d)->n[3] * (d)->dim * sizeof(float))                   \
  X(hard, (size_t)(d)->B * (d)->n_hard * sizeof(int32_t))                                                        \
  X(inv_norm, (size_t)(d)->B * (d)->total * sizeof(float)) X(row_sq, (size_t)(d)->K * sizeof(float))            \
  X(sel, (ws)->sel) X(wpos, (ws)->wpos) X(sgn, (ws)->sgn) X(words, (ws)->words)

/* type t's positions: [B, n[t]], type 3 [B, n3, 2]; its coefficients (types 1-3): [B, n[t]] */
static size_t pos_bytes(const synco_negatives_draws *d, int t) {
  return (size_t)d->B * (size_t)d->n[t] * (t == 2 ? 2 : 1) * sizeof(int32_t);
}
static size_t coef_bytes(const synco_negatives_draws *d, int t) {
  return (size_t)d->B * (size_t)d->n[t] * sizeof(float);
}

synco_status synco_negatives_init(synco_negatives_draws *d, synco_backend *be, const synco_negatives_config *cfg,
                                  int B, int dim, int K) {
  SYNCO_TRY(describe(d, be, cfg, B, dim, K));
  if (d->total == 0) return SYNCO_OK;
  synco_negatives_workspace ws;
  const synco_status s = be->neg_workspace(be, d, &ws);
  if (s) {
    memset(d, 0, sizeof *d);
    return s;
  }
#define ALLOC(field, bytes) \
  if ((bytes) != 0 && !(d->field = be->alloc(be, (bytes)))) goto nomem;
  NEG_ARRAYS(ALLOC, d, &ws)
#undef ALLOC
  return SYNCO_OK;
nomem:
  synco_negatives_free(d);
  return synco_fail(SYNCO_ERR_NOMEM, "out of memory for the synthetic negatives of %d queries", B);
}

void synco_negatives_free(synco_negatives_draws *d) {
  if (!d || !d->be) return;
  synco_backend *be = d->be;
#define FREE(field, bytes) \
  if (d->field) be->free(be, d->field);
  NEG_ARRAYS(FREE, d, NULL)
#undef FREE
  memset(d, 0, sizeof *d);
}

synco_status synco_negatives_memory_plan(synco_backend *be, const synco_negatives_config *cfg, int B, int dim, int K,
                                         size_t *bytes) {
  *bytes = 0;
  synco_negatives_draws d;
  SYNCO_TRY(describe(&d, be, cfg, B, dim, K));
  if (d.total == 0) return SYNCO_OK;
  synco_negatives_workspace ws;
  SYNCO_TRY(be->neg_workspace(be, &d, &ws));
  *bytes = ws.scratch;
#define ADD(field, size) *bytes += (size);
  NEG_ARRAYS(ADD, &d, &ws)
#undef ADD
  return SYNCO_OK;
}

/* ---- the backend's ops ------------------------------------------------------------------------------- */

synco_status synco_negatives_draw_at(synco_negatives_draws *d, const synco_negatives_config *cfg, uint64_t seed,
                                     uint64_t step, uint64_t query0) {
  if (d->total == 0) return SYNCO_OK;
  return d->be->neg_draw(d->be, d, cfg, seed, step, query0);
}

synco_status synco_negatives_draw(synco_negatives_draws *d, const synco_negatives_config *cfg, int B, int dim,
                                  uint64_t seed, uint64_t step) {
  if (B != d->B || dim != d->dim)
    return synco_fail(SYNCO_ERR_ARG, "negatives: draw for B = %d, dim = %d but allocated for B = %d, dim = %d", B,
                      dim, d->B, d->dim);
  for (int t = 0; t < SYNCO_NEG_TYPES; t++)
    if (cfg->n[t] != d->n[t])
      return synco_fail(SYNCO_ERR_ARG, "negatives: n%d = %d but allocated for %d", t + 1, cfg->n[t], d->n[t]);
  return synco_negatives_draw_at(d, cfg, seed, step, 0);
}

synco_status synco_negatives_logits(synco_negatives_draws *d, float *syn, int ld_syn, const float *l_neg,
                                    int ld_lneg, const float *q, const float *queue, float T) {
  return d->be->neg_logits(d->be, d, syn, ld_syn, l_neg, ld_lneg, q, queue, T);
}

synco_status synco_negatives_backward(synco_negatives_draws *d, float *dq, float *g_raw, int ld_graw,
                                      const float *g_syn, int ld_gsyn, const float *q, float T) {
  if (d->total == 0) return SYNCO_OK;
  return d->be->neg_backward(d->be, d, dq, g_raw, ld_graw, g_syn, ld_gsyn, q, T);
}
