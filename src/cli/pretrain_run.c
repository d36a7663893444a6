/* synco pretrain's training loop: epochs of steps, a log.jsonl row every --print-freq steps and one per epoch, the
 * progress line, the kNN monitor, a stop between two steps on Ctrl-C / SIGTERM, and the checkpoints at the end
 * of each epoch (pretrain_save). Files are written only by the log_* functions and pretrain_save; the terminal
 * only by the progress calls and the printf lines of pretrain_run and run_epochs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/registry.h"
#include "base/progress.h"
#include "base/status.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/eval_common.h"
#include "cli/pretrain.h"
#include "optim/schedule.h"

/* ---- the kNN monitor: the encoder's kNN accuracy on --val, with the training images as the memory ---------- */

int pretrain_knn_open(pretrain_ctx *c) {
  const pretrain_opts *o = &c->o;
  pretrain_knn *k = &c->knn;
  if (!o->val || o->knn_every <= 0) return PRETRAIN_GO;
  /* --val is held-out images: its test split where its format holds one (a CIFAR-10 or STL-10 folder, test/ or val/
   * of an ImageFolder; once the training split of a CIFAR-10 folder was taken), else the whole of it */
  synco_dataset_options vopt = c->dopt;
  vopt.split = "test";
  vopt.split_if_any = 1;
  if (synco_dataset_open(&k->train_eval, o->data, &c->dopt) != SYNCO_OK || synco_dataset_open(&k->val, o->val, &vopt) != SYNCO_OK)
    return synco_cli_error("pretrain");
  /* the monitor classifies --val by the labels of the training images: both need them (pretraining does not) */
  const synco_dataset *sets[2] = {k->train_eval, k->val};
  const char *names[2] = {o->data, o->val};
  for (int i = 0; i < 2; i++) {
    const size_t n = synco_dataset_size(sets[i]), have = synco_dataset_num_labelled(sets[i]);
    if (have == n) continue;
    char what[96];
    if (have) snprintf(what, sizeof what, "has %zu images without a label (of %zu)", n - have, n);
    else snprintf(what, sizeof what, "has no labels (no class folders <root>/<class>/<image>)");
    fprintf(stderr, "synco pretrain: the kNN monitor (--knn-every %d with --val) needs labelled images, and %s %s: "
                    "drop --knn-every (pretraining itself needs no labels), or give labelled --data and --val\n",
            o->knn_every, names[i], what);
    return 2;
  }
  if (synco_dataset_check_same_classes(k->train_eval, o->data, k->val, o->val) != SYNCO_OK) {
    synco_fail_context(SYNCO_ERR_ARG, "the kNN monitor (--knn-every %d with --val): ", o->knn_every);
    return synco_cli_error("pretrain");
  }
  const size_t same = synco_eval_overlap(k->train_eval, o->data, c->dopt.split, k->val, o->val, vopt.split);
  if (same && c->rank == 0)
    fprintf(stderr, "synco pretrain: warning: %zu of the %zu --val images are --data images: the kNN monitor measures "
                    "images the encoder trains on; give --val held-out images\n", same, synco_dataset_size(k->val));
  const size_t d = (size_t)synco_encoder_feature_dim(synco_moco_query(c->moco)), nt = synco_dataset_size(k->train_eval),
               nv = synco_dataset_size(k->val);
  k->ftrain = malloc(nt * d * sizeof(float));
  k->fval = malloc(nv * d * sizeof(float));
  k->ltrain = malloc(nt * sizeof(int));
  k->lval = malloc(nv * sizeof(int));
  if (!k->ftrain || !k->fval || !k->ltrain || !k->lval) {
    fprintf(stderr, "synco pretrain: out of memory for kNN features\n");
    return 1;
  }
  return PRETRAIN_GO;
}

void pretrain_knn_free(pretrain_knn *k) {
  free(k->ftrain);
  free(k->fval);
  free(k->ltrain);
  free(k->lval);
  synco_dataset_free(k->train_eval);
  synco_dataset_free(k->val);
  memset(k, 0, sizeof *k);
}

