/* The corpus of broken inputs in tests/fixtures/bad: each gives the right status and a one-line message
 * naming the file; an ImageFolder holding one fails naming it, or with skip_bad drops and counts it.
 * idx files whose header disagrees with their body (gzip bombs, truncated or oversized streams, label counts)
 * are refused by name, the header checked before the body is inflated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

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

/* Writes an idx file: a big-endian header (magic, dims) then `body` bytes of value 7 and `zeros` zero bytes. */
static void write_idx(const char *path, int gz, uint32_t magic, int nd, const uint32_t *dims, size_t body, size_t zeros) {
  uint8_t hdr[16];
  const uint32_t words[4] = {magic, dims[0], nd > 1 ? dims[1] : 0, nd > 2 ? dims[2] : 0};
  for (int i = 0; i < 4; i++)
    for (int b = 0; b < 4; b++) hdr[4 * i + b] = (uint8_t)(words[i] >> (24 - 8 * b));
  uint8_t *data = calloc(body + zeros + 1, 1);
  memset(data, 7, body);
  if (gz) {
    gzFile f = gzopen(path, "wb9");
    gzwrite(f, hdr, (unsigned)(4 + 4 * nd));
    if (body + zeros) gzwrite(f, data, (unsigned)(body + zeros));
    gzclose(f);
  } else {
    FILE *f = fopen(path, "wb");
    fwrite(hdr, 1, (size_t)(4 + 4 * nd), f);
    fwrite(data, 1, body + zeros, f);
    fclose(f);
  }
  free(data);
}

static void test_idx_bombs(void) {
  char dir[] = "/tmp/synco_test_idx_XXXXXX", im[128], lb[128], imz[160], lbz[160];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(im, sizeof im, "%s/train-images-idx3-ubyte", dir);
  snprintf(lb, sizeof lb, "%s/train-labels-idx1-ubyte", dir);
  snprintf(imz, sizeof imz, "%s.gz", im);
  snprintf(lbz, sizeof lbz, "%s.gz", lb);
  synco_dataset *ds = NULL;
  synco_dataset_options opt = {0};
  const uint32_t three[3] = {3, 2, 2}, n3[1] = {3}, n4[1] = {4};
  /* good: 3 images of 2x2 with 3 labels, gzip */
  write_idx(imz, 1, 0x803, 3, three, 12, 0);
  write_idx(lbz, 1, 0x801, 1, n3, 3, 0);
  CHECK_OK(synco_dataset_open(&ds, dir, &opt));
  if (ds) CHECK(synco_dataset_size(ds) == 3);
  synco_dataset_free(ds);
  /* a gzip bomb: the header says 12 bytes of pixels, the stream inflates to 32 MB more */
  write_idx(imz, 1, 0x803, 3, three, 12, (size_t)32 << 20);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "train-images-idx3-ubyte.gz: more data than the header declares (12 bytes of images)");
  /* a header no stream of this size can back: 1e6 images of 100x100 in a few dozen bytes */
  write_idx(imz, 1, 0x803, 3, (const uint32_t[]){1000000, 100, 100}, 12, 0);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "header declares 10000000000 bytes of images, more than a");
  /* truncated stream */
  write_idx(imz, 1, 0x803, 3, three, 8, 0);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "truncated: the header declares 12 bytes of images but the data ends after 8");
  /* header out of range, and a truncated header */
  write_idx(imz, 1, 0x803, 3, (const uint32_t[]){3, 5000, 2}, 12, 0);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "header says 3 images of 5000x2");
  write_idx(imz, 1, 0x803, 1, three, 0, 0);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "the header is truncated");
  /* labels: a count that is not the images', and a labels bomb */
  write_idx(imz, 1, 0x803, 3, three, 12, 0);
  write_idx(lbz, 1, 0x801, 1, n4, 4, 0);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "train-labels-idx1-ubyte.gz: 4 labels for 3 images");
  write_idx(lbz, 1, 0x801, 1, n3, 3, (size_t)8 << 20);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "train-labels-idx1-ubyte.gz: more data than the header declares");
  remove(imz);
  remove(lbz);
  /* plain files: the size must be exactly what the header says */
  write_idx(im, 0, 0x803, 3, three, 12, 1);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "header says 3 images of 2x2 but the file has 29 bytes");
  write_idx(im, 0, 0x803, 3, three, 12, 0);
  write_idx(lb, 0, 0x801, 1, n3, 2, 0);
  expect_fail(synco_dataset_open(&ds, dir, &opt), SYNCO_ERR_FORMAT, "train-labels-idx1-ubyte: 3 labels in 10 bytes");
  write_idx(lb, 0, 0x801, 1, n3, 3, 0);
  CHECK_OK(synco_dataset_open(&ds, dir, &opt));
  synco_dataset_free(ds);
  remove(im);
  remove(lb);
  rmdir(dir);
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
      /* every file's header is read at open: an empty file or one that is no image is refused then in both modes */
      if (mode == SYNCO_STORE_DECODED || !strcmp(images[i], "empty.jpg") || !strcmp(images[i], "text.jpg")) {
        expect_fail(st, SYNCO_ERR_FORMAT, images[i]);
      } else {
        /* encoded storage: bad data behind a good header surfaces when its sample is read */
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
  /* no class folders: a flat folder of images is an unlabelled dataset (notes.txt ignored) */
  synco_status fst = synco_dataset_open(&ds, cls, &opt);
  CHECK_OK(fst);
  if (fst == SYNCO_OK) {
    CHECK(synco_dataset_size(ds) == 3);
    CHECK(synco_dataset_num_classes(ds) == 0);
    CHECK(synco_dataset_label(ds, 0) == -1 && synco_dataset_label(ds, 2) == -1);
    CHECK(synco_dataset_num_labelled(ds) == 0);
    synco_dataset_free(ds);
  }
  /* images at the top and a sub-folder: unlabelled too, the sub-folder's images included, with a warning */
  snprintf(path, sizeof path, "%s/sub", cls);
  mkdir(path, 0755);
  char moved[600];
  snprintf(moved, sizeof moved, "%s/sub/good0.jpg", cls);
  snprintf(path, sizeof path, "%s/good0.jpg", cls);
  CHECK(rename(path, moved) == 0);
  fst = synco_dataset_open(&ds, cls, &opt);
  CHECK_OK(fst);
  if (fst == SYNCO_OK) {
    CHECK(synco_dataset_size(ds) == 3 && synco_dataset_num_classes(ds) == 0);
    const char *w = synco_dataset_warnings(ds);
    CHECK(w && strstr(w, "read as unlabelled"));
    synco_dataset_free(ds);
  }
  CHECK(rename(moved, path) == 0);
  snprintf(path, sizeof path, "%s/sub", cls);
  rmdir(path);
  /* a folder with no images at all */
  snprintf(path, sizeof path, "%s/nothing", root);
  mkdir(path, 0755);
  expect_fail(synco_dataset_open(&ds, path, &opt), SYNCO_ERR_FORMAT, "no images");
  rmdir(path);
  for (int k = 0; k < 3; k++) {
    snprintf(path, sizeof path, "%s/good%d.jpg", cls, k);
    remove(path);
  }
  snprintf(path, sizeof path, "%s/notes.txt", cls);
  remove(path);
  rmdir(cls);
  rmdir(root);
  test_idx_bombs();
  return synco_test_finish("test_data_bad");
}
