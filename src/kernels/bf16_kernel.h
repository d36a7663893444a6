/* bf16 <-> fp32 of one value, the same bits on every backend: the CPU's own kernels (cpu_onednn_util.h's
 * synco_bf16_of) and the CUDA backend's layout conversions around its bf16 convolutions (cuda_conv.cu). bf16 is the
 * upper 16 bits of an fp32; rounding is to nearest, ties to even; a NaN stays a (quiet) NaN; denormals keep their
 * rounding (AVX512-BF16's vcvtneps2bf16 flushes them to zero; CUDA's __float2bfloat16_rn does not). */
#ifndef SYNCO_KERNELS_BF16_KERNEL_H
#define SYNCO_KERNELS_BF16_KERNEL_H

#include <stdint.h>
#include <string.h>

#include "kernels/hd.h"

SYNCO_HD static inline uint16_t synco_k_bf16_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

SYNCO_HD static inline float synco_k_f32_of_bf16(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* The layout conversions of a bf16 convolution, as index maps: an activation's element (n, c, p) (p the pixel,
 * y·W + x, of HW) is at (n·C + c)·HW + p in plain NCHW and at (n·HW + p)·C + c in NHWC; a weight OIHW is the same
 * map with n the output channel, C the input channels and HW = kh·kw (so its NHWC is cuDNN's KRSC). */
SYNCO_HD static inline size_t synco_k_nchw_at(size_t n, size_t c, size_t p, size_t C, size_t HW) {
  return (n * C + c) * HW + p;
}
SYNCO_HD static inline size_t synco_k_nhwc_at(size_t n, size_t c, size_t p, size_t C, size_t HW) {
  return (n * HW + p) * C + c;
}

/* A whole tensor of N images, element by element through those maps, as the GPU's tiled conversions move it (they
 * only order the moves for coalescing): plain fp32 -> NHWC bf16 rounded, and back (exact; added with accumulate). The
 * host's form, for the strict backend's emulation of the GPU's bf16 and for the tests. */
static inline void synco_k_to_nhwc16(uint16_t *dst, const float *src, size_t N, size_t C, size_t HW) {
  for (size_t n = 0; n < N; n++)
    for (size_t c = 0; c < C; c++)
      for (size_t p = 0; p < HW; p++) dst[synco_k_nhwc_at(n, c, p, C, HW)] = synco_k_bf16_of(src[synco_k_nchw_at(n, c, p, C, HW)]);
}

static inline void synco_k_from_nhwc16(float *dst, const uint16_t *src, size_t N, size_t C, size_t HW, int accumulate) {
  for (size_t n = 0; n < N; n++)
    for (size_t c = 0; c < C; c++)
      for (size_t p = 0; p < HW; p++) {
        float *d = &dst[synco_k_nchw_at(n, c, p, C, HW)];
        const float v = synco_k_f32_of_bf16(src[synco_k_nhwc_at(n, c, p, C, HW)]);
        *d = accumulate ? *d + v : v;
      }
}

#endif