static synco_status knn_eval(pretrain_ctx *c, synco_knn_result *res) {
  pretrain_knn *k = &c->knn;
  synco_encoder *enc = synco_moco_query(c->moco);
  const int d = synco_encoder_feature_dim(enc);
  const size_t nt = synco_dataset_size(k->train_eval), nv = synco_dataset_size(k->val);
  SYNCO_TRY(synco_features_compute(k->ftrain, k->ltrain, enc, k->train_eval, c->mean, c->std, c->o.workers));
  SYNCO_TRY(synco_features_compute(k->fval, k->lval, enc, k->val, c->mean, c->std, c->o.workers));
  synco_rows_l2_normalize(k->ftrain, nt, d);
  synco_rows_l2_normalize(k->fval, nv, d);
  synco_knn_config kc = synco_knn_default_config(synco_dataset_num_classes(k->train_eval));
  kc.k = c->o.knn_k;
  kc.t = c->o.knn_t;
  return synco_knn_classify(res, NULL, NULL, k->ftrain, k->ltrain, nt, k->fval, k->lval, nv, d, &kc);
}

/* ---- what the loop writes --------------------------------------------------------------------------------- */

/* A checkpoint that could not be written (no space, a file-size limit): the error names the file, and the last
 * checkpoint is as it was. */
static int save_failed(const pretrain_ctx *c) {
  struct stat st;
  if (stat(c->last_path, &st) != 0) return synco_cli_error("pretrain");
  fprintf(stderr, "synco pretrain: %s; stopping, %s is intact\n", synco_last_error(), c->last_path);
  return 1;
}

/* The checkpoints of a finished epoch: last.safetensors, and checkpoint_NNNN every --save-every epochs. A
 * checkpoint never stores a broken model: NaN/inf can appear in weights before the loss shows it. */
static int pretrain_save(pretrain_ctx *c, int epoch) {
  const pretrain_opts *o = &c->o;
  if (c->rank > 0) return PRETRAIN_GO; /* every rank holds the same model; rank 0 writes it */
  if (synco_moco_check_finite(c->moco) != SYNCO_OK) {
    synco_fail_context(SYNCO_ERR_NUMERIC, "after epoch %d: ", epoch + 1);
    synco_cli_error("pretrain");
    fprintf(stderr, "synco pretrain: stopping without writing a checkpoint of epoch %d\n", epoch + 1);
    return 1;
  }
  if (synco_moco_save(c->moco, c->last_path, c->cfg_json, epoch + 1, c->gstep) != SYNCO_OK) return save_failed(c);
  pretrain_run_dir_committed(c); /* a run replaced with --force goes now, not before */
  if (o->save_every > 0 && (epoch + 1) % o->save_every == 0) {
    char path[sizeof c->last_path];
    snprintf(path, sizeof path, "%s/checkpoint_%04d.safetensors", o->out, epoch + 1);
    if (synco_moco_save(c->moco, path, c->cfg_json, epoch + 1, c->gstep) != SYNCO_OK) return save_failed(c);
  }
  return PRETRAIN_GO;
}

/* ---- the loop --------------------------------------------------------------------------------------------- */

/* The last checkpoint written or resumed from (NULL: none yet), for the message of an interrupted run. */
typedef struct {
  const char *path;
  int epoch;
} last_checkpoint;

/* A non-finite loss found at batch s of the epoch: stop, naming the first bad step (a read of the loss record
 * finds it up to a log interval later; the record is read before every checkpoint) and the last good checkpoint.
 * When the model's own record was clean (another process's loss, or the online probe's), the error says whose. */
static void report_divergence(const pretrain_ctx *c, int epoch, int s) {
  const long bad = synco_moco_bad_step(c->moco);
  char what[320];
  if (bad >= 0)
    snprintf(what, sizeof what, "non-finite loss at step %ld (epoch %d, batch %ld)", bad, epoch + 1,
             s - (c->gstep - bad));
  else
    snprintf(what, sizeof what, "%s (found at step %ld, epoch %d, batch %d)", synco_last_error(), c->gstep, epoch + 1,
             s);
  struct stat cst;
  const int have = stat(c->last_path, &cst) == 0;
  if (have || c->o.resume)
    fprintf(stderr, "\nsynco pretrain: %s; stopping. The last good checkpoint is %s.\n", what,
            have ? c->last_path : c->o.resume);
  else
    fprintf(stderr, "\nsynco pretrain: %s; stopping. No checkpoint was written (the run diverged before its first "
                    "epoch ended): lower --lr.\n", what);
}

