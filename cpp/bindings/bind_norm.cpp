// Bindings for LayerNorm: validate the arrays, allocate the result, release the GIL around the
// op. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "common.hpp"
#include "lowbit/norm.hpp"

namespace lowbit {
namespace bind {
namespace {

const float* optional_vector(const py::object& v, int64_t n, const char* name) {
  if (v.is_none()) return nullptr;
  const py::array a = v.cast<py::array>();
  const float* p = require_f32(a, name);
  if (a.ndim() != 1 || a.shape(0) != n)
    value_error(std::string(name) + ": expected shape (" + std::to_string(n) + ",), one per column of x");
  return p;
}

py::array layer_norm_py(const py::array& x, const py::object& gamma, const py::object& beta, double eps,
                        const py::object& out_in) {
  const float* xp = require_f32(x, "x");
  require_ndim(x, 2, "x");
  const int64_t rows = x.shape(0), n = x.shape(1);
  if (n == 0 && rows > 0) value_error("x: rows of 0 values have no mean");
  const float* g = optional_vector(gamma, n, "gamma");
  const float* b = optional_vector(beta, n, "beta");
  if (!std::isfinite(eps) || eps < 0) value_error("eps: must be finite and >= 0");
  py::array out = out_in.is_none() ? pooled_array<float>({rows, n}) : out_in.cast<py::array>();
  if (!out_in.is_none()) {
    require_dtype<float>(out, "out", "a float32 array");
    require_out(out, {rows, n}, "x");
  }
  float* yp = static_cast<float*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    layer_norm(xp, n, yp, n, rows, n, g, b, static_cast<float>(eps));
  }
  return out;
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("layer_norm", &layer_norm_py, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps"),
        py::arg("out") = py::none(),
        "LayerNorm over the rows of a C-contiguous (rows, n) float32 array: (x - mean) / sqrt(var + eps) * gamma + "
        "beta (gamma, beta: (n,) float32 or None; lowbit/norm.hpp). Returns out (may be x) or a new array.");
}

}  // namespace bind
}  // namespace lowbit
