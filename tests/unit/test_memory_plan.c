/* Backends say what they need: synco_encoder_memory_plan and synco_moco_memory_plan ask the backend what its plans
 * and workspaces take (its *_plan_bytes and neg_workspace ops) instead of copying its sizes. Here the plans are held
 * against what creation then allocates, measured on the heap (glibc's mallinfo2), on the CPU backends, whose memory
 * is the heap: the reference backend's plans report exactly what they allocate (within 0.5 %, the host-side layout
 * arrays), oneDNN's within 3 % (its JIT code is an estimate). Each measurement runs on a fresh backend (its shared
 * buffers grow during the measured creation) after a warm-up on another, so that the libraries' one-time
 * allocations are not counted. The strict backend reports the reference's figures. Without mallinfo2 (another C
 * library, or a sanitizer that keeps the heap to itself) only the plans' own consistency is checked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define HAVE_MALLINFO2 1
#endif

#include "backend/registry.h"
#include "base/status.h"
#include "nn/encoder.h"
#include "ssl/moco.h"
#include "test_util.h"

static size_t heap_bytes(void) {
#ifdef HAVE_MALLINFO2
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
#else
  return 0;
#endif
}

static synco_encoder_config small_encoder(int width) {
  return (synco_encoder_config){.depth = 18, .width = width, .cifar_stem = 1, .head = 1, .mlp = 1, .dim = 32,
                                .bn_splits = 2};
}

static synco_moco_config small_moco(int width) {
  synco_moco_config c = {0};
  c.enc = small_encoder(width);
  c.image_size = 32;
  c.batch = 16;
  c.K = 256;
  c.m = 0.99f;
  c.T = 0.2f;
  c.neg = (synco_negatives_config){.n_hard = 64, .n = {16, 16, 16, 8, 8, 8}, .sigma = 0.01f, .delta = 0.01f,
                                   .eta = 0.01f};
  c.momentum = 0.9f;
  c.wd = 5e-4f;
  c.seed = 3;
  return c;
}

/* |planned - allocated| within tol of what was allocated (and 64 KiB: allocator bookkeeping, small host arrays). */
static void check_near(const char *what, const char *backend, size_t planned, size_t allocated, double tol) {
  const double d = (double)planned - (double)allocated;
  const int ok = allocated > 0 && (d < 0 ? -d : d) <= tol * (double)allocated + 65536.0;
  if (!ok || getenv("SYNCO_TEST_VERBOSE"))
    fprintf(stderr, "%s on %s: planned %zu bytes, creation allocated %zu (%+.2f %%)\n", what, backend, planned,
            allocated, allocated ? 100.0 * d / (double)allocated : 0.0);
  CHECK(ok);
}

/* The plan of an encoder and of a MoCo state on a fresh backend `name` against what creating them allocates. */
static void check_backend(const char *name, int width, double tol) {
  const synco_encoder_config ec = small_encoder(width);
  const synco_moco_config mc = small_moco(width);
  synco_backend *warm = NULL, *be = NULL;
  synco_encoder *enc = NULL;
  synco_moco *m = NULL;
  CHECK_OK(synco_backend_create(name, &warm));
  if (warm && synco_moco_create(&m, warm, &mc) == SYNCO_OK) synco_moco_free(m); /* the libraries' first use */
  synco_backend_destroy(warm);

  synco_encoder_memory em;
  CHECK_OK(synco_backend_create(name, &be));
  if (!be) return;
  CHECK_OK(synco_encoder_memory_plan(be, &ec, 16, 32, &em));
  CHECK(em.total == em.params + em.grads + em.buffers + em.activations + em.backend_ws);
  CHECK(em.backend_ws == synco_plan_total(&em.plans) && em.plans.kept > 0);
  size_t h0 = heap_bytes();
  CHECK_OK(synco_encoder_create(&enc, be, &ec, 16, 32, 0));
  size_t h1 = heap_bytes();
  if (enc && h1 > h0) check_near("resnet18 (batch 16, 32 px)", name, em.total, h1 - h0, tol);
  synco_encoder_free(enc);
  synco_backend_destroy(be);

  synco_moco_memory mm;
  be = NULL;
  CHECK_OK(synco_backend_create(name, &be));
  if (!be) return;
  CHECK_OK(synco_moco_memory_plan(be, &mc, &mm));
  CHECK(mm.momentum == mm.query.params && mm.negatives > 0 && mm.loss > 0 && mm.state > 0);
  CHECK(mm.key.activations < mm.query.activations); /* the key encoder is forward-only */
  /* the two encoders' plans on one backend: kept adds up, the shared buffers count once */
  CHECK(mm.plans.kept == mm.query.plans.kept + mm.key.plans.kept);
  CHECK(synco_plan_total(&mm.plans) <= mm.query.backend_ws + mm.key.backend_ws);
  const size_t planned = mm.query.params + mm.query.grads + mm.query.buffers + mm.query.activations +
                         mm.key.params + mm.key.grads + mm.key.buffers + mm.key.activations +
                         synco_plan_total(&mm.plans) + mm.momentum + mm.state + mm.loss + mm.negatives;
  h0 = heap_bytes();
  CHECK_OK(synco_moco_create(&m, be, &mc));
  h1 = heap_bytes();
  if (m && h1 > h0) check_near("SynCo state (two resnet18, K 256, 96 negatives)", name, planned, h1 - h0, tol);
  synco_moco_free(m);
  synco_backend_destroy(be);
}

/* The strict backend reports the reference's plans; a bad config is refused as creation would. */
static void check_strict(void) {
  synco_backend *ref = NULL, *strict = NULL;
  CHECK_OK(synco_backend_create("ref", &ref));
  CHECK_OK(synco_backend_create("strict", &strict));
  if (ref && strict) {
    const synco_moco_config mc = small_moco(16);
    synco_moco_memory a, b;
    CHECK_OK(synco_moco_memory_plan(ref, &mc, &a));
    CHECK_OK(synco_moco_memory_plan(strict, &mc, &b));
    CHECK(a.plans.kept == b.plans.kept && a.negatives == b.negatives && a.query.total == b.query.total);
    synco_moco_config bad = mc;
    bad.neg.n_hard = mc.K + 1;
    CHECK(synco_moco_memory_plan(ref, &bad, &a) != SYNCO_OK);
  }
  synco_backend_destroy(ref);
  synco_backend_destroy(strict);
}

/* 1 when the mapping holding p may get transparent huge pages (/proc/self/smaps' THPeligible), 0 when not, -1 when
 * the kernel does not say. */
static int thp_eligible(const void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[256];
  int in = 0, r = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long a, b;
    if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = (uintptr_t)p >= a && (uintptr_t)p < b;
      continue;
    }
    int v;
    if (in && sscanf(line, "THPeligible: %d", &v) == 1) {
      r = v;
      break;
    }
  }
  fclose(f);
  return r;
}

/* synco_aligned_alloc: buffers of 2 MB and more 2 MB aligned and, where the kernel's setting is madvise, eligible for
 * huge pages; smaller ones 64-byte aligned; SYNCO_HUGE_PAGES=0 asks for no huge pages. */
static void check_huge_pages(void) {
  const size_t big = (size_t)5 << 20;
  unsetenv("SYNCO_HUGE_PAGES");
  char *p = synco_aligned_alloc(big), *q = synco_aligned_alloc(1000);
  CHECK(p && q && (uintptr_t)p % ((size_t)2 << 20) == 0 && (uintptr_t)q % 64 == 0);
  setenv("SYNCO_HUGE_PAGES", "0", 1);
  char *r = synco_aligned_alloc(big);
  CHECK(r && (uintptr_t)r % 64 == 0);
  char mode[128] = "";
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f) {
    if (!fgets(mode, sizeof mode, f)) mode[0] = 0;
    fclose(f);
  }
  const int ep = thp_eligible(p), er = thp_eligible(r);
  if (strstr(mode, "[madvise]") && ep >= 0 && er >= 0) {
    if (ep != 1 || er != 0) fprintf(stderr, "THPeligible: %d with huge pages asked for, %d without\n", ep, er);
    CHECK(ep == 1 && er == 0);
  } else {
    fprintf(stderr, "huge pages: eligibility not checked (the kernel's setting: %s)\n", mode[0] ? mode : "unknown\n");
  }
  free(p);
  free(q);
  free(r);
}

int main(void) {
  check_huge_pages();
  /* 4 KB pages: buffers of 2 MB and more are otherwise 2 MB aligned, and mallinfo2 counts the alignment's mapped but
   * never touched slack (virtual, not resident) as heap, which the plans, sizing resident memory, leave out */
  setenv("SYNCO_HUGE_PAGES", "0", 1);
  check_backend("ref", 16, 0.005);
#ifdef SYNCO_HAVE_ONEDNN
  /* width 64: the JIT code estimate (3 x 32 KiB a convolution) is a few % of a narrow network, 0.5 % of this one */
  check_backend("cpu", 64, 0.03);
  setenv("SYNCO_ONEDNN_BLOCK", "8", 1); /* nChw8c: on an AVX2 CPU the 3x3 layers take Winograd and its workspace */
  check_backend("cpu", 64, 0.03);
  unsetenv("SYNCO_ONEDNN_BLOCK");
#endif
  check_strict();
  return synco_test_finish("test_memory_plan");
}
