/* synco: self-supervised pretraining of image encoders with SynCo (MoCo-v2 + synthetic hard negatives).
 * The public C API. Internal modules live under src/ and are not installed. */
#ifndef SYNCO_H
#define SYNCO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SYNCO_OK = 0,
  SYNCO_ERR_ARG,          /* a bad argument or option */
  SYNCO_ERR_IO,           /* a file could not be opened, read or written */
  SYNCO_ERR_FORMAT,       /* a file's contents are malformed */
  SYNCO_ERR_NOMEM,        /* an allocation failed */
  SYNCO_ERR_BACKEND,      /* oneDNN / CUDA reported an error */
  SYNCO_ERR_NUMERIC,      /* a non-finite loss or value */
  SYNCO_ERR_UNSUPPORTED,  /* not available in this build or on this machine */
} synco_status;

/* Name of a status code. */
const char *synco_strerror(synco_status s);
/* The last error message recorded on this thread: one line naming the file and the problem. */
const char *synco_last_error(void);
/* Library version, "MAJOR.MINOR.PATCH". */
const char *synco_version(void);

#ifdef __cplusplus
}
#endif
#endif
