// Kernels layer: the per-ISA finite-range kernels (kernels/<isa>/range.cpp) and their type; the
// contract is the reference's (reference/range.hpp): min(0, finite x), max(0, finite x) of a row.
#pragma once

#include <cstdint>

#define LOWBIT_DECLARE_RANGE_KERNELS void finite_range_f32(const float* x, int64_t n, float* lo, float* hi);

namespace lowbit {
namespace kernels {
using FiniteRangeFn = void (*)(const float* x, int64_t n, float* lo, float* hi);
namespace avx2 {
LOWBIT_DECLARE_RANGE_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_RANGE_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
