/* fp32 batch normalization (+ fused ReLU, + Split-BN) for the cpu backend, written as OpenMP loops
 * instead of oneDNN's bnorm primitive. Why not the primitive: Split-BN ran it once per group (8 small calls
 * per layer, each a parallel region), its JIT kernel synchronizes its threads with a spin barrier that burns a
 * whole time slice whenever the partner thread is descheduled (a shared 2-core machine), and the fused-ReLU
 * backward needed a separate masking pass. Here one parallel loop over (group, channel block) tasks does a
 * whole layer: each task's slice (images of one group × one block of B channels) is contiguous per image in
 * every layout of this backend (nChw8c, nChw16c, plain = blocks of 1), so the statistics pass, the variance
 * pass and the normalize pass of a task run over data that is still in the core's L2. Statistics are summed
 * per image in float and across images in double; the variance is the mean of squared deviations (two passes,
 * no cancellation). The backward masks dy by y > 0 on the fly when the ReLU is fused, and is safe in place
 * (dx == dy) because every element is read before it is written. dgamma / dbeta are summed per group and
 * added to the caller's arrays in group order after the parallel loop, so results do not depend on threads. The
 * tasks go to the threads by affinity scheduling (cpu_affinity.h): each thread first takes the groups of its own
 * share of the batch, whose images it wrote in the layer before, then any a slower thread has not reached, so a
 * thread slowed by another process takes fewer instead of the others waiting for it; which thread runs a task
 * changes no result. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_affinity.h"
#include "backend/cpu/cpu_onednn_util.h"

/* Pointer to the first element of (image n, channel block cb) and the distance between images. */
#define SLICE(p, n, cb) ((p) + ((long)(n) * CB + (cb)) * HW * B)

/* ---- AVX2 kernels for blocked layouts (B = 8 or 16: NV = B / 8 vectors per pixel) ------------------------
 * The library is built for x86-64-v2, where the compiler cannot vectorize the masked, lane-interleaved loops
 * below well; these run wherever the CPU has AVX2 + FMA, which every CPU that gets a blocked layout has. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SYNCO_BN_AVX2 1
#define AVX2 __attribute__((target("avx2,fma")))


static AVX2 void avx_stats(const float *x, long stride, int per, long HW, int NV, double *mean, double *var) {
  double s[16] = {0}, v[16] = {0};
  const double m = (double)per * HW;
  for (int n = 0; n < per; n++) {
    const float *p = x + n * stride;
    for (int k = 0; k < NV; k++) {
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      long i = 0;
      for (; i + 1 < HW; i += 2) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + (i * NV + k) * 8));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + ((i + 1) * NV + k) * 8));
      }
      if (i < HW) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + (i * NV + k) * 8));
      float t[8];
      _mm256_storeu_ps(t, _mm256_add_ps(a0, a1));
      for (int b = 0; b < 8; b++) s[k * 8 + b] += t[b];
    }
  }
  float mf[16];
  for (int b = 0; b < NV * 8; b++) {
    mean[b] = s[b] / m;
    mf[b] = (float)mean[b];
  }
  for (int n = 0; n < per; n++) {
    const float *p = x + n * stride;
    for (int k = 0; k < NV; k++) {
      const __m256 mu = _mm256_loadu_ps(mf + k * 8);
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      long i = 0;
      for (; i + 1 < HW; i += 2) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(p + (i * NV + k) * 8), mu);
        const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(p + ((i + 1) * NV + k) * 8), mu);
        a0 = _mm256_fmadd_ps(d0, d0, a0);
        a1 = _mm256_fmadd_ps(d1, d1, a1);
      }
      if (i < HW) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(p + (i * NV + k) * 8), mu);
        a0 = _mm256_fmadd_ps(d0, d0, a0);
      }
      float t[8];
      _mm256_storeu_ps(t, _mm256_add_ps(a0, a1));
      for (int b = 0; b < 8; b++) v[k * 8 + b] += t[b];
    }
  }
  for (int b = 0; b < NV * 8; b++) var[b] = v[b] / m;
}

static AVX2 void avx_affine(float *y, const float *x, const float *res, long stride, int per, long HW, int NV,
                            const float *scale, const float *shift, int relu) {
  const __m256 z = _mm256_setzero_ps();
  for (int k = 0; k < NV; k++) {
    const __m256 sc = _mm256_loadu_ps(scale + k * 8), sh = _mm256_loadu_ps(shift + k * 8);
    for (int n = 0; n < per; n++) {
      const float *p = x + n * stride + k * 8;
      float *q = y + n * stride + k * 8;
      if (res) { /* the residual block's end: relu(bn + shortcut), the values add then relu_fwd give */
        const float *r = res + n * stride + k * 8;
        for (long i = 0; i < HW; i++) {
          const __m256 t = _mm256_fmadd_ps(_mm256_loadu_ps(p + i * NV * 8), sc, sh);
          _mm256_storeu_ps(q + i * NV * 8, _mm256_max_ps(z, _mm256_add_ps(t, _mm256_loadu_ps(r + i * NV * 8))));
        }
      } else if (relu)
        for (long i = 0; i < HW; i++)
          /* max(0, v): maxps returns its second operand when one is NaN, so NaN stays NaN, as torch's ReLU */
          _mm256_storeu_ps(q + i * NV * 8, _mm256_max_ps(z, _mm256_fmadd_ps(_mm256_loadu_ps(p + i * NV * 8), sc, sh)));
      else
        for (long i = 0; i < HW; i++)
          _mm256_storeu_ps(q + i * NV * 8, _mm256_fmadd_ps(_mm256_loadu_ps(p + i * NV * 8), sc, sh));
    }
  }
}

