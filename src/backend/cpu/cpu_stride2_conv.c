/* Direct stride-2 convolution from nChw8c into nChw16c, AVX-512 (see cpu_stride2_conv.h).
 *
 * The workspace: the forward's packed weights wp[output block][input channel][tap][16 output channels], backward
 * data's wq[input block][output channel][tap][8 input channels], then backward weights' per-image sums, each
 * [output block][input block][8 input channels][tap][16 output channels].
 *
 * Edges: a pixel some of whose taps fall outside the input (the padding) takes the checked path, one at a time; the
 * others go in strips of S, the last strip of a row moved back to end at the row's last such pixel (its first
 * pixels computed twice, the same values written twice). */
#include "backend/cpu/cpu_stride2_conv.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#include "backend/cpu/cpu_affinity.h"

#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE static inline __attribute__((always_inline))
#define S 8 /* pixels per strip: output pixels (forward), input pixels of one column parity (backward data) */

int synco_stride2_available(void) {
  static int avx512 = -1;
  if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f") != 0;
  return avx512;
}

int synco_stride2_applies(int cin, int cout, int kh, int kw, int stride, int pad, int in_block, int out_block) {
  return synco_stride2_available() && cin % 8 == 0 && cin > 0 && cin <= SYNCO_STRIDE2_MAX_CIN && cout % 16 == 0 &&
         cout > 0 && cout <= SYNCO_STRIDE2_MAX_COUT && in_block == 8 && out_block == 16 && stride == 2 && kh == kw &&
         ((kh == 3 && pad == 1) || (kh == 1 && pad == 0));
}

static int out_size(int in, int k, int pad) { return (in + 2 * pad - k) / 2 + 1; }

static size_t weights(const synco_stride2_shape *s) { return (size_t)s->cout * s->cin * s->k * s->k; }

size_t synco_stride2_workspace_bytes(const synco_stride2_shape *s) {
  return (2 + (size_t)(s->n > 0 ? s->n : 1)) * weights(s) * sizeof(float);
}

static synco_status check(const synco_stride2_shape *s, const float *ws) {
  if (!synco_stride2_applies(s->cin, s->cout, s->k, s->k, 2, s->pad, 8, 16) || s->n <= 0 || s->h <= 0 || s->w <= 0)
    return synco_fail(SYNCO_ERR_ARG, "cpu stride-2 conv: %d -> %d channels k%d p%d %dx%d not supported on this CPU",
                      s->cin, s->cout, s->k, s->pad, s->h, s->w);
  if (!ws || (uintptr_t)ws % 64)
    return synco_fail(SYNCO_ERR_ARG, "cpu stride-2 conv: workspace missing or not 64-byte aligned");
  return SYNCO_OK;
}

/* The output pixels [lo, hi) of a row whose taps all lie inside the input (2 ow + kw - pad in [0, W) for every kw). */
static void inner_range(int W, int OW, int K, int pad, int *lo, int *hi) {
  *lo = (pad + 1) / 2;
  *hi = W - K + pad < 0 ? 0 : (W - K + pad) / 2 + 1;
  if (*hi > OW) *hi = OW;
}

/* ---- forward ------------------------------------------------------------------------------------------------------ */

