// Scalar emulation of the AMX tiles (tests only): the Tiles parameter of the AMX kernels built
// into the AVX-512 VNNI objects (kernels/avx512vnni/*_amx_twin.cpp), so the AMX blocking,
// strides and K padding are checked on machines without AMX. Same interface as
// kernels/amx/amx_tiles.hpp; loads zero the bytes beyond the configured shape, as AMX does.
#pragma once

#include <cstdint>
#include <cstring>

namespace lowbit {
namespace kernels {
namespace {

struct EmuTileFile {
  alignas(64) uint8_t t[8][16][64];
  int rows[8], colsb[8];
};
thread_local EmuTileFile emu_tiles;

struct EmuTiles {
  static void configure(int a_bytes = 64) {
    std::memset(&emu_tiles, 0, sizeof(emu_tiles));
    for (int t = 0; t < 8; ++t) {
      emu_tiles.colsb[t] = t >= 4 && t < 6 ? a_bytes : 64;
      emu_tiles.rows[t] = t >= 6 ? a_bytes / 4 : 16;
    }
  }
  static void release() {}
  static void barrier() {}
  template <int T>
  static void zero() {
    std::memset(emu_tiles.t[T], 0, sizeof(emu_tiles.t[T]));
  }
  template <int T>
  static void load(const void* base, int64_t stride) {
    std::memset(emu_tiles.t[T], 0, sizeof(emu_tiles.t[T]));
    for (int r = 0; r < emu_tiles.rows[T]; ++r)
      std::memcpy(emu_tiles.t[T][r], static_cast<const uint8_t*>(base) + r * stride,
                  static_cast<size_t>(emu_tiles.colsb[T]));
  }
  // C[m][n] += sum_k sum_j A[m][4k + j] * s8 B[k][4n + j] over A's configured k, int32 wrap-around.
  template <int C, int A, int B, bool kSignedA>
  static void dp() {
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 16; ++n) {
        int32_t c;
        std::memcpy(&c, &emu_tiles.t[C][m][4 * n], 4);
        uint32_t acc = static_cast<uint32_t>(c);
        for (int k = 0; k < emu_tiles.colsb[A] / 4; ++k)
          for (int j = 0; j < 4; ++j) {
            const uint8_t av = emu_tiles.t[A][m][4 * k + j];
            const int32_t a = kSignedA ? static_cast<int32_t>(static_cast<int8_t>(av)) : static_cast<int32_t>(av);
            acc += static_cast<uint32_t>(a * static_cast<int32_t>(static_cast<int8_t>(emu_tiles.t[B][k][4 * n + j])));
          }
        c = static_cast<int32_t>(acc);
        std::memcpy(&emu_tiles.t[C][m][4 * n], &c, 4);
      }
  }
  template <int C, int A, int B>
  static void dpbusd() {
    dp<C, A, B, false>();
  }
  template <int C, int A, int B>
  static void dpbssd() {
    dp<C, A, B, true>();
  }
  template <int T>
  static void store(void* base, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(static_cast<uint8_t*>(base) + r * stride, emu_tiles.t[T][r], 64);
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit
