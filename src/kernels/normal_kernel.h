/* Normal draws from random words, single-source (kernels/hd.h): the Box-Muller pair of type-4 noise, with the
 * polynomial log and square root it needs, so that every backend turns the same Philox words into the same
 * floats. */
#ifndef SYNCO_KERNELS_NORMAL_KERNEL_H
#define SYNCO_KERNELS_NORMAL_KERNEL_H

#include <stdint.h>
#include <string.h>

#include "kernels/hd.h"

/* Type-4 noise is B·n4·dim normals per step (a million with the defaults), too many for a scalar libm
 * Box-Muller in the step budget, so it is made here in float from two 24-bit uniforms per pair with
 * branch-free polynomials the compiler vectorizes: log (cephes logf, ~1 ulp) and sin/cos of 2π·u2 by quadrant
 * (Taylor to degree 11/12 on [0, π/2], error < 1e-7), and a Newton square root. */
SYNCO_HD static inline float synco_k_log01(float x) { /* x in (0, 1] */
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  int e = (int)(u >> 23) - 126;
  u = (u & 0x007FFFFFu) | 0x3F000000u; /* mantissa in [0.5, 1) */
  float m;
  memcpy(&m, &u, sizeof m);
  const int lo = m < 0.70710678f;
  e -= lo;
  m = m + (float)lo * m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y += -2.12194440e-4f * (float)e;
  y += -0.5f * z;
  return m + y + 0.693359375f * (float)e;
}

/* sqrt of x in [1e-8, 100] by Newton on 1/sqrt from the bit-trick estimate (three steps: float accuracy).
 * libm's sqrtf would keep the loop scalar: it may set errno, and the build does not pass -fno-math-errno. */
SYNCO_HD static inline float synco_k_sqrt(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u = 0x5F3759DFu - (u >> 1);
  float y;
  memcpy(&y, &u, sizeof y);
  const float hx = 0.5f * x;
  y = y * (1.5f - hx * y * y);
  y = y * (1.5f - hx * y * y);
  y = y * (1.5f - hx * y * y);
  return x * y;
}

/* One Box-Muller pair from two words: (r·cos θ, r·sin θ), θ = 2π·u2 built from its quadrant and a reduced
 * angle in [0, π/2). */
SYNCO_HD static inline void synco_k_box_muller(uint32_t w1, uint32_t w2, float sigma, float *c_out, float *s_out) {
  const float u1 = ((float)(w1 >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0, 1): log finite */
  const uint32_t b = w2 >> 8;
  const uint32_t quad = b >> 22;                                     /* top 2 of 24 bits */
  const float th = (float)(b & 0x3FFFFFu) * (1.5707963267948966f / 4194304.0f);
  const float t2 = th * th;
  const float sn = th * (1.f + t2 * (-1.f / 6 + t2 * (1.f / 120 + t2 * (-1.f / 5040 + t2 * (1.f / 362880 +
                                                                                      t2 * (-1.f / 39916800))))));
  const float cs = 1.f + t2 * (-0.5f + t2 * (1.f / 24 + t2 * (-1.f / 720 + t2 * (1.f / 40320 + t2 * (-1.f / 3628800 +
                                                                                      t2 * (1.f / 479001600))))));
  /* quadrant by arithmetic, not branches: odd quadrants swap sin and cos; signs (+,+,−,−) and (+,−,−,+) */
  const float odd = (float)(quad & 1u);
  const float sw_s = sn + odd * (cs - sn), sw_c = cs + odd * (sn - cs);
  const float sgn_s = 1.f - 2.f * (float)(quad >> 1);
  const float sgn_c = 1.f - 2.f * (float)(((quad + 1u) >> 1) & 1u);
  const float rad = sigma * synco_k_sqrt(-2.0f * synco_k_log01(u1));
  *c_out = rad * sgn_c * sw_c;
  *s_out = rad * sgn_s * sw_s;
}

#endif
