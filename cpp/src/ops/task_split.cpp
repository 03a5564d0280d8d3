// The int8 GEMM task split (ops layer): cache blocking into (row chunk, panel chunk) tasks, how
// many tasks the threads get, and the row grains of activation packing and patch streaming.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "lowbit/parallel.hpp"
#include "ops/gemm_ops.hpp"
#include "ops/scratch.hpp"

namespace lowbit {
namespace detail {
namespace {

constexpr int64_t kAChunkBytes = 128 << 10;       // packed activation rows per task stay in L2
constexpr int64_t kBChunkBytes = 256 << 10;       // packed weight panels per task stay in L2
constexpr int64_t kMinTaskMacs = 1 << 18;         // below this a task is not worth a thread
constexpr int64_t kRowGrainElems = 1 << 14;       // activation packing: elements per task, at least
constexpr int64_t kPanelUnit = 6;                 // panel chunks: multiples of 3 (VNNI) and 2 (AMX)
constexpr int64_t kStreamWeightBytes = 1 << 20;   // byte-patch convolutions: weights this small stay in L2
constexpr int64_t kStreamChunkBytes = 256 << 10;  // and patch rows are made and multiplied per chunk
constexpr size_t kKeepPackBytes = 1 << 20;        // plain-B GEMM: per-thread panel buffers kept up to this

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace

void run_gemm_with(kernels::GemmTaskFn fn, const GemmArgs& g) { run_gemms_with(&fn, &g, 1); }

void run_gemms_with(const kernels::GemmTaskFn* fns, const GemmArgs* gs, int64_t count) {
  // The parts share their activations (m, k_groups): the split is that of one GEMM over all their
  // panels, with panel chunks cut at the parts' ends (a part with n == 0 has none).
  const GemmArgs& g0 = gs[0];
  int64_t panels = 0, n = 0;
  for (int64_t j = 0; j < count; ++j) {
    panels += n_panels(gs[j].n);
    n += gs[j].n;
  }
  if (g0.m == 0 || panels == 0) return;
  const int64_t kp = std::max<int64_t>(g0.k_groups * kKGroup, kKGroup);
  const int64_t threads = get_num_threads();
  // Row chunks in multiples of 32 rows and panel chunks in multiples of 6 panels keep whole
  // AVX-512 VNNI tiles (8 x 3 panels) and AMX blocks (32 x 2 panels) inside every task.
  int64_t mc = std::max<int64_t>(32, kAChunkBytes / kp / 32 * 32);
  mc = std::min(mc, round_up(g0.m, 8));
  int64_t pc = std::max<int64_t>(kPanelUnit, kBChunkBytes / (kp * kPanelCols) / kPanelUnit * kPanelUnit);
  pc = std::min(pc, panels);
  const int64_t m_tasks = (g0.m + mc - 1) / mc;
  auto chunks = [&](int64_t c) {
    int64_t t = 0;
    for (int64_t j = 0; j < count; ++j) t += (n_panels(gs[j].n) + c - 1) / c;
    return t;
  };
  // Enough tasks to balance the threads, but no task too small to pay for its wake-up.
  while (pc > kPanelUnit && m_tasks * chunks(pc) < 4 * threads)
    pc = std::max<int64_t>(kPanelUnit, pc / 2 / kPanelUnit * kPanelUnit);
  // Panel chunk q of the concatenated parts: (part, first panel, end panel).
  struct Chunk {
    int64_t part, p0, p1;
  };
  std::vector<Chunk> list;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t np = n_panels(gs[j].n);
    for (int64_t p0 = 0; p0 < np; p0 += pc) list.push_back({j, p0, std::min(np, p0 + pc)});
  }
  const int64_t n_tasks = m_tasks * static_cast<int64_t>(list.size());
  auto task = [&](int64_t t) {
    const Chunk& c = list[static_cast<size_t>(t / m_tasks)];
    const int64_t m0 = (t % m_tasks) * mc;
    fns[c.part](gs[c.part], m0, std::min(g0.m, m0 + mc), c.p0, c.p1);
  };
  if (n_tasks == 1 || g0.m * n * kp < 4 * kMinTaskMacs) {
    for (int64_t t = 0; t < n_tasks; ++t) task(t);
  } else {
    parallel_for(n_tasks, task);
  }
}

void run_gemm_unpacked(kernels::GemmTaskFn fn, GemmArgs g, const int8_t* w, int64_t k, int64_t stride_n,
                       int64_t stride_k) {
  if (g.m == 0 || g.n == 0) return;
  const int64_t panels = n_panels(g.n);
  const int64_t kp = std::max<int64_t>(g.k_groups * kKGroup, kKGroup);
  const int64_t threads = get_num_threads();
  // One task per chunk of panels (about kBChunkBytes packed): it packs them once and multiplies
  // every row chunk with them while they are in L2. Enough chunks to balance the threads.
  int64_t pc = std::max<int64_t>(kPanelUnit, kBChunkBytes / (kp * kPanelCols) / kPanelUnit * kPanelUnit);
  pc = std::min(pc, panels);
  while (pc > kPanelUnit && (panels + pc - 1) / pc < 4 * threads)
    pc = std::max<int64_t>(kPanelUnit, pc / 2 / kPanelUnit * kPanelUnit);
  const int64_t p_tasks = (panels + pc - 1) / pc;
  int64_t mc = std::max<int64_t>(32, kAChunkBytes / kp / 32 * 32);
  mc = std::min(mc, round_up(g.m, 8));
  const size_t buf_bytes = static_cast<size_t>(pc * kp * kPanelCols + kPackSlackBytes);
  auto task = [&](int64_t pj) {
    // The thread's kept scratch up to kKeepPackBytes; longer K takes a buffer per task. Panels
    // start on cache lines (a 64-byte panel line split over two lines costs two loads).
    std::unique_ptr<int8_t[]> own;
    int8_t* buf;
    if (buf_bytes <= kKeepPackBytes) {
      buf = static_cast<int8_t*>(thread_scratch(buf_bytes));
    } else {
      own.reset(new int8_t[buf_bytes + 64]);
      buf = own.get() + (64 - reinterpret_cast<uintptr_t>(own.get()) % 64) % 64;
    }
    const int64_t p0 = pj * pc, p1 = std::min(panels, p0 + pc);
    int32_t* colsum = const_cast<int32_t*>(g.colsum) + p0 * kPanelCols;
    pack_weight_panels(w, g.n, k, stride_n, stride_k, p0, p1, buf, colsum);
    std::memset(buf + (p1 - p0) * kp * kPanelCols, 0, static_cast<size_t>(kPackSlackBytes));
    GemmArgs t = g;
    t.b = buf;
    t.n = std::min(g.n - p0 * kPanelCols, (p1 - p0) * kPanelCols);
    t.colsum = colsum;
    t.out = static_cast<int32_t*>(g.out) + p0 * kPanelCols;
    for (int64_t m0 = 0; m0 < g.m; m0 += mc) fn(t, m0, std::min(g.m, m0 + mc), 0, p1 - p0);
  };
  if (p_tasks == 1 || g.m * g.n * kp < 4 * kMinTaskMacs) {
    for (int64_t t = 0; t < p_tasks; ++t) task(t);
  } else {
    parallel_for(p_tasks, task);
  }
}

void for_rows(int64_t m, int64_t k, const std::function<void(int64_t, int64_t)>& fn) {
  parallel_range(m, std::max<int64_t>(1, kRowGrainElems / std::max<int64_t>(k, 1)), 1, fn);
}

int64_t patch_chunk_rows(int64_t m, int64_t lda, int64_t weight_bytes) {
  if (weight_bytes > kStreamWeightBytes) return 0;
  // At most kStreamChunkBytes of patches, and at least 4 chunks per thread when there are rows
  // enough (short patch rows would otherwise make one chunk of everything: one thread).
  const int64_t per_thread = (m + 4 * get_num_threads() - 1) / (4 * get_num_threads());
  return std::max<int64_t>(32, std::min(kStreamChunkBytes / lda, (per_thread + 31) / 32 * 32) / 32 * 32);
}

}  // namespace detail
}  // namespace lowbit
