// lowbit/linear_4bit.hpp: y = x @ dequant(W).T + bias with 4-bit weights (int4 group-wise symmetric,
// or NF4), decoded in registers; no float32 copy of W is ever written. Public C++ API.
//
// Packed layout (lowbit.pack_weight(w, dtype="int4"|"nf4")), shared by both activation paths:
// N is padded to np (a multiple of 16) and K to kp (a multiple of the group, itself a multiple of
// 32). Codes are unsigned nibbles u in [0, 15]: int4 stores q + 8 (level u - 8), NF4 the index
// into kNf4Levels; padding holds the code of 0.0. Panel p (columns 16p .. 16p + 15) is kp / 8
// blocks of 64 bytes, one per k octet o (k = 8o .. 8o + 7); byte 4c + j of a block holds column
// 16p + c at k = 8o + j in its low nibble and k = 8o + 4 + j in its high nibble. One 64-byte load
// is thus 16 columns x 8 k: the low nibbles are the VNNI operand of k = 8o..8o+3 (4 bytes per
// column), the high nibbles that of 8o+4..8o+7, and (code >> (8j + 4h)) & 15 per 32-bit lane is
// the code of k = 8o + 4h + j for the float path. scales: (kp / group, np) float32, group-major.
//
// Float path (act "float"): per column, t_g = fma chain over the group's k in increasing order of
// x[k] * level(code), then acc = fma(t_g, scale_g, acc) over groups in order, then + bias. Every
// ISA runs exactly this sequence, so all agree bit for bit with the scalar reference.
// Int8 path (act "int8", int4 only): each row's group g of x is quantized symmetrically,
// amax = max |x|, xq = clamp(nearbyint(x * min(127 / amax, FLT_MAX)), -127, 127), xscale =
// amax / 127 (amax = 0: xq = 0, xscale = 0; a non-finite value in the group: xq = 0, xscale = NaN,
// so the row's outputs are NaN); then d = sum_k u * xq - 8 * sum_k xq (exact int32) and
// acc += (float(d) * scale_g) * xscale_g in float32, in group order, then + bias: bit-identical
// across ISAs and to the NumPy reference.
// Int8 path for NF4 (act "int8" on NF4 weights): the same, with each code's level rounded to int8,
// l8[u] = nearbyint(127 * kNf4Levels[u]) (kNf4Int8Levels), d = sum_k l8[u] * xq, and the scales
// passed divided by 127 (absmax / 127). AVX-512 VNNI feeds xq + 128 as the unsigned operand and
// subtracts 128 * wsum (per group and column sums of l8, precomputed); AVX2 multiplies |l8| by
// sign-adjusted xq. Both give the exact d.
#pragma once

#include <cstdint>

namespace lowbit {

constexpr int64_t kL4Panel = 16;       // columns per panel
constexpr int64_t kL4BlockBytes = 64;  // bytes per (panel, k octet)
// N padded to whole panels: the row length of the scales, wsum and panel layout.
inline int64_t l4_padded_n(int64_t n) { return (n + kL4Panel - 1) / kL4Panel * kL4Panel; }

struct Linear4Args {
  const float* x;        // float path: (m, kp) rows with stride ldx, zero beyond k
  const int8_t* xq;      // int8 path: (m, kp) quantized rows, stride ldxq, then zero rows up to a multiple of 16
  int64_t ldxq;          // int8 path: tile_row_stride(kp) (lowbit/matmul.hpp)
  const float* xscale;   // int8 path: (m, kp / group)
  const int32_t* xsum8;  // int8 path: (m, kp / group), 8 * sum of the group's xq
  const int32_t* wsum;   // NF4 int8 path: (kp / group, np) sums of the int8 levels
  int64_t m, ldx;
  const uint8_t* w;     // panel layout above
  const float* scales;  // (kp / group, np)
  const float* bias;    // (n,) or nullptr
  int64_t n, kp, group;
  float* y;  // (m, n) row-major, row stride ldy
  int64_t ldy;
  // Ops only: rotated inputs (lowbit/rotation.hpp): x R is what gets quantized or multiplied.
  const float* rot_signs;  // (k,) or nullptr
  int64_t rot_block;       // 0: none
};

namespace kernels {
// Computes the output columns of panels [p0, p1) for all m rows.
using Linear4Fn = void (*)(const Linear4Args& a, int64_t p0, int64_t p1);
// Quantizes one row x[0, k) (zero up to kp) per group as the int8 path above describes.
using Quant4RowFn = void (*)(const float* x, int64_t k, int64_t kp, int64_t group, int8_t* xq, float* xscale,
                             int32_t* xsum8);
}  // namespace kernels

// NF4 levels rounded to int8 (nearbyint(127 * kNf4Levels[u])), the NF4 int8 path's weights.
constexpr int8_t kNf4Int8Levels[16] = {-127, -88, -67, -50, -36, -23, -12, 0, 10, 20, 31, 43, 56, 71, 92, 127};

enum class Linear4Kind { kInt4Float, kNf4Float, kInt4Int8, kNf4Int8 };

// Ops: pads / quantizes the activations, splits the panels over threads. x is (m, k) with row
// stride ldx; the args' activation fields are filled here.
// `kernel` (tests only) replaces the dispatched kernel, e.g. with a twin of one this CPU cannot run.
void linear_4bit(Linear4Args a, const float* x, int64_t k, Linear4Kind kind, kernels::Linear4Fn kernel = nullptr);

}  // namespace lowbit
