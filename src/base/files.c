/* Creating files without following links; see files.h. */
#include "base/files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_read.h"
#include "base/status.h"

synco_status synco_file_write_error(const char *path, int e) {
  return synco_fail(SYNCO_ERR_IO, "%s: cannot write: %s%s", path, strerror(e),
                    e == EFBIG ? " (over the file-size limit, ulimit -f)" : "");
}

/* A device, FIFO or socket where a file is to be written is refused, not replaced: unlinking one (as root,
 * `--out /dev/null`) removed the device itself. */
static int is_special(mode_t m) { return S_ISCHR(m) || S_ISBLK(m) || S_ISFIFO(m) || S_ISSOCK(m); }

static int special(const char *path) {
  struct stat st, target;
  if (lstat(path, &st) != 0) return 0;
  /* a link to one too (/dev/stdout is a link): the name would be replaced, not written through, and the user asked
   * for the device */
  const int link = S_ISLNK(st.st_mode) && stat(path, &target) == 0 && is_special(target.st_mode);
  if (!link && !is_special(st.st_mode)) return 0;
  synco_fail(SYNCO_ERR_IO, "%s: is %s%s; synco writes its outputs as regular files and replaces no device, FIFO or "
             "socket (give a file name)", path, link ? "a link to " : "", synco_file_kind(link ? target.st_mode : st.st_mode));
  return 1;
}

/* Creates path; errors that are not about what bears that name (a folder's permission, a read-only or full disk)
 * name `shown`, the file the user asked for (its temporary's name meant nothing to them). */
static FILE *create_as(const char *path, const char *shown) {
  /* A name that is a folder stays (unlink fails with EISDIR/EPERM) and O_EXCL then refuses it. */
  struct stat st;
  if (special(path)) return NULL;
  if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode) && unlink(path) != 0 && errno != ENOENT) {
    synco_fail(SYNCO_ERR_IO, "%s: cannot replace: %s", path, strerror(errno));
    return NULL;
  }
  const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int e = errno;
    if (e == EEXIST && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
      synco_fail(SYNCO_ERR_IO, "%s: cannot create: it is a folder", path);
    else if (e == EEXIST || e == ELOOP) /* a file or link appeared between the unlink and the open */
      synco_fail(SYNCO_ERR_IO, "%s: cannot create: another file of that name appeared while writing it", path);
    else
      synco_fail(SYNCO_ERR_IO, "%s: cannot create: %s", shown, strerror(e));
    return NULL;
  }
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    synco_fail(SYNCO_ERR_IO, "%s: cannot create: %s", shown, strerror(errno));
    close(fd);
    unlink(path);
  }
  return f;
}

FILE *synco_file_create(const char *path) { return create_as(path, path); }

FILE *synco_file_begin(const char *path, char *tmp, size_t cap) {
  const int n = snprintf(tmp, cap, "%s.tmp", path);
  if (n < 0 || (size_t)n >= cap) {
    synco_fail(SYNCO_ERR_ARG, "%.80s...: path too long (%zu characters)", path, strlen(path));
    return NULL;
  }
  if (special(path)) return NULL;
  return create_as(tmp, path);
}

synco_status synco_file_commit(FILE *f, const char *tmp, const char *path, int ok) {
  int e = ok ? 0 : (errno ? errno : EIO);
  if (!e && fflush(f) != 0) e = errno;
  if (!e && fsync(fileno(f)) != 0) e = errno;
  if (fclose(f) != 0 && !e) e = errno;
  if (!e && special(path)) { /* appeared while the file was written */
    unlink(tmp);
    return SYNCO_ERR_IO;
  }
  if (!e && rename(tmp, path) != 0) e = errno;
  if (!e) return SYNCO_OK;
  unlink(tmp);
  return synco_file_write_error(path, e);
}

FILE *synco_file_append(const char *path) {
  const int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return synco_file_create(path);
  if (fd < 0) {
    const int e = errno;
    synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path,
               e == ELOOP ? "it is a symbolic link (synco writes no file through a link)"
               : e == ENXIO ? "not a regular file" : strerror(e));
    return NULL;
  }
  struct stat st;
  const char *why = fstat(fd, &st) != 0 ? strerror(errno)
                    : !S_ISREG(st.st_mode) ? "not a regular file"
                    : st.st_nlink != 1      ? "it is a hard link of another file (synco appends to no shared file)"
                                            : NULL;
  if (why || fcntl(fd, F_SETFL, O_APPEND) != 0) { /* blocking again */
    synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, why ? why : strerror(errno));
    close(fd);
    return NULL;
  }
  FILE *f = fdopen(fd, "ab");
  if (!f) {
    synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
  }
  return f;
}
