// lowbit/attention.hpp: scaled dot-product attention in float32 (softmax(q k^T * scale + mask) v),
// the float op between a transformer's quantized linears. Public C++ API: kernel signature + op.
//
// Contract shared by the kernels and the op:
//   - Per (batch, head) and query row i: s_j = scale * dot(q_i, k_j) + mask_ij (-inf where a causal
//     mask hides j > i), p_j = exp(s_j - max_j s_j) / sum_j exp(s_j - max_j s_j), out_i = sum_j p_j v_j.
//     float32 throughout; dot products and sums in the kernels' order (results agree with a
//     float64 evaluation to ~1e-6 relative; they are not bit-identical across ISAs).
//   - A row whose every score is -inf (all keys masked) is all zeros, as torch's CPU
//     scaled_dot_product_attention gives. NaN in q, k, v or the mask propagates to the rows it reaches.
//   - Grouped-query attention: head h reads key/value head h / (heads / kv_heads).
#pragma once

#include <cstdint>

namespace lowbit {

// Arrays are indexed [batch][head][row][column]; strides in elements (any sign, 0 = broadcast),
// the last (column) dimension contiguous.
struct AttentionArgs {
  const float* q = nullptr;  // (batch, heads, sq, d)
  const float* k = nullptr;  // (batch, kv_heads, sk, d)
  const float* v = nullptr;  // (batch, kv_heads, sk, dv)
  int64_t q_sb = 0, q_sh = 0, q_ss = 0;
  int64_t k_sb = 0, k_sh = 0, k_ss = 0;
  int64_t v_sb = 0, v_sh = 0, v_ss = 0;
  int64_t batch = 0, heads = 0, kv_heads = 0, sq = 0, sk = 0, d = 0, dv = 0;
  const float* mask = nullptr;  // additive (batch, heads, sq, sk), or null
  int64_t m_sb = 0, m_sh = 0, m_ss = 0;
  bool causal = false;  // key j > query row i is hidden (top-left aligned, as torch's is_causal)
  float scale = 1.0f;
  float* out = nullptr;  // (batch, heads, sq, dv)
  int64_t o_sb = 0, o_sh = 0, o_ss = 0;
};

// Scratch floats one task of the op needs (attention_scratch_floats(a) per thread).
int64_t attention_scratch_floats(const AttentionArgs& a);

namespace kernels {
// Query rows [i0, i1) of one (batch, head) pair bh = batch * heads + head. scratch: at least
// attention_scratch_floats(a) floats, 64-byte aligned, owned by the caller's thread.
using AttentionF32Fn = void (*)(const AttentionArgs& a, int64_t bh, int64_t i0, int64_t i1, float* scratch);
}  // namespace kernels

// Op: every (batch, head, row chunk) task over the threads.
void attention(const AttentionArgs& a);

}  // namespace lowbit
