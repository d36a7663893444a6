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
 * Where it runs: the encoders' outputs come down once per view (n x d floats, the encoder's copy); the normalization
 * and alignment are host loops over them, and the pairwise analyses run their dot products as backend gemms tile by
 * tile, downloading each tile for the host's reductions (src/eval/analysis.c).
 * Plus analysis.png, all four panels in one figure. Several models (--ckpt a --ckpt b, or --ckpt a,b): each is
 * analyzed on the same images and views, and every plot draws one series per model, named by --label or its run
 * directory, as the paper's figures compare runs: the histograms as small multiples (a strip each), the points and
 * curves together; models measured differently (space, temperature, negatives, architecture) are warned about.
 * metrics.json keeps the first model's fields at the top, lists all in "models", and says whether they compare.
 * A pretraining checkpoint whose queue is not yet full (step x batch < K: rows still hold the random
 * initialization) gets a warning, and its "queue_full" is false. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "backend/registry.h"
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

/* The checkpoint's queue [K, dim] and temperature, when it has them; *filled: rows written by training so far
 * (step x batch, at most K; K when unknown). */
static synco_status read_queue(const char *path, int dim, float **queue, size_t *K, double *T, size_t *filled) {
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
  cJSON *bs = o ? cJSON_GetObjectItemCaseSensitive(o, "batch_size") : NULL;
  const char *step = synco_st_meta(&st, "synco.step");
  *filled = *K;
  if (cJSON_IsNumber(bs) && bs->valuedouble > 0 && step) {
    const double rows = strtod(step, NULL) * bs->valuedouble;
    if (rows >= 0 && rows < (double)*K) *filled = (size_t)rows;
  }
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

#define MAX_MODELS 10

/* What one model gives on the images. */
typedef struct {
  char name[512], label[64], arch[96];
  int has_head;
  double acc, align, unif, T, rmean, rmed, rmin, rmax, mmean, mmed, mmin, mmax;
  size_t n, nq, K, np, nr, filled;
  const char *neg_kind;
  const char *ratio_why;            /* why no image has a distance ratio (nr 0), else NULL */
  double *ratio, *margin, *probs;   /* [n], [nq], [1024] */
} model_result;

static void result_free(model_result *r) { free(r->ratio), free(r->margin), free(r->probs); }

/* The file name of path without its folder and ".safetensors", at most n - 1 characters. */
static void file_stem(char *out, size_t n, const char *path) {
  const char *b = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  const char *ext = strstr(b, ".safetensors");
  snprintf(out, n, "%.*s", (int)(ext && !ext[12] ? (size_t)(ext - b) : strlen(b)), b);
}

/* A model's default label: the name of its run directory (the folder given, or the checkpoint's folder when it
 * holds the run's config.json), else the file's name without .safetensors; at most n - 1 characters. */
static void default_label(char *out, size_t n, const char *path) {
  char buf[4096], cfg[4200];
  snprintf(buf, sizeof buf, "%s", path);
  for (size_t k = strlen(buf); k > 1 && buf[k - 1] == '/'; k--) buf[k - 1] = 0;
  struct stat st;
  const int dir = stat(buf, &st) == 0 && S_ISDIR(st.st_mode);
  char *slash = strrchr(buf, '/');
  if (!dir) {
    if (slash) *slash = 0;
    snprintf(cfg, sizeof cfg, "%s/config.json", slash ? buf : ".");
    if (slash) *slash = '/';
  }
  const char *name = NULL;
  char real[4096];
  if (dir) {
    name = slash ? slash + 1 : buf;
  } else if (access(cfg, F_OK) == 0) { /* a run's checkpoint: its folder's name (of the working directory for ./x) */
    if (slash) *slash = 0;
    if (realpath(slash ? buf : ".", real)) name = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
    else name = slash ? (strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf) : ".";
  } else {
    file_stem(real, sizeof real, buf);
    name = real;
  }
  const size_t len = strlen(name);
  snprintf(out, n, "%s%s", len > n - 1 ? "..." : "", len > n - 1 ? name + len - (n - 4) : name);
}

/* Why no image of lab[n] has an inter/intra distance ratio (synco_distance_ratio leaves NaN where an image has no
 * other image of its class, or none of another class, or sits on every other image of its class): said in the
 * summary and metrics.json, where a bare "nan" or null told the user nothing. */
static const char *ratio_undefined(const int *lab, size_t n) {
  int C = 0;
  for (size_t i = 0; i < n; i++)
    if (lab[i] + 1 > C) C = lab[i] + 1;
  size_t *cnt = calloc((size_t)(C ? C : 1), sizeof *cnt), most = 0;
  int classes = 0;
  if (!cnt) return "no image has both another of its class and one of another class";
  for (size_t i = 0; i < n; i++)
    if (lab[i] >= 0) classes += cnt[lab[i]]++ == 0;
  for (int c = 0; c < C; c++) most = cnt[c] > most ? cnt[c] : most;
  free(cnt);
  if (classes <= 1) return "one class: no inter-class distance";
  if (most <= 1) return "one image per class: no intra-class distance";
  return "every image's features equal those of the others of its class: intra-class distance 0";
}

/* Analyzes one model on images idx[0..n) of ds (idx NULL: all). T_arg <= 0: the checkpoint's temperature. */
static synco_status analyze_model(model_result *r, const synco_eval_model_opts *mo_in, const synco_eval_data *ds,
                                  const uint32_t *idx, size_t n, double T_arg) {
  synco_eval_model_opts mo_fit = *mo_in, *mo = &mo_fit; /* its batch is sized to this model's memory */
  memset(r, 0, sizeof *r);
  r->n = n;
  synco_eval_model_name(mo, r->name, sizeof r->name);
  synco_backend *be = NULL, *be_k = NULL;
  synco_encoder *enc = NULL, *enc_k = NULL;
  synco_batcher *bv = NULL, *be_ = NULL;
  float *z1 = NULL, *z2 = NULL, *kk = NULL, *fb = NULL, *queue = NULL;
  int *lab = NULL;
  synco_status s;
  /* The query encoder with its head (its backbone gives the features too) and a checkpoint's key encoder, with
   * one batch size for both, sized so that both fit. */
  const int key_enc = mo->ckpt && has_key_encoder(mo->ckpt);
  if ((s = synco_eval_fit_batch(mo, 1, key_enc ? 2 : 1))) goto out;
  if ((s = synco_eval_open_model(mo, 1, mo->batch, 1, &be, &enc, &r->has_head))) goto out;
  if (key_enc) {
    synco_eval_model_opts mk = *mo;
    mk.which = "key";
    if ((s = synco_eval_open_model(&mk, 1, mo->batch, 1, &be_k, &enc_k, NULL))) goto out;
  }
  const int S = synco_encoder_image_size(enc), dz = synco_encoder_out_dim(enc), df = synco_encoder_feature_dim(enc);
  const synco_encoder_config *ec = synco_encoder_cfg(enc);
  snprintf(r->arch, sizeof r->arch, "resnet%d width %d%s, %d px", ec->depth, ec->width, ec->cifar_stem ? " CIFAR stem" : "", S);
  double ckpt_T = 0.2;
  size_t K = 0;
  if (mo->ckpt && (s = read_queue(mo->ckpt, dz, &queue, &K, &ckpt_T, &r->filled))) goto out;
  r->T = T_arg > 0 ? T_arg : ckpt_T;
  if (queue && r->filled < K)
    fprintf(stderr, "synco analyze: warning: %s: the queue is not yet full (%zu of its %zu rows written by training: "
                    "step x batch < K), so the rest still hold the random initialization; proxy accuracy and "
                    "matching probabilities are against those too\n", mo->ckpt, r->filled, K);

  /* Two MoCo-v2 views (keyed like pretraining's: AUG_Q / AUG_K) and the center-cropped images. */
  synco_aug_config va = synco_eval_aug(S, SYNCO_AUG_MOCO_V2);
  va.blur = S > 64;
  synco_aug_config ea = synco_eval_aug(S, SYNCO_AUG_EVAL);
  if ((s = synco_batcher_create(&bv, ds->ds, &va)) || (s = synco_batcher_create(&be_, ds->ds, &ea))) goto out;
  z1 = synco_malloc(n * dz * sizeof(float));
  z2 = synco_malloc(n * dz * sizeof(float));
  kk = synco_malloc(n * dz * sizeof(float));
  fb = synco_malloc(n * df * sizeof(float));
  lab = synco_malloc(n * sizeof(int));
  r->ratio = synco_malloc(n * sizeof(double));
  r->margin = synco_malloc(n * sizeof(double));
  r->probs = synco_malloc(1024 * sizeof(double));
  if (!z1 || !z2 || !kk || !fb || !lab || !r->ratio || !r->margin || !r->probs) {
    s = synco_fail(SYNCO_ERR_NOMEM, "out of memory");
    goto out;
  }
  const int B = synco_encoder_batch(enc);
  const long batches = (long)((n + B - 1) / B);
  synco_progress p;
  const uint64_t seed = (uint64_t)mo->seed;
  synco_progress_begin(&p, "view 1", batches, B, 20);
  s = synco_encode_subset(z1, NULL, enc, bv, idx, n, seed, 0, SYNCO_RNG_AUG_Q, r->has_head, &p);
  synco_progress_end(&p, NULL);
  if (s) goto out;
  synco_progress_begin(&p, "view 2", batches, B, 20);
  s = synco_encode_subset(z2, NULL, enc, bv, idx, n, seed, 0, SYNCO_RNG_AUG_K, r->has_head, &p);
  synco_progress_end(&p, NULL);
  if (s) goto out;
  if (key_enc) {
    synco_progress_begin(&p, "keys", batches, B, 20);
    s = synco_encode_subset(kk, NULL, enc_k, bv, idx, n, seed, 0, SYNCO_RNG_AUG_K, 1, &p);
    synco_progress_end(&p, NULL);
    if (s) goto out;
  } else {
    memcpy(kk, z2, n * dz * sizeof(float));
  }
  synco_progress_begin(&p, "features", batches, B, 20);
  s = synco_encode_subset(fb, lab, enc, be_, idx, n, seed, 0, SYNCO_RNG_EVAL, 0, &p);
  synco_progress_end(&p, NULL);
  if (s) goto out;
  synco_rows_l2_normalize(z1, n, dz);
  synco_rows_l2_normalize(z2, n, dz);
  synco_rows_l2_normalize(kk, n, dz);
  synco_rows_l2_normalize(fb, n, df);

  /* Queries and negatives: the checkpoint's queue, or the keys of the second half as a stand-in. */
  size_t nq = n;
  const float *negs = queue;
  r->neg_kind = "checkpoint queue";
  if (!queue) {
    nq = n / 2;
    K = n - nq;
    negs = kk + nq * dz;
    r->neg_kind = "keys of the other half of the images (no queue in the model file)";
    r->filled = K;
  }
  r->nq = nq;
  r->K = K;
  r->align = synco_alignment(z1, z2, n, dz, 2.0);
  s = synco_uniformity(be, &r->unif, z1, n, dz, 2.0);
  if (!s) s = synco_distance_ratio(be, r->ratio, fb, lab, n, df);
  if (!s) s = synco_proxy_margins(be, r->margin, z1, kk, nq, negs, K, dz);
  if (!s) s = synco_matching_probs(be, r->probs, 1024, z1, nq, negs, K, dz, r->T);
  if (s) goto out;
  size_t hits = 0;
  for (size_t i = 0; i < nq; i++) hits += r->margin[i] > 0;
  r->acc = 100.0 * hits / nq;
  r->np = K < 1024 ? K : 1024;
  r->nr = synco_stats(r->ratio, n, &r->rmean, &r->rmed, &r->rmin, &r->rmax);
  if (r->nr == 0) r->ratio_why = ratio_undefined(lab, n);
  synco_stats(r->margin, nq, &r->mmean, &r->mmed, &r->mmin, &r->mmax);
out:
  free(z1), free(z2), free(kk), free(fb), free(queue), free(lab);
  synco_batcher_free(bv);
  synco_batcher_free(be_);
  synco_encoder_free(enc);
  synco_encoder_free(enc_k);
  if (be) synco_backend_destroy(be);
  if (be_k) synco_backend_destroy(be_k);
  return s;
}

/* metrics.json's object of one model. */
static cJSON *result_json(const model_result *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "model", r->name);
  cJSON_AddStringToObject(o, "label", r->label);
  cJSON_AddStringToObject(o, "arch", r->arch);
  cJSON_AddNumberToObject(o, "n", (double)r->n);
  cJSON_AddStringToObject(o, "space", r->has_head ? "head output, L2-normalized" : "backbone features, L2-normalized");
  cJSON_AddNumberToObject(o, "proxy_accuracy", r->acc);
  cJSON_AddStringToObject(o, "negatives", r->neg_kind);
  cJSON_AddNumberToObject(o, "queries", (double)r->nq);
  cJSON_AddNumberToObject(o, "K", (double)r->K);
  cJSON_AddBoolToObject(o, "queue_full", r->filled >= r->K);
  cJSON_AddNumberToObject(o, "queue_rows_filled", (double)r->filled);
  cJSON_AddNumberToObject(o, "margin_mean", r->mmean);
  cJSON_AddNumberToObject(o, "alignment", r->align);
  cJSON_AddNumberToObject(o, "uniformity", r->unif);
  cJSON *ro = cJSON_AddObjectToObject(o, "ratio");
  cJSON_AddStringToObject(ro, "space", "backbone features, L2-normalized, center crop");
  cJSON_AddNumberToObject(ro, "n", (double)r->nr);
  cJSON_AddNumberToObject(ro, "mean", r->rmean);
  cJSON_AddNumberToObject(ro, "median", r->rmed);
  cJSON_AddNumberToObject(ro, "min", r->rmin);
  cJSON_AddNumberToObject(ro, "max", r->rmax);
  if (r->ratio_why) cJSON_AddStringToObject(ro, "not_defined", r->ratio_why);
  cJSON_AddNumberToObject(o, "T", r->T);
  cJSON *pa = cJSON_AddArrayToObject(o, "matching_probs");
  for (size_t i = 0; i < r->np; i++) cJSON_AddItemToArray(pa, cJSON_CreateNumber(r->probs[i]));
  return o;
}

