/* synco analyze: the paper's analyses of one encoder on (held-out) images, written to DIR as metrics.json and
 * one PNG + SVG plot each:
 *  - proxy task: two MoCo-v2 views per image, q = normalize(f_q(view 1)), k = normalize(f_k(view 2)), negatives
 *    = the checkpoint's queue (without one: the keys of the other half of the images); accuracy = share of
 *    queries whose positive beats every negative; plot: distribution of the margin q.k+ - max q.Q.
 *  - alignment E||z1 - z2||^2 and uniformity log E exp(-2||zi - zj||^2) (Wang & Isola) on z = normalize(f_q(.))
 *    of the two views (the head's output space; the backbone's when the model has no head); plot: the point in
 *    the (uniformity, alignment) plane.
 *  - inter/intra-class distance ratio per image (src/eval/analysis.h) on L2-normalized backbone features of the
 *    center-cropped images; plot: histogram.
 *  - mean top-1024 matching probabilities softmax(q.Q^T / T) sorted in descending order; plot: log scale.
 * Plus analysis.png, all four panels in one figure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "base/progress.h"
#include "base/rng.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/eval_common.h"
#include "eval/analysis.h"
#include "eval/knn.h"
#include "eval/plot.h"
#include "io/safetensors.h"
#include "tensor/backend.h"

/* The checkpoint's queue [K, dim] and temperature, when it has them. */
static synco_status read_queue(const char *path, int dim, float **queue, size_t *K, double *T) {
  *queue = NULL;
  *K = 0;
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, path));
  synco_status s = SYNCO_OK;
  const synco_st_entry *e = synco_st_find(&st, "queue");
  if (e && e->ndim == 2 && e->shape[1] == dim && e->shape[0] > 0) {
    *K = (size_t)e->shape[0];
    *queue = synco_malloc(*K * dim * sizeof(float));
    if (!*queue) s = SYNCO_ERR_NOMEM;
    else s = synco_st_get_f32(&st, "queue", *queue, *K * dim, NULL, 0);
  }
  const char *cfg = synco_st_meta(&st, "synco.config");
  cJSON *o = cfg ? cJSON_Parse(cfg) : NULL;
  cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "moco_t") : NULL;
  if (cJSON_IsNumber(t) && t->valuedouble > 0) *T = t->valuedouble;
  cJSON_Delete(o);
  synco_st_close(&st);
  if (s) {
    free(*queue);
    *queue = NULL;
  }
  return s;
}

static int has_key_encoder(const char *path) {
  synco_safetensors st;
  if (synco_st_open(&st, path)) return 0;
  int r = synco_st_find(&st, "encoder_k.conv1.weight") != NULL;
  synco_st_close(&st);
  return r;
}

static synco_status save_both(const char *dir, const char *stem, int w, int h, const synco_plot_panel *p) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s.png", dir, stem);
  SYNCO_TRY(synco_plot_panel_file(path, w, h, p));
  snprintf(path, sizeof path, "%s/%s.svg", dir, stem);
  return synco_plot_panel_file(path, w, h, p);
}

