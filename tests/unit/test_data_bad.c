/* The corpus of broken inputs in tests/fixtures/bad: each gives the right status and a one-line message
 * naming the file; an ImageFolder holding one fails naming it, or with skip_bad drops and counts it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "data/internal.h"
#include "test_util.h"

static uint8_t *slurp(const char *path, size_t *n) {
  uint8_t *b = NULL;
  if (synco_read_file(path, 0, &b, n) != SYNCO_OK) return NULL;
  return b;
}

static void copy_file(const char *from, const char *to) {
  size_t n;
  uint8_t *b = slurp(from, &n);
  FILE *f = fopen(to, "wb");
  if (f && b) fwrite(b, 1, n, f);
  if (f) fclose(f);
  free(b);
}

static void expect_fail(synco_status got, synco_status want, const char *name) {
  const char *msg = synco_last_error();
  if (got != want || !strstr(msg, name) || strchr(msg, '\n'))
    fprintf(stderr, "expected %s naming %s, got %s: '%s'\n", synco_strerror(want), name, synco_strerror(got), msg);
  CHECK(got == want);
  CHECK(strstr(msg, name) != NULL);
  CHECK(strchr(msg, '\n') == NULL);
}

int main(void) {
  static const char *const images[] = {"truncated.jpg", "corrupt.png", "empty.jpg", "text.jpg"};
  synco_image img = {0};
  for (int i = 0; i < 4; i++) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/bad/%s", images[i]);
    size_t n;
    uint8_t *b = slurp(path, &n);
    CHECK(b != NULL);
    expect_fail(synco_image_decode(&img, b, n, path), SYNCO_ERR_FORMAT, images[i]);
    free(b);
  }
  synco_image_free(&img);

  synco_dataset *ds = NULL;
  synco_dataset_options opt = {0};
  expect_fail(synco_dataset_open(&ds, "tests/fixtures/bad/cifar", &opt), SYNCO_ERR_FORMAT, "data_batch_1.bin");
  expect_fail(synco_dataset_open(&ds, "tests/fixtures/bad/bad-images-idx3-ubyte", &opt), SYNCO_ERR_FORMAT,
              "bad-images-idx3-ubyte");
  expect_fail(synco_dataset_open(&ds, "tests/fixtures/bad/no-such-dataset", &opt), SYNCO_ERR_IO, "no-such-dataset");
  CHECK(ds == NULL);

  /* ImageFolders with each bad file among good ones, in both storage modes */
  char root[128], cls[160], path[256];
  snprintf(root, sizeof root, "/tmp/synco_test_bad_%d", (int)getpid());
  snprintf(cls, sizeof cls, "%s/a", root);
  mkdir(root, 0755);
  mkdir(cls, 0755);
  for (int k = 0; k < 3; k++) {
    snprintf(path, sizeof path, "%s/good%d.jpg", cls, k);
    copy_file("tests/fixtures/data/img.jpg", path);
  }
  snprintf(path, sizeof path, "%s/notes.txt", cls); /* ignored, as torchvision ignores it */
  FILE *f = fopen(path, "w");
  if (f) fclose(f);
  for (int i = 0; i < 4; i++) {
    char from[256], bad[256];
    snprintf(from, sizeof from, "tests/fixtures/bad/%s", images[i]);
    snprintf(bad, sizeof bad, "%s/x_%s", cls, images[i]);
    copy_file(from, bad);
    for (int mode = SYNCO_STORE_DECODED; mode <= SYNCO_STORE_ENCODED; mode++) {
      opt.store = (synco_store_mode)mode;
      opt.skip_bad = 0;
      opt.threads = 2;
      synco_status st = synco_dataset_open(&ds, root, &opt);
      if (mode == SYNCO_STORE_DECODED || !strcmp(images[i], "empty.jpg")) {
        expect_fail(st, SYNCO_ERR_FORMAT, images[i]);
      } else {
        /* encoded storage: the bad file surfaces when its sample is read */
        CHECK_OK(st);
        if (st == SYNCO_OK) {
          synco_status gs = SYNCO_OK;
          for (size_t s = 0; s < synco_dataset_size(ds) && gs == SYNCO_OK; s++) gs = synco_dataset_get(ds, s, &img);
          expect_fail(gs, SYNCO_ERR_FORMAT, images[i]);
          synco_dataset_free(ds);
        }
      }
      opt.skip_bad = 1;
      st = synco_dataset_open(&ds, root, &opt);
      CHECK_OK(st);
      if (st == SYNCO_OK) {
        CHECK(synco_dataset_size(ds) == 3);
        CHECK(synco_dataset_skipped(ds) == 1);
        synco_dataset_free(ds);
      }
    }
    remove(bad);
  }
  synco_image_free(&img);
  /* an empty class folder */
  snprintf(path, sizeof path, "%s/b_empty", root);
  mkdir(path, 0755);
  opt.skip_bad = 0;
  opt.store = SYNCO_STORE_AUTO;
  expect_fail(synco_dataset_open(&ds, root, &opt), SYNCO_ERR_FORMAT, "b_empty");
  rmdir(path);
  /* no class folders at all */
  expect_fail(synco_dataset_open(&ds, cls, &opt), SYNCO_ERR_FORMAT, cls);
  for (int k = 0; k < 3; k++) {
    snprintf(path, sizeof path, "%s/good%d.jpg", cls, k);
    remove(path);
  }
  snprintf(path, sizeof path, "%s/notes.txt", cls);
  remove(path);
  rmdir(cls);
  rmdir(root);
  return synco_test_finish("test_data_bad");
}
