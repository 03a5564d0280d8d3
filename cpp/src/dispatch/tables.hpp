// Helpers for dispatch tables whose kernels come from the shared xsimd sources: one entry per
// ISA that was built (LOWBIT_HAVE_<ISA> from cpp/CMakeLists.txt) plus the scalar reference.
#pragma once

#include "lowbit/dispatch.hpp"

#if defined(LOWBIT_HAVE_AVX2)
#define LOWBIT_KERNEL_AVX2(fn) {Isa::kAvx2, kernels::avx2::fn},
#else
#define LOWBIT_KERNEL_AVX2(fn)
#endif
#if defined(LOWBIT_HAVE_AVX512)
#define LOWBIT_KERNEL_AVX512(fn) {Isa::kAvx512, kernels::avx512::fn},
#else
#define LOWBIT_KERNEL_AVX512(fn)
#endif

// Defines `const OpTable<type> fn` with the reference, AVX2 and AVX-512 instantiations of fn.
#define LOWBIT_SIMD_TABLE(type, fn) \
  const OpTable<type> fn(#fn, {{Isa::kScalar, ref::fn}, LOWBIT_KERNEL_AVX2(fn) LOWBIT_KERNEL_AVX512(fn)});
