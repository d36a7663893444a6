/* Direct 3x3 convolution of the network's input into blocked activations, AVX-512 (see cpu_stem_conv.h).
 *
 * The packed weights: [output block][input channel][tap][channel of the block], so that a tap's B weights of one
 * block lie together and each is broadcast from memory by its multiply-add. */
#include "backend/cpu/cpu_stem_conv.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#include "backend/cpu/cpu_affinity.h"

#define AVX512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))

int synco_stem_available(void) {
  static int avx512 = -1;
  if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f") != 0;
  return avx512;
}

int synco_stem_applies(int cin, int cout, int kh, int kw, int stride, int pad, int in_block, int out_block) {
  return synco_stem_available() && cin >= 1 && cin <= SYNCO_STEM_MAX_CIN && in_block == 1 &&
         (out_block == 8 || out_block == 16) && cout % out_block == 0 && kh == 3 && kw == 3 && stride == 1 && pad == 1;
}

size_t synco_stem_workspace_bytes(const synco_stem_shape *s) {
  return (size_t)s->cout * s->cin * 9 * sizeof(float);
}

static void pack_weights(float *wp, const float *wt, int cin, int cout, int B) {
  for (int co = 0; co < cout; co++)
    for (int ci = 0; ci < cin; ci++)
      for (int t = 0; t < 9; t++)
        wp[(((long)(co / B) * cin + ci) * 9 + t) * B + co % B] = wt[((long)co * cin + ci) * 9 + t];
}

/* Lanes l of 16 where 0 <= s + l < W. */
INLINE __mmask16 cols_mask(int s, int W) {
  const int lo = s < 0 ? -s : 0, hi = W - s < 16 ? W - s : 16;
  if (hi <= lo) return 0;
  return (__mmask16)((((1u << hi) - 1u) >> lo) << lo);
}

/* The 8 vectors a[0], a[st], ..., a[7 st] (channel c: 16 pixels) as 8 vectors of two pixels' 8 channels each: o[k]
 * holds pixels 2k and 2k + 1. Three rounds of two-source permutes: channel pairs, then quads (64-bit elements), then
 * the two quads of a pixel (128-bit units). */
AVX512 INLINE void transpose8(__m512 o[8], const __m512 *a, const int st) {
  const __m512i i1lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i i1hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const __m512i i2lo = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
  const __m512i i2hi = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
  const __m512i i3lo = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0);
  const __m512i i3hi = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8);
  __m512d p[2][4]; /* [pixels 0-7 / 8-15][channel pair q], 64-bit element e: pixel e's channels 2q, 2q + 1 */
#pragma GCC unroll 4
  for (int q = 0; q < 4; q++) {
    p[0][q] = _mm512_castps_pd(_mm512_permutex2var_ps(a[2 * q * st], i1lo, a[(2 * q + 1) * st]));
    p[1][q] = _mm512_castps_pd(_mm512_permutex2var_ps(a[2 * q * st], i1hi, a[(2 * q + 1) * st]));
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; h++) {
    /* 128-bit unit u: pixel u of 4 (lo: the first 4 of the 8, hi: the last), channels 0-3 (c0) or 4-7 (c4) */
    const __m512 c0lo = _mm512_castpd_ps(_mm512_permutex2var_pd(p[h][0], i2lo, p[h][1]));
    const __m512 c0hi = _mm512_castpd_ps(_mm512_permutex2var_pd(p[h][0], i2hi, p[h][1]));
    const __m512 c4lo = _mm512_castpd_ps(_mm512_permutex2var_pd(p[h][2], i2lo, p[h][3]));
    const __m512 c4hi = _mm512_castpd_ps(_mm512_permutex2var_pd(p[h][2], i2hi, p[h][3]));
    o[4 * h + 0] = _mm512_permutex2var_ps(c0lo, i3lo, c4lo);
    o[4 * h + 1] = _mm512_permutex2var_ps(c0lo, i3hi, c4lo);
    o[4 * h + 2] = _mm512_permutex2var_ps(c0hi, i3lo, c4hi);
    o[4 * h + 3] = _mm512_permutex2var_ps(c0hi, i3hi, c4hi);
  }
}

/* Stores the 16 pixels of acc[c * st] (c < B) from column c0 of an output row yr (B floats per pixel), the first
 * n of them (the rest lie beyond the row). */
