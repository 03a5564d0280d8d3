// Internal to the ops layer: what the int8 GEMM op files share (pack.cpp, task_split.cpp,
// matmul.cpp, linear.cpp, conv.cpp): the task split, activation packing and the fused-epilogue call.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>

#include "lowbit/conv.hpp"
#include "lowbit/dispatch.hpp"
#include "lowbit/im2col.hpp"
#include "lowbit/matmul.hpp"

namespace lowbit {
namespace detail {

// ---- task split (task_split.cpp): how the work is divided over threads, rows and panels

// Splits the GEMM into (row chunk, panel chunk) tasks, consecutive tasks sharing a weight chunk,
// and runs fn on each (inline when the product is too small to pay for threads).
void run_gemm_with(kernels::GemmTaskFn fn, const GemmArgs& g);
// Several GEMMs on the same packed activations (a, lda, m, k_groups equal; each its own weights,
// epilogue and output) split as one: one parallel region for all, part j run by fns[j].
void run_gemms_with(const kernels::GemmTaskFn* fns, const GemmArgs* gs, int64_t count);
// fn(r0, r1) over row ranges of [0, m) for rows of k elements, in parallel (activation packing).
void for_rows(int64_t m, int64_t k, const std::function<void(int64_t, int64_t)>& fn);
// Byte-patch convolutions: rows of patches (stride lda) made and multiplied per task while they are
// in L2, or 0 when the weights (weight_bytes) are too large for that and all patches come first.
int64_t patch_chunk_rows(int64_t m, int64_t lda, int64_t weight_bytes);
// The image x (geometry and strides of geom) quantized once to dense NHWC uint8 (conv.cpp), with
// *scale and *zero_point (uint8 domain); dynamic: they are set from the image's finite range and 0.
// Requantizes count floats y to uint8 by io's output parameters (see ConvIO): q(y) clamped to
// [q(out_lo), q(out_hi)], with the dispatched quantize kernel (single thread; callers split).
void requantize_u8(const float* y, int64_t count, const ConvIO& io, uint8_t* out);
std::unique_ptr<uint8_t[]> quantize_image_u8(const Im2colArgs& geom, const float* x, bool dynamic, float* scale,
                                             int32_t* zero_point);

// A GEMM on a plain (unpacked) int8 B[k][n] = w[n * stride_n + k * stride_k]: each task packs one
// chunk of panels into a per-thread buffer that stays in L2 (column sums into g.colsum) and runs
// every row chunk on it, so B is read once and its packed form never goes to memory. g.b is
// ignored; g.colsum must hold n_panels(g.n) * 16 writable entries. Same results as packing first.
void run_gemm_unpacked(kernels::GemmTaskFn fn, GemmArgs g, const int8_t* w, int64_t k, int64_t stride_n,
                       int64_t stride_k);

// ---- weight packing (pack.cpp)
// Panels [p0, p1) of B[k][n] = w[n * stride_n + k * stride_k] into dst (panel p at
// dst + (p - p0) * k_groups(k) * 64), their column sums into colsum[(p - p0) * 16 ...].
void pack_weight_panels(const int8_t* w, int64_t n, int64_t k, int64_t stride_n, int64_t stride_k, int64_t p0,
                        int64_t p1, int8_t* dst, int32_t* colsum);

// ---- activation packing (pack.cpp): u8 rows of packed_act_stride(k) bytes, zero past k

// int8 (stored + 128) or uint8 activations a[i * stride_am + t * stride_ak] -> packed rows ap.
void pack_act_int8(const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am, int64_t stride_ak,
                   int64_t lda, uint8_t* ap);
// float32 rows x (m x k, contiguous) quantized by p.act (lowbit/matmul.hpp) into packed rows ap,
// with each row's zero point (row_offset, +128 for static int8) and scale (row_scale).
void pack_act_f32(const float* x, int64_t m, int64_t k, const LinearParams& p, int64_t lda, uint8_t* ap,
                  int32_t* row_offset, float* row_scale);

// Dynamic asymmetric uint8 parameters over [lo, hi] (lo <= 0 <= hi), the observer formula.
inline void dynamic_params(float lo, float hi, float* scale, int32_t* zp) {
  float range = hi - lo;
  if (!std::isfinite(range)) range = FLT_MAX;
  float s = std::max(range / 255.0f, FLT_EPSILON);
  float z = 0.0f - std::nearbyint(lo / s);
  *scale = s;
  *zp = static_cast<int32_t>(std::min(255.0f, std::max(0.0f, z)));
}

// ---- the linear GEMM call (linear.cpp)

// The GEMM arguments of a linear on packed activations (u8, +128 for int8) with its fused epilogue.
GemmArgs linear_gemm_args(const uint8_t* ap, int64_t lda, int64_t m, int64_t kg, const int8_t* packed,
                          const int32_t* colsum, const float* col_scale, int64_t n, const LinearParams& p,
                          const int32_t* row_offset, const float* row_scale, void* out);
// The dispatched linear kernel: requantized int8 or float output by p.requant.
kernels::GemmTaskFn linear_kernel(const LinearParams& p);
// Runs them through the dispatched linear kernel (requantized int8 or float output by p.requant).
void run_linear_gemm(const uint8_t* ap, int64_t lda, int64_t m, int64_t kg, const int8_t* packed, const int32_t* colsum,
                     const float* col_scale, int64_t n, const LinearParams& p, const int32_t* row_offset,
                     const float* row_scale, void* out);

}  // namespace detail
}  // namespace lowbit
