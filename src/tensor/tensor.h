/* Tensor descriptors shared by every backend.
 * An activation is a 4-D tensor N,C,H,W (a matrix is N rows × C columns with H = W = 1). Its bytes are
 * in the layout the owning backend chose (the `layout` tag): the reference backend keeps everything plain
 * NCHW; oneDNN keeps its blocked layout (e.g. nChw16c) from layer to layer. Parameters are never
 * activations: they stay plain fp32 in the encoder's parameter buffer (OIHW for convolutions, [out,in]
 * for linear layers), so SGD, EMA, checkpoints and exports never see a backend layout. */
#ifndef SYNCO_TENSOR_TENSOR_H
#define SYNCO_TENSOR_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "synco.h"

typedef enum { SYNCO_F32 = 0, SYNCO_BF16 = 1 } synco_dtype;

/* Layout tags. PLAIN is row-major NCHW (and N×C for matrices), the only layout outside a backend. */
typedef enum {
  SYNCO_LAYOUT_PLAIN = 0,
  SYNCO_LAYOUT_NCHW16C = 1, /* oneDNN nChw16c: channels in blocks of 16, padded with zeros */
  SYNCO_LAYOUT_NCHW8C = 2,  /* oneDNN nChw8c (AVX2 machines) */
  SYNCO_LAYOUT_NHWC_BF16 = 3, /* channels last, bf16 values: the cuda backend's activations under --precision bf16 */
} synco_layout;

typedef struct {
  int n, c, h, w;
  synco_dtype dtype;
  synco_layout layout;
  void *data;
} synco_tensor;

/* A named fp32 array in a backend's memory, as checkpoints and exports write and read it (a parameter, a BN
 * statistic, a momentum buffer, the queue). `data` is backend memory: host code reaches it only through the owning
 * backend's copy op. */
typedef struct {
  const char *name;        /* the key it is stored under (after a prefix), e.g. a torchvision name */
  float *data;
  size_t numel;
  int ndim;
  const int *shape;        /* [ndim] */
} synco_named_buffer;

static inline size_t synco_tensor_numel(const synco_tensor *t) {
  return (size_t)t->n * t->c * t->h * t->w;
}

static inline size_t synco_dtype_size(synco_dtype d) { return d == SYNCO_BF16 ? 2 : 4; }

/* Whether a backend with NHWC bf16 activations (cuda under --precision bf16, and its emulation on the strict backend)
 * keeps an activation of c channels and h×w pixels in that layout: a multiple of 8 channels (16-byte rows, as
 * tensor cores want them) and more than one pixel; the network's 3-channel input and the matrices stay plain fp32. */
static inline int synco_nhwc_bf16_applies(int c, int h, int w) { return c % 8 == 0 && h * w > 1; }

/* The element type an activation in layout l holds: bf16 in SYNCO_LAYOUT_NHWC_BF16, fp32 in every other. */
static inline synco_dtype synco_layout_dtype(synco_layout l) {
  return l == SYNCO_LAYOUT_NHWC_BF16 ? SYNCO_BF16 : SYNCO_F32;
}

const char *synco_layout_name(synco_layout l);

/* The argument check of every backend's ops (tensor_check.c): t is present with data, n×c×h×w, in `layout`, f32 (or
 * bf16 unless f32_only). Messages read "<backend> <op>: <what> ..." (SYNCO_ERR_ARG; SYNCO_ERR_UNSUPPORTED for a
 * dtype the backend does not run). */
synco_status synco_tensor_check(const synco_tensor *t, const char *backend, const char *op, const char *what, int n,
                                int c, int h, int w, synco_layout layout, int f32_only);

#endif
