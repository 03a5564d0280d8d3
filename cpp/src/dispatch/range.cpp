// Dispatch table for finite_range_f32 (ISA -> kernel).
#include "dispatch/range.hpp"

#include "reference/range.hpp"

namespace lowbit {
namespace dispatch {
const OpTable<kernels::FiniteRangeFn> finite_range_f32("finite_range_f32", {
  {Isa::kScalar, ref::finite_range_f32},
#if defined(LOWBIT_HAVE_AVX2)
      {Isa::kAvx2, kernels::avx2::finite_range_f32},
#endif
#if defined(LOWBIT_HAVE_AVX512)
      {Isa::kAvx512, kernels::avx512::finite_range_f32},
#endif
});
}  // namespace dispatch
}  // namespace lowbit
