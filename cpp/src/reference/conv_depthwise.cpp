// Reference depthwise convolution kernel (lowbit::ref): the spec of conv2d_depthwise_f32_s8w_f32.
#include "reference/conv_depthwise.hpp"

namespace lowbit {
namespace ref {
void conv2d_depthwise_f32_s8w_f32(const DwConvArgs& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / a.ho, oy = r % a.ho;
    for (int64_t ox = 0; ox < a.wo; ++ox) {
      float* o = a.out + ((r - a.out_r0) * a.wo + ox) * a.c;
      for (int64_t ch = 0; ch < a.c; ++ch) o[ch] = detail::dw_conv_one(a, b, oy, ox, ch);
    }
  }
}

void conv2d_depthwise_u8_s8w_u8(const DwConvArgs& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / a.ho, oy = r % a.ho;
    for (int64_t ox = 0; ox < a.wo; ++ox) {
      uint8_t* o = a.out_u8 + ((r - a.out_r0) * a.wo + ox) * a.c;
      for (int64_t ch = 0; ch < a.c; ++ch)
        o[ch] = static_cast<uint8_t>(detail::quantize_one(detail::dw_conv_one(a, b, oy, ox, ch), a.out_inv,
                                                          a.out_zero_point, a.out_qmin, a.out_qmax));
    }
  }
}
}  // namespace ref
}  // namespace lowbit
