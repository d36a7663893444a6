/* Encoder weights in safetensors files: writing them under torchvision names, reading the architecture back,
 * and loading them into an encoder, from a pretraining checkpoint ("encoder_q."/"encoder_k." prefixes), an
 * export (plain torchvision names) or a torchvision state_dict converted to safetensors (architecture
 * inferred from the keys and shapes). The encoder is seen only as its list of named backend buffers
 * (synco_encoder_named_buffers), and their bytes move only through the backend's copy: downloaded into host
 * memory the writer owns for a save, uploaded from a host copy for a load, so any backend's memory works. */
#include "nn/encoder_weights.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "io/checkpoint.h"

char *synco_weights_config_json_for(const synco_encoder_config *c, int image_size) {
  char *s = malloc(256);
  if (!s) return NULL;
  snprintf(s, 256,
           "{\"depth\":%d,\"width\":%d,\"cifar_stem\":%d,\"head\":%d,\"mlp\":%d,\"dim\":%d,\"image_size\":%d}",
           c->depth, c->width, c->cifar_stem, c->head, c->mlp, c->dim, image_size);
  return s;
}

char *synco_weights_config_json(const synco_encoder *enc) {
  return synco_weights_config_json_for(synco_encoder_cfg(enc), synco_encoder_image_size(enc));
}

synco_status synco_weights_add(synco_st_writer *w, synco_encoder *enc, const char *prefix) {
  int n = 0;
  const synco_named_buffer *b = synco_encoder_named_buffers(enc, &n);
  SYNCO_TRY(synco_weights_add_buffers(w, synco_encoder_backend(enc), prefix, b, n));
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

/* An integer field of the "synco.encoder" metadata: absent gives dflt; present, it must be a whole number in
 * [lo, hi] (a claim such as width 4096 would otherwise size every allocation that follows). */
static synco_status meta_int(cJSON *o, const char *k, int dflt, int lo, int hi, int *out, const char *path) {
  cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  *out = dflt;
  if (!x) return SYNCO_OK;
  if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < lo || x->valuedouble > hi)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: metadata 'synco.encoder' field '%s' is not a whole number in %d..%d", path,
                      k, lo, hi);
  *out = (int)x->valuedouble;
  return SYNCO_OK;
}

/* A 4-d or 2-d tensor's shape as "[a,b,...]" for messages. */
static const char *shape_str(const synco_st_entry *e, char *buf, size_t n) {
  int k = snprintf(buf, n, "[");
  for (int i = 0; i < e->ndim && k > 0 && (size_t)k < n; i++)
    k += snprintf(buf + k, n - (size_t)k, "%s%lld", i ? "," : "", (long long)e->shape[i]);
  if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
  return buf;
}

/* Checks tensor `pre``name` exists with shape dims[0..nd) (-1: any). `field` names what the metadata claims. */
static synco_status expect_shape(const synco_safetensors *st, const char *pre, const char *name, int nd,
                                 const long long *dims, const char *claim) {
  char key[160], got[96];
  snprintf(key, sizeof key, "%s%s", pre, name);
  const synco_st_entry *e = synco_st_find(st, key);
  if (!e) return synco_fail(SYNCO_ERR_FORMAT, "%s: %s, but the file has no tensor '%s'", st->path, claim, key);
  int same = e->ndim == nd;
  for (int i = 0; same && i < nd; i++) same = dims[i] < 0 || e->shape[i] == dims[i];
  if (!same)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: %s, but tensor '%s' has shape %s", st->path, claim, key,
                      shape_str(e, got, sizeof got));
  return SYNCO_OK;
}

/* Checks a configuration read from metadata (or inferred) against the tensors the file actually holds, before
 * anyone sizes an encoder by it: the stem (conv1: width x 3 x k x k), the block type and depth (which layers
 * exist), the last block's channels (8 x width, x4 for bottlenecks) and, with a head, its fc shapes (dim). The
 * file must hold the largest of these tensors, so a small file cannot claim a huge encoder. */
