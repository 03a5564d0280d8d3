// Dispatch layer: the forced-ISA ceiling and op-table resolution.
#include "lowbit/dispatch.hpp"

#include <cstdlib>

namespace lowbit {
namespace {

Isa initial_arch() {
  const auto& av = cpu_features().available;
  const char* env = std::getenv("LOWBIT_ARCH");
  Isa isa;
  // An invalid LOWBIT_ARCH is reported by the Python layer at import; here it is ignored.
  if (env != nullptr && isa_from_name(env, &isa) && isa_available(isa)) return isa;
  return av.front();
}

std::atomic<int>& forced_storage() {
  static std::atomic<int> forced{static_cast<int>(initial_arch())};
  return forced;
}

}  // namespace

Isa forced_arch() { return static_cast<Isa>(forced_storage().load(std::memory_order_relaxed)); }

void set_forced_arch(Isa isa) { forced_storage().store(static_cast<int>(isa), std::memory_order_relaxed); }

std::vector<const OpTableBase*>& op_registry() {
  static std::vector<const OpTableBase*> registry;
  return registry;
}

OpTableBase::OpTableBase(const char* name) : name_(name) { op_registry().push_back(this); }

Isa OpTableBase::chosen() const {
  Isa ceiling = forced_arch();
  for (Isa isa : cpu_features().available) {
    if (has(isa) && isa_allows(ceiling, isa)) return isa;
  }
  return Isa::kScalar;
}

}  // namespace lowbit