int synco_cmd_analyze(int argc, char **argv) {
  synco_eval_model_opts mo;
  synco_eval_model_defaults(&mo);
  const char *data = NULL, *split = NULL, *outdir = NULL;
  int json = 0, skip_bad = 0, per_class = 0, bins = 50;
  double T = 0;
  synco_arg args[32] = {
      {"data", 0, SYNCO_ARG_STR, &data, "held-out labelled images"},
      {"split", 0, SYNCO_ARG_STR, &split, "split where the format has several (train, test)"},
      {"out", 'o', SYNCO_ARG_STR, &outdir, "output folder (metrics.json and the plots)"},
      {"per-class", 0, SYNCO_ARG_INT, &per_class, "use a seed-determined N images per class (0: all images)"},
      {"t", 't', SYNCO_ARG_FLOAT, &T, "temperature of the matching probabilities (0: the checkpoint's moco_t, else 0.2)"},
      {"bins", 0, SYNCO_ARG_INT, &bins, "histogram bins"},
      {"skip-bad", 0, SYNCO_ARG_FLAG, &skip_bad, "skip unreadable images"},
      {"json", 0, SYNCO_ARG_FLAG, &json, "print metrics.json's object instead of the summary"},
  };
  int na = 8;
  na += synco_eval_model_args(&mo, args + na, 31 - na);
  args[na].name = NULL;
  int rc = synco_args_parse("analyze", "The paper's analyses (proxy accuracy, alignment, uniformity, distance ratio, "
                                       "matching probabilities) with plots.",
                            args, argc, argv, NULL, 0, NULL);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = synco_eval_model_check("analyze", &mo))) return rc;
  if (!data || !outdir) {
    fprintf(stderr, "synco analyze: --data and --out are required\n");
    return 2;
  }
  if (bins < 2 || bins > 1000 || per_class < 0) {
    fprintf(stderr, "synco analyze: --bins must be in 2..1000 and --per-class >= 0\n");
    return 2;
  }
  if (!synco_plot_available()) {
    fprintf(stderr, "synco analyze: built without cairo (install libcairo2-dev and rebuild)\n");
    return 1;
  }
  const double t0 = synco_now();
  synco_eval_data ds;
  synco_backend *be = NULL, *be_k = NULL;
  synco_encoder *enc = NULL, *enc_k = NULL;
  synco_batcher *bv = NULL, *be_ = NULL;
  float *z1 = NULL, *z2 = NULL, *kk = NULL, *fb = NULL, *queue = NULL;
  double *ratio = NULL, *margin = NULL, *probs = NULL;
  uint32_t *idx = NULL;
  size_t n = 0, K = 0;
  int exit_code = 1, has_head = 0;
  if (synco_eval_data_open(&ds, data, split, skip_bad, 1)) return synco_cli_error("analyze");
  if (synco_cli_mkdirs(outdir)) goto fail;
  if (per_class > 0) {
    if (synco_subset_balanced(&idx, &n, ds.labels, ds.n, ds.classes, 0, per_class, (uint64_t)mo.seed)) goto fail;
  } else {
    n = ds.n;
  }
  if (n < 4) {
    synco_fail(SYNCO_ERR_ARG, "%s: need at least 4 images, have %zu", data, n);
    goto fail;
  }
  /* The query encoder with its head (its backbone gives the features too) and a checkpoint's key encoder. */
  /* One batch size for both encoders, sized so that both fit. */
  const int key_enc = mo.ckpt && has_key_encoder(mo.ckpt);
  if (synco_eval_fit_batch(&mo, 1, key_enc ? 2 : 1)) goto fail;
  if (synco_eval_open_model(&mo, 1, mo.batch, 1, &be, &enc, &has_head)) goto fail;
  if (key_enc) {
    synco_eval_model_opts mk = mo;
    mk.which = "key";
    if (synco_eval_open_model(&mk, 1, mo.batch, 1, &be_k, &enc_k, NULL)) goto fail;
  }
  const int S = synco_encoder_image_size(enc), dz = synco_encoder_out_dim(enc), df = synco_encoder_feature_dim(enc);
  double ckpt_T = 0.2;
  if (mo.ckpt && read_queue(mo.ckpt, dz, &queue, &K, &ckpt_T)) goto fail;
  if (T <= 0) T = ckpt_T;

  /* Two MoCo-v2 views (keyed like pretraining's: AUG_Q / AUG_K) and the center-cropped images. */
  synco_aug_config va = synco_eval_aug(S, SYNCO_AUG_MOCO_V2);
  va.blur = S > 64;
  synco_aug_config ea = synco_eval_aug(S, SYNCO_AUG_EVAL);
  if (synco_batcher_create(&bv, ds.ds, &va) || synco_batcher_create(&be_, ds.ds, &ea)) goto fail;
  z1 = synco_malloc(n * dz * sizeof(float));
  z2 = synco_malloc(n * dz * sizeof(float));
  kk = synco_malloc(n * dz * sizeof(float));
  fb = synco_malloc(n * df * sizeof(float));
  ratio = synco_malloc(n * sizeof(double));
  margin = synco_malloc(n * sizeof(double));
  probs = synco_malloc(1024 * sizeof(double));
  if (!z1 || !z2 || !kk || !fb || !ratio || !margin || !probs) goto fail;
  const int B = synco_encoder_batch(enc);
  const long batches = (long)((n + B - 1) / B);
  synco_progress p;
  const uint64_t seed = (uint64_t)mo.seed;
  synco_progress_begin(&p, "view 1", batches, B, 20);
  if (synco_encode_subset(z1, NULL, enc, bv, idx, n, seed, 0, SYNCO_RNG_AUG_Q, has_head, &p)) goto fail;
  synco_progress_end(&p, NULL);
  synco_progress_begin(&p, "view 2", batches, B, 20);
  if (synco_encode_subset(z2, NULL, enc, bv, idx, n, seed, 0, SYNCO_RNG_AUG_K, has_head, &p)) goto fail;
  synco_progress_end(&p, NULL);
  if (key_enc) {
    synco_progress_begin(&p, "keys", batches, B, 20);
    if (synco_encode_subset(kk, NULL, enc_k, bv, idx, n, seed, 0, SYNCO_RNG_AUG_K, 1, &p)) goto fail;
    synco_progress_end(&p, NULL);
  } else {
    memcpy(kk, z2, n * dz * sizeof(float));
  }
  synco_progress_begin(&p, "features", batches, B, 20);
  int *lab = malloc(n * sizeof(int));
  if (!lab || synco_encode_subset(fb, lab, enc, be_, idx, n, seed, 0, SYNCO_RNG_EVAL, 0, &p)) {
    free(lab);
    goto fail;
  }
  synco_progress_end(&p, NULL);
  synco_rows_l2_normalize(z1, n, dz);
  synco_rows_l2_normalize(z2, n, dz);
  synco_rows_l2_normalize(kk, n, dz);
  synco_rows_l2_normalize(fb, n, df);

  /* Queries and negatives: the checkpoint's queue, or the keys of the second half as a stand-in. */
  size_t nq = n;
  const float *negs = queue;
  const char *neg_kind = "checkpoint queue";
  if (!queue) {
    nq = n / 2;
    K = n - nq;
    negs = kk + nq * dz;
    neg_kind = "keys of the other half of the images (no queue in the model file)";
  }
  double unif = 0, acc = 0;
  const double align = synco_alignment(z1, z2, n, dz, 2.0);
  synco_status s = synco_uniformity(&unif, z1, n, dz, 2.0);
  if (!s) s = synco_distance_ratio(ratio, fb, lab, n, df);
  free(lab);
  if (!s) s = synco_proxy_margins(margin, z1, kk, nq, negs, K, dz);
  if (!s) s = synco_matching_probs(probs, 1024, z1, nq, negs, K, dz, T);
  if (s) goto fail;
  size_t hits = 0;
  for (size_t i = 0; i < nq; i++) hits += margin[i] > 0;
  acc = 100.0 * hits / nq;
  const size_t np = K < 1024 ? K : 1024;
  double rmean, rmed, rmin, rmax, mmean, mmed, mmin, mmax;
  const size_t nr = synco_stats(ratio, n, &rmean, &rmed, &rmin, &rmax);
  synco_stats(margin, nq, &mmean, &mmed, &mmin, &mmax);

  /* Plots. */
  double *redges = malloc((bins + 1) * sizeof(double)), *rcount = malloc(bins * sizeof(double));
  double *medges = malloc((bins + 1) * sizeof(double)), *mcount = malloc(bins * sizeof(double));
  size_t *cnt = malloc(bins * sizeof(size_t));
  double *rank = malloc(np * sizeof(double));
  if (!redges || !rcount || !medges || !mcount || !cnt || !rank) {
    free(redges), free(rcount), free(medges), free(mcount), free(cnt), free(rank);
    synco_fail(SYNCO_ERR_NOMEM, "out of memory");
    goto fail;
  }
  double lo = nr ? rmin : 0, hi = nr ? rmax : 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  synco_histogram(cnt, bins, lo, hi, ratio, n);
  for (int i = 0; i <= bins; i++) redges[i] = lo + (hi - lo) * i / bins;
  for (int i = 0; i < bins; i++) rcount[i] = (double)cnt[i];
  double mlo = mmin, mhi = mmax;
  if (!(mhi - mlo > 1e-9)) mlo -= 0.5, mhi += 0.5;
  synco_histogram(cnt, bins, mlo, mhi, margin, nq);
  for (int i = 0; i <= bins; i++) medges[i] = mlo + (mhi - mlo) * i / bins;
  for (int i = 0; i < bins; i++) mcount[i] = (double)cnt[i];
  for (size_t i = 0; i < np; i++) rank[i] = (double)(i + 1);
  double ax = unif, ay = align;
  char lbl_ratio[96], lbl_acc[96], lbl_au[96], lbl_p[96], title_p[128];
  snprintf(lbl_ratio, sizeof lbl_ratio, "%zu images (mean %.3f)", nr, rmean);
  snprintf(lbl_acc, sizeof lbl_acc, "proxy accuracy %.1f%%", acc);
  snprintf(lbl_au, sizeof lbl_au, "align %.3f, unif %.3f", align, unif);
  snprintf(lbl_p, sizeof lbl_p, "T %g, K %zu", T, K);
  snprintf(title_p, sizeof title_p, "Mean top-%zu matching probabilities", np);
  synco_plot_series s_ratio = {lbl_ratio, redges, rcount, bins, SYNCO_PLOT_BARS};
  synco_plot_series s_margin = {lbl_acc, medges, mcount, bins, SYNCO_PLOT_BARS};
  synco_plot_series s_au = {lbl_au, &ax, &ay, 1, SYNCO_PLOT_POINTS};
  synco_plot_series s_p = {lbl_p, rank, probs, (int)np, SYNCO_PLOT_LINE};
  synco_plot_panel panels[4] = {
      {"Proxy task: positive margin over the hardest negative", "q.k+ - max q.Q", "queries", &s_margin, 1, 0, 0, 0},
      {"Alignment and uniformity (lower is better)", "uniformity", "alignment", &s_au, 1, 0, 0, 0},
      {"Inter/intra-class distance ratio", "ratio", "images", &s_ratio, 1, 0, 0, 0},
      {title_p, "rank", "probability", &s_p, 1, 0, 1, 0},
  };
  s = save_both(outdir, "proxy_margin", 800, 560, &panels[0]);
  if (!s) s = save_both(outdir, "alignment_uniformity", 800, 560, &panels[1]);
  if (!s) s = save_both(outdir, "ratio", 800, 560, &panels[2]);
  if (!s) s = save_both(outdir, "matching_probs", 800, 560, &panels[3]);
  char fig[1200];
  snprintf(fig, sizeof fig, "%s/analysis.png", outdir);
  if (!s) s = synco_plot_figure(fig, 1400, 1000, 2, 2, panels, 4);
  free(redges), free(rcount), free(medges), free(mcount), free(cnt), free(rank);
  if (s) goto fail;

  /* metrics.json */
  char name[512];
  synco_eval_model_name(&mo, name, sizeof name);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "command", "analyze");
  cJSON_AddStringToObject(o, "model", name);
  cJSON_AddStringToObject(o, "data", data);
  cJSON_AddNumberToObject(o, "n", (double)n);
  cJSON_AddStringToObject(o, "space", has_head ? "head output, L2-normalized" : "backbone features, L2-normalized");
  cJSON_AddNumberToObject(o, "proxy_accuracy", acc);
  cJSON_AddStringToObject(o, "negatives", neg_kind);
  cJSON_AddNumberToObject(o, "queries", (double)nq);
  cJSON_AddNumberToObject(o, "K", (double)K);
  cJSON_AddNumberToObject(o, "margin_mean", mmean);
  cJSON_AddNumberToObject(o, "alignment", align);
  cJSON_AddNumberToObject(o, "uniformity", unif);
  cJSON *r = cJSON_AddObjectToObject(o, "ratio");
  cJSON_AddStringToObject(r, "space", "backbone features, L2-normalized, center crop");
  cJSON_AddNumberToObject(r, "n", (double)nr);
  cJSON_AddNumberToObject(r, "mean", rmean);
  cJSON_AddNumberToObject(r, "median", rmed);
  cJSON_AddNumberToObject(r, "min", rmin);
  cJSON_AddNumberToObject(r, "max", rmax);
  cJSON_AddNumberToObject(o, "T", T);
  cJSON *pa = cJSON_AddArrayToObject(o, "matching_probs");
  for (size_t i = 0; i < np; i++) cJSON_AddItemToArray(pa, cJSON_CreateNumber(probs[i]));
  const double wall = synco_now() - t0;
  cJSON_AddNumberToObject(o, "wall_s", wall);
  char *text = cJSON_Print(o);
  char mpath[1200];
  snprintf(mpath, sizeof mpath, "%s/metrics.json", outdir);
  s = text ? synco_cli_write_file_atomic(mpath, text) : synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  free(text);
  if (s) {
    cJSON_Delete(o);
    goto fail;
  }
  if (json) {
    synco_eval_print_json(o);
  } else {
    cJSON_Delete(o);
    printf("analysis of %s on %zu images of %s\n", name, n, data);
    printf("  proxy accuracy %.2f%% (%zu queries, %zu negatives: %s)\n", acc, nq, K, neg_kind);
    printf("  alignment %.4f  uniformity %.4f  (%s)\n", align, unif, has_head ? "head output" : "backbone features");
    printf("  inter/intra distance ratio: mean %.4f, median %.4f, range [%.4f, %.4f]\n", rmean, rmed, rmin, rmax);
    printf("  matching probabilities (T %g): top-1 %.4g, top-10 %.4g, top-%zu %.4g\n", T, probs[0], np > 9 ? probs[9] : NAN,
           np, probs[np - 1]);
    printf("  wrote %s/metrics.json, analysis.png and {proxy_margin,alignment_uniformity,ratio,matching_probs}.{png,svg}\n",
           outdir);
    printf("  wall time %.1f s\n", wall);
  }
  exit_code = 0;
fail:
  if (exit_code) synco_cli_error("analyze");
  free(z1), free(z2), free(kk), free(fb), free(queue), free(ratio), free(margin), free(probs), free(idx);
  synco_batcher_free(bv);
  synco_batcher_free(be_);
  synco_encoder_free(enc);
  synco_encoder_free(enc_k);
  if (be) synco_backend_destroy(be);
  if (be_k) synco_backend_destroy(be_k);
  synco_eval_data_close(&ds);
  return exit_code;
}