/* The numbers of the progress line: the loss and accuracy trained on; once synthetic negatives count in them,
 * MoCo's beside them (the positive against the real queue alone: comparable with the epochs before); the probe's
 * accuracy when it runs. */
static void progress_text(char *text, size_t cap, const pretrain_sums *s) {
  text[0] = 0;
  if (s->n == 0) return; /* nothing read yet (the first log window is still running) */
  const double n = s->n;
  int len = snprintf(text, cap, "loss %.4f  acc %.1f%%", s->loss / n, 100.0 * s->acc / n);
  if (s->synthetic > 0 && len > 0 && (size_t)len < cap)
    len += snprintf(text + len, cap - (size_t)len, "  MoCo-only: loss %.4f acc %.1f%%", s->loss_moco / n,
                    100.0 * s->acc_moco / n);
  if (s->probe_seen > 0 && len > 0 && (size_t)len < cap)
    snprintf(text + len, cap - (size_t)len, "  probe %.1f%%", 100.0 * (double)s->probe_hits / (double)s->probe_seen);
}

/* The line that says when the synthetic negatives switch on (the first epoch after --warmup-epochs, or the first
 * epoch of a run resumed past it), and what changes in the numbers then. */
static void say_negatives_on(const pretrain_ctx *c, int epoch) {
  const synco_negatives_config *nc = &c->cfg.moco.neg;
  const int total = synco_negatives_total(nc);
  if (total == 0 || epoch < c->cfg.warmup_epochs || (epoch != c->cfg.warmup_epochs && epoch != c->start_epoch)) return;
  printf("synthetic negatives %s at epoch %d: %d per query (types 1-6: %d/%d/%d/%d/%d/%d), made from its %d hardest "
         "of the %d queue negatives\n", epoch == c->cfg.warmup_epochs ? "switch on" : "are on", epoch + 1, total,
         nc->n[0], nc->n[1], nc->n[2], nc->n[3], nc->n[4], nc->n[5], nc->n_hard, c->cfg.moco.K);
  printf("  loss and acc now count them (a synthetic logit above the positive is a miss: acc can fall to 0); "
         "loss_moco and acc_moco (log.jsonl; MoCo-only in the progress line) leave them out\n");
  fflush(stdout);
}

