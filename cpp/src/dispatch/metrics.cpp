// Dispatch table for the metrics reductions (ISA -> kernel).
#include "dispatch/metrics.hpp"

#include "kernels/metrics.hpp"
#include "reference/metrics.hpp"

namespace lowbit {
namespace dispatch {

#if defined(LOWBIT_HAVE_AVX2)
#define LOWBIT_METRICS_AVX2(fn) {Isa::kAvx2, kernels::avx2::fn},
#else
#define LOWBIT_METRICS_AVX2(fn)
#endif
#if defined(LOWBIT_HAVE_AVX512)
#define LOWBIT_METRICS_AVX512(fn) {Isa::kAvx512, kernels::avx512::fn},
#else
#define LOWBIT_METRICS_AVX512(fn)
#endif
#define LOWBIT_METRICS_TABLE(type, fn) \
  const OpTable<type> fn(#fn, {{Isa::kScalar, ref::fn}, LOWBIT_METRICS_AVX2(fn) LOWBIT_METRICS_AVX512(fn)});

LOWBIT_METRICS_TABLE(kernels::ErrorStatsF32Fn, error_stats_f32)

}  // namespace dispatch
}  // namespace lowbit
