/* Plots with cairo (see plot.h). Each panel maps data to a plot rectangle inside its grid cell; ticks are
 * "nice" numbers (1, 2, 2.5, 5 x 10^k) on linear axes and powers of ten on log axes; text uses cairo's toy
 * font API (a sans-serif face), which is enough for labels and keeps the dependency to libcairo alone. */
#include "eval/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/status.h"

synco_status synco_plot_check(const char *path, int width, int height) {
  const size_t n = strlen(path);
  const char *suf = n >= 4 ? path + n - 4 : "";
  if (strcasecmp(suf, ".png") && strcasecmp(suf, ".svg") && strcasecmp(suf, ".pdf"))
    return synco_fail(SYNCO_ERR_ARG, "%s: plot files end in .png, .svg or .pdf", path);
  if (width < SYNCO_PLOT_MIN_SIDE || height < SYNCO_PLOT_MIN_SIDE || width > SYNCO_PLOT_MAX_SIDE ||
      height > SYNCO_PLOT_MAX_SIDE)
    return synco_fail(SYNCO_ERR_ARG, "%s: a figure of %dx%d; its sides are %d to %d", path, width, height,
                      SYNCO_PLOT_MIN_SIDE, SYNCO_PLOT_MAX_SIDE);
  return SYNCO_OK;
}

#ifndef SYNCO_HAVE_CAIRO
int synco_plot_available(void) { return 0; }
synco_status synco_plot_figure(const char *path, int width, int height, int rows, int cols,
                               const synco_plot_panel *panels, int npanels) {
  return synco_fail(SYNCO_ERR_UNSUPPORTED, "%s: plots need cairo (rebuild with libcairo2-dev)", path);
}
synco_status synco_plot_panel_file(const char *path, int width, int height, const synco_plot_panel *panel) {
  return synco_plot_figure(path, width, height, 1, 1, panel, 1);
}
#else
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <unistd.h>

#include "base/files.h"

int synco_plot_available(void) { return 1; }

/* cairo's toy text API keeps fontconfig's caches for the life of the process; LeakSanitizer (SYNCO_SANITIZE
 * builds) would report them at exit. This hook of the sanitizer runtime names them as expected; without the
 * sanitizer it is an unused function. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }

static const double palette[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

/* The dashes of the second, third, ... of several curves in one panel (the first is solid). */
static const double dash[3][2] = {{8, 4}, {2, 3}, {10, 3}};

typedef struct {
  double lo, hi;  /* in axis space (log10 of the data on log axes) */
  int log;
} axis;

static double ax_fwd(const axis *a, double v) { return a->log ? log10(v) : v; }
static int ax_ok(const axis *a, double v) { return isfinite(v) && (!a->log || v > 0); }

static double nice_step(double range, int target) {
  double raw = range / target, p = pow(10, floor(log10(raw))), f = raw / p;
  double n = f < 1.5 ? 1 : f < 2.25 ? 2 : f < 3.5 ? 2.5 : f < 7.5 ? 5 : 10;
  return n * p;
}

static void fmt_tick(char *buf, size_t sz, double v, double step, int logax) {
  if (logax) {
    double e = v;
    if (fabs(e - round(e)) < 1e-9 && fabs(e) >= 4) snprintf(buf, sz, "1e%d", (int)round(e));
    else snprintf(buf, sz, "%g", pow(10, e));
    return;
  }
  if (fabs(v) < step * 1e-6) v = 0;
  double av = fabs(v);
  if (av != 0 && (av >= 1e5 || av < 1e-3)) {
    snprintf(buf, sz, "%.2g", v);
    return;
  }
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (fabs(step * pow(10, dec) - round(step * pow(10, dec))) > 1e-6) dec++; /* 2.5 x 10^k */
  snprintf(buf, sz, "%.*f", dec > 8 ? 8 : dec, v);
}

