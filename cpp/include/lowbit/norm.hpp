// lowbit/norm.hpp: LayerNorm over the last axis, the float op between a transformer's quantized
// layers (lowbit.nn.LayerNorm). Public C++ API: kernel signature + op.
//
// Contract shared by the kernel and the op, for each row r of n values:
//   mean = sum(x) / n, var = sum((x - mean)^2) / n (two passes, float32 sums in the ISA's lanes),
//   y = (x - mean) * rstd * gamma + beta, rstd = 1 / sqrt(var + eps) (gamma / beta optional).
// Results agree with a float64 evaluation to a few float32 ulps of the row's scale; the lane
// count sets the summation order, so ISAs are not bit-identical (neither are torch's CPU paths).
// NaN / inf in a row make that row's outputs NaN, as torch's.
#pragma once

#include <cstdint>

namespace lowbit {

namespace kernels {
// Rows [0, rows) of x (row stride ldx) into y (row stride ldy); n >= 1; y may be x.
using LayerNormF32Fn = void (*)(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n,
                                const float* gamma, const float* beta, float eps);
}  // namespace kernels

// Op: the dispatched kernel over row chunks on the thread pool. Same preconditions.
void layer_norm(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, const float* gamma,
                const float* beta, float eps);

}  // namespace lowbit
