/* Opening inputs: regular files only, without blocking; see file_read.h. */
#include "base/file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"

const char *synco_file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

int synco_open_read(const char *path, const char *what, size_t *size) {
  if (size) *size = 0;
  const int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    const char *k = synco_file_kind(st.st_mode);
    synco_fail(SYNCO_ERR_IO, "%s: %s%s, not %s", path, strncmp(k, "not ", 4) ? "is " : "", k,
               what ? what : "a regular file");
    return -1;
  }
  const int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) { /* blocking again, as every reader expects */
    const int e = errno;
    close(fd);
    synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    return -1;
  }
  if (size) *size = (size_t)st.st_size;
  return fd;
}

FILE *synco_fopen_read(const char *path, const char *what, size_t *size) {
  const int fd = synco_open_read(path, what, size);
  if (fd < 0) return NULL;
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
  }
  return f;
}

int synco_pread_all(int fd, void *buf, size_t n, size_t off) {
  unsigned char *p = (unsigned char *)buf;
  while (n > 0) {
    const ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    p += r;
    off += (size_t)r;
    n -= (size_t)r;
  }
  return 0;
}

int synco_path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}
