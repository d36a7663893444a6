/* Direct 3x3 convolution on nChw8c activations (channels in blocks of 8), AVX-512 (see cpu_direct8_conv.h).
 *
 * Lanes. A 16-lane vector is 4 groups of 4 lanes (its four 128-bit lanes). For one pair of an 8-channel output
 * block and an 8-channel input block, lane 4g + j stands for output channel 4h + g of the block (h: which half of
 * its channels the vector covers) and input channel 4b + j of the other (b: which half). The packed weights of one
 * pair and tap are 4 vectors, [h][b], lane 4g + j = w[4h + g][4b + j][tap] (block offsets added); so are the
 * partial sums of backward weights. An input operand is x[pixel][4b .. 4b + 3] repeated in each group
 * (vbroadcastf32x4 from memory: one load). */
#include "backend/cpu/cpu_direct8_conv.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#include "backend/cpu/cpu_affinity.h"

#define AVX512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))
#define NW (9 * 4 * 16) /* one block pair's packed weights or partial sums of dw: 9 taps x [h][b] x 16 lanes */

int synco_direct8_available(void) {
  static int avx512 = -1;
  if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f") != 0;
  return avx512;
}

int synco_direct8_bf16_available(void) {
  static int bf16 = -1;
  if (bf16 < 0)
    bf16 = synco_direct8_available() && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw");
  return bf16;
}

int synco_direct8_applies(int cin, int cout, int kh, int kw, int stride, int pad, int block) {
  return synco_direct8_available() && cin % 8 == 0 && cout % 8 == 0 && cin <= SYNCO_DIRECT8_MAX_C &&
         cout <= SYNCO_DIRECT8_MAX_C && kh == 3 && kw == 3 && stride == 1 && pad == 1 && block == 8;
}

/* The workspace: the packed weights of every (output block, input block) pair, then backward weights' partial sums
 * of every image and pair. */
size_t synco_direct8_workspace_bytes(const synco_direct8_shape *s) {
  const size_t pairs = (size_t)(s->cin / 8) * (s->cout / 8);
  return (pairs + (size_t)(s->n > 0 ? s->n : 1) * pairs) * NW * sizeof(float);
}

/* Packs OIHW weights into the lanes above, pair by pair ([out block][in block][tap]): the forward's (out = co,
 * in = ci), or for backward data the transposed kernel rotated by 180 degrees (out = ci, in = co, tap 8 - t). */
