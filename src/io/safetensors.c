/* safetensors reader and atomic writer; see safetensors.h for the format and the checks made. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_read.h"
#include "base/files.h"
#include "base/status.h"

static const struct {
  const char *name;
  synco_st_dtype dtype;
  size_t size;
} DTYPES[] = {
    {"F32", SYNCO_ST_F32, 4}, {"F64", SYNCO_ST_F64, 8}, {"F16", SYNCO_ST_F16, 2}, {"BF16", SYNCO_ST_BF16, 2},
    {"I64", SYNCO_ST_I64, 8}, {"I32", SYNCO_ST_I32, 4}, {"U32", SYNCO_ST_U32, 4}, {"U8", SYNCO_ST_U8, 1},
    {"I8", SYNCO_ST_I8, 1},   {"BOOL", SYNCO_ST_BOOL, 1},
};
#define NDTYPES (sizeof DTYPES / sizeof *DTYPES)

static size_t dtype_size(synco_st_dtype d) {
  for (size_t i = 0; i < NDTYPES; i++)
    if (DTYPES[i].dtype == d) return DTYPES[i].size;
  return 0;
}

static const char *dtype_name(synco_st_dtype d) {
  for (size_t i = 0; i < NDTYPES; i++)
    if (DTYPES[i].dtype == d) return DTYPES[i].name;
  return "?";
}

size_t synco_st_numel(const synco_st_entry *e) {
  size_t n = 1;
  for (int i = 0; i < e->ndim; i++) n *= (size_t)e->shape[i];
  return n;
}

void synco_st_close(synco_safetensors *st) {
  if (!st) return;
  for (int i = 0; i < st->count; i++) free(st->entries[i].name);
  for (int i = 0; i < st->meta_count; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->entries);
  free(st->by_name);
  free(st->meta_keys);
  free(st->meta_values);
  free(st->buf);
  free(st->path);
  memset(st, 0, sizeof *st);
}

static int cmp_begin(const void *a, const void *b) {
  const synco_st_entry *x = *(synco_st_entry *const *)a, *y = *(synco_st_entry *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(synco_st_entry *const *)a)->name, (*(synco_st_entry *const *)b)->name);
}

/* The largest header accepted: far above any real one (a ResNet-50 checkpoint's is about 60 KB). */
#define HEADER_MAX ((uint64_t)100 * 1024 * 1024)

/* Validates the header of st->buf (the file is st->size bytes; the first `have` of them are in buf, at least the
 * header's when its length is valid) and fills the table. The caller owns buf already. */
static synco_status parse_owned(synco_safetensors *st, size_t have) {
  const char *p = st->path;
  if (st->size < 8) return synco_fail(SYNCO_ERR_FORMAT, "%s: not a safetensors file (%zu bytes, need at least 8)", p, st->size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->buf[i];
  if (hlen > HEADER_MAX) /* text or another format: its first bytes read as a length beyond any header */
    return synco_fail(SYNCO_ERR_FORMAT, "%s: not a safetensors file (its first 8 bytes are no header length: %llu)", p,
                      (unsigned long long)hlen);
  if (hlen > st->size - 8)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes): cut short?", p,
                      (unsigned long long)hlen, st->size);
  if (have < 8 + hlen) return synco_fail(SYNCO_ERR_IO, "%s: the header was not read", p); /* a caller's slip */
  const char *json_end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts((const char *)st->buf + 8, (size_t)hlen, &json_end, 0);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return synco_fail(SYNCO_ERR_FORMAT, "%s: header is not a JSON object", p);
  }
  /* Writers pad the header with spaces to align the data; anything else after the object is damage. */
  for (const char *c = json_end; c < (const char *)st->buf + 8 + hlen; c++)
    if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r' && *c != 0) {
      cJSON_Delete(root);
      return synco_fail(SYNCO_ERR_FORMAT, "%s: header has stray bytes after its JSON object (at byte %zu)", p,
                        (size_t)(c - (const char *)st->buf));
    }
  st->data = st->buf + 8 + hlen;
  st->data_size = st->size - 8 - (size_t)hlen;
  int n = cJSON_GetArraySize(root);
  st->entries = calloc((size_t)n + 1, sizeof *st->entries);
  st->meta_keys = calloc((size_t)n + 1, sizeof(char *));
  st->meta_values = calloc((size_t)n + 1, sizeof(char *));
  if (!st->entries || !st->meta_keys || !st->meta_values) {
    cJSON_Delete(root);
    return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory reading the header", p);
  }
  synco_status s = SYNCO_OK;
  for (cJSON *it = root->child; it && s == SYNCO_OK; it = it->next) {
    if (!it->string) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: header entry without a name", p);
      break;
    }
    if (!strcmp(it->string, "__metadata__")) {
      if (!cJSON_IsObject(it)) {
        s = synco_fail(SYNCO_ERR_FORMAT, "%s: __metadata__ is not an object", p);
        break;
      }
      if (st->meta_count) {
        s = synco_fail(SYNCO_ERR_FORMAT, "%s: __metadata__ appears twice", p);
        break;
      }
      int mn = cJSON_GetArraySize(it);
      char **k = realloc(st->meta_keys, ((size_t)mn + 1) * sizeof(char *));
      if (k) st->meta_keys = k;
      char **v = realloc(st->meta_values, ((size_t)mn + 1) * sizeof(char *));
      if (v) st->meta_values = v;
      if (!k || !v) {
        s = synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", p);
        break;
      }
      for (cJSON *m = it->child; m; m = m->next) {
        if (!cJSON_IsString(m) || !m->string) {
          s = synco_fail(SYNCO_ERR_FORMAT, "%s: metadata value of '%s' is not a string", p, m->string ? m->string : "?");
          break;
        }
        st->meta_keys[st->meta_count] = strdup(m->string);
        st->meta_values[st->meta_count] = strdup(m->valuestring);
        st->meta_count++;
        if (!st->meta_keys[st->meta_count - 1] || !st->meta_values[st->meta_count - 1]) {
          s = synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", p);
          break;
        }
      }
      continue;
    }
    synco_st_entry *e = &st->entries[st->count];
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
    cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' lacks dtype, shape or data_offsets", p, it->string);
      break;
    }
    size_t dsize = 0;
    for (size_t i = 0; i < NDTYPES; i++)
      if (!strcmp(dt->valuestring, DTYPES[i].name)) {
        e->dtype = DTYPES[i].dtype;
        dsize = DTYPES[i].size;
      }
    if (!dsize) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", p, it->string, dt->valuestring);
      break;
    }
    e->ndim = cJSON_GetArraySize(shape);
    if (e->ndim > SYNCO_ST_MAX_DIMS) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", p, it->string, e->ndim, SYNCO_ST_MAX_DIMS);
      break;
    }
    double numel = 1;
    int d = 0;
    for (cJSON *x = shape->child; x; x = x->next, d++) {
      if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 1e15 || x->valuedouble != (double)(int64_t)x->valuedouble) {
        s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has an invalid shape", p, it->string);
        break;
      }
      e->shape[d] = (int64_t)x->valuedouble;
      numel *= x->valuedouble;
    }
    if (s) break;
    cJSON *b = cJSON_GetArrayItem(offs, 0), *en = cJSON_GetArrayItem(offs, 1);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble != floor(b->valuedouble) ||
        en->valuedouble != floor(en->valuedouble)) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has data offsets that are not whole numbers", p, it->string);
      break;
    }
    if (b->valuedouble < 0 || en->valuedouble < b->valuedouble || en->valuedouble > (double)st->data_size) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has data offsets outside the data section (%zu bytes)%s", p,
                     it->string, st->data_size,
                     b->valuedouble >= 0 && en->valuedouble >= b->valuedouble ? ": cut short?" : "");
      break;
    }
    e->begin = (size_t)b->valuedouble;
    e->end = (size_t)en->valuedouble;
    if (numel * (double)dsize != (double)(e->end - e->begin)) {
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' spans %zu bytes but its shape and dtype need %.0f", p, it->string,
                     e->end - e->begin, numel * (double)dsize);
      break;
    }
    e->name = strdup(it->string);
    if (!e->name) {
      s = synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", p);
      break;
    }
    st->count++;
  }
  cJSON_Delete(root);
  if (s) return s;
  /* Offsets must tile the data section: sorted, no overlap, no hole, nothing after the last tensor. */
  synco_st_entry **order = malloc(((size_t)st->count + 1) * sizeof *order);
  if (!order) return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", p);
  for (int i = 0; i < st->count; i++) order[i] = &st->entries[i];
  qsort(order, (size_t)st->count, sizeof *order, cmp_begin);
  size_t at = 0;
  for (int i = 0; i < st->count && !s; i++) {
    if (order[i]->begin != at)
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' %s (starts at byte %zu, expected %zu)", p, order[i]->name,
                     order[i]->begin < at ? "overlaps the previous tensor" : "leaves a gap before it", order[i]->begin, at);
    at = order[i]->end;
  }
  if (!s && at != st->data_size)
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: %zu bytes after the last tensor", p, st->data_size - at);
  free(order);
  if (s) return s;
  /* JSON allows a key twice; a tensor name must not appear twice. Sorted, duplicates are neighbours. */
  st->by_name = malloc(((size_t)st->count + 1) * sizeof *st->by_name);
  if (!st->by_name) return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", p);
  for (int i = 0; i < st->count; i++) st->by_name[i] = &st->entries[i];
  qsort(st->by_name, (size_t)st->count, sizeof *st->by_name, cmp_name);
  for (int i = 1; i < st->count; i++)
    if (!strcmp(st->by_name[i]->name, st->by_name[i - 1]->name))
      return synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' appears twice", p, st->by_name[i]->name);
  return SYNCO_OK;
}

