/* The strict test backend: the reference ops over memory that the host cannot touch, so that the CPU finds what
 * would fault on a GPU (`--backend strict`; the test suite runs every command on it).
 *  - Every allocation is its own mapping, PROT_NONE except while one of this backend's ops or its copy/memset runs:
 *    host code that reads or writes backend memory directly gets SIGSEGV, and the handler installed here names the
 *    allocation and prints the stack before the process dies.
 *  - Every pointer an op takes as backend memory (tensor data, weights, statistics, buffers) must lie in a live
 *    allocation of this backend: host memory handed to an op is refused with the op and the argument named (a
 *    GPU kernel would fault on it). The op structs (synco_conv_op, the negatives' draws descriptor) are host memory
 *    by contract.
 *  - `copy` checks its direction against who owns each pointer (H2D: host source, backend destination, ...).
 *  - Downloads and syncs are counted (synco_backend_strict_counts): where a GPU's host would wait.
 *  - New allocations are filled with NaN bit patterns, so a read of memory nobody wrote shows in the results.
 * The arithmetic is the reference backend's, so outputs equal `--backend ref`'s bit for bit; under --precision bf16
 * it is the cuda backend's bf16 arithmetic emulated over the reference ops (bf16_emul.c: NHWC bf16 activations,
 * bf16 products), so that the CPU runs every command as a GPU's bf16 does. Not thread-safe across backends used from
 * several threads at once (no command does that). */
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/registry.h"
#include "base/status.h"

typedef struct {
  char *p;
  size_t bytes, mapped;
} strict_block;

typedef struct {
  synco_backend *ref; /* the arithmetic */
  strict_block *blocks;
  int n, cap;
  int open; /* > 0 while an op runs: every block is readable and writable */
  long downloads, syncs; /* synco_backend_strict_counts */
} strict_ctx;

/* The live backends, for the SIGSEGV handler (a command has one or two). */
#define STRICT_MAX 8
static strict_ctx *g_live[STRICT_MAX];

static const strict_block *find_block(const strict_ctx *c, const void *p) {
  const char *q = (const char *)p;
  for (int i = 0; i < c->n; i++)
    if (q >= c->blocks[i].p && q < c->blocks[i].p + c->blocks[i].mapped) return &c->blocks[i];
  return NULL;
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  for (int k = 0; k < STRICT_MAX; k++) {
    const strict_block *b = g_live[k] ? find_block(g_live[k], si->si_addr) : NULL;
    if (!b) continue;
    char msg[256];
    const int n = snprintf(msg, sizeof msg,
                           "strict backend: host code touched backend memory at %p (offset %zu of a %zu-byte "
                           "allocation); on a GPU this faults. Stack:\n",
                           si->si_addr, (size_t)((char *)si->si_addr - b->p), b->bytes);
    if (write(2, msg, (size_t)n) < 0) break;
    void *frames[32];
    backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
    break;
  }
  signal(sig, SIG_DFL); /* the fault repeats and ends the process as it would have */
}

static void protect_all(strict_ctx *c, int prot) {
  for (int i = 0; i < c->n; i++) mprotect(c->blocks[i].p, c->blocks[i].mapped, prot);
}

static void open_mem(strict_ctx *c) {
  if (c->open++ == 0) protect_all(c, PROT_READ | PROT_WRITE);
}

static void close_mem(strict_ctx *c) {
  if (--c->open == 0) protect_all(c, PROT_NONE);
}

static strict_ctx *ctx(synco_backend *be) { return (strict_ctx *)be->ctx; }

/* ---- memory ------------------------------------------------------------------------------------------------- */

static void *strict_alloc(synco_backend *be, size_t bytes) {
  strict_ctx *c = ctx(be);
  const size_t page = (size_t)sysconf(_SC_PAGESIZE), mapped = ((bytes ? bytes : 1) + page - 1) / page * page;
  if (c->n == c->cap) {
    const int cap = c->cap ? 2 * c->cap : 64;
    strict_block *nb = realloc(c->blocks, (size_t)cap * sizeof *nb);
    if (!nb) {
      synco_fail(SYNCO_ERR_NOMEM, "strict backend: out of memory for its allocation table");
      return NULL;
    }
    c->blocks = nb;
    c->cap = cap;
  }
  char *p = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    synco_fail(SYNCO_ERR_NOMEM, "strict backend: cannot map %zu bytes", bytes);
    return NULL;
  }
  const uint32_t nan = 0x7fc00001u; /* a quiet NaN as float; a large value as an integer */
  for (size_t i = 0; i + 4 <= mapped; i += 4) memcpy(p + i, &nan, 4);
  if (!c->open) mprotect(p, mapped, PROT_NONE);
  c->blocks[c->n++] = (strict_block){p, bytes, mapped};
  return p;
}

static void strict_free(synco_backend *be, void *p) {
  strict_ctx *c = ctx(be);
  if (!p) return;
  for (int i = 0; i < c->n; i++)
    if (c->blocks[i].p == p) {
      munmap(p, c->blocks[i].mapped);
      c->blocks[i] = c->blocks[--c->n];
      return;
    }
  fprintf(stderr, "strict backend: free of %p, which it did not allocate\n", p);
  abort();
}

/* SYNCO_OK when [p, p + bytes) lies in one allocation of this backend. */
static synco_status need(synco_backend *be, const void *p, size_t bytes, const char *op, const char *arg) {
  if (!p) return SYNCO_OK; /* the op itself judges a missing argument */
  const strict_block *b = find_block(ctx(be), p);
  if (!b)
    return synco_fail(SYNCO_ERR_BACKEND, "strict %s: %s (%p) is not backend memory (a GPU would fault)", op, arg, p);
  if ((const char *)p + bytes > b->p + b->bytes)
    return synco_fail(SYNCO_ERR_BACKEND, "strict %s: %s runs %zu bytes past the end of its allocation", op, arg,
                      (size_t)((const char *)p + bytes - (b->p + b->bytes)));
  return SYNCO_OK;
}

static synco_status need_host(synco_backend *be, const void *p, const char *op, const char *arg) {
  if (p && find_block(ctx(be), p))
    return synco_fail(SYNCO_ERR_BACKEND, "strict %s: %s (%p) is backend memory where host memory is expected", op, arg,
                      p);
  return SYNCO_OK;
}

static synco_status need_t(synco_backend *be, const synco_tensor *t, const char *op, const char *arg) {
  return t ? need(be, t->data, synco_tensor_numel(t) * synco_dtype_size(t->dtype), op, arg) : SYNCO_OK;
}

static synco_status strict_memset(synco_backend *be, void *dst, int byte, size_t bytes) {
  SYNCO_TRY(need(be, dst, bytes, "memset", "dst"));
  open_mem(ctx(be));
  const synco_status s = ctx(be)->ref->memset(ctx(be)->ref, dst, byte, bytes);
  close_mem(ctx(be));
  return s;
}

static synco_status strict_copy(synco_backend *be, void *dst, const void *src, size_t bytes, synco_copy_dir dir) {
  static const char *names[] = {"H2D", "D2H", "D2D"};
  const char *op = dir <= SYNCO_COPY_D2D ? names[dir] : "copy";
  char what[32];
  snprintf(what, sizeof what, "copy %s", op);
  SYNCO_TRY(dir == SYNCO_COPY_H2D ? need_host(be, src, what, "the source") : need(be, src, bytes, what, "the source"));
  SYNCO_TRY(dir == SYNCO_COPY_D2H ? need_host(be, dst, what, "the destination")
                                  : need(be, dst, bytes, what, "the destination"));
  if (dir == SYNCO_COPY_D2H) ctx(be)->downloads++;
  open_mem(ctx(be));
  const synco_status s = ctx(be)->ref->copy(ctx(be)->ref, dst, src, bytes, dir);
  close_mem(ctx(be));
  return s;
}

