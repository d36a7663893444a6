/* SYNCO_HD marks a kernel body that compiles both as C (the reference and CPU backends loop over it) and as
 * CUDA (the CUDA backend launches it): `__host__ __device__` under nvcc, nothing in C. Kernel bodies are small
 * static inline functions of one element or one row, with no allocation, no library calls that differ between
 * host and device, and no floating-point contraction left to the compiler (write fmaf where one is meant), so
 * every backend computes the same bits. */
#ifndef SYNCO_KERNELS_HD_H
#define SYNCO_KERNELS_HD_H

#ifdef __CUDACC__
#define SYNCO_HD __host__ __device__
#else
#define SYNCO_HD
#endif

#endif
