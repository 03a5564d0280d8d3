// Bindings for the int8 GEMM family: validate arrays (dtype, ndim, shapes, K limits, packed
// sizes), allocate results, release the GIL around the op. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common.hpp"
#include "lowbit/cpu.hpp"
#include "lowbit/matmul.hpp"
#include "reference/matmul.hpp"

namespace lowbit {
namespace bind {
namespace {

// Largest K whose worst-case int32 sum cannot overflow: K * max|a| * max|b| <= INT32_MAX.
int64_t max_k(bool a_signed) { return std::numeric_limits<int32_t>::max() / (a_signed ? 128 * 128 : 255 * 128); }

void check_k(int64_t k, bool a_signed, const char* what) {
  if (k > max_k(a_signed))
    value_error(std::string(what) + ": K = " + std::to_string(k) + " may overflow the int32 accumulator; at most " +
                std::to_string(max_k(a_signed)) + " for " + (a_signed ? "int8" : "uint8") + " activations");
}

bool a_is_signed(const py::array& a) {
  if (has_dtype<int8_t>(a)) return true;
  if (has_dtype<uint8_t>(a)) return false;
  type_error("a: expected an int8 or uint8 array, got " + dtype_str(a));
}

void require_ndim(const py::array& a, int nd, const char* name) {
  if (a.ndim() != nd)
    value_error(std::string(name) + ": expected a " + std::to_string(nd) + "-D array, got " + std::to_string(a.ndim()) + "-D");
}

void check_mm(const py::array& a, const py::array& b, bool* sgn) {
  *sgn = a_is_signed(a);
  if (!has_dtype<int8_t>(b)) type_error("b: expected an int8 array, got " + dtype_str(b));
  require_ndim(a, 2, "a");
  require_ndim(b, 2, "b");
  if (a.shape(1) != b.shape(0))
    value_error("b: shape (" + std::to_string(b.shape(0)) + ", " + std::to_string(b.shape(1)) +
                ") does not match a's K = " + std::to_string(a.shape(1)));
  check_k(a.shape(1), *sgn, "a");
}

// a @ b for a plain (K, N) int8 b: packs b, then runs `fn` (nullptr: the dispatched kernel).
py::array matmul_unpacked(kernels::GemmTaskFn fn, const py::array& a, const py::array& b) {
  bool sgn;
  check_mm(a, b, &sgn);
  const int64_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  py::array_t<int32_t> out({m, n});
  int32_t* c = out.mutable_data();
  const auto* ap = static_cast<const uint8_t*>(a.data());
  const auto* bp = static_cast<const int8_t*>(b.data());
  const int64_t sam = a.strides(0), sak = a.strides(1), sbk = b.strides(0), sbn = b.strides(1);
  {
    // Scoped: returning `out` as py::array copies the handle, which needs the GIL.
    py::gil_scoped_release release;
    std::vector<int8_t> packed(static_cast<size_t>(packed_weight_bytes(k, n)));
    std::vector<int32_t> colsum(static_cast<size_t>(n_panels(n) * kPanelCols));
    pack_weight_s8(bp, n, k, sbn, sbk, packed.data(), colsum.data());
    matmul_packed_with(fn, ap, sgn, m, k, sam, sak, packed.data(), colsum.data(), n, c);
  }
  return out;
}

py::array matmul_py(const py::array& a, const py::array& b) { return matmul_unpacked(nullptr, a, b); }

// a (M, K) int8/uint8, any strides, times a packed weight (N, K): a @ w.T as int32.
py::array matmul_packed_py(const py::array& a, const py::array& packed, const py::array& colsum, int64_t n, int64_t k) {
  const bool sgn = a_is_signed(a);
  require_ndim(a, 2, "a");
  if (a.shape(1) != k)
    value_error("a: K = " + std::to_string(a.shape(1)) + " does not match the packed weight's K = " + std::to_string(k));
  check_k(k, sgn, "a");
  if (!has_dtype<int8_t>(packed) || packed.ndim() != 1 || packed.size() != packed_weight_bytes(k, n) ||
      !(packed.flags() & py::array::c_style))
    value_error("b: packed weight data does not match its shape (" + std::to_string(n) + ", " + std::to_string(k) + ")");
  if (!has_dtype<int32_t>(colsum) || colsum.ndim() != 1 || colsum.size() != n_panels(n) * kPanelCols ||
      !(colsum.flags() & py::array::c_style))
    value_error("b: packed column sums do not match its shape");
  const int64_t m = a.shape(0);
  py::array_t<int32_t> out({m, n});
  int32_t* c = out.mutable_data();
  const auto* ap = static_cast<const uint8_t*>(a.data());
  const auto* pp = static_cast<const int8_t*>(packed.data());
  const auto* cp = static_cast<const int32_t*>(colsum.data());
  const int64_t sam = a.strides(0), sak = a.strides(1);
  {
    py::gil_scoped_release release;
    matmul_packed(ap, sgn, m, k, sam, sak, pp, cp, n, c);
  }
  return out;
}

#if defined(LOWBIT_HAVE_AVX512VNNI)
// Test hooks: matmul_int8 through a twin of a kernel that cannot run here (needs AVX-512 VNNI).
py::array matmul_twin(kernels::GemmTaskFn fn, const py::array& a, const py::array& b) {
  if (!isa_available(Isa::kAvx512Vnni)) value_error("this CPU has no AVX-512 VNNI to run the kernel twins");
  return matmul_unpacked(fn, a, b);
}
#endif

py::array matmul_reference_py(const py::array& a, const py::array& b) {
  bool sgn;
  check_mm(a, b, &sgn);
  const int64_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  py::array_t<int32_t> out({m, n});
  int32_t* c = out.mutable_data();
  const auto* bp = static_cast<const int8_t*>(b.data());
  const int64_t sam = a.strides(0), sak = a.strides(1), sbk = b.strides(0), sbn = b.strides(1);
  {
    py::gil_scoped_release release;
    if (sgn)
      ref::matmul_s8s8_s32(static_cast<const int8_t*>(a.data()), m, k, sam, sak, bp, n, sbk, sbn, c);
    else
      ref::matmul_u8s8_s32(static_cast<const uint8_t*>(a.data()), m, k, sam, sak, bp, n, sbk, sbn, c);
  }
  return out;
}

// w (N, K) int8, any strides -> (packed int8 bytes, colsum int32 padded to whole panels).
py::tuple pack_weight_py(const py::array& w) {
  if (!has_dtype<int8_t>(w)) type_error("w: expected an int8 array, got " + dtype_str(w));
  require_ndim(w, 2, "w");
  const int64_t n = w.shape(0), k = w.shape(1);
  check_k(k, false, "w");
  py::array_t<int8_t> packed(packed_weight_bytes(k, n));
  py::array_t<int32_t> colsum(n_panels(n) * kPanelCols);
  int8_t* pp = packed.mutable_data();
  int32_t* cp = colsum.mutable_data();
  const auto* wp = static_cast<const int8_t*>(w.data());
  const int64_t sn = w.strides(0), sk = w.strides(1);
  {
    py::gil_scoped_release release;
    pack_weight_s8(wp, n, k, sn, sk, pp, cp);
  }
  return py::make_tuple(packed, colsum);
}

py::array unpack_weight_py(const py::array& packed, int64_t n, int64_t k) {
  if (n < 0 || k < 0) value_error("shape: n and k must be >= 0");
  if (!has_dtype<int8_t>(packed) || packed.ndim() != 1 || packed.size() != packed_weight_bytes(k, n) ||
      !(packed.flags() & py::array::c_style))
    value_error("packed: data does not match the shape (" + std::to_string(n) + ", " + std::to_string(k) + ")");
  py::array_t<int8_t> out({n, k});
  int8_t* o = out.mutable_data();
  const auto* pp = static_cast<const int8_t*>(packed.data());
  {
    py::gil_scoped_release release;
    unpack_weight_s8(pp, n, k, o);
  }
  return out;
}

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

std::vector<float> padded(const F32& v, int64_t n, const char* name) {
  if (v.ndim() != 1 || v.shape(0) != n)
    value_error(std::string(name) + ": expected shape (" + std::to_string(n) + ",), got " + std::to_string(v.size()) +
                " values in " + std::to_string(v.ndim()) + "-D");
  std::vector<float> out(static_cast<size_t>(n_panels(n) * kPanelCols), 0.0f);
  const float* p = v.data();
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) value_error(std::string(name) + ": non-finite value at index " + std::to_string(i));
    out[i] = p[i];
  }
  return out;
}

void check_scale(double s, const char* name) {
  if (!(std::isfinite(s) && s > 0.0) || !std::isfinite(1.0f / static_cast<float>(s)) ||
      !(static_cast<float>(s) > 0.0f))
    value_error(std::string(name) + ": must be finite and > 0 (and 1/scale finite in float32), got " + std::to_string(s));
}

}  // namespace

LinearCall prepare_linear_call(const py::array& packed, const py::array& colsum, int64_t n, int64_t k,
                               const py::array& scale_in, const py::object& bias_in, const std::string& act,
                               double act_scale, int32_t act_zero_point, bool act_signed, bool relu,
                               const py::object& out_scale, int32_t out_zero_point) {
  check_k(k, false, "x");
  if (!has_dtype<int8_t>(packed) || packed.ndim() != 1 || packed.size() != packed_weight_bytes(k, n) ||
      !(packed.flags() & py::array::c_style))
    value_error("w: packed weight data does not match its shape (" + std::to_string(n) + ", " + std::to_string(k) + ")");
  if (!has_dtype<int32_t>(colsum) || colsum.ndim() != 1 || colsum.size() != n_panels(n) * kPanelCols ||
      !(colsum.flags() & py::array::c_style))
    value_error("w: packed column sums do not match its shape");
  LinearCall c;
  c.scale = padded(F32::ensure(scale_in), n, "w.scale");
  for (int64_t i = 0; i < n; ++i) check_scale(c.scale[i], "w.scale");
  LinearParams& p = c.p;
  if (!bias_in.is_none()) {
    F32 b = F32::ensure(bias_in);
    if (!b) type_error("bias: expected a float array");
    c.bias = padded(b, n, "bias");
    p.bias = c.bias.data();
  }
  if (act == "dynamic") {
    p.act = ActMode::kDynamicRow;
  } else if (act == "dynamic_per_tensor") {
    p.act = ActMode::kDynamicTensor;
  } else if (act == "static") {
    p.act = ActMode::kStatic;
    check_scale(act_scale, "act_scale");
    const int32_t lo = act_signed ? -128 : 0, hi = act_signed ? 127 : 255;
    if (act_zero_point < lo || act_zero_point > hi)
      value_error("act_zero_point: " + std::to_string(act_zero_point) + " is outside [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    p.act_scale = static_cast<float>(act_scale);
    p.act_zero_point = act_zero_point;
    p.act_signed = act_signed;
  } else {
    value_error("act: expected 'dynamic', 'dynamic_per_tensor' or 'static', got '" + act + "'");
  }
  p.relu = relu;
  if (!out_scale.is_none()) {
    const double os = out_scale.cast<double>();
    check_scale(os, "out_scale");
    if (out_zero_point < -128 || out_zero_point > 127)
      value_error("out_zero_point: " + std::to_string(out_zero_point) + " is outside [-128, 127]");
    p.requant = true;
    p.out_scale = static_cast<float>(os);
    p.out_zero_point = out_zero_point;
  }
  c.packed = static_cast<const int8_t*>(packed.data());
  c.colsum = static_cast<const int32_t*>(colsum.data());
  return c;
}

py::array linear_out(const LinearCall& c, int64_t m, int64_t n) {
  return c.p.requant ? py::array(py::dtype::of<int8_t>(), std::vector<int64_t>{m, n})
                     : py::array(py::dtype::of<float>(), std::vector<int64_t>{m, n});
}

namespace {

py::array linear_py(const py::array& x_in, const py::array& packed, const py::array& colsum, int64_t n, int64_t k,
                    const py::array& scale_in, const py::object& bias_in, const std::string& act, double act_scale,
                    int32_t act_zero_point, bool act_signed, bool relu, const py::object& out_scale,
                    int32_t out_zero_point) {
  if (!has_dtype<float>(x_in)) type_error("x: expected a float32 array, got " + dtype_str(x_in));
  require_ndim(x_in, 2, "x");
  require_contiguous(x_in, "x");
  if (x_in.shape(1) != k)
    value_error("x: last dimension " + std::to_string(x_in.shape(1)) + " does not match the weight's K = " + std::to_string(k));
  const LinearCall c = prepare_linear_call(packed, colsum, n, k, scale_in, bias_in, act, act_scale, act_zero_point,
                                           act_signed, relu, out_scale, out_zero_point);
  const int64_t m = x_in.shape(0);
  py::array out = linear_out(c, m, n);
  void* o = out.mutable_data();
  const auto* x = static_cast<const float*>(x_in.data());
  {
    py::gil_scoped_release release;
    linear_packed(x, m, k, c.packed, c.colsum, c.scale.data(), n, c.p, o);
  }
  return out;
}

}  // namespace

void bind_matmul(py::module_& m) {
  m.def("matmul_int8", &matmul_py, py::arg("a"), py::arg("b"),
        "Exact int32 product of a (M, K) int8/uint8 and b (K, N) int8, any strides.");
  m.def("matmul_packed", &matmul_packed_py, py::arg("a"), py::arg("packed"), py::arg("colsum"), py::arg("n"),
        py::arg("k"), "Exact int32 a @ w.T for a packed weight w (N, K).");
#if defined(LOWBIT_HAVE_AVX512VNNI)
  m.def(
      "_matmul_avxvnni_twin",
      [](const py::array& a, const py::array& b) {
        return matmul_twin(kernels::avx512vnni::gemm_u8s8_task_avxvnni_twin, a, b);
      },
      py::arg("a"), py::arg("b"), "Tests only: matmul_int8 through the AVX-VNNI kernel source built with EVEX vpdpbusd.");
  m.def(
      "_matmul_amx_twin",
      [](const py::array& a, const py::array& b) { return matmul_twin(kernels::avx512vnni::gemm_u8s8_task_amx_twin, a, b); },
      py::arg("a"), py::arg("b"), "Tests only: matmul_int8 through the AMX kernel source with emulated tiles.");
#endif
  m.def("matmul_reference", &matmul_reference_py, py::arg("a"), py::arg("b"),
        "The scalar C++ spec of matmul_int8 (slow triple loop).");
  m.def("pack_weight_s8", &pack_weight_py, py::arg("w"),
        "Packs w (N, K) int8 into the vnni4x16 layout; returns (packed, colsum).");
  m.def("unpack_weight_s8", &unpack_weight_py, py::arg("packed"), py::arg("n"), py::arg("k"),
        "Inverse of pack_weight_s8: the (N, K) int8 weight.");
  m.def("linear", &linear_py, py::arg("x"), py::arg("packed"), py::arg("colsum"), py::arg("n"), py::arg("k"),
        py::arg("scale"), py::arg("bias"), py::arg("act"), py::arg("act_scale"), py::arg("act_zero_point"),
        py::arg("act_signed"), py::arg("relu"), py::arg("out_scale"), py::arg("out_zero_point"));
  m.attr("matmul_max_k_s8") = max_k(true);
  m.attr("matmul_max_k_u8") = max_k(false);
  m.attr("packed_layout") = "vnni4x16";
}

}  // namespace bind
}  // namespace lowbit
