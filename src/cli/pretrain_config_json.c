/* The settings table of synco pretrain: config.json and the checkpoint's "synco.config" are written from it, and
 * --resume reads a run's settings back through it (those of the model and the queue refuse another value). */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "cli/args.h"
#include "cli/pretrain.h"
#include "io/safetensors.h"

/* One setting of config.json: its key, its flag, its type (i int, d double, s string, S string or null) and where
 * it lives in pretrain_opts. `shaped` settings fix the model or the queue of a checkpoint: a resumed run takes
 * them from the checkpoint and refuses another value. The batch size is not one: a run may resume with another
 * (a divisor of K), and the queue pointer continues where the checkpoint left it. */
typedef struct {
  const char *key, *flag;
  char type;
  size_t off;
  int shaped;
} cfg_field;

#define F(key, flag, type, field, shaped) {key, flag, type, offsetof(pretrain_opts, field), shaped}
static const cfg_field k_fields[] = {
    F("arch", "arch", 's', arch, 1), F("width", "width", 'i', width, 1), F("cifar_stem", "cifar-stem", 'i', cifar_stem, 1),
    F("image_size", "image-size", 'i', image_size, 0), F("data", "data", 's', data, 0), F("val", "val", 'S', val, 0),
    F("split", "split", 's', split, 0), F("skip_bad", "skip-bad", 'i', skip_bad, 0), F("epochs", "epochs", 'i', epochs, 0),
    F("batch_size", "batch-size", 'i', batch, 0), F("lr", "lr", 'd', lr, 0), F("wd", "wd", 'd', wd, 0),
    F("momentum", "momentum", 'd', momentum, 0), F("cos", "cos", 'i', cos, 0),
    F("lr_warmup_epochs", "lr-warmup-epochs", 'i', lr_warmup_epochs, 0), F("moco_dim", "moco-dim", 'i', moco_dim, 1),
    F("moco_k", "moco-k", 'i', moco_k, 1), F("moco_m", "moco-m", 'd', moco_m, 0), F("moco_t", "moco-t", 'd', moco_t, 0),
    F("mlp", "mlp", 'i', mlp, 1), F("aug_plus", "aug-plus", 'i', aug_plus, 0), F("blur", "blur", 'i', blur, 0),
    F("bn_splits", "bn-splits", 'i', bn_splits, 0), F("symmetric", "symmetric", 'i', symmetric, 0),
    F("method", "method", 's', method, 0), F("n_hard", "n-hard", 'i', n_hard, 0), F("n1", "n1", 'i', n[0], 0),
    F("n2", "n2", 'i', n[1], 0), F("n3", "n3", 'i', n[2], 0), F("n4", "n4", 'i', n[3], 0), F("n5", "n5", 'i', n[4], 0),
    F("n6", "n6", 'i', n[5], 0), F("sigma", "sigma", 'd', sigma, 0), F("delta", "delta", 'd', delta, 0),
    F("eta", "eta", 'd', eta, 0), F("warmup_epochs", "warmup-epochs", 'i', warmup_epochs, 0),
    F("seed", "seed", 'l', seed, 1), F("threads", "threads", 'i', threads, -1), F("workers", "workers", 'i', workers, -1),
    F("backend", "backend", 's', backend, -1), F("knn_every", "knn-every", 'i', knn_every, 0),
    F("knn_k", "knn-k", 'i', knn_k, 0), F("knn_t", "knn-t", 'd', knn_t, 0), F("save_every", "save-every", 'i', save_every, 0),
    F("precision", "precision", 's', precision, 0), /* a resumed run keeps it; --precision may change it (a note) */
};
#undef F

/* config.json and the checkpoint's "synco.config": every setting, resolved (shaped -1: the machine's, not the
 * run's; written, not taken back on resume). */
