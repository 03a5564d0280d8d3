// AVX-512 (F/BW/VL/DQ) observer reductions: the shared xsimd source instantiated for xsimd::avx512bw.
#include "kernels/observers.hpp"

#include "kernels/observers_impl.hpp"

LOWBIT_DEFINE_OBSERVER_KERNELS(avx512, xsimd::avx512bw)
