// lowbit/metrics.hpp: the error reductions behind lowbit.metrics (sum of squared differences, dot
// products, max absolute difference of two float32 arrays). Public C++ API: kernel signature + op.
//
// Contract shared by the kernel and the op:
//   - Every element is widened to double before any arithmetic and all sums accumulate in double,
//     so the result is within a few ulps of double of the exact sum for any realistic size
//     (relative error <= ~n_chunks * 2^-53 per sum; tests use rtol 1e-12 against NumPy float64).
//   - Summation order depends on n and the ISA's lane count, never on the thread count: the op
//     cuts [0, n) into fixed chunks and combines their partials in index order, so a result is
//     reproducible for a given ISA, and ISAs agree to the tolerance above.
//   - inf propagates as in NumPy (inf - inf is NaN). NaN: every sum becomes NaN; the kernels'
//     max ignores NaN differences and the op returns max_abs_diff = NaN whenever sum_sq_diff is NaN
//     (which happens exactly when some difference is NaN, all its terms being >= 0).
#pragma once

#include <cstdint>

namespace lowbit {

// Partial sums of one pass over two arrays x, y of n elements each.
struct ErrorStats {
  double sum_sq_diff;   // sum (x - y)^2
  double sum_sq_x;      // sum x^2
  double sum_sq_y;      // sum y^2
  double dot_xy;        // sum x * y
  double max_abs_diff;  // max |x - y| (0 for n == 0; NaN if any difference is NaN)
};

namespace kernels {
// Adds the statistics of x[0, n), y[0, n) into *acc (caller-initialized to zeros). Contiguous.
using ErrorStatsF32Fn = void (*)(const float* x, const float* y, int64_t n, ErrorStats* acc);
}  // namespace kernels

// Op: splits [0, n) into fixed chunks over threads, one partial per chunk, combined in index order.
ErrorStats error_stats(const float* x, const float* y, int64_t n);

}  // namespace lowbit
