// Dispatch table for LayerNorm (ISA -> kernel).
#include "dispatch/norm.hpp"

#include "dispatch/tables.hpp"
#include "kernels/norm.hpp"
#include "reference/norm.hpp"

namespace lowbit {
namespace dispatch {

LOWBIT_SIMD_TABLE(kernels::LayerNormF32Fn, layer_norm_f32)

}  // namespace dispatch
}  // namespace lowbit
