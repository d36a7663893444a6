/* Augmentations with the semantics of the MoCo code (torchvision 0.14 transforms on PIL images):
 * RandomResizedCrop samples its box exactly as torchvision does and resamples with PIL's BILINEAR filter,
 * reproduced bit for bit (fixed-point coefficients, horizontal pass then vertical, uint8 rounding after
 * each; the filter's support grows with the shrink factor, which is PIL's antialiasing). The result is
 * converted to float in [0,1] (ToTensor) and the colour operations follow torchvision's functional tensor
 * ops on floats (brightness, contrast, saturation blends and the RGB->HSV->RGB hue shift, clamped to [0,1]);
 * RandomGrayscale uses ITU-R 601-2 luma (0.299, 0.587, 0.114) as PIL's convert("L") does; GaussianBlur is
 * PIL's ImageFilter.GaussianBlur(radius=sigma): three passes per axis of PIL's extended box filter
 * (Gwosdek et al. 2011) in PIL's 24-bit fixed point on the image rounded to uint8, bit-exact with PIL. The flip is applied when writing the normalized output, since every
 * other step commutes with it. Nothing allocates: all buffers come from the caller's scratch. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "base/status.h"
#include "data/internal.h"

#define PREC 22 /* PIL's PRECISION_BITS for 8-bit images: 32 - 8 - 2 */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static int ksize_for(int in, int out) {
  const double scale = (double)in / out;
  const double support = scale < 1.0 ? 1.0 : scale;
  return (int)ceil(support) * 2 + 1;
}

size_t synco_aug_resample_scratch(int cw, int ch, int out_w, int out_h, int win_w, int win_h) {
  const int kh = ksize_for(cw, out_w), kv = ksize_for(ch, out_h);
  const int kmax = kh > kv ? kh : kv;
  return align64((size_t)win_w * kh * 4) + align64((size_t)win_w * 2 * 4) + align64((size_t)win_h * kv * 4) +
         align64((size_t)win_h * 2 * 4) + align64((size_t)kmax * 8) + align64((size_t)ch * win_w * 3) + 64;
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc for outputs o0..o0+n-1 of a resize in_size -> out_size. */
static void coeffs(int in_size, int out_size, int o0, int n, int ksize, int *bounds, int32_t *kk, double *w) {
  const double scale = (double)in_size / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filterscale; /* bilinear support 1.0 */
  const double ss = 1.0 / filterscale;
  for (int k = 0; k < n; k++) {
    const double center = (o0 + k + 0.5) * scale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    if (xmax > ksize) xmax = ksize;
    double ww = 0.0;
    for (int x = 0; x < xmax; x++) {
      double t = (x + xmin - center + 0.5) * ss;
      if (t < 0.0) t = -t;
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    int32_t *kr = kk + (size_t)k * ksize;
    for (int x = 0; x < xmax; x++) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      kr[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC)) : (int32_t)(0.5 + v * (1 << PREC));
    }
    for (int x = xmax; x < ksize; x++) kr[x] = 0;
    bounds[2 * k] = xmin;
    bounds[2 * k + 1] = xmax;
  }
}

static inline uint8_t clip8(int32_t v) {
  if (v >= (1 << PREC << 8)) return 255;
  if (v <= 0) return 0;
  return (uint8_t)(v >> PREC);
}

