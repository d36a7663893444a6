/* Image decoding: JPEG through libjpeg-turbo's TurboJPEG API and PNG through libpng, always to interleaved
 * 8-bit RGB, converting as PIL's Image.convert("RGB") does (grayscale replicated, palette expanded, alpha
 * dropped rather than composited, 16-bit colour samples truncated to their high byte), so that pixels agree with
 * torchvision's default loader. One exception, kept on purpose: a 16-bit grayscale PNG is its high byte too,
 * where PIL (mode I) clips each sample at 255, which turns most of a real 16-bit photograph white. The default TurboJPEG flags (accurate integer DCT, fancy upsampling) are
 * libjpeg's defaults, which PIL uses too. A truncated JPEG is an error, as in PIL without
 * LOAD_TRUNCATED_IMAGES; other libjpeg warnings (extraneous bytes) are tolerated, as PIL tolerates them. */
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "base/file_read.h"
#include "base/status.h"
#include "data/internal.h"

/* One TurboJPEG handle per thread, destroyed when the thread exits. */
static pthread_key_t g_tj_key;
static pthread_once_t g_tj_once = PTHREAD_ONCE_INIT;
static void tj_destroy(void *h) { if (h) tjDestroy((tjhandle)h); }
static void tj_key_init(void) { pthread_key_create(&g_tj_key, tj_destroy); }
static tjhandle tj_handle(void) {
  pthread_once(&g_tj_once, tj_key_init);
  tjhandle h = (tjhandle)pthread_getspecific(g_tj_key);
  if (!h) {
    h = tjInitDecompress();
    if (h) pthread_setspecific(g_tj_key, h);
  }
  return h;
}

/* After a failed call a TurboJPEG 2.1 handle can report success on the next header without filling it in,
 * so a handle that saw an error is replaced. */
static void tj_reset(void) {
  tjhandle h = (tjhandle)pthread_getspecific(g_tj_key);
  if (h) tjDestroy(h);
  pthread_setspecific(g_tj_key, NULL);
}

synco_status synco_image_reserve(synco_image *img, int w, int h) {
  const size_t need = (size_t)w * (size_t)h * 3;
  if (img->cap < need) {
    uint8_t *p = (uint8_t *)realloc(img->rgb, need);
    if (!p) return synco_fail(SYNCO_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
    img->rgb = p;
    img->cap = need;
  }
  img->w = w;
  img->h = h;
  return SYNCO_OK;
}

static synco_status check_dims(int w, int h, const char *name) {
  if (w <= 0 || h <= 0 || (size_t)w * (size_t)h > SYNCO_MAX_PIXELS)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: unsupported image size %dx%d", name, w, h);
  return SYNCO_OK;
}

static synco_status decode_jpeg(synco_image *img, const uint8_t *buf, size_t n, const char *name) {
  tjhandle tj = tj_handle();
  if (!tj) return synco_fail(SYNCO_ERR_NOMEM, "%s: cannot create a JPEG decoder", name);
  int w, h, subsamp, cs;
  w = h = 0;
  if (n > 0xFFFFFFFFu || tjDecompressHeader3(tj, buf, (unsigned long)n, &w, &h, &subsamp, &cs) != 0) {
    synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt JPEG header (%s)", name, tjGetErrorStr2(tj));
    tj_reset();
    return SYNCO_ERR_FORMAT;
  }
  SYNCO_TRY(check_dims(w, h, name));
  const int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
  uint8_t *tmp = NULL;
  if (cmyk) {
    tmp = (uint8_t *)malloc((size_t)w * h * 4);
    if (!tmp) return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", name);
  }
  synco_status st = synco_image_reserve(img, w, h);
  if (st != SYNCO_OK) {
    free(tmp);
    return st;
  }
  if (tjDecompress2(tj, buf, (unsigned long)n, cmyk ? tmp : img->rgb, w, 0, h, cmyk ? TJPF_CMYK : TJPF_RGB, 0) != 0) {
    const char *msg = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) == TJERR_FATAL || strstr(msg, "Premature end")) {
      free(tmp);
      synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt or truncated JPEG (%s)", name, msg);
      tj_reset();
      return SYNCO_ERR_FORMAT;
    }
  }
  if (cmyk) {
    /* Adobe CMYK JPEGs store inverted inks; PIL's CMYK->RGB is then R = C'K'/255. */
    for (size_t i = 0; i < (size_t)w * h; i++)
      for (int c = 0; c < 3; c++) img->rgb[3 * i + c] = (uint8_t)((tmp[4 * i + c] * tmp[4 * i + 3] + 127) / 255);
    free(tmp);
  }
  return SYNCO_OK;
}

typedef struct {
  const uint8_t *p;
  size_t n, pos;
  char err[160];
} png_src;

static void png_read_cb(png_structp png, png_bytep out, png_size_t len) {
  png_src *s = (png_src *)png_get_io_ptr(png);
  if (len > s->n - s->pos) png_error(png, "truncated PNG data");
  memcpy(out, s->p + s->pos, len);
  s->pos += len;
}

