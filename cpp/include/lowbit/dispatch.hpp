// lowbit/dispatch.hpp: one table per op mapping ISA -> kernel, resolved against the detected CPU
// and the forced ceiling (LOWBIT_ARCH / lowbit.set_arch). Dispatch layer.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/cpu.hpp"

namespace lowbit {

// The ceiling every op resolves against; defaults to the best available ISA (or LOWBIT_ARCH).
Isa forced_arch();
// Caller guarantees `isa` is available (the binding validates and raises otherwise).
void set_forced_arch(Isa isa);

class OpTableBase {
 public:
  explicit OpTableBase(const char* name);
  virtual ~OpTableBase() = default;
  const char* name() const { return name_; }
  virtual bool has(Isa isa) const = 0;
  // The ISA this op runs with under the current ceiling.
  Isa chosen() const;
  uint64_t calls(Isa isa) const { return calls_[static_cast<int>(isa)].load(std::memory_order_relaxed); }

 protected:
  void count(Isa isa) const { calls_[static_cast<int>(isa)].fetch_add(1, std::memory_order_relaxed); }

 private:
  const char* name_;
  mutable std::atomic<uint64_t> calls_[kIsaCount] = {};
};

// All op tables, in registration order (for cpu_info and the kernel-call counters).
std::vector<const OpTableBase*>& op_registry();

template <class Fn>
class OpTable final : public OpTableBase {
 public:
  struct Entry {
    Isa isa;
    Fn fn;
  };
  OpTable(const char* name, std::initializer_list<Entry> entries) : OpTableBase(name) {
    for (const auto& e : entries) fns_[static_cast<int>(e.isa)] = e.fn;
  }
  bool has(Isa isa) const override { return fns_[static_cast<int>(isa)] != nullptr; }
  // Kernel for the current ceiling; counts the call so tests can prove a path ran.
  Fn get() const {
    Isa isa = chosen();
    count(isa);
    return fns_[static_cast<int>(isa)];
  }

 private:
  Fn fns_[kIsaCount] = {};
};

}  // namespace lowbit
