/* Encoder weights in safetensors files: writing them under torchvision names, reading the architecture back,
 * and loading them into an encoder, from a pretraining checkpoint ("encoder_q."/"encoder_k." prefixes), an
 * export (plain torchvision names) or a torchvision state_dict converted to safetensors (architecture
 * inferred from the keys and shapes). */
#include "io/checkpoint.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

char *synco_weights_config_json(const synco_encoder *enc) {
  const synco_encoder_config *c = synco_encoder_cfg(enc);
  char *s = malloc(256);
  if (!s) return NULL;
  snprintf(s, 256,
           "{\"depth\":%d,\"width\":%d,\"cifar_stem\":%d,\"head\":%d,\"mlp\":%d,\"dim\":%d,\"image_size\":%d}",
           c->depth, c->width, c->cifar_stem, c->head, c->mlp, c->dim, synco_encoder_image_size(enc));
  return s;
}

synco_status synco_weights_add(synco_st_writer *w, synco_encoder *enc, const char *prefix) {
  int np = 0, nb = 0;
  const synco_param_view *pv = synco_encoder_param_views(enc, &np);
  const synco_param_view *bv = synco_encoder_buffer_views(enc, &nb);
  char name[160];
  for (int i = 0; i < np + nb; i++) {
    const synco_param_view *v = i < np ? &pv[i] : &bv[i - np];
    const float *base = i < np ? synco_encoder_params(enc) : synco_encoder_buffers(enc);
    snprintf(name, sizeof name, "%s%s", prefix, v->name);
    SYNCO_TRY(synco_st_add_f32(w, name, base + v->offset, v->ndim, v->shape));
  }
  char *js = synco_weights_config_json(enc);
  if (!js) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  synco_status s = synco_st_set_meta(w, "synco.encoder", js);
  free(js);
  return s;
}

/* Which prefix a file's encoder keys carry for `which` ("query"/"key"), "" for plain torchvision names. */
static const char *prefix_for(const synco_safetensors *st, const char *which) {
  if (synco_st_find(st, "encoder_q.conv1.weight")) return which && !strcmp(which, "key") ? "encoder_k." : "encoder_q.";
  return "";
}

static int get_int(cJSON *o, const char *k, int dflt) {
  cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(x) ? x->valueint : dflt;
}

synco_status synco_weights_read_config(const char *path, synco_encoder_config *cfg, int *image_size) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, path));
  memset(cfg, 0, sizeof *cfg);
  cfg->bn_splits = 1;
  const char *meta = synco_st_meta(&st, "synco.encoder");
  synco_status s = SYNCO_OK;
  if (meta) {
    cJSON *o = cJSON_Parse(meta);
    if (!o) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: metadata 'synco.encoder' is not valid JSON", path);
    } else {
      cfg->depth = get_int(o, "depth", 18);
      cfg->width = get_int(o, "width", 64);
      cfg->cifar_stem = get_int(o, "cifar_stem", 0);
      cfg->head = get_int(o, "head", 0);
      cfg->mlp = get_int(o, "mlp", 1);
      cfg->dim = get_int(o, "dim", 128);
      *image_size = get_int(o, "image_size", cfg->cifar_stem ? 32 : 224);
      cJSON_Delete(o);
    }
  } else {
    /* A torchvision state_dict saved as safetensors: infer the architecture from names and shapes. */
    const char *pre = prefix_for(&st, "query");
    char k[160];
    snprintf(k, sizeof k, "%sconv1.weight", pre);
    const synco_st_entry *c1 = synco_st_find(&st, k);
    if (!c1 || c1->ndim != 4) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: no '%s' tensor: not a ResNet encoder", path, k);
    } else {
      cfg->width = (int)c1->shape[0];
      cfg->cifar_stem = c1->shape[2] == 3;
      snprintf(k, sizeof k, "%slayer1.0.conv3.weight", pre);
      const int bottleneck = synco_st_find(&st, k) != NULL;
      snprintf(k, sizeof k, "%slayer3.2.conv1.weight", pre);
      const int deep = synco_st_find(&st, k) != NULL;
      cfg->depth = bottleneck ? 50 : deep ? 34 : 18;
      cfg->head = 0;
      cfg->mlp = 1;
      cfg->dim = 128;
      *image_size = cfg->cifar_stem ? 32 : 224;
    }
  }
  synco_st_close(&st);
  return s;
}

