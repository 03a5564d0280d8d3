// Bindings for the float32 attention: validate shapes, strides and the output, release the GIL
// around the op. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "common.hpp"
#include "lowbit/attention.hpp"

namespace lowbit {
namespace bind {
namespace {

// A 4-D float32 array's element strides, its last dimension contiguous (size-1 dims: stride 0).
void strides4(const py::array& a, const char* name, int64_t* s) {
  require_dtype<float>(a, name, "a float32 array");
  require_ndim(a, 4, name);
  for (int i = 0; i < 4; ++i) {
    if (a.strides(i) % static_cast<py::ssize_t>(sizeof(float)) != 0)
      value_error(std::string(name) + ": strides must be multiples of 4 bytes");
    s[i] = a.shape(i) == 1 ? 0 : a.strides(i) / static_cast<py::ssize_t>(sizeof(float));
  }
  if (a.shape(3) > 1 && s[3] != 1) value_error(std::string(name) + ": the last dimension must be contiguous");
}

py::array attention_py(const py::array& q, const py::array& k, const py::array& v, const py::object& mask_in,
                       bool causal, double scale, const py::object& out_in, bool heads_last) {
  int64_t sq_[4], sk_[4], sv_[4], so_[4], sm_[4] = {0, 0, 0, 0};
  strides4(q, "q", sq_);
  strides4(k, "k", sk_);
  strides4(v, "v", sv_);
  py::array result, out;
  if (out_in.is_none()) {  // a recycled result buffer (bind_buffers.cpp), heads last or not
    const int64_t b = q.shape(0), h = q.shape(1), n = q.shape(2), dv = v.shape(3);
    checked_numel({b, h, n, dv}, "out");
    result = heads_last ? pooled_array<float>({b, n, h, dv}) : pooled_array<float>({b, h, n, dv});
    out = heads_last ? result.attr("transpose")(0, 2, 1, 3).cast<py::array>() : result;
  } else {
    out = out_in.cast<py::array>();
    result = out;
  }
  strides4(out, "out", so_);
  if (!out.writeable()) value_error("out: must be writable");
  AttentionArgs a;
  a.batch = q.shape(0);
  a.heads = q.shape(1);
  a.sq = q.shape(2);
  a.d = q.shape(3);
  a.kv_heads = k.shape(1);
  a.sk = k.shape(2);
  a.dv = v.shape(3);
  if (k.shape(0) != a.batch || v.shape(0) != a.batch) value_error("k, v: batch size differs from q's");
  if (k.shape(3) != a.d) value_error("k: last dimension differs from q's");
  if (v.shape(1) != a.kv_heads || v.shape(2) != a.sk) value_error("v: (heads, keys) differ from k's");
  if (a.kv_heads == 0 || a.heads % a.kv_heads != 0)
    value_error("k: its " + std::to_string(a.kv_heads) + " heads must divide q's " + std::to_string(a.heads) +
                " (grouped-query attention)");
  if (a.sk == 0 && a.sq > 0) value_error("k: no keys");
  if (out.shape(0) != a.batch || out.shape(1) != a.heads || out.shape(2) != a.sq || out.shape(3) != a.dv)
    value_error("out: expected shape (batch, heads, queries, v's last dimension)");
  if (!std::isfinite(scale)) value_error("scale: must be finite");
  if (!mask_in.is_none()) {
    const py::array mask = mask_in.cast<py::array>();
    strides4(mask, "mask", sm_);
    const int64_t want[4] = {a.batch, a.heads, a.sq, a.sk};
    for (int i = 0; i < 4; ++i)
      if (mask.shape(i) != want[i] && mask.shape(i) != 1)
        value_error("mask: shape does not broadcast to (batch, heads, queries, keys)");
    if (mask.shape(3) != a.sk && a.sk > 1) value_error("mask: expected one value per key in its last dimension");
    a.mask = static_cast<const float*>(mask.data());
  }
  a.q = static_cast<const float*>(q.data());
  a.k = static_cast<const float*>(k.data());
  a.v = static_cast<const float*>(v.data());
  a.out = static_cast<float*>(out.mutable_data());
  a.q_sb = sq_[0], a.q_sh = sq_[1], a.q_ss = sq_[2];
  a.k_sb = sk_[0], a.k_sh = sk_[1], a.k_ss = sk_[2];
  a.v_sb = sv_[0], a.v_sh = sv_[1], a.v_ss = sv_[2];
  a.m_sb = sm_[0], a.m_sh = sm_[1], a.m_ss = sm_[2];
  a.o_sb = so_[0], a.o_sh = so_[1], a.o_ss = so_[2];
  a.causal = causal;
  a.scale = static_cast<float>(scale);
  {
    py::gil_scoped_release release;
    attention(a);
  }
  return result;
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def("attention", &attention_py, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"), py::arg("causal"),
        py::arg("scale"), py::arg("out") = py::none(), py::arg("heads_last") = false,
        "out = softmax(q k^T * scale + mask) v over (batch, heads, rows, columns) float32 arrays (last "
        "dimension contiguous; k, v may have fewer heads: grouped-query attention); mask additive, "
        "broadcast, or None; causal hides keys after each query row. Returns out, or without it a new "
        "(batch, heads, rows, columns) array, with heads_last one of (batch, rows, heads, columns).");
}

}  // namespace bind
}  // namespace lowbit
