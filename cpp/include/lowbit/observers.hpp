// lowbit/observers.hpp: the reductions behind the observers (min/max per tensor and per channel,
// fixed-grid histogram accumulation). Public C++ API: kernel signatures and the ops driving them.
//
// Contract shared by every kernel and op here:
//   - Non-finite inputs (NaN, +inf, -inf) never enter a min, max or histogram bin; they are counted
//     and the count is returned.
//   - min/max are exact (a reduction picks an input value; order and thread count do not matter).
//   - Histogram bins lie on a power-of-two grid: element x goes to bin
//     clamp(floor(x * scale) - base, 0, bins - 1) with scale = 2^-e and base an integer-valued
//     float; floor(x * scale) is the exact mathematical value (the product is exact, and a negative
//     product that underflows still floors to -1), so a bin index never depends on order, chunking,
//     thread count or precision.
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
// (bins + 2) 32-bit counters: element i goes to copy (i % kHistogramWays); slot `bins` of a copy
// collects the non-finite values and slot `bins + 1` the exact zeros (+0 and -0, left out of their
// bin so that the observers can model a spike at zero). Several copies break the store-to-load
// dependency of repeated bins; 32-bit counters keep 4 copies of 2048 bins in L1. The caller keeps
// every counter below 2^32 (n <= kHistogramChunk per call). Also updates *mn / *mx
// (caller-initialized) with the finite values, so that a caller whose grid already covers the data
// needs no separate min/max pass.
using HistogramF32Fn = void (*)(const float* x, int64_t n, float scale, float base, int64_t bins, uint32_t* counts,
                                float* mn, float* mx);
}  // namespace kernels

constexpr int64_t kHistogramWays = 4;
constexpr int64_t kHistogramChunk = int64_t{1} << 24;  // elements per kernel call, at most

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
// outside the grid's window land in the edge bins); returns the number of non-finite elements,
// stores the number of exact zeros (which are counted in their bin too) in *zeros and the min /
// max of the finite elements in *mn / *mx (+inf / -inf if none).
// scale must be a power of two and base an integer-valued float (validated by the caller).
int64_t histogram(const float* x, int64_t n, float scale, float base, int64_t bins, int64_t* counts, int64_t* zeros,
                  float* mn, float* mx);

}  // namespace lowbit
