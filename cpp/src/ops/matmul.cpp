// Int8 GEMM ops (ops layer): weight packing, activation packing / dynamic quantization, cache
// blocking into tasks, threads over (row chunk, panel chunk) tasks, and the dispatched kernels.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <functional>
#include <memory>
#include <vector>

#include "dispatch/matmul.hpp"
#include "dispatch/quantize.hpp"
#include "dispatch/range.hpp"
#include "lowbit/im2col.hpp"
#include "lowbit/matmul.hpp"
#include "lowbit/parallel.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace {

constexpr int64_t kAChunkBytes = 128 << 10;  // packed activation rows per task stay in L2
constexpr int64_t kBChunkBytes = 256 << 10;  // packed weight panels per task stay in L2
constexpr int64_t kMinTaskMacs = 1 << 18;    // below this a task is not worth a thread
constexpr int64_t kRowGrainElems = 1 << 14;  // activation packing: elements per task, at least
constexpr int64_t kPanelUnit = 6;            // panel chunks: multiples of 3 (VNNI) and 2 (AMX)
constexpr int64_t kStreamWeightBytes = 1 << 20;  // byte-patch convolutions: weights this small stay in L2
constexpr int64_t kStreamChunkBytes = 256 << 10;  // and patch rows are made and multiplied per chunk
constexpr int64_t kSmallK = 32;              // shorter activation rows are quantized in batches

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Splits the GEMM into (row chunk, panel chunk) tasks; consecutive tasks share a weight chunk.
void run_gemm_with(kernels::GemmTaskFn fn, const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  const int64_t panels = n_panels(g.n);
  const int64_t kp = std::max<int64_t>(g.k_groups * kKGroup, kKGroup);
  const int64_t threads = get_num_threads();
  // Row chunks in multiples of 32 rows and panel chunks in multiples of 6 panels keep whole
  // AVX-512 VNNI tiles (8 x 3 panels) and AMX blocks (32 x 2 panels) inside every task.
  int64_t mc = std::max<int64_t>(32, kAChunkBytes / kp / 32 * 32);
  mc = std::min(mc, round_up(g.m, 8));
  int64_t pc = std::max<int64_t>(kPanelUnit, kBChunkBytes / (kp * kPanelCols) / kPanelUnit * kPanelUnit);
  pc = std::min(pc, panels);
  const int64_t m_tasks = (g.m + mc - 1) / mc;
  // Enough tasks to balance the threads, but no task too small to pay for its wake-up.
  while (pc > kPanelUnit && m_tasks * ((panels + pc - 1) / pc) < 4 * threads)
    pc = std::max<int64_t>(kPanelUnit, pc / 2 / kPanelUnit * kPanelUnit);
  const int64_t p_tasks = (panels + pc - 1) / pc;
  const int64_t n_tasks = m_tasks * p_tasks;
  auto task = [&](int64_t t) {
    const int64_t pj = t / m_tasks, mi = t % m_tasks;
    const int64_t m0 = mi * mc, p0 = pj * pc;
    fn(g, m0, std::min(g.m, m0 + mc), p0, std::min(panels, p0 + pc));
  };
  if (n_tasks == 1 || g.m * g.n * kp < 4 * kMinTaskMacs) {
    for (int64_t t = 0; t < n_tasks; ++t) task(t);
  } else {
    parallel_for(n_tasks, task);
  }
}

void run_gemm(const OpTable<kernels::GemmTaskFn>& table, const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  run_gemm_with(table.get(), g);
}

void for_rows(int64_t m, int64_t k, const std::function<void(int64_t, int64_t)>& fn) {
  parallel_range(m, std::max<int64_t>(1, kRowGrainElems / std::max<int64_t>(k, 1)), 1, fn);
}

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

// Dynamic asymmetric uint8 parameters over [lo, hi] (lo <= 0 <= hi), the observer formula.
void dynamic_params(float lo, float hi, float* scale, int32_t* zp) {
  float range = hi - lo;
  if (!std::isfinite(range)) range = FLT_MAX;
  float s = std::max(range / 255.0f, FLT_EPSILON);
  float z = 0.0f - std::nearbyint(lo / s);
  *scale = s;
  *zp = static_cast<int32_t>(std::min(255.0f, std::max(0.0f, z)));
}

}  // namespace

namespace {

// Packs panels [p0, p1) from a source whose columns are contiguous (stride_n == 1, e.g. a (K, N)
// row-major b): rows of 4 k are read sequentially and interleaved into one 64-byte line per panel.
void pack_rows_n_contiguous(const int8_t* w, int64_t n, int64_t k, int64_t stride_k, int64_t p0, int64_t p1,
                            int8_t* packed, int32_t* colsum) {
  const int64_t kg = k_groups(k);
  const int64_t line = kPanelCols * kKGroup;
  std::vector<int32_t> sums(static_cast<size_t>((p1 - p0) * kPanelCols), 0);
  const int8_t zeros[kPanelCols] = {};
  for (int64_t g = 0; g < kg; ++g) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c0 = p * kPanelCols;
      const int64_t jn = std::min<int64_t>(kPanelCols, n - c0);
      int8_t* d = packed + (p * kg + g) * line;
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
  std::memcpy(colsum + p0 * kPanelCols, sums.data(), sums.size() * sizeof(int32_t));
}

}  // namespace

void pack_weight_s8(const int8_t* w, int64_t n, int64_t k, int64_t stride_n, int64_t stride_k, int8_t* packed,
                    int32_t* colsum) {
  const int64_t kg = k_groups(k);
  const int64_t kp = kg * kKGroup;
  const int64_t panels = n_panels(n);
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(kp * kPanelCols, 1));
  std::memset(packed + panels * kp * kPanelCols, 0, static_cast<size_t>(kPackSlackBytes));
  if (stride_n == 1 && k > 0) {
    parallel_range(panels, grain, 1, [&](int64_t p0, int64_t p1) {
      pack_rows_n_contiguous(w, n, k, stride_k, p0, p1, packed, colsum);
    });
    return;
  }
  // General strides: one column at a time (k contiguous for the usual (N, K) Linear weight).
  parallel_range(panels, grain, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      int8_t* dst = packed + p * kp * kPanelCols;
      const int64_t jn = std::min<int64_t>(kPanelCols, n - p * kPanelCols);
      if (jn < kPanelCols || kp != k) std::memset(dst, 0, static_cast<size_t>(kp * kPanelCols));
      for (int64_t j = 0; j < kPanelCols; ++j) {
        int32_t sum = 0;
        if (j < jn) {
          const int8_t* src = w + (p * kPanelCols + j) * stride_n;
          for (int64_t t = 0; t < k; ++t) {
            const int8_t v = src[t * stride_k];
            dst[((t / 4) * kPanelCols + j) * 4 + (t & 3)] = v;
            sum += v;
          }
        }
        colsum[p * kPanelCols + j] = sum;
      }
    }
  });
}

void unpack_weight_s8(const int8_t* packed, int64_t n, int64_t k, int8_t* w) {
  const int64_t kg = k_groups(k);
  for (int64_t col = 0; col < n; ++col) {
    const int8_t* src = packed + (col / kPanelCols) * kg * kPanelCols * kKGroup + (col % kPanelCols) * kKGroup;
    for (int64_t t = 0; t < k; ++t) w[col * k + t] = src[(t / 4) * kPanelCols * kKGroup + (t & 3)];
  }
}

void matmul_packed_with(kernels::GemmTaskFn fn, const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am, int64_t stride_ak,
                   const int8_t* packed, const int32_t* colsum, int64_t n, int32_t* c) {
  if (m == 0 || n == 0) return;
  const int64_t kg = k_groups(k);
  const int64_t lda = packed_act_stride(k);
  std::vector<uint8_t> ap(static_cast<size_t>(m * lda));
  // s8 activations are stored as a + 128 (u8) for vpdpbusd; row_offset 128 undoes it with colsum.
  const uint8_t flip = a_signed ? 0x80 : 0x00;
  uint8_t* const ap0 = ap.data();
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
  std::vector<int32_t> row_offset(static_cast<size_t>(m), a_signed ? 128 : 0);
  GemmArgs g;
  g.a = ap.data();
  g.lda = lda;
  g.m = m;
  g.k_groups = kg;
  g.b = packed;
  g.n = n;
  g.kind = EpilogueKind::kInt32;
  g.row_offset = row_offset.data();
  g.colsum = colsum;
  g.out = c;
  g.ldo = n;
  if (fn != nullptr)
    run_gemm_with(fn, g);
  else
    run_gemm(a_signed ? dispatch::matmul_s8s8_s32 : dispatch::matmul_u8s8_s32, g);
}

void matmul_packed(const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am, int64_t stride_ak,
                   const int8_t* packed, const int32_t* colsum, int64_t n, int32_t* c) {
  matmul_packed_with(nullptr, a, a_signed, m, k, stride_am, stride_ak, packed, colsum, n, c);
}