/* Data extent of the panel; bars include 0 on the y axis. */
static void extent(const synco_plot_panel *p, axis *ax, axis *ay) {
  double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
  int bars = 0;
  for (int s = 0; s < p->nseries; s++) {
    const synco_plot_series *se = &p->series[s];
    if (se->style == SYNCO_PLOT_BARS) {
      bars = 1;
      for (int i = 0; i <= se->n; i++)
        if (ax_ok(ax, se->x[i])) {
          double v = ax_fwd(ax, se->x[i]);
          xl = fmin(xl, v), xh = fmax(xh, v);
        }
      for (int i = 0; i < se->n; i++)
        if (ax_ok(ay, se->y[i])) {
          double v = ax_fwd(ay, se->y[i]);
          yl = fmin(yl, v), yh = fmax(yh, v);
        }
      continue;
    }
    if (se->style == SYNCO_PLOT_VLINE) { /* marks a moment: within the x range, no say in the y range */
      for (int i = 0; i < se->n; i++)
        if (ax_ok(ax, se->x[i])) xl = fmin(xl, ax_fwd(ax, se->x[i])), xh = fmax(xh, ax_fwd(ax, se->x[i]));
      continue;
    }
    for (int i = 0; i < se->n; i++) {
      if (!ax_ok(ax, se->x[i]) || !ax_ok(ay, se->y[i])) continue;
      double x = ax_fwd(ax, se->x[i]), y = ax_fwd(ay, se->y[i]);
      xl = fmin(xl, x), xh = fmax(xh, x), yl = fmin(yl, y), yh = fmax(yh, y);
    }
  }
  if (!isfinite(xl)) xl = 0, xh = 1;
  int markers = 0, only_points = p->nseries > 0;
  for (int s = 0; s < p->nseries; s++) {
    markers |= p->series[s].style == SYNCO_PLOT_POINTS || p->series[s].style == SYNCO_PLOT_LINE_POINTS;
    only_points &= p->series[s].style == SYNCO_PLOT_POINTS;
  }
  if (!isfinite(yl)) yl = 0, yh = 1;
  if (bars && !ay->log) yl = fmin(yl, 0);
  /* a scatter keeps its dots well inside the frame, off its corners; one point (or one value) sits in the middle */
  if (only_points && xh - xl < 1e-12) xl -= fmax(0.5, 0.1 * fabs(xl)), xh += fmax(0.5, 0.1 * fabs(xh));
  if (only_points && yh - yl < 1e-12) yl -= fmax(0.5, 0.1 * fabs(yl)), yh += fmax(0.5, 0.1 * fabs(yh));
  if (markers && xh > xl) { /* keep the end markers inside the frame */
    double px = (only_points ? 0.15 : 0.02) * (xh - xl);
    xl -= px, xh += px;
  }
  if (xh - xl < 1e-12) xl -= 0.5, xh += 0.5;
  if (yh - yl < 1e-12) yl -= 0.5, yh += 0.5;
  double pad = (only_points ? 0.15 : 0.05) * (yh - yl);
  ax->lo = xl, ax->hi = xh;
  ay->lo = (bars && !ay->log && yl == 0) ? 0 : yl - pad;
  ay->hi = yh + pad;
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double ha, double va) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  cairo_move_to(cr, x - e.x_bearing - ha * e.width, y - e.y_bearing - va * e.height);
  cairo_show_text(cr, s);
}

