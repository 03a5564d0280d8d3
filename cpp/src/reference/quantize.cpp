// Reference (scalar) quantize/dequantize row kernels: the C++ spec every ISA kernel must match
// bit for bit. Always compiled, with the baseline flags only.
#include "reference/quantize.hpp"

#include "reference/scalar.hpp"

namespace lowbit {
namespace ref {
namespace {

template <class T>
void quantize_run(const float* x, int64_t n, const AffineRow& p, const Rounding& r, T* q) {
  const int64_t step = p.per_element ? 1 : 0;
  uint32_t hi = static_cast<uint32_t>(r.counter >> 32);
  uint32_t key = detail::stream_key(r.seed, hi);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = i * step;
    int32_t v;
    if (r.stochastic) {
      uint64_t c = r.counter + static_cast<uint64_t>(i);
      if (static_cast<uint32_t>(c >> 32) != hi) {
        hi = static_cast<uint32_t>(c >> 32);
        key = detail::stream_key(r.seed, hi);
      }
      float u = detail::uniform01(static_cast<uint32_t>(c), key);
      v = detail::quantize_one_stochastic(x[i], p.inv_scale[j], p.zero_point[j], p.qmin, p.qmax, u);
    } else {
      v = detail::quantize_one(x[i], p.inv_scale[j], p.zero_point[j], p.qmin, p.qmax);
    }
    q[i] = static_cast<T>(v);
  }
}

template <class T>
void quantize_row(const float* x, int64_t n, const AffineRow& p, const Rounding& r, T* q) {
  detail::for_each_param_run(n, p, [&](int64_t b, int64_t e, const AffineRow& pg) {
    Rounding rg = r;
    rg.counter += static_cast<uint64_t>(b);
    quantize_run(x + b, e - b, pg, rg, q + b);
  });
}

template <class T>
void dequantize_row(const T* q, int64_t n, const AffineRow& p, float* out) {
  detail::for_each_param_run(n, p, [&](int64_t b, int64_t e, const AffineRow& pg) {
    const int64_t step = pg.per_element ? 1 : 0;
    for (int64_t i = b; i < e; ++i)
      out[i] = detail::dequantize_one(q[i], pg.scale[(i - b) * step], pg.zero_point[(i - b) * step]);
  });
}

}  // namespace

void quantize_f32_s8(const float* x, int64_t n, const AffineRow& p, const Rounding& r, int8_t* q) {
  quantize_row(x, n, p, r, q);
}
void quantize_f32_u8(const float* x, int64_t n, const AffineRow& p, const Rounding& r, uint8_t* q) {
  quantize_row(x, n, p, r, q);
}
void dequantize_s8_f32(const int8_t* q, int64_t n, const AffineRow& p, float* out, bool) {
  dequantize_row(q, n, p, out);
}
void dequantize_u8_f32(const uint8_t* q, int64_t n, const AffineRow& p, float* out, bool) {
  dequantize_row(q, n, p, out);
}
void fake_quantize_f32_f32(const float* x, int64_t n, const AffineRow& p, const Rounding& r, float* out) {
  // Same integer as quantize, then the same dequantize arithmetic: bit-identical to two steps.
  constexpr int64_t kChunk = 256;
  int32_t tmp[kChunk];
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t m = n - b < kChunk ? n - b : kChunk;
    const AffineRow sub = detail::advance(p, b);
    Rounding rs = r;
    rs.counter += static_cast<uint64_t>(b);
    quantize_row(x + b, m, sub, rs, tmp);
    detail::for_each_param_run(m, sub, [&](int64_t s, int64_t e, const AffineRow& pg) {
      const int64_t step = pg.per_element ? 1 : 0;
      for (int64_t i = s; i < e; ++i)
        out[b + i] = detail::dequantize_one(tmp[i], pg.scale[(i - s) * step], pg.zero_point[(i - s) * step]);
    });
  }
}
void convert_f16_f32(const uint16_t* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = detail::f16_to_f32(x[i]);
}

void pack_s8_s4(const int8_t* v, int64_t n_bytes, uint8_t* out) { detail::pack_nibbles(v, n_bytes, out); }
void unpack_s4_s8(const uint8_t* in, int64_t n_bytes, int8_t* out) { detail::unpack_nibbles_s4(in, n_bytes, out); }
void unpack_u4_s8(const uint8_t* in, int64_t n_bytes, int8_t* out) { detail::unpack_nibbles_u4(in, n_bytes, out); }

}  // namespace ref
}  // namespace lowbit