AVX512 INLINE void store_block(float *yr, int c0, int n, const __m512 *acc, const int st, const int B) {
  __m512 o[8];
  transpose8(o, acc, st);
  if (B == 8) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
      if (2 * k + 1 < n) _mm512_storeu_ps(yr + (long)(c0 + 2 * k) * 8, o[k]);
      else if (2 * k < n) _mm512_mask_storeu_ps(yr + (long)(c0 + 2 * k) * 8, 0x00FF, o[k]);
    }
    return;
  }
  __m512 o8[8]; /* channels 8-15 */
  transpose8(o8, acc + 8 * st, st);
#pragma GCC unroll 8
  for (int k = 0; k < 8; k++) {
    if (2 * k < n) _mm512_storeu_ps(yr + (long)(c0 + 2 * k) * 16, _mm512_shuffle_f32x4(o[k], o8[k], 0x44));
    if (2 * k + 1 < n) _mm512_storeu_ps(yr + (long)(c0 + 2 * k + 1) * 16, _mm512_shuffle_f32x4(o[k], o8[k], 0xEE));
  }
}

/* Output row oh of one image and block, B channels, PV vectors of 16 columns at a time (B * PV = 16 accumulators:
 * acc[c * PV + v] is channel c at columns c0 + 16 v ...). */
AVX512 INLINE void stem_row(float *yr, const float *xi, const float *wpb, int cin, int H, int W, int oh, const int B,
                            const int PV) {
  for (int c0 = 0; c0 < W; c0 += 16 * PV) {
    __mmask16 m[2][3]; /* PV <= 2 */
    for (int v = 0; v < PV; v++)
      for (int kw = 0; kw < 3; kw++) m[v][kw] = cols_mask(c0 + 16 * v + kw - 1, W);
    __m512 acc[16]; /* B * PV = 16 */
#pragma GCC unroll 32
    for (int j = 0; j < B * PV; j++) acc[j] = _mm512_setzero_ps();
    for (int ci = 0; ci < cin; ci++)
      for (int kh = 0; kh < 3; kh++) {
        const int ih = oh + kh - 1;
        if (ih < 0 || ih >= H) continue;
        const float *xr = xi + ((long)ci * H + ih) * W;
        const float *wt = wpb + (ci * 9 + kh * 3) * B;
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; kw++)
#pragma GCC unroll 4
          for (int v = 0; v < PV; v++) {
            /* lanes outside the row are masked off: not read, 0 (the padding) */
            const __m512 xv = _mm512_maskz_loadu_ps(m[v][kw], xr + c0 + 16 * v + kw - 1);
#pragma GCC unroll 16
            for (int c = 0; c < B; c++)
              acc[c * PV + v] = _mm512_fmadd_ps(xv, _mm512_set1_ps(wt[kw * B + c]), acc[c * PV + v]);
          }
      }
    for (int v = 0; v < PV; v++) {
      const int left = W - (c0 + 16 * v);
      if (left > 0) store_block(yr, c0 + 16 * v, left < 16 ? left : 16, acc + v, PV, B);
    }
  }
}

AVX512 static void stem_plane(float *y, const float *xi, const float *wpb, int cin, int H, int W, int B) {
  for (int oh = 0; oh < H; oh++) {
    float *yr = y + (long)oh * W * B;
    if (B == 8) stem_row(yr, xi, wpb, cin, H, W, oh, 8, 2);
    else stem_row(yr, xi, wpb, cin, H, W, oh, 16, 1);
  }
}

synco_status synco_stem_fwd(const synco_stem_shape *s, float *y, const float *x, const float *wt, float *workspace) {
  if (!synco_stem_applies(s->cin, s->cout, 3, 3, 1, 1, 1, s->block) || s->n <= 0 || s->h <= 0 || s->w <= 0)
    return synco_fail(SYNCO_ERR_ARG, "cpu stem conv: %d -> %d channels (block %d) %dx%d not supported on this CPU",
                      s->cin, s->cout, s->block, s->h, s->w);
  if (!workspace || (uintptr_t)workspace % 64)
    return synco_fail(SYNCO_ERR_ARG, "cpu stem conv: workspace missing or not 64-byte aligned");
  const int B = s->block, nb = s->cout / B;
  pack_weights(workspace, wt, s->cin, s->cout, B);
  const long plane = (long)s->h * s->w;
  synco_affinity a;
  synco_affinity_init(&a, (long)s->n * nb, 1);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, t) {
    const long i = t / nb, ob = t % nb;
    stem_plane(y + t * plane * B, x + i * s->cin * plane, workspace + ob * s->cin * 9 * B, s->cin, s->h, s->w, B);
  }
  return SYNCO_OK;
}
