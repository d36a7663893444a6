/* An image encoder: a torchvision-exact ResNet backbone plus the optional MoCo-v2 projection head.
 *
 * All trainable parameters live in ONE contiguous fp32 buffer, in torchvision's named_parameters() order,
 * with a table of named views (torchvision key names: "conv1.weight", "layer1.0.bn1.weight", ...,
 * head: "fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias" with the MLP, "fc.weight"/"fc.bias" without).
 * The gradient buffer mirrors it. BN running statistics ("...running_mean", "...running_var") live in a
 * second contiguous buffer (not trained, not EMA'd: a key encoder keeps its own).
 *
 * Activations and saved statistics are allocated once at creation for the planned batch; forward and
 * backward never allocate. One forward (train) must be followed by at most one backward before the next
 * forward. */
#ifndef SYNCO_NN_ENCODER_H
#define SYNCO_NN_ENCODER_H

#include <stdint.h>

#include "base/op_times.h"
#include "synco.h"
#include "tensor/backend.h"

typedef struct {
  int depth;        /* 18, 34 or 50 */
  int width;        /* base width: 64 as torchvision; 16 or 32 for small CPU runs */
  int cifar_stem;   /* 1: conv1 = 3x3 stride 1 pad 1, no max-pool (MoCo CIFAR recipe) */
  int head;         /* 0: backbone only (features); 1: projection head on top */
  int mlp;          /* with head: 1 = Linear(d,d) -> ReLU -> Linear(d,dim); 0 = Linear(d,dim) */
  int dim;          /* head output size (MoCo: 128) */
  int bn_splits;    /* Split-BN groups in train mode (1 = plain BN); the batch must divide by it */
  int forward_only; /* 1: no backward ever (a MoCo key encoder): activations share four buffers instead of
                       each keeping its own, and synco_encoder_backward refuses */
} synco_encoder_config;

/* The largest base width and image side an encoder is built for. */
#define SYNCO_ENCODER_MAX_WIDTH 4096
#define SYNCO_ENCODER_MAX_IMAGE 16384

/* A named view into the parameter or buffer array. */
typedef struct {
  char name[64];    /* torchvision key */
  size_t offset;    /* in floats, from the start of its buffer */
  size_t numel;
  int ndim;
  int shape[4];
} synco_param_view;

typedef struct synco_encoder synco_encoder;

/* Plans every layer for batches of `batch` images of image_size x image_size. Parameters are
 * initialized as torchvision does (kaiming_normal fan_out for convs, BN 1/0, nn.Linear's default),
 * drawn from the counter-based RNG keyed by `seed`. */
synco_status synco_encoder_create(synco_encoder **out, synco_backend *be, const synco_encoder_config *cfg,
                                  int batch, int image_size, uint64_t seed);
void synco_encoder_free(synco_encoder *enc);

/* The memory synco_encoder_create would take on `be` for this config, batch and image size, in bytes: found by
 * building the same layout (the same shapes, the same synco_nn_alloc calls, be's layouts) without allocating it, and
 * by asking be what each layer's plan would take (its *_plan_bytes ops), so it follows the encoder and the backend
 * as they change. Nothing is planned or allocated on be. */
typedef struct {
  size_t params, grads, buffers; /* parameter buffer, its gradient mirror, BN running statistics */
  size_t activations;            /* activations, saved BN statistics, gradient buffers A/B/S, staging matrix */
  synco_plan_bytes plans;        /* the layers' plans as be reports them (merge encoders on one backend with
                                    synco_plan_add: its shared buffers count once) */
  size_t backend_ws;             /* synco_plan_total(&plans): this encoder's plans alone */
  size_t total;
  int out_dim;                   /* as synco_encoder_out_dim would say */
} synco_encoder_memory;
synco_status synco_encoder_memory_plan(synco_backend *be, const synco_encoder_config *cfg, int batch, int image_size,
                                       synco_encoder_memory *out);

const synco_encoder_config *synco_encoder_cfg(const synco_encoder *enc);
/* The backend whose memory holds this encoder's parameters, gradients, buffers and activations. */
synco_backend *synco_encoder_backend(const synco_encoder *enc);
int synco_encoder_batch(const synco_encoder *enc);
int synco_encoder_image_size(const synco_encoder *enc);
int synco_encoder_feature_dim(const synco_encoder *enc);  /* backbone output width: 512·w/64 or 2048·w/64 */
int synco_encoder_out_dim(const synco_encoder *enc);      /* dim with a head, else feature_dim */

float *synco_encoder_params(synco_encoder *enc);
float *synco_encoder_grads(synco_encoder *enc);
size_t synco_encoder_num_params(const synco_encoder *enc);
float *synco_encoder_buffers(synco_encoder *enc);          /* BN running mean / var */
size_t synco_encoder_num_buffers(const synco_encoder *enc);
const synco_param_view *synco_encoder_param_views(const synco_encoder *enc, int *count);
const synco_param_view *synco_encoder_buffer_views(const synco_encoder *enc, int *count);
/* Every parameter (named_parameters() order) and then every BN buffer as a named backend buffer: torchvision name,
 * data in the encoder's backend memory, shape. What checkpoints and exports write and read (nn/encoder_weights.h). */
const synco_named_buffer *synco_encoder_named_buffers(const synco_encoder *enc, int *count);
/* Finds a view by torchvision name in params (is_buffer = 0) or buffers (1); NULL if absent. */
const synco_param_view *synco_encoder_find(const synco_encoder *enc, const char *name, int *is_buffer);

/* Multiply-accumulates of one forward pass of one image (for GFLOP/s figures). */
double synco_encoder_macs_per_image(const synco_encoder *enc);

/* Forward. x: [batch, 3, S, S] plain fp32, normalized. out: [batch, out_dim] plain fp32 (not L2-normalized), host
 * memory.
 * train = 1: BN uses batch statistics (Split-BN per config), updates running stats, saves for backward.
 * train = 0: BN uses running statistics; nothing is saved. n may be < batch only when train = 0. */
synco_status synco_encoder_forward(synco_encoder *enc, float *out, const float *x, int n, int train);
/* The same with out in backend memory (the training step's q and k). x may be host or backend memory in both. */
synco_status synco_encoder_forward_to_backend(synco_encoder *enc, float *out, const float *x, int n, int train);
/* Backward of the last train forward: dout [batch, out_dim]; parameter gradients ACCUMULATE into grads. */
synco_status synco_encoder_backward(synco_encoder *enc, const float *dout);
/* While set, synco_encoder_backward calls fn(ctx, first) each time it has finished the gradients of the parameters
 * from index `first` to the last (the parameters are laid out in the forward's order: the head's last, then each
 * stage's blocks backwards), down to first = 0 at its end: a data-parallel step starts each bucket's all-reduce
 * there (synco_dist_buckets_ready). An error from fn ends the backward with it. fn NULL: none. */
typedef synco_status (*synco_grads_ready_fn)(void *ctx, size_t first);
void synco_encoder_on_grads_ready(synco_encoder *enc, synco_grads_ready_fn fn, void *ctx);
/* The backbone features (pooled, before the head) of the last forward, as they were: feats [batch, feature_dim]
 * backend memory. Reads the encoder's activations only (a backward after it is unchanged). */
synco_status synco_encoder_last_features(synco_encoder *enc, float *feats);
/* Backbone features (before the head), eval-mode BN: feats [n, feature_dim] host memory, n <= batch. */
synco_status synco_encoder_features(synco_encoder *enc, float *feats, const float *x, int n);

/* Plans every layer again on its backend, for the number of threads now in effect (omp_set_num_threads): the
 * parameters, activations and gradients stay as they are. A CPU plan is made for the threads there are at plan time
 * (oneDNN's kernels split their work into that many shares), so a process that changes its thread count between
 * steps (synco's --adapt-threads) replans. Allocates; call between steps. */
synco_status synco_encoder_replan(synco_encoder *enc);

/* Benchmark instrumentation: with on = 1, the wall time of every op call (each convolution's forward, backward data
 * and backward weights, each BN's, ReLU's, pool's and linear layer's forward and backward), each between two waits
 * for the backend, is added to the op table that synco_encoder_op_times reads (one entry per layer, named as
 * torchvision names its module: "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu" for a block's residual add and
 * ReLU, "avgpool", "fc.0"; a BN's forward includes the block's add and ReLU where the backend fuses them), and the
 * convolutions' to a counter that synco_encoder_conv_seconds reads (and, with reset = 1, zeroes). Off by default;
 * costs two clock reads and two backend waits per op when on. */
void synco_encoder_set_timing(synco_encoder *enc, int on);
double synco_encoder_conv_seconds(synco_encoder *enc, int reset);
const synco_op_time *synco_encoder_op_times(const synco_encoder *enc, int *count);
void synco_encoder_op_times_reset(synco_encoder *enc);

#endif