/* The steps of one epoch, begun at t_epoch; *lr gets the rate of its last step. */
static int train_epoch(pretrain_ctx *c, int epoch, const last_checkpoint *last, synco_progress *prog, double t_epoch,
                       pretrain_sums *sum, float *lr) {
  const pretrain_opts *o = &c->o;
  const int steps = c->steps;
  pretrain_sums win = {0};
  double t_win = t_epoch;
  int unread = 0; /* steps since the loss record was last read */
  for (int s = 0; s < steps; s++) {
    const int sig = pretrain_ranks_stop(c); /* a signal to any rank stops every rank at this step */
    if (sig < 0) return synco_cli_error("pretrain");
    if (sig > 0) {
      c->stopped = 1;
      if (c->rank > 0) return 128 + sig; /* rank 0 says where the run stands: it alone writes the run directory */
      fprintf(stderr, "%ssynco pretrain: interrupted at epoch %d step %d; ", prog->tty ? "\n" : "", epoch + 1, s);
      if (last->path)
        fprintf(stderr, "the last checkpoint is %s (epoch %d); continue with --resume %s\n", last->path, last->epoch,
                last->path);
      else
        fprintf(stderr, "no checkpoint was written yet (the first comes at the end of epoch %d)\n", c->start_epoch + 1);
      return 128 + sig;
    }
    synco_batch b;
    if (synco_loader_next(c->loader, &b) != SYNCO_OK) {
      fprintf(stderr, "\n");
      return synco_cli_error("pretrain");
    }
    if (b.n != c->cfg.moco.batch) {
      fprintf(stderr, "\nsynco pretrain: the loader ended the epoch early (step %d of %d)\n", s, steps);
      return 1;
    }
    *lr = synco_lr_at(&c->cfg.sched, epoch, s, steps);
    /* the loss and accuracies (the model's and the probe's) are read once per log window and at the epoch's end,
     * before its checkpoint: a step in between leaves them in backend memory and does not wait for the backend */
    const int read = unread + 1 == o->print_freq || s == steps - 1;
    synco_step_stats st = {0};
    const double t_step = synco_now();
    const int negatives = epoch >= c->cfg.warmup_epochs;
    synco_status ss = c->cfg.moco.keys_preshuffled
                          ? synco_moco_step_shuffled(c->moco, b.x[0], b.x[1], (const float *const *)b.xk, *lr, negatives,
                                                     (uint64_t)c->gstep, read ? &st : NULL)
                          : synco_moco_step(c->moco, b.x[0], b.x[1], *lr, negatives, (uint64_t)c->gstep,
                                            read ? &st : NULL);
    if (ss == SYNCO_OK) ss = pretrain_probe_step_run(c, b.labels);
    const char *note = NULL;
    if (ss == SYNCO_OK && c->gov.full > 1) ss = synco_cli_adapt_threads(&c->gov, c->moco, synco_now() - t_step, &note);
    if (note && c->rank == 0) {
      if (prog->tty && prog->out) fprintf(prog->out, "\r\033[K"); /* the note on a line of its own */
      printf("%s (epoch %d, step %d)\n", note, epoch + 1, s + 1);
      fflush(stdout);
    }
    synco_xent_stats ps = {0};
    if (ss == SYNCO_OK && read) ss = pretrain_probe_read(c, &ps);
    if (ss == SYNCO_ERR_NUMERIC) {
      report_divergence(c, epoch, s);
      return 1;
    }
    if (ss != SYNCO_OK) {
      fprintf(stderr, "\n");
      return synco_cli_error("pretrain");
    }
    c->gstep++;
    unread++;
    if (read) {
      pretrain_sums_add(sum, &st, &ps);
      pretrain_sums_add(&win, &st, &ps);
      const double now = synco_now();
      pretrain_log_step(c, epoch, *lr, &win, now - t_win);
      win = (pretrain_sums){0};
      t_win = now;
      unread = 0;
    }
    char text[160];
    progress_text(text, sizeof text, sum);
    synco_progress_update(prog, s + 1, text);
  }
  return PRETRAIN_GO;
}

