/* libFuzzer target: JPEG bytes through synco_image_decode (TurboJPEG), then the augmentations and the
 * ImageFolder reader a training run puts them through (image_pipeline.inc). Seeds: corpus/fuzz_jpeg (baseline,
 * progressive, 4:2:0 / 4:2:2 / 4:1:1, grayscale, CMYK, truncated, a CIFAR image from data/). */
#include "image_pipeline.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  run_image_pipeline(data, size, "jpg");
  return 0;
}
