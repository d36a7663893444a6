/* The reference (and CPU) implementation of SynCo's synthetic negatives: the draws from the counter RNG, the
 * hard-set selection, the closed-form synthetic logits and their backward (see ssl/negatives.h for the contract
 * and SYNCO.md for the method). Per query the hard set is found by a histogram selection over the K logits and a
 * radix sort of the winners, so position p is the p-th largest logit with ties going to the lower queue index.
 * Each synthetic s_raw = a·x + b·y is known only through dot products: q·s_raw and ‖s_raw‖² come from q·n (the
 * caller's l_neg), ‖n‖² (one pass over the queue per call), n·n' (type 3), q·ε, n·ε, ε·ε (type 4) and n·sign(q)
 * (type 6), combined in double. That makes the forward O(B·(K + n3·dim + n4·dim + n6·dim)) and lets the backward
 * fold the queue-row parts of Σ g·s into the caller's queue-logit gradient, which one GEMM turns into dq.
 * Parallel over queries; nothing is allocated per call. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref_internal.h"
#include "base/rng.h"
#include "kernels/normal_kernel.h"
#include "tensor/negatives_op.h"

#define SEL_BINS 2048 /* histogram bins of the hard-set selection (ssl/negatives.c sizes the workspace alike) */

/* ---- draws ------------------------------------------------------------------------------------------ */

static void normals_from_words(float *restrict out, const uint32_t *restrict w, int dim, float sigma) {
  const int pairs = dim / 2;
#pragma omp simd
  for (int k = 0; k < pairs; k++) synco_k_box_muller(w[2 * k], w[2 * k + 1], sigma, &out[2 * k], &out[2 * k + 1]);
  if (dim & 1) {
    float spare;
    synco_k_box_muller(w[dim - 1], w[dim], sigma, &out[dim - 1], &spare);
  }
}

synco_status synco_ref_neg_draw(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                                uint64_t seed, uint64_t step, uint64_t query0) {
  (void)be;
  if (d->total == 0) return SYNCO_OK;
  const int B = d->B, dim = d->dim;
  const uint32_t nh = (uint32_t)d->n_hard;
  const float sigma = cfg->sigma;
#pragma omp parallel for schedule(static) num_threads(d->nthreads)
  for (int i = 0; i < B; i++) {
    synco_rng r = synco_rng_make(seed, step, query0 + (uint64_t)i, SYNCO_RNG_NEGATIVES);
    for (int s = 0, n = d->n[0]; s < n; s++) {
      d->pos[0][(size_t)i * n + s] = (int32_t)synco_rng_below(&r, nh);
      d->coef[0][(size_t)i * n + s] = 0.5f * synco_rng_uniform(&r);
    }
    for (int s = 0, n = d->n[1]; s < n; s++) {
      d->pos[1][(size_t)i * n + s] = (int32_t)synco_rng_below(&r, nh);
      d->coef[1][(size_t)i * n + s] = 1.0f + 0.5f * synco_rng_uniform(&r);
    }
    for (int s = 0, n = d->n[2]; s < n; s++) {
      d->pos[2][((size_t)i * n + s) * 2] = (int32_t)synco_rng_below(&r, nh);
      d->pos[2][((size_t)i * n + s) * 2 + 1] = (int32_t)synco_rng_below(&r, nh);
      d->coef[2][(size_t)i * n + s] = synco_rng_uniform(&r);
    }
    uint32_t *w = d->words + (size_t)omp_get_thread_num() * (size_t)(dim + 1);
    for (int s = 0, n = d->n[3]; s < n; s++) {
      d->pos[3][(size_t)i * n + s] = (int32_t)synco_rng_below(&r, nh);
      for (int c = 0; c < dim + (dim & 1); c++) w[c] = synco_rng_u32(&r);
      normals_from_words(d->noise + ((size_t)i * n + s) * (size_t)dim, w, dim, sigma);
    }
    for (int t = 4; t < SYNCO_NEG_TYPES; t++)
      for (int s = 0, n = d->n[t]; s < n; s++) d->pos[t][(size_t)i * n + s] = (int32_t)synco_rng_below(&r, nh);
  }
  return SYNCO_OK;
}

/* ---- hard-set selection ----------------------------------------------------------------------------- */

