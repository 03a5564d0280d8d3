// Quantize ops (ops layer): map granularity onto constant-parameter runs, pack/unpack 4-bit
// nibbles, widen f16 input, split the work over threads, and call the dispatched row kernels.
#include "dispatch/quantize.hpp"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "lowbit/parallel.hpp"
#include "lowbit/quantize.hpp"

namespace lowbit {
namespace {

constexpr int64_t kGrain = 1 << 15;         // elements per task, at least
constexpr int64_t kChunk = 2048;            // staging buffer (f16 widening, 4-bit packing)
constexpr int64_t kStreamBytes = 16 << 20;  // outputs this large bypass the caches on dequantize

struct Params {
  std::vector<float> inv;
  const QuantLayout* l;

  explicit Params(const QuantLayout& layout) : inv(static_cast<size_t>(layout.n_params)), l(&layout) {
    for (int64_t i = 0; i < layout.n_params; ++i) inv[i] = 1.0f / layout.scale[i];
  }

  AffineRow at(int64_t index, bool per_element) const {
    return AffineRow{l->scale + index, inv.data() + index, l->zero_point + index, per_element, l->qmin, l->qmax};
  }

  // Calls f(c0, c1, params) for each run of row r within [c0, c1) whose parameters are constant
  // (or per element, for kElement).
  template <class F>
  void for_each_run(int64_t r, int64_t c0, int64_t c1, F&& f) const {
    switch (l->mode) {
      case ParamMode::kTensor:
        f(c0, c1, at(0, false));
        break;
      case ParamMode::kRow:
        f(c0, c1, at((r / l->row_div) % l->n_params, false));
        break;
      case ParamMode::kElement:
        f(c0, c1, at(c0, true));
        break;
      case ParamMode::kGroup: {
        const int64_t g = l->group_size;
        AffineRow p = at(r * (l->cols / g + (l->cols % g != 0)) + c0 / g, false);
        p.group = g;
        p.group_phase = c0 % g;
        f(c0, c1, p);
        break;
      }
    }
  }
};

// Splits the flat rows*cols range over threads; fn(r, c0, c1) sees pieces of single rows. For
// 4-bit output with odd rows, pieces start on row boundaries so nibble pairs never straddle tasks.
template <class F>
void for_each_piece(const QuantLayout& l, F&& fn) {
  const int64_t total = l.rows * l.cols;
  if (total == 0) return;
  int64_t align = 64;
  if (qdtype_bits(l.dtype) == 4 && (l.cols % 2) != 0) align = l.cols;
  parallel_range(total, kGrain, align, [&](int64_t b, int64_t e) {
    while (b < e) {
      int64_t r = b / l.cols;
      int64_t c0 = b - r * l.cols;
      int64_t c1 = std::min(l.cols, c0 + (e - b));
      fn(r, c0, c1);
      b += c1 - c0;
    }
  });
}

// Writes columns [c0, c0 + n) of a packed row. Columns arrive in increasing order within a task
// and every task starts on an even column, so an even column may clear its byte's high nibble.
void pack_nibbles(kernels::PackS4Fn pack, const int8_t* v, int64_t c0, int64_t n, uint8_t* row) {
  int64_t i = 0;
  if ((c0 & 1) != 0 && n > 0) {
    row[c0 / 2] = static_cast<uint8_t>((row[c0 / 2] & 0x0f) | ((v[0] & 0x0f) << 4));
    i = 1;
  }
  const int64_t pairs = (n - i) / 2;
  pack(v + i, pairs, row + (c0 + i) / 2);
  i += 2 * pairs;
  if (i < n) row[(c0 + i) / 2] = static_cast<uint8_t>(v[i] & 0x0f);
}

// Reads columns [c0, c0 + n) of a packed row as int8 values.
void unpack_nibbles(kernels::UnpackS4Fn unpack, const uint8_t* row, int64_t c0, int64_t n, bool is_signed, int8_t* v) {
  auto one = [&](int64_t c) {
    int32_t nib = (row[c / 2] >> ((c & 1) * 4)) & 0x0f;
    return static_cast<int8_t>(is_signed && nib >= 8 ? nib - 16 : nib);
  };
  int64_t i = 0;
  if ((c0 & 1) != 0 && n > 0) v[i++] = one(c0);
  const int64_t pairs = (n - i) / 2;
  unpack(row + (c0 + i) / 2, pairs, v + i);
  i += 2 * pairs;
  if (i < n) v[i] = one(c0 + i);
}

template <class In, class Widen>
void quantize_impl(const In* x, const QuantLayout& l, const Rounding& rnd, uint8_t* q, Widen widen) {
  Params params(l);
  const bool four_bit = qdtype_bits(l.dtype) == 4;
  const bool as_signed = qdtype_signed(l.dtype) || four_bit;  // 4-bit values fit int8 either way
  auto qs8 = dispatch::quantize_f32_s8.get();
  auto qu8 = dispatch::quantize_f32_u8.get();
  auto pack = four_bit ? dispatch::pack_s8_s4.get() : nullptr;
  const int64_t row_bytes = l.row_bytes();
  for_each_piece(l, [&](int64_t r, int64_t c0, int64_t c1) {
    const In* xr = x + r * l.cols;
    uint8_t* qr = q + r * row_bytes;
    params.for_each_run(r, c0, c1, [&](int64_t a, int64_t b, const AffineRow& p) {
      if (std::is_same<In, float>::value && !four_bit) {
        // float32 in, bytes out: no staging, one kernel call for the whole run.
        Rounding rs = rnd;
        rs.counter = rnd.counter + static_cast<uint64_t>(r * l.cols + a);
        const float* src = reinterpret_cast<const float*>(xr) + a;
        if (as_signed) {
          qs8(src, b - a, p, rs, reinterpret_cast<int8_t*>(qr + a));
        } else {
          qu8(src, b - a, p, rs, qr + a);
        }
        return;
      }
      alignas(64) float fbuf[kChunk];
      alignas(64) int8_t qbuf[kChunk];
      for (int64_t s = a; s < b; s += kChunk) {
        const int64_t m = std::min(kChunk, b - s);
        const AffineRow ps = detail::advance(p, s - a);
        Rounding rs = rnd;
        rs.counter = rnd.counter + static_cast<uint64_t>(r * l.cols + s);
        const float* src = widen(xr + s, m, fbuf);
        if (four_bit) {
          qs8(src, m, ps, rs, qbuf);
          pack_nibbles(pack, qbuf, s, m, qr);
        } else if (as_signed) {
          qs8(src, m, ps, rs, reinterpret_cast<int8_t*>(qr + s));
        } else {
          qu8(src, m, ps, rs, qr + s);
        }
      }
    });
  });
}

template <class In, class Widen>
void fake_quantize_impl(const In* x, const QuantLayout& l, const Rounding& rnd, float* out, Widen widen) {
  Params params(l);
  auto fq = dispatch::fake_quantize_f32_f32.get();
  for_each_piece(l, [&](int64_t r, int64_t c0, int64_t c1) {
    params.for_each_run(r, c0, c1, [&](int64_t a, int64_t b, const AffineRow& p) {
      alignas(64) float fbuf[kChunk];
      for (int64_t s = a; s < b; s += kChunk) {
        const int64_t m = std::min(kChunk, b - s);
        const AffineRow ps = detail::advance(p, s - a);
        Rounding rs = rnd;
        rs.counter = rnd.counter + static_cast<uint64_t>(r * l.cols + s);
        fq(widen(x + r * l.cols + s, m, fbuf), m, ps, rs, out + r * l.cols + s);
      }
    });
  });
}

const float* identity_f32(const float* x, int64_t, float*) { return x; }

}  // namespace

void quantize(const float* x, const QuantLayout& l, const Rounding& r, uint8_t* q) {
  quantize_impl(x, l, r, q, identity_f32);
}

void quantize_f16(const uint16_t* x, const QuantLayout& l, const Rounding& r, uint8_t* q) {
  auto cvt = dispatch::convert_f16_f32.get();
  quantize_impl(x, l, r, q, [cvt](const uint16_t* s, int64_t m, float* buf) -> const float* {
    cvt(s, m, buf);
    return buf;
  });
}

void fake_quantize(const float* x, const QuantLayout& l, const Rounding& r, float* out) {
  fake_quantize_impl(x, l, r, out, identity_f32);
}

void fake_quantize_f16(const uint16_t* x, const QuantLayout& l, const Rounding& r, float* out) {
  auto cvt = dispatch::convert_f16_f32.get();
  fake_quantize_impl(x, l, r, out, [cvt](const uint16_t* s, int64_t m, float* buf) -> const float* {
    cvt(s, m, buf);
    return buf;
  });
}

void dequantize(const uint8_t* q, const QuantLayout& l, float* out) {
  Params params(l);
  const bool four_bit = qdtype_bits(l.dtype) == 4;
  const bool is_signed = qdtype_signed(l.dtype);
  const bool stream = static_cast<int64_t>(sizeof(float)) * l.rows * l.cols >= kStreamBytes;
  auto ds8 = dispatch::dequantize_s8_f32.get();
  auto du8 = dispatch::dequantize_u8_f32.get();
  auto unpack = !four_bit ? nullptr : is_signed ? dispatch::unpack_s4_s8.get() : dispatch::unpack_u4_s8.get();
  const int64_t row_bytes = l.row_bytes();
  for_each_piece(l, [&](int64_t r, int64_t c0, int64_t c1) {
    const uint8_t* qr = q + r * row_bytes;
    float* orow = out + r * l.cols;
    params.for_each_run(r, c0, c1, [&](int64_t a, int64_t b, const AffineRow& p) {
      if (!four_bit) {
        if (is_signed) {
          ds8(reinterpret_cast<const int8_t*>(qr + a), b - a, p, orow + a, stream);
        } else {
          du8(qr + a, b - a, p, orow + a, stream);
        }
        return;
      }
      alignas(64) int8_t qbuf[kChunk];
      for (int64_t s = a; s < b; s += kChunk) {
        const int64_t m = std::min(kChunk, b - s);
        const AffineRow ps = detail::advance(p, s - a);
        unpack_nibbles(unpack, qr, s, m, is_signed, qbuf);
        ds8(qbuf, m, ps, orow + s, false);
      }
    });
  });
}

}  // namespace lowbit
