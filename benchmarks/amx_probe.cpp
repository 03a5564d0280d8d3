// Probes where the AMX int8 GEMM task (cpp/src/kernels/matmul_amx_impl.hpp, real tiles) loses
// time on this core, with thread CPU time (robust to a shared machine): the tile configure +
// release per task, one 32 x 32 block repeated on L1-resident operands at several K (the block's
// A rows and B panel pair are 32 x K bytes each, L1 holds 48 KiB), and whole tasks whose B is
// L2-resident. Needs AMX (Linux 5.16+). Build and run from the repository root:
//   g++ -O3 -std=c++17 -march=sapphirerapids -Icpp/src -Icpp/include benchmarks/amx_probe.cpp -o /tmp/amx_probe
//   nice -n -20 /tmp/amx_probe
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "kernels/amx/amx_tiles.hpp"
#include "kernels/matmul_amx_impl.hpp"

namespace lowbit {
namespace kernels {
namespace avx512vnni {
// The probe runs whole 32-row blocks and panel pairs only: the AVX-512 VNNI edge task is unused.
void gemm_u8s8_task(const GemmArgs&, int64_t, int64_t, int64_t, int64_t) {}
}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit

namespace {

using lowbit::GemmArgs;
using lowbit::kernels::amx::AmxTiles;

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Best seconds per call of fn over 15 runs of >= 50 ms each.
template <class F>
double best_seconds(F fn) {
  double best = 1e30;
  for (int rep = 0; rep < 15; ++rep) {
    int64_t calls = 0;
    const double t0 = cpu_seconds();
    double t = 0;
    do {
      fn();
      ++calls;
      t = cpu_seconds() - t0;
    } while (t < 0.05);
    best = std::min(best, t / static_cast<double>(calls));
  }
  return best;
}

struct Problem {
  std::vector<uint8_t> a;
  std::vector<int8_t> b;
  std::vector<int32_t> row_offset, colsum, out;
  GemmArgs g;
  Problem(int64_t m, int64_t k, int64_t n)
      : a(static_cast<size_t>(m * lowbit::packed_act_stride(k)), 1),
        b(static_cast<size_t>(lowbit::packed_weight_bytes(k, n)), 1),
        row_offset(static_cast<size_t>(m), 0),
        colsum(static_cast<size_t>(lowbit::n_panels(n) * lowbit::kPanelCols), 0),
        out(static_cast<size_t>(m * n)) {
    g.a = a.data();
    g.lda = lowbit::packed_act_stride(k);
    g.m = m;
    g.k_groups = lowbit::k_groups(k);
    g.b = b.data();
    g.n = n;
    g.row_offset = row_offset.data();
    g.colsum = colsum.data();
    g.out = out.data();
    g.ldo = n;
  }
};

}  // namespace

int main() {
  if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0) {
    std::printf("no AMX permission\n");
    return 1;
  }
  const double cfg = best_seconds([] {
    for (int i = 0; i < 1000; ++i) {
      AmxTiles::configure();
      AmxTiles::release();
    }
  });
  std::printf("tile configure + release: %.0f ns\n", cfg / 1000 * 1e9);
  // One 32 x 32 block (int32 epilogue included), same operands every call.
  for (int64_t k : {256, 512, 768, 1024, 2048}) {
    Problem pr(32, k, 32);
    alignas(64) int32_t c[4 * lowbit::kernels::kTileInts];
    AmxTiles::configure();
    const double s = best_seconds([&] {
      for (int i = 0; i < 100; ++i) {
        lowbit::kernels::block_32x32<AmxTiles>(pr.g, 0, 0, c, nullptr);
        lowbit::kernels::epilogue_rows(pr.g, {c, 0, 0}, 0, lowbit::kernels::kBlockRows);
      }
    });
    AmxTiles::release();
    std::printf("one block 32x%ldx32, operands %ld KiB: %.2f TOP/s\n", static_cast<long>(k),
                static_cast<long>(2 * 32 * k / 1024), 2.0 * 32 * k * 32 * 100 / s / 1e12);
  }
  // Whole tasks: rows x all panels in one call (B and the output L2-resident).
  const int64_t shapes[][3] = {{32, 512, 512}, {128, 384, 384}, {128, 768, 768}, {64, 1536, 256}, {32, 4096, 192}};
  for (const auto& sh : shapes) {
    Problem pr(sh[0], sh[1], sh[2]);
    const double s = best_seconds([&] { lowbit::kernels::amx_task<AmxTiles>(pr.g, 0, sh[0], 0, sh[2] / 16); });
    std::printf("task %ldx%ldx%ld (B %ld KiB): %.2f TOP/s\n", static_cast<long>(sh[0]), static_cast<long>(sh[1]),
                static_cast<long>(sh[2]), static_cast<long>(sh[1] * sh[2] / 1024),
                2.0 * sh[0] * sh[1] * sh[2] / s / 1e12);
  }
  return 0;
}
