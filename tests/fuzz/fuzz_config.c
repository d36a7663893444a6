/* libFuzzer target: what a checkpoint says about its run, as `synco pretrain --resume` and the evaluations read it.
 * The input is the checkpoint's metadata, four texts separated by NUL bytes: synco.config (the run's settings, JSON),
 * synco.encoder (the architecture, JSON), synco.epoch and synco.step; a missing part is left out of the file. The
 * target writes them into a real training checkpoint of a tiny MoCo model (ResNet-18 width 1, 8x8 images, batch 2,
 * queue 4, dim 4: its tensors fixed, so that every mutation lands in the metadata), then hands the file to
 *   - synco_weights_read_config: the one reader of synco.encoder (knn, embed, export, --init, --resume);
 *   - synco_moco_load: the resume loader (epoch, step, seed, the tensors against the model);
 *   - synco pretrain --resume FILE itself (the CLI's sources are linked in, its main renamed): the settings taken
 *     from synco.config, each judged as its flag would be, then the config validator with them, the run directory
 *     chosen (nothing written) and the data opened; --data names a folder that does not exist, so a run whose
 *     settings all pass ends there instead of training.
 * The command's messages go to /dev/null (SYNCO_FUZZ_VERBOSE=1 shows them). Seeds: tests/fuzz/corpus/fuzz_config (a valid config; a method, epochs and step out of
 * range; an encoder that its tensors do not back; a config that is not an object). */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend/registry.h"
#include "cli/commands.h"
#include "io/safetensors.h"
#include "nn/encoder_weights.h"
#include "ssl/moco.h"

#include "tiny_moco.inc"

static synco_backend *g_be;
static synco_moco *g_moco;
static char g_ckpt[160], g_path[160], g_out[160];
static cJSON *g_header;     /* the tiny model's checkpoint header, its metadata replaced by each input */
static uint8_t *g_body;     /* its tensors' bytes */
static size_t g_body_size;

/* The tiny model's checkpoint, read back as its header (JSON) and its tensors' bytes. */
static void load_template(void) {
  FILE *f = fopen(g_ckpt, "rb");
  uint64_t n = 0;
  if (!f || fread(&n, 8, 1, f) != 1) abort();
  char *h = malloc(n + 1);
  if (!h || fread(h, 1, n, f) != n) abort();
  h[n] = 0;
  g_header = cJSON_Parse(h);
  free(h);
  long here = ftell(f);
  fseek(f, 0, SEEK_END);
  g_body_size = (size_t)(ftell(f) - here);
  fseek(f, here, SEEK_SET);
  g_body = malloc(g_body_size ? g_body_size : 1);
  if (!g_header || !g_body || fread(g_body, 1, g_body_size, f) != g_body_size) abort();
  fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  tiny_moco_create("fuzz_config", &g_be, &g_moco);
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(g_ckpt, sizeof g_ckpt, "%s/synco_fuzz_config_%d_tiny.safetensors", dir, (int)getpid());
  snprintf(g_path, sizeof g_path, "%s/synco_fuzz_config_%d.safetensors", dir, (int)getpid());
  snprintf(g_out, sizeof g_out, "%s/synco_fuzz_config_%d_run", dir, (int)getpid());
  if (synco_moco_save(g_moco, g_ckpt, "{}", 1, 2) != SYNCO_OK) {
    fprintf(stderr, "fuzz_config: %s\n", synco_last_error());
    abort();
  }
  load_template();
  unlink(g_ckpt);
  return 0;
}

/* The command with its messages (one per refused input) sent to /dev/null instead of among libFuzzer's own, unless
 * SYNCO_FUZZ_VERBOSE is set. */
static void run_quietly(int argc, char **argv) {
  static int null = -2, out = -1, err = -1;
  if (null == -2) {
    null = getenv("SYNCO_FUZZ_VERBOSE") ? -1 : open("/dev/null", O_WRONLY);
    out = null >= 0 ? dup(1) : -1;
    err = null >= 0 ? dup(2) : -1;
  }
  if (null >= 0 && out >= 0 && err >= 0) {
    fflush(stdout);
    fflush(stderr);
    dup2(null, 1);
    dup2(null, 2);
  }
  synco_cmd_pretrain(argc, argv);
  if (null >= 0 && out >= 0 && err >= 0) {
    fflush(stdout);
    fflush(stderr);
    dup2(out, 1);
    dup2(err, 2);
  }
}

/* Writes the template's tensors with the metadata of the input's parts (a part absent from the input is absent). */
static int write_checkpoint(const char *parts[4]) {
  static const char *keys[4] = {"synco.config", "synco.encoder", "synco.epoch", "synco.step"};
  cJSON *h = cJSON_Duplicate(g_header, 1);
  if (!h) return 0;
  cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
  for (int i = 0; meta && i < 4; i++) {
    cJSON_DeleteItemFromObjectCaseSensitive(meta, keys[i]);
    if (parts[i]) cJSON_AddStringToObject(meta, keys[i], parts[i]);
  }
  char *text = cJSON_PrintUnformatted(h);
  cJSON_Delete(h);
  FILE *f = text ? fopen(g_path, "wb") : NULL;
  int ok = 0;
  if (f) {
    const uint64_t n = strlen(text);
    ok = fwrite(&n, 8, 1, f) == 1 && fwrite(text, 1, n, f) == n && fwrite(g_body, 1, g_body_size, f) == g_body_size;
    ok = fclose(f) == 0 && ok;
  }
  free(text);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 16384) return 0;
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  const char *parts[4] = {NULL, NULL, NULL, NULL};
  size_t at = 0;
  for (int i = 0; i < 4 && at <= size; i++) {
    parts[i] = text + at;
    at += strlen(text + at) + 1;
  }
  if (write_checkpoint(parts)) {
    synco_encoder_config cfg;
    int image_size = 0, epoch = 0;
    long step = 0;
    synco_weights_read_config(g_path, &cfg, &image_size);
    synco_moco_load(g_moco, g_path, &epoch, &step);
    char *argv[] = {"pretrain", "--resume", g_path, "--data", "/nonexistent/synco-fuzz-data", "--out", g_out, NULL};
    run_quietly(7, argv);
  }
  free(text);
  return 0;
}