synco_status synco_st_parse(synco_safetensors *st, const void *bytes, size_t size, const char *name) {
  memset(st, 0, sizeof *st);
  st->path = strdup(name ? name : "<memory>");
  st->buf = malloc(size ? size : 1);
  if (!st->path || !st->buf) {
    synco_st_close(st);
    return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  }
  memcpy(st->buf, bytes, size);
  st->size = size;
  synco_status s = parse_owned(st, size);
  if (s) synco_st_close(st);
  return s;
}

static synco_status open_file(synco_safetensors *st, const char *path, int tensors) {
  memset(st, 0, sizeof *st);
  /* The file's own size bounds every allocation below; a folder, a FIFO or a device has none (and a FIFO would
   * block the open): base/file_read.h refuses them. */
  size_t sz;
  const int fd = synco_open_read(path, "a safetensors file", &sz);
  if (fd < 0) return SYNCO_ERR_IO;
  st->path = strdup(path);
  if (!st->path) {
    close(fd);
    return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", path);
  }
  /* The header first: its length, then the header itself, judged (JSON, dtypes, shapes, offsets within the size
   * the file has) before the tensors are read, so that a large file that is not a safetensors file (a 6 GB sparse
   * one, a video) costs a few bytes of reading, not its size in memory and time. */
  uint8_t len8[8];
  uint64_t hlen = 0;
  if (sz >= 8 && synco_pread_all(fd, len8, 8, 0) != 0) {
    const int e = errno;
    close(fd);
    synco_st_close(st);
    return synco_fail(SYNCO_ERR_IO, "%s: read error: %s", path, strerror(e));
  }
  for (int i = 7; sz >= 8 && i >= 0; i--) hlen = (hlen << 8) | len8[i];
  const size_t head = sz >= 8 && hlen <= sz - 8 && hlen <= HEADER_MAX ? 8 + (size_t)hlen : sz < 8 ? sz : 8;
  st->buf = malloc(head + 1);
  if (!st->buf) {
    close(fd);
    synco_st_close(st);
    return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory reading its %zu-byte header", path, head);
  }
  st->size = sz;
  synco_status s = SYNCO_OK;
  if (synco_pread_all(fd, st->buf, head, 0) != 0) s = synco_fail(SYNCO_ERR_IO, "%s: read error: %s", path, strerror(errno));
  if (!s) s = parse_owned(st, head); /* only the header's bytes are looked at */
  if (!s && tensors && sz > head) { /* then the tensors */
    uint8_t *all = realloc(st->buf, sz + 1);
    if (!all) s = synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, sz);
    else {
      st->buf = all;
      st->data = st->buf + head;
      if (synco_pread_all(fd, st->buf + head, sz - head, head) != 0)
        s = synco_fail(SYNCO_ERR_IO, "%s: read error: %s", path, strerror(errno));
    }
  }
  close(fd);
  if (s) synco_st_close(st);
  return s;
}

synco_status synco_st_open(synco_safetensors *st, const char *path) { return open_file(st, path, 1); }
synco_status synco_st_open_header(synco_safetensors *st, const char *path) { return open_file(st, path, 0); }

const synco_st_entry *synco_st_find(const synco_safetensors *st, const char *name) {
  if (!st->by_name) return NULL;
  synco_st_entry key, *kp = &key;
  key.name = (char *)name;
  synco_st_entry **hit = bsearch(&kp, st->by_name, (size_t)st->count, sizeof *st->by_name, cmp_name);
  return hit ? *hit : NULL;
}