static void pack_weights(float *wp, const float *wt, int cin, int cout, int bwd_data) {
  const int bo = (bwd_data ? cin : cout) / 8, bi = (bwd_data ? cout : cin) / 8;
  for (int p = 0; p < bo * bi; p++)
    for (int t = 0; t < 9; t++)
      for (int l = 0; l < 64; l++) {
        const int h = l / 32, b = (l / 16) % 2, g = (l % 16) / 4, j = l % 4;
        const int o = (p / bi) * 8 + 4 * h + g, i = (p % bi) * 8 + 4 * b + j;
        wp[(long)p * NW + t * 64 + l] = bwd_data ? wt[(i * cin + o) * 9 + 8 - t] : wt[(o * cin + i) * 9 + t];
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

/* The P output pixels from column c0 of an output row, from their accumulators (lo, hi: channels 0-3 and 4-7). */
AVX512 INLINE void store_pixels(float *yr, int c0, const int P, const __m512 *lo, const __m512 *hi) {
#pragma GCC unroll 4
  for (int q = 0; q + 1 < P; q += 2)
    _mm512_storeu_ps(yr + (long)(c0 + q) * 8, reduce_pair(lo[q], hi[q], lo[q + 1], hi[q + 1]));
  if (P % 2) {
    const __m512 z = _mm512_setzero_ps();
    _mm256_storeu_ps(yr + (long)(c0 + P - 1) * 8,
                     _mm512_castps512_ps256(reduce_pair(lo[P - 1], hi[P - 1], z, z)));
  }
}

/* An output row (yr) of one output block of one image through `pixels` (fwd_pixels or fwd_pixels_bf16, inlined with a
 * constant P): blocks of 8 pixels, the columns left one by one. */
#define ROW_OF_PIXELS(pixels, yr, x, bi, row, H, W, w)                                                 \
  do {                                                                                                \
    int c0_ = 0;                                                                                      \
    for (; c0_ + 8 <= (W); c0_ += 8) {                                                                \
      if (c0_ > 0 && c0_ + 8 < (W)) pixels(yr, x, bi, row, H, W, c0_, 8, 0, w);                       \
      else pixels(yr, x, bi, row, H, W, c0_, 8, 1, w);                                                \
    }                                                                                                 \
    for (; c0_ < (W); c0_++) pixels(yr, x, bi, row, H, W, c0_, 1, 1, w);                              \
  } while (0)

/* The loops of P output pixels of one output row (fwd_pixels, fwd_pixels_bf16) around the statements given last,
 * which add to the accumulators lo[q], hi[q] (channels 0-3 and 4-7 of pixel q) what input row xr of input block ib
 * gives through kernel row kh; then the pixels are stored from column c0 of yr. */
#define FWD_PIXEL_ROWS(yr, x, bi, row, H, W, c0, P, ...)                  \
  do {                                                                    \
    __m512 lo[8], hi[8];                                                  \
    _Pragma("GCC unroll 8") for (int q = 0; q < (P); q++) lo[q] = hi[q] = \
        _mm512_setzero_ps();                                              \
    for (int ib = 0; ib < (bi); ib++)                                     \
      for (int kh = 0; kh < 3; kh++) {                                    \
        const int r = (row) + kh - 1;                                     \
        if (r < 0 || r >= (H)) continue;                                  \
        const float *xr = (x) + ((long)ib * (H) + r) * (W) * 8;           \
        __VA_ARGS__;                                                      \
      }                                                                   \
    store_pixels(yr, c0, P, lo, hi);                                      \
  } while (0)

/* P output pixels of row `row` of one output block from column c0 (P <= 8, a constant where inlined), summed over
 * the bi input blocks of x (one image) with their packed weights wp; edge: some tap of theirs falls outside the
 * image's columns. */
AVX512 INLINE void fwd_pixels(float *yr, const float *x, int bi, int row, int H, int W, int c0, const int P,
                              const int edge, const float *wp) {
  FWD_PIXEL_ROWS(yr, x, bi, row, H, W, c0, P, {
      /* the row's 12 weight vectors, 16 accumulators and one input pixel's 2 operands: 30 of the 32 registers;
       * each input pixel is loaded once and meets the (up to) 3 output pixels it reaches */
      __m512 wv[12];
      _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++)
          wv[i] = _mm512_load_ps(wp + (long)ib * NW + (kh * 12 + i) * 16);
      _Pragma("GCC unroll 10") for (int si = 0; si < P + 2; si++) {
        const int s = c0 + si - 1;
        if (edge && (s < 0 || s >= W)) continue;
        const __m512 x0 = _mm512_broadcast_f32x4(_mm_loadu_ps(xr + (long)s * 8));
        const __m512 x1 = _mm512_broadcast_f32x4(_mm_loadu_ps(xr + (long)s * 8 + 4));
        _Pragma("GCC unroll 3") for (int kw = 0; kw < 3; kw++) {
          const int q = si - kw;
          if (q < 0 || q >= P) continue;
          lo[q] = _mm512_fmadd_ps(x0, wv[kw * 4 + 0], lo[q]);
          hi[q] = _mm512_fmadd_ps(x0, wv[kw * 4 + 2], hi[q]);
          lo[q] = _mm512_fmadd_ps(x1, wv[kw * 4 + 1], lo[q]);
          hi[q] = _mm512_fmadd_ps(x1, wv[kw * 4 + 3], hi[q]);
        }
      }
  });
}

AVX512 static void fwd_row(float *yr, const float *x, int bi, int row, int H, int W, const float *wp) {
  ROW_OF_PIXELS(fwd_pixels, yr, x, bi, row, H, W, wp);
}

/* ---- the same in bf16 (AVX512-BF16: vdpbf16ps) --------------------------------------------------------------------
 * Lane 4g + j of a vector still stands for output channel 4h + g, but now for the pair of input channels 2j, 2j + 1:
 * vdpbf16ps adds both products of a lane's two bf16 pairs into its fp32 sum. A tap's weights are 2 vectors ([h]) of
 * 32 bf16, element 2(4g + j) + k = w[4h + g][2j + k][tap], and an input pixel's 8 channels, rounded to bf16 as they
 * are read (vcvtneps2bf16), are repeated in each group of 4 lanes: one instruction does the work of the fp32 kernel's
 * two FMAs, and the same reduce_pair adds each output channel's 4 lanes. Sums stay fp32. The inputs are rounded as they
 * are read (3 times per pixel: once per output row it reaches), which measured faster than rounding the whole input
 * into the workspace first (Zen 4, 2 threads, batch 64, 32x32, 8 -> 8 channels, forward, medians of 41: fp32 0.37 ms,
 * bf16 rounded as read 0.235, rounded first 0.28). */
#define BF16 __attribute__((target("avx512f,avx512vl,avx512bf16")))

/* The bf16 packed weights: pack_weights's values in the pair-per-lane order, staged as fp32 in `stage`, then rounded
 * to bf16 (round to nearest even, as the inputs) into wb. Both regions hold pairs * NW values. */
BF16 static void pack_weights_bf16(uint16_t *wb, float *stage, const float *wt, int cin, int cout, int bwd_data) {
  const int bo = (bwd_data ? cin : cout) / 8, bi = (bwd_data ? cout : cin) / 8;
  for (int p = 0; p < bo * bi; p++)
    for (int t = 0; t < 9; t++)
      for (int e = 0; e < 64; e++) {
        const int h = e / 32, l = (e % 32) / 2, k = e % 2, g = l / 4, j = l % 4;
        const int o = (p / bi) * 8 + 4 * h + g, i = (p % bi) * 8 + 2 * j + k;
        stage[(long)p * NW + t * 64 + e] = bwd_data ? wt[(i * cin + o) * 9 + 8 - t] : wt[(o * cin + i) * 9 + t];
      }
  for (long v = 0; v < (long)bo * bi * NW; v += 32) {
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_load_ps(stage + v + 16), _mm512_load_ps(stage + v));
    _mm512_store_si512((void *)(wb + v), (__m512i)b);
  }
}