char *pretrain_config_json(const pretrain_opts *o) {
  cJSON *j = cJSON_CreateObject();
  for (size_t i = 0; j && i < sizeof k_fields / sizeof k_fields[0]; i++) {
    const cfg_field *f = &k_fields[i];
    const char *p = (const char *)o + f->off;
    cJSON *v = NULL;
    char num[32];
    switch (f->type) {
      case 'i': v = cJSON_CreateNumber(*(const int *)p); break;
      case 'd': v = cJSON_CreateNumber(*(const double *)p); break;
      case 'l': /* exact beyond 2^53 (a double would round it) */
        snprintf(num, sizeof num, "%lld", *(const long long *)p);
        v = cJSON_CreateRaw(num);
        break;
      case 's': case 'S': {
        const char *str = *(const char *const *)p;
        v = str ? cJSON_CreateString(str) : cJSON_CreateNull();
        break;
      }
    }
    if (!v || !cJSON_AddItemToObject(j, f->key, v)) {
      cJSON_Delete(v);
      cJSON_Delete(j);
      return NULL;
    }
    if (!strcmp(f->key, "cos")) { /* the schedule's milestones follow cos, as before */
      cJSON *a = cJSON_CreateIntArray(o->schedule.v, o->schedule.n);
      if (!a || !cJSON_AddItemToObject(j, "schedule", a)) {
        cJSON_Delete(a);
        cJSON_Delete(j);
        return NULL;
      }
    }
  }
  if (j && !cJSON_AddStringToObject(j, "version", synco_version())) {
    cJSON_Delete(j);
    return NULL;
  }
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  return s;
}

int pretrain_arch_depth(const char *arch) {
  return !strcmp(arch, "resnet18") ? 18 : !strcmp(arch, "resnet34") ? 34 : !strcmp(arch, "resnet50") ? 50 : 0;
}

int pretrain_method_known(const char *method) {
  return !strcmp(method, "synco") || !strcmp(method, "mochi") || !strcmp(method, "moco");
}

/* The value a resumed run takes from its checkpoint's config j for setting f, or NULL: one the run keeps (not the
 * machine's settings), given in j, and not given on the command line (a --method given anew brings its own
 * --n1..--n6 presets, apply_method). */
static const cJSON *taken(const cfg_field *f, const synco_arg *args, const cJSON *j) {
  if (!j || f->shaped < 0 || synco_args_seen(args, f->flag)) return NULL;
  if (f->key[0] == 'n' && f->key[1] >= '1' && f->key[1] <= '6' && !f->key[2] && synco_args_seen(args, "method"))
    return NULL;
  return cJSON_GetObjectItemCaseSensitive(j, f->key);
}

int pretrain_config_from_file(const void *ctx, const char *flag) {
  const pretrain_ctx *c = (const pretrain_ctx *)ctx;
  if (!c->resume_json) return 0;
  if (!strcmp(flag, "schedule"))
    return !synco_args_seen(c->args, "schedule") && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(c->resume_json, "schedule"));
  for (size_t i = 0; i < sizeof k_fields / sizeof k_fields[0]; i++)
    if (!strcmp(k_fields[i].flag, flag)) return taken(&k_fields[i], c->args, c->resume_json) != NULL;
  return 0;
}

/* A setting the checkpoint's config holds for a setting the run takes from it, judged as its flag would be: the
 * type, the flag's range (args.c), a string not empty and one of its choices. The other settings' ties (K a multiple
 * of the batch, ...) are judged with the flags', by synco_pretrain_config_check, naming the file and the key. */
static synco_status judge_taken(const cfg_field *f, const cJSON *v, const synco_arg *args, const char *ckpt) {
  char why[128];
  if (f->type == 'i' || f->type == 'd' || f->type == 'l') {
    if (!cJSON_IsNumber(v)) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s is not a number", ckpt, f->key);
    if (synco_arg_check_value(args, f->flag, v->valuedouble, why, sizeof why))
      return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s %.15g is %s", ckpt, f->key, v->valuedouble, why);
    return SYNCO_OK;
  }
  if (f->type == 'S' && cJSON_IsNull(v)) return SYNCO_OK;
  if (!cJSON_IsString(v)) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s is not a string", ckpt, f->key);
  if (!v->valuestring[0]) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s is empty", ckpt, f->key);
  if (!strcmp(f->key, "arch") && !pretrain_arch_depth(v->valuestring))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: arch '%s' is not resnet18, resnet34 or resnet50", ckpt,
                      v->valuestring);
  if (!strcmp(f->key, "precision") && strcmp(v->valuestring, "fp32") && strcmp(v->valuestring, "tf32") &&
      strcmp(v->valuestring, "bf16"))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: precision '%s' is not fp32, tf32 or bf16", ckpt,
                      v->valuestring);
  if (!strcmp(f->key, "method") && !pretrain_method_known(v->valuestring))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: method '%s' is not synco, mochi or moco", ckpt, v->valuestring);
  return SYNCO_OK;
}

/* Takes the settings of a resumed run from the checkpoint's "synco.config", except those given on the command
 * line; a given value that cannot work with the checkpoint (another width, K, batch, ...) is refused. The strings
 * point into *json, which the caller frees after the run. A checkpoint without a config changes nothing. */
