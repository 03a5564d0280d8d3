// Test-only twin of the AMX GEMM task: kernels/matmul_amx_impl.hpp on scalar-emulated tiles
// (reached only through _core._matmul_amx_twin; slow).
#include "kernels/amx_emu_tiles.hpp"
#include "kernels/matmul_amx_impl.hpp"

namespace lowbit {
namespace kernels {
namespace avx512vnni {

void gemm_u8s8_task_amx_twin(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  amx_task<EmuTiles>(g, m0, m1, p0, p1);
}

}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit
