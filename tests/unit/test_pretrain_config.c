/* The pretraining config validator: a good config passes; a config with several problems gets every one of
 * them, one per line in the caller's buffer and "; "-joined in the last error; the queue counts the keys of a
 * symmetric loss; synco_moco_create refuses what the validator refuses, with the same message. */
#include <string.h>

#include "ssl/moco.h"
#include "ssl/negatives.h"
#include "ssl/pretrain_config.h"
#include "backend/registry.h"
#include "test_util.h"

static synco_pretrain_config good(void) {
  synco_pretrain_config c = {0};
  c.moco.enc = (synco_encoder_config){.depth = 18, .width = 8, .cifar_stem = 1, .head = 1, .mlp = 1, .dim = 16,
                                      .bn_splits = 2};
  c.moco.image_size = 32;
  c.moco.batch = 8;
  c.moco.K = 64;
  c.moco.m = 0.99f;
  c.moco.T = 0.2f;
  c.moco.neg = (synco_negatives_config){.n_hard = 32, .n = {8, 8, 8, 4, 4, 4}, .sigma = 0.01f, .delta = 0.01f,
                                        .eta = 0.01f};
  c.moco.momentum = 0.9f;
  c.moco.wd = 5e-4f;
  c.sched = (synco_lr_schedule){.lr = 0.06f, .epochs = 2, .cos = 1};
  return c;
}

/* Settings read from a checkpoint in the tests below: moco-k, n1 and n-hard (the rest are flags). */
static int from_ckpt(const void *ctx, const char *flag) {
  (void)ctx;
  return !strcmp(flag, "moco-k") || !strcmp(flag, "n1") || !strcmp(flag, "n-hard");
}

static int lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

