/* A user of the installed library: loads an encoder exported by `synco export` (or a `synco pretrain`
 * checkpoint) through the public API of <synco.h> and prints the feature vector of each image named on the
 * command line, one line per image: the path, then the features. Build it with the Makefile beside it, which
 * asks pkg-config where synco is installed. */
#include <stdio.h>
#include <stdlib.h>

#include <synco.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s ENCODER.safetensors IMAGE...\n", argv[0]);
    return 2;
  }
  synco_model *m = NULL;
  if (synco_model_load(&m, argv[1], 1) != SYNCO_OK) {
    fprintf(stderr, "encode: %s\n", synco_last_error());
    return 1;
  }
  const int d = synco_model_feature_dim(m);
  float *f = malloc((size_t)d * sizeof *f);
  if (!f) {
    synco_model_free(m);
    return 1;
  }
  printf("# synco %s: %s, %d features per image, input %dx%d\n", synco_version(), argv[1], d,
         synco_model_image_size(m), synco_model_image_size(m));
  int rc = 0;
  for (int i = 2; i < argc; i++) {
    const synco_status s = synco_model_encode_file(m, argv[i], f);
    if (s != SYNCO_OK) {
      fprintf(stderr, "encode: %s (%s)\n", synco_last_error(), synco_strerror(s));
      rc = 1;
      continue;
    }
    printf("%s", argv[i]);
    for (int j = 0; j < d; j++) printf(" %.9g", f[j]);
    printf("\n");
  }
  free(f);
  synco_model_free(m);
  return rc;
}
