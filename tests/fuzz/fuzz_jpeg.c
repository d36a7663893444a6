/* libFuzzer target: the JPEG path of synco_image_decode (TurboJPEG) on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static synco_image img;
  synco_image_decode(&img, data, size, "fuzz.jpg");
  return 0;
}