static synco_status strict_sync(synco_backend *be) {
  ctx(be)->syncs++;
  return SYNCO_OK;
}

static synco_bn_fwd_train_add_relu_fn strict_bn_fwd_train_add_relu;
static synco_add_relu_bwd_fn strict_add_relu_bwd;

synco_status synco_backend_strict_bf16(synco_backend *be, int on) {
  strict_ctx *c = ctx(be);
  if (on == synco_backend_supports(c->ref, SYNCO_CAP_BF16)) return SYNCO_OK;
  synco_backend *r = NULL;
  SYNCO_TRY(on ? synco_backend_bf16_emul_create(&r) : synco_backend_ref_create(&r));
  synco_backend_destroy(c->ref);
  c->ref = r;
  be->bn_fwd_train_add_relu = r->bn_fwd_train_add_relu ? strict_bn_fwd_train_add_relu : NULL;
  be->add_relu_bwd = r->add_relu_bwd ? strict_add_relu_bwd : NULL;
  return SYNCO_OK;
}

void synco_backend_strict_counts(synco_backend *be, long *downloads, long *syncs) {
  const int strict = be && !strcmp(be->name, "strict");
  *downloads = strict ? ctx(be)->downloads : 0;
  *syncs = strict ? ctx(be)->syncs : 0;
}
static int strict_threads(synco_backend *be) { return ctx(be)->ref->threads(ctx(be)->ref); }
static int strict_supports(synco_backend *be, synco_capability cap) {
  if (cap == SYNCO_CAP_DEVICE_MEMORY) return 1; /* PROT_NONE to the host: what a GPU's memory is */
  return cap == SYNCO_CAP_BF16 || cap == SYNCO_CAP_ASYNC ? synco_backend_supports(ctx(be)->ref, cap) : 0;
}
static synco_layout strict_act_layout(synco_backend *be, int c, int h, int w, synco_dtype dt) {
  return ctx(be)->ref->act_layout(ctx(be)->ref, c, h, w, dt);
}
static size_t strict_act_bytes(synco_backend *be, int n, int c, int h, int w, synco_dtype dt) {
  return ctx(be)->ref->act_bytes(ctx(be)->ref, n, c, h, w, dt);
}

/* An op: its pointer checks, then the reference op with the memory open. */
#define RUN(call, ...)              \
  do {                              \
    strict_ctx *c_ = ctx(be);       \
    synco_backend *r = c_->ref;     \
    __VA_ARGS__;                    \
    open_mem(c_);                   \
    const synco_status s_ = (call); \
    close_mem(c_);                  \
    return s_;                      \
  } while (0)
#define NEED(p, bytes, name) SYNCO_TRY(need(be, (p), (bytes), op, name))
#define NEED_T(t, name) SYNCO_TRY(need_t(be, (t), op, name))
#define F(n) ((size_t)(n) * sizeof(float))

/* ---- step ops ----------------------------------------------------------------------------------------------- */

static synco_status strict_gemm(synco_backend *be, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                                int lda, const float *b, int ldb, float beta, float *cc, int ldc) {
  const char *op = "gemm";
  RUN((r->gemm(r, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)), NEED(a, F(1), "A"); NEED(b, F(1), "B");
      NEED(cc, F(1), "C"));
}

static synco_status strict_sgd(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr,
                               float momentum, float wd, int first) {
  const char *op = "sgd";
  RUN((r->sgd(r, p, buf, grad, n, lr, momentum, wd, first)), NEED(p, F(n), "params");
      NEED(buf, F(n), "momentum buffer"); NEED(grad, F(n), "grads"));
}

static synco_status strict_ema(synco_backend *be, float *k, const float *q, size_t n, float m) {
  const char *op = "ema";
  RUN((r->ema(r, k, q, n, m)), NEED(k, F(n), "key params"); NEED(q, F(n), "query params"));
}

