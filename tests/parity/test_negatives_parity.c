/* Parity of the SynCo loss with PyTorch: tests/fixtures/synco_negatives.safetensors (written by
 * tools/make_synco_fixtures.py) holds q, k, a queue and, per case (all six types, each type alone, none, all six
 * with large σ/δ/η), the random draws, the hard sets, every synthetic logit, the loss, the proxy accuracy and
 * dL/dq. The same draws are fed to synco_negatives_logits() and synco_contrastive_loss(). A second check: with all
 * counts 0 the loss and dq equal those of the plain path (no negatives) and of a double-precision reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "io/safetensors.h"
#include "ssl/infonce.h"
#include "ssl/negatives.h"
#include "test_util.h"

/* The reference backend runs the loss's GEMMs. */
static synco_backend *test_be(void) {
  static synco_backend *be;
  if (!be && synco_backend_ref_create(&be) != SYNCO_OK) abort();
  return be;
}

#define FIXTURE "tests/fixtures/synco_negatives.safetensors"

static const synco_safetensors *g_st;

static float *get_f32(const char *name, size_t numel) {
  float *x = malloc((numel ? numel : 1) * sizeof *x);
  CHECK_OK(synco_st_get_f32(g_st, name, x, numel, NULL, 0));
  return x;
}

/* Copies an I32 tensor into dst (numel values); missing or mismatched is a failure. */
static void get_i32(const char *name, int32_t *dst, size_t numel) {
  const synco_st_entry *e = synco_st_find(g_st, name);
  if (!e || e->dtype != SYNCO_ST_I32 || synco_st_numel(e) != numel) {
    fprintf(stderr, "fixture tensor %s missing or not I32[%zu]\n", name, numel);
    synco_test_failures++;
    return;
  }
  memcpy(dst, synco_st_bytes(g_st, e), numel * sizeof(int32_t));
}

/* Plain MoCo-v2 InfoNCE in double: loss and dq for [q·k | q·Qᵀ] / T. */
static double moco_reference(float *dq, const float *q, const float *k, const float *queue, int B, int K, int dim,
                             double T) {
  double loss = 0.0;
  double *z = malloc((size_t)(K + 1) * sizeof *z);
  for (int i = 0; i < B; i++) {
    const float *qi = q + (size_t)i * dim;
    double mx = -INFINITY;
    for (int j = 0; j <= K; j++) {
      const float *v = j == 0 ? k + (size_t)i * dim : queue + (size_t)(j - 1) * dim;
      double d = 0.0;
      for (int c = 0; c < dim; c++) d += (double)qi[c] * v[c];
      z[j] = d / T;
      if (z[j] > mx) mx = z[j];
    }
    double sum = 0.0;
    for (int j = 0; j <= K; j++) sum += exp(z[j] - mx);
    loss += log(sum) + mx - z[0];
    for (int c = 0; c < dim; c++) {
      double g = 0.0;
      for (int j = 0; j <= K; j++) {
        const float *v = j == 0 ? k + (size_t)i * dim : queue + (size_t)(j - 1) * dim;
        g += (exp(z[j] - mx) / sum - (j == 0)) * v[c];
      }
      dq[(size_t)i * dim + c] = (float)(g / T / B);
    }
  }
  free(z);
  return loss / B;
}

