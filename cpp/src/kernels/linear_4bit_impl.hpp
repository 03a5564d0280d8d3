// 4-bit-weight linear kernels (int4 / NF4), written once over small per-ISA traits of raw
// intrinsics (the decode needs permutes, nibble shifts and dot-product instructions xsimd 8.1 does
// not spell) and compiled once per ISA (kernels/<isa>/linear_4bit.cpp). Contract and packed layout:
// lowbit/linear_4bit.hpp. Every path runs the exact operation sequence of the scalar reference, so the
// ISAs agree bit for bit.
#pragma once

#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "lowbit/formats.hpp"
#include "lowbit/linear_4bit.hpp"

namespace lowbit {
namespace kernels {
namespace {

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---------------------------------------------------------------- float vectors per ISA
#if defined(__AVX2__) && defined(__FMA__)
struct F256 {
  using vf = __m256;
  using vi = __m256i;
  static constexpr int W = 8;
  static vf zero() { return _mm256_setzero_ps(); }
  static vf set1(float v) { return _mm256_set1_ps(v); }
  static vf load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, vf v) { _mm256_storeu_ps(p, v); }
  static vi lane_mask(int64_t count) {  // lanes < count all-ones
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(count)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static vf load_n(const float* p, int64_t count) {
    return count >= W ? load(p) : _mm256_maskload_ps(p, lane_mask(count));
  }
  static void store_n(float* p, vf v, int64_t count) {
    if (count >= W) {
      _mm256_storeu_ps(p, v);
    } else {
      _mm256_maskstore_ps(p, lane_mask(count), v);
    }
  }
  static vf fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
  static vf add(vf a, vf b) { return _mm256_add_ps(a, b); }
  static vf mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
  static vf max(vf a, vf b) { return _mm256_max_ps(a, b); }
  static vf abs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static float hsum(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static float hmax(vf v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
  }
  // Nearest-even conversion (the MXCSR default), clamped to [-127, 127], stored as W int8.
  static vi quantize(vf v, vf inv) {
    const vi q = _mm256_cvtps_epi32(_mm256_mul_ps(v, inv));
    return _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));
  }
  static void store_s8(int8_t* p, vi q) {
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(w, w));
  }
  static vi iadd(vi a, vi b) { return _mm256_add_epi32(a, b); }
  static vi izero() { return _mm256_setzero_si256(); }
  static int32_t ihsum(vi v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
  }
};

// Float-path decode on AVX2: a panel is two ymm halves (8 columns of 4 bytes each).
struct Avx2Float : F256 {
  static constexpr int H = 2;
  static constexpr int kRows = 2, kPanels = 1, kGemvPanels = 2;
  static vi load_block(const uint8_t* p, int h) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * h));
  }
  template <int S>
  static vi srl(vi v) {
    return S == 0 ? v : _mm256_srli_epi32(v, S);
  }
  struct Table {
    __m256 t0, t1;
  };
  static Table table(const float* levels) { return {_mm256_loadu_ps(levels), _mm256_loadu_ps(levels + 8)}; }
  // 16-entry lookup on the low 4 bits of each lane (higher bits ignored).
  static vf level(const Table& t, vi idx) {
    const __m256 a = _mm256_permutevar8x32_ps(t.t0, idx);  // low 3 bits
    const __m256 b = _mm256_permutevar8x32_ps(t.t1, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
};

// Int8 path on AVX2: u8 weights (<= 15) x s8 activations through vpmaddubsw, whose int16 pair
// sums (<= 2 * 15 * 127) never saturate, then vpmaddwd by ones: exact.
struct Avx2Int8 : F256 {
  static constexpr int H = 2;
  static constexpr int kRows = 2, kPanels = 1, kGemvPanels = 2;
  static vi load_block(const uint8_t* p, int h) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * h));
  }
  static vi nibbles_lo(vi v) { return _mm256_and_si256(v, _mm256_set1_epi8(15)); }
  static vi nibbles_hi(vi v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(15)); }
  static vi bcast4(const int8_t* p) { return _mm256_set1_epi32(load_i32(p)); }
  static vi dot(vi acc, vi w, vi x) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
  }
  static vi iset1(int32_t v) { return _mm256_set1_epi32(v); }
  static vi isub(vi a, vi b) { return _mm256_sub_epi32(a, b); }
  static vf cvt(vi a) { return _mm256_cvtepi32_ps(a); }
  // NF4: codes -> int8 levels with vpshufb; s8 x s8 as |w| (u8) x sign-adjusted x, whose pair
  // sums (<= 2 * 127 * 127) never saturate. Activations stay s8: no offset to compensate.
  static constexpr bool kNf4Offset = false;
  static vi lut(vi codes) {
    return _mm256_shuffle_epi8(
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kNf4Int8Levels))), codes);
  }
  static vi act_nf4(vi x) { return x; }
  static vi dot_nf4(vi acc, vi w, vi x) {
    return _mm256_add_epi32(
        acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1)));
  }
  static vi loadi(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
};
#endif

#if defined(__AVX2__) && defined(__FMA__) && (defined(__AVXVNNI__) || defined(LOWBIT_L4_VNNI256_EVEX))
// Int8 path on AVX-VNNI (VEX vpdpbusd on ymm): as AVX2, with one vpdpbusd per 4 k; NF4 takes the
// offset form of the AVX-512 VNNI path. LOWBIT_L4_VNNI256_EVEX builds the test-only twin with the
// EVEX encoding (AVX-512 VNNI + VL) on machines without AVX-VNNI.
#if defined(LOWBIT_L4_VNNI256_EVEX)
#define LOWBIT_L4_DPBUSD256 _mm256_dpbusd_epi32
#else
#define LOWBIT_L4_DPBUSD256 _mm256_dpbusd_avx_epi32
#endif
struct AvxVnniInt8 : Avx2Int8 {
  static constexpr int kRows = 4, kPanels = 1, kGemvPanels = 2;
  static vi dot(vi acc, vi w, vi x) { return LOWBIT_L4_DPBUSD256(acc, w, x); }
  static constexpr bool kNf4Offset = true;
  static vi act_nf4(vi x) { return _mm256_xor_si256(x, _mm256_set1_epi8(static_cast<char>(0x80))); }
  static vi dot_nf4(vi acc, vi w, vi x) { return LOWBIT_L4_DPBUSD256(acc, x, w); }
  static vi offset_of(vi wsum) { return _mm256_slli_epi32(wsum, 7); }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
struct F512 {
  using vf = __m512;
  using vi = __m512i;
  static constexpr int W = 16;
  static vf zero() { return _mm512_setzero_ps(); }
  static vf set1(float v) { return _mm512_set1_ps(v); }
  static vf load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, vf v) { _mm512_storeu_ps(p, v); }
  static __mmask16 lane_mask(int64_t count) {
    return count >= W ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << count) - 1);
  }
  static vf load_n(const float* p, int64_t count) { return _mm512_maskz_loadu_ps(lane_mask(count), p); }
  static void store_n(float* p, vf v, int64_t count) { _mm512_mask_storeu_ps(p, lane_mask(count), v); }
  static vf fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
  static vf add(vf a, vf b) { return _mm512_add_ps(a, b); }
  static vf mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
  static vf max(vf a, vf b) { return _mm512_max_ps(a, b); }
  static vf abs(vf a) { return _mm512_abs_ps(a); }
  static float hsum(vf v) { return _mm512_reduce_add_ps(v); }
  static float hmax(vf v) { return _mm512_reduce_max_ps(v); }
  static vi quantize(vf v, vf inv) {
    const vi q = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));
    return _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
  }
  static void store_s8(int8_t* p, vi q) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(q)); }
  static vi iadd(vi a, vi b) { return _mm512_add_epi32(a, b); }
  static vi izero() { return _mm512_setzero_si512(); }
  static int32_t ihsum(vi v) { return _mm512_reduce_add_epi32(v); }
};

