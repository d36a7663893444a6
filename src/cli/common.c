/* Helpers shared by the subcommands; see common.h. */
#include "cli/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/cpu/precision.h"
#include "base/status.h"

void synco_cli_norm_stats(int image_size, float mean[3], float std[3]) {
  static const float cifar_mean[3] = {0.4914f, 0.4822f, 0.4465f}, cifar_std[3] = {0.2023f, 0.1994f, 0.2010f};
  static const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};
  memcpy(mean, image_size <= 64 ? cifar_mean : in_mean, 3 * sizeof(float));
  memcpy(std, image_size <= 64 ? cifar_std : in_std, 3 * sizeof(float));
}

synco_status synco_cli_mkdirs(const char *path) {
  char buf[1024];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return synco_fail(SYNCO_ERR_ARG, "%s: path too long", path);
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == 0) {
      const char c = *p;
      *p = 0;
      if (mkdir(buf, 0777) != 0 && errno != EEXIST) return synco_fail(SYNCO_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
      *p = c;
      if (!c) break;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return synco_fail(SYNCO_ERR_IO, "%s: not a directory", path);
  return SYNCO_OK;
}

synco_status synco_cli_write_file_atomic(const char *path, const char *text) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return synco_fail(SYNCO_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
  const size_t n = strlen(text);
  int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF && fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    const int e = errno;
    unlink(tmp);
    return synco_fail(SYNCO_ERR_IO, "%s: cannot write: %s", path, strerror(e));
  }
  return SYNCO_OK;
}

int synco_cli_precision(const char *cmd, const char *precision) {
  if (synco_cpu_precision_check(precision, NULL) == SYNCO_OK) return 0;
  fprintf(stderr, "synco %s: %s\n", cmd, synco_last_error());
  return 2;
}

void synco_cli_preprocess_json(char *out, size_t n, int image_size) {
  float mean[3], std[3];
  synco_cli_norm_stats(image_size, mean, std);
  snprintf(out, n,
           "{\"mean\":[%.4f,%.4f,%.4f],\"std\":[%.4f,%.4f,%.4f],\"image_size\":%d,\"resize\":%d,"
           "\"crop\":\"center\",\"interpolation\":\"bilinear\",\"input\":\"RGB in [0,1], NCHW\"}",
           mean[0], mean[1], mean[2], std[0], std[1], std[2], image_size, (int)(image_size / 0.875));
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *synco_cli_bundled_data(const char *sub) {
  static char bufs[2][4200];
  static int next;
  char *out = bufs[next];
  next ^= 1;
  snprintf(out, sizeof bufs[0], "data/cifar10-small/%s", sub);
  if (is_dir(out)) return out;
  /* The program's prefix: <prefix>/bin/synco (installed) or <source>/build/synco (a build tree). */
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return NULL;
  exe[n] = 0;
  for (int k = 0; k < 2; k++) {
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
  }
  snprintf(out, sizeof bufs[0], "%s/share/synco/cifar10-small/%s", exe, sub);
  if (is_dir(out)) return out;
  snprintf(out, sizeof bufs[0], "%s/data/cifar10-small/%s", exe, sub);
  if (is_dir(out)) return out;
  return NULL;
}
