// Int8 GEMM op (ops layer): matmul_packed packs the int8 / uint8 activations and runs the
// dispatched task kernel over the task split, with the int32 epilogue.
#include "dispatch/matmul.hpp"

#include <vector>

#include "lowbit/matmul.hpp"
#include "ops/gemm_ops.hpp"

namespace lowbit {

void matmul_packed_with(kernels::GemmTaskFn fn, const uint8_t* a, bool a_signed, int64_t m, int64_t k,
                        int64_t stride_am, int64_t stride_ak, const int8_t* packed, const int32_t* colsum, int64_t n,
                        int32_t* c) {
  if (m == 0 || n == 0) return;
  const int64_t kg = k_groups(k);
  const int64_t lda = packed_act_stride(k);
  std::vector<uint8_t> ap(static_cast<size_t>(m * lda));
  detail::pack_act_int8(a, a_signed, m, k, stride_am, stride_ak, lda, ap.data());
  std::vector<int32_t> row_offset(static_cast<size_t>(m), a_signed ? 128 : 0);
  GemmArgs g;
  g.a = ap.data();
  g.lda = lda;
  g.m = m;
  g.k_groups = kg;
  g.b = packed;
  g.n = n;
  g.kind = EpilogueKind::kInt32;
  g.row_offset = row_offset.data();
  g.colsum = colsum;
  g.out = c;
  g.ldo = n;
  if (fn != nullptr)
    detail::run_gemm_with(fn, g);
  else
    detail::run_gemm(a_signed ? dispatch::matmul_s8s8_s32 : dispatch::matmul_u8s8_s32, g);
}

void matmul_unpacked_with(kernels::GemmTaskFn fn, const uint8_t* a, bool a_signed, int64_t m, int64_t k,
                          int64_t stride_am, int64_t stride_ak, const int8_t* w, int64_t n, int64_t stride_wk,
                          int64_t stride_wn, int32_t* c) {
  if (m == 0 || n == 0) return;
  const int64_t kg = k_groups(k);
  const int64_t lda = packed_act_stride(k);
  std::vector<uint8_t> ap(static_cast<size_t>(m * lda));
  detail::pack_act_int8(a, a_signed, m, k, stride_am, stride_ak, lda, ap.data());
  std::vector<int32_t> row_offset(static_cast<size_t>(m), a_signed ? 128 : 0);
  std::vector<int32_t> colsum(static_cast<size_t>(n_panels(n) * kPanelCols));
  GemmArgs g;
  g.a = ap.data();
  g.lda = lda;
  g.m = m;
  g.k_groups = kg;
  g.n = n;
  g.kind = EpilogueKind::kInt32;
  g.row_offset = row_offset.data();
  g.colsum = colsum.data();
  g.out = c;
  g.ldo = n;
  if (fn == nullptr) fn = (a_signed ? dispatch::matmul_s8s8_s32 : dispatch::matmul_u8s8_s32).get();
  detail::run_gemm_unpacked(fn, g, w, k, stride_wn, stride_wk);
}

void matmul_packed(const uint8_t* a, bool a_signed, int64_t m, int64_t k, int64_t stride_am, int64_t stride_ak,
                   const int8_t* packed, const int32_t* colsum, int64_t n, int32_t* c) {
  matmul_packed_with(nullptr, a, a_signed, m, k, stride_am, stride_ak, packed, colsum, n, c);
}

}  // namespace lowbit
