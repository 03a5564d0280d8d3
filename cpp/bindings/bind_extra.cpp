// Registration point for concepts added later (matmul, observers, ...): each adds its own
// bind_<concept>.cpp and a call here, keeping module.cpp stable.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace lowbit {
namespace bind {
void bind_matmul(py::module_& m);
void bind_observers(py::module_& m);
void bind_metrics(py::module_& m);
void bind_formats(py::module_& m);
void bind_linear(py::module_& m);
void bind_conv(py::module_& m);

void bind_extra(py::module_& m) {
  bind_matmul(m);
  bind_observers(m);
  bind_metrics(m);
  bind_formats(m);
  bind_linear(m);
  bind_conv(m);
}
}  // namespace bind
}  // namespace lowbit
