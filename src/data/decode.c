/* Image decoding: JPEG through libjpeg-turbo's TurboJPEG API and PNG through libpng, always to interleaved
 * 8-bit RGB, converting as PIL's Image.convert("RGB") does (grayscale replicated, palette expanded, alpha
 * dropped rather than composited, 16-bit samples truncated to their high byte), so that pixels agree with
 * torchvision's default loader. The default TurboJPEG flags (accurate integer DCT, fancy upsampling) are
 * libjpeg's defaults, which PIL uses too. A truncated JPEG is an error, as in PIL without
 * LOAD_TRUNCATED_IMAGES; other libjpeg warnings (extraneous bytes) are tolerated, as PIL tolerates them. */
#include <png.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

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

void synco_image_free(synco_image *img) {
  if (!img) return;
  free(img->rgb);
  img->rgb = NULL;
  img->cap = 0;
  img->w = img->h = 0;
}
