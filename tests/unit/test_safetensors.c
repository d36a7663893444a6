/* safetensors: write/read round trip, metadata, atomic replace, fp16/bf16/fp64 widening, and rejection of
 * malformed files with a message naming the file and the problem; many tensors (duplicate check and lookup
 * by name), NaN/inf refused by name, and encoder files whose "synco.encoder" metadata lies about the tensors
 * (synco_weights_read_config) or whose weights are not finite (synco_weights_load). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/registry.h"
#include "nn/encoder_weights.h"
#include "io/safetensors.h"
#include "nn/encoder.h"
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

static void expect_msg(synco_status got, synco_status want, const char *needle) {
  if (got != want || !strstr(synco_last_error(), needle)) {
    fprintf(stderr, "expected %s with '%s', got %s: '%s'\n", synco_strerror(want), needle, synco_strerror(got),
            synco_last_error());
    synco_test_failures++;
  }
}

/* 20,000 empty tensors: all parse, each is found by name, and one name given twice among them is refused. */
static void test_many_tensors(void) {
  enum { N = 20000 };
  size_t cap = (size_t)N * 64 + 64;
  char *json = malloc(cap);
  uint8_t *buf = malloc(cap + 8);
  CHECK(json && buf);
  if (!json || !buf) return;
  for (int dup = 0; dup < 2; dup++) {
    size_t k = (size_t)snprintf(json, cap, "{");
    for (int i = 0; i < N; i++)
      k += (size_t)snprintf(json + k, cap - k, "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                            i ? "," : "", dup && i == N - 1 ? 1234 : i);
    snprintf(json + k, cap - k, "}");
    const size_t n = make_file(buf, json, "", 0);
    synco_safetensors st;
    synco_status s = synco_st_parse(&st, buf, n, "many.safetensors");
    if (!dup) {
      CHECK_OK(s);
      if (s == SYNCO_OK) {
        CHECK(st.count == N);
        CHECK(synco_st_find(&st, "t0") == &st.entries[0]);
        CHECK(synco_st_find(&st, "t19999") == &st.entries[N - 1]);
        CHECK(synco_st_find(&st, "t20000") == NULL && synco_st_find(&st, "") == NULL);
        synco_st_close(&st);
      }
    } else {
      expect_msg(s, SYNCO_ERR_FORMAT, "many.safetensors: tensor 't1234' appears twice");
    }
  }
  free(json);
  free(buf);
}

/* NaN or inf in any float dtype is refused, naming the file and the tensor. */
static void test_nonfinite(void) {
  const float f32[3] = {1.f, NAN, 2.f};
  const float f32inf[2] = {-INFINITY, 0.f};
  const uint16_t f16[2] = {0x3C00, 0x7C00};   /* 1, +inf */
  const uint16_t bf16[2] = {0x7FC0, 0x3F80};  /* NaN, 1 */
  const double f64[1] = {1e300};              /* overflows fp32 to inf */
  synco_st_writer *w = synco_st_writer_new();
  CHECK_OK(synco_st_add_f32(w, "nan", f32, 1, (int[]){3}));
  CHECK_OK(synco_st_add_f32(w, "inf", f32inf, 1, (int[]){2}));
  CHECK_OK(synco_st_add(w, "h", SYNCO_ST_F16, 1, (int64_t[]){2}, f16));
  CHECK_OK(synco_st_add(w, "b", SYNCO_ST_BF16, 1, (int64_t[]){2}, bf16));
  CHECK_OK(synco_st_add(w, "d", SYNCO_ST_F64, 1, (int64_t[]){1}, f64));
  char path[] = "/tmp/synco_test_st_nan_XXXXXX";
  close(mkstemp(path));
  CHECK_OK(synco_st_write(w, path));
  synco_st_writer_free(w);
  synco_safetensors st;
  CHECK_OK(synco_st_open(&st, path));
  float got[3];
  char want[600];
  const char *names[] = {"nan", "inf", "h", "b", "d"};
  const size_t counts[] = {3, 2, 2, 2, 1};
  for (int i = 0; i < 5; i++) {
    snprintf(want, sizeof want, "%s: tensor '%s' holds NaN/inf values", path, names[i]);
    expect_msg(synco_st_get_f32(&st, names[i], got, counts[i], NULL, 0), SYNCO_ERR_FORMAT, want);
  }
  CHECK(strstr(synco_last_error(), "(1 of 1 elements, the first at 0)") != NULL);
  snprintf(want, sizeof want, "%s: tensor 'nan' holds NaN/inf values (1 of 3 elements, the first at 1)", path);
  expect_msg(synco_st_check_finite(&st), SYNCO_ERR_FORMAT, want);
  synco_st_close(&st);
  unlink(path);
  /* each dtype's non-finite value alone is found by the whole-file check too; finite files pass */
  for (int i = 0; i < 6; i++) {
    w = synco_st_writer_new();
    const float ok[2] = {1.f, -0.f};
    const int32_t ints[2] = {-1, 0x7f800000}; /* inf's bit pattern, but an integer tensor: not checked */
    CHECK_OK(synco_st_add_f32(w, "ok", ok, 1, (int[]){2}));
    CHECK_OK(synco_st_add(w, "ints", SYNCO_ST_I32, 1, (int64_t[]){2}, ints));
    if (i == 0) CHECK_OK(synco_st_add_f32(w, "x", f32inf, 1, (int[]){2}));
    if (i == 1) CHECK_OK(synco_st_add(w, "x", SYNCO_ST_F16, 1, (int64_t[]){2}, f16));
    if (i == 2) CHECK_OK(synco_st_add(w, "x", SYNCO_ST_BF16, 1, (int64_t[]){2}, bf16));
    if (i == 3) CHECK_OK(synco_st_add(w, "x", SYNCO_ST_F64, 1, (int64_t[]){1}, f64));
    if (i == 4) CHECK_OK(synco_st_add_f32(w, "x", f32, 1, (int[]){3}));
    CHECK_OK(synco_st_write(w, path));
    synco_st_writer_free(w);
    CHECK_OK(synco_st_open(&st, path));
    if (i < 5) expect_msg(synco_st_check_finite(&st), SYNCO_ERR_FORMAT, "tensor 'x' holds NaN/inf values");
    else CHECK_OK(synco_st_check_finite(&st));
    synco_st_close(&st);
  }
  unlink(path);
}

/* Writes enc's weights (prefix "encoder_q." as a checkpoint) with its metadata replaced by `meta` when given. */
static void write_encoder(synco_encoder *enc, const char *path, const char *meta) {
  synco_st_writer *w = synco_st_writer_new();
  CHECK_OK(synco_weights_add(w, enc, "encoder_q."));
  if (meta) CHECK_OK(synco_st_set_meta(w, "synco.encoder", meta));
  CHECK_OK(synco_st_write(w, path));
  synco_st_writer_free(w);
}

static void test_encoder_files(void) {
  synco_backend *be = NULL;
  synco_encoder *enc = NULL;
  const synco_encoder_config cfg = {.depth = 18, .width = 2, .cifar_stem = 1, .head = 1, .mlp = 1, .dim = 8, .bn_splits = 1};
  CHECK_OK(synco_backend_create("ref", &be));
  CHECK_OK(synco_encoder_create(&enc, be, &cfg, 1, 32, 3));
  if (!enc) return;
  char path[] = "/tmp/synco_test_st_enc_XXXXXX";
  close(mkstemp(path));
  synco_encoder_config got;
  int size = 0;
  write_encoder(enc, path, NULL);
  CHECK_OK(synco_weights_read_config(path, &got, &size));
  CHECK(got.depth == 18 && got.width == 2 && got.cifar_stem == 1 && got.head == 1 && got.dim == 8 && size == 32);
  CHECK_OK(synco_weights_load(enc, path, "query", 1));
  static const struct {
    const char *meta, *needle;
  } lies[] = {
      /* the bomb: a small file claiming width 4096 must not size an encoder */
      {"{\"depth\":18,\"width\":4096,\"cifar_stem\":1,\"head\":1,\"mlp\":1,\"dim\":8,\"image_size\":32}",
       "says width 4096 with the CIFAR stem, but tensor 'encoder_q.conv1.weight' has shape [2,3,3,3]"},
      {"{\"depth\":18,\"width\":2,\"cifar_stem\":0,\"head\":1,\"mlp\":1,\"dim\":8,\"image_size\":32}",
       "says width 2, but tensor 'encoder_q.conv1.weight' has shape [2,3,3,3]"},
      {"{\"depth\":34,\"width\":2,\"cifar_stem\":1,\"head\":1,\"mlp\":1,\"dim\":8,\"image_size\":32}",
       "says depth 34, but the tensors are those of a ResNet-18"},
      {"{\"depth\":18,\"width\":2,\"cifar_stem\":1,\"head\":1,\"mlp\":1,\"dim\":100000,\"image_size\":32}",
       "field 'dim' is not a whole number in 1..65536"},
      {"{\"depth\":18,\"width\":2,\"cifar_stem\":1,\"head\":1,\"mlp\":1,\"dim\":4096,\"image_size\":32}",
       "says an MLP head with dim 4096 on 16 features, but tensor 'encoder_q.fc.2.weight' has shape [8,16]"},
      {"{\"depth\":18,\"width\":2,\"cifar_stem\":1,\"head\":1,\"mlp\":0,\"dim\":8,\"image_size\":32}",
       "but the file has no tensor 'encoder_q.fc.weight'"},
      {"{\"depth\":18,\"width\":2,\"cifar_stem\":1,\"head\":1,\"mlp\":1,\"dim\":8,\"image_size\":1000000}",
       "field 'image_size' is not a whole number in 8..4096"},
      {"{\"depth\":18,\"width\":2.5,\"cifar_stem\":1}", "field 'width' is not a whole number"},
      {"{\"depth\":101,\"width\":2}", "field 'depth'"},
      {"{\"depth\":\"18\"}", "field 'depth' is not a whole number"},
      {"[18]", "metadata 'synco.encoder' is not valid JSON"},
  };
  for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
    write_encoder(enc, path, lies[i].meta);
    expect_msg(synco_weights_read_config(path, &got, &size), SYNCO_ERR_FORMAT, lies[i].needle);
    CHECK(strstr(synco_last_error(), path) != NULL);
  }
  /* a NaN weight: refused by synco_weights_load (--resume, --ckpt) and the --init loader, tensor named */
  int np = 0;
  const synco_param_view *pv = synco_encoder_param_views(enc, &np);
  const synco_param_view *v = NULL;
  for (int i = 0; i < np; i++)
    if (!strcmp(pv[i].name, "layer1.0.conv1.weight")) v = &pv[i];
  CHECK(v != NULL);
  if (v) {
    float *p = synco_encoder_params(enc) + v->offset + 3;
    const float keep = *p;
    *p = NAN;
    write_encoder(enc, path, NULL);
    *p = keep;
    char want[600];
    snprintf(want, sizeof want, "%s: tensor 'encoder_q.layer1.0.conv1.weight' holds NaN/inf values", path);
    /* read_config refuses it first, before a caller sizes an encoder and reads a dataset for it */
    expect_msg(synco_weights_read_config(path, &got, &size), SYNCO_ERR_FORMAT, want);
    expect_msg(synco_weights_load(enc, path, "query", 1), SYNCO_ERR_FORMAT, want);
    char report[256];
    expect_msg(synco_weights_load_report(enc, path, report, sizeof report), SYNCO_ERR_FORMAT, want);
  }
  /* a folder is not a file (this used to read "out of memory reading 9223372036854775807 bytes") */
  char dir[] = "/tmp/synco_test_st_dir_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  expect_msg(synco_weights_read_config(dir, &got, &size), SYNCO_ERR_IO, "is a folder, not a safetensors file");
  rmdir(dir);
  unlink(path);
  synco_encoder_free(enc);
  synco_backend_destroy(be);
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
  /* text (a config.json given as a checkpoint): its first bytes are no header length */
  const char *text = "{\"arch\": \"resnet18\", \"width\": 8}";
  CHECK(synco_st_parse(&st, text, strlen(text), "config.json") == SYNCO_ERR_FORMAT);
  CHECK(strstr(synco_last_error(), "config.json: not a safetensors file (its first 8 bytes are no header length") != NULL);
  test_many_tensors();
  test_nonfinite();
  test_encoder_files();
  return synco_test_finish("test_safetensors");
}
