// CPU feature detection (portable core). xsimd's own detection ignores OS state and knows no
// VNNI/AMX, so lowbit reads CPUID/XGETBV itself and asks the kernel for AMX tile permission.
#include "lowbit/cpu.hpp"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#elif defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace lowbit {
namespace {

constexpr const char* kIsaNames[kIsaCount] = {"scalar", "avx2", "avxvnni", "avx512", "avx512vnni",
                                              "amx",    "neon", "neondot", "i8mm"};

// Preference order for "best first" lists.
constexpr Isa kPreference[] = {Isa::kAmx,  Isa::kAvx512Vnni, Isa::kAvx512, Isa::kAvxVnni, Isa::kAvx2,
                               Isa::kI8mm, Isa::kNeonDot,    Isa::kNeon,   Isa::kScalar};

#if defined(__x86_64__) || defined(_M_X64)
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned sub) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}

uint64_t xgetbv0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool bit(unsigned v, int i) { return ((v >> i) & 1u) != 0; }

bool request_amx_permission() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

void detect(CpuFeatures& f) {
  auto& m = f.flags;
  unsigned max_leaf = cpuid(0, 0).a;
  Regs l1 = cpuid(1, 0);
  bool osxsave = bit(l1.c, 27);
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  m["os_avx"] = (xcr0 & 0x6) == 0x6;
  m["os_avx512"] = m["os_avx"] && (xcr0 & 0xE0) == 0xE0;
  m["os_amx"] = (xcr0 & (3ull << 17)) == (3ull << 17);
  m["sse4_2"] = bit(l1.c, 20);
  m["fma"] = bit(l1.c, 12);
  m["f16c"] = bit(l1.c, 29);
  m["avx"] = bit(l1.c, 28);
  Regs l7{}, l71{};
  if (max_leaf >= 7) {
    l7 = cpuid(7, 0);
    if (l7.a >= 1) l71 = cpuid(7, 1);
  }
  m["avx2"] = bit(l7.b, 5);
  m["avx512f"] = bit(l7.b, 16);
  m["avx512dq"] = bit(l7.b, 17);
  m["avx512cd"] = bit(l7.b, 28);
  m["avx512bw"] = bit(l7.b, 30);
  m["avx512vl"] = bit(l7.b, 31);
  m["avx512_vnni"] = bit(l7.c, 11);
  m["avx512_fp16"] = bit(l7.d, 23);
  m["amx_bf16"] = bit(l7.d, 22);
  m["amx_tile"] = bit(l7.d, 24);
  m["amx_int8"] = bit(l7.d, 25);
  m["avx_vnni"] = bit(l71.a, 4);
  m["avx512_bf16"] = bit(l71.a, 5);
  m["amx_permitted"] = false;

  bool avx2 = m["os_avx"] && m["avx"] && m["avx2"] && m["fma"] && m["f16c"];
  bool avx512 = avx2 && m["os_avx512"] && m["avx512f"] && m["avx512bw"] && m["avx512vl"] && m["avx512dq"];
  bool avx512vnni = avx512 && m["avx512_vnni"];
  bool amx = avx512vnni && m["os_amx"] && m["amx_tile"] && m["amx_int8"];
  if (amx) {
    amx = request_amx_permission();
    m["amx_permitted"] = amx;
  }
  if (amx) f.available.push_back(Isa::kAmx);
  if (avx512vnni) f.available.push_back(Isa::kAvx512Vnni);
  if (avx512) f.available.push_back(Isa::kAvx512);
  if (avx2 && m["avx_vnni"]) f.available.push_back(Isa::kAvxVnni);
  if (avx2) f.available.push_back(Isa::kAvx2);
}
#elif defined(__aarch64__) && defined(__linux__)
void detect(CpuFeatures& f) {
  unsigned long hw = getauxval(AT_HWCAP);
  unsigned long hw2 = getauxval(AT_HWCAP2);
  auto& m = f.flags;
  m["asimd"] = (hw & HWCAP_ASIMD) != 0;
#ifdef HWCAP_ASIMDDP
  m["asimddp"] = (hw & HWCAP_ASIMDDP) != 0;
#else
  m["asimddp"] = false;
#endif
#ifdef HWCAP2_I8MM
  m["i8mm"] = (hw2 & HWCAP2_I8MM) != 0;
#else
  (void)hw2;
  m["i8mm"] = false;
#endif
  if (m["asimd"] && m["asimddp"] && m["i8mm"]) f.available.push_back(Isa::kI8mm);
  if (m["asimd"] && m["asimddp"]) f.available.push_back(Isa::kNeonDot);
  if (m["asimd"]) f.available.push_back(Isa::kNeon);
}
#else
void detect(CpuFeatures&) {}
#endif

}  // namespace

const char* isa_name(Isa isa) { return kIsaNames[static_cast<int>(isa)]; }

bool isa_from_name(const std::string& name, Isa* out) {
  for (int i = 0; i < kIsaCount; ++i) {
    if (name == kIsaNames[i]) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

bool isa_allows(Isa forced, Isa candidate) {
  if (candidate == Isa::kScalar || candidate == forced) return true;
  switch (forced) {
    case Isa::kAvx2:
      return false;
    case Isa::kAvxVnni:
      return candidate == Isa::kAvx2;
    case Isa::kAvx512:
      return candidate == Isa::kAvx2;
    case Isa::kAvx512Vnni:
      return candidate == Isa::kAvx2 || candidate == Isa::kAvx512 ||
             (candidate == Isa::kAvxVnni && isa_available(Isa::kAvxVnni));
    case Isa::kAmx:
      return candidate == Isa::kAvx2 || candidate == Isa::kAvx512 || candidate == Isa::kAvx512Vnni ||
             (candidate == Isa::kAvxVnni && isa_available(Isa::kAvxVnni));
    case Isa::kNeonDot:
      return candidate == Isa::kNeon;
    case Isa::kI8mm:
      return candidate == Isa::kNeon || candidate == Isa::kNeonDot;
    default:
      return false;
  }
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
    detect(f);
    f.available.push_back(Isa::kScalar);
    std::stable_sort(f.available.begin(), f.available.end(), [](Isa a, Isa b) {
      auto rank = [](Isa x) {
        return std::find(std::begin(kPreference), std::end(kPreference), x) - std::begin(kPreference);
      };
      return rank(a) < rank(b);
    });
    return f;
  }();
  return features;
}

bool isa_available(Isa isa) {
  const auto& av = cpu_features().available;
  return std::find(av.begin(), av.end(), isa) != av.end();
}

}  // namespace lowbit
