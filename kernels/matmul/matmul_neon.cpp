// ARMv8.0 NEON variants (Cortex-A72, the Pi 4): no sdot, so a 16-byte int8 dot product is
// smull (low halves) + smlal2 (high halves) into int16 (|pair| <= 2 * 128 * 127 = 32512) and a
// sadalp into int32: 3 instructions where dotprod needs 1. Micro-kernel: matmul_neon_impl.hpp.
#include <arm_neon.h>

namespace {
inline int32x4_t dot16_neon(int32x4_t acc, int8x16_t w, int8x16_t a) {
  const int16x8_t p = vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(a)), w, a);
  return vpadalq_s16(acc, p);
}
}  // namespace
#define PIQUANT_DOT16(acc, w, a) dot16_neon(acc, w, a)
#include "matmul/matmul_neon_impl.hpp"
#define PIQUANT_KZERO_LOAD 0  // the A72 has one load pipe: movi
#include "matmul/matmul_kquant_neon_impl.hpp"

namespace piquant::kernels {

void gemv_f32_q8_q8_neon(const GemmArgs& a) { gemv<WeightType::kQ8>(a); }
void gemv_f32_q8_q4_neon(const GemmArgs& a) { gemv<WeightType::kQ4>(a); }
void gemv_f32_q8_q4m_neon(const GemmArgs& a) { gemv<WeightType::kQ4M>(a); }
void gemm_f32_q8_q8_4x4_neon(const GemmArgs& a) { gemm<WeightType::kQ8>(a); }
void gemm_f32_q8_q4_4x4_neon(const GemmArgs& a) { gemm<WeightType::kQ4>(a); }
void gemm_f32_q8_q4m_4x4_neon(const GemmArgs& a) { gemm<WeightType::kQ4M>(a); }
void gemv_f32_q8_q4k_neon(const GemmArgs& a) { kmatmul<WeightType::kQ4K, 1>(a); }
void gemv_f32_q8_q5k_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5K, 1>(a); }
void gemv_f32_q8_q6k_neon(const GemmArgs& a) { kmatmul<WeightType::kQ6K, 1>(a); }
void gemv_f32_q8_q50_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5_0, 1>(a); }
void gemv_f32_q8_q51_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5_1, 1>(a); }
// 1 x 2: the 1 x 4 tile spills on the A72 (bench/mca.py: q4_k 10.2 vs 8.1 cycles per unit)
void gemm_f32_q8_q4k_1x2_neon(const GemmArgs& a) { kmatmul<WeightType::kQ4K, 2>(a); }
void gemm_f32_q8_q5k_1x2_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5K, 2>(a); }
void gemm_f32_q8_q6k_1x2_neon(const GemmArgs& a) { kmatmul<WeightType::kQ6K, 2>(a); }
void gemm_f32_q8_q50_1x2_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5_0, 2>(a); }
void gemm_f32_q8_q51_1x2_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5_1, 2>(a); }
void gemv_f32_f32_f32_neon(const GemmArgs& a) { gemv_float<false>(a); }
void gemv_f32_f32_f16_neon(const GemmArgs& a) { gemv_float<true>(a); }

}  // namespace piquant::kernels
