/* Thread-local last-error message and checked allocation helpers. */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
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

/* Buffers of 2 MB and more start on a 2 MB boundary and are marked for transparent huge pages (madvise), which most
 * distributions grant only to memory that asks ("madvise" in /sys/kernel/mm/transparent_hugepage/enabled, Debian's
 * and Ubuntu's default). A training step walks hundreds of MB of activations along strided rows (a Winograd tile
 * reads 6 rows of an image, a BN pass every image's slice of a channel block), which on 4 KB pages misses the TLB.
 * Zen 4, 2 threads, 2026-12-07, `bench step --cifar-stem`, alternated with SYNCO_HUGE_PAGES=0, 3 rounds, medians:
 * --width 16 -b 128 --moco-k 4096 943 -> 988 images/s; --width 8 -b 64 --moco-k 256 2,839 -> 2,904; --width 64 -b 128
 * 93.5 -> 96.2; peak RSS 296 -> 314 MB, 97 -> 114 and 1,425 -> 1,433 (whole 2 MB pages). Where the kernel says
 * "never", madvise changes nothing; where it says "always", this only aligns. SYNCO_HUGE_PAGES=0 keeps 4 KB pages.
 * A buffer glibc serves from its heap (its mmap threshold rises after large frees) leaves that range marked after
 * free(), so later small allocations there may sit in huge pages too: resident memory the heap had reached anyway. */
static int huge_pages_wanted(void) {
  const char *e = getenv("SYNCO_HUGE_PAGES"); /* read at every large allocation (a few hundred a run) */
  return !(e && !strcmp(e, "0"));
}

const char *synco_huge_pages_describe(void) {
  if (!huge_pages_wanted()) return "off (SYNCO_HUGE_PAGES=0): 4 KB pages";
  char mode[128] = "";
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f) {
    if (!fgets(mode, sizeof mode, f)) mode[0] = 0;
    fclose(f);
  }
  if (strstr(mode, "[never]")) return "asked for buffers of 2 MB and more, but the kernel's transparent huge pages are off (never)";
  if (strstr(mode, "[always]")) return "buffers of 2 MB and more (the kernel gives every large region huge pages: always)";
  if (strstr(mode, "[madvise]")) return "buffers of 2 MB and more, marked with madvise (the kernel's setting: madvise)";
  return "asked for buffers of 2 MB and more (the kernel's transparent huge page setting is unknown)";
}

void *synco_aligned_alloc(size_t bytes) {
  void *p = NULL;
  const size_t huge = (size_t)2 << 20;
  const int big = bytes >= huge && huge_pages_wanted();
  if (posix_memalign(&p, big ? huge : 64, bytes ? (bytes + 63) / 64 * 64 : 64) != 0) {
    synco_fail(SYNCO_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    return NULL;
  }
#ifdef MADV_HUGEPAGE
  if (big) (void)madvise(p, bytes / huge * huge, MADV_HUGEPAGE); /* a refusal (no THP in this kernel) changes nothing */
#endif
  return p;
}
