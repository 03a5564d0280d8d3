// float32 -> bfloat16 with AVX-512 BF16's vcvtneps2bf16. Lives in the avx512vnni unit (every CPU
// with AVX512_BF16 has VNNI) with a function-level target; dispatch calls it only when CPUID has BF16.
#include <immintrin.h>

#include "kernels/formats.hpp"
#include "reference/formats_scalar.hpp"

namespace lowbit {
namespace kernels {
namespace avx512bf16 {

// vcvtneps2bf16 flushes subnormal inputs to zero; those lanes (exponent field 0) take the integer
// round-to-nearest-even result instead, so the output equals the reference bit for bit.
__attribute__((target("avx512bf16"))) void convert_f32_bf16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  const __m512i exp_mask = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m256i r = (__m256i)_mm512_cvtneps_pbh(v);  // NOLINT: same-size vector reinterpretation
    __m512i u = _mm512_castps_si512(v);
    __mmask16 tiny = _mm512_testn_epi32_mask(u, exp_mask);
    if (tiny) {
      __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
      __m512i e = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
      r = _mm256_mask_blend_epi16(tiny, r, _mm512_cvtepi32_epi16(e));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), r);
  }
  for (; i < n; ++i) out[i] = detail::f32_to_bf16(x[i]);
}

}  // namespace avx512bf16
}  // namespace kernels
}  // namespace lowbit
