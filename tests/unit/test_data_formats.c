/* Dataset formats: JPEG/PNG decoding against PIL's convert("RGB") (tools/make_aug_fixtures.py), and tiny
 * CIFAR-10, CIFAR-100, STL-10 and idx (plain and gzip) files written here with known pixels and labels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/status.h"
#include "data/internal.h"
#include "data_fixtures.h"
#include "test_util.h"

static char tmp[128];

static void write_file(const char *name, const uint8_t *b, size_t n) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", tmp, name);
  FILE *f = fopen(p, "wb");
  if (f) {
    fwrite(b, 1, n, f);
    fclose(f);
  }
}

static uint8_t pix(int img, int c, int y, int x) { return (uint8_t)(img * 37 + c * 101 + y * 7 + x * 3); }

static void check_image(const synco_dataset *ds, size_t i, int img_id, int w, int h) {
  synco_image im = {0};
  CHECK_OK(synco_dataset_get(ds, i, &im));
  CHECK(im.w == w && im.h == h);
  int bad = 0;
  for (int y = 0; y < h && im.rgb; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) bad += im.rgb[3 * (y * w + x) + c] != pix(img_id, c, y, x);
  CHECK(bad == 0);
  synco_image_free(&im);
}

static void test_decode(void) {
  fx_file fx;
  if (!fx_open(&fx, "tests/fixtures/data/aug_fixtures.safetensors")) {
    CHECK(0);
    return;
  }
  static const char *const files[][2] = {{"img.jpg", "jpg_rgb"},     {"gray.jpg", "jpg_gray"}, {"rgb.png", "png_rgb"},
                                         {"gray.png", "png_gray"},   {"palette.png", "png_palette"},
                                         {"rgba.png", "png_rgba"}};
  synco_image im = {0};
  for (int k = 0; k < 6; k++) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/data/%s", files[k][0]);
    uint8_t *b;
    size_t n;
    CHECK_OK(synco_read_file(path, 0, &b, &n));
    CHECK_OK(synco_image_decode(&im, b, n, path));
    int sh[4] = {0, 0, 0, 0};
    const uint8_t *ref = (const uint8_t *)fx_get(&fx, files[k][1], sh);
    CHECK(im.h == sh[0] && im.w == sh[1]);
    int maxd = 0;
    for (size_t i = 0; ref && i < (size_t)im.w * im.h * 3; i++) {
      const int d = abs((int)im.rgb[i] - ref[i]);
      if (d > maxd) maxd = d;
    }
    /* same libjpeg settings and conversions as PIL: identical pixels */
    if (maxd) fprintf(stderr, "%s: max diff %d vs PIL\n", files[k][0], maxd);
    CHECK(maxd == 0);
    free(b);
  }
  synco_image_free(&im);
  fx_close(&fx);
}

