// Bindings layer: the argument checks every bind_<concept>.cpp shares; each raises TypeError /
// ValueError naming the argument at fault.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lowbit/cpu.hpp"
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
  return got.is(want) ||
         (got.kind() == want.kind() && got.itemsize() == want.itemsize() && got.attr("isnative").template cast<bool>());
}

inline bool is_f16(const py::array& a) { return a.dtype().kind() == 'f' && a.dtype().itemsize() == 2; }

// C-contiguous, and its data at an address aligned to its element size (a view at an odd byte
// offset of a larger buffer is not: loading its elements is undefined behaviour).
inline void require_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style)) value_error(std::string(name) + " must be C-contiguous");
  if (reinterpret_cast<uintptr_t>(a.data()) % static_cast<uintptr_t>(a.itemsize()) != 0)
    value_error(std::string(name) +
                " must be aligned to its element size (copy it, e.g. np.require(x, requirements='A'))");
}

// An array converted from any object: C-contiguous, of element type T, and aligned (NumPy's
// NPY_ARRAY_ALIGNED flag: ensure() copies a view at an odd byte address instead of passing it on).
constexpr int kNpyAligned = 0x0100;
template <class T>
using InArray = py::array_t<T, py::array::c_style | py::array::forcecast | kNpyAligned>;

// Size arithmetic that cannot overflow: ceil(n / d) for n >= 0, d >= 1; products checked.
inline int64_t ceil_div(int64_t n, int64_t d) { return n / d + (n % d != 0 ? 1 : 0); }

// a * b for a, b >= 0; ValueError naming `what` when the product does not fit in int64.
inline int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) value_error(what + ": sizes too large (their product overflows int64)");
  return r;
}
inline int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) value_error(what + ": sizes too large (their sum overflows int64)");
  return r;
}

// The element count of a shape: dimensions >= 0, product checked.
inline int64_t checked_numel(const std::vector<int64_t>& shape, const char* name) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) value_error(std::string(name) + ": negative dimension " + std::to_string(d));
    n = checked_mul(n, d, name);
  }
  return n;
}

// Group and block lengths (group_size, nf4 block_size) are capped: larger ones mean nothing (one
// group covers any array that fits in memory) and would overflow the size arithmetic.
constexpr int64_t kMaxGroupSize = int64_t{1} << 48;
inline void check_group_cap(int64_t g, const char* name) {
  if (g > kMaxGroupSize) value_error(std::string(name) + ": must be at most 2**48, got " + std::to_string(g));
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// `a` must hold element type T; otherwise "<name>: expected <what>, got <dtype>" (TypeError).
template <class T>
void require_dtype(const py::array& a, const char* name, const char* what) {
  if (!has_dtype<T>(a)) type_error(std::string(name) + ": expected " + what + ", got " + dtype_str(a));
}

// A C-contiguous float32 array (any shape): its data.
inline const float* require_f32(const py::array& a, const char* name) {
  require_dtype<float>(a, name, "a float32 array");
  require_contiguous(a, name);
  return static_cast<const float*>(a.data());
}

// A caller-provided result buffer: C-contiguous, writable, of the result's shape (dtype checked by
// the caller); `what` names the result in the shape message.
inline void require_out(const py::array& out, const std::vector<int64_t>& shape, const char* what) {
  require_contiguous(out, "out");
  if (!out.writeable()) value_error("out: array is read-only");
  if (shape_of(out) != shape) value_error(std::string("out: shape does not match ") + what + "'s shape");
}

// A quantization scale that the kernels accept: finite, > 0 and with a finite float32 reciprocal.
inline bool scale_ok(double s) {
  const float f = static_cast<float>(s);
  return std::isfinite(s) && s > 0.0 && f > 0.0f && std::isfinite(1.0f / f);
}

// Test-only kernel twins run AVX-512 VNNI code.
inline void require_twin_cpu() {
  if (!isa_available(Isa::kAvx512Vnni)) value_error("this CPU has no AVX-512 VNNI to run the kernel twins");
}

// int8 weights packed by pack_weight_s8 for shape (n, k): the packed bytes (1-D int8,
// packed_weight_bytes, contiguous) and, when colsum is given, the padded column sums.
inline bool packed_s8_matches(const py::array& packed, int64_t n, int64_t k) {
  return has_dtype<int8_t>(packed) && packed.ndim() == 1 && packed.size() == packed_weight_bytes(k, n) &&
         (packed.flags() & py::array::c_style);
}
inline void require_packed_s8(const py::array& packed, const py::array& colsum, int64_t n, int64_t k,
                              const char* name) {
  if (!packed_s8_matches(packed, n, k))
    value_error(std::string(name) + ": packed weight data does not match its shape (" + std::to_string(n) + ", " +
                std::to_string(k) + ")");
  if (!has_dtype<int32_t>(colsum) || colsum.ndim() != 1 || colsum.size() != n_panels(n) * kPanelCols ||
      !(colsum.flags() & py::array::c_style))
    value_error(std::string(name) + ": packed column sums do not match its shape");
}

inline void require_ndim(const py::array& a, int nd, const char* name) {
  if (a.ndim() != nd)
    value_error(std::string(name) + ": expected a " + std::to_string(nd) + "-D array, got " + std::to_string(a.ndim()) +
                "-D");
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
  std::vector<float> scale, bias, rot_signs;
  LinearParams p;
  const int8_t* packed = nullptr;
  const int32_t* colsum = nullptr;
};
LinearCall prepare_linear_call(const py::array& packed, const py::array& colsum, int64_t n, int64_t k,
                               const py::array& scale_in, const py::object& bias_in, const std::string& act,
                               double act_scale, int32_t act_zero_point, bool act_signed, bool relu,
                               const py::object& out_scale, int32_t out_zero_point,
                               const py::object& rot_signs = py::none(), int64_t rot_block = 0);
// The (m, n) float32 result of a linear, or int8 when it requantizes.
py::array linear_out(const LinearCall& c, int64_t m, int64_t n);

// A new C-contiguous array for an op's result; large ones reuse a freed result's pages
// (bind_buffers.cpp: results of the same size recur on every call of a layer).
py::array pooled_array(const py::dtype& dtype, const std::vector<int64_t>& shape);
template <class T>
py::array pooled_array(const std::vector<int64_t>& shape) {
  return pooled_array(py::dtype::of<T>(), shape);
}

// Validated convolution geometry of a strided (N, H, W, C) float32 image, or with allow_u8 of a
// C-contiguous uint8 one (an image already quantized; then x is not set) (bind_conv.cpp).
Im2colArgs im2col_geometry(const py::array& x, int64_t kh, int64_t kw, int64_t stride_h, int64_t stride_w,
                           int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, bool allow_u8);

}  // namespace bind
}  // namespace lowbit
