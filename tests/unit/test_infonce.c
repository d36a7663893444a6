/* InfoNCE and the synthetic-negative machinery: dq of the plain loss against central finite differences; the
 * proxy accuracy's tie rule; the hard set is the top n_hard of q·Qᵀ in descending order; the draws are in their
 * ranges and do not depend on the thread count; the backward of the synthetic logits equals Σ g·s/T computed
 * with materialized synthetic vectors; the matching-probability histogram is sorted and sums to at most 1. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "ssl/infonce.h"
#include "ssl/negatives.h"
#include "test_util.h"

/* The reference backend runs the loss's GEMMs. */
static synco_backend *test_be(void) {
  static synco_backend *be;
  if (!be && synco_backend_ref_create(&be) != SYNCO_OK) abort();
  return be;
}

static void normalize_rows(float *x, int n, int dim) {
  for (int i = 0; i < n; i++) {
    double s = 0.0;
    for (int c = 0; c < dim; c++) s += (double)x[(size_t)i * dim + c] * x[(size_t)i * dim + c];
    const float r = (float)(1.0 / sqrt(s));
    for (int c = 0; c < dim; c++) x[(size_t)i * dim + c] *= r;
  }
}

static void test_finite_differences(void) {
  enum { B = 4, DIM = 8, K = 32 };
  const float T = 0.5f;
  float q[B * DIM], k[B * DIM], queue[K * DIM], dq[B * DIM], fd[B * DIM];
  synco_test_fill(q, B * DIM, 1, -1.f, 1.f);
  synco_test_fill(k, B * DIM, 2, -1.f, 1.f);
  synco_test_fill(queue, K * DIM, 3, -1.f, 1.f);
  normalize_rows(q, B, DIM);
  normalize_rows(k, B, DIM);
  normalize_rows(queue, K, DIM);
  synco_infonce_scratch s;
  CHECK_OK(synco_infonce_init(&s, test_be(), B, K, DIM, 0));
  float loss;
  CHECK_OK(synco_contrastive_loss(&s, &loss, NULL, dq, q, k, queue, B, K, DIM, T, NULL, NULL));
  CHECK(isfinite(loss) && loss > 0.f);
  const float eps = 1e-2f;
  for (int i = 0; i < B * DIM; i++) {
    const float keep = q[i];
    float lp, lm;
    q[i] = keep + eps;
    CHECK_OK(synco_contrastive_loss(&s, &lp, NULL, NULL, q, k, queue, B, K, DIM, T, NULL, NULL));
    q[i] = keep - eps;
    CHECK_OK(synco_contrastive_loss(&s, &lm, NULL, NULL, q, k, queue, B, K, DIM, T, NULL, NULL));
    q[i] = keep;
    fd[i] = (lp - lm) / (2 * eps);
  }
  CHECK_CLOSE("plain InfoNCE dq vs finite differences", dq, fd, B * DIM, 1e-3, 1e-2);
  synco_infonce_free(&s);
}

static void test_accuracy_ties(void) {
  /* q·k equals the best queue logit in row 0 (counts: positive first), is below it in row 1 */
  enum { B = 2, DIM = 2, K = 2 };
  const float q[B * DIM] = {1, 0, 1, 0}, k[B * DIM] = {1, 0, 0, 1}, queue[K * DIM] = {1, 0, 0, 1};
  synco_infonce_scratch s;
  CHECK_OK(synco_infonce_init(&s, test_be(), B, K, DIM, 0));
  float loss, acc;
  CHECK_OK(synco_contrastive_loss(&s, &loss, &acc, NULL, q, k, queue, B, K, DIM, 0.1f, NULL, NULL));
  CHECK(acc == 0.5f);
  /* row 0: logits 10, 10, 0 → loss log(2 + e^-10); row 1: 0, 10, 0 → 10 + log(1 + 2e^-10) */
  const float ref = (float)((log(2 + exp(-10.0)) + 10 + log(1 + 2 * exp(-10.0))) / 2);
  CHECK_CLOSE("loss with ties", &loss, &ref, 1, 1e-6, 1e-6);
  synco_infonce_free(&s);
  /* a wrong size is refused with a message */
  CHECK_OK(synco_infonce_init(&s, test_be(), B, K, DIM, 0));
  CHECK(synco_contrastive_loss(&s, &loss, &acc, NULL, q, k, queue, B + 1, K, DIM, 0.1f, NULL, NULL) == SYNCO_ERR_ARG);
  CHECK(synco_contrastive_loss(&s, &loss, &acc, NULL, q, k, queue, B, K, DIM, 0.f, NULL, NULL) == SYNCO_ERR_ARG);
  synco_infonce_free(&s);
}

