/* synco export: the encoder of a checkpoint as a safetensors file under torchvision's key names (fp32), so that
 * torchvision.models.resnetXX().load_state_dict(safetensors.torch.load_file(F), strict=False) takes it; with
 * --head the projection head too ("fc.0.*", "fc.2.*"); with --format detectron2 the backbone under detectron2's
 * ResNet names (MoCo's convert-pretrain-to-detectron2.py renaming). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "nn/encoder_weights.h"
#include "io/safetensors.h"

/* torchvision name -> detectron2 name (see docs/detectron2.md). */
static void detectron2_name(char *out, size_t n, const char *tv) {
  char buf[160];
  if (strncmp(tv, "layer", 5) != 0) snprintf(buf, sizeof buf, "stem.%s", tv);
  else snprintf(buf, sizeof buf, "res%d%s", tv[5] - '0' + 1, tv + 6);
  /* bnK -> convK.norm, downsample.0 -> shortcut, downsample.1 -> shortcut.norm */
  char *p;
  char tmp[160];
  for (int k = 1; k <= 3; k++) {
    char from[8], to[16];
    snprintf(from, sizeof from, "bn%d", k);
    snprintf(to, sizeof to, "conv%d.norm", k);
    if ((p = strstr(buf, from))) {
      snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(p - buf), buf, to, p + strlen(from));
      strcpy(buf, tmp);
    }
  }
  if ((p = strstr(buf, "downsample.0"))) {
    snprintf(tmp, sizeof tmp, "%.*sshortcut%s", (int)(p - buf), buf, p + 12);
    strcpy(buf, tmp);
  } else if ((p = strstr(buf, "downsample.1"))) {
    snprintf(tmp, sizeof tmp, "%.*sshortcut.norm%s", (int)(p - buf), buf, p + 12);
    strcpy(buf, tmp);
  }
  snprintf(out, n, "%s", buf);
}

