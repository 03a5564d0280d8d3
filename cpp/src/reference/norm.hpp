// Reference layer: the scalar LayerNorm (contract: lowbit/norm.hpp).
#pragma once

#include <cstdint>

#include "lowbit/norm.hpp"

namespace lowbit {
namespace ref {
void layer_norm_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, const float* gamma,
                    const float* beta, float eps);
}  // namespace ref
}  // namespace lowbit
