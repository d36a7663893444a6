/* The oneDNN CPU backend: engine, stream, the shared scratchpad, the version-neutral helpers of
 * cpu_onednn_util.h, layout choice and the plain <-> blocked conversions at the network's edges, and the op
 * table (synco_backend_cpu_create). Activations of C % 8 == 0 channels live in nChw8c (AVX2) or
 * nChw16c (AVX-512) from layer to layer; the network input (C = 3), any other C, and matrices (H = W = 1)
 * stay plain. Because a channel count is blocked only when the block divides it, no layout carries
 * padding, so element-wise ops can run over the raw bytes whatever the layout. The environment variable
 * SYNCO_ONEDNN_BLOCK (16, 8 or 1 = all plain) overrides the choice, for tests and debugging. Linear and L2
 * normalization take plain matrices, where the reference backend's cblas code is the fast path already,
 * so the op table points at it. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_onednn_util.h"
#include "backend/ref/ref_internal.h"
#include "backend/registry.h"

/* ---- version-neutral helpers ------------------------------------------------------------------ */

synco_status synco_dnnl_md_tag(synco_dnnl_md *m, int ndims, const dnnl_dims_t dims, dnnl_data_type_t dt,
                               dnnl_format_tag_t tag) {
#if DNNL_VERSION_MAJOR >= 3
  synco_dnnl_md_free(m);
  SYNCO_DNNL(dnnl_memory_desc_create_with_tag(&m->h, ndims, dims, dt, tag));
#else
  SYNCO_DNNL(dnnl_memory_desc_init_by_tag(&m->d, ndims, dims, dt, tag));
#endif
  return SYNCO_OK;
}

synco_status synco_dnnl_md_batch(synco_dnnl_md *m, synco_dnnl_cmd full, int n) {
#if DNNL_VERSION_MAJOR >= 3
  const dnnl_dims_t *fd = NULL;
  int nd = 0;
  SYNCO_DNNL(dnnl_memory_desc_query(full, dnnl_query_ndims_s32, &nd));
  SYNCO_DNNL(dnnl_memory_desc_query(full, dnnl_query_dims, &fd));
  dnnl_dims_t dims, offs = {0};
  for (int i = 0; i < nd; i++) dims[i] = (*fd)[i];
  dims[0] = n;
  synco_dnnl_md_free(m);
  SYNCO_DNNL(dnnl_memory_desc_create_submemory(&m->h, full, dims, offs));
#else
  if (full->format_kind != dnnl_blocked || full->offset0 || full->padded_offsets[0])
    return synco_fail(SYNCO_ERR_BACKEND, "cpu: a batch chunk of a tensor that is not plainly blocked");
  m->d = *full;
  m->d.dims[0] = m->d.padded_dims[0] = n;
#endif
  return SYNCO_OK;
}

void synco_dnnl_md_free(synco_dnnl_md *m) {
#if DNNL_VERSION_MAJOR >= 3
  if (m->h) dnnl_memory_desc_destroy(m->h);
  m->h = NULL;
#else
  (void)m;
#endif
}

synco_status synco_dnnl_dtype(const synco_dnnl_ctx *c, synco_dtype dt, dnnl_data_type_t *out) {
  if (dt == SYNCO_F32) {
    *out = dnnl_f32;
    return SYNCO_OK;
  }
  if (dt == SYNCO_BF16) {
    if ((c->isa & dnnl_cpu_isa_avx512_core) != dnnl_cpu_isa_avx512_core)
      return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu: bf16 needs an AVX-512 CPU (this one runs %s)",
                        dnnl_cpu_isa2str(c->isa));
    *out = dnnl_bf16;
    return SYNCO_OK;
  }
  return synco_fail(SYNCO_ERR_ARG, "cpu: unknown dtype %d", (int)dt);
}

int synco_dnnl_layout_block(synco_layout l) {
  return l == SYNCO_LAYOUT_NCHW16C ? 16 : l == SYNCO_LAYOUT_NCHW8C ? 8 : 1;
}

