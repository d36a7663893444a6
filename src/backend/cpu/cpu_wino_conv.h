/* Winograd convolution for the cpu backend: 3x3, stride 1, padding 1, fp32 activations in the nChw8c or nChw16c
 * layout, AVX2 code (which AVX-512 CPUs run too; a 16-channel block is two 8-lane halves). Each 2x2 output tile is
 * computed from its 4x4 input tile in the Winograd domain (F(2x2, 3x3)), where the convolution becomes 16
 * independent matrix products [tiles x Cin] x [Cin x Cout]: 2.25x fewer multiplications than the direct
 * convolution, for a few additions per tile in the input and output transforms. The forward and backward-data
 * passes take 4x4 output tiles from 6x6 input tiles (F(4x4, 3x3), 36 products, 4x fewer multiplications) where
 * the image's sides are multiples of 4 and the layer has at most 256 channels a side; backward weights keeps
 * F(2x2, 3x3), whose sums over the batch round about 10x less (F(4x4, 3x3) there: max error 1.1-1.4e-5 of the
 * gradient's RMS on the unit tests' shapes, against 0.9-1.9e-6).
 * Backward data of such a layer is the same computation on dy with the weights transposed and flipped, and
 * backward weights multiplies the transformed inputs with the transformed output gradients per position.
 * oneDNN 2.x ships Winograd kernels only for AVX-512; on AVX2 its direct kernels run at 80-90 % of the FMA peak,
 * so this is what makes the forward and backward-data passes faster there. Whether it wins over oneDNN on a
 * given layer and CPU is measured at plan time (cpu_conv.c).
 *
 * The plan owns nothing big: the transformed weights and the per-thread tile buffers live in a workspace shared
 * by every layer of the backend (layers run one at a time), sized with synco_wino_workspace_bytes at plan time. */
#ifndef SYNCO_BACKEND_CPU_WINO_CONV_H
#define SYNCO_BACKEND_CPU_WINO_CONV_H

#include <stddef.h>

#include "base/status.h"

typedef struct {
  int n, cin, cout, h, w; /* output size = input size */
  int m;                  /* output tile of forward and backward data: 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3)) */
  int block;              /* channel block of the activations: 8 (nChw8c) or 16 (nChw16c) */
  int tiles_per_chunk;    /* tiles transformed and multiplied together by one thread (forward, backward data) */
  int grad_tiles_per_chunk; /* 2x2 tiles transformed together by all threads in backward weights */
  int threads;
} synco_wino_plan;

/* 1 when this CPU runs the Winograd kernels (AVX2 + FMA). */
int synco_wino_available(void);
/* 1 when Winograd applies to this layer on this CPU (AVX2 + FMA, 3x3 s1 p1, activations in channel blocks
 * of `block` = 8 or 16 that both channel counts fill, even spatial size). */
int synco_wino_applies(int cin, int cout, int h, int w, int kh, int kw, int stride, int pad, int block);
/* SYNCO_ERR_ARG with the reason when SYNCO_WINO_TILE is set to something other than 2, 4 or rule. */
synco_status synco_wino_check_env(void);
/* Fills the plan for activations in blocks of `block` channels and `threads` threads; returns the workspace
 * bytes it needs. */
size_t synco_wino_plan_make(synco_wino_plan *p, int n, int cin, int cout, int h, int w, int block, int threads);
/* The kernel's name in the kernel list ("synco:winograd_f4x3:nChw8c", ...): the plan's tile for the forward and
 * backward data, 2x2 for backward weights (bwd_weights 1). */
const char *synco_wino_impl(const synco_wino_plan *p, int bwd_weights);
/* y = conv3x3(x, w), x [n, cin/B, h, w, B], y [n, cout/B, h, w, B] (B = the plan's block), w plain OIHW
 * [cout, cin, 3, 3]. */
synco_status synco_wino_fwd(const synco_wino_plan *p, float *y, const float *x, const float *w, float *workspace);
/* dx = conv_transpose3x3(dy, w), the backward data of synco_wino_fwd (dx overwritten). */
synco_status synco_wino_bwd_data(const synco_wino_plan *p, float *dx, const float *dy, const float *w,
                                 float *workspace);

/* dw += corr(x, dy) for the same layer (dw plain OIHW), through the Winograd domain: dU = sum of V' D per
 * position (D = A dy A' of each output tile), then dw += G' dU G. */
synco_status synco_wino_bwd_weights(const synco_wino_plan *p, float *dw, const float *dy, const float *x,
                                    float *workspace);

#endif
