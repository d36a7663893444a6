/* Reference convolution: im2col + one SGEMM per image (OpenBLAS), images spread over OpenMP threads.
 * For one image, the K = cin·kh·kw by P = oh·ow "column" matrix holds every input value each output pixel
 * sees, so forward is y[cout×P] = W[cout×K] · col, backward-data is col = Wᵀ · dy followed by col2im
 * (scatter-add back to the image), and backward-weights is dw[cout×K] += dy · colᵀ. A 1×1 stride-1 pad-0
 * convolution needs no im2col: the image itself is the column matrix. The plan sizes one column buffer per
 * thread and one partial dw per thread beyond the first, so the per-call functions never allocate; the
 * partial weight gradients are added to dw in thread order, so a run with the same thread count is
 * bit-for-bit repeatable. dx is assigned; dw accumulates.
 * Each of our threads wants a single-threaded GEMM. An OpenMP build of OpenBLAS does that by itself inside a
 * parallel region; the pthreads build (Debian's default) would run a threaded GEMM in each of our threads,
 * oversubscribing the cores and serializing on its own lock, so around our parallel regions its thread count is
 * set to 1 and restored after. That setting is process-wide: BLAS calls made concurrently from other
 * threads during a convolution run single-threaded. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref_internal.h"

/* Below this many multiply-adds per call, one thread is faster than a team. */
#define CONV_PAR_MIN_MACS 1e5

typedef struct {
  int nthreads;      /* threads the scratch was sized for */
  int direct;        /* 1x1, stride 1, pad 0: the image is its own column matrix */
  size_t col_len;    /* K·P floats per thread (0 when direct) */
  size_t w_len;      /* cout·K floats */
  float *col;        /* nthreads × col_len */
  float *dw_part;    /* (nthreads - 1) × w_len: partial dw of threads 1.. (thread 0 adds into dw) */
} ref_conv_impl;

/* col[(c·kh + ki)·kw + kj][oy·ow + ox] = x[c][oy·s - p + ki][ox·s - p + kj], zero outside the image. */
static void im2col(const synco_conv_op *op, const float *x, float *col) {
  const int s = op->stride, p = op->pad, oh = op->oh, ow = op->ow;
  for (int c = 0; c < op->cin; c++) {
    const float *xc = x + (size_t)c * op->h * op->w;
    for (int ki = 0; ki < op->kh; ki++) {
      for (int kj = 0; kj < op->kw; kj++) {
        float *row = col + ((size_t)(c * op->kh + ki) * op->kw + kj) * oh * ow;
        /* Output columns whose input column ix = ox·s - p + kj lies inside [0, w). */
        int ox0 = 0, ox1 = ow;
        while (ox0 < ow && ox0 * s - p + kj < 0) ox0++;
        while (ox1 > ox0 && (ox1 - 1) * s - p + kj >= op->w) ox1--;
        for (int oy = 0; oy < oh; oy++) {
          float *out = row + (size_t)oy * ow;
          const int iy = oy * s - p + ki;
          if (iy < 0 || iy >= op->h) {
            memset(out, 0, sizeof(float) * ow);
            continue;
          }
          const float *in = xc + (size_t)iy * op->w - p + kj;
          for (int ox = 0; ox < ox0; ox++) out[ox] = 0.f;
          if (s == 1) {
            memcpy(out + ox0, in + ox0, sizeof(float) * (ox1 - ox0));
          } else {
            for (int ox = ox0; ox < ox1; ox++) out[ox] = in[ox * s];
          }
          for (int ox = ox1; ox < ow; ox++) out[ox] = 0.f;
        }
      }
    }
  }
}

/* The adjoint of im2col: dx[c][iy][ix] = sum of the col entries that were copied from it. */
static void col2im(const synco_conv_op *op, const float *col, float *dx) {
  const int s = op->stride, p = op->pad, oh = op->oh, ow = op->ow;
  memset(dx, 0, sizeof(float) * op->cin * op->h * op->w);
  for (int c = 0; c < op->cin; c++) {
    float *dxc = dx + (size_t)c * op->h * op->w;
    for (int ki = 0; ki < op->kh; ki++) {
      for (int kj = 0; kj < op->kw; kj++) {
        const float *row = col + ((size_t)(c * op->kh + ki) * op->kw + kj) * oh * ow;
        int ox0 = 0, ox1 = ow;
        while (ox0 < ow && ox0 * s - p + kj < 0) ox0++;
        while (ox1 > ox0 && (ox1 - 1) * s - p + kj >= op->w) ox1--;
        for (int oy = 0; oy < oh; oy++) {
          const int iy = oy * s - p + ki;
          if (iy < 0 || iy >= op->h) continue;
          const float *in = row + (size_t)oy * ow;
          float *out = dxc + (size_t)iy * op->w - p + kj;
          for (int ox = ox0; ox < ox1; ox++) out[ox * s] += in[ox];
        }
      }
    }
  }
}

/* The plan's threads and scratch sizes for op (oh, ow filled). */
static void size_shape(const synco_conv_op *op, ref_conv_impl *impl) {
  /* Threads take whole images; a small convolution runs on one thread (with a threaded GEMM). */
  int nt = omp_get_max_threads();
  if (nt > op->n) nt = op->n;
  if ((double)op->n * op->cout * op->cin * op->kh * op->kw * op->oh * op->ow < CONV_PAR_MIN_MACS) nt = 1;
  if (nt < 1) nt = 1;
  impl->nthreads = nt;
  impl->direct = op->kh == 1 && op->kw == 1 && op->stride == 1 && op->pad == 0;
  impl->col_len = impl->direct ? 0 : (size_t)op->cin * op->kh * op->kw * op->oh * op->ow;
  impl->w_len = (size_t)op->cout * op->cin * op->kh * op->kw;
}

/* The plan keeps its column buffers and partial weight gradients: nothing is shared between layers. */
synco_status synco_ref_conv_plan_bytes(synco_backend *be, const synco_conv_op *op, synco_plan_bytes *b) {
  ref_conv_impl k;
  size_shape(op, &k);
  b->kept += sizeof k + sizeof(float) * ((size_t)k.nthreads * k.col_len + (size_t)(k.nthreads - 1) * k.w_len);
  return SYNCO_OK;
}

synco_status synco_ref_conv_plan(synco_backend *be, synco_conv_op *op) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "ref conv_plan: op is NULL");
  op->impl = NULL;
  if (op->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "ref conv_plan: only f32 is supported");
  if (op->n <= 0 || op->cin <= 0 || op->h <= 0 || op->w <= 0 || op->cout <= 0 || op->kh <= 0 || op->kw <= 0 ||
      op->stride <= 0 || op->pad < 0)
    return synco_fail(SYNCO_ERR_ARG, "ref conv_plan: bad shape n %d cin %d h %d w %d cout %d k %dx%d stride %d pad %d",
                      op->n, op->cin, op->h, op->w, op->cout, op->kh, op->kw, op->stride, op->pad);
  const int oh = synco_conv_out_size(op->h, op->kh, op->stride, op->pad);
  const int ow = synco_conv_out_size(op->w, op->kw, op->stride, op->pad);
  if (op->oh == 0 && op->ow == 0) {
    op->oh = oh;
    op->ow = ow;
  }
  if (oh <= 0 || ow <= 0 || op->oh != oh || op->ow != ow)
    return synco_fail(SYNCO_ERR_ARG, "ref conv_plan: output %dx%d given, %dx%d follows from the input", op->oh, op->ow,
                      oh, ow);

  ref_conv_impl *impl = synco_calloc(1, sizeof *impl);
  if (!impl) return SYNCO_ERR_NOMEM;
  size_shape(op, impl);
  const int nt = impl->nthreads;
  impl->col = impl->direct ? NULL : synco_aligned_alloc(sizeof(float) * (size_t)nt * impl->col_len);
  impl->dw_part = nt > 1 ? synco_aligned_alloc(sizeof(float) * (size_t)(nt - 1) * impl->w_len) : NULL;
  if ((!impl->direct && !impl->col) || (nt > 1 && !impl->dw_part)) {
    free(impl->col);
    free(impl->dw_part);
    free(impl);
    return SYNCO_ERR_NOMEM;
  }
  op->impl = impl;
  return SYNCO_OK;
}

void synco_ref_conv_release(synco_backend *be, synco_conv_op *op) {
  if (!op || !op->impl) return;
  ref_conv_impl *impl = op->impl;
  free(impl->col);
  free(impl->dw_part);
  free(impl);
  op->impl = NULL;
}

static synco_status check_op(const synco_conv_op *op, const char *name) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "ref %s: the op was not planned", name);
  return SYNCO_OK;
}

/* Returns the OpenBLAS thread count to restore with blas_threads_end (0: nothing to restore). */
static int blas_threads_begin(const ref_conv_impl *impl) {
  if (impl->nthreads < 2 || openblas_get_parallel() == 2) return 0; /* 2: OpenMP build, nests by itself */
  const int prev = openblas_get_num_threads();
  if (prev > 1) openblas_set_num_threads(1);
  return prev > 1 ? prev : 0;
}

static void blas_threads_end(int prev) {
  if (prev > 0) openblas_set_num_threads(prev);
}

/* Images of thread t out of nt: [first, last). Static, so each image always goes to the same thread. */
static void thread_images(int n, int t, int nt, int *first, int *last) {
  *first = (int)((long)n * t / nt);
  *last = (int)((long)n * (t + 1) / nt);
}

synco_status synco_ref_conv_fwd(synco_backend *be, synco_conv_op *op, synco_tensor *y, const synco_tensor *x,
                                const float *w) {
  SYNCO_TRY(check_op(op, "conv_fwd"));
  SYNCO_TRY(synco_ref_check(x, "conv_fwd", "x", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_ref_check(y, "conv_fwd", "y", op->n, op->cout, op->oh, op->ow));
  if (!w) return synco_fail(SYNCO_ERR_ARG, "ref conv_fwd: weights are missing");
  ref_conv_impl *impl = op->impl;
  const int K = op->cin * op->kh * op->kw, P = op->oh * op->ow;
  const size_t x_img = (size_t)op->cin * op->h * op->w, y_img = (size_t)op->cout * P;
  const float *xd = x->data;
  float *yd = y->data;
  const int blas_prev = blas_threads_begin(impl);
#pragma omp parallel num_threads(impl->nthreads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float *col = impl->direct ? NULL : impl->col + (size_t)t * impl->col_len;
    int first, last;
    thread_images(op->n, t, nt, &first, &last);
    for (int i = first; i < last; i++) {
      const float *src = xd + i * x_img;
      if (!impl->direct) {
        im2col(op, src, col);
        src = col;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, op->cout, P, K, 1.f, w, K, src, P, 0.f,
                  yd + i * y_img, P);
    }
  }
  blas_threads_end(blas_prev);
  return SYNCO_OK;
}

synco_status synco_ref_conv_bwd_data(synco_backend *be, synco_conv_op *op, synco_tensor *dx, const synco_tensor *dy,
                                     const float *w) {
  SYNCO_TRY(check_op(op, "conv_bwd_data"));
  SYNCO_TRY(synco_ref_check(dx, "conv_bwd_data", "dx", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_ref_check(dy, "conv_bwd_data", "dy", op->n, op->cout, op->oh, op->ow));
  if (!w) return synco_fail(SYNCO_ERR_ARG, "ref conv_bwd_data: weights are missing");
  ref_conv_impl *impl = op->impl;
  const int K = op->cin * op->kh * op->kw, P = op->oh * op->ow;
  const size_t x_img = (size_t)op->cin * op->h * op->w, y_img = (size_t)op->cout * P;
  const float *dyd = dy->data;
  float *dxd = dx->data;
  const int blas_prev = blas_threads_begin(impl);
#pragma omp parallel num_threads(impl->nthreads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float *col = impl->direct ? NULL : impl->col + (size_t)t * impl->col_len;
    int first, last;
    thread_images(op->n, t, nt, &first, &last);
    for (int i = first; i < last; i++) {
      float *dst = impl->direct ? dxd + i * x_img : col;
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, op->cout, 1.f, w, K, dyd + i * y_img, P, 0.f, dst,
                  P);
      if (!impl->direct) col2im(op, col, dxd + i * x_img);
    }
  }
  blas_threads_end(blas_prev);
  return SYNCO_OK;
}

synco_status synco_ref_conv_bwd_weights(synco_backend *be, synco_conv_op *op, float *dw, const synco_tensor *dy,
                                        const synco_tensor *x) {
  SYNCO_TRY(check_op(op, "conv_bwd_weights"));
  SYNCO_TRY(synco_ref_check(x, "conv_bwd_weights", "x", op->n, op->cin, op->h, op->w));
  SYNCO_TRY(synco_ref_check(dy, "conv_bwd_weights", "dy", op->n, op->cout, op->oh, op->ow));
  if (!dw) return synco_fail(SYNCO_ERR_ARG, "ref conv_bwd_weights: dw is missing");
  ref_conv_impl *impl = op->impl;
  const int K = op->cin * op->kh * op->kw, P = op->oh * op->ow;
  const size_t x_img = (size_t)op->cin * op->h * op->w, y_img = (size_t)op->cout * P;
  const float *dyd = dy->data, *xd = x->data;
  int used = 1; /* threads that actually ran (a nested region may get fewer than planned) */
  const int blas_prev = blas_threads_begin(impl);
#pragma omp parallel num_threads(impl->nthreads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float *col = impl->direct ? NULL : impl->col + (size_t)t * impl->col_len;
    /* Thread 0 adds straight into dw; the others start their own partial from zero. */
    float *acc = t == 0 ? dw : impl->dw_part + (size_t)(t - 1) * impl->w_len;
    float beta = t == 0 ? 1.f : 0.f;
    int first, last;
    thread_images(op->n, t, nt, &first, &last);
    if (t == 0) used = nt;
    if (t > 0 && first == last) memset(acc, 0, sizeof(float) * impl->w_len);
    for (int i = first; i < last; i++) {
      const float *src = xd + i * x_img;
      if (!impl->direct) {
        im2col(op, src, col);
        src = col;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, op->cout, K, P, 1.f, dyd + i * y_img, P, src, P, beta, acc,
                  K);
      beta = 1.f;
    }
  }
  blas_threads_end(blas_prev);
  /* Deterministic reduction: partials in thread order, each element summed by the same sequence. */
  if (used > 1) {
    const long w_len = (long)impl->w_len;
#pragma omp parallel for num_threads(impl->nthreads) schedule(static) if (w_len >= SYNCO_REF_PAR_MIN)
    for (long j = 0; j < w_len; j++) {
      float sum = dw[j];
      for (int t = 1; t < used; t++) sum += impl->dw_part[(size_t)(t - 1) * impl->w_len + j];
      dw[j] = sum;
    }
  }
  return SYNCO_OK;
}
