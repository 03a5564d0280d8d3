// AMX int8 GEMM task (tdpbusd), the source in kernels/matmul_amx_impl.hpp with real tiles.
//
// UNTESTED ON HARDWARE: the development machine (AMD Zen 4) has no AMX. The blocking and addressing
// are tested through a scalar tile emulation (_core._matmul_amx_twin); as a guard for the rest,
// the first call in the process checks this kernel against the scalar reference on a fixed
// problem and routes every call to the AVX-512 VNNI kernel if they differ.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/matmul_amx_impl.hpp"

namespace lowbit {
namespace kernels {
namespace amx {
namespace {

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
  static void configure() {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int t = 0; t < 8; ++t) {  // tiles 0-3: C, 4-5: A, 6-7: B; all 16 rows x 64 bytes
      cfg.colsb[t] = static_cast<uint16_t>(kTileBytes);
      cfg.rows[t] = static_cast<uint8_t>(kTileRows);
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
  template <int C, int A, int B>
  static void dpbusd() {
    static_assert(A == 4 + C / 2 && B == 6 + C % 2, "the 2 x 2 block uses tiles C = (A - 4) * 2 + (B - 6)");
    if constexpr (C == 0) _tile_dpbusd(0, 4, 6);
    if constexpr (C == 1) _tile_dpbusd(1, 4, 7);
    if constexpr (C == 2) _tile_dpbusd(2, 5, 6);
    if constexpr (C == 3) _tile_dpbusd(3, 5, 7);
  }
  template <int T>
  static void store(void* base, int64_t stride) {
    if constexpr (T == 0) _tile_stored(0, base, stride);
    if constexpr (T == 1) _tile_stored(1, base, stride);
    if constexpr (T == 2) _tile_stored(2, base, stride);
    if constexpr (T == 3) _tile_stored(3, base, stride);
  }
};

// 1: AMX agrees with the reference on a fixed problem, 0: it does not (use AVX-512 VNNI).
bool self_check() {
  const int64_t m = 40, k = 200, n = 40;
  const int64_t kg = k_groups(k), lda = packed_act_stride(k), panels = n_panels(n);
  std::vector<uint8_t> a(static_cast<size_t>(m * lda), 0);
  std::vector<int8_t> packed(static_cast<size_t>(packed_weight_bytes(k, n)), 0);
  std::vector<int32_t> colsum(static_cast<size_t>(panels * kPanelCols), 0), row_offset(static_cast<size_t>(m), 128);
  uint32_t x = 12345;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t t = 0; t < k; ++t) a[i * lda + t] = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t t = 0; t < k; ++t) {
      const int8_t v = static_cast<int8_t>((x = x * 1664525u + 1013904223u) >> 24);
      packed[((j / kPanelCols) * kg + t / 4) * kPanelCols * kKGroup + (j % kPanelCols) * kKGroup + (t & 3)] = v;
      colsum[j] += v;
    }
  std::vector<int32_t> got(static_cast<size_t>(m * n)), want(static_cast<size_t>(m * n));
  GemmArgs g;
  g.a = a.data();
  g.lda = lda;
  g.m = m;
  g.k_groups = kg;
  g.b = packed.data();
  g.n = n;
  g.row_offset = row_offset.data();
  g.colsum = colsum.data();
  g.ldo = n;
  g.out = got.data();
  amx_task<AmxTiles>(g, 0, m, 0, panels);
  g.out = want.data();
  ref::gemm_u8s8_task(g, 0, m, 0, panels);
  return got == want;
}

}  // namespace

void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  static const bool ok = self_check();
  if (ok)
    amx_task<AmxTiles>(g, m0, m1, p0, p1);
  else
    avx512vnni::gemm_u8s8_task(g, m0, m1, p0, p1);
}

}  // namespace amx
}  // namespace kernels
}  // namespace lowbit