static synco_status check_config(const synco_safetensors *st, const char *pre, const synco_encoder_config *c, int from_meta) {
  char claim[160], key[160];
  const char *says = from_meta ? "metadata 'synco.encoder' says" : "conv1.weight gives";
  const long long w = c->width, k = c->cifar_stem ? 3 : 7;
  snprintf(claim, sizeof claim, "%s width %d%s", says, c->width, c->cifar_stem ? " with the CIFAR stem" : "");
  SYNCO_TRY(expect_shape(st, pre, "conv1.weight", 4, (long long[]){w, 3, k, k}, claim));
  snprintf(key, sizeof key, "%slayer1.0.conv3.weight", pre);
  const int bottleneck = synco_st_find(st, key) != NULL;
  snprintf(key, sizeof key, "%slayer3.2.conv1.weight", pre);
  const int deep = synco_st_find(st, key) != NULL;
  const int found = bottleneck ? 50 : deep ? 34 : 18;
  if (found != c->depth || (bottleneck && !deep))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: %s depth %d, but the tensors are those of a %s", st->path, says, c->depth, bottleneck && !deep ? "broken ResNet" : found == 50 ? "ResNet-50" : found == 34 ? "ResNet-34" : "ResNet-18");
  const long long feat = 8 * w * (bottleneck ? 4 : 1);
  snprintf(claim, sizeof claim, "%s width %d (%lld features)", says, c->width, feat);
  SYNCO_TRY(expect_shape(st, pre, c->depth == 18 ? "layer4.1.bn2.weight" : c->depth == 34 ? "layer4.2.bn2.weight" : "layer4.2.bn3.weight",
                         1, (long long[]){feat}, claim));
  SYNCO_TRY(expect_shape(st, pre, c->depth == 18 ? "layer4.1.conv2.weight" : c->depth == 34 ? "layer4.2.conv2.weight" : "layer4.2.conv3.weight",
                         4, (long long[]){feat, -1, -1, -1}, claim));
  if (c->head) {
    snprintf(claim, sizeof claim, "%s a%s head with dim %d on %lld features", says, c->mlp ? "n MLP" : " linear", c->dim, feat);
    if (c->mlp) {
      SYNCO_TRY(expect_shape(st, pre, "fc.0.weight", 2, (long long[]){feat, feat}, claim));
      SYNCO_TRY(expect_shape(st, pre, "fc.2.weight", 2, (long long[]){c->dim, feat}, claim));
    } else {
      SYNCO_TRY(expect_shape(st, pre, "fc.weight", 2, (long long[]){c->dim, feat}, claim));
    }
  }
  return SYNCO_OK;
}

/* Ends with ".running_var" (or is "running_var"): a BN running variance. */
static int is_running_var(const char *name) {
  const size_t n = strlen(name), k = strlen("running_var");
  return n >= k && !strcmp(name + n - k, "running_var") && (n == k || name[n - k - 1] == '.');
}

synco_status synco_weights_check_values(const synco_safetensors *st) {
  float *v = NULL;
  size_t cap = 0;
  synco_status s = SYNCO_OK;
  for (int t = 0; t < st->count && !s; t++) {
    const synco_st_entry *e = &st->entries[t];
    if (e->dtype != SYNCO_ST_F32 && e->dtype != SYNCO_ST_F64 && e->dtype != SYNCO_ST_F16 && e->dtype != SYNCO_ST_BF16) continue;
    const size_t n = synco_st_numel(e);
    if (n > cap) {
      float *g = realloc(v, n * sizeof *v);
      if (!g) {
        s = synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory checking tensor '%s' (%zu values)", st->path, e->name, n);
        break;
      }
      v = g;
      cap = n;
    }
    s = synco_st_get_f32(st, e->name, v, n, NULL, 0); /* NaN/inf refused, by name */
    const int var = is_running_var(e->name);
    for (size_t i = 0; i < n && !s; i++) {
      if (var && !(v[i] > 0.f))
        s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' holds %g at [%zu]: a BN running variance must be greater than "
                       "0 and finite", st->path, e->name, (double)v[i], i);
      else if (fabsf(v[i]) > SYNCO_WEIGHTS_MAX_ABS)
        s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' holds %g at [%zu]: no trained network holds a value beyond "
                       "%g (a damaged or crafted file)", st->path, e->name, (double)v[i], i, (double)SYNCO_WEIGHTS_MAX_ABS);
    }
  }
  free(v);
  return s;
}

synco_status synco_weights_read_config(const char *path, synco_encoder_config *cfg, int *image_size) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, path));
  const synco_status s = synco_weights_read_config_st(&st, cfg, image_size);
  synco_st_close(&st);
  return s;
}

