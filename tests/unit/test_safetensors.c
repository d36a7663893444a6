/* safetensors: write/read round trip, metadata, atomic replace, fp16/bf16/fp64 widening, and rejection of
 * malformed files with a message naming the file and the problem. */
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
  /* damage the earlier cases do not cover */
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}xx", 8, "stray bytes");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", 5, "not whole numbers");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "lacks dtype");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", 8, "not whole numbers");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 10, "invalid shape");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "invalid shape");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "appears twice");
  expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "not a string");
  expect_bad("{\"__metadata__\":[]}", 0, "not an object");
  expect_bad("{\"__metadata__\":{\"k\":\"v\"},\"__metadata__\":{\"k\":\"w\"}}", 0, "appears twice");
  expect_bad("[1,2]", 0, "not a JSON object");
  expect_bad("{\"a\":7}", 0, "lacks dtype");
  expect_bad("", 0, "not a JSON object");
  {
    /* header padding with spaces is allowed (writers align the data section) */
    uint8_t fb[128] = {0};
    size_t n = make_file(fb, "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}    ", (float[]){2.5f}, 4);
    CHECK_OK(synco_st_parse(&st, fb, n, "padded.safetensors"));
    float v = 0;
    CHECK_OK(synco_st_get_f32(&st, "a", &v, 1, NULL, 0));
    CHECK(v == 2.5f);
    synco_st_close(&st);
    CHECK(synco_st_parse(&st, fb, 7, "tiny.safetensors") == SYNCO_ERR_FORMAT);
    CHECK(strstr(synco_last_error(), "tiny.safetensors") != NULL);
  }
  {
    /* F16, BF16 and F64 tensors are widened to fp32 exactly; an integer tensor is refused by name */
    const uint16_t f16[5] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3E00};   /* 1, -2, 65504, 2^-24, 1.5 */
    const float f16_ref[5] = {1.f, -2.f, 65504.f, 5.9604645e-8f, 1.5f};
    const uint16_t bf16[3] = {0x3F80, 0xC0A0, 0x3EAB};                   /* 1, -5, 0.333984375 */
    const float bf16_ref[3] = {1.f, -5.f, 0.333984375f};
    const double f64[2] = {0.1, -3.0};
    const float f64_ref[2] = {0.1f, -3.f};
    const int32_t i32[2] = {1, 2};
    synco_st_writer *wr = synco_st_writer_new();
    CHECK_OK(synco_st_add(wr, "h", SYNCO_ST_F16, 1, (int64_t[]){5}, f16));
    CHECK_OK(synco_st_add(wr, "b", SYNCO_ST_BF16, 1, (int64_t[]){3}, bf16));
    CHECK_OK(synco_st_add(wr, "d", SYNCO_ST_F64, 2, (int64_t[]){1, 2}, f64));
    CHECK_OK(synco_st_add(wr, "i", SYNCO_ST_I32, 1, (int64_t[]){2}, i32));
    fd = mkstemp(strcpy(path, "/tmp/synco_test_st_XXXXXX"));
    close(fd);
    CHECK_OK(synco_st_write(wr, path));
    synco_st_writer_free(wr);
    CHECK_OK(synco_st_open(&st, path));
    float got[5];
    CHECK_OK(synco_st_get_f32(&st, "h", got, 5, (int[]){5}, 1));
    CHECK_CLOSE("f16", got, f16_ref, 5, 0, 0);
    CHECK_OK(synco_st_get_f32(&st, "b", got, 3, NULL, 0));
    CHECK_CLOSE("bf16", got, bf16_ref, 3, 0, 0);
    CHECK_OK(synco_st_get_f32(&st, "d", got, 2, (int[]){1, 2}, 2));
    CHECK_CLOSE("f64", got, f64_ref, 2, 0, 0);
    CHECK(synco_st_get_f32(&st, "d", got, 2, (int[]){2}, 1) == SYNCO_ERR_FORMAT);
    CHECK(synco_st_get_f32(&st, "i", got, 2, NULL, 0) == SYNCO_ERR_FORMAT);
    CHECK(strstr(synco_last_error(), "'i' has dtype I32, expected a float type") != NULL);
    CHECK(synco_st_get_f32(&st, "h", got, 4, NULL, 0) == SYNCO_ERR_FORMAT);
    CHECK(strstr(synco_last_error(), "5 elements, expected 4") != NULL);
    synco_st_close(&st);
    unlink(path);
  }
  /* header length past the end */
  uint8_t buf[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
  CHECK(synco_st_parse(&st, buf, 10, "short.safetensors") == SYNCO_ERR_FORMAT);
  CHECK(strstr(synco_last_error(), "runs past the end") != NULL);
  return synco_test_finish("test_safetensors");
}
