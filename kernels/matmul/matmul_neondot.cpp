// ARMv8.2 dotprod variants (Cortex-A76, the Pi 5): one sdot per 16-byte int8 dot product
// (4 int32 lanes, each the sum of 4 products). Micro-kernel: matmul_neon_impl.hpp.
#include <arm_neon.h>

#define PIQUANT_DOT16(acc, w, a) vdotq_s32(acc, w, a)
#include "matmul/matmul_neon_impl.hpp"

namespace piquant::kernels {

void gemv_f32_q8_q8_neondot(const GemmArgs& a) { gemv<WeightType::kQ8>(a); }
void gemv_f32_q8_q4_neondot(const GemmArgs& a) { gemv<WeightType::kQ4>(a); }
void gemv_f32_q8_q4m_neondot(const GemmArgs& a) { gemv<WeightType::kQ4M>(a); }
void gemm_f32_q8_q8_4x4_neondot(const GemmArgs& a) { gemm<WeightType::kQ8>(a); }
void gemm_f32_q8_q4_4x4_neondot(const GemmArgs& a) { gemm<WeightType::kQ4>(a); }
void gemm_f32_q8_q4m_4x4_neondot(const GemmArgs& a) { gemm<WeightType::kQ4M>(a); }

}  // namespace piquant::kernels
