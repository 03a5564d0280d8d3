// Dispatch tables of the int8 GEMM family (defined in dispatch/matmul.cpp). Every table holds the
// same per-ISA task kernels; one table per op name so kernel_calls() shows which op ran where.
#pragma once

#include "lowbit/dispatch.hpp"
#include "lowbit/matmul.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::GemmTaskFn> matmul_s8s8_s32;
extern const OpTable<kernels::GemmTaskFn> matmul_u8s8_s32;
extern const OpTable<kernels::GemmTaskFn> linear_f32_s8w_f32;
extern const OpTable<kernels::GemmTaskFn> linear_f32_s8w_s8;
}  // namespace dispatch
}  // namespace lowbit