static synco_status strict_enqueue(synco_backend *be, float *queue, int K, int dim, int64_t *ptr, const float *rows,
                                   int n) {
  const char *op = "enqueue";
  RUN((r->enqueue(r, queue, K, dim, ptr, rows, n)), NEED(queue, F((size_t)K * dim), "queue");
      NEED(rows, F((size_t)n * dim), "rows"); NEED(ptr, sizeof(int64_t), "the queue pointer"));
}

static synco_status strict_permute_rows(synco_backend *be, float *dst, const float *src, const uint32_t *idx, int n,
                                        size_t cols, int scatter) {
  const char *op = "permute_rows";
  RUN((r->permute_rows(r, dst, src, idx, n, cols, scatter)), NEED(dst, F(cols), "dst"); NEED(src, F(cols), "src");
      NEED(idx, (size_t)n * 4, "idx"));
}

static synco_status strict_infonce_fwd(synco_backend *be, float *logits, int ld, double *row_loss, int *hits,
                                       const float *q, const float *k, int B, int K, int ncol, int dim, float T) {
  const char *op = "infonce_fwd";
  RUN((r->infonce_fwd(r, logits, ld, row_loss, hits, q, k, B, K, ncol, dim, T)),
      NEED(logits, F((size_t)B * ld), "logits");
      NEED(row_loss, (size_t)B * 2 * sizeof(double), "row_loss"); NEED(hits, (size_t)B * 2 * sizeof(int), "hits");
      NEED(q, F((size_t)B * dim), "q"); NEED(k, F((size_t)B * dim), "k"));
}

static synco_status strict_infonce_bwd(synco_backend *be, float *logits, int ld, float *dq, const float *k, int B,
                                       int K, int ncol, int dim, float T) {
  const char *op = "infonce_bwd";
  RUN((r->infonce_bwd(r, logits, ld, dq, k, B, K, ncol, dim, T)), NEED(logits, F((size_t)B * ld), "logits");
      NEED(dq, F((size_t)B * dim), "dq"); NEED(k, F((size_t)B * dim), "k"));
}

static synco_status strict_loss_record(synco_backend *be, double *rec, const double *row_loss, const int *hits, int B,
                                       double tag) {
  const char *op = "loss_record";
  RUN((r->loss_record(r, rec, row_loss, hits, B, tag)), NEED(rec, SYNCO_REC_LEN * sizeof(double), "the record");
      NEED(row_loss, (size_t)B * 2 * sizeof(double), "row_loss"); NEED(hits, (size_t)B * 2 * sizeof(int), "hits"));
}

static synco_status strict_xent(synco_backend *be, float *dz, const float *z, const int *labels, int n, int C,
                                float scale, double *rec, double tag) {
  const char *op = "xent";
  RUN((r->xent(r, dz, z, labels, n, C, scale, rec, tag)), NEED(z, F((size_t)n * C), "z");
      if (dz) NEED(dz, F((size_t)n * C), "dz"); NEED(labels, (size_t)n * sizeof(int), "labels");
      NEED(rec, SYNCO_XREC_LEN * sizeof(double), "the record"));
}

/* The draws descriptor is host memory; the arrays it points to are this backend's. */
static synco_status need_draws(synco_backend *be, const synco_negatives_draws *d, const char *op) {
  SYNCO_TRY(need_host(be, d, op, "the draws descriptor"));
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) NEED(d->pos[t], 0, "a draw array");
  for (int t = 0; t < 3; t++) NEED(d->coef[t], 0, "a coefficient array");
  NEED(d->noise, 0, "noise");
  NEED(d->hard, 0, "hard");
  NEED(d->inv_norm, 0, "inv_norm");
  NEED(d->row_sq, 0, "row_sq");
  return SYNCO_OK;
}

static synco_status strict_neg_draw(synco_backend *be, synco_negatives_draws *d, const synco_negatives_config *cfg,
                                    uint64_t seed, uint64_t step, uint64_t query0) {
  const char *op = "neg_draw";
  RUN((r->neg_draw(r, d, cfg, seed, step, query0)), SYNCO_TRY(need_draws(be, d, op)));
}