// Float-path decode on AVX-512: one zmm per panel and k octet; vpermps reads only the low 4 index
// bits, so a code needs at most one shift and one permute.
struct Avx512Float : F512 {
  static constexpr int H = 1;
  static constexpr int kRows = 4, kPanels = 2, kGemvPanels = 4;
  static vi load_block(const uint8_t* p, int) { return _mm512_loadu_si512(p); }
  template <int S>
  static vi srl(vi v) {
    return S == 0 ? v : _mm512_srli_epi32(v, S);
  }
  struct Table {
    __m512 t;
  };
  static Table table(const float* levels) { return {_mm512_loadu_ps(levels)}; }
  static vf level(const Table& t, vi idx) { return _mm512_permutexvar_ps(idx, t.t); }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
// Int8 path on AVX-512 VNNI: u8 weight nibbles x s8 activations, one vpdpbusd per 4 k.
struct Avx512VnniInt8 : F512 {
  static constexpr int H = 1;
  static constexpr int kRows = 6, kPanels = 2, kGemvPanels = 4;
  static vi load_block(const uint8_t* p, int) { return _mm512_loadu_si512(p); }
  static vi nibbles_lo(vi v) { return _mm512_and_si512(v, _mm512_set1_epi8(15)); }
  static vi nibbles_hi(vi v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(15)); }
  static vi bcast4(const int8_t* p) { return _mm512_set1_epi32(load_i32(p)); }
  static vi dot(vi acc, vi w, vi x) { return _mm512_dpbusd_epi32(acc, w, x); }
  static vi iset1(int32_t v) { return _mm512_set1_epi32(v); }
  static vi isub(vi a, vi b) { return _mm512_sub_epi32(a, b); }
  static vf cvt(vi a) { return _mm512_cvtepi32_ps(a); }
  // NF4: codes -> int8 levels with vpshufb (the 16-byte table in every lane); the activations,
  // shifted to u8 (xq + 128), become the unsigned operand and 128 * wsum is subtracted per group.
  static constexpr bool kNf4Offset = true;
  static vi lut(vi codes) {
    return _mm512_shuffle_epi8(
        _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kNf4Int8Levels))), codes);
  }
  static vi act_nf4(vi x) { return _mm512_xor_si512(x, _mm512_set1_epi8(static_cast<char>(0x80))); }
  static vi dot_nf4(vi acc, vi w, vi x) { return _mm512_dpbusd_epi32(acc, x, w); }
  static vi loadi(const int32_t* p) { return _mm512_loadu_si512(p); }
  static vi offset_of(vi wsum) { return _mm512_slli_epi32(wsum, 7); }
};
#endif

// Levels of the float path: int4 code u is u - 8.
constexpr float kInt4Levels[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};

// Shared driver: rows in blocks of T::kRows per group of NP panels (M = 1: T::kGemvPanels), so a
// panel group's weights stay in L1/L2 while every row block passes over them.
template <class T, class Tile>
struct Linear4Driver {
  template <int NP, int R>
  static void rows_tail(const Linear4Args& a, int64_t m, int64_t p) {
    if constexpr (R > 0) {
      if (a.m - m == R) {
        Tile::template tile<R, NP>(a, m, p);
        return;
      }
      rows_tail<NP, R - 1>(a, m, p);
    }
  }
  template <int NP>
  static void rows(const Linear4Args& a, int64_t p) {
    int64_t m = 0;
    for (; m + T::kRows <= a.m; m += T::kRows) Tile::template tile<T::kRows, NP>(a, m, p);
    rows_tail<NP, T::kRows - 1>(a, m, p);
  }
  static void run(const Linear4Args& a, int64_t p0, int64_t p1) {
    int64_t p = p0;
    if (a.m == 1) {
      for (; p + T::kGemvPanels <= p1; p += T::kGemvPanels) Tile::template tile<1, T::kGemvPanels>(a, 0, p);
    } else {
      for (; p + T::kPanels <= p1; p += T::kPanels) rows<T::kPanels>(a, p);
    }
    for (; p < p1; ++p) rows<1>(a, p);
  }
};

