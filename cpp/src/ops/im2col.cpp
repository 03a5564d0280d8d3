// im2col for the quantized convolutions: one output row per output pixel, channel runs copied
// with memcpy when the channels are contiguous (channels-last), element by element otherwise.
#include "lowbit/im2col.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

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

// n bytes (n >= 1) from s to d (not overlapping): runs up to 64 bytes as two fixed-size moves
// each (overlapping in the middle), inlined, instead of a memcpy call per short run (a 7x7 stem on
// 3 channels copies 21-byte runs).
inline void copy_run(uint8_t* d, const uint8_t* s, int64_t n) {
  if (n > 64) {
    std::memcpy(d, s, static_cast<size_t>(n));
  } else if (n > 32) {
    std::memcpy(d, s, 32);
    std::memcpy(d + n - 32, s + n - 32, 32);
  } else if (n > 16) {
    std::memcpy(d, s, 16);
    std::memcpy(d + n - 16, s + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(d, s, 8);
    std::memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(d, s, 4);
    std::memcpy(d + n - 4, s + n - 4, 4);
  } else {
    d[0] = s[0];
    d[n - 1] = s[n - 1];
    d[n / 2] = s[n / 2];
  }
}

// n bytes (n >= 0) of value v at d, short runs as copy_run does.
inline void fill_run(uint8_t* d, uint8_t v, int64_t n) {
  if (n <= 0) return;
  if (n > 64) {
    std::memset(d, v, static_cast<size_t>(n));
    return;
  }
  uint8_t src[64];
  std::memset(src, v, sizeof src);
  copy_run(d, src, n);
}

}  // namespace

void im2col_nhwc(const Im2colArgs& args, float* out) {
  const Im2colArgs a = args;  // a local copy: float stores cannot make the compiler reload it
  const int64_t rows = a.n * a.ho * a.wo, width = a.kh * a.kw * a.c;
  if (rows == 0 || width == 0) return;
  if (a.h == 0 || a.w == 0) {  // only padding: no address of x is valid
    std::memset(out, 0, sizeof(float) * static_cast<size_t>(rows * width));
    return;
  }
  if (a.c > 1 && a.sc != 1 && a.kh * a.kw > 1) {
    // Strided channels (NCHW): every element would be gathered kh * kw times one by one. One
    // channels-last copy first (reading each channel plane in order), then channel runs are
    // memcpy'd.
    std::unique_ptr<float[]> t(new float[static_cast<size_t>(a.n * a.h * a.w * a.c)]);  // every element written
    float* const tp = t.get();
    const int64_t hw = a.h * a.w;
    parallel_range(a.n * a.c, std::max<int64_t>(1, (int64_t{1} << 14) / hw), 1, [a, tp, hw](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t b = q / a.c, ch = q % a.c;
        const float* src = a.x + b * a.sn + ch * a.sc;
        float* dst = tp + b * hw * a.c + ch;
        for (int64_t y = 0; y < a.h; ++y)
          for (int64_t x = 0; x < a.w; ++x) dst[(y * a.w + x) * a.c] = src[y * a.sh + x * a.sw];
      }
    });
    Im2colArgs nhwc = a;
    nhwc.x = tp;
    nhwc.sn = hw * a.c;
    nhwc.sh = a.w * a.c;
    nhwc.sw = a.c;
    nhwc.sc = 1;
    im2col_nhwc(nhwc, out);
    return;
  }
  parallel_range(rows, std::max<int64_t>(1, (int64_t{1} << 14) / width), 1, [a, out, width](int64_t r0, int64_t r1) {
    int64_t b = r0 / (a.ho * a.wo), oy = (r0 / a.wo) % a.ho, ox = r0 % a.wo;
    float* dst = out + r0 * width;
    // Pixels of packed channels follow each other: a kernel row inside the image is one run.
    const bool packed = a.dil_w == 1 && (a.c == 1 || a.sc == 1) && a.sw == a.c;
    const int64_t run = a.kw * a.c;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t ix0 = ox * a.stride_w - a.pad_w;
      const bool x_in = packed && ix0 >= 0 && ix0 + a.kw <= a.w;
      for (int64_t i = 0; i < a.kh; ++i) {
        const int64_t iy = oy * a.stride_h - a.pad_h + i * a.dil_h;
        const bool row_in = iy >= 0 && iy < a.h;
        // Clamped coordinates keep every address valid, so single channels (NCHW inputs, the
        // first convolution) are selected without a branch on the image border.
        const float* src_row = a.x + b * a.sn + std::min(std::max<int64_t>(iy, 0), a.h - 1) * a.sh;
        if (x_in) {
          if (row_in) {
            std::memcpy(dst, src_row + ix0 * a.sw, sizeof(float) * static_cast<size_t>(run));
          } else {
            std::memset(dst, 0, sizeof(float) * static_cast<size_t>(run));
          }
          dst += run;
          continue;
        }
        for (int64_t j = 0; j < a.kw; ++j, dst += a.c) {
          const int64_t ix = ox * a.stride_w - a.pad_w + j * a.dil_w;
          const bool in = row_in && ix >= 0 && ix < a.w;
          const float* src = src_row + std::min(std::max<int64_t>(ix, 0), a.w - 1) * a.sw;
          if (a.c == 1) {
            const float v = *src;
            dst[0] = in ? v : 0.0f;
          } else {
            copy_channels(dst, in ? src : nullptr, a.c, a.sc);
          }
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

void im2col_nhwc_u8_rows(const Im2colArgs& args, const uint8_t* xq, uint8_t pad, int64_t lda, uint8_t* out, int64_t r0,
                         int64_t r1) {
  // Locals, not references: byte stores may alias anything reached through a pointer, which
  // would reload them every byte.
  const Im2colArgs a = args;
  const uint8_t* const xb = xq;
  uint8_t* const o = out;
  const uint8_t pd = pad;
  const int64_t ld = lda, wd = a.kh * a.kw * a.c;
  if (a.h == 0 || a.w == 0) {  // only padding: no address of xq is valid
    for (int64_t r = r0; r < r1; ++r) {
      std::memset(o + (r - r0) * ld, pd, static_cast<size_t>(wd));
      std::memset(o + (r - r0) * ld + wd, 0, static_cast<size_t>(ld - wd));
    }
    return;
  }
  int64_t b = r0 / (a.ho * a.wo), oy = (r0 / a.wo) % a.ho, ox = r0 % a.wo;
  const int64_t c = a.c, sh = a.w * c, sn = a.h * sh;
  const int64_t run = a.kw * c;  // bytes of one kernel row when the window is inside the image
  // each kernel row's image row for the current output row (nullptr: padding), set when oy changes
  std::vector<const uint8_t*> srow(static_cast<size_t>(a.kh));
  int64_t srow_of = -1;
  for (int64_t r = r0; r < r1; ++r) {
    uint8_t* dst = o + (r - r0) * ld;
    const int64_t ix0 = ox * a.stride_w - a.pad_w;
    // Inside the image horizontally with unit dilation: each kernel row is one contiguous run.
    const bool x_in = a.dil_w == 1 && ix0 >= 0 && ix0 + a.kw <= a.w;
    if (x_in) {
      if (srow_of != b * a.ho + oy) {
        srow_of = b * a.ho + oy;
        for (int64_t i = 0; i < a.kh; ++i) {
          const int64_t iy = oy * a.stride_h - a.pad_h + i * a.dil_h;
          srow[i] = iy >= 0 && iy < a.h ? xb + b * sn + iy * sh : nullptr;
        }
      }
      for (int64_t i = 0; i < a.kh; ++i, dst += run) {
        if (srow[i] != nullptr) {
          copy_run(dst, srow[i] + ix0 * c, run);
        } else {
          fill_run(dst, pd, run);
        }
      }
    } else {
      for (int64_t i = 0; i < a.kh; ++i) {
        const int64_t iy = oy * a.stride_h - a.pad_h + i * a.dil_h;
        const bool row_in = iy >= 0 && iy < a.h;
        const uint8_t* src_row = xb + b * sn + std::min(std::max<int64_t>(iy, 0), a.h - 1) * sh;
        for (int64_t j = 0; j < a.kw; ++j, dst += c) {
          const int64_t ix = ox * a.stride_w - a.pad_w + j * a.dil_w;
          const bool in = row_in && ix >= 0 && ix < a.w;
          const uint8_t* src = src_row + std::min(std::max<int64_t>(ix, 0), a.w - 1) * c;
          if (c == 1) {  // no branch on the image border (clamped addresses are always valid)
            const uint8_t v = *src;
            dst[0] = in ? v : pd;
          } else if (in) {
            copy_run(dst, src, c);
          } else {
            fill_run(dst, pd, c);
          }
        }
      }
    }
    fill_run(o + (r - r0) * ld + wd, 0, ld - wd);
    if (++ox == a.wo) {
      ox = 0;
      if (++oy == a.ho) {
        oy = 0;
        ++b;
      }
    }
  }
}

void im2col_nhwc_u8(const Im2colArgs& args, const uint8_t* xq, uint8_t pad, int64_t lda, uint8_t* out) {
  const int64_t rows = args.n * args.ho * args.wo;
  if (rows == 0) return;
  parallel_range(rows, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(lda, 1)), 1,
                 [&args, xq, pad, lda, out](int64_t r0, int64_t r1) {
                   im2col_nhwc_u8_rows(args, xq, pad, lda, out + r0 * lda, r0, r1);
                 });
}

}  // namespace lowbit