static synco_status strict_neg_logits(synco_backend *be, synco_negatives_draws *d, float *syn, int ld_syn,
                                      const float *l_neg, int ld_lneg, const float *q, const float *queue, float T) {
  const char *op = "neg_logits";
  RUN((r->neg_logits(r, d, syn, ld_syn, l_neg, ld_lneg, q, queue, T)), SYNCO_TRY(need_draws(be, d, op));
      NEED(syn, 0, "syn"); NEED(l_neg, 0, "l_neg"); NEED(q, 0, "q"); NEED(queue, 0, "queue"));
}

static synco_status strict_neg_backward(synco_backend *be, synco_negatives_draws *d, float *dq, float *g_raw,
                                        int ld_graw, const float *g_syn, int ld_gsyn, const float *q, float T) {
  const char *op = "neg_backward";
  RUN((r->neg_backward(r, d, dq, g_raw, ld_graw, g_syn, ld_gsyn, q, T)), SYNCO_TRY(need_draws(be, d, op));
      NEED(dq, 0, "dq"); NEED(g_raw, 0, "g_raw"); NEED(g_syn, 0, "g_syn"); NEED(q, 0, "q"));
}

/* The reference's workspace, in this backend's memory (synco_negatives_init allocates it here). */
static synco_status strict_neg_workspace(synco_backend *be, const synco_negatives_draws *d,
                                         synco_negatives_workspace *ws) {
  return ctx(be)->ref->neg_workspace(ctx(be)->ref, d, ws);
}

/* ---- layouts and layers --------------------------------------------------------------------------------------- */

/* The plain side may be host memory (an upload) or backend memory (a device-to-device copy, as the step's shuffled
 * key images): a GPU's copy tells them apart by the pointer, so both are allowed. */
static synco_status strict_to_backend(synco_backend *be, synco_tensor *dst, const float *src_plain) {
  const char *op = "to_backend";
  RUN((r->to_backend(r, dst, src_plain)), NEED_T(dst, "dst"));
}

static synco_status strict_to_plain(synco_backend *be, float *dst_plain, const synco_tensor *src) {
  const char *op = "to_plain";
  RUN((r->to_plain(r, dst_plain, src)), NEED_T(src, "src"));
}

static synco_status strict_conv_plan(synco_backend *be, synco_conv_op *op_) {
  const char *op = "conv_plan";
  RUN((r->conv_plan(r, op_)), SYNCO_TRY(need_host(be, op_, op, "op")));
}
static void strict_conv_release(synco_backend *be, synco_conv_op *op) { ctx(be)->ref->conv_release(ctx(be)->ref, op); }
/* What the plans would take: the reference's, which makes them (nothing here touches backend memory). */
static synco_status strict_conv_plan_bytes(synco_backend *be, const synco_conv_op *op, synco_plan_bytes *b) {
  return ctx(be)->ref->conv_plan_bytes(ctx(be)->ref, op, b);
}

static synco_status strict_conv_fwd(synco_backend *be, synco_conv_op *o, synco_tensor *y, const synco_tensor *x,
                                    const float *w) {
  const char *op = "conv_fwd";
  RUN((r->conv_fwd(r, o, y, x, w)), NEED_T(y, "y"); NEED_T(x, "x"); NEED(w, 0, "w"));
}

static synco_status strict_conv_bwd_data(synco_backend *be, synco_conv_op *o, synco_tensor *dx, const synco_tensor *dy,
                                         const float *w) {
  const char *op = "conv_bwd_data";
  RUN((r->conv_bwd_data(r, o, dx, dy, w)), NEED_T(dx, "dx"); NEED_T(dy, "dy"); NEED(w, 0, "w"));
}

static synco_status strict_conv_bwd_weights(synco_backend *be, synco_conv_op *o, float *dw, const synco_tensor *dy,
                                            const synco_tensor *x) {
  const char *op = "conv_bwd_weights";
  RUN((r->conv_bwd_weights(r, o, dw, dy, x)), NEED(dw, 0, "dw"); NEED_T(dy, "dy"); NEED_T(x, "x"));
}

