/* Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution on nChw8c or nChw16c activations (see cpu_wino_conv.h).
 *
 * F(2x2, 3x3): with g the 3x3 kernel, d a 4x4 input tile (the output tile's pixels and a ring of one, zero outside
 * the image) and Y the 2x2 output tile:
 *   Y = A' [ (G g G') . (B' d B) ] A,  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   B' = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  A' = [1 1 1 0; 0 1 -1 -1].
 * Summed over input channels, the elementwise product becomes, for each of the 16 Winograd positions xi,
 * M[xi] = V[xi] U[xi] with V [tiles x Cin] and U [Cin x Cout]. Threads take chunks of tiles (across images);
 * a chunk's V and M stay in the thread's part of the workspace. Backward weights runs the same transforms
 * on x and (adjoint of the output transform) on dy, multiplies V' D per position and maps the 4x4 sums back
 * to 3x3 with G' . G. All coefficients are 0, +-1 or +-1/2, so the results differ from the direct
 * convolution's only by rounding.
 *
 * F(4x4, 3x3) is the same with a 6x6 input tile, a 4x4 output tile and 36 positions (Lavin and Gray's points 0,
 * +-1, +-2 and infinity):
 *   B' = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 *   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
 *   A' = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
 * It multiplies 36/16 = 2.25 times per output pixel where F(2x2, 3x3) multiplies 4 times and the direct
 * convolution 9, for larger coefficients and so more rounding (within the tests' fp32 tolerance in the forward and
 * backward-data passes). The plan takes it for those two passes where the image's sides are multiples of 4 and
 * the layer has at most 256 channels a side (data_tile); backward weights keeps F(2x2, 3x3) (cpu_wino_conv.h
 * says why). */
#include "backend/cpu/cpu_wino_conv.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_affinity.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define NXI2 16      /* Winograd positions of F(2x2, 3x3) */
#define GRAD_CHUNKS 2 /* backward weights takes this many forward chunks of tiles at a time */
/* Floats left between the rows of V and M (and of backward weights' V and D), one per Winograd position: a chunk's
 * row is tiles x channels floats, a multiple of 2 KB at 16 channels and over (32 tiles x 16 x 4 B = 2 KB at F(4x4, 3x3);
 * 128 x 32 x 4 B = 16 KB at backward weights' F(2x2, 3x3)), so the 36 (or 16) rows one tile's transform writes fell
 * into the same one or two sets of the 8-way L1 and evicted each other between the two 8-channel halves of a line.
 * 64 bytes more a row put them in distinct sets. The arithmetic is unchanged (pretrain checkpoints byte-identical).
 * Zen 4, 2 threads, 2026-12-07, per call inside `bench step` steps, alternated with the unpadded build: --width 16 -b 64,
 * F(4x4, 3x3) on 16 channels at 32x32, key forward 0.90-0.95 -> 0.69-0.74 ms, backward data 0.95-1.09 -> 0.76-0.87,
 * the step 984-1,003 -> 1,007-1,022 images/s (3 rounds); SYNCO_CONV_ALGO=winograd --width 32 -b 64 (synco's
 * Winograd in every pass, as on AVX2 machines), backward weights of 64 channels at 16x16 4.84-4.89 -> 3.95-4.07 ms,
 * the step 206-208 -> 216-225 images/s (3 rounds). */
#define WINO_ROW_PAD 16

int synco_wino_available(void) {
  static int avx2 = -1;
  if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2;
}

/* Winograd positions of an m x m output tile: (m + 2)^2. */
static int nxi_of(int m) { return (m + 2) * (m + 2); }

int synco_wino_applies(int cin, int cout, int h, int w, int kh, int kw, int stride, int pad, int block) {
  return synco_wino_available() && (block == 8 || block == 16) && kh == 3 && kw == 3 && stride == 1 && pad == 1 &&
         cin % block == 0 && cout % block == 0 && h >= 2 && w >= 2 && h % 2 == 0 && w % 2 == 0;
}

synco_status synco_wino_check_env(void) {
  const char *e = getenv("SYNCO_WINO_TILE");
  if (e && *e && strcmp(e, "2") && strcmp(e, "4") && strcmp(e, "rule"))
    return synco_fail(SYNCO_ERR_ARG, "SYNCO_WINO_TILE=%s: expected 2, 4 or rule", e);
  return SYNCO_OK;
}

/* The output tile of the forward and backward-data passes. F(4x4, 3x3) where both sides are multiples of 4 and
 * neither side of the layer has over 256 channels: each chunk of tiles reads all of U, 2.25x larger than F(2x2,
 * 3x3)'s, and at 512 channels (4x4 images, so at most 16 tiles a chunk) that made the pass memory-bound: on 2
 * AVX2 cores (Zen 3, batch 128, ms a pass, forward / backward data) F(4x4) against F(2x2) ran 31-34 / 29-35
 * against 50-54 / 48-54 at 64 channels on 32x32, 28-31 / 27-30 against 43-48 / 44-48 at 128 on 16x16, 32-34 /
 * 32-34 against 44-52 / 43-51 at 256 on 8x8, and 62 / 63 against 52-55 / 51-53 at 512 on 4x4.
 * SYNCO_WINO_TILE=2 takes F(2x2, 3x3) everywhere, =4 F(4x4, 3x3) wherever the sides allow. */
static int data_tile(int cin, int cout, int h, int w) {
  const char *e = getenv("SYNCO_WINO_TILE");
  const int four = h % 4 == 0 && w % 4 == 0;
  if (e && !strcmp(e, "2")) return 2;
  if (e && !strcmp(e, "4")) return four ? 4 : 2;
  return four && cin <= 256 && cout <= 256 ? 4 : 2;
}

/* Tiles per chunk for `tiles` tiles of m x m. 64 tiles for F(2x2, 3x3): each chunk reads all of U (16 cin x
 * cout), so fewer tiles make the wide layers memory-bound (12 tiles ran layer4 of ResNet-18 1.4x slower), and
 * more spill V and M out of L2 on the narrow ones (measured 32 / 64 / 128 / 256 on 2 AVX2 cores: 64 was best or
 * tied on every layer). 32 for F(4x4, 3x3), whose tiles hold 36 positions (16, 32 and 64 measured on Zen 3: 16
 * ran 1.1-1.4x slower, 32 and 64 tied). Small batches get at least 8 chunks. The chunk size does not depend on
 * the thread count, so neither do the results (backward weights sums its chunks in order). */
static int chunk_tiles(int m, long tiles) {
  long tc = m == 4 ? 32 : 64;
  if (tc > (tiles + 7) / 8) tc = (tiles + 7) / 8;
  if (tc < 8) tc = 8;
  return (int)tc;
}

size_t synco_wino_plan_make(synco_wino_plan *p, int n, int cin, int cout, int h, int w, int block, int threads) {
  const int m = data_tile(cin, cout, h, w);
  *p = (synco_wino_plan){.n = n, .cin = cin, .cout = cout, .h = h, .w = w, .m = m, .block = block == 16 ? 16 : 8,
                         .tiles_per_chunk = chunk_tiles(m, (long)n * (h / m) * (w / m)),
                         .grad_tiles_per_chunk = GRAD_CHUNKS * chunk_tiles(2, (long)n * (h / 2) * (w / 2)),
                         .threads = threads < 1 ? 1 : threads};
  /* U (or dU) first, then each thread's V and M, or backward weights' shared V and D */
  const size_t u = (size_t)nxi_of(m) * cin * cout;
  const size_t data = (size_t)nxi_of(m) * (p->tiles_per_chunk * (size_t)(cin + cout) + 2 * WINO_ROW_PAD) * p->threads;
  const size_t grad = (size_t)nxi_of(2) * (p->grad_tiles_per_chunk * (size_t)(cin + cout) + 2 * WINO_ROW_PAD);
  return (u + (data > grad ? data : grad)) * sizeof(float);
}

const char *synco_wino_impl(const synco_wino_plan *p, int bwd_weights) {
  if (p->m == 4 && !bwd_weights) return p->block == 16 ? "synco:winograd_f4x3:nChw16c" : "synco:winograd_f4x3:nChw8c";
  return p->block == 16 ? "synco:winograd_f2x3:nChw16c" : "synco:winograd_f2x3:nChw8c";
}

/* G of F(4x4, 3x3) applied to 3 values (one column or row of a kernel) into 6. */
static void g6(float g0, float g1, float g2, float u[6]) {
  u[0] = 0.25f * g0;
  u[1] = -(g0 + g1 + g2) / 6;
  u[2] = -(g0 - g1 + g2) / 6;
  u[3] = g0 / 24 + g1 / 12 + g2 / 6;
  u[4] = g0 / 24 - g1 / 12 + g2 / 6;
  u[5] = g2;
}

