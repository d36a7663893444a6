/* TensorBoard event files: scalars a run logs, written as TFRecords of tensorboard.Event messages
 * (proto/tensorboard_event.proto, encoded by protobuf-c). A TFRecord is
 *   uint64 length (little-endian) | uint32 masked CRC32C of those 8 bytes | data | uint32 masked CRC32C of data
 * with CRC32C the Castagnoli CRC and mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. The first record of a file is
 * an Event with file_version "brain.Event:2"; each later one holds a Summary of scalar values at a step.
 * Built only with protobuf-c (SYNCO_HAVE_PROTOBUF_C); without it synco_tfevents_open returns SYNCO_ERR_UNSUPPORTED. */
#ifndef SYNCO_IO_TFEVENTS_H
#define SYNCO_IO_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "synco.h"

/* CRC32C (Castagnoli, reflected polynomial 0x82f63b78) of n bytes, and its TFRecord mask. */
uint32_t synco_crc32c(const void *data, size_t n);
uint32_t synco_crc32c_masked(const void *data, size_t n);

/* Whether event files can be written (built with protobuf-c). */
int synco_tfevents_available(void);

typedef struct synco_tfevents synco_tfevents;

/* Creates DIR/events.out.tfevents.<seconds>.<host>.<pid>.synco (never through a link) and writes its first record.
 * The file's path is in synco_tfevents_path. */
synco_status synco_tfevents_open(synco_tfevents **out, const char *dir);
const char *synco_tfevents_path(const synco_tfevents *w);
/* One record: the n scalars tags[i] = values[i] at step, written at wall_time (Unix seconds); flushed. */
synco_status synco_tfevents_scalars(synco_tfevents *w, int64_t step, double wall_time, const char *const *tags,
                                    const float *values, int n);
/* A restart marker: a SessionLog START event at step, written now. TensorBoard's reader (file_version 2) then drops every event
 * it read before with a step of at least `step`: the steps a run resumed from an earlier checkpoint trains again
 * (log.jsonl is cut back to its checkpoint the same way). */
synco_status synco_tfevents_start(synco_tfevents *w, int64_t step);
void synco_tfevents_close(synco_tfevents *w);

#endif
