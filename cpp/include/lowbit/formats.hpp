// lowbit/formats.hpp: codebook and float formats below 8 bits (NF4) and half-precision floats
// (IEEE fp16, bfloat16). Public C++ API: kernel signatures and the ops that drive them.
//
// Contracts:
//   NF4 (QLoRA / bitsandbytes): blocks of `block` consecutive elements; absmax = max |x| over the
//   block's non-NaN values; y = x * (1.0f / absmax) in float32 (y = 0 when absmax == 0); code =
//   number of bitsandbytes thresholds t with y > t (identical to bitsandbytes' dQuantizeNF4 tree:
//   a value exactly on a midpoint takes the lower code); NaN -> code 7 (0.0). Codes are packed two
//   per byte, low nibble first (bitsandbytes packs the first element in the high nibble).
//   Decode: out = kNf4Levels[code] * absmax in float32.
//   fp16 / bf16: round to nearest even (overflow -> inf), subnormals kept, inf kept, NaN stays NaN
//   with its sign (bf16: quiet bit set, top payload bits kept; fp16: as F16C does).
#pragma once

#include <cstdint>

namespace lowbit {

// bitsandbytes' NF4 levels (functional.py get_4bit_type("nf4") / csrc dDequantizeNF4), float32.
constexpr float kNf4Levels[16] = {-1.0f,
                                  -0.6961928009986877f,
                                  -0.5250730514526367f,
                                  -0.39491748809814453f,
                                  -0.28444138169288635f,
                                  -0.18477343022823334f,
                                  -0.09105003625154495f,
                                  0.0f,
                                  0.07958029955625534f,
                                  0.16093020141124725f,
                                  0.24611230194568634f,
                                  0.33791524171829224f,
                                  0.44070982933044434f,
                                  0.5626170039176941f,
                                  0.7229568362236023f,
                                  1.0f};
// bitsandbytes' decision-tree thresholds (csrc dQuantizeNF4), ascending: code = #{t : y > t}.
constexpr float kNf4Thresholds[15] = {
    -0.8480964004993439f,  -0.6106329262256622f,   -0.4599952697753906f, -0.33967943489551544f, -0.23460740596055984f,
    -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,   0.2035212516784668f,
    0.2920137718319893f,   0.3893125355243683f,    0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f};

namespace kernels {
// x: n floats starting at a block boundary; block even and > 0; writes ceil(n / block) absmax
// values and n / 2 bytes (n even, or the last byte's high nibble is 0).
using QuantizeNf4Fn = void (*)(const float* x, int64_t n, int64_t block, float* absmax, uint8_t* q);
using DequantizeNf4Fn = void (*)(const uint8_t* q, int64_t n, int64_t block, const float* absmax, float* out);
using ConvertF32F16Fn = void (*)(const float* x, int64_t n, uint16_t* out);
using ConvertF32Bf16Fn = void (*)(const float* x, int64_t n, uint16_t* out);
using ConvertBf16F32Fn = void (*)(const uint16_t* x, int64_t n, float* out);
}  // namespace kernels

// Ops: split the work over threads (NF4 on block boundaries) and call the dispatched kernels.
void quantize_nf4(const float* x, int64_t n, int64_t block, float* absmax, uint8_t* q);
void dequantize_nf4(const uint8_t* q, int64_t n, int64_t block, const float* absmax, float* out);
void convert_f32_f16(const float* x, int64_t n, uint16_t* out);
void convert_f16_f32(const uint16_t* x, int64_t n, float* out);
void convert_f32_bf16(const float* x, int64_t n, uint16_t* out);
void convert_bf16_f32(const uint16_t* x, int64_t n, float* out);

}  // namespace lowbit
