/* Status codes and the thread-local error message.
 * Library functions return a synco_status; on failure they leave a one-line message (naming the file,
 * the record and what was expected) that the CLI prints. Nothing below the CLI prints errors itself. */
#ifndef SYNCO_BASE_STATUS_H
#define SYNCO_BASE_STATUS_H

#include "synco.h"

/* Records a formatted message for the current thread and returns `code` (so `return synco_fail(...)`). */
synco_status synco_fail(synco_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with more context ("reading foo: " + old message); returns code. */
synco_status synco_fail_context(synco_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void synco_clear_error(void);

#define SYNCO_TRY(expr) do { synco_status _s = (expr); if (_s != SYNCO_OK) return _s; } while (0)

/* malloc/calloc that record SYNCO_ERR_NOMEM with the size on failure. */
void *synco_malloc(size_t bytes);
void *synco_calloc(size_t n, size_t size);
/* 64-byte aligned allocation (free with free()); from 2 MB, 2 MB aligned and in huge pages where the kernel grants them
 * (status.c says why). */
void *synco_aligned_alloc(size_t bytes);
/* What synco_aligned_alloc does about huge pages here, in words (synco info). */
const char *synco_huge_pages_describe(void);

#endif