void synco_aug_resample(uint8_t *dst, const uint8_t *src, int w, int cx, int cy, int cw, int ch, int out_w,
                        int out_h, int ox, int oy, int win_w, int win_h, void *scratch) {
  const int kh = ksize_for(cw, out_w), kv = ksize_for(ch, out_h);
  const int kmax = kh > kv ? kh : kv;
  uint8_t *p = (uint8_t *)scratch;
  int32_t *kk_h = (int32_t *)p;
  p += align64((size_t)win_w * kh * 4);
  int *b_h = (int *)p;
  p += align64((size_t)win_w * 2 * 4);
  int32_t *kk_v = (int32_t *)p;
  p += align64((size_t)win_h * kv * 4);
  int *b_v = (int *)p;
  p += align64((size_t)win_h * 2 * 4);
  double *wtmp = (double *)p;
  p += align64((size_t)kmax * 8);
  uint8_t *tmp = p;
  coeffs(cw, out_w, ox, win_w, kh, b_h, kk_h, wtmp);
  coeffs(ch, out_h, oy, win_h, kv, b_v, kk_v, wtmp);
  const int y0 = b_v[0], y1 = b_v[2 * (win_h - 1)] + b_v[2 * (win_h - 1) + 1];
  /* horizontal pass over the source rows the vertical pass reads */
  for (int y = y0; y < y1; y++) {
    const uint8_t *row = src + ((size_t)(cy + y) * w + cx) * 3;
    uint8_t *o = tmp + (size_t)(y - y0) * win_w * 3;
    for (int k = 0; k < win_w; k++) {
      const int xmin = b_h[2 * k], xn = b_h[2 * k + 1];
      const int32_t *kr = kk_h + (size_t)k * kh;
      int32_t s0 = 1 << (PREC - 1), s1 = s0, s2 = s0;
      const uint8_t *q = row + (size_t)xmin * 3;
      for (int x = 0; x < xn; x++) {
        s0 += q[3 * x] * kr[x];
        s1 += q[3 * x + 1] * kr[x];
        s2 += q[3 * x + 2] * kr[x];
      }
      o[3 * k] = clip8(s0);
      o[3 * k + 1] = clip8(s1);
      o[3 * k + 2] = clip8(s2);
    }
  }
  /* vertical pass */
  const int rw = win_w * 3;
  for (int k = 0; k < win_h; k++) {
    const int ymin = b_v[2 * k] - y0, yn = b_v[2 * k + 1];
    const int32_t *kr = kk_v + (size_t)k * kv;
    uint8_t *o = dst + (size_t)k * rw;
    for (int x = 0; x < rw; x++) {
      int32_t s = 1 << (PREC - 1);
      for (int y = 0; y < yn; y++) s += tmp[(size_t)(ymin + y) * rw + x] * kr[y];
      o[x] = clip8(s);
    }
  }
}

/* ---- colour operations (torchvision.transforms.functional_tensor on float images) ---- */
static inline float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

void synco_aug_brightness(float *chw, size_t n, float f) {
  for (size_t i = 0; i < 3 * n; i++) chw[i] = clamp01(f * chw[i]);
}

/* torchvision's rgb_to_grayscale weights (0.2989, 0.587, 0.114), used by contrast and saturation. */
static inline float tv_gray(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

void synco_aug_contrast(float *chw, size_t n, float f) {
  const float *r = chw, *g = chw + n, *b = chw + 2 * n;
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += tv_gray(r[i], g[i], b[i]);
  const float mean = (float)(sum / (double)n);
  const float off = (1.0f - f) * mean;
  for (size_t i = 0; i < 3 * n; i++) chw[i] = clamp01(f * chw[i] + off);
}

void synco_aug_saturation(float *chw, size_t n, float f) {
  float *r = chw, *g = chw + n, *b = chw + 2 * n;
  const float fm = 1.0f - f;
  for (size_t i = 0; i < n; i++) {
    const float l = fm * tv_gray(r[i], g[i], b[i]);
    r[i] = clamp01(f * r[i] + l);
    g[i] = clamp01(f * g[i] + l);
    b[i] = clamp01(f * b[i] + l);
  }
}

void synco_aug_hue(float *chw, size_t n, float f) {
  float *R = chw, *G = chw + n, *B = chw + 2 * n;
  for (size_t i = 0; i < n; i++) {
    const float r = R[i], g = G[i], b = B[i];
    /* ternaries and floor instead of fmaxf/fminf/fmodf: the same values for finite inputs, but inlined */
    const float mx_gb = g > b ? g : b, mn_gb = g < b ? g : b;
    const float maxc = r > mx_gb ? r : mx_gb, minc = r < mn_gb ? r : mn_gb;
    const int eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.0f : maxc);
    const float crd = eqc ? 1.0f : cr;
    const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
    float h;
    if (maxc == r) h = bc - gc;
    else if (maxc == g) h = 2.0f + rc - bc;
    else h = 4.0f + gc - rc;
    h = h / 6.0f + 1.0f;
    h -= floorf(h);
    /* (h + f) % 1.0 with Python's sign convention: x - floor(x) */
    h += f;
    h -= floorf(h);
    const float v = maxc;
    const float hi = floorf(h * 6.0f);
    const float fr = h * 6.0f - hi;
    int ii = (int)hi % 6;
    if (ii < 0) ii += 6;
    const float p = clamp01(v * (1.0f - s)), q = clamp01(v * (1.0f - s * fr)), t = clamp01(v * (1.0f - s * (1.0f - fr)));
    switch (ii) {
      case 0: R[i] = v; G[i] = t; B[i] = p; break;
      case 1: R[i] = q; G[i] = v; B[i] = p; break;
      case 2: R[i] = p; G[i] = v; B[i] = t; break;
      case 3: R[i] = p; G[i] = q; B[i] = v; break;
      case 4: R[i] = t; G[i] = p; B[i] = v; break;
      default: R[i] = v; G[i] = p; B[i] = q; break;
    }
  }
}