const void *synco_st_bytes(const synco_safetensors *st, const synco_st_entry *e) { return st->data + e->begin; }

const char *synco_st_meta(const synco_safetensors *st, const char *key) {
  for (int i = 0; i < st->meta_count; i++)
    if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
  return NULL;
}

static float half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else { /* subnormal */
      float f = (float)man / 1024.0f / 16384.0f;
      return sign ? -f : f;
    }
  } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
  else bits = sign | ((exp + 112) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* Element i of a float tensor as fp32 (a finite F64 beyond fp32's range becomes inf, as the copy would). */
static float elem_f32(const synco_st_entry *e, const uint8_t *src, size_t i) {
  switch (e->dtype) {
    case SYNCO_ST_F32: {
      float f;
      memcpy(&f, src + 4 * i, 4);
      return f;
    }
    case SYNCO_ST_F64: {
      double d;
      memcpy(&d, src + 8 * i, 8);
      return (float)d;
    }
    case SYNCO_ST_BF16: {
      const uint32_t bits = (uint32_t)(src[2 * i] | (src[2 * i + 1] << 8)) << 16;
      float f;
      memcpy(&f, &bits, 4);
      return f;
    }
    case SYNCO_ST_F16: return half_to_float((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
    default: return 0.f;
  }
}

static synco_status nonfinite_error(const synco_safetensors *st, const char *name, size_t bad, size_t numel, size_t first) {
  return synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' holds NaN/inf values (%zu of %zu elements, the first at %zu)",
                    st->path, name, bad, numel, first);
}

synco_status synco_st_check_finite(const synco_safetensors *st) {
  for (int t = 0; t < st->count; t++) {
    const synco_st_entry *e = &st->entries[t];
    if (e->dtype != SYNCO_ST_F32 && e->dtype != SYNCO_ST_F64 && e->dtype != SYNCO_ST_F16 && e->dtype != SYNCO_ST_BF16) continue;
    const uint8_t *src = synco_st_bytes(st, e);
    const size_t n = synco_st_numel(e);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
      if (!isfinite(elem_f32(e, src, i)) && !bad++) first = i;
    if (bad) return nonfinite_error(st, e->name, bad, n, first);
  }
  return SYNCO_OK;
}

synco_status synco_st_get_f32(const synco_safetensors *st, const char *name, float *dst, size_t numel, const int *shape,
                              int ndim) {
  const synco_st_entry *e = synco_st_find(st, name);
  if (!e) return synco_fail(SYNCO_ERR_FORMAT, "%s: no tensor named '%s'", st->path, name);
  if (synco_st_numel(e) != numel)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has %zu elements, expected %zu", st->path, name, synco_st_numel(e), numel);
  if (shape) {
    int same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
    if (!same) {
      char got[128] = "", want[128] = "";
      int k = 0;
      for (int i = 0; i < e->ndim; i++) k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", i ? "," : "", (long long)e->shape[i]);
      k = 0;
      for (int i = 0; i < ndim; i++) k += snprintf(want + k, sizeof want - (size_t)k, "%s%d", i ? "," : "", shape[i]);
      return synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%s]", st->path, name, got, want);
    }
  }
  const uint8_t *src = synco_st_bytes(st, e);
  switch (e->dtype) {
    case SYNCO_ST_F32: memcpy(dst, src, numel * 4); break;
    case SYNCO_ST_F64:
      for (size_t i = 0; i < numel; i++) {
        double d;
        memcpy(&d, src + 8 * i, 8);
        dst[i] = (float)d;
      }
      break;
    case SYNCO_ST_BF16:
      for (size_t i = 0; i < numel; i++) {
        uint32_t bits = (uint32_t)(src[2 * i] | (src[2 * i + 1] << 8)) << 16;
        memcpy(&dst[i], &bits, 4);
      }
      break;
    case SYNCO_ST_F16:
      for (size_t i = 0; i < numel; i++) dst[i] = half_to_float((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
      break;
    default:
      return synco_fail(SYNCO_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected a float type", st->path, name,
                        dtype_name(e->dtype));
  }
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < numel; i++)
    if (!isfinite(dst[i]) && !bad++) first = i;
  if (bad) return nonfinite_error(st, name, bad, numel, first);
  return SYNCO_OK;
}

/* ---- writer ------------------------------------------------------------------------------------- */
typedef struct {
  char *name;
  synco_st_dtype dtype;
  int ndim;
  int64_t shape[SYNCO_ST_MAX_DIMS];
  const void *data;
  size_t bytes;
} pending;

struct synco_st_writer {
  pending *t;
  int n, cap;
  cJSON *meta;
  void **held;             /* synco_st_writer_hold */
  int nheld, held_cap;
};

synco_st_writer *synco_st_writer_new(void) {
  synco_st_writer *w = calloc(1, sizeof *w);
  if (!w) {
    synco_fail(SYNCO_ERR_NOMEM, "out of memory");
    return NULL;
  }
  w->meta = cJSON_CreateObject();
  return w;
}

void synco_st_writer_free(synco_st_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->n; i++) free(w->t[i].name);
  free(w->t);
  for (int i = 0; i < w->nheld; i++) free(w->held[i]);
  free(w->held);
  cJSON_Delete(w->meta);
  free(w);
}

void *synco_st_writer_hold(synco_st_writer *w, size_t bytes) {
  if (w->nheld == w->held_cap) {
    const int cap = w->held_cap ? 2 * w->held_cap : 8;
    void **h = realloc(w->held, (size_t)cap * sizeof *h);
    if (!h) {
      synco_fail(SYNCO_ERR_NOMEM, "out of memory");
      return NULL;
    }
    w->held = h;
    w->held_cap = cap;
  }
  void *p = calloc(1, bytes ? bytes : 1);
  if (!p) {
    synco_fail(SYNCO_ERR_NOMEM, "out of memory staging %zu bytes for a safetensors file", bytes);
    return NULL;
  }
  w->held[w->nheld++] = p;
  return p;
}

synco_status synco_st_add(synco_st_writer *w, const char *name, synco_st_dtype dtype, int ndim, const int64_t *shape,
                          const void *data) {
  if (ndim < 0 || ndim > SYNCO_ST_MAX_DIMS) return synco_fail(SYNCO_ERR_ARG, "tensor '%s': %d dimensions", name, ndim);
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 64;
    pending *t = realloc(w->t, (size_t)cap * sizeof *t);
    if (!t) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
    w->t = t;
    w->cap = cap;
  }
  pending *p = &w->t[w->n];
  p->name = strdup(name);
  if (!p->name) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  p->dtype = dtype;
  p->ndim = ndim;
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    p->shape[i] = shape[i];
    numel *= (size_t)shape[i];
  }
  p->data = data;
  p->bytes = numel * dtype_size(dtype);
  w->n++;
  return SYNCO_OK;
}

synco_status synco_st_add_f32(synco_st_writer *w, const char *name, const float *data, int ndim, const int *shape) {
  int64_t s[SYNCO_ST_MAX_DIMS];
  for (int i = 0; i < ndim && i < SYNCO_ST_MAX_DIMS; i++) s[i] = shape[i];
  return synco_st_add(w, name, SYNCO_ST_F32, ndim, s, data);
}

synco_status synco_st_set_meta(synco_st_writer *w, const char *key, const char *value) {
  cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
  if (!cJSON_AddStringToObject(w->meta, key, value)) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  return SYNCO_OK;
}

synco_status synco_st_write(synco_st_writer *w, const char *path) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  if (cJSON_GetArraySize(w->meta) > 0) cJSON_AddItemToObject(root, "__metadata__", cJSON_Duplicate(w->meta, 1));
  size_t off = 0;
  for (int i = 0; i < w->n; i++) {
    const pending *p = &w->t[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "dtype", dtype_name(p->dtype));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < p->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)p->shape[d]));
    cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + p->bytes)));
    cJSON_AddItemToObject(root, p->name, o);
    off += p->bytes;
  }
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!json) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  size_t jlen = strlen(json), padded = (jlen + 7) / 8 * 8; /* tensors start 8-byte aligned */
  char tmp[4096];
  FILE *f = synco_file_begin(path, tmp, sizeof tmp); /* never through a link (base/files.h) */
  if (!f) {
    free(json);
    return SYNCO_ERR_IO;
  }
  uint8_t hdr[8];
  for (int i = 0; i < 8; i++) hdr[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  int ok = fwrite(hdr, 1, 8, f) == 8 && fwrite(json, 1, jlen, f) == jlen;
  for (size_t i = jlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
  free(json);
  for (int i = 0; ok && i < w->n; i++) ok = fwrite(w->t[i].data, 1, w->t[i].bytes, f) == w->t[i].bytes;
  return synco_file_commit(f, tmp, path, ok);
}
