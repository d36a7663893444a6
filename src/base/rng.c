/* The host-only draws of the counter-based generator: normals through libm (parameter and queue
 * initialization) and shuffles. The generator itself is kernels/philox_kernel.h. */
#include "base/rng.h"

#include <math.h>

float synco_rng_normal(synco_rng *r) {
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  double u1 = synco_rng_uniform_d(r), u2 = synco_rng_uniform_d(r);
  if (u1 < 1e-300) u1 = 1e-300;
  const double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
  r->spare = (float)(rad * sin(th));
  r->has_spare = 1;
  return (float)(rad * cos(th));
}

void synco_rng_shuffle(synco_rng *r, uint32_t *perm, uint32_t n) {
  for (uint32_t i = n; i > 1; i--) {
    const uint32_t j = synco_rng_below(r, i);
    const uint32_t t = perm[i - 1];
    perm[i - 1] = perm[j];
    perm[j] = t;
  }
}