/* Output pixels ow0 .. ow0 + np - 1 of row oh of one image and output block (np <= S); edge: check each tap. */
AVX512 INLINE void fwd_strip(float *yr, const float *xi, const float *wpo, int cin, int H, int W, int oh, int ow0,
                             const int np, const int K, const int pad, const int edge) {
  __m512 acc[S];
#pragma GCC unroll 8
  for (int p = 0; p < np; p++) acc[p] = _mm512_setzero_ps();
  for (int kh = 0; kh < K; kh++) {
    const int ih = 2 * oh + kh - pad;
    if (ih < 0 || ih >= H) continue;
    for (int ci = 0; ci < cin; ci++) {
      const float *xr = xi + ((long)(ci / 8) * H + ih) * W * 8 + ci % 8;
      const float *wr = wpo + ((long)ci * K + kh) * K * 16;
#pragma GCC unroll 3
      for (int kw = 0; kw < K; kw++) {
        const __m512 wv = _mm512_load_ps(wr + kw * 16);
#pragma GCC unroll 8
        for (int p = 0; p < np; p++) {
          const int iw = 2 * (ow0 + p) + kw - pad;
          if (edge && (iw < 0 || iw >= W)) continue;
          acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(xr[(long)iw * 8]), wv, acc[p]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int p = 0; p < np; p++) _mm512_storeu_ps(yr + (long)(ow0 + p) * 16, acc[p]);
}

AVX512 INLINE void fwd_plane_k(float *yo, const float *xi, const float *wpo, int cin, int H, int W, int OH, int OW,
                               const int K, const int pad) {
  int lo, hi;
  inner_range(W, OW, K, pad, &lo, &hi);
  if (hi - lo < S) lo = hi = OW; /* too few inner pixels for a strip: all checked */
  for (int oh = 0; oh < OH; oh++) {
    float *yr = yo + (long)oh * OW * 16;
    for (int ow = 0; ow < lo; ow++) fwd_strip(yr, xi, wpo, cin, H, W, oh, ow, 1, K, pad, 1);
    for (int ow0 = lo; ow0 < hi; ow0 += S) {
      if (ow0 + S > hi) ow0 = hi - S;
      fwd_strip(yr, xi, wpo, cin, H, W, oh, ow0, S, K, pad, 0);
    }
    for (int ow = hi; ow < OW; ow++) fwd_strip(yr, xi, wpo, cin, H, W, oh, ow, 1, K, pad, 1);
  }
}

AVX512 static void fwd_plane(const synco_stride2_shape *s, float *yo, const float *xi, const float *wpo, int OH,
                             int OW) {
  if (s->k == 3) fwd_plane_k(yo, xi, wpo, s->cin, s->h, s->w, OH, OW, 3, 1);
  else fwd_plane_k(yo, xi, wpo, s->cin, s->h, s->w, OH, OW, 1, 0);
}

synco_status synco_stride2_fwd(const synco_stride2_shape *s, float *y, const float *x, const float *wt, float *ws) {
  SYNCO_TRY(check(s, ws));
  const int T = s->k * s->k, OH = out_size(s->h, s->k, s->pad), OW = out_size(s->w, s->k, s->pad);
  const int bo = s->cout / 16;
  for (int co = 0; co < s->cout; co++)
    for (int ci = 0; ci < s->cin; ci++)
      for (int t = 0; t < T; t++)
        ws[(((long)(co / 16) * s->cin + ci) * T + t) * 16 + co % 16] = wt[((long)co * s->cin + ci) * T + t];
  const long xplane = (long)s->cin * s->h * s->w, yplane = (long)OH * OW * 16;
  synco_affinity a;
  synco_affinity_init(&a, (long)s->n * bo, 1);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, t)
    fwd_plane(s, y + t * yplane, x + t / bo * xplane, ws + t % bo * (long)s->cin * T * 16, OH, OW);
  return SYNCO_OK;
}

/* ---- backward data ------------------------------------------------------------------------------------------------ */

/* Input pixels q + 2j, j = j0 .. j0 + np - 1, of row ih of one image and input block (8 channels: a 256-bit
 * vector): every output pixel and tap they feed. edge: check each output column. */
AVX512 INLINE void bwdd_strip(float *dxr, const float *dyi, const float *wqi, int cout, int OH, int OW, int ih, int q,
                              int j0, const int np, const int K, const int pad, const int edge) {
  __m256 acc[S];
#pragma GCC unroll 8
  for (int p = 0; p < np; p++) acc[p] = _mm256_setzero_ps();
  for (int kh = 0; kh < K; kh++) {
    const int t = ih + pad - kh; /* 2 oh */
    if (t < 0 || t % 2 || t / 2 >= OH) continue;
    for (int kw = 0; kw < K; kw++) {
      const int u = q + pad - kw; /* 2 (ow - j) */
      if (u % 2) continue;
      const int d = u / 2;
      for (int cb = 0; cb < cout / 16; cb++) {
        const float *dyr = dyi + ((long)cb * OH + t / 2) * OW * 16;
#pragma GCC unroll 4
        for (int c = 0; c < 16; c++) {
          const __m256 wv = _mm256_load_ps(wqi + (((long)(cb * 16 + c) * K + kh) * K + kw) * 8);
#pragma GCC unroll 8
          for (int p = 0; p < np; p++) {
            const int ow = j0 + p + d;
            if (edge && (ow < 0 || ow >= OW)) continue;
            acc[p] = _mm256_fmadd_ps(_mm256_set1_ps(dyr[(long)ow * 16 + c]), wv, acc[p]);
          }
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int p = 0; p < np; p++) _mm256_storeu_ps(dxr + (long)(q + 2 * (j0 + p)) * 8, acc[p]);
}

AVX512 INLINE void bwdd_plane_k(float *dxo, const float *dyi, const float *wqi, int cout, int H, int W, int OH, int OW,
                                const int K, const int pad) {
  for (int q = 0; q < 2; q++) {
    const int J = (W - q + 1) / 2; /* input columns of parity q */
    /* the columns j whose every tap of this parity reads an output column inside the row: ow = j + d in [0, OW) */
    int lo = 0, hi = J;
    for (int kw = 0; kw < K; kw++) {
      const int u = q + pad - kw;
      if (u % 2) continue;
      if (-u / 2 > lo) lo = -u / 2;
      if (OW - u / 2 < hi) hi = OW - u / 2;
    }
    if (hi - lo < S) lo = hi = J;
    for (int ih = 0; ih < H; ih++) {
      float *dxr = dxo + (long)ih * W * 8;
      for (int j = 0; j < lo; j++) bwdd_strip(dxr, dyi, wqi, cout, OH, OW, ih, q, j, 1, K, pad, 1);
      for (int j0 = lo; j0 < hi; j0 += S) {
        if (j0 + S > hi) j0 = hi - S;
        bwdd_strip(dxr, dyi, wqi, cout, OH, OW, ih, q, j0, S, K, pad, 0);
      }
      for (int j = hi; j < J; j++) bwdd_strip(dxr, dyi, wqi, cout, OH, OW, ih, q, j, 1, K, pad, 1);
    }
  }
}

AVX512 static void bwdd_plane(const synco_stride2_shape *s, float *dxo, const float *dyi, const float *wqi, int OH,
                              int OW) {
  if (s->k == 3) bwdd_plane_k(dxo, dyi, wqi, s->cout, s->h, s->w, OH, OW, 3, 1);
  else bwdd_plane_k(dxo, dyi, wqi, s->cout, s->h, s->w, OH, OW, 1, 0);
}

synco_status synco_stride2_bwd_data(const synco_stride2_shape *s, float *dx, const float *dy, const float *wt,
                                    float *ws) {
  SYNCO_TRY(check(s, ws));
  const int T = s->k * s->k, OH = out_size(s->h, s->k, s->pad), OW = out_size(s->w, s->k, s->pad);
  const int bi = s->cin / 8;
  float *wq = ws + weights(s);
  for (int co = 0; co < s->cout; co++)
    for (int ci = 0; ci < s->cin; ci++)
      for (int t = 0; t < T; t++)
        wq[(((long)(ci / 8) * s->cout + co) * T + t) * 8 + ci % 8] = wt[((long)co * s->cin + ci) * T + t];
  const long xplane = (long)s->h * s->w * 8, yplane = (long)s->cout * OH * OW;
  synco_affinity a;
  synco_affinity_init(&a, (long)s->n * bi, 1);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, t)
    bwdd_plane(s, dx + t * xplane, dy + t / bi * yplane, wq + t % bi * (long)s->cout * T * 8, OH, OW);
  return SYNCO_OK;
}

/* ---- backward weights --------------------------------------------------------------------------------------------- */

/* One output pixel's products for kernel row kh: acc[c * K + kw] (input channel c of the block, 16 output channels)
 * += dy[ow] * x[2 ow + kw - pad][c]. */
AVX512 INLINE void bwdw_pixel(__m512 *acc, const float *dyr, const float *xr, int ow, int W, const int K, const int pad,
                              const int edge) {
  const __m512 d = _mm512_loadu_ps(dyr + (long)ow * 16);
#pragma GCC unroll 3
  for (int kw = 0; kw < K; kw++) {
    const int iw = 2 * ow + kw - pad;
    if (edge && (iw < 0 || iw >= W)) continue;
    const float *xp = xr + (long)iw * 8;
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++) acc[c * K + kw] = _mm512_fmadd_ps(d, _mm512_set1_ps(xp[c]), acc[c * K + kw]);
  }
}

/* One image's sums for a pair of an output block (dyo: its plane) and an input block (xb), part[c][tap][16]. */
AVX512 INLINE void bwdw_image_k(float *part, const float *dyo, const float *xb, int H, int W, int OH, int OW,
                                const int K, const int pad) {
  int lo, hi;
  inner_range(W, OW, K, pad, &lo, &hi);
  if (hi < lo) hi = lo;
  for (int kh = 0; kh < K; kh++) {
    __m512 acc[8 * 3];
#pragma GCC unroll 24
    for (int j = 0; j < 8 * K; j++) acc[j] = _mm512_setzero_ps();
    for (int oh = 0; oh < OH; oh++) {
      const int ih = 2 * oh + kh - pad;
      if (ih < 0 || ih >= H) continue;
      const float *dyr = dyo + (long)oh * OW * 16, *xr = xb + (long)ih * W * 8;
      int ow = 0;
      for (; ow < lo && ow < OW; ow++) bwdw_pixel(acc, dyr, xr, ow, W, K, pad, 1);
      for (; ow < hi; ow++) bwdw_pixel(acc, dyr, xr, ow, W, K, pad, 0);
      for (; ow < OW; ow++) bwdw_pixel(acc, dyr, xr, ow, W, K, pad, 1);
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++)
#pragma GCC unroll 3
      for (int kw = 0; kw < K; kw++) _mm512_store_ps(part + ((long)c * K * K + kh * K + kw) * 16, acc[c * K + kw]);
  }
}

AVX512 static void bwdw_image(const synco_stride2_shape *s, float *part, const float *dyo, const float *xb, int OH,
                              int OW) {
  if (s->k == 3) bwdw_image_k(part, dyo, xb, s->h, s->w, OH, OW, 3, 1);
  else bwdw_image_k(part, dyo, xb, s->h, s->w, OH, OW, 1, 0);
}

synco_status synco_stride2_bwd_weights(const synco_stride2_shape *s, float *dw, const float *dy, const float *x,
                                       float *ws) {
  SYNCO_TRY(check(s, ws));
  const int T = s->k * s->k, OH = out_size(s->h, s->k, s->pad), OW = out_size(s->w, s->k, s->pad);
  const int bi = s->cin / 8, bo = s->cout / 16, pairs = bi * bo, n = s->n;
  const long pair = 8L * T * 16, per_image = (long)weights(s); /* = pairs * pair */
  float *part = ws + 2 * weights(s);
  synco_affinity a;
  synco_affinity_init(&a, (long)n * pairs, 1);
#pragma omp parallel num_threads(a.parts)
  {
    SYNCO_AFFINITY_FOR(a, t) {
      const long i = t / pairs, ob = t % pairs / bi, ib = t % bi;
      bwdw_image(s, part + i * per_image + (t % pairs) * pair, dy + (i * bo + ob) * (long)OH * OW * 16,
                 x + (i * bi + ib) * (long)s->h * s->w * 8, OH, OW);
    }
#pragma omp barrier
    /* each sum over the images in image order, into its OIHW place */
#pragma omp for schedule(static)
    for (long e = 0; e < per_image; e++) {
      float sum = part[e];
      for (int i = 1; i < n; i++) sum += part[(long)i * per_image + e];
      const long p = e / pair, r = e % pair;
      const int c = (int)(r / (T * 16)), tap = (int)(r / 16 % T), l = (int)(r % 16);
      const int co = (int)(p / bi) * 16 + l, ci = (int)(p % bi) * 8 + c;
      dw[((long)co * s->cin + ci) * T + tap] += sum;
    }
  }
  return SYNCO_OK;
}
