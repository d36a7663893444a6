/* Direct 3x3 convolution (stride 1, padding 1) of the network's input, AVX-512 code: the CIFAR stem, a few plain
 * channels (an image: 3, or 1 for grayscale; NCHW) into blocked activations (nChw8c or nChw16c). Forward only: the
 * network input needs no gradient, and its backward weights stay on oneDNN.
 *
 * Why it exists: oneDNN gives the 3 -> 8 stem of a --width 8 network (nChw8c output on an AVX-512 CPU) only its AVX2
 * kernel in fp32 (0.49 ms for a batch of 64 at 32x32 on the Zen 4, 2 threads) and, in bf16, a kernel that writes
 * 16-channel blocks padded with zeros, then widened and cut to 8-channel blocks by a reorder (0.30 + 0.14 ms): the
 * stem forward of a --width 8 step cost as much as --width 16's.
 *
 * Lanes: 16 neighbouring output pixels of a row, one vector per output channel of the block. A tap of an input
 * channel is one (masked at the row's edges) load of 16 input pixels and one multiply-add per output channel with
 * its weight broadcast from memory; after the 27 taps the block's vectors (channels x pixels) are transposed in
 * registers into nChw8c / nChw16c order. Sums in a fixed order (input channels, then kernel rows, then columns), fp32
 * under --precision bf16 too (the image is not rounded): results differ from oneDNN's only by rounding, and not with
 * the thread count. */
#ifndef SYNCO_BACKEND_CPU_STEM_CONV_H
#define SYNCO_BACKEND_CPU_STEM_CONV_H

#include <stddef.h>

#include "base/status.h"

#define SYNCO_STEM_MAX_CIN 4

typedef struct {
  int n, cin, cout, h, w; /* batch, input channels (plain), output channels (a multiple of block), image size */
  int block;              /* the output's channel block: 8 or 16 */
} synco_stem_shape;

/* 1 when this CPU runs the kernel (AVX-512F). */
int synco_stem_available(void);
/* 1 when it applies to the layer: at most SYNCO_STEM_MAX_CIN plain input channels (block 1), 3x3, stride 1,
 * padding 1, output channels in blocks of 8 or 16 (out_block), on this CPU. */
int synco_stem_applies(int cin, int cout, int kh, int kw, int stride, int pad, int in_block, int out_block);
/* The workspace (64-byte aligned): the packed weights. */
size_t synco_stem_workspace_bytes(const synco_stem_shape *s);
/* y = conv3x3(x, w): x [n, cin, h, w] (NCHW), y [n, cout/block, h, w, block], w plain OIHW [cout, cin, 3, 3]. */
synco_status synco_stem_fwd(const synco_stem_shape *s, float *y, const float *x, const float *wt, float *workspace);

#endif