/* Tick positions (axis space) of a; returns their number and the step used to format them. */
static int make_ticks(const axis *a, double *ticks, int max, double *step_out) {
  int nt = 0;
  double step = a->log ? fmax(1, round(nice_step(a->hi - a->lo, 5))) : nice_step(a->hi - a->lo, 6);
  if (a->log && a->hi - a->lo < 2.5) { /* less than ~2 decades: 1, 2, 5 x 10^k */
    for (double e = floor(a->lo); e <= ceil(a->hi) && nt < max - 3; e++)
      for (int m = 0; m < 3; m++) {
        double t = e + log10((double[]){1, 2, 5}[m]);
        if (t >= a->lo - 1e-9 && t <= a->hi + 1e-9) ticks[nt++] = t;
      }
  } else {
    for (double t = ceil(a->lo / step - 1e-9) * step; t <= a->hi + step * 1e-9 && nt < max; t += step) ticks[nt++] = t;
  }
  if (a->log && nt < 3) { /* a fraction of a decade: nice linear values, placed on the log axis */
    const double vlo = pow(10, a->lo), vhi = pow(10, a->hi), vs = nice_step(vhi - vlo, 5);
    nt = 0;
    for (double v = ceil(vlo / vs - 1e-9) * vs; v <= vhi * (1 + 1e-9) && nt < max; v += vs)
      if (v > 0) ticks[nt++] = log10(v);
  }
  *step_out = step;
  return nt;
}

/* A plot rectangle and its axes: data (axis space) to pixels. */
typedef struct {
  axis ax, ay;
  double X0, X1, Y0, Y1;
} frame;

/* The palette entry (and dash) of series s of a panel: its own colour when it names one, else its index. */
static int series_index(const synco_plot_series *se, int s) { return se->color > 0 ? se->color - 1 : s; }

static double px(const frame *f, double v) { return f->X0 + (v - f->ax.lo) / (f->ax.hi - f->ax.lo) * (f->X1 - f->X0); }
static double py(const frame *f, double v) { return f->Y1 - (v - f->ay.lo) / (f->ay.hi - f->ay.lo) * (f->Y1 - f->Y0); }

/* Every k-th tick, k the smallest that keeps the labels gap pixels apart on a span of `pixels`. */
static int thin_ticks(double *t, int nt, const axis *a, double pixels, double gap) {
  if (nt < 2 || a->hi <= a->lo) return nt;
  const double per = fabs(t[1] - t[0]) / (a->hi - a->lo) * pixels;
  int k = 1;
  while (per * k < gap && k < nt) k++;
  int m = 0;
  for (int i = 0; i < nt; i += k) t[m++] = t[i];
  return m;
}

/* The grid, ticks and tick labels of f (x labels when xlabels), then its frame. */
static void draw_axes(cairo_t *cr, const frame *f, const double *xt, int nxt, double xstep, const double *yt, int nyt,
                      double ystep, int xlabels) {
  char buf[64];
  for (int which = 0; which < 2; which++) {
    const axis *a = which ? &f->ay : &f->ax;
    const double *ticks = which ? yt : xt, step = which ? ystep : xstep;
    const int nt = which ? nyt : nxt;
    for (int ti = 0; ti < nt; ti++) {
      const double t = ticks[ti];
      cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
      cairo_set_line_width(cr, 1);
      if (which) cairo_move_to(cr, f->X0, py(f, t)), cairo_line_to(cr, f->X1, py(f, t));
      else cairo_move_to(cr, px(f, t), f->Y0), cairo_line_to(cr, px(f, t), f->Y1);
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0, 0, 0);
      if (which) cairo_move_to(cr, f->X0 - 5, py(f, t)), cairo_line_to(cr, f->X0, py(f, t));
      else cairo_move_to(cr, px(f, t), f->Y1), cairo_line_to(cr, px(f, t), f->Y1 + 5);
      cairo_stroke(cr);
      if (!which && !xlabels) continue;
      fmt_tick(buf, sizeof buf, t, step, a->log);
      if (which) text_at(cr, f->X0 - 8, py(f, t), buf, 1.0, 0.5);
      else text_at(cr, px(f, t), f->Y1 + 8, buf, 0.5, 0.0);
    }
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_line_width(cr, 1.2);
  cairo_rectangle(cr, f->X0, f->Y0, f->X1 - f->X0, f->Y1 - f->Y0);
  cairo_stroke(cr);
}

