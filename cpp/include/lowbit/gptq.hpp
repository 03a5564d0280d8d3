// lowbit/gptq.hpp: the column loop of GPTQ (Frantar et al., ICLR 2023) inside one block of columns,
// in float32, for any fixed-parameter quantizer given as a grid. Public C++ API: the op.
//
// Formulation (python/lowbit/core/gptq.py): with H = R R^T (R upper) and A = R scaled to a unit
// diagonal (A[i, j] = R[i, j] / R[j, j]), GPTQ's OBS updates are equivalent to rounding
//   x_j = w_j + sum_{i<j} (w_i - q_i) A[i, j],   q_j = Q_j(x_j)
// column by column (rows are independent). The op runs columns [begin, end) of that recurrence;
// the contributions of the columns before `begin` are already in x (the caller's GEMM).
//
// Contract (exactly the NumPy float32 reference `_columns_numpy` in gptq.py, any thread count):
//   for j in [begin, end):
//     q[:, j] = Q_j(x[:, j]); delta[:, j] = w[:, j] - q[:, j]
//     x[:, l] = x[:, l] + delta[:, j] * a[j, l]   for l in (j, end), each product rounded to float32
//   Affine grid: Q = (clamp(nearbyint(clamp(x * (1 / s), qmin - z, qmax - z))) + z - z) * s, i.e.
//     lowbit's quantize contract with s = scale[r, group[j]], z = zero_point[r, group[j]] (float32
//     1 / s). Codebook grid (levels L, ascending thresholds L - 1): y = x * (s > 0 ? 1 / s : 0),
//     code = #{t : t < y} (NaN: L - 1, as NumPy's searchsorted), Q = levels[code] * s.
#pragma once

#include <cstdint>

namespace lowbit {

struct GptqGrid {
  const float* scale;         // (n, groups) float32: the step (affine) or absmax (codebook)
  const int32_t* zero_point;  // (n, groups) or nullptr (zeros); affine only
  const int32_t* group;       // (k,) column -> group index in [0, groups)
  int64_t groups;
  int32_t qmin, qmax;       // affine integer range
  const float* levels;      // codebook levels (n_levels) or nullptr for the affine grid
  const float* thresholds;  // n_levels - 1 ascending decision thresholds
  int32_t n_levels;
};

// x, w, q, delta: (n, k) row-major float32; a: (k, k) row-major float32 (only rows and columns in
// [begin, end) are read). Rows are split over threads (parallel.hpp); each thread keeps a few rows'
// block in L1 while it walks the columns.
void gptq_columns(float* x, const float* w, float* q, float* delta, const float* a, int64_t n, int64_t k, int64_t begin,
                  int64_t end, const GptqGrid& grid);

}  // namespace lowbit
