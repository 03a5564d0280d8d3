// AMX int8-activation x 4-bit-weight linear kernels (tdpbssd on decoded codes), the source in
// kernels/linear_4bit_amx_impl.hpp with real tiles.
#include "kernels/amx/amx_tiles.hpp"
#include "kernels/linear_4bit_amx_impl.hpp"

namespace lowbit {
namespace kernels {
namespace amx {
void linear_s8_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) { Linear4Amx<AmxTiles, false>::run(a, p0, p1); }
void linear_s8_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) { Linear4Amx<AmxTiles, true>::run(a, p0, p1); }
}  // namespace amx
}  // namespace kernels
}  // namespace lowbit
