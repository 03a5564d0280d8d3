// Dispatch tables for the float32 x 4-bit-weight linear kernels (ISA -> kernel).
#include "dispatch/linear4.hpp"

#include "dispatch/tables.hpp"
#include "reference/linear4.hpp"

namespace lowbit {
namespace dispatch {

LOWBIT_SIMD_TABLE(kernels::Linear4Fn, linear_f32_s4w_f32)
LOWBIT_SIMD_TABLE(kernels::Linear4Fn, linear_f32_nf4w_f32)

}  // namespace dispatch
}  // namespace lowbit
