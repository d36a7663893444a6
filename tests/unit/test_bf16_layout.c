/* The single-source pieces of the CUDA backend's bf16 convolutions (kernels/bf16_kernel.h), run here on the CPU so
 * that what the GPU computes is tested on every machine:
 *  - the rounding fp32 -> bf16 on the cases that decide it (ties to even both ways, carry into the exponent, the
 *    largest float rounding to infinity, NaN kept quiet, signed zero, a denormal kept) and back;
 *  - the NCHW and NHWC index maps are inverse permutations, so a conversion there and back is the rounding alone;
 *  - a convolution computed as the CUDA backend computes it under bf16 (x and the weights moved by those maps into
 *    NHWC and KRSC bf16, an NHWC convolution, the result moved back) equals the reference backend's convolution of
 *    the bf16-rounded inputs: the weights' map is cuDNN's NHWC filter layout ([k][r][s][c]), for a 3x3/1, a 1x1/2
 *    and a 3x3/2 with channel counts that are not multiples of the GPU's 32 x 32 tiles. Both outputs are rounded to
 *    bf16 (cuDNN writes bf16), so the tolerance is 1e-5 + 2^-8·|ref|: one bf16 step, where the same products summed
 *    in another order round to the neighbouring value; a wrong map is off by the values themselves. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "kernels/bf16_kernel.h"
#include "tensor/backend.h"
#include "test_util.h"

static uint32_t bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static float of_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

static void test_rounding(void) {
  const struct { uint32_t in; uint16_t out; } cases[] = {
      {0x3f800000u, 0x3f80}, /* 1 */
      {0x3f808000u, 0x3f80}, /* 1 + 2^-8: a tie, to the even 1 */
      {0x3f818000u, 0x3f82}, /* 1 + 3·2^-8: a tie, to the even 1 + 2^-6 */
      {0x3f808001u, 0x3f81}, /* just above the tie */
      {0x3f807fffu, 0x3f80}, /* just below it */
      {0x3fffc000u, 0x4000}, /* carries into the exponent: 2 */
      {0x7f7fffffu, 0x7f80}, /* the largest float rounds to infinity, as torch's does */
      {0x7f800000u, 0x7f80}, /* infinity */
      {0xff800000u, 0xff80}, /* -infinity */
      {0x80000000u, 0x8000}, /* -0 */
      {0x00018000u, 0x0002}, /* a denormal, kept (a tie to even) */
      {0xc0490fdbu, 0xc049}, /* -pi */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const uint16_t got = synco_k_bf16_of(of_bits(cases[i].in));
    if (got != cases[i].out) printf("bf16 of 0x%08x: got 0x%04x, want 0x%04x\n", cases[i].in, got, cases[i].out);
    CHECK(got == cases[i].out);
    CHECK(bits(synco_k_f32_of_bf16(got)) == (uint32_t)cases[i].out << 16);
  }
  const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xffffffffu}; /* quiet, signalling (would round to inf), negative */
  for (int i = 0; i < 3; i++) {
    const uint16_t got = synco_k_bf16_of(of_bits(nans[i]));
    CHECK(isnan(synco_k_f32_of_bf16(got)) && (got & 0x40u));
  }
}

static void test_maps(void) {
  const int n = 3, c = 37, hw = 5 * 7;
  const size_t total = (size_t)n * c * hw;
  char *seen = calloc(total, 1);
  for (int i = 0; i < n; i++)
    for (int ch = 0; ch < c; ch++)
      for (int p = 0; p < hw; p++) {
        const size_t a = synco_k_nchw_at(i, ch, p, c, hw), b = synco_k_nhwc_at(i, ch, p, c, hw);
        CHECK(a < total && b < total);
        if (b < total) seen[b]++;
        CHECK(a == (size_t)((i * c + ch) * hw + p)); /* plain NCHW */
      }
  int once = 1;
  for (size_t i = 0; i < total; i++) once &= seen[i] == 1;
  CHECK(once); /* NHWC is a permutation */
  float *x = malloc(total * 4), *back = malloc(total * 4), *acc = malloc(total * 4);
  uint16_t *h = malloc(total * 2);
  synco_test_fill(x, total, 3, -100, 100);
  synco_k_to_nhwc16(h, x, n, c, hw);
  synco_k_from_nhwc16(back, h, n, c, hw, 0);
  int rounded = 1;
  for (size_t i = 0; i < total; i++) rounded &= bits(back[i]) == (uint32_t)synco_k_bf16_of(x[i]) << 16;
  CHECK(rounded);
  for (size_t i = 0; i < total; i++) acc[i] = 1.f;
  synco_k_from_nhwc16(acc, h, n, c, hw, 1);
  int added = 1;
  for (size_t i = 0; i < total; i++) added &= acc[i] == 1.f + back[i];
  CHECK(added);
  free(seen), free(x), free(back), free(acc), free(h);
}

/* y [n][oh·ow][k] = Σ x [n][ih·iw][c] · w [k][r·s][c]: an NHWC convolution with a KRSC filter. */
static void conv_nhwc(float *y, const float *x, const float *w, const synco_conv_op *op) {
  for (int i = 0; i < op->n; i++)
    for (int oy = 0; oy < op->oh; oy++)
      for (int ox = 0; ox < op->ow; ox++)
        for (int k = 0; k < op->cout; k++) {
          double s = 0;
          for (int r = 0; r < op->kh; r++)
            for (int q = 0; q < op->kw; q++) {
              const int iy = oy * op->stride - op->pad + r, ix = ox * op->stride - op->pad + q;
              if (iy < 0 || iy >= op->h || ix < 0 || ix >= op->w) continue;
              for (int ch = 0; ch < op->cin; ch++)
                s += (double)x[((size_t)(i * op->h + iy) * op->w + ix) * op->cin + ch] *
                     w[((size_t)(k * op->kh + r) * op->kw + q) * op->cin + ch];
            }
          y[((size_t)(i * op->oh + oy) * op->ow + ox) * op->cout + k] = (float)s;
        }
}

static void test_conv(void) {
  const int shapes[][7] = {/* n, cin, hw, cout, k, stride, pad */ {2, 35, 9, 33, 3, 1, 1}, {3, 16, 8, 40, 1, 2, 0},
                           {2, 3, 11, 8, 3, 2, 1}};
  synco_backend *ref = NULL;
  CHECK_OK(synco_backend_ref_create(&ref));
  for (int s = 0; s < 3; s++) {
    synco_conv_op op = {.n = shapes[s][0], .cin = shapes[s][1], .h = shapes[s][2], .w = shapes[s][2],
                        .cout = shapes[s][3], .kh = shapes[s][4], .kw = shapes[s][4], .stride = shapes[s][5],
                        .pad = shapes[s][6], .dtype = SYNCO_F32};
    CHECK_OK(ref->conv_plan(ref, &op));
    const int hw = op.h * op.w, ohw = op.oh * op.ow, rs = op.kh * op.kw;
    const size_t nx = (size_t)op.n * op.cin * hw, ny = (size_t)op.n * op.cout * ohw, nw = (size_t)op.cout * op.cin * rs;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *xr = malloc(nx * 4), *wr = malloc(nw * 4);
    float *y = malloc(ny * 4), *yref = malloc(ny * 4), *x16f = malloc(nx * 4), *w16f = malloc(nw * 4), *ynhwc = malloc(ny * 4);
    uint16_t *x16 = malloc(nx * 2), *w16 = malloc(nw * 2), *y16 = malloc(ny * 2);
    synco_test_fill(x, nx, 10 + s, -1, 1);
    synco_test_fill(w, nw, 20 + s, -0.5f, 0.5f);
    for (size_t i = 0; i < nx; i++) xr[i] = synco_k_f32_of_bf16(synco_k_bf16_of(x[i]));
    for (size_t i = 0; i < nw; i++) wr[i] = synco_k_f32_of_bf16(synco_k_bf16_of(w[i]));
    /* the GPU's way: convert, convolve in NHWC, convert back (cuDNN writes bf16: round the output too) */
    synco_k_to_nhwc16(x16, x, op.n, op.cin, hw);
    synco_k_to_nhwc16(w16, w, op.cout, op.cin, rs);
    for (size_t i = 0; i < nx; i++) x16f[i] = synco_k_f32_of_bf16(x16[i]);
    for (size_t i = 0; i < nw; i++) w16f[i] = synco_k_f32_of_bf16(w16[i]);
    conv_nhwc(ynhwc, x16f, w16f, &op);
    for (size_t i = 0; i < ny; i++) y16[i] = synco_k_bf16_of(ynhwc[i]);
    synco_k_from_nhwc16(y, y16, op.n, op.cout, ohw, 0);
    /* the reference of the rounded inputs, its output rounded as cuDNN's bf16 output is */
    synco_tensor tx = {op.n, op.cin, op.h, op.w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, xr};
    synco_tensor ty = {op.n, op.cout, op.oh, op.ow, SYNCO_F32, SYNCO_LAYOUT_PLAIN, yref};
    CHECK_OK(ref->conv_fwd(ref, &op, &ty, &tx, wr));
    for (size_t i = 0; i < ny; i++) yref[i] = synco_k_f32_of_bf16(synco_k_bf16_of(yref[i]));
    /* a sum in another order may round to the neighbouring bf16: one bf16 step, 2^-8 relative */
    CHECK_CLOSE("bf16 conv through the NHWC / KRSC maps", y, yref, ny, 1e-5, 1.0 / 256);
    ref->conv_release(ref, &op);
    free(x), free(w), free(xr), free(wr), free(y), free(yref), free(x16f), free(w16f), free(ynhwc);
    free(x16), free(w16), free(y16);
  }
  synco_backend_destroy(ref);
}

int main(void) {
  test_rounding();
  test_maps();
  test_conv();
  return synco_test_finish("bf16_layout");
}
