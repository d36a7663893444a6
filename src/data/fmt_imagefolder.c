/* ImageFolder (torchvision.datasets.ImageFolder): root/<class>/.../<file>, classes are the sorted names of
 * root's sub-folders, files are walked as torchvision walks them (folders in sorted path order, files sorted
 * within each) and kept when their extension is an image one; other files are ignored, as torchvision
 * ignores them. A folder with images directly in it (a flat folder of unlabelled images, or any tree with images
 * at its top) is unlabelled: every image of the tree, in the same order, without classes (labels -1); when it
 * also has sub-folders, a warning says that they are not taken as classes. A split is root/<split> when that folder exists ("train" by default). Every file's header is
 * read and judged at open (base/file_read.h refuses a FIFO or a device; decode.c the format and the size).
 * Small images (all at most 64x64, or a decoded set under 2 GB) are decoded once at open by a few threads;
 * larger ones stay as files decoded per sample. Unreadable images fail the open with the file named, or
 * with skip_bad are dropped and counted. */
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "data/internal.h"

#define DECODED_LIMIT_BYTES ((double)2 * 1024 * 1024 * 1024)

typedef struct {
  char **v;
  size_t n, cap;
} strvec;

static int strvec_push(strvec *s, char *str) {
  if (!str) return -1;
  if (s->n == s->cap) {
    const size_t cap = s->cap ? 2 * s->cap : 64;
    char **v = (char **)realloc(s->v, cap * sizeof(char *));
    if (!v) {
      free(str);
      return -1;
    }
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = str;
  return 0;
}

static void strvec_free(strvec *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *a, const char *b) {
  const size_t n = strlen(a) + strlen(b) + 2;
  char *s = (char *)malloc(n);
  if (s) snprintf(s, n, "%s/%s", a, b);
  return s;
}

/* torchvision's IMG_EXTENSIONS; only JPEG and PNG contents decode, others are reported as unsupported. */
static int has_image_ext(const char *name) {
  static const char *const ext[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  const char *dot = strrchr(name, '.');
  if (!dot) return 0;
  char low[8] = {0};
  const size_t n = strlen(dot);
  if (n >= sizeof low) return 0;
  for (size_t i = 0; i < n && i < sizeof low - 1; i++) low[i] = (char)tolower((unsigned char)dot[i]);
  for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
    if (!strcmp(low, ext[i])) return 1;
  return 0;
}

/* The folders already walked, by (st_dev, st_ino): torchvision follows folder symlinks (os.walk(followlinks=True)),
 * so a link back up the tree would be walked again and again. Open addressing, grown at half load. */
typedef struct {
  dev_t *dev;
  ino_t *ino;
  size_t n, cap;
} folder_set;

static size_t folder_hash(dev_t d, ino_t i, size_t cap) {
  uint64_t h = ((uint64_t)d * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)i * 0xC2B2AE3D27D4EB4Full);
  return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* Adds (d, i); returns 1 when added, 0 when already there, -1 out of memory. */
static int folder_set_add(folder_set *s, dev_t d, ino_t i) {
  if (2 * (s->n + 1) > s->cap) {
    folder_set g = {NULL, NULL, 0, s->cap ? 2 * s->cap : 64};
    g.dev = (dev_t *)calloc(g.cap, sizeof(dev_t));
    g.ino = (ino_t *)calloc(g.cap, sizeof(ino_t));
    if (!g.dev || !g.ino) {
      free(g.dev);
      free(g.ino);
      return -1;
    }
    for (size_t k = 0; k < s->cap; k++)
      if (s->ino[k]) {
        size_t h = folder_hash(s->dev[k], s->ino[k], g.cap);
        while (g.ino[h]) h = (h + 1) & (g.cap - 1);
        g.dev[h] = s->dev[k];
        g.ino[h] = s->ino[k];
        g.n++;
      }
    free(s->dev);
    free(s->ino);
    *s = g;
  }
  if (!i) i = (ino_t)-1; /* 0 marks an empty slot */
  size_t h = folder_hash(d, i, s->cap);
  for (; s->ino[h]; h = (h + 1) & (s->cap - 1))
    if (s->ino[h] == i && s->dev[h] == d) return 0;
  s->dev[h] = d;
  s->ino[h] = i;
  s->n++;
  return 1;
}

static void folder_set_free(folder_set *s) {
  free(s->dev);
  free(s->ino);
}

/* Lists entries of dir: sub-folders into dirs and image files into files (both unsorted, full paths). With seen,
 * a sub-folder already walked (a symlink loop, or a second link to one folder) is skipped with a warning. */
static synco_status list_dir_seen(const char *dir, strvec *dirs, strvec *files, folder_set *seen, synco_dataset *ds) {
  DIR *d = opendir(dir);
  if (!d) return synco_fail(SYNCO_ERR_IO, "%s: cannot open folder", dir);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
    char *p = join(dir, e->d_name);
    if (!p) break;
    struct stat st;
    if (stat(p, &st) != 0) {
      free(p);
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      const int added = seen ? folder_set_add(seen, st.st_dev, st.st_ino) : 1;
      if (added < 0) {
        free(p);
        closedir(d);
        return synco_fail(SYNCO_ERR_NOMEM, "out of memory listing %s", dir);
      }
      if (!added) {
        if (ds) synco_ds_warn(ds, "%s: skipped, a link to a folder already walked (a symlink loop?)", p);
        free(p);
        continue;
      }
      if (dirs && strvec_push(dirs, p)) break;
      if (!dirs) free(p);
    } else if (files && has_image_ext(e->d_name)) {
      if (strvec_push(files, p)) break;
    } else {
      free(p);
    }
  }
  closedir(d);
  return SYNCO_OK;
}

static synco_status list_dir(const char *dir, strvec *dirs, strvec *files) {
  return list_dir_seen(dir, dirs, files, NULL, NULL);
}

/* All image files under a class folder in torchvision's order: sorted(os.walk(...)), files sorted. Each folder is
 * walked once, however many links lead to it. */
static synco_status walk_class(const char *cls, strvec *out, synco_dataset *ds) {
  strvec dirs = {0};
  folder_set seen = {0};
  /* The class folder and every folder above it: a link up to one of them is a loop. */
  char *real = realpath(cls, NULL);
  if (!real) return synco_fail(SYNCO_ERR_IO, "%s: cannot open folder", cls);
  int bad = 0;
  for (char *p = real + strlen(real); !bad && p > real; p--) {
    if (*p && *p != '/') continue;
    const char c = *p;
    *p = 0;
    struct stat ast;
    if (stat(real[0] ? real : "/", &ast) == 0) bad = folder_set_add(&seen, ast.st_dev, ast.st_ino) < 0;
    *p = c;
  }
  struct stat rst;
  if (!bad && stat("/", &rst) == 0) bad = folder_set_add(&seen, rst.st_dev, rst.st_ino) < 0;
  free(real);
  if (bad || strvec_push(&dirs, strdup(cls))) {
    folder_set_free(&seen);
    return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < dirs.n; i++) { /* breadth-first collection of every folder; order fixed below */
    synco_status st = list_dir_seen(dirs.v[i], &dirs, NULL, &seen, ds);
    if (st != SYNCO_OK) {
      strvec_free(&dirs);
      folder_set_free(&seen);
      return st;
    }
    if (dirs.n > 100000) break;
  }
  folder_set_free(&seen);
  qsort(dirs.v, dirs.n, sizeof(char *), cmp_str);
  for (size_t i = 0; i < dirs.n; i++) {
    strvec files = {0};
    synco_status st = list_dir(dirs.v[i], NULL, &files);
    if (st != SYNCO_OK) {
      strvec_free(&dirs);
      strvec_free(&files);
      return st;
    }
    if (files.n) qsort(files.v, files.n, sizeof(char *), cmp_str);
    for (size_t f = 0; f < files.n; f++) {
      strvec_push(out, files.v[f]);
      files.v[f] = NULL;
    }
    free(files.v);
  }
  strvec_free(&dirs);
  return SYNCO_OK;
}

/* ---- parallel decoding at open ---- */
/* What a pass over every file does: read its header for its size, decode it to validate it, or decode and keep it. */
typedef enum { PASS_PROBE, PASS_VALIDATE, PASS_DECODE } pass_kind;

typedef struct {
  synco_dataset *ds;
  size_t next;
  pthread_mutex_t mu;
  synco_status *st;   /* [n] */
  char **msg;         /* [n] message of failed images */
  pass_kind kind;
} decode_job;

static void *decode_worker(void *arg) {
  decode_job *job = (decode_job *)arg;
  synco_dataset *ds = job->ds;
  synco_image img = {0};
  for (;;) {
    pthread_mutex_lock(&job->mu);
    const size_t i = job->next++;
    pthread_mutex_unlock(&job->mu);
    if (i >= ds->n) break;
    if (job->kind == PASS_PROBE) { /* the header only: its size into w/h */
      job->st[i] = synco_image_probe_file(ds->paths[i], &ds->w[i], &ds->h[i]);
      if (job->st[i] != SYNCO_OK) job->msg[i] = strdup(synco_last_error());
      continue;
    }
    uint8_t *buf;
    size_t n;
    synco_status st = synco_read_file(ds->paths[i], 0, &buf, &n);
    if (st == SYNCO_OK) {
      st = synco_image_decode(&img, buf, n, ds->paths[i]);
      free(buf);
    }
    job->st[i] = st;
    if (st != SYNCO_OK) {
      job->msg[i] = strdup(synco_last_error());
      continue;
    }
    if (job->kind == PASS_DECODE) {
      const size_t bytes = (size_t)img.w * img.h * 3;
      ds->pix[i] = (uint8_t *)malloc(bytes);
      if (!ds->pix[i]) {
        job->st[i] = SYNCO_ERR_NOMEM;
        job->msg[i] = strdup("out of memory keeping decoded images");
        continue;
      }
      memcpy(ds->pix[i], img.rgb, bytes);
      ds->w[i] = img.w;
      ds->h[i] = img.h;
    }
  }
  synco_image_free(&img);
  return NULL;
}

/* One pass over every file by a few threads; a file that fails is an error (its message), or with skip_bad is
 * dropped and counted. PASS_PROBE fills ds->w/h with the headers' sizes, PASS_DECODE ds->pix with the pixels. */
static synco_status decode_all(synco_dataset *ds, const synco_dataset_options *opt, pass_kind kind) {
  const int keep = kind == PASS_DECODE, sizes = kind != PASS_VALIDATE;
  decode_job job = {ds, 0, PTHREAD_MUTEX_INITIALIZER, NULL, NULL, kind};
  job.st = (synco_status *)calloc(ds->n, sizeof(synco_status));
  job.msg = (char **)calloc(ds->n, sizeof(char *));
  if (keep && !ds->pix) ds->pix = (uint8_t **)calloc(ds->n, sizeof(uint8_t *));
  if (sizes && !ds->w) ds->w = (int *)calloc(ds->n, sizeof(int));
  if (sizes && !ds->h) ds->h = (int *)calloc(ds->n, sizeof(int));
  if (!job.st || !job.msg || (keep && !ds->pix) || (sizes && (!ds->w || !ds->h))) {
    free(job.st);
    free(job.msg);
    return synco_fail(SYNCO_ERR_NOMEM, "out of memory listing %zu images", ds->n);
  }
  int nt = opt->threads > 0 ? opt->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (nt < 1) nt = 1;
  if (nt > 64) nt = 64;
  if ((size_t)nt > ds->n) nt = (int)ds->n;
  pthread_t th[64];
  int started = 0;
  for (int t = 1; t < nt; t++)
    if (pthread_create(&th[t], NULL, decode_worker, &job) == 0) started = t;
    else break;
  decode_worker(&job);
  for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
  synco_status result = SYNCO_OK;
  size_t kept = 0;
  for (size_t i = 0; i < ds->n; i++) {
    if (job.st[i] != SYNCO_OK) {
      if (!opt->skip_bad || job.st[i] == SYNCO_ERR_NOMEM) {
        if (result == SYNCO_OK) result = synco_fail(job.st[i], "%s", job.msg[i] ? job.msg[i] : "decode failed");
      } else {
        ds->skipped++;
      }
      free(ds->paths[i]);
      free(job.msg[i]);
      continue;
    }
    ds->paths[kept] = ds->paths[i];
    ds->labels[kept] = ds->labels[i];
    if (keep) ds->pix[kept] = ds->pix[i];
    if (ds->w) {
      ds->w[kept] = ds->w[i];
      ds->h[kept] = ds->h[i];
    }
    kept++;
  }
  ds->n = kept;
  free(job.st);
  free(job.msg);
  if (result == SYNCO_OK && ds->n == 0)
    result = synco_fail(SYNCO_ERR_FORMAT, "%s: no readable images (%zu skipped)", ds->root, ds->skipped);
  return result;
}

synco_status synco_fmt_imagefolder_open(synco_dataset **out, const char *path, const synco_dataset_options *opt) {
  char *root = NULL;
  const char *split = opt->split ? opt->split : "train";
  char *sub = join(path, split);
  if (sub && synco_path_is_dir(sub)) root = sub;
  else {
    free(sub);
    if (opt->split && strcmp(opt->split, "train")) {
      /* "test" also finds a "val" folder, the ImageNet naming */
      sub = join(path, !strcmp(opt->split, "test") ? "val" : "test");
      if (sub && synco_path_is_dir(sub)) root = sub;
      else {
        free(sub);
        if (!opt->split_if_any) return synco_fail(SYNCO_ERR_IO, "%s: no '%s' split folder", path, opt->split);
        root = strdup(path);
      }
    } else {
      root = strdup(path);
    }
  }
  strvec classes = {0}, files = {0}, top = {0};
  synco_status st = list_dir(root, &classes, &top);
  const int unlabelled = top.n > 0;
  strvec_free(&top);
  if (st != SYNCO_OK) {
    strvec_free(&classes);
    free(root);
    return st;
  }
  if (classes.n == 0 && !unlabelled) {
    synco_fail(SYNCO_ERR_FORMAT, "%s: no images (expected <root>/<image> unlabelled, or <root>/<class>/<image>)", root);
    free(root);
    return SYNCO_ERR_FORMAT;
  }
  if (classes.n) qsort(classes.v, classes.n, sizeof(char *), cmp_str); /* a flat folder has none (v NULL) */
  synco_dataset *ds = synco_ds_new("imagefolder", root);
  int *labels = NULL;
  size_t labels_cap = 0;
  const char **names = (const char **)calloc(classes.n ? classes.n : 1, sizeof(char *));
  if (!ds || !names) st = synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  if (st == SYNCO_OK && unlabelled) { /* the whole tree, no classes */
    if (classes.n)
      synco_ds_warn(ds, "%s: images directly in the folder, so it is read as unlabelled (its %zu sub-folders are not "
                        "taken as classes; put every image in a class folder for labels)", root, classes.n);
    st = walk_class(root, &files, ds);
    labels = (int *)malloc((files.n ? files.n : 1) * sizeof(int));
    if (st == SYNCO_OK && !labels) st = synco_fail(SYNCO_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == SYNCO_OK && i < files.n; i++) labels[i] = -1;
  }
  for (size_t c = 0; st == SYNCO_OK && !unlabelled && c < classes.n; c++) {
    const size_t before = files.n;
    st = walk_class(classes.v[c], &files, ds);
    if (st != SYNCO_OK) break;
    if (files.n == before) {
      st = synco_fail(SYNCO_ERR_FORMAT, "%s: empty class folder (no .jpg/.jpeg/.png files)", classes.v[c]);
      break;
    }
    if (files.n > labels_cap) {
      labels_cap = files.n * 2;
      int *l = (int *)realloc(labels, labels_cap * sizeof(int));
      if (!l) {
        st = synco_fail(SYNCO_ERR_NOMEM, "out of memory");
        break;
      }
      labels = l;
    }
    for (size_t i = before; i < files.n; i++) labels[i] = (int)c;
    names[c] = strrchr(classes.v[c], '/') + 1;
  }
  if (st == SYNCO_OK && !unlabelled) st = synco_ds_set_classes(ds, names, (int)classes.n);
  free(names);
  if (st != SYNCO_OK) {
    strvec_free(&classes);
    strvec_free(&files);
    free(labels);
    free(root);
    synco_dataset_free(ds);
    return st;
  }
  strvec_free(&classes);
  ds->paths = files.v;
  ds->n = files.n;
  ds->labels = labels;
  free(root);

  /* Every file's header, read at open (a few KB each, by several threads: 50,000 CIFAR files take about a
   * second): a file that is not a JPEG or PNG, or whose header claims a size beyond the decoders' limits or more
   * pixels than its bytes can hold, is refused here, with the file named, rather than by some later batch. The
   * sizes also decide the storage, exactly. */
  st = decode_all(ds, opt, PASS_PROBE);
  synco_store_mode mode = opt->store;
  if (st == SYNCO_OK && mode == SYNCO_STORE_AUTO) {
    int maxw = 0, maxh = 0;
    double bytes = 0;
    for (size_t i = 0; i < ds->n; i++) {
      if (ds->w[i] > maxw) maxw = ds->w[i];
      if (ds->h[i] > maxh) maxh = ds->h[i];
      bytes += 3.0 * ds->w[i] * ds->h[i];
    }
    mode = (maxw <= 64 && maxh <= 64) || bytes < DECODED_LIMIT_BYTES ? SYNCO_STORE_DECODED : SYNCO_STORE_ENCODED;
  }
  if (st == SYNCO_OK && mode == SYNCO_STORE_DECODED) {
    ds->kind = SYNCO_DS_DECODED;
    st = decode_all(ds, opt, PASS_DECODE);
  } else if (st == SYNCO_OK) {
    ds->kind = SYNCO_DS_FILES;
    /* full validation only with skip_bad (it decodes every file); the headers were checked above */
    if (opt->skip_bad) st = decode_all(ds, opt, PASS_VALIDATE);
  }
  if (st != SYNCO_OK) {
    synco_dataset_free(ds);
    return st;
  }
  *out = ds;
  return SYNCO_OK;
}
