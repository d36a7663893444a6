/* Plots: a multi-panel figure (lines with a gap, points, a log axis, histogram bars, legends) and a single
 * panel are written as PNG, SVG and PDF; each PNG decodes with libpng at the requested size and is not blank,
 * the SVG is an SVG document, bad arguments are refused. Skipped when built without cairo. */
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/plot.h"
#include "test_util.h"

/* Decodes path; returns 1 with its size and the share of non-white pixels. */
static int decode(const char *path, unsigned *w, unsigned *h, double *ink) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path)) return 0;
  img.format = PNG_FORMAT_RGB;
  unsigned char *buf = malloc(PNG_IMAGE_SIZE(img));
  if (!buf || !png_image_finish_read(&img, NULL, buf, 0, NULL)) {
    free(buf);
    png_image_free(&img);
    return 0;
  }
  size_t dark = 0, npx = (size_t)img.width * img.height;
  for (size_t i = 0; i < npx; i++)
    if (buf[3 * i] < 250 || buf[3 * i + 1] < 250 || buf[3 * i + 2] < 250) dark++;
  *w = img.width, *h = img.height, *ink = (double)dark / npx;
  free(buf);
  return 1;
}

static int file_starts_with(const char *path, const char *needle) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  char buf[256] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  return n > 0 && strstr(buf, needle) != NULL;
}

int main(void) {
  if (!synco_plot_available()) SKIP("built without cairo");
  char dir[] = "/tmp/synco_plot_XXXXXX";
  if (!mkdtemp(dir)) SKIP("cannot create a temporary folder");

  enum { N = 50 };
  double x[N], y1[N], y2[N], lr[N], edges[21], counts[20];
  for (int i = 0; i < N; i++) {
    x[i] = i + 1;
    y1[i] = 8.0 * exp(-i / 15.0) + 0.5;
    y2[i] = i % 10 == 9 ? 20 + i : NAN; /* kNN only every 10 epochs */
    lr[i] = 0.06 * 0.5 * (1 + cos(M_PI * i / N)) + 1e-5;
  }
  for (int i = 0; i <= 20; i++) edges[i] = 0.5 + i * 0.1;
  for (int i = 0; i < 20; i++) counts[i] = exp(-(i - 8) * (i - 8) / 10.0) * 100;
  synco_plot_series loss[2] = {{"run a", x, y1, N, SYNCO_PLOT_LINE}, {"run b", x, y2, N, SYNCO_PLOT_LINE_POINTS}};
  synco_plot_series lrs = {"lr", x, lr, N, SYNCO_PLOT_LINE};
  synco_plot_series hist = {"ratio", edges, counts, 20, SYNCO_PLOT_BARS};
  synco_plot_series pts = {NULL, x, y1, N, SYNCO_PLOT_POINTS};
  synco_plot_panel panels[4] = {
      {"Loss", "epoch", "loss", loss, 2, 0, 0, 0},
      {"Learning rate", "epoch", "lr", &lrs, 1, 0, 1, 0},
      {"Inter/intra distance ratio", "ratio", "samples", &hist, 1, 0, 0, 0},
      {"Points, log x", "epoch", "value", &pts, 1, 1, 0, -1},
  };
  const char *ext[3] = {"png", "svg", "pdf"};
  for (int e = 0; e < 3; e++) {
    char path[256];
    snprintf(path, sizeof path, "%s/figure.%s", dir, ext[e]);
    CHECK_OK(synco_plot_figure(path, 1000, 700, 2, 2, panels, 4));
    CHECK(access(path, F_OK) == 0);
    snprintf(path, sizeof path, "%s/single.%s", dir, ext[e]);
    CHECK_OK(synco_plot_panel_file(path, 640, 480, &panels[2]));
  }
  const struct {
    const char *name;
    unsigned w, h;
  } want[2] = {{"figure.png", 1000, 700}, {"single.png", 640, 480}};
  for (int i = 0; i < 2; i++) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, want[i].name);
    unsigned w = 0, h = 0;
    double ink = 0;
    CHECK(decode(path, &w, &h, &ink));
    CHECK(w == want[i].w && h == want[i].h);
    printf("%s: %ux%u, %.1f%% non-white\n", want[i].name, w, h, 100 * ink);
    CHECK(ink > 0.01 && ink < 0.8);
  }
  char svg[256], pdf[256];
  snprintf(svg, sizeof svg, "%s/figure.svg", dir);
  snprintf(pdf, sizeof pdf, "%s/figure.pdf", dir);
  CHECK(file_starts_with(svg, "<svg"));
  CHECK(file_starts_with(pdf, "%PDF"));
  /* Empty series and a constant series still make a valid plot. */
  double cst[3] = {2, 2, 2};
  synco_plot_series flat[2] = {{"flat", x, cst, 3, SYNCO_PLOT_LINE}, {"empty", x, y1, 0, SYNCO_PLOT_LINE}};
  synco_plot_panel fp = {"Flat", "x", "y", flat, 2, 0, 0, 1};
  char path[256];
  snprintf(path, sizeof path, "%s/flat.png", dir);
  CHECK_OK(synco_plot_panel_file(path, 300, 200, &fp));
  /* Refused: unknown extension, bad grid, unwritable place. */
  snprintf(path, sizeof path, "%s/figure.gif", dir);
  CHECK(synco_plot_panel_file(path, 300, 200, &fp) == SYNCO_ERR_ARG);
  CHECK(synco_plot_figure(svg, 300, 200, 1, 1, panels, 2) == SYNCO_ERR_ARG);
  CHECK(synco_plot_panel_file("/nonexistent/dir/x.png", 300, 200, &fp) == SYNCO_ERR_IO);
  const char *names[] = {"figure.png", "figure.svg", "figure.pdf", "single.png", "single.svg", "single.pdf", "flat.png"};
  if (!getenv("SYNCO_KEEP_PLOTS"))
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
      snprintf(path, sizeof path, "%s/%s", dir, names[i]);
      unlink(path);
    }
  else
    printf("plots kept in %s\n", dir);
  if (!getenv("SYNCO_KEEP_PLOTS")) rmdir(dir);
  return synco_test_finish("test_plot");
}
