// Dispatch table of the blocked Walsh-Hadamard rotation (defined in dispatch/rotation.cpp).
#pragma once

#include "lowbit/dispatch.hpp"
#include "lowbit/rotation.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::HadamardF32Fn> hadamard_f32;
}  // namespace dispatch
}  // namespace lowbit
