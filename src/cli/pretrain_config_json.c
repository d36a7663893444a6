/* The settings table of synco pretrain: config.json and the checkpoint's "synco.config" are written from it, and
 * --resume reads a run's settings back through it (those of the model and the queue refuse another value). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "cli/args.h"
#include "cli/pretrain.h"
#include "io/safetensors.h"

/* One setting of config.json: its key, its flag, its type (i int, d double, l long long, s string, S string or null)
 * and where it lives in pretrain_opts. A resumed run takes every setting from its checkpoint (the thread count too:
 * the sums depend on it) unless a flag gives it anew, and says what a flag changed. `shaped` settings fix the model
 * or the queue of a checkpoint: a resumed run refuses another value. shaped -1: --init, which a resumed run does not
 * take (its weights come from the checkpoint) and `--config FILE` does. The batch size is not shaped: a run may
 * resume with another (a divisor of K), and the queue pointer continues where the checkpoint left it. `local`
 * settings may differ between the processes of one run (a path to the same data, each machine's threads and
 * backend); the others must be the same on every rank (pretrain_settings_text). */
typedef struct {
  const char *key, *flag;
  char type;
  size_t off;
  int shaped, local;
} cfg_field;

#define F(key, flag, type, field, shaped) {key, flag, type, offsetof(pretrain_opts, field), shaped, 0}
#define L(key, flag, type, field) {key, flag, type, offsetof(pretrain_opts, field), 0, 1}
static const cfg_field k_fields[] = {
    F("arch", "arch", 's', arch, 1), F("width", "width", 'i', width, 1), F("cifar_stem", "cifar-stem", 'i', cifar_stem, 1),
    F("image_size", "image-size", 'i', image_size, 0), L("data", "data", 's', data), L("val", "val", 'S', val),
    F("split", "split", 's', split, 0), F("skip_bad", "skip-bad", 'i', skip_bad, 0), F("epochs", "epochs", 'i', epochs, 0),
    F("batch_size", "batch-size", 'i', batch, 0), F("lr", "lr", 'd', lr, 0), F("wd", "wd", 'd', wd, 0),
    F("momentum", "momentum", 'd', momentum, 0), F("cos", "cos", 'i', cos, 0),
    F("schedule_epochs", "schedule-epochs", 'i', schedule_epochs, 0),
    F("lr_warmup_epochs", "lr-warmup-epochs", 'i', lr_warmup_epochs, 0), F("moco_dim", "moco-dim", 'i', moco_dim, 1),
    F("moco_k", "moco-k", 'i', moco_k, 1), F("moco_m", "moco-m", 'd', moco_m, 0), F("moco_t", "moco-t", 'd', moco_t, 0),
    F("mlp", "mlp", 'i', mlp, 1), F("aug_plus", "aug-plus", 'i', aug_plus, 0), F("blur", "blur", 'i', blur, 0),
    F("bn_splits", "bn-splits", 'i', bn_splits, 0), F("symmetric", "symmetric", 'i', symmetric, 0),
    F("key_shuffle", "key-shuffle", 's', key_shuffle, 0), F("bucket_mb", "bucket-mb", 'd', bucket_mb, 0),
    F("method", "method", 's', method, 0), F("n_hard", "n-hard", 'i', n_hard, 0), F("n1", "n1", 'i', n[0], 0),
    F("n2", "n2", 'i', n[1], 0), F("n3", "n3", 'i', n[2], 0), F("n4", "n4", 'i', n[3], 0), F("n5", "n5", 'i', n[4], 0),
    F("n6", "n6", 'i', n[5], 0), F("sigma", "sigma", 'd', sigma, 0), F("delta", "delta", 'd', delta, 0),
    F("eta", "eta", 'd', eta, 0), F("warmup_epochs", "warmup-epochs", 'i', warmup_epochs, 0),
    F("seed", "seed", 'l', seed, 1), L("threads", "threads", 'i', threads), L("workers", "workers", 'i', workers),
    L("adapt_threads", "adapt-threads", 'i', adapt_threads),
    L("backend", "backend", 's', backend), F("init", "init", 'S', init, -1), F("knn_every", "knn-every", 'i', knn_every, 0),
    F("knn_k", "knn-k", 'i', knn_k, 0), F("knn_t", "knn-t", 'd', knn_t, 0), F("save_every", "save-every", 'i', save_every, 0),
    F("print_freq", "print-freq", 'i', print_freq, 0),
    F("precision", "precision", 's', precision, 0), /* a resumed run keeps it; --precision may change it (a note) */
    F("probe", "probe", 'i', probe, 0), F("probe_lr", "probe-lr", 'd', probe_lr, 0),
};
#undef F
#undef L

/* config.json and the checkpoint's "synco.config": every setting, resolved (shaped -1, --init: written, not taken
 * back on resume). */
char *pretrain_config_json(const pretrain_opts *o, int processes) {
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
  /* not a setting: how many processes split -b (a resume in another count keeps the BN groups by it) */
  if (j && !cJSON_AddNumberToObject(j, "processes", processes)) {
    cJSON_Delete(j);
    return NULL;
  }
  if (j && !cJSON_AddStringToObject(j, "version", synco_version())) {
    cJSON_Delete(j);
    return NULL;
  }
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  return s;
}

/* One setting's value as text (doubles exactly), for the ranks' comparison. */
static void field_text(const cfg_field *f, const pretrain_opts *o, char *buf, size_t cap) {
  const char *p = (const char *)o + f->off;
  switch (f->type) {
    case 'i': snprintf(buf, cap, "%d", *(const int *)p); break;
    case 'd': snprintf(buf, cap, "%.17g", *(const double *)p); break;
    case 'l': snprintf(buf, cap, "%lld", *(const long long *)p); break;
    default: {
      const char *str = *(const char *const *)p;
      snprintf(buf, cap, "%s", str ? str : "none");
    }
  }
}

/* Appends "NAME\tVALUE\n" to the growing text *t (length *n, capacity *cap); 0 when out of memory. */
int pretrain_text_add(char **t, size_t *n, size_t *cap, const char *name, const char *value) {
  const size_t need = *n + strlen(name) + strlen(value) + 3;
  if (need > *cap) {
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    char *g = realloc(*t, c);
    if (!g) return 0;
    *t = g;
    *cap = c;
  }
  *n += (size_t)sprintf(*t + *n, "%s\t%s\n", name, value);
  return 1;
}

char *pretrain_settings_text(const pretrain_opts *o) {
  char *t = NULL, v[1200], name[64];
  size_t n = 0, cap = 0;
  int ok = 1;
  for (size_t i = 0; ok && i < sizeof k_fields / sizeof k_fields[0]; i++) {
    if (k_fields[i].local || k_fields[i].shaped < 0) continue; /* --init: whether given, below */
    field_text(&k_fields[i], o, v, sizeof v);
    snprintf(name, sizeof name, "--%s", k_fields[i].flag);
    ok = pretrain_text_add(&t, &n, &cap, name, v);
  }
  /* what config.json does not hold but every rank must share: the epochs it stops at, the milestones, --init */
  int k = snprintf(v, sizeof v, "%d", o->schedule.n);
  for (int i = 0; i < o->schedule.n && k > 0 && (size_t)k < sizeof v; i++)
    k += snprintf(v + k, sizeof v - (size_t)k, " %d", o->schedule.v[i]);
  if (ok) ok = pretrain_text_add(&t, &n, &cap, "--schedule", v);
  snprintf(v, sizeof v, "%d", o->stop_epoch);
  if (ok) ok = pretrain_text_add(&t, &n, &cap, "--stop-epoch", v);
  if (ok) ok = pretrain_text_add(&t, &n, &cap, "--init", o->init && !o->resume ? "given" : "none");
  if (!ok) {
    free(t);
    return NULL;
  }
  return t;
}

int pretrain_arch_depth(const char *arch) {
  return !strcmp(arch, "resnet18") ? 18 : !strcmp(arch, "resnet34") ? 34 : !strcmp(arch, "resnet50") ? 50 : 0;
}

int pretrain_key_shuffle_known(const char *how) { return !strcmp(how, "images") || !strcmp(how, "indices"); }

int pretrain_method_known(const char *method) {
  return !strcmp(method, "synco") || !strcmp(method, "mochi") || !strcmp(method, "moco");
}

/* The value settings read from a file (j) give setting f, or NULL: one the file's kind of run takes (a resumed run
 * does not take --init, shaped -1; --config takes it), given in j, and not given on the command
 * line (a --method given anew brings its own --n1..--n6 presets, apply_method). */
static const cJSON *taken(const cfg_field *f, const synco_arg *args, const cJSON *j, int resumed) {
  if (!j || (resumed && f->shaped < 0) || synco_args_seen(args, f->flag)) return NULL;
  if (f->key[0] == 'n' && f->key[1] >= '1' && f->key[1] <= '6' && !f->key[2] && synco_args_seen(args, "method"))
    return NULL;
  return cJSON_GetObjectItemCaseSensitive(j, f->key);
}