synco_status synco_weights_load(synco_encoder *enc, const char *path, const char *which, int strict) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, path));
  const char *pre = prefix_for(&st, which);
  int np = 0, nb = 0;
  const synco_param_view *pv = synco_encoder_param_views(enc, &np);
  const synco_param_view *bv = synco_encoder_buffer_views(enc, &nb);
  char name[160], missing[512] = "";
  int nmissing = 0, head_missing = 0, loaded = 0;
  synco_status s = SYNCO_OK;
  for (int i = 0; i < np + nb && !s; i++) {
    const synco_param_view *v = i < np ? &pv[i] : &bv[i - np];
    float *base = i < np ? synco_encoder_params(enc) : synco_encoder_buffers(enc);
    snprintf(name, sizeof name, "%s%s", pre, v->name);
    if (!synco_st_find(&st, name)) {
      if (!strncmp(v->name, "fc.", 3)) {
        head_missing++;
        continue;
      }
      if (nmissing++ < 4) {
        size_t n = strlen(missing);
        snprintf(missing + n, sizeof missing - n, "%s'%s'", n ? ", " : "", name);
      }
      continue;
    }
    s = synco_st_get_f32(&st, name, base + v->offset, v->numel, v->shape, v->ndim);
    loaded++;
  }
  if (!s && nmissing)
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: %d encoder tensor(s) missing: %s%s", path, nmissing, missing, nmissing > 4 ? ", ..." : "");
  if (!s && strict && head_missing)
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: the projection head (fc.*) is missing", path);
  if (!s && !loaded) s = synco_fail(SYNCO_ERR_FORMAT, "%s: no encoder tensors found", path);
  synco_st_close(&st);
  return s;
}

/* Appends name to a comma-separated list, eliding after a few. */
static void list_add(char *buf, size_t n, int *count, const char *name) {
  if ((*count)++ >= 6) return;
  const size_t len = strlen(buf);
  snprintf(buf + len, n - len, "%s%s", len ? ", " : "", name);
}

synco_status synco_weights_load_report(synco_encoder *enc, const char *path, char *report, size_t n) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, path));
  const char *pre = prefix_for(&st, "query");
  const size_t plen = strlen(pre);
  char unexpected[400] = "", missing[400] = "", name[160];
  int n_unexpected = 0, n_missing = 0, loaded = 0;
  synco_status s = SYNCO_OK;
  for (int i = 0; i < st.count && !s; i++) {
    const char *key = st.entries[i].name;
    if (plen && strncmp(key, pre, plen) != 0) continue; /* other parts of a checkpoint */
    int is_buffer = 0;
    const synco_param_view *v = synco_encoder_find(enc, key + plen, &is_buffer);
    if (!v) {
      if (strcmp(key + plen, "num_batches_tracked") && !strstr(key, ".num_batches_tracked"))
        list_add(unexpected, sizeof unexpected, &n_unexpected, key);
      continue;
    }
    float *base = is_buffer ? synco_encoder_buffers(enc) : synco_encoder_params(enc);
    s = synco_st_get_f32(&st, key, base + v->offset, v->numel, v->shape, v->ndim);
    loaded++;
  }
  int np = 0, nb = 0;
  const synco_param_view *pv = synco_encoder_param_views(enc, &np);
  const synco_param_view *bv = synco_encoder_buffer_views(enc, &nb);
  for (int i = 0; i < np + nb && !s; i++) {
    const synco_param_view *v = i < np ? &pv[i] : &bv[i - np];
    snprintf(name, sizeof name, "%s%s", pre, v->name);
    if (!synco_st_find(&st, name)) list_add(missing, sizeof missing, &n_missing, v->name);
  }
  if (!s && !loaded) s = synco_fail(SYNCO_ERR_FORMAT, "%s: no tensor matches the encoder's torchvision names", path);
  if (!s && report && n) {
    report[0] = 0;
    int k = 0;
    if (n_unexpected)
      k = snprintf(report, n, "%d unexpected key(s) ignored: %s%s", n_unexpected, unexpected, n_unexpected > 6 ? ", ..." : "");
    if (n_missing && k >= 0 && (size_t)k < n)
      snprintf(report + k, n - (size_t)k, "%s%d tensor(s) not in the file, left at their initial values: %s%s",
               k ? "; " : "", n_missing, missing, n_missing > 6 ? ", ..." : "");
  }
  synco_st_close(&st);
  return s;
}
