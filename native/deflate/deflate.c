/*
 * cogmill's deflate engine: zlib-format (RFC 1950) compression and decompression through libdeflate, the
 * library GDAL's libtiff links, so that a tile compressed here at a level is byte for byte what GDAL writes at that
 * level. Whole buffers only (a COG tile is one buffer). Every call runs on libuv's thread pool; each pool thread
 * keeps one compressor per level and one decompressor.
 *
 *   compress(input: Uint8Array, level: 0..12, callback(err, Buffer))
 *   compressSync(input: Uint8Array, level: 0..12, room?: 0..64): Uint8Array   (on the calling thread: for worker
 *     threads, whose blocking is the point; the output is a view of a new ArrayBuffer of the compress bound plus
 *     `room` free bytes before and after it, written in place)
 *   decompress(input: Uint8Array, declaredBytes: number, callback(err, Buffer | undefined, status: string))
 *   decompressSync(input: Uint8Array, declaredBytes: number): Uint8Array | "too-large" | "bad-data"   (on the
 *     calling thread, into a new ArrayBuffer of the declared size; a shorter stream gives a view of what it held)
 *     status: "ok" | "short" (fewer bytes than declared) | "too-large" | "bad-data"
 *   predictor2(bytes: Uint8Array, rowSamples, rows, stride, bytesPerSample: 1|2|4|8, undo: boolean): undefined
 *     TIFF horizontal differencing (predictor 2) in place over `rows` rows of `rowSamples` little-endian samples,
 *     each minus the one `stride` samples before it in its row (undo: the running sums back), modulo the sample
 *     width; on the calling thread (a 512 x 512 tile takes well under a millisecond)
 *   histogram8(samples: Uint8Array, bands: 1..4, counts: Uint32Array, predictedRowPixels?: number): undefined
 *     adds the count of each value of each band of pixel-interleaved 8-bit samples to counts[band * 256 + value];
 *     with predictedRowPixels, the samples still carry predictor 2 in rows of that many pixels (counted as undone)
 */
#include <libdeflate.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                                                \
  do {                                                                                                             \
    if ((call) != napi_ok) {                                                                                       \
      napi_throw_error(env, NULL, "cogmill_deflate: " #call " failed");                                          \
      return NULL;                                                                                                 \
    }                                                                                                              \
  } while (0)

static _Thread_local struct libdeflate_compressor *compressors[13];
static _Thread_local struct libdeflate_decompressor *decompressor;
/* this thread's buffer for compressSync's output before it is copied out at its exact size */
static _Thread_local unsigned char *scratch;
static _Thread_local size_t scratch_bytes;

typedef struct {
  napi_async_work work;
  napi_ref input_ref;
  napi_ref callback_ref;
  const unsigned char *in;
  size_t in_bytes;
  int level;
  int decompress;
  unsigned char *out;
  size_t out_capacity;
  size_t out_bytes;
  const char *status;
} job_t;

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *job = (job_t *)data;
  if (!job->decompress) {
    struct libdeflate_compressor *c = compressors[job->level];
    if (c == NULL) c = compressors[job->level] = libdeflate_alloc_compressor(job->level);
    if (c == NULL) {
      job->status = "no-memory";
      return;
    }
    job->out_capacity = libdeflate_zlib_compress_bound(c, job->in_bytes);
    job->out = malloc(job->out_capacity ? job->out_capacity : 1);
    if (job->out == NULL) {
      job->status = "no-memory";
      return;
    }
    job->out_bytes = libdeflate_zlib_compress(c, job->in, job->in_bytes, job->out, job->out_capacity);
    job->status = job->out_bytes == 0 ? "no-memory" : "ok";
    return;
  }
  if (decompressor == NULL) decompressor = libdeflate_alloc_decompressor();
  job->out = malloc(job->out_capacity ? job->out_capacity : 1);
  if (decompressor == NULL || job->out == NULL) {
    job->status = "no-memory";
    return;
  }
  size_t actual = 0;
  enum libdeflate_result r =
      libdeflate_zlib_decompress(decompressor, job->in, job->in_bytes, job->out, job->out_capacity, &actual);
  job->out_bytes = actual;
  if (r == LIBDEFLATE_SUCCESS) job->status = actual == job->out_capacity ? "ok" : "short";
  else if (r == LIBDEFLATE_INSUFFICIENT_SPACE) job->status = "too-large";
  else job->status = "bad-data";
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = (job_t *)data;
  napi_value callback, global, argv[3], result;
  napi_get_reference_value(env, job->callback_ref, &callback);
  napi_get_global(env, &global);
  napi_get_undefined(env, &argv[0]);
  napi_get_undefined(env, &argv[1]);
  const char *st = status == napi_ok ? job->status : "cancelled";
  if (strcmp(st, "ok") == 0 || strcmp(st, "short") == 0) {
    void *copy;
    if (napi_create_buffer_copy(env, job->out_bytes, job->out, &copy, &argv[1]) != napi_ok) st = "no-memory";
  }
  if (strcmp(st, "no-memory") == 0 || strcmp(st, "cancelled") == 0) {
    napi_value msg;
    napi_create_string_utf8(env, st, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &argv[0]);
  }
  napi_create_string_utf8(env, st, NAPI_AUTO_LENGTH, &argv[2]);
  free(job->out);
  napi_delete_reference(env, job->input_ref);
  napi_delete_reference(env, job->callback_ref);
  napi_delete_async_work(env, job->work);
  free(job);
  napi_call_function(env, global, callback, 3, argv, &result);
}

