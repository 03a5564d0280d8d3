// lowbit/linear4.hpp: float32 activations x 4-bit weights (int4 group-wise symmetric, or NF4),
// y = x @ dequant(W).T + bias, for small M (GEMV / decode). Public C++ API.
//
// Packed weight layout (lowbit.pack_weight(w, dtype="int4"|"nf4")): row n of W (N, K) is K / 2
// bytes; K is cut into chunks of 32 and byte j of a chunk holds element j in its low nibble and
// element j + 16 in its high nibble (so a 16-byte load unpacks to two runs of 16 consecutive k
// without shuffles). Codes: int4 two's complement in [-8, 7]; NF4 an index into kNf4Levels.
// scales: (N, K / group) float32, group a multiple of 32 dividing K.
// Numerics: per group t = sum_k x[k] * level(code[k]) in float32, then acc += t * scale, then
// + bias; summation order differs between ISAs, so results agree with the exact product to within
// float32 accumulation error (bound documented in python/lowbit/packed4.py), not bit for bit.
// Weights are decoded in registers only; no float32 copy of W is ever written.
#pragma once

#include <cstdint>

namespace lowbit {

struct Linear4Args {
  const float* x;       // (m, k) row-major, row stride ldx
  int64_t m, k, ldx;
  const uint8_t* w;     // (n, k / 2) packed as above
  const float* scales;  // (n, k / group)
  const float* bias;    // (n,) or nullptr
  int64_t group;
  float* y;             // (m, n) row-major, row stride ldy
  int64_t ldy;
};

namespace kernels {
// Computes output columns [n0, n1) of y for all m rows.
using Linear4Fn = void (*)(const Linear4Args& a, int64_t n0, int64_t n1);
}  // namespace kernels

// Ops: split N over threads. `nf4` selects the code table.
void linear_f32_4bit(const Linear4Args& a, int64_t n, bool nf4);

}  // namespace lowbit
