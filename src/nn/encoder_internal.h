/* Internals of the encoder shared by encoder.c (creation, parameter layout, init, orchestration), resnet.c
 * (stem, BasicBlock, Bottleneck) and head.c (the MoCo-v2 projection head). Not part of any public API.
 *
 * Layers refer to their parameters by OFFSET into the one parameter buffer (and the gradient buffer that
 * mirrors it), and to BN running statistics by offset into the buffer array, so the layout can be built
 * before those buffers exist. Activations are synco_tensors in the backend's layout, allocated at creation for
 * the planned batch; a layer holds pointers to its input and output tensors, which live in the encoder or its
 * block array (both fixed in memory once created).
 *
 * Gradient flow uses three buffers each sized to the largest activation: A and B alternate (one holds the
 * gradient flowing in, the other receives the next one), S carries a block's shortcut gradient, and in the
 * forward pass S is the downsample branch's scratch output. Activation gradients assign; the shortcut is the
 * one tensor with two consumers and is added with be->add(accumulate = 1). */
#ifndef SYNCO_NN_ENCODER_INTERNAL_H
#define SYNCO_NN_ENCODER_INTERNAL_H

#include <stddef.h>

#include "base/op_times.h"
#include "nn/encoder.h"

#define SYNCO_NN_SLOTS 4 /* shared activation buffers of a forward-only encoder (synco_nn_act_slot) */

/* How synco_encoder_create initializes a parameter (torchvision's rules). */
enum { SYNCO_NN_INIT_KAIMING_FAN_OUT, SYNCO_NN_INIT_ONE, SYNCO_NN_INIT_ZERO, SYNCO_NN_INIT_UNIFORM_FAN_IN };

typedef struct {
  int kind;
  int fan;                 /* fan_out for convolutions, fan_in for linear weight and bias */
} synco_nn_init;

typedef struct {
  synco_conv_op op;
  int planned;
  char name[40];           /* torchvision's module name ("layer1.0.conv1"), for the op times */
  int tslot;               /* its entry in enc->times (base/op_times.h) */
  size_t w;                /* offset of weight [cout, cin, kh, kw] */
  const synco_tensor *x;   /* saved input */
  synco_tensor *y;
} synco_nn_conv;

typedef struct {
  synco_bn_op op;
  int planned;
  char name[40];
  int tslot;
  size_t gamma, beta;      /* parameter offsets, [c] each */
  size_t mean, var;        /* buffer offsets, [c] each */
  float *save_mean, *save_invstd; /* [groups * c] */
  const synco_tensor *x;
  synco_tensor *y;
} synco_nn_bn;

typedef struct {
  int in, out;
  size_t w, b;             /* offsets of weight [out, in] and bias [out] */
  char name[40];
  int tslot;
  const synco_tensor *x;
  synco_tensor *y;
} synco_nn_linear;

/* One torchvision BasicBlock or Bottleneck. BasicBlock uses conv1/bn1, conv2/bn2; Bottleneck also conv3/bn3.
 * The last BN writes straight into `out`; the shortcut is then added and ReLU applied in place. */
typedef struct {
  int bottleneck, has_down;
  synco_nn_conv conv1, conv2, conv3, down;
  synco_nn_bn bn1, bn2, bn3, down_bn;
  const synco_tensor *in;
  synco_tensor t1, a1, t2, a2, t3, td, out;
  synco_tensor sc;         /* downsample BN output: shape of out, data = the shared buffer S */
  char relu_name[32];      /* "layer1.0.relu": the op times' name of the residual's add and ReLU */
  int tslot;
} synco_nn_block;

struct synco_encoder {
  synco_backend *be;
  synco_encoder_config cfg;
  int batch, image_size, feature_dim, out_dim;
  double macs;

  /* parameter layout (views in named_parameters() order) and init rules */
  synco_param_view *pviews, *bviews;
  synco_nn_init *pinit;
  float *bfill;            /* initial value of each buffer view */
  int np, nb, pcap, bcap;
  size_t n_params, n_buffers;
  float *params, *grads, *buffers;
  synco_named_buffer *named; /* the views over params and buffers (synco_encoder_named_buffers) */
  int nnamed;

