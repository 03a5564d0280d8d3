// Int8 GEMM ops (ops layer): weight packing, activation packing / dynamic quantization, cache
// blocking into tasks, threads over (row chunk, panel chunk) tasks, and the dispatched kernels.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <vector>

#include "dispatch/matmul.hpp"
#include "dispatch/quantize.hpp"
#include "lowbit/matmul.hpp"
#include "lowbit/parallel.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace {

constexpr int64_t kAChunkBytes = 128 << 10;  // packed activation rows per task stay in L2
constexpr int64_t kBChunkBytes = 256 << 10;  // packed weight panels per task stay in L2
constexpr int64_t kMinTaskMacs = 1 << 18;    // below this a task is not worth a thread
constexpr int64_t kRowGrainElems = 1 << 14;  // activation packing: elements per task, at least

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Splits the GEMM into (row chunk, panel chunk) tasks; consecutive tasks share a weight chunk.
void run_gemm(const OpTable<kernels::GemmTaskFn>& table, const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  kernels::GemmTaskFn fn = table.get();
  const int64_t panels = n_panels(g.n);
  const int64_t kp = std::max<int64_t>(g.k_groups * kKGroup, kKGroup);
  const int64_t threads = get_num_threads();
  int64_t mc = std::max<int64_t>(8, kAChunkBytes / kp / 8 * 8);
  mc = std::min(mc, round_up(g.m, 8));
  int64_t pc = std::max<int64_t>(3, kBChunkBytes / (kp * kPanelCols) / 3 * 3);
  pc = std::min(pc, panels);
  const int64_t m_tasks = (g.m + mc - 1) / mc;
  // Enough tasks to balance the threads, but no task too small to pay for its wake-up.
  while (pc > 3 && m_tasks * ((panels + pc - 1) / pc) < 4 * threads) pc = std::max<int64_t>(3, pc / 2 / 3 * 3);
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

void for_rows(int64_t m, int64_t k, const std::function<void(int64_t, int64_t)>& fn) {
  parallel_range(m, std::max<int64_t>(1, kRowGrainElems / std::max<int64_t>(k, 1)), 1, fn);
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

// min(0, finite x) and max(0, finite x) of a row; NaN and +-inf are left out.
void finite_min_max(const float* x, int64_t n, float* lo_out, float* hi_out) {
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    v = (v - v) == 0.0f ? v : 0.0f;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  *lo_out = lo;
  *hi_out = hi;
}

}  // namespace

void pack_weight_s8(const int8_t* w, int64_t n, int64_t k, int64_t stride_n, int64_t stride_k, int8_t* packed,
                    int32_t* colsum) {
  const int64_t kg = k_groups(k);
  const int64_t kp = kg * kKGroup;
  const int64_t panels = n_panels(n);
  // Walk the source along its smaller stride: k inner for (N, K) rows, columns inner for (K, N).
  const bool k_inner = std::abs(stride_k) <= std::abs(stride_n);
  parallel_range(panels, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(kp * kPanelCols, 1)), 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      int8_t* dst = packed + p * kp * kPanelCols;
      const int64_t jn = std::min<int64_t>(kPanelCols, n - p * kPanelCols);
      int32_t sums[kPanelCols] = {};
      if (k_inner) {
        for (int64_t j = 0; j < kPanelCols; ++j) {
          const int8_t* src = w + (p * kPanelCols + j) * stride_n;
          for (int64_t t = 0; t < kp; ++t) {
            const int8_t v = (j < jn && t < k) ? src[t * stride_k] : static_cast<int8_t>(0);
            dst[((t / 4) * kPanelCols + j) * 4 + (t & 3)] = v;
            sums[j] += v;
          }
        }
      } else {
        for (int64_t t = 0; t < kp; ++t) {
          const int8_t* src = w + t * stride_k + p * kPanelCols * stride_n;
          int8_t* d = dst + (t / 4) * kPanelCols * 4 + (t & 3);
          for (int64_t j = 0; j < kPanelCols; ++j) {
            const int8_t v = (j < jn && t < k) ? src[j * stride_n] : static_cast<int8_t>(0);
            d[j * 4] = v;
            sums[j] += v;
          }
        }
      }
      for (int64_t j = 0; j < kPanelCols; ++j) colsum[p * kPanelCols + j] = sums[j];
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

void matmul_packed(const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am, int64_t stride_ak,
                   const int8_t* packed, const int32_t* colsum, int64_t n, int32_t* c) {
  if (m == 0 || n == 0) return;
  const int64_t kg = k_groups(k);
  const int64_t lda = std::max<int64_t>(kg * kKGroup, kKGroup);
  std::vector<uint8_t> ap(static_cast<size_t>(m * lda));
  // s8 activations are stored as a + 128 (u8) for vpdpbusd; row_offset 128 undoes it with colsum.
  const uint8_t flip = a_signed ? 0x80 : 0x00;
  for_rows(m, k, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const uint8_t* src = a + i * stride_am;
      uint8_t* dst = ap.data() + i * lda;
      if (stride_ak == 1) {
        for (int64_t t = 0; t < k; ++t) dst[t] = static_cast<uint8_t>(src[t] ^ flip);
      } else {
        for (int64_t t = 0; t < k; ++t) dst[t] = static_cast<uint8_t>(src[t * stride_ak] ^ flip);
      }
      for (int64_t t = k; t < lda; ++t) dst[t] = 0;
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
  run_gemm(a_signed ? dispatch::matmul_s8s8_s32 : dispatch::matmul_u8s8_s32, g);
}

void linear_packed(const float* x, int64_t m, int64_t k, const int8_t* packed, const int32_t* colsum,
                   const float* col_scale, int64_t n, const LinearParams& p, void* out) {
  if (m == 0 || n == 0) return;
  const int64_t kg = k_groups(k);
  const int64_t lda = std::max<int64_t>(kg * kKGroup, kKGroup);
  std::vector<uint8_t> ap(static_cast<size_t>(m * lda));
  std::vector<int32_t> row_offset(static_cast<size_t>(m));
  std::vector<float> row_scale(static_cast<size_t>(m));
  float t_scale = p.act_scale;
  int32_t t_zp = p.act_zero_point + (p.act_signed ? 128 : 0);
  if (p.act == ActMode::kDynamicTensor) {
    std::vector<float> lo(static_cast<size_t>(m)), hi(static_cast<size_t>(m));
    for_rows(m, k, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) finite_min_max(x + i * k, k, &lo[i], &hi[i]);
    });
    dynamic_params(*std::min_element(lo.begin(), lo.end()), *std::max_element(hi.begin(), hi.end()), &t_scale, &t_zp);
  }
  auto qu8 = dispatch::quantize_f32_u8.get();
  for_rows(m, k, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      float s = t_scale;
      int32_t z = t_zp;
      if (p.act == ActMode::kDynamicRow) {
        float lo, hi;
        finite_min_max(x + i * k, k, &lo, &hi);
        dynamic_params(lo, hi, &s, &z);
      }
      const float inv = 1.0f / s;
      const AffineRow ar{&s, &inv, &z, false, 0, 255};
      uint8_t* dst = ap.data() + i * lda;
      qu8(x + i * k, k, ar, Rounding{}, dst);
      for (int64_t t = k; t < lda; ++t) dst[t] = 0;
      row_scale[i] = s;
      row_offset[i] = z;
    }
  });
  GemmArgs g;
  g.a = ap.data();
  g.lda = lda;
  g.m = m;
  g.k_groups = kg;
  g.b = packed;
  g.n = n;
  g.kind = p.requant ? EpilogueKind::kRequant : EpilogueKind::kFloat;
  g.row_offset = row_offset.data();
  g.colsum = colsum;
  g.row_scale = row_scale.data();
  g.col_scale = col_scale;
  g.bias = p.bias;
  g.relu = p.relu;
  g.out_inv_scale = 1.0f / p.out_scale;
  g.out_zero_point = p.out_zero_point;
  g.out = out;
  g.ldo = n;
  run_gemm(p.requant ? dispatch::linear_f32_s8w_s8 : dispatch::linear_f32_s8w_f32, g);
}

}  // namespace lowbit
