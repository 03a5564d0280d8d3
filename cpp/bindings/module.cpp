// lowbit._core: the private pybind11 module (bindings layer). Every bind_<concept>.cpp is listed
// and registered here.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace lowbit {
namespace bind {
void bind_cpu(py::module_& m);
void bind_quantize(py::module_& m);
void bind_matmul(py::module_& m);
void bind_observers(py::module_& m);
void bind_metrics(py::module_& m);
void bind_formats(py::module_& m);
void bind_linear(py::module_& m);
void bind_conv(py::module_& m);
void bind_gptq(py::module_& m);
void bind_buffers(py::module_& m);
void bind_attention(py::module_& m);
void bind_rotation(py::module_& m);
void bind_norm(py::module_& m);
}  // namespace bind
}  // namespace lowbit

PYBIND11_MODULE(_core, m) {
  m.doc() = "lowbit private C++ core: validated entry points into the dispatched SIMD kernels.";
  lowbit::bind::bind_cpu(m);
  lowbit::bind::bind_quantize(m);
  lowbit::bind::bind_matmul(m);
  lowbit::bind::bind_observers(m);
  lowbit::bind::bind_metrics(m);
  lowbit::bind::bind_formats(m);
  lowbit::bind::bind_linear(m);
  lowbit::bind::bind_conv(m);
  lowbit::bind::bind_gptq(m);
  lowbit::bind::bind_buffers(m);
  lowbit::bind::bind_attention(m);
  lowbit::bind::bind_rotation(m);
  lowbit::bind::bind_norm(m);
}
