// AVX2 (+FMA, F16C) observer reductions: the shared xsimd source instantiated for xsimd::avx2.
#include "kernels/observers.hpp"

#include "kernels/observers_impl.hpp"

LOWBIT_DEFINE_OBSERVER_KERNELS(avx2, xsimd::avx2)
