// Bindings for the metrics reductions: validate the two arrays, release the GIL around the op,
// return the statistics as a tuple. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "common.hpp"
#include "lowbit/metrics.hpp"

namespace lowbit {
namespace bind {
namespace {

py::tuple error_stats_py(const py::array& x, const py::array& y) {
  const float* px = require_f32(x, "x");
  const float* py_ = require_f32(y, "y");
  if (x.size() != y.size())
    value_error("y: expected " + std::to_string(x.size()) + " elements like x, got " + std::to_string(y.size()));
  const int64_t n = x.size();
  ErrorStats s;
  {
    py::gil_scoped_release release;
    s = error_stats(px, py_, n);
  }
  return py::make_tuple(s.sum_sq_diff, s.sum_sq_x, s.sum_sq_y, s.dot_xy, s.max_abs_diff);
}

}  // namespace

void bind_metrics(py::module_& m) {
  m.def("error_stats_f32", &error_stats_py, py::arg("x"), py::arg("y"),
        "(sum (x-y)^2, sum x^2, sum y^2, sum x*y, max |x-y|) of two float32 arrays of equal size, "
        "accumulated in double; max is NaN when any difference is NaN.");
}

}  // namespace bind
}  // namespace lowbit
