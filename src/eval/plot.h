/* A small plotting module on cairo: figures of one or more panels (a grid), each with axes, ticks and tick
 * numbers, axis labels, a title, a legend, and several series drawn as lines, points or histogram bars.
 * The output format follows the file name: .png (raster, width x height pixels), .svg or .pdf (vector, width x
 * height points). Built only with cairo (SYNCO_HAVE_CAIRO); without it every call returns
 * SYNCO_ERR_UNSUPPORTED. Non-finite y values break a line (used for epochs without a kNN value). A panel of points
 * alone (a scatter) keeps them 15% of the span inside its frame, never on its edges or corners. */
#ifndef SYNCO_EVAL_PLOT_H
#define SYNCO_EVAL_PLOT_H

#include "synco.h"

typedef enum {
  SYNCO_PLOT_LINE = 0,  /* x[n], y[n] joined by a line */
  SYNCO_PLOT_POINTS,    /* x[n], y[n] as markers */
  SYNCO_PLOT_LINE_POINTS,
  SYNCO_PLOT_BARS,      /* histogram: x[n + 1] bin edges, y[n] heights */
  SYNCO_PLOT_VLINE,     /* x[n]: dashed vertical lines across the panel, marking moments (y unused) */
} synco_plot_style;

typedef struct {
  const char *label;    /* legend entry; NULL: not in the legend */
  const double *x, *y;
  int n;
  synco_plot_style style;
  int color;            /* 0: the palette's colour of the series' index; k > 0: the palette's colour k - 1 */
} synco_plot_series;

typedef struct {
  const char *title, *xlabel, *ylabel;
  const synco_plot_series *series;
  int nseries;
  int logx, logy;       /* logarithmic axis (non-positive values are skipped) */
  int legend;           /* 0: legend at the upper right, or the corner where it hides the fewest points; 1: lower
                         * right, 2: upper left, -1: none */
  int stacked;          /* 1: small multiples: each series in a strip of its own, one under the other, on the same
                         * axes, labelled above it (no legend): several histograms stay readable, none under another */
} synco_plot_panel;

/* Draws npanels panels on a rows x cols grid (row-major) into path (.png, .svg or .pdf). */
synco_status synco_plot_figure(const char *path, int width, int height, int rows, int cols,
                               const synco_plot_panel *panels, int npanels);
/* One panel in one file. */
synco_status synco_plot_panel_file(const char *path, int width, int height, const synco_plot_panel *panel);
/* Whether plots are built in. */
int synco_plot_available(void);
/* The smallest and largest side a figure takes (pixels for .png, points for .svg/.pdf). */
#define SYNCO_PLOT_MIN_SIDE 50
#define SYNCO_PLOT_MAX_SIDE 16384
/* Can a figure be written to path at width x height: its suffix (.png, .svg, .pdf) and its sides? The check
 * synco_plot_figure makes, for a command to make with its flags. */
synco_status synco_plot_check(const char *path, int width, int height);

#endif