static void png_error_cb(png_structp png, png_const_charp msg) {
  png_src *s = (png_src *)png_get_error_ptr(png);
  snprintf(s->err, sizeof s->err, "%s", msg);
  png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static synco_status decode_png(synco_image *img, const uint8_t *buf, size_t n, const char *name) {
  png_src src = {buf, n, 0, "unknown error"};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_error_cb, png_warning_cb);
  if (!png) return synco_fail(SYNCO_ERR_NOMEM, "%s: cannot create a PNG decoder", name);
  png_infop info = png_create_info_struct(png);
  png_bytep *volatile rows = NULL;
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return synco_fail(SYNCO_ERR_NOMEM, "%s: cannot create a PNG decoder", name);
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    return synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt PNG (%s)", name, src.err);
  }
  png_set_read_fn(png, &src, png_read_cb);
  png_set_user_limits(png, 1u << 15, 1u << 15);
  png_set_chunk_malloc_max(png, (png_alloc_size_t)64 << 20);
  png_read_info(png, info);
  png_uint_32 w, h;
  int depth, ctype, interlace;
  png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
  if (w == 0 || h == 0 || (size_t)w * h > SYNCO_MAX_PIXELS) {
    png_destroy_read_struct(&png, &info, NULL);
    return synco_fail(SYNCO_ERR_FORMAT, "%s: unsupported image size %ux%u", name, (unsigned)w, (unsigned)h);
  }
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_strip_16(png);
  if (ctype & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != (size_t)w * 3) png_error(png, "unexpected row layout after conversion");
  if (synco_image_reserve(img, (int)w, (int)h) != SYNCO_OK) png_error(png, "out of memory");
  rows = (png_bytep *)malloc(sizeof(png_bytep) * h);
  if (!rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = img->rgb + (size_t)y * w * 3;
  png_read_image(png, rows);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  return SYNCO_OK;
}

synco_status synco_image_decode(synco_image *img, const uint8_t *bytes, size_t n, const char *name) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n == 0) return synco_fail(SYNCO_ERR_FORMAT, "%s: empty file (0 bytes)", name);
  if (n >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return decode_jpeg(img, bytes, n, name);
  if (n >= 8 && !memcmp(bytes, png_sig, 8)) return decode_png(img, bytes, n, name);
  return synco_fail(SYNCO_ERR_FORMAT, "%s: not a JPEG or PNG image", name);
}

/* ---- header probe ------------------------------------------------------------------------------------ */

/* The bytes of a file read through a small window (pread), for walking a JPEG's markers without reading it all. */
typedef struct {
  int fd;
  size_t size, off, len;
  uint8_t buf[4096];
} probe_src;

/* The byte at offset at, or -1 past the end or on a read error. */
static int probe_byte(probe_src *s, size_t at) {
  if (at >= s->size) return -1;
  if (at < s->off || at >= s->off + s->len) {
    s->off = at;
    s->len = s->size - at < sizeof s->buf ? s->size - at : sizeof s->buf;
    if (synco_pread_all(s->fd, s->buf, s->len, at) != 0) {
      s->len = 0;
      return -1;
    }
  }
  return s->buf[at - s->off];
}

static int probe_be16(probe_src *s, size_t at) {
  const int a = probe_byte(s, at), b = probe_byte(s, at + 1);
  return a < 0 || b < 0 ? -1 : (a << 8) | b;
}

/* Deflate codes at most 258 bytes in 2 bits: a PNG's image data inflates to at most 1032 times its size. */
#define DEFLATE_MAX_RATIO 1032

static synco_status probe_png(probe_src *s, const char *name, int *w, int *h) {
  uint8_t hd[29];
  for (int i = 0; i < 29; i++) {
    const int b = probe_byte(s, (size_t)i);
    if (b < 0) return synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt PNG (truncated before the end of its header)", name);
    hd[i] = (uint8_t)b;
  }
  if (memcmp(hd + 12, "IHDR", 4) != 0)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt PNG (IHDR missing: it must be the first chunk)", name);
  const uint32_t pw = ((uint32_t)hd[16] << 24) | ((uint32_t)hd[17] << 16) | ((uint32_t)hd[18] << 8) | hd[19];
  const uint32_t ph = ((uint32_t)hd[20] << 24) | ((uint32_t)hd[21] << 16) | ((uint32_t)hd[22] << 8) | hd[23];
  /* the decoder's own limits: libpng's user limits (decode_png) and SYNCO_MAX_PIXELS */
  if (pw == 0 || ph == 0 || pw > (1u << 15) || ph > (1u << 15) || (size_t)pw * ph > SYNCO_MAX_PIXELS)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: unsupported image size %ux%u (at most %d pixels a side and %zu in all)",
                      name, (unsigned)pw, (unsigned)ph, 1 << 15, (size_t)SYNCO_MAX_PIXELS);
  static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
  const int depth = hd[24], ctype = hd[25];
  const int ch = ctype <= 6 ? channels[ctype] : 0;
  if (!ch || (depth != 1 && depth != 2 && depth != 4 && depth != 8 && depth != 16))
    return synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt PNG (colour type %d with bit depth %d)", name, ctype, depth);
  /* the filtered rows, one filter byte each, come from the compressed data: a file too small for them is damaged */
  const double raw = (double)ph * (1.0 + ceil((double)pw * ch * depth / 8.0));
  if ((double)s->size * DEFLATE_MAX_RATIO < raw)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: header says %ux%u, more than its %zu bytes can hold (at least %.0f for "
                      "that size)", name, (unsigned)pw, (unsigned)ph, s->size, ceil(raw / DEFLATE_MAX_RATIO));
  *w = (int)pw;
  *h = (int)ph;
  return SYNCO_OK;
}

/* Walks a JPEG's markers as libjpeg does (bytes before a marker and 0xFF fill skipped) to its frame header. */
static synco_status probe_jpeg(probe_src *s, const char *name, int *w, int *h) {
  size_t at = 2;
  for (;;) {
    int b;
    while ((b = probe_byte(s, at)) >= 0 && b != 0xFF) at++; /* garbage (libjpeg warns and skips it) */
    while ((b = probe_byte(s, at)) == 0xFF) at++;            /* fill bytes */
    if (b < 0) return synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt JPEG header (the file ends before its frame header)", name);
    const int m = b;
    at++;
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* markers without a length */
    if (m == 0x00) continue; /* 0xFF00 outside entropy-coded data is garbage to libjpeg too */
    if (m == 0xD8 || m == 0xD9 || m == 0xDA)
      return synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt JPEG header (marker 0x%02X before the frame header)", name, m);
    const int len = probe_be16(s, at);
    if (len < 2) return synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt JPEG header (a truncated or empty segment)", name);
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) { /* SOFn */
      const int jh = probe_be16(s, at + 3), jw = probe_be16(s, at + 5), nc = probe_byte(s, at + 7);
      if (len < 8 || jh < 0 || jw < 0 || nc < 1 || len < 8 + 3 * nc)
        return synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt JPEG header (a truncated frame header)", name);
      SYNCO_TRY(check_dims(jw, jh, name));
      /* Huffman-coded frames (all but the arithmetic ones, SOF9..11 and SOF13..15) spend at least one bit on every
       * 8x8 block of a component (its DC code): a file too small for the blocks of its smallest component is a
       * header that claims more than the data holds (8192x8192 patched onto a 32x32 image). */
      if (m < 0xC9) {
        int hmax = 1, vmax = 1, hf[4] = {1, 1, 1, 1}, vf[4] = {1, 1, 1, 1};
        for (int c = 0; c < nc && c < 4; c++) {
          const int f = probe_byte(s, at + 9 + 3 * (size_t)c);
          hf[c] = f >> 4 > 0 ? f >> 4 : 1;
          vf[c] = (f & 15) > 0 ? f & 15 : 1;
          if (hf[c] > hmax) hmax = hf[c];
          if (vf[c] > vmax) vmax = vf[c];
        }
        double blocks = -1;
        for (int c = 0; c < nc && c < 4; c++) {
          const double bw = ceil(ceil((double)jw * hf[c] / hmax) / 8), bh = ceil(ceil((double)jh * vf[c] / vmax) / 8);
          if (blocks < 0 || bw * bh < blocks) blocks = bw * bh;
        }
        if ((double)s->size * 8 < blocks)
          return synco_fail(SYNCO_ERR_FORMAT, "%s: header says %dx%d, more than its %zu bytes can hold (at least %.0f "
                            "for that size)", name, jw, jh, s->size, ceil(blocks / 8));
      }
      *w = jw;
      *h = jh;
      return SYNCO_OK;
    }
    at += (size_t)len;
  }
}

synco_status synco_image_probe_file(const char *path, int *w, int *h) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  *w = *h = 0;
  probe_src s = {.fd = -1};
  s.fd = synco_open_read(path, NULL, &s.size);
  if (s.fd < 0) return SYNCO_ERR_IO;
  synco_status st;
  uint8_t sig[8];
  int n = 0;
  for (int b; n < 8 && (b = probe_byte(&s, (size_t)n)) >= 0; n++) sig[n] = (uint8_t)b;
  if (s.size == 0) st = synco_fail(SYNCO_ERR_FORMAT, "%s: empty file (0 bytes)", path);
  else if (n >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF) st = probe_jpeg(&s, path, w, h);
  else if (n == 8 && !memcmp(sig, png_sig, 8)) st = probe_png(&s, path, w, h);
  else st = synco_fail(SYNCO_ERR_FORMAT, "%s: not a JPEG or PNG image", path);
  close(s.fd);
  return st;
}

void synco_image_free(synco_image *img) {
  if (!img) return;
  free(img->rgb);
  img->rgb = NULL;
  img->cap = 0;
  img->w = img->h = 0;
}
