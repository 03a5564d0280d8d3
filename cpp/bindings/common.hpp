// Shared binding helpers: argument validation that raises TypeError/ValueError naming the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <string>
#include <vector>

#include "lowbit/im2col.hpp"
#include "lowbit/matmul.hpp"

namespace lowbit {
namespace bind {

namespace py = pybind11;

[[noreturn]] inline void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }

// Compares dtype kind and size, not object identity: an unpickled or otherwise rebuilt array
// holds an equal but distinct dtype object.
template <class T>
bool has_dtype(const py::array& a) {
  const py::dtype want = py::dtype::of<T>();
  const py::dtype got = a.dtype();
  return got.is(want) || (got.kind() == want.kind() && got.itemsize() == want.itemsize() &&
                          got.attr("isnative").template cast<bool>());
}

inline bool is_f16(const py::array& a) { return a.dtype().kind() == 'f' && a.dtype().itemsize() == 2; }

inline void require_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style)) value_error(std::string(name) + " must be C-contiguous");
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline void require_ndim(const py::array& a, int nd, const char* name) {
  if (a.ndim() != nd)
    value_error(std::string(name) + ": expected a " + std::to_string(nd) + "-D array, got " + std::to_string(a.ndim()) + "-D");
}

// Largest K whose worst-case int32 sum cannot overflow: K * max|a| * max|b| <= INT32_MAX.
inline int64_t max_k(bool a_signed) { return std::numeric_limits<int32_t>::max() / (a_signed ? 128 * 128 : 255 * 128); }

inline void check_k(int64_t k, bool a_signed, const char* what) {
  if (k > max_k(a_signed))
    value_error(std::string(what) + ": K = " + std::to_string(k) + " may overflow the int32 accumulator; at most " +
                std::to_string(max_k(a_signed)) + " for " + (a_signed ? "int8" : "uint8") + " activations");
}

// Validated weight-side arguments of an int8 linear (everything but x), shared by linear and
// conv2d_static (defined in bind_linear.cpp).
struct LinearCall {
  std::vector<float> scale, bias;
  LinearParams p;
  const int8_t* packed = nullptr;
  const int32_t* colsum = nullptr;
};
LinearCall prepare_linear_call(const py::array& packed, const py::array& colsum, int64_t n, int64_t k,
                               const py::array& scale_in, const py::object& bias_in, const std::string& act,
                               double act_scale, int32_t act_zero_point, bool act_signed, bool relu,
                               const py::object& out_scale, int32_t out_zero_point);
// The (m, n) float32 result of a linear, or int8 when it requantizes.
py::array linear_out(const LinearCall& c, int64_t m, int64_t n);

// Validated convolution geometry of a strided (N, H, W, C) float32 image (bind_conv.cpp).
Im2colArgs im2col_geometry(const py::array& x, int64_t kh, int64_t kw, int64_t stride_h, int64_t stride_w,
                           int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w);

}  // namespace bind
}  // namespace lowbit
