// Bindings for the observer reductions (min/max, per-channel min/max, histogram): validate the
// arrays and arguments, release the GIL around the op, return new values. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "common.hpp"
#include "lowbit/observers.hpp"

namespace lowbit {
namespace bind {
namespace {

py::tuple minmax_py(const py::array& x) {
  const float* p = require_f32(x, "x");
  const int64_t n = x.size();
  MinMaxResult r;
  {
    py::gil_scoped_release release;
    r = minmax(p, n);
  }
  return py::make_tuple(r.min, r.max, r.nonfinite);
}

py::tuple minmax_per_channel_py(const py::array& x, int64_t axis) {
  const float* p = require_f32(x, "x");
  const int64_t nd = x.ndim();
  if (nd < 1) value_error("x: per-channel min/max needs at least one dimension");
  if (axis < -nd || axis >= nd)
    value_error("axis: " + std::to_string(axis) + " is out of range for an array with " + std::to_string(nd) +
                " dimensions");
  if (axis < 0) axis += nd;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape(d);
  for (int64_t d = axis + 1; d < nd; ++d) inner *= x.shape(d);
  const int64_t channels = x.shape(axis);
  py::array_t<float> mn(channels), mx(channels);
  float* pmn = mn.mutable_data();
  float* pmx = mx.mutable_data();
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = minmax_per_channel(p, outer, channels, inner, pmn, pmx);
  }
  return py::make_tuple(mn, mx, bad);
}

py::tuple histogram_py(const py::array& x, float scale, float base, int64_t bins) {
  const float* p = require_f32(x, "x");
  // Each thread keeps kHistogramWays partial copies of the counts: cap their size.
  if (bins < 1 || bins > (int64_t{1} << 16))
    value_error("bins: expected 1 <= bins <= 2**16, got " + std::to_string(bins));
  int e = 0;
  if (!(std::isfinite(scale) && scale > 0.0f && std::frexp(scale, &e) == 0.5f))
    value_error("scale: expected a finite positive power of two, got " + std::to_string(scale));
  if (!(std::isfinite(base) && std::floor(base) == base))
    value_error("base: expected a finite integer-valued float, got " + std::to_string(base));
  const int64_t n = x.size();
  py::array_t<int64_t> counts(bins);
  int64_t* pc = counts.mutable_data();
  std::fill(pc, pc + bins, int64_t{0});
  int64_t bad, zeros;
  float mn, mx;
  {
    py::gil_scoped_release release;
    bad = histogram(p, n, scale, base, bins, pc, &zeros, &mn, &mx);
  }
  return py::make_tuple(counts, bad, zeros, mn, mx);
}

}  // namespace

void bind_observers(py::module_& m) {
  m.def("minmax_f32", &minmax_py, py::arg("x"),
        "(min, max, nonfinite) of the finite values of a float32 array; (inf, -inf, n) if none.");
  m.def("minmax_per_channel_f32", &minmax_per_channel_py, py::arg("x"), py::arg("axis"),
        "(min[C], max[C], nonfinite) of the finite values per index of `axis`.");
  m.def("histogram_f32", &histogram_py, py::arg("x"), py::arg("scale"), py::arg("base"), py::arg("bins"),
        "(counts[bins] int64, nonfinite, zeros, min, max): finite x into bin clamp(floor(x*scale) - base, 0, "
        "bins-1); min/max of the finite values.");
}

}  // namespace bind
}  // namespace lowbit
