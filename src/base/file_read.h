/* Files synco reads: regular files only, opened without blocking. Every input the program opens for reading (a
 * checkpoint, an image, a CIFAR/STL-10/idx file, a class-name list, a run's log.jsonl) comes through here, so a FIFO
 * (open() of one waits for a writer forever), a device such as /dev/zero (endless), a socket or a folder given where
 * a file belongs is refused at once, with the file named and what it is: "PATH: is a FIFO, not a regular file".
 * The file is opened with O_NONBLOCK (which makes opening a FIFO return at once), judged by fstat() on the open
 * descriptor (no window for the name to be swapped between a check and the open), and only then made blocking. */
#ifndef SYNCO_BASE_FILE_READ_H
#define SYNCO_BASE_FILE_READ_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "synco.h"

/* Opens path read-only (O_CLOEXEC). what: how the message names the file expected ("a safetensors file"; NULL:
 * "a regular file"). *size (when not NULL) = the file's size. -1 with the error recorded: "PATH: cannot open:
 * REASON" or "PATH: is a FIFO, not WHAT". */
int synco_open_read(const char *path, const char *what, size_t *size);
/* The same as a "rb" stream; NULL with the error recorded. */
FILE *synco_fopen_read(const char *path, const char *what, size_t *size);
/* Reads exactly n bytes at offset off of fd (pread, retried on EINTR and short reads): 0 when all came, else -1
 * (errno set; EIO for a file shorter than off + n). */
int synco_pread_all(int fd, void *buf, size_t n, size_t off);
/* Is there anything at path (stat() follows links: a dangling link is nothing)? A FIFO or device counts, so that
 * a format is recognized by its file names and its reader can then refuse what is not a regular file. */
int synco_path_exists(const char *path);
/* What a file of mode m is, for messages: "a folder", "a FIFO", "a character device", "a block device", "a socket",
 * else "not a regular file". */
const char *synco_file_kind(mode_t m);

#endif
