// Measures this core's int8 dot-product peak (independent vpdpbusd zmm chains, in registers) for
// bench_matmul.py's "% of peak" column. Build: g++ -O2 -mavx512f -mavx512bw -mavx512vnni.
#include <immintrin.h>

#include <chrono>
#include <cstdio>

int main() {
  const __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x01020304);
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0,
          c10 = c0, c11 = c0;
  const long iters = 5000000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iters; ++i) {
#define D(c)                        \
  c = _mm512_dpbusd_epi32(c, a, b); \
  asm volatile("" : "+v"(c));
      D(c0)
      D(c1)
      D(c2)
      D(c3)
      D(c4)
      D(c5)
      D(c6)
      D(c7)
      D(c8)
      D(c9)
      D(c10)
      D(c11)
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double gops = iters * 12.0 * 64 * 2 / s / 1e9;
    if (gops > best) best = gops;
  }
  __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  sum = _mm512_add_epi32(sum, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
  std::printf("%.1f %d\n", best, _mm512_reduce_add_epi32(sum) & 1);
  return 0;
}