// Stores rows m0 .. m0 + MR of the V column vectors starting at panel p, plus bias.
template <class T, int MR, int V>
inline void store_tile(const Linear4Args& a, int64_t m0, int64_t p, typename T::vf (&acc)[MR][V]) {
#pragma GCC unroll 16
  for (int v = 0; v < V; ++v) {
    const int64_t col = p * kL4Panel + v * T::W;
    const int64_t cnt = a.n - col;
    if (cnt <= 0) break;
    const typename T::vf b = a.bias ? T::load_n(a.bias + col, cnt) : T::zero();
#pragma GCC unroll 8
    for (int mm = 0; mm < MR; ++mm) T::store_n(a.y + (m0 + mm) * a.ldy + col, T::add(acc[mm][v], b), cnt);
  }
}

// ---------------------------------------------------------------- float activations
template <class T, bool kNf4>
struct Linear4FloatTile {
  using vf = typename T::vf;
  using vi = typename T::vi;

  // Input k = 8o + J of the octet: byte J % 4 of each lane, high nibble when J >= 4.
  template <int J, int MR, int V>
  static void step(const typename T::Table& tab, const vi (&raw)[V], const float* const (&xr)[MR], int64_t k0,
                   vf (&part)[MR][V]) {
    constexpr int S = (J % 4) * 8 + (J / 4) * 4;
    vf lv[V];
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) lv[v] = T::level(tab, T::template srl<S>(raw[v]));
#pragma GCC unroll 8
    for (int mm = 0; mm < MR; ++mm) {
      const vf xb = T::set1(xr[mm][k0 + J]);
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) part[mm][v] = T::fma(xb, lv[v], part[mm][v]);
    }
  }

  template <int MR, int NP>
  static void tile(const Linear4Args& a, int64_t m0, int64_t p) {
    constexpr int V = NP * T::H;
    const typename T::Table tab = T::table(kNf4 ? kNf4Levels : kInt4Levels);
    const int64_t octs = a.kp / 8, gocts = a.group / 8, groups = a.kp / a.group, np = l4_padded_n(a.n);
    const uint8_t* wp = a.w + p * octs * kL4BlockBytes;
    const float* xr[MR];
#pragma GCC unroll 8
    for (int mm = 0; mm < MR; ++mm) xr[mm] = a.x + (m0 + mm) * a.ldx;
    vf acc[MR][V];
#pragma GCC unroll 8
    for (int mm = 0; mm < MR; ++mm)
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) acc[mm][v] = T::zero();
    for (int64_t g = 0; g < groups; ++g) {
      vf part[MR][V];
#pragma GCC unroll 8
      for (int mm = 0; mm < MR; ++mm)
#pragma GCC unroll 16
        for (int v = 0; v < V; ++v) part[mm][v] = T::zero();
      for (int64_t o = g * gocts; o < (g + 1) * gocts; ++o) {
        vi raw[V];
#pragma GCC unroll 16
        for (int v = 0; v < V; ++v) raw[v] = T::load_block(wp + ((v / T::H) * octs + o) * kL4BlockBytes, v % T::H);
        const int64_t k0 = 8 * o;
        step<0>(tab, raw, xr, k0, part);
        step<1>(tab, raw, xr, k0, part);
        step<2>(tab, raw, xr, k0, part);
        step<3>(tab, raw, xr, k0, part);
        step<4>(tab, raw, xr, k0, part);
        step<5>(tab, raw, xr, k0, part);
        step<6>(tab, raw, xr, k0, part);
        step<7>(tab, raw, xr, k0, part);
      }
      const float* sc = a.scales + g * np + p * kL4Panel;
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) {
        const vf sv = T::load(sc + v * T::W);
#pragma GCC unroll 8
        for (int mm = 0; mm < MR; ++mm) acc[mm][v] = T::fma(part[mm][v], sv, acc[mm][v]);
      }
    }
    store_tile<T, MR, V>(a, m0, p, acc);
  }
};

