/* Direct stride-2 convolution from 8-channel blocks into 16-channel blocks (nChw8c -> nChw16c), AVX-512 code: the
 * first layers of the second stage of a --width 8 or 24 ResNet (8 -> 16 or 24 -> 48 channels, the 3x3 stride-2
 * convolution and the 1x1 stride-2 shortcut), all three passes.
 *
 * Why it exists: oneDNN has no kernel that reads nChw8c and writes nChw16c on an AVX-512 CPU, so each pass of these
 * layers reordered a tensor first (x into nchw for the forward, dy from nChw16c into nChw8c for the backward passes,
 * with its AVX2 kernels there): on the Zen 4 (2 threads, batch 64, 32x32 input) a forward of the 3x3 layer took 0.34
 * ms, against 0.46 for --width 16's layer of 4x its FLOPs, and the 1x1 layer 0.18 ms, as much as --width 16's.
 *
 * Lanes: the forward and backward weights put an output pixel's 16 channels of a block in a vector (an input value
 * broadcast from memory, times a tap's 16 weights); backward data puts an input pixel's 8 channels in a 256-bit
 * vector (a value of dy broadcast, times 8 weights). The input pixels of one row and column parity take the same taps
 * of the same output pixels shifted by one, so backward data runs them 8 at a time without a transposed copy. Sums in
 * a fixed order; backward weights sums each image apart and then the images in order, so no result depends on the
 * thread count. fp32 under --precision bf16 too. */
#ifndef SYNCO_BACKEND_CPU_STRIDE2_CONV_H
#define SYNCO_BACKEND_CPU_STRIDE2_CONV_H

#include <stddef.h>

#include "base/status.h"

#define SYNCO_STRIDE2_MAX_CIN 32
#define SYNCO_STRIDE2_MAX_COUT 64

typedef struct {
  int n, cin, cout, h, w; /* batch, channels (in: multiple of 8; out: of 16), input size */
  int k, pad;             /* 3x3 with padding 1, or 1x1 with padding 0; stride 2 */
} synco_stride2_shape;

/* 1 when this CPU runs the kernels (AVX-512F). */
int synco_stride2_available(void);
/* 1 when they apply to the layer: nChw8c in (in_block 8, at most SYNCO_STRIDE2_MAX_CIN channels), nChw16c out
 * (out_block 16, at most SYNCO_STRIDE2_MAX_COUT), 3x3 padding 1 or 1x1 padding 0, stride 2, on this CPU. */
int synco_stride2_applies(int cin, int cout, int kh, int kw, int stride, int pad, int in_block, int out_block);
/* The workspace (64-byte aligned): the packed weights, and backward weights' per-image sums. */
size_t synco_stride2_workspace_bytes(const synco_stride2_shape *s);
/* y = conv(x, w), x [n, cin/8, h, w, 8], y [n, cout/16, oh, ow, 16], w plain OIHW. */
synco_status synco_stride2_fwd(const synco_stride2_shape *s, float *y, const float *x, const float *wt, float *ws);
/* dx = its backward data (dx overwritten). */
synco_status synco_stride2_bwd_data(const synco_stride2_shape *s, float *dx, const float *dy, const float *wt,
                                    float *ws);
/* dw += corr(x, dy) (dw plain OIHW). */
synco_status synco_stride2_bwd_weights(const synco_stride2_shape *s, float *dw, const float *dy, const float *x,
                                       float *ws);

#endif