static AVX2 void avx_bwd_sums(const float *dy, const float *y, const float *x, long stride, int per, long HW, int NV,
                              const float *mean, int relu, double *sdy, double *sdyx) {
  const __m256 z = _mm256_setzero_ps();
  for (int b = 0; b < NV * 8; b++) sdy[b] = sdyx[b] = 0;
  for (int n = 0; n < per; n++)
    for (int k = 0; k < NV; k++) {
      const float *pd = dy + n * stride + k * 8, *px = x + n * stride + k * 8;
      const float *py = relu ? y + n * stride + k * 8 : NULL;
      const __m256 mu = _mm256_loadu_ps(mean + k * 8);
      __m256 a = _mm256_setzero_ps(), c = _mm256_setzero_ps();
      for (long i = 0; i < HW; i++) {
        __m256 d = _mm256_loadu_ps(pd + i * NV * 8);
        if (relu) d = _mm256_and_ps(d, _mm256_cmp_ps(_mm256_loadu_ps(py + i * NV * 8), z, _CMP_GT_OQ));
        a = _mm256_add_ps(a, d);
        c = _mm256_fmadd_ps(d, _mm256_sub_ps(_mm256_loadu_ps(px + i * NV * 8), mu), c);
      }
      float ta[8], tc[8];
      _mm256_storeu_ps(ta, a);
      _mm256_storeu_ps(tc, c);
      for (int b = 0; b < 8; b++) {
        sdy[k * 8 + b] += ta[b];
        sdyx[k * 8 + b] += tc[b];
      }
    }
}

static AVX2 void avx_bwd_apply(float *dx, const float *dy, const float *y, const float *x, long stride, int per,
                               long HW, int NV, const float *ka, const float *kb, const float *kc, int relu) {
  const __m256 z = _mm256_setzero_ps();
  for (int k = 0; k < NV; k++) {
    const __m256 va = _mm256_loadu_ps(ka + k * 8), vb = _mm256_loadu_ps(kb + k * 8), vc = _mm256_loadu_ps(kc + k * 8);
    for (int n = 0; n < per; n++) {
      const float *pd = dy + n * stride + k * 8, *px = x + n * stride + k * 8;
      const float *py = relu ? y + n * stride + k * 8 : NULL;
      float *q = dx + n * stride + k * 8;
      for (long i = 0; i < HW; i++) {
        __m256 d = _mm256_loadu_ps(pd + i * NV * 8);
        if (relu) d = _mm256_and_ps(d, _mm256_cmp_ps(_mm256_loadu_ps(py + i * NV * 8), z, _CMP_GT_OQ));
        _mm256_storeu_ps(q + i * NV * 8, _mm256_fmadd_ps(va, d, _mm256_fmadd_ps(vb, _mm256_loadu_ps(px + i * NV * 8), vc)));
      }
    }
  }
}
/* ---- AVX-512 kernels for blocked layouts (B = 8 or 16) -------------------------------------------------------
 * One image's slice of a channel block is HW * B contiguous floats, so these walk it as a stream of 16-float
 * vectors, lane l holding channel l % B (B = 8: two pixels a vector), with several independent accumulators. The
 * AVX2 kernels above walk each 8-channel half of a 16-channel block in its own pass (two passes over every cache
 * line) and sum into two accumulators, so the statistics pass waits on the adds' latency. The statistics: each
 * image's mean, then its squared deviations from that mean while the image is still in L1 (a 32 KB slice at 8
 * channels and 32x32), merged across images in double (Chan, Golub and LeVeque's pairwise update): two passes over
 * each image, no cancellation, and one pass over the group from L2 instead of two. Measured (Intel Xeon with
 * AVX-512, 2 threads, `bench step --cifar-stem --width 8 -b 64 --moco-k 256` under perf, SYNCO_BN_ISA=avx2 against
 * the default): the four BN kernels 18.5 % of the step's CPU samples against 15.6 %; memory, not arithmetic, bounds
 * them now. */
