// Int8 GEMM op (ops layer): matmul_packed packs the int8 / uint8 activations and runs the
// dispatched task kernel over the task split, with the int32 epilogue.
#include "dispatch/matmul.hpp"

#include <vector>

#include "lowbit/matmul.hpp"
#include "ops/gemm_ops.hpp"

namespace lowbit {

namespace {

// The activations packed for the GEMM (u8, K in groups of 4) and their row offsets.
struct PackedActs {
  std::vector<uint8_t> data;
  std::vector<int32_t> row_offset;
};

// Packs `a` into `acts` and fills the arguments both entry points share (int32 epilogue).
GemmArgs int32_gemm_args(PackedActs& acts, const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am,
                         int64_t stride_ak, int64_t n, int32_t* c) {
  const int64_t lda = packed_act_stride(k);
  acts.data.resize(static_cast<size_t>(m * lda));
  detail::pack_act_int8(a, a_signed, m, k, stride_am, stride_ak, lda, acts.data.data());
  acts.row_offset.assign(static_cast<size_t>(m), a_signed ? 128 : 0);
  GemmArgs g;
  g.a = acts.data.data();
  g.lda = lda;
  g.m = m;
  g.k_groups = k_groups(k);
  g.n = n;
  g.kind = EpilogueKind::kInt32;
  g.row_offset = acts.row_offset.data();
  g.out = c;
  g.ldo = n;
  return g;
}

kernels::GemmTaskFn int32_kernel(kernels::GemmTaskFn fn, bool a_signed) {
  return fn != nullptr ? fn : (a_signed ? dispatch::matmul_s8s8_s32 : dispatch::matmul_u8s8_s32).get();
}

}  // namespace

void matmul_packed_with(kernels::GemmTaskFn fn, const uint8_t* a, bool a_signed, int64_t m, int64_t k,
                        int64_t stride_am, int64_t stride_ak, const int8_t* packed, const int32_t* colsum, int64_t n,
                        int32_t* c) {
  if (m == 0 || n == 0) return;
  PackedActs acts;
  GemmArgs g = int32_gemm_args(acts, a, a_signed, m, k, stride_am, stride_ak, n, c);
  g.b = packed;
  g.colsum = colsum;
  detail::run_gemm_with(int32_kernel(fn, a_signed), g);
}

void matmul_unpacked_with(kernels::GemmTaskFn fn, const uint8_t* a, bool a_signed, int64_t m, int64_t k,
                          int64_t stride_am, int64_t stride_ak, const int8_t* w, int64_t n, int64_t stride_wk,
                          int64_t stride_wn, int32_t* c) {
  if (m == 0 || n == 0) return;
  PackedActs acts;
  GemmArgs g = int32_gemm_args(acts, a, a_signed, m, k, stride_am, stride_ak, n, c);
  std::vector<int32_t> colsum(static_cast<size_t>(n_panels(n) * kPanelCols));
  g.colsum = colsum.data();  // filled by the tasks as they pack their panels
  detail::run_gemm_unpacked(int32_kernel(fn, a_signed), g, w, k, stride_wn, stride_wk);
}

void matmul_packed(const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am, int64_t stride_ak,
                   const int8_t* packed, const int32_t* colsum, int64_t n, int32_t* c) {
  matmul_packed_with(nullptr, a, a_signed, m, k, stride_am, stride_ak, packed, colsum, n, c);
}

}  // namespace lowbit
