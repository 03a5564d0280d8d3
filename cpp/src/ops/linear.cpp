// Int8-weight linear op (ops layer): quantizes and packs the float32 activations (pack.cpp), then
// runs the dispatched task kernel with the fused float / requantizing epilogue.
#include <memory>
#include <vector>

#include "dispatch/matmul.hpp"
#include "lowbit/matmul.hpp"
#include "ops/gemm_ops.hpp"

namespace lowbit {
namespace detail {

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

kernels::GemmTaskFn linear_kernel(const LinearParams& p) {
  return (p.requant ? dispatch::linear_f32_s8w_s8 : dispatch::linear_f32_s8w_f32).get();
}

void run_linear_gemm(const uint8_t* ap, int64_t lda, int64_t m, int64_t kg, const int8_t* packed, const int32_t* colsum,
                     const float* col_scale, int64_t n, const LinearParams& p, const int32_t* row_offset,
                     const float* row_scale, void* out) {
  run_gemm_with(linear_kernel(p),
                linear_gemm_args(ap, lda, m, kg, packed, colsum, col_scale, n, p, row_offset, row_scale, out));
}

}  // namespace detail

void linear_packed(const float* x, int64_t m, int64_t k, const int8_t* packed, const int32_t* colsum,
                   const float* col_scale, int64_t n, const LinearParams& p, void* out) {
  if (m == 0 || n == 0) return;
  const int64_t kg = k_groups(k);
  const int64_t lda = packed_act_stride(k);
  std::unique_ptr<uint8_t[]> ap(new uint8_t[static_cast<size_t>(m * lda)]);  // every byte written
  std::vector<int32_t> row_offset(static_cast<size_t>(m));
  std::vector<float> row_scale(static_cast<size_t>(m));
  detail::pack_act_f32(x, m, k, p, lda, ap.get(), row_offset.data(), row_scale.data());
  detail::run_linear_gemm(ap.get(), lda, m, kg, packed, colsum, col_scale, n, p, row_offset.data(), row_scale.data(),
                          out);
}

void linear_packed_parts(const float* x, int64_t m, int64_t k, const LinearPart* parts, int64_t count) {
  if (m == 0 || count == 0) return;
  const int64_t kg = k_groups(k);
  const int64_t lda = packed_act_stride(k);
  std::unique_ptr<uint8_t[]> ap(new uint8_t[static_cast<size_t>(m * lda)]);  // every byte written
  std::vector<int32_t> row_offset(static_cast<size_t>(m));
  std::vector<float> row_scale(static_cast<size_t>(m));
  detail::pack_act_f32(x, m, k, parts[0].p, lda, ap.get(), row_offset.data(), row_scale.data());
  std::vector<GemmArgs> gs;
  std::vector<kernels::GemmTaskFn> fns;
  for (int64_t j = 0; j < count; ++j) {
    const LinearPart& q = parts[j];
    gs.push_back(detail::linear_gemm_args(ap.get(), lda, m, kg, q.packed, q.colsum, q.col_scale, q.n, q.p,
                                          row_offset.data(), row_scale.data(), q.out));
    fns.push_back(detail::linear_kernel(q.p));
  }
  detail::run_gemms_with(fns.data(), gs.data(), count);
}

}  // namespace lowbit
