// The AMX int8-activation 4-bit linear kernel, templated on the tile operations: the real AMX
// instructions (kernels/amx/linear_4bit.cpp) or the scalar emulation (tests only). Contract: the int8
// path of lowbit/linear_4bit.hpp, bit for bit; xq must hold round_up(m, 16) rows (the ops layer pads
// with zeros).
//
// Per pair of panels (32 columns) the codes of a K chunk are decoded once into an L1 buffer of
// signed bytes in the AMX B layout (int4: u - 8; NF4: the int8 levels; one vpshufb each), so
// tdpbssd gives d = sum_k level * xq exactly, with no offset. Each group of each 32-row block
// then runs 2 x 2 tiles (16 rows, 16 columns each) over the group's K (steps of 64 k, or 32 when
// the group is not a multiple of 64), stores the int32 tiles and adds (float(d) * scale) * xscale
// to a float accumulator per row and column, in group order: the same sequence as every other
// ISA. Few rows (see run) and an odd last panel go to the AVX-512 VNNI kernel.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/linear_4bit.hpp"
#include "lowbit/linear_4bit.hpp"

namespace lowbit {
namespace kernels {
namespace {

constexpr int64_t kL4AmxChunkK = 512;  // k per decoded chunk: 2 panels x 512 k = 16 KiB of B tiles
constexpr int8_t kInt4SignedLevels[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};

template <class T>
T* aligned64(T* p) {
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
}

template <class Tiles, bool kNf4>
struct Linear4Amx {
  static void fallback(const Linear4Args& a, int64_t p0, int64_t p1) {
    if constexpr (kNf4) {
      avx512vnni::linear_s8_nf4w_f32(a, p0, p1);
    } else {
      avx512vnni::linear_s8_s4w_f32(a, p0, p1);
    }
  }

  // Octets [o0, o1) of panels p, p + 1 -> dst[panel][2 * (o1 - o0) k quads][64 bytes]: the low
  // nibbles of octet o are k quad 2o, the high ones 2o + 1 (lowbit/linear_4bit.hpp).
  static void decode(const Linear4Args& a, int64_t p, int64_t o0, int64_t o1, int8_t* dst) {
    const __m512i tab = _mm512_broadcast_i32x4(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(kNf4 ? kNf4Int8Levels : kInt4SignedLevels)));
    const __m512i low = _mm512_set1_epi8(15);
    const int64_t octs = a.kp / 8, len = o1 - o0;
    for (int64_t q = 0; q < 2; ++q) {
      const uint8_t* src = a.w + ((p + q) * octs + o0) * kL4BlockBytes;
      int8_t* d = dst + q * len * 128;
      for (int64_t o = 0; o < len; ++o) {
        const __m512i raw = _mm512_loadu_si512(src + o * kL4BlockBytes);
        _mm512_store_si512(d + o * 128, _mm512_shuffle_epi8(tab, _mm512_and_si512(raw, low)));
        _mm512_store_si512(d + o * 128 + 64,
                           _mm512_shuffle_epi8(tab, _mm512_and_si512(_mm512_srli_epi16(raw, 4), low)));
      }
    }
  }

