/* Internals shared by the cpu backend's files (cpu_backend.c, cpu_conv.c, cpu_bn_onednn.c,
 * cpu_misc.c): the backend context, a checked-call macro carrying file and line, and a thin layer that
 * hides the two oneDNN C APIs this backend compiles against. In 2.x a memory descriptor is a struct passed
 * by pointer and primitives are made from op descriptors; in 3.x a memory descriptor is an opaque handle
 * and each primitive has its own primitive_desc_create. `synco_dnnl_cmd` is what both APIs accept as a
 * "const memory descriptor" (a pointer in 2.x, a handle in 3.x), and `synco_dnnl_md` owns one. */
#ifndef SYNCO_BACKEND_CPU_ONEDNN_UTIL_H
#define SYNCO_BACKEND_CPU_ONEDNN_UTIL_H

#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "base/status.h"
#include "kernels/bf16_kernel.h"
#include "tensor/backend.h"

#if DNNL_VERSION_MAJOR >= 3
typedef const_dnnl_memory_desc_t synco_dnnl_cmd;
typedef struct { dnnl_memory_desc_t h; } synco_dnnl_md;
#define SYNCO_DNNL_MD(m) ((synco_dnnl_cmd)(m).h)
#else
typedef const dnnl_memory_desc_t *synco_dnnl_cmd;
typedef struct { dnnl_memory_desc_t d; } synco_dnnl_md;
#define SYNCO_DNNL_MD(m) ((synco_dnnl_cmd) & (m).d)
#endif

/* Batch norm passes gamma and beta as two arrays (use_scale | use_shift, oneDNN >= 2.3, the only way in 3.x)
 * or packed as one [2, C] array (use_scaleshift, 2.x). 2.x keeps the packed form, which its kernels have
 * supported longest; building with -DSYNCO_ONEDNN_BN_SEPARATE=1 tries the 3.x form on 2.x. */
#ifndef SYNCO_ONEDNN_BN_SEPARATE
#if DNNL_VERSION_MAJOR >= 3
#define SYNCO_ONEDNN_BN_SEPARATE 1
#else
#define SYNCO_ONEDNN_BN_SEPARATE 0
#endif
#endif

