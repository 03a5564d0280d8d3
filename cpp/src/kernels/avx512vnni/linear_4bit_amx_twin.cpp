// Test-only twin of the AMX 4-bit linear kernels: kernels/linear_4bit_amx_impl.hpp on scalar-emulated
// tiles (reached only through _core._linear_4bit_twin("amx", ...); slow).
#include "kernels/amx_emu_tiles.hpp"
#include "kernels/linear_4bit_amx_impl.hpp"

namespace lowbit {
namespace kernels {
namespace avx512vnni {
void linear_s8_s4w_f32_amx_twin(const Linear4Args& a, int64_t p0, int64_t p1) {
  Linear4Amx<EmuTiles, false>::run(a, p0, p1);
}
void linear_s8_nf4w_f32_amx_twin(const Linear4Args& a, int64_t p0, int64_t p1) {
  Linear4Amx<EmuTiles, true>::run(a, p0, p1);
}
}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit
