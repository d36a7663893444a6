/* The backend registry: backends by name, the capability query and the --precision check built on it. The
 * answers depend on the CPU, so the checks are the relations that hold everywhere: the reference backend has no
 * optional feature, a backend that runs bf16 has the hardware for it, SYNCO_CONV_WINOGRAD=0 turns Winograd off,
 * and --precision bf16 is accepted exactly when a backend says it runs it. */
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/status.h"
#include "dist/dist.h"
#include "tensor/backend.h"
#include "test_util.h"

static void test_names(void) {
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_create("ref", &be));
  CHECK(be && !strcmp(be->name, "ref"));
  synco_backend_destroy(be);
  be = NULL;
  CHECK(synco_backend_create("tpu", &be) == SYNCO_ERR_ARG && !be);
  CHECK(strstr(synco_last_error(), "unknown backend 'tpu'") != NULL);
  CHECK_OK(synco_backend_create("auto", &be));
#ifdef SYNCO_HAVE_ONEDNN
  CHECK(be && !strcmp(be->name, "cpu"));
  synco_backend *alias = NULL; /* the name it had before */
  CHECK_OK(synco_backend_create("onednn", &alias));
  CHECK(alias && !strcmp(alias->name, "cpu"));
  synco_backend_destroy(alias);
#else
  CHECK(be && !strcmp(be->name, "ref"));
  synco_backend *o = NULL;
  CHECK(synco_backend_create("cpu", &o) == SYNCO_ERR_UNSUPPORTED && !o);
#endif
  synco_backend_destroy(be);
  synco_backend_destroy(NULL);
}

static void test_capabilities(void) {
  CHECK(!synco_backend_supports(NULL, SYNCO_CAP_BF16));
  synco_backend bare = {.name = "bare"}; /* a table without the query has no capability */
  CHECK(!synco_backend_supports(&bare, SYNCO_CAP_WINOGRAD));
  synco_backend *ref = NULL;
  CHECK_OK(synco_backend_create("ref", &ref));
  CHECK(!synco_backend_supports(ref, SYNCO_CAP_BF16));
  CHECK(!synco_backend_supports(ref, SYNCO_CAP_BF16_NATIVE));
  CHECK(!synco_backend_supports(ref, SYNCO_CAP_WINOGRAD));
  synco_backend_destroy(ref);
#ifdef SYNCO_HAVE_ONEDNN
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_create("cpu", &be));
  if (synco_backend_supports(be, SYNCO_CAP_BF16)) CHECK(synco_backend_supports(be, SYNCO_CAP_BF16_NATIVE));
  synco_backend_destroy(be);
  /* Winograd needs nChw8c activations: never with everything plain, never when switched off */
  setenv("SYNCO_ONEDNN_BLOCK", "1", 1);
  CHECK_OK(synco_backend_create("cpu", &be));
  CHECK(!synco_backend_supports(be, SYNCO_CAP_WINOGRAD));
  synco_backend_destroy(be);
  setenv("SYNCO_ONEDNN_BLOCK", "8", 1);
  setenv("SYNCO_CONV_WINOGRAD", "0", 1);
  CHECK_OK(synco_backend_create("cpu", &be));
  CHECK(!synco_backend_supports(be, SYNCO_CAP_WINOGRAD));
  synco_backend_destroy(be);
  unsetenv("SYNCO_ONEDNN_BLOCK");
  unsetenv("SYNCO_CONV_WINOGRAD");
#endif
}

static void test_precision(void) {
  CHECK_OK(synco_backend_precision(NULL, NULL));
  CHECK_OK(synco_backend_precision("ref", "fp32"));
  CHECK(synco_backend_precision(NULL, "fp16") == SYNCO_ERR_ARG);
  CHECK(!strcmp(synco_last_error(), "--precision fp16: expected fp32, tf32 or bf16"));
  int runs = 0;
  synco_backend *ref = NULL;
  CHECK_OK(synco_backend_create("ref", &ref));
  CHECK_OK(synco_backend_set_precision(ref, "fp32"));
  CHECK(synco_backend_set_precision(ref, "bf16") == SYNCO_ERR_UNSUPPORTED); /* the reference is fp32 only */
  CHECK(strstr(synco_last_error(), "backend 'ref' computes in fp32 only") != NULL);
  synco_backend_destroy(ref);
  /* the strict backend emulates a GPU's bf16 (test_step_bf16_emul), on any CPU */
  synco_backend *st = NULL;
  CHECK_OK(synco_backend_precision("strict", "bf16"));
  CHECK_OK(synco_backend_create("strict", &st));
  CHECK(!synco_backend_supports(st, SYNCO_CAP_BF16));
  CHECK_OK(synco_backend_set_precision(st, "bf16"));
  CHECK(synco_backend_supports(st, SYNCO_CAP_BF16));
  CHECK(st->act_layout(st, 16, 4, 4, SYNCO_F32) == SYNCO_LAYOUT_NHWC_BF16);
  CHECK(st->act_layout(st, 3, 4, 4, SYNCO_F32) == SYNCO_LAYOUT_PLAIN);
  CHECK(st->act_layout(st, 16, 1, 1, SYNCO_F32) == SYNCO_LAYOUT_PLAIN);
  CHECK_OK(synco_backend_set_precision(st, "fp32"));
  CHECK(st->act_layout(st, 16, 4, 4, SYNCO_F32) == SYNCO_LAYOUT_PLAIN);
  synco_backend_destroy(st);
#ifdef SYNCO_HAVE_ONEDNN
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_create("cpu", &be));
  runs = synco_backend_supports(be, SYNCO_CAP_BF16);
  CHECK(runs == synco_backend_supports(be, SYNCO_CAP_BF16_NATIVE));
  const synco_status on = synco_backend_set_precision(be, "bf16");
  CHECK(runs ? on == SYNCO_OK : on == SYNCO_ERR_UNSUPPORTED);
  CHECK_OK(synco_backend_set_precision(be, "fp32"));
  CHECK(synco_backend_set_precision(be, "tf32") == SYNCO_ERR_UNSUPPORTED);
  synco_backend_destroy(be);
