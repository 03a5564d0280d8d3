// AMX int8 GEMM task (tdpbusd): 32 x 32 output blocks as 2 x 2 int32 tiles, A tiles (16 rows x 64
// bytes) straight from the packed activations, B tiles straight from the vnni4x16 panels (a panel's
// 16 consecutive k groups are one 16 x 64-byte tile). Edge rows / panels go to the AVX-512 VNNI task.
//
// UNTESTED ON HARDWARE: the development machine (AMD Zen 4) has no AMX. As a guard, the first call
// in the process checks this kernel against the scalar reference on a fixed problem and routes
// every call to the AVX-512 VNNI kernel if they differ.
#include <immintrin.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#include "kernels/matmul_avx512_epilogue.hpp"
#include "reference/matmul.hpp"

namespace lowbit {
namespace kernels {
namespace amx {
namespace {

constexpr int64_t kTileRows = 16;
constexpr int64_t kTileBytes = 64;
constexpr int64_t kGroupsPerStep = kTileBytes / kKGroup;  // 16 k groups = 64 k per tdpbusd
constexpr int64_t kBlockRows = 2 * kTileRows;

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
// GCC 12's tile load/store builtins declare no memory operands: fence the compiler around them.
inline void barrier() { asm volatile("" : : : "memory"); }

void configure() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {  // tiles 0-3: C, 4-5: A, 6-7: B; all 16 rows x 64 bytes
    cfg.colsb[t] = static_cast<uint16_t>(kTileBytes);
    cfg.rows[t] = static_cast<uint8_t>(kTileRows);
  }
  load_config(cfg);
}

// Rows [i0, i0 + 32) x panels [p, p + 2): requires lda % 64 == 0 (packed_act_stride) and the
// packed-weight slack, since the last k step may read past K (times zero activation bytes).
void block_32x32(const GemmArgs& g, int64_t i0, int64_t p) {
  const int64_t ps = g.k_groups * kPanelCols * kKGroup;
  const int8_t* b0 = g.b + p * ps;
  const int8_t* b1 = b0 + ps;
  const uint8_t* a0 = g.a + i0 * g.lda;
  const uint8_t* a1 = a0 + kTileRows * g.lda;
  const int64_t steps = (g.k_groups + kGroupsPerStep - 1) / kGroupsPerStep;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  barrier();
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t off_a = s * kTileBytes;
    const int64_t off_b = s * kGroupsPerStep * kPanelCols * kKGroup;
    _tile_loadd(4, a0 + off_a, g.lda);
    _tile_loadd(5, a1 + off_a, g.lda);
    _tile_loadd(6, b0 + off_b, kTileBytes);
    _tile_loadd(7, b1 + off_b, kTileBytes);
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
  alignas(64) int32_t c[kBlockRows][2 * kPanelCols];
  barrier();
  _tile_stored(0, &c[0][0], sizeof(c[0]));
  _tile_stored(1, &c[0][16], sizeof(c[0]));
  _tile_stored(2, &c[16][0], sizeof(c[0]));
  _tile_stored(3, &c[16][16], sizeof(c[0]));
  barrier();
  for (int64_t r = 0; r < kBlockRows; ++r) {
    epilogue(g, _mm512_load_si512(c[r]), i0 + r, p);
    epilogue(g, _mm512_load_si512(c[r] + 16), i0 + r, p + 1);
  }
}

void amx_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const int64_t mb = m0 + (m1 - m0) / kBlockRows * kBlockRows;
  const int64_t pb = p0 + (p1 - p0) / 2 * 2;
  if (mb == m0 || pb == p0 || g.lda % kTileBytes != 0) {
    avx512vnni::gemm_u8s8_task(g, m0, m1, p0, p1);
    return;
  }
  configure();  // per call: tile state is per thread, released below
  for (int64_t p = p0; p < pb; p += 2)
    for (int64_t i = m0; i < mb; i += kBlockRows) block_32x32(g, i, p);
  _tile_release();
  if (pb < p1) avx512vnni::gemm_u8s8_task(g, m0, mb, pb, p1);  // the odd panel
  if (mb < m1) avx512vnni::gemm_u8s8_task(g, mb, m1, p0, p1);  // the last rows
}

// 1: AMX agrees with the reference on a fixed problem, 0: it does not (use AVX-512 VNNI).
bool self_check() {
  const int64_t m = 40, k = 200, n = 40;
  const int64_t kg = k_groups(k), lda = packed_act_stride(k), panels = n_panels(n);
  std::vector<uint8_t> a(static_cast<size_t>(m * lda), 0);
  std::vector<int8_t> w(static_cast<size_t>(n * k));
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
  amx_task(g, 0, m, 0, panels);
  g.out = want.data();
  ref::gemm_u8s8_task(g, 0, m, 0, panels);
  return got == want;
}

}  // namespace

void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  static const bool ok = self_check();
  if (ok)
    amx_task(g, m0, m1, p0, p1);
  else
    avx512vnni::gemm_u8s8_task(g, m0, m1, p0, p1);
}

}  // namespace amx
}  // namespace kernels
}  // namespace lowbit
