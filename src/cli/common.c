/* Helpers shared by the subcommands; see common.h. */
#include "cli/common.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "backend/registry.h"
#ifdef SYNCO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "base/files.h"
#include "base/status.h"
#include "dist/dist.h"

const char *synco_cli_s(long n) { return n == 1 ? "" : "s"; }
const char *synco_cli_es(long n) { return n == 1 ? "" : "es"; }

const char *synco_cli_topk(char *buf, size_t cap, double top1, double top5, int classes) {
  if (classes > 5) snprintf(buf, cap, "top-1 %.2f%%  top-5 %.2f%%", top1, top5);
  else snprintf(buf, cap, "top-1 %.2f%%  (%d class%s: no top-5)", top1, classes, synco_cli_es(classes));
  return buf;
}

const char *synco_cli_ckpt_path(const char *flag, const char *given, char *buf, size_t cap) {
  struct stat st;
  if (!given || stat(given, &st) != 0 || !S_ISDIR(st.st_mode)) return given;
  const size_t n = strlen(given);
  if (snprintf(buf, cap, "%s%slast.safetensors", given, n && given[n - 1] == '/' ? "" : "/") >= (int)cap) {
    synco_fail(SYNCO_ERR_ARG, "%s %s: path too long", flag, given);
    return NULL;
  }
  if (stat(buf, &st) != 0) {
    /* a run replaced with --force that stopped before its first checkpoint: the earlier run waits beside it */
    char aside[4200];
    snprintf(aside, sizeof aside, "%s%s.replaced-run/last.safetensors", given, n && given[n - 1] == '/' ? "" : "/");
    if (stat(aside, &st) == 0)
      synco_fail(SYNCO_ERR_IO, "%s %s: the folder holds no last.safetensors: a run that replaced it (--force) stopped "
                               "before its first checkpoint; the earlier run's is %s (the next synco pretrain there puts "
                               "it back)", flag, given, aside);
    else
      synco_fail(SYNCO_ERR_IO, "%s %s: the folder holds no last.safetensors (give a run directory with a checkpoint, "
                               "or a .safetensors file)", flag, given);
    return NULL;
  }
  return buf;
}

void synco_cli_norm_stats(int image_size, float mean[3], float std[3]) {
  static const float cifar_mean[3] = {0.4914f, 0.4822f, 0.4465f}, cifar_std[3] = {0.2023f, 0.1994f, 0.2010f};
  static const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};
  memcpy(mean, image_size <= 64 ? cifar_mean : in_mean, 3 * sizeof(float));
  memcpy(std, image_size <= 64 ? cifar_std : in_std, 3 * sizeof(float));
}

synco_status synco_cli_mkdirs(const char *path) { return synco_cli_mkdirs_noting(path, NULL); }