synco_status synco_dnnl_md_act(synco_dnnl_md *m, int n, int c, int h, int w, synco_dtype dt, synco_layout layout) {
  /* Whether the ISA runs bf16 was checked at plan time (synco_dnnl_dtype). */
  const dnnl_data_type_t ddt = dt == SYNCO_BF16 ? dnnl_bf16 : dnnl_f32;
  const dnnl_format_tag_t tag = layout == SYNCO_LAYOUT_NCHW16C ? dnnl_nChw16c
                                : layout == SYNCO_LAYOUT_NCHW8C ? dnnl_nChw8c
                                                                : dnnl_nchw;
  const dnnl_dims_t dims = {n, c, h, w};
  return synco_dnnl_md_tag(m, 4, dims, ddt, tag);
}

int synco_dnnl_round_bf16_available(void) {
  static int have = -1;
  if (have < 0)
    have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16");
  return have;
}

/* Intel CPUs with AVX512-BF16 but no AMX run every bf16 convolution kernel of oneDNN's slower than its fp32 one, and
 * --precision bf16 then runs the convolutions as an fp32 run does (fp32 products are no less exact than the bf16 ones
 * asked for; the linear layers stay bf16). Measured on an Intel Xeon with AVX512-BF16 and AVX512-FP16, AMX not
 * exposed (oneDNN avx512_core_bf16), 2 threads, idle, 2026-12-06: SYNCO_CONV_ALGO=auto in a `bench step --precision
 * bf16` at batch 128, ms of oneDNN's bf16 direct / fp32 direct kernel for the forward, backward data and backward
 * weights: the 3x3 of 64 channels at 32x32 61.5/36.0, 63.1/47.5, 70.5/47.7 (fp32 Winograd 18.6, 19.0, 19.3); 3x3
 * stride 2 64 -> 128 32.8/20.2, 33.1/23.6, 38.1/26.4, 128 -> 256 30.1/15.1, 28.8/17.0, 32.9/18.9; 1x1 stride 2 64 ->
 * 128 5.7/2.6, 5.8/3.3, 6.8/2.8; 512 at 4x4 46.3/32.4, 46.4/32.4, 68.2/49.5; the CIFAR stem 4.1/1.6, 19.0/13.3,
 * 5.6/2.0. Whole steps, 3 rounds alternated with PyTorch's: bf16 64.5 images/s against fp32's 84.4. The same held
 * on the AMX Intel capped at AVX512_CORE_BF16 (README: bf16 45 against fp32 113). On the Zen 4 (AMD) oneDNN's bf16
 * kernels run about as fast as its fp32 ones, several passes faster (cpu_conv.c's rule_kind): it keeps them. */
/* 1 when the convolutions multiply in bf16 under --precision bf16 on this CPU (isa: oneDNN's), 0 when they run fp32
 * kernels; SYNCO_BF16_CONV=bf16 or =fp32 chooses instead (unset or empty: by CPU), -1 for another value. */
static int bf16_conv_pays(dnnl_cpu_isa_t isa) {
  const char *e = getenv("SYNCO_BF16_CONV");
  if (e && *e) return !strcmp(e, "bf16") ? 1 : !strcmp(e, "fp32") ? 0 : -1;
  if ((isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx) return 1;
  return !__builtin_cpu_is("intel");
}

#define ROUND_CHUNK 16384
__attribute__((target("avx512f,avx512vl,avx512bf16"))) void synco_dnnl_round_bf16(uint16_t *out, const float *in,
                                                                                  size_t n) {
  const long chunks = (long)((n + ROUND_CHUNK - 1) / ROUND_CHUNK);
#pragma omp parallel for schedule(dynamic, 1) if (chunks > 1)
  for (long c = 0; c < chunks; c++) {
    const size_t a = (size_t)c * ROUND_CHUNK, b = a + ROUND_CHUNK < n ? a + ROUND_CHUNK : n;
    size_t i = a;
    for (; i + 32 <= b; i += 32)
      _mm512_storeu_si512((void *)(out + i),
                          (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(in + i + 16), _mm512_loadu_ps(in + i)));
    for (; i < b; i += 16) { /* the last 1-31 values, 16 at a time under a mask */
      const __mmask16 m = (__mmask16)(b - i >= 16 ? 0xffffu : (1u << (b - i)) - 1u);
      _mm256_mask_storeu_epi16(out + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, in + i)));
    }
  }
}

