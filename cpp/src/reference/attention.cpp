// Reference layer: scalar attention, row by row, in the order the contract states.
#include "reference/attention.hpp"

#include <cmath>
#include <limits>

namespace lowbit {
namespace ref {

void attention_f32(const AttentionArgs& a, int64_t bh, int64_t i0, int64_t i1, float* scratch) {
  const int64_t b = bh / a.heads, h = bh % a.heads, hk = h / (a.heads / a.kv_heads);
  const float* q = a.q + b * a.q_sb + h * a.q_sh;
  const float* k = a.k + b * a.k_sb + hk * a.k_sh;
  const float* v = a.v + b * a.v_sb + hk * a.v_sh;
  const float* mask = a.mask == nullptr ? nullptr : a.mask + b * a.m_sb + h * a.m_sh;
  float* s = scratch;  // one row of scores
  for (int64_t i = i0; i < i1; ++i) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < a.sk; ++j) {
      float dot = 0.0f;
      for (int64_t c = 0; c < a.d; ++c) dot += q[i * a.q_ss + c] * k[j * a.k_ss + c];
      float x = dot * a.scale;
      if (mask != nullptr) x += mask[i * a.m_ss + j];
      if (a.causal && j > i) x = -std::numeric_limits<float>::infinity();
      s[j] = x;
      mx = x > mx ? x : mx;
    }
    if (mx == -std::numeric_limits<float>::infinity()) mx = 0.0f;  // every key hidden: p = 0, the row 0
    float sum = 0.0f;
    for (int64_t j = 0; j < a.sk; ++j) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    float* o = a.out + b * a.o_sb + h * a.o_sh + i * a.o_ss;
    for (int64_t c = 0; c < a.dv; ++c) {
      float acc = 0.0f;
      for (int64_t j = 0; j < a.sk; ++j) acc += s[j] * v[j * a.v_ss + c];
      o[c] = sum == 0.0f ? 0.0f : acc / sum;
    }
  }
}

}  // namespace ref
}  // namespace lowbit