int main(void) {
  char msg[2048];
  int n = -1;
  synco_pretrain_config c = good();
  CHECK_OK(synco_pretrain_config_validate(&c, msg, sizeof msg, &n));
  CHECK(n == 0 && msg[0] == 0);

  /* Three problems at once: the queue, Split-BN and a synthetic count above n_hard. */
  c.moco.K = 100;
  c.moco.enc.bn_splits = 3;
  c.moco.neg.n[1] = 40;
  CHECK(synco_pretrain_config_validate(&c, msg, sizeof msg, &n) == SYNCO_ERR_ARG);
  CHECK(n == 3 && lines(msg) == 3);
  CHECK(strstr(msg, "--moco-k 100 is not a multiple of the batch size 8\n") != NULL);
  CHECK(strstr(msg, "the batch size 8 is not a multiple of --bn-splits 3\n") != NULL);
  CHECK(strstr(msg, "--n2 40 must be between 0 and --n-hard 32\n") != NULL);
  const char *e = synco_last_error();
  CHECK(!strncmp(e, "invalid configuration: ", 23) && strchr(e, '\n') == NULL);
  CHECK(strstr(e, "--moco-k 100 is not a multiple of the batch size 8; ") != NULL);
  CHECK(strstr(e, "; the batch size 8 is not a multiple of --bn-splits 3") != NULL);
  /* without a buffer: the count and the last error only */
  CHECK(synco_pretrain_config_validate(&c, NULL, 0, &n) == SYNCO_ERR_ARG && n == 3);

  /* What only a crafted checkpoint's settings could hold: each named, no division by a zero batch. */
  c = good();
  c.moco.batch = 0;
  c.moco.T = 0;
  c.sched.lr = -1;
  c.sched.epochs = 0;
  c.warmup_epochs = -2;
  c.moco.image_size = 4;
  CHECK(synco_pretrain_config_validate(&c, msg, sizeof msg, &n) == SYNCO_ERR_ARG);
  CHECK(n == 6);
  CHECK(strstr(msg, "the batch size 0 must be at least 1") && strstr(msg, "--moco-t 0 must be greater than 0") &&
        strstr(msg, "--lr -1") && strstr(msg, "--epochs 0") && strstr(msg, "--warmup-epochs -2") &&
        strstr(msg, "--image-size 4 is too small (at least 8)"));

  /* A symmetric loss enqueues both views' keys: K must be a multiple of 2 x batch. */
  c = good();
  c.moco.K = 72; /* 9 x 8, not a multiple of 16 */
  c.moco.symmetric = 1;
  CHECK(synco_pretrain_config_validate(&c, msg, sizeof msg, &n) == SYNCO_ERR_ARG && n == 1);
  CHECK(strstr(msg, "--moco-k 72 is not a multiple of the 16 keys enqueued per step") != NULL);
  c.moco.symmetric = 0;
  CHECK_OK(synco_pretrain_config_validate(&c, NULL, 0, NULL));

  /* Counts that overflow an int when summed (--n1 2147483647 once wrapped the total negative, skipping every check of
   * the negatives, and infonce then refused S = -2147483621): each count is judged against --n-hard ... */
  c = good();
  c.moco.neg.n[0] = 2147483647;
  CHECK(synco_pretrain_config_validate(&c, msg, sizeof msg, &n) == SYNCO_ERR_ARG && n == 2);
  CHECK(strstr(msg, "--n1 2147483647 must be between 0 and --n-hard 32") != NULL);
  CHECK(strstr(msg, "--n1..--n6 sum to 2147483675 synthetic negatives per query") != NULL);
  /* ... and the logits of a query (1 + K + the synthetic ones) must fit an int, reported in flag terms */
  c = good();
  c.moco.K = 2147483640;
  c.moco.batch = 8;
  c.moco.neg.n_hard = 2147483640;
  for (int t = 0; t < 6; t++) c.moco.neg.n[t] = 2147483640;
  CHECK(synco_pretrain_config_validate(&c, msg, sizeof msg, &n) == SYNCO_ERR_ARG && n == 1);
  CHECK(strstr(msg, "--n1..--n6 sum to 12884901840 synthetic negatives per query: with the 2147483640 of --moco-k "
                    "that is 15032385481 logits per query (at most 2147483647)") != NULL);
  CHECK(synco_negatives_total(&c.moco.neg) == 2147483647); /* saturated, never negative */

  /* Settings read from a file are named by their key there, and the problem by the file, never by a flag the user
   * did not give; flags keep their names. */
  c = good();
  c.moco.K = 100;
  c.moco.neg.n[0] = 40;
  c.moco.T = 0;
  const synco_config_origin origin = {from_ckpt, NULL, "run/last.safetensors: synco.config"};
  CHECK(synco_pretrain_config_check(&c, &origin, msg, sizeof msg, &n) == SYNCO_ERR_ARG && n == 3);
  CHECK(strstr(msg, "run/last.safetensors: synco.config: moco_k 100 is not a multiple of the batch size 8\n") != NULL);
  CHECK(strstr(msg, "run/last.safetensors: synco.config: n1 40 must be between 0 and n_hard 32\n") != NULL);
  CHECK(strstr(msg, "\n--moco-t 0 must be greater than 0\n") != NULL); /* a flag's problem: not the file's */
  /* at most SYNCO_PRETRAIN_MAX_EPOCHS epochs, as --epochs' range */
  c = good();
  c.sched.epochs = 1000000000;
  CHECK(synco_pretrain_config_validate(&c, msg, sizeof msg, &n) == SYNCO_ERR_ARG && n == 1);
  CHECK(strstr(msg, "--epochs 1000000000 is more than 1000000") != NULL);

  /* A tiny buffer: the problems are still counted and in the last error. */
  c = good();
  c.moco.K = 100;
  c.moco.enc.bn_splits = 3;
  char small[8];
  CHECK(synco_pretrain_config_validate(&c, small, sizeof small, &n) == SYNCO_ERR_ARG && n == 2 && small[0] == 0);
  CHECK(strstr(synco_last_error(), "--bn-splits 3") != NULL);

  /* The create function guards with the same checks (any crop size the encoder takes). */
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_create("ref", &be));
  if (be) {
    synco_moco *m = NULL;
    c = good();
    c.moco.K = 100;
    CHECK(synco_moco_create(&m, be, &c.moco) == SYNCO_ERR_ARG && m == NULL);
    CHECK(strstr(synco_last_error(), "invalid configuration: --moco-k 100 is not a multiple") != NULL);
    c = good();
    c.moco.image_size = 4;
    CHECK_OK(synco_moco_config_validate(&c.moco, NULL, 0, NULL));
    synco_backend_destroy(be);
  }
  return synco_test_finish("test_pretrain_config");
}