#define AVX512 __attribute__((target("avx512f")))

/* v[l % B] in lane l */
static AVX512 __m512 z_lanes(const float *v, int B) {
  float t[16];
  for (int l = 0; l < 16; l++) t[l] = v[l % B];
  return _mm512_loadu_ps(t);
}

/* the per-channel sums of a vector's lanes, added to out[0 .. B-1] */
static AVX512 void z_fold(double *out, __m512 v, int B) {
  float t[16];
  _mm512_storeu_ps(t, v);
  for (int l = 0; l < 16; l++) out[l % B] += t[l];
}

/* The mask of the last vector of a slice of L floats (L is a multiple of 8): 8 or 16 lanes. */
#define Z_TAIL(L) ((L) % 16 ? (__mmask16)0x00FF : (__mmask16)0xFFFF)

static AVX512 void z_stats(const float *x, long stride, int per, long L, int B, double *mean, double *var) {
  const long cnt = L / B;           /* pixels of one image */
  const long full = L / 16 * 16;    /* floats in whole vectors */
  double m[16] = {0}, M2[16] = {0}; /* the running mean and sum of squared deviations of the images so far */
  for (int n = 0; n < per; n++) {
    const float *p = x + n * stride;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    long i = 0;
    for (; i + 64 <= full; i += 64) {
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
      a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
      a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
      a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    for (; i < L; i += 16) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(i < full ? 0xFFFF : Z_TAIL(L), p + i));
    double sn[16] = {0}, mn[16], dn[16] = {0};
    z_fold(sn, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), B);
    float mf[16];
    for (int b = 0; b < B; b++) {
      mn[b] = sn[b] / (double)cnt;
      mf[b] = (float)mn[b];
    }
    const __m512 mu = z_lanes(mf, B);
    a0 = a1 = a2 = a3 = _mm512_setzero_ps();
    for (i = 0; i + 64 <= full; i += 64) {
      const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(p + i), mu), d1 = _mm512_sub_ps(_mm512_loadu_ps(p + i + 16), mu);
      const __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(p + i + 32), mu);
      const __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(p + i + 48), mu);
      a0 = _mm512_fmadd_ps(d0, d0, a0);
      a1 = _mm512_fmadd_ps(d1, d1, a1);
      a2 = _mm512_fmadd_ps(d2, d2, a2);
      a3 = _mm512_fmadd_ps(d3, d3, a3);
    }
    for (; i < L; i += 16) {
      const __mmask16 k = i < full ? 0xFFFF : Z_TAIL(L);
      const __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, p + i), mu);
      a0 = _mm512_fmadd_ps(d, d, a0);
    }
    z_fold(dn, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), B);
    /* merge image n (cnt pixels, mean mn, deviations dn) into the n images before it (n * cnt pixels) */
    const double w = 1.0 / (n + 1);
    for (int b = 0; b < B; b++) {
      const double delta = mn[b] - m[b];
      m[b] += delta * w;
      M2[b] += dn[b] + delta * delta * (double)cnt * n * w;
    }
  }
  for (int b = 0; b < B; b++) {
    mean[b] = m[b];
    var[b] = M2[b] / ((double)per * cnt);
  }
}

static AVX512 void z_affine(float *y, const float *x, const float *res, long stride, int per, long L, int B,
                            const float *scale, const float *shift, int relu) {
  const __m512 z = _mm512_setzero_ps(), sc = z_lanes(scale, B), sh = z_lanes(shift, B);
  const long full = L / 16 * 16;
  for (int n = 0; n < per; n++) {
    const float *p = x + n * stride, *r = res ? res + n * stride : NULL;
    float *q = y + n * stride;
    for (long i = 0; i < L; i += 16) {
      const __mmask16 k = i < full ? 0xFFFF : Z_TAIL(L);
      __m512 t = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, p + i), sc, sh);
      /* the residual block's end: relu(bn + shortcut), the values add then relu_fwd give; max(0, v) keeps a NaN */
      if (r) t = _mm512_max_ps(z, _mm512_add_ps(t, _mm512_maskz_loadu_ps(k, r + i)));
      else if (relu) t = _mm512_max_ps(z, t);
      _mm512_mask_storeu_ps(q + i, k, t);
    }
  }
}

