// lowbit/im2col.hpp: patches of a strided (N, H, W, C) float32 tensor for convolution as a
// matmul. Public C++ API (ops layer; data movement only, no kernel table).
#pragma once

#include <cstdint>

namespace lowbit {

struct Im2colArgs {
  const float* x;
  int64_t n, h, w, c;      // logical NHWC shape
  int64_t sn, sh, sw, sc;  // strides in elements (any layout: NCHW, channels-last, views)
  int64_t kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t ho, wo;  // output spatial size (validated by the caller)
};

// out: (n * ho * wo, kh * kw * c) row-major; row (b, oy, ox) holds, for each (i, j) in
// kernel order, the c channels of x[b, oy * stride_h - pad_h + i * dil_h, ox * stride_w - pad_w +
// j * dil_w, :], zeros outside the image. Multithreaded over rows.
void im2col_nhwc(const Im2colArgs& a, float* out);

// The same on a contiguous NHWC byte image xq (the strides of `a` are ignored): rows of stride lda,
// `pad` outside the image, zeros from kh * kw * c to lda.
void im2col_nhwc_u8(const Im2colArgs& a, const uint8_t* xq, uint8_t pad, int64_t lda, uint8_t* out);
// Rows [r0, r1) only, written from out (row r0 at out), single-threaded.
void im2col_nhwc_u8_rows(const Im2colArgs& a, const uint8_t* xq, uint8_t pad, int64_t lda, uint8_t* out, int64_t r0,
                         int64_t r1);

}  // namespace lowbit