static napi_value queue(napi_env env, napi_callback_info info, int decompress) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "cogmill_deflate: expected (input, number, callback)");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length, offset;
  void *base;
  napi_value arraybuffer;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &base, &arraybuffer, &offset) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "cogmill_deflate: input must be a Uint8Array");
    return NULL;
  }
  double number;
  if (napi_get_value_double(env, argv[1], &number) != napi_ok) {
    napi_throw_type_error(env, NULL, "cogmill_deflate: second argument must be a number");
    return NULL;
  }
  job_t *job = calloc(1, sizeof(job_t));
  if (job == NULL) {
    napi_throw_error(env, NULL, "cogmill_deflate: out of memory");
    return NULL;
  }
  job->in = (const unsigned char *)base;
  job->in_bytes = length;
  job->decompress = decompress;
  if (decompress) {
    if (!(number >= 0 && number <= 1073741824.0)) {
      free(job);
      napi_throw_range_error(env, NULL, "cogmill_deflate: declared size out of range");
      return NULL;
    }
    job->out_capacity = (size_t)number;
  } else {
    if (!(number >= 0 && number <= 12)) {
      free(job);
      napi_throw_range_error(env, NULL, "cogmill_deflate: level must be 0..12");
      return NULL;
    }
    job->level = (int)number;
  }
  napi_value name;
  CHECK(napi_create_reference(env, argv[0], 1, &job->input_ref));
  CHECK(napi_create_reference(env, argv[2], 1, &job->callback_ref));
  CHECK(napi_create_string_utf8(env, decompress ? "cogmill.inflate" : "cogmill.deflate", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, execute, complete, job, &job->work));
  CHECK(napi_queue_async_work(env, job->work));
  return NULL;
}

static napi_value compress(napi_env env, napi_callback_info info) { return queue(env, info, 0); }

/*
 * The arguments of a sync call, (Uint8Array, number in [0, max]): the input's value and length and the number.
 * Returns 0 with an exception pending when they are not that.
 */
static int sync_args(napi_env env, napi_callback_info info, napi_value *input, size_t *length, double *number,
                     double max, const char *usage, const char *range) {
  size_t argc = 2;
  napi_value argv[2];
  napi_typedarray_type type;
  size_t offset;
  void *base;
  napi_value arraybuffer;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_typedarray_info(env, argv[0], &type, length, &base, &arraybuffer, &offset) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  if (napi_get_value_double(env, argv[1], number) != napi_ok || !(*number >= 0 && *number <= max)) {
    napi_throw_range_error(env, NULL, range);
    return 0;
  }
  *input = argv[0];
  return 1;
}

