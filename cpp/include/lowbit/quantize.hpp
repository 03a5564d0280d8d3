// lowbit/quantize.hpp: the affine quantization contract shared by every kernel and op.
// Public C++ API: parameter structs, row-kernel signatures and the ops that drive them.
//
// Contract (bit-identical to torch.quantize_per_tensor / quantize_per_channel for finite x):
//   q = clamp(round_half_even(x * inv_scale) + zero_point, qmin, qmax), inv_scale = 1.0f / scale
//   in float32; NaN -> zero_point; +inf -> qmax; -inf -> qmin.
//   Stochastic: q = clamp(floor(x * inv_scale + u) + zero_point, qmin, qmax), u in [0, 1) from a
//   counter-based hash of (seed, flat element index): reproducible for any thread count.
//   dequantize: (q - zero_point) * scale in float32. fake_quantize = dequantize(quantize(x)).
#pragma once

#include <cstdint>

namespace lowbit {

// Quantization parameters for one contiguous run of elements. Either one set for the whole run
// (per_element = false, arrays of length 1) or one set per element (per-channel on the last axis).
struct AffineRow {
  const float* scale;
  const float* inv_scale;
  const int32_t* zero_point;
  bool per_element;
  int32_t qmin;
  int32_t qmax;
  // Per-group parameters (per_element false, group > 0): element i uses parameter set
  // (i + group_phase) / group, so a run may start inside a group.
  int64_t group = 0;
  int64_t group_phase = 0;
};

struct Rounding {
  bool stochastic = false;
  uint64_t seed = 0;
  uint64_t counter = 0;  // flat index of the run's first element in the whole tensor
};

namespace detail {
// The parameters of a run that starts `k` elements into run `p`.
inline AffineRow advance(AffineRow p, int64_t k) {
  int64_t step = k;
  if (!p.per_element) {
    if (p.group <= 0) return p;
    step = (p.group_phase + k) / p.group;
    p.group_phase = (p.group_phase + k) % p.group;
  }
  p.scale += step;
  p.inv_scale += step;
  p.zero_point += step;
  return p;
}

// Calls f(begin, end, params) for each sub-run whose parameters are one set or per element: the
// groups of a per-group run. Kernels call this so short groups cost no call overhead.
template <class F>
inline void for_each_param_run(int64_t n, const AffineRow& p, F&& f) {
  if (p.per_element || p.group <= 0) {
    f(int64_t{0}, n, p);
    return;
  }
  AffineRow g = p;
  g.group = 0;
  g.group_phase = 0;
  int64_t b = 0;
  int64_t e = p.group - p.group_phase < n ? p.group - p.group_phase : n;
  while (b < n) {
    f(b, e, g);
    ++g.scale;
    ++g.inv_scale;
    ++g.zero_point;
    b = e;
    e = e + p.group < n ? e + p.group : n;
  }
}
}  // namespace detail

namespace kernels {
// Row kernels: x and outputs contiguous, no aliasing between input and output, n >= 0.
using QuantizeS8Fn = void (*)(const float* x, int64_t n, const AffineRow& p, const Rounding& r, int8_t* q);
using QuantizeU8Fn = void (*)(const float* x, int64_t n, const AffineRow& p, const Rounding& r, uint8_t* q);
// stream: use non-temporal stores (large outputs that will not be re-read soon).
using DequantizeS8Fn = void (*)(const int8_t* q, int64_t n, const AffineRow& p, float* out, bool stream);
using DequantizeU8Fn = void (*)(const uint8_t* q, int64_t n, const AffineRow& p, float* out, bool stream);
using FakeQuantizeFn = void (*)(const float* x, int64_t n, const AffineRow& p, const Rounding& r, float* out);
// IEEE binary16 -> binary32, exact.
using ConvertF16F32Fn = void (*)(const uint16_t* x, int64_t n, float* out);
// 4-bit nibbles, low nibble first: out[j] = (v[2j] & 15) | (v[2j+1] << 4) for j < n_bytes, and the
// inverse (sign-extending for s4, zero-extending for u4) writing 2 * n_bytes values.
using PackS4Fn = void (*)(const int8_t* v, int64_t n_bytes, uint8_t* out);
using UnpackS4Fn = void (*)(const uint8_t* in, int64_t n_bytes, int8_t* out);
}  // namespace kernels

}  // namespace lowbit

namespace lowbit {

enum class QDtype { kInt8, kUint8, kInt4, kUint4 };

inline int qdtype_bits(QDtype d) { return (d == QDtype::kInt4 || d == QDtype::kUint4) ? 4 : 8; }
inline bool qdtype_signed(QDtype d) { return d == QDtype::kInt8 || d == QDtype::kInt4; }

// How parameters map onto a tensor viewed as (rows, cols), cols being its last axis.
enum class ParamMode {
  kTensor,   // one (scale, zero_point)
  kRow,      // per channel on a non-last axis: param = (row / row_div) % n_params
  kElement,  // per channel on the last axis: param = col
  kGroup,    // per group along the last axis: param = row * ceil(cols / group_size) + col / group_size
};

struct QuantLayout {
  int64_t rows = 0;
  int64_t cols = 0;
  QDtype dtype = QDtype::kInt8;
  ParamMode mode = ParamMode::kTensor;
  int64_t row_div = 1;
  int64_t group_size = 0;
  int64_t n_params = 1;
  const float* scale = nullptr;         // n_params values, finite and > 0 (validated by the caller)
  const int32_t* zero_point = nullptr;  // n_params values in [qmin, qmax]
  int32_t qmin = -128;
  int32_t qmax = 127;
  // Bytes per output row: cols for 8-bit, ceil(cols / 2) for 4-bit (low nibble = even column,
  // the pad nibble of an odd row is 0).
  int64_t row_bytes() const { return qdtype_bits(dtype) == 4 ? cols / 2 + (cols & 1) : cols; }
};

// Ops: split work over threads, resolve parameters per run, call the dispatched kernels.
// x (f32 or IEEE f16 bits) is contiguous rows*cols; q is rows*row_bytes(); out is rows*cols.
void quantize(const float* x, const QuantLayout& l, const Rounding& r, uint8_t* q);
void quantize_f16(const uint16_t* x, const QuantLayout& l, const Rounding& r, uint8_t* q);
void dequantize(const uint8_t* q, const QuantLayout& l, float* out);
void fake_quantize(const float* x, const QuantLayout& l, const Rounding& r, float* out);
void fake_quantize_f16(const uint16_t* x, const QuantLayout& l, const Rounding& r, float* out);

}  // namespace lowbit
