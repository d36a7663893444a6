/* The run directory of synco pretrain: where --resume's checkpoint and run are, the name of a new run, the lock,
 * --force, config.json and log.jsonl. A run directory is never damaged: it is touched only after every check has
 * passed, under a lock; a fresh run (or a resumed run of another directory's checkpoint) does not replace a run
 * without --force, and with --force the earlier run is set aside until the new run has a checkpoint. No file is
 * written through a link (base/files.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/files.h"
#include "base/status.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/pretrain.h"

/* The folder of a file path ("." for a bare name, "/" for one at the root). */
static void folder_of(const char *path, char *dir, size_t cap) {
  snprintf(dir, cap, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) dir[1] = 0;
  else if (slash) *slash = 0;
  else snprintf(dir, cap, ".");
}

/* --resume: the checkpoint to read, and the run directory (--out, or the checkpoint's folder). "" (a bare
 * --resume) means --out's last.safetensors; a folder means its last.safetensors. Nothing is opened for writing. */
synco_status pretrain_resolve_resume(pretrain_opts *o, char *ckpt, size_t cap, char *dir, size_t dcap) {
  if (!o->resume[0]) {
    if (!o->out) return synco_fail(SYNCO_ERR_ARG, "--resume without a checkpoint needs --out DIR (the run to continue)");
    snprintf(ckpt, cap, "%s", o->out);
  } else if (snprintf(ckpt, cap, "%s", o->resume) >= (int)cap) {
    return synco_fail(SYNCO_ERR_ARG, "--resume %s: path too long", o->resume);
  }
  /* A run dir where a killed --force run left the earlier run aside gets it back first (or drops it). */
  char run[1100];
  struct stat st;
  if (o->out) snprintf(run, sizeof run, "%s", o->out);
  else if (stat(ckpt, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(run, sizeof run, "%s", ckpt);
  else folder_of(ckpt, run, sizeof run);
  SYNCO_TRY(synco_cli_run_dir_check_free(run)); /* a run still going there: no advice about its files */
  if (synco_cli_run_dir_recover("pretrain", run, 0) != 0) return SYNCO_ERR_IO;
  if (stat(ckpt, &st) != 0) return synco_fail(SYNCO_ERR_IO, "--resume %s: cannot open: %s", ckpt, strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    if (!o->out) {
      snprintf(dir, dcap, "%s", ckpt);
      o->out = dir;
    }
    const size_t n = strlen(ckpt);
    if (snprintf(ckpt + n, cap - n, "%slast.safetensors", n && ckpt[n - 1] == '/' ? "" : "/") >= (int)(cap - n))
      return synco_fail(SYNCO_ERR_ARG, "--resume %s: path too long", o->resume);
    if (stat(ckpt, &st) != 0) {
      ckpt[n] = 0;
      return synco_fail(SYNCO_ERR_IO, synco_cli_run_dir_holds_run(ckpt)
                                          ? "--resume %s: the run there stopped before its first checkpoint (no "
                                            "last.safetensors to continue from): start it afresh with --force instead"
                                          : "--resume %s: the folder holds no last.safetensors to continue from", ckpt);
    }
  } else if (!o->out) { /* a checkpoint file: its folder is the run directory */
    folder_of(ckpt, dir, dcap);
    o->out = dir;
  }
  if (!S_ISREG(st.st_mode)) return synco_fail(SYNCO_ERR_IO, "--resume %s: not a regular file", ckpt);
  return SYNCO_OK;
}

/* Is o->out the run of --resume's checkpoint? Yes when the checkpoint lies in it, or when o->out's config.json
 * records the run the checkpoint's own settings (c->resume_json) describe: the same model, queue, seed and data
 * (a checkpoint copied out of its run and resumed there). Else *differs names the first setting that differs
 * ("" when either side records none). */
static int resume_same_run(const pretrain_ctx *c, char *differs, size_t cap) {
  static const char *const identity[] = {"arch", "width", "cifar_stem", "moco_dim", "moco_k", "mlp", "seed", "data"};
  const pretrain_opts *o = &c->o;
  char dir[1100], path[1200];
  differs[0] = 0;
  folder_of(o->resume, dir, sizeof dir);
  if (synco_cli_same_file(dir, o->out)) return 1;
  snprintf(path, sizeof path, "%s/config.json", o->out);
  cJSON *mine = NULL;
  if (pretrain_read_json(path, &mine, NULL) != SYNCO_OK) synco_clear_error();
  int same = mine && c->resume_json;
  for (size_t i = 0; same && i < sizeof identity / sizeof *identity; i++) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(mine, identity[i]),
                *b = cJSON_GetObjectItemCaseSensitive(c->resume_json, identity[i]);
    if (!a || !b || !cJSON_Compare(a, b, 1)) {
      same = 0;
      char *va = a ? cJSON_PrintUnformatted(a) : NULL, *vb = b ? cJSON_PrintUnformatted(b) : NULL;
      snprintf(differs, cap, "%s %s, not %s", identity[i], va ? va : "unset", vb ? vb : "unset");
      free(va);
      free(vb);
    }
  }
  cJSON_Delete(mine);
  return same;
}

/* "DIR holds a run", with the advice that works: --resume needs the run's last.safetensors, which a run stopped
 * before its first checkpoint does not have (--resume then failed with "holds no last.safetensors"). */
static void say_holds_run(const char *dir) {
  char last[4200];
  struct stat st;
  snprintf(last, sizeof last, "%s/last.safetensors", dir);
  if (stat(last, &st) == 0)
    fprintf(stderr, "synco pretrain: %s holds a run: --resume it, or pass --force\n", dir);
  else
    fprintf(stderr, "synco pretrain: %s holds a run that stopped before its first checkpoint (no last.safetensors to "
                    "resume from): pass --force to start it afresh, or give another --out\n", dir);
}

int pretrain_run_dir_choose(pretrain_ctx *c) {
  pretrain_opts *o = &c->o;
  /* No --out: a new runs/<date-time>, made (with a suffix if taken) once every check has passed. */
  c->new_dir = !o->out;
  if (c->new_dir) {
    time_t now = time(NULL);
    strftime(c->outbuf, sizeof c->outbuf, "runs/%Y%m%d-%H%M%S", localtime(&now));
    o->out = c->outbuf;
  }
  if (!o->out[0]) {
    fprintf(stderr, "synco pretrain: --out must name a directory\n");
    return 2;
  }
  /* the run directory is no input, and its files' names fit (checkpoint_NNNN.safetensors.tmp) */
  int rc = SYNCO_CLI_CHECK_FILES("pretrain", {"--out", o->out, SYNCO_CLI_OUT_DIR}, {"--data", o->data, SYNCO_CLI_IN_DATA},
                                 {"--val", o->val, SYNCO_CLI_IN_DATA}, {"--init", o->init});
  if (rc) return rc;
  if (!c->new_dir && synco_cli_run_dir_check_free(o->out) != SYNCO_OK) return synco_cli_error("pretrain");
  if (!c->new_dir && synco_cli_run_dir_recover("pretrain", o->out, 0) != 0) return synco_cli_error("pretrain");
  /* A run directory holding a run is replaced only with --force: by a fresh run, or by a resumed run of another
   * directory's checkpoint (resuming a run in its own directory continues it). */
  char differs[300] = "";
  c->own_run = o->resume && resume_same_run(c, differs, sizeof differs);
  if (!c->own_run && !c->force && !c->new_dir && synco_cli_run_dir_holds_run(o->out)) {
    if (o->resume)
      fprintf(stderr, "synco pretrain: %s holds another run than %s's%s%s%s: give another --out, or pass --force to "
                      "replace it\n", o->out, o->resume, differs[0] ? " (its " : "", differs, differs[0] ? ")" : "");
    else
      say_holds_run(o->out);
    return 2;
  }
  return PRETRAIN_GO;
}

int pretrain_run_dir_open(pretrain_ctx *c) {
  const pretrain_opts *o = &c->o;
  if ((c->new_dir ? synco_cli_mkdir_unique(c->outbuf, sizeof c->outbuf) : synco_cli_mkdirs(o->out)) != SYNCO_OK ||
      synco_cli_run_dir_lock(o->out, &c->lock_fd) != SYNCO_OK || synco_cli_run_dir_recover("pretrain", o->out, 1) != 0)
    return synco_cli_error("pretrain");
  if (!c->own_run && synco_cli_run_dir_holds_run(o->out)) { /* again, under the lock: a run may have started since */
    if (!c->force) {
      say_holds_run(o->out);
      return 2;
    }
    /* The earlier run survives until the new one has a checkpoint: set aside now, removed then, put back if the
     * new run stops before (or by the next run here, if this one is killed). */
    const int n = synco_cli_run_dir_set_aside(o->out);
    if (n < 0) return synco_cli_error("pretrain");
    c->aside = 1;
    fprintf(stderr, "%s: a fresh run replaces the earlier one (its %d files are kept in %s/.replaced-run until the "
                    "new run's first checkpoint)\n", o->out, n, o->out);
  }
  const int stale = synco_cli_run_dir_clean(o->out, 0);
  if (stale) fprintf(stderr, "removed %d stale temporary file%s of an interrupted run in %s\n", stale, stale > 1 ? "s" : "", o->out);
  snprintf(c->log_path, sizeof c->log_path, "%s/log.jsonl", o->out);
  snprintf(c->last_path, sizeof c->last_path, "%s/last.safetensors", o->out);
  if (o->resume) { /* rows past the checkpoint were logged by the run that was cut off; they are trained again */
    int dropped = 0;
    if (synco_cli_log_truncate(c->log_path, c->gstep, c->start_epoch, &dropped) != SYNCO_OK) return synco_cli_error("pretrain");
    if (dropped) fprintf(stderr, "log.jsonl: dropped %d rows past step %ld (they are trained again)\n", dropped, c->gstep);
  }
  c->cfg_json = pretrain_config_json(o, c->world);
  char cfg_path[sizeof c->log_path];
  snprintf(cfg_path, sizeof cfg_path, "%s/config.json", o->out);
  if (!c->cfg_json || synco_cli_write_file_atomic(cfg_path, c->cfg_json) != SYNCO_OK) return synco_cli_error("pretrain");
  /* never through a link: a fresh log replaces whatever bore its name, a resumed run's must be its own file */
  c->log = o->resume ? synco_file_append(c->log_path) : synco_file_create(c->log_path);
  if (!c->log) return synco_cli_error("pretrain");
  /* TensorBoard: a new event file for each start of the run (TensorBoard reads every file of the folder) */
  if (o->tensorboard && synco_tfevents_available() && synco_tfevents_open(&c->tb, o->out) != SYNCO_OK)
    return synco_cli_error("pretrain");
  /* a resumed run trains again the steps after its checkpoint's: the earlier event files' points there go */
  if (c->tb && o->resume && synco_tfevents_start(c->tb, c->gstep + 1) != SYNCO_OK)
    return synco_cli_error("pretrain");
  if (o->tensorboard && !synco_tfevents_available() && synco_args_seen(c->args, "tensorboard"))
    fprintf(stderr, "synco pretrain: --tensorboard: this synco was built without protobuf-c (apt-get install "
                    "libprotobuf-c-dev protobuf-c-compiler, then rebuild); no event files\n");
  return PRETRAIN_GO;
}

void pretrain_run_dir_committed(pretrain_ctx *c) {
  if (!c->aside) return;
  c->aside = 0;
  const int n = synco_cli_run_dir_drop_aside(c->o.out);
  fprintf(stderr, "%s: the new run has its first checkpoint; the earlier run's %d files are removed\n", c->o.out, n);
}

void pretrain_run_dir_close(pretrain_ctx *c, int rc) {
  if (c->log) fclose(c->log);
  c->log = NULL;
  char tb_path[1200] = "";
  if (c->tb) snprintf(tb_path, sizeof tb_path, "%s", synco_tfevents_path(c->tb));
  synco_tfevents_close(c->tb);
  c->tb = NULL;
  if (c->aside && rc != 0) {
    c->aside = 0;
    if (tb_path[0]) unlink(tb_path); /* the new run's events go with it; the earlier run's come back */
    const int n = synco_cli_run_dir_put_back(c->o.out);
    if (n >= 0)
      fprintf(stderr, "%s: the new run stopped before its first checkpoint; the earlier run is put back (%d files)\n",
              c->o.out, n);
    else
      synco_cli_error("pretrain");
  }
  synco_cli_run_dir_unlock(c->lock_fd);
  c->lock_fd = -1;
}
