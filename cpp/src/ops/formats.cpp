// Format ops (ops layer): split NF4 work on block boundaries and conversions on vector boundaries
// over threads, and call the dispatched kernels.
#include "dispatch/formats.hpp"

#include "dispatch/quantize.hpp"
#include "lowbit/formats.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {
namespace {
constexpr int64_t kGrain = 1 << 15;  // elements per task, at least
}  // namespace

void quantize_nf4(const float* x, int64_t n, int64_t block, float* absmax, uint8_t* q) {
  auto fn = dispatch::quantize_f32_nf4.get();
  parallel_range(n, kGrain, block,
                 [&](int64_t b, int64_t e) { fn(x + b, e - b, block, absmax + b / block, q + b / 2); });
}

void dequantize_nf4(const uint8_t* q, int64_t n, int64_t block, const float* absmax, float* out) {
  auto fn = dispatch::dequantize_nf4_f32.get();
  parallel_range(n, kGrain, block,
                 [&](int64_t b, int64_t e) { fn(q + b / 2, e - b, block, absmax + b / block, out + b); });
}

void convert_f32_f16(const float* x, int64_t n, uint16_t* out) {
  auto fn = dispatch::convert_f32_f16.get();
  parallel_range(n, kGrain, 64, [&](int64_t b, int64_t e) { fn(x + b, e - b, out + b); });
}

void convert_f16_f32(const uint16_t* x, int64_t n, float* out) {
  auto fn = dispatch::convert_f16_f32.get();
  parallel_range(n, kGrain, 64, [&](int64_t b, int64_t e) { fn(x + b, e - b, out + b); });
}

void convert_f32_bf16(const float* x, int64_t n, uint16_t* out) {
  auto fn = dispatch::convert_f32_bf16.get();
  parallel_range(n, kGrain, 64, [&](int64_t b, int64_t e) { fn(x + b, e - b, out + b); });
}

void convert_bf16_f32(const uint16_t* x, int64_t n, float* out) {
  auto fn = dispatch::convert_bf16_f32.get();
  parallel_range(n, kGrain, 64, [&](int64_t b, int64_t e) { fn(x + b, e - b, out + b); });
}

}  // namespace lowbit