static AVX512 void z_bwd_sums(const float *dy, const float *y, const float *x, long stride, int per, long L, int B,
                              const float *mean, int relu, double *sdy, double *sdyx) {
  const __m512 z = _mm512_setzero_ps(), mu = z_lanes(mean, B);
  const long full = L / 16 * 16;
  for (int b = 0; b < B; b++) sdy[b] = sdyx[b] = 0;
  for (int n = 0; n < per; n++) {
    const float *pd = dy + n * stride, *px = x + n * stride, *py = relu ? y + n * stride : NULL;
    __m512 a0 = z, a1 = z, c0 = z, c1 = z;
    long i = 0;
    for (; i + 32 <= full; i += 32) {
      __m512 d0 = _mm512_loadu_ps(pd + i), d1 = _mm512_loadu_ps(pd + i + 16);
      if (relu) {
        d0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_loadu_ps(py + i), z, _CMP_GT_OQ), d0);
        d1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_loadu_ps(py + i + 16), z, _CMP_GT_OQ), d1);
      }
      a0 = _mm512_add_ps(a0, d0);
      a1 = _mm512_add_ps(a1, d1);
      c0 = _mm512_fmadd_ps(d0, _mm512_sub_ps(_mm512_loadu_ps(px + i), mu), c0);
      c1 = _mm512_fmadd_ps(d1, _mm512_sub_ps(_mm512_loadu_ps(px + i + 16), mu), c1);
    }
    for (; i < L; i += 16) {
      const __mmask16 k = i < full ? 0xFFFF : Z_TAIL(L);
      __m512 d = _mm512_maskz_loadu_ps(k, pd + i);
      if (relu) d = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(k, py + i), z, _CMP_GT_OQ), d);
      a0 = _mm512_add_ps(a0, d);
      c0 = _mm512_fmadd_ps(d, _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, px + i), mu), c0);
    }
    z_fold(sdy, _mm512_add_ps(a0, a1), B);
    z_fold(sdyx, _mm512_add_ps(c0, c1), B);
  }
}

static AVX512 void z_bwd_apply(float *dx, const float *dy, const float *y, const float *x, long stride, int per,
                               long L, int B, const float *ka, const float *kb, const float *kc, int relu) {
  const __m512 z = _mm512_setzero_ps(), va = z_lanes(ka, B), vb = z_lanes(kb, B), vc = z_lanes(kc, B);
  const long full = L / 16 * 16;
  for (int n = 0; n < per; n++) {
    const float *pd = dy + n * stride, *px = x + n * stride, *py = relu ? y + n * stride : NULL;
    float *q = dx + n * stride;
    for (long i = 0; i < L; i += 16) {
      const __mmask16 k = i < full ? 0xFFFF : Z_TAIL(L);
      __m512 d = _mm512_maskz_loadu_ps(k, pd + i);
      if (relu) d = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(k, py + i), z, _CMP_GT_OQ), d);
      const __m512 t = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k, px + i), vc);
      _mm512_mask_storeu_ps(q + i, k, _mm512_fmadd_ps(va, d, t));
    }
  }
}
#endif

/* Which kernels a blocked layout's tasks run: the widest the CPU has, or SYNCO_BN_ISA's choice (avx512, avx2 or c:
 * the tests run each where the CPU has it; a choice the CPU lacks falls back). Read by synco_cpu_bn_plan, which runs
 * before any kernel and on one thread. */
enum { ISA_C, ISA_AVX2, ISA_AVX512 };
static int g_isa = -1;
static int pick_isa(void) {
  int best = ISA_C;
#ifdef SYNCO_BN_AVX2
  const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  best = avx2 && __builtin_cpu_supports("avx512f") ? ISA_AVX512 : avx2 ? ISA_AVX2 : ISA_C;
#endif
  const char *e = getenv("SYNCO_BN_ISA");
  if (e && !strcmp(e, "c")) return ISA_C;
  if (e && !strcmp(e, "avx2") && best >= ISA_AVX2) return ISA_AVX2;
  return best;
}
static int blocked_isa(int B) { return B % 8 == 0 ? g_isa : ISA_C; }