synco_status synco_cli_mkdirs_noting(const char *path, synco_cli_made_dirs *made) {
  char buf[1024];
  if (made) memset(made, 0, sizeof *made);
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return synco_fail(SYNCO_ERR_ARG, "%s: path too long", path);
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == 0) {
      const char c = *p;
      *p = 0;
      if (mkdir(buf, 0777) == 0) {
        if (made) made->at[p - buf] = 1;
      } else if (errno != EEXIST) {
        return synco_fail(SYNCO_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
      }
      *p = c;
      if (!c) break;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return synco_fail(SYNCO_ERR_IO, "%s: not a directory", path);
  return SYNCO_OK;
}

void synco_cli_unmake_dirs(const char *path, const synco_cli_made_dirs *made) {
  char buf[1024];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return;
  for (size_t i = strlen(buf); i > 0; i--) {
    if (!made->at[i]) continue;
    buf[i] = 0;
    if (rmdir(buf) != 0) return;
  }
}

synco_status synco_cli_write_file_atomic(const char *path, const char *text) {
  char tmp[1100];
  FILE *f = synco_file_begin(path, tmp, sizeof tmp); /* never through a link (base/files.h) */
  if (!f) return SYNCO_ERR_IO;
  const size_t n = strlen(text);
  return synco_file_commit(f, tmp, path, fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF);
}

int synco_cli_precision(const char *cmd, const char *backend, const char *precision) {
  if (synco_backend_precision(backend, precision) == SYNCO_OK) return 0;
  fprintf(stderr, "synco %s: %s\n", cmd, synco_last_error());
  return 2;
}

synco_status synco_cli_backend(const char *name, const char *precision, synco_backend **out) {
  char rank_name[32]; /* under an MPI launcher, --device cuda is this rank's GPU of its node */
  if (name && !strcmp(name, "cuda"))
    name = synco_backend_rank_name(name, synco_dist_local_rank(), synco_backend_gpu_count(), rank_name,
                                   sizeof rank_name);
  SYNCO_TRY(synco_backend_create(name, out));
  const synco_status s = synco_backend_set_precision(*out, precision);
  if (s) {
    synco_backend_destroy(*out);
    *out = NULL;
  }
  return s;
}

synco_status synco_cli_gpu_transport(synco_dist **dist, synco_backend *be, char *note, size_t n) {
  note[0] = 0;
  synco_dist *d = *dist;
  if (!d || d->world <= 1 || !be || strcmp(be->name, "cuda") || strcmp(d->name, "mpi")) return SYNCO_OK;
#if defined(SYNCO_HAVE_NCCL) && defined(SYNCO_HAVE_CUDA)
  /* this rank's (host, GPU) as one int: a hash of the host name and the device; equal keys share a GPU */
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  uint32_t h = 2166136261u;
  for (const char *p = host; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  const int dev = synco_cuda_backend_device(be);
  const int key = (int)(((h & 0xFFFFFFu) << 6) | (uint32_t)(dev & 63));
  int *all = malloc((size_t)d->world * sizeof *all);
  if (!all) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  synco_status s = synco_dist_gather_int(d, key, all);
  int shared = 0;
  for (int i = 0; s == SYNCO_OK && i < d->world && !shared; i++)
    for (int j = i + 1; j < d->world && !shared; j++) shared = all[i] == all[j];
  free(all);
  const char *env = getenv("SYNCO_NCCL");
  int off[1] = {env && !strcmp(env, "0")};
  if (s == SYNCO_OK) s = synco_dist_max_ints(d, off, 1);
  if (s != SYNCO_OK) return s;
  if (shared || off[0]) {
    snprintf(note, n, "collectives: MPI through host copies (%s)",
             shared ? "two ranks share a GPU, which NCCL refuses" : "SYNCO_NCCL=0 on a rank");
    return SYNCO_OK;
  }
  synco_dist *nc = NULL;
  if (synco_dist_nccl_create(&nc, d, dev, synco_cuda_backend_stream(be)) != SYNCO_OK) {
    snprintf(note, n, "collectives: MPI through host copies (NCCL did not start: %s)", synco_last_error());
    return SYNCO_OK;
  }
  *dist = nc;
  const int v = synco_dist_nccl_version();
  snprintf(note, n, "collectives: NCCL %d.%d.%d on each rank's GPU", v / 10000, v / 100 % 100, v % 100);
#else
  snprintf(note, n, "collectives: MPI through host copies (this build has no NCCL)");
#endif
  return SYNCO_OK;
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

static int program_prefix(char *out, size_t cap) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 0;
  exe[n] = 0;
  for (int k = 0; k < 2; k++) {
    char *slash = strrchr(exe, '/');
    if (!slash) return 0;
    *slash = 0;
  }
  return snprintf(out, cap, "%s", exe) < (int)cap;
}

int synco_cli_shipped(const char *in_tree, const char *installed, int dir, char *out, size_t cap) {
  char prefix[4096]; /* the program's: <prefix>/bin/synco (installed) or <source>/build/synco (a build tree) */
  const int has_prefix = program_prefix(prefix, sizeof prefix);
  for (int k = 0; k < 3; k++) {
    if (k && !has_prefix) break;
    const int n = k == 0   ? snprintf(out, cap, "%s", in_tree)
                  : k == 1 ? snprintf(out, cap, "%s/share/synco/%s", prefix, installed)
                           : snprintf(out, cap, "%s/%s", prefix, in_tree);
    if (n < 0 || (size_t)n >= cap) continue;
    if (dir ? is_dir(out) : access(out, R_OK) == 0) return 1;
  }
  return 0;
}

const char *synco_cli_bundled_data(const char *sub) {
  static char bufs[2][4200];
  static int next;
  char *out = bufs[next], in_tree[256], installed[256];
  next ^= 1;
  snprintf(in_tree, sizeof in_tree, "data/cifar10-small/%s", sub);
  snprintf(installed, sizeof installed, "cifar10-small/%s", sub);
  return synco_cli_shipped(in_tree, installed, 1, out, sizeof bufs[0]) ? out : NULL;
}

/* ---- run directories ---- */

synco_status synco_cli_mkdir_unique(char *path, size_t cap) {
  char parent[1024];
  if (snprintf(parent, sizeof parent, "%s", path) >= (int)sizeof parent) return synco_fail(SYNCO_ERR_ARG, "%s: path too long", path);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = 0;
    SYNCO_TRY(synco_cli_mkdirs(parent));
  }
  const size_t n = strlen(path);
  for (int k = 1; k < 1000; k++) {
    if (k > 1 && snprintf(path + n, cap - n, "-%d", k) >= (int)(cap - n)) break;
    if (mkdir(path, 0777) == 0) return SYNCO_OK;
    if (errno != EEXIST) return synco_fail(SYNCO_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
  }
  path[n] = 0;
  return synco_fail(SYNCO_ERR_IO, "%s: cannot create a new run directory (999 with this name exist)", path);
}

/* checkpoint_NNNN.safetensors */
static int is_numbered_checkpoint(const char *name) {
  const size_t n = strlen(name);
  if (strncmp(name, "checkpoint_", 11) || n < 11 + 1 + 12 || strcmp(name + n - 12, ".safetensors")) return 0;
  for (size_t i = 11; i < n - 12; i++)
    if (name[i] < '0' || name[i] > '9') return 0;
  return 1;
}

static int is_run_file(const char *name) {
  return !strcmp(name, "config.json") || !strcmp(name, "log.jsonl") || !strcmp(name, "last.safetensors") ||
         is_numbered_checkpoint(name) || !strncmp(name, "events.out.tfevents.", 20); /* TensorBoard's */
}

/* A temporary file a run writes and renames (a checkpoint, config.json or a rewritten log.jsonl). */
static int is_run_tmp(const char *name) {
  const size_t n = strlen(name);
  if (n < 5 || strcmp(name + n - 4, ".tmp")) return 0;
  char base[256];
  if (n - 4 >= sizeof base) return 0;
  memcpy(base, name, n - 4);
  base[n - 4] = 0;
  return is_run_file(base);
}

int synco_cli_run_dir_holds_run(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int found = 0;
  struct dirent *e;
  while (!found && (e = readdir(d))) found = is_run_file(e->d_name);
  closedir(d);
  return found;
}

int synco_cli_newest_numbered_checkpoint(const char *dir, char *name, size_t cap) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  long best = -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!is_numbered_checkpoint(e->d_name)) continue;
    const long num = strtol(e->d_name + 11, NULL, 10);
    if (num > best) {
      best = num;
      snprintf(name, cap, "%s", e->d_name);
    }
  }
  closedir(d);
  return best >= 0;
}

