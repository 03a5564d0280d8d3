// lowbit/observers.hpp: the reductions behind the observers (min/max per tensor and per channel,
// fixed-grid histogram accumulation). Public C++ API: kernel signatures and the ops driving them.
//
// Contract shared by every kernel and op here:
//   - Non-finite inputs (NaN, +inf, -inf) never enter a min, max or histogram bin; they are counted
//     and the count is returned.
//   - min/max are exact (a reduction picks an input value; order and thread count do not matter).
//   - Histogram bins lie on a power-of-two grid: element x goes to bin
//     clamp(floor(x * scale) - base, 0, bins - 1) with scale = 2^-e (exact in float32) and base an
//     integer-valued float, so a bin index never depends on order, chunking or thread count.
#pragma once

#include <cstdint>

namespace lowbit {

namespace kernels {
// Updates *mn / *mx (caller-initialized, e.g. +inf / -inf) with the finite values of x[0, n);
// returns how many of them are not finite. x contiguous.
using MinMaxF32Fn = int64_t (*)(const float* x, int64_t n, float* mn, float* mx);
// Row-wise view (rows, cols), row r starting at x + r * row_stride: updates mn[c] / mx[c]
// (caller-initialized) with the finite values of column c; returns the non-finite count.
using MinMaxPerChannelF32Fn = int64_t (*)(const float* x, int64_t rows, int64_t cols, int64_t row_stride, float* mn,
                                          float* mx);
// Adds every element of x[0, n) into counts, laid out as kHistogramWays interleaved copies of
// (bins + 2) counters: element i goes to copy (i % kHistogramWays); slot `bins` of a copy collects
// the non-finite values and slot `bins + 1` the exact zeros (+0 and -0, left out of their bin so
// that the observers can model a spike at zero). Several copies break the store-to-load
// dependency of repeated bins.
using HistogramF32Fn = void (*)(const float* x, int64_t n, float scale, float base, int64_t bins, int64_t* counts);
}  // namespace kernels

constexpr int64_t kHistogramWays = 8;

struct MinMaxResult {
  float min;  // +inf when no finite value was seen
  float max;  // -inf when no finite value was seen
  int64_t nonfinite;
};

// Ops: split the work over threads with per-thread partial results, call the dispatched kernels.
MinMaxResult minmax(const float* x, int64_t n);

// x viewed as (outer, channels, inner), contiguous. Overwrites mn[channels] / mx[channels] with the
// per-channel min / max of the finite values (+inf / -inf for a channel without any); returns the
// number of non-finite elements.
int64_t minmax_per_channel(const float* x, int64_t outer, int64_t channels, int64_t inner, float* mn, float* mx);

// Adds the finite elements of x[0, n) into counts[bins] on the grid described above (elements
// outside the grid's window land in the edge bins); returns the number of non-finite elements and
// stores the number of exact zeros (which are counted in their bin too) in *zeros.
// scale must be a power of two and base an integer-valued float (validated by the caller).
int64_t histogram(const float* x, int64_t n, float scale, float base, int64_t bins, int64_t* counts, int64_t* zeros);

}  // namespace lowbit
