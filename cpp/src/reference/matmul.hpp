// Reference layer: the int8 GEMM spec (lowbit::ref: the plain matmuls and the scalar task on packed
// data) and the per-element epilogue that every ISA's task (kernels/matmul.hpp) follows.
#pragma once

#include <algorithm>
#include <cstdint>

#include "lowbit/matmul.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace ref {
// The scalar task on packed data (lowbit/matmul.hpp's kernels::GemmTaskFn contract).
void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1);

// The spec: C[i][j] = sum_k A[i][k] * B[k][j] in int32 with wrap-around (exact when it fits).
// Strides in elements, any sign; c is m x n contiguous.
void matmul_s8s8_s32(const int8_t* a, int64_t m, int64_t k, int64_t sam, int64_t sak, const int8_t* b, int64_t n,
                     int64_t sbk, int64_t sbn, int32_t* c);
void matmul_u8s8_s32(const uint8_t* a, int64_t m, int64_t k, int64_t sam, int64_t sak, const int8_t* b, int64_t n,
                     int64_t sbk, int64_t sbn, int32_t* c);
}  // namespace ref

namespace detail {

inline int32_t wrap_sub_mul(int32_t acc, int32_t off, int32_t colsum) {
  return static_cast<int32_t>(static_cast<uint32_t>(acc) - static_cast<uint32_t>(off) * static_cast<uint32_t>(colsum));
}

// The epilogue of lowbit/matmul.hpp for one accumulator; the SIMD kernels follow the same steps.
inline void epilogue_one(const GemmArgs& g, int64_t i, int64_t j, int32_t acc) {
  const int32_t v = wrap_sub_mul(acc, g.row_offset[i], g.colsum[j]);
  if (g.kind == EpilogueKind::kInt32) {
    static_cast<int32_t*>(g.out)[i * g.ldo + j] = v;
    return;
  }
  float y = static_cast<float>(v) * (g.row_scale[i] * g.col_scale[j]);
  if (g.bias != nullptr) y = y + g.bias[j];
  if (g.relu) y = std::max(y, 0.0f);
  if (g.kind == EpilogueKind::kFloat) {
    static_cast<float*>(g.out)[i * g.ldo + j] = y;
  } else {
    static_cast<int8_t*>(g.out)[i * g.ldo + j] =
        static_cast<int8_t>(quantize_one(y, g.out_inv_scale, g.out_zero_point, -128, 127));
  }
}

}  // namespace detail
}  // namespace lowbit