synco_status synco_dnnl_mem(synco_dnnl_ctx *c, dnnl_memory_t *out, synco_dnnl_cmd md) {
  SYNCO_DNNL(dnnl_memory_create(out, md, c->eng, DNNL_MEMORY_NONE));
  return SYNCO_OK;
}

synco_status synco_dnnl_bind(dnnl_memory_t m, const void *ptr) {
  /* oneDNN never writes an input; its API just has no const handle. */
  SYNCO_DNNL(dnnl_memory_set_data_handle(m, (void *)(uintptr_t)ptr));
  return SYNCO_OK;
}

void synco_dnnl_pd_free(dnnl_primitive_desc_t *pd) {
  if (*pd) dnnl_primitive_desc_destroy(*pd);
  *pd = NULL;
}

void synco_dnnl_mem_free(dnnl_memory_t *m) {
  if (*m) dnnl_memory_destroy(*m);
  *m = NULL;
}

size_t synco_dnnl_scratch_bytes(const_dnnl_primitive_desc_t pd) {
  synco_dnnl_cmd smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  return smd ? dnnl_memory_desc_get_size(smd) : 0;
}

synco_status synco_dnnl_prim_make(synco_dnnl_ctx *c, synco_dnnl_prim *out, const_dnnl_primitive_desc_t pd) {
  SYNCO_DNNL(dnnl_primitive_create(&out->p, pd));
  const size_t need = synco_dnnl_scratch_bytes(pd);
  if (need == 0) return SYNCO_OK;
  SYNCO_TRY(synco_dnnl_mem(c, &out->scratch, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)));
  if (need > c->scratch_bytes) {
    void *p = synco_aligned_alloc(need);
    if (!p) return SYNCO_ERR_NOMEM;
    free(c->scratch);
    c->scratch = p;
    c->scratch_bytes = need;
  }
  return SYNCO_OK;
}

void synco_dnnl_prim_free(synco_dnnl_prim *p) {
  if (p->p) dnnl_primitive_destroy(p->p);
  synco_dnnl_mem_free(&p->scratch);
  p->p = NULL;
}

synco_status synco_dnnl_reorder_make(synco_dnnl_ctx *c, synco_dnnl_prim *out, synco_dnnl_cmd src, synco_dnnl_cmd dst,
                                     const_dnnl_primitive_attr_t attr) {
  dnnl_primitive_desc_t pd = NULL;
  SYNCO_DNNL(dnnl_reorder_primitive_desc_create(&pd, src, c->eng, dst, c->eng, attr));
  const synco_status s = synco_dnnl_prim_make(c, out, pd);
  dnnl_primitive_desc_destroy(pd);
  return s;
}

synco_status synco_dnnl_reorder_scratch(synco_dnnl_ctx *c, synco_dnnl_cmd src, synco_dnnl_cmd dst,
                                        const_dnnl_primitive_attr_t attr, size_t *bytes) {
  dnnl_primitive_desc_t pd = NULL;
  *bytes = 0;
  SYNCO_DNNL(dnnl_reorder_primitive_desc_create(&pd, src, c->eng, dst, c->eng, attr));
  *bytes = synco_dnnl_scratch_bytes(pd);
  dnnl_primitive_desc_destroy(pd);
  return SYNCO_OK;
}

