/* Terminal progress bar / plain progress lines; see progress.h. */
#include "base/progress.h"

#include <string.h>
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
}

static void draw(synco_progress *p, const char *text, int final) {
  const double el = synco_now() - p->t0;
  const double rate = el > 0 ? (double)p->done * p->items_per_step / el : 0;
  const double eta = p->done > 0 ? el * (double)(p->total - p->done) / (double)p->done : -1;
  char e1[32], e2[32];
  fmt_time(e1, sizeof e1, el);
  fmt_time(e2, sizeof e2, final ? 0 : eta);
  if (p->tty) {
    char bar[25];
    const int w = 24, fill = p->total > 0 ? (int)(w * (double)p->done / (double)p->total) : 0;
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(p->out, "\r\033[K%s [%s] %ld/%ld  %.1f img/s  %s<%s  %s", p->label, bar, p->done, p->total, rate, e1, e2,
            text ? text : "");
    if (final) fputc('\n', p->out);
  } else {
    fprintf(p->out, "%s %ld/%ld  %.1f img/s  elapsed %s eta %s  %s\n", p->label, p->done, p->total, rate, e1, e2,
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
