// The real AMX tile operations (AMX TUs only), the Tiles parameter of the kernels templated on
// tiles (kernels/matmul_amx_impl.hpp, kernels/linear_4bit_amx_impl.hpp). Tiles 0-3 hold int32 C
// blocks (16 x 16), 4-5 A (16 rows x `a_bytes`), 6-7 B (a_bytes / 4 rows x 64 bytes).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace lowbit {
namespace kernels {
namespace amx {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// GCC 12's _tile_loadconfig declares an 8-byte read, which lets -O2 drop the stores that fill the
// 64-byte configuration (PERF.md): load it with an asm whose memory operand is the whole struct.
inline void load_config(const TileConfig& cfg) { asm volatile("ldtilecfg %0" : : "m"(cfg) : "memory"); }

// GCC 12's tile load/store builtins declare no memory operands: barrier() fences the compiler.
struct AmxTiles {
  // a_bytes: 64, or 32 for K steps of 32 (B tiles then have 8 rows).
  static void configure(int a_bytes = 64) {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int t = 0; t < 8; ++t) {
      cfg.colsb[t] = static_cast<uint16_t>(t >= 4 && t < 6 ? a_bytes : 64);
      cfg.rows[t] = static_cast<uint8_t>(t >= 6 ? a_bytes / 4 : 16);
    }
    load_config(cfg);
  }
  static void release() { _tile_release(); }
  static void barrier() { asm volatile("" : : : "memory"); }
  // GCC's tile macros stringify their tile numbers: each one must be a literal.
  template <int T>
  static void zero() {
    if constexpr (T == 0) _tile_zero(0);
    if constexpr (T == 1) _tile_zero(1);
    if constexpr (T == 2) _tile_zero(2);
    if constexpr (T == 3) _tile_zero(3);
  }
  template <int T>
  static void load(const void* base, int64_t stride) {
    if constexpr (T == 4) _tile_loadd(4, base, stride);
    if constexpr (T == 5) _tile_loadd(5, base, stride);
    if constexpr (T == 6) _tile_loadd(6, base, stride);
    if constexpr (T == 7) _tile_loadd(7, base, stride);
  }
  // C += A (u8) . B (s8)
  template <int C, int A, int B>
  static void dpbusd() {
    static_assert(A == 4 + C / 2 && B == 6 + C % 2, "the 2 x 2 block uses tiles C = (A - 4) * 2 + (B - 6)");
    if constexpr (C == 0) _tile_dpbusd(0, 4, 6);
    if constexpr (C == 1) _tile_dpbusd(1, 4, 7);
    if constexpr (C == 2) _tile_dpbusd(2, 5, 6);
    if constexpr (C == 3) _tile_dpbusd(3, 5, 7);
  }
  // C += A (s8) . B (s8)
  template <int C, int A, int B>
  static void dpbssd() {
    static_assert(A == 4 + C / 2 && B == 6 + C % 2, "the 2 x 2 block uses tiles C = (A - 4) * 2 + (B - 6)");
    if constexpr (C == 0) _tile_dpbssd(0, 4, 6);
    if constexpr (C == 1) _tile_dpbssd(1, 4, 7);
    if constexpr (C == 2) _tile_dpbssd(2, 5, 6);
    if constexpr (C == 3) _tile_dpbssd(3, 5, 7);
  }
  template <int T>
  static void store(void* base, int64_t stride) {
    if constexpr (T == 0) _tile_stored(0, base, stride);
    if constexpr (T == 1) _tile_stored(1, base, stride);
    if constexpr (T == 2) _tile_stored(2, base, stride);
    if constexpr (T == 3) _tile_stored(3, base, stride);
  }
};

}  // namespace amx
}  // namespace kernels
}  // namespace lowbit
