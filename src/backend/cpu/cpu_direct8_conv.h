/* Direct 3x3 convolution (stride 1, padding 1) on nChw8c activations, AVX-512 code: the layers whose channel counts
 * are multiples of 8 but not of 16 on an AVX-512 CPU (8 or 24 channels: the first stage of a --width 8 or 24
 * ResNet), which keep 8-channel blocks there.
 *
 * Why it exists: oneDNN 2.x has no AVX-512 kernel for an 8-channel block, so it runs these layers with its AVX2
 * kernels, whose 8-lane vectors use half of each AVX-512 register: measured on the AMX VM (2 threads, batch 64,
 * 32x32), 0.84 ms per forward of an 8-channel layer against 0.27 ms for a 16-channel layer of the same FLOPs. Here
 * each 16-lane vector holds 4 output channels x 4 input channels, so every lane does useful work:
 *  - forward: the accumulator of an output pixel of one 8-channel output block is 2 vectors (its channels 0-3 and
 *    4-7, each lane (co, ci mod 4)); the input operand is 4 input channels of a pixel repeated 4 times (one
 *    broadcast load), the weight operand the matching 16 weights. After the 9 taps and every 4 input channels of
 *    every input block, the 4 lanes of each output channel are added (in-lane shuffles, two pixels at a time). 36
 *    FMAs per output pixel and 8x8 channel pair.
 *  - backward data is the forward with the weights transposed and rotated by 180 degrees.
 *  - backward weights: the same lanes (co, ci mod 4) are the 16 weights themselves; dy's 4 channels are spread
 *    over the 4 lanes of each (one permute per pixel and half), x's come by the same broadcast. Each image sums into
 *    its own partial sums (the workspace); the images' sums are then added in image order, so the result does not
 *    depend on the thread count or on which thread took which image.
 *  - bf16 (--precision bf16, AVX512-BF16): forward and backward data with vdpbf16ps, each lane a pair of input
 *    channels (2 products per lane and instruction, half the fp32 kernel's instructions); the inputs are rounded to
 *    bf16 as they are loaded, so the layer's tensors stay fp32 and nothing is copied. Zen 4, 2 threads, batch 64,
 *    32x32, 8 -> 8 channels, a forward: 0.235 ms against fp32's 0.37 (medians of 41). Backward weights too: each
 *    lane (co, ci) sums the products of two neighbouring output pixels per instruction, dy and x spread over the lanes
 *    by a vpermw (AVX512BW): 0.25-0.28 ms against fp32's 0.36-0.48 for 8 -> 8 channels, 2.3-2.5 against 3.5-3.9
 *    for 24 -> 24 (medians of 41, two runs of each).
 * The forward and backward-data outputs are sums in a fixed order too (input blocks, taps, then input channels per
 * lane, then the 4 lanes). Results differ from oneDNN's only by rounding. Up to 32 channels on each side: the
 * workspace grows with the product of the channel blocks and the batch. */
#ifndef SYNCO_BACKEND_CPU_DIRECT8_CONV_H
#define SYNCO_BACKEND_CPU_DIRECT8_CONV_H

#include <stddef.h>

#include "base/status.h"

#define SYNCO_DIRECT8_MAX_C 32

typedef struct {
  int n, cin, cout, h, w; /* batch, channels (multiples of 8), image size (the output's too) */
  int bf16;               /* the passes multiply bf16 roundings of their inputs and weights (fp32 sums;
                           * AVX512-BF16 and AVX512BW) */
} synco_direct8_shape;

/* 1 when this CPU runs the kernels (AVX-512F); _bf16: also in bf16 (AVX512-BF16, AVX512VL, AVX512BW). */
int synco_direct8_available(void);
int synco_direct8_bf16_available(void);
/* 1 when they apply to the layer: multiples of 8 channels up to SYNCO_DIRECT8_MAX_C on each side, 3x3, stride 1,
 * padding 1, nChw8c activations (block 8), on this CPU. */
int synco_direct8_applies(int cin, int cout, int kh, int kw, int stride, int pad, int block);
/* The workspace each pass needs (64-byte aligned): the packed weights, and backward weights' per-image sums. */
size_t synco_direct8_workspace_bytes(const synco_direct8_shape *s);
/* y = conv3x3(x, w): x [n, cin/8, h, w, 8], y [n, cout/8, h, w, 8] (nChw8c), w plain OIHW [cout, cin, 3, 3]. */
synco_status synco_direct8_fwd(const synco_direct8_shape *s, float *y, const float *x, const float *wt,
                               float *workspace);
/* dx = conv_transpose3x3(dy, w), the backward data of synco_direct8_fwd (dx overwritten). */
synco_status synco_direct8_bwd_data(const synco_direct8_shape *s, float *dx, const float *dy, const float *wt,
                                    float *workspace);
/* dw += corr(x, dy) (dw plain OIHW). */
synco_status synco_direct8_bwd_weights(const synco_direct8_shape *s, float *dw, const float *dy, const float *x,
                                       float *workspace);

#endif
