// Bindings for the format ops (NF4, fp16, bf16): validate arrays, allocate results, release the
// GIL around the op. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

#include "common.hpp"
#include "lowbit/formats.hpp"

namespace lowbit {
namespace bind {
namespace {

void require_u16(const py::array& x, const char* name) {
  if (!has_dtype<uint16_t>(x) && !is_f16(x))
    type_error(std::string(name) + ": expected uint16 (bit patterns) or float16, got " + dtype_str(x));
  require_contiguous(x, name);
}

void check_block(int64_t block) {
  if (block < 2 || block % 2 != 0)
    value_error("block_size: must be an even integer >= 2, got " + std::to_string(block));
  check_group_cap(block, "block_size");
}

// Returns (packed codes: ceil(n/2) uint8, absmax: ceil(n/block) float32) of x flattened.
std::pair<py::array, py::array> quantize_nf4_py(const py::array& x, int64_t block) {
  require_f32(x, "x");
  check_block(block);
  const int64_t n = x.size();
  py::array q(py::dtype::of<uint8_t>(), std::vector<int64_t>{(n + 1) / 2});
  py::array absmax(py::dtype::of<float>(), std::vector<int64_t>{ceil_div(n, block)});
  const auto* src = static_cast<const float*>(x.data());
  auto* qd = static_cast<uint8_t*>(q.mutable_data());
  auto* ad = static_cast<float*>(absmax.mutable_data());
  {
    py::gil_scoped_release release;
    quantize_nf4(src, n, block, ad, qd);
  }
  return {q, absmax};
}

py::array dequantize_nf4_py(const py::array& q, const py::array& absmax, const std::vector<int64_t>& shape,
                            int64_t block) {
  require_dtype<uint8_t>(q, "q", "uint8 codes");
  require_contiguous(q, "q");
  require_f32(absmax, "absmax");
  check_block(block);
  const int64_t n = checked_numel(shape, "shape");
  if (q.size() != ceil_div(n, 2)) value_error("q: expected ceil(size / 2) packed bytes");
  if (absmax.size() != ceil_div(n, block)) value_error("absmax: expected ceil(size / block_size) values");
  py::array out(py::dtype::of<float>(), shape);
  const auto* qd = static_cast<const uint8_t*>(q.data());
  const auto* ad = static_cast<const float*>(absmax.data());
  auto* o = static_cast<float*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    dequantize_nf4(qd, n, block, ad, o);
  }
  return out;
}

template <void (*Op)(const float*, int64_t, uint16_t*)>
py::array narrow_py(const py::array& x) {
  require_f32(x, "x");
  py::array out(py::dtype::of<uint16_t>(), shape_of(x));
  const auto* src = static_cast<const float*>(x.data());
  auto* o = static_cast<uint16_t*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    Op(src, x.size(), o);
  }
  return out;
}

template <void (*Op)(const uint16_t*, int64_t, float*)>
py::array widen_py(const py::array& x) {
  require_u16(x, "x");
  py::array out(py::dtype::of<float>(), shape_of(x));
  const auto* src = static_cast<const uint16_t*>(x.data());
  auto* o = static_cast<float*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    Op(src, x.size(), o);
  }
  return out;
}

}  // namespace

void bind_formats(py::module_& m) {
  m.def("quantize_nf4", &quantize_nf4_py, py::arg("x"), py::arg("block_size"));
  m.def("dequantize_nf4", &dequantize_nf4_py, py::arg("q"), py::arg("absmax"), py::arg("shape"), py::arg("block_size"));
  m.def("convert_f32_f16", &narrow_py<convert_f32_f16>, py::arg("x"));
  m.def("convert_f16_f32", &widen_py<convert_f16_f32>, py::arg("x"));
  m.def("convert_f32_bf16", &narrow_py<convert_f32_bf16>, py::arg("x"));
  m.def("convert_bf16_f32", &widen_py<convert_bf16_f32>, py::arg("x"));
}

}  // namespace bind
}  // namespace lowbit