/* G g G' of one 3x3 kernel g into the 36 streams u[x * xs] of F(4x4, 3x3). */
static void kernel_f4(const float g[9], float *u, long xs) {
  float t[3][6], r[6]; /* t[j]: G of the kernel's column j */
  for (int j = 0; j < 3; j++) g6(g[j], g[3 + j], g[6 + j], t[j]);
  for (int i = 0; i < 6; i++) {
    g6(t[0][i], t[1][i], t[2][i], r);
    for (int l = 0; l < 6; l++) u[(i * 6 + l) * xs] = r[l];
  }
}

/* G g G' of one 3x3 kernel g into the 16 streams u[x * xs] of F(2x2, 3x3). */
static void kernel_f2(const float g[9], float *u, long xs) {
  float t[4][3];
  for (int j = 0; j < 3; j++) {
    t[0][j] = g[j];
    t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
    t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
    t[3][j] = g[6 + j];
  }
  for (int i = 0; i < 4; i++) {
    u[(i * 4 + 0) * xs] = t[i][0];
    u[(i * 4 + 1) * xs] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
    u[(i * 4 + 2) * xs] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
    u[(i * 4 + 3) * xs] = t[i][2];
  }
}

/* B' of 6 values of F(4x4, 3x3) (one column or row of a tile). */
static inline __attribute__((always_inline, target("avx2,fma"))) void bt6(const __m256 d[6], __m256 v[6]) {
  const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f), two = _mm256_set1_ps(2.0f);
  const __m256 t1 = _mm256_fnmadd_ps(four, d[2], d[4]), t2 = _mm256_fnmadd_ps(four, d[1], d[3]);
  const __m256 t3 = _mm256_sub_ps(d[4], d[2]), t4 = _mm256_mul_ps(two, _mm256_sub_ps(d[3], d[1]));
  v[0] = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4]));
  v[1] = _mm256_add_ps(t1, t2);
  v[2] = _mm256_sub_ps(t1, t2);
  v[3] = _mm256_add_ps(t3, t4);
  v[4] = _mm256_sub_ps(t3, t4);
  v[5] = _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5]));
}

/* B' d B of one 8-channel 6x6 tile whose top-left input pixel is (r0, c0), as input_tile. */
static AVX2 void input_tile4(float *v, long vstride, const float *img, int B, int h, int w, int r0, int c0) {
  __m256 e[6][6];
  const __m256 z = _mm256_setzero_ps();
  for (int j = 0; j < 6; j++) {
    const int c = c0 + j;
    __m256 d[6], t[6];
    for (int i = 0; i < 6; i++) {
      const int r = r0 + i;
      d[i] = (r >= 0 && r < h && c >= 0 && c < w) ? _mm256_loadu_ps(img + ((long)r * w + c) * B) : z;
    }
    bt6(d, t);
    for (int i = 0; i < 6; i++) e[i][j] = t[i];
  }
  for (int i = 0; i < 6; i++) {
    __m256 t[6];
    bt6(e[i], t);
    for (int j = 0; j < 6; j++) _mm256_storeu_ps(v + (i * 6 + j) * vstride, t[j]);
  }
}

/* A' of 6 values of F(4x4, 3x3) into 4. */
static inline __attribute__((always_inline, target("avx2,fma"))) void at6(const __m256 q[6], __m256 y[4]) {
  const __m256 s12 = _mm256_add_ps(q[1], q[2]), d12 = _mm256_sub_ps(q[1], q[2]);
  const __m256 s34 = _mm256_add_ps(q[3], q[4]), d34 = _mm256_sub_ps(q[3], q[4]);
  y[0] = _mm256_add_ps(_mm256_add_ps(q[0], s12), s34);
  y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), d34, d12);
  y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s34, s12);
  y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), d34, d12), q[5]);
}

/* A' m A of one 8-channel tile into the 4x4 output pixels at (r0, c0), as output_tile. */
static AVX2 void output_tile4(float *img, int B, int w, int r0, int c0, const float *m, long mstride) {
  __m256 r[4][6];
  for (int j = 0; j < 6; j++) {
    __m256 q[6], y[4];
    for (int i = 0; i < 6; i++) q[i] = _mm256_loadu_ps(m + (i * 6 + j) * mstride);
    at6(q, y);
    for (int i = 0; i < 4; i++) r[i][j] = y[i];
  }
  for (int i = 0; i < 4; i++) {
    __m256 y[4];
    at6(r[i], y);
    float *o = img + ((long)(r0 + i) * w + c0) * B;
    for (int j = 0; j < 4; j++) _mm256_storeu_ps(o + j * B, y[j]);
  }
}

