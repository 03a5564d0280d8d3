// Dispatch tables for the observer reductions (ISA -> kernel).
#include "dispatch/observers.hpp"

#include "dispatch/tables.hpp"
#include "kernels/observers.hpp"
#include "reference/observers.hpp"

namespace lowbit {
namespace dispatch {

LOWBIT_SIMD_TABLE(kernels::MinMaxF32Fn, minmax_f32)
LOWBIT_SIMD_TABLE(kernels::MinMaxPerChannelF32Fn, minmax_per_channel_f32)
LOWBIT_SIMD_TABLE(kernels::HistogramF32Fn, histogram_f32)

}  // namespace dispatch
}  // namespace lowbit