int main(void) {
  synco_safetensors st;
  if (synco_st_open(&st, FIXTURE) != SYNCO_OK) {
    fprintf(stderr, "cannot read %s: %s (regenerate with tools/make_synco_fixtures.py)\n", FIXTURE,
            synco_last_error());
    return 1;
  }
  g_st = &st;
  int32_t hdr[2];
  get_i32("n_hard", &hdr[0], 1);
  get_i32("n_cases", &hdr[1], 1);
  float T;
  CHECK_OK(synco_st_get_f32(&st, "T", &T, 1, NULL, 0));
  const synco_st_entry *eq = synco_st_find(&st, "q"), *eQ = synco_st_find(&st, "queue");
  if (!eq || !eQ || eq->ndim != 2 || eQ->ndim != 2) {
    fprintf(stderr, "fixture lacks q or queue\n");
    return 1;
  }
  const int B = (int)eq->shape[0], dim = (int)eq->shape[1], K = (int)eQ->shape[0], n_hard = hdr[0];
  float *q = get_f32("q", (size_t)B * dim), *k = get_f32("k", (size_t)B * dim), *queue = get_f32("queue", (size_t)K * dim);
  float *l_neg = malloc((size_t)B * K * sizeof *l_neg);
  for (int i = 0; i < B; i++)
    for (int j = 0; j < K; j++) {
      float d = 0.f;
      for (int c = 0; c < dim; c++) d += q[(size_t)i * dim + c] * queue[(size_t)j * dim + c];
      l_neg[(size_t)i * K + j] = d;
    }
  float *dq = malloc((size_t)B * dim * sizeof *dq), *dq_plain = malloc((size_t)B * dim * sizeof *dq);
  int cases_run = 0;

  for (int ci = 0; ci < hdr[1]; ci++) {
    char name[64];
    int32_t counts[6];
    float params[3];
    snprintf(name, sizeof name, "c%d.counts", ci);
    get_i32(name, counts, 6);
    snprintf(name, sizeof name, "c%d.params", ci);
    CHECK_OK(synco_st_get_f32(&st, name, params, 3, NULL, 0));
    synco_negatives_config cfg = {.n_hard = n_hard, .sigma = params[0], .delta = params[1], .eta = params[2]};
    for (int t = 0; t < 6; t++) cfg.n[t] = counts[t];
    const int S = synco_negatives_total(&cfg);
    synco_negatives_draws d;
    CHECK_OK(synco_negatives_init(&d, test_be(), &cfg, B, dim, K));
    static const char *posname[6] = {"pos1", "pos2", "pos3", "pos4", "pos5", "pos6"};
    static const char *coefname[3] = {"alpha", "beta", "gamma"};
    for (int t = 0; t < 6; t++) {
      if (!cfg.n[t]) continue;
      snprintf(name, sizeof name, "c%d.%s", ci, posname[t]);
      get_i32(name, d.pos[t], (size_t)B * cfg.n[t] * (t == 2 ? 2 : 1));
      if (t < 3) {
        snprintf(name, sizeof name, "c%d.%s", ci, coefname[t]);
        CHECK_OK(synco_st_get_f32(&st, name, d.coef[t], (size_t)B * cfg.n[t], NULL, 0));
      }
    }
    if (cfg.n[3]) {
      snprintf(name, sizeof name, "c%d.noise", ci);
      CHECK_OK(synco_st_get_f32(&st, name, d.noise, (size_t)B * cfg.n[3] * dim, NULL, 0));
    }

    char what[96];
    if (S > 0) {
      /* the synthetic logits and hard sets alone */
      float *syn = malloc((size_t)B * S * sizeof *syn);
      CHECK_OK(synco_negatives_logits(&d, syn, S, l_neg, K, q, queue, T));
      snprintf(name, sizeof name, "c%d.syn_logits", ci);
      float *ref = get_f32(name, (size_t)B * S);
      snprintf(what, sizeof what, "case %d synthetic logits", ci);
      CHECK_CLOSE(what, syn, ref, (size_t)B * S, 2e-5, 1e-5);
      int32_t *hard = malloc((size_t)B * n_hard * sizeof *hard);
      snprintf(name, sizeof name, "c%d.hard", ci);
      get_i32(name, hard, (size_t)B * n_hard);
      int same = memcmp(hard, d.hard, (size_t)B * n_hard * sizeof *hard) == 0;
      if (!same) fprintf(stderr, "case %d: hard sets differ from torch.topk\n", ci);
      CHECK(same);
      free(hard);
      free(ref);
      free(syn);
    }

    /* the whole loss */
    synco_infonce_scratch sc;
    CHECK_OK(synco_infonce_init(&sc, test_be(), B, K, dim, S));
    float loss = NAN, acc = NAN, ref_loss, ref_acc;
    CHECK_OK(synco_contrastive_loss(&sc, &loss, &acc, dq, q, k, queue, B, K, dim, T, &cfg, &d));
    snprintf(name, sizeof name, "c%d.loss", ci);
    CHECK_OK(synco_st_get_f32(&st, name, &ref_loss, 1, NULL, 0));
    snprintf(name, sizeof name, "c%d.acc", ci);
    CHECK_OK(synco_st_get_f32(&st, name, &ref_acc, 1, NULL, 0));
    snprintf(what, sizeof what, "case %d loss", ci);
    CHECK_CLOSE(what, &loss, &ref_loss, 1, 1e-5, 1e-5);
    snprintf(what, sizeof what, "case %d accuracy", ci);
    CHECK_CLOSE(what, &acc, &ref_acc, 1, 0, 0);
    snprintf(name, sizeof name, "c%d.dq", ci);
    float *ref_dq = get_f32(name, (size_t)B * dim);
    snprintf(what, sizeof what, "case %d dL/dq", ci);
    CHECK_CLOSE(what, dq, ref_dq, (size_t)B * dim, 1e-6, 1e-4);
    free(ref_dq);

    if (S == 0) {
      /* all counts 0: the same as the plain path and as plain MoCo-v2 in double */
      synco_infonce_scratch sp;
      CHECK_OK(synco_infonce_init(&sp, test_be(), B, K, dim, 0));
      float loss_plain = NAN, acc_plain = NAN;
      CHECK_OK(synco_contrastive_loss(&sp, &loss_plain, &acc_plain, dq_plain, q, k, queue, B, K, dim, T, NULL, NULL));
      CHECK(loss_plain == loss);
      CHECK(acc_plain == acc);
      CHECK(memcmp(dq_plain, dq, (size_t)B * dim * sizeof *dq) == 0);
      float *dq_ref = malloc((size_t)B * dim * sizeof *dq_ref);
      const float lr = (float)moco_reference(dq_ref, q, k, queue, B, K, dim, T);
      CHECK_CLOSE("plain MoCo loss vs double reference", &loss_plain, &lr, 1, 1e-6, 1e-6);
      CHECK_CLOSE("plain MoCo dq vs double reference", dq_plain, dq_ref, (size_t)B * dim, 1e-7, 1e-5);
      free(dq_ref);
      synco_infonce_free(&sp);
    }
    synco_infonce_free(&sc);
    synco_negatives_free(&d);
    cases_run++;
  }
  CHECK(cases_run == 9);

  /* a position outside the hard set is an error, not an out-of-bounds read */
  synco_negatives_config cfg = {.n_hard = n_hard, .n = {2, 0, 0, 0, 0, 0}};
  synco_negatives_draws d;
  CHECK_OK(synco_negatives_init(&d, test_be(), &cfg, B, dim, K));
  CHECK_OK(synco_negatives_draw(&d, &cfg, B, dim, 1, 2));
  d.pos[0][3] = n_hard;
  float *syn = malloc((size_t)B * 2 * sizeof *syn);
  CHECK(synco_negatives_logits(&d, syn, 2, l_neg, K, q, queue, T) == SYNCO_ERR_ARG);
  free(syn);
  synco_negatives_free(&d);

  free(q);
  free(k);
  free(queue);
  free(l_neg);
  free(dq);
  free(dq_plain);
  synco_st_close(&st);
  return synco_test_finish("negatives_parity");
}