struct synco_cpu_bn {
  int B;          /* channel block of the layout (1 = plain) */
  int per;        /* images per group */
  double *acc;    /* [groups * c * 2]: per-group (mean, var) of the forward, (dgamma, dbeta) of the backward */
};

void synco_cpu_bn_release(synco_cpu_bn *k) {
  if (!k) return;
  free(k->acc);
  free(k);
}

static size_t acc_bytes(const synco_bn_op *op) { return (size_t)op->groups * op->c * 2 * sizeof(double); }

size_t synco_cpu_bn_plan_bytes(const synco_bn_op *op) { return sizeof(synco_cpu_bn) + acc_bytes(op); }

synco_status synco_cpu_bn_plan(synco_backend *be, const synco_bn_op *op, synco_cpu_bn **out) {
  *out = NULL;
  const synco_layout l = synco_dnnl_act_layout(be, op->c, op->h, op->w, op->dtype);
  synco_cpu_bn *k = synco_calloc(1, sizeof *k);
  if (!k) return SYNCO_ERR_NOMEM;
  k->B = synco_dnnl_layout_block(l);
  g_isa = pick_isa();
  k->per = op->n / op->groups;
  k->acc = synco_malloc(acc_bytes(op));
  if (!k->acc) {
    synco_cpu_bn_release(k);
    return SYNCO_ERR_NOMEM;
  }
  *out = k;
  return SYNCO_OK;
}

/* ---- forward ------------------------------------------------------------------------------------- */

/* Mean and biased variance of the lanes of one task, B lanes interleaved, per images of HW pixels. */
static inline __attribute__((always_inline)) void task_stats(const float *x, long img_stride, int per, long HW,
                                                             int B, double *mean, double *var) {
  double s[16] = {0}, v[16] = {0};
  const double m = (double)per * HW;
  for (int n = 0; n < per; n++) {
    const float *p = x + n * img_stride;
    float a[16] = {0};
    if (B == 1) {
      float t = 0.f;
#pragma omp simd reduction(+ : t)
      for (long i = 0; i < HW; i++) t += p[i];
      a[0] = t;
    } else {
      for (long i = 0; i < HW; i++)
        for (int b = 0; b < B; b++) a[b] += p[i * B + b];
    }
    for (int b = 0; b < B; b++) s[b] += a[b];
  }
  float mf[16];
  for (int b = 0; b < B; b++) {
    mean[b] = s[b] / m;
    mf[b] = (float)mean[b];
  }
  for (int n = 0; n < per; n++) {
    const float *p = x + n * img_stride;
    float a[16] = {0};
    if (B == 1) {
      float t = 0.f;
      const float m0 = mf[0];
#pragma omp simd reduction(+ : t)
      for (long i = 0; i < HW; i++) t += (p[i] - m0) * (p[i] - m0);
      a[0] = t;
    } else {
      for (long i = 0; i < HW; i++)
        for (int b = 0; b < B; b++) {
          const float d = p[i * B + b] - mf[b];
          a[b] += d * d;
        }
    }
    for (int b = 0; b < B; b++) v[b] += a[b];
  }
  for (int b = 0; b < B; b++) var[b] = v[b] / m;
}

/* y = x * scale + shift (then ReLU) over one task's images. */
static inline __attribute__((always_inline)) void task_affine(float *y, const float *x, const float *res,
                                                              long img_stride, int per, long HW, int B,
                                                              const float *scale, const float *shift, int relu) {
  for (int n = 0; n < per; n++) {
    const float *p = x + n * img_stride;
    float *q = y + n * img_stride;
    if (res) { /* the residual block's end: relu(bn + shortcut), the values add then relu_fwd give */
      const float *r = res + n * img_stride;
      for (long i = 0; i < HW * B; i++) {
        const float t = p[i] * scale[i % B] + shift[i % B];
        const float u = t + r[i];
        q[i] = u < 0.f ? 0.f : u;
      }
      continue;
    }
    if (B == 1) {
      const float sc = scale[0], sh = shift[0];
      if (relu) {
#pragma omp simd
        for (long i = 0; i < HW; i++) {
          const float t = p[i] * sc + sh;
          q[i] = t < 0.f ? 0.f : t; /* NaN stays NaN */
        }
      } else {
#pragma omp simd
        for (long i = 0; i < HW; i++) q[i] = p[i] * sc + sh;
      }
      continue;
    }
    if (relu) {
      for (long i = 0; i < HW; i++)
        for (int b = 0; b < B; b++) {
          const float t = p[i * B + b] * scale[b] + shift[b];
          q[i * B + b] = t < 0.f ? 0.f : t;
        }
    } else {
      for (long i = 0; i < HW; i++)
        for (int b = 0; b < B; b++) q[i * B + b] = p[i * B + b] * scale[b] + shift[b];
    }
  }
}