static void test_cifar(void) {
  /* CIFAR-10: two batches of 3 and 2 records, and a test batch */
  for (int b = 1; b <= 2; b++) {
    const int n = b == 1 ? 3 : 2;
    uint8_t *buf = (uint8_t *)malloc((size_t)n * 3073);
    for (int r = 0; r < n; r++) {
      const int id = (b - 1) * 3 + r;
      buf[r * 3073] = (uint8_t)(id % 10);
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < 32; y++)
          for (int x = 0; x < 32; x++) buf[r * 3073 + 1 + c * 1024 + y * 32 + x] = pix(id, c, y, x);
    }
    char name[64];
    snprintf(name, sizeof name, "data_batch_%d.bin", b);
    write_file(name, buf, (size_t)n * 3073);
    if (b == 2) write_file("test_batch.bin", buf, 3073);
    free(buf);
  }
  synco_dataset *ds;
  synco_dataset_options opt = {0};
  CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
  CHECK(!strcmp(synco_dataset_format(ds), "cifar10"));
  CHECK(synco_dataset_size(ds) == 5);
  CHECK(synco_dataset_num_classes(ds) == 10);
  CHECK(!strcmp(synco_dataset_class_name(ds, 3), "cat"));
  for (int i = 0; i < 5; i++) {
    CHECK(synco_dataset_label(ds, (size_t)i) == i);
    check_image(ds, (size_t)i, i, 32, 32);
  }
  synco_dataset_free(ds);
  opt.split = "test";
  CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
  CHECK(synco_dataset_size(ds) == 1);
  check_image(ds, 0, 3, 32, 32);
  synco_dataset_free(ds);
  char p[256];
  snprintf(p, sizeof p, "%s/data_batch_1.bin", tmp);
  remove(p);
  snprintf(p, sizeof p, "%s/data_batch_2.bin", tmp);
  remove(p);
  snprintf(p, sizeof p, "%s/test_batch.bin", tmp);
  remove(p);
  /* CIFAR-100: coarse and fine labels */
  uint8_t *buf = (uint8_t *)calloc(2, 3074);
  buf[0] = 4;
  buf[1] = 77;
  buf[3074] = 19;
  buf[3075] = 99;
  write_file("train.bin", buf, 2 * 3074);
  free(buf);
  opt.split = NULL;
  CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
  CHECK(!strcmp(synco_dataset_format(ds), "cifar100"));
  CHECK(synco_dataset_num_classes(ds) == 100 && synco_dataset_label(ds, 0) == 77 && synco_dataset_label(ds, 1) == 99);
  synco_dataset_free(ds);
  opt.coarse_labels = 1;
  CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
  CHECK(synco_dataset_num_classes(ds) == 20 && synco_dataset_label(ds, 0) == 4 && synco_dataset_label(ds, 1) == 19);
  synco_dataset_free(ds);
  snprintf(p, sizeof p, "%s/train.bin", tmp);
  remove(p);
}

static void test_stl10(void) {
  const size_t rec = 3 * 96 * 96;
  uint8_t *x = (uint8_t *)malloc(2 * rec);
  for (int r = 0; r < 2; r++)
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < 96; y++)
        for (int xx = 0; xx < 96; xx++) x[r * rec + c * 9216 + xx * 96 + y] = pix(r, c, y, xx); /* column-major */
  const uint8_t y[2] = {1, 10};
  write_file("train_X.bin", x, 2 * rec);
  write_file("train_y.bin", y, 2);
  write_file("unlabeled_X.bin", x, rec);
  free(x);
  synco_dataset *ds;
  synco_dataset_options opt = {0};
  CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
  CHECK(!strcmp(synco_dataset_format(ds), "stl10") && synco_dataset_size(ds) == 2);
  CHECK(synco_dataset_label(ds, 0) == 0 && synco_dataset_label(ds, 1) == 9 && synco_dataset_num_labelled(ds) == 2);
  check_image(ds, 1, 1, 96, 96);
  synco_dataset_free(ds);
  opt.split = "train+unlabeled";
  CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
  CHECK(synco_dataset_size(ds) == 3 && synco_dataset_label(ds, 2) == -1);
  CHECK(synco_dataset_num_labelled(ds) == 2); /* the unlabeled part has none */
  check_image(ds, 2, 0, 96, 96);
  synco_dataset_free(ds);
  const char *names[] = {"train_X.bin", "train_y.bin", "unlabeled_X.bin"};
  for (int i = 0; i < 3; i++) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", tmp, names[i]);
    remove(p);
  }
}

static void test_idx(void) {
  const int n = 3, R = 5, C = 4;
  uint8_t img[16 + 3 * 5 * 4], lab[8 + 3];
  const uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 4};
  const uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, 3};
  memcpy(img, hdr, 16);
  memcpy(lab, lh, 8);
  for (int i = 0; i < n; i++) {
    lab[8 + i] = (uint8_t)(9 - i);
    for (int y = 0; y < R; y++)
      for (int x = 0; x < C; x++) img[16 + i * R * C + y * C + x] = (uint8_t)(i * 50 + y * C + x);
  }
  char p[256];
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", tmp);
  gzFile g = gzopen(p, "wb");
  gzwrite(g, img, sizeof img);
  gzclose(g);
  write_file("train-labels-idx1-ubyte", lab, sizeof lab);
  /* the labels file is looked up as train-labels-idx1-ubyte.gz beside a .gz images file: provide both */
  snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", tmp);
  g = gzopen(p, "wb");
  gzwrite(g, lab, sizeof lab);
  gzclose(g);
  synco_dataset *ds;
  synco_dataset_options opt = {0};
  CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
  if (ds) {
    CHECK(!strcmp(synco_dataset_format(ds), "idx") && synco_dataset_size(ds) == 3);
    CHECK(synco_dataset_label(ds, 0) == 9 && synco_dataset_label(ds, 2) == 7);
    synco_image im = {0};
    CHECK_OK(synco_dataset_get(ds, 2, &im));
    CHECK(im.w == C && im.h == R && im.rgb[3 * (2 * C + 1) + 2] == 100 + 2 * C + 1 &&
          im.rgb[3 * (2 * C + 1)] == im.rgb[3 * (2 * C + 1) + 1]);
    synco_image_free(&im);
    synco_dataset_free(ds);
  }
  const char *names[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/%s", tmp, names[i]);
    remove(p);
  }
}

static void test_imagefolder(void) {
  /* classes sorted by name, files sorted, nested folders walked, labels by class, split folder */
  char p[256];
  const char *dirs[] = {"train", "train/b", "train/a", "train/a/sub", "val", "val/a", "val/b"};
  for (int i = 0; i < 7; i++) {
    snprintf(p, sizeof p, "%s/%s", tmp, dirs[i]);
    mkdir(p, 0755);
  }
  uint8_t *jpg;
  size_t n;
  CHECK_OK(synco_read_file("tests/fixtures/data/img.jpg", 0, &jpg, &n));
  const char *files[] = {"train/b/2.jpg", "train/b/1.JPG", "train/a/z.jpg", "train/a/sub/y.jpg", "val/a/q.jpg",
                         "val/b/r.jpg"};
  for (int i = 0; i < 6; i++) write_file(files[i], jpg, n);
  free(jpg);
  synco_dataset *ds;
  synco_dataset_options opt = {0};
  for (int mode = SYNCO_STORE_AUTO; mode <= SYNCO_STORE_ENCODED; mode++) {
    opt.store = (synco_store_mode)mode;
    opt.split = NULL;
    CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
    if (!ds) continue;
    CHECK(synco_dataset_size(ds) == 4 && synco_dataset_num_classes(ds) == 2);
    CHECK(!strcmp(synco_dataset_class_name(ds, 0), "a") && !strcmp(synco_dataset_class_name(ds, 1), "b"));
    CHECK(synco_dataset_label(ds, 0) == 0 && synco_dataset_label(ds, 1) == 0 && synco_dataset_label(ds, 2) == 1);
    synco_image im = {0};
    CHECK_OK(synco_dataset_get(ds, 3, &im));
    CHECK(im.w == 32 && im.h == 32);
    synco_image_free(&im);
    synco_dataset_free(ds);
    opt.split = "val";
    CHECK_OK(synco_dataset_open(&ds, tmp, &opt));
    if (ds) CHECK(synco_dataset_size(ds) == 2);
    synco_dataset_free(ds);
  }
  for (int i = 0; i < 6; i++) {
    snprintf(p, sizeof p, "%s/%s", tmp, files[i]);
    remove(p);
  }
  for (int i = 6; i >= 0; i--) {
    snprintf(p, sizeof p, "%s/%s", tmp, dirs[i]);
    rmdir(p);
  }
}

int main(void) {
  snprintf(tmp, sizeof tmp, "/tmp/synco_test_formats_%d", (int)getpid());
  mkdir(tmp, 0755);
  test_decode();
  test_cifar();
  test_stl10();
  test_idx();
  test_imagefolder();
  rmdir(tmp);
  return synco_test_finish("test_data_formats");
}