/* Epochs start_epoch .. end_epoch - 1, each ended by its log row, the kNN monitor when due and pretrain_save. */
static int run_epochs(pretrain_ctx *c, double *knn_last) {
  const pretrain_opts *o = &c->o;
  const int steps = c->steps;
  last_checkpoint last = {.path = o->resume, .epoch = c->start_epoch};
  int said_data = 0; /* the hint that the loader is too slow: once a run */
  c->gstep_first = c->gstep;
  for (int epoch = c->start_epoch; epoch < c->end_epoch; epoch++) {
    if (synco_loader_start_epoch(c->loader, epoch, 0) != SYNCO_OK) return synco_cli_error("pretrain");
    say_negatives_on(c, epoch);
    char label[64];
    snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, o->epochs);
    synco_progress prog;
    synco_progress_begin(&prog, label, steps, o->batch, o->print_freq);
    if (c->rank > 0) prog.out = NULL; /* rank 0 draws the progress line */
    synco_progress_run(&prog, (long)(epoch - c->start_epoch) * steps, (long)(c->end_epoch - c->start_epoch) * steps);
    pretrain_sums sum = {0};
    float lr = 0;
    const double t_epoch = synco_now();
    int rc = train_epoch(c, epoch, &last, &prog, t_epoch, &sum, &lr);
    if (rc != PRETRAIN_GO) return rc;
    const double ep_time = synco_now() - t_epoch;
    char text[160];
    progress_text(text, sizeof text, &sum);
    synco_progress_end(&prog, text);
    synco_loader_stats ls;
    synco_loader_stats_get(c->loader, &ls);
    /* the loader's rate per thread, and the threads that would feed the steps at the rate they run when not waiting */
    const double per_thread = synco_loader_rate_per_thread(&ls);
    const double demand = ep_time > ls.wait_s ? (double)sum.n * o->batch / (ep_time - ls.wait_s) : 0.0;
    const int needed = synco_loader_threads_needed(demand, per_thread);
    pretrain_log_epoch(c, epoch, lr, &sum, ep_time, ls.wait_s, per_thread, needed);
    if (c->rank == 0 && !said_data && ls.wait_s > 0.5 && ls.wait_s > 0.1 * ep_time) {
      printf("epoch %d: the steps waited %.1f s of %.1f s for data: the loader makes %.0f pairs/s per thread on %d "
             "thread%s and the steps take %.0f/s, so about %d would keep up (--workers; synco bench data measures the "
             "rate alone)\n", epoch + 1, ls.wait_s, ep_time, per_thread, ls.threads, synco_cli_s(ls.threads), demand,
             needed);
      fflush(stdout);
      said_data = 1;
    }
    if (c->knn.val && ((epoch + 1) % o->knn_every == 0 || epoch + 1 == c->end_epoch)) {
      synco_knn_result r;
      if (knn_eval(c, &r) != SYNCO_OK) return synco_cli_error("pretrain");
      *knn_last = r.top1;
      char acc[96];
      printf("epoch %d: kNN %s\n", epoch + 1,
             synco_cli_topk(acc, sizeof acc, r.top1, r.top5, synco_dataset_num_classes(c->knn.train_eval)));
      fflush(stdout);
      pretrain_log_knn(c, epoch + 1, &r);
    }
    rc = pretrain_save(c, epoch);
    if (rc != PRETRAIN_GO) return rc;
    last = (last_checkpoint){.path = c->last_path, .epoch = epoch + 1};
  }
  return 0;
}

/* Which recipe gave the defaults of the flags not given, and why. */
static const char *recipe_in_force(const pretrain_ctx *c) {
  static char buf[1300];
  if (c->o.resume) return "the resumed run's settings (its checkpoint's synco.config; flags given override)";
  if (c->o.config) {
    snprintf(buf, sizeof buf, "the settings of %s (--config; flags given override)", c->o.config);
    return buf;
  }
  if (!synco_args_seen(c->args, "data") && !synco_args_seen(c->args, "recipe"))
    return "the bundled demo's (no --data): MoCo's CIFAR recipe at width 16 for twelve epochs, for every flag not given";
  if (!synco_args_seen(c->args, "data"))
    return !strcmp(c->o.recipe, "cifar") ? "cifar (--recipe cifar: MoCo's CIFAR recipe for every flag not given), on "
                                           "the bundled images (no --data)"
                                         : "imagenet (--recipe imagenet: the authors' ImageNet recipe for every flag "
                                           "not given), on the bundled images (no --data)";
  if (!strcmp(c->o.recipe, "cifar")) return "cifar (--recipe cifar: MoCo's CIFAR recipe for every flag not given)";
  return "imagenet (the default: the authors' ImageNet recipe for every flag not given; --recipe cifar for small "
         "images)";
}