/* Maps a float to a uint32 whose unsigned order is the float order. */
static inline uint32_t order_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Radix pass of a stable descending sort on 32-bit keys: digit = (key >> shift) & mask. */
static void radix_pass_desc(uint32_t *restrict kout, int32_t *restrict iout, const uint32_t *restrict kin,
                            const int32_t *restrict iin, int n, int shift, uint32_t mask, uint32_t *restrict cnt) {
  memset(cnt, 0, (size_t)(mask + 1) * sizeof *cnt);
  for (int j = 0; j < n; j++) cnt[(kin[j] >> shift) & mask]++;
  uint32_t run = 0;
  for (int b = (int)mask; b >= 0; b--) { /* largest digit first */
    const uint32_t c = cnt[b];
    cnt[b] = run;
    run += c;
  }
  for (int j = 0; j < n; j++) {
    const uint32_t at = cnt[(kin[j] >> shift) & mask]++;
    kout[at] = kin[j];
    iout[at] = iin[j];
  }
}

/* Monotone in v: a larger value never gets a smaller bin (NaN goes to bin 0). */
static inline int bin_of(float v, float mn, float scale, float top) {
  float f = (v - mn) * scale;
  f = f > 0.f ? f : 0.f;
  return (int)(f < top ? f : top);
}

/* Writes to h[0..nh) the indices of the nh largest of x[0..K), largest first, ties to the lower index.
 * A linear histogram of the row over [min, max] finds the bin holding the nh-th largest value; everything
 * from that bin up (nh plus a few) is collected in index order and sorted by a stable three-pass LSD radix
 * sort on the order-preserving bits, so the cost is a few passes over K and over nh, with no comparisons
 * that depend on the data. ws: 4·K + SEL_BINS words. Non-finite values only make the result arbitrary (but
 * deterministic); a training step with them fails on its loss anyway. */
static void select_hard(int32_t *h, const float *x, int K, int nh, uint32_t *ws) {
  uint32_t *k0 = ws, *k1 = ws + K, *cnt = ws + 4 * (size_t)K;
  int32_t *i0 = (int32_t *)(ws + 2 * (size_t)K), *i1 = (int32_t *)(ws + 3 * (size_t)K);
  float mn = x[0], mx = x[0];
#pragma omp simd reduction(min : mn) reduction(max : mx)
  for (int j = 0; j < K; j++) {
    mn = x[j] < mn ? x[j] : mn;
    mx = x[j] > mx ? x[j] : mx;
  }
  const float top = (float)(SEL_BINS - 1);
  const float scale = (mx > mn && isfinite(mx - mn)) ? (float)SEL_BINS / (mx - mn) : 0.f;
  uint32_t *bin = k1; /* free until the radix passes */
#pragma omp simd
  for (int j = 0; j < K; j++) bin[j] = (uint32_t)bin_of(x[j], mn, scale, top);
  memset(cnt, 0, SEL_BINS * sizeof *cnt);
  for (int j = 0; j < K; j++) cnt[bin[j]]++;
  uint32_t cut = SEL_BINS - 1;
  for (uint32_t run = cnt[cut]; run < (uint32_t)nh && cut > 0;) run += cnt[--cut];
  int c = 0;
  for (int j = 0; j < K; j++) { /* branch-free: always write, advance only when kept */
    k0[c] = order_bits(x[j]);
    i0[c] = j;
    c += bin[j] >= cut;
  }
  radix_pass_desc(k1, i1, k0, i0, c, 0, 0x7FF, cnt);
  radix_pass_desc(k0, i0, k1, i1, c, 11, 0x7FF, cnt);
  radix_pass_desc(k1, i1, k0, i0, c, 22, 0x3FF, cnt);
  memcpy(h, i1, (size_t)nh * sizeof *h);
}

/* ---- forward ---------------------------------------------------------------------------------------- */

static inline float dotf(const float *a, const float *b, int n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int c = 0; c < n; c++) s += a[c] * b[c];
  return s;
}

/* Logit q·s/T of s = s_raw / max(‖s_raw‖, eps) from num = q·s_raw and den2 = ‖s_raw‖². */
static inline float finish(double num, double den2, double invT, float *inv_out) {
  double nrm = sqrt(den2 > 0.0 ? den2 : 0.0);
  if (nrm < 1e-12) nrm = 1e-12;
  const double inv = 1.0 / nrm;
  *inv_out = (float)inv;
  return (float)(num * inv * invT);
}

