// Binding for the 4-bit-weight linear op: validate arrays and shapes, allocate the result,
// release the GIL. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "common.hpp"
#include "lowbit/cpu.hpp"
#include "lowbit/linear4.hpp"
#include "reference/linear4.hpp"

namespace lowbit {
namespace bind {
namespace {

py::array linear_4bit_with(kernels::Linear4Fn kernel, const py::array& x, const py::array& w, const py::array& scales,
                           const py::object& bias, int64_t n, int64_t group, const std::string& kind,
                           const std::string& act, const py::object& wsum) {
  if (kind != "int4" && kind != "nf4") value_error("kind: expected 'int4' or 'nf4', got '" + kind + "'");
  if (act != "float" && act != "int8") value_error("act: expected 'float' or 'int8', got '" + act + "'");
  if (!has_dtype<float>(x) || x.ndim() != 2) type_error("x: expected a 2-D float32 array, got " + dtype_str(x));
  require_contiguous(x, "x");
  if (!has_dtype<uint8_t>(w) || w.ndim() != 3 || w.shape(2) != kL4BlockBytes)
    type_error("w: expected packed 4-bit weights (panels, K / 8, 64) uint8");
  require_contiguous(w, "w");
  if (!has_dtype<float>(scales) || scales.ndim() != 2) type_error("scales: expected a 2-D float32 array");
  require_contiguous(scales, "scales");
  const int64_t m = x.shape(0), k = x.shape(1), panels = w.shape(0), kp = w.shape(1) * 8;
  if (n < 0 || (n + kL4Panel - 1) / kL4Panel != panels) value_error("n: does not match the packed panels");
  if (group <= 0 || group % 32 != 0 || kp % group != 0)
    value_error("group_size: must be a positive multiple of 32 dividing the padded K");
  if (k > kp || kp - k >= group) value_error("x: K does not match the packed weight");
  if (scales.shape(0) != kp / group || scales.shape(1) != panels * kL4Panel)
    value_error("scales: expected shape (K / group_size, padded N)");
  const int32_t* ws = nullptr;
  py::array wsum_arr;
  if (act == "int8" && kind == "nf4") {
    if (wsum.is_none()) value_error("wsum: required for NF4 weights with int8 activations");
    wsum_arr = wsum.cast<py::array>();
    if (!has_dtype<int32_t>(wsum_arr) || wsum_arr.ndim() != 2 || wsum_arr.shape(0) != scales.shape(0) ||
        wsum_arr.shape(1) != scales.shape(1))
      value_error("wsum: expected int32 of the scales' shape (K / group_size, padded N)");
    require_contiguous(wsum_arr, "wsum");
    ws = static_cast<const int32_t*>(wsum_arr.data());
  }
  const float* b = nullptr;
  py::array bias_arr;
  if (!bias.is_none()) {
    bias_arr = bias.cast<py::array>();
    if (!has_dtype<float>(bias_arr) || bias_arr.ndim() != 1 || bias_arr.shape(0) != n)
      value_error("bias: expected float32 of shape (N,)");
    require_contiguous(bias_arr, "bias");
    b = static_cast<const float*>(bias_arr.data());
  }
  py::array y(py::dtype::of<float>(), std::vector<int64_t>{m, n});
  Linear4Args a{};
  a.m = m;
  a.ldx = k;
  a.w = static_cast<const uint8_t*>(w.data());
  a.scales = static_cast<const float*>(scales.data());
  a.bias = b;
  a.wsum = ws;
  a.n = n;
  a.kp = kp;
  a.group = group;
  a.y = static_cast<float*>(y.mutable_data());
  a.ldy = n;
  const bool nf4 = kind == "nf4";
  const Linear4Kind kd = act == "int8" ? (nf4 ? Linear4Kind::kNf4Int8 : Linear4Kind::kInt4Int8)
                                       : (nf4 ? Linear4Kind::kNf4Float : Linear4Kind::kInt4Float);
  const float* xp = static_cast<const float*>(x.data());
  {
    py::gil_scoped_release release;
    if (m > 0 && n > 0) linear_4bit(a, xp, k, kd, kernel);
  }
  return y;
}

py::array linear_4bit_py(const py::array& x, const py::array& w, const py::array& scales, const py::object& bias,
                         int64_t n, int64_t group, const std::string& kind, const std::string& act,
                         const py::object& wsum) {
  return linear_4bit_with(nullptr, x, w, scales, bias, n, group, kind, act, wsum);
}

// Test hook: the int8-activation path through a twin of a kernel this CPU may lack, built into the
// AVX-512 VNNI objects: "avxvnni" (the EVEX encoding of the AVX-VNNI kernels) or "amx" (the AMX
// kernels on scalar-emulated tiles).
py::array linear_4bit_twin(const std::string& which, const py::array& x, const py::array& w, const py::array& scales,
                           const py::object& bias, int64_t n, int64_t group, const std::string& kind,
                           const py::object& wsum) {
#if defined(LOWBIT_HAVE_AVX512VNNI)
  if (!isa_available(Isa::kAvx512Vnni)) value_error("this CPU has no AVX-512 VNNI to run the kernel twins");
  namespace k = kernels::avx512vnni;
  const bool nf4 = kind == "nf4";
  kernels::Linear4Fn fn = nullptr;
  if (which == "avxvnni") fn = nf4 ? k::linear_s8_nf4w_f32_avxvnni_twin : k::linear_s8_s4w_f32_avxvnni_twin;
  if (which == "amx") fn = nf4 ? k::linear_s8_nf4w_f32_amx_twin : k::linear_s8_s4w_f32_amx_twin;
  if (fn == nullptr) value_error("which: expected 'avxvnni' or 'amx', got '" + which + "'");
  return linear_4bit_with(fn, x, w, scales, bias, n, group, kind, "int8", wsum);
#else
  value_error("built without AVX-512 VNNI kernels: no twins");
#endif
}

}  // namespace

void bind_linear4(py::module_& m) {
  m.def("linear_4bit", &linear_4bit_py, py::arg("x"), py::arg("w"), py::arg("scales"), py::arg("bias"), py::arg("n"),
        py::arg("group_size"), py::arg("kind"), py::arg("act"), py::arg("wsum") = py::none());
  m.def("_linear_4bit_twin", &linear_4bit_twin, py::arg("which"), py::arg("x"), py::arg("w"), py::arg("scales"),
        py::arg("bias"), py::arg("n"), py::arg("group_size"), py::arg("kind"), py::arg("wsum") = py::none());
}

}  // namespace bind
}  // namespace lowbit