int pretrain_run(pretrain_ctx *c) {
  const pretrain_opts *o = &c->o;
  const int steps = c->steps;
  printf("synco pretrain: %s (width %d%s), %s, %d epoch%s x %d step%s of %d, K %d, T %g, lr %g, %d thread%s, backend %s, "
         "%s\n",
         o->arch, o->width, o->cifar_stem ? ", CIFAR stem" : "", o->method, o->epochs, synco_cli_s(o->epochs), steps,
         synco_cli_s(steps), o->batch, o->moco_k, o->moco_t, o->lr, o->threads, synco_cli_s(o->threads), c->be->name,
         synco_backend_precision_label(c->be, o->precision));
  printf("recipe: %s\n", recipe_in_force(c));
  /* said with the run's settings: a run that is refused has no warm-up to speak of */
  if (synco_negatives_total(&c->cfg.moco.neg) > 0 && o->warmup_epochs >= o->epochs && !o->resume)
    printf("note: the synthetic negatives start after --warmup-epochs %d and the run has %d epoch%s: it trains as "
           "--method moco throughout (--warmup-epochs N starts them sooner)\n", o->warmup_epochs, o->epochs,
           synco_cli_s(o->epochs));
  const size_t n = synco_dataset_size(c->train), labelled = synco_dataset_num_labelled(c->train);
  char labels[80];
  if (!labelled) snprintf(labels, sizeof labels, "unlabelled");
  else if (labelled < n) snprintf(labels, sizeof labels, "%zu labelled, %d class%s", labelled, synco_dataset_num_classes(c->train),
                                    synco_cli_es(synco_dataset_num_classes(c->train)));
  else snprintf(labels, sizeof labels, "%d class%s", synco_dataset_num_classes(c->train),
                synco_cli_es(synco_dataset_num_classes(c->train)));
  printf("data: %s (%zu images, %s)  run directory: %s\n", o->data, n, labels, o->out);
  if (c->world > 1) {
    /* the buckets synco_dist_buckets_* will cut (none over NCCL or staged MPI, which take one all-reduce) */
    const size_t P = synco_encoder_num_params(synco_moco_query(c->moco)), bk = c->cfg.moco.grad_bucket;
    const size_t buckets = bk && c->dist->iallreduce_start && !c->dist->stage_be ? (P + bk - 1) / bk : 1;
    char grads[96] = "after the backward";
    if (buckets > 1) snprintf(grads, sizeof grads, "in %zu buckets as the backward finishes them", buckets);
    printf("processes: %d (%s), each a batch of %d; key images %s; gradients all-reduced %s; rank 0 writes the run "
           "directory\n", c->world, c->dist->name, c->cfg.moco.batch,
           c->cfg.moco.keys_preshuffled ? "loaded by each rank in the shuffled order (--key-shuffle indices)"
                                        : "gathered for the shuffle (--key-shuffle images)", grads);
  }
  fflush(stdout);
  double knn_first = -1, knn_last = -1;
  if (c->knn.val && c->start_epoch == 0) {
    synco_knn_result r;
    if (knn_eval(c, &r) != SYNCO_OK) return synco_cli_error("pretrain");
    knn_first = r.top1;
    char acc[96];
    printf("kNN accuracy before training: %s\n",
           synco_cli_topk(acc, sizeof acc, r.top1, r.top5, synco_dataset_num_classes(c->knn.train_eval)));
    fflush(stdout);
    pretrain_log_knn(c, 0, &r);
  }

  /* --adapt-threads on the CPU (a GPU's steps are not the CPU threads') */
  synco_governor_init(&c->gov, o->adapt_threads && !synco_backend_supports(c->be, SYNCO_CAP_ASYNC) ? o->threads : 1);
  if (o->adapt_threads && c->gov.full > 1)
    printf("threads: %d, fewer while other processes take cores (--no-adapt-threads: always %d)\n", o->threads,
           o->threads);
  else if (o->adapt_threads && c->adapt_said)
    printf("--adapt-threads: nothing to adapt (%s)\n", o->threads < 2 ? "one compute thread" : "a GPU runs the steps");
  fflush(stdout); /* before the progress lines (stderr) */
  const double t_start = synco_now();
  /* Ctrl-C / SIGTERM: stop between two steps and say where the last checkpoint is. */
  synco_stop_install(1);
  const int rc = run_epochs(c, &knn_last);
  if (rc == 0) {
    printf("done in %.1f s; checkpoint %s/last.safetensors\n", synco_now() - t_start, o->out);
    if (c->end_epoch < o->epochs) /* --stop-epoch: a pause, not the end of the run's schedule */
      printf("stopped at epoch %d of %d (--stop-epoch): synco pretrain --resume %s continues it\n", c->end_epoch,
             o->epochs, o->out);
    if (knn_first >= 0 && knn_last >= 0)
      printf("kNN top-1 on %s (%zu images): untrained %.2f%% -> trained %.2f%%\n", o->val, synco_dataset_size(c->knn.val),
             knn_first, knn_last);
  }
  synco_stop_install(0);
  return rc;
}
