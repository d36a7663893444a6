/* Direct 3x3 convolution (stride 1, padding 1) of 8 channels into 8 on nChw8c activations, AVX-512 code: the
 * narrow layers of a --width 8 ResNet (its first stage) on an AVX-512 CPU.
 *
 * Why it exists: oneDNN 2.x has no AVX-512 kernel for an 8-channel block, so it runs these layers with its AVX2
 * kernels, whose 8-lane vectors use half of each AVX-512 register: measured on the AMX VM (2 threads, batch 64,
 * 32x32), 0.84 ms per forward against 0.27 ms for a 16-channel layer of the same FLOPs. Here each 16-lane vector
 * holds 4 output channels x 4 input channels, so every lane does useful work:
 *  - forward: the accumulator of an output pixel is 2 vectors (output channels 0-3 and 4-7, each lane
 *    (co, ci mod 4)); the input operand is 4 input channels of a pixel repeated 4 times (one broadcast load),
 *    the weight operand the matching 16 weights. After the 9 taps and 2 groups of input channels, the 4 lanes of
 *    each output channel are added (in-lane shuffles, two pixels at a time). 36 FMAs per output pixel.
 *  - backward data is the forward with the weights transposed and rotated by 180 degrees.
 *  - backward weights: the same lanes (co, ci mod 4) are the 16 weights themselves; dy's 4 channels are spread
 *    over the 4 lanes of each (one permute per pixel and half), x's come by the same broadcast. Each image sums into
 *    its own 576 partial sums (the workspace); the images' sums are then added in image order, so the result does
 *    not depend on the thread count or on which thread took which image.
 * The forward and backward-data outputs are sums in a fixed order too (taps, then input channels per lane, then
 * the 4 lanes). Results differ from oneDNN's only by rounding. */
#ifndef SYNCO_BACKEND_CPU_DIRECT8_CONV_H
#define SYNCO_BACKEND_CPU_DIRECT8_CONV_H

#include <stddef.h>

#include "base/status.h"

/* 1 when this CPU runs the kernels (AVX-512F). */
int synco_direct8_available(void);
/* 1 when they apply to the layer: 8 -> 8 channels, 3x3, stride 1, padding 1, nChw8c activations (block 8) on
 * this CPU. */
int synco_direct8_applies(int cin, int cout, int kh, int kw, int stride, int pad, int block);
/* The workspace backward weights needs for a batch of n. */
size_t synco_direct8_workspace_bytes(int n);
/* y = conv3x3(x, w): x, y [n, 1, h, w, 8] (nChw8c), w plain OIHW [8, 8, 3, 3]. */
synco_status synco_direct8_fwd(int n, int h, int w, float *y, const float *x, const float *wt);
/* dx = conv_transpose3x3(dy, w), the backward data of synco_direct8_fwd (dx overwritten). */
synco_status synco_direct8_bwd_data(int n, int h, int w, float *dx, const float *dy, const float *wt);
/* dw += corr(x, dy) (dw plain OIHW); workspace: synco_direct8_workspace_bytes(n). */
synco_status synco_direct8_bwd_weights(int n, int h, int w, float *dw, const float *dy, const float *x,
                                       float *workspace);

#endif
