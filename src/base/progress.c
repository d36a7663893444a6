/* Terminal progress bar / plain progress lines, stop requests; see progress.h. */
#include "base/progress.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

double synco_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_time(char *buf, size_t n, double s) {
  if (s < 0 || s > 1e7) {
    snprintf(buf, n, "--:--");
    return;
  }
  int t = (int)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, n, "%02d:%02d", t / 60, t % 60);
}

int synco_terminal_width(FILE *f) {
  struct winsize ws;
  if (f && ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  const char *c = getenv("COLUMNS");
  if (c && *c) {
    char *end;
    long v = strtol(c, &end, 10);
    if (!*end && v > 0 && v < 10000) return (int)v;
  }
  return 80;
}

void synco_progress_begin(synco_progress *p, const char *label, long total, double items_per_step, int every) {
  p->out = stderr;
  p->tty = isatty(fileno(stderr));
  p->label = label;
  p->total = total;
  p->done = 0;
  p->t0 = synco_now();
  p->last_draw = 0;
  p->items_per_step = items_per_step;
  p->every = every > 0 ? every : 10;
  p->run_before = p->run_total = 0;
}

void synco_progress_run(synco_progress *p, long run_before, long run_total) {
  p->run_before = run_before;
  p->run_total = run_total;
}

static void draw(synco_progress *p, const char *text, int final) {
  if (!p->out) return; /* a bar that is not shown (another process draws it) */
  const double el = synco_now() - p->t0;
  const double rate = el > 0 ? (double)p->done * p->items_per_step / el : 0;
  const double per_step = p->done > 0 ? el / (double)p->done : -1;
  const double eta = per_step >= 0 ? per_step * (double)(p->total - p->done) : -1;
  char e1[32], e2[32], run[48] = "";
  fmt_time(e1, sizeof e1, el);
  fmt_time(e2, sizeof e2, final ? 0 : eta);
  if (p->run_total > 0) {
    const long left = p->run_total - p->run_before - p->done;
    char e3[32];
    fmt_time(e3, sizeof e3, left <= 0 ? 0 : per_step >= 0 ? per_step * (double)left : -1);
    snprintf(run, sizeof run, p->tty ? " (run %s)" : " run eta %s", e3);
  }
  if (p->tty) {
    /* The bar shrinks, then the line is cut, so that it stays within width - 1 columns: a line that wraps
     * would leave a new line on every redraw. */
    const int width = synco_terminal_width(p->out) - 1;
    char line[512];
    char rtext[48];
    snprintf(rtext, sizeof rtext, "  %.1f img/s", rate);
    for (int w = 24, with_rate = 1;; w = w > 8 ? w - 8 : w - 1) {
      if (w < 0) w = 0, with_rate = 0; /* last try: no bar and no rate */
      char bar[32] = "";
      if (w > 0) {
        const int fill = p->total > 0 ? (int)(w * (double)p->done / (double)p->total) : 0;
        bar[0] = ' ', bar[1] = '[';
        for (int i = 0; i < w; i++) bar[2 + i] = i < fill ? '#' : '.';
        bar[2 + w] = ']', bar[3 + w] = 0;
      }
      snprintf(line, sizeof line, "%s%s %ld/%ld%s  %s<%s%s  %s", p->label, bar, p->done, p->total,
               with_rate ? rtext : "", e1, e2, run, text ? text : "");
      if ((int)strlen(line) <= width || !with_rate) break;
    }
    int n = (int)strlen(line);
    if (n > width) n = width > 0 ? width : 0;
    while (n > 0 && line[n - 1] == ' ') n--;
    fprintf(p->out, "\r\033[K%.*s", n, line);
    if (final) fputc('\n', p->out);
  } else {
    fprintf(p->out, "%s %ld/%ld  %.1f img/s  elapsed %s eta %s%s  %s\n", p->label, p->done, p->total, rate, e1, e2, run,
            text ? text : "");
  }
  fflush(p->out);
}

void synco_progress_update(synco_progress *p, long done, const char *text) {
  p->done = done;
  const double now = synco_now();
  if (p->tty) {
    if (now - p->last_draw >= 0.2 || done == p->total) {
      p->last_draw = now;
      draw(p, text, 0);
    }
  } else if (done % p->every == 0 && done != p->total) {
    draw(p, text, 0);
  }
}

void synco_progress_end(synco_progress *p, const char *text) { draw(p, text, 1); }

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

void synco_stop_install(int on) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  if (on) {
    stop_signal = 0;
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESETHAND | SA_RESTART; /* a second Ctrl-C stops at once; reads are not cut short */
  } else {
    sa.sa_handler = SIG_DFL;
  }
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int synco_stop_requested(void) { return (int)stop_signal; }