int synco_cli_run_dir_clean(const char *dir, int run_files) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int removed = 0;
  struct dirent *e;
  char path[1400];
  while ((e = readdir(d))) {
    if (!is_run_tmp(e->d_name) && !(run_files && is_run_file(e->d_name))) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    /* a file or a link (unlinking a link leaves what it points at); never a folder */
    if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode) && unlink(path) == 0) removed++;
  }
  closedir(d);
  return removed;
}

/* ---- --force: the earlier run set aside until the new run's first checkpoint ---- */

#define ASIDE ".replaced-run"

static int join(char *out, size_t cap, const char *dir, const char *name) {
  const int n = snprintf(out, cap, "%s/%s", dir, name);
  return n >= 0 && (size_t)n < cap;
}

static int move_back(const char *dir, int clean_new);

int synco_cli_run_dir_set_aside(const char *dir) {
  char aside[1400], from[1400], to[1700];
  if (!join(aside, sizeof aside, dir, ASIDE)) return synco_fail(SYNCO_ERR_ARG, "%s: path too long", dir), -1;
  if (mkdir(aside, 0777) != 0) return synco_fail(SYNCO_ERR_IO, "%s: cannot create: %s", aside, strerror(errno)), -1;
  DIR *d = opendir(dir);
  if (!d) return synco_fail(SYNCO_ERR_IO, "%s: cannot read: %s", dir, strerror(errno)), -1;
  int moved = 0, failed = 0;
  struct dirent *e;
  while (!failed && (e = readdir(d))) {
    struct stat st;
    if (!is_run_file(e->d_name) || !join(from, sizeof from, dir, e->d_name) || lstat(from, &st) != 0 ||
        S_ISDIR(st.st_mode))
      continue;
    join(to, sizeof to, aside, e->d_name);
    if (rename(from, to) == 0) moved++;
    else failed = errno;
  }
  closedir(d);
  if (!failed) return moved;
  move_back(dir, 0); /* the files already moved go back */
  return synco_fail(SYNCO_ERR_IO, "%s: cannot set the earlier run aside: %s", dir, strerror(failed)), -1;
}

int synco_cli_run_dir_drop_aside(const char *dir) {
  char aside[1400], path[1700];
  if (!join(aside, sizeof aside, dir, ASIDE)) return 0;
  DIR *d = opendir(aside);
  if (!d) return 0;
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    struct stat st;
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && join(path, sizeof path, aside, e->d_name) &&
        lstat(path, &st) == 0 && !S_ISDIR(st.st_mode) && unlink(path) == 0)
      removed++;
  }
  closedir(d);
  rmdir(aside);
  return removed;
}

/* Moves the files of DIR/.replaced-run back into DIR, removing DIR's run files first with clean_new. */
static int move_back(const char *dir, int clean_new) {
  char aside[1400], from[1700], to[1400];
  if (!join(aside, sizeof aside, dir, ASIDE)) return synco_fail(SYNCO_ERR_ARG, "%s: path too long", dir), -1;
  DIR *d = opendir(aside);
  if (!d) return synco_fail(SYNCO_ERR_IO, "%s: cannot read: %s", aside, strerror(errno)), -1;
  if (clean_new) synco_cli_run_dir_clean(dir, 1); /* the new run's files go: the earlier run's take their names */
  int moved = 0, failed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!is_run_file(e->d_name) || !join(from, sizeof from, aside, e->d_name) || !join(to, sizeof to, dir, e->d_name))
      continue;
    if (rename(from, to) == 0) moved++;
    else failed = errno;
  }
  closedir(d);
  if (failed) return synco_fail(SYNCO_ERR_IO, "%s: cannot put the earlier run back from %s: %s", dir, aside, strerror(failed)), -1;
  rmdir(aside);
  return moved;
}

int synco_cli_run_dir_put_back(const char *dir) { return move_back(dir, 1); }