synco_status synco_weights_read_config_st(const synco_safetensors *stp, synco_encoder_config *cfg, int *image_size) {
  const synco_safetensors st = *stp; /* the functions below take it by address; nothing of it changes */
  const char *path = st.path;
  memset(cfg, 0, sizeof *cfg);
  cfg->bn_splits = 1;
  const char *meta = synco_st_meta(&st, "synco.encoder");
  const char *pre = prefix_for(&st, "query");
  const char *fmt = synco_st_meta(&st, "synco.format");
  synco_status s = SYNCO_OK;
  if (fmt && !strcmp(fmt, "detectron2")) {
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: a detectron2 export (its names are detectron2's, stem.* and res2.*); synco "
                   "reads the torchvision-named export (synco export without --format detectron2)", path);
  } else if (meta) {
    cJSON *o = cJSON_Parse(meta);
    if (!o || !cJSON_IsObject(o)) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: metadata 'synco.encoder' is not valid JSON (an object)", path);
    } else {
      s = meta_int(o, "depth", 18, 18, 50, &cfg->depth, path);
      if (!s && cfg->depth != 18 && cfg->depth != 34 && cfg->depth != 50)
        s = synco_fail(SYNCO_ERR_FORMAT, "%s: metadata 'synco.encoder' field 'depth' is %d (18, 34 or 50)", path, cfg->depth);
      if (!s) s = meta_int(o, "width", 64, 1, 4096, &cfg->width, path);
      if (!s) s = meta_int(o, "cifar_stem", 0, 0, 1, &cfg->cifar_stem, path);
      if (!s) s = meta_int(o, "head", 0, 0, 1, &cfg->head, path);
      if (!s) s = meta_int(o, "mlp", 1, 0, 1, &cfg->mlp, path);
      if (!s) s = meta_int(o, "dim", 128, 1, 65536, &cfg->dim, path);
      if (!s) s = meta_int(o, "image_size", cfg->cifar_stem ? 32 : 224, 8, 4096, image_size, path);
    }
    cJSON_Delete(o);
  } else {
    /* A torchvision state_dict saved as safetensors: infer the architecture from names and shapes. */
    char k[160];
    snprintf(k, sizeof k, "%sconv1.weight", pre);
    const synco_st_entry *c1 = synco_st_find(&st, k);
    if (!c1 || c1->ndim != 4) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: no '%s' tensor: not a ResNet encoder", path, k);
    } else if (c1->shape[0] < 1 || c1->shape[0] > 4096) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has %lld output channels (a ResNet's width is 1..4096)", path, k,
                     (long long)c1->shape[0]);
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
  if (!s) s = check_config(&st, pre, cfg, meta != NULL);
  /* Weights that cannot be right (NaN/inf, beyond SYNCO_WEIGHTS_MAX_ABS, a running variance <= 0) are refused here,
   * before any caller sizes an encoder and reads data for it. */
  if (!s) s = synco_weights_check_values(&st);
  return s;
}

synco_status synco_weights_load(synco_encoder *enc, const char *path, const char *which, int strict) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, path));
  if (synco_weights_check_values(&st) != SYNCO_OK) {
    synco_st_close(&st);
    return SYNCO_ERR_FORMAT;
  }
  const char *pre = prefix_for(&st, which);
  if (!*pre && which && !strcmp(which, "key")) { /* once it loaded the file's one encoder as if it were the key's */
    synco_st_close(&st);
    return synco_fail(SYNCO_ERR_ARG, "--which key needs a pretraining checkpoint; %s holds a single encoder (an export, "
                      "under torchvision names)", path);
  }
  synco_backend *be = synco_encoder_backend(enc);
  int n = 0;
  const synco_named_buffer *b = synco_encoder_named_buffers(enc, &n);
  char name[160], missing[512] = "";
  int nmissing = 0, head_missing = 0, loaded = 0;
  synco_status s = SYNCO_OK;
  for (int i = 0; i < n && !s; i++) {
    snprintf(name, sizeof name, "%s%s", pre, b[i].name);
    if (!synco_st_find(&st, name)) {
      if (!strncmp(b[i].name, "fc.", 3)) {
        head_missing++;
        continue;
      }
      if (nmissing++ < 4) {
        size_t len = strlen(missing);
        snprintf(missing + len, sizeof missing - len, "%s'%s'", len ? ", " : "", name);
      }
      continue;
    }
    s = synco_weights_get_buffer(&st, be, name, &b[i]);
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

static const synco_named_buffer *find_buffer(const synco_named_buffer *b, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(b[i].name, name)) return &b[i];
  return NULL;
}

synco_status synco_weights_load_report(synco_encoder *enc, const char *path, char *report, size_t n) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, path));
  if (synco_weights_check_values(&st) != SYNCO_OK) {
    synco_st_close(&st);
    return SYNCO_ERR_FORMAT;
  }
  const char *pre = prefix_for(&st, "query");
  const size_t plen = strlen(pre);
  char unexpected[400] = "", missing[400] = "", name[160];
  int n_unexpected = 0, n_missing = 0, loaded = 0;
  synco_backend *be = synco_encoder_backend(enc);
  int nb = 0;
  const synco_named_buffer *b = synco_encoder_named_buffers(enc, &nb);
  synco_status s = SYNCO_OK;
  for (int i = 0; i < st.count && !s; i++) {
    const char *key = st.entries[i].name;
    if (plen && strncmp(key, pre, plen) != 0) continue; /* other parts of a checkpoint */
    const synco_named_buffer *t = find_buffer(b, nb, key + plen);
    if (!t) {
      if (strcmp(key + plen, "num_batches_tracked") && !strstr(key, ".num_batches_tracked"))
        list_add(unexpected, sizeof unexpected, &n_unexpected, key);
      continue;
    }
    s = synco_weights_get_buffer(&st, be, key, t);
    loaded++;
  }
  for (int i = 0; i < nb && !s; i++) {
    snprintf(name, sizeof name, "%s%s", pre, b[i].name);
    if (!synco_st_find(&st, name)) list_add(missing, sizeof missing, &n_missing, b[i].name);
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