int pretrain_config_from_file(const void *ctx, const char *flag) {
  const pretrain_ctx *c = (const pretrain_ctx *)ctx;
  if (!c->settings) return 0;
  if (!strcmp(flag, "schedule"))
    return !synco_args_seen(c->args, "schedule") && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(c->settings, "schedule"));
  for (size_t i = 0; i < sizeof k_fields / sizeof k_fields[0]; i++)
    if (!strcmp(k_fields[i].flag, flag)) return taken(&k_fields[i], c->args, c->settings, c->resume_json != NULL) != NULL;
  return 0;
}

/* A setting the file holds for a setting the run takes from it, judged as its flag would be: the type, the flag's
 * range (args.c), a string not empty and one of its choices. The other settings' ties (K a multiple of the batch,
 * ...) are judged with the flags', by synco_pretrain_config_check, naming the file and the key. where: "FILE" or
 * "CKPT: synco.config". */
static synco_status judge_taken(const cfg_field *f, const cJSON *v, const synco_arg *args, const char *where) {
  char why[128];
  if (f->type == 'i' || f->type == 'd' || f->type == 'l') {
    if (!cJSON_IsNumber(v)) return synco_fail(SYNCO_ERR_FORMAT, "%s: %s is not a number", where, f->key);
    if (synco_arg_check_value(args, f->flag, v->valuedouble, why, sizeof why))
      return synco_fail(SYNCO_ERR_FORMAT, "%s: %s %.15g is %s", where, f->key, v->valuedouble, why);
    return SYNCO_OK;
  }
  if (f->type == 'S' && cJSON_IsNull(v)) return SYNCO_OK;
  if (!cJSON_IsString(v))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: %s is not a string%s", where, f->key, f->type == 'S' ? " (nor null)" : "");
  if (!v->valuestring[0]) return synco_fail(SYNCO_ERR_FORMAT, "%s: %s is empty", where, f->key);
  if (!strcmp(f->key, "arch") && !pretrain_arch_depth(v->valuestring))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: arch '%s' is not resnet18, resnet34 or resnet50", where, v->valuestring);
  if (!strcmp(f->key, "precision") && strcmp(v->valuestring, "fp32") && strcmp(v->valuestring, "tf32") &&
      strcmp(v->valuestring, "bf16"))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: precision '%s' is not fp32, tf32 or bf16", where, v->valuestring);
  if (!strcmp(f->key, "key_shuffle") && !pretrain_key_shuffle_known(v->valuestring))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: key_shuffle '%s' is not images or indices", where, v->valuestring);
  if (!strcmp(f->key, "method") && !pretrain_method_known(v->valuestring))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: method '%s' is not synco, mochi or moco", where, v->valuestring);
  return SYNCO_OK;
}

/* The digits of a top-level integer "key": N in text, for a value a double would round (the seed beyond 2^53). */
static int exact_integer(const char *text, const char *key, long long *out) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = text ? strstr(text, pat) : NULL;
  if (!p) return 0;
  p += strlen(pat);
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p++ != ':') return 0;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  char *end;
  const long long v = strtoll(p, &end, 10);
  if (end == p || (*end != ',' && *end != '}' && *end != ' ' && *end != '\n' && *end != '\r' && *end != '\t')) return 0;
  *out = v;
  return 1;
}

/* Appends "--FLAG GIVEN (the run had WAS)" to changed[cap], the settings a flag changes in a resumed run; the data
 * paths (resolved later, and said then), --epochs and --precision have notes of their own. */
static void note_change(char *changed, size_t cap, const cfg_field *f, const char *given, const char *was) {
  if (!changed || !cap || !strcmp(f->key, "epochs") || !strcmp(f->key, "precision")) return;
  if (!strcmp(f->key, "data") || !strcmp(f->key, "val")) { /* the run's is resolved: the same folder is no change */
    char real[PATH_MAX];
    if (realpath(given, real) && !strcmp(real, was)) return;
  }
  const size_t n = strlen(changed);
  if (n + 1 < cap) snprintf(changed + n, cap - n, "%s--%s %s (the run had %s)", n ? ", " : "", f->flag, given, was);
}

/* Takes the settings in j (read from `where`) that the command line does not give. resumed: j is a checkpoint's
 * "synco.config"; a given value that cannot work with its weights and queue (another width, K, ...) is refused,
 * keys it does not know are passed over, and the machine's settings are not taken. Else j is --config's file: flags
 * override any of it, and a key that is not a setting is refused. seed_text: the exact seed ("" when unknown). */