int synco_cli_run_dir_recover(const char *cmd, const char *dir, int locked) {
  char aside[1400], last[1400];
  struct stat st;
  if (!join(aside, sizeof aside, dir, ASIDE) || lstat(aside, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
  int fd = -1;
  if (!locked && synco_cli_run_dir_lock(dir, &fd) != SYNCO_OK) return 0; /* in use: that run owns it */
  join(last, sizeof last, dir, "last.safetensors");
  int n, rc = 0;
  if (lstat(last, &st) == 0 && S_ISREG(st.st_mode)) { /* the new run saved its first checkpoint */
    n = synco_cli_run_dir_drop_aside(dir);
    fprintf(stderr, "synco %s: %s: removed the earlier run (%d files) that an interrupted --force run replaced\n", cmd,
            dir, n);
  } else if ((n = synco_cli_run_dir_put_back(dir)) >= 0) {
    fprintf(stderr, "synco %s: %s: put back the earlier run (%d files) that an interrupted --force run had set "
                    "aside\n", cmd, dir, n);
  } else {
    rc = -1;
  }
  if (fd >= 0) synco_cli_run_dir_unlock(fd);
  return rc;
}

/* The pid holding a flock on the file with inode ino, from /proc/locks (0 when not found). */
static long lock_holder(dev_t dev, ino_t ino) {
  FILE *f = fopen("/proc/locks", "r");
  if (!f) return 0;
  char line[256];
  long pid = 0;
  while (!pid && fgets(line, sizeof line, f)) {
    /* "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (major:minor in hex) */
    char kind[16];
    long p;
    unsigned maj, min;
    unsigned long long in;
    if (sscanf(line, "%*s %15s %*s %*s %ld %x:%x:%llu", kind, &p, &maj, &min, &in) == 5 && !strcmp(kind, "FLOCK") &&
        in == (unsigned long long)ino && maj == major(dev) && min == minor(dev))
      pid = p;
  }
  fclose(f);
  return pid;
}

/* "DIR is in use by another synco run", with the holder's pid when known (pid > 0). */
static synco_status in_use(const char *dir, long pid) {
  if (pid > 0) return synco_fail(SYNCO_ERR_ARG, "%s is in use by another synco run (pid %ld)", dir, pid);
  return synco_fail(SYNCO_ERR_ARG, "%s is in use by another synco run", dir);
}

synco_status synco_cli_run_dir_lock(const char *dir, int *fd_out) {
  *fd_out = -1;
  char path[1100];
  snprintf(path, sizeof path, "%s/.lock", dir);
  /* Never through a link, and a regular file. One with other names (a run directory copied with cp -al) is
   * another run's lock too: this directory gets a lock file of its own. */
  int fd = -1;
  struct stat lst;
  for (int attempt = 0; attempt < 2; attempt++) {
    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0)
      return synco_fail(SYNCO_ERR_IO, "%s: cannot create the lock file: %s", path,
                        errno == ELOOP ? "it is a symbolic link (synco writes no file through a link)" : strerror(errno));
    if (fstat(fd, &lst) != 0 || !S_ISREG(lst.st_mode)) {
      close(fd);
      return synco_fail(SYNCO_ERR_IO, "%s: cannot use it as the lock file: not a regular file", path);
    }
    if (lst.st_nlink == 1 || attempt == 1) break;
    close(fd);
    unlink(path);
  }
  const int own = lst.st_nlink == 1; /* the pid goes into no file that other names share */
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    long pid = 0;
    struct stat st;
    if (e == EWOULDBLOCK && fstat(fd, &st) == 0) pid = lock_holder(st.st_dev, st.st_ino);
    if (e == EWOULDBLOCK && !pid) { /* the pid the holder wrote, if /proc/locks is not there */
      char buf[32] = {0};
      if (pread(fd, buf, sizeof buf - 1, 0) > 0) pid = atol(buf);
    }
    close(fd);
    if (e != EWOULDBLOCK) return synco_fail(SYNCO_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
    return in_use(dir, pid);
  }
  char buf[32];
  const int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (own && (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)) { /* the pid is only informative */ }
  *fd_out = fd;
  return SYNCO_OK;
}

void synco_cli_run_dir_unlock(int fd) {
  if (fd >= 0) close(fd); /* the file stays: removing it would race with a run that just opened it */
}

synco_status synco_cli_run_dir_check_free(const char *dir) {
  /* the lock file is only opened, never made: a folder without one has no run going, and stays as it is */
  char path[4200];
  snprintf(path, sizeof path, "%s/.lock", dir);
  const int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return SYNCO_OK;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || flock(fd, LOCK_SH | LOCK_NB) == 0) {
    close(fd); /* a shared lock taken and dropped: nobody holds the run's exclusive one */
    return SYNCO_OK;
  }
  const long pid = errno == EWOULDBLOCK ? lock_holder(st.st_dev, st.st_ino) : 0;
  close(fd);
  return in_use(dir, pid);
}

/* Does one log.jsonl row belong to a run stopped at (step, epoch)? Rows of kind "epoch" and "knn" are placed by
 * their epoch, every other row by its "step" (rows without one, like the kNN row before training in logs of
 * earlier versions, count as step 0); -1 when the line is not a JSON object (a row torn by a kill). */
static int log_row_kept(const char *line, long step, int epoch) {
  cJSON *j = cJSON_Parse(line);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return -1;
  }
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(j, "kind"), *s = cJSON_GetObjectItemCaseSensitive(j, "step"),
              *e = cJSON_GetObjectItemCaseSensitive(j, "epoch");
  const int by_epoch = cJSON_IsString(kind) && (!strcmp(kind->valuestring, "epoch") || !strcmp(kind->valuestring, "knn"));
  const int kept = by_epoch ? !cJSON_IsNumber(e) || e->valuedouble <= epoch : !cJSON_IsNumber(s) || s->valuedouble <= step;
  cJSON_Delete(j);
  return kept;
}

