/* The run directory of synco pretrain: where --resume's checkpoint and run are, the name of a new run, the lock,
 * --force, config.json and log.jsonl. A run directory is never damaged: it is touched only after every check has
 * passed, under a lock, and a fresh run does not replace a run without --force. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/status.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/pretrain.h"

/* --resume: the checkpoint to read, and the run directory (--out, or the checkpoint's folder). "" (a bare
 * --resume) means --out's last.safetensors; a folder means its last.safetensors. Nothing is opened for writing. */
synco_status pretrain_resolve_resume(pretrain_opts *o, char *ckpt, size_t cap, char *dir, size_t dcap) {
  if (!o->resume[0]) {
    if (!o->out) return synco_fail(SYNCO_ERR_ARG, "--resume without a checkpoint needs --out DIR (the run to continue)");
    snprintf(ckpt, cap, "%s", o->out);
  } else if (snprintf(ckpt, cap, "%s", o->resume) >= (int)cap) {
    return synco_fail(SYNCO_ERR_ARG, "--resume %s: path too long", o->resume);
  }
  struct stat st;
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
      return synco_fail(SYNCO_ERR_IO, "--resume %s: the folder holds no last.safetensors to continue from", ckpt);
    }
  } else if (!o->out) { /* a checkpoint file: its folder is the run directory */
    snprintf(dir, dcap, "%s", ckpt);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, dcap, ".");
    o->out = dir;
  }
  if (!S_ISREG(st.st_mode)) return synco_fail(SYNCO_ERR_IO, "--resume %s: not a regular file", ckpt);
  return SYNCO_OK;
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
  if (!o->resume && !c->force && !c->new_dir && synco_cli_run_dir_holds_run(o->out)) {
    fprintf(stderr, "synco pretrain: %s holds a run: --resume it, or pass --force\n", o->out);
    return 2;
  }
  return PRETRAIN_GO;
}

int pretrain_run_dir_open(pretrain_ctx *c) {
  const pretrain_opts *o = &c->o;
  if ((c->new_dir ? synco_cli_mkdir_unique(c->outbuf, sizeof c->outbuf) : synco_cli_mkdirs(o->out)) != SYNCO_OK ||
      synco_cli_run_dir_lock(o->out, &c->lock_fd) != SYNCO_OK)
    return synco_cli_error("pretrain");
  if (!o->resume && synco_cli_run_dir_holds_run(o->out)) { /* again, under the lock: a run may have started since */
    if (!c->force) {
      fprintf(stderr, "synco pretrain: %s holds a run: --resume it, or pass --force\n", o->out);
      return 2;
    }
    const int n = synco_cli_run_dir_clean(o->out, 1);
    fprintf(stderr, "%s: a fresh run replaces the earlier one (%d of its files removed)\n", o->out, n);
  }
  const int stale = synco_cli_run_dir_clean(o->out, 0);
  if (stale) fprintf(stderr, "removed %d stale temporary file%s of an interrupted run in %s\n", stale, stale > 1 ? "s" : "", o->out);
  snprintf(c->log_path, sizeof c->log_path, "%s/log.jsonl", o->out);
  snprintf(c->last_path, sizeof c->last_path, "%s/last.safetensors", o->out);
  if (o->resume) { /* rows past the checkpoint were logged by the run that was cut off; they are trained again */
    int dropped = 0;
    if (synco_cli_log_truncate(c->log_path, c->gstep, &dropped) != SYNCO_OK) return synco_cli_error("pretrain");
    if (dropped) fprintf(stderr, "log.jsonl: dropped %d rows past step %ld (they are trained again)\n", dropped, c->gstep);
  }
  c->cfg_json = pretrain_config_json(o);
  char cfg_path[1024];
  snprintf(cfg_path, sizeof cfg_path, "%s/config.json", o->out);
  if (!c->cfg_json || synco_cli_write_file_atomic(cfg_path, c->cfg_json) != SYNCO_OK) return synco_cli_error("pretrain");
  c->log = fopen(c->log_path, o->resume ? "a" : "w");
  if (!c->log) {
    fprintf(stderr, "synco pretrain: %s: cannot open: %s\n", c->log_path, strerror(errno));
    return 1;
  }
  return PRETRAIN_GO;
}