/* --ckpt may be given several times and each may be a comma list; the parser keeps one value, so every --ckpt
 * after the first is taken out of argv here (into extra[]) before parsing. */
static int split_ckpts(int argc, char **argv, char **kept, int *nkept, const char **extra, int *nextra) {
  int first = 1;
  *nkept = *nextra = 0;
  for (int i = 0; i < argc; i++) {
    const char *v = NULL;
    int take = 0;
    if (i > 0 && !strcmp(argv[i], "--ckpt") && i + 1 < argc) v = argv[i + 1], take = 2;
    else if (i > 0 && !strncmp(argv[i], "--ckpt=", 7)) v = argv[i] + 7, take = 1;
    if (take && !first) {
      if (*nextra == MAX_MODELS) return -1;
      extra[(*nextra)++] = v;
      i += take - 1;
      continue;
    }
    if (take) first = 0;
    kept[(*nkept)++] = argv[i];
  }
  return 0;
}

/* Appends the comma-separated paths of v to list (a path that exists as given is taken whole). */
static int add_paths(const char *v, char **list, int *n) {
  if (!strchr(v, ',') || access(v, F_OK) == 0) {
    if (*n == MAX_MODELS) return -1;
    list[(*n)++] = strdup(v);
    return 0;
  }
  for (const char *p = v; *p;) {
    const char *c = strchr(p, ',');
    const size_t len = c ? (size_t)(c - p) : strlen(p);
    if (len) {
      if (*n == MAX_MODELS) return -1;
      list[(*n)++] = strndup(p, len);
    }
    p += len + (c != NULL);
  }
  return 0;
}

