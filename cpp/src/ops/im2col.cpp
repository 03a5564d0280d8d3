// im2col for the quantized convolutions: one output row per output pixel, channel runs copied
// with memcpy when the channels are contiguous (channels-last), element by element otherwise.
#include "lowbit/im2col.hpp"

#include <algorithm>
#include <cstring>

#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

// One patch element run: c channels from src (channel stride sc) or zeros.
inline void copy_channels(float* dst, const float* src, int64_t c, int64_t sc) {
  if (src == nullptr) {
    for (int64_t ch = 0; ch < c; ++ch) dst[ch] = 0.0f;
  } else if (c == 1) {
    dst[0] = src[0];
  } else if (sc == 1) {
    std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(c));
  } else {
    for (int64_t ch = 0; ch < c; ++ch) dst[ch] = src[ch * sc];
  }
}

}  // namespace

void im2col_nhwc(const Im2colArgs& a, float* out) {
  const int64_t rows = a.n * a.ho * a.wo, width = a.kh * a.kw * a.c;
  if (rows == 0 || width == 0) return;
  parallel_range(rows, std::max<int64_t>(1, (int64_t{1} << 14) / width), 1, [&](int64_t r0, int64_t r1) {
    int64_t b = r0 / (a.ho * a.wo), oy = (r0 / a.wo) % a.ho, ox = r0 % a.wo;
    for (int64_t r = r0; r < r1; ++r) {
      float* dst = out + r * width;
      for (int64_t i = 0; i < a.kh; ++i) {
        const int64_t iy = oy * a.stride_h - a.pad_h + i * a.dil_h;
        const bool row_in = iy >= 0 && iy < a.h;
        const float* src_row = row_in ? a.x + b * a.sn + iy * a.sh : nullptr;
        for (int64_t j = 0; j < a.kw; ++j, dst += a.c) {
          const int64_t ix = ox * a.stride_w - a.pad_w + j * a.dil_w;
          copy_channels(dst, row_in && ix >= 0 && ix < a.w ? src_row + ix * a.sw : nullptr, a.c, a.sc);
        }
      }
      if (++ox == a.wo) {
        ox = 0;
        if (++oy == a.ho) {
          oy = 0;
          ++b;
        }
      }
    }
  });
}

}  // namespace lowbit
