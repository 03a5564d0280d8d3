// Test-only twin of the AVX-VNNI 4-bit linear kernels: the same source and traits with the EVEX
// 256-bit vpdpbusd (reached only through _core._linear_4bit_twin("avxvnni", ...)).
#define LOWBIT_L4_VNNI256_EVEX 1
#include "kernels/linear_4bit_impl.hpp"

namespace lowbit {
namespace kernels {
namespace avx512vnni {
void linear_s8_s4w_f32_avxvnni_twin(const Linear4Args& a, int64_t p0, int64_t p1) {
  Linear4Driver<AvxVnniInt8, Linear4Int8Tile<AvxVnniInt8, false>>::run(a, p0, p1);
}
void linear_s8_nf4w_f32_avxvnni_twin(const Linear4Args& a, int64_t p0, int64_t p1) {
  Linear4Driver<AvxVnniInt8, Linear4Int8Tile<AvxVnniInt8, true>>::run(a, p0, p1);
}
}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit
