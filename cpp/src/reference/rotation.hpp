// Reference layer: the scalar blocked Walsh-Hadamard rotation (contract: lowbit/rotation.hpp).
#pragma once

#include <cstdint>

#include "lowbit/rotation.hpp"

namespace lowbit {
namespace ref {
void hadamard_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k, const float* signs,
                  int64_t block);
}  // namespace ref
}  // namespace lowbit
