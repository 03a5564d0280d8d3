// Int8 GEMM packing (ops layer): weights into the vnni4x16 panels with their column sums, and
// activations into u8 rows (int8 shifted by 128, float32 quantized per row or tensor).
#include <algorithm>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <memory>
#include <vector>

#include "dispatch/quantize.hpp"
#include "dispatch/range.hpp"
#include "lowbit/matmul.hpp"
#include "lowbit/parallel.hpp"
#include "lowbit/rotation.hpp"
#include "ops/gemm_ops.hpp"
#include "ops/row_rotation.hpp"
#include "reference/range.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace {

constexpr int64_t kSmallK = 32;  // shorter activation rows are quantized in batches

// Packs panels [p0, p1) from a source whose columns are contiguous (stride_n == 1, e.g. a (K, N)
// row-major b): rows of 4 k are read sequentially and interleaved into one 64-byte line per panel.
// Panel p goes to dst + (p - p0) * kg * 64, its column sums to colsum + (p - p0) * 16.
void pack_rows_n_contiguous(const int8_t* w, int64_t n, int64_t k, int64_t stride_k, int64_t p0, int64_t p1,
                            int8_t* dst, int32_t* colsum) {
  const int64_t kg = k_groups(k);
  const int64_t line = kPanelCols * kKGroup;
  std::vector<int32_t> sums(static_cast<size_t>((p1 - p0) * kPanelCols), 0);
  const int8_t zeros[kPanelCols] = {};
  for (int64_t g = 0; g < kg; ++g) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c0 = p * kPanelCols;
      const int64_t jn = std::min<int64_t>(kPanelCols, n - c0);
      int8_t* d = dst + ((p - p0) * kg + g) * line;
      int32_t* sm = sums.data() + (p - p0) * kPanelCols;
      const int8_t* r[4];
      for (int t = 0; t < 4; ++t) r[t] = (4 * g + t < k) ? w + (4 * g + t) * stride_k + c0 : zeros;
      if (jn == kPanelCols) {
#if defined(__SSE2__)
        const __m128i r0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[0]));
        const __m128i r1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[1]));
        const __m128i r2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[2]));
        const __m128i r3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[3]));
        const __m128i a = _mm_unpacklo_epi8(r0, r1), b = _mm_unpackhi_epi8(r0, r1);
        const __m128i c = _mm_unpacklo_epi8(r2, r3), e = _mm_unpackhi_epi8(r2, r3);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm_unpacklo_epi16(a, c));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 16), _mm_unpackhi_epi16(a, c));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 32), _mm_unpacklo_epi16(b, e));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 48), _mm_unpackhi_epi16(b, e));
#else
        for (int64_t j = 0; j < kPanelCols; ++j)
          for (int t = 0; t < 4; ++t) d[j * 4 + t] = r[t][j];
#endif
        for (int t = 0; t < 4; ++t)
          for (int64_t j = 0; j < kPanelCols; ++j) sm[j] += r[t][j];
      } else {
        std::memset(d, 0, static_cast<size_t>(line));
        for (int64_t j = 0; j < jn; ++j)
          for (int t = 0; t < 4; ++t) {
            d[j * 4 + t] = r[t][j];
            sm[j] += r[t][j];
          }
      }
    }
  }
  std::memcpy(colsum, sums.data(), sums.size() * sizeof(int32_t));
}

}  // namespace