static void test_negatives(void) {
  enum { B = 6, DIM = 12, K = 40, NH = 10 };
  const float T = 0.2f;
  synco_negatives_config cfg = {.n_hard = NH, .n = {5, 4, 6, 3, 2, 3}, .sigma = 0.2f, .delta = 0.3f, .eta = 0.1f};
  float q[B * DIM], queue[K * DIM], l_neg[B * K];
  synco_test_fill(q, B * DIM, 11, -1.f, 1.f);
  synco_test_fill(queue, K * DIM, 12, -1.f, 1.f);
  q[5] = 0.f; /* sign(0) = 0 for type 6 */
  normalize_rows(q, B, DIM);
  normalize_rows(queue, K, DIM);
  for (int i = 0; i < B; i++)
    for (int j = 0; j < K; j++) {
      float d = 0.f;
      for (int c = 0; c < DIM; c++) d += q[i * DIM + c] * queue[j * DIM + c];
      l_neg[i * K + j] = d;
    }
  /* config checks */
  synco_negatives_config bad = cfg;
  bad.n_hard = 2;
  CHECK(synco_negatives_check(&bad, K) == SYNCO_ERR_ARG);
  bad = cfg;
  bad.n_hard = K + 1;
  CHECK(synco_negatives_check(&bad, K) == SYNCO_ERR_ARG);
  CHECK_OK(synco_negatives_check(&cfg, K));

  synco_negatives_draws d1, d2;
  CHECK_OK(synco_negatives_init(&d1, test_be(), &cfg, B, DIM, K));
  CHECK_OK(synco_negatives_init(&d2, test_be(), &cfg, B, DIM, K));
  const int nt = omp_get_max_threads();
  omp_set_num_threads(1);
  CHECK_OK(synco_negatives_draw(&d1, &cfg, B, DIM, 42, 7));
  omp_set_num_threads(nt > 1 ? nt : 2);
  CHECK_OK(synco_negatives_draw(&d2, &cfg, B, DIM, 42, 7));
  omp_set_num_threads(nt);
  for (int t = 0; t < 6; t++)
    CHECK(memcmp(d1.pos[t], d2.pos[t], (size_t)B * cfg.n[t] * (t == 2 ? 2 : 1) * sizeof(int32_t)) == 0);
  for (int t = 0; t < 3; t++) CHECK(memcmp(d1.coef[t], d2.coef[t], (size_t)B * cfg.n[t] * sizeof(float)) == 0);
  CHECK(memcmp(d1.noise, d2.noise, (size_t)B * cfg.n[3] * DIM * sizeof(float)) == 0);
  for (int i = 0; i < B * cfg.n[0]; i++) CHECK(d1.coef[0][i] >= 0.f && d1.coef[0][i] < 0.5f);
  for (int i = 0; i < B * cfg.n[1]; i++) CHECK(d1.coef[1][i] >= 1.f && d1.coef[1][i] < 1.5f);
  for (int i = 0; i < B * cfg.n[2]; i++) CHECK(d1.coef[2][i] >= 0.f && d1.coef[2][i] < 1.f);
  for (int i = 0; i < B * cfg.n[2] * 2; i++) CHECK(d1.pos[2][i] >= 0 && d1.pos[2][i] < NH);
  /* another step draws differently */
  CHECK_OK(synco_negatives_draw(&d2, &cfg, B, DIM, 42, 8));
  CHECK(memcmp(d1.coef[0], d2.coef[0], (size_t)B * cfg.n[0] * sizeof(float)) != 0);

  const int S = synco_negatives_total(&cfg);
  float *syn = malloc((size_t)B * S * sizeof *syn);
  CHECK_OK(synco_negatives_logits(&d1, syn, S, l_neg, K, q, queue, T));
  /* hard sets: descending, and nothing outside is larger than the smallest inside */
  for (int i = 0; i < B; i++) {
    const int32_t *h = d1.hard + i * NH;
    for (int p = 1; p < NH; p++) CHECK(l_neg[i * K + h[p - 1]] >= l_neg[i * K + h[p]]);
    for (int j = 0; j < K; j++) {
      int in = 0;
      for (int p = 0; p < NH; p++) in |= h[p] == j;
      if (!in) CHECK(l_neg[i * K + j] <= l_neg[i * K + h[NH - 1]]);
    }
  }
  /* materialize every synthetic vector: logits and Σ g·s/T must match the closed forms */
  float *g = malloc((size_t)B * S * sizeof *g), *gr = calloc((size_t)B * K, sizeof *gr);
  float dq[B * DIM], dq_ref[B * DIM], ref_logit[B * 64];
  synco_test_fill(g, (size_t)B * S, 13, -1.f, 1.f);
  memset(dq, 0, sizeof dq);
  CHECK_OK(synco_negatives_backward(&d1, dq, gr, K, g, S, q, T));
  for (int i = 0; i < B; i++)
    for (int j = 0; j < K; j++)
      for (int c = 0; c < DIM; c++) dq[i * DIM + c] += gr[i * K + j] * queue[j * DIM + c];
  for (int i = 0; i < B; i++) {
    const float *qi = q + i * DIM;
    const int32_t *h = d1.hard + i * NH;
    double acc[DIM] = {0};
    int o = 0;
    for (int t = 0; t < 6; t++)
      for (int s = 0; s < cfg.n[t]; s++, o++) {
        double v[DIM];
        const int p = t == 2 ? d1.pos[2][(i * cfg.n[2] + s) * 2] : d1.pos[t][i * cfg.n[t] + s];
        const float *n = queue + h[p] * DIM;
        for (int c = 0; c < DIM; c++) {
          double x = 0.0;
          switch (t) {
            case 0: { const double a = d1.coef[0][i * cfg.n[0] + s]; x = a * qi[c] + (1 - a) * n[c]; } break;
            case 1: { const double b = d1.coef[1][i * cfg.n[1] + s]; x = qi[c] + b * (n[c] - qi[c]); } break;
            case 2: {
              const double gm = d1.coef[2][i * cfg.n[2] + s];
              const float *n2 = queue + h[d1.pos[2][(i * cfg.n[2] + s) * 2 + 1]] * DIM;
              x = gm * n[c] + (1 - gm) * n2[c];
            } break;
            case 3: x = n[c] + d1.noise[(i * cfg.n[3] + s) * DIM + c]; break;
            case 4: x = n[c] + cfg.delta * qi[c]; break;
            case 5: x = n[c] + cfg.eta * (qi[c] > 0 ? 1.0 : qi[c] < 0 ? -1.0 : 0.0); break;
          }
          v[c] = x;
        }
        double nn = 0.0, qs = 0.0;
        for (int c = 0; c < DIM; c++) nn += v[c] * v[c];
        for (int c = 0; c < DIM; c++) qs += qi[c] * v[c] / sqrt(nn);
        ref_logit[o] = (float)(qs / T);
        for (int c = 0; c < DIM; c++) acc[c] += g[i * S + o] * v[c] / sqrt(nn) / T;
      }
    CHECK_CLOSE("synthetic logits vs materialized", syn + i * S, ref_logit, (size_t)S, 1e-5, 1e-5);
    for (int c = 0; c < DIM; c++) dq_ref[i * DIM + c] = (float)acc[c];
  }
  CHECK_CLOSE("synthetic backward vs materialized", dq, dq_ref, B * DIM, 1e-5, 1e-5);

  /* the full loss with negatives at 1 and 2 threads: identical */
  float k[B * DIM], dqa[B * DIM], dqb[B * DIM], la, lb, aa, ab;
  synco_test_fill(k, B * DIM, 14, -1.f, 1.f);
  normalize_rows(k, B, DIM);
  synco_infonce_scratch sc;
  CHECK_OK(synco_infonce_init(&sc, test_be(), B, K, DIM, S));
  omp_set_num_threads(1);
  CHECK_OK(synco_contrastive_loss(&sc, &la, &aa, dqa, q, k, queue, B, K, DIM, T, &cfg, &d1));
  omp_set_num_threads(2);
  CHECK_OK(synco_contrastive_loss(&sc, &lb, &ab, dqb, q, k, queue, B, K, DIM, T, &cfg, &d1));
  omp_set_num_threads(nt);
  CHECK(la == lb && aa == ab);
  CHECK_CLOSE("dq at 1 and 2 threads", dqa, dqb, B * DIM, 1e-7, 1e-6);
  /* MoCo's loss and accuracy beside them: the same rows without the synthetic logits (a scratch without room for
   * any) give the loss and proxy accuracy that loss_queue and acc_queue report */
  const float lq = sc.loss_queue, aq = sc.acc_queue;
  synco_infonce_scratch plain;
  CHECK_OK(synco_infonce_init(&plain, test_be(), B, K, DIM, 0));
  float lp, ap;
  CHECK_OK(synco_contrastive_loss(&plain, &lp, &ap, NULL, q, k, queue, B, K, DIM, T, NULL, NULL));
  CHECK_CLOSE("MoCo-only loss beside the SynCo loss", &lq, &lp, 1, 1e-6, 1e-5);
  CHECK(aq == ap);
  CHECK(plain.loss_queue == lp && plain.acc_queue == ap); /* without synthetic logits the two are one */
  CHECK(la > lq);                                           /* more negatives: a larger loss */
  synco_infonce_free(&plain);
  synco_infonce_free(&sc);

  free(syn);
  free(g);
  free(gr);
  synco_negatives_free(&d1);
  synco_negatives_free(&d2);
}

