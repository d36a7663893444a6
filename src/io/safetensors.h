/* safetensors files: an 8-byte little-endian header length, a JSON header mapping each tensor name to
 * {dtype, shape, data_offsets [begin, end)} (plus an optional "__metadata__" map of strings), then the raw
 * little-endian tensor bytes. The reader validates everything before any tensor is used: header length inside
 * the file, JSON well-formed, known dtypes, shape × dtype size = byte span, offsets inside the file, sorted
 * without overlap or holes, no name twice; every check is O(n log n) in the number of tensors, and nothing
 * is allocated beyond the file's own bytes and one table entry per header key. synco_st_get_f32 refuses
 * tensors holding NaN or inf. The writer stages to "<path>.tmp", flushes, fsyncs
 * and renames, so a crash never leaves a half-written file under the final name. */
#ifndef SYNCO_IO_SAFETENSORS_H
#define SYNCO_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "synco.h"

typedef enum { SYNCO_ST_F32, SYNCO_ST_F64, SYNCO_ST_F16, SYNCO_ST_BF16, SYNCO_ST_I64, SYNCO_ST_I32,
               SYNCO_ST_U32, SYNCO_ST_U8, SYNCO_ST_I8, SYNCO_ST_BOOL } synco_st_dtype;

#define SYNCO_ST_MAX_DIMS 8

typedef struct {
  char *name;
  synco_st_dtype dtype;
  int ndim;
  int64_t shape[SYNCO_ST_MAX_DIMS];
  size_t begin, end;       /* byte offsets into the data section */
} synco_st_entry;

typedef struct {
  char *path;              /* for messages */
  uint8_t *buf;            /* the whole file */
  size_t size;
  const uint8_t *data;     /* start of the data section */
  size_t data_size;
  synco_st_entry *entries;
  int count;
  synco_st_entry **by_name;  /* entries sorted by name: linear-time duplicate check, O(log n) synco_st_find */
  char **meta_keys, **meta_values;
  int meta_count;
} synco_safetensors;

/* Reads and validates a file: a regular file only (a FIFO or a device is refused at once, base/file_read.h), whose
 * header is read and judged before its tensors are read, so a large file that is not a safetensors file costs a
 * few bytes of reading. On failure returns SYNCO_ERR_IO/SYNCO_ERR_FORMAT with "<path>: <problem>". */
synco_status synco_st_open(synco_safetensors *st, const char *path);
/* synco_st_open of the header alone: names, dtypes, shapes and metadata, no tensor bytes (synco_st_bytes and the
 * getters are not for it). */
synco_status synco_st_open_header(synco_safetensors *st, const char *path);
/* Validates an in-memory image (copied); `name` is used in messages. For fuzzing and tests. */
synco_status synco_st_parse(synco_safetensors *st, const void *bytes, size_t size, const char *name);
void synco_st_close(synco_safetensors *st);

const synco_st_entry *synco_st_find(const synco_safetensors *st, const char *name);
const void *synco_st_bytes(const synco_safetensors *st, const synco_st_entry *e);
size_t synco_st_numel(const synco_st_entry *e);
/* Metadata value for key, or NULL. */
const char *synco_st_meta(const synco_safetensors *st, const char *key);
/* Copies tensor `name` into dst as fp32 (F32, or BF16/F16/F64 converted), checking its element count is numel
 * and, if shape != NULL, that its shape is exactly shape[0..ndim). Missing name or mismatch: SYNCO_ERR_FORMAT.
 * A tensor holding NaN or inf is refused too ("<path>: tensor '<name>' holds NaN/inf values (...)"): weights,
 * momentum and queues are never legitimately non-finite, and a diverged file must not be trained on. */
synco_status synco_st_get_f32(const synco_safetensors *st, const char *name, float *dst, size_t numel,
                              const int *shape, int ndim);
/* Refuses the first float tensor (F32, F64, F16, BF16) of the file that holds NaN or inf, with the message of
 * synco_st_get_f32. One pass over the file's floats, nothing allocated. */
synco_status synco_st_check_finite(const synco_safetensors *st);

/* ---- writing ---- */
typedef struct synco_st_writer synco_st_writer;
synco_st_writer *synco_st_writer_new(void);
void synco_st_writer_free(synco_st_writer *w);
/* Adds a tensor; `data` is referenced, not copied, and must stay valid until synco_st_write returns. */
synco_status synco_st_add(synco_st_writer *w, const char *name, synco_st_dtype dtype, int ndim, const int64_t *shape,
                          const void *data);
/* Host memory that the writer owns (freed by synco_st_writer_free), zeroed: where a caller stages tensors that live
 * elsewhere (a backend's memory) until synco_st_write. NULL with a message when out of memory. */
void *synco_st_writer_hold(synco_st_writer *w, size_t bytes);
/* Convenience for fp32 tensors with int shapes. */
synco_status synco_st_add_f32(synco_st_writer *w, const char *name, const float *data, int ndim, const int *shape);
synco_status synco_st_set_meta(synco_st_writer *w, const char *key, const char *value);
/* Writes path atomically (tmp file, fsync, rename). */
synco_status synco_st_write(synco_st_writer *w, const char *path);

#endif