// ---------------------------------------------------------------- int8 activations
template <class T, bool kNf4>
struct Linear4Int8Tile {
  using vf = typename T::vf;
  using vi = typename T::vi;

  // One 4-k dot product step: int4 codes (u8) x s8 activations, or NF4 int8 levels x activations.
  static vi step(vi acc, vi w, vi x) {
    if constexpr (kNf4) {
      return T::dot_nf4(acc, w, T::act_nf4(x));
    } else {
      return T::dot(acc, w, x);
    }
  }

  template <int MR, int NP>
  static void tile(const Linear4Args& a, int64_t m0, int64_t p) {
    constexpr int V = NP * T::H;
    const int64_t octs = a.kp / 8, gocts = a.group / 8, groups = a.kp / a.group, np = l4_padded_n(a.n);
    const uint8_t* wp = a.w + p * octs * kL4BlockBytes;
    const int8_t* xr[MR];
#pragma GCC unroll 8
    for (int mm = 0; mm < MR; ++mm) xr[mm] = a.xq + (m0 + mm) * a.ldxq;
    // Float accumulators live in an L1 tile: in registers beside the MR x V int32 dot products
    // they make GCC copy the dot products around every vpdpbusd.
    alignas(64) float acc_tile[MR][V * T::W];
    for (int mm = 0; mm < MR; ++mm)
      for (int v = 0; v < V; ++v) T::store(acc_tile[mm] + v * T::W, T::zero());
    for (int64_t g = 0; g < groups; ++g) {
      vi dot[MR][V];
#pragma GCC unroll 8
      for (int mm = 0; mm < MR; ++mm)
#pragma GCC unroll 16
        for (int v = 0; v < V; ++v) dot[mm][v] = T::izero();
      for (int64_t o = g * gocts; o < (g + 1) * gocts; ++o) {
        vi lo[V], hi[V];
#pragma GCC unroll 16
        for (int v = 0; v < V; ++v) {
          const vi raw = T::load_block(wp + ((v / T::H) * octs + o) * kL4BlockBytes, v % T::H);
          lo[v] = T::nibbles_lo(raw);
          hi[v] = T::nibbles_hi(raw);
          if (kNf4) {
            lo[v] = T::lut(lo[v]);
            hi[v] = T::lut(hi[v]);
          }
        }
#pragma GCC unroll 8
        for (int mm = 0; mm < MR; ++mm) {
          const vi xa = T::bcast4(xr[mm] + 8 * o);
#pragma GCC unroll 16
          for (int v = 0; v < V; ++v) dot[mm][v] = step(dot[mm][v], lo[v], xa);
        }
#pragma GCC unroll 8
        for (int mm = 0; mm < MR; ++mm) {
          const vi xb = T::bcast4(xr[mm] + 8 * o + 4);
#pragma GCC unroll 16
          for (int v = 0; v < V; ++v) dot[mm][v] = step(dot[mm][v], hi[v], xb);
        }
      }
      const float* sc = a.scales + g * np + p * kL4Panel;
      vi woff[V];  // NF4 on an offset ISA: 128 * the group's level sums per column
      if constexpr (kNf4 && T::kNf4Offset) {
#pragma GCC unroll 16
        for (int v = 0; v < V; ++v) woff[v] = T::offset_of(T::loadi(a.wsum + g * np + p * kL4Panel + v * T::W));
      }
#pragma GCC unroll 8
      for (int mm = 0; mm < MR; ++mm) {
        const int64_t r = (m0 + mm) * groups + g;
        const vi c8 = kNf4 ? T::izero() : T::iset1(a.xsum8[r]);
        const vf sx = T::set1(a.xscale[r]);
#pragma GCC unroll 16
        for (int v = 0; v < V; ++v) {
          float* t = acc_tile[mm] + v * T::W;
          vi di = dot[mm][v];
          if constexpr (!kNf4) {
            di = T::isub(di, c8);
          } else if constexpr (T::kNf4Offset) {
            di = T::isub(di, woff[v]);
          }
          const vf d = T::mul(T::cvt(di), T::load(sc + v * T::W));
          T::store(t, T::add(T::load(t), T::mul(d, sx)));
        }
      }
    }
    vf acc[MR][V];
    for (int mm = 0; mm < MR; ++mm)
      for (int v = 0; v < V; ++v) acc[mm][v] = T::load(acc_tile[mm] + v * T::W);
    store_tile<T, MR, V>(a, m0, p, acc);
  }
};