/* fwd_pixels in bf16 (wb: one output block's packed bf16 weights, NW per input block). */
BF16 INLINE void fwd_pixels_bf16(float *yr, const float *x, int bi, int row, int H, int W, int c0, const int P,
                                 const int edge, const uint16_t *wb) {
  FWD_PIXEL_ROWS(yr, x, bi, row, H, W, c0, P, {
      __m512bh wv[6]; /* [kw][h] */
      _Pragma("GCC unroll 6") for (int i = 0; i < 6; i++)
          wv[i] = (__m512bh)_mm512_load_si512((const void *)(wb + (long)ib * NW + (kh * 6 + i) * 32));
      _Pragma("GCC unroll 10") for (int si = 0; si < P + 2; si++) {
        const int s = c0 + si - 1;
        if (edge && (s < 0 || s >= W)) continue;
        const __m128bh xb = _mm256_cvtneps_pbh(_mm256_loadu_ps(xr + (long)s * 8));
        const __m512bh xv = (__m512bh)_mm512_broadcast_i32x4((__m128i)xb);
        _Pragma("GCC unroll 3") for (int kw = 0; kw < 3; kw++) {
          const int q = si - kw;
          if (q < 0 || q >= P) continue;
          lo[q] = _mm512_dpbf16_ps(lo[q], xv, wv[kw * 2 + 0]);
          hi[q] = _mm512_dpbf16_ps(hi[q], xv, wv[kw * 2 + 1]);
        }
      }
  });
}

BF16 static void fwd_row_bf16(float *yr, const float *x, int bi, int row, int H, int W, const uint16_t *wb) {
  ROW_OF_PIXELS(fwd_pixels_bf16, yr, x, bi, row, H, W, wb);
}

/* y [n, bo, h, w, 8] = conv(x [n, bi, h, w, 8]) with packed weights (wp fp32, or wb bf16 where not NULL): the rows of
 * every image and output block go to threads in chunks (affinity scheduling: a thread's own images first), each
 * output written by one. */
static void conv_rows(int n, int bi, int bo, int h, int w, float *y, const float *x, const float *wp,
                      const uint16_t *wb) {
  const long rows = (long)n * bo * h, plane = (long)h * w * 8;
  synco_affinity a;
  synco_affinity_init(&a, rows, 4);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, r) {
    const long img = r / ((long)bo * h), ob = r / h % bo;
    if (wb) fwd_row_bf16(y + r * w * 8, x + img * bi * plane, bi, (int)(r % h), h, w, wb + ob * bi * NW);
    else fwd_row(y + r * w * 8, x + img * bi * plane, bi, (int)(r % h), h, w, wp + ob * bi * NW);
  }
}

static synco_status check(const synco_direct8_shape *s, const float *ws) {
  if (!synco_direct8_available()) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu direct8 conv: this CPU has no AVX-512");
  if (!synco_direct8_applies(s->cin, s->cout, 3, 3, 1, 1, 8) || s->n <= 0 || s->h <= 0 || s->w <= 0)
    return synco_fail(SYNCO_ERR_ARG, "cpu direct8 conv: shape n%d %d -> %d %dx%d not supported", s->n, s->cin,
                      s->cout, s->h, s->w);
  if (!ws || (uintptr_t)ws % 64) return synco_fail(SYNCO_ERR_ARG, "cpu direct8 conv: workspace not 64-byte aligned");
  return SYNCO_OK;
}

/* The forward (out = y, in = x) or backward data (out = dx, in = dy): the same convolution of other weights. */
static synco_status conv(const synco_direct8_shape *s, float *out, const float *in, const float *wt, float *ws,
                         int bwd_data) {
  SYNCO_TRY(check(s, ws));
  const int bi = (bwd_data ? s->cout : s->cin) / 8, bo = (bwd_data ? s->cin : s->cout) / 8;
  if (s->bf16) {
    if (!synco_direct8_bf16_available())
      return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu direct8 conv: this CPU has no AVX512-BF16");
    uint16_t *wb = (uint16_t *)(ws + (long)bi * bo * NW); /* behind the staged fp32 weights (the workspace has room) */
    pack_weights_bf16(wb, ws, wt, s->cin, s->cout, bwd_data);
    conv_rows(s->n, bi, bo, s->h, s->w, out, in, NULL, wb);
    return SYNCO_OK;
  }
  pack_weights(ws, wt, s->cin, s->cout, bwd_data);
  conv_rows(s->n, bi, bo, s->h, s->w, out, in, ws, NULL);
  return SYNCO_OK;
}

synco_status synco_direct8_fwd(const synco_direct8_shape *s, float *y, const float *x, const float *wt,
                               float *workspace) {
  return conv(s, y, x, wt, workspace, 0);
}

synco_status synco_direct8_bwd_data(const synco_direct8_shape *s, float *dx, const float *dy, const float *wt,
                                    float *workspace) {
  return conv(s, dx, dy, wt, workspace, 1);
}

/* ---- backward weights ------------------------------------------------------------------------------------------- */

/* The 12 partial sums of one kernel row (kh) from a row of dy (dr) and the row of x it meets (xr):
 * acc[kw * 4 + h * 2 + b] += dy[q][4h + g] * x[q + kw - 1][4b + j] in lane 4g + j, over the output pixels q in
 * order. The loop walks x's columns s: each is broadcast once (2 loads) and meets the 3 output pixels q = s + 1 - kw
 * it reaches, whose dy is spread over the lanes (2 permutes) once, as column s + 1 comes in, and kept for the next
 * two columns: 12 FMAs per pixel and kernel row beside 2 permutes, where a pixel-by-pixel walk broadcast each of its
 * 3 columns again (GCC made those register shuffles, on the port the FMAs need: 45 % slower than the forward). Each
 * accumulator still takes its pixels in ascending order, so the sums are those of that walk, bit for bit. */
AVX512 INLINE void spread_dy(const float *dr, int q, __m512 *e0, __m512 *e1) {
  const __m512i lo = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(4));
  const __m512 d = _mm512_castps256_ps512(_mm256_loadu_ps(dr + (long)q * 8));
  *e0 = _mm512_permutexvar_ps(lo, d);
  *e1 = _mm512_permutexvar_ps(hi, d);
}

/* acc[k * 4 .. k * 4 + 3] += the products of one pixel's spread dy (e0, e1) and one column's x halves (x0, x1) */
AVX512 INLINE void bwdw_fma(__m512 *acc, int k, __m512 e0, __m512 e1, __m512 x0, __m512 x1) {
  acc[k * 4 + 0] = _mm512_fmadd_ps(e0, x0, acc[k * 4 + 0]);
  acc[k * 4 + 1] = _mm512_fmadd_ps(e0, x1, acc[k * 4 + 1]);
  acc[k * 4 + 2] = _mm512_fmadd_ps(e1, x0, acc[k * 4 + 2]);
  acc[k * 4 + 3] = _mm512_fmadd_ps(e1, x1, acc[k * 4 + 3]);
}

AVX512 INLINE void bwdw_row(__m512 *acc, const float *dr, const float *xr, int W) {
  __m512 p0 = _mm512_setzero_ps(), p1 = p0, c0, c1, n0 = p0, n1 = p0; /* dy spread: pixels s - 1, s, s + 1 */
  spread_dy(dr, 0, &c0, &c1);
  for (int s = 0; s < W; s++) {
    const __m512 x0 = _mm512_broadcast_f32x4(_mm_loadu_ps(xr + (long)s * 8));
    const __m512 x1 = _mm512_broadcast_f32x4(_mm_loadu_ps(xr + (long)s * 8 + 4));
    if (s + 1 < W) { /* kw = 0: pixel s + 1 */
      spread_dy(dr, s + 1, &n0, &n1);
      bwdw_fma(acc, 0, n0, n1, x0, x1);
    }
    bwdw_fma(acc, 1, c0, c1, x0, x1); /* kw = 1: pixel s */
    if (s > 0) bwdw_fma(acc, 2, p0, p1, x0, x1); /* kw = 2: pixel s - 1 */
    p0 = c0, p1 = c1, c0 = n0, c1 = n1;
  }
}

/* The loops of one image's backward weights (bwdw_image, bwdw_image_bf16) around the statements given last, which
 * add one kernel row's partial sums acc[12] from an output row of dy (dr) and the row of x it meets (xr): kernel
 * rows, then output rows. */
#define BWDW_IMAGE_ROWS(part, dy, x, H, W, ...)                                      \
  for (int kh = 0; kh < 3; kh++) {                                                   \
    __m512 acc[12];                                                                  \
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++) acc[i] = _mm512_setzero_ps(); \
    for (int row = 0; row < (H); row++) {                                            \
      const int r = row + kh - 1;                                                    \
      if (r < 0 || r >= (H)) continue;                                               \
      const float *dr = (dy) + (long)row * (W) * 8, *xr = (x) + (long)r * (W) * 8;   \
      __VA_ARGS__;                                                                   \
    }                                                                                \
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++)                            \
        _mm512_store_ps((part) + (kh * 12 + i) * 16, acc[i]);                        \
  }

/* The 576 partial sums of one (output block, input block) pair over one image (part, in the packed layout), summed
 * over its pixels in a fixed order. */
AVX512 static void bwdw_image(float *part, const float *dy, const float *x, int H, int W) {
  BWDW_IMAGE_ROWS(part, dy, x, H, W, bwdw_row(acc, dr, xr, W));
}

/* ---- backward weights in bf16 -----------------------------------------------------------------------------------
 * The lanes of bwdw_image (4g + j: output channel 4h + g, input channel 4b + j, the packed partial sums unchanged),
 * each now summing two products per vdpbf16ps: those of two neighbouring output pixels q and q + 1. dy's operand
 * for half h: element 2(4g + j) + k = dy[q + k][4h + g]; x's for half b and tap kw: element 2(4g + j) + k =
 * x[q + k + kw - 1][4b + j] (0 outside the row). Each is 16 fp32 values loaded at once (two pixels' 8 channels),
 * rounded to bf16 (vcvtneps2bf16) and spread over the lanes by one vpermw (AVX512BW). The operand of x at column
 * q + 1 serves tap 2 of pixels (q, q + 1) and tap 0 of (q + 2, q + 3): 2 of them are made per pair of pixels. */
#define BF16W __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* The vpermw indices that spread two pixels' 16 bf16 (pixel k's 8 channels at k*8 + c) over the lanes: [0], [1]:
 * dy's halves h; [2], [3]: x's halves b. */
BF16W static void spread_indices(__m512i sp[4]) {
  for (int v = 0; v < 4; v++) {
    short idx[32];
    for (int e = 0; e < 32; e++) idx[e] = (short)((e % 2) * 8 + 4 * (v % 2) + (v < 2 ? e / 8 : (e / 2) % 4));
    sp[v] = _mm512_loadu_si512((const void *)idx);
  }
}

/* Columns s and s + 1 of a row (8 channels each) rounded to bf16, 0 where a column is outside [0, W). */
BF16W INLINE __m512i pair_bf16(const float *row, int s, int W, const int edge) {
  __m512 v;
  if (!edge) v = _mm512_loadu_ps(row + (long)s * 8);
  else if (s >= W || s + 1 < 0) v = _mm512_setzero_ps();
  else if (s < 0) /* column 0 into the upper half */
    v = _mm512_shuffle_f32x4(_mm512_setzero_ps(), _mm512_castps256_ps512(_mm256_loadu_ps(row)),
                             _MM_SHUFFLE(1, 0, 0, 0));
  else v = _mm512_maskz_loadu_ps(s + 1 < W ? 0xFFFF : 0x00FF, row + (long)s * 8);
  return _mm512_castsi256_si512((__m256i)_mm512_cvtneps_pbh(v));
}

/* Output pixels q and q + 1 of one kernel row: acc[kw * 4 + h * 2 + b]; xc: in, the x operands (halves 0, 1) at
 * column q - 1, out: at column q + 1. */
BF16W INLINE void bwdw_pair_bf16(__m512 *acc, __m512i *xc, const __m512i *sp, const float *dr, const float *xr, int q,
                                 int W, const int edge) {
  const __m512i d = pair_bf16(dr, q, W, edge);
  const __m512bh e[2] = {(__m512bh)_mm512_permutexvar_epi16(sp[0], d), (__m512bh)_mm512_permutexvar_epi16(sp[1], d)};
  const __m512i x1 = pair_bf16(xr, q, W, edge), x2 = pair_bf16(xr, q + 1, W, edge);
  const __m512bh xs[3][2] = {
      {(__m512bh)xc[0], (__m512bh)xc[1]},
      {(__m512bh)_mm512_permutexvar_epi16(sp[2], x1), (__m512bh)_mm512_permutexvar_epi16(sp[3], x1)},
      {(__m512bh)_mm512_permutexvar_epi16(sp[2], x2), (__m512bh)_mm512_permutexvar_epi16(sp[3], x2)}};
#pragma GCC unroll 3
  for (int kw = 0; kw < 3; kw++)
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
      acc[kw * 4 + h * 2 + 0] = _mm512_dpbf16_ps(acc[kw * 4 + h * 2 + 0], e[h], xs[kw][0]);
      acc[kw * 4 + h * 2 + 1] = _mm512_dpbf16_ps(acc[kw * 4 + h * 2 + 1], e[h], xs[kw][1]);
    }
  xc[0] = (__m512i)xs[2][0];
  xc[1] = (__m512i)xs[2][1];
}

/* bwdw_image with bf16 products (the same packed partial sums, pixels taken two at a time). */
BF16W static void bwdw_image_bf16(float *part, const float *dy, const float *x, int H, int W) {
  __m512i sp[4];
  spread_indices(sp);
  BWDW_IMAGE_ROWS(part, dy, x, H, W, {
    const __m512i xm = pair_bf16(xr, -1, W, 1);
    __m512i xc[2] = {_mm512_permutexvar_epi16(sp[2], xm), _mm512_permutexvar_epi16(sp[3], xm)};
    bwdw_pair_bf16(acc, xc, sp, dr, xr, 0, W, 1);
    int q = 2;
    for (; q + 2 < W; q += 2) bwdw_pair_bf16(acc, xc, sp, dr, xr, q, W, 0); /* columns up to q + 2 inside */
    for (; q < W; q += 2) bwdw_pair_bf16(acc, xc, sp, dr, xr, q, W, 1);
  });
}

synco_status synco_direct8_bwd_weights(const synco_direct8_shape *s, float *dw, const float *dy, const float *x,
                                       float *workspace) {
  SYNCO_TRY(check(s, workspace));
  if (s->bf16 && !synco_direct8_bf16_available())
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu direct8 conv: this CPU has no AVX512-BF16");
  const int bi = s->cin / 8, bo = s->cout / 8, pairs = bi * bo, n = s->n;
  const long plane = (long)s->h * s->w * 8, per_image = (long)pairs * NW;
  float *part = workspace + per_image; /* after the packed weights' place, unused here */
  synco_affinity a;
  synco_affinity_init(&a, (long)n * pairs, 1);
#pragma omp parallel num_threads(a.parts)
  {
    SYNCO_AFFINITY_FOR(a, t) {
      const long i = t / pairs, ob = t % pairs / bi, ib = t % bi;
      float *pi = part + i * per_image + (t % pairs) * NW;
      const float *di = dy + (i * bo + ob) * plane, *xi = x + (i * bi + ib) * plane;
      if (s->bf16) bwdw_image_bf16(pi, di, xi, s->h, s->w);
      else bwdw_image(pi, di, xi, s->h, s->w);
    }
#pragma omp barrier
    /* each packed sum over the images in image order, into its OIHW place */
#pragma omp for schedule(static)
    for (long e = 0; e < per_image; e++) {
      float sum = part[e];
      for (int i = 1; i < n; i++) sum += part[(long)i * per_image + e];
      const int p = (int)(e / NW), t = (int)(e % NW) / 64, l = (int)(e % 64);
      const int co = (p / bi) * 8 + 4 * (l / 32) + (l % 16) / 4, ci = (p % bi) * 8 + 4 * ((l / 16) % 2) + l % 4;
      dw[((long)co * s->cin + ci) * 9 + t] += sum;
    }
  }
  return SYNCO_OK;
}