void synco_aug_grayscale(float *chw, size_t n) {
  float *r = chw, *g = chw + n, *b = chw + 2 * n;
  for (size_t i = 0; i < n; i++) {
    const float l = 0.299f * r[i] + 0.587f * g[i] + 0.114f * b[i];
    r[i] = g[i] = b[i] = l;
  }
}

/* ---- GaussianBlur (PIL's BoxBlur.c) ---- */
float synco_aug_box_radius(float sigma, int passes) {
  /* _gaussian_blur_radius, with PIL's float intermediates */
  const float sigma2 = sigma * sigma / passes;
  const float L = (float)sqrt(12.0 * sigma2 + 1.0);
  const float l = (float)floor((L - 1.0) / 2.0);
  float a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
  a /= 6 * (sigma2 - (l + 1) * (l + 1));
  return l + a;
}

/* One pass of PIL's ImagingLineBoxBlur over `len` bytes with stride `step`, edges replicated, in PIL's
 * fixed point: out[x] = (ww*sum(in[x-r..x+r]) + fw*(in[x-r-1] + in[x+r+1]) + 2^23) >> 24.
 * line: len + 2r + 2 bytes. */
static void box_line(uint8_t *v, int len, size_t step, int r, uint32_t ww, uint32_t fw, uint8_t *line) {
  uint8_t *L = line + r + 1;
  for (int x = 0; x < len; x++) L[x] = v[x * step];
  for (int k = 1; k <= r + 1; k++) {
    L[-k] = L[0];
    L[len - 1 + k] = L[len - 1];
  }
  uint32_t acc = 0;
  for (int k = -r; k <= r; k++) acc += L[k];
  for (int x = 0; x < len; x++) {
    const uint32_t bulk = acc * ww + (uint32_t)(L[x - r - 1] + L[x + r + 1]) * fw;
    v[x * step] = (uint8_t)((bulk + (1u << 23)) >> 24);
    acc += L[x + r + 1];
    acc -= L[x - r];
  }
}

/* The MoCo pipeline blurs a PIL (uint8) image, so the float image is rounded to uint8 first and PIL's
 * integer passes are reproduced exactly. */
void synco_aug_blur(float *chw, int w, int h, float sigma, uint8_t *tmp) {
  const float fr = synco_aug_box_radius(sigma, 3);
  const int r = (int)fr;
  /* PIL's 24-bit integer weights of the box and of its fractional ends */
  const uint32_t ww = (uint32_t)((float)(1 << 24) / (fr * 2 + 1));
  const uint32_t fw = ((1u << 24) - (uint32_t)(r * 2 + 1) * ww) / 2;
  const size_t n = (size_t)w * h;
  uint8_t *pl = tmp, *line = tmp + n;
  for (int c = 0; c < 3; c++) {
    float *f = chw + c * n;
    for (size_t i = 0; i < n; i++) pl[i] = (uint8_t)lrintf(f[i] * 255.0f);
    for (int pass = 0; pass < 3; pass++)
      for (int y = 0; y < h; y++) box_line(pl + (size_t)y * w, w, 1, r, ww, fw, line);
    for (int pass = 0; pass < 3; pass++)
      for (int x = 0; x < w; x++) box_line(pl + x, h, (size_t)w, r, ww, fw, line);
    for (size_t i = 0; i < n; i++) f[i] = (float)pl[i] / 255.0f;
  }
}