namespace {

// The GEMM arguments of a linear on packed activations (u8, +128 for int8) with its fused epilogue.
GemmArgs linear_gemm_args(const uint8_t* ap, int64_t lda, int64_t m, int64_t kg, const int8_t* packed,
                          const int32_t* colsum, const float* col_scale, int64_t n, const LinearParams& p,
                          const int32_t* row_offset, const float* row_scale, void* out) {
  GemmArgs g;
  g.a = ap;
  g.lda = lda;
  g.m = m;
  g.k_groups = kg;
  g.b = packed;
  g.n = n;
  g.kind = p.requant ? EpilogueKind::kRequant : EpilogueKind::kFloat;
  g.row_offset = row_offset;
  g.colsum = colsum;
  g.row_scale = row_scale;
  g.col_scale = col_scale;
  g.bias = p.bias;
  g.relu = p.relu;
  g.out_inv_scale = 1.0f / p.out_scale;
  g.out_zero_point = p.out_zero_point;
  g.out = out;
  g.ldo = n;
  return g;
}

void run_linear_gemm(const uint8_t* ap, int64_t lda, int64_t m, int64_t kg, const int8_t* packed,
                     const int32_t* colsum, const float* col_scale, int64_t n, const LinearParams& p,
                     const int32_t* row_offset, const float* row_scale, void* out) {
  run_gemm(p.requant ? dispatch::linear_f32_s8w_s8 : dispatch::linear_f32_s8w_f32,
           linear_gemm_args(ap, lda, m, kg, packed, colsum, col_scale, n, p, row_offset, row_scale, out));
}

}  // namespace

void linear_packed(const float* x, int64_t m, int64_t k, const int8_t* packed, const int32_t* colsum,
                   const float* col_scale, int64_t n, const LinearParams& p, void* out) {
  if (m == 0 || n == 0) return;
  const int64_t kg = k_groups(k);
  const int64_t lda = packed_act_stride(k);
  std::unique_ptr<uint8_t[]> ap(new uint8_t[static_cast<size_t>(m * lda)]);  // every byte written
  std::vector<int32_t> row_offset(static_cast<size_t>(m));
  std::vector<float> row_scale(static_cast<size_t>(m));
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
  uint8_t* const a_base = ap.get();
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
      for (int64_t i = r0; i < r1; ++i) {
        float s = t_scale;
        int32_t z = t_zp;
        if (p.act == ActMode::kDynamicRow) {
          float lo, hi;
          range(x + i * k, k, &lo, &hi);
          dynamic_params(lo, hi, &s, &z);
        }
        const float inv = 1.0f / s;
        const AffineRow ar{&s, &inv, &z, false, 0, 255};
        uint8_t* dst = a_base + i * lda;
        qu8(x + i * k, k, ar, Rounding{}, dst);
        std::memset(dst + k, 0, static_cast<size_t>(lda - k));
        row_scale[i] = s;
        row_offset[i] = z;
      }
    });
  }
  run_linear_gemm(ap.get(), lda, m, kg, packed, colsum, col_scale, n, p, row_offset.data(), row_scale.data(), out);
}