synco_status synco_cli_log_truncate(const char *path, long step, int epoch, int *dropped) {
  *dropped = 0;
  /* the run's own log: a regular file, not a link (it is appended to afterwards) nor a FIFO (it would hang) */
  const int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return SYNCO_OK;
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int e = errno;
    if (fd >= 0) close(fd);
    return synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path,
                      fd < 0 && e == ELOOP ? "it is a symbolic link (synco writes no file through a link)"
                      : fd >= 0          ? "not a regular file"
                                         : strerror(e));
  }
  const int shared = st.st_nlink > 1; /* a copy made with cp -al: rewritten, so that the appends are its own */
  FILE *in = fdopen(fd, "r");
  if (!in) {
    close(fd);
    return synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  }
  char tmp[1100];
  FILE *out = synco_file_begin(path, tmp, sizeof tmp);
  if (!out) {
    fclose(in);
    return SYNCO_ERR_IO;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int ok = 1;
  while ((len = getline(&line, &cap, in)) > 0) {
    if (log_row_kept(line, step, epoch) != 1) {
      (*dropped)++;
      continue;
    }
    ok = ok && fwrite(line, 1, (size_t)len, out) == (size_t)len && (line[len - 1] == '\n' || fputc('\n', out) != EOF);
  }
  free(line);
  const int read_ok = !ferror(in);
  fclose(in);
  if (!*dropped && !shared && ok && read_ok) { /* nothing to drop: the log stays as it was */
    fclose(out);
    unlink(tmp);
    return SYNCO_OK;
  }
  if (!read_ok) {
    fclose(out);
    unlink(tmp);
    return synco_fail(SYNCO_ERR_IO, "%s: cannot read: %s", path, strerror(EIO));
  }
  return synco_file_commit(out, tmp, path, ok);
  return SYNCO_OK;
}

int synco_cli_same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* path's real name when it may not be there yet, nor its folders: its names taken one by one from the root or the
 * working folder, each joined to the real name so far and resolved by realpath() where it exists (links followed);
 * "." skipped and ".." the folder above (folders not there yet are made as plain folders: no link to follow), so
 * new/../data/run is data/run. "" when the working folder has no name. */
static void canonical_deep(const char *path, char *out, size_t cap) {
  char cur[PATH_MAX], next[PATH_MAX + 256], real[PATH_MAX];
  out[0] = 0;
  if (path[0] == '/') snprintf(cur, sizeof cur, "/");
  else if (!realpath(".", cur)) return;
  for (const char *s = path; *s;) {
    while (*s == '/') s++;
    const size_t len = strcspn(s, "/");
    if (!len) break;
    if (len == 2 && s[0] == '.' && s[1] == '.') {
      char *slash = strrchr(cur, '/');
      if (slash == cur) cur[1] = 0;
      else if (slash) *slash = 0;
    } else if (!(len == 1 && s[0] == '.')) {
      if (snprintf(next, sizeof next, "%s%s%.*s", cur, strcmp(cur, "/") ? "/" : "", (int)len, s) >= (int)sizeof cur)
        return;
      memcpy(cur, next, strlen(next) + 1); /* fits: checked above */
      if (realpath(cur, real)) memcpy(cur, real, strlen(real) + 1);
    }
    s += len;
  }
  snprintf(out, cap, "%s", cur);
}

/* Is path (an output) inside the existing folder dir? Their real names, the nearest existing folder's for path. */
static int inside_folder(const char *path, const char *dir) {
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
  char cp[PATH_MAX + 256], cd[PATH_MAX];
  if (!realpath(dir, cd)) return 0;
  canonical_deep(path, cp, sizeof cp);
  const size_t n = strlen(cd);
  return cp[0] && !strncmp(cp, cd, n) && (cp[n] == '/' || !strcmp(cd, "/")) && cp[n + (cp[n] == '/')];
}

/* A run's own file: a name pretrain writes (is_run_file), in a folder with a run's config.json or log.jsonl. */
static int run_own_file(const char *path) {
  const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
  if (!is_run_file(name)) return 0;
  char dir[PATH_MAX], f[PATH_MAX + 32];
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1, slash ? path : ".");
  struct stat st;
  snprintf(f, sizeof f, "%s/config.json", dir);
  if (stat(f, &st) == 0) return 1;
  snprintf(f, sizeof f, "%s/log.jsonl", dir);
  return stat(f, &st) == 0;
}

