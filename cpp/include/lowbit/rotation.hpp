// lowbit/rotation.hpp: the blocked Walsh-Hadamard rotation that rotated layers apply to their
// input (lowbit.rotate / QuantConfig(rotation=...)). Public C++ API: kernel signature + op.
//
// Contract shared by the kernel and the op, for each row r and each block j of b = block columns:
//   y[r, jb : jb + b] = H_b (s[jb : jb + b] * x[r, jb : jb + b]) * c,   c = float(1 / sqrt(b)),
// H_b the Sylvester Hadamard matrix (H_1 = [1], H_2m = [[H_m, H_m], [H_m, -H_m]]), so the rotation
// is orthogonal for signs s of +-1. Every ISA evaluates it in one order, so results are
// bit-identical across ISAs: v = x * s; then the butterfly stages h = 1, 2, 4, ..., b / 2, each
// pair (i, i + h) with i & h == 0 becoming (v_i + v_{i+h}, v_i - v_{i+h}); then y = v * c.
// NaN and inf propagate through the sums as IEEE arithmetic gives them.
#pragma once

#include <cstdint>

namespace lowbit {

namespace kernels {
// Rows [0, rows) of x (row stride ldx floats) into y (row stride ldy); k a multiple of block,
// block a power of two >= 1. y may be x (in place: each block is read before it is written).
using HadamardF32Fn = void (*)(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k,
                               const float* signs, int64_t block);
}  // namespace kernels

// Op: the dispatched kernel over row chunks on the thread pool. Same preconditions.
void hadamard_rows(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k, const float* signs,
                   int64_t block);

}  // namespace lowbit