  /* stem */
  synco_tensor x_t, t0, a0, p0;
  synco_nn_conv conv1;
  synco_nn_bn bn1;
  synco_pool_op pool;
  int pool_planned;
  const synco_tensor *stem_out;

  synco_nn_block *blocks;
  int nblocks;
  synco_tensor feat;       /* [batch, feature_dim] matrix after global average pooling */

  /* head */
  synco_nn_linear fc0, fc2; /* with mlp: fc.0 and fc.2; without: fc2 is "fc" */
  synco_tensor h1, hout;
  synco_tensor *out_t;     /* hout, or feat without a head */
  synco_tensor dout_t, dh1, dfeat;

  /* gradient buffers (see the top of this file) and the host staging matrix */
  size_t max_act_bytes;
  void *gA, *gB, *gS;
  float *stage;

  void **allocs;
  int nallocs, alloc_cap;
  int saved;               /* the last forward was train mode: backward may run */
  /* forward-only encoders: activations registered by synco_nn_act_slot share enc->slots */
  synco_tensor **slot_t;
  int *slot_id;
  int nslot_t, slot_cap;
  void *slots[SYNCO_NN_SLOTS];
  int timing;              /* synco_encoder_set_timing */
  synco_op_times times;    /* while timing: every op's seconds (synco_encoder_op_times) */
  int tslot_io, tslot_pool, tslot_avgpool, tslot_head_relu;
  synco_grads_ready_fn grads_ready; /* synco_encoder_on_grads_ready */
  void *grads_ready_ctx;
  size_t backbone_params;  /* the parameters before the head's (resnet's; the head's follow) */
  double conv_s;           /* seconds spent in convolution calls while timing */
  /* synco_encoder_memory: a dry build counts what synco_nn_alloc would allocate and allocates nothing, and asks
   * the backend what the layers' plans would take (its *_plan_bytes) instead of planning them */
  int dry;
  size_t dry_bytes;
  synco_plan_bytes dry_plans;
};

/* encoder.c: while timing, a call's seconds: begin waits for the backend and reads the clock (0 when not timing);
 * end waits again and adds the seconds to enc->times (and convolutions' to conv_s). */
double synco_nn_time_begin(synco_encoder *enc);
void synco_nn_time_end(synco_encoder *enc, int *slot, const char *name, const char *op, int pass, double t0);

/* encoder.c: layout building */
synco_status synco_nn_param(synco_encoder *enc, size_t *off, const char *name, int ndim, const int *shape, int init,
                            int fan);
synco_status synco_nn_buffer(synco_encoder *enc, size_t *off, const char *name, int numel, float fill);
/* Allocates an activation [batch, c, h, w] in the backend's layout, zeroed. */
synco_status synco_nn_act(synco_encoder *enc, synco_tensor *t, int c, int h, int w);
/* Like synco_nn_act, but a forward-only encoder gives the tensor one of SYNCO_NN_SLOTS shared buffers (bound
 * after the build, each sized to the largest such activation); the caller picks slots so that no layer's
 * input and output, and no tensor still needed later in the forward pass, share one. */
synco_status synco_nn_act_slot(synco_encoder *enc, synco_tensor *t, int c, int h, int w, int slot);
/* Zeroed, 64-byte aligned memory freed with the encoder; NULL (error recorded) on failure. */
void *synco_nn_alloc(synco_encoder *enc, size_t bytes);

/* resnet.c */
synco_status synco_nn_resnet_build(synco_encoder *enc);
void synco_nn_resnet_release(synco_encoder *enc);
/* Plans every layer again (the parameters, activations and gradients stay): for a new thread count. */
synco_status synco_nn_resnet_replan(synco_encoder *enc);
void synco_nn_resnet_bind(synco_encoder *enc);   /* points the downsample scratch at the buffer S */
synco_status synco_nn_resnet_forward(synco_encoder *enc, int train);
synco_status synco_nn_resnet_backward(synco_encoder *enc, const synco_tensor *dfeat);

/* head.c */
synco_status synco_nn_head_build(synco_encoder *enc);
synco_status synco_nn_head_forward(synco_encoder *enc);
/* Backward from dout_t to the feature gradient; returns which tensor holds it. */
synco_status synco_nn_head_backward(synco_encoder *enc, const synco_tensor **dfeat);

#endif
