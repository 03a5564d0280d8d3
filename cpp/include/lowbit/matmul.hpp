// lowbit/matmul.hpp: the int8 GEMM contract: packed-weight layout, the kernel task signature with
// its fused epilogue, and the ops (pack, matmul, linear; convolution: lowbit/conv.hpp). Public C++
// API of the int8 GEMM family.
//
// Contract: C[m][n] = sum_k A[m][k] * B[k][n] accumulated in int32 with wrap-around arithmetic,
// never saturating; the result is exact whenever the true sum fits int32 (callers check K:
// K * 128 * 128 <= INT32_MAX for s8 x s8, K * 255 * 128 <= INT32_MAX for u8 x s8).
#pragma once

#include <cstdint>

namespace lowbit {

// Packed weights ("vnni4x16"): N is cut into panels of kPanelCols columns, K padded with zeros to
// k_groups() * kKGroup. Panel p holds, for each group g of 4 consecutive k, 16 columns x 4 bytes:
//   packed[((p * k_groups + g) * 16 + j) * 4 + t] = B[4 g + t][16 p + j]   (0 where out of range)
// One 64-byte line per group is one zmm of vpdpbusd operands (two ymm on 256-bit ISAs).
// colsum[n] = sum_k B[k][n] (int32, padded to panels * 16 with 0) feeds the zero-point fix-up.
constexpr int64_t kPanelCols = 16;
constexpr int64_t kKGroup = 4;

inline int64_t k_groups(int64_t k) { return (k + kKGroup - 1) / kKGroup; }
inline int64_t n_panels(int64_t n) { return (n + kPanelCols - 1) / kPanelCols; }
// Zero bytes after the last panel: AMX reads B tiles of 16 groups and may run up to 15 groups past
// a panel's end (the matching activation bytes are zero, so those products vanish).
constexpr int64_t kPackSlackBytes = 16 * kPanelCols * kKGroup;
inline int64_t packed_weight_bytes(int64_t k, int64_t n) {
  return n_panels(n) * k_groups(k) * kPanelCols * kKGroup + kPackSlackBytes;
}
// A row stride for rows that AMX tile loads read 16 at a time: never a multiple of 1 KiB (rows
// 4 KiB apart share an L1 set).
inline int64_t tile_row_stride(int64_t bytes) { return bytes % 1024 == 0 ? bytes + 64 : bytes; }
// Packed activation row stride: K rounded up to 64 bytes (one AMX tile row), zero padded, through
// tile_row_stride. Rows of at most 48 bytes (first convolutions) are packed to 16 bytes instead:
// a 64-byte row would be mostly padding to write and read, and AMX (which then falls back to
// AVX-512 VNNI) has nothing to gain from one short K step.
inline int64_t packed_act_stride(int64_t k) {
  const int64_t bytes = k_groups(k) * kKGroup;
  if (bytes <= 48) return bytes <= 0 ? 16 : (bytes + 15) / 16 * 16;
  return tile_row_stride((bytes + 63) / 64 * 64);
}

// Epilogue applied to each int32 accumulator acc[m][n] (kernels hold it in registers):
//   v = acc - row_offset[m] * colsum[n]                                (int32, wrap-around)
//   kInt32:   out_i32[m][n] = v
//   kFloat:   y = float(v) * (row_scale[m] * col_scale[n]) [+ bias[n]] [; y = max(y, 0)]
//             out_f32[m][n] = y          (float32, each operation rounded, in this order)
//   kRequant: as kFloat, then out_s8[m][n] = quantize_one(y, out_inv_scale, out_zero_point,
//             -128, 127) (the affine quantize contract of lowbit/quantize.hpp)
enum class EpilogueKind { kInt32, kFloat, kRequant };

struct GemmArgs {
  // Activations, already packed: u8, m rows of lda = packed_act_stride(K) bytes, bytes past K are 0.
  // s8 data is stored shifted (a + 128) and its row_offset includes the 128.
  const uint8_t* a = nullptr;
  int64_t lda = 0;
  int64_t m = 0;
  int64_t k_groups = 0;
  // Packed weights (layout above), n columns.
  const int8_t* b = nullptr;
  int64_t n = 0;
  // Epilogue data: row arrays have m entries; column arrays n_panels(n) * 16 (zero padded).
  EpilogueKind kind = EpilogueKind::kInt32;
  const int32_t* row_offset = nullptr;
  const int32_t* colsum = nullptr;
  const float* row_scale = nullptr;  // kFloat / kRequant
  const float* col_scale = nullptr;  // kFloat / kRequant
  const float* bias = nullptr;       // optional
  bool relu = false;
  float out_inv_scale = 1.0f;  // kRequant
  int32_t out_zero_point = 0;  // kRequant
  void* out = nullptr;         // int32, float or int8 rows of ldo elements
  int64_t ldo = 0;
  // kFloat: whole 64-byte-aligned vectors written with non-temporal stores (an output far larger
  // than the caches, which the next op reads from memory anyway: no read-for-ownership). The
  // caller fences (std::atomic_thread_fence) each task before its result is read.
  bool stream_out = false;
};

namespace kernels {
// Computes rows [m0, m1) x panels [p0, p1) of the product and applies the epilogue. No
// allocation, no exceptions; tasks on disjoint output blocks may run concurrently.
using GemmTaskFn = void (*)(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1);
}  // namespace kernels

// Ops (ops/pack.cpp, ops/matmul.cpp, ops/linear.cpp). Strides are in elements and may be negative.
// Packs B[k][n] = w[n * stride_n + k * stride_k] (int8) into `packed` (packed_weight_bytes) and
// its column sums into colsum (n_panels(n) * 16 entries).
void pack_weight_s8(const int8_t* w, int64_t n, int64_t k, int64_t stride_n, int64_t stride_k, int8_t* packed,
                    int32_t* colsum);

// Inverse of pack_weight_s8: w (n x k, contiguous int8) from the packed bytes.
void unpack_weight_s8(const int8_t* packed, int64_t n, int64_t k, int8_t* w);

// C (m x n, contiguous int32) = A (m x k, int8 or uint8 by a_signed) times packed B.
void matmul_packed(const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am, int64_t stride_ak,
                   const int8_t* packed, const int32_t* colsum, int64_t n, int32_t* c);

// matmul_packed with an explicit task kernel instead of the dispatched one (tests of kernels that
// the dispatcher would not pick on this machine); fn == nullptr means the dispatched kernel.
void matmul_packed_with(kernels::GemmTaskFn fn, const uint8_t* a, bool a_signed, int64_t m, int64_t k,
                        int64_t stride_am, int64_t stride_ak, const int8_t* packed, const int32_t* colsum, int64_t n,
                        int32_t* c);

// a @ b for a plain int8 b[t][j] = w[t * stride_wk + j * stride_wn] (K x N): b is packed in
// cache-sized panel chunks inside the tasks that use them (read once, never written out whole).
// Same results as pack_weight_s8 + matmul_packed. fn == nullptr: the dispatched kernel.
void matmul_unpacked_with(kernels::GemmTaskFn fn, const uint8_t* a, bool a_signed, int64_t m, int64_t k,
                          int64_t stride_am, int64_t stride_ak, const int8_t* w, int64_t n, int64_t stride_wk,
                          int64_t stride_wn, int32_t* c);

// Activation quantization of linear(): the int8 activation's (scale, zero point) come from
//   kDynamicRow:    per row, asymmetric uint8 over the row's finite values and 0:
//                   lo = min(0, min x), hi = max(0, max x), scale = max((hi - lo) / 255, eps),
//                   zero_point = clamp(0 - round_half_even(lo / scale), 0, 255)
//   kDynamicTensor: the same over the whole tensor
//   kStatic:        the given scale / zero point (uint8, or int8 stored shifted by +128)
// then x is quantized by the affine contract (NaN -> zero point, +-inf -> the range ends).
enum class ActMode { kDynamicRow, kDynamicTensor, kStatic };

struct LinearParams {
  ActMode act = ActMode::kDynamicRow;
  float act_scale = 1.0f;       // kStatic
  int32_t act_zero_point = 0;   // kStatic
  bool act_signed = false;      // kStatic: int8 activations
  const float* bias = nullptr;  // n_panels(n) * 16, zero padded, or null
  bool relu = false;
  bool requant = false;
  float out_scale = 1.0f;
  int32_t out_zero_point = 0;
  // Rotated inputs (lowbit/rotation.hpp): x is rotated by the blocked Walsh-Hadamard transform
  // with these k signs before it is quantized (rows in cache, never written back), when set.
  const float* rot_signs = nullptr;
  int64_t rot_block = 0;
};

// out (m x n contiguous; float32, or int8 when p.requant) = epilogue(quantize(x) @ W).
// x is m x k contiguous float32; col_scale has n_panels(n) * 16 entries (zero padded).
void linear_packed(const float* x, int64_t m, int64_t k, const int8_t* packed, const int32_t* colsum,
                   const float* col_scale, int64_t n, const LinearParams& p, void* out);

// One linear of several that take the same input (a transformer's query, key and value): its
// weights, epilogue and output; its LinearParams' activation fields must equal the others'.
struct LinearPart {
  const int8_t* packed = nullptr;
  const int32_t* colsum = nullptr;
  const float* col_scale = nullptr;
  int64_t n = 0;
  LinearParams p;
  void* out = nullptr;
};

// linear_packed for each part on the same x, with x quantized once (by parts[0].p) and the GEMMs
// split over the threads as one. Each part's result is the one linear_packed gives.
void linear_packed_parts(const float* x, int64_t m, int64_t k, const LinearPart* parts, int64_t count);

}  // namespace lowbit