synco_status synco_ref_neg_logits(synco_backend *be, synco_negatives_draws *d, float *syn, int ld_syn,
                                  const float *l_neg, int ld_lneg, const float *q, const float *queue, float T) {
  (void)be;
  if (!(T > 0.f) || !isfinite(T)) return synco_fail(SYNCO_ERR_ARG, "negatives: temperature %g, expected > 0", (double)T);
  if (d->total == 0) return SYNCO_OK;
  const int B = d->B, dim = d->dim, K = d->K, nh = d->n_hard, total = d->total;
  const int n1 = d->n[0], n2 = d->n[1], n3 = d->n[2], n4 = d->n[3], n5 = d->n[4], n6 = d->n[5];
  const double delta = d->delta, eta = d->eta, invT = 1.0 / T;
  int nt = omp_get_max_threads();
  if (nt > d->nthreads) nt = d->nthreads;
  int bad = 0;

#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (int j = 0; j < K; j++) d->row_sq[j] = dotf(queue + (size_t)j * dim, queue + (size_t)j * dim, dim);

    const int tid = omp_get_thread_num();
    uint32_t *ws = d->sel + (size_t)tid * (4 * (size_t)K + SEL_BINS);
    float *sg = d->sgn + (size_t)tid * dim;
#pragma omp for schedule(static) reduction(| : bad)
    for (int i = 0; i < B; i++) {
      const float *qi = q + (size_t)i * dim, *li = l_neg + (size_t)i * ld_lneg;
      int32_t *h = d->hard + (size_t)i * nh;
      select_hard(h, li, K, nh, ws);

      double qq = 0.0, qabs = 0.0, nz = 0.0;
      for (int c = 0; c < dim; c++) {
        qq += (double)qi[c] * qi[c];
        qabs += fabs((double)qi[c]);
        sg[c] = qi[c] > 0.f ? 1.f : (qi[c] < 0.f ? -1.f : 0.f);
        nz += sg[c] != 0.f;
      }
      float *out = syn + (size_t)i * ld_syn, *inv = d->inv_norm + (size_t)i * total;
      int o = 0;
/* Reads a position, clamping a bad one (from an externally filled draw) and flagging it. */
#define ROW(pp) (((unsigned)(pp) < (unsigned)nh) ? h[(pp)] : (bad = 1, h[0]))
      for (int s = 0; s < n1; s++, o++) { /* α·q + (1−α)·n */
        const int j = ROW(d->pos[0][(size_t)i * n1 + s]);
        const double a = d->coef[0][(size_t)i * n1 + s], b = 1.0 - a, qn = li[j];
        out[o] = finish(a * qq + b * qn, a * a * qq + 2 * a * b * qn + b * b * d->row_sq[j], invT, &inv[o]);
      }
      for (int s = 0; s < n2; s++, o++) { /* q + β·(n − q) = (1−β)·q + β·n */
        const int j = ROW(d->pos[1][(size_t)i * n2 + s]);
        const double bt = d->coef[1][(size_t)i * n2 + s], a = 1.0 - bt, qn = li[j];
        out[o] = finish(a * qq + bt * qn, a * a * qq + 2 * a * bt * qn + bt * bt * d->row_sq[j], invT, &inv[o]);
      }
      for (int s = 0; s < n3; s++, o++) { /* γ·n_i + (1−γ)·n_j */
        const int32_t *pp = d->pos[2] + ((size_t)i * n3 + s) * 2;
        const int ja = ROW(pp[0]), jb = ROW(pp[1]);
        const double g = d->coef[2][(size_t)i * n3 + s], g1 = 1.0 - g;
        const double ab = dotf(queue + (size_t)ja * dim, queue + (size_t)jb * dim, dim);
        out[o] = finish(g * li[ja] + g1 * li[jb], g * g * d->row_sq[ja] + 2 * g * g1 * ab + g1 * g1 * d->row_sq[jb],
                        invT, &inv[o]);
      }
      for (int s = 0; s < n4; s++, o++) { /* n + ε */
        const int j = ROW(d->pos[3][(size_t)i * n4 + s]);
        const float *e = d->noise + ((size_t)i * n4 + s) * (size_t)dim, *n = queue + (size_t)j * dim;
        float qe = 0.f, ne = 0.f, ee = 0.f;
#pragma omp simd reduction(+ : qe, ne, ee)
        for (int c = 0; c < dim; c++) {
          qe += qi[c] * e[c];
          ne += n[c] * e[c];
          ee += e[c] * e[c];
        }
        out[o] = finish((double)li[j] + qe, (double)d->row_sq[j] + 2.0 * ne + ee, invT, &inv[o]);
      }
      for (int s = 0; s < n5; s++, o++) { /* n + δ·q */
        const int j = ROW(d->pos[4][(size_t)i * n5 + s]);
        const double qn = li[j];
        out[o] = finish(qn + delta * qq, d->row_sq[j] + 2 * delta * qn + delta * delta * qq, invT, &inv[o]);
      }
      for (int s = 0; s < n6; s++, o++) { /* n + η·sign(q) */
        const int j = ROW(d->pos[5][(size_t)i * n6 + s]);
        const double ns = dotf(queue + (size_t)j * dim, sg, dim), qn = li[j];
        out[o] = finish(qn + eta * qabs, d->row_sq[j] + 2 * eta * ns + eta * eta * nz, invT, &inv[o]);
      }
#undef ROW
    }
  }
  if (bad) return synco_fail(SYNCO_ERR_ARG, "negatives: a drawn position is outside 0..n_hard-1 (n_hard = %d)", nh);
  return SYNCO_OK;
}

