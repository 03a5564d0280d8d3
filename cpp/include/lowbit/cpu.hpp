// lowbit/cpu.hpp: CPU feature detection and the ISA levels kernels are built for.
// Portable core layer; everything here is safe to call before any SIMD code runs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lowbit {

// ISA levels, each one a translation unit compiled with its own flags. The numeric order is only
// an index; which levels a forced level may use is given by isa_allows().
enum class Isa : int {
  kScalar = 0,
  kAvx2,        // AVX2 + FMA + F16C
  kAvxVnni,     // AVX2 + AVX-VNNI (VEX-encoded vpdpbusd on 256-bit registers)
  kAvx512,      // AVX-512 F/BW/VL/DQ
  kAvx512Vnni,  // AVX-512 + VNNI
  kAmx,         // AVX-512 VNNI + AMX tile/int8/bf16, OS permission granted
  kNeon,
  kNeonDot,
  kI8mm,
  kCount
};

constexpr int kIsaCount = static_cast<int>(Isa::kCount);

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);

// True when a program forced to `forced` may run kernels built for `candidate`.
bool isa_allows(Isa forced, Isa candidate);

struct CpuFeatures {
  std::map<std::string, bool> flags;  // e.g. "avx2", "avx512_vnni", "amx_int8", "os_avx512"
  std::vector<Isa> available;         // usable on this machine, best first, ends with kScalar
};

// Detected once (CPUID + XGETBV, arch_prctl for AMX tile data; getauxval on aarch64).
const CpuFeatures& cpu_features();
bool isa_available(Isa isa);

}  // namespace lowbit