// ---------------------------------------------------------------- activation quantization
template <class T>
void quantize_row_groups(const float* x, int64_t k, int64_t kp, int64_t group, int8_t* xq, float* xscale,
                         int32_t* xsum8) {
  using vf = typename T::vf;
  using vi = typename T::vi;
  for (int64_t g = 0; g * group < kp; ++g) {
    const int64_t b = g * group, e = b + group < k ? b + group : k;
    vf amax = T::zero(), bad = T::zero();
    for (int64_t i = b; i < e; i += T::W) {
      const vf v = T::load_n(x + i, e - i);
      amax = T::max(amax, T::abs(v));
      bad = T::add(bad, T::mul(v, T::zero()));  // NaN once a NaN or an infinity passed
    }
    const float am = T::hmax(amax);
    const bool finite = T::hsum(bad) == 0.0f;
    const float inv = !finite || am == 0.0f ? 0.0f : std::fmin(127.0f / am, FLT_MAX);
    xscale[g] = finite ? am / 127.0f : NAN;
    if (inv == 0.0f) {  // zero or non-finite group
      std::memset(xq + b, 0, static_cast<size_t>(group));
      xsum8[g] = 0;
      continue;
    }
    const vf invv = T::set1(inv);
    vi sum = T::izero();
    for (int64_t i = b; i < b + group; i += T::W) {
      const vi q = T::quantize(i < e ? T::load_n(x + i, e - i) : T::zero(), invv);
      sum = T::iadd(sum, q);
      T::store_s8(xq + i, q);
    }
    xsum8[g] = 8 * T::ihsum(sum);
  }
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit

// Defines the lowbit::kernels::<ns> float-activation entry points with float traits T.
#define LOWBIT_DEFINE_LINEAR4_FLOAT_KERNELS(ns, T)                                                         \
  namespace lowbit {                                                                                       \
  namespace kernels {                                                                                      \
  namespace ns {                                                                                           \
  void linear_f32_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) {                                  \
    Linear4Driver<T, Linear4FloatTile<T, false>>::run(a, p0, p1);                                          \
  }                                                                                                        \
  void linear_f32_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) {                                 \
    Linear4Driver<T, Linear4FloatTile<T, true>>::run(a, p0, p1);                                           \
  }                                                                                                        \
  void quantize_row_s8_groups(const float* x, int64_t k, int64_t kp, int64_t group, int8_t* xq, float* xs, \
                              int32_t* xsum8) {                                                            \
    quantize_row_groups<T>(x, k, kp, group, xq, xs, xsum8);                                                \
  }                                                                                                        \
  }                                                                                                        \
  }                                                                                                        \
  }

// Defines the lowbit::kernels::<ns> int8-activation entry point with int8 traits T.
#define LOWBIT_DEFINE_LINEAR4_INT8_KERNELS(ns, T)                         \
  namespace lowbit {                                                      \
  namespace kernels {                                                     \
  namespace ns {                                                          \
  void linear_s8_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) {  \
    Linear4Driver<T, Linear4Int8Tile<T, false>>::run(a, p0, p1);          \
  }                                                                       \
  void linear_s8_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) { \
    Linear4Driver<T, Linear4Int8Tile<T, true>>::run(a, p0, p1);           \
  }                                                                       \
  }                                                                       \
  }                                                                       \
  }
