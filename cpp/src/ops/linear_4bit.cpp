// 4-bit-weight linear op (ops layer): pad or quantize the activations, split the output panels
// over threads, call the kernel.
#include "dispatch/linear_4bit.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "lowbit/linear_4bit.hpp"
#include "lowbit/matmul.hpp"
#include "lowbit/parallel.hpp"
#include "lowbit/rotation.hpp"
#include "ops/row_rotation.hpp"

namespace lowbit {

void linear_4bit(Linear4Args a, const float* x, int64_t k, Linear4Kind kind, kernels::Linear4Fn kernel) {
  const int64_t panels = (a.n + kL4Panel - 1) / kL4Panel, groups = a.kp / a.group;
  std::vector<float> xpad;
  std::vector<int8_t> xq;
  std::vector<float> xscale;
  std::vector<int32_t> xsum8;
  kernels::Linear4Fn fn;
  if (kind == Linear4Kind::kInt4Int8 || kind == Linear4Kind::kNf4Int8) {
    // Rows up to a multiple of 16, zero: the AMX kernel loads whole 16-row tiles.
    a.ldxq = tile_row_stride(a.kp);
    xq.assign(static_cast<size_t>((a.m + 15) / 16 * 16 * a.ldxq), 0);
    xscale.resize(static_cast<size_t>(a.m * groups));
    xsum8.resize(static_cast<size_t>(a.m * groups));
    auto quant = dispatch::quantize_row_s8_groups.get();
    const int64_t ldx = a.ldx;
    parallel_range(a.m, std::max<int64_t>(1, 65536 / (a.kp + 1)), 1, [&](int64_t b, int64_t e) {
      const detail::RowRotation rotated_row(a.rot_signs, a.rot_block, k);  // rotated inputs: x R
      for (int64_t r = b; r < e; ++r)
        quant(rotated_row(x + r * ldx), k, a.kp, a.group, xq.data() + r * a.ldxq, xscale.data() + r * groups,
              xsum8.data() + r * groups);
    });
    a.xq = xq.data();
    a.xscale = xscale.data();
    a.xsum8 = xsum8.data();
    fn = kind == Linear4Kind::kNf4Int8 ? dispatch::linear_s8_nf4w_f32.get() : dispatch::linear_s8_s4w_f32.get();
  } else {
    if (a.rot_block) {  // rotated inputs: x R, zero-padded to whole groups
      xpad.assign(static_cast<size_t>(a.m * a.kp), 0.0f);
      hadamard_rows(x, a.ldx, xpad.data(), a.kp, a.m, k, a.rot_signs, a.rot_block);
      a.x = xpad.data();
      a.ldx = a.kp;
    } else if (k != a.kp) {  // the float kernels read whole groups: give them zero-padded rows
      xpad.assign(static_cast<size_t>(a.m * a.kp), 0.0f);
      for (int64_t r = 0; r < a.m; ++r) std::memcpy(xpad.data() + r * a.kp, x + r * a.ldx, sizeof(float) * k);
      a.x = xpad.data();
      a.ldx = a.kp;
    } else {
      a.x = x;
    }
    fn = kind == Linear4Kind::kNf4Float ? dispatch::linear_f32_nf4w_f32.get() : dispatch::linear_f32_s4w_f32.get();
  }
  if (kernel != nullptr) fn = kernel;
  // ~128 KiB of packed weights per task (8 * kp bytes per panel), fewer panels when many rows
  // make each one expensive; multiples of 4 panels keep the GEMV tiles whole.
  const int64_t per_panel = 8 * a.kp * std::max<int64_t>(1, a.m / 4);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / std::max<int64_t>(1, per_panel));
  parallel_range(panels, grain, 4, [&](int64_t b, int64_t e) { fn(a, b, e); });
}

}  // namespace lowbit
