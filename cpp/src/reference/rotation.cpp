// Reference layer: the blocked Walsh-Hadamard rotation, one block at a time in a local copy, in
// the contract's order (lowbit/rotation.hpp).
#include "reference/rotation.hpp"

#include <cmath>
#include <vector>

namespace lowbit {
namespace ref {

void hadamard_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k, const float* signs,
                  int64_t block) {
  const float c = static_cast<float>(1.0 / std::sqrt(static_cast<double>(block)));
  std::vector<float> v(static_cast<size_t>(block));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < k; j += block) {
      const float* xs = x + r * ldx + j;
      for (int64_t i = 0; i < block; ++i) v[i] = xs[i] * signs[j + i];
      for (int64_t h = 1; h < block; h *= 2)
        for (int64_t i = 0; i < block; ++i)
          if ((i & h) == 0) {
            const float a = v[i], b = v[i + h];
            v[i] = a + b;
            v[i + h] = a - b;
          }
      float* ys = y + r * ldy + j;
      for (int64_t i = 0; i < block; ++i) ys[i] = v[i] * c;
    }
  }
}

}  // namespace ref
}  // namespace lowbit