static synco_status strict_bn_plan(synco_backend *be, synco_bn_op *o) {
  const char *op = "bn_plan";
  RUN((r->bn_plan(r, o)), SYNCO_TRY(need_host(be, o, op, "op")));
}
static void strict_bn_release(synco_backend *be, synco_bn_op *op) { ctx(be)->ref->bn_release(ctx(be)->ref, op); }
static synco_status strict_bn_plan_bytes(synco_backend *be, const synco_bn_op *op, synco_plan_bytes *b) {
  return ctx(be)->ref->bn_plan_bytes(ctx(be)->ref, op, b);
}

static synco_status strict_bn_fwd_train(synco_backend *be, synco_bn_op *o, synco_tensor *y, float *save_mean,
                                        float *save_invstd, float *running_mean, float *running_var,
                                        const synco_tensor *x, const float *gamma, const float *beta) {
  const char *op = "bn_fwd_train";
  RUN((r->bn_fwd_train(r, o, y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta)), NEED_T(y, "y");
      NEED_T(x, "x"); NEED(save_mean, 0, "save_mean"); NEED(save_invstd, 0, "save_invstd");
      NEED(running_mean, 0, "running_mean"); NEED(running_var, 0, "running_var"); NEED(gamma, 0, "gamma");
      NEED(beta, 0, "beta"));
}

/* The fused ops exist where the arithmetic behind has them (the bf16 emulation; the reference has none). */
static synco_status strict_bn_fwd_train_add_relu(synco_backend *be, synco_bn_op *o, synco_tensor *y, float *save_mean,
                                                 float *save_invstd, float *running_mean, float *running_var,
                                                 const synco_tensor *x, const float *gamma, const float *beta,
                                                 const synco_tensor *res) {
  const char *op = "bn_fwd_train_add_relu";
  RUN((r->bn_fwd_train_add_relu(r, o, y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, res)),
      NEED_T(y, "y"); NEED_T(x, "x"); NEED_T(res, "res"); NEED(save_mean, 0, "save_mean");
      NEED(save_invstd, 0, "save_invstd"); NEED(running_mean, 0, "running_mean"); NEED(running_var, 0, "running_var");
      NEED(gamma, 0, "gamma"); NEED(beta, 0, "beta"));
}

static synco_status strict_add_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *a,
                                        const synco_tensor *b, const synco_tensor *y) {
  const char *op = "add_relu_bwd";
  RUN((r->add_relu_bwd(r, dx, a, b, y)), NEED_T(dx, "dx"); NEED_T(a, "a"); NEED_T(b, "b"); NEED_T(y, "y"));
}

static synco_status strict_bn_fwd_eval(synco_backend *be, synco_bn_op *o, synco_tensor *y, const synco_tensor *x,
                                       const float *gamma, const float *beta, const float *running_mean,
                                       const float *running_var) {
  const char *op = "bn_fwd_eval";
  RUN((r->bn_fwd_eval(r, o, y, x, gamma, beta, running_mean, running_var)), NEED_T(y, "y"); NEED_T(x, "x");
      NEED(gamma, 0, "gamma"); NEED(beta, 0, "beta"); NEED(running_mean, 0, "running_mean");
      NEED(running_var, 0, "running_var"));
}

static synco_status strict_bn_bwd(synco_backend *be, synco_bn_op *o, synco_tensor *dx, float *dgamma, float *dbeta,
                                  const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                                  const float *gamma, const float *save_mean, const float *save_invstd) {
  const char *op = "bn_bwd";
  RUN((r->bn_bwd(r, o, dx, dgamma, dbeta, dy, y, x, gamma, save_mean, save_invstd)), NEED_T(dx, "dx"); NEED_T(dy, "dy");
      NEED_T(y, "y"); NEED_T(x, "x"); NEED(dgamma, 0, "dgamma"); NEED(dbeta, 0, "dbeta"); NEED(gamma, 0, "gamma");
      NEED(save_mean, 0, "save_mean"); NEED(save_invstd, 0, "save_invstd"));
}