/* One series in colour c, clipped to f. Bars are filled (lighter when others may lie under them: overlay); with
 * others (overlay), a curve of index k > 0 is dashed and dots of a later index are smaller. */
static void draw_series(cairo_t *cr, const frame *f, const synco_plot_series *se, const double *c, int overlay, int k) {
  const axis *ax = &f->ax, *ay = &f->ay;
  cairo_save(cr);
  cairo_rectangle(cr, f->X0, f->Y0, f->X1 - f->X0, f->Y1 - f->Y0);
  cairo_clip(cr);
  if (se->style == SYNCO_PLOT_BARS) {
    const double base = ay->log ? ay->lo : fmax(ay->lo, 0);
    for (int i = 0; i < se->n; i++) {
      if (!ax_ok(ax, se->x[i]) || !ax_ok(ax, se->x[i + 1]) || !ax_ok(ay, se->y[i])) continue;
      const double xa = px(f, ax_fwd(ax, se->x[i])), xb = px(f, ax_fwd(ax, se->x[i + 1])), yt = py(f, ax_fwd(ay, se->y[i]));
      cairo_rectangle(cr, xa, yt, xb - xa, py(f, base) - yt);
      cairo_set_source_rgba(cr, c[0], c[1], c[2], overlay ? 0.45 : 0.8);
      cairo_fill_preserve(cr);
      cairo_set_source_rgb(cr, c[0], c[1], c[2]);
      cairo_set_line_width(cr, 0.8);
      cairo_stroke(cr);
    }
    cairo_restore(cr);
    return;
  }
  cairo_set_source_rgb(cr, c[0], c[1], c[2]);
  if (se->style == SYNCO_PLOT_VLINE) {
    const double vdash[] = {6.0, 4.0};
    cairo_set_dash(cr, vdash, 2, 0);
    cairo_set_line_width(cr, 1.4);
    for (int i = 0; i < se->n; i++)
      if (ax_ok(ax, se->x[i])) {
        cairo_move_to(cr, px(f, ax_fwd(ax, se->x[i])), f->Y0);
        cairo_line_to(cr, px(f, ax_fwd(ax, se->x[i])), f->Y1);
      }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_restore(cr);
    return;
  }
  if (se->style != SYNCO_PLOT_POINTS) {
    cairo_set_line_width(cr, 1.8);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    /* overlaid curves differ in dash as well as colour: equal curves stay visible */
    if (overlay && k > 0 && se->style == SYNCO_PLOT_LINE) cairo_set_dash(cr, dash[(k - 1) % 3], 2, 0);
    int pen = 0;
    for (int i = 0; i < se->n; i++) {
      if (!ax_ok(ax, se->x[i]) || !ax_ok(ay, se->y[i])) {
        pen = 0;
        continue;
      }
      const double x = px(f, ax_fwd(ax, se->x[i])), y = py(f, ax_fwd(ay, se->y[i]));
      if (pen) cairo_line_to(cr, x, y);
      else cairo_move_to(cr, x, y);
      pen = 1;
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
  }
  if (se->style == SYNCO_PLOT_POINTS || se->style == SYNCO_PLOT_LINE_POINTS) {
    /* overlaid scatters: each later series' dots a size smaller, so that equal points show as rings */
    const double r = se->style == SYNCO_PLOT_POINTS ? (overlay ? 8.0 - 1.6 * (k % 4) : 5.0) : 2.8;
    for (int i = 0; i < se->n; i++) {
      if (!ax_ok(ax, se->x[i]) || !ax_ok(ay, se->y[i])) continue;
      cairo_new_sub_path(cr);
      cairo_arc(cr, px(f, ax_fwd(ax, se->x[i])), py(f, ax_fwd(ay, se->y[i])), r, 0, 2 * M_PI);
    }
    cairo_fill(cr);
  }
  cairo_restore(cr);
}

/* How many points of p's lines (sampled along each segment) and markers lie in the rectangle (x, y, w, h) of f. */
static int points_under(const synco_plot_panel *p, const frame *f, double x, double y, double w, double h) {
  int n = 0;
  for (int s = 0; s < p->nseries; s++) {
    const synco_plot_series *se = &p->series[s];
    if (se->style == SYNCO_PLOT_BARS || se->style == SYNCO_PLOT_VLINE) continue;
    double pu = 0, pv = 0;
    int prev = 0;
    for (int i = 0; i < se->n; i++) {
      if (!ax_ok(&f->ax, se->x[i]) || !ax_ok(&f->ay, se->y[i])) {
        prev = 0;
        continue;
      }
      const double u = px(f, ax_fwd(&f->ax, se->x[i])), v = py(f, ax_fwd(&f->ay, se->y[i]));
      /* a line hides where it passes too: 8 samples of each segment */
      const int samples = prev && se->style != SYNCO_PLOT_POINTS ? 8 : 1;
      for (int k = 1; k <= samples; k++) {
        const double t = (double)k / samples, su = prev ? pu + t * (u - pu) : u, sv = prev ? pv + t * (v - pv) : v;
        n += su >= x && su <= x + w && sv >= y && sv <= y + h;
      }
      pu = u, pv = v, prev = 1;
    }
  }
  return n;
}

static void draw_panel(cairo_t *cr, const synco_plot_panel *p, double cx, double cy, double cw, double ch) {
  frame f = {.ax = {0, 1, p->logx}, .ay = {0, 1, p->logy}};
  extent(p, &f.ax, &f.ay);
  const double fs = fmax(9, fmin(14, ch / 30));
  double xt[64], yt[64], xstep, ystep;
  int nxt = make_ticks(&f.ax, xt, 64, &xstep), nyt = make_ticks(&f.ay, yt, 64, &ystep);
  char buf[64];
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, fs);
  double ytw = 0; /* widest y tick label: the y axis label goes left of it */
  for (int i = 0; i < nyt; i++) {
    cairo_text_extents_t e;
    fmt_tick(buf, sizeof buf, yt[i], ystep, f.ay.log);
    cairo_text_extents(cr, buf, &e);
    ytw = fmax(ytw, e.width);
  }
  const double ml = fmax(fs * 4.0, ytw + 8 + fs * 2.2), mr = fs * 1.5, mt = fs * 2.6, mb = fs * 4.0;
  f.X0 = cx + ml, f.X1 = cx + cw - mr, f.Y0 = cy + mt, f.Y1 = cy + ch - mb;
  if (f.X1 - f.X0 < 10 || f.Y1 - f.Y0 < 10) return;
  /* Small multiples: each series in a strip of its own under its label, all on the same axes. */
  const int strips = p->stacked && p->nseries > 1 ? p->nseries : 1;
  const double head = strips > 1 ? fs * 1.5 : 0, strip = (f.Y1 - f.Y0 + fs * 0.6) / strips - fs * 0.6;
  if (strip - head < 10) return;
  nxt = thin_ticks(xt, nxt, &f.ax, f.X1 - f.X0, fs * 5);
  nyt = thin_ticks(yt, nyt, &f.ay, strip - head, fs * 1.6);
  const double Yall0 = f.Y0, Yall1 = f.Y1;
  for (int k = 0; k < strips; k++) {
    frame g = f;
    g.Y0 = Yall0 + k * (strip + fs * 0.6) + head;
    g.Y1 = g.Y0 + strip - head;
    draw_axes(cr, &g, xt, nxt, xstep, yt, nyt, ystep, k == strips - 1);
    if (strips > 1) {
      const double *c = palette[series_index(&p->series[k], k) % 10];
      draw_series(cr, &g, &p->series[k], c, 0, 0);
      if (p->series[k].label) { /* the strip's label: a swatch in its colour, then the text */
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_rectangle(cr, g.X0, g.Y0 - fs * 1.15, fs * 1.6, fs * 0.8);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, g.X0 + fs * 2.1, g.Y0 - fs * 0.75, p->series[k].label, 0.0, 0.5);
      }
    } else {
      for (int s = 0; s < p->nseries; s++) {
        const int i = series_index(&p->series[s], s);
        draw_series(cr, &g, &p->series[s], palette[i % 10], p->nseries > 1, i);
      }
    }
  }
  f.Y0 = Yall0, f.Y1 = Yall1;
  /* Labels, title. */
  cairo_set_source_rgb(cr, 0, 0, 0);
  if (p->xlabel) text_at(cr, (f.X0 + f.X1) / 2, f.Y1 + fs * 2.3, p->xlabel, 0.5, 0.0);
  if (p->ylabel) {
    cairo_save(cr);
    cairo_translate(cr, cx + fs * 0.6, (f.Y0 + f.Y1) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, p->ylabel, 0.5, 0.0);
    cairo_restore(cr);
  }
  if (p->title) {
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, fs * 1.15);
    text_at(cr, (f.X0 + f.X1) / 2, cy + fs * 0.7, p->title, 0.5, 0.0);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, fs);
  }
  if (strips > 1) return; /* the strips are labelled */
  /* Legend. */
  const double X0 = f.X0, X1 = f.X1, Y0 = f.Y0, Y1 = f.Y1;
  int nl = 0;
  double lw = 0;
  for (int s = 0; s < p->nseries; s++)
    if (p->series[s].label) {
      cairo_text_extents_t e;
      cairo_text_extents(cr, p->series[s].label, &e);
      lw = fmax(lw, e.x_advance);
      nl++;
    }
  if (nl && p->legend >= 0) {
    const double row = fs * 1.4, bw = lw + fs * 3.6, bh = nl * row + fs * 0.6;
    double bx = p->legend == 2 ? X0 + fs * 0.6 : X1 - bw - fs * 0.6;
    double by = p->legend == 1 ? Y1 - bh - fs * 0.6 : Y0 + fs * 0.6;
    if (p->legend == 0) { /* the upper right unless it hides more of the data than another corner */
      int best = -1;
      for (int corner = 0; corner < 4; corner++) {
        const double cx_ = corner & 1 ? X0 + fs * 0.6 : X1 - bw - fs * 0.6, cy_ = corner & 2 ? Y1 - bh - fs * 0.6 : Y0 + fs * 0.6;
        const int hidden = points_under(p, &f, cx_ - fs, cy_ - fs, bw + 2 * fs, bh + 2 * fs);
        if (best < 0 || hidden < best) best = hidden, bx = cx_, by = cy_;
      }
    }
    cairo_rectangle(cr, bx, by, bw, bh);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 0.8);
    cairo_stroke(cr);
    int k = 0;
    for (int s = 0; s < p->nseries; s++) {
      if (!p->series[s].label) continue;
      const int ci = series_index(&p->series[s], s);
      const double *c = palette[ci % 10];
      double yy = by + fs * 0.3 + row * (k + 0.5);
      cairo_set_source_rgb(cr, c[0], c[1], c[2]);
      if (p->series[s].style == SYNCO_PLOT_BARS) {
        cairo_rectangle(cr, bx + fs * 0.5, yy - fs * 0.4, fs * 1.8, fs * 0.8);
        cairo_fill(cr);
      } else if (p->series[s].style == SYNCO_PLOT_POINTS) {
        cairo_arc(cr, bx + fs * 1.4, yy, 4.0, 0, 2 * M_PI);
        cairo_fill(cr);
      } else {
        const double vdash[] = {6.0, 4.0};
        if (p->series[s].style == SYNCO_PLOT_VLINE) cairo_set_dash(cr, vdash, 2, 0);
        cairo_set_line_width(cr, 2);
        if (p->nseries > 1 && ci > 0 && p->series[s].style == SYNCO_PLOT_LINE) cairo_set_dash(cr, dash[(ci - 1) % 3], 2, 0);
        cairo_move_to(cr, bx + fs * 0.5, yy), cairo_line_to(cr, bx + fs * 2.3, yy);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
      }
      cairo_set_source_rgb(cr, 0, 0, 0);
      text_at(cr, bx + fs * 2.9, yy, p->series[s].label, 0.0, 0.5);
      k++;
    }
  }
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcasecmp(s + a - b, suf);
}

