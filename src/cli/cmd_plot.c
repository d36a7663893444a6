/* synco plot: learning curves of one or several pretraining runs side by side, from their log.jsonl — the training
 * loss and proxy-task accuracy, their MoCo-only counterparts, kNN top-1, the online probe, learning rate and
 * throughput against epochs — as one figure of eight panels, one line per run (src/eval/plot.c), the moment the
 * synthetic negatives switch on marked. */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/eval_common.h"
#include "eval/plot.h"

#define MAX_RUNS 16

int synco_cmd_plot(int argc, char **argv) {
  const char *out = NULL, *pos[MAX_RUNS];
  int npos = 0, width = 1600, height = 800, svg = 0, json = 0;
  synco_arg args[] = {
      {"out", 'o', SYNCO_ARG_STR, &out, "output file: .png, .svg or .pdf (unset: RUN_DIR/curves.png for one run, ./curves.png for several)"},
      {"width", 0, SYNCO_ARG_INT, &width, "figure width (pixels or points)", SYNCO_ARG_RANGE(SYNCO_PLOT_MIN_SIDE, SYNCO_PLOT_MAX_SIDE)},
      {"height", 0, SYNCO_ARG_INT, &height, "figure height", SYNCO_ARG_RANGE(SYNCO_PLOT_MIN_SIDE, SYNCO_PLOT_MAX_SIDE)},
      {"svg", 0, SYNCO_ARG_FLAG, &svg, "also write an .svg beside a .png"},
      {"json", 0, SYNCO_ARG_FLAG, &json, "print one JSON object"},
      {NULL},
  };
  int rc = synco_args_parse("plot", "Learning curves (loss, proxy accuracy, MoCo-only, kNN, probe, lr) of runs: synco plot RUN_DIR... [--out F.png]",
                            args, argc, argv, pos, MAX_RUNS, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (npos == 0) {
    fprintf(stderr, "synco plot: give one or more run folders (or log.jsonl files)\n");
    return 2;
  }
  char default_out[SYNCO_CLI_PATH_MAX + 32];
  if (!out) { /* one run: beside its log; several: here */
    struct stat st;
    char folder[SYNCO_CLI_PATH_MAX + 16];
    snprintf(folder, sizeof folder, "%s", npos == 1 && strlen(pos[0]) <= SYNCO_CLI_PATH_MAX ? pos[0] : ".");
    if (npos == 1 && !(stat(folder, &st) == 0 && S_ISDIR(st.st_mode))) {
      char *slash = strrchr(folder, '/');
      snprintf(folder, sizeof folder, "%.*s", slash ? (int)(slash - folder) : 1, slash ? pos[0] : ".");
    }
    const size_t fl = strlen(folder);
    snprintf(default_out, sizeof default_out, "%s%scurves.png", folder, fl && folder[fl - 1] == '/' ? "" : "/");
    out = default_out;
  }
  if (!synco_plot_available()) {
    fprintf(stderr, "synco plot: built without cairo (install libcairo2-dev and rebuild)\n");
    return 1;
  }
  char svgpath[1024] = "";
  const size_t ol = strlen(out);
  if (svg && ol > 4 && ol <= SYNCO_CLI_PATH_MAX && !strcasecmp(out + ol - 4, ".png"))
    snprintf(svgpath, sizeof svgpath, "%.*s.svg", (int)(ol - 4), out);
  else if (svg)
    fprintf(stderr, "synco plot: --svg adds an .svg beside a .png; %s is one file already (no .svg written)\n", out);
  /* the figure is no run's log (nor the .svg beside it), and every path fits */
  synco_cli_file files[MAX_RUNS + 2] = {{"--out", out, SYNCO_CLI_OUT}, {"--svg's", svgpath[0] ? svgpath : NULL, SYNCO_CLI_OUT}};
  char logpaths[MAX_RUNS][SYNCO_CLI_PATH_MAX + 16];
  for (int i = 0; i < npos; i++) {
    struct stat st;
    const int dir = stat(pos[i], &st) == 0 && S_ISDIR(st.st_mode);
    if (strlen(pos[i]) > SYNCO_CLI_PATH_MAX) {
      fprintf(stderr, "synco plot: %.60s...: path too long (%zu characters; at most %d)\n", pos[i], strlen(pos[i]),
              SYNCO_CLI_PATH_MAX);
      return 2;
    }
    snprintf(logpaths[i], sizeof logpaths[i], dir ? "%s/log.jsonl" : "%s", pos[i]);
    files[2 + i] = (synco_cli_file){"run log", logpaths[i], SYNCO_CLI_IN};
  }
  if ((rc = synco_cli_check_files("plot", files, (size_t)npos + 2))) return rc;
  if (synco_plot_check(out, width, height) != SYNCO_OK) { /* a usage error, found before any log is read */
    fprintf(stderr, "synco plot: %s\n", synco_last_error());
    return 2;
  }
  synco_runlog logs[MAX_RUNS];
  char names[MAX_RUNS][128];
  int nlogs = 0, exit_code = 1, by_step = 0;
  for (int i = 0; i < npos; i++) {
    char path[1024];
    struct stat st;
    if (stat(pos[i], &st) == 0 && S_ISDIR(st.st_mode)) snprintf(path, sizeof path, "%s/log.jsonl", pos[i]);
    else snprintf(path, sizeof path, "%s", pos[i]);
    if (synco_runlog_read(&logs[nlogs], path)) goto done;
    /* The run's name: its folder's name. */
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", S_ISDIR(st.st_mode) ? pos[i] : path);
    size_t l = strlen(tmp);
    while (l > 1 && tmp[l - 1] == '/') tmp[--l] = 0;
    char *base = S_ISDIR(st.st_mode) ? basename(tmp) : basename(dirname(tmp));
    snprintf(names[nlogs], sizeof names[nlogs], "%s", base);
    by_step |= logs[nlogs].by_step;
    nlogs++;
  }
  /* Eight panels: what the training minimises and its proxy accuracy (synthetic negatives counted once they are on),
   * the same with the positive against the real queue alone (MoCo-only: comparable across the switch and with
   * plain MoCo), the kNN monitor, the online probe, the learning rate and the throughput. The moment the synthetic
   * negatives switch on is a dashed line in the run's colour on the panels of the loss and the accuracies. */
  enum { STEP_PANELS = 7 };
  static const char *const titles[STEP_PANELS] = {"Training loss", "Proxy accuracy", "MoCo-only loss",
                                                   "MoCo-only proxy accuracy", "Online probe (train views)",
                                                   "Learning rate", "Throughput"};
  static const char *const ylabels[STEP_PANELS] = {"loss", "accuracy (%)", "loss", "accuracy (%)", "top-1 (%)", "lr",
                                                    "images/s"};
  static const int marked[STEP_PANELS] = {1, 1, 1, 1, 0, 0, 0};
  synco_plot_series series[STEP_PANELS][2 * MAX_RUNS], knn[MAX_RUNS];
  int ns[STEP_PANELS] = {0};
  char switch_label[] = "synthetic negatives on";
  int labelled = 0;
  for (int i = 0; i < nlogs; i++) {
    const synco_runlog *g = &logs[i];
    /* Step rows when there are any, else the epoch means (loss and accuracy). */
    const int use_ep = g->n == 0;
    const double *const ys[STEP_PANELS] = {use_ep ? g->eloss : g->loss, use_ep ? g->eacc : g->acc, g->loss_moco,
                                           g->acc_moco, g->probe, g->lr, g->ips};
    for (int p = 0; p < STEP_PANELS; p++) {
      const int from_ep = use_ep && p < 2;
      series[p][ns[p]++] = (synco_plot_series){names[i], from_ep ? g->ex : g->x, ys[p], from_ep ? g->ne : g->n,
                                               SYNCO_PLOT_LINE, i + 1};
    }
    knn[i] = (synco_plot_series){names[i], g->kx, g->knn, g->nk, SYNCO_PLOT_LINE_POINTS, i + 1};
  }
  for (int i = 0; i < nlogs; i++) /* after the runs, so that the legend lists the runs first */
    if (!isnan(logs[i].switch_epoch) && !by_step) {
      for (int p = 0; p < STEP_PANELS; p++)
        if (marked[p])
          series[p][ns[p]++] = (synco_plot_series){labelled ? NULL : switch_label, &logs[i].switch_epoch, NULL, 1,
                                                   SYNCO_PLOT_VLINE, i + 1};
      labelled = 1;
    }
  const char *xl = by_step ? "step" : "epoch";
  synco_plot_panel panels[8];
  for (int p = 0; p < STEP_PANELS; p++)
    panels[p < 4 ? p : p + 1] = (synco_plot_panel){titles[p], xl, ylabels[p], series[p], ns[p], 0, 0, p ? -1 : 0};
  panels[4] = (synco_plot_panel){"kNN top-1", "epoch", "top-1 (%)", knn, nlogs, 0, 0, -1}; /* one legend: the first */
  if (synco_plot_figure(out, width, height, 2, 4, panels, 8)) goto done;
  if (svgpath[0] && synco_plot_figure(svgpath, width, height, 2, 4, panels, 8)) goto done;
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "command", "plot");
    cJSON_AddStringToObject(o, "out", out);
    if (svgpath[0]) cJSON_AddStringToObject(o, "svg", svgpath);
    cJSON *runs = cJSON_AddArrayToObject(o, "runs");
    for (int i = 0; i < nlogs; i++) {
      cJSON *r = cJSON_CreateObject();
      cJSON_AddStringToObject(r, "name", names[i]);
      cJSON_AddNumberToObject(r, "interval_lines", logs[i].n);
      cJSON_AddNumberToObject(r, "epoch_lines", logs[i].ne);
      cJSON_AddNumberToObject(r, "knn_lines", logs[i].nk);
      /* where the run's training curve starts and ends on the x axis, in the axis's unit */
      const synco_runlog *g = &logs[i];
      const double *x = g->n ? g->x : g->ex;
      const int nx = g->n ? g->n : g->ne;
      if (nx) {
        cJSON *range = cJSON_AddArrayToObject(r, g->n && g->by_step ? "steps" : "epochs");
        cJSON_AddItemToArray(range, cJSON_CreateNumber(x[0]));
        cJSON_AddItemToArray(range, cJSON_CreateNumber(x[nx - 1]));
      }
      if (!isnan(logs[i].switch_epoch)) cJSON_AddNumberToObject(r, "synthetic_from_epoch", logs[i].switch_epoch + 1);
      cJSON_AddItemToArray(runs, r);
    }
    synco_eval_print_json(o);
  } else {
    printf("wrote %s%s%s (%d run%s)\n", out, svgpath[0] ? " and " : "", svgpath, nlogs, nlogs == 1 ? "" : "s");
  }
  exit_code = 0;
done:
  if (exit_code) synco_cli_error("plot");
  for (int i = 0; i < nlogs; i++) synco_runlog_free(&logs[i]);
  return exit_code;
}