/* U[xi][r][c] = (G g G')[xi] for the kernel g of every (r, c): forward r = ci, c = co, g = w[co][ci];
 * backward data r = co, c = ci, g = w[co][ci] rotated by 180 degrees; the plan's tile m picks F(2x2, 3x3)'s 16
 * positions or F(4x4, 3x3)'s 36. Walks U row by row (c innermost) so that its output streams are written
 * contiguously; the 9-float reads of w are the strided side. */
static void transform_weights(float *U, const float *w, int cin, int cout, int flip, int m) {
  const int rows = flip ? cout : cin, cols = flip ? cin : cout;
  const long xs = (long)rows * cols;
#pragma omp parallel for schedule(dynamic, 8)
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      const long co = flip ? r : c, ci = flip ? c : r;
      const float *k = w + (co * cin + ci) * 9;
      float g[9];
      for (int i = 0; i < 9; i++) g[i] = flip ? k[8 - i] : k[i];
      float *u = U + (long)r * cols + c;
      if (m == 4) kernel_f4(g, u, xs);
      else kernel_f2(g, u, xs);
    }
}

/* B' d B of one 8-channel 4x4 tile whose top-left input pixel is (r0, c0); pixels outside the image are 0. A pixel's
 * 8 channels lie at img + pixel * B (B = 8: nChw8c; B = 16: one half of an nChw16c block). */
static AVX2 void input_tile(float *v, long vstride, const float *img, int B, int h, int w, int r0, int c0) {
  __m256 d[4][4];
  const __m256 z = _mm256_setzero_ps();
  for (int i = 0; i < 4; i++) {
    const int r = r0 + i;
    for (int j = 0; j < 4; j++) {
      const int c = c0 + j;
      d[i][j] = (r >= 0 && r < h && c >= 0 && c < w) ? _mm256_loadu_ps(img + ((long)r * w + c) * B) : z;
    }
  }
  __m256 e[4][4];
  for (int j = 0; j < 4; j++) {
    e[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
    e[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
    e[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
    e[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
  }
  for (int i = 0; i < 4; i++) {
    _mm256_storeu_ps(v + (i * 4 + 0) * vstride, _mm256_sub_ps(e[i][0], e[i][2]));
    _mm256_storeu_ps(v + (i * 4 + 1) * vstride, _mm256_add_ps(e[i][1], e[i][2]));
    _mm256_storeu_ps(v + (i * 4 + 2) * vstride, _mm256_sub_ps(e[i][2], e[i][1]));
    _mm256_storeu_ps(v + (i * 4 + 3) * vstride, _mm256_sub_ps(e[i][1], e[i][3]));
  }
}

/* A' m A of one 8-channel tile into the 2x2 output pixels at (r0, c0) (pixel stride B, as input_tile). */
static AVX2 void output_tile(float *img, int B, int w, int r0, int c0, const float *m, long mstride) {
  __m256 q[4][4], r[2][4];
  for (int x = 0; x < 16; x++) q[x / 4][x % 4] = _mm256_loadu_ps(m + x * mstride);
  for (int j = 0; j < 4; j++) {
    r[0][j] = _mm256_add_ps(_mm256_add_ps(q[0][j], q[1][j]), q[2][j]);
    r[1][j] = _mm256_sub_ps(_mm256_sub_ps(q[1][j], q[2][j]), q[3][j]);
  }
  for (int i = 0; i < 2; i++) {
    float *o = img + ((long)(r0 + i) * w + c0) * B;
    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(r[i][0], r[i][1]), r[i][2]));
    _mm256_storeu_ps(o + B, _mm256_sub_ps(_mm256_sub_ps(r[i][1], r[i][2]), r[i][3]));
  }
}

/* A dy A' of one 8-channel 2x2 tile of dy at (r0, c0): the gradient of the tile's 16 Winograd products. */
static AVX2 void grad_tile(float *d, long dstride, const float *img, int B, int w, int r0, int c0) {
  __m256 y[2][2], r[4][2];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++) y[i][j] = _mm256_loadu_ps(img + ((long)(r0 + i) * w + c0 + j) * B);
  const __m256 z = _mm256_setzero_ps();
  for (int j = 0; j < 2; j++) {
    r[0][j] = y[0][j];
    r[1][j] = _mm256_add_ps(y[0][j], y[1][j]);
    r[2][j] = _mm256_sub_ps(y[0][j], y[1][j]);
    r[3][j] = _mm256_sub_ps(z, y[1][j]);
  }
  for (int i = 0; i < 4; i++) {
    _mm256_storeu_ps(d + (i * 4 + 0) * dstride, r[i][0]);
    _mm256_storeu_ps(d + (i * 4 + 1) * dstride, _mm256_add_ps(r[i][0], r[i][1]));
    _mm256_storeu_ps(d + (i * 4 + 2) * dstride, _mm256_sub_ps(r[i][0], r[i][1]));
    _mm256_storeu_ps(d + (i * 4 + 3) * dstride, _mm256_sub_ps(z, r[i][1]));
  }
}

/* dw[co][ci] += G' dU[.][ci][co] G, the adjoint of transform_weights (forward orientation); reads the 16
 * streams of dU contiguously. */
static void weight_grad(float *dw, const float *dU, int cin, int cout) {
  const long xs = (long)cin * cout;
#pragma omp parallel for schedule(dynamic, 8)
  for (int ci = 0; ci < cin; ci++)
    for (int co = 0; co < cout; co++) {
      const float *u = dU + (long)ci * cout + co;
      float x[4][4], t[3][4];
      for (int i = 0; i < 16; i++) x[i / 4][i % 4] = u[i * xs];
      for (int j = 0; j < 4; j++) {
        t[0][j] = x[0][j] + 0.5f * (x[1][j] + x[2][j]);
        t[1][j] = 0.5f * (x[1][j] - x[2][j]);
        t[2][j] = 0.5f * (x[1][j] + x[2][j]) + x[3][j];
      }
      float *g = dw + ((long)co * cin + ci) * 9;
      for (int i = 0; i < 3; i++) {
        g[i * 3 + 0] += t[i][0] + 0.5f * (t[i][1] + t[i][2]);
        g[i * 3 + 1] += 0.5f * (t[i][1] - t[i][2]);
        g[i * 3 + 2] += 0.5f * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
}

/* One block of C = A B: R rows (up to 6) by NV vectors of 8 columns (1 or 2), accumulated in registers over
 * all of K. R and NV are constants at every call, so the loops unroll into 12 FMAs per k for a full block. */
static inline __attribute__((always_inline, target("avx2,fma"))) void gemm_block(const float *a, long lda,
                                                                               const float *b, long ldb,
                                                                               float *c, long ldc, int K,
                                                                               const int R, const int NV) {
  __m256 acc[6][2];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
  for (int k = 0; k < K; k++) {
    const __m256 b0 = _mm256_loadu_ps(b + k * ldb);
    const __m256 b1 = NV > 1 ? _mm256_loadu_ps(b + k * ldb + 8) : b0;
    for (int r = 0; r < R; r++) {
      const __m256 ar = _mm256_broadcast_ss(a + r * lda + k);
      acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
      if (NV > 1) acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) _mm256_storeu_ps(c + r * ldc + v * 8, acc[r][v]);
}

/* C [m x n] = A [m x K] B [K x n], row-major, n a multiple of 8. B (one position's U) is read in place, where
 * OpenBLAS packs it again on every call: for K up to 256 (a chunk of 64 tiles, 64-256 channels) this ran
 * 1.07-1.2x faster than cblas_sgemm; at K = 512 B's rows lie 2 KB apart and OpenBLAS's packing wins
 * (measured 0.92x), so run() keeps cblas_sgemm there. */
static AVX2 void gemm(int m, int n, int K, const float *a, const float *b, float *c) {
  for (int j = 0; j < n; j += 16) {
    const int two = n - j >= 16;
    int i = 0;
    for (; i + 6 <= m; i += 6) {
      if (two) gemm_block(a + (long)i * K, K, b + j, n, c + (long)i * n + j, n, K, 6, 2);
      else gemm_block(a + (long)i * K, K, b + j, n, c + (long)i * n + j, n, K, 6, 1);
    }
    const float *ai = a + (long)i * K;
    float *ci = c + (long)i * n + j;
    switch ((m - i) * 2 + two) {
    case 2: gemm_block(ai, K, b + j, n, ci, n, K, 1, 1); break;
    case 3: gemm_block(ai, K, b + j, n, ci, n, K, 1, 2); break;
    case 4: gemm_block(ai, K, b + j, n, ci, n, K, 2, 1); break;
    case 5: gemm_block(ai, K, b + j, n, ci, n, K, 2, 2); break;
    case 6: gemm_block(ai, K, b + j, n, ci, n, K, 3, 1); break;
    case 7: gemm_block(ai, K, b + j, n, ci, n, K, 3, 2); break;
    case 8: gemm_block(ai, K, b + j, n, ci, n, K, 4, 1); break;
    case 9: gemm_block(ai, K, b + j, n, ci, n, K, 4, 2); break;
    case 10: gemm_block(ai, K, b + j, n, ci, n, K, 5, 1); break;
    case 11: gemm_block(ai, K, b + j, n, ci, n, K, 5, 2); break;
    default: break;
    }
  }
}

/* Tile g of the batch (tiles numbered image by image, row by row, m x m output pixels each): its image and
 * top-left output pixel. */
typedef struct {
  long img;
  int r, c;
} tile_pos;

static inline tile_pos tile_at(long g, int tiles_per_image, int tiles_per_row, int m) {
  const int t = (int)(g % tiles_per_image);
  return (tile_pos){g / tiles_per_image, m * (t / tiles_per_row), m * (t % tiles_per_row)};
}

/* Where the 8 channels b*8 .. b*8+7 of image `img` start in [n, c/B, h, w, B]. */
static inline long block_at(long img, int b, int c, int B, int h, int w) {
  return ((img * (c / B) + b * 8 / B) * h) * (long)w * B + (b * 8) % B;
}

/* B' d B of every 8 channels of one tile of `in` ([n, c/B, h, w, B]) into row k of V. */
static AVX2 void input_row(float *V, long vs, int k, const float *in, int B, int c, int h, int w, tile_pos t, int m) {
  for (int b = 0; b < c / 8; b++) {
    float *v = V + (long)k * c + b * 8;
    const float *img = in + block_at(t.img, b, c, B, h, w);
    if (m == 4) input_tile4(v, vs, img, B, h, w, t.r - 1, t.c - 1);
    else input_tile(v, vs, img, B, h, w, t.r - 1, t.c - 1);
  }
}

/* out = conv(in, U) for in [n, ci/B, h, w, B], out [n, co/B, h, w, B], U [16][ci][co]. Chunks go to threads
 * by affinity scheduling (cpu_affinity.h: a thread's own images first, then those a slower thread has not reached);
 * each chunk's result depends on nothing else. */
static AVX2 void run(const synco_wino_plan *p, int ci, int co, float *out, const float *in, const float *U, float *ws) {
  const int h = p->h, w = p->w, m = p->m, nxi = nxi_of(m), tw = w / m, tpi = (h / m) * tw;
  const int tc = p->tiles_per_chunk;
  const long tiles = (long)p->n * tpi, chunks = (tiles + tc - 1) / tc;
  const int ocb = co / 8, B = p->block;
  synco_affinity a; /* at most a part per thread slot of the workspace */
  synco_affinity_init_parts(&a, chunks, 1, omp_get_max_threads() < p->threads ? omp_get_max_threads() : p->threads);
#pragma omp parallel num_threads(a.parts)
  {
    float *V = ws + (size_t)omp_get_thread_num() * nxi * ((size_t)tc * (p->cin + p->cout) + 2 * WINO_ROW_PAD);
    const long vs = (long)tc * ci + WINO_ROW_PAD, ms = (long)tc * co + WINO_ROW_PAD;
    float *M = V + (size_t)nxi * vs;
    SYNCO_AFFINITY_FOR(a, ch) {
      const long g0 = ch * tc;
      const int cnt = (int)(tiles - g0 < tc ? tiles - g0 : tc);
      for (int k = 0; k < cnt; k++) input_row(V, vs, k, in, B, ci, h, w, tile_at(g0 + k, tpi, tw, m), m);
      for (int x = 0; x < nxi; x++) {
        if (ci <= 256) gemm(cnt, co, ci, V + x * vs, U + (long)x * ci * co, M + x * ms);
        else
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cnt, co, ci, 1.0f, V + x * vs, ci,
                      U + (long)x * ci * co, co, 0.0f, M + x * ms, co);
      }
      for (int k = 0; k < cnt; k++) {
        const tile_pos t = tile_at(g0 + k, tpi, tw, m);
        for (int b = 0; b < ocb; b++) {
          float *o = out + block_at(t.img, b, co, B, h, w);
          if (m == 4) output_tile4(o, B, w, t.r, t.c, M + (long)k * co + b * 8, ms);
          else output_tile(o, B, w, t.r, t.c, M + (long)k * co + b * 8, ms);
        }
      }
    }
  }
}

/* dU[xi] = sum over tiles of V[xi]' D[xi] (V from x, D from dy), in chunks of tiles shared by all threads:
 * the threads transform a chunk's tiles together, then each multiplies its share of the 16 positions, so
 * no thread keeps a private copy of dU (16 MB on the widest ResNet layer). */
static AVX2 void run_grad(const synco_wino_plan *p, float *dU, const float *x, const float *dy, float *ws) {
  const int ci = p->cin, co = p->cout, h = p->h, w = p->w, tw = w / 2, tpi = (h / 2) * tw;
  int threads = omp_get_max_threads();
  if (threads > p->threads) threads = p->threads;
  const int tc = p->grad_tiles_per_chunk;
  const long tiles = (long)p->n * tpi, chunks = (tiles + tc - 1) / tc;
  const int ocb = co / 8, B = p->block;
  const long vs = (long)tc * ci + WINO_ROW_PAD, ds = (long)tc * co + WINO_ROW_PAD;
  float *V = ws, *D = ws + (size_t)NXI2 * vs;
#pragma omp parallel num_threads(threads)
  for (long ch = 0; ch < chunks; ch++) {
    const long g0 = ch * tc;
    const int cnt = (int)(tiles - g0 < tc ? tiles - g0 : tc);
#pragma omp for schedule(dynamic, 8)
    for (int k = 0; k < cnt; k++) {
      const tile_pos t = tile_at(g0 + k, tpi, tw, 2);
      input_row(V, vs, k, x, B, ci, h, w, t, 2);
      for (int b = 0; b < ocb; b++)
        grad_tile(D + (long)k * co + b * 8, ds, dy + block_at(t.img, b, co, B, h, w), B, w, t.r, t.c);
    }
#pragma omp for schedule(dynamic, 1)
    for (int xi = 0; xi < NXI2; xi++)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ci, co, cnt, 1.0f, V + xi * vs, ci, D + xi * ds, co,
                  ch ? 1.0f : 0.0f, dU + (long)xi * ci * co, co);
  }
}

static synco_status check(const synco_wino_plan *p, const void *a, const void *b, const void *w, const float *ws) {
  if (!p || !a || !b || !w || !ws) return synco_fail(SYNCO_ERR_ARG, "winograd conv: missing buffer");
  return SYNCO_OK;
}

synco_status synco_wino_fwd(const synco_wino_plan *p, float *y, const float *x, const float *w, float *workspace) {
  SYNCO_TRY(check(p, y, x, w, workspace));
  float *U = workspace, *ws = workspace + (size_t)nxi_of(p->m) * p->cin * p->cout;
  transform_weights(U, w, p->cin, p->cout, 0, p->m);
  run(p, p->cin, p->cout, y, x, U, ws);
  return SYNCO_OK;
}

synco_status synco_wino_bwd_weights(const synco_wino_plan *p, float *dw, const float *dy, const float *x,
                                    float *workspace) {
  SYNCO_TRY(check(p, dw, dy, x, workspace));
  float *dU = workspace, *ws = workspace + (size_t)NXI2 * p->cin * p->cout;
  run_grad(p, dU, x, dy, ws);
  weight_grad(dw, dU, p->cin, p->cout);
  return SYNCO_OK;
}

synco_status synco_wino_bwd_data(const synco_wino_plan *p, float *dx, const float *dy, const float *w,
                                 float *workspace) {
  SYNCO_TRY(check(p, dx, dy, w, workspace));
  float *U = workspace, *ws = workspace + (size_t)nxi_of(p->m) * p->cin * p->cout;
  transform_weights(U, w, p->cin, p->cout, 1, p->m);
  run(p, p->cout, p->cin, dx, dy, U, ws);
  return SYNCO_OK;
}
