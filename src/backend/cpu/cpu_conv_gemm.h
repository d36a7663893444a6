/* A bf16 convolution's passes as im2col and one matmul each, for the layers whose output has few pixels (all
 * three passes of the last stage of a CIFAR-stem ResNet, 4x4 pixels: its 3x3 layers, its stride-2 entry and its
 * 1x1 shortcut; backward weights of the stage before, 8x8), on CPUs with AMX.
 *
 * Why: oneDNN 2.6's AMX convolution kernels parallelise poorly over so few pixels, above all backward weights
 * (jit:avx512_core_amx_bf16). Measured on the AMX VM (2 threads, batch 128, 512 -> 512 channels at 4x4, bf16 data
 * of random bits, 2026-12-05): backward weights 30-31 ms per call (310-320 GFLOP/s), forward 9.6-11 ms, backward
 * data 13.7-13.9 ms; oneDNN's AMX matmul of the same products takes 7.0, 4.8 and 3.6 ms. Where it pays is
 * synco_conv_gemm_passes'. PyTorch 1.13 calls the same oneDNN convolution kernels.
 *
 * What it computes is --precision bf16's convolution (cpu_conv.c): the operands rounded to bf16 (round to nearest
 * even), products summed in fp32; y and dx rounded to bf16 before they are widened into the layer's fp32 tensors
 * (as a bf16 kernel's output is), dw added to the fp32 master gradient. With P = n·oh·ow output pixels and
 * K = kh·kw·cin:
 *  - xb, dyb: x and dy in bf16 nhwc (oneDNN reorders from the layer's layout); dyb is the matrix [P, cout];
 *  - col [P, K] bf16: row p holds, tap by tap, the cin channels of the input pixel that tap of output pixel p reads
 *    (zeros in the padding), one memcpy per (pixel, tap) from xb;
 *  - wb [cout, K] bf16: the weights in OHWI order (a reorder from the OIHW fp32 master, at each call);
 *  - forward: yb [P, cout] = col · wbᵀ, then y = yb (reorder);
 *  - backward data: dcol [P, K] fp32 = dyb · wb, then dx[pixel] = the sum over the taps that read the pixel of
 *    dcol's matching rows (in tap order, so the result does not depend on the threads), rounded to bf16;
 *  - backward weights: acc [cout, K] fp32 = dybᵀ · col, i.e. dw in OHWI order; dw (OIHW) += acc (a reorder with a
 *    sum post-op).
 * The buffers live in the workspace the caller shares among its layers (synco_conv_gemm_workspace_bytes). */
#ifndef SYNCO_BACKEND_CPU_CONV_GEMM_H
#define SYNCO_BACKEND_CPU_CONV_GEMM_H

#include <stddef.h>

#include "backend/cpu/cpu_onednn_util.h"

typedef struct synco_conv_gemm synco_conv_gemm;

enum { SYNCO_GEMM_FWD = 1, SYNCO_GEMM_BWD_DATA = 2, SYNCO_GEMM_BWD_WEIGHTS = 4 };
/* The passes (SYNCO_GEMM_* bits) the layer can take it for: bf16 passes, oneDNN's own backward-weights kernel for
 * the layer an AMX one (direct_bwd_weights_impl: its implementation name; elsewhere nothing was measured), at most
 * 4096 input channels and a workspace under 512 MB; then all three passes up to 16 output pixels, backward weights
 * alone up to 64 (above 16, forward and backward data lose to oneDNN's kernels: im2col's copies grow with the
 * pixels; measured, batch 128, 256 -> 256 channels at 8x8: forward 14.7 ms against 3.6, backward data 23.5 against
 * 4.7, backward weights 7.4 against 10.4; 128 -> 256 at stride 2 into 8x8: backward weights 4.8 against 12.4), 0
 * otherwise. */
int synco_conv_gemm_passes(const synco_conv_op *op, int bf16, const char *direct_bwd_weights_impl);
/* The workspace one call of any of those passes needs (64-byte aligned). */
size_t synco_conv_gemm_workspace_bytes(const synco_conv_op *op, int passes);
/* Makes the reorders and matmuls for op, whose activations have the memory descriptors md_x, md_y (fp32, the
 * layer's layouts) and whose weights md_w (OIHW fp32). */
synco_status synco_conv_gemm_plan(synco_dnnl_ctx *c, const synco_conv_op *op, int passes, synco_dnnl_cmd md_x,
                                  synco_dnnl_cmd md_y, synco_dnnl_cmd md_w, synco_conv_gemm **out);
/* What synco_conv_gemm_plan would keep (code) and share (scratchpads), without making anything. */
synco_status synco_conv_gemm_plan_bytes(synco_dnnl_ctx *c, const synco_conv_op *op, int passes, synco_dnnl_cmd md_x,
                                        synco_dnnl_cmd md_y, synco_dnnl_cmd md_w, synco_plan_bytes *b);
/* The passes (the layer's layouts; ws the workspace; each one planned): y = conv(x, w); dx = its backward data
 * (overwritten); dw += its backward weights. */
synco_status synco_conv_gemm_fwd(synco_dnnl_ctx *c, synco_conv_gemm *g, void *y, const void *x, const float *w,
                                 void *ws);
synco_status synco_conv_gemm_bwd_data(synco_dnnl_ctx *c, synco_conv_gemm *g, void *dx, const void *dy, const float *w,
                                      void *ws);
synco_status synco_conv_gemm_bwd_weights(synco_dnnl_ctx *c, synco_conv_gemm *g, float *dw, const void *dy,
                                         const void *x, void *ws);
/* The matmuls' oneDNN implementation name. */
const char *synco_conv_gemm_impl(const synco_conv_gemm *g);
void synco_conv_gemm_free(synco_conv_gemm **g);

#endif
