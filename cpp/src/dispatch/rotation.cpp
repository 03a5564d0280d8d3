// Dispatch table for the blocked Walsh-Hadamard rotation (ISA -> kernel).
#include "dispatch/rotation.hpp"

#include "dispatch/tables.hpp"
#include "kernels/rotation.hpp"
#include "reference/rotation.hpp"

namespace lowbit {
namespace dispatch {

LOWBIT_SIMD_TABLE(kernels::HadamardF32Fn, hadamard_f32)

}  // namespace dispatch
}  // namespace lowbit
