// Dispatch table for the float32 attention (ISA -> kernel).
#include "dispatch/attention.hpp"

#include "kernels/attention.hpp"
#include "reference/attention.hpp"

namespace lowbit {
namespace dispatch {

const OpTable<kernels::AttentionF32Fn> attention_f32("attention_f32", {
  {Isa::kScalar, ref::attention_f32},
#if defined(LOWBIT_HAVE_AVX2)
      {Isa::kAvx2, kernels::avx2::attention_f32},
#endif
#if defined(LOWBIT_HAVE_AVX512)
      {Isa::kAvx512, kernels::avx512::attention_f32},
#endif
});

}  // namespace dispatch
}  // namespace lowbit