/* the type-4 noise is N(0, σ²): moments and tail share over half a million draws */
static void test_noise_distribution(void) {
  enum { B = 64, DIM = 127 };
  const float sigma = 0.5f;
  synco_negatives_config cfg = {.n_hard = 64, .n = {0, 0, 0, 64, 0, 0}, .sigma = sigma};
  synco_negatives_draws d;
  CHECK_OK(synco_negatives_init(&d, test_be(), &cfg, B, DIM, 64));
  CHECK_OK(synco_negatives_draw(&d, &cfg, B, DIM, 3, 0));
  const size_t n = (size_t)B * 64 * DIM;
  double m1 = 0, m2 = 0, m4 = 0, tail = 0;
  for (size_t i = 0; i < n; i++) {
    const double x = d.noise[i] / sigma;
    CHECK(isfinite(x));
    m1 += x;
    m2 += x * x;
    m4 += x * x * x * x;
    tail += fabs(x) > 2.0;
  }
  m1 /= n;
  m2 /= n;
  m4 /= n;
  tail /= n;
  if (!(fabs(m1) < 0.01 && fabs(m2 - 1) < 0.01 && fabs(m4 - 3) < 0.05 && fabs(tail - 0.0455) < 0.002))
    fprintf(stderr, "noise moments: mean %g var %g m4 %g P(|x|>2) %g\n", m1, m2, m4, tail);
  CHECK(fabs(m1) < 0.01);
  CHECK(fabs(m2 - 1) < 0.01);
  CHECK(fabs(m4 - 3) < 0.05);
  CHECK(fabs(tail - 0.0455) < 0.002);
  synco_negatives_free(&d);
}