/* ---- backward --------------------------------------------------------------------------------------- */

synco_status synco_ref_neg_backward(synco_backend *be, synco_negatives_draws *d, float *dq, float *g_raw,
                                    int ld_graw, const float *g_syn, int ld_gsyn, const float *q, float T) {
  (void)be;
  if (d->total == 0) return SYNCO_OK;
  const int B = d->B, dim = d->dim, nh = d->n_hard, total = d->total;
  const int n1 = d->n[0], n2 = d->n[1], n3 = d->n[2], n4 = d->n[3], n5 = d->n[4], n6 = d->n[5];
  const double delta = d->delta, eta = d->eta;
  int nt = omp_get_max_threads();
  if (nt > d->nthreads) nt = d->nthreads;
  const double invT = 1.0 / T;

#pragma omp parallel num_threads(nt)
  {
    float *W = d->wpos + (size_t)omp_get_thread_num() * nh;
#pragma omp for schedule(static)
    for (int i = 0; i < B; i++) {
      const float *g = g_syn + (size_t)i * ld_gsyn, *inv = d->inv_norm + (size_t)i * total, *qi = q + (size_t)i * dim;
      float *dqi = dq + (size_t)i * dim, *gr = g_raw + (size_t)i * ld_graw;
      const int32_t *h = d->hard + (size_t)i * nh;
      memset(W, 0, (size_t)nh * sizeof *W);
      double cq = 0.0, cs = 0.0;
      int o = 0;
      /* positions were validated by the forward; clamp anyway so a misuse cannot write out of bounds */
#define POS(pp) (((unsigned)(pp) < (unsigned)nh) ? (pp) : 0)
      for (int s = 0; s < n1; s++, o++) {
        const double w = g[o] * inv[o] * invT, a = d->coef[0][(size_t)i * n1 + s];
        cq += w * a;
        W[POS(d->pos[0][(size_t)i * n1 + s])] += (float)(w * (1.0 - a));
      }
      for (int s = 0; s < n2; s++, o++) {
        const double w = g[o] * inv[o] * invT, bt = d->coef[1][(size_t)i * n2 + s];
        cq += w * (1.0 - bt);
        W[POS(d->pos[1][(size_t)i * n2 + s])] += (float)(w * bt);
      }
      for (int s = 0; s < n3; s++, o++) {
        const double w = g[o] * inv[o] * invT, gm = d->coef[2][(size_t)i * n3 + s];
        const int32_t *pp = d->pos[2] + ((size_t)i * n3 + s) * 2;
        W[POS(pp[0])] += (float)(w * gm);
        W[POS(pp[1])] += (float)(w * (1.0 - gm));
      }
      for (int s = 0; s < n4; s++, o++) {
        const float w = (float)(g[o] * inv[o] * invT);
        const float *e = d->noise + ((size_t)i * n4 + s) * (size_t)dim;
        W[POS(d->pos[3][(size_t)i * n4 + s])] += w;
#pragma omp simd
        for (int c = 0; c < dim; c++) dqi[c] += w * e[c];
      }
      for (int s = 0; s < n5; s++, o++) {
        const double w = g[o] * inv[o] * invT;
        cq += w * delta;
        W[POS(d->pos[4][(size_t)i * n5 + s])] += (float)w;
      }
      for (int s = 0; s < n6; s++, o++) {
        const double w = g[o] * inv[o] * invT;
        cs += w * eta;
        W[POS(d->pos[5][(size_t)i * n6 + s])] += (float)w;
      }
#undef POS
      const float fq = (float)cq, fs = (float)cs;
#pragma omp simd
      for (int c = 0; c < dim; c++) dqi[c] += fq * qi[c] + (qi[c] > 0.f ? fs : (qi[c] < 0.f ? -fs : 0.f));
      for (int p = 0; p < nh; p++) gr[h[p]] += W[p];
    }
  }
  return SYNCO_OK;
}
