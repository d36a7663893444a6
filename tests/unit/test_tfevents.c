/* TensorBoard event files: CRC32C against known vectors (RFC 3720's and the "123456789" check value) and its
 * TFRecord mask; then a file written by synco_tfevents is read back record by record — the length and both masked
 * checksums checked, each record decoded by protobuf-c — and holds the file version first, then the scalars as
 * written, in order, then a restart marker (SessionLog START, TensorBoard's field numbers). Without protobuf-c only the checksums are tested (the writer refuses, as it says). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/tfevents.h"
#include "test_util.h"

#ifdef SYNCO_HAVE_PROTOBUF_C
#include "tensorboard_event.pb-c.h"
#endif

static void test_crc32c(void) {
  CHECK(synco_crc32c("123456789", 9) == 0xe3069283u);
  unsigned char b[32];
  memset(b, 0, sizeof b);
  CHECK(synco_crc32c(b, 32) == 0x8a9136aau); /* RFC 3720 B.4: 32 bytes of zeros */
  memset(b, 0xff, sizeof b);
  CHECK(synco_crc32c(b, 32) == 0x62a8ab43u); /* 32 bytes of ones */
  for (int i = 0; i < 32; i++) b[i] = (unsigned char)i;
  CHECK(synco_crc32c(b, 32) == 0x46dd794eu); /* incrementing */
  CHECK(synco_crc32c("", 0) == 0);
  /* the mask: rotate right by 15, add 0xa282ead8 */
  const uint32_t c = synco_crc32c("123456789", 9);
  CHECK(synco_crc32c_masked("123456789", 9) == ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

#ifdef SYNCO_HAVE_PROTOBUF_C
static uint64_t get_le(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static void test_file(void) {
  char dir[] = "/tmp/synco_tfevents_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  synco_tfevents *w = NULL;
  CHECK_OK(synco_tfevents_open(&w, dir));
  if (!w) return;
  char path[1300];
  snprintf(path, sizeof path, "%s", synco_tfevents_path(w));
  CHECK(strncmp(path, dir, strlen(dir)) == 0 && strstr(path, "/events.out.tfevents.") != NULL);
  const char *tags[] = {"train/loss", "train/acc"};
  for (int s = 1; s <= 3; s++) {
    const float v[] = {5.0f - s, 10.0f * s};
    CHECK_OK(synco_tfevents_scalars(w, s * 10, 1.7e9 + s, tags, v, 2));
  }
  CHECK_OK(synco_tfevents_start(w, 21)); /* a resumed run's restart marker */
  synco_tfevents_close(w);

  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  if (!f) return;
  unsigned char buf[4096];
  const size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  size_t at = 0;
  int records = 0;
  while (at + 12 <= n) {
    const uint64_t len = get_le(buf + at, 8);
    CHECK(get_le(buf + at + 8, 4) == synco_crc32c_masked(buf + at, 8));
    CHECK(at + 12 + len + 4 <= n);
    if (at + 12 + len + 4 > n) break;
    CHECK(get_le(buf + at + 12 + len, 4) == synco_crc32c_masked(buf + at + 12, len));
    Tensorboard__Event *ev = tensorboard__event__unpack(NULL, len, buf + at + 12);
    CHECK(ev != NULL);
    if (ev && records == 0) {
      CHECK(ev->what_case == TENSORBOARD__EVENT__WHAT_FILE_VERSION && !strcmp(ev->file_version, "brain.Event:2"));
      CHECK(ev->wall_time > 1.6e9);
    } else if (ev && records == 4) {
      /* TensorBoard's Event.session_log is field 7 (length-delimited), SessionLog.status field 1, START = 1 */
      CHECK(ev->what_case == TENSORBOARD__EVENT__WHAT_SESSION_LOG && ev->step == 21 && ev->wall_time > 1.6e9);
      CHECK(ev->session_log && ev->session_log->status == TENSORBOARD__SESSION_LOG__SESSION_STATUS__START);
      CHECK(len >= 4 && !memcmp(buf + at + 12 + len - 4, "\x3a\x02\x08\x01", 4));
    } else if (ev) {
      CHECK(ev->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY && ev->step == records * 10);
      CHECK(ev->wall_time == 1.7e9 + records);
      CHECK(ev->summary->n_value == 2);
      for (size_t i = 0; i < ev->summary->n_value && i < 2; i++) {
        const Tensorboard__Summary__Value *v = ev->summary->value[i];
        CHECK(!strcmp(v->tag, tags[i]) && v->value_case == TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE);
        CHECK(v->simple_value == (i == 0 ? 5.0f - records : 10.0f * records));
      }
    }
    tensorboard__event__free_unpacked(ev, NULL);
    records++;
    at += 12 + len + 4;
  }
  CHECK(records == 5 && at == n);
  /* a scalar count the writer cannot hold is refused, not truncated */
  CHECK_OK(synco_tfevents_open(&w, dir));
  char path2[1300];
  snprintf(path2, sizeof path2, "%s", w ? synco_tfevents_path(w) : "");
  float many[40] = {0};
  const char *many_tags[40];
  for (int i = 0; i < 40; i++) many_tags[i] = "x";
  CHECK(synco_tfevents_scalars(w, 1, 1.0, many_tags, many, 40) == SYNCO_ERR_ARG);
  synco_tfevents_close(w);
  unlink(path);
  if (strcmp(path2, path)) unlink(path2);
  rmdir(dir);
}
#endif

int main(void) {
  test_crc32c();
#ifdef SYNCO_HAVE_PROTOBUF_C
  CHECK(synco_tfevents_available());
  test_file();
#else
  synco_tfevents *w = NULL;
  CHECK(!synco_tfevents_available() && synco_tfevents_open(&w, "/tmp") == SYNCO_ERR_UNSUPPORTED && !w);
  printf("built without protobuf-c: only CRC32C tested\n");
#endif
  return synco_test_finish("test_tfevents");
}
