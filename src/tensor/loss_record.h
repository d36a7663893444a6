/* The layouts of the loss records (synco_loss_record_fn and synco_xent_fn in tensor/backend.h): doubles in backend
 * memory that each InfoNCE call, or each classifier's cross-entropy, adds its scalars to on the device, so a
 * training step downloads nothing; the host reads a record once per log interval (ssl/moco.c, eval/linear.c) and
 * zeroes it. */
#ifndef SYNCO_TENSOR_LOSS_RECORD_H
#define SYNCO_TENSOR_LOSS_RECORD_H

enum {
  SYNCO_REC_LOSS,       /* Σ over calls of the batch-mean loss */
  SYNCO_REC_ACC,        /* Σ of the proxy accuracy (every logit, synthetic ones included) */
  SYNCO_REC_LOSS_QUEUE, /* Σ of the MoCo-only loss (the positive against the queue alone) */
  SYNCO_REC_ACC_QUEUE,  /* Σ of its accuracy */
  SYNCO_REC_CALLS,      /* calls added */
  SYNCO_REC_BAD,        /* 1 once a call's loss was not finite */
  SYNCO_REC_BAD_TAG,    /* the tag (the step) of the first such call */
  SYNCO_REC_LEN
};

/* A classifier's softmax cross-entropy (synco_xent_fn): */
enum {
  SYNCO_XREC_LOSS,    /* Σ over calls of the batch-mean loss */
  SYNCO_XREC_HITS,    /* top-1 hits (an integer, exact in a double) */
  SYNCO_XREC_ROWS,    /* rows scored */
  SYNCO_XREC_CALLS,   /* calls added */
  SYNCO_XREC_BAD,     /* 1 once a call's loss was not finite */
  SYNCO_XREC_BAD_TAG, /* the tag of the first such call */
  SYNCO_XREC_LEN
};

#endif
