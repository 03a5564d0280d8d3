// lowbit._core: the private pybind11 module. One bind_<concept>.cpp per concept registers here.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace lowbit {
namespace bind {
void bind_cpu(py::module_& m);
void bind_quantize(py::module_& m);
void bind_extra(py::module_& m);
}  // namespace bind
}  // namespace lowbit

PYBIND11_MODULE(_core, m) {
  m.doc() = "lowbit private C++ core: validated entry points into the dispatched SIMD kernels.";
  lowbit::bind::bind_cpu(m);
  lowbit::bind::bind_quantize(m);
  lowbit::bind::bind_extra(m);
}