static void fwd_train_task(const synco_bn_op *op, int B, int per, int g, int cb, double *acc, float *y,
                           const float *x, const float *res, float *save_mean, float *save_invstd, const float *gamma,
                           const float *beta) {
  const long HW = (long)op->h * op->w, CB = op->c / B;
  const float *rs = res ? SLICE(res, (long)g * per, cb) : NULL;
  double mean[16], var[16];
  float scale[16], shift[16];
  const float *xs = SLICE(x, (long)g * per, cb);
  float *ys = SLICE(y, (long)g * per, cb);
  const long stride = CB * HW * B;
  const int isa = blocked_isa(B);
#ifdef SYNCO_BN_AVX2
  if (isa == ISA_AVX512) z_stats(xs, stride, per, HW * B, B, mean, var);
  else if (isa == ISA_AVX2) avx_stats(xs, stride, per, HW, B / 8, mean, var);
  else
#endif
  switch (B) { /* constant B lets the compiler unroll and vectorize the lane loops */
    case 8: task_stats(xs, stride, per, HW, 8, mean, var); break;
    case 16: task_stats(xs, stride, per, HW, 16, mean, var); break;
    default: task_stats(xs, stride, per, HW, 1, mean, var); break;
  }
  for (int b = 0; b < B; b++) {
    const int c = cb * B + b;
    const double is = 1.0 / sqrt(var[b] + op->eps);
    save_mean[(size_t)g * op->c + c] = (float)mean[b];
    save_invstd[(size_t)g * op->c + c] = (float)is;
    acc[((size_t)g * op->c + c) * 2] = mean[b];
    acc[((size_t)g * op->c + c) * 2 + 1] = var[b];
    scale[b] = (float)(gamma[c] * is);
    shift[b] = (float)(beta[c] - mean[b] * gamma[c] * is);
  }
#ifdef SYNCO_BN_AVX2
  if (isa == ISA_AVX512) z_affine(ys, xs, rs, stride, per, HW * B, B, scale, shift, op->relu);
  else if (isa == ISA_AVX2) avx_affine(ys, xs, rs, stride, per, HW, B / 8, scale, shift, op->relu);
  else
#endif
  switch (B) {
    case 8: task_affine(ys, xs, rs, stride, per, HW, 8, scale, shift, op->relu); break;
    case 16: task_affine(ys, xs, rs, stride, per, HW, 16, scale, shift, op->relu); break;
    default: task_affine(ys, xs, rs, stride, per, HW, 1, scale, shift, op->relu); break;
  }
}

synco_status synco_cpu_bn_fwd_train(synco_cpu_bn *k, const synco_bn_op *op, synco_tensor *y, float *save_mean,
                                    float *save_invstd, float *running_mean, float *running_var,
                                    const synco_tensor *x, const float *gamma, const float *beta,
                                    const synco_tensor *res) {
  const int G = op->groups, C = op->c, B = k->B, per = k->per, CB = C / B;
  const float *px = x->data, *pr = res ? res->data : NULL;
  float *py = y->data;
  synco_affinity a;
  synco_affinity_init(&a, (long)G * CB, 1);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, t)
    fwd_train_task(op, B, per, (int)(t / CB), (int)(t % CB), k->acc, py, px, pr, save_mean, save_invstd, gamma,
                   beta);
  const double m = (double)per * op->h * op->w;
  const double unbias = m > 1 ? m / (m - 1) : 1.0;
  const float mom = op->momentum;
  for (int i = 0; i < C; i++) {
    double mean = 0, var = 0;
    for (int g = 0; g < G; g++) {
      const size_t j = ((size_t)g * C + i) * 2;
      mean += k->acc[j];
      var += k->acc[j + 1] * unbias;
    }
    running_mean[i] = (1.f - mom) * running_mean[i] + mom * (float)(mean / G);
    running_var[i] = (1.f - mom) * running_var[i] + mom * (float)(var / G);
  }
  return SYNCO_OK;
}

