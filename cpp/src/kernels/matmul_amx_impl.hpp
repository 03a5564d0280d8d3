// The AMX int8 GEMM task, templated on the tile operations: the real AMX instructions
// (kernels/amx/matmul.cpp) or a scalar emulation of the same tiles (kernels/avx512vnni/
// matmul_amx_twin.cpp, tests only), so the blocking and addressing are checked without AMX.
// 32 x 32 output blocks as 2 x 2 int32 tiles (0-3), A tiles (4, 5: 16 rows x 64 bytes) straight
// from the packed activations, B tiles (6, 7) straight from the vnni4x16 panels (16 consecutive
// k groups of a panel are one 16 x 64-byte tile). Edge rows / panels go to the AVX-512 VNNI task.
#pragma once

#include <immintrin.h>

#include <algorithm>

#include "kernels/matmul.hpp"
#include "kernels/matmul_epilogue.hpp"

namespace lowbit {
namespace kernels {
namespace {

constexpr int64_t kTileRows = 16;
constexpr int64_t kTileBytes = 64;
constexpr int64_t kGroupsPerStep = kTileBytes / kKGroup;  // 16 k groups = 64 k per tdpbusd
constexpr int64_t kBlockRows = 2 * kTileRows;

// Long K (kPipelineSteps tile steps or more): the epilogue of each finished block runs a few rows
// per tile step of the next block, on the vector units while the tiles work (measured 1.15-1.35x
// at K >= 768 with benchmarks/amx_probe.cpp-style tasks). Shorter K runs each block's epilogue
// right after it: there the out-of-order core already overlaps it with the next block, and the
// interleaving measured ~10% slower.
constexpr int64_t kPipelineSteps = 12;
constexpr int64_t kTileInts = kTileRows * kPanelCols;  // one 16 x 16 int32 C tile

// A finished block's int32 sums as 4 contiguous tiles (rows 0-15 | 16-31 x panel p | p + 1),
// awaiting its epilogue.
struct PendingBlock {
  const int32_t* c = nullptr;
  int64_t i0 = 0, p = 0;
};

inline void epilogue_rows(const GemmArgs& g, const PendingBlock& d, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int32_t* row = d.c + (r / kTileRows) * 2 * kTileInts + (r % kTileRows) * kPanelCols;
    epilogue<Zmm16>(g, _mm512_load_si512(row), d.i0 + r, d.p * kPanelCols);
    epilogue<Zmm16>(g, _mm512_load_si512(row + kTileInts), d.i0 + r, (d.p + 1) * kPanelCols);
  }
}

// The int32 sums of rows [i0, i0 + 32) x panels [p, p + 2) into c (4 contiguous tiles, 4 KiB)
// for epilogue_rows: requires lda % 64 == 0 (packed_act_stride) and the packed-weight slack, since
// the last k step may read past K (times zero activation bytes). prev's epilogue (if any) runs
// meanwhile, ceil(32 / steps) rows per tile step; prev may be the block whose buffer c is, since
// its rows are done before the tile stores.
template <class Tiles>
void block_32x32(const GemmArgs& g, int64_t i0, int64_t p, int32_t* c, const PendingBlock* prev) {
  const int64_t ps = g.k_groups * kPanelCols * kKGroup;
  const int8_t* b0 = g.b + p * ps;
  const int8_t* b1 = b0 + ps;
  const uint8_t* a0 = g.a + i0 * g.lda;
  const uint8_t* a1 = a0 + kTileRows * g.lda;
  const int64_t steps = (g.k_groups + kGroupsPerStep - 1) / kGroupsPerStep;
  const int64_t per_step = (kBlockRows + steps - 1) / steps;
  Tiles::template zero<0>();
  Tiles::template zero<1>();
  Tiles::template zero<2>();
  Tiles::template zero<3>();
  Tiles::barrier();
  int64_t done = prev != nullptr ? 0 : kBlockRows;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t off_a = s * kTileBytes;
    const int64_t off_b = s * kGroupsPerStep * kPanelCols * kKGroup;
    // Tile loads that miss L1 stall the tiles: the next step's activation rows go to L1 now.
    if (s + 1 < steps) {
      const uint8_t* pf = a0 + off_a + kTileBytes;
#pragma GCC unroll 1
      for (int64_t r = 0; r < kBlockRows; ++r, pf += g.lda)
        _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
    }
    Tiles::template load<4>(a0 + off_a, g.lda);
    Tiles::template load<5>(a1 + off_a, g.lda);
    Tiles::template load<6>(b0 + off_b, kTileBytes);
    Tiles::template load<7>(b1 + off_b, kTileBytes);
    Tiles::template dpbusd<0, 4, 6>();
    Tiles::template dpbusd<1, 4, 7>();
    Tiles::template dpbusd<2, 5, 6>();
    Tiles::template dpbusd<3, 5, 7>();
    if (done < kBlockRows) {
      const int64_t r1 = std::min(kBlockRows, done + per_step);
      epilogue_rows(g, *prev, done, r1);
      done = r1;
    }
  }
  Tiles::barrier();
  Tiles::template store<0>(c, kPanelCols * 4);
  Tiles::template store<1>(c + kTileInts, kPanelCols * 4);
  Tiles::template store<2>(c + 2 * kTileInts, kPanelCols * 4);
  Tiles::template store<3>(c + 3 * kTileInts, kPanelCols * 4);
  Tiles::barrier();
}

template <class Tiles>
void amx_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const int64_t mb = m0 + (m1 - m0) / kBlockRows * kBlockRows;
  const int64_t pb = p0 + (p1 - p0) / 2 * 2;
  if (mb == m0 || pb == p0 || g.lda % kTileBytes != 0) {
    avx512vnni::gemm_u8s8_task(g, m0, m1, p0, p1);
    return;
  }
  Tiles::configure();  // per call: tile state is per thread, released below
  if ((g.k_groups + kGroupsPerStep - 1) / kGroupsPerStep >= kPipelineSteps) {
    alignas(64) int32_t cbuf[2][4 * kTileInts];
    PendingBlock pending;
    int slot = 0;
    for (int64_t p = p0; p < pb; p += 2)
      for (int64_t i = m0; i < mb; i += kBlockRows) {
        block_32x32<Tiles>(g, i, p, cbuf[slot], pending.c != nullptr ? &pending : nullptr);
        pending.c = cbuf[slot];
        pending.i0 = i;
        pending.p = p;
        slot ^= 1;
      }
    epilogue_rows(g, pending, 0, kBlockRows);
  } else {
    alignas(64) int32_t c[4 * kTileInts];
    for (int64_t p = p0; p < pb; p += 2)
      for (int64_t i = m0; i < mb; i += kBlockRows) {
        block_32x32<Tiles>(g, i, p, c, nullptr);
        epilogue_rows(g, PendingBlock{c, i, p}, 0, kBlockRows);
      }
  }
  Tiles::release();
  if (pb < p1) avx512vnni::gemm_u8s8_task(g, m0, mb, pb, p1);  // the odd panel
  if (mb < m1) avx512vnni::gemm_u8s8_task(g, mb, m1, p0, p1);  // the last rows
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit
