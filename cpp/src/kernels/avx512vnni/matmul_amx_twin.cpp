// Test-only twin of the AMX GEMM task: kernels/matmul_amx_impl.hpp with the eight tiles emulated
// in scalar code (tdpbusd semantics), so the AMX blocking, strides and K padding are checked on
// machines without AMX (reached only through _core._matmul_amx_twin; slow).
#include <cstring>

#include "kernels/matmul_amx_impl.hpp"

namespace lowbit {
namespace kernels {
namespace avx512vnni {
namespace {

// Tile registers of the emulation, per thread like the real ones: 16 rows x 64 bytes each.
struct EmuTileFile {
  alignas(64) uint8_t t[8][16][64];
};
thread_local EmuTileFile tiles;

struct EmuTiles {
  static void configure() { std::memset(&tiles, 0, sizeof(tiles)); }
  static void release() {}
  static void barrier() {}
  template <int T>
  static void zero() {
    std::memset(tiles.t[T], 0, sizeof(tiles.t[T]));
  }
  template <int T>
  static void load(const void* base, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(tiles.t[T][r], static_cast<const uint8_t*>(base) + r * stride, 64);
  }
  // C[m][n] += sum_k sum_j u8 A[m][4k + j] * s8 B[k][4n + j], int32 wrap-around.
  template <int C, int A, int B>
  static void dpbusd() {
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 16; ++n) {
        int32_t c;
        std::memcpy(&c, &tiles.t[C][m][4 * n], 4);
        uint32_t acc = static_cast<uint32_t>(c);
        for (int k = 0; k < 16; ++k)
          for (int j = 0; j < 4; ++j)
            acc += static_cast<uint32_t>(static_cast<int32_t>(tiles.t[A][m][4 * k + j]) *
                                         static_cast<int32_t>(static_cast<int8_t>(tiles.t[B][k][4 * n + j])));
        c = static_cast<int32_t>(acc);
        std::memcpy(&tiles.t[C][m][4 * n], &c, 4);
      }
  }
  template <int T>
  static void store(void* base, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(static_cast<uint8_t*>(base) + r * stride, tiles.t[T][r], 64);
  }
};

}  // namespace

void gemm_u8s8_task_amx_twin(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  amx_task<EmuTiles>(g, m0, m1, p0, p1);
}

}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit
