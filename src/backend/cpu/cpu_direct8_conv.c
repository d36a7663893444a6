/* Direct 3x3 convolution of 8 channels into 8 on nChw8c activations, AVX-512 (see cpu_direct8_conv.h).
 *
 * Lanes. A 16-lane vector is 4 groups of 4 lanes (its four 128-bit lanes); lane 4g + j stands for output channel
 * 4h + g (h: which half of the output channels the vector covers) and input channel 4b + j (b: which half of the
 * input channels). The packed weights of one tap are 4 vectors, [h][b], lane 4g + j = w[4h + g][4b + j][tap]; so
 * are the partial sums of backward weights. An input operand is x[pixel][4b .. 4b + 3] repeated in each group
 * (vbroadcastf32x4 from memory: one load). */
#include "backend/cpu/cpu_direct8_conv.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#define AVX512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))
#define NW (9 * 4 * 16) /* packed weights, or one image's partial sums of dw: 9 taps x [h][b] x 16 lanes */

int synco_direct8_available(void) {
  static int avx512 = -1;
  if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f") != 0;
  return avx512;
}

int synco_direct8_applies(int cin, int cout, int kh, int kw, int stride, int pad, int block) {
  return synco_direct8_available() && cin == 8 && cout == 8 && kh == 3 && kw == 3 && stride == 1 && pad == 1 &&
         block == 8;
}

size_t synco_direct8_workspace_bytes(int n) { return (size_t)(n > 0 ? n : 1) * NW * sizeof(float); }

/* Packs OIHW weights into the lanes above: the forward's (out = co, in = ci), or for backward data the transposed
 * kernel rotated by 180 degrees (out = ci, in = co, tap 8 - t). */
static void pack_weights(float *wp, const float *wt, int bwd_data) {
  for (int t = 0; t < 9; t++)
    for (int l = 0; l < 64; l++) {
      const int h = l / 32, b = (l / 16) % 2, g = (l % 16) / 4, j = l % 4;
      const int o = 4 * h + g, i = 4 * b + j;
      wp[t * 64 + l] = bwd_data ? wt[(i * 8 + o) * 9 + 8 - t] : wt[(o * 8 + i) * 9 + t];
    }
}

/* Two output pixels (a and b, each as its two accumulators) into 16 floats in nChw8c order: within each group of
 * 4 lanes the 4 input-channel partial sums are added. */
