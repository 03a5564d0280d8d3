// Bindings for the blocked Walsh-Hadamard rotation: validate the arrays and the block, release
// the GIL around the op. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "common.hpp"
#include "lowbit/rotation.hpp"

namespace lowbit {
namespace bind {
namespace {

py::array hadamard_py(const py::array& x, const py::array& signs, int64_t block, const py::object& out_in) {
  require_dtype<float>(x, "x", "a float32 array");
  require_ndim(x, 2, "x");
  if (x.shape(1) > 1 && x.strides(1) != static_cast<py::ssize_t>(sizeof(float)))
    value_error("x: rows must be contiguous");
  if (x.strides(0) % static_cast<py::ssize_t>(sizeof(float)) != 0)
    value_error("x: row stride must be a multiple of 4 bytes");
  const int64_t rows = x.shape(0), k = x.shape(1);
  const float* s = require_f32(signs, "signs");
  if (signs.ndim() != 1 || signs.shape(0) != k)
    value_error("signs: expected shape (" + std::to_string(k) + ",), one per column of x");
  if (block < 1 || (block & (block - 1)) != 0)
    value_error("block: expected a power of two >= 1, got " + std::to_string(block));
  if (k % block != 0)
    value_error("block: " + std::to_string(block) + " does not divide x's " + std::to_string(k) + " columns");
  py::array out = out_in.is_none() ? pooled_array<float>({rows, k}) : out_in.cast<py::array>();
  if (!out_in.is_none()) {
    require_dtype<float>(out, "out", "a float32 array");
    require_out(out, {rows, k}, "x");
  }
  const int64_t ldx = rows > 1 ? x.strides(0) / static_cast<py::ssize_t>(sizeof(float)) : k;
  const float* xp = static_cast<const float*>(x.data());
  float* yp = static_cast<float*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    hadamard_rows(xp, ldx, yp, k, rows, k, s, block);
  }
  return out;
}

}  // namespace

void bind_rotation(py::module_& m) {
  m.def("hadamard", &hadamard_py, py::arg("x"), py::arg("signs"), py::arg("block"), py::arg("out") = py::none(),
        "Blocked Walsh-Hadamard rotation of the rows of a (rows, k) float32 array: each block of `block` "
        "columns becomes H_block (signs * x) / sqrt(block) (lowbit/rotation.hpp). Returns out (C-contiguous, "
        "may be x itself) or a new array.");
}

}  // namespace bind
}  // namespace lowbit