synco_status synco_cpu_bn_fwd_eval(synco_cpu_bn *k, const synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                   const float *gamma, const float *beta, const float *running_mean,
                                   const float *running_var) {
  const int B = k->B, CB = op->c / B;
  const long HW = (long)op->h * op->w, N = op->n;
  const float *px = x->data;
  float *py = y->data;
  synco_affinity a;
  synco_affinity_init(&a, N * CB, 1);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, t) {
    const long n = t / CB, cb = t % CB;
    float scale[16], shift[16];
    for (int b = 0; b < B; b++) {
      const int c = (int)cb * B + b;
      const float is = 1.0f / sqrtf(running_var[c] + op->eps);
      scale[b] = gamma[c] * is;
      shift[b] = beta[c] - running_mean[c] * gamma[c] * is;
    }
    const float *xs = SLICE(px, n, cb);
    float *ys = SLICE(py, n, cb);
#ifdef SYNCO_BN_AVX2
    const int isa = blocked_isa(B);
    if (isa == ISA_AVX512) z_affine(ys, xs, NULL, 0, 1, HW * B, B, scale, shift, op->relu);
    else if (isa == ISA_AVX2) avx_affine(ys, xs, NULL, 0, 1, HW, B / 8, scale, shift, op->relu);
    else
#endif
    switch (B) {
      case 8: task_affine(ys, xs, NULL, 0, 1, HW, 8, scale, shift, op->relu); break;
      case 16: task_affine(ys, xs, NULL, 0, 1, HW, 16, scale, shift, op->relu); break;
      default: task_affine(ys, xs, NULL, 0, 1, HW, 1, scale, shift, op->relu); break;
    }
  }
  return SYNCO_OK;
}

/* ---- backward ------------------------------------------------------------------------------------ */

/* Σ dy' and Σ dy'·(x − mean) per lane, dy' = dy masked by y > 0 when relu. */
static inline __attribute__((always_inline)) void task_bwd_sums(const float *dy, const float *y, const float *x,
                                                                long img_stride, int per, long HW, int B,
                                                                const float *mean, int relu, double *sdy,
                                                                double *sdyx) {
  for (int b = 0; b < B; b++) sdy[b] = sdyx[b] = 0;
  for (int n = 0; n < per; n++) {
    const float *pd = dy + n * img_stride, *px = x + n * img_stride, *py = relu ? y + n * img_stride : NULL;
    float a[16] = {0}, c[16] = {0};
    if (B == 1) {
      float t = 0.f, u = 0.f;
      const float m0 = mean[0];
      if (relu) {
#pragma omp simd reduction(+ : t, u)
        for (long i = 0; i < HW; i++) {
          const float d = synco_relu_mask(py[i], pd[i]);
          t += d;
          u += d * (px[i] - m0);
        }
      } else {
#pragma omp simd reduction(+ : t, u)
        for (long i = 0; i < HW; i++) {
          t += pd[i];
          u += pd[i] * (px[i] - m0);
        }
      }
      a[0] = t;
      c[0] = u;
    } else if (relu) {
      for (long i = 0; i < HW; i++)
        for (int b = 0; b < B; b++) {
          const float d = synco_relu_mask(py[i * B + b], pd[i * B + b]);
          a[b] += d;
          c[b] += d * (px[i * B + b] - mean[b]);
        }
    } else {
      for (long i = 0; i < HW; i++)
        for (int b = 0; b < B; b++) {
          const float d = pd[i * B + b];
          a[b] += d;
          c[b] += d * (px[i * B + b] - mean[b]);
        }
    }
    for (int b = 0; b < B; b++) {
      sdy[b] += a[b];
      sdyx[b] += c[b];
    }
  }
}

/* dx = ka·dy' + kb·x + kc per lane. */
static inline __attribute__((always_inline)) void task_bwd_apply(float *dx, const float *dy, const float *y,
                                                                 const float *x, long img_stride, int per, long HW,
                                                                 int B, const float *ka, const float *kb,
                                                                 const float *kc, int relu) {
  for (int n = 0; n < per; n++) {
    const float *pd = dy + n * img_stride, *px = x + n * img_stride, *py = relu ? y + n * img_stride : NULL;
    float *q = dx + n * img_stride;
    if (B == 1) {
      const float a = ka[0], bb = kb[0], cc = kc[0];
      if (relu) {
#pragma omp simd
        for (long i = 0; i < HW; i++) q[i] = a * synco_relu_mask(py[i], pd[i]) + bb * px[i] + cc;
      } else {
#pragma omp simd
        for (long i = 0; i < HW; i++) q[i] = a * pd[i] + bb * px[i] + cc;
      }
    } else if (relu) {
      for (long i = 0; i < HW; i++)
        for (int b = 0; b < B; b++) {
          const float d = synco_relu_mask(py[i * B + b], pd[i * B + b]);
          q[i * B + b] = ka[b] * d + kb[b] * px[i * B + b] + kc[b];
        }
    } else {
      for (long i = 0; i < HW; i++)
        for (int b = 0; b < B; b++) q[i * B + b] = ka[b] * pd[i * B + b] + kb[b] * px[i * B + b] + kc[b];
    }
  }
}