synco_status synco_dnnl_exec(synco_dnnl_ctx *c, synco_dnnl_prim *p, int nargs, const dnnl_exec_arg_t *args) {
  dnnl_exec_arg_t a[16];
  if (nargs > 15) return synco_fail(SYNCO_ERR_ARG, "cpu: %d arguments to one primitive", nargs);
  memcpy(a, args, sizeof(*a) * (size_t)nargs);
  if (p->scratch) {
    SYNCO_TRY(synco_dnnl_bind(p->scratch, c->scratch));
    a[nargs].arg = DNNL_ARG_SCRATCHPAD;
    a[nargs].memory = p->scratch;
    nargs++;
  }
  SYNCO_DNNL(dnnl_primitive_execute(p->p, c->strm, nargs, a));
  SYNCO_DNNL(dnnl_stream_wait(c->strm));
  return SYNCO_OK;
}

synco_status synco_dnnl_check(const char *what, const synco_tensor *t, int n, int c, int h, int w, synco_layout l) {
  return synco_tensor_check(t, "cpu", what, "tensor", n, c, h, w, l, 0);
}

/* ---- layouts ------------------------------------------------------------------------------------ */

synco_layout synco_dnnl_act_layout(synco_backend *be, int c, int h, int w, synco_dtype dt) {
  const synco_dnnl_ctx *x = synco_dnnl_ctx_of(be);
  (void)dt;
  if (h == 1 && w == 1) return SYNCO_LAYOUT_PLAIN;
  if (x->block >= 16 && c % 16 == 0) return SYNCO_LAYOUT_NCHW16C;
  if (x->block >= 8 && c % 8 == 0) return SYNCO_LAYOUT_NCHW8C;
  return SYNCO_LAYOUT_PLAIN;
}

static size_t act_bytes(synco_backend *be, int n, int c, int h, int w, synco_dtype dt) {
  (void)be; /* no layout of this backend pads */
  return (size_t)n * c * h * w * synco_dtype_size(dt);
}

/* Checks a tensor for a plain <-> backend conversion and returns its channel block. */
static synco_status edge_check(const char *what, const synco_tensor *t, int *block) {
  if (!t || !t->data) return synco_fail(SYNCO_ERR_ARG, "cpu %s: missing tensor", what);
  if (t->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cpu %s: only fp32 so far", what);
  *block = synco_dnnl_layout_block(t->layout);
  if (t->c % *block)
    return synco_fail(SYNCO_ERR_ARG, "cpu %s: %d channels do not fill blocks of %d", what, t->c, *block);
  return SYNCO_OK;
}

static synco_status to_backend(synco_backend *be, synco_tensor *dst, const float *src) {
  int B;
  (void)be;
  SYNCO_TRY(edge_check("to_backend", dst, &B));
  float *d = dst->data;
  if (B == 1) {
    memcpy(d, src, synco_tensor_numel(dst) * sizeof(float));
    return SYNCO_OK;
  }
  const long CB = dst->c / B, HW = (long)dst->h * dst->w, N = dst->n;
#pragma omp parallel for schedule(static)
  for (long ncb = 0; ncb < N * CB; ncb++) {
    const float *s = src + ncb * B * HW; /* channels cb*B .. cb*B+B-1 of image n are contiguous planes */
    float *o = d + ncb * HW * B;
    for (long p = 0; p < HW; p++)
      for (int b = 0; b < B; b++) o[p * B + b] = s[b * HW + p];
  }
  return SYNCO_OK;
}

static synco_status to_plain(synco_backend *be, float *dst, const synco_tensor *src) {
  int B;
  (void)be;
  SYNCO_TRY(edge_check("to_plain", src, &B));
  const float *s = src->data;
  if (B == 1) {
    memcpy(dst, s, synco_tensor_numel(src) * sizeof(float));
    return SYNCO_OK;
  }
  const long CB = src->c / B, HW = (long)src->h * src->w, N = src->n;
#pragma omp parallel for schedule(static)
  for (long ncb = 0; ncb < N * CB; ncb++) {
    const float *i = s + ncb * HW * B;
    float *o = dst + ncb * B * HW;
    for (int b = 0; b < B; b++)
      for (long p = 0; p < HW; p++) o[b * HW + p] = i[p * B + b];
  }
  return SYNCO_OK;
}

/* ---- creation ----------------------------------------------------------------------------------- */

static void destroy(synco_backend *be) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  if (c) {
    if (c->attr) dnnl_primitive_attr_destroy(c->attr);
    if (c->attr_sum) dnnl_primitive_attr_destroy(c->attr_sum);
    if (c->strm) dnnl_stream_destroy(c->strm);
    for (int i = 0; i < SYNCO_DNNL_SPLIT_MAX; i++)
      if (c->split_strm[i]) dnnl_stream_destroy(c->split_strm[i]);
    free(c->split_buf);
    if (c->eng) dnnl_engine_destroy(c->eng);
    free(c->scratch);
    free(c->wino);
    free(c->reo[0]);
    free(c->reo[1]);
    free(c->kernels);
    synco_dnnl_linear_free(c);
    free(c);
  }
  free(be);
}

