// Dispatch tables for the observer reductions (ISA -> kernel).
#include "dispatch/observers.hpp"

#include "reference/observers.hpp"

namespace lowbit {
namespace dispatch {

#if defined(LOWBIT_HAVE_AVX2)
#define LOWBIT_OBS_AVX2(fn) {Isa::kAvx2, kernels::avx2::fn},
#else
#define LOWBIT_OBS_AVX2(fn)
#endif
#if defined(LOWBIT_HAVE_AVX512)
#define LOWBIT_OBS_AVX512(fn) {Isa::kAvx512, kernels::avx512::fn},
#else
#define LOWBIT_OBS_AVX512(fn)
#endif
#define LOWBIT_OBS_TABLE(type, fn) \
  const OpTable<type> fn(#fn, {{Isa::kScalar, ref::fn}, LOWBIT_OBS_AVX2(fn) LOWBIT_OBS_AVX512(fn)});

LOWBIT_OBS_TABLE(kernels::MinMaxF32Fn, minmax_f32)
LOWBIT_OBS_TABLE(kernels::MinMaxPerChannelF32Fn, minmax_per_channel_f32)
LOWBIT_OBS_TABLE(kernels::HistogramF32Fn, histogram_f32)

}  // namespace dispatch
}  // namespace lowbit