static void bwd_task(const synco_bn_op *op, int B, int per, int g, int cb, double *acc, float *dx, const float *dy,
                     const float *y, const float *x, const float *gamma, const float *save_mean,
                     const float *save_invstd) {
  const long HW = (long)op->h * op->w, CB = op->c / B, stride = CB * HW * B;
  const long off = ((long)g * per * CB + cb) * HW * B;
  const int relu = op->relu;
  float mean[16] = {0}, ka[16], kb[16], kc[16];
  double sdy[16], sdyx[16];
  for (int b = 0; b < B; b++) mean[b] = save_mean[(size_t)g * op->c + cb * B + b];
  const float *yy = relu ? y + off : NULL;
  const int isa = blocked_isa(B);
#ifdef SYNCO_BN_AVX2
  if (isa == ISA_AVX512) z_bwd_sums(dy + off, yy, x + off, stride, per, HW * B, B, mean, relu, sdy, sdyx);
  else if (isa == ISA_AVX2) avx_bwd_sums(dy + off, yy, x + off, stride, per, HW, B / 8, mean, relu, sdy, sdyx);
  else
#endif
  switch (B) {
    case 8: task_bwd_sums(dy + off, yy, x + off, stride, per, HW, 8, mean, relu, sdy, sdyx); break;
    case 16: task_bwd_sums(dy + off, yy, x + off, stride, per, HW, 16, mean, relu, sdy, sdyx); break;
    default: task_bwd_sums(dy + off, yy, x + off, stride, per, HW, 1, mean, relu, sdy, sdyx); break;
  }
  const double m = (double)per * HW;
  for (int b = 0; b < B; b++) {
    const int c = cb * B + b;
    const double is = save_invstd[(size_t)g * op->c + c], gm = gamma[c];
    /* dx = γ·is·(dy' − Σdy'/m − (x − μ)·is²·Σdy'(x − μ)/m) */
    const double a = gm * is, bb = -gm * is * is * is * sdyx[b] / m, cc = -gm * is * sdy[b] / m - bb * mean[b];
    ka[b] = (float)a;
    kb[b] = (float)bb;
    kc[b] = (float)cc;
    acc[((size_t)g * op->c + c) * 2] = sdyx[b] * is; /* dgamma */
    acc[((size_t)g * op->c + c) * 2 + 1] = sdy[b];   /* dbeta */
  }
#ifdef SYNCO_BN_AVX2
  if (isa == ISA_AVX512) z_bwd_apply(dx + off, dy + off, yy, x + off, stride, per, HW * B, B, ka, kb, kc, relu);
  else if (isa == ISA_AVX2) avx_bwd_apply(dx + off, dy + off, yy, x + off, stride, per, HW, B / 8, ka, kb, kc, relu);
  else
#endif
  switch (B) {
    case 8: task_bwd_apply(dx + off, dy + off, yy, x + off, stride, per, HW, 8, ka, kb, kc, relu); break;
    case 16: task_bwd_apply(dx + off, dy + off, yy, x + off, stride, per, HW, 16, ka, kb, kc, relu); break;
    default: task_bwd_apply(dx + off, dy + off, yy, x + off, stride, per, HW, 1, ka, kb, kc, relu); break;
  }
}

synco_status synco_cpu_bn_bwd(synco_cpu_bn *k, const synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                              const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                              const float *gamma, const float *save_mean, const float *save_invstd) {
  const int G = op->groups, C = op->c, B = k->B, per = k->per, CB = C / B;
  const float *pdy = dy->data, *px = x->data, *py = op->relu ? y->data : NULL;
  float *pdx = dx->data;
  double *acc = k->acc;
  synco_affinity a;
  synco_affinity_init(&a, (long)G * CB, 1);
#pragma omp parallel num_threads(a.parts)
  SYNCO_AFFINITY_FOR(a, t)
    bwd_task(op, B, per, (int)(t / CB), (int)(t % CB), acc, pdx, pdy, py, px, gamma, save_mean, save_invstd);
  for (int g = 0; g < G; g++)
    for (int c = 0; c < C; c++) {
      dgamma[c] += (float)acc[((size_t)g * C + c) * 2];
      dbeta[c] += (float)acc[((size_t)g * C + c) * 2 + 1];
    }
  return SYNCO_OK;
}