static synco_status strict_pool_plan(synco_backend *be, synco_pool_op *o) {
  const char *op = "pool_plan";
  RUN((r->pool_plan(r, o)), SYNCO_TRY(need_host(be, o, op, "op")));
}
static void strict_pool_release(synco_backend *be, synco_pool_op *op) { ctx(be)->ref->pool_release(ctx(be)->ref, op); }
static synco_status strict_pool_plan_bytes(synco_backend *be, const synco_pool_op *op, synco_plan_bytes *b) {
  return ctx(be)->ref->pool_plan_bytes(ctx(be)->ref, op, b);
}

static synco_status strict_maxpool_fwd(synco_backend *be, synco_pool_op *o, synco_tensor *y, const synco_tensor *x) {
  const char *op = "maxpool_fwd";
  RUN((r->maxpool_fwd(r, o, y, x)), NEED_T(y, "y"); NEED_T(x, "x"));
}

static synco_status strict_maxpool_bwd(synco_backend *be, synco_pool_op *o, synco_tensor *dx, const synco_tensor *dy) {
  const char *op = "maxpool_bwd";
  RUN((r->maxpool_bwd(r, o, dx, dy)), NEED_T(dx, "dx"); NEED_T(dy, "dy"));
}

static synco_status strict_relu_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  const char *op = "relu_fwd";
  RUN((r->relu_fwd(r, y, x)), NEED_T(y, "y"); NEED_T(x, "x"));
}

static synco_status strict_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy,
                                    const synco_tensor *y) {
  const char *op = "relu_bwd";
  RUN((r->relu_bwd(r, dx, dy, y)), NEED_T(dx, "dx"); NEED_T(dy, "dy"); NEED_T(y, "y"));
}

static synco_status strict_add(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                               int accumulate) {
  const char *op = "add";
  RUN((r->add(r, y, a, b, accumulate)), NEED_T(y, "y"); NEED_T(a, "a"); NEED_T(accumulate ? NULL : b, "b"));
}

static synco_status strict_avgpool_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  const char *op = "avgpool_fwd";
  RUN((r->avgpool_fwd(r, y, x)), NEED_T(y, "y"); NEED_T(x, "x"));
}

static synco_status strict_avgpool_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy) {
  const char *op = "avgpool_bwd";
  RUN((r->avgpool_bwd(r, dx, dy)), NEED_T(dx, "dx"); NEED_T(dy, "dy"));
}

static synco_status strict_linear_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                                      const float *b) {
  const char *op = "linear_fwd";
  RUN((r->linear_fwd(r, y, x, w, b)), NEED_T(y, "y"); NEED_T(x, "x"); NEED(w, 0, "w"); NEED(b, 0, "b"));
}

static synco_status strict_linear_bwd(synco_backend *be, synco_tensor *dx, float *dw, float *db, const synco_tensor *dy,
                                      const synco_tensor *x, const float *w) {
  const char *op = "linear_bwd";
  RUN((r->linear_bwd(r, dx, dw, db, dy, x, w)), NEED_T(dx, "dx"); NEED(dw, 0, "dw"); NEED(db, 0, "db");
      NEED_T(dy, "dy"); NEED_T(x, "x"); NEED(w, 0, "w"));
}

static synco_status strict_l2norm_fwd(synco_backend *be, synco_tensor *y, float *norms, const synco_tensor *x) {
  const char *op = "l2norm_fwd";
  RUN((r->l2norm_fwd(r, y, norms, x)), NEED_T(y, "y"); NEED(norms, 0, "norms"); NEED_T(x, "x"));
}

static synco_status strict_l2norm_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy,
                                      const synco_tensor *y, const float *norms) {
  const char *op = "l2norm_bwd";
  RUN((r->l2norm_bwd(r, dx, dy, y, norms)), NEED_T(dx, "dx"); NEED_T(dy, "dy"); NEED_T(y, "y");
      NEED(norms, 0, "norms"));
}

/* ---- life cycle ---------------------------------------------------------------------------------------------------
 */

static void strict_destroy(synco_backend *be) {
  strict_ctx *c = ctx(be);
  for (int k = 0; k < STRICT_MAX; k++)
    if (g_live[k] == c) g_live[k] = NULL;
  for (int i = 0; i < c->n; i++) munmap(c->blocks[i].p, c->blocks[i].mapped);
  free(c->blocks);
  synco_backend_destroy(c->ref);
  free(c);
  free(be);
}

synco_status synco_backend_strict_create(synco_backend **out) {
  if (!out) return synco_fail(SYNCO_ERR_ARG, "synco_backend_strict_create: out is NULL");
  *out = NULL;
  synco_backend *be = synco_calloc(1, sizeof *be);
  strict_ctx *c = synco_calloc(1, sizeof *c);
  synco_status s = be && c ? synco_backend_ref_create(&c->ref) : SYNCO_ERR_NOMEM;
  int slot = -1;
  for (int k = 0; !s && k < STRICT_MAX && slot < 0; k++)
    if (!g_live[k]) slot = k;
  if (!s && slot < 0) s = synco_fail(SYNCO_ERR_UNSUPPORTED, "strict backend: at most %d at once", STRICT_MAX);
  if (s) {
    if (c && c->ref) synco_backend_destroy(c->ref);
    free(c);
    free(be);
    return s;
  }
  g_live[slot] = c;
  static int handler;
  if (!handler) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    handler = 1;
  }
  *be = (synco_backend){
      .name = "strict",
      .ctx = c,
      .destroy = strict_destroy,
      .supports = strict_supports,
      .alloc = strict_alloc,
      .free = strict_free,
      .memset = strict_memset,
      .copy = strict_copy,
      .sync = strict_sync,
      .gemm = strict_gemm,
      .sgd = strict_sgd,
      .ema = strict_ema,
      .enqueue = strict_enqueue,
      .permute_rows = strict_permute_rows,
      .infonce_fwd = strict_infonce_fwd,
      .infonce_bwd = strict_infonce_bwd,
      .loss_record = strict_loss_record,
      .xent = strict_xent,
      .neg_draw = strict_neg_draw,
      .neg_logits = strict_neg_logits,
      .neg_backward = strict_neg_backward,
      .neg_workspace = strict_neg_workspace,
      .threads = strict_threads,
      .act_layout = strict_act_layout,
      .act_bytes = strict_act_bytes,
      .to_backend = strict_to_backend,
      .to_plain = strict_to_plain,
      .conv_plan = strict_conv_plan,
      .conv_plan_bytes = strict_conv_plan_bytes,
      .conv_release = strict_conv_release,
      .conv_fwd = strict_conv_fwd,
      .conv_bwd_data = strict_conv_bwd_data,
      .conv_bwd_weights = strict_conv_bwd_weights,
      .bn_plan = strict_bn_plan,
      .bn_plan_bytes = strict_bn_plan_bytes,
      .bn_release = strict_bn_release,
      .bn_fwd_train = strict_bn_fwd_train,
      .bn_fwd_eval = strict_bn_fwd_eval,
      .bn_bwd = strict_bn_bwd,
      .pool_plan = strict_pool_plan,
      .pool_plan_bytes = strict_pool_plan_bytes,
      .pool_release = strict_pool_release,
      .maxpool_fwd = strict_maxpool_fwd,
      .maxpool_bwd = strict_maxpool_bwd,
      .relu_fwd = strict_relu_fwd,
      .relu_bwd = strict_relu_bwd,
      .add = strict_add,
      .avgpool_fwd = strict_avgpool_fwd,
      .avgpool_bwd = strict_avgpool_bwd,
      .linear_fwd = strict_linear_fwd,
      .linear_bwd = strict_linear_bwd,
      .l2norm_fwd = strict_l2norm_fwd,
      .l2norm_bwd = strict_l2norm_bwd,
  };
  *out = be;
  return SYNCO_OK;
}
