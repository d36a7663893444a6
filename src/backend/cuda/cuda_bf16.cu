/* NCHW fp32 <-> NHWC bf16 on the GPU: the conversions of the bf16 convolutions' operands (cuda_conv.cu) and of the
 * NHWC bf16 activations to and from plain (to_backend / to_plain), each a tiled transpose through shared memory that
 * rounds as kernels/bf16_kernel.h does (tests/unit/test_bf16_layout.c checks the maps and the rounding on the CPU). */
#include <stdint.h>

#include "backend/cuda/cuda_internal.h"
#include "kernels/bf16_kernel.h"

#define TILE 32
#define TILE_ROWS 8

/* src [N][C][HW] fp32 -> dst [N][HW][C] bf16: a block moves a 32 x 32 tile of (channel, pixel) through shared memory,
 * reading along pixels and writing along channels, so both sides are coalesced. Weights OIHW -> KRSC are the same
 * with N = cout, C = cin, HW = kh·kw. */
__global__ void to_nhwc16_kernel(uint16_t *dst, const float *src, int C, int HW) {
  __shared__ float tile[TILE][TILE + 1];
  const size_t n = blockIdx.z;
  const int p0 = blockIdx.x * TILE, c0 = blockIdx.y * TILE;
  for (int i = threadIdx.y; i < TILE; i += TILE_ROWS) {
    const int c = c0 + i, p = p0 + threadIdx.x;
    if (c < C && p < HW) tile[i][threadIdx.x] = src[synco_k_nchw_at(n, c, p, C, HW)];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < TILE; i += TILE_ROWS) {
    const int p = p0 + i, c = c0 + threadIdx.x;
    if (c < C && p < HW) dst[synco_k_nhwc_at(n, c, p, C, HW)] = synco_k_bf16_of(tile[threadIdx.x][i]);
  }
}

/* The reverse: src [N][HW][C] bf16 -> dst [N][C][HW] fp32, assigned, or added with accumulate (a weight gradient). */
__global__ void from_nhwc16_kernel(float *dst, const uint16_t *src, int C, int HW, int accumulate) {
  __shared__ float tile[TILE][TILE + 1];
  const size_t n = blockIdx.z;
  const int p0 = blockIdx.x * TILE, c0 = blockIdx.y * TILE;
  for (int i = threadIdx.y; i < TILE; i += TILE_ROWS) {
    const int p = p0 + i, c = c0 + threadIdx.x;
    if (c < C && p < HW) tile[i][threadIdx.x] = synco_k_f32_of_bf16(src[synco_k_nhwc_at(n, c, p, C, HW)]);
  }
  __syncthreads();
  for (int i = threadIdx.y; i < TILE; i += TILE_ROWS) {
    const int c = c0 + i, p = p0 + threadIdx.x;
    if (c < C && p < HW) {
      float *d = &dst[synco_k_nchw_at(n, c, p, C, HW)];
      *d = accumulate ? *d + tile[threadIdx.x][i] : tile[threadIdx.x][i];
    }
  }
}

static dim3 tile_grid(int n, int c, int hw) {
  return dim3((unsigned)((hw + TILE - 1) / TILE), (unsigned)((c + TILE - 1) / TILE), (unsigned)n);
}

/* A grid's z is at most 65535: the images (or output channels) of one call. */
static synco_status fits(int n) {
  if (n > 65535) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda: a bf16 conversion takes at most 65535 images, got %d", n);
  return SYNCO_OK;
}

synco_status synco_cuda_to_nhwc16(synco_backend *be, uint16_t *dst, const float *src, int n, int c, int hw) {
  SYNCO_TRY(fits(n));
  to_nhwc16_kernel<<<tile_grid(n, c, hw), dim3(TILE, TILE_ROWS), 0, synco_cuda_stream(be)>>>(dst, src, c, hw);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_from_nhwc16(synco_backend *be, float *dst, const uint16_t *src, int n, int c, int hw,
                                    int accumulate) {
  SYNCO_TRY(fits(n));
  from_nhwc16_kernel<<<tile_grid(n, c, hw), dim3(TILE, TILE_ROWS), 0, synco_cuda_stream(be)>>>(dst, src, c, hw,
                                                                                               accumulate);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