static synco_status take_settings(pretrain_opts *o, const synco_arg *args, const cJSON *j, const char *where,
                                  int resumed, const char *seed_text, char *changed, size_t cap) {
  for (size_t i = 0; i < sizeof k_fields / sizeof k_fields[0]; i++) {
    const cfg_field *f = &k_fields[i];
    if (resumed && f->shaped < 0) continue;
    const int seen = synco_args_seen(args, f->flag);
    /* a --method given anew brings its own --n1..--n6 presets (apply_method) */
    if (!seen && f->key[0] == 'n' && f->key[1] >= '1' && f->key[1] <= '6' && !f->key[2] && synco_args_seen(args, "method"))
      continue;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f->key);
    if (!v) continue;
    if (taken(f, args, j, resumed)) SYNCO_TRY(judge_taken(f, v, args, where));
    char *p = (char *)o + f->off;
    char was[300], given[300];
    if (f->type == 'i' || f->type == 'd' || f->type == 'l') {
      if (!cJSON_IsNumber(v)) return synco_fail(SYNCO_ERR_FORMAT, "%s: %s is not a number", where, f->key);
      const double x = v->valuedouble;
      long long seed_val = (long long)x;
      if (f->type == 'l' && seed_text[0]) seed_val = (long long)strtoull(seed_text, NULL, 10);
      if (f->type != 'd' && (x != floor(x) || fabs(x) > 9.2e18))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: %s %g is not an integer", where, f->key, x);
      if (f->type == 'i' && (x < INT_MIN || x > INT_MAX))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: %s %g is out of range", where, f->key, x);
      if (!seen) {
        if (f->type == 'i') *(int *)p = (int)x;
        else if (f->type == 'd') *(double *)p = x;
        else *(long long *)p = seed_val;
        continue;
      }
      const int same = f->type == 'i' ? *(int *)p == (int)x : f->type == 'd' ? *(double *)p == x : *(long long *)p == seed_val;
      if (same || !resumed || f->shaped < 0) continue;
      if (f->type == 'i') snprintf(given, sizeof given, "%d", *(int *)p), snprintf(was, sizeof was, "%d", (int)x);
      else if (f->type == 'd') snprintf(given, sizeof given, "%.15g", *(double *)p), snprintf(was, sizeof was, "%.15g", x);
      else snprintf(given, sizeof given, "%lld", *(long long *)p), snprintf(was, sizeof was, "%lld", seed_val);
      if (!f->shaped) {
        note_change(changed, cap, f, given, was);
        continue;
      }
    } else {
      if (!cJSON_IsString(v) && !(f->type == 'S' && cJSON_IsNull(v)))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: %s is not a string", where, f->key);
      const char *x = cJSON_IsString(v) ? v->valuestring : NULL;
      if (!seen) {
        *(const char **)p = x;
        continue;
      }
      const char *cur = *(const char **)p;
      if ((cur && x && !strcmp(cur, x)) || (!cur && !x) || !resumed || f->shaped < 0) continue;
      snprintf(given, sizeof given, "%s", cur ? cur : "none");
      snprintf(was, sizeof was, "%s", x ? x : "none");
      if (!f->shaped) {
        note_change(changed, cap, f, given, was);
        continue;
      }
    }
    return synco_fail(SYNCO_ERR_ARG,
                      "--%s %s does not fit %s, trained with %s %s (its weights and queue are shaped by it): drop "
                      "--%s to continue that run, or start a new one",
                      f->flag, given, where, f->key, was, f->flag);
  }
  if (!resumed) /* --config: every key is a setting (a misspelt one would otherwise be passed over in silence) */
    for (const cJSON *e = j->child; e; e = e->next) {
      int known = !strcmp(e->string, "schedule") || !strcmp(e->string, "version") || !strcmp(e->string, "processes");
      for (size_t i = 0; !known && i < sizeof k_fields / sizeof k_fields[0]; i++) known = !strcmp(k_fields[i].key, e->string);
      if (!known) return synco_fail(SYNCO_ERR_FORMAT, "%s: '%s' is not a setting of synco pretrain", where, e->string);
      for (const cJSON *d = e->next; d; d = d->next) /* JSON readers disagree on which one counts */
        if (!strcmp(d->string, e->string))
          return synco_fail(SYNCO_ERR_FORMAT, "%s: '%s' is given twice", where, e->string);
    }
  const cJSON *sch = cJSON_GetObjectItemCaseSensitive(j, "schedule");
  if (!synco_args_seen(args, "schedule") && cJSON_IsArray(sch)) {
    const int n = cJSON_GetArraySize(sch);
    if (n > 16) return synco_fail(SYNCO_ERR_FORMAT, "%s: schedule has %d milestones (at most 16)", where, n);
    for (int k = 0; k < n; k++) {
      const cJSON *e = cJSON_GetArrayItem(sch, k);
      if (!cJSON_IsNumber(e)) return synco_fail(SYNCO_ERR_FORMAT, "%s: schedule is not a list of epochs", where);
      char why[128];
      if (synco_arg_check_value(args, "schedule", e->valuedouble, why, sizeof why))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: schedule's epoch %.15g is %s", where, e->valuedouble, why);
      o->schedule.v[k] = e->valueint;
    }
    o->schedule.n = n;
  } else if (sch && !synco_args_seen(args, "schedule")) {
    return synco_fail(SYNCO_ERR_FORMAT, "%s: schedule is not a list of epochs", where);
  }
  return SYNCO_OK;
}