namespace detail {

void pack_weight_panels(const int8_t* w, int64_t n, int64_t k, int64_t stride_n, int64_t stride_k, int64_t p0,
                        int64_t p1, int8_t* dst, int32_t* colsum) {
  if (stride_n == 1 && k > 0) {
    pack_rows_n_contiguous(w, n, k, stride_k, p0, p1, dst, colsum);
    return;
  }
  // General strides: one column at a time (k contiguous for the usual (N, K) Linear weight).
  const int64_t kp = k_groups(k) * kKGroup;
  for (int64_t p = p0; p < p1; ++p) {
    int8_t* d = dst + (p - p0) * kp * kPanelCols;
    const int64_t jn = std::min<int64_t>(kPanelCols, n - p * kPanelCols);
    if (jn < kPanelCols || kp != k) std::memset(d, 0, static_cast<size_t>(kp * kPanelCols));
    for (int64_t j = 0; j < kPanelCols; ++j) {
      int32_t sum = 0;
      if (j < jn) {
        const int8_t* src = w + (p * kPanelCols + j) * stride_n;
        for (int64_t t = 0; t < k; ++t) {
          const int8_t v = src[t * stride_k];
          d[((t / 4) * kPanelCols + j) * 4 + (t & 3)] = v;
          sum += v;
        }
      }
      colsum[(p - p0) * kPanelCols + j] = sum;
    }
  }
}

}  // namespace detail

void pack_weight_s8(const int8_t* w, int64_t n, int64_t k, int64_t stride_n, int64_t stride_k, int8_t* packed,
                    int32_t* colsum) {
  const int64_t kp = k_groups(k) * kKGroup;
  const int64_t panels = n_panels(n);
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(kp * kPanelCols, 1));
  std::memset(packed + panels * kp * kPanelCols, 0, static_cast<size_t>(kPackSlackBytes));
  parallel_range(panels, grain, 1, [&](int64_t p0, int64_t p1) {
    detail::pack_weight_panels(w, n, k, stride_n, stride_k, p0, p1, packed + p0 * kp * kPanelCols,
                               colsum + p0 * kPanelCols);
  });
}

void unpack_weight_s8(const int8_t* packed, int64_t n, int64_t k, int8_t* w) {
  const int64_t kg = k_groups(k);
  for (int64_t col = 0; col < n; ++col) {
    const int8_t* src = packed + (col / kPanelCols) * kg * kPanelCols * kKGroup + (col % kPanelCols) * kKGroup;
    for (int64_t t = 0; t < k; ++t) w[col * k + t] = src[(t / 4) * kPanelCols * kKGroup + (t & 3)];
  }
}

namespace detail {

void pack_act_int8(const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am, int64_t stride_ak,
                   int64_t lda, uint8_t* ap) {
  // s8 activations are stored as a + 128 (u8) for vpdpbusd; row_offset 128 undoes it with colsum.
  const uint8_t flip = a_signed ? 0x80 : 0x00;
  uint8_t* const ap0 = ap;
  for_rows(m, k, [&](int64_t r0, int64_t r1) {
    // Bounds in locals: the byte stores may alias the closure (GCC reloaded k every byte).
    const int64_t k_ = k, lda_ = lda, sam = stride_am, sak = stride_ak;
    for (int64_t i = r0; i < r1; ++i) {
      const uint8_t* src = a + i * sam;
      uint8_t* dst = ap0 + i * lda_;
      if (sak == 1) {
        for (int64_t t = 0; t < k_; ++t) dst[t] = static_cast<uint8_t>(src[t] ^ flip);
      } else {
        for (int64_t t = 0; t < k_; ++t) dst[t] = static_cast<uint8_t>(src[t * sak] ^ flip);
      }
      for (int64_t t = k_; t < lda_; ++t) dst[t] = 0;
    }
  });
}

void pack_act_f32(const float* x, int64_t m, int64_t k, const LinearParams& p, int64_t lda, uint8_t* ap,
                  int32_t* row_offset, float* row_scale) {
  // Rotated inputs: each row is rotated into the thread's scratch just before its range and
  // quantization (in cache); the per-tensor range and the short-row batches need every row
  // first, so there the whole x is rotated into a temporary.
  std::unique_ptr<float[]> rotated;
  const bool rotate_rows = p.rot_block > 0 && p.act != ActMode::kDynamicTensor && k >= kSmallK;
  if (p.rot_block > 0 && !rotate_rows) {
    rotated.reset(new float[static_cast<size_t>(m * k)]);
    hadamard_rows(x, k, rotated.get(), k, m, k, p.rot_signs, p.rot_block);
    x = rotated.get();
  }
  float t_scale = p.act_scale;
  int32_t t_zp = p.act_zero_point + (p.act_signed ? 128 : 0);
  if (p.act == ActMode::kDynamicTensor) {
    std::vector<float> lo(static_cast<size_t>(m)), hi(static_cast<size_t>(m));
    auto finite_min_max = dispatch::finite_range_f32.get();
    for_rows(m, k, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) finite_min_max(x + i * k, k, &lo[i], &hi[i]);
    });
    dynamic_params(*std::min_element(lo.begin(), lo.end()), *std::max_element(hi.begin(), hi.end()), &t_scale, &t_zp);
  }
  auto qu8 = dispatch::quantize_f32_u8.get();
  auto range = dispatch::finite_range_f32.get();
  uint8_t* const a_base = ap;
  if (k < kSmallK) {
    // Short rows (early convolutions): per-row kernel calls would be all tail. Parameters are
    // spread per element and the whole chunk of rows is quantized by one vector call.
    std::unique_ptr<float[]> inv_e(new float[static_cast<size_t>(m * k)]);  // every element written
    std::unique_ptr<int32_t[]> zp_e(new int32_t[static_cast<size_t>(m * k)]);
    std::unique_ptr<uint8_t[]> q(new uint8_t[static_cast<size_t>(m * k)]);
    for_rows(m, k, [&, k, lda](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        const float* xi = x + i * k;
        float s = t_scale;
        int32_t z = t_zp;
        if (p.act == ActMode::kDynamicRow) {
          float lo = 0.0f, hi = 0.0f;
          for (int64_t t = 0; t < k; ++t) detail::finite_range_one(xi[t], &lo, &hi);
          dynamic_params(lo, hi, &s, &z);
        }
        const float inv = 1.0f / s;
        std::fill_n(inv_e.get() + i * k, k, inv);
        std::fill_n(zp_e.get() + i * k, k, z);
        row_scale[i] = s;
        row_offset[i] = z;
      }
      // quantize reads inv_scale and zero_point only
      const AffineRow ar{nullptr, inv_e.get() + r0 * k, zp_e.get() + r0 * k, true, 0, 255};
      qu8(x + r0 * k, (r1 - r0) * k, ar, Rounding{}, q.get() + r0 * k);
      // A few bytes per row: plain loops over locals (byte stores may alias anything reached
      // through the closure, which would reload the bounds every byte).
      const int64_t kk = k, ld = lda;
      const uint8_t* src = q.get() + r0 * kk;
      uint8_t* dst = a_base + r0 * ld;
      for (int64_t i = r0; i < r1; ++i, src += kk, dst += ld) {
        for (int64_t t = 0; t < kk; ++t) dst[t] = src[t];
        for (int64_t t = kk; t < ld; ++t) dst[t] = 0;
      }
    });
  } else {
    for_rows(m, k, [&](int64_t r0, int64_t r1) {
      const RowRotation rotated_row(rotate_rows ? p.rot_signs : nullptr, p.rot_block, k);
      for (int64_t i = r0; i < r1; ++i) {
        const float* xi = rotated_row(x + i * k);
        float s = t_scale;
        int32_t z = t_zp;
        if (p.act == ActMode::kDynamicRow) {
          float lo, hi;
          range(xi, k, &lo, &hi);
          dynamic_params(lo, hi, &s, &z);
        }
        const float inv = 1.0f / s;
        const AffineRow ar{&s, &inv, &z, false, 0, 255};
        uint8_t* dst = a_base + i * lda;
        qu8(xi, k, ar, Rounding{}, dst);
        std::memset(dst + k, 0, static_cast<size_t>(lda - k));
        row_scale[i] = s;
        row_offset[i] = z;
      }
    });
  }
}

}  // namespace detail
}  // namespace lowbit
