/* Files synco creates: never through a link. A checkpoint, config.json, log.jsonl, an export, a .npy, metrics.json
 * or a plot is a new file: whatever file bore its name (a symbolic link planted in a run directory, a hard link of
 * some other file, a stale temporary) is unlinked, never opened, and the new file is created with O_EXCL and
 * O_NOFOLLOW, so a link planted in between is refused rather than written through. A device, FIFO or socket of
 * that name is refused instead ("PATH: is a character device; ..."): unlinking /dev/null as root removed it. Whole files are written beside
 * their final name (NAME.tmp) and renamed onto it, so a failed write (ENOSPC, EFBIG under `ulimit -f`) leaves the
 * old file as it was and the error names the file and the reason. */
#ifndef SYNCO_BASE_FILES_H
#define SYNCO_BASE_FILES_H

#include <stddef.h>
#include <stdio.h>

#include "synco.h"

/* Creates path as a new, empty regular file, unlinking whatever had that name first ("wb" stream); NULL with the
 * error recorded ("PATH: cannot create: REASON"). */
FILE *synco_file_create(const char *path);
/* Begins writing path through its temporary: tmp (cap bytes) gets path + ".tmp", created by synco_file_create.
 * NULL with the error recorded (also when the name does not fit: "path too long (N characters)"). */
FILE *synco_file_begin(const char *path, char *tmp, size_t cap);
/* Ends synco_file_begin: flushes, fsyncs and closes f and renames tmp onto path (a link at path is replaced, not
 * followed). ok: 0 when the caller's own writes failed (errno tells why). On any failure tmp is removed, path is
 * as it was, and the error reads "PATH: cannot write: REASON" (EFBIG adds "over the file-size limit, ulimit -f"). */
synco_status synco_file_commit(FILE *f, const char *tmp, const char *path, int ok);
/* Opens path for appending (a resumed run's log.jsonl) without following a link: it must be a regular file with
 * one name; a missing file is created as by synco_file_create. NULL with the error recorded. */
FILE *synco_file_append(const char *path);
/* The error of a failed write of path, errno e, recorded and returned (SYNCO_ERR_IO). */
synco_status synco_file_write_error(const char *path, int e);

#endif
