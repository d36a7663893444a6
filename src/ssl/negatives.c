/* SynCo synthetic negatives: hard-set selection, closed-form synthetic logits and their backward (see
 * negatives.h for the contract and SYNCO.md for the method). Per query the hard set is found by a histogram
 * selection over the K logits and a radix sort of the winners, so position p is the p-th largest logit with ties
 * going to the lower queue index. Each synthetic s_raw = a·x + b·y is known only through dot products:
 * q·s_raw and ‖s_raw‖² come from q·n (the caller's l_neg), ‖n‖² (one pass over the queue per call), n·n' (type
 * 3), q·ε, n·ε, ε·ε (type 4) and n·sign(q) (type 6), combined in double. That makes the forward
 * O(B·(K + n3·dim + n4·dim + n6·dim)) and lets the backward fold the queue-row parts of Σ g·s into the caller's
 * queue-logit gradient, which one GEMM turns into dq. Parallel over queries; nothing is allocated per call. */
#include "ssl/negatives.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/status.h"

#define SEL_BINS 2048 /* histogram bins of the hard-set selection */

int synco_negatives_total(const synco_negatives_config *cfg) {
  int t = 0;
  for (int i = 0; i < SYNCO_NEG_TYPES; i++) t += cfg->n[i] > 0 ? cfg->n[i] : 0;
  return t;
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

void synco_negatives_free(synco_negatives_draws *d) {
  if (!d) return;
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) free(d->pos[t]);
  for (int t = 0; t < 3; t++) free(d->coef[t]);
  free(d->noise);
  free(d->hard);
  free(d->inv_norm);
  free(d->row_sq);
  free(d->sel);
  free(d->wpos);
  free(d->sgn);
  free(d->words);
  memset(d, 0, sizeof *d);
}

synco_status synco_negatives_init(synco_negatives_draws *d, const synco_negatives_config *cfg, int B, int dim, int K) {
  memset(d, 0, sizeof *d);
  if (B < 1 || dim < 1 || K < 1)
    return synco_fail(SYNCO_ERR_ARG, "negatives: B = %d, dim = %d, K = %d, expected all >= 1", B, dim, K);
  SYNCO_TRY(synco_negatives_check(cfg, K));
  d->B = B;
  d->dim = dim;
  d->K = K;
  d->total = synco_negatives_total(cfg);
  d->n_hard = d->total > 0 ? cfg->n_hard : 0;
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) d->n[t] = cfg->n[t];
  d->delta = cfg->delta;
  d->eta = cfg->eta;
  d->nthreads = omp_get_max_threads();
  if (d->nthreads < 1) d->nthreads = 1;
  if (d->total == 0) return SYNCO_OK;
  const size_t b = (size_t)B, nt = (size_t)d->nthreads;
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) {
    if (d->n[t] == 0) continue;
    d->pos[t] = synco_malloc(b * (size_t)d->n[t] * (t == 2 ? 2 : 1) * sizeof(int32_t));
    if (!d->pos[t]) goto nomem;
    if (t < 3 && !(d->coef[t] = synco_malloc(b * (size_t)d->n[t] * sizeof(float)))) goto nomem;
  }
  if (d->n[3] && !(d->noise = synco_aligned_alloc(b * (size_t)d->n[3] * (size_t)dim * sizeof(float)))) goto nomem;
  if (!(d->hard = synco_malloc(b * (size_t)d->n_hard * sizeof(int32_t)))) goto nomem;
  if (!(d->inv_norm = synco_malloc(b * (size_t)d->total * sizeof(float)))) goto nomem;
  if (!(d->row_sq = synco_malloc((size_t)K * sizeof(float)))) goto nomem;
  if (!(d->sel = synco_aligned_alloc(nt * (4 * (size_t)K + SEL_BINS) * sizeof(uint32_t)))) goto nomem;
  if (!(d->wpos = synco_malloc(nt * (size_t)d->n_hard * sizeof(float)))) goto nomem;
  if (!(d->sgn = synco_aligned_alloc(nt * (size_t)dim * sizeof(float)))) goto nomem;
  if (!(d->words = synco_malloc(nt * (size_t)(dim + 1) * sizeof(uint32_t)))) goto nomem;
  return SYNCO_OK;
nomem:
  synco_negatives_free(d);
  return SYNCO_ERR_NOMEM;
}

/* ---- draws ------------------------------------------------------------------------------------------ */

/* Type-4 noise is B·n4·dim normals per step (a million with the defaults), too many for a scalar libm
 * Box-Muller in the step budget, so it is made here in float from two 24-bit uniforms per pair with
 * branch-free polynomials the compiler vectorizes: log (cephes logf, ~1 ulp) and sin/cos of 2π·u2 by quadrant
 * (Taylor to degree 11/12 on [0, π/2], error < 1e-7), and a Newton square root. */