/* What the analyses of models r[0..n) measured differently, "" when nothing: the space (head outputs or backbone
 * features), the temperature, the negatives, the architecture and crop. why: "; "-separated, e.g.
 * "space: a head output, b backbone features". Returns how many things differ. */
static int not_comparable(const model_result *r, int n, char *why, size_t cap) {
  static const char *const what[4] = {"space", "T", "negatives", "arch"};
  int differ = 0;
  size_t len = 0;
  why[0] = 0;
  for (int a = 0; a < 4; a++) {
    char v[MAX_MODELS][160];
    int same = 1;
    for (int m = 0; m < n; m++) {
      if (a == 0) snprintf(v[m], sizeof v[m], "%s", r[m].has_head ? "head output" : "backbone features");
      else if (a == 1) snprintf(v[m], sizeof v[m], "%g", r[m].T);
      else if (a == 2) snprintf(v[m], sizeof v[m], "%zu %s", r[m].K, r[m].neg_kind && !strncmp(r[m].neg_kind, "keys", 4) ? "stand-in keys" : "queue rows");
      else snprintf(v[m], sizeof v[m], "%s", r[m].arch);
      same &= !strcmp(v[m], v[0]);
    }
    if (same) continue;
    differ++;
    int w = snprintf(why + len, cap - len, "%s%s:", len ? "; " : "", what[a]);
    for (int m = 0; m <= n && w > 0; m++) {
      if ((len += (size_t)w) >= cap) break;
      if (m < n) w = snprintf(why + len, cap - len, "%s %s %s", m ? "," : "", r[m].label, v[m]);
    }
    if (len >= cap) {
      len = cap - 1;
      break;
    }
  }
  return differ;
}

