// The matmul variant table, in preference order: the first entry for (op, weights) whose CPU
// feature is enabled (cpu_info(), capped by PIQUANT_ISA) is chosen once, at first use.
#include <string>

#include "matmul/matmul.hpp"

namespace piquant::kernels {
namespace {

using W = WeightType;
using F = CpuFeature;
constexpr MatmulOp kV = MatmulOp::kGemv, kM = MatmulOp::kGemm;
constexpr ActType kQ = ActType::kQ8, kF = ActType::kF32;

const GemmKernel kTable[] = {
#if defined(__x86_64__)
    {"gemv_f32_q8_q4_avx512vnni", kV, W::kQ4, kQ, F::kAvx512Vnni, 4, 1, 32, gemv_f32_q8_q4_avx512vnni},
    {"gemv_f32_q8_q4m_avx512vnni", kV, W::kQ4M, kQ, F::kAvx512Vnni, 4, 1, 32, gemv_f32_q8_q4m_avx512vnni},
    {"gemv_f32_q8_q8_avx512vnni", kV, W::kQ8, kQ, F::kAvx512Vnni, 4, 1, 32, gemv_f32_q8_q8_avx512vnni},
    {"gemm_f32_q8_q4_4x8_avx512vnni", kM, W::kQ4, kQ, F::kAvx512Vnni, 4, 8, 32, gemm_f32_q8_q4_4x8_avx512vnni},
    {"gemm_f32_q8_q4m_4x8_avx512vnni", kM, W::kQ4M, kQ, F::kAvx512Vnni, 4, 8, 32, gemm_f32_q8_q4m_4x8_avx512vnni},
    {"gemm_f32_q8_q8_4x8_avx512vnni", kM, W::kQ8, kQ, F::kAvx512Vnni, 4, 8, 32, gemm_f32_q8_q8_4x8_avx512vnni},
    {"gemv_f32_q8_q4_avx2", kV, W::kQ4, kQ, F::kAvx2, 4, 1, 32, gemv_f32_q8_q4_avx2},
    {"gemv_f32_q8_q4m_avx2", kV, W::kQ4M, kQ, F::kAvx2, 4, 1, 32, gemv_f32_q8_q4m_avx2},
    {"gemv_f32_q8_q8_avx2", kV, W::kQ8, kQ, F::kAvx2, 4, 1, 32, gemv_f32_q8_q8_avx2},
    {"gemm_f32_q8_q4_4x4_avx2", kM, W::kQ4, kQ, F::kAvx2, 4, 4, 32, gemm_f32_q8_q4_4x4_avx2},
    {"gemm_f32_q8_q4m_4x4_avx2", kM, W::kQ4M, kQ, F::kAvx2, 4, 4, 32, gemm_f32_q8_q4m_4x4_avx2},
    {"gemm_f32_q8_q8_4x4_avx2", kM, W::kQ8, kQ, F::kAvx2, 4, 4, 32, gemm_f32_q8_q8_4x4_avx2},
    {"gemv_f32_f32_f32_avx2", kV, W::kF32, kF, F::kAvx2, 1, 1, 32, gemv_f32_f32_f32_avx2},
    {"gemv_f32_f32_f16_avx2", kV, W::kF16, kF, F::kAvx2, 1, 1, 32, gemv_f32_f32_f16_avx2},
    {"gemm_f32_f32_f32_avx2", kM, W::kF32, kF, F::kAvx2, 1, 1, 32, gemv_f32_f32_f32_avx2},
    {"gemm_f32_f32_f16_avx2", kM, W::kF16, kF, F::kAvx2, 1, 1, 32, gemv_f32_f32_f16_avx2},
#endif
#if defined(__aarch64__)
    {"gemv_f32_q8_q4_neondot", kV, W::kQ4, kQ, F::kNeonDot, 4, 1, 32, gemv_f32_q8_q4_neondot},
    {"gemv_f32_q8_q4m_neondot", kV, W::kQ4M, kQ, F::kNeonDot, 4, 1, 32, gemv_f32_q8_q4m_neondot},
    {"gemv_f32_q8_q8_neondot", kV, W::kQ8, kQ, F::kNeonDot, 4, 1, 32, gemv_f32_q8_q8_neondot},
    {"gemm_f32_q8_q4_4x4_neondot", kM, W::kQ4, kQ, F::kNeonDot, 4, 4, 32, gemm_f32_q8_q4_4x4_neondot},
    {"gemm_f32_q8_q4m_4x4_neondot", kM, W::kQ4M, kQ, F::kNeonDot, 4, 4, 32, gemm_f32_q8_q4m_4x4_neondot},
    {"gemm_f32_q8_q8_4x4_neondot", kM, W::kQ8, kQ, F::kNeonDot, 4, 4, 32, gemm_f32_q8_q8_4x4_neondot},
    {"gemv_f32_q8_q4_neon", kV, W::kQ4, kQ, F::kNeon, 4, 1, 32, gemv_f32_q8_q4_neon},
    {"gemv_f32_q8_q4m_neon", kV, W::kQ4M, kQ, F::kNeon, 4, 1, 32, gemv_f32_q8_q4m_neon},
    {"gemv_f32_q8_q8_neon", kV, W::kQ8, kQ, F::kNeon, 4, 1, 32, gemv_f32_q8_q8_neon},
    {"gemm_f32_q8_q4_4x4_neon", kM, W::kQ4, kQ, F::kNeon, 4, 4, 32, gemm_f32_q8_q4_4x4_neon},
    {"gemm_f32_q8_q4m_4x4_neon", kM, W::kQ4M, kQ, F::kNeon, 4, 4, 32, gemm_f32_q8_q4m_4x4_neon},
    {"gemm_f32_q8_q8_4x4_neon", kM, W::kQ8, kQ, F::kNeon, 4, 4, 32, gemm_f32_q8_q8_4x4_neon},
    {"gemv_f32_f32_f32_neon", kV, W::kF32, kF, F::kNeon, 1, 1, 16, gemv_f32_f32_f32_neon},
    {"gemv_f32_f32_f16_neon", kV, W::kF16, kF, F::kNeon, 1, 1, 16, gemv_f32_f32_f16_neon},
    {"gemm_f32_f32_f32_neon", kM, W::kF32, kF, F::kNeon, 1, 1, 16, gemv_f32_f32_f32_neon},
    {"gemm_f32_f32_f16_neon", kM, W::kF16, kF, F::kNeon, 1, 1, 16, gemv_f32_f32_f16_neon},
#endif
    // References: one function serves GEMV and GEMM.
    {"gemv_f32_q8_q4_ref", kV, W::kQ4, kQ, F::kNone, 1, 1, 32, matmul_f32_q8_q4_ref},
    {"gemv_f32_q8_q4m_ref", kV, W::kQ4M, kQ, F::kNone, 1, 1, 32, matmul_f32_q8_q4m_ref},
    {"gemv_f32_q8_q8_ref", kV, W::kQ8, kQ, F::kNone, 1, 1, 32, matmul_f32_q8_q8_ref},
    {"gemv_f32_f32_f32_ref", kV, W::kF32, kF, F::kNone, 1, 1, 1, matmul_f32_f32_f32_ref},
    {"gemv_f32_f32_f16_ref", kV, W::kF16, kF, F::kNone, 1, 1, 1, matmul_f32_f32_f16_ref},
    {"gemm_f32_q8_q4_ref", kM, W::kQ4, kQ, F::kNone, 1, 1, 32, matmul_f32_q8_q4_ref},
    {"gemm_f32_q8_q4m_ref", kM, W::kQ4M, kQ, F::kNone, 1, 1, 32, matmul_f32_q8_q4m_ref},
    {"gemm_f32_q8_q8_ref", kM, W::kQ8, kQ, F::kNone, 1, 1, 32, matmul_f32_q8_q8_ref},
    {"gemm_f32_f32_f32_ref", kM, W::kF32, kF, F::kNone, 1, 1, 1, matmul_f32_f32_f32_ref},
    {"gemm_f32_f32_f16_ref", kM, W::kF16, kF, F::kNone, 1, 1, 1, matmul_f32_f32_f16_ref},
};
constexpr size_t kCount = sizeof(kTable) / sizeof(kTable[0]);
constexpr WeightType kTypes[] = {W::kF32, W::kF16, W::kQ8, W::kQ4, W::kQ4M};

const GemmKernel* choose(MatmulOp op, WeightType t) {
  for (const GemmKernel& k : kTable) {
    if (k.op == op && k.weights == t && cpu_info().has(k.needs)) return &k;
  }
  return nullptr;  // unreachable: every (op, type) has a reference
}

}  // namespace

const GemmKernel* matmul_kernels(size_t* count) {
  *count = kCount;
  return kTable;
}

const GemmKernel& matmul_kernel(MatmulOp op, WeightType t) {
  static const struct Chosen {
    const GemmKernel* k[2][5];
    Chosen() {
      for (int o = 0; o < 2; ++o) {
        for (WeightType w : kTypes) k[o][static_cast<int>(w)] = choose(static_cast<MatmulOp>(o), w);
      }
    }
  } chosen;
  return *chosen.k[static_cast<int>(op)][static_cast<int>(t)];
}

std::string matmul_kernel_names() {
  std::string s;
  for (WeightType w : kTypes) {
    for (MatmulOp op : {MatmulOp::kGemv, MatmulOp::kGemm}) {
      s += s.empty() ? "" : ", ";
      s += matmul_kernel(op, w).name;
    }
  }
  return s + ", " + quant_act_kernel().name;
}

}  // namespace piquant::kernels