  // Group g of rows [i0, i0 + 16 * RT) x panels p, p + 1: tiles, then the float epilogue into
  // acc (row stride 32 floats, row i0 first). b0, b1: the group's decoded B rows of each panel.
  // Measured slower: two tile sets of 16 rows, software-pipelined so that the vector epilogue
  // overlaps the tiles (twice the tile loads per tdpbssd); and one tile set whose next group's
  // tiles are issued before this group's epilogue (~10% slower at 32 x 4096 x 4096).
  template <int RT>
  static void group(const Linear4Args& a, int64_t i0, int64_t p, int64_t g, int64_t kw, const int8_t* b0,
                    const int8_t* b1, float* acc) {
    const int64_t steps = a.group / kw, groups = a.kp / a.group, np = l4_padded_n(a.n);
    const int8_t* x0 = a.xq + i0 * a.ldxq + g * a.group;
    Tiles::template zero<0>();
    Tiles::template zero<1>();
    if constexpr (RT == 2) {
      Tiles::template zero<2>();
      Tiles::template zero<3>();
    }
    Tiles::barrier();
    for (int64_t s = 0; s < steps; ++s) {
      Tiles::template load<4>(x0 + s * kw, a.ldxq);
      Tiles::template load<6>(b0 + s * kw * 16, 64);
      Tiles::template load<7>(b1 + s * kw * 16, 64);
      Tiles::template dpbssd<0, 4, 6>();
      Tiles::template dpbssd<1, 4, 7>();
      if constexpr (RT == 2) {
        Tiles::template load<5>(x0 + 16 * a.ldxq + s * kw, a.ldxq);
        Tiles::template dpbssd<2, 5, 6>();
        Tiles::template dpbssd<3, 5, 7>();
      }
    }
    alignas(64) int32_t c[32][32];
    Tiles::barrier();
    Tiles::template store<0>(&c[0][0], sizeof(c[0]));
    Tiles::template store<1>(&c[0][16], sizeof(c[0]));
    if constexpr (RT == 2) {
      Tiles::template store<2>(&c[16][0], sizeof(c[0]));
      Tiles::template store<3>(&c[16][16], sizeof(c[0]));
    }
    Tiles::barrier();
    const __m512 s0 = _mm512_loadu_ps(a.scales + g * np + p * kL4Panel);
    const __m512 s1 = _mm512_loadu_ps(a.scales + g * np + (p + 1) * kL4Panel);
    const int64_t rows = std::min<int64_t>(16 * RT, a.m - i0);
    for (int64_t r = 0; r < rows; ++r) {
      const __m512 sx = _mm512_set1_ps(a.xscale[(i0 + r) * groups + g]);
      float* t = acc + r * 32;
      const __m512 d0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[r])), s0);
      const __m512 d1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[r] + 16)), s1);
      _mm512_store_ps(t, _mm512_add_ps(_mm512_load_ps(t), _mm512_mul_ps(d0, sx)));
      _mm512_store_ps(t + 16, _mm512_add_ps(_mm512_load_ps(t + 16), _mm512_mul_ps(d1, sx)));
    }
  }

  static void run(const Linear4Args& a, int64_t p0, int64_t p1) {
    const int64_t pairs_end = p0 + (p1 - p0) / 2 * 2;
    // Measured crossovers against the AVX-512 VNNI kernel (one core, K x N = 4096 x 4096 and
    // 11008 x 4096): int4 from 12 rows, NF4 (whose VNNI path pays a vpshufb per code) from 4.
    constexpr int64_t kMinRows = kNf4 ? 4 : 12;
    if (a.m < kMinRows || pairs_end == p0) {
      fallback(a, p0, p1);
      return;
    }
    const int64_t kw = a.group % 64 == 0 ? 64 : 32, groups = a.kp / a.group, octs = a.kp / 8;
    const int64_t chunk_groups = std::max<int64_t>(1, kL4AmxChunkK / a.group);
    const int64_t mp = (a.m + 15) / 16 * 16;
    std::vector<float> acc_mem(static_cast<size_t>(mp * 32 + 16));
    std::vector<int8_t> b_mem(static_cast<size_t>(2 * chunk_groups * a.group * 16 + 64));
    float* acc = aligned64(acc_mem.data());
    int8_t* bbuf = aligned64(b_mem.data());
    Tiles::configure(static_cast<int>(kw));
    for (int64_t p = p0; p < pairs_end; p += 2) {
      std::fill(acc, acc + mp * 32, 0.0f);
      for (int64_t g0 = 0; g0 < groups; g0 += chunk_groups) {
        const int64_t g1 = std::min(groups, g0 + chunk_groups), quads = (g1 - g0) * a.group / 4;
        decode(a, p, g0 * a.group / 8, g1 * a.group / 8, bbuf);
        // The next chunk's codes go to L2 while the tiles run (the hardware prefetcher stops at
        // the chunk's end): a share per group of the first row block.
        const int64_t o1 = g1 * a.group / 8, next = std::min(groups, g1 + chunk_groups) * a.group / 8 - o1;
        const int64_t share = (next + (g1 - g0) - 1) / (g1 - g0);
        for (int64_t i = 0; i < mp; i += 32)
          for (int64_t g = g0; g < g1; ++g) {
            if (i == 0)
              for (int64_t q = 0; q < 2; ++q)
                for (int64_t l = (g - g0) * share; l < std::min(next, (g - g0 + 1) * share); ++l)
                  _mm_prefetch(reinterpret_cast<const char*>(a.w + ((p + q) * octs + o1 + l) * kL4BlockBytes),
                               _MM_HINT_T1);
            const int8_t* b0 = bbuf + (g - g0) * a.group * 16;
            if (i + 32 <= mp) {
              group<2>(a, i, p, g, kw, b0, b0 + quads * 64, acc + i * 32);
            } else {
              group<1>(a, i, p, g, kw, b0, b0 + quads * 64, acc + i * 32);
            }
          }
      }
      store(a, p, acc);
    }
    Tiles::release();
    if (pairs_end < p1) fallback(a, pairs_end, p1);
  }

  // y = acc + bias (or + 0, as every other path), rows < m, columns < n.
  static void store(const Linear4Args& a, int64_t p, const float* acc) {
    for (int64_t h = 0; h < 2; ++h) {
      const int64_t col = (p + h) * kL4Panel, cnt = a.n - col;
      if (cnt <= 0) break;
      const __mmask16 mask = cnt >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << cnt) - 1);
      const __m512 b = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + col) : _mm512_setzero_ps();
      for (int64_t r = 0; r < a.m; ++r)
        _mm512_mask_storeu_ps(a.y + r * a.ldy + col, mask, _mm512_add_ps(_mm512_load_ps(acc + r * 32 + h * 16), b));
    }
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit
