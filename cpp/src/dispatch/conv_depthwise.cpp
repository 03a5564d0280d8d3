// Dispatch table for conv2d_depthwise_f32_s8w_f32 (ISA -> kernel).
#include "dispatch/conv_depthwise.hpp"

#include "dispatch/tables.hpp"
#include "reference/conv_depthwise.hpp"

namespace lowbit {
namespace dispatch {
LOWBIT_SIMD_TABLE(kernels::DwConvFn, conv2d_depthwise_f32_s8w_f32)

#if defined(LOWBIT_HAVE_AVX512VNNI)
#define LOWBIT_DW_AVX512VNNI {Isa::kAvx512Vnni, kernels::avx512vnni::conv2d_depthwise_u8_s8w_u8},
#else
#define LOWBIT_DW_AVX512VNNI
#endif
const OpTable<kernels::DwConvFn> conv2d_depthwise_u8_s8w_u8("conv2d_depthwise_u8_s8w_u8",
                                                            {{Isa::kScalar, ref::conv2d_depthwise_u8_s8w_u8},
                                                             LOWBIT_DW_AVX512VNNI});
}  // namespace dispatch
}  // namespace lowbit
