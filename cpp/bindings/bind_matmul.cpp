// Bindings for the int8 GEMM family: validate arrays (dtype, ndim, shapes, K limits, packed
// sizes), allocate results, release the GIL around the op. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"
#include "kernels/matmul.hpp"
#include "lowbit/cpu.hpp"
#include "lowbit/matmul.hpp"
#include "reference/matmul.hpp"

namespace lowbit {
namespace bind {
namespace {

bool a_is_signed(const py::array& a) {
  if (has_dtype<int8_t>(a)) return true;
  if (has_dtype<uint8_t>(a)) return false;
  type_error("a: expected an int8 or uint8 array, got " + dtype_str(a));
}

void check_mm(const py::array& a, const py::array& b, bool* sgn) {
  *sgn = a_is_signed(a);
  require_dtype<int8_t>(b, "b", "an int8 array");
  require_ndim(a, 2, "a");
  require_ndim(b, 2, "b");
  if (a.shape(1) != b.shape(0))
    value_error("b: shape (" + std::to_string(b.shape(0)) + ", " + std::to_string(b.shape(1)) +
                ") does not match a's K = " + std::to_string(a.shape(1)));
  check_k(a.shape(1), *sgn, "a");
}

// a @ b for a plain (K, N) int8 b, packed in panel chunks inside the tasks; runs `fn` (nullptr: the dispatched kernel).
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
    matmul_unpacked_with(fn, ap, sgn, m, k, sam, sak, bp, n, sbk, sbn, c);
  }
  return out;
}

py::array matmul_py(const py::array& a, const py::array& b) { return matmul_unpacked(nullptr, a, b); }

// a (M, K) int8/uint8, any strides, times a packed weight (N, K): a @ w.T as int32.
py::array matmul_packed_py(const py::array& a, const py::array& packed, const py::array& colsum, int64_t n, int64_t k) {
  const bool sgn = a_is_signed(a);
  require_ndim(a, 2, "a");
  if (a.shape(1) != k)
    value_error("a: K = " + std::to_string(a.shape(1)) +
                " does not match the packed weight's K = " + std::to_string(k));
  check_k(k, sgn, "a");
  require_packed_s8(packed, colsum, n, k, "b");
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
  require_twin_cpu();
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
  require_dtype<int8_t>(w, "w", "an int8 array");
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
  if (!packed_s8_matches(packed, n, k))
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
      py::arg("a"), py::arg("b"),
      "Tests only: matmul_int8 through the AVX-VNNI kernel source built with EVEX vpdpbusd.");
  m.def(
      "_matmul_amx_twin",
      [](const py::array& a, const py::array& b) {
        return matmul_twin(kernels::avx512vnni::gemm_u8s8_task_amx_twin, a, b);
      },
      py::arg("a"), py::arg("b"), "Tests only: matmul_int8 through the AMX kernel source with emulated tiles.");
#endif
  m.def("matmul_reference", &matmul_reference_py, py::arg("a"), py::arg("b"),
        "The scalar C++ spec of matmul_int8 (slow triple loop).");
  m.def("pack_weight_s8", &pack_weight_py, py::arg("w"),
        "Packs w (N, K) int8 into the vnni4x16 layout; returns (packed, colsum).");
  m.def("unpack_weight_s8", &unpack_weight_py, py::arg("packed"), py::arg("n"), py::arg("k"),
        "Inverse of pack_weight_s8: the (N, K) int8 weight.");
  m.attr("matmul_max_k_s8") = max_k(true);
  m.attr("matmul_max_k_u8") = max_k(false);
  m.attr("packed_layout") = "vnni4x16";
}

}  // namespace bind
}  // namespace lowbit