/* Takes the settings of a resumed run from the checkpoint's "synco.config", except those given on the command
 * line; a given value that cannot work with the checkpoint (another width, K, ...) is refused, the other changes
 * are listed in changed[cap]. The strings
 * point into *json, which the caller frees after the run. A checkpoint without a config changes nothing. */
synco_status pretrain_resume_config(pretrain_opts *o, const synco_arg *args, const char *ckpt, cJSON **json,
                                    char *changed, size_t cap) {
  if (cap) changed[0] = 0;
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, ckpt));
  /* what the file is, before its settings size the run (an export read as one was refused only after the memory
   * check of a ResNet-50 at 224 px, the defaults its missing settings left) */
  const char *fmt = synco_st_meta(&st, "synco.format");
  if (!fmt || strcmp(fmt, "checkpoint")) {
    const int weights = fmt && (!strcmp(fmt, "encoder") || !strcmp(fmt, "classifier"));
    synco_fail(SYNCO_ERR_FORMAT, "%s: not a synco training checkpoint (%s%s%s)", ckpt,
               weights ? "weights written by synco " : "", weights ? (fmt[0] == 'e' ? "export" : "linear/finetune") : "",
               weights ? ": --init FILE starts a new run from them" : "a run folder's last.safetensors or checkpoint_NNNN.safetensors resumes");
    synco_st_close(&st);
    return SYNCO_ERR_FORMAT;
  }
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
  if (!j) {
    if (seedbuf[0] && !synco_args_seen(args, "seed")) o->seed = (long long)strtoull(seedbuf, NULL, 10);
    return SYNCO_OK;
  }
  char where[1200];
  snprintf(where, sizeof where, "%s: synco.config", ckpt);
  return take_settings(o, args, j, where, 1, seedbuf, changed, cap);
}

synco_status pretrain_read_json(const char *path, cJSON **json, char **text_out) {
  *json = NULL;
  if (text_out) *text_out = NULL;
  /* a regular file of a sane size: never a FIFO (it would hang) nor a link */
  const int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  char *text = NULL;
  synco_status s = SYNCO_OK;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) s = synco_fail(SYNCO_ERR_IO, "%s: not a regular file", path);
  else if (st.st_size >= (1 << 20)) s = synco_fail(SYNCO_ERR_FORMAT, "%s: %lld bytes, too big for a config", path, (long long)st.st_size);
  else if (!(text = calloc(1, (size_t)st.st_size + 1))) s = synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  else if (read(fd, text, (size_t)st.st_size) != st.st_size) s = synco_fail(SYNCO_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
  close(fd);
  if (!s && !cJSON_IsObject(*json = cJSON_Parse(text))) {
    cJSON_Delete(*json);
    *json = NULL;
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: not a JSON object (a run's config.json)", path);
  }
  if (!s && text_out) *text_out = text;
  else free(text);
  return s;
}

synco_status pretrain_config_file(pretrain_opts *o, const synco_arg *args, const char *path, cJSON **json) {
  char *text = NULL, seed[32] = "";
  SYNCO_TRY(pretrain_read_json(path, json, &text));
  long long v;
  if (exact_integer(text, "seed", &v)) snprintf(seed, sizeof seed, "%lld", v);
  free(text);
  return take_settings(o, args, *json, path, 0, seed, NULL, 0);
}