static inline float poly_log(float x) { /* x in (0, 1] */
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  int e = (int)(u >> 23) - 126;
  u = (u & 0x007FFFFFu) | 0x3F000000u; /* mantissa in [0.5, 1) */
  float m;
  memcpy(&m, &u, sizeof m);
  const int lo = m < 0.70710678f;
  e -= lo;
  m = m + (float)lo * m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y += -2.12194440e-4f * (float)e;
  y += -0.5f * z;
  return m + y + 0.693359375f * (float)e;
}

/* sqrt of x in [1e-8, 100] by Newton on 1/sqrt from the bit-trick estimate (three steps: float accuracy).
 * libm's sqrtf would keep the loop scalar: it may set errno, and the build does not pass -fno-math-errno. */
static inline float poly_sqrt(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u = 0x5F3759DFu - (u >> 1);
  float y;
  memcpy(&y, &u, sizeof y);
  const float hx = 0.5f * x;
  y = y * (1.5f - hx * y * y);
  y = y * (1.5f - hx * y * y);
  y = y * (1.5f - hx * y * y);
  return x * y;
}

/* One Box-Muller pair from two words: (r·cos θ, r·sin θ), θ = 2π·u2 built from its quadrant and a reduced
 * angle in [0, π/2). */
static inline void box_muller(uint32_t w1, uint32_t w2, float sigma, float *c_out, float *s_out) {
  const float u1 = ((float)(w1 >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0, 1): log finite */
  const uint32_t b = w2 >> 8;
  const uint32_t quad = b >> 22;                                     /* top 2 of 24 bits */
  const float th = (float)(b & 0x3FFFFFu) * (1.5707963267948966f / 4194304.0f);
  const float t2 = th * th;
  const float sn = th * (1.f + t2 * (-1.f / 6 + t2 * (1.f / 120 + t2 * (-1.f / 5040 + t2 * (1.f / 362880 +
                                                                                      t2 * (-1.f / 39916800))))));
  const float cs = 1.f + t2 * (-0.5f + t2 * (1.f / 24 + t2 * (-1.f / 720 + t2 * (1.f / 40320 + t2 * (-1.f / 3628800 +
                                                                                      t2 * (1.f / 479001600))))));
  /* quadrant by arithmetic, not branches: odd quadrants swap sin and cos; signs (+,+,−,−) and (+,−,−,+) */
  const float odd = (float)(quad & 1u);
  const float sw_s = sn + odd * (cs - sn), sw_c = cs + odd * (sn - cs);
  const float sgn_s = 1.f - 2.f * (float)(quad >> 1);
  const float sgn_c = 1.f - 2.f * (float)(((quad + 1u) >> 1) & 1u);
  const float rad = sigma * poly_sqrt(-2.0f * poly_log(u1));
  *c_out = rad * sgn_c * sw_c;
  *s_out = rad * sgn_s * sw_s;
}

static void normals_from_words(float *restrict out, const uint32_t *restrict w, int dim, float sigma) {
  const int pairs = dim / 2;
#pragma omp simd
  for (int k = 0; k < pairs; k++) box_muller(w[2 * k], w[2 * k + 1], sigma, &out[2 * k], &out[2 * k + 1]);
  if (dim & 1) {
    float spare;
    box_muller(w[dim - 1], w[dim], sigma, &out[dim - 1], &spare);
  }
}

void synco_negatives_draw_at(synco_negatives_draws *d, const synco_negatives_config *cfg, uint64_t seed,
                             uint64_t step, uint64_t query0) {
  if (d->total == 0) return;
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
}

synco_status synco_negatives_draw(synco_negatives_draws *d, const synco_negatives_config *cfg, int B, int dim,
                                  uint64_t seed, uint64_t step) {
  if (B != d->B || dim != d->dim)
    return synco_fail(SYNCO_ERR_ARG, "negatives: draw for B = %d, dim = %d but allocated for B = %d, dim = %d", B,
                      dim, d->B, d->dim);
  for (int t = 0; t < SYNCO_NEG_TYPES; t++)
    if (cfg->n[t] != d->n[t])
      return synco_fail(SYNCO_ERR_ARG, "negatives: n%d = %d but allocated for %d", t + 1, cfg->n[t], d->n[t]);
  synco_negatives_draw_at(d, cfg, seed, step, 0);
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

synco_status synco_negatives_logits(synco_negatives_draws *d, float *syn, int ld_syn, const float *l_neg,
                                    int ld_lneg, const float *q, const float *queue, float T) {
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

void synco_negatives_backward(synco_negatives_draws *d, float *dq, float *g_raw, int ld_graw, const float *g_syn,
                              int ld_gsyn, const float *q, float T) {
  if (d->total == 0) return;
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
}