int synco_cmd_export(int argc, char **argv) {
  const char *ckpt = NULL, *out = NULL, *which = "query", *format = "torchvision";
  int head = 0;
  synco_arg args[] = {
      {"ckpt", 0, SYNCO_ARG_STR, &ckpt, "pretraining checkpoint, a run folder (its last.safetensors), or an exported encoder"},
      {"out", 'o', SYNCO_ARG_STR, &out, "output .safetensors file"},
      {"which", 0, SYNCO_ARG_STR, &which, "query or key encoder"},
      {"head", 0, SYNCO_ARG_FLAG, &head, "include the projection head (fc.0, fc.2)"},
      {"format", 0, SYNCO_ARG_STR, &format, "torchvision or detectron2 key names"},
      {NULL},
  };
  int rc = synco_args_parse("export", "Writes an encoder under torchvision's (or detectron2's) key names, fp32 safetensors.",
                            args, argc, argv, NULL, 0, NULL);
  if (rc) return rc == 1 ? 0 : 2;
  if (!ckpt || !out) {
    fprintf(stderr, "synco export: --ckpt and --out are required\n");
    return 2;
  }
  char ckpt_buf[SYNCO_CLI_PATH_MAX + 32];
  if (!(ckpt = synco_cli_ckpt_path("--ckpt", ckpt, ckpt_buf, sizeof ckpt_buf))) return synco_cli_error("export");
  if (strcmp(which, "query") && strcmp(which, "key")) {
    fprintf(stderr, "synco export: --which must be query or key, got '%s'\n", which);
    return 2;
  }
  const int d2 = !strcmp(format, "detectron2");
  if (!d2 && strcmp(format, "torchvision")) {
    fprintf(stderr, "synco export: --format must be torchvision or detectron2, got '%s'\n", format);
    return 2;
  }
  if (d2 && head) {
    fprintf(stderr, "synco export: --head has no detectron2 names (a detection backbone has no projection head)\n");
    return 2;
  }
  /* The file is safetensors whatever its name: one named .pkl/.pth would be handed to detectron2 or torch.load,
   * which read pickles (docs/detectron2.md: tools/safetensors_to_detectron2.py makes detectron2's .pkl from it). */
  static const char *const pickles[] = {".pkl", ".pth", ".pt"};
  const size_t ol = strlen(out);
  for (size_t i = 0; i < sizeof pickles / sizeof *pickles; i++) {
    const size_t k = strlen(pickles[i]);
    if (ol < k || strcmp(out + ol - k, pickles[i])) continue;
    fprintf(stderr, "synco export: --out %s: export writes safetensors, not a pickle; name it .safetensors%s\n", out,
            d2 ? " and make detectron2's .pkl with tools/safetensors_to_detectron2.py (docs/detectron2.md)" : "");
    return 2;
  }
  /* Writing onto the checkpoint being read (or another name of it) would replace a run's weights by an export. */
  if ((rc = SYNCO_CLI_CHECK_FILES("export", {"--out", out, SYNCO_CLI_OUT}, {"--ckpt", ckpt}))) return rc;
  synco_encoder_config cfg;
  int image_size = 0;
  if (synco_weights_read_config(ckpt, &cfg, &image_size)) return synco_cli_error("export");
  cfg.head = head && !d2;
  cfg.bn_splits = 1;
  synco_backend *be = NULL;
  synco_encoder *enc = NULL;
  synco_st_writer *w = NULL;
  int ret = 1;
  /* The encoder only holds the weights here: one image of 32 px, forward only, whatever size the checkpoint was
   * trained at (its weights do not depend on it; a checkpoint of 4096 px would otherwise take gigabytes of
   * activations to write megabytes). The image size written is the checkpoint's. */
  cfg.forward_only = 1;
  if (synco_backend_create("ref", &be) || synco_encoder_create(&enc, be, &cfg, 1, 32, 0) ||
      synco_weights_load(enc, ckpt, which, 1)) {
    synco_cli_error("export");
    goto done;
  }
  w = synco_st_writer_new();
  if (!w) goto done;
  if (!d2) {
    char *meta = NULL;
    if (synco_weights_add(w, enc, "") || !(meta = synco_weights_config_json_for(synco_encoder_cfg(enc), image_size)) ||
        synco_st_set_meta(w, "synco.encoder", meta)) {
      free(meta);
      synco_cli_error("export");
      goto done;
    }
    free(meta);
  } else {
    int n = 0;
    const synco_named_buffer *b = synco_encoder_named_buffers(enc, &n);
    char name[160];
    for (int i = 0; i < n; i++) {
      detectron2_name(name, sizeof name, b[i].name);
      synco_named_buffer renamed = b[i];
      renamed.name = name;
      if (synco_weights_add_buffers(w, be, "", &renamed, 1)) {
        synco_cli_error("export");
        goto done;
      }
    }
    synco_st_set_meta(w, "__author__", "synco");
    synco_st_set_meta(w, "matching_heuristics", "True");
  }
  synco_st_set_meta(w, "synco.format", d2 ? "detectron2" : "encoder");
  /* What a user needs besides the weights: the architecture by name and the preprocessing (synco.encoder, written
   * with the weights, has depth, width, cifar_stem and image_size as numbers). */
  char arch[32], pre[512];
  snprintf(arch, sizeof arch, "resnet%d", cfg.depth);
  synco_cli_preprocess_json(pre, sizeof pre, image_size);
  if (synco_st_set_meta(w, "synco.arch", arch) || synco_st_set_meta(w, "synco.preprocess", pre)) {
    synco_cli_error("export");
    goto done;
  }
  if (synco_st_write(w, out)) {
    synco_cli_error("export");
    goto done;
  }
  printf("wrote %s (%s encoder, %s names%s)\n", out, which, d2 ? "detectron2" : "torchvision", cfg.head ? ", with head" : "");
  ret = 0;
done:
  synco_st_writer_free(w);
  synco_encoder_free(enc);
  synco_backend_destroy(be);
  return ret;
}