static synco_status init_ctx(synco_dnnl_ctx *c) {
  SYNCO_DNNL(dnnl_engine_create(&c->eng, dnnl_cpu, 0));
  SYNCO_DNNL(dnnl_stream_create(&c->strm, c->eng, dnnl_stream_default_flags));
  c->isa = dnnl_get_effective_cpu_isa();
  c->block = (c->isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core ? 16 : 8;
  const char *env = getenv("SYNCO_ONEDNN_BLOCK");
  if (env && *env) {
    const int b = atoi(env);
    if (b != 1 && b != 8 && b != 16)
      return synco_fail(SYNCO_ERR_ARG, "SYNCO_ONEDNN_BLOCK=%s: expected 16, 8 or 1", env);
    c->block = b;
  }
  SYNCO_DNNL(dnnl_primitive_attr_create(&c->attr));
  SYNCO_DNNL(dnnl_primitive_attr_set_scratchpad_mode(c->attr, dnnl_scratchpad_mode_user));
  SYNCO_DNNL(dnnl_primitive_attr_create(&c->attr_sum));
  SYNCO_DNNL(dnnl_primitive_attr_set_scratchpad_mode(c->attr_sum, dnnl_scratchpad_mode_user));
  dnnl_post_ops_t po = NULL;
  SYNCO_DNNL(dnnl_post_ops_create(&po));
#if DNNL_VERSION_MAJOR >= 3
  dnnl_status_t st = dnnl_post_ops_append_sum(po, 1.0f, 0, dnnl_data_type_undef);
#else
  dnnl_status_t st = dnnl_post_ops_append_sum(po, 1.0f);
#endif
  if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(c->attr_sum, po);
  dnnl_post_ops_destroy(po);
  SYNCO_DNNL(st);
  return SYNCO_OK;
}

static int supports(synco_backend *be, synco_capability cap) {
  const synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  /* below avx512_core_bf16 oneDNN only emulates bf16, slower than fp32 */
  const int native = (c->isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
  switch (cap) {
    case SYNCO_CAP_BF16: return native;
    case SYNCO_CAP_BF16_NATIVE: return native;
    case SYNCO_CAP_WINOGRAD: return synco_dnnl_winograd_on(c);
    case SYNCO_CAP_ASYNC: return 0; /* every op has finished when it returns */
    case SYNCO_CAP_DEVICE_MEMORY: return 0; /* host memory */
  }
  return 0;
}

static const synco_backend cpu_ops = {
    .name = "cpu",
    .destroy = destroy,
    .supports = supports,
    SYNCO_REF_HOST_OPS, /* host memory; the step ops are memory-bound loops */
    .gemm = synco_dnnl_gemm,
    .act_layout = synco_dnnl_act_layout,
    .act_bytes = act_bytes,
    .to_backend = to_backend,
    .to_plain = to_plain,
    .kernels = synco_dnnl_kernels,
    .conv_plan = synco_dnnl_conv_plan,
    .conv_plan_bytes = synco_dnnl_conv_plan_bytes,
    .conv_release = synco_dnnl_conv_release,
    .conv_fwd = synco_dnnl_conv_fwd,
    .conv_bwd_data = synco_dnnl_conv_bwd_data,
    .conv_bwd_weights = synco_dnnl_conv_bwd_weights,
    .bn_plan = synco_dnnl_bn_plan,
    .bn_plan_bytes = synco_dnnl_bn_plan_bytes,
    .bn_release = synco_dnnl_bn_release,
    .bn_fwd_train = synco_dnnl_bn_fwd_train,
    .bn_fwd_train_add_relu = synco_dnnl_bn_fwd_train_add_relu,
    .bn_fwd_eval = synco_dnnl_bn_fwd_eval,
    .bn_bwd = synco_dnnl_bn_bwd,
    .pool_plan = synco_dnnl_pool_plan,
    .pool_plan_bytes = synco_dnnl_pool_plan_bytes,
    .pool_release = synco_dnnl_pool_release,
    .maxpool_fwd = synco_dnnl_maxpool_fwd,
    .maxpool_bwd = synco_dnnl_maxpool_bwd,
    .relu_fwd = synco_dnnl_relu_fwd,
    .relu_bwd = synco_dnnl_relu_bwd,
    .add = synco_dnnl_add,
    .add_relu_bwd = synco_dnnl_add_relu_bwd,
    .avgpool_fwd = synco_dnnl_avgpool_fwd,
    .avgpool_bwd = synco_dnnl_avgpool_bwd,
    .linear_fwd = synco_dnnl_linear_fwd, /* fp32: the reference's code on host_gemm.h; bf16: oneDNN's matmul */
    .linear_bwd = synco_dnnl_linear_bwd,
    .l2norm_fwd = synco_ref_l2norm_fwd,
    .l2norm_bwd = synco_ref_l2norm_bwd,
};

synco_status synco_backend_cpu_bf16(synco_backend *be, int on) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  if (on && !supports(be, SYNCO_CAP_BF16))
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "--precision bf16 needs a CPU with AVX512-BF16 (oneDNN avx512_core_bf16); "
                      "this one runs %s: use --precision fp32", dnnl_cpu_isa2str(c->isa));
  const int conv = on ? bf16_conv_pays(c->isa) : 0; /* read under bf16 only: it means nothing to an fp32 run */
  if (conv < 0)
    return synco_fail(SYNCO_ERR_ARG, "SYNCO_BF16_CONV=%s: expected bf16 or fp32 (unset: by CPU)",
                      getenv("SYNCO_BF16_CONV"));
  c->bf16 = on;
  c->bf16_conv = conv;
  return SYNCO_OK;
}

int synco_backend_cpu_bf16_conv(const synco_backend *be) {
  return ((const synco_dnnl_ctx *)be->ctx)->bf16_conv;
}

synco_status synco_backend_cpu_sum_threads(synco_backend *be, int n) {
  synco_dnnl_ctx *c = synco_dnnl_ctx_of(be);
  c->sum_threads = n < 2 ? 0 : n > SYNCO_DNNL_SPLIT_MAX ? SYNCO_DNNL_SPLIT_MAX : n;
  return SYNCO_OK;
}

synco_status synco_backend_cpu_create(synco_backend **out) {
  *out = NULL;
  synco_backend *be = synco_malloc(sizeof(*be));
  if (!be) return SYNCO_ERR_NOMEM;
  synco_dnnl_ctx *c = synco_calloc(1, sizeof(*c));
  if (!c) {
    free(be);
    return SYNCO_ERR_NOMEM;
  }
  *be = cpu_ops;
  be->ctx = c;
  const synco_status s = init_ctx(c);
  if (s != SYNCO_OK) {
    destroy(be);
    return s;
  }
  *out = be;
  return SYNCO_OK;
}
