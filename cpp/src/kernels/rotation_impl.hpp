// The blocked Walsh-Hadamard rotation (contract: lowbit/rotation.hpp), written once with xsimd and
// compiled once per ISA (kernels/<isa>/rotation.cpp).
//
// A block of b >= W floats (W lanes) is b / W vectors held in registers: the stages h < W pair
// lanes of one vector (a lane permute, an add, and a subtract kept in the lanes whose bit h is
// set), the stages h >= W pair whole vectors. The arithmetic is the reference's, pair by pair, so
// the result is bit-identical to it. Blocks narrower than a vector, and blocks of more than
// 16 vectors, run the reference.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "lowbit/rotation.hpp"
#include "reference/rotation.hpp"

namespace lowbit {
namespace kernels {
namespace {

// One in-vector butterfly stage: lane i gets v_i + v_{i^h} where i & h == 0, v_{i^h} - v_i where
// i & h != 0 (the pair's a - b with a the lower lane). xsimd 8.1 has no lane permute by constant.
template <class Arch>
struct Butterfly;

#if defined(__AVX2__)
template <>
struct Butterfly<xsimd::avx2> {
  using B = xsimd::batch<float, xsimd::avx2>;
  static B stage(const B& v, int h) {
    __m256 p;
    switch (h) {
      case 1:
        p = _mm256_permute_ps(v, 0xB1);
        break;
      case 2:
        p = _mm256_permute_ps(v, 0x4E);
        break;
      default:
        p = _mm256_permute2f128_ps(v, v, 0x01);
        break;
    }
    const __m256 sum = _mm256_add_ps(v, p), dif = _mm256_sub_ps(p, v);
    switch (h) {
      case 1:
        return _mm256_blend_ps(sum, dif, 0xAA);
      case 2:
        return _mm256_blend_ps(sum, dif, 0xCC);
      default:
        return _mm256_blend_ps(sum, dif, 0xF0);
    }
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
template <>
struct Butterfly<xsimd::avx512bw> {
  using B = xsimd::batch<float, xsimd::avx512bw>;
  static B stage(const B& v, int h) {
    __m512 p;
    __mmask16 upper;
    switch (h) {
      case 1:
        p = _mm512_permute_ps(v, 0xB1), upper = 0xAAAA;
        break;
      case 2:
        p = _mm512_permute_ps(v, 0x4E), upper = 0xCCCC;
        break;
      case 4:
        p = _mm512_shuffle_f32x4(v, v, 0xB1), upper = 0xF0F0;
        break;
      default:
        p = _mm512_shuffle_f32x4(v, v, 0x4E), upper = 0xFF00;
        break;
    }
    return _mm512_mask_sub_ps(_mm512_add_ps(v, p), upper, p, v);
  }
};
#endif

template <class Arch>
struct RotationImpl {
  using B = xsimd::batch<float, Arch>;
  static constexpr int64_t W = static_cast<int64_t>(B::size);

  // Blocks of NV vectors: the loops unroll, so the block stays in registers.
  template <int NV>
  static void blocks(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k, const float* signs) {
    const B c(static_cast<float>(1.0 / std::sqrt(static_cast<double>(NV * W))));
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * ldx;
      float* yr = y + r * ldy;
      for (int64_t j = 0; j < k; j += NV * W) {
        B v[NV];
        for (int t = 0; t < NV; ++t) {
          v[t] = B::load_unaligned(xr + j + t * W) * B::load_unaligned(signs + j + t * W);
          for (int h = 1; h < W; h *= 2) v[t] = Butterfly<Arch>::stage(v[t], h);
        }
        for (int hv = 1; hv < NV; hv *= 2)
          for (int t = 0; t < NV; ++t)
            if ((t & hv) == 0) {
              const B a = v[t], b = v[t + hv];
              v[t] = a + b;
              v[t + hv] = a - b;
            }
        for (int t = 0; t < NV; ++t) (v[t] * c).store_unaligned(yr + j + t * W);
      }
    }
  }

  static void run(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k, const float* signs,
                  int64_t block) {
    switch (block / W) {
      case 1:
        return blocks<1>(x, ldx, y, ldy, rows, k, signs);
      case 2:
        return blocks<2>(x, ldx, y, ldy, rows, k, signs);
      case 4:
        return blocks<4>(x, ldx, y, ldy, rows, k, signs);
      case 8:
        return blocks<8>(x, ldx, y, ldy, rows, k, signs);
      case 16:
        return blocks<16>(x, ldx, y, ldy, rows, k, signs);
      default:
        return ref::hadamard_f32(x, ldx, y, ldy, rows, k, signs, block);  // narrower than a vector, or wider
    }
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit

#define LOWBIT_DEFINE_ROTATION_KERNELS(ns, Arch)                                                                     \
  namespace lowbit {                                                                                                 \
  namespace kernels {                                                                                                \
  namespace ns {                                                                                                     \
  void hadamard_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k, const float* signs, \
                    int64_t block) {                                                                                 \
    RotationImpl<Arch>::run(x, ldx, y, ldy, rows, k, signs, block);                                                  \
  }                                                                                                                  \
  }                                                                                                                  \
  }                                                                                                                  \
  }
