/* safetensors: write/read round trip, metadata, atomic replace, and rejection of malformed files. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "test_util.h"

static size_t make_file(uint8_t *buf, const char *json, const void *data, size_t dlen) {
  uint64_t n = strlen(json);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
  memcpy(buf + 8, json, n);
  memcpy(buf + 8 + n, data, dlen);
  return 8 + n + dlen;
}

static void expect_bad(const char *json, size_t dlen, const char *needle) {
  uint8_t buf[4096], data[256] = {0};
  size_t n = make_file(buf, json, data, dlen);
  synco_safetensors st;
  synco_status s = synco_st_parse(&st, buf, n, "bad.safetensors");
  CHECK(s == SYNCO_ERR_FORMAT);
  if (s == SYNCO_OK) synco_st_close(&st);
  else if (!strstr(synco_last_error(), needle) || !strstr(synco_last_error(), "bad.safetensors")) {
    fprintf(stderr, "message '%s' lacks '%s'\n", synco_last_error(), needle);
    synco_test_failures++;
  }
}

int main(void) {
  char path[] = "/tmp/synco_test_st_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  float a[6] = {1, 2, 3, 4, 5, 6};
  int64_t q[2] = {7, -8};
  synco_st_writer *w = synco_st_writer_new();
  CHECK_OK(synco_st_add_f32(w, "layer.weight", a, 2, (int[]){2, 3}));
  CHECK_OK(synco_st_add(w, "queue_ptr", SYNCO_ST_I64, 1, (int64_t[]){2}, q));
  CHECK_OK(synco_st_set_meta(w, "epoch", "3"));
  CHECK_OK(synco_st_write(w, path));
  synco_st_writer_free(w);
  CHECK(access(strcat(strcpy((char[512]){0}, path), ".tmp"), F_OK) != 0);

  synco_safetensors st;
  CHECK_OK(synco_st_open(&st, path));
  CHECK(st.count == 2);
  CHECK(synco_st_meta(&st, "epoch") && !strcmp(synco_st_meta(&st, "epoch"), "3"));
  float b[6] = {0};
  CHECK_OK(synco_st_get_f32(&st, "layer.weight", b, 6, (int[]){2, 3}, 2));
  CHECK_CLOSE("round trip", b, a, 6, 0, 0);
  CHECK(synco_st_get_f32(&st, "layer.weight", b, 6, (int[]){3, 2}, 2) == SYNCO_ERR_FORMAT);
  CHECK(strstr(synco_last_error(), "shape [2,3], expected [3,2]") != NULL);
  CHECK(synco_st_get_f32(&st, "missing", b, 6, NULL, 0) == SYNCO_ERR_FORMAT);
  CHECK(synco_st_get_f32(&st, "queue_ptr", b, 2, NULL, 0) == SYNCO_ERR_FORMAT);
  const synco_st_entry *e = synco_st_find(&st, "queue_ptr");
  CHECK(e && e->dtype == SYNCO_ST_I64 && !memcmp(synco_st_bytes(&st, e), q, sizeof q));
  synco_st_close(&st);
  unlink(path);
  CHECK(synco_st_open(&st, path) == SYNCO_ERR_IO);

  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside the data section");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12");
  expect_bad("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlaps");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "gap");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "after the last tensor");
  expect_bad("{\"a\":[1,2]}", 0, "lacks dtype");
  expect_bad("not json", 0, "not a JSON object");
  /* header length past the end */
  uint8_t buf[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
  CHECK(synco_st_parse(&st, buf, 10, "short.safetensors") == SYNCO_ERR_FORMAT);
  CHECK(strstr(synco_last_error(), "runs past the end") != NULL);
  return synco_test_finish("test_safetensors");
}