/* cairo's output: the stream of synco_file_begin. */
static cairo_status_t write_out(void *closure, const unsigned char *data, unsigned int n) {
  return fwrite(data, 1, n, (FILE *)closure) == n ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

synco_status synco_plot_figure(const char *path, int width, int height, int rows, int cols,
                               const synco_plot_panel *panels, int npanels) {
  SYNCO_TRY(synco_plot_check(path, width, height));
  if (rows < 1 || cols < 1 || npanels < 1 || npanels > rows * cols)
    return synco_fail(SYNCO_ERR_ARG, "%s: bad grid %dx%d for %d panels", path, rows, cols, npanels);
  for (int i = 0; i < npanels; i++)
    for (int s = 0; s < panels[i].nseries; s++)
      if (panels[i].series[s].n < 0 || (panels[i].series[s].n > 0 && (!panels[i].series[s].x ||
                                             (!panels[i].series[s].y && panels[i].series[s].style != SYNCO_PLOT_VLINE))))
        return synco_fail(SYNCO_ERR_ARG, "%s: series %d of panel %d has no data", path, s, i);
  const int png = ends_with(path, ".png"), svg = ends_with(path, ".svg"); /* else .pdf (synco_plot_check) */
  /* The figure goes to path.tmp, created without following a link, and is renamed onto path (base/files.h). */
  char tmp[4200];
  FILE *out = synco_file_begin(path, tmp, sizeof tmp);
  if (!out) return SYNCO_ERR_IO;
  cairo_surface_t *sf = png   ? cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height)
                        : svg ? cairo_svg_surface_create_for_stream(write_out, out, width, height)
                              : cairo_pdf_surface_create_for_stream(write_out, out, width, height);
  if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
    synco_status st = synco_fail(SYNCO_ERR_IO, "%s: cannot create plot: %s", path,
                                 cairo_status_to_string(cairo_surface_status(sf)));
    cairo_surface_destroy(sf);
    fclose(out);
    unlink(tmp);
    return st;
  }
  cairo_t *cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  const double cw = (double)width / cols, ch = (double)height / rows;
  for (int i = 0; i < npanels; i++) draw_panel(cr, &panels[i], (i % cols) * cw, (i / cols) * ch, cw, ch);
  cairo_status_t cs = cairo_status(cr);
  cairo_destroy(cr);
  if (png && cs == CAIRO_STATUS_SUCCESS) cs = cairo_surface_write_to_png_stream(sf, write_out, out);
  cairo_surface_finish(sf);
  if (cs == CAIRO_STATUS_SUCCESS) cs = cairo_surface_status(sf);
  cairo_surface_destroy(sf);
  if (cs == CAIRO_STATUS_WRITE_ERROR) return synco_file_commit(out, tmp, path, 0); /* errno: the write's */
  if (cs != CAIRO_STATUS_SUCCESS) {
    fclose(out);
    unlink(tmp);
    return synco_fail(SYNCO_ERR_IO, "%s: writing the plot failed: %s", path, cairo_status_to_string(cs));
  }
  return synco_file_commit(out, tmp, path, 1);
}

synco_status synco_plot_panel_file(const char *path, int width, int height, const synco_plot_panel *panel) {
  return synco_plot_figure(path, width, height, 1, 1, panel, 1);
}
#endif