/* ---- sampling ---- */
void synco_aug_sample_crop(int w, int h, float scale_lo, float scale_hi, synco_rng *r, int *x, int *y, int *cw,
                           int *ch) {
  const double area = (double)w * h;
  const float lr0 = logf(3.0f / 4.0f), lr1 = logf(4.0f / 3.0f);
  for (int t = 0; t < 10; t++) {
    const double target = area * synco_rng_range(r, scale_lo, scale_hi);
    const double ar = expf(synco_rng_range(r, lr0, lr1));
    const int tw = (int)nearbyint(sqrt(target * ar)), th = (int)nearbyint(sqrt(target / ar));
    if (tw > 0 && tw <= w && th > 0 && th <= h) {
      *y = (int)synco_rng_below(r, (uint32_t)(h - th + 1));
      *x = (int)synco_rng_below(r, (uint32_t)(w - tw + 1));
      *cw = tw;
      *ch = th;
      return;
    }
  }
  const double in_ratio = (double)w / h;
  int fw, fh;
  if (in_ratio < 3.0 / 4.0) {
    fw = w;
    fh = (int)nearbyint(fw / (3.0 / 4.0));
  } else if (in_ratio > 4.0 / 3.0) {
    fh = h;
    fw = (int)nearbyint(fh * (4.0 / 3.0));
  } else {
    fw = w;
    fh = h;
  }
  *cw = fw;
  *ch = fh;
  *y = (h - fh) / 2;
  *x = (w - fw) / 2;
}

void synco_aug_sample(synco_aug_params *p, int w, int h, const synco_aug_config *cfg, synco_rng *r) {
  memset(p, 0, sizeof *p);
  p->brightness = p->contrast = p->saturation = 1.f;
  for (int k = 0; k < 4; k++) p->order[k] = k;
  if (cfg->kind == SYNCO_AUG_EVAL) return;
  synco_aug_sample_crop(w, h, cfg->kind == SYNCO_AUG_CROP_FLIP ? 0.08f : 0.2f, 1.0f, r, &p->crop_x, &p->crop_y,
                        &p->crop_w, &p->crop_h);
  if (cfg->kind == SYNCO_AUG_MOCO_V2 || cfg->kind == SYNCO_AUG_MOCO_V1) {
    const int v1 = cfg->kind == SYNCO_AUG_MOCO_V1;
    p->jitter = v1 ? 1 : synco_rng_uniform(r) < 0.8f;
    for (int k = 3; k > 0; k--) { /* randperm(4) */
      const int j = (int)synco_rng_below(r, (uint32_t)(k + 1));
      const int t = p->order[k];
      p->order[k] = p->order[j];
      p->order[j] = t;
    }
    p->brightness = synco_rng_range(r, 0.6f, 1.4f);
    p->contrast = synco_rng_range(r, 0.6f, 1.4f);
    p->saturation = synco_rng_range(r, 0.6f, 1.4f);
    p->hue = v1 ? synco_rng_range(r, -0.4f, 0.4f) : synco_rng_range(r, -0.1f, 0.1f);
    p->gray = synco_rng_uniform(r) < 0.2f;
    if (!v1 && cfg->blur) {
      p->blur = synco_rng_uniform(r) < 0.5f;
      p->sigma = synco_rng_range(r, 0.1f, 2.0f);
    }
  }
  p->flip = synco_rng_uniform(r) < 0.5f;
}

/* ---- apply ---- */
typedef struct {
  int S, out_w, out_h, ox, oy, cx, cy, cw, ch;
} geometry;

static geometry geom(int w, int h, const synco_aug_config *cfg, const synco_aug_params *p) {
  geometry g;
  g.S = cfg->size;
  g.cx = g.cy = g.ox = g.oy = 0;
  g.cw = w;
  g.ch = h;
  if (cfg->kind != SYNCO_AUG_EVAL) {
    g.cx = p->crop_x;
    g.cy = p->crop_y;
    g.cw = p->crop_w;
    g.ch = p->crop_h;
    g.out_w = g.out_h = g.S;
  } else if (w == g.S && h == g.S) {
    g.out_w = g.out_h = g.S;
  } else {
    /* Resize(int(S/0.875)) on the shorter side, then CenterCrop(S) */
    const int s = (int)(g.S / 0.875);
    if (w <= h) {
      g.out_w = s;
      g.out_h = (int)((double)s * h / w);
    } else {
      g.out_h = s;
      g.out_w = (int)((double)s * w / h);
    }
    /* a crop larger than the image would need padding; CenterCrop pads, we clamp instead */
    g.ox = g.out_w > g.S ? (int)nearbyint((g.out_w - g.S) / 2.0) : 0;
    g.oy = g.out_h > g.S ? (int)nearbyint((g.out_h - g.S) / 2.0) : 0;
  }
  return g;
}

static size_t scratch_for(const geometry *g) {
  const size_t S = (size_t)g->S;
  return align64(S * S * 3) + align64(S * S * 3 * 4) + align64((S * S + S + 64) * 4) +
         synco_aug_resample_scratch(g->cw, g->ch, g->out_w, g->out_h, g->S, g->S) + 64;
}

