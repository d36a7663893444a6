/* TensorBoard event files (io/tfevents.h): the Events encoded by protobuf-c from proto/tensorboard_event.proto,
 * framed as TFRecords with masked CRC32C checksums. */
#include "io/tfevents.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/files.h"
#include "base/status.h"

/* Table-driven CRC32C, the table built once (reflected Castagnoli polynomial). */
static uint32_t crc_table[256];
static void crc_table_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    crc_table[i] = c;
  }
}

uint32_t synco_crc32c(const void *data, size_t n) {
  if (!crc_table[1]) crc_table_init(); /* idempotent: a race writes the same values */
  const unsigned char *p = data;
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t synco_crc32c_masked(const void *data, size_t n) {
  const uint32_t c = synco_crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

#ifdef SYNCO_HAVE_PROTOBUF_C
#include "tensorboard_event.pb-c.h"

struct synco_tfevents {
  FILE *f;
  char path[1200];
};

int synco_tfevents_available(void) { return 1; }

static void put_le(unsigned char *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One TFRecord of the encoded event, flushed. */
static synco_status write_event(synco_tfevents *w, const Tensorboard__Event *ev) {
  const size_t n = tensorboard__event__get_packed_size(ev);
  unsigned char *buf = malloc(n + 16);
  if (!buf) return synco_fail(SYNCO_ERR_NOMEM, "out of memory for an event of %zu bytes", n);
  put_le(buf, n, 8);
  put_le(buf + 8, synco_crc32c_masked(buf, 8), 4);
  tensorboard__event__pack(ev, buf + 12);
  put_le(buf + 12 + n, synco_crc32c_masked(buf + 12, n), 4);
  const int ok = fwrite(buf, 1, n + 16, w->f) == n + 16 && fflush(w->f) == 0;
  free(buf);
  return ok ? SYNCO_OK : synco_file_write_error(w->path, errno);
}

synco_status synco_tfevents_open(synco_tfevents **out, const char *dir) {
  *out = NULL;
  synco_tfevents *w = calloc(1, sizeof *w);
  if (!w) return SYNCO_ERR_NOMEM;
  char host[64] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
  for (char *h = host; *h; h++)
    if (*h == '/') *h = '_';
  const int len = snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s.%d.synco", dir,
                           (long long)time(NULL), host, (int)getpid());
  if (len < 0 || (size_t)len >= sizeof w->path) {
    free(w);
    return synco_fail(SYNCO_ERR_ARG, "%s: path too long for an event file", dir);
  }
  w->f = synco_file_create(w->path);
  if (!w->f) {
    free(w);
    return SYNCO_ERR_IO;
  }
  Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
  ev.wall_time = now_seconds();
  ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
  ev.file_version = (char *)"brain.Event:2";
  const synco_status s = write_event(w, &ev);
  if (s) {
    synco_tfevents_close(w);
    return s;
  }
  *out = w;
  return SYNCO_OK;
}

const char *synco_tfevents_path(const synco_tfevents *w) { return w->path; }

synco_status synco_tfevents_scalars(synco_tfevents *w, int64_t step, double wall_time, const char *const *tags,
                                    const float *values, int n) {
  enum { MAX = 32 };
  if (n < 0 || n > MAX) return synco_fail(SYNCO_ERR_ARG, "tfevents: %d scalars in one event (at most %d)", n, MAX);
  Tensorboard__Summary__Value vals[MAX], *pv[MAX];
  for (int i = 0; i < n; i++) {
    tensorboard__summary__value__init(&vals[i]);
    vals[i].tag = (char *)tags[i];
    vals[i].value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    vals[i].simple_value = values[i];
    pv[i] = &vals[i];
  }
  Tensorboard__Summary sum = TENSORBOARD__SUMMARY__INIT;
  sum.n_value = (size_t)n;
  sum.value = pv;
  Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
  ev.wall_time = wall_time;
  ev.step = step;
  ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
  ev.summary = &sum;
  return write_event(w, &ev);
}

synco_status synco_tfevents_start(synco_tfevents *w, int64_t step) {
  Tensorboard__SessionLog log = TENSORBOARD__SESSION_LOG__INIT;
  log.status = TENSORBOARD__SESSION_LOG__SESSION_STATUS__START;
  Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
  ev.wall_time = now_seconds();
  ev.step = step;
  ev.what_case = TENSORBOARD__EVENT__WHAT_SESSION_LOG;
  ev.session_log = &log;
  return write_event(w, &ev);
}

void synco_tfevents_close(synco_tfevents *w) {
  if (!w) return;
  if (w->f) fclose(w->f);
  free(w);
}

#else /* no protobuf-c */

struct synco_tfevents {
  int unused;
};

int synco_tfevents_available(void) { return 0; }

synco_status synco_tfevents_open(synco_tfevents **out, const char *dir) {
  *out = NULL;
  return synco_fail(SYNCO_ERR_UNSUPPORTED, "%s: TensorBoard event files need protobuf-c (apt-get install "
                    "libprotobuf-c-dev protobuf-c-compiler, then rebuild)", dir);
}

const char *synco_tfevents_path(const synco_tfevents *w) {
  (void)w;
  return "";
}

synco_status synco_tfevents_scalars(synco_tfevents *w, int64_t step, double wall_time, const char *const *tags,
                                    const float *values, int n) {
  (void)w, (void)step, (void)wall_time, (void)tags, (void)values, (void)n;
  return synco_fail(SYNCO_ERR_UNSUPPORTED, "TensorBoard event files need protobuf-c");
}

synco_status synco_tfevents_start(synco_tfevents *w, int64_t step) {
  (void)w, (void)step;
  return synco_fail(SYNCO_ERR_UNSUPPORTED, "TensorBoard event files need protobuf-c");
}

void synco_tfevents_close(synco_tfevents *w) { (void)w; }

#endif
