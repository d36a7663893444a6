/* Thread-local last-error message and checked allocation helpers. */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[1024];

synco_status synco_fail(synco_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, sizeof g_msg, fmt, ap);
  va_end(ap);
  return code;
}

synco_status synco_fail_context(synco_status code, const char *fmt, ...) {
  char prefix[512], old[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, g_msg, sizeof old);
  /* prefix then as much of the old message as fits */
  size_t n = strlen(prefix);
  memcpy(g_msg, prefix, n + 1);
  strncat(g_msg, old, sizeof g_msg - n - 1);
  return code;
}

void synco_clear_error(void) { g_msg[0] = 0; }

const char *synco_last_error(void) { return g_msg[0] ? g_msg : ""; }

const char *synco_strerror(synco_status s) {
  switch (s) {
    case SYNCO_OK: return "ok";
    case SYNCO_ERR_ARG: return "invalid argument";
    case SYNCO_ERR_IO: return "i/o error";
    case SYNCO_ERR_FORMAT: return "malformed input";
    case SYNCO_ERR_NOMEM: return "out of memory";
    case SYNCO_ERR_BACKEND: return "backend error";
    case SYNCO_ERR_NUMERIC: return "non-finite value";
    case SYNCO_ERR_UNSUPPORTED: return "unsupported";
  }
  return "unknown error";
}

void *synco_malloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) synco_fail(SYNCO_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
  return p;
}

void *synco_calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) synco_fail(SYNCO_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", n, size);
  return p;
}

void *synco_aligned_alloc(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? (bytes + 63) / 64 * 64 : 64) != 0) {
    synco_fail(SYNCO_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    return NULL;
  }
  return p;
}
