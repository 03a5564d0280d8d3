// Bindings for the linear family: int8 weights (linear) and 4-bit weights (linear_4bit and its
// test twins): validate arrays and shapes, allocate the result, release the GIL. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.hpp"
#include "kernels/linear_4bit.hpp"
#include "lowbit/cpu.hpp"
#include "lowbit/linear_4bit.hpp"
#include "lowbit/matmul.hpp"

namespace lowbit {
namespace bind {
namespace {

using F32 = InArray<float>;

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
  if (!scale_ok(s))
    value_error(std::string(name) + ": must be finite and > 0 (and 1/scale finite in float32), got " +
                std::to_string(s));
}

// The signs of a rotated input (lowbit/rotation.hpp) for a K-wide x: rotation_block a power of two
// dividing K, rotation_signs K float32 values (converted if need be; the array keeps them alive).
F32 rotation_signs_arg(const py::object& signs, int64_t block, int64_t k) {
  if (block < 1 || (block & (block - 1)) != 0 || k % block != 0)
    value_error("rotation_block: expected a power of two dividing K = " + std::to_string(k) + ", got " +
                std::to_string(block));
  F32 sg = F32::ensure(signs);
  if (!sg || sg.ndim() != 1 || sg.shape(0) != k)
    value_error("rotation_signs: expected a float32 array of shape (" + std::to_string(k) + ",)");
  return sg;
}

}  // namespace

LinearCall prepare_linear_call(const py::array& packed, const py::array& colsum, int64_t n, int64_t k,
                               const py::array& scale_in, const py::object& bias_in, const std::string& act,
                               double act_scale, int32_t act_zero_point, bool act_signed, bool relu,
                               const py::object& out_scale, int32_t out_zero_point, const py::object& rot_signs,
                               int64_t rot_block) {
  check_k(k, false, "x");
  require_packed_s8(packed, colsum, n, k, "w");
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
    check_scale(act_scale, "activation_scale");
    const int32_t lo = act_signed ? -128 : 0, hi = act_signed ? 127 : 255;
    if (act_zero_point < lo || act_zero_point > hi)
      value_error("activation_zero_point: " + std::to_string(act_zero_point) + " is outside [" + std::to_string(lo) +
                  ", " + std::to_string(hi) + "]");
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
  if (rot_block != 0) {  // rotated inputs (lowbit/rotation.hpp)
    const F32 sg = rotation_signs_arg(rot_signs, rot_block, k);
    c.rot_signs.assign(sg.data(), sg.data() + k);
    p.rot_signs = c.rot_signs.data();
    p.rot_block = rot_block;
  }
  c.packed = static_cast<const int8_t*>(packed.data());
  c.colsum = static_cast<const int32_t*>(colsum.data());
  return c;
}

py::array linear_out(const LinearCall& c, int64_t m, int64_t n) {
  return c.p.requant ? pooled_array<int8_t>({m, n}) : pooled_array<float>({m, n});
}

namespace {

py::array linear_py(const py::array& x_in, const py::array& packed, const py::array& colsum, int64_t n, int64_t k,
                    const py::array& scale_in, const py::object& bias_in, const std::string& act, double act_scale,
                    int32_t act_zero_point, bool act_signed, bool relu, const py::object& out_scale,
                    int32_t out_zero_point, const py::object& rot_signs, int64_t rot_block) {
  require_dtype<float>(x_in, "x", "a float32 array");
  require_ndim(x_in, 2, "x");
  require_contiguous(x_in, "x");
  if (x_in.shape(1) != k)
    value_error("x: last dimension " + std::to_string(x_in.shape(1)) +
                " does not match the weight's K = " + std::to_string(k));
  const LinearCall c = prepare_linear_call(packed, colsum, n, k, scale_in, bias_in, act, act_scale, act_zero_point,
                                           act_signed, relu, out_scale, out_zero_point, rot_signs, rot_block);
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

// Several linears on one x (each entry: the arguments of linear after x), x quantized once: the
// list of their results. Their activation arguments and K must agree.
py::list linear_parts_py(const py::array& x_in, const py::sequence& parts) {
  require_dtype<float>(x_in, "x", "a float32 array");
  require_ndim(x_in, 2, "x");
  require_contiguous(x_in, "x");
  if (py::len(parts) == 0) value_error("parts: expected at least one linear");
  const int64_t m = x_in.shape(0), k = x_in.shape(1);
  std::vector<LinearCall> calls;
  calls.reserve(py::len(parts));  // never reallocated: the parts point into the calls' vectors
  std::vector<LinearPart> lp;
  py::list outs;
  for (const py::handle& h : parts) {
    const py::tuple t = py::reinterpret_borrow<py::object>(h).cast<py::tuple>();
    if (t.size() != 13 && t.size() != 15)
      value_error("parts: each entry must hold linear's 13 arguments after x (15 with the rotation)");
    if (t[3].cast<int64_t>() != k)
      value_error("x: last dimension " + std::to_string(k) +
                  " does not match a part's K = " + std::to_string(t[3].cast<int64_t>()));
    const int64_t n = t[2].cast<int64_t>();
    calls.push_back(prepare_linear_call(
        t[0].cast<py::array>(), t[1].cast<py::array>(), n, k, t[4].cast<py::array>(), t[5], t[6].cast<std::string>(),
        t[7].cast<double>(), t[8].cast<int32_t>(), t[9].cast<bool>(), t[10].cast<bool>(), t[11], t[12].cast<int32_t>(),
        t.size() == 15 ? py::object(t[13]) : py::none(), t.size() == 15 ? t[14].cast<int64_t>() : 0));
    const LinearParams &p = calls.back().p, &p0 = calls.front().p;
    if (p.act != p0.act || p.act_scale != p0.act_scale || p.act_zero_point != p0.act_zero_point ||
        p.act_signed != p0.act_signed)
      value_error("parts: the linears' activation quantization differs; they cannot share one quantized x");
    if (p.rot_block != p0.rot_block || calls.back().rot_signs != calls.front().rot_signs)
      value_error("parts: the linears rotate their input differently; they cannot share one quantized x");
    py::array out = linear_out(calls.back(), m, n);
    lp.push_back(
        LinearPart{calls.back().packed, calls.back().colsum, calls.back().scale.data(), n, p, out.mutable_data()});
    outs.append(out);
  }
  const auto* x = static_cast<const float*>(x_in.data());
  {
    py::gil_scoped_release release;
    linear_packed_parts(x, m, k, lp.data(), static_cast<int64_t>(lp.size()));
  }
  return outs;
}

py::array linear_4bit_with(kernels::Linear4Fn kernel, const py::array& x, const py::array& w, const py::array& scales,
                           const py::object& bias, int64_t n, int64_t group, const std::string& kind,
                           const std::string& act, const py::object& wsum, const py::object& rot_signs = py::none(),
                           int64_t rot_block = 0) {
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
  if (n < 0 || ceil_div(n, kL4Panel) != panels) value_error("n: does not match the packed panels");
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
  const F32 signs = rot_block != 0 ? rotation_signs_arg(rot_signs, rot_block, k) : F32();
  py::array y = pooled_array<float>({m, n});
  Linear4Args a{};
  if (rot_block != 0) {
    a.rot_signs = signs.data();
    a.rot_block = rot_block;
  }
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
                         const py::object& wsum, const py::object& rot_signs, int64_t rot_block) {
  return linear_4bit_with(nullptr, x, w, scales, bias, n, group, kind, act, wsum, rot_signs, rot_block);
}

// Test hook: the int8-activation path through a twin of a kernel this CPU may lack, built into the
// AVX-512 VNNI objects: "avxvnni" (the EVEX encoding of the AVX-VNNI kernels) or "amx" (the AMX
// kernels on scalar-emulated tiles).
py::array linear_4bit_twin(const std::string& which, const py::array& x, const py::array& w, const py::array& scales,
                           const py::object& bias, int64_t n, int64_t group, const std::string& kind,
                           const py::object& wsum) {
#if defined(LOWBIT_HAVE_AVX512VNNI)
  require_twin_cpu();
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

void bind_linear(py::module_& m) {
  m.def("linear", &linear_py, py::arg("x"), py::arg("packed"), py::arg("colsum"), py::arg("n"), py::arg("k"),
        py::arg("scale"), py::arg("bias"), py::arg("act"), py::arg("act_scale"), py::arg("act_zero_point"),
        py::arg("act_signed"), py::arg("relu"), py::arg("out_scale"), py::arg("out_zero_point"),
        py::arg("rotation_signs") = py::none(), py::arg("rotation_block") = 0,
        "out = epilogue(quantize(x R) @ W^T): x float32 (m, k), the int8 weight packed; R the blocked "
        "Walsh-Hadamard rotation of rotation_signs (lowbit/rotation.hpp) when rotation_block > 0.");
  m.def("linear_parts", &linear_parts_py, py::arg("x"), py::arg("parts"));
  m.def("linear_4bit", &linear_4bit_py, py::arg("x"), py::arg("w"), py::arg("scales"), py::arg("bias"), py::arg("n"),
        py::arg("group_size"), py::arg("kind"), py::arg("act"), py::arg("wsum") = py::none(),
        py::arg("rotation_signs") = py::none(), py::arg("rotation_block") = 0);
  m.def("_linear_4bit_twin", &linear_4bit_twin, py::arg("which"), py::arg("x"), py::arg("w"), py::arg("scales"),
        py::arg("bias"), py::arg("n"), py::arg("group_size"), py::arg("kind"), py::arg("wsum") = py::none());
}

}  // namespace bind
}  // namespace lowbit
