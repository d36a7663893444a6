/* A minimal safetensors reader for the data tests' fixtures (tests/fixtures/data/aug_fixtures.safetensors,
 * written by tools/make_aug_fixtures.py): the whole file in memory, tensors found by name. */
#ifndef SYNCO_TEST_DATA_FIXTURES_H
#define SYNCO_TEST_DATA_FIXTURES_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t *file;
  size_t len;
  cJSON *header;
  const uint8_t *data;
} fx_file;

static int fx_open(fx_file *f, const char *path) {
  memset(f, 0, sizeof *f);
  FILE *fp = fopen(path, "rb");
  if (!fp) return 0;
  fseek(fp, 0, SEEK_END);
  f->len = (size_t)ftell(fp);
  fseek(fp, 0, SEEK_SET);
  f->file = (uint8_t *)malloc(f->len);
  if (fread(f->file, 1, f->len, fp) != f->len) f->len = 0;
  fclose(fp);
  if (f->len < 8) return 0;
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | f->file[i];
  f->header = cJSON_ParseWithLength((const char *)f->file + 8, (size_t)hl);
  f->data = f->file + 8 + hl;
  return f->header != NULL;
}

/* Returns the tensor's bytes and fills shape (up to 4 dims, unused = 1), or NULL. */
static const void *fx_get(const fx_file *f, const char *name, int shape[4]) {
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(f->header, name);
  if (!t) {
    fprintf(stderr, "fixture tensor '%s' missing\n", name);
    return NULL;
  }
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
  for (int i = 0; i < 4; i++) shape[i] = 1;
  int k = 0;
  const cJSON *d;
  cJSON_ArrayForEach(d, sh) if (k < 4) shape[k++] = d->valueint;
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
  return f->data + (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
}

static void fx_close(fx_file *f) {
  cJSON_Delete(f->header);
  free(f->file);
}

#endif