/* ties in the queue logits: equal values keep ascending queue order (as a stable sort would) */
static void test_hard_set_ties(void) {
  enum { B = 3, DIM = 4, K = 50, NH = 20 };
  synco_negatives_config cfg = {.n_hard = NH, .n = {1, 0, 0, 0, 0, 0}};
  synco_negatives_draws d;
  CHECK_OK(synco_negatives_init(&d, test_be(), &cfg, B, DIM, K));
  CHECK_OK(synco_negatives_draw(&d, &cfg, B, DIM, 1, 1));
  float q[B * DIM] = {0}, queue[K * DIM] = {0}, l_neg[B * K], syn[B];
  for (int i = 0; i < B; i++) q[i * DIM] = 1.f;
  for (int j = 0; j < K; j++) queue[j * DIM] = 1.f;
  for (int j = 0; j < K; j++) {
    l_neg[j] = 0.25f;                      /* all equal */
    l_neg[K + j] = (float)(j % 3);         /* 2 at j = 2, 5, 8, ... (16 of them), then 1 at 1, 4, 7, ... */
    l_neg[2 * K + j] = (float)(K - j) * 0.01f; /* strictly decreasing */
  }
  CHECK_OK(synco_negatives_logits(&d, syn, 1, l_neg, K, q, queue, 1.f));
  for (int p = 0; p < NH; p++) {
    CHECK(d.hard[p] == p);
    CHECK(d.hard[NH + p] == (p < 16 ? 3 * p + 2 : 3 * (p - 16) + 1));
    CHECK(d.hard[2 * NH + p] == p);
  }
  synco_negatives_free(&d);
}

int main(void) {
  test_hard_set_ties();
  test_noise_distribution();
  test_finite_differences();
  test_accuracy_ties();
  test_negatives();
  return synco_test_finish("infonce");
}