AVX512 INLINE __m512 reduce_pair(__m512 lo_a, __m512 hi_a, __m512 lo_b, __m512 hi_b) {
  /* per 128-bit lane g: [lo0 + lo2, lo1 + lo3, hi0 + hi2, hi1 + hi3] of each pixel */
  const __m512 a = _mm512_add_ps(_mm512_shuffle_ps(lo_a, hi_a, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(lo_a, hi_a, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 b = _mm512_add_ps(_mm512_shuffle_ps(lo_b, hi_b, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(lo_b, hi_b, _MM_SHUFFLE(3, 2, 3, 2)));
  /* per lane g: [y_a[g], y_a[4 + g], y_b[g], y_b[4 + g]] */
  const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_permutexvar_ps(order, s);
}

/* P output pixels of row `row` from column c0 (P <= 8, a constant where inlined); edge: some tap of theirs falls
 * outside the image's columns. */
AVX512 INLINE void fwd_pixels(float *yr, const float *x, int row, int H, int W, int c0, const int P, const int edge,
                              const float *wp) {
  __m512 lo[8], hi[8];
#pragma GCC unroll 8
  for (int q = 0; q < P; q++) lo[q] = hi[q] = _mm512_setzero_ps();
  for (int kh = 0; kh < 3; kh++) {
    const int r = row + kh - 1;
    if (r < 0 || r >= H) continue;
    const float *xr = x + (long)r * W * 8;
    /* the row's 12 weight vectors, 16 accumulators and one input pixel's 2 operands: 30 of the 32 registers; each
     * input pixel is loaded once and meets the (up to) 3 output pixels it reaches */
    __m512 wv[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) wv[i] = _mm512_load_ps(wp + (kh * 12 + i) * 16);
#pragma GCC unroll 10
    for (int si = 0; si < P + 2; si++) {
      const int s = c0 + si - 1;
      if (edge && (s < 0 || s >= W)) continue;
      const __m512 x0 = _mm512_broadcast_f32x4(_mm_loadu_ps(xr + (long)s * 8));
      const __m512 x1 = _mm512_broadcast_f32x4(_mm_loadu_ps(xr + (long)s * 8 + 4));
#pragma GCC unroll 3
      for (int kw = 0; kw < 3; kw++) {
        const int q = si - kw;
        if (q < 0 || q >= P) continue;
        lo[q] = _mm512_fmadd_ps(x0, wv[kw * 4 + 0], lo[q]);
        hi[q] = _mm512_fmadd_ps(x0, wv[kw * 4 + 2], hi[q]);
        lo[q] = _mm512_fmadd_ps(x1, wv[kw * 4 + 1], lo[q]);
        hi[q] = _mm512_fmadd_ps(x1, wv[kw * 4 + 3], hi[q]);
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q + 1 < P; q += 2)
    _mm512_storeu_ps(yr + (long)(c0 + q) * 8, reduce_pair(lo[q], hi[q], lo[q + 1], hi[q + 1]));
  if (P % 2) {
    const __m512 z = _mm512_setzero_ps();
    _mm256_storeu_ps(yr + (long)(c0 + P - 1) * 8,
                     _mm512_castps512_ps256(reduce_pair(lo[P - 1], hi[P - 1], z, z)));
  }
}

/* One output row of one image: blocks of 8 pixels, the columns left one by one. */
AVX512 static void fwd_row(float *yr, const float *x, int row, int H, int W, const float *wp) {
  int c0 = 0;
  for (; c0 + 8 <= W; c0 += 8) {
    if (c0 > 0 && c0 + 8 < W) fwd_pixels(yr, x, row, H, W, c0, 8, 0, wp);
    else fwd_pixels(yr, x, row, H, W, c0, 8, 1, wp);
  }
  for (; c0 < W; c0++) fwd_pixels(yr, x, row, H, W, c0, 1, 1, wp);
}

/* y = conv(x) with packed weights wp: rows of images go to threads in chunks, each output written by one. */
static synco_status conv_rows(int n, int h, int w, float *y, const float *x, const float *wp) {
  const long rows = (long)n * h;
#pragma omp parallel for schedule(dynamic, 4)
  for (long r = 0; r < rows; r++) {
    const long img = r / h;
    fwd_row(y + r * w * 8, x + img * h * w * 8, (int)(r % h), h, w, wp);
  }
  return SYNCO_OK;
}

synco_status synco_direct8_fwd(int n, int h, int w, float *y, const float *x, const float *wt) {
  if (!synco_direct8_available()) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu direct8 conv: this CPU has no AVX-512");
  _Alignas(64) float wp[NW];
  pack_weights(wp, wt, 0);
  return conv_rows(n, h, w, y, x, wp);
}

synco_status synco_direct8_bwd_data(int n, int h, int w, float *dx, const float *dy, const float *wt) {
  if (!synco_direct8_available()) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu direct8 conv: this CPU has no AVX-512");
  _Alignas(64) float wp[NW];
  pack_weights(wp, wt, 1);
  return conv_rows(n, h, w, dx, dy, wp);
}

/* ---- backward weights ------------------------------------------------------------------------------------------- */

/* The 12 partial sums of one kernel row (kh) from output pixel q: acc[kw * 4 + h * 2 + b] += dy[q][4h + g] *
 * x[q + kw - 1][4b + j] in lane 4g + j. */
AVX512 INLINE void bwdw_pixel(__m512 *acc, const float *dr, const float *xr, int q, int W, const int edge) {
  const __m512i spread_lo = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i spread_hi = _mm512_add_epi32(spread_lo, _mm512_set1_epi32(4));
  const __m512 d = _mm512_castps256_ps512(_mm256_loadu_ps(dr + (long)q * 8));
  const __m512 e0 = _mm512_permutexvar_ps(spread_lo, d), e1 = _mm512_permutexvar_ps(spread_hi, d);
#pragma GCC unroll 3
  for (int kw = 0; kw < 3; kw++) {
    const int s = q + kw - 1;
    if (edge && (s < 0 || s >= W)) continue;
    const __m512 x0 = _mm512_broadcast_f32x4(_mm_loadu_ps(xr + (long)s * 8));
    const __m512 x1 = _mm512_broadcast_f32x4(_mm_loadu_ps(xr + (long)s * 8 + 4));
    acc[kw * 4 + 0] = _mm512_fmadd_ps(e0, x0, acc[kw * 4 + 0]);
    acc[kw * 4 + 1] = _mm512_fmadd_ps(e0, x1, acc[kw * 4 + 1]);
    acc[kw * 4 + 2] = _mm512_fmadd_ps(e1, x0, acc[kw * 4 + 2]);
    acc[kw * 4 + 3] = _mm512_fmadd_ps(e1, x1, acc[kw * 4 + 3]);
  }
}

/* One image's 576 partial sums of dw (part, in the packed layout), summed over its pixels in a fixed order. */
AVX512 static void bwdw_image(float *part, const float *dy, const float *x, int H, int W) {
  for (int kh = 0; kh < 3; kh++) {
    __m512 acc[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) acc[i] = _mm512_setzero_ps();
    for (int row = 0; row < H; row++) {
      const int r = row + kh - 1;
      if (r < 0 || r >= H) continue;
      const float *dr = dy + (long)row * W * 8, *xr = x + (long)r * W * 8;
      bwdw_pixel(acc, dr, xr, 0, W, 1);
      for (int q = 1; q < W - 1; q++) bwdw_pixel(acc, dr, xr, q, W, 0);
      if (W > 1) bwdw_pixel(acc, dr, xr, W - 1, W, 1);
    }
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) _mm512_store_ps(part + (kh * 12 + i) * 16, acc[i]);
  }
}

synco_status synco_direct8_bwd_weights(int n, int h, int w, float *dw, const float *dy, const float *x,
                                       float *workspace) {
  if (!synco_direct8_available()) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu direct8 conv: this CPU has no AVX-512");
  if ((uintptr_t)workspace % 64) return synco_fail(SYNCO_ERR_ARG, "cpu direct8 conv: workspace not 64-byte aligned");
  const long img = (long)h * w * 8;
#pragma omp parallel
  {
#pragma omp for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) bwdw_image(workspace + (long)i * NW, dy + i * img, x + i * img, h, w);
    /* each packed sum over the images in image order, into its OIHW place */
#pragma omp for schedule(static)
    for (int e = 0; e < NW; e++) {
      float s = workspace[e];
      for (int i = 1; i < n; i++) s += workspace[(long)i * NW + e];
      const int t = e / 64, l = e % 64;
      const int co = 4 * (l / 32) + (l % 16) / 4, ci = 4 * ((l / 16) % 2) + l % 4;
      dw[(co * 8 + ci) * 9 + t] += s;
    }
  }
  return SYNCO_OK;
}