size_t synco_augment_scratch_bytes(int w, int h, const synco_aug_config *cfg) {
  /* the largest crop is the whole image; the eval geometry is fixed by the image size */
  synco_aug_params p;
  memset(&p, 0, sizeof p);
  p.crop_w = w;
  p.crop_h = h;
  geometry g = geom(w, h, cfg, &p);
  size_t s = scratch_for(&g);
  /* a crop narrower than the output is upsampled: its resample scratch never exceeds the full-image one
   * except through the row count, which is bounded by h */
  return s + align64((size_t)h * cfg->size * 3) + 256;
}

static float g_u8_to_f[256];
static pthread_once_t g_lut_once = PTHREAD_ONCE_INIT;
static void lut_init(void) {
  for (int i = 0; i < 256; i++) g_u8_to_f[i] = (float)i / 255.0f; /* ToTensor divides by 255 */
}

synco_status synco_aug_apply(float *out, const synco_image *img, const synco_aug_config *cfg,
                             const synco_aug_params *p, void *scratch) {
  pthread_once(&g_lut_once, lut_init);
  const geometry g = geom(img->w, img->h, cfg, p);
  if (g.S <= 0 || g.cw <= 0 || g.ch <= 0 || g.cx < 0 || g.cy < 0 || g.cx + g.cw > img->w || g.cy + g.ch > img->h)
    return synco_fail(SYNCO_ERR_ARG, "augment: bad crop %dx%d+%d+%d of a %dx%d image", g.cw, g.ch, g.cx, g.cy,
                      img->w, img->h);
  const int S = g.S;
  const size_t n = (size_t)S * S;
  uint8_t *sp = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
  uint8_t *u8 = sp;
  sp += align64(n * 3);
  float *pl = (float *)sp;
  sp += align64(n * 3 * 4);
  float *line = (float *)sp;
  sp += align64(((size_t)S * S + (size_t)S + 64) * 4);
  const int win = S;
  if (g.out_w < S || g.out_h < S) /* eval on a tiny image: the window cannot exceed the resized image */
    return synco_fail(SYNCO_ERR_ARG, "augment: image %dx%d too small for size %d", img->w, img->h, S);
  synco_aug_resample(u8, img->rgb, img->w, g.cx, g.cy, g.cw, g.ch, g.out_w, g.out_h, g.ox, g.oy, win, win, sp);
  for (size_t i = 0; i < n; i++) {
    pl[i] = g_u8_to_f[u8[3 * i]];
    pl[n + i] = g_u8_to_f[u8[3 * i + 1]];
    pl[2 * n + i] = g_u8_to_f[u8[3 * i + 2]];
  }
  const int v1 = cfg->kind == SYNCO_AUG_MOCO_V1;
  if (v1 && p->gray) synco_aug_grayscale(pl, n);
  if (p->jitter) {
    for (int k = 0; k < 4; k++) switch (p->order[k]) {
        case 0: synco_aug_brightness(pl, n, p->brightness); break;
        case 1: synco_aug_contrast(pl, n, p->contrast); break;
        case 2: synco_aug_saturation(pl, n, p->saturation); break;
        default: synco_aug_hue(pl, n, p->hue); break;
      }
  }
  if (!v1 && p->gray) synco_aug_grayscale(pl, n);
  if (p->blur) synco_aug_blur(pl, S, S, p->sigma, (uint8_t *)line);
  for (int c = 0; c < 3; c++) {
    const float m = cfg->mean[c], sd = cfg->std[c];
    const float *src = pl + c * n;
    float *dst = out + c * n;
    for (int y = 0; y < S; y++) {
      const float *s = src + (size_t)y * S;
      float *d = dst + (size_t)y * S;
      if (p->flip)
        for (int x = 0; x < S; x++) d[x] = (s[S - 1 - x] - m) / sd;
      else
        for (int x = 0; x < S; x++) d[x] = (s[x] - m) / sd;
    }
  }
  return SYNCO_OK;
}

synco_status synco_augment(float *out, const synco_image *img, const synco_aug_config *cfg, synco_rng *r,
                           void *scratch) {
  synco_aug_params p;
  synco_aug_sample(&p, img->w, img->h, cfg, r);
  return synco_aug_apply(out, img, cfg, &p, scratch);
}