/* --label's comma-separated names (empty ones too: each model has one); 1 when there are more than MAX_MODELS. */
static int add_labels(const char *v, char **list, int *n) {
  for (const char *p = v;;) {
    const char *c = strchr(p, ',');
    const size_t len = c ? (size_t)(c - p) : strlen(p);
    if (*n == MAX_MODELS) return 1;
    list[(*n)++] = strndup(p, len);
    if (!c) return 0;
    p = c + 1;
  }
}

int synco_cmd_analyze(int argc, char **argv) {
  synco_eval_model_opts mo;
  synco_eval_model_defaults(&mo);
  const char *data = NULL, *split = NULL, *outdir = NULL, *labels = NULL;
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
      {"label", 0, SYNCO_ARG_STR, &labels, "names of the models in the plots and metrics.json, comma-separated, one per --ckpt (default: their run directories' names)"},
  };
  int na = 9;
  na += synco_eval_model_args(&mo, args + na, 31 - na);
  args[na].name = NULL;
  for (int i = 0; i < na; i++)
    if (!strcmp(args[i].name, "ckpt"))
      args[i].help = "checkpoint or export; several (--ckpt a --ckpt b, or --ckpt a,b) are compared in every plot";
  char **kept = malloc((size_t)(argc + 1) * sizeof(char *));
  const char *extra[MAX_MODELS];
  char *paths[MAX_MODELS];
  int nkept = 0, nextra = 0, npaths = 0;
  if (!kept) return synco_cli_error("analyze");
  if (split_ckpts(argc, argv, kept, &nkept, extra, &nextra)) {
    free(kept);
    fprintf(stderr, "synco analyze: at most %d models (--ckpt)\n", MAX_MODELS);
    return 2;
  }
  kept[nkept] = NULL;
  int rc = synco_args_parse("analyze", "The paper's analyses (proxy accuracy, alignment, uniformity, distance ratio, "
                                       "matching probabilities) with plots; several --ckpt are compared.",
                            args, nkept, kept, NULL, 0, NULL);
  free(kept);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = synco_eval_model_check("analyze", &mo, args))) return rc;
  if (!data || !outdir) {
    fprintf(stderr, "synco analyze: --data and --out are required\n");
    return 2;
  }
  if ((rc = SYNCO_CLI_CHECK_FILES("analyze", {"--out", outdir, SYNCO_CLI_OUT_DIR}, {"--ckpt", mo.ckpt}, {"--init", mo.init}, {"--data", data, SYNCO_CLI_IN_DATA}))) return rc;
  if (bins < 2 || bins > 1000 || per_class < 0) {
    fprintf(stderr, "synco analyze: --bins must be in 2..1000 and --per-class >= 0\n");
    return 2;
  }
  int bad = 0;
  if (mo.ckpt) bad = add_paths(mo.ckpt, paths, &npaths);
  for (int i = 0; i < nextra && !bad; i++) bad = add_paths(extra[i], paths, &npaths);
  if (bad || (mo.ckpt && npaths == 0)) {
    for (int i = 0; i < npaths; i++) free(paths[i]);
    fprintf(stderr, "synco analyze: %s\n", bad ? "at most 10 models (--ckpt)" : "--ckpt names no file");
    return 2;
  }
  for (int m = 0; m < npaths; m++) { /* a run folder is its last.safetensors, as for one --ckpt; all before any work */
    char buf[SYNCO_CLI_PATH_MAX + 32];
    const char *file = synco_cli_ckpt_path("--ckpt", paths[m], buf, sizeof buf);
    if (file && access(file, R_OK) != 0) {
      synco_fail(SYNCO_ERR_IO, "--ckpt %s: cannot open: %s", file, strerror(errno));
      file = NULL;
    }
    char *kept = file && file != paths[m] ? strdup(file) : NULL;
    if (!file || (file != paths[m] && !kept)) {
      fprintf(stderr, "synco analyze: %s\n", file ? "out of memory" : synco_last_error());
      for (int i = 0; i < npaths; i++) free(paths[i]);
      return 1;
    }
    if (kept) free(paths[m]), paths[m] = kept;
  }
  const int nmodels = mo.ckpt ? npaths : 1;
  char names[MAX_MODELS][64];
  if (labels) {
    char *lp[MAX_MODELS];
    int nl = 0;
    const int over = add_labels(labels, lp, &nl);
    int empty = 0;
    for (int i = 0; i < nl; i++) {
      snprintf(names[i], sizeof names[i], "%.63s", lp[i] ? lp[i] : "");
      empty |= !names[i][0];
      free(lp[i]);
    }
    if (empty && !over && nl == nmodels) {
      for (int i = 0; i < npaths; i++) free(paths[i]);
      fprintf(stderr, "synco analyze: --label %s: every model needs a name (one is empty)\n", labels);
      return 2;
    }
    if (over || nl != nmodels) {
      for (int i = 0; i < npaths; i++) free(paths[i]);
      fprintf(stderr, "synco analyze: --label names %s%d model%s, and %d %s given (--ckpt)\n", over ? "more than " : "",
              nl, nl == 1 ? "" : "s", nmodels, nmodels == 1 ? "is" : "are");
      return 2;
    }
  } else {
    for (int m = 0; m < nmodels; m++) {
      char buf[512];
      synco_eval_model_opts mm = mo;
      if (mo.ckpt) mm.ckpt = paths[m];
      if (mm.ckpt) default_label(names[m], sizeof names[m], mm.ckpt);
      else snprintf(names[m], sizeof names[m], "%s", synco_eval_model_name(&mm, buf, sizeof buf));
    }
    /* two checkpoints of one run: each is named by its file too */
    int clash[MAX_MODELS] = {0};
    for (int m = 0; m < nmodels; m++)
      for (int k = 0; k < nmodels; k++) clash[m] |= k != m && !strcmp(names[m], names[k]) && mo.ckpt;
    for (int m = 0; m < nmodels; m++) {
      if (!clash[m]) continue;
      char stem[64], both[64];
      file_stem(stem, sizeof stem, paths[m]);
      snprintf(both, sizeof both, "%.30s/%.30s", names[m], stem);
      memcpy(names[m], both, sizeof both);
    }
  }
  /* one name per model: plots and metrics.json tell the models apart by it */
  for (int m = 0; m < nmodels; m++)
    for (int k = m + 1; k < nmodels; k++)
      if (!strcmp(names[m], names[k])) {
        if (labels) fprintf(stderr, "synco analyze: --label names two models %s; give each its own\n", names[m]);
        else if (synco_cli_same_file(paths[m], paths[k]))
          fprintf(stderr, "synco analyze: --ckpt gives %s twice (the same model)\n", paths[m]);
        else
          fprintf(stderr, "synco analyze: %s and %s would both be named %s: give --label NAME,NAME\n", paths[m],
                  paths[k], names[m]);
        for (int i = 0; i < npaths; i++) free(paths[i]);
        return 2;
      }
  const int plots = synco_plot_available();
  if (!plots) fprintf(stderr, "synco analyze: built without cairo: metrics.json only, no plots (install libcairo2-dev "
                              "and rebuild for them)\n");
  const double t0 = synco_now();
  synco_eval_data ds;
  model_result res[MAX_MODELS];
  memset(res, 0, sizeof res);
  uint32_t *idx = NULL;
  size_t n = 0;
  int exit_code = 1, done = 0;
  synco_cli_made_dirs made = {{0}}; /* the folders of --out this run created: a failed analyze takes them back */
  if (synco_eval_data_open(&ds, data, split, skip_bad, 1, 0)) {
    for (int i = 0; i < npaths; i++) free(paths[i]);
    return synco_cli_error("analyze");
  }
  if (synco_cli_mkdirs_noting(outdir, &made)) goto fail;
  if (per_class > 0) {
    if (synco_subset_balanced(&idx, &n, ds.labels, ds.n, ds.classes, 0, per_class, (uint64_t)mo.seed)) goto fail;
  } else {
    n = ds.n;
  }
  if (n < 4) {
    synco_fail(SYNCO_ERR_ARG, "%s: need at least 4 images, have %zu", data, n);
    goto fail;
  }
  for (int m = 0; m < nmodels; m++) {
    synco_eval_model_opts mm = mo;
    if (mo.ckpt) mm.ckpt = paths[m];
    if (nmodels > 1) fprintf(stderr, "model %d/%d: %s\n", m + 1, nmodels, mm.ckpt);
    done = m + 1;
    if (analyze_model(&res[m], &mm, &ds, idx, n, T)) goto fail;
    memcpy(res[m].label, names[m], sizeof res[m].label);
  }
  char differs[2048];
  const int ndiffer = nmodels > 1 ? not_comparable(res, nmodels, differs, sizeof differs) : 0;
  if (ndiffer)
    fprintf(stderr, "synco analyze: warning: these models are not measured alike, so their plots do not compare as the "
                    "paper's do (%s)%s\n", differs,
            strstr(differs, "T:") ? "; -t X gives every model one temperature" : "");

  /* Plots: one series per model; the histograms of all models share their bins. */
  double rlo = INFINITY, rhi = -INFINITY, mlo = INFINITY, mhi = -INFINITY;
  size_t npmax = 1;
  for (int m = 0; m < nmodels; m++) {
    if (res[m].nr) rlo = fmin(rlo, res[m].rmin), rhi = fmax(rhi, res[m].rmax);
    mlo = fmin(mlo, res[m].mmin), mhi = fmax(mhi, res[m].mmax);
    if (res[m].np > npmax) npmax = res[m].np;
  }
  if (!(rhi >= rlo)) rlo = 0, rhi = 1;
  if (rhi - rlo < 1e-9) rlo -= 0.5, rhi += 0.5;
  if (!(mhi - mlo > 1e-9)) mlo -= 0.5, mhi += 0.5;
  double *redges = malloc((bins + 1) * sizeof(double)), *medges = malloc((bins + 1) * sizeof(double));
  double *counts = malloc((size_t)nmodels * 2 * bins * sizeof(double)), *rank = malloc(npmax * sizeof(double));
  double *ax = malloc(nmodels * sizeof(double)), *ay = malloc(nmodels * sizeof(double));
  size_t *cnt = malloc(bins * sizeof(size_t));
  char (*lbl)[4][128] = malloc((size_t)nmodels * sizeof *lbl);
  synco_plot_series *ser = malloc((size_t)nmodels * 4 * sizeof(synco_plot_series));
  synco_status s = SYNCO_OK;
  if (!redges || !medges || !counts || !rank || !ax || !ay || !cnt || !lbl || !ser) s = synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  for (int i = 0; !s && i <= bins; i++) {
    redges[i] = rlo + (rhi - rlo) * i / bins;
    medges[i] = mlo + (mhi - mlo) * i / bins;
  }
  for (size_t i = 0; !s && i < npmax; i++) rank[i] = (double)(i + 1);
  for (int m = 0; !s && m < nmodels; m++) {
    const model_result *r = &res[m];
    const char *who = nmodels > 1 ? r->label : "";
    const char *sep = nmodels > 1 ? ": " : "";
    double *rc_ = counts + (size_t)m * 2 * bins, *mc = rc_ + bins;
    synco_histogram(cnt, bins, rlo, rhi, r->ratio, n);
    for (int i = 0; i < bins; i++) rc_[i] = (double)cnt[i];
    synco_histogram(cnt, bins, mlo, mhi, r->margin, r->nq);
    for (int i = 0; i < bins; i++) mc[i] = (double)cnt[i];
    ax[m] = r->unif, ay[m] = r->align;
    snprintf(lbl[m][0], 128, "%s%sproxy accuracy %.1f%%", who, sep, r->acc);
    snprintf(lbl[m][1], 128, "%s%salign %.3f, unif %.3f", who, sep, r->align, r->unif);
    if (r->ratio_why) snprintf(lbl[m][2], 128, "%s%snot defined: %s", who, sep, r->ratio_why);
    else snprintf(lbl[m][2], 128, "%s%s%zu images (mean %.3f)", who, sep, r->nr, r->rmean);
    snprintf(lbl[m][3], 128, "%s%sT %g, K %zu", who, sep, r->T, r->K);
    ser[0 * nmodels + m] = (synco_plot_series){lbl[m][0], medges, mc, bins, SYNCO_PLOT_BARS};
    ser[1 * nmodels + m] = (synco_plot_series){lbl[m][1], &ax[m], &ay[m], 1, SYNCO_PLOT_POINTS};
    ser[2 * nmodels + m] = (synco_plot_series){lbl[m][2], redges, rc_, bins, SYNCO_PLOT_BARS};
    ser[3 * nmodels + m] = (synco_plot_series){lbl[m][3], rank, r->probs, (int)r->np, SYNCO_PLOT_LINE};
  }
  char title_p[128];
  snprintf(title_p, sizeof title_p, "Mean top-%zu matching probabilities", npmax);
  /* Several models: the histograms as small multiples (a strip each, on the same axes: none hides another), the
   * points and curves together, a colour per model; the figures grow with the strips. */
  synco_plot_panel panels[4] = {
      {"Proxy task: positive margin over the hardest negative", "q.k+ - max q.Q", "queries", ser, nmodels, 0, 0, 0, 1},
      {"Alignment and uniformity (lower is better)", "uniformity", "alignment", ser + nmodels, nmodels, 0, 0, 0, 0},
      {"Inter/intra-class distance ratio", "ratio", "images", ser + 2 * nmodels, nmodels, 0, 0, 0, 1},
      {title_p, "rank", "probability", ser + 3 * nmodels, nmodels, 0, 1, 0, 0},
  };
  const int grow = nmodels > 2 ? nmodels - 2 : 0;
  if (!s && plots) s = save_both(outdir, "proxy_margin", 800, 560 + 130 * grow, &panels[0]);
  if (!s && plots) s = save_both(outdir, "alignment_uniformity", 800, 560, &panels[1]);
  if (!s && plots) s = save_both(outdir, "ratio", 800, 560 + 130 * grow, &panels[2]);
  if (!s && plots) s = save_both(outdir, "matching_probs", 800, 560, &panels[3]);
  char fig[1200];
  snprintf(fig, sizeof fig, "%s/analysis.png", outdir);
  if (!s && plots) s = synco_plot_figure(fig, 1400, 1000 + 260 * grow, 2, 2, panels, 4);
  free(redges), free(medges), free(counts), free(rank), free(ax), free(ay), free(cnt), free(lbl), free(ser);
  if (s) goto fail;

  /* metrics.json: the first model's fields at the top (one model: as before), every model in "models". */
  cJSON *o = result_json(&res[0]);
  cJSON_AddStringToObject(o, "command", "analyze");
  cJSON_AddStringToObject(o, "data", data);
  cJSON_AddBoolToObject(o, "comparable", ndiffer == 0);
  if (ndiffer) cJSON_AddStringToObject(o, "not_comparable", differs);
  cJSON *ms = cJSON_AddArrayToObject(o, "models");
  for (int m = 0; m < nmodels; m++) cJSON_AddItemToArray(ms, result_json(&res[m]));
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
    for (int m = 0; m < nmodels; m++) {
      const model_result *r = &res[m];
      printf("analysis of %s%s%s%s on %zu images of %s\n", r->label, nmodels > 1 || strcmp(r->label, r->name) ? " (" : "",
             nmodels > 1 || strcmp(r->label, r->name) ? r->name : "", nmodels > 1 || strcmp(r->label, r->name) ? ")" : "", n, data);
      printf("  proxy accuracy %.2f%% (%zu queries, %zu negatives: %s%s)\n", r->acc, r->nq, r->K, r->neg_kind,
             r->filled < r->K ? "; NOT YET FULL" : "");
      printf("  alignment %.4f  uniformity %.4f  (%s)\n", r->align, r->unif, r->has_head ? "head output" : "backbone features");
      if (r->ratio_why)
        printf("  inter/intra distance ratio: not defined (%s)\n", r->ratio_why);
      else
        printf("  inter/intra distance ratio: mean %.4f, median %.4f, range [%.4f, %.4f]\n", r->rmean, r->rmed, r->rmin,
               r->rmax);
      /* top-1, top-10 and the last rank, each once (10 or fewer negatives have no separate top-10) */
      char ranks[96];
      int k = snprintf(ranks, sizeof ranks, "top-1 %.4g", r->probs[0]);
      if (r->np > 10) k += snprintf(ranks + k, sizeof ranks - k, ", top-10 %.4g", r->probs[9]);
      if (r->np > 1) snprintf(ranks + k, sizeof ranks - k, ", top-%zu %.4g", r->np, r->probs[r->np - 1]);
      printf("  matching probabilities (T %g): %s\n", r->T, ranks);
    }
    printf("  wrote %s/metrics.json%s\n", outdir,
           plots ? ", analysis.png and {proxy_margin,alignment_uniformity,ratio,matching_probs}.{png,svg}" : " (no plots)");
    printf("  wall time %.1f s\n", wall);
  }
  exit_code = 0;
fail:
  if (exit_code) {
    synco_cli_error("analyze");
    synco_cli_unmake_dirs(outdir, &made);
  }
  for (int m = 0; m < done; m++) result_free(&res[m]);
  for (int i = 0; i < npaths; i++) free(paths[i]);
  free(idx);
  synco_eval_data_close(&ds);
  return exit_code;
}