synco_status pretrain_resume_config(pretrain_opts *o, const synco_arg *args, const char *ckpt, cJSON **json) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, ckpt));
  const char *text = synco_st_meta(&st, "synco.config"), *seed = synco_st_meta(&st, "synco.seed");
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  char seedbuf[32] = "";
  if (seed) snprintf(seedbuf, sizeof seedbuf, "%s", seed);
  synco_st_close(&st);
  if (text && !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return synco_fail(SYNCO_ERR_FORMAT, "%s: its synco.config metadata is not a JSON object", ckpt);
  }
  *json = j;
  for (size_t i = 0; j && i < sizeof k_fields / sizeof k_fields[0]; i++) {
    const cfg_field *f = &k_fields[i];
    if (f->shaped < 0) continue;
    const int seen = synco_args_seen(args, f->flag);
    /* a --method given anew brings its own --n1..--n6 presets (apply_method) */
    if (!seen && f->key[0] == 'n' && f->key[1] >= '1' && f->key[1] <= '6' && !f->key[2] && synco_args_seen(args, "method"))
      continue;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f->key);
    if (!v) continue;
    if (taken(f, args, j)) SYNCO_TRY(judge_taken(f, v, args, ckpt));
    char *p = (char *)o + f->off;
    char was[300], given[300];
    if (f->type == 'i' || f->type == 'd' || f->type == 'l') {
      if (!cJSON_IsNumber(v)) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s is not a number", ckpt, f->key);
      const double x = v->valuedouble;
      long long seed_val = (long long)x;
      if (f->type == 'l' && seedbuf[0]) seed_val = (long long)strtoull(seedbuf, NULL, 10);
      if (f->type != 'd' && (x != floor(x) || fabs(x) > 9.2e18))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s %g is not an integer", ckpt, f->key, x);
      if (f->type == 'i' && (x < INT_MIN || x > INT_MAX))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s %g is out of range", ckpt, f->key, x);
      if (!seen) {
        if (f->type == 'i') *(int *)p = (int)x;
        else if (f->type == 'd') *(double *)p = x;
        else *(long long *)p = seed_val;
        continue;
      }
      const int same = f->type == 'i' ? *(int *)p == (int)x : f->type == 'd' ? *(double *)p == x : *(long long *)p == seed_val;
      if (same || !f->shaped) continue;
      if (f->type == 'i') snprintf(given, sizeof given, "%d", *(int *)p), snprintf(was, sizeof was, "%d", (int)x);
      else snprintf(given, sizeof given, "%lld", *(long long *)p), snprintf(was, sizeof was, "%lld", seed_val);
    } else {
      if (!cJSON_IsString(v) && !(f->type == 'S' && cJSON_IsNull(v)))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s is not a string", ckpt, f->key);
      const char *x = cJSON_IsString(v) ? v->valuestring : NULL;
      if (!seen) {
        *(const char **)p = x;
        continue;
      }
      const char *cur = *(const char **)p;
      if ((cur && x && !strcmp(cur, x)) || (!cur && !x) || !f->shaped) continue;
      snprintf(given, sizeof given, "%s", cur ? cur : "none");
      snprintf(was, sizeof was, "%s", x ? x : "none");
    }
    return synco_fail(SYNCO_ERR_ARG,
                      "--%s %s does not fit %s, trained with %s %s (its weights and queue are shaped by it): drop "
                      "--%s to continue that run, or start a new one",
                      f->flag, given, ckpt, f->key, was, f->flag);
  }
  if (!j && seedbuf[0] && !synco_args_seen(args, "seed")) o->seed = (long long)strtoull(seedbuf, NULL, 10);
  const cJSON *sch = cJSON_GetObjectItemCaseSensitive(j, "schedule");
  if (!synco_args_seen(args, "schedule") && cJSON_IsArray(sch)) {
    const int n = cJSON_GetArraySize(sch);
    if (n > 16) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: schedule has %d milestones (at most 16)", ckpt, n);
    for (int k = 0; k < n; k++) {
      const cJSON *e = cJSON_GetArrayItem(sch, k);
      if (!cJSON_IsNumber(e)) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: schedule is not a list of epochs", ckpt);
      char why[128];
      if (synco_arg_check_value(args, "schedule", e->valuedouble, why, sizeof why))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: schedule's epoch %.15g is %s", ckpt, e->valuedouble, why);
      o->schedule.v[k] = e->valueint;
    }
    o->schedule.n = n;
  }
  return SYNCO_OK;
}
