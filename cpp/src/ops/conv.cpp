// Quantized convolution op (ops layer): the image quantized once to NHWC bytes, byte patches
// (im2col.cpp) and the int8 linear GEMM with its fused epilogue, streamed per chunk when it pays.
#include "lowbit/conv.hpp"

#include <algorithm>
#include <atomic>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <memory>
#include <vector>

#include "dispatch/matmul.hpp"
#include "dispatch/quantize.hpp"
#include "dispatch/range.hpp"
#include "lowbit/im2col.hpp"
#include "lowbit/matmul.hpp"
#include "lowbit/parallel.hpp"
#include "ops/gemm_ops.hpp"
#include "reference/range.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace {

// Float convolution results of this many bytes or more are written with non-temporal stores.
constexpr int64_t kStreamOutBytes = int64_t{16} << 20;

// dst[j * ld_dst + i] = src[i * ld_src + j] for i < rows, j < cols: 16 x 16 blocks through four
// rounds of byte unpacks (rows i and i + 8 interleaved each round), scalar edges.
void transpose_bytes(const uint8_t* src, int64_t ld_src, int64_t rows, int64_t cols, uint8_t* dst, int64_t ld_dst) {
  int64_t i0 = 0;
#if defined(__SSE2__)
  for (; i0 + 16 <= rows; i0 += 16) {
    int64_t j0 = 0;
    for (; j0 + 16 <= cols; j0 += 16) {
      __m128i x[16], y[16];
      for (int i = 0; i < 16; ++i)
        x[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (i0 + i) * ld_src + j0));
      for (int round = 0; round < 4; ++round) {
        for (int i = 0; i < 8; ++i) {
          y[2 * i] = _mm_unpacklo_epi8(x[i], x[i + 8]);
          y[2 * i + 1] = _mm_unpackhi_epi8(x[i], x[i + 8]);
        }
        for (int i = 0; i < 16; ++i) x[i] = y[i];
      }
      for (int j = 0; j < 16; ++j) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (j0 + j) * ld_dst + i0), x[j]);
    }
    for (int64_t j = j0; j < cols; ++j)
      for (int64_t i = i0; i < i0 + 16; ++i) dst[j * ld_dst + i] = src[i * ld_src + j];
  }
#endif
  for (int64_t i = i0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * ld_dst + i] = src[i * ld_src + j];
}

}  // namespace

std::unique_ptr<uint8_t[]> detail::quantize_image_u8(const Im2colArgs& geom, const float* x, bool dynamic, float* scale,
                                                     int32_t* zero_point) {
  const int64_t pixels = geom.n * geom.h * geom.w, elems = pixels * geom.c;
  // NHWC-contiguous (channels-last, or NCHW with one channel): one vector run
  const bool dense = (geom.c == 1 || geom.sc == 1) && geom.sw == geom.c && geom.sh == geom.w * geom.c &&
                     geom.sn == geom.h * geom.w * geom.c;
  // Channel planes contiguous (NCHW): vector runs per plane, then a byte transpose to NHWC
  const bool planes = !dense && geom.sw == 1 && geom.sh == geom.w;
  const int64_t hw = geom.h * geom.w;
  float s = *scale;
  int32_t z = *zero_point;
  if (dynamic) {
    // 0. the image's finite range (0 included, as finite_range starts there): with every pixel in
    // some patch, the patches' range, hence linear(act="dynamic_per_tensor")'s parameters
    const int64_t rows = planes ? geom.n * geom.c : geom.n * geom.h;
    std::vector<float> lo(static_cast<size_t>(std::max<int64_t>(rows, 1)), 0.0f), hi(lo);
    auto range = dispatch::finite_range_f32.get();
    detail::for_rows(rows, planes ? hw : geom.w * geom.c, [&](int64_t b, int64_t e) {
      const Im2colArgs g = geom;
      for (int64_t r = b; r < e; ++r) {
        if (planes) {  // r indexes (image, channel) here
          range(x + (r / g.c) * g.sn + (r % g.c) * g.sc, hw, &lo[r], &hi[r]);
          continue;
        }
        const float* src = x + (r / g.h) * g.sn + (r % g.h) * g.sh;  // r indexes (image, image row)
        if (dense) {
          range(src, g.w * g.c, &lo[r], &hi[r]);
        } else {
          float l = 0.0f, h = 0.0f;
          for (int64_t xi = 0; xi < g.w; ++xi, src += g.sw)
            for (int64_t ch = 0; ch < g.c; ++ch) detail::finite_range_one(src[ch * g.sc], &l, &h);
          lo[r] = l;
          hi[r] = h;
        }
      }
    });
    detail::dynamic_params(*std::min_element(lo.begin(), lo.end()), *std::max_element(hi.begin(), hi.end()), &s, &z);
  }
  const float inv = 1.0f / s;
  const AffineRow ar{&s, &inv, &z, false, 0, 255};
  std::unique_ptr<uint8_t[]> img(new uint8_t[static_cast<size_t>(std::max<int64_t>(elems, 1))]);
  auto qu8 = dispatch::quantize_f32_u8.get();
  if (dense) {
    detail::for_rows(elems, 1, [&](int64_t b, int64_t e) { qu8(x + b, e - b, ar, Rounding{}, img.get() + b); });
  } else if (planes) {
    std::unique_ptr<uint8_t[]> q(new uint8_t[static_cast<size_t>(std::max<int64_t>(elems, 1))]);  // all written
    uint8_t* const qp = q.get();
    uint8_t* const ip = img.get();
    detail::for_rows(geom.n * geom.c, hw, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        qu8(x + (r / geom.c) * geom.sn + (r % geom.c) * geom.sc, hw, ar, Rounding{}, qp + r * hw);
    });
    detail::for_rows(geom.n * geom.h, geom.w * geom.c, [&](int64_t b, int64_t e) {
      const int64_t c = geom.c, w = geom.w, h = geom.h, plane = hw;  // locals: byte stores alias the closure
      for (int64_t r = b; r < e; ++r) {
        const int64_t img_i = r / h, y = r % h;
        transpose_bytes(qp + img_i * c * plane + y * w, plane, c, w, ip + r * w * c, c);
      }
    });
  } else {  // any other strides: element by element, image row by image row
    detail::for_rows(geom.n * geom.h, geom.w * geom.c, [&](int64_t b, int64_t e) {
      const Im2colArgs g = geom;  // a local: byte stores may alias what the closure reaches
      const float sinv = inv;
      const int32_t sz = z;
      uint8_t* const base = img.get();
      for (int64_t r = b; r < e; ++r) {
        const float* src = x + (r / g.h) * g.sn + (r % g.h) * g.sh;
        uint8_t* dst = base + r * g.w * g.c;
        for (int64_t xi = 0; xi < g.w; ++xi, src += g.sw, dst += g.c)
          for (int64_t ch = 0; ch < g.c; ++ch)
            dst[ch] = static_cast<uint8_t>(detail::quantize_one(src[ch * g.sc], sinv, sz, 0, 255));
      }
    });
  }
  *scale = s;
  *zero_point = z;
  return img;
}

void detail::requantize_u8(const float* y, int64_t count, const ConvIO& io, uint8_t* out) {
  const float s = io.out_scale, inv = 1.0f / s;
  const int32_t z = io.out_zero_point;
  // q(lo) <= q(hi) (q is monotone); quantize_one clamps to integer bounds, so clamping its result
  // to [qlo, qhi] is quantizing with qmin = qlo, qmax = qhi
  const int32_t qlo = detail::quantize_one(io.out_lo, inv, z, 0, 255);
  const int32_t qhi = detail::quantize_one(io.out_hi, inv, z, 0, 255);
  const AffineRow ar{&s, &inv, &z, false, qlo, qhi};
  dispatch::quantize_f32_u8.get()(y, count, ar, Rounding{}, out);
}

void conv2d_static_packed(const Im2colArgs& geom, const float* x, const int8_t* packed, const int32_t* colsum,
                          const float* col_scale, int64_t n, const LinearParams& params, void* out, const ConvIO& io) {
  const int64_t m = geom.n * geom.ho * geom.wo, k = geom.kh * geom.kw * geom.c;
  if (m == 0 || n == 0) return;
  LinearParams p = params;  // a uint8 output is requantized from the float epilogue
  if (io.out_u8) p.requant = false;
  float s = p.act_scale;
  int32_t z = p.act_zero_point + (p.act_signed ? 128 : 0);
  // 1. the image, quantized once (kh * kw times fewer elements than its patches), as NHWC bytes,
  // unless the previous layer wrote it so
  std::unique_ptr<uint8_t[]> own;
  if (io.img == nullptr) own = detail::quantize_image_u8(geom, x, p.act == ActMode::kDynamicTensor, &s, &z);
  const uint8_t* const img = io.img != nullptr ? io.img : own.get();
  // 2. patches of bytes; padding is the zero point (what 0.0 quantizes to)
  const int64_t lda = packed_act_stride(k), kg = k_groups(k);
  const int64_t weight_bytes = n_panels(n) * kg * kPanelCols * kKGroup;
  const int64_t chunk = detail::patch_chunk_rows(m, lda, weight_bytes);
  if (chunk == 0) {
    // large weights: all patches first, then the blocked GEMM that shares weight chunks over rows
    std::unique_ptr<uint8_t[]> ap(new uint8_t[static_cast<size_t>(m * lda)]);  // every byte written
    im2col_nhwc_u8(geom, img, static_cast<uint8_t>(z), lda, ap.get());
    std::vector<int32_t> row_offset(static_cast<size_t>(m), z);
    std::vector<float> row_scale(static_cast<size_t>(m), s);
    // 3. the GEMM with the fused epilogue, exactly as linear_packed with static activations
    if (!io.out_u8) {
      detail::run_linear_gemm(ap.get(), lda, m, kg, packed, colsum, col_scale, n, p, row_offset.data(),
                              row_scale.data(), out);
      return;
    }
    std::unique_ptr<float[]> y(new float[static_cast<size_t>(m * n)]);  // every element written
    detail::run_linear_gemm(ap.get(), lda, m, kg, packed, colsum, col_scale, n, p, row_offset.data(), row_scale.data(),
                            y.get());
    detail::for_rows(m, n, [&](int64_t r0, int64_t r1) {
      detail::requantize_u8(y.get() + r0 * n, (r1 - r0) * n, io, static_cast<uint8_t*>(out) + r0 * n);
    });
    return;
  }
  // Weights that stay in L2: each thread makes a chunk of patch rows and multiplies it at once,
  // while it is in L2 (the whole patch matrix would go through memory twice); a uint8 output is
  // requantized from the chunk's float result while that is in cache.
  const int64_t chunks = (m + chunk - 1) / chunk;
  std::vector<int32_t> row_offset(static_cast<size_t>(std::min(m, chunk)), z);
  std::vector<float> row_scale(static_cast<size_t>(std::min(m, chunk)), s);
  const bool requant = p.requant;
  const kernels::GemmTaskFn fn = (requant ? dispatch::linear_f32_s8w_s8 : dispatch::linear_f32_s8w_f32).get();
  const size_t out_elem = io.out_u8 || requant ? sizeof(int8_t) : sizeof(float);
  // a float result much larger than the caches (a stem's 25 MB): non-temporal stores
  const bool stream = !io.out_u8 && !requant && m * n * static_cast<int64_t>(sizeof(float)) >= kStreamOutBytes;
  parallel_for(chunks, [&](int64_t t) {
    const int64_t r0 = t * chunk, r1 = std::min(m, r0 + chunk);
    std::unique_ptr<uint8_t[]> ap(new uint8_t[static_cast<size_t>((r1 - r0) * lda)]);  // every byte written
    im2col_nhwc_u8_rows(geom, img, static_cast<uint8_t>(z), lda, ap.get(), r0, r1);
    char* const dst = static_cast<char*>(out) + static_cast<size_t>(r0 * n) * out_elem;
    std::unique_ptr<float[]> y;
    if (io.out_u8) y.reset(new float[static_cast<size_t>((r1 - r0) * n)]);  // every element written
    GemmArgs g =
        detail::linear_gemm_args(ap.get(), lda, r1 - r0, kg, packed, colsum, col_scale, n, p, row_offset.data(),
                                 row_scale.data(), io.out_u8 ? static_cast<void*>(y.get()) : static_cast<void*>(dst));
    g.stream_out = stream;
    fn(g, 0, g.m, 0, n_panels(n));
    if (stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // orders the non-temporal stores
    if (io.out_u8) detail::requantize_u8(y.get(), (r1 - r0) * n, io, reinterpret_cast<uint8_t*>(dst));
  });
}

}  // namespace lowbit