/*
 * A new ArrayBuffer of `bytes` for a sync call's output, and the input's address afterwards (the allocation may
 * have moved a small input held on the JS heap). Returns 0 with an exception pending on failure.
 */
static int sync_output(napi_env env, napi_value input, size_t bytes, void **out, napi_value *out_buffer,
                       const unsigned char **in) {
  napi_typedarray_type type;
  size_t length, offset;
  void *base;
  napi_value arraybuffer;
  if (napi_create_arraybuffer(env, bytes ? bytes : 1, out, out_buffer) != napi_ok ||
      napi_get_typedarray_info(env, input, &type, &length, &base, &arraybuffer, &offset) != napi_ok) {
    napi_throw_error(env, NULL, "cogmill_deflate: out of memory");
    return 0;
  }
  *in = (const unsigned char *)base;
  return 1;
}

/* The address of a typed array's first byte now (NULL with an exception pending on failure). */
static const unsigned char *typed_address(napi_env env, napi_value typed) {
  napi_typedarray_type type;
  size_t length, offset;
  void *base;
  napi_value arraybuffer;
  if (napi_get_typedarray_info(env, typed, &type, &length, &base, &arraybuffer, &offset) != napi_ok) {
    napi_throw_error(env, NULL, "cogmill_deflate: cannot read the input");
    return NULL;
  }
  return (const unsigned char *)base;
}

static napi_value compress_sync(napi_env env, napi_callback_info info) {
  napi_value input;
  size_t length;
  double number;
  if (!sync_args(env, info, &input, &length, &number, 12, "cogmill_deflate: expected (Uint8Array, level)",
                 "cogmill_deflate: level must be 0..12"))
    return NULL;
  int level = (int)number;
  struct libdeflate_compressor *c = compressors[level];
  if (c == NULL) c = compressors[level] = libdeflate_alloc_compressor(level);
  if (c == NULL) {
    napi_throw_error(env, NULL, "cogmill_deflate: out of memory");
    return NULL;
  }
  /* optional third argument: free bytes to leave before and after the output (a caller's framing) */
  size_t argc = 3;
  napi_value argv[3];
  uint32_t room = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 3) {
    napi_valuetype t;
    if (napi_typeof(env, argv[2], &t) == napi_ok && t != napi_undefined &&
        (napi_get_value_uint32(env, argv[2], &room) != napi_ok || room > 64)) {
      napi_throw_range_error(env, NULL, "cogmill_deflate: room must be 0..64");
      return NULL;
    }
  }
  /*
   * Compressed into this thread's scratch buffer first, then copied into an ArrayBuffer of the exact size: one
   * of the bound's size (the input's plus a little) was allocated, zeroed and moved to the writing thread for
   * every tile, ~1.6x the bytes it held (RGB tiles: 787 KB for ~480 KB), and the garbage collector counts them.
   */
  size_t bound = libdeflate_zlib_compress_bound(c, length);
  if (bound > scratch_bytes) {
    free(scratch);
    scratch = malloc(bound);
    scratch_bytes = scratch == NULL ? 0 : bound;
    if (scratch == NULL) {
      napi_throw_error(env, NULL, "cogmill_deflate: out of memory");
      return NULL;
    }
  }
  const unsigned char *input_base = typed_address(env, input);
  if (input_base == NULL) return NULL;
  size_t n = libdeflate_zlib_compress(c, input_base, length, scratch, bound);
  if (n == 0) {
    napi_throw_error(env, NULL, "cogmill_deflate: compression failed");
    return NULL;
  }
  void *out;
  napi_value out_buffer;
  const unsigned char *in;
  if (!sync_output(env, input, n + 2 * (size_t)room, &out, &out_buffer, &in)) return NULL;
  memcpy((unsigned char *)out + room, scratch, n);
  napi_value result;
  CHECK(napi_create_typedarray(env, napi_uint8_array, n, out_buffer, room, &result));
  return result;
}
static napi_value decompress(napi_env env, napi_callback_info info) { return queue(env, info, 1); }

static napi_value decompress_sync(napi_env env, napi_callback_info info) {
  napi_value input;
  size_t length;
  double number;
  if (!sync_args(env, info, &input, &length, &number, 1073741824.0,
                 "cogmill_deflate: expected (Uint8Array, declaredBytes)", "cogmill_deflate: declared size out of range"))
    return NULL;
  size_t declared = (size_t)number;
  if (decompressor == NULL) decompressor = libdeflate_alloc_decompressor();
  if (decompressor == NULL) {
    napi_throw_error(env, NULL, "cogmill_deflate: out of memory");
    return NULL;
  }
  void *out = NULL;
  napi_value out_buffer;
  const unsigned char *in = NULL;
  /* optional third argument: an ArrayBuffer of at least `declared` bytes to decode into (a spare one) */
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 3) {
    bool is_ab = false;
    size_t into_bytes = 0;
    void *into = NULL;
    if (napi_is_arraybuffer(env, argv[2], &is_ab) == napi_ok && is_ab &&
        napi_get_arraybuffer_info(env, argv[2], &into, &into_bytes) == napi_ok && into != NULL &&
        into_bytes >= declared) {
      in = typed_address(env, input);
      if (in == NULL) return NULL;
      out = into;
      out_buffer = argv[2];
    }
  }
  if (out == NULL && !sync_output(env, input, declared, &out, &out_buffer, &in)) return NULL;
  size_t actual = 0;
  enum libdeflate_result r = libdeflate_zlib_decompress(decompressor, in, length, out, declared, &actual);
  napi_value result;
  if (r == LIBDEFLATE_SUCCESS) {
    CHECK(napi_create_typedarray(env, napi_uint8_array, actual, out_buffer, 0, &result));
  } else {
    CHECK(napi_create_string_utf8(env, r == LIBDEFLATE_INSUFFICIENT_SPACE ? "too-large" : "bad-data", NAPI_AUTO_LENGTH,
                                  &result));
  }
  return result;
}

/*
 * One loop per sample width. For 1 to 4 samples per pixel the running values stay in registers, one per sample of
 * the pixel (a loop over a[i - stride] would wait on the store it just made: RGB 8-bit ran at ~1 ns a byte);
 * differencing walks forward keeping the previous pixel's original values.
 */
#define PREDICTOR2(T)                                                                                             \
  static void predict_##T(T *a, size_t row_samples, size_t rows, size_t stride, int undo) {                        \
    for (size_t r = 0; r < rows; r++, a += row_samples) {                                                          \
      if (stride > 4 || row_samples % stride != 0) {                                                               \
        if (undo)                                                                                                  \
          for (size_t i = stride; i < row_samples; i++) a[i] = (T)(a[i] + a[i - stride]);                          \
        else                                                                                                       \
          for (size_t i = row_samples; i-- > stride;) a[i] = (T)(a[i] - a[i - stride]);                            \
        continue;                                                                                                  \
      }                                                                                                            \
      T p[4] = {0, 0, 0, 0};                                                                                       \
      for (size_t b = 0; b < stride && b < row_samples; b++) p[b] = a[b];                                          \
      switch (stride) {                                                                                            \
        case 1:                                                                                                    \
          PREDICTOR2_LOOP(T, 1)                                                                                    \
          break;                                                                                                   \
        case 2:                                                                                                    \
          PREDICTOR2_LOOP(T, 2)                                                                                    \
          break;                                                                                                   \
        case 3:                                                                                                    \
          PREDICTOR2_LOOP(T, 3)                                                                                    \
          break;                                                                                                   \
        default:                                                                                                   \
          PREDICTOR2_LOOP(T, 4)                                                                                    \
          break;                                                                                                   \
      }                                                                                                            \
    }                                                                                                              \
  }
/* the pixels of one row after the first, S samples each, the running values in p[0..S) */
#define PREDICTOR2_LOOP(T, S)                                                                                      \
  if (undo) {                                                                                                      \
    for (size_t i = S; i < row_samples; i += S)                                                                    \
      for (size_t b = 0; b < S; b++) a[i + b] = p[b] = (T)(p[b] + a[i + b]);                                       \
  } else {                                                                                                         \
    for (size_t i = S; i < row_samples; i += S)                                                                    \
      for (size_t b = 0; b < S; b++) {                                                                             \
        T v = a[i + b];                                                                                            \
        a[i + b] = (T)(v - p[b]);                                                                                  \
        p[b] = v;                                                                                                  \
      }                                                                                                            \
  }
PREDICTOR2(uint8_t)
PREDICTOR2(uint16_t)
PREDICTOR2(uint32_t)
PREDICTOR2(uint64_t)

static napi_value predictor2(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_typedarray_type type;
  size_t length, offset;
  void *base;
  napi_value arraybuffer;
  double n[4];
  bool undo = false;
  const char *usage = "cogmill_deflate: expected (Uint8Array, rowSamples, rows, stride, bytesPerSample, undo)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &base, &arraybuffer, &offset) != napi_ok ||
      type != napi_uint8_array || napi_get_value_bool(env, argv[5], &undo) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  for (int k = 0; k < 4; k++) {
    if (napi_get_value_double(env, argv[k + 1], &n[k]) != napi_ok || !(n[k] >= 0 && n[k] <= 1073741824.0) ||
        n[k] != (double)(size_t)n[k]) {
      napi_throw_type_error(env, NULL, usage);
      return NULL;
    }
  }
  size_t row_samples = (size_t)n[0], rows = (size_t)n[1], stride = (size_t)n[2], bytes = (size_t)n[3];
  if ((bytes != 1 && bytes != 2 && bytes != 4 && bytes != 8) || stride == 0 || ((uintptr_t)base % bytes) != 0 ||
      row_samples * rows > length / bytes) {
    napi_throw_range_error(env, NULL, "cogmill_deflate: predictor2 shape does not fit the bytes");
    return NULL;
  }
  int u = undo ? 1 : 0;
  if (bytes == 1) predict_uint8_t((uint8_t *)base, row_samples, rows, stride, u);
  else if (bytes == 2) predict_uint16_t((uint16_t *)base, row_samples, rows, stride, u);
  else if (bytes == 4) predict_uint32_t((uint32_t *)base, row_samples, rows, stride, u);
  else predict_uint64_t((uint64_t *)base, row_samples, rows, stride, u);
  return NULL;
}

/*
 * Counts per band and value. Four tables per band, one per pixel position modulo 4, added up at the end: a run
 * of one value (class data, a flat sky) would otherwise make every increment wait for the one before it.
 */
static napi_value histogram8(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_typedarray_type type, ctype;
  size_t length, clength, offset;
  void *base, *cbase;
  napi_value arraybuffer;
  uint32_t bands = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &base, &arraybuffer, &offset) != napi_ok ||
      type != napi_uint8_array || napi_get_value_uint32(env, argv[1], &bands) != napi_ok ||
      napi_get_typedarray_info(env, argv[2], &ctype, &clength, &cbase, &arraybuffer, &offset) != napi_ok ||
      ctype != napi_uint32_array) {
    napi_throw_type_error(env, NULL, "cogmill_deflate: expected (Uint8Array, bands, Uint32Array)");
    return NULL;
  }
  if (bands < 1 || bands > 4 || clength < (size_t)bands * 256 || length % bands != 0) {
    napi_throw_range_error(env, NULL, "cogmill_deflate: histogram8 needs 1-4 bands, whole pixels and bands x 256 counts");
    return NULL;
  }
  uint32_t *counts = (uint32_t *)cbase;
  const uint8_t *a = (const uint8_t *)base;
  size_t pixels = length / bands;
  /* optional fourth argument: the samples still carry predictor 2 in rows of this many pixels */
  uint32_t row_pixels = 0;
  argc = 4;
  napi_value argv4[4];
  if (napi_get_cb_info(env, info, &argc, argv4, NULL, NULL) == napi_ok && argc >= 4) {
    napi_valuetype vt;
    if (napi_typeof(env, argv4[3], &vt) == napi_ok && vt != napi_undefined &&
        (napi_get_value_uint32(env, argv4[3], &row_pixels) != napi_ok || row_pixels == 0 ||
         pixels % row_pixels != 0)) {
      napi_throw_range_error(env, NULL, "cogmill_deflate: histogram8 rows must hold whole pixels of the samples");
      return NULL;
    }
  }
  static _Thread_local uint32_t t[4][4][256];
  memset(t, 0, sizeof(t));
  size_t p = 0;
  if (row_pixels > 0) {
    /* the values are the running sums of each row's differences (8-bit wrap): summed here, never written back */
    for (size_t r = 0; r < pixels / row_pixels; r++) {
      const uint8_t *q = a + r * row_pixels * bands;
      if (bands == 3) {
        uint8_t v0 = 0, v1 = 0, v2 = 0;
        for (size_t i = 0; i < row_pixels; i++, q += 3) {
          v0 = (uint8_t)(v0 + q[0]), v1 = (uint8_t)(v1 + q[1]), v2 = (uint8_t)(v2 + q[2]);
          t[i & 3][0][v0]++, t[i & 3][1][v1]++, t[i & 3][2][v2]++;
        }
      } else {
        uint8_t v[4] = {0, 0, 0, 0};
        for (size_t i = 0; i < row_pixels; i++, q += bands)
          for (uint32_t b = 0; b < bands; b++) {
            v[b] = (uint8_t)(v[b] + q[b]);
            t[i & 3][b][v[b]]++;
          }
      }
    }
    p = pixels;
  } else if (bands == 1) {
    for (; p + 4 <= pixels; p += 4) {
      t[0][0][a[p]]++;
      t[1][0][a[p + 1]]++;
      t[2][0][a[p + 2]]++;
      t[3][0][a[p + 3]]++;
    }
  } else if (bands == 3) {
    for (; p + 4 <= pixels; p += 4) {
      const uint8_t *q = a + p * 3;
      t[0][0][q[0]]++, t[0][1][q[1]]++, t[0][2][q[2]]++;
      t[1][0][q[3]]++, t[1][1][q[4]]++, t[1][2][q[5]]++;
      t[2][0][q[6]]++, t[2][1][q[7]]++, t[2][2][q[8]]++;
      t[3][0][q[9]]++, t[3][1][q[10]]++, t[3][2][q[11]]++;
    }
  } else {
    for (; p + 4 <= pixels; p += 4)
      for (size_t k = 0; k < 4; k++)
        for (uint32_t b = 0; b < bands; b++) t[k][b][a[(p + k) * bands + b]]++;
  }
  for (; p < pixels; p++)
    for (uint32_t b = 0; b < bands; b++) t[0][b][a[p * bands + b]]++;
  for (uint32_t b = 0; b < bands; b++)
    for (size_t v = 0; v < 256; v++) counts[b * 256 + v] += t[0][b][v] + t[1][b][v] + t[2][b][v] + t[3][b][v];
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  CHECK(napi_create_function(env, "compress", NAPI_AUTO_LENGTH, compress, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "compress", fn));
  CHECK(napi_create_function(env, "compressSync", NAPI_AUTO_LENGTH, compress_sync, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "compressSync", fn));
  CHECK(napi_create_function(env, "decompressSync", NAPI_AUTO_LENGTH, decompress_sync, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "decompressSync", fn));
  CHECK(napi_create_function(env, "decompress", NAPI_AUTO_LENGTH, decompress, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "decompress", fn));
  CHECK(napi_create_function(env, "predictor2", NAPI_AUTO_LENGTH, predictor2, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "predictor2", fn));
  CHECK(napi_create_function(env, "histogram8", NAPI_AUTO_LENGTH, histogram8, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "histogram8", fn));
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
