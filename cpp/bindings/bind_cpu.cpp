// Bindings for CPU detection, dispatch control, threading and kernel-call counters.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common.hpp"
#include "lowbit/cpu.hpp"
#include "lowbit/dispatch.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {
namespace bind {

namespace {
std::string valid_names() {
  std::string s;
  for (Isa isa : cpu_features().available) {
    if (!s.empty()) s += ", ";
    s += isa_name(isa);
  }
  return s;
}
}  // namespace

void bind_cpu(py::module_& m) {
  m.def(
      "features", [] { return cpu_features().flags; }, "Detected CPU feature flags.");
  m.def(
      "available",
      [] {
        std::vector<std::string> out;
        for (Isa isa : cpu_features().available) out.emplace_back(isa_name(isa));
        return out;
      },
      "ISA levels usable on this machine, best first, ending with 'scalar'.");
  m.def("get_arch", [] { return std::string(isa_name(forced_arch())); });
  m.def(
      "set_arch",
      [](const std::string& name) {
        Isa isa;
        if (!isa_from_name(name, &isa)) value_error("arch: unknown ISA '" + name + "'; valid: " + valid_names());
        if (!isa_available(isa))
          value_error("arch: ISA '" + name + "' is not supported on this CPU; valid: " + valid_names());
        set_forced_arch(isa);
      },
      py::arg("arch"));
  m.def("ops", [] {
    std::vector<std::pair<std::string, std::string>> out;
    for (const OpTableBase* op : op_registry()) out.emplace_back(op->name(), isa_name(op->chosen()));
    return out;
  });
  m.def("op_isas", [] {
    std::vector<std::pair<std::string, std::vector<std::string>>> out;
    for (const OpTableBase* op : op_registry()) {
      std::vector<std::string> isas;
      for (int i = 0; i < kIsaCount; ++i)
        if (op->has(static_cast<Isa>(i))) isas.emplace_back(isa_name(static_cast<Isa>(i)));
      out.emplace_back(op->name(), isas);
    }
    return out;
  });
  m.def("kernel_calls", [] {
    std::vector<std::pair<std::string, std::vector<std::pair<std::string, uint64_t>>>> out;
    for (const OpTableBase* op : op_registry()) {
      std::vector<std::pair<std::string, uint64_t>> counts;
      for (int i = 0; i < kIsaCount; ++i) {
        uint64_t c = op->calls(static_cast<Isa>(i));
        if (c != 0) counts.emplace_back(isa_name(static_cast<Isa>(i)), c);
      }
      out.emplace_back(op->name(), counts);
    }
    return out;
  });
  m.def("get_num_threads", &get_num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) value_error("n: number of threads must be >= 1, got " + std::to_string(n));
        set_num_threads(n);
      },
      py::arg("n"));
  m.def(
      "attach_openmp",
      [](const std::string& library) {
        try {
          return attach_openmp(library);
        } catch (const std::runtime_error& e) {
          value_error(std::string("library: ") + e.what());
        }
        return std::string();
      },
      py::arg("library"));
  m.def(
      "set_thread_backend",
      [](const std::string& name) {
        ThreadBackend b = ThreadBackend::kOwn;
        if (name == "own") {
          b = ThreadBackend::kOwn;
        } else if (name == "openmp") {
          b = ThreadBackend::kOpenMP;
        } else if (name == "openmp_adaptive") {
          b = ThreadBackend::kOpenMPAdaptive;
        } else {
          value_error("name: expected 'own', 'openmp' or 'openmp_adaptive', got '" + name + "'");
        }
        try {
          set_thread_backend(b);
        } catch (const std::runtime_error& e) {
          value_error(std::string("name: ") + e.what());
        }
      },
      py::arg("name"));
  m.def("get_thread_backend", [] {
    switch (get_thread_backend()) {
      case ThreadBackend::kOpenMP:
        return std::string("openmp");
      case ThreadBackend::kOpenMPAdaptive:
        return std::string("openmp_adaptive");
      default:
        return std::string("own");
    }
  });
  m.def("parallel_counts", [] {
    ParallelCounts c = parallel_counts();
    return std::vector<std::pair<std::string, uint64_t>>{
        {"own", c.own}, {"openmp", c.openmp}, {"inline", c.inline_}, {"stalls", c.stalls}};
  });
}

}  // namespace bind
}  // namespace lowbit
