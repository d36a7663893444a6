/* NumPy .npy files (format version 1.0): float32 matrices and int64 label vectors, little-endian, C order,
 * so Python users load exported features with numpy.load. The reader accepts exactly what the writer writes
 * (plus any 1-D / 2-D '<f4' or '<i8' v1.0 file) and is used by the tests and tools. */
#ifndef SYNCO_EVAL_NPY_H
#define SYNCO_EVAL_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "synco.h"

/* Writes x[rows, cols] as a '<f4' array of shape (rows, cols). */
synco_status synco_npy_write_f32(const char *path, const float *x, size_t rows, size_t cols);
/* Writes y[n] as a '<i8' array of shape (n,). */
synco_status synco_npy_write_i64(const char *path, const int64_t *y, size_t n);
/* Same, converting int labels to int64. */
synco_status synco_npy_write_labels(const char *path, const int *y, size_t n);

/* Reads a '<f4' array of 1 or 2 dimensions (a 1-D array gives cols = 1); *out is malloc'ed. */
synco_status synco_npy_read_f32(const char *path, float **out, size_t *rows, size_t *cols);
/* Reads a 1-D '<i8' array; *out is malloc'ed. */
synco_status synco_npy_read_i64(const char *path, int64_t **out, size_t *n);

#endif