/* Do two paths name one file: the same inode when both exist, else the same real name (canonical_deep). */
static int one_file(const char *a, const char *b) {
  struct stat sa, sb;
  const int ha = stat(a, &sa) == 0, hb = stat(b, &sb) == 0;
  if (ha && hb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  /* else by name: stat() cannot follow new/../data while new is not there, but the command makes new first */
  char ca[PATH_MAX + 256], cb[PATH_MAX + 256];
  canonical_deep(a, ca, sizeof ca);
  canonical_deep(b, cb, sizeof cb);
  return ca[0] && !strcmp(ca, cb);
}

static int is_input(synco_cli_file_kind k) { return k == SYNCO_CLI_IN || k == SYNCO_CLI_IN_DATA; }

int synco_cli_check_files(const char *cmd, const synco_cli_file *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!f[i].path || is_input(f[i].kind)) continue;
    const char *what = f[i].kind == SYNCO_CLI_OUT_DIR ? "folder" : "file";
    const size_t len = strlen(f[i].path);
    if (!len) {
      fprintf(stderr, "synco %s: %s: an empty path; give a %s name\n", cmd, f[i].flag, what);
      return 2;
    }
    if (len > SYNCO_CLI_PATH_MAX && f[i].kind != SYNCO_CLI_OUT_BESIDE) {
      fprintf(stderr, "synco %s: %s %.60s...: path too long (%zu characters; synco writes paths of at most %d)\n",
              cmd, f[i].flag, f[i].path, len, SYNCO_CLI_PATH_MAX);
      return 2;
    }
    for (size_t j = 0; j < n; j++) {
      if (j == i || !f[j].path || (!is_input(f[j].kind) && j > i) || !one_file(f[i].path, f[j].path)) continue;
      struct stat st;
      const int folder = f[j].kind == SYNCO_CLI_OUT_DIR || (stat(f[j].path, &st) == 0 && S_ISDIR(st.st_mode));
      fprintf(stderr, "synco %s: %s %s is the %s %s itself; give another output %s\n", cmd, f[i].flag, f[i].path,
              f[j].flag, folder ? "folder" : "file", what);
      return 2;
    }
    for (size_t j = 0; j < n; j++) {
      if (j == i || !f[j].path || f[j].kind != SYNCO_CLI_IN_DATA || !inside_folder(f[i].path, f[j].path)) continue;
      fprintf(stderr, "synco %s: %s %s is inside the %s folder %s, whose files are read as its images; give an output "
              "outside it\n", cmd, f[i].flag, f[i].path, f[j].flag, f[j].path);
      return 2;
    }
    if (f[i].kind != SYNCO_CLI_OUT_DIR && run_own_file(f[i].path)) {
      fprintf(stderr, "synco %s: %s %s is a file of the run in its folder (its checkpoints, log and settings are the "
              "run's own); give another output file\n", cmd, f[i].flag, f[i].path);
      return 2;
    }
  }
  return 0;
}

const char *synco_cli_command = NULL;

void synco_cli_dataset_notes(const char *cmd, const synco_dataset *ds) {
  if (!cmd) cmd = synco_cli_command;
  const char *sp = cmd ? " " : "";
  cmd = cmd ? cmd : "";
  if (synco_dataset_skipped(ds))
    fprintf(stderr, "synco%s%s: skipped %zu unreadable images\n", sp, cmd, synco_dataset_skipped(ds));
  const char *w = synco_dataset_warnings(ds);
  if (!w) return;
  for (const char *p = w; *p;) {
    const size_t n = strcspn(p, "\n");
    fprintf(stderr, "synco%s%s: warning: %.*s\n", sp, cmd, (int)n, p);
    p += n + (p[n] == '\n');
  }
}

int synco_cli_set_threads(const char *cmd, int threads, const char *from) {
  if (threads > 0) omp_set_num_threads(threads);
  const int n = omp_get_max_threads(), cores = synco_cores_available();
  if (n > cores)
    fprintf(stderr, "synco %s: warning: %d threads%s%s%s on %d core%s: each waits for the others' turns on the cores, often many times "
                    "slower than --threads %d%s\n", cmd, n, from ? " (" : "", from ? from : "", from ? " --threads)" : "",
            cores, cores == 1 ? "" : "s", cores, from ? ", which a flag overrides (the sums then round otherwise)" : "");
  return n;
}

synco_status synco_cli_adapt_threads(synco_thread_governor *g, synco_moco *m, double step_s, const char **note) {
  *note = NULL;
  if (g->full < 2) return SYNCO_OK; /* off (or one thread): the count stays the user's */
  const int n = synco_governor_step(g, step_s);
  if (g->noted) {
    g->noted = 0;
    *note = g->note;
  }
  if (n == omp_get_max_threads()) return SYNCO_OK;
  omp_set_num_threads(n);
  return synco_moco_replan(m);
}
