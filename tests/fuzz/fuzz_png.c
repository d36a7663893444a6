/* libFuzzer target: the PNG path of synco_image_decode (libpng) on arbitrary bytes; the signature is
 * prepended so that every input reaches libpng. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  static synco_image img;
  uint8_t *buf = (uint8_t *)malloc(size + 8);
  if (!buf) return 0;
  memcpy(buf, sig, 8);
  if (size) memcpy(buf + 8, data, size);
  /* inputs that already start with the signature are used as they are */
  if (size >= 8 && !memcmp(data, sig, 8)) synco_image_decode(&img, data, size, "fuzz.png");
  else synco_image_decode(&img, buf, size + 8, "fuzz.png");
  free(buf);
  return 0;
}