void conv2d_static_packed(const Im2colArgs& geom, const float* x, const int8_t* packed, const int32_t* colsum,
                          const float* col_scale, int64_t n, const LinearParams& p, void* out) {
  const int64_t m = geom.n * geom.ho * geom.wo, k = geom.kh * geom.kw * geom.c;
  if (m == 0 || n == 0) return;
  const int64_t pixels = geom.n * geom.h * geom.w, elems = pixels * geom.c;
  // NHWC-contiguous (channels-last, or NCHW with one channel): one vector run
  const bool dense = (geom.c == 1 || geom.sc == 1) && geom.sw == geom.c && geom.sh == geom.w * geom.c &&
                     geom.sn == geom.h * geom.w * geom.c;
  // Channel planes contiguous (NCHW): vector runs per plane, then a byte transpose to NHWC
  const bool planes = !dense && geom.sw == 1 && geom.sh == geom.w;
  const int64_t hw = geom.h * geom.w;
  float s = p.act_scale;
  int32_t z = p.act_zero_point + (p.act_signed ? 128 : 0);
  if (p.act == ActMode::kDynamicTensor) {
    // 0. the image's finite range (0 included, as finite_range starts there): with every pixel in
    // some patch, the patches' range, hence linear(act="dynamic_per_tensor")'s parameters
    const int64_t rows = planes ? geom.n * geom.c : geom.n * geom.h;
    std::vector<float> lo(static_cast<size_t>(std::max<int64_t>(rows, 1)), 0.0f), hi(lo);
    auto range = dispatch::finite_range_f32.get();
    for_rows(rows, planes ? hw : geom.w * geom.c, [&](int64_t b, int64_t e) {
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
    dynamic_params(*std::min_element(lo.begin(), lo.end()), *std::max_element(hi.begin(), hi.end()), &s, &z);
  }
  const float inv = 1.0f / s;
  const AffineRow ar{&s, &inv, &z, false, 0, 255};
  // 1. the image, quantized once (kh * kw times fewer elements than its patches), as NHWC bytes
  std::unique_ptr<uint8_t[]> img(new uint8_t[static_cast<size_t>(std::max<int64_t>(elems, 1))]);
  auto qu8 = dispatch::quantize_f32_u8.get();
  if (dense) {
    for_rows(elems, 1, [&](int64_t b, int64_t e) { qu8(x + b, e - b, ar, Rounding{}, img.get() + b); });
  } else if (planes) {
    std::unique_ptr<uint8_t[]> q(new uint8_t[static_cast<size_t>(std::max<int64_t>(elems, 1))]);  // all written
    uint8_t* const qp = q.get();
    uint8_t* const ip = img.get();
    for_rows(geom.n * geom.c, hw, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) qu8(x + (r / geom.c) * geom.sn + (r % geom.c) * geom.sc, hw, ar, Rounding{}, qp + r * hw);
    });
    for_rows(geom.n * geom.h, geom.w * geom.c, [&](int64_t b, int64_t e) {
      const int64_t c = geom.c, w = geom.w, h = geom.h, plane = hw;  // locals: byte stores alias the closure
      for (int64_t r = b; r < e; ++r) {
        const int64_t img_i = r / h, y = r % h;
        transpose_bytes(qp + img_i * c * plane + y * w, plane, c, w, ip + r * w * c, c);
      }
    });
  } else {  // any other strides: element by element, image row by image row
    for_rows(geom.n * geom.h, geom.w * geom.c, [&](int64_t b, int64_t e) {
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
  // 2. patches of bytes; padding is the zero point (what 0.0 quantizes to)
  const int64_t lda = packed_act_stride(k), kg = k_groups(k);
  const int64_t weight_bytes = n_panels(n) * kg * kPanelCols * kKGroup;
  if (weight_bytes > kStreamWeightBytes) {
    // large weights: all patches first, then the blocked GEMM that shares weight chunks over rows
    std::unique_ptr<uint8_t[]> ap(new uint8_t[static_cast<size_t>(m * lda)]);  // every byte written
    im2col_nhwc_u8(geom, img.get(), static_cast<uint8_t>(z), lda, ap.get());
    std::vector<int32_t> row_offset(static_cast<size_t>(m), z);
    std::vector<float> row_scale(static_cast<size_t>(m), s);
    // 3. the GEMM with the fused epilogue, exactly as linear_packed with static activations
    run_linear_gemm(ap.get(), lda, m, kg, packed, colsum, col_scale, n, p, row_offset.data(), row_scale.data(), out);
    return;
  }
  // Weights that stay in L2: each thread makes a chunk of patch rows and multiplies it at once,
  // while it is in L2 (the whole patch matrix would go through memory twice).
  // At most kStreamChunkBytes of patches, and at least 4 chunks per thread when there are rows
  // enough (short patch rows would otherwise make one chunk of everything: one thread).
  const int64_t per_thread = (m + 4 * get_num_threads() - 1) / (4 * get_num_threads());
  const int64_t chunk = std::max<int64_t>(32, std::min(kStreamChunkBytes / lda, (per_thread + 31) / 32 * 32) / 32 * 32);
  const int64_t chunks = (m + chunk - 1) / chunk;
  std::vector<int32_t> row_offset(static_cast<size_t>(std::min(m, chunk)), z);
  std::vector<float> row_scale(static_cast<size_t>(std::min(m, chunk)), s);
  const kernels::GemmTaskFn fn = (p.requant ? dispatch::linear_f32_s8w_s8 : dispatch::linear_f32_s8w_f32).get();
  const size_t out_elem = p.requant ? sizeof(int8_t) : sizeof(float);
  parallel_for(chunks, [&](int64_t t) {
    const int64_t r0 = t * chunk, r1 = std::min(m, r0 + chunk);
    std::unique_ptr<uint8_t[]> ap(new uint8_t[static_cast<size_t>((r1 - r0) * lda)]);  // every byte written
    im2col_nhwc_u8_rows(geom, img.get(), static_cast<uint8_t>(z), lda, ap.get(), r0, r1);
    const GemmArgs g = linear_gemm_args(ap.get(), lda, r1 - r0, kg, packed, colsum, col_scale, n, p, row_offset.data(),
                                        row_scale.data(), static_cast<char*>(out) + static_cast<size_t>(r0 * n) * out_elem);
    fn(g, 0, g.m, 0, n_panels(n));
  });
}

}  // namespace lowbit