/* Checked oneDNN call: on failure records "file:line: call: status" and returns SYNCO_ERR_BACKEND. */
#define SYNCO_DNNL(call)                                                                                 \
  do {                                                                                                   \
    dnnl_status_t _dst = (call);                                                                         \
    if (_dst != dnnl_success)                                                                            \
      return synco_fail(SYNCO_ERR_BACKEND, "%s:%d: %s: %s", __FILE__, __LINE__, #call, dnnl_status2str(_dst)); \
  } while (0)

#define SYNCO_DNNL_SPLIT_MAX 64 /* most batch chunks of a weight gradient (sum_threads) */

typedef struct {
  dnnl_engine_t eng;
  dnnl_stream_t strm;
  dnnl_cpu_isa_t isa;
  int block;                   /* channel block of activations: 16, 8, or 1 (everything plain) */
  dnnl_primitive_attr_t attr;  /* user-managed scratchpad */
  dnnl_primitive_attr_t attr_sum; /* user scratchpad + sum post-op: reorders that accumulate (dw +=) */
  void *scratch;               /* one scratchpad shared by every primitive, grown at plan time */
  size_t scratch_bytes;
  float *wino;                 /* Winograd workspace shared by the conv layers (cpu_conv.c), grown at plan time */
  size_t wino_bytes;
  void *reo[2];                /* a convolution's activations (x side, y side) in the format its kernel takes, when */
  size_t reo_bytes[2];         /* that is not the layer's layout (cpu_conv.c); shared by the layers, grown at plan */
  char *kernels;               /* the kernels the planned convolutions chose: a JSON array's items, one per shape */
  size_t kernels_len;
  int bf16;                    /* --precision bf16: convolutions and linear layers compute in bf16 (set before plans) */
  int bf16_conv;               /* under bf16, the convolutions too (not where this CPU's bf16 convolution kernels are
                                * the slower: bf16_conv_pays in cpu_backend.c) */
  struct synco_dnnl_linear *lin; /* the linear layers' bf16 matmuls and copies (cpu_linear.c) */
  /* --adapt-threads (synco_backend_cpu_sum_threads): the convolutions' weight gradients are summed in sum_threads
   * fixed batch chunks, so that no sum depends on how many threads run them (cpu_conv.c, split_*) */
  int sum_threads;
  dnnl_stream_t split_strm[SYNCO_DNNL_SPLIT_MAX]; /* a stream per chunk (chunks run at once), made when first needed */
  void *split_buf;             /* the chunks' partial weight gradients and scratchpads, shared, grown at plan time */
  size_t split_bytes;
} synco_dnnl_ctx;

/* The buffers the backend shares among its ops (synco_plan_bytes' shared[i]), and what a primitive's JIT code takes
 * (an estimate: oneDNN does not say; its primitive cache shares the code of identical layers, so it errs high). */
enum {
  SYNCO_DNNL_SHARED_SCRATCH = 0,
  SYNCO_DNNL_SHARED_WINO = 1,
  SYNCO_DNNL_SHARED_REO_X = 2,
  SYNCO_DNNL_SHARED_REO_Y = 3,
  SYNCO_DNNL_SHARED_SPLIT = 4
};
#define SYNCO_DNNL_CODE_BYTES ((size_t)32 << 10)

/* A primitive with the memory object its scratchpad is bound through. */
typedef struct {
  dnnl_primitive_t p;
  dnnl_memory_t scratch;       /* NULL when the primitive needs no scratchpad */
} synco_dnnl_prim;

static inline synco_dnnl_ctx *synco_dnnl_ctx_of(synco_backend *be) { return (synco_dnnl_ctx *)be->ctx; }

/* Sets OpenMP's thread count to n (n > 0; else leaves it) and returns the count it was. oneDNN splits a primitive's
 * work for the count in force when its descriptor and primitive are made, whatever count later runs it. */
static inline int synco_dnnl_threads_set(int n) {
  const int was = omp_get_max_threads();
  if (n > 0) omp_set_num_threads(n);
  return was;
}

/* The thread count to plan a weight gradient (a sum over the batch) for: ctx->sum_threads with fixed sums, so that
 * its split does not change with the count that runs it; 0 (the count in force) otherwise. */
static inline int synco_dnnl_sum_threads(const synco_dnnl_ctx *c) { return c->sum_threads > 1 ? c->sum_threads : 0; }

/* Memory descriptor of an activation in `layout` (nchw, nChw8c, nChw16c) or of any rank with `tag`. */
synco_status synco_dnnl_md_act(synco_dnnl_md *m, int n, int c, int h, int w, synco_dtype dt, synco_layout layout);
synco_status synco_dnnl_md_tag(synco_dnnl_md *m, int ndims, const dnnl_dims_t dims, dnnl_data_type_t dt,
                               dnnl_format_tag_t tag);
void synco_dnnl_md_free(synco_dnnl_md *m);
/* The descriptor of `full` with n images (its first n: the batch is the outermost dimension of every activation
 * format synco uses). */
synco_status synco_dnnl_md_batch(synco_dnnl_md *m, synco_dnnl_cmd full, int n);
/* F32 always; BF16 only where the ISA runs it (AVX-512 core and up). */
synco_status synco_dnnl_dtype(const synco_dnnl_ctx *c, synco_dtype dt, dnnl_data_type_t *out);
/* A memory object without a buffer (bound per call with synco_dnnl_bind). */
synco_status synco_dnnl_mem(synco_dnnl_ctx *c, dnnl_memory_t *out, synco_dnnl_cmd md);
synco_status synco_dnnl_bind(dnnl_memory_t m, const void *ptr);
/* Creates the primitive for pd (pd stays owned by the caller) and grows the shared scratchpad. */
synco_status synco_dnnl_prim_make(synco_dnnl_ctx *c, synco_dnnl_prim *out, const_dnnl_primitive_desc_t pd);
void synco_dnnl_prim_free(synco_dnnl_prim *p);
/* The scratchpad a primitive made from pd would bind (0: none). */
size_t synco_dnnl_scratch_bytes(const_dnnl_primitive_desc_t pd);
/* A reorder src_md -> dst_md (attr: ctx->attr, or ctx->attr_sum to accumulate into dst). */
synco_status synco_dnnl_reorder_make(synco_dnnl_ctx *c, synco_dnnl_prim *out, synco_dnnl_cmd src, synco_dnnl_cmd dst,
                                     const_dnnl_primitive_attr_t attr);
/* *bytes: the scratchpad that reorder would bind, without making it. */
synco_status synco_dnnl_reorder_scratch(synco_dnnl_ctx *c, synco_dnnl_cmd src, synco_dnnl_cmd dst,
                                        const_dnnl_primitive_attr_t attr, size_t *bytes);
/* Executes with the shared scratchpad bound, then waits. At most 15 args. */
synco_status synco_dnnl_exec(synco_dnnl_ctx *c, synco_dnnl_prim *p, int nargs, const dnnl_exec_arg_t *args);
void synco_dnnl_pd_free(dnnl_primitive_desc_t *pd);
void synco_dnnl_mem_free(dnnl_memory_t *m);

/* The layout this backend keeps for an activation, and checks that a tensor has the planned shape. */
synco_layout synco_dnnl_act_layout(synco_backend *be, int c, int h, int w, synco_dtype dt);
int synco_dnnl_layout_block(synco_layout l);
synco_status synco_dnnl_check(const char *what, const synco_tensor *t, int n, int c, int h, int w, synco_layout l);

/* Ops, one family per file, each declared with its signature's type from tensor/backend.h (where its contract
 * is). */
/* 1 when synco's own Winograd is a candidate for the 3x3 stride-1 layers (cpu_conv.c): blocked activations on
 * an AVX2 (or AVX-512) CPU, unless SYNCO_CONV_ALGO=direct / onednn-winograd or SYNCO_CONV_WINOGRAD=0. */
int synco_dnnl_winograd_on(const synco_dnnl_ctx *c);
/* The kernels the convolutions planned so far chose (a JSON array; see synco_kernels_fn). */
synco_kernels_fn synco_dnnl_kernels;
/* Adds one JSON object (an item of that array) to the log, unless it is there already. */
void synco_dnnl_log_kernel(synco_dnnl_ctx *c, const char *item);
synco_conv_plan_fn synco_dnnl_conv_plan;
synco_conv_plan_bytes_fn synco_dnnl_conv_plan_bytes;
synco_conv_release_fn synco_dnnl_conv_release;
synco_conv_fwd_fn synco_dnnl_conv_fwd;
synco_conv_bwd_data_fn synco_dnnl_conv_bwd_data;
synco_conv_bwd_weights_fn synco_dnnl_conv_bwd_weights;

synco_bn_plan_fn synco_dnnl_bn_plan;
synco_bn_plan_bytes_fn synco_dnnl_bn_plan_bytes;
synco_bn_release_fn synco_dnnl_bn_release;
synco_bn_fwd_train_fn synco_dnnl_bn_fwd_train;
synco_bn_fwd_train_add_relu_fn synco_dnnl_bn_fwd_train_add_relu;
synco_bn_fwd_eval_fn synco_dnnl_bn_fwd_eval;
synco_bn_bwd_fn synco_dnnl_bn_bwd;

/* fp32 batch norm as OpenMP loops (cpu_bn.c); cpu_bn_onednn.c dispatches to it for F32 activations. */
typedef struct synco_cpu_bn synco_cpu_bn;
synco_status synco_cpu_bn_plan(synco_backend *be, const synco_bn_op *op, synco_cpu_bn **out);
void synco_cpu_bn_release(synco_cpu_bn *k);
/* The bytes synco_cpu_bn_plan keeps for op. */
size_t synco_cpu_bn_plan_bytes(const synco_bn_op *op);
/* res non-NULL: then y = relu(y + res) in the same pass (op->relu is 0; bn_fwd_train_add_relu). */
synco_status synco_cpu_bn_fwd_train(synco_cpu_bn *k, const synco_bn_op *op, synco_tensor *y, float *save_mean,
                                    float *save_invstd, float *running_mean, float *running_var,
                                    const synco_tensor *x, const float *gamma, const float *beta,
                                    const synco_tensor *res);
synco_status synco_cpu_bn_fwd_eval(synco_cpu_bn *k, const synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                   const float *gamma, const float *beta, const float *running_mean,
                                   const float *running_var);
synco_status synco_cpu_bn_bwd(synco_cpu_bn *k, const synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                              const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                              const float *gamma, const float *save_mean, const float *save_invstd);

/* Linear layers (onednn_linear.c): the reference backend's cblas code in fp32, oneDNN's bf16 matmul under
 * --precision bf16. */
synco_gemm_fn synco_dnnl_gemm; /* backend/host_gemm.h's */
synco_linear_fwd_fn synco_dnnl_linear_fwd;
synco_linear_bwd_fn synco_dnnl_linear_bwd;
void synco_dnnl_linear_free(synco_dnnl_ctx *c);
/* fp32 -> bf16 (the upper 16 bits), rounded to nearest even; NaN stays NaN (kernels/bf16_kernel.h, the same bits as
 * the CUDA backend's conversions). One value, and n of them. Denormal inputs keep their rounding here, where
 * AVX512-BF16's vcvtneps2bf16 (and so oneDNN's reorders on such a CPU, and synco_dnnl_round_bf16) flush them to zero. */
static inline uint16_t synco_bf16_of(float x) { return synco_k_bf16_of(x); }
void synco_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
/* out[i] = bf16(in[i]) with AVX512-BF16's vcvtneps2bf16, as oneDNN's reorder from f32 to bf16 in one layout does on
 * such a CPU (bit-identical, test_cpu_ops checks; denormals flushed to zero), in chunks that go to the threads as each
 * finishes: 2.7-3.0x as fast as that reorder (Zen 4, 2 threads, 0.13-1M values, medians of 101). Only where synco_dnnl_round_bf16_available(). */
int synco_dnnl_round_bf16_available(void);
void synco_dnnl_round_bf16(uint16_t *out, const float *in, size_t n);

synco_pool_plan_fn synco_dnnl_pool_plan;
synco_pool_plan_bytes_fn synco_dnnl_pool_plan_bytes;
synco_pool_release_fn synco_dnnl_pool_release;
synco_maxpool_fwd_fn synco_dnnl_maxpool_fwd;
synco_maxpool_bwd_fn synco_dnnl_maxpool_bwd;
synco_relu_fwd_fn synco_dnnl_relu_fwd;
synco_relu_bwd_fn synco_dnnl_relu_bwd;
/* ReLU's backward for one element: g where the output y is positive, else 0. g is an argument, so it is loaded
 * whatever the mask: the loops then vectorize to a compare and a blend, where `y > 0 ? dy[i] : 0` kept one
 * unpredictable branch per element (half the elements of a ReLU are zero). Used by relu_bwd and the fused BN+ReLU. */
static inline __attribute__((always_inline)) float synco_relu_mask(float y, float g) { return y > 0.f ? g : 0.f; }
synco_add_fn synco_dnnl_add;
synco_add_relu_bwd_fn synco_dnnl_add_relu_bwd;
synco_avgpool_fwd_fn synco_dnnl_avgpool_fwd;
synco_avgpool_bwd_fn synco_dnnl_avgpool_bwd;

#endif
