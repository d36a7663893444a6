/* libFuzzer target: PNG bytes through synco_image_decode (libpng), then the augmentations and the ImageFolder
 * reader a training run puts them through (image_pipeline.inc). The signature is prepended when missing so
 * that every input reaches libpng. Seeds: corpus/fuzz_png (8- and 16-bit RGB, RGBA, gray 1- and 8-bit, gray +
 * alpha, 8- and 4-bit palettes with tRNS, Adam7-interlaced, corrupt). */
#include "image_pipeline.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && !memcmp(data, sig, 8)) {
    run_image_pipeline(data, size, "png");
    return 0;
  }
  uint8_t *buf = (uint8_t *)malloc(size + 8);
  if (!buf) return 0;
  memcpy(buf, sig, 8);
  if (size) memcpy(buf + 8, data, size);
  run_image_pipeline(buf, size + 8, "png");
  free(buf);
  return 0;
}