#endif
  const synco_status s = synco_backend_precision("cpu", "bf16");
  CHECK(runs ? s == SYNCO_OK : s == SYNCO_ERR_UNSUPPORTED);
  if (!runs) {
    CHECK(!strncmp(synco_last_error(), "--precision bf16", 16));
    CHECK(strstr(synco_last_error(), "use --precision fp32") != NULL);
  }
#ifdef SYNCO_HAVE_CUDA
  /* a cuda backend is asked when it is made (test_cuda_ops), whatever this CPU has */
  CHECK_OK(synco_backend_precision("cuda:1", "bf16"));
#else
  CHECK(synco_backend_precision("cuda", "bf16") == SYNCO_ERR_UNSUPPORTED); /* no GPU backend: said with the flags */
  CHECK(strstr(synco_last_error(), "backend 'cuda' is not built in") != NULL);
#endif
  /* a CPU backend answers for itself, with the flags: bf16 on the reference, tf32 on any CPU */
  CHECK(synco_backend_precision("ref", "bf16") == SYNCO_ERR_UNSUPPORTED);
  CHECK(strstr(synco_last_error(), "backend 'ref' computes in fp32 only") != NULL);
  CHECK(synco_backend_precision(NULL, "tf32") == SYNCO_ERR_UNSUPPORTED);
  CHECK(synco_backend_precision("ref", "tf32") == SYNCO_ERR_UNSUPPORTED);
  CHECK(strstr(synco_last_error(), "--precision tf32 is for GPUs") != NULL);
}

/* Under an MPI launcher, --device cuda spreads the ranks of a node over its GPUs. */
static void test_rank_name(void) {
  char buf[32];
  CHECK(!strcmp(synco_backend_rank_name("cuda", 3, 2, buf, sizeof buf), "cuda:1"));
  CHECK(!strcmp(synco_backend_rank_name("cuda", 0, 8, buf, sizeof buf), "cuda:0"));
  CHECK(!strcmp(synco_backend_rank_name("cuda:5", 3, 8, buf, sizeof buf), "cuda:5")); /* an explicit GPU stays */
  CHECK(!strcmp(synco_backend_rank_name("cuda", -1, 8, buf, sizeof buf), "cuda"));   /* no launcher */
  CHECK(!strcmp(synco_backend_rank_name("cuda", 2, 0, buf, sizeof buf), "cuda"));    /* no GPU: its own error */
  CHECK(!strcmp(synco_backend_rank_name("cpu", 2, 8, buf, sizeof buf), "cpu"));
  CHECK(synco_backend_rank_name(NULL, 2, 8, buf, sizeof buf) == NULL);
  /* the local rank, as the launchers say it */
  const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
  char *saved[3];
  for (int i = 0; i < 3; i++) {
    const char *v = getenv(vars[i]);
    saved[i] = v ? strdup(v) : NULL;
    unsetenv(vars[i]);
  }
  CHECK(synco_dist_local_rank() == -1);
  setenv("SLURM_LOCALID", "2", 1);
  CHECK(synco_dist_local_rank() == 2);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5", 1); /* Open MPI's first */
  CHECK(synco_dist_local_rank() == 5);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "x1", 1); /* not a number: the next launcher's */
  CHECK(synco_dist_local_rank() == 2);
  for (int i = 0; i < 3; i++) {
    if (saved[i]) setenv(vars[i], saved[i], 1);
    else unsetenv(vars[i]);
    free(saved[i]);
  }
}

static void test_describe(void) {
  char buf[4096]; /* as synco info's buffer: the whole description fits, ending in a newline */
  synco_backend_describe(buf, sizeof buf);
#ifdef SYNCO_HAVE_ONEDNN
  CHECK(!strncmp(buf, "backends: cpu (oneDNN ", 22));
#else
  CHECK(!strncmp(buf, "backends: ref (plain C + OpenBLAS)", 34));
#endif
  CHECK(buf[strlen(buf) - 1] == '\n');
  char small[16];
  synco_backend_describe(small, sizeof small); /* truncated, still a string */
  CHECK(strlen(small) == sizeof small - 1);
}

int main(void) {
  test_names();
  test_capabilities();
  test_precision();
  test_rank_name();
  test_describe();
  return synco_test_finish("test_registry");
}
