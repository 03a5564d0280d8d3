// Dispatch tables of the 4-bit-weight linear kernels (defined in dispatch/linear_4bit.cpp).
#pragma once

#include "lowbit/dispatch.hpp"
#include "lowbit/linear_4bit.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::Linear4Fn> linear_f32_s4w_f32;
extern const OpTable<kernels::Linear4Fn> linear_f32_nf4w_f32;
extern const OpTable<kernels::Linear4Fn> linear_s8_s4w_f32;
extern const OpTable<kernels::Linear4Fn> linear_s8_nf4w_f32;
extern const OpTable<kernels::Quant4RowFn> quantize_row_s8_groups;
}  // namespace dispatch
}  // namespace lowbit
