/* libFuzzer target: the checkpoint loaders on a fuzzed safetensors file, as --ckpt, --init and --resume reach
 * them: synco_weights_read_config (metadata checked against the tensors), then, for a config it accepts,
 * an encoder of that architecture filled by synco_weights_load (query and key encoder, lenient and strict)
 * and synco_weights_load_report; and every input through synco_moco_load, the training checkpoint's
 * resume path, into one tiny MoCo model (ResNet-18 width 1, 8x8 images, batch 2, queue 4, dim 4).
 *
 * Seeds are written, not committed, so that they always match the current format: with SYNCO_FUZZ_SEEDS=DIR
 * the target first writes DIR/checkpoint.safetensors (synco_moco_save of that model), DIR/export_head and
 * DIR/export (its query encoder with and without the head, torchvision names); run_fuzz.sh does this. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/registry.h"
#include "nn/encoder_weights.h"
#include "io/safetensors.h"
#include "nn/encoder.h"
#include "ssl/moco.h"

#include "tiny_moco.inc"

static synco_backend *g_be;
static synco_moco *g_moco;
static char g_path[128];

static void write_seeds(const char *dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/checkpoint.safetensors", dir);
  if (synco_moco_save(g_moco, p, "{\"fuzz\":1}", 1, 2) != SYNCO_OK) fprintf(stderr, "fuzz_checkpoint: %s\n", synco_last_error());
  for (int head = 0; head < 2; head++) {
    synco_encoder_config c = *synco_encoder_cfg(synco_moco_query(g_moco));
    c.head = head;
    c.forward_only = 1;
    synco_encoder *enc;
    if (synco_encoder_create(&enc, g_be, &c, 1, 8, 3) != SYNCO_OK) continue;
    synco_st_writer *w = synco_st_writer_new();
    snprintf(p, sizeof p, "%s/export%s.safetensors", dir, head ? "_head" : "");
    if (w && (synco_weights_add(w, enc, "") != SYNCO_OK || synco_st_write(w, p) != SYNCO_OK))
      fprintf(stderr, "fuzz_checkpoint: %s\n", synco_last_error());
    synco_st_writer_free(w);
    synco_encoder_free(enc);
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  tiny_moco_create("fuzz_checkpoint", &g_be, &g_moco);
  snprintf(g_path, sizeof g_path, "/dev/shm/synco_fuzz_ckpt_%d.safetensors", (int)getpid());
  FILE *f = fopen(g_path, "wb");
  if (f) fclose(f);
  else snprintf(g_path, sizeof g_path, "/tmp/synco_fuzz_ckpt_%d.safetensors", (int)getpid());
  const char *seeds = getenv("SYNCO_FUZZ_SEEDS");
  if (seeds && *seeds) write_seeds(seeds);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FILE *f = fopen(g_path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  synco_encoder_config cfg;
  int image_size = 0;
  if (synco_weights_read_config(g_path, &cfg, &image_size) == SYNCO_OK && cfg.width <= 4) {
    /* The harness keeps each run small (8x8 images, batch 1); read_config alone bounds the width by the
     * file's size, which libFuzzer's -max_len keeps to tens of kilobytes. */
    cfg.bn_splits = 1;
    synco_encoder *enc;
    if (synco_encoder_create(&enc, g_be, &cfg, 1, 8, 0) == SYNCO_OK) {
      char report[512];
      synco_weights_load(enc, g_path, "query", 0);
      synco_weights_load(enc, g_path, "key", 1);
      synco_weights_load_report(enc, g_path, report, sizeof report);
      synco_encoder_free(enc);
    }
  }
  int epoch = 0;
  long step = 0;
  synco_moco_load(g_moco, g_path, &epoch, &step);
  return 0;
}
