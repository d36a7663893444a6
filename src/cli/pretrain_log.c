/* synco pretrain's record of a run: the rows of log.jsonl. Each row is one JSON object with a "kind" and the wall
 * time it was written ("time", Unix seconds):
 *
 *   step   a window of --print-freq steps ending at global step "step": its means of the loss and accuracies
 *   epoch  a finished epoch ("epoch", its "steps"): its means, its time, the time its steps waited for data; no
 *          "step", so no step is logged twice
 *   knn    the kNN monitor after epoch "epoch" (0: the untrained encoder)
 *
 * "loss" and "acc" are what the training minimises and its proxy accuracy: once the synthetic negatives are on
 * ("synthetic" > 0: per query) they count them. "loss_moco" and "acc_moco" leave them out (the positive against the
 * real queue alone), so that they stay comparable across the switch and with plain MoCo. Accuracies are percent.
 * The online linear probe adds "probe_loss" and "probe_acc" (its training views, before each step's update).
 * The same scalars go to the TensorBoard event file (io/tfevents.h) when there is one, at the global step: train/
 * (loss, acc, loss_moco, acc_moco, lr, images_per_s, synthetic), probe/ (loss, acc), knn/ (top1, top5) and epoch/
 * (epoch, time_s, data_wait_s, loader_pairs_per_s_per_thread, loader_threads_needed). Rank 0 alone writes (c->log is NULL on the others). */
#include <stdio.h>
#include <time.h>

#include "base/status.h"
#include "cli/pretrain.h"

void pretrain_sums_add(pretrain_sums *s, const synco_step_stats *st, const synco_xent_stats *probe) {
  s->loss += st->loss * st->steps;
  s->acc += st->acc * st->steps;
  s->loss_moco += st->loss_moco * st->steps;
  s->acc_moco += st->acc_moco * st->steps;
  s->synthetic = st->synthetic;
  s->n += st->steps;
  s->probe_loss += probe->loss * probe->calls;
  s->probe_hits += probe->hits;
  s->probe_seen += probe->rows;
  s->probe_steps += probe->calls;
}

static double wall_time(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The fields every kind of row begins with; returns the row's wall time. */
static double row_begin(FILE *f, const char *kind) {
  const double t = wall_time();
  fprintf(f, "{\"kind\":\"%s\",\"time\":%.3f", kind, t);
  return t;
}

/* The same numbers as TensorBoard scalars at the run's global step (n of them, tags[i] = values[i]). A write that
 * fails (a full disk) stops the event file, with one message; log.jsonl and the run go on. */
static void tb_scalars(pretrain_ctx *c, double t, const char *const *tags, const float *values, int n) {
  if (!c->tb) return;
  if (synco_tfevents_scalars(c->tb, c->gstep, t, tags, values, n) != SYNCO_OK) {
    fprintf(stderr, "\nsynco pretrain: %s; no more TensorBoard events in this run\n", synco_last_error());
    synco_tfevents_close(c->tb);
    c->tb = NULL;
  }
}

/* The means of a window or an epoch, and the probe's when it ran. */
static void row_means(FILE *f, const pretrain_sums *s, float lr, double images_per_s) {
  const double n = s->n > 0 ? s->n : 1;
  fprintf(f, ",\"lr\":%.6g,\"loss\":%.6f,\"acc\":%.4f,\"loss_moco\":%.6f,\"acc_moco\":%.4f,\"synthetic\":%d,"
             "\"images_per_s\":%.2f", lr, s->loss / n, 100.0 * s->acc / n, s->loss_moco / n, 100.0 * s->acc_moco / n,
          s->synthetic, images_per_s);
  if (s->probe_seen > 0)
    fprintf(f, ",\"probe_loss\":%.6f,\"probe_acc\":%.4f", s->probe_loss / s->probe_steps,
            100.0 * (double)s->probe_hits / (double)s->probe_seen);
}

void pretrain_log_step(pretrain_ctx *c, int epoch, float lr, const pretrain_sums *w, double seconds) {
  if (!c->log) return;
  const double t = row_begin(c->log, "step"), ips = w->n * c->o.batch / seconds, n = w->n > 0 ? w->n : 1;
  fprintf(c->log, ",\"step\":%ld,\"epoch\":%d", c->gstep, epoch + 1);
  row_means(c->log, w, lr, ips);
  if (c->o.adapt_threads) fprintf(c->log, ",\"threads\":%d", c->gov.now);
  fputs("}\n", c->log);
  fflush(c->log);
  static const char *const tags[] = {"train/loss", "train/acc", "train/loss_moco", "train/acc_moco", "train/lr",
                                     "train/images_per_s", "train/synthetic", "probe/loss", "probe/acc"};
  const float v[] = {(float)(w->loss / n), (float)(100.0 * w->acc / n), (float)(w->loss_moco / n),
                     (float)(100.0 * w->acc_moco / n), lr, (float)ips, (float)w->synthetic,
                     w->probe_steps ? (float)(w->probe_loss / w->probe_steps) : 0.f,
                     w->probe_seen ? (float)(100.0 * (double)w->probe_hits / (double)w->probe_seen) : 0.f};
  tb_scalars(c, t, tags, v, w->probe_seen > 0 ? 9 : 7);
}

void pretrain_log_epoch(pretrain_ctx *c, int epoch, float lr, const pretrain_sums *e, double seconds,
                        double data_wait, double loader_per_thread, int loader_needed) {
  if (!c->log) return;
  const double t = row_begin(c->log, "epoch");
  fprintf(c->log, ",\"epoch\":%d,\"steps\":%d", epoch + 1, e->n);
  row_means(c->log, e, lr, e->n * c->o.batch / seconds);
  /* the precision each epoch ran in: a run may resume in another (config.json holds the last) */
  fprintf(c->log, ",\"epoch_time_s\":%.2f,\"data_wait_s\":%.3f,\"loader_pairs_per_s_per_thread\":%.1f,"
          "\"loader_threads_needed\":%d,\"precision\":\"%s\"}\n", seconds, data_wait, loader_per_thread, loader_needed,
          c->o.precision ? c->o.precision : "fp32");
  fflush(c->log);
  static const char *const tags[] = {"epoch/epoch", "epoch/time_s", "epoch/data_wait_s",
                                     "epoch/loader_pairs_per_s_per_thread", "epoch/loader_threads_needed"};
  tb_scalars(c, t, tags,
             (const float[]){(float)(epoch + 1), (float)seconds, (float)data_wait, (float)loader_per_thread,
                             (float)loader_needed},
             5);
}

void pretrain_log_knn(pretrain_ctx *c, int epoch, const synco_knn_result *r) {
  if (!c->log) return;
  const double t = row_begin(c->log, "knn");
  fprintf(c->log, ",\"epoch\":%d,\"knn_top1\":%.4f,\"knn_top5\":%.4f}\n", epoch, r->top1, r->top5);
  fflush(c->log);
  static const char *const tags[] = {"knn/top1", "knn/top5"};
  tb_scalars(c, t, tags, (const float[]){(float)r->top1, (float)r->top5}, 2);
}
